//! Admin provisioning: users exist in Keycloak and Postgres together or in
//! neither, checked on both sides after every call.

use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::problem;
use crate::helpers::{Caller, detail_has};
use crate::stack::{REALM, Stack, spawn_stack};

impl Stack {
    pub async fn admin_token(&self) -> String {
        self.password_token("alice", "alice").await
    }

    /// (exists in Keycloak, local status) for a username.
    pub async fn both_sides(&self, username: &str) -> (bool, Option<String>) {
        let in_kc = self.kc.user_by_username(REALM, username).is_some();
        let local: Option<String> = sqlx::query_scalar(
            "SELECT status FROM users WHERE username = $1 AND status IN ('pending', 'active') ORDER BY created_at DESC LIMIT 1",
        )
        .bind(username)
        .fetch_optional(&self.app.db)
        .await
        .unwrap();
        (in_kc, local)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.app.count(sql).await
    }

    /// A creation that stopped after its `step` `ago` (a crash): a pending row
    /// and its job, with `kc_id` if the Keycloak user was made.
    pub async fn stuck_creation(
        &self,
        name: &str,
        step: &str,
        kc_id: Option<&str>,
        ago: &str,
    ) -> String {
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO users (username, email, keycloak_id, status) VALUES ($1, $1 || '@example.com', $2, 'pending') RETURNING id",
        )
        .bind(name)
        .bind(kc_id)
        .fetch_one(&self.app.db)
        .await
        .unwrap();
        sqlx::query(&format!(
            "INSERT INTO provisioning_jobs (user_id, step, keycloak_id, roles, actor, created_at, updated_at)
             VALUES ($1, $2, $3, '{{agent}}', 'alice', now() - interval '{ago}', now() - interval '{ago}')"
        ))
        .bind(id)
        .bind(step)
        .bind(kc_id)
        .execute(&self.app.db)
        .await
        .unwrap();
        id.to_string()
    }
}

fn carol(username: &str) -> Value {
    json!({
        "username": username,
        "email": format!("{username}@example.com"),
        "firstName": "Carol",
        "lastName": "Jones",
        "roles": ["agent"],
        "password": {"value": "a long enough password", "temporary": false}
    })
}

#[tokio::test]
async fn creating_a_user_puts_it_in_both_systems_with_its_roles() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let response = stack.app.admin(&token).create_user(&carol("Carol")).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["username"], "carol");
    assert_eq!(user["status"], "active");
    assert_eq!(user["roles"], json!(["agent"]));
    assert_eq!(
        location,
        format!("/api/admin/users/{}", user["id"].as_str().unwrap())
    );

    let kc = stack
        .kc
        .user_by_username(REALM, "carol")
        .expect("in Keycloak");
    assert_eq!(kc["id"], user["keycloakId"]);
    assert_eq!(kc["email"], "carol@example.com");
    assert_eq!(kc["enabled"], true);
    let roles = stack.kc.user_realm_roles(REALM, kc["id"].as_str().unwrap());
    assert!(roles.contains(&"agent".to_string()), "{roles:?}");
    assert_eq!(
        stack.both_sides("carol").await,
        (true, Some("active".into()))
    );
    let jobs = stack.count("SELECT count(*) FROM provisioning_jobs").await;
    assert_eq!(jobs, 0, "no job left behind");

    // The new user can sign in with the password that was set.
    let their_token = stack
        .password_token("carol", "a long enough password")
        .await;
    let me: Value = stack.app.caller(&their_token).get_json("/api/me").await;
    assert_eq!(me["id"], user["id"], "the login finds the provisioned row");
    assert_eq!(me["roles"], json!(["agent", "user"]));

    let audit: Value = stack
        .app
        .caller(&token)
        .get_json("/api/admin/audit?action=user.create")
        .await;
    let entry = &audit["items"][0];
    assert_eq!(entry["outcome"], "success");
    assert_eq!(entry["actor"], "alice");
    assert_eq!(entry["target"], "carol");
    assert!(entry["requestId"].as_str().is_some());
}

#[tokio::test]
async fn a_temporary_password_makes_keycloak_require_a_new_one() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let mut body = carol("tess");
    body["password"]["temporary"] = json!(true);
    stack.app.admin(&token).created(&body).await;
    let kc = stack.kc.user_by_username(REALM, "tess").unwrap();
    assert_eq!(kc["requiredActions"], json!(["UPDATE_PASSWORD"]));
}

