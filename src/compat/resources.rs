//! A Prometheus Adapter rule's `resources`: which series label names which Kubernetes resource, through
//! `overrides` and the `<<.Group>>`/`<<.Resource>>` template, in both directions
//! (the Prometheus Adapter's docs/config.md and its naming and resource code). No I/O: resources are normalised against a
//! built-in table of the core kinds, to which a cluster's discovery adds (`learn`) when there is a cluster.

use std::collections::BTreeMap;

use regex::Regex;

use super::template::{Data, Template, TemplateError, Value};

/// A Kubernetes resource as the metrics APIs name it: plural, with its group (`""` for the core group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// The API group.
    pub group: String,
    /// The plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// `pods`, or `deployments.apps`: the form of discovery documents and request paths.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// A resource the adapter knows: its group, plural and singular names, and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownResource {
    /// The API group.
    pub group: &'static str,
    /// The plural name.
    pub plural: &'static str,
    /// The singular name (the kind, lower-cased).
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// The kind, for `describedObject.kind`.
    pub kind: &'static str,
    /// The served version, for `describedObject.apiVersion`.
    pub version: &'static str,
}

impl KnownResource {
    /// `v1`, `apps/v1`: the `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

macro_rules! known {
    ($($group:literal $version:literal $kind:literal $plural:literal $singular:literal $namespaced:literal),* $(,)?) => {
        &[$(KnownResource {
            group: $group, version: $version, kind: $kind, plural: $plural, singular: $singular, namespaced: $namespaced,
        }),*]
    };
}

/// The core kinds, as the RESTMapper of a plain cluster knows them.
pub const BUILT_IN: &[KnownResource] = known![
    "" "v1" "Pod" "pods" "pod" true,
    "" "v1" "Namespace" "namespaces" "namespace" false,
    "" "v1" "Node" "nodes" "node" false,
    "" "v1" "Service" "services" "service" true,
    "" "v1" "Endpoints" "endpoints" "endpoints" true,
    "" "v1" "PersistentVolume" "persistentvolumes" "persistentvolume" false,
    "" "v1" "PersistentVolumeClaim" "persistentvolumeclaims" "persistentvolumeclaim" true,
    "" "v1" "ReplicationController" "replicationcontrollers" "replicationcontroller" true,
    "" "v1" "ConfigMap" "configmaps" "configmap" true,
    "apps" "v1" "Deployment" "deployments" "deployment" true,
    "apps" "v1" "StatefulSet" "statefulsets" "statefulset" true,
    "apps" "v1" "DaemonSet" "daemonsets" "daemonset" true,
    "apps" "v1" "ReplicaSet" "replicasets" "replicaset" true,
    "batch" "v1" "Job" "jobs" "job" true,
    "batch" "v1" "CronJob" "cronjobs" "cronjob" true,
    "autoscaling" "v2" "HorizontalPodAutoscaler" "horizontalpodautoscalers" "horizontalpodautoscaler" true,
    "networking.k8s.io" "v1" "Ingress" "ingresses" "ingress" true,
    "policy" "v1" "PodDisruptionBudget" "poddisruptionbudgets" "poddisruptionbudget" true,
];

/// The group-resource of a request path segment: `pods`, `pod`, `deployments.apps`, `deployment.apps`.
pub fn parse_group_resource(segment: &str) -> GroupResource {
    let (resource, group) = segment.split_once('.').unwrap_or((segment, ""));
    match resolve(group, resource) {
        Some(known) => GroupResource {
            group: known.group.to_owned(),
            resource: known.plural.to_owned(),
        },
        None => GroupResource {
            group: group.to_owned(),
            resource: resource.to_ascii_lowercase(),
        },
    }
}

/// Resources a cluster's discovery taught the process (custom resources, aggregated APIs), after the built-in
/// ones; the table only grows, by at most the number of resources the cluster has.
static LEARNED: std::sync::RwLock<Vec<&'static KnownResource>> = std::sync::RwLock::new(Vec::new());

/// A resource as a cluster's discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredResource {
    /// The API group.
    pub group: String,
    /// The preferred version.
    pub version: String,
    /// The kind.
    pub kind: String,
    /// The plural name.
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

/// Teaches the table the resources a cluster serves; returns how many were new.
pub fn learn(resources: impl IntoIterator<Item = DiscoveredResource>) -> usize {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut learned = LEARNED.write().unwrap_or_else(|e| e.into_inner());
    let mut added = 0;
    for r in resources {
        let known = |k: &KnownResource| k.group == r.group && k.plural == r.plural;
        if BUILT_IN.iter().any(known) || learned.iter().any(|k| known(k)) {
            continue;
        }
        let singular = r.kind.to_ascii_lowercase();
        learned.push(Box::leak(Box::new(KnownResource {
            group: leak(r.group),
            version: leak(r.version),
            kind: leak(r.kind),
            plural: leak(r.plural),
            singular: leak(singular),
            namespaced: r.namespaced,
        })));
        added += 1;
    }
    added
}

/// The known resource `name` (plural or singular, any case) names in `group`; with an empty group, the
/// first kind of that name in any group (as `kubectl` resolves `deployment`). Built-in kinds first, then
/// the ones a cluster taught (`learn`).
pub fn resolve(group: &str, name: &str) -> Option<&'static KnownResource> {
    let name = name.to_ascii_lowercase();
    let matches = |k: &KnownResource| {
        (group.is_empty() || k.group == group) && (k.plural == name || k.singular == name)
    };
    BUILT_IN.iter().find(|k| matches(k)).or_else(|| {
        LEARNED
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .find(|k| matches(k))
    })
}

