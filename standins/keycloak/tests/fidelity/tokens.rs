//! The token endpoint's answers when things go wrong or change: error statuses and bodies for
//! each malformed or refused grant, CORS, introspection, revocation, expiry of every token, and
//! brute-force lockout of the password grant.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_SECRET, WEB_SECRET, admin_delete, admin_get_json, admin_token, admin_url,
    cli_password_grant, cli_refresh, client, introspect, oauth_error, oidc_url, password_token,
    post_token, project_realm_json, start_voxgate, start_with_json, submit, voxgate_user_id,
};
use crate::jwt::{keys_of, str_field};

/// Form fields, expected status, expected body.
type TokenCase = (Vec<(&'static str, &'static str)>, StatusCode, Value);

#[tokio::test]
async fn token_endpoint_errors_match_keycloak_statuses_and_bodies() {
    let kc = start_voxgate().await;
    let cases: Vec<TokenCase> = vec![
        (
            vec![("client_id", "voxgate-cli")],
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_request", "Missing form parameter: grant_type"),
        ),
        (
            vec![("grant_type", "magic"), ("client_id", "voxgate-cli")],
            StatusCode::BAD_REQUEST,
            oauth_error("unsupported_grant_type", "Unsupported grant_type"),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("client_id", "voxgate-cli"),
            ],
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_request", "duplicated parameter"),
        ),
        (
            vec![("grant_type", "password")],
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_client", "Missing client_id parameter"),
        ),
        (
            vec![("grant_type", "password"), ("client_id", "nope")],
            StatusCode::UNAUTHORIZED,
            oauth_error(
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
            oauth_error(
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
            oauth_error(
                "unauthorized_client",
                "Invalid client or Invalid client credentials",
            ),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "voxgate-web"),
                ("client_secret", WEB_SECRET),
                ("username", "alice"),
                ("password", "alice"),
            ],
            StatusCode::BAD_REQUEST,
            oauth_error(
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
            oauth_error("invalid_grant", "Invalid user credentials"),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "nobody"),
                ("password", "x"),
            ],
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Invalid user credentials"),
        ),
        (
            vec![("grant_type", "password"), ("client_id", "voxgate-cli")],
            StatusCode::UNAUTHORIZED,
            oauth_error("invalid_request", "Missing parameter: username"),
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "voxgate-cli"),
            ],
            StatusCode::UNAUTHORIZED,
            oauth_error(
                "unauthorized_client",
                "Public client not allowed to retrieve service account",
            ),
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "voxgate-web"),
                ("client_secret", WEB_SECRET),
            ],
            StatusCode::UNAUTHORIZED,
            oauth_error(
                "unauthorized_client",
                "Client not enabled to retrieve service account",
            ),
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "voxgate-web"),
                ("client_secret", WEB_SECRET),
            ],
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_request", "Missing parameter: code"),
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "voxgate-web"),
                ("client_secret", WEB_SECRET),
                ("code", "bogus"),
            ],
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Code not valid"),
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "voxgate-cli"),
            ],
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_request", "No refresh token"),
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "voxgate-cli"),
                ("refresh_token", "garbage"),
            ],
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Invalid refresh token"),
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
            oauth_error("invalid_scope", "Invalid scopes: openid nonsense"),
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "realm-management"),
                ("username", "alice"),
                ("password", "alice"),
            ],
            StatusCode::UNAUTHORIZED,
            oauth_error(
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
            ("client_secret", WEB_SECRET),
            ("refresh_token", str_field(&body, "refresh_token")),
        ],
    )
    .await;
    assert_eq!(
        (status, got),
        (
            StatusCode::BAD_REQUEST,
            oauth_error(
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
    let token_url = oidc_url(&kc, "voxgate", "token");
    let pre = http
        .request(Method::OPTIONS, &token_url)
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
            .basic_auth("voxgate-web", Some(WEB_SECRET))
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
    let access = str_field(&body, "access_token");
    let active = introspect(&kc, "voxgate-admin", ADMIN_SECRET, access).await;
    assert_eq!(active["active"], json!(true));
    assert_eq!(active["username"], json!("bob"));
    assert_eq!(active["client_id"], json!("voxgate-cli"));
    assert_eq!(keys_of(&active).last().map(String::as_str), Some("active"));
    let outsider = introspect(&kc, "voxgate-web", WEB_SECRET, access).await;
    assert_eq!(
        outsider,
        json!({"active": false}),
        "a client outside the audience learns nothing"
    );
    kc.expire_all_tokens("voxgate");
    assert_eq!(
        introspect(&kc, "voxgate-admin", ADMIN_SECRET, access).await,
        json!({"active": false})
    );
    let (status, got, _) = cli_refresh(&kc, str_field(&body, "refresh_token")).await;
    assert_eq!(
        (status, got["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );
    // Tokens issued afterwards are fine.
    let fresh = password_token(&kc, "bob", "bob").await;
    assert_eq!(
        introspect(
            &kc,
            "voxgate-admin",
            ADMIN_SECRET,
            str_field(&fresh, "access_token")
        )
        .await["active"],
        json!(true)
    );
}

#[tokio::test]
async fn revoked_refresh_token_can_no_longer_be_used() {
    let kc = start_voxgate().await;
    let body = password_token(&kc, "bob", "bob").await;
    let rt = str_field(&body, "refresh_token");
    let resp = submit(
        &client(),
        oidc_url(&kc, "voxgate", "revoke"),
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

#[tokio::test]
async fn brute_force_detection_locks_like_keycloak_and_an_admin_lifts_it() {
    // The project realm turns brute-force protection on (as the real
    // server's test in tests/api/real_keycloak/bearer.rs checks).
    let kc = start_voxgate().await;
    for _ in 0..10 {
        let (status, body, _) = cli_password_grant(&kc, "bob", "guess").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error_description"], "Invalid user credentials");
    }
    let (status, body, _) = cli_password_grant(&kc, "bob", "bob").await;
    assert_eq!(
        (status, body["error_description"].clone()),
        (StatusCode::BAD_REQUEST, json!("Invalid user credentials")),
        "locked: the right password gets the same answer"
    );
    let token = admin_token(&kc).await;
    let url = admin_url(
        &kc,
        &format!(
            "/voxgate/attack-detection/brute-force/users/{}",
            voxgate_user_id(&kc, "bob")
        ),
    );
    let detection = admin_get_json(&client(), &url, &token).await;
    assert_eq!(detection["disabled"], true, "{detection}");
    // Failures faster than one a second lock at the second; later
    // attempts are not counted.
    assert_eq!(detection["numFailures"], 2, "{detection}");
    let cleared = admin_delete(&client(), &url, &token).await;
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cli_password_grant(&kc, "bob", "bob").await.0,
        StatusCode::OK
    );
}
