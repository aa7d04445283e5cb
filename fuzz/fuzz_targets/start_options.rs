//! A `StartApp` call body (`(sasa{sv})`) decoded from arbitrary bytes as zbus decodes it, then
//! the daemon's checks: the name, the command-line bounds and `from_start_options` (option keys
//! and types, environment bounds, validation). The daemon does this for any caller on the bus.
#![no_main]

use std::{collections::HashMap, path::Path, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use turbo_daemon::{
    access::Powers,
    config::{StartCall, from_start_options, input},
};
use zbus::zvariant::{
    Endian, OwnedValue,
    serialized::{Context, Data},
};

fuzz_target!(|data: &[u8]| {
    static POWERS: OnceLock<Powers> = OnceLock::new();
    let powers = POWERS.get_or_init(Powers::current);
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let endian = if first & 1 == 0 {
        Endian::Little
    } else {
        Endian::Big
    };
    let bytes = Data::new(body, Context::new_dbus(endian, 0));
    let Ok(((name, argv, options), _)) =
        bytes.deserialize::<(String, Vec<String>, HashMap<String, OwnedValue>)>()
    else {
        return;
    };
    // the order of `ManagerIface::start_app`
    if turbo_api::validate_app_name(&name).is_err() || input::check_argv(&argv).is_err() {
        return;
    }
    let call = StartCall {
        name: &name,
        argv: &argv,
        options: &options,
        path_env: "/usr/bin:/bin",
        default_cwd: Path::new("/nonexistent/turbo-fuzz"),
    };
    let _ = from_start_options(&call, powers);
});
