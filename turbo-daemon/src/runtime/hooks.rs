//! Runs an app's hooks (`Action::RunHook`): as the app runs (user, cwd, environment, limits),
//! in their own process group, killed with it at the hook's timeout. Their output goes into
//! the app's log, each line marked `[pre_start]` (etc.), through the same route as the app's
//! own output (the log keeper). The outcome comes back as `Input::HookDone`; when a hook runs
//! and what its outcome means is the supervisor's (`supervisor::hooks`).

use std::{collections::VecDeque, os::fd::OwnedFd};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
};

use super::{Internal, Runtime, probe, spawner};
use crate::{
    events::WaitStatus,
    os::process::{self as os, SIGKILL},
    spec::{AppSpec, HookKind},
    supervisor::{AppId, HookFailure, Input},
};

/// Stderr lines of a failed hook kept for its message.
const TAIL_LINES: usize = 5;

impl Runtime {
    /// Starts `hook` of app `id` and a task that reports its end.
    pub(super) fn run_hook(&mut self, id: AppId, hook: HookKind, token: u64, spec: &AppSpec) {
        let Some(h) = spec.hooks.get(hook).cloned() else {
            return;
        };
        let instance = self.sup.app(id).map_or(0, |a| a.instance);
        let tx = self.chan.internal_tx.clone();
        let done = move |pid: u32, result: Result<(), HookFailure>| {
            let _ = tx.send(Internal::Input(Input::HookDone {
                app: id,
                hook,
                token,
                pid,
                result,
            }));
        };
        let env = [
            ("TURBO_HOOK".to_owned(), hook.as_str().to_owned()),
            ("TURBO_APP_NAME".to_owned(), spec.name.clone()),
            ("TURBO_INSTANCE".to_owned(), instance.to_string()),
        ];
        let name = h.argv.join(" ");
        let started = self.output.prepare(spec, instance).and_then(|()| {
            let child =
                spawner::spawn_aside(spec, &h.argv, &env, None).map_err(|e| e.to_string())?;
            let (out_tx, out_rx) = pipe::pipe().map_err(|e| e.to_string())?;
            let (err_tx, err_rx) = pipe::pipe().map_err(|e| e.to_string())?;
            let fd = |rx: pipe::Receiver| rx.into_nonblocking_fd().map_err(|e| e.to_string());
            let source = crate::logs::Source {
                instance,
                pid: child.pid,
            };
            self.output.queue(source, spec, fd(out_rx)?, fd(err_rx)?);
            Ok((child, out_tx, err_tx))
        });
        let (child, out_tx, err_tx) = match started {
            Ok(started) => started,
            Err(e) => {
                tracing::warn!(app = %spec.name, "{} {name} cannot start: {e}", hook.as_str());
                // as a shell says of a command it cannot run
                done(
                    0,
                    Err(HookFailure {
                        status: WaitStatus::exited(127),
                        message: format!("{name}: {e}"),
                    }),
                );
                return;
            }
        };
        let (app, timeout) = (spec.name.clone(), h.timeout);
        tracing::info!(app = %app, pid = child.pid, "{} {name}", hook.as_str());
        tokio::spawn(async move {
            let pid = child.pid;
            let marker = format!("[{}] ", hook.as_str());
            let copy_out = copy_marked(child.stdout, out_tx, &marker);
            let copy_err = copy_marked(child.stderr, err_tx, &marker);
            let wait = async {
                let status = tokio::time::timeout(timeout, probe::wait(child.pidfd)).await;
                // leftovers of the hook, or the whole hook at its timeout
                let _ = os::signal_group(pid, SIGKILL);
                status
            };
            let (_, tail, status) = tokio::join!(copy_out, copy_err, wait);
            let tail = tail.into_iter().collect::<Vec<_>>().join(" / ");
            let sep = if tail.is_empty() { "" } else { ": " };
            let result = match status {
                Ok(Ok(s)) if s.code() == Some(0) => Ok(()),
                Ok(Ok(status)) => Err(HookFailure {
                    status,
                    message: format!("{name} {}{sep}{tail}", describe(status)),
                }),
                Ok(Err(e)) => Err(HookFailure {
                    status: WaitStatus::exited(127),
                    message: format!("{name}: {e}"),
                }),
                Err(_) => Err(HookFailure {
                    status: WaitStatus::signaled(9),
                    message: format!(
                        "{name} killed after its {}ms timeout{sep}{tail}",
                        timeout.as_millis()
                    ),
                }),
            };
            if let Err(f) = &result {
                tracing::warn!(app = %app, "{} failed: {}", hook.as_str(), f.message);
            }
            done(pid, result);
        });
    }
}

fn describe(status: WaitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended".to_owned(),
    }
}

/// Copies the lines of `from` to `to`, each behind `marker`; returns the last
/// [`TAIL_LINES`] lines (without the marker).
async fn copy_marked(from: OwnedFd, mut to: pipe::Sender, marker: &str) -> VecDeque<String> {
    let mut tail = VecDeque::new();
    let Ok(mut from) = pipe::Receiver::from_owned_fd_unchecked(from) else {
        return tail;
    };
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = from.read(&mut chunk).await.unwrap_or(0);
        if n > 0 {
            pending.extend_from_slice(&chunk[..n]);
        }
        // whole lines, or what is left at the end
        while let Some(end) = pending
            .iter()
            .position(|b| *b == b'\n')
            .or_else(|| (n == 0 && !pending.is_empty()).then(|| pending.len() - 1))
        {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\n');
            let _ = to.write_all(format!("{marker}{text}\n").as_bytes()).await;
            if !text.trim().is_empty() {
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text.chars().take(200).collect());
            }
        }
        if n == 0 {
            return tail;
        }
    }
}
