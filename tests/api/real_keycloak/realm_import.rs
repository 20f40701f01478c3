//! `voxgate realm import` against the real server: creating, re-running,
//! seeing changed settings, and overwriting without losing anything that
//! is not in the file.

use serde_json::{Value, json};

use super::{KcAdmin, RealKeycloak, server};
use crate::helpers::Caller;

/// The project realm under a name of its own.
fn realm_file(name: &str) -> Value {
    let mut realm: Value = serde_json::from_str(&crate::stack::project_realm_text()).unwrap();
    realm["realm"] = json!(name);
    realm
}

struct Imported {
    kc: &'static RealKeycloak,
    name: String,
    dir: std::path::PathBuf,
}

impl Imported {
    fn new(kc: &'static RealKeycloak) -> Imported {
        let name = format!("vg-imp-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir = std::env::temp_dir().join(format!("voxgate-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        Imported { kc, name, dir }
    }

    fn admin(&self) -> KcAdmin {
        self.kc.admin(&self.name)
    }

    /// Runs `voxgate realm import` with `realm` as the file.
    async fn import(&self, realm: &Value, extra: &[&str]) -> (i32, String) {
        self.import_with(realm, extra, &[]).await
    }

    /// The same with `env` in the importer's environment.
    async fn import_with(
        &self,
        realm: &Value,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String) {
        let path = self.dir.join("realm.json");
        std::fs::write(&path, serde_json::to_vec_pretty(realm).unwrap()).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .env_clear()
            .envs(crate::helpers::base_env())
            .env("VOXGATE_REALM_ADMIN_PASSWORD", self.kc.admin_password())
            .envs(env.iter().copied())
            .args(["realm", "import", "--file"])
            .arg(&path)
            .args(["--url", &self.kc.base, "--admin-user", super::MASTER_ADMIN])
            .args(extra)
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains(self.kc.admin_password()),
            "the password is never printed"
        );
        (out.status.code().unwrap(), text)
    }
}

/// The status of a token request at `realm` (200 means a token was issued).
async fn grant_status(kc: &RealKeycloak, realm: &str, form: &[(&str, &str)]) -> u16 {
    Caller::at("", reqwest::Client::new())
        .post_form(
            &format!("{}/protocol/openid-connect/token", kc.issuer(realm)),
            form,
        )
        .await
        .status()
        .as_u16()
}

/// Whether `username`/`password` gets a token through `client` (a public
/// client: the direct grant voxgate-cli offers, or admin-cli, which every
/// realm has).
async fn password_works(
    kc: &RealKeycloak,
    realm: &str,
    client: &str,
    user: &str,
    pw: &str,
) -> bool {
    grant_status(
        kc,
        realm,
        &[
            ("grant_type", "password"),
            ("client_id", client),
            ("username", user),
            ("password", pw),
        ],
    )
    .await
        == 200
}

async fn secret_works(kc: &RealKeycloak, realm: &str, client: &str, secret: &str) -> bool {
    grant_status(
        kc,
        realm,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
        ],
    )
    .await
        == 200
}

/// The secret Keycloak holds for `client` (voxgate-web takes no client
/// credentials grant, so its secret is read, not tried).
async fn held_secret(admin: &KcAdmin, client: &str) -> String {
    let uuid = admin.get(&format!("/clients?clientId={client}")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    admin.get(&format!("/clients/{uuid}/client-secret")).await["value"]
        .as_str()
        .unwrap()
        .to_string()
}

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.admin().delete_realm_from_drop();
    }
}

#[tokio::test]
async fn import_creates_a_missing_realm_and_a_second_run_changes_nothing_and_says_so() {
    let Some(kc) = server() else {
        return;
    };
    let imported = Imported::new(kc);
    let file = realm_file(&imported.name);

    let (code, out) = imported.import(&file, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("created realm {} at ", imported.name)),
        "{out}"
    );
    let token = crate::stack::password_grant(&kc.issuer(&imported.name), "bob", "bob").await;
    assert!(token["access_token"].is_string());
    let bob_before = imported.admin().user_by_username("bob").await.unwrap();

    let (code, out) = imported.import(&file, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("no change: realm {}", imported.name)),
        "{out}"
    );
    assert!(
        !out.contains("differs"),
        "an unchanged file shows no difference: {out}"
    );
    assert_eq!(
        imported.admin().user_by_username("bob").await.unwrap(),
        bob_before
    );

    let (code, out) = imported
        .import(&file, &["--dry-run", "--if-exists", "overwrite"])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 to add, 0 to overwrite"), "{out}");
}

