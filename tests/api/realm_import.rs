//! `voxgate realm import` against the Keycloak stand-in, through the real
//! binary: exit codes, messages and what ends up in Keycloak.

use std::path::PathBuf;

use keycloak_standin::{Standin, StandinConfig};
use serde_json::{Value, json};

use crate::helpers::Caller;

const REALM: &str = "voxgate";

fn project_realm() -> Value {
    serde_json::from_str(&crate::stack::project_realm_text()).expect("realm JSON")
}

/// A Keycloak holding only the master realm plus `realms`.
async fn keycloak(realms: Vec<Value>) -> Standin {
    Standin::start(StandinConfig {
        realm_jsons: realms,
        ..StandinConfig::default()
    })
    .await
    .expect("keycloak stand-in starts")
}

/// A realm file in a fresh temporary directory (removed on drop).
struct RealmFile {
    dir: PathBuf,
    path: PathBuf,
}

impl RealmFile {
    fn write(json: &Value) -> RealmFile {
        let dir = std::env::temp_dir().join(format!("voxgate-realm-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("realm.json");
        std::fs::write(&path, serde_json::to_vec_pretty(json).unwrap()).unwrap();
        RealmFile { dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for RealmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Asserts the exit code, showing all output when it differs.
    fn exits(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "{}", self.all());
        self
    }

    fn stdout_starts_with(&self, prefix: &str) -> &Run {
        assert!(self.stdout.starts_with(prefix), "{}", self.stdout);
        self
    }

    fn stdout_has(&self, text: &str) -> &Run {
        assert!(self.stdout.contains(text), "{}", self.stdout);
        self
    }

    fn stderr_has(&self, text: &str) -> &Run {
        assert!(self.stderr.contains(text), "{}", self.stderr);
        self
    }
}

fn has_line(lines: &[&str], line: &str) {
    assert!(lines.contains(&line), "{line} in {lines:#?}");
}

/// `voxgate realm import --file FILE --url BASE ARGS`.
async fn import_to(base: &str, file: &RealmFile, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["--file", file.arg(), "--url", base];
    all.extend_from_slice(args);
    import(&all, env).await
}

/// Runs `voxgate realm import ARGS` with a clean environment plus `env`.
async fn import(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxgate"));
    command
        .env_clear()
        .envs(crate::helpers::base_env())
        .args(["realm", "import"])
        .args(args)
        .envs(env.iter().copied());
    run(command).await
}

async fn run(mut command: tokio::process::Command) -> Run {
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("voxgate runs");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `--file F --url KC --admin-user admin --admin-password admin` plus `extra`.
async fn import_as_admin(kc: &Standin, file: &RealmFile, extra: &[&str]) -> Run {
    let base = kc.base_url();
    let mut args = vec![
        "--file",
        file.arg(),
        "--url",
        &base,
        "--admin-user",
        "admin",
        "--admin-password",
        "admin",
    ];
    args.extend_from_slice(extra);
    import(&args, &[]).await
}

/// The project realm plus a user and a realm role it does not have.
fn realm_with_carol() -> Value {
    let mut realm = project_realm();
    realm["users"].as_array_mut().unwrap().push(json!({
        "username": "carol",
        "email": "carol@example.org",
        "firstName": "Carol",
        "lastName": "Example",
        "enabled": true,
        "credentials": [{"type": "password", "value": "carol", "temporary": false}],
        "realmRoles": ["user"]
    }));
    realm["roles"]["realm"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "auditor", "description": "reads the audit log"}));
    realm
}

async fn password_grant(kc: &Standin, username: &str, password: &str) -> u16 {
    Caller::at("", reqwest::Client::new())
        .post_form(
            &format!("{}/protocol/openid-connect/token", kc.issuer(REALM)),
            &[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", username),
                ("password", password),
            ],
        )
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn import_creates_a_missing_realm_whose_seeded_users_can_then_sign_in() {
    let kc = keycloak(vec![]).await;
    let file = RealmFile::write(&project_realm());

    let run = import_as_admin(&kc, &file, &[]).await;

    run.exits(0);
    run.stdout_starts_with("created realm voxgate at ");
    run.stdout_has("3 clients");
    assert_eq!(password_grant(&kc, "bob", "bob").await, 200);
    assert!(
        kc.user_by_username(REALM, "alice").is_some(),
        "seeded admin exists"
    );
}

#[tokio::test]
async fn the_production_profile_imports_the_password_grant_client_disabled() {
    let kc = keycloak(vec![]).await;
    let file = RealmFile::write(&project_realm());

    let run = import_as_admin(&kc, &file, &["--profile", "production"]).await;

    run.exits(0)
        .stdout_has("production profile: client voxgate-cli is imported disabled")
        .stdout_has("production profile: dev user alice is left out")
        .stdout_has("production profile: dev user bob is left out")
        .stdout_has("production profile: password policy length(12)");
    assert!(
        kc.user_by_username(REALM, "alice").is_none(),
        "no dev users"
    );
    assert_ne!(
        password_grant(&kc, "alice", "alice").await,
        200,
        "no password grant in production"
    );

    // The development default keeps it, for local tooling and tests.
    let dev = keycloak(vec![]).await;
    import_as_admin(&dev, &file, &[]).await.exits(0);
    assert_eq!(password_grant(&dev, "alice", "alice").await, 200);
}

/// The stand-in answers the production profile's calls as Keycloak does:
/// a realm that the development file created loses its dev logins.
#[tokio::test]
async fn the_production_profile_brings_an_existing_dev_realm_to_the_production_state() {
    let kc = keycloak(vec![project_realm()]).await;
    let file = RealmFile::write(&project_realm());
    assert_eq!(password_grant(&kc, "alice", "alice").await, 200);

    let run = import_as_admin(&kc, &file, &["--profile", "production"]).await;
    run.exits(0)
        .stdout_has("production profile: deleted dev user alice")
        .stdout_has("production profile: deleted dev user bob")
        .stdout_has("production profile: disabled client voxgate-cli")
        .stdout_has("production profile: regenerated the secret of client voxgate-admin")
        .stdout_has("production profile: set password policy length(12)");
    assert_ne!(password_grant(&kc, "alice", "alice").await, 200);
    assert!(kc.user_by_username(REALM, "bob").is_none());
    let dev_secret = Caller::at("", reqwest::Client::new())
        .post_form(
            &format!("{}/protocol/openid-connect/token", kc.issuer(REALM)),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "voxgate-admin"),
                ("client_secret", crate::stack::ADMIN_SECRET),
            ],
        )
        .await;
    assert_eq!(dev_secret.status(), 401, "the dev secret no longer works");

    import_as_admin(&kc, &file, &["--profile", "production"])
        .await
        .exits(0)
        .stdout_has("has no dev user, dev client or dev secret");
}

#[tokio::test]
async fn a_second_import_with_skip_changes_nothing_and_says_so() {
    let kc = keycloak(vec![]).await;
    let file = RealmFile::write(&project_realm());
    assert_eq!(import_as_admin(&kc, &file, &[]).await.code, 0);
    let bob_before = kc.user_by_username(REALM, "bob").unwrap();

    let run = import_as_admin(&kc, &file, &["--if-exists", "skip"]).await;

    run.exits(0);
    run.stdout_starts_with("no change: realm voxgate");
    assert_eq!(
        kc.user_by_username(REALM, "bob").unwrap(),
        bob_before,
        "existing users are left exactly as they were"
    );
}

#[tokio::test]
async fn a_dry_run_lists_what_would_be_added_and_changes_nothing() {
    let kc = keycloak(vec![project_realm()]).await;
    let file = RealmFile::write(&realm_with_carol());

    let run = import_as_admin(&kc, &file, &["--dry-run"]).await;

    run.exits(0);
    let lines: Vec<&str> = run.stdout.lines().map(str::trim).collect();
    has_line(&lines, "would add            user carol");
    has_line(&lines, "would add            realm role auditor");
    has_line(&lines, "would skip (exists)  client voxgate-web");
    // The service-account user is invisible to user search; it must still
    // be reported as present because its client is.
    has_line(
        &lines,
        "would skip (exists)  user service-account-voxgate-admin",
    );
    assert!(
        run.stdout.trim_end().ends_with("nothing was changed"),
        "{}",
        run.stdout
    );
    run.stdout_has("2 to add, 0 to overwrite, 12 to skip");
    assert!(kc.user_by_username(REALM, "carol").is_none());

    // The real run does what the dry run announced.
    let run = import_as_admin(&kc, &file, &[]).await;
    run.exits(0);
    run.stdout_starts_with("updated realm voxgate at ");
    run.stdout_has(": 2 added, 0 overwritten, 12 skipped");
    assert_eq!(password_grant(&kc, "carol", "carol").await, 200);
}

#[tokio::test]
async fn a_dry_run_against_a_missing_realm_creates_nothing() {
    let kc = keycloak(vec![]).await;
    let file = RealmFile::write(&project_realm());

    let run = import_as_admin(&kc, &file, &["--dry-run"]).await;

    run.exits(0);
    run.stdout_starts_with("dry run: realm voxgate does not exist at ");
    let discovery = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        kc.issuer(REALM)
    ))
    .await
    .unwrap();
    assert_eq!(discovery.status(), 404, "the realm was not created");
}

