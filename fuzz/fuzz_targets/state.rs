//! The state and dump file decoder on arbitrary bytes. A state file that decodes must encode
//! and decode again to the same bytes (nothing the daemon writes is lost on its next start).
#![no_main]

use libfuzzer_sys::fuzz_target;
use turbo_daemon::storage;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = storage::decode(data) else {
        return;
    };
    let once = serde_json::to_vec(&state).expect("a decoded state encodes");
    let again = storage::decode(&once).expect("an encoded state decodes");
    let twice = serde_json::to_vec(&again).expect("encodes");
    assert_eq!(once, twice, "a state survives a save and a load");
});
