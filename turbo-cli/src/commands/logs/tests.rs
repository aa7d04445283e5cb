use std::{fs, io::Write as _};

use super::*;

fn app(id: u32, name: &str, instance: u32) -> AppStatus {
    AppStatus {
        id,
        name: name.into(),
        instance,
        ..AppStatus::default()
    }
}

#[test]
fn selecting_apps() {
    let apps = [app(0, "api", 0), app(1, "api", 1), app(2, "worker", 0)];
    assert_eq!(select(&apps, None).unwrap().0.len(), 3);
    assert_eq!(select(&apps, Some("api")).unwrap().0.len(), 2);
    assert_eq!(select(&apps, Some("2")).unwrap().0[0].name, "worker");
    let (one, instance) = select(&apps, Some("api:1")).unwrap();
    assert_eq!((one.len(), one[0].id, instance), (1, 1, Some(1)));
    let none = select(&apps, Some("api:7")).unwrap_err();
    assert_eq!(none.to_string(), "'api' has no instance 7");
    assert_eq!(
        crate::hint::help_of(&none),
        Some("its instances are api:0 to api:1")
    );
    let mut grouped = apps.clone();
    grouped[2].group = "jobs".into();
    assert_eq!(select(&grouped, Some("@jobs")).unwrap().0[0].name, "worker");
    let err = select(&grouped, Some("@nope")).unwrap_err();
    assert_eq!(err.to_string(), "no app matches '@nope'");
    let err = select(&apps, Some("wroker")).unwrap_err();
    assert_eq!(err.to_string(), "no app matches 'wroker'");
    assert_eq!(crate::hint::help_of(&err), Some("did you mean `worker`?"));
    assert_eq!(labels(&apps), ["api:0", "api:1", "worker"]);
    assert_eq!(prefix("api", 6, Stream::Err, false), "api    err | ");
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

fn strings(lines: &[Vec<u8>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

fn tail_of(path: &Path, n: usize) -> Tail {
    read_tail(&File::open(path).unwrap(), n).unwrap()
}

#[test]
fn tails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    assert!(open_log(&path).unwrap().is_none(), "missing is no file");

    write(&path, "one\ntwo\nthree\nfour\npart");
    let tail = tail_of(&path, 2);
    assert_eq!(strings(&tail.lines), ["three", "four"]);
    assert_eq!(tail.partial, b"part");
    assert_eq!(tail.resume_at, 19);
    assert_eq!(
        strings(&tail_of(&path, 10).lines),
        ["one", "two", "three", "four"]
    );
    assert!(tail_of(&path, 0).lines.is_empty());
    assert_eq!(tail_of(&path, 0).resume_at, 19);

    // longer than one chunk, so the backwards reading has to stitch chunks together
    let long: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
    write(&path, &long);
    let tail = tail_of(&path, 3);
    assert_eq!(
        strings(&tail.lines),
        ["line 29997", "line 29998", "line 29999"]
    );
    assert_eq!(tail.resume_at, long.len() as u64);
    assert_eq!(tail_of(&path, 20_000).lines[0], b"line 10000");
}

#[test]
fn older_lines_come_from_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    write(&rotated_path(&path, 2), "1\n2\n");
    write(&rotated_path(&path, 1), "3\n4\n");
    write(&path, "5\n");
    let current = File::open(&path).unwrap().metadata().unwrap().ino();
    assert_eq!(
        strings(&older_lines(&path, Some(current), 3).unwrap()),
        ["2", "3", "4"]
    );
    assert_eq!(
        strings(&older_lines(&path, Some(current), 10).unwrap()),
        ["1", "2", "3", "4"]
    );
    assert!(older_lines(&path, Some(current), 0).unwrap().is_empty());
    // rotated between reading the current file and its predecessors: the file we read is
    // `.1` now, and is not shown twice
    let read = File::open(&path).unwrap().metadata().unwrap().ino();
    fs::rename(rotated_path(&path, 2), rotated_path(&path, 3)).unwrap();
    fs::rename(rotated_path(&path, 1), rotated_path(&path, 2)).unwrap();
    fs::rename(&path, rotated_path(&path, 1)).unwrap();
    assert_eq!(
        strings(&older_lines(&path, Some(read), 3).unwrap()),
        ["2", "3", "4"]
    );
}

fn follower(path: &Path) -> Follower {
    let file = open_log(path).unwrap();
    let tail = file
        .as_ref()
        .map(|f| read_tail(f, 1).unwrap())
        .unwrap_or_default();
    Follower {
        path: path.to_owned(),
        file,
        inode: tail.inode,
        offset: tail.resume_at,
        pending: Vec::new(),
    }
}

fn poll(f: &mut Follower) -> Vec<String> {
    strings(&f.poll().unwrap())
}

#[test]
fn following_appends_partial_lines_truncation_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    write(&path, "old\n");
    let mut f = follower(&path);
    assert!(poll(&mut f).is_empty());

    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"new 1\nnew").unwrap();
    assert_eq!(poll(&mut f), ["new 1"]);
    file.write_all(b" 2\n").unwrap();
    assert_eq!(poll(&mut f), ["new 2"]);

    // truncation: everything now in the file is new
    file.set_len(0).unwrap();
    file.write_all(b"after truncate\n").unwrap();
    assert_eq!(poll(&mut f), ["after truncate"]);

    // rotation: lines written just before the rename are read from the renamed file first
    file.write_all(b"last of the old file\n").unwrap();
    fs::rename(&path, dir.path().join("a.log.1")).unwrap();
    assert_eq!(
        poll(&mut f),
        ["last of the old file"],
        "gap between rename and reopen"
    );
    file.write_all(b"late\n").unwrap(); // cannot happen with the daemon, but is not lost
    write(
        &path,
        "rotated 1\nrotated 2 is long enough to pass the old offset\n",
    );
    assert_eq!(
        poll(&mut f),
        [
            "late",
            "rotated 1",
            "rotated 2 is long enough to pass the old offset"
        ]
    );
    assert!(poll(&mut f).is_empty());

    // rename and reopen both between two polls, the old file then deleted (keep = 0)
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"before\n").unwrap();
    fs::rename(&path, dir.path().join("a.log.1")).unwrap();
    fs::remove_file(dir.path().join("a.log.1")).unwrap();
    write(&path, "after\n");
    assert_eq!(poll(&mut f), ["before", "after"]);
}

