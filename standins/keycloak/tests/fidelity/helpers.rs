//! Fixtures, starting the stand-in, and the request shapes the suite sends again and again:
//! the token grants of the seeded clients, the browser's authorization-code + PKCE login, RP
//! logout, and admin API calls with a bearer token.
//!
//! The clients, users and secrets are the ones seeded in the project realm
//! (`keycloak-realm/realm.json`), so the suite exercises the realm the application runs against.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keycloak_standin::{Standin, StandinConfig};
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

use crate::jwt::str_field;

pub const WEB_REDIRECT: &str = "http://127.0.0.1:8080/auth/callback";
/// `voxgate-web`'s client secret, seeded in the project realm.
pub const WEB_SECRET: &str = "dev-only-voxgate-web-secret";
/// `voxgate-admin`'s client secret, seeded in the project realm.
pub const ADMIN_SECRET: &str = "dev-only-voxgate-admin-secret";

// --- Fixtures and starting the stand-in --------------------------------------------------

/// Real Keycloak exports, JWKS and tokens, copied into the repository (sources and licences in
/// `tests/data/SOURCES.md`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn project_realm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../keycloak-realm/realm.json")
}

pub fn project_realm_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(project_realm_path()).expect("realm.json"))
        .expect("JSON")
}

/// The project realm loaded from its file; tests that need more options spread this.
pub fn voxgate_config() -> StandinConfig {
    StandinConfig {
        realm_files: vec![project_realm_path()],
        ..Default::default()
    }
}

pub async fn start_voxgate() -> Standin {
    Standin::start(voxgate_config())
        .await
        .expect("stand-in starts")
}

pub async fn start_with_json(realm: Value) -> Standin {
    Standin::start(StandinConfig {
        realm_jsons: vec![realm],
        ..Default::default()
    })
    .await
    .expect("stand-in starts")
}

// --- URLs ---------------------------------------------------------------------------------

/// An endpoint under `{issuer}/protocol/openid-connect/`, e.g. `token` or `logout`.
pub fn oidc_url(kc: &Standin, realm: &str, endpoint: &str) -> String {
    format!("{}/protocol/openid-connect/{endpoint}", kc.issuer(realm))
}

pub fn discovery_url(kc: &Standin, realm: &str) -> String {
    format!("{}/.well-known/openid-configuration", kc.issuer(realm))
}

/// An admin API URL; `path` starts after `/admin/realms`, e.g. `/voxgate/users`.
pub fn admin_url(kc: &Standin, path: &str) -> String {
    format!("{}/admin/realms{path}", kc.base_url())
}

// --- Browser ------------------------------------------------------------------------------

/// A browser: it keeps cookies (the SSO session) and does not follow redirects, so each
/// `Location` Keycloak sends can be checked.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A (verifier, S256 challenge) pair. Deterministic, so a failing run sends the same bytes again.
pub fn pkce() -> (String, String) {
    let verifier: String = (0..64)
        .map(|i| (b'a' + (i * 7 % 26) as u8) as char)
        .collect::<String>()
        + "0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("form action") + 8;
    let end = html[start..].find('"').expect("end quote") + start;
    html[start..end].replace("&amp;", "&")
}

pub fn location(resp: &Response) -> String {
    resp.headers()
        .get("location")
        .expect("location header")
        .to_str()
        .expect("ascii")
        .to_string()
}

/// The parameters of a redirect, from its fragment if it has one (`response_mode=fragment`),
/// else from its query.
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let parsed = url::Url::parse(url).expect("url");
    let raw = parsed
        .fragment()
        .map(str::to_string)
        .or_else(|| parsed.query().map(str::to_string))
        .unwrap_or_default();
    url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

pub fn param<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

pub fn auth_url(kc: &Standin, client_id: &str, challenge: &str, extra: &str) -> String {
    format!(
        "{}/protocol/openid-connect/auth?client_id={client_id}&redirect_uri={}&response_type=code&scope=openid&state=st-123&nonce=n-456&code_challenge={challenge}&code_challenge_method=S256{extra}",
        kc.issuer("voxgate"),
        urlencoding(WEB_REDIRECT)
    )
}

