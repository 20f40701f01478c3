//! Loading a RealmRepresentation (the JSON `kc.sh import` reads) into the realm model,
//! including the clients, roles and service-account users Keycloak creates implicitly.
//! Unknown fields are ignored; fields of the wrong type fail with their JSON path.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use serde_json::{Map, Value, json};

use crate::keys::RealmKeys;
use crate::model::{BruteForce, Client, ClientScope, Realm, Role, User, new_id};
use crate::passwords::PasswordHash;

/// Realm-management client roles and their composites (Keycloak 26 defaults).
const REALM_MANAGEMENT_ROLES: &[(&str, &[&str])] = &[
    ("view-events", &[]),
    ("query-realms", &[]),
    ("query-clients", &[]),
    ("query-users", &[]),
    ("manage-authorization", &[]),
    ("query-groups", &[]),
    ("view-users", &["query-groups", "query-users"]),
    ("create-client", &[]),
    ("view-clients", &["query-clients"]),
    ("manage-realm", &[]),
    ("manage-events", &[]),
    ("view-identity-providers", &[]),
    ("manage-users", &[]),
    ("impersonation", &[]),
    ("view-realm", &[]),
    ("manage-clients", &[]),
    ("view-authorization", &[]),
    ("manage-identity-providers", &[]),
];

const ACCOUNT_ROLES: &[(&str, &[&str])] = &[
    ("view-profile", &[]),
    ("manage-account-links", &[]),
    ("manage-account", &["manage-account-links"]),
    ("view-applications", &[]),
    ("view-consent", &[]),
    ("manage-consent", &["view-consent"]),
    ("view-groups", &[]),
    ("delete-account", &[]),
];

/// Typed access to one JSON object, reporting errors with the object's path.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

fn type_error(path: &str, key: &str, expected: &str) -> anyhow::Error {
    if path.is_empty() {
        anyhow!("{key}: expected {expected}")
    } else {
        anyhow!("{path}.{key}: expected {expected}")
    }
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, path: String) -> anyhow::Result<Obj<'a>> {
        match value {
            Value::Object(map) => Ok(Obj { map, path }),
            _ => bail!(
                "{}: expected object",
                if path.is_empty() { "realm" } else { &path }
            ),
        }
    }

    fn sub(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn str(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(type_error(&self.path, key, "string")),
        }
    }

    fn bool(&self, key: &str) -> anyhow::Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(_) => Err(type_error(&self.path, key, "boolean")),
        }
    }

    fn int(&self, key: &str) -> anyhow::Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| type_error(&self.path, key, "integer")),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| type_error(&self.path, key, "integer")),
            Some(_) => Err(type_error(&self.path, key, "integer")),
        }
    }

    fn strings(&self, key: &str) -> anyhow::Result<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| type_error(&self.path, key, "array of strings")),
            Some(_) => Err(type_error(&self.path, key, "array of strings")),
        }
    }

    fn array(&self, key: &str) -> anyhow::Result<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(type_error(&self.path, key, "array")),
        }
    }

    fn object(&self, key: &str) -> anyhow::Result<Option<Obj<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(Obj::new(v, self.sub(key))?)),
            Some(_) => Err(type_error(&self.path, key, "object")),
        }
    }

    /// An object whose values are stringly typed (client attributes, SMTP settings).
    fn string_map(&self, key: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        if let Some(obj) = self.object(key)? {
            for (k, v) in obj.map {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(_) | Value::Number(_) => v.to_string(),
                    Value::Null => continue,
                    _ => return Err(type_error(&obj.path, k, "string")),
                };
                out.insert(k.clone(), s);
            }
        }
        Ok(out)
    }
}

/// Parses a realm file from disk.
pub fn load_file(path: &std::path::Path) -> anyhow::Result<Realm> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("reading realm file {}: {e}", path.display()))?;
    let text = placeholders(&text, |name| std::env::var(name).ok());
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("realm file {}: invalid JSON: {e}", path.display()))?;
    import(&value).map_err(|e| anyhow!("realm file {}: {e}", path.display()))
}

