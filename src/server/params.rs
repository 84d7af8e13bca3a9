//! Query parameters of value requests (`labelSelector`, `metricLabelSelector`) and served values: parsed,
//! turned into PromQL matchers, and checked fit for the wire.

use crate::error::ApiError;
use crate::promql;
use crate::quantity::Quantity;
use crate::selector::LabelSelector;

/// The first value of `key`, decoded as a form (the aggregator re-encodes queries that way).
pub(super) fn param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A selector parameter; absent or empty means "no selector".
pub(super) fn selector_param(
    query: Option<&str>,
    key: &str,
) -> Result<Option<LabelSelector>, ApiError> {
    match param(query, key) {
        None => Ok(None),
        Some(text) => {
            let selector: LabelSelector =
                text.parse().map_err(|e| ApiError::bad_selector(key, e))?;
            Ok((!selector.selects_all()).then_some(selector))
        }
    }
}

pub(super) fn metric_matchers(
    selector: Option<&LabelSelector>,
    key: &str,
) -> Result<Vec<String>, ApiError> {
    let Some(selector) = selector else {
        return Ok(Vec::new());
    };
    promql::matchers(selector).map_err(|error| ApiError::unmatchable_selector(key, error))
}

/// A value fit for the wire, or `None` (logged) for NaN, ±Inf and out-of-range values: the object then
/// counts as missing, never as 0.
pub(super) fn quantity(value: f64, object: &str) -> Option<Quantity> {
    Quantity::from_f64(value)
        .inspect_err(|error| tracing::debug!(object, %error, "value not served"))
        .ok()
}
