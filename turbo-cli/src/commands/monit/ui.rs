//! Drawing `turbo monit`: a pure function of the [`Model`] and the frame size.
//!
//! Top to bottom: a header line; the app table (state with symbol and colour, restarts, CPU and
//! memory with sparklines of their history, memory against `max_memory`, uptime; on a wide
//! terminal also, top-style, the time `cpu_max` throttled, pids against `pids_max`, the recent
//! run-queue delay p99 and the latest exec, from the kernel's view; drawn by `table`); the
//! selected app's details (memory gauge, larger sparklines) beside its crash timeline; its log lines; a
//! line of keys and the status message. Narrow or short terminals lose the least useful parts
//! first (sparkline columns, then the details row) instead of wrapping, so any size draws
//! cleanly. Nothing here does I/O; [`draw`] only records the log pane's height in the model, for
//! PgUp/PgDn. Tests draw into ratatui's `TestBackend` and read the buffer.

use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span, Text},
    widgets::{Block, Cell, LineGauge, Paragraph, Sparkline},
};
use turbo_api::{AppState, AppStatus};

use super::model::{LogLine, Model, Mood, Sample, Stream};

mod table;
use crate::render::{
    NO_APPS, escape_controls, human_bytes, human_delay_ms, human_duration_ms, last_exit_text,
};

/// Colours on or off (`NO_COLOR`, `TERM=dumb`); without them selection and emphasis still show
/// through bold and reverse video.
#[derive(Clone, Copy, Debug)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }
}

/// The keys, as the footer lists them.
pub const KEYS: &str =
    "↑↓ select  r restart  s stop  S start  l logs  / filter  PgUp/PgDn scroll  q quit";
/// The same for narrow terminals.
const KEYS_SHORT: &str = "↑↓ r restart s stop S start l logs / filter q quit";

/// Below this width the table loses its sparkline columns.
const WIDE: u16 = 100;
/// Below this height the details row goes.
const TALL: u16 = 24;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, model: &mut Model, theme: Theme) {
    let area = frame.area();
    let visible_rows = u16::try_from(model.visible().len().max(1)).unwrap_or(u16::MAX);
    // the table takes what its rows need, up to 40% of the screen
    let table_height = (visible_rows + 3).min((area.height * 2 / 5).max(4));
    let details_height = if area.height >= TALL { 11 } else { 0 };
    let [header, table, details, logs, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_height),
        Constraint::Length(details_height),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, model, theme);
    table::draw_table(frame, table, model, theme);
    if details_height > 0 {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
                .areas(details);
        draw_details(frame, left, model, theme);
        draw_crashes(frame, right, model, theme);
    }
    draw_logs(frame, logs, model, theme);
    draw_footer(frame, footer, model, theme);
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, model: &Model, theme: Theme) {
    let mut spans = vec![Span::styled(
        " TurboProcess monit ",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let n = model.apps.len();
    spans.push(Span::raw(format!(
        " {n} {} ",
        if n == 1 { "app" } else { "apps" }
    )));
    for state in AppState::ALL {
        let count = model
            .apps
            .iter()
            .filter(|a| a.state == state.as_str())
            .count();
        if count > 0 {
            let (symbol, color) = state_look(*state);
            spans.push(Span::styled(
                format!(" {count} {symbol} {state} "),
                theme.fg(color),
            ));
        }
    }
    let left = Line::from(spans);
    let right = Line::from(Span::styled(format!("{} ", model.daemon), theme.dim()))
        .alignment(Alignment::Right);
    frame.render_widget(Paragraph::new(left), area);
    frame.render_widget(Paragraph::new(right), area);
}

/// Symbol and colour of a state: the same symbols as `turbo status`.
fn state_look(state: AppState) -> (&'static str, Color) {
    match state {
        AppState::Online => ("●", Color::Green),
        AppState::Stopped => ("○", Color::DarkGray),
        AppState::Backoff => ("↻", Color::Yellow),
        AppState::Errored | AppState::Failed => ("✖", Color::Red),
        AppState::Starting | AppState::Stopping | AppState::Waiting => ("…", Color::Cyan),
        AppState::Completed => ("✓", Color::Green),
    }
}

fn state_cell(app: &AppStatus, theme: Theme) -> Cell<'static> {
    let Ok(state) = app.state.parse::<AppState>() else {
        return Cell::from(format!("? {}", app.state));
    };
    let (symbol, color) = state_look(state);
    let mut text = format!("{symbol} {state}");
    if state == AppState::Backoff && app.next_restart_in_ms > 0 {
        text.push(' ');
        text.push_str(&human_delay_ms(app.next_restart_in_ms));
    }
    Cell::from(text).style(theme.fg(color))
}

/// Eight levels of block characters; a gap where there is no value.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// How a sparkline maps values to bar heights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// CPU (tenths of a percent): from 0 to the peak, but at least to 10%, so that an idle app
    /// at 0.1% draws a flat line instead of full bars.
    Cpu,
    /// Memory (bytes): the values' range when it is wide (a leak, a spike); values that vary by
    /// less than a tenth of their maximum sit in a band of that tenth around their middle, so a
    /// steady curve is a level line with small wiggles and noise is not blown up to full height.
    Memory,
}

