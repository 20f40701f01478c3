//! The audit trail of user administration, written as one value per event.

use serde_json::Value;
use uuid::Uuid;

use super::repo::{self, Audit};
use super::service::{Actor, Users};

/// What was done; the stored `action` text.
#[derive(Clone, Copy, Debug)]
pub(super) enum Action {
    Create,
    Update,
    Delete,
    Reconcile,
    SignOut,
    Unlock,
    PasswordReset,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "user.create",
            Action::Update => "user.update",
            Action::Delete => "user.delete",
            Action::Reconcile => "users.reconcile",
            Action::SignOut => "user.sign_out",
            Action::Unlock => "user.unlock",
            Action::PasswordReset => "user.password_reset",
        }
    }
}

/// One audit record, built where the outcome is known.
pub(super) struct AuditEvent<'a> {
    action: Action,
    success: bool,
    target_id: Option<Uuid>,
    target: Option<&'a str>,
    details: Value,
}

impl<'a> AuditEvent<'a> {
    pub fn success(action: Action, details: Value) -> Self {
        AuditEvent {
            action,
            success: true,
            target_id: None,
            target: None,
            details,
        }
    }

    pub fn failure(action: Action, details: Value) -> Self {
        AuditEvent {
            success: false,
            ..AuditEvent::success(action, details)
        }
    }

    /// The user the event is about, by id (once there is a row) and name.
    pub fn on(mut self, id: Option<Uuid>, name: Option<&'a str>) -> Self {
        self.target_id = id;
        self.target = name;
        self
    }
}

impl Users {
    /// Records an event. A failure to write is logged, never returned: the
    /// change it describes has already happened (or been refused).
    pub(super) async fn audit(&self, actor: &Actor, event: AuditEvent<'_>) {
        let action = event.action.as_str();
        let result = repo::insert_audit(
            &self.db,
            Audit {
                actor_id: actor.id,
                actor: &actor.label,
                action,
                target_id: event.target_id,
                target: event.target,
                outcome: if event.success { "success" } else { "failure" },
                request_id: actor.request_id.as_deref(),
                details: event.details,
            },
        )
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, action, "writing the audit log failed");
        }
    }
}
