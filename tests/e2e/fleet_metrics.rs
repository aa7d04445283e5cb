//! Metrics across a fleet, through the real binaries: three daemons (each with its own home and
//! private bus) whose exporters listen on three loopback addresses (127.0.0.2-4), host 2's
//! behind TLS and basic auth from the shipped example web config; a real Prometheus runs the
//! shipped fleet example (`deploy/prometheus/fleet/prometheus.yml`, file_sd targets with `host`
//! labels, the shipped alert rules) against them. The rules are a test copy whose `for:`
//! durations are 2 s instead of minutes, and the intervals are 1 s instead of 15 s: everything
//! else is the shipped files. Also: what the protected exporter refuses, what a bad web config
//! does to the daemon's start, and the example's Prometheus and Alertmanager configs checked
//! by `promtool` and `amtool` (routes by host and app included).
//!
//! `openssl` makes a throw-away CA and certificate, `curl` is the TLS client, `amtool` comes
//! with the Debian package `prometheus-alertmanager`; `cargo xtask setup` installs them all.
//! These tests fail, not skip, without them.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use turbo_tests::{TestDaemon, wait_for};

use crate::metrics::{Prometheus, free_port, load_dashboard, promtool, repo};

/// The password whose bcrypt hash the shipped `web-config.yml` holds.
const EXAMPLE_PASSWORD: &str = "change-this-example-password";

/// The address host 2's certificate names.
const HOST2_IP: &str = "127.0.0.3";

/// Runs a command, panicking with its output (and how to install it) unless it succeeds.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): `cargo xtask setup` installs it"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throw-away CA (`ca.crt`), a certificate for [`HOST2_IP`] it signed (`host2.crt`,
/// `host2.key`, PKCS#8) and a client certificate (`client.crt`, `client.key`), in `dir`.
fn make_pki(dir: &Path) {
    let openssl = |args: &str| {
        let args: Vec<&str> = args.split_whitespace().collect();
        run(
            Command::new("openssl").args(args).current_dir(dir),
            "openssl",
        );
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {key} -keyout ca.key -out ca.crt -days 2 -subj /CN=turbo-fleet-test-CA"
    ));
    for (name, ext) in [
        ("host2", format!("subjectAltName=IP:{HOST2_IP}")),
        // a scraper's certificate, for client_auth_type
        ("client", "extendedKeyUsage=clientAuth".to_owned()),
    ] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("{ext}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        openssl(&format!(
            "req {key} -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ));
        openssl(&format!(
            "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt \
             -days 2 -extfile {name}.ext"
        ));
    }
}

/// The shipped fleet example copied into `work` the way it sits in the repository (`fleet/`
/// next to the rules, which the config names as `../turbo-alerts.yml`), without its example
/// target files, with a CA and the scrape password where the config expects them, the rules'
/// `for:` shortened to 2 s and the intervals to 1 s. Returns the config's path.
fn fleet_copy(work: &Path) -> PathBuf {
    let shipped = repo().join("deploy/prometheus/fleet");
    let fleet = work.join("fleet");
    std::fs::create_dir_all(fleet.join("targets")).unwrap();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, fleet.join(path.file_name().unwrap())).unwrap();
        }
    }
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/turbo-alerts.yml")).unwrap();
    let short: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 2s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(short, rules, "the rules have `for:` durations to shorten");
    std::fs::write(work.join("turbo-alerts.yml"), short).unwrap();
    make_pki(work);
    std::fs::copy(work.join("ca.crt"), fleet.join("turbo-ca.crt")).unwrap();
    std::fs::write(fleet.join("turbo-scrape.password"), EXAMPLE_PASSWORD).unwrap();
    let config = fleet.join("prometheus.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    for needle in [
        "scrape_interval: 15s",
        "evaluation_interval: 15s",
        "127.0.0.1:9093",
    ] {
        assert!(
            text.contains(needle),
            "the example config changed: no {needle}"
        );
    }
    // no Alertmanager in this test: a port nobody listens on
    let text = text
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("127.0.0.1:9093", &format!("127.0.0.1:{}", free_port()));
    std::fs::write(&config, text).unwrap();
    config
}

