//! Provisioning through voxgate's admin API against the real admin REST
//! API: both sides are checked after every call, Keycloak through its own
//! admin API.

use serde_json::{Value, json};

use super::{RealStack, spawn_real_stack};
use crate::helpers::{Caller, problem};

fn person(username: &str, roles: &[&str]) -> Value {
    json!({
        "username": username,
        "email": format!("{username}@example.com"),
        "firstName": "Real",
        "lastName": "Person",
        "roles": roles,
        "password": {"value": "a long enough password", "temporary": false}
    })
}

impl RealStack {
    async fn create(&self, token: &str, body: &Value) -> reqwest::Response {
        self.app.caller(token).post("/api/admin/users", body).await
    }

    async fn local_status(&self, username: &str) -> Option<String> {
        sqlx::query_scalar(
            "SELECT status FROM users WHERE username = $1 AND status IN ('pending', 'active') ORDER BY created_at DESC LIMIT 1",
        )
        .bind(username)
        .fetch_optional(&self.app.db)
        .await
        .unwrap()
    }

    async fn patch_user(&self, token: &str, id: &str, body: Value) -> reqwest::Response {
        self.app
            .caller(token)
            .patch(&format!("/api/admin/users/{id}"), &body)
            .await
    }
}

#[tokio::test]
async fn a_user_created_through_voxgate_exists_in_real_keycloak_and_postgres() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    let response = stack.create(&token, &person("Carol", &["agent"])).await;
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["username"], "carol");

    let kc = stack
        .admin
        .user_by_username("carol")
        .await
        .expect("in Keycloak");
    assert_eq!(kc["id"], user["keycloakId"]);
    assert_eq!(kc["email"], "carol@example.com");
    assert_eq!(kc["enabled"], true);
    let kc_id = kc["id"].as_str().unwrap();
    assert!(
        stack
            .admin
            .user_realm_roles(kc_id)
            .await
            .contains(&"agent".into())
    );
    assert_eq!(stack.local_status("carol").await.as_deref(), Some("active"));

    // The real token endpoint accepts the password voxgate set, and the
    // token carries the role voxgate mapped.
    let theirs = stack
        .password_token("carol", "a long enough password")
        .await;
    let me: Value = stack.me(&theirs).await;
    assert_eq!(me["id"], user["id"]);
    assert!(
        me["roles"].as_array().unwrap().contains(&json!("agent")),
        "{me}"
    );
}

#[tokio::test]
async fn a_temporary_password_sets_keycloaks_update_password_action() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    let mut body = person("tess", &["user"]);
    body["password"]["temporary"] = json!(true);
    assert_eq!(stack.create(&token, &body).await.status(), 201);
    let kc = stack.admin.user_by_username("tess").await.unwrap();
    assert_eq!(kc["requiredActions"], json!(["UPDATE_PASSWORD"]));
    // The real server refuses a password grant until the password changes.
    let response = Caller::at("", reqwest::Client::new())
        .post_form(
            &format!("{}/protocol/openid-connect/token", stack.issuer()),
            &[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "tess"),
                ("password", "a long enough password"),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_grant");
}

#[tokio::test]
async fn a_duplicate_in_another_letter_case_is_409_and_changes_nothing() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    // bob is in the realm but has never used voxgate: the conflict is
    // Keycloak's, reported by the real server.
    let bob_before = stack.admin.user_by_username("bob").await.unwrap();
    for (body, field) in [
        (person("BOB", &["user"]), "username"),
        (
            json!({"username": "bobby", "email": "BOB@example.com", "password": {"value": "a long enough password"}}),
            "email",
        ),
    ] {
        let mut body = body;
        if field == "email" {
            // Make the clash on bob's real address.
            body["email"] = json!(
                bob_before["email"]
                    .as_str()
                    .unwrap_or("bob@example.com")
                    .to_uppercase()
            );
        }
        let p = problem(stack.create(&token, &body).await, 409).await;
        assert_eq!(p["field"], field, "{body}");
    }
    assert!(stack.admin.user_by_username("bobby").await.is_none());
    assert_eq!(
        stack.admin.user_by_username("bob").await.unwrap()["id"],
        bob_before["id"],
        "bob untouched"
    );
    let local: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE username IN ('bob', 'bobby')")
            .fetch_one(&stack.app.db)
            .await
            .unwrap();
    assert_eq!(local, 0, "nothing written locally");
}

