//! Wire facts a client can see without a browser: the discovery document, the JWKS (kid and
//! thumbprint derivation), the header bytes, claim sets and claim order of issued tokens, and
//! that the header bytes match tokens captured from real Keycloak servers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    admin_client_credentials, admin_token, client, discovery_url, fetch, fixture, jwks,
    password_token, start_voxgate,
};
use crate::jwt::{
    HEADER_PREFIX, check_jwk_derivations, claims, has_keycloak_header_prefix, header_str,
    jwt_header, keys_of, rs256_validate, str_field,
};

#[tokio::test]
async fn discovery_document_has_every_field_of_a_real_keycloak_document() {
    let kc = start_voxgate().await;
    let resp = fetch(&client(), discovery_url(&kc, "voxgate")).await;
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
    let access = str_field(&body, "access_token");
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
    let refresh = str_field(&body, "refresh_token");
    let rh = jwt_header(refresh);
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
        str_field(&body, "access_token"),
        &set,
        Some("voxgate"),
        &iss,
    );
    assert_eq!(access["preferred_username"], json!("bob"));
    let id = rs256_validate(
        str_field(&body, "id_token"),
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
    let (status, body, _) = admin_client_credentials(&kc).await;
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
    let c = claims(str_field(&body, "access_token"));
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

#[tokio::test]
async fn real_keycloak_tokens_share_the_header_bytes_we_emit() {
    let real = fixture("tokens-keycloak26-OSSS-rubelw.json");
    for key in ["access_token", "id_token"] {
        assert!(str_field(&real, key).starts_with(HEADER_PREFIX), "{key}");
    }
    let old = fixture("token-and-key-keycloak-pre17-demo-hanyangkuo.json");
    assert!(str_field(&old, "id_token").starts_with(HEADER_PREFIX));
    let kc = start_voxgate().await;
    let ours = password_token(&kc, "bob", "bob").await;
    assert!(has_keycloak_header_prefix(str_field(&ours, "id_token")));
}
