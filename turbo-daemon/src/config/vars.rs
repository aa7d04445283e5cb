//! Variables and profiles of a `turbo.yml`, applied to the document before it is read as apps:
//! `env_<profile>:` blocks (PM2's `env_production`) and `${VAR}` / `${VAR:-default}` in string
//! values.
//!
//! Each app's mapping is rewritten in place: its `env_<profile>` keys (every key `env_*` but
//! `env_file`) are taken out, the selected one merged over `env:`, then every string value of
//! the app (not keys) is expanded. A variable is looked up in the caller's environment (sent by
//! the CLI), then in the app's `env_file` (read with the caller's rights, like the rest of the
//! check). `$${` is a literal `${`; any other `$` is left as written, so `sh -c 'echo $HOME'`
//! and `echo $$` (the shell's pid) keep working. A default is taken as written (not expanded).
//!
//! Expansion is bounded: all the strings of a document together expand to at most
//! [`MAX_EXPANDED_BYTES`] (a 1 MiB file of `${BIG}` must not make gigabytes), and a value that
//! comes out with a NUL byte (from an `env_file`) is refused like one written in the file.
//!
//! Problems carry the key path of the value at fault, so `ConfigError::in_document` places them
//! at file:line:col. Nothing here validates apps or reads anything but the `env_file`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use serde_yaml_ng::{Mapping, Value};

use super::{
    Problem,
    files::{parse_env_file, read_env_file},
};

/// Most bytes all the expanded strings of one document may hold together.
pub const MAX_EXPANDED_BYTES: usize = 4 * super::input::MAX_CONFIG_BYTES;

/// What expansion needs from the caller: its environment and the profile it selected.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    /// The caller's environment (`turbo apply` sends it); empty for `/etc/turbo/turbo.yml`.
    pub env: BTreeMap<String, String>,
    /// `--env NAME`: the `env_NAME:` blocks to merge over `env:`.
    pub profile: Option<String>,
}

/// No caller environment, no profile: `${VAR}` resolves only from `env_file` or a default.
pub static NO_VARS: Vars = Vars {
    env: BTreeMap::new(),
    profile: None,
};

/// Whether `content` may need [`prepare`]: the plain read keeps serde's own positions for
/// every other document.
pub(super) fn needed(content: &str, vars: &Vars) -> bool {
    vars.profile.is_some()
        || content.contains('$')
        || content
            .match_indices("env_")
            .any(|(i, _)| !content[i..].starts_with("env_file"))
}

/// Whether `key` names a profile block, and which.
fn profile_of(key: &str) -> Option<&str> {
    key.strip_prefix("env_").filter(|p| *p != "file")
}

/// Rewrites the apps of `doc` (see the module doc); adds the profiles defined to `profiles`.
/// `base_dir`: where a relative `cwd` resolves (and `env_file`, relative to the cwd).
pub(super) fn prepare(
    doc: &mut Value,
    vars: &Vars,
    base_dir: &Path,
    profiles: &mut BTreeSet<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut budget = MAX_EXPANDED_BYTES;
    let Some(apps) = doc.get_mut("apps").and_then(Value::as_sequence_mut) else {
        return problems;
    };
    for (i, app) in apps.iter_mut().enumerate() {
        let Some(map) = app.as_mapping_mut() else {
            continue;
        };
        let at = format!("apps[{i}]");
        let label = match map.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => format!("{at} ({})", super::input::shorten(name)),
            _ => at.clone(),
        };
        let before = problems.len();
        let blocks: Vec<String> = map
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| profile_of(k).is_some())
            .map(str::to_owned)
            .collect();
        for key in blocks {
            let block = map.remove(key.as_str()).unwrap_or(Value::Null);
            let name = profile_of(&key).unwrap_or_default().to_owned();
            profiles.insert(name.clone());
            if vars.profile.as_deref() != Some(name.as_str()) {
                continue;
            }
            let Value::Mapping(block) = block else {
                problems.push(
                    Problem::new(format!("{at}.{key}"), format!("`{key}` is not a mapping"))
                        .hint("write it like `env:`, as NAME: value lines"),
                );
                continue;
            };
            let env = map
                .entry(Value::from("env"))
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if let Value::Mapping(env) = env {
                env.extend(block);
            }
        }
        let file_vars = env_file_vars(map, vars, base_dir);
        let lookup = |name: &str| {
            vars.env
                .get(name)
                .or_else(|| file_vars.get(name))
                .map(String::as_str)
        };
        for (key, value) in map.iter_mut() {
            if let Some(key) = key.as_str() {
                walk(
                    value,
                    &format!("{at}.{key}"),
                    &lookup,
                    &mut budget,
                    &mut problems,
                );
            }
        }
        for p in &mut problems[before..] {
            p.app = Some(label.clone());
        }
    }
    problems
}

/// The variables of the app's `env_file` (its path expanded from the caller's environment), or
/// none when it cannot be read: validation says why, at its own position.
fn env_file_vars(map: &Mapping, vars: &Vars, base_dir: &Path) -> BTreeMap<String, String> {
    let caller = |name: &str| vars.env.get(name).map(String::as_str);
    let expanded = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .and_then(|s| expand(s, &caller, super::input::MAX_PATH_BYTES).ok())
    };
    let Some(file) = expanded("env_file") else {
        return BTreeMap::new();
    };
    let cwd = expanded("cwd").map_or_else(|| base_dir.to_path_buf(), |c| base_dir.join(c));
    read_env_file(&cwd.join(file))
        .ok()
        .and_then(|text| parse_env_file(&text).ok())
        .map(|pairs| pairs.into_iter().collect())
        .unwrap_or_default()
}