/// What the daemon does: `.n` to `.n+1` (the highest first, dropping those past `keep`),
/// `<f>` to `.1`, a new `<f>`.
fn rotate(path: &Path, keep: u32) {
    for n in (1..=keep + 5).rev() {
        let old = rotated_path(path, n);
        if n >= keep {
            let _ = fs::remove_file(&old);
        } else if old.exists() {
            fs::rename(&old, rotated_path(path, n + 1)).unwrap();
        }
    }
    let _ = fs::rename(path, rotated_path(path, 1));
    File::create(path).unwrap();
}

fn append(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn following_through_several_rotations_between_two_polls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    write(&path, "seen\n");
    let mut f = follower(&path);
    append(&path, "1\n");
    for i in 2..=4 {
        rotate(&path, 5);
        append(&path, &format!("{i}\n"));
    }
    append(&path, "5 unfinished");
    assert_eq!(poll(&mut f), ["1", "2", "3", "4"]);
    append(&path, "\n");
    assert_eq!(poll(&mut f), ["5 unfinished"]);

    // more rotations than `keep`: the file being read is deleted, the oldest one left is next
    append(&path, "6\n");
    for i in 7..=10 {
        rotate(&path, 2);
        append(&path, &format!("{i}\n"));
    }
    assert_eq!(
        poll(&mut f),
        ["6", "8", "9", "10"],
        "7 was rotated away unread"
    );
}

/// What the keeper does with `compress: gzip`: a rotation, then `.2` becomes `.2.gz`, marked
/// with the plain file's inode.
fn rotate_compressing(path: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    for (n, p, _) in rotated_now(path).unwrap().iter().rev() {
        fs::rename(p, logfmt::rotated_path_as(path, n + 1, Compression::of(p))).unwrap();
    }
    fs::rename(path, rotated_path(path, 1)).unwrap();
    File::create(path).unwrap();
    let second = rotated_path(path, 2);
    if second.exists() {
        let ino = fs::metadata(&second).unwrap().ino();
        let gz = logfmt::rotated_path_as(path, 2, Compression::Gzip);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&fs::read(&second).unwrap()).unwrap();
        fs::write(&gz, enc.finish().unwrap()).unwrap();
        rustix::fs::setxattr(
            &gz,
            logfmt::ORIGIN_XATTR,
            ino.to_string().as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        fs::remove_file(&second).unwrap();
    }
}

