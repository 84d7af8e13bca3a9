//! xroad-metrics-adapter: an aggregated Kubernetes API server that serves `custom.metrics.k8s.io`
//! (v1beta1, v1beta2) and `external.metrics.k8s.io` (v1beta1) to the Horizontal Pod Autoscaler, computed from
//! a Prometheus-compatible backend, for X-Road Security Server Sidecar deployments.
//!
//! Pure modules do no I/O: `selector`, `quantity`, `duration`, `names`, `promql`, `catalog`, `policy` (but
//! `policy::runner`), `hpa`, `apis`, `compat` and `config` (whose `load` reads one file through `files`);
//! `error_chain` and `error` shape failures. `source`, `cache`, `inventory`, `pod_health`, `policy::runner`,
//! `xroad`, `auth`, `adapter_rules`, `telemetry`, `server` and `explain` sit at the edges; `app` builds the running
//! adapter from them, and `cli` parses the command line and prints.
#![forbid(unsafe_code)]

pub mod adapter_rules;
pub mod apis;
pub mod app;
pub mod auth;
pub mod backends;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod compat;
pub mod config;
pub mod duration;
pub mod error;
pub mod error_chain;
pub mod explain;
pub mod files;
pub mod grpc;
pub mod hpa;
pub mod inventory;
pub mod names;
pub mod pod_health;
pub mod policy;
pub mod promql;
pub mod quantity;
pub mod selector;
pub mod server;
pub mod source;
pub mod telemetry;
pub mod xroad;

/// Seconds since the Unix epoch (0 should the clock read earlier): the time stamps of served values,
/// policy decisions and op-monitor windows.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