#[tokio::test]
async fn an_invite_sends_keycloaks_actions_email() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let body = json!({"username": "ivy", "email": "ivy@example.com", "sendInvite": true});
    let response = stack.app.admin(&token).create_user(&body).await;
    assert_eq!(response.status(), 201);
    let mail = stack
        .kc
        .outbox()
        .into_iter()
        .find(|m| m.to == "ivy@example.com")
        .expect("invitation captured");
    assert_eq!(mail.actions, ["UPDATE_PASSWORD", "VERIFY_EMAIL"]);
    assert_eq!(stack.both_sides("ivy").await, (true, Some("active".into())));
}

#[tokio::test]
async fn a_non_admin_gets_403_and_nothing_is_written_anywhere() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let response = stack.app.admin(&bob).create_user(&carol("mallory")).await;
    let body = problem(response, 403).await;
    detail_has(&body, "admin");
    assert_eq!(stack.both_sides("mallory").await, (false, None));
    assert_eq!(stack.count("SELECT count(*) FROM audit_log").await, 0);
    assert_eq!(
        stack.count("SELECT count(*) FROM provisioning_jobs").await,
        0
    );
    for path in ["/api/admin/users", "/api/admin/roles", "/api/admin/audit"] {
        let r = stack.app.caller(&bob).get(path).await;
        assert_eq!(r.status(), 403, "{path}");
    }
    let anonymous = stack.app.anonymous().get("/api/admin/users").await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn duplicates_in_either_system_and_any_case_are_409_and_change_nothing() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    // Local-only user (signed in before, not created here).
    stack.app.sql("INSERT INTO users (keycloak_id, username, email) VALUES ('kc-dora', 'dora', 'dora@example.com')").await;
    // The admin's own row appears at their first call; count after it.
    assert_eq!(stack.app.bearer_status(&token).await, 200);
    let users_before = stack.count("SELECT count(*) FROM users").await;
    let kc_bob = stack.kc.user_by_username(REALM, "bob").unwrap();
    let cases = [
        (
            json!({"username": "ALICE", "email": "new1@example.com", "password": {"value": "a long enough password"}}),
            "username",
        ),
        (
            json!({"username": "alice2", "email": "Alice@Example.COM", "password": {"value": "a long enough password"}}),
            "email",
        ),
        (
            json!({"username": "Dora", "email": "new2@example.com", "password": {"value": "a long enough password"}}),
            "username",
        ),
        (
            json!({"username": "bob", "email": "bob@example.com", "password": {"value": "a long enough password"}}),
            "username",
        ),
    ];
    for (body, field) in cases {
        let response = stack.app.admin(&token).create_user(&body).await;
        let problem = problem(response, 409).await;
        assert_eq!(problem["field"], field, "{body}");
    }
    assert_eq!(
        stack.count("SELECT count(*) FROM users").await,
        users_before
    );
    assert!(stack.kc.user_by_username(REALM, "alice2").is_none());
    assert_eq!(
        stack.kc.user_by_username(REALM, "bob").unwrap()["id"],
        kc_bob["id"],
        "bob untouched"
    );
}

#[tokio::test]
async fn every_validation_error_names_its_field() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let ok = carol("valid");
    let patches: Vec<(&str, Value, &str)> = vec![
        ("username", json!("x"), "username"),
        ("username", json!("has space"), "username"),
        ("email", json!("not-an-email"), "email"),
        ("firstName", json!("<b>bold</b>"), "firstName"),
        ("lastName", json!("x".repeat(300)), "lastName"),
        ("roles", json!(["overlord"]), "roles"),
        ("password", json!({"value": "short"}), "password"),
        ("sendInvite", json!(true), "password"),
    ];
    let cases: Vec<(Value, &str)> = patches
        .into_iter()
        .map(|(key, value, field)| {
            let mut body = ok.clone();
            body[key] = value;
            (body, field)
        })
        .collect();
    for (body, field) in cases {
        let response = stack.app.admin(&token).create_user(&body).await;
        let p = problem(response, 422).await;
        let fields: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{body}: {p}");
    }
    let mut unknown = ok.clone();
    unknown["isAdmin"] = json!(true);
    let p = problem(stack.app.admin(&token).create_user(&unknown).await, 422).await;
    detail_has(&p, "isAdmin");
    let mut no_password = ok.clone();
    no_password.as_object_mut().unwrap().remove("password");
    problem(stack.app.admin(&token).create_user(&no_password).await, 422).await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM users WHERE username = 'valid'")
            .await,
        0
    );
    assert!(stack.kc.user_by_username(REALM, "valid").is_none());
}

