//! The private message bus of user mode: a `dbus-daemon` listening on `$TURBO_HOME/bus.sock`.
//!
//! A real bus (rather than peer-to-peer D-Bus) is what lets `busctl --address=...`, `gdbus` and
//! any other stock client talk to the daemon. The bus process is the daemon's child and is told
//! by the kernel to exit when the daemon dies, so a stale bus never outlives it. The parent-death
//! signal fires when the *thread* that forked the bus exits, not on `execve`: the daemon forks it
//! from its main thread and re-executes from that same thread (`turbo daemon upgrade`), so the
//! bus survives an upgrade and the new daemon takes it over ([`PrivateBus::keep_across_exec`],
//! [`PrivateBus::adopt`]). This module only starts and stops that process; it knows nothing about
//! the API served on it.

use std::{
    io::{self, BufRead, BufReader},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::Path,
    process::{Child, Command, Stdio},
};

use crate::os::process;

/// A running private bus; stopping it is dropping it.
#[derive(Debug)]
pub struct PrivateBus {
    /// Started by this process image; `None` when taken over after an upgrade.
    child: Option<Child>,
    pid: u32,
    /// The address clients connect to (`unix:path=...,guid=...`).
    pub address: String,
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        } else {
            // still our child (exec keeps the pid), so ours to reap
            process::kill_and_reap(self.pid);
        }
    }
}

/// The environment variable that hands the bus to the re-executed daemon: `<pid> <address>`.
pub const REEXEC_ENV: &str = "TURBO_REEXEC_BUS";

impl PrivateBus {
    /// Leaves the bus running for the daemon this process is about to become, and returns the
    /// value of [`REEXEC_ENV`] that lets it take the bus over.
    #[must_use]
    pub fn keep_across_exec(self) -> String {
        let value = format!("{} {}", self.pid, self.address);
        // not killed on drop: the re-executed daemon owns it (forgetting leaks only the `Child`
        // handle, which the exec discards anyway)
        std::mem::forget(self);
        value
    }

    /// Whether the bus process still runs (a dead one is reaped here).
    #[must_use]
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => process::child_running(self.pid),
        }
    }

    /// Takes over the bus a previous image of this process left running ([`REEXEC_ENV`]), if it
    /// still answers on `socket`.
    #[must_use]
    pub fn adopt(value: &str, socket: &Path) -> Option<PrivateBus> {
        let (pid, address) = value.split_once(' ')?;
        let pid: u32 = pid.parse().ok()?;
        std::os::unix::net::UnixStream::connect(socket).ok()?;
        Some(PrivateBus {
            child: None,
            pid,
            address: address.to_owned(),
        })
    }
}

/// Starts `dbus-daemon` on `socket` (any stale socket file is removed first; the caller holds
/// the daemon lock, so nobody else is using it) and waits until it accepts connections.
///
/// # Errors
/// A one-line message naming what is missing or what failed.
pub fn start(home: &Path, socket: &Path) -> io::Result<PrivateBus> {
    let config_path = home.join("bus.conf");
    std::fs::write(&config_path, config(socket))?;
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // its complaints (e.g. about fd limits) go to a file of their own, not into the daemon's log
    let bus_log = std::fs::File::create(home.join("bus.log"))?;
    let mut cmd = Command::new("dbus-daemon");
    cmd.arg(format!("--config-file={}", config_path.display()))
        .args(["--nofork", "--nopidfile", "--print-address=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(bus_log);
    // the bus is not the service: it must not answer systemd's notify socket as if it were
    super::notify::strip_service_env(&mut cmd);
    // SAFETY: `die_with_parent` is one raw prctl system call: async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(process::die_with_parent);
    }
    let mut child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot start dbus-daemon ({e}): install the `dbus-daemon` package"),
        )
    })?;
    // waited for through `child`, not by the daemon's orphan reaper
    crate::os::process::claim(child.id());
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    // dbus-daemon prints its address once it listens; EOF means it failed (its stderr says why)
    BufReader::new(stdout).read_line(&mut line)?;
    let address = line.trim().to_owned();
    if address.is_empty() {
        let status = child.wait()?;
        return Err(io::Error::other(format!(
            "dbus-daemon exited ({status}) before listening on {}",
            socket.display()
        )));
    }
    // only the owner may connect in user mode; dbus-daemon also checks the peer's uid
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(PrivateBus {
        pid: child.id(),
        child: Some(child),
        address,
    })
}

fn config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- generated by turbo-daemon for its private bus; rewritten at every start -->
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        xml_escape(&socket.display().to_string())
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
