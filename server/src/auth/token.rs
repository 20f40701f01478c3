//! Validation of Keycloak-signed JWTs: access tokens (bearer), ID tokens
//! (browser login) and logout tokens (back-channel logout).
//!
//! Strict by design: the algorithm must be the one of the key named by
//! `kid` (asymmetric only — `none` and HMAC can never match), `iss` must be
//! one of the configured issuers exactly, `exp` and `iat` must be present
//! and numeric, `nbf` is honoured, unknown `crit` and key-carrying headers
//! (`jku`, `x5u`, `jwk`) are refused rather than ignored. Validated access
//! tokens are cached by hash until they expire so the hot path skips the
//! RSA verification.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::provider::Provider;

/// Largest token accepted; bigger ones are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const CACHE_CAPACITY: usize = 50_000;

#[derive(Debug, Clone, Deserialize, Default)]
pub struct RoleSet {
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The claims voxgate uses. Unknown claims are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Required for access and ID tokens (checked); a logout token may
    /// name only the session.
    #[serde(default)]
    pub sub: String,
    /// Required in every kind of token (checked before decoding).
    #[serde(default)]
    pub exp: i64,
    pub iat: i64,
    /// Required in logout tokens, whose replay is refused by it.
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub realm_access: Option<RoleSet>,
    #[serde(default)]
    pub resource_access: HashMap<String, RoleSet>,
    #[serde(default)]
    pub events: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Claims {
    /// The Keycloak roles a session keeps: realm roles as they are, roles
    /// of our own client as `client:<role>`.
    pub fn session_roles(&self, client_id: &str) -> Vec<String> {
        let mut roles = self.realm_access.clone().unwrap_or_default().roles;
        if let Some(client) = self.resource_access.get(client_id) {
            roles.extend(client.roles.iter().map(|r| format!("client:{r}")));
        }
        roles
    }
}

/// Why a token was refused. The text goes into `error_description`, so it
/// says what is wrong without echoing token content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token header is not acceptable: {0}")]
    Header(&'static str),
    #[error("the token is signed with a key this server does not know")]
    UnknownKey,
    #[error("the token algorithm does not match its key")]
    WrongAlgorithm,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by an issuer this server does not trust")]
    WrongIssuer,
    #[error("the token is not meant for this server (audience)")]
    WrongAudience,
    #[error("the token was issued to the client `{0}`, which may not call this API")]
    ClientNotAllowed(String),
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
    #[error("the claim `{0}` must be a number")]
    NonNumericClaim(&'static str),
    #[error("this is not an access token (typ is `{0}`)")]
    WrongType(String),
    #[error("the token nonce does not match the sign-in request")]
    WrongNonce,
    #[error("the identity provider's keys are not available yet")]
    NoKeys,
}

/// What kind of token is expected.
pub enum Expect<'a> {
    /// A bearer access token for `audience`.
    Access,
    /// An ID token for our client, answering the sign-in with `nonce`.
    Id { nonce: &'a str },
    /// A back-channel logout token for our client.
    Logout,
}

pub struct TokenValidator {
    provider: Provider,
    issuers: Vec<String>,
    audience: String,
    client_id: String,
    /// Clients (`azp`) whose access tokens are accepted; empty: any.
    allowed_clients: Vec<String>,
    leeway: u64,
    cache: RwLock<HashMap<[u8; 32], Arc<Claims>>>,
}

impl TokenValidator {
    /// Seconds a token is still accepted after its `exp`.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    pub fn new(
        provider: Provider,
        issuers: Vec<String>,
        audience: String,
        client_id: String,
        leeway: u64,
    ) -> Self {
        TokenValidator {
            provider,
            issuers,
            audience,
            client_id,
            allowed_clients: Vec::new(),
            leeway,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Accepts access tokens only from these clients (and our own).
    pub fn allowing_clients(mut self, clients: Vec<String>) -> Self {
        self.allowed_clients = clients;
        self
    }

    /// Validates a bearer access token, from cache when possible.
    pub async fn access_token(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        self.access_token_keyed(token)
            .await
            .map(|(claims, _)| claims)
    }

    /// Like [`Self::access_token`], with the token's SHA-256, which stands
    /// for the token in caches keyed by it (a principal per token, say).
    pub async fn access_token_keyed(
        &self,
        token: &str,
    ) -> Result<(Arc<Claims>, TokenKey), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now();
        if let Ok(cache) = self.cache.read()
            && let Some(claims) = cache.get(&hash)
            && claims.exp + self.leeway as i64 > now
        {
            validations("cached").increment(1);
            return Ok((claims.clone(), hash));
        }
        let result = self.validate(token, Expect::Access).await;
        validations(if result.is_ok() { "valid" } else { "invalid" }).increment(1);
        let claims = Arc::new(result?);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, c| c.exp + self.leeway as i64 > now);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(hash, claims.clone());
        }
        Ok((claims, hash))
    }