/// Why a `resources` section is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcesError {
    /// The template does not parse or render.
    #[error("resources.template: {0}")]
    Template(#[from] TemplateError),
    /// An override's key is not a Prometheus label name.
    #[error("resources.overrides: {0:?} is not a Prometheus label name")]
    LabelName(String),
    /// The template has no `<<.Resource>>`, so no label can be mapped to a resource.
    #[error("resources.template {0:?} must contain <<.Resource>>")]
    NoResource(String),
    /// The rendered template is not a usable regex.
    #[error("resources.template {template:?} gives an invalid regular expression: {message}")]
    Regex {
        /// The template.
        template: String,
        /// The compiler's message.
        message: String,
    },
}

/// The label ↔ resource mapping of one rule.
#[derive(Debug, Clone)]
pub struct ResourceMapping {
    overrides: BTreeMap<String, GroupResource>,
    template: Option<(String, Template, Regex)>,
    /// For external rules: whether the request's namespace becomes a matcher.
    pub namespaced: bool,
}

impl ResourceMapping {
    /// From `overrides` (label → `(group, resource)` as written), an optional `template`, and `namespaced`.
    /// Override resources are normalised to plural names when known; unknown ones are kept as written.
    pub fn new(
        overrides: &BTreeMap<String, (String, String)>,
        template: Option<&str>,
        namespaced: bool,
    ) -> Result<Self, ResourcesError> {
        if let Some(label) = overrides.keys().find(|l| !crate::promql::is_label_name(l)) {
            return Err(ResourcesError::LabelName(label.clone()));
        }
        let overrides = overrides
            .iter()
            .map(|(label, (group, resource))| {
                let normalised = match resolve(group, resource) {
                    Some(known) => GroupResource {
                        group: known.group.to_owned(),
                        resource: known.plural.to_owned(),
                    },
                    None => GroupResource {
                        group: group.clone(),
                        resource: resource.to_ascii_lowercase(),
                    },
                };
                (label.clone(), normalised)
            })
            .collect();
        let template = match template {
            None => None,
            Some(text) => {
                if !text.contains(".Resource") {
                    return Err(ResourcesError::NoResource(text.to_owned()));
                }
                let parsed: Template = text.parse()?;
                let pattern = parsed.render(&Data::from([
                    ("Group", Value::Str("(?P<group>.+?)".into())),
                    ("Resource", Value::Str("(?P<resource>.+?)".into())),
                ]))?;
                let regex =
                    Regex::new(&format!("^{pattern}$")).map_err(|e| ResourcesError::Regex {
                        template: text.to_owned(),
                        message: e.to_string(),
                    })?;
                Some((text.to_owned(), parsed, regex))
            }
        };
        Ok(Self {
            overrides,
            template,
            namespaced,
        })
    }

    /// The resource a series label names, if any: overrides first, then the template; a template match must
    /// name a known resource.
    pub fn resource_for_label(&self, label: &str) -> Option<GroupResource> {
        if let Some(resource) = self.overrides.get(label) {
            return Some(resource.clone());
        }
        let (_, _, regex) = self.template.as_ref()?;
        let captures = regex.captures(label)?;
        let group = captures.name("group").map_or("", |m| m.as_str());
        let known = resolve(group, captures.name("resource")?.as_str())?;
        Some(GroupResource {
            group: known.group.to_owned(),
            resource: known.plural.to_owned(),
        })
    }

    /// The label that holds names of `resource`, if any: overrides first, then the template rendered with the
    /// group's `.` and `-` as `_` and the singular resource.
    pub fn label_for_resource(&self, resource: &GroupResource) -> Option<String> {
        if let Some((label, _)) = self.overrides.iter().find(|(_, r)| *r == resource) {
            return Some(label.clone());
        }
        let (_, template, _) = self.template.as_ref()?;
        let singular = resolve(&resource.group, &resource.resource)
            .map_or(resource.resource.as_str(), |k| k.singular);
        template
            .render(&Data::from([
                ("Group", Value::Str(resource.group.replace(['.', '-'], "_"))),
                ("Resource", Value::Str(singular.to_owned())),
            ]))
            .ok()
            .filter(|label| crate::promql::is_label_name(label))
    }

