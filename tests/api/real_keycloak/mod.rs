//! The real-Keycloak lane: the same app, talking to a real Keycloak 26
//! server instead of the stand-in.
//!
//! The server (`scripts/keycloak run`) starts once per test process, on the
//! first test that asks for it, and stops when the process ends — pass,
//! fail or kill — because the script watches this process's pid. Its store
//! is an H2 file in a fresh directory, so every run starts empty. Tests
//! never share a realm: each makes its own from `keycloak-realm/realm.json`
//! (named `vg-…`, its URLs pointed at that test's app) through the admin
//! API, and deletes it when it ends.
//!
//! `VOXGATE_TEST_LANES=standin` skips this lane (the quick local loop);
//! otherwise a server that cannot start fails every test here, loudly.

mod bearer;
mod differential;
mod edge;
mod logout;
mod provisioning;
mod realm_import;
mod restart;
mod rotation;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::free_port;
use crate::helpers::{Caller, TestApp, TestSettings};
use crate::stack::{ADMIN_SECRET, WEB_SECRET, realm_for};

/// The bootstrap admin of the master realm; the password is made per run.
pub const MASTER_ADMIN: &str = "admin";

pub struct RealKeycloak {
    pub base: String,
    admin_password: String,
}

static SERVER: OnceLock<Result<RealKeycloak, String>> = OnceLock::new();

pub use voxgate_lab::repo_root;

/// Whether the real-Keycloak lane runs in this process.
pub fn lane_enabled() -> bool {
    std::env::var("VOXGATE_TEST_LANES").map_or(true, |lanes| {
        lanes.split(',').any(|l| l.trim() == "keycloak")
    })
}

/// The shared server, started on first use; `None` when the lane is off.
pub fn server() -> Option<&'static RealKeycloak> {
    if !lane_enabled() {
        eprintln!("real-Keycloak lane skipped (VOXGATE_TEST_LANES)");
        return None;
    }
    match SERVER.get_or_init(start) {
        Ok(server) => Some(server),
        Err(e) => panic!("the real Keycloak server did not start: {e}"),
    }
}

fn start() -> Result<RealKeycloak, String> {
    let process = KeycloakProcess::start()?;
    let server = RealKeycloak {
        base: process.base(),
        admin_password: process.admin_password.clone(),
    };
    server.import_project_realm()?;
    // The shared server lives as long as the test process; the script
    // stops it when the process is gone.
    std::mem::forget(process);
    Ok(server)
}

/// One running `scripts/keycloak run`, which can be stopped and started
/// again on the same ports and store.
pub struct KeycloakProcess {
    child: Option<std::process::Child>,
    pub http_port: u16,
    pub management_port: u16,
    data: PathBuf,
    admin_password: String,
    options: Vec<(String, String)>,
}

impl KeycloakProcess {
    pub fn start() -> Result<KeycloakProcess, String> {
        KeycloakProcess::start_with(&[])
    }

    /// A server of its own with extra Keycloak options as `KC_*`
    /// environment variables (hostname settings, say); `{http_port}` in a
    /// value is the port the server gets.
    pub fn start_with(options: &[(&str, &str)]) -> Result<KeycloakProcess, String> {
        let data = std::env::temp_dir().join(format!(
            "voxgate-keycloak-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let mut process = KeycloakProcess {
            child: None,
            http_port: free_port(),
            management_port: free_port(),
            data,
            admin_password: uuid::Uuid::new_v4().simple().to_string(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        // The ports are free when picked, but the server binds them only
        // after several seconds of start-up: another test may take one in
        // between. Then it starts again on other ports.
        for attempt in 1.. {
            match process.launch() {
                Err(e) if e.contains("Address already in use") && attempt < 4 => {
                    eprintln!("real Keycloak: a port was taken during start-up; new ports");
                    process.http_port = free_port();
                    process.management_port = free_port();
                }
                result => return result.map(|()| process),
            }
        }
        unreachable!("the loop returns")
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Starts the server and waits until it reports ready.
    pub fn launch(&mut self) -> Result<(), String> {
        let log_path = self.data.join("keycloak.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| e.to_string())?;
        let began = Instant::now();
        let mut child = Command::new(repo_root().join("scripts/keycloak"))
            .arg("run")
            .args(["--http-port", &self.http_port.to_string()])
            .args(["--management-port", &self.management_port.to_string()])
            .arg("--data")
            .arg(&self.data)
            .args(["--watch-pid", &std::process::id().to_string()])
            .env("KC_BOOTSTRAP_ADMIN_USERNAME", MASTER_ADMIN)
            .env("KC_BOOTSTRAP_ADMIN_PASSWORD", &self.admin_password)
            .envs(
                self.options
                    .iter()
                    .map(|(k, v)| (k, v.replace("{http_port}", &self.http_port.to_string()))),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("scripts/keycloak: {e}"))?;
        let tail = || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        // The first run of a machine also downloads and builds the server.
        let deadline = began + Duration::from_secs(420);
        loop {
            if health_ready(self.management_port) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited ({status}):\n{}", tail()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("not ready after 420 s:\n{}", tail()));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "real Keycloak ready on 127.0.0.1:{} in {:.1} s (log: {})",
            self.http_port,
            began.elapsed().as_secs_f64(),
            log_path.display()
        );
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server (TERM: Keycloak shuts down cleanly, its store stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A handle for admin calls and issuers, valid while this process runs.
    pub fn handle(&self) -> &'static RealKeycloak {
        Box::leak(Box::new(RealKeycloak {
            base: self.base(),
            admin_password: self.admin_password.clone(),
        }))
    }
}

impl Drop for KeycloakProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// `GET /health/ready` on the management port answered 200.
fn health_ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

impl RealKeycloak {
    /// The project realm, exactly as shipped, through the admin API.
    fn import_project_realm(&self) -> Result<(), String> {
        let realm: Value =
            serde_json::from_str(&crate::stack::project_realm_text()).map_err(|e| e.to_string())?;
        let admin = self.admin("voxgate");
        // The first test to get here is inside its own runtime, which cannot
        // be blocked on: a helper thread with a runtime of its own does it.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let response = admin.create_realm(&realm).await;
                match response.status().as_u16() {
                    201 | 409 => Ok(()),
                    status => Err(format!("importing the project realm: {status}")),
                }
            })
        })
        .join()
        .map_err(|_| "the realm import thread panicked".to_string())?
    }

    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.base)
    }

