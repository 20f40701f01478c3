//! Bearer tokens minted by the real token endpoint.

use std::time::Duration;

use serde_json::{Value, json};

use super::{spawn_real_stack, spawn_real_stack_with, test_realm};
use crate::helpers::{Caller, TestSettings};
use crate::stack::{Stack, password_grant};

#[tokio::test]
async fn real_tokens_are_accepted_on_api_me_with_their_realm_roles() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    let response = stack.app.caller(&token).get("/api/me").await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["roles"], json!(["admin", "user"]));

    let bob = stack.password_token("bob", "bob").await;
    let me: Value = stack.me(&bob).await;
    assert_eq!(me["roles"], json!(["user"]));
}

#[tokio::test]
async fn a_token_of_another_realm_is_refused() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    // The same realm file under another name: same clients, same users,
    // same audience — only the issuer and the keys differ.
    let other = format!("{}-other", stack.realm);
    let created = stack
        .admin
        .create_realm(&test_realm(&other, &stack.app.url(""), |_| {}))
        .await;
    assert_eq!(created.status(), 201);
    let foreign = password_grant(&stack.kc.issuer(&other), "alice", "alice").await;
    let token = foreign["access_token"].as_str().unwrap();
    let response = stack.app.caller(token).get("/api/me").await;
    assert_eq!(response.status(), 401);
    let _ = stack
        .kc
        .admin(&other)
        .call(reqwest::Method::DELETE, "", None)
        .await;
}

