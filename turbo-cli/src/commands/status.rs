//! `turbo status|ls|list [TARGET] [--sort COL] [--json]`: the apps, as a table or as the JSON
//! array of DESIGN §6, filtered by a target (`@group` included) and ordered by a column.

use std::cmp::Reverse;

use anyhow::{Result, bail};
use turbo_api::{AppStatus, ManagerProxy};

use super::{daemon, print_table};
use crate::{
    cli::{StatusArgs, StatusSort},
    connect::call_error,
    term,
};

pub async fn run(args: &StatusArgs) -> Result<()> {
    let json = args.json;
    let daemon = daemon().await?;
    // both calls go out before either answer is awaited: one round trip instead of two
    let (apps, off_reason) = tokio::join!(
        async {
            if json {
                daemon.proxy.list_apps().await
            } else {
                table_rows(&daemon.proxy).await
            }
        },
        daemon.proxy.metrics_off_reason()
    );
    let mut apps = apps.map_err(|e| call_error(&e))?;
    if let Some(target) = &args.target {
        apps.retain(|a| matches(a, target));
        if apps.is_empty() {
            bail!("no app matches '{target}'; `turbo status` lists them all");
        }
    }
    sort(&mut apps, args.sort);
    // an exporter that was asked for but could not listen is worth a line (off on purpose is not)
    if let Ok(why) = off_reason
        && !why.is_empty()
        && why != "--metrics-listen off"
    {
        eprintln!("warning: the metrics exporter is off: {why}");
    }
    if json {
        // printed from borrowed views: no `Value` tree of 1000 maps first (issue 21)
        let array: Vec<_> = apps.iter().map(AppStatus::json).collect();
        term::emit_json(&array)
    } else {
        print_table(&apps)
    }
}

/// The apps with the fields the table shows (`ListAppRows`: a fifth of `ListApps`'s reply with
/// 1,000 apps), or all of them from a daemon older than this CLI (a running daemon is replaced
/// only when it restarts after an upgrade).
pub async fn table_rows(proxy: &ManagerProxy<'_>) -> zbus::Result<Vec<AppStatus>> {
    match proxy.list_app_rows().await {
        Ok(rows) => Ok(rows.into_iter().map(AppStatus::from).collect()),
        Err(e) if unknown_method(&e) => proxy.list_apps().await,
        Err(e) => Err(e),
    }
}

/// Whether the daemon does not know the method called.
fn unknown_method(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _)
        if name.as_str() == "org.freedesktop.DBus.Error.UnknownMethod")
}

/// Whether `app` is one of `target`: `all`, an id, `@group`, `name:N` or a name (the daemon's
/// rules, see `supervisor::Target`).
fn matches(app: &AppStatus, target: &str) -> bool {
    if target == "all" {
        return true;
    }
    if let Ok(id) = target.parse::<u32>() {
        return app.id == id;
    }
    if let Some(group) = target.strip_prefix('@') {
        return app.group == group;
    }
    if let Some((name, n)) = target.rsplit_once(':')
        && let Ok(n) = n.parse::<u32>()
    {
        return app.name == name && app.instance == n;
    }
    app.name == target
}

/// Orders `apps` by `by`; ties keep id order (the daemon lists by id).
fn sort(apps: &mut [AppStatus], by: StatusSort) {
    match by {
        StatusSort::Id => apps.sort_by_key(|a| a.id),
        StatusSort::Name => apps.sort_by(|a, b| (&a.name, a.instance).cmp(&(&b.name, b.instance))),
        // apps in no group come last
        StatusSort::Group => apps.sort_by(|a, b| {
            (a.group.is_empty(), &a.group, &a.name, a.instance).cmp(&(
                b.group.is_empty(),
                &b.group,
                &b.name,
                b.instance,
            ))
        }),
        StatusSort::State => apps.sort_by(|a, b| a.state.cmp(&b.state)),
        StatusSort::Memory => apps.sort_by_key(|a| Reverse(a.memory_bytes)),
        StatusSort::Restarts => apps.sort_by_key(|a| Reverse(a.restarts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: u32, name: &str, instance: u32, group: &str) -> AppStatus {
        AppStatus {
            id,
            name: name.into(),
            instance,
            group: group.into(),
            ..AppStatus::default()
        }
    }

    #[test]
    fn targets_filter_like_the_daemon_resolves_them() {
        let web1 = app(3, "web", 1, "front");
        for (target, want) in [
            ("all", true),
            ("3", true),
            ("4", false),
            ("@front", true),
            ("@back", false),
            ("web", true),
            ("web:1", true),
            ("web:0", false),
            ("we", false),
        ] {
            assert_eq!(matches(&web1, target), want, "{target}");
        }
    }

    #[test]
    fn sort_by_group_puts_ungrouped_apps_last() {
        let mut apps = vec![
            app(1, "z", 0, ""),
            app(2, "b", 0, "web"),
            app(3, "a", 0, "web"),
            app(4, "c", 0, "db"),
        ];
        sort(&mut apps, StatusSort::Group);
        let ids: Vec<u32> = apps.iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![4, 3, 2, 1]);
        sort(&mut apps, StatusSort::Id);
        let ids: Vec<u32> = apps.iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
    }
}
