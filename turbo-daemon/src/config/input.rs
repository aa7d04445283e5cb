//! Bounds on what a caller may hand the daemon, checked before any work is done with it.
//!
//! Every argument of a D-Bus call is decoded by zbus into memory (the bus itself caps a message,
//! at 32 MiB on a default system bus); these bounds stop it from going further: into the
//! validation, the state file written on every change, the environment and argument block of
//! every spawn, and the error messages that quote it. The numbers are far above any real app and
//! far below what would hurt:
//!
//! * argv: [`MAX_ARGV`] entries, [`MAX_ARGV_BYTES`] in all, each at most [`MAX_ARG_BYTES`] (the
//!   kernel's `MAX_ARG_STRLEN`: `execve` refuses a longer string with `E2BIG`, so a longer one
//!   could only fail later, at every spawn), no NUL (it cannot cross `execve`);
//! * environment (`env:`, `env_file:`, the `env` option): [`MAX_ENV`] variables, [`MAX_ENV_BYTES`]
//!   in all, names non-empty without `=` or NUL, values without NUL, each `NAME=value` at most
//!   [`MAX_ARG_BYTES`];
//! * a `turbo.yml` document: [`MAX_CONFIG_BYTES`]; an `env_file`: [`MAX_ENV_FILE_BYTES`], and a
//!   regular file (not a FIFO, which would block the daemon, nor `/dev/zero`, which never ends);
//! * `origin` (a file name for messages): [`MAX_PATH_BYTES`], no control characters; `base_dir`
//!   and `cwd`: absolute, at most [`MAX_PATH_BYTES`] (`PATH_MAX`), no NUL;
//! * targets of stop/restart/...: at most [`MAX_TARGET_BYTES`] (a name, `name:N`, an id, `all`
//!   or `@group`);
//! * app names: [`turbo_api::validate_app_name`] (1-64 safe characters).

use std::path::Path;

/// Most argv entries.
pub const MAX_ARGV: usize = 4096;
/// Most bytes of all argv entries together.
pub const MAX_ARGV_BYTES: usize = 1 << 20;
/// Most bytes of one argument or one `NAME=value` (Linux's `MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_BYTES: usize = 128 * 1024;
/// Most environment variables of one app.
pub const MAX_ENV: usize = 1024;
/// Most bytes of an app's environment (`NAME=value` for each).
pub const MAX_ENV_BYTES: usize = 1 << 20;
/// Largest `turbo.yml` document.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Largest `env_file`.
pub const MAX_ENV_FILE_BYTES: u64 = 1 << 20;
/// Longest path or origin (`PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest target of stop, restart, delete, reset, flush, describe, signal: a name (64) with
/// `:N` (a `u32`), `@` and a group name, an id or `all`.
pub const MAX_TARGET_BYTES: usize = turbo_api::MAX_NAME_LEN + 11;
/// Most options in one `StartApp` call (there are 4 kinds; repeats are impossible in a dict).
pub const MAX_OPTIONS: usize = 16;

/// Checks a command line against the bounds above.
///
/// # Errors
/// One line: what is too big or malformed, and the bound.
pub fn check_argv(argv: &[String]) -> Result<(), String> {
    if argv.len() > MAX_ARGV {
        return Err(format!(
            "the command has {} arguments: at most {MAX_ARGV} are accepted",
            argv.len()
        ));
    }
    let mut total = 0usize;
    for (i, arg) in argv.iter().enumerate() {
        if arg.len() > MAX_ARG_BYTES {
            return Err(format!(
                "argument {i} is {} bytes: at most {MAX_ARG_BYTES} (the kernel's limit for one argument)",
                arg.len()
            ));
        }
        if arg.contains('\0') {
            return Err(format!(
                "argument {i} contains a NUL byte, which cannot be passed to a program"
            ));
        }
        total += arg.len() + 1;
    }
    if total > MAX_ARGV_BYTES {
        return Err(format!(
            "the command line is {total} bytes: at most {MAX_ARGV_BYTES} are accepted"
        ));
    }
    Ok(())
}

/// Checks an environment (names and values) against the bounds above.
///
/// # Errors
/// One line: the first problem found.
pub fn check_env<'a>(
    vars: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    if vars.len() > MAX_ENV {
        return Err(format!(
            "{} environment variables: at most {MAX_ENV} are accepted",
            vars.len()
        ));
    }
    let mut total = 0usize;
    for (name, value) in vars {
        let shown = shorten(name);
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!(
                "environment variable name '{shown}' is not allowed: use a non-empty name without '=' or NUL"
            ));
        }
        if value.contains('\0') {
            return Err(format!(
                "the value of environment variable {shown} contains a NUL byte, which cannot be passed to a program"
            ));
        }
        let size = name.len() + value.len() + 2;
        if size > MAX_ARG_BYTES {
            return Err(format!(
                "environment variable {shown} is {size} bytes: at most {MAX_ARG_BYTES} (the kernel's limit for one variable)"
            ));
        }
        total += size;
    }
    if total > MAX_ENV_BYTES {
        return Err(format!(
            "the environment is {total} bytes: at most {MAX_ENV_BYTES} are accepted"
        ));
    }
    Ok(())
}

/// Checks the arguments of `StartConfig`.
///
/// # Errors
/// One line: what is wrong and the bound.
pub fn check_config_call(content: &str, origin: &str, base_dir: &str) -> Result<(), String> {
    if content.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "the config is {} bytes: at most {MAX_CONFIG_BYTES} are accepted; split it into several files",
            content.len()
        ));
    }
    if origin.len() > MAX_PATH_BYTES || origin.chars().any(char::is_control) {
        return Err(format!(
            "origin '{}' is not a file name: at most {MAX_PATH_BYTES} bytes without control characters",
            shorten(&origin.escape_default().to_string())
        ));
    }
    check_dir_path("base_dir", base_dir)
}

