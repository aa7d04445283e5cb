//! Cluster instances, `turbo scale`, sockets passed with `listen:`, and `turbo reload`, through
//! the real binaries: a shipped example HTTP app (examples/apps/cluster_web.py) is hammered with
//! requests while it is reloaded, and then while it is restarted.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use turbo_tests::{TestDaemon, one_line_error, pid_alive, wait_for};

/// The instances of app `name`, by instance number.
pub(crate) fn instances(d: &TestDaemon, name: &str) -> Vec<Value> {
    let mut apps: Vec<Value> = d
        .status()
        .into_iter()
        .filter(|a| a["name"] == name)
        .collect();
    apps.sort_by_key(|a| a["instance"].as_u64());
    apps
}

/// Waits until app `name` has exactly `n` instances, all online, and returns them.
pub(crate) fn wait_online(d: &TestDaemon, name: &str, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} online instances of {name}"),
        Duration::from_secs(15),
        || {
            let apps = instances(d, name);
            (apps.len() == n && apps.iter().all(|a| a["state"] == "online")).then_some(apps)
        },
    )
}

pub(crate) fn pids(apps: &[Value]) -> Vec<u64> {
    apps.iter()
        .map(|a| a["pid"].as_u64().expect("online"))
        .collect()
}

/// `NAME=value` from a process's environment.
pub(crate) fn env_of(pid: u64, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{name}=")).map(str::to_owned)
    })
}

