//! App configuration: `turbo.yml` documents and `StartApp` options turned into
//! [`AppSpec`](crate::spec::AppSpec)s, or a [`ConfigError`] listing every problem found.
//!
//! Each problem names the file, the line and column of the value at fault, the app, what is
//! wrong and what to do; displayed, one line each:
//! `turbo.yml:5:12: apps[0] (web): restart.delay -1 is negative: use a duration like 5s`.
//! Positions come from [`locate`], a second, mark-keeping read of the same text.
//!
//! The way from text to spec: [`written`] (the document as serde reads it), [`validate`] (one
//! app, every key; [`checks`] for health, readiness and watch mode, [`privileges`] for the
//! identity and limit keys), [`options`] (the D-Bus option map of a start call). The only OS
//! access here is read-only: checking that scripts, interpreters, directories and env files
//! exist and reading them ([`files`]), and looking users and groups up (`os::users`). Nothing
//! here starts, stops or remembers anything, and what a caller may grant is decided in
//! `access`. [`input`] bounds the sizes of everything a caller hands in.
//!
//! A start call is validated for its *caller* (`access::Caller`): with the caller's powers,
//! and, for a non-root caller of a root daemon, with the caller's file access rights
//! ([`from_yaml_as`], `access::as_caller`).

mod checks;
mod error;
mod files;
pub mod input;
mod locate;
mod options;
mod privileges;
#[cfg(test)]
mod tests;
mod validate;
mod written;

use std::{collections::HashMap, path::Path};

use zbus::zvariant::OwnedValue;

pub use self::{
    error::{ConfigError, Problem},
    locate::Pos,
    options::from_start_options,
    validate::parse_signal,
};
use self::{validate::validate, written::ConfigFile};
// Transitional: runtime/ and dbus/auth.rs name these by their old paths (`config::Caller`,
// `config::as_caller`, `config::users`, `config::environment`, `config::Rlimit`, ...).
use crate::{access, spec::AppSpec};
pub use crate::{
    access::{Caller, Powers, as_caller},
    os::users,
    spec::{Privileges, ProcessLimits, Rlimit, RunAs, environment},
};

/// Parses and validates a `turbo.yml` for a daemon with `powers` (tests pretend to be another
/// user with it). `origin` names the file in messages; relative paths resolve against
/// `base_dir`; `path_env` is the `PATH` used to find commands.
///
/// # Errors
/// Every problem found, each at the position of its value.
pub fn from_yaml(
    content: &str,
    origin: &str,
    base_dir: &Path,
    path_env: &str,
    powers: &Powers,
) -> Result<Vec<AppSpec>, ConfigError> {
    let file: ConfigFile =
        serde_yaml_ng::from_str(content).map_err(|e| ConfigError::from_yaml(&e, origin))?;
    let mut found: Vec<Problem> = Vec::new();
    if file.apps.is_empty() {
        found.push(
            Problem::new("apps", "`apps` is empty")
                .hint("add at least one app, like `- {name: web, cmd: [node, server.js]}`"),
        );
    }
    let mut first_with_name: HashMap<String, usize> = HashMap::new();
    let mut specs = Vec::new();
    for (i, app) in file.apps.into_iter().enumerate() {
        let path = |at: &str| {
            if at.is_empty() {
                format!("apps[{i}]")
            } else {
                format!("apps[{i}].{at}")
            }
        };
        let label = if app.name.is_empty() {
            format!("apps[{i}]")
        } else {
            format!("apps[{i}] ({})", app.name)
        };
        let twin = if app.name.is_empty() {
            None
        } else {
            first_with_name.get(&app.name).copied()
        };
        match twin {
            Some(first) => {
                let mut p = Problem::new(
                    path("name"),
                    format!(
                        "name '{}' is used twice (apps[{first}] has it too)",
                        app.name
                    ),
                )
                .hint("give each app its own name");
                p.app = Some(label.clone());
                found.push(p);
            }
            None => {
                first_with_name.insert(app.name.clone(), i);
            }
        }
        // a twin is still checked, so that its other problems show up now rather than later
        match validate(app, base_dir, path_env, powers) {
            Ok(spec) if twin.is_none() => specs.push(spec),
            Ok(_) => {}
            Err(problems) => found.extend(problems.into_iter().map(|mut p| {
                p.field = path(&p.field);
                p.app = Some(label.clone());
                p
            })),
        }
    }
    if found.is_empty() {
        Ok(specs)
    } else {
        Err(ConfigError::in_document(found, origin, content))
    }
}

/// [`from_yaml`] on behalf of `caller`: with the caller's powers and file access rights
/// (`access::as_caller`), so that a non-root caller's apps run as the caller and its
/// `env_file` is read only if the caller may read it.
///
/// # Errors
/// As [`from_yaml`], or why the caller cannot be given apps (one problem, no position).
pub fn from_yaml_as(
    content: &str,
    origin: &str,
    base_dir: &Path,
    path_env: &str,
    caller: Caller,
) -> Result<Vec<AppSpec>, ConfigError> {
    access::as_caller(caller, |powers| {
        from_yaml(content, origin, base_dir, path_env, powers)
    })
}

/// Transitional, for `runtime` (which replies with one line of text): [`from_yaml_as`] with
/// the error displayed.
///
/// # Errors
/// [`ConfigError`]'s lines.
pub fn parse_config_as(
    content: &str,
    origin: &str,
    base_dir: &Path,
    path_env: &str,
    caller: Caller,
) -> Result<Vec<AppSpec>, String> {
    from_yaml_as(content, origin, base_dir, path_env, caller).map_err(|e| e.to_string())
}

/// Transitional, for `runtime`: [`from_start_options`] with the error displayed.
///
/// # Errors
/// [`ConfigError`]'s lines.
pub fn from_options(
    name: &str,
    argv: &[String],
    options: &HashMap<String, OwnedValue>,
    path_env: &str,
    default_cwd: &Path,
    powers: &Powers,
) -> Result<AppSpec, String> {
    from_start_options(name, argv, options, path_env, default_cwd, powers)
        .map_err(|e| e.to_string())
}
