//! Which client certificates and front-proxy headers the adapter trusts: the
//! `kube-system/extension-apiserver-authentication` ConfigMap with the flag overrides applied, certificate
//! chain verification against its two CA bundles, and the requestheader rule
//! (k8s.io/apiserver's delegated authentication and the authenticating-proxy docs). Pure: the caller supplies the texts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use percent_encoding::percent_decode_str;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use super::UserInfo;

/// The ConfigMap's keys.
pub mod keys {
    /// CA bundle of plain client-certificate users.
    pub const CLIENT_CA: &str = "client-ca-file";
    /// CA bundle of the front-proxy client certificate.
    pub const REQUESTHEADER_CA: &str = "requestheader-client-ca-file";
    /// JSON array of allowed front-proxy CNs.
    pub const ALLOWED_NAMES: &str = "requestheader-allowed-names";
    /// JSON array of username headers.
    pub const USERNAME_HEADERS: &str = "requestheader-username-headers";
    /// JSON array of UID headers.
    pub const UID_HEADERS: &str = "requestheader-uid-headers";
    /// JSON array of group headers.
    pub const GROUP_HEADERS: &str = "requestheader-group-headers";
    /// JSON array of extra-header prefixes.
    pub const EXTRA_PREFIXES: &str = "requestheader-extra-headers-prefix";
}

/// Values given on the command line; each replaces the ConfigMap's key of the same name.
#[derive(Debug, Clone, Default)]
pub struct TrustOverrides {
    /// PEM text of `--client-ca-file`.
    pub client_ca: Option<String>,
    /// PEM text of `--requestheader-client-ca-file`.
    pub requestheader_ca: Option<String>,
    /// `--requestheader-allowed-names`.
    pub allowed_names: Option<Vec<String>>,
    /// `--requestheader-username-headers`.
    pub username_headers: Option<Vec<String>>,
    /// `--requestheader-uid-headers`.
    pub uid_headers: Option<Vec<String>>,
    /// `--requestheader-group-headers`.
    pub group_headers: Option<Vec<String>>,
    /// `--requestheader-extra-headers-prefix`.
    pub extra_prefixes: Option<Vec<String>>,
}

/// A ConfigMap key or flag whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TrustError {
    /// The key (or flag) at fault.
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// The trust in force: at most two CA bundles and the front-proxy header names.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Changes whenever a new `Trust` is built, so per-connection results can tell they are out of date.
    pub generation: u64,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
    requestheader: Option<RequestHeader>,
}

/// The front-proxy (requestheader) configuration.
#[derive(Debug, Clone)]
struct RequestHeader {
    verifier: Arc<dyn ClientCertVerifier>,
    allowed_names: Vec<String>,
    /// Header names, lower-cased as `HeaderMap` stores them.
    username_headers: Vec<String>,
    uid_headers: Vec<String>,
    group_headers: Vec<String>,
    extra_prefixes: Vec<String>,
}

/// What a client certificate chain proves, against the trust of one generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// The chain verifies against the requestheader CA and its CN is allowed: `X-Remote-*` headers count.
    pub front_proxy: bool,
    /// The chain verifies against `client-ca-file`: the user its subject names.
    pub user: Option<UserInfo>,
}

fn string_list(
    data: &BTreeMap<String, String>,
    key: &'static str,
    overridden: &Option<Vec<String>>,
) -> Result<Vec<String>, TrustError> {
    if let Some(list) = overridden {
        return Ok(list.clone());
    }
    match data.get(key) {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| TrustError {
            key,
            message: format!("not a JSON array of strings: {e}"),
        }),
    }
}

/// A verifier for client certificates chaining to the CAs in `pem`; `None` for an empty bundle.
fn verifier(
    pem: &str,
    key: &'static str,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TrustError> {
    crate::server::tls::client_verifier(pem.as_bytes())
        .map_err(|message| TrustError { key, message })
}

fn lower(names: Vec<String>) -> Vec<String> {
    names.into_iter().map(|n| n.to_ascii_lowercase()).collect()
}

