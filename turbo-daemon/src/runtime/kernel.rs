//! What the event sources report, as the loop handles it: exits (a main process's feeds the
//! supervisor, a descendant's the process table), forks, execs (judged by the exec audit),
//! fatal signals, OOM kills and memory crossings, and the `turbo events` timeline entries they
//! make, within each app's budget. It must not decide lifecycle (the supervisor does) nor read
//! the OS beyond reaping a main process the kernel reported gone.

use std::time::Instant;

use super::*;

impl Runtime {
    /// Handles every kernel event that happened before now. A request must be judged against
    /// them: a `turbo stop` handled before the fork event of a just-forked, setsid'd descendant
    /// (still in the ring buffer, its reader task not yet run) would complete without it. The
    /// yield lets the runtime poll its drivers and run the reader first.
    pub(super) async fn catch_up_events(&mut self) {
        self.source.hurry();
        tokio::task::yield_now().await;
        let mut any = false;
        while let Ok(ev) = self.chan.events_rx.try_recv() {
            self.on_event(ev);
            any = true;
        }
        if any {
            self.after_events();
        }
    }

    /// The app whose main process is `pid`.
    pub(super) fn main_app(&self, pid: u32) -> Option<AppId> {
        self.sup.apps().find(|a| a.pid() == Some(pid)).map(|a| a.id)
    }

    /// [`Self::main_app`] for an event that names its app's key: one lookup rather than a walk
    /// of every app, since a churning tree sends thousands of descendant exits a second.
    pub(super) fn main_app_keyed(&self, key: u32, pid: u32) -> Option<AppId> {
        match self.sup.app(key) {
            Some(app) => (app.pid() == Some(pid)).then_some(app.id),
            None => self.main_app(pid),
        }
    }

    pub(super) fn on_event(&mut self, ev: Event) {
        // a descendant's fork or exit changes nothing a list shows (the end of a group wait it
        // brings bumps in `check_group_waits`), and a churning tree sends thousands a second:
        // bumping for them would rebuild every caller's list each time
        let descendant = match &ev {
            Event::Forked { .. } => true,
            Event::Exited { pid, key, .. } => self.main_app_keyed(*key, *pid).is_none(),
            _ => false,
        };
        if !descendant {
            self.version.bump();
        }
        if let Some(kind) = timeline_kind(&ev) {
            let _ = self.timeline(ev.key(), ev.pid(), kind, || timeline_detail(&ev));
        }
        match ev {
            Event::Exited {
                pid,
                key,
                status,
                memory,
                source,
            } => {
                if self.main_app_keyed(key, pid).is_some() {
                    if let Some(memory) = memory {
                        self.procs.exit_memory(pid, memory);
                    }
                    if source == SourceKind::Ebpf {
                        self.usage.ebpf_exit_events += 1;
                        // The kernel reports the exit a few microseconds before the process
                        // is a zombie (its files closed, its parent told), long past by now
                        // unless it had much memory to free. Reaped here, its group's end is
                        // known in this pass: a restart spawns at once instead of after the
                        // reaper task's turn. Its reaper then finds no child: the exit is
                        // this report's (with the peak memory the kernel gave).
                        os::reap_if_exited(pid);
                    }
                    self.feed(Input::Exited {
                        pid,
                        status,
                        source,
                    });
                } else if self.procs.descendant_exited(key, pid, Instant::now()) {
                    self.check_group_waits(Some(key));
                }
            }
            Event::Forked { child, key, .. } => {
                if self.sup.app(key).is_some() {
                    self.procs.forked(key, child);
                }
            }
            Event::Exec {
                pid,
                key,
                filename,
                source,
            } => self.exec_seen(pid, key, filename, source),
            Event::OomKilled { pid, memory, .. } => {
                tracing::warn!(
                    pid,
                    "the kernel OOM killer chose pid {pid} ({}, resident {} bytes)",
                    memory.comm,
                    memory.rss_bytes()
                );
                self.procs.oom_victim(pid, memory.rss_bytes());
                self.feed(Input::OomKilled { pid });
            }
            Event::Signaled {
                pid,
                signal,
                sender,
                ..
            } => {
                if u32::try_from(signal).is_ok_and(turbo_common::default_fatal) {
                    self.procs.signaled(pid, signal, sender);
                } else if let Some(app) = self.main_app(pid) {
                    // SIGSTOP / SIGCONT: who froze or thawed an app, in the daemon's log
                    let name = self.sup.app(app).map(|a| a.spec.name.clone());
                    let verb = if signal == 19 { "stopped" } else { "continued" };
                    match sender {
                        Some(s) => tracing::info!(
                            app = name.as_deref().unwrap_or(""),
                            pid,
                            "{verb} by signal {signal} from pid {} ({})",
                            s.pid,
                            s.comm
                        ),
                        None => tracing::info!(
                            app = name.as_deref().unwrap_or(""),
                            pid,
                            "{verb} by signal {signal} from the kernel"
                        ),
                    }
                }
            }
            Event::MemoryOver {
                pid, rss, limit, ..
            } => {
                self.memory_reading(pid, rss);
                self.feed(Input::MemoryOver { pid, rss, limit });
            }
            Event::MemoryUnder {
                pid, rss, limit, ..
            } => {
                self.memory_reading(pid, rss);
                self.feed(Input::MemoryUnder { pid, limit });
            }
            Event::Net {
                pid: ev_pid,
                key,
                kind,
                local,
                remote,
                ..
            } => {
                if self.sup.app(key).is_some() {
                    let (what, addr) = match kind {
                        NetKind::Listen | NetKind::Unlisten => (kind, local),
                        NetKind::Connect | NetKind::Accept => (kind, remote),
                    };
                    let seen = match kind {
                        NetKind::Listen => insight::NetSeen::Listen(local),
                        NetKind::Unlisten => insight::NetSeen::Unlisten(local),
                        NetKind::Connect => insight::NetSeen::Connect(remote),
                        NetKind::Accept => insight::NetSeen::Accept(remote),
                    };
                    let at_ms = self.clock.ms(Instant::now());
                    if self.insight.net(key, seen, at_ms) {
                        let pid = ev_pid;
                        let _ = self.timeline(key, pid, what.as_str(), || addr.to_string());
                    }
                }
            }
        }
    }

