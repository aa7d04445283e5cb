//! The daemon's relations with its host, outside the supervision of apps: the private
//! `dbus-daemon` of user mode ([`bus`]), `sd_notify` to systemd ([`notify`]) and the in-place
//! re-execution of `turbo daemon upgrade` ([`upgrade`]). Nothing here knows about apps.

pub mod bus;
pub mod notify;
pub mod upgrade;