/// A realm given as JSON with its placeholders resolved from the
/// environment, as if it had been read from a file.
pub fn resolve_placeholders(realm: &Value) -> anyhow::Result<Value> {
    let text = placeholders(&realm.to_string(), |name| std::env::var(name).ok());
    Ok(serde_json::from_str(&text)?)
}

/// `${NAME}` / `${NAME:default}` as `kc.sh --import-realm` resolves them in a
/// realm file (Keycloak's `StringPropertyReplacer`): the variable, else the
/// text after the first colon, else the reference unchanged.
fn placeholders(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((head, tail)) = rest.split_once("${") {
        out.push_str(head);
        let Some((inner, after)) = tail.split_once('}') else {
            out.push_str("${");
            rest = tail;
            break;
        };
        let (name, default) = match inner.split_once(':') {
            Some((n, d)) if !n.is_empty() => (n, Some(d.to_string())),
            _ => (inner, None),
        };
        match lookup(name).or(default) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&format!("${{{inner}}}")),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Builds a realm from a RealmRepresentation.
pub fn import(value: &Value) -> anyhow::Result<Realm> {
    let root = Obj::new(value, String::new())?;
    let name = root
        .str("realm")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("realm: missing required field"))?;
    let default_role = match root.object("defaultRole")? {
        Some(o) => o
            .str("name")?
            .unwrap_or_else(|| format!("default-roles-{}", name.to_lowercase())),
        None => format!("default-roles-{}", name.to_lowercase()),
    };
    let smtp = root.string_map("smtpServer")?;
    let mut realm = Realm {
        id: root.str("id")?.unwrap_or_else(|| name.clone()),
        display_name: root.str("displayName")?,
        enabled: root.bool("enabled")?.unwrap_or(false),
        ssl_required: root
            .str("sslRequired")?
            .unwrap_or_else(|| "external".into()),
        access_token_lifespan: root.int("accessTokenLifespan")?.unwrap_or(300),
        sso_session_idle_timeout: root.int("ssoSessionIdleTimeout")?.unwrap_or(1800),
        sso_session_max_lifespan: root.int("ssoSessionMaxLifespan")?.unwrap_or(36000),
        access_code_lifespan: root.int("accessCodeLifespan")?.unwrap_or(60),
        access_code_lifespan_login: root.int("accessCodeLifespanLogin")?.unwrap_or(1800),
        action_token_admin_lifespan: root
            .int("actionTokenGeneratedByAdminLifespan")?
            .unwrap_or(43200),
        login_with_email_allowed: root.bool("loginWithEmailAllowed")?.unwrap_or(true),
        duplicate_emails_allowed: root.bool("duplicateEmailsAllowed")?.unwrap_or(false),
        edit_username_allowed: root.bool("editUsernameAllowed")?.unwrap_or(false),
        registration_allowed: root.bool("registrationAllowed")?.unwrap_or(false),
        not_before: root.int("notBefore")?.unwrap_or(0),
        frontend_url: root
            .string_map("attributes")?
            .remove("frontendUrl")
            .filter(|u| !u.is_empty()),
        brute_force: match root.bool("bruteForceProtected")?.unwrap_or(false) {
            true => Some(BruteForce {
                failure_factor: root.int("failureFactor")?.unwrap_or(30),
                wait_increment_seconds: root.int("waitIncrementSeconds")?.unwrap_or(60),
                max_failure_wait_seconds: root.int("maxFailureWaitSeconds")?.unwrap_or(900),
                quick_login_check_ms: root.int("quickLoginCheckMilliSeconds")?.unwrap_or(1000),
                minimum_quick_login_wait_seconds: root
                    .int("minimumQuickLoginWaitSeconds")?
                    .unwrap_or(60),
                max_delta_time_seconds: root.int("maxDeltaTimeSeconds")?.unwrap_or(43200),
            }),
            false => None,
        },
        login_failures: Default::default(),
        password_policy: root.str("passwordPolicy")?.filter(|p| !p.is_empty()),
        revoked_before_seq: 0,
        smtp_server: (!smtp.is_empty()).then(|| {
            smtp.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        }),
        default_role,
        roles: Vec::new(),
        clients: Vec::new(),
        client_scopes: Vec::new(),
        default_default_client_scopes: root.strings("defaultDefaultClientScopes")?.unwrap_or_else(
            || {
                ["web-origins", "acr", "profile", "roles", "basic", "email"]
                    .map(String::from)
                    .to_vec()
            },
        ),
        users: Vec::new(),
        keys: RealmKeys::generate(&name)?,
        name,
    };

    if let Some(scopes) = root.array("clientScopes")? {
        for (i, s) in scopes.iter().enumerate() {
            let o = Obj::new(s, format!("clientScopes[{i}]"))?;
            realm.client_scopes.push(ClientScope {
                name: o.str("name")?.unwrap_or_default(),
                protocol_mappers: o.array("protocolMappers")?.cloned().unwrap_or_default(),
            });
        }
    }

    import_clients(&mut realm, &root)?;
    ensure_builtin_clients(&mut realm);
    import_roles(&mut realm, &root)?;
    ensure_default_role(&mut realm, &root)?;
    import_users(&mut realm, &root)?;
    ensure_service_account_users(&mut realm);
    Ok(realm)
}

