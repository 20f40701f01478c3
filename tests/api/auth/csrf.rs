//! CSRF: a state change made with the session cookie needs a same-origin
//! request and the session's CSRF token, since the browser attaches the
//! cookie to other sites' requests too.

use crate::stack::spawn_stack;

use super::helpers::post_logout;

#[tokio::test]
async fn cookie_authenticated_state_changes_need_same_origin_and_csrf_token() {
    let stack = spawn_stack().await;
    let (client, csrf) = stack.signed_in("bob").await;
    let origin = stack.app.url("");

    let no_origin = post_logout(&stack, &client, &[], Some(csrf.as_str())).await;
    assert_eq!(no_origin.status(), 403);
    let cross = post_logout(
        &stack,
        &client,
        &[("origin", "http://evil.example")],
        Some(csrf.as_str()),
    )
    .await;
    assert_eq!(cross.status(), 403);
    let no_token = post_logout(&stack, &client, &[("origin", origin.as_str())], None).await;
    assert_eq!(no_token.status(), 403);
    let wrong_token = post_logout(
        &stack,
        &client,
        &[("origin", origin.as_str())],
        Some("nope"),
    )
    .await;
    assert_eq!(wrong_token.status(), 403);
    assert_eq!(stack.me_status(&client).await, 200, "still signed in");
    let null_origin_cross_site = post_logout(
        &stack,
        &client,
        &[("origin", "null"), ("sec-fetch-site", "cross-site")],
        Some(csrf.as_str()),
    )
    .await;
    assert_eq!(null_origin_cross_site.status(), 403);
    let ok = post_logout(
        &stack,
        &client,
        &[
            ("origin", "null"),
            ("sec-fetch-site", "same-origin"),
            ("x-csrf-token", csrf.as_str()),
        ],
        None,
    )
    .await;
    assert_eq!(ok.status(), 303);
    assert_eq!(stack.me_status(&client).await, 401);
}
