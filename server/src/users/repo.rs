//! SQL for users, roles, role mappings, provisioning jobs and the audit
//! log: every statement on these tables, whichever feature needs it, lives
//! here. Functions are named for what they do and take any executor, so
//! the caller decides what runs in one transaction.

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::keycloak::Profile;
use super::model::{AuditEntry, RoleView, UserStatus, UserView};
use crate::identity::{UserRow, query_user};

/// A user row with its effective roles, as `query_as!` fills it (it cannot
/// fill [`UserView`]'s nested row).
struct UserRecord {
    id: Uuid,
    keycloak_id: Option<String>,
    username: String,
    email: Option<String>,
    first_name: String,
    last_name: String,
    enabled: bool,
    status: UserStatus,
    created_at: OffsetDateTime,
    last_login_at: Option<OffsetDateTime>,
    roles: Vec<String>,
}

impl From<UserRecord> for UserView {
    fn from(r: UserRecord) -> Self {
        UserView {
            user: UserRow {
                id: r.id,
                keycloak_id: r.keycloak_id,
                username: r.username,
                email: r.email,
                first_name: r.first_name,
                last_name: r.last_name,
                enabled: r.enabled,
                status: r.status,
                created_at: r.created_at,
                last_login_at: r.last_login_at,
            },
            roles: r.roles,
        }
    }
}

/// A checked query for users with their effective roles: `$where` follows
/// `FROM users u`.
macro_rules! query_user_view {
    ($where:tt $(, $arg:expr)* $(,)?) => {
        query_user!(
            UserRecord,
            "SELECT ",
            (r#",
    COALESCE((SELECT array_agg(g.role ORDER BY g.role) FROM (
        SELECT r.role FROM user_roles r WHERE r.user_id = u.id
        UNION
        SELECT m.app_role FROM role_mappings m WHERE m.source = 'realm' AND m.keycloak_role = ANY(u.keycloak_roles)
    ) g), '{}') AS "roles!"
    FROM users u "# + $where)
            $(, $arg)*
        )
    };
}

pub async fn find_user(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<UserView>> {
    let row = query_user_view!("WHERE u.id = $1", id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(UserView::from))
}

pub async fn find_user_by_keycloak_id(
    db: impl PgExecutor<'_>,
    keycloak_id: &str,
) -> sqlx::Result<Option<UserView>> {
    let row = query_user_view!("WHERE u.keycloak_id = $1", keycloak_id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(UserView::from))
}

pub async fn find_live_user_by_username(
    db: impl PgExecutor<'_>,
    username: &str,
) -> sqlx::Result<Option<UserView>> {
    let row = query_user_view!(
        "WHERE u.username = $1 AND u.status IN ('pending', 'active')",
        username as _
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(UserView::from))
}

pub struct UserFilter<'a> {
    pub search: Option<&'a str>,
    pub status: Option<UserStatus>,
    pub sort: UserSort,
    pub limit: i64,
    pub offset: i64,
}

/// The orders a user list can be read in (`sort=`, a leading `-` for
/// descending).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UserSort {
    #[default]
    Created,
    CreatedDesc,
    Username,
    UsernameDesc,
    LastSignIn,
    LastSignInDesc,
}

impl UserSort {
    pub const NAMES: &'static str =
        "created, -created, username, -username, lastSignIn or -lastSignIn";

    pub fn parse(text: &str) -> Option<UserSort> {
        Some(match text {
            "created" => UserSort::Created,
            "-created" => UserSort::CreatedDesc,
            "username" => UserSort::Username,
            "-username" => UserSort::UsernameDesc,
            "lastSignIn" => UserSort::LastSignIn,
            "-lastSignIn" => UserSort::LastSignInDesc,
            _ => return None,
        })
    }

    /// The ORDER BY clause: always ending in the id, so pages never
    /// overlap or skip rows that tie. Users who never signed in come last
    /// either way.
    fn clause(self) -> &'static str {
        match self {
            UserSort::Created => " ORDER BY u.created_at, u.id",
            UserSort::CreatedDesc => " ORDER BY u.created_at DESC, u.id DESC",
            UserSort::Username => " ORDER BY u.username, u.id",
            UserSort::UsernameDesc => " ORDER BY u.username DESC, u.id DESC",
            UserSort::LastSignIn => " ORDER BY u.last_login_at NULLS LAST, u.id",
            UserSort::LastSignInDesc => " ORDER BY u.last_login_at DESC NULLS LAST, u.id DESC",
        }
    }
}

