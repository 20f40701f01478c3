//! Token contents: access, ID, refresh and logout tokens with Keycloak 26's claim sets and
//! claim order, the token response, and validation of tokens presented back to us.

use serde_json::{Map, Value, json};

use crate::http::insert_some;
use crate::keys::{b64url, sha256};
use crate::model::{Client, Realm, User, now_secs};
use crate::state::{Ledger, UserSession, World};

/// Scopes whose names appear in the `scope` claim when granted by default.
const DEFAULT_TOKEN_SCOPES: &[&str] = &["email", "profile"];
/// Default scopes that are granted but not listed in the access token (`include.in.token.scope=false`).
const HIDDEN_SCOPES: &[&str] = &["acr", "web-origins", "roles", "basic"];
const OPTIONAL_SCOPES: &[&str] = &[
    "address",
    "phone",
    "offline_access",
    "microprofile-jwt",
    "organization",
];

/// Validates a requested `scope` and returns the scope string for the access token.
pub fn granted_scope(realm: &Realm, requested: &str) -> Result<String, String> {
    let mut out: Vec<String> = Vec::new();
    let mut invalid: Vec<&str> = Vec::new();
    let requested: Vec<&str> = requested.split_whitespace().collect();
    if requested.contains(&"openid") {
        out.push("openid".into());
    }
    for s in DEFAULT_TOKEN_SCOPES {
        out.push((*s).into());
    }
    for s in &requested {
        let known = *s == "openid"
            || DEFAULT_TOKEN_SCOPES.contains(s)
            || HIDDEN_SCOPES.contains(s)
            || OPTIONAL_SCOPES.contains(s)
            || *s == "service_account"
            || realm.client_scopes.iter().any(|c| c.name == *s);
        if !known {
            invalid.push(s);
        } else if !out.iter().any(|o| o == s)
            && !HIDDEN_SCOPES.contains(s)
            && *s != "service_account"
        {
            out.push((*s).into());
        }
    }
    if invalid.is_empty() {
        Ok(out.join(" "))
    } else {
        Err(format!("Invalid scopes: {}", requested.join(" ")))
    }
}

/// The refresh token lists every granted scope, including hidden defaults.
fn refresh_scope(access_scope: &str) -> String {
    let mut parts: Vec<&str> = access_scope.split_whitespace().collect();
    for s in HIDDEN_SCOPES {
        parts.push(s);
    }
    parts.join(" ")
}

/// Strips the hidden default scopes from a refresh token's scope list.
pub fn access_scope_from_refresh(scope: &str) -> String {
    scope
        .split_whitespace()
        .filter(|s| !HIDDEN_SCOPES.contains(s))
        .collect::<Vec<_>>()
        .join(" ")
}

pub struct Grant<'a> {
    pub realm: &'a Realm,
    pub client: &'a Client,
    pub user: &'a User,
    pub session: Option<&'a UserSession>,
    pub issuer: String,
    pub scope: String,
    pub nonce: Option<String>,
    /// Keycloak 26.2 token-id prefix, e.g. `onrtac`.
    pub jti_prefix: String,
    pub acr: String,
    pub remote_addr: String,
}

fn insert_profile_claims(
    m: &mut Map<String, Value>,
    user: &User,
    service_account: bool,
    remote: &str,
    client: &Client,
) {
    if service_account {
        m.insert("clientHost".into(), json!(remote));
    }
    m.insert("email_verified".into(), json!(user.email_verified));
    if let Some(name) = user.full_name() {
        m.insert("name".into(), json!(name));
    }
    m.insert("preferred_username".into(), json!(user.username));
    insert_some(m, "given_name", &user.first_name);
    insert_some(m, "family_name", &user.last_name);
    insert_some(m, "email", &user.email);
    if service_account {
        m.insert("clientAddress".into(), json!(remote));
        m.insert("client_id".into(), json!(client.client_id));
    }
}

