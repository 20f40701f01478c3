//! Per-user cost bounds, kept in Postgres so they hold across instances:
//! requests per minute and a daily budget. The mechanism is shared; what
//! is metered is each feature's [`Meter`]: speech (characters synthesised),
//! listening (seconds heard) and chat (messages, and characters sent to and
//! from the language model). Every statement on the meters' tables is here.
//!
//! These statements stay dynamic (not sqlx's checked macros): one
//! mechanism serves every meter, and the table and column names come from
//! each [`Meter`]'s constants, never from input. The meters' tables are
//! exercised by each feature's limit tests instead.

use sqlx::{PgExecutor, PgPool};
use time::Date;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ApiError;

/// What is being metered: a pair of tables (requests per minute, amount
/// per day) and how refusals are worded and counted. Each feature declares
/// its own meter beside the code it meters (`tts::METER`,
/// `chat::METER`); table names come from those constants, never from input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meter {
    pub rate_table: &'static str,
    pub usage_table: &'static str,
    /// The usage table's amount column.
    pub amount: &'static str,
    /// What the amount counts ("characters").
    pub unit: &'static str,
    /// What a request is called in a refusal ("speech requests").
    pub requests: &'static str,
    /// What the daily amount is called ("speech quota").
    pub budget: &'static str,
    /// The counter of refusals, labelled by `reason`.
    pub metric: &'static str,
}

/// An amount charged to a user's day on a meter before what it pays for
/// happens: given back when it does not happen, added to when it cost
/// more. Made only by [`Charge::take`] (which charged it) or
/// [`Charge::none`] (for users the budget does not apply to), so a refund
/// never gives back what was not taken.
pub struct Charge {
    db: PgPool,
    meter: Meter,
    user: Uuid,
    amount: i64,
    /// The day charged: a refund after midnight goes back to it, not to
    /// the new day.
    day: Option<Date>,
}

impl Charge {
    /// Charges `amount` to today's budget of `daily` on `meter`, refusing
    /// (429, until midnight UTC) if it would go over. `db` runs the
    /// statement (a transaction, to charge with what it pays for); `pool`
    /// is for the refund or the addition later.
    pub async fn take(
        db: impl PgExecutor<'_>,
        pool: &PgPool,
        meter: Meter,
        user: Uuid,
        amount: i64,
        daily: i64,
    ) -> Result<Charge, ApiError> {
        let day = charge(db, meter, user, amount, daily).await?;
        Ok(Charge {
            db: pool.clone(),
            meter,
            user,
            amount,
            day: Some(day),
        })
    }

    /// Nothing charged: the budget does not apply to this user.
    pub fn none(pool: &PgPool, meter: Meter, user: Uuid) -> Charge {
        Charge {
            db: pool.clone(),
            meter,
            user,
            amount: 0,
            day: None,
        }
    }

    pub fn is_charged(&self) -> bool {
        self.day.is_some()
    }

    /// Gives the amount back: what it paid for did not happen.
    pub async fn refund(&self) {
        if let Some(day) = self.day {
            refund(&self.db, self.meter, self.user, self.amount, day).await;
        }
    }

    /// Adds what was spent on top (a model's reply, a recording longer
    /// than it claimed), without refusing.
    pub async fn add(&self, amount: i64) -> sqlx::Result<()> {
        if self.is_charged() && amount > 0 {
            record(&self.db, self.meter, self.user, amount).await?;
        }
        Ok(())
    }
}

/// Counts a request in the user's current one-minute window.
pub async fn check_rate(
    db: &PgPool,
    meter: Meter,
    user: Uuid,
    per_minute: u32,
) -> Result<(), ApiError> {
    let table = meter.rate_table;
    let (count, window_start): (i32, OffsetDateTime) = sqlx::query_as(&format!(
        "INSERT INTO {table} (user_id, window_start, count) VALUES ($1, now(), 1)
         ON CONFLICT (user_id) DO UPDATE SET
           count = CASE WHEN {table}.window_start <= now() - interval '1 minute' THEN 1 ELSE {table}.count + 1 END,
           window_start = CASE WHEN {table}.window_start <= now() - interval '1 minute' THEN now() ELSE {table}.window_start END
         RETURNING count, window_start"
    ))
    .bind(user)
    .fetch_one(db)
    .await?;
    if count as u32 > per_minute {
        let reset = window_start + time::Duration::minutes(1) - OffsetDateTime::now_utc();
        let retry_after = reset.whole_seconds().clamp(1, 60) as u64;
        metrics::counter!(meter.metric, "reason" => "rate").increment(1);
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "Too many {}: at most {per_minute} a minute. Try again in {retry_after} s.",
                meter.requests
            ),
            retry_after,
        });
    }
    Ok(())
}

