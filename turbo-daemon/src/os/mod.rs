//! The operating system layer: the daemon's system calls beyond plain file I/O (which uses
//! `std::fs`) go through here, behind safe functions where they fit (`rustix`): spawning,
//! pidfds and reaping, signals, the one `/proc` parser, cgroups, sockets, locks, the allocator,
//! the log keeper's socket, epoll loop and pipe reads, the user database and the process's
//! credentials.
//!
//! It takes and returns plain data (paths, fds, pids, prepared spawn plans defined here) and
//! imports no domain module (no config, spec, supervisor, runtime or events types), so what it
//! does can be read without knowing what an app is. It decides nothing: *when* to spawn, signal
//! or read is the caller's business. The remaining `unsafe` (the fork and `posix_spawn` paths,
//! the allocator) says why it is sound.
//!
//! * [`spawn`], [`process`], [`proc`], [`cgroup`], [`net`], [`lock`], [`alloc`], [`clock`]: the
//!   runtime's (apps' processes, their `/proc` figures, `listen:` and notify sockets).
//! * [`fdpass`]: the log keeper's socket (`SOCK_SEQPACKET`, descriptors by `SCM_RIGHTS`).
//! * [`epoll`]: the log keeper's readiness loop.
//! * [`pipe_io`]: reading app output pipes (non-blocking reads, pipe sizes).
//! * [`files`]: opening files without following symbolic links, reading with a size cap (the
//!   state file, log files).
//! * [`detach`]: starting a process in a session of its own.
//! * [`users`]: lookups in the user and group databases (NSS), for `config` and `access`.
//! * [`creds`]: the process's credentials and limits; one thread's file-system credentials
//!   (`access::as_caller`).

pub mod alloc;
pub mod cgroup;
pub mod clock;
pub mod creds;
pub mod detach;
pub mod epoll;
pub mod fdpass;
pub mod files;
pub mod lock;
pub mod net;
pub mod pipe_io;
pub mod proc;
pub mod process;
pub mod spawn;
pub mod users;
