//! Chaos: 50 apps write numbered lines without pause while the daemon is SIGKILLed 10 times at
//! random moments (half of them during its start-up) and upgraded in place twice. At the end
//! every app has its first pid, every log holds each number exactly once and in order (across
//! rotations), and `turbo status` agrees with /proc. The seed is printed; `CHAOS_SEED=<n>`
//! replays a run.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use turbo_api::{LogStream, logfmt};
use turbo_tests::{Rng, TestDaemon, keeper_pid, wait_for};

const APPS: usize = 50;
const KILLS: usize = 10;
const UPGRADES: usize = 2;

fn writer() -> &'static str {
    env!("CARGO_BIN_EXE_numbered-lines")
}

/// Pids of running `numbered-lines` processes of this daemon home (their working directory).
fn writers_in_proc(home: &Path) -> Vec<u64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u64>().ok())
        .filter(|p| {
            // canonical: the build directory may be reached through a symbolic link
            std::fs::read_link(format!("/proc/{p}/exe"))
                .is_ok_and(|e| Some(e) == std::fs::canonicalize(writer()).ok())
                && std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit_once(") ")
                        .is_some_and(|(_, r)| !r.starts_with('Z'))
                })
                && std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c.starts_with(home))
        })
        .collect()
}

/// The log file and its rotated files, oldest first.
fn log_files(dir: &Path, app: &str) -> Vec<PathBuf> {
    let current = dir.join(logfmt::file_name(app, LogStream::Out));
    let names = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name()));
    logfmt::oldest_first(&current, names)
}

