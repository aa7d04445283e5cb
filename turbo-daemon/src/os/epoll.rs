//! The log keeper's readiness loop: one `epoll` instance watching descriptors for input, each
//! known by a key the caller chooses (the keeper uses the descriptor's number). Level-triggered,
//! so a descriptor not read to the end is reported again.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    time::Duration,
};

use rustix::event::{Timespec, epoll};

/// An `epoll` instance (no `Debug`: rustix's events have none).
pub struct Epoll {
    fd: OwnedFd,
    /// Room for one wait's events (64, as many as the loop handles per turn).
    events: Vec<epoll::Event>,
}

impl Epoll {
    /// A new instance (close-on-exec).
    ///
    /// # Errors
    /// From `epoll_create1`.
    pub fn new() -> io::Result<Epoll> {
        Ok(Epoll {
            fd: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::with_capacity(64),
        })
    }

    /// Watches `fd` for input, reported as `key`.
    ///
    /// # Errors
    /// From `epoll_ctl`.
    pub fn add(&self, fd: impl AsFd, key: u64) -> io::Result<()> {
        epoll::add(
            &self.fd,
            fd,
            epoll::EventData::new_u64(key),
            epoll::EventFlags::IN,
        )?;
        Ok(())
    }

    /// Stops watching `fd`. Needed before closing a descriptor whose open file another
    /// process shares (a pipe the daemon also holds): epoll forgets an entry only when the
    /// last descriptor of the file closes.
    pub fn remove(&self, fd: impl AsFd) {
        // not watched (never added, or already removed) is all that can go wrong
        let _ = epoll::delete(&self.fd, fd);
    }

    /// Waits until a watched descriptor has input or `timeout` passes (`None`: no limit), and
    /// puts the keys of those ready into `keys` (emptied first; it stays empty after a time-out
    /// or a signal). The caller's `keys` is reused from wait to wait: nothing is allocated on
    /// the keeper's hot path.
    ///
    /// # Errors
    /// From `epoll_wait`, except `EINTR`.
    pub fn wait(&mut self, timeout: Option<Duration>, keys: &mut Vec<u64>) -> io::Result<()> {
        // a limit too far to express is no limit
        let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
        self.events.clear();
        keys.clear();
        match epoll::wait(
            &self.fd,
            rustix::buffer::spare_capacity(&mut self.events),
            timeout.as_ref(),
        ) {
            Ok(_) => {
                keys.extend(self.events.iter().map(|e| e.data.u64()));
                Ok(())
            }
            Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn reports_ready_descriptors_by_key_until_removed() {
        let mut ep = Epoll::new().unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        ep.add(&r, 7).unwrap();
        let mut keys = vec![99];
        ep.wait(Some(Duration::from_millis(10)), &mut keys).unwrap();
        assert!(keys.is_empty(), "time-out");
        w.write_all(b"x").unwrap();
        ep.wait(Some(Duration::ZERO), &mut keys).unwrap();
        assert_eq!(keys, [7]);
        ep.wait(None, &mut keys).unwrap();
        assert_eq!(keys, [7], "level-triggered: still unread");
        ep.remove(&r);
        ep.wait(Some(Duration::ZERO), &mut keys).unwrap();
        assert!(keys.is_empty());
    }
}
