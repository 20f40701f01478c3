//! How the speech cache is written: one writer per entry, chunks batched
//! while a write waits without holding listeners back, a failed write that
//! ends caching but not the audio, and a pool of its own for the writes.

use std::time::Duration;

use futures::StreamExt;

use crate::stack::{Stack, spawn_stack};

use super::helpers::{joanna, polly, polly_with_bob, wait_for_count};

#[tokio::test]
async fn only_the_instance_that_started_a_cache_entry_may_write_it() {
    use voxgate::tts::cache;
    let stack = spawn_stack().await;
    let db = &stack.app.db;
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert_eq!(
        cache::begin(db, "k", "audio/mpeg", a).await.unwrap(),
        cache::Claim::Claimed
    );
    assert_eq!(
        cache::begin(db, "k", "audio/mpeg", b).await.unwrap(),
        cache::Claim::Busy,
        "a second writer does not take over"
    );
    cache::append(db, "k", a, 0, 0, b"abc").await.unwrap();
    assert!(cache::append(db, "k", b, 1, 3, b"xyz").await.is_err());
    assert!(
        cache::finish(db, "k", b, 3, None, "e", 1 << 30)
            .await
            .is_err()
    );
    cache::finish(db, "k", a, 3, None, "e", 1 << 30)
        .await
        .unwrap();
    assert_eq!(
        cache::load(db, "k").await.unwrap().unwrap().data.as_ref(),
        b"abc"
    );
    // A gap or a wrong size is never served.
    assert_eq!(
        cache::begin(db, "g", "audio/mpeg", a).await.unwrap(),
        cache::Claim::Claimed
    );
    cache::append(db, "g", a, 0, 0, b"abc").await.unwrap();
    cache::append(db, "g", a, 2, 6, b"xyz").await.unwrap();
    cache::finish(db, "g", a, 6, None, "e", 1 << 30)
        .await
        .unwrap();
    assert!(cache::load(db, "g").await.unwrap().is_none());
}

/// While a cache write waits (its entry's row held by another
/// transaction), the audio keeps flowing: the chunks that arrive meanwhile
/// go to the table together in the next write, and a listener who joins
/// then still gets every byte, from memory, because no chunk leaves memory
/// before it is stored.
#[tokio::test]
async fn chunks_that_arrive_during_a_slow_cache_write_are_stored_together_and_reach_late_listeners()
{
    let (stack, token) = polly_with_bob().await;
    // The claim (the entry's row) is made before the first chunk arrives.
    polly(&stack).set_first_byte_delay(Duration::from_millis(1500));
    let text = "While the database is slow, the audio keeps coming and no one misses a byte. ";
    let query = joanna(text);
    let db = stack.app.db.clone();
    let first = async {
        let r = stack.tts_get(&token, &query).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap()
    };
    let late = async {
        let held = hold_the_claimed_entry(&stack, &db).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            stack.app.count("SELECT count(*) FROM tts_chunks").await,
            0,
            "the cache writes are waiting"
        );
        let joined = stack.tts_get(&token, &query).await;
        assert_eq!(joined.status(), 200);
        let release = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            held.rollback().await.unwrap();
        };
        let (body, ()) = tokio::join!(joined.bytes(), release);
        body.expect("the late listener gets the whole stream")
    };
    let (first, late) = tokio::join!(first, late);
    assert!(
        first.len() > 8 * 1024,
        "several chunks ({} bytes)",
        first.len()
    );
    assert_eq!(late, first, "the late listener got every byte");
    assert_eq!(polly(&stack).synth_calls(), 1, "one synthesis for both");
    wait_for_count(&stack, "SELECT count(*) FROM tts_cache WHERE complete", 1).await;
    let (chunks, writes): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT xmin::text) FROM tts_chunks")
            .fetch_one(&stack.app.db)
            .await
            .unwrap();
    assert!(
        writes < chunks,
        "chunks that waited were stored in fewer statements ({chunks} chunks, {writes} writes)"
    );
    let cached = stack.tts_get(&token, &query).await;
    assert_eq!(cached.headers()["x-voxgate-cache"], "hit");
    assert_eq!(
        cached.bytes().await.unwrap(),
        first,
        "the cached copy is whole"
    );
}

