//! The app table of `turbo monit`: one row per app (state, restarts, CPU and memory with their
//! sparklines, memory against its limit, uptime; from [`TOP_WIDE`] columns also the time
//! `cpu_max` throttled the app, pids, run-queue delay and the latest exec). Pure drawing, like
//! its parent; narrower terminals lose the sparklines, then the kernel columns.

use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Cell, Paragraph, Row, Table, TableState},
};
use turbo_api::AppStatus;

use super::*;

/// Width from which the table also has the top-style kernel columns.
const TOP_WIDE: u16 = 150;
/// The "last exec" column: the program's file name, cut.
const EXEC_WIDTH: u16 = 16;

/// How long `cpu_max` has held the app back (yellow once it has), `-` without a limit.
fn throttled_cell(app: &AppStatus, theme: Theme) -> Cell<'static> {
    if app.cpu_max_percent == 0 {
        return Cell::from(Line::from("-").alignment(Alignment::Right)).style(theme.dim());
    }
    let cell =
        Cell::from(Line::from(throttled_text(app.cpu_throttled_ms)).alignment(Alignment::Right));
    if app.cpu_throttled_ms > 0 {
        cell.style(theme.fg(Color::Yellow))
    } else {
        cell
    }
}

/// The top-style cells from the kernel's view: pids (against `pids_max`), the recent run-queue
/// delay p99 and the latest exec's file name (red when the allow-list did not allow it).
fn kernel_cells(
    app: &AppStatus,
    insight: Option<&turbo_api::AppInsight>,
    theme: Theme,
) -> [Cell<'static>; 3] {
    let right = |text: String| Cell::from(Line::from(text).alignment(Alignment::Right));
    let pids = match (app.pids, app.pids_max) {
        (0, _) => right("-".to_owned()).style(theme.dim()),
        (n, 0) => right(n.to_string()),
        (n, max) => {
            let cell = right(format!("{n}/{max}"));
            if n * 10 >= max * 9 {
                cell.style(theme.fg(Color::Yellow))
            } else {
                cell
            }
        }
    };
    let measured = insight.filter(|i| i.unavailable.is_empty());
    let runq = match measured {
        Some(i) if i.runq_recent_count > 0 => right(format!(
            "<{}",
            crate::commands::insight::human_us(i.runq_recent_p99_us)
        )),
        _ => right("-".to_owned()).style(theme.dim()),
    };
    let exec = match measured.and_then(|i| i.recent_execs.first()) {
        Some(e) => {
            let name = e.filename.rsplit('/').next().unwrap_or(&e.filename);
            let name: String = name.chars().take(usize::from(EXEC_WIDTH)).collect();
            let cell = Cell::from(name);
            if e.allowed {
                cell
            } else {
                cell.style(theme.fg(Color::Red))
            }
        }
        None => Cell::from("-").style(theme.dim()),
    };
    [pids, runq, exec]
}