#[test]
fn instances_have_their_own_process_number_and_restarts_and_scale() {
    let mut d = TestDaemon::start("auto");
    let yml = d.config(
        "cluster",
        "apps:\n  - name: w\n    cmd: [sleep, \"1000\"]\n    instances: 3\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let apps = wait_online(&d, "w", 3);
    let ps = pids(&apps);
    assert_eq!(
        ps.iter().collect::<BTreeSet<_>>().len(),
        3,
        "distinct pids: {ps:?}"
    );
    assert_eq!(
        apps.iter()
            .map(|a| a["id"].as_u64().unwrap())
            .collect::<BTreeSet<_>>()
            .len(),
        3,
        "distinct ids"
    );
    for (k, app) in apps.iter().enumerate() {
        let pid = app["pid"].as_u64().unwrap();
        assert_eq!(app["instance"], k);
        assert_eq!(env_of(pid, "TURBO_INSTANCE"), Some(k.to_string()));
        assert_eq!(env_of(pid, "NODE_APP_INSTANCE"), Some(k.to_string()));
        assert_eq!(env_of(pid, "TURBO_INSTANCES").as_deref(), Some("3"));
        assert_eq!(env_of(pid, "LISTEN_FDS"), None, "no listen: no sockets");
    }

    // one instance crashes: only it restarts
    // SAFETY: plain kill(2).
    unsafe { libc::kill(i32::try_from(ps[2]).unwrap(), libc::SIGKILL) };
    let apps = wait_for("instance 2 restarted", Duration::from_secs(10), || {
        let apps = instances(&d, "w");
        (apps.len() == 3 && apps[2]["state"] == "online" && apps[2]["pid"].as_u64() != Some(ps[2]))
            .then_some(apps)
    });
    assert_eq!(apps[2]["restarts"], 1);
    assert_eq!(apps[0]["restarts"], 0);
    assert_eq!(apps[1]["restarts"], 0);
    assert_eq!(pids(&apps)[..2], ps[..2], "the others were not touched");
    let ps = pids(&apps);

    // one instance by `name:N`
    d.turbo_ok(&["stop", "w:1"]);
    let apps = instances(&d, "w");
    assert_eq!(apps[1]["state"], "stopped");
    assert!(!pid_alive(ps[1]));
    assert_eq!(apps[0]["pid"].as_u64(), Some(ps[0]));
    d.turbo_ok(&["restart", "w:1"]);
    let ps = pids(&wait_online(&d, "w", 3));

    // scale up: a new instance 3; scale down: the highest go, gracefully
    let out = d.turbo_ok(&["scale", "w", "4"]);
    assert!(out.contains("w:3"), "scale lists the instances: {out}");
    let apps = wait_online(&d, "w", 4);
    assert_eq!(
        pids(&apps)[..3],
        ps[..],
        "scaling up touches no running instance"
    );
    assert_eq!(
        env_of(pids(&apps)[3], "TURBO_INSTANCE").as_deref(),
        Some("3")
    );
    assert_eq!(
        env_of(pids(&apps)[3], "TURBO_INSTANCES").as_deref(),
        Some("4")
    );
    let gone = pids(&apps)[2..].to_vec();
    d.turbo_ok(&["scale", "w", "2"]);
    let apps = instances(&d, "w");
    assert_eq!(
        apps.len(),
        2,
        "scale returns once the extra instances are gone"
    );
    assert_eq!(pids(&apps), ps[..2]);
    for pid in gone {
        assert!(!pid_alive(pid), "scaled-down pid {pid} stopped");
    }
    let err = one_line_error(&d.turbo(&["scale", "w", "0"]));
    assert!(err.contains("0 instances"), "{err}");

    // the daemon dies: the instances are adopted, numbers and all (once the debounced state
    // file names both pids and no other)
    wait_for(
        "the state file to have both instances",
        Duration::from_secs(5),
        || {
            let state = std::fs::read_to_string(d.home().join("state.json")).ok()?;
            let v: Value = serde_json::from_str(&state).ok()?;
            let saved: Vec<u64> = v["apps"]
                .as_array()?
                .iter()
                .filter_map(|a| a["process"]["pid"].as_u64())
                .collect();
            (saved == ps[..2]).then_some(())
        },
    );
    d.kill9_daemon();
    d.restart_daemon();
    let apps = wait_online(&d, "w", 2);
    assert_eq!(pids(&apps), ps[..2], "adopted, not started again");
    assert_eq!(apps[1]["instance"], 1);

    // save + resurrect keep the count
    d.turbo_ok(&["save"]);
    d.turbo_ok(&["delete", "w"]);
    assert!(instances(&d, "w").is_empty());
    d.turbo_ok(&["resurrect"]);
    wait_online(&d, "w", 2);

    // `--instances` on the command line
    d.turbo_ok(&[
        "start",
        "sleep",
        "--name",
        "cli",
        "--instances",
        "2",
        "--",
        "1000",
    ]);
    wait_online(&d, "cli", 2);
}

/// A free TCP port on 127.0.0.1 (free when asked; the daemon binds it right after).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// What a load run saw.
#[derive(Debug, Default)]
pub(crate) struct Load {
    pub(crate) ok: u64,
    /// Requests answered while the operation ran (so the run was not vacuous).
    pub(crate) during: u64,
    pub(crate) failed: Vec<String>,
    /// The longest time one request took.
    longest: Duration,
    /// The longest time without any answer, while the clients kept asking.
    gap: Duration,
    last_answer: Option<Instant>,
    /// Pids that answered.
    pids: BTreeSet<String>,
}

/// One `GET path` on a fresh connection; the body on a 200.
fn get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    if !reply.starts_with("HTTP/1.0 200") {
        return Err(format!("reply: {:?}", reply.lines().next()));
    }
    Ok(reply
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned())
}

