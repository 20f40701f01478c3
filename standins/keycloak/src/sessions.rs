//! SSO user sessions: creation, ending, and the OIDC back-channel logout notifications
//! that ending a session sends to clients with `backchannel.logout.url`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;

use crate::model::now_secs;
use crate::state::{UserSession, World, random_id};

pub const IDENTITY_COOKIE: &str = "KEYCLOAK_IDENTITY";
pub const SESSION_COOKIE: &str = "KEYCLOAK_SESSION";

pub fn create_session(
    world: &mut World,
    realm: &str,
    user_id: &str,
    remote: &str,
    interactive: bool,
) -> String {
    let now = now_secs();
    let id = uuid::Uuid::new_v4().to_string();
    world.sessions.insert(
        id.clone(),
        UserSession {
            id: id.clone(),
            realm: realm.to_string(),
            user_id: user_id.to_string(),
            started: now,
            last_refresh: now,
            auth_time: interactive.then_some(now),
            clients: Vec::new(),
            nonces: Default::default(),
            remote_addr: remote.to_string(),
        },
    );
    id
}

/// Records that `client_id` obtained tokens in the session.
pub fn attach_client(world: &mut World, sid: &str, client_id: &str, nonce: Option<String>) {
    if let Some(s) = world.sessions.get_mut(sid) {
        if !s.clients.iter().any(|c| c == client_id) {
            s.clients.push(client_id.to_string());
        }
        match nonce {
            Some(n) => {
                s.nonces.insert(client_id.to_string(), n);
            }
            None => {
                s.nonces.remove(client_id);
            }
        }
        s.last_refresh = now_secs();
    }
}

/// A back-channel logout request still to be sent: `(url, logout_token)`.
pub type Notification = (String, String);

/// Removes the sessions and prepares back-channel logout tokens for their clients.
pub fn end_sessions(world: &mut World, base_url: &str, sids: &[String]) -> Vec<Notification> {
    let mut out = Vec::new();
    for sid in sids {
        let Some(session) = world.sessions.remove(sid) else {
            continue;
        };
        let World { realms, ledger, .. } = &mut *world;
        let Some(realm) = realms.iter().find(|r| r.name == session.realm) else {
            continue;
        };
        let issuer = realm.issuer(base_url);
        for client_id in &session.clients {
            let Some(client) = realm.client(client_id) else {
                continue;
            };
            let Some(url) = client
                .attr("backchannel.logout.url")
                .filter(|u| !u.is_empty())
            else {
                continue;
            };
            let token = crate::tokens::logout_token(realm, &issuer, client, &session, ledger);
            out.push((url.to_string(), token));
        }
    }
    out
}

/// Sends back-channel logout requests; failures are logged, as Keycloak records them.
pub async fn deliver(http: &reqwest::Client, notifications: Vec<Notification>) -> bool {
    let mut all_ok = true;
    for (url, token) in notifications {
        let result = http
            .post(&url)
            .form(&[("logout_token", token.as_str())])
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                all_ok = false;
                tracing::warn!("back-channel logout to {url} answered {}", r.status());
            }
            Err(e) => {
                all_ok = false;
                tracing::warn!("back-channel logout to {url} failed: {e}");
            }
        }
    }
    all_ok
}

/// The active browser session named by the identity cookie, if any.
pub fn browser_session(world: &World, headers: &HeaderMap, realm: &str) -> Option<String> {
    let sid = crate::http::cookie(headers, IDENTITY_COOKIE)?;
    world.session_active(&sid, realm).then_some(sid)
}

pub fn session_cookies(realm: &str, sid: &str) -> Vec<String> {
    let path = format!("/realms/{realm}/");
    vec![
        format!("{IDENTITY_COOKIE}={sid}; Version=1; Path={path}; SameSite=Lax; HttpOnly"),
        format!(
            "{SESSION_COOKIE}={}; Version=1; Path={path}; SameSite=Lax",
            crate::keys::b64url(&crate::keys::sha256(sid.as_bytes()))
        ),
    ]
}

pub fn clear_cookies(realm: &str) -> Vec<String> {
    let path = format!("/realms/{realm}/");
    [IDENTITY_COOKIE, SESSION_COOKIE]
        .iter()
        .map(|c| {
            format!(
                "{c}=; Version=1; Path={path}; Max-Age=0; Expires=Thu, 01-Jan-1970 00:00:10 GMT"
            )
        })
        .collect()
}

/// Whether plain HTTP from `addr` violates the realm's `sslRequired` setting.
pub fn https_required(ssl_required: &str, addr: &SocketAddr, headers: &HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if forwarded_https {
        return false;
    }
    match ssl_required {
        "none" | "NONE" => false,
        "all" | "ALL" => true,
        _ => !is_local(addr.ip()),
    }
}

fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
    }
}

pub fn new_flow_id() -> String {
    random_id()
}
