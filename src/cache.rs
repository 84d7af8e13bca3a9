//! Shared query results: one backend round trip per (query) per refresh interval, coalesced across every
//! caller and refreshed ahead in the background while callers keep asking, and the last good answer served
//! for a bounded time while the backend fails.
//!
//! Never turns a failure into 0: past `maxStaleness` the caller gets the backend's error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::source::{MetricSource, Sample, SourceError};
use crate::telemetry::{Metrics, ReasonLabels};
use crate::unix_now;

/// One backend answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The samples.
    pub samples: Vec<Sample>,
    /// When the backend answered (Unix seconds); served as the values' `timestamp`.
    pub fetched_at: i64,
}

/// What the adapter last saw of its backend, for `/readyz?verbose` (information only).
#[derive(Debug, Clone, Default)]
pub struct BackendHealth {
    /// Unix seconds of the last successful query.
    pub last_success: Option<i64>,
    /// Unix seconds and text of the last failure.
    pub last_error: Option<(i64, String)>,
}

/// The query cache in front of a [`MetricSource`].
pub struct QueryCache {
    source: Arc<dyn MetricSource>,
    fresh: moka::future::Cache<String, Arc<Answer>>,
    last_good: moka::future::Cache<String, Arc<Answer>>,
    health: Mutex<BackendHealth>,
    metrics: Arc<Metrics>,
    refresh_interval: Duration,
    /// Queries asked recently, with when they were last asked: the ones worth refreshing ahead.
    hot: Mutex<HashMap<String, Instant>>,
}

/// A query asked within this many refresh intervals is kept fresh in the background; HPAs ask every 15 s.
const HOT_INTERVALS: u32 = 4;

/// Distinct queries kept; each is one (metric, namespace, selector) shape, so this bounds memory, not traffic.
const MAX_ENTRIES: u64 = 10_000;

