//! User provisioning: every user exists in Keycloak *and* Postgres with the
//! same roles, or in neither.
//!
//! Creation is a saga, durable first: a `pending` row and a job record are
//! committed before Keycloak is touched, each step is recorded as it
//! completes, and any failure compensates (the Keycloak user is deleted,
//! the row marked `failed`). A crash mid-saga leaves a job that
//! [`Users::recover`] finishes or compensates. The HTTP API and the CLI
//! both call these functions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::keycloak::{KcError, KeycloakUsers};
use super::model::{
    AuditPage, CreateUserRequest, Credential, NewUser, RoleView, UpdateUserRequest, UserPage,
    UserView, parse_name,
};
use super::repo::{self, Audit};
use crate::auth::users::PrincipalCache;
use crate::config::Config;
use crate::error::{ApiError, FieldError, ResultExt};

/// Who is acting, for permission checks and the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub label: String,
    pub is_admin: bool,
    pub request_id: Option<String>,
}

impl Actor {
    fn key(&self) -> String {
        self.id
            .map(|i| i.to_string())
            .unwrap_or_else(|| self.label.clone())
    }
}

#[derive(Clone)]
pub struct Users {
    pub kc: KeycloakUsers,
    db: PgPool,
    config: Arc<Config>,
    principals: Arc<PrincipalCache>,
}

/// The outcome of a create: the view, and whether it was replayed from an
/// earlier request with the same idempotency key.
pub struct Created {
    pub user: UserView,
    pub replayed: bool,
}

/// A step of the creation saga, named in errors.
#[derive(Clone, Copy, Debug)]
enum Step {
    CheckKeycloak,
    RecordPending,
    CreateInKeycloak,
    SetPassword,
    SendInvite,
    AssignRoles,
    Activate,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::CheckKeycloak => "check Keycloak for duplicates",
            Step::RecordPending => "record the pending user",
            Step::CreateInKeycloak => "create the Keycloak user",
            Step::SetPassword => "set the password",
            Step::SendInvite => "send the invitation email",
            Step::AssignRoles => "assign Keycloak roles",
            Step::Activate => "activate the user in voxgate",
        }
    }
}

/// Maps a Keycloak failure at `step` to the client's error.
fn step_error(step: Step, e: &KcError, cleanup_pending: bool) -> ApiError {
    let tail = if cleanup_pending {
        " Cleanup is pending and will finish automatically."
    } else {
        " Nothing was kept."
    };
    let detail = format!(
        "Creating the user failed at step `{}`: {e}.{tail}",
        step.name()
    );
    match e {
        KcError::Conflict { field, message } => ApiError::conflict(*field, format!("{message}.")),
        KcError::Rejected(_) => ApiError::Validation {
            detail,
            errors: Vec::new(),
        },
        KcError::NotFound | KcError::Permission(_) => ApiError::BadGateway {
            detail,
            source: None,
        },
        KcError::Unavailable(_) => ApiError::Unavailable {
            detail,
            retry_after: Some(5),
        },
    }
}

