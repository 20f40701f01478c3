//! In-memory realm model: realms, clients, roles, users, and the role-resolution rules
//! (composites, default roles) that every token and admin call depends on.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::insert_some;
use crate::keys::RealmKeys;
use crate::passwords::PasswordHash;

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Internal id of the owning client; `None` for realm roles.
    pub client: Option<String>,
    /// Role ids this role includes.
    pub composites: Vec<String>,
    pub attributes: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub client_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub secret: Option<String>,
    pub enabled: bool,
    pub public_client: bool,
    pub bearer_only: bool,
    pub consent_required: bool,
    pub standard_flow: bool,
    pub implicit_flow: bool,
    pub direct_access_grants: bool,
    pub service_accounts: bool,
    pub root_url: Option<String>,
    pub base_url: Option<String>,
    pub redirect_uris: Vec<String>,
    pub web_origins: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub protocol_mappers: Vec<Value>,
    pub default_client_scopes: Option<Vec<String>>,
    pub full_scope_allowed: bool,
    /// Authorization services imply the `uma_protection` client role.
    #[serde(default)]
    pub authorization_services: bool,
}

impl Client {
    pub fn new(client_id: &str) -> Client {
        Client {
            id: new_id(),
            client_id: client_id.to_string(),
            name: None,
            description: None,
            secret: None,
            enabled: true,
            public_client: false,
            bearer_only: false,
            consent_required: false,
            standard_flow: true,
            implicit_flow: false,
            direct_access_grants: false,
            service_accounts: false,
            root_url: None,
            base_url: None,
            redirect_uris: Vec::new(),
            web_origins: Vec::new(),
            attributes: BTreeMap::new(),
            protocol_mappers: Vec::new(),
            default_client_scopes: None,
            full_scope_allowed: true,
            authorization_services: false,
        }
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub fn attr_true(&self, key: &str) -> bool {
        self.attr(key) == Some("true")
    }

    /// Redirect URIs made absolute against `rootUrl`, as Keycloak resolves relative entries.
    pub fn resolved_redirect_uris(&self) -> Vec<String> {
        self.redirect_uris
            .iter()
            .map(|u| match (&self.root_url, u.starts_with('/')) {
                (Some(root), true) => format!("{}{}", root.trim_end_matches('/'), u),
                _ => u.clone(),
            })
            .collect()
    }

    pub fn redirect_uri_allowed(&self, uri: &str) -> bool {
        crate::urls::matches_any(&self.resolved_redirect_uris(), uri)
    }

    /// `post.logout.redirect.uris` with `+` expanded to the redirect URIs.
    pub fn post_logout_redirect_allowed(&self, uri: &str) -> bool {
        let Some(attr) = self.attr("post.logout.redirect.uris") else {
            return false;
        };
        let mut allowed = Vec::new();
        for part in attr.split("##").map(str::trim).filter(|p| !p.is_empty()) {
            if part == "+" {
                allowed.extend(self.resolved_redirect_uris());
            } else {
                allowed.push(part.to_string());
            }
        }
        crate::urls::matches_any(&allowed, uri)
    }

    /// Web origins with `+` resolved to the redirect-URI origins; `*` kept as-is.
    pub fn allowed_origins(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for origin in &self.web_origins {
            if origin == "+" {
                for uri in self.resolved_redirect_uris() {
                    if let Some(o) = crate::urls::origin_of(&uri) {
                        if !out.contains(&o) {
                            out.push(o);
                        }
                    }
                }
            } else if !out.contains(origin) {
                out.push(origin.clone());
            }
        }
        out
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        let allowed = self.allowed_origins();
        allowed.iter().any(|o| o == "*" || o == origin)
    }

    pub fn pkce_method(&self) -> Option<&str> {
        self.attr("pkce.code.challenge.method")
            .filter(|m| !m.is_empty())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    /// Always lower-case, as Keycloak stores usernames.
    pub username: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_verified: bool,
    pub enabled: bool,
    pub created_timestamp: i64,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub required_actions: Vec<String>,
    pub password: Option<PasswordHash>,
    /// Directly mapped role ids (realm and client roles).
    pub roles: Vec<String>,
    pub service_account_client_id: Option<String>,
    pub not_before: i64,
}

impl User {
    pub fn new(username: &str) -> User {
        User {
            id: new_id(),
            username: username.to_lowercase(),
            email: None,
            first_name: None,
            last_name: None,
            email_verified: false,
            enabled: true,
            created_timestamp: now_ms(),
            attributes: BTreeMap::new(),
            required_actions: Vec::new(),
            password: None,
            roles: Vec::new(),
            service_account_client_id: None,
            not_before: 0,
        }
    }

    pub fn full_name(&self) -> Option<String> {
        match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(f), None) => Some(f.clone()),
            (None, Some(l)) => Some(l.clone()),
            (None, None) => None,
        }
    }

