//! The Prometheus exporter: `GET /metrics` on a TCP address (loopback by default), in the text
//! exposition format.
//!
//! A thin adapter, like `dbus`: every scrape sends one [`Request::Metrics`] to the runtime,
//! which measures what it reports *then* (process trees read from `/proc` on demand, counters
//! from its books), and this module only turns that [`MetricsSnapshot`](crate::runtime::MetricsSnapshot) into text. It must not
//! own or cache state: nothing is kept between two scrapes, so a deleted app disappears from
//! the next scrape and nothing here can drift from what `turbo status` says.
//!
//! Rendering ([`render`]) writes the text exposition format ([`text`]) straight from the
//! snapshot, family by family, with no registry in between: a scrape of 1000 apps is some
//! 67,000 series, and storing each under a hashed label set before writing it (what a
//! `metrics` recorder does) was most of a scrape's time.
//!
//! The server is hyper's HTTP/1 connection driver on a tokio listener (so a scrape can ask the
//! runtime first), with a header timeout so an idle client cannot hold a connection forever. With
//! `--metrics-web-config` ([`web`]) each connection is first a TLS session and/or each request
//! must carry basic-auth credentials; the exporter serves metrics only, never control, whatever
//! address it listens on.
//!
//! Metric names and labels are listed in docs/metrics.md. Labels are bounded: `app`,
//! `app_instance`, `event`, `outcome`, `group` (only on apps with an `app_group`: to PromQL a missing label and an
//! empty one are the same, so `sum by (group)` works across all apps), `reason`, `state`, `source`, `mode`, `type`, `status`, `version`, `stream`;
//! never a pid. The instance number is `app_instance`, not `instance`: Prometheus attaches `instance`
//! (and `job`) to every scraped series itself and would rename ours to `exported_instance`.

mod render;
mod text;
pub mod web;

use std::{convert::Infallible, fmt::Write as _, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{Method, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::mpsc};

use crate::runtime::Request;
pub use render::{Detail, render};
pub use web::WebConfig;

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The default listen address of a root daemon (`--metrics-listen`): loopback only, so nothing
/// is exposed to the network unless the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The first port of the per-user defaults, and how many there are: 10000-32767, below the
/// kernel's default ephemeral range (32768-60999), so a default never collides with an outgoing
/// connection's port.
const USER_PORTS: (u16, u16) = (10_000, 22_768);

/// The default exporter address of a daemon running as `uid`: [`DEFAULT_LISTEN`] for root;
/// for anyone else loopback port `10000 + uid mod 22768` (uid 1000: 11000), so the user-mode
/// daemons of several users on one host do not all want 9464, and the second one's exporter is
/// not silently off (issue 15). `turbo info` shows the address.
#[must_use]
pub fn default_listen(uid: u32) -> SocketAddr {
    let port = if uid == 0 {
        9464
    } else {
        let offset = u16::try_from(uid % u32::from(USER_PORTS.1)).unwrap_or(0);
        USER_PORTS.0 + offset
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Binds the exporter's listener.
///
/// # Errors
/// When the address cannot be bound (in use, not local, no permission).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves scrapes on `listener` until the process ends; each scrape asks the runtime through
/// `requests` and shows what `detail` asks for. With a `web` config, connections are TLS
/// and/or requests need basic auth.
pub async fn serve(
    listener: TcpListener,
    requests: mpsc::UnboundedSender<Request>,
    web: Option<Arc<WebConfig>>,
    detail: Detail,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // out of fds, usually: wait instead of spinning on the error
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let requests = requests.clone();
        let web = web.clone();
        tokio::spawn(async move {
            match web.as_ref().and_then(|w| w.tls().cloned()) {
                Some(tls) => {
                    // the handshake has the same bound as the request header
                    match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, requests, web, detail).await,
                        Ok(Err(e)) => tracing::debug!("metrics: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("metrics: TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, requests, web, detail).await,
            }
        });
    }
}

/// How long a client may take to send a request's headers (and a TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_connection<S>(
    stream: S,
    requests: mpsc::UnboundedSender<Request>,
    web: Option<Arc<WebConfig>>,
    detail: Detail,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let requests = requests.clone();
        let web = web.clone();
        async move {
            if let Some(web) = &web {
                let header = req.headers().get(hyper::header::AUTHORIZATION);
                if !web
                    .authorised(header.map(hyper::header::HeaderValue::as_bytes))
                    .await
                {
                    return Ok(unauthorised());
                }
            }
            answer(req, requests, detail).await
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!("metrics: connection ended: {e}");
    }
}

/// `401` with the challenge that makes clients send basic auth.
fn unauthorised() -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"Unauthorized\n")));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic realm=\"turbo-daemon\""),
    );
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    requests: mpsc::UnboundedSender<Request>,
    detail: Detail,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        resp
    };
    let text = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "only GET\n".into(),
        ));
    }
    match req.uri().path() {
        "/metrics" => {}
        "/" => {
            return Ok(reply(
                StatusCode::OK,
                text,
                "turbo-daemon: metrics are at /metrics\n".into(),
            ));
        }
        _ => return Ok(reply(StatusCode::NOT_FOUND, text, "not found\n".into())),
    }
    let gzip = accepts_gzip(req.headers());
    let asked_at = std::time::Instant::now();
    // the runtime answers every scrape, so a failure is the channel's: it is shutting down
    let Ok(snapshot) = crate::dbus::ask(&requests, Request::Metrics).await else {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "the daemon is shutting down\n".into(),
        ));
    };
    let measured_at = std::time::Instant::now();
    let apps = snapshot.apps.len();
    // rendering thousands of series takes tens of milliseconds: not on the daemon's loop thread
    let rendered = tokio::task::spawn_blocking(move || {
        let text = render(&snapshot, detail);
        let plain = text.len();
        let body = if gzip {
            compress(text.as_bytes())
        } else {
            text.into_bytes()
        };
        (body, plain)
    })
    .await;
    let Ok((body, plain)) = rendered else {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            "rendering the metrics failed\n".into(),
        ));
    };
    tracing::debug!(
        apps,
        bytes = plain,
        sent = body.len(),
        "metrics: scrape measured in {:?}, rendered in {:?}",
        measured_at - asked_at,
        measured_at.elapsed()
    );
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    // caches between scraper and exporter must not give a gzip answer to a plain client
    headers.insert(
        hyper::header::VARY,
        hyper::header::HeaderValue::from_static("Accept-Encoding"),
    );
    if gzip {
        headers.insert(
            hyper::header::CONTENT_ENCODING,
            hyper::header::HeaderValue::from_static("gzip"),
        );
    }
    Ok(resp)
}

