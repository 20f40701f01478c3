//! Server state shared by all handlers: realms, SSO sessions, pending logins, authorization
//! codes and the token ledger. One mutex guards it; handlers never hold it across `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::faults::Faults;
use crate::model::{Realm, now_secs};

/// A captured execute-actions email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEmail {
    pub realm: String,
    pub to: String,
    pub user_id: String,
    pub actions: Vec<String>,
    pub link: String,
}

#[derive(Clone, Debug)]
pub struct UserSession {
    pub id: String,
    pub realm: String,
    pub user_id: String,
    pub started: i64,
    pub last_refresh: i64,
    /// When the user authenticated at the login page; direct grants have
    /// none, and Keycloak puts no `auth_time` in their tokens.
    pub auth_time: Option<i64>,
    /// Client ids that obtained tokens in this session, in order.
    pub clients: Vec<String>,
    /// Nonce of the latest authorization request per client, echoed in refreshed ID tokens.
    pub nonces: BTreeMap<String, String>,
    pub remote_addr: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// `redirect_uri` exactly as sent; the code exchange must repeat it.
    pub redirect_param: Option<String>,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

#[derive(Clone, Debug)]
pub enum FlowKind {
    Authorize(AuthRequest),
    /// Actions requested by an execute-actions email link.
    ActionToken {
        actions: Vec<String>,
        redirect_uri: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct LoginFlow {
    pub realm: String,
    pub kind: FlowKind,
    /// Set once the user has authenticated (or the action token identified them).
    pub user_id: Option<String>,
    pub expires: i64,
}

#[derive(Clone, Debug)]
pub struct AuthCode {
    pub realm: String,
    pub client_id: String,
    pub redirect_param: Option<String>,
    pub session_id: String,
    pub nonce: Option<String>,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub expires: i64,
    pub acr: String,
}

#[derive(Clone, Debug)]
pub struct PendingLogout {
    pub realm: String,
    pub client_id: Option<String>,
    pub redirect: Option<String>,
    pub state: Option<String>,
}

/// Issued token ids with a global sequence number, so "expire all tokens" can invalidate
/// tokens issued within the current second, which `iat`-based `notBefore` cannot.
#[derive(Default)]
pub struct Ledger {
    pub seq: u64,
    pub issued: HashMap<String, u64>,
    pub revoked: HashSet<String>,
}

impl Ledger {
    pub fn new_jti(&mut self, prefix: &str) -> String {
        self.seq += 1;
        let jti = format!("{prefix}:{}", uuid::Uuid::new_v4());
        self.issued.insert(jti.clone(), self.seq);
        jti
    }

    pub fn is_stale(&self, realm: &Realm, claims: &serde_json::Value) -> bool {
        let iat = claims
            .get("iat")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        if iat < realm.not_before {
            return true;
        }
        let jti = claims
            .get("jti")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if self.revoked.contains(jti) {
            return true;
        }
        match self.issued.get(jti) {
            Some(seq) => *seq <= realm.revoked_before_seq,
            None => realm.revoked_before_seq > 0 && iat <= realm.not_before,
        }
    }
}

#[derive(Default)]
pub struct World {
    pub realms: Vec<Realm>,
    pub sessions: HashMap<String, UserSession>,
    pub flows: HashMap<String, LoginFlow>,
    pub codes: HashMap<String, AuthCode>,
    pub logouts: HashMap<String, PendingLogout>,
    pub ledger: Ledger,
    pub outbox: Vec<SentEmail>,
}

impl World {
    pub fn realm(&self, name: &str) -> Option<&Realm> {
        self.realms.iter().find(|r| r.name == name)
    }

    pub fn realm_mut(&mut self, name: &str) -> Option<&mut Realm> {
        self.realms.iter_mut().find(|r| r.name == name)
    }

    pub fn session_active(&self, sid: &str, realm: &str) -> bool {
        let Some(s) = self.sessions.get(sid) else {
            return false;
        };
        let Some(r) = self.realm(realm) else {
            return false;
        };
        let now = now_secs();
        s.realm == realm
            && now - s.last_refresh <= r.sso_session_idle_timeout
            && now - s.started <= r.sso_session_max_lifespan
            && r.user(&s.user_id).is_some_and(|u| u.enabled)
    }

    pub fn purge_expired(&mut self) {
        let now = now_secs();
        self.flows.retain(|_, f| f.expires > now);
        self.codes.retain(|_, c| c.expires + 60 > now);
        let dead: Vec<String> = self
            .sessions
            .iter()
            .filter(|(id, s)| !self.session_active(id, &s.realm))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            self.sessions.remove(&id);
        }
    }

    pub fn sessions_of(&self, realm: &str, user_id: &str) -> Vec<String> {
        self.sessions
            .values()
            .filter(|s| s.realm == realm && s.user_id == user_id)
            .map(|s| s.id.clone())
            .collect()
    }
}

pub struct Shared {
    pub world: Mutex<World>,
    pub base_url: String,
    pub faults: Faults,
    pub http: reqwest::Client,
    pub state_file: Option<PathBuf>,
    pub control: bool,
    pub addr: std::net::SocketAddr,
    pub lifecycle: tokio::sync::Mutex<Option<crate::server::ServerHandle>>,
    /// Where the browser-facing URLs and the issuer live: the configured
    /// hostname (`KC_HOSTNAME`), else the listening address.
    pub frontend_base: String,
    /// `KC_HOSTNAME_BACKCHANNEL_DYNAMIC`: back-channel endpoints keep the
    /// address they are called at instead of the frontend one.
    pub backchannel_dynamic: bool,
    /// Realm name → `frontendUrl`, for realms that set one.
    pub frontends: std::sync::RwLock<std::collections::HashMap<String, String>>,
}

impl Shared {
    /// Locks the world; a poisoned lock is recovered because every mutation is small and
    /// leaves the state consistent, and a test server must keep answering.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The realm's issuer: under its `frontendUrl` when it has one. Kept
    /// apart from the world so that handlers holding the world can ask.
    pub fn issuer(&self, realm: &str) -> String {
        let frontends = self.frontends.read().unwrap_or_else(|e| e.into_inner());
        let base = frontends.get(realm).unwrap_or(&self.frontend_base);
        format!("{}/realms/{realm}", base.trim_end_matches('/'))
    }

