//! KEDA's External Scaler over gRPC (KEDA's `externalscaler.proto`; <https://keda.sh/docs/latest/concepts/external-scalers/>)
//! and gRPC health, served on their own TLS port. Every value is read through the same in-process path as
//! the metrics API ([`crate::server::get_in_process`]), from the same catalogue, inventory and cache, so KEDA
//! and an HPA always see the same numbers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::{Semaphore, watch};
use tonic::{Request, Response, Status};

use crate::config::GrpcConfig;
use crate::error::ApiError;
use crate::policy::runner::FailurePolicy;
use crate::server::AppState;
use crate::telemetry::{GrpcLabels, GrpcMethodLabels};

pub mod metadata;

/// The code generated from `proto/externalscaler.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod externalscaler {
    tonic::include_proto!("externalscaler");
}

use externalscaler::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use externalscaler::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};
use metadata::{Subject, Trigger};

/// The largest request a caller may send: a trigger's metadata is a few hundred bytes.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The scaler: the adapter's state, the call limits, and the signal that ends streams at shutdown.
#[derive(Clone)]
pub struct Scaler {
    state: Arc<AppState>,
    config: GrpcConfig,
    calls: Arc<Semaphore>,
    /// Open activity streams, bounded like calls: each holds a task that polls.
    streams: Arc<Semaphore>,
    stopping: watch::Receiver<bool>,
}

impl Scaler {
    /// A scaler over `state`; streams end when `stopping` turns true.
    pub fn new(state: Arc<AppState>, config: GrpcConfig, stopping: watch::Receiver<bool>) -> Self {
        Self {
            calls: Arc::new(Semaphore::new(config.max_concurrent_calls)),
            streams: Arc::new(Semaphore::new(config.max_concurrent_calls)),
            state,
            config,
            stopping,
        }
    }

