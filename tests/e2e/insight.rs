//! eBPF insight through the real binaries (issue 22): the exec audit with an `exec_allow` list
//! (D-Bus signal, counters, the daemon's warning, `describe`), the run-queue delay of an app
//! rising while its CPUs are saturated and falling after, and, without eBPF, every one of
//! them saying it is unavailable rather than showing figures.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::Value;
use turbo_api::ManagerProxy;
use turbo_tests::{TestDaemon, wait_for};

use crate::{
    ebpf::skip_without_ebpf,
    metrics::{daemon_with_metrics, scrape, value},
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `describe --json`'s `insight` of `app`.
fn insight(d: &TestDaemon, app: &str) -> Value {
    d.json(&["describe", app])["insight"].clone()
}

fn assert_ebpf(d: &TestDaemon) {
    let info = d.json(&["info"]);
    assert_eq!(info["event_source"], "ebpf", "{info}");
    for p in ["sched_process_exec", "sched_switch", "sched_wakeup"] {
        assert!(
            info["ebpf_programs"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == p)),
            "{p} is loaded: {info}"
        );
    }
}

#[test]
fn a_shell_outside_exec_allow_is_signalled_counted_and_warned() {
    if skip_without_ebpf("a_shell_outside_exec_allow_is_signalled_counted_and_warned") {
        return;
    }
    let (d, addr) = daemon_with_metrics("require", &[]);
    assert_ebpf(&d);
    // its own command (env, standing for a server) is allowed without being listed; the shell
    // it spawns is not; what the shell execs is
    let file = d.config(
        "web",
        "apps:\n  - name: web\n    cmd: ['/usr/bin/env', '/bin/sh', '-c', 'exec /usr/bin/sleep 1000']\n    \
         exec_allow: ['/usr/bin/sleep', '/opt/*/bin/**']\n",
    );

    let signals = rt().block_on(async {
        let conn = d.connect().await;
        let m = ManagerProxy::new(&conn).await.unwrap();
        let mut execs = m.receive_app_exec().await.unwrap();
        d.turbo_ok(&["start", file.to_str().unwrap()]);
        let mut seen: Vec<(String, bool)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.iter().any(|(f, _)| f == "/usr/bin/sleep") {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = tokio::time::timeout(left, execs.next())
                .await
                .unwrap_or_else(|_| panic!("AppExec signals within 10 s; so far {seen:?}"))
                .expect("signal stream");
            let args = ev.args().unwrap();
            assert_eq!(args.name, "web");
            assert!(args.pid > 0);
            seen.push((args.filename.to_owned(), args.allowed));
        }
        seen
    });
    assert_eq!(
        signals,
        [
            ("/usr/bin/env".to_owned(), true),
            ("/bin/sh".to_owned(), false),
            ("/usr/bin/sleep".to_owned(), true),
        ],
        "every exec of the tree, in order, judged by exec_allow"
    );

    let i = insight(&d, "web");
    assert!(i["unavailable"].is_null(), "{i}");
    assert_eq!(i["execs_total"], 3, "{i}");
    assert_eq!(i["execs_unexpected"], 1, "{i}");
    assert_eq!(i["recent_execs"][1]["filename"], "/bin/sh", "{i}");
    assert_eq!(i["recent_execs"][1]["allowed"], false, "{i}");
    assert_eq!(i["exec_allow"][0], "/usr/bin/sleep", "{i}");
    let text = d.turbo_ok(&["describe", "web"]);
    assert!(text.contains("execs           3 (1 unexpected)"), "{text}");
    assert!(text.contains(" /bin/sh"), "{text}");

    let m = scrape(&addr);
    let web = [("app", "web"), ("app_instance", "0")];
    assert_eq!(value(&m, "turbo_app_execs_total", &web), Some(3.0), "{m}");
    assert_eq!(
        value(&m, "turbo_app_execs_unexpected_total", &web),
        Some(1.0),
        "{m}"
    );
    assert!(
        d.daemon_log()
            .contains("unexpected exec of /bin/sh: not in the app's exec_allow list"),
        "{}",
        d.daemon_log()
    );
}

