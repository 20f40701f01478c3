//! The admin REST API as the application and an operator use it: creating and searching users,
//! role mappings, updates and password resets, conflicts, error bodies and statuses, the
//! master realm's admin across realms, execute-actions e-mail, and partial import.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    admin_delete, admin_get, admin_get_json, admin_json, admin_post, admin_put, admin_request,
    admin_search, admin_token, admin_url, answers, client, create_voxgate_user, discovery_url,
    fetch, location, master_admin_token, password_access_token, password_token, project_realm_json,
    start_voxgate, start_with_json, submit_new_password, voxgate_user_id,
};
use crate::jwt::keys_of;

#[tokio::test]
async fn service_account_creates_a_user_and_assigns_realm_roles() {
    let kc = start_voxgate().await;
    let token = admin_token(&kc).await;
    let base = admin_url(&kc, "/voxgate");
    let http = client();
    let created = create_voxgate_user(&http, &kc, &token, &json!({"username": "Dave", "email": "Dave@Example.com", "firstName": "Dave", "enabled": true, "realmRoles": ["admin"]})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let loc = location(&created);
    let id = loc.rsplit('/').next().expect("id").to_string();
    assert_eq!(loc, format!("{base}/users/{id}"));
    assert!(created.text().await.expect("body").is_empty());
    assert_eq!(
        kc.user_realm_roles("voxgate", &id),
        ["default-roles-voxgate"],
        "realmRoles in the body are ignored"
    );

    let found = admin_search(
        &http,
        format!("{base}/users"),
        &token,
        &[("username", "dave"), ("exact", "true")],
    )
    .await;
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0]["username"], json!("dave"));
    assert_eq!(found[0]["email"], json!("dave@example.com"));

    let count = admin_get(&http, format!("{base}/users/count"), &token)
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(count, "3");

    let role = admin_get_json(&http, format!("{base}/roles/agent"), &token).await;
    assert_eq!(role["name"], json!("agent"));
    let agent_mapping = json!([{"id": role["id"], "name": "agent"}]);
    let mapped = admin_post(
        &http,
        format!("{base}/users/{id}/role-mappings/realm"),
        &token,
        &agent_mapping,
    )
    .await;
    assert_eq!(mapped.status(), StatusCode::NO_CONTENT);
    let roles = admin_get_json(
        &http,
        format!("{base}/users/{id}/role-mappings/realm"),
        &token,
    )
    .await;
    let names: Vec<&str> = roles
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["default-roles-voxgate", "agent"]);
    assert_eq!(
        keys_of(&roles[1]),
        [
            "id",
            "name",
            "description",
            "composite",
            "clientRole",
            "containerId"
        ]
    );
    let effective = admin_get_json(
        &http,
        format!("{base}/users/{id}/role-mappings/realm/composite"),
        &token,
    )
    .await;
    assert!(
        effective
            .as_array()
            .expect("array")
            .iter()
            .any(|r| r["name"] == json!("user"))
    );
    let removed = admin_request(
        &http,
        Method::DELETE,
        format!("{base}/users/{id}/role-mappings/realm"),
        &token,
        Some(&agent_mapping),
    )
    .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        kc.user_realm_roles("voxgate", &id),
        ["default-roles-voxgate"]
    );

    let updated = admin_put(
        &http,
        format!("{base}/users/{id}"),
        &token,
        &json!({"enabled": false}),
    )
    .await;
    assert_eq!(updated.status(), StatusCode::NO_CONTENT);
    let rep = admin_get_json(&http, format!("{base}/users/{id}"), &token).await;
    assert_eq!(rep["enabled"], json!(false));
    assert_eq!(rep["firstName"], json!("Dave"));
    let reset = admin_put(
        &http,
        format!("{base}/users/{id}/reset-password"),
        &token,
        &json!({"type": "password", "value": "pw-12345", "temporary": true}),
    )
    .await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        kc.user_by_username("voxgate", "dave").expect("dave")["requiredActions"],
        json!(["UPDATE_PASSWORD"])
    );
    let deleted = admin_delete(&http, format!("{base}/users/{id}"), &token).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = admin_get(&http, format!("{base}/users/{id}"), &token).await;
    answers(
        gone,
        StatusCode::NOT_FOUND,
        json!({"error": "User not found"}),
    )
    .await;
}

