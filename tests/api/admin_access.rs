//! What an admin does day to day beyond creating users: a user's sessions
//! and signing them out everywhere, the brute-force lock and unlocking it,
//! the password-reset email, lists sorted, and the audit log filtered and
//! exported as CSV. Checked on both sides (the Keycloak stand-in's state
//! and Postgres).

use serde_json::{Value, json};

use crate::helpers::{detail_has, problem};
use crate::stack::{REALM, Stack, spawn_stack};

fn user(username: &str) -> Value {
    json!({
        "username": username,
        "email": format!("{username}@example.com"),
        "firstName": "Test",
        "lastName": "Person",
        "roles": ["user"],
        "password": {"value": "a long enough password", "temporary": false}
    })
}

const PASSWORD: &str = "a long enough password";

/// A failed password grant (the helper asserts success).
async fn wrong_password(stack: &Stack, username: &str) -> u16 {
    reqwest::Client::new()
        .post(format!(
            "{}/protocol/openid-connect/token",
            stack.kc.issuer(REALM)
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "voxgate-cli"),
            ("username", username),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn audit_actions(stack: &Stack, token: &str, target: &str) -> Vec<(String, String)> {
    let page = stack
        .app
        .caller(token)
        .get_json(format!("/api/admin/audit?target={target}"))
        .await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_admin_sees_a_users_sessions_and_signs_them_out_everywhere() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let created = stack.app.admin(&token).created(&user("sam")).await;
    let id = created["id"].as_str().unwrap();
    let kc_id = created["keycloakId"].as_str().unwrap().to_string();
    let (sam, _) = stack.browser_login("sam", PASSWORD, "/").await;
    assert_eq!(stack.me_status(&sam).await, 200);
    stack.password_grant("sam", PASSWORD).await;

    let admin = stack.app.caller(&token);
    let sessions = admin
        .get_json(format!("/api/admin/users/{id}/sessions"))
        .await;
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let clients: Vec<&Value> = sessions
        .iter()
        .flat_map(|s| s["clients"].as_array().unwrap())
        .collect();
    assert!(clients.contains(&&json!("voxgate-web")), "{clients:?}");
    assert!(clients.contains(&&json!("voxgate-cli")), "{clients:?}");
    for s in sessions {
        assert_eq!(s["ipAddress"], "127.0.0.1");
        assert!(s["startedAt"].as_str().unwrap().starts_with("20"), "{s}");
        assert!(s["lastAccessAt"].is_string(), "{s}");
    }

    let out = admin
        .post(format!("/api/admin/users/{id}/sign-out"), &json!({}))
        .await;
    assert_eq!(out.status(), 204);
    assert_eq!(
        stack.kc.active_sessions(REALM, &kc_id),
        0,
        "Keycloak's sessions ended"
    );
    assert_eq!(stack.me_status(&sam).await, 401, "voxgate's session ended");
    let sessions = admin
        .get_json(format!("/api/admin/users/{id}/sessions"))
        .await;
    assert_eq!(sessions, json!([]));
    assert!(
        audit_actions(&stack, &token, id)
            .await
            .contains(&("user.sign_out".into(), "success".into()))
    );
}

#[tokio::test]
async fn a_user_locked_out_by_failed_sign_ins_is_shown_locked_and_can_be_unlocked() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let created = stack.app.admin(&token).created(&user("lee")).await;
    let id = created["id"].as_str().unwrap();
    let admin = stack.app.caller(&token);
    let lock = admin.get_json(format!("/api/admin/users/{id}/lock")).await;
    assert_eq!(
        lock,
        json!({"locked": false, "failures": 0, "lastFailureAt": null, "lastFailureIp": null})
    );

    // The realm locks after ten failures (keycloak-realm/realm.json);
    // Keycloak 26.7 answers each with 400 (tests/api/real_keycloak/bearer.rs).
    for _ in 0..10 {
        assert_eq!(wrong_password(&stack, "lee").await, 400);
    }
    let lock = admin.get_json(format!("/api/admin/users/{id}/lock")).await;
    assert_eq!(lock["locked"], true, "{lock}");
    // Counted as Keycloak counts them (quick successive failures lock at
    // once and are not all counted).
    assert!(lock["failures"].as_i64().unwrap() >= 1, "{lock}");
    assert_eq!(lock["lastFailureIp"], "127.0.0.1");
    assert!(lock["lastFailureAt"].as_str().unwrap().starts_with("20"));

    let unlocked = admin.delete(format!("/api/admin/users/{id}/lock")).await;
    assert_eq!(unlocked.status(), 204);
    let lock = admin.get_json(format!("/api/admin/users/{id}/lock")).await;
    assert_eq!(lock["locked"], false);
    assert_eq!(lock["failures"], 0);
    // The right password works again.
    stack.password_grant("lee", PASSWORD).await;
    assert!(
        audit_actions(&stack, &token, id)
            .await
            .contains(&("user.unlock".into(), "success".into()))
    );
}

#[tokio::test]
async fn a_password_reset_email_is_sent_through_keycloak() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let created = stack.app.admin(&token).created(&user("ria")).await;
    let id = created["id"].as_str().unwrap();
    let admin = stack.app.caller(&token);
    let sent = admin
        .post(format!("/api/admin/users/{id}/password-reset"), &json!({}))
        .await;
    assert_eq!(sent.status(), 202);
    let mail = stack
        .kc
        .outbox()
        .into_iter()
        .find(|m| m.to == "ria@example.com")
        .expect("the email was sent");
    assert_eq!(mail.actions, ["UPDATE_PASSWORD"]);
    assert!(
        audit_actions(&stack, &token, id)
            .await
            .contains(&("user.password_reset".into(), "success".into()))
    );

    // A disabled user gets no link.
    stack
        .app
        .admin(&token)
        .update_user(id, &json!({"enabled": false}))
        .await;
    let refused = admin
        .post(format!("/api/admin/users/{id}/password-reset"), &json!({}))
        .await;
    detail_has(&problem(refused, 409).await, "disabled");
}

