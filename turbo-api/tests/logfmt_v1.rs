//! Log files written by the first-generation daemon (December 2026, `tests/data/logs-v1`: one
//! app, text then json records, four rotations, a stderr file) must still be read, and today's
//! writer must produce them byte for byte.

use std::{fs, path::Path};

use turbo_api::{
    LogStream,
    logfmt::{self, Record},
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/logs-v1");
const APP: &str = "web.api";

/// The files of `stream`, oldest first, found the way a reader finds them.
fn files_oldest_first(stream: LogStream) -> Vec<std::path::PathBuf> {
    let current = Path::new(DIR).join(logfmt::file_name(APP, stream));
    let names = fs::read_dir(DIR).unwrap().map(|e| e.unwrap().file_name());
    let files = logfmt::oldest_first(&current, names);
    let want: Vec<_> = [3, 2, 1]
        .map(|n| logfmt::rotated_path(&current, n))
        .into_iter()
        .chain([current])
        .collect();
    assert_eq!(files, want, "`.1` is the newest rotated file");
    files
}

#[test]
fn first_generation_log_files_read_in_order_with_exact_bytes() {
    let lines: [&[u8]; 7] = [
        b"first line",
        b"",
        b"raw \xff\xfe bytes\r",
        "caf\u{e9} \u{20ac}\ttab".as_bytes(),
        b"quote \" and \\ backslash",
        b"sixth",
        b"seventh",
    ];
    let mut want: Vec<(bool, &[u8])> = lines.iter().map(|l| (false, *l)).collect();
    want.extend(lines.iter().map(|l| (true, *l)));

    let mut got = Vec::new();
    for file in files_oldest_first(LogStream::Out) {
        let bytes = fs::read(&file).unwrap();
        assert!(bytes.ends_with(b"\n"), "{} ends mid-record", file.display());
        let mut rewritten = Vec::new();
        for raw in bytes[..bytes.len() - 1].split(|&b| b == b'\n') {
            let record = Record::parse(raw);
            let at = record.at().expect("every record is stamped").to_owned();
            assert_eq!(at.len(), logfmt::STAMP_LEN);
            let json = matches!(record, Record::Json { .. });
            if let Record::Json { app, stream, .. } = &record {
                assert_eq!(
                    (app.as_deref(), stream.as_deref()),
                    (Some(APP), Some("out"))
                );
            }
            let line = record.bytes();
            if json {
                let mut app = Vec::new();
                logfmt::push_app_json(&mut app, APP);
                logfmt::push_json_record(&mut rewritten, &at, &app, LogStream::Out, &line);
            } else {
                logfmt::push_text_record(&mut rewritten, &at, &line);
            }
            got.push((json, line));
        }
        assert_eq!(
            String::from_utf8_lossy(&rewritten),
            String::from_utf8_lossy(&bytes),
            "today's writer reproduces {}",
            file.display()
        );
        assert_eq!(rewritten, bytes);
    }
    let got: Vec<(bool, &[u8])> = got.iter().map(|(j, l)| (*j, l.as_slice())).collect();
    assert_eq!(got, want);

    let err = fs::read(Path::new(DIR).join(logfmt::file_name(APP, LogStream::Err))).unwrap();
    let record = Record::parse(err.strip_suffix(b"\n").unwrap());
    assert_eq!(record.bytes(), b"boom \x01 ctrl");
    assert_eq!(record.text(), "boom \u{1} ctrl");
}