impl Scale {
    /// The `(floor, range)` the bars of `values` span; `range` is never 0.
    fn of(self, values: &[Option<u64>]) -> (u64, u64) {
        let max = values.iter().flatten().copied().max().unwrap_or(0);
        let min = values.iter().flatten().copied().min().unwrap_or(0);
        match self {
            Scale::Cpu => (0, max.max(100)),
            Scale::Memory if max - min >= (max / 10).max(1) => (min, max - min),
            Scale::Memory => {
                let band = (max / 10).max(2);
                (min.midpoint(max).saturating_sub(band / 2), band)
            }
        }
    }
}

/// A one-line sparkline of the last `width` values, right-aligned so that the newest value is
/// always at the right edge; a gap where a value is missing (the app was not running).
#[must_use]
pub fn spark_text(values: &[Option<u64>], width: usize, scale: Scale) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    let (floor, range) = scale.of(shown);
    let mut out = " ".repeat(width - shown.len());
    for v in shown {
        out.push(match v {
            None => ' ',
            Some(v) => {
                let level = u128::from(v.saturating_sub(floor).min(range)) * 7 / u128::from(range);
                BARS[usize::try_from(level).unwrap_or(7).min(7)]
            }
        });
    }
    out
}

fn cpu_points(samples: &[Sample]) -> Vec<Option<u64>> {
    samples
        .iter()
        .map(|s| {
            s.cpu.map(|c| {
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "a non-negative percentage in tenths, far below u64::MAX"
                )]
                let tenths = (c * 10.0).round().max(0.0) as u64;
                tenths
            })
        })
        .collect()
}

fn memory_points(samples: &[Sample]) -> Vec<Option<u64>> {
    samples
        .iter()
        .map(|s| (s.memory > 0).then_some(s.memory))
        .collect()
}

fn cpu_text(app: &AppStatus) -> String {
    if app.pid != 0 && app.cpu_percent >= 0.0 {
        format!("{:.1}%", app.cpu_percent)
    } else {
        "-".to_owned()
    }
}

/// Throttled time: tenths of a second under a minute, else a duration.
#[expect(
    clippy::cast_precision_loss,
    reason = "milliseconds, shown to a tenth of a second"
)]
fn throttled_text(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        human_duration_ms(ms)
    }
}

/// The cgroup line of the details: CPU limit with the time it throttled, pids against
/// `pids_max`, `memory_high`.
fn cgroup_text(app: &AppStatus) -> String {
    let mut parts = Vec::new();
    if app.cpu_max_percent > 0 {
        parts.push(format!(
            "cpu_max {}% · throttled {}",
            app.cpu_max_percent,
            throttled_text(app.cpu_throttled_ms)
        ));
    }
    match (app.pids, app.pids_max) {
        (0, 0) => {}
        (n, 0) => parts.push(format!("pids {n}")),
        (n, max) => parts.push(format!("pids {n}/{max}")),
    }
    if app.memory_high_bytes > 0 {
        parts.push(format!(
            "memory_high {}",
            human_bytes(app.memory_high_bytes)
        ));
    }
    if parts.is_empty() {
        "no cgroup limits".to_owned()
    } else {
        parts.join(" · ")
    }
}

fn memory_text(app: &AppStatus) -> String {
    if app.pid != 0 && app.memory_bytes > 0 {
        human_bytes(app.memory_bytes)
    } else {
        "-".to_owned()
    }
}

