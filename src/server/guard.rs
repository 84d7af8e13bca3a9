//! What every request passes before a handler: the URI size limit, the cap on requests in flight, the
//! request timeout, and delegated authentication and authorization as
//! `k8s.io/apiserver` does them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::AppState;
use super::probes::is_probe;
use crate::auth::attributes::Attributes;
use crate::auth::{Access, PeerCertificates};
use crate::error::ApiError;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests handled at once; more get 429 (the generic apiserver's `--max-requests-inflight`).
    pub max_in_flight: usize,
    /// How long one request may take, authentication included.
    pub request_timeout: Duration,
    /// The longest accepted path plus query.
    pub max_uri_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: 400,
            request_timeout: Duration::from_secs(60),
            max_uri_bytes: 16 * 1024,
        }
    }
}

/// Who is let in and how many at once.
pub struct Guard {
    access: Access,
    limits: Limits,
    in_flight: Arc<Semaphore>,
}

impl Guard {
    /// A guard with `access` and `limits`.
    pub fn new(access: Access, limits: Limits) -> Self {
        Self {
            access,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        }
    }

    /// No authentication, default limits: for `--authentication none` on loopback, and for commands that
    /// do not serve.
    pub fn anonymous() -> Self {
        Self::new(Access::Anonymous, Limits::default())
    }

    /// Adds the access counters to `/metrics`.
    pub fn register_metrics(&self, metrics: &crate::telemetry::Metrics) {
        if let Access::Delegated(delegated) = &self.access {
            delegated.register_metrics(metrics);
        }
    }
}

/// The middleware.
pub(super) async fn protect(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let guard = &state.guard;
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_bytes > guard.limits.max_uri_bytes {
        return ApiError::UriTooLong(guard.limits.max_uri_bytes).into_response();
    }
    // A connection past the cap, without a certificate: it was let in for probes only.
    if request
        .extensions()
        .get::<super::listener::ReservedConnection>()
        .is_some()
        && !is_probe(request.uri().path())
    {
        return ApiError::TooManyRequests.into_response();
    }
    let timeout = guard.limits.request_timeout;
    match tokio::time::timeout(timeout, admit_and_run(guard, request, next)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout(timeout).into_response(),
    }
}

/// Marks a request whose caller may read the reasons of failed health checks: any caller of an adapter without
/// authentication (loopback only), else one who authenticated and may `get` the health path. Anonymous probes
/// see check names and states, as kube-apiserver shows them (`reason withheld`): a reason can hold a backend
/// address or a PromQL error.
#[derive(Debug, Clone, Copy)]
pub(super) struct HealthDetails;

/// Whether the request carries anything that could authenticate it.
fn has_credentials(request: &Request) -> bool {
    request
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION)
        || request
            .extensions()
            .get::<Arc<PeerCertificates>>()
            .is_some()
}

/// Authenticates, takes an in-flight slot, authorizes, runs. Authentication comes first, so that requests
/// nobody vouches for never hold the slots the HPA's requests need; what authentication itself may spend is
/// bounded on its own (the reviews in flight, `auth::review::MAX_REVIEWS_IN_FLIGHT`).
async fn admit_and_run(guard: &Guard, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let delegated = match &guard.access {
        Access::Anonymous => {
            request.extensions_mut().insert(HealthDetails);
            None
        }
        Access::Delegated(delegated) => Some(delegated),
    };
    let always_allowed = delegated.is_some_and(|d| d.is_always_allowed(&path));
    let user = match delegated {
        // Served to anyone; details only to a caller who proves they may read them. Only a caller who sends
        // credentials costs a review, so anonymous probes stay free.
        Some(delegated) if always_allowed => {
            if has_credentials(&request)
                && authenticated_and_allowed(delegated, &mut request)
                    .await
                    .is_ok()
            {
                request.extensions_mut().insert(HealthDetails);
            }
            None
        }
        Some(delegated) => match authenticate(delegated, &mut request).await {
            Ok(user) => Some((delegated, user)),
            Err(error) => return ApiError::from(error).into_response(),
        },
        None => None,
    };
    // Health probes bypass the cap: a busy adapter must not be restarted for being busy.
    let _permit = if is_probe(&path) {
        None
    } else {
        match guard.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return ApiError::TooManyRequests.into_response(),
        }
    };
    if let Some((delegated, user)) = user
        && let Err(error) = delegated.authorize(&user, &attributes(&request)).await
    {
        return ApiError::from(error).into_response();
    }
    next.run(request).await
}

/// Who sent `request`, by its connection's certificate, its front-proxy headers or its bearer token.
async fn authenticate(
    delegated: &crate::auth::Delegated,
    request: &mut Request,
) -> Result<crate::auth::UserInfo, crate::auth::AuthError> {
    let peer = request.extensions().get::<Arc<PeerCertificates>>().cloned();
    delegated
        .authenticate(peer.as_deref(), request.headers_mut())
        .await
}

/// What `request` asks to do, for the SubjectAccessReview.
fn attributes(request: &Request) -> Attributes {
    Attributes::of(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    )
}

async fn authenticated_and_allowed(
    delegated: &crate::auth::Delegated,
    request: &mut Request,
) -> Result<(), crate::auth::AuthError> {
    let user = authenticate(delegated, request).await?;
    delegated.authorize(&user, &attributes(request)).await
}
