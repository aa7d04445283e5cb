//! `cargo xtask dist`: the artefacts a user installs, built from this tree.
//!
//! * `target/dist/turboprocess_<version>_<arch>.deb`: the release binaries (stripped, the eBPF
//!   object embedded) in `/usr/bin`, the systemd unit, the D-Bus and polkit policies, the D-Bus
//!   interface XML, man pages, bash/zsh/fish completions, sysusers.d (the `turbo` group) and
//!   tmpfiles.d (`/var/lib/turbo`, `/var/log/turbo`) entries, an example `/etc/turbo/turbo.yml`
//!   (a conffile) and the maintainer scripts of `deploy/debian/`. Checked with lintian.
//! * `target/dist/turboprocess-<version>-<arch>-linux-musl.tar.gz`: the same binaries linked
//!   statically against musl, with man pages and completions, laid out like `/usr/local`.
//!
//! The package is assembled here and built with `dpkg-deb` (docs/install.md says why not
//! cargo-deb). The man pages and completions come from the packaged `turbo` itself, through
//! [`install::install_into`]. `--bin-dir` packages binaries that are already built and makes
//! only the .deb: the install test packages the debug build that way.
//!
//! Nothing here installs anything on the machine beyond what `setup` does, or writes outside
//! the output directory and cargo's target directory.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    install::{self, Layout},
    setup,
    util::{Ctx, human, output, run},
};

/// The Debian package's name (and the tarball's). Not `turbo`: that name is too generic to
/// claim in a distribution, and the project is TurboProcess.
pub const PACKAGE: &str = "turboprocess";

/// What `cargo xtask dist` was asked for.
pub struct Options {
    /// Package these binaries instead of building release ones; makes only the .deb.
    pub bin_dir: Option<PathBuf>,
    /// The package version instead of the one `turbo --version` reports.
    pub version: Option<String>,
    /// Where the artefacts go instead of `target/dist`.
    pub out_dir: Option<PathBuf>,
    /// Run lintian on the .deb (and fail on its errors and warnings).
    pub lintian: bool,
    /// Compress the .deb with `gzip -1` instead of `xz -6`: seconds instead of half a minute
    /// for debug binaries (the install test).
    pub fast: bool,
}

/// `cargo xtask dist`.
pub fn dist(ctx: &Ctx, opts: &Options) -> Result<()> {
    let started = Instant::now();
    let out = match &opts.out_dir {
        Some(dir) => crate::absolute_from_cwd(dir)?,
        None => crate::target_dir(ctx).join("dist"),
    };
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut made = Vec::new();
    if let Some(dir) = &opts.bin_dir {
        let from = crate::absolute_from_cwd(dir)?;
        let deb = build_deb(ctx, &from, opts, &out)?;
        if opts.lintian {
            lintian(ctx, &deb)?;
        }
        made.push(deb);
    } else {
        setup::setup(ctx)?;
        let musl = musl_target(ctx)?;
        setup::ensure_rust_target(ctx, &musl)?;
        let release = crate::build_release(ctx, None)?;
        let deb = build_deb(ctx, &release, opts, &out)?;
        if opts.lintian {
            lintian(ctx, &deb)?;
        }
        made.push(deb);
        let static_release = crate::build_release(ctx, Some(&musl))?;
        made.push(build_tarball(
            ctx,
            &static_release,
            opts.version.as_deref(),
            &musl,
            &out,
        )?);
    }
    println!("\ndist: done in {}", human(started.elapsed()));
    for path in &made {
        let size = fs::metadata(path).map_or(0, |m| m.len());
        println!("  {} ({})", path.display(), mib(size));
    }
    Ok(())
}

/// `x86_64-unknown-linux-musl` on an x86-64 host: the host's CPU, musl instead of glibc.
fn musl_target(ctx: &Ctx) -> Result<String> {
    let vv = output(ctx.cmd("rustc").arg("-vV"))?;
    let host = vv
        .lines()
        .find_map(|l| l.strip_prefix("host:"))
        .map(str::trim)
        .context("`rustc -vV` printed no host line")?;
    let arch = host.split('-').next().unwrap_or(host);
    Ok(format!("{arch}-unknown-linux-musl"))
}

