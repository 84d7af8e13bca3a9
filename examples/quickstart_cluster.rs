//! The quick start's cluster (`scripts/quickstart.sh --cluster`): the tests' fake kube API holding the
//! Sidecar's Secondary Deployment and its three pods, for the adapter to list and watch as it would in a
//! cluster. It writes a kubeconfig for it, then after `--crash-after` seconds reports Secondary B in
//! `CrashLoopBackOff` through the watch, as a kubelet would, and runs until killed.
//!
//! A stand-in for a cluster, not a cluster: `scripts/control-plane.sh` runs the real kube-apiserver.

#[path = "../tests/support/fake_kube.rs"]
#[allow(dead_code, unreachable_pub)]
mod fake_kube;
#[path = "../tests/support/traffic.rs"]
mod traffic;

use std::time::Duration;

use fake_kube::{FakeKube, objects};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(kubeconfig_dir), Some(crash_after)) = (args.next(), args.next()) else {
        eprintln!("usage: quickstart_cluster KUBECONFIG_DIR CRASH_AFTER_SECONDS");
        std::process::exit(2);
    };
    let crash_after: u64 = crash_after.parse().expect("seconds");
    let (kube, _) = FakeKube::start().await;
    let pods = [
        (traffic::SECONDARY_A, "10.42.0.11"),
        (traffic::SECONDARY_B, "10.42.0.12"),
        (traffic::SECONDARY_C, "10.42.0.13"),
    ];
    for (name, ip) in pods {
        kube.apply("pods", objects::secondary_pod(traffic::NAMESPACE, name, ip));
    }
    kube.apply(
        "deployments",
        objects::secondary_deployment(traffic::NAMESPACE, 3),
    );
    let path = kube.kubeconfig(std::path::Path::new(&kubeconfig_dir));
    println!("{}", path.display());
    tokio::time::sleep(Duration::from_secs(crash_after)).await;
    let b = kube
        .object("pods", traffic::NAMESPACE, traffic::SECONDARY_B)
        .unwrap();
    kube.apply("pods", objects::crash_looping(b));
    eprintln!("{} is now in CrashLoopBackOff", traffic::SECONDARY_B);
    std::future::pending::<()>().await;
}
