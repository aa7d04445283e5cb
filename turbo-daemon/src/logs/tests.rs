//! Capture through real pipes: the parts of `logs` together, as the daemon and keeper use them.

use std::{
    fs,
    io::{PipeWriter, Write as _},
    ops::Range,
    os::fd::{AsFd as _, OwnedFd},
    thread,
    time::Duration,
};

use serde_json::Value;
use turbo_api::logfmt::{self, Record};

use super::{
    format::Records,
    pump::{
        BIG_PIPE, Batch, READ_SIZE, SHRINK_ABOVE, batch_end, big_pipe_budget, give_back,
        split_lines,
    },
    sink::{Sink, open_append, rotated},
    *,
};
use crate::{os::pipe_io, spec::LogFormat};

/// The names in `dir`, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    n.sort();
    n
}

/// A pipe whose write end blocks (the writer is a thread), like an app's.
fn pipe() -> (OwnedFd, PipeWriter) {
    let (r, w) = std::io::pipe().unwrap();
    (r.into(), w)
}

/// Writes each piece in turn from a thread, then closes the pipe.
fn feed(mut w: PipeWriter, pieces: Vec<Vec<u8>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for piece in pieces {
            w.write_all(&piece).unwrap();
        }
    })
}

fn policy(format: LogFormat, max_size: u64, keep: u32) -> LogPolicy {
    LogPolicy {
        format,
        max_size,
        keep,
        ..LogPolicy::default()
    }
}

/// Runs one process's worth of capture: `out` and `err` pieces, until both pipes close.
async fn run(logs: &AppLogs, out: Vec<Vec<u8>>, err: Vec<Vec<u8>>) -> Vec<String> {
    let ((out_r, out_w), (err_r, err_w)) = (pipe(), pipe());
    let capture = logs.capture(SOURCE, out_r, err_r);
    let writers = [feed(out_w, out), feed(err_w, err)];
    tokio::time::timeout(Duration::from_secs(20), capture.done)
        .await
        .expect("capture ends after EOF")
        .unwrap();
    for w in writers {
        w.join().unwrap();
    }
    capture.stderr_tail.lines()
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_default()
}

/// The tag of records written by [`run`].
const SOURCE: Source = Source {
    instance: 0,
    pid: 7,
};

/// The lines of a text-format file, checking that every record has a stamp and a tag.
fn text_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    tagged_records(bytes).into_iter().map(|(_, l)| l).collect()
}

/// The `(source, line)` of each record of a text-format file, checking every stamp.
fn tagged_records(bytes: &[u8]) -> Vec<(Source, Vec<u8>)> {
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "ends mid-record"
    );
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|rec| {
            let rec = &rec[..rec.len() - 1];
            let stamp = std::str::from_utf8(&rec[..24]).unwrap();
            assert!(
                stamp.len() == 24
                    && stamp.ends_with('Z')
                    && stamp.as_bytes()[10] == b'T'
                    && stamp.as_bytes()[19] == b'.',
                "{stamp}"
            );
            let parsed = Record::parse(rec);
            let source = parsed
                .source()
                .unwrap_or_else(|| panic!("no tag: {}", String::from_utf8_lossy(rec)));
            (source, parsed.bytes())
        })
        .collect()
}

