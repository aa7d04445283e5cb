//! `turbo import pm2 <ecosystem.config.js|ecosystem.json|ecosystem.yml|dump.pm2> [-o turbo.yml]
//! [--env NAME]`.
//!
//! Converts PM2's description of apps into a turbo.yml that uses only keys turbo.yml accepts
//! today, and says on stderr what it could not carry over and what it approximated. The
//! conversion ([`convert`]) is a pure function of the parsed document and is unit-tested; this
//! module reads one file and writes one file (or stdout), and must not talk to the daemon: the
//! result is checked by `turbo start`, which validates it like any hand-written turbo.yml.
//!
//! Two inputs, told apart by their shape:
//! * an ecosystem file (JavaScript, JSON or YAML; a `.js`/`.cjs`/`.mjs` file is evaluated by
//!   `node`, found on PATH, which prints its export as JSON, as PM2 itself `require`s it):
//!   `{"apps": [...]}`, a list of apps, or one app; keys as the
//!   user wrote them, with PM2's aliases (`exec`, `interpreter`, `interpreter_args`, `user`, ...);
//!   an unknown key is reported, a known key without equivalent too;
//! * a dump (`pm2 save` writes `~/.pm2/dump.pm2`): a list of `pm2_env` objects, which hold the
//!   resolved options (`pm_exec_path`, `pm_cwd`, `exec_interpreter`, `node_args`...) mixed with
//!   runtime state (`status`, `restart_time`, `pm_uptime`...) and with the environment of the
//!   shell that ran PM2, copied to the top level and into `env`. Only option keys are read;
//!   runtime state is ignored, and so are the shell's variables (`HOME`, `PATH`, `SSH_*`...),
//!   which turbo sets itself; one note says how many were left out.
//!
//! PM2 behaviours kept on purpose: its stop signal (SIGINT; turbo's default is SIGTERM) is
//! written out for every app, and its interpreter choice (by extension, `node` for anything
//! else, `none` for a binary) decides between `script:` and `cmd:`.
//!
//! Layout: `model` is what turbo.yml gets (the output types), `pm2_keys` is PM2's vocabulary,
//! `pm2` the conversion, this module reads the input and writes the result.

mod model;
mod pm2;
mod pm2_keys;
#[cfg(test)]
mod tests;

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use serde_json::Value;

use crate::{cli::ImportPm2Args, hint::Hinted, render, term};

use model::TurboFile;
pub use model::{Conversion, Note, NoteKind, Options};
pub use pm2::convert;

/// `turbo import pm2`.
pub fn pm2(args: &ImportPm2Args) -> Result<()> {
    let file = &args.file;
    let shown = file.display().to_string();
    let text = if is_javascript(file) {
        evaluate_with_node(file)?
    } else {
        crate::files::read_config(file).map_err(|err| {
            if file.exists() {
                err
            } else {
                Hinted::wrap(
                    err,
                    "a PM2 dump is usually ~/.pm2/dump.pm2 (`pm2 save` writes it)",
                )
            }
        })?
    };
    let doc = parse_document(&text, file)?;
    if let Some(out) = &args.output
        && out.exists()
        && !args.force
    {
        return Err(Hinted::new(
            format!("{} already exists", out.display()),
            "pass --force to overwrite it, or choose another -o",
        )
        .into());
    }
    let source_dir = absolute_parent(file)?;
    let rebase = match &args.output {
        Some(out) if absolute_parent(out)? != source_dir => Some(source_dir),
        _ => None,
    };
    let conversion = convert(
        &doc,
        &Options {
            env_name: args.env_name.clone(),
            rebase,
        },
    )
    .map_err(|e| anyhow!("{shown}: {e}"))?;
    let yaml = to_yaml(&conversion, &shown)?;
    match &args.output {
        Some(out) => {
            let mut f = fs::File::create(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            f.write_all(yaml.as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        None => term::emit(yaml.trim_end())?,
    }
    eprintln!(
        "{}",
        summary(
            &conversion,
            &shown,
            args.output.as_deref(),
            term::stderr_color()
        )
    );
    Ok(())
}

/// `ecosystem.config.js` and its `.cjs`/`.mjs` forms: JavaScript, which only node can read.
fn is_javascript(file: &Path) -> bool {
    file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["js", "cjs", "mjs"]
            .iter()
            .any(|js| e.eq_ignore_ascii_case(js))
    })
}

/// How long node may take to evaluate an ecosystem file (one that never settles must not hang
/// the CLI).
const NODE_TIMEOUT: Duration = Duration::from_secs(30);

/// Imports the file given as argv[1] (CommonJS or ES module alike: `import()` of CommonJS
/// yields `module.exports` as `default`) and prints its export as JSON, as PM2 itself does by
/// `require`-ing it. Functions in it are left out by `JSON.stringify`. `process.exit` ends a
/// file that left timers behind; stdout to a pipe is synchronous in node on Linux, so nothing
/// is lost.
const NODE_EVAL: &str = r#"const { pathToFileURL } = require("url");
import(pathToFileURL(process.argv[1]).href).then(
  (m) => {
    const v = m.default !== undefined ? m.default : m;
    process.stdout.write(JSON.stringify(v === undefined ? null : v));
    process.exit(0);
  },
  (e) => {
    process.stderr.write(String((e && e.message) || e));
    process.exit(1);
  },
);"#;

/// The export of a JavaScript ecosystem file as JSON text, from `node`. Evaluating it runs its
/// code, as `pm2 start ecosystem.config.js` would: the user asked for this file.
///
/// # Errors
/// node is not on PATH, the file throws, or node takes longer than [`NODE_TIMEOUT`].
fn evaluate_with_node(file: &Path) -> Result<String> {
    use std::{
        io::Read as _,
        process::{Command, Stdio},
    };
    let shown = file.display();
    // a FIFO or a directory gets the same clear error as a JSON file would
    crate::files::open_regular(file).map_err(|err| anyhow!("cannot read {shown}: {err}"))?;
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let absolute = crate::paths::absolutize(&cwd, file);
    let mut child = match Command::new("node")
        .arg("-e")
        .arg(NODE_EVAL)
        .arg("--")
        .arg(&absolute)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Hinted::new(
                format!(
                    "{shown} is JavaScript, and `node` (Node.js), which turbo runs to read it, \
                     is not on PATH"
                ),
                "install Node.js, or write the same content as ecosystem.json and import that",
            )
            .into());
        }
        Err(err) => return Err(anyhow!("cannot run node to read {shown}: {err}")),
    };
    // both pipes drained while we wait, so a chatty file cannot block node on a full pipe
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe
                    .take(crate::files::MAX_CONFIG_BYTES + 1)
                    .read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + NODE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for node")? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!(
                "node did not finish evaluating {shown} within {} s",
                NODE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let said = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(anyhow!(
            "node could not evaluate {shown} ({status}): {said}"
        ));
    }
    if stdout.len() as u64 > crate::files::MAX_CONFIG_BYTES {
        return Err(anyhow!("{shown} exports more than 16 MiB of settings"));
    }
    String::from_utf8(stdout).map_err(|_| anyhow!("node printed non-UTF-8 text for {shown}"))
}

