//! Any text: the selector parser never panics, and whatever parses prints to a selector that parses to the
//! same thing (Go `labels.Parse` round trip), and renders to PromQL matchers or a clean error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::promql;
use xroad_metrics_adapter::selector::LabelSelector;

fuzz_target!(|text: &str| {
    if let Ok(selector) = text.parse::<LabelSelector>() {
        let printed = selector.to_string();
        let reparsed: LabelSelector = printed
            .parse()
            .unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) does not parse: {e}"));
        assert_eq!(reparsed, selector, "round trip of {text:?}");
        if let Ok(matchers) = promql::matchers(&selector) {
            for matcher in matchers {
                assert!(
                    !matcher.contains('\n') && !matcher.contains('}'),
                    "{matcher:?}"
                );
            }
        }
    }
});
