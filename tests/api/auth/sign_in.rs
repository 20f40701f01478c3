//! The browser sign-in flow up to its callback: Keycloak's own login form,
//! and the callback's defences (state, PKCE, one use, one browser) and
//! where it may send the browser afterwards.

use crate::helpers::Caller;
use crate::stack::{browser, form_action, location, spawn_stack};

use super::helpers::open_in;

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
    let html = open_in(&client, auth_url.as_str())
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
    let response = open_in(&client, url.as_str()).await;
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
    assert_eq!(open_in(&client, &callback).await.status(), 303);
    let again = browser().get(&callback).send().await.unwrap();
    assert_eq!(again.status(), 400);
    let replay_same_browser = open_in(&client, &callback).await;
    assert_eq!(replay_same_browser.status(), 400);
}

#[tokio::test]
async fn a_callback_from_another_browser_is_refused() {
    let stack = spawn_stack().await;
    let victim = browser();
    let callback = stack.login_until_callback(&victim, "bob", "bob", "/").await;
    let attacker = browser();
    let response = open_in(&attacker, &callback).await;
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
    let response = open_in(&client, &callback).await;
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