/// Expands every string under `value`, at key path `path`.
fn walk<'a>(
    value: &mut Value,
    path: &str,
    lookup: &impl Fn(&str) -> Option<&'a str>,
    budget: &mut usize,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(s) => match expand(s, lookup, *budget) {
            Ok(done) if done.contains('\0') => problems.push(
                Problem::new(path, "a variable put a NUL byte here, which no path, name, argument or variable can pass to the OS")
                    .hint("remove the NUL from the variable's value"),
            ),
            Ok(done) => {
                *budget -= done.len();
                *s = done;
            }
            Err(e) => problems.push(Problem::new(path, e.0).hint(e.1)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), lookup, budget, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                if let Some(k) = k.as_str() {
                    walk(v, &format!("{path}.{k}"), lookup, budget, problems);
                }
            }
        }
        Value::Tagged(t) => walk(&mut t.value, path, lookup, budget, problems),
        _ => {}
    }
}

/// Why a string cannot be expanded: the message and what to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ExpandError(String, &'static str);

/// `text` with `${VAR}`, `${VAR:-default}` and `$${` replaced (see the module doc), at most
/// `limit` bytes.
///
/// # Errors
/// The first unset variable without default, unclosed `${` or bad variable name, or a result
/// longer than `limit`.
pub(super) fn expand<'a>(
    text: &str,
    lookup: &impl Fn(&str) -> Option<&'a str>,
    limit: usize,
) -> Result<String, ExpandError> {
    let too_long = || {
        ExpandError(
            format!(
                "the variables expand to more than {limit} bytes, what is left of the document's {MAX_EXPANDED_BYTES}"
            ),
            "use shorter values, or fewer references to long ones",
        )
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            // `$${` is a literal `${`; a plain `$$` (the shell's pid) stays as written
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(ExpandError(
                    format!(
                        "'${{' without a closing '}}' in '{}'",
                        super::input::shorten(text)
                    ),
                    "close it, or write $${ for a literal ${",
                ));
            };
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ExpandError(
                    format!("'${{{}}}' is not a variable", super::input::shorten(inner)),
                    "write ${NAME} or ${NAME:-default} (letters, digits, _), or $${ for a literal ${",
                ));
            }
            let value = match (lookup(name), default) {
                (Some(value), _) => value,
                (None, Some(default)) => default,
                (None, None) => {
                    return Err(ExpandError(
                        format!("variable {name} is not set"),
                        "set it in the environment of `turbo`, in env_file, or give a default: ${NAME:-default}",
                    ));
                }
            };
            if out.len() + value.len() > limit {
                return Err(too_long());
            }
            out.push_str(value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    if out.len() + rest.len() > limit {
        return Err(too_long());
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, ExpandError> {
        let env: BTreeMap<&str, &str> = [("PORT", "8080"), ("EMPTY", "")].into();
        expand(text, &|n: &str| env.get(n).copied(), 64)
    }

    #[test]
    fn expansion_of_variables_defaults_and_escapes() {
        assert_eq!(run("port ${PORT}").unwrap(), "port 8080");
        assert_eq!(run("${MISSING:-3000}/${PORT:-1}").unwrap(), "3000/8080");
        assert_eq!(run("${EMPTY:-x}").unwrap(), "", "set but empty is set");
        assert_eq!(run("$${PORT} $$ $HOME a$").unwrap(), "${PORT} $$ $HOME a$");
        assert_eq!(run("no vars").unwrap(), "no vars");
        let e = run("x ${MISSING} y").unwrap_err();
        assert_eq!(e.0, "variable MISSING is not set");
        assert!(run("${PORT").unwrap_err().0.contains("without a closing"));
        assert!(run("${1X}").unwrap_err().0.contains("is not a variable"));
        assert!(run("${}").unwrap_err().0.contains("is not a variable"));
        let e = run(&"${PORT}".repeat(20)).unwrap_err();
        assert!(e.0.contains("more than 64 bytes"), "{e:?}");
    }

    #[test]
    fn profiles_merge_over_env_and_every_string_is_expanded() {
        let yaml = "apps:\n  - name: web\n    cmd: [sh, '${GREETING:-hi}']\n    env: {A: '1', B: '2'}\n    env_production: {B: '${PORT}'}\n    env_staging: {B: s}\n";
        let mut doc: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let vars = Vars {
            env: [("PORT".to_owned(), "8080".to_owned())].into(),
            profile: Some("production".into()),
        };
        let mut profiles = BTreeSet::new();
        let problems = prepare(&mut doc, &vars, Path::new("/"), &mut profiles);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            profiles,
            BTreeSet::from(["production".into(), "staging".into()])
        );
        let app = &doc["apps"][0];
        assert_eq!(app["cmd"][1], Value::from("hi"));
        assert_eq!(app["env"]["A"], Value::from("1"));
        assert_eq!(app["env"]["B"], Value::from("8080"));
        assert!(app.get("env_staging").is_none() && app.get("env_production").is_none());

        let mut doc: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let problems = prepare(&mut doc, &NO_VARS, Path::new("/"), &mut profiles);
        assert!(
            problems.is_empty(),
            "an unselected profile is not expanded: {problems:?}"
        );
        assert_eq!(doc["apps"][0]["env"]["B"], Value::from("2"));
    }

    #[test]
    fn env_file_supplies_variables_after_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "PORT=1\nHOST=db\n").unwrap();
        let yaml = "apps:\n  - name: web\n    cmd: ['${HOST}:${PORT}']\n    env_file: .env\n";
        let mut doc: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let vars = Vars {
            env: [("PORT".to_owned(), "2".to_owned())].into(),
            profile: None,
        };
        let problems = prepare(&mut doc, &vars, dir.path(), &mut BTreeSet::new());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(doc["apps"][0]["cmd"][0], Value::from("db:2"));
    }
}