fn kc_error(action: &str, e: KcError) -> ApiError {
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

const CONFLICT_USERNAME: &str = "A user with this username already exists.";
const CONFLICT_EMAIL: &str = "A user with this email already exists.";

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
        }
    }

    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target_id: Option<Uuid>,
        target: Option<&str>,
        outcome: &str,
        details: serde_json::Value,
    ) {
        let result = repo::insert_audit(
            &self.db,
            Audit {
                actor_id: actor.id,
                actor: &actor.label,
                action,
                target_id,
                target,
                outcome,
                request_id: actor.request_id.as_deref(),
                details,
            },
        )
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, action, "writing the audit log failed");
        }
    }

    async fn check_roles(&self, actor: &Actor, roles: &[String]) -> Result<(), ApiError> {
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
        if roles.iter().any(|r| r == "admin") && !actor.is_admin {
            return Err(ApiError::Forbidden(
                "Only admins can grant the admin role.".into(),
            ));
        }
        Ok(())
    }

    /// `POST /api/admin/users` and `voxgate users create`.
    pub async fn create(
        &self,
        actor: &Actor,
        request: CreateUserRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Created, ApiError> {
        let key = match idempotency_key {
            Some(k) if k.is_empty() || k.len() > 255 => {
                return Err(ApiError::bad_request(
                    "Idempotency-Key must be 1 to 255 characters.",
                ));
            }
            other => other,
        };
        // The password is left out of the fingerprint: a stored hash of it
        // could be brute-forced from a database dump.
        let mut fingerprint = request.clone();
        if let Some(p) = fingerprint.password.as_mut() {
            p.value.clear();
        }
        let hash = Sha256::digest(serde_json::to_vec(&fingerprint).unwrap_or_default()).to_vec();
        if let Some(key) = key
            && !repo::claim_idempotency_key(&self.db, &actor.key(), key, &hash).await?
        {
            let Some((seen_hash, status, response)) =
                repo::find_idempotency_key(&self.db, &actor.key(), key).await?
            else {
                return Err(ApiError::Conflict {
                    detail: "A request with this Idempotency-Key is still being processed; retry shortly.".into(),
                    field: None,
                });
            };
            if seen_hash != hash {
                return Err(ApiError::validation(
                    "Idempotency-Key",
                    "this key was already used with a different request body",
                ));
            }
            return match (status, response) {
                (Some(_), Some(body)) => {
                    let user: UserView = serde_json::from_value(body).map_err(|e| ApiError::Internal(e.into()))?;
                    Ok(Created { user, replayed: true })
                }
                _ => Err(ApiError::Conflict {
                    detail: "A request with this Idempotency-Key is still being processed; retry shortly.".into(),
                    field: None,
                }),
            };
        }
        let result = self.create_inner(actor, request).await;
        if let Some(key) = key {
            match &result {
                Ok(user) => {
                    let body = serde_json::to_value(user).unwrap_or_default();
                    if let Err(e) =
                        repo::complete_idempotency_key(&self.db, &actor.key(), key, 201, &body)
                            .await
                    {
                        // The user exists; a retry will see "in progress"
                        // until the claim expires, not a second user.
                        tracing::error!(error = %e, "recording the idempotency result failed");
                    }
                }
                // A failed attempt may be retried with the same key.
                Err(_) => repo::release_idempotency_key(&self.db, &actor.key(), key).await?,
            }
        }
        result.map(|user| Created {
            user,
            replayed: false,
        })
    }

    async fn create_inner(
        &self,
        actor: &Actor,
        request: CreateUserRequest,
    ) -> Result<UserView, ApiError> {
        let new = request
            .parse(self.config.users.password_min_length)
            .map_err(|errors: Vec<FieldError>| ApiError::Validation {
                detail: errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                errors,
            })?;
        self.check_roles(actor, &new.roles).await?;
        let username = new.username.as_str().to_string();
        let audit_target = Some(username.as_str());
        let details = json!({"email": new.email.as_str(), "roles": new.roles});

        // Duplicates in either system are a conflict; an existing Keycloak
        // account is never adopted.
        if repo::find_live_user_by_username(&self.db, &username)
            .await?
            .is_some()
        {
            self.audit(
                actor,
                "user.create",
                None,
                audit_target,
                "failure",
                json!({"reason": "duplicate username"}),
            )
            .await;
            return Err(ApiError::conflict("username", CONFLICT_USERNAME));
        }
        let duplicate = async {
            if !self.kc.find_exact(Some(&username), None).await?.is_empty() {
                return Ok::<_, KcError>(Some(("username", CONFLICT_USERNAME)));
            }
            if !self
                .kc
                .find_exact(None, Some(new.email.as_str()))
                .await?
                .is_empty()
            {
                return Ok(Some(("email", CONFLICT_EMAIL)));
            }
            Ok(None)
        }
        .await
        .map_err(|e| step_error(Step::CheckKeycloak, &e, false))?;
        if let Some((field, message)) = duplicate {
            self.audit(
                actor,
                "user.create",
                None,
                audit_target,
                "failure",
                json!({"reason": format!("duplicate {field} in Keycloak")}),
            )
            .await;
            return Err(ApiError::conflict(field, message));
        }

        // Durable first: the pending row and its job exist before Keycloak
        // is touched.
        let (user_id, job_id) = {
            let mut tx = self.db.begin().await?;
            let user_id = repo::insert_pending_user(
                &mut *tx,
                &username,
                new.email.as_str(),
                &new.first_name,
                &new.last_name,
            )
            .await
            .on_constraints(&[
                ("users_username_key", "username", CONFLICT_USERNAME),
                ("users_email_key", "email", CONFLICT_EMAIL),
            ])?;
            let job_id = repo::insert_job(
                &mut *tx,
                user_id,
                &new.roles,
                &actor.label,
                actor.id,
                actor.request_id.as_deref(),
            )
            .await?;
            tx.commit().await.map_err(|e| {
                tracing::error!(error = %e, step = Step::RecordPending.name(), "provisioning failed");
                ApiError::Unavailable {
                    detail: format!("Creating the user failed at step `{}`. Nothing was kept.", Step::RecordPending.name()),
                    retry_after: Some(5),
                }
            })?;
            (user_id, job_id)
        };

        let mut created_id = None;
        let saga_started_ms =
            (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        match self
            .run_saga(&new, user_id, job_id, actor, &mut created_id)
            .await
        {
            Ok(()) => {
                self.audit(
                    actor,
                    "user.create",
                    Some(user_id),
                    audit_target,
                    "success",
                    details,
                )
                .await;
                let user = repo::find_user(&self.db, user_id)
                    .await?
                    .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("created user vanished")))?;
                Ok(user.into())
            }
            Err((step, failure)) => {
                // A create call that failed in transit may still have
                // created the account: look for one made since we started.
                let mut in_doubt = false;
                if created_id.is_none()
                    && matches!(failure, SagaFailure::Keycloak(KcError::Unavailable(_)))
                {
                    match self.kc.find_exact(Some(&username), None).await {
                        Ok(found) => {
                            created_id = found
                                .into_iter()
                                .find(|u| {
                                    u.created_ms.is_some_and(|c| c >= saga_started_ms - 5_000)
                                })
                                .map(|u| u.id);
                        }
                        Err(_) => in_doubt = true,
                    }
                }
                // Unsure whether Keycloak holds the account: leave the job
                // for the recovery worker instead of reporting "nothing kept".
                let compensated = !in_doubt
                    && self
                        .compensate(user_id, job_id, created_id.as_deref())
                        .await;
                let cleanup_pending = !compensated;
                let error = match &failure {
                    SagaFailure::Keycloak(e) => step_error(step, e, cleanup_pending),
                    SagaFailure::Database(e) => {
                        tracing::error!(error = %e, step = step.name(), "provisioning failed");
                        ApiError::Unavailable {
                            detail: format!(
                                "Creating the user failed at step `{}`: the database failed.{}",
                                step.name(),
                                if cleanup_pending {
                                    " Cleanup is pending and will finish automatically."
                                } else {
                                    " Nothing was kept."
                                }
                            ),
                            retry_after: Some(5),
                        }
                    }
                };
                self.audit(
                    actor,
                    "user.create",
                    Some(user_id),
                    audit_target,
                    "failure",
                    json!({"step": step.name(), "error": error.to_string(), "compensated": compensated}),
                )
                .await;
                Err(error)
            }
        }
    }

    /// Runs the steps after the pending row exists. `created_id` holds the
    /// Keycloak id as soon as it is known, even if recording it fails, so
    /// compensation can always find the account.
    async fn run_saga(
        &self,
        new: &NewUser,
        user_id: Uuid,
        job_id: i64,
        actor: &Actor,
        created_id: &mut Option<String>,
    ) -> Result<(), (Step, SagaFailure)> {
        let kc_fail = |step: Step| move |e: KcError| (step, SagaFailure::Keycloak(e));
        let db_fail = |step: Step| move |e: sqlx::Error| (step, SagaFailure::Database(e));
        let username = new.username.as_str();
        let invite = matches!(new.credential, Credential::Invite);
        let keycloak_id = self
            .kc
            .create(
                username,
                new.email.as_str(),
                &new.first_name,
                &new.last_name,
                !invite,
            )
            .await
            .map_err(kc_fail(Step::CreateInKeycloak))?;
        *created_id = Some(keycloak_id.clone());
        {
            let mut tx = self
                .db
                .begin()
                .await
                .map_err(db_fail(Step::CreateInKeycloak))?;
            repo::advance_job(&mut *tx, job_id, "keycloak_created", Some(&keycloak_id))
                .await
                .map_err(db_fail(Step::CreateInKeycloak))?;
            repo::set_keycloak_id(&mut *tx, user_id, &keycloak_id)
                .await
                .map_err(db_fail(Step::CreateInKeycloak))?;
            tx.commit().await.map_err(db_fail(Step::CreateInKeycloak))?;
        }
        match &new.credential {
            Credential::Password { value, temporary } => {
                self.kc
                    .set_password(&keycloak_id, value, *temporary)
                    .await
                    .map_err(kc_fail(Step::SetPassword))?;
            }
            Credential::Invite => {
                let redirect = self.config.public_url.as_str().to_string();
                self.kc
                    .send_invite(&keycloak_id, &self.config.oidc.client_id, &redirect)
                    .await
                    .map_err(kc_fail(Step::SendInvite))?;
            }
        }
        repo::advance_job(&self.db, job_id, "credentials_set", None)
            .await
            .map_err(db_fail(Step::SetPassword))?;
        let realm_roles = self
            .kc
            .realm_roles()
            .await
            .map_err(kc_fail(Step::AssignRoles))?;
        let to_add: Vec<_> = realm_roles
            .into_iter()
            .filter(|r| r.name.as_ref().is_some_and(|n| new.roles.contains(n)))
            .collect();
        self.kc
            .add_realm_roles(&keycloak_id, &to_add)
            .await
            .map_err(kc_fail(Step::AssignRoles))?;
        repo::advance_job(&self.db, job_id, "roles_assigned", None)
            .await
            .map_err(db_fail(Step::AssignRoles))?;
        self.activate(user_id, job_id, &new.roles, actor.id)
            .await
            .map_err(db_fail(Step::Activate))
    }

    async fn activate(
        &self,
        user_id: Uuid,
        job_id: i64,
        roles: &[String],
        granted_by: Option<Uuid>,
    ) -> sqlx::Result<()> {
        let mut tx = self.db.begin().await?;
        // Claiming the job first: if recovery already took it, stop here.
        repo::delete_job(&mut *tx, job_id).await?;
        repo::set_status(&mut *tx, user_id, "active").await?;
        repo::replace_roles(&mut tx, user_id, roles, granted_by).await?;
        tx.commit().await
    }

    /// Undoes a partial creation. `false`: something could not be undone
    /// now; the job stays for the recovery worker.
    async fn compensate(&self, user_id: Uuid, job_id: i64, keycloak_id: Option<&str>) -> bool {
        if let Some(id) = keycloak_id
            && let Err(e) = self.kc.delete(id).await
        {
            tracing::warn!(error = %e, "compensation: deleting the Keycloak user failed; leaving it to recovery");
            let _ = repo::advance_job(&self.db, job_id, "compensating", None).await;
            let _ = repo::job_failed_attempt(&self.db, job_id, &e.to_string()).await;
            return false;
        }
        let done = async {
            let mut tx = self.db.begin().await?;
            repo::mark_failed(&mut *tx, user_id).await?;
            // The job may already be gone (recovery raced us); that is fine.
            sqlx::query("DELETE FROM provisioning_jobs WHERE id = $1")
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        match done {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "compensation: recording the failure failed; leaving it to recovery");
                let _ = repo::advance_job(&self.db, job_id, "compensating", None).await;
                false
            }
        }
    }

    /// Finishes or compensates sagas left behind by a crash: jobs untouched
    /// for `older_than`. Returns (finished, compensated, still pending).
    pub async fn recover(&self, older_than: Duration) -> anyhow::Result<(usize, usize, usize)> {
        let jobs = repo::stale_jobs(&self.db, older_than).await?;
        let (mut finished, mut compensated, mut pending) = (0, 0, 0);
        let actor = Actor {
            id: None,
            label: "system:recovery".into(),
            is_admin: true,
            request_id: None,
        };
        for job in jobs {
            let target: Option<String> =
                sqlx::query_scalar("SELECT username::text FROM users WHERE id = $1")
                    .bind(job.user_id)
                    .fetch_optional(&self.db)
                    .await?;
            if job.step == "roles_assigned" {
                match self
                    .activate(job.user_id, job.id, &job.roles, job.actor_id)
                    .await
                {
                    Ok(()) => {
                        finished += 1;
                        self.audit(
                            &actor,
                            "user.create",
                            Some(job.user_id),
                            target.as_deref(),
                            "success",
                            json!({"recovered": true, "step": job.step}),
                        )
                        .await;
                    }
                    Err(e) => {
                        pending += 1;
                        let _ = repo::job_failed_attempt(&self.db, job.id, &e.to_string()).await;
                    }
                }
                continue;
            }
            let mut keycloak_ids: Vec<String> = job.keycloak_id.iter().cloned().collect();
            if keycloak_ids.is_empty()
                && let Some(username) = &target
            {
                // The create call may have succeeded without us recording
                // it; only a user created after the job started can be ours.
                let started_ms = (job.created_at.unix_timestamp_nanos() / 1_000_000) as i64 - 5_000;
                match self.kc.find_exact(Some(username), None).await {
                    Ok(users) => keycloak_ids.extend(
                        users
                            .into_iter()
                            .filter(|u| u.created_ms.is_some_and(|c| c >= started_ms))
                            .map(|u| u.id),
                    ),
                    Err(e) => {
                        pending += 1;
                        let _ = repo::job_failed_attempt(&self.db, job.id, &e.to_string()).await;
                        continue;
                    }
                }
            }
            let mut ok = true;
            for id in &keycloak_ids {
                if let Err(e) = self.kc.delete(id).await {
                    ok = false;
                    let _ = repo::job_failed_attempt(&self.db, job.id, &e.to_string()).await;
                }
            }
            if ok && self.compensate(job.user_id, job.id, None).await {
                compensated += 1;
                self.audit(
                    &actor,
                    "user.create",
                    Some(job.user_id),
                    target.as_deref(),
                    "failure",
                    json!({"recovered": true, "compensated": true, "step": job.step}),
                )
                .await;
            } else {
                pending += 1;
            }
        }
        Ok((finished, compensated, pending))
    }

    pub async fn get(&self, id: Uuid) -> Result<UserView, ApiError> {
        repo::find_user(&self.db, id)
            .await?
            .filter(|u| u.status != "failed")
            .map(UserView::from)
            .ok_or_else(|| ApiError::NotFound(format!("No user with id {id}.")))
    }

    pub async fn list(
        &self,
        search: Option<&str>,
        status: Option<&str>,
        page: i64,
        per_page: i64,
    ) -> Result<UserPage, ApiError> {
        if let Some(s) = status
            && !["pending", "active", "failed", "deleted"].contains(&s)
        {
            return Err(ApiError::bad_request(format!(
                "status must be one of pending, active, failed, deleted (got `{s}`)."
            )));
        }
        if page < 1 {
            return Err(ApiError::bad_request("page starts at 1."));
        }
        if !(1..=100).contains(&per_page) {
            return Err(ApiError::bad_request("per_page must be between 1 and 100."));
        }
        let filter = repo::UserFilter {
            search,
            status,
            limit: per_page,
            offset: page_offset(page, per_page)?,
        };
        let (rows, total) = repo::list_users(&self.db, &filter).await?;
        Ok(UserPage {
            items: rows.into_iter().map(UserView::from).collect(),
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
        target: Option<Uuid>,
        action: Option<&str>,
        page: i64,
        per_page: i64,
    ) -> Result<AuditPage, ApiError> {
        if page < 1 || !(1..=200).contains(&per_page) {
            return Err(ApiError::bad_request(
                "page starts at 1 and per_page must be between 1 and 200.",
            ));
        }
        let (items, total) = repo::list_audit(
            &self.db,
            target,
            action,
            per_page,
            page_offset(page, per_page)?,
        )
        .await?;
        Ok(AuditPage {
            items,
            total,
            page,
            per_page,
        })
    }

    async fn live_user(&self, id: Uuid) -> Result<(repo::UserRecord, String), ApiError> {
        let user = repo::find_user(&self.db, id)
            .await?
            .filter(|u| u.status == "active" || u.status == "pending")
            .ok_or_else(|| ApiError::NotFound(format!("No user with id {id}.")))?;
        if user.status == "pending" {
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

    /// `PATCH /api/admin/users/{id}`: Keycloak first, then Postgres; if
    /// Postgres fails, the Keycloak changes are reverted.
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
        if let Some(wanted) = &roles {
            let (inherited, _) = self
                .inherited_roles(&keycloak_id, wanted, Inherited::NotDirect)
                .await?;
            if !inherited.is_empty() {
                return Err(self.refuse_inherited(actor, &user, &inherited).await);
            }
        }
        if req.enabled == Some(false) && actor.id == Some(user.id) {
            return Err(ApiError::validation(
                "enabled",
                "you cannot disable your own account",
            ));
        }

        // Keycloak side, remembering how to undo it.
        let profile_change = req.enabled.is_some() || first.is_some() || last.is_some();
        if profile_change
            && let Err(e) = self
                .kc
                .update(&keycloak_id, req.enabled, first.as_deref(), last.as_deref())
                .await
        {
            let error = kc_error("Updating the user in Keycloak failed", e);
            self.audit(
                actor,
                "user.update",
                Some(id),
                Some(&user.username),
                "failure",
                json!({"step": "keycloak", "error": error.to_string()}),
            )
            .await;
            return Err(error);
        }
        let mut role_diff = (Vec::new(), Vec::new());
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
                        let (added, removed) = diff;
                        let _ = self.kc.remove_realm_roles(&keycloak_id, &added).await;
                        let _ = self.kc.add_realm_roles(&keycloak_id, &removed).await;
                        self.revert_profile(&keycloak_id, &user, profile_change)
                            .await;
                        return Err(match outcome {
                            Ok((still, _)) => self.refuse_inherited(actor, &user, &still).await,
                            Err(e) => e,
                        });
                    }
                },
                Err(e) => {
                    self.revert_profile(&keycloak_id, &user, profile_change)
                        .await;
                    let error = kc_error("Updating the user's roles in Keycloak failed", e);
                    self.audit(
                        actor,
                        "user.update",
                        Some(id),
                        Some(&user.username),
                        "failure",
                        json!({"step": "keycloak roles", "error": error.to_string()}),
                    )
                    .await;
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
            repo::update_profile(&mut *tx, id, req.enabled, first.as_deref(), last.as_deref())
                .await?;
            if let Some(roles) = &roles {
                repo::replace_roles(&mut tx, id, roles, actor.id).await?;
            }
            if let Some(kc_roles) = &kc_roles {
                repo::set_keycloak_roles(&mut *tx, id, kc_roles).await?;
            }
            // Sessions hold the roles of their sign-in; a removed role must
            // not outlive the change, so those sessions end. (Bearer tokens
            // keep their claims until they expire — minutes, by default.)
            if roles_removed {
                crate::auth::session::delete_for_user(&mut *tx, id).await?;
            }
            if req.enabled == Some(false) {
                crate::auth::session::delete_for_user(&mut *tx, id).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = local {
            self.revert_profile(&keycloak_id, &user, profile_change)
                .await;
            let (added, removed) = role_diff;
            let _ = self.kc.remove_realm_roles(&keycloak_id, &added).await;
            let _ = self.kc.add_realm_roles(&keycloak_id, &removed).await;
            self.audit(
                actor,
                "user.update",
                Some(id),
                Some(&user.username),
                "failure",
                json!({"error": "database"}),
            )
            .await;
            return Err(ApiError::Internal(e.into()));
        }
        self.principals.evict_user(id);
        let details =
            json!({"enabled": req.enabled, "roles": roles, "firstName": first, "lastName": last});
        self.audit(
            actor,
            "user.update",
            Some(id),
            Some(&user.username),
            "success",
            details,
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
        let app_roles: BTreeSet<String> = repo::role_names(&self.db)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
            .into_iter()
            .collect();
        let effective = self
            .kc
            .user_effective_realm_roles(keycloak_id)
            .await
            .map_err(|e| kc_error("Reading the user's roles in Keycloak failed", e))?;
        let direct: BTreeSet<String> = match which {
            Inherited::Any => BTreeSet::new(),
            Inherited::NotDirect => self
                .kc
                .user_realm_roles(keycloak_id)
                .await
                .map_err(|e| kc_error("Reading the user's roles in Keycloak failed", e))?
                .into_iter()
                .collect(),
        };
        let mut held: Vec<String> = effective
            .iter()
            .filter(|r| {
                app_roles.contains(*r)
                    && !wanted.contains(r)
                    && r.as_str() != crate::auth::users::DEFAULT_ROLE
                    && !direct.contains(*r)
            })
            .cloned()
            .collect();
        held.sort();
        held.dedup();
        Ok((held, effective))
    }

    /// The refusal for roles voxgate cannot take away, audited.
    async fn refuse_inherited(
        &self,
        actor: &Actor,
        user: &repo::UserRecord,
        roles: &[String],
    ) -> ApiError {
        let list = roles.join(", ");
        self.audit(
            actor,
            "user.update",
            Some(user.id),
            Some(&user.username),
            "failure",
            json!({"step": "roles", "heldThroughKeycloak": roles}),
        )
        .await;
        ApiError::conflict(
            "roles",
            format!(
                "Keycloak still grants {list} to this user through a group or a composite role, so removing the role here would not take it away (their tokens would still carry it). Remove the user from that group, or the role from that composite, in Keycloak; nothing was changed."
            ),
        )
    }

    async fn revert_profile(&self, keycloak_id: &str, before: &repo::UserRecord, changed: bool) {
        if changed
            && let Err(e) = self
                .kc
                .update(
                    keycloak_id,
                    Some(before.enabled),
                    Some(&before.first_name),
                    Some(&before.last_name),
                )
                .await
        {
            tracing::error!(error = %e, "reverting a Keycloak profile change failed; run `voxgate users reconcile`");
        }
    }

    /// Makes the user's Keycloak realm roles that are also voxgate roles
    /// equal `wanted`. Returns (added, removed).
    async fn sync_keycloak_roles(
        &self,
        keycloak_id: &str,
        wanted: &[String],
    ) -> Result<
        (
            Vec<keycloak::types::RoleRepresentation>,
            Vec<keycloak::types::RoleRepresentation>,
        ),
        KcError,
    > {
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
        let add: Vec<_> = wanted
            .iter()
            .filter(|r| !current.contains(*r))
            .filter_map(|r| by_name(r))
            .collect();
        let remove: Vec<_> = current
            .iter()
            .filter(|r| {
                app_roles.contains(*r)
                    && !wanted.contains(r)
                    && r.as_str() != crate::auth::users::DEFAULT_ROLE
            })
            .filter_map(|r| by_name(r))
            .collect();
        self.kc.add_realm_roles(keycloak_id, &add).await?;
        if let Err(e) = self.kc.remove_realm_roles(keycloak_id, &remove).await {
            let _ = self.kc.remove_realm_roles(keycloak_id, &add).await;
            return Err(e);
        }
        Ok((add, remove))
    }

    /// `DELETE /api/admin/users/{id}`: gone from both systems; the row and
    /// the audit trail remain, marked `deleted`.
    pub async fn delete(&self, actor: &Actor, id: Uuid) -> Result<(), ApiError> {
        let (user, keycloak_id) = self.live_user(id).await?;
        if actor.id == Some(id) {
            return Err(ApiError::validation(
                "id",
                "you cannot delete your own account",
            ));
        }
        if let Err(e) = self.kc.delete(&keycloak_id).await {
            let error = kc_error("Deleting the user in Keycloak failed", e);
            self.audit(
                actor,
                "user.delete",
                Some(id),
                Some(&user.username),
                "failure",
                json!({"step": "keycloak", "error": error.to_string()}),
            )
            .await;
            return Err(error);
        }
        let local = async {
            let mut tx = self.db.begin().await?;
            repo::set_status(&mut *tx, id, "deleted").await?;
            sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            crate::auth::session::delete_for_user(&mut *tx, id).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = local {
            self.audit(
                actor,
                "user.delete",
                Some(id),
                Some(&user.username),
                "failure",
                json!({"error": "database", "keycloak": "deleted"}),
            )
            .await;
            return Err(ApiError::Internal(anyhow::Error::from(e).context(
                "user deleted in Keycloak but not in Postgres; run `voxgate users reconcile --fix`",
            )));
        }
        self.principals.evict_user(id);
        self.audit(
            actor,
            "user.delete",
            Some(id),
            Some(&user.username),
            "success",
            json!({"keycloakId": keycloak_id}),
        )
        .await;
        Ok(())
    }

    /// Compares both systems. With `fix`, repairs what is safe.
    pub async fn reconcile(&self, fix: bool) -> anyhow::Result<Vec<Drift>> {
        let kc_users = self
            .kc
            .list_all()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let local: Vec<repo::UserRecord> = repo::list_users(
            &self.db,
            &repo::UserFilter {
                search: None,
                status: Some("active"),
                limit: i64::MAX,
                offset: 0,
            },
        )
        .await?
        .0;
        let app_roles: BTreeSet<String> = repo::role_names(&self.db).await?.into_iter().collect();
        let actor = Actor {
            id: None,
            label: "system:reconcile".into(),
            is_admin: true,
            request_id: None,
        };
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
                    repo::set_status(&self.db, u.id, "deleted").await?;
                    crate::auth::session::delete_for_user(&self.db, u.id).await?;
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
                            .update(&kc.id, Some(false), None, None)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    } else {
                        repo::update_profile(&self.db, u.id, Some(false), None, None).await?;
                        crate::auth::session::delete_for_user(&self.db, u.id).await?;
                    }
                    d.fixed = Some("disabled in both systems".into());
                }
                drift.push(d);
            }
            let kc_roles: BTreeSet<String> = self
                .kc
                .user_realm_roles(&kc.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .into_iter()
                .filter(|r| app_roles.contains(r))
                .collect();
            let realm_role_names: BTreeSet<String> = self
                .kc
                .realm_roles()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .into_iter()
                .filter_map(|r| r.name)
                .collect();
            let granted: BTreeSet<String> = u
                .roles
                .iter()
                .filter(|r| realm_role_names.contains(*r))
                .cloned()
                .collect();
            let missing: Vec<String> = granted
                .difference(&kc_roles)
                .filter(|r| r.as_str() != crate::auth::users::DEFAULT_ROLE)
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
                    let roles = self
                        .kc
                        .realm_roles()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let add: Vec<_> = roles
                        .into_iter()
                        .filter(|r| r.name.as_ref().is_some_and(|n| missing.contains(n)))
                        .collect();
                    self.kc
                        .add_realm_roles(&kc.id, &add)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    d.fixed = Some("added to Keycloak".into());
                }
                drift.push(d);
            }
            let extra: Vec<String> = kc_roles
                .difference(&granted)
                .filter(|r| r.as_str() != crate::auth::users::DEFAULT_ROLE)
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
                    let inserted = sqlx::query(
                        "INSERT INTO users (keycloak_id, username, email, enabled, status) VALUES ($1, $2, $3, $4, 'active')",
                    )
                    .bind(&kc.id)
                    .bind(&kc.username)
                    .bind(&kc.email)
                    .bind(kc.enabled)
                    .execute(&self.db)
                    .await;
                    d.fixed = Some(match inserted {
                        Ok(_) => "recorded in voxgate".into(),
                        Err(e) => format!("not fixed: {}", crate::error::chain(&e)),
                    });
                }
                drift.push(d);
            }
        }
        let stale: Vec<(String, String)> = sqlx::query_as(
            "SELECT u.username::text, j.step FROM provisioning_jobs j JOIN users u ON u.id = j.user_id WHERE j.updated_at < now() - interval '5 minutes'",
        )
        .fetch_all(&self.db)
        .await?;
        for (username, step) in stale {
            drift.push(Drift::new(
                "stuck_provisioning",
                &username,
                &format!("provisioning stopped at step `{step}`; recovery retries it"),
            ));
        }
        if fix {
            self.audit(
                &actor,
                "users.reconcile",
                None,
                None,
                "success",
                json!({"drift": drift.len()}),
            )
            .await;
        }
        Ok(drift)
    }
}

#[derive(Debug)]
enum SagaFailure {
    Keycloak(KcError),
    Database(sqlx::Error),
}

/// One difference between Keycloak and voxgate.
#[derive(Debug, Serialize)]
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

/// Which Keycloak-held roles [`Users::inherited_roles`] reports.
#[derive(Clone, Copy)]
enum Inherited {
    /// Held only through a group or composite role.
    NotDirect,
    /// Held at all.
    Any,
}
