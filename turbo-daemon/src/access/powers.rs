//! What a caller may grant its apps, and the decisions made with it.

use super::{AccessError, Caller};
use crate::os::{
    creds::{self, Limit},
    users,
};

/// What the daemon itself (or a caller, [`Powers::for_caller`]) may grant an app, read when a
/// config is validated. Root (euid 0) may grant anything the kernel allows; anyone else only
/// what they have.
#[derive(Clone, Debug)]
pub struct Powers {
    /// The effective uid.
    pub euid: u32,
    /// The effective gid.
    pub egid: u32,
    /// The supplementary groups.
    pub groups: Vec<u32>,
    /// The niceness.
    pub nice: i32,
    /// The lowest nice `RLIMIT_NICE` lets it set without privilege (`20 - rlim_cur`).
    pub nice_floor: i32,
    /// The `oom_score_adj`.
    pub oom_score_adj: i32,
    /// The hard limits, in the order of [`LimitKind::ALL`]: nofile, nproc, core.
    pub hard: [u64; 3],
    /// `/proc/sys/fs/nr_open`: no process, not even root's, may have a higher `nofile`.
    pub nr_open: u64,
    /// `net.ipv4.ip_unprivileged_port_start`: ports below it are privileged.
    pub unprivileged_port_start: u16,
    /// `Some(name)` when these are the powers of a non-root *caller* of a root daemon (see the
    /// module docs): apps without `user:` then run as that caller. `None`: the daemon's own.
    pub caller: Option<String>,
}

/// A resource limit an app may be given (`rlimits:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// `RLIMIT_NOFILE`: open file descriptors.
    Nofile,
    /// `RLIMIT_NPROC`: processes and threads of the app's real uid.
    Nproc,
    /// `RLIMIT_CORE`: core dump size in bytes.
    Core,
}

impl LimitKind {
    /// Every kind, in the order of [`Powers::hard`].
    pub const ALL: [Self; 3] = [Self::Nofile, Self::Nproc, Self::Core];

    /// The `rlimits:` key.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Nofile => "nofile",
            Self::Nproc => "nproc",
            Self::Core => "core",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Nofile => 0,
            Self::Nproc => 1,
            Self::Core => 2,
        }
    }
}

impl Powers {
    /// The calling process's.
    #[must_use]
    pub fn current() -> Self {
        let hard = [Limit::Nofile, Limit::Nproc, Limit::Core].map(|l| creds::limit(l).1);
        let nice_rlimit = creds::limit(Limit::Nice).0.min(40);
        Self {
            euid: creds::effective_uid(),
            egid: creds::effective_gid(),
            groups: creds::groups(),
            nice: creds::nice(),
            nice_floor: 20 - i32::try_from(nice_rlimit).unwrap_or(0),
            oom_score_adj: creds::oom_score_adj().unwrap_or(0),
            hard,
            nr_open: creds::nr_open().unwrap_or(1 << 20),
            unprivileged_port_start: creds::unprivileged_port_start(),
            caller: None,
        }
    }

    /// What `caller` may grant its apps: the daemon's own powers for root and the daemon's own
    /// user; for anyone else, the caller's identity (its passwd entry, its groups in the group
    /// database) and no more of the limits than a non-root daemon could grant (no hard limit
    /// above the daemon's, no nice or `oom_score_adj` below it).
    ///
    /// # Errors
    /// The caller cannot be given apps: a daemon that is not root cannot run apps as another
    /// user, and a caller without a passwd entry has no identity to run them with.
    pub fn for_caller(caller: Caller) -> Result<Self, AccessError> {
        let daemon = Self::current();
        if caller.uid == 0 || caller.uid == daemon.euid {
            return Ok(daemon);
        }
        if !daemon.is_root() {
            return Err(AccessError::DaemonNotRoot {
                caller: caller.uid,
                daemon: daemon.euid,
            });
        }
        let user = match users::user_by_uid(caller.uid) {
            Ok(Some(u)) => u,
            Ok(None) => return Err(AccessError::NoPasswdEntry(caller.uid)),
            Err(source) => {
                return Err(AccessError::Lookup {
                    uid: caller.uid,
                    source,
                });
            }
        };
        let groups = users::group_list(&user.name, user.gid).unwrap_or_else(|_| vec![user.gid]);
        Ok(Self::scoped_to(&daemon, user, groups))
    }

    /// `daemon`'s limits with the identity of `user` (a non-root caller).
    fn scoped_to(daemon: &Self, user: users::User, groups: Vec<u32>) -> Self {
        Self {
            euid: user.uid,
            egid: user.gid,
            groups,
            caller: Some(user.name),
            ..daemon.clone()
        }
    }

    /// Root may grant anything the kernel allows.
    #[must_use]
    pub const fn is_root(&self) -> bool {
        self.euid == 0
    }

    /// Whether an app may run as `uid`: only root may run apps as another user.
    #[must_use]
    pub const fn may_run_as_user(&self, uid: u32) -> bool {
        self.is_root() || uid == self.euid
    }

    /// Whether an app may run with primary group `gid`: only root may give another group.
    #[must_use]
    pub const fn may_run_with_group(&self, gid: u32) -> bool {
        self.is_root() || gid == self.egid
    }

    /// Whether an app may be given supplementary groups (`setgroups` needs `CAP_SETGID`).
    #[must_use]
    pub const fn may_set_groups(&self) -> bool {
        self.is_root()
    }

    /// The lowest nice an app may be given: only root may lower it below its own (or below
    /// what `RLIMIT_NICE` allows).
    #[must_use]
    pub fn lowest_nice(&self) -> i32 {
        if self.is_root() {
            -20
        } else {
            self.nice.min(self.nice_floor)
        }
    }