/// Memory as a share of `max_memory`, when there is one and a measurement.
fn memory_ratio(app: &AppStatus) -> Option<f64> {
    if app.memory_limit_bytes == 0 || app.pid == 0 {
        return None;
    }
    #[expect(clippy::cast_precision_loss, reason = "a display ratio")]
    let ratio = app.memory_bytes as f64 / app.memory_limit_bytes as f64;
    Some(ratio.clamp(0.0, 1.0))
}

fn ratio_color(ratio: f64) -> Color {
    if ratio >= 0.9 {
        Color::Red
    } else if ratio >= 0.7 {
        Color::Yellow
    } else {
        Color::Green
    }
}

fn draw_details(frame: &mut Frame<'_>, area: Rect, model: &Model, theme: Theme) {
    let Some(app) = model.selected_app() else {
        frame.render_widget(Block::bordered().title(" - "), area);
        return;
    };
    let mut title = format!(" {} ", app.name);
    if app.pid != 0 {
        title.push_str(&format!(
            "· pid {} · up {} ",
            app.pid,
            human_duration_ms(app.uptime_ms)
        ));
    } else {
        title.push_str(&format!("· {} ", last_exit_text(&app.last_exit)));
    }
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [gauge, limits, memory, cpu, insight] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(2),
        Constraint::Length(3),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(Span::styled(
            cgroup_text(app),
            if app.cpu_throttled_ms > 0 {
                theme.fg(Color::Yellow)
            } else {
                theme.dim()
            },
        )),
        limits,
    );
    let (text, style) = insight_line(model.insight.get(&app.id), theme);
    frame.render_widget(Paragraph::new(Text::styled(text, style)), insight);

    match memory_ratio(app) {
        Some(ratio) => {
            let label = format!(
                "{} / {} {:>3.0}% ",
                human_bytes(app.memory_bytes),
                human_bytes(app.memory_limit_bytes),
                ratio * 100.0
            );
            // distinct symbols for used and free, so the gauge reads without colour too
            frame.render_widget(
                LineGauge::default()
                    .ratio(ratio)
                    .label(label)
                    .filled_symbol("█")
                    .unfilled_symbol("░")
                    .filled_style(theme.fg(ratio_color(ratio)))
                    .unfilled_style(theme.dim()),
                gauge,
            );
        }
        None => {
            let text = if app.memory_limit_bytes > 0 {
                format!(
                    "max_memory {} (not running)",
                    human_bytes(app.memory_limit_bytes)
                )
            } else {
                "no max_memory set".to_owned()
            };
            frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), gauge);
        }
    }

    let samples = model.samples(&app.name);
    let minutes = human_duration_ms(samples.len() as u64 * 1000);
    let labelled = |frame: &mut Frame<'_>,
                    area: Rect,
                    label: String,
                    points: Vec<Option<u64>>,
                    scale: Scale,
                    color: Color| {
        let [text, chart] =
            Layout::horizontal([Constraint::Length(16), Constraint::Min(1)]).areas(area);
        frame.render_widget(Paragraph::new(label), text);
        let width = usize::from(chart.width);
        let recent = &points[points.len().saturating_sub(width)..];
        // the same scale as the table's sparklines
        let (floor, range) = scale.of(recent);
        let bars: Vec<Option<u64>> = recent
            .iter()
            .map(|p| p.map(|v| v.saturating_sub(floor).min(range)))
            .collect();
        frame.render_widget(
            Sparkline::default()
                .data(bars)
                .max(range)
                .style(theme.fg(color)),
            chart,
        );
    };
    let peak = match samples.iter().map(|s| s.memory).max().unwrap_or(0) {
        0 => "-".to_owned(),
        bytes => human_bytes(bytes),
    };
    labelled(
        frame,
        memory,
        format!("mem {:>8}\npeak {peak:>7}", memory_text(app)),
        memory_points(&samples),
        Scale::Memory,
        Color::Magenta,
    );
    labelled(
        frame,
        cpu,
        format!("cpu {:>8}\nover {minutes:>7}", cpu_text(app)),
        cpu_points(&samples),
        Scale::Cpu,
        Color::Cyan,
    );
}

