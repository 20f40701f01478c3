//! Admin REST API for realms (create, read, delete, partial import), realm roles and clients.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::admin::{
    Admin, authenticate, forbidden, json_body, json_object, realm_in, realm_in_mut,
};
use crate::http::{admin_error, error_message, form_get, insert_some, json_response, parse_form};
use crate::model::{Client, Realm, Role, new_id};
use crate::state::Shared;

fn created(location: &str) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn realm_rep(r: &Realm, brief: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("realm".into(), json!(r.name));
    insert_some(&mut m, "displayName", &r.display_name);
    if brief {
        m.insert("enabled".into(), json!(r.enabled));
        return Value::Object(m);
    }
    // Keycloak's field order.
    let settings = [
        ("notBefore", json!(r.not_before)),
        ("accessTokenLifespan", json!(r.access_token_lifespan)),
        ("ssoSessionIdleTimeout", json!(r.sso_session_idle_timeout)),
        ("ssoSessionMaxLifespan", json!(r.sso_session_max_lifespan)),
        ("accessCodeLifespan", json!(r.access_code_lifespan)),
        (
            "accessCodeLifespanLogin",
            json!(r.access_code_lifespan_login),
        ),
        (
            "actionTokenGeneratedByAdminLifespan",
            json!(r.action_token_admin_lifespan),
        ),
        ("enabled", json!(r.enabled)),
        ("sslRequired", json!(r.ssl_required)),
        ("registrationAllowed", json!(r.registration_allowed)),
        ("loginWithEmailAllowed", json!(r.login_with_email_allowed)),
        ("duplicateEmailsAllowed", json!(r.duplicate_emails_allowed)),
        ("editUsernameAllowed", json!(r.edit_username_allowed)),
    ];
    for (key, value) in settings {
        m.insert(key.into(), value);
    }
    if let Some(role) = r.realm_role(&r.default_role) {
        m.insert("defaultRole".into(), r.role_brief(role));
    }
    insert_some(&mut m, "passwordPolicy", &r.password_policy);
    if let Some(smtp) = &r.smtp_server {
        let mut s = smtp.clone();
        s.remove("password");
        m.insert("smtpServer".into(), Value::Object(s));
    }
    Value::Object(m)
}

pub async fn list_realms(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, None));
    if !caller.superuser {
        return json_response(StatusCode::OK, json!([]));
    }
    json_response(
        StatusCode::OK,
        Value::Array(world.realms.iter().map(|r| realm_rep(r, true)).collect()),
    )
}

pub async fn create_realm(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (caller, mut world) = match authenticate(&shared, &headers, None) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !caller.superuser && !caller.roles.contains("create-realm") {
        return forbidden();
    }
    let name = body
        .get("realm")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if world.realm(&name).is_some() {
        return error_message(
            StatusCode::CONFLICT,
            "Conflict detected. See logs for details",
        );
    }
    let realm = match crate::realm_import::import(&body) {
        Ok(r) => r,
        Err(e) => return error_message(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    shared.note_frontend(&realm);
    world.realms.push(realm);
    created(&format!("{}/admin/realms/{name}", shared.base_url))
}

pub async fn get_realm(Admin(shared, realm, headers): Admin<String>) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let r = or_respond!(realm_in(&world, &realm));
    if !caller.can_view_realm() {
        // Keycloak returns a reduced representation to callers without view-realm.
        return json_response(StatusCode::OK, realm_rep(r, true));
    }
    json_response(StatusCode::OK, realm_rep(r, false))
}

/// `PUT /admin/realms/{realm}`: a partial representation; the fields the
/// stand-in models (display name, enabled, password policy) are updated,
/// the others ignored, as Keycloak ignores fields a body leaves out.
pub async fn update_realm(Admin(shared, realm, headers): Admin<String>, body: Bytes) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let body = or_respond!(json_object(&body));
    if !caller.can_manage_realm() {
        return forbidden();
    }
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    if let Some(policy) = body.get("passwordPolicy").and_then(Value::as_str) {
        r.password_policy = (!policy.is_empty()).then(|| policy.to_string());
    }
    if let Some(name) = body.get("displayName").and_then(Value::as_str) {
        r.display_name = Some(name.to_string());
    }
    if let Some(enabled) = body.get("enabled").and_then(Value::as_bool) {
        r.enabled = enabled;
    }
    StatusCode::NO_CONTENT.into_response()
}

