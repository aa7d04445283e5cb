//! Least privilege for apps: `user`, `group`, `groups`, `umask`, `rlimits`, `nice` and
//! `oom_score_adj`, checked and resolved when a config is validated.
//!
//! Names become ids here, once, so a typo is a config error with its position rather than a
//! spawn failure at 3 a.m., and `describe` shows exactly what runs. Each value is also checked
//! against what the daemon itself may grant ([`Powers`]): only root may run an app as another
//! user or group, give it supplementary groups, raise a hard limit above its own, or lower nice
//! or `oom_score_adj` below its own. Without these checks a non-root daemon would accept the
//! config and then fail every spawn with a bare `EPERM`. `runtime::sys::spawn` applies the
//! result between fork and exec.
//!
//! In system mode the daemon is root, but the *caller* of a start call may not be: a member of
//! the admin group or a user polkit authorised. Such a caller's config is checked against the
//! caller's powers ([`Powers::for_caller`]), not the daemon's: an app without `user:` runs as
//! the caller, and naming another user, another group or supplementary groups is refused.
//! Without this, whoever may start apps could run any command as root.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Problem, parse_size, users};

/// Who an app runs as and under which limits: `AppSpec::privileges`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Privileges {
    /// `user`, `group`, `groups`; `None`: the daemon's own user, with the daemon's groups.
    pub run_as: Option<RunAs>,
    /// umask, rlimits, nice, `oom_score_adj`.
    pub limits: ProcessLimits,
}

/// The identity an app runs as. Names are resolved once, when the config is validated, so what
/// `describe` shows is what runs; a changed `/etc/passwd` applies at the next
/// `turbo start <config>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    /// User name (from its passwd entry).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Primary group name (the user's own unless `group:` says otherwise).
    pub group: String,
    /// Its gid.
    pub gid: u32,
    /// Supplementary groups `(name, gid)`: exactly these replace the daemon's. By default the
    /// user's groups in the group database, as `initgroups(user, gid)` would set them.
    pub groups: Vec<(String, u32)>,
    /// The user's home directory: the app's `HOME`.
    pub home: String,
    /// The user's login shell: the app's `SHELL`.
    pub shell: String,
}

/// Process attributes applied between fork and exec; `None` means inherited from the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessLimits {
    /// File mode creation mask (`0o027`).
    pub umask: Option<u32>,
    /// `RLIMIT_NOFILE`: open file descriptors.
    pub nofile: Option<Rlimit>,
    /// `RLIMIT_NPROC`: processes and threads of the app's real uid (all of them, not only
    /// the app's).
    pub nproc: Option<Rlimit>,
    /// `RLIMIT_CORE`: core dump size in bytes.
    pub core: Option<Rlimit>,
    /// Scheduling niceness, -20 (favoured) to 19.
    pub nice: Option<i32>,
    /// OOM-killer preference, -1000 (never) to 1000 (first).
    pub oom_score_adj: Option<i32>,
}

impl ProcessLimits {
    /// The rlimits that are set, by their config name.
    #[must_use]
    pub fn rlimits(&self) -> Vec<(&'static str, Rlimit)> {
        [
            ("nofile", self.nofile),
            ("nproc", self.nproc),
            ("core", self.core),
        ]
        .into_iter()
        .filter_map(|(name, limit)| limit.map(|l| (name, l)))
        .collect()
    }
}

/// A soft and a hard resource limit; [`Rlimit::UNLIMITED`] is `RLIM_INFINITY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// What the kernel enforces.
    pub soft: u64,
    /// The ceiling the app may raise its soft limit to.
    pub hard: u64,
}

impl Rlimit {
    /// No limit (`RLIM_INFINITY` on Linux).
    pub const UNLIMITED: u64 = u64::MAX;
}

