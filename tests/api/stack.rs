//! The app wired to a Keycloak stand-in serving the project's realm file,
//! with the realm's redirect and back-channel URLs pointed at the test app.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keycloak_standin::{Standin, StandinConfig};
use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, TestSettings, free_port};

pub const REALM: &str = "voxgate";
pub use voxgate_lab::env::{ADMIN_SECRET, WEB_SECRET};

pub struct Stack {
    pub app: TestApp,
    pub kc: Standin,
    pub polly: Option<polly_standin::PollyStandin>,
}

/// The app with the Keycloak stand-in and a Polly stand-in as its speech
/// engine, reached through the real AWS SDK.
pub async fn spawn_polly_stack(settings: TestSettings) -> Stack {
    let polly = polly_standin::PollyStandin::start(polly_standin::PollyConfig::default())
        .await
        .expect("polly stand-in starts");
    let settings = settings
        .set("VOXGATE_TTS_ENGINE", "polly")
        .set("AWS_ENDPOINT_URL_POLLY", polly.endpoint_url())
        .set_default("AWS_REGION", voxgate_lab::env::POLLY_REGION)
        .set_default("AWS_ACCESS_KEY_ID", voxgate_lab::env::POLLY_KEY_ID)
        .set_default("AWS_SECRET_ACCESS_KEY", voxgate_lab::env::POLLY_SECRET);
    let mut stack = spawn_stack_with(settings).await;
    stack.polly = Some(polly);
    stack
}

/// The shipped realm file's text with its `${NAME:default}` placeholders at
/// their defaults, as `kc.sh --import-realm` and `voxgate realm import` read
/// it when the environment sets none (the admin API takes JSON as it is).
pub fn project_realm_text() -> String {
    project_realm_text_with(&[])
}

/// The realm file's text with `vars` as the importer's environment.
pub fn project_realm_text_with(vars: &[(&str, &str)]) -> String {
    voxgate_lab::realm::text_with(&voxgate_lab::repo_root(), vars).expect("realm file")
}

/// The project's realm, with every local URL moved to the test app's port.
pub fn realm_for(app_base: &str) -> Value {
    voxgate_lab::realm::for_origin(&voxgate_lab::repo_root(), app_base, &[]).expect("realm JSON")
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(TestSettings::default()).await
}

/// A stack and a browser signed in as bob.
pub async fn spawn_with_bob() -> (Stack, reqwest::Client) {
    let stack = spawn_stack().await;
    let (bob, _) = stack.browser_login("bob", "bob", "/").await;
    (stack, bob)
}

