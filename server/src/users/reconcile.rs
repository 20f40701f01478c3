//! Drift between Keycloak and voxgate: found, reported, and with `--fix`
//! repaired where the safe direction is clear.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::json;

use super::audit::{Action, AuditEvent};
use super::keycloak::Profile;
use super::model::UserStatus;
use super::repo;
use super::service::{Actor, Users};
use crate::identity::AppRole;

/// One difference between Keycloak and voxgate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Drift {
    pub kind: &'static str,
    pub username: String,
    pub detail: String,
    pub fixed: Option<String>,
}

impl Drift {
    fn new(kind: &'static str, username: &str, detail: &str) -> Drift {
        Drift {
            kind,
            username: username.to_string(),
            detail: detail.to_string(),
            fixed: None,
        }
    }
}

impl Users {
    /// Compares both systems. With `fix`, repairs what is safe.
    pub async fn reconcile(&self, fix: bool) -> anyhow::Result<Vec<Drift>> {
        self.reconcile_as(&Actor::system("reconcile"), fix).await
    }

    /// [`Users::reconcile`] on behalf of `actor` (the audit names them).
    pub async fn reconcile_as(&self, actor: &Actor, fix: bool) -> anyhow::Result<Vec<Drift>> {
        let kc_users = self.kc.list_all().await?;
        let local = repo::list_users(
            &self.db,
            &repo::UserFilter {
                search: None,
                status: Some(UserStatus::Active),
                sort: repo::UserSort::Created,
                limit: i64::MAX,
                offset: 0,
            },
        )
        .await?
        .0;
        let app_roles: BTreeSet<String> = repo::role_names(&self.db).await?.into_iter().collect();
        let realm_roles = self.kc.realm_roles().await?;
        let realm_role_names: BTreeSet<String> =
            realm_roles.iter().filter_map(|r| r.name.clone()).collect();
        let mut drift = Vec::new();
        for u in &local {
            let Some(kc) = u
                .keycloak_id
                .as_ref()
                .and_then(|id| kc_users.iter().find(|k| &k.id == id))
            else {
                let mut d = Drift::new(
                    "missing_in_keycloak",
                    &u.username,
                    "active in voxgate but has no Keycloak account",
                );
                if fix {
                    repo::set_status(&self.db, u.id, UserStatus::Deleted).await?;
                    crate::identity::end_sessions(&self.db, u.id).await?;
                    d.fixed = Some("marked deleted in voxgate".into());
                }
                drift.push(d);
                continue;
            };
            if kc.enabled != u.enabled {
                let mut d = Drift::new(
                    "enabled_mismatch",
                    &u.username,
                    &format!(
                        "Keycloak enabled={}, voxgate enabled={}",
                        kc.enabled, u.enabled
                    ),
                );
                if fix {
                    // The safe direction is the restrictive one.
                    if kc.enabled {
                        self.kc
                            .update(
                                &kc.id,
                                &Profile {
                                    enabled: Some(false),
                                    ..Profile::default()
                                },
                            )
                            .await?;
                    } else {
                        repo::update_profile(
                            &self.db,
                            u.id,
                            &Profile {
                                enabled: Some(false),
                                ..Profile::default()
                            },
                        )
                        .await?;
                        crate::identity::end_sessions(&self.db, u.id).await?;
                    }
                    d.fixed = Some("disabled in both systems".into());
                }
                drift.push(d);
            }
            let kc_roles: BTreeSet<String> = self
                .kc
                .user_realm_roles(&kc.id)
                .await?
                .into_iter()
                .filter(|r| app_roles.contains(r))
                .collect();
            let granted: BTreeSet<String> = u
                .roles
                .iter()
                .filter(|r| realm_role_names.contains(*r))
                .cloned()
                .collect();
            let missing: Vec<String> = granted
                .difference(&kc_roles)
                .filter(|r| **r != AppRole::User)
                .cloned()
                .collect();
            if !missing.is_empty() {
                let mut d = Drift::new(
                    "roles_missing_in_keycloak",
                    &u.username,
                    &format!(
                        "granted in voxgate but not in Keycloak: {}",
                        missing.join(", ")
                    ),
                );
                if fix {
                    let add: Vec<_> = realm_roles
                        .iter()
                        .filter(|r| r.name.as_ref().is_some_and(|n| missing.contains(n)))
                        .cloned()
                        .collect();
                    self.kc.add_realm_roles(&kc.id, &add).await?;
                    d.fixed = Some("added to Keycloak".into());
                }
                drift.push(d);
            }
            let extra: Vec<String> = kc_roles
                .difference(&granted)
                .filter(|r| **r != AppRole::User)
                .cloned()
                .collect();
            if !extra.is_empty() {
                drift.push(Drift::new(
                    "roles_only_in_keycloak",
                    &u.username,
                    &format!("Keycloak realm roles not granted in voxgate: {} (left as is; grant or remove them explicitly)", extra.join(", ")),
                ));
            }
        }
        for kc in &kc_users {
            if kc.username.starts_with("service-account-") {
                continue;
            }
            if repo::find_user_by_keycloak_id(&self.db, &kc.id)
                .await?
                .is_none()
            {
                let mut d = Drift::new(
                    "missing_in_voxgate",
                    &kc.username,
                    "exists in Keycloak but voxgate has no record",
                );
                if fix {
                    let inserted = self.record_keycloak_user(kc).await;
                    d.fixed = Some(match inserted {
                        Ok(()) => "recorded in voxgate".into(),
                        Err(e) => format!("not fixed: {}", crate::error::chain(&e)),
                    });
                }
                drift.push(d);
            }
        }
        for (username, step) in repo::stuck_jobs(&self.db).await? {
            drift.push(Drift::new(
                "stuck_provisioning",
                &username,
                &format!(
                    "provisioning stopped at step `{}`; recovery retries it",
                    step.as_str()
                ),
            ));
        }
        if fix {
            let details = json!({"drift": drift.len()});
            self.audit(actor, AuditEvent::success(Action::Reconcile, details))
                .await;
        }
        Ok(drift)
    }
}
