//! Least privilege for apps: the `user`, `group`, `groups`, `umask`, `rlimits`, `nice` and
//! `oom_score_adj` keys as written, checked and resolved into `spec::Privileges` when a config
//! is validated.
//!
//! Names become ids here, once, so a typo is a config error with its position rather than a
//! spawn failure at 3 a.m., and `describe` shows exactly what runs. Each value is also checked
//! against what the caller may grant (`access::Powers`, which decides; this module words the
//! refusal): only root may run an app as another user or group, give it supplementary groups,
//! raise a hard limit above its own, or lower nice or `oom_score_adj` below its own. Without
//! these checks a non-root daemon would accept the config and then fail every spawn with a bare
//! `EPERM`. For a non-root caller of a root daemon an app without `user:` runs as the caller.
//! `runtime::sys::spawn` applies the result between fork and exec.

use std::fmt;

use serde::Deserialize;

use super::Problem;
use crate::{
    access::{LimitKind, Powers},
    os::users,
    spec::{
        ProcessLimits, Rlimit, RunAs, limit_text,
        units::{self, Bounds, Written},
    },
};

/// A scalar that is either an integer or text, with a type error message of its own.
macro_rules! int_or_text {
    ($(#[$meta:meta])* $name:ident, $expecting:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub(super) enum $name {
            Int(i64),
            Text(String),
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_i64<E>(self, v: i64) -> Result<$name, E> {
                        Ok($name::Int(v))
                    }
                    fn visit_u64<E>(self, v: u64) -> Result<$name, E> {
                        Ok($name::Int(i64::try_from(v).unwrap_or(i64::MAX)))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<$name, E> {
                        Ok($name::Text(v.to_owned()))
                    }
                }
                de.deserialize_any(Visitor)
            }
        }
    };
}

int_or_text!(
    /// `user:`, `group:` or an item of `groups:`: a name or a numeric id.
    NameOrId,
    "a name or a numeric id"
);
int_or_text!(
    /// `umask:`, best written as a quoted octal string (`'027'`).
    UmaskValue,
    "an octal umask as a quoted string, like '027'"
);
int_or_text!(
    /// One number of an rlimit: a count, `unlimited`, or (for `core`) a size like `1gb`.
    LimitWord,
    "a number or `unlimited`"
);

/// `rlimits.<name>:` as written: `N`, `unlimited`, or `[soft, hard]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum LimitConfig {
    Both(LimitWord),
    Pair(Vec<LimitWord>),
}