fn import_clients(realm: &mut Realm, root: &Obj) -> anyhow::Result<()> {
    let Some(clients) = root.array("clients")? else {
        return Ok(());
    };
    for (i, c) in clients.iter().enumerate() {
        let client = parse_client(&Obj::new(c, format!("clients[{i}]"))?)?;
        if realm.client(&client.client_id).is_some() {
            bail!(
                "clients[{i}].clientId: duplicate client '{}'",
                client.client_id
            );
        }
        realm.clients.push(client);
    }
    Ok(())
}

pub(crate) fn parse_client_value(value: &Value, path: &str) -> anyhow::Result<Client> {
    parse_client(&Obj::new(value, path.to_string())?)
}

fn parse_client(o: &Obj) -> anyhow::Result<Client> {
    let client_id = o
        .str("clientId")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| anyhow!("{}: missing required field", o.sub("clientId")))?;
    let mut c = Client::new(&client_id);
    if let Some(id) = o.str("id")? {
        c.id = id;
    }
    c.name = o.str("name")?;
    c.description = o.str("description")?;
    c.secret = o.str("secret")?;
    c.enabled = o.bool("enabled")?.unwrap_or(true);
    c.public_client = o.bool("publicClient")?.unwrap_or(false);
    c.bearer_only = o.bool("bearerOnly")?.unwrap_or(false);
    c.consent_required = o.bool("consentRequired")?.unwrap_or(false);
    c.standard_flow = o.bool("standardFlowEnabled")?.unwrap_or(true);
    c.implicit_flow = o.bool("implicitFlowEnabled")?.unwrap_or(false);
    c.direct_access_grants = o.bool("directAccessGrantsEnabled")?.unwrap_or(false);
    c.service_accounts = o.bool("serviceAccountsEnabled")?.unwrap_or(false);
    c.full_scope_allowed = o.bool("fullScopeAllowed")?.unwrap_or(true);
    c.authorization_services = o.bool("authorizationServicesEnabled")?.unwrap_or(false);
    c.root_url = o
        .str("rootUrl")?
        .filter(|u| !u.is_empty() && !u.starts_with("${"));
    c.base_url = o.str("baseUrl")?;
    c.redirect_uris = o.strings("redirectUris")?.unwrap_or_default();
    c.web_origins = o.strings("webOrigins")?.unwrap_or_default();
    c.attributes = o.string_map("attributes")?;
    if let Some(mappers) = o.array("protocolMappers")? {
        for (i, m) in mappers.iter().enumerate() {
            let mo = Obj::new(m, format!("{}[{i}]", o.sub("protocolMappers")))?;
            mo.str("protocolMapper")?;
            mo.string_map("config")?;
        }
        // Keycloak gives every mapper an id and fills the audience mapper's
        // userinfo flag when the file leaves it out.
        c.protocol_mappers = mappers
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if m.get("id").is_none() {
                    m["id"] = serde_json::json!(crate::model::new_id());
                }
                if m.get("protocolMapper").and_then(serde_json::Value::as_str)
                    == Some("oidc-audience-mapper")
                    && m["config"].get("userinfo.token.claim").is_none()
                    && m["config"].is_object()
                {
                    m["config"]["userinfo.token.claim"] = serde_json::json!("false");
                }
                m
            })
            .collect();
    }
    c.default_client_scopes = o.strings("defaultClientScopes")?;
    Ok(c)
}

