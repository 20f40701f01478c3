//! Realm loading: every captured Keycloak export imports and serves, imported password hashes
//! verify, the project realm's seeded users and roles are there, and a bad realm file is
//! refused with an error naming the field.

use keycloak_standin::{Standin, StandinConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    client, discovery_url, fetch, fixture, fixtures_dir, post_token, project_realm_json,
    start_voxgate,
};
use crate::jwt::{claims, str_field};

#[tokio::test]
async fn every_fixture_realm_loads_and_serves_discovery() {
    let mut loaded = 0;
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !name.starts_with("realm-") {
            continue;
        }
        let realm = fixture(&name)["realm"]
            .as_str()
            .expect("realm name")
            .to_string();
        let kc = Standin::start(StandinConfig {
            realm_files: vec![path.clone()],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{name} loads: {e:#}"));
        let doc: Value = fetch(&client(), discovery_url(&kc, &realm))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(doc["issuer"], json!(kc.issuer(&realm)), "{name}");
        loaded += 1;
    }
    assert!(
        loaded >= 4,
        "expected the four fixture realms, loaded {loaded}"
    );
}

#[tokio::test]
async fn fixture_users_can_sign_in_with_their_imported_passwords() {
    let kc = Standin::start(StandinConfig {
        realm_files: vec![
            fixtures_dir().join("realm-keycloak-quickstarts-jakarta-jaxrs-resource-server.json"),
        ],
        ..Default::default()
    })
    .await
    .expect("start");
    let (status, body, _) = post_token(
        &kc,
        "quickstart",
        &[
            ("grant_type", "password"),
            ("client_id", "jakarta-jaxrs-resource-server"),
            ("client_secret", "secret"),
            ("username", "alice"),
            ("password", "alice"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = claims(str_field(&body, "access_token"));
    assert_eq!(
        c["realm_access"]["roles"],
        json!(["user", "offline_access"])
    );
    assert_eq!(
        c["resource_access"]["account"]["roles"],
        json!(["manage-account", "manage-account-links"])
    );
    assert_eq!(c["aud"], json!("account"));
}

#[tokio::test]
async fn project_realm_loads_with_seeded_users_and_roles() {
    let kc = start_voxgate().await;
    let alice = kc.user_by_username("voxgate", "alice").expect("alice");
    assert_eq!(alice["enabled"], json!(true));
    assert_eq!(alice["requiredActions"], json!([]));
    let roles = kc.user_realm_roles("voxgate", alice["id"].as_str().expect("id"));
    assert!(
        roles.contains(&"admin".to_string())
            && roles.contains(&"default-roles-voxgate".to_string())
    );
    let bob = kc
        .user_by_username("voxgate", "BOB")
        .expect("usernames are case-insensitive");
    assert_eq!(bob["email"], json!("bob@example.com"));
    assert!(
        kc.user_by_username("voxgate", "service-account-voxgate-admin")
            .is_some()
    );
}

#[tokio::test]
async fn invalid_realm_file_error_names_the_field() {
    let mut realm = project_realm_json();
    realm["clients"][2]["redirectUris"] = json!("http://x/*");
    let err = Standin::start(StandinConfig {
        realm_jsons: vec![realm],
        ..Default::default()
    })
    .await
    .err()
    .map(|e| format!("{e:#}"))
    .expect("import fails");
    assert!(
        err.contains("clients[2].redirectUris: expected array of strings"),
        "{err}"
    );
}
