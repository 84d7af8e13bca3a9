//! The op-monitor wire format (X-Road's PR-OPMON, UG-SS and the Sidecar user guide): the `getSecurityServerOperationalData`
//! SOAP request, and its answer: a `multipart/related` body with a SOAP part and a gzipped JSON attachment,
//! or a SOAP Fault with HTTP 200. Pure: bytes in, typed values out.

use std::io::Read;

use quick_xml::events::Event;
use serde::Deserialize;

/// An X-Road member or server identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRoadId {
    /// `xRoadInstance`.
    pub instance: String,
    /// `memberClass`.
    pub member_class: String,
    /// `memberCode`.
    pub member_code: String,
    /// `serverCode`, for the security server header.
    pub server_code: Option<String>,
}

/// The output fields every Security Server from 6.21 on knows (PR-OPMON).
const UNIVERSAL_FIELDS: [&str; 12] = [
    "monitoringDataTs",
    "securityServerInternalIp",
    "securityServerType",
    "requestInTs",
    "responseOutTs",
    "serviceXRoadInstance",
    "serviceMemberClass",
    "serviceMemberCode",
    "serviceSubsystemCode",
    "serviceCode",
    "serviceVersion",
    "succeeded",
];

/// The output fields of one generation of Security Servers. The op-monitor returns only the fields asked
/// for, and faults on a field it does not know, so the sizes must be asked for by the name the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet {
    /// Which servers know these fields.
    pub servers: &'static str,
    /// The size fields added to the universal set.
    pub size_fields: [&'static str; 2],
}

impl FieldSet {
    /// Every field asked for.
    pub fn fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        UNIVERSAL_FIELDS
            .iter()
            .copied()
            .chain(self.size_fields.iter().copied().filter(|f| !f.is_empty()))
    }
}

/// The field sets to try, newest first: sizes as `requestSize`/`responseSize` (6.24 on), as
/// `requestSoapSize`/`responseSoapSize` (up to 6.23; REST sizes of 6.22–6.23 are not asked for, as a record
/// holding both names would be ambiguous), and no sizes at all.
pub const FIELD_SETS: [FieldSet; 3] = [
    FieldSet {
        servers: "6.24 and later",
        size_fields: ["requestSize", "responseSize"],
    },
    FieldSet {
        servers: "6.21 to 6.23",
        size_fields: ["requestSoapSize", "responseSoapSize"],
    },
    FieldSet {
        servers: "any (no sizes)",
        size_fields: ["", ""],
    },
];

/// Escapes text for an XML element.
fn xml(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

fn id_elements(id: &XRoadId) -> String {
    let mut out = format!(
        "<id:xRoadInstance>{}</id:xRoadInstance><id:memberClass>{}</id:memberClass><id:memberCode>{}</id:memberCode>",
        xml(&id.instance),
        xml(&id.member_class),
        xml(&id.member_code)
    );
    if let Some(server) = &id.server_code {
        out.push_str(&format!("<id:serverCode>{}</id:serverCode>", xml(server)));
    }
    out
}

/// The SOAP request for records with `monitoringDataTs` in `[from, to]` (Unix seconds, inclusive), sent as the
/// owner member `client` to the security server `server`.
pub fn operational_data_request(
    client: &XRoadId,
    server: &XRoadId,
    message_id: &str,
    from: i64,
    to: i64,
    fields: &[&str],
) -> String {
    let service = XRoadId {
        server_code: None,
        ..client.clone()
    };
    let client = XRoadId {
        server_code: None,
        ..client.clone()
    };
    let fields: String = fields
        .iter()
        .map(|f| format!("<om:outputField>{f}</om:outputField>"))
        .collect();
    format!(
        concat!(
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" "#,
            r#"xmlns:xroad="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers" "#,
            r#"xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd"><SOAP-ENV:Header>"#,
            r#"<xroad:client id:objectType="MEMBER">{client}</xroad:client>"#,
            r#"<xroad:service id:objectType="SERVICE">{service}<id:serviceCode>getSecurityServerOperationalData</id:serviceCode></xroad:service>"#,
            r#"<xroad:securityServer id:objectType="SERVER">{server}</xroad:securityServer>"#,
            r#"<xroad:id>{id}</xroad:id><xroad:protocolVersion>4.0</xroad:protocolVersion>"#,
            r#"</SOAP-ENV:Header><SOAP-ENV:Body><om:getSecurityServerOperationalData><om:searchCriteria>"#,
            r#"<om:recordsFrom>{from}</om:recordsFrom><om:recordsTo>{to}</om:recordsTo></om:searchCriteria>"#,
            r#"<om:outputSpec>{fields}</om:outputSpec></om:getSecurityServerOperationalData></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        ),
        client = id_elements(&client),
        service = id_elements(&service),
        server = id_elements(server),
        id = xml(message_id),
        from = from,
        to = to,
        fields = fields,
    )
}

/// One operational data record, with every field optional (null fields are omitted on the wire) and the
/// X-Road 6.x names accepted beside the 7.x ones.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Record {
    /// When the daemon stored the record, seconds.
    pub monitoring_data_ts: Option<i64>,
    /// The pod IP of the proxy that handled the message.
    pub security_server_internal_ip: Option<String>,
    /// `Client` or `Producer`.
    pub security_server_type: Option<String>,
    /// Request received, milliseconds.
    pub request_in_ts: Option<i64>,
    /// Response sent, milliseconds.
    pub response_out_ts: Option<i64>,
    /// Service identifier parts.
    #[serde(rename = "serviceXRoadInstance")]
    pub service_xroad_instance: Option<String>,
    /// Service member class.
    pub service_member_class: Option<String>,
    /// Service member code.
    pub service_member_code: Option<String>,
    /// Service subsystem code.
    pub service_subsystem_code: Option<String>,
    /// Service code.
    pub service_code: Option<String>,
    /// Service version.
    pub service_version: Option<String>,
    /// Mediation succeeded.
    pub succeeded: Option<bool>,
    /// Request body size (6.24+; `requestSoapSize` before, `requestRestSize` in 6.22–6.23).
    #[serde(alias = "requestSoapSize", alias = "requestRestSize")]
    pub request_size: Option<i64>,
    /// Response body size.
    #[serde(alias = "responseSoapSize", alias = "responseRestSize")]
    pub response_size: Option<i64>,
    /// Fault code on failure (6.24+; `soapFaultCode` before).
    #[serde(alias = "soapFaultCode")]
    pub fault_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    records: Vec<Record>,
}

/// One answer page.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationalData {
    /// `om:recordsCount`.
    pub records_count: usize,
    /// The records.
    pub records: Vec<Record>,
    /// `om:nextRecordsFrom`, when the server cut the page or shifted `recordsTo`.
    pub next_records_from: Option<i64>,
}

