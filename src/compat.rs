//! Compatibility with Prometheus Adapter configurations (`../shared/reference/prometheus-adapter-compat.md`):
//! the pieces that need no I/O, each tested on its own.

pub mod discovery;
pub mod naming;
pub mod query;
pub mod resource_metrics;
pub mod resources;
pub mod rules;
pub mod template;
