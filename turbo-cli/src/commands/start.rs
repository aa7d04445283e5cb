//! `turbo start`: one script or command (`StartApp`), or a whole turbo.yml (`StartConfig`).
//!
//! The request is planned by a pure function of the arguments and the current directory, so the
//! defaults (name from the script, absolute cwd, `K=V` parsing, yml detection) are unit-tested.
//! Validation of the config file itself is the daemon's: it reports every problem at once.

use std::{
    collections::HashMap,
    env,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use turbo_api::{option, validate_app_name};
use zbus::zvariant::Value;

use super::{daemon, print_table, wait};
use crate::{cli::StartArgs, connect::call_error, hint::Hinted, paths::absolutize};

/// What `turbo start` will ask the daemon.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// `StartConfigWith(content of file, origin, base_dir, {caller_env, env_profile})`.
    Config {
        file: PathBuf,
        origin: String,
        base_dir: String,
        /// `--env NAME`: the `env_NAME:` blocks to merge.
        profile: Option<String>,
    },
    /// `StartApp(name, argv, options)`.
    App {
        name: String,
        argv: Vec<String>,
        cwd: String,
        env: HashMap<String, String>,
        autorestart: Option<&'static str>,
        max_memory: Option<u64>,
        /// `--instances`: a count or `max`, checked by the daemon.
        instances: Option<String>,
        watch: bool,
        /// `--restart-delay` as given (checked here, parsed again by the daemon).
        restart_delay: Option<String>,
    },
}

pub async fn run(args: &StartArgs) -> Result<()> {
    let cwd = env::current_dir().context("cannot determine the current directory")?;
    let wait_for = wait::timeout(&args.wait)?;
    if let Some(apps) = start_existing(args).await? {
        let Some(timeout) = wait_for else {
            return print_table(&apps);
        };
        let daemon = daemon().await?;
        return print_table(&wait_started(&daemon, apps, timeout).await?);
    }
    let plan = plan(args, &cwd)?;
    // read the file before connecting: a typo in the path must not start a daemon
    let content = match &plan {
        Plan::Config { file, .. } => Some(crate::files::read_config(file)?),
        Plan::App { .. } => None,
    };
    let daemon = daemon().await?;
    let apps = match plan {
        Plan::Config {
            origin,
            base_dir,
            profile,
            ..
        } => daemon
            .proxy
            .start_config_with(
                content.as_deref().unwrap_or_default(),
                &origin,
                &base_dir,
                super::apply::variables(profile.as_deref()),
            )
            .await
            .map_err(|e| call_error(&e))?,
        Plan::App {
            name,
            argv,
            cwd,
            env,
            autorestart,
            max_memory,
            instances,
            watch,
            restart_delay,
        } => {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let mut options: HashMap<&str, Value<'_>> = HashMap::new();
            options.insert(option::CWD, Value::from(cwd));
            if !env.is_empty() {
                options.insert(option::ENV, Value::from(env));
            }
            if let Some(policy) = autorestart {
                options.insert(option::AUTORESTART, Value::from(policy));
            }
            if let Some(bytes) = max_memory {
                options.insert(option::MAX_MEMORY, Value::from(bytes));
            }
            let several = instances.is_some();
            match instances.as_deref().map(str::parse::<u32>) {
                Some(Ok(n)) => drop(options.insert(option::INSTANCES, Value::from(n))),
                Some(Err(_)) => drop(options.insert(option::INSTANCES, Value::from("max"))),
                None => {}
            }
            if watch {
                options.insert(option::WATCH, Value::from(true));
            }
            if let Some(delay) = restart_delay {
                options.insert(option::RESTART_DELAY, Value::from(delay));
            }
            let status = daemon
                .proxy
                .start_app(&name, &argv, options)
                .await
                .map_err(|e| call_error(&e))?;
            if several {
                // StartApp answers with one instance: show them all
                let all = daemon.proxy.list_apps().await.map_err(|e| call_error(&e))?;
                all.into_iter().filter(|a| a.name == status.name).collect()
            } else {
                vec![status]
            }
        }
    };
    let Some(timeout) = wait_for else {
        return print_table(&apps);
    };
    print_table(&wait_started(&daemon, apps, timeout).await?)
}

