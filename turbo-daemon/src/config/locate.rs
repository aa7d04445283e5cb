//! Where each value of a `turbo.yml` sits, so that validation messages can say `file:line:col`.
//!
//! The document is parsed a second time with an event parser that keeps marks, and every value
//! is recorded under its key path (`apps`, `apps[1]`, `apps[1].restart.delay`). This is a
//! best-effort index for messages only: it never decides whether a document is valid (serde does
//! that), and a document it cannot read simply yields fewer positions.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span};

/// A 1-based line and column (in characters), as `serde_yaml_ng` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub col: usize,
}

impl Pos {
    fn start_of(span: Span) -> Self {
        Self {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// Positions of the values of the first document, by key path.
#[derive(Debug, Default)]
pub struct Locations {
    by_path: HashMap<String, Pos>,
}

/// A collection being read: its path and where the next child goes.
enum Frame {
    /// `key` is the key whose value comes next, with the key's own position; `None` while a key
    /// is expected.
    Map {
        path: String,
        key: Option<(String, Pos)>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

impl Frame {
    fn at(self, path: String) -> Self {
        match self {
            Self::Map { key, .. } => Self::Map { path, key },
            Self::Seq { next, .. } => Self::Seq { path, next },
        }
    }
}

impl Locations {
    /// Indexes `content`. Never fails: past a syntax error the index just stops.
    pub fn parse(content: &str) -> Self {
        let mut by_path = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for event in Parser::new_from_str(content) {
            let Ok((event, span)) = event else { break };
            let opens = match &event {
                Event::DocumentEnd => break,
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    continue;
                }
                Event::Scalar(..) | Event::Alias(_) => None,
                Event::MappingStart(..) => Some(Frame::Map {
                    path: String::new(),
                    key: None,
                }),
                Event::SequenceStart(..) => Some(Frame::Seq {
                    path: String::new(),
                    next: 0,
                }),
                _ => continue,
            };
            let mut pos = Pos::start_of(span);
            let path = match stack.last_mut() {
                None => String::new(),
                Some(Frame::Seq { path, next }) => {
                    *next += 1;
                    format!("{path}[{}]", *next - 1)
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some((name, key_pos)) => {
                        // an empty value (`delay:`) has no text of its own: point at its key
                        if span.is_empty() && opens.is_none() {
                            pos = key_pos;
                        }
                        join(path, &name)
                    }
                    None => {
                        // a key: remember it until its value arrives; a collection used as a
                        // key is read (its end must pop) but not indexed
                        let name = match &event {
                            Event::Scalar(text, ..) => text.to_string(),
                            _ => "?".to_owned(),
                        };
                        *key = Some((name, pos));
                        let ignored = join(path, "?");
                        if let Some(frame) = opens {
                            stack.push(frame.at(ignored));
                        }
                        continue;
                    }
                },
            };
            by_path.entry(path.clone()).or_insert(pos);
            if let Some(frame) = opens {
                stack.push(frame.at(path));
            }
        }
        Self { by_path }
    }

    /// The position of `path`, or else of its nearest ancestor that has one
    /// (`apps[1].restart.delay`, `apps[1].restart`, `apps[1]`, `apps`, the document).
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        loop {
            if let Some(pos) = self.by_path.get(path) {
                return Some(*pos);
            }
            if path.is_empty() {
                return None;
            }
            path = parent(path);
        }
    }
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `apps[1].restart` for `apps[1].restart.delay`, `apps` for `apps[1]`, the document (the
/// empty path) for `apps`.
fn parent(path: &str) -> &str {
    path.rfind(['.', '[']).map_or("", |i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, col: usize) -> Option<Pos> {
        Some(Pos { line, col })
    }

    #[test]
    fn block_style_values_and_items() {
        let yml = "apps:\n- name: a\n  cmd: [sleep, '1']\n  restart:\n    delay: -1\n  kill_timeout:\n- name: b\n";
        let l = Locations::parse(yml);
        // saphyr starts a block sequence written at its key's indentation after the first `- `
        assert_eq!(l.find("apps").map(|p| p.line), Some(2));
        assert_eq!(l.find("apps[0]"), at(2, 3));
        assert_eq!(l.find("apps[0].name"), at(2, 9));
        assert_eq!(l.find("apps[0].cmd"), at(3, 8));
        assert_eq!(l.find("apps[0].cmd[1]"), at(3, 16));
        assert_eq!(l.find("apps[0].restart"), at(5, 5));
        assert_eq!(l.find("apps[0].restart.delay"), at(5, 12));
        // an empty value points at its key
        assert_eq!(l.find("apps[0].kill_timeout"), at(6, 3));
        assert_eq!(l.find("apps[1].name"), at(7, 9));
    }

    #[test]
    fn flow_style_and_fallback_to_ancestors() {
        let l = Locations::parse("apps:\n  - {name: a, restart: {delay: 1}}\n");
        assert_eq!(l.find("apps[0]"), at(2, 5));
        assert_eq!(l.find("apps[0].restart.delay"), at(2, 32));
        assert_eq!(l.find("apps[0].restart.max_delay"), at(2, 24));
        assert_eq!(l.find("apps[0].log.keep"), at(2, 5));
        assert_eq!(l.find("apps[7]"), at(2, 3));
        assert_eq!(l.find("other"), at(1, 1));
    }

    #[test]
    fn broken_or_odd_documents_do_not_panic() {
        let l = Locations::parse("apps:\n  - name: a\n   bad: [\n");
        assert_eq!(l.find("apps[0].name"), at(2, 11));
        assert_eq!(Locations::parse("").find("apps"), None);
        let l = Locations::parse("? [a, b]\n: 1\nx: &y {k: 2}\nz: *y\n---\nw: 1\n");
        assert_eq!(l.find("z"), at(4, 4));
        assert_eq!(l.find("x.k"), at(3, 11));
        assert_eq!(l.find("w"), at(1, 1), "only the first document is indexed");
    }
}