#[tokio::test]
async fn malformed_oversize_and_mistyped_bodies_get_specific_problems() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let client = reqwest::Client::new();
    let url = stack.app.url("/api/admin/users");
    let malformed = Caller::at("", client.clone())
        .bearer(&token)
        .post_raw(&url, Some("application/json"), "{\"username\": ")
        .await;
    let p = problem(malformed, 400).await;
    detail_has(&p, "not valid JSON");
    let no_type = Caller::at("", client.clone())
        .bearer(&token)
        .post_raw(&url, None, "{}")
        .await;
    let p = problem(no_type, 400).await;
    detail_has(&p, "Content-Type");
    let wrong_shape = Caller::at("", client.clone())
        .bearer(&token)
        .post(&url, &json!({"username": 42}))
        .await;
    problem(wrong_shape, 422).await;
    let huge =
        json!({"username": "big", "email": "big@example.com", "firstName": "x".repeat(70 * 1024)});
    let oversize = Caller::at("", client.clone())
        .bearer(&token)
        .post(&url, &huge)
        .await;
    problem(oversize, 413).await;
    let bad_id = Caller::at("", client.clone())
        .bearer(&token)
        .get(&stack.app.url("/api/admin/users/not-a-uuid"))
        .await;
    problem(bad_id, 404).await;
    let bad_query = Caller::at("", client.clone())
        .bearer(&token)
        .get(&stack.app.url("/api/admin/users?page=zero"))
        .await;
    let p = problem(bad_query, 400).await;
    detail_has(&p, "page");
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_result() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let send = |body: Value| {
        let token = token.clone();
        let url = stack.app.url("/api/admin/users");
        async move {
            Caller::at("", reqwest::Client::new())
                .bearer(token)
                .header("idempotency-key", "create-carol-1")
                .post(&url, &body)
                .await
        }
    };
    let first = send(carol("carol")).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send(carol("carol")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM users WHERE username = 'carol'")
            .await,
        1
    );
    let different = send(carol("carol2")).await;
    let p = problem(different, 422).await;
    detail_has(&p, "different request body");
    assert!(stack.kc.user_by_username(REALM, "carol2").is_none());
}

#[tokio::test]
async fn n_admin_calls_cost_one_service_account_token() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    for name in ["tok1", "tok2", "tok3"] {
        stack.app.admin(&token).created(&carol(name)).await;
    }
    assert_eq!(
        stack
            .kc
            .token_requests(REALM, "client_credentials", "voxgate-admin"),
        1
    );
}

/// Where a fault can be injected into the creation saga.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Keycloak {
        method: &'static str,
        path: &'static str,
        times: usize,
        status: u16,
    },
    KeycloakWithCompensation {
        method: &'static str,
        path: &'static str,
    },
    Postgres {
        stage: &'static str,
    },
}

impl Fault {
    /// `times` failures of `method path` with `status`.
    const fn keycloak(
        method: &'static str,
        path: &'static str,
        times: usize,
        status: u16,
    ) -> Fault {
        Fault::Keycloak {
            method,
            path,
            times,
            status,
        }
    }
}

const FAULTS: &[Fault] = &[
    Fault::keycloak("GET", "/admin/realms/voxgate/users", 3, 503),
    Fault::keycloak("POST", "/admin/realms/voxgate/users", 1, 500),
    Fault::keycloak("POST", "/admin/realms/voxgate/users", 1, 400),
    Fault::keycloak("PUT", "reset-password", 1, 500),
    Fault::keycloak("PUT", "reset-password", 3, 500),
    Fault::keycloak("PUT", "reset-password", 1, 400),
    Fault::keycloak("PUT", "reset-password", 1, 403),
    Fault::keycloak("GET", "/admin/realms/voxgate/roles", 3, 502),
    Fault::keycloak("POST", "role-mappings/realm", 3, 500),
    Fault::keycloak("POST", "role-mappings/realm", 1, 404),
    Fault::KeycloakWithCompensation {
        method: "PUT",
        path: "reset-password",
    },
    Fault::KeycloakWithCompensation {
        method: "POST",
        path: "role-mappings/realm",
    },
    Fault::Postgres {
        stage: "keycloak_created",
    },
    Fault::Postgres { stage: "roles" },
    Fault::Postgres { stage: "activate" },
];

