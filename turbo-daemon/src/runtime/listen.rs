//! The listening sockets the daemon holds for apps with `listen:` (bookkeeping only; the
//! system calls are in [`crate::os::net`]).
//!
//! One set per app *name*, bound when its first instance starts and kept until its last
//! instance is deleted, so restarts and reloads of instances never close the port: connections
//! wait in the kernel's accept queue while no instance accepts. After a daemon restart the
//! sockets are taken back from a running (adopted) instance with `pidfd_getfd` rather than
//! bound again, which would fail while the instances hold them. It must not decide anything
//! about apps.

use std::{
    collections::HashMap,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use crate::os::net;

/// Sockets by app name, each with the address it was asked for.
#[derive(Debug, Default)]
pub struct Listeners {
    by_app: HashMap<String, Vec<(String, OwnedFd)>>,
}

impl Listeners {
    /// The sockets of app `name` for `addrs`, in that order: kept ones are reused, missing ones
    /// bound now, ones no longer asked for closed.
    ///
    /// # Errors
    /// `cannot listen on <addr>: <cause>` for the first address that cannot be bound.
    pub fn sockets(&mut self, name: &str, addrs: &[String]) -> Result<Vec<BorrowedFd<'_>>, String> {
        let held = self.by_app.entry(name.to_owned()).or_default();
        held.retain(|(a, _)| addrs.contains(a));
        for addr in addrs {
            if !held.iter().any(|(a, _)| a == addr) {
                let fd =
                    net::listen_tcp(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                held.push((addr.clone(), fd));
            }
        }
        Ok(addrs
            .iter()
            .filter_map(|addr| held.iter().find(|(a, _)| a == addr))
            .map(|(_, fd)| fd.as_fd())
            .collect())
    }

    /// Takes back the sockets of app `name` from its running process `pid` (adopted after a
    /// daemon restart), which got them as fds 3, 4, … in `addrs` order. A fd that is not a
    /// listening socket on that address (the app closed or moved it) is left alone: the address
    /// is bound again when an instance next starts. Returns the addresses taken back.
    pub fn adopt(&mut self, name: &str, addrs: &[String], pid: u32) -> Vec<String> {
        let held = self.by_app.entry(name.to_owned()).or_default();
        let mut taken = Vec::new();
        for (fd, addr) in (3..).zip(addrs) {
            if held.iter().any(|(a, _)| a == addr) {
                continue;
            }
            match net::take_listener(pid, fd, addr) {
                Ok(socket) => {
                    held.push((addr.clone(), socket));
                    taken.push(addr.clone());
                }
                Err(e) => tracing::debug!(app = name, pid, "fd {fd} is not {addr}: {e}"),
            }
        }
        taken
    }

    /// The sockets of app `name` with what their accept queues dropped (see
    /// [`net::listen_drops`]); a socket whose figure cannot be read is left out.
    #[must_use]
    pub fn drops(&self, name: &str) -> Vec<(String, u64)> {
        self.by_app.get(name).map_or_else(Vec::new, |held| {
            held.iter()
                .filter_map(|(addr, fd)| Some((addr.clone(), net::listen_drops(fd.as_fd()).ok()?)))
                .collect()
        })
    }

    /// Closes the sockets of app `name`.
    pub fn close(&mut self, name: &str) {
        self.by_app.remove(name);
    }
}
