//! The Debian package, the way an operator meets it: `cargo xtask dist` packages the binaries
//! of this build, lintian accepts the package, its file list is the expected one, and it is
//! installed into a throw-away root where the installed daemon runs in system mode on a
//! system bus, is driven by the installed CLI, is upgraded in place with apps running (same
//! pids), and is removed (state kept) and purged (state gone).
//!
//! The throw-away root is an overlay of this machine's `/` in a private mount namespace, with
//! fresh `/run` and `/tmp`: everything the package and the daemon write lands in a tmpfs that
//! vanishes with the namespace, and the machine's own dpkg database, `/etc` and `/var` are never
//! touched. What the machine may hold already (a turboprocess package, a `turbo` group, files of
//! `turbo startup`) is removed inside the overlay first, so the result does not depend on it.
//! Why not `dpkg --root` or a debootstrap'd root: docs/install.md, "How the package is tested".
//!
//! The package is built from the debug binaries with `--fast` (gzip -1): the suite builds no
//! release binaries, and xz would take half a minute on 35 MB of debug code.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use turbo_tests::{bin_dir, is_root, json, pid_alive, system_bus_config, wait_for};

/// `PATH` of every command in the root, as a root shell would have it.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PACKAGE: &str = "turboprocess";
/// The system bus of the root, where the packaged daemon serves with `--system`.
const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// The throw-away root: a process that holds a private mount namespace in which `dir/root` is
/// an overlay of `/`. Commands enter it with `nsenter` and `chroot`.
struct Root {
    /// Host directory; inside the namespace a tmpfs is mounted on it.
    dir: tempfile::TempDir,
    holder: Child,
}

impl Root {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("turbo-pkg-root-")
            .tempdir()
            .unwrap();
        // the overlay's upper layer must be on a file system that supports it (tmpfs does;
        // the machine's /tmp may itself be an overlay); /run and /tmp start empty, so no
        // /run/systemd/system (systemd is not PID 1 here) and no host bus socket
        let script = r#"set -e
t="$1"
mount -t tmpfs -o size=2g,mode=0755 turbo-pkg "$t"
mkdir "$t/upper" "$t/work" "$t/root"
mount -t overlay turbo-pkg -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root"
mount --rbind /dev "$t/root/dev"
mount -t proc proc "$t/root/proc"
mount --rbind /sys "$t/root/sys"
mount -t tmpfs -o mode=0755 run "$t/root/run"
mount -t tmpfs -o mode=1777 tmp "$t/root/tmp"
echo ready
exec sleep 86400"#;
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            panic!(
                "could not make the throw-away root (a private mount namespace with an overlay \
                 of /; needs root and overlayfs): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self { dir, holder }
    }

    /// The root as the namespace sees it.
    fn inside(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A path of the root, reachable from this process through the holder's `/proc` entry.
    fn path(&self, rel: &str) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/{}/root", self.holder.id()));
        p.push(self.inside().strip_prefix("/").unwrap());
        p.push(rel.trim_start_matches('/'));
        p
    }

