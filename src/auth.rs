//! Delegated authentication and authorization of every request, as an aggregated API server does it
//! (k8s.io/apiserver's delegated authentication and the authenticating-proxy docs): front-proxy headers behind a verified certificate,
//! client certificates, bearer tokens by TokenReview, then a SubjectAccessReview of the request's attributes.
//!
//! `trust` and `attributes` are pure; `review` and the ConfigMap watch here talk to the kube-apiserver.

pub mod attributes;
pub mod review;
pub mod trust;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use k8s_openapi::api::core::v1::ConfigMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use crate::telemetry::{Metrics, ReasonLabels};
use attributes::Attributes;
use review::{AccessDecision, AccessReviewer, ReviewError, ReviewTiming, TokenReviewer};
use trust::{CertificateIdentity, Trust, TrustError, TrustOverrides};

/// The namespace and name of the ConfigMap kube-apiserver publishes its client trust in.
pub const AUTHENTICATION_CONFIGMAP: (&str, &str) =
    ("kube-system", "extension-apiserver-authentication");

/// The group allowed everything without a SubjectAccessReview (the aggregator's availability check).
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// Who made a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// The user name.
    pub name: String,
    /// The UID, if the authenticator gave one.
    pub uid: String,
    /// Groups, in the order given.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// Adds `system:authenticated` if missing, as the generic apiserver's group adder does.
    fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".to_owned());
        }
        self
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or none that verify.
    #[error("Unauthorized")]
    Unauthenticated,
    /// The SubjectAccessReview said no.
    #[error("{message}")]
    Forbidden {
        /// The generic apiserver's wording, naming user, verb and resource.
        message: String,
        /// What was asked.
        attributes: Box<Attributes>,
    },
    /// The SubjectAccessReview could not be made.
    #[error("{0}")]
    ReviewFailed(String),
    /// Too many reviews are waiting for the kube-apiserver; try again shortly.
    #[error("Too many requests, please try again later.")]
    Throttled,
}

/// How requests are let in.
pub enum Access {
    /// No authentication or authorization (`--authentication none`, loopback only).
    Anonymous,
    /// Delegated to the kube-apiserver.
    Delegated(Arc<Delegated>),
}

/// A TLS connection's client certificate chain, with what it proved memoised per trust generation: the chain
/// is verified once per connection, not once per request, and again only after the trust changes.
pub struct PeerCertificates {
    chain: Vec<CertificateDer<'static>>,
    proven: Mutex<Option<(u64, CertificateIdentity)>>,
}

impl PeerCertificates {
    /// The chain the client presented, leaf first.
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        Self {
            chain,
            proven: Mutex::new(None),
        }
    }

    fn identity(&self, trust: &Trust) -> CertificateIdentity {
        let mut proven = self.proven.lock().unwrap_or_else(|e| e.into_inner());
        match &*proven {
            Some((generation, identity)) if *generation == trust.generation => identity.clone(),
            _ => {
                let identity = trust.identify(&self.chain);
                *proven = Some((trust.generation, identity.clone()));
                identity
            }
        }
    }
}

/// Settings of delegated access.
#[derive(Debug, Clone)]
pub struct DelegatedConfig {
    /// Flag overrides of the ConfigMap, as files (re-read whenever the trust is rebuilt).
    pub overrides: OverrideFiles,
    /// Paths open to everyone; a trailing `*` matches a prefix.
    pub always_allow_paths: Vec<String>,
    /// TokenReview `audiences`.
    pub audiences: Vec<String>,
    /// TokenReview cache and timeout.
    pub token_timing: ReviewTiming,
    /// SubjectAccessReview cache and timeout.
    pub access_timing: ReviewTiming,
    /// Start even if the ConfigMap cannot be read (only the flags' CAs are then trusted).
    pub tolerate_lookup_failure: bool,
}

/// `--client-ca-file`, `--requestheader-*` flags.
#[derive(Debug, Clone, Default)]
pub struct OverrideFiles {
    /// `--client-ca-file`.
    pub client_ca: Option<PathBuf>,
    /// `--requestheader-client-ca-file`.
    pub requestheader_ca: Option<PathBuf>,
    /// The list-valued overrides; their CA fields are ignored.
    pub lists: TrustOverrides,
}

impl OverrideFiles {
    fn read(&self) -> Result<TrustOverrides, TrustError> {
        let read = |path: &Option<PathBuf>, key| {
            path.as_ref()
                .map(|p| {
                    crate::files::read_text(p, crate::files::CONFIG_LIMIT).map_err(|e| TrustError {
                        key,
                        message: format!("cannot read {}: {e}", p.display()),
                    })
                })
                .transpose()
        };
        Ok(TrustOverrides {
            client_ca: read(&self.client_ca, trust::keys::CLIENT_CA)?,
            requestheader_ca: read(&self.requestheader_ca, trust::keys::REQUESTHEADER_CA)?,
            ..self.lists.clone()
        })
    }
}

