//! A `turbo.yml` as written: the serde types a document is read into before it is validated.
//!
//! Every key is optional where the spec has a default, and a value is kept as the user wrote
//! it ([`Scalar`], `NameOrId`, ...), so that validation can say what was found, where.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::Deserialize;

use super::{
    checks,
    error::Fault,
    privileges::{NameOrId, RlimitsConfig, UmaskValue},
};
use crate::spec::units::{self, Bounds, Written};

/// A `turbo.yml` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    pub(super) apps: Vec<AppConfig>,
}

/// One app as written by a user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppConfig {
    pub(super) name: String,
    pub(super) script: Option<String>,
    pub(super) cmd: Option<Vec<String>>,
    #[serde(default)]
    pub(super) args: Vec<String>,
    pub(super) cwd: Option<String>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) env_file: Option<String>,
    pub(super) autorestart: Option<String>,
    #[serde(default)]
    pub(super) restart: RestartConfig,
    #[serde(default)]
    pub(super) stop_exit_codes: Vec<i32>,
    pub(super) stop_signal: Option<String>,
    pub(super) kill_timeout: Option<Scalar>,
    #[serde(default)]
    pub(super) log: LogConfig,
    /// Restart at this resident memory (`512mb`).
    pub(super) max_memory: Option<Scalar>,
    /// Warn at this share of `max_memory` (`80%` or `80`).
    pub(super) memory_warning: Option<Scalar>,
    /// Who acts at `max_memory`: `restart` (the daemon) or `cgroup` (the kernel).
    pub(super) memory_enforce: Option<String>,
    /// Run as this user (name or uid); only root may name another user than itself.
    pub(super) user: Option<NameOrId>,
    /// Primary group (name or gid); default: the user's.
    pub(super) group: Option<NameOrId>,
    /// Supplementary groups, exactly; default: the user's groups in the group database.
    pub(super) groups: Option<Vec<NameOrId>>,
    pub(super) umask: Option<UmaskValue>,
    #[serde(default)]
    pub(super) rlimits: RlimitsConfig,
    pub(super) nice: Option<i64>,
    pub(super) oom_score_adj: Option<i64>,
    /// `N` or `max` (one per online CPU).
    pub(super) instances: Option<Scalar>,
    /// An address (`0.0.0.0:3000`) or a list of them: sockets the daemon binds and passes on.
    pub(super) listen: Option<OneOrMany>,
    // ---- watch mode and health checks (issue #6) ----
    /// `true` (the cwd), `false`, or a list of paths.
    pub(super) watch: Option<serde_yaml_ng::Value>,
    /// Globs of paths whose changes do not restart.
    #[serde(default)]
    pub(super) ignore_watch: Vec<String>,
    /// Quiet time after the last change before the restart (`500ms`).
    pub(super) watch_delay: Option<Scalar>,
    /// Health check.
    pub(super) health: Option<checks::HealthConfig>,
    /// `spawn` or `notify` (the systemd protocol).
    pub(super) ready: Option<String>,
    /// With `ready: notify`: restart an app that sends no `READY=1` this long after its start.
    pub(super) ready_timeout: Option<Scalar>,
    /// Restart an app that sends no `WATCHDOG=1` for this long.
    pub(super) watchdog: Option<Scalar>,
}

/// A value or a list of values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `restart:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestartConfig {
    pub(super) delay: Option<Scalar>,
    pub(super) max_delay: Option<Scalar>,
    pub(super) factor: Option<f64>,
    pub(super) reset_after: Option<Scalar>,
    pub(super) crash_loop: Option<CrashLoopConfig>,
    pub(super) max_restarts: Option<i64>,
}

/// `restart.crash_loop:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CrashLoopConfig {
    pub(super) max: Option<i64>,
    pub(super) window: Option<Scalar>,
}

/// `log:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogConfig {
    pub(super) format: Option<String>,
    pub(super) max_size: Option<Scalar>,
    pub(super) keep: Option<i64>,
}

/// A duration or size: a bare number (seconds, bytes) or text with a unit (`500ms`, `10mb`).
#[derive(Debug, Clone)]
pub(super) enum Scalar {
    Number(f64),
    Text(String),
}

/// By hand rather than `#[serde(untagged)]`, whose only message is "data did not match any
/// variant": this one says what was found and what is expected, at the value's position.
/// By hand rather than `#[serde(untagged)]`, whose only message is "data did not match any
/// variant": this one says what was found and what is expected, at the value's position.
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or text with a unit, like 500ms, 5s, 2m or 10mb")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
        }
        de.deserialize_any(Visitor)
    }
}

impl Scalar {
    pub(super) const fn written(&self) -> Written<'_> {
        match self {
            Self::Number(n) => Written::Number(*n),
            Self::Text(t) => Written::Text(t.as_str()),
        }
    }

    /// The duration of the key `what` (named in the message).
    pub(super) fn duration(&self, what: &str) -> Result<Duration, Fault> {
        units::duration(self.written(), Bounds::ANY_DURATION).map_err(|e| self.refused(what, &e))
    }

    /// The size of the key `what`.
    pub(super) fn size(&self, what: &str) -> Result<u64, Fault> {
        units::size(self.written(), Bounds::ANY_SIZE).map_err(|e| self.refused(what, &e))
    }

    fn refused(&self, what: &str, e: &units::UnitError) -> Fault {
        Fault::new(format!("{what} {} {e}", self.written())).hint(e.hint())
    }
}
