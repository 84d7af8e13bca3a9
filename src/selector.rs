//! Kubernetes label selectors: parsing with Go `labels.Parse` parity, matching through kube-core's expressions.
//!
//! The grammar and its error texts follow kubernetes/apimachinery `pkg/labels/selector.go`. This module does no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kube::core::{Expression, SelectorExt};

use crate::names;

/// Selectors longer than this are refused before parsing: no deployment's selector comes near it.
pub const MAX_SELECTOR_LEN: usize = 16 * 1024;

/// A parse error; its text is the detail shown after `unable to parse labelSelector: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(String);

impl SelectorError {
    fn new(detail: impl Into<String>) -> Self {
        Self(detail.into())
    }
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `k=v`, `k==v`, `k!=v`, `k in (…)`, `k notin (…)`, `k`, `!k`: the forms kube-core knows.
    Label(Expression),
    /// `k>N`: the label's value, read as an integer, is greater than N.
    GreaterThan(String, i64),
    /// `k<N`: the label's value, read as an integer, is less than N.
    LessThan(String, i64),
}

impl Requirement {
    /// The label key this requirement tests.
    pub fn key(&self) -> &str {
        match self {
            Requirement::Label(expression) => expression_key(expression),
            Requirement::GreaterThan(key, _) | Requirement::LessThan(key, _) => key,
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let integer = |key: &str| labels.get(key).and_then(|v| v.parse::<i64>().ok());
        match self {
            Requirement::Label(expression) => expression.matches(labels),
            Requirement::GreaterThan(key, bound) => integer(key).is_some_and(|v| v > *bound),
            Requirement::LessThan(key, bound) => integer(key).is_some_and(|v| v < *bound),
        }
    }
}

fn expression_key(expression: &Expression) -> &str {
    match expression {
        Expression::In(key, _)
        | Expression::NotIn(key, _)
        | Expression::Equal(key, _)
        | Expression::NotEqual(key, _)
        | Expression::Exists(key)
        | Expression::DoesNotExist(key) => key,
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A set holding only the empty value prints as `(,)`: Go's (and kube-core's) `()` would not parse
            // back (found by the `label_selector` fuzz target).
            Requirement::Label(Expression::In(key, values))
                if values.iter().all(String::is_empty) =>
            {
                write!(f, "{key} in (,)")
            }
            Requirement::Label(Expression::NotIn(key, values))
                if values.iter().all(String::is_empty) =>
            {
                write!(f, "{key} notin (,)")
            }
            Requirement::Label(expression) => write!(f, "{expression}"),
            Requirement::GreaterThan(key, bound) => write!(f, "{key}>{bound}"),
            Requirement::LessThan(key, bound) => write!(f, "{key}<{bound}"),
        }
    }
}

/// A parsed label selector: requirements ANDed together, sorted by key as Go sorts them.
///
/// ```
/// use xroad_metrics_adapter::selector::LabelSelector;
/// let s: LabelSelector = "run = security-server-sidecar-secondary, tier in (b,a), !canary".parse().unwrap();
/// assert_eq!(s.to_string(), "!canary,run=security-server-sidecar-secondary,tier in (a,b)");
/// assert!("".parse::<LabelSelector>().unwrap().selects_all());
/// assert_eq!("x in ()".parse::<LabelSelector>().unwrap_err().to_string(),
///            "for 'in', 'notin' operators, values set can't be empty");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything (the empty string).
    pub fn everything() -> Self {
        Self::default()
    }

    /// True when the selector has no requirements.
    pub fn selects_all(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The `(key, value)` pairs every matching label set holds: from `k=v`, `k==v` and `k in (v)`. An index
    /// of label pairs answers the selector from the shortest of their lists instead of testing every object.
    pub fn required_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.requirements.iter().filter_map(|r| match r {
            Requirement::Label(Expression::Equal(key, value)) => {
                Some((key.as_str(), value.as_str()))
            }
            Requirement::Label(Expression::In(key, values)) if values.len() == 1 => {
                Some((key.as_str(), values.first()?.as_str()))
            }
            _ => None,
        })
    }
}

