//! The daemon's system calls, behind safe functions; this layer imports no domain module.
//!
//! * [`fdpass`]: the log keeper's socket (`SOCK_SEQPACKET`, descriptors by `SCM_RIGHTS`).
//! * [`epoll`]: the log keeper's readiness loop.
//! * [`pipe_io`]: reading app output pipes (non-blocking reads, pipe sizes).
//! * [`detach`]: starting a process in a session of its own.

pub mod detach;
pub mod epoll;
pub mod fdpass;
pub mod pipe_io;
