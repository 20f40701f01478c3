//! Per-user cost bounds, kept in Postgres so they hold across instances: a
//! request rate per minute and a daily character quota (charged only when
//! audio is actually synthesized — cache hits are free).

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ApiError;

/// Counts a request in the user's current one-minute window.
pub async fn check_rate(db: &PgPool, user: Uuid, per_minute: u32) -> Result<(), ApiError> {
    let (count, window_start): (i32, OffsetDateTime) = sqlx::query_as(
        "INSERT INTO tts_rate (user_id, window_start, count) VALUES ($1, now(), 1)
         ON CONFLICT (user_id) DO UPDATE SET
           count = CASE WHEN tts_rate.window_start <= now() - interval '1 minute' THEN 1 ELSE tts_rate.count + 1 END,
           window_start = CASE WHEN tts_rate.window_start <= now() - interval '1 minute' THEN now() ELSE tts_rate.window_start END
         RETURNING count, window_start",
    )
    .bind(user)
    .fetch_one(db)
    .await?;
    if count as u32 > per_minute {
        let reset = window_start + time::Duration::minutes(1) - OffsetDateTime::now_utc();
        let retry_after = reset.whole_seconds().clamp(1, 60) as u64;
        metrics::counter!("voxgate_tts_rejected_total", "reason" => "rate").increment(1);
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "Too many speech requests: at most {per_minute} a minute. Try again in {retry_after} s."
            ),
            retry_after,
        });
    }
    Ok(())
}

/// Charges `chars` to today's quota, refusing if it would go over.
pub async fn charge(db: &PgPool, user: Uuid, chars: i64, daily: i64) -> Result<(), ApiError> {
    let charged: Option<i64> = sqlx::query_scalar(
        "INSERT INTO tts_usage (user_id, day, chars) SELECT $1, (now() AT TIME ZONE 'UTC')::date, $2 WHERE $2 <= $3
         ON CONFLICT (user_id, day) DO UPDATE SET chars = tts_usage.chars + EXCLUDED.chars
           WHERE tts_usage.chars + EXCLUDED.chars <= $3
         RETURNING chars",
    )
    .bind(user)
    .bind(chars)
    .bind(daily)
    .fetch_optional(db)
    .await?;
    if charged.is_none() {
        let now = OffsetDateTime::now_utc();
        let midnight = (now.date() + time::Duration::days(1))
            .midnight()
            .assume_utc();
        let retry_after = (midnight - now).whole_seconds().max(1) as u64;
        metrics::counter!("voxgate_tts_rejected_total", "reason" => "quota").increment(1);
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "Daily speech quota of {daily} characters used up; it resets at midnight UTC."
            ),
            retry_after,
        });
    }
    Ok(())
}

/// Gives characters back when a synthesis failed.
pub async fn refund(db: &PgPool, user: Uuid, chars: i64) {
    let _ = sqlx::query("UPDATE tts_usage SET chars = greatest(chars - $2, 0) WHERE user_id = $1 AND day = (now() AT TIME ZONE 'UTC')::date")
        .bind(user)
        .bind(chars)
        .execute(db)
        .await;
}