fn json_records(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The raw bytes of a json record's line.
fn raw_line(rec: &Value) -> Vec<u8> {
    Record::parse(rec.to_string().as_bytes()).bytes()
}

/// A batch takes what splitting would (`batch_end` is `split_lines`' count) and its lines are
/// the ones splitting finds, for reads that end mid-line, at a newline, inside a line longer
/// than `MAX_LINE` (also next to a multi-byte character) and at the end of the pipe.
#[test]
fn a_batch_holds_exactly_the_records_splitting_finds() {
    let mut reads: Vec<Vec<u8>> = vec![
        b"a\n\nbc\nde".to_vec(),
        b"de".to_vec(),
        Vec::new(),
        b"\n".to_vec(),
        vec![b'x'; MAX_LINE],
        vec![b'x'; MAX_LINE + 1],
        vec![b'x'; 3 * MAX_LINE + 7],
    ];
    let mut accents = b"ok\nx".to_vec();
    accents.extend("é".repeat(MAX_LINE).as_bytes());
    reads.push(accents);
    reads.push(b"one\ntwo\nthree\n".repeat(30));
    reads.push(b"\n\n\nx\n\ny".to_vec());
    let mut long_then_short = vec![b'y'; 2 * MAX_LINE + 3];
    long_then_short.extend_from_slice(b"\nshort\nunfinished");
    reads.push(long_then_short);
    let (mut want, mut ranges) = (Vec::new(), Vec::new());
    for read in &reads {
        for eof in [false, true] {
            let used = split_lines(read, eof, &mut want);
            assert_eq!(
                batch_end(read, eof),
                used,
                "{} bytes, eof {eof}",
                read.len()
            );
            let mut batch = Batch::new(&read[..used], &mut ranges);
            assert_eq!(batch.lines(), want, "{} bytes, eof {eof}", read.len());
            // the stderr tail's part: the same last records, from the end alone
            for n in [0, 1, 2, 20] {
                let mut batch = Batch::new(&read[..used], &mut ranges);
                let last = batch.last_lines(n).to_vec();
                let keep = n.min(want.len());
                assert!(last.len() >= keep, "{} bytes, eof {eof}, n {n}", read.len());
                assert_eq!(
                    last[last.len() - keep..],
                    want[want.len() - keep..],
                    "{} bytes, eof {eof}, n {n}",
                    read.len()
                );
                assert_eq!(batch.lines(), want, "the whole batch after a tail");
            }
        }
    }
}

#[test]
fn splitting_lines_keeps_unfinished_ones_and_cuts_long_ones() {
    let mut lines = Vec::new();
    let used = split_lines(b"a\n\nbc\nde", false, &mut lines);
    assert_eq!((lines.clone(), used), (vec![0..1, 2..2, 3..5], 6));
    assert_eq!(split_lines(b"de", true, &mut lines), 2);
    assert_eq!(lines, [Range { start: 0, end: 2 }]);
    assert_eq!(split_lines(b"", true, &mut lines), 0);
    assert!(lines.is_empty());

    // exactly MAX_LINE unfinished: wait, its newline may be next
    let exact = vec![b'x'; MAX_LINE];
    assert_eq!(split_lines(&exact, false, &mut lines), 0);
    assert!(lines.is_empty());
    let mut with_newline = exact.clone();
    with_newline.push(b'\n');
    assert_eq!(split_lines(&with_newline, false, &mut lines), MAX_LINE + 1);
    assert_eq!(
        lines,
        [Range {
            start: 0,
            end: MAX_LINE
        }]
    );
    // one more byte: cut, and the rest waits
    let over = vec![b'x'; MAX_LINE + 1];
    assert_eq!(split_lines(&over, false, &mut lines), MAX_LINE);
    assert_eq!(
        lines,
        [Range {
            start: 0,
            end: MAX_LINE
        }]
    );
    // a cut backs off to a character boundary: 'é' is 2 bytes, the cut would halve one
    let mut accents = b"x".to_vec();
    accents.extend("é".repeat(MAX_LINE / 2).as_bytes());
    assert_eq!(split_lines(&accents, false, &mut lines), MAX_LINE - 1);
    assert_eq!(
        lines,
        [Range {
            start: 0,
            end: MAX_LINE - 1
        }]
    );
}

#[test]
fn buffers_grown_by_a_burst_are_given_back() {
    let mut small: Vec<u8> = Vec::with_capacity(2 * READ_SIZE);
    give_back(&mut small, 0);
    assert!(small.capacity() >= 2 * READ_SIZE, "not above the threshold");
    let mut big: Vec<u8> = Vec::with_capacity(BIG_PIPE);
    big.extend_from_slice(b"kept");
    give_back(&mut big, 2 * READ_SIZE);
    assert!(big.capacity() < SHRINK_ABOVE);
    assert_eq!(big, b"kept");
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(100_000);
    give_back(&mut ranges, 0);
    assert!(ranges.capacity() * size_of::<Range<usize>>() <= SHRINK_ABOVE);
}

#[tokio::test(flavor = "current_thread")]
async fn a_flooding_app_gets_a_bigger_pipe_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "flood", 0, &LogPolicy::default()).unwrap();
    let ((out_r, mut out_w), (err_r, err_w)) = (pipe(), pipe());
    let capture = logs.capture(SOURCE, out_r, err_r);
    drop(err_w);
    let lines = 40_000;
    let text: String = (0..lines)
        .map(|i| format!("{i:010} {}\n", "x".repeat(88)))
        .collect();
    // a writer like the bench's: 65,500 bytes a write, so a full default pipe reads as less
    // than 64 KiB
    let writer = thread::spawn(move || {
        for piece in text.as_bytes().chunks(65_500) {
            out_w.write_all(piece).unwrap();
        }
        pipe_io::pipe_size(out_w.as_fd()).unwrap()
    });
    tokio::time::timeout(Duration::from_secs(20), capture.done)
        .await
        .expect("capture ends after EOF")
        .unwrap();
    let size = writer.join().unwrap();
    assert!(
        size == BIG_PIPE || big_pipe_budget() == 0,
        "pipe of {size} bytes"
    );
    let records = text_records(&read(&logs.paths().0));
    assert_eq!(records.len(), lines);
    for (i, rec) in records.iter().enumerate() {
        assert_eq!(rec.len(), 99);
        assert_eq!(&rec[..10], format!("{i:010}").as_bytes());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn text_lines_get_timestamps_and_partial_lines_wait_for_their_newline() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "app", 0, &LogPolicy::default()).unwrap();
    let pieces = [&b"one\ntwo\nthr"[..], b"ee\n", b"\xff raw\r\n", b"four"];
    run(
        &logs,
        pieces.map(<[u8]>::to_vec).to_vec(),
        vec![b"e1\n".to_vec()],
    )
    .await;
    let (out, err) = logs.paths();
    assert_eq!(out, dir.path().join("app-out.log"));
    let lines = text_records(&read(&out));
    assert_eq!(
        lines,
        [&b"one"[..], b"two", b"three", b"\xff raw\r", b"four"],
        "raw bytes, last line kept at EOF"
    );
    assert_eq!(text_records(&read(&err)), [b"e1"]);
    for path in [out, err] {
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o640
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_200_kib_line_is_cut_into_pieces_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "big", 0, &LogPolicy::default()).unwrap();
    let long: Vec<u8> = (0..200 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut data = b"before\n".to_vec();
    data.extend(&long);
    data.extend(b"\nafter\n");
    // small writes, so the line arrives over many reads
    run(
        &logs,
        data.chunks(5000).map(<[u8]>::to_vec).collect(),
        vec![],
    )
    .await;
    let lines = text_records(&read(&logs.paths().0));
    assert_eq!(lines.len(), 6, "before, 4 pieces, after");
    assert_eq!(
        (&lines[0][..], &lines[5][..]),
        (&b"before"[..], &b"after"[..])
    );
    assert!(lines[1..5].iter().all(|l| l.len() <= MAX_LINE));
    assert_eq!(lines[1..5].concat(), long);

    // json: pieces of a multi-byte text stay valid UTF-8 (no line_b64 needed)
    logs.set_policy(&policy(LogFormat::Json, 10 << 20, 5));
    logs.flush().unwrap();
    let text = "é€".repeat(40_000);
    run(&logs, vec![format!("{text}\n").into_bytes()], vec![]).await;
    let recs = json_records(&read(&logs.paths().0));
    assert!(recs.len() > 1);
    assert!(recs.iter().all(|r| r.get("line_b64").is_none()));
    let joined: String = recs.iter().map(|r| r["line"].as_str().unwrap()).collect();
    assert_eq!(joined, text);
}

