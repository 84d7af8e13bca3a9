//! The HTTPS server an aggregated metrics API server is: the state its handlers share, the router, and the
//! dispatch of API paths to the endpoint families beside it (discovery, built-in metrics, policies, rules,
//! probes, system paths); the accept loop is in `listener`.
//!
//! `app(state)` is a pure function from state to `Router`, called by `serve` and by tests alike.

mod builtin;
mod discovery;
pub mod guard;
pub mod listener;
mod params;
mod policies;
mod probes;
pub mod routes;
mod rules;
mod system;
pub mod tls;

pub use listener::{ConnectionLimits, serve};

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;

use crate::adapter_rules::AdapterRules;
use crate::backends::Backends;
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::inventory::PodInventory;
use crate::policy::runner::FailurePolicies;
use crate::telemetry::{Metrics, RequestLabels, RouteLabels};
use routes::Route;

/// Everything the handlers share.
pub struct AppState {
    /// What the configuration file decides; replaced whole when it is reloaded.
    configured: RwLock<Arc<Configured>>,
    /// Pods by namespace.
    pub inventory: Arc<PodInventory>,
    /// The adapter's own metrics.
    pub metrics: Arc<Metrics>,
    /// Authentication, authorization and request limits.
    pub guard: guard::Guard,
    /// Prometheus Adapter rules (`--adapter-config`), served next to the built-in metrics.
    pub rules: Option<Arc<AdapterRules>>,
}

/// The part of the state the configuration file decides. A request reads one of these from start to end,
/// so a reload never mixes two configurations in one answer.
pub struct Configured {
    /// The metrics served.
    pub catalog: Catalog,
    /// The metrics backends, each behind its shared, coalescing cache.
    pub backends: Arc<Backends>,
    /// The `rate()` window of the built-in metrics.
    pub rate_window: Duration,
    /// The scale-on-failure policies.
    pub policies: Arc<FailurePolicies>,
}

impl AppState {
    /// The state, serving `configured` until [`AppState::replace`].
    pub fn new(
        configured: Configured,
        inventory: Arc<PodInventory>,
        metrics: Arc<Metrics>,
        guard: guard::Guard,
        rules: Option<Arc<AdapterRules>>,
    ) -> Self {
        Self {
            configured: RwLock::new(Arc::new(configured)),
            inventory,
            metrics,
            guard,
            rules,
        }
    }

    /// The configuration in force now.
    pub fn configured(&self) -> Arc<Configured> {
        self.configured
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `configured` in force for every request that starts from now on; returns the one replaced.
    pub fn replace(&self, configured: Arc<Configured>) -> Arc<Configured> {
        std::mem::replace(
            &mut *self.configured.write().unwrap_or_else(|e| e.into_inner()),
            configured,
        )
    }
}

/// The route kind a response was produced by, for self-metrics.
#[derive(Debug, Clone, Copy)]
struct RouteKind(&'static str);

/// The router for `state`.
pub fn app(state: Arc<AppState>) -> Router {
    probes::routes(Router::new())
        .route("/version", get(system::version))
        .route("/metrics", get(system::metrics))
        .route("/api", get(system::core_api_versions))
        .route("/apis", any(api))
        .route("/apis/{*rest}", any(api))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::protect,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path_kind = match request.uri().path() {
        p if probes::is_probe(p) => "health",
        "/metrics" => "metrics",
        "/version" => "version",
        _ => "other",
    };
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteKind>()
        .map_or(path_kind, |k| k.0);
    let code = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { route, code })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

fn json(value: impl Serialize) -> Response {
    axum::Json(value).into_response()
}

/// A JSON body already written.
fn json_body(body: Vec<u8>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::PathNotFound.into_response()
}

async fn api(State(state): State<Arc<AppState>>, method: Method, uri: Uri) -> Response {
    let (kind, result) = match routes::route(uri.path()) {
        Err(error) => ("unknown", Err(error)),
        Ok(_) if method != Method::GET && method != Method::HEAD => {
            ("unknown", Err(ApiError::MethodNotAllowed))
        }
        Ok(route) => (route.kind(), dispatch(&state, route, uri.query()).await),
    };
    let mut response = result.unwrap_or_else(|error| {
        if matches!(error, ApiError::Backend(_) | ApiError::InventoryUnavailable) {
            tracing::warn!(path = uri.path(), %error, "metrics request failed");
        }
        error.into_response()
    });
    response.extensions_mut().insert(RouteKind(kind));
    response
}

/// A metrics API GET answered in process, past access control (the caller has its own): what KEDA's External
/// Scaler reads, so that KEDA and the HPA are always given the same values.
pub async fn get_in_process(
    state: &AppState,
    path: &str,
    query: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let response = dispatch(state, routes::route(path)?, query).await?;
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::RuleQuery(format!("cannot read the answer: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::RuleQuery(format!("cannot read the answer: {e}")))
}

async fn dispatch(
    state: &AppState,
    route: Route,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let configured = state.configured();
    if let Some(document) = discovery::document(state, &configured, &route) {
        return document;
    }
    Ok(match route {
        Route::PodMetrics { .. } | Route::NodeMetrics { .. } => {
            // The operator's `resourceRules` when there are some, cAdvisor's defaults otherwise.
            let loaded = state.rules.as_ref().map(|r| r.current());
            let resource = loaded
                .as_ref()
                .and_then(|l| l.config.resource_rules.as_ref())
                .unwrap_or_else(|| crate::compat::rules::default_resource_rules());
            json(rules::resource_metrics(state, resource, &route, query).await?)
        }
        Route::Custom(request) => json_body(
            builtin::custom_metric(state, &configured, &request, query)
                .await?
                .to_json(),
        ),
        Route::External { namespace, metric } => {
            json(builtin::external_metric(state, &configured, &namespace, &metric, query).await?)
        }
        _ => return Err(ApiError::PathNotFound),
    })
}
