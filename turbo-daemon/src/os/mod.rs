//! The daemon's system calls, behind safe functions; this layer imports no domain module.
//!
//! * [`fdpass`]: the log keeper's socket (`SOCK_SEQPACKET`, descriptors by `SCM_RIGHTS`).
//! * [`epoll`]: the log keeper's readiness loop.
//! * [`pipe_io`]: reading app output pipes (non-blocking reads, pipe sizes).
//! * [`detach`]: starting a process in a session of its own.
//! * [`users`]: lookups in the user and group databases (NSS).
//! * [`creds`]: the process's credentials and limits; one thread's file-system credentials.

pub mod creds;
pub mod detach;
pub mod epoll;
pub mod fdpass;
pub mod pipe_io;
pub mod users;
