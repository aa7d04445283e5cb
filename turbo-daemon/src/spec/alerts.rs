//! Notifications of an app (`on_crash:`, `on_state:`): where they go and how hard to try.

use std::time::Duration;

/// One notification hook: a command or a webhook, with its bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSpec {
    /// Where it goes.
    pub to: AlertTo,
    /// How long one attempt may take (the command is killed, the request abandoned).
    pub timeout: Duration,
    /// Attempts after the first that failed (a webhook's connection error or non-2xx answer,
    /// a command's non-zero exit).
    pub retries: u32,
    /// At most this many notifications of this kind per app in [`AlertSpec::rate_window`];
    /// the others are dropped and counted, so a crash loop cannot flood the receiver.
    pub rate_limit: u32,
    /// The window of [`AlertSpec::rate_limit`].
    pub rate_window: Duration,
}

/// Where a notification goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertTo {
    /// Run this command as the app runs (user, cwd, environment) with the event in `TURBO_*`
    /// variables and as JSON on stdin; `argv[0]` is an absolute path.
    Command(Vec<String>),
    /// POST the event as JSON to this `http://` URL.
    Webhook(String),
}

impl AlertSpec {
    /// Defaults around `to`: 5 s per attempt, 2 retries, 5 per minute.
    #[must_use]
    pub const fn new(to: AlertTo) -> Self {
        Self {
            to,
            timeout: Duration::from_secs(5),
            retries: 2,
            rate_limit: 5,
            rate_window: Duration::from_secs(60),
        }
    }
}
