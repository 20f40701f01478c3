//! Admin REST API for users: create, search, count, read, update, delete, passwords,
//! execute-actions email, logout, and realm/client role mappings.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::admin::{Admin, Caller, authenticate, forbidden, json_object, realm_in, realm_in_mut};
use crate::http::{admin_error, error_message, form_get, insert_some, json_response, parse_form};
use crate::model::{Realm, Role, User, now_secs};
use crate::passwords::PasswordHash;
use crate::state::{SentEmail, Shared};

const KNOWN_ACTIONS: &[&str] = &[
    "UPDATE_PASSWORD",
    "VERIFY_EMAIL",
    "UPDATE_PROFILE",
    "CONFIGURE_TOTP",
    "TERMS_AND_CONDITIONS",
    "UPDATE_EMAIL",
    "VERIFY_PROFILE",
    "webauthn-register",
    "webauthn-register-passwordless",
    "delete_account",
    "delete_credential",
    "update_user_locale",
    "CONFIGURE_RECOVERY_AUTHN_CODES",
];

fn user_not_found() -> Response {
    admin_error(StatusCode::NOT_FOUND, "User not found")
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// UserRepresentation in Keycloak's field order.
pub fn user_rep(realm: &Realm, u: &User, brief: bool, access: bool) -> Value {
    let _ = realm;
    let mut m = Map::new();
    m.insert("id".into(), json!(u.id));
    m.insert("username".into(), json!(u.username));
    insert_some(&mut m, "firstName", &u.first_name);
    insert_some(&mut m, "lastName", &u.last_name);
    insert_some(&mut m, "email", &u.email);
    m.insert("emailVerified".into(), json!(u.email_verified));
    if !brief && !u.attributes.is_empty() {
        m.insert("attributes".into(), json!(u.attributes));
    }
    m.insert("createdTimestamp".into(), json!(u.created_timestamp));
    m.insert("enabled".into(), json!(u.enabled));
    insert_some(
        &mut m,
        "serviceAccountClientId",
        &u.service_account_client_id,
    );
    // A brief representation stops here, as Keycloak's does.
    if !brief {
        m.insert("totp".into(), json!(false));
        m.insert("disableableCredentialTypes".into(), json!([]));
        m.insert("requiredActions".into(), json!(u.required_actions));
        m.insert("notBefore".into(), json!(u.not_before));
    }
    if access {
        m.insert(
            "access".into(),
            json!({"manageGroupMembership": true, "resetPassword": true, "view": true, "mapRoles": true, "impersonate": false, "manage": true}),
        );
    }
    Value::Object(m)
}

fn query_params(q: Option<String>) -> Vec<(String, String)> {
    parse_form(q.unwrap_or_default().as_bytes())
}

fn bool_param(params: &[(String, String)], key: &str) -> Option<bool> {
    form_get(params, key).and_then(|v| v.parse().ok())
}

fn matches(value: Option<&str>, wanted: &str, exact: bool) -> bool {
    let Some(value) = value else { return false };
    let (v, w) = (value.to_lowercase(), wanted.to_lowercase());
    if exact { v == w } else { v.contains(&w) }
}

/// `search`: `"x"` exact, `*` wildcards, otherwise prefix – on username, email, first and last name.
fn search_matches(u: &User, search: &str) -> bool {
    let s = search.trim().to_lowercase();
    if s.is_empty() || s == "*" {
        return true;
    }
    let fields = [
        Some(u.username.clone()),
        u.email.clone(),
        u.first_name.clone(),
        u.last_name.clone(),
    ];
    fields.iter().flatten().map(|f| f.to_lowercase()).any(|f| {
        if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
            f == s[1..s.len() - 1]
        } else if s.contains('*') {
            let parts: Vec<&str> = s.split('*').collect();
            let mut rest = f.as_str();
            for (i, p) in parts.iter().enumerate() {
                if p.is_empty() {
                    continue;
                }
                if i == 0 {
                    if !rest.starts_with(p) {
                        return false;
                    }
                    rest = &rest[p.len()..];
                } else if let Some(pos) = rest.find(p) {
                    rest = &rest[pos + p.len()..];
                } else {
                    return false;
                }
            }
            parts.last().is_none_or(|l| l.is_empty() || f.ends_with(l))
        } else {
            f.starts_with(&s)
        }
    })
}

