//! The op-monitor collector: polls `getSecurityServerOperationalData` through the Security Server's client
//! proxy with a cursor, attributes each record to a pod, and counts it in the series Prometheus scrapes from
//! the adapter's `/metrics` (X-Road's PR-OPMON, UG-SS and the Sidecar user guide).
//!
//! Exactly-once: a page is counted only when it parsed completely, and the cursor moves only past counted
//! pages; the first poll starts at the present, so a restarted collector never counts old records again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::attribution::{Attribution, LeaseHistory, PodAddress};
use super::election::{LeaderElection, Leadership};
use super::protocol::{
    self, FIELD_SETS, FaultKind, FieldSet, OperationalData, Record, ResponseError,
};
use crate::config::OpMonitorConfig;
use crate::inventory::PodInventory;
use crate::selector::LabelSelector;
use crate::telemetry::{Metrics, ReasonLabels};
use crate::unix_now;

/// The most an answer may weigh; a full page of trimmed records is a few MB of gzip.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;
/// After falling back to an older field set, the newest is tried again this often: the Security Server may
/// have been upgraded.
const FIELD_SET_RETRY: Duration = Duration::from_secs(3600);
/// Closed IP leases are kept this long: availability offset + poll lag + the longest rate window.
const LEASE_RETENTION: Duration = Duration::from_secs(15 * 60);
/// Meta-services whose calls are the monitoring itself, not traffic.
const META_SERVICES: &[&str] = &[
    "getSecurityServerOperationalData",
    "getSecurityServerHealthData",
    "getSecurityServerMetrics",
];

/// Labels of `xroad_opmon_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The pods' namespace.
    pub namespace: String,
    /// The pod, `""` when unattributed.
    pub pod: String,
    /// `client` or `producer`.
    pub security_server_type: String,
    /// `true` or `false`.
    pub succeeded: String,
    /// Service identifier parts.
    pub service_xroad_instance: String,
    /// Service member class.
    pub service_member_class: String,
    /// Service member code.
    pub service_member_code: String,
    /// Service subsystem code.
    pub service_subsystem_code: String,
    /// Service code; `other` past the cardinality cap.
    pub service_code: String,
    /// Service version.
    pub service_version: String,
}

/// The collector's series.
struct Series {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    request_size: Family<RequestLabels, Histogram>,
    response_size: Family<RequestLabels, Histogram>,
    records: Counter,
    errors: Family<ReasonLabels, Counter>,
    polls: Family<OutcomeLabels, Counter>,
    field_set: Family<FieldSetLabels, Gauge>,
    unattributed: Family<ReasonLabels, Counter>,
    folded: Counter,
    lag: Gauge,
    clock_offset: Gauge,
}

impl Series {
    fn register(metrics: &Metrics) -> Self {
        let series = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            request_size: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(256.0, 4.0, 10))
            }),
            response_size: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(256.0, 4.0, 10))
            }),
            records: Counter::default(),
            errors: Family::default(),
            polls: Family::default(),
            field_set: Family::default(),
            unattributed: Family::default(),
            folded: Counter::default(),
            lag: Gauge::default(),
            clock_offset: Gauge::default(),
        };
        metrics.register(
            "xroad_opmon_requests",
            "X-Road messages mediated, per pod, role, result and service",
            series.requests.clone(),
        );
        metrics.register(
            "xroad_opmon_request_duration_seconds",
            "responseOutTs - requestInTs of X-Road messages (succeeded is always empty)",
            series.duration.clone(),
        );
        metrics.register(
            "xroad_opmon_request_size_bytes",
            "Request sizes of X-Road messages",
            series.request_size.clone(),
        );
        metrics.register(
            "xroad_opmon_response_size_bytes",
            "Response sizes of X-Road messages",
            series.response_size.clone(),
        );
        metrics.register(
            "xroad_opmon_records",
            "Operational data records collected, meta-services included",
            series.records.clone(),
        );
        metrics.register(
            "xroad_opmon_collect_errors",
            "Failed op-monitor polls by reason",
            series.errors.clone(),
        );
        metrics.register(
            "xroad_opmon_polls",
            "Op-monitor polls by outcome: ok, not_yet_available (the window is not closed on the Security \
             Server's clock: no new data, not an error), error",
            series.polls.clone(),
        );
        metrics.register(
            "xroad_opmon_output_fields",
            "1 for the output-field set the Security Server accepts (which names its size fields)",
            series.field_set.clone(),
        );
        metrics.register(
            "xroad_opmon_unattributed_records",
            "Records counted under an empty pod label because their IP matched no pod",
            series.unattributed.clone(),
        );
        metrics.register(
            "xroad_opmon_services_folded",
            "Records whose service was folded into service_code other by the cardinality cap",
            series.folded.clone(),
        );
        metrics.register(
            "xroad_opmon_clock_offset_seconds",
            "The Security Server's clock minus the adapter's, from the Date of its last answer (±1 s); \
             recordsAvailableOffset must exceed 60 s minus this",
            series.clock_offset.clone(),
        );
        metrics.register(
            "xroad_opmon_collect_lag_seconds",
            "Seconds between now and the collector's cursor",
            series.lag.clone(),
        );
        series
    }
}