impl LabelSelector {
    /// Converts a workload's `spec.selector` (`matchLabels` and `matchExpressions`).
    pub fn from_k8s(
        selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Result<Self, SelectorError> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::Label(Expression::Equal(k.clone(), v.clone())))
            .collect();
        for expression in selector.match_expressions.iter().flatten() {
            let expression = Expression::try_from(expression.clone())
                .map_err(|e| SelectorError::new(e.to_string()))?;
            requirements.push(Requirement::Label(expression));
        }
        requirements.sort_by(|a, b| a.key().cmp(b.key()));
        Ok(Self { requirements })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.len() > MAX_SELECTOR_LEN {
            return Err(SelectorError::new(format!(
                "selector is {} bytes long, more than the {MAX_SELECTOR_LEN} allowed",
                input.len()
            )));
        }
        let mut requirements = Parser::new(input).parse()?;
        requirements.sort_by(|a, b| a.key().cmp(b.key()));
        Ok(Self { requirements })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    End,
    Identifier(&'a str),
    Bang,
    NotEquals,
    Equals,
    DoubleEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
}

impl Token<'_> {
    fn literal(&self) -> &str {
        match self {
            Token::End => "",
            Token::Identifier(s) => s,
            Token::Bang => "!",
            Token::NotEquals => "!=",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::Greater => ">",
            Token::Less => "<",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

struct Parser<'a> {
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Self { rest: input }
    }

    fn lex(&self) -> (Token<'a>, &'a str) {
        let s = self.rest.trim_start();
        let mut chars = s.chars();
        let Some(first) = chars.next() else {
            return (Token::End, s);
        };
        let next = chars.next();
        let (token, len) = match (first, next) {
            ('!', Some('=')) => (Token::NotEquals, 2),
            ('=', Some('=')) => (Token::DoubleEquals, 2),
            ('!', _) => (Token::Bang, 1),
            ('=', _) => (Token::Equals, 1),
            ('>', _) => (Token::Greater, 1),
            ('<', _) => (Token::Less, 1),
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            (',', _) => (Token::Comma, 1),
            _ => {
                let end = s
                    .find(|c: char| c.is_whitespace() || is_special(c))
                    .unwrap_or(s.len());
                (Token::Identifier(&s[..end]), end)
            }
        };
        (token, &s[len..])
    }

    fn peek(&self) -> Token<'a> {
        self.lex().0
    }