fn builtin_client(realm: &str, client_id: &str) -> Client {
    let mut c = Client::new(client_id);
    let account_base = format!("/realms/{realm}/account/");
    match client_id {
        "account" | "account-console" => {
            c.public_client = true;
            c.base_url = Some(account_base.clone());
            c.redirect_uris = vec![format!("/realms/{realm}/account/*")];
            c.attributes
                .insert("post.logout.redirect.uris".into(), "+".into());
            if client_id == "account-console" {
                c.attributes
                    .insert("pkce.code.challenge.method".into(), "S256".into());
            }
        }
        "admin-cli" => {
            c.public_client = true;
            c.standard_flow = false;
            c.direct_access_grants = true;
        }
        "broker" | "realm-management" => {
            c.bearer_only = true;
            c.standard_flow = false;
        }
        "security-admin-console" => {
            c.public_client = true;
            c.redirect_uris = vec![format!("/admin/{realm}/console/*")];
            c.web_origins = vec!["+".into()];
            c.attributes
                .insert("pkce.code.challenge.method".into(), "S256".into());
        }
        _ => {}
    }
    c
}

fn ensure_builtin_clients(realm: &mut Realm) {
    for id in [
        "account",
        "account-console",
        "admin-cli",
        "broker",
        "realm-management",
        "security-admin-console",
    ] {
        if realm.client(id).is_none() {
            let client = builtin_client(&realm.name, id);
            realm.clients.push(client);
        }
    }
}

fn add_role(
    realm: &mut Realm,
    client: Option<&str>,
    name: &str,
    description: Option<String>,
) -> String {
    let existing = realm
        .roles
        .iter()
        .find(|r| r.client.as_deref() == client && r.name == name);
    if let Some(r) = existing {
        return r.id.clone();
    }
    let id = new_id();
    realm.roles.push(Role {
        id: id.clone(),
        name: name.to_string(),
        description,
        client: client.map(str::to_string),
        composites: Vec::new(),
        attributes: Map::new(),
    });
    id
}

fn import_roles(realm: &mut Realm, root: &Obj) -> anyhow::Result<()> {
    // (role id, composites JSON, path) resolved once every role exists.
    let mut pending: Vec<(String, Value, String)> = Vec::new();
    if let Some(roles) = root.object("roles")? {
        if let Some(list) = roles.array("realm")? {
            for (i, r) in list.iter().enumerate() {
                let path = format!("roles.realm[{i}]");
                let id = import_role(realm, None, r, &path, &mut pending)?;
                let _ = id;
            }
        }
        if let Some(clients) = roles.object("client")? {
            for (client_id, list) in clients.map {
                let Some(client_uuid) = realm.client(client_id).map(|c| c.id.clone()) else {
                    bail!(
                        "roles.client.{client_id}: client '{client_id}' is not defined in clients"
                    );
                };
                let Value::Array(list) = list else {
                    bail!("roles.client.{client_id}: expected array");
                };
                for (i, r) in list.iter().enumerate() {
                    let path = format!("roles.client.{client_id}[{i}]");
                    import_role(realm, Some(&client_uuid), r, &path, &mut pending)?;
                }
            }
        }
    }
    add_builtin_roles(realm);
    for (role_id, composites, path) in pending {
        let ids = resolve_composites(realm, &composites, &path)?;
        if let Some(role) = realm.roles.iter_mut().find(|r| r.id == role_id) {
            for id in ids {
                if !role.composites.contains(&id) {
                    role.composites.push(id);
                }
            }
        }
    }
    Ok(())
}

