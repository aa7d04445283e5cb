//! The log volume of each app's streams ([`AppCounters`]), and its sum over several writers
//! of one app ([`CounterSum`]): the keeper's and the daemon's, or one per instance with
//! `log.per_instance`. The keeper sends these to the daemon, which exports them as metrics.
//!
//! This module must not read or write anything: it only adds numbers up.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::logs::Stream;

/// Log volume of one app's stream since the keeper opened its file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCounters {
    /// The app.
    pub app: String,
    /// Which file.
    pub stream: Stream,
    /// Record bytes written.
    pub written: u64,
    /// Record bytes dropped (full disk, I/O errors).
    pub dropped: u64,
    /// Records sent to journald and syslog, and dropped on the way (a keeper older than
    /// forwarding sends none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded: Vec<crate::logs::forward::ForwardCount>,
}

/// Counters of several writers of one app summed per app and stream (the keeper's and the
/// daemon's, or one per instance with `log.per_instance`), in the order each pair was first
/// added. Indexed by app and stream: a scrape of 10,000 apps adds 20,000 counters, and finding
/// each one's pair by a scan of those already added made a scrape quadratic (seconds).
#[derive(Debug, Default)]
pub struct CounterSum {
    all: Vec<AppCounters>,
    index: HashMap<(String, Stream), usize>,
}

impl CounterSum {
    /// Adds `c` to the counters of its app and stream.
    pub fn add(&mut self, c: AppCounters) {
        let key = (c.app.clone(), c.stream);
        let Some(&at) = self.index.get(&key) else {
            self.index.insert(key, self.all.len());
            self.all.push(c);
            return;
        };
        let into = &mut self.all[at];
        into.written += c.written;
        into.dropped += c.dropped;
        for f in c.forwarded {
            match into.forwarded.iter_mut().find(|k| k.to == f.to) {
                Some(k) => {
                    k.sent += f.sent;
                    k.dropped += f.dropped;
                }
                None => into.forwarded.push(f),
            }
        }
    }

    /// Adds the counters of one writer of `app` (its files, and what it forwarded).
    pub fn add_logs(&mut self, app: &str, logs: &crate::logs::AppLogs) {
        for ((stream, written, dropped), (_, forwarded)) in
            logs.counters().into_iter().zip(logs.forwarded())
        {
            self.add(AppCounters {
                app: app.to_owned(),
                stream,
                written,
                dropped,
                forwarded,
            });
        }
    }

    /// The sums, one per app and stream.
    #[must_use]
    pub fn into_vec(self) -> Vec<AppCounters> {
        self.all
    }
}

impl Extend<AppCounters> for CounterSum {
    fn extend<I: IntoIterator<Item = AppCounters>>(&mut self, iter: I) {
        for c in iter {
            self.add(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several writers of one app (its instances' own files, or the keeper's and the daemon's)
    /// give one counter per app and stream, so a metric never has two series of one label set.
    #[test]
    fn counters_of_one_app_and_stream_add_up() {
        use crate::logs::forward::{Dest, ForwardCount};
        let c = |app: &str, stream, written, forwarded: Vec<ForwardCount>| AppCounters {
            app: app.into(),
            stream,
            written,
            dropped: 1,
            forwarded,
        };
        let sent = |to, sent| ForwardCount {
            to,
            sent,
            dropped: 0,
        };
        let mut all = CounterSum::default();
        all.extend([
            c("a", Stream::Out, 10, vec![sent(Dest::Syslog, 2)]),
            c("a", Stream::Err, 5, vec![]),
            c(
                "a",
                Stream::Out,
                7,
                vec![sent(Dest::Syslog, 3), sent(Dest::Journald, 4)],
            ),
            c("b", Stream::Out, 1, vec![]),
        ]);
        assert_eq!(
            all.into_vec(),
            [
                c(
                    "a",
                    Stream::Out,
                    17,
                    vec![sent(Dest::Syslog, 5), sent(Dest::Journald, 4)]
                ),
                c("a", Stream::Err, 5, vec![]),
                c("b", Stream::Out, 1, vec![]),
            ]
            .map(|mut x| {
                x.dropped = if x.app == "a" && x.stream == Stream::Out {
                    2
                } else {
                    1
                };
                x
            })
        );
    }
}
