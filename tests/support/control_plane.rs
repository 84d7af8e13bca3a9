//! A real Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver with the aggregation layer and
//! RBAC, and kube-controller-manager running only the Deployment, ReplicaSet, HPA and ServiceAccount
//! controllers, built by `scripts/control-plane.sh build` (Kubernetes v1.37.2). With no scheduler and no kubelet,
//! [`ControlPlane::kubelet`] binds pods and reports their status through the API as a kubelet would.
//!
//! The aggregator reaches the adapter through an `ExternalName` Service naming `localhost`, with
//! `--enable-aggregator-routing=false`: endpoint addresses may not be loopback, and no other address of this
//! machine is one a test may use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::pki::{Ca, Leaf};
use super::{free_port, require_tool};

pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The cluster CA: serving certificates and client certificates.
    pub ca: Ca,
    pub front_proxy_ca: Ca,
    pub admin: PathBuf,
    /// Where the built binaries are, the peers' (metrics-server, the Prometheus Adapter) included.
    pub bin: PathBuf,
    children: Vec<Child>,
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

/// Builds the binaries (or reuses them) and says where they are.
fn binaries() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(root.join("scripts/control-plane.sh"))
        .arg("build")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/control-plane.sh build failed; it needs the Go toolchain (1.26+) and the Go module proxy"
    );
    root.join(String::from_utf8(output.stdout).unwrap().trim())
}

impl ControlPlane {
    pub async fn start() -> Self {
        let bin = binaries();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_owned();
        let path = |name: &str| base.join(name);
        let ca = Ca::new("kubernetes");
        let front_proxy_ca = Ca::new("front-proxy-ca");
        let ca_file = write(&path("ca.crt"), &ca.pem);
        let serving = ca.server(&["127.0.0.1", "localhost", "kubernetes.default.svc"]);
        let proxy = front_proxy_ca.client("front-proxy-client", &[]);
        let service_account = rcgen::KeyPair::generate().unwrap();
        write(&path("apiserver.crt"), &serving.cert_pem);
        write(&path("apiserver.key"), &serving.key_pem);
        write(&path("front-proxy-ca.crt"), &front_proxy_ca.pem);
        write(&path("front-proxy-client.crt"), &proxy.cert_pem);
        write(&path("front-proxy-client.key"), &proxy.key_pem);
        write(&path("sa.key"), &service_account.serialize_pem());
        write(&path("sa.pub"), &service_account.public_key_pem());

        let etcd_port = free_port();
        let api_port = free_port();
        let url = format!("https://127.0.0.1:{api_port}");
        let log = |name: &str| std::fs::File::create(path(&format!("{name}.log"))).unwrap();
        let mut children = vec![];
        children.push(
            Command::new(bin.join("etcd"))
                .arg("--data-dir")
                .arg(path("etcd"))
                .args([
                    format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{}", free_port()),
                    "--unsafe-no-fsync".into(),
                ])
                .stdout(Stdio::null())
                .stderr(log("etcd"))
                .spawn()
                .unwrap(),
        );
        let file = |name: &str| path(name).to_str().unwrap().to_owned();
        children.push(
            Command::new(bin.join("kube-apiserver"))
                .args([
                    format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                    format!("--secure-port={api_port}"),
                    "--bind-address=127.0.0.1".into(),
                    "--advertise-address=127.0.0.1".into(),
                    // The `kubernetes` Service's endpoint would be this loopback address, which is refused.
                    "--endpoint-reconciler-type=none".into(),
                    format!("--tls-cert-file={}", file("apiserver.crt")),
                    format!("--tls-private-key-file={}", file("apiserver.key")),
                    format!("--client-ca-file={}", file("ca.crt")),
                    "--service-account-issuer=https://kubernetes.default.svc".into(),
                    format!("--service-account-key-file={}", file("sa.pub")),
                    format!("--service-account-signing-key-file={}", file("sa.key")),
                    "--service-cluster-ip-range=10.96.0.0/16".into(),
                    "--authorization-mode=RBAC".into(),
                    format!(
                        "--requestheader-client-ca-file={}",
                        file("front-proxy-ca.crt")
                    ),
                    "--requestheader-allowed-names=front-proxy-client".into(),
                    "--requestheader-username-headers=X-Remote-User".into(),
                    "--requestheader-group-headers=X-Remote-Group".into(),
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
                    format!(
                        "--proxy-client-cert-file={}",
                        file("front-proxy-client.crt")
                    ),
                    format!("--proxy-client-key-file={}", file("front-proxy-client.key")),
                    "--enable-aggregator-routing=false".into(),
                    format!("--cert-dir={}", file("apiserver-certs")),
                ])
                .stdout(Stdio::null())
                .stderr(log("kube-apiserver"))
                .spawn()
                .unwrap(),
        );
        let mut plane = Self {
            url,
            admin: PathBuf::new(),
            bin: bin.clone(),
            ca,
            front_proxy_ca,
            children,
            dir,
        };
        plane.admin = plane.kubeconfig_for("admin", &["system:masters"]);
        let controllers = plane.kubeconfig_for("system:kube-controller-manager", &[]);
        plane.wait_ready().await;
        plane.children.push(
            Command::new(bin.join("kube-controller-manager"))
                .arg(format!("--kubeconfig={}", controllers.display()))
                .args([
                    "--controllers=deployment-controller,replicaset-controller,horizontal-pod-autoscaler-controller,serviceaccount-controller",
                    "--horizontal-pod-autoscaler-sync-period=2s",
                    "--use-service-account-credentials=true",
                    "--leader-elect=false",
                    "--secure-port=0",
                ])
                .arg(format!("--root-ca-file={}", ca_file.display()))
                .stdout(Stdio::null())
                .stderr(log("kube-controller-manager"))
                .spawn()
                .unwrap(),
        );
        plane
    }

