//! The identity provider as voxgate sees it: Keycloak going away and
//! coming back, a discovery document naming another issuer, and a realm
//! reached at an internal address while browsers use a public one.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestSettings, detail_has};
use crate::stack::{REALM, Stack, browser, location};

use super::helpers::stack_with;

#[tokio::test]
async fn keycloak_outage_keeps_bearer_tokens_working_and_makes_login_503() {
    let stack = stack_with("VOXGATE_JWKS_REFRESH_SECONDS", "1").await;
    let token = stack.password_token("bob", "bob").await;
    stack.kc.go_down().await;
    // Several background refreshes fail while it is down.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh_copy = stack.forge(&stack.valid_claims_offline(&token));
    assert_eq!(stack.app.bearer_status(&token).await, 200, "cached token");
    assert_eq!(
        stack.app.bearer_status(&fresh_copy).await,
        200,
        "new token, last good keys"
    );
    let login = stack.app.get("/auth/login").await;
    assert_eq!(login.status(), 503);
    assert!(
        login
            .text()
            .await
            .unwrap()
            .contains("Sign-in is unavailable")
    );
    let idp = stack.app.readiness_check("identity_provider").await;
    assert_eq!(idp["ok"], true, "keys are still usable: {idp}");
    detail_has(&idp, "failed fetch");

    stack.kc.come_back().await.unwrap();
    // Recovery is automatic: sign-in works again within a few seconds.
    let mut recovered = false;
    for _ in 0..100 {
        if stack.app.get("/auth/login").await.status() == 303 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "sign-in recovers once Keycloak is back");
    let (client, landing) = stack.browser_login("bob", "bob", "/").await;
    assert_eq!(landing, stack.app.url("/"));
    assert_eq!(stack.me_status(&client).await, 200);
}

#[tokio::test]
async fn readiness_fails_when_discovery_reports_another_issuer() {
    // A provider whose discovery document names a different issuer than
    // the one configured (a typical proxy/hostname mistake).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let doc = json!({
        "issuer": "http://keycloak.internal:8080/realms/voxgate",
        "authorization_endpoint": format!("{base}/auth"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/certs"),
    });
    let router = axum::Router::new().route(
        "/realms/voxgate/.well-known/openid-configuration",
        axum::routing::get(move || async move { axum::Json(doc) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = crate::helpers::spawn_app_with(
        TestSettings::default().set("VOXGATE_OIDC_ISSUER", format!("{base}/realms/voxgate")),
    )
    .await;
    // The first discovery attempt runs in the background; wait for it.
    let mut idp = Value::Null;
    for _ in 0..200 {
        let response = app.get("/readyz").await;
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        idp = body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "identity_provider")
            .unwrap()
            .clone();
        if idp["detail"]
            .as_str()
            .unwrap_or("")
            .contains("keycloak.internal")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(idp["ok"], false);
    detail_has(&idp, "keycloak.internal");
}

/// voxgate on an internal network (the compose stack): Keycloak's hostname
/// is the public URL browsers use (unreachable from here) and its
/// back-channel endpoints are dynamic, so discovery, keys and tokens go
/// through the address voxgate reaches Keycloak at.
#[tokio::test]
async fn an_internal_discovery_url_serves_a_public_issuer() {
    const PUBLIC: &str = "https://id.voxgate.invalid";
    let port = crate::helpers::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let kc = keycloak_standin::Standin::start(keycloak_standin::StandinConfig {
        realm_jsons: vec![crate::stack::realm_for(&base)],
        hostname: Some(PUBLIC.into()),
        backchannel_dynamic: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let public_issuer = format!("{PUBLIC}/realms/{REALM}");
    let internal = format!("{}/realms/{REALM}", kc.base_url());
    assert_eq!(kc.issuer(REALM), public_issuer);
    let document = crate::stack::discovery_document(&internal).await;
    assert_eq!(document["issuer"], public_issuer.as_str());
    assert!(
        document["authorization_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(PUBLIC)
    );
    assert!(
        document["token_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&internal)
    );
    assert!(
        document["jwks_uri"]
            .as_str()
            .unwrap()
            .starts_with(&internal)
    );

    let settings = crate::stack::internal_discovery_settings(port, &public_issuer, &internal);
    // Without the internal address the issuer cannot be reached: not ready.
    let stranded = crate::helpers::try_spawn_app_with(
        settings
            .clone()
            .set("VOXGATE_BIND", "127.0.0.1:0")
            .set("VOXGATE_OIDC_DISCOVERY_URL", public_issuer.clone()),
    )
    .await
    .unwrap();
    let idp = stranded.readiness_check("identity_provider").await;
    assert_eq!(idp["ok"], false, "{idp}");

    let app = crate::helpers::try_spawn_app_with(settings).await.unwrap();
    app.wait_ready().await;
    let token = crate::stack::password_grant(&internal, "bob", "bob").await;
    let token = token["access_token"].as_str().unwrap();
    let claims = Stack::claims(token);
    assert_eq!(claims["iss"], public_issuer.as_str());
    assert_eq!(app.bearer_status(token).await, 200);
    // Browsers are sent to the public address.
    let login = browser().get(app.url("/auth/login")).send().await.unwrap();
    assert_eq!(login.status(), 303);
    assert!(
        location(&login).starts_with(&format!("{public_issuer}/protocol/openid-connect/auth?")),
        "{}",
        location(&login)
    );
    // The admin API goes to the internal address too.
    let admin = crate::stack::password_grant(&internal, "alice", "alice").await;
    let users = app
        .caller(admin["access_token"].as_str().unwrap())
        .get("/api/admin/users")
        .await;
    assert_eq!(users.status(), 200);
}
