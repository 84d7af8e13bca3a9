//! The authorization attributes of a request, parsed as kube-apiserver's RequestInfo parses them
//! (k8s.io/apiserver's delegated authorization), and the `Forbidden` message built from them. Pure.

use axum::http::Method;
use percent_encoding::percent_decode_str;

/// What a request asks to do, in the terms RBAC rules use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// A request under `/apis/<group>/<version>/…` with at least one segment after the version.
    Resource(ResourceAttributes),
    /// Everything else: discovery, `/version`, `/metrics`, `/openapi/…`.
    NonResource {
        /// The verb (`get` for GET and HEAD).
        verb: String,
        /// The request path as received.
        path: String,
    },
}

/// The resource attributes of a SubjectAccessReview.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceAttributes {
    /// `get`, `list`, `watch`, `create`, …
    pub verb: String,
    /// The API group.
    pub group: String,
    /// The API version.
    pub version: String,
    /// `pods`, `deployments.apps`, `metrics`, or the external metric's name.
    pub resource: String,
    /// The custom metric's name, for `<resource>/<name>/<metric>` paths.
    pub subresource: String,
    /// The object's name (`*` for a wildcard), empty for a collection.
    pub name: String,
    /// The namespace, empty for cluster-scoped requests.
    pub namespace: String,
}

impl Attributes {
    /// The attributes of `method` on the raw (percent-encoded) `path` with `query`.
    ///
    /// Follows kubernetes/apiserver `pkg/endpoints/request/requestinfo.go`: a path is a resource request
    /// when it has a group, a version and at least one more segment; `namespaces/<ns>/<resource>/…` sets the
    /// namespace; without a name a GET is `list` (or `watch` with `watch=true`).
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> Self {
        let non_resource = || Attributes::NonResource {
            verb: http_verb(method).to_owned(),
            path: path.to_owned(),
        };
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let ["apis", group, version, rest @ ..] = segments.as_slice() else {
            return non_resource();
        };
        if rest.is_empty() {
            return non_resource();
        }
        let (namespace, parts) = match rest {
            ["namespaces", ns, parts @ ..] if !parts.is_empty() => (*ns, parts),
            // `namespaces/<ns>` alone is the Namespace object itself: resource `namespaces`, name `<ns>`.
            ["namespaces", ns] => (*ns, rest),
            _ => ("", rest),
        };
        let part = |i: usize| parts.get(i).copied().unwrap_or_default();
        let (resource, name, subresource) = (part(0), part(1), part(2));
        let watch = query.is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
        });
        let verb = match (http_verb(method), name.is_empty()) {
            ("get", true) if watch => "watch",
            ("get", true) => "list",
            ("get", false) if watch => "watch",
            ("delete", true) => "deletecollection",
            (verb, _) => verb,
        };
        Attributes::Resource(ResourceAttributes {
            verb: verb.to_owned(),
            group: (*group).to_owned(),
            version: (*version).to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    /// The `Forbidden` message for `user`, worded as the generic apiserver words it
    /// (`responsewriters.forbiddenMessage` wrapped by `errors.NewForbidden`), plus the authorizer's reason.
    pub fn forbidden_message(&self, user: &str, reason: &str) -> String {
        let detail = match self {
            Attributes::NonResource { verb, path } => {
                format!("User {user:?} cannot {verb} path {path:?}")
            }
            Attributes::Resource(r) => {
                let resource = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let scope = if r.namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace {:?}", r.namespace)
                };
                format!(
                    "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                    r.verb, r.group
                )
            }
        };
        let detail = if reason.is_empty() {
            detail
        } else {
            format!("{detail}: {reason}")
        };
        match self {
            Attributes::NonResource { .. } => format!("forbidden: {detail}"),
            Attributes::Resource(r) if r.name.is_empty() => {
                format!("{}.{} is forbidden: {detail}", r.resource, r.group)
            }
            Attributes::Resource(r) => {
                format!(
                    "{}.{} {:?} is forbidden: {detail}",
                    r.resource, r.group, r.name
                )
            }
        }
    }
}

