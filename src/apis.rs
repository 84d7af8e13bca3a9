//! Wire types of the metrics APIs: discovery documents, `MetricValueList` v1beta1/v1beta2,
//! `ExternalMetricValueList` and `Status`, shaped exactly as the Go types of
//! `k8s.io/metrics` (`pkg/apis/custom_metrics`, `external_metrics`) serialise them.
//!
//! Pure data and serialisation; no I/O.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::core::Expression;
use serde::Serialize;

use crate::quantity::Quantity;
use crate::selector::{LabelSelector, Requirement};

/// The custom-metrics API group.
pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
/// The external-metrics API group.
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";
/// The resource-metrics API group (`kubectl top`), served from Prometheus Adapter `resourceRules`.
pub const RESOURCE_GROUP: &str = "metrics.k8s.io";

/// A served version of `custom.metrics.k8s.io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomVersion {
    /// Flat `metricName`, `selector`, `window` items.
    V1Beta1,
    /// Nested `metric: {name, selector}`, `windowSeconds`; the HPA's preferred version.
    V1Beta2,
}

impl CustomVersion {
    /// Parses a path segment.
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "v1beta1" => Some(Self::V1Beta1),
            "v1beta2" => Some(Self::V1Beta2),
            _ => None,
        }
    }

    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1Beta1 => "v1beta1",
            Self::V1Beta2 => "v1beta2",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupVersionForDiscovery {
    group_version: String,
    version: &'static str,
}

/// `APIGroup`: one group with its versions, the first being preferred.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'static str>,
    name: &'static str,
    versions: Vec<GroupVersionForDiscovery>,
    preferred_version: GroupVersionForDiscovery,
}

impl ApiGroup {
    fn new(name: &'static str, versions: &[&'static str]) -> Self {
        let gv = |version: &'static str| GroupVersionForDiscovery {
            group_version: format!("{name}/{version}"),
            version,
        };
        Self {
            kind: None,
            api_version: None,
            name,
            versions: versions.iter().map(|v| gv(v)).collect(),
            preferred_version: gv(versions[0]),
        }
    }

    /// `custom.metrics.k8s.io` with v1beta2 preferred.
    pub fn custom() -> Self {
        Self::new(CUSTOM_GROUP, &["v1beta2", "v1beta1"])
    }

    /// `external.metrics.k8s.io` v1beta1.
    pub fn external() -> Self {
        Self::new(EXTERNAL_GROUP, &["v1beta1"])
    }

    /// `metrics.k8s.io` v1beta1.
    pub fn resource() -> Self {
        Self::new(RESOURCE_GROUP, &["v1beta1"])
    }

    /// The standalone document served at `/apis/<group>`.
    pub fn document(mut self) -> Self {
        self.kind = Some("APIGroup");
        self.api_version = Some("v1");
        self
    }
}

/// `APIGroupList`, served at `/apis`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupList {
    kind: &'static str,
    api_version: &'static str,
    groups: Vec<ApiGroup>,
}

impl ApiGroupList {
    /// The groups this adapter serves: both metrics groups always, `metrics.k8s.io` with resource rules.
    pub fn served() -> Self {
        Self {
            kind: "APIGroupList",
            api_version: "v1",
            groups: vec![
                ApiGroup::custom(),
                ApiGroup::external(),
                ApiGroup::resource(),
            ],
        }
    }
}

/// One `APIResource` entry; `singularName` is always emitted, as the contract requires.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    name: String,
    singular_name: &'static str,
    namespaced: bool,
    kind: &'static str,
    verbs: &'static [&'static str],
}

impl ApiResource {
    /// `pods` or `nodes` in `metrics.k8s.io`.
    pub fn resource_metrics(name: &str, kind: &'static str, namespaced: bool) -> Self {
        Self {
            name: name.to_owned(),
            singular_name: "",
            namespaced,
            kind,
            verbs: &["get", "list"],
        }
    }

    /// `<resource>/<metric>` in custom metrics.
    pub fn custom(resource: &str, metric: &str, namespaced: bool) -> Self {
        Self {
            name: format!("{resource}/{metric}"),
            singular_name: "",
            namespaced,
            kind: "MetricValueList",
            verbs: &["get"],
        }
    }

    /// `<metric>` in external metrics.
    pub fn external(metric: &str) -> Self {
        Self {
            name: metric.to_owned(),
            singular_name: "",
            namespaced: true,
            kind: "ExternalMetricValueList",
            verbs: &["get"],
        }
    }
}

/// `APIResourceList`, served at `/apis/<group>/<version>`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    kind: &'static str,
    api_version: &'static str,
    group_version: String,
    resources: Vec<ApiResource>,
}

impl ApiResourceList {
    /// A list for `group/version`.
    pub fn new(group: &str, version: &str, resources: Vec<ApiResource>) -> Self {
        Self {
            kind: "APIResourceList",
            api_version: "v1",
            group_version: format!("{group}/{version}"),
            resources,
        }
    }
}

