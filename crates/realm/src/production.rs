//! `--profile production`: the realm ends in the production state whatever
//! it held before. A realm first created from the development file (docker
//! compose's `--import-realm` does that) still has the seeded users, the
//! password-grant client and the file's client secrets; skipping what
//! exists would keep them all, so they are removed, turned off or
//! regenerated here, and the password policy is set on the realm itself.
//!
//! What counts as development-only comes from the file: the realm
//! attribute `voxgate.dev-only-users`, the client attribute
//! `voxgate.dev-only`, and client secrets starting with `dev-only` (the
//! defaults of the file's `${VOXGATE_…_SECRET:…}` placeholders).

use serde_json::{Value, json};

use crate::admin::{Admin, keycloak_error, segment};
use crate::args::Failure;

/// What the file marks as development-only, and the production policy.
pub(super) struct Rules {
    dev_users: Vec<String>,
    dev_clients: Vec<String>,
    /// Every client secret the file gives (placeholders resolved), by
    /// client id.
    secrets: Vec<(String, String)>,
    password_policy: Option<String>,
}

/// How to enforce.
pub(super) struct Options<'a> {
    pub dry_run: bool,
    /// The client this import signed in through at the realm itself, which
    /// must keep taking passwords.
    pub signed_in_through: Option<&'a str>,
    /// Dev users' names that somebody real has taken (`--keep-user`).
    pub keep_users: &'a [String],
}

/// What enforcing changed (or, in a dry run, would change).
#[derive(Default)]
pub(super) struct Enforced {
    pub disabled_clients: Vec<String>,
}

/// A secret starting with this is a development value (the realm file's
/// placeholder defaults are such values).
fn is_dev_secret(secret: &str) -> bool {
    secret.starts_with("dev-only")
}

impl Rules {
    pub fn of(realm: &Value) -> Rules {
        let dev_users = realm
            .pointer("/attributes/voxgate.dev-only-users")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split(',')
            .map(|u| u.trim().to_lowercase())
            .filter(|u| !u.is_empty())
            .collect();
        let clients = realm
            .get("clients")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let id = |c: &Value| {
            c.get("clientId")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let dev_clients = clients
            .iter()
            .filter(|c| {
                c.pointer("/attributes/voxgate.dev-only")
                    .and_then(Value::as_str)
                    == Some("true")
            })
            .filter_map(id)
            .collect();
        let secrets = clients
            .iter()
            .filter_map(|c| {
                let secret = c.get("secret").and_then(Value::as_str)?;
                Some((id(c)?, secret.to_string()))
            })
            .collect();
        let password_policy = realm
            .pointer("/attributes/voxgate.production.passwordPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        Rules {
            dev_users,
            dev_clients,
            secrets,
            password_policy,
        }
    }

    /// The file's secret for `client` when it is a development value.
    fn dev_secret(&self, client: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(c, s)| c == client && is_dev_secret(s))
            .map(|(_, s)| s.as_str())
    }

    fn is_dev_user(&self, name: &str) -> bool {
        self.dev_users.iter().any(|d| d.eq_ignore_ascii_case(name))
    }
}