/// One limit value as text: a number or `unlimited`.
#[must_use]
pub(super) fn limit_text(v: u64) -> String {
    if v == Rlimit::UNLIMITED {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

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

/// What the daemon itself may grant an app, read when a config is validated. Root (euid 0)
/// may grant anything the kernel allows; anyone else only what they have.
#[derive(Clone, Debug)]
pub struct Powers {
    /// The daemon's effective uid.
    pub euid: u32,
    /// Its effective gid.
    pub egid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
    /// Its niceness.
    pub nice: i32,
    /// The lowest nice `RLIMIT_NICE` lets it set without privilege (`20 - rlim_cur`).
    pub nice_floor: i32,
    /// Its `oom_score_adj`.
    pub oom_score_adj: i32,
    /// Its hard limits: nofile, nproc, core.
    pub hard: [u64; 3],
    /// `/proc/sys/fs/nr_open`: no process, not even root's, may have a higher `nofile`.
    pub nr_open: u64,
    /// `Some(name)` when these are the powers of a non-root *caller* of a root daemon (see the
    /// module docs): apps without `user:` then run as that caller. `None`: the daemon's own.
    pub caller: Option<String>,
}

/// Who a start call acts for: the caller's uid as the bus reported it (from the kernel, so it
/// cannot be forged). The gid is not part of it: the bus reports no primary group, so a
/// caller's apps get the primary group and the groups of the caller's passwd and group entries,
/// exactly as `user: <caller>` would give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's uid.
    pub uid: u32,
}

impl Caller {
    /// The daemon itself acting on its own behalf (restoring state, tests, fuzzing).
    #[must_use]
    pub fn daemon() -> Self {
        // SAFETY: geteuid has no preconditions.
        Self {
            uid: unsafe { libc::geteuid() },
        }
    }

    /// Whether this caller's apps are limited to the caller's own identity: anyone but root
    /// and the daemon's own user.
    #[must_use]
    pub fn is_scoped(self) -> bool {
        // SAFETY: geteuid has no preconditions.
        self.uid != 0 && self.uid != unsafe { libc::geteuid() }
    }
}

impl Powers {
    /// The calling process's.
    #[must_use]
    pub fn current() -> Self {
        // SAFETY: these getters have no preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let hard = [libc::RLIMIT_NOFILE, libc::RLIMIT_NPROC, libc::RLIMIT_CORE]
            .map(|r| get_rlimit(r).map_or(Rlimit::UNLIMITED, |l| l.hard));
        let nice_rlimit = get_rlimit(libc::RLIMIT_NICE).map_or(0, |l| l.soft.min(40));
        let nice_floor = 20 - i32::try_from(nice_rlimit).unwrap_or(0);
        let read_number =
            |path: &str| -> Option<i64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
        Self {
            euid,
            egid,
            groups: current_groups(),
            nice: current_nice(),
            nice_floor,
            oom_score_adj: read_number("/proc/self/oom_score_adj")
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
            hard,
            nr_open: read_number("/proc/sys/fs/nr_open")
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(1 << 20),
            caller: None,
        }
    }

    /// What `caller` may grant its apps: the daemon's own powers for root and the daemon's own
    /// user; for anyone else, the caller's identity (its passwd entry, its groups in the group
    /// database) and no more of the limits than a non-root daemon could grant (no hard limit
    /// above the daemon's, no nice or `oom_score_adj` below it).
    ///
    /// # Errors
    /// A one-line message when the caller cannot be given apps: a daemon that is not root cannot
    /// run apps as another user, and a caller without a passwd entry has no identity to run them
    /// with.
    pub fn for_caller(caller: Caller) -> Result<Self, String> {
        let daemon = Self::current();
        if caller.uid == 0 || caller.uid == daemon.euid {
            return Ok(daemon);
        }
        if !daemon.is_root() {
            return Err(format!(
                "uid {}: this daemon runs as uid {} and can run apps only as itself, so it starts apps only for root and uid {}",
                caller.uid, daemon.euid, daemon.euid
            ));
        }
        let user = match users::user_by_uid(caller.uid) {
            Ok(Some(u)) => u,
            Ok(None) => {
                return Err(format!(
                    "uid {} has no passwd entry: apps started by a non-root caller run as the caller, which needs one; ask root to start them",
                    caller.uid
                ));
            }
            Err(e) => return Err(format!("cannot look up uid {}: {e}", caller.uid)),
        };
        let groups = users::group_list(&user.name, user.gid).unwrap_or_else(|_| vec![user.gid]);
        Ok(Self {
            euid: user.uid,
            egid: user.gid,
            groups,
            caller: Some(user.name),
            ..daemon
        })
    }

    const fn is_root(&self) -> bool {
        self.euid == 0
    }

    /// Who holds these powers, for messages: `the daemon runs as nobody` or `you are alice`.
    fn holder(&self) -> String {
        match &self.caller {
            Some(name) => format!("you are {name} (uid {})", self.euid),
            None => {
                let me = users::user_by_uid(self.euid).ok().flatten().map_or_else(
                    || format!("uid {}", self.euid),
                    |u| format!("{} (uid {})", u.name, u.uid),
                );
                format!("the daemon runs as {me}")
            }
        }
    }

    /// What to do about something only root may grant.
    const fn root_hint(&self) -> &'static str {
        if self.caller.is_some() {
            "ask root to start it"
        } else {
            "run the daemon as root"
        }
    }
}

