//! `turbo events NAME [-f] [--json]`: what the kernel saw the app do lately (execs, signals,
//! exits, OOM kills, TCP listens and new peers), from `GetInsight`; `-f` then follows the
//! `AppEvent` signal. The daemon keeps and bounds the list; this module only asks and prints.

use std::collections::HashSet;

use anyhow::Result;
use futures_util::StreamExt as _;
use turbo_api::{KernelEvent, rfc3339_ms};

use super::{daemon, target_error};
use crate::{render::escape_controls, term};

/// `turbo events`.
///
/// # Errors
/// No such app, the daemon unreachable, or stdout closed.
pub async fn events(target: &str, follow: bool, as_json: bool) -> Result<()> {
    let d = daemon().await?;
    // subscribed before the listing: nothing can fall between the two
    let mut stream = if follow {
        Some(d.proxy.receive_app_event().await?)
    } else {
        None
    };
    let insights = match d.proxy.get_insight(target).await {
        Ok(found) => found,
        Err(e) => return Err(target_error(&d, target, &e).await),
    };
    let names: HashSet<String> = insights.iter().map(|i| i.name.clone()).collect();
    for i in insights.iter().filter(|i| !i.unavailable.is_empty()) {
        eprintln!(
            "turbo: {}: execs, signals and TCP events are unavailable: {}; exits only",
            escape_controls(&i.name),
            escape_controls(&i.unavailable)
        );
    }
    let mut listed: Vec<(String, KernelEvent)> = insights
        .into_iter()
        .flat_map(|i| {
            let name = i.name;
            i.events.into_iter().map(move |e| (name.clone(), e))
        })
        .collect();
    listed.sort_by_key(|(_, e)| e.at_ms);
    if as_json && !follow {
        let doc = listed.iter().map(|(n, e)| e.to_json(n)).collect();
        return term::emit_json(&serde_json::Value::Array(doc));
    }
    for (name, e) in &listed {
        print_one(name, e, as_json)?;
    }
    let Some(stream) = stream.as_mut() else {
        return Ok(());
    };
    while let Some(signal) = stream.next().await {
        let Ok(args) = signal.args() else { continue };
        if !names.contains(args.name) {
            continue;
        }
        let (name, event) = (args.name.to_owned(), args.event);
        // an event the listing already had (it was booked between subscribing and listing)
        if listed.iter().any(|(n, e)| *n == name && *e == event) {
            continue;
        }
        print_one(&name, &event, as_json)?;
    }
    Ok(())
}

/// One event: a JSON line, or `time  name[instance]  kind  pid N  detail`.
fn print_one(name: &str, e: &KernelEvent, as_json: bool) -> Result<()> {
    if as_json {
        return term::emit(&crate::render::json_safe(serde_json::to_string(
            &e.to_json(name),
        )?));
    }
    term::emit(&render_line(name, e))
}

/// The human line of an event.
#[must_use]
pub fn render_line(name: &str, e: &KernelEvent) -> String {
    let who = format!("{}[{}]", escape_controls(name), e.instance);
    let pid = if e.pid == 0 {
        "-".to_owned()
    } else {
        format!("pid {}", e.pid)
    };
    format!(
        "{}  {who}  {:<8}  {pid:<10}  {}",
        rfc3339_ms(e.at_ms),
        escape_controls(&e.kind),
        escape_controls(&e.detail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_per_event_without_control_sequences() {
        let e = KernelEvent {
            at_ms: 0,
            instance: 1,
            kind: "exec".into(),
            pid: 42,
            detail: "/bin/sh\x1b[2J (unexpected)".into(),
        };
        let line = render_line("web", &e);
        assert!(
            line.starts_with("1970-01-01T00:00:00.000Z  web[1]  exec      pid 42      /bin/sh"),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "{line}");
        let accept = KernelEvent {
            kind: "accept".into(),
            pid: 0,
            detail: "127.0.0.1:50000".into(),
            ..e
        };
        assert!(render_line("web", &accept).contains("accept    -           127.0.0.1"));
    }
}