    pub fn add_required_action(&mut self, action: &str) {
        if !self.required_actions.iter().any(|a| a == action) {
            self.required_actions.push(action.to_string());
        }
    }

    pub fn remove_required_action(&mut self, action: &str) {
        self.required_actions.retain(|a| a != action);
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientScope {
    pub name: String,
    pub protocol_mappers: Vec<Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Realm {
    pub id: String,
    pub name: String,
    pub display_name: Option<String>,
    pub enabled: bool,
    pub ssl_required: String,
    pub access_token_lifespan: i64,
    pub sso_session_idle_timeout: i64,
    pub sso_session_max_lifespan: i64,
    pub access_code_lifespan: i64,
    pub access_code_lifespan_login: i64,
    pub action_token_admin_lifespan: i64,
    pub login_with_email_allowed: bool,
    pub duplicate_emails_allowed: bool,
    pub edit_username_allowed: bool,
    pub registration_allowed: bool,
    /// `notBefore` as Keycloak reports it (seconds).
    pub not_before: i64,
    /// Token sequence number at the last "expire all tokens"; tokens with a lower or equal
    /// sequence are stale even if issued within the same second.
    #[serde(default)]
    pub revoked_before_seq: u64,
    pub smtp_server: Option<Map<String, Value>>,
    pub default_role: String,
    pub roles: Vec<Role>,
    pub clients: Vec<Client>,
    pub client_scopes: Vec<ClientScope>,
    pub default_default_client_scopes: Vec<String>,
    pub users: Vec<User>,
    pub keys: RealmKeys,
    /// Brute-force detection, when the realm turns it on.
    #[serde(default)]
    pub brute_force: Option<BruteForce>,
    /// The `frontendUrl` attribute: the base of the issuer and of the
    /// browser-facing endpoints (the back-channel ones keep the address
    /// they are called at, as Keycloak's `OIDCWellKnownProvider` does).
    #[serde(default)]
    pub frontend_url: Option<String>,
    /// Keycloak's password policy string, as set; stored and reported, not
    /// enforced (standins/keycloak/README.md).
    #[serde(default)]
    pub password_policy: Option<String>,
    /// Login failures per user id (memory only, as Keycloak's are per node).
    #[serde(skip)]
    pub login_failures: std::collections::HashMap<String, LoginFailures>,
}

/// The realm's brute-force settings (Keycloak's names, in seconds and ms).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BruteForce {
    pub failure_factor: i64,
    pub wait_increment_seconds: i64,
    pub max_failure_wait_seconds: i64,
    pub quick_login_check_ms: i64,
    pub minimum_quick_login_wait_seconds: i64,
    pub max_delta_time_seconds: i64,
}

/// Keycloak's `UserLoginFailureModel`.
#[derive(Clone, Debug, Default)]
pub struct LoginFailures {
    pub num_failures: i64,
    pub last_failure_ms: i64,
    pub last_ip: String,
    /// Locked until this time (seconds); 0 when not locked.
    pub not_before: i64,
}

impl Realm {
    /// Whether brute-force detection holds `user_id` back right now.
    pub fn login_locked(&self, user_id: &str) -> bool {
        self.brute_force.is_some()
            && self
                .login_failures
                .get(user_id)
                .is_some_and(|f| f.not_before > now_secs())
    }

    /// Counts a failed login as Keycloak's BruteForceProtector does: a
    /// failure within the quick-login window of the previous one locks for
    /// the minimum quick-login wait; every `failureFactor`th failure locks
    /// for a growing wait, up to the maximum. Failures older than the delta
    /// time are forgotten.
    pub fn record_login_failure(&mut self, user_id: &str, ip: &str) {
        let Some(bf) = self.brute_force.clone() else {
            return;
        };
        let now = now_ms();
        let f = self.login_failures.entry(user_id.to_string()).or_default();
        if f.last_failure_ms > 0 && now - f.last_failure_ms > bf.max_delta_time_seconds * 1000 {
            *f = LoginFailures::default();
        }
        let quick = f.last_failure_ms > 0 && now - f.last_failure_ms < bf.quick_login_check_ms;
        f.num_failures += 1;
        f.last_failure_ms = now;
        f.last_ip = ip.to_string();
        let mut wait = 0;
        if bf.failure_factor > 0 && f.num_failures % bf.failure_factor == 0 {
            wait = (bf.wait_increment_seconds * (f.num_failures / bf.failure_factor))
                .min(bf.max_failure_wait_seconds);
        }
        if quick {
            wait = wait.max(bf.minimum_quick_login_wait_seconds);
        }
        if wait > 0 {
            f.not_before = now / 1000 + wait;
        }
    }

    /// A successful login forgets the failures.
    pub fn clear_login_failures(&mut self, user_id: &str) {
        self.login_failures.remove(user_id);
    }

    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub fn client_by_uuid(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn user_mut(&mut self, id: &str) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.id == id)
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        let wanted = username.to_lowercase();
        self.users.iter().find(|u| u.username == wanted)
    }

    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        let wanted = email.to_lowercase();
        self.users
            .iter()
            .find(|u| u.email.as_deref().map(str::to_lowercase) == Some(wanted.clone()))
    }

