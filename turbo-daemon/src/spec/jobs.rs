//! How an app relates to other apps and to time: its kind (`type: service | oneshot`), its
//! retries as a one-shot job, its dependencies (`depends_on`) and its schedule (`cron`).
//!
//! Pure data and the one rule that only reads it: when a schedule fires next after a given wall
//! time ([`Schedule::next_after`]). The expression is parsed by `croner` (a kept crate: five or
//! six fields, the seconds field optional) and evaluated in the schedule's `timezone` from the
//! IANA database jiff bundles (compiled in, never the host's), so a run in a skipped hour (spring
//! forward) happens at the first instant after the gap and a run in a repeated hour (fall back)
//! happens once.
//! Nothing here reads a clock: the wall time is an argument.

use std::{
    str::FromStr,
    time::{Duration, SystemTime},
};

use croner::Cron;
use jiff::{
    Timestamp,
    tz::{TimeZone, TimeZoneDatabase},
};

/// What an app is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AppKind {
    /// A long-running process, restarted by its `autorestart` policy.
    #[default]
    Service,
    /// A job that runs to completion: `completed` on exit 0, retried on failure up to `retries`
    /// times, then `failed`; never restarted after success.
    Oneshot,
}

from_words!(AppKind, "type", "service, oneshot", {
    "service" => Service,
    "oneshot" => Oneshot,
});

/// What a dependency must have reached before its dependent starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Condition {
    /// Its process was spawned (`online`).
    #[default]
    Started,
    /// Online and ready: with a health check, healthy once; with `ready: notify`, `READY=1`.
    Ready,
    /// A one-shot job that exited 0 (`completed`).
    Completed,
}

from_words!(Condition, "condition", "started, ready, completed", {
    "started" => Started,
    "ready" => Ready,
    "completed" => Completed,
});

impl Condition {
    /// The spelling in `turbo.yml` and in `waiting for ...`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Ready => "ready",
            Self::Completed => "completed",
        }
    }
}

/// One entry of `depends_on`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The app depended on (every instance of it must meet the condition).
    pub name: String,
    /// What it must have reached.
    pub condition: Condition,
}

/// What a schedule does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScheduleAction {
    /// Restart the app if it should be running (PM2's `cron_restart`).
    #[default]
    Restart,
    /// Start the app (a one-shot job: run it once more).
    Run,
}

from_words!(ScheduleAction, "cron.action", "restart, run", {
    "restart" => Restart,
    "run" => Run,
});

/// What a `run` schedule does when the previous run is still going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Leave the running one alone; this run does not happen.
    #[default]
    Skip,
    /// Run once more as soon as the running one ends (at most one waits).
    Queue,
    /// Stop the running one and start again.
    Replace,
}

from_words!(Overlap, "cron.overlap", "skip, queue, replace", {
    "skip" => Skip,
    "queue" => Queue,
    "replace" => Replace,
});

/// `cron:`: when an app is restarted or run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The cron expression as written (5 fields, or 6 with seconds first; `@daily` and the like).
    pub expr: String,
    /// Restart or run.
    pub action: ScheduleAction,
    /// For `run`: what to do when the previous run has not ended.
    pub overlap: Overlap,
    /// IANA zone the expression is read in (`Europe/Paris`); `None`: UTC.
    pub timezone: Option<String>,
}

impl Schedule {
    /// Checks an expression and a zone as [`Schedule::next_after`] will read them.
    ///
    /// # Errors
    /// One line saying what is wrong with which.
    pub fn check(expr: &str, timezone: Option<&str>) -> Result<(), String> {
        Cron::from_str(expr).map_err(|e| {
            let e = e.to_string();
            format!(
                "cron '{expr}' is not a cron expression ({})",
                e.trim_end_matches('.')
            )
        })?;
        if let Some(tz) = timezone {
            zone(tz)?;
        }
        Ok(())
    }

    /// The first time strictly after `wall` at which the schedule fires; `None` when it never
    /// does again (or is invalid, which validation rules out).
    #[must_use]
    pub fn next_after(&self, wall: SystemTime) -> Option<SystemTime> {
        let cron = Cron::from_str(&self.expr).ok()?;
        let tz = match self.timezone.as_deref() {
            Some(name) => zone(name).ok()?,
            None => TimeZone::UTC,
        };
        let start = Timestamp::try_from(wall).ok()?.to_zoned(tz);
        let next = cron.find_next_occurrence(&start, false).ok()?;
        Some(SystemTime::from(next.timestamp()))
    }
}

/// The zone named exactly `name` (IANA names are case-sensitive, as they were with chrono-tz;
/// jiff's own lookup is not), from the bundled database.
fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZoneDatabase::bundled()
        .get(name)
        .ok()
        .filter(|tz| tz.iana_name() == Some(name) && name != "Etc/Unknown")
        .ok_or_else(|| {
            format!("timezone '{name}' is not an IANA time zone name (like Europe/Paris or UTC)")
        })
}