/// The details pane's kernel line: run-queue delay of the last seconds, involuntary switches,
/// execs and the latest one (red once an exec was unexpected); the reason when unavailable.
fn insight_line(insight: Option<&turbo_api::AppInsight>, theme: Theme) -> (String, Style) {
    use crate::commands::insight::human_us;
    let Some(i) = insight else {
        return ("runq -".to_owned(), theme.dim());
    };
    if !i.unavailable.is_empty() {
        let text = format!("runq/execs: {}\n{}", i.unavailable, net_text(i));
        return (text, theme.dim());
    }
    let runq = if i.runq_recent_count == 0 {
        "runq -".to_owned()
    } else {
        format!(
            "runq p99<{} avg {}",
            human_us(i.runq_recent_p99_us),
            human_us(i.runq_recent_mean_us)
        )
    };
    let mut text = format!(
        "{runq} · invol {}\nexecs {}",
        i.involuntary_switches, i.execs_total
    );
    if i.execs_unexpected > 0 {
        text.push_str(&format!(" ({} unexpected)", i.execs_unexpected));
    }
    if let Some(last) = i.recent_execs.first() {
        text.push_str(&format!(" · {}", escape_controls(&last.filename)));
    }
    text.push('\n');
    text.push_str(&net_text(i));
    let style = if i.execs_unexpected > 0 {
        theme.fg(Color::Red)
    } else {
        Style::new()
    };
    (text, style)
}

/// The TCP part of the kernel line: listening addresses, connections out and in, and the
/// accept-queue drops of the `listen:` sockets the daemon holds.
fn net_text(i: &turbo_api::AppInsight) -> String {
    let drops: u64 = i.listen_drops.iter().map(|l| l.drops).sum();
    let drops = if i.listen_drops.is_empty() {
        String::new()
    } else {
        format!(" · accept drops {drops}")
    };
    if !i.net_unavailable.is_empty() {
        return format!("tcp -{drops}");
    }
    let listening = if i.listening.is_empty() {
        "-".to_owned()
    } else {
        escape_controls(&i.listening.join(" ")).into_owned()
    };
    format!(
        "tcp {listening} · out {} · in {}{drops}",
        i.connects_total, i.accepts_total
    )
}

