//! Update: running apps take over a new spec without a restart (`turbo apply` of changes that
//! `crate::plan` classifies as live, and the new spec of an app about to be reloaded).
//!
//! The supervisor reads an app's spec whenever it decides (restart policy, stop signal, kill
//! timeout, health timing), so swapping it is enough for those; a new memory threshold is handed
//! to the running process's watch at once, new cgroup limits to its cgroup, and a new instance count scales. It must not decide
//! which changes are live: the plan does, and sends only those here.

use std::time::Instant;

use super::{Action, AppId, CommandError, Notification, Reply, State, Supervisor};
use crate::spec::AppSpec;

impl Supervisor {
    pub(super) fn update(
        &mut self,
        specs: Vec<AppSpec>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(Vec<AppId>, Reply, bool), CommandError> {
        // all or nothing: every name must exist and be free before any spec changes
        for spec in &specs {
            if self.find(&spec.name).is_none() {
                return Err(CommandError::NotFound(spec.name.clone()));
            }
            if self.reloading(&spec.name) {
                return Err(CommandError::Busy(spec.name.clone()));
            }
        }
        let mut touched = Vec::new();
        for spec in specs {
            let count = spec.instances.max(1);
            for id in self.named(&spec.name) {
                let app = self.apps.get_mut(&id).expect("named");
                let memory_changed = app.spec.memory != spec.memory;
                let limits_changed = app.spec.resources != spec.resources;
                app.spec = AppSpec {
                    // scale_to below changes it along with the instances
                    instances: app.spec.instances,
                    ..spec.clone()
                };
                self.jobs.schedules_changed = true;
                if let (true, State::Online { pid, .. }, Some(bytes)) =
                    (memory_changed, &app.state, app.spec.memory.warning())
                {
                    app.memory_warned = false;
                    out.push(Action::SetMemoryLimit {
                        app: id,
                        pid: *pid,
                        bytes,
                    });
                }
                if limits_changed && app.pid().is_some() {
                    out.push(Action::SetCgroupLimits { app: id });
                }
                out.push(Action::Notify(Notification::StateChanged(id)));
            }
            touched.extend(self.scale_to(&spec.name, count, now, out));
        }
        out.push(Action::Notify(Notification::Persist));
        Ok((touched.clone(), Reply::Apps(touched), false))
    }
}
