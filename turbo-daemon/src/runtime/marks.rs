//! Marks: every process the daemon spawns carries `TURBO_APP=<name>:<instance>:<id>:<home>` in
//! its environment, so that a daemon whose state file is behind (debounced, killed before the
//! write, a failed write, a backup one generation old) or lost finds the processes of its apps
//! in `/proc` and adopts them instead of starting copies (issue 15 items 11–13).
//!
//! The state file names each running process by pid and start time; a mark is the fallback
//! when that is missing or stale. A mark only counts when its process leads its own session
//! (as every spawned main process does; its descendants inherit the variable but not the
//! session, or have a marked parent), belongs to this home, and runs as the uid the app runs as:
//! an app can write any environment for its own children, but what it claims then is a process
//! of its own uid, which it could signal anyway.
//!
//! Pure: the `/proc` scan is `os::proc::tagged`; this module reads the values and decides
//! which process stands for which app.

use std::{collections::HashMap, path::Path};

use crate::{os::proc::Tagged, supervisor::AppId};

/// The environment variable.
pub const VAR: &str = "TURBO_APP";

/// What a mark says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// App name (names hold no `:`).
    pub name: String,
    /// Instance number.
    pub instance: u32,
    /// Its id in the daemon that spawned it.
    pub id: AppId,
}

/// The mark of a process of app `id` (`name`, `instance`) spawned by the daemon of `home`.
#[must_use]
pub fn value(name: &str, instance: u32, id: AppId, home: &Path) -> String {
    format!("{name}:{instance}:{id}:{}", home.display())
}

/// Reads a mark, if it is one of the daemon of `home`.
#[must_use]
pub fn parse(value: &str, home: &Path) -> Option<Mark> {
    let mut parts = value.splitn(4, ':');
    let (name, instance, id, of) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (Path::new(of) == home && !name.is_empty()).then_some(())?;
    Some(Mark {
        name: name.to_owned(),
        instance: instance.parse().ok()?,
        id: id.parse().ok()?,
    })
}

/// The marked main processes of one home's apps, by name and instance, newest first.
#[derive(Debug, Default)]
pub struct Found {
    by_app: HashMap<(String, u32), Vec<(Mark, Tagged)>>,
}

impl Found {
    /// Sorts `tagged` (every process carrying [`VAR`]) into the main processes of the apps of
    /// `home`: session leaders whose parent does not carry the same mark.
    #[must_use]
    pub fn new(tagged: Vec<Tagged>, home: &Path) -> Self {
        let marked_pids: HashMap<u32, String> =
            tagged.iter().map(|t| (t.pid, t.value.clone())).collect();
        let mut by_app: HashMap<(String, u32), Vec<(Mark, Tagged)>> = HashMap::new();
        for t in tagged {
            let Some(mark) = parse(&t.value, home) else {
                continue;
            };
            let inherited = marked_pids.get(&t.ppid) == Some(&t.value);
            if !t.session_leader || inherited {
                continue;
            }
            by_app
                .entry((mark.name.clone(), mark.instance))
                .or_default()
                .push((mark, t));
        }
        for list in by_app.values_mut() {
            list.sort_unstable_by_key(|(_, t)| std::cmp::Reverse(t.start_ticks));
        }
        Self { by_app }
    }

    /// Takes the processes marked as instance `instance` of app `name`: those of `uid`, the
    /// newest first (the one to adopt, unless the state file's own process still runs), then
    /// the others; marked processes of another uid are left out (a forged mark).
    pub fn take(&mut self, name: &str, instance: u32, uid: u32) -> Vec<Tagged> {
        self.by_app
            .remove(&(name.to_owned(), instance))
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, t)| t.uid == uid)
            .map(|(_, t)| t)
            .collect()
    }

    /// What no app of the state file claimed: apps the state file does not know (both files
    /// lost, or a backup older than the app), by name, each instance's processes newest first.
    #[must_use]
    pub fn unclaimed(self) -> Vec<(Mark, Vec<Tagged>)> {
        let mut out: Vec<(Mark, Vec<Tagged>)> = self
            .by_app
            .into_values()
            .filter_map(|list| {
                let mark = list.first()?.0.clone();
                Some((mark, list.into_iter().map(|(_, t)| t).collect()))
            })
            .collect();
        out.sort_unstable_by(|a, b| (&a.0.name, a.0.instance).cmp(&(&b.0.name, b.0.instance)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(pid: u32, ppid: u32, ticks: u64, uid: u32, leader: bool, value: &str) -> Tagged {
        Tagged {
            pid,
            start_ticks: ticks,
            ppid,
            uid,
            session_leader: leader,
            value: value.to_owned(),
        }
    }

    #[test]
    fn a_mark_names_app_instance_id_and_home() {
        let home = Path::new("/home/u/.turbo:x");
        let v = value("web", 2, 7, home);
        assert_eq!(v, "web:2:7:/home/u/.turbo:x");
        assert_eq!(
            parse(&v, home),
            Some(Mark {
                name: "web".into(),
                instance: 2,
                id: 7
            })
        );
        assert_eq!(parse(&v, Path::new("/other")), None, "another home's");
        assert_eq!(parse("web:x:7:/h", Path::new("/h")), None);
        assert_eq!(parse("garbage", home), None);
    }

    #[test]
    fn main_processes_of_this_home_newest_first() {
        let home = Path::new("/h");
        let web = value("web", 0, 1, home);
        let found = vec![
            tagged(10, 1, 100, 0, true, &web),    // an older copy
            tagged(20, 1, 200, 0, true, &web),    // the newest: adopted
            tagged(21, 20, 201, 0, false, &web),  // its child: not a session leader
            tagged(22, 20, 202, 0, true, &web),   // a setsid'd child: its parent is marked
            tagged(30, 1, 300, 1001, true, &web), // another uid's claim
            tagged(
                40,
                1,
                400,
                0,
                true,
                &value("web", 0, 1, Path::new("/other")),
            ),
            tagged(50, 1, 500, 0, true, &value("db", 1, 4, home)),
        ];
        let mut f = Found::new(found, home);
        let pids = |v: Vec<Tagged>| v.iter().map(|t| t.pid).collect::<Vec<_>>();
        assert_eq!(pids(f.take("web", 0, 0)), [20, 10]);
        assert!(f.take("web", 0, 0).is_empty(), "taken once");
        let rest = f.unclaimed();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0.name, "db");
        assert_eq!((rest[0].0.instance, rest[0].0.id), (1, 4));
        assert_eq!(pids(rest[0].1.clone()), [50]);
    }
}
