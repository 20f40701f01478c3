//! The Postgres side of the audio cache: entries stored in chunks as the
//! audio streams in, claimed by one writer, read whole or a few chunks at
//! a time, and evicted least recently used first.

use bytes::{Bytes, BytesMut};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Entry, Found, MEMORY_ENTRY_MAX, Stored, etag_of};

struct Meta {
    content_type: String,
    size: i64,
    duration_ms: Option<i64>,
    etag: Option<String>,
    bucket_object: Option<String>,
    stale_access: bool,
}

/// A stored chunk as a range read takes it.
struct StoredChunk {
    seq: i32,
    offset_bytes: i64,
    data: Vec<u8>,
}

/// Chunks read per query when streaming a large entry: with the chunk
/// sizes speech arrives in (a few KiB to 16 KiB), tens of KiB per stream.
const STREAM_BATCH: i64 = 4;

/// The complete entry for `key`, if cached in Postgres and intact, read
/// whole (speech marks, which never move to the bucket).
pub async fn load(db: &PgPool, key: &str) -> sqlx::Result<Option<Entry>> {
    let Some(meta) = meta(db, key).await? else {
        return Ok(None);
    };
    if meta.bucket_object.is_some() {
        return Ok(None);
    }
    read_whole(db, key, meta).await
}

/// The entry for `key`: read whole when small, described when large (to
/// be streamed with [`stream_range`]).
pub async fn lookup(db: &PgPool, key: &str) -> sqlx::Result<Option<Found>> {
    let Some(mut meta) = meta(db, key).await? else {
        return Ok(None);
    };
    if let Some(object) = meta.bucket_object.take() {
        return Ok(Some(Found::Bucket {
            stored: Stored {
                content_type: meta.content_type,
                size: meta.size as u64,
                duration_ms: meta.duration_ms,
                etag: meta.etag,
            },
            object,
        }));
    }
    if meta.size > MEMORY_ENTRY_MAX as i64 {
        return Ok(Some(Found::Large(Stored {
            content_type: meta.content_type,
            size: meta.size as u64,
            duration_ms: meta.duration_ms,
            etag: meta.etag,
        })));
    }
    Ok(read_whole(db, key, meta).await?.map(Found::Whole))
}

async fn meta(db: &PgPool, key: &str) -> sqlx::Result<Option<Meta>> {
    let meta = sqlx::query_as!(
        Meta,
        r#"SELECT content_type, size, duration_ms, etag, bucket_object,
                  last_access_at < now() - interval '1 minute' AS "stale_access!"
             FROM tts_cache WHERE key = $1 AND complete"#,
        key,
    )
    .fetch_optional(db)
    .await?;
    let Some(meta) = meta else { return Ok(None) };
    if meta.stale_access {
        // LRU bookkeeping at most once a minute, off the request path.
        let db = db.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            let _ = sqlx::query!(
                "UPDATE tts_cache SET last_access_at = now() WHERE key = $1",
                key
            )
            .execute(&db)
            .await;
        });
    }
    Ok(Some(meta))
}

async fn read_whole(db: &PgPool, key: &str, meta: Meta) -> sqlx::Result<Option<Entry>> {
    let chunks = sqlx::query!(
        "SELECT seq, data FROM tts_chunks WHERE key = $1 ORDER BY seq",
        key
    )
    .fetch_all(db)
    .await?;
    let mut data = BytesMut::with_capacity(meta.size.max(0) as usize);
    for (expected, c) in chunks.iter().enumerate() {
        if c.seq != expected as i32 {
            discard(db, key, "has a gap").await;
            return Ok(None);
        }
        data.extend_from_slice(&c.data);
    }
    if data.len() as i64 != meta.size {
        discard(db, key, "has the wrong size").await;
        return Ok(None);
    }
    Ok(Some(Entry {
        content_type: meta.content_type,
        data: data.freeze(),
        duration_ms: meta.duration_ms,
        etag: meta.etag,
    }))
}

