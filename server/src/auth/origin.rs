//! Where the browser says it is: the external origin behind a trusted
//! proxy, and the same-origin proof that cookie-authenticated state
//! changes need (with the CSRF token compared in constant time).

use std::net::IpAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{Method, header};

use crate::listener::Peer;
use crate::state::AppState;

/// The connection's peer, and whether it is a proxy whose forwarding
/// headers we believe: an address in VOXGATE_TRUSTED_PROXIES, or a peer on
/// voxgate's Unix socket whose credentials say it is (`listener::UnixPeer`).
fn peer(parts: &Parts, state: &AppState) -> Option<(Option<IpAddr>, bool)> {
    match parts.extensions.get::<ConnectInfo<Peer>>()?.0 {
        Peer::Tcp(address) => {
            let ip = address.ip();
            let trusted = state
                .config
                .trusted_proxies
                .iter()
                .any(|net| net.contains(ip));
            Some((Some(ip), trusted))
        }
        Peer::Unix(unix) => Some((None, unix.is_proxy(&state.config.socket_proxy_uids))),
    }
}

/// The scheme and host users reach us at: the configured public URL, or
/// `X-Forwarded-Proto`/`-Host` when the peer is a trusted proxy.
pub fn external_base(parts: &Parts, state: &AppState) -> String {
    let configured = state
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    if !peer(parts, state).is_some_and(|(_, trusted)| trusted) {
        return configured;
    }
    let header_value = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let proto = header_value("x-forwarded-proto").filter(|p| p == "http" || p == "https");
    let host = header_value("x-forwarded-host").or_else(|| header_value("host"));
    match (proto, host) {
        (Some(proto), Some(host))
            if host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) =>
        {
            format!("{proto}://{host}")
        }
        _ => configured,
    }
}

pub(super) fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The browser's address: the peer, or the last address a trusted proxy
/// appended to `X-Forwarded-For` (the one hop we can believe).
pub fn client_address(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let (ip, trusted) = peer(parts, state)?;
    if !trusted {
        return ip;
    }
    parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .or(ip)
}

/// Same-origin proof for cookie-authenticated state changes.
pub(super) fn check_same_origin(parts: &Parts, state: &AppState) -> Result<(), &'static str> {
    let base = external_base(parts, state);
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let fetch_site_same = header("sec-fetch-site") == Some("same-origin");
    match header(header::ORIGIN.as_str()) {
        Some(origin) if origin == base => Ok(()),
        // Browsers send `Origin: null` for forms under a no-referrer
        // policy; then only the fetch metadata can vouch for the request.
        Some("null") if fetch_site_same => Ok(()),
        Some(_) => Err("Cross-origin request refused."),
        None if fetch_site_same => Ok(()),
        None => Err("Cross-origin request refused: send an Origin header from this site."),
    }
}

pub(super) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
