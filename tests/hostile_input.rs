//! The hostile-input corpus: crafted requests (PromQL injection through label values, metric names,
//! namespaces and selectors; malformed and overlong UTF-8; `..` segments; duplicate parameters; huge
//! selectors). Each gets a clean answer of the expected code, and the query sent to the backend is exactly
//! the expected one, or none at all.
//!
//! The same holds for metrics served by Prometheus Adapter rules, whose templates place request values where
//! the rule's author chose (`.LabelMatchers`, `.LabelValuesByName`).
//!
//! The backend here records what it is asked instead of answering it (it returns no samples): what matters is
//! the PromQL text, which is spelled out literally below, not derived from the code under test.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use support::*;
use xroad_metrics_adapter::adapter_rules::AdapterRules;
use xroad_metrics_adapter::compat::rules::AdapterConfig;
use xroad_metrics_adapter::server::{AppState, Configured};
use xroad_metrics_adapter::source::SeriesKeys;
use xroad_metrics_adapter::source::{Answered, MetricSource, SourceError};

/// A backend that records every query and answers with no samples.
#[derive(Default)]
struct RecordingBackend {
    queries: Mutex<Vec<String>>,
}

impl MetricSource for RecordingBackend {
    fn instant_query<'a>(
        &'a self,
        promql: &'a str,
    ) -> BoxFuture<'a, Result<Answered, SourceError>> {
        self.queries.lock().unwrap().push(promql.to_owned());
        async { Ok(Answered::default()) }.boxed()
    }

    /// Every series query finds one X-Road gauge, for the rules to serve.
    fn series<'a>(
        &'a self,
        _: &'a str,
        _: i64,
        _: i64,
    ) -> BoxFuture<'a, Result<Vec<SeriesKeys>, SourceError>> {
        async {
            Ok(vec![SeriesKeys {
                name: "xroad_queue_depth".into(),
                labels: vec!["namespace".into(), "pod".into(), "interface".into()],
            }])
        }
        .boxed()
    }
}

/// The Sidecar adapter reading from a recording backend. A fresh cache per case, so every query is seen.
fn recording_adapter(backend: Arc<RecordingBackend>) -> Arc<AppState> {
    let base = state("http://127.0.0.1:9");
    let configured = base.configured();
    Arc::new(AppState::new(
        Configured {
            catalog: configured.catalog.clone(),
            backends: single_backend(backend),
            rate_window: configured.rate_window,
            policies: configured.policies.clone(),
        },
        base.inventory.clone(),
        base.metrics.clone(),
        xroad_metrics_adapter::server::guard::Guard::anonymous(),
        None,
    ))
}

/// Rules that place request values in every template field: `.LabelMatchers` and `.GroupBy` in the custom
/// rule, `.LabelValuesByName` (as the Prometheus Adapter's documentation places it, in `=~"…"`) in both.
const HOSTILE_TARGET_RULES: &str = r#"
rules:
- seriesQuery: 'xroad_queue_depth'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>) * on(pod) group_left max(up{pod=~"<<index .LabelValuesByName "pod">>",namespace=~"<<index .LabelValuesByName "namespace">>"}) by (pod)'
externalRules:
- seriesQuery: 'xroad_queue_depth'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{interface=~"<<index .LabelValuesByName "interface">>",<<.LabelMatchers>>})'
"#;

/// The recording adapter serving [`HOSTILE_TARGET_RULES`], relisted once.
async fn recording_rules_adapter(backend: Arc<RecordingBackend>) -> Arc<AppState> {
    let config = AdapterConfig::parse(HOSTILE_TARGET_RULES).unwrap();
    let rules = AdapterRules::new(
        config,
        single_backend(backend.clone()),
        Duration::from_secs(600),
        None,
    );
    rules.relist().await.unwrap();
    let mut state = Arc::into_inner(recording_adapter(backend)).unwrap();
    state.rules = Some(Arc::new(rules));
    Arc::new(state)
}

const RULE_PODS: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods";
const RULE_EXTERNAL: &str =
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/xroad_queue_depth";

/// The rule's query for one pod of namespace `sidecar`.
fn rule_query_for(pod: &str, pod_regex_in_string: &str) -> String {
    format!(
        "sum(xroad_queue_depth{{namespace=\"sidecar\",pod=\"{pod}\"}}) by (pod) * on(pod) group_left \
         max(up{{pod=~\"{pod_regex_in_string}\",namespace=~\"sidecar\"}}) by (pod)"
    )
}

