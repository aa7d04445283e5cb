//! Cost of a Prometheus scrape with 10, 100 and 1000 apps (issue 5): the time of one
//! `GET /metrics` on loopback and the daemon's CPU time per scrape. TurboProcess only (PM2 and
//! supervisord export nothing to Prometheus by themselves).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::bench::fleet::{sleep_apps, wait_running};
use crate::bench::json::Json;
use crate::bench::managers::{Kind, Manager};
use crate::bench::stats::Summary;
use crate::bench::{Env, Metric, Outcome, Row, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "scrape",
    title: "Prometheus scrape cost with 10, 100 and 1000 apps",
    run,
};

const SIZES: [usize; 3] = [10, 100, 1000];
/// Scrapes after the first (which also reads every process's PSS) and before the measured ones.
const WARMUP: usize = 2;
/// Bound on one scrape.
const SCRAPE_LIMIT: Duration = Duration::from_secs(30);
/// Pause between scrapes, so each one finds the daemon idle.
const PAUSE: Duration = Duration::from_millis(50);

/// What one scrape answered and cost.
pub struct Scrape {
    pub wall_ms: f64,
    pub cpu_ms: f64,
    /// The text (decompressed, when it came gzip-compressed).
    pub body: String,
    /// Bytes of the body as sent (compressed, when it came so).
    pub wire_bytes: usize,
}

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let scrapes = if env.quick { 10 } else { 30 };
    let mut rows = Vec::new();
    let mut transcripts = Vec::new();
    let mut per_app = Vec::new();
    for apps in SIZES {
        sys::check_interrupted()?;
        println!("scrape with {apps} apps: {scrapes} scrapes");
        let mut mgr = None;
        let measured = size(env, apps, scrapes, &mut mgr);
        if let Some(mut m) = mgr {
            if let Err(e) = m.shutdown() {
                eprintln!("  shutdown: {e:#}");
            }
            if apps == 100 {
                transcripts.push((
                    format!("TurboProcess, {apps} apps"),
                    m.transcript().to_vec(),
                ));
            }
        }
        let (wall, cpu) = measured?;
        if let Some(c) = Summary::of(&cpu.samples) {
            #[expect(clippy::cast_precision_loss, reason = "small app counts")]
            per_app.push(format!(
                "{apps} apps: {:.1} µs",
                c.median * 1e3 / apps as f64
            ));
        }
        rows.push(wall);
        rows.push(cpu);
    }
    Ok(Outcome {
        unit: Unit::Millis,
        method: vec![
            format!(
                "One TurboProcess daemon per size, its exporter on a free loopback port \
                 (`TURBO_METRICS_LISTEN=127.0.0.1:PORT`), holding that many apps (`sleep \
                 100000`, no restart). Once all run, the harness scrapes `GET /metrics` over \
                 HTTP/1.0: the first scrape (which also reads every process's PSS from \
                 `smaps_rollup`; later scrapes reuse that reading for up to 30 s) is shown \
                 apart, then {WARMUP} warm-up scrapes, then the measured ones, {} ms apart. For \
                 each, the wall time from connecting to the end of the answer, and the daemon's \
                 CPU time over it (the run times of its threads, `/proc/PID/task/*/schedstat`, \
                 in nanoseconds). Each answer is checked to hold the last app's `turbo_app_up`.",
                PAUSE.as_millis()
            ),
            "The daemon answers a scrape by measuring then: it reads `/proc/PID/stat` (and the \
             children file) of every process of every app, so the cost grows with the number \
             of processes; nothing is polled between scrapes."
                .to_owned(),
        ],
        params: vec![
            (
                "app counts".to_owned(),
                SIZES.map(|n| n.to_string()).join(", "),
            ),
            ("measured scrapes per size".to_owned(), scrapes.to_string()),
        ],
        extra_columns: vec![
            "series".to_owned(),
            "answer (KiB)".to_owned(),
            "first scrape, with PSS (ms)".to_owned(),
        ],
        rows,
        ratios: vec![
            (
                "daemon CPU per scrape, 1000 apps".to_owned(),
                "daemon CPU per scrape, 10 apps".to_owned(),
            ),
            (
                "GET /metrics, 1000 apps".to_owned(),
                "GET /metrics, 10 apps".to_owned(),
            ),
        ],
        targets: Vec::new(),
        transcripts,
        notes: vec![format!(
            "No target: issue 5 asks for the measurement. Daemon CPU per scrape per app \
             (medians): {}.",
            per_app.join("; ")
        )],
    })
}