    fn next(&mut self) -> Token<'a> {
        let (token, rest) = self.lex();
        self.rest = rest;
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::End => return Ok(requirements),
                Token::Identifier(_) | Token::Bang => {
                    requirements.push(self.requirement()?);
                    match self.next() {
                        Token::End => return Ok(requirements),
                        Token::Comma => match self.peek() {
                            Token::Identifier(_) | Token::Bang => {}
                            other => {
                                return Err(SelectorError::new(format!(
                                    "found '{}', expected: identifier after ','",
                                    other.literal()
                                )));
                            }
                        },
                        other => {
                            return Err(SelectorError::new(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            )));
                        }
                    }
                }
                other => {
                    return Err(SelectorError::new(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    )));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Token::Bang {
            self.next();
            let key = self.key()?;
            return Ok(Requirement::Label(Expression::DoesNotExist(key)));
        }
        let key = self.key()?;
        match self.peek() {
            Token::End | Token::Comma => return Ok(Requirement::Label(Expression::Exists(key))),
            _ => {}
        }
        let operator = self.next();
        let requirement = match operator {
            Token::Equals | Token::DoubleEquals => Expression::Equal(key, self.exact_value()?),
            Token::NotEquals => Expression::NotEqual(key, self.exact_value()?),
            Token::Greater => return Ok(Requirement::GreaterThan(key, self.integer_value()?)),
            Token::Less => return Ok(Requirement::LessThan(key, self.integer_value()?)),
            Token::Identifier("in") => Expression::In(key, self.value_set()?),
            Token::Identifier("notin") => Expression::NotIn(key, self.value_set()?),
            other => {
                return Err(SelectorError::new(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    other.literal()
                )));
            }
        };
        Ok(Requirement::Label(requirement))
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Token::Identifier(key) => {
                validate_key(key)?;
                Ok(key.to_owned())
            }
            other => Err(SelectorError::new(format!(
                "found '{}', expected: identifier",
                other.literal()
            ))),
        }
    }

    fn exact_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Token::End | Token::Comma => Ok(String::new()),
            Token::Identifier(value) => {
                self.next();
                validate_value(value)?;
                Ok(value.to_owned())
            }
            other => Err(SelectorError::new(format!(
                "found '{}', expected: identifier",
                other.literal()
            ))),
        }
    }

    fn integer_value(&mut self) -> Result<i64, SelectorError> {
        let value = self.exact_value()?;
        value.parse().map_err(|_| {
            SelectorError::new("for 'Gt', 'Lt' operators, the value must be an integer")
        })
    }

    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        match self.next() {
            Token::Open => {}
            other => {
                return Err(SelectorError::new(format!(
                    "found '{}', expected: '('",
                    other.literal()
                )));
            }
        }
        let mut values = BTreeSet::new();
        if self.peek() == Token::Close {
            self.next();
            return Err(SelectorError::new(
                "for 'in', 'notin' operators, values set can't be empty",
            ));
        }
        // Go accepts empty members: `(,a)`, `(a,)` and `(a,,b)` all include "".
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::Identifier(value) if expect_value => {
                    validate_value(value)?;
                    values.insert(value.to_owned());
                    expect_value = false;
                }
                Token::Comma => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    expect_value = true;
                }
                Token::Close => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    return Ok(values);
                }
                other if expect_value => {
                    return Err(SelectorError::new(format!(
                        "found '{}', expected: ',', or identifier",
                        other.literal()
                    )));
                }
                other => {
                    return Err(SelectorError::new(format!(
                        "found '{}', expected: ',' or ')'",
                        other.literal()
                    )));
                }
            }
        }
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most `max` long.
fn is_qualified_part(s: &str, max: usize) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= max
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn validate_key(key: &str) -> Result<(), SelectorError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(names::is_dns_subdomain);
    if prefix_ok && is_qualified_part(name, 63) {
        Ok(())
    } else {
        Err(SelectorError::new(format!(
            "key: Invalid value: {key:?}: a valid label key must be an optional DNS subdomain prefix and '/', \
             then 63 characters or less of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        )))
    }
}

fn validate_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || is_qualified_part(value, 63) {
        Ok(())
    } else {
        Err(SelectorError::new(format!(
            "values[0]: Invalid value: {value:?}: a valid label must be an empty string or 63 characters or less \
             of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> LabelSelector {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn error(s: &str) -> String {
        s.parse::<LabelSelector>()
            .expect_err(&format!("{s:?} should not parse"))
            .to_string()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn required_pairs_are_the_equalities_every_match_holds() {
        let pairs = |s: &str| -> Vec<(String, String)> {
            parse(s)
                .required_pairs()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        assert_eq!(
            pairs("app=a,tier in (web),env!=prod,x in (1,2),y,z>3"),
            [("app".into(), "a".into()), ("tier".into(), "web".into())]
        );
        assert!(pairs("app!=a,!b").is_empty());
    }

    #[test]
    fn every_operator_round_trips_in_go_canonical_order() {
        let cases = [
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("a in (y,x)", "a in (x,y)"),
            ("a notin (x)", "a notin (x)"),
            ("a", "a"),
            ("!a", "!a"),
            ("a>1", "a>1"),
            ("a<1", "a<1"),
            ("z=1,a=2", "a=2,z=1"),
            ("app.kubernetes.io/name=x", "app.kubernetes.io/name=x"),
            ("a=", "a="),
        ];
        for (input, canonical) in cases {
            assert_eq!(parse(input).to_string(), canonical, "input {input:?}");
        }
    }

    #[test]
    fn whitespace_is_allowed_around_every_token() {
        assert_eq!(
            parse("  a  in ( x , y ) ,  ! b , c != d ").to_string(),
            "a in (x,y),!b,c!=d"
        );
    }

    #[test]
    fn empty_and_blank_selectors_select_everything() {
        assert!(parse("").selects_all());
        assert!(parse("   ").selects_all());
        assert!(parse("").matches(&labels(&[])));
    }

    #[test]
    fn empty_members_of_a_set_are_the_empty_value() {
        let s = parse("a in (,x)");
        assert!(s.matches(&labels(&[("a", "")])));
        assert!(s.matches(&labels(&[("a", "x")])));
        assert_eq!(parse("a in (x,)").to_string(), "a in (,x)");
        for only_empty in ["a notin (,)", "a in (,)", "a in (,,)"] {
            let printed = parse(only_empty).to_string();
            assert_eq!(
                parse(&printed),
                parse(only_empty),
                "{only_empty:?} printed as {printed:?}"
            );
        }
    }

    #[test]
    fn malformed_selectors_name_the_problem() {
        assert_eq!(
            error("a in ()"),
            "for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(error("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(
            error(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            error("a b"),
            "found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(error("a in x"), "found 'x', expected: '('");
        assert_eq!(error("a in (x"), "found '', expected: ',' or ')'");
        assert_eq!(
            error("a>x"),
            "for 'Gt', 'Lt' operators, the value must be an integer"
        );
        // Go validates the value as a label value too, so a negative bound is refused.
        assert!(error("a<-1").starts_with("values[0]: Invalid value: \"-1\""));
        assert_eq!(
            error("a=b=c"),
            "found '=', expected: ',' or 'end of string'"
        );
        assert!(error("a=\"b\"").starts_with("values[0]: Invalid value: \"\\\"b\\\"\""));
        assert!(error("-a=b").starts_with("key: Invalid value: \"-a\""));
        assert!(error("Upper.Case/a=b").starts_with("key: Invalid value"));
        assert!(error(&format!("a={}", "v".repeat(64))).starts_with("values[0]: Invalid value"));
    }

    #[test]
    fn overlong_selectors_are_refused_before_parsing() {
        let huge = "a=b,".repeat(MAX_SELECTOR_LEN);
        assert!(error(&huge).contains("more than the 16384 allowed"));
    }

    #[test]
    fn a_deployment_selector_converts_with_its_expressions() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let k8s = meta::LabelSelector {
            match_labels: Some([("run".to_string(), "secondary".to_string())].into()),
            match_expressions: Some(vec![meta::LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["b".into(), "a".into()]),
            }]),
        };
        assert_eq!(
            LabelSelector::from_k8s(&k8s).unwrap().to_string(),
            "run=secondary,tier in (a,b)"
        );
        let bad = meta::LabelSelector {
            match_expressions: Some(vec![meta::LabelSelectorRequirement {
                key: "x".into(),
                operator: "Sometimes".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(LabelSelector::from_k8s(&bad).is_err());
    }

    #[test]
    fn matching_follows_kubernetes_semantics() {
        let pod = labels(&[("run", "security-server-sidecar-secondary"), ("gen", "3")]);
        assert!(parse("run=security-server-sidecar-secondary").matches(&pod));
        assert!(!parse("run=security-server-sidecar-primary").matches(&pod));
        assert!(parse("run!=other").matches(&pod));
        assert!(
            parse("missing!=x").matches(&pod),
            "!= matches when the key is absent"
        );
        assert!(parse("missing notin (x)").matches(&pod));
        assert!(!parse("missing in (x)").matches(&pod));
        assert!(parse("!missing,run").matches(&pod));
        assert!(parse("gen>2,gen<4").matches(&pod));
        assert!(!parse("gen>3").matches(&pod));
        assert!(
            !parse("run>1").matches(&pod),
            "a non-integer value never satisfies > or <"
        );
    }
}
