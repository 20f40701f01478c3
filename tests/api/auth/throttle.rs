//! Sign-in starts are bounded, per address and per instance, because each
//! one stores a login flow for anybody who asks: a flood is shed at its
//! own clients, and a forwarded address counts only from a trusted proxy.

use crate::helpers::TestSettings;
use crate::stack::spawn_stack_with;

use super::helpers::{client_at, stack_with};

#[tokio::test]
async fn anonymous_sign_in_starts_are_bounded_per_address_and_store_nothing_past_the_limit() {
    let stack = stack_with("VOXGATE_SIGN_INS_PER_ADDRESS", "5").await;
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
    let spoofed = client_at("127.0.0.1", Some("203.0.113.9"));
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
    let elsewhere = client_at("127.0.0.2", None);
    assert_eq!(start(elsewhere).await.status(), 303);
    // An overlong return path is not stored: it falls back to the home page.
    let stored: Vec<String> = sqlx::query_scalar("SELECT return_to FROM login_flows")
        .fetch_all(&stack.app.db)
        .await
        .unwrap();
    assert!(stored.iter().all(|r| r == "/"), "{stored:?}");
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
        let client = client_at(local, forwarded);
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