fn import_role(
    realm: &mut Realm,
    client: Option<&str>,
    value: &Value,
    path: &str,
    pending: &mut Vec<(String, Value, String)>,
) -> anyhow::Result<String> {
    let o = Obj::new(value, path.to_string())?;
    let name = o
        .str("name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("{path}.name: missing required field"))?;
    if realm
        .roles
        .iter()
        .any(|r| r.client.as_deref() == client && r.name == name)
    {
        bail!("{path}.name: duplicate role '{name}'");
    }
    let id = o.str("id")?.unwrap_or_else(new_id);
    let attributes = match o.object("attributes")? {
        Some(a) => a.map.clone(),
        None => Map::new(),
    };
    realm.roles.push(Role {
        id: id.clone(),
        name,
        description: o.str("description")?,
        client: client.map(str::to_string),
        composites: Vec::new(),
        attributes,
    });
    if let Some(c) = o.object("composites")? {
        pending.push((id.clone(), Value::Object(c.map.clone()), c.path.clone()));
    }
    Ok(id)
}

fn resolve_composites(
    realm: &Realm,
    composites: &Value,
    path: &str,
) -> anyhow::Result<Vec<String>> {
    let o = Obj::new(composites, path.to_string())?;
    let mut ids = Vec::new();
    for name in o.strings("realm")?.unwrap_or_default() {
        let role = realm
            .realm_role(&name)
            .ok_or_else(|| anyhow!("{path}.realm: role '{name}' not found"))?;
        ids.push(role.id.clone());
    }
    if let Some(clients) = o.object("client")? {
        for (client_id, names) in clients.map {
            let names: Vec<&str> = match names {
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => bail!("{path}.client.{client_id}: expected array of strings"),
            };
            for name in names {
                let role = realm
                    .client_role_by_client_id(client_id, name)
                    .ok_or_else(|| anyhow!("{path}.client.{client_id}: role '{name}' not found"))?;
                ids.push(role.id.clone());
            }
        }
    }
    Ok(ids)
}

fn add_builtin_roles(realm: &mut Realm) {
    let authz: Vec<String> = realm
        .clients
        .iter()
        .filter(|c| c.authorization_services)
        .map(|c| c.id.clone())
        .collect();
    for id in authz {
        add_role(realm, Some(&id), "uma_protection", None);
    }
    add_role(
        realm,
        None,
        "offline_access",
        Some("${role_offline-access}".into()),
    );
    add_role(
        realm,
        None,
        "uma_authorization",
        Some("${role_uma_authorization}".into()),
    );
    for (client_id, roles) in [
        ("realm-management", REALM_MANAGEMENT_ROLES),
        ("account", ACCOUNT_ROLES),
    ] {
        let Some(client_uuid) = realm.client(client_id).map(|c| c.id.clone()) else {
            continue;
        };
        let mut created = Vec::new();
        for (name, _) in roles {
            let fresh = realm.client_role(&client_uuid, name).is_none();
            let id = add_role(
                realm,
                Some(&client_uuid),
                name,
                Some(format!("${{role_{name}}}")),
            );
            if fresh {
                created.push((id, *name));
            }
        }
        for (id, name) in &created {
            let wanted: Vec<String> = roles
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| {
                    c.iter()
                        .filter_map(|c| realm.client_role(&client_uuid, c).map(|r| r.id.clone()))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(role) = realm.roles.iter_mut().find(|r| &r.id == id) {
                role.composites = wanted;
            }
        }
        if client_id == "realm-management"
            && realm.client_role(&client_uuid, "realm-admin").is_none()
        {
            let all: Vec<String> = realm
                .roles
                .iter()
                .filter(|r| r.client.as_deref() == Some(client_uuid.as_str()))
                .map(|r| r.id.clone())
                .collect();
            let id = add_role(
                realm,
                Some(&client_uuid),
                "realm-admin",
                Some("${role_realm-admin}".into()),
            );
            if let Some(role) = realm.roles.iter_mut().find(|r| r.id == id) {
                role.composites = all;
            }
        }
    }
}

fn ensure_default_role(realm: &mut Realm, root: &Obj) -> anyhow::Result<()> {
    let existed = realm.realm_role(&realm.default_role).is_some();
    let name = realm.default_role.clone();
    let id = add_role(realm, None, &name, Some("${role_default-roles}".into()));
    let mut wanted: Vec<String> = Vec::new();
    if !existed {
        for n in ["offline_access", "uma_authorization"] {
            if let Some(r) = realm.realm_role(n) {
                wanted.push(r.id.clone());
            }
        }
        for n in ["view-profile", "manage-account"] {
            if let Some(r) = realm.client_role_by_client_id("account", n) {
                wanted.push(r.id.clone());
            }
        }
    }
    // Pre-Keycloak-13 exports list default realm roles by name.
    for n in root.strings("defaultRoles")?.unwrap_or_default() {
        let r = realm
            .realm_role(&n)
            .ok_or_else(|| anyhow!("defaultRoles: role '{n}' not found"))?;
        wanted.push(r.id.clone());
    }
    if let Some(role) = realm.roles.iter_mut().find(|r| r.id == id) {
        for w in wanted {
            if !role.composites.contains(&w) && w != id {
                role.composites.push(w);
            }
        }
    }
    Ok(())
}

fn import_users(realm: &mut Realm, root: &Obj) -> anyhow::Result<()> {
    let Some(users) = root.array("users")? else {
        return Ok(());
    };
    for (i, u) in users.iter().enumerate() {
        let o = Obj::new(u, format!("users[{i}]"))?;
        let user = parse_user(realm, &o, true)?;
        if realm.user_by_username(&user.username).is_some() {
            bail!("users[{i}].username: duplicate user '{}'", user.username);
        }
        realm.users.push(user);
    }
    Ok(())
}

pub(crate) fn parse_user_value(
    realm: &Realm,
    value: &Value,
    path: &str,
    with_roles: bool,
) -> anyhow::Result<User> {
    parse_user(realm, &Obj::new(value, path.to_string())?, with_roles)
}

fn parse_user(realm: &Realm, o: &Obj, with_roles: bool) -> anyhow::Result<User> {
    let username = o
        .str("username")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("{}: missing required field", o.sub("username")))?;
    let mut user = User::new(&username);
    if let Some(id) = o.str("id")? {
        user.id = id;
    }
    user.email = o
        .str("email")?
        .filter(|e| !e.is_empty())
        .map(|e| e.to_lowercase());
    user.first_name = o.str("firstName")?;
    user.last_name = o.str("lastName")?;
    user.email_verified = o.bool("emailVerified")?.unwrap_or(false);
    user.enabled = o.bool("enabled")?.unwrap_or(false);
    if let Some(ts) = o.int("createdTimestamp")? {
        user.created_timestamp = ts;
    }
    user.attributes = parse_attributes(o)?;
    user.required_actions = o.strings("requiredActions")?.unwrap_or_default();
    user.service_account_client_id = o.str("serviceAccountClientId")?;
    if let Some(creds) = o.array("credentials")? {
        for (j, c) in creds.iter().enumerate() {
            let co = Obj::new(c, format!("{}[{j}]", o.sub("credentials")))?;
            if co.str("type")?.as_deref().unwrap_or("password") != "password" {
                continue;
            }
            if let Some(value) = co.str("value")? {
                user.password = Some(PasswordHash::create(&value));
            } else if let (Some(secret), Some(data)) =
                (co.str("secretData")?, co.str("credentialData")?)
            {
                user.password = PasswordHash::from_keycloak_export(&secret, &data);
            }
            if co.bool("temporary")?.unwrap_or(false) {
                user.add_required_action("UPDATE_PASSWORD");
            }
        }
    }
    if with_roles {
        for name in o.strings("realmRoles")?.unwrap_or_default() {
            let role = realm
                .realm_role(&name)
                .ok_or_else(|| anyhow!("{}: role '{name}' not found", o.sub("realmRoles")))?;
            if !user.roles.contains(&role.id) {
                user.roles.push(role.id.clone());
            }
        }
        if let Some(client_roles) = o.object("clientRoles")? {
            for (client_id, names) in client_roles.map {
                let Value::Array(names) = names else {
                    bail!(
                        "{}.{client_id}: expected array of strings",
                        client_roles.path
                    );
                };
                for name in names {
                    let name = name.as_str().ok_or_else(|| {
                        anyhow!(
                            "{}.{client_id}: expected array of strings",
                            client_roles.path
                        )
                    })?;
                    let role =
                        realm
                            .client_role_by_client_id(client_id, name)
                            .ok_or_else(|| {
                                anyhow!(
                                    "{}.{client_id}: role '{name}' not found",
                                    client_roles.path
                                )
                            })?;
                    if !user.roles.contains(&role.id) {
                        user.roles.push(role.id.clone());
                    }
                }
            }
        }
    }
    Ok(user)
}

pub(crate) fn parse_attributes_value(
    value: &Value,
    path: &str,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let wrapper = json!({ "attributes": value });
    parse_attributes(&Obj::new(&wrapper, path.to_string())?)
}

fn parse_attributes(o: &Obj) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    if let Some(attrs) = o.object("attributes")? {
        for (k, v) in attrs.map {
            let values = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(_) | Value::Bool(_) => Some(i.to_string()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| anyhow!("{}.{k}: expected array of strings", attrs.path))?,
                Value::Null => continue,
                _ => bail!("{}.{k}: expected array of strings", attrs.path),
            };
            out.insert(k.clone(), values);
        }
    }
    Ok(out)
}

