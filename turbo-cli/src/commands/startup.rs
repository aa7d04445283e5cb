//! `turbo startup [--print] [--root DIR]` and `turbo unstartup [--now] [--root DIR]`: install or
//! remove the systemd unit of system mode, with the system-bus policy and the polkit actions.
//!
//! The files are the ones shipped in `deploy/`, embedded at build time; the only change is the
//! unit's `ExecStart=`, which points at the `turbo-daemon` next to the running `turbo`, so the
//! unit starts the daemon that came with this CLI. `--root` (or `TURBO_STARTUP_ROOT`) writes
//! under another directory and never runs `systemctl`: for packaging, and for tests on machines
//! without systemd. Nothing here talks to the daemon.

use std::{
    env,
    fs::{self, DirBuilder},
    io,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    cli::{StartupArgs, UnstartupArgs},
    paths, term,
};

/// The unit as shipped; `ExecStart=` is rewritten by [`render_unit`].
const UNIT: &str = include_str!("../../../deploy/turbo-daemon.service");
/// The system-bus policy.
const BUS_POLICY: &str = include_str!("../../../deploy/org.turboprocess.Turbo1.conf");
/// The polkit actions.
const POLKIT_ACTIONS: &str = include_str!("../../../deploy/org.turboprocess.turbo1.policy");

/// The unit's name for `systemctl`.
pub const UNIT_NAME: &str = "turbo-daemon.service";
/// Where the unit goes, relative to the root: local units live in /etc/systemd/system.
const UNIT_PATH: &str = "etc/systemd/system/turbo-daemon.service";
/// Local bus configuration goes to /etc/dbus-1/system.d (packages use /usr/share/dbus-1).
const BUS_POLICY_PATH: &str = "etc/dbus-1/system.d/org.turboprocess.Turbo1.conf";
/// polkit reads actions from /usr/share/polkit-1/actions only.
const POLKIT_PATH: &str = "usr/share/polkit-1/actions/org.turboprocess.turbo1.policy";
/// The daemon binary's name, looked for next to `turbo`.
const DAEMON: &str = "turbo-daemon";
/// Exists exactly when systemd is the running init system (what `sd_booted(3)` checks).
const SYSTEMD_MARKER: &str = "/run/systemd/system";

/// `turbo startup`.
///
/// # Errors
/// No `turbo-daemon` next to `turbo`, not root, a file that cannot be written, or `systemctl`
/// failing (with its message).
pub fn startup(args: &StartupArgs) -> Result<()> {
    let daemon = daemon_binary()?;
    let unit = render_unit(&daemon)?;
    if args.print {
        return term::emit(unit.trim_end());
    }
    let root = install_root(args.root.as_deref())?;
    let files = [
        (UNIT_PATH, unit.as_str()),
        (BUS_POLICY_PATH, BUS_POLICY),
        (POLKIT_PATH, POLKIT_ACTIONS),
    ];
    for (rel, content) in files {
        let path = root.path(rel);
        let changed = write_file(&path, content)?;
        term::emit(&format!(
            "{} {}",
            if changed { "wrote" } else { "unchanged" },
            path.display()
        ))?;
    }
    term::emit(&format!("ExecStart={}", exec_start(&daemon)?))?;
    match root {
        Root::Prefix(dir) => term::emit(&format!(
            "--root {}: systemctl was not run; nothing was enabled",
            dir.display()
        )),
        Root::System if systemd_running() => {
            systemctl(&["daemon-reload"])?;
            systemctl(&["enable", "--now", UNIT_NAME])?;
            term::emit(&format!(
                "{UNIT_NAME} is enabled and started; `systemctl status turbo-daemon` shows it, \
                 `turbo status` talks to it"
            ))
        }
        Root::System => term::emit(&format!(
            "systemd is not running here ({SYSTEMD_MARKER} is missing), so nothing was enabled: \
             start `{} --system` from your init system, or on a systemd host run \
             `systemctl daemon-reload && systemctl enable --now turbo-daemon`",
            daemon.display()
        )),
    }
}

