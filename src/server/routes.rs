//! Request paths of the metrics APIs, percent-decoded segment by segment and classified as kube-apiserver's
//! aggregator forwards them. Pure: no I/O.

use percent_encoding::percent_decode_str;

use crate::apis::{CUSTOM_GROUP, CustomVersion, EXTERNAL_GROUP, RESOURCE_GROUP};
use crate::error::ApiError;
use crate::names;

/// Which objects a custom-metrics request describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectName {
    /// `*`: every object matching `labelSelector`.
    All,
    /// One named object.
    One(String),
}

/// A custom-metrics value request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRequest {
    /// The API version, which decides the response shape.
    pub version: CustomVersion,
    /// The namespace, for namespaced resources.
    pub namespace: Option<String>,
    /// The group-resource (`pods`, `deployments.apps`, `namespaces`, …).
    pub resource: String,
    /// The described object(s).
    pub name: ObjectName,
    /// The metric.
    pub metric: String,
}

impl CustomRequest {
    /// The 404 for a named object of this request that has no value.
    pub fn object_not_found(&self, name: &str) -> ApiError {
        ApiError::ObjectMetricNotFound {
            resource: self.resource.clone(),
            name: name.to_owned(),
            metric: self.metric.clone(),
        }
    }
}

/// A routed API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(&'static str),
    /// `/apis/custom.metrics.k8s.io/<version>`.
    CustomDiscovery(CustomVersion),
    /// `/apis/external.metrics.k8s.io/v1beta1`.
    ExternalDiscovery,
    /// A custom-metrics value request.
    Custom(CustomRequest),
    /// `/apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>`.
    External {
        /// The namespace.
        namespace: String,
        /// The metric.
        metric: String,
    },
    /// `/apis/metrics.k8s.io/v1beta1`.
    ResourceDiscovery,
    /// `…/pods`, `…/namespaces/<ns>/pods`, `…/namespaces/<ns>/pods/<name>`.
    PodMetrics {
        /// The namespace; `None` for all namespaces.
        namespace: Option<String>,
        /// One pod.
        name: Option<String>,
    },
    /// `…/nodes`, `…/nodes/<name>`.
    NodeMetrics {
        /// One node.
        name: Option<String>,
    },
}

impl Route {
    /// A short name for logs and self-metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Groups
            | Route::Group(_)
            | Route::CustomDiscovery(_)
            | Route::ExternalDiscovery => "discovery",
            Route::Custom(_) => "custom_metric",
            Route::External { .. } => "external_metric",
            Route::ResourceDiscovery => "discovery",
            Route::PodMetrics { .. } | Route::NodeMetrics { .. } => "resource_metrics",
        }
    }
}

fn namespace(segment: &str, wildcard_allowed: bool) -> Result<String, ApiError> {
    if (wildcard_allowed && segment == "*") || names::is_dns_label(segment) {
        Ok(segment.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "{segment:?} is not a valid namespace name"
        )))
    }
}

/// An object's name from the path: `*`, or an RFC 1123 subdomain. Anything else names no object that can
/// exist, and must never reach a query.
fn object_name(segment: &str) -> Result<ObjectName, ApiError> {
    if segment == "*" {
        Ok(ObjectName::All)
    } else {
        one_name(segment).map(ObjectName::One)
    }
}

fn one_name(segment: &str) -> Result<String, ApiError> {
    if names::is_dns_subdomain(segment) {
        Ok(segment.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "{segment:?} is not a valid object name: a lower-case RFC 1123 subdomain (alphanumerics, '-' and \
             '.', at most 253 characters) is expected"
        )))
    }
}

/// Splits the raw path on `/` first and then percent-decodes each segment, so that `%2F` can never create a
/// segment and `%2A` is `*`.
fn segments(raw_path: &str) -> Result<Vec<String>, ApiError> {
    let trimmed = raw_path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(raw_path);
    let rest = trimmed.strip_prefix('/').ok_or(ApiError::PathNotFound)?;
    rest.split('/')
        .map(|raw| {
            let decoded = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| ApiError::BadRequest("the request path is not valid UTF-8".into()))?;
            if decoded.is_empty() || decoded.contains('/') || decoded.chars().any(char::is_control)
            {
                return Err(ApiError::PathNotFound);
            }
            Ok(decoded.into_owned())
        })
        .collect()
}