    /// The master realm's bootstrap admin password (made per run).
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// An admin-API client working on `realm`.
    pub fn admin(&self, realm: &str) -> KcAdmin {
        KcAdmin {
            base: self.base.clone(),
            realm: realm.to_string(),
            password: self.admin_password.clone(),
            http: reqwest::Client::new(),
        }
    }
}

/// Keycloak's admin REST API as the master realm's bootstrap admin.
pub struct KcAdmin {
    pub base: String,
    pub realm: String,
    password: String,
    http: reqwest::Client,
}

impl KcAdmin {
    /// A fresh master-realm admin token (they live a minute).
    pub async fn token(&self) -> String {
        let response = self
            .http
            .post(format!(
                "{}/realms/master/protocol/openid-connect/token",
                self.base
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", MASTER_ADMIN),
                ("password", self.password.as_str()),
            ])
            .send()
            .await
            .expect("master token request");
        assert_eq!(response.status(), 200, "master admin token");
        let body: Value = response.json().await.expect("token JSON");
        body["access_token"].as_str().expect("token").to_string()
    }

    /// A call under `/admin/realms/{realm}` (`path` starts with `/` or is
    /// empty for the realm itself).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let url = format!("{}/admin/realms/{}{path}", self.base, self.realm);
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token().await);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("admin request")
    }

    /// A GET that must answer 200 with JSON.
    pub async fn get(&self, path: &str) -> Value {
        let response = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON")
    }

    /// Deletes the realm, from a `Drop` impl: that runs inside the test's
    /// runtime, which cannot be blocked on, so a helper thread with its own
    /// runtime makes the call.
    pub fn delete_realm_from_drop(&self) {
        let admin = KcAdmin {
            base: self.base.clone(),
            realm: self.realm.clone(),
            password: self.password.clone(),
            http: reqwest::Client::new(),
        };
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    let _ = admin.call(reqwest::Method::DELETE, "", None).await;
                });
            }
        })
        .join();
    }

    pub async fn create_realm(&self, realm: &Value) -> reqwest::Response {
        Caller::at("", self.http.clone())
            .bearer(self.token().await)
            .post(&format!("{}/admin/realms", self.base), realm)
            .await
    }

    pub async fn user_by_username(&self, username: &str) -> Option<Value> {
        let users = self
            .get(&format!(
                "/users?username={}&exact=true",
                crate::stack::urlencoding(username)
            ))
            .await;
        users.as_array().and_then(|u| u.first().cloned())
    }

    /// Realm roles mapped to the user directly.
    pub async fn user_realm_roles(&self, id: &str) -> Vec<String> {
        names(&self.get(&format!("/users/{id}/role-mappings/realm")).await)
    }

    pub async fn user_sessions(&self, id: &str) -> usize {
        self.get(&format!("/users/{id}/sessions"))
            .await
            .as_array()
            .map_or(0, Vec::len)
    }

    /// Creates a user with a password; returns its id.
    pub async fn create_user(&self, username: &str, password: &str) -> String {
        let response = self
            .call(
                reqwest::Method::POST,
                "/users",
                Some(&json!({
                    "username": username,
                    "email": format!("{username}@example.com"),
                    "firstName": "Test",
                    "lastName": "User",
                    "enabled": true,
                    "emailVerified": true,
                    "credentials": [{"type": "password", "value": password, "temporary": false}],
                })),
            )
            .await;
        assert_eq!(response.status(), 201, "create {username} in Keycloak");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        location.rsplit('/').next().unwrap().to_string()
    }
}

