//! The per-app D-Bus objects (`/org/turboprocess/Turbo1/app/...`): read-only properties that
//! mirror an app's status, added, refreshed and removed as the runtime's notices arrive. Like
//! the manager interface, a thin adapter: it holds no state beyond the last status it was given.

use super::*;

/// One app's object: read-only properties, refreshed on every state change.
pub struct AppIface {
    status: AppStatus,
}

#[interface(name = "org.turboprocess.Turbo1.App")]
impl AppIface {
    /// Numeric id.
    #[zbus(property)]
    fn id(&self) -> u32 {
        self.status.id
    }

    /// Name.
    #[zbus(property)]
    fn name(&self) -> String {
        self.status.name.clone()
    }

    /// `starting|online|stopping|stopped|backoff|errored`.
    #[zbus(property)]
    fn state(&self) -> String {
        self.status.state.clone()
    }

    /// Main process id, 0 when not running.
    #[zbus(property)]
    fn pid(&self) -> u32 {
        self.status.pid
    }

    /// Restarts so far.
    #[zbus(property)]
    fn restarts(&self) -> u32 {
        self.status.restarts
    }

    /// Command line.
    #[zbus(property)]
    fn argv(&self) -> Vec<String> {
        self.status.argv.clone()
    }

    /// Working directory.
    #[zbus(property)]
    fn cwd(&self) -> String {
        self.status.cwd.clone()
    }

    /// Why the last process ended (`exit|signal|...|manual`), empty if none yet.
    #[zbus(property)]
    fn last_exit_reason(&self) -> String {
        self.status.last_exit.reason.clone()
    }

    /// Exit status of the last process, -1 if it was killed by a signal or none exited yet.
    #[zbus(property)]
    fn last_exit_code(&self) -> i32 {
        self.status.last_exit.code
    }

    /// Signal that killed the last process, 0 if none.
    #[zbus(property)]
    fn last_exit_signal(&self) -> i32 {
        self.status.last_exit.signal
    }

    /// `unknown|healthy|unhealthy|none`.
    #[zbus(property)]
    fn health(&self) -> String {
        self.status.health.clone()
    }

    /// The last `STATUS=` the app sent over `NOTIFY_SOCKET`, empty if none.
    #[zbus(property)]
    fn status_text(&self) -> String {
        self.status.status_text.clone()
    }

    /// The full snapshot (CPU and memory are not sampled here; use `ListApps` for those).
    #[zbus(out_args("status"))]
    fn status(&self) -> AppStatus {
        self.status.clone()
    }
}

/// Mirrors runtime notices onto the bus until the runtime goes away.
///
/// One object per instance ([`instance_path`]). During a reload a replacement and the instance
/// it replaces share a path: the newest app owns it (`Added` takes it over), and only the owner's
/// changes and removal touch it.
pub async fn publish(conn: zbus::Connection, mut notices: mpsc::UnboundedReceiver<Notice>) {
    let server = conn.object_server();
    let manager_emitter = match SignalEmitter::new(&conn, MANAGER_PATH) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("cannot emit manager signals: {e}");
            return;
        }
    };
    while let Some(notice) = notices.recv().await {
        let result = match notice.on_wire() {
            Notice::Added(status) => {
                let path = instance_path(&status.name, status.instance);
                match server.interface::<_, AppIface>(&path).await {
                    Ok(iface) => {
                        iface.get_mut().await.status = status.clone();
                        refresh(server, status).await
                    }
                    Err(_) => server.at(path, AppIface { status }).await.map(drop),
                }
            }
            Notice::Changed(status) => {
                let _ = ManagerIface::app_state_changed(
                    &manager_emitter,
                    &status.name,
                    &status.state,
                    status.pid,
                )
                .await;
                refresh(server, status).await
            }
            Notice::MemoryWarning(name, rss, max) => {
                ManagerIface::memory_warning(&manager_emitter, &name, rss, max).await
            }
            Notice::Crashed(name, mut record) => {
                // a signal reaches every subscriber, whoever they are: the app's own output
                // only through `GetCrashes`, which knows who asks
                wire::hide_output(&mut record);
                ManagerIface::app_crashed(&manager_emitter, &name, record).await
            }
            Notice::Removed(name, instance, id) => remove(server, &name, instance, id).await,
            Notice::Exec(name, pid, filename, allowed) => {
                ManagerIface::app_exec(&manager_emitter, &name, pid, &filename, allowed).await
            }
            Notice::Event(name, event) => {
                ManagerIface::app_event(&manager_emitter, &name, event).await
            }
        };
        if let Err(e) = result {
            tracing::warn!("updating D-Bus objects failed: {e}");
        }
    }
}

/// Removes the object of instance `instance` of app `name` if app `id` still owns it (a
/// reload's replacement may have taken the path over).
async fn remove(
    server: &zbus::ObjectServer,
    name: &str,
    instance: u32,
    id: u32,
) -> zbus::Result<()> {
    let path = instance_path(name, instance);
    let owner = match server.interface::<_, AppIface>(&path).await {
        Ok(iface) => iface.get().await.status.id,
        Err(_) => return Ok(()),
    };
    if owner == id {
        server.remove::<AppIface, _>(&path).await?;
    }
    Ok(())
}

impl Notice {
    /// This notice with every string fit for the bus (see [`wire`]).
    fn on_wire(self) -> Self {
        use wire::on_wire;
        match self {
            Self::Added(status) => Self::Added(on_wire(status)),
            Self::Changed(status) => Self::Changed(on_wire(status)),
            Self::MemoryWarning(name, rss, max) => Self::MemoryWarning(on_wire(name), rss, max),
            Self::Crashed(name, record) => Self::Crashed(on_wire(name), on_wire(record)),
            Self::Removed(name, instance, id) => Self::Removed(on_wire(name), instance, id),
            Self::Exec(name, pid, filename, allowed) => {
                Self::Exec(on_wire(name), pid, on_wire(filename), allowed)
            }
            Self::Event(name, event) => Self::Event(on_wire(name), on_wire(event)),
        }
    }
}

async fn refresh(server: &zbus::ObjectServer, status: AppStatus) -> zbus::Result<()> {
    let iface = server
        .interface::<_, AppIface>(instance_path(&status.name, status.instance))
        .await?;
    if iface.get().await.status.id != status.id {
        return Ok(()); // the path belongs to the replacement now
    }
    let old = std::mem::replace(&mut iface.get_mut().await.status, status);
    let guard = iface.get().await;
    let new = &guard.status;
    let emitter = iface.signal_emitter();
    if old.state != new.state {
        guard.state_changed(emitter).await?;
    }
    if old.pid != new.pid {
        guard.pid_changed(emitter).await?;
    }
    if old.restarts != new.restarts {
        guard.restarts_changed(emitter).await?;
    }
    if old.health != new.health {
        guard.health_changed(emitter).await?;
    }
    if old.status_text != new.status_text {
        guard.status_text_changed(emitter).await?;
    }
    if old.argv != new.argv {
        guard.argv_changed(emitter).await?;
    }
    if old.last_exit != new.last_exit {
        guard.last_exit_reason_changed(emitter).await?;
        guard.last_exit_code_changed(emitter).await?;
        guard.last_exit_signal_changed(emitter).await?;
    }
    Ok(())
}
