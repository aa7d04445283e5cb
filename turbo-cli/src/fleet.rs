//! Several hosts at once: `-H web1,web2,web3` or `--hosts FILE[@GROUP]` (docs/fleet.md).
//!
//! Each host is served by a child `turbo` process with `TURBO_HOST=<host>` and the same
//! arguments (the fleet flags removed), so every command works on a fleet exactly as it does on
//! one remote host, and one slow or dead host cannot disturb another's connection. This module
//! runs those children (a bounded number at once), merges what they print (a host column, a
//! `host` key in JSON, a host prefix on log lines), runs rollouts host by host, and ends with a
//! per-host summary on stderr. It must not talk D-Bus itself: that is the children's job.

use std::{
    collections::VecDeque,
    ffi::OsString,
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Map, Value as Json};

use crate::{
    cli::{Cli, Cmd, FleetArgs},
    hint::Hinted,
    remote::Target,
    render,
};

/// Hosts contacted at once when `--parallel` does not say.
const DEFAULT_FAN_OUT: usize = 16;
/// How long a rollout waits for each host's changed apps to be ready.
const ROLLOUT_WAIT: &str = "60s";

/// The hosts the command line names: `-H` (comma-separated), `--hosts FILE[@GROUP]`, else
/// `TURBO_HOST`; empty for this machine.
///
/// # Errors
/// Both `-H` and `--hosts`, a host that does not parse, an unreadable hosts file, an unknown group.
pub fn hosts(args: &FleetArgs) -> Result<Vec<Target>> {
    let specs: Vec<String> = match (&args.host, &args.hosts) {
        (Some(_), Some(_)) => bail!("-H and --hosts both name hosts: use one of them"),
        (Some(list), None) => split_list(list),
        (None, Some(file)) => hosts_file(file)?,
        (None, None) => std::env::var("TURBO_HOST")
            .map(|l| split_list(&l))
            .unwrap_or_default(),
    };
    let mut targets: Vec<Target> = Vec::with_capacity(specs.len());
    for spec in specs {
        let target = Target::parse(&spec)?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The hosts of a hosts file, or of one group of it (`FILE@GROUP`; a file whose own name has
/// an `@` is taken whole when it exists).
fn hosts_file(arg: &str) -> Result<Vec<String>> {
    let (path, group) = match arg.rsplit_once('@') {
        Some((path, group)) if !Path::new(arg).exists() => (path, Some(group)),
        _ => (arg, None),
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read hosts file {path}"))?;
    let entries = parse_hosts(&text);
    let Some(group) = group else {
        return Ok(entries.into_iter().map(|(h, _)| h).collect());
    };
    let chosen: Vec<String> = entries
        .iter()
        .filter(|(_, groups)| groups.iter().any(|g| g == group))
        .map(|(h, _)| h.clone())
        .collect();
    if chosen.is_empty() {
        let mut known: Vec<&str> = entries
            .iter()
            .flat_map(|(_, g)| g.iter().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        return Err(Hinted::wrap(
            anyhow!("no host of {path} is in group '{group}'"),
            if known.is_empty() {
                format!("{path} names no groups: put them after the host, e.g. `web1 web eu`")
            } else {
                format!("its groups are: {}", known.join(", "))
            },
        ));
    }
    Ok(chosen)
}

/// `host group…` lines; `#` starts a comment.
fn parse_hosts(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .map(|l| l.split_once('#').map_or(l, |(before, _)| before))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let host = words.next()?.to_owned();
            Some((host, words.map(str::to_owned).collect()))
        })
        .collect()
}

/// Our arguments without the fleet flags (`-H`, `--host(s)`, `--parallel`,
/// `--continue-on-error`), for a child or the remote `turbo`. What follows `--` is the app's.
#[must_use]
pub fn forwarded_args() -> Vec<OsString> {
    strip_fleet_flags(std::env::args_os().skip(1))
}

fn strip_fleet_flags(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    const WITH_VALUE: [&str; 4] = ["-H", "--host", "--hosts", "--parallel"];
    let mut out = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            out.push(arg);
            out.extend(args);
            break;
        }
        if WITH_VALUE.contains(&text.as_ref()) {
            args.next();
            continue;
        }
        let joined = text.starts_with("-H")
            || ["--host=", "--hosts=", "--parallel="]
                .iter()
                .any(|p| text.starts_with(p));
        if joined || text == "--continue-on-error" {
            continue;
        }
        out.push(arg);
    }
    out
}

/// How a command is spread over the hosts.
enum Kind {
    /// Host by host (`--parallel` at once), each host's changed apps ready before the next.
    Rollout(Waits),
    /// Lines as they come, each prefixed by its host (`logs`, `logs -f`).
    Stream,
    /// `status` without `--json`: one table with a host column.
    Table,
    /// Everything else: each host's output once it is done, in host order.
    Collect,
}

/// What a rollout waits for on a host.
enum Waits {
    /// The apps of the file `apply` applied (from its JSON plan).
    Plan,
    /// The command's own target.
    Target(String),
}

/// What one host's child did.
struct Outcome {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.code == 0
    }

    /// The child's error line (`error: …; help: …`), or a note of its exit status.
    fn error_line(&self) -> String {
        self.stderr
            .lines()
            .rfind(|l| l.starts_with("error:"))
            .or_else(|| self.stderr.lines().rfind(|l| !l.trim().is_empty()))
            .map_or_else(|| format!("exit status {}", self.code), str::to_owned)
    }
}