    /// Full validation, no cache.
    pub async fn validate(&self, token: &str, expect: Expect<'_>) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header: serde_json::Map<String, serde_json::Value> = decode_json(header)?;
        let alg = header
            .get("alg")
            .and_then(|v| v.as_str())
            .ok_or(TokenError::Header("missing alg"))?;
        for forbidden in ["crit", "jku", "x5u", "jwk"] {
            if header.contains_key(forbidden) {
                return Err(TokenError::Header(match forbidden {
                    "crit" => "critical header parameters are not supported",
                    "jku" => "jku is not accepted",
                    "x5u" => "x5u is not accepted",
                    _ => "embedded jwk is not accepted",
                }));
            }
        }
        let kid = header
            .get("kid")
            .and_then(|v| v.as_str())
            .ok_or(TokenError::Header("missing kid"))?;
        if kid.is_empty() || kid.len() > 256 {
            return Err(TokenError::Header("invalid kid"));
        }

        // Time claims must be JSON numbers: a string `exp` must never be read
        // as "no expiry".
        let raw: serde_json::Map<String, serde_json::Value> = decode_json(payload)?;
        for claim in ["exp", "iat"] {
            match raw.get(claim) {
                None => return Err(TokenError::MissingClaim(claim.to_string())),
                Some(v) if !v.is_number() => return Err(TokenError::NonNumericClaim(claim)),
                _ => {}
            }
        }
        for claim in ["exp", "nbf"] {
            if raw.get(claim).is_some_and(|v| !v.is_number()) {
                return Err(TokenError::NonNumericClaim(claim));
            }
        }
        if !self.provider.status().await.ready {
            return Err(TokenError::NoKeys);
        }

        let key = self.provider.key(kid).await.ok_or(TokenError::UnknownKey)?;
        if alg != algorithm_name(key.algorithm) {
            return Err(TokenError::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&self.issuers);
        match expect {
            Expect::Access => {
                validation.set_audience(&[&self.audience]);
                validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
            }
            Expect::Id { .. } => {
                validation.set_audience(&[&self.client_id]);
                validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
            }
            Expect::Logout => {
                validation.set_audience(&[&self.client_id]);
                validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
            }
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(map_jwt_error)?;
        let claims = data.claims;
        if claims.iat > now() + self.leeway as i64 {
            return Err(TokenError::NotYetValid);
        }
        if claims.sub.is_empty() && !matches!(expect, Expect::Logout) {
            return Err(TokenError::MissingClaim("sub".into()));
        }
        let typ = claims.typ.clone().unwrap_or_default();
        match expect {
            Expect::Access if typ != "Bearer" => return Err(TokenError::WrongType(typ)),
            Expect::Access if !self.allowed_clients.is_empty() => {
                let azp = claims.azp.clone().unwrap_or_default();
                if azp != self.client_id && !self.allowed_clients.contains(&azp) {
                    return Err(TokenError::ClientNotAllowed(azp));
                }
            }
            Expect::Id { nonce } => {
                if typ != "ID" {
                    return Err(TokenError::WrongType(typ));
                }
                if claims.nonce.as_deref() != Some(nonce) {
                    return Err(TokenError::WrongNonce);
                }
            }
            Expect::Logout => {
                if typ != "Logout" {
                    return Err(TokenError::WrongType(typ));
                }
                // The member must be there and be a JSON object (§2.4).
                let has_event = claims.events.as_ref().is_some_and(|e| {
                    e.get("http://schemas.openid.net/event/backchannel-logout")
                        .is_some_and(serde_json::Value::is_object)
                });
                if !has_event {
                    return Err(TokenError::MissingClaim("events".into()));
                }
                // Remembered until expiry by the caller, so a replay is refused.
                if claims.jti.as_deref().is_none_or(str::is_empty) {
                    return Err(TokenError::MissingClaim("jti".into()));
                }
                if raw.contains_key("nonce") {
                    return Err(TokenError::Malformed(
                        "logout tokens must not carry a nonce",
                    ));
                }
                if claims.sid.is_none() && claims.sub.is_empty() {
                    return Err(TokenError::MissingClaim("sid".into()));
                }
            }
            _ => {}
        }
        Ok(claims)
    }
}

fn decode_json(part: &str) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed("a part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("a part is not a JSON object"))
}

fn algorithm_name(a: jsonwebtoken::Algorithm) -> &'static str {
    use jsonwebtoken::Algorithm::*;
    match a {
        RS256 => "RS256",
        RS384 => "RS384",
        RS512 => "RS512",
        PS256 => "PS256",
        PS384 => "PS384",
        PS512 => "PS512",
        _ => "unsupported",
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
        ErrorKind::Json(_) => TokenError::Malformed("claims have the wrong shape"),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            TokenError::Malformed("a part is not base64url")
        }
        _ => TokenError::BadSignature,
    }
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub use crate::identity::TokenKey;

/// The validation counter for `result`, looked up once: building a metric
/// key per request costs more than the cached validation it counts.
fn validations(result: &'static str) -> &'static metrics::Counter {
    use std::sync::LazyLock;
    static CACHED: LazyLock<metrics::Counter> = LazyLock::new(
        || metrics::counter!("voxgate_token_validations_total", "result" => "cached"),
    );
    static VALID: LazyLock<metrics::Counter> =
        LazyLock::new(|| metrics::counter!("voxgate_token_validations_total", "result" => "valid"));
    static INVALID: LazyLock<metrics::Counter> = LazyLock::new(
        || metrics::counter!("voxgate_token_validations_total", "result" => "invalid"),
    );
    match result {
        "cached" => &CACHED,
        "valid" => &VALID,
        _ => &INVALID,
    }
}
