//! Builds the eBPF object (`turbo-ebpf`, binary `turbo-ebpf`) into `$OUT_DIR/turbo-ebpf` with aya-build,
//! for `src/events/ebpf.rs` to embed with `include_bytes_aligned!`.
//!
//! Switches:
//! * `TURBO_BUILD_EBPF=0` (or `AYA_BUILD_SKIP=1`): don't build it.
//! * `TURBO_BUILD_EBPF=1`: build it or fail (CI, release builds).
//! * unset / anything else: build it when the BPF toolchain is present (nightly with `rust-src`,
//!   a working `bpf-linker` on `PATH` or in `~/.cargo/bin`), otherwise skip.
//!
//! When skipped, an **empty** object is written so the daemon still compiles; it then runs on
//! the procfs event source and says why (the reason is passed as `TURBO_EBPF_BUILD_NOTE`).
//! If the toolchain is present but the eBPF crate fails to compile, the build fails: that is a
//! bug in `turbo-ebpf`, not a missing tool (set `TURBO_BUILD_EBPF=0` to get past it).

use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

const EBPF_PACKAGE: &str = "turbo-ebpf";
/// The `[[bin]]` name of `turbo-ebpf`: the file aya-build copies into `OUT_DIR`.
const OBJECT: &str = "turbo-ebpf";
const NIGHTLY: &str = "nightly";

enum Mode {
    Off,
    Auto,
    Require,
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TURBO_BUILD_EBPF");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join(OBJECT);

    let mode = match env::var("TURBO_BUILD_EBPF").as_deref() {
        Ok("0" | "false" | "off" | "no") => Mode::Off,
        Ok("1" | "true" | "on" | "yes" | "require") => Mode::Require,
        _ if is_truthy(env::var("AYA_BUILD_SKIP").ok().as_deref()) => Mode::Off,
        _ => Mode::Auto,
    };

    let skip_reason = match mode {
        Mode::Off => Some("disabled at build time (TURBO_BUILD_EBPF=0 or AYA_BUILD_SKIP=1)".into()),
        Mode::Auto | Mode::Require => match check_toolchain() {
            Ok(()) => None,
            Err(reason) if matches!(mode, Mode::Require) => {
                bail!("TURBO_BUILD_EBPF=1 but the eBPF object cannot be built: {reason}")
            }
            Err(reason) => Some(reason),
        },
    };

    let note = match skip_reason {
        Some(reason) => {
            fs::write(&object, b"")
                .with_context(|| format!("writing placeholder {}", object.display()))?;
            println!(
                "cargo:warning=eBPF disabled: {reason}; the daemon will use the procfs event \
                 source (see `cargo xtask setup`)"
            );
            reason
        }
        None => {
            build_object(&object)?;
            String::new()
        }
    };
    // One line, read by events::ebpf to explain an empty object at run time.
    println!(
        "cargo:rustc-env=TURBO_EBPF_BUILD_NOTE={}",
        note.replace('\n', " ")
    );
    Ok(())
}

fn is_truthy(v: Option<&str>) -> bool {
    matches!(v, Some(v) if v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Runs aya-build for `turbo-ebpf`; it copies the object to `OUT_DIR/turbo`.
fn build_object(object: &Path) -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest")?);
    let root = manifest_dir
        .parent()
        .context("turbo-daemon has no parent directory")?
        .join(EBPF_PACKAGE);
    let root = root.to_str().context("non-UTF-8 path to turbo-ebpf")?;

    share_inner_target_dir(object);

    // aya-build relays every line the inner cargo prints on stderr as a `cargo:warning`; a quiet
    // inner cargo only prints real diagnostics. Compiler warnings still come through its JSON.
    // SAFETY: build scripts are single-threaded here; nothing else reads the environment.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };

    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(NIGHTLY),
    )
    .context(
        "building the eBPF object failed (the BPF toolchain is present, so this is likely a bug \
         in turbo-ebpf; TURBO_BUILD_EBPF=0 builds the daemon without eBPF)",
    )?;

    let len = fs::metadata(object)
        .with_context(|| format!("aya-build produced no {}", object.display()))?
        .len();
    if len == 0 {
        bail!("aya-build produced an empty {}", object.display());
    }
    Ok(())
}

