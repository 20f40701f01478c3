//! Creating a user: a saga, durable first. A `pending` row and a job
//! record are committed before Keycloak is touched, each step is recorded
//! as it completes, and any failure compensates (the Keycloak user is
//! deleted, the row marked `failed`). A crash mid-saga leaves a job that
//! [`Users::recover`] finishes or compensates.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::audit::{Action, AuditEvent};
use super::idempotency::{self, Claim, IdempotencyKey};
use super::keycloak::KcError;
use super::model::{CreateUserRequest, Credential, NewUser, UserStatus, UserView};
use super::repo::{self, JobStep};
use super::service::{Actor, Users};
use crate::error::{ApiError, FieldError, ResultExt};

pub(super) const CONFLICT_USERNAME: &str = "A user with this username already exists.";
pub(super) const CONFLICT_EMAIL: &str = "A user with this email already exists.";

/// The outcome of a create: the view, and whether it was replayed from an
/// earlier request with the same idempotency key.
pub struct Created {
    pub user: UserView,
    pub replayed: bool,
}

/// How long a creation's job must have been still before an admin may
/// finish or undo it by hand.
pub const REPAIR_AFTER: Duration = Duration::from_secs(60);

/// What one recovery pass did.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RecoveryReport {
    /// Sagas whose last step had run: the user is now active.
    pub finished: usize,
    /// Sagas undone in both systems.
    pub compensated: usize,
    /// Sagas that could not be settled this time (Keycloak or the database
    /// failed); the next pass tries again.
    pub pending: usize,
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

#[derive(Debug)]
enum SagaFailure {
    Keycloak(KcError),
    Database(sqlx::Error),
}

/// Why a new user would be a duplicate: the field, what the client is
/// told, and what the audit log records.
struct Duplicate {
    field: &'static str,
    message: &'static str,
    reason: &'static str,
}

impl Duplicate {
    const USERNAME: Duplicate = Duplicate {
        field: "username",
        message: CONFLICT_USERNAME,
        reason: "duplicate username",
    };
    const KEYCLOAK_USERNAME: Duplicate = Duplicate {
        field: "username",
        message: CONFLICT_USERNAME,
        reason: "duplicate username in Keycloak",
    };
    const KEYCLOAK_EMAIL: Duplicate = Duplicate {
        field: "email",
        message: CONFLICT_EMAIL,
        reason: "duplicate email in Keycloak",
    };
}

fn cleanup_note(cleanup_pending: bool) -> &'static str {
    if cleanup_pending {
        " Cleanup is pending and will finish automatically."
    } else {
        " Nothing was kept."
    }
}