/// Arms a trigger that fails one Postgres write of the saga for users
/// whose name starts with `pgfail`.
async fn arm_postgres_fault(db: &sqlx::PgPool, stage: &str) {
    let (table, when) = match stage {
        "keycloak_created" => ("provisioning_jobs", "NEW.step = 'keycloak_created'"),
        "roles" => ("user_roles", "true"),
        _ => ("users", "NEW.status = 'active' AND OLD.status = 'pending'"),
    };
    let user_expr = if table == "users" {
        "NEW.id"
    } else {
        "NEW.user_id"
    };
    let event = if table == "user_roles" {
        "INSERT"
    } else {
        "UPDATE"
    };
    sqlx::query("DROP TRIGGER IF EXISTS fault ON provisioning_jobs")
        .execute(db)
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER IF EXISTS fault ON user_roles")
        .execute(db)
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER IF EXISTS fault ON users")
        .execute(db)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE OR REPLACE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF {when} AND EXISTS (SELECT 1 FROM users WHERE id = {user_expr} AND username LIKE 'pgfail%') THEN
             RAISE EXCEPTION 'injected fault';
           END IF;
           RETURN NEW;
         END $$"
    ))
    .execute(db)
    .await
    .unwrap();
    sqlx::query(&format!("CREATE TRIGGER fault BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION inject_fault()"))
        .execute(db)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_fault_at_any_saga_step_leaves_the_user_in_both_systems_or_neither() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let mut rng = rand::rng();
    let (mut created, mut refused) = (0, 0);
    for i in 0..120 {
        let fault = match std::env::var("SAGA_FAULT") {
            Ok(n) => FAULTS[n.parse::<usize>().unwrap()],
            Err(_) => FAULTS[rng.random_range(0..FAULTS.len())],
        };
        let prefix = if matches!(fault, Fault::Postgres { .. }) {
            "pgfail"
        } else {
            "saga"
        };
        let username = format!("{prefix}{i}");
        match fault {
            Fault::Keycloak {
                method,
                path,
                times,
                status,
            } => stack.kc.fail_next(Some(method), path, times, status),
            Fault::KeycloakWithCompensation { method, path } => {
                stack.kc.fail_next(Some(method), path, 3, 500);
                stack
                    .kc
                    .fail_next(Some("DELETE"), "/admin/realms/voxgate/users/", 3, 500);
            }
            Fault::Postgres { stage } => arm_postgres_fault(&stack.app.db, stage).await,
        }
        let response = stack.app.admin(&token).create_user(&carol(&username)).await;
        let status = response.status().as_u16();
        // A fault that did not fire (it targets a call made only on
        // another path) must not linger into the next round.
        stack.kc.fail_next(None, "", 0, 500);
        let leftover_jobs = stack.count("SELECT count(*) FROM provisioning_jobs").await;
        if leftover_jobs > 0 {
            // Compensation itself failed; the recovery worker finishes it.
            let report = stack.app.state.users.recover(Duration::ZERO).await.unwrap();
            assert_eq!((report.compensated, report.pending), (1, 0), "{fault:?}");
        }
        let sides = stack.both_sides(&username).await;
        if status == 201 {
            created += 1;
            assert_eq!(sides, (true, Some("active".to_string())), "{fault:?}");
        } else {
            refused += 1;
            assert!(status >= 400, "{fault:?}: {status}");
            if sides != (false, None) {
                let audit: Vec<serde_json::Value> =
                    sqlx::query_scalar("SELECT details FROM audit_log ORDER BY id DESC LIMIT 3")
                        .fetch_all(&stack.app.db)
                        .await
                        .unwrap();
                eprintln!(
                    "{:?} {audit:?}",
                    stack.kc.user_by_username(REALM, &username)
                );
            }
            assert_eq!(
                sides,
                (false, None),
                "{fault:?} left an orphan (status {status})"
            );
        }
    }
    stack
        .app
        .sql("DROP TRIGGER IF EXISTS fault ON provisioning_jobs")
        .await;
    // Zero orphans overall: every saga user is in both systems or neither.
    let active: Vec<String> = sqlx::query_scalar("SELECT username::text FROM users WHERE status = 'active' AND (username LIKE 'saga%' OR username LIKE 'pgfail%')")
        .fetch_all(&stack.app.db)
        .await
        .unwrap();
    for name in &active {
        assert!(
            stack.kc.user_by_username(REALM, name).is_some(),
            "{name} only in Postgres"
        );
    }
    for i in 0..120 {
        for prefix in ["saga", "pgfail"] {
            let name = format!("{prefix}{i}");
            if stack.kc.user_by_username(REALM, &name).is_some() {
                assert!(active.contains(&name), "{name} only in Keycloak");
            }
        }
    }
    assert!(
        created > 0 && refused > 0,
        "the loop exercised both outcomes ({created} created, {refused} refused)"
    );
}

