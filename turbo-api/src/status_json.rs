//! The JSON object of one app in `turbo status --json` (DESIGN.md §6), as a borrowed view of an
//! [`AppStatus`] that serialises straight to text.
//!
//! Building a `serde_json::Value` tree first (a map per app, a string per key) and then printing
//! it was most of the CLI's time with 1000 apps (issue 21): this view writes the same document
//! without the tree. The fields are declared in the order of their names, so the text is byte
//! for byte what printing the `Value` gave (its maps sort their keys); a unit test holds the two
//! equal. It must not decide anything about the wire's sentinels beyond turning them into
//! `null`, and it owns no data.

use serde::Serialize;

use crate::{AppStatus, ExitInfo, rfc3339_ms};

/// `turbo status --json`'s object for one app instance; absent values are `None` (`null`).
///
/// Fields in the byte order of their names (see the module docs).
#[derive(Debug, Serialize)]
pub struct StatusJson<'a> {
    argv: &'a [String],
    cpu_max_percent: Option<u32>,
    cpu_percent: Option<f64>,
    cpu_throttled_ms: Option<u64>,
    cwd: &'a str,
    err_log: &'a str,
    group: Option<&'a str>,
    health: &'a str,
    id: u32,
    instance: u32,
    last_exit: Option<ExitJson<'a>>,
    leak_suspected: Option<bool>,
    memory_bytes: Option<u64>,
    memory_growth_bytes_per_hour: Option<i64>,
    memory_high_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
    memory_pss_bytes: Option<u64>,
    name: &'a str,
    next_restart_in_ms: Option<u64>,
    next_run: Option<String>,
    out_log: &'a str,
    pid: Option<u32>,
    pids: Option<u64>,
    pids_max: Option<u64>,
    restarts: u32,
    state: &'a str,
    status_text: Option<&'a str>,
    uptime_ms: Option<u64>,
    waiting_for: &'a [String],
}

/// `last_exit` of [`StatusJson`]: `{at, code, reason, signal, source}`, `at` in RFC 3339.
#[derive(Debug, Serialize)]
pub struct ExitJson<'a> {
    at: String,
    code: Option<i32>,
    reason: &'a str,
    signal: Option<i32>,
    source: &'a str,
}

impl<'a> ExitJson<'a> {
    /// `None` when `exit` says "never exited" (an empty reason).
    #[must_use]
    pub fn of(exit: &'a ExitInfo) -> Option<Self> {
        (!exit.reason.is_empty()).then(|| Self {
            at: rfc3339_ms(exit.at_ms),
            code: (exit.code >= 0).then_some(exit.code),
            reason: &exit.reason,
            signal: (exit.signal > 0).then_some(exit.signal),
            source: &exit.source,
        })
    }
}

/// `Some(value)` when `keep`, else `None`: a sentinel that means "absent".
fn keep<T>(keep: bool, value: T) -> Option<T> {
    keep.then_some(value)
}