/// A damaged entry goes: the next request synthesizes it again. An entry
/// that moved to the bucket meanwhile is not damaged: its chunks went.
async fn discard(db: &PgPool, key: &str, why: &str) {
    tracing::warn!(key, "cached audio {why}; discarding it");
    let _ = sqlx::query!(
        "DELETE FROM tts_cache WHERE key = $1 AND complete AND bucket_object IS NULL",
        key
    )
    .execute(db)
    .await;
}

/// Forgets the entry that pointed at `object` (which went missing), and
/// only it: a new synthesis of the key may have claimed it again since.
pub async fn forget(db: &PgPool, key: &str, object: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM tts_cache WHERE key = $1 AND bucket_object = $2",
        key,
        object
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Bytes `start..=end` of a complete entry, read from Postgres
/// [`STREAM_BATCH`] chunks at a time as the client takes them. The first
/// chunk of a range is found by offset among the entry's chunks (an index
/// walk over the chunks before it, no data read); from there on by `seq`.
/// A gap or a short entry ends the stream with an error (the client sees
/// fewer bytes than Content-Length) and discards the entry.
pub fn stream_range(
    db: PgPool,
    key: String,
    start: u64,
    end: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    struct Reader {
        db: PgPool,
        key: String,
        /// The next byte to send.
        at: u64,
        end: u64,
        next_seq: Option<i32>,
        /// Where the next chunk must begin.
        expected: Option<u64>,
        batch: std::collections::VecDeque<StoredChunk>,
    }
    let reader = Reader {
        db,
        key,
        at: start,
        end,
        next_seq: None,
        expected: None,
        batch: Default::default(),
    };
    futures::stream::try_unfold(reader, |mut r| async move {
        loop {
            if r.at > r.end {
                return Ok(None);
            }
            if let Some(StoredChunk {
                seq,
                offset_bytes: offset,
                data,
            }) = r.batch.pop_front()
            {
                let (offset, len) = (offset as u64, data.len() as u64);
                let starts_right = match r.expected {
                    Some(expected) => offset == expected,
                    None => offset <= r.at && r.at < offset + len,
                };
                if !starts_right || len == 0 {
                    discard(&r.db, &r.key, "has a gap").await;
                    return Err(std::io::Error::other("cached audio has a gap"));
                }
                r.expected = Some(offset + len);
                r.next_seq = Some(seq + 1);
                let from = (r.at - offset) as usize;
                let to = (r.end - offset).min(len - 1) as usize;
                r.at = offset + to as u64 + 1;
                return Ok(Some((Bytes::from(data).slice(from..=to), r)));
            }
            let rows = match r.next_seq {
                Some(seq) => {
                    sqlx::query_as!(
                        StoredChunk,
                        "SELECT seq, offset_bytes, data FROM tts_chunks
                      WHERE key = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                        r.key,
                        seq,
                        STREAM_BATCH,
                    )
                    .fetch_all(&r.db)
                    .await
                }
                None => {
                    sqlx::query_as!(
                        StoredChunk,
                        "SELECT seq, offset_bytes, data FROM tts_chunks
                      WHERE key = $1 AND seq >= (SELECT coalesce(max(seq), 0) FROM tts_chunks
                                                  WHERE key = $1 AND offset_bytes <= $2)
                      ORDER BY seq LIMIT $3",
                        r.key,
                        r.at as i64,
                        STREAM_BATCH,
                    )
                    .fetch_all(&r.db)
                    .await
                }
            }
            .map_err(std::io::Error::other)?;
            if rows.is_empty() {
                discard(&r.db, &r.key, "is shorter than recorded").await;
                return Err(std::io::Error::other(
                    "cached audio is shorter than recorded",
                ));
            }
            r.batch.extend(rows);
        }
    })
}

pub async fn duration_ms(db: &PgPool, key: &str) -> sqlx::Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT duration_ms FROM tts_cache WHERE key = $1 AND complete",
        key
    )
    .fetch_optional(db)
    .await?
    .flatten())
}

