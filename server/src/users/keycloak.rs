//! Keycloak's admin API, through the `keycloak` crate, authenticated as a
//! service-account client (never an admin password).
//!
//! The crate asks its token supplier for a token on every call; ours caches
//! the service-account token until shortly before it expires, with one
//! refresh in flight. Keycloak's answers are mapped to what they mean for
//! us ([`KcError`]), and idempotent calls are retried on transient errors.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keycloak::types::{
    CredentialRepresentation, RoleRepresentation, UserRepresentation, UserSessionRepresentation,
};
use keycloak::{KeycloakAdmin, KeycloakError, KeycloakTokenSupplier};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::KeycloakAdminConfig;

/// A change to a user's profile; `None` leaves a field as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Profile<'a> {
    pub enabled: Option<bool>,
    pub first: Option<&'a str>,
    pub last: Option<&'a str>,
    pub email: Option<&'a str>,
}

impl Profile<'_> {
    pub fn is_empty(&self) -> bool {
        self.enabled.is_none()
            && self.first.is_none()
            && self.last.is_none()
            && self.email.is_none()
    }
}

/// What a failed Keycloak call means.
#[derive(Debug, thiserror::Error)]
pub enum KcError {
    /// 409: a user with this username or email exists.
    #[error("{message}")]
    Conflict {
        field: &'static str,
        message: String,
    },
    /// 400: Keycloak refused the input.
    #[error("Keycloak refused the request: {0}")]
    Rejected(String),
    /// 404.
    #[error("not found in Keycloak")]
    NotFound,
    /// 401/403: our service account is misconfigured.
    #[error("voxgate's Keycloak service account lacks permission for this call (HTTP {0})")]
    Permission(u16),
    /// Network trouble, timeouts or 5xx.
    /// The inner text (URLs, upstream bodies) is for logs only.
    #[error("Keycloak is unavailable or failed")]
    Unavailable(String),
}

impl KcError {
    fn from_keycloak(e: KeycloakError) -> KcError {
        let mapped = Self::map(e);
        if let KcError::Unavailable(detail) = &mapped {
            tracing::warn!(%detail, "Keycloak admin call failed");
        }
        mapped
    }

    fn map(e: KeycloakError) -> KcError {
        match e {
            KeycloakError::ReqwestFailure(e) => KcError::Unavailable(crate::error::chain(&e)),
            KeycloakError::HttpFailure { status, body, text } => {
                let message = body
                    .as_ref()
                    .and_then(|b| {
                        b.error_message
                            .clone()
                            .or_else(|| b.error_description.clone())
                            .or_else(|| b.error.clone())
                    })
                    .unwrap_or_else(|| text.chars().take(200).collect());
                match status {
                    409 => {
                        let lower = message.to_lowercase();
                        let field = if lower.contains("email") && !lower.contains("username") {
                            "email"
                        } else {
                            "username"
                        };
                        KcError::Conflict { field, message }
                    }
                    400 => KcError::Rejected(message),
                    404 => KcError::NotFound,
                    401 | 403 => KcError::Permission(status),
                    _ => KcError::Unavailable(format!("HTTP {status}: {message}")),
                }
            }
        }
    }

    fn transient(&self) -> bool {
        matches!(self, KcError::Unavailable(_))
    }
}

/// Service-account token, cached until 30 s before expiry.
pub struct CachedToken {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    secret: Option<SecretString>,
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

impl CachedToken {
    async fn token(&self) -> Result<String, KeycloakError> {
        // Holding the lock across the fetch makes concurrent callers share
        // one token request.
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && expires.saturating_duration_since(Instant::now()) > Duration::from_secs(30)
        {
            return Ok(token.clone());
        }
        let secret = self
            .secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .unwrap_or_default();
        let response = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", secret.as_str()),
            ])
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(KeycloakError::HttpFailure {
                status: if status.as_u16() == 400 || status.as_u16() == 401 {
                    401
                } else {
                    status.as_u16()
                },
                body: serde_json::from_str(&text).ok(),
                text,
            });
        }
        let body: TokenResponse = response.json().await?;
        *cached = Some((
            body.access_token.clone(),
            Instant::now() + Duration::from_secs(body.expires_in),
        ));
        Ok(body.access_token)
    }
}

#[async_trait::async_trait]
impl KeycloakTokenSupplier for CachedToken {
    async fn get(&self, _url: &str) -> Result<String, KeycloakError> {
        self.token().await
    }
}

/// The subset of the admin API provisioning uses.
#[derive(Clone)]
pub struct KeycloakUsers {
    admin: Arc<KeycloakAdmin<CachedToken>>,
    realm: String,
    base_url: String,
}

/// A Keycloak user as provisioning needs it.
#[derive(Debug, Clone)]
pub struct KcUser {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub enabled: bool,
    pub created_ms: Option<i64>,
}

