//! The operating system layer: every system call the daemon makes goes through here.
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