    /// The realm under the base of its back-channel endpoints (token, keys,
    /// userinfo): the frontend one, unless they are dynamic.
    pub fn backend_issuer(&self, realm: &str) -> String {
        if self.backchannel_dynamic {
            format!("{}/realms/{realm}", self.base_url)
        } else {
            self.issuer(realm)
        }
    }

    /// Records a realm's frontend URL (at start and when a realm is created).
    pub fn note_frontend(&self, realm: &crate::model::Realm) {
        let mut frontends = self.frontends.write().unwrap_or_else(|e| e.into_inner());
        match &realm.frontend_url {
            Some(url) => frontends.insert(realm.name.clone(), url.clone()),
            None => frontends.remove(&realm.name),
        };
    }

    /// Writes realms and users to the state file, if one is configured.
    pub fn persist(&self) {
        let Some(path) = &self.state_file else { return };
        let json = {
            let world = self.world();
            serde_json::to_vec_pretty(&world.realms)
        };
        match json {
            Ok(bytes) => {
                let tmp = path.with_extension("tmp");
                if let Err(e) =
                    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path))
                {
                    tracing::warn!("writing state file {}: {e}", path.display());
                }
            }
            Err(e) => tracing::warn!("serialising state: {e}"),
        }
    }
}

pub fn random_id() -> String {
    let bytes: [u8; 24] = rand::random();
    crate::keys::b64url(&bytes)
}