/// `turbo unstartup`.
///
/// # Errors
/// Not root, a file that cannot be removed, or `systemctl` failing (with its message).
pub fn unstartup(args: &UnstartupArgs) -> Result<()> {
    let root = install_root(args.root.as_deref())?;
    let managed = matches!(root, Root::System) && systemd_running();
    if managed && root.path(UNIT_PATH).exists() {
        if args.now {
            systemctl(&["disable", "--now", UNIT_NAME])?;
        } else {
            systemctl(&["disable", UNIT_NAME])?;
        }
    }
    for rel in [UNIT_PATH, BUS_POLICY_PATH, POLKIT_PATH] {
        let path = root.path(rel);
        match fs::remove_file(&path) {
            Ok(()) => term::emit(&format!("removed {}", path.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                term::emit(&format!("not present {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    match root {
        Root::Prefix(dir) => {
            term::emit(&format!("--root {}: systemctl was not run", dir.display()))
        }
        Root::System if managed => {
            systemctl(&["daemon-reload"])?;
            let active = Command::new("systemctl")
                .args(["is-active", "--quiet", UNIT_NAME])
                .status()
                .is_ok_and(|s| s.success());
            if active {
                term::emit(&format!(
                    "{UNIT_NAME} is disabled but still running with its apps; \
                     `systemctl stop turbo-daemon` stops them (or use `turbo unstartup --now`)"
                ))
            } else {
                term::emit(&format!("{UNIT_NAME} is disabled and stopped"))
            }
        }
        Root::System => term::emit(&format!(
            "systemd is not running here ({SYSTEMD_MARKER} is missing): systemctl was not run"
        )),
    }
}

/// Where the files go.
enum Root {
    /// The real system: `/`, with `systemctl`.
    System,
    /// `--root DIR`: under DIR, without `systemctl`.
    Prefix(PathBuf),
}

impl Root {
    fn path(&self, rel: &str) -> PathBuf {
        match self {
            Self::System => Path::new("/").join(rel),
            Self::Prefix(dir) => dir.join(rel),
        }
    }
}

fn install_root(root: Option<&Path>) -> Result<Root> {
    if let Some(dir) = root.filter(|d| !d.as_os_str().is_empty()) {
        let cwd = env::current_dir().context("cannot determine the current directory")?;
        return Ok(Root::Prefix(paths::absolutize(&cwd, dir)));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let exe = env::current_exe().map_or_else(|_| "turbo".into(), |e| e.display().to_string());
        bail!(
            "installing the systemd unit writes to /etc and runs systemctl: run `sudo {exe} startup` \
             (or `turbo startup --print` to see the unit, `--root DIR` to write elsewhere)"
        );
    }
    Ok(Root::System)
}

/// `turbo-daemon` next to the running `turbo`, which is what the unit must start.
fn daemon_binary() -> Result<PathBuf> {
    let exe = env::current_exe().context("cannot find the running turbo executable")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))?;
    let daemon = dir.join(DAEMON);
    let executable = daemon
        .metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable {
        bail!(
            "no executable {} next to {}: install turbo and turbo-daemon in the same directory \
             (e.g. /usr/local/bin) and run startup again",
            daemon.display(),
            exe.display()
        );
    }
    Ok(daemon)
}

/// The shipped unit with `ExecStart=` pointing at `daemon`, and a note saying who wrote it.
///
/// # Errors
/// A daemon path that a unit file cannot express (see [`quote_exec_path`]).
pub fn render_unit(daemon: &Path) -> Result<String> {
    let exec = exec_start(daemon)?;
    let mut out = format!(
        "# Written by `turbo startup` (turbo {}). Remove with `turbo unstartup`.\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut replaced = 0;
    for line in UNIT.lines() {
        if line.starts_with("ExecStart=") {
            out.push_str("ExecStart=");
            out.push_str(&exec);
            replaced += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert_eq!(replaced, 1, "the shipped unit has exactly one ExecStart=");
    Ok(out)
}

/// The value of `ExecStart=` for `daemon`.
fn exec_start(daemon: &Path) -> Result<String> {
    Ok(format!("{} --system", quote_exec_path(daemon)?))
}

/// `path` as the first word of a unit file command line: bare when it only has plain
/// characters, else double-quoted with `\` and `"` escaped; `%` (specifiers) and `$` (variable
/// expansion) are doubled either way.
///
/// # Errors
/// A path that is not UTF-8, not absolute, or contains control characters.
pub fn quote_exec_path(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .ok_or_else(|| anyhow!("{} is not valid UTF-8", path.display()))?;
    if !s.starts_with('/') {
        bail!("{s} is not an absolute path");
    }
    if s.chars().any(char::is_control) {
        bail!("{s:?} contains control characters");
    }
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._+-@:,".contains(c) || c == '%' || c == '$');
    let escaped = s.replace('%', "%%").replace('$', "$$");
    Ok(if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    })
}

/// Writes `content` to `path` (0644) through a temporary file and a rename, so a reader never
/// sees half a file; creates missing parent directories (0755). Returns whether it changed.
fn write_file(path: &Path, content: &str) -> Result<bool> {
    if fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.turbo-tmp"));
    let result = (|| -> io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        io::Write::write_all(&mut file, content.as_bytes())?;
        file.sync_all()?;
        // the umask may have cleared bits of 0644
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(true)
}

fn systemd_running() -> bool {
    Path::new(SYSTEMD_MARKER).is_dir()
}

fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .context("cannot run systemctl")?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_points_at_the_given_daemon() {
        let unit = render_unit(Path::new("/opt/turbo/bin/turbo-daemon")).unwrap();
        let exec: Vec<&str> = unit
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect();
        assert_eq!(exec, ["ExecStart=/opt/turbo/bin/turbo-daemon --system"]);
        assert!(unit.starts_with("# Written by `turbo startup`"));
        // everything else is the shipped unit, line for line
        let shipped: Vec<&str> = UNIT
            .lines()
            .filter(|l| !l.starts_with("ExecStart="))
            .collect();
        let rendered: Vec<&str> = unit
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("ExecStart="))
            .collect();
        assert_eq!(shipped, rendered);
    }

    #[test]
    fn exec_paths_are_quoted_for_systemd() {
        let q = |p: &str| quote_exec_path(Path::new(p));
        assert_eq!(
            q("/usr/local/bin/turbo-daemon").unwrap(),
            "/usr/local/bin/turbo-daemon"
        );
        assert_eq!(
            q("/opt/my apps/turbo-daemon").unwrap(),
            "\"/opt/my apps/turbo-daemon\""
        );
        assert_eq!(q("/opt/100%/d").unwrap(), "/opt/100%%/d");
        assert_eq!(q("/opt/$HOME/d").unwrap(), "/opt/$$HOME/d");
        assert_eq!(q("/a \"b\\c").unwrap(), "\"/a \\\"b\\\\c\"");
        assert!(q("relative/turbo-daemon").is_err());
        assert!(q("/opt/new\nline").is_err());
    }

    #[test]
    fn shipped_files_are_what_systemd_and_dbus_expect() {
        assert!(UNIT.contains("\nType=notify\n") && UNIT.contains("\nKillMode=process\n"));
        assert!(BUS_POLICY.contains("<allow own=\"org.turboprocess.Turbo1\"/>"));
        for verb in [
            "start", "stop", "restart", "delete", "reset", "flush", "save", "shutdown",
        ] {
            assert!(
                POLKIT_ACTIONS.contains(&format!("\"org.turboprocess.turbo1.{verb}\"")),
                "{verb}"
            );
        }
    }

    #[test]
    fn files_are_written_atomically_and_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/x/unit.service");
        assert!(write_file(&path, "a\n").unwrap());
        assert!(!write_file(&path, "a\n").unwrap());
        assert!(write_file(&path, "b\n").unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "b\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["unit.service"]);
    }
}