pub async fn delete_realm(Admin(shared, realm, headers): Admin<String>) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_manage_realm() {
        return forbidden();
    }
    if realm == "master" {
        return error_message(StatusCode::BAD_REQUEST, "master realm can't be deleted");
    }
    world.realms.retain(|r| r.name != realm);
    world.sessions.retain(|_, s| s.realm != realm);
    StatusCode::NO_CONTENT.into_response()
}

// ---- roles ----

pub async fn list_roles(
    Admin(shared, realm, headers): Admin<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_list_roles() {
        return forbidden();
    }
    let r = or_respond!(realm_in(&world, &realm));
    role_list(
        r,
        r.roles.iter().filter(|role| role.client.is_none()),
        &parse_form(q.unwrap_or_default().as_bytes()),
    )
}

fn role_list<'a>(
    r: &Realm,
    roles: impl Iterator<Item = &'a Role>,
    params: &[(String, String)],
) -> Response {
    let brief = form_get(params, "briefRepresentation").is_none_or(|v| v != "false");
    let search = form_get(params, "search").map(|s| s.to_lowercase());
    let first = form_get(params, "first")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let max = form_get(params, "max")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let reps: Vec<Value> = roles
        .filter(|role| {
            search
                .as_ref()
                .is_none_or(|s| role.name.to_lowercase().contains(s))
        })
        .skip(first)
        .take(max)
        .map(|role| {
            if brief {
                r.role_brief(role)
            } else {
                r.role_full(role)
            }
        })
        .collect();
    json_response(StatusCode::OK, Value::Array(reps))
}

pub async fn get_role(Admin(shared, (realm, name), headers): Admin<(String, String)>) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_list_roles() {
        return forbidden();
    }
    let r = or_respond!(realm_in(&world, &realm));
    match r.realm_role(&name) {
        Some(role) => json_response(StatusCode::OK, r.role_full(role)),
        None => admin_error(StatusCode::NOT_FOUND, "Could not find role"),
    }
}

/// `PUT /roles/{name}`: Keycloak updates the role in place (its id, and so
/// every mapping to it, stays); name, description and attributes come from
/// the body.
pub async fn update_role(
    Admin(shared, (realm, name), headers): Admin<(String, String)>,
    body: Bytes,
) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let body = or_respond!(json_object(&body));
    if !caller.can_manage_realm() {
        return forbidden();
    }
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    let Some(role) = r
        .roles
        .iter_mut()
        .find(|role| role.client.is_none() && role.name == name)
    else {
        return admin_error(StatusCode::NOT_FOUND, "Could not find role");
    };
    let updated = match new_role(&body, None) {
        Ok(updated) => updated,
        Err(resp) => return resp,
    };
    role.name = updated.name;
    role.description = updated.description;
    if body.get("attributes").is_some() {
        role.attributes = updated.attributes;
    }
    StatusCode::NO_CONTENT.into_response()
}

