//! A Keycloak 26-compatible realm server for tests and local development.
//!
//! It speaks Keycloak's wire formats (OIDC endpoints under `/realms/{realm}`, the admin REST
//! API under `/admin/realms`, Keycloak's exact JWS header bytes and claim order) and adds
//! fault injection for tests. See the crate README for what is and is not implemented.

#![recursion_limit = "256"]
// Handlers short-circuit with ready-made HTTP responses, so `Result<_, Response>` is the
// natural error type here; boxing every error would only add noise.
#![allow(clippy::result_large_err)]
// Collapsing nested `if let`s needs let-chains, which the workspace MSRV (1.85) lacks.
#![allow(clippy::collapsible_if)]

/// The value of an `Ok`, or return the `Err` response from the handler:
/// `?` for handlers that return a plain `Response`.
macro_rules! or_respond {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
}

mod admin;
mod admin_realm;
mod admin_users;
mod cors;
mod discovery;
mod faults;
mod http;
mod keys;
mod login;
mod logout;
mod model;
mod pages;
mod passwords;
mod realm_import;
mod server;
mod sessions;
mod state;
mod token_endpoint;
mod tokens;
mod urls;
mod userinfo;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

pub use state::SentEmail;
use state::{Shared, World};

/// How to start a [`Standin`].
#[derive(Clone, Debug)]
pub struct StandinConfig {
    pub bind: SocketAddr,
    pub realm_files: Vec<PathBuf>,
    pub realm_jsons: Vec<Value>,
    pub admin_user: String,
    pub admin_password: String,
    /// Realms and users are loaded from and saved to this file.
    pub state_file: Option<PathBuf>,
    /// Serve the `/_standin/...` fault-injection HTTP API.
    pub control_endpoint: bool,
    /// Keycloak's `hostname`: the public base of the issuer and the
    /// browser-facing endpoints (a full URL); `None` = the listening address.
    pub hostname: Option<String>,
    /// Keycloak's `hostname-backchannel-dynamic`.
    pub backchannel_dynamic: bool,
}

impl Default for StandinConfig {
    fn default() -> Self {
        StandinConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            realm_files: Vec::new(),
            realm_jsons: Vec::new(),
            admin_user: "admin".into(),
            admin_password: "admin".into(),
            state_file: None,
            control_endpoint: false,
            hostname: None,
            backchannel_dynamic: false,
        }
    }
}

/// A running server. Dropping it stops the server.
pub struct Standin {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

fn load_realms(config: &StandinConfig) -> anyhow::Result<World> {
    let mut world = World::default();
    if let Some(path) = config.state_file.as_ref().filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading state file {}", path.display()))?;
        world.realms = serde_json::from_str(&text)
            .with_context(|| format!("parsing state file {}", path.display()))?;
    }
    let from_state: Vec<String> = world.realms.iter().map(|r| r.name.clone()).collect();
    if world.realm("master").is_none() {
        world.realms.insert(
            0,
            realm_import::master_realm(&config.admin_user, &config.admin_password)?,
        );
    }
    let mut imported: Vec<model::Realm> = Vec::new();
    for path in &config.realm_files {
        imported.push(realm_import::load_file(path)?);
    }
    for (i, json) in config.realm_jsons.iter().enumerate() {
        // Realms given at start are imported as `--import-realm` imports a
        // file: `${NAME:default}` placeholders resolved first.
        let json =
            realm_import::resolve_placeholders(json).with_context(|| format!("realm JSON #{i}"))?;
        imported.push(realm_import::import(&json).with_context(|| format!("realm JSON #{i}"))?);
    }
    for realm in imported {
        // Like `--import-realm`: realms that already exist (from the state file) are kept.
        if from_state.contains(&realm.name) {
            continue;
        }
        if world.realm(&realm.name).is_some() {
            bail!("realm '{}' is defined more than once", realm.name);
        }
        world.realms.push(realm);
    }
    Ok(world)
}

pub(crate) fn rotate_key(shared: &Shared, realm: &str) {
    if let Some(r) = shared.world().realm_mut(realm) {
        if let Err(e) = r.keys.rotate(realm) {
            tracing::warn!("rotating key of realm {realm}: {e}");
        }
    }
}

pub(crate) fn expire_tokens(shared: &Shared, realm: &str) {
    let mut world = shared.world();
    let seq = world.ledger.seq;
    if let Some(r) = world.realm_mut(realm) {
        r.not_before = model::now_secs();
        r.revoked_before_seq = seq;
    }
}

