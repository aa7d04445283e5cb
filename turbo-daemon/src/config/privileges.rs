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
//! `runtime::spawner` turns the result into a plan that `os::spawn` applies between fork and exec.

use std::fmt;

use serde::Deserialize;

use super::{Problem, error::Fault};
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
            Err(e) => errors.push(e.at("umask")),
        }
    }
    let r = &app.rlimits;
    limits.nofile = rlimit(LimitKind::Nofile, r.nofile.as_ref(), powers, errors);
    limits.nproc = rlimit(LimitKind::Nproc, r.nproc.as_ref(), powers, errors);
    limits.core = rlimit(LimitKind::Core, r.core.as_ref(), powers, errors);
    if let Some(n) = app.nice {
        match i32::try_from(n).ok().filter(|n| (-20..=19).contains(n)) {
            None => errors.push(
                Problem::new("nice", format!("nice {n} is out of range"))
                    .hint("use -20 (most favoured) to 19 (background)"),
            ),
            Some(n) if n < powers.lowest_nice() => {
                errors.push(
                    Problem::new(
                        "nice",
                        format!("nice {n} is below the daemon's own ({})", powers.nice),
                    )
                    .hint(format!(
                        "only root may lower it; use {} or more, or {}",
                        powers.lowest_nice(),
                        powers.root_hint()
                    )),
                );
            }
            Some(n) => limits.nice = Some(n),
        }
    }
    if let Some(n) = app.oom_score_adj {
        match i32::try_from(n).ok().filter(|n| (-1000..=1000).contains(n)) {
            None => errors.push(
                Problem::new(
                    "oom_score_adj",
                    format!("oom_score_adj {n} is out of range"),
                )
                .hint("use -1000 (never killed) to 1000 (killed first)"),
            ),
            Some(n) if n < powers.lowest_oom_score_adj() => {
                errors.push(
                    Problem::new(
                        "oom_score_adj",
                        format!(
                            "oom_score_adj {n} is below the daemon's own ({})",
                            powers.oom_score_adj
                        ),
                    )
                    .hint(format!(
                        "only root may lower it; use {} or more, or {}",
                        powers.lowest_oom_score_adj(),
                        powers.root_hint()
                    )),
                );
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
        Some(u) => lookup_user(u).map_err(|e| errors.push(e.at("user"))),
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
                errors.push(
                    Problem::new(
                        at,
                        format!(
                            "uid {} has no passwd entry ({})",
                            powers.euid,
                            powers.holder()
                        ),
                    )
                    .hint("add `user:` with a user that has one"),
                );
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
        errors.push(
            Problem::new(
                "user",
                format!(
                    "user {} (uid {}): only root may run apps as another user, and {}",
                    user.name,
                    user.uid,
                    powers.holder()
                ),
            )
            .hint(format!("remove `user:` or {}", powers.root_hint())),
        );
    }
    let group = match &app.group {
        Some(g) => match lookup_group(g) {
            Ok(g) => Some(g),
            Err(e) => {
                errors.push(e.at("group"));
                None
            }
        },
        None => Some(group_named(user.gid)),
    }?;
    // a defaulted group of a refused user is the same mistake: one message is enough
    if !powers.may_run_with_group(group.gid) && (app.group.is_some() || !other_user) {
        errors.push(
            Problem::new(
                "group",
                format!(
                    "group {} (gid {}): only root may run apps with another group, and {} with group gid {}",
                    group.name,
                    group.gid,
                    powers.holder(),
                    powers.egid
                ),
            )
            .hint(format!("remove `group:` or {}", powers.root_hint())),
        );
    }
    let groups = match &app.groups {
        Some(list) => {
            if !powers.may_set_groups() {
                errors.push(
                    Problem::new(
                        "groups",
                        format!(
                            "only root may set supplementary groups (setgroups needs CAP_SETGID), and {}",
                            powers.holder()
                        ),
                    )
                    .hint(format!("remove `groups:` or {}", powers.root_hint())),
                );
            }
            let mut groups = Vec::new();
            for (i, g) in list.iter().enumerate() {
                match lookup_group(g) {
                    Ok(g) if groups.iter().any(|(_, gid)| *gid == g.gid) => {}
                    Ok(g) => groups.push((g.name, g.gid)),
                    Err(e) => errors.push(e.at(format!("groups[{i}]"))),
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

/// How one database is named in messages.
struct Database {
    /// `user`, `group`.
    noun: &'static str,
    /// `uid`, `gid`.
    id: &'static str,
    /// What an id lacks when it has no entry.
    entry: &'static str,
    /// What to do about a missing entry.
    hint: &'static str,
}

const PASSWD: Database = Database {
    noun: "user",
    id: "uid",
    entry: "passwd entry (its HOME and name are needed)",
    hint: "create it (useradd --system NAME) or name an existing user",
};

const GROUP: Database = Database {
    noun: "group",
    id: "gid",
    entry: "group entry",
    // `group:` is also what the plan's first draft called the app groups (`app_group:`): the
    // reader who meant that learns it here
    hint: "create it (groupadd --system NAME) or name an existing group; `group:` is the Unix \
           group the app runs as, for a group of apps (`@name` targets) use `app_group:`",
};

/// The entry of `db` that `v` names (a name, or an id as digits or a number).
fn lookup<T>(
    v: &NameOrId,
    db: &Database,
    by_id: fn(u32) -> std::io::Result<Option<T>>,
    by_name: fn(&str) -> std::io::Result<Option<T>>,
) -> Result<T, Fault> {
    let Database {
        noun, id, entry, ..
    } = db;
    let missing = |what: String| Fault::new(what).hint(db.hint);
    match as_id(v).map_err(|e| Fault::new(format!("{noun} {e}")))? {
        Some(n) => match by_id(n) {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(missing(format!("{id} {n} has no {entry}"))),
            Err(e) => Err(Fault::new(format!("cannot look up {id} {n}: {e}"))),
        },
        None => {
            let NameOrId::Text(name) = v else {
                unreachable!("an Int is an id")
            };
            match by_name(name) {
                Ok(Some(found)) => Ok(found),
                Ok(None) => Err(missing(format!("unknown {noun} '{name}'"))),
                Err(e) => Err(Fault::new(format!("cannot look up {noun} '{name}': {e}"))),
            }
        }
    }
}

fn lookup_user(v: &NameOrId) -> Result<users::User, Fault> {
    lookup(v, &PASSWD, users::user_by_uid, users::user_by_name)
}

fn lookup_group(v: &NameOrId) -> Result<users::Group, Fault> {
    lookup(v, &GROUP, users::group_by_gid, users::group_by_name)
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

fn parse_umask(v: &UmaskValue) -> Result<u32, Fault> {
    match v {
        UmaskValue::Int(0) => Ok(0),
        UmaskValue::Int(n) => Err(Fault::new(format!(
            "umask {n} is a bare number, which YAML may read in decimal"
        ))
        .hint("quote it as an octal string, like umask: '027'")),
        UmaskValue::Text(t) => {
            let digits = t.trim();
            let digits = digits.strip_prefix("0o").unwrap_or(digits);
            u32::from_str_radix(digits, 8)
                .ok()
                .filter(|m| *m <= 0o777 && !digits.is_empty() && !digits.starts_with('+'))
                .ok_or_else(|| {
                    Fault::new(format!(
                        "umask '{t}' is not an octal mode from '000' to '777'"
                    ))
                    .hint("use one like '027' (group may read, others nothing)")
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
                errors.push(e.at(at));
                return None;
            }
        },
        LimitConfig::Pair(words) => {
            let [soft, hard] = words.as_slice() else {
                errors.push(
                    Problem::new(at, format!("rlimits.{name} has {} values", words.len()))
                        .hint("give one (soft = hard) or two, [soft, hard]"),
                );
                return None;
            };
            let mut value = |i: usize, w: &LimitWord| {
                limit_value(name, w)
                    .map_err(|e| errors.push(e.at(format!("{at}[{i}]"))))
                    .ok()
            };
            let (soft, hard) = (value(0, soft), value(1, hard));
            let (soft, hard) = (soft?, hard?);
            if soft > hard {
                errors.push(
                    Problem::new(
                        at,
                        format!(
                            "rlimits.{name}: the soft limit {} is above the hard limit {}",
                            limit_text(soft),
                            limit_text(hard)
                        ),
                    )
                    .hint("write [soft, hard] with soft <= hard"),
                );
                return None;
            }
            Rlimit { soft, hard }
        }
    };
    if kind == LimitKind::Nofile && limit.hard > powers.nr_open {
        errors.push(
            Problem::new(
                at,
                format!(
                    "rlimits.nofile {} is above the kernel's ceiling {} (/proc/sys/fs/nr_open)",
                    limit_text(limit.hard),
                    powers.nr_open
                ),
            )
            .hint("use at most that"),
        );
        return None;
    }
    if let Some(own) = powers.highest_hard_limit(kind)
        && limit.hard > own
    {
        errors.push(
            Problem::new(
                at,
                format!(
                    "rlimits.{name}: the hard limit {} is above the daemon's own ({})",
                    limit_text(limit.hard),
                    limit_text(own)
                ),
            )
            .hint(format!(
                "only root may raise it; use at most {}",
                limit_text(own)
            )),
        );
        return None;
    }
    Some(limit)
}

fn limit_value(name: &str, w: &LimitWord) -> Result<u64, Fault> {
    let hint = if name == "core" {
        "a size like 0, 512mb or unlimited"
    } else {
        "a count or unlimited"
    };
    match w {
        LimitWord::Int(n) => u64::try_from(*n)
            .ok()
            .filter(|n| *n != Rlimit::UNLIMITED)
            .ok_or_else(|| {
                Fault::new(format!("rlimits.{name} {n} is negative")).hint(format!("use {hint}"))
            }),
        LimitWord::Text(t) if matches!(t.trim(), "unlimited" | "infinity") => Ok(Rlimit::UNLIMITED),
        LimitWord::Text(t) => {
            let parsed = if name == "core" {
                units::size(Written::Text(t), Bounds::ANY_SIZE).ok()
            } else {
                t.trim().parse().ok()
            };
            parsed
                .filter(|n| *n != Rlimit::UNLIMITED)
                .ok_or_else(|| Fault::new(format!("rlimits.{name} '{t}' is not {hint}")))
        }
    }
}

#[cfg(test)]
mod tests;