fn new_role(body: &Value, client: Option<String>) -> Result<Role, Response> {
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Err(admin_error(StatusCode::BAD_REQUEST, "unknown_error"));
    };
    Ok(Role {
        id: new_id(),
        name: name.to_string(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        client,
        composites: Vec::new(),
        attributes: body
            .get("attributes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    })
}

pub async fn create_role(Admin(shared, realm, headers): Admin<String>, body: Bytes) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_manage_realm() {
        return forbidden();
    }
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let role = match new_role(&body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    if r.realm_role(&role.name).is_some() {
        return error_message(
            StatusCode::CONFLICT,
            &format!("Role with name {} already exists", role.name),
        );
    }
    let location = format!(
        "{}/admin/realms/{realm}/roles/{}",
        shared.base_url,
        crate::urls::encode(&role.name)
    );
    r.roles.push(role);
    created(&location)
}

// ---- clients ----

fn client_rep(c: &Client, with_secret: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(c.id));
    m.insert("clientId".into(), json!(c.client_id));
    insert_some(&mut m, "name", &c.name);
    insert_some(&mut m, "description", &c.description);
    insert_some(&mut m, "rootUrl", &c.root_url);
    insert_some(&mut m, "baseUrl", &c.base_url);
    m.insert("surrogateAuthRequired".into(), json!(false));
    m.insert("enabled".into(), json!(c.enabled));
    m.insert("alwaysDisplayInConsole".into(), json!(false));
    m.insert("clientAuthenticatorType".into(), json!("client-secret"));
    if with_secret {
        insert_some(&mut m, "secret", &c.secret);
    }
    m.insert("redirectUris".into(), json!(c.redirect_uris));
    m.insert("webOrigins".into(), json!(c.web_origins));
    m.insert("notBefore".into(), json!(0));
    m.insert("bearerOnly".into(), json!(c.bearer_only));
    m.insert("consentRequired".into(), json!(c.consent_required));
    m.insert("standardFlowEnabled".into(), json!(c.standard_flow));
    m.insert("implicitFlowEnabled".into(), json!(c.implicit_flow));
    m.insert(
        "directAccessGrantsEnabled".into(),
        json!(c.direct_access_grants),
    );
    m.insert("serviceAccountsEnabled".into(), json!(c.service_accounts));
    m.insert("publicClient".into(), json!(c.public_client));
    m.insert("frontchannelLogout".into(), json!(true));
    m.insert("protocol".into(), json!("openid-connect"));
    m.insert("attributes".into(), json!(c.attributes));
    m.insert("authenticationFlowBindingOverrides".into(), json!({}));
    m.insert("fullScopeAllowed".into(), json!(c.full_scope_allowed));
    m.insert("nodeReRegistrationTimeout".into(), json!(-1));
    if !c.protocol_mappers.is_empty() {
        m.insert("protocolMappers".into(), json!(c.protocol_mappers));
    }
    let default_scopes = c.default_client_scopes.clone().unwrap_or_else(|| {
        ["web-origins", "acr", "roles", "profile", "basic", "email"]
            .map(String::from)
            .to_vec()
    });
    m.insert("defaultClientScopes".into(), json!(default_scopes));
    m.insert(
        "optionalClientScopes".into(),
        json!([
            "address",
            "phone",
            "offline_access",
            "organization",
            "microprofile-jwt"
        ]),
    );
    m.insert(
        "access".into(),
        json!({"view": true, "configure": true, "manage": true}),
    );
    Value::Object(m)
}

pub async fn list_clients(
    Admin(shared, realm, headers): Admin<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_list_clients() {
        return forbidden();
    }
    let r = or_respond!(realm_in(&world, &realm));
    let params = parse_form(q.unwrap_or_default().as_bytes());
    let wanted = form_get(&params, "clientId");
    let search = form_get(&params, "search").is_some_and(|v| v == "true");
    let first = form_get(&params, "first")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let max = form_get(&params, "max")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100);
    let reps: Vec<Value> = r
        .clients
        .iter()
        .filter(|c| match &wanted {
            None => true,
            Some(w) if search => c.client_id.to_lowercase().contains(&w.to_lowercase()),
            Some(w) => &c.client_id == w,
        })
        .skip(first)
        .take(max)
        .map(|c| client_rep(c, caller.can_manage_clients()))
        .collect();
    json_response(StatusCode::OK, Value::Array(reps))
}

fn client_not_found() -> Response {
    admin_error(StatusCode::NOT_FOUND, "Could not find client")
}

pub async fn get_client(Admin(shared, (realm, id), headers): Admin<(String, String)>) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_list_clients() {
        return forbidden();
    }
    let r = or_respond!(realm_in(&world, &realm));
    match r.client_by_uuid(&id) {
        Some(c) => json_response(StatusCode::OK, client_rep(c, caller.can_manage_clients())),
        None => client_not_found(),
    }
}

/// `GET` (and `POST`, which makes a new one) `/clients/{id}/client-secret`:
/// Keycloak's CredentialRepresentation of a confidential client's secret.
pub async fn client_secret(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
    method: axum::http::Method,
) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_manage_clients() {
        return forbidden();
    }
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    let Some(client) = r.clients.iter_mut().find(|c| c.id == id) else {
        return client_not_found();
    };
    if method == axum::http::Method::POST {
        if client.public_client {
            return error_message(StatusCode::BAD_REQUEST, "client is public");
        }
        client.secret = Some(crate::state::random_id());
    }
    json_response(
        StatusCode::OK,
        json!({"type": "secret", "value": client.secret.clone().unwrap_or_default()}),
    )
}

