//! The browser's authorization-code flow: the HTML login form, PKCE, the redirect's parameters
//! and response modes, SSO reuse and `prompt`, the code's single use, error pages that never
//! redirect, and the update-password step for a temporary password.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

use crate::helpers::{
    WEB_REDIRECT, admin_request, admin_token, answers, auth_url, authorize, browser_login,
    cli_password_grant, client, create_voxgate_user, exchange_code, fetch, location, oauth_error,
    oidc_url, param, password_token, pkce, query_pairs, start_voxgate, submit_login,
    submit_new_password, urlencoding, web_refresh, web_token,
};
use crate::jwt::{claims, has_keycloak_header_prefix, header_str, keys_of, str_field};

#[tokio::test]
async fn code_flow_with_pkce_logs_in_through_the_html_form() {
    let kc = start_voxgate().await;
    let http = client();
    let (verifier, challenge) = pkce();
    let page = authorize(&http, &kc, &challenge, "").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("kc-form-login"));
    let bad = submit_login(&http, &html, "alice", "wrong").await;
    assert_eq!(bad.status(), StatusCode::OK);
    let bad_html = bad.text().await.expect("html");
    assert!(bad_html.contains("Invalid username or password."));
    let resp = submit_login(&http, &bad_html, "alice@example.com", "alice").await;
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
    let access = str_field(&body, "access_token");
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
    let id = str_field(&body, "id_token");
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
        oidc_url(&kc, "voxgate", "userinfo"),
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
    let again = authorize(&http, &kc, &challenge2, "").await;
    assert_eq!(again.status(), StatusCode::FOUND);
    assert_eq!(
        param(&query_pairs(&location(&again)), "session_state"),
        param(&pairs, "session_state")
    );

    // prompt=login forces the form even with a session.
    let forced = authorize(&http, &kc, &challenge2, "&prompt=login").await;
    assert_eq!(forced.status(), StatusCode::OK);

    // Refresh yields new tokens.
    let refreshed = web_refresh(&http, &kc, str_field(&body, "refresh_token")).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let rb: Value = refreshed.json().await.expect("json");
    assert!(
        claims(str_field(&rb, "access_token"))["jti"]
            .as_str()
            .expect("jti")
            .starts_with("onrtrt:")
    );
    assert_eq!(claims(str_field(&rb, "id_token"))["nonce"], json!("n-456"));
}

#[tokio::test]
async fn fragment_and_form_post_response_modes_deliver_the_code() {
    let kc = start_voxgate().await;
    let http = client();
    let (_, challenge) = pkce();
    let page = authorize(&http, &kc, &challenge, "&response_mode=fragment").await;
    let html = page.text().await.expect("html");
    let resp = submit_login(&http, &html, "bob", "bob").await;
    let loc = location(&resp);
    assert!(
        loc.starts_with(&format!("{WEB_REDIRECT}#state=st-123&session_state=")),
        "{loc}"
    );
    let posted = authorize(&http, &kc, &challenge, "&response_mode=form_post").await;
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
    let resp = authorize(&client(), &kc, &challenge, "&prompt=none").await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let pairs = query_pairs(&location(&resp));
    assert_eq!(param(&pairs, "error"), "login_required");
    assert_eq!(param(&pairs, "state"), "st-123");
}

#[tokio::test]
async fn client_enforcing_pkce_rejects_requests_without_a_challenge() {
    let kc = start_voxgate().await;
    let url = format!(
        "{}?client_id=voxgate-web&redirect_uri={}&response_type=code&state=s",
        oidc_url(&kc, "voxgate", "auth"),
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
    answers(
        wrong,
        StatusCode::BAD_REQUEST,
        oauth_error("invalid_grant", "PKCE verification failed: Code mismatch"),
    )
    .await;
    let reused = exchange_code(&http, &kc, &code, &verifier).await;
    assert_eq!(
        reused.json::<Value>().await.expect("json"),
        oauth_error("invalid_grant", "Code not valid")
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
        oauth_error("invalid_grant", "Incorrect redirect_uri")
    );
}

#[tokio::test]
async fn temporary_password_requires_update_password_before_the_code_is_issued() {
    let kc = start_voxgate().await;
    let token = admin_token(&kc).await;
    let created = create_voxgate_user(
        &client(),
        &kc,
        &token,
        &json!({"username": "carol", "enabled": true, "email": "carol@example.com",
            "credentials": [{"type": "password", "value": "temp-pass", "temporary": true}]}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        kc.user_by_username("voxgate", "carol").expect("carol")["requiredActions"],
        json!(["UPDATE_PASSWORD"])
    );
    let (status, body, _) = cli_password_grant(&kc, "carol", "temp-pass").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Account is not fully set up")
        )
    );

    let http = client();
    let (verifier, challenge) = pkce();
    let html = authorize(&http, &kc, &challenge, "")
        .await
        .text()
        .await
        .expect("html");
    let update = submit_login(&http, &html, "carol", "temp-pass").await;
    assert_eq!(update.status(), StatusCode::OK);
    let update_html = update.text().await.expect("html");
    assert!(update_html.contains("password-new") && update_html.contains("password-confirm"));
    let mismatch = submit_new_password(&http, &update_html, "new-pass-1", "new-pass-2").await;
    let mismatch_html = mismatch.text().await.expect("html");
    assert!(
        mismatch_html.contains("Passwords don&#x27;t match.")
            || mismatch_html.contains("Passwords don't match.")
    );
    let empty = submit_new_password(&http, &mismatch_html, "", "").await;
    let empty_html = empty.text().await.expect("html");
    assert!(empty_html.contains("Please specify password."));
    let done = submit_new_password(&http, &empty_html, "new-pass-1", "new-pass-1").await;
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
