//! The exporter's web config file (`--metrics-web-config`): optional TLS and basic auth in the
//! format Prometheus exporters share (exporter-toolkit's `--web.config.file`, as node_exporter
//! reads it), so one file and one scrape config serve a fleet of exporters.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/turbo/metrics.crt
//!   key_file: /etc/turbo/metrics.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional, default NoClientCert
//!   client_ca_file: /etc/turbo/clients-ca.crt       # with a verifying client_auth_type
//!   min_version: TLS12                              # optional: TLS12 (default) or TLS13
//!   max_version: TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                          # bcrypt hashes only
//! ```
//!
//! Everything is read and checked once, when the daemon starts ([`WebConfig::load`]): a file
//! that is missing, unreadable, has a key this reader does not know, a PEM file without a
//! certificate or key, or a password that is not a bcrypt hash is a one-line error, and the
//! daemon refuses to start rather than serve the metrics unprotected. Changing the file takes a
//! daemon restart (the apps live on).
//!
//! Basic-auth passwords are checked with bcrypt's own verification (constant time in the
//! password); an unknown user is checked against a dummy hash so the answer takes as long as for
//! a known one. bcrypt is slow on purpose (tens of milliseconds), so, as exporter-toolkit does,
//! each outcome is cached under a SHA-256 digest of (user, stored hash, password) — the password
//! itself is never kept — and the bcrypt calls run one at a time on a blocking thread, never on
//! the daemon's loop.
//!
//! This module serves nothing and must not know about the runtime: `metrics` asks it whether a
//! request may pass and for the TLS acceptor.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use rustls::{
    RootCertStore, ServerConfig, SupportedProtocolVersion,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
    version::{TLS12, TLS13},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::Deserialize;
use tokio::sync::Semaphore;

/// How many verified credentials are remembered; the cache starts over when full (a fleet's
/// Prometheus servers use a handful).
const CACHE_ENTRIES: usize = 100;

/// A valid bcrypt hash (of a random string, cost 10: the usual `htpasswd -B` cost) that unknown
/// users are checked against, so that their answer takes as long as a known user's.
const DUMMY_HASH: &str = "$2b$10$8Z0p2bZ1d0b7O5c6S1Qk5e1yJQpB2mS3aB8xkqTq1b7bQ0uW0y3vS";

/// The file as written; unknown keys are refused, as exporter-toolkit refuses them.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    tls_server_config: Option<TlsFormat>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFormat {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// A checked web config: what the exporter serves with.
pub struct WebConfig {
    /// The file it came from (for the log).
    pub path: PathBuf,
    tls: Option<tokio_rustls::TlsAcceptor>,
    users: BTreeMap<String, String>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// One bcrypt at a time: a burst of bad passwords costs one core, not all of them.
    bcrypt: Semaphore,
}