/// The `outcome` label of `xroad_opmon_polls_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The `servers` label of `xroad_opmon_output_fields`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldSetLabels {
    servers: &'static str,
}

/// Why a poll failed; the cursor did not move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectError {
    /// No answer or no connection.
    #[error("cannot reach the client proxy: {0}")]
    Transport(String),
    /// An HTTP status other than 200 without a SOAP fault.
    #[error("the client proxy answered HTTP {0}")]
    Http(u16),
    /// An answer that could not be used.
    #[error(transparent)]
    Response(#[from] ResponseError),
}

impl CollectError {
    fn reason(&self) -> &'static str {
        match self {
            CollectError::Transport(_) | CollectError::Http(_) => "transport",
            CollectError::Response(e) => e.reason(),
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollSummary {
    /// Pages fetched and counted.
    pub pages: usize,
    /// Records counted (after excluding meta-services).
    pub counted: usize,
    /// The window was not available yet (benign).
    pub not_yet_available: bool,
}

/// The op-monitor collector.
pub struct Collector {
    config: OpMonitorConfig,
    client: reqwest::Client,
    cursor: Mutex<Option<i64>>,
    leases: Mutex<LeaseHistory>,
    services: Mutex<HashSet<[String; 6]>>,
    /// Which of [`FIELD_SETS`] is asked for, and since when.
    field_set: Mutex<(usize, Instant)>,
    series: Series,
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, String> {
    crate::files::read_bytes(path, crate::files::CONFIG_LIMIT)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl Collector {
    /// A collector that has not polled yet; its series are registered in `metrics`.
    pub fn new(config: OpMonitorConfig, metrics: &Metrics) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.timeout);
        if let Some(ca) = &config.tls.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read_pem(ca)?)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
            let mut pem = read_pem(cert)?;
            pem.extend(read_pem(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("client certificate: {e}"))?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the op-monitor client: {e}"))?;
        Ok(Self {
            config,
            client,
            cursor: Mutex::new(None),
            leases: Mutex::new(LeaseHistory::default()),
            services: Mutex::new(HashSet::new()),
            field_set: Mutex::new((0, Instant::now())),
            series: Series::register(metrics),
        })
    }

    /// The field set to ask for now; after a fallback, the newest again once [`FIELD_SET_RETRY`] has passed.
    fn field_set(&self) -> FieldSet {
        let mut current = self.field_set.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 > 0 && current.1.elapsed() >= FIELD_SET_RETRY {
            *current = (0, Instant::now());
        }
        for (index, set) in FIELD_SETS.iter().enumerate() {
            self.series
                .field_set
                .get_or_create(&FieldSetLabels {
                    servers: set.servers,
                })
                .set(i64::from(index == current.0));
        }
        FIELD_SETS[current.0]
    }

    /// Falls back to the next older field set; false when none is left.
    fn fall_back(&self, fault: &ResponseError) -> bool {
        let mut current = self.field_set.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 + 1 >= FIELD_SETS.len() {
            return false;
        }
        current.0 += 1;
        current.1 = Instant::now();
        tracing::warn!(%fault, fields_of = FIELD_SETS[current.0].servers,
            "the Security Server does not know an output field; asking for an older field set");
        true
    }

    /// One page, `now` being the adapter's clock (Unix seconds) for the clock-offset gauge.
    async fn fetch(&self, from: i64, to: i64, now: i64) -> Result<OperationalData, CollectError> {
        let fields: Vec<&str> = self.field_set().fields().collect();
        let body = protocol::operational_data_request(
            &self.config.client,
            &self.config.security_server,
            &uuid::Uuid::new_v4().to_string(),
            from,
            to,
            &fields,
        );
        let response = self
            .client
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=UTF-8")
            .body(body)
            .send()
            .await
            .map_err(|e| CollectError::Transport(crate::error_chain::transport_cause(&e)))?;
        let status = response.status().as_u16();
        if let Some(date) = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        {
            self.series.clock_offset.set(date.as_secs() as i64 - now);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_ANSWER_BYTES)
        {
            return Err(CollectError::Response(ResponseError::Parse(
                "answer larger than 256 MiB".into(),
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CollectError::Transport(crate::error_chain::transport_cause(&e)))?;
        // Faults come with HTTP 200, but a fault is a fault whatever the status; anything else needs a 200.
        match (status, protocol::parse_response(&content_type, &bytes)) {
            (_, Err(fault @ ResponseError::Fault { .. })) => Err(fault.into()),
            (200, answer) => answer.map_err(CollectError::from),
            (status, _) => Err(CollectError::Http(status)),
        }
    }

    /// Refreshes the IP leases from the inventory's pods in the configured namespace.
    fn observe_pods(&self, inventory: &PodInventory, now_ms: i64) {
        let pods: Vec<PodAddress> = inventory
            .select(&self.config.namespace, &LabelSelector::everything())
            .iter()
            .flat_map(|p| {
                p.ips.iter().map(|ip| PodAddress {
                    pod: p.name.clone(),
                    ip: *ip,
                    created: p.created.map(|s| s * 1000),
                })
            })
            .collect();
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(&pods, now_ms, LEASE_RETENTION);
    }

    /// Counts one page's records.
    fn count(&self, records: &[Record]) -> usize {
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let mut counted = 0;
        for record in records {
            self.series.records.inc();
            let service_code = record.service_code.clone().unwrap_or_default();
            if !self.config.include_meta_services && META_SERVICES.contains(&service_code.as_str())
            {
                continue;
            }
            let at = record
                .request_in_ts
                .or(record.monitoring_data_ts.map(|s| s * 1000))
                .unwrap_or_default();
            let ip = record
                .security_server_internal_ip
                .as_deref()
                .unwrap_or_default();
            let attribution = leases.attribute(ip, at);
            if let Some(reason) = attribution.reason() {
                self.series
                    .unattributed
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
            }
            let pod = match attribution {
                Attribution::Pod(pod) => pod.to_owned(),
                _ => String::new(),
            };
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            let mut service = [
                text(&record.service_xroad_instance),
                text(&record.service_member_class),
                text(&record.service_member_code),
                text(&record.service_subsystem_code),
                service_code,
                text(&record.service_version),
            ];
            if !services.contains(&service) {
                if services.len() < self.config.max_services {
                    services.insert(service.clone());
                } else {
                    self.series.folded.inc();
                    service = [
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        "other".into(),
                        String::new(),
                    ];
                }
            }
            let [
                instance,
                member_class,
                member_code,
                subsystem,
                code,
                version,
            ] = service;
            let mut labels = RequestLabels {
                namespace: self.config.namespace.clone(),
                pod,
                security_server_type: text(&record.security_server_type).to_ascii_lowercase(),
                succeeded: record.succeeded.map_or(String::new(), |s| s.to_string()),
                service_xroad_instance: instance,
                service_member_class: member_class,
                service_member_code: member_code,
                service_subsystem_code: subsystem,
                service_code: code,
                service_version: version,
            };
            self.series.requests.get_or_create(&labels).inc();
            labels.succeeded = String::new();
            if let (Some(start), Some(end)) = (record.request_in_ts, record.response_out_ts)
                && end >= start
            {
                self.series
                    .duration
                    .get_or_create(&labels)
                    .observe((end - start) as f64 / 1000.0);
            }
            if let Some(size) = record.request_size {
                self.series
                    .request_size
                    .get_or_create(&labels)
                    .observe(size as f64);
            }
            if let Some(size) = record.response_size {
                self.series
                    .response_size
                    .get_or_create(&labels)
                    .observe(size as f64);
            }
            counted += 1;
        }
        counted
    }

    /// One poll at `now` (Unix seconds): every page from the cursor up to `now − recordsAvailableOffset`.
    pub async fn poll(
        &self,
        inventory: &PodInventory,
        now: i64,
    ) -> Result<PollSummary, CollectError> {
        self.observe_pods(inventory, now * 1000);
        let to = now - self.config.records_available_offset.as_secs() as i64;
        let mut cursor = self
            .cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(to);
        let mut summary = PollSummary::default();
        while cursor <= to {
            let page = match self.fetch(cursor, to, now).await {
                Ok(page) => page,
                Err(CollectError::Response(fault))
                    if fault.fault_kind() == Some(FaultKind::NotYetAvailable) =>
                {
                    // The window is not closed on the Security Server's clock (ours runs ahead, or the
                    // cursor caught up): no new data, asked again next poll. The start is kept even on the
                    // first poll, so that a clock behind ours by more than the offset's margin delays the
                    // window instead of pushing it forward forever.
                    tracing::debug!(%fault, "records not available yet");
                    self.cursor
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(cursor);
                    summary.not_yet_available = true;
                    break;
                }
                Err(CollectError::Response(fault))
                    if fault.fault_kind() == Some(FaultKind::UnknownOutputField)
                        && self.fall_back(&fault) =>
                {
                    continue;
                }
                Err(error) => {
                    self.series
                        .errors
                        .get_or_create(&ReasonLabels {
                            reason: error.reason(),
                        })
                        .inc();
                    self.count_poll("error");
                    self.series.lag.set(now - cursor);
                    return Err(error);
                }
            };
            summary.pages += 1;
            summary.counted += self.count(&page.records);
            // A page holds `pageSize` records plus any sharing its last second: a full page means more follow.
            let full = page.records_count >= self.config.page_size;
            cursor = page.next_records_from.unwrap_or(to + 1);
            *self.cursor.lock().unwrap_or_else(|e| e.into_inner()) = Some(cursor);
            if !(full && page.next_records_from.is_some()) {
                break;
            }
        }
        self.series.lag.set(now - cursor);
        self.count_poll(if summary.not_yet_available && summary.pages == 0 {
            "not_yet_available"
        } else {
            "ok"
        });
        Ok(summary)
    }

    fn count_poll(&self, outcome: &'static str) {
        self.series
            .polls
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Where the next poll starts (Unix seconds), once the collector has polled.
    pub fn cursor(&self) -> Option<i64> {
        *self.cursor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Continues from a cursor another replica recorded. A cursor older than a handover can explain (the
    /// adapter was down) is dropped: counting hours of records into one scrape would read as a burst of
    /// traffic, so the collector starts at the present instead.
    pub fn resume_at(&self, recorded: Option<i64>, now: i64, max_gap: Duration) {
        let present = now - self.config.records_available_offset.as_secs() as i64;
        let cursor = recorded.filter(|c| present - c <= max_gap.as_secs() as i64);
        if recorded.is_some() && cursor.is_none() {
            tracing::warn!(
                ?recorded,
                present,
                "the recorded op-monitor cursor is too old; starting at the present"
            );
        }
        *self.cursor.lock().unwrap_or_else(|e| e.into_inner()) = cursor;
    }

    /// Polls every `pollInterval` until the process ends; with an election, only while leading.
    pub async fn run(
        self: Arc<Self>,
        inventory: Arc<PodInventory>,
        election: Option<LeaderElection>,
    ) {
        let poll_interval = self.config.poll_interval;
        let tick = election.as_ref().map_or(poll_interval, |e| {
            (e.lease_duration() / 3).min(poll_interval)
        });
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed: Option<std::time::Instant> = None;
        let mut last_poll: Option<std::time::Instant> = None;
        loop {
            interval.tick().await;
            let now = unix_now();
            if let Some(election) = &election {
                match election.lead(now, self.cursor()).await {
                    Ok(Leadership::Leader { cursor }) => {
                        if renewed.is_none() {
                            tracing::info!(?cursor, "leading the op-monitor collection");
                            self.resume_at(
                                cursor,
                                now,
                                election.lease_duration() + poll_interval * 2,
                            );
                        }
                        renewed = Some(std::time::Instant::now());
                    }
                    Ok(Leadership::Follower { holder }) => {
                        if renewed.take().is_some() {
                            tracing::info!(%holder, "another replica leads the op-monitor collection now");
                        }
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot renew the op-monitor lease");
                        // Stop before the lease can expire, so that two replicas never count at once.
                        if renewed.is_some_and(|t| t.elapsed() + tick >= election.lease_duration())
                        {
                            renewed = None;
                        }
                        if renewed.is_none() {
                            continue;
                        }
                    }
                }
            }
            if last_poll.is_some_and(|t| t.elapsed() + Duration::from_millis(100) < poll_interval) {
                continue;
            }
            last_poll = Some(std::time::Instant::now());
            match self.poll(&inventory, now).await {
                Ok(summary) => tracing::debug!(?summary, "op-monitor poll"),
                Err(error) => tracing::warn!(%error, "op-monitor poll failed; the cursor stays"),
            }
        }
    }
}
