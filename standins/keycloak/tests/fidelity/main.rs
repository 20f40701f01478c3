//! Fidelity suite: checks the stand-in against the Keycloak 26 wire facts (header bytes, kid
//! derivation, claim sets and order, discovery, status codes and error bodies) and runs the
//! browser, token, logout, admin and fault-injection flows end to end over HTTP.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keycloak_standin::{Standin, StandinConfig};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

/// Base64url of `{"alg":"RS256","typ" : "JWT","kid" : "`. The 51st character also carries the
/// top bits of the kid's first character, so the full prefix holds for kids starting with a
/// letter or `_` (as in every captured token); the first 48 characters hold for any kid.
const HEADER_PREFIX: &str = "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJ";

fn has_keycloak_header_prefix(token: &str) -> bool {
    let kid_first = b64_json(token.split('.').next().unwrap_or(""))["kid"]
        .as_str()
        .and_then(|k| k.chars().next())
        .unwrap_or('A');
    if kid_first.is_ascii_alphabetic() || kid_first == '_' {
        token.starts_with(HEADER_PREFIX)
    } else {
        token.starts_with(&HEADER_PREFIX[..48])
    }
}
const WEB_REDIRECT: &str = "http://127.0.0.1:8080/auth/callback";

/// Real Keycloak exports, JWKS and tokens, copied into the repository (sources and licences in
/// `tests/data/SOURCES.md`).
fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn project_realm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../keycloak-realm/realm.json")
}

fn project_realm_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(project_realm_path()).expect("realm.json"))
        .expect("JSON")
}

async fn start_voxgate() -> Standin {
    Standin::start(StandinConfig {
        realm_files: vec![project_realm_path()],
        ..Default::default()
    })
    .await
    .expect("stand-in starts")
}

async fn start_with_json(realm: Value) -> Standin {
    Standin::start(StandinConfig {
        realm_jsons: vec![realm],
        ..Default::default()
    })
    .await
    .expect("stand-in starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn b64_json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64url")).expect("json")
}

fn header_str(token: &str) -> String {
    String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("utf8")
}

fn claims(token: &str) -> Value {
    b64_json(token.split('.').nth(1).expect("payload"))
}

