//! The HTTPS listener: real TLS with the generated CA, HTTP/2 and HTTP/1.1 by ALPN, and no plain HTTP.

mod support;

use std::path::{Path, PathBuf};

use support::*;

fn client(adapter: &TlsAdapter) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&adapter.ca_file).unwrap()).unwrap();
    reqwest::Client::builder().tls_certs_merge([ca])
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_http2_and_http1_over_tls_verified_by_the_generated_ca() {
    let adapter = TlsAdapter::start(state("http://127.0.0.1:9")).await;
    let url = format!("https://localhost:{}/apis", adapter.port);

    let h2 = client(&adapter)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        h2.json::<serde_json::Value>().await.unwrap()["kind"],
        "APIGroupList"
    );

    let h1 = client(&adapter)
        .http1_only()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.headers()["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_clients_and_plain_http_get_nothing() {
    let adapter = TlsAdapter::start(state("http://127.0.0.1:9")).await;
    let untrusting = reqwest::Client::new();
    let error = untrusting
        .get(format!("https://localhost:{}/apis", adapter.port))
        .send()
        .await
        .unwrap_err();
    assert!(
        error.is_connect(),
        "a client without the CA must not connect: {error}"
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/apis", adapter.port))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP is not served"
    );
}

/// Serving-certificate files signed by `ca`, written into `dir` with the CA: certificate, key, CA.
fn write_serving_cert(ca: &pki::Ca, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let leaf = ca.server(&["localhost"]);
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let ca_file = dir.join("ca.crt");
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&ca_file, &ca.pem).unwrap();
    (cert, key, ca_file)
}

/// Whether `client` connects (TLS verifies) and gets a 2xx.
async fn answers(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn trusting(ca: &pki::Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_merge([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_serving_certificate_is_served_to_new_connections_without_dropping_open_ones() {
    use xroad_metrics_adapter::server::tls;
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (pki::Ca::new("serving-ca-1"), pki::Ca::new("serving-ca-2"));
    let (cert, key, ca_file) = write_serving_cert(&old_ca, dir.path());
    let serving = tls::ServingCert::load(&cert, &key).unwrap();
    serving.spawn_reloader(std::time::Duration::from_millis(100));
    let config = tls::server_config(serving, &tls::TlsOptions::default()).unwrap();
    let adapter = TlsAdapter::start_with(
        state("http://127.0.0.1:9"),
        config,
        ca_file,
        tempfile::tempdir().unwrap(),
    )
    .await;
    let url = format!("https://localhost:{}/apis", adapter.port);
    let old_client = trusting(&old_ca);
    assert!(answers(&old_client, &url).await);

    // cert-manager replaces the Secret's files in place.
    write_serving_cert(&new_ca, dir.path());
    let new_client = trusting(&new_ca);
    eventually(
        "new connections get the new certificate",
        std::time::Duration::from_secs(5),
        || answers(&new_client, &url),
    )
    .await;
    // The old client's HTTP/2 connection is still open: it cannot have reconnected, since it does not
    // trust the new certificate.
    assert!(answers(&old_client, &url).await);
    assert!(!answers(&trusting(&old_ca), &url).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_1_3_only_refuses_a_tls_1_2_client() {
    use xroad_metrics_adapter::server::tls;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("serving-ca");
    let (cert, key, ca_file) = write_serving_cert(&ca, dir.path());
    let config = tls::server_config(
        tls::ServingCert::load(&cert, &key).unwrap(),
        &tls::TlsOptions {
            min_version: tls::TlsMinVersion::Tls13,
            ..tls::TlsOptions::default()
        },
    )
    .unwrap();
    let adapter = TlsAdapter::start_with(state("http://127.0.0.1:9"), config, ca_file, dir).await;
    let url = format!("https://localhost:{}/apis", adapter.port);
    let tls12 = reqwest::Client::builder()
        .tls_certs_merge([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(tls12.get(&url).send().await.unwrap_err().is_connect());
    assert!(answers(&trusting(&ca), &url).await);
}

/// The adapter in process, served with `options` and a certificate signed by a fresh CA (ECDSA P-256).
async fn served_with(options: xroad_metrics_adapter::server::tls::TlsOptions) -> TlsAdapter {
    use xroad_metrics_adapter::server::tls;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("serving-ca");
    let (cert, key, ca_file) = write_serving_cert(&ca, dir.path());
    let config =
        tls::server_config(tls::ServingCert::load(&cert, &key).unwrap(), &options).unwrap();
    TlsAdapter::start_with(state("http://127.0.0.1:9"), config, ca_file, dir).await
}

/// A TLS handshake with `adapter` from a client offering only `suites` and `alpn`; the protocol agreed on,
/// or `None` when the handshake fails.
async fn handshake(
    adapter: &TlsAdapter,
    suites: &[rustls::CipherSuite],
    alpn: &[&[u8]],
) -> Option<Option<Vec<u8>>> {
    use rustls::pki_types::pem::PemObject;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|s| suites.contains(&s.suite()));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(&adapter.ca_file).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.into())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", adapter.port))
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .ok()?;
    Some(stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_cipher_suites_limit_tls_1_2_by_gos_names_and_leave_tls_1_3_on() {
    use rustls::CipherSuite::*;
    let adapter = served_with(xroad_metrics_adapter::server::tls::TlsOptions {
        cipher_suites: vec![
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into(),
            "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA".into(),
        ],
        ..Default::default()
    })
    .await;
    let h2: &[&[u8]] = &[b"h2"];
    assert!(
        handshake(&adapter, &[TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384], h2)
            .await
            .is_some(),
        "a listed suite"
    );
    assert!(
        handshake(&adapter, &[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256], h2)
            .await
            .is_none(),
        "a suite the list leaves out"
    );
    assert!(
        handshake(&adapter, &[TLS13_AES_128_GCM_SHA256], h2)
            .await
            .is_some(),
        "TLS 1.3's suites stay on, as in Go"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_http2_disabled_only_http1_is_agreed_and_served() {
    use rustls::CipherSuite::*;
    let adapter = served_with(xroad_metrics_adapter::server::tls::TlsOptions {
        http2: false,
        ..Default::default()
    })
    .await;
    let suites = [TLS13_AES_128_GCM_SHA256];
    assert_eq!(
        handshake(&adapter, &suites, &[b"h2", b"http/1.1"]).await,
        Some(Some(b"http/1.1".to_vec()))
    );
    let http1 = client(&adapter).http1_only().build().unwrap();
    let url = format!("https://localhost:{}/apis", adapter.port);
    assert!(answers(&http1, &url).await);
    let http2 = client(&adapter).http2_prior_knowledge().build().unwrap();
    assert!(
        !answers(&http2, &url).await,
        "HTTP/2 without ALPN is not served either"
    );
}
