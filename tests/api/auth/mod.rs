//! Bearer tokens, the browser login flow, sessions and roles, against the
//! Keycloak stand-in and real Postgres.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{Caller, TestSettings, detail_has, problem};
use crate::stack::{
    REALM, Stack, browser, form_action, location, spawn_stack, spawn_stack_with, spawn_with_bob,
};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An RSA key the realm does not know.
struct Attacker {
    key: RsaKeyPair,
}

impl Attacker {
    fn new() -> Attacker {
        Attacker {
            key: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
        }
    }

    fn sign(&self, header: &str, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{input}.{}", b64(&sig))
    }

    fn public_jwk(&self) -> Value {
        // SubjectPublicKeyInfo is not needed: the point is that the header
        // carries a key, whatever its encoding.
        json!({"kty": "RSA", "n": b64(self.key.public_key().as_ref()), "e": "AQAB"})
    }
}

fn hs256(header: &str, payload: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

async fn assert_invalid_token(stack: &Stack, name: &str, token: &str) {
    let response = stack.app.caller(token).get("/api/me").await;
    assert_eq!(response.status(), 401, "{name}: expected 401");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with(r#"Bearer error="invalid_token", error_description=""#),
        "{name}: {challenge}"
    );
    let body = problem(response, 401).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Invalid bearer token"),
        "{name}: {body}"
    );
}

#[tokio::test]
async fn a_real_access_token_reaches_api_me_with_mapped_roles() {
    let stack = spawn_stack().await;
    let token = stack.password_token("alice", "alice").await;
    let response = stack.app.caller(&token).get("/api/me").await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["authenticatedBy"], "bearer");
    let roles: Vec<&str> = me["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(roles, ["admin", "user"]);

    let bob = stack.password_token("bob", "bob").await;
    let me: Value = stack.app.caller(&bob).get_json("/api/me").await;
    assert_eq!(me["roles"], json!(["user"]));
}

#[tokio::test]
async fn no_credentials_is_401_with_a_bearer_challenge() {
    let stack = spawn_stack().await;
    let response = stack.app.get("/api/me").await;
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    problem(response, 401).await;
    let basic = reqwest::Client::new()
        .get(stack.app.url("/api/me"))
        .basic_auth("alice", Some("alice"))
        .send()
        .await
        .unwrap();
    problem(basic, 401).await;
}

