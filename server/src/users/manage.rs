//! Changing a live user: profile, enabled flag and roles (`PATCH`), and
//! deletion. Keycloak is changed first, then Postgres; if Postgres fails,
//! the Keycloak changes are reverted, so both systems agree.

use std::collections::BTreeSet;

use keycloak::types::RoleRepresentation;
use serde_json::json;
use uuid::Uuid;

use super::audit::{Action, AuditEvent};
use super::keycloak::{KcError, Profile};
use super::model::{Email, UpdateUserRequest, UserStatus, UserView, parse_name};
use super::repo;
use super::service::{Actor, Users, kc_error};
use crate::error::ApiError;
use crate::identity::AppRole;

/// Which Keycloak-held roles [`Users::inherited_roles`] reports.
#[derive(Clone, Copy)]
enum Inherited {
    /// Held only through a group or composite role.
    NotDirect,
    /// Held at all.
    Any,
}

/// Role mappings added and removed in Keycloak, kept to undo them.
#[derive(Default)]
struct RoleDiff {
    added: Vec<RoleRepresentation>,
    removed: Vec<RoleRepresentation>,
}

impl Users {
    /// `PATCH /api/admin/users/{id}`.
    pub async fn update(
        &self,
        actor: &Actor,
        id: Uuid,
        req: UpdateUserRequest,
    ) -> Result<UserView, ApiError> {
        let first = req
            .first_name
            .as_deref()
            .map(parse_name)
            .transpose()
            .map_err(|m| ApiError::validation("firstName", m))?;
        let last = req
            .last_name
            .as_deref()
            .map(parse_name)
            .transpose()
            .map_err(|m| ApiError::validation("lastName", m))?;
        let email = req
            .email
            .as_deref()
            .map(Email::parse)
            .transpose()
            .map_err(|m| ApiError::validation("email", m))?;
        let email = email.as_ref().map(Email::as_str);
        let roles = req.roles.as_ref().map(|roles| {
            let mut r: Vec<String> = roles.iter().map(|r| r.trim().to_lowercase()).collect();
            r.sort();
            r.dedup();
            r
        });
        if let Some(roles) = &roles {
            self.check_roles(actor, roles).await?;
        }
        let (user, keycloak_id) = self.live_user(id).await?;
        let target = Some(user.username.as_str());
        let failed = |details| AuditEvent::failure(Action::Update, details).on(Some(id), target);
        if let Some(wanted) = &roles {
            let (inherited, _) = self
                .inherited_roles(&keycloak_id, wanted, Inherited::NotDirect)
                .await?;
            if !inherited.is_empty() {
                return Err(self.refuse_inherited(actor, &user, &inherited).await);
            }
        }
        if req.enabled == Some(false) && actor.id == Some(user.id) {
            return Err(ApiError::conflict(
                "enabled",
                "You cannot disable your own account.",
            ));
        }

        // Another live user's address: refused before anything changes (a
        // local-only holder would otherwise fail the commit after Keycloak
        // had changed).
        let email = email.filter(|e| user.email.as_deref() != Some(*e));
        if let Some(e) = email
            && repo::email_taken(&self.db, e, id).await?
        {
            return Err(ApiError::conflict(
                "email",
                "Another user has this email address.",
            ));
        }
        let change = Profile {
            enabled: req.enabled,
            first: first.as_deref(),
            last: last.as_deref(),
            email,
        };
        // Keycloak side, remembering how to undo it.
        let profile_change = !change.is_empty();
        if profile_change && let Err(e) = self.kc.update(&keycloak_id, &change).await {
            let error = kc_error("Updating the user in Keycloak failed", e);
            let details = json!({"step": "keycloak", "error": error.to_string()});
            self.audit(actor, failed(details)).await;
            return Err(error);
        }
        let mut role_diff = RoleDiff::default();
        // What Keycloak grants in effect after the change (groups and
        // composites included), so listings show what tokens carry.
        let mut kc_roles = None;
        if let Some(roles) = &roles {
            match self.sync_keycloak_roles(&keycloak_id, roles).await {
                // A role removed here that the user also holds through a
                // group or composite stays in their tokens: undo and refuse.
                Ok(diff) => match self
                    .inherited_roles(&keycloak_id, roles, Inherited::Any)
                    .await
                {
                    Ok((still, effective)) if still.is_empty() => {
                        role_diff = diff;
                        kc_roles = Some(effective);
                    }
                    outcome => {
                        self.undo_keycloak_change(&keycloak_id, &user, profile_change, diff)
                            .await;
                        return Err(match outcome {
                            Ok((still, _)) => self.refuse_inherited(actor, &user, &still).await,
                            Err(e) => e,
                        });
                    }
                },
                Err(e) => {
                    self.undo_keycloak_change(
                        &keycloak_id,
                        &user,
                        profile_change,
                        RoleDiff::default(),
                    )
                    .await;
                    let error = kc_error("Updating the user's roles in Keycloak failed", e);
                    let details = json!({"step": "keycloak roles", "error": error.to_string()});
                    self.audit(actor, failed(details)).await;
                    return Err(error);
                }
            }
        }
        if req.enabled == Some(false)
            && let Err(e) = self.kc.logout(&keycloak_id).await
        {
            tracing::warn!(error = %e, "ending the disabled user's Keycloak sessions failed");
        }

        let roles_removed = roles
            .as_ref()
            .is_some_and(|new| user.roles.iter().any(|r| !new.contains(r)));
        let local = async {
            let mut tx = self.db.begin().await?;
            repo::update_profile(&mut *tx, id, &change).await?;
            if let Some(roles) = &roles {
                repo::replace_roles(&mut tx, id, roles, actor.id).await?;
            }
            if let Some(kc_roles) = &kc_roles {
                repo::set_keycloak_roles(&mut *tx, id, kc_roles).await?;
            }
            // Sessions hold the roles of their sign-in; a removed role must
            // not outlive the change, so those sessions end. (Bearer tokens
            // keep their claims until they expire — minutes, by default.)
            if roles_removed || req.enabled == Some(false) {
                crate::identity::end_sessions(&mut *tx, id).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = local {
            self.undo_keycloak_change(&keycloak_id, &user, profile_change, role_diff)
                .await;
            self.audit(actor, failed(json!({"error": "database"})))
                .await;
            return Err(ApiError::Internal(e.into()));
        }
        self.principals.evict_user(id);
        let details = json!({"enabled": req.enabled, "roles": roles, "firstName": first,
            "lastName": last, "email": email});
        self.audit(
            actor,
            AuditEvent::success(Action::Update, details).on(Some(id), target),
        )
        .await;
        self.get(id).await
    }

    /// voxgate roles the user holds in Keycloak in effect but that `wanted`
    /// leaves out: with [`Inherited::NotDirect`] only those that come
    /// through a group or composite role alone (removing a direct mapping
    /// cannot take them away); with [`Inherited::Any`] all of them. Also
    /// returns every realm role the user holds in effect.
    async fn inherited_roles(
        &self,
        keycloak_id: &str,
        wanted: &[String],
        which: Inherited,
    ) -> Result<(Vec<String>, Vec<String>), ApiError> {
        let app_roles: BTreeSet<String> = repo::role_names(&self.db).await?.into_iter().collect();
        let read_failed = |e| kc_error("Reading the user's roles in Keycloak failed", e);
        let effective = self
            .kc
            .user_effective_realm_roles(keycloak_id)
            .await
            .map_err(read_failed)?;
        let direct: BTreeSet<String> = match which {
            Inherited::Any => BTreeSet::new(),
            Inherited::NotDirect => self
                .kc
                .user_realm_roles(keycloak_id)
                .await
                .map_err(read_failed)?
                .into_iter()
                .collect(),
        };
        let mut held: Vec<String> = effective
            .iter()
            .filter(|r| {
                app_roles.contains(*r)
                    && !wanted.contains(r)
                    && **r != AppRole::User
                    && !direct.contains(*r)
            })
            .cloned()
            .collect();
        held.sort();
        held.dedup();
        Ok((held, effective))
    }

    /// The refusal for roles voxgate cannot take away, audited.
    async fn refuse_inherited(&self, actor: &Actor, user: &UserView, roles: &[String]) -> ApiError {
        let list = roles.join(", ");
        let details = json!({"step": "roles", "heldThroughKeycloak": roles});
        self.audit(
            actor,
            AuditEvent::failure(Action::Update, details).on(Some(user.id), Some(&user.username)),
        )
        .await;
        ApiError::conflict(
            "roles",
            format!(
                "Keycloak still grants {list} to this user through a group or a composite role, so removing the role here would not take it away (their tokens would still carry it). Remove the user from that group, or the role from that composite, in Keycloak; nothing was changed."
            ),
        )
    }

    /// Puts Keycloak back as it was before an update that cannot complete.
    async fn undo_keycloak_change(
        &self,
        keycloak_id: &str,
        before: &UserView,
        profile_changed: bool,
        roles: RoleDiff,
    ) {
        let _ = self.kc.remove_realm_roles(keycloak_id, &roles.added).await;
        let _ = self.kc.add_realm_roles(keycloak_id, &roles.removed).await;
        let before_profile = Profile {
            enabled: Some(before.enabled),
            first: Some(&before.first_name),
            last: Some(&before.last_name),
            email: before.email.as_deref(),
        };
        if profile_changed && let Err(e) = self.kc.update(keycloak_id, &before_profile).await {
            tracing::error!(error = %e, "reverting a Keycloak profile change failed; run `voxgate users reconcile`");
        }
    }

    /// Makes the user's Keycloak realm roles that are also voxgate roles
    /// equal `wanted`.
    async fn sync_keycloak_roles(
        &self,
        keycloak_id: &str,
        wanted: &[String],
    ) -> Result<RoleDiff, KcError> {
        let app_roles: BTreeSet<String> = repo::role_names(&self.db)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        let realm_roles = self.kc.realm_roles().await?;
        let current: BTreeSet<String> = self
            .kc
            .user_realm_roles(keycloak_id)
            .await?
            .into_iter()
            .collect();
        let by_name = |name: &str| {
            realm_roles
                .iter()
                .find(|r| r.name.as_deref() == Some(name))
                .cloned()
        };
        let added: Vec<_> = wanted
            .iter()
            .filter(|r| !current.contains(*r))
            .filter_map(|r| by_name(r))
            .collect();
        let removed: Vec<_> = current
            .iter()
            .filter(|r| app_roles.contains(*r) && !wanted.contains(r) && **r != AppRole::User)
            .filter_map(|r| by_name(r))
            .collect();
        self.kc.add_realm_roles(keycloak_id, &added).await?;
        if let Err(e) = self.kc.remove_realm_roles(keycloak_id, &removed).await {
            let _ = self.kc.remove_realm_roles(keycloak_id, &added).await;
            return Err(e);
        }
        Ok(RoleDiff { added, removed })
    }

    /// `DELETE /api/admin/users/{id}`: gone from both systems; the row and
    /// the audit trail remain, marked `deleted`. A failed creation (nothing of it is left in Keycloak) is only
    /// taken off the list of failures.
    pub async fn delete(&self, actor: &Actor, id: Uuid) -> Result<(), ApiError> {
        if repo::find_user(&self.db, id)
            .await?
            .is_some_and(|u| u.status == UserStatus::Failed)
        {
            return self.forget_failed(actor, id).await;
        }
        let (user, keycloak_id) = self.live_user(id).await?;
        if actor.id == Some(id) {
            return Err(ApiError::conflict(
                "id",
                "You cannot delete your own account.",
            ));
        }
        let target = Some(user.username.as_str());
        let failed = |details| AuditEvent::failure(Action::Delete, details).on(Some(id), target);
        if let Err(e) = self.kc.delete(&keycloak_id).await {
            let error = kc_error("Deleting the user in Keycloak failed", e);
            let details = json!({"step": "keycloak", "error": error.to_string()});
            self.audit(actor, failed(details)).await;
            return Err(error);
        }
        let local = async {
            let mut tx = self.db.begin().await?;
            repo::set_status(&mut *tx, id, UserStatus::Deleted).await?;
            repo::clear_roles(&mut *tx, id).await?;
            crate::identity::end_sessions(&mut *tx, id).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = local {
            let details = json!({"error": "database", "keycloak": "deleted"});
            self.audit(actor, failed(details)).await;
            return Err(ApiError::Internal(anyhow::Error::from(e).context(
                "user deleted in Keycloak but not in Postgres; run `voxgate users reconcile --fix`",
            )));
        }
        self.principals.evict_user(id);
        let details = json!({"keycloakId": keycloak_id});
        self.audit(
            actor,
            AuditEvent::success(Action::Delete, details).on(Some(id), target),
        )
        .await;
        Ok(())
    }
}
