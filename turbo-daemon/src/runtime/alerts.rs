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
    io::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::net::TcpStream;
use turbo_api::{AppStatus, CrashRecord};

use super::{probe, spawner};
use crate::{
    os::process::{self as os, SIGKILL},
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
            AlertTo::Command(argv) => command(argv, spec, env, body, alert.timeout).await,
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
    let fail = |what: &dyn std::fmt::Display| format!("POST {url}: {what}");
    let uri: hyper::Uri = url.parse().map_err(|e| fail(&e))?;
    let host = uri.host().ok_or_else(|| fail(&"no host"))?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map_or(host.as_str(), |a| a.as_str())
        .to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let body = Bytes::from(body.to_owned());
    let exchange = async move {
        let ip_host = host.trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((ip_host, port))
            .await
            .map_err(|e| fail(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
        let driver = tokio::spawn(conn);
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "turbo-daemon")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::CONNECTION, "close")
            .body(Full::new(body))
            .map_err(|e| fail(&e))?;
        let response = sender.send_request(request).await.map_err(|e| fail(&e));
        driver.abort();
        let code = response?.status();
        if code.is_success() {
            Ok(())
        } else {
            Err(fail(&format!("status {}", code.as_u16())))
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "POST {url}: no answer within {}ms",
                timeout.as_millis()
            ))
        })
}

/// Runs `argv` as the app runs with `env` added and `body` on stdin; exit 0 within `timeout`
/// is a success (the whole process group is killed at the timeout).
async fn command(
    argv: &[String],
    spec: &AppSpec,
    env: &[(String, String)],
    body: &str,
    timeout: Duration,
) -> Result<(), String> {
    let name = argv.join(" ");
    let (reader, mut writer) = std::io::pipe().map_err(|e| format!("{name}: pipe: {e}"))?;
    let child = spawner::spawn_aside(spec, argv, env, Some(reader.into()))
        .map_err(|e| format!("{name}: {e}"))?;
    let pid = child.pid;
    // a large record must not block the loop on a full pipe; a reader that stops early is fine
    let body = body.to_owned();
    let feed = tokio::task::spawn_blocking(move || {
        let _ = writer.write_all(body.as_bytes());
    });
    let output = tokio::spawn(async move {
        let (out, err) = tokio::join!(probe::read_all(child.stdout), probe::read_all(child.stderr));
        if err.trim().is_empty() { out } else { err }
    });
    let status = tokio::time::timeout(timeout, probe::wait(child.pidfd)).await;
    let _ = os::signal_group(pid, SIGKILL); // leftovers, or the whole command at the timeout
    drop(feed);
    let text = tokio::time::timeout(Duration::from_millis(200), output)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let last: String = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    match status {
        Err(_) => Err(format!(
            "{name}: killed after the {}ms timeout",
            timeout.as_millis()
        )),
        Ok(Ok(s)) if s.code() == Some(0) => Ok(()),
        Ok(Ok(s)) => Err(format!("{name}: ended with {s:?}: {last}")),
        Ok(Err(e)) => Err(format!("{name}: {e}")),
    }
}