/// The size of `key`'s complete entry, if there is one.
pub async fn complete_size(db: &PgPool, key: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "SELECT size FROM tts_cache WHERE key = $1 AND complete",
        key
    )
    .fetch_optional(db)
    .await
}

/// What `begin` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This writer owns the new entry.
    Claimed,
    /// The entry is already complete: serve it instead of synthesizing.
    Complete,
    /// Another writer is at it (here or on another instance): stream
    /// without caching.
    Busy,
}

/// How often a writer beats its heart on its entry's row.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// An unfinished entry whose writer has not beaten its heart for this long
/// is taken to be abandoned (its instance died): it may be taken over.
/// Well above a heartbeat plus the cache pool's 5 s wait for a connection,
/// so a writer held up by a busy pool is not taken for dead.
pub const STALE_AFTER_SECONDS: f64 = 12.0;

/// Postgres channel on which writers announce new chunks and the end of an
/// entry (payload: the key), so followers on other instances need not poll.
pub const CHANNEL: &str = "voxgate_tts_cache";

/// Claims the right to write `key`, in one round trip in the common case.
/// An unfinished entry whose writer stopped beating its heart (see
/// [`STALE_AFTER_SECONDS`]) is taken over.
pub async fn begin(
    db: &PgPool,
    key: &str,
    content_type: &str,
    writer: Uuid,
) -> sqlx::Result<Claim> {
    let found = sqlx::query!(
        r#"WITH ins AS (
             INSERT INTO tts_cache (key, content_type, writer) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO NOTHING RETURNING 1)
           SELECT EXISTS (SELECT 1 FROM ins) AS "claimed!",
                  EXISTS (SELECT 1 FROM tts_cache WHERE key = $1 AND complete) AS "complete!""#,
        key,
        content_type,
        writer,
    )
    .fetch_one(db)
    .await?;
    let (claimed, complete) = (found.claimed, found.complete);
    if claimed {
        return Ok(Claim::Claimed);
    }
    if complete {
        return Ok(Claim::Complete);
    }
    let stale = sqlx::query!(
        "DELETE FROM tts_cache WHERE key = $1 AND NOT complete
            AND beat_at < now() - make_interval(secs => $2)",
        key,
        STALE_AFTER_SECONDS,
    )
    .execute(db)
    .await?
    .rows_affected();
    if stale == 0 {
        return Ok(Claim::Busy);
    }
    let retaken = sqlx::query!(
        "INSERT INTO tts_cache (key, content_type, writer) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
        key,
        content_type,
        writer,
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(if retaken == 1 {
        Claim::Claimed
    } else {
        Claim::Busy
    })
}

/// One piece of an entry: its place in the sequence and in the bytes.
pub struct Chunk {
    pub seq: i32,
    pub offset: i64,
    pub data: Bytes,
}

/// Appends a chunk; fails unless `writer` owns the unfinished entry.
pub async fn append(
    db: &PgPool,
    key: &str,
    writer: Uuid,
    seq: i32,
    offset: i64,
    data: &[u8],
) -> sqlx::Result<()> {
    let data = Bytes::copy_from_slice(data);
    append_all(db, key, writer, &[Chunk { seq, offset, data }]).await
}

/// Appends chunks in one statement (one commit, however many chunks);
/// fails, storing none, unless `writer` owns the unfinished entry.
pub async fn append_all(
    db: &PgPool,
    key: &str,
    writer: Uuid,
    chunks: &[Chunk],
) -> sqlx::Result<()> {
    let seqs: Vec<i32> = chunks.iter().map(|c| c.seq).collect();
    let offsets: Vec<i64> = chunks.iter().map(|c| c.offset).collect();
    let data: Vec<&[u8]> = chunks.iter().map(|c| c.data.as_ref()).collect();
    // Followers elsewhere hear of the new chunks when this commits.
    let stored = sqlx::query_scalar!(
        r#"WITH ins AS (
             INSERT INTO tts_chunks (key, seq, offset_bytes, data)
             SELECT $1, c.seq, c.offset_bytes, c.data
               FROM unnest($3::int4[], $4::int8[], $5::bytea[]) AS c(seq, offset_bytes, data)
              WHERE EXISTS (SELECT 1 FROM tts_cache WHERE key = $1 AND writer = $2 AND NOT complete)
             RETURNING 1)
           SELECT count(*) AS "stored!" FROM ins, LATERAL (SELECT pg_notify($6, $1)) AS told"#,
        key,
        writer,
        &seqs,
        &offsets,
        &data as &[&[u8]],
        CHANNEL,
    )
    .fetch_one(db)
    .await?;
    if stored == chunks.len() as i64 {
        Ok(())
    } else {
        Err(sqlx::Error::RowNotFound)
    }
}