fn keys_of(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

fn pkce() -> (String, String) {
    let verifier: String = (0..64)
        .map(|i| (b'a' + (i * 7 % 26) as u8) as char)
        .collect::<String>()
        + "0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("form action") + 8;
    let end = html[start..].find('"').expect("end quote") + start;
    html[start..end].replace("&amp;", "&")
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .expect("location header")
        .to_str()
        .expect("ascii")
        .to_string()
}

fn query_pairs(url: &str) -> Vec<(String, String)> {
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

fn auth_url(kc: &Standin, client_id: &str, challenge: &str, extra: &str) -> String {
    format!(
        "{}/protocol/openid-connect/auth?client_id={client_id}&redirect_uri={}&response_type=code&scope=openid&state=st-123&nonce=n-456&code_challenge={challenge}&code_challenge_method=S256{extra}",
        kc.issuer("voxgate"),
        urlencoding(WEB_REDIRECT)
    )
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Logs in through the HTML form and returns the redirect's parameters.
async fn browser_login(
    http: &reqwest::Client,
    kc: &Standin,
    user: &str,
    password: &str,
    challenge: &str,
) -> Vec<(String, String)> {
    let page = fetch(http, auth_url(kc, "voxgate-web", challenge, "")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    let resp = submit(
        http,
        form_action(&html),
        &[("username", user), ("password", password)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND, "login should redirect");
    query_pairs(&location(&resp))
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

async fn exchange_code(
    http: &reqwest::Client,
    kc: &Standin,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
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
async fn web_token(
    http: &reqwest::Client,
    kc: &Standin,
    form: &[(&str, &str)],
) -> reqwest::Response {
    http.post(format!(
        "{}/protocol/openid-connect/token",
        kc.issuer("voxgate")
    ))
    .basic_auth("voxgate-web", Some("dev-only-voxgate-web-secret"))
    .form(form)
    .send()
    .await
    .expect("token request")
}

/// A browser's `GET` on `http` (which keeps its cookies).
async fn fetch(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> reqwest::Response {
    http.get(url).send().await.expect("GET")
}

/// A browser's form submission on `http`.
async fn submit(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    form: &[(&str, &str)],
) -> reqwest::Response {
    http.post(url).form(form).send().await.expect("form POST")
}

/// An admin API request with a bearer token and, for writes, a JSON body.
async fn admin_request(
    http: &reqwest::Client,
    method: Method,
    url: impl reqwest::IntoUrl,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("admin request")
}

/// [`admin_request`], for the JSON body of the answer.
async fn admin_json(
    http: &reqwest::Client,
    method: Method,
    url: impl reqwest::IntoUrl,
    token: &str,
    body: Option<&Value>,
) -> Value {
    let response = admin_request(http, method, url, token, body).await;
    response.json().await.expect("a JSON body")
}

/// Asserts a response's status and its whole JSON body.
async fn answers(response: reqwest::Response, status: StatusCode, body: Value) {
    assert_eq!(response.status(), status);
    assert_eq!(response.json::<Value>().await.expect("JSON"), body);
}

async fn post_token(
    kc: &Standin,
    realm: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let resp = submit(
        &client(),
        format!("{}/protocol/openid-connect/token", kc.issuer(realm)),
        form,
    )
    .await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// A refresh-token grant of the public `voxgate-cli` client.
async fn cli_refresh(
    kc: &Standin,
    refresh_token: &str,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "voxgate-cli"),
        ("refresh_token", refresh_token),
    ];
    post_token(kc, "voxgate", &form).await
}

async fn password_token(kc: &Standin, user: &str, password: &str) -> Value {
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

async fn admin_token(kc: &Standin) -> String {
    let (status, body, _) = post_token(
        kc,
        "voxgate",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "voxgate-admin"),
            ("client_secret", "dev-only-voxgate-admin-secret"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "client credentials: {body}");
    body["access_token"]
        .as_str()
        .expect("access token")
        .to_string()
}

/// A token of the master realm's bootstrap admin (`admin-cli`).
async fn master_admin_token(kc: &Standin) -> String {
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

async fn jwks(kc: &Standin, realm: &str) -> Value {
    fetch(
        &client(),
        format!("{}/protocol/openid-connect/certs", kc.issuer(realm)),
    )
    .await
    .json()
    .await
    .expect("json")
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// SubjectPublicKeyInfo DER of an RSA key, rebuilt from the JWK's `n` and `e`.
fn spki_from_jwk(jwk: &Value) -> Vec<u8> {
    let int = |b64: &str| {
        let mut bytes = URL_SAFE_NO_PAD.decode(b64).expect("b64");
        if bytes[0] & 0x80 != 0 {
            bytes.insert(0, 0);
        }
        der(0x02, &bytes)
    };
    let rsa = der(
        0x30,
        &[
            int(jwk["n"].as_str().expect("n")),
            int(jwk["e"].as_str().expect("e")),
        ]
        .concat(),
    );
    let alg = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let bits = der(0x03, &[vec![0u8], rsa].concat());
    der(0x30, &[alg, bits].concat())
}

fn check_jwk_derivations(jwk: &Value) {
    let spki = spki_from_jwk(jwk);
    let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&spki));
    assert_eq!(jwk["kid"], json!(kid), "kid = b64url(SHA-256(SPKI))");
    let cert = STANDARD
        .decode(jwk["x5c"][0].as_str().expect("x5c"))
        .expect("cert b64");
    assert!(
        cert.windows(spki.len()).any(|w| w == spki.as_slice()),
        "certificate carries the key"
    );
    assert_eq!(
        jwk["x5t"],
        json!(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&cert)))
    );
    assert_eq!(
        jwk["x5t#S256"],
        json!(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&cert)))
    );
}

fn rs256_validate(token: &str, jwks: &Value, audience: Option<&str>, issuer: &str) -> Value {
    let kid = b64_json(token.split('.').next().expect("header"))["kid"]
        .as_str()
        .expect("kid")
        .to_string();
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == json!(kid) && k["use"] == json!("sig"))
        .expect("signing key for kid");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().expect("n"),
        jwk["e"].as_str().expect("e"),
    )
    .expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    match audience {
        Some(a) => validation.set_audience(&[a]),
        None => validation.validate_aud = false,
    }
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("token validates")
        .claims
}

// ---------------------------------------------------------------------------------------
// Realm loading
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_fixture_realm_loads_and_serves_discovery() {
    let mut loaded = 0;
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !name.starts_with("realm-") {
            continue;
        }
        let realm = fixture(&name)["realm"]
            .as_str()
            .expect("realm name")
            .to_string();
        let kc = Standin::start(StandinConfig {
            realm_files: vec![path.clone()],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{name} loads: {e:#}"));
        let doc: Value = fetch(
            &client(),
            format!("{}/.well-known/openid-configuration", kc.issuer(&realm)),
        )
        .await
        .json()
        .await
        .expect("json");
        assert_eq!(doc["issuer"], json!(kc.issuer(&realm)), "{name}");
        loaded += 1;
    }
    assert!(
        loaded >= 4,
        "expected the four fixture realms, loaded {loaded}"
    );
}

#[tokio::test]
async fn fixture_users_can_sign_in_with_their_imported_passwords() {
    let kc = Standin::start(StandinConfig {
        realm_files: vec![
            fixtures_dir().join("realm-keycloak-quickstarts-jakarta-jaxrs-resource-server.json"),
        ],
        ..Default::default()
    })
    .await
    .expect("start");
    let (status, body, _) = post_token(
        &kc,
        "quickstart",
        &[
            ("grant_type", "password"),
            ("client_id", "jakarta-jaxrs-resource-server"),
            ("client_secret", "secret"),
            ("username", "alice"),
            ("password", "alice"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = claims(body["access_token"].as_str().expect("token"));
    assert_eq!(
        c["realm_access"]["roles"],
        json!(["user", "offline_access"])
    );
    assert_eq!(
        c["resource_access"]["account"]["roles"],
        json!(["manage-account", "manage-account-links"])
    );
    assert_eq!(c["aud"], json!("account"));
}

#[tokio::test]
async fn project_realm_loads_with_seeded_users_and_roles() {
    let kc = start_voxgate().await;
    let alice = kc.user_by_username("voxgate", "alice").expect("alice");
    assert_eq!(alice["enabled"], json!(true));
    assert_eq!(alice["requiredActions"], json!([]));
    let roles = kc.user_realm_roles("voxgate", alice["id"].as_str().expect("id"));
    assert!(
        roles.contains(&"admin".to_string())
            && roles.contains(&"default-roles-voxgate".to_string())
    );
    let bob = kc
        .user_by_username("voxgate", "BOB")
        .expect("usernames are case-insensitive");
    assert_eq!(bob["email"], json!("bob@example.com"));
    assert!(
        kc.user_by_username("voxgate", "service-account-voxgate-admin")
            .is_some()
    );
}

#[tokio::test]
async fn invalid_realm_file_error_names_the_field() {
    let mut realm = project_realm_json();
    realm["clients"][2]["redirectUris"] = json!("http://x/*");
    let err = Standin::start(StandinConfig {
        realm_jsons: vec![realm],
        ..Default::default()
    })
    .await
    .err()
    .map(|e| format!("{e:#}"))
    .expect("import fails");
    assert!(
        err.contains("clients[2].redirectUris: expected array of strings"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Discovery and keys
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn discovery_document_has_every_field_of_a_real_keycloak_document() {
    let kc = start_voxgate().await;
    let resp = fetch(
        &client(),
        format!("{}/.well-known/openid-configuration", kc.issuer("voxgate")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.expect("json");
    let real = fixture("discovery-keycloak24-master-prest-config_test.json");
    for key in keys_of(&real) {
        assert!(doc.get(&key).is_some(), "missing discovery field {key}");
    }
    let iss = kc.issuer("voxgate");
    assert_eq!(doc["issuer"], json!(iss));
    assert_eq!(
        doc["token_endpoint"],
        json!(format!("{iss}/protocol/openid-connect/token"))
    );
    assert_eq!(
        doc["jwks_uri"],
        json!(format!("{iss}/protocol/openid-connect/certs"))
    );
    assert_eq!(
        doc["end_session_endpoint"],
        json!(format!("{iss}/protocol/openid-connect/logout"))
    );
    assert_eq!(
        doc["code_challenge_methods_supported"],
        json!(["plain", "S256"])
    );
    assert!(!iss.contains("/auth/"));
}

#[tokio::test]
async fn jwks_keys_follow_keycloak_kid_and_thumbprint_derivation() {
    // The derivation check itself is first proven on real Keycloak captures.
    for name in [
        "jwks-keycloak20-master-DockYard-openid_connect.json",
        "jwks-keycloak24-master-prest-config_test.json",
    ] {
        for jwk in fixture(name)["keys"].as_array().expect("keys") {
            check_jwk_derivations(jwk);
        }
    }
    let kc = start_voxgate().await;
    let set = jwks(&kc, "voxgate").await;
    let keys = set["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys_of(&keys[0]),
        [
            "kid", "kty", "alg", "use", "n", "e", "x5c", "x5t", "x5t#S256"
        ]
    );
    assert_eq!(
        (keys[0]["alg"].clone(), keys[0]["use"].clone()),
        (json!("RS256"), json!("sig"))
    );
    assert_eq!(
        (keys[1]["alg"].clone(), keys[1]["use"].clone()),
        (json!("RSA-OAEP"), json!("enc"))
    );
    for k in keys {
        check_jwk_derivations(k);
    }
    assert_eq!(keys[0]["kid"], json!(kc.current_kid("voxgate")));
    let cert = STANDARD
        .decode(keys[0]["x5c"][0].as_str().expect("x5c"))
        .expect("der");
    assert!(
        cert.windows(7).any(|w| w == b"voxgate"),
        "certificate subject CN=<realm>"
    );
}

// ---------------------------------------------------------------------------------------
// Token shape
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn access_token_header_bytes_and_claim_order_match_keycloak() {
    let kc = start_voxgate().await;
    let body = password_token(&kc, "alice", "alice").await;
    assert_eq!(
        keys_of(&body),
        [
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "refresh_token",
            "token_type",
            "id_token",
            "not-before-policy",
            "session_state",
            "scope"
        ]
    );
    assert_eq!(body["expires_in"], json!(300));
    assert_eq!(body["refresh_expires_in"], json!(1800));
    let access = body["access_token"].as_str().expect("access");
    assert!(has_keycloak_header_prefix(access));
    assert_eq!(
        header_str(access),
        format!(
            r#"{{"alg":"RS256","typ" : "JWT","kid" : "{}"}}"#,
            kc.current_kid("voxgate")
        )
    );
    let c = claims(access);
    assert_eq!(
        keys_of(&c),
        [
            "exp",
            "iat",
            "jti",
            "iss",
            "aud",
            "sub",
            "typ",
            "azp",
            "sid",
            "acr",
            "realm_access",
            "resource_access",
            "scope",
            "email_verified",
            "name",
            "preferred_username",
            "given_name",
            "family_name",
            "email"
        ]
    );
    assert_eq!(c["aud"], json!(["voxgate", "account"]));
    assert_eq!(c["typ"], json!("Bearer"));
    assert_eq!(c["azp"], json!("voxgate-cli"));
    assert_eq!(c["scope"], json!("openid email profile"));
    assert_eq!(c["name"], json!("Alice Admin"));
    assert_eq!(c["sid"], body["session_state"]);
    assert!(c["jti"].as_str().expect("jti").starts_with("onrtro:"));
    assert!(c.get("nonce").is_none() && c.get("session_state").is_none());
    let roles = c["realm_access"]["roles"].as_array().expect("roles");
    for r in [
        "admin",
        "default-roles-voxgate",
        "user",
        "offline_access",
        "uma_authorization",
    ] {
        assert!(roles.contains(&json!(r)), "realm role {r}");
    }
    let refresh = body["refresh_token"].as_str().expect("refresh");
    let rh = b64_json(refresh.split('.').next().expect("h"));
    assert_eq!(rh["alg"], json!("HS512"));
    assert!(uuid::Uuid::parse_str(rh["kid"].as_str().expect("kid")).is_ok());
    let set = jwks(&kc, "voxgate").await;
    assert!(
        set["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k["kid"] != rh["kid"]),
        "HMAC key never published"
    );
    let rc = claims(refresh);
    assert_eq!(
        keys_of(&rc),
        [
            "exp", "iat", "jti", "iss", "aud", "sub", "typ", "azp", "sid", "scope"
        ]
    );
    assert_eq!(rc["typ"], json!("Refresh"));
    assert_eq!(rc["aud"], json!(kc.issuer("voxgate")));
}

#[tokio::test]
async fn issued_tokens_validate_with_the_jsonwebtoken_crate() {
    let kc = start_voxgate().await;
    let body = password_token(&kc, "bob", "bob").await;
    let set = jwks(&kc, "voxgate").await;
    let iss = kc.issuer("voxgate");
    let access = rs256_validate(
        body["access_token"].as_str().expect("at"),
        &set,
        Some("voxgate"),
        &iss,
    );
    assert_eq!(access["preferred_username"], json!("bob"));
    let id = rs256_validate(
        body["id_token"].as_str().expect("id"),
        &set,
        Some("voxgate-cli"),
        &iss,
    );
    assert_eq!(id["typ"], json!("ID"));
    let sa = admin_token(&kc).await;
    rs256_validate(&sa, &set, Some("realm-management"), &iss);
}

#[tokio::test]
async fn service_account_token_has_keycloak_shape_and_no_refresh_token() {
    let kc = start_voxgate().await;
    let (status, body, _) = post_token(
        &kc,
        "voxgate",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "voxgate-admin"),
            ("client_secret", "dev-only-voxgate-admin-secret"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys_of(&body),
        [
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "token_type",
            "not-before-policy",
            "scope"
        ]
    );
    assert_eq!(body["refresh_expires_in"], json!(0));
    let c = claims(body["access_token"].as_str().expect("token"));
    assert!(c.get("sid").is_none());
    assert_eq!(
        c["preferred_username"],
        json!("service-account-voxgate-admin")
    );
    assert_eq!(c["client_id"], json!("voxgate-admin"));
    assert_eq!(c["clientAddress"], json!("127.0.0.1"));
    assert!(c["jti"].as_str().expect("jti").starts_with("trrtcc:"));
    let rm = c["resource_access"]["realm-management"]["roles"]
        .as_array()
        .expect("roles");
    for r in [
        "manage-users",
        "view-users",
        "query-users",
        "view-realm",
        "query-groups",
    ] {
        assert!(rm.contains(&json!(r)), "{r}");
    }
    let aud = c["aud"].as_array().expect("aud array");
    assert!(aud.contains(&json!("realm-management")) && aud.contains(&json!("account")));
    assert_eq!(keys_of(&c).last().map(String::as_str), Some("client_id"));
}

// ---------------------------------------------------------------------------------------
// Browser login
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn code_flow_with_pkce_logs_in_through_the_html_form() {
    let kc = start_voxgate().await;
    let http = client();
    let (verifier, challenge) = pkce();
    let page = fetch(&http, auth_url(&kc, "voxgate-web", &challenge, "")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("kc-form-login"));
    let bad = submit(
        &http,
        form_action(&html),
        &[("username", "alice"), ("password", "wrong")],
    )
    .await;
    assert_eq!(bad.status(), StatusCode::OK);
    let bad_html = bad.text().await.expect("html");
    assert!(bad_html.contains("Invalid username or password."));
    let resp = submit(
        &http,
        form_action(&bad_html),
        &[("username", "alice@example.com"), ("password", "alice")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let loc = location(&resp);
    assert!(
        loc.starts_with(&format!("{WEB_REDIRECT}?state=st-123&session_state=")),
        "{loc}"
    );
    let pairs = query_pairs(&loc);
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["state", "session_state", "iss", "code"]);
    assert_eq!(param(&pairs, "iss"), kc.issuer("voxgate"));

    let tok = exchange_code(&http, &kc, param(&pairs, "code"), &verifier).await;
    assert_eq!(tok.status(), StatusCode::OK);
    assert_eq!(tok.headers()["cache-control"], "no-store");
    assert_eq!(tok.headers()["pragma"], "no-cache");
    let body: Value = tok.json().await.expect("json");
    let access = body["access_token"].as_str().expect("access");
    let ac = claims(access);
    assert_eq!(ac["azp"], json!("voxgate-web"));
    assert_eq!(
        ac["allowed-origins"],
        json!([
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "https://localhost:8443",
            "https://127.0.0.1:8443"
        ])
    );
    assert!(ac["jti"].as_str().expect("jti").starts_with("onrtac:"));
    assert_eq!(ac["acr"], json!("1"));
    let id = body["id_token"].as_str().expect("id");
    assert!(has_keycloak_header_prefix(id), "{}", header_str(id));
    let ic = claims(id);
    assert_eq!(
        keys_of(&ic),
        [
            "exp",
            "iat",
            "auth_time",
            "jti",
            "iss",
            "aud",
            "sub",
            "typ",
            "azp",
            "nonce",
            "sid",
            "at_hash",
            "acr",
            "email_verified",
            "name",
            "preferred_username",
            "given_name",
            "family_name",
            "email"
        ]
    );
    assert_eq!(ic["aud"], json!("voxgate-web"));
    assert_eq!(ic["nonce"], json!("n-456"));
    let digest = sha2::Sha256::digest(access.as_bytes());
    assert_eq!(ic["at_hash"], json!(URL_SAFE_NO_PAD.encode(&digest[..16])));

    let info = admin_request(
        &http,
        Method::GET,
        format!("{}/protocol/openid-connect/userinfo", kc.issuer("voxgate")),
        access,
        None,
    )
    .await;
    assert_eq!(info.status(), StatusCode::OK);
    let info: Value = info.json().await.expect("json");
    assert_eq!(info["sub"], ac["sub"]);
    assert_eq!(info["email"], json!("alice@example.com"));

    // A second authorization request reuses the SSO session without a form.
    let (_, challenge2) = pkce();
    let again = fetch(&http, auth_url(&kc, "voxgate-web", &challenge2, "")).await;
    assert_eq!(again.status(), StatusCode::FOUND);
    assert_eq!(
        param(&query_pairs(&location(&again)), "session_state"),
        param(&pairs, "session_state")
    );

    // prompt=login forces the form even with a session.
    let forced = fetch(
        &http,
        auth_url(&kc, "voxgate-web", &challenge2, "&prompt=login"),
    )
    .await;
    assert_eq!(forced.status(), StatusCode::OK);

    // Refresh yields new tokens.
    let refreshed = web_token(
        &http,
        &kc,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().expect("rt")),
        ],
    )
    .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let rb: Value = refreshed.json().await.expect("json");
    assert!(
        claims(rb["access_token"].as_str().expect("at"))["jti"]
            .as_str()
            .expect("jti")
            .starts_with("onrtrt:")
    );
    assert_eq!(
        claims(rb["id_token"].as_str().expect("id"))["nonce"],
        json!("n-456")
    );
}

#[tokio::test]
async fn fragment_and_form_post_response_modes_deliver_the_code() {
    let kc = start_voxgate().await;
    let http = client();
    let (_, challenge) = pkce();
    let page = fetch(
        &http,
        auth_url(&kc, "voxgate-web", &challenge, "&response_mode=fragment"),
    )
    .await;
    let html = page.text().await.expect("html");
    let resp = submit(
        &http,
        form_action(&html),
        &[("username", "bob"), ("password", "bob")],
    )
    .await;
    let loc = location(&resp);
    assert!(
        loc.starts_with(&format!("{WEB_REDIRECT}#state=st-123&session_state=")),
        "{loc}"
    );
    let posted = fetch(
        &http,
        auth_url(&kc, "voxgate-web", &challenge, "&response_mode=form_post"),
    )
    .await;
    assert_eq!(posted.status(), StatusCode::OK);
    let page = posted.text().await.expect("html");
    assert!(page.contains(&format!("ACTION=\"{WEB_REDIRECT}\"")) && page.contains("name=\"code\""));
}

#[tokio::test]
async fn invalid_redirect_uri_shows_an_error_page_and_never_redirects() {
    let kc = start_voxgate().await;
    let (_, challenge) = pkce();
    let url = auth_url(&kc, "voxgate-web", &challenge, "").replace(
        &urlencoding(WEB_REDIRECT),
        &urlencoding("https://evil.example/cb"),
    );
    let resp = fetch(&client(), url).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    assert!(
        resp.text()
            .await
            .expect("html")
            .contains("Invalid parameter: redirect_uri")
    );
}

#[tokio::test]
async fn prompt_none_without_session_redirects_with_login_required() {
    let kc = start_voxgate().await;
    let (_, challenge) = pkce();
    let resp = fetch(
        &client(),
        auth_url(&kc, "voxgate-web", &challenge, "&prompt=none"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let pairs = query_pairs(&location(&resp));
    assert_eq!(param(&pairs, "error"), "login_required");
    assert_eq!(param(&pairs, "state"), "st-123");
}

#[tokio::test]
async fn client_enforcing_pkce_rejects_requests_without_a_challenge() {
    let kc = start_voxgate().await;
    let url = format!(
        "{}/protocol/openid-connect/auth?client_id=voxgate-web&redirect_uri={}&response_type=code&state=s",
        kc.issuer("voxgate"),
        urlencoding(WEB_REDIRECT)
    );
    let resp = fetch(&client(), url).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let pairs = query_pairs(&location(&resp));
    assert_eq!(param(&pairs, "error"), "invalid_request");
    assert_eq!(
        param(&pairs, "error_description"),
        "Missing parameter: code_challenge"
    );
}

#[tokio::test]
async fn authorization_code_is_single_use_and_bound_to_the_pkce_verifier() {
    let kc = start_voxgate().await;
    let http = client();
    let (verifier, challenge) = pkce();
    let pairs = browser_login(&http, &kc, "bob", "bob", &challenge).await;
    let code = param(&pairs, "code").to_string();
    let wrong = exchange_code(&http, &kc, &code, &"x".repeat(50)).await;
    answers(wrong, StatusCode::BAD_REQUEST, json!({"error": "invalid_grant", "error_description": "PKCE verification failed: Code mismatch"})).await;
    let reused = exchange_code(&http, &kc, &code, &verifier).await;
    assert_eq!(
        reused.json::<Value>().await.expect("json"),
        json!({"error": "invalid_grant", "error_description": "Code not valid"})
    );
    let http = client();
    let pairs = browser_login(&http, &kc, "bob", "bob", &challenge).await;
    let resp = web_token(
        &http,
        &kc,
        &[
            ("grant_type", "authorization_code"),
            ("code", param(&pairs, "code")),
            ("redirect_uri", "http://127.0.0.1:8080/other"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": "invalid_grant", "error_description": "Incorrect redirect_uri"})
    );
}

#[tokio::test]
async fn temporary_password_requires_update_password_before_the_code_is_issued() {
    let kc = start_voxgate().await;
    let token = admin_token(&kc).await;
    let created = admin_request(
        &client(),
        Method::POST,
        format!("{}/admin/realms/voxgate/users", kc.base_url()),
        &token,
        Some(
            &json!({"username": "carol", "enabled": true, "email": "carol@example.com",
            "credentials": [{"type": "password", "value": "temp-pass", "temporary": true}]}),
        ),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        kc.user_by_username("voxgate", "carol").expect("carol")["requiredActions"],
        json!(["UPDATE_PASSWORD"])
    );
    let (status, body, _) = post_token(
        &kc,
        "voxgate",
        &[
            ("grant_type", "password"),
            ("client_id", "voxgate-cli"),
            ("username", "carol"),
            ("password", "temp-pass"),
        ],
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "Account is not fully set up"})
        )
    );

    let http = client();
    let (verifier, challenge) = pkce();
    let html = fetch(&http, auth_url(&kc, "voxgate-web", &challenge, ""))
        .await
        .text()
        .await
        .expect("html");
    let update = submit(
        &http,
        form_action(&html),
        &[("username", "carol"), ("password", "temp-pass")],
    )
    .await;
    assert_eq!(update.status(), StatusCode::OK);
    let update_html = update.text().await.expect("html");
    assert!(update_html.contains("password-new") && update_html.contains("password-confirm"));
    let mismatch = submit(
        &http,
        form_action(&update_html),
        &[
            ("password-new", "new-pass-1"),
            ("password-confirm", "new-pass-2"),
        ],
    )
    .await;
    let mismatch_html = mismatch.text().await.expect("html");
    assert!(
        mismatch_html.contains("Passwords don&#x27;t match.")
            || mismatch_html.contains("Passwords don't match.")
    );
    let empty = submit(
        &http,
        form_action(&mismatch_html),
        &[("password-new", ""), ("password-confirm", "")],
    )
    .await;
    let empty_html = empty.text().await.expect("html");
    assert!(empty_html.contains("Please specify password."));
    let done = submit(
        &http,
        form_action(&empty_html),
        &[
            ("password-new", "new-pass-1"),
            ("password-confirm", "new-pass-1"),
        ],
    )
    .await;
    assert_eq!(done.status(), StatusCode::FOUND);
    let pairs = query_pairs(&location(&done));
    assert_eq!(
        exchange_code(&http, &kc, param(&pairs, "code"), &verifier)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        kc.user_by_username("voxgate", "carol").expect("carol")["requiredActions"],
        json!([])
    );
    password_token(&kc, "carol", "new-pass-1").await;
}

// ---------------------------------------------------------------------------------------
// Token endpoint errors
// ---------------------------------------------------------------------------------------

/// Form fields, expected status, expected body.
type TokenCase = (Vec<(&'static str, &'static str)>, StatusCode, Value);

#[tokio::test]
async fn token_endpoint_errors_match_keycloak_statuses_and_bodies() {
    let kc = start_voxgate().await;
    let e = |error: &str, desc: &str| json!({"error": error, "error_description": desc});
    let cases: Vec<TokenCase> = vec![
        (
            vec![("client_id", "voxgate-cli")],
            StatusCode::BAD_REQUEST,
            e("invalid_request", "Missing form parameter: grant_type"),
        ),
        (
            vec![("grant_type", "magic"), ("client_id", "voxgate-cli")],
            StatusCode::BAD_REQUEST,
            e("unsupported_grant_type", "Unsupported grant_type"),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("client_id", "voxgate-cli"),
            ],
            StatusCode::BAD_REQUEST,
            e("invalid_request", "duplicated parameter"),
        ),
        (
            vec![("grant_type", "password")],
            StatusCode::BAD_REQUEST,
            e("invalid_client", "Missing client_id parameter"),
        ),
        (
            vec![("grant_type", "password"), ("client_id", "nope")],
            StatusCode::UNAUTHORIZED,
            e(
                "invalid_client",
                "Invalid client or Invalid client credentials",
            ),
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "voxgate-admin"),
            ],
            StatusCode::UNAUTHORIZED,
            e(
                "unauthorized_client",
                "Invalid client or Invalid client credentials",
            ),
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "voxgate-admin"),
                ("client_secret", "wrong"),
            ],
            StatusCode::UNAUTHORIZED,
            e(
                "unauthorized_client",
                "Invalid client or Invalid client credentials",
            ),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "voxgate-web"),
                ("client_secret", "dev-only-voxgate-web-secret"),
                ("username", "alice"),
                ("password", "alice"),
            ],
            StatusCode::BAD_REQUEST,
            e(
                "unauthorized_client",
                "Client not allowed for direct access grants",
            ),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "alice"),
                ("password", "nope"),
            ],
            StatusCode::BAD_REQUEST,
            e("invalid_grant", "Invalid user credentials"),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "nobody"),
                ("password", "x"),
            ],
            StatusCode::BAD_REQUEST,
            e("invalid_grant", "Invalid user credentials"),
        ),
        (
            vec![("grant_type", "password"), ("client_id", "voxgate-cli")],
            StatusCode::UNAUTHORIZED,
            e("invalid_request", "Missing parameter: username"),
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "voxgate-cli"),
            ],
            StatusCode::UNAUTHORIZED,
            e(
                "unauthorized_client",
                "Public client not allowed to retrieve service account",
            ),
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "voxgate-web"),
                ("client_secret", "dev-only-voxgate-web-secret"),
            ],
            StatusCode::UNAUTHORIZED,
            e(
                "unauthorized_client",
                "Client not enabled to retrieve service account",
            ),
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "voxgate-web"),
                ("client_secret", "dev-only-voxgate-web-secret"),
            ],
            StatusCode::BAD_REQUEST,
            e("invalid_request", "Missing parameter: code"),
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "voxgate-web"),
                ("client_secret", "dev-only-voxgate-web-secret"),
                ("code", "bogus"),
            ],
            StatusCode::BAD_REQUEST,
            e("invalid_grant", "Code not valid"),
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "voxgate-cli"),
            ],
            StatusCode::BAD_REQUEST,
            e("invalid_request", "No refresh token"),
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "voxgate-cli"),
                ("refresh_token", "garbage"),
            ],
            StatusCode::BAD_REQUEST,
            e("invalid_grant", "Invalid refresh token"),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "alice"),
                ("password", "alice"),
                ("scope", "openid nonsense"),
            ],
            StatusCode::BAD_REQUEST,
            e("invalid_scope", "Invalid scopes: openid nonsense"),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "realm-management"),
                ("username", "alice"),
                ("password", "alice"),
            ],
            StatusCode::UNAUTHORIZED,
            e(
                "unauthorized_client",
                "Invalid client or Invalid client credentials",
            ),
        ),
    ];
    for (form, status, body) in cases {
        let (got_status, got_body, headers) = post_token(&kc, "voxgate", &form).await;
        assert_eq!((got_status, &got_body), (status, &body), "form {form:?}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["cache-control"], "no-store");
    }
    let body = password_token(&kc, "alice", "alice").await;
    let (status, got, _) = post_token(
        &kc,
        "voxgate",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "voxgate-web"),
            ("client_secret", "dev-only-voxgate-web-secret"),
            ("refresh_token", body["refresh_token"].as_str().expect("rt")),
        ],
    )
    .await;
    assert_eq!(
        (status, got),
        (
            StatusCode::BAD_REQUEST,
            e(
                "invalid_grant",
                "Invalid refresh token. Token client and authorized client don't match"
            )
        )
    );
}

