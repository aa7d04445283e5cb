//! Delivers `on_crash` and `on_state` notifications, off the loop.
//!
//! The loop asks the pure rate limiter ([`RateLimiter`]) whether one more may go, then hands the
//! event to a task: a command run as the app runs (its user, cwd, environment) with the event in
//! `TURBO_*` variables and as JSON on stdin, or a JSON `POST` over hyper's HTTP/1 client. Each
//! attempt is bounded by the hook's `timeout`; failed ones are retried `retries` times with a
//! doubling pause. Failures are logged and counted (`turbo_notifications_total`), never
//! reported back to the loop: supervision never waits for a receiver.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hyper::body::Bytes;
use serde_json::{Value as Json, json};
use turbo_api::{AppStatus, CrashRecord};

use super::probe;
use crate::{
    spec::{AlertSpec, AlertTo, AppSpec},
    supervisor::{AppId, alerts::RateLimiter},
};

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// `on_crash`.
    Crash,
    /// `on_state`.
    State,
}

impl Event {
    /// The `event` label and `TURBO_EVENT` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::State => "state",
        }
    }
}

/// How the notifications of one app and event ended so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Delivered (a 2xx answer, a command that exited 0).
    pub sent: u64,
    /// Given up after every attempt failed.
    pub failed: u64,
    /// Dropped by the rate limit.
    pub dropped: u64,
}

/// Counters shared with the delivery tasks: by app name and event.
type Tally = Arc<Mutex<BTreeMap<(String, Event), Outcomes>>>;

/// The rate limiters and counters. See the module docs.
#[derive(Debug, Default)]
pub struct Alerts {
    limiters: HashMap<(AppId, Event), RateLimiter>,
    tally: Tally,
}

impl Alerts {
    /// App `id` (`spec`, instance `instance`) crashed; `record` is complete.
    pub fn crashed(&mut self, id: AppId, spec: &AppSpec, instance: u32, record: &CrashRecord) {
        let Some(alert) = spec.on_crash.as_deref() else {
            return;
        };
        let env = vec![
            ("TURBO_EXIT_CODE".into(), record.code.to_string()),
            ("TURBO_EXIT_SIGNAL".into(), record.signal.to_string()),
            ("TURBO_EXIT_REASON".into(), record.reason.clone()),
            (
                "TURBO_RESTART_NUMBER".into(),
                record.restart_number.to_string(),
            ),
        ];
        let body = json!({
            "event": Event::Crash.as_str(),
            "app": spec.name,
            "instance": instance,
            "group": spec.app_group,
            "crash": record.to_json(),
        });
        self.send(id, Event::Crash, alert, spec, instance, body, env);
    }

    /// App `id` changed state; `status` is its snapshot now.
    pub fn state_changed(&mut self, id: AppId, spec: &AppSpec, status: &AppStatus) {
        let Some(alert) = spec.on_state.as_deref() else {
            return;
        };
        let env = vec![
            ("TURBO_STATE".into(), status.state.clone()),
            ("TURBO_PID".into(), status.pid.to_string()),
        ];
        let body = json!({
            "event": Event::State.as_str(),
            "app": spec.name,
            "instance": status.instance,
            "group": spec.app_group,
            "state": status.state,
            "status": status.to_json(),
        });
        self.send(id, Event::State, alert, spec, status.instance, body, env);
    }

    /// App `id` is gone: its limiters go too (its counters stay until the name is reused).
    pub fn remove(&mut self, id: AppId) {
        self.limiters.retain(|(app, _), _| *app != id);
    }

    /// Every counter, for the metrics.
    #[must_use]
    pub fn outcomes(&self) -> Vec<(String, Event, Outcomes)> {
        let tally = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tally
            .iter()
            .map(|((a, e), o)| (a.clone(), *e, *o))
            .collect()
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one delivery, its parts named at both call sites"
    )]
    fn send(
        &mut self,
        id: AppId,
        event: Event,
        alert: &AlertSpec,
        spec: &AppSpec,
        instance: u32,
        body: Json,
        mut env: Vec<(String, String)>,
    ) {
        let allowed = self.limiters.entry((id, event)).or_default().allow(
            alert.rate_limit,
            alert.rate_window,
            Instant::now(),
        );
        let key = (spec.name.clone(), event);
        if !allowed {
            tracing::warn!(
                app = %spec.name,
                "{} notification dropped: more than {} within {}s (rate_limit)",
                event.as_str(),
                alert.rate_limit,
                alert.rate_window.as_secs()
            );
            bump(&self.tally, key, |o| o.dropped += 1);
            return;
        }
        env.extend([
            ("TURBO_EVENT".into(), event.as_str().into()),
            ("TURBO_APP_NAME".into(), spec.name.clone()),
            ("TURBO_INSTANCE".into(), instance.to_string()),
            (
                "TURBO_GROUP".into(),
                spec.app_group.clone().unwrap_or_default(),
            ),
        ]);
        let (alert, spec, tally) = (alert.clone(), spec.clone(), Arc::clone(&self.tally));
        tokio::spawn(async move {
            let body = body.to_string();
            match deliver(&alert, &spec, &body, &env).await {
                Ok(()) => bump(&tally, key, |o| o.sent += 1),
                Err(e) => {
                    tracing::warn!(app = %spec.name, "{} notification failed: {e}", event.as_str());
                    bump(&tally, key, |o| o.failed += 1);
                }
            }
        });
    }
}

fn bump(tally: &Tally, key: (String, Event), f: impl FnOnce(&mut Outcomes)) {
    let mut t = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(t.entry(key).or_default());
}

/// Every attempt of one notification; `Err` is the last attempt's failure.
async fn deliver(
    alert: &AlertSpec,
    spec: &AppSpec,
    body: &str,
    env: &[(String, String)],
) -> Result<(), String> {
    let mut pause = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        let result = match &alert.to {
            AlertTo::Webhook(url) => post(url, body, alert.timeout).await,
            AlertTo::Command(argv) => {
                let stdin = Some(body.to_owned());
                probe::run_aside(argv, spec, env, stdin, alert.timeout).await
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= alert.retries => {
                return Err(format!("{e} (after {} attempts)", attempt + 1));
            }
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
        }
    }
}

/// POSTs `body` to `url`; a 2xx answer within `timeout` is a success.
async fn post(url: &str, body: &str, timeout: Duration) -> Result<(), String> {
    let body = Bytes::from(body.to_owned());
    let exchange = probe::request(hyper::Method::POST, url, body, "turbo-daemon");
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(code)) if (200..300).contains(&code) => Ok(()),
        Ok(Ok(code)) => Err(format!("POST {url}: status {code}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "POST {url}: no answer within {}ms",
            timeout.as_millis()
        )),
    }
}