#[expect(
    clippy::too_many_lines,
    reason = "one table, its columns decided together"
)]
pub(super) fn draw_table(frame: &mut Frame<'_>, area: Rect, model: &Model, theme: Theme) {
    let visible = model.visible();
    let title = if model.filter.is_empty() {
        " Apps ".to_owned()
    } else {
        format!(" Apps matching /{}/ ", model.filter)
    };
    let block = Block::bordered().title(title);
    if visible.is_empty() {
        let text = if model.apps.is_empty() {
            NO_APPS.to_owned()
        } else {
            format!("no app matches /{}/ (Esc clears the filter)", model.filter)
        };
        frame.render_widget(
            Paragraph::new(Span::styled(text, theme.dim())).block(block),
            area,
        );
        return;
    }
    let with_limits = visible.iter().any(|a| a.memory_limit_bytes > 0);
    let name_width = visible
        .iter()
        .map(|a| a.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 24);
    let wide = area.width >= WIDE;
    let top = area.width >= TOP_WIDE;
    let with_cpu_limits = top && visible.iter().any(|a| a.cpu_max_percent > 0);
    // fixed columns, then what is left for the two sparklines
    let mut fixed: u16 = 2 + 3 + 16 + 4 + 7 + 9 + 7; // marker, id, state, ↺, cpu, memory, uptime
    fixed += u16::try_from(name_width).unwrap_or(24);
    let mut columns: u16 = 9;
    if with_limits {
        fixed += 9;
        columns += 1;
    }
    if with_cpu_limits {
        fixed += 9;
        columns += 1;
    }
    if top {
        fixed += 9 + 9 + EXEC_WIDTH;
        columns += 3;
    }
    let spark = if wide {
        area.width.saturating_sub(fixed + columns + 2) / 2
    } else {
        0
    };
    let spark = usize::from(spark.min(60));

    let mut header = vec!["id", "name", "state", "↺", "cpu"];
    if spark > 0 {
        header.push("cpu history");
    }
    header.push("memory");
    if spark > 0 {
        header.push("memory history");
    }
    if with_limits {
        header.push("of limit");
    }
    header.push("uptime");
    if with_cpu_limits {
        header.push("throttled");
    }
    if top {
        header.extend(["pids", "runq p99", "last exec"]);
    }
    let numeric = [
        "id",
        "↺",
        "cpu",
        "memory",
        "of limit",
        "uptime",
        "throttled",
        "pids",
        "runq p99",
    ];
    let header = Row::new(header.into_iter().map(|h| {
        let line = Line::from(h);
        let line = if numeric.contains(&h) {
            line.alignment(Alignment::Right)
        } else {
            line
        };
        Cell::from(line).style(Style::new().add_modifier(Modifier::BOLD))
    }));

    let rows: Vec<Row<'_>> = visible
        .iter()
        .map(|app| {
            let samples = model.samples(&app.name);
            let mut cells = vec![
                Cell::from(Line::from(app.id.to_string()).alignment(Alignment::Right)),
                Cell::from(app.name.clone()),
                state_cell(app, theme),
                Cell::from(Line::from(app.restarts.to_string()).alignment(Alignment::Right)),
                Cell::from(Line::from(cpu_text(app)).alignment(Alignment::Right)),
            ];
            if spark > 0 {
                cells.push(
                    Cell::from(spark_text(&cpu_points(&samples), spark, Scale::Cpu))
                        .style(theme.fg(Color::Cyan)),
                );
            }
            cells.push(Cell::from(
                Line::from(memory_text(app)).alignment(Alignment::Right),
            ));
            if spark > 0 {
                cells.push(
                    Cell::from(spark_text(&memory_points(&samples), spark, Scale::Memory))
                        .style(theme.fg(Color::Magenta)),
                );
            }
            if with_limits {
                let cell = match memory_ratio(app) {
                    Some(r) => Cell::from(
                        Line::from(format!("{:.0}%", r * 100.0)).alignment(Alignment::Right),
                    )
                    .style(theme.fg(ratio_color(r))),
                    None if app.memory_limit_bytes > 0 => {
                        Cell::from(Line::from("-").alignment(Alignment::Right))
                    }
                    None => Cell::from(Line::from("no limit").alignment(Alignment::Right))
                        .style(theme.dim()),
                };
                cells.push(cell);
            }
            let uptime = if app.pid != 0 {
                human_duration_ms(app.uptime_ms)
            } else {
                "-".to_owned()
            };
            cells.push(Cell::from(Line::from(uptime).alignment(Alignment::Right)));
            if with_cpu_limits {
                cells.push(throttled_cell(app, theme));
            }
            if top {
                cells.extend(kernel_cells(app, model.insight.get(&app.id), theme));
            }
            Row::new(cells)
        })
        .collect();

    let mut widths = vec![
        Constraint::Length(3),
        Constraint::Length(u16::try_from(name_width).unwrap_or(24)),
        Constraint::Length(16),
        Constraint::Length(4),
        Constraint::Length(7),
    ];
    if spark > 0 {
        widths.push(Constraint::Length(u16::try_from(spark).unwrap_or(0)));
    }
    widths.push(Constraint::Length(9));
    if spark > 0 {
        widths.push(Constraint::Length(u16::try_from(spark).unwrap_or(0)));
    }
    if with_limits {
        widths.push(Constraint::Length(9));
    }
    widths.push(Constraint::Length(7));
    if with_cpu_limits {
        widths.push(Constraint::Length(9));
    }
    if top {
        widths.extend([
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(EXEC_WIDTH),
        ]);
    }

    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .highlight_symbol("▶ ")
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default();
    state.select(
        model
            .selected
            .as_deref()
            .and_then(|name| visible.iter().position(|a| a.name == name)),
    );
    frame.render_stateful_widget(table, area, &mut state);
}