/// Routes a raw (still percent-encoded) request path under `/apis`.
pub fn route(raw_path: &str) -> Result<Route, ApiError> {
    let segments = segments(raw_path)?;
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["apis"] => Ok(Route::Groups),
        ["apis", CUSTOM_GROUP] => Ok(Route::Group(CUSTOM_GROUP)),
        ["apis", EXTERNAL_GROUP] => Ok(Route::Group(EXTERNAL_GROUP)),
        ["apis", RESOURCE_GROUP] => Ok(Route::Group(RESOURCE_GROUP)),
        ["apis", RESOURCE_GROUP, "v1beta1", rest @ ..] => resource(rest),
        ["apis", CUSTOM_GROUP, version, rest @ ..] => {
            let version = CustomVersion::from_segment(version).ok_or(ApiError::PathNotFound)?;
            custom(version, rest)
        }
        ["apis", EXTERNAL_GROUP, "v1beta1"] => Ok(Route::ExternalDiscovery),
        ["apis", EXTERNAL_GROUP, "v1beta1", "namespaces", ns, metric] => Ok(Route::External {
            namespace: namespace(ns, false)?,
            metric: (*metric).to_owned(),
        }),
        _ => Err(ApiError::PathNotFound),
    }
}

fn resource(rest: &[&str]) -> Result<Route, ApiError> {
    let pods = |namespace: Option<&str>, name: Option<&str>| {
        Ok(Route::PodMetrics {
            namespace: namespace.map(namespace_name).transpose()?,
            name: name.map(one_name).transpose()?,
        })
    };
    match rest {
        [] => Ok(Route::ResourceDiscovery),
        ["pods"] => pods(None, None),
        ["namespaces", ns, "pods"] => pods(Some(ns), None),
        ["namespaces", ns, "pods", name] => pods(Some(ns), Some(name)),
        ["nodes"] => Ok(Route::NodeMetrics { name: None }),
        ["nodes", name] => Ok(Route::NodeMetrics {
            name: Some(one_name(name)?),
        }),
        _ => Err(ApiError::PathNotFound),
    }
}

fn namespace_name(segment: &str) -> Result<String, ApiError> {
    namespace(segment, false)
}