/// Files of the package that come from `deploy/`: (source, destination, mode).
const DEPLOYED: [(&str, &str, u32); 8] = [
    (
        "deploy/org.turboprocess.Turbo1.conf",
        "usr/share/dbus-1/system.d/org.turboprocess.Turbo1.conf",
        0o644,
    ),
    (
        "deploy/org.turboprocess.turbo1.policy",
        "usr/share/polkit-1/actions/org.turboprocess.turbo1.policy",
        0o644,
    ),
    (
        "deploy/org.turboprocess.Turbo1.xml",
        "usr/share/dbus-1/interfaces/org.turboprocess.Turbo1.xml",
        0o644,
    ),
    (
        "deploy/turbo.sysusers",
        "usr/lib/sysusers.d/turboprocess.conf",
        0o644,
    ),
    (
        "deploy/turbo.tmpfiles",
        "usr/lib/tmpfiles.d/turboprocess.conf",
        0o644,
    ),
    ("deploy/turbo.yml", "etc/turbo/turbo.yml", 0o644),
    (
        "deploy/debian/copyright",
        "usr/share/doc/turboprocess/copyright",
        0o644,
    ),
    (
        "deploy/debian/lintian-overrides",
        "usr/share/lintian/overrides/turboprocess",
        0o644,
    ),
];

/// Where the package puts the unit: systemd's directory for distribution units.
const UNIT_DEST: &str = "usr/lib/systemd/system/turbo-daemon.service";
/// The conffiles: dpkg keeps local edits of these across upgrades and removes them on purge.
const CONFFILES: [&str; 1] = ["/etc/turbo/turbo.yml"];
/// The maintainer scripts, from `deploy/debian/`.
const SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];

/// Assembles the package from the binaries in `from` and builds it into `out`; returns its
/// path.
fn build_deb(ctx: &Ctx, from: &Path, opts: &Options, out: &Path) -> Result<PathBuf> {
    let started = Instant::now();
    check_binaries(from)?;
    let version = package_version(ctx, from, opts.version.as_deref())?;
    let arch = output(ctx.cmd("dpkg").arg("--print-architecture"))
        .context("dpkg is needed to build the .deb (apt package dpkg)")?
        .trim()
        .to_owned();
    let name = format!("{PACKAGE}_{version}_{arch}");
    let stage = fresh_dir(&out.join(".staging").join(&name))?;

    let usr = stage.join("usr");
    install::install_into(ctx, &usr, from, Layout::Debian)?;
    strip(ctx, &usr.join("bin"))?;
    gzip_man_pages(ctx, &usr.join("share/man/man1"))?;
    let unit = read(&ctx.root.join("deploy/turbo-daemon.service"))?;
    install::place(
        &stage.join(UNIT_DEST),
        packaged_unit(&unit)?.as_bytes(),
        0o644,
    )?;
    for (source, dest, mode) in DEPLOYED {
        let bytes = fs::read(ctx.root.join(source))
            .with_context(|| format!("reading {source} (it is part of the package)"))?;
        install::place(&stage.join(dest), &bytes, mode)?;
    }
    let epoch = source_date_epoch(ctx)?;
    let changelog = stage.join(format!("usr/share/doc/{PACKAGE}/changelog"));
    install::place(
        &changelog,
        debian_changelog(ctx, &version, epoch)?.as_bytes(),
        0o644,
    )?;
    run(ctx.cmd("gzip").args(["-9nf"]).arg(&changelog))?;

    let control_dir = stage.join("DEBIAN");
    for script in SCRIPTS {
        let bytes = fs::read(ctx.root.join("deploy/debian").join(script))
            .with_context(|| format!("reading deploy/debian/{script}"))?;
        install::place(&control_dir.join(script), &bytes, 0o755)?;
    }
    install::place(
        &control_dir.join("conffiles"),
        format!("{}\n", CONFFILES.join("\n")).as_bytes(),
        0o644,
    )?;
    install::place(
        &control_dir.join("md5sums"),
        md5sums(ctx, &stage)?.as_bytes(),
        0o644,
    )?;
    let template = read(&ctx.root.join("deploy/debian/control"))?;
    let control = render_control(
        &template,
        &[
            ("VERSION", version.as_str()),
            ("ARCH", arch.as_str()),
            ("INSTALLED_SIZE", &installed_size_kib(&stage)?.to_string()),
            ("SHLIBS_DEPENDS", &shlibs_depends(ctx, &stage, &usr)?),
        ],
    )?;
    install::place(&control_dir.join("control"), control.as_bytes(), 0o644)?;
    normalise(&stage, epoch)?;

    let deb = out.join(format!("{name}.deb"));
    run(ctx
        .cmd("dpkg-deb")
        .arg("--root-owner-group")
        .args(if opts.fast {
            ["-Zgzip", "-z1"]
        } else {
            ["-Zxz", "-z6"]
        })
        .arg("--build")
        .arg(&stage)
        .arg(&deb)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()))
    .context("dpkg-deb could not build the package")?;
    let _ = fs::remove_dir_all(&stage);
    println!("built {} in {}", deb.display(), human(started.elapsed()));
    Ok(deb)
}

