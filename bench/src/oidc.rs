//! Tokens from the realm's `voxgate-cli` client, as the benchmark and the
//! soak sign their users in (the dev realm's users' passwords are their
//! names).

use anyhow::{Context, ensure};

/// An access token for `user` by the password grant at `issuer`.
pub async fn password_token(
    http: &reqwest::Client,
    issuer: &str,
    user: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!("{issuer}/protocol/openid-connect/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "voxgate-cli"),
            ("username", user),
            ("password", user),
            ("scope", "openid"),
        ])
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "password grant for {user}: HTTP {}",
        response.status()
    );
    let body: serde_json::Value = response.json().await?;
    Ok(body["access_token"]
        .as_str()
        .context("the token answer has no access_token")?
        .to_string())
}
