//! The adapter's request errors and the one place that turns them into a Kubernetes `Status` and HTTP code
//! (`metav1.Status`, with the reasons and codes `k8s.io/apiserver` uses).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::apis::{Status, StatusDetails};
use crate::auth::AuthError;
use crate::auth::attributes::Attributes;
use crate::promql::MatcherError;
use crate::source::SourceError;

/// What a client throttled with 429 is told to wait, in seconds (the generic apiserver's value).
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Everything a metrics request can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No route: wrong segment count, unknown group or version.
    #[error("the server could not find the requested resource")]
    PathNotFound,
    /// The catalogue has no such metric for that resource.
    #[error("the server could not find the metric {metric} for {resource}")]
    MetricNotFound {
        /// The API group of the request.
        group: &'static str,
        /// The group-resource, e.g. `pods`.
        resource: String,
        /// The metric name.
        metric: String,
    },
    /// A named object has no current value (or does not exist).
    #[error("the server could not find the metric {metric} for {resource} {name}")]
    ObjectMetricNotFound {
        /// The group-resource.
        resource: String,
        /// The object's name.
        name: String,
        /// The metric name.
        metric: String,
    },
    /// A selector or another parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The backend failed and no value within the staleness bound is at hand.
    #[error("unable to fetch metrics: {0}")]
    Backend(SourceError),
    /// A scale-on-failure policy could not evaluate (no load value, target missing, loop stalled).
    #[error("unable to compute the scale-on-failure metrics: {0}")]
    PolicyUnavailable(String),
    /// The pod inventory has not synced yet, or could not be read.
    #[error("unable to list matching resources")]
    InventoryUnavailable,
    /// A method other than GET or HEAD.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// Not authenticated, not authorized, or the authorizer could not be asked.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// More requests in flight than `--max-requests-inflight`.
    #[error("Too many requests, please try again later.")]
    TooManyRequests,
    /// The request ran longer than `--request-timeout`.
    #[error("the request did not complete within {0:?}")]
    RequestTimeout(std::time::Duration),
    /// `metrics.k8s.io`: the named pod or node has no usage (the metrics-server wording).
    #[error("{0} not found")]
    ResourceMetricsNotFound(String),
    /// A Prometheus Adapter rule cannot build its query for this request.
    #[error("unable to build the query: {0}")]
    RuleQuery(String),
    /// The request URI is longer than the limit.
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
}

impl ApiError {
    /// `unable to parse <param>: <detail>`, for `labelSelector` and `metricLabelSelector`.
    pub fn bad_selector(param: &str, detail: impl std::fmt::Display) -> Self {
        ApiError::BadRequest(format!("unable to parse {param}: {detail}"))
    }

    /// A selector with no PromQL form: an operator PromQL cannot express is a bad request as such; a key that
    /// is no label name makes the selector unparseable, as the Prometheus Adapter words it.
    pub fn unmatchable_selector(param: &str, error: MatcherError) -> Self {
        match error {
            MatcherError::UnsupportedOperator(_) => ApiError::BadRequest(error.to_string()),
            MatcherError::InvalidLabelName(_) => ApiError::bad_selector(param, error),
        }
    }