/// Audiences from `oidc-audience-mapper`s, which run before Keycloak's "audience resolve".
fn mapper_audiences(realm: &Realm, client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for m in realm.mappers_for(client) {
        if m.get("protocolMapper").and_then(Value::as_str) != Some("oidc-audience-mapper") {
            continue;
        }
        let cfg = m.get("config").cloned().unwrap_or(Value::Null);
        let get = |k: &str| {
            cfg.get(k).and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_bool().map(|b| b.to_string()))
            })
        };
        if get("access.token.claim").as_deref() == Some("false") {
            continue;
        }
        for key in ["included.client.audience", "included.custom.audience"] {
            if let Some(a) = get(key).filter(|a| !a.is_empty()) {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

pub fn access_token_claims(g: &Grant, ledger: &mut Ledger) -> Value {
    let now = now_secs();
    let service_account = g.user.service_account_client_id.is_some() && g.session.is_none();
    let mut exp = now + g.realm.access_token_lifespan;
    if let Some(s) = g.session {
        exp = exp.min(s.started + g.realm.sso_session_max_lifespan);
    }
    let realm_roles = g.realm.effective_realm_role_names(g.user);
    let client_roles = g.realm.effective_client_roles(g.user);
    let mut aud = mapper_audiences(g.realm, g.client);
    for (cid, _) in &client_roles {
        if cid != &g.client.client_id && !aud.contains(cid) {
            aud.push(cid.clone());
        }
    }

    let mut m = Map::new();
    m.insert("exp".into(), json!(exp));
    m.insert("iat".into(), json!(now));
    if let Some(auth_time) = g.session.and_then(|s| s.auth_time) {
        m.insert("auth_time".into(), json!(auth_time));
    }
    m.insert("jti".into(), json!(ledger.new_jti(&g.jti_prefix)));
    m.insert("iss".into(), json!(g.issuer));
    match aud.len() {
        0 => {}
        1 => {
            m.insert("aud".into(), json!(aud[0]));
        }
        _ => {
            m.insert("aud".into(), json!(aud));
        }
    }
    m.insert("sub".into(), json!(g.user.id));
    m.insert("typ".into(), json!("Bearer"));
    m.insert("azp".into(), json!(g.client.client_id));
    if let Some(s) = g.session {
        m.insert("sid".into(), json!(s.id));
    }
    m.insert("acr".into(), json!(g.acr));
    let origins = g.client.allowed_origins();
    if !origins.is_empty() {
        m.insert("allowed-origins".into(), json!(origins));
    }
    if !realm_roles.is_empty() {
        m.insert("realm_access".into(), json!({ "roles": realm_roles }));
    }
    if !client_roles.is_empty() {
        let mut ra = Map::new();
        for (cid, roles) in client_roles {
            ra.insert(cid, json!({ "roles": roles }));
        }
        m.insert("resource_access".into(), Value::Object(ra));
    }
    m.insert("scope".into(), json!(g.scope));
    insert_profile_claims(&mut m, g.user, service_account, &g.remote_addr, g.client);
    Value::Object(m)
}

pub fn id_token_claims(g: &Grant, ledger: &mut Ledger, access_token: &str, exp: i64) -> Value {
    let now = now_secs();
    let digest = sha256(access_token.as_bytes());
    let mut m = Map::new();
    m.insert("exp".into(), json!(exp));
    m.insert("iat".into(), json!(now));
    if let Some(auth_time) = g.session.and_then(|s| s.auth_time) {
        m.insert("auth_time".into(), json!(auth_time));
    }
    m.insert("jti".into(), json!(ledger.new_jti(&g.jti_prefix)));
    m.insert("iss".into(), json!(g.issuer));
    m.insert("aud".into(), json!(g.client.client_id));
    m.insert("sub".into(), json!(g.user.id));
    m.insert("typ".into(), json!("ID"));
    m.insert("azp".into(), json!(g.client.client_id));
    insert_some(&mut m, "nonce", &g.nonce);
    if let Some(s) = g.session {
        m.insert("sid".into(), json!(s.id));
    }
    m.insert("at_hash".into(), json!(b64url(&digest[..16])));
    m.insert("acr".into(), json!(g.acr));
    insert_profile_claims(&mut m, g.user, false, "", g.client);
    Value::Object(m)
}

pub fn refresh_token_claims(g: &Grant, session: &UserSession, ledger: &mut Ledger) -> Value {
    let now = now_secs();
    let exp = (now + g.realm.sso_session_idle_timeout)
        .min(session.started + g.realm.sso_session_max_lifespan);
    json!({
        "exp": exp,
        "iat": now,
        "jti": ledger.new_jti(&g.jti_prefix),
        "iss": g.issuer,
        "aud": g.issuer,
        "sub": g.user.id,
        "typ": "Refresh",
        "azp": g.client.client_id,
        "sid": session.id,
        "scope": refresh_scope(&g.scope),
    })
}

/// Builds the token endpoint's JSON answer (AccessTokenResponse field order).
pub fn token_response(g: &Grant, ledger: &mut Ledger, with_refresh: bool) -> Value {
    let keys = &g.realm.keys;
    let access = access_token_claims(g, ledger);
    let exp = access.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let access_token = keys.sign_rs256("JWT", &access);
    let now = now_secs();
    let mut m = Map::new();
    m.insert("access_token".into(), json!(access_token));
    m.insert("expires_in".into(), json!(exp - now));
    match (with_refresh, g.session) {
        (true, Some(session)) => {
            let refresh = refresh_token_claims(g, session, ledger);
            let rexp = refresh.get("exp").and_then(Value::as_i64).unwrap_or(0);
            m.insert("refresh_expires_in".into(), json!(rexp - now));
            m.insert("refresh_token".into(), json!(keys.sign_hs512(&refresh)));
        }
        _ => {
            m.insert("refresh_expires_in".into(), json!(0));
        }
    }
    m.insert("token_type".into(), json!("Bearer"));
    if g.scope.split_whitespace().any(|s| s == "openid") {
        let id = id_token_claims(g, ledger, &access_token, exp);
        m.insert("id_token".into(), json!(keys.sign_rs256("JWT", &id)));
    }
    m.insert("not-before-policy".into(), json!(g.realm.not_before));
    if let Some(s) = g.session {
        m.insert("session_state".into(), json!(s.id));
    }
    m.insert("scope".into(), json!(g.scope));
    Value::Object(m)
}

/// OIDC back-channel logout token (header `typ` is `logout+jwt`).
pub fn logout_token(
    realm: &Realm,
    issuer: &str,
    client: &Client,
    session: &UserSession,
    ledger: &mut Ledger,
) -> String {
    let now = now_secs();
    let mut m = Map::new();
    m.insert("iat".into(), json!(now));
    m.insert("exp".into(), json!(now + 120));
    m.insert("jti".into(), json!(ledger.new_jti("onltna")));
    m.insert("iss".into(), json!(issuer));
    m.insert("aud".into(), json!(client.client_id));
    m.insert("sub".into(), json!(session.user_id));
    m.insert("typ".into(), json!("Logout"));
    if client.attr("backchannel.logout.session.required") != Some("false") {
        m.insert("sid".into(), json!(session.id));
    }
    let mut events = Map::new();
    events.insert(
        "http://schemas.openid.net/event/backchannel-logout".into(),
        json!({}),
    );
    if client.attr_true("backchannel.logout.revoke.offline.tokens") {
        events.insert("revoke_offline_access".into(), json!(true));
    }
    m.insert("events".into(), Value::Object(events));
    realm.keys.sign_rs256("logout+jwt", &Value::Object(m))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    Id,
}

/// Why a presented token was refused; the caller maps this to its endpoint's error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Invalid,
    Expired,
    Stale,
    SessionNotActive,
    UserGone,
}

/// Verifies signature, type, issuer, expiry, revocation and the backing session.
pub fn validate(
    world: &World,
    base_url: &str,
    realm_name: &str,
    token: &str,
    kind: TokenKind,
    check_exp: bool,
) -> Result<Value, Rejection> {
    let realm = world.realm(realm_name).ok_or(Rejection::Invalid)?;
    let verified = realm.keys.verify(token).ok_or(Rejection::Invalid)?;
    let claims = verified.claims;
    let typ = claims.get("typ").and_then(Value::as_str).unwrap_or("");
    let ok_type = match kind {
        TokenKind::Access => typ == "Bearer" && verified.alg == "RS256",
        TokenKind::Id => typ == "ID" && verified.alg == "RS256",
        TokenKind::Refresh => (typ == "Refresh" || typ == "Offline") && verified.alg == "HS512",
    };
    if !ok_type || claims.get("iss").and_then(Value::as_str) != Some(&realm.issuer(base_url)) {
        return Err(Rejection::Invalid);
    }
    if check_exp
        && claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_none_or(|exp| exp <= now_secs())
    {
        return Err(Rejection::Expired);
    }
    if kind != TokenKind::Id {
        if world.ledger.is_stale(realm, &claims) {
            return Err(Rejection::Stale);
        }
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        if !realm.user(sub).is_some_and(|u| u.enabled) {
            return Err(Rejection::UserGone);
        }
        if let Some(sid) = claims.get("sid").and_then(Value::as_str) {
            if !world.session_active(sid, realm_name) {
                return Err(Rejection::SessionNotActive);
            }
        } else if kind == TokenKind::Refresh {
            return Err(Rejection::Invalid);
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realm_import::import;

    #[test]
    fn scope_claim_lists_openid_then_defaults_and_rejects_unknown() {
        let realm = import(&json!({"realm": "s"})).expect("realm");
        assert_eq!(
            granted_scope(&realm, "openid").as_deref(),
            Ok("openid email profile")
        );
        assert_eq!(granted_scope(&realm, "").as_deref(), Ok("email profile"));
        assert!(granted_scope(&realm, "openid bogus").is_err());
    }
}
