//! `turbo monit`: a live terminal dashboard over D-Bus.
//!
//! This module owns the effects: the terminal (raw mode and the alternate screen, given back on
//! quit, on SIGTERM/SIGHUP and on panic), a thread that reads keys, the calls to the daemon and
//! the log files. What is shown and what keys mean is [`model`]'s; how it looks is [`ui`]'s.
//!
//! Sources of change, each a branch of one `select!` loop: keys; `ListApps` every second (one
//! history sample per app: CPU and memory sparklines cover the last minutes); the daemon's
//! `AppStateChanged` and `AppCrashed` signals, which refresh at once rather than at the next
//! tick; `GetInsight` with every sample (run-queue delay and execs, eBPF only); the selected app's out/err logs, polled every 250 ms with the follower of `turbo logs`
//! (so rotation and `turbo flush` are handled the same way); its crash records (`GetCrashes`)
//! when the selection changes, when it crashes, and every 5 s. Restart, stop and start run as
//! tasks so that a slow stop (`kill_timeout`) does not freeze the screen; their outcome lands
//! in the status line. Monit must not change anything except through those three calls.

mod model;
mod ui;

use std::{
    borrow::Cow,
    io::{self, IsTerminal as _, Stdout},
    sync::{
        Arc, Once,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use futures_util::StreamExt as _;
use ratatui::{
    Terminal, TerminalOptions, Viewport,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
        execute,
        terminal::{
            self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode,
            enable_raw_mode,
        },
    },
    layout::Rect,
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::{MissedTickBehavior, interval, timeout},
};
use turbo_api::{AppStatus, CrashRecord, ManagerProxy, error_message};

use self::model::{Action, Key, LogLine, Model, Mood, Stream};
use super::logs::{Follower, stamp_and_text};
use crate::{hint::Hinted, render::escape_controls, term};

/// How often the app list is sampled.
const SAMPLE: Duration = Duration::from_secs(1);
/// How often the selected app's logs are read.
const LOG_POLL: Duration = Duration::from_millis(250);
/// How often the crash timeline is refreshed without a signal.
const CRASH_POLL: Duration = Duration::from_secs(5);
/// Bound on one call, so that a stuck daemon leaves the screen responsive.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines read back from each log when an app is selected.
const LOG_BACKLOG: usize = 200;

/// `turbo monit`.
pub async fn run() -> Result<()> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return Err(Hinted::new(
            "turbo monit needs a terminal (stdin and stdout)",
            "in scripts use `turbo status --json`, `turbo logs --follow` or `turbo crashes <name> --json`",
        )
        .into());
    }
    let daemon = super::daemon().await?;
    let proxy = daemon.proxy.clone();
    let about = match proxy.info().await {
        Ok(info) => format!("turbo-daemon {} · {} mode", info.version, info.mode),
        Err(_) => format!("turbo-daemon {}", daemon.version),
    };
    let theme = ui::Theme {
        color: term::stdout_opts().color,
    };
    let screen = Screen::enter().context("cannot set up the terminal")?;
    let stop = Arc::new(AtomicBool::new(false));
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || read_input(&input_tx, &stop))
    };
    let mut monit = Monit {
        proxy,
        model: Model::new(about),
        tail: None,
        theme,
    };
    let result = monit.run(screen.terminal()?, input_rx).await;
    stop.store(true, Ordering::Relaxed);
    drop(screen);
    // the reader notices `stop` within one poll interval
    let _ = reader.join();
    result
}

/// What the input thread sends.
enum Input {
    Key(Key),
    /// The terminal changed size: draw again now.
    Resize,
    /// Reading the terminal failed; monit ends with this error.
    Failed(io::Error),
}

