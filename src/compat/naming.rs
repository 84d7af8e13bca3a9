//! Which series a Prometheus Adapter rule keeps and what it calls them: `seriesFilters` (`is`/`isNot`) and
//! `name` (`matches`/`as`), with the adapter's regex and default rules
//! (the Prometheus Adapter's docs/config.md and its naming and resource code). Pure.

use regex::Regex;

/// One `seriesFilters` entry; applied to series names, unanchored (Go's `MatchString`).
#[derive(Debug, Clone)]
pub enum Filter {
    /// Keep names that match.
    Is(Regex),
    /// Keep names that do not match.
    IsNot(Regex),
}

/// Why a filter or name rule is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// A regex does not compile.
    #[error("{what} {pattern:?} is not a valid regular expression: {message}")]
    Regex {
        /// `seriesFilters.is`, `name.matches`, …
        what: &'static str,
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        message: String,
    },
    /// A `seriesFilters` entry with both or neither of `is` and `isNot`.
    #[error("a seriesFilters entry needs exactly one of is and isNot")]
    FilterKeys,
    /// `name.matches` has two or more capture groups and no `as`.
    #[error("name.matches {0:?} has more than one capture group, so name.as must say which to use")]
    AmbiguousAs(String),
}

fn compile(what: &'static str, pattern: &str) -> Result<Regex, NamingError> {
    Regex::new(pattern).map_err(|e| NamingError::Regex {
        what,
        pattern: pattern.to_owned(),
        message: e.to_string(),
    })
}

impl Filter {
    /// The filter of an entry with `is` and/or `isNot` set.
    pub fn new(is: Option<&str>, is_not: Option<&str>) -> Result<Self, NamingError> {
        match (is, is_not) {
            (Some(pattern), None) => Ok(Filter::Is(compile("seriesFilters.is", pattern)?)),
            (None, Some(pattern)) => Ok(Filter::IsNot(compile("seriesFilters.isNot", pattern)?)),
            _ => Err(NamingError::FilterKeys),
        }
    }

    /// `is <regex>` or `isNot <regex>`, for `check-config`.
    pub fn describe(&self) -> String {
        match self {
            Filter::Is(re) => format!("is {}", re.as_str()),
            Filter::IsNot(re) => format!("isNot {}", re.as_str()),
        }
    }

    /// Whether `series` passes.
    pub fn keeps(&self, series: &str) -> bool {
        match self {
            Filter::Is(re) => re.is_match(series),
            Filter::IsNot(re) => !re.is_match(series),
        }
    }
}

/// `name.matches` and `name.as`.
#[derive(Debug, Clone)]
pub struct Naming {
    matches: Regex,
    as_: String,
}

impl Naming {
    /// `matches` defaults to `.*`; `as` to `$0` without a capture group and `$1` with exactly one.
    pub fn new(matches: &str, as_: &str) -> Result<Self, NamingError> {
        let pattern = if matches.is_empty() { ".*" } else { matches };
        let matches = compile("name.matches", pattern)?;
        let as_ = match (as_, matches.captures_len() - 1) {
            ("", 0) => "$0".to_owned(),
            ("", 1) => "$1".to_owned(),
            ("", _) => return Err(NamingError::AmbiguousAs(pattern.to_owned())),
            (given, _) => given.to_owned(),
        };
        Ok(Self { matches, as_ })
    }

    /// The metric name for `series`, from the first match; `None` if the series does not match (the implicit
    /// `is` filter).
    pub fn name(&self, series: &str) -> Option<String> {
        let captures = self.matches.captures(series)?;
        let mut name = String::new();
        captures.expand(&self.as_, &mut name);
        Some(name)
    }

    /// The pattern and replacement, for `check-config`.
    pub fn describe(&self) -> String {
        format!("{} -> {}", self.matches.as_str(), self.as_)
    }
}

/// What a rule calls `series`, if its filters keep it: every filter must pass, then `name.matches`.
pub fn metric_name(filters: &[Filter], naming: &Naming, series: &str) -> Option<String> {
    filters
        .iter()
        .all(|f| f.keeps(series))
        .then(|| naming.name(series))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(entries: &[(Option<&str>, Option<&str>)]) -> Vec<Filter> {
        entries
            .iter()
            .map(|(is, is_not)| Filter::new(*is, *is_not).unwrap())
            .collect()
    }

    #[test]
    fn the_helm_chart_defaults_name_container_series_as_the_adapter_does() {
        // Rules 1-3 of the chart.
        let seconds = Naming::new("^container_(.*)_seconds_total$", "").unwrap();
        let total = Naming::new("^container_(.*)_total$", "").unwrap();
        let gauge = Naming::new("^container_(.*)$", "").unwrap();
        let not_seconds = filters(&[(None, Some("^container_.*_seconds_total$"))]);
        let not_total = filters(&[(None, Some("^container_.*_total$"))]);
        let series = "container_network_receive_packets_total";
        assert_eq!(metric_name(&[], &seconds, series), None);
        assert_eq!(
            metric_name(&not_seconds, &total, series).as_deref(),
            Some("network_receive_packets")
        );
        assert_eq!(metric_name(&not_total, &gauge, series), None);
        assert_eq!(
            metric_name(&[], &seconds, "container_cpu_usage_seconds_total").as_deref(),
            Some("cpu_usage")
        );
        assert_eq!(
            metric_name(&not_total, &gauge, "container_memory_working_set_bytes").as_deref(),
            Some("memory_working_set_bytes")
        );
    }

    #[test]
    fn the_sidecar_guides_rule_appends_per_minute() {
        let naming = Naming::new("^(.*)_total", "${1}_per_minute").unwrap();
        assert_eq!(
            naming
                .name("container_network_receive_packets_total")
                .as_deref(),
            Some("container_network_receive_packets_per_minute")
        );
    }

    #[test]
    fn as_defaults_to_the_whole_match_or_the_only_group() {
        assert_eq!(
            Naming::new("", "").unwrap().name("up").as_deref(),
            Some("up")
        );
        assert_eq!(
            Naming::new("^(.*)_total$", "")
                .unwrap()
                .name("http_requests_total")
                .as_deref(),
            Some("http_requests")
        );
        assert_eq!(
            Naming::new("^(.*)_(.*)$", "").unwrap_err(),
            NamingError::AmbiguousAs("^(.*)_(.*)$".into())
        );
        let swapped = |as_| Naming::new("^(.*)_(.*)$", as_).unwrap().name("a_b");
        assert_eq!(swapped("${2}_${1}").as_deref(), Some("b_a"));
        // As in Go's Expand, `$2_` names a group "2_", which does not exist: the braces matter.
        assert_eq!(swapped("$2_$1").as_deref(), Some("a"));
    }

    #[test]
    fn filters_and_matches_are_unanchored_as_in_go() {
        // `isNot: _total` also drops a name with `_total` in the middle: the trap users fall into.
        let not_total = filters(&[(None, Some("_total"))]);
        assert_eq!(
            metric_name(&not_total, &Naming::new("", "").unwrap(), "foo_total_bar"),
            None
        );
        // An unanchored match names from the first match only.
        let naming = Naming::new("_(.*?)_", "").unwrap();
        assert_eq!(naming.name("a_b_c_d").as_deref(), Some("b"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert_eq!(
            Filter::new(Some("a"), Some("b")).unwrap_err(),
            NamingError::FilterKeys
        );
        assert_eq!(
            Filter::new(None, None).unwrap_err(),
            NamingError::FilterKeys
        );
        assert!(matches!(
            Naming::new("(", ""),
            Err(NamingError::Regex {
                what: "name.matches",
                ..
            })
        ));
    }
}
