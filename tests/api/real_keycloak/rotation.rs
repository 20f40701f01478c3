//! Signing-key rotation done the way an operator does it in Keycloak: a new
//! RSA key provider with a higher priority, then the old one disabled and
//! removed.

use serde_json::{Value, json};

use super::{RealStack, spawn_real_stack};

async fn rsa_providers(stack: &RealStack) -> Vec<Value> {
    let components = stack
        .admin
        .get("/components?type=org.keycloak.keys.KeyProvider")
        .await;
    components
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["providerId"] == "rsa-generated")
        .cloned()
        .collect()
}

async fn key_fetches(stack: &RealStack) -> u64 {
    stack.app.state.auth.provider.status().await.fetches
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_without_a_restart_with_one_key_fetch() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let before = stack.password_token("bob", "bob").await;
    let old_kid = kid(&before);
    assert_eq!(stack.app.bearer_status(&before).await, 200);
    let old_providers = rsa_providers(&stack).await;
    assert_eq!(old_providers.len(), 1, "{old_providers:?}");
    let realm_id = stack.admin.get("").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let r = stack
        .admin
        .call(
            reqwest::Method::POST,
            "/components",
            Some(&json!({
                "name": "rsa-rotated",
                "providerId": "rsa-generated",
                "providerType": "org.keycloak.keys.KeyProvider",
                "parentId": realm_id,
                "config": {"priority": ["200"], "keySize": ["2048"], "active": ["true"], "enabled": ["true"]},
            })),
        )
        .await;
    assert_eq!(r.status(), 201);

    let fetches = key_fetches(&stack).await;
    let after = stack.password_token("bob", "bob").await;
    assert_ne!(kid(&after), old_kid, "Keycloak signs with the new key");
    for _ in 0..5 {
        assert_eq!(stack.app.bearer_status(&after).await, 200);
    }
    assert_eq!(
        key_fetches(&stack).await - fetches,
        1,
        "the unknown kid cost exactly one key fetch"
    );
    // Tokens signed by the old key stay valid while it is still published.
    assert_eq!(stack.app.bearer_status(&before).await, 200);

    // Disable, then remove, the old provider.
    let mut old = old_providers[0].clone();
    let old_id = old["id"].as_str().unwrap().to_string();
    old["config"]["active"] = json!(["false"]);
    let r = stack
        .admin
        .call(
            reqwest::Method::PUT,
            &format!("/components/{old_id}"),
            Some(&old),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = stack
        .admin
        .call(
            reqwest::Method::DELETE,
            &format!("/components/{old_id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);

    let latest = stack.password_token("bob", "bob").await;
    assert_eq!(kid(&latest), kid(&after));
    assert_eq!(
        stack.app.bearer_status(&latest).await,
        200,
        "new tokens keep working after the old key is gone"
    );
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_string()
}