impl<'de> Deserialize<'de> for LimitConfig {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = LimitConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, `unlimited`, or [soft, hard]")
            }
            fn visit_i64<E>(self, v: i64) -> Result<LimitConfig, E> {
                Ok(LimitConfig::Both(LimitWord::Int(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LimitConfig, E> {
                Ok(LimitConfig::Both(LimitWord::Int(
                    i64::try_from(v).unwrap_or(i64::MAX),
                )))
            }
            fn visit_str<E>(self, v: &str) -> Result<LimitConfig, E> {
                Ok(LimitConfig::Both(LimitWord::Text(v.to_owned())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<LimitConfig, A::Error> {
                let mut words = Vec::new();
                while let Some(w) = seq.next_element()? {
                    words.push(w);
                }
                Ok(LimitConfig::Pair(words))
            }
        }
        de.deserialize_any(Visitor)
    }
}

/// `rlimits:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RlimitsConfig {
    pub(super) nofile: Option<LimitConfig>,
    pub(super) nproc: Option<LimitConfig>,
    pub(super) core: Option<LimitConfig>,
}

/// The privilege keys of one app, as written (moved out of its `AppConfig`).
#[derive(Debug, Default)]
pub(super) struct Keys {
    pub(super) user: Option<NameOrId>,
    pub(super) group: Option<NameOrId>,
    pub(super) groups: Option<Vec<NameOrId>>,
    pub(super) umask: Option<UmaskValue>,
    pub(super) rlimits: RlimitsConfig,
    pub(super) nice: Option<i64>,
    pub(super) oom_score_adj: Option<i64>,
}

/// Checks and resolves the privilege keys of an app. Problems go to `errors`, each at the key
/// path of its value.
pub(super) fn resolve(
    app: &Keys,
    powers: &Powers,
    errors: &mut Vec<Problem>,
) -> (Option<RunAs>, ProcessLimits) {
    let run_as = resolve_run_as(app, powers, errors);
    let mut limits = ProcessLimits::default();
    if let Some(u) = &app.umask {
        match parse_umask(u) {
            Ok(mode) => limits.umask = Some(mode),
            Err(e) => errors.push(Problem::new("umask", e)),
        }
    }
    let r = &app.rlimits;
    limits.nofile = rlimit(LimitKind::Nofile, r.nofile.as_ref(), powers, errors);
    limits.nproc = rlimit(LimitKind::Nproc, r.nproc.as_ref(), powers, errors);
    limits.core = rlimit(LimitKind::Core, r.core.as_ref(), powers, errors);
    if let Some(n) = app.nice {
        match i32::try_from(n).ok().filter(|n| (-20..=19).contains(n)) {
            None => errors.push(Problem::new(
                "nice",
                format!("nice {n} is out of range: use -20 (most favoured) to 19 (background)"),
            )),
            Some(n) if n < powers.lowest_nice() => {
                errors.push(Problem::new(
                    "nice",
                    format!(
                        "nice {n} is below the daemon's own ({}): only root may lower it; use {} or more, or {}",
                        powers.nice,
                        powers.lowest_nice(),
                        powers.root_hint()
                    ),
                ));
            }
            Some(n) => limits.nice = Some(n),
        }
    }
    if let Some(n) = app.oom_score_adj {
        match i32::try_from(n).ok().filter(|n| (-1000..=1000).contains(n)) {
            None => errors.push(Problem::new(
                "oom_score_adj",
                format!(
                    "oom_score_adj {n} is out of range: use -1000 (never killed) to 1000 (killed first)"
                ),
            )),
            Some(n) if n < powers.lowest_oom_score_adj() => {
                errors.push(Problem::new(
                    "oom_score_adj",
                    format!(
                        "oom_score_adj {n} is below the daemon's own ({}): only root may lower it; use {} or more, or {}",
                        powers.oom_score_adj,
                        powers.oom_score_adj,
                        powers.root_hint()
                    ),
                ));
            }
            Some(n) => limits.oom_score_adj = Some(n),
        }
    }
    (run_as, limits)
}

/// `user`/`group`/`groups` as an identity, or `None` when none of them is given (the daemon's
/// own identity). For a non-root caller there is always one: the caller's, unless refused.
fn resolve_run_as(app: &Keys, powers: &Powers, errors: &mut Vec<Problem>) -> Option<RunAs> {
    let nothing_asked = app.user.is_none() && app.group.is_none() && app.groups.is_none();
    if nothing_asked && powers.caller.is_none() {
        return None;
    }
    let user = match &app.user {
        Some(u) => lookup_user(u).map_err(|e| errors.push(Problem::new("user", e))),
        // `group:` or `groups:` alone: the daemon's own user (or the caller) with other groups
        None => match users::user_by_uid(powers.euid) {
            Ok(Some(u)) => Ok(u),
            Ok(None) => {
                let at = if app.group.is_some() {
                    "group"
                } else if app.groups.is_some() {
                    "groups"
                } else {
                    ""
                };
                errors.push(Problem::new(
                    at,
                    format!(
                        "uid {} has no passwd entry ({}): add `user:` with a user that has one",
                        powers.euid,
                        powers.holder()
                    ),
                ));
                Err(())
            }
            Err(e) => {
                errors.push(Problem::new(
                    "user",
                    format!("cannot look up the daemon's own user: {e}"),
                ));
                Err(())
            }
        },
    };
    let user = user.ok()?;
    let other_user = !powers.may_run_as_user(user.uid);
    if other_user {
        errors.push(Problem::new(
            "user",
            format!(
                "user {} (uid {}): only root may run apps as another user, and {}: remove `user:` or {}",
                user.name,
                user.uid,
                powers.holder(),
                powers.root_hint()
            ),
        ));
    }
    let group = match &app.group {
        Some(g) => match lookup_group(g, "group") {
            Ok(g) => Some(g),
            Err(e) => {
                errors.push(Problem::new("group", e));
                None
            }
        },
        None => Some(group_named(user.gid)),
    }?;
    // a defaulted group of a refused user is the same mistake: one message is enough
    if !powers.may_run_with_group(group.gid) && (app.group.is_some() || !other_user) {
        errors.push(Problem::new(
            "group",
            format!(
                "group {} (gid {}): only root may run apps with another group, and {} with group gid {}: remove `group:` or {}",
                group.name,
                group.gid,
                powers.holder(),
                powers.egid,
                powers.root_hint()
            ),
        ));
    }
    let groups = match &app.groups {
        Some(list) => {
            if !powers.may_set_groups() {
                errors.push(Problem::new(
                    "groups",
                    format!(
                        "only root may set supplementary groups (setgroups needs CAP_SETGID), and {}: remove `groups:` or {}",
                        powers.holder(),
                        powers.root_hint()
                    ),
                ));
            }
            let mut groups = Vec::new();
            for (i, g) in list.iter().enumerate() {
                match lookup_group(g, "group") {
                    Ok(g) if groups.iter().any(|(_, gid)| *gid == g.gid) => {}
                    Ok(g) => groups.push((g.name, g.gid)),
                    Err(e) => errors.push(Problem::new(format!("groups[{i}]"), e)),
                }
            }
            groups
        }
        // a non-root daemon cannot change its groups: the app keeps the daemon's (or, for a
        // non-root caller, the caller's groups in the group database)
        None if !powers.may_set_groups() => powers
            .groups
            .iter()
            .map(|&gid| {
                let g = group_named(gid);
                (g.name, g.gid)
            })
            .collect(),
        None => match users::group_list(&user.name, group.gid) {
            Ok(gids) => gids
                .into_iter()
                .map(|gid| {
                    let g = group_named(gid);
                    (g.name, g.gid)
                })
                .collect(),
            Err(e) => {
                errors.push(Problem::new(
                    if app.user.is_some() { "user" } else { "group" },
                    format!(
                        "cannot read the groups of {}: {e}; list them in `groups:`",
                        user.name
                    ),
                ));
                Vec::new()
            }
        },
    };
    Some(RunAs {
        user: user.name,
        uid: user.uid,
        group: group.name,
        gid: group.gid,
        groups,
        home: user.home,
        shell: user.shell,
    })
}

/// A name or an id: text made only of digits is an id, as `chown` reads it.
fn as_id(v: &NameOrId) -> Result<Option<u32>, String> {
    let n = match v {
        NameOrId::Int(n) => *n,
        NameOrId::Text(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            t.parse().unwrap_or(i64::MAX)
        }
        NameOrId::Text(_) => return Ok(None),
    };
    // (uid_t)-1 means "unchanged" to the set*id calls, so it is no id
    match u32::try_from(n) {
        Ok(id) if id != u32::MAX => Ok(Some(id)),
        _ => Err(format!("{n} is not a valid id (0 to {})", u32::MAX - 1)),
    }
}

fn lookup_user(v: &NameOrId) -> Result<users::User, String> {
    let hint = "create it (useradd --system NAME) or name an existing user";
    match as_id(v).map_err(|e| format!("user {e}"))? {
        Some(uid) => match users::user_by_uid(uid) {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err(format!(
                "uid {uid} has no passwd entry (its HOME and name are needed): {hint}"
            )),
            Err(e) => Err(format!("cannot look up uid {uid}: {e}")),
        },
        None => {
            let NameOrId::Text(name) = v else {
                unreachable!("an Int is an id")
            };
            match users::user_by_name(name) {
                Ok(Some(u)) => Ok(u),
                Ok(None) => Err(format!("unknown user '{name}': {hint}")),
                Err(e) => Err(format!("cannot look up user '{name}': {e}")),
            }
        }
    }
}

fn lookup_group(v: &NameOrId, what: &str) -> Result<users::Group, String> {
    let hint = "create it (groupadd --system NAME) or name an existing group";
    match as_id(v).map_err(|e| format!("{what} {e}"))? {
        Some(gid) => match users::group_by_gid(gid) {
            Ok(Some(g)) => Ok(g),
            Ok(None) => Err(format!("gid {gid} has no group entry: {hint}")),
            Err(e) => Err(format!("cannot look up gid {gid}: {e}")),
        },
        None => {
            let NameOrId::Text(name) = v else {
                unreachable!("an Int is an id")
            };
            match users::group_by_name(name) {
                Ok(Some(g)) => Ok(g),
                Ok(None) => Err(format!("unknown group '{name}': {hint}")),
                Err(e) => Err(format!("cannot look up group '{name}': {e}")),
            }
        }
    }
}

/// The group of `gid`, named by the number when it has no entry (a user's primary group need
/// not exist in `/etc/group`).
fn group_named(gid: u32) -> users::Group {
    users::group_by_gid(gid)
        .ok()
        .flatten()
        .unwrap_or(users::Group {
            name: gid.to_string(),
            gid,
        })
}

fn parse_umask(v: &UmaskValue) -> Result<u32, String> {
    match v {
        UmaskValue::Int(0) => Ok(0),
        UmaskValue::Int(n) => Err(format!(
            "umask {n} is a bare number, which YAML may read in decimal: quote it as an octal string, like umask: '027'"
        )),
        UmaskValue::Text(t) => {
            let digits = t.trim();
            let digits = digits.strip_prefix("0o").unwrap_or(digits);
            u32::from_str_radix(digits, 8)
                .ok()
                .filter(|m| *m <= 0o777 && !digits.is_empty() && !digits.starts_with('+'))
                .ok_or_else(|| {
                    format!("umask '{t}' is not an octal mode from '000' to '777': use one like '027' (group may read, others nothing)")
                })
        }
    }
}

fn rlimit(
    kind: LimitKind,
    cfg: Option<&LimitConfig>,
    powers: &Powers,
    errors: &mut Vec<Problem>,
) -> Option<Rlimit> {
    let name = kind.name();
    let at = format!("rlimits.{name}");
    let limit = match cfg? {
        LimitConfig::Both(w) => match limit_value(name, w) {
            Ok(v) => Rlimit { soft: v, hard: v },
            Err(e) => {
                errors.push(Problem::new(at, e));
                return None;
            }
        },
        LimitConfig::Pair(words) => {
            let [soft, hard] = words.as_slice() else {
                errors.push(Problem::new(
                    at,
                    format!(
                        "rlimits.{name} has {} values: give one (soft = hard) or two, [soft, hard]",
                        words.len()
                    ),
                ));
                return None;
            };
            let mut value = |i: usize, w: &LimitWord| {
                limit_value(name, w)
                    .map_err(|e| errors.push(Problem::new(format!("{at}[{i}]"), e)))
                    .ok()
            };
            let (soft, hard) = (value(0, soft), value(1, hard));
            let (soft, hard) = (soft?, hard?);
            if soft > hard {
                errors.push(Problem::new(
                    at,
                    format!(
                        "rlimits.{name}: the soft limit {} is above the hard limit {}: write [soft, hard] with soft <= hard",
                        limit_text(soft),
                        limit_text(hard)
                    ),
                ));
                return None;
            }
            Rlimit { soft, hard }
        }
    };
    if kind == LimitKind::Nofile && limit.hard > powers.nr_open {
        errors.push(Problem::new(
            at,
            format!(
                "rlimits.nofile {} is above the kernel's ceiling {} (/proc/sys/fs/nr_open): use at most that",
                limit_text(limit.hard),
                powers.nr_open
            ),
        ));
        return None;
    }
    if let Some(own) = powers.highest_hard_limit(kind)
        && limit.hard > own
    {
        errors.push(Problem::new(
            at,
            format!(
                "rlimits.{name}: the hard limit {} is above the daemon's own ({}): only root may raise it; use at most {}",
                limit_text(limit.hard),
                limit_text(own),
                limit_text(own)
            ),
        ));
        return None;
    }
    Some(limit)
}

fn limit_value(name: &str, w: &LimitWord) -> Result<u64, String> {
    let hint = if name == "core" {
        "a size like 0, 512mb or unlimited"
    } else {
        "a count or unlimited"
    };
    match w {
        LimitWord::Int(n) => u64::try_from(*n)
            .ok()
            .filter(|n| *n != Rlimit::UNLIMITED)
            .ok_or_else(|| format!("rlimits.{name} {n} is negative: use {hint}")),
        LimitWord::Text(t) if matches!(t.trim(), "unlimited" | "infinity") => Ok(Rlimit::UNLIMITED),
        LimitWord::Text(t) => {
            let parsed = if name == "core" {
                units::size(Written::Text(t), Bounds::ANY_SIZE).ok()
            } else {
                t.trim().parse().ok()
            };
            parsed
                .filter(|n| *n != Rlimit::UNLIMITED)
                .ok_or_else(|| format!("rlimits.{name} '{t}' is not {hint}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{
        config::parse_config_with,
        spec::{AppSpec, Privileges},
    };

    const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

    fn root() -> Powers {
        Powers {
            euid: 0,
            egid: 0,
            groups: vec![0],
            nice: 0,
            nice_floor: -20,
            oom_score_adj: 0,
            hard: [4096, 1000, 0],
            nr_open: 1 << 20,
            caller: None,
        }
    }

    /// A daemon running as `nobody`, with a hard nofile of 4096 and no core dumps.
    fn nobody_daemon() -> Powers {
        let n = nobody();
        Powers {
            euid: n.uid,
            egid: n.gid,
            groups: vec![n.gid],
            nice_floor: 20,
            ..root()
        }
    }

    fn nobody() -> users::User {
        users::user_by_name("nobody")
            .unwrap()
            .expect("the nobody user (Debian and most systems have it)")
    }

    /// The one app of `keys` (YAML lines at app level, each starting with 4 spaces).
    fn app(keys: &str, powers: &Powers) -> Result<AppSpec, String> {
        let yml = format!("apps:\n  - name: a\n    cmd: [sleep, '1']\n{keys}");
        parse_config_with(&yml, "t.yml", Path::new("/"), PATH, powers).map(|mut s| s.remove(0))
    }

    fn err(keys: &str, powers: &Powers) -> String {
        app(keys, powers).expect_err("should be refused")
    }

    #[test]
    fn nothing_asked_means_nothing_changed() {
        let spec = app("", &root()).unwrap();
        assert_eq!(*spec.privileges, Privileges::default());
    }

    #[test]
    fn users_and_groups_resolve_to_ids() {
        let n = nobody();
        let spec = app("    user: nobody\n", &root()).unwrap();
        let r = spec.privileges.run_as.as_ref().unwrap();
        assert_eq!((r.user.as_str(), r.uid, r.gid), ("nobody", n.uid, n.gid));
        assert_eq!(
            (r.home.as_str(), r.shell.as_str()),
            (n.home.as_str(), n.shell.as_str())
        );
        let initgroups: Vec<u32> = users::group_list("nobody", n.gid).unwrap();
        assert_eq!(
            r.groups.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
            initgroups,
            "default: the user's groups"
        );
        // a uid, as a number or as digits, names the same user
        for keys in [
            format!("    user: {}\n", n.uid),
            format!("    user: '{}'\n", n.uid),
        ] {
            let same = app(&keys, &root()).unwrap();
            assert_eq!(same.privileges.run_as, spec.privileges.run_as, "{keys}");
        }
        // explicit group and supplementary groups (exactly these, once each)
        let spec = app(
            "    user: nobody\n    group: root\n    groups: [root, 0]\n",
            &root(),
        )
        .unwrap();
        let r = spec.privileges.run_as.unwrap();
        assert_eq!((r.group.as_str(), r.gid), ("root", 0));
        assert_eq!(r.groups, [("root".to_owned(), 0)]);
        let spec = app("    user: nobody\n    groups: []\n", &root()).unwrap();
        assert!(
            spec.privileges.run_as.unwrap().groups.is_empty(),
            "groups: [] drops them all"
        );
        // `group:` alone: the daemon's own user with that group
        let spec = app("    group: root\n", &root()).unwrap();
        let r = spec.privileges.run_as.unwrap();
        assert_eq!((r.user.as_str(), r.uid, r.gid), ("root", 0, 0));
    }

    #[test]
    fn limits_in_every_form() {
        let spec = app(
            "    umask: '027'\n    rlimits: { nofile: [256, 512], nproc: 100, core: unlimited }\n    nice: -5\n    oom_score_adj: -900\n",
            &root(),
        )
        .unwrap();
        let l = &spec.privileges.limits;
        assert_eq!(l.umask, Some(0o027));
        assert_eq!(
            l.nofile,
            Some(Rlimit {
                soft: 256,
                hard: 512
            })
        );
        assert_eq!(
            l.nproc,
            Some(Rlimit {
                soft: 100,
                hard: 100
            })
        );
        assert_eq!(
            l.core,
            Some(Rlimit {
                soft: Rlimit::UNLIMITED,
                hard: Rlimit::UNLIMITED
            })
        );
        assert_eq!((l.nice, l.oom_score_adj), (Some(-5), Some(-900)));
        // YAML reads an unquoted 027 as text (a leading zero is not a YAML 1.2 integer)
        for (umask, mode) in [("027", 0o027), ("'0o77'", 0o077), ("'0'", 0), ("0", 0)] {
            let spec = app(&format!("    umask: {umask}\n"), &root()).unwrap();
            assert_eq!(spec.privileges.limits.umask, Some(mode), "{umask}");
        }
        let spec = app("    rlimits:\n      core: [0, 1gb]\n", &root()).unwrap();
        assert_eq!(
            spec.privileges.limits.core,
            Some(Rlimit {
                soft: 0,
                hard: 1 << 30
            })
        );
    }

    #[test]
    fn each_problem_points_at_its_value_with_a_hint() {
        // (app keys, start of the message, a hint it must give)
        let cases: &[(&str, &str, &str)] = &[
            (
                "    user: no-such-user-turbo\n",
                "t.yml:4:11: apps[0] (a): unknown user 'no-such-user-turbo'",
                "useradd --system",
            ),
            (
                "    user: 4000000000\n",
                "t.yml:4:11: apps[0] (a): uid 4000000000 has no passwd entry",
                "name an existing user",
            ),
            (
                "    user: 4294967295\n",
                "t.yml:4:11: apps[0] (a): user 4294967295 is not a valid id",
                "0 to 4294967294",
            ),
            (
                "    user: nobody\n    groups: [root, no-such-group-turbo]\n",
                "t.yml:5:20: apps[0] (a): unknown group 'no-such-group-turbo'",
                "groupadd",
            ),
            (
                "    group: no-such-group-turbo\n",
                "t.yml:4:12: apps[0] (a): unknown group",
                "name an existing group",
            ),
            (
                "    umask: 22\n",
                "t.yml:4:12: apps[0] (a): umask 22 is a bare number",
                "umask: '027'",
            ),
            (
                "    umask: '0999'\n",
                "t.yml:4:12: apps[0] (a): umask '0999' is not an octal mode",
                "like '027'",
            ),
            (
                "    rlimits: { nofile: [512, 256] }\n",
                "t.yml:4:24: apps[0] (a): rlimits.nofile: the soft limit 512 is above the hard limit 256",
                "soft <= hard",
            ),
            (
                "    rlimits: { nproc: [1, 2, 3] }\n",
                "t.yml:4:23: apps[0] (a): rlimits.nproc has 3 values",
                "[soft, hard]",
            ),
            (
                "    rlimits: { nofile: [10, lots] }\n",
                "t.yml:4:29: apps[0] (a): rlimits.nofile 'lots' is not a count or unlimited",
                "unlimited",
            ),
            (
                "    rlimits: { nproc: -1 }\n",
                "t.yml:4:23: apps[0] (a): rlimits.nproc -1 is negative",
                "a count or unlimited",
            ),
            (
                "    rlimits: { nofile: unlimited }\n",
                "t.yml:4:24: apps[0] (a): rlimits.nofile unlimited is above the kernel's ceiling 1048576",
                "/proc/sys/fs/nr_open",
            ),
            (
                "    rlimits: { stack: 1 }\n",
                "t.yml:4:16: apps[0].rlimits: unknown field `stack`",
                "expected one of `nofile`, `nproc`, `core`",
            ),
            (
                "    nice: 20\n",
                "t.yml:4:11: apps[0] (a): nice 20 is out of range",
                "-20 (most favoured) to 19",
            ),
            (
                "    oom_score_adj: -1001\n",
                "t.yml:4:20: apps[0] (a): oom_score_adj -1001 is out of range",
                "-1000 (never killed)",
            ),
            (
                "    user: [nobody]\n",
                "t.yml:4:11: apps[0].user: invalid type: sequence",
                "expected a name or a numeric id",
            ),
        ];
        for (keys, start, hint) in cases {
            let e = err(keys, &root());
            assert_eq!(e.lines().count(), 1, "{keys:?} gave {e}");
            assert!(e.starts_with(start), "{keys:?} gave {e}\nwanted {start}");
            assert!(e.contains(hint), "{keys:?} gave {e}\nwanted {hint}");
        }
    }

    /// A non-root daemon may only give an app what it has itself: checked when the config is
    /// validated, with the reason, rather than failing every spawn with EPERM.
    #[test]
    fn a_non_root_daemon_refuses_what_only_root_may_grant() {
        let me = nobody_daemon();
        // its own user is fine, and the app keeps the daemon's groups (setgroups needs root)
        let spec = app("    user: nobody\n", &me).unwrap();
        let r = spec.privileges.run_as.unwrap();
        assert_eq!((r.uid, r.gid), (me.euid, me.egid));
        assert_eq!(
            r.groups.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
            me.groups
        );
        // lowering the soft limit, raising nice and oom_score_adj are fine too
        app(
            "    rlimits: { nofile: [64, 4096] }\n    nice: 10\n    oom_score_adj: 100\n",
            &me,
        )
        .unwrap();

        let cases: &[(&str, &str, &str)] = &[
            (
                "    user: root\n",
                "t.yml:4:11: apps[0] (a): user root (uid 0): only root may run apps as another user, and the daemon runs as nobody",
                "remove `user:` or run the daemon as root",
            ),
            (
                "    user: nobody\n    group: root\n",
                "t.yml:5:12: apps[0] (a): group root (gid 0): only root may run apps with another group",
                "run the daemon as root",
            ),
            (
                "    groups: [nogroup]\n",
                "t.yml:4:13: apps[0] (a): only root may set supplementary groups",
                "remove `groups:`",
            ),
            (
                "    rlimits: { nofile: 8192 }\n",
                "t.yml:4:24: apps[0] (a): rlimits.nofile: the hard limit 8192 is above the daemon's own (4096)",
                "use at most 4096",
            ),
            (
                "    rlimits: { core: unlimited }\n",
                "t.yml:4:22: apps[0] (a): rlimits.core: the hard limit unlimited is above the daemon's own (0)",
                "only root may raise it",
            ),
            (
                "    nice: -1\n",
                "t.yml:4:11: apps[0] (a): nice -1 is below the daemon's own (0)",
                "use 0 or more",
            ),
            (
                "    oom_score_adj: -100\n",
                "t.yml:4:20: apps[0] (a): oom_score_adj -100 is below the daemon's own (0)",
                "only root may lower it",
            ),
        ];
        for (keys, start, hint) in cases {
            let e = err(keys, &me);
            assert_eq!(e.lines().count(), 1, "{keys:?} gave {e}");
            assert!(e.starts_with(start), "{keys:?} gave {e}\nwanted {start}");
            assert!(e.contains(hint), "{keys:?} gave {e}\nwanted {hint}");
        }
        // every problem at once, one line each
        let e = err("    user: root\n    nice: -1\n    oom_score_adj: -5\n", &me);
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    /// A non-root caller of a root daemon: what `Powers::for_caller` gives for uid 65534.
    fn nobody_caller() -> Powers {
        let n = nobody();
        Powers {
            euid: n.uid,
            egid: n.gid,
            groups: users::group_list(&n.name, n.gid).unwrap(),
            nice_floor: 20,
            caller: Some(n.name),
            ..root()
        }
    }

    /// The security finding this closes: an app without `user:` started by a non-root caller
    /// ran as the daemon, root. Now it runs as the caller, and naming anyone else is refused.
    #[test]
    fn a_non_root_callers_apps_run_as_the_caller() {
        let me = nobody_caller();
        let n = nobody();
        let spec = app("", &me).unwrap();
        let r = spec
            .privileges
            .run_as
            .expect("an explicit identity, not the daemon's");
        assert_eq!((r.user.as_str(), r.uid, r.gid), ("nobody", n.uid, n.gid));
        assert_eq!(
            r.groups.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
            me.groups,
            "the caller's groups in the group database"
        );
        assert_eq!(r.home, n.home);
        // naming oneself is fine
        app("    user: nobody\n", &me).unwrap();
        let cases: &[(&str, &str, &str)] = &[
            (
                "    user: root\n",
                "t.yml:4:11: apps[0] (a): user root (uid 0): only root may run apps as another user, and you are nobody",
                "remove `user:` or ask root to start it",
            ),
            (
                "    group: root\n",
                "t.yml:4:12: apps[0] (a): group root (gid 0): only root may run apps with another group, and you are nobody",
                "ask root to start it",
            ),
            (
                "    groups: [root]\n",
                "t.yml:4:13: apps[0] (a): only root may set supplementary groups",
                "ask root to start it",
            ),
            (
                "    nice: -5\n",
                "t.yml:4:11: apps[0] (a): nice -5 is below the daemon's own (0)",
                "ask root to start it",
            ),
            (
                "    rlimits: { nofile: 8192 }\n",
                "t.yml:4:24: apps[0] (a): rlimits.nofile: the hard limit 8192 is above the daemon's own (4096)",
                "use at most 4096",
            ),
        ];
        for (keys, start, hint) in cases {
            let e = err(keys, &me);
            assert_eq!(e.lines().count(), 1, "{keys:?} gave {e}");
            assert!(e.starts_with(start), "{keys:?} gave {e}\nwanted {start}");
            assert!(e.contains(hint), "{keys:?} gave {e}\nwanted {hint}");
        }
    }
}
