//! What the adapter puts on the bus is valid D-Bus, whatever an app or a caller wrote.
//!
//! A D-Bus string must not hold a NUL byte. zvariant serialises one anyway, and the
//! `dbus-daemon` then disconnects the sender of the malformed message: the daemon, which
//! stayed alive but deaf (issue 15, item 4: a `turbo.yml` with `name: "a\0b"` was echoed in an
//! error reply). Validation refuses NUL where it can (`config`), but app-derived text (stderr
//! tails, `STATUS=`, health output) and any message quoting input still pass through here: every
//! reply, error, signal and property the adapter sends is made of [`on_wire`] text, with NUL
//! shown as `\0`, and an error message is cut to [`MAX_ERROR_BYTES`] (so a 10 KB name is never
//! echoed whole). It must not change anything but those bytes.

use std::borrow::Cow;

use turbo_api::{
    AppChange, AppConfigInfo, AppInsight, AppStatus, CrashRecord, CrashStats, DaemonInfo, Error,
    ExecRecord, ExitInfo, FieldChange, KernelEvent, ListenDrops, PeerRecord,
};

/// Longest error message the adapter sends (every line of a config error included).
pub const MAX_ERROR_BYTES: usize = 16 * 1024;
/// Longest line of an error message.
const MAX_ERROR_LINE: usize = 1024;
/// Room [`cut`] needs for `… (N more bytes not shown)`.
const CUT_NOTE_ROOM: usize = 64;

/// `text` with every NUL written as `\0`.
#[must_use]
pub fn text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\\0"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Makes a value's strings valid on the bus in place.
pub trait OnWire {
    /// Rewrites every string of `self` with [`text`].
    fn scrub(&mut self);
}

/// `value`, fit for the bus.
#[must_use]
pub fn on_wire<T: OnWire>(mut value: T) -> T {
    value.scrub();
    value
}

impl OnWire for String {
    fn scrub(&mut self) {
        if let Cow::Owned(clean) = text(self) {
            *self = clean;
        }
    }
}

impl<T: OnWire> OnWire for Vec<T> {
    fn scrub(&mut self) {
        self.iter_mut().for_each(OnWire::scrub);
    }
}

impl<A: OnWire, B: OnWire> OnWire for (A, B) {
    fn scrub(&mut self) {
        self.0.scrub();
        self.1.scrub();
    }
}

impl<A: OnWire, B: OnWire, C: OnWire> OnWire for (A, B, C) {
    fn scrub(&mut self) {
        self.0.scrub();
        self.1.scrub();
        self.2.scrub();
    }
}

macro_rules! no_strings {
    ($($t:ty),*) => {$(
        impl OnWire for $t {
            fn scrub(&mut self) {}
        }
    )*};
}
no_strings!(u32, u64, ());

impl OnWire for ExitInfo {
    fn scrub(&mut self) {
        self.reason.scrub();
        self.source.scrub();
    }
}

impl OnWire for AppStatus {
    fn scrub(&mut self) {
        // every string field, named so a new one is not forgotten (the pattern must be complete)
        let Self {
            name,
            state,
            health,
            argv,
            cwd,
            out_log,
            err_log,
            last_exit,
            status_text,
            waiting_for,
            group,
            id: _,
            instance: _,
            pid: _,
            restarts: _,
            uptime_ms: _,
            cpu_percent: _,
            memory_bytes: _,
            memory_pss_bytes: _,
            memory_limit_bytes: _,
            leak_suspected: _,
            memory_growth_bytes_per_hour: _,
            next_restart_in_ms: _,
            next_run_ms: _,
            cpu_max_percent: _,
            cpu_throttled_ms: _,
            pids: _,
            pids_max: _,
            memory_high_bytes: _,
        } = self;
        for s in [
            name,
            state,
            health,
            cwd,
            out_log,
            err_log,
            status_text,
            group,
        ] {
            s.scrub();
        }
        argv.scrub();
        waiting_for.scrub();
        last_exit.scrub();
    }
}

impl OnWire for AppInsight {
    fn scrub(&mut self) {
        self.name.scrub();
        self.unavailable.scrub();
        self.exec_allow.scrub();
        self.recent_execs.scrub();
        self.net_unavailable.scrub();
        self.listening.scrub();
        self.recent_peers.scrub();
        self.listen_drops.scrub();
        self.events.scrub();
    }
}

impl OnWire for KernelEvent {
    fn scrub(&mut self) {
        self.kind.scrub();
        self.detail.scrub();
    }
}

impl OnWire for PeerRecord {
    fn scrub(&mut self) {
        self.direction.scrub();
        self.peer.scrub();
    }
}

