//! Commands around an app's start and stop (`pre_start`, `post_start`, `pre_stop`,
//! `post_stop`).

use std::time::Duration;

/// The hooks of an app; each is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Runs before every spawn; the spawn waits for it, and its failure is a failed start.
    pub pre_start: Option<HookSpec>,
    /// Runs once the process is spawned; nothing waits for it.
    pub post_start: Option<HookSpec>,
    /// Runs before the stop signal of a running process; the signal waits for it.
    pub pre_stop: Option<HookSpec>,
    /// Runs once the process group is gone (after a stop or a crash); nothing waits for it.
    pub post_stop: Option<HookSpec>,
}

impl Hooks {
    /// The hook of `kind`, if set.
    #[must_use]
    pub const fn get(&self, kind: HookKind) -> Option<&HookSpec> {
        match kind {
            HookKind::PreStart => self.pre_start.as_ref(),
            HookKind::PostStart => self.post_start.as_ref(),
            HookKind::PreStop => self.pre_stop.as_ref(),
            HookKind::PostStop => self.post_stop.as_ref(),
        }
    }
}

/// One hook: a command run as the app runs, bounded by `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookSpec {
    /// Program and arguments; `argv[0]` is an absolute path.
    pub argv: Vec<String>,
    /// How long it may run before its process group is killed (and it counts as failed).
    pub timeout: Duration,
}

impl HookSpec {
    /// The default `timeout`.
    pub const TIMEOUT: Duration = Duration::from_secs(30);
}

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `pre_start`.
    PreStart,
    /// `post_start`.
    PostStart,
    /// `pre_stop`.
    PreStop,
    /// `post_stop`.
    PostStop,
}

impl HookKind {
    /// The key's name, also the marker of its lines in the app's log.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PreStart => "pre_start",
            Self::PostStart => "post_start",
            Self::PreStop => "pre_stop",
            Self::PostStop => "post_stop",
        }
    }
}
