//! The user administration service: who acts, the shared state, and the
//! read side (one user, pages of users, roles, the audit log). The write
//! side lives beside it by use case: [`super::create`] (the saga and its
//! recovery), [`super::manage`] (update and delete), [`super::reconcile`].
//! The HTTP API and the CLI both call these functions.

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

use super::keycloak::{KcError, KcUser, KeycloakUsers};
use super::model::{AuditPage, RoleView, UserPage, UserStatus, UserView};
use super::repo;
use crate::config::Config;
use crate::error::ApiError;
use crate::identity::AppRole;
use crate::identity::PrincipalCache;

/// Who is acting, for permission checks and the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub label: String,
    pub is_admin: bool,
    pub request_id: Option<String>,
}

impl Actor {
    /// voxgate itself, for work no person asked for (recovery, reconcile).
    pub(super) fn system(label: &str) -> Actor {
        Actor {
            id: None,
            label: format!("system:{label}"),
            is_admin: true,
            request_id: None,
        }
    }

    /// Whose idempotency keys these are.
    pub(super) fn key(&self) -> String {
        self.id
            .map(|i| i.to_string())
            .unwrap_or_else(|| self.label.clone())
    }
}

#[derive(Clone)]
pub struct Users {
    pub kc: KeycloakUsers,
    pub(super) db: PgPool,
    pub(super) config: Arc<Config>,
    pub(super) principals: Arc<PrincipalCache>,
    /// When this instance last recorded the realm's users (see
    /// [`Users::record_realm_users`]).
    pub(super) realm_seen: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// Maps a failed Keycloak call outside the creation saga to the client's
/// error; `action` says what was being done.
pub(super) fn kc_error(action: &str, e: KcError) -> ApiError {
    match e {
        KcError::Conflict { field, message } => ApiError::conflict(field, format!("{message}.")),
        KcError::Rejected(m) => ApiError::validation("keycloak", m),
        KcError::NotFound => ApiError::BadGateway {
            detail: format!(
                "{action}: the user no longer exists in Keycloak; run `voxgate users reconcile`."
            ),
            source: None,
        },
        e @ KcError::Permission(_) => ApiError::BadGateway {
            detail: format!("{action}: {e}."),
            source: None,
        },
        e @ KcError::Unavailable(_) => ApiError::Unavailable {
            detail: format!("{action}: {e}. Nothing was changed."),
            retry_after: Some(5),
        },
    }
}

impl Users {
    pub fn new(
        config: Arc<Config>,
        db: PgPool,
        http: reqwest::Client,
        principals: Arc<PrincipalCache>,
    ) -> Users {
        Users {
            kc: KeycloakUsers::new(&config.keycloak, http),
            db,
            config,
            principals,
            realm_seen: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Records a Keycloak user voxgate has no row for, with the realm roles
    /// they hold in effect (as their tokens would carry them).
    pub(super) async fn record_keycloak_user(&self, kc: &KcUser) -> sqlx::Result<()> {
        let roles = self
            .kc
            .user_effective_realm_roles(&kc.id)
            .await
            .unwrap_or_default();
        repo::insert_from_keycloak(
            &self.db,
            &kc.id,
            &kc.username,
            kc.email.as_deref(),
            kc.enabled,
            &roles,
        )
        .await
    }

    /// Keycloak holds the identities: a realm user who never signed in to
    /// voxgate is recorded here too (no sign-in time yet), so listings show
    /// them and every action works on them. Done at most every 30 seconds
    /// per instance; a Keycloak that cannot be reached leaves the listing
    /// as it is.
    async fn record_realm_users(&self) {
        let due = self
            .realm_seen
            .lock()
            .map(|seen| seen.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(30)))
            .unwrap_or(false);
        if !due {
            return;
        }
        let realm_users = match self.kc.list_all().await {
            Ok(users) => users,
            Err(e) => {
                tracing::warn!(error = %e, "listing the realm's users failed; showing known users only");
                return;
            }
        };
        if let Ok(mut seen) = self.realm_seen.lock() {
            *seen = Some(std::time::Instant::now());
        }
        for kc in realm_users {
            if kc.username.starts_with("service-account-") {
                continue;
            }
            match repo::find_user_by_keycloak_id(&self.db, &kc.id).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "recording realm users failed");
                    return;
                }
            }
            if let Err(e) = self.record_keycloak_user(&kc).await {
                // A live local user with the same name (a creation in flight)
                // keeps it; reconcile reports the clash.
                tracing::info!(error = %e, username = %kc.username, "a realm user was not recorded");
            }
        }
    }

    /// Refuses unknown roles, and the admin role from a non-admin.
    pub(super) async fn check_roles(
        &self,
        actor: &Actor,
        roles: &[String],
    ) -> Result<(), ApiError> {
        let known = repo::role_names(&self.db).await?;
        let unknown: Vec<&str> = roles
            .iter()
            .filter(|r| !known.contains(r))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::validation(
                "roles",
                format!(
                    "unknown role(s): {}; known roles are {}",
                    unknown.join(", "),
                    known.join(", ")
                ),
            ));
        }
        if roles.iter().any(|r| *r == AppRole::Admin) && !actor.is_admin {
            return Err(ApiError::Forbidden(
                "Only admins can grant the admin role.".into(),
            ));
        }
        Ok(())
    }

    pub async fn get(&self, id: Uuid) -> Result<UserView, ApiError> {
        repo::find_user(&self.db, id)
            .await?
            .filter(|u| u.status != UserStatus::Failed)
            .ok_or_else(|| ApiError::NotFound(format!("No user with id {id}.")))
    }

    pub async fn list(
        &self,
        search: Option<&str>,
        status: Option<&str>,
        sort: Option<&str>,
        page: i64,
        per_page: i64,
    ) -> Result<UserPage, ApiError> {
        let status = status.map(UserStatus::parse_filter).transpose()?;
        let sort = match sort {
            None => repo::UserSort::default(),
            Some(text) => repo::UserSort::parse(text).ok_or_else(|| {
                ApiError::validation("sort", format!("must be {}", repo::UserSort::NAMES))
            })?,
        };
        self.record_realm_users().await;
        if !(1..=100_000).contains(&page) {
            return Err(ApiError::bad_request("page must be between 1 and 100000."));
        }
        if !(1..=100).contains(&per_page) {
            return Err(ApiError::bad_request("per_page must be between 1 and 100."));
        }
        let filter = repo::UserFilter {
            search,
            status,
            sort,
            limit: per_page,
            offset: page_offset(page, per_page)?,
        };
        let (rows, total) = repo::list_users(&self.db, &filter).await?;
        Ok(UserPage {
            items: rows,
            total,
            page,
            per_page,
        })
    }

    pub async fn roles(&self) -> Result<Vec<RoleView>, ApiError> {
        Ok(repo::all_roles(&self.db).await?)
    }

    pub async fn audit_log(
        &self,
        filter: &repo::AuditFilter<'_>,
        page: i64,
        per_page: i64,
    ) -> Result<AuditPage, ApiError> {
        if !(1..=100_000).contains(&page) || !(1..=200).contains(&per_page) {
            return Err(ApiError::bad_request(
                "page must be between 1 and 100000 and per_page between 1 and 200.",
            ));
        }
        let (items, total) =
            repo::list_audit(&self.db, filter, per_page, page_offset(page, per_page)?).await?;
        Ok(AuditPage {
            items,
            total,
            page,
            per_page,
        })
    }

    /// Keycloak's admin console for the realm, as the browser reaches
    /// Keycloak (the issuer's host): `…/admin/master/console/#/{realm}`.
    /// The page adds `/users/{keycloakId}/settings` for one user.
    pub fn console_url(&self) -> Option<String> {
        let issuer = self.config.oidc.issuer.as_str().trim_end_matches('/');
        let (base, realm) = issuer.rsplit_once("/realms/")?;
        (!realm.is_empty() && !realm.contains('/'))
            .then(|| format!("{base}/admin/master/console/#/{realm}"))
    }

    /// An active user with a Keycloak account: the only kind that can be
    /// changed or deleted. Returns the row and the Keycloak id.
    pub(super) async fn live_user(&self, id: Uuid) -> Result<(UserView, String), ApiError> {
        let user = repo::find_user(&self.db, id)
            .await?
            .filter(|u| matches!(u.status, UserStatus::Active | UserStatus::Pending))
            .ok_or_else(|| ApiError::NotFound(format!("No user with id {id}.")))?;
        if user.status == UserStatus::Pending {
            return Err(ApiError::Conflict {
                detail: "This user is still being provisioned; try again shortly.".into(),
                field: None,
            });
        }
        let keycloak_id = user.keycloak_id.clone().ok_or_else(|| ApiError::Conflict {
            detail: "This user has no Keycloak account; run `voxgate users reconcile`.".into(),
            field: None,
        })?;
        Ok((user, keycloak_id))
    }
}

/// The row offset of a page, refusing pages past any sane list (a huge
/// `page` would otherwise overflow into a database error).
fn page_offset(page: i64, per_page: i64) -> Result<i64, ApiError> {
    (page - 1)
        .checked_mul(per_page)
        .filter(|o| *o <= 10_000_000)
        .ok_or_else(|| {
            ApiError::bad_request("page is too large; use a page number within the listed total.")
        })
}
