//! A Prometheus Adapter rule's `resources`: which series label names which Kubernetes resource, through
//! `overrides` and the `<<.Group>>`/`<<.Resource>>` template, in both directions
//! (the Prometheus Adapter's docs/config.md and its naming and resource code). No I/O: resources are normalised
//! against a [`ResourceTable`]: the core kinds, and what a cluster's discovery taught it when there is a cluster.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

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
    /// A resource of the core group: `pods`, `nodes`, `namespaces`.
    pub fn core(resource: &str) -> Self {
        Self {
            group: String::new(),
            resource: resource.to_owned(),
        }
    }

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownResource {
    /// The API group.
    pub group: Cow<'static, str>,
    /// The plural name.
    pub plural: Cow<'static, str>,
    /// The singular name (the kind, lower-cased).
    pub singular: Cow<'static, str>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// The kind, for `describedObject.kind`.
    pub kind: Cow<'static, str>,
    /// The served version, for `describedObject.apiVersion`.
    pub version: Cow<'static, str>,
}

impl KnownResource {
    /// `v1`, `apps/v1`: the `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

macro_rules! known {
    ($($group:literal $version:literal $kind:literal $plural:literal $singular:literal $namespaced:literal),* $(,)?) => {
        &[$(KnownResource {
            group: Cow::Borrowed($group), version: Cow::Borrowed($version), kind: Cow::Borrowed($kind),
            plural: Cow::Borrowed($plural), singular: Cow::Borrowed($singular), namespaced: $namespaced,
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

/// The resources names resolve against, as the Prometheus Adapter's RESTMapper: the built-in kinds, then the
/// ones a cluster's discovery taught (custom resources, aggregated APIs). Owned by the rules that use it; it
/// only grows, by at most the number of resources the cluster serves.
#[derive(Debug, Default)]
pub struct ResourceTable {
    learned: RwLock<Vec<KnownResource>>,
}

impl ResourceTable {
    /// Teaches the table the resources a cluster serves; returns how many were new.
    pub fn learn(&self, resources: impl IntoIterator<Item = DiscoveredResource>) -> usize {
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        let mut added = 0;
        for r in resources {
            let known = |k: &KnownResource| k.group == r.group && k.plural == r.plural;
            if BUILT_IN.iter().any(known) || learned.iter().any(known) {
                continue;
            }
            learned.push(KnownResource {
                singular: r.kind.to_ascii_lowercase().into(),
                group: r.group.into(),
                version: r.version.into(),
                kind: r.kind.into(),
                plural: r.plural.into(),
                namespaced: r.namespaced,
            });
            added += 1;
        }
        added
    }

    /// The known resource `name` (plural or singular, any case) names in `group`; with an empty group, the
    /// first kind of that name in any group (as `kubectl` resolves `deployment`). Built-in kinds first.
    pub fn resolve(&self, group: &str, name: &str) -> Option<KnownResource> {
        let name = name.to_ascii_lowercase();
        let matches = |k: &&KnownResource| {
            (group.is_empty() || k.group == group) && (k.plural == name || k.singular == name)
        };
        BUILT_IN.iter().find(matches).cloned().or_else(|| {
            self.learned
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(matches)
                .cloned()
        })
    }

    /// `resource` in `group` normalised: plural, and in its group when known; lower-cased as written when not.
    pub fn normalise(&self, group: &str, resource: &str) -> GroupResource {
        match self.resolve(group, resource) {
            Some(known) => GroupResource {
                group: known.group.into_owned(),
                resource: known.plural.into_owned(),
            },
            None => GroupResource {
                group: group.to_owned(),
                resource: resource.to_ascii_lowercase(),
            },
        }
    }

    /// Whether objects of `resource` live in namespaces: namespaced when unknown (as the Prometheus Adapter
    /// assumes for everything but namespaces, nodes and persistent volumes).
    pub fn is_namespaced(&self, resource: &GroupResource) -> bool {
        self.resolve(&resource.group, &resource.resource)
            .is_none_or(|k| k.namespaced)
    }

    /// The group-resource of a request path segment: `pods`, `pod`, `deployments.apps`, `deployment.apps`.
    pub fn parse_group_resource(&self, segment: &str) -> GroupResource {
        let (resource, group) = segment.split_once('.').unwrap_or((segment, ""));
        self.normalise(group, resource)
    }
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
    /// What names resolve against.
    table: Arc<ResourceTable>,
    overrides: BTreeMap<String, GroupResource>,
    template: Option<(String, Template, Regex)>,
    /// For external rules: whether the request's namespace becomes a matcher.
    pub namespaced: bool,
}

impl ResourceMapping {
    /// From `overrides` (label → `(group, resource)` as written), an optional `template`, and `namespaced`.
    /// Override resources are normalised to plural names when `table` knows them; unknown ones are kept as
    /// written.
    pub fn new(
        overrides: &BTreeMap<String, (String, String)>,
        template: Option<&str>,
        namespaced: bool,
        table: Arc<ResourceTable>,
    ) -> Result<Self, ResourcesError> {
        if let Some(label) = overrides.keys().find(|l| !crate::promql::is_label_name(l)) {
            return Err(ResourcesError::LabelName(label.clone()));
        }
        let overrides = overrides
            .iter()
            .map(|(label, (group, resource))| (label.clone(), table.normalise(group, resource)))
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
            table,
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
        let known = self
            .table
            .resolve(group, captures.name("resource")?.as_str())?;
        Some(GroupResource {
            group: known.group.into_owned(),
            resource: known.plural.into_owned(),
        })
    }

    /// The label that holds names of `resource`, if any: overrides first, then the template rendered with the
    /// group's `.` and `-` as `_` and the singular resource.
    pub fn label_for_resource(&self, resource: &GroupResource) -> Option<String> {
        if let Some((label, _)) = self.overrides.iter().find(|(_, r)| *r == resource) {
            return Some(label.clone());
        }
        let (_, template, _) = self.template.as_ref()?;
        let singular = self
            .table
            .resolve(&resource.group, &resource.resource)
            .map_or_else(|| resource.resource.clone(), |k| k.singular.into_owned());
        template
            .render(&Data::from([
                ("Group", Value::Str(resource.group.replace(['.', '-'], "_"))),
                ("Resource", Value::Str(singular)),
            ]))
            .ok()
            .filter(|label| crate::promql::is_label_name(label))
    }

    /// The table names resolve against.
    pub fn table(&self) -> &Arc<ResourceTable> {
        &self.table
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

    fn table() -> ResourceTable {
        ResourceTable::default()
    }

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
            Arc::default(),
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
        let mapping = ResourceMapping::new(
            &BTreeMap::new(),
            Some("<<.Resource>>"),
            true,
            Arc::default(),
        )
        .unwrap();
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
            Arc::default(),
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
            Arc::default(),
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
        assert_eq!(table().parse_group_resource("pods"), gr("", "pods"));
        assert_eq!(table().parse_group_resource("pod"), gr("", "pods"));
        assert_eq!(
            table().parse_group_resource("deployments.apps"),
            gr("apps", "deployments")
        );
        assert_eq!(
            table().parse_group_resource("deployment.apps"),
            gr("apps", "deployments")
        );
        assert_eq!(
            table().parse_group_resource("ingresses.networking.k8s.io"),
            gr("networking.k8s.io", "ingresses")
        );
        assert_eq!(
            table().parse_group_resource("widgets.example.com"),
            gr("example.com", "widgets")
        );
        assert_eq!(
            table()
                .resolve("apps", "deployments")
                .unwrap()
                .api_version(),
            "apps/v1"
        );
        assert_eq!(table().resolve("", "pods").unwrap().api_version(), "v1");
    }

    #[test]
    fn a_template_without_the_resource_is_refused() {
        assert_eq!(
            ResourceMapping::new(&BTreeMap::new(), Some("<<.Group>>"), true, Arc::default())
                .unwrap_err(),
            ResourcesError::NoResource("<<.Group>>".into())
        );
    }

    #[test]
    fn unknown_override_resources_are_kept_for_the_cluster_to_resolve() {
        let mapping = ResourceMapping::new(
            &overrides(&[("route", "route.openshift.io", "Routes")]),
            None,
            true,
            Arc::default(),
        )
        .unwrap();
        assert_eq!(
            mapping.resource_for_label("route"),
            Some(gr("route.openshift.io", "routes"))
        );
        assert_eq!(mapping.describe(), "route -> routes.route.openshift.io");
    }
}