/// The file as the production profile imports it: dev-only clients
/// disabled with direct grants off, dev-only users left out, no dev-only
/// secret (Keycloak generates one), the production password policy.
pub(super) fn apply_to_file(realm: &mut Value, rules: &Rules, report: &mut Vec<String>) {
    if let Some(clients) = realm.get_mut("clients").and_then(Value::as_array_mut) {
        for client in clients.iter_mut().filter_map(Value::as_object_mut) {
            let id = client
                .get("clientId")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            if rules.dev_clients.contains(&id) {
                client.insert("enabled".into(), json!(false));
                client.insert("directAccessGrantsEnabled".into(), json!(false));
                report.push(format!(
                    "production profile: client {id} is imported disabled"
                ));
            } else if client.get("publicClient").and_then(Value::as_bool) == Some(true)
                && client
                    .get("directAccessGrantsEnabled")
                    .and_then(Value::as_bool)
                    == Some(true)
            {
                client.insert("directAccessGrantsEnabled".into(), json!(false));
                report.push(format!(
                    "production profile: public client {id} is imported without direct grants"
                ));
            }
            if rules.dev_secret(&id).is_some() {
                client.remove("secret");
                report.push(format!(
                    "production profile: client {id} gets a secret Keycloak generates, not the file's dev-only one"
                ));
            }
        }
    }
    if let Some(users) = realm.get_mut("users").and_then(Value::as_array_mut) {
        users.retain(|user| {
            let name = user.get("username").and_then(Value::as_str).unwrap_or("?");
            let dev = rules.is_dev_user(name);
            if dev {
                report.push(format!("production profile: dev user {name} is left out"));
            }
            !dev
        });
    }
    // Not the file's own policy: Keycloak refuses to create a realm whose
    // users break it, and the development users' passwords are their names.
    if let (Some(policy), Some(realm)) = (&rules.password_policy, realm.as_object_mut()) {
        realm.insert("passwordPolicy".into(), json!(policy));
        report.push(format!("production profile: password policy {policy}"));
    }
}

