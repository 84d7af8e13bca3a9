//! The HTTPS listener: real TLS with the generated CA, HTTP/2 and HTTP/1.1 by ALPN, and no plain HTTP.

mod support;

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