/// Charges `amount` to today's budget, refusing if it would go over;
/// returns the day charged.
async fn charge(
    db: impl PgExecutor<'_>,
    meter: Meter,
    user: Uuid,
    amount: i64,
    daily: i64,
) -> Result<Date, ApiError> {
    let (table, column) = (meter.usage_table, meter.amount);
    let charged: Option<Date> = sqlx::query_scalar(&format!(
        "INSERT INTO {table} (user_id, day, {column}) SELECT $1, (now() AT TIME ZONE 'UTC')::date, $2 WHERE $2 <= $3
         ON CONFLICT (user_id, day) DO UPDATE SET {column} = {table}.{column} + EXCLUDED.{column}
           WHERE {table}.{column} + EXCLUDED.{column} <= $3
         RETURNING day"
    ))
    .bind(user)
    .bind(amount)
    .bind(daily)
    .fetch_optional(db)
    .await?;
    let Some(day) = charged else {
        let retry_after = (next_reset() - OffsetDateTime::now_utc())
            .whole_seconds()
            .max(1) as u64;
        metrics::counter!(meter.metric, "reason" => "quota").increment(1);
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "Daily {} of {daily} {} used up; it resets at midnight UTC.",
                meter.budget, meter.unit
            ),
            retry_after,
        });
    };
    Ok(day)
}

/// Adds `amount` to today's usage without refusing (what was already
/// spent, such as a model's reply).
async fn record(
    db: impl PgExecutor<'_>,
    meter: Meter,
    user: Uuid,
    amount: i64,
) -> sqlx::Result<()> {
    let (table, column) = (meter.usage_table, meter.amount);
    sqlx::query(&format!(
        "INSERT INTO {table} (user_id, day, {column}) VALUES ($1, (now() AT TIME ZONE 'UTC')::date, $2)
         ON CONFLICT (user_id, day) DO UPDATE SET {column} = {table}.{column} + EXCLUDED.{column}"
    ))
    .bind(user)
    .bind(amount)
    .execute(db)
    .await?;
    Ok(())
}

/// Gives an amount back to the day it was charged to.
async fn refund(db: &PgPool, meter: Meter, user: Uuid, amount: i64, day: Date) {
    let (table, column) = (meter.usage_table, meter.amount);
    let _ = sqlx::query(&format!(
        "UPDATE {table} SET {column} = greatest({column} - $2, 0) WHERE user_id = $1 AND day = $3"
    ))
    .bind(user)
    .bind(amount)
    .bind(day)
    .execute(db)
    .await;
}

/// What `user` has used of `meter`'s daily budget today (UTC).
pub async fn used_today(db: &PgPool, meter: Meter, user: Uuid) -> sqlx::Result<i64> {
    let (table, column) = (meter.usage_table, meter.amount);
    // Table and column names come from the meter's constants, never input.
    let used: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT {column} FROM {table} WHERE user_id = $1 AND day = (now() AT TIME ZONE 'UTC')::date"
    ))
    .bind(user)
    .fetch_optional(db)
    .await?;
    Ok(used.unwrap_or(0))
}

/// The next midnight UTC, when daily budgets start again.
pub fn next_reset() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    (now.date() + time::Duration::days(1))
        .midnight()
        .assume_utc()
}

/// Drops windows and days that no limit reads any more.
pub async fn sweep(db: &PgPool, meters: &[Meter]) -> sqlx::Result<()> {
    for meter in meters {
        sqlx::query(&format!(
            "DELETE FROM {} WHERE window_start < now() - interval '1 hour'",
            meter.rate_table
        ))
        .execute(db)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE day < (now() AT TIME ZONE 'UTC')::date - 1",
            meter.usage_table
        ))
        .execute(db)
        .await?;
    }
    Ok(())
}
