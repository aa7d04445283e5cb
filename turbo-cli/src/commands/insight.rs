//! The `Insight` section of `turbo describe` (issue 22): what the kernel saw the app do, from
//! `GetInsight`. Rendering only; the figures and the "unavailable" reason are the daemon's.

use std::fmt::Write as _;

use turbo_api::{AppInsight, rfc3339_ms};

use crate::render::{RenderOpts, Tone, escape_controls, paint};

/// A delay in µs, short: `850µs`, `12.5ms`, `1.2s`.
#[must_use]
pub fn human_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.1}s", us as f64 / 1e6),
    }
}

/// The section, starting with its blank line and title.
#[must_use]
pub fn render_insight(insight: &AppInsight, opts: &RenderOpts) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{}", paint(opts.color, Tone::Bold, "Insight (eBPF)"));
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "  {k:<16}{}", escape_controls(v));
    };
    let allow = if insight.exec_allow.is_empty() {
        "-".to_owned()
    } else {
        insight.exec_allow.join(", ")
    };
    if !insight.unavailable.is_empty() {
        row(&mut out, "unavailable", &insight.unavailable);
        row(&mut out, "exec allow", &allow);
        render_net(&mut out, insight, opts);
        return out;
    }
    let recent = if insight.recent_window_ms == 0 {
        "not yet (ask again for the recent window)".to_owned()
    } else if insight.runq_recent_count == 0 {
        format!("no waits in the last {}ms", insight.recent_window_ms)
    } else {
        format!(
            "mean {}, p99 < {} over {} waits in the last {:.1}s",
            human_us(insight.runq_recent_mean_us),
            human_us(insight.runq_recent_p99_us),
            insight.runq_recent_count,
            insight.recent_window_ms as f64 / 1e3
        )
    };
    row(&mut out, "run-queue delay", &recent);
    let mean_us = (insight.runq_sum_ns)
        .checked_div(insight.runq_count)
        .unwrap_or(0)
        / 1_000;
    row(
        &mut out,
        "  since added",
        &format!(
            "mean {} over {} waits",
            human_us(mean_us),
            insight.runq_count
        ),
    );
    row(
        &mut out,
        "involuntary",
        &format!("{} context switches", insight.involuntary_switches),
    );
    let unexpected = if insight.execs_unexpected > 0 {
        paint(
            opts.color,
            Tone::Red,
            &format!("{} unexpected", insight.execs_unexpected),
        )
    } else {
        "0 unexpected".to_owned()
    };
    let _ = writeln!(
        out,
        "  {:<16}{} ({unexpected})",
        "execs", insight.execs_total
    );
    row(&mut out, "exec allow", &allow);
    for e in &insight.recent_execs {
        let mark = if e.allowed { " " } else { "!" };
        let line = format!(
            "{mark} {} pid {} {}",
            rfc3339_ms(e.at_ms),
            e.pid,
            escape_controls(&e.filename)
        );
        let tone = if e.allowed { Tone::Dim } else { Tone::Red };
        let _ = writeln!(out, "    {}", paint(opts.color, tone, &line));
    }
    render_net(&mut out, insight, opts);
    out
}

/// The TCP view: listening addresses, connections, recent peers, and the accept-queue drops of
/// the `listen:` sockets the daemon holds.
fn render_net(out: &mut String, insight: &AppInsight, opts: &RenderOpts) {
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "  {k:<16}{}", escape_controls(v));
    };
    for held in &insight.listen_drops {
        let drops = format!("{} accept-queue drops", held.drops);
        let drops = if held.drops > 0 {
            paint(opts.color, Tone::Red, &drops)
        } else {
            drops
        };
        let _ = writeln!(
            out,
            "  {:<16}{} (held by the daemon; {drops})",
            "listen:",
            escape_controls(&held.addr)
        );
    }
    if !insight.net_unavailable.is_empty() {
        if insight.unavailable.is_empty() {
            row(out, "network", &insight.net_unavailable);
        }
        return;
    }
    let listening = if insight.listening.is_empty() {
        "-".to_owned()
    } else {
        insight.listening.join(", ")
    };
    row(out, "listening", &listening);
    row(
        out,
        "connections",
        &format!(
            "{} out (connect), {} in (accept)",
            insight.connects_total, insight.accepts_total
        ),
    );
    for p in &insight.recent_peers {
        let arrow = if p.direction == "accept" { "<-" } else { "->" };
        let line = format!(
            "{arrow} {} {} x{}",
            rfc3339_ms(p.at_ms),
            escape_controls(&p.peer),
            p.count
        );
        let _ = writeln!(out, "    {}", paint(opts.color, Tone::Dim, &line));
    }
}