#[tokio::test]
async fn a_token_without_our_audience_is_refused() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    // A public client of the same realm without voxgate's audience mapper.
    let r = stack
        .admin
        .call(
            reqwest::Method::POST,
            "/clients",
            Some(&json!({
                "clientId": "someone-else",
                "publicClient": true,
                "directAccessGrantsEnabled": true,
                "standardFlowEnabled": false,
            })),
        )
        .await;
    assert_eq!(r.status(), 201);
    let response = Caller::at("", reqwest::Client::new())
        .post_form(
            &format!("{}/protocol/openid-connect/token", stack.issuer()),
            &[
                ("grant_type", "password"),
                ("client_id", "someone-else"),
                ("username", "alice"),
                ("password", "alice"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let aud = &Stack::claims(token)["aud"];
    assert!(
        !aud.to_string().contains("\"voxgate\""),
        "the token must lack our audience: {aud}"
    );
    let response = stack.app.caller(token).get("/api/me").await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn an_expired_real_token_is_refused() {
    let settings = TestSettings::default().set("VOXGATE_OIDC_LEEWAY_SECONDS", "0");
    let Some(stack) = spawn_real_stack_with(settings, |realm| {
        realm["accessTokenLifespan"] = json!(2);
    })
    .await
    else {
        return;
    };
    let token = stack.password_token("bob", "bob").await;
    let claims = Stack::claims(&token);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        2
    );
    assert_eq!(stack.app.bearer_status(&token).await, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(stack.app.bearer_status(&token).await, 401);
}

#[tokio::test]
async fn the_shipped_realm_locks_an_account_after_repeated_wrong_passwords() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token_url = format!("{}/protocol/openid-connect/token", stack.issuer());
    let grant = |password: &'static str| {
        let url = token_url.clone();
        async move {
            let form = [
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "bob"),
                ("password", password),
            ];
            let r = Caller::at("", reqwest::Client::new())
                .post_form(&url, &form)
                .await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    // Keycloak 26.7 answers a wrong password with 400 invalid_grant.
    for _ in 0..10 {
        let (status, body) = grant("guess").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error_description"], "Invalid user credentials");
    }
    // Locked: the right password is refused with the same answer, so a
    // guesser learns nothing from it.
    let (status, body) = grant("bob").await;
    assert_eq!(
        (status, body["error_description"].clone()),
        (400, json!("Invalid user credentials"))
    );
    let bob_id = stack.admin.get("/users?username=bob&exact=true").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let detection = stack
        .admin
        .get(&format!("/attack-detection/brute-force/users/{bob_id}"))
        .await;
    assert_eq!(detection["disabled"], true, "{detection}");
    // Guesses faster than one a second lock the account at the second
    // (the quick-login check); later ones are not even counted.
    assert!(
        detection["numFailures"].as_u64().unwrap() >= 2,
        "{detection}"
    );
    // An admin can lift the lock at once.
    let cleared = stack
        .admin
        .call(
            reqwest::Method::DELETE,
            &format!("/attack-detection/brute-force/users/{bob_id}"),
            None,
        )
        .await;
    assert_eq!(cleared.status(), 204);
    assert_eq!(grant("bob").await.0, 200);
}

/// What the real server does with a realm's `frontendUrl` when back-channel
/// URLs are not dynamic (the stand-in models the same): every endpoint,
/// token and keys included, moves to the frontend URL.
#[tokio::test]
async fn a_realm_frontend_url_moves_every_endpoint_without_dynamic_back_channel() {
    const PUBLIC: &str = "https://id.voxgate.invalid";
    let Some(kc) = super::server() else {
        return;
    };
    let realm = format!("vg-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let admin = kc.admin(&realm);
    let json = test_realm(&realm, "http://127.0.0.1:9", |r| {
        r["attributes"]["frontendUrl"] = json!(PUBLIC);
    });
    assert_eq!(admin.create_realm(&json).await.status(), 201);
    let standin = keycloak_standin::Standin::start(keycloak_standin::StandinConfig {
        realm_jsons: vec![json],
        ..Default::default()
    })
    .await
    .unwrap();
    let public_issuer = format!("{PUBLIC}/realms/{realm}");
    for base in [
        kc.issuer(&realm),
        standin.issuer(&realm).replace(PUBLIC, &standin.base_url()),
    ] {
        let document = crate::stack::discovery_document(&base).await;
        assert_eq!(document["issuer"], public_issuer.as_str(), "{document}");
        for endpoint in [
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "end_session_endpoint",
        ] {
            let url = document[endpoint].as_str().unwrap();
            assert!(url.starts_with(&public_issuer), "{base}: {endpoint}: {url}");
        }
    }
    admin.delete_realm_from_drop();
}

/// The compose stack's Keycloak settings on the real server: `hostname` is
/// the public URL and back-channel URLs are dynamic, so a client inside the
/// network gets the public issuer with internal token and key endpoints;
/// voxgate with that internal address as its discovery URL accepts the
/// server's tokens.
#[tokio::test]
async fn hostname_with_dynamic_back_channel_serves_voxgates_internal_discovery() {
    const PUBLIC: &str = "https://id.voxgate.invalid";
    if super::server().is_none() {
        return;
    }
    let process = tokio::task::spawn_blocking(|| {
        super::KeycloakProcess::start_with(&[
            ("KC_HOSTNAME", PUBLIC),
            ("KC_HOSTNAME_BACKCHANNEL_DYNAMIC", "true"),
            ("KC_HOSTNAME_ADMIN", "http://127.0.0.1:{http_port}"),
        ])
    })
    .await
    .unwrap()
    .expect("a Keycloak with hostname settings starts");
    let kc = process.handle();
    let realm = "voxgate";
    let port = crate::helpers::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let admin = kc.admin(realm);
    let json = test_realm(realm, &base, |_| {});
    assert_eq!(admin.create_realm(&json).await.status(), 201);
    let internal = kc.issuer(realm);
    let public_issuer = format!("{PUBLIC}/realms/{realm}");
    let document = crate::stack::discovery_document(&internal).await;
    assert_eq!(document["issuer"], public_issuer.as_str(), "{document}");
    for frontend in ["authorization_endpoint", "end_session_endpoint"] {
        let url = document[frontend].as_str().unwrap();
        assert!(url.starts_with(&public_issuer), "{frontend}: {url}");
    }
    for backend in ["token_endpoint", "jwks_uri", "userinfo_endpoint"] {
        let url = document[backend].as_str().unwrap();
        assert!(url.starts_with(&internal), "{backend}: {url}");
    }

    let app = crate::helpers::try_spawn_app_with(crate::stack::internal_discovery_settings(
        port,
        &public_issuer,
        &internal,
    ))
    .await
    .unwrap();
    app.wait_ready().await;
    let token = password_grant(&internal, "bob", "bob").await;
    let token = token["access_token"].as_str().unwrap();
    assert_eq!(app.bearer_status(token).await, 200);
    // The admin API (service account, internal address) works as well.
    let alice = password_grant(&internal, "alice", "alice").await;
    let users = app
        .caller(alice["access_token"].as_str().unwrap())
        .get("/api/admin/users")
        .await;
    assert_eq!(users.status(), 200);

    // The admin console: with the public origin as the master realm's
    // frontend, its sign-in would go where nginx refuses /realms/master;
    // the compose stack's one-shot script points it at the console's own
    // address, and the console's sign-in then stays there.
    let before = crate::stack::discovery_document(&kc.issuer("master")).await;
    let sign_in = before["authorization_endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sign_in.starts_with(PUBLIC), "{sign_in}");
    let admin_url = kc.base.clone();
    let script = super::repo_root().join("keycloak/admin-console.sh");
    let (password, url) = (kc.admin_password().to_string(), admin_url.clone());
    let out = tokio::task::spawn_blocking(move || {
        let home = std::process::Command::new(super::repo_root().join("scripts/keycloak"))
            .arg("fetch")
            .output()
            .unwrap();
        let home = String::from_utf8(home.stdout).unwrap().trim().to_string();
        std::process::Command::new("bash")
            .arg(script)
            .env("KCADM", format!("{home}/bin/kcadm.sh"))
            .env("KEYCLOAK_URL", &url)
            .env("ADMIN_URL", &url)
            .env("KC_BOOTSTRAP_ADMIN_USERNAME", super::MASTER_ADMIN)
            .env("KC_BOOTSTRAP_ADMIN_PASSWORD", password)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = crate::stack::discovery_document(&kc.issuer("master")).await;
    let sign_in = after["authorization_endpoint"].as_str().unwrap();
    assert!(
        sign_in.starts_with(&format!("{admin_url}/realms/master/")),
        "{sign_in}"
    );
    let console = reqwest::get(format!("{admin_url}/admin/master/console/"))
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    drop(app);
    tokio::task::spawn_blocking(move || drop(process))
        .await
        .unwrap();
}