#[tokio::test]
async fn a_failed_step_is_named_in_the_error() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    stack.kc.fail_next(Some("PUT"), "reset-password", 3, 503);
    let p = problem(
        stack.app.admin(&token).create_user(&carol("named")).await,
        503,
    )
    .await;
    detail_has(&p, "set the password");
    detail_has(&p, "Nothing was kept");
    stack.kc.fail_next(Some("PUT"), "reset-password", 1, 403);
    let p = problem(
        stack.app.admin(&token).create_user(&carol("named2")).await,
        502,
    )
    .await;
    detail_has(&p, "lacks permission");
    let audit: Value = stack.app.caller(&token).get_json("/api/admin/audit").await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "failure" && e["details"]["step"] == "set the password")
    );
}

#[tokio::test]
async fn recovery_finishes_or_compensates_an_interrupted_saga() {
    let stack = spawn_stack().await;
    let master = stack.password_token_master().await;
    let kc_create = |username: &'static str| {
        let master = master.clone();
        let url = format!("{}/admin/realms/{REALM}/users", stack.kc.base_url());
        async move {
            let r = Caller::at("", reqwest::Client::new()).bearer(master).post(&url, &json!({"username": username, "email": format!("{username}@example.com"), "enabled": true})).await;
            assert_eq!(r.status(), 201);
            r.headers()["location"]
                .to_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        }
    };
    // Crashed after creating the Keycloak user: compensate.
    let half = kc_create("halfway").await;
    // Crashed after assigning roles: finish.
    let nearly = kc_create("nearly").await;
    // Crashed right after the create call, before recording its id.
    let unrecorded = kc_create("unrecorded").await;
    for (name, step, kc_id) in [
        ("halfway", "keycloak_created", Some(half.as_str())),
        ("nearly", "roles_assigned", Some(nearly.as_str())),
        ("unrecorded", "local_created", None),
    ] {
        stack.stuck_creation(name, step, kc_id, "1 minute").await;
    }
    let _ = unrecorded;
    // An operator runs recovery by hand after an outage; jobs younger than
    // the bound may still be running and are left alone.
    let mut young = cli(&stack);
    young.args(["users", "recover"]);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(young, ""))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "finished 0, compensated 0, still pending 0",
        "{out}"
    );
    assert_eq!(
        stack.count("SELECT count(*) FROM provisioning_jobs").await,
        3
    );
    let mut recover = cli(&stack);
    recover.args(["users", "recover", "--older-than", "0"]);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(recover, ""))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "finished 1, compensated 2, still pending 0",
        "{out}"
    );
    assert_eq!(stack.both_sides("halfway").await, (false, None));
    assert_eq!(stack.both_sides("unrecorded").await, (false, None));
    assert_eq!(
        stack.both_sides("nearly").await,
        (true, Some("active".into()))
    );
    let roles: Vec<String> = sqlx::query_scalar("SELECT role FROM user_roles r JOIN users u ON u.id = r.user_id WHERE u.username = 'nearly'")
        .fetch_all(&stack.app.db)
        .await
        .unwrap();
    assert_eq!(roles, ["agent"]);
    assert_eq!(
        stack.count("SELECT count(*) FROM provisioning_jobs").await,
        0
    );
}

#[tokio::test]
async fn listing_searches_pages_and_keeps_a_stable_order() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    for name in ["lista", "listb", "listc", "other"] {
        stack.app.admin(&token).created(&carol(name)).await;
    }
    let page: Value = stack
        .app
        .caller(&token)
        .get_json("/api/admin/users?search=list&per_page=2&page=1")
        .await;
    assert_eq!(page["total"], 3);
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lista", "listb"]);
    let page2: Value = stack
        .app
        .caller(&token)
        .get_json("/api/admin/users?search=list&per_page=2&page=2")
        .await;
    assert_eq!(page2["items"][0]["username"], "listc");
    let literal: Value = stack
        .app
        .caller(&token)
        .get_json("/api/admin/users?search=%25")
        .await;
    assert_eq!(literal["total"], 0, "% is searched literally");
    let id = page["items"][0]["id"].as_str().unwrap();
    let one: Value = stack
        .app
        .caller(&token)
        .get_json(&format!("/api/admin/users/{id}"))
        .await;
    assert_eq!(one["username"], "lista");
    let missing = stack
        .app
        .caller(&token)
        .get(&format!("/api/admin/users/{}", Uuid::new_v4()))
        .await;
    problem(missing, 404).await;
    let bad_status = stack
        .app
        .caller(&token)
        .get("/api/admin/users?status=zombie")
        .await;
    problem(bad_status, 400).await;
    let roles: Value = stack.app.caller(&token).get_json("/api/admin/roles").await;
    assert_eq!(roles.as_array().unwrap().len(), 3);
    // Roles granted in Keycloak (alice's admin) show up once she signed in.
    let alice: Value = stack
        .app
        .caller(&token)
        .get_json("/api/admin/users?search=alice")
        .await;
    assert_eq!(alice["items"][0]["roles"], json!(["admin", "user"]));
}

