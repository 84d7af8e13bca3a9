//! `/api/v1/series` read for discovery: each series' name and label names, folded per name while the JSON is
//! parsed, so label values (most of the payload) are never kept (the Prometheus HTTP API's `/api/v1/series`;
//! the Prometheus Adapter keeps them all, one of its memory complaints).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One series as discovery keeps it: its name and the names of its labels, never their values (the values
/// are what makes the Prometheus Adapter's registry grow to gigabytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesKeys {
    /// `__name__`.
    pub name: String,
    /// The other label names.
    pub labels: Vec<String>,
}

/// Label names by series name.
type Folded = BTreeMap<String, BTreeSet<String>>;

/// Reads one series object into `folded`.
struct OneSeries<'a>(&'a mut Folded);

impl<'de> DeserializeSeed<'de> for OneSeries<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneSeries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a series label set")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut name = None;
        let mut labels = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "__name__" {
                name = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
                labels.push(key);
            }
        }
        if let Some(name) = name {
            self.0.entry(name).or_default().extend(labels);
        }
        Ok(())
    }
}

/// Reads the `data` array into `folded`.
struct AllSeries<'a>(&'a mut Folded);

impl<'de> DeserializeSeed<'de> for AllSeries<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AllSeries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of series")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(OneSeries(self.0))?.is_some() {}
        Ok(())
    }
}

/// A whole `/api/v1/series` answer.
#[derive(Debug, Default)]
pub(super) struct SeriesAnswer {
    pub(super) status: String,
    pub(super) error_type: String,
    pub(super) error: String,
    pub(super) series: Folded,
}

impl<'de> serde::Deserialize<'de> for SeriesAnswer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Answer;
        impl<'de> Visitor<'de> for Answer {
            type Value = SeriesAnswer;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Prometheus API answer")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SeriesAnswer, A::Error> {
                let mut answer = SeriesAnswer::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "status" => answer.status = map.next_value()?,
                        "errorType" => answer.error_type = map.next_value()?,
                        "error" => answer.error = map.next_value()?,
                        "data" => map.next_value_seed(AllSeries(&mut answer.series))?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(answer)
            }
        }
        deserializer.deserialize_map(Answer)
    }
}

impl SeriesAnswer {
    pub(super) fn into_keys(self) -> Vec<SeriesKeys> {
        self.series
            .into_iter()
            .map(|(name, labels)| SeriesKeys {
                name,
                labels: labels.into_iter().collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_fold_per_name_and_keep_no_values() {
        let body = r#"{"status":"success","data":[
            {"__name__":"container_network_receive_packets_total","namespace":"sidecar","pod":"a","interface":"eth0"},
            {"__name__":"container_network_receive_packets_total","namespace":"sidecar","pod":"b","container":"app"},
            {"__name__":"up","job":"kubelet","instance":"10.0.0.1:10250"},
            {"namespace":"no-name"}
        ],"warnings":["ignored"]}"#;
        let answer: SeriesAnswer = serde_json::from_str(body).unwrap();
        assert_eq!(answer.status, "success");
        assert_eq!(
            answer.into_keys(),
            [
                SeriesKeys {
                    name: "container_network_receive_packets_total".into(),
                    labels: vec![
                        "container".into(),
                        "interface".into(),
                        "namespace".into(),
                        "pod".into()
                    ],
                },
                SeriesKeys {
                    name: "up".into(),
                    labels: vec!["instance".into(), "job".into()],
                },
            ]
        );
    }

    #[test]
    fn an_error_answer_keeps_its_type_and_message() {
        let answer: SeriesAnswer = serde_json::from_str(
            r#"{"status":"error","errorType":"bad_data","error":"1:2: parse error: unexpected end of input"}"#,
        )
        .unwrap();
        assert_eq!(
            (answer.status.as_str(), answer.error_type.as_str()),
            ("error", "bad_data")
        );
        assert!(answer.series.is_empty());
    }
}