/// Runs the command on every host and returns the exit code: 0 when every host succeeded,
/// else the code of the first host (in the order given) that failed.
///
/// # Errors
/// A command that has no fleet form (`monit`), or our own executable cannot be found.
pub fn run(cli: &Cli, hosts: &[Target]) -> Result<u8> {
    let kind = match &cli.command {
        Cmd::Apply(a) if !a.dry_run => Kind::Rollout(Waits::Plan),
        Cmd::Restart(r) => Kind::Rollout(Waits::Target(r.target.clone())),
        Cmd::Reload(t) => Kind::Rollout(Waits::Target(t.target.clone())),
        Cmd::Logs(_) => Kind::Stream,
        Cmd::Status(s) if !s.json => Kind::Table,
        Cmd::Monit => {
            return Err(Hinted::wrap(
                anyhow!("turbo monit shows one host at a time"),
                "name one host with -H HOST; `turbo status` with several hosts shows them all",
            ));
        }
        _ => Kind::Collect,
    };
    let exe =
        std::env::current_exe().context("cannot find the turbo executable to run per host")?;
    let args = forwarded_args();
    let json = wants_json(&args);
    let width = hosts
        .iter()
        .map(|h| h.spec.chars().count())
        .max()
        .unwrap_or(0);
    let fleet = Fleet {
        exe: &exe,
        hosts,
        width,
    };
    let parallel = cli.fleet.parallel.map(std::num::NonZeroUsize::get);
    let results = match kind {
        Kind::Rollout(waits) => fleet.rollout(
            &args,
            &waits,
            json,
            parallel.unwrap_or(1),
            cli.fleet.continue_on_error,
        ),
        Kind::Stream => fleet.stream(&args),
        Kind::Table => {
            let mut args = args;
            args.push("--json".into());
            let results = fleet.collect(&args, parallel.unwrap_or(DEFAULT_FAN_OUT));
            let results = fleet.parsed(results);
            print_stdout(&render_table(&results, width))?;
            results.into_iter().map(|(h, o, _)| (h, o)).collect()
        }
        Kind::Collect => {
            let results = fleet.collect(&args, parallel.unwrap_or(DEFAULT_FAN_OUT));
            if json {
                let results = fleet.parsed(results);
                let merged: Vec<Json> = results
                    .iter()
                    .flat_map(|(_, _, docs)| docs.clone())
                    .collect();
                crate::term::emit_json(&Json::Array(merged))?;
                results.into_iter().map(|(h, o, _)| (h, o)).collect()
            } else {
                for (host, outcome) in &results {
                    print_stdout(&prefixed(&host.spec, width, &outcome.stdout))?;
                }
                results
            }
        }
    };
    Ok(summarise(&results, width))
}