#[tokio::test(flavor = "current_thread")]
async fn json_records_round_trip_any_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(
        dir.path(),
        "j.s-on",
        0,
        &policy(LogFormat::Json, 1 << 20, 2),
    )
    .unwrap();
    let lines: Vec<&[u8]> = vec![
        b"plain",
        b"",
        b"quote \" backslash \\ tab \t ctrl \x01\x1f del \x7f cr \r",
        "caf\u{e9} \u{2028} \u{1F600}".as_bytes(),
        b"\xff\xfe\x00 binary \x80",
        b"cut \xe2\x82",
    ];
    let mut data = lines.join(&b"\n"[..]);
    data.push(b'\n');
    run(&logs, vec![data], vec![b"on err".to_vec()]).await;
    let recs = json_records(&read(&logs.paths().0));
    assert_eq!(recs.len(), lines.len());
    for (rec, want) in recs.iter().zip(&lines) {
        assert_eq!(raw_line(rec), *want, "{rec}");
        assert_eq!(
            rec.get("line_b64").is_some(),
            std::str::from_utf8(want).is_err(),
            "base64 only when needed: {rec}"
        );
        assert_eq!(
            (&rec["app"], &rec["stream"], &rec["instance"], &rec["pid"]),
            (&"j.s-on".into(), &"out".into(), &0.into(), &7.into())
        );
        let at = rec["at"].as_str().unwrap();
        assert!(at.len() == 24 && at.ends_with('Z'), "{at}");
        let keys: Vec<&String> = rec.as_object().unwrap().keys().collect();
        assert!(keys.len() <= 7, "{keys:?}");
    }
    assert_eq!(recs[4]["line"], "\u{FFFD}\u{FFFD}\u{0} binary \u{FFFD}");
    let err = json_records(&read(&logs.paths().1));
    assert_eq!(
        (&err[0]["stream"], &err[0]["line"]),
        (&"err".into(), &"on err".into())
    );
}

/// The numbered lines found in `path`, `.1`, ... oldest first, checking each file's size.
fn numbered_lines(path: &Path, max_size: u64) -> (Vec<u32>, usize) {
    let rotated = rotated(path).unwrap();
    let mut numbers = Vec::new();
    for file in rotated.iter().rev().map(|(_, p)| p.as_path()).chain([path]) {
        let bytes = read(file);
        assert!(
            bytes.len() as u64 <= max_size,
            "{} is too big",
            file.display()
        );
        assert!(!bytes.is_empty(), "{} is empty", file.display());
        for line in text_records(&bytes) {
            let line = String::from_utf8(line).unwrap();
            numbers.push(line.strip_prefix("line ").unwrap().parse::<u32>().unwrap());
        }
    }
    (numbers, rotated.len())
}

fn numbered_input(range: Range<u32>) -> Vec<Vec<u8>> {
    let text: String = range.map(|i| format!("line {i:05}\n")).collect();
    // uneven writes, so batches of many sizes meet the size limit
    let mut pieces = Vec::new();
    let mut rest = text.as_bytes();
    for size in [1, 7, 300, 36, 35, 1000, 4096].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).min(rest.len()));
        pieces.push(piece.to_vec());
        rest = tail;
    }
    pieces
}

