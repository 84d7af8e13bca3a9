//! Error chains reduced to what is worth showing: the innermost cause, without the URL an HTTP client's outer
//! text embeds (and the credentials it could carry). A leaf: it imports nothing of the crate.

/// The innermost cause of an error chain: "Connection refused (os error 111)" rather than an HTTP client's
/// outer text, which embeds the full URL.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Why an HTTP request failed, without the URL reqwest's own text embeds: it timed out, its innermost cause,
/// or the HTTP status it was refused with.
pub fn transport_cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    match (std::error::Error::source(error), error.status()) {
        (Some(_), _) => root_cause(error),
        (None, Some(status)) => format!("HTTP {status}"),
        (None, None) => "request failed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("GET https://user:secret@example.invalid/api failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_innermost_cause_is_kept_and_the_outer_url_dropped() {
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert_eq!(root_cause(&error), "Connection refused (os error 111)");
    }
}