/// The keys of an app about jobs, dependencies and schedules, kept together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// `type:`.
    pub kind: AppKind,
    /// `retries:` for a one-shot job: further attempts after a failed run (with the restart
    /// backoff between them) before it is `failed`.
    pub retries: u32,
    /// `depends_on:`.
    pub depends_on: Vec<Dependency>,
    /// `depends_timeout:`: how long a start waits for its dependencies before it is `errored`.
    pub depends_timeout: Duration,
    /// `restart_with_deps: true`: a restart of a dependency (by hand or by its schedule)
    /// restarts this app too, once the dependency meets its condition again.
    pub restart_with_deps: bool,
    /// `cron:`.
    pub cron: Option<Schedule>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            kind: AppKind::Service,
            retries: 0,
            depends_on: Vec::new(),
            depends_timeout: Duration::from_secs(60),
            restart_with_deps: false,
            cron: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds since the epoch of a UTC civil time.
    fn at(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> SystemTime {
        let t = jiff::civil::datetime(y, mo, d, h, mi, s, 0)
            .to_zoned(TimeZone::UTC)
            .expect("valid");
        SystemTime::from(t.timestamp())
    }

    fn daily(expr: &str, tz: Option<&str>) -> Schedule {
        Schedule {
            expr: expr.into(),
            action: ScheduleAction::Run,
            overlap: Overlap::Skip,
            timezone: tz.map(Into::into),
        }
    }

    #[test]
    fn next_run_in_utc_and_with_a_seconds_field() {
        let s = daily("0 3 * * *", None);
        assert_eq!(
            s.next_after(at(2026, 12, 4, 2, 59, 59)),
            Some(at(2026, 12, 4, 3, 0, 0))
        );
        // strictly after: at the run itself, the next is a day later
        assert_eq!(
            s.next_after(at(2026, 12, 4, 3, 0, 0)),
            Some(at(2026, 12, 5, 3, 0, 0))
        );
        let every2 = daily("*/2 * * * * *", None);
        assert_eq!(
            every2.next_after(at(2026, 12, 4, 3, 0, 1)),
            Some(at(2026, 12, 4, 3, 0, 2))
        );
    }

    /// Europe/Paris springs forward on 2026-03-29 at 02:00 (to 03:00, UTC+2) and falls back on
    /// 2026-10-25 at 03:00 (to 02:00, UTC+1).
    #[test]
    fn a_run_in_a_skipped_hour_happens_after_the_gap_and_a_repeated_hour_runs_once() {
        let s = daily("30 2 * * *", Some("Europe/Paris"));
        // the day before: 02:30 CET = 01:30 UTC
        assert_eq!(
            s.next_after(at(2026, 3, 28, 0, 0, 0)),
            Some(at(2026, 3, 28, 1, 30, 0))
        );
        // 02:30 does not exist on the 29th: the first instant after the gap, 03:00 CEST
        assert_eq!(
            s.next_after(at(2026, 3, 28, 1, 30, 0)),
            Some(at(2026, 3, 29, 1, 0, 0))
        );
        // then 02:30 CEST = 00:30 UTC
        assert_eq!(
            s.next_after(at(2026, 3, 29, 1, 0, 0)),
            Some(at(2026, 3, 30, 0, 30, 0))
        );
        // 02:30 happens twice on 25 October: the run happens once (the first, CEST)
        let first = s.next_after(at(2026, 10, 24, 23, 0, 0));
        assert_eq!(first, Some(at(2026, 10, 25, 0, 30, 0)));
        assert_eq!(
            s.next_after(first.expect("some")),
            Some(at(2026, 10, 26, 1, 30, 0)),
            "not again at 02:30 CET on the 25th"
        );
        // a daily UTC schedule does not move
        let utc = daily("30 2 * * *", None);
        assert_eq!(
            utc.next_after(at(2026, 3, 28, 2, 30, 0)),
            Some(at(2026, 3, 29, 2, 30, 0))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        assert!(Schedule::check("0 3 * * *", Some("Europe/Paris")).is_ok());
        assert!(Schedule::check("*/5 * * * * *", None).is_ok());
        let e = Schedule::check("0 25 * * *", None).unwrap_err();
        assert!(
            e.starts_with("cron '0 25 * * *' is not a cron expression"),
            "{e}"
        );
        let e = Schedule::check("0 3 * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(e.contains("timezone 'Mars/Olympus'"), "{e}");
        // names are exact, as the database spells them
        assert!(Schedule::check("0 3 * * *", Some("UTC")).is_ok());
        assert!(Schedule::check("0 3 * * *", Some("America/New_York")).is_ok());
        for wrong in ["europe/paris", "Etc/Unknown", ""] {
            assert!(
                Schedule::check("0 3 * * *", Some(wrong)).is_err(),
                "{wrong}"
            );
        }
        assert_eq!("oneshot".parse(), Ok(AppKind::Oneshot));
        assert_eq!(
            "soon".parse::<Condition>(),
            Err("condition 'soon' is not one of: started, ready, completed".into())
        );
    }
}
