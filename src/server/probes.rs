//! `/healthz`, `/livez`, `/readyz` and their `/<check>` forms, answered as the generic apiserver answers
//! them; the one list of probe paths the router, the guard and the self-metrics share.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{AppState, guard};

/// The probe endpoints; each also answers `/<endpoint>/<check>`.
const PROBES: [&str; 3] = ["/healthz", "/livez", "/readyz"];

/// Whether `path` is a probe endpoint or one of its checks.
pub(super) fn is_probe(path: &str) -> bool {
    PROBES.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// `router` with the probe routes added.
pub(super) fn routes(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    PROBES.iter().fold(router, |router, probe| {
        let handler = if *probe == "/readyz" {
            get(readyz)
        } else {
            get(livez)
        };
        router
            .route(probe, handler.clone())
            .route(&format!("{probe}/{{check}}"), handler)
    })
}

/// One health check's outcome.
type Check = (&'static str, Result<(), String>);

/// Renders `/livez`, `/readyz` and their `/<check>` forms as the generic apiserver does: `ok`, or with
/// `?verbose` or a failure one line per check. Reasons and information lines go only to a caller cleared
/// for [`guard::HealthDetails`]; others read `reason withheld`, as kube-apiserver writes it.
fn health_report(
    endpoint: &str,
    checks: Vec<Check>,
    only: Option<&str>,
    query: Option<&str>,
    info: Vec<String>,
    details: bool,
) -> Response {
    let excluded: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.into_owned())
        .collect();
    let verbose =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(k, _)| k == "verbose");
    let checks: Vec<_> = checks
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|o| o == *name) && !excluded.iter().any(|e| e == name))
        .collect();
    if checks.is_empty() {
        return (StatusCode::NOT_FOUND, "no such health check\n").into_response();
    }
    let healthy = checks.iter().all(|(_, r)| r.is_ok());
    let text = if healthy && !verbose {
        "ok".to_owned()
    } else {
        let mut lines: Vec<String> = checks
            .iter()
            .map(|(name, result)| match result {
                Ok(()) => format!("[+]{name} ok"),
                Err(reason) if details => format!("[-]{name} failed: {reason}"),
                Err(_) => format!("[-]{name} failed: reason withheld"),
            })
            .collect();
        if details {
            lines.extend(info);
        }
        lines.push(format!(
            "{endpoint} check {}",
            if healthy { "passed" } else { "failed" }
        ));
        lines.join("\n") + "\n"
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut response = (code, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn check_name(uri: &Uri) -> Option<&str> {
    uri.path().splitn(3, '/').nth(2)
}

async fn livez(uri: Uri, details: Option<Extension<guard::HealthDetails>>) -> Response {
    let endpoint = if uri.path().starts_with("/healthz") {
        "healthz"
    } else {
        "livez"
    };
    health_report(
        endpoint,
        vec![("ping", Ok(()))],
        check_name(&uri),
        uri.query(),
        vec![],
        details.is_some(),
    )
}

async fn readyz(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    details: Option<Extension<guard::HealthDetails>>,
) -> Response {
    let inventory = if state.inventory.is_synced() {
        Ok(())
    } else {
        Err(match state.inventory.streams().describe_unlisted() {
            Some(streams) => format!("waiting for the first list of {streams}"),
            None => "the pod inventory has not synced yet".to_owned(),
        })
    };
    // Readiness never depends on the metrics backend: an APIService without ready endpoints degrades
    // discovery for the whole cluster. Its state is shown as information only.
    let ago = |t: i64| format!("{}s ago", crate::unix_now() - t);
    let mut info: Vec<String> = state
        .configured()
        .backends
        .all()
        .iter()
        .map(|backend| {
            let health = backend.health();
            format!(
                "[i]metrics-backend {} (information, not a readiness check): last success {}, last error {}",
                backend.name(),
                health.last_success.map_or("never".to_owned(), ago),
                health
                    .last_error
                    .map_or("none".to_owned(), |(t, e)| format!("{}: {e}", ago(t)))
            )
        })
        .collect();
    // A lost watch leaves what is known in place; turning unready would only take discovery down with it.
    info.extend(
        state
            .inventory
            .streams()
            .lost(std::time::Instant::now())
            .into_iter()
            .map(|lost| {
                format!(
                    "[i]watch {} (information, not a readiness check): failing for {}s, serving what was last seen: {}",
                    lost.id,
                    lost.failing_for.as_secs(),
                    lost.error
                )
            }),
    );
    health_report(
        "readyz",
        vec![
            ("ping", Ok(())),
            ("serving-cert", Ok(())),
            ("pod-inventory", inventory),
        ],
        check_name(&uri),
        uri.query(),
        info,
        details.is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn failing() -> Vec<Check> {
        vec![
            ("ping", Ok(())),
            (
                "pod-inventory",
                Err("waiting for the first list of pods".into()),
            ),
        ]
    }

    #[test]
    fn probes_and_their_sub_paths_are_probes_and_nothing_else_is() {
        for path in [
            "/healthz",
            "/livez",
            "/readyz",
            "/readyz/ping",
            "/livez/ping",
        ] {
            assert!(is_probe(path), "{path}");
        }
        for path in ["/readyzz", "/metrics", "/apis", "/livez-not"] {
            assert!(!is_probe(path), "{path}");
        }
    }

    #[tokio::test]
    async fn a_failed_check_names_its_reason_only_to_a_cleared_caller() {
        let info = || vec!["[i]metrics-backend: last error at http://10.0.0.1:9090".to_owned()];
        let withheld = health_report("readyz", failing(), None, None, info(), false);
        assert_eq!(withheld.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body(withheld).await,
            "[+]ping ok\n[-]pod-inventory failed: reason withheld\nreadyz check failed\n"
        );
        let shown = health_report("readyz", failing(), None, None, info(), true);
        assert_eq!(
            body(shown).await,
            "[+]ping ok\n[-]pod-inventory failed: waiting for the first list of pods\n\
             [i]metrics-backend: last error at http://10.0.0.1:9090\nreadyz check failed\n"
        );
    }
}