#[tokio::test]
async fn the_fail_policy_exits_3_and_imports_nothing_when_a_resource_exists() {
    let kc = keycloak(vec![project_realm()]).await;
    let file = RealmFile::write(&realm_with_carol());

    let dry = import_as_admin(&kc, &file, &["--dry-run", "--if-exists", "fail"]).await;
    dry.exits(3);
    assert!(
        dry.stdout
            .contains("conflict (exists)    client voxgate-web"),
        "the dry run lists the conflicts: {}",
        dry.stdout
    );

    let run = import_as_admin(&kc, &file, &["--if-exists", "fail"]).await;
    run.exits(3);
    run.stderr_has("nothing was imported");
    assert!(
        kc.user_by_username(REALM, "carol").is_none(),
        "a conflict imports nothing, not even the new user"
    );
}

#[tokio::test]
async fn overwrite_replaces_existing_users_with_the_files_version() {
    let kc = keycloak(vec![project_realm()]).await;
    let mut realm = project_realm();
    for user in realm["users"].as_array_mut().unwrap() {
        if user["username"] == "bob" {
            user["firstName"] = json!("Robert");
        }
    }
    let file = RealmFile::write(&realm);

    let run = import_as_admin(&kc, &file, &["--if-exists", "overwrite"]).await;

    run.exits(0);
    run.stdout_has("overwritten  user bob");
    assert_eq!(
        kc.user_by_username(REALM, "bob").unwrap()["firstName"],
        "Robert"
    );
}

