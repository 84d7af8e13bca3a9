//! Any bytes as an op-monitor answer, under either content type: the parser returns records or an error,
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::xroad::protocol::parse_response;

fuzz_target!(|data: &[u8]| {
    let _ = parse_response("text/xml; charset=utf-8", data);
    let _ = parse_response(
        "multipart/related; type=\"text/xml\"; boundary=xroadB",
        data,
    );
});
