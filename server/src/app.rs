//! Builds and runs the application: binds the listener (port 0 allowed),
//! connects and migrates the database, builds the state and the router.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, UnixListener};

use crate::auth::Auth;
use crate::config::{Bind, Config};
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

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

impl Listener {
    async fn bind(bind: &Bind, mode: u32) -> std::io::Result<Listener> {
        match bind {
            Bind::Tcp(address) => Ok(Listener::Tcp(TcpListener::bind(address).await?)),
            Bind::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = bind_private(path, mode)?;
                Ok(Listener::Unix(listener, path.clone()))
            }
        }
    }
}

/// Binds the socket where nobody else can reach it yet (a directory only
/// voxgate can enter, beside `path`), gives it `mode`, then links it into
/// place: no connection can arrive while the file still has the umask's
/// permissions.
fn bind_private(path: &std::path::Path, mode: u32) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path.parent().unwrap_or(std::path::Path::new("/"));
    let private = parent.join(format!(".voxgate-bind-{}", uuid::Uuid::new_v4().simple()));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        // A link, not a rename: it fails rather than replace a socket that
        // another instance put there meanwhile.
        std::fs::hard_link(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// A socket file left by an instance that died is removed; one that
/// another instance still answers on, or a file that is not a socket, is
/// an error (never deleted).
async fn remove_stale_socket(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; it is left alone: choose another path",
        ));
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another process is listening on this socket: stop it, or give this instance another path",
        ));
    }
    std::fs::remove_file(path)
}

/// Who is on the other end of a connection. On the Unix socket, the peer's
/// credentials (SO_PEERCRED) decide whether it is the proxy: by default
/// voxgate's own user, root, and members of voxgate's group (whom the
/// default mode 0660 admits), or exactly `VOXGATE_SOCKET_PROXY_UIDS`.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix(UnixPeer),
}

#[derive(Clone, Copy, Debug)]
pub struct UnixPeer {
    /// `None` when the kernel did not say (never on Linux).
    pub uid: Option<u32>,
    /// Whether the peer is voxgate's own user, root, or in voxgate's group.
    pub in_socket_group: bool,
}

impl UnixPeer {
    /// Whether its forwarding headers are believed.
    pub fn is_proxy(&self, proxy_uids: &[u32]) -> bool {
        match (proxy_uids.is_empty(), self.uid) {
            (true, _) => self.in_socket_group,
            (false, Some(uid)) => proxy_uids.contains(&uid),
            (false, None) => false,
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer::Tcp(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Peer {
        let cred = stream.io().peer_cred().ok();
        let uid = cred.as_ref().map(|c| c.uid());
        let in_socket_group = cred.is_some_and(|c| {
            let (own_uid, own_gid) = own_ids();
            c.uid() == 0
                || c.uid() == own_uid
                || c.gid() == own_gid
                || c.pid()
                    .is_some_and(|pid| supplementary_groups(pid).contains(&own_gid))
        });
        Peer::Unix(UnixPeer {
            uid,
            in_socket_group,
        })
    }
}

/// voxgate's effective user and group (the owner and group of the socket
/// file it creates).
fn own_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        std::fs::metadata("/proc/self")
            .map(|m| (m.uid(), m.gid()))
            .unwrap_or((u32::MAX, u32::MAX))
    })
}

/// A process's supplementary groups (`Groups:` of /proc/PID/status).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(|g| {
                    g.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
        })
        .unwrap_or_default()
}