impl fmt::Debug for WebConfig {
    // never the hashes
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a web config cannot be used: one line naming the file, the problem and what to do.
#[derive(Debug, thiserror::Error)]
#[error("--metrics-web-config {path}: {problem}")]
pub struct WebConfigError {
    path: String,
    problem: String,
}

impl WebConfig {
    /// Reads and checks the web config file at `path`.
    ///
    /// # Errors
    /// A one-line [`WebConfigError`] for a missing or unreadable file, bad YAML, an unknown key,
    /// a PEM file without what it should hold, a certificate and key that do not go together,
    /// an unsupported client auth type or TLS version, or a password that is not a bcrypt hash.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let fail = |problem: String| WebConfigError {
            path: path.display().to_string(),
            problem: problem.replace('\n', " "),
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let file: FileFormat = if text.trim().is_empty() {
            FileFormat::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| {
                fail(format!(
                    "{e} (known keys: tls_server_config, basic_auth_users)"
                ))
            })?
        };
        if file.tls_server_config.is_none() && file.basic_auth_users.is_none() {
            return Err(fail(
                "it sets neither tls_server_config nor basic_auth_users; without \
                 --metrics-web-config the exporter serves plain HTTP"
                    .into(),
            ));
        }
        // relative paths are the file's, as exporter-toolkit resolves them
        let base = path.parent().unwrap_or(Path::new("/"));
        let tls = file
            .tls_server_config
            .map(|t| tls_acceptor(&t, base))
            .transpose()
            .map_err(fail)?;
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(fail(format!(
                    "basic_auth_users: the user name '{user}' has a ':', which basic auth cannot carry"
                )));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(fail(format!(
                    "basic_auth_users.{user}: the password is not a bcrypt hash ($2y$10$…); \
                     make one with `htpasswd -nBC 10 {user}`"
                )));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            tls,
            users,
            cache: Mutex::new(HashMap::new()),
            bcrypt: Semaphore::new(1),
        })
    }

    /// The TLS acceptor, when the exporter serves HTTPS.
    #[must_use]
    pub fn tls(&self) -> Option<&tokio_rustls::TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Whether basic auth is required.
    #[must_use]
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// What the daemon log says about the protection, e.g. `TLS, basic auth (1 user)`.
    #[must_use]
    pub fn describe(&self) -> String {
        match (self.tls.is_some(), self.users.len()) {
            (true, 0) => "TLS".into(),
            (true, n) => format!("TLS, basic auth ({n} user{})", plural(n)),
            (false, n) => format!(
                "basic auth ({n} user{}) over plain HTTP: passwords cross the network in clear",
                plural(n)
            ),
        }
    }

    /// Whether a request with this `Authorization` header value may pass: always when no users
    /// are configured, else when it carries a known user and the password its bcrypt hash was
    /// made from.
    pub async fn authorised(&self, header: Option<&[u8]>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let known = self.users.get(&user);
        let hash = known.map_or(DUMMY_HASH, String::as_str).to_owned();
        let key = cache_key(&user, &hash, &password);
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).copied());
        if let Some(ok) = cached {
            return ok && known.is_some();
        }
        let Ok(_turn) = self.bcrypt.acquire().await else {
            return false;
        };
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, verified);
        }
        verified && known.is_some()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `Basic base64(user:password)` into its two halves.
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// SHA-256 of the three, each preceded by its length so no two triples run together.
fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut key = [0; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

fn version(name: &str, which: &str) -> Result<&'static SupportedProtocolVersion, String> {
    match name {
        "TLS13" => Ok(&TLS13),
        "TLS12" => Ok(&TLS12),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{which}: {name} is not supported (TLS 1.2 and 1.3 are: TLS12, TLS13)"
        )),
        other => Err(format!(
            "tls_server_config.{which}: unknown version '{other}' (TLS12 or TLS13)"
        )),
    }
}

fn read(base: &Path, path: &Path, key: &str) -> Result<(PathBuf, Vec<u8>), String> {
    let full = base.join(path);
    std::fs::read(&full)
        .map(|bytes| (full.clone(), bytes))
        .map_err(|e| {
            format!(
                "tls_server_config.{key}: cannot read {}: {e}",
                full.display()
            )
        })
}

fn certificates(
    base: &Path,
    path: &Path,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let (full, pem) = read(base, path, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "tls_server_config.{key}: {} is not valid PEM: {e}",
                full.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.{key}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            full.display()
        ));
    }
    Ok(certs)
}

