//! Shared query results: one backend round trip per query per refresh interval, coalesced across every
//! caller; an answer past its refresh interval served at once while one background refresh replaces it
//! (stale-while-revalidate); and the last good answer served for a bounded time while the backend fails.
//!
//! Every backend query is caused by a request: a miss, or the refresh one request past the interval
//! triggers. A query asked once is answered and forgotten, so no caller can make the adapter send more
//! queries than it sent itself. Answers are held under a memory cap, least recently used out first.
//!
//! Never turns a failure into 0: past `maxStaleness` the caller gets the backend's error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::source::{MetricSource, Sample, SourceError};

mod pod_values;
use crate::telemetry::{BackendLabels, BackendReasonLabels, Metrics};
use crate::unix_now;
use pod_values::PodValues;

/// One backend answer.
#[derive(Debug)]
pub struct Answer {
    /// When the backend answered (Unix seconds); served as the values' `timestamp`.
    pub fetched_at: i64,
    series: Series,
    /// Per namespace, a sum over its live pods and the pods' generation it was computed for.
    sums: Mutex<HashMap<String, (u64, Option<f64>)>>,
}

/// An answer's series, held as compactly as their labels allow: most answers are one value per pod, and
/// 20 of them for 10,000 pods must fit beside the inventory.
#[derive(Debug)]
enum Series {
    /// Every series labelled by `pod` and at most `namespace` (what per-pod queries group by): the values
    /// by namespace, then pod. About 50 bytes a series, where a labelled sample takes about 700.
    Pods(HashMap<Box<str>, PodValues>),
    /// Anything else, as the backend labelled it, with a pod index built on first use.
    Labelled {
        samples: Vec<Sample>,
        by_pod: OnceLock<HashMap<String, HashMap<String, f64>>>,
    },
}

/// One series' labels, however the answer holds them.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    /// A per-pod series: `namespace` (absent when empty) and `pod`.
    Pod {
        /// The `namespace` label, or "" where the series had none.
        namespace: &'a str,
        /// The `pod` label.
        pod: &'a str,
    },
    /// Any other series.
    Map(&'a BTreeMap<String, String>),
}

impl<'a> Labels<'a> {
    /// One label's value.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        match *self {
            Self::Pod { namespace, pod } => match key {
                "pod" => Some(pod),
                "namespace" if !namespace.is_empty() => Some(namespace),
                _ => None,
            },
            Self::Map(labels) => labels.get(key).map(String::as_str),
        }
    }

    /// The labels as a map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        match *self {
            Self::Pod { namespace, pod } => {
                let mut map = BTreeMap::from([("pod".to_owned(), pod.to_owned())]);
                if !namespace.is_empty() {
                    map.insert("namespace".to_owned(), namespace.to_owned());
                }
                map
            }
            Self::Map(labels) => labels.clone(),
        }
    }
}

impl Answer {
    /// The answer the backend gave at `fetched_at`.
    pub fn new(samples: Vec<Sample>, fetched_at: i64) -> Self {
        let per_pod = samples.iter().all(|s| {
            s.labels.contains_key("pod") && s.labels.keys().all(|k| k == "pod" || k == "namespace")
        });
        let series = if per_pod && !samples.is_empty() {
            fn namespace_of(s: &Sample) -> &str {
                s.labels.get("namespace").map_or("", String::as_str)
            }
            // Sized first, so that each namespace's values take two allocations of their final size.
            let mut sizes: HashMap<&str, (usize, usize)> = HashMap::new();
            for sample in &samples {
                let size = sizes.entry(namespace_of(sample)).or_default();
                size.0 += 1;
                size.1 += sample.labels["pod"].len();
            }
            let mut by_namespace: HashMap<Box<str>, PodValues> = sizes
                .into_iter()
                .map(|(namespace, (pods, bytes))| {
                    (namespace.into(), PodValues::with_capacity(pods, bytes))
                })
                .collect();
            for sample in &samples {
                if let Some(values) = by_namespace.get_mut(namespace_of(sample)) {
                    values.insert(&sample.labels["pod"], sample.value);
                }
            }
            Series::Pods(by_namespace)
        } else {
            Series::Labelled {
                samples,
                by_pod: OnceLock::new(),
            }
        };
        Self {
            fetched_at,
            series,
            sums: Mutex::new(HashMap::new()),
        }
    }

