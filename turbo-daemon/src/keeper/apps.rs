//! The keeper's side of each app: handing its pipes over (one at a time or pipelined in
//! batches), opening its log files, and taking the pipes back from every keeper when a new
//! daemon adopts the apps. Placement in a keeper and the descriptor books are `super`'s.

use super::*;

impl Keeper {
    /// `fds` (the daemon's copies of an app's pipes) if they fit in [`copy_budget`], counted;
    /// else none: they close at once and the app's keeper alone holds its pipes.
    fn within_copy_budget(&mut self, fds: Vec<OwnedFd>) -> Vec<OwnedFd> {
        let n = fds.len() as u64;
        if self.copies + n <= copy_budget() {
            self.copies += n;
            fds
        } else {
            Vec::new()
        }
    }

    /// Notes that `shard` reads `pid`'s pipes, keeping the daemon's copies when it has
    /// descriptors to spare for them (else they are closed here: the keeper's are enough
    /// while it lives).
    fn hold(
        &mut self,
        shard: usize,
        source: Source,
        app: String,
        policy: LogPolicy,
        fds: Vec<OwnedFd>,
    ) {
        let fds = self.within_copy_budget(fds);
        self.shards[shard].used += 2;
        let old = self.held.insert(
            source.pid,
            Held {
                shard,
                instance: source.instance,
                app,
                policy,
                fds,
                counted: true,
            },
        );
        if let Some(old) = old {
            self.release(&old);
        }
    }

    /// Gives back what `h` counted.
    fn release(&mut self, h: &Held) {
        self.copies = self.copies.saturating_sub(h.fds.len() as u64);
        if h.counted
            && let Some(s) = self.shards.get_mut(h.shard)
        {
            s.used = s.used.saturating_sub(2);
        }
    }