#[tokio::test(flavor = "current_thread")]
async fn rotation_keeps_whole_lines_once_and_at_most_keep_files() {
    let dir = tempfile::tempdir().unwrap();
    // 36 bytes a record: 1024 holds 28 of them
    let logs = AppLogs::open(dir.path(), "rot", 0, &policy(LogFormat::Text, 1024, 3)).unwrap();
    let out = logs.paths().0;
    run(&logs, numbered_input(0..2000), vec![]).await;
    let (numbers, files) = numbered_lines(&out, 1024);
    assert_eq!(files, 3, "exactly keep rotated files");
    assert!(!logfmt::rotated_path(&out, 4).exists());
    let first = numbers[0];
    assert!(first > 0);
    assert_eq!(
        numbers,
        (first..2000).collect::<Vec<_>>(),
        "a suffix, in order, once"
    );

    // with room for everything, nothing is lost across 70-odd rotations
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "rot", 0, &policy(LogFormat::Text, 1024, 500)).unwrap();
    run(&logs, numbered_input(0..2000), vec![]).await;
    let (numbers, files) = numbered_lines(&logs.paths().0, 1024);
    assert!(files > 60, "{files}");
    assert_eq!(numbers, (0..2000).collect::<Vec<_>>());

    // fewer to keep: the surplus goes at once; more lines rotate on the same owner
    logs.set_policy(&policy(LogFormat::Text, 1024, 2));
    assert_eq!(rotated(&logs.paths().0).unwrap().len(), 2);
    run(&logs, numbered_input(2000..2100), vec![]).await;
    let (numbers, files) = numbered_lines(&logs.paths().0, 1024);
    assert_eq!(files, 2);
    assert_eq!(numbers.last(), Some(&2099));
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
}

#[tokio::test(flavor = "current_thread")]
async fn a_log_file_deleted_or_replaced_is_opened_anew_for_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(LogFormat::Text, 1 << 20, 3);
    let logs = AppLogs::open(dir.path(), "gone", 0, &policy).unwrap();
    let out = logs.paths().0;
    run(&logs, numbered_input(0..100), vec![]).await;
    // `turbo delete`, the files removed, and the app started again: the writer is reused
    std::fs::remove_file(&out).unwrap();
    logs.set_policy(&policy);
    run(&logs, numbered_input(100..200), vec![]).await;
    assert_eq!(
        numbered_lines(&out, 1 << 20).0,
        (100..200).collect::<Vec<_>>()
    );
    // replaced by another file (a move and a new file of that name): writing goes to the new one
    std::fs::rename(&out, dir.path().join("moved.log")).unwrap();
    std::fs::write(&out, b"").unwrap();
    logs.set_policy(&policy);
    run(&logs, numbered_input(200..300), vec![]).await;
    assert_eq!(
        numbered_lines(&out, 1 << 20).0,
        (200..300).collect::<Vec<_>>()
    );
    // still the same file: nothing is reopened, nothing lost
    logs.set_policy(&policy);
    run(&logs, numbered_input(300..400), vec![]).await;
    assert_eq!(
        numbered_lines(&out, 1 << 20).0,
        (200..400).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_bigger_than_max_size_goes_alone_into_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "huge", 0, &policy(LogFormat::Text, 1024, 10)).unwrap();
    let huge = "h".repeat(3000);
    run(&logs, vec![format!("a\n{huge}\nb\n").into_bytes()], vec![]).await;
    let out = logs.paths().0;
    assert_eq!(text_records(&read(&logfmt::rotated_path(&out, 2))), [b"a"]);
    assert_eq!(
        text_records(&read(&logfmt::rotated_path(&out, 1))),
        [huge.as_bytes()]
    );
    assert_eq!(text_records(&read(&out)), [b"b"]);
}