/// `ObjectReference` of the object a value describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// `Pod`, `Namespace`, `Deployment`, …
    pub kind: Cow<'static, str>,
    /// Absent for cluster-scoped objects (and for a Namespace itself); shared by the items of a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Arc<str>>,
    /// The object's name.
    pub name: String,
    /// `v1` for core kinds, `apps/v1` for Deployments.
    pub api_version: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelectorRequirementJson {
    key: String,
    operator: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    values: Vec<String>,
}

/// A `metav1.LabelSelector` echo of a `metricLabelSelector`, as `metav1.ParseToLabelSelector` builds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorJson {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    match_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    match_expressions: Vec<LabelSelectorRequirementJson>,
}

impl LabelSelectorJson {
    /// Converts a parsed selector; `>`/`<` are refused for metric selectors before we get here, and skipped.
    pub fn from_selector(selector: &LabelSelector) -> Self {
        let mut out = Self::default();
        for requirement in selector.requirements() {
            let Requirement::Label(expression) = requirement else {
                continue;
            };
            let mut expr = |key: &str, operator, values: Vec<String>| {
                out.match_expressions.push(LabelSelectorRequirementJson {
                    key: key.to_owned(),
                    operator,
                    values,
                })
            };
            match expression {
                Expression::Equal(k, v) => {
                    out.match_labels.insert(k.clone(), v.clone());
                }
                Expression::NotEqual(k, v) => expr(k, "NotIn", vec![v.clone()]),
                Expression::In(k, vs) => expr(k, "In", vs.iter().cloned().collect()),
                Expression::NotIn(k, vs) => expr(k, "NotIn", vs.iter().cloned().collect()),
                Expression::Exists(k) => expr(k, "Exists", vec![]),
                Expression::DoesNotExist(k) => expr(k, "DoesNotExist", vec![]),
            }
        }
        out
    }
}

/// One value of a custom metric, independent of the API version it is served in.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// The object the value describes.
    pub described_object: ObjectReference,
    /// The metric name from the path, shared by the items of a list.
    pub metric: Arc<str>,
    /// The echoed `metricLabelSelector`, `None` when absent.
    pub selector: Option<LabelSelectorJson>,
    /// When the value was computed (Unix seconds).
    pub timestamp: i64,
    /// The aggregation window in seconds.
    pub window_seconds: Option<i64>,
    /// The value.
    pub value: Quantity,
}

/// RFC 3339, UTC, whole seconds, `Z`: `metav1.Time`.
pub fn rfc3339(unix_seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix_seconds)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemV1Beta1<'a, V> {
    described_object: &'a ObjectReference,
    metric_name: &'a str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<i64>,
    value: V,
    selector: &'a Option<LabelSelectorJson>,
}

#[derive(Serialize)]
struct MetricIdentifier<'a> {
    name: &'a str,
    selector: &'a Option<LabelSelectorJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemV1Beta2<'a, V> {
    described_object: &'a ObjectReference,
    metric: MetricIdentifier<'a>,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_seconds: Option<i64>,
    value: V,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<I> {
    kind: &'static str,
    api_version: String,
    metadata: Empty,
    items: I,
}

#[derive(Serialize)]
struct Empty {}

/// A `MetricValueList` in `version`'s shape, serialised in one pass from the values (no intermediate JSON
/// tree); `items` is `[]` when empty, never `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValueList {
    version: CustomVersion,
    values: Vec<MetricValue>,
}

/// The `MetricValueList` of `values`.
pub fn metric_value_list(version: CustomVersion, values: Vec<MetricValue>) -> MetricValueList {
    MetricValueList { version, values }
}

impl MetricValueList {
    /// Roughly the bytes of its JSON, so the body is written into a buffer that never grows: a pod's item
    /// takes about 260 bytes.
    pub fn size_hint(&self) -> usize {
        256 + self.values.len() * 320
    }
}

/// One value as `version` writes it; `value` is the value's JSON (a [`Quantity`], or a marker).
fn write_item<V: Serialize>(
    version: CustomVersion,
    v: &MetricValue,
    timestamp: &str,
    value: V,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    match version {
        CustomVersion::V1Beta1 => serde_json::to_writer(
            out,
            &ItemV1Beta1 {
                described_object: &v.described_object,
                metric_name: &v.metric,
                timestamp,
                window: v.window_seconds,
                value,
                selector: &v.selector,
            },
        ),
        CustomVersion::V1Beta2 => serde_json::to_writer(
            out,
            &ItemV1Beta2 {
                described_object: &v.described_object,
                metric: MetricIdentifier {
                    name: &v.metric,
                    selector: &v.selector,
                },
                timestamp,
                window_seconds: v.window_seconds,
                value,
            },
        ),
    }
}

