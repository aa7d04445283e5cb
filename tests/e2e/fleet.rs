//! `turbo -H` and fleets over real SSH: three "hosts", each a network namespace with its own
//! address, sshd, system-like bus and system-mode daemon; the CLI reaches them only through
//! `ssh` (a test key, a test known_hosts) and `systemd-stdio-bridge`, as `busctl -H` does.
//!
//! Each host's sshd runs in a mount namespace of its own where a tmpfs `/run` holds
//! `/run/dbus/system_bus_socket`, bind-mounted from that host's bus: systemd-stdio-bridge (252)
//! always connects there, whatever `DBUS_SYSTEM_BUS_ADDRESS` says. The daemons and their apps run
//! in the hosts' network namespaces, so an app can tell which host it is on (the rollout's
//! injected failure on host 2). Everything (namespaces, links, the test user, processes) is
//! removed on drop.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;
use turbo_tests::{SystemBus, bin_dir, is_root, json, wait_for};

const HOSTS: usize = 3;

struct Host {
    ns: String,
    root_link: String,
    addr: String,
    bus: SystemBus,
    home: tempfile::TempDir,
    daemon: Option<Child>,
    sshd: Option<Child>,
}

struct Fleet {
    dir: tempfile::TempDir,
    hosts: Vec<Host>,
    /// A non-root user without the admin group, for the denial test.
    user: String,
}

fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run ({e}); `cargo xtask setup` installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_private(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Fleet {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("turbo-fleet-")
            .tempdir()
            .unwrap();
        let d = &dir.path().to_path_buf();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = |name: &str| {
            run_ok(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    d.join(name).to_str().unwrap(),
                ],
            );
        };
        key("hostkey");
        key("id");
        key("wrong_id");
        let id_pub = std::fs::read_to_string(d.join("id.pub")).unwrap();
        // sshd reads it as the logging-in user (the test user too)
        write_private(&d.join("authorized_keys"), &id_pub, 0o644);
        let hostkey_pub = std::fs::read_to_string(d.join("hostkey.pub")).unwrap();

        let pid = std::process::id();
        let user = format!("tfleet{pid}");
        run_ok(
            "useradd",
            &[
                "-M",
                "-N",
                "-s",
                "/bin/sh",
                "-d",
                "/nonexistent",
                "-p",
                "*",
                &user,
            ],
        );
        let mut fleet = Self {
            dir,
            hosts: Vec::new(),
            user,
        };
        let mut known = String::new();
        for i in 1..=HOSTS {
            let ns = format!("tfl{pid}h{i}");
            let root_link = format!("tf{pid}r{i}");
            let ns_link = format!("tf{pid}n{i}");
            let addr = format!("10.213.{i}.2");
            run_ok("ip", &["netns", "add", &ns]);
            run_ok(
                "ip",
                &[
                    "link", "add", &root_link, "type", "veth", "peer", "name", &ns_link,
                ],
            );
            run_ok("ip", &["link", "set", &ns_link, "netns", &ns]);
            run_ok(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("10.213.{i}.1/24"),
                    "dev",
                    &root_link,
                ],
            );
            run_ok("ip", &["link", "set", &root_link, "up"]);
            run_ok(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    &ns_link,
                ],
            );
            run_ok("ip", &["-n", &ns, "link", "set", &ns_link, "up"]);
            run_ok("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            let bus = SystemBus::start(&format!("turbo-fleet-bus{i}-"));
            let home = tempfile::Builder::new()
                .prefix(&format!("turbo-fleet-home{i}-"))
                .tempdir()
                .unwrap();
            fleet.hosts.push(Host {
                ns,
                root_link,
                addr: addr.clone(),
                bus,
                home,
                daemon: None,
                sshd: None,
            });
            known.push_str(&format!("{addr} {hostkey_pub}"));
            let host = fleet.hosts.last_mut().unwrap();
            host.daemon = Some(start_daemon(host));
            host.sshd = Some(start_sshd(host, d));
        }
        write_private(&d.join("known_hosts"), &known, 0o644);
        let config = |identity: &str, mux: &str| {
            format!(
                "Host *\n  IdentityFile {id}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  \
                 GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  User root\n  \
                 LogLevel ERROR\n{mux}",
                id = d.join(identity).display(),
                kh = d.join("known_hosts").display()
            )
        };
        // one connection per host and user, reused by every command, as docs/fleet.md advises;
        // the wrong key's config must not ride on a connection the right key opened
        let mux = format!(
            "  ControlMaster auto\n  ControlPath {}/cm-%C\n  ControlPersist 10s\n",
            d.display()
        );
        write_private(&d.join("ssh_config"), &config("id", &mux), 0o644);
        let own = "  ControlMaster no\n  ControlPath none\n";
        write_private(&d.join("ssh_config_wrong"), &config("wrong_id", own), 0o644);
        // the right key, but a known_hosts without the hosts
        write_private(
            &d.join("ssh_config_unknown"),
            &config("id", own).replace(&d.join("known_hosts").display().to_string(), "/dev/null"),
            0o644,
        );
        std::fs::create_dir(d.join("bin")).unwrap();
        // `ssh` as both `turbo -H` and `busctl -H` find it on PATH, with the test's config
        write_private(
            &d.join("bin/ssh"),
            &format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F \"${{FLEET_SSH_CONFIG:-{}}}\" \"$@\"\n",
                d.join("ssh_config").display()
            ),
            0o755,
        );
        for host in &fleet.hosts {
            wait_for(
                &format!("sshd and the daemon of {}", host.addr),
                Duration::from_secs(20),
                || {
                    fleet
                        .turbo(&["-H", &host.addr, "ping"])
                        .status
                        .success()
                        .then_some(())
                },
            );
        }
        fleet
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("PATH", self.path_env())
            .env("NO_COLOR", "1")
            .env("TURBO_REMOTE_TURBO", bin_dir().join("turbo"))
            .env_remove("TURBO_HOST")
            .env_remove("TURBO_BUS_ADDRESS")
            .env_remove("TURBO_HOME")
            .stdin(Stdio::null());
        cmd
    }

    fn turbo(&self, args: &[&str]) -> Output {
        self.cmd(&bin_dir().join("turbo"), args).output().unwrap()
    }

    fn addrs(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.addr.as_str()).collect()
    }

    /// The apps of one host, asked over SSH.
    fn apps_on(&self, host: usize) -> Vec<Value> {
        let out = self.turbo(&["-H", &self.hosts[host].addr, "status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&String::from_utf8_lossy(&out.stdout))
            .as_array()
            .unwrap()
            .clone()
    }
}

fn start_daemon(host: &Host) -> Child {
    let log = std::fs::File::create(host.home.path().join("daemon.log")).unwrap();
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", host.ns))
        .arg(bin_dir().join("turbo-daemon"))
        .args(["--bus-address", &host.bus.address(), "--home"])
        .arg(host.home.path())
        .args([
            "--admin-group",
            "adm",
            "--ebpf",
            "off",
            "--metrics-listen",
            "off",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("nsenter (util-linux)")
}

fn start_sshd(host: &Host, dir: &Path) -> Child {
    let conf = dir.join(format!("sshd_{}.conf", host.ns));
    write_private(
        &conf,
        &format!(
            "ListenAddress {addr}\nHostKey {hk}\nAuthorizedKeysFile {ak}\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nPidFile none\nX11Forwarding no\n",
            addr = host.addr,
            hk = dir.join("hostkey").display(),
            ak = dir.join("authorized_keys").display(),
        ),
        0o644,
    );
    let bus_socket = host.bus.dir.path().join("system_bus_socket");
    let script = format!(
        "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/sshd /run/dbus && \
         touch /run/dbus/system_bus_socket && mount --bind '{bus}' /run/dbus/system_bus_socket && \
         exec /usr/sbin/sshd -D -e -f '{conf}'",
        bus = bus_socket.display(),
        conf = conf.display()
    );
    let log = std::fs::File::create(dir.join(format!("sshd_{}.log", host.ns))).unwrap();
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", host.ns))
        .args([
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("nsenter and unshare (util-linux)")
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // `turbo kill` on each bus itself stops the apps with the daemon; all hosts at once
        run_quietly_together(self.hosts.iter().filter(|h| h.daemon.is_some()).map(|h| {
            let mut kill = Command::new(bin_dir().join("turbo"));
            kill.arg("kill").env("TURBO_BUS_ADDRESS", h.bus.address());
            kill
        }));
        // the shared SSH connections end now, not ControlPersist later
        let config = self.dir.path().join("ssh_config");
        run_quietly_together(
            self.hosts
                .iter()
                .flat_map(|h| [h.addr.clone(), format!("{}@{}", self.user, h.addr)])
                .map(|dest| {
                    let mut exit = Command::new("ssh");
                    exit.arg("-F").arg(&config).args(["-O", "exit", &dest]);
                    exit
                }),
        );
        for host in &mut self.hosts {
            if let Some(mut daemon) = host.daemon.take() {
                let _ = daemon.kill();
                let _ = daemon.wait();
            }
            if let Some(mut sshd) = host.sshd.take() {
                let _ = sshd.kill();
                let _ = sshd.wait();
            }
            // whatever still runs in the host (an sshd session, an app) goes with it: a session
            // whose link is deleted would otherwise wait for its TCP peer for hours
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &host.ns])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).output();
                }
            }
            let _ = Command::new("ip")
                .args(["link", "del", &host.root_link])
                .output();
            let _ = Command::new("ip").args(["netns", "del", &host.ns]).output();
        }
        let _ = Command::new("userdel").arg(&self.user).output();
    }
}

