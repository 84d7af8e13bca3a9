//! Connection hygiene of the served binary, as a client that never sends a request or a flood of idle
//! connections meets it: idle HTTP/1.1 and HTTP/2 connections are closed, and under a lowered open-file limit
//! the connection cap keeps the process answering its health probes.

mod support;

use std::time::Duration;

use support::served::ServedAdapter;
use support::*;
use tokio::io::AsyncReadExt;

/// The adapter on loopback with a backend that isn't there (nothing here needs one) and the Sidecar
/// inventory, plus `args`.
fn serve_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "--prometheus-url",
        "http://127.0.0.1:9",
        "--inventory",
        INVENTORY,
    ];
    all.extend_from_slice(args);
    all
}

/// GET `path` on a new connection (the adapter's own client keeps one open from its start).
async fn get_on_a_new_connection(adapter: &ServedAdapter, path: &str) -> Option<(u16, String)> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&adapter.tls.ca_file).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{}{path}", adapter.tls.port))
        .send()
        .await
        .ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_send_nothing_are_closed_after_the_idle_timeout() {
    let adapter = ServedAdapter::start(&serve_args(&["--idle-connection-timeout", "1s"])).await;

    // HTTP/1.1: the TLS handshake, then silence.
    let mut silent = adapter.tls.connect(b"http/1.1").await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer))
        .await
        .expect("the server closes a silent HTTP/1.1 connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // HTTP/2: the preface and settings, then silence. The server says GOAWAY and closes.
    let stream = adapter.tls.connect(b"h2").await.unwrap();
    let (_client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the server closes an idle HTTP/2 connection")
        .ok();

    // A connection in use is not idle: a request every half second keeps it open past the timeout.
    let stream = adapter.tls.connect(b"h2").await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    let driver = tokio::spawn(connection);
    for _ in 0..6 {
        let request =
            axum::http::Request::get(format!("https://localhost:{}/livez", adapter.tls.port))
                .body(())
                .unwrap();
        client = client.ready().await.expect("still open while in use");
        let (response, _) = client.send_request(request, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!driver.is_finished());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_file_taken_by_idle_connections_probes_still_answer() {
    // 512 files: 512 - 256 for the rest - 32 reserve = 224 served connections.
    let adapter = ServedAdapter::start_with_file_limit(512, &serve_args(&[])).await;
    let mut held = Vec::new();
    for _ in 0..600 {
        if let Ok(stream) = adapter.tls.connect(b"h2").await {
            held.push(stream);
        }
    }
    assert!(
        held.len() >= 224,
        "{} connections completed a handshake",
        held.len()
    );
    // The reserve's idle connections are closed after 5 s; the served ones stay for the 90 s idle timeout.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (code, text) = get_on_a_new_connection(&adapter, "/healthz")
        .await
        .expect("/healthz answers");
    assert_eq!((code, text.as_str()), (200, "ok"));
    let (code, _) = get_on_a_new_connection(&adapter, "/readyz")
        .await
        .expect("/readyz answers");
    assert_eq!(code, 200);
    let (code, status) = get_on_a_new_connection(&adapter, "/apis")
        .await
        .expect("/apis answers");
    assert_eq!(
        code, 429,
        "a reserve connection without a certificate serves probes only: {status}"
    );
    let log = adapter.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("connection limits") && l.contains("224")),
        "{log}"
    );
    drop(held);
    eventually(
        "/apis answers once the idle connections are gone",
        Duration::from_secs(15),
        || async {
            adapter
                .get("/apis")
                .await
                .is_some_and(|(code, _)| code == 200)
        },
    )
    .await;
}
