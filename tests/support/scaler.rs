//! The adapter's KEDA External Scaler on a loopback port over TLS, with a tonic client channel to it: shared
//! by `tests/keda.rs` and the benchmarks.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use xroad_metrics_adapter::config::GrpcConfig;
use xroad_metrics_adapter::grpc::Scaler;
use xroad_metrics_adapter::grpc::externalscaler::external_scaler_client::ExternalScalerClient;
use xroad_metrics_adapter::server::{self, AppState, tls};

/// The adapter's gRPC server on a loopback port, over TLS with a generated certificate; stopped on drop.
pub struct ScalerServer {
    pub channel: Channel,
    pub stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl ScalerServer {
    pub async fn start(state: Arc<AppState>, config: GrpcConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        let (cert, key) = tls::ensure_self_signed(dir.path(), &names).unwrap();
        let options = tls::TlsOptions::default();
        let tls_config =
            tls::server_config(tls::ServingCert::load(&cert, &key).unwrap(), &options).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let router = Scaler::new(state, config, stopping.clone()).router();
        let mut until = stopping;
        tokio::spawn(server::serve(
            listener,
            tls_config,
            router,
            server::ConnectionLimits::default(),
            async move {
                let _ = until.wait_for(|s| *s).await;
            },
        ));
        let ca = std::fs::read_to_string(dir.path().join(tls::CA_FILE)).unwrap();
        let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            channel,
            stop,
            _dir: dir,
        }
    }

    pub fn client(&self) -> ExternalScalerClient<Channel> {
        ExternalScalerClient::new(self.channel.clone())
    }
}
