//! Who may change things: the *caller* of a mutating D-Bus method, identified by the bus.
//!
//! The bus tells us the caller's uid and groups (`GetConnectionCredentials`, from the kernel's
//! `SO_PEERCRED`/`SO_PEERGROUPS`, so they cannot be forged by the caller). Allowed: root, the
//! daemon's own user (user mode), members of the admin group (`turbo` by default), and anyone
//! polkit authorises for the action when a polkit authority is on the bus. Reads are open to
//! everyone who can reach the bus, except the values of apps' environment variables
//! ([`Policy::authorize_owner`]: root and the daemon's own user only).
//!
//! Being allowed is not the whole answer: the caller's uid goes on with the call
//! ([`Caller`]), because what a start call may ask for depends on who asks. A non-root caller's
//! apps run as that caller (see `config::privileges`). This module decides nothing else and
//! holds no state.

use std::collections::HashMap;

use turbo_api::Error;
use zbus::{message::Header, names::BusName, zvariant::Value};

use crate::access::Caller;

/// The polkit action prefix; actions are `org.turboprocess.turbo1.<verb>`.
pub const POLKIT_ACTION_PREFIX: &str = "org.turboprocess.turbo1";

/// Who is allowed besides root.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The daemon's effective uid: its own user may always manage it.
    pub owner_uid: u32,
    /// Members of this group may manage apps.
    pub admin_group: Option<(String, u32)>,
}

impl Policy {
    /// The daemon's euid, and the group named `group` if it exists.
    #[must_use]
    pub fn new(group: &str) -> Self {
        Self {
            owner_uid: crate::os::process::euid(),
            admin_group: group_id(group).map(|gid| (group.to_owned(), gid)),
        }
    }

    /// Allows or refuses `verb` on `detail` (an app name or target) for the caller of `hdr`,
    /// and says who the caller is.
    ///
    /// # Errors
    /// [`Error::AccessDenied`] with what the caller can do about it.
    pub async fn authorize(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        verb: &str,
        detail: &str,
    ) -> Result<Caller, Error> {
        let (sender, creds) = credentials(conn, hdr).await?;
        let uid = creds
            .unix_user_id()
            .ok_or_else(|| Error::AccessDenied("the bus did not say who the caller is".into()))?;
        let caller = Caller { uid };
        if uid == 0 || uid == self.owner_uid {
            return Ok(caller);
        }
        if let Some((_, gid)) = &self.admin_group
            && creds.unix_group_ids().is_some_and(|g| g.contains(gid))
        {
            return Ok(caller);
        }
        if polkit_allows(conn, sender.as_str(), verb, detail).await {
            return Ok(caller);
        }
        let group_hint = self.admin_group.as_ref().map_or_else(
            || "create the `turbo` group and join it".to_owned(),
            |(name, _)| format!("join the `{name}` group"),
        );
        Err(Error::AccessDenied(format!(
            "uid {uid} may not {verb} {detail}: run it as root, {group_hint}, or allow `{POLKIT_ACTION_PREFIX}.{verb}` in polkit"
        )))
    }
}

impl Policy {
    /// Allows only root and the daemon's own user (in system mode both are root): for what
    /// would give away secrets, the values of apps' environment variables. Neither the admin
    /// group nor polkit can grant it: `describe` shows the variable names to everyone anyway.
    ///
    /// # Errors
    /// [`Error::AccessDenied`].
    pub async fn authorize_owner(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        what: &str,
    ) -> Result<Caller, Error> {
        let (_, creds) = credentials(conn, hdr).await?;
        let uid = creds
            .unix_user_id()
            .ok_or_else(|| Error::AccessDenied("the bus did not say who the caller is".into()))?;
        if uid == 0 || uid == self.owner_uid {
            return Ok(Caller { uid });
        }
        let who = if self.owner_uid == 0 {
            "root".to_owned()
        } else {
            format!("root and uid {}", self.owner_uid)
        };
        Err(Error::AccessDenied(format!(
            "uid {uid} may not {what}: only {who} may (run it with sudo)"
        )))
    }
}

impl Policy {
    /// The uid of the caller of `hdr`, as the bus knows it.
    ///
    /// # Errors
    /// [`Error::AccessDenied`] when the bus does not say.
    pub async fn caller_uid(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
    ) -> Result<u32, Error> {
        let (_, creds) = credentials(conn, hdr).await?;
        creds
            .unix_user_id()
            .ok_or_else(|| Error::AccessDenied("the bus did not say who the caller is".into()))
    }

    /// Whether `uid` may read what an app running as `app_uid` wrote (its health-check output,
    /// the stderr lines kept with its crashes): whoever may read its log files, that is root,
    /// the daemon's own user and the app's own user. Not the admin group or polkit: being
    /// allowed to restart an app is not being allowed to read what it prints (a failing check
    /// may echo a secret from its environment).
    #[must_use]
    pub const fn may_read_output(&self, uid: u32, app_uid: u32) -> bool {
        uid == 0 || uid == self.owner_uid || uid == app_uid
    }
}

/// The unique name of the caller of `hdr` and its credentials, from the bus.
async fn credentials(
    conn: &zbus::Connection,
    hdr: &Header<'_>,
) -> Result<
    (
        zbus::names::UniqueName<'static>,
        zbus::fdo::ConnectionCredentials,
    ),
    Error,
> {
    let sender = hdr
        .sender()
        .ok_or_else(|| Error::AccessDenied("the call has no sender".into()))?
        .to_owned();
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let creds = dbus
        .get_connection_credentials(BusName::Unique(sender.clone()))
        .await
        .map_err(|e| Error::AccessDenied(format!("cannot identify the caller: {e}")))?;
    Ok((sender, creds))
}

/// Asks polkit, when an authority is on this bus; false if there is none or it says no.
async fn polkit_allows(conn: &zbus::Connection, sender: &str, verb: &str, detail: &str) -> bool {
    const AUTHORITY: &str = "org.freedesktop.PolicyKit1";
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(AUTHORITY) else {
        return false;
    };
    if !dbus.name_has_owner(name).await.unwrap_or(false) {
        return false;
    }
    let Ok(proxy) = zbus::Proxy::new(
        conn,
        AUTHORITY,
        "/org/freedesktop/PolicyKit1/Authority",
        "org.freedesktop.PolicyKit1.Authority",
    )
    .await
    else {
        return false;
    };
    let mut subject_details: HashMap<&str, Value<'_>> = HashMap::new();
    subject_details.insert("name", Value::from(sender));
    let subject = ("system-bus-name", subject_details);
    let mut details: HashMap<&str, &str> = HashMap::new();
    details.insert("app", detail);
    let action = format!("{POLKIT_ACTION_PREFIX}.{verb}");
    // flags 0: no interactive authentication; the CLI cannot answer a prompt through us
    let reply: zbus::Result<(bool, bool, HashMap<String, String>)> = proxy
        .call(
            "CheckAuthorization",
            &(subject, action.as_str(), details, 0u32, ""),
        )
        .await;
    matches!(reply, Ok((true, _, _)))
}

/// Gid of group `name`, if it exists (a failed lookup counts as none: nobody is admitted
/// through a group that cannot be looked up).
fn group_id(name: &str) -> Option<u32> {
    crate::os::users::group_by_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_resolve() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-xyz"), None);
        let p = Policy::new("root");
        assert_eq!(p.admin_group, Some(("root".into(), 0)));
    }
}