#[tokio::test]
async fn duplicate_username_or_email_conflicts_in_any_case() {
    let kc = start_voxgate().await;
    let token = admin_token(&kc).await;
    for (body, message) in [
        (
            json!({"username": "ALICE"}),
            "User exists with same username",
        ),
        (
            json!({"username": "alice2", "email": "ALICE@example.COM"}),
            "User exists with same email",
        ),
        (json!({"username": ""}), "User name is missing"),
    ] {
        let resp = create_voxgate_user(&client(), &kc, &token, &body).await;
        let expected = if message == "User name is missing" {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(resp.status(), expected);
        assert_eq!(
            resp.json::<Value>().await.expect("json"),
            json!({"errorMessage": message})
        );
    }
    let bob_id = voxgate_user_id(&kc, "bob");
    let clash = admin_put(
        &client(),
        admin_url(&kc, &format!("/voxgate/users/{bob_id}")),
        &token,
        &json!({"email": "Alice@Example.com"}),
    )
    .await;
    answers(
        clash,
        StatusCode::CONFLICT,
        json!({"errorMessage": "User exists with same email"}),
    )
    .await;
}

#[tokio::test]
async fn admin_api_errors_match_keycloak() {
    let kc = start_voxgate().await;
    let base = admin_url(&kc, "/voxgate");
    let http = client();
    let anonymous = fetch(&http, format!("{base}/users")).await;
    answers(
        anonymous,
        StatusCode::UNAUTHORIZED,
        json!({"error": "HTTP 401 Unauthorized"}),
    )
    .await;
    let garbage = admin_get(&http, format!("{base}/users"), "not.a.token").await;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    let user_token = password_access_token(&kc, "alice", "alice").await;
    let forbidden = admin_get(&http, format!("{base}/users"), &user_token).await;
    answers(
        forbidden,
        StatusCode::FORBIDDEN,
        json!({"error": "HTTP 403 Forbidden"}),
    )
    .await;
    let token = admin_token(&kc).await;
    let cases = [
        (
            format!("{base}/users/00000000-0000-0000-0000-000000000000"),
            json!({"error": "User not found"}),
        ),
        (
            format!("{base}/roles/no-such-role"),
            json!({"error": "Could not find role"}),
        ),
        (
            format!("{base}/no/such/route"),
            json!({"error": "HTTP 404 Not Found"}),
        ),
        (
            admin_url(&kc, "/nope/users"),
            json!({"error": "Realm not found."}),
        ),
    ];
    for (url, body) in cases {
        let resp = admin_get(&http, &url, &token).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{url}");
        assert_eq!(resp.json::<Value>().await.expect("json"), body, "{url}");
    }
    let bob_id = voxgate_user_id(&kc, "bob");
    let wrong_id = admin_post(
        &http,
        format!("{base}/users/{bob_id}/role-mappings/realm"),
        &token,
        &json!([{"id": "wrong", "name": "agent"}]),
    )
    .await;
    answers(
        wrong_id,
        StatusCode::NOT_FOUND,
        json!({"error": "Role not found"}),
    )
    .await;
    let missing_password = admin_put(
        &http,
        format!("{base}/users/{bob_id}/reset-password"),
        &token,
        &json!({"type": "password"}),
    )
    .await;
    answers(
        missing_password,
        StatusCode::BAD_REQUEST,
        json!({"error": "No password provided"}),
    )
    .await;
    // Mapping an admin role the caller does not hold is refused.
    let clients = admin_get_json(&http, format!("{base}/clients"), &token).await;
    assert_eq!(clients, json!({"error": "HTTP 403 Forbidden"}));
}

#[tokio::test]
async fn master_realm_admin_manages_every_realm() {
    let kc = start_voxgate().await;
    let token = master_admin_token(&kc).await;
    let http = client();
    let clients = admin_search(
        &http,
        admin_url(&kc, "/voxgate/clients"),
        &token,
        &[("clientId", "voxgate-web")],
    )
    .await;
    assert_eq!(clients[0]["clientId"], json!("voxgate-web"));
    let web_uuid = clients[0]["id"].as_str().expect("uuid").to_string();
    let roles = admin_get_json(
        &http,
        admin_url(&kc, &format!("/voxgate/clients/{web_uuid}/roles")),
        &token,
    )
    .await;
    assert_eq!(roles, json!([]));
    let created = admin_post(
        &http,
        admin_url(&kc, ""),
        &token,
        &json!({"realm": "extra", "enabled": true}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let dup = admin_post(
        &http,
        admin_url(&kc, ""),
        &token,
        &json!({"realm": "extra"}),
    )
    .await;
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let realm = admin_get_json(&http, admin_url(&kc, "/extra"), &token).await;
    assert_eq!(realm["realm"], json!("extra"));
    let deleted = admin_delete(&http, admin_url(&kc, "/extra"), &token).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = fetch(&client(), discovery_url(&kc, "extra")).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn execute_actions_email_is_captured_and_its_link_sets_the_password() {
    let kc = start_voxgate().await;
    let token = admin_token(&kc).await;
    let base = admin_url(&kc, "/voxgate");
    let http = client();
    let created = create_voxgate_user(
        &http,
        &kc,
        &token,
        &json!({"username": "erin", "email": "erin@example.com", "enabled": true}),
    )
    .await;
    let id = location(&created)
        .rsplit('/')
        .next()
        .expect("id")
        .to_string();
    let sent = http
        .put(format!("{base}/users/{id}/execute-actions-email"))
        .query(&[
            ("client_id", "voxgate-web"),
            ("redirect_uri", "http://127.0.0.1:8080/welcome"),
        ])
        .bearer_auth(&token)
        .json(&json!(["UPDATE_PASSWORD", "VERIFY_EMAIL"]))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    let outbox = kc.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].to, "erin@example.com");
    assert_eq!(outbox[0].user_id, id);
    assert_eq!(outbox[0].actions, ["UPDATE_PASSWORD", "VERIFY_EMAIL"]);
    let page = fetch(&http, &outbox[0].link).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    let done = submit_new_password(&http, &html, "erin-pass-1", "erin-pass-1").await;
    assert!(
        done.text()
            .await
            .expect("html")
            .contains("Your account has been updated.")
    );
    assert_eq!(
        kc.user_by_username("voxgate", "erin").expect("erin")["emailVerified"],
        json!(true)
    );
    password_token(&kc, "erin", "erin-pass-1").await;
    let invalid = admin_put(
        &http,
        format!("{base}/users/{id}/execute-actions-email"),
        &token,
        &json!(["FLY"]),
    )
    .await;
    assert_eq!(
        invalid.json::<Value>().await.expect("json"),
        json!({"errorMessage": "Provided invalid required actions"})
    );

    let mut no_smtp = project_realm_json();
    no_smtp
        .as_object_mut()
        .expect("object")
        .remove("smtpServer");
    let kc2 = start_with_json(no_smtp).await;
    let token2 = admin_token(&kc2).await;
    let bob_id = voxgate_user_id(&kc2, "bob");
    let failed = admin_put(
        &client(),
        admin_url(
            &kc2,
            &format!("/voxgate/users/{bob_id}/execute-actions-email"),
        ),
        &token2,
        &json!(["UPDATE_PASSWORD"]),
    )
    .await;
    answers(
        failed,
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"errorMessage": "Failed to send execute actions email"}),
    )
    .await;
}