/// The shipped `web-config.yml` with its certificate and key paths pointed at `work`'s.
fn host2_web_config(work: &Path) -> PathBuf {
    let shipped =
        std::fs::read_to_string(repo().join("deploy/prometheus/fleet/web-config.yml")).unwrap();
    assert!(
        shipped.contains("/etc/turbo/metrics.crt") && shipped.contains("/etc/turbo/metrics.key")
    );
    let text = shipped
        .replace(
            "/etc/turbo/metrics.crt",
            &work.join("host2.crt").display().to_string(),
        )
        .replace(
            "/etc/turbo/metrics.key",
            &work.join("host2.key").display().to_string(),
        );
    let path = work.join("host2-web.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon (procfs events: three eBPF loads would only slow the test) whose exporter listens
/// on `addr`, with a web config when given.
fn host(addr: &str, web: Option<&Path>) -> TestDaemon {
    let web = web.map(|p| p.display().to_string());
    let mut env = vec![("TURBO_METRICS_LISTEN", addr)];
    if let Some(w) = &web {
        env.push(("TURBO_METRICS_WEB_CONFIG", w.as_str()));
    }
    let mut d = TestDaemon::spawn_with_env("off", &env);
    d.wait_answering();
    d
}

fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or_default()
}

#[test]
fn prometheus_scrapes_a_fleet_by_host_and_a_crash_loop_alert_names_its_host_only() {
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("turbo-fleet-")
        .tempdir()
        .unwrap();
    let config = fleet_copy(work.path());
    let web = host2_web_config(work.path());
    let addrs: Vec<String> = ["127.0.0.2", HOST2_IP, "127.0.0.4"]
        .iter()
        .map(|ip| format!("{ip}:{}", free_port()))
        .collect();
    let hosts = [
        host(&addrs[0], None),
        host(&addrs[1], Some(&web)),
        host(&addrs[2], None),
    ];
    assert!(
        hosts[1].daemon_log().contains(&format!(
            "serving Prometheus metrics on https://{}/metrics with TLS, basic auth (1 user)",
            addrs[1]
        )),
        "{}",
        hosts[1].daemon_log()
    );
    // the same app everywhere; on host 2 it exits every 0.3 s (no crash-loop cutoff, so the
    // exits keep coming)
    for (i, d) in hosts.iter().enumerate() {
        let cmd = if i == 1 {
            "[sh, -c, 'sleep 0.3; exit 3']"
        } else {
            "[sleep, '1000']"
        };
        let yml = d.config(
            "flaky",
            &format!(
                "apps:\n  - name: flaky\n    cmd: {cmd}\n    \
                 restart: {{ delay: 100ms, max_delay: 200ms, crash_loop: {{ max: 0 }} }}\n"
            ),
        );
        d.turbo_ok(&["start", yml.to_str().unwrap()]);
    }
    // file_sd targets, as an inventory would write them: host 2 in the TLS job's file, hosts
    // 1 and 3 in the plain job's
    let fleet = config.parent().unwrap();
    std::fs::write(
        fleet.join("targets/turbo-test.yml"),
        format!("- targets: ['{}']\n  labels: {{ host: host2 }}\n", addrs[1]),
    )
    .unwrap();
    std::fs::write(
        fleet.join("targets/plain-test.yml"),
        format!(
            "- targets: ['{}']\n  labels: {{ host: host1 }}\n- targets: ['{}']\n  labels: {{ host: host3 }}\n",
            addrs[0], addrs[2]
        ),
    )
    .unwrap();
    let data = tempfile::Builder::new()
        .prefix("turbo-fleet-prom-")
        .tempdir()
        .unwrap();
    let prom = Prometheus::run(data, &config);

    // all three scraped (host 2 through TLS and basic auth), one job, instance = host
    let up = wait_for(
        "prometheus to scrape the three hosts",
        Duration::from_secs(30),
        || {
            let up = prom.query(r#"up{job="turbo"} == 1"#);
            (up.len() == 3).then_some(up)
        },
    );
    let mut seen: Vec<(&str, &str)> = up
        .iter()
        .map(|s| (label(s, "host"), label(s, "instance")))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [("host1", "host1"), ("host2", "host2"), ("host3", "host3")],
        "{up:?}"
    );
    let flaky_up = prom.query(r#"turbo_app_up{job="turbo",app="flaky"}"#);
    assert_eq!(
        flaky_up.len(),
        3,
        "flaky's series from every host: {flaky_up:?}"
    );

    let firing = wait_for(
        "TurboAppCrashLooping to fire for host 2",
        Duration::from_secs(40),
        || {
            let firing =
                prom.query(r#"ALERTS{alertname="TurboAppCrashLooping",alertstate="firing"}"#);
            (!firing.is_empty()).then_some(firing)
        },
    );
    for alert in &firing {
        assert_eq!(
            (
                label(alert, "host"),
                label(alert, "instance"),
                label(alert, "app"),
                label(alert, "severity")
            ),
            ("host2", "host2", "flaky", "critical"),
            "{firing:?}"
        );
    }
    // the same app on hosts 1 and 3 is scraped and online, and raises nothing (not even pending)
    let elsewhere = prom.query(r#"ALERTS{alertname="TurboAppCrashLooping",host!="host2"}"#);
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    for h in ["host1", "host3"] {
        let q = format!(r#"turbo_app_up{{job="turbo",host="{h}",app="flaky"}}"#);
        assert_eq!(
            prom.query(&q).first().and_then(|s| s["value"][1].as_str()),
            Some("1"),
            "{q}"
        );
        let exits = format!(r#"sum(turbo_app_exits_total{{host="{h}",app="flaky"}})"#);
        assert_eq!(
            prom.query(&exits)
                .first()
                .and_then(|s| s["value"][1].as_str()),
            Some("0"),
            "{exits}"
        );
    }
    // the dashboard's fleet row, all hosts selected: crashes on host 2 only, every host in
    // the not-online panel (its crash-looping app may be between two runs)
    let dash = load_dashboard();
    let panel = |title: &str| {
        let p = dash["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title:?} in the dashboard"));
        p["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .replace("$job", "turbo")
            .replace("$host", ".*")
            .replace("$app", ".*")
            .replace("$__rate_interval", "1m")
    };
    let per_host = |q: &str| -> Vec<(String, f64)> {
        let mut rows: Vec<(String, f64)> = prom
            .query(q)
            .iter()
            .map(|s| {
                let v = s["value"][1].as_str().and_then(|v| v.parse().ok());
                (label(s, "host").to_owned(), v.unwrap_or(f64::NAN))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    };
    let crashes = per_host(&panel("Crashes per host"));
    let hosts: Vec<&str> = crashes.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, ["host1", "host2", "host3"], "{crashes:?}");
    assert!(
        crashes[0].1 == 0.0 && crashes[1].1 > 0.0 && crashes[2].1 == 0.0,
        "{crashes:?}"
    );
    let down = per_host(&panel("Apps not online per host"));
    assert_eq!(down.len(), 3, "{down:?}");
    assert!(down[0].1 == 0.0 && down[2].1 == 0.0, "{down:?}");
    eprintln!("fleet test: alert seen after {:?}", started.elapsed());
}

/// `curl` against an https URL: the HTTP status (0 when there was no HTTP answer) and the
/// response headers and body; `extra` are curl arguments (credentials, CA).
fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-i", "-o", "-", url])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("curl (cargo xtask setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn a_protected_exporter_refuses_plain_http_unknown_cas_wrong_passwords_and_missing_client_certs() {
    let work = tempfile::Builder::new()
        .prefix("turbo-fleet-tls-")
        .tempdir()
        .unwrap();
    make_pki(work.path());
    let web = host2_web_config(work.path());
    let addr = format!("{HOST2_IP}:{}", free_port());
    let d = host(&addr, Some(&web));
    let url = format!("https://{addr}/metrics");
    // what `turbo info` tells an operator to scrape is the TLS URL
    assert_eq!(d.json(&["info"])["metrics_url"], url.as_str());
    assert!(d.turbo_ok(&["info"]).contains(&url));
    let ca = work.path().join("ca.crt");
    let ca = ca.to_str().unwrap();
    let good = format!("prometheus:{EXAMPLE_PASSWORD}");

    let (status, answer) = curl(&url, &["--cacert", ca, "-u", &good]);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("turbo_build_info"), "{answer}");
    // twice: the second answer comes from the cache of verified credentials
    assert_eq!(curl(&url, &["--cacert", ca, "-u", &good]).0, 200);

    let (status, answer) = curl(&url, &["--cacert", ca, "-u", "prometheus:wrong"]);
    assert_eq!(status, 401, "{answer}");
    assert!(
        !answer.contains("turbo_"),
        "no metrics with a 401: {answer}"
    );
    let (status, answer) = curl(
        &url,
        &["--cacert", ca, "-u", &format!("eve:{EXAMPLE_PASSWORD}")],
    );
    assert_eq!(status, 401, "an unknown user: {answer}");
    let (status, answer) = curl(&url, &["--cacert", ca]);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{answer}"
    );
    // a client that does not trust the fleet CA gets no answer at all
    let (status, answer) = curl(&url, &["-u", &good]);
    assert_eq!(status, 0, "{answer}");

    // plain HTTP to the TLS port: no HTTP answer, and never the metrics
    let mut plain = TcpStream::connect(&addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // the exporter may hang up before the whole request is written (it is no TLS record)
    let _ = write!(plain, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        !raw.starts_with("HTTP/") && !raw.contains("turbo_"),
        "plain HTTP got an answer: {raw}"
    );
    // the daemon itself is unaffected
    d.turbo_ok(&["ping"]);

    // client certificates instead of passwords: none, no TLS session
    let mtls = work.path().join("mtls.yml");
    std::fs::write(
        &mtls,
        "tls_server_config:\n  cert_file: host2.crt\n  key_file: host2.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    .unwrap();
    let addr = format!("{HOST2_IP}:{}", free_port());
    let _d = host(&addr, Some(&mtls));
    let url = format!("https://{addr}/metrics");
    let (status, answer) = curl(&url, &["--cacert", ca]);
    assert_eq!(status, 0, "no client certificate: {answer}");
    let cert = work.path().join("client.crt").display().to_string();
    let key = work.path().join("client.key").display().to_string();
    let (status, answer) = curl(&url, &["--cacert", ca, "--cert", &cert, "--key", &key]);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn a_bad_web_config_stops_the_daemon_at_start_with_one_line() {
    let work = tempfile::Builder::new()
        .prefix("turbo-fleet-bad-")
        .tempdir()
        .unwrap();
    let dir = work.path();
    make_pki(dir);
    std::fs::write(dir.join("not.pem"), "just text\n").unwrap();
    let cert = dir.join("host2.crt").display().to_string();
    let key = dir.join("host2.key").display().to_string();
    let cases = [
        ("missing.yml", None, "cannot read it"),
        (
            "bad-pem.yml",
            Some(format!(
                "tls_server_config:\n  cert_file: not.pem\n  key_file: {key}\n"
            )),
            "holds no PEM certificate",
        ),
        (
            "bad-key.yml",
            Some(format!(
                "tls_server_config:\n  cert_file: {cert}\n  key_file: not.pem\n"
            )),
            "holds no PEM private key",
        ),
        (
            "plain-password.yml",
            Some("basic_auth_users:\n  prometheus: secret\n".into()),
            "basic_auth_users.prometheus: the password is not a bcrypt hash",
        ),
        (
            "unknown-key.yml",
            Some(format!(
                "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cert_fiel: x\n"
            )),
            "unknown field `cert_fiel`",
        ),
    ];
    for (name, content, wanted) in cases {
        let path = dir.join(name);
        if let Some(c) = content {
            std::fs::write(&path, c).unwrap();
        }
        let home = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(turbo_tests::bin_dir().join("turbo-daemon"))
            .env("TURBO_HOME", home.path())
            .env("TURBO_EBPF", "off")
            .env("TURBO_METRICS_LISTEN", &addr)
            .env("TURBO_METRICS_WEB_CONFIG", &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run turbo-daemon");
        let status = wait_for("the daemon to refuse", Duration::from_secs(10), || {
            child.try_wait().ok().flatten()
        });
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!status.success(), "{name}: the daemon started: {err}");
        let err = err.trim_end();
        assert_eq!(err.lines().count(), 1, "{name}: one line:\n{err}");
        assert!(
            err.starts_with(&format!(
                "turbo-daemon: --metrics-web-config {}: ",
                path.display()
            )),
            "{name}: {err}"
        );
        assert!(err.contains(wanted), "{name}: {err}");
        assert!(
            TcpStream::connect(&addr).is_err(),
            "{name}: the exporter listens"
        );
        assert!(
            !home.path().join("bus.sock").exists(),
            "{name}: the daemon got as far as its bus"
        );
    }
}

/// The example's Prometheus config (with its targets files) passes `promtool check config`,
/// its Alertmanager config `amtool check-config`, alerts route by host and app as its comments
/// say, notifications group by alert, host and app, and every aggregation in the alert rules
/// keeps `host`.
#[test]
fn the_fleet_example_passes_promtool_and_amtool_and_routes_by_host_and_app() {
    let work = tempfile::Builder::new()
        .prefix("turbo-fleet-check-")
        .tempdir()
        .unwrap();
    let config = fleet_copy(work.path());
    let fleet = config.parent().unwrap();
    // the shipped example targets too
    for entry in std::fs::read_dir(repo().join("deploy/prometheus/fleet/targets")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, fleet.join("targets").join(path.file_name().unwrap())).unwrap();
    }
    let checked = promtool(fleet, &["check", "config", "prometheus.yml"], None);
    assert!(checked.contains("SUCCESS: 1 rule files found"), "{checked}");

    let shipped = repo().join("deploy/prometheus/fleet");
    let am = shipped.join("alertmanager.yml");
    let amtool = |args: &[&str]| {
        run(
            Command::new("amtool").args(args),
            "amtool (Debian package prometheus-alertmanager)",
        )
    };
    let said = amtool(&["check-config", am.to_str().unwrap()]);
    assert!(said.contains("SUCCESS"), "{said}");
    let am_flag = format!("--config.file={}", am.display());
    for (labels, receiver) in [
        (
            &["host=web2", "app=api", "severity=critical"][..],
            "backend-pager",
        ),
        (
            &["host=web2", "app=api", "severity=warning"],
            "backend-team",
        ),
        (&["host=db-1", "app=api", "severity=critical"], "dba-oncall"),
        (
            &["host=web1", "app=web", "severity=critical"],
            "fleet-pager",
        ),
        (&["host=web1", "app=web", "severity=warning"], "fleet-ops"),
    ] {
        let mut args = vec![
            "config",
            "routes",
            "test",
            am_flag.as_str(),
            "alertname=TurboAppCrashLooping",
        ];
        args.extend_from_slice(labels);
        let routed = amtool(&args);
        assert_eq!(routed.trim(), receiver, "{labels:?}");
    }
    let text = std::fs::read_to_string(&am).unwrap();
    assert!(text.contains("group_by: [alertname, host, app]"), "{text}");

    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/turbo-alerts.yml")).unwrap();
    let aggregations: Vec<&str> = rules.lines().filter(|l| l.contains(" by (")).collect();
    assert!(!aggregations.is_empty());
    for l in aggregations {
        assert!(l.contains("host"), "an aggregation drops `host`: {l}");
    }
}