    /// `args` run inside the root as root, with a clean environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.holder.id()))
            .args(["--mount", "--", "chroot"])
            .arg(self.inside())
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("NO_COLOR", "1")
            .current_dir("/")
            .stdin(Stdio::null());
        cmd
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("nsenter (util-linux)")
    }

    /// Runs `args` in the root; panics with its output unless it succeeds. Returns stdout and
    /// stderr together.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{args:?} failed ({}):\n{text}",
            out.status
        );
        text
    }

    /// `turbo --json ...` of the installed CLI, which finds the daemon by itself.
    fn turbo_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["turbo"];
        all.extend_from_slice(args);
        all.push("--json");
        let out = self.output(&all);
        assert!(
            out.status.success(),
            "{all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&String::from_utf8_lossy(&out.stdout))
    }

    /// The pids of every process in the root's mount namespace but the holder.
    fn processes(&self) -> BTreeSet<u32> {
        let Ok(ns) = fs::read_link(format!("/proc/{}/ns/mnt", self.holder.id())) else {
            return BTreeSet::new();
        };
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != self.holder.id())
            .filter(|pid| fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|n| n == ns))
            .filter(|&pid| pid_alive(u64::from(pid)))
            .collect()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // everything started in the root dies with it: the namespace (and its tmpfs) goes away
        // with its last process
        for pid in self.processes() {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(i32::try_from(pid).unwrap_or(0), libc::SIGKILL) };
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Kills a process started in the root when the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cargo xtask dist --bin-dir <this build> --fast --out-dir <out> <extra>`.
fn dist_cmd(out: &Path, extra: &[&str]) -> Command {
    let xtask = bin_dir().join("xtask");
    assert!(
        xtask.is_file(),
        "{} is built by `cargo build --bins`",
        xtask.display()
    );
    let mut cmd = Command::new(&xtask);
    cmd.arg("dist")
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--out-dir")
        .arg(out)
        .arg("--fast")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The one package `dist` made in `out`; panics with what it said unless it succeeded.
fn made_deb(out: &Path, status: std::process::ExitStatus, said: &str) -> PathBuf {
    assert!(
        status.success(),
        "cargo xtask dist failed ({status}):\n{said}"
    );
    let debs: Vec<PathBuf> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "one .deb in {}: {debs:?}\n{said}",
        out.display()
    );
    debs[0].clone()
}

/// Packages this build without lintian; returns the package and how long it took.
fn dist(out: &Path, extra: &[&str]) -> (PathBuf, Duration) {
    let started = Instant::now();
    let mut all = vec!["--no-lintian"];
    all.extend_from_slice(extra);
    let built = dist_cmd(out, &all).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    (made_deb(out, built.status, &said), started.elapsed())
}

fn host_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The package's files and directories (`./usr/bin/turbo` as `usr/bin/turbo`) with their
/// `ls -l` mode and owner; checks that `dpkg-deb --contents` lists each once.
fn contents(deb: &Path) -> BTreeSet<(String, String)> {
    let listing = host_ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
    let mut entries = BTreeSet::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mode), Some(owner), Some(path)) = (fields.first(), fields.get(1), fields.get(5))
        else {
            panic!("unexpected dpkg-deb --contents line {line:?}");
        };
        assert_eq!(*owner, "root/root", "{line}");
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        if !path.is_empty() {
            assert!(entries.insert((path, (*mode).to_owned())), "twice: {line}");
        }
    }
    entries
}

/// What the package must contain: every file and directory with its mode. The man pages are
/// those the packaged `turbo` writes (one per command), so a new command needs no edit here.
fn expected_contents() -> BTreeSet<(String, String)> {
    const FILES: [&str; 13] = [
        "etc/turbo/turbo.yml",
        "usr/lib/systemd/system/turbo-daemon.service",
        "usr/lib/sysusers.d/turboprocess.conf",
        "usr/lib/tmpfiles.d/turboprocess.conf",
        "usr/share/bash-completion/completions/turbo",
        "usr/share/dbus-1/interfaces/org.turboprocess.Turbo1.xml",
        "usr/share/dbus-1/system.d/org.turboprocess.Turbo1.conf",
        "usr/share/doc/turboprocess/changelog.gz",
        "usr/share/doc/turboprocess/copyright",
        "usr/share/fish/vendor_completions.d/turbo.fish",
        "usr/share/lintian/overrides/turboprocess",
        "usr/share/polkit-1/actions/org.turboprocess.turbo1.policy",
        "usr/share/zsh/vendor-completions/_turbo",
    ];
    let pages = tempfile::tempdir().unwrap();
    host_ok(
        Command::new(bin_dir().join("turbo"))
            .args(["man", "--out-dir"])
            .arg(pages.path()),
    );
    let mut files: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
    for page in fs::read_dir(pages.path()).unwrap() {
        let name = page.unwrap().file_name().into_string().unwrap();
        files.push(format!("usr/share/man/man1/{name}.gz"));
    }
    assert!(
        files.iter().any(|f| f.ends_with("/turbo.1.gz")),
        "{files:?}"
    );
    let mut expected = BTreeSet::new();
    for bin in ["usr/bin/turbo", "usr/bin/turbo-daemon"] {
        expected.insert((bin.to_owned(), "-rwxr-xr-x".to_owned()));
    }
    for file in files {
        let mut dir = Path::new(&file).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            expected.insert((d.display().to_string(), "drwxr-xr-x".to_owned()));
            dir = d.parent();
        }
        expected.insert((file, "-rw-r--r--".to_owned()));
    }
    expected.insert(("usr/bin".to_owned(), "drwxr-xr-x".to_owned()));
    expected
}

/// The status of every app instance, by `name:instance`: (pid, restarts).
fn pids(root: &Root) -> Vec<(String, u64, u64)> {
    let status = root.turbo_json(&["status"]);
    let mut out: Vec<(String, u64, u64)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["state"], "online", "{a}");
            (
                format!("{}:{}", a["name"].as_str().unwrap(), a["instance"]),
                a["pid"].as_u64().unwrap(),
                a["restarts"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// (device, inode) of the file a path names, following links: for `/proc/PID/exe`, the file the
/// process is running.
fn file_id(path: &Path) -> (u64, u64) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.dev(), m.ino())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story: install, run, upgrade, remove, purge"
)]
fn deb_installs_runs_in_system_mode_upgrades_in_place_and_purges() {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED package: installing a .deb into a throw-away root needs root (mount \
             namespaces, overlayfs, dpkg); CI runs as root ***\n"
        );
        return;
    }
    let test_started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("turbo-pkg-")
        .tempdir()
        .unwrap();
    // lintian takes longer than everything else here (it inspects 35 MB of debug code), so a
    // third build of the same package, with lintian, runs while the package is installed
    let linted_dir = work.path().join("linted");
    let linted_log = work.path().join("linted.log");
    let log = fs::File::create(&linted_log).unwrap();
    let mut linted = Running(
        dist_cmd(&linted_dir, &[])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let (deb, first_build) = dist(&work.path().join("v1"), &[]);
    let version = host_ok(
        Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&deb)
            .arg("Version"),
    )
    .trim()
    .to_owned();
    let new_version = format!("{version}+upgrade1");
    let (deb2, second_build) = dist(&work.path().join("v2"), &["--version", &new_version]);

    // the package's file list, modes and control data
    assert_eq!(contents(&deb), expected_contents(), "the package's files");
    let fields = host_ok(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .args(["Package", "Depends", "Section"]),
    );
    assert!(
        fields.contains(&format!("Package: {PACKAGE}\n")),
        "{fields}"
    );
    assert!(
        fields.contains("libc6 (>= ") && fields.contains(", dbus-daemon"),
        "{fields}"
    );
    let info = host_ok(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for script in ["postinst", "prerm", "postrm", "conffiles", "md5sums"] {
        assert!(info.contains(&format!(" {script} ")), "{script} in\n{info}");
    }

    let root = Root::new();
    let root_started = Instant::now();
    // whatever this machine holds of TurboProcess goes, inside the overlay only
    if root.output(&["dpkg-query", "-W", PACKAGE]).status.success() {
        root.ok(&["dpkg", "--purge", PACKAGE]);
    }
    if root.output(&["getent", "group", "turbo"]).status.success() {
        root.ok(&["groupdel", "turbo"]);
    }
    root.ok(&[
        "rm",
        "-rf",
        "/etc/turbo",
        "/var/lib/turbo",
        "/var/log/turbo",
        "/root/.turbo",
        "/etc/systemd/system/turbo-daemon.service",
        "/etc/dbus-1/system.d/org.turboprocess.Turbo1.conf",
    ]);
    // man-db's trigger rebuilds its whole index after every dpkg run (4 s each here); `man -w`
    // below finds the page without the index
    root.ok(&["rm", "-f", "/var/lib/man-db/auto-update"]);
    for (from, name) in [(&deb, "v1.deb"), (&deb2, "v2.deb")] {
        fs::copy(from, root.path(&format!("tmp/{name}"))).unwrap();
    }

    // install: the group and the directories are made, nothing is started without systemd
    let said = root.ok(&["dpkg", "--install", "/tmp/v1.deb"]);
    assert!(
        said.contains("systemd is not running here") && said.contains("turbo-daemon --system"),
        "the postinst says why nothing was started:\n{said}"
    );
    let status = root.ok(&["dpkg-query", "-W", "-f=${Status} ${Version}", PACKAGE]);
    assert_eq!(status, format!("install ok installed {version}"));
    assert!(root.processes().is_empty(), "the package started something");
    let group = root.ok(&["getent", "group", "turbo"]);
    let gid: u32 = group.split(':').nth(2).unwrap().parse().unwrap();
    assert_eq!(mode(&root.path("var/lib/turbo")), 0o700);
    assert_eq!(mode(&root.path("var/log/turbo")), 0o750);
    let conffiles = root.ok(&["dpkg-query", "-W", "-f=${Conffiles}", PACKAGE]);
    assert!(conffiles.contains("/etc/turbo/turbo.yml "), "{conffiles}");
    let example = fs::read_to_string(root.path("etc/turbo/turbo.yml")).unwrap();
    assert!(
        example
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .eq(["apps: []"]),
        "the example config starts no app:\n{example}"
    );
    assert_eq!(
        root.ok(&["turbo", "--version"]).trim(),
        format!("turbo {version}")
    );
    assert_eq!(
        root.ok(&["sh", "-c", "command -v turbo"]).trim(),
        "/usr/bin/turbo"
    );
    assert_eq!(
        root.ok(&["man", "-w", "turbo"]).trim(),
        "/usr/share/man/man1/turbo.1.gz"
    );
    let fpath = root.ok(&["zsh", "-fc", "print -l $fpath"]);
    assert!(
        fpath
            .lines()
            .any(|l| l == "/usr/share/zsh/vendor-completions"),
        "zsh loads the packaged completions from its fpath: {fpath}"
    );
    let unit_path = "/usr/lib/systemd/system/turbo-daemon.service";
    let verify = root.output(&["systemd-analyze", "verify", unit_path]);
    let verdict = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && verdict.is_empty(),
        "systemd-analyze verify {unit_path}: {verdict}"
    );

    // a system bus whose policy is what the package installed
    root.ok(&["mkdir", "-p", "/run/dbus", "/tmp/bus"]);
    fs::write(
        root.path("tmp/bus/system.conf"),
        system_bus_config(
            Path::new("/run/dbus/system_bus_socket"),
            "<includedir>/usr/share/dbus-1/system.d</includedir>",
        ),
    )
    .unwrap();
    let bus = Running(
        root.cmd(&[
            "dbus-daemon",
            "--config-file=/tmp/bus/system.conf",
            "--nofork",
            "--nopidfile",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_for("the root's system bus", Duration::from_secs(5), || {
        std::os::unix::net::UnixStream::connect(root.path("run/dbus/system_bus_socket")).ok()
    });

    // the daemon exactly as the installed unit starts it
    let unit = fs::read_to_string(root.path(unit_path)).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart= in the installed unit");
    assert_eq!(exec, "/usr/bin/turbo-daemon --system");
    let exec: Vec<&str> = exec.split_whitespace().collect();
    let log_path = work.path().join("daemon.log");
    let log = fs::File::create(&log_path).unwrap();
    let ebpf_required = std::env::var("TURBO_TEST_EBPF").is_ok_and(|v| v == "1");
    let mut daemon_cmd = root.cmd(&exec);
    if ebpf_required {
        daemon_cmd.env("TURBO_EBPF", "require");
    }
    let mut daemon = Running(
        daemon_cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let daemon_log = || fs::read_to_string(&log_path).unwrap_or_default();
    wait_for(
        "the installed daemon on the system bus",
        Duration::from_secs(20),
        || {
            if let Ok(Some(status)) = daemon.0.try_wait() {
                panic!("turbo-daemon exited ({status}):\n{}", daemon_log());
            }
            // an explicit address: while no daemon answers, the CLI must not start one of its own
            root.cmd(&["turbo", "ping"])
                .env("TURBO_BUS_ADDRESS", SYSTEM_BUS)
                .output()
                .unwrap()
                .status
                .success()
                .then_some(())
        },
    );

    // from here the installed CLI finds the daemon on the system bus by itself
    let info = root.turbo_json(&["info"]);
    assert_eq!(info["mode"], "system", "{info}");
    assert_eq!(info["home"], "/var/lib/turbo", "{info}");
    if ebpf_required {
        assert_eq!(
            info["event_source"], "ebpf",
            "the packaged daemon's eBPF object: {info}"
        );
    }
    let daemon_pid = u32::try_from(info["pid"].as_u64().unwrap()).unwrap();
    // the conffile, edited as an operator would
    fs::write(
        root.path("etc/turbo/turbo.yml"),
        "apps:\n  - name: pkg-sleeper\n    cmd: [sleep, \"1000\"]\n  - name: pkg-talker\n    \
         cmd: [sh, -c, \"echo hello from the package; exec sleep 1000\"]\n    instances: 2\n",
    )
    .unwrap();
    root.ok(&["turbo", "start", "/etc/turbo/turbo.yml"]);
    let before = wait_for("three instances online", Duration::from_secs(15), || {
        let status = root.turbo_json(&["status"]);
        let apps = status.as_array()?;
        (apps.len() == 3 && apps.iter().all(|a| a["state"] == "online")).then(|| pids(&root))
    });
    wait_for(
        "the app's output in its log",
        Duration::from_secs(10),
        || {
            root.ok(&["turbo", "logs", "pkg-talker", "--lines", "5"])
                .contains("hello from the package")
                .then_some(())
        },
    );
    assert!(
        fs::read_dir(root.path("var/log/turbo"))
            .unwrap()
            .next()
            .is_some(),
        "app logs go to /var/log/turbo"
    );
    // the package's group is the daemon's admin group
    let as_nobody = |groups: &str, args: &[&str]| {
        let mut all = vec!["setpriv", "--reuid=65534", "--regid=65534"];
        let groups = format!("--groups={groups}");
        all.push(if groups == "--groups=" {
            "--clear-groups"
        } else {
            &groups
        });
        all.push("--");
        all.push("turbo");
        all.extend_from_slice(args);
        root.output(&all)
    };
    let denied = as_nobody("", &["reset", "pkg-sleeper"]);
    assert!(
        !denied.status.success()
            && String::from_utf8_lossy(&denied.stderr).contains("uid 65534 may not"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let allowed = as_nobody(&gid.to_string(), &["reset", "pkg-sleeper"]);
    assert!(
        allowed.status.success(),
        "a member of the turbo group may: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let installed_daemon = file_id(&root.path("usr/bin/turbo-daemon"));
    assert_eq!(
        file_id(Path::new(&format!("/proc/{daemon_pid}/exe"))),
        installed_daemon
    );
    let upgrade_started = Instant::now();

    // upgrade with the apps running: the daemon re-executes the new binary in place
    let said = root.ok(&["dpkg", "--install", "/tmp/v2.deb"]);
    let upgrade_took = upgrade_started.elapsed();
    assert!(
        said.contains(&format!("upgraded in place: pid {daemon_pid} (same pid)")),
        "the postinst ran `turbo daemon upgrade`:\n{said}\n--- daemon log ---\n{}",
        daemon_log()
    );
    let status = root.ok(&["dpkg-query", "-W", "-f=${Status} ${Version}", PACKAGE]);
    assert_eq!(status, format!("install ok installed {new_version}"));
    let new_daemon = file_id(&root.path("usr/bin/turbo-daemon"));
    assert_ne!(new_daemon, installed_daemon, "dpkg replaced the binary");
    assert_eq!(
        file_id(Path::new(&format!("/proc/{daemon_pid}/exe"))),
        new_daemon,
        "the daemon runs the new binary, with the same pid"
    );
    let info = root.turbo_json(&["info"]);
    assert_eq!(info["pid"], daemon_pid, "{info}");
    assert_eq!(
        pids(&root),
        before,
        "the apps kept their pids and restart counts"
    );
    assert!(
        fs::read_to_string(root.path("etc/turbo/turbo.yml"))
            .unwrap()
            .contains("pkg-talker"),
        "the edited conffile survives the upgrade"
    );

    // remove: the daemon and its apps stop, state, logs and config stay
    let said = root.ok(&["dpkg", "--remove", PACKAGE]);
    assert!(
        said.contains("daemon stopped"),
        "the prerm stopped the daemon:\n{said}"
    );
    let exited = wait_for("the daemon to exit", Duration::from_secs(15), || {
        daemon.0.try_wait().unwrap()
    });
    assert!(
        exited.success(),
        "turbo-daemon exited with {exited}:\n{}",
        daemon_log()
    );
    for (app, pid, _) in &before {
        assert!(
            !pid_alive(*pid),
            "{app} (pid {pid}) still runs after remove"
        );
    }
    let left: Vec<u32> = root
        .processes()
        .into_iter()
        .filter(|&p| p != bus.0.id())
        .collect();
    assert!(left.is_empty(), "processes left after remove: {left:?}");
    let status = root.ok(&["dpkg-query", "-W", "-f=${Status}", PACKAGE]);
    assert_eq!(status, "deinstall ok config-files");
    assert!(!root.path("usr/bin/turbo").exists());
    let state = fs::read_to_string(root.path("var/lib/turbo/state.json")).unwrap();
    assert!(
        state.contains("pkg-talker"),
        "the app list is kept: {state}"
    );
    assert!(root.path("var/log/turbo").is_dir());
    assert!(root.path("etc/turbo/turbo.yml").is_file());

    // purge: state, logs and config go; the group stays (Debian leaves system groups)
    root.ok(&["dpkg", "--purge", PACKAGE]);
    assert!(!root.output(&["dpkg-query", "-W", PACKAGE]).status.success());
    for gone in ["var/lib/turbo", "var/log/turbo", "etc/turbo", "run/turbo"] {
        assert!(!root.path(gone).exists(), "/{gone} after purge");
    }
    root.ok(&["getent", "group", "turbo"]);
    assert!(
        !root.path("root/.turbo").exists(),
        "no CLI call started a user-mode daemon of its own"
    );
    drop(bus);

    // lintian on the same package: no error, no warning; and two builds of one commit from the
    // same binaries are the same bytes
    let lint_wait = Instant::now();
    let status = linted.0.wait().unwrap();
    let lint_wait = lint_wait.elapsed();
    let said = fs::read_to_string(&linted_log).unwrap();
    let linted_deb = made_deb(&linted_dir, status, &said);
    let summary = said
        .lines()
        .find(|l| l.starts_with("lintian: "))
        .unwrap_or_else(|| panic!("no lintian summary in:\n{said}"));
    assert!(
        summary.starts_with("lintian: 0 errors, 0 warnings"),
        "{said}"
    );
    assert_eq!(
        fs::read(&linted_deb).unwrap(),
        fs::read(&deb).unwrap(),
        "two builds of the same binaries differ: the package is not reproducible"
    );
    eprintln!(
        "package: built in {:.1}s + {:.1}s; installed, ran, upgraded ({:.1}s), removed and \
         purged in {:.1}s; then waited {:.1}s for lintian ({summary}); {:.1}s in all",
        first_build.as_secs_f64(),
        second_build.as_secs_f64(),
        upgrade_took.as_secs_f64(),
        root_started.elapsed().as_secs_f64() - lint_wait.as_secs_f64(),
        lint_wait.as_secs_f64(),
        test_started.elapsed().as_secs_f64()
    );
}
