//! The `xroad-metrics-adapter` binary: installs the TLS crypto provider, parses the command line, runs it.
#![forbid(unsafe_code)]

use clap::Parser;
use xroad_metrics_adapter::cli::{self, Cli, Command};
use xroad_metrics_adapter::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One process-wide provider (aws-lc-rs) before any TLS is touched: mixing providers panics at runtime.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse_from(cli::drop_in_args(std::env::args_os()));
    telemetry::init_tracing(cli.log_format);
    match cli.command {
        Command::Serve(args) => cli::serve(*args).await?,
        Command::Query(args) => cli::query(args).await?,
        Command::Explain(args) => cli::explain(args).await?,
        Command::Certificate(args) => cli::certificate(&args)?,
        Command::CheckConfig { file } => cli::check_config(&file)?,
    }
    Ok(())
}