/// The static tarball: `<name>/bin`, `<name>/share` (man pages, completions, doc), to be
/// unpacked into `/usr/local`.
fn build_tarball(
    ctx: &Ctx,
    from: &Path,
    version: Option<&str>,
    target: &str,
    out: &Path,
) -> Result<PathBuf> {
    check_binaries(from)?;
    for bin in ["turbo", "turbo-daemon"] {
        let path = from.join(bin);
        if let Some(interp) = elf_interpreter(&fs::read(&path)?)? {
            bail!(
                "{} is not statically linked (it asks for the loader {interp})",
                path.display()
            );
        }
    }
    let version = package_version(ctx, from, version)?;
    let arch = target.split('-').next().unwrap_or(target);
    let name = format!("{PACKAGE}-{version}-{arch}-linux-musl");
    let staging = out.join(".staging");
    let stage = fresh_dir(&staging.join(&name))?;
    install::install_into(ctx, &stage, from, Layout::Local)?;
    strip(ctx, &stage.join("bin"))?;
    let doc = stage.join(format!("share/doc/{PACKAGE}"));
    for (source, dest) in [
        ("deploy/debian/copyright", "copyright"),
        ("deploy/turbo.yml", "turbo.yml.example"),
        ("deploy/turbo.sysusers", "turbo.sysusers"),
        ("deploy/turbo.tmpfiles", "turbo.tmpfiles"),
    ] {
        let bytes = fs::read(ctx.root.join(source))
            .with_context(|| format!("reading {source} (it is part of the tarball)"))?;
        install::place(&doc.join(dest), &bytes, 0o644)?;
    }
    install::place(
        &doc.join("INSTALL"),
        tarball_install_note(&name).as_bytes(),
        0o644,
    )?;
    let epoch = source_date_epoch(ctx)?;
    normalise(&stage, epoch)?;
    let tarball = out.join(format!("{name}.tar.gz"));
    run(ctx
        .cmd("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--use-compress-program=gzip -9n",
        ])
        .arg(format!("--mtime=@{epoch}"))
        .arg("-C")
        .arg(&staging)
        .arg("-cf")
        .arg(&tarball)
        .arg(&name))
    .context("tar could not write the tarball")?;
    let _ = fs::remove_dir_all(&stage);
    Ok(tarball)
}

fn tarball_install_note(name: &str) -> String {
    format!(
        "TurboProcess, statically linked (musl): runs on any x86-64 Linux >= 5.8 without \
         other libraries.\n\
         \n\
         Install into /usr/local:\n\
         \n    sudo tar -xzf {name}.tar.gz -C /usr/local --strip-components=1\n\
         \n\
         Then, for system mode under systemd (the unit, the D-Bus and polkit policies):\n\
         \n    sudo groupadd --system turbo      # its members may manage apps\n\
         \x20   sudo turbo startup\n\
         \n\
         or use it in user mode right away: `turbo start app.py` starts a daemon in ~/.turbo\n\
         (it needs `dbus-daemon` on PATH). On Debian and Ubuntu prefer the .deb: it also\n\
         upgrades in place and removes cleanly. See docs/install.md of TurboProcess.\n"
    )
}

