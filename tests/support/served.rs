//! The real `xroad-metrics-adapter serve` binary as a child process, as a user runs it: flags in, HTTPS out,
//! its log kept for the failure message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{TlsAdapter, free_port};

pub struct ServedAdapter {
    child: Child,
    pub tls: TlsAdapter,
    pub log: PathBuf,
    client: reqwest::Client,
}

impl ServedAdapter {
    /// Starts `serve` with `--authentication none` on loopback plus `args`, and waits until it answers
    /// `/livez` (not `/readyz`: tests decide what readiness to wait for).
    pub async fn start(args: &[&str]) -> Self {
        Self::launch(
            Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter")),
            args,
        )
        .await
    }

    /// As [`ServedAdapter::start`], with `env` added to the environment (e.g. the image's, `image_env`).
    pub async fn start_with_env(env: &[(String, String)], args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"));
        command.envs(env.iter().map(|(k, v)| (k, v)));
        Self::launch(command, args).await
    }

    /// As [`ServedAdapter::start`], with the open-file limit (soft and hard) set to `files` by util-linux's
    /// `prlimit`.
    pub async fn start_with_file_limit(files: u64, args: &[&str]) -> Self {
        super::tools::require_tool("prlimit", "apt-get install -y util-linux");
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={files}:{files}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_xroad-metrics-adapter"));
        Self::launch(command, args).await
    }

    async fn launch(mut command: Command, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("adapter.log");
        let child = command
            .args([
                "serve",
                "--authentication",
                "none",
                "--bind-address",
                "127.0.0.1",
            ])
            .args(["--secure-port", &port.to_string(), "--cert-dir"])
            .arg(dir.path())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let ca_file = dir.path().join(xroad_metrics_adapter::server::tls::CA_FILE);
        let tls = TlsAdapter {
            port,
            ca_file: ca_file.clone(),
            stop: None,
            _dir: dir,
        };
        let mut served = Self {
            child,
            tls,
            log,
            client: reqwest::Client::new(),
        };
        for _ in 0..300 {
            if let Ok(pem) = std::fs::read(&ca_file) {
                let ca = reqwest::Certificate::from_pem(&pem).unwrap();
                served.client = reqwest::Client::builder()
                    .tls_certs_merge([ca])
                    .build()
                    .unwrap();
                if served.get("/livez").await.is_some() {
                    return served;
                }
            }
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("serve exited with {status}:\n{}", served.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("serve did not answer within 30 s:\n{}", served.log_text());
    }

    /// GET `path`: status and body, or `None` when nothing answers.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = self
            .client
            .get(format!("https://localhost:{}{path}", self.tls.port))
            .send()
            .await
            .ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    }

    /// Waits until `/readyz` answers 200, failing after `timeout`; how long it took.
    pub async fn wait_ready(&self, timeout: Duration) -> Duration {
        super::eventually("/readyz answers 200", timeout, || async {
            self.get("/readyz")
                .await
                .is_some_and(|(code, _)| code == 200)
        })
        .await
    }

    /// Resident memory now (`VmRSS`) and at its peak (`VmHWM`), in MiB.
    pub fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap()
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Sends SIGHUP, as `kill -HUP` does.
    pub fn hang_up(&self) {
        self.signal("-HUP");
    }

    /// Sends SIGTERM, as the kubelet does to stop a pod, and waits up to `timeout` for the exit code.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        self.signal("-TERM");
        let started = std::time::Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kubectl get --raw PATH` against this adapter, as JSON.
    pub async fn kubectl_json(&self, dir: &Path, path: &str) -> serde_json::Value {
        self.tls.kubectl_json(dir, path).await
    }
}

impl Drop for ServedAdapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