#[tokio::test]
async fn realm_users_who_never_signed_in_are_listed_and_can_be_managed() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let admin = stack.app.admin(&token);
    // bob is in the realm but has never used voxgate.
    let page = stack
        .app
        .caller(&token)
        .get_json("/api/admin/users?search=bob")
        .await;
    let bob = &page["items"][0];
    assert_eq!(bob["username"], "bob", "{page}");
    assert_eq!(bob["lastLoginAt"], Value::Null, "never signed in");
    assert_eq!(bob["roles"], json!(["user"]), "the roles his tokens carry");
    let id = bob["id"].as_str().unwrap();
    let kc_id = bob["keycloakId"].as_str().unwrap().to_string();
    // When he signs in, his row is the one that was listed.
    let bob_token = stack.password_token("bob", "bob").await;
    let me = stack.app.caller(&bob_token).get_json("/api/me").await;
    assert_eq!(me["id"].as_str(), Some(id));

    // Every action works on him.
    let r = admin
        .update_user(id, &json!({"roles": ["agent", "user"]}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        stack
            .kc
            .user_realm_roles(REALM, &kc_id)
            .contains(&"agent".to_string())
    );
    let r = admin.update_user(id, &json!({"enabled": false})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        stack.kc.user_by_username(REALM, "bob").unwrap()["enabled"],
        false
    );
    assert_eq!(admin.delete_user(id).await.status(), 204);
    assert!(stack.kc.user_by_username(REALM, "bob").is_none());
}

#[tokio::test]
async fn disabling_applies_to_both_systems_and_ends_sessions() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let user: Value = stack.app.admin(&token).created(&carol("dave")).await;
    let id = user["id"].as_str().unwrap();
    let kc_id = user["keycloakId"].as_str().unwrap().to_string();
    let (dave, _) = stack
        .browser_login("dave", "a long enough password", "/")
        .await;
    assert_eq!(stack.me_status(&dave).await, 200);
    let dave_token = stack.password_token("dave", "a long enough password").await;

    let r = stack
        .app
        .admin(&token)
        .update_user(id, &json!({"enabled": false}))
        .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["enabled"], false);
    assert_eq!(
        stack.kc.user_by_username(REALM, "dave").unwrap()["enabled"],
        false
    );
    assert_eq!(
        stack.kc.active_sessions(REALM, &kc_id),
        0,
        "Keycloak sessions ended"
    );
    assert_eq!(stack.me_status(&dave).await, 401, "local session ended");
    assert_eq!(
        stack.app.bearer_status(&dave_token).await,
        403,
        "bearer refused at once"
    );

    let r = stack
        .app
        .admin(&token)
        .update_user(
            id,
            &json!({"enabled": true, "roles": ["user"], "firstName": "David"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["roles"], json!(["user"]));
    assert_eq!(view["firstName"], "David");
    let kc = stack.kc.user_by_username(REALM, "dave").unwrap();
    assert_eq!(kc["enabled"], true);
    assert_eq!(kc["firstName"], "David");
    assert!(
        !stack
            .kc
            .user_realm_roles(REALM, &kc_id)
            .contains(&"agent".to_string()),
        "agent removed in Keycloak"
    );

    let r = stack
        .app
        .admin(&token)
        .update_user(id, &json!({"nickname": "d"}))
        .await;
    problem(r, 422).await;
}

#[tokio::test]
async fn a_keycloak_failure_during_update_changes_nothing() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let user: Value = stack.app.admin(&token).created(&carol("erin")).await;
    let id = user["id"].as_str().unwrap();
    stack
        .kc
        .fail_next(Some("POST"), "role-mappings/realm", 3, 503);
    let r = stack
        .app
        .admin(&token)
        .update_user(id, &json!({"enabled": false, "roles": ["admin"]}))
        .await;
    problem(r, 503).await;
    assert_eq!(
        stack.kc.user_by_username(REALM, "erin").unwrap()["enabled"],
        true,
        "profile change reverted"
    );
    let local: Value = stack
        .app
        .caller(&token)
        .get_json(&format!("/api/admin/users/{id}"))
        .await;
    assert_eq!(local["enabled"], true);
    assert_eq!(local["roles"], json!(["agent"]));
}

