//! `/api/admin/**`: thin handlers over [`super::Users`].

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::IdempotencyKey;
use super::Users;
use super::create::RecoveryReport;
use super::model::{
    AuditPage, CreateUserRequest, LockView, RoleView, SessionView, UpdateUserRequest, UserPage,
    UserStatus, UserView,
};
use super::reconcile::Drift;
use super::repo::AuditFilter;
use super::service::Actor;
use crate::error::{ApiError, Problem};
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::identity::{Admin, AppRole, CurrentUser, RequireRole};
use crate::state::AppState;
use crate::telemetry::current_request_id;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(user_sessions))
        .routes(routes!(sign_out_everywhere))
        .routes(routes!(user_lock, unlock_user))
        .routes(routes!(send_password_reset))
        .routes(routes!(recover_user))
        .routes(routes!(reconcile_report, reconcile_fix))
        .routes(routes!(list_roles))
        .routes(routes!(list_audit))
        .routes(routes!(export_audit))
}

fn actor(user: &CurrentUser) -> Actor {
    Actor {
        id: Some(user.id),
        label: user.label(),
        is_admin: user.has_role(AppRole::Admin),
        request_id: current_request_id(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Part of a username, email or name.
    search: Option<String>,
    /// pending, active, failed or deleted (default: pending and active).
    #[param(value_type = Option<UserStatus>)]
    status: Option<String>,
    /// created (default), username or lastSignIn; a leading `-` for
    /// descending (`-lastSignIn`: most recent first, never signed in last).
    #[param(pattern = r"^-?(created|username|lastSignIn)$")]
    sort: Option<String>,
    /// 1 or more (default 1).
    #[param(minimum = 1, maximum = 100000)]
    page: Option<i64>,
    /// 1–100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<i64>,
}

/// Users known to voxgate, in creation order unless sorted otherwise.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(ListQuery),
    responses((status = 200, body = UserPage), (status = 403, body = Problem)))]
async fn list_users(
    State(users): State<Users>,
    _: RequireRole<Admin>,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<AppJson<UserPage>, ApiError> {
    let page = users
        .list(
            q.search.as_deref(),
            q.status.as_deref(),
            q.sort.as_deref(),
            q.page.unwrap_or(1),
            q.per_page.unwrap_or(25),
        )
        .await?;
    Ok(AppJson(page))
}

/// Creates a user in Keycloak and voxgate (all or nothing).
#[utoipa::path(post, path = "/api/admin/users", tag = "admin", request_body = CreateUserRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, description = "Retries with the same key and body return the first result (1 to 255 characters)")),
    responses((status = 201, body = UserView), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem), (status = 503, body = Problem)))]
async fn create_user(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
    headers: HeaderMap,
    AppJson(request): AppJson<CreateUserRequest>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(IdempotencyKey::parse(v.to_str().map_err(|_| {
            ApiError::bad_request("Idempotency-Key must be visible ASCII.")
        })?)?),
        None => None,
    };
    let created = users.create(&actor(&admin), request, key).await?;
    let location = format!("/api/admin/users/{}", created.user.id);
    let mut response = (
        StatusCode::CREATED,
        [("location", location)],
        AppJson(created.user),
    )
        .into_response();
    if created.replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// One user.
#[utoipa::path(get, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")),
    responses((status = 200, body = UserView), (status = 404, body = Problem)))]
async fn get_user(
    State(users): State<Users>,
    _: RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<UserView>, ApiError> {
    Ok(AppJson(users.get(id).await?))
}

/// Enables/disables a user, replaces their roles or changes their names, in
/// both systems. Disabling also ends their sessions.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update_user(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
    AppJson(request): AppJson<UpdateUserRequest>,
) -> Result<AppJson<UserView>, ApiError> {
    Ok(AppJson(users.update(&actor(&admin), id, request).await?))
}

