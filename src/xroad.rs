//! X-Road message throughput: the op-monitor client and its wire format, attribution of records to pods,
//! and the counters the adapter exports for Prometheus to scrape (X-Road's PR-OPMON, UG-SS and the Sidecar user guide).

pub mod attribution;
pub mod collector;
pub mod election;
pub mod protocol;