/// The package version: `requested`, or the version the packaged `turbo` reports.
fn package_version(ctx: &Ctx, from: &Path, requested: Option<&str>) -> Result<String> {
    let version = match requested {
        Some(v) => v.to_owned(),
        None => {
            let said = output(ctx.cmd(from.join("turbo")).arg("--version"))?;
            said.trim()
                .strip_prefix("turbo ")
                .with_context(|| format!("`turbo --version` said {said:?}"))?
                .to_owned()
        }
    };
    check_version(&version)?;
    Ok(version)
}

/// A Debian version of a native package: starts with a digit, then letters, digits and
/// `.+~` (no `-`: that separates a Debian revision, which a native package has not).
fn check_version(version: &str) -> Result<()> {
    let ok = version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c));
    if !ok {
        bail!(
            "version {version:?} is not a Debian version for this package: start with a digit, \
             then use only letters, digits and . + ~ (e.g. 0.2.0 or 0.2.0~rc1)"
        );
    }
    Ok(())
}

/// Both binaries are in `from`, and the daemon carries the eBPF object (a daemon built without
/// the BPF toolchain embeds an empty one and would run on the procfs fallback).
fn check_binaries(from: &Path) -> Result<()> {
    for bin in ["turbo", "turbo-daemon"] {
        if !from.join(bin).is_file() {
            bail!(
                "{} is missing: build it first or name the directory that holds both binaries \
                 with --bin-dir",
                from.join(bin).display()
            );
        }
    }
    let daemon = from.join("turbo-daemon");
    let bytes = fs::read(&daemon).with_context(|| format!("reading {}", daemon.display()))?;
    if !embeds_bpf_object(&bytes) {
        bail!(
            "{} has no eBPF object embedded (it was built without the BPF toolchain); \
             run `cargo xtask setup` and build again with TURBO_BUILD_EBPF=1",
            daemon.display()
        );
    }
    Ok(())
}

/// Whether `binary` contains an ELF object for the BPF machine (`EM_BPF`, 247) after its own
/// header: the object `include_bytes_aligned!` embeds.
fn embeds_bpf_object(binary: &[u8]) -> bool {
    const EM_BPF: u16 = 247;
    let mut at = 1;
    while let Some(i) = binary
        .get(at..)
        .and_then(|rest| rest.windows(4).position(|w| w == b"\x7fELF"))
    {
        let start = at + i;
        if let Some(m) = binary.get(start + 18..start + 20)
            && u16::from_le_bytes([m[0], m[1]]) == EM_BPF
        {
            return true;
        }
        at = start + 1;
    }
    false
}

/// The dynamic loader a 64-bit little-endian ELF executable asks for (`PT_INTERP`), or `None`
/// for a static one.
fn elf_interpreter(elf: &[u8]) -> Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        bail!("not a 64-bit little-endian ELF file");
    }
    let table = u64_at(0x20).and_then(|o| usize::try_from(o).ok());
    let (Some(table), Some(size), Some(count)) = (table, u16_at(0x36), u16_at(0x38)) else {
        bail!("truncated ELF header");
    };
    for i in 0..usize::from(count) {
        let entry = table + i * usize::from(size);
        if u32_at(entry) != Some(PT_INTERP) {
            continue;
        }
        let field = |o| u64_at(entry + o).and_then(|v| usize::try_from(v).ok());
        let (Some(offset), Some(len)) = (field(8), field(32)) else {
            bail!("truncated program header");
        };
        let path = elf.get(offset..offset + len).unwrap_or_default();
        let path = path.strip_suffix(b"\0").unwrap_or(path);
        return Ok(Some(String::from_utf8_lossy(path).into_owned()));
    }
    Ok(None)
}