#[tokio::test(flavor = "current_thread")]
async fn an_old_and_a_new_process_share_rotation_without_losing_lines() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "two", 0, &policy(LogFormat::Text, 2048, 1000)).unwrap();
    let lines = |tag: &str| -> Vec<Vec<u8>> {
        (0..3000)
            .map(|i| format!("{tag} {i}\n").into_bytes())
            .collect()
    };
    let ((a_r, a_w), (b_r, b_w), (e1_r, e1_w), (e2_r, e2_w)) = (pipe(), pipe(), pipe(), pipe());
    let (old_source, new_source) = (
        Source {
            instance: 0,
            pid: 100,
        },
        Source {
            instance: 1,
            pid: 101,
        },
    );
    let old = logs.capture(old_source, a_r, e1_r);
    let new = logs.capture(new_source, b_r, e2_r);
    let writers = [
        feed(a_w, lines("old")),
        feed(b_w, lines("new")),
        feed(e1_w, vec![]),
        feed(e2_w, vec![]),
    ];
    let (x, y) = tokio::join!(old.done, new.done);
    x.unwrap();
    y.unwrap();
    writers.into_iter().for_each(|w| w.join().unwrap());
    let out = logs.paths().0;
    let mut seen = vec![Vec::new(), Vec::new()];
    for file in rotated(&out)
        .unwrap()
        .iter()
        .rev()
        .map(|(_, p)| p.clone())
        .chain([out])
    {
        assert!(read(&file).len() <= 2048);
        for (source, line) in tagged_records(&read(&file)) {
            let line = String::from_utf8(line).unwrap();
            let (tag, n) = line.split_once(' ').unwrap();
            // each line carries the tag of the pipe it came through
            let want = if tag == "new" { new_source } else { old_source };
            assert_eq!(source, want, "{line}");
            seen[usize::from(tag == "new")].push(n.parse::<u32>().unwrap());
        }
    }
    for numbers in seen {
        assert_eq!(numbers, (0..3000).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn flush_empties_current_files_and_deletes_rotated_ones() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "fl", 0, &policy(LogFormat::Text, 1024, 3)).unwrap();
    run(&logs, numbered_input(0..200), numbered_input(0..200)).await;
    let (out, err) = logs.paths();
    assert_eq!(rotated(&out).unwrap().len(), 3);
    assert_eq!(rotated(&err).unwrap().len(), 3);
    fs::write(dir.path().join("fl-out.log.x"), "not ours").unwrap();
    logs.flush().unwrap();
    for path in [&out, &err] {
        assert_eq!(fs::metadata(path).unwrap().len(), 0);
        assert!(rotated(path).unwrap().is_empty());
    }
    assert!(dir.path().join("fl-out.log.x").exists());
    // writing goes on from the start of the emptied file, and the size count restarted
    run(&logs, numbered_input(200..210), vec![]).await;
    assert_eq!(numbered_lines(&out, 1024), ((200..210).collect(), 0));
}

#[tokio::test(flavor = "current_thread")]
async fn the_stderr_tail_holds_the_last_20_lines_of_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "tail", 0, &LogPolicy::default()).unwrap();
    let first = run(&logs, vec![], vec![b"old 1\nold 2\n".to_vec()]).await;
    assert_eq!(first, ["old 1", "old 2"]);
    let err: Vec<Vec<u8>> = (0..30)
        .map(|i| format!("e{i}\r\n").into_bytes())
        .chain([b"\xffunfinished".to_vec()])
        .collect();
    let tail = run(&logs, vec![b"stdout is not in it\n".to_vec()], err).await;
    let want: Vec<String> = (11..30)
        .map(|i| format!("e{i}"))
        .chain(["\u{FFFD}unfinished".to_owned()])
        .collect();
    assert_eq!(tail, want, "only this process, newest last");
    let long = run(&logs, vec![], vec![vec![b'x'; 10_000]]).await;
    assert_eq!(long[0].len(), TAIL_LINE_MAX + '…'.len_utf8());
}

#[tokio::test(flavor = "current_thread")]
async fn done_resolves_only_when_both_streams_have_ended() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "d", 0, &LogPolicy::default()).unwrap();
    let ((out_r, mut out_w), (err_r, mut err_w)) = (pipe(), pipe());
    let capture = logs.capture(SOURCE, out_r, err_r);
    out_w.write_all(b"last words").unwrap();
    drop(out_w);
    err_w.write_all(b"still here\n").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!capture.done.is_finished(), "stderr is still open");
    assert_eq!(text_records(&read(&logs.paths().0)), [b"last words"]);
    assert_eq!(capture.stderr_tail.lines(), ["still here"]);
    drop(err_w);
    tokio::time::timeout(Duration::from_secs(5), capture.done)
        .await
        .expect("done after both EOFs")
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_format_change_applies_to_the_next_lines() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AppLogs::open(dir.path(), "f", 0, &LogPolicy::default()).unwrap();
    run(&logs, vec![b"as text\n".to_vec()], vec![]).await;
    logs.set_policy(&policy(LogFormat::Json, 10 << 20, 5));
    run(&logs, vec![b"as json\n".to_vec()], vec![]).await;
    let bytes = read(&logs.paths().0);
    let (text, json) = bytes.split_at(bytes.iter().position(|&b| b == b'\n').unwrap() + 1);
    assert_eq!(text_records(text), [b"as text"]);
    assert_eq!(json_records(json)[0]["line"], "as json");
}