#[tokio::test]
async fn cors_echoes_an_allowed_origin_with_credentials() {
    let kc = start_voxgate().await;
    let http = client();
    let token_url = format!("{}/protocol/openid-connect/token", kc.issuer("voxgate"));
    let pre = http
        .request(reqwest::Method::OPTIONS, &token_url)
        .header("Origin", "http://localhost:8080")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status(), StatusCode::OK);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "http://localhost:8080"
    );
    assert_eq!(
        pre.headers()["access-control-allow-methods"],
        "POST, OPTIONS"
    );
    assert_eq!(pre.headers()["access-control-max-age"], "3600");
    // A code exchange with a bogus code, sent from `origin`.
    let exchange_from = |origin: &'static str| {
        http.post(&token_url)
            .header("Origin", origin)
            .basic_auth("voxgate-web", Some("dev-only-voxgate-web-secret"))
            .form(&[("grant_type", "authorization_code"), ("code", "bogus")])
            .send()
    };
    let resp = exchange_from("http://localhost:8080").await.expect("token");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://localhost:8080"
    );
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    let foreign = exchange_from("https://evil.example").await.expect("token");
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------
// Logout
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn rp_logout_with_id_token_hint_ends_the_session_and_refresh_then_fails() {
    let kc = start_voxgate().await;
    let http = client();
    let (verifier, challenge) = pkce();
    let pairs = browser_login(&http, &kc, "alice", "alice", &challenge).await;
    let body: Value = exchange_code(&http, &kc, param(&pairs, "code"), &verifier)
        .await
        .json()
        .await
        .expect("json");
    let alice = kc.user_by_username("voxgate", "alice").expect("alice");
    let alice_id = alice["id"].as_str().expect("id");
    assert_eq!(kc.active_sessions("voxgate", alice_id), 1);
    let logout = http
        .get(format!(
            "{}/protocol/openid-connect/logout",
            kc.issuer("voxgate")
        ))
        .query(&[
            ("client_id", "voxgate-web"),
            ("post_logout_redirect_uri", "http://127.0.0.1:8080/"),
            ("id_token_hint", body["id_token"].as_str().expect("id")),
            ("state", "bye"),
        ])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::FOUND);
    assert_eq!(location(&logout), "http://127.0.0.1:8080/?state=bye");
    assert_eq!(kc.active_sessions("voxgate", alice_id), 0);
    let refreshed = web_token(
        &http,
        &kc,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().expect("rt")),
        ],
    )
    .await;
    answers(
        refreshed,
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_grant", "error_description": "Session not active"}),
    )
    .await;
    // The SSO cookie no longer logs the browser in.
    let (_, c2) = pkce();
    let again = fetch(&http, auth_url(&kc, "voxgate-web", &c2, "")).await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_without_hint_asks_for_confirmation_and_rejects_legacy_redirect_uri() {
    let kc = start_voxgate().await;
    let http = client();
    let (_, challenge) = pkce();
    browser_login(&http, &kc, "bob", "bob", &challenge).await;
    let bob_id = kc.user_by_username("voxgate", "bob").expect("bob")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let logout_url = format!("{}/protocol/openid-connect/logout", kc.issuer("voxgate"));
    let legacy = http
        .get(&logout_url)
        .query(&[("redirect_uri", "http://127.0.0.1:8080/")])
        .send()
        .await
        .expect("logout");
    assert_eq!(legacy.status(), StatusCode::BAD_REQUEST);
    assert!(
        legacy
            .text()
            .await
            .expect("html")
            .contains("Invalid parameter: redirect_uri")
    );
    let bad_redirect = http
        .get(&logout_url)
        .query(&[
            ("client_id", "voxgate-web"),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ])
        .send()
        .await
        .expect("logout");
    assert_eq!(bad_redirect.status(), StatusCode::BAD_REQUEST);
    assert!(
        bad_redirect
            .text()
            .await
            .expect("html")
            .contains("Invalid redirect uri")
    );
    let page = fetch(&http, &logout_url).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("confirmLogout"));
    assert_eq!(kc.active_sessions("voxgate", &bob_id), 1);
    let code_start = html
        .find("name=\"session_code\" value=\"")
        .expect("session code")
        + 27;
    let code = &html[code_start..code_start + html[code_start..].find('"').expect("quote")];
    let confirmed = submit(
        &http,
        form_action(&html),
        &[("session_code", code), ("confirmLogout", "Logout")],
    )
    .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert!(
        confirmed
            .text()
            .await
            .expect("html")
            .contains("You are logged out")
    );
    assert_eq!(kc.active_sessions("voxgate", &bob_id), 0);
}

