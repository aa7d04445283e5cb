//! Pure rendering of what the daemon returns: the status table, the `info` page, and the human
//! forms of sizes, durations and exits; and [`escape_controls`], the one function through which
//! every app-derived string (log lines, stderr tails, health output, `STATUS=` text, names and
//! paths from someone else's config) passes before it reaches a terminal or a pipe.
//!
//! Everything here is a function of its arguments: no environment, no terminal queries, no
//! clock. Whether to colour and how wide the terminal is are decided by `term` and passed in as
//! [`RenderOpts`], so the output can be unit-tested byte for byte with colour off.

use std::{borrow::Cow, collections::HashMap, fmt::Write as _};

use turbo_api::{AppState, AppStatus, DaemonInfo, ExitInfo, ExitReason, Health};

/// How to render: decided once per command from the terminal, then passed down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOpts {
    /// Emit ANSI colours.
    pub color: bool,
    /// Terminal width in columns; `None` means unlimited (not a terminal, width unknown).
    pub width: Option<usize>,
}

/// The ANSI attributes this CLI uses; one place so the palette stays small and consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Bold,
    Dim,
    Red,
    Green,
    Yellow,
    Cyan,
}

impl Tone {
    const fn sgr(self) -> &'static str {
        match self {
            Tone::Bold => "1",
            Tone::Dim => "2",
            Tone::Red => "31",
            Tone::Green => "32",
            Tone::Yellow => "33",
            Tone::Cyan => "36",
        }
    }
}

/// Wraps `text` in the escape codes of `tone` when `color` is on.
#[must_use]
pub fn paint(color: bool, tone: Tone, text: &str) -> String {
    if color {
        format!("\x1b[{}m{text}\x1b[0m", tone.sgr())
    } else {
        text.to_owned()
    }
}

/// `text` with its control characters made visible: `\n` and `\r` as those two characters,
/// other C0 controls and DEL as `\x1b`-style escapes, C1 controls (U+0080..U+009F, which some
/// terminals obey like ESC sequences) as `\u{9b}`. Tab is kept. Without this, a line an app
/// wrote could set the terminal title (OSC 0), clear the screen (CSI 2J), write the clipboard
/// (OSC 52) or fake the lines around it. Text without controls is returned as is.
#[must_use]
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let escaped = |c: char| c != '\t' && c.is_control();
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if escaped(c) && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if escaped(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Bytes an app wrote, as text for a terminal: invalid UTF-8 becomes U+FFFD, controls are
/// escaped as by [`escape_controls`].
#[must_use]
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape_controls(&String::from_utf8_lossy(bytes)).into_owned()
}

