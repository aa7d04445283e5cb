//! The status list shared by `ListApps` callers (issue 21): one list, built by the runtime's
//! loop, answers every call until the loop's [`StateVersion`] moves on or the list is
//! [`LIST_MAX_AGE`] old, whichever comes first. A hundred clients asking at once cost one
//! build (the others wait for it and share it), and a client asking while nothing happens
//! costs no trip through the loop at all.
//!
//! Honest freshness: state, pid, restarts, health, exits and every other field that changes
//! with an event are never older than the call, because the loop moves the version on before
//! it handles anything that may change them (a scrape's or a describe's fresher reading too);
//! only figures that change with time alone may be older: uptime up to [`LIST_MAX_AGE`], CPU
//! and memory up to twice that (a reading reused for that long, in a list served for that
//! long; docs/metrics.md). Nothing else is cached here, and nothing here decides supervision state;
//! a held list is dropped once it is too old to serve, so it costs no memory while idle.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use serde::{Serialize, Serializer};
use turbo_api::{AppRow, AppStatus, Error, ExitInfo};
use zbus::zvariant::{Signature, Type};

use super::wire;
use crate::runtime::{LIST_MAX_AGE, Listed, StateVersion};

/// A list as the bus sends it (strings fit for the wire), shared by the calls it answers.
pub type SharedList = Arc<Vec<AppStatus>>;

/// `ListAppRows`'s answer: the shared list sent as [`AppRow`]s, each field borrowed from
/// its status rather than copied into a row first (with 1,000 apps that was 5,000 strings
/// cloned per call, on the path every `turbo status` waits for; issue 21).
#[derive(Debug)]
pub struct SharedRows(pub SharedList);

impl Type for SharedRows {
    const SIGNATURE: &'static Signature = <Vec<AppRow> as Type>::SIGNATURE;
}

impl Serialize for SharedRows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(RowView::of))
    }
}

/// One [`AppRow`], borrowed: the same fields in the same order, so the same bytes.
#[derive(Serialize)]
struct RowView<'a> {
    id: u32,
    name: &'a str,
    instance: u32,
    group: &'a str,
    state: &'a str,
    pid: u32,
    restarts: u32,
    uptime_ms: u64,
    cpu_percent: f64,
    memory_bytes: u64,
    memory_limit_bytes: u64,
    health: &'a str,
    next_restart_in_ms: u64,
    waiting_for: &'a [String],
    last_exit: &'a ExitInfo,
}

impl<'a> RowView<'a> {
    fn of(a: &'a AppStatus) -> Self {
        Self {
            id: a.id,
            name: &a.name,
            instance: a.instance,
            group: &a.group,
            state: &a.state,
            pid: a.pid,
            restarts: a.restarts,
            uptime_ms: a.uptime_ms,
            cpu_percent: a.cpu_percent,
            memory_bytes: a.memory_bytes,
            memory_limit_bytes: a.memory_limit_bytes,
            health: &a.health,
            next_restart_in_ms: a.next_restart_in_ms,
            waiting_for: &a.waiting_for,
            last_exit: &a.last_exit,
        }
    }
}

/// The list held for the next callers, and the version and instant it was built at.
#[derive(Debug)]
struct Held {
    version: u64,
    built: Instant,
    apps: SharedList,
}

/// The `ListApps` answer shared between calls (see the module docs).
#[derive(Debug)]
pub struct StatusCache {
    version: StateVersion,
    held: Mutex<Option<Held>>,
    /// One build at a time: callers that find no list wait for the one being built.
    building: tokio::sync::Mutex<()>,
}