fn custom(version: CustomVersion, rest: &[&str]) -> Result<Route, ApiError> {
    let request = |namespace: Option<String>, resource: &str, name: ObjectName, metric: &str| {
        Ok(Route::Custom(CustomRequest {
            version,
            namespace,
            resource: resource.to_owned(),
            name,
            metric: metric.to_owned(),
        }))
    };
    match rest {
        [] => Ok(Route::CustomDiscovery(version)),
        // The Namespace object itself: `namespaces/<ns>/metrics/<m>`, `*` for all namespaces.
        ["namespaces", ns, "metrics", metric] => {
            let ns = namespace(ns, true)?;
            request(None, "namespaces", object_name(&ns)?, metric)
        }
        ["namespaces", ns, resource, name, metric] => request(
            Some(namespace(ns, false)?),
            resource,
            object_name(name)?,
            metric,
        ),
        // Cluster-scoped objects: `<resource>/<name>/<m>`.
        [resource, name, metric] => request(None, resource, object_name(name)?, metric),
        _ => Err(ApiError::PathNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom_request(path: &str) -> CustomRequest {
        match route(path) {
            Ok(Route::Custom(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";

    #[test]
    fn discovery_paths() {
        assert_eq!(route("/apis"), Ok(Route::Groups));
        assert_eq!(route("/apis/"), Ok(Route::Groups));
        assert_eq!(
            route("/apis/custom.metrics.k8s.io"),
            Ok(Route::Group(CUSTOM_GROUP))
        );
        assert_eq!(
            route(V2),
            Ok(Route::CustomDiscovery(CustomVersion::V1Beta2))
        );
        assert_eq!(
            route("/apis/custom.metrics.k8s.io/v1beta1"),
            Ok(Route::CustomDiscovery(CustomVersion::V1Beta1))
        );
        assert_eq!(
            route("/apis/external.metrics.k8s.io/v1beta1"),
            Ok(Route::ExternalDiscovery)
        );
    }

    #[test]
    fn wildcard_pods_arrive_encoded_or_literal() {
        for star in ["%2A", "%2a", "*"] {
            let r = custom_request(&format!(
                "{V2}/namespaces/sidecar/pods/{star}/container_network_receive_packets_per_second"
            ));
            assert_eq!(r.namespace.as_deref(), Some("sidecar"));
            assert_eq!(r.resource, "pods");
            assert_eq!(r.name, ObjectName::All);
            assert_eq!(r.metric, "container_network_receive_packets_per_second");
        }
    }

    #[test]
    fn every_custom_path_shape_is_recognised() {
        let named = custom_request(&format!(
            "{V2}/namespaces/sidecar/deployments.apps/security-server-sidecar-secondary/m"
        ));
        assert_eq!(named.resource, "deployments.apps");
        assert_eq!(
            named.name,
            ObjectName::One("security-server-sidecar-secondary".into())
        );

        let ns = custom_request(&format!("{V2}/namespaces/sidecar/metrics/m"));
        assert_eq!(
            (ns.namespace, ns.resource.as_str(), ns.name),
            (None, "namespaces", ObjectName::One("sidecar".into()))
        );

        let all_ns = custom_request(&format!("{V2}/namespaces/%2A/metrics/m"));
        assert_eq!(all_ns.name, ObjectName::All);

        let root = custom_request(&format!("{V2}/nodes/node-1/m"));
        assert_eq!((root.namespace, root.resource.as_str()), (None, "nodes"));
    }

    #[test]
    fn external_path_and_its_only_shape() {
        assert_eq!(
            route(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/xroad_messages_per_second"
            ),
            Ok(Route::External {
                namespace: "sidecar".into(),
                metric: "xroad_messages_per_second".into()
            })
        );
        for path in [
            "/apis/external.metrics.k8s.io/v1beta1/m",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/a/b",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/a%2Fb",
            "/apis/external.metrics.k8s.io/v1beta2",
        ] {
            assert_eq!(route(path), Err(ApiError::PathNotFound), "{path}");
        }
    }

    #[test]
    fn resource_metrics_paths() {
        let base = "/apis/metrics.k8s.io/v1beta1";
        assert_eq!(route(base), Ok(Route::ResourceDiscovery));
        assert_eq!(
            route("/apis/metrics.k8s.io"),
            Ok(Route::Group(RESOURCE_GROUP))
        );
        assert_eq!(
            route(&format!("{base}/namespaces/sidecar/pods")),
            Ok(Route::PodMetrics {
                namespace: Some("sidecar".into()),
                name: None
            })
        );
        assert_eq!(
            route(&format!("{base}/namespaces/sidecar/pods/p-0")),
            Ok(Route::PodMetrics {
                namespace: Some("sidecar".into()),
                name: Some("p-0".into())
            })
        );
        assert_eq!(
            route(&format!("{base}/pods")),
            Ok(Route::PodMetrics {
                namespace: None,
                name: None
            })
        );
        assert_eq!(
            route(&format!(
                "{base}/nodes/ip-10-0-1-2.eu-north-1.compute.internal"
            )),
            Ok(Route::NodeMetrics {
                name: Some("ip-10-0-1-2.eu-north-1.compute.internal".into())
            })
        );
        assert!(matches!(
            route(&format!("{base}/namespaces/%22/pods")),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(
            route(&format!("{base}/services")),
            Err(ApiError::PathNotFound)
        );
    }

    #[test]
    fn wrong_shapes_are_not_found() {
        for path in [
            "/apis/custom.metrics.k8s.io/v1",
            "/apis/custom.metrics.k8s.io/v1beta2/nodes/foo",
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/bar",
            "/apis/custom.metrics.k8s.io/v1beta2//pods/x/m",
            "/apis/custom.metrics.k8s.io/v1beta2/pods/a%2Fb/c/m",
            "/apis/other.group",
            "/api/v1/pods",
        ] {
            assert!(route(path).is_err(), "{path}");
        }
    }

    #[test]
    fn hostile_segments_are_refused_cleanly() {
        assert!(matches!(
            route(&format!("{V2}/namespaces/%22%7D/pods/%2A/m")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            route(&format!("{V2}/namespaces/%FF/pods/%2A/m")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            route(&format!("{V2}/namespaces/../pods/%2A/m")),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(
            route(&format!("{V2}/pods/a%0Ab/m")),
            Err(ApiError::PathNotFound)
        );
        assert!(matches!(
            route(&format!("{V2}/namespaces/%2A/pods/%2A/m")),
            Err(ApiError::BadRequest(_))
        ));
    }
}