/// A JSON document made safe to print: DEL and the C1 controls, which JSON lets stand raw inside
/// strings (serde escapes only U+0000..U+001F), become `\u00XX` escapes. The value is the same
/// for any JSON reader; outside strings JSON has no such characters, so nothing else changes.
#[must_use]
pub fn json_safe(json: String) -> String {
    // DEL is the byte 0x7f and every C1 control starts with 0xc2 in UTF-8: a byte search rules
    // most documents out without decoding them (a status of 1000 apps is most of a megabyte)
    if memchr::memchr2(0x7f, 0xc2, json.as_bytes()).is_none()
        || !json.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c))
    {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// App names as a list for a sentence, each once, in the order first seen, with how many
/// instances when there were several: `api, cw (3 instances)` for `[api, cw, cw, cw]` (the daemon
/// names one entry per instance).
#[must_use]
pub fn fold_names(names: &[String]) -> String {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for name in names {
        match counted.iter_mut().find(|(seen, _)| *seen == name.as_str()) {
            Some((_, n)) => *n += 1,
            None => counted.push((name, 1)),
        }
    }
    counted
        .iter()
        .map(|&(name, n)| {
            let name = escape_controls(name);
            if n > 1 {
                format!("{name} ({n} instances)")
            } else {
                name.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The line shown instead of an empty table.
pub const NO_APPS: &str = "no apps; start one with `turbo start <script> --name <name>`";

/// Columns of the status table, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Id,
    Name,
    Group,
    State,
    Pid,
    Restarts,
    Cpu,
    Memory,
    Uptime,
    Health,
    LastExit,
}

impl Col {
    const ALL: [Col; 11] = [
        Col::Id,
        Col::Name,
        Col::Group,
        Col::State,
        Col::Pid,
        Col::Restarts,
        Col::Cpu,
        Col::Memory,
        Col::Uptime,
        Col::Health,
        Col::LastExit,
    ];
    /// Dropped first to last when the table does not fit: the least useful at a glance first.
    const DROP_ORDER: [Col; 5] = [Col::LastExit, Col::Health, Col::Group, Col::Cpu, Col::Pid];

    const fn header(self) -> &'static str {
        match self {
            Col::Id => "id",
            Col::Name => "name",
            Col::Group => "group",
            Col::State => "state",
            Col::Pid => "pid",
            Col::Restarts => "↺",
            Col::Cpu => "cpu",
            Col::Memory => "memory",
            Col::Uptime => "uptime",
            Col::Health => "health",
            Col::LastExit => "last exit",
        }
    }

    const fn numeric(self) -> bool {
        matches!(
            self,
            Col::Id | Col::Pid | Col::Restarts | Col::Cpu | Col::Memory | Col::Uptime
        )
    }

    /// The cell of `app` in this column; `name` is its label (see [`instance_labels`]).
    fn cell(self, app: &AppStatus, name: &str, color: bool) -> String {
        let running = app.pid != 0;
        match self {
            Col::Id => app.id.to_string(),
            // names are validated by the daemon; a state file from elsewhere may still hold anything
            Col::Name => escape_controls(name).into_owned(),
            Col::Group => dash_unless(!app.group.is_empty(), || {
                format!("@{}", escape_controls(&app.group))
            }),
            Col::State => state_cell(app, color),
            Col::Pid => dash_unless(running, || app.pid.to_string()),
            Col::Restarts => app.restarts.to_string(),
            Col::Cpu => dash_unless(running && app.cpu_percent >= 0.0, || {
                format!("{:.1}%", app.cpu_percent)
            }),
            Col::Memory => dash_unless(running && app.memory_bytes > 0, || {
                if app.memory_limit_bytes > 0 {
                    format!(
                        "{} / {}",
                        human_bytes(app.memory_bytes),
                        human_bytes(app.memory_limit_bytes)
                    )
                } else {
                    human_bytes(app.memory_bytes)
                }
            }),
            Col::Uptime => dash_unless(running, || human_duration_ms(app.uptime_ms)),
            Col::Health => health_cell(&app.health, color),
            Col::LastExit => last_exit_cell(&app.last_exit, color),
        }
    }
}

fn dash_unless(cond: bool, value: impl FnOnce() -> String) -> String {
    if cond { value() } else { "-".to_owned() }
}

/// The status table of `apps`, without a trailing newline. Columns that do not fit in
/// `opts.width` are dropped (last exit first, then cpu) rather than wrapping rows, because a
/// wrapped table is unreadable and the remaining columns are the ones people scan for.
#[must_use]
pub fn render_status(apps: &[AppStatus], opts: &RenderOpts) -> String {
    if apps.is_empty() {
        return NO_APPS.to_owned();
    }
    // instances of one app show as `name:N`
    let names = instance_labels(apps);
    // the group column only when some app has a group
    let grouped = apps.iter().any(|a| !a.group.is_empty());
    let cols: Vec<Col> = Col::ALL
        .into_iter()
        .filter(|c| *c != Col::Group || grouped)
        .collect();
    let mut grid = Grid::new(apps, &names, cols, opts.color);
    if let Some(width) = opts.width {
        for drop in Col::DROP_ORDER {
            if grid.total_width() <= width {
                break;
            }
            grid.drop_col(drop);
        }
        // still too wide: long names are cut (with "…"), down to MIN_NAME characters
        let longest = names
            .iter()
            .map(|name| name.chars().count())
            .max()
            .unwrap_or(0);
        let excess = grid.total_width().saturating_sub(width);
        if excess > 0 && longest > MIN_NAME {
            let keep = longest.saturating_sub(excess).max(MIN_NAME);
            let cut: Vec<String> = names.iter().map(|name| ellipsize(name, keep)).collect();
            grid.set_names(apps, &cut);
        }
    }
    grid.render()
}

/// Each app's name, with `:instance` when several instances of it are listed (the target
/// syntax that names one instance).
#[must_use]
pub fn instance_labels(apps: &[AppStatus]) -> Vec<String> {
    // counted once, not per app: comparing every name with every other was a quarter of the
    // CLI's time with 1000 apps (issue 21)
    let mut listed: HashMap<&str, usize> = HashMap::with_capacity(apps.len());
    for app in apps {
        *listed.entry(app.name.as_str()).or_default() += 1;
    }
    apps.iter()
        .map(|app| {
            if listed.get(app.name.as_str()).copied().unwrap_or(0) > 1 {
                format!("{}:{}", app.name, app.instance)
            } else {
                app.name.clone()
            }
        })
        .collect()
}

/// Names are never cut shorter than this, even if the table then overflows.
const MIN_NAME: usize = 8;

/// `text` cut to `max` characters, the last one being "…" when something was cut.
fn ellipsize(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The status table's cells, laid out borderless like docker's and kubectl's: columns two
/// spaces apart (so it greps and fits well), numbers right-aligned, no trailing blanks. Written
/// out here rather than drawn by a table crate: re-measuring every cell for colour codes was
/// most of the CLI's time for a table of 1,000 apps (issue 21), and this layout needs only
/// each cell's width, which is known when the cell is made.
struct Grid {
    cols: Vec<Col>,
    /// The header, then one row per app; `rows[r][c]` is the cell of `cols[c]`.
    rows: Vec<Vec<Cell>>,
}

/// A cell's text (colour codes included) and its width on a terminal (theirs excluded).
struct Cell {
    text: String,
    width: usize,
}

impl Cell {
    fn new(text: String) -> Self {
        let width = display_width(&text);
        Self { text, width }
    }
}

impl Grid {
    fn new(apps: &[AppStatus], names: &[String], cols: Vec<Col>, color: bool) -> Self {
        let mut rows = Vec::with_capacity(apps.len() + 1);
        rows.push(
            cols.iter()
                .map(|c| Cell::new(paint(color, Tone::Bold, c.header())))
                .collect(),
        );
        for (app, name) in apps.iter().zip(names) {
            rows.push(
                cols.iter()
                    .map(|c| Cell::new(c.cell(app, name, color)))
                    .collect(),
            );
        }
        Self { cols, rows }
    }

    /// Each column's width: its widest cell.
    fn widths(&self) -> Vec<usize> {
        let mut widths = vec![0; self.cols.len()];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.width);
            }
        }
        widths
    }

    /// The width of the widest line.
    fn total_width(&self) -> usize {
        self.widths().iter().sum::<usize>() + 2 * self.cols.len().saturating_sub(1)
    }

    /// Leaves out column `col`, if shown.
    fn drop_col(&mut self, col: Col) {
        if let Some(i) = self.cols.iter().position(|c| *c == col) {
            self.cols.remove(i);
            for row in &mut self.rows {
                row.remove(i);
            }
        }
    }

    /// Shows `names` in the name column (the header stays).
    fn set_names(&mut self, apps: &[AppStatus], names: &[String]) {
        if let Some(i) = self.cols.iter().position(|c| *c == Col::Name) {
            for ((row, app), name) in self.rows.iter_mut().skip(1).zip(apps).zip(names) {
                row[i] = Cell::new(Col::Name.cell(app, name, false));
            }
        }
    }

    fn render(&self) -> String {
        let widths = self.widths();
        let mut out = String::with_capacity(self.rows.len() * (widths.iter().sum::<usize>() + 32));
        for (r, row) in self.rows.iter().enumerate() {
            if r > 0 {
                out.push('\n');
            }
            let start = out.len();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = width - cell.width;
                if self.cols[i].numeric() {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(&cell.text);
                } else {
                    out.push_str(&cell.text);
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            let kept = out[start..].trim_end().len();
            out.truncate(start + kept);
        }
        out
    }
}

/// The width of `text` on a terminal: the colour codes [`paint`] adds take none.
fn display_width(text: &str) -> usize {
    use unicode_width::UnicodeWidthChar;
    let mut width = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // an SGR sequence, `ESC [ ... m`
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            width += c.width().unwrap_or(1);
        }
    }
    width
}

