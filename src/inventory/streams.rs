//! The health of each watch stream feeding the inventory: whether its first list is complete (readiness waits
//! for that), and whether it has been failing for long (shown, counted, but never a reason to turn unready).
//!
//! Pure bookkeeping: the caller passes the time, so tests need no clock.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Scope;

/// How long a stream may fail before it counts as lost.
pub const LOST_AFTER: Duration = Duration::from_secs(30);

/// The longest quiet gap inside one run of failures. kube-runtime's default backoff waits at most 30 s, and
/// its jitter up to as long again, between attempts; a stream whose last error is older than this has
/// reconnected (a resumed watch reports nothing until an object changes, so silence is the only sign).
pub const FAILURE_GAP: Duration = Duration::from_secs(75);

/// One watch stream: a resource in a scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// `pods`, `deployments` or `nodes`.
    pub resource: &'static str,
    /// Where it looks.
    pub scope: Scope,
}

impl StreamId {
    /// The namespace for metric labels: empty for the whole cluster.
    pub fn namespace(&self) -> &str {
        match &self.scope {
            Scope::Cluster => "",
            Scope::Namespace(ns) => ns,
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {}", self.resource, self.scope)
    }
}

#[derive(Debug, Default)]
struct StreamHealth {
    listed: bool,
    failing_since: Option<Instant>,
    last_error: Option<(Instant, String)>,
    failures: u64,
    relists: u64,
}

/// A stream that has failed for longer than [`LOST_AFTER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostStream {
    /// Which.
    pub id: StreamId,
    /// Since when it has failed, as a duration before now.
    pub failing_for: Duration,
    /// The latest error.
    pub error: String,
}

/// Counters of one stream, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCounters {
    /// Which.
    pub id: StreamId,
    /// Failed list or watch attempts, each followed by a restart after backoff.
    pub failures: u64,
    /// Lists after the first (a watch that fell too far behind, `410 Expired`, starts over with one).
    pub relists: u64,
    /// Whether it is lost now.
    pub lost: bool,
}

/// Every stream feeding the inventory.
#[derive(Debug, Default)]
pub struct Streams {
    health: Mutex<BTreeMap<StreamId, StreamHealth>>,
}

impl Streams {
    fn with<R>(&self, id: &StreamId, f: impl FnOnce(&mut StreamHealth) -> R) -> R {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        f(health.entry(id.clone()).or_default())
    }

    /// Declares a stream that serving needs, before it starts: readiness now waits for its first list.
    pub fn register(&self, id: &StreamId) {
        self.with(id, |_| ());
    }

    /// A list begins; after the first, it is a re-list.
    pub fn listing(&self, id: &StreamId) {
        self.with(id, |h| {
            if h.listed {
                h.relists += 1;
            }
        });
    }

    /// The stream delivered an object or completed a list: it works, whatever failed before.
    pub fn progressed(&self, id: &StreamId, listed: bool) {
        self.with(id, |h| {
            h.listed |= listed;
            h.failing_since = None;
        });
    }