fn push_filter<'a>(q: &mut QueryBuilder<'a, Postgres>, f: &'a UserFilter<'a>) {
    q.push(" WHERE true");
    if let Some(search) = f.search.filter(|s| !s.is_empty()) {
        // The search is literal text, not wildcards.
        let pattern = crate::db::contains_pattern(search);
        q.push(" AND (u.username::text ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR u.email::text ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR (u.first_name || ' ' || u.last_name) ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    match f.status {
        Some(status) => {
            q.push(" AND u.status = ").push_bind(status);
        }
        None => {
            q.push(" AND u.status IN ('pending', 'active')");
        }
    }
}

/// A page of users in a stable order, and the total matching.
///
/// The filter stays a dynamic statement: a condition is added only when
/// given, so the planner sees a plain `ILIKE` it can answer from the
/// trigram index. It yields ids only; the rows come from a checked query.
pub async fn list_users(
    db: &sqlx::PgPool,
    f: &UserFilter<'_>,
) -> sqlx::Result<(Vec<UserView>, i64)> {
    let mut count = QueryBuilder::new("SELECT count(*) FROM users u");
    push_filter(&mut count, f);
    let total: i64 = count.build_query_scalar().fetch_one(db).await?;
    let mut q = QueryBuilder::new("SELECT u.id FROM users u");
    push_filter(&mut q, f);
    q.push(f.sort.clause())
        .push(" LIMIT ")
        .push_bind(f.limit)
        .push(" OFFSET ")
        .push_bind(f.offset);
    let ids: Vec<Uuid> = q.build_query_scalar().fetch_all(db).await?;
    if ids.is_empty() {
        return Ok((Vec::new(), total));
    }
    let rows = query_user_view!("WHERE u.id = ANY($1)", &ids)
        .fetch_all(db)
        .await?;
    // Put in the page's order (the ids query's) here rather than with
    // `array_position`, which walks the array for every row: reconcile
    // lists every user at once.
    let mut by_id: std::collections::HashMap<Uuid, UserView> = rows
        .into_iter()
        .map(|r| {
            let view = UserView::from(r);
            (view.id, view)
        })
        .collect();
    let rows = ids.iter().filter_map(|id| by_id.remove(id)).collect();
    Ok((rows, total))
}

pub async fn insert_pending_user(
    db: impl PgExecutor<'_>,
    username: &str,
    email: &str,
    first: &str,
    last: &str,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO users (username, email, first_name, last_name, status) VALUES ($1, $2, $3, $4, 'pending') RETURNING id",
        username as _,
        email as _,
        first,
        last,
    )
    .fetch_one(db)
    .await
}

