//! The Prometheus HTTP API's response envelope, read whole: the data (decoded by prometheus-http-query's
//! types), and what that crate drops, the `warnings` and `infos` of a degraded answer and VictoriaMetrics'
//! `isPartial` (the Prometheus HTTP API documentation's "Format overview"; Thanos puts `warnings` at the top
//! level and documents them inside `data` too, so both places are read).

use prometheus_http_query::response::Data;
use serde::Deserialize;

/// What a query answered, before the caller decides whether its warnings fail it.
#[derive(Debug)]
pub struct Envelope {
    /// The result.
    pub data: Data,
    /// Why the answer may be incomplete or degraded (Thanos partial answers, Mimir limits, …).
    pub warnings: Vec<String>,
    /// Informational annotations that never fail a query.
    pub infos: Vec<String>,
}

/// An answer that is not a success.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    /// `errorType` (`bad_data`, `execution`, `timeout`, …), or `bad_response` when the body is no API answer.
    pub error_type: String,
    /// `error`.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    status: String,
    data: Option<RawData>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
    #[serde(default)]
    is_partial: bool,
    #[serde(default)]
    error_type: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct RawData {
    #[serde(flatten)]
    data: Data,
    #[serde(default)]
    warnings: Vec<String>,
}

/// Prometheus before 2.51 had no `infos`: its info-level annotations came among the warnings, and they say
/// nothing about completeness.
const INFO_PREFIX: &str = "PromQL info:";

impl Envelope {
    /// Reads an answer body, whatever its HTTP status: Prometheus puts its error in the body of a 400, 422 or
    /// 503. `http_status` names a body that is not an API answer (a proxy's HTML page, say).
    pub fn decode(body: &[u8], http_status: u16) -> Result<Self, ApiError> {
        let raw: Raw = serde_json::from_slice(body).map_err(|e| ApiError {
            error_type: "bad_response".into(),
            message: if (200..300).contains(&http_status) {
                format!("not a Prometheus API answer: {e}")
            } else {
                format!("HTTP {http_status} without a Prometheus API answer")
            },
        })?;
        if raw.status != "success" {
            return Err(ApiError {
                error_type: raw.error_type,
                message: raw.error,
            });
        }
        let Some(data) = raw.data else {
            return Err(ApiError {
                error_type: "bad_response".into(),
                message: "a success without data".into(),
            });
        };
        let (mut infos, mut warnings): (Vec<_>, Vec<_>) = raw
            .warnings
            .into_iter()
            .chain(data.warnings)
            .partition(|w| w.starts_with(INFO_PREFIX));
        infos.extend(raw.infos);
        if raw.is_partial {
            warnings.push("partial response (isPartial): some storage nodes did not answer".into());
        }
        warnings.dedup();
        Ok(Self {
            data: data.data,
            warnings,
            infos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = r#"{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1767225600.1,"41.7"]}]}"#;

    fn answer(extra: &str) -> String {
        format!(r#"{{"status":"success","data":{VECTOR}{extra}}}"#)
    }

    #[test]
    fn a_plain_answer_has_no_warnings() {
        let envelope = Envelope::decode(answer("").as_bytes(), 200).unwrap();
        assert!(envelope.warnings.is_empty() && envelope.infos.is_empty());
        let Data::Vector(vector) = envelope.data else {
            panic!("a vector")
        };
        assert_eq!(vector[0].sample().value(), 41.7);
    }

    #[test]
    fn warnings_are_read_at_the_top_level_and_inside_data_as_thanos_documents_both() {
        let body = r#"{"status":"success","warnings":["store a unavailable"],
            "data":{"resultType":"vector","result":[],"warnings":["store b unavailable"]}}"#;
        let envelope = Envelope::decode(body.as_bytes(), 200).unwrap();
        assert_eq!(
            envelope.warnings,
            ["store a unavailable", "store b unavailable"]
        );
    }

    #[test]
    fn infos_and_old_prometheus_info_annotations_never_count_as_warnings() {
        let body = answer(
            r#","warnings":["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"x\""],"infos":["PromQL info: y"]"#,
        )
        .replace(r#"}"warnings"#, r#"},"warnings"#);
        let envelope = Envelope::decode(body.as_bytes(), 200).unwrap();
        assert!(envelope.warnings.is_empty());
        assert_eq!(envelope.infos.len(), 2);
    }

    #[test]
    fn a_victoriametrics_partial_answer_is_a_warning() {
        let body = answer("").replace(r#""status""#, r#""isPartial":true,"status""#);
        let envelope = Envelope::decode(body.as_bytes(), 200).unwrap();
        assert_eq!(envelope.warnings.len(), 1);
        assert!(envelope.warnings[0].contains("isPartial"));
    }

    #[test]
    fn an_error_answer_keeps_its_type_and_text() {
        let body =
            r#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected \",\""}"#;
        assert_eq!(
            Envelope::decode(body.as_bytes(), 400).unwrap_err(),
            ApiError {
                error_type: "bad_data".into(),
                message: "parse error: unexpected \",\"".into()
            }
        );
    }

    #[test]
    fn a_proxy_page_is_named_by_its_status_not_parsed_as_json() {
        let error = Envelope::decode(b"<html>502 Bad Gateway</html>", 502).unwrap_err();
        assert_eq!(error.error_type, "bad_response");
        assert_eq!(error.message, "HTTP 502 without a Prometheus API answer");
    }
}