#[tokio::test]
async fn roles_disable_enable_and_delete_apply_to_both_systems() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    let user: Value = stack
        .create(&token, &person("dave", &["agent"]))
        .await
        .json()
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap();
    let kc_id = user["keycloakId"].as_str().unwrap().to_string();
    let dave = stack.browser_login("dave", "a long enough password").await;
    assert_eq!(stack.me_status(&dave).await, 200);

    // Roles: agent replaced by user, in Keycloak too.
    let r = stack
        .patch_user(&token, id, json!({"roles": ["user"]}))
        .await;
    assert_eq!(r.status(), 200);
    let direct = stack.admin.user_realm_roles(&kc_id).await;
    assert!(
        direct.contains(&"user".into()) && !direct.contains(&"agent".into()),
        "{direct:?}"
    );

    // Disable: Keycloak refuses the user, and the sessions end.
    let r = stack
        .patch_user(&token, id, json!({"enabled": false}))
        .await;
    assert_eq!(r.status(), 200);
    let kc = stack.admin.user_by_username("dave").await.unwrap();
    assert_eq!(kc["enabled"], false);
    assert_eq!(
        stack.admin.user_sessions(&kc_id).await,
        0,
        "Keycloak sessions ended"
    );
    assert_eq!(stack.me_status(&dave).await, 401, "voxgate session ended");
    let refused = Caller::at("", reqwest::Client::new())
        .post_form(
            &format!("{}/protocol/openid-connect/token", stack.issuer()),
            &[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "dave"),
                ("password", "a long enough password"),
            ],
        )
        .await;
    assert_eq!(
        refused.status(),
        400,
        "the real server refuses a disabled user"
    );

    // Enable again: the user can sign in.
    let r = stack.patch_user(&token, id, json!({"enabled": true})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        stack.admin.user_by_username("dave").await.unwrap()["enabled"],
        true
    );
    stack.password_token("dave", "a long enough password").await;

    // Delete: gone from both.
    let r = stack
        .app
        .caller(&token)
        .delete(&format!("/api/admin/users/{id}"))
        .await;
    assert_eq!(r.status(), 204);
    assert!(stack.admin.user_by_username("dave").await.is_none());
    assert_eq!(stack.local_status("dave").await, None);
}

#[tokio::test]
async fn reconcile_reports_drift_made_directly_in_keycloak() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    let jane: Value = stack
        .create(&token, &person("jane", &["agent"]))
        .await
        .json()
        .await
        .unwrap();
    let kc_id = jane["keycloakId"].as_str().unwrap();
    // Drift made by someone in Keycloak's console: jane disabled there,
    // and a user created there that voxgate has never seen.
    let mut kc_jane = stack.admin.user_by_username("jane").await.unwrap();
    kc_jane["enabled"] = json!(false);
    let r = stack
        .admin
        .call(
            reqwest::Method::PUT,
            &format!("/users/{kc_id}"),
            Some(&kc_jane),
        )
        .await;
    assert_eq!(r.status(), 204);
    stack
        .admin
        .create_user("console-made", "a long enough password")
        .await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .env_clear()
        .envs(crate::helpers::base_env())
        .env("DATABASE_URL", &stack.app.database.url)
        .env("VOXGATE_OIDC_ISSUER", stack.issuer())
        .env(
            "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET",
            crate::stack::ADMIN_SECRET,
        )
        .env("VOXGATE_LOG", "warn")
        .args(["users", "reconcile"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "enabled_mismatch",
        "jane",
        "missing_in_voxgate",
        "console-made",
    ] {
        assert!(
            report.contains(expected),
            "report lacks {expected}:\n{report}"
        );
    }
}