#[test]
fn following_reads_through_files_compressed_before_it_reached_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.log");
    write(&path, "seen\n");
    let mut f = follower(&path);
    append(&path, "1\n");
    // three rotations before the next poll: the held file and its successor are compressed
    for i in 2..=4 {
        rotate_compressing(&path);
        append(&path, &format!("{i}\n"));
    }
    let names: Vec<_> = rotated_now(&path)
        .unwrap()
        .into_iter()
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(
        names,
        [
            rotated_path(&path, 1),
            logfmt::rotated_path_as(&path, 2, Compression::Gzip),
            logfmt::rotated_path_as(&path, 3, Compression::Gzip)
        ]
    );
    assert_eq!(
        poll(&mut f),
        ["1", "2", "3", "4"],
        "2 was compressed unread"
    );
    append(&path, "5\n");
    assert_eq!(poll(&mut f), ["5"]);
}

#[test]
fn following_after_someone_deletes_the_current_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    write(&rotated_path(&path, 1), "old, shown before\n");
    std::thread::sleep(Duration::from_millis(50)); // file times are coarse
    write(&path, "current\n");
    let mut f = follower(&path);
    let mut daemon = fs::OpenOptions::new().append(true).open(&path).unwrap();
    fs::remove_file(&path).unwrap();
    daemon.write_all(b"into the deleted file\n").unwrap();
    assert_eq!(poll(&mut f), ["into the deleted file"]);
    rotate(&path, 5); // the daemon's next rotation finds no <f> and opens a new one
    append(&path, "new file\n");
    assert_eq!(poll(&mut f), ["new file"]);
}

#[test]
fn following_a_file_that_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let mut f = follower(&path);
    assert!(poll(&mut f).is_empty());
    write(&path, "first\n");
    assert_eq!(poll(&mut f), ["first"]);
}

fn shown(form: Form) -> Shown {
    Shown {
        app: "api".into(),
        stream: Stream::Out,
        form,
        several: false,
        instance: None,
        filter: Filter::default(),
        width: 3,
        color: false,
        clock: Clock::Utc,
    }
}

#[test]
fn stamps_are_shown_on_the_clock_asked_for() {
    let at = "2026-07-02T03:04:05.678Z";
    assert_eq!(Clock::parse("utc").unwrap().show(at), at);
    assert_eq!(
        Clock::parse("+05:30").unwrap().show(at),
        "2026-07-02T08:34:05.678+05:30"
    );
    assert_eq!(
        Clock::parse("-08:00").unwrap().show(at),
        "2026-07-01T19:04:05.678-08:00"
    );
    // daylight saving time is the zone's at that instant
    let paris = Clock::Local(jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    assert_eq!(paris.show(at), "2026-07-02T05:04:05.678+02:00");
    assert_eq!(
        paris.show("2026-01-02T03:04:05.678Z"),
        "2026-01-02T04:04:05.678+01:00"
    );
    // what is shown reads back to the same instant
    assert_eq!(logfmt::stamp_ms(&paris.show(at)), logfmt::stamp_ms(at));
    for bad in ["", "+5:30", "+24:00", "05:30", "+0a:00", "mars"] {
        assert!(Clock::parse(bad).is_none(), "{bad}");
    }
    let mut raw = shown(Form::Human);
    raw.clock = Clock::Fixed(60);
    assert_eq!(
        String::from_utf8(raw.render(b"2026-01-02T03:04:05.678Z[0:9] hi").unwrap()).unwrap(),
        "api out | 2026-01-02T04:04:05.678+01:00 hi"
    );
}

fn render(form: Form, raw: &[u8]) -> String {
    String::from_utf8(shown(form).render(raw).unwrap()).unwrap()
}

#[test]
fn compressed_rotated_files_read_like_plain_ones() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-out.log");
    let text = |r: std::ops::Range<u32>| r.map(|i| format!("line {i}\n")).collect::<String>();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text(10..20).as_bytes()).unwrap();
    fs::write(
        logfmt::rotated_path_as(&path, 2, Compression::Gzip),
        gz.finish().unwrap(),
    )
    .unwrap();
    fs::write(
        logfmt::rotated_path_as(&path, 3, Compression::Zstd),
        zstd::encode_all(text(0..10).as_bytes(), 3).unwrap(),
    )
    .unwrap();
    write(&rotated_path(&path, 1), &text(20..30));
    write(&path, &text(30..35));
    let want = |r: std::ops::Range<u32>| r.map(|i| format!("line {i}")).collect::<Vec<_>>();
    assert_eq!(strings(&older_lines(&path, None, 25).unwrap()), want(5..30));
    let (lines, _, _) = Follower::from_tail(&path, 32).unwrap();
    assert_eq!(strings(&lines), want(3..35));
    let end = fs::metadata(&path).unwrap().len();
    let all = scan(&path, end, &shown(Form::Human), 1000).unwrap();
    assert_eq!(strings(&all), want(0..35));
}