/// Brings an existing realm to the production state: dev-only users
/// deleted, dev-only clients disabled, development secrets regenerated,
/// the password policy set. Each change is one report line; a dry run
/// says what it would do and changes nothing.
pub(super) async fn enforce(
    admin: &Admin,
    rules: &Rules,
    options: &Options<'_>,
    report: &mut Vec<String>,
) -> Result<Enforced, Failure> {
    let dry_run = options.dry_run;
    let (done, prefix) = match dry_run {
        true => ("would", "dry run: production profile"),
        false => ("", "production profile"),
    };
    let verb = |past: &str, present: &str| -> String {
        match dry_run {
            true => format!("{done} {present}"),
            false => past.to_string(),
        }
    };
    let mut enforced = Enforced::default();
    let mut changes = 0;

    for name in &rules.dev_users {
        let Some(user) = admin.user(name).await? else {
            continue;
        };
        let id = segment(user.get("id").and_then(Value::as_str).unwrap_or_default());
        // Somebody real who took a dev user's name is kept only when the
        // operator says so, and never with the password the realm file
        // gives away: signed out, the password removed, a new one required.
        if options
            .keep_users
            .iter()
            .any(|k| k.eq_ignore_ascii_case(name))
        {
            if !dry_run {
                keep_without_password(admin, &id, &user, name).await?;
            }
            changes += 1;
            report.push(format!(
                "{prefix}: {} user {name} (--keep-user): signed out, password removed, a new one required at the next sign-in",
                verb("kept", "keep")
            ));
            continue;
        }
        if !dry_run {
            // Their sessions end first: Keycloak tells its clients (voxgate
            // through back-channel logout) before the user is gone.
            admin
                .change(
                    reqwest::Method::POST,
                    &format!("/users/{id}/logout"),
                    None,
                    &format!("sign dev user {name} out"),
                )
                .await?;
            admin
                .change(
                    reqwest::Method::DELETE,
                    &format!("/users/{id}"),
                    None,
                    &format!("delete dev user {name}"),
                )
                .await?;
        }
        changes += 1;
        report.push(format!(
            "{prefix}: {} dev user {name} (its password is in the realm file)",
            verb("deleted", "delete")
        ));
    }

    let clients = admin.clients().await?;
    let find = |client_id: &str| {
        clients
            .iter()
            .find(|c| c.get("clientId").and_then(Value::as_str) == Some(client_id))
    };
    for client_id in &rules.dev_clients {
        let Some(current) = find(client_id) else {
            continue;
        };
        let on = |field: &str| current.get(field).and_then(Value::as_bool) != Some(false);
        if !on("enabled") && !on("directAccessGrantsEnabled") {
            continue;
        }
        if !dry_run {
            let mut body = current.clone();
            body["enabled"] = json!(false);
            body["directAccessGrantsEnabled"] = json!(false);
            // Never send back the secret that was read.
            if let Some(b) = body.as_object_mut() {
                b.remove("secret");
            }
            admin
                .change(
                    reqwest::Method::PUT,
                    &format!("/clients/{}", segment(&uuid_of(current))),
                    Some(&body),
                    &format!("disable client {client_id}"),
                )
                .await?;
        }
        changes += 1;
        enforced.disabled_clients.push(client_id.clone());
        report.push(format!(
            "{prefix}: {} client {client_id} (development only; direct grants off)",
            verb("disabled", "disable")
        ));
    }

    // Any public client that takes passwords directly (Keycloak's own
    // admin-cli does, in every realm) lets anybody guess every user's
    // password without a browser: off, except in the master realm, whose
    // administrators sign in through admin-cli.
    if admin.realm != "master" {
        for current in clients.iter().filter(|c| {
            c.get("publicClient").and_then(Value::as_bool) == Some(true)
                && c.get("directAccessGrantsEnabled").and_then(Value::as_bool) == Some(true)
        }) {
            let client_id = current
                .get("clientId")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            if enforced.disabled_clients.contains(&client_id) {
                continue;
            }
            if options.signed_in_through == Some(client_id.as_str()) {
                report.push(format!(
                    "{prefix}: kept direct grants of public client {client_id}: this import signed in through it at realm {}; sign in at the master realm (--auth-realm master) or with a service account, and run again",
                    admin.realm
                ));
                continue;
            }
            if !dry_run {
                let uuid = segment(&uuid_of(current));
                let mut body = admin
                    .get(admin.realm_url(&format!("/clients/{uuid}"))?)
                    .await?;
                body["directAccessGrantsEnabled"] = json!(false);
                admin
                    .change(
                        reqwest::Method::PUT,
                        &format!("/clients/{uuid}"),
                        Some(&body),
                        &format!("turn off direct grants of client {client_id}"),
                    )
                    .await?;
            }
            changes += 1;
            report.push(format!(
                "{prefix}: {} direct grants (passwords sent straight to the token endpoint) of public client {client_id}",
                verb("turned off", "turn off")
            ));
        }
    }

    // A secret Keycloak holds that is a development value (left by an
    // earlier import of the development file) is replaced: by the file's
    // secret when that one is real (given through the environment), else
    // by one Keycloak generates.
    for (client_id, file_secret) in &rules.secrets {
        let Some(current) = find(client_id) else {
            continue;
        };
        if current.get("publicClient").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let uuid = segment(&uuid_of(current));
        let path = format!("/clients/{uuid}/client-secret");
        let held = admin.get(admin.realm_url(&path)?).await?;
        if !held
            .get("value")
            .and_then(Value::as_str)
            .is_some_and(is_dev_secret)
        {
            continue;
        }
        let from_file = !is_dev_secret(file_secret);
        if !dry_run {
            let what = format!("replace the secret of client {client_id}");
            if from_file {
                // Read again: an earlier step may have changed the client.
                let mut body = admin
                    .get(admin.realm_url(&format!("/clients/{uuid}"))?)
                    .await?;
                body["secret"] = json!(file_secret);
                admin
                    .change(
                        reqwest::Method::PUT,
                        &format!("/clients/{uuid}"),
                        Some(&body),
                        &what,
                    )
                    .await?;
            } else {
                admin
                    .change(reqwest::Method::POST, &path, None, &what)
                    .await?;
            }
        }
        changes += 1;
        report.push(match from_file {
            true => format!(
                "{prefix}: {} the dev-only secret of client {client_id} with the one the file gives",
                verb("replaced", "replace")
            ),
            false => format!(
                "{prefix}: {} the secret of client {client_id}, which was a dev-only value; give the new one (Clients → {client_id} → Credentials) to whatever uses this client",
                verb("regenerated", "regenerate")
            ),
        });
    }

    if let Some(policy) = &rules.password_policy {
        let realm = admin.get(admin.realm_url("")?).await?;
        if realm.get("passwordPolicy").and_then(Value::as_str) != Some(policy.as_str()) {
            if !dry_run {
                admin
                    .change(
                        reqwest::Method::PUT,
                        "",
                        Some(&json!({ "passwordPolicy": policy })),
                        "set the password policy",
                    )
                    .await?;
            }
            changes += 1;
            report.push(format!(
                "{prefix}: {} password policy {policy}",
                verb("set", "set")
            ));
        }
    }

    if changes == 0 {
        report.push(format!(
            "{prefix}: realm {} has no dev user, dev client or dev secret, and its password policy",
            admin.realm
        ));
    }
    Ok(enforced)
}