#[test]
fn a_full_disk_drops_and_counts_records_and_writing_resumes_by_itself() {
    let data = b"one\ntwo\n";
    let mut records = Records::default();
    records.format(
        LogFormat::Text,
        "2026-01-02T03:04:05.678Z",
        b"\"a\"",
        SOURCE,
        Stream::Out,
        &mut Batch::new(data, &mut Vec::new()),
    );
    let batch = records.buf.len() as u64;
    // /dev/full: every write fails with ENOSPC
    let mut sink = Sink::open(PathBuf::from("/dev/full")).unwrap();
    sink.write_records(&records, &LogPolicy::default(), 0);
    sink.write_records(&records, &LogPolicy::default(), 0);
    assert_eq!((sink.written, sink.dropped), (0, 2 * batch));
    assert!(sink.failing, "reported once, quiet since");
    // space again (the file under the sink is one with room): the next batch is written
    let dir = tempfile::tempdir().unwrap();
    sink.file = open_append(&dir.path().join("room.log")).unwrap();
    sink.size = 0;
    sink.write_records(&records, &LogPolicy::default(), 0);
    assert_eq!((sink.written, sink.dropped), (batch, 2 * batch));
    assert!(!sink.failing);
    assert_eq!(
        text_records(&read(&dir.path().join("room.log"))),
        [b"one", b"two"]
    );
}

#[test]
fn open_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = AppLogs::open(&missing, "a", 0, &LogPolicy::default()).unwrap_err();
    let want = format!(
        "cannot open log file {}",
        missing.join("a-out.log").display()
    );
    assert!(err.to_string().starts_with(&want), "{err}");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[tokio::test(flavor = "current_thread")]
async fn rotated_files_but_the_newest_are_compressed_and_lose_nothing() {
    use turbo_api::logfmt::Compression;
    for how in [Compression::Gzip, Compression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let mut p = policy(LogFormat::Text, 1024, 4);
        p.compress = how;
        let logs = AppLogs::open(dir.path(), "z", 0, &p).unwrap();
        run(&logs, numbered_input(0..400), vec![]).await;
        let out = logs.paths().0;
        let files = || rotated(&out).unwrap();
        // the worker finishes a moment later
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while files()
            .iter()
            .any(|(n, p)| *n > 1 && logfmt::Compression::of(p) != how)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{how:?}: {:?}",
                files()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let found = files();
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(
            logfmt::Compression::of(&found[0].1),
            Compression::None,
            ".1 stays plain"
        );
        let mut numbers = Vec::new();
        for (_, file) in found.iter().rev() {
            let bytes = match logfmt::Compression::of(file) {
                Compression::Gzip => {
                    let mut text = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(fs::File::open(file).unwrap()),
                        &mut text,
                    )
                    .unwrap();
                    text
                }
                Compression::Zstd => zstd::decode_all(fs::File::open(file).unwrap()).unwrap(),
                Compression::None => read(file),
            };
            for line in text_records(&bytes) {
                let line = String::from_utf8(line).unwrap();
                numbers.push(line.strip_prefix("line ").unwrap().parse::<u32>().unwrap());
            }
        }
        for line in text_records(&read(&out)) {
            let line = String::from_utf8(line).unwrap();
            numbers.push(line.strip_prefix("line ").unwrap().parse::<u32>().unwrap());
        }
        let first = numbers[0];
        assert_eq!(numbers, (first..400).collect::<Vec<_>>(), "{how:?}");
        // the worker may still be packing a file that the last rotations pruned: its
        // `.packing` goes when that job ends; none may stay
        let leftovers = || -> Vec<String> {
            fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".packing"))
                .collect()
        };
        while !leftovers().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{how:?}: {:?}",
                leftovers()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn daily_rotation_starts_a_file_at_the_first_write_after_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d-out.log");
    let mut sink = Sink::open(path.clone()).unwrap();
    let p = LogPolicy {
        rotate: Some(crate::spec::RotatePeriod::Daily),
        ..LogPolicy::default()
    };
    let batch = |text: &str| {
        let mut records = Records::default();
        let data = format!("{text}\n");
        records.format(
            LogFormat::Text,
            "2026-01-02T03:04:05.678Z",
            b"\"d\"",
            SOURCE,
            Stream::Out,
            &mut Batch::new(data.as_bytes(), &mut Vec::new()),
        );
        records
    };
    let midnight = logfmt::stamp_ms("2026-01-03T00:00:00.000Z").unwrap();
    sink.write_records(&batch("late"), &p, midnight - 1000);
    sink.write_records(&batch("later"), &p, midnight - 1);
    sink.write_records(&batch("new day"), &p, midnight);
    sink.write_records(&batch("same day"), &p, midnight + 3_600_000);
    let lines = |p: &Path| -> Vec<String> {
        text_records(&read(p))
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    };
    assert_eq!(lines(&logfmt::rotated_path(&path, 1)), ["late", "later"]);
    assert_eq!(lines(&path), ["new day", "same day"]);
    // a quiet day rotates nothing; the next write after it does
    sink.write_records(&batch("two days on"), &p, midnight + 2 * 86_400_000);
    assert_eq!(
        lines(&logfmt::rotated_path(&path, 1)),
        ["new day", "same day"]
    );
    assert_eq!(lines(&path), ["two days on"]);
}