/// `--wait`: every app the start touched, one wait each, so a config file's apps all count;
/// except those it left stopped (`autostart: false`, a scheduled job waiting for its first run),
/// which are shown as they are.
async fn wait_started(
    daemon: &crate::connect::Daemon,
    apps: Vec<turbo_api::AppStatus>,
    timeout: std::time::Duration,
) -> Result<Vec<turbo_api::AppStatus>> {
    let mut ready = Vec::with_capacity(apps.len());
    for app in apps {
        if app.state == turbo_api::AppState::Stopped.as_str() {
            ready.push(app);
        } else {
            ready.extend(wait::ready(daemon, &app.id.to_string(), timeout).await?);
        }
    }
    Ok(ready)
}

/// `turbo start NAME` of an app the daemon has (a word, no arguments, no `--name`): starts it
/// if it is not running, and the dependencies it waits for unless `--no-deps` (as systemd
/// does). `None`: no such app, start the target as a script or command. Only a running daemon
/// is asked: without one, no app exists.
async fn start_existing(args: &StartArgs) -> Result<Option<Vec<turbo_api::AppStatus>>> {
    let word = match &args.target {
        Some(t)
            if args.args.is_empty()
                && args.name.is_none()
                && !t.contains('/')
                && !is_config_file(t) =>
        {
            t.as_str()
        }
        _ if args.no_deps => bail!(
            "--no-deps applies to `turbo start NAME` of an app that exists; \
             a file's apps start in dependency order anyway"
        ),
        _ => return Ok(None),
    };
    let name = word.rsplit_once(':').map_or(word, |(n, _)| n);
    let found = match crate::connect::find_running().await? {
        Some(d) => {
            let all = d.proxy.list_apps().await.map_err(|e| call_error(&e))?;
            all.iter().any(|a| a.name == name).then_some(d)
        }
        None => None,
    };
    let Some(d) = found else {
        if args.no_deps {
            bail!("--no-deps: no app is named '{name}'; `turbo status` lists them");
        }
        return Ok(None);
    };
    let apps = d
        .proxy
        .start_named(word, args.no_deps)
        .await
        .map_err(|e| call_error(&e))?;
    Ok(Some(apps))
}

fn plan(args: &StartArgs, cwd: &Path) -> Result<Plan> {
    // `turbo start -- python3 -m http.server`: the command is the first word after `--`
    let (target, trailing) = match (&args.target, args.args.split_first()) {
        (Some(target), _) => (target.as_str(), args.args.as_slice()),
        (None, Some((first, rest))) => (first.as_str(), rest),
        (None, None) => bail!("turbo start needs a script, a command or a turbo.yml"),
    };
    if is_pm2_file(target) {
        return Err(Hinted::new(
            format!("{target} is a PM2 file, not an app to run"),
            format!(
                "convert it with `turbo import pm2 {target} -o turbo.yml`, then `turbo start turbo.yml`"
            ),
        )
        .into());
    }
    if is_config_file(target) {
        let mut ignored = Vec::new();
        if args.name.is_some() {
            ignored.push("--name");
        }
        if args.cwd.is_some() {
            ignored.push("--cwd");
        }
        let profile = match args.env.as_slice() {
            [] => None,
            [name] if !name.contains('=') => Some(name.clone()),
            _ => bail!(
                "with a config file, --env names one profile (its env_NAME: blocks), not variables: set them in {target}'s env:"
            ),
        };
        if args.no_autorestart {
            ignored.push("--no-autorestart");
        }
        if args.max_memory.is_some() {
            ignored.push("--max-memory");
        }
        if args.instances.is_some() {
            ignored.push("--instances");
        }
        if args.watch {
            ignored.push("--watch");
        }
        if args.restart_delay.is_some() {
            ignored.push("--restart-delay");
        }
        if !trailing.is_empty() {
            ignored.push("ARGS after --");
        }
        if !ignored.is_empty() {
            let pronoun = if ignored.len() == 1 { "it" } else { "them" };
            bail!(
                "{} cannot be combined with a config file; set {pronoun} in {target}",
                ignored.join(", "),
            );
        }
        let file = absolutize(cwd, Path::new(target));
        let base_dir = file.parent().unwrap_or(cwd);
        return Ok(Plan::Config {
            origin: target.to_owned(),
            base_dir: utf8(base_dir)?,
            file: PathBuf::from(target),
            profile,
        });
    }

    let command = command_words(target, cwd)?;
    let name = match &args.name {
        Some(name) => {
            validate_app_name(name).map_err(|msg| anyhow!(msg))?;
            name.clone()
        }
        None => default_name(&command[0]),
    };
    let cwd = match &args.cwd {
        Some(dir) => utf8(&absolutize(cwd, Path::new(dir)))?,
        None => utf8(cwd)?,
    };
    let env = parse_env(&args.env)?;
    let argv = command
        .into_iter()
        .chain(trailing.iter().cloned())
        .collect();
    let max_memory = args
        .max_memory
        .as_deref()
        .map(|s| {
            turbo_api::parse_size(s).ok_or_else(|| {
                anyhow!("--max-memory '{s}' is not a size: use e.g. 512mb, 1gb or 100k")
            })
        })
        .transpose()?;
    Ok(Plan::App {
        name,
        argv,
        cwd,
        env,
        autorestart: args.no_autorestart.then_some("never"),
        max_memory,
        instances: match args.instances.as_deref() {
            None => None,
            Some(n) if n == "max" || n.parse::<u32>().is_ok() => Some(n.to_owned()),
            Some(n) => bail!("--instances '{n}' is not a count: give a number like 4, or `max`"),
        },
        watch: args.watch,
        restart_delay: match args.restart_delay.as_deref() {
            None => None,
            Some(d) if turbo_api::parse_duration(d).is_some() => Some(d.to_owned()),
            Some(d) => bail!("--restart-delay '{d}' is not a duration: use e.g. 500ms, 5s or 1m"),
        },
    })
}

