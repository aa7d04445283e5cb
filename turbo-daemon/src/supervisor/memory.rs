//! Memory: `max_memory` restarts (or, with `memory_enforce: cgroup`, only warns), the warning
//! level, and the OOM killer's victims.

use std::time::Instant;

use turbo_api::ExitReason;

use super::{Action, AfterStop, Notification, State, Supervisor, process::begin_stopping};
use crate::spec::MemoryEnforce;

impl Supervisor {
    pub(super) fn memory_over(
        &mut self,
        pid: u32,
        rss: u64,
        limit: u64,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(app) = self.running_as(pid) else {
            return;
        };
        let (id, memory) = (app.id, app.spec.memory.clone());
        let Some(max) = memory.max else {
            return;
        };
        if !matches!(app.state, State::Online { .. }) {
            return;
        }
        let kernel_enforces = memory.enforce == MemoryEnforce::Cgroup;
        if limit >= max || rss >= max {
            if kernel_enforces {
                // the cgroup limit acts (an OOM kill), not the supervisor
                return;
            }
            // over max_memory: restart it now, gracefully (stop signal, then SIGKILL at the
            // kill timeout), and record it as a crash with reason memory_limit
            let State::Online { since, .. } = app.state else {
                unreachable!("checked online")
            };
            begin_stopping(
                app,
                pid,
                since,
                false,
                ExitReason::MemoryLimit,
                AfterStop::Start,
                now,
                out,
            );
            return;
        }
        if !app.memory_warned {
            app.memory_warned = true;
            out.push(Action::Notify(Notification::MemoryWarning {
                app: id,
                rss,
                max,
            }));
        }
        if kernel_enforces {
            // nothing more to watch: the kernel enforces the limit; the warning level stays
            // armed, and falling under it re-arms the warning
            return;
        }
        // next: the limit itself
        out.push(Action::SetMemoryLimit {
            app: id,
            pid,
            bytes: max,
        });
    }

    pub(super) fn memory_under(&mut self, pid: u32, limit: u64, out: &mut Vec<Action>) {
        let Some(app) = self.running_as(pid) else {
            return;
        };
        let (Some(max), Some(warning)) = (app.spec.memory.max, app.spec.memory.warning()) else {
            return;
        };
        if limit >= max && warning < max {
            // back under the limit: watch the warning level again (if memory is still above
            // it, the source says so at once and the limit is armed again, without a new warning)
            out.push(Action::SetMemoryLimit {
                app: app.id,
                pid,
                bytes: warning,
            });
        } else {
            // under the warning level: the next crossing deserves a new warning
            app.memory_warned = false;
        }
    }

    /// The kernel's OOM killer chose `pid`: its exit, when it comes, is classified `oom_kill`.
    pub(super) fn oom_killed(&mut self, pid: u32) {
        if let Some(app) = self.running_as(pid) {
            app.oom_victim = Some(pid);
        }
    }
}