/// aya-build compiles into `OUT_DIR/aya-build/target/turbo-ebpf`, and every outer build
/// configuration (check, clippy, test, release) has its own `OUT_DIR`: each would compile
/// `core` for BPF again (~15 s on 2 cores, ~180 MB). The inner build is the same `--release`
/// build whatever the outer profile, so point that directory at one shared under the outer
/// target directory. Best effort: with an unexpected layout aya-build's default is kept.
fn share_inner_target_dir(object: &Path) {
    // OUT_DIR = <target>[/<triple>]/<profile>/build/<package>-<hash>/out
    let Some(out_dir) = object.parent() else {
        return;
    };
    let Some(build_dir) = out_dir.ancestors().nth(2) else {
        return;
    };
    if build_dir.file_name().is_none_or(|n| n != "build") {
        return;
    }
    let Some(shared) = build_dir.parent().and_then(Path::parent) else {
        return;
    };
    let shared = shared.join("turbo-ebpf");
    let link = out_dir.join("aya-build").join("target").join(EBPF_PACKAGE);
    if link.symlink_metadata().is_ok() {
        return; // already linked, or a private directory from an earlier build: keep it
    }
    let linked = fs::create_dir_all(&shared)
        .and_then(|()| fs::create_dir_all(link.parent().unwrap_or(out_dir)))
        .and_then(|()| symlink_dir(&shared, &link));
    if let Err(e) = linked {
        println!("cargo:warning=not sharing the eBPF build directory ({e}); building privately");
    }
}

#[cfg(unix)]
fn symlink_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink_dir(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("symlinks need a unix host"))
}

/// Checks for everything aya-build needs; on failure returns a one-line reason.
///
/// Side effect: puts the directory holding `bpf-linker` on `PATH` for aya-build's inner cargo.
fn check_toolchain() -> Result<(), String> {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        return Err(format!("eBPF needs a Linux target, not {target_os:?}"));
    }

    let linker = find_bpf_linker()?;
    match Command::new(&linker)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => {
            return Err(format!(
                "{} does not run ({status}; rebuild it with `cargo xtask setup`)",
                linker.display()
            ));
        }
        Err(e) => return Err(format!("cannot run {}: {e}", linker.display())),
    }

    let sysroot = nightly_sysroot()?;
    let core = sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if !core.is_file() {
        return Err(format!(
            "the {NIGHTLY} toolchain has no rust-src (run `rustup component add rust-src \
             --toolchain {NIGHTLY}`)"
        ));
    }
    Ok(())
}

/// `bpf-linker` on `PATH`, else in `$CARGO_HOME/bin` / `~/.cargo/bin` (then added to `PATH`).
fn find_bpf_linker() -> Result<PathBuf, String> {
    let path = env::var_os("PATH").unwrap_or_default();
    if let Some(found) = env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|p| p.is_file())
    {
        println!("cargo:rerun-if-changed={}", found.display());
        return Ok(found);
    }
    let cargo_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    if let Some(bin) = cargo_bin {
        let candidate = bin.join("bpf-linker");
        if candidate.is_file() {
            let mut dirs = vec![bin];
            dirs.extend(env::split_paths(&path));
            let joined: OsString = env::join_paths(dirs).map_err(|e| e.to_string())?;
            // SAFETY: build scripts are single-threaded here; nothing else reads the environment.
            unsafe { env::set_var("PATH", joined) };
            println!("cargo:rerun-if-changed={}", candidate.display());
            return Ok(candidate);
        }
        // Re-run when something gets installed there (e.g. by `cargo xtask setup`).
        if bin.is_dir() {
            println!("cargo:rerun-if-changed={}", bin.display());
        }
    }
    Err("bpf-linker was missing at build time (not on PATH nor in ~/.cargo/bin)".into())
}

/// The nightly toolchain's sysroot, through rustup like aya-build does (or the current `rustc`
/// when there is no rustup, which then has to be a nightly).
fn nightly_sysroot() -> Result<PathBuf, String> {
    let rustup_present = env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("rustup").is_file());
    let mut cmd = if rustup_present {
        let mut cmd = Command::new("rustup");
        cmd.args(["run", NIGHTLY, "rustc"]);
        cmd
    } else {
        Command::new("rustc")
    };
    let out = cmd
        .args(["--print", "sysroot"])
        .env_remove("RUSTC")
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run rustc for the {NIGHTLY} toolchain: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "no {NIGHTLY} Rust toolchain (needed to build eBPF)"
        ));
    }
    if !rustup_present {
        let version = Command::new("rustc")
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if !version.contains("nightly") && env::var_os("RUSTC_BOOTSTRAP").is_none() {
            return Err(format!(
                "no rustup and `rustc` is not a nightly ({})",
                version.trim()
            ));
        }
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(PathBuf::from(sysroot))
}
