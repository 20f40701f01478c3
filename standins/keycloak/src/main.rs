use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use keycloak_standin::{Standin, StandinConfig};

/// A Keycloak 26-compatible realm server for tests and local development.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// RealmRepresentation JSON file to import (repeatable).
    #[arg(long = "realm")]
    realms: Vec<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8180")]
    bind: SocketAddr,
    #[arg(long, default_value = "admin")]
    admin_user: String,
    #[arg(long, default_value = "admin")]
    admin_password: String,
    /// Persist realms and users here across restarts.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Serve the /_standin fault-injection API.
    #[arg(long)]
    control: bool,
    /// Keycloak's --hostname: public base URL of the issuer and browser pages.
    #[arg(long)]
    hostname: Option<String>,
    /// Keycloak's --hostname-backchannel-dynamic: token and key endpoints
    /// keep the address they are called at.
    #[arg(long)]
    hostname_backchannel_dynamic: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let standin = Standin::start(StandinConfig {
        bind: args.bind,
        realm_files: args.realms,
        realm_jsons: Vec::new(),
        admin_user: args.admin_user,
        admin_password: args.admin_password,
        state_file: args.state_file,
        control_endpoint: args.control,
        hostname: args.hostname,
        backchannel_dynamic: args.hostname_backchannel_dynamic,
    })
    .await?;
    println!("keycloak-standin listening on {}", standin.base_url());
    tokio::signal::ctrl_c().await?;
    standin.shutdown().await;
    Ok(())
}