fn rule_corpus() -> Vec<Case> {
    let attack = r#"x"}[2m])) by (pod) or (vector(1) + on() secret_thing{namespace="secret"}) or sum(rate(up{a=~""#;
    let pod = |name: &str| format!("{RULE_PODS}/{}/xroad_queue_depth", encoded(name));
    vec![
        case(
            "a pod the inventory holds",
            pod("security-server-sidecar-secondary-7d9f8-abcde"),
            404,
            Some(rule_query_for(
                "security-server-sidecar-secondary-7d9f8-abcde",
                "security-server-sidecar-secondary-7d9f8-abcde",
            )),
        ),
        case("the injection that leaked another namespace", pod(attack), 400, None),
        case("a quote in a pod name", pod("a\"b"), 400, None),
        case("a brace in a pod name", pod("a}b"), 400, None),
        case("an upper-case pod name", pod("Sidecar-0"), 400, None),
        case("a valid name the inventory doesn't hold", pod("a.b"), 404, None),
        case(
            "a hostile name for another resource",
            format!(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/services/{}/xroad_queue_depth",
                encoded(attack)
            ),
            400,
            None,
        ),
        case(
            "a hostile namespace",
            format!(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/pods/%2A/xroad_queue_depth",
                encoded("sidecar\"}")
            ),
            400,
            None,
        ),
        case(
            "an injection through metricLabelSelector",
            format!(
                "{RULE_PODS}/%2A/xroad_queue_depth?metricLabelSelector={}",
                encoded("interface=a\"}")
            ),
            400,
            None,
        ),
        case(
            "an external selector with regex metacharacters",
            format!("{RULE_EXTERNAL}?labelSelector={}", encoded("interface in (eth.0,eth1)")),
            200,
            Some(
                "sum(xroad_queue_depth{interface=~\"eth\\\\.0|eth1\",interface=~\"eth\\\\.0|eth1\",namespace=\"sidecar\"})"
                    .into(),
            ),
        ),
        case(
            "an injection through the external selector",
            format!("{RULE_EXTERNAL}?labelSelector={}", encoded("interface=eth0\"})")),
            400,
            None,
        ),
    ]
}

const PODS: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/%2A/container_network_receive_packets_per_second";
const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/container_network_receive_packets_per_second";

fn encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The Secondary pods, with `metricLabelSelector`.
fn pods_with(metric_selector: &str) -> String {
    format!(
        "{PODS}?labelSelector={}&metricLabelSelector={}",
        encoded(SECONDARY_SELECTOR),
        encoded(metric_selector)
    )
}

fn external_with(selector: &str) -> String {
    format!("{EXTERNAL}?labelSelector={}", encoded(selector))
}

/// The per-pod packet-rate query for `namespace` with extra matchers (each starting with `,`).
fn pods_query(extra_matchers: &str) -> String {
    format!(
        "sum by (namespace, pod) (max by (namespace, pod, interface) (rate(container_network_receive_packets_total\
         {{namespace=\"sidecar\",pod!=\"\",id!=\"/\"{extra_matchers}}}[120s])))"
    )
}

fn external_query(extra_matchers: &str) -> String {
    format!(
        "sum(max by (namespace, pod, interface) (rate(container_network_receive_packets_total\
         {{namespace=\"sidecar\",pod!=\"\",id!=\"/\"{extra_matchers}}}[120s])))"
    )
}

struct Case {
    what: &'static str,
    path: String,
    code: u16,
    query: Option<String>,
}

fn case(what: &'static str, path: impl Into<String>, code: u16, query: Option<String>) -> Case {
    Case {
        what,
        path: path.into(),
        code,
        query,
    }
}