impl OnWire for ListenDrops {
    fn scrub(&mut self) {
        self.addr.scrub();
    }
}

impl OnWire for ExecRecord {
    fn scrub(&mut self) {
        self.filename.scrub();
    }
}

impl OnWire for CrashRecord {
    fn scrub(&mut self) {
        let Self {
            reason,
            signal_sender_comm,
            stderr_tail,
            source,
            detail,
            at_ms: _,
            code: _,
            signal: _,
            uptime_ms: _,
            restart_number: _,
            memory_bytes: _,
            memory_peak_bytes: _,
            signal_sender_pid: _,
        } = self;
        for s in [reason, signal_sender_comm, source, detail] {
            s.scrub();
        }
        stderr_tail.scrub();
    }
}

impl OnWire for CrashStats {
    fn scrub(&mut self) {
        self.most_common_reason.scrub();
    }
}

impl OnWire for AppConfigInfo {
    fn scrub(&mut self) {
        let Self {
            autorestart,
            env_names,
            log_format,
            desired,
            user,
            group,
            groups,
            umask,
            rlimits,
            listen,
            health_check,
            health_last_error,
            watch_paths,
            watch_ignore,
            ready,
            memory_enforce,
            memory_cgroup,
            limits,
            cgroups,
            source,
            kind,
            depends_on,
            cron,
            cron_action,
            cron_overlap,
            timezone,
            retries: _,
            depends_timeout_ms: _,
            restart_with_deps: _,
            restart_delay_ms: _,
            restart_factor: _,
            restart_max_delay_ms: _,
            restart_reset_after_ms: _,
            crash_loop_max: _,
            crash_loop_window_ms: _,
            max_restarts: _,
            stop_exit_codes: _,
            stop_signal: _,
            kill_timeout_ms: _,
            log_max_size: _,
            log_keep: _,
            uid: _,
            gid: _,
            nice: _,
            oom_score_adj: _,
            instances: _,
            watch_delay_ms: _,
            ready_timeout_ms: _,
            watchdog_ms: _,
        } = self;
        for s in [
            autorestart,
            log_format,
            desired,
            user,
            group,
            umask,
            health_check,
            health_last_error,
            ready,
            memory_enforce,
            memory_cgroup,
            source,
            kind,
            cron,
            cron_action,
            cron_overlap,
            timezone,
        ] {
            s.scrub();
        }
        for list in [
            env_names,
            listen,
            watch_paths,
            watch_ignore,
            cgroups,
            depends_on,
        ] {
            list.scrub();
        }
        for (key, value) in limits {
            key.scrub();
            value.scrub();
        }
        for (name, _) in groups {
            name.scrub();
        }
        for (name, _, _) in rlimits {
            name.scrub();
        }
    }
}

impl OnWire for AppChange {
    fn scrub(&mut self) {
        let Self {
            name,
            action,
            fields,
        } = self;
        name.scrub();
        action.scrub();
        for FieldChange { field, how } in fields {
            field.scrub();
            how.scrub();
        }
    }
}

impl OnWire for DaemonInfo {
    fn scrub(&mut self) {
        let Self {
            version,
            mode,
            bus_address,
            home,
            log_dir,
            ebpf_setting,
            metrics_address,
            metrics_off_reason,
            event_source,
            event_source_reason,
            state_error,
            ebpf_programs,
            event_fallbacks,
            pid: _,
            ebpf_exit_events: _,
            events_lost: _,
            uptime_ms: _,
            apps: _,
        } = self;
        for s in [
            version,
            mode,
            bus_address,
            home,
            log_dir,
            ebpf_setting,
            metrics_address,
            metrics_off_reason,
            event_source,
            event_source_reason,
            state_error,
        ] {
            s.scrub();
        }
        ebpf_programs.scrub();
        event_fallbacks.scrub();
    }
}

/// An error message fit for the bus: NUL shown as `\0`, each line at most [`MAX_ERROR_LINE`]
/// bytes and the whole at most [`MAX_ERROR_BYTES`], cut on a character boundary with what was
/// left out said.
#[must_use]
pub fn message(text_in: &str) -> String {
    let clean = text(text_in);
    let mut out = String::with_capacity(clean.len().min(MAX_ERROR_BYTES));
    for (i, line) in clean.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&cut(line, MAX_ERROR_LINE));
        if out.len() > MAX_ERROR_BYTES {
            // room for the note of what was left out, so the whole stays within the bound
            return cut(&out, MAX_ERROR_BYTES - CUT_NOTE_ROOM).into_owned();
        }
    }
    out
}