fn filter_users<'a>(realm: &'a Realm, params: &[(String, String)]) -> Vec<&'a User> {
    let exact = bool_param(params, "exact").unwrap_or(false);
    let mut users: Vec<&User> = realm
        .users
        .iter()
        .filter(|u| u.service_account_client_id.is_none())
        .filter(|u| form_get(params, "search").is_none_or(|s| search_matches(u, &s)))
        .filter(|u| {
            form_get(params, "username").is_none_or(|s| matches(Some(&u.username), &s, exact))
        })
        .filter(|u| {
            form_get(params, "email").is_none_or(|s| matches(u.email.as_deref(), &s, exact))
        })
        .filter(|u| {
            form_get(params, "firstName")
                .is_none_or(|s| matches(u.first_name.as_deref(), &s, exact))
        })
        .filter(|u| {
            form_get(params, "lastName").is_none_or(|s| matches(u.last_name.as_deref(), &s, exact))
        })
        .filter(|u| bool_param(params, "enabled").is_none_or(|e| u.enabled == e))
        .filter(|u| bool_param(params, "emailVerified").is_none_or(|e| u.email_verified == e))
        .collect();
    users.sort_by(|a, b| a.username.cmp(&b.username));
    users
}

pub async fn list(Admin(shared, realm, headers): Admin<String>, RawQuery(q): RawQuery) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_query_users() {
        return forbidden();
    }
    let r = or_respond!(realm_in(&world, &realm));
    if !caller.can_view_users() {
        return json_response(StatusCode::OK, json!([]));
    }
    let params = query_params(q);
    let first = form_get(&params, "first")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let max = form_get(&params, "max")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100);
    let brief = bool_param(&params, "briefRepresentation").unwrap_or(false);
    let users: Vec<Value> = filter_users(r, &params)
        .into_iter()
        .skip(first)
        .take(max)
        .map(|u| {
            // Keycloak's search results carry only the `manage` access flag.
            let mut rep = user_rep(r, u, brief, false);
            rep["access"] = json!({"manage": true});
            rep
        })
        .collect();
    json_response(StatusCode::OK, Value::Array(users))
}

pub async fn count(
    Admin(shared, realm, headers): Admin<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_query_users() {
        return forbidden();
    }
    let r = or_respond!(realm_in(&world, &realm));
    json_response(
        StatusCode::OK,
        json!(filter_users(r, &query_params(q)).len()),
    )
}

fn username_invalid(name: &str) -> bool {
    name.chars()
        .any(|c| c.is_whitespace() || "<>&\"'$%!#?§,;:*~/\\|^=[]{}()".contains(c) || c.is_control())
}

/// Applies the credential entries of a UserRepresentation.
fn apply_credentials(user: &mut User, creds: &Value) -> Result<(), Response> {
    let Some(list) = creds.as_array() else {
        return Err(admin_error(StatusCode::BAD_REQUEST, "unknown_error"));
    };
    for c in list {
        if c.get("type").and_then(Value::as_str).unwrap_or("password") != "password" {
            continue;
        }
        let Some(value) = c.get("value").and_then(Value::as_str) else {
            continue;
        };
        user.password = Some(PasswordHash::create(value));
        if c.get("temporary").and_then(Value::as_bool).unwrap_or(false) {
            user.add_required_action("UPDATE_PASSWORD");
        } else {
            user.remove_required_action("UPDATE_PASSWORD");
        }
    }
    Ok(())
}