pub async fn spawn_stack_with(settings: TestSettings) -> Stack {
    // The app's port must be known before the realm (its redirect and
    // back-channel URLs) is loaded, so it is picked first; if another test
    // takes it in between, start over with a new one.
    for attempt in 1..=5 {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let kc = Standin::start(StandinConfig {
            realm_jsons: vec![realm_for(&base)],
            ..StandinConfig::default()
        })
        .await
        .expect("keycloak stand-in starts");
        let app_settings = settings
            .clone()
            .set("VOXGATE_BIND", format!("127.0.0.1:{port}"))
            .set("VOXGATE_PUBLIC_URL", base.clone())
            .set("VOXGATE_OIDC_ISSUER", kc.issuer(REALM))
            .set("VOXGATE_OIDC_CLIENT_SECRET", WEB_SECRET)
            .set("VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET);
        match crate::helpers::try_spawn_app_with(app_settings).await {
            Ok(app) => {
                let stack = Stack {
                    app,
                    kc,
                    polly: None,
                };
                stack.wait_ready().await;
                return stack;
            }
            Err(e) if attempt < 5 => {
                eprintln!("starting the app on port {port} failed ({e}); retrying");
            }
            Err(e) => panic!("the app does not start: {e}"),
        }
    }
    unreachable!()
}

impl Stack {
    /// The status of `GET /api/me` for a browser-like client: 200 while its
    /// session lives, 401 once it has ended.
    pub async fn me_status(&self, client: &reqwest::Client) -> u16 {
        self.app.me_status(client).await
    }

    /// A caller through a browser-like client (its cookie session).
    pub fn browser(&self, client: &reqwest::Client) -> Caller {
        Caller::at(&self.app.url(""), client.clone())
    }

    /// A browser signed in as a seeded user (password = username), and
    /// its session's CSRF token.
    pub async fn signed_in(&self, username: &str) -> (reqwest::Client, String) {
        let (client, _) = self.browser_login(username, username, "/").await;
        (client, self.session_column("csrf_token").await)
    }

    /// A column of the only (or any) session row, such as its `csrf_token`
    /// or `keycloak_sid`.
    pub async fn session_column(&self, column: &str) -> String {
        sqlx::query_scalar(&format!("SELECT {column} FROM sessions LIMIT 1"))
            .fetch_one(&self.app.db)
            .await
            .unwrap()
    }

    /// Waits until the app has fetched the realm's keys.
    pub async fn wait_ready(&self) {
        self.app.wait_ready().await;
    }

    /// A real access token for a seeded or created user (password grant on
    /// the dev-only `voxgate-cli` client).
    pub async fn password_token(&self, username: &str, password: &str) -> String {
        self.password_grant(username, password).await["access_token"]
            .as_str()
            .expect("access token")
            .to_string()
    }

    pub async fn password_grant(&self, username: &str, password: &str) -> Value {
        password_grant(&self.kc.issuer(REALM), username, password).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(self.app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Signs in through the real HTML login form like a browser would and
    /// returns the client holding the session cookie, plus where the app
    /// finally sent it.
    pub async fn browser_login(
        &self,
        username: &str,
        password: &str,
        return_to: &str,
    ) -> (reqwest::Client, String) {
        let client = browser();
        let landing = self
            .browser_login_with(&client, username, password, return_to)
            .await;
        (client, landing)
    }

    pub async fn browser_login_with(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
        return_to: &str,
    ) -> String {
        let callback = self
            .login_until_callback(client, username, password, return_to)
            .await;
        follow_callback(client, &callback).await
    }

    /// Runs the flow up to (not including) the app's callback and returns
    /// the callback URL Keycloak sent the browser to.
    pub async fn login_until_callback(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
        return_to: &str,
    ) -> String {
        login_until_callback(
            &self.app,
            &self.kc.issuer(REALM),
            client,
            username,
            password,
            return_to,
        )
        .await
    }

    /// The claims of a JWT, decoded without verification.
    pub fn claims(token: &str) -> Value {
        let payload = token.split('.').nth(1).expect("payload");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
    }

    /// A token with Keycloak's exact header, signed by the realm's key.
    pub fn forge(&self, payload: &Value) -> String {
        let header = format!(
            r#"{{"alg":"RS256","typ" : "JWT","kid" : "{}"}}"#,
            self.kc.current_kid(REALM)
        );
        self.kc.sign_jws(REALM, &header, payload)
    }

    /// Fresh, valid access-token claims modelled on a real token of `bob`.
    pub async fn valid_claims(&self) -> Value {
        let token = self.password_token("bob", "bob").await;
        let mut claims = Self::claims(&token);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 300);
        claims
    }
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

pub fn location(response: &reqwest::Response) -> String {
    let raw = response.headers()["location"].to_str().unwrap().to_string();
    match url::Url::parse(&raw) {
        Ok(u) => u.to_string(),
        Err(_) => response.url().join(&raw).unwrap().to_string(),
    }
}

pub fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The `action` of the first form on a page, HTML entities decoded.
pub fn form_action(html: &str) -> String {
    let start = html.find("<form").expect("a form");
    let rest = &html[start..];
    let a = rest.find("action=\"").expect("form action") + 8;
    let end = rest[a..].find('"').unwrap();
    rest[a..a + end].replace("&amp;", "&")
}

/// A token from the dev-only `voxgate-cli` client's password grant.
pub async fn password_grant(issuer: &str, username: &str, password: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{issuer}/protocol/openid-connect/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "voxgate-cli"),
            ("username", username),
            ("password", password),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "password grant for {username}");
    response.json().await.unwrap()
}

/// Lets the app finish a sign-in at its callback; returns where it sent
/// the browser.
pub async fn follow_callback(client: &reqwest::Client, callback: &str) -> String {
    let done = client.get(callback).send().await.unwrap();
    assert_eq!(
        done.status(),
        303,
        "callback redirects: {}",
        done.text().await.unwrap_or_default()
    );
    location(&done)
}

/// The browser flow up to (not including) the app's callback: returns the
/// callback URL Keycloak sent the browser to.
pub async fn login_until_callback(
    app: &TestApp,
    issuer: &str,
    client: &reqwest::Client,
    username: &str,
    password: &str,
    return_to: &str,
) -> String {
    let start = client
        .get(app.url(&format!("/auth/login?return_to={}", urlencoding(return_to))))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "login redirects to Keycloak");
    let auth_url = location(&start);
    assert!(auth_url.starts_with(issuer), "{auth_url}");
    let page = client.get(&auth_url).send().await.unwrap();
    if page.status() == 302 {
        // Keycloak already has an SSO session for this browser.
        let callback = location(&page);
        assert!(
            callback.starts_with(&app.url("/auth/callback")),
            "{callback}"
        );
        return callback;
    }
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let action = form_action(&html);
    let submitted = client
        .post(&action)
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 302, "login form accepted");
    let callback = location(&submitted);
    assert!(
        callback.starts_with(&app.url("/auth/callback")),
        "{callback}"
    );
    callback
}

impl Stack {
    /// A master-realm admin token (Keycloak's bootstrap admin).
    pub async fn password_token_master(&self) -> String {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/realms/master/protocol/openid-connect/token",
                self.kc.base_url()
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", "admin"),
                ("password", "admin"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Valid claims derived from an existing token, with fresh times, when
    /// Keycloak itself cannot be asked.
    pub fn valid_claims_offline(&self, token: &str) -> Value {
        let mut claims = Self::claims(token);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 300);
        claims["jti"] = json!(format!("onrtro:{}", uuid::Uuid::new_v4()));
        claims
    }
}

/// A realm's discovery document, fetched from `realm_url`.
pub async fn discovery_document(realm_url: &str) -> Value {
    reqwest::get(format!("{realm_url}/.well-known/openid-configuration"))
        .await
        .expect("discovery answers")
        .json()
        .await
        .expect("a JSON document")
}

/// The app on `port` for a realm whose public issuer it cannot reach, with
/// the realm's internal address as its discovery URL.
pub fn internal_discovery_settings(port: u16, public_issuer: &str, internal: &str) -> TestSettings {
    TestSettings::default()
        .set("VOXGATE_BIND", format!("127.0.0.1:{port}"))
        .set("VOXGATE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .set("VOXGATE_OIDC_ISSUER", public_issuer)
        .set("VOXGATE_OIDC_DISCOVERY_URL", internal)
        .set("VOXGATE_OIDC_CLIENT_SECRET", WEB_SECRET)
        .set("VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET)
}