/// Whether the command asked for JSON (before any `--`).
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

struct Fleet<'a> {
    exe: &'a Path,
    hosts: &'a [Target],
    width: usize,
}

type Results<'a> = Vec<(&'a Target, Outcome)>;

impl<'a> Fleet<'a> {
    fn child(&self, host: &Target, args: &[OsString]) -> io::Result<Child> {
        Command::new(self.exe)
            .args(args)
            .env("TURBO_HOST", &host.spec)
            // a child must not prompt: several share our terminal
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    fn run_one(&self, host: &Target, args: &[OsString]) -> Outcome {
        match self.child(host, args).and_then(Child::wait_with_output) {
            Ok(out) => Outcome {
                code: out.status.code().unwrap_or(1),
                stdout: out.stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(err) => Outcome {
                code: 1,
                stdout: Vec::new(),
                stderr: format!("error: cannot run {}: {err}", self.exe.display()),
            },
        }
    }

    /// Runs the command on `hosts` (all of ours when `None`), `parallel` at once; results in
    /// host order.
    fn collect_on(&self, hosts: &'a [Target], args: &[OsString], parallel: usize) -> Results<'a> {
        let queue: Mutex<VecDeque<usize>> = Mutex::new((0..hosts.len()).collect());
        let done: Mutex<Vec<Option<Outcome>>> =
            Mutex::new((0..hosts.len()).map(|_| None).collect());
        thread::scope(|s| {
            for _ in 0..parallel.min(hosts.len()) {
                s.spawn(|| {
                    loop {
                        let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                        let Some(i) = next else { break };
                        let outcome = self.run_one(&hosts[i], args);
                        if let Ok(mut d) = done.lock() {
                            d[i] = Some(outcome);
                        }
                    }
                });
            }
        });
        let done = done.into_inner().unwrap_or_default();
        hosts
            .iter()
            .zip(done)
            .map(|(h, o)| {
                (
                    h,
                    o.unwrap_or(Outcome {
                        code: 1,
                        stdout: Vec::new(),
                        stderr: "error: not run".to_owned(),
                    }),
                )
            })
            .collect()
    }

    fn collect(&self, args: &[OsString], parallel: usize) -> Results<'a> {
        self.collect_on(self.hosts, args, parallel)
    }

    /// Each successful host's JSON, every object tagged with `host`; a host whose output is not
    /// JSON counts as failed.
    fn parsed(&self, results: Results<'a>) -> Vec<(&'a Target, Outcome, Vec<Json>)> {
        results
            .into_iter()
            .map(|(host, mut outcome)| {
                if !outcome.ok() {
                    return (host, outcome, Vec::new());
                }
                match serde_json::from_slice::<Json>(&outcome.stdout) {
                    Ok(doc) => {
                        let docs = tag(&host.spec, doc);
                        (host, outcome, docs)
                    }
                    Err(err) => {
                        outcome.code = 1;
                        outcome.stderr = format!("error: its output is not JSON: {err}");
                        (host, outcome, Vec::new())
                    }
                }
            })
            .collect()
    }

    /// Every host at once, each line printed as it arrives after the host's name (`logs -f`
    /// must not wait for one host to finish before showing another's lines).
    fn stream(&self, args: &[OsString]) -> Results<'a> {
        let out = Arc::new(Mutex::new(io::stdout()));
        let width = self.width;
        thread::scope(|s| {
            let handles: Vec<_> = self
                .hosts
                .iter()
                .map(|host| {
                    let out = Arc::clone(&out);
                    s.spawn(move || {
                        let mut child = match self.child(host, args) {
                            Ok(c) => c,
                            Err(err) => {
                                return Outcome {
                                    code: 1,
                                    stdout: Vec::new(),
                                    stderr: format!("error: cannot run turbo: {err}"),
                                };
                            }
                        };
                        let mut stderr_pipe = child.stderr.take();
                        let err_reader = thread::spawn(move || {
                            let mut text = String::new();
                            if let Some(p) = stderr_pipe.as_mut() {
                                let _ = p.read_to_string(&mut text);
                            }
                            text
                        });
                        if let Some(pipe) = child.stdout.take() {
                            let mut reader = BufReader::new(pipe);
                            let mut line = Vec::new();
                            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                                let text = prefixed(&host.spec, width, &line);
                                let written = out.lock().map(|mut o| {
                                    o.write_all(text.as_bytes()).and_then(|()| o.flush())
                                });
                                if !matches!(written, Ok(Ok(()))) {
                                    // our reader went away (`| head`): stop this host too
                                    let _ = child.kill();
                                    break;
                                }
                                line.clear();
                            }
                        }
                        let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(1);
                        Outcome {
                            code,
                            stdout: Vec::new(),
                            stderr: err_reader.join().unwrap_or_default(),
                        }
                    })
                })
                .collect();
            self.hosts
                .iter()
                .zip(handles)
                .map(|(h, t)| {
                    (
                        h,
                        t.join().unwrap_or(Outcome {
                            code: 1,
                            stdout: Vec::new(),
                            stderr: "error: the host's reader panicked".to_owned(),
                        }),
                    )
                })
                .collect()
        })
    }