#[tokio::test]
async fn non_browser_logout_with_refresh_token_returns_204() {
    let kc = start_voxgate().await;
    let body = password_token(&kc, "bob", "bob").await;
    let url = format!("{}/protocol/openid-connect/logout", kc.issuer("voxgate"));
    let missing = submit(
        &client(),
        &url,
        &[("client_id", "voxgate-cli"), ("refresh_token", "")],
    )
    .await;
    answers(
        missing,
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_request", "error_description": "No refresh token"}),
    )
    .await;
    let resp = submit(
        &client(),
        &url,
        &[
            ("client_id", "voxgate-cli"),
            ("refresh_token", body["refresh_token"].as_str().expect("rt")),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, got, _) = cli_refresh(&kc, body["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(
        (status, got["error_description"].clone()),
        (StatusCode::BAD_REQUEST, json!("Session not active"))
    );
}

#[tokio::test]
async fn backchannel_logout_posts_a_signed_logout_token_to_the_client() {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/auth/backchannel-logout",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                if let Ok(mut v) = sink.lock() {
                    v.push(body);
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut realm = project_realm_json();
    realm["clients"][0]["attributes"]["backchannel.logout.url"] =
        json!(format!("http://127.0.0.1:{port}/auth/backchannel-logout"));
    let kc = start_with_json(realm).await;
    let http = client();
    let (verifier, challenge) = pkce();
    let pairs = browser_login(&http, &kc, "alice", "alice", &challenge).await;
    assert_eq!(
        exchange_code(&http, &kc, param(&pairs, "code"), &verifier)
            .await
            .status(),
        StatusCode::OK
    );
    let sid = param(&pairs, "session_state").to_string();

    let token = admin_token(&kc).await;
    let alice_id = kc.user_by_username("voxgate", "alice").expect("alice")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let resp = admin_request(
        &client(),
        Method::POST,
        format!(
            "{}/admin/realms/voxgate/users/{alice_id}/logout",
            kc.base_url()
        ),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let bodies = received.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(bodies.len(), 1, "one back-channel request");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(bodies[0].as_bytes())
        .into_owned()
        .collect();
    let logout_token = &form
        .iter()
        .find(|(k, _)| k == "logout_token")
        .expect("logout_token")
        .1;
    assert_eq!(
        header_str(logout_token),
        format!(
            r#"{{"alg":"RS256","typ" : "logout+jwt","kid" : "{}"}}"#,
            kc.current_kid("voxgate")
        )
    );
    let c = claims(logout_token);
    assert_eq!(
        keys_of(&c),
        [
            "iat", "exp", "jti", "iss", "aud", "sub", "typ", "sid", "events"
        ]
    );
    assert_eq!(c["typ"], json!("Logout"));
    assert_eq!(c["aud"], json!("voxgate-web"));
    assert_eq!(c["sid"], json!(sid));
    assert_eq!(c["sub"], json!(alice_id));
    assert_eq!(
        c["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    rs256_validate(
        logout_token,
        &jwks(&kc, "voxgate").await,
        Some("voxgate-web"),
        &kc.issuer("voxgate"),
    );
}

// ---------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn service_account_creates_a_user_and_assigns_realm_roles() {
    let kc = start_voxgate().await;
    let token = admin_token(&kc).await;
    let base = format!("{}/admin/realms/voxgate", kc.base_url());
    let http = client();
    let created = admin_request(&http, Method::POST, format!("{base}/users"), &token, Some(&json!({"username": "Dave", "email": "Dave@Example.com", "firstName": "Dave", "enabled": true, "realmRoles": ["admin"]}))).await;
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

    let found: Value = http
        .get(format!("{base}/users"))
        .query(&[("username", "dave"), ("exact", "true")])
        .bearer_auth(&token)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0]["username"], json!("dave"));
    assert_eq!(found[0]["email"], json!("dave@example.com"));

    let count = admin_request(
        &http,
        Method::GET,
        format!("{base}/users/count"),
        &token,
        None,
    )
    .await
    .text()
    .await
    .expect("text");
    assert_eq!(count, "3");

    let role: Value = admin_json(
        &http,
        Method::GET,
        format!("{base}/roles/agent"),
        &token,
        None,
    )
    .await;
    assert_eq!(role["name"], json!("agent"));
    let mapped = admin_request(
        &http,
        Method::POST,
        format!("{base}/users/{id}/role-mappings/realm"),
        &token,
        Some(&json!([{"id": role["id"], "name": "agent"}])),
    )
    .await;
    assert_eq!(mapped.status(), StatusCode::NO_CONTENT);
    let roles: Value = admin_json(
        &http,
        Method::GET,
        format!("{base}/users/{id}/role-mappings/realm"),
        &token,
        None,
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
    let effective: Value = admin_json(
        &http,
        Method::GET,
        format!("{base}/users/{id}/role-mappings/realm/composite"),
        &token,
        None,
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
        Some(&json!([{"id": role["id"], "name": "agent"}])),
    )
    .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        kc.user_realm_roles("voxgate", &id),
        ["default-roles-voxgate"]
    );

    let updated = admin_request(
        &http,
        Method::PUT,
        format!("{base}/users/{id}"),
        &token,
        Some(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(updated.status(), StatusCode::NO_CONTENT);
    let rep: Value = admin_json(
        &http,
        Method::GET,
        format!("{base}/users/{id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(rep["enabled"], json!(false));
    assert_eq!(rep["firstName"], json!("Dave"));
    let reset = admin_request(
        &http,
        Method::PUT,
        format!("{base}/users/{id}/reset-password"),
        &token,
        Some(&json!({"type": "password", "value": "pw-12345", "temporary": true})),
    )
    .await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        kc.user_by_username("voxgate", "dave").expect("dave")["requiredActions"],
        json!(["UPDATE_PASSWORD"])
    );
    let deleted = admin_request(
        &http,
        Method::DELETE,
        format!("{base}/users/{id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = admin_request(
        &http,
        Method::GET,
        format!("{base}/users/{id}"),
        &token,
        None,
    )
    .await;
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
    let url = format!("{}/admin/realms/voxgate/users", kc.base_url());
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
        let resp = admin_request(&client(), Method::POST, &url, &token, Some(&body)).await;
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
    let bob_id = kc.user_by_username("voxgate", "bob").expect("bob")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let clash = admin_request(
        &client(),
        Method::PUT,
        format!("{url}/{bob_id}"),
        &token,
        Some(&json!({"email": "Alice@Example.com"})),
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
    let base = format!("{}/admin/realms/voxgate", kc.base_url());
    let http = client();
    let anonymous = fetch(&http, format!("{base}/users")).await;
    answers(
        anonymous,
        StatusCode::UNAUTHORIZED,
        json!({"error": "HTTP 401 Unauthorized"}),
    )
    .await;
    let garbage = admin_request(
        &http,
        Method::GET,
        format!("{base}/users"),
        "not.a.token",
        None,
    )
    .await;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    let user_token = password_token(&kc, "alice", "alice").await["access_token"]
        .as_str()
        .expect("at")
        .to_string();
    let forbidden = admin_request(
        &http,
        Method::GET,
        format!("{base}/users"),
        &user_token,
        None,
    )
    .await;
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
            format!("{}/admin/realms/nope/users", kc.base_url()),
            json!({"error": "Realm not found."}),
        ),
    ];
    for (url, body) in cases {
        let resp = admin_request(&http, Method::GET, &url, &token, None).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{url}");
        assert_eq!(resp.json::<Value>().await.expect("json"), body, "{url}");
    }
    let bob_id = kc.user_by_username("voxgate", "bob").expect("bob")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let wrong_id = admin_request(
        &http,
        Method::POST,
        format!("{base}/users/{bob_id}/role-mappings/realm"),
        &token,
        Some(&json!([{"id": "wrong", "name": "agent"}])),
    )
    .await;
    answers(
        wrong_id,
        StatusCode::NOT_FOUND,
        json!({"error": "Role not found"}),
    )
    .await;
    let missing_password = admin_request(
        &http,
        Method::PUT,
        format!("{base}/users/{bob_id}/reset-password"),
        &token,
        Some(&json!({"type": "password"})),
    )
    .await;
    answers(
        missing_password,
        StatusCode::BAD_REQUEST,
        json!({"error": "No password provided"}),
    )
    .await;
    // Mapping an admin role the caller does not hold is refused.
    let clients: Value =
        admin_json(&http, Method::GET, format!("{base}/clients"), &token, None).await;
    assert_eq!(clients, json!({"error": "HTTP 403 Forbidden"}));
}

#[tokio::test]
async fn master_realm_admin_manages_every_realm() {
    let kc = start_voxgate().await;
    let token = master_admin_token(&kc).await;
    let http = client();
    let clients: Value = http
        .get(format!("{}/admin/realms/voxgate/clients", kc.base_url()))
        .query(&[("clientId", "voxgate-web")])
        .bearer_auth(&token)
        .send()
        .await
        .expect("clients")
        .json()
        .await
        .expect("json");
    assert_eq!(clients[0]["clientId"], json!("voxgate-web"));
    let web_uuid = clients[0]["id"].as_str().expect("uuid").to_string();
    let roles: Value = admin_json(
        &http,
        Method::GET,
        format!(
            "{}/admin/realms/voxgate/clients/{web_uuid}/roles",
            kc.base_url()
        ),
        &token,
        None,
    )
    .await;
    assert_eq!(roles, json!([]));
    let created = admin_request(
        &http,
        Method::POST,
        format!("{}/admin/realms", kc.base_url()),
        &token,
        Some(&json!({"realm": "extra", "enabled": true})),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let dup = admin_request(
        &http,
        Method::POST,
        format!("{}/admin/realms", kc.base_url()),
        &token,
        Some(&json!({"realm": "extra"})),
    )
    .await;
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let realm: Value = admin_json(
        &http,
        Method::GET,
        format!("{}/admin/realms/extra", kc.base_url()),
        &token,
        None,
    )
    .await;
    assert_eq!(realm["realm"], json!("extra"));
    let deleted = admin_request(
        &http,
        Method::DELETE,
        format!("{}/admin/realms/extra", kc.base_url()),
        &token,
        None,
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = fetch(
        &client(),
        format!("{}/.well-known/openid-configuration", kc.issuer("extra")),
    )
    .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn execute_actions_email_is_captured_and_its_link_sets_the_password() {
    let kc = start_voxgate().await;
    let token = admin_token(&kc).await;
    let base = format!("{}/admin/realms/voxgate", kc.base_url());
    let http = client();
    let created = admin_request(
        &http,
        Method::POST,
        format!("{base}/users"),
        &token,
        Some(&json!({"username": "erin", "email": "erin@example.com", "enabled": true})),
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
    let done = submit(
        &http,
        form_action(&html),
        &[
            ("password-new", "erin-pass-1"),
            ("password-confirm", "erin-pass-1"),
        ],
    )
    .await;
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
    let invalid = admin_request(
        &http,
        Method::PUT,
        format!("{base}/users/{id}/execute-actions-email"),
        &token,
        Some(&json!(["FLY"])),
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
    let bob_id = kc2.user_by_username("voxgate", "bob").expect("bob")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let failed = admin_request(
        &client(),
        Method::PUT,
        format!(
            "{}/admin/realms/voxgate/users/{bob_id}/execute-actions-email",
            kc2.base_url()
        ),
        &token2,
        Some(&json!(["UPDATE_PASSWORD"])),
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
    let url = format!("{}/admin/realms/voxgate/partialImport", kc.base_url());
    let payload = |policy: &str| json!({"ifResourceExists": policy, "users": [{"username": "alice", "firstName": "Alicia", "enabled": true}, {"username": "frank", "enabled": true}], "roles": {"realm": [{"name": "auditor"}]}});
    let failed = admin_request(
        &client(),
        Method::POST,
        &url,
        &token,
        Some(&payload("FAIL")),
    )
    .await;
    assert_eq!(failed.status(), StatusCode::CONFLICT);
    assert!(
        kc.user_by_username("voxgate", "frank").is_none(),
        "FAIL imports nothing"
    );
    let skipped: Value = admin_json(
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
    let over: Value = admin_json(
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

// ---------------------------------------------------------------------------------------
// Introspection, revocation, expiry
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn introspection_reports_active_tokens_until_all_tokens_expire() {
    // Keycloak 26 reports a token active only to a client in its audience:
    // voxgate-admin is put there for this test.
    let mut realm = project_realm_json();
    for client in realm["clients"].as_array_mut().expect("clients") {
        if client["clientId"] == "voxgate-cli" {
            client["protocolMappers"]
                .as_array_mut()
                .expect("mappers")
                .push(json!({
                    "name": "admin-audience",
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-audience-mapper",
                    "config": {"included.client.audience": "voxgate-admin", "access.token.claim": "true", "id.token.claim": "false"}
                }));
        }
    }
    let kc = start_with_json(realm).await;
    let body = password_token(&kc, "bob", "bob").await;
    let url = format!(
        "{}/protocol/openid-connect/token/introspect",
        kc.issuer("voxgate")
    );
    let introspect = |token: String| {
        let url = url.clone();
        async move {
            client()
                .post(url)
                .basic_auth("voxgate-admin", Some("dev-only-voxgate-admin-secret"))
                .form(&[("token", token)])
                .send()
                .await
                .expect("introspect")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let active = introspect(body["access_token"].as_str().expect("at").to_string()).await;
    assert_eq!(active["active"], json!(true));
    assert_eq!(active["username"], json!("bob"));
    assert_eq!(active["client_id"], json!("voxgate-cli"));
    assert_eq!(keys_of(&active).last().map(String::as_str), Some("active"));
    let outsider = client()
        .post(&url)
        .basic_auth("voxgate-web", Some("dev-only-voxgate-web-secret"))
        .form(&[("token", body["access_token"].as_str().expect("at"))])
        .send()
        .await
        .expect("introspect")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(
        outsider,
        json!({"active": false}),
        "a client outside the audience learns nothing"
    );
    kc.expire_all_tokens("voxgate");
    assert_eq!(
        introspect(body["access_token"].as_str().expect("at").to_string()).await,
        json!({"active": false})
    );
    let (status, got, _) = cli_refresh(&kc, body["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(
        (status, got["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );
    // Tokens issued afterwards are fine.
    let fresh = password_token(&kc, "bob", "bob").await;
    assert_eq!(
        introspect(fresh["access_token"].as_str().expect("at").to_string()).await["active"],
        json!(true)
    );
}

#[tokio::test]
async fn revoked_refresh_token_can_no_longer_be_used() {
    let kc = start_voxgate().await;
    let body = password_token(&kc, "bob", "bob").await;
    let rt = body["refresh_token"].as_str().expect("rt");
    let resp = submit(
        &client(),
        format!("{}/protocol/openid-connect/revoke", kc.issuer("voxgate")),
        &[
            ("client_id", "voxgate-cli"),
            ("token", rt),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _, _) = cli_refresh(&kc, rt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------
// Faults and counters
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn go_down_refuses_connections_and_come_back_restores_service() {
    let kc = start_voxgate().await;
    let url = format!("{}/.well-known/openid-configuration", kc.issuer("voxgate"));
    let http = client();
    assert_eq!(fetch(&http, &url).await.status(), StatusCode::OK);
    kc.go_down().await;
    let err = client().get(&url).send().await.expect_err("down");
    assert!(err.is_connect(), "connection refused, got {err:?}");
    kc.come_back().await.expect("back");
    assert_eq!(fetch(&client(), &url).await.status(), StatusCode::OK);
    password_token(&kc, "bob", "bob").await;
}

#[tokio::test]
async fn fail_next_injects_keycloak_shaped_errors_and_counters_track_requests() {
    let kc = start_voxgate().await;
    kc.fail_next(Some("POST"), "/protocol/openid-connect/token", 2, 503);
    for _ in 0..2 {
        let (status, body, _) = post_token(
            &kc,
            "voxgate",
            &[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "bob"),
                ("password", "bob"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"error": "unknown_error", "error_description": "For more on this error consult the server log."})
        );
    }
    password_token(&kc, "bob", "bob").await;
    assert_eq!(kc.token_requests("voxgate", "password", "voxgate-cli"), 3);
    assert_eq!(
        kc.token_requests("voxgate", "client_credentials", "voxgate-cli"),
        0
    );
    jwks(&kc, "voxgate").await;
    jwks(&kc, "voxgate").await;
    assert_eq!(kc.jwks_fetches("voxgate"), 2);
}

#[tokio::test]
async fn latency_delays_every_request() {
    let kc = start_voxgate().await;
    kc.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    jwks(&kc, "voxgate").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    kc.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn rotated_signing_key_is_published_beside_the_old_one_until_retired() {
    let kc = start_voxgate().await;
    let old_kid = kc.current_kid("voxgate");
    let old_token = password_token(&kc, "bob", "bob").await["access_token"]
        .as_str()
        .expect("at")
        .to_string();
    kc.rotate_signing_key("voxgate");
    let new_kid = kc.current_kid("voxgate");
    assert_ne!(old_kid, new_kid);
    let set = jwks(&kc, "voxgate").await;
    let sig_kids: Vec<&str> = set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["use"] == json!("sig"))
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(sig_kids, [new_kid.as_str(), old_kid.as_str()]);
    rs256_validate(&old_token, &set, Some("voxgate"), &kc.issuer("voxgate"));
    let new_token = password_token(&kc, "bob", "bob").await["access_token"]
        .as_str()
        .expect("at")
        .to_string();
    assert_eq!(
        b64_json(new_token.split('.').next().expect("h"))["kid"],
        json!(new_kid)
    );
    kc.retire_old_keys("voxgate");
    let set = jwks(&kc, "voxgate").await;
    let sig: Vec<&Value> = set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["use"] == json!("sig"))
        .collect();
    assert_eq!(sig.len(), 1);
    assert_eq!(sig[0]["kid"], json!(new_kid));
}

#[tokio::test]
async fn sign_jws_uses_the_header_verbatim_with_the_current_key() {
    let kc = start_voxgate().await;
    let token = kc.sign_jws(
        "voxgate",
        r#"{"alg":"RS256","kid":"forged"}"#,
        &json!({"sub": "x"}),
    );
    assert_eq!(header_str(&token), r#"{"alg":"RS256","kid":"forged"}"#);
    let set = jwks(&kc, "voxgate").await;
    let jwk = &set["keys"][0];
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().expect("n"),
        jwk["e"].as_str().expect("e"),
    )
    .expect("key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &v).is_ok());
}

#[tokio::test]
async fn state_file_keeps_users_and_keys_across_restarts() {
    let dir = std::env::temp_dir().join(format!("kc-standin-state-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let state = dir.join("state.json");
    let config = StandinConfig {
        realm_files: vec![project_realm_path()],
        state_file: Some(state.clone()),
        ..Default::default()
    };
    let kc = Standin::start(config.clone()).await.expect("start");
    let token = admin_token(&kc).await;
    let created = admin_request(&client(), Method::POST, format!("{}/admin/realms/voxgate/users", kc.base_url()), &token, Some(&json!({"username": "gina", "enabled": true, "credentials": [{"type": "password", "value": "gina-pass"}]}))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let kid = kc.current_kid("voxgate");
    kc.shutdown().await;
    let kc = Standin::start(config).await.expect("restart");
    assert!(kc.user_by_username("voxgate", "gina").is_some());
    assert_eq!(kc.current_kid("voxgate"), kid);
    password_token(&kc, "gina", "gina-pass").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn control_endpoint_is_served_only_when_enabled() {
    let kc = start_voxgate().await;
    let off = client()
        .post(format!("{}/_standin/latency?ms=0", kc.base_url()))
        .send()
        .await
        .expect("req");
    assert_eq!(off.status(), StatusCode::NOT_FOUND);
    let kc = Standin::start(StandinConfig {
        realm_files: vec![project_realm_path()],
        control_endpoint: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let fail = client()
        .post(format!(
            "{}/_standin/fail-next?path_contains=/certs&n=1&status=500",
            kc.base_url()
        ))
        .send()
        .await
        .expect("req");
    assert_eq!(fail.status(), StatusCode::NO_CONTENT);
    let resp = fetch(
        &client(),
        format!("{}/protocol/openid-connect/certs", kc.issuer("voxgate")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let counters: Value = fetch(&client(), format!("{}/_standin/counters", kc.base_url()))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(counters["jwks_fetches"]["voxgate"], json!(1));
}

#[tokio::test]
async fn real_keycloak_tokens_share_the_header_bytes_we_emit() {
    let real = fixture("tokens-keycloak26-OSSS-rubelw.json");
    for key in ["access_token", "id_token"] {
        assert!(
            real[key]
                .as_str()
                .expect("token")
                .starts_with(HEADER_PREFIX),
            "{key}"
        );
    }
    let old = fixture("token-and-key-keycloak-pre17-demo-hanyangkuo.json");
    assert!(
        old["id_token"]
            .as_str()
            .expect("token")
            .starts_with(HEADER_PREFIX)
    );
    let kc = start_voxgate().await;
    let ours = password_token(&kc, "bob", "bob").await;
    assert!(has_keycloak_header_prefix(
        ours["id_token"].as_str().expect("id")
    ));
}

#[tokio::test]
async fn brute_force_detection_locks_like_keycloak_and_an_admin_lifts_it() {
    // The project realm turns brute-force protection on (as the real
    // server's test in tests/api/real_keycloak/bearer.rs checks).
    let kc = start_voxgate().await;
    let grant = |password: &'static str| {
        let kc = &kc;
        async move {
            let form = [
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "bob"),
                ("password", password),
            ];
            post_token(kc, "voxgate", &form).await
        }
    };
    for _ in 0..10 {
        let (status, body, _) = grant("guess").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error_description"], "Invalid user credentials");
    }
    let (status, body, _) = grant("bob").await;
    assert_eq!(
        (status, body["error_description"].clone()),
        (StatusCode::BAD_REQUEST, json!("Invalid user credentials")),
        "locked: the right password gets the same answer"
    );
    let token = admin_token(&kc).await;
    let bob = kc.user_by_username("voxgate", "bob").expect("bob");
    let url = format!(
        "{}/admin/realms/voxgate/attack-detection/brute-force/users/{}",
        kc.base_url(),
        bob["id"].as_str().expect("id")
    );
    let detection = admin_json(&client(), Method::GET, &url, &token, None).await;
    assert_eq!(detection["disabled"], true, "{detection}");
    // Failures faster than one a second lock at the second; later
    // attempts are not counted.
    assert_eq!(detection["numFailures"], 2, "{detection}");
    let cleared = admin_request(&client(), Method::DELETE, &url, &token, None).await;
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(grant("bob").await.0, StatusCode::OK);
}