    /// Every series with its labels.
    pub fn series(&self) -> Box<dyn Iterator<Item = (Labels<'_>, f64)> + '_> {
        match &self.series {
            Series::Pods(by_namespace) => {
                Box::new(by_namespace.iter().flat_map(|(namespace, pods)| {
                    pods.iter()
                        .map(move |(pod, value)| (Labels::Pod { namespace, pod }, value))
                }))
            }
            Series::Labelled { samples, .. } => {
                Box::new(samples.iter().map(|s| (Labels::Map(&s.labels), s.value)))
            }
        }
    }

    /// The samples as the backend gave them (rebuilt for per-pod answers: for the few callers that need
    /// owned labels).
    pub fn samples(&self) -> std::borrow::Cow<'_, [Sample]> {
        match &self.series {
            Series::Labelled { samples, .. } => std::borrow::Cow::Borrowed(samples),
            Series::Pods(_) => std::borrow::Cow::Owned(
                self.series()
                    .map(|(labels, value)| Sample {
                        labels: labels.to_map(),
                        value,
                    })
                    .collect(),
            ),
        }
    }

    /// The sum over `namespace`'s live pods of their series, as `compute` gives it with the pods' generation;
    /// kept until the pods change, so a namespace total costs one lookup while they stay the same.
    pub fn namespace_sum(
        &self,
        namespace: &str,
        generation: u64,
        compute: impl FnOnce() -> (Option<f64>, u64),
    ) -> Option<f64> {
        let known = self
            .sums
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .copied();
        if let Some((at, sum)) = known
            && at == generation
        {
            return sum;
        }
        let (sum, at) = compute();
        self.sums
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(namespace.to_owned(), (at, sum));
        sum
    }

    /// The value of `pod`'s series in `namespace`: a lookup, however many pods the answer holds (for an
    /// answer not grouped by pod, the index is built once); a series without a `namespace` label counts as
    /// the empty namespace.
    pub fn pod_value(&self, namespace: &str, pod: &str) -> Option<f64> {
        match &self.series {
            Series::Pods(by_namespace) => by_namespace.get(namespace)?.get(pod),
            Series::Labelled { samples, by_pod } => by_pod
                .get_or_init(|| {
                    let mut index: HashMap<String, HashMap<String, f64>> = HashMap::new();
                    for sample in samples {
                        let Some(pod) = sample.labels.get("pod") else {
                            continue;
                        };
                        let namespace = sample.labels.get("namespace").cloned().unwrap_or_default();
                        index
                            .entry(namespace)
                            .or_default()
                            .insert(pod.clone(), sample.value);
                    }
                    index
                })
                .get(namespace)?
                .get(pod)
                .copied(),
        }
    }

    /// Roughly the bytes the answer holds, for the cache's memory cap.
    fn weight(&self) -> usize {
        let series = match &self.series {
            Series::Pods(by_namespace) => by_namespace
                .iter()
                .map(|(namespace, pods)| namespace.len() + pods.weight())
                .sum(),
            Series::Labelled { samples, .. } => samples
                .iter()
                .map(|s| {
                    std::mem::size_of::<Sample>()
                        + s.labels
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + 48)
                            .sum::<usize>()
                })
                .sum::<usize>(),
        };
        std::mem::size_of::<Self>() + series
    }
}

/// What the adapter last saw of its backend, for `/readyz?verbose` (information only).
#[derive(Debug, Clone, Default)]
pub struct BackendHealth {
    /// Unix seconds of the last successful query.
    pub last_success: Option<i64>,
    /// Unix seconds and text of the last failure.
    pub last_error: Option<(i64, String)>,
}

/// A cached answer and when it was fetched.
#[derive(Clone)]
struct Entry {
    answer: Arc<Answer>,
    fetched: Instant,
}

/// The query cache in front of one named [`MetricSource`].
pub struct QueryCache {
    name: String,
    source: Arc<dyn MetricSource>,
    /// Answers younger than two refresh intervals: served without waiting.
    recent: moka::future::Cache<String, Entry>,
    /// Answers younger than `maxStaleness`: served only when the backend fails.
    last_good: moka::future::Cache<String, Arc<Answer>>,
    /// Queries being refreshed in the background; at most one refresh per query at a time.
    refreshing: Mutex<HashSet<String>>,
    /// Slots for queries waiting for the backend.
    in_flight: tokio::sync::Semaphore,
    health: Mutex<BackendHealth>,
    metrics: Arc<Metrics>,
    refresh_interval: Duration,
}

