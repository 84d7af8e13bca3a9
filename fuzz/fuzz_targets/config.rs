//! Any file content: the configuration parser returns a config or an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::config::Config;

fuzz_target!(|text: &str| {
    let _ = Config::parse("fuzz.yaml", text);
});
