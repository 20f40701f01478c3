//! Ending sessions: RP-initiated logout with and without an `id_token_hint` (and the
//! confirmation page Keycloak shows without one), non-browser logout with a refresh token, and
//! the signed back-channel logout token posted to a client.

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    admin_request, admin_token, admin_url, answers, authorize, browser_login, browser_logout,
    cli_logout, cli_refresh, client, fetch, form_action, jwks, location, log_in_and_exchange,
    oauth_error, oidc_url, param, password_token, pkce, project_realm_json, start_voxgate,
    start_with_json, submit, voxgate_user_id, web_refresh,
};
use crate::jwt::{claims, header_str, keys_of, rs256_validate, str_field};

#[tokio::test]
async fn rp_logout_with_id_token_hint_ends_the_session_and_refresh_then_fails() {
    let kc = start_voxgate().await;
    let http = client();
    let (_, tokens) = log_in_and_exchange(&http, &kc, "alice", "alice").await;
    let body: Value = tokens.json().await.expect("json");
    let alice_id = voxgate_user_id(&kc, "alice");
    assert_eq!(kc.active_sessions("voxgate", &alice_id), 1);
    let logout = browser_logout(
        &http,
        &kc,
        &[
            ("client_id", "voxgate-web"),
            ("post_logout_redirect_uri", "http://127.0.0.1:8080/"),
            ("id_token_hint", str_field(&body, "id_token")),
            ("state", "bye"),
        ],
    )
    .await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    assert_eq!(location(&logout), "http://127.0.0.1:8080/?state=bye");
    assert_eq!(kc.active_sessions("voxgate", &alice_id), 0);
    let refreshed = web_refresh(&http, &kc, str_field(&body, "refresh_token")).await;
    answers(
        refreshed,
        StatusCode::BAD_REQUEST,
        oauth_error("invalid_grant", "Session not active"),
    )
    .await;
    // The SSO cookie no longer logs the browser in.
    let (_, c2) = pkce();
    let again = authorize(&http, &kc, &c2, "").await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_without_hint_asks_for_confirmation_and_rejects_legacy_redirect_uri() {
    let kc = start_voxgate().await;
    let http = client();
    let (_, challenge) = pkce();
    browser_login(&http, &kc, "bob", "bob", &challenge).await;
    let bob_id = voxgate_user_id(&kc, "bob");
    let legacy = browser_logout(&http, &kc, &[("redirect_uri", "http://127.0.0.1:8080/")]).await;
    assert_eq!(legacy.status(), StatusCode::BAD_REQUEST);
    assert!(
        legacy
            .text()
            .await
            .expect("html")
            .contains("Invalid parameter: redirect_uri")
    );
    let bad_redirect = browser_logout(
        &http,
        &kc,
        &[
            ("client_id", "voxgate-web"),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
    )
    .await;
    assert_eq!(bad_redirect.status(), StatusCode::BAD_REQUEST);
    assert!(
        bad_redirect
            .text()
            .await
            .expect("html")
            .contains("Invalid redirect uri")
    );
    let page = fetch(&http, oidc_url(&kc, "voxgate", "logout")).await;
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
    let missing = cli_logout(&kc, "").await;
    answers(
        missing,
        StatusCode::BAD_REQUEST,
        oauth_error("invalid_request", "No refresh token"),
    )
    .await;
    let resp = cli_logout(&kc, str_field(&body, "refresh_token")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, got, _) = cli_refresh(&kc, str_field(&body, "refresh_token")).await;
    assert_eq!(
        (status, got["error_description"].clone()),
        (StatusCode::BAD_REQUEST, json!("Session not active"))
    );
}

/// Starts an HTTP server standing in for the client's back-channel logout endpoint; returns
/// its port and the bodies it received. It answers 200 so the stand-in sees a healthy client.
async fn backchannel_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
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
    (port, received)
}

#[tokio::test]
async fn backchannel_logout_posts_a_signed_logout_token_to_the_client() {
    let (port, received) = backchannel_receiver().await;
    let mut realm = project_realm_json();
    realm["clients"][0]["attributes"]["backchannel.logout.url"] =
        json!(format!("http://127.0.0.1:{port}/auth/backchannel-logout"));
    let kc = start_with_json(realm).await;
    let http = client();
    let (pairs, tokens) = log_in_and_exchange(&http, &kc, "alice", "alice").await;
    assert_eq!(tokens.status(), StatusCode::OK);
    let sid = param(&pairs, "session_state").to_string();

    let token = admin_token(&kc).await;
    let alice_id = voxgate_user_id(&kc, "alice");
    let resp = admin_request(
        &client(),
        Method::POST,
        admin_url(&kc, &format!("/voxgate/users/{alice_id}/logout")),
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