    /// Books an exec the kernel reported inside app `key`'s tree and tells the bus; one its
    /// `exec_allow` list does not allow is also a warning in the daemon's log. Execs seen by
    /// the procfs source (only those alive at a scan) are not an audit and are not booked.
    pub(super) fn exec_seen(&mut self, pid: u32, key: u32, filename: String, source: SourceKind) {
        let app = self.sup.app(key).filter(|_| source == SourceKind::Ebpf);
        let Some(app) = app else {
            tracing::debug!(pid, "exec {filename}");
            return;
        };
        let allowed = app.spec.exec_allowed(&filename);
        let name = app.spec.name.clone();
        if !allowed {
            tracing::warn!(
                app = name,
                pid,
                "unexpected exec of {filename}: not in the app's exec_allow list"
            );
        }
        let at_ms = self.clock.ms(Instant::now());
        let record = turbo_api::ExecRecord {
            at_ms,
            pid,
            filename: filename.clone(),
            allowed,
        };
        self.insight.exec(key, record);
        let detail = || {
            if allowed {
                filename.clone()
            } else {
                format!("{filename} (unexpected)")
            }
        };
        if self.timeline(key, pid, "exec", detail) {
            let _ = (self.chan.notices).send(Notice::Exec(name, pid, filename, allowed));
        }
    }

    /// Books an event of app `key` for `turbo events` and announces it on the bus, unless the
    /// app's descendants are over their budget ([`insight::EVENT_BURST`]): false then, and for
    /// a key that is no app. `detail` is only written for an event that is kept.
    pub(super) fn timeline(
        &mut self,
        key: u32,
        pid: u32,
        kind: &str,
        detail: impl FnOnce() -> String,
    ) -> bool {
        let Some(app) = self.sup.app(key) else {
            return false;
        };
        let now = Instant::now();
        let Some(held) = self.insight.admit(key, now, app.pid() == Some(pid)) else {
            return false;
        };
        let name = app.spec.name.clone();
        let at_ms = self.clock.ms(now);
        let instance = app.instance;
        let mut book = |kind: &str, pid: u32, detail: String| {
            let event = turbo_api::KernelEvent {
                at_ms,
                instance,
                kind: kind.to_owned(),
                pid,
                detail,
            };
            self.insight.event(key, event.clone());
            let _ = (self.chan.notices).send(Notice::Event(name.clone(), event));
        };
        if held > 0 {
            book(
                "held",
                0,
                format!(
                    "{held} events of descendants not shown (more than {} a second)",
                    insight::EVENTS_PER_SECOND
                ),
            );
        }
        book(kind, pid, detail());
        true
    }
}

/// The `turbo events` kind of an exit, a signal or an OOM kill (execs and TCP events are booked
/// where they are judged).
fn timeline_kind(ev: &Event) -> Option<&'static str> {
    Some(match ev {
        Event::Exited { .. } => "exit",
        Event::Signaled { .. } => "signal",
        Event::OomKilled { .. } => "oom",
        _ => return None,
    })
}

/// The line of an event [`timeline_kind`] names.
fn timeline_detail(ev: &Event) -> String {
    let signal = |n: i32| {
        nix::sys::signal::Signal::try_from(n)
            .map_or_else(|_| format!("signal {n}"), |s| s.as_str().to_owned())
    };
    match ev {
        Event::Exited { status, .. } => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by {}", signal(sig)),
            (None, None) => "ended (status unknown)".to_owned(),
        },
        Event::Signaled {
            signal: sig,
            sender,
            ..
        } => {
            let from = sender.as_ref().map_or_else(
                || "from the kernel".to_owned(),
                |s| format!("from pid {} ({})", s.pid, s.comm),
            );
            format!("{} {from}", signal(*sig))
        }
        Event::OomKilled { memory, .. } => format!(
            "chosen by the OOM killer ({} resident bytes)",
            memory.rss_bytes()
        ),
        _ => String::new(),
    }
}