    /// The HTTP status and `Status` body for this error.
    pub fn to_status(&self) -> (StatusCode, Status) {
        let (code, reason, message) = match self {
            ApiError::PathNotFound
            | ApiError::MetricNotFound { .. }
            | ApiError::ObjectMetricNotFound { .. }
            | ApiError::ResourceMetricsNotFound(_) => {
                (StatusCode::NOT_FOUND, "NotFound", self.to_string())
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest", self.to_string()),
            // 504, never 503: kubectl shows 503 as the aggregator's own "service unavailable".
            ApiError::Backend(SourceError::Timeout(_)) => (
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                "the request timed out fetching metrics".to_owned(),
            ),
            ApiError::Backend(_)
            | ApiError::InventoryUnavailable
            | ApiError::PolicyUnavailable(_)
            | ApiError::RuleQuery(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("Internal error occurred: {self}"),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                self.to_string(),
            ),
            ApiError::Auth(AuthError::Unauthenticated) => {
                (StatusCode::UNAUTHORIZED, "Unauthorized", self.to_string())
            }
            ApiError::Auth(AuthError::Forbidden { .. }) => {
                (StatusCode::FORBIDDEN, "Forbidden", self.to_string())
            }
            ApiError::Auth(AuthError::ReviewFailed(_)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("Internal error occurred: {self}"),
            ),
            ApiError::TooManyRequests | ApiError::Auth(AuthError::Throttled) => (
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                self.to_string(),
            ),
            ApiError::RequestTimeout(_) => {
                (StatusCode::GATEWAY_TIMEOUT, "Timeout", self.to_string())
            }
            ApiError::UriTooLong(_) => (
                StatusCode::URI_TOO_LONG,
                "RequestURITooLong",
                self.to_string(),
            ),
        };
        let status = Status::failure(code.as_u16(), reason, message);
        let status = match self {
            ApiError::MetricNotFound {
                group, resource, ..
            } => status.with_details(StatusDetails {
                group: Some((*group).to_owned()),
                kind: Some(resource.clone()),
                ..Default::default()
            }),
            ApiError::ObjectMetricNotFound { resource, name, .. } => {
                status.with_details(StatusDetails {
                    name: Some(name.clone()),
                    group: Some(crate::apis::CUSTOM_GROUP.to_owned()),
                    kind: Some(resource.clone()),
                    ..Default::default()
                })
            }
            ApiError::Auth(AuthError::Forbidden { attributes, .. }) => match &**attributes {
                Attributes::Resource(r) => status.with_details(StatusDetails {
                    name: Some(r.name.clone()).filter(|n| !n.is_empty()),
                    group: Some(r.group.clone()),
                    kind: Some(r.resource.clone()),
                    ..Default::default()
                }),
                Attributes::NonResource { .. } => status,
            },
            ApiError::TooManyRequests | ApiError::Auth(AuthError::Throttled) => status
                .with_details(StatusDetails {
                    retry_after_seconds: Some(RETRY_AFTER_SECONDS),
                    ..Default::default()
                }),
            _ => status,
        };
        (code, status)
    }
}

impl ApiError {
    /// The gRPC code KEDA's External Scaler answers this error with.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            ApiError::PathNotFound
            | ApiError::MetricNotFound { .. }
            | ApiError::ObjectMetricNotFound { .. }
            | ApiError::ResourceMetricsNotFound(_) => tonic::Code::NotFound,
            ApiError::BadRequest(_) | ApiError::UriTooLong(_) => tonic::Code::InvalidArgument,
            ApiError::Backend(SourceError::Timeout(_)) | ApiError::RequestTimeout(_) => {
                tonic::Code::DeadlineExceeded
            }
            ApiError::Backend(_)
            | ApiError::InventoryUnavailable
            | ApiError::PolicyUnavailable(_)
            | ApiError::RuleQuery(_) => tonic::Code::Unavailable,
            ApiError::TooManyRequests | ApiError::Auth(AuthError::Throttled) => {
                tonic::Code::ResourceExhausted
            }
            ApiError::Auth(AuthError::Unauthenticated) => tonic::Code::Unauthenticated,
            ApiError::Auth(AuthError::Forbidden { .. }) => tonic::Code::PermissionDenied,
            ApiError::Auth(AuthError::ReviewFailed(_)) | ApiError::MethodNotAllowed => {
                tonic::Code::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = self.to_status();
        let mut response = (code, axum::Json(status)).into_response();
        if matches!(
            self,
            ApiError::TooManyRequests | ApiError::Auth(AuthError::Throttled)
        ) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(error: ApiError) -> (u16, &'static str, String) {
        let (code, status) = error.to_status();
        assert_eq!(code.as_u16(), status.code, "code equals the HTTP status");
        (status.code, status.reason, status.message)
    }

    #[test]
    fn each_error_has_the_contract_code_reason_and_message() {
        assert_eq!(
            status_of(ApiError::PathNotFound),
            (
                404,
                "NotFound",
                "the server could not find the requested resource".into()
            )
        );
        assert_eq!(
            status_of(ApiError::MetricNotFound {
                group: "custom.metrics.k8s.io",
                resource: "pods".into(),
                metric: "nope".into()
            }),
            (
                404,
                "NotFound",
                "the server could not find the metric nope for pods".into()
            )
        );
        assert_eq!(
            status_of(ApiError::ObjectMetricNotFound {
                resource: "pods".into(),
                name: "p-1".into(),
                metric: "m".into()
            }),
            (
                404,
                "NotFound",
                "the server could not find the metric m for pods p-1".into()
            )
        );
        assert_eq!(
            status_of(ApiError::bad_selector(
                "labelSelector",
                "found ',', expected: identifier"
            )),
            (
                400,
                "BadRequest",
                "unable to parse labelSelector: found ',', expected: identifier".into()
            )
        );
        assert_eq!(
            status_of(ApiError::Backend(SourceError::Timeout(
                std::time::Duration::from_secs(5)
            ))),
            (
                504,
                "Timeout",
                "the request timed out fetching metrics".into()
            )
        );
        assert_eq!(
            status_of(ApiError::Backend(SourceError::Unreachable {
                url: "http://127.0.0.1:9/".into(),
                cause: "Connection refused (os error 111)".into()
            })),
            (
                500,
                "InternalError",
                "Internal error occurred: unable to fetch metrics: cannot reach the metrics backend at \
                 http://127.0.0.1:9/: Connection refused (os error 111)"
                    .into()
            )
        );
        assert_eq!(
            status_of(ApiError::InventoryUnavailable),
            (
                500,
                "InternalError",
                "Internal error occurred: unable to list matching resources".into()
            )
        );
        assert_eq!(status_of(ApiError::MethodNotAllowed).0, 405);
        assert_eq!(
            status_of(AuthError::Unauthenticated.into()),
            (401, "Unauthorized", "Unauthorized".into())
        );
        assert_eq!(
            status_of(AuthError::ReviewFailed("Connection refused (os error 111)".into()).into()),
            (
                500,
                "InternalError",
                "Internal error occurred: Connection refused (os error 111)".into()
            )
        );
        let (code, status) = ApiError::TooManyRequests.to_status();
        assert_eq!(
            (code.as_u16(), status.reason, status.message.as_str()),
            (
                429,
                "TooManyRequests",
                "Too many requests, please try again later."
            )
        );
        assert_eq!(status.details.unwrap().retry_after_seconds, Some(1));
    }

    #[test]
    fn forbidden_names_the_resource_in_details_and_never_carries_data() {
        let attributes = Attributes::of(
            &axum::http::Method::GET,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/%2A/m",
            None,
        );
        let error = ApiError::from(AuthError::Forbidden {
            message: attributes.forbidden_message("eve", ""),
            attributes: Box::new(attributes),
        });
        let (code, status) = error.to_status();
        assert_eq!(code.as_u16(), 403);
        assert_eq!(status.reason, "Forbidden");
        assert_eq!(
            status.details,
            Some(StatusDetails {
                name: Some("*".into()),
                group: Some("custom.metrics.k8s.io".into()),
                kind: Some("pods".into()),
                retry_after_seconds: None,
            })
        );
    }

    #[test]
    fn data_path_errors_are_never_503() {
        for error in [
            ApiError::Backend(SourceError::UnexpectedResult("range vector")),
            ApiError::Backend(SourceError::Timeout(std::time::Duration::from_secs(1))),
            ApiError::InventoryUnavailable,
        ] {
            assert_ne!(error.to_status().0, StatusCode::SERVICE_UNAVAILABLE);
        }
    }
}
