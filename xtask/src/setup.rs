//! `cargo xtask setup`: installs what this machine image lacks, idempotently.
//!
//! One line per check, `ok: …` or `installing: …`. Nothing is downloaded when everything is
//! present, so it is cheap enough to run before every `run` and `test`.

use std::path::{Path, PathBuf};
use std::time::Instant;
use std::{fs, process};

use anyhow::{Context as _, Result, bail};

use crate::util::{Ctx, human, output, run};

/// The toolchain aya-build compiles the eBPF crate with (`aya_build::Toolchain::default()`).
const NIGHTLY: &str = "nightly";
/// bpf-linker release that works with aya 0.14 and nightly 1.97 (research/ebpf-spike.md §2).
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Commands the tests and the daemon's user mode need, with the Debian 12 package providing each.
const APT: &[(&str, &str)] = &[
    ("dbus-daemon", "dbus-daemon"),
    ("busctl", "systemd"),
    ("tmux", "tmux"),
    ("python3", "python3"),
    // the completion scripts are syntax-checked by the shells they are for
    ("zsh", "zsh"),
    ("fish", "fish"),
    // the e2e tests validate the shipped D-Bus and polkit XML with it
    ("xmllint", "libxml2-utils"),
    // system-mode access tests run the CLI as another user
    ("setpriv", "util-linux"),
    // the unit file is checked with `systemd-analyze verify`
    ("systemd-analyze", "systemd"),
    // the metrics tests scrape the daemon with a real Prometheus and check the alert rules
    // (`promtool check rules`, `promtool test rules`) and the exposition (`promtool check metrics`)
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    // the fleet metrics tests: `amtool check-config` and route tests of the example
    // Alertmanager config, a throw-away CA and certificate, a TLS client for the exporter
    ("amtool", "prometheus-alertmanager"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    // `cargo xtask dist` builds, strips and checks the .deb with these, and the install test
    // installs it into a throw-away root (an overlay of / in a mount namespace, then chroot)
    ("dpkg-deb", "dpkg"),
    ("dpkg-shlibdeps", "dpkg-dev"),
    ("strip", "binutils"),
    ("lintian", "lintian"),
    ("nsenter", "util-linux"),
    ("mount", "mount"),
    // the fleet tests run one sshd per network namespace and reach each daemon over SSH
    // (`turbo -H`, `busctl -H`) through systemd-stdio-bridge
    ("sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    ("systemd-stdio-bridge", "systemd"),
    ("ip", "iproute2"),
    // the journald destination is read back by a real systemd-journald with journalctl
    ("journalctl", "systemd"),
];

pub fn setup(ctx: &Ctx) -> Result<()> {
    let started = Instant::now();
    let nightly = Nightly::probe(ctx)?;
    ensure_rust_src(ctx, &nightly)?;
    ensure_bpf_linker(ctx, &nightly)?;
    ensure_apt(ctx)?;
    let took = started.elapsed();
    if took.as_secs() >= 1 {
        println!("setup: done in {}", human(took));
    }
    Ok(())
}

/// Facts about the nightly toolchain that builds the eBPF object.
struct Nightly {
    release: String,
    llvm_major: String,
    sysroot: PathBuf,
}

impl Nightly {
    fn probe(ctx: &Ctx) -> Result<Self> {
        let vv =
            output(ctx.cmd("rustc").arg(format!("+{NIGHTLY}")).arg("-vV")).with_context(|| {
                format!(
                    "the {NIGHTLY} toolchain is not usable; the eBPF object needs it \
                     (install with `rustup toolchain install {NIGHTLY} --component rust-src`)"
                )
            })?;
        let field = |name: &str| {
            vv.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .with_context(|| format!("`rustc +{NIGHTLY} -vV` printed no `{name}` line"))
        };
        let release = field("release:")?;
        let llvm = field("LLVM version:")?;
        let llvm_major = llvm
            .split('.')
            .next()
            .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
            .with_context(|| format!("unexpected LLVM version `{llvm}`"))?
            .to_owned();
        let sysroot = output(
            ctx.cmd("rustc")
                .arg(format!("+{NIGHTLY}"))
                .args(["--print", "sysroot"]),
        )?;
        Ok(Self {
            release,
            llvm_major,
            sysroot: PathBuf::from(sysroot.trim()),
        })
    }

    fn lib_dir(&self) -> PathBuf {
        self.sysroot.join("lib")
    }

    /// The toolchain's own `libLLVM.so.<ver>-rust-<release>` (the name bpf-linker gets linked to).
    fn libllvm(&self) -> Result<String> {
        let dir = self.lib_dir();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("libLLVM.so."))
            .collect();
        names.sort();
        names.into_iter().next().with_context(|| {
            format!(
                "no libLLVM.so.* in {}: the {NIGHTLY} toolchain has no shared LLVM to link bpf-linker against",
                dir.display()
            )
        })
    }
}

fn has_rust_src(nightly: &Nightly) -> bool {
    nightly
        .sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
}

fn ensure_rust_src(ctx: &Ctx, nightly: &Nightly) -> Result<()> {
    if has_rust_src(nightly) {
        println!("ok: rust-src for {NIGHTLY} ({})", nightly.release);
        return Ok(());
    }
    println!("installing: rust-src for {NIGHTLY} ({})", nightly.release);
    run(ctx
        .cmd("rustup")
        .args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    if !has_rust_src(nightly) {
        bail!(
            "rust-src still missing under {} after `rustup component add`",
            nightly.sysroot.display()
        );
    }
    Ok(())
}

/// `Ok(libLLVM name or "")` when `bin` is bpf-linker 0.13.0 and all its libraries resolve,
/// `Err(why not)` otherwise.
fn check_bpf_linker(ctx: &Ctx, bin: &Path) -> Result<String, String> {
    let version = output(ctx.cmd(bin).arg("--version")).map_err(|e| format!("{e:#}"))?;
    let version = version.trim();
    if version != format!("bpf-linker {BPF_LINKER_VERSION}") {
        return Err(format!("it reports `{version}`"));
    }
    let ldd = output(ctx.cmd("ldd").arg(bin)).map_err(|e| format!("{e:#}"))?;
    if let Some(missing) = ldd.lines().find(|l| l.contains("not found")) {
        return Err(format!("a library does not resolve: {}", missing.trim()));
    }
    Ok(ldd
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|lib| lib.starts_with("libLLVM"))
        .unwrap_or_default()
        .to_owned())
}

fn ensure_bpf_linker(ctx: &Ctx, nightly: &Nightly) -> Result<()> {
    let installed = ctx.cargo_home.join("bin/bpf-linker");
    let found = ctx.which("bpf-linker");
    let why = match &found {
        None => "not installed".to_owned(),
        Some(bin) => match check_bpf_linker(ctx, bin) {
            Ok(llvm) => {
                println!(
                    "ok: bpf-linker {BPF_LINKER_VERSION} ({} -> {llvm})",
                    bin.display()
                );
                return Ok(());
            }
            Err(why) => format!("{}: {why}", bin.display()),
        },
    };
    let feature = format!("llvm-{}", nightly.llvm_major);
    let started = Instant::now();
    println!(
        "installing: bpf-linker {BPF_LINKER_VERSION} (feature {feature}, linked to {}; ~1 min) because {why}",
        nightly.lib_dir().display()
    );
    install_bpf_linker(ctx, nightly, &feature)?;
    // Whatever aya-build will find through PATH must be the working copy.
    let now = ctx.which("bpf-linker");
    if now.as_deref() != Some(installed.as_path()) {
        bail!(
            "bpf-linker was installed to {} but PATH finds {} first; remove that one",
            installed.display(),
            now.map_or_else(|| "nothing".into(), |p| p.display().to_string())
        );
    }
    match check_bpf_linker(ctx, &installed) {
        Ok(llvm) => {
            println!(
                "ok: bpf-linker {BPF_LINKER_VERSION} ({} -> {llvm}) installed in {}",
                installed.display(),
                human(started.elapsed())
            );
            Ok(())
        }
        Err(why) => bail!("the freshly installed bpf-linker does not work: {why}"),
    }
}

/// The recipe of research/ebpf-spike.md §3: link against the nightly's own libLLVM through a
/// throw-away prefix, with an rpath into the toolchain's lib directory so the prefix can go.
fn install_bpf_linker(ctx: &Ctx, nightly: &Nightly, feature: &str) -> Result<()> {
    let libllvm = nightly.libllvm()?;
    let prefix = TempDir::new("turbo-bpf-linker-llvm")?;
    let lib = prefix.0.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    std::os::unix::fs::symlink(nightly.lib_dir().join(&libllvm), lib.join("libLLVM.so"))
        .context("linking libLLVM.so into the temporary prefix")?;
    let rustflags = format!("-C link-arg=-Wl,-rpath,{}", nightly.lib_dir().display());
    let mut cmd = ctx.cargo();
    cmd.args(["install", "--root"])
        .arg(&ctx.cargo_home)
        .args(["--locked", "--force"])
        .arg(format!("bpf-linker@{BPF_LINKER_VERSION}"))
        .args(["--no-default-features", "--features", feature])
        // outside the workspace: its .cargo/config.toml has no business here
        .current_dir(&prefix.0)
        .env("LLVM_PREFIX", &prefix.0)
        .env("RUSTFLAGS", &rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    println!(
        "  LLVM_PREFIX={} RUSTFLAGS='{rustflags}'",
        prefix.0.display()
    );
    run(&mut cmd)
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("{name}-{}", process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn ensure_apt(ctx: &Ctx) -> Result<()> {
    let mut missing_cmds = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    for &(command, package) in APT {
        match ctx.which_system(command) {
            Some(path) => println!("ok: {command} ({})", path.display()),
            None => {
                missing_cmds.push(command);
                if !packages.contains(&package) {
                    packages.push(package);
                }
            }
        }
    }
    if packages.is_empty() {
        return Ok(());
    }
    let list = packages.join(" ");
    if !ctx.is_root() {
        bail!(
            "missing {}; install them as root with:\n    \
             sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}",
            missing_cmds.join(", ")
        );
    }
    println!("installing: {list} (apt, for {})", missing_cmds.join(", "));
    let apt = |args: &[&str]| {
        let mut cmd = ctx.cmd("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&packages);
    run(&mut install)?;
    let mut still = Vec::new();
    for command in missing_cmds {
        match ctx.which_system(command) {
            Some(path) => println!("ok: {command} ({})", path.display()),
            None => still.push(command),
        }
    }
    if !still.is_empty() {
        bail!(
            "apt-get installed {list} but {} is still missing",
            still.join(", ")
        );
    }
    Ok(())
}

/// cargo-fuzz release `cargo xtask fuzz` uses (installed from crates.io with `--locked`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// What `cargo xtask fuzz` needs on top of `setup`, installed only when fuzzing: cargo-fuzz,
/// and a C++ compiler (libfuzzer-sys compiles libFuzzer with it). The nightly toolchain the
/// sanitizer build needs is the one `setup` checks for the eBPF build.
pub fn ensure_fuzz_tools(ctx: &Ctx) -> Result<()> {
    let version = ctx
        .which("cargo-fuzz")
        .and_then(|bin| output(ctx.cmd(bin).arg("--version")).ok());
    match version {
        Some(v) if v.trim() == format!("cargo-fuzz {CARGO_FUZZ_VERSION}") => {
            println!("ok: {}", v.trim());
        }
        found => {
            println!(
                "installing: cargo-fuzz {CARGO_FUZZ_VERSION} (~1 min) because {}",
                found.map_or_else(
                    || "it is not installed".into(),
                    |v| format!("{} is", v.trim())
                )
            );
            let mut cmd = ctx.cmd("cargo");
            cmd.args(["install", "--locked", "--force"])
                .arg(format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"))
                // outside the workspace: its .cargo/config.toml has no business here
                .current_dir(std::env::temp_dir());
            run(&mut cmd)?;
        }
    }
    if ctx.which_system("c++").is_some() {
        println!("ok: c++ (for libFuzzer)");
        return Ok(());
    }
    if !ctx.is_root() {
        bail!(
            "missing c++ (libfuzzer-sys compiles libFuzzer with it): sudo apt-get install -y g++"
        );
    }
    println!("installing: g++ (apt, for libFuzzer)");
    let apt = |args: &[&str]| {
        let mut cmd = ctx.cmd("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(&mut apt(&["update", "-q"]))?;
    run(&mut apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "g++",
    ]))
}

/// Makes sure the default toolchain has the standard library for `triple` (the static musl
/// build of `cargo xtask dist`); installs it with rustup when missing.
pub fn ensure_rust_target(ctx: &Ctx, triple: &str) -> Result<()> {
    let sysroot = output(ctx.cmd("rustc").args(["--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(triple)
        .join("lib");
    if lib.is_dir() {
        println!("ok: Rust standard library for {triple}");
        return Ok(());
    }
    println!("installing: Rust standard library for {triple} (rustup target add)");
    run(ctx.cmd("rustup").args(["target", "add", triple])).with_context(|| {
        format!(
            "the static (musl) build needs the Rust standard library for {triple}, and rustup \
             could not install it; the .deb does not need it"
        )
    })?;
    if !lib.is_dir() {
        bail!(
            "rustup added {triple} but {} is still missing",
            lib.display()
        );
    }
    Ok(())
}