/// Reads keys until `stop` is set or the receiver is gone. A thread of its own because
/// crossterm's reads block.
fn read_input(tx: &mpsc::UnboundedSender<Input>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let ready = match event::poll(Duration::from_millis(100)) {
            Ok(ready) => ready,
            Err(err) => {
                let _ = tx.send(Input::Failed(err));
                return;
            }
        };
        if !ready {
            continue;
        }
        let input = match event::read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
                let key = match k.code {
                    KeyCode::Char('c' | 'd') if ctrl => Key::Interrupt,
                    KeyCode::Char(c) => Key::Char(c),
                    KeyCode::Up => Key::Up,
                    KeyCode::Down => Key::Down,
                    KeyCode::PageUp => Key::PageUp,
                    KeyCode::PageDown => Key::PageDown,
                    KeyCode::Home => Key::Home,
                    KeyCode::End => Key::End,
                    KeyCode::Enter => Key::Enter,
                    KeyCode::Esc => Key::Esc,
                    KeyCode::Backspace => Key::Backspace,
                    _ => continue,
                };
                Input::Key(key)
            }
            Ok(Event::Resize(..)) => Input::Resize,
            Ok(_) => continue,
            Err(err) => Input::Failed(err),
        };
        if tx.send(input).is_err() {
            return;
        }
    }
}

/// Raw mode and the alternate screen while it lives; dropping it (or a panic) gives the terminal
/// back as it was.
struct Screen;

impl Screen {
    fn enter() -> io::Result<Self> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // restore first, so the panic message lands on the normal screen
                Screen::restore();
                previous(info);
            }));
        });
        enable_raw_mode()?;
        let screen = Self;
        execute!(
            io::stdout(),
            EnterAlternateScreen,
            cursor::Hide,
            Clear(ClearType::All)
        )?;
        Ok(screen)
    }

    /// A full-screen terminal. Its size comes from the tty (TIOCGWINSZ); nothing here asks
    /// the terminal where its cursor is (`Terminal::clear` would, with an `ESC [6n` that a
    /// terminal behind `script -qc` or a serial console never answers: monit then failed
    /// with "cursor position could not be read"). The screen was cleared on entering. A tty
    /// that reports no size (a pty nobody sized, as `script` makes when its input is a pipe)
    /// gets a fixed screen of `COLUMNS` x `LINES`, else 80 x 24, instead of nothing drawn.
    fn terminal(&self) -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
        let viewport = match terminal::size() {
            Ok((width, height)) if width > 0 && height > 0 => Viewport::Fullscreen,
            _ => {
                let (width, height) = term::fallback_size();
                Viewport::Fixed(Rect::new(0, 0, width, height))
            }
        };
        Terminal::with_options(
            CrosstermBackend::new(io::stdout()),
            TerminalOptions { viewport },
        )
    }

    fn restore() {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        Self::restore();
    }
}

/// Follows a new terminal size; a fixed screen (see [`Screen::terminal`]) becomes the size the
/// tty reports once it reports one.
fn resize(terminal: &mut Terminal<CrosstermBackend<Stdout>>) -> io::Result<()> {
    match terminal::size()? {
        (width, height) if width > 0 && height > 0 => {
            terminal.resize(Rect::new(0, 0, width, height))
        }
        _ => Ok(()),
    }
}

/// The selected app's two logs, followed.
struct Tail {
    out: Follower,
    err: Follower,
}

impl Tail {
    /// Opens the logs of `app` at their last lines; returns those lines, merged by time.
    fn open(app: &AppStatus) -> io::Result<(Vec<LogLine>, Self)> {
        let (out_lines, _, out) = Follower::from_tail(app.out_log.as_ref(), LOG_BACKLOG)?;
        let (err_lines, _, err) = Follower::from_tail(app.err_log.as_ref(), LOG_BACKLOG)?;
        let lines = merge(out_lines, err_lines);
        Ok((lines, Self { out, err }))
    }

    fn poll(&mut self) -> io::Result<Vec<LogLine>> {
        Ok(merge(self.out.poll()?, self.err.poll()?))
    }
}

/// Lines of both streams in time order (stable: lines of one stream keep their order).
fn merge(out: Vec<Vec<u8>>, err: Vec<Vec<u8>>) -> Vec<LogLine> {
    let line = |stream: Stream| {
        move |raw: Vec<u8>| {
            let (at, text) = stamp_and_text(&raw);
            LogLine { stream, at, text }
        }
    };
    let mut lines: Vec<LogLine> = out
        .into_iter()
        .map(line(Stream::Out))
        .chain(err.into_iter().map(line(Stream::Err)))
        .collect();
    lines.sort_by(|a, b| a.at.cmp(&b.at));
    lines
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a key asked the daemon to do.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Restart,
    Stop,
    Start,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Restart => "restart",
            Verb::Stop => "stop",
            Verb::Start => "start",
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Verb::Restart => "restarting",
            Verb::Stop => "stopping",
            Verb::Start => "starting",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Verb::Restart => "restarted",
            Verb::Stop => "stopped",
            Verb::Start => "started",
        }
    }
}