/// `line` if it is at most `max` bytes, else its start and how much was left out.
fn cut(line: &str, max: usize) -> Cow<'_, str> {
    if line.len() <= max {
        return Cow::Borrowed(line);
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} more bytes not shown)",
        &line[..end],
        line.len() - end
    ))
}

impl OnWire for Error {
    fn scrub(&mut self) {
        match self {
            Self::ZBus(_) => {}
            Self::NotFound(m)
            | Self::AlreadyExists(m)
            | Self::InvalidArgument(m)
            | Self::InvalidConfig(m)
            | Self::SpawnFailed(m)
            | Self::AccessDenied(m)
            | Self::Failed(m) => *m = message(m),
        }
    }
}

/// What replaces an app's own output (health-check output, crash stderr) for a caller who may
/// not read its logs.
pub const HIDDEN_OUTPUT: &str = "(hidden: only root and the app's user may read its output)";

/// `crash` without the app's own output: its stderr lines and the health-check output kept as
/// its detail.
pub fn hide_output(crash: &mut CrashRecord) {
    if !crash.stderr_tail.is_empty() {
        crash.stderr_tail = vec![HIDDEN_OUTPUT.to_owned()];
    }
    if !crash.detail.is_empty() {
        HIDDEN_OUTPUT.clone_into(&mut crash.detail);
    }
}

/// `error` with the health-check output after the supervisor's `health check failed: ` (to the
/// end of its line) replaced by [`HIDDEN_OUTPUT`].
pub fn hide_health_output(error: &mut Error) {
    let m = match error {
        Error::ZBus(_) => return,
        Error::InvalidConfig(m)
        | Error::InvalidArgument(m)
        | Error::NotFound(m)
        | Error::AlreadyExists(m)
        | Error::SpawnFailed(m)
        | Error::AccessDenied(m)
        | Error::Failed(m) => m,
    };
    *m = m
        .split('\n')
        .map(|line| match line.split_once(HEALTH_FAILED) {
            Some((head, _)) => format!("{head}{HEALTH_FAILED}{HIDDEN_OUTPUT}"),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
}

/// How the supervisor introduces a failed check's output in a readiness error.
const HEALTH_FAILED: &str = crate::supervisor::HEALTH_FAILED;

/// A method's answer, fit for the bus: the value's strings, or the error's message.
///
/// # Errors
/// `result`'s error, scrubbed.
pub fn answer<T: OnWire>(result: Result<T, Error>) -> Result<T, Error> {
    match result {
        Ok(v) => Ok(on_wire(v)),
        Err(e) => Err(on_wire(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_shown_and_long_lines_are_cut() {
        assert_eq!(text("a\0b"), "a\\0b");
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
        let long = format!("name '{}' is too long", "x".repeat(10_000));
        let m = message(&long);
        assert!(m.len() < MAX_ERROR_LINE + 40, "{}", m.len());
        assert!(m.ends_with("more bytes not shown)"), "{m}");
        let many = "y\n".repeat(100_000);
        assert!(message(&many).len() <= MAX_ERROR_BYTES);
        let mut e = Error::InvalidConfig("bad \0 name".into());
        e.scrub();
        assert!(matches!(e, Error::InvalidConfig(m) if m == "bad \\0 name"));
    }

    #[test]
    fn app_output_can_be_hidden() {
        let mut e = Error::Failed(
            "'a' is not ready after 2s: health check failed: token=s3cret\nnext".into(),
        );
        hide_health_output(&mut e);
        assert!(
            matches!(&e, Error::Failed(m) if m == &format!("'a' is not ready after 2s: health check failed: {HIDDEN_OUTPUT}\nnext")),
            "{e:?}"
        );
        let mut c = CrashRecord {
            stderr_tail: vec!["s3cret".into()],
            detail: "token=s3cret".into(),
            ..CrashRecord::default()
        };
        hide_output(&mut c);
        assert_eq!(
            (c.stderr_tail, c.detail),
            (vec![HIDDEN_OUTPUT.to_owned()], HIDDEN_OUTPUT.to_owned())
        );
    }

    #[test]
    fn every_string_of_a_status_is_scrubbed() {
        let mut s = AppStatus {
            name: "n\0".into(),
            argv: vec!["a\0".into()],
            status_text: "s\0".into(),
            ..AppStatus::default()
        };
        s.last_exit.reason = "r\0".into();
        s.scrub();
        assert_eq!(s.name, "n\\0");
        assert_eq!(s.status_text, "s\\0");
        assert_eq!(s.argv[0], "a\\0");
        assert_eq!(s.last_exit.reason, "r\\0");
    }
}