/// Why delegated access could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The ConfigMap could not be read and that is not tolerated.
    #[error(
        "cannot read the ConfigMap kube-system/extension-apiserver-authentication: {0} (the adapter's \
         ServiceAccount needs the RoleBinding to extension-apiserver-authentication-reader in kube-system; \
         --authentication-tolerate-lookup-failure starts without it)"
    )]
    Lookup(String),
    /// A trusted value is unusable.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// Counters of authentication and authorization outcomes.
#[derive(Clone, Default)]
struct AuthMetrics {
    authentications: Family<ReasonLabels, Counter>,
    authorizations: Family<ReasonLabels, Counter>,
}

/// Delegated access: the trust in force and the two reviewers.
pub struct Delegated {
    trust: watch::Receiver<Arc<Trust>>,
    tokens: TokenReviewer,
    access: AccessReviewer,
    always_allow: Vec<String>,
    metrics: AuthMetrics,
}

impl Delegated {
    /// Reads the trust once (failing unless tolerated), then keeps it current from a watch of the ConfigMap
    /// and a re-read of the override files every minute. `client` reads the ConfigMap and sends TokenReviews,
    /// `authorization` sends SubjectAccessReviews (the generic apiserver's `--authentication-kubeconfig` and
    /// `--authorization-kubeconfig`; usually the same).
    pub async fn start(
        client: kube::Client,
        authorization: kube::Client,
        config: DelegatedConfig,
    ) -> Result<Arc<Self>, StartError> {
        let api: kube::Api<ConfigMap> =
            kube::Api::namespaced(client.clone(), AUTHENTICATION_CONFIGMAP.0);
        let data = match api.get_opt(AUTHENTICATION_CONFIGMAP.1).await {
            Ok(Some(map)) => map.data.unwrap_or_default(),
            Ok(None) if config.tolerate_lookup_failure => BTreeMap::new(),
            Ok(None) => return Err(StartError::Lookup("not found".into())),
            Err(error) if config.tolerate_lookup_failure => {
                tracing::warn!(error = %crate::error_chain::root_cause(&error), "cannot read the authentication ConfigMap; trusting only the flags' CAs");
                BTreeMap::new()
            }
            Err(error) => return Err(StartError::Lookup(crate::error_chain::root_cause(&error))),
        };
        let trust = Trust::new(&data, &config.overrides.read()?, 1)?;
        let (sender, receiver) = watch::channel(Arc::new(trust));
        tokio::spawn(keep_trust(api, config.overrides.clone(), data, sender));
        Ok(Arc::new(Self::new(
            client,
            authorization,
            &config,
            receiver,
        )))
    }

    fn new(
        client: kube::Client,
        authorization: kube::Client,
        config: &DelegatedConfig,
        trust: watch::Receiver<Arc<Trust>>,
    ) -> Self {
        Self {
            trust,
            tokens: TokenReviewer::new(client, config.audiences.clone(), config.token_timing),
            access: AccessReviewer::new(authorization, config.access_timing),
            always_allow: config.always_allow_paths.clone(),
            metrics: AuthMetrics::default(),
        }
    }

    /// Adds the authentication and authorization counters to `/metrics`.
    pub fn register_metrics(&self, metrics: &Metrics) {
        metrics.register(
            "xroad_metrics_adapter_authentications",
            "Authentication outcomes: front_proxy, client_certificate, token, unauthenticated, throttled, error",
            self.metrics.authentications.clone(),
        );
        metrics.register(
            "xroad_metrics_adapter_authorizations",
            "Authorization outcomes: allowed, denied, privileged_group, always_allowed_path, throttled, error",
            self.metrics.authorizations.clone(),
        );
    }

