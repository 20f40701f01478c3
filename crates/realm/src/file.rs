//! The realm file as read: placeholders resolved, the realm named.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::args::{Failure, IfExists};
use crate::{placeholders, production};

/// The parsed realm file.
pub(crate) struct RealmFile {
    pub(crate) name: String,
    pub(crate) json: Value,
}

impl RealmFile {
    pub(crate) fn read(path: &Path) -> Result<RealmFile, Failure> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("--file {shown}: cannot read it: {e}")))?;
        // Placeholders first, as Keycloak's own import does: a value can
        // then hold any JSON string.
        let json: Value = serde_json::from_str(&placeholders::from_env(&text))
            .map_err(|e| Failure::Usage(format!("--file {shown}: not valid JSON: {e}")))?;
        let name = json
            .get("realm")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--file {shown}: not a realm file (no \"realm\" name at the top level)"
                ))
            })?
            .to_string();
        if name.contains('/') || name.chars().any(char::is_control) {
            return Err(Failure::Usage(format!(
                "--file {shown}: the realm name `{name}` is not usable in a URL path"
            )));
        }
        Ok(RealmFile { name, json })
    }

    /// Applies the production profile to the file (dev-only clients off,
    /// dev-only users out, the production password policy on, dev-only
    /// secrets left for Keycloak to generate), naming each change, and
    /// returns what an existing realm must be brought to.
    pub(crate) fn production(&mut self, report: &mut Vec<String>) -> production::Rules {
        let rules = production::Rules::of(&self.json);
        production::apply_to_file(&mut self.json, &rules, report);
        rules
    }

    pub(crate) fn list(&self, key: &str) -> &[Value] {
        self.json
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub(crate) fn clients(&self) -> impl Iterator<Item = &str> {
        self.list("clients")
            .iter()
            .filter_map(|c| c.get("clientId").and_then(Value::as_str))
    }

    pub(crate) fn realm_roles(&self) -> impl Iterator<Item = &str> {
        self.json
            .pointer("/roles/realm")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.get("name").and_then(Value::as_str))
    }

    /// `(client id, role name)` for every client role in the file.
    pub(crate) fn client_roles(&self) -> Vec<(&str, &str)> {
        let Some(map) = self
            .json
            .pointer("/roles/client")
            .and_then(Value::as_object)
        else {
            return Vec::new();
        };
        map.iter()
            .flat_map(|(client, roles)| {
                roles
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(move |r| {
                        r.get("name")
                            .and_then(Value::as_str)
                            .map(|n| (client.as_str(), n))
                    })
            })
            .collect()
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "{} clients, {} users, {} realm roles",
            self.clients().count(),
            self.list("users").len(),
            self.realm_roles().count()
        )
    }

    /// Keycloak's PartialImportRepresentation: the resource lists of the
    /// file, untouched, plus the policy.
    pub(crate) fn partial_import_body(&self, policy: IfExists) -> Value {
        let mut body = Map::new();
        body.insert("ifResourceExists".into(), json!(policy.keycloak_name()));
        for key in ["users", "clients", "groups", "identityProviders", "roles"] {
            if let Some(v) = self.json.get(key) {
                body.insert(key.into(), v.clone());
            }
        }
        Value::Object(body)
    }
}
