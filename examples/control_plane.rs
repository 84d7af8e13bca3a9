//! `scripts/control-plane.sh up`: the tests' real control plane (etcd, kube-apiserver with the aggregation
//! layer, kube-controller-manager's Deployment, ReplicaSet and HPA controllers) on loopback, until Ctrl-C, for
//! trying the adapter against it by hand. Pods need binding and a status, as `tests/control_plane.rs` does:
//! there is no scheduler or kubelet.

#[path = "../tests/support/control_plane.rs"]
#[allow(dead_code, unreachable_pub)]
mod control_plane;
#[path = "../tests/support/pki.rs"]
#[allow(dead_code, unreachable_pub)]
mod pki;
#[path = "../tests/support/tools.rs"]
#[allow(dead_code, unreachable_pub)]
mod tools;
use tools::{free_port, require_tool};

#[tokio::main]
async fn main() {
    let plane = control_plane::ControlPlane::start().await;
    println!("kube-apiserver is up at {}", plane.url);
    println!(
        "  kubectl --kubeconfig {} get --raw /readyz",
        plane.admin.display()
    );
    println!(
        "  front-proxy CA (for the adapter's --requestheader-client-ca-file): {}/front-proxy-ca.crt",
        plane.dir.path().display()
    );
    println!(
        "logs and certificates in {}; Ctrl-C stops it",
        plane.dir.path().display()
    );
    tokio::signal::ctrl_c().await.unwrap();
}