/// Keycloak's user-profile check of an email address, roughly: one `@`
/// with something on both sides and no spaces.
fn email_invalid(email: &str) -> bool {
    let mut parts = email.split('@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    parts.next().is_some()
        || local.is_empty()
        || domain.is_empty()
        || email.chars().any(char::is_whitespace)
}

/// The user-profile validation error Keycloak answers for a bad email.
fn invalid_email(email: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"field": "email", "errorMessage": "error-invalid-email", "params": ["email", email]}),
    )
}

/// The body's email, if any: well-formed and not another user's.
fn check_email(realm: &Realm, body: &Value, except: Option<&str>) -> Result<(), Response> {
    let email = body.get("email").and_then(Value::as_str).unwrap_or("");
    if email.is_empty() {
        return Ok(());
    }
    if email_invalid(email) {
        return Err(invalid_email(email));
    }
    if email_taken(realm, email, except) {
        return Err(error_message(
            StatusCode::CONFLICT,
            "User exists with same email",
        ));
    }
    Ok(())
}

fn email_taken(realm: &Realm, email: &str, except: Option<&str>) -> bool {
    !realm.duplicate_emails_allowed
        && realm.users.iter().any(|u| {
            Some(u.id.as_str()) != except
                && u.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
}

fn opt_string(body: &Value, key: &str) -> Result<Option<Option<String>>, Response> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(admin_error(StatusCode::BAD_REQUEST, "unknown_error")),
    }
}

fn opt_bool(body: &Value, key: &str) -> Result<Option<bool>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(admin_error(StatusCode::BAD_REQUEST, "unknown_error")),
    }
}

/// Fields shared by create and update; the caller validates username/email clashes.
fn apply_profile(user: &mut User, body: &Value) -> Result<(), Response> {
    if let Some(v) = opt_string(body, "firstName")? {
        user.first_name = v;
    }
    if let Some(v) = opt_string(body, "lastName")? {
        user.last_name = v;
    }
    if let Some(v) = opt_string(body, "email")? {
        user.email = v.filter(|e| !e.is_empty()).map(|e| e.to_lowercase());
    }
    if let Some(v) = opt_bool(body, "emailVerified")? {
        user.email_verified = v;
    }
    if let Some(v) = opt_bool(body, "enabled")? {
        user.enabled = v;
    }
    if let Some(attrs) = body.get("attributes").filter(|a| !a.is_null()) {
        user.attributes = crate::realm_import::parse_attributes_value(attrs, "")
            .map_err(|e| error_message(StatusCode::BAD_REQUEST, &e.to_string()))?;
    }
    if let Some(actions) = body.get("requiredActions").filter(|a| !a.is_null()) {
        let list: Option<Vec<String>> = actions
            .as_array()
            .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect());
        user.required_actions =
            list.ok_or_else(|| admin_error(StatusCode::BAD_REQUEST, "unknown_error"))?;
    }
    if let Some(creds) = body.get("credentials").filter(|c| !c.is_null()) {
        apply_credentials(user, creds)?;
    }
    Ok(())
}