fn corpus() -> Vec<Case> {
    let long_set: Vec<String> = (0..1000).map(|i| format!("e{i}")).collect();
    let long_regex = long_set
        .iter()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>();
    let long_regex = long_regex.into_iter().collect::<Vec<_>>().join("|");
    let many_terms: Vec<String> = (0..700).map(|i| format!("k{i}=v")).collect();
    vec![
        // Metric label selectors: the only selector whose values reach PromQL.
        case(
            "plain equality",
            pods_with("interface=eth0"),
            200,
            Some(pods_query(",interface=\"eth0\"")),
        ),
        case(
            "quote and brace in a value",
            pods_with("interface=eth0\"}"),
            400,
            None,
        ),
        case(
            "query appended to a value",
            pods_with("interface=eth0\"} or vector(1) #"),
            400,
            None,
        ),
        case(
            "set membership",
            pods_with("interface in (eth0,eth1)"),
            200,
            Some(pods_query(",interface=~\"eth0|eth1\"")),
        ),
        case(
            "regex metacharacter in a set",
            pods_with("interface in (eth0.1)"),
            200,
            Some(pods_query(",interface=~\"eth0\\\\.1\"")),
        ),
        case(
            "set exclusion",
            pods_with("interface notin (eth0)"),
            200,
            Some(pods_query(",interface!~\"eth0\"")),
        ),
        case(
            "inequality",
            pods_with("interface!=eth0"),
            200,
            Some(pods_query(",interface!=\"eth0\"")),
        ),
        case(
            "existence",
            pods_with("interface"),
            200,
            Some(pods_query(",interface!=\"\"")),
        ),
        case(
            "absence",
            pods_with("!interface"),
            200,
            Some(pods_query(",interface=\"\"")),
        ),
        case(
            "double equals",
            pods_with("interface==eth0"),
            200,
            Some(pods_query(",interface=\"eth0\"")),
        ),
        case(
            "empty value",
            pods_with("interface="),
            200,
            Some(pods_query(",interface=\"\"")),
        ),
        case(
            "namespace matcher cannot widen the scope",
            pods_with("namespace=kube-system"),
            200,
            Some(pods_query(",namespace=\"kube-system\"")),
        ),
        case(
            "reserved __name__ label",
            pods_with("__name__=up"),
            400,
            None,
        ),
        case(
            "key not a Prometheus label name",
            pods_with("example.com/tier=web"),
            400,
            None,
        ),
        case("greater-than", pods_with("interface>1"), 400, None),
        case(
            "pipe in a set value",
            pods_with("interface in (a|b)"),
            400,
            None,
        ),
        case(
            "backslash in a value",
            pods_with("interface=eth0\\"),
            400,
            None,
        ),
        case(
            "shell syntax in a value",
            pods_with("interface=$(id)"),
            400,
            None,
        ),
        case(
            "64-character value",
            pods_with(&format!("interface={}", "a".repeat(64))),
            400,
            None,
        ),
        case(
            "NUL in a selector",
            format!("{PODS}?metricLabelSelector=interface%3Deth%000"),
            400,
            None,
        ),
        case(
            "newline in a selector",
            format!("{PODS}?metricLabelSelector=interface%3Deth0%0Aor"),
            400,
            None,
        ),
        case("non-ASCII value", pods_with("interface=ethé"), 400, None),
        case(
            "unterminated set",
            pods_with("interface in (eth0"),
            400,
            None,
        ),
        case(
            "1000-value set",
            pods_with(&format!("interface in ({})", long_set.join(","))),
            200,
            Some(pods_query(&format!(",interface=~\"{long_regex}\""))),
        ),
        case(
            "duplicate metricLabelSelector: the first counts",
            format!(
                "{}&metricLabelSelector=interface%3Deth1",
                pods_with("interface=eth0")
            ),
            200,
            Some(pods_query(",interface=\"eth0\"")),
        ),
        // Pod label selectors are matched in memory and never reach PromQL.
        case(
            "pod selector with a quote",
            format!("{PODS}?labelSelector={}", encoded("run=x\"}")),
            400,
            None,
        ),
        case(
            "pod selector unterminated",
            format!("{PODS}?labelSelector={}", encoded("run in (a")),
            400,
            None,
        ),
        case(
            "pod selector matching nothing asks nothing",
            format!("{PODS}?labelSelector=run%3Dnope"),
            200,
            None,
        ),
        case(
            "duplicate labelSelector: the first counts",
            format!(
                "{PODS}?labelSelector=run%3Dnope&labelSelector={}",
                encoded(SECONDARY_SELECTOR)
            ),
            200,
            None,
        ),
        case(
            "700-term pod selector",
            format!("{PODS}?labelSelector={}", encoded(&many_terms.join(","))),
            200,
            None,
        ),
        case(
            "empty pod selector selects the namespace",
            format!("{PODS}?labelSelector="),
            200,
            Some(pods_query("")),
        ),
        // Namespaces.
        case(
            "namespace with quote and brace",
            PODS.replace("sidecar", "sidecar%22%7D"),
            400,
            None,
        ),
        case("namespace ..", PODS.replace("sidecar", ".."), 400, None),
        case(
            "namespace %2e%2e",
            PODS.replace("sidecar", "%2e%2e"),
            400,
            None,
        ),
        case(
            "namespace in upper case",
            PODS.replace("sidecar", "Sidecar"),
            400,
            None,
        ),
        case(
            "64-character namespace",
            PODS.replace("sidecar", &"a".repeat(64)),
            400,
            None,
        ),
        case(
            "wildcard namespace for pods",
            PODS.replace("sidecar", "%2A"),
            400,
            None,
        ),
        case(
            "homoglyph namespace",
            PODS.replace("sidecar", "sid%D0%B5car"),
            400,
            None,
        ),
        case(
            "backslash in a namespace",
            PODS.replace("sidecar", "side%5Ccar"),
            400,
            None,
        ),
        case(
            "invalid percent escape",
            PODS.replace("sidecar", "side%ZZcar"),
            400,
            None,
        ),
        case(
            "NUL in a namespace",
            PODS.replace("sidecar", "side%00car"),
            404,
            None,
        ),
        case(
            "external namespace injection",
            EXTERNAL.replace("sidecar", "x%22%7Dor%20vector(1)"),
            400,
            None,
        ),
        // Metric names: looked up, never interpolated.
        case(
            "metric name with quote and brace",
            format!("{PODS}%22%7D"),
            404,
            None,
        ),
        case(
            "metric name as a query",
            PODS.replace("container_network_receive_packets_per_second", "sum(up)"),
            404,
            None,
        ),
        case(
            "metric name of another series",
            PODS.replace("container_network_receive_packets_per_second", "up"),
            404,
            None,
        ),
        case(
            "encoded slash in a metric name",
            format!("{PODS}%2Fx"),
            404,
            None,
        ),
        case(
            "5000-character metric name",
            PODS.replace(
                "container_network_receive_packets_per_second",
                &"m".repeat(5000),
            ),
            404,
            None,
        ),
        case(
            "external metric as a query",
            EXTERNAL.replace("container_network_receive_packets_per_second", "count(up)"),
            404,
            None,
        ),
        // Paths.
        case(
            "malformed UTF-8",
            PODS.replace("sidecar", "%FF%FE"),
            400,
            None,
        ),
        case(
            "overlong UTF-8 for '.'",
            PODS.replace("sidecar", "%C0%AE%C0%AE"),
            400,
            None,
        ),
        case(
            ".. segments are not resolved",
            format!("{PODS}/../../../../../version"),
            404,
            None,
        ),
        case(
            "encoded .. segments: no object is named ..",
            "/apis/custom.metrics.k8s.io/v1beta2/%2e%2e/%2e%2e/version",
            400,
            None,
        ),
        case(
            "empty segment",
            "/apis//custom.metrics.k8s.io/v1beta2",
            404,
            None,
        ),
        case(
            "unknown version",
            "/apis/custom.metrics.k8s.io/v2/namespaces/sidecar/pods/%2A/m",
            404,
            None,
        ),
        case(
            "control character in a pod name",
            PODS.replace("%2A", "a%0Ab"),
            404,
            None,
        ),
        case(
            "20 000-byte path",
            format!("{PODS}/{}", "x".repeat(20_000)),
            414,
            None,
        ),
        case(
            "20 000-byte selector",
            pods_with(&format!("interface in ({})", "a,".repeat(10_000))),
            414,
            None,
        ),
        // External metrics: the labelSelector selects series, so it reaches PromQL.
        case(
            "external equality",
            external_with("interface=eth1"),
            200,
            Some(external_query(",interface=\"eth1\"")),
        ),
        case(
            "external injection",
            external_with("interface=eth1\"}) or vector(1"),
            400,
            None,
        ),
        case(
            "external regex metacharacter",
            external_with("interface in (eth.0)"),
            200,
            Some(external_query(",interface=~\"eth\\\\.0\"")),
        ),
        case(
            "external duplicate labelSelector: the first counts",
            format!(
                "{}&labelSelector=interface%3Deth0",
                external_with("interface=eth1")
            ),
            200,
            Some(external_query(",interface=\"eth1\"")),
        ),
    ]
}

