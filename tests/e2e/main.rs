//! End-to-end tests: the real `turbo-daemon` and `turbo` binaries, real processes, a real
//! private D-Bus. One binary (`cargo test -p turbo-tests`), one module per area.

mod bad_input;
mod dbus;
mod ebpf;
mod lifecycle;
mod logs;
mod supervision;