    /// Whether `path` needs no authentication at all (`/healthz`, `/livez`, `/readyz` by default).
    pub fn is_always_allowed(&self, path: &str) -> bool {
        let allowed = self
            .always_allow
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == pattern,
            });
        if allowed {
            self.count_authorization("always_allowed_path");
        }
        allowed
    }

    fn count_authentication(&self, reason: &'static str) {
        self.metrics
            .authentications
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    fn count_authorization(&self, reason: &'static str) {
        self.metrics
            .authorizations
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Who sent a request, stripping the front-proxy headers and the bearer token from `headers`.
    pub async fn authenticate(
        &self,
        peer: Option<&PeerCertificates>,
        headers: &mut HeaderMap,
    ) -> Result<UserInfo, AuthError> {
        let trust = self.trust.borrow().clone();
        let identity = peer.map(|p| p.identity(&trust)).unwrap_or_default();
        let from_headers = identity
            .front_proxy
            .then(|| trust.header_user(headers))
            .flatten();
        trust.strip_headers(headers);
        let token = headers
            .remove(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .and_then(|v| bearer(&v).map(str::to_owned));

        let (user, how) = if let Some(user) = from_headers {
            (user, "front_proxy")
        } else if let Some(user) = identity.user {
            (user, "client_certificate")
        } else if let Some(token) = token {
            match self.tokens.review(&token).await {
                Ok(Some(user)) => (user, "token"),
                Ok(None) => return Err(self.unauthenticated("unauthenticated")),
                Err(ReviewError::Busy) => {
                    self.count_authentication("throttled");
                    return Err(AuthError::Throttled);
                }
                Err(error) => {
                    tracing::warn!(%error, "TokenReview failed");
                    return Err(self.unauthenticated("error"));
                }
            }
        } else {
            return Err(self.unauthenticated("unauthenticated"));
        };
        self.count_authentication(how);
        Ok(user.authenticated())
    }

    fn unauthenticated(&self, reason: &'static str) -> AuthError {
        self.count_authentication(reason);
        AuthError::Unauthenticated
    }

    /// Whether `user` may do what `attributes` describe.
    pub async fn authorize(
        &self,
        user: &UserInfo,
        attributes: &Attributes,
    ) -> Result<(), AuthError> {
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            self.count_authorization("privileged_group");
            return Ok(());
        }
        match self.access.review(user, attributes).await {
            Ok(AccessDecision::Allowed) => {
                self.count_authorization("allowed");
                Ok(())
            }
            Ok(AccessDecision::Denied(reason)) => {
                self.count_authorization("denied");
                Err(AuthError::Forbidden {
                    message: attributes.forbidden_message(&user.name, &reason),
                    attributes: Box::new(attributes.clone()),
                })
            }
            Err(ReviewError::Busy) => {
                self.count_authorization("throttled");
                Err(AuthError::Throttled)
            }
            Err(error) => {
                self.count_authorization("error");
                tracing::warn!(%error, "SubjectAccessReview failed");
                Err(AuthError::ReviewFailed(error.to_string()))
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, read as kube-apiserver's bearer-token
/// authenticator reads it: the header trimmed and split on single spaces, the scheme case-insensitive, the
/// token the second part. `Bearer  tok` (two spaces) has an empty token, which no authenticator accepts, and
/// `Bearer a b` has the token `a`.
fn bearer(value: &str) -> Option<&str> {
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// How often the override files are re-read, and the ConfigMap re-listed if its watch went quiet.
const TRUST_RESYNC: Duration = Duration::from_secs(60);

/// Rebuilds the trust on every change of the ConfigMap and every minute; a bad value keeps the previous trust.
async fn keep_trust(
    api: kube::Api<ConfigMap>,
    overrides: OverrideFiles,
    mut data: BTreeMap<String, String>,
    sender: watch::Sender<Arc<Trust>>,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", AUTHENTICATION_CONFIGMAP.1));
    let mut changes = watcher::watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut resync = tokio::time::interval(TRUST_RESYNC);
    let mut generation = 1;
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(map)) => data = map.data.unwrap_or_default(),
                Some(Err(error)) => {
                    tracing::warn!(%error, "watching the authentication ConfigMap failed; retrying");
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => {}
            () = sender.closed() => return,
        }
        let built = overrides
            .read()
            .and_then(|o| Trust::new(&data, &o, generation + 1));
        match built {
            Ok(trust) => {
                generation += 1;
                sender.send_replace(Arc::new(trust));
            }
            Err(error) => tracing::warn!(%error, "keeping the previous client trust"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_as_go_reads_them() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc "), Some("abc"));
        assert_eq!(bearer(" BEARER abc"), Some("abc"));
        assert_eq!(bearer("Bearer  abc"), None, "two spaces: an empty token");
        assert_eq!(bearer("Bearer a b"), Some("a"), "the second part only");
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn system_authenticated_is_added_once() {
        let user = UserInfo {
            name: "a".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        };
        assert_eq!(user.clone().authenticated(), user);
        let bare = UserInfo {
            name: "b".into(),
            ..UserInfo::default()
        };
        assert_eq!(bare.authenticated().groups, ["system:authenticated"]);
    }
}