/// Keycloak creates `service-account-<clientId>` when a client enables service accounts.
pub(crate) fn ensure_service_account_users(realm: &mut Realm) {
    let missing: Vec<String> = realm
        .clients
        .iter()
        .filter(|c| c.service_accounts && realm.service_account_user(&c.client_id).is_none())
        .map(|c| c.client_id.clone())
        .collect();
    for client_id in missing {
        let mut user = User::new(&format!("service-account-{client_id}"));
        user.service_account_client_id = Some(client_id);
        if let Some(id) = realm.default_role_id() {
            user.roles.push(id);
        }
        realm.users.push(user);
    }
}

/// The `master` realm with its bootstrap administrator.
pub fn master_realm(admin_user: &str, admin_password: &str) -> anyhow::Result<Realm> {
    import(&json!({
        "realm": "master",
        "enabled": true,
        "roles": { "realm": [
            { "name": "admin", "description": "${role_admin}" },
            { "name": "create-realm", "description": "${role_create-realm}" }
        ] },
        "users": [ {
            "username": admin_user,
            "enabled": true,
            "credentials": [ { "type": "password", "value": admin_password } ],
            "realmRoles": [ "admin", "create-realm", "default-roles-master" ]
        } ]
    }))
}

#[cfg(test)]
mod tests {