impl Standin {
    /// Binds, loads realms and starts serving; returns once the listener is ready.
    pub async fn start(config: StandinConfig) -> anyhow::Result<Standin> {
        let world = load_realms(&config)?;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            base_url: format!("http://{host}:{}", addr.port()),
            frontend_base: config
                .hostname
                .as_deref()
                .map(|h| h.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("http://{host}:{}", addr.port())),
            backchannel_dynamic: config.backchannel_dynamic,
            faults: faults::Faults::default(),
            http: reqwest::Client::builder()
                .build()
                .context("building HTTP client")?,
            state_file: config.state_file.clone(),
            control: config.control_endpoint,
            addr,
            lifecycle: tokio::sync::Mutex::new(None),
            frontends: Default::default(),
        });
        for realm in &shared.world().realms {
            shared.note_frontend(realm);
        }
        let handle = server::spawn(&shared, listener);
        *shared.lifecycle.lock().await = Some(handle);
        shared.persist();
        Ok(Standin { shared, addr })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn issuer(&self, realm: &str) -> String {
        self.shared.issuer(realm)
    }

    /// Closes the listener and connections: clients get "connection refused".
    pub async fn go_down(&self) {
        server::go_down(&self.shared).await;
    }

    /// Listens again on the same port.
    pub async fn come_back(&self) -> anyhow::Result<()> {
        server::come_back(&self.shared, self.addr).await
    }

    /// Delays every request by `d` (zero disables).
    pub fn set_latency(&self, d: Duration) {
        self.shared.faults.set_latency(d);
    }

    /// Fails the next `n` requests whose path contains `path_contains` (and whose method
    /// matches, if given) with `status` and a Keycloak-shaped error body.
    pub fn fail_next(&self, method: Option<&str>, path_contains: &str, n: usize, status: u16) {
        self.shared
            .faults
            .fail_next(method, path_contains, n, status);
    }

    /// Adds a new active signing key; the old one stays published until [`Self::retire_old_keys`].
    pub fn rotate_signing_key(&self, realm: &str) {
        rotate_key(&self.shared, realm);
    }

    pub fn retire_old_keys(&self, realm: &str) {
        if let Some(r) = self.shared.world().realm_mut(realm) {
            r.keys.retire_old();
        }
    }

    /// Invalidates every token issued so far in the realm (Keycloak's "not before" push).
    pub fn expire_all_tokens(&self, realm: &str) {
        expire_tokens(&self.shared, realm);
    }

    /// Token-endpoint requests seen for this realm, grant type and client id.
    pub fn token_requests(&self, realm: &str, grant_type: &str, client_id: &str) -> usize {
        self.shared
            .faults
            .token_requests(realm, grant_type, client_id)
    }

    pub fn jwks_fetches(&self, realm: &str) -> usize {
        self.shared.faults.jwks_fetches(realm)
    }

    /// Execute-actions emails "sent" so far.
    pub fn outbox(&self) -> Vec<SentEmail> {
        self.shared.world().outbox.clone()
    }

    /// The admin API's UserRepresentation of a user.
    pub fn user_by_username(&self, realm: &str, username: &str) -> Option<Value> {
        let world = self.shared.world();
        let r = world.realm(realm)?;
        let u = r.user_by_username(username)?;
        Some(admin_users::user_rep(r, u, false, false))
    }

    /// Names of the realm roles mapped directly to the user.
    pub fn user_realm_roles(&self, realm: &str, user_id: &str) -> Vec<String> {
        let world = self.shared.world();
        let Some(r) = world.realm(realm) else {
            return Vec::new();
        };
        let Some(u) = r.user(user_id) else {
            return Vec::new();
        };
        u.roles
            .iter()
            .filter_map(|id| r.role(id))
            .filter(|role| role.client.is_none())
            .map(|role| role.name.clone())
            .collect()
    }

    pub fn active_sessions(&self, realm: &str, user_id: &str) -> usize {
        let world = self.shared.world();
        world
            .sessions_of(realm, user_id)
            .iter()
            .filter(|sid| world.session_active(sid, realm))
            .count()
    }

    /// Signs `payload` with the realm's active RSA key, using `header_json` verbatim.
    pub fn sign_jws(&self, realm: &str, header_json: &str, payload: &Value) -> String {
        let world = self.shared.world();
        match world.realm(realm).and_then(|r| r.keys.active()) {
            Some(key) => keys::sign_with(key, header_json, payload),
            None => String::new(),
        }
    }

    pub fn current_kid(&self, realm: &str) -> String {
        let world = self.shared.world();
        world
            .realm(realm)
            .and_then(|r| r.keys.active())
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    /// Stops the server and waits for it to close.
    pub async fn shutdown(self) {
        server::go_down(&self.shared).await;
        self.shared.persist();
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.shared.lifecycle.try_lock() {
            if let Some(h) = slot.as_mut() {
                h.signal();
            }
        }
    }
}
