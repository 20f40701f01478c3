//! voxgate while Keycloak is stopped and started again. This test has a
//! server of its own: stopping the shared one would fail every other test.

use super::{KeycloakProcess, lane_enabled, spawn_real_stack_on};
use crate::helpers::TestSettings;

#[tokio::test]
async fn the_app_keeps_serving_while_keycloak_is_down_and_recovers_when_it_returns() {
    if !lane_enabled() {
        return;
    }
    let mut keycloak = tokio::task::spawn_blocking(KeycloakProcess::start)
        .await
        .unwrap()
        .expect("a second Keycloak starts");
    let stack = spawn_real_stack_on(keycloak.handle(), TestSettings::default(), |_| {}).await;
    let token = stack.password_token("bob", "bob").await;
    let browser = stack.browser_login("alice", "alice").await;
    let me = |token: String| {
        let stack = &stack;
        async move { stack.app.bearer_status(&token).await }
    };
    assert_eq!(me(token.clone()).await, 200);
    assert_eq!(stack.me_status(&browser).await, 200);

    let mut keycloak = tokio::task::spawn_blocking(move || {
        keycloak.stop();
        keycloak
    })
    .await
    .unwrap();
    assert!(
        reqwest::get(format!(
            "{}/.well-known/openid-configuration",
            stack.issuer()
        ))
        .await
        .is_err(),
        "Keycloak is down"
    );
    // Keys are cached: bearer tokens and browser sessions keep working, and
    // pages that need no sign-in are served.
    for _ in 0..3 {
        assert_eq!(me(token.clone()).await, 200);
        assert_eq!(stack.me_status(&browser).await, 200);
    }
    assert_eq!(stack.app.get("/healthz").await.status(), 200);
    // Starting a new sign-in needs Keycloak: once the app's reachability
    // check (cached for seconds) has noticed, it is a readable 503 page,
    // not a redirect into nothing, a hang or a 500.
    let mut login = None;
    for _ in 0..50 {
        let response = crate::stack::browser()
            .get(stack.app.url("/auth/login"))
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            login = Some(response);
            break;
        }
        assert!(response.status().is_redirection(), "{}", response.status());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let page = login
        .expect("sign-in answers 503 while Keycloak is down")
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign-in is unavailable"), "{page}");

    let keycloak = tokio::task::spawn_blocking(move || {
        keycloak.launch().expect("Keycloak starts again");
        keycloak
    })
    .await
    .unwrap();
    let fresh = stack.password_token("bob", "bob").await;
    assert_eq!(
        me(fresh).await,
        200,
        "new tokens are accepted after the restart"
    );
    let again = stack.browser_login("bob", "bob").await;
    assert_eq!(stack.me_status(&again).await, 200);
    drop(stack);
    drop(keycloak);
}