/// The shipped unit with `ExecStart=` at the packaged daemon, `Documentation=` at the packaged
/// man page (not in `deploy/`: `systemd-analyze verify` checks that the page is installed), and
/// a first line saying where it came from.
fn packaged_unit(unit: &str) -> Result<String> {
    const SHIPPED: &str = "ExecStart=/usr/local/bin/turbo-daemon --system";
    let once = |prefix: &str| unit.lines().filter(|l| l.starts_with(prefix)).count() == 1;
    if unit.lines().filter(|l| *l == SHIPPED).count() != 1 || !once("ExecStart=") {
        bail!("deploy/turbo-daemon.service must have exactly one `{SHIPPED}` line");
    }
    if !once("Description=") || !once("[Unit]") || unit.contains("\nDocumentation=") {
        bail!("deploy/turbo-daemon.service must have one Description= and no Documentation=");
    }
    let mut out = format!(
        "# Installed by the {PACKAGE} package and replaced on upgrade: put local changes in a \
         drop-in\n# (`systemctl edit turbo-daemon`). Do not also run `turbo startup`: it would \
         shadow this file.\n"
    );
    for line in unit.lines() {
        if line == SHIPPED {
            out.push_str("ExecStart=/usr/bin/turbo-daemon --system\n");
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.starts_with("Description=") {
            out.push_str("Documentation=man:turbo(1)\n");
        }
    }
    Ok(out)
}

/// `template` with every `@KEY@` replaced.
///
/// # Errors
/// A placeholder that has no value, or a value that is not used.
fn render_control(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut text = template.to_owned();
    for (key, value) in values {
        let placeholder = format!("@{key}@");
        if !text.contains(&placeholder) {
            bail!("deploy/debian/control has no {placeholder}");
        }
        text = text.replace(&placeholder, value);
    }
    if let Some(start) = text.find('@')
        && let Some(len) = text[start + 1..].find('@')
    {
        bail!(
            "deploy/debian/control: nothing fills {}",
            &text[start..start + len + 2]
        );
    }
    Ok(text)
}

/// `Depends:` for the shared libraries the binaries link, from `dpkg-shlibdeps` (e.g.
/// `libc6 (>= 2.34), libgcc-s1 (>= 4.2)`).
fn shlibs_depends(ctx: &Ctx, stage: &Path, usr: &Path) -> Result<String> {
    // dpkg-shlibdeps reads debian/control of a source tree: give it a minimal one
    let scratch = fresh_dir(&stage.with_extension("shlibdeps"))?;
    install::place(
        &scratch.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n").as_bytes(),
        0o644,
    )?;
    let mut cmd = ctx.cmd("dpkg-shlibdeps");
    cmd.arg("-O").current_dir(&scratch);
    for bin in ["turbo", "turbo-daemon"] {
        cmd.arg(format!("-e{}", usr.join("bin").join(bin).display()));
    }
    let said = output(&mut cmd).context("dpkg-shlibdeps (apt package dpkg-dev) failed")?;
    let _ = fs::remove_dir_all(&scratch);
    said.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {said}"))
}

/// `md5sum` lines of every file outside `DEBIAN/` except the conffiles (dpkg records theirs
/// itself), paths relative to the root as dpkg expects.
fn md5sums(ctx: &Ctx, stage: &Path) -> Result<String> {
    let mut files = Vec::new();
    walk(stage, &mut |path, meta| {
        let rel = path.strip_prefix(stage).unwrap_or(path);
        let conffile = CONFFILES
            .iter()
            .any(|c| Path::new(c).strip_prefix("/").ok() == Some(rel));
        if meta.is_file() && !rel.starts_with("DEBIAN") && !conffile {
            files.push(rel.to_path_buf());
        }
        Ok(())
    })?;
    files.sort();
    let mut cmd = ctx.cmd("md5sum");
    cmd.current_dir(stage).arg("--").args(&files);
    output(&mut cmd)
}

/// dpkg's `Installed-Size`: KiB of the files outside `DEBIAN/`, each rounded up, plus one per
/// directory.
fn installed_size_kib(stage: &Path) -> Result<u64> {
    let mut kib = 0;
    walk(stage, &mut |path, meta| {
        if !path
            .strip_prefix(stage)
            .unwrap_or(path)
            .starts_with("DEBIAN")
        {
            kib += if meta.is_file() {
                meta.len().div_ceil(1024)
            } else {
                1
            };
        }
        Ok(())
    })?;
    Ok(kib)
}

/// Directories 0755 and every modification time at `epoch`, so that two builds of one commit
/// give the same package.
fn normalise(stage: &Path, epoch: u64) -> Result<()> {
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    walk(stage, &mut |path, meta| {
        if meta.is_dir() {
            fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
        fs::File::open(path)
            .and_then(|f| f.set_modified(when))
            .with_context(|| format!("setting the time of {}", path.display()))
    })
}

/// Calls `f` for `dir` and everything below it (symbolic links are not followed).
fn walk(dir: &Path, f: &mut impl FnMut(&Path, &fs::Metadata) -> Result<()>) -> Result<()> {
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    f(dir, &meta)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            walk(&entry, f)?;
        }
    }
    Ok(())
}

