//! `cargo xtask install [--prefix DIR] [--bin-dir DIR]`: puts TurboProcess on a machine.
//!
//! Installs, under the prefix (default `/usr/local`):
//!
//! * `bin/turbo`, `bin/turbo-daemon`: release builds (or the binaries of `--bin-dir`, which skips
//!   the build: packaging and tests install what is already built);
//! * `share/bash-completion/completions/turbo`, `share/zsh/site-functions/_turbo`,
//!   `share/fish/vendor_completions.d/turbo.fish`: the completion scripts, where each shell's
//!   packaging conventions put them, so they load without editing a shell's rc file (the Debian
//!   package, [`Layout::Debian`], puts zsh's in `share/zsh/vendor-completions`);
//! * `share/man/man1/turbo.1` and one `turbo-<command>.1` per command.
//!
//! The scripts and pages are produced by the installed `turbo` itself (`turbo completions`,
//! `turbo man --out-dir`), so they always match the binary next to them, and running it once is
//! a smoke test of the install. Files are written to a temporary name and renamed into place, so
//! a `turbo` that is running while it is replaced keeps working. This module must not touch
//! anything outside the prefix and must not start a daemon.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    setup,
    util::{Ctx, output},
};

/// The binaries installed into `bin/`.
const BINARIES: [&str; 2] = ["turbo", "turbo-daemon"];

/// Where the completion scripts go: the conventions differ between a local prefix and a
/// distribution package for zsh only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `/usr/local`, `~/.local`, `/opt/...`: zsh's `site-functions` (in zsh's default `fpath`
    /// under `/usr/local`).
    Local,
    /// `/usr` of a Debian package: Debian's zsh looks in `vendor-completions` and not in
    /// `/usr/share/zsh/site-functions`.
    Debian,
}

impl Layout {
    /// Each shell's completion script, relative to the prefix, and the `turbo completions`
    /// argument that writes it.
    const fn completions(self) -> [(&'static str, &'static str); 3] {
        let zsh = match self {
            Self::Local => "share/zsh/site-functions/_turbo",
            Self::Debian => "share/zsh/vendor-completions/_turbo",
        };
        [
            ("bash", "share/bash-completion/completions/turbo"),
            ("zsh", zsh),
            ("fish", "share/fish/vendor_completions.d/turbo.fish"),
        ]
    }
}

/// Where the man pages go, relative to the prefix.
const MAN_DIR: &str = "share/man/man1";

/// `cargo xtask install`.
pub fn install(ctx: &Ctx, prefix: &Path, bin_dir: Option<&Path>) -> Result<()> {
    let prefix = crate::absolute_from_cwd(prefix)?;
    let from = match bin_dir {
        Some(dir) => crate::absolute_from_cwd(dir)?,
        None => {
            setup::setup(ctx)?;
            crate::build_release(ctx, None)?
        }
    };
    let installed = install_into(ctx, &prefix, &from, Layout::Local)?;
    println!("\ninstalled into {}:", prefix.display());
    for path in &installed {
        println!("  {}", path.display());
    }
    let bin = prefix.join("bin");
    let on_path =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d == bin));
    if !on_path {
        println!(
            "note: {} is not on PATH; add it to use `turbo` by name",
            bin.display()
        );
    }
    println!(
        "next: `turbo start <script>` (the daemon starts on first use), `man turbo`, and a new \
         shell for completions"
    );
    Ok(())
}

/// Copies the binaries of `from` and generates completions and man pages under `prefix`;
/// returns every file written.
///
/// # Errors
/// A binary is missing in `from`, a directory cannot be created, or `turbo` fails to generate.
pub fn install_into(ctx: &Ctx, prefix: &Path, from: &Path, layout: Layout) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for name in BINARIES {
        let source = from.join(name);
        if !source.is_file() {
            bail!(
                "{} is missing: build it first (`cargo build --release`) or name the directory \
                 that holds both binaries with --bin-dir",
                source.display()
            );
        }
        let target = prefix.join("bin").join(name);
        let bytes = fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        place(&target, &bytes, 0o755)?;
        written.push(target);
    }
    let turbo = prefix.join("bin/turbo");
    for (shell, relative) in layout.completions() {
        let script = output(
            ctx.cmd(&turbo)
                .args(["completions", shell])
                .env("NO_COLOR", "1"),
        )
        .with_context(|| format!("generating the {shell} completions"))?;
        let target = prefix.join(relative);
        place(&target, script.as_bytes(), 0o644)?;
        written.push(target);
    }
    let man = prefix.join(MAN_DIR);
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    // into a scratch directory first, then renamed page by page like everything else
    let scratch = prefix.join(format!("{MAN_DIR}/.turbo-install-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    output(ctx.cmd(&turbo).arg("man").arg("--out-dir").arg(&scratch))
        .context("generating the man pages")?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&scratch)
        .with_context(|| format!("reading {}", scratch.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    pages.sort();
    for page in pages {
        let Some(name) = page.file_name() else {
            continue;
        };
        let target = man.join(name);
        fs::set_permissions(&page, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod {}", page.display()))?;
        fs::rename(&page, &target)
            .with_context(|| format!("moving {} into place", target.display()))?;
        written.push(target);
    }
    let _ = fs::remove_dir_all(&scratch);
    Ok(written)
}

/// Writes `bytes` to `target` through a temporary file in the same directory and a rename.
pub fn place(target: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = target
        .parent()
        .with_context(|| format!("{} has no parent directory", target.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", tmp.display()))?;
    fs::rename(&tmp, target).with_context(|| format!("moving {} into place", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_replaces_atomically_with_the_mode() {
        let dir = tempfile_dir();
        let target = dir.join("a/b/file");
        place(&target, b"one", 0o755).unwrap();
        place(&target, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let leftovers: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_binary_says_how_to_get_it() {
        let dir = tempfile_dir();
        let ctx = Ctx::new().unwrap();
        let err = install_into(
            &ctx,
            &dir.join("prefix"),
            &dir.join("nothing-here"),
            Layout::Local,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("turbo is missing") && err.contains("--bin-dir"),
            "{err}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// A fresh directory under the system temp dir (xtask has no tempfile dependency).
    fn tempfile_dir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-install-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