/// Waits until a synthesis has claimed its cache entry, then locks the
/// entry's row. Chunk inserts check that row (a foreign key), so every cache
/// write waits until the returned transaction ends.
async fn hold_the_claimed_entry(
    stack: &Stack,
    db: &sqlx::PgPool,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    for _ in 0..300 {
        if stack.app.count("SELECT count(*) FROM tts_cache").await == 1 {
            let mut held = db.begin().await.unwrap();
            sqlx::query("SELECT 1 FROM tts_cache FOR UPDATE")
                .execute(&mut *held)
                .await
                .unwrap();
            return held;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the synthesis never claimed its cache entry");
}

/// A cache write that fails while reading is paused for it (the read-ahead
/// limit reached) ends caching for that synthesis, not the synthesis: every
/// listener still gets the whole stream.
#[tokio::test]
async fn a_cache_write_that_fails_while_reading_waits_for_it_still_delivers_every_byte() {
    let (stack, token) = polly_with_bob().await;
    polly(&stack).set_first_byte_delay(Duration::from_millis(1500));
    let text = "This reply is long enough that its audio is several times larger than \
                what may be read ahead of the cache table while a write is waiting, \
                so the leader has to stop and wait for that write to end. When the \
                write fails, caching ends, and the rest of the audio still flows.";
    let query = joanna(text);
    let db = stack.app.db.clone();
    let received = std::sync::atomic::AtomicUsize::new(0);
    let listen = async {
        let r = stack.tts_get(&token, &query).await;
        assert_eq!(r.status(), 200);
        let mut body = r.bytes_stream();
        let mut all = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("the stream goes on after the cache write failed");
            all.extend_from_slice(&chunk);
            received.store(all.len(), std::sync::atomic::Ordering::SeqCst);
        }
        all
    };
    let break_the_write = async {
        let mut held = hold_the_claimed_entry(&stack, &db).await;
        // Everything read so far waits for the first write.
        for _ in 0..400 {
            if received.load(std::sync::atomic::Ordering::SeqCst) >= 32 * 1024 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            received.load(std::sync::atomic::Ordering::SeqCst) >= 32 * 1024,
            "the listener got the read-ahead before the write ended"
        );
        // The waiting insert's foreign key now finds no entry: it fails.
        sqlx::query("DELETE FROM tts_cache")
            .execute(&mut *held)
            .await
            .unwrap();
        held.commit().await.unwrap();
    };
    let (heard, ()) = tokio::join!(listen, break_the_write);
    assert!(
        heard.len() > 64 * 1024,
        "a long reply ({} bytes)",
        heard.len()
    );
    assert_eq!(stack.app.count("SELECT count(*) FROM tts_cache").await, 0);
    polly(&stack).set_first_byte_delay(Duration::ZERO);
    let again = stack.tts_get(&token, &query).await;
    assert_eq!(
        again.headers()["x-voxgate-cache"],
        "miss",
        "nothing was cached"
    );
    assert_eq!(
        again.bytes().await.unwrap(),
        heard,
        "every byte was delivered"
    );
}

/// Cache writes go through their own pool, whose commits do not wait for
/// the disk; everything else stays on the durable pool.
#[tokio::test]
async fn the_speech_cache_writes_through_its_own_pool_without_waiting_for_the_disk() {
    let (stack, token) = polly_with_bob().await;
    let cache_connections = "SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'voxgate-cache'";
    assert_eq!(
        stack.app.count(cache_connections).await,
        0,
        "the cache pool connects on first use"
    );
    let r = stack.say(&token, "Stored through the cache pool.").await;
    assert_eq!(r.headers()["x-voxgate-cache"], "miss");
    r.bytes().await.unwrap();
    assert!(
        stack.app.count(cache_connections).await > 0,
        "the cache write went through the cache pool"
    );
    let setting = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let cache = voxgate::db::connect_cache(&stack.app.state.config).unwrap();
    assert_eq!(setting(cache).await, "off");
    assert_eq!(setting(stack.app.state.db.clone()).await, "on");
}
