//! The D-Bus API called directly (zbus proxy, generic proxies) and through `busctl`.

use std::{collections::HashMap, process::Command};

use turbo_api::{APP_INTERFACE, BUS_NAME, MANAGER_PATH, ManagerProxy, ROOT_PATH, app_path};
use turbo_tests::TestDaemon;
use zbus::zvariant::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The D-Bus error name of a failed call.
fn error_name(err: &zbus::Error) -> String {
    match err {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => panic!("not a method error: {other:?}"),
    }
}

#[test]
fn manager_methods_app_objects_and_errors() {
    let d = TestDaemon::start("auto");
    rt().block_on(async {
        let conn = d.connect().await;
        let m = ManagerProxy::new(&conn).await.unwrap();
        assert_eq!(m.ping().await.unwrap(), env!("CARGO_PKG_VERSION"));

        let mut opts = HashMap::new();
        opts.insert("cwd", Value::from("/tmp"));
        let st = m.start_app("api", &["sleep", "1000"], opts).await.unwrap();
        assert_eq!(st.name, "api");
        assert_eq!(st.state, "online");
        assert!(st.pid > 0);
        assert_eq!(st.cwd, "/tmp");
        assert!(
            st.argv[0].ends_with("/sleep"),
            "argv[0] resolved to a path: {:?}",
            st.argv
        );

        // the app object exists, with properties
        let app = zbus::Proxy::new(&conn, BUS_NAME, app_path("api"), APP_INTERFACE)
            .await
            .unwrap();
        let state: String = app.get_property("State").await.unwrap();
        assert_eq!(state, "online");
        let pid: u32 = app.get_property("Pid").await.unwrap();
        assert_eq!(pid, st.pid);

        // the ObjectManager lists it
        let om = zbus::fdo::ObjectManagerProxy::builder(&conn)
            .destination(BUS_NAME)
            .unwrap()
            .path(ROOT_PATH)
            .unwrap()
            .build()
            .await
            .unwrap();
        let objects = om.get_managed_objects().await.unwrap();
        assert!(
            objects
                .keys()
                .any(|p| p.as_str() == app_path("api").as_str()),
            "{:?}",
            objects.keys().collect::<Vec<_>>()
        );

        // errors carry their names
        let dup = m
            .start_app("api", &["sleep", "1"], HashMap::new())
            .await
            .unwrap_err();
        assert_eq!(
            error_name(&dup),
            "org.turboprocess.Turbo1.Error.AlreadyExists"
        );
        let missing = m.stop_app("nope").await.unwrap_err();
        assert_eq!(
            error_name(&missing),
            "org.turboprocess.Turbo1.Error.NotFound"
        );
        let bad = m
            .start_app("../x", &["sleep", "1"], HashMap::new())
            .await
            .unwrap_err();
        assert_eq!(
            error_name(&bad),
            "org.turboprocess.Turbo1.Error.InvalidArgument"
        );

        // restart by id, then stop and delete
        let restarted = m.restart_app(&st.id.to_string()).await.unwrap();
        assert_eq!(restarted[0].restarts, 1);
        assert_ne!(restarted[0].pid, st.pid);
        let stopped = m.stop_app("all").await.unwrap();
        assert_eq!(stopped[0].state, "stopped");
        let state: String = app.get_property("State").await.unwrap();
        assert_eq!(state, "stopped", "properties follow the state");
        assert_eq!(m.delete_app("api").await.unwrap(), vec!["api".to_owned()]);
        assert!(m.list_apps().await.unwrap().is_empty());
        // without a cwd option an app runs in TURBO_HOME
        let st = m
            .start_app("nocwd", &["sleep", "1000"], HashMap::new())
            .await
            .unwrap();
        assert_eq!(std::path::Path::new(&st.cwd), d.home());
        let info = m.info().await.unwrap();
        assert_eq!(info.mode, "user");
        assert_eq!(info.apps, 1);
    });
}