/// Signs `user` out, removes their password credentials and requires a
/// new password at their next sign-in.
async fn keep_without_password(
    admin: &Admin,
    id: &str,
    user: &Value,
    name: &str,
) -> Result<(), Failure> {
    admin
        .change(
            reqwest::Method::POST,
            &format!("/users/{id}/logout"),
            None,
            &format!("sign user {name} out"),
        )
        .await?;
    let credentials = admin
        .get(admin.realm_url(&format!("/users/{id}/credentials"))?)
        .await?;
    for credential in credentials
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if credential.get("type").and_then(Value::as_str) != Some("password") {
            continue;
        }
        let cid = segment(
            credential
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        admin
            .change(
                reqwest::Method::DELETE,
                &format!("/users/{id}/credentials/{cid}"),
                None,
                &format!("remove the password of user {name}"),
            )
            .await?;
    }
    let mut body = user.clone();
    let actions = body
        .as_object_mut()
        .map(|u| u.entry("requiredActions").or_insert_with(|| json!([])));
    if let Some(Value::Array(actions)) = actions
        && !actions.iter().any(|a| a == "UPDATE_PASSWORD")
    {
        actions.push(json!("UPDATE_PASSWORD"));
    }
    admin
        .change(
            reqwest::Method::PUT,
            &format!("/users/{id}"),
            Some(&body),
            &format!("require a new password of user {name}"),
        )
        .await
}

fn uuid_of(client: &Value) -> String {
    client
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Admin {
    /// A change under the realm (`path` after `/admin/realms/{realm}`);
    /// anything but 2xx stops the import with Keycloak's reason.
    async fn change(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<(), Failure> {
        let mut request = self.http.request(method, self.realm_url(path)?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, response) = self.send(request).await?;
        match status {
            200..=299 => Ok(()),
            401 | 403 => Err(self.not_allowed(status, what)),
            _ => Err(Failure::Error(format!(
                "Keycloak refused to {what} (HTTP {status}: {}); what was listed before this line was applied",
                keycloak_error(&response)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realm() -> Value {
        json!({
            "realm": "r",
            "attributes": {
                "voxgate.dev-only-users": "Alice, bob",
                "voxgate.production.passwordPolicy": "length(12)"
            },
            "clients": [
                {"clientId": "web", "secret": "dev-only-web"},
                {"clientId": "svc", "secret": "from-the-environment"},
                {"clientId": "cli", "publicClient": true, "directAccessGrantsEnabled": true,
                 "attributes": {"voxgate.dev-only": "true"}}
            ],
            "users": [{"username": "alice"}, {"username": "carol"}, {"username": "BOB"}]
        })
    }

    #[test]
    fn the_file_loses_dev_users_dev_secrets_and_dev_clients_powers() {
        let mut r = realm();
        let rules = Rules::of(&r);
        let mut report = Vec::new();
        apply_to_file(&mut r, &rules, &mut report);
        let users: Vec<&str> = r["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap())
            .collect();
        assert_eq!(users, ["carol"]);
        assert!(
            r["clients"][0].get("secret").is_none(),
            "dev secret dropped"
        );
        assert_eq!(r["clients"][1]["secret"], "from-the-environment");
        assert_eq!(r["clients"][2]["enabled"], false);
        assert_eq!(r["clients"][2]["directAccessGrantsEnabled"], false);
        assert_eq!(r["passwordPolicy"], "length(12)");
        assert_eq!(report.len(), 5, "{report:?}");
    }
}
