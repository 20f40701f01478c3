//! voxgate's settings for a local stack: the stand-ins' realm and dev-only
//! client secrets, and Polly reached at a local endpoint with test
//! credentials. Callers add what is theirs (bind address, limits, log
//! level) on top.

use std::collections::BTreeMap;

/// The web client's secret in the project realm (dev-only).
pub const WEB_SECRET: &str = "dev-only-voxgate-web-secret";
/// The admin service account's secret in the project realm (dev-only).
pub const ADMIN_SECRET: &str = "dev-only-voxgate-admin-secret";
/// The region and credentials the Polly stand-in is addressed with.
pub const POLLY_REGION: &str = "us-east-1";
pub const POLLY_KEY_ID: &str = "AKIDVOXGATETEST";
pub const POLLY_SECRET: &str = "voxgate-test-secret";

/// Where the parts of a local stack are.
pub struct Stack<'a> {
    pub database_url: &'a str,
    /// The origin browsers use: voxgate itself, or nginx in front of it.
    pub public_url: &'a str,
    /// The realm's issuer, as tokens name it.
    pub issuer: &'a str,
    /// The Polly stand-in's endpoint.
    pub polly_url: &'a str,
}

/// Settings for `voxgate serve` in `stack`, speaking through Polly.
pub fn voxgate(stack: &Stack<'_>) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("DATABASE_URL", stack.database_url.to_string()),
        ("VOXGATE_PUBLIC_URL", stack.public_url.to_string()),
        // nginx, when there is one, runs on the same machine.
        ("VOXGATE_TRUSTED_PROXIES", "127.0.0.1".to_string()),
        ("VOXGATE_OIDC_ISSUER", stack.issuer.to_string()),
        ("VOXGATE_OIDC_CLIENT_SECRET", WEB_SECRET.to_string()),
        (
            "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET",
            ADMIN_SECRET.to_string(),
        ),
        ("VOXGATE_TTS_ENGINE", "polly".to_string()),
        ("AWS_ENDPOINT_URL_POLLY", stack.polly_url.to_string()),
        ("AWS_REGION", POLLY_REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", POLLY_KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", POLLY_SECRET.to_string()),
        ("VOXGATE_LOG", "warn".to_string()),
    ])
}