#[tokio::test]
async fn forged_and_broken_tokens_are_all_refused() {
    let stack = spawn_stack().await;
    let valid = stack.valid_claims().await;
    let kid = stack.kc.current_kid(REALM);
    let issuer = stack.kc.issuer(REALM);
    let real = stack.forge(&valid);
    assert_eq!(
        stack.app.bearer_status(&real).await,
        200,
        "the baseline token is accepted"
    );

    let attacker = Attacker::new();
    let kc_header = |alg: &str| format!(r#"{{"alg":"{alg}","typ" : "JWT","kid" : "{kid}"}}"#);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = valid.clone();
        f(&mut c);
        c
    };
    let [h, p, s]: [&str; 3] = real.split('.').collect::<Vec<_>>().try_into().unwrap();

    let mut cases: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#);
        cases.push((
            format!("alg {alg}"),
            format!("{}.{p}.", b64(header.as_bytes())),
        ));
        cases.push((
            format!("alg {alg} with signature"),
            format!("{}.{p}.{s}", b64(header.as_bytes())),
        ));
    }
    cases.push(("empty signature".into(), format!("{h}.{p}.")));
    cases.push((
        "truncated signature".into(),
        format!("{h}.{p}.{}", &s[..s.len() / 2]),
    ));
    let mut tampered = valid.clone();
    tampered["sub"] = json!("00000000-0000-0000-0000-000000000000");
    cases.push((
        "tampered payload".into(),
        format!("{h}.{}.{s}", b64(tampered.to_string().as_bytes())),
    ));
    let jwks: Value = reqwest::get(format!("{issuer}/protocol/openid-connect/certs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()["n"]
        .as_str()
        .unwrap()
        .to_string();
    cases.push((
        "HS256 keyed with the public modulus".into(),
        hs256(&kc_header("HS256"), &valid, n.as_bytes()),
    ));
    cases.push((
        "HS256 keyed with the JWKS JSON".into(),
        hs256(&kc_header("HS256"), &valid, jwks.to_string().as_bytes()),
    ));
    cases.push((
        "attacker key with the real kid".into(),
        attacker.sign(&kc_header("RS256"), &valid),
    ));
    let jwk_header = json!({"alg": "RS256", "kid": kid, "jwk": attacker.public_jwk()}).to_string();
    cases.push(("embedded jwk".into(), attacker.sign(&jwk_header, &valid)));
    for (name, extra) in [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
    ] {
        let header = json!({"alg": "RS256", "kid": kid, name: extra}).to_string();
        cases.push((
            format!("{name} header"),
            stack.kc.sign_jws(REALM, &header, &valid),
        ));
        cases.push((
            format!("{name} header, attacker key"),
            attacker.sign(&header, &valid),
        ));
    }
    for injected in [
        "../../../../dev/null",
        "' OR '1'='1",
        "x\" , \"alg\" : \"none",
    ] {
        let header = json!({"alg": "RS256", "kid": injected}).to_string();
        cases.push((
            format!("kid injection {injected}"),
            attacker.sign(&header, &valid),
        ));
    }
    cases.push((
        "expired".into(),
        stack.forge(&with(&|c| {
            c["exp"] = json!(now() - 3600);
            c["iat"] = json!(now() - 3900);
        })),
    ));
    cases.push((
        "expired beyond leeway".into(),
        stack.forge(&with(&|c| c["exp"] = json!(now() - 45))),
    ));
    cases.push((
        "nbf in the future".into(),
        stack.forge(&with(&|c| c["nbf"] = json!(now() + 3600))),
    ));
    cases.push((
        "iat in the future".into(),
        stack.forge(&with(&|c| c["iat"] = json!(now() + 3600))),
    ));
    cases.push((
        "string exp".into(),
        stack.forge(&with(&|c| c["exp"] = json!((now() + 300).to_string()))),
    ));
    cases.push((
        "string nbf".into(),
        stack.forge(&with(&|c| c["nbf"] = json!((now() + 3600).to_string()))),
    ));
    cases.push((
        "string iat".into(),
        stack.forge(&with(&|c| c["iat"] = json!(now().to_string()))),
    ));
    for claim in ["exp", "iat", "iss", "aud", "sub"] {
        cases.push((
            format!("missing {claim}"),
            stack.forge(&with(&|c| {
                c.as_object_mut().unwrap().remove(claim);
            })),
        ));
    }
    cases.push((
        "empty sub".into(),
        stack.forge(&with(&|c| c["sub"] = json!(""))),
    ));
    cases.push((
        "wrong issuer".into(),
        stack.forge(&with(&|c| {
            c["iss"] = json!("http://evil.example/realms/voxgate")
        })),
    ));
    cases.push((
        "issuer with a suffix".into(),
        stack.forge(&with(&|c| c["iss"] = json!(format!("{issuer}x")))),
    ));
    cases.push((
        "issuer with a trailing slash".into(),
        stack.forge(&with(&|c| c["iss"] = json!(format!("{issuer}/")))),
    ));
    cases.push((
        "issuer prefix only".into(),
        stack.forge(&with(&|c| {
            c["iss"] = json!(issuer.trim_end_matches("/voxgate"))
        })),
    ));
    cases.push((
        "another realm".into(),
        stack.forge(&with(&|c| c["iss"] = json!(format!("{issuer}-other")))),
    ));
    cases.push((
        "aud only account".into(),
        stack.forge(&with(&|c| c["aud"] = json!("account"))),
    ));
    cases.push((
        "aud array without us".into(),
        stack.forge(&with(&|c| c["aud"] = json!(["account", "voxgate-evil"]))),
    ));
    cases.push((
        "ID token as bearer".into(),
        stack.forge(&with(&|c| c["typ"] = json!("ID"))),
    ));
    cases.push((
        "refresh typ as bearer".into(),
        stack.forge(&with(&|c| c["typ"] = json!("Refresh"))),
    ));
    cases.push((
        "missing typ".into(),
        stack.forge(&with(&|c| {
            c.as_object_mut().unwrap().remove("typ");
        })),
    ));
    for alg in ["RS384", "RS512", "PS256", "ES256", "EdDSA"] {
        cases.push((
            format!("alg {alg} not allowed"),
            stack.kc.sign_jws(REALM, &kc_header(alg), &valid),
        ));
    }
    let crit = json!({"alg": "RS256", "kid": kid, "crit": ["exp"], "exp": 1}).to_string();
    cases.push((
        "unknown crit".into(),
        stack.kc.sign_jws(REALM, &crit, &valid),
    ));
    cases.push(("JWE-shaped".into(), format!("{h}.{p}.{s}.x.y")));
    for garbage in ["abc", "a.b.c", "..", "eyJ.eyJ.eyJ", "Bearer", "%00"] {
        cases.push((format!("garbage {garbage}"), garbage.to_string()));
    }
    let grant = stack.password_grant("bob", "bob").await;
    cases.push((
        "real refresh token".into(),
        grant["refresh_token"].as_str().unwrap().to_string(),
    ));
    cases.push((
        "real ID token".into(),
        grant["id_token"].as_str().unwrap().to_string(),
    ));

    for (name, token) in &cases {
        assert_invalid_token(&stack, name, token).await;
    }
}

#[tokio::test]
async fn an_oversize_token_is_refused_before_parsing() {
    let stack = spawn_stack().await;
    let token = format!("eyJ{}", "A".repeat(9 * 1024));
    let response = stack.app.caller(&token).get("/api/me").await;
    let body = problem(response, 431).await;
    detail_has(&body, "8192");
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_without_a_401() {
    let stack = spawn_stack().await;
    let before = stack.password_token("bob", "bob").await;
    assert_eq!(stack.app.bearer_status(&before).await, 200);
    let old_kid = stack.kc.current_kid(REALM);
    stack.kc.rotate_signing_key(REALM);
    assert_ne!(stack.kc.current_kid(REALM), old_kid);
    let after = stack.password_token("bob", "bob").await;
    assert_eq!(
        stack.app.bearer_status(&after).await,
        200,
        "new kid fetched on demand"
    );
    assert_eq!(
        stack.app.bearer_status(&before).await,
        200,
        "old key still published"
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_causes_at_most_one_key_fetch() {
    let stack = spawn_stack().await;
    let valid = stack.valid_claims().await;
    let before = stack.kc.jwks_fetches(REALM);
    let attacker = Attacker::new();
    let requests = (0..60).map(|i| {
        let header =
            json!({"alg": "RS256", "typ": "JWT", "kid": format!("random-kid-{i}")}).to_string();
        let token = attacker.sign(&header, &valid);
        let url = stack.app.url("/api/me");
        async move {
            Caller::at("", reqwest::Client::new())
                .bearer(token)
                .get(&url)
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 401));
    let fetched = stack.kc.jwks_fetches(REALM) - before;
    assert!(fetched <= 1, "{fetched} key fetches for one flood");
}

#[tokio::test]
async fn keycloak_outage_keeps_bearer_tokens_working_and_makes_login_503() {
    let stack =
        spawn_stack_with(TestSettings::default().set("VOXGATE_JWKS_REFRESH_SECONDS", "1")).await;
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
async fn concurrent_first_requests_create_exactly_one_user_row() {
    let stack = spawn_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let sub = Stack::claims(&token)["sub"].as_str().unwrap().to_string();
    let calls = (0..20).map(|_| stack.get_with_token("/api/me", &token));
    let statuses = futures::future::join_all(calls).await;
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE keycloak_id = $1")
        .bind(&sub)
        .fetch_one(&stack.app.db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_locally_disabled_user_gets_403_even_with_a_valid_token() {
    let stack = spawn_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let sub = Stack::claims(&token)["sub"].as_str().unwrap().to_string();
    sqlx::query("INSERT INTO users (keycloak_id, username, enabled) VALUES ($1, 'bob', false)")
        .bind(&sub)
        .execute(&stack.app.db)
        .await
        .unwrap();
    let body = problem(stack.app.caller(&token).get("/api/me").await, 403).await;
    detail_has(&body, "disabled");
}

#[tokio::test]
async fn roles_granted_in_voxgate_and_mapped_from_keycloak_add_up() {
    let stack = spawn_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let me: Value = stack.app.caller(&token).get_json("/api/me").await;
    let id: uuid::Uuid = me["id"].as_str().unwrap().parse().unwrap();
    sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, 'agent')")
        .bind(id)
        .execute(&stack.app.db)
        .await
        .unwrap();
    // A fresh token: the principal cache is keyed by token roles and is
    // short-lived, so wait it out rather than reach into the app.
    tokio::time::sleep(voxgate::identity::PrincipalCache::TTL).await;
    let me: Value = stack.app.caller(&token).get_json("/api/me").await;
    assert_eq!(me["roles"], json!(["agent", "user"]));
}

#[tokio::test]
async fn browser_login_creates_a_session_and_logout_ends_it() {
    let stack = spawn_stack().await;
    let (client, landing) = stack
        .browser_login("alice", "alice", "/settings?tab=voice")
        .await;
    assert_eq!(landing, stack.app.url("/settings?tab=voice"));
    let me: Value = stack.browser(&client).get_json("/api/me").await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["authenticatedBy"], "session");
    let sessions = stack.app.count("SELECT count(*) FROM sessions").await;
    assert_eq!(sessions, 1);
    let user_id = stack.kc.user_by_username(REALM, "alice").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(stack.kc.active_sessions(REALM, &user_id), 1);

    let csrf = stack.session_column("csrf_token").await;
    let logout = stack
        .browser(&client)
        .header("origin", &stack.app.url(""))
        .post_form("/auth/logout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(logout.status(), 303);
    let end_session = location(&logout);
    assert!(end_session.starts_with(&format!(
        "{}/protocol/openid-connect/logout?",
        stack.kc.issuer(REALM)
    )));
    assert!(end_session.contains("id_token_hint="));
    assert!(end_session.contains("post_logout_redirect_uri="));
    assert_eq!(stack.me_status(&client).await, 401);
    let back = Caller::at("", client.clone()).get(&end_session).await;
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), stack.app.url("/auth/signed-out"));
    assert_eq!(
        stack.kc.active_sessions(REALM, &user_id),
        0,
        "Keycloak session ended too"
    );
    let page = stack
        .browser(&client)
        .get("/auth/signed-out")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("You are signed out"));
}

#[tokio::test]
async fn session_cookie_is_http_only_and_tokens_never_reach_the_browser() {
    let stack = spawn_stack().await;
    let client = browser();
    let callback = stack.login_until_callback(&client, "bob", "bob", "/").await;
    let done = Caller::at("", client.clone()).get(&callback).await;
    let cookies: Vec<String> = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("voxgate_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly"));
    assert!(session.contains("SameSite=Lax"));
    assert!(session.contains("Path=/"));
    for c in &cookies {
        assert!(!c.contains("eyJ"), "no JWT in cookies: {c}");
    }
}

#[tokio::test]
async fn callback_with_a_wrong_state_is_refused() {
    let stack = spawn_stack().await;
    let client = browser();
    let callback = stack.login_until_callback(&client, "bob", "bob", "/").await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let forged = k == "state";
            (
                k.into_owned(),
                if forged {
                    "forged".into()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let response = Caller::at("", client.clone()).get(&url.as_str()).await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("expired or was already used")
    );
    assert_eq!(stack.me_status(&client).await, 401);
}

#[tokio::test]
async fn a_callback_url_works_once_only() {
    let stack = spawn_stack().await;
    let client = browser();
    let callback = stack.login_until_callback(&client, "bob", "bob", "/").await;
    assert_eq!(
        Caller::at("", client.clone()).get(&callback).await.status(),
        303
    );
    let again = browser().get(&callback).send().await.unwrap();
    assert_eq!(again.status(), 400);
    let replay_same_browser = Caller::at("", client.clone()).get(&callback).await;
    assert_eq!(replay_same_browser.status(), 400);
}

#[tokio::test]
async fn a_callback_from_another_browser_is_refused() {
    let stack = spawn_stack().await;
    let victim = browser();
    let callback = stack.login_until_callback(&victim, "bob", "bob", "/").await;
    let attacker = browser();
    let response = Caller::at("", attacker.clone()).get(&callback).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("another browser"));
}

#[tokio::test]
async fn a_wrong_pkce_verifier_fails_the_code_exchange() {
    let stack = spawn_stack().await;
    let client = browser();
    let callback = stack.login_until_callback(&client, "bob", "bob", "/").await;
    stack
        .app
        .sql("UPDATE login_flows SET pkce_verifier = 'x' || pkce_verifier")
        .await;
    let response = Caller::at("", client.clone()).get(&callback).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("did not accept"));
    assert_eq!(stack.me_status(&client).await, 401);
}

#[tokio::test]
async fn open_redirect_attempts_land_on_the_home_page() {
    let stack = spawn_stack().await;
    for evil in [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "javascript:alert(1)",
        "\\\\evil.example",
        "/\t/evil.example",
    ] {
        let (_, landing) = stack.browser_login("bob", "bob", evil).await;
        assert_eq!(landing, stack.app.url("/"), "return_to={evil}");
    }
}

#[tokio::test]
async fn signing_in_rotates_the_session_id_and_kills_the_old_one() {
    let (stack, client) = spawn_with_bob().await;
    let first: Vec<u8> = sqlx::query_scalar("SELECT id_hash FROM sessions")
        .fetch_one(&stack.app.db)
        .await
        .unwrap();
    stack.browser_login_with(&client, "bob", "bob", "/").await;
    let remaining: Vec<Vec<u8>> = sqlx::query_scalar("SELECT id_hash FROM sessions")
        .fetch_all(&stack.app.db)
        .await
        .unwrap();
    assert_eq!(remaining.len(), 1);
    assert_ne!(remaining[0], first, "new id after sign-in");

    // A session id planted before sign-in (fixation) never becomes valid.
    let planted = browser();
    let cookie_url = url::Url::parse(&stack.app.url("/")).unwrap();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str("voxgate_session=attacker-chosen-value; Path=/", &cookie_url);
    let victim = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    let _ = planted;
    stack.browser_login_with(&victim, "bob", "bob", "/").await;
    let attacker = reqwest::Client::new();
    let response = stack
        .browser(&attacker)
        .header("cookie", "voxgate_session=attacker-chosen-value")
        .get("/api/me")
        .await;
    assert_eq!(response.status(), 401);
    assert_eq!(stack.me_status(&victim).await, 200);
}

#[tokio::test]
async fn cookie_authenticated_state_changes_need_same_origin_and_csrf_token() {
    let stack = spawn_stack().await;
    let (client, csrf) = stack.signed_in("bob").await;
    let origin = stack.app.url("");

    let no_origin = stack
        .browser(&client)
        .post_form("/auth/logout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(no_origin.status(), 403);
    let cross = stack
        .browser(&client)
        .header("origin", "http://evil.example")
        .post_form("/auth/logout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(cross.status(), 403);
    let no_token = stack
        .browser(&client)
        .header("origin", &origin)
        .post_raw("/auth/logout", None, "")
        .await;
    assert_eq!(no_token.status(), 403);
    let wrong_token = stack
        .browser(&client)
        .header("origin", &origin)
        .post_form("/auth/logout", &[("csrf", "nope")])
        .await;
    assert_eq!(wrong_token.status(), 403);
    assert_eq!(stack.me_status(&client).await, 200, "still signed in");
    let null_origin_cross_site = stack
        .browser(&client)
        .header("origin", "null")
        .header("sec-fetch-site", "cross-site")
        .post_form("/auth/logout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(null_origin_cross_site.status(), 403);
    let ok = stack
        .browser(&client)
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", &csrf)
        .post_raw("/auth/logout", None, "")
        .await;
    assert_eq!(ok.status(), 303);
    assert_eq!(stack.me_status(&client).await, 401);
}

#[tokio::test]
async fn keycloak_back_channel_logout_ends_the_local_session() {
    let (stack, client) = spawn_with_bob().await;
    assert_eq!(stack.me_status(&client).await, 200);
    // An admin ends bob's sessions in Keycloak; Keycloak calls us back.
    let admin_token = stack.password_token_master().await;
    let bob_id = stack.kc.user_by_username(REALM, "bob").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = Caller::at("", reqwest::Client::new())
        .bearer(admin_token)
        .post_raw(
            &format!(
                "{}/admin/realms/{REALM}/users/{bob_id}/logout",
                stack.kc.base_url()
            ),
            None,
            "",
        )
        .await;
    assert_eq!(response.status(), 204);
    let mut ended = false;
    for _ in 0..200 {
        if stack.me_status(&client).await == 401 {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ended,
        "the local session ends after Keycloak's back-channel call"
    );
}

#[tokio::test]
async fn back_channel_logout_rejects_unverified_tokens() {
    let (stack, client) = spawn_with_bob().await;
    let sid = stack.session_column("keycloak_sid").await;
    let attacker = Attacker::new();
    let claims = json!({
        "iat": now(), "exp": now() + 120, "jti": "x", "iss": stack.kc.issuer(REALM), "aud": "voxgate-web",
        "sub": "whoever", "typ": "Logout", "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
    });
    let header = format!(
        r#"{{"alg":"RS256","typ" : "logout+jwt","kid" : "{}"}}"#,
        stack.kc.current_kid(REALM)
    );
    for token in [
        attacker.sign(&header, &claims),
        stack
            .kc
            .sign_jws(REALM, &header, &json!({"typ": "Logout", "sid": sid})),
    ] {
        let response = stack
            .app
            .anonymous()
            .post_form(
                "/auth/backchannel-logout",
                &[("logout_token", token.as_str())],
            )
            .await;
        assert_eq!(response.status(), 400);
    }
    assert_eq!(
        stack.me_status(&client).await,
        200,
        "session survives forged logouts"
    );
    // The real thing, signed by the realm, ends it.
    let response = stack
        .app
        .anonymous()
        .post_form(
            "/auth/backchannel-logout",
            &[(
                "logout_token",
                stack.kc.sign_jws(REALM, &header, &claims).as_str(),
            )],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(stack.me_status(&client).await, 401);
}

#[tokio::test]
async fn logout_tokens_follow_back_channel_logout_1_0_strictly_and_cannot_be_replayed() {
    let (stack, client) = spawn_with_bob().await;
    let sid = stack.session_column("keycloak_sid").await;
    let header = format!(
        r#"{{"alg":"RS256","typ" : "logout+jwt","kid" : "{}"}}"#,
        stack.kc.current_kid(REALM)
    );
    let valid = json!({
        "iat": now(), "exp": now() + 120, "jti": format!("onltna:{}", uuid::Uuid::new_v4()),
        "iss": stack.kc.issuer(REALM), "aud": "voxgate-web", "sub": "someone", "typ": "Logout",
        "sid": sid, "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
    });
    let post = |token: String| {
        let url = stack.app.url("/auth/backchannel-logout");
        async move {
            let r = Caller::at("", reqwest::Client::new())
                .post_form(&url, &[("logout_token", token.as_str())])
                .await;
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let without = |claim: &str| {
        let mut c = valid.clone();
        c.as_object_mut().unwrap().remove(claim);
        c
    };
    let with = |claim: &str, value: Value| {
        let mut c = valid.clone();
        c[claim] = value;
        c
    };
    for (case, claims) in [
        ("no exp", without("exp")),
        ("no jti", without("jti")),
        ("empty jti", with("jti", json!(""))),
        ("no events", without("events")),
        (
            "event member not an object",
            with(
                "events",
                json!({"http://schemas.openid.net/event/backchannel-logout": true}),
            ),
        ),
        ("a nonce", with("nonce", json!("n"))),
        ("neither sid nor sub", {
            let mut c = without("sid");
            c.as_object_mut().unwrap().remove("sub");
            c
        }),
    ] {
        let (status, body) = post(stack.kc.sign_jws(REALM, &header, &claims)).await;
        assert_eq!(status, 400, "{case}: {body}");
    }
    assert_eq!(
        stack.me_status(&client).await,
        200,
        "no refused token ended the session"
    );

    let token = stack.kc.sign_jws(REALM, &header, &valid);
    assert_eq!(post(token.clone()).await.0, 200);
    assert_eq!(stack.me_status(&client).await, 401);
    // The same token again (a replay) is refused, whatever it would end.
    let (client, _) = stack.browser_login("bob", "bob", "/").await;
    let (status, body) = post(token).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(stack.me_status(&client).await, 200);

    // A token past its exp but within the validation leeway is still
    // accepted once; its jti is remembered until exp + leeway, so a replay
    // meanwhile (after any other logout call swept expired ids) is refused.
    let mut late = with("exp", json!(now() - 5));
    late["jti"] = json!(format!("late:{}", uuid::Uuid::new_v4()));
    let token = stack.kc.sign_jws(REALM, &header, &late);
    assert_eq!(post(token.clone()).await.0, 200, "within the leeway");
    let (client, _) = stack.browser_login("bob", "bob", "/").await;
    let mut other = with("jti", json!(format!("other:{}", uuid::Uuid::new_v4())));
    other["sid"] = json!("no-such-session");
    assert_eq!(post(stack.kc.sign_jws(REALM, &header, &other)).await.0, 200);
    let (status, body) = post(token).await;
    assert_eq!(status, 400, "a replay within the leeway: {body}");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(stack.me_status(&client).await, 200);
}

#[tokio::test]
async fn a_session_refreshes_its_access_token_and_ends_when_refresh_is_refused() {
    let (stack, client) = spawn_with_bob().await;
    let before: String = sqlx::query_scalar("SELECT access_token FROM sessions")
        .fetch_one(&stack.app.db)
        .await
        .unwrap();
    stack
        .app
        .sql("UPDATE sessions SET access_expires_at = now() + interval '10 seconds'")
        .await;
    assert_eq!(stack.me_status(&client).await, 200);
    let after: String = sqlx::query_scalar("SELECT access_token FROM sessions")
        .fetch_one(&stack.app.db)
        .await
        .unwrap();
    assert_ne!(before, after, "access token was refreshed");

    // Keycloak unreachable during refresh: the session lives on while its
    // access token is valid.
    stack
        .app
        .sql("UPDATE sessions SET access_expires_at = now() + interval '10 seconds'")
        .await;
    stack.kc.go_down().await;
    assert_eq!(stack.me_status(&client).await, 200);
    stack.kc.come_back().await.unwrap();

    // Refresh refused (Keycloak session gone): the local session ends.
    stack.kc.expire_all_tokens(REALM);
    stack
        .app
        .sql("UPDATE sessions SET access_expires_at = now() + interval '10 seconds'")
        .await;
    assert_eq!(stack.me_status(&client).await, 401);
    let left = stack.app.count("SELECT count(*) FROM sessions").await;
    assert_eq!(left, 0);
}

#[tokio::test]
async fn bearer_requests_keep_working_while_many_sessions_refresh_against_a_slow_keycloak() {
    // A pool of four: if a refresh held its connection while Keycloak
    // answers, twenty slow refreshes would starve every other request.
    let stack = spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_DATABASE_MAX_CONNECTIONS", "4")
            .set("VOXGATE_SIGN_INS_PER_ADDRESS", "100"),
    )
    .await;
    let token = stack.password_token("alice", "alice").await;
    assert_eq!(stack.app.bearer_status(&token).await, 200);
    let mut browsers = Vec::new();
    for _ in 0..20 {
        browsers.push(stack.browser_login("bob", "bob", "/").await.0);
    }
    stack
        .app
        .sql("UPDATE sessions SET access_expires_at = now() + interval '10 seconds'")
        .await;
    stack.kc.set_latency(Duration::from_secs(3));
    let refreshing = futures::future::join_all(browsers.iter().map(|b| stack.me_status(b)));
    // Reading the history needs a database connection on every call.
    let history = || async {
        let response = stack.app.caller(&token).get("/api/chat/history").await;
        response.status().as_u16()
    };
    let bearer = async {
        // Once the refreshes are waiting on Keycloak.
        tokio::time::sleep(Duration::from_millis(500)).await;
        futures::future::join_all((0..10).map(|_| history())).await
    };
    let (sessions, bearers) = tokio::join!(refreshing, bearer);
    stack.kc.set_latency(Duration::ZERO);
    assert!(bearers.iter().all(|s| *s == 200), "bearer: {bearers:?}");
    assert!(sessions.iter().all(|s| *s == 200), "sessions: {sessions:?}");
    let refreshed = stack
        .app
        .count(
            "SELECT count(*) FROM sessions WHERE access_expires_at > now() + interval '1 minute'",
        )
        .await;
    assert_eq!(refreshed, 20, "every session got new tokens");
}

#[tokio::test]
async fn bearer_tokens_of_clients_not_on_the_allowed_list_are_refused() {
    let only_reports = TestSettings::default().set("VOXGATE_OIDC_ALLOWED_CLIENTS", "reports-api");
    let stack = spawn_stack_with(only_reports).await;
    // The password-grant tool client is not on the list.
    let token = stack.password_token("bob", "bob").await;
    let p = problem(stack.app.caller(&token).get("/api/me").await, 401).await;
    detail_has(
        &p,
        "issued to the client `voxgate-cli`, which may not call this API",
    );
    // voxgate's own client always is: browser sessions work.
    let (client, _) = stack.browser_login("bob", "bob", "/").await;
    assert_eq!(stack.me_status(&client).await, 200);

    let with_tool =
        TestSettings::default().set("VOXGATE_OIDC_ALLOWED_CLIENTS", "reports-api, voxgate-cli");
    let stack = spawn_stack_with(with_tool).await;
    let token = stack.password_token("bob", "bob").await;
    assert_eq!(stack.app.bearer_status(&token).await, 200);
}

#[tokio::test]
async fn anonymous_sign_in_starts_are_bounded_per_address_and_store_nothing_past_the_limit() {
    let stack =
        spawn_stack_with(TestSettings::default().set("VOXGATE_SIGN_INS_PER_ADDRESS", "5")).await;
    let long_return = format!("/{}", "a".repeat(3000));
    let start = |client: reqwest::Client| {
        let url = stack
            .app
            .url(&format!("/auth/login?return_to={long_return}"));
        async move { client.get(url).send().await.unwrap() }
    };
    for _ in 0..5 {
        assert_eq!(start(crate::stack::browser()).await.status(), 303);
    }
    // A forwarded address from a peer that is not a trusted proxy changes
    // nothing.
    let spoofed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                "x-forwarded-for".parse().unwrap(),
                "203.0.113.9".parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let refused = start(spoofed).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let page = refused.text().await.unwrap();
    assert!(page.contains("wait a minute"), "a readable page: {page}");
    assert_eq!(stack.app.count("SELECT count(*) FROM login_flows").await, 5);
    // Another address is not held back by the first one's limit.
    let elsewhere = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    assert_eq!(start(elsewhere).await.status(), 303);
    // An overlong return path is not stored: it falls back to the home page.
    let stored: Vec<String> = sqlx::query_scalar("SELECT return_to FROM login_flows")
        .fetch_all(&stack.app.db)
        .await
        .unwrap();
    assert!(stored.iter().all(|r| r == "/"), "{stored:?}");
}

/// Signs bob in, ages his session with `statement`, and says whether the
/// session still works.
async fn session_survives(statement: &str) -> bool {
    let (stack, client) = spawn_with_bob().await;
    stack.app.sql(statement).await;
    stack.me_status(&client).await == 200
}

#[tokio::test]
async fn idle_sessions_expire() {
    assert!(
        session_survives("UPDATE sessions SET last_seen_at = now() - interval '29 minutes'").await
    );
    assert!(
        !session_survives("UPDATE sessions SET last_seen_at = now() - interval '31 minutes'").await
    );
}

#[tokio::test]
async fn absolute_session_lifetime_is_enforced() {
    assert!(
        !session_survives("UPDATE sessions SET expires_at = now() - interval '1 second'").await
    );
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

#[tokio::test]
async fn the_login_form_is_keycloaks_and_bad_credentials_are_shown_there() {
    let stack = spawn_stack().await;
    let client = browser();
    let start = stack.browser(&client).get("/auth/login").await;
    let auth_url = url::Url::parse(&location(&start)).unwrap();
    let params: std::collections::HashMap<_, _> = auth_url.query_pairs().into_owned().collect();
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], "voxgate-web");
    assert_eq!(params["code_challenge_method"], "S256");
    assert!(params["scope"].split(' ').any(|s| s == "openid"));
    assert!(params.contains_key("nonce") && params.contains_key("state"));
    let html = Caller::at("", client.clone())
        .get(&auth_url.as_str())
        .await
        .text()
        .await
        .unwrap();
    let failed = Caller::at("", client.clone())
        .post_form(
            &form_action(&html),
            &[("username", "bob"), ("password", "wrong")],
        )
        .await;
    assert_eq!(failed.status(), 200);
    assert!(
        failed
            .text()
            .await
            .unwrap()
            .contains("Invalid username or password.")
    );
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
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
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

/// A realm re-created with the same usernames: the token's username is
/// held by a local user whose Keycloak account is gone. The caller gets a
/// conflict that says what an admin does, never a 500, on the API and at
/// the sign-in callback.
#[tokio::test]
async fn a_username_held_by_a_vanished_keycloak_account_is_a_conflict_saying_what_to_do() {
    let stack = spawn_stack().await;
    sqlx::query(
        "INSERT INTO users (username, email, keycloak_id, status) \
         VALUES ('bob', 'old-bob@example.com', 'gone-from-keycloak', 'active')",
    )
    .execute(&stack.app.db)
    .await
    .unwrap();
    let token = stack.password_token("bob", "bob").await;
    let response = stack.app.caller(&token).get("/api/me").await;
    let body = problem(response, 409).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("voxgate users reconcile --fix"),
        "{body}"
    );

    let client = browser();
    let callback = crate::stack::login_until_callback(
        &stack.app,
        &stack.kc.issuer(REALM),
        &client,
        "bob",
        "bob",
        "/",
    )
    .await;
    let page = client.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 409);
    assert!(page.text().await.unwrap().contains("reconcile --fix"));
}

/// A flood from a few clients reaches the instance's sign-in limit; the
/// busiest are shed, and somebody else can still start a sign-in. An IPv6
/// network counts as one client, whichever of its addresses it uses.
#[tokio::test]
async fn a_sign_in_flood_sheds_its_own_clients_not_everyone() {
    let stack = spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_SIGN_INS_PER_ADDRESS", "4")
            .set("VOXGATE_SIGN_INS_PER_INSTANCE", "8")
            .set("VOXGATE_TRUSTED_PROXIES", "127.0.0.9"),
    )
    .await;
    let from = |local: &str, forwarded: Option<&str>| {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(f) = forwarded {
            headers.insert("x-forwarded-for", f.parse().unwrap());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(local.parse::<std::net::IpAddr>().unwrap())
            .default_headers(headers)
            .build()
            .unwrap();
        let url = stack.app.url("/auth/login");
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    for flooder in ["127.0.0.2", "127.0.0.3"] {
        for _ in 0..4 {
            assert_eq!(from(flooder, None).await, 303);
        }
        assert_eq!(from(flooder, None).await, 429, "{flooder} at its limit");
    }
    // The instance's limit (8) is reached: a person elsewhere still signs in.
    assert_eq!(from("127.0.0.4", None).await, 303);

    // Behind the trusted proxy, one IPv6 /64 is one client whichever
    // address it uses; another /64 is another client.
    for host in 1..=3 {
        let address = format!("2001:db8:5:6::{host}");
        assert_eq!(from("127.0.0.9", Some(&address)).await, 303, "{address}");
    }
    assert_eq!(
        from("127.0.0.9", Some("2001:db8:5:6:abcd::1")).await,
        429,
        "the /64 is no longer light"
    );
    assert_eq!(from("127.0.0.9", Some("2001:db8:5:7::1")).await, 303);
}
