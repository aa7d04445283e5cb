//! Cluster instances: several [`App`]s share a name, each with its own id, process, state,
//! restarts and backoff, numbered `0..spec.instances`. Scaling adds the missing numbers and
//! stops (and forgets) the highest ones. Pure like the rest of the core.

use std::time::Instant;

use super::{
    Action, AfterStop, App, AppId, CommandError, Desired, Notification, Reply, Supervisor, Target,
};
use crate::spec::AppSpec;

impl Supervisor {
    /// The ids of every app named `name` (every instance), in id order.
    pub(super) fn named(&self, name: &str) -> Vec<AppId> {
        self.apps
            .values()
            .filter(|a| a.spec.name == name)
            .map(|a| a.id)
            .collect()
    }

    /// Adds instance `instance` of `spec` (not started) and returns its new id.
    pub(super) fn add_instance(
        &mut self,
        spec: &AppSpec,
        instance: u32,
        out: &mut Vec<Action>,
    ) -> AppId {
        let id = self.next_id;
        self.next_id += 1;
        let mut app = App::new(id, spec.clone());
        app.instance = instance;
        self.apps.insert(id, Box::new(app));
        self.jobs.schedules_changed = true;
        out.push(Action::Notify(Notification::Added(id)));
        id
    }

    /// What a mutating command acts on: the target, without the replacements of an aborted
    /// reload that are on their way out (a `stop` must not keep one as an extra instance).
    pub(super) fn targets(&self, target: &Target) -> Result<Vec<AppId>, CommandError> {
        let mut ids = self.resolve(target)?;
        ids.retain(|id| !self.retiring.contains(id));
        Ok(ids)
    }

    /// `turbo scale`: checks the request, then [`Self::scale_to`].
    pub(super) fn scale(
        &mut self,
        name: &str,
        count: u32,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(Vec<AppId>, Reply, bool), CommandError> {
        if self.named(name).is_empty() {
            return Err(CommandError::NotFound(name.to_owned()));
        }
        if count == 0 {
            return Err(CommandError::Invalid(format!(
                "cannot scale '{name}' to 0 instances: `turbo stop {name}` stops them all"
            )));
        }
        if self.reloading(name) {
            return Err(CommandError::Busy(name.to_owned()));
        }
        let ids = self.scale_to(name, count, now, out);
        out.push(Action::Notify(Notification::Persist));
        // new instances must have started and removed ones stopped before the answer (which
        // lists the ones still there then)
        Ok((ids.clone(), Reply::Apps(ids), true))
    }

    /// Makes `count` instances of `name` exist: instances numbered `count` and above stop and
    /// are forgotten, missing numbers below `count` are added (and started when the app should
    /// run, as instance 0 says). Returns every id involved, kept, added or going.
    pub(super) fn scale_to(
        &mut self,
        name: &str,
        count: u32,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Vec<AppId> {
        let ids = self.named(name);
        let Some(first) = ids.iter().min_by_key(|id| self.apps[*id].instance).copied() else {
            return ids;
        };
        let (mut spec, desired) = {
            let a = &self.apps[&first];
            (a.spec.clone(), a.desired)
        };
        spec.instances = count;
        let mut touched = Vec::new();
        for &id in &ids {
            let app = self.apps.get_mut(&id).expect("named");
            app.spec.instances = count;
            if app.instance >= count {
                // the highest-numbered go, gracefully
                self.stop_one(id, AfterStop::Forget, now, out);
            }
            touched.push(id);
        }
        for instance in 0..count {
            if ids
                .iter()
                .any(|id| self.apps.get(id).is_some_and(|a| a.instance == instance))
            {
                continue;
            }
            let id = self.add_instance(&spec, instance, out);
            self.apps.get_mut(&id).expect("added").desired = desired;
            if desired == Desired::Running {
                self.begin_start(id, out);
            }
            touched.push(id);
        }
        touched
    }
}
