//! The stand-in's test controls, which real Keycloak does not have: going down and coming
//! back, injected failures and latency, request counters, signing-key rotation, raw JWS
//! signing, the state file that survives restarts, and the opt-in HTTP control endpoint.

use std::time::{Duration, Instant};

use keycloak_standin::{Standin, StandinConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    admin_token, cli_password_grant, client, create_voxgate_user, discovery_url, fetch, jwks,
    oauth_error, oidc_url, password_access_token, password_token, start_voxgate, voxgate_config,
};
use crate::jwt::{header_str, jwt_header, rs256_validate, rsa_decoding_key};

#[tokio::test]
async fn go_down_refuses_connections_and_come_back_restores_service() {
    let kc = start_voxgate().await;
    let url = discovery_url(&kc, "voxgate");
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
        let (status, body, _) = cli_password_grant(&kc, "bob", "bob").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            oauth_error(
                "unknown_error",
                "For more on this error consult the server log."
            )
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
    let old_token = password_access_token(&kc, "bob", "bob").await;
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
    let new_token = password_access_token(&kc, "bob", "bob").await;
    assert_eq!(jwt_header(&new_token)["kid"], json!(new_kid));
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
    let key = rsa_decoding_key(&set["keys"][0]);
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
        state_file: Some(state.clone()),
        ..voxgate_config()
    };
    let kc = Standin::start(config.clone()).await.expect("start");
    let token = admin_token(&kc).await;
    let created = create_voxgate_user(&client(), &kc, &token, &json!({"username": "gina", "enabled": true, "credentials": [{"type": "password", "value": "gina-pass"}]})).await;
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
        control_endpoint: true,
        ..voxgate_config()
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
    let resp = fetch(&client(), oidc_url(&kc, "voxgate", "certs")).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let counters: Value = fetch(&client(), format!("{}/_standin/counters", kc.base_url()))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(counters["jwks_fetches"]["voxgate"], json!(1));
}
