use std::{os::unix::net::UnixDatagram, time::Duration};

use super::*;
use crate::spec::LogPolicy;

fn route(policy: &LogPolicy) -> Arc<Route> {
    Route::of("web", policy, &Arc::default()).expect("a route")
}

/// Parses one native-protocol datagram by the protocol's rules (both field forms).
pub(crate) fn journal_fields(mut d: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d
            .iter()
            .position(|&b| b == b'\n')
            .expect("a field ends in a newline");
        let head = &d[..nl];
        if let Some(eq) = head.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&head[..eq]).into(),
                head[eq + 1..].to_vec(),
            ));
            d = &d[nl + 1..];
        } else {
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &d[nl + 9..nl + 9 + len];
            assert_eq!(d[nl + 9 + len], b'\n', "a binary field ends in a newline");
            out.push((String::from_utf8_lossy(head).into(), value.to_vec()));
            d = &d[nl + 10 + len..];
        }
    }
    out
}

#[test]
fn journald_fields_take_the_binary_form_only_when_a_value_holds_a_newline() {
    let mut buf = Vec::new();
    journald::field(&mut buf, "MESSAGE", b"plain = text");
    journald::field(&mut buf, "X", b"two\nlines");
    assert_eq!(
        journal_fields(&buf),
        vec![
            ("MESSAGE".into(), b"plain = text".to_vec()),
            ("X".into(), b"two\nlines".to_vec())
        ]
    );
    assert!(buf.starts_with(b"MESSAGE=plain = text\nX\n\x09\0\0\0\0\0\0\0two\nlines\n"));
}

#[test]
fn a_batch_reaches_a_journald_socket_one_datagram_per_line_with_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sock");
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let policy = LogPolicy {
        journald: Some(path.clone()),
        err_priority: 3,
        ..LogPolicy::default()
    };
    let r = route(&policy);
    let data = b"first\nsecond\n";
    r.submit(
        Source {
            instance: 2,
            pid: 77,
        },
        Stream::Err,
        0,
        data,
        &[0..5, 6..12],
    );
    let mut buf = vec![0; 4096];
    for want in ["first", "second"] {
        let n = rx.recv(&mut buf).unwrap();
        let fields = journal_fields(&buf[..n]);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get("MESSAGE").as_deref(), Some(want));
        assert_eq!(get("PRIORITY").as_deref(), Some("3"));
        assert_eq!(get("SYSLOG_IDENTIFIER").as_deref(), Some("web"));
        assert_eq!(get("TURBO_INSTANCE").as_deref(), Some("2"));
        assert_eq!(get("SYSLOG_PID").as_deref(), Some("77"));
        assert_eq!(get("TURBO_STREAM").as_deref(), Some("err"));
    }
    let counts = r.counters.of(Stream::Err);
    // the counter moves once the send returned: wait for it
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.counters.of(Stream::Err).first().map(|c| c.sent) != Some(2) {
        assert!(Instant::now() < deadline, "counters: {counts:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_absent_receiver_drops_and_counts_without_blocking() {
    let policy = LogPolicy {
        syslog: Some("/nonexistent/turbo-test.sock".into()),
        ..LogPolicy::default()
    };
    let r = route(&policy);
    let started = Instant::now();
    for _ in 0..100 {
        r.submit(
            Source::default(),
            Stream::Out,
            0,
            b"x",
            std::slice::from_ref(&(0..1)),
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "submit never waits"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = r.counters.of(Stream::Out);
        if c.first().is_some_and(|c| c.dropped == 100) {
            assert_eq!(c[0].to, Dest::Syslog);
            assert_eq!(c[0].sent, 0);
            break;
        }
        assert!(Instant::now() < deadline, "counters: {c:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn syslog_messages_are_rfc_5424_over_udp() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let policy = LogPolicy {
        syslog: Some(format!("udp://{}", rx.local_addr().unwrap())),
        ..LogPolicy::default()
    };
    let r = route(&policy);
    // 2026-01-02T03:04:05.678Z
    r.submit(
        Source {
            instance: 1,
            pid: 42,
        },
        Stream::Out,
        1_767_323_045_678,
        b"hello",
        std::slice::from_ref(&(0..5)),
    );
    let mut buf = vec![0; 4096];
    let n = rx.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    let rest = msg
        .strip_prefix("<30>1 2026-01-02T03:04:05.678Z ")
        .unwrap_or_else(|| panic!("header: {msg}"));
    let (_host, rest) = rest.split_once(' ').unwrap();
    assert_eq!(rest, "web 42 stdout [turbo@32473 instance=\"1\"] hello");
}

#[test]
fn syslog_addresses_are_paths_or_loopback_udp_tcp() {
    assert_eq!(
        SyslogAddr::parse("/dev/log"),
        Ok(SyslogAddr::Unix("/dev/log".into()))
    );
    assert!(matches!(
        SyslogAddr::parse("udp://127.0.0.1:514"),
        Ok(SyslogAddr::Udp(_))
    ));
    assert!(matches!(
        SyslogAddr::parse("tcp://[::1]:601"),
        Ok(SyslogAddr::Tcp(_))
    ));
    let remote = SyslogAddr::parse("udp://10.0.0.1:514").unwrap_err();
    assert!(remote.contains("not on loopback"), "{remote}");
    assert!(SyslogAddr::parse("dev/log").is_err());
    assert!(SyslogAddr::parse("udp://localhost:514").is_err());
}

#[test]
fn severities_by_name_or_number() {
    assert_eq!(severity(Some("warning"), None), Some(4));
    assert_eq!(severity(Some("ERR"), None), Some(3));
    assert_eq!(severity(None, Some(7)), Some(7));
    assert_eq!(severity(None, Some(8)), None);
    assert_eq!(severity(Some("loud"), None), None);
}
