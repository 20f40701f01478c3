//! What the authentication tests share: a key the realm does not know, to
//! forge tokens with, and the requests several of them make the same way.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{Caller, TestSettings, problem_saying};
use crate::stack::{REALM, Stack, spawn_stack_with};

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An RSA key the realm does not know.
pub(super) struct Attacker {
    key: RsaKeyPair,
}

impl Attacker {
    pub(super) fn new() -> Attacker {
        Attacker {
            key: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
        }
    }

    pub(super) fn sign(&self, header: &str, payload: &Value) -> String {
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

    pub(super) fn public_jwk(&self) -> Value {
        // SubjectPublicKeyInfo is not needed: the point is that the header
        // carries a key, whatever its encoding.
        json!({"kty": "RSA", "n": b64(self.key.public_key().as_ref()), "e": "AQAB"})
    }
}

/// The stand-in stack with one setting changed.
pub(super) async fn stack_with(setting: &str, value: &str) -> Stack {
    spawn_stack_with(TestSettings::default().set(setting, value)).await
}

/// `GET url` in the browser `client`: its cookies are what tie a sign-in
/// to the browser that started it.
pub(super) async fn open_in(client: &reqwest::Client, url: &str) -> reqwest::Response {
    Caller::at("", client.clone()).get(url).await
}

/// Asserts that `GET /api/me` with `token` is refused with `status` and a
/// problem whose detail says `saying`.
pub(super) async fn me_refused(stack: &Stack, token: &str, status: u16, saying: &str) {
    problem_saying(stack.app.caller(token).get("/api/me").await, status, saying).await;
}

/// `POST /auth/logout` from the browser `client` with `headers`, carrying
/// the CSRF token as the form's field, or with no body at all (the token,
/// if any, then being one of the headers).
pub(super) async fn post_logout(
    stack: &Stack,
    client: &reqwest::Client,
    headers: &[(&str, &str)],
    csrf_field: Option<&str>,
) -> reqwest::Response {
    let mut caller = stack.browser(client);
    for (name, value) in headers {
        caller = caller.header(name, value);
    }
    match csrf_field {
        Some(csrf) => caller.post_form("/auth/logout", &[("csrf", csrf)]).await,
        None => caller.post_raw("/auth/logout", None, "").await,
    }
}

/// Puts every session's access token a few seconds from expiry, so that
/// the next request through a session refreshes it first.
pub(super) async fn make_access_tokens_due(stack: &Stack) {
    stack
        .app
        .sql("UPDATE sessions SET access_expires_at = now() + interval '10 seconds'")
        .await;
}

/// The id Keycloak gives `username` in the project realm.
pub(super) fn keycloak_user_id(stack: &Stack, username: &str) -> String {
    stack.kc.user_by_username(REALM, username).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The header Keycloak puts on a logout token, naming the realm's key.
pub(super) fn logout_header(stack: &Stack) -> String {
    format!(
        r#"{{"alg":"RS256","typ" : "logout+jwt","kid" : "{}"}}"#,
        stack.kc.current_kid(REALM)
    )
}

/// The claims of a logout token for Keycloak's session `sid` that Back-
/// Channel Logout 1.0 accepts, valid for two minutes.
pub(super) fn logout_claims(stack: &Stack, sid: &str, jti: &str, sub: &str) -> Value {
    json!({
        "iat": now(), "exp": now() + 120, "jti": jti, "iss": stack.kc.issuer(REALM),
        "aud": "voxgate-web", "sub": sub, "typ": "Logout", "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
    })
}

/// Keycloak's back-channel call with `token`; it comes with no cookies.
pub(super) async fn back_channel_logout(stack: &Stack, token: &str) -> reqwest::Response {
    stack
        .app
        .anonymous()
        .post_form("/auth/backchannel-logout", &[("logout_token", token)])
        .await
}

/// The status and body of the answer to a back-channel call, the body
/// saying why a token was refused.
pub(super) async fn back_channel_answer(stack: &Stack, token: &str) -> (u16, String) {
    let response = back_channel_logout(stack, token).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A client without cookies or redirects that connects from the loopback
/// address `local`, optionally with `X-Forwarded-For: forwarded`: another
/// machine, as far as the per-address limits can tell.
pub(super) fn client_at(local: &str, forwarded: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(f) = forwarded {
        headers.insert("x-forwarded-for", f.parse().unwrap());
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .default_headers(headers)
        .build()
        .unwrap()
}