fn state_cell(app: &AppStatus, color: bool) -> String {
    let Ok(state) = app.state.parse::<AppState>() else {
        return format!("? {}", escape_controls(&app.state));
    };
    let (symbol, tone) = match state {
        AppState::Online => ("●", Tone::Green),
        AppState::Stopped => ("○", Tone::Dim),
        AppState::Backoff => ("↻", Tone::Yellow),
        AppState::Errored | AppState::Failed => ("✖", Tone::Red),
        AppState::Starting | AppState::Stopping | AppState::Waiting => ("…", Tone::Cyan),
        AppState::Completed => ("✓", Tone::Green),
    };
    let mut text = format!("{symbol} {state}");
    if state == AppState::Backoff && app.next_restart_in_ms > 0 {
        text.push_str(" in ");
        text.push_str(&human_delay_ms(app.next_restart_in_ms));
    }
    if state == AppState::Waiting && !app.waiting_for.is_empty() {
        // the names come from a config: no control sequences to the terminal
        text.push_str(" for ");
        text.push_str(&escape_controls(&app.waiting_for.join(", ")));
    }
    paint(color, tone, &text)
}

/// "-" without a health check; otherwise a symbol and the result.
fn health_cell(health: &str, color: bool) -> String {
    match health.parse::<Health>() {
        Ok(Health::None) => "-".to_owned(),
        Ok(Health::Healthy) => paint(color, Tone::Green, "✓ healthy"),
        Ok(Health::Unhealthy) => paint(color, Tone::Red, "✗ unhealthy"),
        Ok(Health::Unknown) => paint(color, Tone::Dim, "? unknown"),
        Err(_) => escape_controls(health).into_owned(),
    }
}