#[tokio::test]
async fn access_calls_are_refused_to_non_admins_unknown_users_and_forged_requests() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let created = stack.app.admin(&token).created(&user("kim")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let bob = stack.password_token("bob", "bob").await;
    let as_bob = stack.app.caller(&bob);
    let admin = stack.app.caller(&token);
    let paths = |id: &str| {
        [
            ("get", format!("/api/admin/users/{id}/sessions")),
            ("post", format!("/api/admin/users/{id}/sign-out")),
            ("get", format!("/api/admin/users/{id}/lock")),
            ("delete", format!("/api/admin/users/{id}/lock")),
            ("post", format!("/api/admin/users/{id}/password-reset")),
        ]
    };
    async fn call(caller: &crate::helpers::Caller, method: &str, path: &str) -> reqwest::Response {
        match method {
            "get" => caller.get(path).await,
            "post" => caller.post(path, &json!({})).await,
            _ => caller.delete(path).await,
        }
    }
    for (method, path) in paths(&id) {
        problem(call(&as_bob, method, &path).await, 403).await;
        problem(call(&stack.app.anonymous(), method, &path).await, 401).await;
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    for (method, path) in paths(&unknown).into_iter().chain(paths("not-a-uuid")) {
        problem(call(&admin, method, &path).await, 404).await;
    }
    // A cookie session must send its CSRF token to change anything.
    let (client, csrf) = stack.signed_in("alice").await;
    let origin = stack.app.url("");
    for (method, path) in paths(&id).into_iter().filter(|(m, _)| *m != "get") {
        let browser = stack.browser(&client).header("origin", &origin);
        problem(call(&browser, method, &path).await, 403).await;
        let with_token = browser.header("x-csrf-token", &csrf);
        let status = call(&with_token, method, &path).await.status().as_u16();
        assert!(status < 300, "{method} {path} with the token: {status}");
    }
}

#[tokio::test]
async fn users_are_listed_sorted_by_name_creation_or_last_sign_in() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    for name in ["cleo", "abe", "bea"] {
        stack.app.admin(&token).created(&user(name)).await;
    }
    stack.password_grant("bea", PASSWORD).await;
    stack.browser_login("bea", PASSWORD, "/").await;
    let admin = stack.app.caller(&token);
    let names = |page: Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_string())
            .filter(|n| ["abe", "bea", "cleo"].contains(&n.as_str()))
            .collect()
    };
    let list = |sort: &str| admin.get_json(format!("/api/admin/users?sort={sort}&per_page=100"));
    assert_eq!(names(list("username").await), ["abe", "bea", "cleo"]);
    assert_eq!(names(list("-username").await), ["cleo", "bea", "abe"]);
    assert_eq!(names(list("created").await), ["cleo", "abe", "bea"]);
    assert_eq!(names(list("-created").await), ["bea", "abe", "cleo"]);
    let recent = list("-lastSignIn").await;
    assert_eq!(
        names(recent.clone())[0],
        "bea",
        "the one who signed in first"
    );
    assert_eq!(
        recent["items"].as_array().unwrap().last().unwrap()["lastLoginAt"],
        Value::Null,
        "those who never signed in last"
    );
    // Pages of one keep the order and the total.
    let first = admin
        .get_json("/api/admin/users?sort=username&per_page=1&page=1&search=be")
        .await;
    let second = admin
        .get_json("/api/admin/users?sort=username&per_page=1&page=2&search=be")
        .await;
    assert_eq!(first["total"], second["total"]);
    assert_eq!(names(first), ["abe"]);
    assert_eq!(names(second), ["bea"]);
    let bad = admin.get("/api/admin/users?sort=password").await;
    let bad = problem(bad, 422).await;
    detail_has(&bad, "lastSignIn");
    assert_eq!(bad["errors"][0]["field"], "sort");
}

