//! The pod and Deployment watchers against a fake of the kube API (no kube-apiserver can run here): it answers
//! the watcher's LIST with a `PodList`/`DeploymentList` and its WATCH with a stream of JSON watch events,
//! the wire shapes of `GET /api/v1/pods` and `?watch=true` (`../shared/reference/kubernetes-contract.md`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use futures::StreamExt;
use serde_json::{Value, json};
use xroad_metrics_adapter::inventory::{self, PodInventory};
use xroad_metrics_adapter::selector::LabelSelector;

fn pod(name: &str, ready: bool, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "sidecar", "resourceVersion": "5",
                        "labels": {"run": "security-server-sidecar-secondary"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "security-server-sidecar-secondary-7d9f8", "uid": "u"}]},
           "status": {"phase": "Running", "podIP": ip,
                      "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

#[derive(Clone)]
struct Fake {
    list: Value,
    events: Vec<Value>,
}

async fn serve(
    State(fake): State<Fake>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let lines: String = fake.events.iter().map(|e| format!("{e}\n")).collect();
        // The events, then an open stream, as a watch that has nothing more to say.
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(lines) })
            .chain(futures::stream::pending());
        return (
            [("content-type", "application/json")],
            axum::body::Body::from_stream(stream),
        )
            .into_response();
    }
    axum::Json(fake.list).into_response()
}

async fn fake_kube(routes: Vec<(&'static str, Fake)>) -> kube::Client {
    let mut app = axum::Router::new();
    for (path, fake) in routes {
        app = app.route(path, axum::routing::get(serve).with_state(fake));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn the_pod_watch_syncs_the_list_then_applies_changes_and_deletions() {
    let pods = Fake {
        list: json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"},
                     "items": [pod("secondary-a", true, "10.42.0.11"), pod("secondary-b", true, "10.42.0.12")]}),
        events: vec![
            json!({"type": "MODIFIED", "object": pod("secondary-a", false, "10.42.0.11")}),
            json!({"type": "DELETED", "object": pod("secondary-b", true, "10.42.0.12")}),
            json!({"type": "ADDED", "object": pod("secondary-c", true, "10.42.0.13")}),
        ],
    };
    let deployments = Fake {
        list: json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {"resourceVersion": "10"},
                     "items": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                "metadata": {"name": "security-server-sidecar-secondary", "namespace": "sidecar", "resourceVersion": "3"},
                                "spec": {"replicas": 3, "selector": {"matchLabels": {"run": "security-server-sidecar-secondary"}},
                                         "template": {"metadata": {"labels": {"run": "security-server-sidecar-secondary"}}}}}]}),
        events: vec![],
    };
    let client = fake_kube(vec![
        ("/api/v1/pods", pods),
        ("/apis/apps/v1/deployments", deployments),
    ])
    .await;
    let inventory = Arc::new(PodInventory::new());
    tokio::spawn(inventory::watch(client.clone(), vec![], inventory.clone()));
    tokio::spawn(inventory::watch_deployments(
        client,
        vec![],
        inventory.clone(),
    ));

    eventually("the initial list", || inventory.is_synced()).await;
    eventually("the watch events", || {
        let names: Vec<String> = inventory
            .select("sidecar", &LabelSelector::everything())
            .iter()
            .map(|p| p.name.clone())
            .collect();
        names == ["secondary-a", "secondary-c"]
    })
    .await;
    let a = inventory.get("sidecar", "secondary-a").unwrap();
    assert!(!a.ready, "MODIFIED applied");
    assert_eq!(
        a.deployment.as_deref(),
        Some("security-server-sidecar-secondary"),
        "attributed through the ReplicaSet name"
    );
    eventually("the Deployment", || {
        inventory
            .deployment("sidecar", "security-server-sidecar-secondary")
            .is_some()
    })
    .await;
    assert_eq!(
        inventory
            .deployment("sidecar", "security-server-sidecar-secondary")
            .unwrap()
            .replicas,
        3
    );
}