/// The running dashboard.
struct Monit {
    proxy: ManagerProxy<'static>,
    model: Model,
    tail: Option<Tail>,
    theme: ui::Theme,
}

impl Monit {
    async fn run(
        &mut self,
        mut terminal: Terminal<CrosstermBackend<Stdout>>,
        mut input: mpsc::UnboundedReceiver<Input>,
    ) -> Result<()> {
        // signals make the screen react at once; without them (a bus that refuses the match
        // rule) the one-second refresh still does
        let mut changes = self.proxy.receive_app_state_changed().await.ok();
        let mut crashed = self.proxy.receive_app_crashed().await.ok();
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let (done_tx, mut done) = mpsc::unbounded_channel::<(Mood, String)>();
        let mut sample = interval(SAMPLE);
        let mut logs = interval(LOG_POLL);
        let mut crashes = interval(CRASH_POLL);
        for tick in [&mut sample, &mut logs, &mut crashes] {
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        }
        loop {
            terminal
                .draw(|frame| ui::draw(frame, &mut self.model, self.theme))
                .context("cannot draw")?;
            tokio::select! {
                Some(event) = input.recv() => match event {
                    Input::Key(key) => {
                        let Some(action) = self.model.on_key(key) else { continue };
                        if action == Action::Quit {
                            return Ok(());
                        }
                        self.act(action, &done_tx).await;
                    }
                    Input::Resize => resize(&mut terminal).context("cannot resize")?,
                    Input::Failed(err) => return Err(err).context("cannot read the terminal"),
                },
                _ = sample.tick() => self.refresh(true).await,
                _ = logs.tick(), if self.model.log_stream => self.poll_logs(),
                _ = crashes.tick() => self.fetch_crashes().await,
                Some(_) = next(&mut changes) => self.refresh(false).await,
                Some(signal) = next(&mut crashed) => {
                    let name = signal.args().ok().map(|a| (*a.name()).to_owned());
                    if name.is_some() && name == self.model.selected {
                        self.fetch_crashes().await;
                    }
                }
                Some((mood, text)) = done.recv() => {
                    self.model.message = Some((text, mood));
                    self.refresh(false).await;
                }
                _ = sigterm.recv() => return Ok(()),
                _ = sighup.recv() => return Ok(()),
            }
        }
    }

    /// Carries out what a key asked for.
    async fn act(&mut self, action: Action, done: &mpsc::UnboundedSender<(Mood, String)>) {
        let (verb, name) = match action {
            Action::Quit => return,
            Action::Selected(_) => return self.on_selected().await,
            Action::ResumeLogs => return self.open_logs(),
            Action::Restart(name) => (Verb::Restart, name),
            Action::Stop(name) => (Verb::Stop, name),
            Action::Start(name) => (Verb::Start, name),
        };
        self.model.message = Some((format!("{} {name}…", verb.doing()), Mood::Info));
        let proxy = self.proxy.clone();
        let done = done.clone();
        // a stop can take kill_timeout: the screen goes on meanwhile
        tokio::spawn(async move {
            let result = match verb {
                Verb::Stop => proxy.stop_app(&name).await.map(drop),
                // the daemon's restart starts a stopped app
                Verb::Restart | Verb::Start => proxy.restart_app(&name).await.map(drop),
            };
            let outcome = match result {
                Ok(()) => (Mood::Good, format!("{} {name}", verb.done())),
                Err(err) => (
                    Mood::Bad,
                    format!("cannot {} {name}: {}", verb.name(), error_message(&err)),
                ),
            };
            let _ = done.send(outcome);
        });
    }

