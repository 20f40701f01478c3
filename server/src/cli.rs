//! The `voxgate` command line. Subcommands call the same service functions
//! as the HTTP API; they never go through HTTP themselves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, help_text};

#[derive(Parser)]
#[command(
    name = "voxgate",
    version,
    about = "Keycloak-authenticated chat with spoken replies"
)]
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
    /// Manage users in Keycloak and voxgate together.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Import a Keycloak realm file into a running Keycloak.
    #[command(subcommand)]
    Realm(crate::realm::RealmCommand),
    /// Look after the speech audio cache.
    #[command(subcommand)]
    Audio(AudioCommand),
}

#[derive(Subcommand)]
enum AudioCommand {
    /// Move finished audio cached in Postgres to the bucket
    /// (VOXGATE_AUDIO_BUCKET), oldest first, a batch at a time; running
    /// servers keep serving throughout, and it can be stopped and run again.
    MoveToBucket {
        /// Entries per batch.
        #[arg(long, default_value_t = 100)]
        batch: i64,
        /// Stop after this many batches (default: until none is left).
        #[arg(long)]
        batches: Option<u64>,
    },
    /// Delete now what the servers delete every half minute: objects of
    /// evicted entries, and the chunks of entries moved at least
    /// --grace-seconds ago (streams may still be reading younger ones).
    Tidy {
        #[arg(long, default_value_t = crate::tts::CHUNK_GRACE.as_secs())]
        grace_seconds: u64,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user in both systems. The password is read from standard
    /// input (first line) unless --invite is given.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        /// Role to grant; repeat for several (default: user).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Send Keycloak's invitation email instead of setting a password.
        #[arg(long)]
        invite: bool,
        /// The user must change the password at first sign-in.
        #[arg(long)]
        temporary: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user (both systems) and end their sessions.
    Disable { username: String },
    /// Enable a user (both systems).
    Enable { username: String },
    /// Delete a user from both systems.
    Delete { username: String },
    /// Finish or undo user creations that an outage left half done (the
    /// server does this by itself for jobs idle for 10 minutes).
    Recover {
        /// Only jobs untouched for this many seconds: a younger job may
        /// still be in progress on a running server.
        #[arg(long, default_value_t = 600)]
        older_than: u64,
    },
    /// Compare Keycloak and voxgate and report drift.
    Reconcile {
        /// Repair what is safe to repair, and say what was done.
        #[arg(long)]
        fix: bool,
    },
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::ConfigDocs => {
            println!("{}", crate::config::markdown_table());
            return ExitCode::SUCCESS;
        }
        // Talks to Keycloak only; voxgate's own settings are not needed.
        Command::Realm(cmd) => return crate::realm::run(cmd).await,
        Command::Serve => match load_config(cli.config.as_deref(), true) {
            Ok(config) => serve(config).await,
            Err(code) => return code,
        },
        Command::Migrate => match load_config(cli.config.as_deref(), false) {
            Ok(config) => migrate(config).await,
            Err(code) => return code,
        },
        Command::Users(cmd) => match load_config(cli.config.as_deref(), false) {
            Ok(config) => users(config, cmd).await,
            Err(code) => return code,
        },
        Command::Audio(cmd) => match load_config(cli.config.as_deref(), false) {
            Ok(config) => audio(config, cmd).await,
            Err(code) => return code,
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the settings and starts logging. A one-shot command logs only
/// warnings unless the operator set a filter: its output is what was asked
/// for, not the database's notices.
fn load_config(file: Option<&std::path::Path>, server: bool) -> Result<Config, ExitCode> {
    let config = Config::load(file).map_err(|e| {
        eprintln!("voxgate: invalid configuration: {e}");
        ExitCode::from(2)
    })?;
    let default = crate::config::SETTINGS
        .iter()
        .find(|s| s.key == "log.filter")
        .and_then(|s| s.default);
    let filter_set = default != Some(config.log_filter.as_str());
    let filter = if server || filter_set {
        config.log_filter.as_str()
    } else {
        "warn"
    };
    crate::telemetry::init_tracing(config.log_format, filter);
    Ok(config)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let public = config.public_url.clone();
    let app = crate::App::build(config).await?;
    tracing::info!(address = %app.listening_on(), public_url = %public, "voxgate listening");
    app.run_until_stopped().await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let pool = crate::db::connect(&config).await?;
    crate::db::migrate(&pool).await?;
    println!("migrations applied");
    Ok(())
}

async fn audio(config: Config, cmd: AudioCommand) -> anyhow::Result<()> {
    use crate::tts::cache;
    let Some(bucket_config) = &config.tts.bucket else {
        anyhow::bail!("no audio bucket is configured (VOXGATE_AUDIO_BUCKET)");
    };
    let pool = crate::db::connect(&config).await?;
    crate::db::check_schema(&pool).await?;
    let bucket = cache::Bucket::new(bucket_config, &config.tts.aws).await;
    bucket
        .check()
        .await
        .map_err(|e| anyhow::anyhow!("the audio bucket does not answer: {e}"))?;
    match cmd {
        AudioCommand::MoveToBucket { batch, batches } => {
            let (mut moved, mut failed, mut rounds) = (0, 0, 0);
            loop {
                let report = cache::move_batch(&pool, &bucket, batch.max(1)).await?;
                moved += report.moved;
                failed += report.failed;
                rounds += 1;
                println!(
                    "batch {rounds}: moved {}, failed {}, {} left in Postgres",
                    report.moved, report.failed, report.left
                );
                // A batch that moved nothing would move nothing again.
                if report.left == 0 || report.moved == 0 || batches.is_some_and(|b| rounds >= b) {
                    break;
                }
            }
            println!("moved {moved} entries to the bucket ({failed} failed)");
            if failed > 0 {
                anyhow::bail!("{failed} entries could not be moved; they stay in Postgres");
            }
        }
        AudioCommand::Tidy { grace_seconds } => {
            let grace = std::time::Duration::from_secs(grace_seconds);
            let done = cache::tidy(&pool, &bucket, grace).await?;
            println!(
                "deleted {} objects, dropped {} chunks of moved entries",
                done.objects_deleted, done.chunks_dropped
            );
        }
    }
    Ok(())
}

fn cli_actor() -> crate::users::Actor {
    let who = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    crate::users::Actor {
        id: None,
        label: format!("cli:{who}"),
        is_admin: true,
        request_id: None,
    }
}

async fn users(config: Config, cmd: UsersCommand) -> anyhow::Result<()> {
    use crate::users::model::{CreateUserRequest, PasswordInput, UpdateUserRequest};
    let pool = crate::db::connect(&config).await?;
    crate::db::migrate(&pool).await?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let users = crate::users::Users::new(
        std::sync::Arc::new(config),
        pool.clone(),
        http,
        std::sync::Arc::new(crate::identity::PrincipalCache::default()),
    );
    let actor = cli_actor();
    let find = |username: String| {
        let users = users.clone();
        async move {
            let page = users.list(Some(&username), None, None, 1, 100).await?;
            page.items
                .into_iter()
                .find(|u| u.username == username.to_lowercase())
                .ok_or_else(|| anyhow::anyhow!("no active user named `{username}`"))
        }
    };
    match cmd {
        UsersCommand::Create {
            username,
            email,
            first_name,
            last_name,
            roles,
            invite,
            temporary,
        } => {
            let password = if invite {
                None
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                let value = line.trim_end_matches(['\r', '\n']).to_string();
                if value.is_empty() {
                    anyhow::bail!("give the password on standard input, or use --invite");
                }
                Some(PasswordInput { value, temporary })
            };
            let request = CreateUserRequest {
                username,
                email,
                first_name,
                last_name,
                roles,
                password,
                send_invite: invite,
            };
            let created = users.create(&actor, request, None).await?;
            println!(
                "created {} ({}) with roles {}",
                created.user.username,
                created.user.id,
                created.user.roles.join(", ")
            );
        }
        UsersCommand::List {
            search,
            status,
            json,
        } => {
            let mut page = 1;
            let mut all = Vec::new();
            loop {
                let p = users
                    .list(search.as_deref(), status.as_deref(), None, page, 100)
                    .await?;
                let n = p.items.len();
                all.extend(p.items);
                if n < 100 {
                    break;
                }
                page += 1;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<24} {:<32} {:<8} {:<8} ROLES",
                    "USERNAME", "EMAIL", "STATUS", "ENABLED"
                );
                for u in all {
                    println!(
                        "{:<24} {:<32} {:<8} {:<8} {}",
                        u.username,
                        u.email.as_deref().unwrap_or_default(),
                        u.status,
                        u.enabled,
                        u.roles.join(",")
                    );
                }
            }
        }
        UsersCommand::Disable { username } => {
            let user = find(username).await?;
            let change = UpdateUserRequest {
                enabled: Some(false),
                roles: None,
                first_name: None,
                last_name: None,
                email: None,
            };
            users.update(&actor, user.id, change).await?;
            println!("disabled {}", user.username);
        }
        UsersCommand::Enable { username } => {
            let user = find(username).await?;
            let change = UpdateUserRequest {
                enabled: Some(true),
                roles: None,
                first_name: None,
                last_name: None,
                email: None,
            };
            users.update(&actor, user.id, change).await?;
            println!("enabled {}", user.username);
        }
        UsersCommand::Delete { username } => {
            let user = find(username).await?;
            users.delete(&actor, user.id).await?;
            println!("deleted {}", user.username);
        }
        UsersCommand::Recover { older_than } => {
            let report = users
                .recover(std::time::Duration::from_secs(older_than))
                .await?;
            println!(
                "finished {}, compensated {}, still pending {}",
                report.finished, report.compensated, report.pending
            );
        }
        UsersCommand::Reconcile { fix } => {
            let drift = users.reconcile(fix).await?;
            if drift.is_empty() {
                println!("Keycloak and voxgate agree.");
            }
            for d in &drift {
                match &d.fixed {
                    Some(f) => println!("{:<26} {:<24} {} -> {}", d.kind, d.username, d.detail, f),
                    None => println!("{:<26} {:<24} {}", d.kind, d.username, d.detail),
                }
            }
            if !fix && !drift.is_empty() {
                println!(
                    "{} difference(s); run with --fix to repair what is safe.",
                    drift.len()
                );
            }
        }
    }
    pool.close().await;
    Ok(())
}