impl<'a> From<&'a AppStatus> for StatusJson<'a> {
    fn from(st: &'a AppStatus) -> Self {
        let running = st.pid != 0;
        Self {
            argv: &st.argv,
            cpu_max_percent: keep(st.cpu_max_percent > 0, st.cpu_max_percent),
            cpu_percent: keep(running && st.cpu_percent >= 0.0, st.cpu_percent),
            // throttling only means something under a CPU limit
            cpu_throttled_ms: keep(st.cpu_max_percent > 0, st.cpu_throttled_ms),
            cwd: &st.cwd,
            err_log: &st.err_log,
            group: keep(!st.group.is_empty(), st.group.as_str()),
            health: &st.health,
            id: st.id,
            instance: st.instance,
            last_exit: ExitJson::of(&st.last_exit),
            leak_suspected: keep(running, st.leak_suspected),
            memory_bytes: keep(running && st.memory_bytes > 0, st.memory_bytes),
            memory_growth_bytes_per_hour: keep(
                running && st.memory_growth_bytes_per_hour != AppStatus::GROWTH_UNKNOWN,
                st.memory_growth_bytes_per_hour,
            ),
            memory_high_bytes: keep(st.memory_high_bytes > 0, st.memory_high_bytes),
            memory_limit_bytes: keep(st.memory_limit_bytes > 0, st.memory_limit_bytes),
            memory_pss_bytes: keep(running && st.memory_pss_bytes > 0, st.memory_pss_bytes),
            name: &st.name,
            next_restart_in_ms: keep(st.next_restart_in_ms > 0, st.next_restart_in_ms),
            next_run: (st.next_run_ms > 0).then(|| rfc3339_ms(st.next_run_ms)),
            out_log: &st.out_log,
            pid: keep(running, st.pid),
            pids: keep(running && st.pids > 0, st.pids),
            pids_max: keep(st.pids_max > 0, st.pids_max),
            restarts: st.restarts,
            state: &st.state,
            status_text: keep(!st.status_text.is_empty(), st.status_text.as_str()),
            uptime_ms: keep(running, st.uptime_ms),
            waiting_for: &st.waiting_for,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::*;

    fn full() -> AppStatus {
        AppStatus {
            id: 3,
            name: "web".into(),
            instance: 1,
            state: "online".into(),
            pid: 42,
            restarts: 2,
            uptime_ms: 1234,
            cpu_percent: 12.5,
            memory_bytes: 1 << 20,
            memory_pss_bytes: 1 << 19,
            memory_limit_bytes: 1 << 30,
            leak_suspected: true,
            memory_growth_bytes_per_hour: -7,
            health: "healthy".into(),
            next_restart_in_ms: 5,
            argv: vec!["node".into(), "a \"b\"\n".into()],
            cwd: "/srv/é".into(),
            out_log: "/l/o".into(),
            err_log: "/l/e".into(),
            last_exit: ExitInfo {
                code: 3,
                signal: 0,
                reason: "exit".into(),
                at_ms: 1_700_000_000_123,
                source: "ebpf".into(),
            },
            status_text: "ready\u{7f}".into(),
            waiting_for: vec!["db (ready)".into()],
            next_run_ms: 1_700_000_060_000,
            cpu_max_percent: 50,
            cpu_throttled_ms: 9,
            pids: 4,
            pids_max: 64,
            memory_high_bytes: 1 << 29,
            group: "front".into(),
        }
    }

    /// The object as the first generation built it (a `json!` tree, then printed): the
    /// reference the view must match byte for byte, so no consumer sees a change.
    fn legacy(st: &AppStatus) -> String {
        let running = st.pid != 0;
        let e = &st.last_exit;
        let exit = if e.reason.is_empty() {
            Json::Null
        } else {
            json!({
                "code": (e.code >= 0).then_some(e.code),
                "signal": (e.signal > 0).then_some(e.signal),
                "reason": e.reason,
                "at": rfc3339_ms(e.at_ms),
                "source": e.source,
            })
        };
        let value = json!({
            "id": st.id,
            "name": st.name,
            "instance": st.instance,
            "state": st.state,
            "pid": running.then_some(st.pid),
            "restarts": st.restarts,
            "uptime_ms": running.then_some(st.uptime_ms),
            "cpu_percent": (running && st.cpu_percent >= 0.0).then_some(st.cpu_percent),
            "memory_bytes": (running && st.memory_bytes > 0).then_some(st.memory_bytes),
            "memory_pss_bytes": (running && st.memory_pss_bytes > 0).then_some(st.memory_pss_bytes),
            "memory_limit_bytes": (st.memory_limit_bytes > 0).then_some(st.memory_limit_bytes),
            "leak_suspected": running.then_some(st.leak_suspected),
            "memory_growth_bytes_per_hour": (running
                && st.memory_growth_bytes_per_hour != AppStatus::GROWTH_UNKNOWN)
                .then_some(st.memory_growth_bytes_per_hour),
            "health": st.health,
            "next_restart_in_ms": (st.next_restart_in_ms > 0).then_some(st.next_restart_in_ms),
            "argv": st.argv,
            "cwd": st.cwd,
            "out_log": st.out_log,
            "err_log": st.err_log,
            "last_exit": exit,
            "status_text": (!st.status_text.is_empty()).then_some(&st.status_text),
            "waiting_for": st.waiting_for,
            "next_run": (st.next_run_ms > 0).then(|| rfc3339_ms(st.next_run_ms)),
            "cpu_max_percent": (st.cpu_max_percent > 0).then_some(st.cpu_max_percent),
            "cpu_throttled_ms": (st.cpu_max_percent > 0).then_some(st.cpu_throttled_ms),
            "pids": (running && st.pids > 0).then_some(st.pids),
            "pids_max": (st.pids_max > 0).then_some(st.pids_max),
            "memory_high_bytes": (st.memory_high_bytes > 0).then_some(st.memory_high_bytes),
            "group": (!st.group.is_empty()).then_some(&st.group),
        });
        serde_json::to_string_pretty(&value).expect("printing the tree")
    }

    #[test]
    fn the_text_is_what_the_json_tree_printed_byte_for_byte() {
        let stopped = AppStatus {
            pid: 0,
            last_exit: ExitInfo::default(),
            memory_growth_bytes_per_hour: AppStatus::GROWTH_UNKNOWN,
            cpu_percent: -1.0,
            group: String::new(),
            status_text: String::new(),
            next_run_ms: 0,
            ..full()
        };
        let killed = AppStatus {
            last_exit: ExitInfo {
                code: -1,
                signal: 9,
                reason: "signal".into(),
                at_ms: 1,
                source: "procfs".into(),
            },
            ..full()
        };
        for st in [full(), stopped, killed, AppStatus::default()] {
            let direct =
                serde_json::to_string_pretty(&StatusJson::from(&st)).expect("printing directly");
            assert_eq!(direct, legacy(&st), "{st:?}");
            assert_eq!(
                serde_json::to_string_pretty(&st.to_json()).expect("printing to_json"),
                direct
            );
        }
    }

    #[test]
    fn sentinels_become_null_and_set_values_stay() {
        let j = serde_json::to_value(StatusJson::from(&full())).expect("to a Value");
        assert_eq!(j["pid"], 42);
        assert_eq!(j["cpu_percent"], 12.5);
        assert_eq!(j["memory_growth_bytes_per_hour"], -7);
        assert_eq!(j["last_exit"]["code"], 3);
        assert!(j["last_exit"]["signal"].is_null());
        assert_eq!(j["last_exit"]["at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(j["group"], "front");
        assert_eq!(j["next_run"], "2023-11-14T22:14:20.000Z");
        let stopped = AppStatus { pid: 0, ..full() };
        let j = serde_json::to_value(StatusJson::from(&stopped)).expect("to a Value");
        for key in [
            "pid",
            "uptime_ms",
            "cpu_percent",
            "memory_bytes",
            "memory_pss_bytes",
            "leak_suspected",
            "memory_growth_bytes_per_hour",
            "pids",
        ] {
            assert!(j[key].is_null(), "{key} of a stopped app: {}", j[key]);
        }
        // the limits are configuration: shown whether it runs or not
        assert_eq!(j["memory_limit_bytes"], 1 << 30);
        assert_eq!(j["cpu_throttled_ms"], 9);
    }
}