/// Runs `op` while 4 clients send requests (half of them taking 50 ms on the server, so some
/// are in flight when an instance is told to stop), and for 300 ms after.
pub(crate) fn under_load(port: u16, op: impl FnOnce()) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Mutex::new(Load::default()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, during, load) = (stop.clone(), during.clone(), load.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let path = if (n + c).is_multiple_of(2) {
                        "/"
                    } else {
                        "/slow?ms=50"
                    };
                    n += 1;
                    let t = Instant::now();
                    let result = get(port, path);
                    let took = t.elapsed();
                    let mut l = load.lock().unwrap();
                    l.longest = l.longest.max(took);
                    match result {
                        Ok(body) => {
                            let now = Instant::now();
                            if let Some(last) = l.last_answer {
                                l.gap = l.gap.max(now - last);
                            }
                            l.last_answer = Some(now);
                            l.ok += 1;
                            if during.load(Ordering::Relaxed) {
                                l.during += 1;
                            }
                            if let Some(pid) = body.split_whitespace().nth(3) {
                                l.pids.insert(pid.to_owned());
                            }
                        }
                        Err(e) => l.failed.push(e),
                    }
                }
            })
        })
        .collect();
    // warm up: every client has been answered before the operation
    wait_for("the clients to be served", Duration::from_secs(10), || {
        (load.lock().unwrap().ok >= 8).then_some(())
    });
    during.store(true, Ordering::Relaxed);
    op();
    during.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    Arc::try_unwrap(load).unwrap().into_inner().unwrap()
}

pub(crate) fn cluster_web() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/apps/cluster_web.py"
    );
    std::fs::canonicalize(path)
        .expect("examples/apps/cluster_web.py")
        .display()
        .to_string()
}

