use serde_json::{Value, json};
use url::Url;

use crate::admin::{keycloak_base, keycloak_error, segment, shown};
use crate::args::{Failure, IfExists};
use crate::file::RealmFile;
use crate::plan::{Kind, differing_fields};
use crate::report::summarise;

fn file(json: Value) -> RealmFile {
    RealmFile {
        name: json["realm"].as_str().unwrap_or_default().to_string(),
        json,
    }
}

#[test]
fn the_partial_import_body_carries_the_files_resources_untouched() {
    let f = file(json!({
        "realm": "r",
        "accessTokenLifespan": 300,
        "users": [{"username": "u", "someFutureField": {"kept": true}}],
        "clients": [{"clientId": "c"}],
        "roles": {"realm": [{"name": "x"}]}
    }));
    let body = f.partial_import_body(IfExists::Overwrite);
    assert_eq!(body["ifResourceExists"], "OVERWRITE");
    assert_eq!(body["users"][0]["someFutureField"]["kept"], true);
    assert_eq!(body["roles"]["realm"][0]["name"], "x");
    // Realm settings are not part of a partial import.
    assert!(body.get("accessTokenLifespan").is_none());
    assert!(body.get("realm").is_none());
}

#[test]
fn differences_are_the_files_fields_keycloak_holds_otherwise() {
    let file = json!({
        "clientId": "web",
        "redirectUris": ["https://a/*", "https://b/*"],
        "publicClient": false,
        "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "+"},
        "protocolMappers": [{"name": "ignored"}],
        "futureField": 1
    });
    let same = json!({
        "id": "x",
        "clientId": "web",
        "redirectUris": ["https://b/*", "https://a/*"],
        "publicClient": false,
        "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "+", "other": "1"},
        "protocolMappers": []
    });
    assert!(differing_fields(&file, &same, Kind::Client.ignored()).is_empty());
    let mut changed = same.clone();
    changed["redirectUris"] = json!(["https://a/*"]);
    changed["attributes"]["pkce.code.challenge.method"] = json!("plain");
    assert_eq!(
        differing_fields(&file, &changed, Kind::Client.ignored()),
        ["redirectUris", "attributes.pkce.code.challenge.method"]
    );
}

#[test]
fn user_credentials_and_mappings_are_never_compared() {
    let file = json!({"username": "bob", "firstName": "Robert", "credentials": [{"value": "x"}], "realmRoles": ["user"]});
    let current = json!({"id": "1", "username": "bob", "firstName": "Bob", "credentials": [], "realmRoles": []});
    assert_eq!(
        differing_fields(&file, &current, Kind::User.ignored()),
        ["firstName"]
    );
}

#[test]
fn names_in_paths_keep_unreserved_characters_as_they_are() {
    assert_eq!(segment("vg-imp_1.x~"), "vg-imp_1.x~");
    assert_eq!(segment("a/b c%"), "a%2Fb%20c%25");
}

#[test]
fn keycloak_base_refuses_realm_urls_and_other_schemes() {
    assert_eq!(
        keycloak_base("http://kc:8080").unwrap().as_str(),
        "http://kc:8080/"
    );
    assert_eq!(
        keycloak_base("https://kc.example/auth").unwrap().as_str(),
        "https://kc.example/auth/"
    );
    assert!(matches!(
        keycloak_base("http://kc:8080/realms/voxgate"),
        Err(Failure::Usage(_))
    ));
    assert!(matches!(keycloak_base("ftp://kc"), Err(Failure::Usage(_))));
}

#[test]
fn the_shown_url_never_contains_credentials() {
    let u = Url::parse("https://admin:hunter2@kc.example/").unwrap();
    assert_eq!(shown(&u), "https://kc.example/");
}

#[test]
fn keycloak_errors_are_summarised_from_the_known_fields() {
    assert_eq!(
        keycloak_error(
            &json!({"error": "invalid_client", "error_description": "Invalid client credentials"})
        ),
        "invalid_client: Invalid client credentials"
    );
    assert_eq!(
        keycloak_error(&json!({"errorMessage": "User exists with same username"})),
        "User exists with same username"
    );
    assert_eq!(keycloak_error(&Value::Null), "no details");
}

#[test]
fn a_report_with_nothing_added_or_overwritten_says_no_change() {
    let f = file(json!({"realm": "r"}));
    let lines = summarise(
        &f,
        "http://kc/",
        &json!({"added": 0, "overwritten": 0, "skipped": 4, "results": []}),
        &[],
        IfExists::Skip,
        &[],
    );
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("no change: realm r"), "{lines:?}");
    let lines = summarise(
        &f,
        "http://kc/",
        &json!({"added": 1, "overwritten": 0, "skipped": 1, "results": [
            {"action": "ADDED", "resourceType": "USER", "resourceName": "carol"},
            {"action": "SKIPPED", "resourceType": "CLIENT", "resourceName": "web"}
        ]}),
        &[],
        IfExists::Skip,
        &[],
    );
    assert!(lines[0].starts_with("updated realm r"), "{lines:?}");
    assert_eq!(lines.len(), 2, "skipped resources are only counted");
    assert!(lines[1].contains("added") && lines[1].contains("user carol"));
}