/// Strips the binaries in `bin` as `dh_strip` does: symbols and debug information, and the
/// `.comment` and `.note` sections (the build id in `.note.gnu.build-id` stays).
fn strip(ctx: &Ctx, bin: &Path) -> Result<()> {
    for name in ["turbo", "turbo-daemon"] {
        run(ctx
            .cmd("strip")
            .args(["--remove-section=.comment", "--remove-section=.note"])
            .arg(bin.join(name)))
        .context("strip (apt package binutils) failed")?;
    }
    Ok(())
}

/// Debian ships man pages compressed.
fn gzip_man_pages(ctx: &Ctx, dir: &Path) -> Result<()> {
    let mut pages: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.retain(|p| p.extension().is_some_and(|e| e == "1"));
    if pages.is_empty() {
        bail!("no man pages in {}", dir.display());
    }
    pages.sort();
    run(ctx.cmd("gzip").arg("-9n").args(&pages))
}

/// The time of the commit being packaged (`SOURCE_DATE_EPOCH` when set, as reproducible-builds
/// tools do), or now outside a git checkout.
fn source_date_epoch(ctx: &Ctx) -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"));
    }
    let commit = output(ctx.cmd("git").args(["log", "-1", "--format=%ct"]))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Ok(commit.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }))
}

/// The changelog of a native package: one entry for this version.
fn debian_changelog(ctx: &Ctx, version: &str, epoch: u64) -> Result<String> {
    let date = output(
        ctx.cmd("date")
            .args(["-u", "-R", "-d"])
            .arg(format!("@{epoch}")),
    )?;
    let commit = output(ctx.cmd("git").args(["rev-parse", "--short=12", "HEAD"]))
        .map(|c| format!(", built from commit {}", c.trim()))
        .unwrap_or_default();
    Ok(format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\n  * TurboProcess {version}{commit}.\n\n \
         -- TurboProcess maintainers <maintainers@turboprocess.invalid>  {}\n",
        date.trim()
    ))
}

