//! Finished entries move from Postgres to the audio bucket: each one as
//! it completes, older ones in batches (`voxgate audio move-to-bucket`).
//! Afterwards the chunks go (a little later, so a stream reading them
//! when the entry moved can finish), and objects of deleted entries are
//! deleted from the bucket.

use std::time::Duration;

use sqlx::PgPool;

use super::{Bucket, BucketError, store};

/// Why moving an entry failed.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("bucket: {0}")]
    Bucket(#[from] BucketError),
}

/// Moves `key`'s finished audio to the bucket; false when there is
/// nothing to move (not audio, not complete, moved already, gone).
pub async fn move_to_bucket(db: &PgPool, bucket: &Bucket, key: &str) -> Result<bool, MoveError> {
    let Some(entry) = store::load(db, key).await? else {
        return Ok(false);
    };
    let Some(etag) = entry.etag.clone() else {
        return Ok(false);
    };
    if !entry.content_type.starts_with("audio/") || entry.data.is_empty() {
        return Ok(false);
    }
    // A name of its own: deleting it if the entry changed meanwhile (moved
    // by somebody else, evicted) can touch nothing else.
    let object = bucket.object_name(key, &etag);
    bucket.put(&object, &entry.content_type, entry.data).await?;
    let moved = sqlx::query!(
        "UPDATE tts_cache SET bucket_object = $2, moved_at = now()
          WHERE key = $1 AND complete AND bucket_object IS NULL AND etag = $3",
        key,
        object,
        etag,
    )
    .execute(db)
    .await?;
    if moved.rows_affected() == 0 {
        // Evicted or replaced while it was being written.
        let _ = bucket.delete(&object).await;
        return Ok(false);
    }
    metrics::counter!("voxgate_tts_bucket_moves_total").increment(1);
    Ok(true)
}

/// What one batch of [`move_batch`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub moved: u64,
    pub failed: u64,
    /// Entries still in Postgres after the batch.
    pub left: i64,
}

/// Moves up to `limit` of the oldest finished entries still in Postgres.
pub async fn move_batch(db: &PgPool, bucket: &Bucket, limit: i64) -> Result<Moved, MoveError> {
    let keys = sqlx::query_scalar!(
        "SELECT key FROM tts_cache
          WHERE complete AND bucket_object IS NULL AND content_type LIKE 'audio/%'
            AND etag IS NOT NULL AND size > 0
          ORDER BY created_at LIMIT $1",
        limit,
    )
    .fetch_all(db)
    .await?;
    let mut report = Moved::default();
    for key in keys {
        match move_to_bucket(db, bucket, &key).await {
            Ok(true) => report.moved += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(key, error = %e, "moving cached audio to the bucket failed");
                report.failed += 1;
            }
        }
    }
    report.left = in_postgres(db).await?;
    Ok(report)
}

/// Finished audio entries whose bytes are still in Postgres.
pub async fn in_postgres(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM tts_cache
            WHERE complete AND bucket_object IS NULL AND content_type LIKE 'audio/%'
              AND etag IS NOT NULL AND size > 0"#
    )
    .fetch_one(db)
    .await
}

/// What one round of [`tidy`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tidied {
    pub objects_deleted: u64,
    pub chunks_dropped: u64,
}

/// Objects of each round of tidying.
const TIDY_BATCH: i64 = 200;

/// Deletes objects whose entries are gone, and the chunks of entries that
/// moved to the bucket more than `grace` ago.
pub async fn tidy(db: &PgPool, bucket: &Bucket, grace: Duration) -> Result<Tidied, MoveError> {
    let mut done = Tidied::default();
    let trash = sqlx::query_scalar!(
        "SELECT object FROM tts_bucket_trash ORDER BY trashed_at LIMIT $1",
        TIDY_BATCH
    )
    .fetch_all(db)
    .await?;
    let mut deleted = Vec::with_capacity(trash.len());
    for object in trash {
        match bucket.delete(&object).await {
            Ok(()) | Err(BucketError::Missing) => deleted.push(object),
            // Left in the trash for the next round.
            Err(e) => tracing::warn!(error = %e, "deleting an evicted audio object failed"),
        }
    }
    if !deleted.is_empty() {
        done.objects_deleted = sqlx::query!(
            "DELETE FROM tts_bucket_trash WHERE object = ANY($1)",
            &deleted
        )
        .execute(db)
        .await?
        .rows_affected();
    }
    done.chunks_dropped = sqlx::query!(
        "WITH moved AS (
           UPDATE tts_cache SET moved_at = NULL
            WHERE key IN (SELECT key FROM tts_cache
                           WHERE moved_at < now() - make_interval(secs => $1)
                           ORDER BY moved_at LIMIT $2)
           RETURNING key)
         DELETE FROM tts_chunks WHERE key IN (SELECT key FROM moved)",
        grace.as_secs_f64(),
        TIDY_BATCH,
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(done)
}