#[test]
fn reload_under_load_fails_no_request_and_restart_shows_why_it_exists() {
    let mut d = TestDaemon::start("auto");
    let port = free_port();
    let yml = d.config(
        "web",
        &format!(
            "apps:\n  - name: web\n    cmd: [python3, \"{}\"]\n    instances: 2\n    listen: \"127.0.0.1:{port}\"\n",
            cluster_web()
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let before = pids(&wait_online(&d, "web", 2));
    for (k, pid) in before.iter().enumerate() {
        assert_eq!(env_of(*pid, "LISTEN_FDS").as_deref(), Some("1"));
        assert_eq!(env_of(*pid, "LISTEN_PID"), Some(pid.to_string()));
        assert_eq!(env_of(*pid, "LISTEN_FDNAMES").as_deref(), Some("web"));
        assert_eq!(env_of(*pid, "TURBO_INSTANCE"), Some(k.to_string()));
    }

    let reload = under_load(port, || {
        d.turbo_ok(&["reload", "web"]);
    });
    let after = pids(&wait_online(&d, "web", 2));
    println!(
        "reload: {} requests ({} while reloading), {} failed, longest request {} ms, longest time without an answer {} ms, answered by pids {:?}",
        reload.ok,
        reload.during,
        reload.failed.len(),
        reload.longest.as_millis(),
        reload.gap.as_millis(),
        reload.pids
    );
    assert!(reload.during > 0, "requests were served during the reload");
    assert!(
        reload.failed.is_empty(),
        "zero failed requests during reload: {:?}",
        reload.failed
    );
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every instance was replaced: {before:?} -> {after:?}"
    );
    assert!(
        before.iter().all(|p| !pid_alive(*p)),
        "old instances stopped"
    );
    let apps = instances(&d, "web");
    assert!(
        apps.iter().all(|a| a["restarts"] == 1),
        "a reload counts as a restart: {apps:?}"
    );

    let restart = under_load(port, || {
        d.turbo_ok(&["restart", "web"]);
    });
    wait_online(&d, "web", 2);
    // Both instances stop at once and new ones start: no instance accepts for a while. The
    // socket stays open in the daemon, so connections wait in its queue rather than fail;
    // what shows is the stall. Its length depends on the machine, so it is reported, not
    // asserted.
    println!(
        "restart: {} requests ({} while restarting), {} failed {:?}, longest request {} ms, longest time without an answer {} ms (reload: {} ms)",
        restart.ok,
        restart.during,
        restart.failed.len(),
        restart.failed.iter().take(3).collect::<Vec<_>>(),
        restart.longest.as_millis(),
        restart.gap.as_millis(),
        reload.gap.as_millis()
    );
    assert!(restart.ok > 0, "requests were served around the restart");

    // the daemon dies and comes back: it takes the socket back from an adopted instance
    // (binding it again would fail while the instances hold it), so a reload still works
    let running = pids(&wait_online(&d, "web", 2));
    wait_for(
        "the state file to name the instances",
        Duration::from_secs(5),
        || {
            let state = std::fs::read_to_string(d.home().join("state.json")).ok()?;
            running
                .iter()
                .all(|p| state.contains(&format!("\"pid\": {p}")))
                .then_some(())
        },
    );
    d.kill9_daemon();
    d.restart_daemon();
    assert_eq!(pids(&wait_online(&d, "web", 2)), running, "adopted");
    assert!(
        d.daemon_log()
            .contains("took back the sockets of 127.0.0.1:"),
        "{}",
        d.daemon_log()
    );
    let after_crash = under_load(port, || {
        d.turbo_ok(&["reload", "web"]);
    });
    println!(
        "reload after a daemon crash: {} requests, {} failed",
        after_crash.ok,
        after_crash.failed.len()
    );
    assert!(after_crash.during > 0);
    assert!(after_crash.failed.is_empty(), "{:?}", after_crash.failed);
}

#[test]
fn a_failing_replacement_aborts_the_reload_and_keeps_the_old_instances() {
    let d = TestDaemon::start("auto");
    let flag = d.home().join("broken");
    let script = d.script(
        "maybe.sh",
        &format!(
            "if [ -e {} ]; then echo 'refusing to start' >&2; exit 3; fi\nexec sleep 1000",
            flag.display()
        ),
    );
    d.turbo_ok(&[
        "start",
        script.to_str().unwrap(),
        "--name",
        "m",
        "--instances",
        "2",
    ]);
    let before = pids(&wait_online(&d, "m", 2));
    std::fs::write(&flag, "").unwrap();
    let out = d.turbo(&["reload", "m"]);
    assert!(!out.status.success(), "the reload fails");
    let err = one_line_error(&out);
    assert!(
        err.contains("aborted") && err.contains("exited with code 3"),
        "says why: {err}"
    );
    // the failed replacement is stopped and forgotten; the old ones run on, same pids
    let apps = wait_for(
        "the replacement to be gone",
        Duration::from_secs(10),
        || {
            let apps = instances(&d, "m");
            (apps.len() == 2).then_some(apps)
        },
    );
    assert_eq!(pids(&apps), before);
    assert!(
        apps.iter()
            .all(|a| a["state"] == "online" && a["restarts"] == 0)
    );
    assert!(before.iter().all(|p| pid_alive(*p)));

    std::fs::remove_file(&flag).unwrap();
    d.turbo_ok(&["reload", "m"]);
    let after = pids(&wait_online(&d, "m", 2));
    assert!(after.iter().all(|p| !before.contains(p)));
}

#[test]
fn bad_instances_and_listen_keys_are_reported_with_their_position() {
    let d = TestDaemon::start("off");
    let yml = d.config(
        "bad",
        "apps:\n  - name: a\n    cmd: [sleep, \"1\"]\n    instances: 0\n    listen: [\"localhost\", \"0.0.0.0:99999\"]\n",
    );
    let out = d.turbo(&["start", yml.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("turbo.yml:4:16") && err.contains("0 instances"),
        "{err}"
    );
    assert!(
        err.contains("turbo.yml:5:14")
            && err.contains("'localhost' is not an IP address with a port"),
        "{err}"
    );
    assert!(err.contains("0.0.0.0:99999"), "{err}");

    // a port in use: the one-line error names the address and the cause
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yml = d.config(
        "busy",
        &format!("apps:\n  - name: b\n    cmd: [sleep, \"100\"]\n    listen: 127.0.0.1:{port}\n"),
    );
    let err = one_line_error(&d.turbo(&["start", yml.to_str().unwrap()]));
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("in use"),
        "{err}"
    );
}
