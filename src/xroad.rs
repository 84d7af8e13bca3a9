//! X-Road message throughput: the op-monitor client and its wire format, attribution of records to pods,
//! and the counters the adapter exports for Prometheus to scrape (`../shared/reference/xroad.md`).

pub mod attribution;
pub mod collector;
pub mod election;
pub mod protocol;
