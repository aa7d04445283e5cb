//! `turbo daemon upgrade`: the daemon re-executes its binary in place (same pid), so its
//! children stay its children; the new image adopts the apps from the state file and the
//! private bus from [`super::bus::REEXEC_ENV`].

use std::{
    io,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::PathBuf,
};

/// Replaces this process image with the daemon binary at its install path (the binary that was
/// started, or the one that replaced it on disk since), with the same arguments and environment.
/// Called on the main thread, which forked the private bus, so the bus's parent-death signal does
/// not fire. Returns only on failure.
pub fn reexec(bus_env: Option<&str>) -> io::Error {
    let exe = match install_path() {
        Ok(p) => p,
        Err(e) => return e,
    };
    tracing::info!("upgrading: re-executing {}", exe.display());
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1));
    if let Some(v) = bus_env {
        cmd.env(super::bus::REEXEC_ENV, v);
    }
    // the new image raises it again, and must know what the apps get
    let raised = crate::os::creds::inherited_nofile().is_some();
    let _ = crate::os::creds::restore_nofile();
    let e = cmd.exec();
    if raised {
        let _ = crate::os::creds::raise_nofile();
    }
    e
}

/// The daemon binary at its install path: the file this process was started from, or the one
/// that replaced it there since (a replaced file leaves the link as `<path> (deleted)`).
///
/// # Errors
/// When `/proc/self/exe` cannot be read, or nothing executable is at that path now (the
/// message names it).
pub fn install_path() -> io::Result<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let bytes = exe.as_os_str().as_bytes();
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(
        bytes.strip_suffix(b" (deleted)").unwrap_or(bytes),
    ));
    crate::os::process::check_executable(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("no executable turbo-daemon at {} ({e})", path.display()),
        )
    })?;
    Ok(path)
}