    /// Hands `pid`'s stdout and stderr to its app's keeper and keeps a copy. On failure the
    /// pipes come back, for the daemon to read itself.
    ///
    /// # Errors
    /// The keeper's error, with both pipes.
    pub fn register(
        &mut self,
        source: Source,
        app: &str,
        policy: &LogPolicy,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<(), (io::Error, OwnedFd, OwnedFd)> {
        let shard = match self.shard_for(app) {
            Ok(i) => i,
            Err(e) => return Err((e, stdout, stderr)),
        };
        let req = Request::Register {
            pid: source.pid,
            instance: source.instance,
            app: app.to_owned(),
            policy: policy.clone(),
        };
        let reply = self.call(shard, &req, &[stdout.as_fd(), stderr.as_fd()]);
        match reply {
            Ok(Reply::Ok) => {
                self.hold(
                    shard,
                    source,
                    app.to_owned(),
                    policy.clone(),
                    vec![stdout, stderr],
                );
                Ok(())
            }
            Ok(other) => Err((unexpected(&other), stdout, stderr)),
            Err(e) => Err((e, stdout, stderr)),
        }
    }

    /// [`Self::register`] for many processes at once (the spawns of one pass of the loop): per
    /// keeper, the requests of a window are sent before their replies are read, so the keeper
    /// works while the daemon sends, one round trip per window rather than per process.
    /// Results in order. Should a session fail midway, a new one is made and the rest go one
    /// by one.
    pub fn register_all(&mut self, batch: Vec<Registration>) -> Vec<Registered> {
        const WINDOW: usize = 32;
        let mut results: Vec<Option<Registered>> = Vec::with_capacity(batch.len());
        results.resize_with(batch.len(), || None);
        let mut by_shard: Vec<Vec<(usize, Registration)>> = Vec::new();
        for (at, r) in batch.into_iter().enumerate() {
            match self.shard_for(&r.app) {
                Ok(i) => {
                    if by_shard.len() <= i {
                        by_shard.resize_with(i + 1, Vec::new);
                    }
                    by_shard[i].push((at, r));
                }
                Err(e) => results[at] = Some(Err((e, r.stdout, r.stderr))),
            }
        }
        for (shard, regs) in by_shard.into_iter().enumerate() {
            let mut rest = regs.into_iter().peekable();
            while rest.peek().is_some() {
                let window: Vec<(usize, Registration)> = rest.by_ref().take(WINDOW).collect();
                let (replies, broken) = self.pipelined(shard, &window);
                if broken {
                    // replies still on their way must not answer later requests
                    if let Err(e) = self.connect(shard) {
                        tracing::warn!("the log keeper did not answer ({e})");
                    }
                }
                for ((at, r), reply) in window.into_iter().zip(replies) {
                    results[at] = Some(match reply {
                        Some(Reply::Ok) => {
                            self.hold(shard, r.source, r.app, r.policy, vec![r.stdout, r.stderr]);
                            Ok(())
                        }
                        Some(other) => Err((unexpected(&other), r.stdout, r.stderr)),
                        None => self.register(r.source, &r.app, &r.policy, r.stdout, r.stderr),
                    });
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every registration of a batch gets a result"))
            .collect()
    }

    /// Sends the window's requests to `shard`, then reads their replies: one per request,
    /// `None` for those not answered; `true` when the session failed on the way.
    fn pipelined(
        &self,
        shard: usize,
        window: &[(usize, Registration)],
    ) -> (Vec<Option<Reply>>, bool) {
        let mut replies: Vec<Option<Reply>> = Vec::with_capacity(window.len());
        let Ok(session) = self.session(shard) else {
            replies.resize_with(window.len(), || None);
            return (replies, false);
        };
        let mut sent = 0;
        for (_, r) in window {
            let req = Request::Register {
                pid: r.source.pid,
                instance: r.source.instance,
                app: r.app.clone(),
                policy: r.policy.clone(),
            };
            if fdpass::send(
                session,
                &to_json(&req),
                &[r.stdout.as_fd(), r.stderr.as_fd()],
            )
            .is_err()
            {
                break;
            }
            sent += 1;
        }
        let mut buf = vec![0; MAX_MESSAGE];
        let mut broken = sent < window.len();
        for _ in 0..sent {
            match fdpass::recv(session, &mut buf) {
                Ok((n, _)) if n > 0 => replies.push(serde_json::from_slice(&buf[..n]).ok()),
                _ => {
                    broken = true;
                    break;
                }
            }
        }
        replies.resize_with(window.len(), || None);
        (replies, broken)
    }

    /// Takes a copy of every pipe the keepers read (after the previous daemon's death or an
    /// upgrade), as far as the daemon has descriptors to spare, and returns their pids. A keeper
    /// that does not answer is left out (its apps are then not known to be read by it).
    ///
    /// # Errors
    /// When no keeper answers.
    pub fn adopt(&mut self) -> io::Result<HashSet<u32>> {
        let mut pids = HashSet::new();
        let mut last = None;
        for shard in 0..self.shards.len() {
            if let Err(e) = self.adopt_from(shard, &mut pids) {
                tracing::warn!(
                    "cannot take over the pipes the log keeper of {} reads: {e}",
                    self.shards[shard].socket
                );
                last = Some(e);
            }
        }
        match last {
            Some(e) if pids.is_empty() => Err(e),
            _ => Ok(pids),
        }
    }

    fn adopt_from(&mut self, shard: usize, pids: &mut HashSet<u32>) -> io::Result<()> {
        // a descriptor of its own: `held` is filled while it is used
        let session = self.session(shard)?.try_clone_to_owned()?;
        fdpass::send(session.as_fd(), &to_json(&Request::Pipes), &[])?;
        let mut buf = vec![0; MAX_MESSAGE];
        loop {
            // the copies and the adopted processes' pidfds may need more than the limit the
            // daemon was started with (a unit's soft 1,024): raised as a start would
            if crate::os::creds::short_of_fds(FD_RESERVE).is_some()
                && let Err(e) = crate::os::creds::raise_nofile()
            {
                tracing::warn!("cannot raise the file descriptor limit: {e}");
            }
            let (n, fds) = fdpass::recv(session.as_fd(), &mut buf)?;
            let (pid, instance, app) =
                match serde_json::from_slice::<Reply>(&buf[..n]).map_err(io::Error::other)? {
                    Reply::Pipe {
                        pid, instance, app, ..
                    } => (pid, instance, app),
                    Reply::End => return Ok(()),
                    other => return Err(unexpected(&other)),
                };
            pids.insert(pid);
            self.apps.insert(app.clone(), shard);
            // beyond the budget the copies close at once, one message at a time
            let fds = self.within_copy_budget(fds);
            // the keeper's room, told at `hello`, already left out these pipes
            let old = self.held.insert(
                pid,
                Held {
                    shard,
                    instance,
                    app,
                    policy: LogPolicy::default(),
                    fds,
                    counted: false,
                },
            );
            if let Some(old) = old {
                self.release(&old);
            }
        }
    }

    /// Whether a keeper reads `pid`'s output (a process adopted from a previous daemon);
    /// `policy` is its app's, for a new keeper should this one die.
    pub fn adopted(&mut self, pid: u32, policy: &LogPolicy) -> bool {
        match self.held.get_mut(&pid) {
            Some(h) => {
                h.policy = policy.clone();
                true
            }
            None => false,
        }
    }

    /// Drops the copy of `pid`'s pipes (its process is gone; the keeper reads them to the end).
    pub fn forget(&mut self, pid: u32) {
        if let Some(h) = self.held.remove(&pid) {
            self.release(&h);
        }
    }

    /// Opens `app`'s log files in its keeper (if they are not open yet) and sets their policy
    /// (and that of the pipes held for it): done before an app's process is started, so a log
    /// file that cannot be opened, or a keeper without room, fails the start rather than
    /// losing the output.
    ///
    /// # Errors
    /// The keeper's one-line reason (`cannot open log file <path>: ...`).
    pub fn open_logs(
        &mut self,
        app: &str,
        instance: u32,
        policy: &LogPolicy,
    ) -> Result<(), String> {
        for h in self.held.values_mut().filter(|h| h.app == app) {
            h.policy = policy.clone();
        }
        let shard = self.shard_for(app).map_err(|e| e.to_string())?;
        let key = (app.to_owned(), instance);
        let known = self.shards[shard].opened.get(&key);
        if known == Some(policy) {
            let s = &mut self.shards[shard];
            if !s.reserved.remove(&key) {
                s.starting += 2;
            }
            return Ok(());
        }
        let new = known.is_none();
        let req = Request::Policy {
            app: app.to_owned(),
            instance,
            policy: policy.clone(),
        };
        self.call_ok(shard, &req)?;
        let s = &mut self.shards[shard];
        if new {
            s.used += 2;
        }
        s.starting += 2;
        s.opened.insert(key, policy.clone());
        Ok(())
    }

    /// [`Self::open_logs`] for the apps of a batch of spawns, with one round trip per window
    /// of requests to each keeper instead of one per app: the requests are sent, then their
    /// answers read. Each app is placed in its keeper as its own `open_logs` would place it, and
    /// its pipes are counted as starting there, so the next apps of the batch see them taken.
    /// What opened is remembered, so each spawn's own `open_logs` then finds its files open; a
    /// failure is not, so that call asks again and gets the reason.
    pub fn open_logs_all(&mut self, apps: &[(&str, u32, &LogPolicy)]) {
        const WINDOW: usize = 32;
        let mut by_shard: Vec<Vec<(&str, u32, &LogPolicy)>> = Vec::new();
        for &(app, instance, policy) in apps {
            let Ok(shard) = self.shard_for(app) else {
                // the spawn's own call reports why
                return;
            };
            let s = &mut self.shards[shard];
            let key = (app.to_owned(), instance);
            if s.opened.get(&key) == Some(policy) {
                continue;
            }
            // counted now, as its own open_logs would count it, so that the next apps of the
            // batch see the room taken: its log files (new ones), its pipes
            if !s.opened.contains_key(&key) {
                s.used += 2;
            }
            s.starting += 2;
            s.reserved.insert(key);
            if by_shard.len() <= shard {
                by_shard.resize_with(shard + 1, Vec::new);
            }
            by_shard[shard].push((app, instance, policy));
        }
        let mut buf = vec![0; MAX_MESSAGE];
        for (shard, todo) in by_shard.iter().enumerate() {
            for window in todo.chunks(WINDOW) {
                let Ok(session) = self.session(shard) else {
                    break;
                };
                let mut sent = 0;
                for (app, instance, policy) in window {
                    let req = Request::Policy {
                        app: (*app).to_owned(),
                        instance: *instance,
                        policy: (*policy).clone(),
                    };
                    if fdpass::send(session, &to_json(&req), &[]).is_err() {
                        break;
                    }
                    sent += 1;
                }
                let mut answered = 0;
                let mut opened = Vec::new();
                for (app, instance, policy) in &window[..sent] {
                    match fdpass::recv(session, &mut buf) {
                        Ok((n, _)) if n > 0 => {
                            answered += 1;
                            if let Ok(Reply::Ok) = serde_json::from_slice(&buf[..n]) {
                                opened.push((((*app).to_owned(), *instance), (*policy).clone()));
                            }
                        }
                        _ => break,
                    }
                }
                self.shards[shard].opened.extend(opened);
                if answered < window.len() {
                    // answers still on their way must not answer later requests; the spawns'
                    // own calls start a new keeper if this one is gone
                    if let Err(e) = self.connect(shard) {
                        tracing::warn!("the log keeper did not answer ({e})");
                    }
                    break;
                }
            }
        }
        // what did not open is counted again by its own open_logs, which asks again
        for (shard, todo) in by_shard.iter().enumerate() {
            let s = &mut self.shards[shard];
            for &(app, instance, policy) in todo {
                let key = (app.to_owned(), instance);
                if s.opened.get(&key) != Some(policy) && s.reserved.remove(&key) {
                    s.starting -= 2;
                    if !s.opened.contains_key(&key) {
                        s.used -= 2;
                    }
                }
            }
        }
    }

    /// The spawns of a pass (or of one batch of it) are over: their pipes are registered from here on (or their
    /// process never started), and count as `used` once registered.
    pub fn settle(&mut self) {
        for s in &mut self.shards {
            s.starting = 0;
            s.reserved.clear();
        }
    }
}
