//! What `turbo monit` shows, and what the keys do to it: a plain state machine.
//!
//! The model holds the last app list, a history of CPU and memory samples per app, the selection,
//! the name filter, the log lines and the crash records of the selected app, and the status line.
//! Keys become [`Action`]s for the event loop to carry out (calls to the daemon, reopening logs);
//! the model itself does no I/O and reads no clock: time comes in as arguments, so every rule is
//! unit-tested.

use std::collections::{HashMap, VecDeque};

use turbo_api::{AppState, AppStatus, CrashRecord, CrashStats};

/// Samples kept per app: ten minutes at one per second.
pub const HISTORY: usize = 600;
/// Log lines kept for the selected app.
pub const LOG_LINES: usize = 2000;

/// A key, reduced to what monit distinguishes (so the model does not depend on crossterm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Backspace,
    /// Ctrl-C: always quits.
    Interrupt,
    Char(char),
}

/// What the event loop must do after a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    Restart(String),
    Stop(String),
    Start(String),
    /// Another app is selected (or none): follow its logs and fetch its crashes.
    Selected(Option<String>),
    /// The log stream was switched on: reopen the logs of the selected app.
    ResumeLogs,
}

/// One CPU/memory sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Percent of one core; `None` when unknown or not running.
    pub cpu: Option<f64>,
    /// Resident bytes; 0 when unknown or not running.
    pub memory: u64,
}

/// Which stream a log line came from (the one enum of the daemon, the keeper and the CLI).
pub use turbo_api::LogStream as Stream;

/// One log line of the selected app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    /// The daemon's RFC 3339 stamp, when the line has one.
    pub at: Option<String>,
    pub text: String,
}

/// How the status line looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mood {
    Info,
    Good,
    Bad,
}

/// Everything on screen.
#[derive(Debug, Default)]
pub struct Model {
    /// Every app, as the daemon last listed them.
    pub apps: Vec<AppStatus>,
    /// Samples per app name, oldest first.
    pub history: HashMap<String, VecDeque<Sample>>,
    /// The selected app's name.
    pub selected: Option<String>,
    /// Case-insensitive substring the names must contain.
    pub filter: String,
    /// Typing into the filter.
    pub editing_filter: bool,
    /// Lines of the selected app's logs, oldest first.
    pub logs: VecDeque<LogLine>,
    /// Following the logs (`l` toggles).
    pub log_stream: bool,
    /// Lines scrolled up from the newest; 0 follows the end.
    pub scroll: usize,
    /// Height of the log pane, set by the last draw (for PgUp/PgDn).
    pub log_page: usize,
    /// Crash statistics and records (newest first) of the selected app.
    pub crashes: Option<(CrashStats, Vec<CrashRecord>)>,
    /// The status line: the outcome of the last action, or a problem.
    pub message: Option<(String, Mood)>,
    /// Daemon version and mode, for the header.
    pub daemon: String,
    /// Unix time in ms of the last refresh (for "5m ago").
    pub now_ms: u64,
    /// What the kernel saw each app do (`GetInsight`), by app id; empty when the daemon has no
    /// answer.
    pub insight: HashMap<u32, turbo_api::AppInsight>,
}

impl Model {
    /// A model before the first refresh.
    #[must_use]
    pub fn new(daemon: String) -> Self {
        Self {
            log_stream: true,
            log_page: 10,
            daemon,
            ..Self::default()
        }
    }

    /// The apps that pass the filter, in the daemon's order (by id).
    #[must_use]
    pub fn visible(&self) -> Vec<&AppStatus> {
        let needle = self.filter.to_lowercase();
        self.apps
            .iter()
            .filter(|a| needle.is_empty() || a.name.to_lowercase().contains(&needle))
            .collect()
    }

    /// The selected app, if it is visible.
    #[must_use]
    pub fn selected_app(&self) -> Option<&AppStatus> {
        let name = self.selected.as_deref()?;
        self.visible().into_iter().find(|a| a.name == name)
    }

    /// Takes a new app list; `sample` adds a point to every app's history (once per second).
    /// Returns the new selection when it changed (the first app at start, a neighbour when the
    /// selected app went away).
    pub fn set_apps(&mut self, apps: Vec<AppStatus>, sample: bool, now_ms: u64) -> Option<Action> {
        let old_index = self.selected_index();
        // instances of one app are rows of their own, named (and acted on) as `name:N`
        let labels = crate::render::instance_labels(&apps);
        self.apps = apps
            .into_iter()
            .zip(labels)
            .map(|(app, name)| AppStatus { name, ..app })
            .collect();
        self.now_ms = now_ms;
        if sample {
            for app in &self.apps {
                let running = app.pid != 0;
                let history = self.history.entry(app.name.clone()).or_default();
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back(Sample {
                    cpu: (running && app.cpu_percent >= 0.0).then_some(app.cpu_percent),
                    memory: if running { app.memory_bytes } else { 0 },
                });
            }
            // forget deleted apps
            let names: Vec<&str> = self.apps.iter().map(|a| a.name.as_str()).collect();
            self.history
                .retain(|name, _| names.contains(&name.as_str()));
        }
        self.keep_selection(old_index)
    }

