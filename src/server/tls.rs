//! The serving certificate: loaded from PEM files, or generated once (a CA plus a serving cert signed by it)
//! into `--cert-dir`, as the Kubernetes generic apiserver does; its reloading when the files change; and the
//! rustls server configuration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Why no serving certificate could be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("cannot load {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error("cannot generate a self-signed serving certificate: {0}")]
    Generate(String),
    /// The files could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// rustls refused the certificate and key.
    #[error("the serving certificate and key do not form a usable TLS configuration: {0}")]
    Config(String),
    /// A `--tls-cipher-suites` name Go does not know either.
    #[error(
        "cipher suite {0} not supported or doesn't exist (Go's names, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)"
    )]
    UnknownCipherSuite(String),
}

/// File names inside `--cert-dir`, as the Go apiservers name them.
pub const CERT_FILE: &str = "apiserver.crt";
/// The serving key.
pub const KEY_FILE: &str = "apiserver.key";
/// The CA that signed the serving certificate: what goes into an APIService `caBundle` or a kubeconfig.
pub const CA_FILE: &str = "ca.crt";

/// A serving certificate chain and its key, as PEM text.
#[derive(Debug, Clone)]
pub struct GeneratedCert {
    /// The CA certificate.
    pub ca_pem: String,
    /// The serving certificate followed by the CA certificate.
    pub chain_pem: String,
    /// The serving key (PKCS#8).
    pub key_pem: String,
}

/// Generates a CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn generate(names: &[String]) -> Result<GeneratedCert, TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let stamp = crate::unix_now();

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("xroad-metrics-adapter-ca@{stamp}"),
    );
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;

    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("xroad-metrics-adapter@{stamp}"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params
        .signed_by(&key, &Issuer::new(ca_params, ca_key))
        .map_err(err)?;

    Ok(GeneratedCert {
        ca_pem: ca_cert.pem(),
        chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    })
}

/// Uses the certificate in `dir` if one is there, else generates one for `names` and writes it there.
/// Returns the paths of the serving certificate and key.
pub fn ensure_self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path, ca_path) =
        (dir.join(CERT_FILE), dir.join(KEY_FILE), dir.join(CA_FILE));
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let generated = generate(names)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    // Key first, certificate last: a crash in between leaves no certificate without its key.
    for (path, text) in [
        (&key_path, &generated.key_pem),
        (&ca_path, &generated.ca_pem),
        (&cert_path, &generated.chain_pem),
    ] {
        write_private(path, text)?;
    }
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let write_err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&tmp).map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

/// Reads a PEM certificate chain and private key.
pub fn load(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let load_err = |path: &Path, message: String| TlsError::Load {
        path: path.to_owned(),
        message,
    };
    let read = |path: &Path| {
        crate::files::read_bytes(path, crate::files::CONFIG_LIMIT)
            .map_err(|e| load_err(path, e.to_string()))
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(load_err(cert, "no CERTIFICATE block found".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| load_err(key, e.to_string()))?;
    Ok((chain, key_der))
}

/// The lowest TLS version accepted (the generic apiserver's `--tls-min-version` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TlsMinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[value(name = "VersionTLS12")]
    Tls12,
    /// TLS 1.3 only.
    #[value(name = "VersionTLS13")]
    Tls13,
}

/// The serving certificate, re-read from its files when they change (cert-manager rotates them in place).
/// New handshakes get the new certificate; open connections keep theirs.
#[derive(Debug)]
pub struct ServingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Vec<u8>, Arc<CertifiedKey>)>,
}

fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let (chain, key_der) = load(cert, key)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key_der, &provider)
        .map(Arc::new)
        .map_err(|e| TlsError::Config(e.to_string()))
}

fn fingerprint(cert: &Path, key: &Path) -> Vec<u8> {
    let read =
        |path| crate::files::read_bytes(path, crate::files::CONFIG_LIMIT).unwrap_or_default();
    let mut bytes = read(cert);
    bytes.extend(read(key));
    bytes
}

impl ServingCert {
    /// Loads the certificate chain and key; fails if they do not form a usable pair.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let seen = fingerprint(cert_path, key_path);
        let key = certified_key(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new((seen, key)),
        }))
    }

    /// Re-reads the files; `Ok(true)` when a new certificate is now served. A half-written or mismatched
    /// pair is an error and the previous certificate stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let seen = fingerprint(&self.cert_path, &self.key_path);
        if self.current.read().unwrap_or_else(|e| e.into_inner()).0 == seen {
            return Ok(false);
        }
        let key = certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (seen, key);
        Ok(true)
    }

    /// Checks the files every `every`, for as long as the process runs.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                match this.reload() {
                    Ok(true) => {
                        tracing::info!(certificate = %this.cert_path.display(), "serving certificate reloaded")
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "keeping the previous serving certificate")
                    }
                }
            }
        });
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .clone(),
        )
    }
}

/// Asks every client for a certificate, requires none, and accepts any chain whose holder proves it owns
/// the key: which CA (if any) vouches for it is decided per request against the trust of the moment, as
/// the Go apiservers do (k8s.io/apiserver's delegated authentication and the authenticating-proxy docs). Probes and token clients
/// present no certificate.
#[derive(Debug)]
struct RequestClientCertificate(Arc<CryptoProvider>);

impl ClientCertVerifier for RequestClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: Go clients then send their certificate whatever CA issued it.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How TLS is offered, as the generic apiserver's flags set it.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `--tls-min-version`.
    pub min_version: TlsMinVersion,
    /// `--tls-cipher-suites`: the TLS 1.2 suites offered, in Go's names; empty for the defaults. TLS 1.3's
    /// suites are always offered, as Go does.
    pub cipher_suites: Vec<String>,
    /// Whether HTTP/2 is offered; `--disable-http2` turns it off.
    pub http2: bool,
}