pub async fn create(Admin(shared, realm, headers): Admin<String>, body: Bytes) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_manage_users() {
        return forbidden();
    }
    let body = or_respond!(json_object(&body));
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    let username = body
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if username.is_empty() {
        return error_message(StatusCode::BAD_REQUEST, "User name is missing");
    }
    if username_invalid(&username) {
        return error_message(StatusCode::BAD_REQUEST, "error-username-invalid-character");
    }
    if let Some(id) = body.get("id").and_then(Value::as_str) {
        if r.user(id).is_some() {
            return error_message(StatusCode::CONFLICT, "User with ID already exists");
        }
        if uuid::Uuid::parse_str(id).is_err() {
            return error_message(StatusCode::BAD_REQUEST, "Invalid user ID");
        }
    }
    // Keycloak 26 checks the email first: a full duplicate is reported as
    // "same email".
    or_respond!(check_email(r, &body, None));
    if r.user_by_username(&username).is_some() {
        return error_message(StatusCode::CONFLICT, "User exists with same username");
    }
    let mut user = User::new(&username);
    user.enabled = false;
    if let Some(id) = body.get("id").and_then(Value::as_str) {
        user.id = id.to_string();
    }
    if let Err(resp) = apply_profile(&mut user, &body) {
        return resp;
    }
    // Keycloak grants only the default role; `realmRoles`/`clientRoles` in the body are ignored.
    if let Some(id) = r.default_role_id() {
        user.roles.push(id);
    }
    let location = format!("{}/admin/realms/{realm}/users/{}", shared.base_url, user.id);
    r.users.push(user);
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The checks of a `/users/{id}` call after the token and the realm, in
/// Keycloak's order: the user (403 before 404, so that a caller who may not
/// query users learns nothing), the client of a client-role mapping, then
/// the permission.
fn admit_user(
    caller: &Caller,
    realm: &Realm,
    id: &str,
    client: Option<&str>,
    allowed: fn(&Caller) -> bool,
) -> Result<(), Response> {
    if realm.user(id).is_none() {
        return Err(if caller.can_query_users() {
            user_not_found()
        } else {
            forbidden()
        });
    }
    if client.is_some_and(|c| realm.client_by_uuid(c).is_none()) {
        return Err(admin_error(StatusCode::NOT_FOUND, "Client not found"));
    }
    if !allowed(caller) {
        return Err(forbidden());
    }
    Ok(())
}

pub async fn get(Admin(shared, (realm, id), headers): Admin<(String, String)>) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in(&world, &realm));
    or_respond!(admit_user(&caller, r, &id, None, Caller::can_view_users));
    match r.user(&id) {
        Some(u) => json_response(StatusCode::OK, user_rep(r, u, false, true)),
        None => user_not_found(),
    }
}

pub async fn update(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
    body: Bytes,
) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let body = or_respond!(json_object(&body));
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    or_respond!(admit_user(&caller, r, &id, None, Caller::can_manage_users));
    if let Some(name) = body.get("username").and_then(Value::as_str) {
        let current = r.user(&id).map(|u| u.username.clone()).unwrap_or_default();
        if name.to_lowercase() != current {
            if !r.edit_username_allowed {
                return error_message(StatusCode::BAD_REQUEST, "error-user-attribute-read-only");
            }
            if r.user_by_username(name).is_some() {
                return error_message(StatusCode::CONFLICT, "User exists with same username");
            }
        }
    }
    or_respond!(check_email(r, &body, Some(&id)));
    let edit_username = r.edit_username_allowed;
    let Some(user) = r.user_mut(&id) else {
        return user_not_found();
    };
    let mut updated = user.clone();
    if let Err(resp) = apply_profile(&mut updated, &body) {
        return resp;
    }
    if edit_username {
        if let Some(name) = body.get("username").and_then(Value::as_str) {
            updated.username = name.to_lowercase();
        }
    }
    *user = updated;
    no_content()
}

pub async fn delete(Admin(shared, (realm, id), headers): Admin<(String, String)>) -> Response {
    let notes = {
        let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
        let r = or_respond!(realm_in_mut(&mut world, &realm));
        or_respond!(admit_user(&caller, r, &id, None, Caller::can_manage_users));
        let sids = world.sessions_of(&realm, &id);
        let notes = crate::sessions::end_sessions(&mut world, &shared.frontend_base, &sids);
        if let Some(r) = world.realm_mut(&realm) {
            r.users.retain(|u| u.id != id);
        }
        notes
    };
    crate::sessions::deliver(&shared.http, notes).await;
    no_content()
}

pub async fn reset_password(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
    body: Bytes,
) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    or_respond!(admit_user(&caller, r, &id, None, Caller::can_manage_users));
    let cred: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(value) = cred.get("value").and_then(Value::as_str) else {
        return admin_error(StatusCode::BAD_REQUEST, "No password provided");
    };
    if value.is_empty() {
        return error_message(StatusCode::BAD_REQUEST, "Empty password not allowed");
    }
    let Some(user) = r.user_mut(&id) else {
        return user_not_found();
    };
    user.password = Some(PasswordHash::create(value));
    if cred
        .get("temporary")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        user.add_required_action("UPDATE_PASSWORD");
    } else {
        user.remove_required_action("UPDATE_PASSWORD");
    }
    no_content()
}