fn http_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourceAttributes {
        match Attributes::of(&Method::GET, path, None) {
            Attributes::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn every_path_in_the_contract_table_gets_its_attributes() {
        let pods = resource(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/%2A/xroad_messages_per_second",
        );
        assert_eq!(
            pods,
            ResourceAttributes {
                verb: "get".into(),
                group: "custom.metrics.k8s.io".into(),
                version: "v1beta2".into(),
                resource: "pods".into(),
                subresource: "xroad_messages_per_second".into(),
                name: "*".into(),
                namespace: "sidecar".into(),
            }
        );
        let deployment = resource(
            "/apis/custom.metrics.k8s.io/v1beta1/namespaces/sidecar/deployments.apps/secondary/m",
        );
        assert_eq!(
            (
                deployment.resource.as_str(),
                deployment.name.as_str(),
                deployment.version.as_str()
            ),
            ("deployments.apps", "secondary", "v1beta1")
        );
        let namespace =
            resource("/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/metrics/m");
        assert_eq!(
            (
                namespace.resource.as_str(),
                namespace.name.as_str(),
                namespace.subresource.as_str()
            ),
            ("metrics", "m", "")
        );
        let nodes = resource("/apis/custom.metrics.k8s.io/v1beta2/nodes/*/m");
        assert_eq!(
            (
                nodes.resource.as_str(),
                nodes.name.as_str(),
                nodes.namespace.as_str()
            ),
            ("nodes", "*", "")
        );
        let external = resource(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/xroad_messages_per_second",
        );
        assert_eq!(
            (
                external.verb.as_str(),
                external.resource.as_str(),
                external.name.as_str()
            ),
            ("list", "xroad_messages_per_second", "")
        );
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource_requests() {
        for path in [
            "/apis",
            "/apis/custom.metrics.k8s.io",
            "/apis/custom.metrics.k8s.io/v1beta2",
            "/apis/custom.metrics.k8s.io/v1beta2/",
            "/version",
            "/metrics",
            "/openapi/v2",
        ] {
            assert_eq!(
                Attributes::of(&Method::GET, path, None),
                Attributes::NonResource {
                    verb: "get".into(),
                    path: path.into()
                }
            );
        }
    }

    #[test]
    fn verbs_follow_the_method_the_name_and_watch() {
        let verb = |method: Method, path: &str, query: Option<&str>| match Attributes::of(
            &method, path, query,
        ) {
            Attributes::Resource(r) => r.verb,
            other => panic!("{other:?}"),
        };
        let external = "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m";
        assert_eq!(verb(Method::HEAD, external, None), "list");
        assert_eq!(verb(Method::GET, external, Some("watch=true")), "watch");
        assert_eq!(verb(Method::POST, external, None), "create");
        assert_eq!(verb(Method::DELETE, external, None), "deletecollection");
        assert_eq!(
            verb(
                Method::DELETE,
                "/apis/custom.metrics.k8s.io/v1beta2/nodes/n/m",
                None
            ),
            "delete"
        );
    }

    #[test]
    fn forbidden_messages_read_as_the_generic_apiserver_writes_them() {
        let pods = Attributes::of(
            &Method::GET,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/%2A/m",
            None,
        );
        assert_eq!(
            pods.forbidden_message("alice", ""),
            "pods.custom.metrics.k8s.io \"*\" is forbidden: User \"alice\" cannot get resource \"pods/m\" \
             in API group \"custom.metrics.k8s.io\" in the namespace \"sidecar\""
        );
        let external = Attributes::of(
            &Method::GET,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/m",
            None,
        );
        assert_eq!(
            external.forbidden_message("bob", "no RBAC policy matched"),
            "m.external.metrics.k8s.io is forbidden: User \"bob\" cannot list resource \"m\" in API group \
             \"external.metrics.k8s.io\" in the namespace \"sidecar\": no RBAC policy matched"
        );
        let nodes = Attributes::of(
            &Method::GET,
            "/apis/custom.metrics.k8s.io/v1beta2/nodes/n1/m",
            None,
        );
        assert!(
            nodes
                .forbidden_message("c", "")
                .ends_with("at the cluster scope")
        );
        assert_eq!(
            Attributes::of(&Method::GET, "/metrics", None).forbidden_message("carol", ""),
            "forbidden: User \"carol\" cannot get path \"/metrics\""
        );
    }
}
