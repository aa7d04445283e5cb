//! `ApplyConfig`: the plan of an apply (`crate::plan`) computed against the apps the daemon has
//! now, answered as it is (`dry_run`) or carried out as a chain of supervisor commands, one after
//! the other, answered when the last one has settled.
//!
//! The chain: delete the pruned apps first (their ports and names free up), then start the new
//! and the restart-class changed apps (`Command::Start`, which restarts a running app whose spec
//! changed), then hand the live changes and the new specs of the apps to reload to the running
//! apps (`Command::Update`), then reload those one at a time. The file was validated whole before
//! any of it (in the D-Bus adapter); a step the supervisor refuses (an app deleted meanwhile, a
//! reload whose replacement never gets ready) ends the chain with an error naming how far it got.
//! Nothing here decides how a field is applied: the plan does.

use std::collections::VecDeque;

use turbo_api::{AppChange, Error, FieldChange};

use super::{
    Runtime,
    requests::{Purpose, Reply, owned_by},
};
use crate::{
    access::Caller,
    plan::{self, Plan, Step},
    spec::AppSpec,
    supervisor::{Command, Desired, Target},
};

/// An apply as the runtime receives it: the validated specs of the whole file and the options.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyRequest {
    /// Every app of the file.
    pub specs: Vec<AppSpec>,
    /// Remove the apps the file does not have.
    pub prune: bool,
    /// Only these apps (empty: all).
    pub only: Vec<String>,
    /// Answer the plan, change nothing.
    pub dry_run: bool,
    /// Who asks: apps of other users may be changed or removed only by root and the daemon's
    /// user, as with a start call that redefines them.
    pub caller: Caller,
}

/// An apply under way: the commands still to submit and the answer once they are done.
#[derive(Debug)]
pub struct Chain {
    steps: VecDeque<Command>,
    /// How many commands went through already (for the error message).
    done: usize,
    answer: Vec<AppChange>,
    reply: Reply<Vec<AppChange>>,
}

/// The plan in the form the D-Bus answer carries.
#[must_use]
pub fn changes(plan: &Plan) -> Vec<AppChange> {
    plan.apps
        .iter()
        .map(|a| AppChange {
            name: a.name.clone(),
            action: a.step.as_str().to_owned(),
            fields: a
                .fields
                .iter()
                .map(|f| FieldChange {
                    field: f.field.to_owned(),
                    how: f.how.as_str().to_owned(),
                })
                .collect(),
        })
        .collect()
}

/// The supervisor commands that carry `plan` out, in order (see the module docs).
#[must_use]
pub fn commands(plan: &Plan) -> VecDeque<Command> {
    let specs = |steps: &[Step]| -> Vec<AppSpec> {
        plan.apps
            .iter()
            .filter(|a| steps.contains(&a.step))
            .filter_map(|a| a.spec.clone())
            .collect()
    };
    let mut out = VecDeque::new();
    out.extend(
        plan.with(Step::Remove)
            .map(|a| Command::Delete(Target::Name(a.name.clone()))),
    );
    let start = specs(&[Step::Add, Step::Restart]);
    if !start.is_empty() {
        out.push_back(Command::Start {
            specs: start,
            exclusive: false,
        });
    }
    let update = specs(&[Step::Update, Step::Reload]);
    if !update.is_empty() {
        out.push_back(Command::Update(update));
    }
    out.extend(
        plan.with(Step::Reload)
            .map(|a| Command::Reload(Target::Name(a.name.clone()))),
    );
    out
}

/// The text of a D-Bus error, without its name.
#[must_use]
pub fn message(e: &Error) -> String {
    match e {
        Error::ZBus(e) => e.to_string(),
        Error::NotFound(m)
        | Error::AlreadyExists(m)
        | Error::InvalidArgument(m)
        | Error::InvalidConfig(m)
        | Error::SpawnFailed(m)
        | Error::AccessDenied(m)
        | Error::Failed(m) => m.clone(),
    }
}