/// `turbo -H HOST monit` in a tmux of its own shows the host's apps, and `q` leaves it.
fn monit_over_ssh(fleet: &Fleet, host: &str) {
    let socket = format!("turbo-fleet-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux (cargo xtask setup installs it)")
    };
    let command = format!(
        "env PATH='{}' TURBO_REMOTE_TURBO='{}' {} -H {host} monit; echo monit-exited-$?; sleep 30",
        fleet.path_env(),
        bin_dir().join("turbo").display(),
        bin_dir().join("turbo").display()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "30",
        "-s",
        "m",
        &command,
    ]);
    assert!(out.status.success(), "tmux: {}", stderr(&out));
    let screen = || stdout(&tmux(&["capture-pane", "-p", "-t", "m"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = screen();
        if seen.contains("TurboProcess monit") && seen.contains("talker") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let shown = seen.contains("TurboProcess monit") && seen.contains("talker");
    if shown {
        let _ = tmux(&["send-keys", "-t", "m", "q"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !seen.contains("monit-exited-") {
            std::thread::sleep(Duration::from_millis(200));
            seen = screen();
        }
    }
    let _ = tmux(&["kill-server"]);
    assert!(shown, "the remote dashboard with host 1's apps:\n{seen}");
    assert!(seen.contains("monit-exited-0"), "q leaves monit:\n{seen}");
}

/// Runs the commands at once, without their output, and waits for all of them.
fn run_quietly_together(cmds: impl Iterator<Item = Command>) {
    let children: Vec<Child> = cmds
        .filter_map(|mut cmd| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .collect();
    for mut child in children {
        let _ = child.wait();
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An app that is ready (`READY=1`) everywhere but on host 2, where it exits 3 at once: it
/// tells the host by the addresses of its network namespace.
fn rollout_yml(dir: &Path) -> PathBuf {
    let code = "import os, socket, sys, time\n\
        if '10.213.2.2' in open('/proc/net/fib_trie').read(): sys.exit(3)\n\
        a = os.environ['NOTIFY_SOCKET']\n\
        a = '\\0' + a[1:] if a.startswith('@') else a\n\
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', a)\n\
        time.sleep(1000)\n";
    let yml = format!(
        "apps:\n  - name: roll\n    cmd: [python3, -c, {code:?}]\n    ready: notify\n    \
         ready_timeout: 10s\n"
    );
    let path = dir.join("roll.yml");
    std::fs::write(&path, yml).unwrap();
    path
}

#[test]
fn turbo_and_busctl_drive_remote_daemons_over_ssh() {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED fleet: needs root for network namespaces, sshd and a test user (CI is root) ***\n"
        );
        return;
    }
    let started = Instant::now();
    let fleet = Fleet::start();
    let [h1, h2, h3] = [0, 1, 2].map(|i| fleet.hosts[i].addr.clone());

    // one remote host: start, status, stop, restart
    let out = fleet.turbo(&["-H", &h1, "start", "sleep", "--name", "web", "--", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let web = |apps: Vec<Value>| apps.into_iter().find(|a| a["name"] == "web").unwrap();
    assert_eq!(web(fleet.apps_on(0))["state"], "online");
    assert!(fleet.apps_on(1).is_empty(), "host 2 has its own daemon");
    let out = fleet.turbo(&["-H", &h1, "stop", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(web(fleet.apps_on(0))["state"], "stopped");
    let out = fleet.turbo(&["-H", &format!("root@{h1}:22"), "restart", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(web(fleet.apps_on(0))["state"], "online");

    // busctl -H reaches the same daemon through the same bridge
    let busctl = fleet
        .cmd(
            Path::new("busctl"),
            &[
                "-H",
                &h1,
                "call",
                "org.turboprocess.Turbo1",
                "/org/turboprocess/Turbo1/Manager",
                "org.turboprocess.Turbo1.Manager",
                "ListApps",
            ],
        )
        .output()
        .unwrap();
    assert!(busctl.status.success(), "busctl -H: {}", stderr(&busctl));
    assert!(stdout(&busctl).contains("\"web\""), "{}", stdout(&busctl));

    // logs and logs -f, read on the host by its own turbo
    let out = fleet.turbo(&[
        "-H",
        &h1,
        "start",
        "sh",
        "--name",
        "talker",
        "--",
        "-c",
        "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("talker's lines over -H", Duration::from_secs(10), || {
        let out = fleet.turbo(&["-H", &h1, "logs", "talker", "--lines", "5"]);
        (out.status.success() && stdout(&out).contains("tick-")).then_some(())
    });
    let mut follow = fleet
        .cmd(
            &bin_dir().join("turbo"),
            &["-H", &h1, "logs", "talker", "-f", "--lines", "1"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ticks = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ticks.len() < 3 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && let Some(n) = line.split("tick-").nth(1)
        {
            ticks.insert(n.trim().to_owned());
        }
    }
    // the whole group: the local turbo and its ssh
    let _ = kill_group(follow.id());
    let _ = follow.wait();
    assert!(
        ticks.len() >= 3,
        "logs -f over -H followed new lines: {ticks:?}"
    );

    // monit in a real terminal (tmux): the remote turbo's dashboard through ssh -t
    monit_over_ssh(&fleet, &h1);

    // a mutating command on every host, then status --json with a host on every entry
    let all = fleet.addrs().join(",");
    let out = fleet.turbo(&["-H", &all, "start", "sleep", "--name", "base", "--", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fleet.turbo(&["-H", &all, "status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entries = json(&stdout(&out));
    for host in fleet.addrs() {
        let base = entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["host"] == host && e["name"] == "base");
        assert!(base.is_some(), "base on {host} in {entries}");
    }
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["host"].is_string())
    );
    let hosts_file = fleet.dir.path().join("hosts");
    std::fs::write(
        &hosts_file,
        format!("# test fleet\n{h1} web\n{h2} web\n{h3} db\n"),
    )
    .unwrap();
    let out = fleet.turbo(&[
        "--hosts",
        &format!("{}@web", hosts_file.display()),
        "status",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("HOST"), "{table}");
    assert!(
        table.contains(&h2) && !table.contains(&h3),
        "group web only: {table}"
    );

    // an unreachable host: its line in the summary, the others' results, a non-zero exit
    let out = fleet.turbo(&["-H", &format!("{h1},10.213.9.2,{h3}"), "status"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains(&h1) && table.contains(&h3), "{table}");
    let summary = stderr(&out);
    assert!(summary.contains("3 hosts: 2 ok, 1 failed"), "{summary}");
    assert!(
        summary
            .lines()
            .any(|l| l.contains("10.213.9.2") && l.contains("unreachable")),
        "{summary}"
    );

    // a key the host does not know: the login is refused, said in one line, exit 11
    let out = fleet
        .cmd(&bin_dir().join("turbo"), &["-H", &h1, "status"])
        .env(
            "FLEET_SSH_CONFIG",
            fleet.dir.path().join("ssh_config_wrong"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refused the SSH login") && err.contains("authorized_keys"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // a host key nobody accepted: exit 12, and how to check it
    let out = fleet
        .cmd(&bin_dir().join("turbo"), &["-H", &h2, "status"])
        .env(
            "FLEET_SSH_CONFIG",
            fleet.dir.path().join("ssh_config_unknown"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert!(stderr(&out).contains("host key of"), "{}", stderr(&out));

    // info --json of two hosts: one object per host, each naming it
    let out = fleet.turbo(&["-H", &format!("{h1},{h2}"), "info", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let infos = json(&stdout(&out));
    let named: Vec<&str> = infos
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["host"].as_str().unwrap())
        .collect();
    assert_eq!(named, [h1.as_str(), h2.as_str()], "{infos}");

    // a remote user outside the admin group: reads work, changes are the daemon's to refuse
    let as_user = format!("{}@{h1}", fleet.user);
    let out = fleet.turbo(&["-H", &as_user, "status", "--json"]);
    assert!(out.status.success(), "anyone may read: {}", stderr(&out));
    let out = fleet.turbo(&["-H", &as_user, "stop", "web"]);
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
    assert!(stderr(&out).contains("may not"), "{}", stderr(&out));
    assert_eq!(web(fleet.apps_on(0))["state"], "online", "nothing changed");

    // a rollout stops at host 2, whose app fails; host 3 is left alone
    let yml = rollout_yml(fleet.dir.path());
    let yml = yml.to_str().unwrap();
    let out = fleet.turbo(&["-H", &all, "apply", yml]);
    let summary = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{summary}");
    assert!(
        summary.contains("3 hosts: 1 ok, 1 failed, 1 skipped"),
        "{summary}"
    );
    let roll = |host: usize| {
        fleet
            .apps_on(host)
            .into_iter()
            .find(|a| a["name"] == "roll")
    };
    assert_eq!(roll(0).expect("roll on host 1")["state"], "online");
    assert!(roll(1).is_some(), "host 2 got the change, which failed");
    assert!(roll(2).is_none(), "host 3 untouched after host 2 failed");
    // --continue-on-error goes on past host 2
    let out = fleet.turbo(&["-H", &all, "apply", yml, "--continue-on-error"]);
    let summary = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "host 2 still fails: {summary}");
    assert!(summary.contains("3 hosts: 2 ok, 1 failed"), "{summary}");
    assert_eq!(roll(2).expect("roll on host 3")["state"], "online");

    // a host whose daemon is gone
    let out = fleet.turbo(&["-H", &h3, "kill"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fleet.turbo(&["-H", &h3, "status"]);
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no turbo-daemon runs on"),
        "{}",
        stderr(&out)
    );

    eprintln!("fleet test: {:.1} s", started.elapsed().as_secs_f64());
}

fn kill_group(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}