impl Default for TlsOptions {
    /// TLS 1.2 and 1.3 with rustls' suites, HTTP/2 and HTTP/1.1.
    fn default() -> Self {
        Self {
            min_version: TlsMinVersion::default(),
            cipher_suites: Vec::new(),
            http2: true,
        }
    }
}

/// Go's names of the TLS 1.3 suites, which Go (and so the flag) always keeps on.
const GO_TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows by these names and rustls does not offer (CBC, RC4, 3DES, static RSA key exchange): accepted
/// and left out, as they are insecure; the two Go aliases of the ChaCha20 suites are read as their full names.
const GO_ONLY_SUITES: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The suites `names` (Go's names) select from `offered`, in the order given, with TLS 1.3's always first.
/// A name Go does not know is an error; a name rustls does not offer is logged and left out.
fn select_cipher_suites(
    offered: &[rustls::SupportedCipherSuite],
    names: &[String],
) -> Result<Vec<rustls::SupportedCipherSuite>, TlsError> {
    let name_of = |suite: &rustls::SupportedCipherSuite| format!("{:?}", suite.suite());
    let mut selected: Vec<_> = offered
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .copied()
        .collect();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if GO_TLS13_SUITES.contains(&name) {
            continue;
        }
        let full = match name {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
                format!("{name}_SHA256")
            }
            _ => name.to_owned(),
        };
        match offered.iter().find(|s| name_of(s) == full) {
            // TLS 1.3's are on already.
            Some(suite) if !selected.contains(suite) => selected.push(*suite),
            Some(_) => {}
            None if GO_ONLY_SUITES.contains(&name) => {
                tracing::warn!(
                    suite = name,
                    "cipher suite not offered: rustls has no insecure suites"
                )
            }
            None => return Err(TlsError::UnknownCipherSuite(name.to_owned())),
        }
    }
    Ok(selected)
}

/// A rustls server configuration: aws-lc-rs, TLS 1.2+ (or 1.3 only) with the chosen suites, ALPN h2 (unless
/// disabled) and http/1.1, client certificates requested but not required.
pub fn server_config(
    cert: Arc<dyn ResolvesServerCert>,
    options: &TlsOptions,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    config_with(cert, options, None)
}

/// [`server_config`], but a client must present a certificate that a CA of the PEM bundle `client_ca`
/// signed (KEDA's `tlsClientCert` towards the External Scaler).
pub fn server_config_requiring_clients(
    cert: Arc<dyn ResolvesServerCert>,
    options: &TlsOptions,
    client_ca: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let invalid =
        |e: &dyn std::fmt::Display| TlsError::Config(format!("{}: {e}", client_ca.display()));
    let pem =
        crate::files::read_bytes(client_ca, crate::files::CONFIG_LIMIT).map_err(|e| invalid(&e))?;
    let verifier = client_verifier(&pem)
        .map_err(|e| invalid(&e))?
        .ok_or_else(|| invalid(&"holds no CA certificate"))?;
    config_with(cert, options, Some(verifier))
}

/// A verifier of client certificates that chain to a CA of the PEM bundle `pem`; `None` when the bundle holds
/// no certificate. The error says what is wrong with the bundle.
pub fn client_verifier(pem: &[u8]) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("unreadable PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map(Some)
        .map_err(|e| e.to_string())
}

fn config_with(
    cert: Arc<dyn ResolvesServerCert>,
    options: &TlsOptions,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if !options.cipher_suites.is_empty() {
        provider.cipher_suites =
            select_cipher_suites(&provider.cipher_suites, &options.cipher_suites)?;
    }
    let provider = Arc::new(provider);
    let versions: &[&rustls::SupportedProtocolVersion] = match options.min_version {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(
            client_verifier.unwrap_or_else(|| Arc::new(RequestClientCertificate(provider))),
        )
        .with_cert_resolver(cert);
    config.alpn_protocols = if options.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_reused_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (cert, key) = ensure_self_signed(dir.path(), &names).unwrap();
        let first = std::fs::read_to_string(&cert).unwrap();
        assert!(dir.path().join(CA_FILE).exists());
        let (chain, _) = load(&cert, &key).unwrap();
        assert_eq!(chain.len(), 2, "serving certificate followed by its CA");
        server_config(
            ServingCert::load(&cert, &key).unwrap(),
            &TlsOptions::default(),
        )
        .unwrap();
        ensure_self_signed(dir.path(), &names).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), first);
    }

    #[test]
    fn cipher_suites_are_read_by_gos_names_with_tls_1_3_always_on() {
        let offered = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        let names = |list: &[&str]| -> Result<Vec<String>, TlsError> {
            let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            Ok(select_cipher_suites(&offered, &list)?
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .filter(|s| !s.starts_with("TLS13_") && s.contains("_WITH_"))
                .collect())
        };
        assert_eq!(
            names(&[
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            ])
            .unwrap(),
            [
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
            ],
            "a Go alias read in full, order kept, an insecure suite left out"
        );
        let tls13 = select_cipher_suites(&offered, &["TLS_AES_128_GCM_SHA256".into()]).unwrap();
        assert!(tls13.iter().all(|s| s.version() == &rustls::version::TLS13));
        assert!(matches!(
            names(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265"]),
            Err(TlsError::UnknownCipherSuite(name)) if name.ends_with("SHA265")
        ));
    }

    #[test]
    fn missing_or_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = load(&empty, &empty).unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
        assert!(
            load(&dir.path().join("absent"), &empty)
                .unwrap_err()
                .to_string()
                .contains("absent")
        );
    }
}
