//! The keys of jobs, dependencies and schedules (`type`, `retries`, `depends_on`,
//! `depends_timeout`, `restart_with_deps`, `cron`, `timezone`) checked into a
//! [`Lifecycle`], and the check of a file's dependency graph as a whole (unknown names, an app
//! depending on itself, cycles), each problem at its entry's position.
//!
//! Pure reading of values: the cron expression and the zone are checked by the same code that
//! evaluates them (`spec::Schedule`). Nothing here starts anything or reads a clock.

use std::collections::{BTreeMap, HashMap};

use serde_yaml_ng::Value;

use super::{Problem, Scalar};
use crate::spec::{AppSpec, Condition, Dependency, Lifecycle, Overlap, Schedule, ScheduleAction};

/// The keys as written.
#[derive(Debug, Default)]
pub(super) struct JobKeys {
    pub kind: Option<String>,
    pub retries: Option<i64>,
    pub depends_on: Option<Value>,
    pub depends_timeout: Option<Scalar>,
    pub restart_with_deps: Option<bool>,
    pub cron: Option<Value>,
    pub timezone: Option<String>,
}

/// `{schedule, action, overlap}` of `cron:` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CronMap {
    schedule: String,
    action: Option<String>,
    overlap: Option<String>,
}

/// Checks the keys into a [`Lifecycle`]; problems go to `errors` at their key paths.
pub(super) fn lifecycle(keys: JobKeys, errors: &mut Vec<Problem>) -> Lifecycle {
    let mut l = Lifecycle::default();
    if let Some(kind) = keys.kind {
        match kind.parse() {
            Ok(k) => l.kind = k,
            Err(e) => errors.push(Problem::new("type", e).hint("use `type: oneshot` for a job")),
        }
    }
    if let Some(r) = keys.retries {
        match u32::try_from(r) {
            Ok(r) if r <= 1000 => l.retries = r,
            _ => errors.push(
                Problem::new(
                    "retries",
                    format!("retries {r} is not a count from 0 to 1000"),
                )
                .hint("give how many times a failed job runs again, like `retries: 3`"),
            ),
        }
    }
    if let Some(t) = &keys.depends_timeout {
        match t.duration("depends_timeout") {
            Ok(d) => l.depends_timeout = d,
            Err(f) => errors.push(f.at("depends_timeout")),
        }
    }
    l.restart_with_deps = keys.restart_with_deps.unwrap_or(false);
    if let Some(deps) = keys.depends_on {
        l.depends_on = dependencies(&deps, errors);
    }
    if let Some(tz) = &keys.timezone
        && let Err(e) = Schedule::check("* * * * *", Some(tz))
    {
        errors.push(Problem::new("timezone", e).hint("see `timedatectl list-timezones`"));
    }
    if let Some(cron) = keys.cron {
        l.cron = schedule(cron, keys.timezone, l.kind, errors);
    } else if keys.timezone.is_some() {
        errors.push(
            Problem::new(
                "timezone",
                "`timezone` without `cron` has nothing to apply to",
            )
            .hint("add a `cron:` schedule or remove `timezone`"),
        );
    }
    if keys.retries.is_some() && l.kind != crate::spec::AppKind::Oneshot {
        errors.push(
            Problem::new(
                "retries",
                "`retries` is for one-shot jobs (`type: oneshot`)",
            )
            .hint("a service restarts by `autorestart` and `restart:`"),
        );
    }
    l
}

fn dependencies(value: &Value, errors: &mut Vec<Problem>) -> Vec<Dependency> {
    let mut out = Vec::new();
    let hint = "write a list of app names, or a map like `{db: ready, migrate: completed}`";
    match value {
        Value::Sequence(items) => {
            for (j, item) in items.iter().enumerate() {
                match item {
                    Value::String(name) => out.push(Dependency {
                        name: name.clone(),
                        condition: Condition::Started,
                    }),
                    _ => errors.push(
                        Problem::new(format!("depends_on[{j}]"), "not an app name").hint(hint),
                    ),
                }
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map {
                let Value::String(name) = k else {
                    errors.push(Problem::new("depends_on", "a key is not an app name").hint(hint));
                    continue;
                };
                let at = format!("depends_on.{name}");
                match v.as_str().map(str::parse::<Condition>) {
                    Some(Ok(condition)) => out.push(Dependency {
                        name: name.clone(),
                        condition,
                    }),
                    Some(Err(e)) => errors.push(Problem::new(at, e).hint(hint)),
                    None => errors.push(
                        Problem::new(at, "the condition is not one of: started, ready, completed")
                            .hint(hint),
                    ),
                }
            }
        }
        _ => errors.push(Problem::new("depends_on", "is neither a list nor a map").hint(hint)),
    }
    out
}

fn schedule(
    value: Value,
    timezone: Option<String>,
    kind: crate::spec::AppKind,
    errors: &mut Vec<Problem>,
) -> Option<Schedule> {
    let job = kind == crate::spec::AppKind::Oneshot;
    let hint = "write `cron: \"0 3 * * *\"` or `cron: {schedule: \"0 3 * * *\", action: run, overlap: skip}`";
    let (expr, action, overlap, at) = match value {
        Value::String(expr) => (expr, None, None, "cron"),
        Value::Mapping(_) => match serde_yaml_ng::from_value::<CronMap>(value) {
            Ok(m) => (m.schedule, m.action, m.overlap, "cron.schedule"),
            Err(e) => {
                errors.push(Problem::new("cron", e.to_string()).hint(hint));
                return None;
            }
        },
        _ => {
            errors.push(Problem::new("cron", "is neither an expression nor a map").hint(hint));
            return None;
        }
    };
    let mut ok = true;
    if let Err(e) = Schedule::check(&expr, None) {
        errors.push(
            Problem::new(at, e)
                .hint("five fields (minute hour day month weekday), or six with seconds first"),
        );
        ok = false;
    }
    // a job runs by default, a service restarts
    let action = match action.map(|a| a.parse::<ScheduleAction>()) {
        None => {
            if job {
                ScheduleAction::Run
            } else {
                ScheduleAction::Restart
            }
        }
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            errors.push(Problem::new("cron.action", e));
            ok = false;
            ScheduleAction::Restart
        }
    };
    let overlap = match overlap.as_deref().map(str::parse::<Overlap>) {
        None => Overlap::Skip,
        Some(Ok(o)) if action == ScheduleAction::Run => o,
        Some(Ok(_)) => {
            errors.push(
                Problem::new("cron.overlap", "`overlap` applies to `action: run` only")
                    .hint("a restart replaces the running process anyway"),
            );
            ok = false;
            Overlap::Skip
        }
        Some(Err(e)) => {
            errors.push(Problem::new("cron.overlap", e));
            ok = false;
            Overlap::Skip
        }
    };
    ok.then_some(Schedule {
        expr,
        action,
        overlap,
        timezone,
    })
}

