//! A recording reverse proxy in front of a real Prometheus, for what a real backend cannot show or do: it
//! serves TLS and may demand a client certificate signed by a given CA, keeps every request (method, path,
//! query, headers, body and the client certificate's common name), checks AWS SigV4 signatures against the
//! test-suite credentials, and can add `warnings` to Prometheus' answers as Thanos does for a partial answer
//! (the Prometheus HTTP API's response format). Prometheus itself answers every query.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::pki::{Ca, Leaf};

/// One request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
    /// The client certificate's CN, if one was presented.
    pub client: Option<String>,
    /// Whether its SigV4 signature verified, if it had one.
    pub sigv4_valid: Option<bool>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The form the request carried (POST body or GET query).
    pub fn form(&self) -> Vec<(String, String)> {
        let text = match self.method.as_str() {
            "POST" => self.body.clone(),
            _ => self.query.clone().unwrap_or_default().into_bytes(),
        };
        form_urlencoded::parse(&text).into_owned().collect()
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    warnings: Mutex<Vec<String>>,
}

/// The proxy; it stops when dropped.
pub struct RecordingProxy {
    pub url: String,
    /// The CA its serving certificate is signed by (PEM), for the adapter's `tls.caFile`.
    pub ca_pem: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// The AWS SigV4 test suite's credentials, which the proxy verifies signatures with.
pub const SIGV4_ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SIGV4_SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

impl RecordingProxy {
    /// A proxy for `upstream` on `https://localhost:<port>`; with `client_ca`, only clients presenting a
    /// certificate it signed may connect.
    pub async fn start(upstream: &str, client_ca: Option<&Ca>) -> Self {
        let ca = Ca::new("recording-proxy-ca");
        let serving = ca.server(&["localhost"]);
        let tls = server_config(&serving, &ca, client_ca);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let state = Arc::new(State::default());
        let upstream = upstream.trim_end_matches('/').to_owned();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, state, http, upstream) = (
                    acceptor.clone(),
                    shared.clone(),
                    http.clone(),
                    upstream.clone(),
                );
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| common_name(chain.first()?));
                    let service = hyper::service::service_fn(move |request| {
                        let (state, http, upstream, client) = (
                            state.clone(),
                            http.clone(),
                            upstream.clone(),
                            client.clone(),
                        );
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                forward(request, &state, &http, &upstream, client).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            ca_pem: ca.pem,
            state,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Queries (`/api/v1/query`) only.
    pub fn queries(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/api/v1/query"))
            .collect()
    }

    /// From now on, every answer carries these warnings (none: answers pass unchanged).
    pub fn answer_with_warnings(&self, warnings: &[&str]) {
        *self.state.warnings.lock().unwrap() = warnings.iter().map(|w| w.to_string()).collect();
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn server_config(serving: &Leaf, ca: &Ca, client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(
                    rustls::pki_types::CertificateDer::from_pem_slice(client_ca.pem.as_bytes())
                        .unwrap(),
                )
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = vec![
        serving.der(),
        rustls::pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap(),
    ];
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).unwrap();
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

fn common_name(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

async fn forward(
    request: Request<Incoming>,
    state: &State,
    http: &reqwest::Client,
    upstream: &str,
    client: Option<String>,
) -> Response<String> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let sigv4_valid = parts
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.starts_with("AWS4-HMAC-SHA256"))
        .map(|authorization| {
            let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            verify_sigv4(
                authorization,
                parts.method.as_str(),
                &format!("https://{host}{uri}"),
                &parts.headers,
                &body,
            )
        });
    state.requests.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
        client,
        sigv4_valid,
    });
    // Prometheus serves the API at the root: drop any path prefix the adapter was given.
    let path = parts.uri.path();
    let path = &path[path.find("/api/v1/").unwrap_or(0)..];
    let mut url = format!("{upstream}{path}");
    if let Some(query) = parts.uri.query() {
        url = format!("{url}?{query}");
    }
    let mut forwarded = http.request(parts.method.clone(), url).body(body);
    if let Some(content_type) = parts.headers.get("content-type") {
        forwarded = forwarded.header("content-type", content_type);
    }
    let answer = forwarded.send().await.unwrap();
    let status = answer.status().as_u16();
    let mut text = answer.text().await.unwrap();
    let warnings = state.warnings.lock().unwrap().clone();
    if !warnings.is_empty() {
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["warnings"] = warnings.into();
        text = json.to_string();
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(text)
        .unwrap()
}

/// Signs the request again from what was received (the headers it says it signed, the body) with the test
/// suite's secret and the time it says it was signed at, and compares the two `Authorization` values.
fn verify_sigv4(
    authorization: &str,
    method: &str,
    url: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> bool {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
    };
    let field = |name: &str| {
        authorization
            .split([' ', ','])
            .find_map(|part| part.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    let scope: Vec<String> = field("Credential=").split('/').map(str::to_owned).collect();
    let signed_headers = field("SignedHeaders=");
    let Some(time) = headers
        .get("x-amz-date")
        .and_then(|d| d.to_str().ok())
        .and_then(amz_date)
    else {
        return false;
    };
    let names: Vec<&str> = signed_headers.split(';').collect();
    let added_by_signer = [
        "host",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
    ];
    let kept: Vec<(&str, &str)> = names
        .iter()
        .filter(|n| !added_by_signer.contains(n))
        .filter_map(|n| Some((*n, headers.get(*n)?.to_str().ok()?)))
        .collect();
    let Ok(signable) =
        SignableRequest::new(method, url, kept.into_iter(), SignableBody::Bytes(body))
    else {
        return false;
    };
    let mut settings = SigningSettings::default();
    if names.contains(&"x-amz-content-sha256") {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let token = headers
        .get("x-amz-security-token")
        .and_then(|t| t.to_str().ok())
        .map(str::to_owned);
    let identity = aws_credential_types::Credentials::new(
        SIGV4_ACCESS_KEY,
        SIGV4_SECRET_KEY,
        token,
        None,
        "recording-proxy",
    )
    .into();
    if scope.len() != 5 {
        return false;
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&scope[2])
        .name(&scope[3])
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let Ok(output) = aws_sigv4::http_request::sign(signable, &params) else {
        return false;
    };
    let (instructions, _) = output.into_parts();
    instructions
        .headers()
        .any(|(name, value)| name == "authorization" && value == authorization)
}

/// `20150830T123600Z` as a time.
pub fn amz_date(text: &str) -> Option<SystemTime> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hh, mm, ss) = (number(9..11)?, number(11..13)?, number(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64))
}