/// "exit 1", "signal 9 (ebpf)", "oom kill (ebpf)", ... or "-" when the app never exited.
/// The event source is shown for kernel-initiated deaths, where who noticed first matters.
#[must_use]
pub fn last_exit_text(exit: &ExitInfo) -> String {
    if exit.reason.is_empty() {
        return "-".to_owned();
    }
    let source = if exit.source.is_empty() {
        String::new()
    } else {
        format!(" ({})", escape_controls(&exit.source))
    };
    match exit.reason.parse::<ExitReason>() {
        Ok(ExitReason::Exit) if exit.code < 0 => "exit (status unknown)".to_owned(),
        Ok(ExitReason::Exit) => format!("exit {}", exit.code),
        Ok(ExitReason::Signal) => format!("signal {}{source}", exit.signal),
        Ok(ExitReason::OomKill) => format!("oom kill{source}"),
        Ok(ExitReason::MemoryLimit) => "memory limit".to_owned(),
        Ok(ExitReason::Health) => "health check".to_owned(),
        Ok(ExitReason::Watch) => "file change".to_owned(),
        Ok(ExitReason::PreStart) => "pre_start failed".to_owned(),
        // a stop that had to escalate says so: the app ignored its stop signal
        Ok(ExitReason::Manual) if exit.signal == 9 => "manual (SIGKILL)".to_owned(),
        Ok(ExitReason::Manual) => "manual".to_owned(),
        Err(_) => escape_controls(&exit.reason).into_owned(),
    }
}

fn last_exit_cell(exit: &ExitInfo, color: bool) -> String {
    let text = last_exit_text(exit);
    let tone = match exit.reason.parse::<ExitReason>() {
        Ok(ExitReason::Exit) if exit.code == 0 => None,
        Ok(ExitReason::Exit | ExitReason::Signal | ExitReason::OomKill | ExitReason::PreStart) => {
            Some(Tone::Red)
        }
        Ok(ExitReason::MemoryLimit | ExitReason::Health) => Some(Tone::Yellow),
        Ok(ExitReason::Watch | ExitReason::Manual) => Some(Tone::Dim),
        Err(_) => None,
    };
    match tone {
        Some(tone) if text != "-" => paint(color, tone, &text),
        _ => text,
    }
}

