//! `on_crash` and `on_state` notifications through the real binaries: a webhook receiver on
//! 127.0.0.1 and notification commands (issue 17 point 5).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use turbo_tests::{TestDaemon, json, wait_for};

/// A webhook receiver: every request's body, in order of arrival; answers 200.
fn receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            let mut line = String::new();
            let mut post = false;
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                post |= l.starts_with("post /hook ");
                if let Some(v) = l.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("the announced body");
            assert!(post, "a POST to /hook");
            bodies
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).expect("a JSON body"));
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (port, got)
}

fn crashes(d: &TestDaemon, name: &str) -> u64 {
    d.json(&["crashes", name])["stats"]["total"]
        .as_u64()
        .expect("stats.total")
}

#[test]
fn a_webhook_gets_each_crash_once_and_a_crash_loop_is_rate_limited() {
    let d = TestDaemon::start("auto");
    let (port, got) = receiver();
    let count = d.home().join("twice.count");
    let twice = d.script(
        "twice.sh",
        &format!(
            "n=$(cat {0} 2>/dev/null || echo 0); echo $((n+1)) > {0}\n\
             if [ $n -lt 2 ]; then echo \"boom $n\" >&2; sleep 0.2; exit 3; fi\nexec sleep 1000",
            count.display()
        ),
    );
    let file = d.config(
        "hooks",
        &format!(
            "apps:\n\
             \x20 - name: twice\n    cmd: [/bin/sh, '{twice}']\n    restart: {{delay: 100ms}}\n\
             \x20   on_crash: {{webhook: 'http://127.0.0.1:{port}/hook', rate_limit: 10}}\n\
             \x20 - name: looper\n    cmd: [/bin/sh, -c, 'echo looping >&2; sleep 0.2; exit 5']\n\
             \x20   restart: {{delay: 100ms, max_delay: 100ms, crash_loop: {{max: 0}}}}\n\
             \x20   on_crash: {{webhook: 'http://127.0.0.1:{port}/hook', rate_limit: 3, rate_window: 1h}}\n",
            twice = twice.display()
        ),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    wait_for("looper to crash 8 times", Duration::from_secs(30), || {
        (crashes(&d, "looper") >= 8).then_some(())
    });
    d.wait_app("twice", "twice to stay up after 2 crashes", |a| {
        a["state"] == "online" && a["restarts"] == 2
    });
    assert_eq!(crashes(&d, "twice"), 2);
    let of = |app: &str| -> Vec<Value> {
        got.lock()
            .unwrap()
            .iter()
            .filter(|b| b["app"] == app)
            .cloned()
            .collect()
    };
    wait_for("5 notifications", Duration::from_secs(10), || {
        (of("twice").len() == 2 && of("looper").len() == 3).then_some(())
    });
    // anything late or duplicated would arrive within this
    std::thread::sleep(Duration::from_secs(1));
    let twice_got = of("twice");
    assert_eq!(twice_got.len(), 2, "exactly one per crash: {twice_got:?}");
    for (i, body) in twice_got.iter().enumerate() {
        assert_eq!(body["event"], "crash");
        assert_eq!(body["crash"]["code"], 3);
        assert_eq!(body["crash"]["restart_number"], i as u64);
        let tail = body["crash"]["stderr_tail"].to_string();
        assert!(tail.contains(&format!("boom {i}")), "{body}");
    }
    let looper_got = of("looper");
    assert_eq!(
        looper_got.len(),
        3,
        "rate_limit 3 per hour, {} crashes: {looper_got:?}",
        crashes(&d, "looper")
    );
    assert!(
        d.daemon_log().contains("crash notification dropped"),
        "{}",
        d.daemon_log()
    );
}

#[test]
fn a_notification_command_gets_the_event_in_its_environment_and_on_stdin() {
    let d = TestDaemon::start("auto");
    let out = d.home().join("events");
    let states = d.home().join("states");
    let notify = d.script(
        "notify.sh",
        &format!(
            "{{ echo \"$TURBO_EVENT $TURBO_APP_NAME $TURBO_INSTANCE $TURBO_EXIT_CODE $TURBO_EXIT_REASON $(id -u)\"; cat; echo; }} >> {}",
            out.display()
        ),
    );
    let state = d.script(
        "state.sh",
        &format!("echo \"$TURBO_STATE\" >> {}", states.display()),
    );
    let count = d.home().join("once.count");
    let file = d.config(
        "cmdhooks",
        &format!(
            "apps:\n  - name: once\n    cmd: [/bin/sh, -c, 'test -e {c} && exec sleep 1000; touch {c}; echo bad >&2; exit 7']\n\
             \x20   restart: {{delay: 100ms}}\n    on_crash: {{cmd: ['{n}']}}\n    on_state: {{cmd: ['{s}']}}\n",
            c = count.display(),
            n = notify.display(),
            s = state.display()
        ),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    d.wait_app("once", "a restart after its crash", |a| {
        a["state"] == "online" && a["restarts"] == 1
    });
    let text = wait_for("the crash notification", Duration::from_secs(10), || {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.lines().count() >= 2)
    });
    let mut lines = text.lines();
    let uid = nix_uid();
    assert_eq!(
        lines.next().unwrap(),
        format!("crash once 0 7 exit {uid}"),
        "{text}"
    );
    let body = json(lines.next().unwrap());
    assert_eq!(body["app"], "once");
    assert_eq!(body["crash"]["code"], 7);
    assert!(
        body["crash"]["stderr_tail"].to_string().contains("bad"),
        "{body}"
    );
    let seen = wait_for("the state changes", Duration::from_secs(10), || {
        let t = std::fs::read_to_string(&states).unwrap_or_default();
        let v: Vec<String> = t.lines().map(str::to_owned).collect();
        (v.iter().filter(|s| *s == "online").count() >= 2).then_some(v)
    });
    // the order of the notifications is not guaranteed (each runs on its own), the set is
    for state in ["starting", "online", "backoff"] {
        assert!(seen.iter().any(|s| s == state), "{state} in {seen:?}");
    }
}

fn nix_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}