    /// The lowest `oom_score_adj` an app may be given: only root may lower it below its own.
    #[must_use]
    pub const fn lowest_oom_score_adj(&self) -> i32 {
        if self.is_root() {
            -1000
        } else {
            self.oom_score_adj
        }
    }

    /// The highest hard limit of `kind` an app may be given, `None` for any (root; the kernel's
    /// own ceiling, `nr_open` for nofile, still applies).
    #[must_use]
    pub const fn highest_hard_limit(&self, kind: LimitKind) -> Option<u64> {
        if self.is_root() {
            None
        } else {
            Some(self.hard[kind.index()])
        }
    }

    /// Who holds these powers, for messages: `the daemon runs as nobody (uid 65534)` or
    /// `you are alice (uid 1000)`.
    #[must_use]
    pub fn holder(&self) -> String {
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

    /// Whether an app may be handed a socket listening on `port`: the daemon binds `listen:`
    /// addresses itself, so a port below `ip_unprivileged_port_start` is only for whoever could
    /// bind it alone. A non-root caller of a root daemon may not, even if it holds
    /// `CAP_NET_BIND_SERVICE` somewhere (the bus tells the daemon its uid, not its
    /// capabilities). The daemon's own requests may: its bind succeeds or fails on its own
    /// rights (a non-root daemon may hold `CAP_NET_BIND_SERVICE`).
    #[must_use]
    pub const fn may_listen_on(&self, port: u16) -> bool {
        self.is_root() || self.caller.is_none() || port >= self.unprivileged_port_start
    }

    /// What to do about something only root may grant.
    #[must_use]
    pub const fn root_hint(&self) -> &'static str {
        if self.caller.is_some() {
            "ask root to start it"
        } else {
            "run the daemon as root"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Powers given by hand: the decisions need no users and no root.
    fn powers(euid: u32, egid: u32) -> Powers {
        Powers {
            euid,
            egid,
            groups: vec![egid],
            nice: 0,
            nice_floor: 20,
            oom_score_adj: 0,
            hard: [4096, 1000, 0],
            nr_open: 1 << 20,
            unprivileged_port_start: 1024,
            caller: None,
        }
    }

    #[test]
    fn root_may_grant_anything_the_kernel_allows() {
        let root = powers(0, 0);
        assert!(root.may_run_as_user(1000) && root.may_run_with_group(1000));
        assert!(root.may_set_groups());
        assert_eq!(
            (root.lowest_nice(), root.lowest_oom_score_adj()),
            (-20, -1000)
        );
        for kind in LimitKind::ALL {
            assert_eq!(root.highest_hard_limit(kind), None, "{}", kind.name());
        }
        assert_eq!(root.root_hint(), "run the daemon as root");
    }

    #[test]
    fn anyone_else_only_what_it_has() {
        let mut p = powers(1000, 1000);
        assert!(p.may_run_as_user(1000) && !p.may_run_as_user(0));
        assert!(p.may_run_with_group(1000) && !p.may_run_with_group(0));
        assert!(!p.may_set_groups());
        assert_eq!(p.lowest_oom_score_adj(), 0);
        assert_eq!(
            LimitKind::ALL.map(|k| p.highest_hard_limit(k)),
            [Some(4096), Some(1000), Some(0)]
        );
        // RLIMIT_NICE may let it go below its own nice, never further
        assert_eq!(p.lowest_nice(), 0);
        p.nice_floor = -5;
        assert_eq!(p.lowest_nice(), -5);
        p.nice = 10;
        p.nice_floor = 20;
        assert_eq!(p.lowest_nice(), 10);
        p.caller = Some("alice".into());
        assert_eq!(p.holder(), "you are alice (uid 1000)");
        assert_eq!(p.root_hint(), "ask root to start it");
    }

    #[test]
    fn a_scoped_caller_keeps_the_daemons_limits_with_its_own_identity() {
        let daemon = powers(0, 0);
        let alice = users::User {
            name: "alice".into(),
            uid: 1000,
            gid: 100,
            home: "/home/alice".into(),
            shell: "/bin/sh".into(),
        };
        let p = Powers::scoped_to(&daemon, alice, vec![100, 27]);
        assert_eq!(
            (p.euid, p.egid, p.groups.as_slice()),
            (1000, 100, [100, 27].as_slice())
        );
        assert_eq!((p.hard, p.nr_open), (daemon.hard, daemon.nr_open));
        assert!(!p.may_run_as_user(0) && p.may_run_as_user(1000));
        assert_eq!(p.caller.as_deref(), Some("alice"));
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
        let n = users::user_by_name("nobody")
            .unwrap()
            .expect("the nobody user (Debian and most systems have it)");
        if own.euid == 0 {
            let p = Powers::for_caller(Caller { uid: n.uid }).unwrap();
            assert_eq!((p.euid, p.egid), (n.uid, n.gid));
            assert_eq!(p.caller.as_deref(), Some("nobody"));
            assert!(Caller { uid: n.uid }.is_scoped());
            let e = Powers::for_caller(Caller { uid: 4_000_000_000 }).unwrap_err();
            assert!(e.to_string().contains("has no passwd entry"), "{e}");
        } else if n.uid != own.euid {
            // a non-root daemon cannot run apps as anyone else
            let e = Powers::for_caller(Caller { uid: n.uid }).unwrap_err();
            assert!(e.to_string().contains("can run apps only as itself"), "{e}");
        }
    }
}