    /// Host by host (`parallel` at once): the command, then a wait until the apps it changed
    /// are ready; the first failing batch stops the rollout unless `keep_going`.
    fn rollout(
        &self,
        args: &[OsString],
        waits: &Waits,
        json: bool,
        parallel: usize,
        keep_going: bool,
    ) -> Results<'a> {
        let mut args = args.to_vec();
        if matches!(waits, Waits::Plan) && !json {
            args.push("--json".into());
        }
        let mut results: Results<'a> = Vec::new();
        let mut merged: Vec<Json> = Vec::new();
        let mut stopped = false;
        for batch in self.hosts.chunks(parallel) {
            if stopped {
                for host in batch {
                    results.push((
                        host,
                        Outcome {
                            code: -1,
                            stdout: Vec::new(),
                            stderr: "skipped: an earlier host failed (--continue-on-error goes on)"
                                .to_owned(),
                        },
                    ));
                }
                continue;
            }
            eprintln!(
                "{}",
                render::paint(
                    crate::term::stderr_color(),
                    render::Tone::Dim,
                    &format!(
                        "rolling out to {}",
                        batch
                            .iter()
                            .map(|h| h.spec.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                )
            );
            let changed = self.collect_on(batch, &args, parallel);
            let mut waited: Results<'a> = Vec::new();
            for (host, outcome) in changed {
                let mut names: Vec<String> = Vec::new();
                if outcome.ok() {
                    match waits {
                        Waits::Target(t) => names.push(t.clone()),
                        Waits::Plan => match serde_json::from_slice::<Json>(&outcome.stdout) {
                            Ok(plan) => {
                                names = changed_apps(&plan);
                                if json {
                                    merged.extend(tag(&host.spec, plan));
                                } else {
                                    let _ =
                                        print_stdout(&plan_lines(&host.spec, self.width, &plan));
                                }
                            }
                            Err(err) => {
                                waited.push((
                                    host,
                                    Outcome {
                                        code: 1,
                                        stdout: Vec::new(),
                                        stderr: format!("error: apply printed no plan: {err}"),
                                    },
                                ));
                                continue;
                            }
                        },
                    }
                    if !matches!(waits, Waits::Plan) {
                        let _ = print_stdout(&prefixed(&host.spec, self.width, &outcome.stdout));
                    }
                } else {
                    waited.push((host, outcome));
                    continue;
                }
                if names.is_empty() {
                    waited.push((host, outcome));
                    continue;
                }
                let mut wait_args: Vec<OsString> = vec![
                    "__wait-ready".into(),
                    "--timeout".into(),
                    ROLLOUT_WAIT.into(),
                ];
                wait_args.extend(names.into_iter().map(OsString::from));
                let ready = self.run_one(host, &wait_args);
                waited.push((host, ready));
            }
            stopped = !keep_going && waited.iter().any(|(_, o)| !o.ok());
            results.extend(waited);
        }
        if json {
            let _ = crate::term::emit_json(&Json::Array(merged));
        }
        results
    }
}

/// The apps of an apply plan that a rollout waits for: every app of the file (added, changed or
/// unchanged; not those it removed or only kept), so a host whose app is already failing
/// stops the rollout too.
fn changed_apps(plan: &Json) -> Vec<String> {
    plan.as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            matches!(
                c["action"].as_str(),
                Some("add" | "update" | "restart" | "reload" | "unchanged")
            )
        })
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// An apply plan as `host  action name` lines.
fn plan_lines(host: &str, width: usize, plan: &Json) -> String {
    let mut out = String::new();
    for change in plan.as_array().into_iter().flatten() {
        let name = change["name"].as_str().unwrap_or("?");
        let action = change["action"].as_str().unwrap_or("?");
        out.push_str(&format!("{host:<width$}  {action:<9} {name}\n"));
    }
    out
}