#[tokio::test]
async fn the_audit_log_is_filtered_by_actor_and_exported_as_csv() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let created = stack.app.admin(&token).created(&user("dee")).await;
    let id = created["id"].as_str().unwrap();
    stack
        .app
        .admin(&token)
        .update_user(id, &json!({"firstName": "Dee"}))
        .await;
    let admin = stack.app.caller(&token);
    let by_alice = admin.get_json("/api/admin/audit?actor=ALICE").await;
    let total = by_alice["total"].as_i64().unwrap();
    assert!(total >= 2, "{by_alice}");
    for e in by_alice["items"].as_array().unwrap() {
        assert!(e["actor"].as_str().unwrap().contains("alice"), "{e}");
    }
    let nobody = admin.get_json("/api/admin/audit?actor=nobody%25").await;
    assert_eq!(nobody["total"], 0, "% is a plain character");

    let csv = admin.get("/api/admin/audit/export?actor=alice").await;
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"voxgate-audit-"),
        "{disposition}"
    );
    let body = csv.text().await.unwrap();
    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "id,at,actor,action,target_id,target,outcome,request_id,details"
    );
    assert_eq!(lines.len() as i64, total + 1, "a header and every entry");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"user.update\",") && l.contains("\"\"firstName\"\":\"\"Dee\"\"")),
        "the details, quotes doubled: {body}"
    );
    let only_updates = admin
        .get("/api/admin/audit/export?action=user.update")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(only_updates.matches("\r\n").count(), 2);
    let bob = stack.password_token("bob", "bob").await;
    problem(
        stack.app.caller(&bob).get("/api/admin/audit/export").await,
        403,
    )
    .await;
}