/// Maps a failure at `step` to the client's error.
fn step_error(step: Step, failure: &SagaFailure, cleanup_pending: bool) -> ApiError {
    let tail = cleanup_note(cleanup_pending);
    let e = match failure {
        SagaFailure::Keycloak(e) => e,
        SagaFailure::Database(e) => {
            tracing::error!(error = %e, step = step.name(), "provisioning failed");
            return ApiError::Unavailable {
                detail: format!(
                    "Creating the user failed at step `{}`: the database failed.{tail}",
                    step.name()
                ),
                retry_after: Some(5),
            };
        }
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

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Users {
    /// `POST /api/admin/users` and `voxgate users create`.
    pub async fn create(
        &self,
        actor: &Actor,
        request: CreateUserRequest,
        key: Option<IdempotencyKey>,
    ) -> Result<Created, ApiError> {
        let Some(key) = key else {
            let user = self.create_user(actor, request).await?;
            return Ok(Created {
                user,
                replayed: false,
            });
        };
        let actor_key = actor.key();
        if let Claim::Replay(user) =
            idempotency::claim(&self.db, &actor_key, &key, &request).await?
        {
            return Ok(Created {
                user,
                replayed: true,
            });
        }
        match self.create_user(actor, request).await {
            Ok(user) => {
                if let Err(e) = idempotency::complete(&self.db, &actor_key, &key, &user).await {
                    // The user exists; a retry will see "in progress"
                    // until the claim expires, not a second user.
                    tracing::error!(error = %e, "recording the idempotency result failed");
                }
                Ok(Created {
                    user,
                    replayed: false,
                })
            }
            Err(error) => {
                idempotency::release(&self.db, &actor_key, &key).await?;
                Err(error)
            }
        }
    }

    async fn create_user(
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
        let target = Some(username.as_str());

        // Duplicates in either system are a conflict; an existing Keycloak
        // account is never adopted.
        if let Some(duplicate) = self.find_duplicate(&new).await? {
            let reason = json!({"reason": duplicate.reason});
            self.audit(
                actor,
                AuditEvent::failure(Action::Create, reason).on(None, target),
            )
            .await;
            return Err(ApiError::conflict(duplicate.field, duplicate.message));
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
            tx.commit()
                .await
                .map_err(|e| step_error(Step::RecordPending, &SagaFailure::Database(e), false))?;
            (user_id, job_id)
        };

        let mut created_id = None;
        let saga_started_ms = now_ms();
        let Err((step, failure)) = self
            .run_saga(&new, user_id, job_id, actor, &mut created_id)
            .await
        else {
            self.audit(
                actor,
                AuditEvent::success(
                    Action::Create,
                    json!({"email": new.email.as_str(), "roles": new.roles}),
                )
                .on(Some(user_id), target),
            )
            .await;
            let user = repo::find_user(&self.db, user_id)
                .await?
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("created user vanished")))?;
            return Ok(user);
        };
        // A create call that failed in transit may still have created the
        // account: look for one made since we started.
        let mut in_doubt = false;
        if created_id.is_none() && matches!(failure, SagaFailure::Keycloak(KcError::Unavailable(_)))
        {
            match self.kc.find_exact(Some(&username), None).await {
                Ok(found) => {
                    created_id = found
                        .into_iter()
                        .find(|u| u.created_ms.is_some_and(|c| c >= saga_started_ms - 5_000))
                        .map(|u| u.id);
                }
                Err(_) => in_doubt = true,
            }
        }
        // Unsure whether Keycloak holds the account: leave the job for the
        // recovery worker instead of reporting "nothing kept".
        let compensated = !in_doubt
            && self
                .compensate(user_id, job_id, created_id.as_deref())
                .await;
        let error = step_error(step, &failure, !compensated);
        self.audit(
            actor,
            AuditEvent::failure(
                Action::Create,
                json!({"step": step.name(), "error": error.to_string(), "compensated": compensated}),
            )
            .on(Some(user_id), target),
        )
        .await;
        Err(error)
    }

    /// The username in Postgres or Keycloak, or the email in Keycloak,
    /// that the new user would duplicate.
    async fn find_duplicate(&self, new: &NewUser) -> Result<Option<Duplicate>, ApiError> {
        let username = new.username.as_str();
        if repo::find_live_user_by_username(&self.db, username)
            .await?
            .is_some()
        {
            return Ok(Some(Duplicate::USERNAME));
        }
        async {
            if !self.kc.find_exact(Some(username), None).await?.is_empty() {
                return Ok(Some(Duplicate::KEYCLOAK_USERNAME));
            }
            let by_email = self.kc.find_exact(None, Some(new.email.as_str())).await?;
            Ok((!by_email.is_empty()).then_some(Duplicate::KEYCLOAK_EMAIL))
        }
        .await
        .map_err(|e| step_error(Step::CheckKeycloak, &SagaFailure::Keycloak(e), false))
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
        let invite = matches!(new.credential, Credential::Invite);
        let keycloak_id = self
            .kc
            .create(
                new.username.as_str(),
                new.email.as_str(),
                &new.first_name,
                &new.last_name,
                !invite,
            )
            .await
            .map_err(kc_fail(Step::CreateInKeycloak))?;
        *created_id = Some(keycloak_id.clone());
        repo::record_keycloak_account(&self.db, user_id, job_id, &keycloak_id)
            .await
            .map_err(db_fail(Step::CreateInKeycloak))?;
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
        repo::advance_job(&self.db, job_id, JobStep::CredentialsSet, None)
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
        repo::advance_job(&self.db, job_id, JobStep::RolesAssigned, None)
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
        repo::set_status(&mut *tx, user_id, UserStatus::Active).await?;
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
            let _ = repo::advance_job(&self.db, job_id, JobStep::Compensating, None).await;
            let _ = repo::job_failed_attempt(&self.db, job_id, &e.to_string()).await;
            return false;
        }
        match repo::settle_failed(&self.db, user_id, job_id).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "compensation: recording the failure failed; leaving it to recovery");
                let _ = repo::advance_job(&self.db, job_id, JobStep::Compensating, None).await;
                false
            }
        }
    }

    /// Finishes or compensates sagas left behind by a crash: jobs untouched
    /// for `older_than`.
    pub async fn recover(&self, older_than: Duration) -> anyhow::Result<RecoveryReport> {
        let jobs = repo::stale_jobs(&self.db, older_than).await?;
        let mut report = RecoveryReport::default();
        let actor = Actor::system("recovery");
        for job in jobs {
            self.recover_job(&actor, job, &mut report).await?;
        }
        Ok(report)
    }

    /// An admin's "finish or undo now" for one pending creation: the same
    /// as a recovery pass, for this user, once their job has been still
    /// for [`REPAIR_AFTER`] (before that, the request creating them may
    /// still be running).
    pub async fn recover_user(&self, actor: &Actor, id: Uuid) -> Result<RecoveryReport, ApiError> {
        let user = repo::find_user(&self.db, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("No user with id {id}.")))?;
        if user.status != UserStatus::Pending {
            return Err(ApiError::Conflict {
                detail: format!(
                    "{} is {}, not a pending creation; only those can be finished or undone.",
                    user.username,
                    user.status.as_str()
                ),
                field: None,
            });
        }
        let job = match repo::stale_job_of(&self.db, id, REPAIR_AFTER).await? {
            (Some(job), _) => job,
            (None, true) => {
                return Err(ApiError::Conflict {
                    detail: format!(
                        "The creation of {} is still running; try again in a minute.",
                        user.username
                    ),
                    field: None,
                });
            }
            (None, false) => {
                return Err(ApiError::Conflict {
                    detail: format!(
                        "{} has no creation job to finish; run `voxgate users reconcile`.",
                        user.username
                    ),
                    field: None,
                });
            }
        };
        let mut report = RecoveryReport::default();
        self.recover_job(actor, job, &mut report)
            .await
            .map_err(ApiError::Internal)?;
        Ok(report)
    }

    /// Settles one job: finishes it if its last step ran, else undoes it
    /// in both systems; counted in `report`.
    async fn recover_job(
        &self,
        actor: &Actor,
        job: repo::Job,
        report: &mut RecoveryReport,
    ) -> anyhow::Result<()> {
        let target = repo::username_of(&self.db, job.user_id).await?;
        let details = json!({"recovered": true, "step": job.step});
        if job.step == JobStep::RolesAssigned {
            match self
                .activate(job.user_id, job.id, &job.roles, job.actor_id)
                .await
            {
                Ok(()) => {
                    report.finished += 1;
                    let event = AuditEvent::success(Action::Create, details);
                    self.audit(actor, event.on(Some(job.user_id), target.as_deref()))
                        .await;
                }
                Err(e) => {
                    report.pending += 1;
                    let _ = repo::job_failed_attempt(&self.db, job.id, &e.to_string()).await;
                }
            }
            return Ok(());
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
                    report.pending += 1;
                    let _ = repo::job_failed_attempt(&self.db, job.id, &e.to_string()).await;
                    return Ok(());
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
            report.compensated += 1;
            let details = json!({"recovered": true, "compensated": true, "step": job.step});
            let event = AuditEvent::failure(Action::Create, details);
            self.audit(actor, event.on(Some(job.user_id), target.as_deref()))
                .await;
        } else {
            report.pending += 1;
        }
        Ok(())
    }

    /// Removes a failed creation from the list of failures (its row is
    /// kept, marked deleted, with its audit trail).
    pub async fn forget_failed(&self, actor: &Actor, id: Uuid) -> Result<(), ApiError> {
        let target = repo::username_of(&self.db, id).await?;
        if !repo::forget_failed(&self.db, id).await? {
            return Err(match target {
                None => ApiError::NotFound(format!("No user with id {id}.")),
                Some(name) => ApiError::Conflict {
                    detail: format!("{name} is not a failed creation."),
                    field: None,
                },
            });
        }
        let event = AuditEvent::success(Action::Delete, json!({"failedCreation": true}));
        self.audit(actor, event.on(Some(id), target.as_deref()))
            .await;
        Ok(())
    }
}
