//! The Postgres pool and migrations. SQL for a table lives with the feature
//! that owns it; this module only connects and migrates.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Config;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub fn connect_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    let opts: PgConnectOptions = config
        .database_url
        .expose_secret()
        .parse()
        .map_err(|e| anyhow::anyhow!("DATABASE_URL: cannot be parsed: {e}"))?;
    Ok(opts.application_name("voxgate"))
}

/// Connects, failing after a few seconds rather than hanging start-up.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(connect_options(config)?)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to Postgres: {e}"))?;
    Ok(pool)
}

/// The speech cache's writer pool: lazy, at most half the main pool's size
/// (at least 2), and its commits do not wait for the WAL flush
/// (`synchronous_commit=off`). A cache entry can always be synthesized
/// again, so a database crash may lose the last moment of cache writes but
/// nothing else: WAL order still holds, so an entry recorded as complete
/// always has its chunks. Users, sessions, quotas and audit records stay on
/// the durable pool.
pub fn connect_cache(config: &Config) -> anyhow::Result<PgPool> {
    let options = connect_options(config)?
        .application_name("voxgate-cache")
        .options([("synchronous_commit", "off")]);
    Ok(PgPoolOptions::new()
        .max_connections((config.database_max_connections / 2).max(2))
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))
}

/// Refuses to go on unless every migration this build knows has been
/// applied (by `voxgate migrate`, run as the owner) unchanged: serving with
/// a role that cannot change the schema must not find out at the first
/// query.
pub async fn check_schema(pool: &PgPool) -> anyhow::Result<()> {
    let applied = sqlx::query!("SELECT version, checksum FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the schema's migrations ({e}): run `voxgate migrate` as the database owner first"
            )
        })?;
    for migration in MIGRATOR.iter() {
        match applied.iter().find(|a| a.version == migration.version) {
            None => anyhow::bail!(
                "the database lacks migration {} ({}): run `voxgate migrate` as the database owner, or set VOXGATE_DATABASE_MIGRATE=true",
                migration.version,
                migration.description
            ),
            Some(a) if a.checksum.as_slice() != &*migration.checksum => anyhow::bail!(
                "migration {} was applied from a different file than this build's",
                migration.version
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether the database answers within a second.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query_scalar!("SELECT 1 AS one").fetch_one(pool),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("query failed: {}", short_db_error(&e))),
        Err(_) => Err("no answer within 1 s".into()),
    }
}

/// A database error without connection details, for readiness output.
fn short_db_error(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::PoolTimedOut => "pool timed out",
        sqlx::Error::Io(_) => "connection failed",
        sqlx::Error::Database(_) => "database error",
        sqlx::Error::PoolClosed => "pool closed",
        _ => "error",
    }
}

/// `%text%` for `ILIKE … ESCAPE '\'`: the text matched as it is, its `%`,
/// `_` and `\` not wildcards.
pub fn contains_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}