/// The user's row as the admin API shows it.
async fn admin_view(stack: &RealStack, token: &str, id: &str) -> Value {
    stack
        .app
        .caller(token)
        .get(&format!("/api/admin/users/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn roles_held_through_a_group_or_composite_are_shown_and_not_silently_kept() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let admin_token = stack.password_token("alice", "alice").await;
    let admin = &stack.admin;
    let agent = admin.get("/roles/agent").await;

    // gwen gets `agent` through a group, hugo through a composite role.
    let r = admin
        .call(
            reqwest::Method::POST,
            "/groups",
            Some(&json!({"name": "agents"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let group = r.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let r = admin
        .call(
            reqwest::Method::POST,
            &format!("/groups/{group}/role-mappings/realm"),
            Some(&json!([agent])),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = admin
        .call(
            reqwest::Method::POST,
            "/roles",
            Some(&json!({"name": "operations", "composite": true, "composites": {"realm": ["agent"]}})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let operations = admin.get("/roles/operations").await;

    let mut people = Vec::new();
    for name in ["gwen", "hugo"] {
        let user: Value = stack
            .create(&admin_token, &person(name, &["user"]))
            .await
            .json()
            .await
            .unwrap();
        let kc_id = user["keycloakId"].as_str().unwrap().to_string();
        let r = if name == "gwen" {
            admin
                .call(
                    reqwest::Method::PUT,
                    &format!("/users/{kc_id}/groups/{group}"),
                    None,
                )
                .await
        } else {
            admin
                .call(
                    reqwest::Method::POST,
                    &format!("/users/{kc_id}/role-mappings/realm"),
                    Some(&json!([operations])),
                )
                .await
        };
        assert_eq!(r.status(), 204);
        people.push((name, user["id"].as_str().unwrap().to_string(), kc_id));
    }

    for (name, id, kc_id) in &people {
        // Their tokens grant agent…
        let token = stack.password_token(name, "a long enough password").await;
        let claims = crate::stack::Stack::claims(&token);
        assert!(
            claims["realm_access"]["roles"]
                .as_array()
                .unwrap()
                .contains(&json!("agent")),
            "{name}: {claims}"
        );
        let me: Value = stack.me(&token).await;
        assert!(
            me["roles"].as_array().unwrap().contains(&json!("agent")),
            "{me}"
        );
        // …and so does the admin API, once voxgate has seen them sign in.
        let view = admin_view(&stack, &admin_token, id).await;
        assert!(
            view["roles"].as_array().unwrap().contains(&json!("agent")),
            "{name}: {view}"
        );

        // Taking agent away here cannot work: it is refused, clearly, and
        // nothing changes on either side.
        let r = stack
            .patch_user(&admin_token, id, json!({"roles": ["user"]}))
            .await;
        let p = problem(r, 409).await;
        assert_eq!(p["field"], "roles");
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("agent") && detail.contains("group or a composite role"),
            "{detail}"
        );
        assert!(
            stack
                .admin
                .user_realm_roles(kc_id)
                .await
                .iter()
                .all(|r| r != "agent"),
            "no direct agent mapping was added or left"
        );
        let again = stack.password_token(name, "a long enough password").await;
        let me: Value = stack.me(&again).await;
        assert!(me["roles"].as_array().unwrap().contains(&json!("agent")));
    }

    // A role held both directly and through the group: the direct mapping
    // is restored and the change refused.
    let (_, gwen_id, gwen_kc) = &people[0];
    let r = stack
        .patch_user(&admin_token, gwen_id, json!({"roles": ["user", "agent"]}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        stack
            .admin
            .user_realm_roles(gwen_kc)
            .await
            .contains(&"agent".to_string())
    );
    let r = stack
        .patch_user(&admin_token, gwen_id, json!({"roles": ["user"]}))
        .await;
    problem(r, 409).await;
    assert!(
        stack
            .admin
            .user_realm_roles(gwen_kc)
            .await
            .contains(&"agent".to_string()),
        "the direct mapping is back"
    );

    // The audit log says why.
    let audit: Value = stack
        .app
        .caller(&admin_token)
        .get(&format!("/api/admin/audit?target={gwen_id}"))
        .await
        .json()
        .await
        .unwrap();
    let refused = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "user.update" && e["outcome"] == "failure")
        .expect("the refusal is audited");
    assert_eq!(
        refused["details"]["heldThroughKeycloak"],
        json!(["agent"]),
        "{refused}"
    );

    // Once the group no longer grants it, the removal goes through and the
    // user's next token lacks the role.
    let r = admin
        .call(
            reqwest::Method::DELETE,
            &format!("/users/{gwen_kc}/groups/{group}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = stack
        .patch_user(&admin_token, gwen_id, json!({"roles": ["user"]}))
        .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert!(
        !view["roles"].as_array().unwrap().contains(&json!("agent")),
        "{view}"
    );
    let token = stack.password_token("gwen", "a long enough password").await;
    let me: Value = stack.me(&token).await;
    assert!(
        !me["roles"].as_array().unwrap().contains(&json!("agent")),
        "{me}"
    );
}

#[tokio::test]
async fn sessions_sign_out_lock_and_password_reset_go_through_the_real_admin_api() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    let user: Value = stack
        .create(&token, &person("rhea", &["user"]))
        .await
        .json()
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap();
    let kc_id = user["keycloakId"].as_str().unwrap();
    stack.password_token("rhea", "a long enough password").await;
    let admin = stack.app.caller(&token);

    let sessions = admin
        .get_json(format!("/api/admin/users/{id}/sessions"))
        .await;
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["clients"], json!(["voxgate-cli"]));
    assert_eq!(sessions[0]["ipAddress"], "127.0.0.1");
    assert!(sessions[0]["startedAt"].as_str().unwrap().starts_with("20"));

    let out = admin
        .post(format!("/api/admin/users/{id}/sign-out"), &json!({}))
        .await;
    assert_eq!(out.status(), 204);
    assert_eq!(stack.admin.user_sessions(kc_id).await, 0);

    let lock = admin.get_json(format!("/api/admin/users/{id}/lock")).await;
    assert_eq!(
        lock,
        json!({"locked": false, "failures": 0, "lastFailureAt": null, "lastFailureIp": null})
    );
    let unlocked = admin.delete(format!("/api/admin/users/{id}/lock")).await;
    assert_eq!(unlocked.status(), 204);

    // Nothing listens on the realm's dev SMTP port here: Keycloak cannot
    // send, and the admin is told so, not asked to retry.
    let reset = admin
        .post(format!("/api/admin/users/{id}/password-reset"), &json!({}))
        .await;
    let reset = problem(reset, 502).await;
    assert!(
        reset["detail"].as_str().unwrap().contains("SMTP"),
        "{reset}"
    );
}

#[tokio::test]
async fn an_email_change_goes_through_the_real_admin_api_and_a_taken_address_is_refused() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    let user: Value = stack
        .create(&token, &person("erin", &["user"]))
        .await
        .json()
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap();
    let changed = stack
        .patch_user(&token, id, json!({"email": "erin.new@example.com"}))
        .await;
    assert_eq!(changed.status(), 200);
    let kc = stack.admin.user_by_username("erin").await.unwrap();
    assert_eq!(kc["email"], "erin.new@example.com");
    assert_eq!(kc["emailVerified"], false);
    // Only in Keycloak (a user voxgate never saw): Keycloak's own 409.
    stack
        .admin
        .create_user("kc-only", "a long enough password")
        .await;
    let refused = stack
        .patch_user(&token, id, json!({"email": "kc-only@example.com"}))
        .await;
    assert_eq!(problem(refused, 409).await["field"], "email");
    assert_eq!(
        stack.admin.user_by_username("erin").await.unwrap()["email"],
        "erin.new@example.com"
    );
}
