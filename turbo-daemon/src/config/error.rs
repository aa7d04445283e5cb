//! What is wrong with a config, as data: every [`Problem`] found, each with its place (file,
//! line and column, app, key path), what is wrong and what to do.
//!
//! `Display` gives one line per problem, as users and the e2e tests read them:
//! `turbo.yml:5:12: apps[0] (web): restart.delay -1 is negative: use a duration like 500ms, 5s,
//! 1m or 2h`. A line break inside a quoted value is escaped, so a problem never takes two lines.

use std::fmt;

use super::locate::{Locations, Pos};
use crate::access::AccessError;

/// Why a config (a `turbo.yml` or the options of a start call) was refused: every problem
/// found, in document order, at least one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems.
    pub problems: Vec<Problem>,
}

/// One problem: where it is, what is wrong, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The document it was found in (`turbo.yml`); `None` for the options of a start call.
    pub file: Option<String>,
    /// Line and column (1-based, in characters) of the value at fault, when known.
    pub pos: Option<Pos>,
    /// The app it concerns, as messages name it (`apps[1] (web)`); `None` for the document as
    /// a whole and for start options.
    pub app: Option<String>,
    /// Key path of the value at fault: `apps[1].restart.delay` in a document, `restart.delay`
    /// within an app while it is validated; empty for the whole.
    pub field: String,
    /// What is wrong (`restart.delay -1 is negative`).
    pub message: String,
    /// What to do (`use a duration like 500ms, 5s, 1m or 2h`), when there is more to say.
    pub hint: Option<String>,
}

impl Problem {
    /// A problem with the value at `field`, without a place yet.
    pub(super) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Fault::new(message).at(field)
    }

    /// With what to do about it.
    #[must_use]
    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// What is wrong with one value and what to do, from a helper that does not know where the
/// value sits: [`Fault::at`] makes it a [`Problem`].
#[derive(Debug)]
pub(super) struct Fault {
    message: String,
    hint: Option<String>,
}

impl Fault {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    #[must_use]
    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The problem of the value at `field`.
    pub(super) fn at(self, field: impl Into<String>) -> Problem {
        Problem {
            file: None,
            pos: None,
            app: None,
            field: field.into(),
            message: self.message,
            hint: self.hint,
        }
    }

    /// The same fault, its message behind `prefix` (`health.cmd: `).
    #[must_use]
    pub(super) fn prefixed(mut self, prefix: &str) -> Self {
        self.message.insert_str(0, prefix);
        self
    }
}

/// `message: hint`, as it reads inside a problem's line.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.hint {
            Some(hint) => write!(f, ": {hint}"),
            None => Ok(()),
        }
    }
}

/// A fault whose message is all there is (a check shared with the D-Bus adapter).
impl From<String> for Fault {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        if let Some(file) = &self.file {
            line.push_str(file);
            if let Some(pos) = self.pos {
                line.push_str(&format!(":{}:{}", pos.line, pos.col));
            }
            line.push_str(": ");
        }
        if let Some(app) = &self.app {
            line.push_str(app);
            line.push_str(": ");
        }
        line.push_str(&self.message);
        if let Some(hint) = &self.hint {
            line.push_str(": ");
            line.push_str(hint);
        }
        f.write_str(&one_line(&line))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl From<Problem> for ConfigError {
    fn from(p: Problem) -> Self {
        Self { problems: vec![p] }
    }
}

/// A caller that cannot be given apps, or whose check could not run: one problem without a
/// place.
impl From<AccessError> for ConfigError {
    fn from(e: AccessError) -> Self {
        Problem::new("", e.to_string()).into()
    }
}

impl ConfigError {
    /// Places the problems of a document: `origin` as their file, and each at the position of
    /// its value in `content` (or of the nearest enclosing value that has one).
    pub(super) fn in_document(mut problems: Vec<Problem>, origin: &str, content: &str) -> Self {
        let locations = Locations::parse(content);
        for p in &mut problems {
            p.file = Some(origin.to_owned());
            p.pos = locations.find(&p.field);
        }
        Self { problems }
    }

    /// Problems without a position (serde read the document from values, not text) placed at
    /// their key path in `content`.
    pub(super) fn placed(mut self, content: &str) -> Self {
        let locations = Locations::parse(content);
        for p in self.problems.iter_mut().filter(|p| p.pos.is_none()) {
            p.pos = locations.find(&p.field);
        }
        self
    }

    /// The problem of a document that serde_yaml_ng refused (bad YAML, an unknown key, a wrong
    /// type, a missing key): its own position, and a hint where one helps.
    pub(super) fn from_yaml(e: &serde_yaml_ng::Error, origin: &str) -> Self {
        let mut message = e.to_string();
        let mut pos = None;
        if let Some(l) = e.location() {
            pos = Some(Pos {
                line: l.line(),
                col: l.column(),
            });
            // the position leads the line: no need to repeat it
            message = message.replacen(
                &format!(" at line {} column {}", l.line(), l.column()),
                "",
                1,
            );
        }
        // libyaml's own errors (syntax, encoding) are the only ones whose Debug form is a struct
        let syntax = format!("{e:?}").starts_with("Error {");
        let hint = if syntax {
            Some(
                "invalid YAML; check the indentation (spaces, not tabs), the `key: value` colons \
                 and that quotes and brackets are closed, here or on the line before",
            )
        } else if message.contains("missing field `apps`") {
            Some(
                "a turbo.yml is a mapping with an `apps:` list, like `apps: [{name: web, cmd: [node, server.js]}]`",
            )
        } else if message.contains("missing field `name`") {
            Some("give every app a `name:`")
        } else if message.contains("more than one document") {
            Some("put every app in one `apps:` list, without `---` between documents")
        } else {
            if message.contains("unknown field") {
                message.push_str(" (check the spelling and the indentation)");
            }
            None
        };
        // serde names the value at fault first: `apps[0].restart.factor: invalid type: ...`
        let field = message
            .split_once(": ")
            .map(|(path, _)| path)
            .filter(|path| path.starts_with("apps") && !path.contains(' '))
            .unwrap_or_default()
            .to_owned();
        let mut problem = Problem::new(field, message);
        problem.hint = hint.map(str::to_owned);
        problem.file = Some(origin.to_owned());
        problem.pos = pos;
        problem.into()
    }
}

/// Escapes line breaks (in a name or a value quoted in a message) so one problem stays one line.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\n' | '\r') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
