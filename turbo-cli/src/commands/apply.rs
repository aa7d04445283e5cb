//! `turbo apply` (make the daemon's apps match a file, `ApplyConfig`), `turbo config check`
//! (the same call with `dry_run`: validation only, for CI) and `turbo config show` (the
//! configuration an app runs with, from `DescribeApp`).
//!
//! The plan is the daemon's (it knows what runs); this module only sends the file and renders
//! the answer, as a diff ([`render_plan`], pure and unit-tested) or JSON.

use std::{collections::HashMap, env, path::Path};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use turbo_api::{AppChange, apply_option};
use zbus::zvariant::Value;

use super::{daemon, target_error};
use crate::{cli::ApplyArgs, connect::call_error, paths::absolutize, term};

/// `ApplyConfig` for `file` with these options, this shell's environment (for `${VAR}`) and
/// `profile` (`--env`); answers the plan.
pub(super) async fn send(
    file: &Path,
    dry_run: bool,
    prune: bool,
    only: &[String],
    profile: Option<&str>,
) -> Result<Vec<AppChange>> {
    let cwd = env::current_dir().context("cannot determine the current directory")?;
    // read before connecting: a typo in the path must not start a daemon
    let content = crate::files::read_config(file)?;
    let absolute = absolutize(&cwd, file);
    let base_dir = absolute.parent().unwrap_or(&cwd);
    let Some(base_dir) = base_dir.to_str() else {
        bail!("{} is not a UTF-8 path", base_dir.display());
    };
    let origin = file.to_string_lossy();
    let mut options: HashMap<&str, Value<'_>> = HashMap::new();
    options.insert(apply_option::DRY_RUN, Value::from(dry_run));
    options.insert(apply_option::PRUNE, Value::from(prune));
    if !only.is_empty() {
        options.insert(apply_option::ONLY, Value::from(only.to_vec()));
    }
    options.extend(variables(profile));
    let daemon = daemon().await?;
    daemon
        .proxy
        .apply_config(&content, &origin, base_dir, options)
        .await
        .map_err(|e| call_error(&e))
}

/// The options that carry this shell's environment (for `${VAR}` in the file) and `profile`
/// (`--env`), for `ApplyConfig` and `StartConfigWith`.
pub(super) fn variables(profile: Option<&str>) -> HashMap<&'static str, Value<'static>> {
    let mut options = HashMap::new();
    if let Some(profile) = profile {
        options.insert(apply_option::ENV_PROFILE, Value::from(profile.to_owned()));
    }
    // only what is valid text: a variable that is not cannot be named in a turbo.yml anyway
    let caller_env: HashMap<String, String> = env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    options.insert(apply_option::CALLER_ENV, Value::from(caller_env));
    options
}

/// `turbo apply`.
pub async fn apply(args: &ApplyArgs) -> Result<()> {
    let plan = send(
        &args.file,
        args.dry_run,
        args.prune,
        &args.only,
        args.profile.as_deref(),
    )
    .await?;
    if args.json {
        return term::emit_json(&plan_json(&plan));
    }
    term::emit(&render_plan(&plan, args.dry_run))
}

/// `turbo config check`: exit status 0 when the daemon would accept the file.
pub async fn check(file: &Path, profile: Option<&str>) -> Result<()> {
    let plan = send(file, true, false, &[], profile).await?;
    let names: Vec<&str> = plan
        .iter()
        .filter(|c| c.action != "keep")
        .map(|c| c.name.as_str())
        .collect();
    term::emit(&format!(
        "{}: valid, {} app{} ({})",
        file.display(),
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    ))
}