    /// The External Scaler and gRPC health as one router, for [`crate::server::serve`]. Health follows the
    /// adapter's readiness (the pod inventory has synced) until `stopping`.
    pub fn router(self) -> axum::Router {
        let (reporter, health) = tonic_health::server::health_reporter();
        let state = self.state.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let mut serving = None;
            loop {
                let now = state.inventory.is_synced() && !*stopping.borrow();
                if serving != Some(now) {
                    let status = if now {
                        tonic_health::ServingStatus::Serving
                    } else {
                        tonic_health::ServingStatus::NotServing
                    };
                    reporter.set_service_status("", status).await;
                    reporter
                        .set_service_status("externalscaler.ExternalScaler", status)
                        .await;
                    serving = Some(now);
                }
                if *stopping.borrow() {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    // The server is gone: nothing left to report to.
                    changed = stopping.changed() => if changed.is_err() { break },
                }
            }
        });
        let scaler = ExternalScalerServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES);
        tonic::service::Routes::new(scaler)
            .add_service(health)
            .into_axum_router()
    }

    /// Runs one call within the limits, counting it by method and outcome.
    async fn call<T>(
        &self,
        method: &'static str,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let result = match self.calls.try_acquire() {
            Err(_) => Err(Status::resource_exhausted(format!(
                "{} calls are in flight; try again",
                self.config.max_concurrent_calls
            ))),
            Ok(_slot) => match tokio::time::timeout(self.config.call_timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer within {:?}",
                    self.config.call_timeout
                ))),
            },
        };
        self.observe(method, started, result.as_ref().err());
        result
    }

    fn observe(&self, method: &'static str, started: Instant, error: Option<&Status>) {
        let metrics = &self.state.metrics;
        let code = error.map_or(tonic::Code::Ok, Status::code);
        metrics
            .grpc_calls
            .get_or_create(&GrpcLabels {
                method,
                code: format!("{code:?}"),
            })
            .inc();
        metrics
            .grpc_call_duration
            .get_or_create(&GrpcMethodLabels { method })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The trigger a ScaledObject reference describes.
    fn trigger(reference: &ScaledObjectRef) -> Result<Trigger, Status> {
        metadata::parse(&reference.namespace, &reference.scaler_metadata)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    /// The trigger's current value: a pod metric summed over its pods, or a policy's replica count.
    async fn value(&self, trigger: &Trigger) -> Result<f64, Status> {
        let failed = |e: ApiError| Status::new(e.grpc_code(), e.to_string());
        match &trigger.subject {
            Subject::Pods {
                metric,
                label_selector,
                metric_label_selector,
            } => {
                let query = {
                    let mut query = form_urlencoded::Serializer::new(String::new());
                    query.append_pair("labelSelector", label_selector);
                    if let Some(selector) = metric_label_selector {
                        query.append_pair("metricLabelSelector", selector);
                    }
                    query.finish()
                };
                let path = format!(
                    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/pods/*/{metric}",
                    encode(&trigger.namespace)
                );
                let list = crate::server::get_in_process(&self.state, &path, Some(&query))
                    .await
                    .map_err(failed)?;
                let items = list["items"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    // No pods is no load; pods without values are no data, never a made-up 0.
                    let selector = label_selector.parse().map_err(|e| {
                        Status::invalid_argument(format!("scalerMetadata.labelSelector: {e}"))
                    })?;
                    let pods = self.state.inventory.select(&trigger.namespace, &selector);
                    if pods.iter().any(|p| p.is_live()) {
                        return Err(Status::unavailable(format!(
                            "no value of {metric} for any of the {} selected pods yet",
                            pods.len()
                        )));
                    }
                }
                items
                    .iter()
                    .try_fold(0.0, |sum, item| Ok(sum + served_value(item)?))
            }
            Subject::Policy { name } => {
                let policy = self.policy(name)?;
                let target = &policy.config.target;
                if target.namespace != trigger.namespace {
                    return Err(Status::not_found(format!(
                        "policy {name:?} scales a Deployment in namespace {}, not {}",
                        target.namespace, trigger.namespace
                    )));
                }
                let path = format!(
                    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/deployments.apps/{}/{}",
                    encode(&target.namespace),
                    encode(&target.deployment),
                    crate::catalog::SCALE_ON_FAILURE_REPLICAS
                );
                let list = crate::server::get_in_process(&self.state, &path, None)
                    .await
                    .map_err(failed)?;
                served_value(&list["items"][0])
            }
        }
    }

    async fn is_active(&self, trigger: &Trigger) -> Result<bool, Status> {
        Ok(self.value(trigger).await? > trigger.activation)
    }
}

/// The value of one item of a metric value list, as the metrics API served it.
fn served_value(item: &serde_json::Value) -> Result<f64, Status> {
    let value = item["value"].as_str().unwrap_or_default();
    crate::quantity::parse(value).map_err(|e| Status::internal(format!("value {value:?}: {e}")))
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// KEDA reads the float fields only when they are above 0, the integer ones otherwise: both are filled.
fn whole(value: f64) -> i64 {
    value.round().clamp(i64::MIN as f64, i64::MAX as f64) as i64
}

type ActivityStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        self.call("IsActive", async {
            let trigger = Self::trigger(request.get_ref())?;
            let result = Scaler::is_active(self, &trigger).await?;
            Ok(Response::new(IsActiveResponse { result }))
        })
        .await
    }

    type StreamIsActiveStream = ActivityStream;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let started = Instant::now();
        let trigger = match Self::trigger(request.get_ref()) {
            Ok(trigger) => trigger,
            Err(status) => {
                self.observe("StreamIsActive", started, Some(&status));
                return Err(status);
            }
        };
        let Ok(slot) = self.streams.clone().try_acquire_owned() else {
            let status = Status::resource_exhausted(format!(
                "{} activity streams are open; try again",
                self.config.max_concurrent_calls
            ));
            self.observe("StreamIsActive", started, Some(&status));
            return Err(status);
        };
        let scaler = self.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _slot = slot;
            let mut stopping = scaler.stopping.clone();
            let mut last = None;
            let mut interval = tokio::time::interval(scaler.config.active_check_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let outcome = loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    changed = stopping.changed() => if changed.is_err() { break None },
                    () = sender.closed() => break None,
                }
                if *stopping.borrow() {
                    break None;
                }
                match scaler.is_active(&trigger).await {
                    Ok(active) if last != Some(active) => {
                        last = Some(active);
                        if sender
                            .send(Ok(IsActiveResponse { result: active }))
                            .await
                            .is_err()
                        {
                            break None;
                        }
                    }
                    Ok(_) => {}
                    // A failed check pushes nothing: KEDA acts on `true` only, and polling still runs.
                    Err(status) => {
                        tracing::debug!(%status, "StreamIsActive: check failed; retrying at the next interval");
                    }
                }
            };
            scaler.observe("StreamIsActive", started, outcome.as_ref());
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        self.call("GetMetricSpec", async {
            // Configuration only, never live data: an error here costs KEDA the HPA's metric until its next
            // rebuild.
            let trigger = Self::trigger(request.get_ref())?;
            self.check_served(&trigger)?;
            Ok(Response::new(GetMetricSpecResponse {
                metric_specs: vec![MetricSpec {
                    metric_name: trigger.metric_name().to_owned(),
                    target_size: whole(trigger.target).max(1),
                    target_size_float: trigger.target,
                }],
            }))
        })
        .await
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        self.call("GetMetrics", async {
            let request = request.into_inner();
            let reference = request
                .scaled_object_ref
                .ok_or_else(|| Status::invalid_argument("scaledObjectRef is required"))?;
            let trigger = Self::trigger(&reference)?;
            self.check_served(&trigger)?;
            let value = self.value(&trigger).await?;
            Ok(Response::new(GetMetricsResponse {
                metric_values: vec![MetricValue {
                    metric_name: trigger.metric_name().to_owned(),
                    metric_value: whole(value),
                    metric_value_float: value,
                }],
            }))
        })
        .await
    }
}

impl Scaler {
    /// NotFound for a metric the catalogue and the rules do not serve for pods, or a policy not configured.
    fn check_served(&self, trigger: &Trigger) -> Result<(), Status> {
        let configured = self.state.configured();
        match &trigger.subject {
            Subject::Pods { metric, .. } => {
                let builtin = configured.catalog.pod_metric(metric).is_some();
                let by_rule = self.state.rules.as_ref().is_some_and(|rules| {
                    rules
                        .registry()
                        .custom(
                            &crate::compat::resources::GroupResource::core("pods"),
                            metric,
                        )
                        .is_some()
                });
                if builtin || by_rule {
                    Ok(())
                } else {
                    let served: Vec<_> = configured
                        .catalog
                        .metrics()
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect();
                    Err(Status::not_found(format!(
                        "{metric} is not a served pod metric (the built-in ones: {})",
                        served.join(", ")
                    )))
                }
            }
            Subject::Policy { name } => self.policy(name).map(drop),
        }
    }

    /// The configured scale-on-failure policy `name`, or NotFound.
    fn policy(&self, name: &str) -> Result<Arc<FailurePolicy>, Status> {
        self.state
            .configured()
            .policies
            .all()
            .iter()
            .find(|p| p.config.name == name)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!("no scale-on-failure policy is named {name:?}"))
            })
    }
}