pub async fn execute_actions_email(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let params = query_params(q);
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in(&world, &realm));
    or_respond!(admit_user(&caller, r, &id, None, Caller::can_manage_users));
    let actions: Vec<String> = match serde_json::from_slice::<Vec<String>>(&body) {
        Ok(a) => a,
        Err(_) if body.is_empty() => Vec::new(),
        Err(_) => return admin_error(StatusCode::BAD_REQUEST, "unknown_error"),
    };
    let Some(user) = r.user(&id) else {
        return user_not_found();
    };
    let Some(email) = user.email.clone() else {
        return error_message(StatusCode::BAD_REQUEST, "User email missing");
    };
    if !user.enabled {
        return error_message(StatusCode::BAD_REQUEST, "User is disabled");
    }
    let client_id = form_get(&params, "client_id");
    let redirect_uri = form_get(&params, "redirect_uri");
    if redirect_uri.is_some() && client_id.is_none() {
        return error_message(StatusCode::BAD_REQUEST, "Client id missing");
    }
    if let Some(cid) = &client_id {
        let Some(client) = r.client(cid) else {
            return error_message(StatusCode::BAD_REQUEST, "Client doesn't exist");
        };
        if !client.enabled {
            return error_message(StatusCode::BAD_REQUEST, "Client is not enabled");
        }
        if let Some(uri) = &redirect_uri {
            if !client.redirect_uri_allowed(uri) {
                return error_message(StatusCode::BAD_REQUEST, "Invalid redirect uri.");
            }
        }
    }
    if actions.iter().any(|a| !KNOWN_ACTIONS.contains(&a.as_str())) {
        return error_message(StatusCode::BAD_REQUEST, "Provided invalid required actions");
    }
    if !r.smtp_configured() {
        return error_message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to send execute actions email",
        );
    }
    let lifespan = form_get(&params, "lifespan")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(r.action_token_admin_lifespan);
    let issuer = r.issuer(&shared.frontend_base);
    let now = now_secs();
    let client = client_id.clone().unwrap_or_else(|| "account".into());
    let mut claims = Map::new();
    claims.insert("exp".into(), json!(now + lifespan));
    claims.insert("iat".into(), json!(now));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    claims.insert("iss".into(), json!(issuer));
    claims.insert("aud".into(), json!(issuer));
    claims.insert("sub".into(), json!(id));
    claims.insert("typ".into(), json!("execute-actions"));
    claims.insert("azp".into(), json!(client));
    claims.insert("rqac".into(), json!(actions));
    if let Some(uri) = &redirect_uri {
        claims.insert("reduri".into(), json!(uri));
    }
    claims.insert("eml".into(), json!(email));
    let key = r.keys.sign_hs512(&Value::Object(claims));
    let link = format!(
        "{issuer}/login-actions/action-token?{}",
        crate::urls::query_string(&[("key", key), ("client_id", client)])
    );
    world.outbox.push(SentEmail {
        realm: realm.clone(),
        to: email,
        user_id: id,
        actions,
        link,
    });
    no_content()
}

pub async fn logout(Admin(shared, (realm, id), headers): Admin<(String, String)>) -> Response {
    let notes = {
        let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
        let r = or_respond!(realm_in(&world, &realm));
        or_respond!(admit_user(&caller, r, &id, None, Caller::can_manage_users));
        let sids = world.sessions_of(&realm, &id);
        crate::sessions::end_sessions(&mut world, &shared.frontend_base, &sids)
    };
    crate::sessions::deliver(&shared.http, notes).await;
    no_content()
}