/// Whether the client takes a gzip body (`Accept-Encoding: gzip`, as Prometheus always sends;
/// `gzip;q=0` refuses it).
fn accepts_gzip(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// `text` gzip-compressed at the fastest level: the exposition text repeats its names and
/// labels so much that level 1 already sends a sixteenth of it (23 MB of text with 10,000 apps),
/// at a fraction of the CPU of the default level.
fn compress(text: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 8),
        flate2::Compression::fast(),
    );
    // writing to a Vec cannot fail
    let _ = gz.write_all(text);
    gz.finish().unwrap_or_default()
}

/// The names of the metric families in an exposition text (for tests and docs checks).
#[must_use]
pub fn family_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether the exporter serves, and where; or why not. `turbo info`, `turbo status` and the
/// Manager's `MetricsAddress`/`MetricsUrl`/`MetricsOffReason` properties show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// Serving on this address, over TLS or plain HTTP.
    Serving {
        /// Where it listens.
        addr: SocketAddr,
        /// Whether it speaks TLS only (`tls_server_config` in `--metrics-web-config`).
        tls: bool,
    },
    /// Turned off (`--metrics-listen off`).
    Off,
    /// Asked for, but the address could not be bound: why.
    BindFailed(String),
}

impl Exporter {
    /// The address it serves on.
    #[must_use]
    pub fn address(&self) -> Option<String> {
        match self {
            Self::Serving { addr, .. } => Some(addr.to_string()),
            Self::Off | Self::BindFailed(_) => None,
        }
    }

    /// The URL a scraper fetches (`https://` when the exporter speaks TLS only).
    #[must_use]
    pub fn url(&self) -> Option<String> {
        match self {
            Self::Serving { addr, tls } => {
                let scheme = if *tls { "https" } else { "http" };
                Some(format!("{scheme}://{addr}/metrics"))
            }
            Self::Off | Self::BindFailed(_) => None,
        }
    }

    /// Why it is off, in one line.
    #[must_use]
    pub fn off_reason(&self) -> Option<String> {
        match self {
            Self::Serving { .. } => None,
            Self::Off => Some("--metrics-listen off".into()),
            Self::BindFailed(why) => Some(why.clone()),
        }
    }
}

/// A one-line description of where the exporter listens and how it is protected, for the
/// daemon log.
#[must_use]
pub fn describe_listen(addr: &SocketAddr, web: Option<&WebConfig>) -> String {
    let scheme = if web.is_some_and(|w| w.tls().is_some()) {
        "https"
    } else {
        "http"
    };
    let mut s = format!("metrics: serving Prometheus metrics on {scheme}://{addr}/metrics");
    if let Some(w) = web {
        let _ = write!(s, " with {} ({})", w.describe(), w.path.display());
    }
    if !addr.ip().is_loopback() {
        let _ = write!(
            s,
            " (not loopback: reachable from the network; metrics only, no control)"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_sent_to_clients_that_accept_it() {
        let with = |values: &[&str]| {
            let mut h = hyper::HeaderMap::new();
            for v in values {
                h.append(
                    hyper::header::ACCEPT_ENCODING,
                    hyper::header::HeaderValue::from_str(v).unwrap(),
                );
            }
            accepts_gzip(&h)
        };
        assert!(with(&["gzip"]));
        assert!(with(&["identity, GZIP;q=0.5"]));
        assert!(with(&["br", "gzip"]));
        assert!(with(&["*"]));
        assert!(!with(&[]));
        assert!(!with(&["identity"]));
        assert!(!with(&["gzip;q=0"]));
        assert!(!with(&["x-gzip-ish"]));
        let text = b"turbo_app_up{app=\"a\"} 1\n".repeat(100);
        let gz = compress(&text);
        assert!(gz.len() < text.len() / 10, "{}", gz.len());
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn every_user_gets_its_own_default_port() {
        assert_eq!(default_listen(0).to_string(), DEFAULT_LISTEN);
        assert_eq!(default_listen(1000).to_string(), "127.0.0.1:11000");
        assert_eq!(default_listen(1001).to_string(), "127.0.0.1:11001");
        assert_eq!(default_listen(65534).port(), 10_000 + 65534 % 22_768);
        assert!((10_000..32_768).contains(&default_listen(u32::MAX).port()));
    }
}
