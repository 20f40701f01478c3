//! The skeleton every feature relies on: errors, health, config, schema.

use crate::helpers::{Caller, TestDatabase, detail_has, problem, spawn_app};
use voxgate::error::{ApiError, ResultExt};

#[tokio::test]
async fn unknown_api_route_is_a_problem_json_404() {
    let app = spawn_app().await;
    let body = problem(app.get("/api/nope").await, 404).await;
    detail_has(&body, "/api/nope");
}

#[tokio::test]
async fn unknown_page_is_a_readable_html_404() {
    let app = spawn_app().await;
    let response = app.get("/no-such-page").await;
    assert_eq!(response.status(), 404);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("Page not found"));
    assert!(html.contains("Request id"));
}

#[tokio::test]
async fn wrong_method_on_an_api_route_is_a_problem_json_405() {
    let app = spawn_app().await;
    let response = app.anonymous().delete("/api/version").await;
    let body = problem(response, 405).await;
    detail_has(&body, "DELETE");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_incoming_one_is_kept() {
    let app = spawn_app().await;
    let generated = app.get("/healthz").await;
    assert!(uuid::Uuid::parse_str(generated.headers()["x-request-id"].to_str().unwrap()).is_ok());
    let kept = app
        .anonymous()
        .header("x-request-id", "abc-123")
        .get("/healthz")
        .await;
    assert_eq!(kept.headers()["x-request-id"], "abc-123");
    let replaced = app
        .anonymous()
        .header("x-request-id", "<script>alert(1)</script>")
        .get("/healthz")
        .await;
    assert_ne!(
        replaced.headers()["x-request-id"],
        "<script>alert(1)</script>"
    );
}

#[tokio::test]
async fn security_headers_are_set_on_pages() {
    let app = spawn_app().await;
    let response = app.get("/no-such-page").await;
    let h = response.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(
        !h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("unsafe-inline")
    );
}

#[tokio::test]
async fn healthz_answers_and_readyz_reports_the_database() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    // No identity provider runs for this app: the database is fine, the
    // provider is not, and a required check failing makes it not ready.
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], false);
    let check = |name: &str| {
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(check("database")["ok"], true);
    assert_eq!(check("identity_provider")["ok"], false);
    assert!(
        check("identity_provider")["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

#[tokio::test]
async fn readyz_is_200_when_every_dependency_is_up() {
    let stack = crate::stack::spawn_stack().await;
    let ready = stack.app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{body}"
    );
}

#[tokio::test]
async fn readyz_goes_503_when_the_database_is_unreachable() {
    let app = spawn_app().await;
    app.db.close().await;
    app.database.drop_now().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], false);
    let db = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "database")
        .unwrap();
    assert_eq!(db["ok"], false);
    // Liveness is not readiness: the process itself is fine.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_matched_route() {
    let app = spawn_app().await;
    app.get("/api/version").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("voxgate_http_requests_total")
                && l.contains("route=\"/api/version\"")
                && l.contains("status=\"200\"")),
        "{text}"
    );
}

#[tokio::test]
async fn invented_methods_and_paths_never_become_new_metric_series() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..25 {
        let method = reqwest::Method::from_bytes(format!("X{marker}{i}").as_bytes()).unwrap();
        client
            .request(method, app.url(&format!("/no-such-{marker}-{i}")))
            .send()
            .await
            .unwrap();
        Caller::at("", client.clone())
            .get(&app.url(&format!("/no-such-{marker}-{i}")))
            .await;
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !text.contains(&marker),
        "a label carries request input:\n{text}"
    );
    let invented = text
        .lines()
        .filter(|l| l.starts_with("voxgate_http_requests_total"))
        .filter(|l| l.contains("method=\"other\"") && l.contains("route=\"unmatched\""))
        .count();
    assert!(invented >= 1, "invented methods fold into `other`:\n{text}");
    // Every label value of every series comes from a known set.
    for line in text.lines().filter(|l| l.starts_with("voxgate_http_")) {
        let method = line
            .split("method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        if let Some(method) = method {
            assert!(
                [
                    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"
                ]
                .contains(&method),
                "{line}"
            );
        }
    }
}

#[tokio::test]
async fn openapi_document_lists_the_api() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get_json("/api/openapi.json").await;
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    for (method, path) in crate::EXPECTED_API_OPERATIONS {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is missing from /api/openapi.json"
        );
    }
}

