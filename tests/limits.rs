//! Request limits: the in-flight cap with a clear 429, the request timeout, and the URI and header size
//! limits, against a backend that accepts connections and never answers.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use xroad_metrics_adapter::server::guard::{Guard, Limits};

/// A metrics backend that accepts every connection and never says a word.
async fn silent_backend() -> String {
    silent_backend_counting().await.0
}

/// A silent backend, and how many connections it has accepted.
async fn silent_backend_counting() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

fn limits(max_in_flight: usize, request_timeout: Duration) -> Limits {
    Limits {
        max_in_flight,
        request_timeout,
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_the_in_flight_cap_get_429_with_retry_after_and_probes_still_pass() {
    let (backend, accepted) = silent_backend_counting().await;
    let state = guarded(
        &backend,
        Guard::new(
            xroad_metrics_adapter::auth::Access::Anonymous,
            limits(1, Duration::from_secs(5)),
        ),
    )
    .await;
    let hanging = tokio::spawn({
        let state = state.clone();
        async move { get(&state, &secondaries_rx_packets()).await }
    });
    // Watched at the backend, not by asking the adapter: a request would compete for the only permit.
    eventually(
        "the hanging request holds the only permit, waiting for the backend",
        Duration::from_secs(5),
        || async { accepted.load(Ordering::SeqCst) > 0 },
    )
    .await;
    let (code, status) = get(&state, "/apis").await;
    assert_eq!(code, 429);
    assert_eq!(
        status,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "Too many requests, please try again later.", "reason": "TooManyRequests",
                           "details": {"retryAfterSeconds": 1}, "code": 429})
    );
    let (code, _) = get(&state, "/readyz").await;
    assert_eq!(code, 200, "a busy adapter is still ready");
    hanging.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_running_past_the_timeout_gets_a_504_status() {
    let backend = silent_backend().await;
    let state = guarded(
        &backend,
        Guard::new(
            xroad_metrics_adapter::auth::Access::Anonymous,
            limits(10, Duration::from_secs(1)),
        ),
    )
    .await;
    let (code, status) = get(&state, &secondaries_rx_packets()).await;
    assert_eq!(code, 504);
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(status["message"], "the request did not complete within 1s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_backend_holds_at_most_the_backend_query_cap_and_the_rest_fail_at_once() {
    let (backend, connections) = silent_backend_counting().await;
    let state = guarded(
        &backend,
        Guard::new(
            xroad_metrics_adapter::auth::Access::Anonymous,
            limits(1000, Duration::from_secs(3)),
        ),
    )
    .await;
    let started = std::time::Instant::now();
    // 300 distinct queries (one per interface) at once: nothing to coalesce.
    let answers = futures::future::join_all((0..300).map(|i| {
        let state = state.clone();
        async move {
            let path = format!(
                "{}&metricLabelSelector=interface%3Deth{i}",
                secondaries_rx_packets()
            );
            let (code, status) = get(&state, &path).await;
            (
                code,
                status["message"].as_str().unwrap_or_default().to_owned(),
                started.elapsed(),
            )
        }
    }))
    .await;
    let cap = xroad_metrics_adapter::cache::MAX_BACKEND_QUERIES_IN_FLIGHT;
    let turned_away: Vec<_> = answers
        .iter()
        .filter(|(code, message, _)| {
            *code == 500 && message.contains("queries are already waiting")
        })
        .collect();
    assert_eq!(turned_away.len(), 300 - cap, "{answers:?}");
    assert!(
        turned_away
            .iter()
            .all(|(_, _, took)| *took < Duration::from_secs(1)),
        "turned away at once"
    );
    assert_eq!(
        answers.iter().filter(|(code, _, _)| *code == 504).count(),
        cap,
        "the waiting ones end at the request timeout"
    );
    assert!(connections.load(Ordering::SeqCst) <= cap);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overlong_uri_gets_414_and_too_many_headers_are_refused() {
    let adapter = TlsAdapter::start(state("http://127.0.0.1:9")).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&adapter.ca_file).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .http1_only()
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", adapter.port);
    let long = format!(
        "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/*/m?labelSelector=app+in+({})",
        "a,".repeat(9000)
    );
    let response = client.get(&long).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 414);
    let status: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        status["message"],
        "the request URI is longer than 16384 bytes"
    );

    let mut request = client.get(format!("{base}/apis"));
    for i in 0..150 {
        request = request.header(format!("x-filler-{i}"), "x");
    }
    let response = request.send().await.unwrap();
    assert_eq!(
        response.status().as_u16(),
        431,
        "hyper refuses more than 100 headers"
    );
}

/// HTTP/2 "rapid reset" (CVE-2023-44487): a client that opens streams and cancels them at once, without ever
/// reading an answer, is cut off with GOAWAY instead of keeping the server busy.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_rapid_reset_flood_gets_the_connection_closed() {
    let adapter = TlsAdapter::start(state("http://127.0.0.1:9")).await;
    let stream = adapter.connect(b"h2").await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut sent = 0;
    for _ in 0..10_000 {
        let request = axum::http::Request::get(format!("https://localhost:{}/apis", adapter.port))
            .body(())
            .unwrap();
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let Ok((_, mut stream)) = client.send_request(request, true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("the server ends the connection")
        .unwrap();
    let error = ended.expect_err("the connection ends in an error, not a clean close");
    // The server answers the flood with GOAWAY (ENHANCE_YOUR_CALM) and closes; the client sees the GOAWAY,
    // or, if it was still writing, the closed socket.
    assert!(
        (error.is_go_away() && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM))
            || error.is_io(),
        "{error:?} after {sent} streams"
    );
    assert!(sent < 10_000, "cut off after {sent} resets");
    // Other clients are unaffected.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&adapter.ca_file).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{}/apis", adapter.port))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}
