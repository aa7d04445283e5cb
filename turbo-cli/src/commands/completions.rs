//! `turbo completions <shell>`, `turbo man` and the hidden `turbo __complete-apps`.
//!
//! The scripts are clap_complete's, generated from the same grammar as the parser (so they cannot
//! drift from it), plus a few lines of our own per shell that complete app names where a command
//! takes one, by running `turbo __complete-apps`. That command asks a running daemon for its app
//! names and must stay quiet and quick: it never starts a daemon, prints nothing but names, and
//! succeeds with no output when no daemon answers within [`COMPLETE_TIMEOUT`], because a
//! completion that prints errors or hangs breaks the user's prompt.
//!
//! The man pages are clap_mangen's, with the sections clap knows nothing about (environment,
//! files, exit status) added here. Nothing in this module talks to the daemon except
//! `__complete-apps`, and nothing here decides what the commands do.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::CommandFactory as _;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::{
    cli::{Cli, CompletionShell},
    connect, term,
};

/// Commands whose first positional argument is an app name, an app id, or `all`.
pub const APP_OR_ALL_COMMANDS: [&str; 7] = [
    "stop", "restart", "reload", "delete", "reset", "flush", "status",
];
/// Commands whose first positional argument is one app (name or id).
pub const APP_COMMANDS: [&str; 5] = ["logs", "crashes", "events", "describe", "scale"];
/// Subcommands of a command group whose positional is one app: zsh completes them from clap's
/// nested specs (counted by the tests); the bash wrapper only looks at the first word.
#[cfg(test)]
const NESTED_APP_COMMANDS: [&str; 1] = ["config show"];
/// More targets zsh completes from clap's specs (counted by the tests): `turbo signal SIGNAL
/// TARGET` (the bash wrapper only looks at the first word) and `ls`, the visible alias of
/// `status`, which clap writes out as a command of its own.
#[cfg(test)]
const MORE_ZSH_APP_OR_ALL: [&str; 2] = ["signal", "ls"];

/// How long `__complete-apps` may take before giving up silently: a prompt must not hang.
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(2);

/// `turbo completions <shell>`.
pub fn completions(shell: CompletionShell) -> Result<()> {
    term::emit(completion_script(shell).trim_end())
}

/// The whole completion script for `shell`: clap_complete's, with app names wired in.
#[must_use]
pub fn completion_script(shell: CompletionShell) -> String {
    let mut cmd = Cli::command();
    let generator = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out: Vec<u8> = Vec::new();
    clap_complete::generate(generator, &mut cmd, "turbo", &mut out);
    let generated = String::from_utf8_lossy(&out).into_owned();
    match shell {
        CompletionShell::Bash => wire_bash(&generated),
        CompletionShell::Zsh => wire_zsh(&generated),
        CompletionShell::Fish => wire_fish(&generated),
    }
}

/// Bash: a function in front of clap's `_turbo` that answers with app names when the word being
/// completed is the first positional argument of an app command, and hands over otherwise.
fn wire_bash(generated: &str) -> String {
    let or_all = APP_OR_ALL_COMMANDS.join("|");
    let apps = APP_COMMANDS.join("|");
    let wrapper = format!(
        r#"
# App names from the running daemon (`turbo __complete-apps`) where a command takes an app;
# everything else is clap's `_turbo` above.
_turbo_with_apps() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local sub="" given=0 i w before
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        before="${{COMP_WORDS[i-1]}}"
        if [[ -z "$sub" ]]; then
            [[ "$w" == -* ]] || sub="$w"
        elif [[ "$w" != -* && "$before" != "-n" && "$before" != "--lines" ]]; then
            given=$((given + 1))
        fi
    done
    local extra=""
    case "$sub" in
        {or_all}) extra="all" ;;
        {apps}) ;;
        *) _turbo "$@"; return ;;
    esac
    if [[ $given -gt 0 || "$cur" == -* || "$prev" == "-n" || "$prev" == "--lines" ]]; then
        _turbo "$@"
        return
    fi
    local names
    names="$("${{COMP_WORDS[0]}}" __complete-apps 2>/dev/null)"
    COMPREPLY=( $(compgen -W "$names $extra" -- "$cur") )
}}
"#
    );
    let script = generated.replace("complete -F _turbo ", "complete -F _turbo_with_apps ");
    format!("{}\n{wrapper}", script.trim_end())
}

