//! Health probes: runs one check of an app and says, in one line, what failed.
//!
//! HTTP goes through hyper's HTTP/1 client on a plain TCP connection, TCP is a connect, and a
//! command runs like the app does ([`super::spawner::spawn_aside`]: its user, limits, cwd and
//! environment, in its own process group), killed with its group at the timeout. Every probe
//! is bounded by the check's `timeout`. Nothing here decides what a result means: the
//! supervisor does. The HTTP client ([`request`]) and the command runner ([`run_aside`]) serve
//! the notifications too (`alerts.rs`).

use std::os::fd::OwnedFd;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::{io::AsyncReadExt, io::unix::AsyncFd, net::TcpStream};

use crate::{
    os::process::{self as os, SIGKILL},
    spec::{AppSpec, HealthProbe, HealthSpec},
};

/// Runs `check` once for the app `app` (whose identity a command check takes). `Err` says what
/// failed, on one line.
pub async fn run(check: &HealthSpec, app: &AppSpec) -> Result<(), String> {
    let timeout = check.timeout;
    let probe = async {
        match &check.probe {
            HealthProbe::Http { url, status } => http(url, *status).await,
            HealthProbe::Tcp { addr } => TcpStream::connect(addr.as_str())
                .await
                .map(drop)
                .map_err(|e| format!("tcp {addr}: {e}")),
            // bounds itself, as it must kill what it started
            HealthProbe::Cmd { argv } => command(argv, app, timeout).await,
        }
    };
    if matches!(check.probe, HealthProbe::Cmd { .. }) {
        return probe.await;
    }
    match tokio::time::timeout(timeout, probe).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{}: no answer within {}ms",
            check.probe.describe(),
            timeout.as_millis()
        )),
    }
}

async fn http(url: &str, (lo, hi): (u16, u16)) -> Result<(), String> {
    let code = request(hyper::Method::GET, url, Bytes::new(), "turbo-health-check").await?;
    if (lo..=hi).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {url}: status {code}, expected {lo}-{hi}"))
    }
}

/// One HTTP/1 request to `url` on a connection of its own (a JSON `body` unless empty); the
/// status of the answer. Unbounded: the caller bounds it.
///
/// # Errors
/// One line: the method, the URL and what failed.
pub(super) async fn request(
    method: hyper::Method,
    url: &str,
    body: Bytes,
    agent: &str,
) -> Result<u16, String> {
    let fail = |what: &dyn std::fmt::Display| format!("{method} {url}: {what}");
    let uri: hyper::Uri = url.parse().map_err(|e| fail(&e))?;
    let host = uri.host().ok_or_else(|| fail(&"no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority().map_or(host, |a| a.as_str()).to_owned();
    let ip_host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((ip_host, port))
        .await
        .map_err(|e| fail(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(&e))?;
    // the connection is driven next to the request; it ends when the response is read
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = hyper::Request::builder()
        .method(method.clone())
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, agent)
        .header(hyper::header::CONNECTION, "close");
    if !body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = builder.body(Full::new(body)).map_err(|e| fail(&e))?;
    let response = sender.send_request(request).await.map_err(|e| fail(&e));
    driver.abort();
    Ok(response?.status().as_u16())
}

/// Runs `argv` as the app would run; healthy on exit status 0. The last line it wrote to
/// stderr (or stdout) goes into the message of a failure.
async fn command(
    argv: &[String],
    app: &AppSpec,
    timeout: std::time::Duration,
) -> Result<(), String> {
    run_aside(argv, app, &[], None, timeout).await
}

/// Runs `argv` as a process of `app` runs (its user, limits, cwd, environment) with `env` set
/// last and `stdin` on its stdin (else /dev/null), in a process group of its own that is killed
/// at `timeout`; `Ok` on exit status 0. A failure's message ends with the last line it wrote to
/// stderr (or stdout).
///
/// # Errors
/// One line: `cmd <argv>: <what happened>[: <last line>]`.
pub(super) async fn run_aside(
    argv: &[String],
    app: &AppSpec,
    env: &[(String, String)],
    stdin: Option<String>,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let name = argv.join(" ");
    let (reader, feed) = match stdin {
        Some(text) => {
            let (reader, mut writer) = std::io::pipe().map_err(|e| format!("cmd {name}: {e}"))?;
            // a large input must not block the loop on a full pipe; a reader that stops early
            // ends the write with EPIPE
            let feed = tokio::task::spawn_blocking(move || {
                let _ = std::io::Write::write_all(&mut writer, text.as_bytes());
            });
            (Some(reader.into()), Some(feed))
        }
        None => (None, None),
    };
    let child = super::spawner::spawn_aside(app, argv, env, reader)
        .map_err(|e| format!("cmd {name}: {e}"))?;
    drop(feed);
    let pid = child.pid;
    let output = tokio::spawn(async move {
        let (out, err) = tokio::join!(read_all(child.stdout), read_all(child.stderr));
        if err.trim().is_empty() { out } else { err }
    });
    let status = match tokio::time::timeout(timeout, wait(child.pidfd)).await {
        Ok(status) => status,
        Err(_) => {
            // the whole group: a shell script's children must not outlive the check
            let _ = os::signal_group(pid, SIGKILL);
            output.abort();
            return Err(format!(
                "cmd {name}: killed after the {}ms timeout",
                timeout.as_millis()
            ));
        }
    };
    let _ = os::signal_group(pid, SIGKILL); // leftovers of the check
    let text = tokio::time::timeout(std::time::Duration::from_millis(200), output)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let last: String = last.chars().take(200).collect();
    match status {
        Ok(s) if s.code() == Some(0) => Ok(()),
        Ok(s) => {
            let how = match (s.code(), s.signal()) {
                (Some(c), _) => format!("exited with {c}"),
                (_, Some(sig)) => format!("killed by signal {sig}"),
                _ => "ended".to_owned(),
            };
            let sep = if last.is_empty() { "" } else { ": " };
            Err(format!("cmd {name}: {how}{sep}{last}"))
        }
        Err(e) => Err(format!("cmd {name}: {e}")),
    }
}

/// Reads a pipe to its end (at most 64 KiB are kept).
pub(super) async fn read_all(fd: OwnedFd) -> String {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd) else {
        return String::new();
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        if buf.len() < 64 * 1024 {
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Waits for the process behind `pidfd` to exit and reaps it.
pub(super) async fn wait(pidfd: OwnedFd) -> std::io::Result<crate::events::WaitStatus> {
    // SAFETY: the AsyncFd owns the pidfd, so the fd stays open and the same while registered.
    let afd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
    loop {
        let mut guard = afd.readable().await?;
        match os::reap(afd.get_ref()) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
            other => return other,
        }
    }
}
