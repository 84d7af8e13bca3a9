//! Durations as operators write them (`500ms`, `2m`, `1h30m`) and as Kubernetes serialises them (Go's
//! `time.Duration` text). Pure; a leaf.

use std::time::Duration;

/// Reads a duration as the configuration and the flags take it.
///
/// ```
/// use std::time::Duration;
/// use xroad_metrics_adapter::duration::parse;
/// assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
/// assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
/// assert!(parse("soon").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let signed: k8s_openapi::jiff::SignedDuration = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a valid duration (use e.g. 500ms, 15s, 2m, 1h30m)")
    })?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} must not be negative"))
}

/// A Go `time.Duration` string, as `metav1.Duration` serialises: `30s`, `3m0s`, `1h0m0s`.
pub fn go(duration: Duration) -> String {
    let total = duration.as_secs();
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}