/// Deletes a user from both systems; the audit trail keeps the record. A
/// failed creation is taken off the list of failures.
#[utoipa::path(delete, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_user(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    users.delete(&actor(&admin), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's sessions in Keycloak, most recently used first.
#[utoipa::path(get, path = "/api/admin/users/{id}/sessions", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")),
    responses((status = 200, body = Vec<SessionView>), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
async fn user_sessions(
    State(users): State<Users>,
    _: RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<Vec<SessionView>>, ApiError> {
    Ok(AppJson(users.sessions(id).await?))
}

/// Signs the user out everywhere: every Keycloak session and every
/// voxgate session ends.
#[utoipa::path(post, path = "/api/admin/users/{id}/sign-out", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
async fn sign_out_everywhere(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    users.sign_out_everywhere(&actor(&admin), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether Keycloak's brute-force detection has locked the user out.
#[utoipa::path(get, path = "/api/admin/users/{id}/lock", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")),
    responses((status = 200, body = LockView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
async fn user_lock(
    State(users): State<Users>,
    _: RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<LockView>, ApiError> {
    Ok(AppJson(users.lock(id).await?))
}

/// Unlocks a user locked out after failed sign-ins.
#[utoipa::path(delete, path = "/api/admin/users/{id}/lock", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
async fn unlock_user(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    users.unlock(&actor(&admin), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Has Keycloak email the user a link to choose a new password (its
/// execute-actions email); the link leads back to voxgate.
#[utoipa::path(post, path = "/api/admin/users/{id}/password-reset", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")),
    responses((status = 202, description = "Keycloak sent the email"), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem), (status = 503, body = Problem)))]
async fn send_password_reset(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    users.send_password_reset(&actor(&admin), id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Finishes or undoes a creation left pending (its job still for a
/// minute): finished if its last step ran, else undone in both systems.
#[utoipa::path(post, path = "/api/admin/users/{id}/recover", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The user's voxgate id")),
    responses((status = 200, body = RecoveryReport), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Not a pending creation, or one still running")))]
async fn recover_user(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<RecoveryReport>, ApiError> {
    Ok(AppJson(users.recover_user(&actor(&admin), id).await?))
}

/// The differences between Keycloak and voxgate, changing nothing.
#[utoipa::path(get, path = "/api/admin/reconcile", tag = "admin",
    responses((status = 200, body = Vec<Drift>), (status = 403, body = Problem), (status = 502, body = Problem)))]
async fn reconcile_report(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
) -> Result<AppJson<Vec<Drift>>, ApiError> {
    reconciled(users.reconcile_as(&actor(&admin), false).await)
}

/// Repairs the differences whose safe direction is clear (as
/// `voxgate users reconcile --fix`); each one says what was done.
#[utoipa::path(post, path = "/api/admin/reconcile", tag = "admin",
    responses((status = 200, body = Vec<Drift>), (status = 403, body = Problem), (status = 502, body = Problem)))]
async fn reconcile_fix(
    State(users): State<Users>,
    RequireRole(admin, _): RequireRole<Admin>,
) -> Result<AppJson<Vec<Drift>>, ApiError> {
    reconciled(users.reconcile_as(&actor(&admin), true).await)
}

fn reconciled(result: anyhow::Result<Vec<Drift>>) -> Result<AppJson<Vec<Drift>>, ApiError> {
    result.map(AppJson).map_err(|e| ApiError::BadGateway {
        detail:
            "Comparing Keycloak with voxgate failed (Keycloak or the database did not answer); \
                 nothing more was changed. See the log of this request."
                .into(),
        source: Some(e),
    })
}

/// The roles voxgate knows.
#[utoipa::path(get, path = "/api/admin/roles", tag = "admin", responses((status = 200, body = Vec<RoleView>)))]
async fn list_roles(
    State(users): State<Users>,
    _: RequireRole<Admin>,
) -> Result<AppJson<Vec<RoleView>>, ApiError> {
    Ok(AppJson(users.roles().await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Only entries about this user id.
    target: Option<Uuid>,
    /// Only this action, e.g. `user.create`.
    action: Option<String>,
    /// Only entries whose actor's label contains this (any case).
    actor: Option<String>,
    /// 1 or more (default 1).
    #[param(minimum = 1, maximum = 100000)]
    page: Option<i64>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    per_page: Option<i64>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(AuditQuery), responses((status = 200, body = AuditPage)))]
async fn list_audit(
    State(users): State<Users>,
    _: RequireRole<Admin>,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<AppJson<AuditPage>, ApiError> {
    let filter = AuditFilter {
        target_id: q.target,
        action: q.action.as_deref(),
        actor: q.actor.as_deref(),
    };
    Ok(AppJson(
        users
            .audit_log(&filter, q.page.unwrap_or(1), q.per_page.unwrap_or(50))
            .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditExportQuery {
    /// Only entries about this user id.
    target: Option<Uuid>,
    /// Only this action, e.g. `user.create`.
    action: Option<String>,
    /// Only entries whose actor's label contains this (any case).
    actor: Option<String>,
}

/// The audit log as CSV (RFC 4180, a header row, newest first), the same
/// filters as the list; at most 100,000 entries.
#[utoipa::path(get, path = "/api/admin/audit/export", tag = "admin", params(AuditExportQuery),
    responses((status = 200, description = "The entries as CSV", content_type = "text/csv"),
        (status = 403, body = Problem)))]
async fn export_audit(
    State(users): State<Users>,
    _: RequireRole<Admin>,
    AppQuery(q): AppQuery<AuditExportQuery>,
) -> Result<Response, ApiError> {
    let filter = super::export::OwnedFilter {
        target_id: q.target,
        action: q.action,
        actor: q.actor,
    };
    let day = time::OffsetDateTime::now_utc().date();
    let name = format!("voxgate-audit-{day}.csv");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        axum::body::Body::from_stream(users.audit_csv(filter)),
    )
        .into_response())
}