#[test]
fn opening_a_log_cleans_up_and_resumes_an_interrupted_compression() {
    use turbo_api::logfmt::Compression;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k-out.log");
    // what a keeper SIGKILLed while compressing .2 leaves: the plain .2, half a temporary file
    fs::write(
        logfmt::rotated_path(&out, 1),
        "2026-01-02T03:04:05.678Z one\n",
    )
    .unwrap();
    fs::write(
        logfmt::rotated_path(&out, 2),
        "2026-01-02T03:04:05.678Z two\n",
    )
    .unwrap();
    fs::write(
        dir.path().join(".k-out.log.12345.packing"),
        b"\x1f\x8b half",
    )
    .unwrap();
    // not ours: another log's, and a name that only looks alike
    fs::write(dir.path().join(".j-out.log.1.packing"), b"").unwrap();
    fs::write(dir.path().join(".k-out.log.x.packing"), b"").unwrap();
    let mut p = policy(LogFormat::Text, 1024, 4);
    p.compress = Compression::Gzip;
    let _logs = AppLogs::open(dir.path(), "k", 0, &p).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let names = || names_in(dir.path());
    while !names().contains(&"k-out.log.2.gz".to_owned()) {
        assert!(std::time::Instant::now() < deadline, "{:?}", names());
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        names(),
        [
            ".j-out.log.1.packing",
            ".k-out.log.x.packing",
            "k-err.log",
            "k-out.log",
            "k-out.log.1",
            "k-out.log.2.gz"
        ]
    );
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            fs::File::open(dir.path().join("k-out.log.2.gz")).unwrap(),
        ),
        &mut text,
    )
    .unwrap();
    assert_eq!(text, "2026-01-02T03:04:05.678Z two\n");
}

/// The recoveries of many logs opened together list their directory once and still find
/// each log's own leftovers and plain rotated files, and nobody else's.
#[test]
fn recovering_many_logs_at_once_finds_each_ones_own_files() {
    use turbo_api::logfmt::Compression;
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| dir.path().join(name);
    for name in [
        ".a-out.log.77.packing",
        "a-out.log.1",
        "a-out.log.2",
        "a-out.log.3.gz",
        // b's: its leftover goes, its plain .2 is not compressed (b does not compress)
        ".b-out.log.5.packing",
        "b-out.log.2",
        // the names of no open log: left alone
        ".c-out.log.9.packing",
        "c-out.log.2",
        "a-out.log.2x",
        ".a-out.log..packing",
    ] {
        fs::write(log(name), name).unwrap();
    }
    let recovery = |name: &str, how| super::compress::Recovery {
        log: log(name),
        how,
        lock: std::sync::Arc::default(),
    };
    let jobs = super::compress::recover_all(vec![
        recovery("a-out.log", Compression::None),
        recovery("b-out.log", Compression::None),
        // the last recovery of a log counts: a compresses
        recovery("a-out.log", Compression::Zstd),
    ]);
    let queued: Vec<(PathBuf, Compression)> = jobs.iter().map(|j| (j.log.clone(), j.how)).collect();
    assert_eq!(queued, [(log("a-out.log"), Compression::Zstd)]);
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".a-out.log..packing",
            ".c-out.log.9.packing",
            "a-out.log.1",
            "a-out.log.2",
            "a-out.log.2x",
            "a-out.log.3.gz",
            "b-out.log.2",
            "c-out.log.2",
        ]
    );
}

/// `log.per_instance`: `-<N>` before the extension of default and custom names alike, and each
/// instance's writer has files of its own.
#[tokio::test(flavor = "current_thread")]
async fn per_instance_files_insert_the_instance_before_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = LogPolicy {
        per_instance: true,
        ..LogPolicy::default()
    };
    assert_eq!(
        paths(dir.path(), "api", 2, &p),
        (
            dir.path().join("api-out-2.log"),
            dir.path().join("api-err-2.log")
        )
    );
    // without it, every instance shares the app's files
    assert_eq!(
        paths(dir.path(), "api", 2, &LogPolicy::default()).0,
        dir.path().join("api-out.log")
    );
    p.out = Some("/var/log/api/all.log".into());
    p.err = Some("/var/log/api/errors".into());
    assert_eq!(
        paths(dir.path(), "api", 1, &p),
        (
            "/var/log/api/all-1.log".into(),
            "/var/log/api/errors-1".into()
        )
    );

    let p = LogPolicy {
        per_instance: true,
        ..LogPolicy::default()
    };
    for instance in [0, 1] {
        let logs = AppLogs::open(dir.path(), "web", instance, &p).unwrap();
        assert!(logs.are(dir.path(), "web", instance, &p));
        assert!(!logs.are(dir.path(), "web", 1 - instance, &p));
        let ((out_r, out_w), (err_r, err_w)) = (pipe(), pipe());
        let capture = logs.capture(
            Source {
                instance,
                pid: 10 + instance,
            },
            out_r,
            err_r,
        );
        let writers = [
            feed(out_w, vec![format!("from {instance}\n").into_bytes()]),
            feed(err_w, vec![]),
        ];
        tokio::time::timeout(Duration::from_secs(20), capture.done)
            .await
            .unwrap()
            .unwrap();
        for w in writers {
            w.join().unwrap();
        }
    }
    for instance in [0_u32, 1] {
        let file = dir.path().join(format!("web-out-{instance}.log"));
        let records = tagged_records(&read(&file));
        assert_eq!(records.len(), 1, "{}", file.display());
        assert_eq!(records[0].0.instance, instance);
        assert_eq!(records[0].1, format!("from {instance}").into_bytes());
    }
    assert!(!dir.path().join("web-out.log").exists());
}

