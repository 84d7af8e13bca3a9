//! What users `kubectl apply`: every kustomization renders with the real `kubectl kustomize`, every object
//! validates against the Kubernetes OpenAPI schemas of 1.29 and of the newest version `kubernetes-validate`
//! knows (strict: unknown fields are errors), and the security-relevant settings are what docs/security.md promises
//! (the APIService API and the aggregation-layer docs).
//!
//! `kubernetes-validate` has no schemas for custom resources (ServiceMonitor, cert-manager's Certificate and
//! Issuer); those objects are checked field by field here instead.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{image_env, require_tool};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The oldest Kubernetes version the manifests support, and the newest the validator knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29", "1.37"];
/// Kinds without an OpenAPI schema in Kubernetes itself.
const CUSTOM_KINDS: [&str; 5] = [
    "ServiceMonitor",
    "Certificate",
    "Issuer",
    "ScaledObject",
    "TriggerAuthentication",
];

fn kubectl() -> PathBuf {
    require_tool(
        "kubectl",
        "install kubectl (Debian: apt-get install -y kubernetes-client); scripts/install-deps.sh does it",
    )
}

fn kubernetes_validate() -> PathBuf {
    let local = Path::new(ROOT).join(".tools/venv/bin/kubernetes-validate");
    if local.is_file() {
        return local;
    }
    require_tool(
        "kubernetes-validate",
        "run scripts/install-deps.sh (installs kubernetes-validate from PyPI into .tools/venv)",
    )
}

/// `kubectl kustomize DIR`, which must succeed.
fn kustomize(dir: &str) -> String {
    let output = Command::new(kubectl())
        .args(["kustomize", &format!("{ROOT}/{dir}")])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn objects(yaml: &str) -> Vec<Value> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_multiple_with_options::<Value>(yaml, options)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Validates `yaml` against every supported version; returns the kinds the validator had no schema for.
fn validate(name: &str, yaml: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{}.yaml", name.replace('/', "_")));
    std::fs::write(&file, yaml).unwrap();
    let mut unknown = Vec::new();
    for version in KUBERNETES_VERSIONS {
        let output = Command::new(kubernetes_validate())
            .args(["--strict", "-k", version])
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && !text.contains("ERROR"),
            "{name} against Kubernetes {version}:\n{text}"
        );
        unknown.extend(
            text.lines()
                .filter_map(|l| l.split("Couldn't find schema for kind ").nth(1))
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned),
        );
    }
    unknown.sort();
    unknown.dedup();
    unknown
}