    /// A list or watch attempt failed.
    pub fn failed(&self, id: &StreamId, now: Instant, error: String) {
        self.with(id, |h| {
            let in_same_run = h
                .last_error
                .as_ref()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) <= FAILURE_GAP);
            if h.failing_since.is_none() || !in_same_run {
                h.failing_since = Some(now);
            }
            h.last_error = Some((now, error));
            h.failures += 1;
        });
    }

    /// True when at least one stream is registered and every one has completed a list.
    pub fn all_listed(&self) -> bool {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        !health.is_empty() && health.values().all(|h| h.listed)
    }

    /// Streams whose first list is not complete yet.
    pub fn unlisted(&self) -> Vec<StreamId> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health
            .iter()
            .filter(|(_, h)| !h.listed)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The streams still waiting for their first list, for messages (`pods in namespace a, nodes in the
    /// cluster`); `None` when there are none.
    pub fn describe_unlisted(&self) -> Option<String> {
        let unlisted: Vec<String> = self.unlisted().iter().map(ToString::to_string).collect();
        (!unlisted.is_empty()).then(|| unlisted.join(", "))
    }

    fn lost_for(health: &StreamHealth, now: Instant) -> Option<Duration> {
        let since = health.failing_since?;
        let (last, _) = health.last_error.as_ref()?;
        let failing_for = now.saturating_duration_since(since);
        (now.saturating_duration_since(*last) <= FAILURE_GAP && failing_for > LOST_AFTER)
            .then_some(failing_for)
    }

    /// Streams failing for longer than [`LOST_AFTER`] as of `now`.
    pub fn lost(&self, now: Instant) -> Vec<LostStream> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health
            .iter()
            .filter_map(|(id, h)| {
                Some(LostStream {
                    id: id.clone(),
                    failing_for: Self::lost_for(h, now)?,
                    error: h.last_error.as_ref()?.1.clone(),
                })
            })
            .collect()
    }

    /// Every stream's counters as of `now`.
    pub fn counters(&self, now: Instant) -> Vec<StreamCounters> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health
            .iter()
            .map(|(id, h)| StreamCounters {
                id: id.clone(),
                failures: h.failures,
                relists: h.relists,
                lost: Self::lost_for(h, now).is_some(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods_in(namespace: &str) -> StreamId {
        StreamId {
            resource: "pods",
            scope: Scope::Namespace(namespace.into()),
        }
    }

    fn seconds(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn readiness_waits_for_the_first_list_of_every_registered_stream() {
        let streams = Streams::default();
        assert!(!streams.all_listed(), "no stream: nothing is known yet");
        streams.register(&pods_in("a"));
        streams.register(&pods_in("b"));
        streams.progressed(&pods_in("a"), true);
        assert!(!streams.all_listed());
        assert_eq!(streams.unlisted(), [pods_in("b")]);
        assert_eq!(
            streams.describe_unlisted().as_deref(),
            Some("pods in namespace b")
        );
        streams.progressed(&pods_in("b"), false);
        assert!(!streams.all_listed(), "an object is not a complete list");
        streams.progressed(&pods_in("b"), true);
        assert!(streams.all_listed());
    }

    #[test]
    fn a_stream_failing_past_the_bound_is_lost_until_it_progresses() {
        let streams = Streams::default();
        let id = pods_in("a");
        let start = Instant::now();
        streams.failed(&id, start, "500".into());
        streams.failed(&id, start + seconds(20), "500".into());
        assert!(streams.lost(start + seconds(25)).is_empty());
        streams.failed(&id, start + seconds(50), "connection refused".into());
        let lost = streams.lost(start + seconds(51));
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].failing_for, seconds(51));
        assert_eq!(lost[0].error, "connection refused");
        streams.progressed(&id, false);
        assert!(streams.lost(start + seconds(52)).is_empty());
        assert_eq!(streams.counters(start + seconds(52))[0].failures, 3);
    }

    #[test]
    fn silence_after_the_last_failure_means_the_watch_resumed() {
        let streams = Streams::default();
        let id = pods_in("a");
        let start = Instant::now();
        streams.failed(&id, start, "500".into());
        streams.failed(&id, start + seconds(40), "500".into());
        assert_eq!(streams.lost(start + seconds(41)).len(), 1);
        assert!(
            streams
                .lost(start + seconds(40) + FAILURE_GAP + seconds(1))
                .is_empty()
        );
        // A failure long after the last one starts a new run.
        let later = start + seconds(500);
        streams.failed(&id, later, "500".into());
        assert!(streams.lost(later + seconds(1)).is_empty());
    }

    #[test]
    fn lists_after_the_first_count_as_relists() {
        let streams = Streams::default();
        let id = pods_in("a");
        streams.listing(&id);
        streams.progressed(&id, true);
        streams.listing(&id);
        streams.listing(&id);
        assert_eq!(streams.counters(Instant::now())[0].relists, 2);
    }
}
