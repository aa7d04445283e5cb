//! `app_group:` and `reload_signal:` as written, checked into the spec (issue 17 points 6-7).
//!
//! Only reads the two values; what a group or a reload signal does is the supervisor's.

use super::{Problem, input};
use crate::spec::AppSpec;

/// Checks `app_group` (a name like an app's: it becomes the `@group` target and a metric
/// label) and `reload_signal` (a signal name or number) into `spec`.
pub(super) fn apply(
    app_group: Option<String>,
    reload_signal: Option<String>,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    if let Some(group) = app_group {
        match turbo_api::validate_app_name(&group) {
            Ok(()) => spec.app_group = Some(group),
            Err(e) => errors.push(Problem::new(
                "app_group",
                e.replacen("app name", "app_group", 1),
            )),
        }
    }
    if let Some(s) = reload_signal {
        match input::parse_signal(&s) {
            Ok(sig) => spec.reload_signal = Some(sig),
            Err(e) => errors.push(Problem::new("reload_signal", format!("reload_signal: {e}"))),
        }
    }
}
