//! The syntax of Kubernetes object names (RFC 1123 labels and subdomains, as `k8s.io/apimachinery`'s
//! `IsDNS1123Label` and `IsDNS1123Subdomain` check them). Pure.
//!
//! A name from a request path is checked here before it goes anywhere near a query: a valid name holds only
//! `[a-z0-9.-]`, so it can never close a PromQL string or change a regex beyond its `.`s.

/// An RFC 1123 label: at most 63 lower-case alphanumerics or `-`, starting and ending with an alphanumeric.
/// The syntax of namespace names.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// An RFC 1123 subdomain: RFC 1123 labels joined by `.`, at most 253 long. The syntax of pod, node,
/// Deployment and most other object names.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short_lower_case_and_hyphenated_inside() {
        for good in ["a", "sidecar", "x-road-1", "0", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "a b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn subdomains_are_labels_joined_by_dots() {
        for good in ["ip-10-0-0-1.ec2.internal", "sidecar-7d9f-abcde", "a.b"] {
            assert!(is_dns_subdomain(good), "{good}");
        }
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        for bad in [
            "", ".", "..", "a..b", ".a", "a.", "x\"}", "a/b", "a%2Fb", &long,
        ] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