/// The command words of `target`: itself, or, when it holds blanks and names no file (PM2's
/// `pm2 start "python3 -m http.server"`), its words split as a POSIX shell would split them
/// (quotes and backslashes honoured; no variables, globs or pipes: nothing runs a shell).
fn command_words(target: &str, cwd: &Path) -> Result<Vec<String>> {
    if !target.contains(char::is_whitespace) || absolutize(cwd, Path::new(target)).exists() {
        return Ok(vec![target.to_owned()]);
    }
    match shlex::split(target) {
        Some(words) if !words.is_empty() => Ok(words),
        _ => Err(Hinted::new(
            format!("cannot split '{target}' into a command and its arguments: a quote is not closed"),
            "close the quote, or give the words separately: `turbo start python3 -- -m http.server`",
        )
        .into()),
    }
}

/// PM2's ecosystem files (`ecosystem.config.js`, `ecosystem.json`) and its dump: starting one
/// as a script would run node on a file that only exports settings.
fn is_pm2_file(target: &str) -> bool {
    let Some(name) = Path::new(target).file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    name == "dump.pm2"
        || (name.starts_with("ecosystem")
            && [".json", ".js", ".cjs", ".mjs"]
                .iter()
                .any(|ext| name.ends_with(ext)))
}

/// `*.yml` / `*.yaml` (any case) is a config file; anything else is run.
fn is_config_file(target: &str) -> bool {
    Path::new(target)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
}

/// The file stem of the script, reduced to the app-name charset: `ticker.py` → `ticker`,
/// `/bin/sleep` → `sleep`, `my app.js` → `my-app`.
fn default_name(target: &str) -> String {
    let stem = Path::new(target)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    sanitize_name(&stem)
}

/// `raw` reduced to a valid app name: other characters become `-` (one per run), a leading
/// `.`/`-` goes, and a name that would be read as an id or as `all` gets `-app`.
pub(super) fn sanitize_name(raw: &str) -> String {
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '-'
        };
        // collapse runs of replaced characters into one dash
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let name = name.trim_start_matches(['.', '-']).trim_end_matches('-');
    let mut name: String = name.chars().take(MAX_DEFAULT_NAME).collect();
    // names that would be read as an id or as "every app" get a suffix instead of an error
    if name.is_empty() {
        name = "app".to_owned();
    } else if name == "all" || name.bytes().all(|b| b.is_ascii_digit()) {
        name.push_str("-app");
    }
    name
}

/// turbo-api allows 64 characters; leave room for the "-app" suffix so a default always validates.
const MAX_DEFAULT_NAME: usize = 60;

/// `--env K=V` pairs; the value may contain `=`, the key may not be empty.
fn parse_env(pairs: &[String]) -> Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(anyhow!("--env expects KEY=VALUE, got '{pair}'")),
        })
        .collect()
}