/// The run-queue buckets are the host's by default (`turbo_runqueue_delay_seconds`), an app's
/// histogram its `+Inf` bucket, sum and count; `--metrics-app-histograms` adds every app's
/// buckets.
#[test]
fn run_queue_buckets_are_the_hosts_unless_every_apps_are_asked_for() {
    if skip_without_ebpf("run_queue_buckets_are_the_hosts_unless_every_apps_are_asked_for") {
        return;
    }
    for (env, per_app) in [
        (&[][..], false),
        (&[("TURBO_METRICS_APP_HISTOGRAMS", "true")][..], true),
    ] {
        let (d, addr) = daemon_with_metrics("require", env);
        assert_ebpf(&d);
        d.turbo_ok(&["start", "sleep", "--name", "nap", "--", "1000"]);
        let app = [("app", "nap"), ("le", "+Inf")];
        let m = wait_for(
            "the app's run-queue series",
            Duration::from_secs(10),
            || {
                let m = scrape(&addr);
                value(&m, "turbo_app_runqueue_delay_seconds_bucket", &app).map(|_| m)
            },
        );
        assert!(
            value(
                &m,
                "turbo_runqueue_delay_seconds_bucket",
                &[("le", "4.194304")]
            )
            .is_some(),
            "{m}"
        );
        assert!(
            value(
                &m,
                "turbo_app_runqueue_delay_seconds_count",
                &[("app", "nap")]
            )
            .is_some(),
            "{m}"
        );
        let bucket = value(
            &m,
            "turbo_app_runqueue_delay_seconds_bucket",
            &[("app", "nap"), ("le", "0.000001")],
        );
        assert_eq!(bucket.is_some(), per_app, "{env:?}:\n{m}");
    }
}

/// The recent mean run-queue wait of `app` in µs, once the daemon has a window with waits.
fn recent_mean_us(d: &TestDaemon, app: &str) -> u64 {
    wait_for("a recent run-queue window", Duration::from_secs(10), || {
        let i = insight(d, app);
        let waits = i["runq"]["recent_count"].as_u64()?;
        (i["runq"]["recent_window_ms"].as_u64()? >= 1_000 && waits > 0)
            .then(|| i["runq"]["recent_mean_us"].as_u64())
            .flatten()
    })
}

/// The CPUs are saturated inside the app's own session: with `sched_autogroup` on (as here)
/// the scheduler shares the CPUs between sessions first, so spinners the test ran in other
/// sessions would take their share from every test running beside this one as much as from the
/// app (and make timing tests flake), while extra busy loops in the app's tree crowd only the
/// app's share.
#[test]
fn run_queue_delay_rises_when_the_cpus_are_saturated_and_falls_after() {
    if skip_without_ebpf("run_queue_delay_rises_when_the_cpus_are_saturated_and_falls_after") {
        return;
    }
    let d = TestDaemon::start("require");
    assert_ebpf(&d);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let load = d.home().join("load");
    // one busy loop per CPU; while `load` exists, three more per CPU (a woken sleeper would not
    // show the delay as well: the scheduler places a waking task ahead)
    let body = format!(
        "spin() {{ while :; do :; done; }}\n\
         for k in $(seq {cpus}); do spin & done\n\
         while :; do\n\
           if [ -e {load} ]; then\n\
             for k in $(seq {extra}); do (while [ -e {load} ]; do :; done) & done\n\
             while [ -e {load} ]; do sleep 0.1; done\n\
           fi\n\
           sleep 0.1\n\
         done",
        load = load.display(),
        extra = cpus * 3,
    );
    let app = d.script("ticker.sh", &body);
    d.turbo_ok(&["start", app.to_str().unwrap(), "--name", "ticker"]);
    d.wait_app("ticker", "online", |a| a["state"] == "online");
    // two readings a window apart, so the next one has a recent window
    insight(&d, "ticker");
    std::thread::sleep(Duration::from_secs(2));
    let quiet = recent_mean_us(&d, "ticker");

    std::fs::write(&load, "").expect("create the load file");
    // past a whole window of saturation
    std::thread::sleep(Duration::from_secs(3));
    insight(&d, "ticker");
    std::thread::sleep(Duration::from_secs(2));
    let busy = recent_mean_us(&d, "ticker");
    std::fs::remove_file(&load).expect("remove the load file");
    let i = insight(&d, "ticker");
    eprintln!("run-queue mean: quiet {quiet} us, saturated {busy} us; {i}");
    assert!(
        busy > quiet.max(200) * 2,
        "four busy loops per CPU make the ticker wait longer: quiet {quiet} us, saturated {busy} us"
    );
    assert!(i["involuntary_switches"].as_u64() > Some(0), "{i}");

    let after = wait_for(
        "the run-queue delay to fall",
        Duration::from_secs(20),
        || {
            std::thread::sleep(Duration::from_millis(500));
            let now = recent_mean_us(&d, "ticker");
            // other work on the machine keeps it from falling to nothing
            (now * 3 < busy * 2).then_some(now)
        },
    );
    eprintln!("run-queue mean after the load: {after} us");
}