/// Runs each case against a fresh adapter from `adapter` (so every query is seen); the cases that did not get
/// their code and exactly their query, described.
async fn failures<F, A>(cases: &[Case], adapter: F) -> Vec<String>
where
    F: Fn(Arc<RecordingBackend>) -> A,
    A: std::future::Future<Output = Arc<AppState>>,
{
    let mut failures = Vec::new();
    for case in cases {
        let backend = Arc::new(RecordingBackend::default());
        let state = adapter(backend.clone()).await;
        let (code, body) = get(&state, &case.path).await;
        let queries = backend.queries.lock().unwrap().clone();
        let expected: Vec<String> = case.query.iter().cloned().collect();
        if code != case.code || queries != expected {
            failures.push(format!(
                "{}: got {code} and {queries:?}, expected {} and {expected:?}; body {body}",
                case.what, case.code
            ));
        }
        if code >= 400 {
            assert_eq!(body["kind"], "Status", "{}: {body}", case.what);
            assert_eq!(body["code"], code, "{}", case.what);
        }
    }
    failures
}

#[tokio::test]
async fn every_hostile_request_gets_a_clean_answer_and_exactly_the_expected_query() {
    let corpus = corpus();
    assert!(corpus.len() >= 50, "the corpus has {} cases", corpus.len());
    let failures = failures(&corpus, |backend| async { recording_adapter(backend) }).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn rule_served_metrics_refuse_hostile_names_and_escape_every_template_field() {
    let failures = failures(&rule_corpus(), recording_rules_adapter).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