    /// What the mapping says, for `check-config`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .overrides
            .iter()
            .map(|(label, r)| format!("{label} -> {}", r.qualified()))
            .collect();
        if let Some((text, _, _)) = &self.template {
            parts.push(format!("template {text:?}"));
        }
        if parts.is_empty() {
            parts.push("no resource labels".into());
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gr(group: &str, resource: &str) -> GroupResource {
        GroupResource {
            group: group.into(),
            resource: resource.into(),
        }
    }

    fn overrides(pairs: &[(&str, &str, &str)]) -> BTreeMap<String, (String, String)> {
        pairs
            .iter()
            .map(|(label, group, resource)| {
                (label.to_string(), (group.to_string(), resource.to_string()))
            })
            .collect()
    }

    #[test]
    fn overrides_map_labels_to_plural_resources_both_ways() {
        let mapping = ResourceMapping::new(
            &overrides(&[("namespace", "", "namespace"), ("pod", "", "pod")]),
            None,
            true,
        )
        .unwrap();
        assert_eq!(mapping.resource_for_label("pod"), Some(gr("", "pods")));
        assert_eq!(mapping.resource_for_label("node"), None);
        assert_eq!(
            mapping.label_for_resource(&gr("", "namespaces")).as_deref(),
            Some("namespace")
        );
    }

    #[test]
    fn the_resource_template_maps_every_known_kind_by_its_singular_name() {
        let mapping = ResourceMapping::new(&BTreeMap::new(), Some("<<.Resource>>"), true).unwrap();
        assert_eq!(mapping.resource_for_label("pod"), Some(gr("", "pods")));
        assert_eq!(
            mapping.resource_for_label("deployment"),
            Some(gr("apps", "deployments"))
        );
        assert_eq!(
            mapping.resource_for_label("container"),
            None,
            "not a resource"
        );
        assert_eq!(
            mapping
                .label_for_resource(&gr("apps", "deployments"))
                .as_deref(),
            Some("deployment")
        );
    }

    #[test]
    fn a_prefixed_template_with_the_group_works_in_both_directions() {
        let mapping = ResourceMapping::new(
            &BTreeMap::new(),
            Some("kube_<<.Group>>_<<.Resource>>"),
            true,
        )
        .unwrap();
        assert_eq!(
            mapping
                .label_for_resource(&gr("apps", "deployments"))
                .as_deref(),
            Some("kube_apps_deployment")
        );
        assert_eq!(
            mapping.resource_for_label("kube_apps_deployment"),
            Some(gr("apps", "deployments"))
        );
        assert_eq!(
            mapping
                .label_for_resource(&gr("networking.k8s.io", "ingresses"))
                .as_deref(),
            Some("kube_networking_k8s_io_ingress")
        );
    }

    #[test]
    fn overrides_win_over_the_template() {
        let mapping = ResourceMapping::new(
            &overrides(&[("kubernetes_pod_name", "", "pod")]),
            Some("<<.Resource>>"),
            true,
        )
        .unwrap();
        assert_eq!(
            mapping.label_for_resource(&gr("", "pods")).as_deref(),
            Some("kubernetes_pod_name")
        );
        assert_eq!(
            mapping.resource_for_label("kubernetes_pod_name"),
            Some(gr("", "pods"))
        );
        assert_eq!(mapping.resource_for_label("pod"), Some(gr("", "pods")));
    }

    #[test]
    fn request_segments_normalise_to_plural_group_resources() {
        assert_eq!(parse_group_resource("pods"), gr("", "pods"));
        assert_eq!(parse_group_resource("pod"), gr("", "pods"));
        assert_eq!(
            parse_group_resource("deployments.apps"),
            gr("apps", "deployments")
        );
        assert_eq!(
            parse_group_resource("deployment.apps"),
            gr("apps", "deployments")
        );
        assert_eq!(
            parse_group_resource("ingresses.networking.k8s.io"),
            gr("networking.k8s.io", "ingresses")
        );
        assert_eq!(
            parse_group_resource("widgets.example.com"),
            gr("example.com", "widgets")
        );
        assert_eq!(
            resolve("apps", "deployments").unwrap().api_version(),
            "apps/v1"
        );
        assert_eq!(resolve("", "pods").unwrap().api_version(), "v1");
    }

    #[test]
    fn a_template_without_the_resource_is_refused() {
        assert_eq!(
            ResourceMapping::new(&BTreeMap::new(), Some("<<.Group>>"), true).unwrap_err(),
            ResourcesError::NoResource("<<.Group>>".into())
        );
    }

    #[test]
    fn unknown_override_resources_are_kept_for_the_cluster_to_resolve() {
        let mapping = ResourceMapping::new(
            &overrides(&[("route", "route.openshift.io", "Routes")]),
            None,
            true,
        )
        .unwrap();
        assert_eq!(
            mapping.resource_for_label("route"),
            Some(gr("route.openshift.io", "routes"))
        );
        assert_eq!(mapping.describe(), "route -> routes.route.openshift.io");
    }
}