/// Generates the self-signed overlay's certificate with the adapter's own `certificate` command, once per
/// run (tests run in parallel, and two writers could pair one's key with the other's certificate).
fn generate_self_signed_certificate() {
    static GENERATED: std::sync::Once = std::sync::Once::new();
    GENERATED.call_once(|| {
        let dir = Path::new(ROOT).join("deploy/self-signed/generated");
        let status = Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
            .arg("certificate")
            .arg("--cert-dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    });
}

fn rendered(dir: &str) -> Vec<Value> {
    if dir == "deploy/self-signed" {
        generate_self_signed_certificate();
    }
    objects(&kustomize(dir))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

const KUSTOMIZATIONS: [&str; 8] = [
    "deploy",
    "deploy/examples",
    "deploy/examples/keda",
    "deploy/self-signed",
    "apiservice",
    "apiservice/external",
    "apiservice/resource",
    "dashboards",
];

#[test]
fn every_kustomization_renders_and_validates_against_kubernetes_1_29_and_the_newest() {
    for dir in KUSTOMIZATIONS {
        if dir == "deploy/self-signed" {
            generate_self_signed_certificate();
        }
        let yaml = kustomize(dir);
        let unknown = validate(dir, &yaml);
        assert!(
            unknown.iter().all(|k| CUSTOM_KINDS.contains(&k.as_str())),
            "{dir}: no schema for {unknown:?}"
        );
    }
    let hpa =
        std::fs::read_to_string(format!("{ROOT}/deploy/examples/hpa-secondary.yaml")).unwrap();
    assert!(validate("hpa-secondary", &hpa).is_empty());
}

#[test]
fn the_adapter_runs_locked_down_with_probes_on_its_own_endpoints() {
    let objects = rendered("deploy");
    let deployment = find(&objects, "Deployment", "xroad-metrics-adapter");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        pod["affinity"]["podAntiAffinity"].is_object(),
        "replicas spread over nodes"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "{kind}.{resource}"
            );
        }
    }
    for (probe, path) in [
        ("startupProbe", "/livez"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(
            (get["path"].as_str(), get["scheme"].as_str()),
            (Some(path), Some("HTTPS")),
            "{probe}"
        );
    }
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    assert!(
        !args.iter().any(|a| a.contains("authentication")),
        "delegated access is the default and must not be turned off: {args:?}"
    );
    assert!(args.contains(&"--tls-cert-file=/var/run/serving-cert/tls.crt"));
    let image_env = image_env();
    assert!(
        !image_env.is_empty(),
        "the Dockerfile sets the malloc threshold"
    );
    for (name, value) in image_env {
        assert!(
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == name.as_str() && e["value"] == value.as_str()),
            "the Deployment sets {name}={value} as the image does"
        );
    }
    let pdb = find(&objects, "PodDisruptionBudget", "xroad-metrics-adapter");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let service = find(&objects, "Service", "xroad-metrics-adapter");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
}

#[test]
fn rbac_is_least_privilege_with_no_wildcard_verbs_and_no_secrets() {
    let objects = rendered("deploy");
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        let name = role["metadata"]["name"].as_str().unwrap();
        for rule in role["rules"].as_array().unwrap() {
            let list = |key: &str| -> Vec<&str> {
                rule[key]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
                    .unwrap_or_default()
            };
            let (groups, resources, verbs) = (list("apiGroups"), list("resources"), list("verbs"));
            assert!(!verbs.contains(&"*"), "{name}: wildcard verb");
            assert!(
                verbs
                    .iter()
                    .all(|v| ["get", "list", "watch", "create", "update"].contains(v)),
                "{name}: {verbs:?}"
            );
            assert!(!groups.contains(&"*"), "{name}: wildcard API group");
            assert!(
                !resources.iter().any(|r| r.contains('*')),
                "{name}: wildcard resource {resources:?}"
            );
            assert!(!resources.contains(&"secrets"), "{name}: reads Secrets");
        }
    }
    let delegator = find(
        &objects,
        "ClusterRoleBinding",
        "xroad-metrics-adapter:system:auth-delegator",
    );
    assert_eq!(delegator["roleRef"]["name"], "system:auth-delegator");
    let reader = find(
        &objects,
        "RoleBinding",
        "xroad-metrics-adapter:extension-apiserver-authentication-reader",
    );
    assert_eq!(reader["metadata"]["namespace"], "kube-system");
    assert_eq!(
        reader["roleRef"]["name"],
        "extension-apiserver-authentication-reader"
    );
    let hpa = find(
        &objects,
        "ClusterRoleBinding",
        "xroad-metrics-adapter:hpa-controller",
    );
    assert_eq!(
        hpa["subjects"][0]["name"], "horizontal-pod-autoscaler",
        "the HPA controller may read both metrics groups"
    );
}