#[tokio::test]
async fn a_service_account_of_the_target_realm_can_import_with_client_credentials() {
    // A realm whose `realm-importer` client holds realm-admin on itself: the
    // way to import without any master-realm account.
    let mut realm = project_realm();
    realm["clients"].as_array_mut().unwrap().push(json!({
        "clientId": "realm-importer",
        "enabled": true,
        "publicClient": false,
        "secret": "importer-secret-for-tests",
        "standardFlowEnabled": false,
        "serviceAccountsEnabled": true
    }));
    realm["users"].as_array_mut().unwrap().push(json!({
        "username": "service-account-realm-importer",
        "enabled": true,
        "serviceAccountClientId": "realm-importer",
        "clientRoles": {"realm-management": ["realm-admin"]}
    }));
    let kc = keycloak(vec![realm]).await;
    let file = RealmFile::write(&realm_with_carol());
    let base = kc.base_url();

    let run = import_to(
        &base,
        &file,
        &["--auth-realm", REALM, "--client-id", "realm-importer"],
        &[("VOXGATE_REALM_CLIENT_SECRET", "importer-secret-for-tests")],
    )
    .await;

    run.exits(0);
    run.stdout_has("added        user carol");
    assert!(
        !run.all().contains("importer-secret-for-tests"),
        "the secret is never printed"
    );
    assert!(kc.user_by_username(REALM, "carol").is_some());
}

