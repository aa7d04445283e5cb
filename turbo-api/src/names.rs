//! App names and the object paths derived from them.

use zbus::zvariant::OwnedObjectPath;

use crate::APP_PATH_PREFIX;

/// Longest accepted app name.
pub const MAX_NAME_LEN: usize = 64;

/// Checks an app name: 1–64 characters of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
///
/// Names become file names (logs, state) and object paths, so anything that could climb out of a
/// directory or be read as an option is refused.
///
/// # Errors
/// A one-line message naming the problem and what is allowed.
pub fn validate_app_name(name: &str) -> Result<(), String> {
    let allowed =
        "use 1-64 characters of letters, digits, '.', '_' and '-', not starting with '.' or '-'";
    if name.is_empty() {
        return Err(format!("app name is empty: {allowed}"));
    }
    if name.len() > MAX_NAME_LEN {
        // the name came from a caller and may be megabytes long: quote only its start
        let start: String = name.chars().take(MAX_NAME_LEN).collect();
        return Err(format!(
            "app name '{start}…' is too long ({} bytes): {allowed}",
            name.len()
        ));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(format!("app name '{name}' is not allowed: {allowed}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("app name '{name}' contains {bad:?}: {allowed}"));
    }
    if name == "all" {
        return Err("app name 'all' is reserved: it means every app on the command line".into());
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "app name '{name}' is all digits, which would be read as an app id: add a letter"
        ));
    }
    Ok(())
}

/// Escapes one object-path component the way systemd does: `[A-Za-z0-9]` stay, every other byte
/// becomes `_xx` (lower-case hex), and a leading digit is escaped too.
#[must_use]
pub fn escape_path_component(s: &str) -> String {
    use std::fmt::Write as _;
    if s.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "_{b:02x}");
        }
    }
    out
}

/// Object path of the app called `name`.
///
/// # Panics
/// Never: the escaped component is always a valid path element.
#[must_use]
pub fn app_path(name: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{APP_PATH_PREFIX}/{}", escape_path_component(name)))
        .expect("escaped component is a valid object path element")
}

/// Object path of instance `instance` of the app called `name`: the app's path for instance 0,
/// the path of `name:N` (escaped) for the others.
#[must_use]
pub fn instance_path(name: &str, instance: u32) -> OwnedObjectPath {
    if instance == 0 {
        app_path(name)
    } else {
        app_path(&format!("{name}:{instance}"))
    }
}

/// `500ms`, `5s`, `1m`, `2h`; a bare number is seconds. The one duration syntax of `turbo.yml`
/// and the CLI (`--wait-timeout`).
#[must_use]
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}

/// Interpreters chosen by a script's extension (`script: app.py` runs `python3 app.py`), as
/// PM2 does: the daemon resolves `script:` with it, and `turbo import pm2` keeps a `script:`
/// whose interpreter is this one.
pub const INTERPRETERS: &[(&str, &str)] = &[
    ("py", "python3"),
    ("js", "node"),
    ("mjs", "node"),
    ("cjs", "node"),
    ("ts", "ts-node"),
    ("sh", "sh"),
    ("bash", "bash"),
    ("rb", "ruby"),
    ("pl", "perl"),
    ("php", "php"),
];

/// `512mb`, `1gb`, `100k`, `4096` (bytes); units are powers of 1024. The one size syntax of
/// `turbo.yml` and the CLI (`--max-memory`).
#[must_use]
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a parsed non-negative size; fractions of a byte are dropped"
    )]
    Some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["api", "web-1", "a.b_c", "A9", "x1"] {
            assert_eq!(validate_app_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", ".hidden", "-x", "../etc", "a/b", "a b", "all", "42", "é",
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad}");
        }
        assert!(validate_app_name(&"a".repeat(65)).is_err());
        let e = validate_app_name(&"b".repeat(1 << 20)).unwrap_err();
        assert!(e.len() < 300 && e.contains("1048576 bytes"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512mb"), Some(512 << 20));
        assert_eq!(parse_size("1.5MB"), Some(1_572_864));
        assert_eq!(parse_size("1tb"), Some(1 << 40));
        assert_eq!(parse_size("100k"), Some(100 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12 parsecs"), None);
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_path_component("web-1"), "web_2d1");
        assert_eq!(escape_path_component("1a"), "_31a");
        assert_eq!(escape_path_component("a.b_c"), "a_2eb_5fc");
        assert_eq!(app_path("api").as_str(), "/org/turboprocess/Turbo1/app/api");
    }
}
