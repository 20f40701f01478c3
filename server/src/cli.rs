//! The `voxgate` command line. Subcommands call the same service functions
//! as the HTTP API; they never go through HTTP themselves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, help_text};

#[derive(Parser)]
#[command(name = "voxgate", version, about = "Keycloak-authenticated chat with spoken replies")]
#[command(after_long_help = help_text())]
struct Cli {
    /// Optional TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "VOXGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the configuration reference (Markdown) and exit.
    ConfigDocs,
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ConfigDocs = cli.command {
        println!("{}", crate::config::markdown_table());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("voxgate: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init_tracing(config.log_format, &config.log_filter);
    let result = match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::ConfigDocs => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let public = config.public_url.clone();
    let app = crate::App::build(config).await?;
    tracing::info!(address = %app.address(), public_url = %public, "voxgate listening");
    app.run_until_stopped().await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let pool = crate::db::connect(&config).await?;
    crate::db::migrate(&pool).await?;
    println!("migrations applied");
    Ok(())
}