impl Runtime {
    /// Plans `req` against the apps now, and answers or starts carrying it out.
    pub(super) fn apply(&mut self, req: ApplyRequest, reply: Reply<Vec<AppChange>>) {
        let mut running: Vec<AppSpec> = Vec::new();
        let mut stopped: Vec<String> = Vec::new();
        let mut apps: Vec<_> = self.sup.apps().collect();
        // the lowest-numbered instance stands for an app (a reload's replacement shares it)
        apps.sort_by_key(|a| (a.instance, a.id));
        for app in apps {
            if !running.iter().any(|s| s.name == app.spec.name) {
                running.push(app.spec.clone());
                if app.desired == Desired::Stopped {
                    stopped.push(app.spec.name.clone());
                }
            }
        }
        let unknown: Vec<&str> = req
            .only
            .iter()
            .filter(|n| {
                !req.specs.iter().any(|s| &s.name == *n) && !running.iter().any(|s| &s.name == *n)
            })
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let _ = reply.send(Err(Error::NotFound(format!(
                "--only names apps that are neither in the file nor in the daemon: {}",
                unknown.join(", ")
            ))));
            return;
        }
        let plan = plan::plan(&running, &stopped, &req.specs, req.prune, &req.only);
        let answer = changes(&plan);
        let steps = commands(&plan);
        if !req.dry_run {
            let touched: Vec<AppSpec> = running
                .into_iter()
                .filter(|s| {
                    plan.apps.iter().any(|a| {
                        a.name == s.name
                            && matches!(
                                a.step,
                                Step::Update | Step::Restart | Step::Reload | Step::Remove
                            )
                    })
                })
                .collect();
            let daemon_uid = Caller::daemon().uid;
            if let Err(e) = owned_by(req.caller, touched, daemon_uid, Purpose::Redefine) {
                let _ = reply.send(Err(e));
                return;
            }
        }
        if req.dry_run || steps.is_empty() {
            let _ = reply.send(Ok(answer));
            return;
        }
        self.next_step(Chain {
            steps,
            done: 0,
            answer,
            reply,
        });
    }

    /// Submits the next command of `chain`, or answers it when none is left.
    fn next_step(&mut self, mut chain: Chain) {
        match chain.steps.pop_front() {
            Some(command) => self.submit(command, super::requests::Waiter::Chain(Box::new(chain))),
            None => {
                let _ = chain.reply.send(Ok(chain.answer));
            }
        }
    }

    /// The supervisor answered the current command of `chain`.
    pub(super) fn step_done(&mut self, mut chain: Chain, result: Result<(), Error>) {
        match result {
            Ok(()) => {
                chain.done += 1;
                self.next_step(chain);
            }
            Err(e) => {
                let how_far = if chain.done == 0 {
                    "nothing was changed".to_owned()
                } else {
                    format!(
                        "{} of {} steps were carried out before it; `turbo apply --dry-run` shows what is left",
                        chain.done,
                        chain.done + 1 + chain.steps.len()
                    )
                };
                let _ = chain.reply.send(Err(Error::Failed(format!(
                    "apply stopped: {}; {how_far}",
                    message(&e)
                ))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> AppSpec {
        AppSpec::new(name, vec!["/bin/sleep".into(), "9".into()], "/".into())
    }

    #[test]
    fn a_plan_becomes_commands_in_a_safe_order() {
        let mut web = spec("web");
        web.listen = vec!["127.0.0.1:8080".into()];
        let running = vec![spec("api"), spec("gone"), web.clone(), spec("worker")];
        let mut api = spec("api");
        api.kill_timeout = std::time::Duration::from_secs(1);
        let mut worker = spec("worker");
        worker.cwd = "/tmp".into();
        let mut web2 = web.clone();
        web2.env.push(("V".into(), "2".into()));
        let file = vec![spec("new"), api.clone(), web2.clone(), worker.clone()];
        let plan = plan::plan(&running, &[], &file, true, &[]);
        let cmds: Vec<Command> = commands(&plan).into();
        assert_eq!(
            cmds,
            vec![
                Command::Delete(Target::Name("gone".into())),
                Command::Start {
                    specs: vec![spec("new"), worker],
                    exclusive: false
                },
                Command::Update(vec![api, web2]),
                Command::Reload(Target::Name("web".into())),
            ]
        );
        let answer = changes(&plan);
        assert_eq!(answer[1].action, "update");
        assert_eq!(
            answer[1].fields,
            [FieldChange {
                field: "kill_timeout".into(),
                how: "live".into()
            }]
        );
        assert!(commands(&plan::plan(&running, &[], &running, false, &[])).is_empty());
    }
}