/// JSON (with line and column on error), or YAML for `.yml`/`.yaml` (PM2 reads both).
fn parse_document(text: &str, file: &Path) -> Result<Value> {
    let yaml = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"));
    let shown = file.display();
    if yaml {
        return serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow!("{shown}{at}: not valid YAML: {e}")
        });
    }
    serde_json::from_str(text).map_err(|e| {
        Hinted::new(
            format!("{shown}:{}:{}: not valid JSON: {e}", e.line(), e.column()),
            "PM2 ecosystem files in JSON and dumps from `pm2 save` are read; JSON5 (comments, trailing commas) is not",
        )
        .into()
    })
}

fn absolute_parent(file: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let abs = crate::paths::absolutize(&cwd, file);
    Ok(abs.parent().map_or(cwd, Path::to_path_buf))
}

/// The turbo.yml text, with a header saying where it came from and what was left out.
///
/// # Errors
/// Serialisation failed (it does not for these types).
pub fn to_yaml(conversion: &Conversion, origin: &str) -> Result<String> {
    let body = serde_yaml_ng::to_string(&TurboFile {
        apps: &conversion.apps,
    })
    .context("cannot write YAML")?;
    let mut out = format!(
        "# Converted from {origin} by `turbo import pm2`. Relative paths resolve against this\n\
         # file's directory. Check it with `turbo start <this file>`.\n"
    );
    let dropped: Vec<&Note> = conversion
        .notes
        .iter()
        .filter(|n| n.kind != NoteKind::Approximated)
        .collect();
    if !dropped.is_empty() {
        out.push_str("# Left out (no equivalent in turbo.yml):\n");
        for n in dropped {
            out.push_str(&format!("#   {}\n", one_line(&n.to_string())));
        }
    }
    out.push_str(&body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// What stderr says after a conversion.
#[must_use]
pub fn summary(
    conversion: &Conversion,
    origin: &str,
    output: Option<&Path>,
    color: bool,
) -> String {
    let n = conversion.apps.len();
    let apps = if n == 1 { "app" } else { "apps" };
    let to = output.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    let mut lines = vec![format!(
        "{} {n} {apps} from {origin} to {to}",
        render::paint(color, render::Tone::Green, "converted")
    )];
    let section = |lines: &mut Vec<String>, title: &str, kinds: &[NoteKind]| {
        let notes: Vec<&Note> = conversion
            .notes
            .iter()
            .filter(|n| kinds.contains(&n.kind))
            .collect();
        if notes.is_empty() {
            return;
        }
        lines.push(render::paint(color, render::Tone::Yellow, title));
        for n in notes {
            lines.push(format!("  {n}"));
        }
    };
    section(
        &mut lines,
        "not converted (no equivalent in turbo.yml yet):",
        &[NoteKind::Dropped, NoteKind::Unknown],
    );
    section(
        &mut lines,
        "converted approximately:",
        &[NoteKind::Approximated],
    );
    lines.push(format!(
        "note: stop_signal is SIGINT, PM2's (turbo's default is SIGTERM); next: turbo start {}",
        output.map_or_else(|| "<file>".to_owned(), |p| p.display().to_string())
    ));
    lines.join("\n")
}