pub fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A browser's `GET` on `http` (which keeps its cookies).
pub async fn fetch(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> Response {
    http.get(url).send().await.expect("GET")
}

/// A browser's form submission on `http`.
pub async fn submit(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    form: &[(&str, &str)],
) -> Response {
    http.post(url).form(form).send().await.expect("form POST")
}

/// `voxgate-web`'s authorization request ([`auth_url`]) opened in the browser `http`.
pub async fn authorize(
    http: &reqwest::Client,
    kc: &Standin,
    challenge: &str,
    extra: &str,
) -> Response {
    fetch(http, auth_url(kc, "voxgate-web", challenge, extra)).await
}

/// Fills in and submits the login form of the page `html`.
pub async fn submit_login(
    http: &reqwest::Client,
    html: &str,
    user: &str,
    password: &str,
) -> Response {
    submit(
        http,
        form_action(html),
        &[("username", user), ("password", password)],
    )
    .await
}

/// Fills in and submits the update-password form of the page `html`.
pub async fn submit_new_password(
    http: &reqwest::Client,
    html: &str,
    new: &str,
    confirm: &str,
) -> Response {
    submit(
        http,
        form_action(html),
        &[("password-new", new), ("password-confirm", confirm)],
    )
    .await
}

/// Logs in through the HTML form and returns the redirect's parameters.
pub async fn browser_login(
    http: &reqwest::Client,
    kc: &Standin,
    user: &str,
    password: &str,
    challenge: &str,
) -> Vec<(String, String)> {
    let page = authorize(http, kc, challenge, "").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    let resp = submit_login(http, &html, user, password).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "login should redirect");
    query_pairs(&location(&resp))
}

/// The whole code flow: [`browser_login`] with a fresh PKCE pair, then the code exchange.
/// Returns the redirect's parameters and the token response, unchecked.
pub async fn log_in_and_exchange(
    http: &reqwest::Client,
    kc: &Standin,
    user: &str,
    password: &str,
) -> (Vec<(String, String)>, Response) {
    let (verifier, challenge) = pkce();
    let pairs = browser_login(http, kc, user, password, &challenge).await;
    let tokens = exchange_code(http, kc, param(&pairs, "code"), &verifier).await;
    (pairs, tokens)
}

/// A browser's RP-initiated logout (`GET .../logout`) with the given query parameters.
pub async fn browser_logout(
    http: &reqwest::Client,
    kc: &Standin,
    query: &[(&str, &str)],
) -> Response {
    http.get(oidc_url(kc, "voxgate", "logout"))
        .query(query)
        .send()
        .await
        .expect("logout")
}

// --- Token endpoint -----------------------------------------------------------------------

