//! PromQL text built from untrusted input: label-value escaping, label-name checks, matcher rendering.
//!
//! Every value that reaches a query passes through here, so a label selector can never change the shape of a
//! query. This module does no I/O.

use std::fmt::Write as _;

use kube::core::Expression;

use crate::selector::{LabelSelector, Requirement};

/// Why a selector cannot be expressed as PromQL matchers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// `>` and `<` compare integers; PromQL matchers cannot.
    #[error("operator not supported for metric selectors: {0}")]
    UnsupportedOperator(&'static str),
    /// Kubernetes keys may hold `/`, `.` and `-`; Prometheus label names may not.
    #[error("label name {0:?} is not a valid Prometheus label name")]
    InvalidLabelName(String),
}

/// Quotes `value` as a PromQL string literal (Go `%q` style: `"`, `\` and control characters escaped).
///
/// ```
/// use xroad_metrics_adapter::promql::quote;
/// assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
/// assert_eq!(quote("x\ny}"), r#""x\ny}""#);
/// ```
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Escapes RE2 metacharacters so that `value` matches itself literally inside `=~`.
pub fn regex_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(
            c,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The inside of a double-quoted PromQL string holding a regex that matches exactly `values`: each value
/// regex-escaped, joined with `|`, then string-escaped. This is the form of the Prometheus Adapter's
/// `.LabelValuesByName`, which its rules place in `label=~"<<index .LabelValuesByName "pod">>"`.
///
/// ```
/// use xroad_metrics_adapter::promql::regex_alternation_in_string;
/// assert_eq!(regex_alternation_in_string(["a.b", "c"]), r"a\\.b|c");
/// assert_eq!(regex_alternation_in_string([r#"x"}"#]), r#"x\"\\}"#);
/// ```
pub fn regex_alternation_in_string<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let regex = values
        .into_iter()
        .map(regex_literal)
        .collect::<Vec<_>>()
        .join("|");
    let quoted = quote(&regex);
    quoted[1..quoted.len() - 1].to_owned()
}

/// True for `[a-zA-Z_][a-zA-Z0-9_]*`, the Prometheus label-name syntax.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn label_name(name: &str) -> Result<&str, MatcherError> {
    if is_label_name(name) {
        Ok(name)
    } else {
        Err(MatcherError::InvalidLabelName(name.to_owned()))
    }
}

/// `name="value"` with the value escaped; `name` must be a constant known to be valid.
pub fn equal(name: &str, value: &str) -> String {
    debug_assert!(is_label_name(name));
    format!("{name}={}", quote(value))
}

fn alternation(values: &std::collections::BTreeSet<String>) -> String {
    values
        .iter()
        .map(|v| regex_literal(v))
        .collect::<Vec<_>>()
        .join("|")
}

/// Renders a metric-label selector as PromQL matchers, in key order, following the Prometheus Adapter's
/// mapping (the Prometheus Adapter's docs/config.md and its naming and resource code) but with values regex-escaped inside `=~`.
///
/// ```
/// use xroad_metrics_adapter::{promql::matchers, selector::LabelSelector};
/// let s: LabelSelector = "succeeded=true,service_code in (getRandom,listClients)".parse().unwrap();
/// assert_eq!(matchers(&s).unwrap(), vec![
///     r#"service_code=~"getRandom|listClients""#.to_string(),
///     r#"succeeded="true""#.to_string(),
/// ]);
/// ```
pub fn matchers(selector: &LabelSelector) -> Result<Vec<String>, MatcherError> {
    selector
        .requirements()
        .iter()
        .map(|requirement| {
            let expression = match requirement {
                Requirement::GreaterThan(..) => return Err(MatcherError::UnsupportedOperator(">")),
                Requirement::LessThan(..) => return Err(MatcherError::UnsupportedOperator("<")),
                Requirement::Label(expression) => expression,
            };
            Ok(match expression {
                Expression::Equal(k, v) => format!("{}={}", label_name(k)?, quote(v)),
                Expression::NotEqual(k, v) => format!("{}!={}", label_name(k)?, quote(v)),
                Expression::In(k, vs) => format!("{}=~{}", label_name(k)?, quote(&alternation(vs))),
                Expression::NotIn(k, vs) => {
                    format!("{}!~{}", label_name(k)?, quote(&alternation(vs)))
                }
                Expression::Exists(k) => format!("{}!=\"\"", label_name(k)?),
                Expression::DoesNotExist(k) => format!("{}=\"\"", label_name(k)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(s: &str) -> LabelSelector {
        s.parse().unwrap()
    }

    #[test]
    fn hostile_values_stay_inside_their_string_literal() {
        assert_eq!(
            quote(r#"x"} or vector(1) or {a=""#),
            r#""x\"} or vector(1) or {a=\"""#
        );
        assert_eq!(quote("a\\"), r#""a\\""#);
        assert_eq!(quote("line\nbreak\r\t"), r#""line\nbreak\r\t""#);
        assert_eq!(quote("nul\u{0}bell\u{7}"), r#""nul\u0000bell\u0007""#);
        assert_eq!(quote("ünïcødé"), "\"ünïcødé\"");
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        assert_eq!(regex_literal("pod-1.a"), r"pod-1\.a");
        assert_eq!(regex_literal("a|b(c)*"), r"a\|b\(c\)\*");
    }

    #[test]
    fn every_selector_form_has_its_matcher() {
        let rendered = matchers(&selector("a=1,b!=2,c in (x.y),d notin (p,q),e,!f")).unwrap();
        assert_eq!(
            rendered,
            [
                r#"a="1""#,
                r#"b!="2""#,
                r#"c=~"x\\.y""#,
                r#"d!~"p|q""#,
                r#"e!="""#,
                r#"f="""#
            ]
        );
    }

    #[test]
    fn comparisons_and_non_prometheus_keys_are_refused() {
        assert_eq!(
            matchers(&selector("a>1")).unwrap_err().to_string(),
            "operator not supported for metric selectors: >"
        );
        assert_eq!(
            matchers(&selector("a<1")),
            Err(MatcherError::UnsupportedOperator("<"))
        );
        assert_eq!(
            matchers(&selector("app.kubernetes.io/name=x")),
            Err(MatcherError::InvalidLabelName(
                "app.kubernetes.io/name".into()
            ))
        );
        assert!(matches!(
            matchers(&selector("a-b=x")),
            Err(MatcherError::InvalidLabelName(_))
        ));
    }

    #[test]
    fn label_names_follow_prometheus_syntax() {
        assert!(is_label_name("namespace"));
        assert!(is_label_name("_x1"));
        assert!(!is_label_name("1x"));
        assert!(!is_label_name(""));
        assert!(!is_label_name("a}"));
    }
}