#[tokio::test]
async fn deleting_removes_the_user_from_both_systems_and_keeps_the_audit_trail() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let user: Value = stack.app.admin(&token).created(&carol("fred")).await;
    let id = user["id"].as_str().unwrap();
    let r = stack.app.admin(&token).delete_user(id).await;
    assert_eq!(r.status(), 204);
    assert_eq!(stack.both_sides("fred").await, (false, None));
    let again = stack.app.admin(&token).delete_user(id).await;
    problem(again, 404).await;
    let audit: Value = stack
        .app
        .caller(&token)
        .get_json(&format!("/api/admin/audit?target={id}"))
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["user.delete", "user.create"]);
    // The name is free again.
    stack.app.admin(&token).created(&carol("fred")).await;
}

#[tokio::test]
async fn cookie_authenticated_admin_calls_need_the_csrf_token() {
    let stack = spawn_stack().await;
    let (alice, csrf) = stack.signed_in("alice").await;
    let origin = stack.app.url("");
    let without = stack
        .browser(&alice)
        .header("origin", &origin)
        .post("/api/admin/users", &carol("gina"))
        .await;
    problem(without, 403).await;
    let cross = stack
        .browser(&alice)
        .header("origin", "http://evil.example")
        .header("x-csrf-token", &csrf)
        .post("/api/admin/users", &carol("gina"))
        .await;
    problem(cross, 403).await;
    assert!(stack.kc.user_by_username(REALM, "gina").is_none());
    let with = stack
        .browser(&alice)
        .header("origin", &origin)
        .header("x-csrf-token", &csrf)
        .post("/api/admin/users", &carol("gina"))
        .await;
    assert_eq!(with.status(), 201);
    // Reads need no token.
    assert_eq!(
        stack.browser(&alice).get("/api/admin/users").await.status(),
        200
    );
}

fn cli(stack: &Stack) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"));
    command
        .env_clear()
        .envs(crate::helpers::base_env())
        .env("DATABASE_URL", &stack.app.database.url)
        .env("VOXGATE_OIDC_ISSUER", stack.kc.issuer(REALM))
        .env(
            "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET",
            crate::stack::ADMIN_SECRET,
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

fn run(mut command: std::process::Command, stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_manages_users_in_both_systems() {
    let stack = spawn_stack().await;
    let mut create = cli(&stack);
    create.args([
        "users",
        "create",
        "--username",
        "hank",
        "--email",
        "hank@example.com",
        "--role",
        "agent",
    ]);
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run(create, "a long enough password\n"))
            .await
            .unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.contains("created hank"), "{out}");
    // Only what was asked for: no log lines, no database notices.
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(err, "", "nothing on standard error");
    assert_eq!(
        stack.both_sides("hank").await,
        (true, Some("active".into()))
    );

    let mut list = cli(&stack);
    list.args(["users", "list", "--json"]);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(list, ""))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(err, "", "nothing on standard error");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "hank" && u["roles"] == json!(["agent"]))
    );

    for (verb, enabled) in [("disable", false), ("enable", true)] {
        let mut c = cli(&stack);
        c.args(["users", verb, "hank"]);
        let (ok, out, err) = tokio::task::spawn_blocking(move || run(c, ""))
            .await
            .unwrap();
        assert!(ok, "{out}{err}");
        assert_eq!(
            stack.kc.user_by_username(REALM, "hank").unwrap()["enabled"],
            enabled
        );
        let local: bool = sqlx::query_scalar("SELECT enabled FROM users WHERE username = 'hank'")
            .fetch_one(&stack.app.db)
            .await
            .unwrap();
        assert_eq!(local, enabled);
    }

    let mut short = cli(&stack);
    short.args([
        "users",
        "create",
        "--username",
        "ivan",
        "--email",
        "ivan@example.com",
    ]);
    let (ok, _, err) = tokio::task::spawn_blocking(move || run(short, "short\n"))
        .await
        .unwrap();
    assert!(!ok);
    assert!(err.contains("password"), "{err}");

    let mut delete = cli(&stack);
    delete.args(["users", "delete", "hank"]);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(delete, ""))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert_eq!(stack.both_sides("hank").await, (false, None));
    let audit = stack
        .count("SELECT count(*) FROM audit_log WHERE actor LIKE 'cli:%'")
        .await;
    assert!(audit >= 4, "CLI actions are audited ({audit})");
}