    #[test]
    fn realm_file_placeholders_resolve_like_keycloaks() {
        let env = |n: &str| (n == "SET").then(|| "v".to_string());
        assert_eq!(
            placeholders("${SET} ${UNSET:http://a:1/b} ${UNSET}", env),
            "v http://a:1/b ${UNSET}"
        );
        assert_eq!(placeholders("tail ${SET", env), "tail ${SET");
    }

    use super::*;

    #[test]
    fn wrong_field_type_names_the_path() {
        let err = import(&json!({"realm": "x", "clients": [{"clientId": "a"}, {"clientId": "b"}, {"clientId": "c", "redirectUris": "nope"}]}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(err, "clients[2].redirectUris: expected array of strings");
    }

    #[test]
    fn default_role_and_builtin_clients_exist() {
        let realm = import(&json!({"realm": "x", "users": [{"username": "Bob", "enabled": true}]}))
            .expect("import");
        let role = realm.realm_role("default-roles-x").expect("default role");
        assert_eq!(role.composites.len(), 4);
        assert!(realm.client("realm-management").is_some());
        assert!(realm.user_by_username("bob").is_some());
        let admin = realm
            .client_role_by_client_id("realm-management", "realm-admin")
            .expect("realm-admin");
        assert!(admin.composites.len() >= 18);
    }
}
