//! The paths every Kubernetes component answers besides its APIs: `/api`, `/version` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, json};

/// `/api`: no core group here. kubectl's discovery starts with `/api`, so answering it (empty) lets kubectl talk
/// to the adapter directly, as the quick start and `kubectl top` against a lone adapter do; behind the
/// aggregator this path is never forwarded.
pub(super) async fn core_api_versions() -> Response {
    json(
        serde_json::json!({"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []}),
    )
}

/// `/version`, as Kubernetes components answer it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionInfo {
    major: &'static str,
    minor: &'static str,
    git_version: String,
    git_commit: &'static str,
    git_tree_state: &'static str,
    build_date: &'static str,
    go_version: &'static str,
    compiler: &'static str,
    platform: String,
}

pub(super) async fn version() -> Response {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json(VersionInfo {
        major: env!("CARGO_PKG_VERSION_MAJOR"),
        minor: env!("CARGO_PKG_VERSION_MINOR"),
        git_version: format!("v{}", env!("CARGO_PKG_VERSION")),
        git_commit: option_env!("XROAD_METRICS_ADAPTER_GIT_COMMIT").unwrap_or(""),
        git_tree_state: "",
        build_date: "",
        go_version: "",
        compiler: "rustc",
        platform: format!("{}/{arch}", std::env::consts::OS),
    })
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