/// One size: a daemon with `apps` apps, scraped. Returns the wall-time and CPU rows.
fn size(
    env: &mut Env<'_>,
    apps: usize,
    scrapes: usize,
    mgr: &mut Option<Box<dyn Manager>>,
) -> Result<(Row, Row)> {
    let sleep = env.tools.sleep.clone();
    let addr = free_loopback()?;
    let started = Instant::now();
    let m = mgr.insert(env.launch_with(
        Kind::Turbo,
        "scrape",
        &format!("turbo-{apps}"),
        &[("TURBO_METRICS_LISTEN", addr.as_str())],
    )?);
    m.start_all("scrape", &sleep_apps("c", apps, &sleep))?;
    wait_running(env, m.as_mut(), apps, &sleep)?;
    println!(
        "  {apps} apps running after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let daemon = m
        .processes()
        .first()
        .map(|&(_, pid)| pid)
        .context("the daemon is gone")?;
    let last_app = format!("turbo_app_up{{app=\"c{:04}\"", apps - 1);
    let mut first = None;
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let mut answer = (0, 0);
    for i in 0..1 + WARMUP + scrapes {
        sys::check_interrupted()?;
        std::thread::sleep(PAUSE);
        let s = scrape(&addr, daemon)?;
        if !s.body.contains(&last_app) {
            bail!("the scrape with {apps} apps has no `{last_app}`");
        }
        if i == 0 {
            first = Some(s.wall_ms);
        } else if i > WARMUP {
            wall.push(s.wall_ms);
            cpu.push(s.cpu_ms);
            answer = (
                s.body.lines().filter(|l| !l.starts_with('#')).count(),
                s.body.len() / 1024,
            );
        }
    }
    if let (Some(w), Some(c)) = (Summary::of(&wall), Summary::of(&cpu)) {
        println!(
            "  GET /metrics median {:.2} ms, daemon CPU {:.2} ms per scrape, {} series",
            w.median, c.median, answer.0
        );
    }
    let row = |what: &str, samples, extra| Row {
        subject: format!("{what}, {apps} apps"),
        samples,
        extra,
        error: None,
    };
    Ok((
        row(
            "GET /metrics",
            wall,
            vec![
                Json::from(answer.0),
                Json::from(answer.1),
                first.map(|f| (f * 10.0).round() / 10.0).into(),
            ],
        ),
        row("daemon CPU per scrape", cpu, vec![Json::Null; 3]),
    ))
}

/// A loopback address nobody listens on right now.
pub fn free_loopback() -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.to_string())
}

/// One plain `GET /metrics`, timed, with the daemon's CPU time over it.
pub fn scrape(addr: &str, daemon: u32) -> Result<Scrape> {
    fetch(addr, daemon, false)
}

/// One `GET /metrics` as Prometheus sends it (`Accept-Encoding: gzip`): timed up to the last
/// compressed byte, the text decompressed afterwards.
pub fn scrape_gzip(addr: &str, daemon: u32) -> Result<Scrape> {
    fetch(addr, daemon, true)
}

fn fetch(addr: &str, daemon: u32, gzip: bool) -> Result<Scrape> {
    let before = sys::thread_cpu_ns(daemon);
    let t = Instant::now();
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(SCRAPE_LIMIT))?;
    let accept = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let wall = t.elapsed();
    let after = sys::thread_cpu_ns(daemon);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let body = &raw[end + 4..];
    if head.split_whitespace().nth(1) != Some("200") {
        bail!(
            "GET /metrics answered `{}`",
            head.lines().next().unwrap_or("")
        );
    }
    let compressed = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "content-encoding:gzip");
    if gzip && !compressed {
        bail!("GET /metrics with Accept-Encoding: gzip answered plain text");
    }
    let text = if compressed {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(body), &mut text)
            .context("the gzip answer does not decompress to UTF-8 text")?;
        text
    } else {
        String::from_utf8(body.to_vec()).context("the answer is not UTF-8")?
    };
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds of a scrape")]
    let cpu_ms = sys::cpu_ns_between(&before, &after) as f64 / 1e6;
    Ok(Scrape {
        wall_ms: wall.as_secs_f64() * 1e3,
        cpu_ms,
        body: text,
        wire_bytes: body.len(),
    })
}
