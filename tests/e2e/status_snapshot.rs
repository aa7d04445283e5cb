//! `ListApps` answers many callers from one shared list (issue 21): these tests drive the real
//! binaries and check that the list never shows a state from before a change, whether the
//! change came from a command (stop, start, restart, scale, delete) or from the kernel (a
//! kill -9 the daemon hears about as an event), from one client or many at once, and that the
//! table and the JSON stay correct.

use serde_json::Value;
use turbo_tests::{TestDaemon, json, pid_alive};

/// `describe` always goes through the daemon's loop (it is never served from the shared
/// list): the oracle the list is compared with.
fn described(d: &TestDaemon, target: &str) -> Value {
    json(&d.turbo_ok(&["describe", target, "--json"]))["status"].clone()
}

fn by_label<'a>(apps: &'a [Value], name: &str, instance: u64) -> &'a Value {
    apps.iter()
        .find(|a| a["name"] == name && a["instance"] == instance)
        .unwrap_or_else(|| panic!("no {name}:{instance} in {apps:?}"))
}

#[test]
fn the_shared_status_list_never_shows_a_state_from_before_a_change() {
    let d = TestDaemon::start("auto");
    d.turbo_ok(&["start", "sleep", "--name", "one", "--", "1000"]);
    d.turbo_ok(&[
        "start",
        "sleep",
        "--name",
        "two",
        "--instances",
        "2",
        "--",
        "1000",
    ]);
    d.wait_app("one", "one to run", |a| a["state"] == "online");
    let listed = d.status();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (name, instance) in [("one", 0), ("two", 0), ("two", 1)] {
        let app = by_label(&listed, name, instance);
        assert_eq!(app["state"], "online", "{app}");
        assert!(app["pid"].as_u64().is_some_and(pid_alive), "{app}");
    }
    // the table names each instance of `two` and shows one row per instance
    let table = d.turbo_ok(&["status"]);
    assert!(
        table.contains("two:0") && table.contains("two:1"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "a header and three rows: {table}");

    // each command's effect shows in the very next list, though one was listed just before
    assert_eq!(
        d.app("one")["state"],
        "online",
        "listed just before the stop"
    );
    d.turbo_ok(&["stop", "one"]);
    let app = d.app("one");
    assert_eq!(app["state"], "stopped", "{app}");
    assert!(
        app["pid"].is_null() && app["memory_bytes"].is_null(),
        "{app}"
    );
    d.turbo_ok(&["start", "one"]);
    let app = d.app("one");
    assert_eq!(app["state"], "online", "{app}");
    let pid = app["pid"].as_u64().expect("a started app has a pid");
    assert!(pid_alive(pid), "{app}");
    d.turbo_ok(&["restart", "one"]);
    let app = d.app("one");
    assert_ne!(
        app["pid"].as_u64(),
        Some(pid),
        "the new process at once: {app}"
    );
    assert_eq!(app["restarts"], described(&d, "one")["restarts"], "{app}");
    d.turbo_ok(&["scale", "two", "3"]);
    assert_eq!(by_label(&d.status(), "two", 2)["state"], "online");
    d.turbo_ok(&["delete", "two"]);
    let names: Vec<Value> = d.status().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, ["one"], "deleted apps are gone at once");

    // a change nobody asked for: the daemon hears of the kill as an event and restarts the
    // app at once (no delay). The list is refreshed just before the kill; once `describe`
    // (through the loop) shows the new process, the list must show it too, though it is
    // younger than its age limit
    let yml =
        "apps:\n  - name: k\n    cmd: [sleep, '1000']\n    restart: { delay: 0, factor: 1 }\n";
    let file = d.config("k", yml);
    d.turbo_ok(&["start", file.to_str().expect("utf-8 path")]);
    let old = d.wait_app("k", "k to run", |a| a["state"] == "online")["pid"]
        .as_u64()
        .expect("online");
    // SAFETY: plain kill(2).
    let rc = unsafe { libc::kill(i32::try_from(old).expect("pid fits"), libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {old}");
    let now = turbo_tests::wait_for(
        "describe to show the restarted process",
        std::time::Duration::from_secs(10),
        || {
            let st = described(&d, "k");
            (st["pid"].as_u64().is_some_and(|p| p != old) && st["state"] == "online").then_some(st)
        },
    );
    let app = d.app("k");
    assert_eq!(app["pid"], now["pid"], "status agrees with describe: {app}");
    assert_eq!(app["restarts"], now["restarts"], "{app}");
    assert_eq!(app["last_exit"]["signal"], 9, "{app}");
    d.turbo_ok(&["delete", "k"]);

    // many clients at once after a change: every one sees it
    d.turbo_ok(&["stop", "one"]);
    for apps in d.status_from_many(16) {
        assert_eq!(apps[0]["state"], "stopped", "{apps:?}");
        assert!(apps[0]["pid"].is_null(), "{apps:?}");
    }
}

/// The table comes from `ListAppRows`, whose rows the daemon sends borrowed from the shared
/// list and the CLI lays out in one buffer (issue 21): each app's row must still show what
/// `status --json` (`ListApps`) says of it, for every kind of cell (a group, instances, a
/// pid, an exit and a state other than online).
#[test]
fn the_table_shows_each_app_as_the_json_lists_it() {
    let d = TestDaemon::start("auto");
    let file = d.config(
        "rows",
        concat!(
            "apps:\n",
            "  - name: api\n    cmd: [sleep, '1000']\n    app_group: web\n",
            "  - name: pool\n    cmd: [sleep, '1000']\n    instances: 2\n",
            "  - name: once\n    cmd: [sh, -c, 'exit 3']\n    autorestart: never\n",
        ),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    d.wait_app("once", "`once` to exit", |a| !a["last_exit"].is_null());
    let listed = d.status();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let table = d.turbo_ok(&["status"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "id", "name", "group", "state", "pid", "↺", "cpu", "memory", "uptime", "health",
            "last", "exit"
        ],
        "{table}"
    );
    assert_eq!(table.lines().count(), 5, "a header and four rows: {table}");
    for app in &listed {
        let id = app["id"].as_u64().expect("an id").to_string();
        let row = table
            .lines()
            .skip(1)
            .find(|l| l.split_whitespace().next() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("no row for id {id} in\n{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        let name = app["name"].as_str().expect("a name");
        let label = if name == "pool" {
            format!("pool:{}", app["instance"])
        } else {
            name.to_owned()
        };
        assert_eq!(cells[1], label, "{row}");
        let group = app["group"]
            .as_str()
            .map_or("-".to_owned(), |g| format!("@{g}"));
        assert_eq!(cells[2], group, "{row}");
        let state = app["state"].as_str().expect("a state");
        assert_eq!(cells[4], state, "{row}");
        match app["pid"].as_u64() {
            Some(pid) => assert_eq!(cells[5], pid.to_string(), "{row}"),
            None => assert_eq!(cells[5], "-", "{row}"),
        }
        if name == "once" {
            assert!(row.ends_with("exit 3"), "{row}");
        } else {
            assert!(row.ends_with('-'), "never exited: {row}");
        }
    }
}
