//! A faithful fake of a Security Server client proxy answering `getSecurityServerOperationalData`, from
//! X-Road's PR-OPMON (the op-monitoring protocol): it checks each request as the protocol demands (POST, `text/xml`, owner
//! MEMBER client, SERVER header with `serverCode`, protocol 4.0, windows in seconds not yet in the availability
//! offset) and answers with multipart/related + gzipped JSON, SOAP faults with HTTP 200, or transport failures.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use xroad_metrics_adapter::config::{Config, OpMonitorConfig};

const BOUNDARY: &str = "xroadQ3v8Kf0aLm2Zt7Yp1Wc9Rb4Xn6Hs5J";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A page: these records (JSON objects), `recordsCount`, and `nextRecordsFrom`.
    Page {
        records: Vec<serde_json::Value>,
        count: Option<usize>,
        next: Option<i64>,
    },
    /// Records generated for the requested window by `generate(from, to)`.
    Window,
    /// A SOAP fault with HTTP 200.
    Fault { code: &'static str, string: String },
    /// A valid multipart whose attachment is not gzip.
    BrokenGzip,
    /// An HTTP error page from something in front of the proxy.
    BadGateway,
    /// Never answers.
    Hang,
}

/// Which Security Server the fake plays: the output-field names it knows (PR-OPMON at each tag) and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerVersion {
    /// 6.21: SOAP-specific size and fault names, no `serviceType`.
    V6_21,
    /// 6.23: as 6.21, plus REST sizes and `statusCode`.
    V6_23,
    /// 7.5: unified `requestSize`/`responseSize`, `faultCode`, `serviceType`.
    #[default]
    V7_5,
}

impl ServerVersion {
    fn knows(self, field: &str) -> bool {
        const UNIVERSAL: &[&str] = &[
            "monitoringDataTs",
            "securityServerInternalIp",
            "securityServerType",
            "requestInTs",
            "requestOutTs",
            "responseInTs",
            "responseOutTs",
            "clientXRoadInstance",
            "clientMemberClass",
            "clientMemberCode",
            "clientSubsystemCode",
            "serviceXRoadInstance",
            "serviceMemberClass",
            "serviceMemberCode",
            "serviceSubsystemCode",
            "serviceCode",
            "serviceVersion",
            "messageId",
            "messageProtocolVersion",
            "succeeded",
            "requestMimeSize",
            "responseMimeSize",
        ];
        let specific: &[&str] = match self {
            ServerVersion::V6_21 => &[
                "requestSoapSize",
                "responseSoapSize",
                "soapFaultCode",
                "soapFaultString",
            ],
            ServerVersion::V6_23 => &[
                "requestSoapSize",
                "responseSoapSize",
                "soapFaultCode",
                "soapFaultString",
                "requestRestSize",
                "responseRestSize",
                "statusCode",
            ],
            ServerVersion::V7_5 => &[
                "requestSize",
                "responseSize",
                "faultCode",
                "faultString",
                "serviceType",
            ],
        };
        UNIVERSAL.contains(&field) || specific.contains(&field)
    }

    /// A record as this version writes it, from one written with 7.x names.
    fn written(self, record: &Value) -> Value {
        let mut record = record.clone();
        if self != ServerVersion::V7_5
            && let Some(fields) = record.as_object_mut()
        {
            for (new, old) in [
                ("requestSize", "requestSoapSize"),
                ("responseSize", "responseSoapSize"),
                ("faultCode", "soapFaultCode"),
                ("faultString", "soapFaultString"),
            ] {
                if let Some(value) = fields.remove(new) {
                    fields.insert(old.into(), value);
                }
            }
            for gone in ["serviceType", "restMethod", "restPath", "xRoadVersion"] {
                fields.remove(gone);
            }
        }
        record
    }
}

/// Generates the records of a window, for `Reply::Window`.
pub type Generator = Arc<dyn Fn(i64, i64) -> Vec<serde_json::Value> + Send + Sync>;

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    requests: Vec<(i64, i64)>,
    problems: Vec<String>,
}