#[tokio::test]
async fn reconcile_finds_and_fixes_planted_drift() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let jane: Value = stack.app.admin(&token).created(&carol("jane")).await;
    // Drift 1: a Keycloak user voxgate has never seen (bob never signed in).
    // Drift 2: a voxgate user whose Keycloak account vanished.
    stack.app.sql("INSERT INTO users (keycloak_id, username, email) VALUES ('gone-from-keycloak', 'ghost', 'ghost@example.com')").await;
    // Drift 3: disabled in Keycloak only.
    let master = stack.password_token_master().await;
    let kc_id = jane["keycloakId"].as_str().unwrap();
    let r = Caller::at("", reqwest::Client::new())
        .bearer(&master)
        .put(
            &format!("{}/admin/realms/{REALM}/users/{kc_id}", stack.kc.base_url()),
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.status(), 204);
    // Drift 4: a role granted in voxgate but missing in Keycloak.
    let agent = stack.kc.user_realm_roles(REALM, kc_id);
    assert!(agent.contains(&"agent".to_string()));
    let roles: Value = Caller::at("", reqwest::Client::new())
        .bearer(&master)
        .get(&format!(
            "{}/admin/realms/{REALM}/roles/agent",
            stack.kc.base_url()
        ))
        .await
        .json()
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/admin/realms/{REALM}/users/{kc_id}/role-mappings/realm",
            stack.kc.base_url()
        ))
        .bearer_auth(&master)
        .json(&json!([roles]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let mut report = cli(&stack);
    report.args(["users", "reconcile"]);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(report, ""))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    for expected in [
        "missing_in_voxgate",
        "bob",
        "missing_in_keycloak",
        "ghost",
        "enabled_mismatch",
        "roles_missing_in_keycloak",
        "run with --fix",
    ] {
        assert!(out.contains(expected), "report lacks {expected}:\n{out}");
    }
    let mut fix = cli(&stack);
    fix.args(["users", "reconcile", "--fix"]);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(fix, ""))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("recorded in voxgate")
            && out.contains("marked deleted")
            && out.contains("disabled in both"),
        "{out}"
    );
    let mut again = cli(&stack);
    again.args(["users", "reconcile"]);
    let (ok, out, _) = tokio::task::spawn_blocking(move || run(again, ""))
        .await
        .unwrap();
    assert!(ok);
    for fixed in [
        "missing_in_voxgate",
        "missing_in_keycloak",
        "enabled_mismatch",
        "roles_missing_in_keycloak",
    ] {
        assert!(!out.contains(fixed), "{fixed} still reported:\n{out}");
    }
    assert!(
        stack
            .kc
            .user_realm_roles(REALM, kc_id)
            .contains(&"agent".to_string())
    );
    let jane_enabled: bool =
        sqlx::query_scalar("SELECT enabled FROM users WHERE username = 'jane'")
            .fetch_one(&stack.app.db)
            .await
            .unwrap();
    assert!(!jane_enabled);
}

#[tokio::test]
async fn removing_a_role_ends_the_users_sessions() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    let user: Value = stack.app.admin(&token).created(&carol("gail")).await;
    let id = user["id"].as_str().unwrap();
    let (gail, _) = stack
        .browser_login("gail", "a long enough password", "/")
        .await;
    let me: Value = stack.browser(&gail).get_json("/api/me").await;
    assert!(me["roles"].as_array().unwrap().iter().any(|r| r == "agent"));
    let r = stack
        .app
        .admin(&token)
        .update_user(id, &json!({"roles": ["user"]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        stack.me_status(&gail).await,
        401,
        "the session with the old role ended"
    );
    let (gail, _) = stack
        .browser_login("gail", "a long enough password", "/")
        .await;
    let me: Value = stack.browser(&gail).get_json("/api/me").await;
    assert_eq!(me["roles"], json!(["user"]));
}

#[tokio::test]
async fn a_page_number_past_any_list_is_a_400_not_a_500() {
    let stack = spawn_stack().await;
    let token = stack.admin_token().await;
    for path in [
        "/api/admin/users?page=9223372036854775807&per_page=100",
        "/api/admin/audit?page=9223372036854775807",
    ] {
        let response = stack.app.caller(&token).get(path).await;
        let p = problem(response, 400).await;
        assert!(
            p["detail"].as_str().unwrap().contains("page"),
            "{path}: {p}"
        );
    }
}
