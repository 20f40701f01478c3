//! The project realm (`keycloak-realm/realm.json`) as a local Keycloak or
//! stand-in loads it for an app at a local origin.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// The realm file of the repository at `root`, with `vars` as the
/// importer's environment (the `${NAME:default}` placeholders resolved as
/// Keycloak resolves them).
pub fn text_with(root: &Path, vars: &[(&str, &str)]) -> anyhow::Result<String> {
    let path = root.join("keycloak-realm/realm.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(voxgate_realm::placeholders::substitute(&text, |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }))
}

/// The realm with every redirect, origin and back-channel URL of the
/// development app (`http://127.0.0.1:8080`, `http://localhost:8080`) moved
/// to `origin`, and `vars` as the importer's environment.
pub fn for_origin(root: &Path, origin: &str, vars: &[(&str, &str)]) -> anyhow::Result<Value> {
    let text = text_with(root, vars)?
        .replace("http://127.0.0.1:8080", origin)
        .replace("http://localhost:8080", origin);
    serde_json::from_str(&text).context("the realm file is not JSON")
}