/// `doc` as a list of objects carrying `host`.
fn tag(host: &str, doc: Json) -> Vec<Json> {
    let one = |item: Json| match item {
        Json::Object(obj) => {
            let mut tagged = Map::new();
            tagged.insert("host".to_owned(), Json::String(host.to_owned()));
            tagged.extend(obj);
            Json::Object(tagged)
        }
        other => serde_json::json!({ "host": host, "value": other }),
    };
    match doc {
        Json::Array(items) => items.into_iter().map(one).collect(),
        other => vec![one(other)],
    }
}

/// Every line of `bytes` after the host's name, aligned.
fn prefixed(host: &str, width: usize, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(&format!("{host:<width$}  {line}\n"));
    }
    out
}

fn print_stdout(text: &str) -> Result<()> {
    match text.strip_suffix('\n') {
        Some(body) => crate::term::emit(body),
        None if text.is_empty() => Ok(()),
        None => crate::term::emit(text),
    }
}

/// The status table of a fleet: the columns of `turbo status` that matter across hosts.
fn render_table(results: &[(&Target, Outcome, Vec<Json>)], width: usize) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "HOST".into(),
        "ID".into(),
        "NAME".into(),
        "STATE".into(),
        "PID".into(),
        "RESTARTS".into(),
        "UPTIME".into(),
        "MEMORY".into(),
    ]];
    for (host, _, apps) in results {
        for app in apps {
            let name = app["name"].as_str().unwrap_or("?");
            let instances = apps.iter().filter(|a| a["name"] == app["name"]).count();
            let label = if instances > 1 {
                format!("{name}:{}", app["instance"].as_u64().unwrap_or(0))
            } else {
                name.to_owned()
            };
            let num = |k: &str| app[k].as_u64();
            rows.push([
                host.spec.clone(),
                num("id").map_or_else(|| "-".into(), |v| v.to_string()),
                render::escape_controls(&label).into_owned(),
                app["state"].as_str().unwrap_or("?").to_owned(),
                num("pid").map_or_else(|| "-".into(), |v| v.to_string()),
                num("restarts").unwrap_or(0).to_string(),
                num("uptime_ms")
                    .filter(|_| num("pid").is_some())
                    .map_or_else(|| "-".into(), render::human_duration_ms),
                num("memory_bytes")
                    .filter(|_| num("pid").is_some())
                    .map_or_else(|| "-".into(), render::human_bytes),
            ]);
        }
    }
    if rows.len() == 1 {
        return "no apps on these hosts\n".to_owned();
    }
    let mut widths = [0_usize; 8];
    widths[0] = width.max(4);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Prints the per-host summary on stderr and returns the exit code (see [`run`]).
