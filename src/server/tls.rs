//! The serving certificate: loaded from PEM files, or generated once (a CA plus a serving cert signed by it)
//! into `--cert-dir`, as the Kubernetes generic apiserver does; and the rustls server configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| load_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(load_err(cert, "no CERTIFICATE block found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| load_err(key, e.to_string()))?;
    Ok((chain, key_der))
}

/// A rustls server configuration (aws-lc-rs, TLS 1.2+, ALPN h2 and http/1.1).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
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
        let (chain, key_der) = load(&cert, &key).unwrap();
        assert_eq!(chain.len(), 2, "serving certificate followed by its CA");
        server_config(chain, key_der).unwrap();
        ensure_self_signed(dir.path(), &names).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), first);
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