/// The keeper's write-behind: batches of two apps' files, written on its thread while more are
/// formatted, land whole and in order, across rotations; once drained, the files and counters
/// hold every batch given.
#[test]
fn batches_written_behind_land_in_order_and_drain_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let small = policy(LogFormat::Text, 64 * 1024, 100);
    let apps = [
        AppLogs::open(dir.path(), "a", 0, &small).unwrap(),
        AppLogs::open(dir.path(), "b", 0, &LogPolicy::default()).unwrap(),
    ];
    let mut behind = WriteBehind::start();
    let (mut data, mut lines) = (Vec::new(), Vec::new());
    for batch in 0..200 {
        data.clear();
        for n in 0..50 {
            data.extend_from_slice(format!("batch {batch:03} line {n:02}\n").as_bytes());
        }
        for (i, logs) in apps.iter().enumerate() {
            let stream = if i == 0 { Stream::Out } else { Stream::Err };
            let mut records = behind.buffer();
            let now = logs
                .format(
                    SOURCE,
                    stream,
                    &mut Batch::new(&data, &mut lines),
                    &mut records,
                )
                .expect("text to the files");
            behind.write(logs, stream, records, now);
        }
    }
    behind.drain();
    let want: Vec<Vec<u8>> = (0..200)
        .flat_map(|b| (0..50).map(move |n| format!("batch {b:03} line {n:02}").into_bytes()))
        .collect();
    // a's files: rotated (oldest first), then the current one
    let (a_out, _) = apps[0].paths();
    let mut a = Vec::new();
    for (_, old) in rotated(&a_out).unwrap().into_iter().rev() {
        a.extend(read(&old));
    }
    a.extend(read(&a_out));
    assert!(
        !rotated(&a_out).unwrap().is_empty(),
        "a rotated while written behind"
    );
    assert_eq!(text_records(&a), want);
    let (_, b_err) = apps[1].paths();
    let b = read(&b_err);
    assert_eq!(text_records(&b), want);
    assert_eq!(apps[1].counters()[1], (Stream::Err, b.len() as u64, 0));
}

/// The compression worker's wait under a flood: until [`compress::FLOOD_BATCH`]-sized writes
/// have paused for a while, but never past the job's due time.
#[test]
fn compression_waits_for_a_pause_in_a_flood_but_not_past_its_due_time() {
    use super::compress::pause;
    let ms = Duration::from_millis;
    // no flood yet, or long over: at once
    assert_eq!(pause(5_000, 0, 7_000), None);
    assert_eq!(pause(5_000, 4_000, 7_000), None);
    // a flood batch 5 ms ago: until 20 ms after it
    assert_eq!(pause(5_000, 4_995, 7_000), Some(ms(15)));
    assert_eq!(pause(5_000, 5_000, 7_000), Some(ms(20)));
    // the flood goes on: never past the due time, then at once however recent the flood
    assert_eq!(pause(6_990, 6_990, 7_000), Some(ms(10)));
    assert_eq!(pause(7_000, 7_000, 7_000), None);
    assert_eq!(pause(9_000, 9_000, 7_000), None);
}

/// A compression asks whether to wait before it writes anything and again after each piece of
/// the file, and what it writes is the whole file.
#[test]
fn compression_looks_for_a_flood_before_it_starts_and_between_pieces() {
    use super::compress::{Job, PIECE, run};
    use turbo_api::logfmt::Compression;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w-out.log");
    let text: Vec<u8> = (0..)
        .flat_map(|n| format!("2026-01-02T03:04:05.678Z line {n}\n").into_bytes())
        .take(3 * PIECE + 100)
        .collect();
    fs::write(logfmt::rotated_path(&out, 2), &text).unwrap();
    let job = Job {
        file: super::compress::open_plain(&logfmt::rotated_path(&out, 2)).unwrap(),
        log: out.clone(),
        how: Compression::Zstd,
        lock: std::sync::Arc::default(),
    };
    let names = || names_in(dir.path());
    let mut seen = Vec::new();
    run(&job, || seen.push(names())).unwrap();
    // once before the temporary file exists, then once per piece (4 pieces) while it is written
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[0], ["w-out.log.2"]);
    let packing = format!(".w-out.log.{}.packing", {
        use std::os::unix::fs::MetadataExt as _;
        job.file.metadata().unwrap().ino()
    });
    for names in &seen[1..] {
        assert_eq!(names, &[packing.clone(), "w-out.log.2".to_owned()]);
    }
    assert_eq!(names(), ["w-out.log.2.zst"]);
    let back =
        zstd::decode_all(fs::File::open(dir.path().join("w-out.log.2.zst")).unwrap()).unwrap();
    assert_eq!(back, text);
}