/// Where each spec's `depends_on` entries are written: the key path of entry `k` of spec `i`.
pub(super) type EntryPath<'a> = &'a dyn Fn(usize, usize) -> String;

/// Problems of the dependency graph of `specs` (the valid apps of a file and its includes;
/// `also_named`: the names of its apps with problems of their own): names that are no app of
/// the file, an app that depends on itself, and cycles (reported once, at the entry that closes
/// it). Returns `(index of the spec, problem)`.
pub(super) fn graph(
    specs: &[AppSpec],
    also_named: &[&str],
    entry: EntryPath<'_>,
) -> Vec<(usize, Problem)> {
    let index: HashMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut found = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        for (k, dep) in spec.lifecycle.depends_on.iter().enumerate() {
            if dep.name == spec.name {
                found.push((
                    i,
                    Problem::new(entry(i, k), format!("'{}' depends on itself", dep.name))
                        .hint("remove it from its own `depends_on`"),
                ));
            } else if !index.contains_key(dep.name.as_str())
                && !also_named.contains(&dep.name.as_str())
            {
                found.push((
                    i,
                    Problem::new(
                        entry(i, k),
                        format!("depends on '{}', which is no app of this file", dep.name),
                    )
                    .hint("define that app in this file (or an included one), or fix the name"),
                ));
            }
        }
    }
    // depth-first search for cycles; colour: 0 new, 1 on the path, 2 done
    let mut colour = vec![0u8; specs.len()];
    let mut reported: BTreeMap<Vec<usize>, ()> = BTreeMap::new();
    for start in 0..specs.len() {
        let mut path: Vec<(usize, usize)> = Vec::new(); // (spec, next entry)
        if colour[start] != 0 {
            continue;
        }
        colour[start] = 1;
        path.push((start, 0));
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let deps = &specs[node].lifecycle.depends_on;
            if *next >= deps.len() {
                colour[node] = 2;
                path.pop();
                continue;
            }
            let k = *next;
            *next += 1;
            let Some(&to) = index.get(deps[k].name.as_str()) else {
                continue;
            };
            if to == node {
                continue; // reported above
            }
            match colour[to] {
                0 => {
                    colour[to] = 1;
                    path.push((to, 0));
                }
                1 => {
                    let from = path.iter().position(|&(n, _)| n == to).unwrap_or(0);
                    let mut members: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                    let names: Vec<&str> = members
                        .iter()
                        .chain(std::iter::once(&to))
                        .map(|&n| specs[n].name.as_str())
                        .collect();
                    let cycle = names.join(" -> ");
                    members.sort_unstable();
                    if reported.insert(members, ()).is_none() {
                        found.push((
                            node,
                            Problem::new(entry(node, k), format!("dependency cycle: {cycle}"))
                                .hint("remove one of these dependencies: no app could start first"),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, deps: &[&str]) -> AppSpec {
        let mut s = AppSpec::new(name, vec!["/bin/true".into()], "/".into());
        s.lifecycle.depends_on = deps
            .iter()
            .map(|d| Dependency {
                name: (*d).into(),
                condition: Condition::Started,
            })
            .collect();
        s
    }

    fn problems(specs: &[AppSpec]) -> Vec<String> {
        graph(specs, &[], &|i, k| format!("apps[{i}].depends_on[{k}]"))
            .into_iter()
            .map(|(_, p)| format!("{}: {}", p.field, p.message))
            .collect()
    }

    #[test]
    fn chains_and_diamonds_are_valid() {
        let chain = [spec("a", &[]), spec("b", &["a"]), spec("c", &["b"])];
        assert!(problems(&chain).is_empty());
        let diamond = [
            spec("db", &[]),
            spec("cache", &["db"]),
            spec("migrate", &["db"]),
            spec("web", &["cache", "migrate"]),
        ];
        assert!(problems(&diamond).is_empty());
    }

    #[test]
    fn cycles_self_references_and_unknown_names_are_named_at_their_entry() {
        let cycle = [spec("a", &["c"]), spec("b", &["a"]), spec("c", &["b"])];
        assert_eq!(
            problems(&cycle),
            ["apps[1].depends_on[0]: dependency cycle: a -> c -> b -> a"]
        );
        let own = [spec("a", &["a"])];
        assert_eq!(
            problems(&own),
            ["apps[0].depends_on[0]: 'a' depends on itself"]
        );
        let unknown = [spec("web", &["db"])];
        assert_eq!(
            problems(&unknown),
            ["apps[0].depends_on[0]: depends on 'db', which is no app of this file"]
        );
    }
}
