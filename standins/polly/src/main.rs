//! `polly-standin` binary: serves the Polly stand-in until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use polly_standin::{PollyConfig, PollyStandin};

/// An Amazon Polly protocol stand-in for development and tests.
#[derive(Parser, Debug)]
#[command(name = "polly-standin", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8190", env = "POLLY_STANDIN_BIND")]
    bind: SocketAddr,
    /// Serve the /_standin/... control endpoints.
    #[arg(long)]
    control: bool,
    /// Access key id requests must be signed with.
    #[arg(
        long,
        default_value = "AKIDVOXGATETEST",
        env = "POLLY_STANDIN_ACCESS_KEY_ID"
    )]
    access_key_id: String,
    /// Secret access key used to verify signatures.
    #[arg(
        long,
        default_value = "voxgate-test-secret",
        env = "POLLY_STANDIN_SECRET_ACCESS_KEY"
    )]
    secret_access_key: String,
    /// Region requests must be scoped to.
    #[arg(long, default_value = "us-east-1", env = "POLLY_STANDIN_REGION")]
    region: String,
    /// Audio body chunk size in bytes.
    #[arg(long, default_value_t = 4096)]
    chunk_size: usize,
    /// espeak-ng program used for speech.
    #[arg(long, default_value = "espeak-ng")]
    espeak: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "polly_standin=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let standin = PollyStandin::start(PollyConfig {
        bind: args.bind,
        access_key_id: args.access_key_id,
        secret_access_key: args.secret_access_key,
        region: args.region,
        chunk_size: args.chunk_size,
        control_endpoint: args.control,
        espeak_program: args.espeak,
    })
    .await?;
    // The one line scripts wait for.
    println!("polly-standin listening on {}", standin.endpoint_url());
    tokio::signal::ctrl_c().await?;
    standin.shutdown().await;
    Ok(())
}
