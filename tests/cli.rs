//! The `xroad-metrics-adapter` binary's command line: refusals that protect users, and clear messages.

use std::process::Command;

fn adapter(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const PROM: &[&str] = &["--prometheus-url", "http://127.0.0.1:9"];

#[test]
fn serve_refuses_to_run_unauthenticated_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().to_str().unwrap();
    let (ok, text) = adapter(
        &[
            &[
                "serve",
                "--cert-dir",
                cert_dir,
                "--inventory",
                "tests/fixtures/inventory-sidecar.yaml",
            ],
            PROM,
        ]
        .concat(),
    );
    // Without a cluster to delegate to, serve stops and says how to run locally; it never falls back to
    // anonymous access.
    assert!(!ok);
    assert!(
        text.contains("delegated authentication asks the Kubernetes API")
            && text.contains("--authentication none --bind-address 127.0.0.1"),
        "{text}"
    );
}

#[test]
fn serve_refuses_anonymous_access_on_a_non_loopback_address() {
    let (ok, text) = adapter(
        &[
            &[
                "serve",
                "--authentication",
                "none",
                "--bind-address",
                "0.0.0.0",
            ],
            PROM,
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(
        text.contains("--authentication none is only allowed with a loopback --bind-address"),
        "{text}"
    );
}

#[test]
fn check_config_points_at_the_line_of_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        "prometheus:\n  url: http://prometheus:9090\n  timout: 5s\n",
    )
    .unwrap();
    let (ok, text) = adapter(&["check-config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("timout") && text.contains("config.yaml"),
        "{text}"
    );
    std::fs::write(
        &file,
        "prometheus:\n  url: http://prometheus:9090\nrateWindow: 2m\n",
    )
    .unwrap();
    let (ok, text) = adapter(&["check-config", file.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("container_network_receive_packets_per_second"),
        "{text}"
    );
}

#[test]
fn bad_flags_and_files_get_clear_messages() {
    let (ok, text) = adapter(&["serve", "--prometheus-url", "not a url"]);
    assert!(!ok && text.contains("not a valid URL"), "{text}");
    let (ok, text) = adapter(
        &[
            &[
                "query",
                "-n",
                "sidecar",
                "--metric",
                "m",
                "--inventory",
                "/nonexistent.yaml",
            ],
            PROM,
        ]
        .concat(),
    );
    assert!(
        !ok && text.contains("cannot read inventory /nonexistent.yaml"),
        "{text}"
    );
}
