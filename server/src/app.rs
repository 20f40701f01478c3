//! Builds and runs the application: binds the listener (port 0 allowed),
//! connects and migrates the database, builds the state and the router.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::Auth;
use crate::config::Config;
use crate::state::AppState;
use crate::users::Users;

pub struct App {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| anyhow::anyhow!("VOXGATE_BIND: cannot listen on {}: {e}", config.bind))?;
        let address = listener.local_addr()?;
        // Install the recorder before the first request records anything.
        crate::telemetry::metrics_handle();
        let db = crate::db::connect(&config).await?;
        if config.database_migrate {
            crate::db::migrate(&db).await?;
        } else {
            crate::db::check_schema(&db).await?;
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("voxgate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()?;
        let config = Arc::new(config);
        let auth = Auth::new(&config, http.clone());
        let users = Users::new(config.clone(), db.clone(), http, auth.principals.clone());
        let tasks = vec![
            auth.provider.spawn_refresher(),
            spawn_sweeper(db.clone()),
            crate::users::spawn_recovery(users.clone()),
        ];
        let tts = crate::tts::Tts::new(db.clone(), &config).await;
        let chat = crate::chat::Chat::from_config(&config)?;
        let state = AppState::new(crate::state::Parts {
            config,
            db,
            auth,
            users,
            tts,
            chat,
        });
        Ok(App {
            listener,
            address,
            state,
            tasks,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish
    /// (bounded by the configured grace period).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_with_shutdown(shutdown_signal()).await
    }

    pub async fn run_with_shutdown(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = self.state.config.shutdown_grace;
        let router = crate::router::router(self.state.clone());
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            signal.await;
            tracing::info!("shutting down; finishing in-flight requests");
            let _ = stopping_tx.send(());
        };
        let server = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let server = tokio::spawn(async move { server.await });
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => { result??; }
            _ = async {
                let _ = stopping_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "grace period over; closing remaining connections");
            }
        }
        for task in &self.tasks {
            task.abort();
        }
        self.state.tts.shutdown().await;
        self.state.db.close().await;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Every few minutes removes rows that nothing reads any more: expired
/// sessions and abandoned sign-ins, old limit windows and days, and
/// registered speech no stored reply points at.
fn spawn_sweeper(db: sqlx::PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(300));
        loop {
            interval.tick().await;
            if let Err(e) = sweep(&db).await {
                tracing::warn!(error = %e, "sweep failed");
            }
        }
    })
}

/// One pass of the sweeper.
pub async fn sweep(db: &sqlx::PgPool) -> sqlx::Result<()> {
    crate::auth::session::sweep(db).await?;
    crate::limits::sweep(db).await?;
    crate::tts::request::sweep(db).await
}