/// `GET /users/{id}/sessions`: the user's sessions as Keycloak's
/// UserSessionRepresentation.
pub async fn sessions(Admin(shared, (realm, id), headers): Admin<(String, String)>) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in(&world, &realm));
    or_respond!(admit_user(&caller, r, &id, None, Caller::can_view_users));
    let username = r.user(&id).map(|u| u.username.clone()).unwrap_or_default();
    let list: Vec<Value> = world
        .sessions_of(&realm, &id)
        .iter()
        .filter_map(|sid| world.sessions.get(sid))
        .map(|s| {
            let clients: Map<String, Value> = s
                .clients
                .iter()
                .filter_map(|cid| r.client(cid).map(|c| (c.id.clone(), json!(cid))))
                .collect();
            json!({
                "id": s.id,
                "username": username,
                "userId": id,
                "ipAddress": s.remote_addr,
                "start": s.started * 1000,
                "lastAccess": s.last_refresh * 1000,
                "rememberMe": false,
                "clients": clients,
                "transientUser": false,
            })
        })
        .collect();
    json_response(StatusCode::OK, json!(list))
}

// ---- role mappings ----

/// `None` = realm roles; `Some(uuid)` = roles of that client.
type Container = Option<String>;

fn roles_in<'a>(realm: &'a Realm, container: &Container) -> impl Iterator<Item = &'a Role> {
    let container = container.clone();
    realm.roles.iter().filter(move |r| r.client == container)
}

fn mapping_view(realm: &Realm, user: &User, container: &Container, mode: &str) -> Value {
    let effective = realm.expand_roles(&user.roles);
    let reps: Vec<Value> = match mode {
        "composite" => roles_in(realm, container)
            .filter(|r| effective.contains(&r.id))
            .map(|r| realm.role_brief(r))
            .collect(),
        "available" => roles_in(realm, container)
            .filter(|r| !effective.contains(&r.id))
            .map(|r| realm.role_brief(r))
            .collect(),
        _ => user
            .roles
            .iter()
            .filter_map(|id| realm.role(id))
            .filter(|r| &r.client == container)
            .map(|r| realm.role_brief(r))
            .collect(),
    };
    Value::Array(reps)
}

pub async fn role_mappings(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in(&world, &realm));
    or_respond!(admit_user(&caller, r, &id, None, Caller::can_view_users));
    let Some(user) = r.user(&id) else {
        return user_not_found();
    };
    let mut out = Map::new();
    let realm_reps = mapping_view(r, user, &None, "direct");
    if realm_reps.as_array().is_some_and(|a| !a.is_empty()) {
        out.insert("realmMappings".into(), realm_reps);
    }
    let mut clients = Map::new();
    for client in &r.clients {
        let reps = mapping_view(r, user, &Some(client.id.clone()), "direct");
        if reps.as_array().is_some_and(|a| !a.is_empty()) {
            clients.insert(
                client.client_id.clone(),
                json!({"id": client.id, "client": client.client_id, "mappings": reps}),
            );
        }
    }
    if !clients.is_empty() {
        out.insert("clientMappings".into(), Value::Object(clients));
    }
    json_response(StatusCode::OK, Value::Object(out))
}

async fn mapping_get(
    shared: Arc<Shared>,
    realm: String,
    id: String,
    container: Option<String>,
    mode: &str,
    headers: HeaderMap,
) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in(&world, &realm));
    or_respond!(admit_user(
        &caller,
        r,
        &id,
        container.as_deref(),
        Caller::can_view_users
    ));
    let Some(user) = r.user(&id) else {
        return user_not_found();
    };
    json_response(StatusCode::OK, mapping_view(r, user, &container, mode))
}