/// `turbo restart NAME --update-env`: the app's file (`source`, from `describe`) applied again
/// for this app alone, with this shell's environment and `profile`, so `${VAR}` and `env_file`
/// are read anew; a definition that did not change is restarted as `turbo restart` does (a
/// changed one was already replaced by the apply).
pub async fn restart_update_env(
    target: &str,
    profile: Option<&str>,
    wait_args: &crate::cli::WaitArgs,
) -> Result<()> {
    let d = daemon().await?;
    let (status, config, _) = match d.proxy.describe_app(target).await {
        Ok(found) => found,
        Err(e) => return Err(target_error(&d, target, &e).await),
    };
    if config.source.is_empty() {
        bail!(
            "{} was not started from a file, so there is no environment to read again: \
             `turbo delete {0}` and start it with the --env you want",
            status.name
        );
    }
    let only = [status.name.clone()];
    let plan = send(Path::new(&config.source), false, false, &only, profile).await?;
    let replaced = plan
        .iter()
        .any(|c| c.name == status.name && c.action != "unchanged");
    term::emit(&render_plan(&plan, false))?;
    if replaced {
        return Ok(());
    }
    super::manage::restart(target, wait_args).await
}

/// `turbo config show`.
pub async fn show(target: &str) -> Result<()> {
    let d = daemon().await?;
    let (status, config, _) = match d.proxy.describe_app(target).await {
        Ok(found) => found,
        Err(e) => return Err(target_error(&d, target, &e).await),
    };
    let mut doc = json!({
        "name": status.name,
        "cmd": status.argv,
        "cwd": status.cwd,
    });
    if let (Some(map), serde_json::Value::Object(rest)) = (doc.as_object_mut(), config.to_json()) {
        map.extend(rest);
    }
    term::emit_json(&doc)
}

/// The plan as `--json` prints it.
fn plan_json(plan: &[AppChange]) -> serde_json::Value {
    plan.iter()
        .map(|c| {
            json!({
                "name": c.name,
                "action": c.action,
                "fields": c.fields.iter().map(|f| json!({"field": f.field, "how": f.how})).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The plan as a diff: one line per app (`+` added, `-` removed, `~` changed, ` ` untouched),
/// then a summary.
fn render_plan(plan: &[AppChange], dry_run: bool) -> String {
    let width = plan.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let (mut add, mut change, mut remove) = (0, 0, 0);
    for c in plan {
        let (mark, what) = match c.action.as_str() {
            "add" => {
                add += 1;
                ('+', "add".to_owned())
            }
            "remove" => {
                remove += 1;
                ('-', "remove".to_owned())
            }
            "keep" => (' ', "keep (not in the file; --prune removes it)".to_owned()),
            "unchanged" => (' ', "unchanged".to_owned()),
            other => {
                change += 1;
                let fields: Vec<String> = c
                    .fields
                    .iter()
                    .map(|f| format!("{} ({})", f.field, f.how))
                    .collect();
                let verb = match other {
                    "update" => "update, no restart",
                    "reload" => "rolling reload",
                    verb => verb,
                };
                ('~', format!("{verb}: {}", fields.join(", ")))
            }
        };
        out.push_str(&format!("{mark} {:<width$}  {what}\n", c.name));
    }
    if add + change + remove == 0 {
        out.push_str("nothing to do: the apps match the file");
    } else {
        out.push_str(&format!(
            "{add} to add, {change} to change, {remove} to remove{}",
            if dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use turbo_api::FieldChange;

    use super::*;

    fn change(name: &str, action: &str, fields: &[(&str, &str)]) -> AppChange {
        AppChange {
            name: name.into(),
            action: action.into(),
            fields: fields
                .iter()
                .map(|(f, h)| FieldChange {
                    field: (*f).into(),
                    how: (*h).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_plan_reads_as_a_diff() {
        let plan = [
            change("new", "add", &[]),
            change("api", "update", &[("max_memory", "live")]),
            change("web", "reload", &[("env", "restart")]),
            change("same", "unchanged", &[]),
            change("old", "remove", &[]),
        ];
        assert_eq!(
            render_plan(&plan, true),
            "+ new   add\n\
             ~ api   update, no restart: max_memory (live)\n\
             ~ web   rolling reload: env (restart)\n\
             \x20 same  unchanged\n\
             - old   remove\n\
             1 to add, 2 to change, 1 to remove (dry run: nothing changed)"
        );
        assert_eq!(
            render_plan(&[change("same", "unchanged", &[])], false),
            "  same  unchanged\nnothing to do: the apps match the file"
        );
        assert_eq!(
            plan_json(&plan[1..2]),
            json!([{"name": "api", "action": "update", "fields": [{"field": "max_memory", "how": "live"}]}])
        );
    }
}
