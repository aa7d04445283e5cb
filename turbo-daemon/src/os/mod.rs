//! The operating system layer: the daemon's system calls beyond plain file I/O (which uses
//! `std::fs`) go through here: spawning, pidfds and reaping, signals, the one `/proc` parser,
//! cgroups, sockets, locks, the allocator. (`config`'s user lookups, the log keeper and `logs`
//! still make their own `libc` calls; they are moving here.)
//!
//! It takes and returns plain data (paths, fds, pids, prepared spawn plans defined here) and
//! imports no domain module (no config, spec, supervisor, runtime or events types), so what it
//! does can be read without knowing what an app is. It decides nothing: *when* to spawn, signal
//! or read is the runtime's business. Safe wrappers (`rustix`) are used where they cost nothing;
//! the remaining `unsafe` (the fork and `posix_spawn` paths, the allocator) says why it is sound.

pub mod alloc;
pub mod cgroup;
pub mod clock;
pub mod lock;
pub mod net;
pub mod proc;
pub mod process;
pub mod spawn;
