//! Any bytes, with any HTTP status, as a metrics backend's answer: decoded or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::source::envelope::Envelope;

fuzz_target!(|input: (u16, &[u8])| {
    let (status, body) = input;
    let _ = Envelope::decode(body, status);
});