fn summarise(results: &[(&Target, Outcome)], width: usize) -> u8 {
    let failed = results.iter().filter(|(_, o)| o.code > 0).count();
    let skipped = results.iter().filter(|(_, o)| o.code < 0).count();
    let ok = results.len() - failed - skipped;
    let color = crate::term::stderr_color();
    // what succeeding hosts said on stderr (warnings) is theirs to say, under their name
    let mut text = String::new();
    for (host, outcome) in results.iter().filter(|(_, o)| o.ok()) {
        text.push_str(&prefixed(&host.spec, width, outcome.stderr.as_bytes()));
    }
    text.push_str(&format!("{} hosts: {ok} ok", results.len()));
    if failed > 0 {
        text.push_str(&format!(", {failed} failed"));
    }
    if skipped > 0 {
        text.push_str(&format!(", {skipped} skipped"));
    }
    text.push('\n');
    for (host, outcome) in results {
        let (tone, what) = match outcome.code {
            0 => (render::Tone::Green, "ok".to_owned()),
            c if c < 0 => (render::Tone::Dim, outcome.stderr.clone()),
            _ => (render::Tone::Red, outcome.error_line()),
        };
        let line = format!("  {:<width$}  {what}", host.spec);
        text.push_str(&render::paint(color, tone, &render::escape_controls(&line)));
        text.push('\n');
    }
    eprint!("{text}");
    results
        .iter()
        .find(|(_, o)| o.code > 0)
        .map_or(0, |(_, o)| u8::try_from(o.code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn fleet_flags_are_not_forwarded() {
        let got = strip_fleet_flags(
            os(&[
                "-H",
                "a,b",
                "--parallel=2",
                "start",
                "--hosts",
                "f",
                "x",
                "--continue-on-error",
                "-Hc",
                "--",
                "-H",
                "kept",
            ])
            .into_iter(),
        );
        assert_eq!(got, os(&["start", "x", "--", "-H", "kept"]));
    }

    #[test]
    fn hosts_files_have_groups() {
        let entries = parse_hosts("# fleet\nweb1 web eu\n\nweb2 web   # second\ndb1 db\n");
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0],
            ("web1".to_owned(), vec!["web".to_owned(), "eu".to_owned()])
        );
        assert_eq!(entries[1].1, vec!["web".to_owned()]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "web1 web\nweb2 web\ndb1 db\n").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(hosts_file(f).unwrap().len(), 3);
        assert_eq!(
            hosts_file(&format!("{f}@db")).unwrap(),
            vec!["db1".to_owned()]
        );
        let err = format!("{:#}", hosts_file(&format!("{f}@cache")).unwrap_err());
        assert!(err.contains("group 'cache'"), "{err}");
    }

    #[test]
    fn json_is_tagged_with_the_host() {
        let docs = tag("web1", serde_json::json!([{"name": "a"}, {"name": "b"}]));
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["host"], "web1");
        assert_eq!(
            tag("h", serde_json::json!({"version": "1"}))[0]["host"],
            "h"
        );
    }

    #[test]
    fn rollouts_wait_for_what_apply_changed() {
        let plan = serde_json::json!([
            {"name": "a", "action": "add"}, {"name": "b", "action": "unchanged"},
            {"name": "c", "action": "remove"}, {"name": "d", "action": "restart"}
        ]);
        assert_eq!(changed_apps(&plan), ["a", "b", "d"]);
    }
}
