//! The Prometheus text exposition format (version 0.0.4), written straight into one buffer.
//!
//! A scrape is one pass over a snapshot: each family's `# HELP` and `# TYPE` lines, then its
//! samples, label values escaped once per app and copied into every line of that app. No
//! registry, no per-series hashing or sorting, no intermediate strings per line: with 1000 apps
//! a scrape is some 67,000 lines, and a recorder that stores each series under a hashed key
//! before rendering it spent most of a scrape's time doing so. This module knows the format
//! only; which families exist and what they hold is `metrics/mod.rs`'s.
//!
//! It must not be given two samples of one series (same name and labels): Prometheus rejects
//! such a scrape, and nothing here remembers what was written to catch it.

use std::fmt::Write as _;

/// A family's type (`# TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A sample's value: integers as integers, floats as Rust prints them (`1`, `0.25`,
/// `1700000000.5`; `NaN`, and `+Inf`/`-Inf` as the format spells them).
pub trait Value {
    /// Appends the value's text.
    fn write(self, out: &mut String);
}

impl Value for u64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write(self, out: &mut String) {
        if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// A label list, escaped once and copied into every sample that carries it
/// (`app="web",app_instance="0"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(String);

impl Labels {
    /// No labels.
    #[must_use]
    pub const fn new() -> Self {
        Self(String::new())
    }

    /// These labels and `key="value"` after them.
    #[must_use]
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.push(key, value);
        self
    }

    /// Appends `key="value"`.
    pub fn push(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(key);
        self.0.push_str("=\"");
        escape(&mut self.0, value, true);
        self.0.push('"');
    }
}

/// Appends `value` escaped for a label value (`\`, `"` and newlines) or a `# HELP` text
/// (`\` and newlines), as the format requires.
fn escape(out: &mut String, value: &str, quotes: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (quotes && c == '"');
    let mut rest = value;
    while let Some(at) = rest.find(special) {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or('\\');
        out.push_str(match c {
            '\n' => "\\n",
            '"' => "\\\"",
            _ => "\\\\",
        });
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
}

/// The exposition being written.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// An empty exposition with room for about `bytes`.
    #[must_use]
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
        }
    }

    /// Starts the family `name`; its `# HELP` and `# TYPE` lines are written with its first
    /// sample, so a family without samples leaves nothing behind.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) -> Family<'_> {
        Family {
            out: &mut self.out,
            name,
            kind,
            help,
            started: false,
        }
    }

    /// The text.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

/// One family's samples, written in a row (the format wants a family's samples together).
#[derive(Debug)]
pub struct Family<'t> {
    out: &'t mut String,
    name: &'static str,
    kind: Kind,
    help: &'static str,
    started: bool,
}

impl Family<'_> {
    /// One sample of the family: `name{labels,key="value"} value`.
    pub fn sample(&mut self, labels: &Labels, extra: Option<(&str, &str)>, value: impl Value) {
        self.line("", labels, extra, value);
    }

    /// One sample of a histogram's series: `name_suffix{labels,key="value"} value`
    /// (`bucket` with `le`, `sum`, `count`).
    pub fn line(
        &mut self,
        suffix: &str,
        labels: &Labels,
        extra: Option<(&str, &str)>,
        value: impl Value,
    ) {
        if !self.started {
            self.started = true;
            self.out.push_str("# HELP ");
            self.out.push_str(self.name);
            self.out.push(' ');
            escape(self.out, self.help, false);
            self.out.push_str("\n# TYPE ");
            self.out.push_str(self.name);
            self.out.push(' ');
            self.out.push_str(self.kind.as_str());
            self.out.push('\n');
        }
        self.out.push_str(self.name);
        if !suffix.is_empty() {
            self.out.push('_');
            self.out.push_str(suffix);
        }
        if !labels.0.is_empty() || extra.is_some() {
            self.out.push('{');
            self.out.push_str(&labels.0);
            if let Some((key, value)) = extra {
                if !labels.0.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape(self.out, value, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write(self.out);
        self.out.push('\n');
    }
}

impl Drop for Family<'_> {
    fn drop(&mut self) {
        // a blank line between families, for whoever reads the text
        if self.started {
            self.out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_with_escaped_labels_and_help() {
        let mut t = Text::default();
        let app = Labels::new()
            .with("app", "a \"q\" \\ b\nc")
            .with("app_instance", "0");
        {
            let mut f = t.family("x_total", Kind::Counter, "Counts\\things\nreally");
            f.sample(&app, Some(("reason", "exit")), 3u64);
            f.sample(&Labels::new(), None, 4u64);
        }
        t.family("unused", Kind::Gauge, "never written");
        {
            let mut f = t.family("h", Kind::Histogram, "h");
            f.line("bucket", &Labels::new(), Some(("le", "+Inf")), 2u64);
            f.line("sum", &Labels::new(), None, 0.5);
        }
        t.family("g", Kind::Gauge, "g")
            .sample(&Labels::new().with("v", "1"), None, f64::INFINITY);
        assert_eq!(
            t.finish(),
            "# HELP x_total Counts\\\\things\\nreally\n# TYPE x_total counter\n\
             x_total{app=\"a \\\"q\\\" \\\\ b\\nc\",app_instance=\"0\",reason=\"exit\"} 3\n\
             x_total 4\n\n\
             # HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\n\n\
             # HELP g g\n# TYPE g gauge\ng{v=\"1\"} +Inf\n\n"
        );
    }

    #[test]
    fn floats_and_integers_print_as_prometheus_reads_them() {
        let text = |v: f64| {
            let mut s = String::new();
            v.write(&mut s);
            s
        };
        assert_eq!(text(1.0), "1");
        assert_eq!(text(0.000_001), "0.000001");
        assert_eq!(text(1.7e9 + 0.5), "1700000000.5");
        assert_eq!(text(f64::NEG_INFINITY), "-Inf");
        assert_eq!(text(f64::NAN), "NaN");
        let mut s = String::new();
        u64::MAX.write(&mut s);
        assert_eq!(s, "18446744073709551615");
    }
}
