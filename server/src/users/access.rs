//! A user's access as an admin sees it day to day: their sessions and
//! "sign out everywhere", the brute-force lock and unlocking it, and the
//! password-reset email. Keycloak holds all of it; voxgate's own sessions
//! end with Keycloak's.

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{Action, AuditEvent};
use super::keycloak::KcError;
use super::model::{LockView, SessionView};
use super::service::{Actor, Users, kc_error};
use crate::error::ApiError;

/// Keycloak's milliseconds since the epoch; 0 and absent mean never.
fn from_millis(ms: Option<i64>) -> Option<OffsetDateTime> {
    ms.filter(|ms| *ms > 0)
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
}

impl Users {
    /// The user's sessions in Keycloak, most recently used first.
    pub async fn sessions(&self, id: Uuid) -> Result<Vec<SessionView>, ApiError> {
        let (_, keycloak_id) = self.live_user(id).await?;
        let sessions = self
            .kc
            .sessions(&keycloak_id)
            .await
            .map_err(|e| kc_error("Listing the user's sessions failed", e))?;
        let mut views: Vec<SessionView> = sessions
            .into_iter()
            .map(|s| {
                let mut clients: Vec<String> = s
                    .clients
                    .map(|c| c.into_values().map(|v| v.to_string()).collect())
                    .unwrap_or_default();
                clients.sort();
                SessionView {
                    id: s.id.map(|i| i.to_string()).unwrap_or_default(),
                    ip_address: s.ip_address.map(|i| i.to_string()),
                    // Keycloak gives these in milliseconds.
                    started_at: from_millis(s.start),
                    last_access_at: from_millis(s.last_access),
                    clients,
                }
            })
            .collect();
        views.sort_by_key(|s| std::cmp::Reverse(s.last_access_at));
        Ok(views)
    }

    /// Ends every session of the user: Keycloak's (so no refresh token
    /// works any more) and voxgate's own.
    pub async fn sign_out_everywhere(&self, actor: &Actor, id: Uuid) -> Result<(), ApiError> {
        let (user, keycloak_id) = self.live_user(id).await?;
        let target = Some(user.username.as_str());
        if let Err(e) = self.kc.logout(&keycloak_id).await {
            let error = kc_error("Signing the user out in Keycloak failed", e);
            let details = json!({"step": "keycloak", "error": error.to_string()});
            self.audit(
                actor,
                AuditEvent::failure(Action::SignOut, details).on(Some(id), target),
            )
            .await;
            return Err(error);
        }
        let ended = crate::identity::end_sessions(&self.db, id).await?;
        self.principals.evict_user(id);
        self.audit(
            actor,
            AuditEvent::success(Action::SignOut, json!({"voxgateSessions": ended}))
                .on(Some(id), target),
        )
        .await;
        Ok(())
    }

    /// Whether Keycloak has locked the user out after failed sign-ins.
    pub async fn lock(&self, id: Uuid) -> Result<LockView, ApiError> {
        let (_, keycloak_id) = self.live_user(id).await?;
        let record = self
            .kc
            .login_failures(&keycloak_id)
            .await
            .map_err(|e| kc_error("Reading the user's sign-in failures failed", e))?;
        let int = |key: &str| record.get(key).and_then(Value::as_i64);
        Ok(LockView {
            locked: record
                .get("disabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            failures: int("numFailures").unwrap_or(0),
            last_failure_at: from_millis(int("lastFailure")),
            // Keycloak says "n/a" when there was none.
            last_failure_ip: record
                .get("lastIPFailure")
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty() && *ip != "n/a")
                .map(str::to_string),
        })
    }

    /// Lifts a brute-force lock (and forgets the failures).
    pub async fn unlock(&self, actor: &Actor, id: Uuid) -> Result<(), ApiError> {
        let (user, keycloak_id) = self.live_user(id).await?;
        let target = Some(user.username.as_str());
        let result = self.kc.clear_login_failures(&keycloak_id).await;
        self.audited(
            actor,
            Action::Unlock,
            id,
            target,
            result,
            "Unlocking the user failed",
        )
        .await
    }

    /// Has Keycloak email the user a link to choose a new password.
    pub async fn send_password_reset(&self, actor: &Actor, id: Uuid) -> Result<(), ApiError> {
        let (user, keycloak_id) = self.live_user(id).await?;
        if user.email.is_none() {
            return Err(ApiError::conflict(
                "email",
                "This user has no email address to send a reset link to.",
            ));
        }
        if !user.enabled {
            return Err(ApiError::conflict(
                "enabled",
                "This user is disabled; enable them before sending a reset link.",
            ));
        }
        let target = Some(user.username.as_str());
        let redirect = self.config.public_url.as_str().to_string();
        let result = self
            .kc
            .send_password_reset(&keycloak_id, &self.config.oidc.client_id, &redirect)
            .await;
        // Keycloak answers 500 when it cannot send mail (no SMTP server, or
        // one that refuses): say so rather than "try again".
        match result {
            Err(KcError::Unavailable(_)) => {
                let error = ApiError::BadGateway {
                    detail: "Keycloak could not send the password-reset email: it is unreachable, \
                             or its realm's email (SMTP) settings do not work. Nothing was sent."
                        .into(),
                    source: None,
                };
                let details = json!({"step": "keycloak", "error": error.to_string()});
                self.audit(
                    actor,
                    AuditEvent::failure(Action::PasswordReset, details).on(Some(id), target),
                )
                .await;
                Err(error)
            }
            other => {
                self.audited(
                    actor,
                    Action::PasswordReset,
                    id,
                    target,
                    other,
                    "Sending the password-reset email failed",
                )
                .await
            }
        }
    }

    /// Audits a Keycloak call's outcome and maps its failure.
    async fn audited(
        &self,
        actor: &Actor,
        action: Action,
        id: Uuid,
        target: Option<&str>,
        result: Result<(), KcError>,
        failing: &str,
    ) -> Result<(), ApiError> {
        match result {
            Ok(()) => {
                self.audit(
                    actor,
                    AuditEvent::success(action, json!({})).on(Some(id), target),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                let error = kc_error(failing, e);
                let details = json!({"step": "keycloak", "error": error.to_string()});
                self.audit(
                    actor,
                    AuditEvent::failure(action, details).on(Some(id), target),
                )
                .await;
                Err(error)
            }
        }
    }
}
