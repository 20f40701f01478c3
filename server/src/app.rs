//! Builds and runs the application: binds the listener (port 0 allowed),
//! connects and migrates the database, builds the state and the router.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::config::Config;
use crate::listener::{Listener, Peer};
use crate::state::AppState;
use crate::users::Users;

pub struct App {
    listener: Listener,
    state: AppState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let listener = Listener::bind(&config.bind, config.socket_mode)
            .await
            .map_err(|e| anyhow::anyhow!("VOXGATE_BIND: cannot listen on {}: {e}", config.bind))?;
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
            crate::telemetry::spawn_metrics_upkeep(Duration::from_secs(5)),
        ];
        let tts =
            crate::tts::Tts::new(db.clone(), crate::db::connect_cache(&config)?, &config).await;
        let chat = crate::chat::Chat::new(&config, db.clone(), tts.clone())?;
        let stt = crate::stt::Stt::new(&config, db.clone()).await;
        let state = AppState::new(crate::state::Parts {
            config,
            db,
            auth,
            users,
            tts,
            stt,
            chat,
        });
        Ok(App {
            listener,
            state,
            tasks,
        })
    }

    /// The TCP address it listens on; `None` on a Unix socket.
    pub fn address(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(listener) => listener.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Where it listens, for people: an address or `unix:/path`.
    pub fn listening_on(&self) -> String {
        match &self.listener {
            Listener::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
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
        let service = router.into_make_service_with_connect_info::<Peer>();
        let socket_file = match &self.listener {
            Listener::Unix(_, path) => Some(path.clone()),
            Listener::Tcp(_) => None,
        };
        let server = match self.listener {
            Listener::Tcp(listener) => tokio::spawn(
                axum::serve(listener, service)
                    .with_graceful_shutdown(signal)
                    .into_future(),
            ),
            Listener::Unix(listener, _) => tokio::spawn(
                axum::serve(listener, service)
                    .with_graceful_shutdown(signal)
                    .into_future(),
            ),
        };
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
        if let Some(path) = socket_file {
            let _ = std::fs::remove_file(path);
        }
        for task in &self.tasks {
            task.abort();
        }
        self.state.tts.shutdown().await;
        self.state.stt.shutdown().await;
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
    crate::limits::sweep(
        db,
        &[crate::tts::METER, crate::chat::METER, crate::stt::METER],
    )
    .await?;
    crate::tts::request::sweep(db).await
}
