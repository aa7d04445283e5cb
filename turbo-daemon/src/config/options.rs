//! The options of a `StartApp` call (a D-Bus `a{sv}` map, `turbo_api::option`) read into an app
//! as written, then validated like an app of a `turbo.yml`.

use std::{collections::HashMap, path::Path};

use zbus::zvariant::OwnedValue;

use super::{AppConfig, ConfigError, Problem, Scalar, input, validate::validate};
use crate::{access::Powers, spec::AppSpec};

/// A `StartApp(name, argv, options)` call to read, with the `PATH` its command is found on and
/// the working directory of an app without a `cwd` option.
#[derive(Clone, Copy, Debug)]
pub struct StartCall<'a> {
    /// The app's name.
    pub name: &'a str,
    /// The command line.
    pub argv: &'a [String],
    /// The options (`turbo_api::option`).
    pub options: &'a HashMap<String, OwnedValue>,
    /// The `PATH` used to find the command.
    pub path_env: &'a str,
    /// The working directory without a `cwd` option.
    pub default_cwd: &'a Path,
}

/// Builds a spec from a start call for an app that `powers` may grant (see
/// `access::as_caller` for a caller's).
///
/// # Errors
/// Every problem found, without positions (there is no document): first the options of the
/// wrong type or unknown, else what validation found.
pub fn from_start_options(call: &StartCall<'_>, powers: &Powers) -> Result<AppSpec, ConfigError> {
    let StartCall {
        name,
        argv,
        options,
        path_env,
        default_cwd,
    } = *call;
    let mut app = AppConfig {
        name: name.to_owned(),
        cmd: Some(argv.to_vec()),
        ..AppConfig::default()
    };
    let mut errors = Vec::new();
    let wrong = |key: &str, what: &str| Problem::new(key, format!("option '{key}' must be {what}"));
    for (key, value) in options {
        match key.as_str() {
            turbo_api::option::CWD => match String::try_from(value.clone()) {
                Ok(cwd) => app.cwd = Some(cwd),
                Err(_) => errors.push(wrong(key, "a string")),
            },
            turbo_api::option::ENV => match HashMap::<String, String>::try_from(value.clone()) {
                Ok(env) => app.env = env.into_iter().collect(),
                Err(_) => errors.push(wrong(key, "a{ss}")),
            },
            turbo_api::option::AUTORESTART => match String::try_from(value.clone()) {
                Ok(s) => app.autorestart = Some(s),
                Err(_) => errors.push(wrong(key, "a string")),
            },
            turbo_api::option::INSTANCES => {
                match (
                    u32::try_from(value.clone()),
                    String::try_from(value.clone()),
                ) {
                    (Ok(n), _) => app.instances = Some(Scalar::Number(f64::from(n))),
                    (_, Ok(max)) if max == "max" => app.instances = Some(Scalar::Text(max)),
                    _ => errors.push(wrong(key, "a count (u) or \"max\"")),
                }
            }
            turbo_api::option::WATCH => match bool::try_from(value.clone()) {
                Ok(w) => app.watch = Some(serde_yaml_ng::Value::Bool(w)),
                Err(_) => errors.push(wrong(key, "a boolean (b)")),
            },
            turbo_api::option::RESTART_DELAY => match String::try_from(value.clone()) {
                Ok(delay) => app.restart.delay = Some(Scalar::Text(delay)),
                Err(_) => errors.push(wrong(key, "a duration string (s)")),
            },
            turbo_api::option::MAX_MEMORY => match u64::try_from(value.clone()) {
                #[expect(clippy::cast_precision_loss, reason = "a byte count far below 2^52")]
                Ok(n) => app.max_memory = Some(Scalar::Number(n as f64)),
                Err(_) => errors.push(wrong(key, "a byte count (t)")),
            },
            other => errors.push(Problem::new(
                "",
                format!(
                    "unknown option '{}' (known: cwd, env, autorestart, max_memory, watch, instances, restart_delay)",
                    input::shorten(&other.escape_default().to_string())
                ),
            )),
        }
    }
    if options.len() > input::MAX_OPTIONS {
        errors.push(Problem::new(
            "",
            format!(
                "{} options: at most {} are accepted",
                options.len(),
                input::MAX_OPTIONS
            ),
        ));
    }
    if let Some(cwd) = app.cwd.as_deref()
        && let Err(e) = input::check_dir_path("option 'cwd'", cwd)
    {
        errors.push(Problem::new("cwd", e));
    }
    if !errors.is_empty() {
        return Err(ConfigError { problems: errors });
    }
    validate(app, default_cwd, path_env, powers).map_err(|problems| ConfigError { problems })
}
