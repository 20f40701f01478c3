//! The Unix socket's peers: the socket is bound where nobody can connect
//! before it has its mode, and a peer counts as the proxy (its forwarding
//! headers believed) by its credentials, not merely by having connected.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use keycloak_standin::{Standin, StandinConfig};

use super::nginx::{TempDir, unix_get};
use crate::helpers::TestDatabase;
use crate::stack::{ADMIN_SECRET, REALM, WEB_SECRET};

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
        children.push(
            tokio::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
                .arg("serve")
                .env_clear()
                .envs(crate::helpers::base_env())
                .env("DATABASE_URL", &db.url)
                .env("VOXGATE_BIND", format!("unix:{}", dir.path(name).display()))
                .env("VOXGATE_SOCKET_MODE", "0600")
                .env("VOXGATE_SOCKET_PROXY_UIDS", proxy_uids)
                .env("VOXGATE_PUBLIC_URL", "http://voxgate.internal")
                .env("VOXGATE_OIDC_ISSUER", kc.issuer(REALM))
                .env("VOXGATE_OIDC_CLIENT_SECRET", WEB_SECRET)
                .env("VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET)
                .env("VOXGATE_TTS_ENGINE", "local")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("voxgate starts"),
        );
    }
    for (name, _, believed) in cases {
        let path = dir.path(name);
        let mut ready = false;
        for _ in 0..300 {
            if path.exists() && unix_get(&path, "/readyz").await.0 == 200 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "voxgate on {name} became ready");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

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