/// The records of an app's stdout log (stamp removed), oldest first.
fn records(dir: &Path, app: &str) -> Vec<String> {
    log_files(dir, app)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(|l| l.split_once(' ').map_or("", |(_, r)| r).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn fifty_apps_keep_their_pids_and_every_line_through_kills_and_upgrades() {
    let mut rng = Rng::seeded("CHAOS_SEED");
    let mut d = TestDaemon::start("auto");
    let mut yml = String::from("apps:\n");
    for i in 0..APPS {
        // small files: rotation happens many times during the run
        yml.push_str(&format!(
            "  - name: w{i:02}\n    cmd: [\"{}\"]\n    autorestart: always\n    log: {{ max_size: 16k, keep: 1000 }}\n",
            writer()
        ));
    }
    let config = d.config("chaos", &yml);
    d.turbo_ok(&["start", config.to_str().unwrap()]);
    let first: Vec<(String, u64)> = wait_for("50 apps online", Duration::from_secs(30), || {
        let apps = d.status();
        (apps.len() == APPS && apps.iter().all(|a| a["state"] == "online")).then(|| {
            apps.iter()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap().to_owned(),
                        a["pid"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
    });
    wait_for(
        "the state file to name every pid",
        Duration::from_secs(10),
        || {
            let state = std::fs::read_to_string(d.home().join("state.json")).ok()?;
            first
                .iter()
                .all(|(_, pid)| state.contains(&format!("\"pid\": {pid}")))
                .then_some(())
        },
    );

    let started = Instant::now();
    let (mut kills, mut upgrades) = (0, 0);
    // upgrades between kills, at fixed turns; the moments of the kills are random
    for turn in 0..KILLS + UPGRADES {
        if turn == 3 || turn == 8 {
            // the previous turn may have left a daemon still starting
            d.wait_answering();
            std::thread::sleep(Duration::from_millis(rng.below(500)));
            let out = d.turbo_ok(&["daemon", "upgrade"]);
            assert!(out.contains("same pid"), "{out}");
            upgrades += 1;
            continue;
        }
        if kills % 2 == 0 {
            // while it runs
            std::thread::sleep(Duration::from_millis(50 + rng.below(700)));
        } else {
            // during its start-up (restoring, adopting, connecting to the keeper), or just after
            std::thread::sleep(Duration::from_millis(rng.below(1200)));
        }
        d.kill9_daemon();
        kills += 1;
        if kills % 2 == 1 {
            d.respawn_daemon();
        } else {
            d.restart_daemon();
        }
    }
    d.wait_answering();
    let chaos_time = started.elapsed();

    // status agrees with /proc, and no app was restarted or lost
    let apps = d.status();
    assert_eq!(apps.len(), APPS);
    let mut in_proc = writers_in_proc(d.home());
    in_proc.sort_unstable();
    let mut in_status: Vec<u64> = apps.iter().map(|a| a["pid"].as_u64().unwrap()).collect();
    in_status.sort_unstable();
    assert_eq!(
        in_status, in_proc,
        "turbo status and /proc list the same processes"
    );
    for (name, pid) in &first {
        let app = apps.iter().find(|a| a["name"] == name.as_str()).unwrap();
        assert_eq!(app["state"], "online", "{name}: {app}");
        assert_eq!(
            app["pid"].as_u64(),
            Some(*pid),
            "{name} kept its pid: {app}"
        );
        assert_eq!(app["restarts"], 0, "{name}: {app}");
    }

    // stop the writers (each then writes `end <count>`) and wait for the keeper to write it all
    d.turbo_ok(&["stop", "all"]);
    let log_dir = d.home().join("logs");
    let mut lines_checked = 0u64;
    let mut rotations = 0usize;
    for (name, _) in &first {
        let recs = wait_for(
            &format!("the last line of {name}"),
            Duration::from_secs(20),
            || {
                let recs = records(&log_dir, name);
                recs.last()
                    .is_some_and(|l| l.starts_with("end "))
                    .then_some(recs)
            },
        );
        let (last, numbers) = recs.split_last().unwrap();
        let count: u64 = last.strip_prefix("end ").unwrap().parse().unwrap();
        let numbers: Vec<u64> = numbers
            .iter()
            .map(|l| {
                l.parse()
                    .unwrap_or_else(|_| panic!("{name}: odd record {l:?}"))
            })
            .collect();
        if numbers != (0..count).collect::<Vec<_>>() {
            let missing: Vec<u64> = (0..count).filter(|n| !numbers.contains(n)).collect();
            let mut seen = std::collections::HashSet::new();
            let dup: Vec<u64> = numbers
                .iter()
                .copied()
                .filter(|n| !seen.insert(*n))
                .collect();
            panic!(
                "{name}: {count} lines written, {} logged; missing {:?}, duplicated {:?}",
                numbers.len(),
                &missing[..missing.len().min(20)],
                &dup[..dup.len().min(20)]
            );
        }
        lines_checked += count;
        rotations += log_files(&log_dir, name).len() - 1;
    }
    assert!(rotations > 0, "the logs rotated during the run");
    let summary = format!(
        "chaos: {APPS} apps, {kills} kills, {upgrades} upgrades in {:.1} s; {lines_checked} lines \
         checked (none missing or duplicated), {rotations} rotated files; every pid kept",
        chaos_time.as_secs_f64()
    );
    eprintln!("{summary}");
    assert_eq!((kills, upgrades), (KILLS, UPGRADES));
}

#[test]
fn a_killed_log_keeper_is_replaced_and_the_app_never_notices() {
    let d = TestDaemon::start("auto");
    d.turbo_ok(&["start", writer(), "--name", "steady"]);
    let pid = d.app("steady")["pid"].as_u64().unwrap();
    let keeper = keeper_pid(d.home()).expect("a log keeper runs for the home");
    let log = d.home().join("logs/steady-out.log");
    wait_for("some lines", Duration::from_secs(10), || {
        (records(&d.home().join("logs"), "steady").len() > 20).then_some(())
    });
    // SAFETY: kill(2) of the keeper this test's daemon started.
    assert_eq!(unsafe { libc::kill(keeper as i32, libc::SIGKILL) }, 0);
    let new = wait_for("a new keeper", Duration::from_secs(10), || {
        keeper_pid(d.home()).filter(|&p| p != keeper)
    });
    let before = std::fs::metadata(&log).unwrap().len();
    wait_for(
        "lines after the keeper's death",
        Duration::from_secs(10),
        || (std::fs::metadata(&log).unwrap().len() > before + 100).then_some(()),
    );
    assert_eq!(
        d.app("steady")["pid"].as_u64(),
        Some(pid),
        "the app never saw EPIPE"
    );
    d.turbo_ok(&["stop", "steady"]);
    let recs = wait_for("the last line", Duration::from_secs(10), || {
        let recs = records(&d.home().join("logs"), "steady");
        recs.last()
            .is_some_and(|l| l.starts_with("end "))
            .then_some(recs)
    });
    let (_, numbers) = recs.split_last().unwrap();
    let numbers: Vec<u64> = numbers.iter().map(|l| l.parse().unwrap()).collect();
    // what the killed keeper had read but not yet written may be missing (a small gap); the rest
    // comes once, in order
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order, once");
    let missing = numbers.last().unwrap() + 1 - numbers.len() as u64;
    eprintln!("keeper {keeper} killed, {new} took over; {missing} lines lost in flight");
    assert!(missing < 100, "{missing} lines lost");
}

#[test]
fn an_adopted_process_that_crashes_gets_its_stderr_tail() {
    let mut d = TestDaemon::start("auto");
    // the app dies only once the new daemon has adopted it (a file the test creates), not
    // after a fixed sleep: a loaded machine can take seconds to restart the daemon
    let go = d.home().join("go");
    let script = d.script(
        "late-crash.sh",
        &format!(
            "echo before the daemon died >&2\nwhile [ ! -e '{}' ]; do sleep 0.05; done\n\
             echo last words >&2\nexit 3\n",
            go.display()
        ),
    );
    d.turbo_ok(&["start", script.to_str().unwrap(), "--name", "late"]);
    let pid = d.app("late")["pid"].as_u64().unwrap();
    d.wait_saved_pid(pid);
    d.kill9_daemon();
    d.restart_daemon();
    assert_eq!(d.app("late")["pid"].as_u64(), Some(pid), "adopted");
    std::fs::write(&go, b"").unwrap();
    let crashes = wait_for("the crash record", Duration::from_secs(15), || {
        let c = d.json(&["crashes", "late"]);
        (c["stats"]["total"] == 1).then_some(c)
    });
    let tail = crashes["crashes"][0]["stderr_tail"].to_string();
    assert!(
        tail.contains("before the daemon died") && tail.contains("last words"),
        "{crashes}"
    );
    d.turbo_ok(&["stop", "late"]);
}

/// Stops the daemon of `home` (and its apps) when dropped, so a failed test leaves nothing.
struct KillOnDrop<'a>(&'a Path);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new(turbo_tests::bin_dir().join("turbo"))
            .arg("kill")
            .env("TURBO_HOME", self.0)
            .output();
    }
}

#[test]
fn upgrade_runs_the_binary_that_replaced_the_old_one_on_disk() {
    let dir = tempfile::Builder::new()
        .prefix("turbo-e2e-upgrade-")
        .tempdir()
        .unwrap();
    let home = dir.path().join("home");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let installed = bin.join("turbo-daemon");
    std::fs::copy(turbo_tests::bin_dir().join("turbo-daemon"), &installed).unwrap();
    let turbo = |args: &[&str]| {
        let out = std::process::Command::new(turbo_tests::bin_dir().join("turbo"))
            .args(args)
            .env("TURBO_HOME", &home)
            .env(
                "TURBO_BUS_ADDRESS",
                format!("unix:path={}", home.join("bus.sock").display()),
            )
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut daemon = std::process::Command::new(&installed)
        .env("TURBO_HOME", &home)
        .env("TURBO_EBPF", "off")
        .args(["--metrics-listen", "off"])
        .stderr(log)
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(&home);
    wait_for("the daemon", Duration::from_secs(15), || {
        turbo(&["ping"]).0.then_some(())
    });
    assert!(turbo(&["start", writer(), "--name", "w"]).0);
    let exe = format!("/proc/{}/exe", daemon.id());
    let old_inode = std::fs::metadata(&exe).unwrap().ino();

    // nothing at the install path: refused, and the daemon stays
    std::fs::remove_file(&installed).unwrap();
    let (ok, _) = turbo(&["daemon", "upgrade"]);
    assert!(!ok, "an upgrade without a binary must be refused");
    assert!(turbo(&["ping"]).0, "the daemon still answers");
    std::fs::copy(turbo_tests::bin_dir().join("turbo-daemon"), &installed).unwrap();

    // a package upgrade: the new file is renamed over the old one
    let staged = bin.join("turbo-daemon.new");
    std::fs::copy(&installed, &staged).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    let link = std::fs::read_link(&exe).unwrap();
    assert!(link.to_string_lossy().ends_with(" (deleted)"), "{link:?}");

    let (ok, out) = turbo(&["daemon", "upgrade"]);
    assert!(ok && out.contains("same pid"), "{out}");
    assert_eq!(
        std::fs::read_link(&exe).unwrap(),
        installed,
        "runs the new file"
    );
    assert_ne!(std::fs::metadata(&exe).unwrap().ino(), old_inode);
    assert!(daemon.try_wait().unwrap().is_none(), "the same process");
    let (ok, status) = turbo(&["status", "--json"]);
    assert!(ok && status.contains("\"online\""), "{status}");

    // the keeper the old image started is still this process's child: when it dies, the new
    // image reaps it (no zombie) and starts another
    let keeper = keeper_pid(&home).expect("a log keeper runs for the home");
    // SAFETY: kill(2) of the keeper this test's daemon started.
    assert_eq!(unsafe { libc::kill(keeper as i32, libc::SIGKILL) }, 0);
    wait_for("a new keeper", Duration::from_secs(10), || {
        keeper_pid(&home).filter(|&p| p != keeper)
    });
    wait_for(
        "the old keeper to be reaped, not left a zombie",
        Duration::from_secs(5),
        || (!Path::new(&format!("/proc/{keeper}")).exists()).then_some(()),
    );
}
