//! End-to-end tests: the real `turbo-daemon` and `turbo` binaries, real processes, a real
//! private D-Bus. One binary (`cargo test -p turbo-tests`), one module per area.

mod access;
mod adversary_cli;
mod adversary_daemon;
mod apply;
mod attribution;
mod bad_input;
mod chaos;
mod cli_tour;
mod cluster;
mod containment;
mod dbus;
mod durability;
mod ebpf;
mod fleet;
mod groups;
mod hardening;
mod health;
mod hooks;
mod insight;
mod jobs;
mod kernel_truth;
mod lifecycle;
mod limits;
mod load;
mod log_destinations;
mod logs;
mod metrics;
mod notify;
mod package;
mod privileges;
mod probes;
mod readiness;
mod supervision;
mod systemd;
mod watch;