#[tokio::test]
async fn a_pending_creation_is_finished_or_undone_by_an_admin_and_a_failed_one_cleared() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let admin = stack.app.caller(&token);
    // Its last step ran: finishing makes the user active.
    let made = stack.app.admin(&token).created(&user("temp-kc")).await;
    let kc_id = made["keycloakId"].as_str().unwrap().to_string();
    stack
        .app
        .sql("DELETE FROM users WHERE username = 'temp-kc'")
        .await;
    let nearly = stack
        .stuck_creation("temp-kc", "roles_assigned", Some(&kc_id), "5 minutes")
        .await;
    // Stopped half-way: undone in both systems.
    let half = stack
        .stuck_creation("halfway", "local_created", None, "5 minutes")
        .await;
    // Still moving: left to the request running it.
    let young = stack
        .stuck_creation("young", "local_created", None, "1 second")
        .await;

    let pending = admin.get_json("/api/admin/users?status=pending").await;
    assert_eq!(pending["total"], 3);

    let report = admin
        .post(format!("/api/admin/users/{nearly}/recover"), &json!({}))
        .await;
    assert_eq!(report.status(), 200);
    assert_eq!(
        report.json::<Value>().await.unwrap(),
        json!({"finished": 1, "compensated": 0, "pending": 0})
    );
    assert_eq!(
        stack.both_sides("temp-kc").await,
        (true, Some("active".into()))
    );

    let report: Value = admin
        .post(format!("/api/admin/users/{half}/recover"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        report,
        json!({"finished": 0, "compensated": 1, "pending": 0})
    );
    assert_eq!(stack.both_sides("halfway").await, (false, None));

    let running = admin
        .post(format!("/api/admin/users/{young}/recover"), &json!({}))
        .await;
    detail_has(&problem(running, 409).await, "still running");
    let active = admin
        .post(format!("/api/admin/users/{nearly}/recover"), &json!({}))
        .await;
    detail_has(&problem(active, 409).await, "not a pending creation");

    // The undone creation is listed as failed until cleared.
    let failed = admin.get_json("/api/admin/users?status=failed").await;
    assert_eq!(failed["items"][0]["username"], "halfway");
    let cleared = admin.delete(format!("/api/admin/users/{half}")).await;
    assert_eq!(cleared.status(), 204);
    let failed = admin.get_json("/api/admin/users?status=failed").await;
    assert_eq!(failed["total"], 0);
    let actions = audit_actions(&stack, &token, &half).await;
    assert!(
        actions.contains(&("user.delete".into(), "success".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("user.create".into(), "failure".into())),
        "{actions:?}"
    );

    let bob = stack.password_token("bob", "bob").await;
    problem(
        stack
            .app
            .caller(&bob)
            .post(format!("/api/admin/users/{young}/recover"), &json!({}))
            .await,
        403,
    )
    .await;
}

#[tokio::test]
async fn the_reconcile_report_shows_drift_and_its_fix_repairs_it() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let admin = stack.app.caller(&token);
    // A voxgate user whose Keycloak account vanished.
    stack
        .app
        .sql("INSERT INTO users (keycloak_id, username, email) VALUES ('gone-from-keycloak', 'ghost', 'ghost@example.com')")
        .await;
    let report = admin.get_json("/api/admin/reconcile").await;
    let ghost = report
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["username"] == "ghost")
        .cloned()
        .expect("the ghost is reported");
    assert_eq!(ghost["fixed"], Value::Null);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM users WHERE username = 'ghost' AND status = 'active'")
            .await,
        1,
        "a report changes nothing"
    );

    let fixed = admin.post("/api/admin/reconcile", &json!({})).await;
    assert_eq!(fixed.status(), 200);
    let fixed: Value = fixed.json().await.unwrap();
    let ghost = fixed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["username"] == "ghost")
        .unwrap();
    assert!(ghost["fixed"].is_string(), "{ghost}");
    let again = admin.get_json("/api/admin/reconcile").await;
    assert!(
        !again
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["username"] == "ghost"),
        "{again}"
    );
    let audit = admin
        .get_json("/api/admin/audit?action=users.reconcile")
        .await;
    assert!(
        audit["items"][0]["actor"]
            .as_str()
            .unwrap()
            .contains("alice")
    );
    let bob = stack.password_token("bob", "bob").await;
    problem(
        stack.app.caller(&bob).get("/api/admin/reconcile").await,
        403,
    )
    .await;
    problem(
        stack
            .app
            .caller(&bob)
            .post("/api/admin/reconcile", &json!({}))
            .await,
        403,
    )
    .await;
}

#[tokio::test]
async fn an_email_change_reaches_both_systems_and_a_taken_address_changes_nothing() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let created = stack.app.admin(&token).created(&user("eve")).await;
    let id = created["id"].as_str().unwrap();
    let admin = stack.app.admin(&token);

    let changed = admin
        .update_user(id, &json!({"email": "Eve.New@Example.COM"}))
        .await;
    assert_eq!(changed.status(), 200);
    let view: Value = changed.json().await.unwrap();
    assert_eq!(
        view["email"], "eve.new@example.com",
        "in lower case, as Keycloak keeps it"
    );
    let kc = stack.kc.user_by_username(REALM, "eve").unwrap();
    // Keycloak keeps addresses in lower case.
    assert_eq!(kc["email"], "eve.new@example.com");
    assert_eq!(kc["emailVerified"], false, "a new address is not verified");
    let audit = audit_actions(&stack, &token, id).await;
    assert!(audit.contains(&("user.update".into(), "success".into())));

    // Taken by another user, in any case: refused, neither side changed.
    for taken in ["bob@example.com", "BOB@example.com"] {
        let refused = admin.update_user(id, &json!({"email": taken})).await;
        let refused = problem(refused, 409).await;
        assert_eq!(refused["field"], "email", "{refused}");
    }
    assert_eq!(
        stack.kc.user_by_username(REALM, "eve").unwrap()["email"],
        "eve.new@example.com"
    );
    let bad = admin
        .update_user(id, &json!({"email": "not an address"}))
        .await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "email");
}