#[cfg(test)]
mod tests {
    use turbo_api::ExecRecord;

    use super::*;

    #[test]
    fn unavailable_says_why_and_shows_no_figures() {
        let text = render_insight(
            &AppInsight {
                unavailable: "needs the eBPF event source (eBPF disabled)".into(),
                ..AppInsight::default()
            },
            &RenderOpts::default(),
        );
        assert!(text.contains("unavailable     needs the eBPF event source"));
        assert!(!text.contains("run-queue"), "{text}");
    }

    #[test]
    fn figures_and_the_unexpected_execs() {
        let text = render_insight(
            &AppInsight {
                runq_count: 10,
                runq_sum_ns: 50_000_000,
                runq_recent_count: 4,
                runq_recent_mean_us: 2_500,
                runq_recent_p99_us: 4_096,
                recent_window_ms: 2_000,
                involuntary_switches: 7,
                execs_total: 2,
                execs_unexpected: 1,
                exec_allow: vec!["/usr/bin/*".into()],
                recent_execs: vec![ExecRecord {
                    at_ms: 0,
                    pid: 42,
                    filename: "/bin/sh\x1b[2J".into(),
                    allowed: false,
                }],
                ..AppInsight::default()
            },
            &RenderOpts::default(),
        );
        assert!(
            text.contains("mean 2.5ms, p99 < 4.1ms over 4 waits in the last 2.0s"),
            "{text}"
        );
        assert!(text.contains("mean 5.0ms over 10 waits"), "{text}");
        assert!(text.contains("execs           2 (1 unexpected)"), "{text}");
        assert!(
            text.contains("! 1970-01-01T00:00:00.000Z pid 42 /bin/sh"),
            "{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "no control sequence from the kernel's text: {text}"
        );
    }

    #[test]
    fn the_network_view() {
        let text = render_insight(
            &AppInsight {
                listening: vec!["0.0.0.0:8080".into()],
                connects_total: 3,
                accepts_total: 5,
                recent_peers: vec![turbo_api::PeerRecord {
                    at_ms: 0,
                    direction: "connect".into(),
                    peer: "10.0.0.2:5432".into(),
                    count: 3,
                }],
                listen_drops: vec![turbo_api::ListenDrops {
                    addr: "0.0.0.0:3000".into(),
                    drops: 2,
                }],
                ..AppInsight::default()
            },
            &RenderOpts::default(),
        );
        assert!(text.contains("listening       0.0.0.0:8080"), "{text}");
        assert!(text.contains("3 out (connect), 5 in (accept)"), "{text}");
        assert!(
            text.contains("-> 1970-01-01T00:00:00.000Z 10.0.0.2:5432 x3"),
            "{text}"
        );
        assert!(
            text.contains("0.0.0.0:3000 (held by the daemon; 2 accept-queue drops)"),
            "{text}"
        );
        let off = render_insight(
            &AppInsight {
                net_unavailable: "needs the eBPF event source (off)".into(),
                ..AppInsight::default()
            },
            &RenderOpts::default(),
        );
        assert!(
            off.contains("network         needs the eBPF event source (off)"),
            "{off}"
        );
    }
}