    /// Index of the selected app among the visible ones.
    fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_deref()?;
        self.visible().iter().position(|a| a.name == name)
    }

    /// After the list or the filter changed: keep the selected app if still visible, else the
    /// one now at its place (or the last), else the first.
    fn keep_selection(&mut self, old_index: Option<usize>) -> Option<Action> {
        let visible = self.visible();
        let still = self
            .selected
            .as_deref()
            .is_some_and(|name| visible.iter().any(|a| a.name == name));
        if still {
            return None;
        }
        let index = old_index.unwrap_or(0).min(visible.len().saturating_sub(1));
        let new = visible.get(index).map(|a| a.name.clone());
        if new == self.selected {
            return None;
        }
        self.select(new)
    }

    fn select(&mut self, name: Option<String>) -> Option<Action> {
        if name == self.selected {
            return None;
        }
        self.selected = name.clone();
        self.logs.clear();
        self.scroll = 0;
        self.crashes = None;
        Some(Action::Selected(name))
    }

    /// Handles a key; returns what the event loop must do.
    pub fn on_key(&mut self, key: Key) -> Option<Action> {
        if key == Key::Interrupt {
            return Some(Action::Quit);
        }
        if self.editing_filter {
            return self.on_filter_key(key);
        }
        let visible: Vec<String> = self.visible().iter().map(|a| a.name.clone()).collect();
        let index = self.selected_index();
        let selected = self
            .selected_app()
            .map(|a| (a.name.clone(), a.state.clone()));
        match key {
            Key::Char('q') => Some(Action::Quit),
            Key::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.keep_selection(index)
            }
            Key::Esc => Some(Action::Quit),
            Key::Up | Key::Char('k') => {
                let i = index.map_or(0, |i| i.saturating_sub(1));
                self.select(visible.get(i).cloned())
            }
            Key::Down | Key::Char('j') => {
                let i = index.map_or(0, |i| (i + 1).min(visible.len().saturating_sub(1)));
                self.select(visible.get(i).cloned())
            }
            Key::Home => self.select(visible.first().cloned()),
            Key::End => self.select(visible.last().cloned()),
            Key::PageUp => {
                self.scroll = (self.scroll + self.log_page.max(1))
                    .min(self.logs.len().saturating_sub(self.log_page));
                None
            }
            Key::PageDown => {
                self.scroll = self.scroll.saturating_sub(self.log_page.max(1));
                None
            }
            Key::Char('/') => {
                self.editing_filter = true;
                None
            }
            Key::Char('l') => {
                self.log_stream = !self.log_stream;
                if self.log_stream {
                    self.logs.clear();
                    self.scroll = 0;
                    Some(Action::ResumeLogs)
                } else {
                    None
                }
            }
            Key::Char('r') => selected.map(|(name, _)| Action::Restart(name)),
            Key::Char('s') => selected.map(|(name, _)| Action::Stop(name)),
            Key::Char('S') => {
                let (name, state) = selected?;
                let running = matches!(
                    state.parse::<AppState>(),
                    Ok(AppState::Online | AppState::Starting)
                );
                if running {
                    self.message = Some((format!("{name} is already {state}"), Mood::Info));
                    None
                } else {
                    Some(Action::Start(name))
                }
            }
            _ => None,
        }
    }

    fn on_filter_key(&mut self, key: Key) -> Option<Action> {
        let index = self.selected_index();
        match key {
            Key::Enter => {
                self.editing_filter = false;
                return None;
            }
            Key::Esc => {
                self.editing_filter = false;
                self.filter.clear();
            }
            Key::Backspace => {
                self.filter.pop();
            }
            Key::Char(c) if !c.is_control() => self.filter.push(c),
            _ => return None,
        }
        self.keep_selection(index)
    }

    /// Appends log lines of the selected app, keeping the view still when scrolled up.
    pub fn push_logs(&mut self, lines: impl IntoIterator<Item = LogLine>) {
        for line in lines {
            if self.logs.len() == LOG_LINES {
                self.logs.pop_front();
            }
            self.logs.push_back(line);
            if self.scroll > 0 {
                self.scroll = (self.scroll + 1).min(self.logs.len().saturating_sub(1));
            }
        }
    }

    /// The history of `name`, oldest first.
    #[must_use]
    pub fn samples(&self, name: &str) -> Vec<Sample> {
        self.history
            .get(name)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: u32, name: &str, state: &str) -> AppStatus {
        AppStatus {
            id,
            name: name.into(),
            state: state.into(),
            pid: if state == "online" { 100 + id } else { 0 },
            cpu_percent: 1.5,
            memory_bytes: 1 << 20,
            ..AppStatus::default()
        }
    }

    fn model() -> Model {
        let mut m = Model::new("0.1.0".into());
        let first = m.set_apps(
            vec![
                app(0, "api", "online"),
                app(1, "worker", "online"),
                app(2, "cron", "stopped"),
            ],
            true,
            0,
        );
        assert_eq!(first, Some(Action::Selected(Some("api".into()))));
        m
    }

    #[test]
    fn moving_the_selection() {
        let mut m = model();
        assert_eq!(m.on_key(Key::Up), None, "already at the top");
        assert_eq!(
            m.on_key(Key::Down),
            Some(Action::Selected(Some("worker".into())))
        );
        assert_eq!(
            m.on_key(Key::Char('j')),
            Some(Action::Selected(Some("cron".into())))
        );
        assert_eq!(m.on_key(Key::Down), None, "already at the bottom");
        assert_eq!(
            m.on_key(Key::Home),
            Some(Action::Selected(Some("api".into())))
        );
    }

    #[test]
    fn actions_on_the_selected_app() {
        let mut m = model();
        assert_eq!(
            m.on_key(Key::Char('r')),
            Some(Action::Restart("api".into()))
        );
        assert_eq!(m.on_key(Key::Char('s')), Some(Action::Stop("api".into())));
        assert_eq!(m.on_key(Key::Char('S')), None, "api is online");
        assert!(m.message.as_ref().unwrap().0.contains("already online"));
        m.on_key(Key::End);
        assert_eq!(m.on_key(Key::Char('S')), Some(Action::Start("cron".into())));
        assert_eq!(m.on_key(Key::Char('q')), Some(Action::Quit));
        assert_eq!(m.on_key(Key::Interrupt), Some(Action::Quit));
    }

    #[test]
    fn filtering_by_name() {
        let mut m = model();
        m.on_key(Key::Char('/'));
        assert_eq!(
            m.on_key(Key::Char('w')),
            Some(Action::Selected(Some("worker".into())))
        );
        assert_ne!(
            m.on_key(Key::Char('q')),
            Some(Action::Quit),
            "typed into the filter"
        );
        assert_eq!(m.filter, "wq");
        assert!(m.visible().is_empty());
        assert_eq!(m.selected, None);
        m.on_key(Key::Backspace);
        m.on_key(Key::Enter);
        assert!(!m.editing_filter);
        assert_eq!(m.visible().len(), 1);
        // Esc clears a filter first, and quits only then
        assert_eq!(m.on_key(Key::Esc), None);
        assert_eq!(m.visible().len(), 3);
        assert_eq!(m.selected.as_deref(), Some("worker"), "selection kept");
        assert_eq!(m.on_key(Key::Esc), Some(Action::Quit));
    }

    #[test]
    fn history_is_bounded_and_follows_the_apps() {
        let mut m = model();
        for t in 0..HISTORY + 5 {
            m.set_apps(
                vec![app(0, "api", "online"), app(2, "cron", "stopped")],
                true,
                t as u64,
            );
        }
        assert_eq!(m.samples("api").len(), HISTORY);
        assert!(m.samples("worker").is_empty(), "deleted apps are forgotten");
        let cron = m.samples("cron");
        assert!(cron.iter().all(|s| s.cpu.is_none() && s.memory == 0));
        // a refresh between samples (a signal) adds no point
        m.set_apps(vec![app(0, "api", "online")], false, 0);
        assert_eq!(m.samples("api").len(), HISTORY);
    }

    #[test]
    fn selection_moves_to_a_neighbour_when_the_app_goes() {
        let mut m = model();
        m.on_key(Key::Down);
        let next = m.set_apps(
            vec![app(0, "api", "online"), app(2, "cron", "stopped")],
            false,
            0,
        );
        assert_eq!(next, Some(Action::Selected(Some("cron".into()))));
        assert_eq!(m.set_apps(vec![], false, 0), Some(Action::Selected(None)));
    }

    #[test]
    fn scrolling_keeps_the_view_still() {
        let mut m = model();
        m.log_page = 5;
        let line = |i: usize| LogLine {
            stream: Stream::Out,
            at: None,
            text: i.to_string(),
        };
        m.push_logs((0..20).map(line));
        m.on_key(Key::PageUp);
        assert_eq!(m.scroll, 5);
        m.push_logs((20..23).map(line));
        assert_eq!(m.scroll, 8, "new lines below do not move what is read");
        m.on_key(Key::PageDown);
        m.on_key(Key::PageDown);
        assert_eq!(m.scroll, 0, "back to following");
        for _ in 0..10 {
            m.on_key(Key::PageUp);
        }
        assert_eq!(m.scroll, 23 - 5, "not past the first line");
    }

    #[test]
    fn log_stream_toggle() {
        let mut m = model();
        assert_eq!(m.on_key(Key::Char('l')), None);
        assert!(!m.log_stream);
        assert_eq!(m.on_key(Key::Char('l')), Some(Action::ResumeLogs));
        assert!(m.log_stream);
    }
}
