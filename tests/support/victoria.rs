//! Real VictoriaMetrics (single node) and vmauth, from Debian's `victoria-metrics` package: the same counter
//! data as the Prometheus tests, imported through VictoriaMetrics' Prometheus text import.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Counter, free_port, openmetrics, require_tool};

const INSTALL: &str =
    "apt-get install -y victoria-metrics (Debian's package brings victoria-metrics and vmauth)";

/// A process of the package on a free loopback port; killed on drop.
pub struct Victoria {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(tool: &str, args: &[String], dir: tempfile::TempDir, port: u16) -> Victoria {
    let program = require_tool(tool, INSTALL);
    let log = std::fs::File::create(dir.path().join(format!("{tool}.log"))).unwrap();
    let child = Command::new(program)
        .args(args)
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Victoria {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

impl Victoria {
    /// VictoriaMetrics holding `counters` as [`openmetrics`] renders them for Prometheus.
    pub async fn metrics(counters: &[Counter]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("data");
        let vm = spawn(
            "victoria-metrics",
            &[
                format!("-storageDataPath={}", storage.display()),
                "-retentionPeriod=100y".into(),
            ],
            dir,
            free_port(),
        );
        vm.wait_for("/health").await;
        // The Prometheus text import takes milliseconds where OpenMetrics has seconds.
        let text: String = openmetrics(counters)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (sample, seconds) = l.rsplit_once(' ').unwrap();
                format!("{sample} {}000\n", seconds)
            })
            .collect();
        let client = reqwest::Client::new();
        let imported = client
            .post(format!("{}/api/v1/import/prometheus", vm.url))
            .body(text)
            .send()
            .await
            .unwrap();
        assert!(
            imported.status().is_success(),
            "import: {}",
            imported.status()
        );
        client
            .get(format!("{}/internal/force_flush", vm.url))
            .send()
            .await
            .unwrap();
        // Imported rows become searchable within a second or so.
        for _ in 0..100 {
            let answer: serde_json::Value = client
                .post(format!("{}/api/v1/query", vm.url))
                .form(&[("query", "count({__name__=~\".+\"})")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if answer["data"]["result"][0]["value"][1].as_str().is_some() {
                return vm;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("VictoriaMetrics did not serve the imported data in 10 s");
    }

    /// vmauth with this `-auth.config` (`{port}` is replaced by nothing: pass full upstream URLs).
    pub async fn auth(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.yml");
        std::fs::write(&file, config).unwrap();
        let vmauth = spawn(
            "vmauth",
            &[format!("-auth.config={}", file.display())],
            dir,
            free_port(),
        );
        vmauth.wait_for("/health").await;
        vmauth
    }

    async fn wait_for(&self, path: &str) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(response) = client.get(format!("{}{path}", self.url)).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not answer {path} in 30 s", self.url);
    }
}