/// Zsh: the positional app arguments get `_turbo_apps` (or `_turbo_apps_or_all`) as their action
/// instead of `_default`. clap writes them as `':target -- App name...:_default'`: `target` and
/// `name` are the ids of those arguments in `cli.rs`, and their help starts with "App name"
/// (`turbo start` has a `target` too, a file); a unit test checks that every one is rewired.
fn wire_zsh(generated: &str) -> String {
    let functions = r#"
(( $+functions[_turbo_apps] )) ||
_turbo_apps() {
    local -a apps
    apps=(${(f)"$(turbo __complete-apps 2>/dev/null)"})
    _describe -t apps 'app' apps
}
(( $+functions[_turbo_apps_or_all] )) ||
_turbo_apps_or_all() {
    local -a apps
    apps=(${(f)"$(turbo __complete-apps 2>/dev/null)"} 'all:every app')
    _describe -t apps 'app' apps
}
"#;
    let mut out = String::with_capacity(generated.len() + functions.len());
    for line in generated.lines() {
        let positional = |id: &str| {
            (line.starts_with(&format!("':{id} -- ")) || line.starts_with(&format!("'::{id} -- ")))
                && line.contains(" -- App name")
        };
        let action = if positional("target") {
            Some("_turbo_apps_or_all")
        } else if positional("name") {
            Some("_turbo_apps")
        } else {
            None
        };
        match action {
            Some(action) if line.ends_with(":_default' \\") => {
                out.push_str(line.trim_end_matches(":_default' \\"));
                out.push_str(&format!(":{action}' \\"));
            }
            _ => {
                if line.starts_with("if [ \"$funcstack[1]\" = \"_turbo\" ]") {
                    out.push_str(functions.trim_start());
                    out.push('\n');
                }
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}

/// Fish: two more `complete` lines; fish merges them with clap's.
fn wire_fish(generated: &str) -> String {
    format!(
        "{}\n\n\
         # App names from the running daemon where a command takes an app.\n\
         function __fish_turbo_apps\n    turbo __complete-apps 2>/dev/null\nend\n\
         complete -c turbo -n \"__fish_turbo_using_subcommand {}\" -f -a '(__fish_turbo_apps) all'\n\
         complete -c turbo -n \"__fish_turbo_using_subcommand {}\" -f -a '(__fish_turbo_apps)'\n",
        generated.trim_end(),
        APP_OR_ALL_COMMANDS.join(" "),
        APP_COMMANDS.join(" "),
    )
}

/// `turbo man [--out-dir DIR]`.
pub fn man(out_dir: Option<&Path>) -> Result<()> {
    let Some(dir) = out_dir else {
        let mut out = Vec::new();
        render_page(&Cli::command(), true, &mut out)?;
        return match std::io::stdout().lock().write_all(&out) {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("cannot write to stdout"),
        };
    };
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let written = write_pages(dir)?;
    let names: Vec<String> = written
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    term::emit(&format!(
        "wrote {} man pages to {}: {}",
        written.len(),
        dir.display(),
        names.join(" ")
    ))
}

/// Writes `turbo.1` and `turbo-<command>.1` (nested: `turbo-import-pm2.1`) into `dir`.
///
/// # Errors
/// A page cannot be written.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    let mut pending = vec![(cmd, true)];
    while let Some((cmd, top)) = pending.pop() {
        let name = cmd
            .get_display_name()
            .unwrap_or_else(|| cmd.get_name())
            .to_owned();
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        render_page(&cmd, top, &mut page)?;
        fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        pending.extend(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                .map(|s| (s.clone(), false)),
        );
    }
    if written.is_empty() {
        bail!("no man page was written");
    }
    written.sort();
    Ok(written)
}

/// One page: clap_mangen's sections, then ours (only on the main page, `top`).
fn render_page(cmd: &clap::Command, top: bool, out: &mut Vec<u8>) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).manual("TurboProcess");
    man.render(out).context("cannot render the man page")?;
    if !top {
        let mut roff = Roff::default();
        roff.control("SH", ["SEE ALSO"])
            .text([bold("turbo"), roman("(1)")]);
        roff.to_writer(out).context("cannot render the man page")?;
        return Ok(());
    }
    let mut roff = Roff::default();
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, text) in [
        (
            "TURBO_HOME",
            "Home of the user-mode daemon: its state, logs and bus socket (default ~/.turbo). \
             A command that needs a daemon starts one there when none answers.",
        ),
        (
            "TURBO_BUS_ADDRESS",
            "A D-Bus address to reach the daemon at, used as is and never autostarted.",
        ),
        (
            "NO_COLOR",
            "Any non-empty value turns colour off. Colour is only used on a terminal anyway.",
        ),
        (
            "COLUMNS",
            "Width used for tables when the terminal does not say.",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(name)])
            .text([roman(text)]);
    }
    roff.control("SH", ["FILES"]);
    for (name, text) in [
        (
            "$TURBO_HOME/bus.sock",
            "The private bus of the user-mode daemon.",
        ),
        (
            "$TURBO_HOME/logs/",
            "The apps' stdout and stderr logs (see turbo logs).",
        ),
        (
            "/var/lib/turbo, /var/log/turbo",
            "State and logs of the system-mode daemon (see turbo startup).",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(name)])
            .text([roman(text)]);
    }
    roff.control("SH", ["EXIT STATUS"]).text([roman(
        "0 on success; 1 with one line on stderr, starting with \"error: \", when the command \
         failed; 2 when the command line itself is wrong.",
    )]);
    roff.control("SH", ["SEE ALSO"]).text([
        italic("turbo-<command>"),
        roman("(1) for each command, "),
        bold("turbo-daemon --help"),
        roman(", "),
        bold("busctl"),
        roman("(1), "),
        bold("systemctl"),
        roman("(1)"),
    ]);
    roff.to_writer(out).context("cannot render the man page")
}

