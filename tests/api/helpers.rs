//! Test support: per-test databases cloned from a migrated template, the
//! app on port 0, and typed client helpers.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use voxgate::{App, Config};

/// The Postgres server tests use; a database of its own is made per test.
pub fn admin_database_url() -> String {
    std::env::var("VOXGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn database_url(name: &str) -> String {
    let mut url =
        url::Url::parse(&admin_database_url()).expect("VOXGATE_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

pub fn init_test_logging() {
    if std::env::var("TEST_LOG").is_ok() {
        voxgate::telemetry::init_tracing(voxgate::config::LogFormat::Text, "info,voxgate=debug");
    }
}

/// Name of a template database with every migration applied, created once
/// per set of migrations. An advisory lock keeps parallel test processes
/// from racing to build it.
async fn template_database() -> String {
    let hash = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for m in voxgate::db::MIGRATOR.iter() {
            h.update(m.version.to_le_bytes());
            h.update(&m.checksum);
        }
        hex::encode(&h.finalize()[..6])
    };
    let name = format!("voxgate_tpl_{hash}");
    let mut conn = PgConnection::connect(&admin_database_url())
        .await
        .expect("connect to the test Postgres");
    conn.execute("SELECT pg_advisory_lock(727274)")
        .await
        .expect("lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .expect("query pg_database");
    if !exists {
        let building = format!("{name}_building");
        conn.execute(format!(r#"DROP DATABASE IF EXISTS "{building}""#).as_str())
            .await
            .expect("drop stale template");
        conn.execute(format!(r#"CREATE DATABASE "{building}""#).as_str())
            .await
            .expect("create template");
        {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(&database_url(&building))
                .await
                .expect("connect template");
            voxgate::db::MIGRATOR
                .run(&pool)
                .await
                .expect("migrate template");
            pool.close().await;
        }
        conn.execute(format!(r#"ALTER DATABASE "{building}" RENAME TO "{name}""#).as_str())
            .await
            .expect("rename template");
    }
    conn.execute("SELECT pg_advisory_unlock(727274)")
        .await
        .expect("unlock");
    name
}

/// A fresh database, dropped when the guard goes away.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn new() -> TestDatabase {
        let template = template_database().await;
        let name = format!("voxgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_database_url())
            .await
            .expect("connect");
        let mut attempts = 0;
        loop {
            // Cloning fails if another session is connected to the template
            // at that instant (e.g. a parallel clone); try again.
            match conn
                .execute(format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#).as_str())
                .await
            {
                Ok(_) => break,
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot create test database: {e}"),
            }
        }
        TestDatabase {
            url: database_url(&name),
            name,
        }
    }

    /// A database with no schema at all (to apply migrations by hand).
    pub async fn empty() -> TestDatabase {
        let name = format!("voxgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_database_url())
            .await
            .expect("connect");
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create an empty database");
        TestDatabase {
            url: database_url(&name),
            name,
        }
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .expect("connect test database")
    }

    /// Drops the database now, cutting every connection (used to simulate
    /// the database going away).
    pub async fn drop_now(&self) {
        drop_database(&self.name).await;
    }
}

async fn drop_database(name: &str) {
    if let Ok(mut conn) = PgConnection::connect(&admin_database_url()).await {
        let _ = conn
            .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
            .await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on;
        // a helper thread with its own runtime does the async cleanup.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&name));
            }
            let _ = done.send(());
        });
        // Waited for only briefly: `DROP … WITH (FORCE)` waits for the
        // database's backends to end, and one in the middle of answering a
        // client on this (now blocked) runtime ends only when that client
        // reads, which it cannot until this returns. Waiting for good
        // stalled every other stack on the runtime for a minute.
        let _ = finished.recv_timeout(std::time::Duration::from_secs(2));
    }
}

/// Settings for a test app; `set` overrides any `VOXGATE_*` variable.
#[derive(Default, Clone)]
pub struct TestSettings {
    env: BTreeMap<String, String>,
}

impl TestSettings {
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_string(), value.into());
        self
    }

    /// Sets `key` unless the test already did.
    pub fn set_default(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env
            .entry(key.to_string())
            .or_insert_with(|| value.into());
        self
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub db: PgPool,
    pub database: TestDatabase,
    pub state: voxgate::state::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestSettings::default()).await
}

pub fn config_for(database: &TestDatabase, settings: &TestSettings) -> Config {
    let mut env = settings.env.clone();
    env.entry("DATABASE_URL".into())
        .or_insert_with(|| database.url.clone());
    env.entry("VOXGATE_BIND".into())
        .or_insert_with(|| "127.0.0.1:0".into());
    env.entry("VOXGATE_SHUTDOWN_GRACE_SECONDS".into())
        .or_insert_with(|| "5".into());
    Config::load_from(None, |k| env.get(k).cloned()).expect("test configuration is valid")
}

pub async fn spawn_app_with(settings: TestSettings) -> TestApp {
    try_spawn_app_with(settings).await.expect("app builds")
}

/// Like [`spawn_app_with`], but a failure to start (e.g. a chosen port
/// taken meanwhile) is returned for the caller to retry.
pub async fn try_spawn_app_with(settings: TestSettings) -> anyhow::Result<TestApp> {
    init_test_logging();
    let database = TestDatabase::new().await;
    let config = config_for(&database, &settings);
    let app = App::build(config).await?;
    let address = app.address().expect("tests listen on TCP");
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_with_shutdown(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("client");
    Ok(TestApp {
        address,
        client,
        db: database.pool().await,
        database,
        state,
        shutdown: Some(tx),
        server: Some(server),
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// The status of `GET /api/me` for a browser-like client: 200 while its
    /// session lives, 401 once it has ended.
    pub async fn me_status(&self, client: &reqwest::Client) -> u16 {
        client
            .get(self.url("/api/me"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// Waits until `/readyz` answers 200 (the realm's keys are fetched).
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.get("/readyz").await.status() == 200 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("app never became ready");
    }

    /// A request with a bearer token and an optional JSON body.
    /// The JSON body of an anonymous `GET`, whatever its status (`/readyz`
    /// answers 503 with a body).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("a JSON body")
    }

    /// The status of `GET /api/me` with a bearer token: 200 while the token
    /// is accepted.
    pub async fn bearer_status(&self, token: impl AsRef<str>) -> u16 {
        self.caller(token).get("/api/me").await.status().as_u16()
    }

    /// One named check of `/readyz` (`database`, `speech_engine`…).
    pub async fn readiness_check(&self, name: &str) -> serde_json::Value {
        let ready = self.get_json("/readyz").await;
        ready["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no `{name}` check in {ready}"))
            .clone()
    }

    /// Runs a statement on the test's database (to age rows, plant faults).
    pub async fn sql(&self, statement: &str) {
        sqlx::query(statement)
            .execute(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    /// The `bigint` a query returns, such as a `count(*)`.
    /// The text a speech key says (what reached the speech engine).
    pub async fn spoken_text(&self, key: &str) -> String {
        sqlx::query_scalar("SELECT text FROM tts_requests WHERE key = $1")
            .bind(key)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub async fn count(&self, query: &str) -> i64 {
        sqlx::query_scalar(query)
            .fetch_one(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// Another voxgate process on the same database and identity provider as
/// a [`TestApp`] (a second instance behind the same proxy), on its own port.
pub struct Instance {
    pub address: SocketAddr,
    pub state: voxgate::state::AppState,
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    /// A second instance with this one's configuration.
    pub async fn another_instance(&self) -> Instance {
        self.another_instance_with(|_| {}).await
    }

    /// A second instance with this one's configuration, changed by `change`.
    pub async fn another_instance_with(
        &self,
        change: impl FnOnce(&mut voxgate::config::Config),
    ) -> Instance {
        let mut config = (*self.state.config).clone();
        change(&mut config);
        config.bind = voxgate::config::Bind::Tcp("127.0.0.1:0".parse().unwrap());
        let app = App::build(config)
            .await
            .expect("the second instance builds");
        let address = app.address().expect("tests listen on TCP");
        let state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_with_shutdown(async move {
            let _ = rx.await;
        }));
        let instance = Instance {
            address,
            state,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
        };
        // Ready once it has the realm's signing keys.
        for _ in 0..200 {
            let ready = instance
                .client
                .get(format!("http://{address}/readyz"))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return instance;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the second instance never became ready");
    }
}

impl Instance {
    pub fn caller(&self, token: impl AsRef<str>) -> Caller {
        Caller::at(&format!("http://{}", self.address), self.client.clone()).bearer(token)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Reads a problem+json response, checking its content type and status.
pub async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://")),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["requestId"].as_str().map(str::to_string),
        request_id,
        "problem carries the request id"
    );
    body
}

/// What a child process started with a cleared environment still needs:
/// `PATH`, and what the Postgres client reads to log in (`~/.pgpass` by way
/// of `HOME`, or `PGPASSFILE`/`PGPASSWORD`).
pub fn base_env() -> Vec<(String, String)> {
    ["PATH", "HOME", "PGPASSFILE", "PGPASSWORD"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

pub use voxgate_lab::free_port;

/// Asserts that a problem's `detail` mentions `text`.
pub fn detail_has(problem: &serde_json::Value, text: &str) {
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(text), "`{text}` in {problem}");
}

/// Reads a problem+json response as [`problem`] does, and asserts that its
/// `detail` mentions `text`: most refusals are told apart by what they say.
pub async fn problem_saying(
    response: reqwest::Response,
    status: u16,
    text: &str,
) -> serde_json::Value {
    let body = problem(response, status).await;
    detail_has(&body, text);
    body
}

/// Requests to one server as one caller, so a test names what it does in
/// a line (`app.caller(&token).post("/api/chat", &body)`) instead of
/// rebuilding the request.
#[derive(Clone)]
pub struct Caller {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    headers: Vec<(String, String)>,
}

impl TestApp {
    /// A caller with a bearer token.
    pub fn caller(&self, token: impl AsRef<str>) -> Caller {
        Caller::at(&self.url(""), reqwest::Client::new()).bearer(token)
    }

    /// A caller with no credentials.
    pub fn anonymous(&self) -> Caller {
        Caller::at(&self.url(""), reqwest::Client::new())
    }
}

impl Caller {
    /// A caller of the server at `base` through `client` (which may hold a
    /// cookie session).
    pub fn at(base: &str, client: reqwest::Client) -> Caller {
        Caller {
            client,
            base: base.trim_end_matches('/').to_string(),
            token: None,
            headers: Vec::new(),
        }
    }

    pub fn bearer(mut self, token: impl AsRef<str>) -> Caller {
        self.token = Some(token.as_ref().to_string());
        self
    }

    /// Sends `name: value` with every request.
    pub fn header(mut self, name: &str, value: &str) -> Caller {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn request(&self, method: reqwest::Method, path: impl AsRef<str>) -> reqwest::RequestBuilder {
        let path = path.as_ref();
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.client.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }

    pub async fn get(&self, path: impl AsRef<str>) -> reqwest::Response {
        send(self.request(reqwest::Method::GET, path)).await
    }

    /// `GET` of a JSON document that must be there.
    pub async fn get_json(&self, path: impl AsRef<str>) -> serde_json::Value {
        let path = path.as_ref();
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("a JSON body")
    }

    pub async fn delete(&self, path: impl AsRef<str>) -> reqwest::Response {
        send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: impl AsRef<str>, body: &serde_json::Value) -> reqwest::Response {
        send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    pub async fn patch(
        &self,
        path: impl AsRef<str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        send(self.request(reqwest::Method::PATCH, path).json(body)).await
    }

    pub async fn put(&self, path: impl AsRef<str>, body: &serde_json::Value) -> reqwest::Response {
        send(self.request(reqwest::Method::PUT, path).json(body)).await
    }

    /// `POST` of a form (`application/x-www-form-urlencoded`).
    pub async fn post_form(
        &self,
        path: impl AsRef<str>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        send(self.request(reqwest::Method::POST, path).form(form)).await
    }

    /// `POST` of raw bytes, with a content type or none at all.
    pub async fn post_raw(
        &self,
        path: impl AsRef<str>,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.request(reqwest::Method::POST, path).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        send(request).await
    }
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request
        .send()
        .await
        .expect("the request reaches the server")
}

/// The admin API, as one admin: a test says `admin.create_user(&body)`.
pub struct AdminApi(pub Caller);

impl AdminApi {
    pub async fn create_user(&self, body: &serde_json::Value) -> reqwest::Response {
        self.0.post("/api/admin/users", body).await
    }

    /// Creates a user that must be created; returns its view.
    pub async fn created(&self, body: &serde_json::Value) -> serde_json::Value {
        let response = self.create_user(body).await;
        assert_eq!(response.status(), 201, "create {body}");
        response.json().await.expect("the created user")
    }

    pub async fn update_user(&self, id: &str, body: &serde_json::Value) -> reqwest::Response {
        self.0.patch(format!("/api/admin/users/{id}"), body).await
    }

    pub async fn delete_user(&self, id: &str) -> reqwest::Response {
        self.0.delete(format!("/api/admin/users/{id}")).await
    }
}

impl TestApp {
    /// The admin API with an admin's bearer token.
    pub fn admin(&self, token: impl AsRef<str>) -> AdminApi {
        AdminApi(self.caller(token))
    }
}