#[test]
fn since_and_until_take_durations_dates_and_stamps() {
    let now = 1_767_323_045_678; // 2026-01-02T03:04:05.678Z
    assert_eq!(instant_ms("10m", now), Some(now - 600_000));
    assert_eq!(instant_ms("2h", now), Some(now - 7_200_000));
    assert_eq!(instant_ms("1d", now), Some(now - 86_400_000));
    let midnight = logfmt::stamp_ms("2026-01-02T00:00:00.000Z");
    assert_eq!(instant_ms("2026-01-02", now), midnight);
    assert_eq!(instant_ms("2026-01-02T03:04:05Z", now), Some(now - 678));
    assert_eq!(instant_ms("2026-01-02T04:04:05.678+01:00", now), Some(now));
    assert_eq!(
        instant_ms("2026-01-02T04:04:05+01:00", now),
        Some(now - 678)
    );
    for bad in ["yesterday", "2026-13-01", "5 minutes", "", "d"] {
        assert_eq!(instant_ms(bad, now), None, "{bad}");
    }
    let filter = Filter {
        since: Some(now - 1000),
        until: Some(now),
        grep: Some("needle".into()),
    };
    let pass = |raw: &[u8]| filter.passes(&Record::parse(raw));
    assert!(pass(b"2026-01-02T03:04:05.000Z[0:1] a needle here"));
    assert!(!pass(b"2026-01-02T03:04:05.000Z[0:1] no match"));
    assert!(!pass(b"2026-01-02T03:04:04.000Z[0:1] needle, too early"));
    assert!(!pass(b"2026-01-02T03:04:06.000Z[0:1] needle, too late"));
    assert!(!pass(b"needle without a stamp"));
    assert!(Filter::default().passes(&Record::parse(b"anything")));
}

#[test]
fn scanning_finds_the_last_shown_lines_through_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-out.log");
    let rec = |i: u32| format!("2026-01-02T03:04:05.678Z[{}:7] line {i}\n", i % 2);
    let text = |r: std::ops::Range<u32>| r.map(rec).collect::<String>();
    write(&rotated_path(&path, 2), &text(0..10));
    write(&rotated_path(&path, 1), &text(10..20));
    write(
        &path,
        &(text(20..30) + "2026-01-02T03:04:05.678Z[1:7] unfinished"),
    );
    let end = fs::metadata(&path).unwrap().len()
        - "2026-01-02T03:04:05.678Z[1:7] unfinished".len() as u64;
    let grep = Shown {
        filter: Filter {
            grep: Some("line 1".into()),
            ..Filter::default()
        },
        ..shown(Form::Human)
    };
    // line 1, line 10 … line 19: across .2 and .1; the last 4 of them
    let found = scan(&path, end, &grep, 4).unwrap();
    assert_eq!(
        strings(&found),
        (16..20)
            .map(|i| rec(i).trim_end().to_owned())
            .collect::<Vec<_>>()
    );
    let odd = Shown {
        instance: Some(1),
        ..shown(Form::Human)
    };
    let found = scan(&path, end, &odd, 3).unwrap();
    assert_eq!(
        strings(&found),
        [25, 27, 29].map(|i| rec(i).trim_end().to_owned()),
        "the unfinished line past `end` is the follower's"
    );
}

#[test]
fn records_are_labelled_and_filtered_by_the_instance_that_wrote_them() {
    let several = Shown {
        several: true,
        width: 5,
        ..shown(Form::Human)
    };
    let tagged = b"2026-01-02T03:04:05.678Z[2:4242] hi";
    let shown_line = |s: &Shown, raw: &[u8]| s.render(raw).map(|l| String::from_utf8(l).unwrap());
    assert_eq!(
        shown_line(&several, tagged).unwrap(),
        "api:2 out | 2026-01-02T03:04:05.678Z hi"
    );
    // one instance: no label, and the tag is not shown either
    assert_eq!(
        render(Form::Human, tagged),
        "api out | 2026-01-02T03:04:05.678Z hi"
    );
    assert_eq!(
        shown(Form::Raw).render(tagged).unwrap(),
        b"api out | 2026-01-02T03:04:05.678Z hi"
    );
    let only_1 = Shown {
        instance: Some(1),
        ..shown(Form::Human)
    };
    assert_eq!(shown_line(&only_1, tagged), None);
    assert!(shown_line(&only_1, b"2026-01-02T03:04:05.678Z[1:7] x").is_some());
    // untagged (first generation): shown unfiltered, left out of one instance's view
    assert!(shown_line(&only_1, b"2026-01-02T03:04:05.678Z x").is_none());
    let json: Value = serde_json::from_str(&render(Form::Json, tagged)).unwrap();
    assert_eq!((&json["instance"], &json["pid"]), (&2.into(), &4242.into()));
}