#[tokio::test]
async fn partial_import_adds_skips_and_overwrites_users() {
    let kc = start_voxgate().await;
    let token = master_admin_token(&kc).await;
    let url = admin_url(&kc, "/voxgate/partialImport");
    let payload = |policy: &str| json!({"ifResourceExists": policy, "users": [{"username": "alice", "firstName": "Alicia", "enabled": true}, {"username": "frank", "enabled": true}], "roles": {"realm": [{"name": "auditor"}]}});
    let failed = admin_post(&client(), &url, &token, &payload("FAIL")).await;
    assert_eq!(failed.status(), StatusCode::CONFLICT);
    assert!(
        kc.user_by_username("voxgate", "frank").is_none(),
        "FAIL imports nothing"
    );
    let skipped = admin_json(
        &client(),
        Method::POST,
        &url,
        &token,
        Some(&payload("SKIP")),
    )
    .await;
    assert_eq!(
        (
            skipped["added"].clone(),
            skipped["skipped"].clone(),
            skipped["overwritten"].clone()
        ),
        (json!(2), json!(1), json!(0))
    );
    let frank = skipped["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["resourceName"] == json!("frank"))
        .expect("frank")
        .clone();
    assert_eq!(
        keys_of(&frank),
        ["action", "resourceType", "resourceName", "id"]
    );
    assert_eq!(
        (frank["action"].clone(), frank["resourceType"].clone()),
        (json!("ADDED"), json!("USER"))
    );
    let over = admin_json(
        &client(),
        Method::POST,
        &url,
        &token,
        Some(&payload("OVERWRITE")),
    )
    .await;
    assert_eq!(over["overwritten"], json!(3));
    assert_eq!(
        kc.user_by_username("voxgate", "alice").expect("alice")["firstName"],
        json!("Alicia")
    );
}