/// Why an answer could not be used. The cursor never advances past one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// A SOAP Fault (HTTP 200): `faultcode` and `faultstring`.
    #[error("SOAP fault {code}: {string}")]
    Fault {
        /// `faultcode`, as sent.
        code: String,
        /// `faultstring`.
        string: String,
    },
    /// Neither multipart with the expected parts nor a SOAP Fault.
    #[error("unexpected answer: {0}")]
    Parse(String),
    /// The attachment is not valid gzip.
    #[error("the records attachment is not valid gzip: {0}")]
    Gzip(String),
    /// The gzipped JSON is not `{"records": [...]}`.
    #[error("the records attachment is not valid JSON: {0}")]
    Json(String),
}

/// How a fault should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// "Records not available from … yet": no new data, not an outage.
    NotYetAvailable,
    /// "Unknown output field …": retry once with the universal field set.
    UnknownOutputField,
    /// Anything else.
    Other,
}

impl ResponseError {
    /// A bounded label for `xroad_opmon_collect_errors_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            ResponseError::Fault { .. } => "fault",
            ResponseError::Parse(_) => "parse",
            ResponseError::Gzip(_) => "gzip",
            ResponseError::Json(_) => "json",
        }
    }

    /// For faults, how to handle them; faultstrings are stable across versions, fault codes are not.
    pub fn fault_kind(&self) -> Option<FaultKind> {
        let ResponseError::Fault { string, .. } = self else {
            return None;
        };
        Some(if string.starts_with("Records not available from") {
            FaultKind::NotYetAvailable
        } else if string.starts_with("Unknown output field") {
            FaultKind::UnknownOutputField
        } else {
            FaultKind::Other
        })
    }
}

/// `client.invalid_request` and `Client.InvalidRequest` alike: lower-cased, `_` removed.
pub fn normalized_fault_code(code: &str) -> String {
    code.to_ascii_lowercase().replace('_', "")
}

