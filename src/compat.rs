//! Compatibility with Prometheus Adapter configurations (the Prometheus Adapter's docs/config.md and its naming and resource code):
//! the pieces that need no I/O, each tested on its own.

pub mod discovery;
pub mod naming;
pub mod query;
pub mod resource_metrics;
pub mod resources;
pub mod rules;
pub mod template;