    /// Keycloak's `findUserByNameOrEmail`: username first, then email when allowed.
    pub fn find_login_user(&self, name: &str) -> Option<&User> {
        self.user_by_username(name).or_else(|| {
            if self.login_with_email_allowed && name.contains('@') {
                self.user_by_email(name)
            } else {
                None
            }
        })
    }

    pub fn service_account_user(&self, client_id: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.service_account_client_id.as_deref() == Some(client_id))
    }

    pub fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }

    pub fn realm_role(&self, name: &str) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| r.client.is_none() && r.name == name)
    }

    pub fn client_role(&self, client_uuid: &str, name: &str) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| r.client.as_deref() == Some(client_uuid) && r.name == name)
    }

    pub fn client_role_by_client_id(&self, client_id: &str, name: &str) -> Option<&Role> {
        let client = self.client(client_id)?;
        self.client_role(&client.id, name)
    }

    pub fn default_role_id(&self) -> Option<String> {
        self.realm_role(&self.default_role).map(|r| r.id.clone())
    }

    /// Role ids reachable from `direct` through composites, in discovery order.
    pub fn expand_roles(&self, direct: &[String]) -> Vec<String> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut stack: Vec<String> = direct.iter().rev().cloned().collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(role) = self.role(&id) {
                out.push(id.clone());
                for c in role.composites.iter().rev() {
                    stack.push(c.clone());
                }
            }
        }
        out
    }

    pub fn effective_roles(&self, user: &User) -> Vec<&Role> {
        self.expand_roles(&user.roles)
            .iter()
            .filter_map(|id| self.role(id))
            .collect()
    }

    pub fn effective_realm_role_names(&self, user: &User) -> Vec<String> {
        self.effective_roles(user)
            .into_iter()
            .filter(|r| r.client.is_none())
            .map(|r| r.name.clone())
            .collect()
    }

    /// `clientId -> role names`, clients in realm order.
    pub fn effective_client_roles(&self, user: &User) -> Vec<(String, Vec<String>)> {
        let roles = self.effective_roles(user);
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for role in roles {
            let Some(cid) = &role.client else { continue };
            let Some(client) = self.client_by_uuid(cid) else {
                continue;
            };
            match out.iter_mut().find(|(c, _)| c == &client.client_id) {
                Some((_, names)) => names.push(role.name.clone()),
                None => out.push((client.client_id.clone(), vec![role.name.clone()])),
            }
        }
        out
    }

    pub fn issuer(&self, base_url: &str) -> String {
        let base = self.frontend_url.as_deref().unwrap_or(base_url);
        format!("{}/realms/{}", base.trim_end_matches('/'), self.name)
    }

    pub fn smtp_configured(&self) -> bool {
        self.smtp_server
            .as_ref()
            .and_then(|s| s.get("host"))
            .and_then(Value::as_str)
            .is_some_and(|h| !h.is_empty())
    }

    /// Protocol mappers applying to a client: its own plus those of the realm client scopes it uses.
    pub fn mappers_for(&self, client: &Client) -> Vec<Value> {
        let mut out = client.protocol_mappers.clone();
        let scopes = client
            .default_client_scopes
            .clone()
            .unwrap_or_else(|| self.default_default_client_scopes.clone());
        for scope in self
            .client_scopes
            .iter()
            .filter(|s| scopes.contains(&s.name))
        {
            out.extend(scope.protocol_mappers.iter().cloned());
        }
        out
    }

    pub fn role_brief(&self, role: &Role) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(role.id));
        m.insert("name".into(), json!(role.name));
        insert_some(&mut m, "description", &role.description);
        m.insert("composite".into(), json!(!role.composites.is_empty()));
        m.insert("clientRole".into(), json!(role.client.is_some()));
        m.insert(
            "containerId".into(),
            json!(role.client.clone().unwrap_or_else(|| self.id.clone())),
        );
        Value::Object(m)
    }

    pub fn role_full(&self, role: &Role) -> Value {
        let mut v = self.role_brief(role);
        if let Value::Object(m) = &mut v {
            m.insert("attributes".into(), Value::Object(role.attributes.clone()));
        }
        v
    }
}