/// Up to a small batch of chunks `from..to`, in order.
pub async fn chunks_between(
    db: &PgPool,
    key: &str,
    from: i32,
    to: i32,
) -> sqlx::Result<Vec<(i32, Vec<u8>)>> {
    let rows = sqlx::query!(
        "SELECT seq, data FROM tts_chunks WHERE key = $1 AND seq >= $2 AND seq < $3 ORDER BY seq LIMIT 16",
        key,
        from,
        to,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.seq, r.data)).collect())
}

/// Marks an entry complete, then evicts least recently used entries until
/// the cache fits its bound.
pub async fn finish(
    db: &PgPool,
    key: &str,
    writer: Uuid,
    size: i64,
    duration_ms: Option<i64>,
    etag: &str,
    max_bytes: i64,
) -> sqlx::Result<()> {
    let done = sqlx::query_scalar!(
        r#"WITH done AS (
             UPDATE tts_cache SET complete = true, size = $3, duration_ms = $4, etag = $5, last_access_at = now()
              WHERE key = $1 AND writer = $2 AND NOT complete RETURNING 1)
           SELECT count(*) AS "done!" FROM done, LATERAL (SELECT pg_notify($6, $1)) AS told"#,
        key,
        writer,
        size,
        duration_ms,
        etag,
        CHANNEL,
    )
    .fetch_one(db)
    .await?;
    if done != 1 {
        return Err(sqlx::Error::RowNotFound);
    }
    evict(db, max_bytes).await
}

/// Least recently used entries go until the cache fits `max_bytes`. The
/// total is kept by a trigger (`tts_cache_usage`), so a cache under its
/// bound costs one row read; over it, the fewest oldest entries that free
/// enough are found through the LRU index, at most [`EVICT_BATCH`] per
/// round.
pub async fn evict(db: &PgPool, max_bytes: i64) -> sqlx::Result<()> {
    loop {
        let over = sqlx::query_scalar!(
            r#"SELECT bytes > $1 AS "over!" FROM tts_cache_usage WHERE id"#,
            max_bytes
        )
        .fetch_optional(db)
        .await?
        .unwrap_or(false);
        if !over {
            return Ok(());
        }
        let evicted = sqlx::query!(
            "WITH excess AS (
               SELECT bytes - $1 AS bytes FROM tts_cache_usage WHERE id
             ), oldest AS (
               SELECT key, size, last_access_at FROM tts_cache WHERE complete
                ORDER BY last_access_at, key LIMIT $2
             ), freed AS (
               SELECT key, sum(size) OVER (ORDER BY last_access_at, key) - size AS before
                 FROM oldest
             )
             DELETE FROM tts_cache WHERE key IN (
               SELECT key FROM freed, excess WHERE freed.before < excess.bytes)",
            max_bytes,
            EVICT_BATCH,
        )
        .execute(db)
        .await?;
        if evicted.rows_affected() < EVICT_BATCH as u64 {
            return Ok(());
        }
    }
}

/// Entries one eviction round may delete.
const EVICT_BATCH: i64 = 500;

/// Drops this writer's unfinished entry (failed or cut stream): never
/// cached, and its followers elsewhere hear that it is gone.
pub async fn abandon(db: &PgPool, key: &str, writer: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        r#"WITH gone AS (
             DELETE FROM tts_cache WHERE key = $1 AND writer = $2 AND NOT complete RETURNING 1)
           SELECT count(*) AS "gone!" FROM gone, LATERAL (SELECT pg_notify($3, $1)) AS told"#,
        key,
        writer,
        CHANNEL,
    )
    .fetch_one(db)
    .await?;
    Ok(())
}