async fn mapping_change(
    shared: Arc<Shared>,
    realm: String,
    id: String,
    container: Option<String>,
    add: bool,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    or_respond!(admit_user(
        &caller,
        r,
        &id,
        container.as_deref(),
        Caller::can_manage_users
    ));
    let reps: Option<Vec<Value>> = if body.is_empty() && !add {
        None
    } else {
        match serde_json::from_slice::<Vec<Value>>(&body) {
            Ok(v) if v.iter().all(Value::is_object) => Some(v),
            _ => return admin_error(StatusCode::BAD_REQUEST, "unknown_error"),
        }
    };
    let mut ids = Vec::new();
    match reps {
        Some(reps) => {
            for rep in reps {
                let name = rep.get("name").and_then(Value::as_str).unwrap_or("");
                let role = roles_in(r, &container).find(|role| role.name == name);
                let Some(role) = role
                    .filter(|role| rep.get("id").and_then(Value::as_str) == Some(role.id.as_str()))
                else {
                    return admin_error(StatusCode::NOT_FOUND, "Role not found");
                };
                let is_admin_role = r
                    .client_by_uuid(role.client.as_deref().unwrap_or(""))
                    .is_some_and(|c| c.client_id == "realm-management");
                if is_admin_role && !caller.has_any(&[role.name.as_str(), "realm-admin"]) {
                    return forbidden();
                }
                ids.push(role.id.clone());
            }
        }
        None => {
            let Some(user) = r.user(&id) else {
                return user_not_found();
            };
            ids = user
                .roles
                .iter()
                .filter(|rid| r.role(rid).is_some_and(|role| role.client == container))
                .cloned()
                .collect();
        }
    }
    let Some(user) = r.user_mut(&id) else {
        return user_not_found();
    };
    for rid in ids {
        if add {
            if !user.roles.contains(&rid) {
                user.roles.push(rid);
            }
        } else {
            user.roles.retain(|x| x != &rid);
        }
    }
    no_content()
}

/// The path of a role-mapping call: the realm, the user and, for client
/// roles, the client's id.
#[derive(serde::Deserialize)]
pub struct MappingPath {
    realm: String,
    id: String,
    client: Option<String>,
}

/// Which roles a mapping `GET` lists.
pub const DIRECT: u8 = 0;
pub const COMPOSITE: u8 = 1;
pub const AVAILABLE: u8 = 2;

/// `GET …/role-mappings/realm[/composite|/available]` and the same for a
/// client's roles.
pub async fn mappings<const MODE: u8>(
    State(s): State<Arc<Shared>>,
    Path(p): Path<MappingPath>,
    headers: HeaderMap,
) -> Response {
    let mode = match MODE {
        COMPOSITE => "composite",
        AVAILABLE => "available",
        _ => "direct",
    };
    mapping_get(s, p.realm, p.id, p.client, mode, headers).await
}

/// `POST` (`ADD`) or `DELETE` of realm or client role mappings.
pub async fn change_mappings<const ADD: bool>(
    State(s): State<Arc<Shared>>,
    Path(p): Path<MappingPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    mapping_change(s, p.realm, p.id, p.client, ADD, headers, body).await
}

/// `GET …/attack-detection/brute-force/users/{id}`: the brute-force
/// detector's view of one user.
pub async fn login_failures(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in(&world, &realm));
    or_respond!(admit_user(&caller, r, &id, None, Caller::can_view_users));
    let f = r.login_failures.get(&id).cloned().unwrap_or_default();
    let disabled = r.login_locked(&id);
    json_response(
        StatusCode::OK,
        json!({
            "failedLoginNotBefore": f.not_before,
            "numFailures": f.num_failures,
            "numTemporaryLockouts": 0,
            "disabled": disabled,
            "numSecondaryAuthFailures": 0,
            "lastIPFailure": if f.last_ip.is_empty() { "n/a".to_string() } else { f.last_ip },
            "lastFailure": f.last_failure_ms,
        }),
    )
}

/// `DELETE …/attack-detection/brute-force/users/{id}`: lifts a lock.
pub async fn clear_login_failures(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    or_respond!(admit_user(&caller, r, &id, None, Caller::can_manage_users));
    r.clear_login_failures(&id);
    no_content()
}
