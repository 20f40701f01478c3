//! Signing out: the browser's own logout, which ends the Keycloak session
//! too, and Keycloak's back-channel calls, whose logout tokens are held to
//! Back-Channel Logout 1.0 and never accepted twice.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::Caller;
use crate::stack::{REALM, location, spawn_stack, spawn_with_bob};

use super::helpers::{
    Attacker, back_channel_answer, back_channel_logout, keycloak_user_id, logout_claims,
    logout_header, now, open_in, post_logout,
};

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
    let user_id = keycloak_user_id(&stack, "alice");
    assert_eq!(stack.kc.active_sessions(REALM, &user_id), 1);

    let csrf = stack.session_column("csrf_token").await;
    let origin = stack.app.url("");
    let logout = post_logout(
        &stack,
        &client,
        &[("origin", origin.as_str())],
        Some(csrf.as_str()),
    )
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
    let back = open_in(&client, &end_session).await;
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
async fn keycloak_back_channel_logout_ends_the_local_session() {
    let (stack, client) = spawn_with_bob().await;
    assert_eq!(stack.me_status(&client).await, 200);
    // An admin ends bob's sessions in Keycloak; Keycloak calls us back.
    let admin_token = stack.password_token_master().await;
    let bob_id = keycloak_user_id(&stack, "bob");
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
    let claims = logout_claims(&stack, &sid, "x", "whoever");
    let header = logout_header(&stack);
    for token in [
        attacker.sign(&header, &claims),
        stack
            .kc
            .sign_jws(REALM, &header, &json!({"typ": "Logout", "sid": sid})),
    ] {
        let response = back_channel_logout(&stack, &token).await;
        assert_eq!(response.status(), 400);
    }
    assert_eq!(
        stack.me_status(&client).await,
        200,
        "session survives forged logouts"
    );
    // The real thing, signed by the realm, ends it.
    let response = back_channel_logout(&stack, &stack.kc.sign_jws(REALM, &header, &claims)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stack.me_status(&client).await, 401);
}

#[tokio::test]
async fn logout_tokens_follow_back_channel_logout_1_0_strictly_and_cannot_be_replayed() {
    let (stack, client) = spawn_with_bob().await;
    let sid = stack.session_column("keycloak_sid").await;
    let header = logout_header(&stack);
    let jti = format!("onltna:{}", uuid::Uuid::new_v4());
    let valid = logout_claims(&stack, &sid, &jti, "someone");
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
        let (status, body) =
            back_channel_answer(&stack, &stack.kc.sign_jws(REALM, &header, &claims)).await;
        assert_eq!(status, 400, "{case}: {body}");
    }
    assert_eq!(
        stack.me_status(&client).await,
        200,
        "no refused token ended the session"
    );

    let token = stack.kc.sign_jws(REALM, &header, &valid);
    assert_eq!(back_channel_answer(&stack, &token).await.0, 200);
    assert_eq!(stack.me_status(&client).await, 401);
    // The same token again (a replay) is refused, whatever it would end.
    let (client, _) = stack.browser_login("bob", "bob", "/").await;
    let (status, body) = back_channel_answer(&stack, &token).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(stack.me_status(&client).await, 200);

    // A token past its exp but within the validation leeway is still
    // accepted once; its jti is remembered until exp + leeway, so a replay
    // meanwhile (after any other logout call swept expired ids) is refused.
    let mut late = with("exp", json!(now() - 5));
    late["jti"] = json!(format!("late:{}", uuid::Uuid::new_v4()));
    let token = stack.kc.sign_jws(REALM, &header, &late);
    assert_eq!(
        back_channel_answer(&stack, &token).await.0,
        200,
        "within the leeway"
    );
    let (client, _) = stack.browser_login("bob", "bob", "/").await;
    let mut other = with("jti", json!(format!("other:{}", uuid::Uuid::new_v4())));
    other["sid"] = json!("no-such-session");
    let unknown_session = stack.kc.sign_jws(REALM, &header, &other);
    assert_eq!(back_channel_answer(&stack, &unknown_session).await.0, 200);
    let (status, body) = back_channel_answer(&stack, &token).await;
    assert_eq!(status, 400, "a replay within the leeway: {body}");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(stack.me_status(&client).await, 200);
}