fn tls_acceptor(t: &TlsFormat, base: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (Some(cert_file), Some(key_file)) = (&t.cert_file, &t.key_file) else {
        return Err("tls_server_config needs both cert_file and key_file".into());
    };
    let certs = certificates(base, cert_file, "cert_file")?;
    let (key_path, key_pem) = read(base, key_file, "key_file")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        format!(
            "tls_server_config.key_file: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key_path.display()
        )
    })?;
    let min = version(t.min_version.as_deref().unwrap_or("TLS12"), "min_version")?;
    let max = version(t.max_version.as_deref().unwrap_or("TLS13"), "max_version")?;
    let all: [&'static SupportedProtocolVersion; 2] = [&TLS12, &TLS13];
    let rank = |v: &SupportedProtocolVersion| all.iter().position(|a| a.version == v.version);
    let versions: Vec<&'static SupportedProtocolVersion> = all
        .into_iter()
        .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
        .collect();
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    #[allow(
        deprecated,
        reason = "rustls 0.23.48 deprecates ring's provider for lacking post-quantum key \
                  exchange; aws-lc-rs would add a long C build for a metrics endpoint"
    )]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth {
        "NoClientCert" => {
            if t.client_ca_file.is_some() {
                return Err(
                    "tls_server_config: client_ca_file is set but client_auth_type is \
                            NoClientCert, so no client certificate would be checked; set \
                            client_auth_type: RequireAndVerifyClientCert"
                        .into(),
                );
            }
            None
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some(ca) = &t.client_ca_file else {
                return Err(format!(
                    "tls_server_config: client_auth_type {auth} needs client_ca_file"
                ));
            };
            let mut roots = RootCertStore::empty();
            for cert in certificates(base, ca, "client_ca_file")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
            }
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth == "VerifyClientCertIfGiven" {
                v = v.allow_unauthenticated();
            }
            Some(
                v.build()
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?,
            )
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "tls_server_config: client_auth_type {auth} (a certificate nobody verifies) is \
                 not supported; use RequireAndVerifyClientCert or VerifyClientCertIfGiven"
            ));
        }
        other => {
            return Err(format!(
                "tls_server_config: unknown client_auth_type '{other}' (NoClientCert, \
                 VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
            ));
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!("tls_server_config: the certificate and key_file do not go together: {e}")
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &Path, yaml: &str) -> Result<WebConfig, String> {
        let path = dir.join("web.yml");
        std::fs::write(&path, yaml).unwrap();
        WebConfig::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_files_are_one_line_errors_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("not.pem"), "hello\n").unwrap();
        let missing = WebConfig::load(&dir.path().join("nope.yml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot read it"), "{missing}");
        for (yaml, wanted) in [
            ("basic_auth_users: {prom: secret}\n", "not a bcrypt hash"),
            (
                "tls_server_config: {cert_file: a, key_file: b, foo: 1}\n",
                "unknown field `foo`",
            ),
            ("tls_config: {}\n", "unknown field `tls_config`"),
            (
                "tls_server_config: {cert_file: not.pem, key_file: not.pem}\n",
                "holds no PEM certificate",
            ),
            (
                "tls_server_config: {cert_file: gone.pem, key_file: gone.pem}\n",
                "cannot read",
            ),
            (
                "tls_server_config: {cert_file: a}\n",
                "needs both cert_file and key_file",
            ),
            (
                "# nothing\n",
                "neither tls_server_config nor basic_auth_users",
            ),
        ] {
            let e = load(dir.path(), yaml).unwrap_err();
            assert!(e.contains(wanted), "{yaml}: {e}");
            assert!(e.starts_with("--metrics-web-config "), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn credentials_are_checked_by_bcrypt_and_cached_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("right", 4).unwrap();
        let web = load(
            dir.path(),
            &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        )
        .unwrap();
        let header = |user: &str, pw: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
            )
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(
                web.authorised(Some(header("prom", "right").as_bytes()))
                    .await
            );
            // the second time from the cache: same answer
            assert!(
                web.authorised(Some(header("prom", "right").as_bytes()))
                    .await
            );
            assert!(
                !web.authorised(Some(header("prom", "wrong").as_bytes()))
                    .await
            );
            assert!(
                !web.authorised(Some(header("eve", "right").as_bytes()))
                    .await
            );
            assert!(!web.authorised(None).await);
            assert!(!web.authorised(Some(b"Bearer x")).await);
        });
        let cache = web.cache.lock().unwrap();
        assert_eq!(cache.len(), 3, "one entry per distinct triple");
        assert!(
            !cache.keys().any(|k| k.windows(5).any(|w| w == b"right")),
            "no password in the cache"
        );
    }

    #[test]
    fn the_dummy_hash_is_a_bcrypt_hash() {
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
        assert_eq!(bcrypt::verify("x", DUMMY_HASH).ok(), Some(false));
    }
}
