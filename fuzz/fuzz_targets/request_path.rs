//! Any request path: routing and authorization-attribute parsing never panic, every routed namespace is a
//! valid DNS label or `*`, and a routed metric request is always a resource request for the SAR.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::auth::attributes::Attributes;
use xroad_metrics_adapter::server::routes::{Route, route};

fuzz_target!(|input: (&str, Option<&str>)| {
    let (path, query) = input;
    let attributes = Attributes::of(&Method::GET, path, query);
    let _ = attributes.forbidden_message("fuzz", "");
    match route(path) {
        Ok(Route::External { namespace, .. }) => {
            assert!(
                namespace
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            );
            assert!(matches!(attributes, Attributes::Resource(_)));
        }
        Ok(Route::Custom(request)) => {
            assert!(!request.metric.contains('/'));
            assert!(matches!(attributes, Attributes::Resource(_)));
        }
        _ => {}
    }
});
