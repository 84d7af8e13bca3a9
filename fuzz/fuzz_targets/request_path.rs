//! Any request path: routing never panics, and every routed namespace is a valid DNS label or `*`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::server::routes::{Route, route};

fuzz_target!(|path: &str| {
    if let Ok(Route::External { namespace, .. }) = route(path) {
        assert!(
            namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }
    if let Ok(Route::Custom(request)) = route(path) {
        assert!(!request.metric.contains('/'));
    }
});
