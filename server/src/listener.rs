//! Where voxgate listens (a TCP address or a Unix socket, bound so that no
//! connection can arrive before its permissions are set) and who is on
//! the other end of each connection.

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, UnixListener};

use crate::config::Bind;

/// The bound listener; a Unix socket remembers its path, removed at stop.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

impl Listener {
    pub(crate) async fn bind(bind: &Bind, mode: u32) -> std::io::Result<Listener> {
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