/// The value of a `Content-Type` parameter (quoted or not).
fn content_type_parameter<'a>(content_type: &'a str, name: &str) -> Option<&'a str> {
    content_type.split(';').skip(1).find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"'))
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One part of a multipart body: lower-cased header names with their values, and the raw content.
#[derive(Debug)]
struct Part<'a> {
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl Part<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a multipart body, tolerating CRLF or bare LF and any header case.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, ResponseError> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = &body[find(body, delimiter.as_bytes())
        .ok_or_else(|| ResponseError::Parse("no multipart boundary found".into()))?..];
    loop {
        rest = &rest[delimiter.len()..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let next = find(rest, delimiter.as_bytes())
            .ok_or_else(|| ResponseError::Parse("unterminated multipart body".into()))?;
        let mut part = &rest[..next];
        // The line break before the next delimiter belongs to the delimiter.
        part = part
            .strip_suffix(b"\r\n")
            .or_else(|| part.strip_suffix(b"\n"))
            .unwrap_or(part);
        part = part
            .strip_prefix(b"\r\n")
            .or_else(|| part.strip_prefix(b"\n"))
            .unwrap_or(part);
        let (head, content) = match (find(part, b"\r\n\r\n"), find(part, b"\n\n")) {
            (Some(crlf), Some(lf)) if lf < crlf => (&part[..lf], &part[lf + 2..]),
            (Some(crlf), _) => (&part[..crlf], &part[crlf + 4..]),
            (None, Some(lf)) => (&part[..lf], &part[lf + 2..]),
            (None, None) => {
                return Err(ResponseError::Parse(
                    "a multipart part has no header end".into(),
                ));
            }
        };
        let headers = String::from_utf8_lossy(head)
            .lines()
            .filter_map(|line| {
                let (k, v) = line.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect();
        parts.push(Part {
            headers,
            body: content,
        });
        rest = &rest[next..];
    }
}

/// What the SOAP part says: the response body's fields, or a fault.
#[derive(Debug, Default)]
struct SoapAnswer {
    records_count: Option<usize>,
    records_cid: Option<String>,
    next_records_from: Option<i64>,
    fault_code: Option<String>,
    fault_string: Option<String>,
}

fn read_soap(xml: &[u8]) -> Result<SoapAnswer, ResponseError> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut answer = SoapAnswer::default();
    let mut element: Option<String> = None;
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                element = Some(e.local_name().as_ref().to_owned());
                text.clear();
            }
            Ok(Event::Text(t)) => text.push_str(&t.xml10_content()),
            Ok(Event::GeneralRef(r)) => match r.resolve_char_ref() {
                Ok(Some(c)) => text.push(c),
                _ => text.push_str(
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content()).unwrap_or(""),
                ),
            },
            Ok(Event::End(_)) => {
                if let Some(name) = element.take() {
                    let value = text.trim();
                    let number = |v: &str| {
                        v.parse::<i64>().map_err(|_| {
                            ResponseError::Parse(format!("{name} is not a number: {v:?}"))
                        })
                    };
                    match name.as_str() {
                        "recordsCount" => {
                            answer.records_count = Some(number(value)?.max(0) as usize)
                        }
                        "records" => answer.records_cid = Some(value.to_owned()),
                        "nextRecordsFrom" => answer.next_records_from = Some(number(value)?),
                        "faultcode" => answer.fault_code = Some(value.to_owned()),
                        "faultstring" => answer.fault_string = Some(value.to_owned()),
                        _ => {}
                    }
                }
                text.clear();
            }
            Ok(Event::Eof) => return Ok(answer),
            Err(e) => return Err(ResponseError::Parse(format!("SOAP part is not XML: {e}"))),
            _ => {}
        }
        buf.clear();
    }
}

fn fault(answer: &SoapAnswer) -> Option<ResponseError> {
    answer.fault_code.as_ref().map(|code| ResponseError::Fault {
        code: code.clone(),
        string: answer.fault_string.clone().unwrap_or_default(),
    })
}

/// Parses an answer: `content_type` is the HTTP header, `body` the raw bytes.
pub fn parse_response(content_type: &str, body: &[u8]) -> Result<OperationalData, ResponseError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media == "text/xml" || media == "application/soap+xml" {
        let answer = read_soap(body)?;
        return Err(fault(&answer).unwrap_or_else(|| {
            ResponseError::Parse("a SOAP answer without records or fault".into())
        }));
    }
    if !media.starts_with("multipart/") {
        return Err(ResponseError::Parse(format!(
            "content type {media:?} is neither multipart nor a SOAP fault"
        )));
    }
    let boundary = content_type_parameter(content_type, "boundary")
        .ok_or_else(|| ResponseError::Parse("multipart without a boundary parameter".into()))?;
    let parts = split_multipart(body, boundary)?;
    let soap_part = parts
        .iter()
        .find(|p| {
            p.header("content-type")
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/xml"))
        })
        .ok_or_else(|| ResponseError::Parse("no text/xml part".into()))?;
    let answer = read_soap(soap_part.body)?;
    if let Some(fault) = fault(&answer) {
        return Err(fault);
    }
    let cid = answer
        .records_cid
        .as_deref()
        .ok_or_else(|| ResponseError::Parse("the SOAP part names no records attachment".into()))?;
    let cid = cid.strip_prefix("cid:").unwrap_or(cid);
    let attachment = parts
        .iter()
        .find(|p| {
            p.header("content-id")
                .is_some_and(|id| id.trim_matches(|c| c == '<' || c == '>') == cid)
        })
        .ok_or_else(|| ResponseError::Parse(format!("no attachment with content-id {cid}")))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(attachment.body)
        .read_to_end(&mut json)
        .map_err(|e| ResponseError::Gzip(e.to_string()))?;
    let payload: Payload =
        serde_json::from_slice(&json).map_err(|e| ResponseError::Json(e.to_string()))?;
    Ok(OperationalData {
        records_count: answer.records_count.unwrap_or(payload.records.len()),
        records: payload.records,
        next_records_from: answer.next_records_from,
    })
}

#[cfg(test)]
mod tests;