#[tokio::test]
async fn the_api_description_declares_its_parameters_and_problem_answers() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get_json("/api/openapi.json").await;
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            if in_path != templated {
                wrong.push(format!("{method} {path}: path parameters {in_path:?}"));
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                let content = response["content"].as_object().cloned().unwrap_or_default();
                let problem_as_json = content
                    .get("application/json")
                    .is_some_and(|c| c["schema"]["$ref"] == "#/components/schemas/Problem");
                if problem_as_json {
                    wrong.push(format!(
                        "{method} {path} {status}: a problem as application/json"
                    ));
                }
            }
            for status in ["401", "500"] {
                if path != "/api/version" && !op["responses"][status].is_object() {
                    wrong.push(format!("{method} {path}: {status} undocumented"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn no_api_route_bypasses_the_openapi_router() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut offenders = Vec::new();
    for entry in walk(std::path::Path::new(src)) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for (n, line) in text.lines().enumerate() {
            if !line.trim_start().starts_with("//")
                && line.contains(".route(\"/api")
                && !line.contains("/api/openapi.json")
            {
                offenders.push(format!("{}:{}", entry.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "register /api routes with routes!(): {offenders:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let database = TestDatabase::new().await;
    let pool = database.pool().await;
    voxgate::db::MIGRATOR
        .run(&pool)
        .await
        .expect("first run (already applied by the template)");
    voxgate::db::MIGRATOR.run(&pool).await.expect("second run");
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM roles")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(roles, 3, "seed rows are not duplicated");
    pool.close().await;
}

#[tokio::test]
async fn a_unique_violation_maps_to_409_naming_the_field() {
    let database = TestDatabase::new().await;
    let pool = database.pool().await;
    sqlx::query("INSERT INTO users (username, email) VALUES ('Carol', 'carol@example.com')")
        .execute(&pool)
        .await
        .unwrap();
    let dup =
        sqlx::query("INSERT INTO users (username, email) VALUES ('carol', 'other@example.com')")
            .execute(&pool)
            .await
            .on_constraint(
                "users_username_key",
                "username",
                "A user with this username already exists.",
            );
    match dup {
        Err(ApiError::Conflict { field, .. }) => assert_eq!(field.as_deref(), Some("username")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let dup_email =
        sqlx::query("INSERT INTO users (username, email) VALUES ('dave', 'CAROL@example.com')")
            .execute(&pool)
            .await
            .on_constraint(
                "users_email_key",
                "email",
                "A user with this email already exists.",
            );
    assert!(matches!(dup_email, Err(ApiError::Conflict { .. })));
    pool.close().await;
}

#[tokio::test]
async fn updated_at_moves_on_update() {
    let database = TestDatabase::new().await;
    let pool = database.pool().await;
    let (id, created): (uuid::Uuid, time::OffsetDateTime) =
        sqlx::query_as("INSERT INTO users (username) VALUES ('erin') RETURNING id, updated_at")
            .fetch_one(&pool)
            .await
            .unwrap();
    let updated: time::OffsetDateTime = sqlx::query_scalar(
        "UPDATE users SET first_name = 'Erin' WHERE id = $1 RETURNING updated_at",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(updated >= created);
    pool.close().await;
}

#[test]
fn invalid_configuration_fails_start_with_the_setting_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .arg("serve")
        .env("VOXGATE_BIND", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VOXGATE_BIND"), "{stderr}");
    assert!(stderr.contains("not-an-address"), "{stderr}");
}

#[test]
fn help_explains_every_setting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for s in voxgate::config::SETTINGS {
        assert!(help.contains(s.env), "--help does not mention {}", s.env);
    }
}

#[test]
fn configuration_docs_list_every_setting() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    assert!(
        doc.contains(&voxgate::config::markdown_table()),
        "docs/configuration.md is out of date: regenerate its table with `voxgate config-docs`"
    );
}

#[tokio::test]
async fn stopping_closes_the_listener_after_shutdown() {
    let mut app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
    let refused = reqwest::Client::new().get(app.url("/healthz")).send().await;
    assert!(refused.is_err(), "no longer listening");
}

/// Runs SQL as the owner while no other test does: the init script creates
/// a role, which is cluster-wide, and two "create if missing" at once race.
async fn as_owner_alone(owner: &mut sqlx::PgConnection, sql: &[String]) {
    use sqlx::Executor;
    owner
        .execute("SELECT pg_advisory_lock(7342001)")
        .await
        .unwrap();
    for s in sql {
        sqlx::raw_sql(s).execute(&mut *owner).await.unwrap();
    }
    owner
        .execute("SELECT pg_advisory_unlock(7342001)")
        .await
        .unwrap();
}

/// The runtime role may add audit records but never change or remove them,
/// nor touch the migration history; both through the init script (tables
/// that exist when it runs) and through migration 0013 (a deployment whose
/// role was given everything before).
#[tokio::test]
async fn the_runtime_role_cannot_rewrite_the_audit_log_or_the_migration_history() {
    use sqlx::{Connection, Executor};
    let read = |path: &str| {
        std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let init = read("scripts/postgres-init-voxgate-app.sql");
    let migration = read("migrations/0013_audit_log_append_only.sql");
    let everything =
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO voxgate_app";
    for (how, setup) in [
        ("the init script", vec![init.clone()]),
        (
            "migration 0013",
            vec![init.clone(), everything.to_string(), migration.clone()],
        ),
    ] {
        let db = TestDatabase::new().await;
        let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
        as_owner_alone(&mut owner, &setup).await;
        owner
            .execute(
                "INSERT INTO audit_log (actor, action, outcome) VALUES ('t', 'seed', 'success')",
            )
            .await
            .unwrap();
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_username("voxgate_app").unwrap();
        url.set_password(Some("dev-only-voxgate-app-password"))
            .unwrap();
        let mut role = sqlx::PgConnection::connect(url.as_str()).await.unwrap();
        role.execute(
            "INSERT INTO audit_log (actor, action, outcome) VALUES ('app', 'added', 'success')",
        )
        .await
        .unwrap_or_else(|e| panic!("{how}: the role still appends: {e}"));
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "UPDATE _sqlx_migrations SET checksum = ''::bytea",
            "DELETE FROM _sqlx_migrations",
            "INSERT INTO _sqlx_migrations SELECT version + 1000, description, installed_on, success, checksum, execution_time FROM _sqlx_migrations LIMIT 1",
        ] {
            let refused = role.execute(sql).await;
            assert!(refused.is_err(), "{how}: `{sql}` is refused");
        }
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
            .fetch_one(&mut owner)
            .await
            .unwrap();
        assert_eq!(count, 2, "{how}");
    }
}

/// voxgate serves as the runtime role the deployment creates
/// (`scripts/postgres-init-voxgate-app.sql`): rows only, no schema. With
/// migrations off it checks the schema instead of changing it, and every
/// kind of write the app makes goes through.
#[tokio::test]
async fn the_app_serves_as_a_role_that_cannot_change_the_schema() {
    use sqlx::{Connection, Executor};
    let db = TestDatabase::new().await;
    let grants = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/postgres-init-voxgate-app.sql"
    ))
    .unwrap();
    let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
    as_owner_alone(&mut owner, &[grants]).await;
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username("voxgate_app").unwrap();
    url.set_password(Some("dev-only-voxgate-app-password"))
        .unwrap();
    let url = url.to_string();

    let mut role = sqlx::PgConnection::connect(&url).await.unwrap();
    for ddl in [
        "CREATE TABLE intruder (x int)",
        "ALTER TABLE users ADD COLUMN intruder int",
        "DROP TABLE audit_log",
    ] {
        assert!(role.execute(ddl).await.is_err(), "{ddl} is refused");
    }

    let stack = crate::stack::spawn_stack_with(
        crate::helpers::TestSettings::default()
            .set("DATABASE_URL", url.clone())
            .set("VOXGATE_DATABASE_MIGRATE", "false"),
    )
    .await;
    let bob = stack.password_token("bob", "bob").await;
    assert_eq!(stack.app.bearer_status(&bob).await, 200);
    let reply = stack
        .app
        .caller(&bob)
        .post("/api/chat", &serde_json::json!({"message": "hello"}))
        .await;
    assert_eq!(reply.status(), 200);
    let (browser, _) = stack.browser_login("bob", "bob", "/").await;
    assert_eq!(stack.me_status(&browser).await, 200);
    let admin = stack.password_token("alice", "alice").await;
    stack
        .app
        .admin(&admin)
        .created(&serde_json::json!({
            "username": "carol", "email": "carol@example.com",
            "password": {"value": "a long enough password"}
        }))
        .await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    voxgate::app::sweep(&pool).await.unwrap();
    let chats: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(chats, 2, "the message and its reply, written by the role");

    // A schema behind the build: the app refuses to start and says why.
    owner
        .execute("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
        .await
        .unwrap();
    let behind = crate::helpers::try_spawn_app_with(
        crate::helpers::TestSettings::default()
            .set("DATABASE_URL", url)
            .set("VOXGATE_DATABASE_MIGRATE", "false"),
    )
    .await;
    let error = behind
        .err()
        .expect("a schema behind the build is refused")
        .to_string();
    assert!(error.contains("run `voxgate migrate`"), "{error}");
}

/// VOXGATE_BIND=unix:/path: the socket gets VOXGATE_SOCKET_MODE (0660 by
/// default), a socket left by a dead instance is replaced, a live one or a
/// file that is not a socket is refused and left alone, and a clean stop
/// removes the socket.
#[tokio::test]
async fn the_app_listens_on_a_unix_socket_and_never_takes_over_another_file() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDatabase::new().await;
    let dir = std::env::temp_dir().join(format!("voxgate-socket-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("http.sock");
    let settings = crate::helpers::TestSettings::default()
        .set("VOXGATE_BIND", format!("unix:{}", path.display()));
    let build = || voxgate::App::build(crate::helpers::config_for(&db, &settings));

    // Left behind by an instance that died: nobody answers on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let app = build().await.expect("a stale socket is replaced");
    assert_eq!(app.address(), None);
    assert_eq!(app.listening_on(), format!("unix:{}", path.display()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_with_shutdown(async move {
        let _ = stopped.await;
    }));

    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");

    let taken = build()
        .await
        .err()
        .expect("a live socket is not taken over");
    assert!(
        taken.to_string().contains("another process is listening"),
        "{taken}"
    );
    assert!(path.exists());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!path.exists(), "removed at a clean stop");

    std::fs::write(&path, "not a socket").unwrap();
    let refused = build().await.err().expect("a regular file is refused");
    assert!(refused.to_string().contains("VOXGATE_BIND"), "{refused}");
    assert!(refused.to_string().contains("not a socket"), "{refused}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    std::fs::remove_dir_all(&dir).unwrap();
}
