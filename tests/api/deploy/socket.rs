//! The Unix socket's peers: the socket is bound where nobody can connect
//! before it has its mode, and a peer counts as the proxy (its forwarding
//! headers believed) by its credentials, not merely by having connected.

use std::path::Path;

use keycloak_standin::{Standin, StandinConfig};

use super::nginx::{TempDir, ready_on_socket, voxgate_on_socket};
use crate::helpers::TestDatabase;
use crate::stack::REALM;

/// The head of `GET /auth/login` sent as a proxy would, reporting https.
async fn login_head(socket: &Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    stream
        .write_all(
            b"GET /auth/login HTTP/1.0\r\nHost: voxgate.internal\r\n\
              X-Forwarded-Proto: https\r\nX-Forwarded-Host: voxgate.internal\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    text.split_once("\r\n\r\n")
        .map_or(text.clone(), |(h, _)| h.to_lowercase())
}

#[tokio::test]
async fn on_the_unix_socket_only_the_proxys_user_is_believed() {
    let kc = Standin::start(StandinConfig {
        realm_jsons: vec![serde_json::from_str(&crate::stack::project_realm_text()).unwrap()],
        ..StandinConfig::default()
    })
    .await
    .expect("keycloak stand-in starts");
    let db = TestDatabase::new().await;
    let dir = TempDir::new("peers");
    // The test's own user: believed by default (voxgate's own user); not
    // when the proxy is named as somebody else.
    let cases = [("own.sock", "", true), ("other.sock", "4242", false)];
    let mut children = Vec::new();
    for (name, proxy_uids, _) in cases {
        children.push(voxgate_on_socket(
            &dir.path(name),
            "0600",
            &[
                ("DATABASE_URL", db.url.as_str()),
                ("VOXGATE_SOCKET_PROXY_UIDS", proxy_uids),
                ("VOXGATE_OIDC_ISSUER", &kc.issuer(REALM)),
            ],
        ));
    }
    for (name, _, believed) in cases {
        let path = dir.path(name);
        assert_eq!(ready_on_socket(&path).await, 0o600);

        let head = login_head(&path).await;
        let secure = head
            .lines()
            .any(|l| l.starts_with("set-cookie: voxgate_login=") && l.contains("secure"));
        let https_callback = head.contains("redirect_uri=https%3a%2f%2fvoxgate.internal");
        assert_eq!(secure, believed, "{name}: {head}");
        assert_eq!(https_callback, believed, "{name}: {head}");
    }
    // A peer that is not the proxy has no address of its own: all such
    // peers share one sign-in allowance (they are not left unlimited).
    let other = dir.path("other.sock");
    // One sign-in was started above; the default allowance is 20.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let head = login_head(&other).await;
        statuses.push(head.split(' ').nth(1).unwrap_or_default().to_string());
    }
    assert!(statuses[..19].iter().all(|s| s == "303"), "{statuses:?}");
    assert_eq!(statuses[19], "429", "{statuses:?}");

    // Bound in a private directory and moved into place: nothing is left
    // beside the sockets.
    let mut left: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["other.sock", "own.sock"]);
}