/// The rules' resources of `group` in `role`.
fn resources_of(role: &Value, group: &str) -> BTreeSet<String> {
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| {
            rule["apiGroups"]
                .as_array()
                .unwrap()
                .contains(&Value::from(group))
        })
        .flat_map(|rule| rule["resources"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_metrics_reader_role_names_exactly_the_metrics_the_adapter_serves() {
    use xroad_metrics_adapter::catalog::{Catalog, DEPLOYMENTS, NAMESPACES, POLICY_METRICS};
    let objects = rendered("deploy");
    let role = find(
        &objects,
        "ClusterRole",
        "xroad-metrics-adapter:metrics-reader",
    );
    let catalog = Catalog::builtin();
    // Namespace metrics are `namespaces/<ns>/metrics/<m>`: resource `metrics`, the metric as its name.
    let custom: BTreeSet<String> = catalog
        .custom_resources()
        .map(|(resource, metric, _)| match resource {
            NAMESPACES => "metrics".to_owned(),
            _ => format!("{resource}/{metric}"),
        })
        .chain(POLICY_METRICS.iter().map(|m| format!("{DEPLOYMENTS}/{m}")))
        .collect();
    assert_eq!(resources_of(role, "custom.metrics.k8s.io"), custom);
    let external: BTreeSet<String> = catalog
        .metrics()
        .iter()
        .map(|m| m.name.clone())
        .chain(POLICY_METRICS.iter().map(|m| m.to_string()))
        .collect();
    assert_eq!(resources_of(role, "external.metrics.k8s.io"), external);
    assert_eq!(
        resources_of(role, "metrics.k8s.io"),
        BTreeSet::from(["pods".to_owned(), "nodes".to_owned()])
    );
}

#[test]
fn apiservices_rank_v1beta2_first_and_always_verify_the_serving_certificate() {
    for dir in ["deploy", "deploy/self-signed", "deploy/examples"] {
        let objects = rendered(dir);
        let apiservices: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "APIService")
            .collect();
        assert!(apiservices.len() >= 2, "{dir}");
        for apiservice in &apiservices {
            let spec = &apiservice["spec"];
            let name = apiservice["metadata"]["name"].as_str().unwrap();
            assert_eq!(
                name,
                format!(
                    "{}.{}",
                    spec["version"].as_str().unwrap(),
                    spec["group"].as_str().unwrap()
                )
            );
            assert!(spec.get("insecureSkipTLSVerify").is_none(), "{dir}: {name}");
            assert_eq!(
                spec["service"],
                serde_json::json!({"namespace": "xroad-metrics", "name": "xroad-metrics-adapter", "port": 443})
            );
            assert_eq!(spec["groupPriorityMinimum"], 100);
            let priority = if name == "v1beta2.custom.metrics.k8s.io" {
                200
            } else {
                100
            };
            assert_eq!(spec["versionPriority"], priority, "{name}");
            let injected = apiservice["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                == "xroad-metrics/xroad-metrics-adapter-tls";
            let bundled = spec["caBundle"].is_string();
            assert!(injected != bundled, "{dir}: {name} trusts exactly one way");
        }
    }
    assert_eq!(
        rendered("deploy/examples")
            .iter()
            .filter(|o| o["kind"] == "APIService" && o["spec"]["group"] == "external.metrics.k8s.io")
            .count(),
        1,
        "the example takes external metrics; the base does not"
    );
}

#[test]
fn the_self_signed_overlay_trusts_the_ca_that_signed_the_serving_certificate_for_the_service_name()
{
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let objects = rendered("deploy/self-signed");
    let secret = find(&objects, "Secret", "xroad-metrics-adapter-tls");
    let decode = |field: &Value| -> Vec<u8> {
        use base64::Engine;
        let text: String = field
            .as_str()
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    };
    let ca = decode(&secret["data"]["ca.crt"]);
    for apiservice in objects.iter().filter(|o| o["kind"] == "APIService") {
        assert_eq!(decode(&apiservice["spec"]["caBundle"]), ca);
    }
    // The aggregator dials xroad-metrics-adapter.xroad-metrics.svc and verifies against caBundle.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let chain: Vec<CertificateDer> =
        CertificateDer::pem_slice_iter(&decode(&secret["data"]["tls.crt"]))
            .collect::<Result<_, _>>()
            .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.into(),
        rustls::crypto::aws_lc_rs::default_provider().into(),
    )
    .build()
    .unwrap();
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &"xroad-metrics-adapter.xroad-metrics.svc"
                .try_into()
                .unwrap(),
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .expect("the serving certificate verifies for the Service name");
}

#[test]
fn custom_resources_have_the_fields_their_operators_need() {
    let objects = rendered("deploy");
    let monitor = find(&objects, "ServiceMonitor", "xroad-metrics-adapter");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "https");
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        endpoint["honorLabels"], true,
        "the per-pod X-Road series keep their own namespace and pod labels"
    );
    assert_eq!(
        endpoint["tlsConfig"]["serverName"],
        "xroad-metrics-adapter.xroad-metrics.svc"
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        find(&objects, "Service", "xroad-metrics-adapter")["metadata"]["labels"]
    );

    let serving = find(&objects, "Certificate", "xroad-metrics-adapter-tls");
    assert_eq!(serving["apiVersion"], "cert-manager.io/v1");
    assert_eq!(serving["spec"]["secretName"], "xroad-metrics-adapter-tls");
    assert!(
        serving["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .contains(&Value::from("xroad-metrics-adapter.xroad-metrics.svc"))
    );
    let issuer = &serving["spec"]["issuerRef"]["name"];
    let ca_issuer = find(&objects, "Issuer", issuer.as_str().unwrap());
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"].as_str().unwrap();
    let ca = objects
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
        .expect("a Certificate makes the CA the issuer signs with");
    assert_eq!(ca["spec"]["isCA"], true);

    let dashboards = find(&objects, "ConfigMap", "xroad-metrics-adapter-dashboards");
    assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboards["data"].as_object().unwrap().len(), 2);
}