/// Says that `writer` is still at `key`; false once the entry is no
/// longer its own unfinished one.
pub async fn beat(db: &PgPool, key: &str, writer: Uuid) -> sqlx::Result<bool> {
    let beaten = sqlx::query!(
        "UPDATE tts_cache SET beat_at = now() WHERE key = $1 AND writer = $2 AND NOT complete",
        key,
        writer,
    )
    .execute(db)
    .await?;
    Ok(beaten.rows_affected() == 1)
}

/// An entry as somebody following its writer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writing {
    pub writer: Uuid,
    pub complete: bool,
    /// The entry's size once complete.
    pub size: i64,
    /// The writer stopped beating its heart: its instance is gone.
    pub stale: bool,
}

/// The state of `key`'s entry, if there is one.
pub async fn writing(db: &PgPool, key: &str) -> sqlx::Result<Option<Writing>> {
    sqlx::query_as!(
        Writing,
        r#"SELECT writer, complete, size,
                  (NOT complete AND beat_at < now() - make_interval(secs => $2)) AS "stale!"
             FROM tts_cache WHERE key = $1"#,
        key,
        STALE_AFTER_SECONDS,
    )
    .fetch_optional(db)
    .await
}

/// Up to a small batch of chunks from `from` on of the entry `writer`
/// writes (or wrote): never chunks of a writer that took over since.
pub async fn chunks_of(
    db: &PgPool,
    key: &str,
    writer: Uuid,
    from: i32,
) -> sqlx::Result<Vec<(i32, Vec<u8>)>> {
    let rows = sqlx::query!(
        "SELECT c.seq, c.data FROM tts_chunks c JOIN tts_cache e ON e.key = c.key
          WHERE c.key = $1 AND e.writer = $2 AND c.seq >= $3 ORDER BY c.seq LIMIT 16",
        key,
        writer,
        from,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.seq, r.data)).collect())
}

/// Says that somebody on another instance listens to `key`'s writer.
pub async fn followed(db: &PgPool, key: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE tts_cache SET followed_at = now() WHERE key = $1 AND NOT complete",
        key
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Whether somebody on another instance said they listened to `key`
/// within the last few heartbeats.
pub async fn followed_lately(db: &PgPool, key: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT followed_at > now() - make_interval(secs => $2) AS "lately!"
             FROM tts_cache WHERE key = $1 AND followed_at IS NOT NULL"#,
        key,
        STALE_AFTER_SECONDS / 2.0,
    )
    .fetch_optional(db)
    .await?
    .unwrap_or(false))
}

/// Deletes `writer`'s unfinished entry once its heart stopped: what a dead
/// instance left half-written is never served.
pub async fn drop_stale(db: &PgPool, key: &str, writer: Uuid) -> sqlx::Result<bool> {
    let dropped = sqlx::query!(
        "DELETE FROM tts_cache WHERE key = $1 AND writer = $2 AND NOT complete
            AND beat_at < now() - make_interval(secs => $3)",
        key,
        writer,
        STALE_AFTER_SECONDS,
    )
    .execute(db)
    .await?;
    Ok(dropped.rows_affected() == 1)
}

/// Stores a small finished entry in one go (speech marks).
pub async fn store_whole(
    db: &PgPool,
    key: &str,
    content_type: &str,
    data: &[u8],
    max_bytes: i64,
) -> sqlx::Result<()> {
    use sha2::Digest;
    let writer = Uuid::new_v4();
    if begin(db, key, content_type, writer).await? != Claim::Claimed {
        return Ok(());
    }
    append(db, key, writer, 0, 0, data).await?;
    let etag = etag_of(&sha2::Sha256::digest(data));
    finish(db, key, writer, data.len() as i64, None, &etag, max_bytes).await
}