    /// A kubeconfig authenticating with a client certificate for `user` in `groups`.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> PathBuf {
        let leaf = self.ca.client(user, groups);
        self.kubeconfig(&user.replace(':', "-"), &leaf)
    }

    fn kubeconfig(&self, name: &str, leaf: &Leaf) -> PathBuf {
        let cert = write(&self.dir.path().join(format!("{name}.crt")), &leaf.cert_pem);
        let key = write(&self.dir.path().join(format!("{name}.key")), &leaf.key_pem);
        self.write_kubeconfig(
            name,
            &format!(
                "{{client-certificate: {}, client-key: {}}}",
                cert.display(),
                key.display()
            ),
        )
    }

    /// A kubeconfig authenticating with a bearer token.
    pub fn kubeconfig_with_token(&self, name: &str, token: &str) -> PathBuf {
        self.write_kubeconfig(name, &format!("{{token: {token}}}"))
    }

    fn write_kubeconfig(&self, name: &str, user: &str) -> PathBuf {
        write(
            &self.dir.path().join(format!("{name}.kubeconfig")),
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster: {{server: {}, certificate-authority: {}}}\n\
                 users:\n- name: u\n  user: {user}\ncontexts:\n- name: real\n  context: {{cluster: real, user: u}}\ncurrent-context: real\n",
                self.url,
                self.dir.path().join("ca.crt").display()
            ),
        )
    }

    async fn wait_ready(&mut self) {
        for _ in 0..600 {
            for child in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "a control-plane process exited ({status}):\n{}\n{}",
                        self.log("etcd"),
                        self.log("kube-apiserver")
                    );
                }
            }
            let output = self.kubectl(&self.admin, &["get", "--raw", "/readyz"]);
            if output.status.success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "kube-apiserver did not become ready:\n{}",
            self.log("kube-apiserver")
        );
    }

    pub fn log(&self, component: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{component}.log")))
            .unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The real kubectl with `kubeconfig`.
    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
        let kubectl = require_tool(
            "kubectl",
            "install kubectl (Debian: apt-get install -y kubernetes-client)",
        );
        Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("HOME", self.dir.path())
            .output()
            .unwrap()
    }

    /// kubectl as admin, which must succeed; its standard output.
    pub fn admin(&self, args: &[&str]) -> String {
        let output = self.kubectl(&self.admin, args);
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `kubectl apply` of a manifest given as text.
    pub fn apply(&self, manifest: &str) {
        let file = self
            .dir
            .path()
            .join(format!("manifest-{}.yaml", uuid_like()));
        std::fs::write(&file, manifest).unwrap();
        self.admin(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// A serving certificate and key for `service` in `namespace`, signed by the cluster CA, written next to
    /// the control plane's files; their paths.
    pub fn serving_files(&self, service: &str, namespace: &str) -> (String, String) {
        let leaf = self
            .ca
            .server(&[&format!("{service}.{namespace}.svc"), "localhost"]);
        let path = |ext: &str| self.dir.path().join(format!("{service}.{ext}"));
        write(&path("crt"), &leaf.cert_pem);
        write(&path("key"), &leaf.key_pem);
        let text = |ext: &str| path(ext).to_str().unwrap().to_owned();
        (text("crt"), text("key"))
    }

    /// The flags every Kubernetes generic apiserver takes to serve as `service` in `namespace` on `port`:
    /// a serving certificate of the cluster CA, and delegated authentication and authorization as the admin.
    pub fn serving_flags(&self, service: &str, namespace: &str, port: u16) -> Vec<String> {
        let (cert, key) = self.serving_files(service, namespace);
        let admin = self.admin.to_str().unwrap();
        vec![
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--tls-cert-file={cert}"),
            format!("--tls-private-key-file={key}"),
            format!("--authentication-kubeconfig={admin}"),
            format!("--authorization-kubeconfig={admin}"),
        ]
    }

    /// [`ControlPlane::route_apis`], then waits until the APIServices are `Available`.
    pub async fn register_apis(&self, service: &str, namespace: &str, port: u16, apis: &[&str]) {
        self.route_apis(service, namespace, port, apis);
        for api in apis {
            let mut tries = 0;
            while !self.available(api) {
                tries += 1;
                assert!(
                    tries < 600,
                    "{api} not Available through {service} within 60 s; its log:\n{}\n\nkube-apiserver:\n{}",
                    self.log(service),
                    self.log("kube-apiserver")
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Routes each `version.group` of `apis` through the aggregator to the server listening on `port`: an
    /// `ExternalName` Service `service` in `namespace` and APIServices trusting the cluster CA.
    pub fn route_apis(&self, service: &str, namespace: &str, port: u16, apis: &[&str]) {
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&self.ca.pem);
        self.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {service}, namespace: {namespace}}}\n\
             spec: {{type: ExternalName, externalName: localhost, ports: [{{port: {port}}}]}}\n"
        ));
        for api in apis {
            let (version, group) = api.split_once('.').unwrap();
            self.apply(&format!(
                "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {{name: {api}}}\n\
                 spec: {{group: {group}, version: {version}, groupPriorityMinimum: 100, versionPriority: 100,\n  \
                 service: {{namespace: {namespace}, name: {service}, port: {port}}}, caBundle: {ca_bundle}}}\n"
            ));
        }
    }

    /// Whether the APIService `name` is `Available`.
    pub fn available(&self, name: &str) -> bool {
        self.availability(name) == "True"
    }

    /// The status of the APIService `name`'s `Available` condition: `True`, `False`, or empty before the
    /// aggregator has checked it.
    pub fn availability(&self, name: &str) -> String {
        self.admin(&[
            "get",
            "apiservice",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ])
    }

    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.admin).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

/// A server process of a test, killed when dropped, so a failing test leaves nothing running.
pub struct Process(pub Child);

impl Process {
    /// Starts `program` with `args` in `dir`, its standard error into `dir/<log>.log`.
    pub fn start(program: &Path, args: &[String], dir: &Path, log: &str) -> Self {
        let stderr = std::fs::File::create(dir.join(format!("{log}.log"))).unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Self(child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the stand-in kubelet reports: pods it runs, and which of them crash-loop.
#[derive(Default)]
pub struct Kubelet {
    /// Running pods of the namespace, by name.
    pub running: Mutex<BTreeSet<String>>,
    /// Pods reported in `CrashLoopBackOff`.
    pub crashing: Mutex<BTreeSet<String>>,
}

impl Kubelet {
    /// Binds every new pod of `namespace` to `node-1` and reports it Running and Ready (or crash-looping),
    /// as a kubelet would, until the process ends.
    pub fn spawn(client: kube::Client, namespace: &str) -> Arc<Self> {
        let kubelet = Arc::new(Self::default());
        let me = kubelet.clone();
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        tokio::spawn(async move {
            let mut next_ip = 10;
            let mut reported: std::collections::HashMap<String, (String, bool)> =
                Default::default();
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    let mut running = BTreeSet::new();
                    for pod in list.items {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        if pod.metadata.deletion_timestamp.is_some() {
                            continue;
                        }
                        if pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .is_none()
                        {
                            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                                 "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
                            let _ = pods
                                .create_subresource::<_, serde_json::Value>(
                                    "binding",
                                    &name,
                                    &PostParams::default(),
                                    &binding,
                                )
                                .await;
                        }
                        let crashing = me.crashing.lock().unwrap().contains(&name);
                        let ip = reported
                            .get(&name)
                            .map(|(ip, _)| ip.clone())
                            .unwrap_or_else(|| {
                                next_ip += 1;
                                format!("10.42.0.{next_ip}")
                            });
                        if reported.get(&name) != Some(&(ip.clone(), crashing)) {
                            let state = if crashing {
                                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}})
                            } else {
                                json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
                            };
                            let ready = if crashing { "False" } else { "True" };
                            // As the kubelet does: the Ready condition changes now.
                            let now = k8s_openapi::jiff::Timestamp::from_second(
                                k8s_openapi::jiff::Timestamp::now().as_second(),
                            )
                            .unwrap()
                            .to_string();
                            let status = json!({"status": {
                                "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.1",
                                "startTime": "2026-01-01T00:00:00Z",
                                "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": now}],
                                "containerStatuses": [{"name": "security-server", "ready": !crashing,
                                    "restartCount": if crashing { 5 } else { 0 },
                                    "image": "niis/xroad-security-server-sidecar:7.6.2", "imageID": "", "state": state}]}});
                            if pods
                                .patch_status(
                                    &name,
                                    &PatchParams::default(),
                                    &Patch::Merge(&status),
                                )
                                .await
                                .is_ok()
                            {
                                reported.insert(name.clone(), (ip, crashing));
                            }
                        }
                        running.insert(name);
                    }
                    *me.running.lock().unwrap() = running;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        kubelet
    }
}