impl From<UserRepresentation> for KcUser {
    fn from(u: UserRepresentation) -> Self {
        KcUser {
            id: u.id.unwrap_or_default(),
            username: u.username.unwrap_or_default(),
            email: u.email,
            enabled: u.enabled.unwrap_or(false),
            created_ms: u.created_timestamp,
        }
    }
}

const ATTEMPTS: u32 = 3;

async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, KcError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, KeycloakError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match call().await.map_err(KcError::from_keycloak) {
            Err(e) if e.transient() && attempt < ATTEMPTS => {
                tracing::warn!(call = what, attempt, error = %e, "transient Keycloak failure; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl KeycloakUsers {
    pub fn new(config: &KeycloakAdminConfig, http: reqwest::Client) -> KeycloakUsers {
        let base_url = config.base_url.as_str().trim_end_matches('/').to_string();
        let token = CachedToken {
            http: http.clone(),
            token_url: format!(
                "{base_url}/realms/{}/protocol/openid-connect/token",
                config.realm
            ),
            client_id: config.client_id.clone(),
            secret: config.client_secret.clone(),
            cached: Mutex::new(None),
        };
        KeycloakUsers {
            admin: Arc::new(KeycloakAdmin::new(&base_url, token, http)),
            realm: config.realm.clone(),
            base_url,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Creates a user; not retried, since a lost answer cannot tell whether
    /// it happened (the recovery worker sorts that out).
    pub async fn create(
        &self,
        username: &str,
        email: &str,
        first: &str,
        last: &str,
        email_verified: bool,
    ) -> Result<String, KcError> {
        let body = UserRepresentation {
            username: Some(username.to_string()),
            email: Some(email.to_string()),
            first_name: Some(first.to_string()),
            last_name: Some(last.to_string()),
            enabled: Some(true),
            email_verified: Some(email_verified),
            ..Default::default()
        };
        let response = self
            .admin
            .realm_users_post(&self.realm, body)
            .await
            .map_err(KcError::from_keycloak)?;
        response.to_id().map(str::to_string).ok_or_else(|| {
            KcError::Unavailable("Keycloak created the user but sent no Location".into())
        })
    }

    pub async fn find_exact(
        &self,
        username: Option<&str>,
        email: Option<&str>,
    ) -> Result<Vec<KcUser>, KcError> {
        let realm = self.admin.realm(&self.realm);
        retry("search users", || {
            let mut q = realm.users_get().exact(true).brief_representation(true);
            if let Some(u) = username {
                q = q.username(u.to_string());
            }
            if let Some(e) = email {
                q = q.email(e.to_string());
            }
            q.into_future()
        })
        .await
        .map(|users| users.into_iter().map(KcUser::from).collect())
    }

    /// Every user, paging through Keycloak's 100-per-page lists.
    pub async fn list_all(&self) -> Result<Vec<KcUser>, KcError> {
        let mut out = Vec::new();
        let mut first = 0;
        let realm = self.admin.realm(&self.realm);
        loop {
            let page: Vec<UserRepresentation> = retry("list users", || {
                realm
                    .users_get()
                    .brief_representation(true)
                    .first(first)
                    .max(100)
                    .into_future()
            })
            .await?;
            let n = page.len();
            out.extend(page.into_iter().map(KcUser::from));
            if n < 100 {
                return Ok(out);
            }
            first += 100;
        }
    }

    pub async fn get(&self, id: &str) -> Result<KcUser, KcError> {
        retry("get user", || {
            self.admin
                .realm_users_with_user_id_get(&self.realm, id, None)
        })
        .await
        .map(KcUser::from)
    }

    pub async fn set_password(
        &self,
        id: &str,
        value: &str,
        temporary: bool,
    ) -> Result<(), KcError> {
        retry("reset password", || {
            let body = CredentialRepresentation {
                type_: Some("password".into()),
                value: Some(value.to_string()),
                temporary: Some(temporary),
                ..Default::default()
            };
            self.admin
                .realm_users_with_user_id_reset_password_put(&self.realm, id, body)
        })
        .await
        .map(|_| ())
    }

    /// Emails the user a link to set a password and verify their email,
    /// back to `redirect_uri` afterwards.
    pub async fn send_invite(
        &self,
        id: &str,
        client_id: &str,
        redirect_uri: &str,
    ) -> Result<(), KcError> {
        self.execute_actions_email(
            id,
            client_id,
            redirect_uri,
            &["UPDATE_PASSWORD", "VERIFY_EMAIL"],
        )
        .await
    }

    /// Emails the user a link to choose a new password.
    pub async fn send_password_reset(
        &self,
        id: &str,
        client_id: &str,
        redirect_uri: &str,
    ) -> Result<(), KcError> {
        self.execute_actions_email(id, client_id, redirect_uri, &["UPDATE_PASSWORD"])
            .await
    }

    async fn execute_actions_email(
        &self,
        id: &str,
        client_id: &str,
        redirect_uri: &str,
        actions: &[&str],
    ) -> Result<(), KcError> {
        retry("execute actions email", || {
            self.admin
                .realm_users_with_user_id_execute_actions_email_put(
                    &self.realm,
                    id,
                    Some(client_id.to_string()),
                    None,
                    Some(redirect_uri.to_string()),
                    actions.iter().map(|a| a.to_string()).collect(),
                )
        })
        .await
        .map(|_| ())
    }

    /// The user's sessions, as Keycloak's console lists them.
    pub async fn sessions(&self, id: &str) -> Result<Vec<UserSessionRepresentation>, KcError> {
        retry("user sessions", || {
            self.admin
                .realm_users_with_user_id_sessions_get(&self.realm, id)
        })
        .await
    }

    /// The user's brute-force detection record (`numFailures`, `disabled`
    /// while locked, `lastFailure` in ms, `lastIPFailure`).
    pub async fn login_failures(
        &self,
        id: &str,
    ) -> Result<std::collections::HashMap<String, serde_json::Value>, KcError> {
        retry("login failures", || {
            self.admin
                .realm_attack_detection_brute_force_users_with_user_id_get(&self.realm, id)
        })
        .await
        .map(|m| m.into_iter().collect())
    }

    /// Lifts a brute-force lock and forgets the failures.
    pub async fn clear_login_failures(&self, id: &str) -> Result<(), KcError> {
        retry("clear login failures", || {
            self.admin
                .realm_attack_detection_brute_force_users_with_user_id_delete(&self.realm, id)
        })
        .await
        .map(|_| ())
    }

    /// Realm roles by name (`{id, name}` is what role mapping needs).
    pub async fn realm_roles(&self) -> Result<Vec<RoleRepresentation>, KcError> {
        retry("list realm roles", || {
            self.admin
                .realm_roles_get(&self.realm, Some(true), None, None, None)
        })
        .await
        .map(|roles| roles.into_iter().collect())
    }

    pub async fn user_realm_roles(&self, id: &str) -> Result<Vec<String>, KcError> {
        retry("get role mappings", || {
            self.admin
                .realm_users_with_user_id_role_mappings_realm_get(&self.realm, id)
        })
        .await
        .map(|roles| roles.into_iter().filter_map(|r| r.name).collect())
    }

    /// The realm roles the user holds in effect — direct, through groups and
    /// through composite roles: what their tokens carry.
    pub async fn user_effective_realm_roles(&self, id: &str) -> Result<Vec<String>, KcError> {
        retry("get effective role mappings", || {
            self.admin
                .realm_users_with_user_id_role_mappings_realm_composite_get(
                    &self.realm,
                    id,
                    Some(true),
                )
        })
        .await
        .map(|roles| roles.into_iter().filter_map(|r| r.name).collect())
    }

    pub async fn add_realm_roles(
        &self,
        id: &str,
        roles: &[RoleRepresentation],
    ) -> Result<(), KcError> {
        if roles.is_empty() {
            return Ok(());
        }
        retry("add role mappings", || {
            self.admin
                .realm_users_with_user_id_role_mappings_realm_post(&self.realm, id, roles.to_vec())
        })
        .await
        .map(|_| ())
    }

    pub async fn remove_realm_roles(
        &self,
        id: &str,
        roles: &[RoleRepresentation],
    ) -> Result<(), KcError> {
        if roles.is_empty() {
            return Ok(());
        }
        retry("remove role mappings", || {
            self.admin
                .realm_users_with_user_id_role_mappings_realm_delete(
                    &self.realm,
                    id,
                    roles.to_vec(),
                )
        })
        .await
        .map(|_| ())
    }

    /// Partial update: only `Some` fields are sent. A new email address
    /// is not verified yet.
    pub async fn update(&self, id: &str, change: &Profile<'_>) -> Result<(), KcError> {
        retry("update user", || {
            let body = UserRepresentation {
                enabled: change.enabled,
                first_name: change.first.map(str::to_string),
                last_name: change.last.map(str::to_string),
                email: change.email.map(str::to_string),
                email_verified: change.email.map(|_| false),
                ..Default::default()
            };
            self.admin
                .realm_users_with_user_id_put(&self.realm, id, body)
        })
        .await
        .map(|_| ())
    }

    pub async fn logout(&self, id: &str) -> Result<(), KcError> {
        retry("logout user", || {
            self.admin
                .realm_users_with_user_id_logout_post(&self.realm, id)
        })
        .await
        .map(|_| ())
    }

    /// Deletes a user; a user already gone counts as deleted.
    pub async fn delete(&self, id: &str) -> Result<(), KcError> {
        match retry("delete user", || {
            self.admin.realm_users_with_user_id_delete(&self.realm, id)
        })
        .await
        {
            Ok(_) | Err(KcError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
