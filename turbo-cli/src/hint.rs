//! Errors that carry a suggestion, cargo-style: what went wrong (and where) in the message, what
//! to try in the help.
//!
//! `main` prints them: on a terminal as `error: <message>` and a `help: <hint>` line below it;
//! otherwise as the single line `error: <message>; help: <hint>`, because scripts read the first
//! line of stderr (DESIGN §6) and must get the whole story from it. This module only builds and
//! formats; it must not decide what to suggest (the commands know that) and does no I/O.

use std::fmt;

/// An error and what to try about it.
#[derive(Debug)]
pub struct Hinted {
    error: anyhow::Error,
    /// The suggestion: an imperative sentence, commands in backticks.
    pub help: String,
}

impl Hinted {
    /// A new error with a hint.
    pub fn new(message: impl Into<String>, help: impl Into<String>) -> Self {
        Self {
            error: anyhow::Error::msg(message.into()),
            help: help.into(),
        }
    }

    /// `error` with a hint added; as an `anyhow::Error`, ready for `?`.
    pub fn wrap(error: anyhow::Error, help: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self {
            error,
            help: help.into(),
        })
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

// no `source()`: the wrapped error is part of this one's message, and `{:#}` of a chain would
// print it twice
impl std::error::Error for Hinted {}

/// The hint of the first [`Hinted`] in `err`'s chain.
#[must_use]
pub fn help_of(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|e| e.downcast_ref::<Hinted>())
        .map(|h| h.help.as_str())
}

/// The lines `main` prints for an error: `(first line, help line)` on a terminal, or one line.
#[must_use]
pub fn format_error(message: &str, help: Option<&str>, terminal: bool, color: bool) -> String {
    let label = |text: &str, sgr: &str| {
        if color {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    let error = label("error:", "1;31");
    match help {
        Some(help) if terminal => format!("{error} {message}\n{} {help}", label("help:", "1;36")),
        Some(help) => format!("{error} {message}; help: {help}"),
        None => format!("{error} {message}"),
    }
}

/// The entry of `names` closest to `wanted`, if one is close enough to be a likely typo: an edit
/// distance of at most a third of the length (at least 1), or one being a prefix of the other.
#[must_use]
pub fn did_you_mean<'a>(wanted: &str, names: &'a [String]) -> Option<&'a str> {
    let wanted_lc = wanted.to_lowercase();
    let limit = (wanted.chars().count() / 3).max(1);
    names
        .iter()
        .filter(|n| n.as_str() != wanted)
        .filter_map(|n| {
            let lc = n.to_lowercase();
            let d = distance(&wanted_lc, &lc);
            let prefix =
                wanted_lc.len() >= 2 && (lc.starts_with(&wanted_lc) || wanted_lc.starts_with(&lc));
            (d <= limit || prefix).then_some((d, n.as_str()))
        })
        .min_by_key(|(d, n)| (*d, n.len()))
        .map(|(_, n)| n)
}

/// Edit distance over chars where swapping two neighbours counts as one edit (optimal string
/// alignment), since transposed letters are the commonest typo.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn terminal_gets_two_lines_scripts_one() {
        assert_eq!(
            format_error("no app 'x'", Some("try `turbo status`"), true, false),
            "error: no app 'x'\nhelp: try `turbo status`"
        );
        assert_eq!(
            format_error("no app 'x'", Some("try `turbo status`"), false, false),
            "error: no app 'x'; help: try `turbo status`"
        );
        assert_eq!(format_error("boom", None, true, false), "error: boom");
        assert!(format_error("boom", Some("h"), true, true).contains("\x1b[1;36mhelp:\x1b[0m"));
    }

    #[test]
    fn the_hint_survives_context() {
        let err = Hinted::wrap(anyhow::anyhow!("inner"), "do this");
        let err = Err::<(), _>(err).context("outer").unwrap_err();
        assert_eq!(help_of(&err), Some("do this"));
        assert_eq!(format!("{err:#}"), "outer: inner", "no duplicated message");
        assert_eq!(help_of(&anyhow::anyhow!("plain")), None);
    }

    #[test]
    fn suggestions() {
        let names: Vec<String> = ["web", "worker", "ticker", "api-gateway"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(did_you_mean("wbe", &names), Some("web"));
        assert_eq!(did_you_mean("tickr", &names), Some("ticker"));
        assert_eq!(did_you_mean("api", &names), Some("api-gateway"));
        assert_eq!(did_you_mean("Worker", &names), Some("worker"));
        assert_eq!(did_you_mean("database", &names), None);
        assert_eq!(
            did_you_mean("web", &names),
            None,
            "an exact name is not a typo"
        );
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("wbe", "web"), 1);
    }
}