#[tokio::test]
async fn a_changed_client_setting_is_shown_as_a_change_and_overwrite_applies_it() {
    let Some(kc) = server() else {
        return;
    };
    let imported = Imported::new(kc);
    let mut file = realm_file(&imported.name);
    assert_eq!(imported.import(&file, &[]).await.0, 0);

    for client in file["clients"].as_array_mut().unwrap() {
        if client["clientId"] == "voxgate-web" {
            client["redirectUris"]
                .as_array_mut()
                .unwrap()
                .push(json!("https://voice.example.org/*"));
        }
    }
    let (code, out) = imported.import(&file, &["--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("would skip (differs) client voxgate-web: redirectUris"),
        "{out}"
    );
    assert!(
        out.contains("--if-exists overwrite would update them"),
        "{out}"
    );
    let (code, out) = imported
        .import(&file, &["--dry-run", "--if-exists", "overwrite"])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("would overwrite      client voxgate-web: redirectUris"),
        "{out}"
    );
    assert!(out.contains("0 to add, 1 to overwrite"), "{out}");

    // Skip keeps Keycloak's version and says so.
    let (code, out) = imported.import(&file, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("client voxgate-web differs from the file (redirectUris)"),
        "{out}"
    );

    let (code, out) = imported.import(&file, &["--if-exists", "overwrite"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("overwritten  client voxgate-web (redirectUris)"),
        "{out}"
    );
    let web = imported.admin().get("/clients?clientId=voxgate-web").await;
    assert!(
        web[0]["redirectUris"]
            .as_array()
            .unwrap()
            .contains(&json!("https://voice.example.org/*"))
    );
}

#[tokio::test]
async fn overwrite_keeps_other_users_role_mappings_ids_and_service_accounts() {
    let Some(kc) = server() else {
        return;
    };
    let imported = Imported::new(kc);
    let mut file = realm_file(&imported.name);
    assert_eq!(imported.import(&file, &[]).await.0, 0);
    let admin = imported.admin();

    // zoe is not in the file; she holds the agent role.
    let zoe = admin.create_user("zoe", "a long enough password").await;
    let agent = admin.get("/roles/agent").await;
    let r = admin
        .call(
            reqwest::Method::POST,
            &format!("/users/{zoe}/role-mappings/realm"),
            Some(&json!([agent])),
        )
        .await;
    assert_eq!(r.status(), 204);
    let bob_before = admin.user_by_username("bob").await.unwrap();
    let admin_client = admin.get("/clients?clientId=voxgate-admin").await[0].clone();
    let client_uuid = admin_client["id"].as_str().unwrap().to_string();
    let service_account = admin
        .get(&format!("/clients/{client_uuid}/service-account-user"))
        .await;
    let sa_roles_before = admin
        .get(&format!(
            "/users/{}/role-mappings",
            service_account["id"].as_str().unwrap()
        ))
        .await;
    let mappings = |v: &Value| {
        v["clientMappings"]["realm-management"]["mappings"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert!(mappings(&sa_roles_before) >= 4, "{sa_roles_before}");

    // Change every kind of resource that exists: a role, a client, a user.
    for role in file["roles"]["realm"].as_array_mut().unwrap() {
        if role["name"] == "agent" {
            role["description"] = json!("voxgate agent (renamed in the file)");
        }
    }
    for client in file["clients"].as_array_mut().unwrap() {
        if client["clientId"] == "voxgate-admin" {
            client["description"] = json!("provisioning service account");
        }
    }
    for user in file["users"].as_array_mut().unwrap() {
        if user["username"] == "bob" {
            user["firstName"] = json!("Robert");
        }
    }
    // An operator rotates the service account's secret, as production asks.
    let rotated = admin
        .call(
            reqwest::Method::POST,
            &format!("/clients/{client_uuid}/client-secret"),
            None,
        )
        .await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let rotated = rotated["value"].as_str().unwrap().to_string();
    assert_ne!(rotated, crate::stack::ADMIN_SECRET);

    let (code, out) = imported.import(&file, &["--if-exists", "overwrite"]).await;
    assert_eq!(code, 0, "{out}");
    for line in [
        "overwritten  realm role agent (description)",
        "overwritten  client voxgate-admin (description)",
        "overwritten  user bob (firstName)",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }

    assert_eq!(
        admin.get("/roles/agent").await["description"],
        "voxgate agent (renamed in the file)"
    );
    assert!(
        admin
            .user_realm_roles(&zoe)
            .await
            .contains(&"agent".to_string()),
        "zoe keeps the agent role"
    );
    let bob = admin.user_by_username("bob").await.unwrap();
    assert_eq!(bob["firstName"], "Robert");
    assert_eq!(bob["id"], bob_before["id"], "bob keeps his id");
    crate::stack::password_grant(&kc.issuer(&imported.name), "bob", "bob").await;
    let admin_client_after = admin.get("/clients?clientId=voxgate-admin").await[0].clone();
    assert_eq!(
        admin_client_after["id"], client_uuid,
        "the client keeps its id"
    );
    let service_account_after = admin
        .get(&format!("/clients/{client_uuid}/service-account-user"))
        .await;
    assert_eq!(service_account_after["id"], service_account["id"]);
    let sa_roles_after = admin
        .get(&format!(
            "/users/{}/role-mappings",
            service_account["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(mappings(&sa_roles_after), mappings(&sa_roles_before));
    // Secrets are never overwritten from the file: the rotated one still
    // signs in, and the file's dev value does not come back.
    assert!(secret_works(kc, &imported.name, "voxgate-admin", &rotated).await);
    assert!(
        !secret_works(
            kc,
            &imported.name,
            "voxgate-admin",
            crate::stack::ADMIN_SECRET
        )
        .await,
        "the dev secret must not work after a re-import"
    );
}

/// The production profile on the real server: the seeded dev users stay
/// out, the password grant client is off, and the realm gets the file's
/// production password policy, which Keycloak then enforces.
#[tokio::test]
async fn the_production_profile_leaves_dev_users_out_and_enforces_the_password_policy() {
    let Some(kc) = server() else {
        return;
    };
    let imported = Imported::new(kc);
    let file = realm_file(&imported.name);
    let (code, out) = imported.import(&file, &["--profile", "production"]).await;
    assert_eq!(code, 0, "{out}");
    for line in [
        "production profile: dev user alice is left out",
        "production profile: dev user bob is left out",
        "production profile: client voxgate-cli is imported disabled",
        "production profile: password policy length(12)",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    let admin = imported.admin();
    let realm = admin.get("").await;
    let policy = realm["passwordPolicy"].as_str().unwrap_or_default();
    assert!(policy.starts_with("length(12)"), "{realm}");
    assert!(admin.user_by_username("alice").await.is_none());
    assert!(admin.user_by_username("bob").await.is_none());

    let short = admin
        .call(
            reqwest::Method::POST,
            "/users",
            Some(&json!({
                "username": "carol", "enabled": true,
                "credentials": [{"type": "password", "value": "too-short", "temporary": false}]
            })),
        )
        .await;
    assert_eq!(short.status(), 400, "Keycloak enforces the policy");
    let long = admin
        .call(
            reqwest::Method::POST,
            "/users",
            Some(&json!({
                "username": "dave", "enabled": true,
                "credentials": [{"type": "password", "value": "a long enough password", "temporary": false}]
            })),
        )
        .await;
    assert_eq!(long.status(), 201);
    // Keycloak made admin-cli in the new realm; it takes no passwords.
    assert!(out.contains("turned off direct grants"), "{out}");
    assert!(
        !password_works(
            kc,
            &imported.name,
            "admin-cli",
            "dave",
            "a long enough password"
        )
        .await
    );
}

/// The path docker compose takes: Keycloak imports the development realm on
/// its first start, then the operator applies the production profile. The
/// dry run says what it would change and changes nothing; the run leaves no
/// dev login: alice and bob get no token through any client, the file's
/// client secrets get none, the password-grant client is off, and the
/// policy is on. A second run finds nothing left to do.
#[tokio::test]
async fn the_production_profile_on_a_dev_realm_leaves_no_dev_login() {
    let Some(kc) = server() else {
        return;
    };
    let imported = Imported::new(kc);
    // The file as it is in the repository: its secrets are placeholders
    // that the importer resolves from its environment.
    let mut file: Value = serde_json::from_str(
        &std::fs::read_to_string(super::repo_root().join("keycloak-realm/realm.json")).unwrap(),
    )
    .unwrap();
    file["realm"] = json!(imported.name);
    assert_eq!(imported.import(&file, &[]).await.0, 0);
    let realm = imported.name.as_str();
    // A real user, and Keycloak's own public client that takes passwords.
    imported
        .admin()
        .create_user("carol", "a long enough password")
        .await;
    assert!(password_works(kc, realm, "admin-cli", "carol", "a long enough password").await);
    assert!(password_works(kc, realm, "voxgate-cli", "alice", "alice").await);
    assert!(secret_works(kc, realm, "voxgate-admin", crate::stack::ADMIN_SECRET).await);

    let (code, out) = imported
        .import(&file, &["--profile", "production", "--dry-run"])
        .await;
    assert_eq!(code, 0, "{out}");
    for line in [
        "dry run: production profile: would delete dev user alice",
        "dry run: production profile: would delete dev user bob",
        "dry run: production profile: would disable client voxgate-cli",
        "dry run: production profile: would regenerate the secret of client voxgate-admin",
        "dry run: production profile: would regenerate the secret of client voxgate-web",
        "dry run: production profile: would turn off direct grants (passwords sent straight to the token endpoint) of public client admin-cli",
        "dry run: production profile: would set password policy length(12)",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert!(
        !out.contains("voxgate-cli: enabled"),
        "the dry run does not also list the client as differing: {out}"
    );
    assert!(
        password_works(kc, realm, "voxgate-cli", "alice", "alice").await,
        "a dry run changes nothing"
    );

    // The operator gives voxgate-web's secret through the environment (as
    // docker-compose.production.yml does); voxgate-admin's is generated.
    const WEB: &str = "a-real-secret-given-by-the-environment";
    let env = [("VOXGATE_OIDC_CLIENT_SECRET", WEB)];
    let production = ["--profile", "production"];
    let (code, out) = imported.import_with(&file, &production, &env).await;
    assert_eq!(code, 0, "{out}");
    for line in [
        "production profile: deleted dev user alice",
        "production profile: deleted dev user bob",
        "production profile: disabled client voxgate-cli",
        "production profile: regenerated the secret of client voxgate-admin",
        "production profile: replaced the dev-only secret of client voxgate-web with the one the file gives",
        "production profile: turned off direct grants (passwords sent straight to the token endpoint) of public client admin-cli",
        "production profile: set password policy length(12)",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert!(
        !out.contains("dev-only-voxgate") && !out.contains(WEB),
        "secrets are never printed: {out}"
    );
    assert_eq!(
        held_secret(&imported.admin(), "voxgate-web").await,
        WEB,
        "the environment's secret"
    );
    assert!(
        !password_works(kc, realm, "admin-cli", "carol", "a long enough password").await,
        "no client of the realm takes passwords directly"
    );
    for (user, client) in [
        ("alice", "voxgate-cli"),
        ("alice", "admin-cli"),
        ("bob", "voxgate-cli"),
        ("bob", "admin-cli"),
    ] {
        assert!(
            !password_works(kc, realm, client, user, user).await,
            "{user}/{user} must get no token through {client}"
        );
    }
    assert!(!secret_works(kc, realm, "voxgate-admin", crate::stack::ADMIN_SECRET).await);

    let admin = imported.admin();
    let cli = admin.get("/clients?clientId=voxgate-cli").await[0].clone();
    assert_eq!(cli["enabled"], false);
    assert_eq!(cli["directAccessGrantsEnabled"], false);
    let policy = admin.get("").await["passwordPolicy"].clone();
    assert!(
        policy
            .as_str()
            .unwrap_or_default()
            .starts_with("length(12)"),
        "{policy}"
    );

    let (code, out) = imported.import_with(&file, &production, &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("has no dev user, dev client or dev secret"),
        "a second run changes nothing: {out}"
    );
    assert!(!out.contains("differs"), "{out}");
}

/// A dev user's name taken by somebody real is kept only when the operator
/// says so (`--keep-user`), and never with the password the realm file
/// gives away: even if they changed their email (anyone could, with the
/// public password), the dev user is deleted without the flag.
#[tokio::test]
async fn the_production_profile_keeps_a_dev_named_user_only_when_told_and_never_with_the_dev_password()
 {
    let Some(kc) = server() else {
        return;
    };
    let imported = Imported::new(kc);
    let file = realm_file(&imported.name);
    assert_eq!(imported.import(&file, &[]).await.0, 0);
    let admin = imported.admin();
    // Somebody signed in as bob with the public password and changed the
    // email: still the dev user.
    let mut bob = admin.user_by_username("bob").await.unwrap();
    bob["email"] = json!("robert@real.example");
    let id = bob["id"].as_str().unwrap().to_string();
    let r = admin
        .call(reqwest::Method::PUT, &format!("/users/{id}"), Some(&bob))
        .await;
    assert_eq!(r.status(), 204);

    let (code, out) = imported
        .import(&file, &["--profile", "production", "--keep-user", "alice"])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("production profile: deleted dev user bob"),
        "{out}"
    );
    assert!(
        out.contains(
            "production profile: kept user alice (--keep-user): signed out, password removed"
        ),
        "{out}"
    );
    assert!(admin.user_by_username("bob").await.is_none());
    let alice = admin.user_by_username("alice").await.unwrap();
    assert!(
        alice["requiredActions"]
            .as_array()
            .unwrap()
            .contains(&json!("UPDATE_PASSWORD")),
        "{alice}"
    );
    let credentials = admin
        .get(&format!(
            "/users/{}/credentials",
            alice["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        !credentials
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "password"),
        "the dev password is gone: {credentials}"
    );
}
