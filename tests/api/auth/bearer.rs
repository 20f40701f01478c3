//! Bearer tokens on the API: a real token's user and roles, the forgeries
//! and malformed tokens that must all be refused, key rotation, and the
//! allowed list of clients.

use serde_json::{Value, json};

use crate::helpers::{Caller, problem};
use crate::stack::{REALM, Stack, spawn_stack};

use super::helpers::{Attacker, b64, me_refused, now, stack_with};

/// An HS256 token keyed with `secret`: the algorithm confusion where a
/// verifier takes the realm's public key for an HMAC secret.
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

/// Asserts the refusal every bad token gets, whatever is wrong with it:
/// RFC 6750's `invalid_token` challenge and a problem body.
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
    me_refused(&stack, &token, 431, "8192").await;
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
async fn bearer_tokens_of_clients_not_on_the_allowed_list_are_refused() {
    let stack = stack_with("VOXGATE_OIDC_ALLOWED_CLIENTS", "reports-api").await;
    // The password-grant tool client is not on the list.
    let token = stack.password_token("bob", "bob").await;
    me_refused(
        &stack,
        &token,
        401,
        "issued to the client `voxgate-cli`, which may not call this API",
    )
    .await;
    // voxgate's own client always is: browser sessions work.
    let (client, _) = stack.browser_login("bob", "bob", "/").await;
    assert_eq!(stack.me_status(&client).await, 200);

    let stack = stack_with("VOXGATE_OIDC_ALLOWED_CLIENTS", "reports-api, voxgate-cli").await;
    let token = stack.password_token("bob", "bob").await;
    assert_eq!(stack.app.bearer_status(&token).await, 200);
}