#[test]
fn the_example_overlay_configures_the_adapter_from_the_example_file() {
    let objects = rendered("deploy/examples");
    let config = objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("xroad-metrics-adapter-config")
        })
        .unwrap();
    let example =
        std::fs::read_to_string(format!("{ROOT}/deploy/examples/adapter-config.yaml")).unwrap();
    assert_eq!(config["data"]["config.yaml"], example.as_str());
    let deployment = find(&objects, "Deployment", "xroad-metrics-adapter");
    let volume = &deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"];
    assert_eq!(
        volume, &config["metadata"]["name"],
        "the Deployment mounts the generated ConfigMap"
    );
    find(
        &objects,
        "HorizontalPodAutoscaler",
        "security-server-sidecar-secondary",
    );
}

#[test]
fn the_keda_overlay_opens_the_scaler_port_to_keda_and_its_triggers_name_what_the_adapter_serves() {
    use xroad_metrics_adapter::config::Config;
    let objects = rendered("deploy/examples/keda");
    let example =
        std::fs::read_to_string(format!("{ROOT}/deploy/examples/keda/adapter-config.yaml"))
            .unwrap();
    let config = Config::parse("adapter-config.yaml", &example).unwrap();
    assert!(config.grpc.enabled);
    let port = Value::from(config.grpc.port);

    let service = find(&objects, "Service", "xroad-metrics-adapter");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "grpc" && p["port"] == port),
        "{service}"
    );
    let deployment = find(&objects, "Deployment", "xroad-metrics-adapter");
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "grpc" && p["containerPort"] == port)
    );
    let policy = find(&objects, "NetworkPolicy", "xroad-metrics-adapter");
    let to_keda = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["ports"][0]["port"] == port)
        .expect("an ingress rule for the scaler's port");
    assert_eq!(
        to_keda["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "keda"
    );
    assert!(
        !objects.iter().any(|o| o["kind"] == "APIService"
            && o["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"),
        "KEDA keeps external.metrics.k8s.io"
    );

    // Every trigger's metadata reads as the scaler reads it, and names a metric or policy the adapter serves.
    let catalog = xroad_metrics_adapter::catalog::Catalog::with_throughput(config.throughput);
    let scaled = find(
        &objects,
        "ScaledObject",
        "security-server-sidecar-secondary",
    );
    let triggers = scaled["spec"]["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 3);
    for trigger in triggers {
        assert_eq!(trigger["type"], "external");
        let address = trigger["metadata"]["scalerAddress"].as_str().unwrap();
        assert!(address.ends_with(&format!(":{port}")), "{address}");
        let metadata = trigger["metadata"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let parsed = xroad_metrics_adapter::grpc::metadata::parse("sidecar", &metadata).unwrap();
        match parsed.subject {
            xroad_metrics_adapter::grpc::metadata::Subject::Pods { metric, .. } => {
                assert!(catalog.pod_metric(&metric).is_some(), "{metric}")
            }
            xroad_metrics_adapter::grpc::metadata::Subject::Policy { name } => assert!(
                config.scale_on_failure.iter().any(|p| p.name == name),
                "{name}"
            ),
        }
    }
}