/// The `turbo info` page: aligned `key: value` lines, without a trailing newline.
#[must_use]
pub fn render_info(info: &DaemonInfo, metrics_url: &str, opts: &RenderOpts) -> String {
    let source_tone = if info.event_source == "ebpf" {
        Tone::Green
    } else {
        Tone::Yellow
    };
    let mut source = paint(
        opts.color,
        source_tone,
        &escape_controls(&info.event_source),
    );
    if !info.event_source_reason.is_empty() {
        source.push_str(" — ");
        source.push_str(&escape_controls(&info.event_source_reason));
    }
    let programs = if info.ebpf_programs.is_empty() {
        "-".to_owned()
    } else {
        info.ebpf_programs.join(", ")
    };
    let metrics = if info.metrics_address.is_empty() {
        let why = if info.metrics_off_reason.is_empty() {
            "unknown"
        } else {
            &info.metrics_off_reason
        };
        paint(opts.color, Tone::Yellow, &format!("off — {why}"))
    } else {
        metrics_url.to_owned()
    };
    let state = if info.state_error.is_empty() {
        "saved".to_owned()
    } else {
        format!("NOT SAVED — {}", info.state_error)
    };
    let rows: [(&str, String); 15] = [
        ("version", info.version.clone()),
        ("pid", info.pid.to_string()),
        ("mode", info.mode.clone()),
        ("bus", info.bus_address.clone()),
        ("home", info.home.clone()),
        ("logs", info.log_dir.clone()),
        ("event source", source),
        ("ebpf setting", info.ebpf_setting.clone()),
        ("ebpf programs", programs),
        ("ebpf exit events", info.ebpf_exit_events.to_string()),
        ("lost events", info.events_lost.to_string()),
        ("uptime", human_duration_ms(info.uptime_ms)),
        ("apps", info.apps.to_string()),
        ("metrics", metrics),
        ("state", state),
    ];
    let key_width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| {
            let key = format!("{k}:");
            let key = format!("{key:<key_width$}");
            // the event source is painted (and escaped) above; the rest is the daemon's text
            let value = match v.as_str() {
                "" => Cow::Borrowed("-"),
                v if *k == "event source" => Cow::Borrowed(v),
                v => escape_controls(v),
            };
            format!("{} {value}", paint(opts.color, Tone::Dim, &key))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sizes in binary units (like `max_memory: 512mb` in turbo.yml): "512 B", "12.4 MB", "1.5 GB".
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // f64 is exact enough for display: we print at most 3 significant digits
    #[expect(
        clippy::cast_precision_loss,
        reason = "display only, 3 significant digits"
    )]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 99.95 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Coarse durations for uptimes: "3s", "5m", "2h 3m", "4d". Precision drops as the number
/// grows because nobody cares about the seconds of a four-day uptime.
#[must_use]
pub fn human_duration_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    if secs < 60 {
        format!("{secs}s")
    } else if mins < 60 {
        format!("{mins}m")
    } else if hours < 24 {
        match mins % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h {m}m"),
        }
    } else {
        format!("{days}d")
    }
}