/// The fake, on a loopback port.
#[derive(Clone)]
pub struct FakeOpMonitor {
    pub url: String,
    script: Arc<Mutex<Script>>,
    generator: Generator,
    /// The fake's clock: requests must have `recordsFrom < now − 60`.
    now: Arc<Mutex<i64>>,
    version: Arc<Mutex<ServerVersion>>,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The multipart body of a PR-OPMON answer: the SOAP part, then the gzipped JSON records.
pub fn multipart_page(
    records: &[serde_json::Value],
    count: usize,
    next: Option<i64>,
    attachment: Option<Vec<u8>>,
) -> (String, Vec<u8>) {
    let next = next.map_or(String::new(), |n| {
        format!("<om:nextRecordsFrom>{n}</om:nextRecordsFrom>")
    });
    let soap = format!(
        concat!(
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd">"#,
            r#"<SOAP-ENV:Header/><SOAP-ENV:Body><om:getSecurityServerOperationalDataResponse><om:recordsCount>{count}</om:recordsCount>"#,
            r#"<om:records>cid:operational-monitoring-data.json.gz</om:records>{next}</om:getSecurityServerOperationalDataResponse>"#,
            r#"</SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        ),
        count = count,
        next = next
    );
    let json = serde_json::json!({ "records": records }).to_string();
    let attachment = attachment.unwrap_or_else(|| gzip(json.as_bytes()));
    let mut body = format!(
        "--{BOUNDARY}\r\ncontent-type:text/xml\r\n\r\n{soap}\r\n--{BOUNDARY}\r\ncontent-type:application/gzip\r\ncontent-transfer-encoding: binary\r\ncontent-id: <operational-monitoring-data.json.gz>\r\n\r\n"
    )
    .into_bytes();
    body.extend(attachment);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").into_bytes());
    (
        format!("multipart/related; type=\"text/xml\"; charset=UTF-8; boundary={BOUNDARY}"),
        body,
    )
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    Some(&text[start..start + text[start..].find(close)?])
}

impl FakeOpMonitor {
    /// Starts the fake for the owner `EE/GOV/1234567-8` and server `sidecar`; `generator` makes window records.
    pub async fn start(generator: Generator) -> Self {
        Self::serve(generator, None).await
    }

    /// The same over TLS with `tls` (which may demand a client certificate, as the consumer port does).
    pub async fn start_tls(generator: Generator, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::serve(generator, Some(tls)).await
    }

    async fn serve(generator: Generator, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let fake = Self {
            url: format!(
                "{scheme}://localhost:{}",
                listener.local_addr().unwrap().port()
            ),
            script: Arc::default(),
            generator,
            now: Arc::new(Mutex::new(i64::MAX)),
            version: Arc::default(),
        };
        let handler = fake.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let fake = handler.clone();
                async move { fake.answer(&headers, &body).await }
            }),
        );
        match tls {
            None => drop(tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap()
            })),
            Some(tls) => drop(tokio::spawn(xroad_metrics_adapter::server::serve(
                listener,
                tls,
                app,
                xroad_metrics_adapter::server::ConnectionLimits::default(),
                std::future::pending(),
            ))),
        }
        fake
    }

    /// Plays another Security Server version.
    pub fn set_version(&self, version: ServerVersion) {
        *self.version.lock().unwrap() = version;
    }

    /// Sets the fake's clock.
    pub fn set_now(&self, now: i64) {
        *self.now.lock().unwrap() = now;
    }

    /// Queues answers; with none queued, windows are generated.
    pub fn push(&self, reply: Reply) {
        self.script.lock().unwrap().replies.push_back(reply);
    }

    /// The `(recordsFrom, recordsTo)` of every request so far.
    pub fn requests(&self) -> Vec<(i64, i64)> {
        self.script.lock().unwrap().requests.clone()
    }

    /// Requests that broke a protocol rule.
    pub fn problems(&self) -> Vec<String> {
        self.script.lock().unwrap().problems.clone()
    }

    fn check(&self, headers: &HeaderMap, xml: &str) -> Result<(i64, i64), String> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("text/xml") {
            return Err(format!("content type {content_type:?}"));
        }
        let client = between(xml, "<xroad:client ", "</xroad:client>").ok_or("no xroad:client")?;
        if !client.starts_with(r#"id:objectType="MEMBER">"#) || client.contains("subsystemCode") {
            return Err(format!("client is not the owner MEMBER: {client}"));
        }
        let owner = "<id:xRoadInstance>EE</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>1234567-8</id:memberCode>";
        if !client.ends_with(owner) {
            return Err(format!("client is not the owner: {client}"));
        }
        let server = between(
            xml,
            r#"<xroad:securityServer id:objectType="SERVER">"#,
            "</xroad:securityServer>",
        )
        .ok_or("no SERVER header")?;
        if server != format!("{owner}<id:serverCode>sidecar</id:serverCode>") {
            return Err(format!("security server header {server}"));
        }
        if !xml.contains("<id:serviceCode>getSecurityServerOperationalData</id:serviceCode>")
            || !xml.contains("<xroad:protocolVersion>4.0</xroad:protocolVersion>")
            || between(xml, "<xroad:id>", "</xroad:id>").is_none_or(str::is_empty)
        {
            return Err("service, protocol version or message id missing".into());
        }
        if !xml.contains("<om:outputField>monitoringDataTs</om:outputField>") {
            return Err("outputSpec lacks monitoringDataTs".into());
        }
        let number = |tag: &str| -> Result<i64, String> {
            between(xml, &format!("<om:{tag}>"), &format!("</om:{tag}>"))
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{tag} missing or not an integer"))
        };
        let (from, to) = (number("recordsFrom")?, number("recordsTo")?);
        if from > 100_000_000_000 || to > 100_000_000_000 {
            return Err("timestamps in milliseconds".into());
        }
        if from > to {
            return Err(format!("recordsFrom {from} > recordsTo {to}"));
        }
        Ok((from, to))
    }

    async fn answer(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let xml = String::from_utf8_lossy(body);
        let (from, to) = match self.check(headers, &xml) {
            Ok(window) => window,
            Err(problem) => {
                self.script.lock().unwrap().problems.push(problem.clone());
                return (StatusCode::BAD_REQUEST, problem).into_response();
            }
        };
        let now = *self.now.lock().unwrap();
        let mut response = self.reply(from, to, now, &xml).await;
        // The fake's clock, as the Security Server's HTTP answers carry theirs.
        if now != i64::MAX {
            let date = std::time::UNIX_EPOCH + Duration::from_secs(now as u64);
            response
                .headers_mut()
                .insert(header::DATE, httpdate::fmt_http_date(date).parse().unwrap());
        }
        response
    }

    async fn reply(&self, from: i64, to: i64, now: i64, xml: &str) -> Response {
        let version = *self.version.lock().unwrap();
        // Only the fields asked for come back; a field this version doesn't know is a fault.
        let asked: Vec<String> = xml
            .split("<om:outputField>")
            .skip(1)
            .filter_map(|rest| {
                rest.split_once("</om:outputField>")
                    .map(|(f, _)| f.to_owned())
            })
            .collect();
        if let Some(unknown) = asked.iter().find(|f| !version.knows(f)) {
            self.script.lock().unwrap().requests.push((from, to));
            return (
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8".to_owned())],
                format!(
                    r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>Client.InvalidRequest</faultcode><faultstring>Unknown output field in search criteria: {unknown}</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
                ),
            )
                .into_response();
        }
        let present = |record: &Value| {
            let mut record = version.written(record);
            if let Some(fields) = record.as_object_mut()
                && !asked.is_empty()
            {
                fields.retain(|name, _| asked.contains(name));
            }
            record
        };
        let reply = {
            let mut script = self.script.lock().unwrap();
            script.requests.push((from, to));
            script.replies.pop_front().unwrap_or(Reply::Window)
        };
        let reply = if from >= now.saturating_sub(60) && !matches!(reply, Reply::Fault { .. }) {
            Reply::Fault {
                code: "Client.InvalidRequest",
                string: format!("Records not available from {from} yet"),
            }
        } else {
            reply
        };
        let multipart = |records: &[serde_json::Value], count, next, attachment| {
            let records: Vec<Value> = records.iter().map(present).collect();
            let (content_type, body) = multipart_page(&records, count, next, attachment);
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        };
        match reply {
            Reply::Page { records, count, next } => multipart(&records, count.unwrap_or(records.len()), next, None),
            Reply::Window => {
                let records = (self.generator)(from, to);
                multipart(&records, records.len(), None, None)
            }
            Reply::Fault { code, string } => (
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8".to_owned())],
                format!(
                    r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{string}</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
                ),
            )
                .into_response(),
            Reply::BrokenGzip => multipart(&[], 1, None, Some(b"\x1f\x8b not really gzip".to_vec())),
            Reply::BadGateway => (StatusCode::BAD_GATEWAY, [(header::CONTENT_TYPE, "text/html")], "<html>502 Bad Gateway</html>").into_response(),
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(120)).await;
                StatusCode::GATEWAY_TIMEOUT.into_response()
            }
        }
    }
}

