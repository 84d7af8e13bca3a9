//! How a backend request proves who sends it: a bearer token or basic-auth password read from a file (re-read
//! when it rotates), an OAuth2 client-credentials token, or an AWS SigV4 signature over the exact bytes sent
//! (Amazon Managed Service for Prometheus). Credentials never reach a log or an error message.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use tokio::sync::Mutex as AsyncMutex;

use super::watched::SecretFile;

/// One backend's credentials.
#[derive(Debug)]
pub enum Credentials {
    /// None: an in-cluster Prometheus, or one behind a proxy that adds them.
    None,
    /// `Authorization: Bearer <file>`.
    Bearer(SecretFile),
    /// `Authorization: Basic …` with the password from a file.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretFile,
    },
    /// An OAuth2 client-credentials token (RFC 6749 §4.4), fetched and renewed before it expires.
    OAuth2(OAuth2),
    /// AWS Signature Version 4 with the AWS SDK's default credential chain.
    SigV4(SigV4),
}

impl Credentials {
    /// Adds the credentials to `request`, which must be complete: a signature covers its method, URL,
    /// headers and body.
    pub async fn apply(&self, request: &mut reqwest::Request) -> Result<(), String> {
        let authorization = match self {
            Credentials::None => return Ok(()),
            Credentials::Bearer(token) => format!("Bearer {}", token.read()?),
            Credentials::Basic { username, password } => {
                use base64::Engine;
                let pair = format!("{username}:{}", password.read()?);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            Credentials::OAuth2(oauth2) => format!("Bearer {}", oauth2.token().await?),
            Credentials::SigV4(sigv4) => return sigv4.sign(request).await,
        };
        request
            .headers_mut()
            .insert(AUTHORIZATION, sensitive(&authorization)?);
        Ok(())
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::try_from(text)
        .map_err(|_| "the credential is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The client-credentials grant: `client_id` and the secret from a file, sent as HTTP Basic (RFC 6749
/// §2.3.1) to `token_url`.
#[derive(Debug)]
pub struct OAuth2 {
    token_url: url::Url,
    client_id: String,
    client_secret: SecretFile,
    scopes: Vec<String>,
    params: Vec<(String, String)>,
    http: reqwest::Client,
    token: AsyncMutex<Option<(Arc<str>, Instant)>>,
}

/// A token is renewed this long before the expiry its issuer gave.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl OAuth2 {
    /// Nothing is fetched until the first request.
    pub fn new(
        token_url: url::Url,
        client_id: String,
        client_secret: SecretFile,
        scopes: Vec<String>,
        params: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the OAuth2 client: {e}"))?;
        Ok(Self {
            token_url,
            client_id,
            client_secret,
            scopes,
            params,
            http,
            token: AsyncMutex::new(None),
        })
    }

    /// The current token, fetched once for every concurrent caller when it is missing or about to expire.
    async fn token(&self) -> Result<Arc<str>, String> {
        let mut token = self.token.lock().await;
        if let Some((text, renew_at)) = token.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(text.clone());
        }
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
        if !self.scopes.is_empty() {
            form.push(("scope".to_owned(), self.scopes.join(" ")));
        }
        form.extend(self.params.iter().cloned());
        let failed = |why: String| format!("OAuth2 token from {}: {why}", self.token_url);
        let response = self
            .http
            .post(self.token_url.clone())
            .basic_auth(
                encode(&self.client_id),
                Some(encode(&self.client_secret.read()?)),
            )
            .form(&form)
            .send()
            .await
            .map_err(|e| failed(crate::error_chain::transport_cause(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|_| failed("the answer has no access_token".to_owned()))?;
        // Without an expiry, ask again at least every hour.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE).max(lifetime / 2);
        let text: Arc<str> = answer.access_token.into();
        *token = Some((text.clone(), renew_at));
        Ok(text)
    }
}

/// AWS SigV4 for a service (`aps` for Amazon Managed Service for Prometheus) in a region. Credentials come
/// from the AWS SDK's default chain, the one every AWS SDK follows: the environment, the web identity token
/// file of IRSA, EKS Pod Identity's container endpoint, profiles and instance metadata.
pub struct SigV4 {
    region: Option<String>,
    service: String,
    chain: tokio::sync::OnceCell<Chain>,
    cached: AsyncMutex<Option<aws_credential_types::Credentials>>,
}

struct Chain {
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    region: String,
}

impl std::fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

impl SigV4 {
    /// `region` defaults to the SDK's (`AWS_REGION`, the profile); `service` is the signing name.
    pub fn new(region: Option<String>, service: String) -> Self {
        Self {
            region,
            service,
            chain: tokio::sync::OnceCell::new(),
            cached: AsyncMutex::new(None),
        }
    }

    async fn chain(&self) -> Result<&Chain, String> {
        self.chain
            .get_or_try_init(|| async {
                use aws_config::BehaviorVersion;
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(region) = &self.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let sdk = loader.load().await;
                let region = sdk
                    .region()
                    .map(|r| r.to_string())
                    .ok_or("SigV4: no AWS region: set sigv4.region or AWS_REGION")?;
                let provider = sdk
                    .credentials_provider()
                    .ok_or("SigV4: the AWS SDK found no credentials provider")?;
                Ok(Chain { provider, region })
            })
            .await
    }

    async fn credentials(
        &self,
        chain: &Chain,
    ) -> Result<aws_credential_types::Credentials, String> {
        use aws_credential_types::provider::ProvideCredentials;
        let mut cached = self.cached.lock().await;
        if let Some(credentials) = cached.as_ref()
            && credentials
                .expiry()
                .is_none_or(|expiry| SystemTime::now() + REFRESH_BEFORE < expiry)
        {
            return Ok(credentials.clone());
        }
        let credentials = chain.provider.provide_credentials().await.map_err(|e| {
            format!(
                "SigV4: no AWS credentials: {}",
                crate::error_chain::root_cause(&e)
            )
        })?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }

    async fn sign(&self, request: &mut reqwest::Request) -> Result<(), String> {
        let chain = self.chain().await?;
        let credentials = self.credentials(chain).await?;
        sign(
            request,
            &credentials,
            &chain.region,
            &self.service,
            SystemTime::now(),
        )
    }
}

/// Signs `request` as it will be sent: method, URL, the headers it carries (the host comes from the URL)
/// and its body. A request with a body also signs the body's hash in `x-amz-content-sha256`.
fn sign(
    request: &mut reqwest::Request,
    credentials: &aws_credential_types::Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), String> {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
    };
    let failed = |e: &dyn std::fmt::Display| format!("SigV4: cannot sign the request: {e}");
    let body = request
        .body()
        .map(|b| b.as_bytes().ok_or("a streamed body cannot be signed"))
        .transpose()
        .map_err(|e| failed(&e))?
        .unwrap_or_default();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| failed(&e))?;
    let mut settings = SigningSettings::default();
    if !body.is_empty() {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let identity = credentials.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    let mut signed = Vec::new();
    for (name, value) in instructions.headers() {
        let name = HeaderName::try_from(name).map_err(|e| failed(&e))?;
        signed.push((name, sensitive(value)?));
    }
    request.headers_mut().extend(signed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of the AWS SigV4 test suite (`aws-signing-test-suite/v4/*/context.json`).
    fn suite_credentials(token: Option<&str>) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test-suite",
        )
    }

    /// 2015-08-30T12:36:00Z, the test suite's clock.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn signed(mut request: reqwest::Request, token: Option<&str>) -> (String, Option<String>) {
        sign(
            &mut request,
            &suite_credentials(token),
            "us-east-1",
            "service",
            suite_time(),
        )
        .unwrap();
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        (
            header("authorization").unwrap(),
            header("x-amz-security-token"),
        )
    }

    fn request(method: reqwest::Method, body: Option<&'static str>) -> reqwest::Request {
        let mut request =
            reqwest::Request::new(method, "https://example.amazonaws.com/".parse().unwrap());
        if let Some(body) = body {
            let headers = request.headers_mut();
            headers.insert(
                "content-type",
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            headers.insert("content-length", HeaderValue::from(body.len()));
            *request.body_mut() = Some(body.into());
        }
        request
    }

    #[test]
    fn sigv4_matches_the_published_get_vanilla_vector() {
        let (authorization, _) = signed(request(reqwest::Method::GET, None), None);
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn sigv4_matches_the_published_session_token_vector() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let (authorization, sent_token) = signed(request(reqwest::Method::GET, None), Some(token));
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        );
        assert_eq!(sent_token.as_deref(), Some(token));
    }

    #[test]
    fn sigv4_signs_a_form_post_body_as_the_published_vector_does() {
        let (authorization, _) =
            signed(request(reqwest::Method::POST, Some("Param1=value1")), None);
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
        );
    }
}