/// `PUT /clients/{id}`: the client is replaced by the body's version in
/// place — same internal id, so its roles, their mappings and its
/// service-account user stay. Like Keycloak, a body without a secret keeps
/// the current one.
pub async fn update_client(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
    body: Bytes,
) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    let body = or_respond!(json_object(&body));
    if !caller.can_manage_clients() {
        return forbidden();
    }
    let r = or_respond!(realm_in_mut(&mut world, &realm));
    let Some(position) = r.clients.iter().position(|c| c.id == id) else {
        return client_not_found();
    };
    let mut updated = match crate::realm_import::parse_client_value(&body, "client") {
        Ok(c) => c,
        Err(e) => return error_message(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let current = &r.clients[position];
    if updated.client_id != current.client_id && r.client(&updated.client_id).is_some() {
        return error_message(
            StatusCode::CONFLICT,
            &format!("Client {} already exists", updated.client_id),
        );
    }
    updated.id = current.id.clone();
    if updated.secret.is_none() {
        updated.secret = current.secret.clone();
    }
    if body.get("protocolMappers").is_none() {
        updated.protocol_mappers = current.protocol_mappers.clone();
    }
    if body.get("defaultClientScopes").is_none() {
        updated.default_client_scopes = current.default_client_scopes.clone();
    }
    updated.authorization_services |= current.authorization_services;
    r.clients[position] = updated;
    StatusCode::NO_CONTENT.into_response()
}

pub async fn list_client_roles(
    Admin(shared, (realm, id), headers): Admin<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_list_clients() && !caller.can_list_roles() && !caller.can_view_users() {
        return forbidden();
    }
    let r = or_respond!(realm_in(&world, &realm));
    if r.client_by_uuid(&id).is_none() {
        return client_not_found();
    }
    role_list(
        r,
        r.roles
            .iter()
            .filter(|role| role.client.as_deref() == Some(id.as_str())),
        &parse_form(q.unwrap_or_default().as_bytes()),
    )
}

pub async fn get_client_role(
    Admin(shared, (realm, id, name), headers): Admin<(String, String, String)>,
) -> Response {
    let (caller, world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_list_clients() && !caller.can_list_roles() && !caller.can_view_users() {
        return forbidden();
    }
    let r = or_respond!(realm_in(&world, &realm));
    if r.client_by_uuid(&id).is_none() {
        return client_not_found();
    }
    match r.client_role(&id, &name) {
        Some(role) => json_response(StatusCode::OK, r.role_full(role)),
        None => admin_error(StatusCode::NOT_FOUND, "Could not find role"),
    }
}

// ---- partial import ----

#[derive(PartialEq, Clone, Copy)]
enum Policy {
    Fail,
    Skip,
    Overwrite,
}

pub async fn partial_import(Admin(shared, realm, headers): Admin<String>, body: Bytes) -> Response {
    let (caller, mut world) = or_respond!(authenticate(&shared, &headers, Some(&realm)));
    if !caller.can_manage_realm() || !caller.can_manage_users() {
        return forbidden();
    }
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let policy = match body
        .get("ifResourceExists")
        .and_then(Value::as_str)
        .unwrap_or("FAIL")
    {
        "SKIP" => Policy::Skip,
        "OVERWRITE" => Policy::Overwrite,
        "FAIL" => Policy::Fail,
        // Keycloak fails to read the body into its enum: a 500.
        _ => {
            return crate::http::oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unknown_error",
                "Cannot parse the JSON",
            );
        }
    };
    let Some(original) = world.realm(&realm).cloned() else {
        return crate::admin::realm_not_found();
    };
    match apply_partial_import(original, &body, policy) {
        Ok((updated, summary)) => {
            if let Some(slot) = world.realm_mut(&realm) {
                *slot = updated;
            }
            json_response(StatusCode::OK, summary)
        }
        Err(resp) => resp,
    }
}

struct Tally {
    added: usize,
    skipped: usize,
    overwritten: usize,
    results: Vec<Value>,
}

impl Tally {
    fn record(&mut self, action: &str, kind: &str, name: &str, id: &str) {
        match action {
            "ADDED" => self.added += 1,
            "SKIPPED" => self.skipped += 1,
            _ => self.overwritten += 1,
        }
        self.results
            .push(json!({"action": action, "resourceType": kind, "resourceName": name, "id": id}));
    }
}

/// Works on a copy of the realm so a FAIL conflict leaves nothing half-imported.
fn apply_partial_import(
    mut r: Realm,
    body: &Value,
    policy: Policy,
) -> Result<(Realm, Value), Response> {
    let mut tally = Tally {
        added: 0,
        skipped: 0,
        overwritten: 0,
        results: Vec::new(),
    };
    // Keycloak's own wording, which differs per resource type.
    let conflict = |message: String| error_message(StatusCode::CONFLICT, &message);
    let bad = |e: anyhow::Error| error_message(StatusCode::BAD_REQUEST, &e.to_string());

    if let Some(clients) = body.get("clients").and_then(Value::as_array) {
        for (i, c) in clients.iter().enumerate() {
            let client = crate::realm_import::parse_client_value(c, &format!("clients[{i}]"))
                .map_err(bad)?;
            let existing = r
                .clients
                .iter()
                .position(|x| x.client_id == client.client_id);
            match (existing, policy) {
                (Some(_), Policy::Fail) => {
                    return Err(conflict(format!(
                        "Client id '{}' already exists",
                        client.client_id
                    )));
                }
                (Some(pos), Policy::Skip) => {
                    let id = r.clients[pos].id.clone();
                    tally.record("SKIPPED", "CLIENT", &client.client_id, &id);
                }
                (Some(pos), Policy::Overwrite) => {
                    let mut client = client;
                    client.id = r.clients[pos].id.clone();
                    tally.record("OVERWRITTEN", "CLIENT", &client.client_id, &client.id);
                    r.clients[pos] = client;
                }
                (None, _) => {
                    tally.record("ADDED", "CLIENT", &client.client_id, &client.id);
                    r.clients.push(client);
                }
            }
        }
    }
    if let Some(roles) = body.get("roles") {
        // (container, resource type, client id for client roles, roles)
        type RoleGroup<'a> = (Option<String>, String, Option<String>, &'a Vec<Value>);
        let mut groups: Vec<RoleGroup> = Vec::new();
        if let Some(list) = roles.get("realm").and_then(Value::as_array) {
            groups.push((None, "REALM_ROLE".into(), None, list));
        }
        if let Some(map) = roles.get("client").and_then(Value::as_object) {
            for (cid, list) in map {
                let Some(client) = r.client(cid) else {
                    return Err(error_message(
                        StatusCode::BAD_REQUEST,
                        &format!("roles.client.{cid}: client not found"),
                    ));
                };
                if let Some(list) = list.as_array() {
                    groups.push((
                        Some(client.id.clone()),
                        "CLIENT_ROLE".into(),
                        Some(cid.clone()),
                        list,
                    ));
                }
            }
        }
        for (container, kind, client_id, list) in groups {
            for rep in list {
                let role = new_role(rep, container.clone())?;
                // Keycloak names client roles `client-->role` in its results.
                let shown = match &client_id {
                    Some(cid) => format!("{cid}-->{}", role.name),
                    None => role.name.clone(),
                };
                let existing = r
                    .roles
                    .iter()
                    .position(|x| x.client == container && x.name == role.name);
                match (existing, policy) {
                    (Some(_), Policy::Fail) => {
                        return Err(conflict(match &client_id {
                            Some(cid) => format!(
                                "Client role '{}' for client '{cid}' already exists.",
                                role.name
                            ),
                            None => format!("Realm role '{}' already exists.", role.name),
                        }));
                    }
                    (Some(pos), Policy::Skip) => {
                        let id = r.roles[pos].id.clone();
                        tally.record("SKIPPED", &kind, &shown, &id);
                    }
                    (Some(pos), Policy::Overwrite) => {
                        r.roles[pos].description = role.description.clone();
                        r.roles[pos].attributes = role.attributes.clone();
                        let id = r.roles[pos].id.clone();
                        tally.record("OVERWRITTEN", &kind, &shown, &id);
                    }
                    (None, _) => {
                        tally.record("ADDED", &kind, &shown, &role.id);
                        r.roles.push(role);
                    }
                }
            }
        }
    }
    crate::realm_import::ensure_service_account_users(&mut r);
    if let Some(users) = body.get("users").and_then(Value::as_array) {
        for (i, u) in users.iter().enumerate() {
            let mut user =
                crate::realm_import::parse_user_value(&r, u, &format!("users[{i}]"), true)
                    .map_err(bad)?;
            let existing = r.users.iter().position(|x| x.username == user.username);
            match (existing, policy) {
                (Some(_), Policy::Fail) => {
                    return Err(conflict(format!(
                        "User with user name {} already exists.",
                        user.username
                    )));
                }
                (Some(pos), Policy::Skip) => {
                    let id = r.users[pos].id.clone();
                    tally.record("SKIPPED", "USER", &user.username, &id);
                }
                (Some(pos), Policy::Overwrite) => {
                    user.id = r.users[pos].id.clone();
                    tally.record("OVERWRITTEN", "USER", &user.username, &user.id);
                    r.users[pos] = user;
                }
                (None, _) => {
                    if user.email.as_deref().is_some_and(|e| {
                        !r.duplicate_emails_allowed && r.user_by_email(e).is_some()
                    }) {
                        return Err(error_message(
                            StatusCode::CONFLICT,
                            "User exists with same email",
                        ));
                    }
                    tally.record("ADDED", "USER", &user.username, &user.id);
                    r.users.push(user);
                }
            }
        }
    }
    let summary = json!({
        "overwritten": tally.overwritten,
        "added": tally.added,
        "skipped": tally.skipped,
        "results": tally.results,
    });
    Ok((r, summary))
}