fn names(roles: &Value) -> Vec<String> {
    let mut names: Vec<String> = roles
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The app wired to a realm of its own on the real server.
pub struct RealStack {
    pub app: TestApp,
    pub kc: &'static RealKeycloak,
    pub admin: KcAdmin,
    pub realm: String,
}

/// A realm made for one test from the project's realm file, its URLs
/// pointed at `app_base`; `edit` may change it before it is created.
pub fn test_realm(name: &str, app_base: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut realm = realm_for(app_base);
    realm["realm"] = json!(name);
    edit(&mut realm);
    realm
}

pub async fn spawn_real_stack() -> Option<RealStack> {
    spawn_real_stack_with(TestSettings::default(), |_| {}).await
}

pub async fn spawn_real_stack_with(
    settings: TestSettings,
    edit: impl FnOnce(&mut Value),
) -> Option<RealStack> {
    let kc = server()?;
    Some(spawn_real_stack_on(kc, settings, edit).await)
}

/// The app with a realm of its own on `kc`.
pub async fn spawn_real_stack_on(
    kc: &'static RealKeycloak,
    settings: TestSettings,
    edit: impl FnOnce(&mut Value),
) -> RealStack {
    let realm = format!("vg-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let admin = kc.admin(&realm);
    // The app's port goes into the realm's redirect and back-channel URLs,
    // so it is chosen first; a port taken meanwhile means another try.
    let mut edit = Some(edit);
    for attempt in 1..=5 {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        if attempt == 1 {
            let realm_json = test_realm(&realm, &base, edit.take().expect("first attempt"));
            let created = admin.create_realm(&realm_json).await;
            assert_eq!(created.status(), 201, "test realm {realm} created");
        } else {
            repoint_realm(&admin, &base).await;
        }
        let app_settings = settings
            .clone()
            .set("VOXGATE_BIND", format!("127.0.0.1:{port}"))
            .set("VOXGATE_PUBLIC_URL", base.clone())
            .set("VOXGATE_OIDC_ISSUER", kc.issuer(&realm))
            .set("VOXGATE_OIDC_CLIENT_SECRET", WEB_SECRET)
            .set("VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET);
        match crate::helpers::try_spawn_app_with(app_settings).await {
            Ok(app) => {
                let stack = RealStack {
                    app,
                    kc,
                    admin,
                    realm,
                };
                stack.wait_ready().await;
                return stack;
            }
            Err(e) if attempt < 5 => eprintln!("app on port {port} failed ({e}); retrying"),
            Err(e) => panic!("the app does not start: {e}"),
        }
    }
    unreachable!()
}

/// Moves the web client's redirect and back-channel URLs to a new app port.
async fn repoint_realm(admin: &KcAdmin, base: &str) {
    let clients = admin.get("/clients?clientId=voxgate-web").await;
    let mut client = clients[0].clone();
    let id = client["id"].as_str().expect("client id").to_string();
    client["redirectUris"] = json!([format!("{base}/*")]);
    client["attributes"]["backchannel.logout.url"] =
        json!(format!("{base}/auth/backchannel-logout"));
    let r = admin
        .call(
            reqwest::Method::PUT,
            &format!("/clients/{id}"),
            Some(&client),
        )
        .await;
    assert_eq!(r.status(), 204, "client repointed");
}

impl Drop for RealStack {
    fn drop(&mut self) {
        self.admin.delete_realm_from_drop();
    }
}

impl RealStack {
    pub fn issuer(&self) -> String {
        self.kc.issuer(&self.realm)
    }

    pub async fn wait_ready(&self) {
        self.app.wait_ready().await;
    }

    pub async fn password_token(&self, username: &str, password: &str) -> String {
        crate::stack::password_grant(&self.issuer(), username, password).await["access_token"]
            .as_str()
            .expect("access token")
            .to_string()
    }

    pub async fn browser_login(&self, username: &str, password: &str) -> reqwest::Client {
        let client = crate::stack::browser();
        let issuer = self.issuer();
        let callback = crate::stack::login_until_callback(
            &self.app, &issuer, &client, username, password, "/",
        )
        .await;
        crate::stack::follow_callback(&client, &callback).await;
        client
    }

    pub async fn me_status(&self, client: &reqwest::Client) -> u16 {
        self.app.me_status(client).await
    }

    /// `GET /api/me` with a bearer token, as JSON.
    pub async fn me(&self, token: &str) -> Value {
        let response = self.app.caller(token).get("/api/me").await;
        assert_eq!(response.status(), 200, "GET /api/me");
        response.json().await.expect("JSON")
    }
}