/// Runs lintian on `deb`; fails on an error or a warning. Info and pedantic tags are shown, not
/// fatal: `spelling-error-in-binary` matches random bytes of compiled code, differently in every
/// build. The overrides, each with its reason, are in deploy/debian/lintian-overrides.
fn lintian(ctx: &Ctx, deb: &Path) -> Result<()> {
    let started = Instant::now();
    // not --show-overrides: lintian then counts overridden tags towards --fail-on
    let out = ctx
        .cmd("lintian")
        .args(["--fail-on", "error,warning", "--display-info", "--pedantic"])
        .arg(deb)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run lintian (apt package lintian; `cargo xtask setup` installs it)")?;
    let said = String::from_utf8_lossy(&out.stdout);
    let count = |tag: &str| said.lines().filter(|l| l.starts_with(tag)).count();
    for line in said.lines() {
        println!("  {line}");
    }
    let overrides = read(&ctx.root.join("deploy/debian/lintian-overrides"))?
        .lines()
        .filter(|l| l.starts_with(PACKAGE))
        .count();
    println!(
        "lintian: {} errors, {} warnings, {} info, {} pedantic; {overrides} overrides with their \
         reasons in deploy/debian/lintian-overrides ({})",
        count("E: "),
        count("W: "),
        count("I: "),
        count("P: "),
        human(started.elapsed())
    );
    if !out.status.success() {
        bail!(
            "lintian rejects {} ({}): {}",
            deb.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `dir`, emptied (created when missing).
fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

#[expect(clippy::cast_precision_loss, reason = "a size for people to read")]
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_unit_starts_usr_bin_turbo_daemon() {
        let shipped = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/turbo-daemon.service"),
        )
        .unwrap();
        let unit = packaged_unit(&shipped).unwrap();
        let exec: Vec<&str> = unit
            .lines()
            .filter(|l| l.starts_with("ExecStart=") || l.starts_with("Documentation="))
            .collect();
        assert_eq!(
            exec,
            [
                "Documentation=man:turbo(1)",
                "ExecStart=/usr/bin/turbo-daemon --system"
            ]
        );
        // everything else is the shipped unit, line for line
        let rest = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("ExecStart="))
                .filter(|l| !l.starts_with("Documentation="))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(rest(&unit), rest(&shipped));
        let twice = format!("{shipped}ExecStart=/usr/local/bin/turbo-daemon --system\n");
        assert!(packaged_unit(&twice).is_err());
    }

    #[test]
    fn versions_are_debian_native_versions() {
        for good in ["0.1.0", "0.1.0+rebuild1", "1.0~rc1"] {
            check_version(good).unwrap();
        }
        for bad in ["", "v0.1.0", "0.1.0-1", "0.1 0", "0.1.0_x"] {
            let err = check_version(bad).unwrap_err().to_string();
            assert!(err.contains("start with a digit"), "{bad}: {err}");
        }
    }

    #[test]
    fn control_placeholders_must_all_be_filled() {
        let t = "Version: @VERSION@\nArchitecture: @ARCH@\n";
        assert_eq!(
            render_control(t, &[("VERSION", "1"), ("ARCH", "amd64")]).unwrap(),
            "Version: 1\nArchitecture: amd64\n"
        );
        let err = render_control(t, &[("VERSION", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("@ARCH@"), "{err}");
        let err = render_control(t, &[("VERSION", "1"), ("ARCH", "a"), ("X", "y")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("@X@"), "{err}");
        // the real template has exactly the placeholders build_deb fills
        let real = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/debian/control"),
        )
        .unwrap();
        render_control(
            &real,
            &[
                ("VERSION", "1"),
                ("ARCH", "amd64"),
                ("INSTALLED_SIZE", "1"),
                ("SHLIBS_DEPENDS", "libc6"),
            ],
        )
        .unwrap();
    }

    #[test]
    fn an_embedded_bpf_object_is_found_and_only_that() {
        let mut host = b"\x7fELF\x02\x01\x01\0".to_vec();
        host.resize(64, 0);
        host[18] = 62; // EM_X86_64: the host binary's own header does not count
        assert!(!embeds_bpf_object(&host));
        let mut bpf = b"\x7fELF\x02\x01\x01\0".to_vec();
        bpf.resize(64, 0);
        bpf[18] = 247;
        let mut with = host.clone();
        with.extend_from_slice(b"some rodata");
        with.extend_from_slice(&bpf);
        assert!(embeds_bpf_object(&with));
        // a truncated header at the very end is not an object
        let mut cut = host;
        cut.extend_from_slice(b"\x7fELF\x02");
        assert!(!embeds_bpf_object(&cut));
    }

    #[test]
    fn the_running_test_binary_is_dynamic() {
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let interp = elf_interpreter(&me).unwrap();
        assert!(
            interp.as_deref().is_some_and(|i| i.contains("ld-")),
            "{interp:?}"
        );
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
    }
}