/// The items of a list that differ only in the described object's name and the value (every list of pods)
/// are written from this: the JSON of one item cut around those two, so each item costs three copies and
/// two short writes instead of a full serialisation.
struct Template<'a> {
    first: &'a MetricValue,
    /// Up to the name's opening quote.
    head: Vec<u8>,
    /// From after the name to the value's opening quote.
    middle: Vec<u8>,
    /// From after the value to the item's end.
    tail: Vec<u8>,
}

impl<'a> Template<'a> {
    /// Serialises `first` with two markers in place of its name and value and cuts at them. `None` should
    /// the markers not appear exactly once each (they are control characters, which serde escapes, and no
    /// other field of an item holds them unescaped).
    fn new(version: CustomVersion, first: &'a MetricValue, timestamp: &str) -> Option<Self> {
        const NAME: &[u8] = br#""\u0001""#;
        const VALUE: &[u8] = br#""\u0002""#;
        let mut marked = first.clone();
        marked.described_object.name = "\u{1}".to_owned();
        let mut json = Vec::new();
        write_item(version, &marked, timestamp, "\u{2}", &mut json).ok()?;
        let find = |needle: &[u8]| {
            let mut at = json
                .windows(needle.len())
                .enumerate()
                .filter(|(_, w)| *w == needle);
            let (first, _) = at.next()?;
            at.next().is_none().then_some(first)
        };
        let (name, value) = (find(NAME)?, find(VALUE)?);
        (name < value).then(|| Self {
            first,
            head: json[..name].to_vec(),
            middle: json[name + NAME.len()..value].to_vec(),
            tail: json[value + VALUE.len()..].to_vec(),
        })
    }

    /// Whether `v` is the first item but for its name and value.
    fn fits(&self, v: &MetricValue) -> bool {
        let (a, b) = (&self.first.described_object, &v.described_object);
        a.kind == b.kind
            && a.namespace == b.namespace
            && a.api_version == b.api_version
            && self.first.metric == v.metric
            && self.first.timestamp == v.timestamp
            && self.first.window_seconds == v.window_seconds
            && self.first.selector == v.selector
    }

    fn write(&self, v: &MetricValue, out: &mut Vec<u8>) -> serde_json::Result<()> {
        use std::io::Write;
        out.extend_from_slice(&self.head);
        serde_json::to_writer(&mut *out, &v.described_object.name)?;
        out.extend_from_slice(&self.middle);
        // A quantity is digits, a sign and a suffix: nothing to escape.
        write!(out, "\"{}\"", v.value).map_err(serde_json::Error::io)?;
        out.extend_from_slice(&self.tail);
        Ok(())
    }
}

impl MetricValueList {
    /// The JSON body, byte for byte what [`Serialize`] writes, in one pass into a buffer of
    /// [`MetricValueList::size_hint`] bytes; items that share all but their name and value are written
    /// from a [`Template`].
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint());
        self.write_json(&mut out)
            .expect("value lists hold only strings, numbers and maps with string keys");
        out
    }

    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let stamps = self.stamps();
        let stamp = |v: &MetricValue| stamps[&v.timestamp].as_str();
        out.extend_from_slice(br#"{"kind":"MetricValueList","apiVersion":""#);
        out.extend_from_slice(CUSTOM_GROUP.as_bytes());
        out.push(b'/');
        out.extend_from_slice(self.version.as_str().as_bytes());
        out.extend_from_slice(br#"","metadata":{},"items":["#);
        let template = self
            .values
            .first()
            .and_then(|first| Template::new(self.version, first, stamp(first)));
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match &template {
                Some(template) if template.fits(v) => template.write(v, out)?,
                _ => write_item(self.version, v, stamp(v), v.value, out)?,
            }
        }
        out.extend_from_slice(b"]}");
        Ok(())
    }

    /// The values of one answer share their timestamp: each distinct one is formatted once.
    fn stamps(&self) -> BTreeMap<i64, String> {
        self.values
            .iter()
            .map(|v| v.timestamp)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|t| (t, rfc3339(t)))
            .collect()
    }
}

/// The reference for [`MetricValueList::to_json`], which must write the same bytes.
impl Serialize for MetricValueList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stamps = self.stamps();
        let stamp = |v: &MetricValue| stamps[&v.timestamp].as_str();
        let api_version = format!("{CUSTOM_GROUP}/{}", self.version.as_str());
        match self.version {
            CustomVersion::V1Beta1 => List {
                kind: "MetricValueList",
                api_version,
                metadata: Empty {},
                items: self
                    .values
                    .iter()
                    .map(|v| ItemV1Beta1 {
                        described_object: &v.described_object,
                        metric_name: &v.metric,
                        timestamp: stamp(v),
                        window: v.window_seconds,
                        value: v.value,
                        selector: &v.selector,
                    })
                    .collect::<Vec<_>>(),
            }
            .serialize(serializer),
            CustomVersion::V1Beta2 => List {
                kind: "MetricValueList",
                api_version,
                metadata: Empty {},
                items: self
                    .values
                    .iter()
                    .map(|v| ItemV1Beta2 {
                        described_object: &v.described_object,
                        metric: MetricIdentifier {
                            name: &v.metric,
                            selector: &v.selector,
                        },
                        timestamp: stamp(v),
                        window_seconds: v.window_seconds,
                        value: v.value,
                    })
                    .collect::<Vec<_>>(),
            }
            .serialize(serializer),
        }
    }
}

