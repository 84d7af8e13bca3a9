//! The two questions the adapter asks the kube-apiserver: TokenReview (who holds this bearer token?) and
//! SubjectAccessReview (may this user do this?), each behind a short-lived cache
//! (k8s.io/apiserver's delegated authentication and the authenticating-proxy docs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as K8sResourceAttributes, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use moka::Expiry;
use moka::future::Cache;
use tokio::sync::Semaphore;

use super::UserInfo;
use super::attributes::Attributes;

/// How long answers are kept, and how long a call may take (the generic apiserver's defaults are 10 s each).
#[derive(Debug, Clone, Copy)]
pub struct ReviewTiming {
    /// Lifetime of a positive answer (token accepted, request allowed).
    pub positive_ttl: Duration,
    /// Lifetime of a negative answer (token rejected, request denied).
    pub negative_ttl: Duration,
    /// The client timeout of one review call.
    pub timeout: Duration,
}

impl Default for ReviewTiming {
    fn default() -> Self {
        Self {
            positive_ttl: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }
}

/// A review call that got no answer. Never cached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReviewError {
    /// The call failed or timed out.
    #[error("{0}")]
    Failed(String),
    /// [`MAX_REVIEWS_IN_FLIGHT`] calls are already waiting for the kube-apiserver.
    #[error("too many reviews in flight")]
    Busy,
}

/// Reviews of one kind waiting for the kube-apiserver at once. Beyond this a request is turned away at once
/// (429) instead of queueing: a flood of made-up tokens, each a TokenReview, must neither pile up requests
/// and memory here nor open thousands of connections to the kube-apiserver. Answers from the cache and
/// front-proxy or client-certificate users never need a slot.
pub const MAX_REVIEWS_IN_FLIGHT: usize = 32;

fn slot(slots: &Semaphore) -> Result<tokio::sync::SemaphorePermit<'_>, ReviewError> {
    slots.try_acquire().map_err(|_| ReviewError::Busy)
}

/// A cached answer that knows whether it was positive, so it can expire on the matching TTL.
trait Verdict {
    fn positive(&self) -> bool;
}

impl Verdict for Option<UserInfo> {
    fn positive(&self) -> bool {
        self.is_some()
    }
}

impl Verdict for AccessDecision {
    fn positive(&self) -> bool {
        matches!(self, AccessDecision::Allowed)
    }
}

struct ByVerdict(ReviewTiming);

impl<K, V: Verdict> Expiry<K, V> for ByVerdict {
    fn expire_after_create(&self, _key: &K, value: &V, _created_at: Instant) -> Option<Duration> {
        Some(if value.positive() {
            self.0.positive_ttl
        } else {
            self.0.negative_ttl
        })
    }
}

fn cache<K, V>(timing: ReviewTiming) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Verdict + Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(10_000)
        .expire_after(ByVerdict(timing))
        .build()
}

/// Asks TokenReview who holds a bearer token.
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
    timing: ReviewTiming,
    /// Keyed by a SHA-256 of the token and the audiences: no raw token is ever stored.
    answers: Cache<[u8; 32], Option<UserInfo>>,
    slots: Semaphore,
}

impl TokenReviewer {
    /// A reviewer asking with `audiences` (empty: the API server's own).
    pub fn new(client: kube::Client, audiences: Vec<String>, timing: ReviewTiming) -> Self {
        Self {
            client,
            audiences,
            timing,
            answers: cache(timing),
            slots: Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
        }
    }

    fn key(&self, token: &str) -> [u8; 32] {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(token.as_bytes());
        for audience in &self.audiences {
            context.update(b"\0");
            context.update(audience.as_bytes());
        }
        context
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 digests are 32 bytes")
    }

    /// The token's user, `None` when the token is not accepted.
    pub async fn review(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        self.answers
            .try_get_with(self.key(token), self.ask(token))
            .await
            .map_err(|e| (*e).clone())
    }

    async fn ask(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        let _slot = slot(&self.slots)?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = call(
            self.timing.timeout,
            api.create(&PostParams::default(), &review),
        )
        .await?;
        let Some(status) = answer.status else {
            return Ok(None);
        };
        if status.authenticated != Some(true)
            || status.error.as_deref().is_some_and(|e| !e.is_empty())
        {
            return Ok(None);
        }
        Ok(status.user.and_then(|user| {
            Some(UserInfo {
                name: user.username.filter(|n| !n.is_empty())?,
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default().into_iter().collect(),
            })
        }))
    }
}

/// A SubjectAccessReview's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDecision {
    /// `allowed: true`.
    Allowed,
    /// Anything else, with the authorizer's reason.
    Denied(String),
}

/// Asks SubjectAccessReview whether a user may do something.
pub struct AccessReviewer {
    client: kube::Client,
    timing: ReviewTiming,
    /// Keyed by the whole user and all attributes.
    answers: Cache<(UserInfo, Attributes), AccessDecision>,
    slots: Semaphore,
}

impl AccessReviewer {
    /// A reviewer with these TTLs and timeout.
    pub fn new(client: kube::Client, timing: ReviewTiming) -> Self {
        Self {
            client,
            timing,
            answers: cache(timing),
            slots: Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
        }
    }

    /// Whether `user` may do what `attributes` describe.
    pub async fn review(
        &self,
        user: &UserInfo,
        attributes: &Attributes,
    ) -> Result<AccessDecision, ReviewError> {
        self.answers
            .try_get_with(
                (user.clone(), attributes.clone()),
                self.ask(user, attributes),
            )
            .await
            .map_err(|e| (*e).clone())
    }

    async fn ask(
        &self,
        user: &UserInfo,
        attributes: &Attributes,
    ) -> Result<AccessDecision, ReviewError> {
        let _slot = slot(&self.slots)?;
        let (resource_attributes, non_resource_attributes) = match attributes {
            Attributes::Resource(r) => {
                let some = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
                (
                    Some(K8sResourceAttributes {
                        verb: some(&r.verb),
                        group: Some(r.group.clone()),
                        version: some(&r.version),
                        resource: some(&r.resource),
                        subresource: some(&r.subresource),
                        name: some(&r.name),
                        namespace: some(&r.namespace),
                        ..K8sResourceAttributes::default()
                    }),
                    None,
                )
            }
            Attributes::NonResource { verb, path } => (
                None,
                Some(NonResourceAttributes {
                    path: Some(path.clone()),
                    verb: Some(verb.clone()),
                }),
            ),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone().into_iter().collect::<BTreeMap<_, _>>()),
                resource_attributes,
                non_resource_attributes,
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = call(
            self.timing.timeout,
            api.create(&PostParams::default(), &review),
        )
        .await?;
        let status = answer.status.unwrap_or_default();
        Ok(if status.allowed {
            AccessDecision::Allowed
        } else {
            let reason = status.reason.unwrap_or_default();
            AccessDecision::Denied(match status.evaluation_error {
                Some(error) if !error.is_empty() && reason.is_empty() => error,
                _ => reason,
            })
        })
    }
}

async fn call<T>(
    timeout: Duration,
    request: impl Future<Output = kube::Result<T>>,
) -> Result<T, ReviewError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(ReviewError::Failed(crate::error_chain::root_cause(&error))),
        Err(_) => Err(ReviewError::Failed(format!("no answer within {timeout:?}"))),
    }
}
