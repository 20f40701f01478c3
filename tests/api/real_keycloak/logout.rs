//! Browser sessions signed in through the real login page, and ended from
//! Keycloak's side by its own back-channel logout call.

use std::time::Duration;

use super::spawn_real_stack;

#[tokio::test]
async fn the_real_login_page_signs_a_browser_in_with_code_and_pkce() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let client = stack.browser_login("bob", "bob").await;
    assert_eq!(stack.me_status(&client).await, 200);
    let bob = stack.admin.user_by_username("bob").await.expect("bob");
    assert_eq!(
        stack.admin.user_sessions(bob["id"].as_str().unwrap()).await,
        1,
        "Keycloak holds the SSO session"
    );
}

#[tokio::test]
async fn ending_the_users_keycloak_sessions_ends_the_voxgate_session_within_seconds() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let client = stack.browser_login("bob", "bob").await;
    assert_eq!(stack.me_status(&client).await, 200);
    let bob = stack.admin.user_by_username("bob").await.expect("bob");
    let bob_id = bob["id"].as_str().unwrap();

    // Keycloak itself sends the logout token to the client's back-channel
    // URL (the realm file points it at this test's app).
    let response = stack
        .admin
        .call(
            reqwest::Method::POST,
            &format!("/users/{bob_id}/logout"),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let mut ended = false;
    for _ in 0..100 {
        if stack.me_status(&client).await == 401 {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended, "the voxgate session ended within 5 s");
    assert_eq!(stack.admin.user_sessions(bob_id).await, 0);
}