/// One external metric value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    /// The metric name from the path.
    pub metric_name: String,
    /// The series labels the value carries; `{}`, never `null`.
    pub metric_labels: BTreeMap<String, String>,
    /// RFC 3339 time the value was computed.
    pub timestamp: String,
    /// The aggregation window in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// The value.
    pub value: Quantity,
}

/// An `ExternalMetricValueList`, serialised in one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalMetricValueList(Vec<ExternalMetricValue>);

/// The `ExternalMetricValueList` of `values`.
pub fn external_metric_value_list(values: Vec<ExternalMetricValue>) -> ExternalMetricValueList {
    ExternalMetricValueList(values)
}

impl Serialize for ExternalMetricValueList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        List {
            kind: "ExternalMetricValueList",
            api_version: format!("{EXTERNAL_GROUP}/v1beta1"),
            metadata: Empty {},
            items: &self.0,
        }
        .serialize(serializer)
    }
}

/// `details` of a `Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    /// The object's name, when one was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The API group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The resource, e.g. `pods`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// When a client should retry (429).
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u32>,
}

/// A Kubernetes `Status` failure body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    kind: &'static str,
    api_version: &'static str,
    metadata: BTreeMap<String, String>,
    status: &'static str,
    /// What operators read in `kubectl describe hpa`.
    pub message: String,
    /// `NotFound`, `BadRequest`, `InternalError`, …
    pub reason: &'static str,
    /// Optional details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// Equals the HTTP status.
    pub code: u16,
}

impl Status {
    /// A `Failure` status.
    pub fn failure(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: BTreeMap::new(),
            status: "Failure",
            message: message.into(),
            reason,
            details: None,
            code,
        }
    }

    /// Adds `details`.
    pub fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(details);
        self
    }
}

#[cfg(test)]
mod tests;

/// One container's usage in a `PodMetrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerMetrics {
    /// The container.
    pub name: String,
    /// `cpu` (cores) and `memory` (bytes) as quantities.
    pub usage: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceMeta<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    creation_timestamp: String,
}

/// CPU in cores and memory in bytes as exact quantities: nanocores, as metrics-server writes them
/// (`123400000n`), and whole bytes (`104870609`), as metrics-server and the Prometheus Adapter give them.
pub fn usage(cpu_cores: f64, memory_bytes: f64) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("cpu", crate::quantity::nanos(cpu_cores)),
        ("memory", crate::quantity::whole(memory_bytes)),
    ])
}

/// A `PodMetrics` object (`metrics.k8s.io/v1beta1`).
pub fn pod_metrics(
    namespace: &str,
    name: &str,
    timestamp: i64,
    window: std::time::Duration,
    containers: Vec<ContainerMetrics>,
) -> serde_json::Value {
    serde_json::json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{RESOURCE_GROUP}/v1beta1"),
        "metadata": ResourceMeta { name, namespace: Some(namespace), creation_timestamp: rfc3339(timestamp) },
        "timestamp": rfc3339(timestamp),
        "window": crate::duration::go(window),
        "containers": containers,
    })
}

/// A `NodeMetrics` object.
pub fn node_metrics(
    name: &str,
    timestamp: i64,
    window: std::time::Duration,
    usage: BTreeMap<&'static str, String>,
) -> serde_json::Value {
    serde_json::json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{RESOURCE_GROUP}/v1beta1"),
        "metadata": ResourceMeta { name, namespace: None, creation_timestamp: rfc3339(timestamp) },
        "timestamp": rfc3339(timestamp),
        "window": crate::duration::go(window),
        "usage": usage,
    })
}

/// `PodMetricsList` or `NodeMetricsList` around `items` (each item loses its own `kind`/`apiVersion`).
pub fn resource_metrics_list(kind: &str, items: Vec<serde_json::Value>) -> serde_json::Value {
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|mut item| {
            if let Some(object) = item.as_object_mut() {
                object.remove("kind");
                object.remove("apiVersion");
            }
            item
        })
        .collect();
    serde_json::json!({
        "kind": kind,
        "apiVersion": format!("{RESOURCE_GROUP}/v1beta1"),
        "metadata": {},
        "items": items,
    })
}