/// Pod IPs of Secondary A and B in the Sidecar inventory.
pub const IP_A: &str = "10.42.0.11";
pub const IP_B: &str = "10.42.0.12";

/// The collector configuration for the fake at `url`, owner and server as in the Sidecar guide.
pub fn config(url: &str) -> OpMonitorConfig {
    let yaml = format!(
        "xroad:\n  opmonitor:\n    url: {url}\n    client: {{xRoadInstance: EE, memberClass: GOV, memberCode: '1234567-8'}}\n    \
         securityServer: {{xRoadInstance: EE, memberClass: GOV, memberCode: '1234567-8', serverCode: sidecar}}\n    namespace: sidecar\n    timeout: 1s\n"
    );
    Config::parse("test.yaml", &yaml)
        .unwrap()
        .opmonitor
        .unwrap()
}

/// One operational-monitoring record at `second`.
pub fn record(second: i64, ip: &str, role: &str, succeeded: bool, service: &str) -> Value {
    json!({
        "monitoringDataTs": second, "securityServerInternalIp": ip, "securityServerType": role,
        "requestInTs": second * 1000 + 100, "responseOutTs": second * 1000 + 350,
        "serviceXRoadInstance": "EE", "serviceMemberClass": "GOV", "serviceMemberCode": "70000001",
        "serviceSubsystemCode": "demo", "serviceCode": service, "serviceVersion": "v1", "succeeded": succeeded,
        "requestSize": 1200, "responseSize": 800, "xRequestId": "0d7c1b5e-0000-4000-8000-000000000000"
    })
}

/// Steady traffic, whole numbers per 15-second window: pod A 2/s, pod B 1/3 s⁻¹ (one in 15 s failed), an
/// unknown IP 0.2/s, and the collector's own monitoring calls (excluded).
pub fn steady_traffic() -> Generator {
    Arc::new(|from, to| {
        let mut records = Vec::new();
        for s in from..=to {
            records.push(record(s, IP_A, "Producer", true, "getRandom"));
            records.push(record(s, IP_A, "Producer", true, "getRandom"));
            records.push(record(
                s,
                IP_A,
                "Client",
                true,
                "getSecurityServerOperationalData",
            ));
            if s % 3 == 0 {
                records.push(record(s, IP_B, "Producer", s % 15 != 0, "listClients"));
            }
            if s % 5 == 0 {
                records.push(record(s, "10.0.9.9", "Producer", true, "getRandom"));
            }
        }
        records
    })
}
