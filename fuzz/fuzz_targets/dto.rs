//! The data types that cross the bus, decoded from arbitrary bytes as a client (the CLI)
//! decodes a daemon's replies. What decodes must encode and decode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turbo_api::{AppConfigInfo, AppStatus, CrashRecord, CrashStats, DaemonInfo};
use zbus::zvariant::{
    Endian, Type,
    serialized::{Context, Data},
    to_bytes,
};

/// Decodes `T` from `body`; if that works, checks the encode/decode round trip.
fn round_trip<T>(ctxt: Context, body: &[u8])
where
    T: for<'de> serde::Deserialize<'de> + serde::Serialize + Type,
{
    let Ok((value, _)) = Data::new(body, ctxt).deserialize::<T>() else {
        return;
    };
    let once = to_bytes(ctxt, &value).expect("a decoded value encodes");
    let (again, _) = once.deserialize::<T>().expect("an encoded value decodes");
    let twice = to_bytes(ctxt, &again).expect("encodes");
    assert_eq!(once.bytes(), twice.bytes(), "the round trip is stable");
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let endian = if first & 0x80 == 0 {
        Endian::Little
    } else {
        Endian::Big
    };
    let ctxt = Context::new_dbus(endian, 0);
    match first & 0x07 {
        0 => round_trip::<AppStatus>(ctxt, body),
        1 => round_trip::<CrashRecord>(ctxt, body),
        2 => round_trip::<CrashStats>(ctxt, body),
        3 => round_trip::<AppConfigInfo>(ctxt, body),
        4 => round_trip::<DaemonInfo>(ctxt, body),
        5 => round_trip::<(AppStatus, AppConfigInfo, Vec<CrashRecord>)>(ctxt, body),
        6 => round_trip::<Vec<AppStatus>>(ctxt, body),
        _ => round_trip::<(CrashStats, Vec<CrashRecord>)>(ctxt, body),
    }
});