pub async fn exchange_code(
    http: &reqwest::Client,
    kc: &Standin,
    code: &str,
    verifier: &str,
) -> Response {
    web_token(
        http,
        kc,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A token-endpoint request of the confidential `voxgate-web` client, on
/// `http` (which may hold the browser's cookies).
pub async fn web_token(http: &reqwest::Client, kc: &Standin, form: &[(&str, &str)]) -> Response {
    http.post(oidc_url(kc, "voxgate", "token"))
        .basic_auth("voxgate-web", Some(WEB_SECRET))
        .form(form)
        .send()
        .await
        .expect("token request")
}

/// A refresh-token grant of the confidential `voxgate-web` client.
pub async fn web_refresh(http: &reqwest::Client, kc: &Standin, refresh_token: &str) -> Response {
    web_token(
        http,
        kc,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// A token-endpoint form post with no client authentication header; the status, body
/// (`null` if not JSON) and headers.
pub async fn post_token(
    kc: &Standin,
    realm: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value, HeaderMap) {
    let resp = submit(&client(), oidc_url(kc, realm, "token"), form).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// A refresh-token grant of the public `voxgate-cli` client.
pub async fn cli_refresh(kc: &Standin, refresh_token: &str) -> (StatusCode, Value, HeaderMap) {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "voxgate-cli"),
        ("refresh_token", refresh_token),
    ];
    post_token(kc, "voxgate", &form).await
}

/// A password grant of the public `voxgate-cli` client without a `scope`, unchecked, for
/// tests about how the grant fails.
pub async fn cli_password_grant(
    kc: &Standin,
    user: &str,
    password: &str,
) -> (StatusCode, Value, HeaderMap) {
    let form = [
        ("grant_type", "password"),
        ("client_id", "voxgate-cli"),
        ("username", user),
        ("password", password),
    ];
    post_token(kc, "voxgate", &form).await
}

/// A successful `scope=openid` password grant of `voxgate-cli`: the whole token response.
pub async fn password_token(kc: &Standin, user: &str, password: &str) -> Value {
    let (status, body, _) = post_token(
        kc,
        "voxgate",
        &[
            ("grant_type", "password"),
            ("client_id", "voxgate-cli"),
            ("username", user),
            ("password", password),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "password grant: {body}");
    body
}

/// [`password_token`], for the access token alone.
pub async fn password_access_token(kc: &Standin, user: &str, password: &str) -> String {
    str_field(&password_token(kc, user, password).await, "access_token").to_string()
}

/// The client-credentials grant of the `voxgate-admin` service account, unchecked.
pub async fn admin_client_credentials(kc: &Standin) -> (StatusCode, Value, HeaderMap) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "voxgate-admin"),
        ("client_secret", ADMIN_SECRET),
    ];
    post_token(kc, "voxgate", &form).await
}

/// An access token of the `voxgate-admin` service account (the application's admin client).
pub async fn admin_token(kc: &Standin) -> String {
    let (status, body, _) = admin_client_credentials(kc).await;
    assert_eq!(status, StatusCode::OK, "client credentials: {body}");
    body["access_token"]
        .as_str()
        .expect("access token")
        .to_string()
}

/// A token of the master realm's bootstrap admin (`admin-cli`).
pub async fn master_admin_token(kc: &Standin) -> String {
    let form = [
        ("grant_type", "password"),
        ("client_id", "admin-cli"),
        ("username", "admin"),
        ("password", "admin"),
    ];
    let (status, body, _) = post_token(kc, "master", &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("at").to_string()
}

/// A non-browser logout of a `voxgate-cli` session (form post with its refresh token).
pub async fn cli_logout(kc: &Standin, refresh_token: &str) -> Response {
    submit(
        &client(),
        oidc_url(kc, "voxgate", "logout"),
        &[
            ("client_id", "voxgate-cli"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Token introspection by the confidential client `client_id`: the JSON answer.
pub async fn introspect(kc: &Standin, client_id: &str, secret: &str, token: &str) -> Value {
    client()
        .post(oidc_url(kc, "voxgate", "token/introspect"))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json::<Value>()
        .await
        .expect("json")
}

pub async fn jwks(kc: &Standin, realm: &str) -> Value {
    fetch(&client(), oidc_url(kc, realm, "certs"))
        .await
        .json()
        .await
        .expect("json")
}

/// Keycloak's OAuth error body.
pub fn oauth_error(error: &str, description: &str) -> Value {
    json!({"error": error, "error_description": description})
}

/// Asserts a response's status and its whole JSON body.
pub async fn answers(response: Response, status: StatusCode, body: Value) {
    assert_eq!(response.status(), status);
    assert_eq!(response.json::<Value>().await.expect("JSON"), body);
}

// --- Admin API ----------------------------------------------------------------------------

/// An admin API request with a bearer token and, for writes, a JSON body.
pub async fn admin_request(
    http: &reqwest::Client,
    method: Method,
    url: impl reqwest::IntoUrl,
    token: &str,
    body: Option<&Value>,
) -> Response {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("admin request")
}

/// [`admin_request`], for the JSON body of the answer.
pub async fn admin_json(
    http: &reqwest::Client,
    method: Method,
    url: impl reqwest::IntoUrl,
    token: &str,
    body: Option<&Value>,
) -> Value {
    let response = admin_request(http, method, url, token, body).await;
    response.json().await.expect("a JSON body")
}

pub async fn admin_get(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    token: &str,
) -> Response {
    admin_request(http, Method::GET, url, token, None).await
}

pub async fn admin_get_json(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    token: &str,
) -> Value {
    admin_json(http, Method::GET, url, token, None).await
}

/// An admin `GET` with query parameters (searches such as `?username=..&exact=true`).
pub async fn admin_search(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    token: &str,
    query: &[(&str, &str)],
) -> Value {
    http.get(url)
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json")
}

pub async fn admin_post(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    token: &str,
    body: &Value,
) -> Response {
    admin_request(http, Method::POST, url, token, Some(body)).await
}

pub async fn admin_put(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    token: &str,
    body: &Value,
) -> Response {
    admin_request(http, Method::PUT, url, token, Some(body)).await
}

pub async fn admin_delete(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    token: &str,
) -> Response {
    admin_request(http, Method::DELETE, url, token, None).await
}

/// `POST /admin/realms/voxgate/users` with the user representation `user`.
pub async fn create_voxgate_user(
    http: &reqwest::Client,
    kc: &Standin,
    token: &str,
    user: &Value,
) -> Response {
    admin_post(http, admin_url(kc, "/voxgate/users"), token, user).await
}

/// The id of a voxgate user, read from the stand-in's state.
pub fn voxgate_user_id(kc: &Standin, username: &str) -> String {
    kc.user_by_username("voxgate", username).expect(username)["id"]
        .as_str()
        .expect("id")
        .to_string()
}