/// `turbo __complete-apps`.
pub async fn complete_apps() -> Result<()> {
    let names = tokio::time::timeout(COMPLETE_TIMEOUT, async {
        let daemon = connect::find_running().await.ok()??;
        let apps = daemon.proxy.list_apps().await.ok()?;
        Some(apps.into_iter().map(|a| a.name).collect::<Vec<_>>())
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    if names.is_empty() {
        return Ok(());
    }
    term::emit(&names.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists above must name exactly the commands whose first positional is an app.
    #[test]
    fn app_commands_match_the_grammar() {
        let cmd = Cli::command();
        let mut found: Vec<(String, bool)> = Vec::new();
        for sub in cmd.get_subcommands() {
            let Some(first) = sub.get_positionals().next() else {
                continue;
            };
            let value = first
                .get_value_names()
                .map(|v| v.join(" "))
                .unwrap_or_default();
            if value.starts_with("NAME") || first.get_id() == "name" {
                found.push((sub.get_name().to_owned(), value.contains("all")));
            }
        }
        let mut expected: Vec<(String, bool)> = APP_OR_ALL_COMMANDS
            .iter()
            .map(|c| ((*c).to_owned(), true))
            .chain(APP_COMMANDS.iter().map(|c| ((*c).to_owned(), false)))
            .collect();
        found.sort();
        expected.sort();
        assert_eq!(found, expected);
    }

    #[test]
    fn bash_wraps_clap_and_registers_the_wrapper() {
        let s = completion_script(CompletionShell::Bash);
        assert!(s.contains("_turbo() {"), "clap's function is kept");
        assert!(s.contains("_turbo_with_apps() {"));
        assert!(s.contains("complete -F _turbo_with_apps "));
        assert!(
            !s.contains("complete -F _turbo "),
            "clap's own registration is replaced"
        );
        assert!(s.contains("stop|restart|reload|delete|reset|flush|status) extra=\"all\""));
        assert!(s.contains("__complete-apps"));
    }

    #[test]
    fn zsh_rewires_every_app_argument() {
        let s = completion_script(CompletionShell::Zsh);
        assert!(s.starts_with("#compdef turbo"));
        // one spec per app command (the `help` subcommand has no positionals)
        let or_all = s.matches(":_turbo_apps_or_all' \\").count();
        let one = s.matches(":_turbo_apps' \\").count();
        assert_eq!(
            (or_all, one),
            (
                APP_OR_ALL_COMMANDS.len() + MORE_ZSH_APP_OR_ALL.len(),
                APP_COMMANDS.len() + NESTED_APP_COMMANDS.len()
            ),
            "{s}"
        );
        assert!(!s.contains(":target -- App name, app id, or `all`:_default'"));
        let defined = s.find("_turbo_apps() {").expect("defined");
        let registered = s.find("compdef _turbo turbo").expect("registered");
        assert!(defined < registered);
    }

    #[test]
    fn fish_adds_app_names() {
        let s = completion_script(CompletionShell::Fish);
        assert!(s.contains("function __fish_turbo_apps"));
        assert!(s.contains(
            "complete -c turbo -n \"__fish_turbo_using_subcommand stop restart reload delete reset flush status\" -f -a '(__fish_turbo_apps) all'"
        ));
        assert!(s.contains("__fish_turbo_using_subcommand logs crashes events describe scale"));
    }

    #[test]
    fn man_pages_for_every_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for page in [
            "turbo.1",
            "turbo-start.1",
            "turbo-monit.1",
            "turbo-import.1",
            "turbo-import-pm2.1",
            "turbo-completions.1",
        ] {
            assert!(names.iter().any(|n| n == page), "{page} in {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.contains("complete-apps")),
            "hidden commands have no page: {names:?}"
        );
        let main = fs::read_to_string(dir.path().join("turbo.1")).unwrap();
        assert!(main.starts_with(".ie"), "roff: {}", &main[..40]);
        for section in ["SYNOPSIS", "SUBCOMMANDS", "ENVIRONMENT", "\"EXIT STATUS\""] {
            assert!(main.contains(&format!(".SH {section}")), "{section}");
        }
        let stop = fs::read_to_string(dir.path().join("turbo-stop.1")).unwrap();
        assert!(
            stop.contains("turbo stop"),
            "synopsis uses the real command"
        );
    }
}