/// Distinct queries waiting for the backend at once. A hung backend holds each until the backend timeout;
/// beyond this, queries fail at once (or are answered from the last good value) instead of piling up
/// connections and memory.
pub const MAX_BACKEND_QUERIES_IN_FLIGHT: usize = 64;

/// The memory each of the two answer caches may hold. A 10,000-pod answer weighs about 2 MiB.
pub const MEMORY_CAP_BYTES: u64 = 128 * 1024 * 1024;

fn weigher<V>(weight: impl Fn(&V) -> usize) -> impl Fn(&String, &V) -> u32 {
    move |key, value| u32::try_from(key.len() + weight(value)).unwrap_or(u32::MAX)
}

/// Counts answers dropped for the memory cap (not those that expired).
fn evicted<V>(
    metrics: Arc<Metrics>,
) -> impl Fn(Arc<String>, V, moka::notification::RemovalCause) + Send + Sync + 'static {
    move |_, _, cause| {
        if cause == moka::notification::RemovalCause::Size {
            metrics.cache_evictions.inc();
        }
    }
}

impl QueryCache {
    /// Answers are reused for `refresh_interval`, refreshed in the background when asked for during the
    /// interval after, and served stale for at most `max_staleness` while the backend fails.
    pub fn new(
        name: &str,
        source: Arc<dyn MetricSource>,
        refresh_interval: Duration,
        max_staleness: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            source,
            recent: moka::future::Cache::builder()
                .max_capacity(MEMORY_CAP_BYTES)
                .weigher(weigher(|e: &Entry| e.answer.weight()))
                .time_to_live(refresh_interval * 2)
                .eviction_listener(evicted(metrics.clone()))
                .build(),
            last_good: moka::future::Cache::builder()
                .max_capacity(MEMORY_CAP_BYTES)
                .weigher(weigher(|a: &Arc<Answer>| a.weight()))
                .time_to_live(max_staleness.max(Duration::from_millis(1)))
                .eviction_listener(evicted(metrics.clone()))
                .build(),
            refreshing: Mutex::new(HashSet::new()),
            in_flight: tokio::sync::Semaphore::new(MAX_BACKEND_QUERIES_IN_FLIGHT),
            health: Mutex::new(BackendHealth::default()),
            metrics,
            refresh_interval,
        }
    }

    /// The answer to `promql`: cached, or fetched once for all concurrent callers. An answer older than the
    /// refresh interval is returned at once and refreshed in the background for the next caller.
    pub async fn query(self: &Arc<Self>, promql: &str) -> Result<Arc<Answer>, SourceError> {
        let mut fetched = false;
        let result = self
            .recent
            .try_get_with_by_ref(promql, async {
                fetched = true;
                self.fetch(promql).await.map(|answer| Entry {
                    answer,
                    fetched: Instant::now(),
                })
            })
            .await;
        match result {
            Ok(entry) if fetched => {
                self.metrics.cache("miss");
                Ok(entry.answer)
            }
            Ok(entry) if entry.fetched.elapsed() < self.refresh_interval => {
                self.metrics.cache("hit");
                Ok(entry.answer)
            }
            Ok(entry) => {
                self.metrics.cache("revalidate");
                self.refresh_in_background(promql);
                Ok(entry.answer)
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

    /// One background fetch of `promql`, unless one is already running; a failure leaves the cached answer
    /// to expire as usual.
    fn refresh_in_background(self: &Arc<Self>, promql: &str) {
        if !self
            .refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(promql.to_owned())
        {
            return;
        }
        let cache = self.clone();
        let promql = promql.to_owned();
        tokio::spawn(async move {
            if let Ok(answer) = cache.fetch(&promql).await {
                let entry = Entry {
                    answer,
                    fetched: Instant::now(),
                };
                cache.recent.insert(promql.clone(), entry).await;
            }
            cache
                .refreshing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&promql);
        });
    }

    async fn fetch(&self, promql: &str) -> Result<Arc<Answer>, SourceError> {
        let started = Instant::now();
        let result = match self.in_flight.try_acquire() {
            Ok(_slot) => self.source.instant_query(promql).await,
            Err(_) => Err(SourceError::Overloaded(MAX_BACKEND_QUERIES_IN_FLIGHT)),
        };
        let backend = BackendLabels {
            backend: self.name.clone(),
        };
        self.metrics
            .backend_duration
            .get_or_create(&backend)
            .observe(started.elapsed().as_secs_f64());
        let now = unix_now();
        let warnings = match &result {
            Ok(answered) => &answered.warnings[..],
            Err(SourceError::Degraded(warnings)) => &warnings[..],
            Err(_) => &[],
        };
        if !warnings.is_empty() {
            tracing::warn!(
                backend = self.name,
                query = promql,
                ?warnings,
                served = result.is_ok(),
                "the metrics backend answered with warnings"
            );
            self.metrics
                .backend_warnings
                .get_or_create(&backend)
                .inc_by(warnings.len() as u64);
        }
        match result {
            Ok(answered) => {
                let answer = Arc::new(Answer::new(answered.samples, now));
                self.last_good
                    .insert(promql.to_owned(), answer.clone())
                    .await;
                self.health
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_success = Some(now);
                self.metrics
                    .backend_last_success
                    .get_or_create(&backend)
                    .set(now);
                Ok(answer)
            }
            Err(error) => {
                tracing::debug!(backend = self.name, %error, query = promql, "metrics backend query failed");
                self.health
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_error = Some((now, error.to_string()));
                self.metrics
                    .backend_errors
                    .get_or_create(&BackendReasonLabels {
                        backend: self.name.clone(),
                        reason: error.reason(),
                    })
                    .inc();
                Err(error)
            }
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend behind the cache.
    pub fn source(&self) -> Arc<dyn MetricSource> {
        self.source.clone()
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

    use crate::source::Answered;

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
        fn instant_query<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Answered, SourceError>> {
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
                    .into()
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

    fn cache(
        source: Arc<ScriptedSource>,
        refresh: Duration,
        staleness: Duration,
    ) -> Arc<QueryCache> {
        Arc::new(QueryCache::new(
            "prometheus",
            source,
            refresh,
            staleness,
            Arc::new(Metrics::default()),
        ))
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
                .all(|a| a.as_ref().unwrap().samples()[0].value == 1.0)
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_unasked_for_two_intervals_is_fetched_while_the_caller_waits() {
        let source = ScriptedSource::new(vec![Ok(1.0), Ok(2.0)], Duration::ZERO);
        let cache = cache(
            source.clone(),
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        assert_eq!(cache.query("q").await.unwrap().samples()[0].value, 1.0);
        assert_eq!(cache.query("q").await.unwrap().samples()[0].value, 1.0);
        tokio::time::sleep(Duration::from_millis(110)).await;
        assert_eq!(cache.query("q").await.unwrap().samples()[0].value, 2.0);
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
        assert_eq!(cache.query("q").await.unwrap().samples()[0].value, 7.0);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(
            cache.query("q").await.unwrap().samples()[0].value,
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
    async fn an_answer_past_the_interval_is_served_at_once_and_refreshed_for_the_next_caller() {
        let source = ScriptedSource::new(vec![Ok(1.0), Ok(2.0)], Duration::ZERO);
        let cache = cache(
            source.clone(),
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        assert_eq!(cache.query("q").await.unwrap().samples()[0].value, 1.0);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            cache.query("q").await.unwrap().samples()[0].value,
            1.0,
            "past the interval: served without waiting"
        );
        // The refresh runs in the background: wait for it (bounded), however loaded the machine.
        for _ in 0..200 {
            if source.calls.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 2, "and refreshed once");
        assert_eq!(cache.query("q").await.unwrap().samples()[0].value, 2.0);
    }

    #[tokio::test]
    async fn one_off_queries_are_answered_and_forgotten_never_refreshed() {
        let source =
            ScriptedSource::new((0..200).map(|i| Ok(f64::from(i))).collect(), Duration::ZERO);
        let cache = cache(
            source.clone(),
            Duration::from_millis(10),
            Duration::from_secs(60),
        );
        for i in 0..200 {
            cache.query(&format!("q{i}")).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            200,
            "ten refresh intervals without a request send nothing"
        );
    }

    #[tokio::test]
    async fn a_caller_never_causes_more_backend_queries_than_it_sends() {
        let source = ScriptedSource::new((0..1000).map(|_| Ok(1.0)).collect(), Duration::ZERO);
        let cache = cache(
            source.clone(),
            Duration::from_millis(20),
            Duration::from_secs(60),
        );
        let mut asks = 0;
        for round in 0..10 {
            for i in 0..20 {
                // Every query asked again and again at HPA-like and irregular intervals.
                cache
                    .query(&format!("q{}", (i + round) % 25))
                    .await
                    .unwrap();
                asks += 1;
            }
            tokio::time::sleep(Duration::from_millis(7 * (round % 4 + 1))).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = source.calls.load(Ordering::SeqCst);
        assert!(sent <= asks, "{sent} backend queries for {asks} requests");
    }

    fn pod_sample(namespace: &str, pod: &str, value: f64) -> Sample {
        Sample {
            labels: [
                ("namespace".to_owned(), namespace.to_owned()),
                ("pod".to_owned(), pod.to_owned()),
            ]
            .into(),
            value,
        }
    }

    #[test]
    fn per_pod_answers_are_held_compactly_and_read_back_as_the_backend_labelled_them() {
        let mut without_namespace = pod_sample("", "p3", 3.0);
        without_namespace.labels.remove("namespace");
        let given = vec![
            pod_sample("a", "p1", 1.0),
            pod_sample("b", "p2", 2.0),
            without_namespace,
        ];
        let answer = Answer::new(given.clone(), 0);
        assert!(matches!(answer.series, Series::Pods(_)));
        assert_eq!(answer.pod_value("b", "p2"), Some(2.0));
        assert_eq!(answer.pod_value("", "p3"), Some(3.0));
        let mut back = answer.samples().into_owned();
        back.sort_by(|x, y| x.value.total_cmp(&y.value));
        assert_eq!(back, given);

        // Any other label keeps the samples as they came.
        let mut with_container = pod_sample("a", "p1", 1.0);
        with_container
            .labels
            .insert("container".into(), "app".into());
        let labelled = Answer::new(vec![with_container.clone()], 0);
        assert!(matches!(labelled.series, Series::Labelled { .. }));
        assert_eq!(labelled.pod_value("a", "p1"), Some(1.0));
        assert_eq!(labelled.samples().into_owned(), vec![with_container]);
        let (labels, _) = labelled.series().next().unwrap();
        assert_eq!(labels.get("container"), Some("app"));
    }

    #[test]
    fn pod_values_and_namespace_sums_are_derived_once_per_answer_and_pod_generation() {
        let answer = Answer::new(
            vec![
                pod_sample("a", "p1", 1.0),
                pod_sample("a", "p2", 2.0),
                pod_sample("b", "p1", 4.0),
            ],
            0,
        );
        assert_eq!(answer.pod_value("a", "p2"), Some(2.0));
        assert_eq!(answer.pod_value("b", "p1"), Some(4.0));
        assert_eq!(answer.pod_value("b", "p2"), None);

        let computed = std::cell::Cell::new(0);
        let sum = |live: &'static [&'static str], generation: u64| {
            answer.namespace_sum("a", generation, || {
                computed.set(computed.get() + 1);
                let sum = live.iter().filter_map(|p| answer.pod_value("a", p)).sum();
                (Some(sum), generation)
            })
        };
        assert_eq!(sum(&["p1", "p2"], 7), Some(3.0));
        assert_eq!(sum(&["p1", "p2"], 7), Some(3.0));
        assert_eq!(computed.get(), 1, "the same pods: computed once");
        assert_eq!(sum(&["p1"], 8), Some(1.0), "a pod went away");
        assert_eq!(computed.get(), 2);
    }

    #[tokio::test]
    async fn answers_are_evicted_to_stay_under_the_memory_cap() {
        let entry = Entry {
            answer: Arc::new(Answer::new(
                vec![Sample {
                    labels: [("pod".to_owned(), "p".repeat(1_000_000))].into(),
                    value: 1.0,
                }],
                0,
            )),
            fetched: Instant::now(),
        };
        let metrics = Arc::new(Metrics::default());
        let cache = QueryCache::new(
            "prometheus",
            ScriptedSource::new(vec![], Duration::ZERO),
            Duration::from_secs(60),
            Duration::from_secs(60),
            metrics.clone(),
        );
        for i in 0..300 {
            cache.recent.insert(format!("q{i}"), entry.clone()).await;
        }
        cache.recent.run_pending_tasks().await;
        assert!(cache.recent.weighted_size() <= MEMORY_CAP_BYTES);
        assert!(cache.recent.entry_count() < 300);
        assert!(metrics.cache_evictions.get() > 0);
    }

    #[tokio::test]
    async fn a_failure_with_nothing_cached_is_an_error_never_a_zero() {
        let source = ScriptedSource::new(vec![Err(down())], Duration::ZERO);
        let cache = cache(source, Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(cache.query("q").await.unwrap_err(), down());
    }
}