fn draw_crashes(frame: &mut Frame<'_>, area: Rect, model: &Model, theme: Theme) {
    let Some((stats, records)) = &model.crashes else {
        frame.render_widget(Block::bordered().title(" Crashes "), area);
        return;
    };
    let mut title = format!(" Crashes: {} total", stats.total);
    if stats.total > 0 {
        title.push_str(&format!(" · {} in the last hour", stats.last_hour));
        if stats.mtbf_ms > 0 {
            title.push_str(&format!(" · every {}", human_duration_ms(stats.mtbf_ms)));
        }
    }
    title.push(' ');
    let block = Block::bordered().title(title);
    if records.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled("no crashes", theme.dim())).block(block),
            area,
        );
        return;
    }
    let lines: Vec<Line<'_>> = records
        .iter()
        .map(|r| {
            let ago = format!(
                "{:>4} ago",
                human_duration_ms(model.now_ms.saturating_sub(r.at_ms))
            );
            let how = if r.signal > 0 {
                format!("signal {}", r.signal)
            } else if r.code >= 0 {
                format!("exit {}", r.code)
            } else {
                "exit ?".to_owned()
            };
            let mut spans = vec![
                Span::styled(ago, theme.dim()),
                Span::raw("  "),
                Span::styled(format!("{how:<9}"), theme.fg(Color::Red)),
            ];
            if r.reason != "exit" && r.reason != "signal" {
                spans.push(Span::styled(
                    format!("{} ", r.reason),
                    theme.fg(Color::Yellow),
                ));
            }
            spans.push(Span::raw(format!(
                "after {} · restart #{}",
                human_duration_ms(r.uptime_ms),
                r.restart_number
            )));
            if let Some(last) = r.stderr_tail.last() {
                spans.push(Span::styled(format!("  │ {last}"), theme.dim()));
            }
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// `03:04:05` out of the daemon's `2026-01-02T03:04:05.678Z`.
fn clock(at: Option<&str>) -> &str {
    at.and_then(|a| a.get(11..19)).unwrap_or("        ")
}

fn draw_logs(frame: &mut Frame<'_>, area: Rect, model: &mut Model, theme: Theme) {
    let name = model.selected.clone().unwrap_or_else(|| "-".to_owned());
    let how = if !model.log_stream {
        "paused (l resumes)".to_owned()
    } else if model.scroll > 0 {
        format!("{} lines up (PgDn follows)", model.scroll)
    } else {
        "following".to_owned()
    };
    let block = Block::bordered().title(format!(" Logs: {name} · {how} · times in UTC "));
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    model.log_page = height.max(1);
    let end = model.logs.len().saturating_sub(model.scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line<'_>> = model
        .logs
        .range(start..end)
        .map(|l: &LogLine| {
            let text_style = match l.stream {
                Stream::Out => Style::new(),
                Stream::Err => theme.fg(Color::Red),
            };
            Line::from(vec![
                Span::styled(clock(l.at.as_deref()).to_owned(), theme.dim()),
                Span::styled(
                    if l.stream == Stream::Err {
                        " err "
                    } else {
                        "     "
                    },
                    theme.fg(Color::Red),
                ),
                Span::styled(l.text.clone(), text_style),
            ])
        })
        .collect();
    let body = if lines.is_empty() {
        Text::from(Span::styled(
            if model.log_stream {
                "no log lines yet"
            } else {
                "the log stream is paused"
            },
            theme.dim(),
        ))
    } else {
        Text::from(lines)
    };
    frame.render_widget(Paragraph::new(body).block(block), area);
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect, model: &Model, theme: Theme) {
    if model.editing_filter {
        let line = Line::from(vec![
            Span::styled(" / ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!("{}▏", model.filter)),
            Span::styled("  Enter keeps the filter, Esc clears it", theme.dim()),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let keys = if usize::from(area.width) > KEYS.chars().count() + 1 {
        KEYS
    } else {
        KEYS_SHORT
    };
    frame.render_widget(
        Paragraph::new(Span::styled(format!(" {keys}"), theme.dim())),
        area,
    );
    if let Some((text, mood)) = &model.message {
        let style = match mood {
            Mood::Info => Style::new(),
            Mood::Good => theme.fg(Color::Green),
            Mood::Bad => theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        };
        let keys_width = u16::try_from(keys.chars().count() + 3).unwrap_or(u16::MAX);
        if area.width > keys_width {
            let [_, right] =
                Layout::horizontal([Constraint::Length(keys_width), Constraint::Min(1)])
                    .areas(area);
            frame.render_widget(
                Paragraph::new(Line::from(Span::styled(
                    format!("{} ", escape_controls(text)),
                    style,
                )))
                .alignment(Alignment::Right),
                right,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};
    use turbo_api::{CrashRecord, CrashStats};

    use super::*;
    use crate::commands::monit::model::Key;

    fn app(id: u32, name: &str, state: &str) -> AppStatus {
        let running = state == "online";
        AppStatus {
            id,
            name: name.into(),
            state: state.into(),
            pid: if running { 4000 + id } else { 0 },
            restarts: id,
            cpu_percent: if running { 2.5 } else { -1.0 },
            memory_bytes: if running { 30 << 20 } else { 0 },
            uptime_ms: 125_000,
            health: "none".into(),
            ..AppStatus::default()
        }
    }

    fn model() -> Model {
        let mut m = Model::new("turbo-daemon 0.1.0 (user)".into());
        let mut web = app(1, "web", "online");
        web.memory_limit_bytes = 40 << 20;
        web.cpu_max_percent = 50;
        web.cpu_throttled_ms = 2500;
        web.pids = 3;
        web.pids_max = 20;
        for t in 0..30u64 {
            let mut ticker = app(0, "ticker", "online");
            ticker.memory_bytes = (10 + t) << 20;
            m.set_apps(
                vec![ticker, web.clone(), app(2, "flaky", "errored")],
                true,
                1_000_000,
            );
        }
        m.push_logs([
            LogLine {
                stream: Stream::Out,
                at: Some("2026-01-02T03:04:05.678Z".into()),
                text: "tick 1".into(),
            },
            LogLine {
                stream: Stream::Err,
                at: Some("2026-01-02T03:04:06.000Z".into()),
                text: "oops".into(),
            },
        ]);
        m.crashes = Some((
            CrashStats {
                total: 2,
                last_hour: 2,
                mtbf_ms: 4000,
                ..CrashStats::default()
            },
            vec![CrashRecord {
                at_ms: 1_000_000 - 300_000,
                code: 1,
                reason: "exit".into(),
                uptime_ms: 3000,
                restart_number: 2,
                stderr_tail: vec!["boom".into()],
                ..CrashRecord::default()
            }],
        ));
        m
    }

    fn screen(model: &mut Model, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|f| draw(f, model, Theme { color: false }))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
        screen
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{screen}"))
    }

    #[test]
    fn full_screen_shows_every_part() {
        let mut m = model();
        let s = screen(&mut m, 120, 40);
        assert!(s.contains("TurboProcess monit"), "{s}");
        assert!(s.contains("3 apps"), "{s}");
        let ticker = line_with(&s, "ticker");
        assert!(ticker.contains("▶"), "first app selected: {ticker}");
        assert!(
            ticker.contains("● online") && ticker.contains("2.5%"),
            "{ticker}"
        );
        assert!(ticker.contains("39.0 MB"), "latest memory: {ticker}");
        assert!(
            ticker.contains('▁') && ticker.contains('█'),
            "sparkline: {ticker}"
        );
        let web = line_with(&s, " web ");
        assert!(web.contains("75%"), "memory against the limit: {web}");
        let flaky = line_with(&s, "flaky");
        assert!(
            flaky.contains("✖ errored") && flaky.contains(" - "),
            "{flaky}"
        );
        assert!(s.contains("peak"), "details pane: {s}");
        assert!(s.contains("runq -"), "no insight yet: {s}");
        assert!(s.contains("no cgroup limits"), "details pane: {s}");
        assert!(
            s.contains("Crashes: 2 total · 2 in the last hour · every 4s"),
            "{s}"
        );
        assert!(
            line_with(&s, "5m ago").contains("exit 1") && s.contains("│ boom"),
            "{s}"
        );
        assert!(s.contains("Logs: ticker · following"), "{s}");
        assert!(line_with(&s, "tick 1").contains("03:04:05"), "{s}");
        assert!(line_with(&s, "oops").contains("err"), "{s}");
        assert!(s.contains("r restart"), "footer: {s}");
    }

    #[test]
    fn a_wide_table_has_top_style_kernel_columns() {
        let mut m = model();
        m.insight.insert(
            0,
            turbo_api::AppInsight {
                id: 0,
                runq_recent_count: 5,
                runq_recent_p99_us: 8_192,
                recent_execs: vec![turbo_api::ExecRecord {
                    filename: "/usr/bin/python3".into(),
                    allowed: true,
                    ..turbo_api::ExecRecord::default()
                }],
                ..turbo_api::AppInsight::default()
            },
        );
        let s = screen(&mut m, 170, 40);
        let header = line_with(&s, "last exec");
        for h in ["throttled", "pids", "runq p99"] {
            assert!(header.contains(h), "{header}");
        }
        let ticker = line_with(&s, "ticker");
        assert!(
            ticker.contains("<8.2ms") && ticker.contains("python3"),
            "{ticker}"
        );
        let web = line_with(&s, "web");
        assert!(web.contains("2.5s") && web.contains("3/20"), "{web}");
        // narrower: the plain table, without them
        let s = screen(&mut m, 120, 40);
        let header = line_with(&s, "uptime");
        assert!(
            !header.contains("last exec") && !header.contains("pids"),
            "{header}"
        );
    }

    #[test]
    fn kernel_line_of_the_selected_app() {
        let mut m = model();
        m.insight.insert(
            0,
            turbo_api::AppInsight {
                id: 0,
                runq_recent_count: 5,
                runq_recent_mean_us: 1_500,
                runq_recent_p99_us: 8_192,
                recent_window_ms: 2_000,
                involuntary_switches: 12,
                execs_total: 3,
                execs_unexpected: 1,
                recent_execs: vec![turbo_api::ExecRecord {
                    filename: "/bin/sh".into(),
                    ..turbo_api::ExecRecord::default()
                }],
                ..turbo_api::AppInsight::default()
            },
        );
        {
            let i = m.insight.get_mut(&0).unwrap();
            i.listening = vec!["0.0.0.0:8080".into()];
            (i.connects_total, i.accepts_total) = (4, 9);
            i.listen_drops = vec![turbo_api::ListenDrops {
                addr: "0.0.0.0:3000".into(),
                drops: 2,
            }];
        }
        let s = screen(&mut m, 120, 40);
        assert!(s.contains("runq p99<8.2ms avg 1.5ms · invol 12"), "{s}");
        assert!(s.contains("execs 3 (1 unexpected) · /bin/sh"), "{s}");
        assert!(
            s.contains("tcp 0.0.0.0:8080 · out 4 · in 9 · accept drops 2"),
            "{s}"
        );
        m.insight.get_mut(&0).unwrap().unavailable = "needs the eBPF event source".into();
        let s = screen(&mut m, 120, 40);
        assert!(s.contains("runq/execs: needs the eBPF event source"), "{s}");
    }

    #[test]
    fn gauge_for_an_app_with_a_limit() {
        let mut m = model();
        m.on_key(Key::Down);
        let s = screen(&mut m, 120, 40);
        let gauge = line_with(&s, "30.0 MB / 40.0 MB  75%");
        assert!(gauge.contains("█░"), "used then free: {gauge}");
        line_with(&s, "cpu_max 50% · throttled 2.5s · pids 3/20");
    }

    #[test]
    fn small_terminals_degrade_without_panicking() {
        for (w, h) in [
            (120, 40),
            (80, 24),
            (60, 15),
            (30, 8),
            (10, 3),
            (1, 1),
            (0, 0),
        ] {
            let mut m = model();
            let s = screen(&mut m, w, h);
            if w >= 80 && h >= 15 {
                assert!(s.contains("ticker"), "{w}x{h}:\n{s}");
            }
        }
        let mut m = model();
        let s = screen(&mut m, 80, 24);
        assert!(
            !line_with(&s, "ticker").contains('█'),
            "no sparklines when narrow:\n{s}"
        );
        assert!(s.contains("peak"), "details still there at 24 rows:\n{s}");
        let s = screen(&mut m, 80, 20);
        assert!(!s.contains("peak"), "details go on short screens:\n{s}");
    }

    #[test]
    fn filter_prompt_and_messages() {
        let mut m = model();
        m.on_key(Key::Char('/'));
        m.on_key(Key::Char('f'));
        let s = screen(&mut m, 120, 40);
        assert!(s.contains("/ f▏"), "{s}");
        assert!(s.contains("Apps matching /f/"), "{s}");
        assert!(!s.contains("ticker "), "filtered out:\n{s}");
        m.on_key(Key::Enter);
        m.message = Some(("restarted flaky".into(), Mood::Good));
        let s = screen(&mut m, 120, 40);
        assert!(line_with(&s, "q quit").contains("restarted flaky"), "{s}");
    }

    #[test]
    fn empty_and_paused() {
        let mut m = Model::new(String::new());
        m.log_stream = false;
        let s = screen(&mut m, 100, 30);
        assert!(s.contains("no apps; start one"), "{s}");
        assert!(s.contains("paused"), "{s}");
    }

    #[test]
    fn sparkline_text() {
        let m = Scale::Memory;
        assert_eq!(spark_text(&[Some(0), Some(7), Some(14)], 3, m), "▁▄█");
        assert_eq!(
            spark_text(&[Some(5), None, Some(5)], 5, m),
            "  ▄ ▄",
            "steady: a level line, gaps where not running"
        );
        assert_eq!(
            spark_text(&[Some(1), Some(2), Some(3), Some(4)], 2, m),
            "▁█"
        );
        assert_eq!(spark_text(&[Some(0), Some(0)], 2, m), "▁▁");
        assert_eq!(spark_text(&[], 2, m), "  ");
        // small wobbles on a large value stay small; a real rise shows
        assert_eq!(spark_text(&[Some(200), Some(205), Some(210)], 3, m), "▂▄▆");
        assert_eq!(spark_text(&[Some(200), Some(230), Some(260)], 3, m), "▁▄█");
        // CPU is absolute from 0, at least up to 10%: idle stays flat, load shows
        let c = Scale::Cpu;
        assert_eq!(spark_text(&[Some(0), Some(1), Some(0)], 3, c), "▁▁▁");
        assert_eq!(spark_text(&[Some(0), Some(50), Some(100)], 3, c), "▁▄█");
        assert_eq!(spark_text(&[Some(0), Some(500), Some(1000)], 3, c), "▁▄█");
    }
}