impl StatusCache {
    /// A cache whose lists stand while `version` (moved by the runtime's loop) stays.
    #[must_use]
    pub fn new(version: StateVersion) -> Self {
        Self {
            version,
            held: Mutex::new(None),
            building: tokio::sync::Mutex::new(()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        // the guarded value is replaced whole, so a panic elsewhere cannot leave it half-made
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The held list, if it still stands at `now`.
    #[must_use]
    pub fn current(&self, now: Instant) -> Option<SharedList> {
        let version = self.version.get();
        self.held()
            .as_ref()
            .filter(|h| {
                h.version == version && now.saturating_duration_since(h.built) < LIST_MAX_AGE
            })
            .map(|h| Arc::clone(&h.apps))
    }

    /// Holds `apps`, built at `version` from a reading no older than `built`.
    pub fn keep(&self, version: u64, built: Instant, apps: SharedList) {
        *self.held() = Some(Held {
            version,
            built,
            apps,
        });
    }

    /// Drops the list built at `built`, if it is still the one held (a newer one stays).
    pub fn expire(&self, built: Instant) {
        let mut held = self.held();
        if held.as_ref().is_some_and(|h| h.built == built) {
            *held = None;
        }
    }

    /// The list for a call: the held one if it stands, else the one another caller is
    /// building, else a new one from `build` (the runtime's `Request::List`), made fit for
    /// the wire and held. Returns the list and, when this call built it, its build instant
    /// (for [`StatusCache::expire`]).
    ///
    /// # Errors
    /// What `build` returns.
    pub async fn get_or_build<F>(&self, build: F) -> Result<(SharedList, Option<Instant>), Error>
    where
        F: Future<Output = Result<Listed, Error>>,
    {
        if let Some(apps) = self.current(Instant::now()) {
            return Ok((apps, None));
        }
        let _one = self.building.lock().await;
        // taken before the loop reads anything: the list's age is never understated
        let built = Instant::now();
        if let Some(apps) = self.current(built) {
            return Ok((apps, None));
        }
        let Listed { version, apps } = build.await?;
        let apps = Arc::new(wire::on_wire(apps));
        self.keep(version, built, Arc::clone(&apps));
        Ok((apps, Some(built)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn list(names: &[&str]) -> Vec<AppStatus> {
        names
            .iter()
            .map(|n| AppStatus {
                name: (*n).into(),
                ..AppStatus::default()
            })
            .collect()
    }

    fn names(apps: &SharedList) -> Vec<&str> {
        apps.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn a_list_stands_until_the_version_moves_or_it_is_too_old() {
        let version = StateVersion::default();
        let cache = StatusCache::new(version.clone());
        let t0 = Instant::now();
        assert!(cache.current(t0).is_none(), "nothing held yet");
        cache.keep(version.get(), t0, Arc::new(list(&["a"])));
        let held = cache.current(t0 + Duration::from_millis(10)).expect("held");
        assert_eq!(names(&held), ["a"]);
        assert!(
            cache.current(t0 + LIST_MAX_AGE).is_none(),
            "too old at LIST_MAX_AGE"
        );
        // any change in the loop: the list is out of date at once, however young
        version.bump();
        assert!(cache.current(t0).is_none(), "out of date after a change");
        // a list built at an older version than now is never served
        cache.keep(version.get() - 1, t0, Arc::new(list(&["old"])));
        assert!(cache.current(t0).is_none());
    }

    #[test]
    fn expiry_drops_only_the_list_it_was_set_for() {
        let version = StateVersion::default();
        let cache = StatusCache::new(version.clone());
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        cache.keep(version.get(), t0, Arc::new(list(&["a"])));
        cache.keep(version.get(), t1, Arc::new(list(&["b"])));
        cache.expire(t0);
        assert_eq!(
            names(&cache.current(t1).expect("the newer one stays")),
            ["b"]
        );
        cache.expire(t1);
        assert!(cache.current(t1).is_none());
    }

    #[test]
    fn rows_are_sent_as_app_rows() {
        use zbus::zvariant::{LE, serialized::Context, to_bytes};
        // every field a row has, none it has not: a row read back is the status again
        let mut apps = list(&["web", "wörker"]);
        apps[0].group = "front".into();
        apps[0].pid = 42;
        apps[0].cpu_percent = 12.5;
        apps[0].uptime_ms = 7;
        apps[1].waiting_for = vec!["db".into(), "cache".into()];
        apps[1].last_exit.reason = "signal".into();
        apps[1].last_exit.signal = 9;
        apps[1].state = "waiting".into();
        assert_eq!(SharedRows::SIGNATURE, <Vec<AppRow>>::SIGNATURE);
        let ctx = Context::new_dbus(LE, 0);
        let sent = to_bytes(ctx, &SharedRows(Arc::new(apps.clone()))).expect("rows encode");
        let (rows, read): (Vec<AppRow>, _) = sent.deserialize().expect("read as AppRows");
        assert_eq!(read, sent.len(), "nothing left over");
        let back: Vec<AppStatus> = rows.into_iter().map(AppStatus::from).collect();
        assert_eq!(back, apps);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_build_and_strings_are_fit_for_the_wire() {
        let version = StateVersion::default();
        let cache = Arc::new(StatusCache::new(version.clone()));
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut calls = Vec::new();
        for _ in 0..8 {
            let (cache, builds, version) = (cache.clone(), builds.clone(), version.clone());
            calls.push(tokio::spawn(async move {
                cache
                    .get_or_build(async {
                        builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok(Listed {
                            version: version.get(),
                            apps: list(&["a\0b"]),
                        })
                    })
                    .await
            }));
        }
        let mut built_here = 0;
        for call in calls {
            let (apps, built) = call.await.expect("joined").expect("listed");
            assert_eq!(names(&apps), ["a\\0b"], "NUL shown, as on every reply");
            built_here += usize::from(built.is_some());
        }
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(built_here, 1);
        // after a change the next caller builds again, and sees the new state
        version.bump();
        let (apps, built) = cache
            .get_or_build(async {
                Ok(Listed {
                    version: version.get(),
                    apps: list(&["c"]),
                })
            })
            .await
            .expect("listed");
        assert!(built.is_some());
        assert_eq!(names(&apps), ["c"]);
    }
}