#[test]
fn state_changes_are_signalled() {
    use futures_util::StreamExt;
    let d = TestDaemon::start("auto");
    rt().block_on(async {
        let conn = d.connect().await;
        let m = ManagerProxy::new(&conn).await.unwrap();
        let mut changes = m.receive_app_state_changed().await.unwrap();
        m.start_app("sig", &["sleep", "1000"], HashMap::new())
            .await
            .unwrap();
        let mut seen = Vec::new();
        while !seen.contains(&"online".to_owned()) {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(5), changes.next())
                .await
                .expect("AppStateChanged within 5 s")
                .unwrap();
            let args = ev.args().unwrap();
            assert_eq!(args.name, "sig");
            seen.push(args.state.to_owned());
        }
        assert_eq!(seen, ["starting", "online"]);
    });
}

#[test]
fn busctl_sees_the_interface_and_can_call_it() {
    let d = TestDaemon::start("auto");
    d.turbo_ok(&["start", "sleep", "--name", "viabusctl", "--", "1000"]);
    let busctl = |args: &[&str]| {
        let out = Command::new("busctl")
            .arg(format!("--address={}", d.address()))
            .args(args)
            .output()
            .expect("busctl is installed (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "busctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let intro = busctl(&["introspect", BUS_NAME, MANAGER_PATH]);
    for member in [
        ".StartApp",
        ".StartConfig",
        ".StopApp",
        ".RestartApp",
        ".DeleteApp",
        ".ListApps",
        ".Info",
        ".Ping",
        ".Shutdown",
        ".AppStateChanged",
    ] {
        assert!(
            intro.contains(member),
            "introspection lacks {member}:\n{intro}"
        );
    }
    let list = busctl(&[
        "call",
        BUS_NAME,
        MANAGER_PATH,
        "org.turboprocess.Turbo1.Manager",
        "ListApps",
    ]);
    assert!(
        list.contains("\"viabusctl\"") && list.contains("\"online\""),
        "{list}"
    );
    let tree = busctl(&["tree", BUS_NAME]);
    assert!(
        tree.contains("/org/turboprocess/Turbo1/app/viabusctl"),
        "{tree}"
    );
    let state = busctl(&[
        "get-property",
        BUS_NAME,
        app_path("viabusctl").as_str(),
        APP_INTERFACE,
        "State",
    ]);
    assert_eq!(state.trim(), "s \"online\"");
}

/// The interface XML shipped in `deploy/` is what the daemon serves. Regenerate it with
/// `TURBO_BLESS=1 cargo test -p turbo-tests --test e2e shipped_interface_xml`.
#[test]
fn shipped_interface_xml_matches_the_live_daemon() {
    let d = TestDaemon::start("off");
    d.turbo_ok(&["start", "sleep", "--name", "x", "--", "1000"]);
    let live = rt().block_on(async {
        let conn = d.connect().await;
        let mut blocks = Vec::new();
        for (path, iface) in [
            (MANAGER_PATH.to_owned(), "org.turboprocess.Turbo1.Manager"),
            (app_path("x").to_string(), APP_INTERFACE),
        ] {
            let p = zbus::fdo::IntrospectableProxy::builder(&conn)
                .destination(BUS_NAME)
                .unwrap()
                .path(path)
                .unwrap()
                .build()
                .await
                .unwrap();
            let xml = p.introspect().await.unwrap();
            blocks.push(interface_block(&xml, iface));
        }
        blocks
    });
    let generated = format!(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<!-- The D-Bus API of turbo-daemon. Generated from the live daemon by the e2e test\n     shipped_interface_xml_matches_the_live_daemon (TURBO_BLESS=1 rewrites it). -->\n<node>\n{}\n</node>\n",
        live.join("\n")
    );
    let shipped_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/org.turboprocess.Turbo1.xml");
    if std::env::var_os("TURBO_BLESS").is_some() {
        std::fs::write(&shipped_path, &generated).unwrap();
    }
    let shipped = std::fs::read_to_string(&shipped_path).unwrap_or_default();
    assert_eq!(
        shipped, generated,
        "deploy/org.turboprocess.Turbo1.xml is out of date: rerun with TURBO_BLESS=1"
    );
}

/// The `<interface name="...">...</interface>` element of `iface` in an introspection document.
fn interface_block(xml: &str, iface: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{iface}\">"))
        .unwrap_or_else(|| panic!("{iface} not in introspection:\n{xml}"));
    let end = xml[start..].find("</interface>").unwrap() + start + "</interface>".len();
    xml[start..end].to_owned()
}