/// `getrlimit`'s resource type: glibc has one of its own, musl takes an `int`.
#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

fn get_rlimit(resource: RlimitResource) -> Option<Rlimit> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    (unsafe { libc::getrlimit(resource, &raw mut l) } == 0).then_some(Rlimit {
        soft: l.rlim_cur,
        hard: l.rlim_max,
    })
}

fn current_nice() -> i32 {
    // SAFETY: getpriority may legitimately return -1, so errno is cleared first and read after.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, 0);
        if n == -1 && *libc::__errno_location() != 0 {
            0
        } else {
            n
        }
    }
}

fn current_groups() -> Vec<u32> {
    // SAFETY: a zero-sized query returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0; usize::try_from(n).unwrap_or(0)];
    // SAFETY: `groups` has room for `n` gids.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(got).unwrap_or(0));
    groups
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
    limits.nofile = rlimit("nofile", r.nofile.as_ref(), powers, errors);
    limits.nproc = rlimit("nproc", r.nproc.as_ref(), powers, errors);
    limits.core = rlimit("core", r.core.as_ref(), powers, errors);
    if let Some(n) = app.nice {
        match i32::try_from(n).ok().filter(|n| (-20..=19).contains(n)) {
            None => errors.push(Problem::new(
                "nice",
                format!("nice {n} is out of range: use -20 (most favoured) to 19 (background)"),
            )),
            Some(n) if !powers.is_root() && n < powers.nice.min(powers.nice_floor) => {
                errors.push(Problem::new(
                    "nice",
                    format!(
                        "nice {n} is below the daemon's own ({}): only root may lower it; use {} or more, or {}",
                        powers.nice,
                        powers.nice.min(powers.nice_floor),
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
            Some(n) if !powers.is_root() && n < powers.oom_score_adj => {
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
    let other_user = !powers.is_root() && user.uid != powers.euid;
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
    if !powers.is_root() && group.gid != powers.egid && (app.group.is_some() || !other_user) {
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
            if !powers.is_root() {
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
        None if !powers.is_root() => powers
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
    name: &str,
    cfg: Option<&LimitConfig>,
    powers: &Powers,
    errors: &mut Vec<Problem>,
) -> Option<Rlimit> {
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
    if name == "nofile" && limit.hard > powers.nr_open {
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
    let index = match name {
        "nofile" => 0,
        "nproc" => 1,
        _ => 2,
    };
    let own = powers.hard[index];
    if !powers.is_root() && limit.hard > own {
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
                parse_size(t)
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
    use crate::{config::parse_config_with, supervisor::AppSpec};

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

    #[test]
    fn root_and_the_daemons_own_user_keep_the_daemons_powers() {
        let own = Powers::current();
        for uid in [0, own.euid] {
            let p = Powers::for_caller(Caller { uid }).unwrap();
            assert!(p.caller.is_none(), "uid {uid}");
            assert_eq!(p.euid, own.euid);
            assert!(!Caller { uid }.is_scoped());
        }
        let n = nobody();
        if own.euid == 0 {
            let p = Powers::for_caller(Caller { uid: n.uid }).unwrap();
            assert_eq!((p.euid, p.egid), (n.uid, n.gid));
            assert_eq!(p.caller.as_deref(), Some("nobody"));
            assert!(Caller { uid: n.uid }.is_scoped());
            let e = Powers::for_caller(Caller { uid: 4_000_000_000 }).unwrap_err();
            assert!(e.contains("has no passwd entry"), "{e}");
        } else if n.uid != own.euid {
            // a non-root daemon cannot run apps as anyone else
            let e = Powers::for_caller(Caller { uid: n.uid }).unwrap_err();
            assert!(e.contains("can run apps only as itself"), "{e}");
        }
    }
}