impl QueryCache {
    /// Answers are reused for `refresh_interval` and served stale for at most `max_staleness`.
    pub fn new(
        source: Arc<dyn MetricSource>,
        refresh_interval: Duration,
        max_staleness: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            source,
            fresh: moka::future::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(refresh_interval)
                .build(),
            last_good: moka::future::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(max_staleness.max(Duration::from_millis(1)))
                .build(),
            health: Mutex::new(BackendHealth::default()),
            metrics,
            refresh_interval,
            hot: Mutex::new(HashMap::new()),
        }
    }

    /// The answer to `promql`: cached, or fetched once for all concurrent callers.
    pub async fn query(&self, promql: &str) -> Result<Arc<Answer>, SourceError> {
        self.hot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(promql.to_owned(), Instant::now());
        let mut fetched = false;
        let result = self
            .fresh
            .try_get_with_by_ref(promql, async {
                fetched = true;
                self.fetch(promql).await
            })
            .await;
        match result {
            Ok(answer) => {
                self.metrics.cache(if fetched { "miss" } else { "hit" });
                Ok(answer)
            }
            Err(error) => match self.last_good.get(promql).await {
                Some(answer) => {
                    self.metrics.cache("stale");
                    tracing::warn!(%error, age_seconds = unix_now() - answer.fetched_at,
                        "metrics backend failed; serving the last good answer");
                    Ok(answer)
                }
                None => Err((*error).clone()),
            },
        }
    }

    async fn fetch(&self, promql: &str) -> Result<Arc<Answer>, SourceError> {
        let started = Instant::now();
        let result = self.source.instant_query(promql).await;
        self.metrics
            .backend_duration
            .observe(started.elapsed().as_secs_f64());
        let now = unix_now();
        match result {
            Ok(samples) => {
                let answer = Arc::new(Answer {
                    samples,
                    fetched_at: now,
                });
                self.last_good
                    .insert(promql.to_owned(), answer.clone())
                    .await;
                self.health
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_success = Some(now);
                self.metrics.backend_last_success.set(now);
                Ok(answer)
            }
            Err(error) => {
                tracing::debug!(%error, query = promql, "metrics backend query failed");
                self.health
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_error = Some((now, error.to_string()));
                self.metrics
                    .backend_errors
                    .get_or_create(&ReasonLabels {
                        reason: error.reason(),
                    })
                    .inc();
                Err(error)
            }
        }
    }

    /// Re-fetches every query asked within the last `HOT_INTERVALS` refresh intervals, so that callers find
    /// a fresh answer instead of waiting for the backend; forgets the others. A failed refresh leaves the
    /// cached answer to expire as usual.
    pub async fn refresh_hot(&self) {
        let queries: Vec<String> = {
            let mut hot = self.hot.lock().unwrap_or_else(|e| e.into_inner());
            hot.retain(|_, asked| asked.elapsed() < self.refresh_interval * HOT_INTERVALS);
            hot.keys().cloned().collect()
        };
        for promql in queries {
            if let Ok(answer) = self.fetch(&promql).await {
                self.fresh.insert(promql, answer).await;
            }
        }
    }

    /// Refreshes hot queries every three quarters of the refresh interval, before their answers expire.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(cache.refresh_interval * 3 / 4);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                cache.refresh_hot().await;
            }
        });
    }

    /// What the adapter last saw of its backend.
    pub fn health(&self) -> BackendHealth {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::BoxFuture;

    use super::*;

    /// A scripted backend: answers from a queue, counting calls, after an optional delay.
    struct ScriptedSource {
        answers: Mutex<Vec<Result<f64, SourceError>>>,
        calls: AtomicUsize,
        delay: Duration,
    }

    impl ScriptedSource {
        fn new(answers: Vec<Result<f64, SourceError>>, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                answers: Mutex::new(answers.into_iter().rev().collect()),
                calls: AtomicUsize::new(0),
                delay,
            })
        }
    }

    impl MetricSource for ScriptedSource {
        fn instant_query<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Vec<Sample>, SourceError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let next = self
                    .answers
                    .lock()
                    .unwrap()
                    .pop()
                    .expect("no scripted answer left");
                next.map(|value| {
                    vec![Sample {
                        labels: Default::default(),
                        value,
                    }]
                })
            })
        }
    }

    fn down() -> SourceError {
        SourceError::Unreachable {
            url: "http://prometheus:9090/".into(),
            cause: "Connection refused".into(),
        }
    }

    fn cache(source: Arc<ScriptedSource>, refresh: Duration, staleness: Duration) -> QueryCache {
        QueryCache::new(source, refresh, staleness, Arc::new(Metrics::default()))
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_backend_round_trip() {
        let source = ScriptedSource::new(vec![Ok(1.0)], Duration::from_millis(50));
        let cache = cache(
            source.clone(),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let answers = futures::future::join_all((0..20).map(|_| cache.query("q"))).await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().unwrap().samples[0].value == 1.0)
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn answers_are_refreshed_after_the_refresh_interval() {
        let source = ScriptedSource::new(vec![Ok(1.0), Ok(2.0)], Duration::ZERO);
        let cache = cache(
            source.clone(),
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        assert_eq!(cache.query("q").await.unwrap().samples[0].value, 1.0);
        assert_eq!(cache.query("q").await.unwrap().samples[0].value, 1.0);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(cache.query("q").await.unwrap().samples[0].value, 2.0);
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_outage_serves_the_last_good_answer_until_max_staleness_then_fails() {
        let source = ScriptedSource::new(vec![Ok(7.0), Err(down()), Err(down())], Duration::ZERO);
        let cache = cache(
            source.clone(),
            Duration::from_millis(20),
            Duration::from_millis(200),
        );
        assert_eq!(cache.query("q").await.unwrap().samples[0].value, 7.0);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(
            cache.query("q").await.unwrap().samples[0].value,
            7.0,
            "stale but within bound"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.query("q").await.unwrap_err(), down());
        assert!(
            cache
                .health()
                .last_error
                .unwrap()
                .1
                .contains("Connection refused")
        );
    }

    #[tokio::test]
    async fn hot_queries_are_refreshed_ahead_so_callers_do_not_wait() {
        let source = ScriptedSource::new(vec![Ok(1.0), Ok(2.0)], Duration::ZERO);
        let cache = cache(
            source.clone(),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        assert_eq!(cache.query("q").await.unwrap().samples[0].value, 1.0);
        cache.refresh_hot().await;
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            2,
            "refreshed in the background"
        );
        assert_eq!(
            cache.query("q").await.unwrap().samples[0].value,
            2.0,
            "the caller gets the refreshed answer"
        );
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            2,
            "without a round trip of its own"
        );
    }

    #[tokio::test]
    async fn queries_nobody_asks_for_any_more_are_not_refreshed() {
        let source = ScriptedSource::new(vec![Ok(1.0)], Duration::ZERO);
        let cache = cache(
            source.clone(),
            Duration::from_millis(10),
            Duration::from_secs(60),
        );
        cache.query("q").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        cache.refresh_hot().await;
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            1,
            "asked more than 4 refresh intervals ago"
        );
    }

    #[tokio::test]
    async fn a_failure_with_nothing_cached_is_an_error_never_a_zero() {
        let source = ScriptedSource::new(vec![Err(down())], Duration::ZERO);
        let cache = cache(source, Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(cache.query("q").await.unwrap_err(), down());
    }
}