/// The daemon takes paths as D-Bus strings, which must be UTF-8.
fn utf8(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("path {} is not valid UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: &str) -> StartArgs {
        StartArgs {
            target: Some(target.into()),
            name: None,
            cwd: None,
            env: vec![],
            no_autorestart: false,
            max_memory: None,
            instances: None,
            watch: false,
            restart_delay: None,
            no_deps: false,
            wait: crate::cli::WaitArgs::default(),
            args: vec![],
        }
    }

    const CWD: &str = "/home/u/proj";

    #[test]
    fn script_defaults() {
        let plan = plan(
            &StartArgs {
                args: vec!["100".into()],
                ..args("/bin/sleep")
            },
            Path::new(CWD),
        )
        .unwrap();
        assert_eq!(
            plan,
            Plan::App {
                name: "sleep".into(),
                argv: vec!["/bin/sleep".into(), "100".into()],
                cwd: CWD.into(),
                env: HashMap::new(),
                autorestart: None,
                max_memory: None,
                instances: None,
                watch: false,
                restart_delay: None,
            }
        );
    }

    #[test]
    fn options_become_request_fields() {
        let plan = plan(
            &StartArgs {
                name: Some("tick".into()),
                cwd: Some("../other/./dir".into()),
                env: vec!["A=1".into(), "URL=http://x/?a=b".into(), "EMPTY=".into()],
                no_autorestart: true,
                max_memory: Some("1.5mb".into()),
                instances: Some("max".into()),
                ..args("ticker.py")
            },
            Path::new(CWD),
        )
        .unwrap();
        let Plan::App {
            name,
            argv,
            cwd,
            env,
            autorestart,
            max_memory,
            instances,
            ..
        } = plan
        else {
            panic!("not an app: {plan:?}");
        };
        assert_eq!(name, "tick");
        assert_eq!(instances.as_deref(), Some("max"));
        assert_eq!(max_memory, Some(1_572_864));
        assert_eq!(argv, ["ticker.py"]);
        assert_eq!(cwd, "/home/u/proj/../other/dir");
        assert_eq!(env["A"], "1");
        assert_eq!(env["URL"], "http://x/?a=b");
        assert_eq!(env["EMPTY"], "");
        assert_eq!(autorestart, Some("never"));
    }

    #[test]
    fn bad_env_and_names_are_one_line_errors() {
        for bad in ["NOEQUALS", "=value"] {
            let err = plan(
                &StartArgs {
                    env: vec![bad.into()],
                    ..args("a.sh")
                },
                Path::new(CWD),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("KEY=VALUE") && err.contains(bad), "{err}");
            assert!(!err.contains('\n'));
        }
        let err = plan(
            &StartArgs {
                name: Some("../x".into()),
                ..args("a.sh")
            },
            Path::new(CWD),
        )
        .unwrap_err();
        assert!(err.to_string().contains("'../x'"), "{err}");
    }

    #[test]
    fn config_files() {
        for yes in ["turbo.yml", "x/app.YAML", "/etc/t.yaml"] {
            assert!(is_config_file(yes), "{yes}");
        }
        for no in ["app.py", "yml", "/bin/sleep", "x.yml.bak"] {
            assert!(!is_config_file(no), "{no}");
        }
        let plan = plan(&args("deploy/./turbo.yml"), Path::new(CWD)).unwrap();
        assert_eq!(
            plan,
            Plan::Config {
                file: "deploy/./turbo.yml".into(),
                origin: "deploy/./turbo.yml".into(),
                base_dir: "/home/u/proj/deploy".into(),
                profile: None,
            }
        );
        let err = super::plan(
            &StartArgs {
                name: Some("x".into()),
                args: vec!["1".into()],
                ..args("turbo.yml")
            },
            Path::new(CWD),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--name") && err.contains("ARGS") && err.contains("turbo.yml"),
            "{err}"
        );
        // with a file, --env names one profile
        let with_env = |env: &[&str]| {
            super::plan(
                &StartArgs {
                    env: env.iter().map(|e| (*e).to_owned()).collect(),
                    ..args("turbo.yml")
                },
                Path::new(CWD),
            )
        };
        match with_env(&["production"]).unwrap() {
            Plan::Config { profile, .. } => assert_eq!(profile.as_deref(), Some("production")),
            other => panic!("{other:?}"),
        }
        for bad in [&["A=1"][..], &["a", "b"]] {
            let err = with_env(bad).unwrap_err().to_string();
            assert!(err.contains("names one profile"), "{err}");
        }
    }

    #[test]
    fn a_quoted_command_line_is_split_like_pm2_does() {
        let Plan::App { name, argv, .. } =
            plan(&args("python3 -m http.server"), Path::new(CWD)).unwrap()
        else {
            panic!("not an app");
        };
        assert_eq!(name, "python3");
        assert_eq!(argv, ["python3", "-m", "http.server"]);
        // quotes as in a shell, and ARGS after -- come after the words
        let Plan::App { argv, .. } = plan(
            &StartArgs {
                args: vec!["--verbose".into()],
                ..args(r#"sh -c 'echo "a b"; sleep 9'"#)
            },
            Path::new(CWD),
        )
        .unwrap() else {
            panic!("not an app");
        };
        assert_eq!(argv, ["sh", "-c", r#"echo "a b"; sleep 9"#, "--verbose"]);
        // a file whose name has a blank is run as it is
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("my app.sh"), "").unwrap();
        let Plan::App { name, argv, .. } = plan(&args("my app.sh"), dir.path()).unwrap() else {
            panic!("not an app");
        };
        assert_eq!(name, "my-app");
        assert_eq!(argv, ["my app.sh"]);
        let err = plan(&args("python3 -c 'print(1)"), Path::new(CWD)).unwrap_err();
        assert!(err.to_string().contains("a quote is not closed"), "{err}");
        assert!(
            crate::hint::help_of(&err)
                .unwrap()
                .contains("turbo start python3 --")
        );
    }

    #[test]
    fn the_command_may_come_after_the_double_dash() {
        let Plan::App { name, argv, .. } = plan(
            &StartArgs {
                target: None,
                args: vec!["python3".into(), "-m".into(), "http.server".into()],
                ..args("")
            },
            Path::new(CWD),
        )
        .unwrap() else {
            panic!("not an app");
        };
        assert_eq!((name.as_str(), argv.len()), ("python3", 3));
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "turbo",
            "start",
            "--",
            "python3",
            "-m",
            "http.server",
        ])
        .unwrap();
        let crate::cli::Cmd::Start(start) = cli.command else {
            panic!("not start");
        };
        assert_eq!(start.target, None);
        assert!(
            <crate::cli::Cli as clap::Parser>::try_parse_from(["turbo", "start"]).is_err(),
            "something to run is required"
        );
    }

    #[test]
    fn restart_delay_is_checked_and_passed_on() {
        let Plan::App { restart_delay, .. } = plan(
            &StartArgs {
                restart_delay: Some("250ms".into()),
                ..args("/bin/sleep")
            },
            Path::new(CWD),
        )
        .unwrap() else {
            panic!("not an app");
        };
        assert_eq!(restart_delay.as_deref(), Some("250ms"));
        let err = plan(
            &StartArgs {
                restart_delay: Some("soon".into()),
                ..args("/bin/sleep")
            },
            Path::new(CWD),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("--restart-delay 'soon' is not a duration"),
            "{err}"
        );
        let err = plan(
            &StartArgs {
                restart_delay: Some("1s".into()),
                ..args("turbo.yml")
            },
            Path::new(CWD),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--restart-delay"), "{err}");
    }

    #[test]
    fn pm2_files_are_not_run() {
        for pm2 in [
            "ecosystem.config.js",
            "deploy/ecosystem.json",
            "/root/.pm2/dump.pm2",
        ] {
            let err = plan(&args(pm2), Path::new(CWD)).unwrap_err();
            assert_eq!(
                crate::hint::help_of(&err),
                Some(
                    format!(
                        "convert it with `turbo import pm2 {pm2} -o turbo.yml`, then `turbo start turbo.yml`"
                    )
                    .as_str()
                ),
                "{pm2}"
            );
        }
        assert!(plan(&args("server.js"), Path::new(CWD)).is_ok());
    }

    #[test]
    fn default_names() {
        for (target, name) in [
            ("ticker.py", "ticker"),
            ("/bin/sleep", "sleep"),
            ("./server.js", "server"),
            ("my app (v2).js", "my-app-v2"),
            ("python3 app.py", "python3-app"),
            ("ünïcode.sh", "n-code"),
            (".hidden.sh", "hidden"),
            ("42.sh", "42-app"),
            ("all", "all-app"),
            ("", "app"),
            ("/", "app"),
        ] {
            assert_eq!(default_name(target), name, "{target}");
            assert_eq!(validate_app_name(&default_name(target)), Ok(()), "{target}");
        }
        let long = default_name(&"x".repeat(100));
        assert_eq!(validate_app_name(&long), Ok(()));
    }
}