#[test]
fn without_ebpf_insight_is_unavailable_and_has_no_figures() {
    let (d, addr) = daemon_with_metrics("off", &[]);
    d.turbo_ok(&["start", "sleep", "--name", "quiet", "--", "1000"]);
    let i = insight(&d, "quiet");
    let why = i["unavailable"].as_str().unwrap_or_default();
    assert!(why.contains("eBPF"), "{i}");
    for key in [
        "runq",
        "execs_total",
        "recent_execs",
        "involuntary_switches",
    ] {
        assert!(i.get(key).is_none(), "no {key} without eBPF: {i}");
    }
    let text = d.turbo_ok(&["describe", "quiet"]);
    assert!(
        text.contains("unavailable     needs the eBPF event source"),
        "{text}"
    );
    let m = scrape(&addr);
    for family in [
        "turbo_app_execs_total",
        "turbo_app_execs_unexpected_total",
        "turbo_app_involuntary_switches_total",
        "turbo_app_runqueue_delay_seconds",
        "turbo_runqueue_delay_seconds",
    ] {
        assert!(!m.contains(family), "no {family} without eBPF:\n{m}");
    }
}

/// The python app of the network test: listens on `listen`, connects to `peer`, then idles
/// (accepting nothing: the kernel establishes connections all the same).
fn net_app(listen: u16, peer: u16) -> String {
    format!(
        "import socket, time\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {listen}))\n\
         s.listen(16)\n\
         c = socket.create_connection(('127.0.0.1', {peer}))\n\
         time.sleep(1000)\n"
    )
}