/// Short delays (restart backoff) keep a decimal below ten seconds: "0.8s", "2.5s", "12s".
#[must_use]
pub fn human_delay_ms(ms: u64) -> String {
    if ms < 10_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else {
        human_duration_ms(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: RenderOpts = RenderOpts {
        color: false,
        width: None,
    };

    fn app(id: u32, name: &str, state: &str) -> AppStatus {
        AppStatus {
            id,
            name: name.into(),
            state: state.into(),
            health: "none".into(),
            cpu_percent: -1.0,
            ..AppStatus::default()
        }
    }

    fn online(id: u32, name: &str) -> AppStatus {
        AppStatus {
            pid: 4242,
            uptime_ms: 125_000,
            cpu_percent: 0.34,
            memory_bytes: 13_002_342,
            ..app(id, name, "online")
        }
    }

    fn sample() -> Vec<AppStatus> {
        vec![
            online(0, "api"),
            AppStatus {
                restarts: 3,
                next_restart_in_ms: 800,
                last_exit: ExitInfo {
                    code: -1,
                    signal: 9,
                    reason: "signal".into(),
                    at_ms: 1,
                    source: "ebpf".into(),
                },
                ..app(1, "worker", "backoff")
            },
            AppStatus {
                last_exit: ExitInfo {
                    code: 1,
                    signal: 0,
                    reason: "exit".into(),
                    at_ms: 1,
                    source: "procfs".into(),
                },
                ..app(2, "cron", "errored")
            },
            app(3, "idle", "stopped"),
            app(4, "boot", "starting"),
        ]
    }

    fn row<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in\n{text}"))
    }

    #[test]
    fn table_shows_symbols_values_and_placeholders() {
        let text = render_status(&sample(), &PLAIN);
        let header = text.lines().next().unwrap();
        for h in [
            "id",
            "name",
            "state",
            "pid",
            "↺",
            "cpu",
            "memory",
            "uptime",
            "last exit",
        ] {
            assert!(header.contains(h), "{header}");
        }
        let api = row(&text, "api");
        assert!(api.contains("● online"), "{api}");
        assert!(api.contains("4242") && api.contains("0.3%") && api.contains("12.4 MB"));
        assert!(api.contains("2m"), "{api}");
        assert!(api.trim_end().ends_with('-'), "never exited: {api}");

        let worker = row(&text, "worker");
        assert!(worker.contains("↻ backoff in 0.8s"), "{worker}");
        assert!(worker.contains("signal 9 (ebpf)"), "{worker}");
        // not running: pid, cpu, memory and uptime are all placeholders, and no health check
        assert_eq!(worker.matches(" - ").count(), 5, "{worker}");

        assert!(row(&text, "cron").contains("✖ errored"));
        assert!(row(&text, "cron").contains("exit 1"));
        assert!(row(&text, "idle").contains("○ stopped"));
        assert!(row(&text, "boot").contains("… starting"));
        assert!(!text.contains('\x1b'), "no colour when off");
        assert!(
            text.lines().all(|l| l == l.trim_end()),
            "no trailing blanks"
        );
    }

    #[test]
    fn narrow_terminals_drop_last_exit_then_cpu() {
        let apps = sample();
        let full = render_status(&apps, &PLAIN);
        let full_width = full.lines().map(|l| l.chars().count()).max().unwrap();
        let fits = |text: &str, width: usize| text.lines().all(|l| l.chars().count() <= width);

        let same = render_status(
            &apps,
            &RenderOpts {
                width: Some(full_width),
                ..PLAIN
            },
        );
        assert_eq!(same, full);

        let narrower = render_status(
            &apps,
            &RenderOpts {
                width: Some(full_width - 1),
                ..PLAIN
            },
        );
        let header = narrower.lines().next().unwrap();
        assert!(
            !header.contains("last exit") && header.contains("cpu"),
            "{header}"
        );
        assert!(fits(&narrower, full_width - 1));

        let narrow = render_status(
            &apps,
            &RenderOpts {
                width: Some(50),
                ..PLAIN
            },
        );
        let header = narrow.lines().next().unwrap();
        assert!(
            !header.contains("last exit") && !header.contains("cpu"),
            "{header}"
        );
        assert!(
            header.contains("memory") && header.contains("uptime"),
            "{header}"
        );
    }

    #[test]
    fn health_column() {
        let mut a = online(0, "api");
        let text = render_status(std::slice::from_ref(&a), &PLAIN);
        assert!(text.lines().next().unwrap().contains("health"), "{text}");
        assert!(
            row(&text, "api").contains("2m  -"),
            "no check: a dash: {text}"
        );
        a.health = "unhealthy".into();
        assert!(render_status(std::slice::from_ref(&a), &PLAIN).contains("✗ unhealthy"));
        a.health = "healthy".into();
        assert!(render_status(&[a], &PLAIN).contains("✓ healthy"));
    }

    #[test]
    fn very_narrow_terminals_cut_long_names() {
        let apps = [online(0, "a-rather-long-application-name"), online(1, "db")];
        let text = render_status(
            &apps,
            &RenderOpts {
                width: Some(50),
                ..PLAIN
            },
        );
        assert!(text.lines().all(|l| l.chars().count() <= 50), "{text}");
        assert!(text.contains("a-rather-long-a…"), "{text}");
        assert!(row(&text, "db").contains("● online"), "{text}");
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abc", 4), "abc");
    }

    #[test]
    fn instances_of_one_app_are_labelled_name_colon_n() {
        let mut apps = vec![online(0, "api"), online(1, "cw"), online(2, "db")];
        apps.push(AppStatus {
            instance: 1,
            ..online(3, "cw")
        });
        assert_eq!(instance_labels(&apps), ["api", "cw:0", "db", "cw:1"]);
        let text = render_status(&apps, &PLAIN);
        assert_eq!(row(&text, "cw:1").split_whitespace().next(), Some("3"));
        assert_eq!(row(&text, "api").split_whitespace().next(), Some("0"));
        let many: Vec<AppStatus> = (0..1000).map(|i| online(i, &format!("s{i:04}"))).collect();
        let labels = instance_labels(&many);
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels[999], "s0999");
    }
    #[test]
    fn colour_wraps_state_and_header() {
        let text = render_status(
            &[online(0, "api")],
            &RenderOpts {
                color: true,
                width: None,
            },
        );
        assert!(text.contains("\x1b[32m● online\x1b[0m"), "{text:?}");
        assert!(text.contains("\x1b[1mname\x1b[0m"), "{text:?}");
    }

    #[test]
    fn empty_list_is_a_friendly_line() {
        assert_eq!(render_status(&[], &PLAIN), NO_APPS);
    }

    #[test]
    fn memory_shows_the_limit_when_set() {
        let a = AppStatus {
            memory_limit_bytes: 512 * 1024 * 1024,
            ..online(0, "api")
        };
        assert!(render_status(&[a], &PLAIN).contains("12.4 MB / 512 MB"));
    }

    #[test]
    fn exits() {
        let exit = |code, signal, reason: &str, source: &str| ExitInfo {
            code,
            signal,
            reason: reason.into(),
            at_ms: 0,
            source: source.into(),
        };
        assert_eq!(last_exit_text(&ExitInfo::default()), "-");
        assert_eq!(
            last_exit_text(&exit(-1, 9, "signal", "ebpf")),
            "signal 9 (ebpf)"
        );
        assert_eq!(last_exit_text(&exit(1, 0, "exit", "ebpf")), "exit 1");
        assert_eq!(
            last_exit_text(&exit(-1, 9, "oom_kill", "ebpf")),
            "oom kill (ebpf)"
        );
        assert_eq!(last_exit_text(&exit(-1, 15, "manual", "")), "manual");
        assert_eq!(
            last_exit_text(&exit(0, 0, "future_reason", "")),
            "future_reason"
        );
    }

    #[test]
    fn unknown_state_is_shown_not_hidden() {
        assert!(render_status(&[app(0, "x", "paused")], &PLAIN).contains("? paused"));
    }

    #[test]
    fn control_characters_become_visible() {
        assert!(matches!(escape_controls("plain\ttext é"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("\u{1b}]0;t\u{7}\u{1b}[2J\r\n\u{0}\u{7f}\u{9b}x"),
            r"\x1b]0;t\x07\x1b[2J\r\n\x00\x7f\u{9b}x"
        );
        assert_eq!(escape_bytes(b"\xff\x1b"), "\u{FFFD}\\x1b");
        // once escaped, nothing is left to escape
        let once = escape_controls("\u{1b}[31m").into_owned();
        assert_eq!(escape_controls(&once), once);
        let json = json_safe(serde_json::json!({"l": "\u{1b}\u{7f}\u{85}é"}).to_string());
        assert_eq!(json, r#"{"l":"\u001b\u007f\u0085é"}"#);
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["l"], "\u{1b}\u{7f}\u{85}é");
        // each alone is found; a character sharing the C1 lead byte (° is c2 b0) stays
        assert_eq!(json_safe("\"\u{85}\"".into()), r#""\u0085""#);
        assert_eq!(json_safe("\"\u{7f}\"".into()), r#""\u007f""#);
        assert_eq!(json_safe("\"20°\"".into()), "\"20°\"");
        let mut hostile = online(0, "api");
        hostile.state = "\u{1b}[2Jonline".into();
        let table = render_status(&[hostile], &PLAIN);
        assert!(table.contains(r"? \x1b[2Jonline"), "{table}");
    }

    #[test]
    fn names_are_folded() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(fold_names(&names(&["cw", "cw", "cw"])), "cw (3 instances)");
        assert_eq!(
            fold_names(&names(&["a", "cw", "b", "cw"])),
            "a, cw (2 instances), b"
        );
        assert_eq!(fold_names(&names(&["a"])), "a");
        assert_eq!(fold_names(&[]), "");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KB");
        assert_eq!(human_bytes(13_002_342), "12.4 MB");
        assert_eq!(human_bytes(512 * 1024 * 1024), "512 MB");
        assert_eq!(human_bytes(1536 * 1024 * 1024), "1.5 GB");
        assert_eq!(human_bytes(u64::MAX), "16384 PB");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration_ms(0), "0s");
        assert_eq!(human_duration_ms(3_999), "3s");
        assert_eq!(human_duration_ms(300_000), "5m");
        assert_eq!(human_duration_ms(7_380_000), "2h 3m");
        assert_eq!(human_duration_ms(7_200_000), "2h");
        assert_eq!(human_duration_ms(4 * 86_400_000 + 1), "4d");
        assert_eq!(human_delay_ms(800), "0.8s");
        assert_eq!(human_delay_ms(2_550), "2.5s");
        assert_eq!(human_delay_ms(12_000), "12s");
    }

    #[test]
    fn info_page() {
        let info = DaemonInfo {
            version: "0.1.0".into(),
            pid: 7,
            mode: "user".into(),
            event_source: "procfs".into(),
            event_source_reason: "eBPF disabled by TURBO_EBPF=off".into(),
            uptime_ms: 65_000,
            apps: 2,
            ..DaemonInfo::default()
        };
        let text = render_info(&info, "", &PLAIN);
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{key}:")))
                .unwrap_or_else(|| panic!("no {key} in\n{text}"))
                .to_owned()
        };
        assert!(line("version").ends_with(" 0.1.0"));
        assert!(line("event source").ends_with("procfs — eBPF disabled by TURBO_EBPF=off"));
        assert!(line("ebpf programs").ends_with(" -"));
        assert!(line("uptime").ends_with(" 1m"));
        assert!(line("apps").ends_with(" 2"));
        assert!(line("state").ends_with(" saved"));
        let failing = DaemonInfo {
            state_error: "cannot write /h/state.json: No space left on device".into(),
            ..info.clone()
        };
        let text = render_info(&failing, "", &PLAIN);
        assert!(
            text.contains("state:            NOT SAVED — cannot write /h/state.json: No space"),
            "{text}"
        );
        // values line up in one column, after the longest key
        let column = "ebpf exit events: ".len();
        for l in text.lines() {
            assert_eq!(&l[column - 1..column], " ", "{l}");
            assert_ne!(&l[column..=column], " ", "{l}");
        }
        assert!(!text.ends_with('\n'));
    }

    fn wide_sample() -> Vec<AppStatus> {
        let mut apps = sample();
        apps.push(AppStatus {
            group: "web".into(),
            name: "名前\tx".into(),
            ..online(9, "x")
        });
        apps.push(AppStatus {
            memory_limit_bytes: 1 << 30,
            instance: 2,
            ..online(10, "api")
        });
        apps
    }

    #[test]
    fn the_table_is_laid_out_byte_for_byte() {
        // the layout tabled drew before the table was written out here (issue 21): two spaces
        // between columns, numbers (headers too) right-aligned, wide characters counted twice
        let want = concat!(
            "id  name    group  state               pid  ↺   cpu            memory  uptime  health  last exit\n",
            " 0  api:0   -      ● online           4242  0  0.3%           12.4 MB      2m  -       -\n",
            " 1  worker  -      ↻ backoff in 0.8s     -  3     -                 -       -  -       signal 9 (ebpf)\n",
            " 2  cron    -      ✖ errored             -  0     -                 -       -  -       exit 1\n",
            " 3  idle    -      ○ stopped             -  0     -                 -       -  -       -\n",
            " 4  boot    -      … starting            -  0     -                 -       -  -       -\n",
            " 9  名前\tx  @web   ● online           4242  0  0.3%           12.4 MB      2m  -       -\n",
            "10  api:2   -      ● online           4242  0  0.3%  12.4 MB / 1.0 GB      2m  -       -",
        );
        assert_eq!(render_status(&wide_sample(), &PLAIN), want);
    }

    #[test]
    fn colour_codes_take_no_width() {
        let strip = |text: &str| {
            let mut out = String::new();
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    chars.by_ref().find(|&c| c == 'm');
                } else {
                    out.push(c);
                }
            }
            out
        };
        for width in [None, Some(90), Some(50)] {
            let plain = render_status(&wide_sample(), &RenderOpts { width, ..PLAIN });
            let colour = render_status(&wide_sample(), &RenderOpts { color: true, width });
            assert!(colour.contains('\x1b'));
            assert_eq!(strip(&colour), plain, "{width:?}");
        }
    }
}