impl Trust {
    /// Builds the trust from the ConfigMap's `data` with `overrides` applied.
    pub fn new(
        data: &BTreeMap<String, String>,
        overrides: &TrustOverrides,
        generation: u64,
    ) -> Result<Self, TrustError> {
        let text = |key: &'static str, overridden: &Option<String>| {
            overridden
                .clone()
                .or_else(|| data.get(key).cloned())
                .unwrap_or_default()
        };
        let client_ca = verifier(
            &text(keys::CLIENT_CA, &overrides.client_ca),
            keys::CLIENT_CA,
        )?;
        let requestheader = match verifier(
            &text(keys::REQUESTHEADER_CA, &overrides.requestheader_ca),
            keys::REQUESTHEADER_CA,
        )? {
            None => None,
            Some(verifier) => Some(RequestHeader {
                verifier,
                allowed_names: string_list(data, keys::ALLOWED_NAMES, &overrides.allowed_names)?,
                username_headers: lower(string_list(
                    data,
                    keys::USERNAME_HEADERS,
                    &overrides.username_headers,
                )?),
                uid_headers: lower(string_list(
                    data,
                    keys::UID_HEADERS,
                    &overrides.uid_headers,
                )?),
                group_headers: lower(string_list(
                    data,
                    keys::GROUP_HEADERS,
                    &overrides.group_headers,
                )?),
                extra_prefixes: lower(string_list(
                    data,
                    keys::EXTRA_PREFIXES,
                    &overrides.extra_prefixes,
                )?),
            }),
        };
        Ok(Self {
            generation,
            client_ca,
            requestheader,
        })
    }

    /// What `chain` (leaf first) proves. A chain that verifies against neither bundle proves nothing; only
    /// client-auth certificates qualify (webpki checks the extended key usage).
    pub fn identify(&self, chain: &[CertificateDer<'static>]) -> CertificateIdentity {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return CertificateIdentity::default();
        };
        let verifies = |verifier: &Arc<dyn ClientCertVerifier>| {
            verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok()
        };
        let subject = || subject(leaf);
        let front_proxy = self.requestheader.as_ref().is_some_and(|rh| {
            verifies(&rh.verifier)
                && (rh.allowed_names.is_empty()
                    || subject().is_some_and(|(cn, _)| rh.allowed_names.contains(&cn)))
        });
        let user = self
            .client_ca
            .as_ref()
            .filter(|v| verifies(v))
            .and_then(|_| subject())
            .filter(|(cn, _)| !cn.is_empty())
            .map(|(name, groups)| UserInfo {
                name,
                groups,
                ..UserInfo::default()
            });
        CertificateIdentity { front_proxy, user }
    }

    /// The user the front-proxy headers name, or `None` when no username header is set. Call
    /// only for a connection whose certificate `identify` found to be the front proxy's.
    pub fn header_user(&self, headers: &HeaderMap) -> Option<UserInfo> {
        let rh = self.requestheader.as_ref()?;
        // As k8s.io/apiserver's requestheader authenticator reads them: a single-valued header counts by its
        // first value only (an empty first value does not fall through to a second), the first configured
        // header with a non-empty value wins, and a list collects every non-empty value.
        let first_value = |name: &String| {
            headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let first = |names: &[String]| names.iter().find_map(first_value);
        let values = |name: &String| {
            headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let name = first(&rh.username_headers)?;
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (header, value) in headers {
            let Some(suffix) = rh
                .extra_prefixes
                .iter()
                .find_map(|p| header.as_str().strip_prefix(p.as_str()))
            else {
                continue;
            };
            if let Ok(value) = value.to_str() {
                // Lower-cased first, then unescaped, in Go's order: `%4A` is `J`, not `j`.
                let key = percent_decode_str(&suffix.to_lowercase())
                    .decode_utf8_lossy()
                    .into_owned();
                extra.entry(key).or_default().push(value.to_owned());
            }
        }
        Some(UserInfo {
            name,
            uid: first(&rh.uid_headers).unwrap_or_default(),
            groups: rh.group_headers.iter().flat_map(values).collect(),
            extra,
        })
    }

    /// Removes every front-proxy header, trusted or not, so nothing downstream can read one.
    pub fn strip_headers(&self, headers: &mut HeaderMap) {
        let Some(rh) = &self.requestheader else {
            return;
        };
        for name in rh
            .username_headers
            .iter()
            .chain(&rh.uid_headers)
            .chain(&rh.group_headers)
        {
            headers.remove(name.as_str());
        }
        let prefixed: Vec<_> = headers
            .keys()
            .filter(|h| {
                rh.extra_prefixes
                    .iter()
                    .any(|p| h.as_str().starts_with(p.as_str()))
            })
            .cloned()
            .collect();
        for name in prefixed {
            headers.remove(name);
        }
    }
}

/// The leaf's subject common name and organizations.
fn subject(leaf: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    // Go's pkix.Name keeps the last CommonName of a multi-valued subject, and kube-apiserver authenticates
    // and matches `requestheader-allowed-names` with that one.
    let cn = subject
        .iter_common_name()
        .last()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some((cn, organizations))
}

#[cfg(test)]
mod tests;
