//! Prints the quick start's sample data (the integration tests' Sidecar traffic) as OpenMetrics, timestamped
//! around now, for `promtool tsdb create-blocks-from openmetrics`.

#[path = "../tests/support/traffic.rs"]
mod traffic;

fn main() {
    print!("{}", traffic::openmetrics(&traffic::sidecar_traffic()));
}