#[tokio::test]
async fn a_refused_sign_in_exits_1_and_never_prints_the_secret() {
    let kc = keycloak(vec![project_realm()]).await;
    let file = RealmFile::write(&project_realm());
    let base = kc.base_url();

    let run = import_to(
        &base,
        &file,
        &[
            "--admin-user",
            "admin",
            "--admin-password",
            "wrong-password-do-not-echo",
        ],
        &[],
    )
    .await;

    run.exits(1);
    run.stderr_has("refused the sign-in of user admin");
    run.stderr_has("HTTP 400: invalid_grant");
    assert!(!run.all().contains("wrong-password-do-not-echo"));

    // A service account without realm-admin rights gets a clear refusal.
    let run = import_to(
        &base,
        &file,
        &["--auth-realm", REALM, "--client-id", "voxgate-admin"],
        &[("VOXGATE_REALM_CLIENT_SECRET", crate::stack::ADMIN_SECRET)],
    )
    .await;
    run.exits(1);
    run.stderr_has("did not allow");
    assert!(!run.all().contains(crate::stack::ADMIN_SECRET));
}

#[tokio::test]
async fn usage_errors_exit_2_before_contacting_keycloak() {
    let file = RealmFile::write(&project_realm());
    let not_a_realm = RealmFile::write(&json!({"clients": []}));
    let garbage = RealmFile::write(&json!(null));
    std::fs::write(&garbage.path, "{ not json").unwrap();
    // Nothing listens here: usage errors must be found first.
    let url = "http://127.0.0.1:9";
    let admin = ["--admin-user", "admin", "--admin-password", "admin"];

    for (args, expected) in [
        (
            vec!["--file", "/nonexistent/realm.json", "--url", url],
            "cannot read it",
        ),
        (
            vec!["--file", not_a_realm.arg(), "--url", url],
            "not a realm file",
        ),
        (
            vec!["--file", garbage.arg(), "--url", url],
            "not valid JSON",
        ),
        (
            vec!["--file", file.arg(), "--url", "http://kc/realms/voxgate"],
            "without /realms/",
        ),
        (
            vec!["--file", file.arg(), "--url", url, "--keep-user", "bob"],
            "--keep-user only applies with --profile production",
        ),
    ] {
        let mut all = args.clone();
        all.extend_from_slice(&admin);
        let run = import(&all, &[]).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }

    // Both kinds of credentials, or none, is a usage error too.
    let both = import(
        &[
            "--file",
            file.arg(),
            "--url",
            url,
            "--client-id",
            "x",
            "--client-secret",
            "y",
            "--admin-user",
            "admin",
            "--admin-password",
            "admin",
        ],
        &[],
    )
    .await;
    both.exits(2);
    let none = import(&["--file", file.arg(), "--url", url], &[]).await;
    none.exits(2);
}

#[tokio::test]
async fn an_unreachable_keycloak_exits_1_with_a_clear_message() {
    let file = RealmFile::write(&project_realm());
    let url = format!("http://127.0.0.1:{}", crate::helpers::free_port());

    let run = import_as_admin_at(&url, &file).await;

    run.exits(1);
    assert!(
        run.stderr
            .contains(&format!("cannot reach Keycloak at {url}/")),
        "{}",
        run.stderr
    );
}

async fn import_as_admin_at(url: &str, file: &RealmFile) -> Run {
    import(
        &[
            "--file",
            file.arg(),
            "--url",
            url,
            "--admin-user",
            "admin",
            "--admin-password",
            "admin",
        ],
        &[],
    )
    .await
}

#[tokio::test]
async fn the_wrapper_script_imports_the_project_realm_and_passes_exit_codes_on() {
    let kc = keycloak(vec![]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../keycloak-realm/import.sh");
    let wrapper = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(script);
        command
            .env_clear()
            .envs(crate::helpers::base_env())
            .env("VOXGATE_BIN", env!("CARGO_BIN_EXE_voxgate"))
            .env("KEYCLOAK_URL", kc.base_url())
            .env("KEYCLOAK_ADMIN_USER", "admin")
            .env("VOXGATE_REALM_ADMIN_PASSWORD", "admin")
            .args(extra);
        command
    };

    let created = run(wrapper(&[])).await;
    created.exits(0);
    created.stdout_starts_with("created realm voxgate");

    let conflict = run(wrapper(&["--if-exists", "fail"])).await;
    conflict.exits(3);
}