#[test]
fn human_output_looks_the_same_for_both_formats() {
    let text = b"2026-01-02T03:04:05.678Z hi";
    let json = br#"{"at":"2026-01-02T03:04:05.678Z","app":"api","stream":"out","line":"hi"}"#;
    assert_eq!(
        render(Form::Human, text),
        "api out | 2026-01-02T03:04:05.678Z hi"
    );
    assert_eq!(render(Form::Human, json), render(Form::Human, text));
    assert_eq!(render(Form::Human, b"\xffraw"), "api out | \u{FFFD}raw");
}

#[test]
fn control_characters_are_escaped_unless_raw() {
    // OSC 0 (title), CSI 2J (clear), OSC 52 (clipboard), a bare CR that would overwrite
    let hostile =
        b"2026-01-02T03:04:05.678Z \x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\rfake\tok";
    let shown_text = render(Form::Human, hostile);
    assert_eq!(
        shown_text,
        "api out | 2026-01-02T03:04:05.678Z \\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\rfake\tok"
    );
    assert_eq!(
        shown(Form::Raw).render(hostile).unwrap(),
        [&b"api out | "[..], hostile].concat(),
        "--raw is byte for byte"
    );
    // json-format records: escaped for humans, the original bytes for --raw
    let record = br#"{"at":"2026-01-02T03:04:05.678Z","app":"api","stream":"out","line":"\u001b[2J\ufffd","line_b64":"G1sySv8="}"#;
    assert_eq!(
        render(Form::Human, record),
        "api out | 2026-01-02T03:04:05.678Z \\x1b[2J\u{FFFD}"
    );
    assert_eq!(
        shown(Form::Raw).render(record).unwrap(),
        b"api out | 2026-01-02T03:04:05.678Z \x1b[2J\xff"
    );
    // monit gets the escaped text too
    assert_eq!(
        stamp_and_text(hostile).1,
        "\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\rfake\tok"
    );
    // --json stays exact: serde escapes C0, and DEL/C1 become \u escapes of the same value
    let json = render(
        Form::Json,
        "2026-01-02T03:04:05.678Z \u{1b}[2J \u{9b}2J \u{7f}".as_bytes(),
    );
    assert!(json.contains(r"\u001b[2J \u009b2J \u007f"), "{json}");
    let value: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["line"], "\u{1b}[2J \u{9b}2J \u{7f}");
}

#[test]
fn json_output_of_both_formats() {
    let parse = |raw: &[u8]| -> Value { serde_json::from_str(&render(Form::Json, raw)).unwrap() };
    let text = parse(b"2026-01-02T03:04:05.678Z say \"hi\"\t");
    assert_eq!(
        text,
        serde_json::json!({"app": "api", "stream": "out", "at": "2026-01-02T03:04:05.678Z", "line": "say \"hi\"\t"})
    );
    assert_eq!(
        render(Form::Json, b"2026-01-02T03:04:05.678Z x"),
        r#"{"app":"api","stream":"out","at":"2026-01-02T03:04:05.678Z","line":"x"}"#,
        "fields in the documented order"
    );
    let bare = parse(b"no stamp");
    assert_eq!(
        (&bare["at"], &bare["line"]),
        (&Value::Null, &"no stamp".into())
    );
    // not UTF-8: lossy line plus the raw bytes
    let binary = parse(b"2026-01-02T03:04:05.678Z \xff\x00ok");
    assert_eq!(binary["line"], "\u{FFFD}\u{0}ok");
    assert_eq!(binary["line_b64"], "/wBvaw==");
    // json records pass through, line_b64 included
    let json = parse(
        br#"{"at":"2026-01-02T03:04:05.678Z","app":"other","stream":"err","line":"\ufffd","line_b64":"/w=="}"#,
    );
    assert_eq!(
        json,
        serde_json::json!({"app": "other", "stream": "err", "at": "2026-01-02T03:04:05.678Z", "line": "\u{FFFD}", "line_b64": "/w=="})
    );
}