pub async fn set_keycloak_id(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    keycloak_id: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET keycloak_id = $2 WHERE id = $1",
        user_id,
        keycloak_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn set_status(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    status: UserStatus,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET status = $2 WHERE id = $1",
        user_id,
        status as UserStatus
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a user that never fully existed; its Keycloak id is cleared so a
/// later user may reuse it.
pub async fn mark_failed(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET status = 'failed', keycloak_id = NULL WHERE id = $1",
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn update_profile(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    change: &Profile<'_>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET enabled = COALESCE($2, enabled), first_name = COALESCE($3, first_name),
                          last_name = COALESCE($4, last_name), email = COALESCE($5, email)
          WHERE id = $1",
        user_id,
        change.enabled,
        change.first,
        change.last,
        change.email as _,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn replace_roles(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    user_id: Uuid,
    roles: &[String],
    granted_by: Option<Uuid>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM user_roles WHERE user_id = $1 AND role <> ALL($2)",
        user_id,
        roles
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "INSERT INTO user_roles (user_id, role, granted_by) SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING",
        user_id,
        roles,
        granted_by,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn all_roles(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<RoleView>> {
    sqlx::query_as!(
        RoleView,
        "SELECT name, description FROM roles ORDER BY name"
    )
    .fetch_all(db)
    .await
}

pub async fn role_names(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!("SELECT name FROM roles ORDER BY name")
        .fetch_all(db)
        .await
}

/// How far a creation saga got; the job row is deleted when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum JobStep {
    LocalCreated,
    KeycloakCreated,
    CredentialsSet,
    RolesAssigned,
    Compensating,
}

impl JobStep {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStep::LocalCreated => "local_created",
            JobStep::KeycloakCreated => "keycloak_created",
            JobStep::CredentialsSet => "credentials_set",
            JobStep::RolesAssigned => "roles_assigned",
            JobStep::Compensating => "compensating",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub user_id: Uuid,
    pub step: JobStep,
    pub keycloak_id: Option<String>,
    pub roles: Vec<String>,
    pub actor: String,
    pub actor_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub created_at: time::OffsetDateTime,
}

pub async fn insert_job(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    roles: &[String],
    actor: &str,
    actor_id: Option<Uuid>,
    request_id: Option<&str>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "INSERT INTO provisioning_jobs (user_id, step, roles, actor, actor_id, request_id)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        user_id,
        JobStep::LocalCreated as JobStep,
        roles,
        actor,
        actor_id,
        request_id,
    )
    .fetch_one(db)
    .await
}

/// Records a saga step. Fails if the job is gone (the recovery worker took
/// over a saga it believed dead), so the saga stops instead of racing it.
pub async fn advance_job(
    db: impl PgExecutor<'_>,
    job_id: i64,
    step: JobStep,
    keycloak_id: Option<&str>,
) -> sqlx::Result<()> {
    let updated = sqlx::query!(
        "UPDATE provisioning_jobs SET step = $2, keycloak_id = COALESCE($3, keycloak_id) WHERE id = $1",
        job_id,
        step as JobStep,
        keycloak_id,
    )
    .execute(db)
    .await?
    .rows_affected();
    if updated == 1 {
        Ok(())
    } else {
        Err(sqlx::Error::RowNotFound)
    }
}

pub async fn job_failed_attempt(
    db: impl PgExecutor<'_>,
    job_id: i64,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE provisioning_jobs SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
        job_id,
        error,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes a finished job; fails if it was already removed by someone else.
pub async fn delete_job(db: impl PgExecutor<'_>, job_id: i64) -> sqlx::Result<()> {
    let deleted = sqlx::query!("DELETE FROM provisioning_jobs WHERE id = $1", job_id)
        .execute(db)
        .await?
        .rows_affected();
    if deleted == 1 {
        Ok(())
    } else {
        Err(sqlx::Error::RowNotFound)
    }
}

/// The creation job of `user_id` if untouched for `older_than` (one
/// still moving belongs to the request running it); and whether the user
/// has a job at all.
pub async fn stale_job_of(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    older_than: std::time::Duration,
) -> sqlx::Result<(Option<Job>, bool)> {
    let rows = sqlx::query!(
        r#"SELECT id, user_id, step AS "step: JobStep", keycloak_id, roles, actor, actor_id, request_id,
                  created_at, updated_at < now() - make_interval(secs => $2) AS "stale!"
           FROM provisioning_jobs WHERE user_id = $1 ORDER BY id LIMIT 1"#,
        user_id,
        older_than.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    Ok(match rows {
        None => (None, false),
        Some(r) if !r.stale => (None, true),
        Some(r) => (
            Some(Job {
                id: r.id,
                user_id: r.user_id,
                step: r.step,
                keycloak_id: r.keycloak_id,
                roles: r.roles,
                actor: r.actor,
                actor_id: r.actor_id,
                request_id: r.request_id,
                created_at: r.created_at,
            }),
            true,
        ),
    })
}

/// Whether another live user has `email` (any case).
pub async fn email_taken(db: impl PgExecutor<'_>, email: &str, except: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE lower(email::text) = lower($1) AND id <> $2
                            AND status IN ('pending', 'active')) AS "taken!""#,
        email,
        except,
    )
    .fetch_one(db)
    .await
}

/// Marks a failed creation's row deleted, so it leaves the list of
/// failures; false if the user is not a failed creation.
pub async fn forget_failed(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE users SET status = 'deleted' WHERE id = $1 AND status = 'failed'",
        user_id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn stale_jobs(
    db: impl PgExecutor<'_>,
    older_than: std::time::Duration,
) -> sqlx::Result<Vec<Job>> {
    sqlx::query_as!(
        Job,
        r#"SELECT id, user_id, step AS "step: JobStep", keycloak_id, roles, actor, actor_id, request_id, created_at
           FROM provisioning_jobs WHERE updated_at < now() - make_interval(secs => $1) ORDER BY id"#,
        older_than.as_secs_f64(),
    )
    .fetch_all(db)
    .await
}

pub struct Audit<'a> {
    pub actor_id: Option<Uuid>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target_id: Option<Uuid>,
    pub target: Option<&'a str>,
    pub outcome: &'a str,
    pub request_id: Option<&'a str>,
    pub details: serde_json::Value,
}

pub async fn insert_audit(db: impl PgExecutor<'_>, a: Audit<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO audit_log (actor_id, actor, action, target_id, target, outcome, request_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        a.actor_id,
        a.actor,
        a.action,
        a.target_id,
        a.target,
        a.outcome,
        a.request_id,
        a.details,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Which audit entries to read.
pub struct AuditFilter<'a> {
    pub target_id: Option<Uuid>,
    pub action: Option<&'a str>,
    /// Part of the actor's label (`alice (3f2…)`), any case.
    pub actor: Option<&'a str>,
}

impl AuditFilter<'_> {
    fn actor_pattern(&self) -> Option<String> {
        self.actor.map(crate::db::contains_pattern)
    }
}

pub async fn list_audit(
    db: &sqlx::PgPool,
    f: &AuditFilter<'_>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<AuditEntry>, i64)> {
    let actor = f.actor_pattern();
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM audit_log
            WHERE ($1::uuid IS NULL OR target_id = $1) AND ($2::text IS NULL OR action = $2)
              AND ($3::text IS NULL OR actor ILIKE $3 ESCAPE '\')"#,
        f.target_id,
        f.action,
        actor,
    )
    .fetch_one(db)
    .await?;
    let items = sqlx::query_as!(
        AuditEntry,
        r#"SELECT id, at, actor, action, target_id, target, outcome, request_id, details FROM audit_log
            WHERE ($1::uuid IS NULL OR target_id = $1) AND ($2::text IS NULL OR action = $2)
              AND ($3::text IS NULL OR actor ILIKE $3 ESCAPE '\')
            ORDER BY at DESC, id DESC LIMIT $4 OFFSET $5"#,
        f.target_id,
        f.action,
        actor,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    Ok((items, total))
}

/// Records the user's Keycloak realm roles as last set through voxgate.
pub async fn set_keycloak_roles(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    roles: &[String],
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET keycloak_roles = $2 WHERE id = $1",
        user_id,
        roles
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records the Keycloak account a saga created, with its job step, at once.
pub async fn record_keycloak_account(
    db: &sqlx::PgPool,
    user_id: Uuid,
    job_id: i64,
    keycloak_id: &str,
) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    advance_job(
        &mut *tx,
        job_id,
        JobStep::KeycloakCreated,
        Some(keycloak_id),
    )
    .await?;
    set_keycloak_id(&mut *tx, user_id, keycloak_id).await?;
    tx.commit().await
}

/// Marks an undone creation `failed` and drops its job, which may already
/// be gone (recovery raced the saga); that is fine.
pub async fn settle_failed(db: &sqlx::PgPool, user_id: Uuid, job_id: i64) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    mark_failed(&mut *tx, user_id).await?;
    match delete_job(&mut *tx, job_id).await {
        Ok(()) | Err(sqlx::Error::RowNotFound) => {}
        Err(e) => return Err(e),
    }
    tx.commit().await
}

pub async fn username_of(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        r#"SELECT username::text AS "username!" FROM users WHERE id = $1"#,
        user_id
    )
    .fetch_optional(db)
    .await
}

/// Drops every role granted in voxgate (a deleted user keeps none).
pub async fn clear_roles(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM user_roles WHERE user_id = $1", user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Records a Keycloak user voxgate had no row for, with the realm roles
/// they hold in effect; they have not signed in yet.
pub async fn insert_from_keycloak(
    db: impl PgExecutor<'_>,
    keycloak_id: &str,
    username: &str,
    email: Option<&str>,
    enabled: bool,
    realm_roles: &[String],
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO users (keycloak_id, username, email, enabled, status, keycloak_roles)
         VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT (keycloak_id) DO NOTHING",
        keycloak_id,
        username as _,
        email as _,
        enabled,
        realm_roles,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Sagas that have not moved for five minutes: (username, step).
pub async fn stuck_jobs(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, JobStep)>> {
    let rows = sqlx::query!(
        r#"SELECT u.username::text AS "username!", j.step AS "step: JobStep" FROM provisioning_jobs j
          JOIN users u ON u.id = j.user_id WHERE j.updated_at < now() - interval '5 minutes'"#,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.username, r.step)).collect())
}