#[test]
fn the_network_view_shows_listening_ports_peers_and_connections() {
    if skip_without_ebpf("the_network_view_shows_listening_ports_peers_and_connections") {
        return;
    }
    let (d, addr) = daemon_with_metrics("require", &[]);
    assert_ebpf(&d);
    let info = d.json(&["info"]);
    assert!(
        info["ebpf_programs"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "inet_sock_set_state")),
        "{info}"
    );
    let peer = std::net::TcpListener::bind("127.0.0.1:0").expect("the peer listens");
    let peer_port = peer.local_addr().unwrap().port();
    let port = crate::metrics::free_port();
    let script = d.home().join("net.py");
    std::fs::write(&script, net_app(port, peer_port)).expect("write net.py");
    d.turbo_ok(&[
        "start",
        "/usr/bin/python3",
        "--name",
        "net",
        "--",
        script.to_str().unwrap(),
    ]);
    let listening = format!("127.0.0.1:{port}");
    // the app listens once its connect is done: then two clients come
    wait_for("the app to listen", Duration::from_secs(10), || {
        let i = insight(&d, "net");
        i["net"]["listening"]
            .as_array()?
            .iter()
            .any(|a| a == listening.as_str())
            .then_some(())
    });
    let clients: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(&listening).expect("connect to the app"))
        .collect();
    let net = wait_for(
        "the connections to be seen",
        Duration::from_secs(10),
        || {
            let net = insight(&d, "net")["net"].clone();
            (net["accepts_total"].as_u64()? >= 2 && net["connects_total"].as_u64()? >= 1)
                .then_some(net)
        },
    );
    eprintln!("{net}");
    assert!(net["unavailable"].is_null(), "{net}");
    let peers = net["recent_peers"].as_array().expect("peers");
    let to_peer = format!("127.0.0.1:{peer_port}");
    assert!(
        peers
            .iter()
            .any(|p| p["direction"] == "connect" && p["peer"] == to_peer.as_str()),
        "the peer it connected to: {net}"
    );
    assert!(
        peers
            .iter()
            .any(|p| p["direction"] == "accept" && p["peer"] == "127.0.0.1" && p["count"] == 2),
        "the clients, one line for their address: {net}"
    );
    let text = d.turbo_ok(&["describe", "net"]);
    assert!(
        text.contains(&format!("listening       {listening}")),
        "{text}"
    );
    assert!(
        text.contains("-> ") && text.contains(to_peer.as_str()),
        "{text}"
    );

    let m = scrape(&addr);
    let app = [("app", "net"), ("app_instance", "0")];
    let with = |k, v| {
        let mut l = app.to_vec();
        l.push((k, v));
        l
    };
    assert_eq!(
        value(&m, "turbo_app_listen_ports", &with("addr", &listening)),
        Some(1.0),
        "{m}"
    );
    assert!(
        value(
            &m,
            "turbo_app_tcp_connections_total",
            &with("direction", "connect")
        ) >= Some(1.0)
    );
    assert!(
        value(
            &m,
            "turbo_app_tcp_connections_total",
            &with("direction", "accept")
        ) >= Some(2.0)
    );

    // `turbo events`: the exec of the app itself, its listen and its connect, in order
    let listed = d.json(&["events", "net"]);
    let kinds: Vec<(&str, &str)> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds.first(),
        Some(&("exec", "/usr/bin/python3")),
        "{listed}"
    );
    assert!(kinds.contains(&("listen", listening.as_str())), "{listed}");
    assert!(kinds.contains(&("connect", to_peer.as_str())), "{listed}");
    assert!(
        kinds
            .iter()
            .any(|(k, peer)| *k == "accept" && peer.starts_with("127.0.0.1:")),
        "{listed}"
    );
    let text = d.turbo_ok(&["events", "net"]);
    assert!(text.contains("net[0]  exec      pid "), "{text}");

    // `-f` follows: the stop's signal, the socket's close and the exit arrive as they happen
    let mut follower = std::process::Command::new(turbo_tests::bin_dir().join("turbo"))
        .args(["events", "net", "-f", "--json"])
        .env("TURBO_HOME", d.home())
        .env_remove("TURBO_BUS_ADDRESS")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("turbo events -f");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let reader = {
        let lines = std::sync::Arc::clone(&lines);
        let stdout = follower.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str(&line) {
                    lines.lock().unwrap().push(v);
                }
            }
        })
    };
    // the listing part comes first: once it is there, the follower is subscribed
    wait_for("the listing", Duration::from_secs(10), || {
        (lines.lock().unwrap().len() >= kinds.len()).then_some(())
    });
    drop(clients);
    d.turbo_ok(&["stop", "net"]);
    let followed = wait_for("the stop to be followed", Duration::from_secs(10), || {
        let seen = lines.lock().unwrap().clone();
        let has = |k: &str| seen[kinds.len()..].iter().any(|e| e["kind"] == k);
        (has("signal") && has("unlisten") && has("exit")).then_some(seen)
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let _ = reader.join();
    let signal = followed.iter().find(|e| e["kind"] == "signal").unwrap();
    assert!(
        signal["detail"]
            .as_str()
            .is_some_and(|t| t.starts_with("SIGTERM from pid ")),
        "{signal}"
    );
    // the listening socket closed with the app
    wait_for("the port to be forgotten", Duration::from_secs(10), || {
        let i = insight(&d, "net");
        i["net"]["listening"].as_array()?.is_empty().then_some(())
    });
}

#[test]
fn a_full_accept_queue_on_a_listen_socket_is_counted_without_ebpf_too() {
    let (d, addr) = daemon_with_metrics("off", &[]);
    let port = crate::metrics::free_port();
    let listen = format!("127.0.0.1:{port}");
    // the instance never accepts: the daemon's socket keeps its backlog (128) and no more
    let file = d.config(
        "deaf",
        &format!("apps:\n  - name: deaf\n    cmd: [sleep, '1000']\n    listen: {listen}\n"),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    d.wait_app("deaf", "online", |a| a["state"] == "online");
    let drops = |d: &TestDaemon| {
        insight(d, "deaf")["net"]["listen_sockets"][0]["accept_queue_drops"].as_u64()
    };
    assert_eq!(drops(&d), Some(0), "{}", insight(&d, "deaf"));
    let target: std::net::SocketAddr = listen.parse().unwrap();
    let (held, dropped) = rt().block_on(async {
        // the handshakes that find the queue full are dropped (the clients would retry)
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..300 {
            connects.spawn(tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(target),
            ));
        }
        let mut held = Vec::new();
        while let Some(done) = connects.join_next().await {
            if let Ok(Ok(Ok(stream))) = done {
                held.push(stream);
            }
        }
        (held.len(), drops(&d))
    });
    let i = insight(&d, "deaf");
    eprintln!("{held} clients queued; {i}");
    assert!(
        dropped > Some(0),
        "{held} clients queued, yet no drops: {i}"
    );
    assert!(
        i["net"]["unavailable"]
            .as_str()
            .is_some_and(|w| w.contains("eBPF")),
        "{i}"
    );
    let m = scrape(&addr);
    let drops_metric = value(
        &m,
        "turbo_app_accept_queue_drops_total",
        &[("app", "deaf"), ("listen", listen.as_str())],
    );
    assert!(drops_metric > Some(0.0), "{m}");
    let text = d.turbo_ok(&["describe", "deaf"]);
    assert!(
        text.contains(&format!("listen:         {listen} (held by the daemon;")),
        "{text}"
    );
}
