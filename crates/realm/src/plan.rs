//! What Keycloak has of each resource in the file, and which fields
//! differ.

use serde_json::{Value, json};

use crate::admin::{Admin, names};
use crate::args::Failure;
use crate::file::RealmFile;

/// What kind of resource a plan item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Client,
    RealmRole,
    ClientRole,
    User,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::RealmRole => "realm role",
            Kind::ClientRole => "client role",
            Kind::User => "user",
        }
    }

    /// Fields that are not the resource's own settings, or that an update
    /// in place must not send (ids, credentials, mappings, sub-resources).
    pub(crate) fn ignored(self) -> &'static [&'static str] {
        match self {
            // A secret is a credential: whatever the file says, the one
            // Keycloak holds (rotated, generated) stays.
            Kind::Client => &[
                "id",
                "secret",
                "protocolMappers",
                "defaultClientScopes",
                "optionalClientScopes",
                "authorizationSettings",
                "access",
            ],
            Kind::RealmRole | Kind::ClientRole => {
                &["id", "composite", "composites", "containerId", "clientRole"]
            }
            Kind::User => &[
                "id",
                "credentials",
                "realmRoles",
                "clientRoles",
                "groups",
                "serviceAccountClientId",
                "federatedIdentities",
                "access",
                "createdTimestamp",
            ],
        }
    }
}

/// One resource of the file and what Keycloak has of it.
pub(crate) struct Item {
    pub(crate) kind: Kind,
    pub(crate) name: String,
    /// The file's version.
    pub(crate) file: Value,
    /// Keycloak's current version, when it exists.
    pub(crate) current: Option<Value>,
    /// Fields whose value in the file differs from Keycloak's.
    pub(crate) differs: Vec<String>,
}

impl Item {
    pub(crate) fn new(kind: Kind, name: String, file: Value, current: Option<Value>) -> Item {
        let differs = current
            .as_ref()
            .map(|c| differing_fields(&file, c, kind.ignored()))
            .unwrap_or_default();
        Item {
            kind,
            name,
            file,
            current,
            differs,
        }
    }

    /// Service-account users are made by their client; they are never
    /// compared or updated on their own.
    pub(crate) fn exists(&self) -> bool {
        self.current.is_some()
    }
}

/// The fields of `file` whose values Keycloak holds differently. A field
/// Keycloak does not report is not counted as a difference; `attributes`
/// are compared key by key; lists are compared as sets.
pub(crate) fn differing_fields(file: &Value, current: &Value, ignored: &[&str]) -> Vec<String> {
    let Some(fields) = file.as_object() else {
        return Vec::new();
    };
    let mut differs = Vec::new();
    for (key, wanted) in fields {
        if ignored.contains(&key.as_str()) {
            continue;
        }
        let Some(have) = current.get(key) else {
            continue;
        };
        if key == "attributes" {
            for (name, value) in wanted.as_object().into_iter().flatten() {
                if !same(value, have.get(name).unwrap_or(&Value::Null)) {
                    differs.push(format!("attributes.{name}"));
                }
            }
        } else if !same(wanted, have) {
            differs.push(key.clone());
        }
    }
    differs
}

pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            let mut x: Vec<String> = x.iter().map(Value::to_string).collect();
            let mut y: Vec<String> = y.iter().map(Value::to_string).collect();
            x.sort();
            y.sort();
            x.dedup();
            y.dedup();
            x == y
        }
        // Keycloak stores attribute values as strings (or lists of them).
        (Value::String(x), Value::Array(y)) | (Value::Array(y), Value::String(x)) => {
            y.len() == 1 && y[0].as_str() == Some(x)
        }
        (Value::Bool(x), Value::String(y)) | (Value::String(y), Value::Bool(x)) => {
            y == &x.to_string()
        }
        _ => a == b,
    }
}

/// Reads what Keycloak has of every resource in the file.
pub(crate) async fn plan(admin: &Admin, file: &RealmFile) -> Result<Vec<Item>, Failure> {
    let clients = admin.clients().await?;
    let realm_roles = admin.list("/roles").await?;
    let find = |list: &[Value], field: &str, name: &str| {
        list.iter()
            .find(|v| v.get(field).and_then(Value::as_str) == Some(name))
            .cloned()
    };
    let mut plan = Vec::new();
    for client in file.list("clients") {
        let Some(id) = client.get("clientId").and_then(Value::as_str) else {
            continue;
        };
        let current = find(&clients, "clientId", id);
        plan.push(Item::new(
            Kind::Client,
            id.to_string(),
            client.clone(),
            current,
        ));
    }
    for role in file
        .json
        .pointer("/roles/realm")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(name) = role.get("name").and_then(Value::as_str) else {
            continue;
        };
        let current = find(&realm_roles, "name", name);
        plan.push(Item::new(
            Kind::RealmRole,
            name.to_string(),
            role.clone(),
            current,
        ));
    }
    let mut client_roles: Vec<(String, Vec<String>)> = Vec::new();
    for (client, role) in file.client_roles() {
        let internal = find(&clients, "clientId", client)
            .and_then(|c| c.get("id").and_then(Value::as_str).map(str::to_string));
        let present = match internal {
            None => false,
            Some(internal) => {
                if !client_roles.iter().any(|(c, _)| c == client) {
                    let roles = admin.list(&format!("/clients/{internal}/roles")).await?;
                    let names = names(&Value::Array(roles), "name");
                    client_roles.push((client.to_string(), names));
                }
                client_roles
                    .iter()
                    .any(|(c, names)| c == client && names.iter().any(|n| n == role))
            }
        };
        // Client roles are only added, never compared.
        let current = present.then(|| json!({}));
        plan.push(Item::new(
            Kind::ClientRole,
            format!("{client}/{role}"),
            json!({}),
            current,
        ));
    }
    for user in file.list("users") {
        let Some(username) = user.get("username").and_then(Value::as_str) else {
            continue;
        };
        // Keycloak's user search never returns service-account users; one
        // exists exactly when its client does, and is left to its client.
        let current = match user.get("serviceAccountClientId").and_then(Value::as_str) {
            Some(client) => find(&clients, "clientId", client).map(|_| json!({})),
            None => admin.user(username).await?,
        };
        let file_version = if user.get("serviceAccountClientId").is_some() {
            json!({})
        } else {
            user.clone()
        };
        plan.push(Item::new(
            Kind::User,
            username.to_string(),
            file_version,
            current,
        ));
    }
    Ok(plan)
}