    /// `ListApps`; `sample` adds a history point.
    async fn refresh(&mut self, sample: bool) {
        match timeout(CALL_TIMEOUT, self.proxy.list_apps()).await {
            Ok(Ok(apps)) => {
                if self
                    .model
                    .message
                    .as_ref()
                    .is_some_and(|(m, _)| m.starts_with("the daemon"))
                {
                    self.model.message = None;
                }
                if let Some(Action::Selected(_)) = self.model.set_apps(apps, sample, now_ms()) {
                    self.on_selected().await;
                }
                if sample {
                    self.fetch_insight().await;
                }
            }
            Ok(Err(err)) => {
                self.model.message = Some((
                    format!("the daemon did not answer: {}", error_message(&err)),
                    Mood::Bad,
                ));
            }
            Err(_) => {
                self.model.message = Some((
                    format!(
                        "the daemon did not answer within {} s",
                        CALL_TIMEOUT.as_secs()
                    ),
                    Mood::Bad,
                ));
            }
        }
    }

    async fn on_selected(&mut self) {
        self.open_logs();
        self.fetch_crashes().await;
    }

    fn open_logs(&mut self) {
        self.tail = None;
        self.model.logs.clear();
        self.model.scroll = 0;
        if !self.model.log_stream {
            return;
        }
        let Some(app) = self.model.selected_app().cloned() else {
            return;
        };
        match Tail::open(&app) {
            Ok((lines, tail)) => {
                self.model.push_logs(lines);
                self.tail = Some(tail);
            }
            Err(err) => {
                self.model.message = Some((
                    format!("cannot read the logs of {}: {err}", app.name),
                    Mood::Bad,
                ));
            }
        }
    }

    fn poll_logs(&mut self) {
        let Some(tail) = &mut self.tail else {
            return;
        };
        match tail.poll() {
            Ok(lines) => self.model.push_logs(lines),
            Err(err) => {
                self.tail = None;
                self.model.message = Some((format!("cannot read the logs: {err}"), Mood::Bad));
            }
        }
    }

    /// `GetInsight` of every app (run-queue delay, execs), once a sample.
    async fn fetch_insight(&mut self) {
        self.model.insight = match timeout(CALL_TIMEOUT, self.proxy.get_insight("all")).await {
            Ok(Ok(all)) => all.into_iter().map(|i| (i.id, i)).collect(),
            _ => std::collections::HashMap::new(),
        };
    }

    async fn fetch_crashes(&mut self) {
        let Some(name) = self.model.selected.clone() else {
            self.model.crashes = None;
            return;
        };
        if let Ok(Ok((stats, records))) = timeout(CALL_TIMEOUT, self.proxy.get_crashes(&name)).await
            && self.model.selected.as_deref() == Some(name.as_str())
        {
            self.model.now_ms = now_ms();
            self.model.crashes = Some((stats, records.into_iter().map(escaped).collect()));
        }
    }
}

/// A crash record with what the app wrote (its stderr tail, its comm) escaped, as the log
/// lines are: ratatui drops control characters, but the rest of an escape sequence would
/// still show as garbage, and the escaped form says what the app sent.
fn escaped(mut record: CrashRecord) -> CrashRecord {
    let escape = |s: &mut String| {
        if let Cow::Owned(safe) = escape_controls(s) {
            *s = safe;
        }
    };
    record.stderr_tail.iter_mut().for_each(escape);
    escape(&mut record.detail);
    escape(&mut record.reason);
    escape(&mut record.signal_sender_comm);
    record
}

/// The next item of an optional signal stream; never resolves when there is no stream, so the
/// `select!` branch simply stays idle.
async fn next<S: futures_util::Stream + Unpin>(stream: &mut Option<S>) -> Option<S::Item> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_merge_by_time_and_keep_order_within_a_stream() {
        let out = vec![
            b"2026-01-02T03:04:05.000Z a".to_vec(),
            b"2026-01-02T03:04:07.000Z c".to_vec(),
        ];
        let err = vec![b"2026-01-02T03:04:06.000Z b".to_vec()];
        let lines = merge(out, err);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        assert_eq!(lines[1].stream, Stream::Err);
        assert_eq!(lines[1].at.as_deref(), Some("2026-01-02T03:04:06.000Z"));
    }
}