/// Checks an absolute directory path argument (`base_dir`, the `cwd` option).
///
/// # Errors
/// One line naming `what`.
pub fn check_dir_path(what: &str, path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "{what} is {} bytes: at most {MAX_PATH_BYTES} (PATH_MAX)",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    if !Path::new(path).is_absolute() {
        return Err(format!(
            "{what} '{}' must be an absolute path",
            shorten(path)
        ));
    }
    Ok(())
}

/// Checks a target of stop, restart, delete, reset, flush or describe.
///
/// # Errors
/// One line.
pub fn check_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("the target is empty: give an app name, an id, `all` or `@group`".into());
    }
    if target.len() > MAX_TARGET_BYTES {
        return Err(format!(
            "target '{}' is {} bytes: an app name (at most {}) with `:N`, an id, `all` or `@group`, at most {MAX_TARGET_BYTES} in all",
            shorten(target),
            target.len(),
            turbo_api::MAX_NAME_LEN
        ));
    }
    Ok(())
}

/// A signal as a user writes it: a name with or without `SIG` in any case (`HUP`, `sigusr1`,
/// `SIGTERM`) or a number from 1 to 64 (real-time signals included).
///
/// # Errors
/// One line naming the value and what is accepted.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let upper = s.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    format!("SIG{bare}")
        .parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .ok()
        .or_else(|| bare.parse().ok().filter(|n| (1..=64).contains(n)))
        .ok_or_else(|| {
            format!(
                "'{}' is not a signal: write a name like SIGHUP, HUP or USR1, or a number from 1 to 64",
                shorten(s)
            )
        })
}

/// Most instances one app may have: far beyond any CPU count, low enough that a typo cannot
/// fork-bomb the machine.
pub const MAX_INSTANCES: u32 = 1024;

/// Checks an instance count (`instances:`, `--instances`, `turbo scale`).
///
/// # Errors
/// 0 or more than [`MAX_INSTANCES`], with what to do instead.
pub fn check_instances(count: u32) -> Result<(), String> {
    if count == 0 {
        return Err("0 instances: run at least 1 (`turbo stop` stops an app)".into());
    }
    if count > MAX_INSTANCES {
        return Err(format!(
            "{count} instances: at most {MAX_INSTANCES} (`max` means one per online CPU)"
        ));
    }
    Ok(())
}

/// At most 64 characters of `text`, with `…` when cut: for quoting untrusted text in a message.
#[must_use]
pub fn shorten(text: &str) -> String {
    const KEEP: usize = 64;
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_bounds() {
        assert!(check_argv(&["/bin/sleep".into(), "1".into()]).is_ok());
        let many = vec!["x".to_owned(); MAX_ARGV + 1];
        assert!(check_argv(&many).unwrap_err().contains("at most 4096"));
        let big = vec!["y".repeat(100_000); 11];
        assert!(check_argv(&big).unwrap_err().contains("at most 1048576"));
        let long = vec!["z".repeat(MAX_ARG_BYTES + 1)];
        assert!(check_argv(&long).unwrap_err().contains("argument 0"));
        assert!(check_argv(&["a\0b".into()]).unwrap_err().contains("NUL"));
    }

    #[test]
    fn env_bounds() {
        let ok = [("A", "1"), ("B_2", "")];
        assert!(check_env(ok.iter().copied()).is_ok());
        for (name, value, wanted) in [
            ("", "1", "not allowed"),
            ("A=B", "1", "not allowed"),
            ("A\0", "1", "not allowed"),
            ("A", "x\0y", "NUL"),
        ] {
            let e = check_env([(name, value)].into_iter()).unwrap_err();
            assert!(e.contains(wanted), "{name:?}: {e}");
        }
        let names: Vec<String> = (0..=MAX_ENV).map(|i| format!("V{i}")).collect();
        let e = check_env(names.iter().map(|n| (n.as_str(), ""))).unwrap_err();
        assert!(e.contains("at most 1024"), "{e}");
        let value = "v".repeat(100_000);
        let names: Vec<String> = (0..11).map(|i| format!("V{i}")).collect();
        let e = check_env(names.iter().map(|n| (n.as_str(), value.as_str()))).unwrap_err();
        assert!(e.contains("at most 1048576"), "{e}");
    }

    #[test]
    fn call_arguments() {
        assert!(check_config_call("apps: []", "turbo.yml", "/srv").is_ok());
        let big = "#".repeat(MAX_CONFIG_BYTES + 1);
        assert!(
            check_config_call(&big, "t.yml", "/")
                .unwrap_err()
                .contains("split")
        );
        let e = check_config_call("", "t.yml\nforged: line", "/").unwrap_err();
        assert!(e.contains("origin") && !e.contains('\n'), "{e}");
        assert!(
            check_config_call("", "t.yml", "relative")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(check_dir_path("cwd", &format!("/{}", "d".repeat(5000))).is_err());
        assert!(check_target("api").is_ok() && check_target("all").is_ok());
        let e = check_target(&"x".repeat(10_000)).unwrap_err();
        assert!(
            e.len() < 300,
            "the message does not echo the whole target: {e}"
        );
        assert!(check_target("").is_err());
        assert_eq!(shorten(&"é".repeat(70)).chars().count(), 65);
    }
}
