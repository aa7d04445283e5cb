//! `turbo.yml` on arbitrary bytes: YAML parsing (serde_yaml_ng), validation, and the position
//! finder (saphyr-parser) that runs on every invalid document. Must never panic, hang or
//! exhaust memory: a root daemon parses documents sent by callers.
#![no_main]

use std::{path::Path, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use turbo_daemon::{
    access::Powers,
    config::{Document, from_yaml},
};

fuzz_target!(|data: &[u8]| {
    static POWERS: OnceLock<Powers> = OnceLock::new();
    let powers = POWERS.get_or_init(Powers::current);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // a base directory that does not exist: relative paths resolve nowhere, so the target does
    // not depend on the files of the machine it runs on (absolute ones are only read)
    let doc = Document {
        content: text,
        origin: "fuzz.yml",
        base_dir: Path::new("/nonexistent/turbo-fuzz"),
        path_env: "/usr/bin:/bin",
        vars: &turbo_daemon::config::NO_VARS,
    };
    let result = from_yaml(&doc, powers);
    if let Err(e) = result {
        assert!(!e.problems.is_empty(), "an error says what is wrong");
        assert_eq!(
            e.to_string().lines().count(),
            e.problems.len(),
            "one line per problem"
        );
    }
});
