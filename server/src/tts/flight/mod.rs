//! Single-flight synthesis: concurrent requests for the same key share one
//! upstream synthesis.
//!
//! A leader task (independent of any client connection, so one client
//! leaving does not cut the others) pulls audio from the engine, appends
//! every chunk to the cache table, and publishes it. Each client stream
//! follows the leader: fresh chunks come from a small in-memory window,
//! anything older from the cache table. Memory per synthesis stays at a few
//! chunks however long the audio, and a client that joins late still gets
//! every byte. A failed or cut stream aborts every follower and is removed
//! from the cache.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::{Notify, watch};

use super::cache;
use super::engine::{AudioStream, TtsError};

mod relay;

/// Stored chunks kept in memory for followers that are keeping up.
const WINDOW: usize = 2;

/// Bytes read ahead of the cache write before reading waits for it.
const MAX_UNSAVED_BYTES: usize = 32 * 1024;

#[derive(Default)]
struct Progress {
    /// Chunks published so far.
    published: i32,
    /// Chunks stored in the cache table so far; the window keeps the rest.
    saved: i32,
    window: VecDeque<(i32, Bytes)>,
    done: bool,
    failed: Option<TtsError>,
    /// If the cache cannot be written, keep everything in memory instead
    /// so followers still get every byte.
    persist_failed: bool,
}

impl Progress {
    /// Drops the oldest chunks beyond the window, but only stored ones: a
    /// chunk that left the window must be readable from the table.
    fn trim(&mut self) {
        if self.persist_failed {
            return;
        }
        while self.window.len() > WINDOW
            && self.window.front().is_some_and(|(s, _)| *s < self.saved)
        {
            self.window.pop_front();
        }
    }
}

pub struct Flight {
    key: String,
    progress: Mutex<Progress>,
    notify: Notify,
    /// `None` until the engine answered: `Ok` once audio flows, or the
    /// error that happened before the first byte.
    started: watch::Sender<Option<Result<(), TtsError>>>,
    /// Clients following it now; changed only under `Flights::active`'s lock
    /// when rising, so a flight stopped for want of listeners gains none.
    listeners: AtomicUsize,
    /// Woken when the last listener leaves.
    deserted: Notify,
}

/// A client's place on a flight: counted from the moment it joins, so a
/// flight whose every client left (or failed before following) can stop.
pub struct Listener {
    flight: Arc<Flight>,
}

impl Listener {
    fn join(flight: &Arc<Flight>) -> Listener {
        flight.listeners.fetch_add(1, Ordering::SeqCst);
        Listener {
            flight: flight.clone(),
        }
    }

    pub fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    /// Every byte of the synthesis, from the start, as it becomes
    /// available; the listener leaves when the stream is dropped.
    pub fn follow(self, db: PgPool) -> AudioStream {
        let flight = self.flight.clone();
        flight
            .follow(db)
            .map(move |chunk| {
                let _here = &self;
                chunk
            })
            .boxed()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.flight.listeners.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.flight.deserted.notify_waiters();
        }
    }
}

pub struct Flights {
    active: Mutex<HashMap<String, Arc<Flight>>>,
    /// Syntheses that may go on with nobody listening (to be cached), for
    /// everybody together, and at most one per user who started one: a
    /// user's slots are held by their own responses only (so they say
    /// nothing about whether their words were new), and this bounds what
    /// syntheses nobody hears can take.
    detached: Arc<tokio::sync::Semaphore>,
    detached_users: Mutex<std::collections::HashSet<uuid::Uuid>>,
    /// Syntheses started here (at most one per flight), for tests and
    /// metrics.
    started: std::sync::atomic::AtomicU64,
    /// Syntheses led by another instance that flights here followed.
    relayed: std::sync::atomic::AtomicU64,
    announcements: Arc<relay::Announcements>,
}

/// What to do when a flight ends.
pub struct Finish {
    pub max_cache_bytes: i64,
    /// Whether audio chunks are MP3 frames whose duration can be summed.
    pub mp3_frames: bool,
    /// How long the synthesis goes on after its last listener left (to be
    /// cached); then it stops and nothing of it is kept.
    pub detached: Duration,
    /// Where the finished entry moves, if not staying in Postgres.
    pub bucket: Option<Arc<cache::Bucket>>,
}

impl Flights {
    pub fn new(detached: usize) -> Flights {
        Flights {
            active: Mutex::new(HashMap::new()),
            detached: Arc::new(tokio::sync::Semaphore::new(detached.max(1))),
            detached_users: Mutex::new(std::collections::HashSet::new()),
            started: std::sync::atomic::AtomicU64::new(0),
            relayed: std::sync::atomic::AtomicU64::new(0),
            announcements: Default::default(),
        }
    }

    /// How many syntheses this instance has started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// How many syntheses led by another instance were followed here.
    pub fn relayed(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Joins the flight for `key`, or starts one for `user` with `start`
    /// (called only by the leader). Returns the listener and whether this
    /// call leads.
    pub fn join_or_start<F, Fut>(
        self: &Arc<Self>,
        db: &PgPool,
        key: &str,
        user: uuid::Uuid,
        content_type: &str,
        finish: Finish,
        start: F,
    ) -> (Listener, bool)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<AudioStream, TtsError>> + Send + 'static,
    {
        let mut active = match self.active.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        if let Some(flight) = active.get(key) {
            return (Listener::join(flight), false);
        }
        let (started, _) = watch::channel(None);
        let flight = Arc::new(Flight {
            key: key.to_string(),
            progress: Mutex::new(Progress::default()),
            notify: Notify::new(),
            started,
            listeners: AtomicUsize::new(0),
            deserted: Notify::new(),
        });
        let listener = Listener::join(&flight);
        active.insert(key.to_string(), flight.clone());
        drop(active);
        let leader = flight.clone();
        let db = db.clone();
        let content_type = content_type.to_string();
        let guard = FlightGuard {
            flights: self.clone(),
            flight: flight.clone(),
        };
        tokio::spawn(async move {
            leader
                .lead(&db, &content_type, finish, start, &guard, user)
                .await;
            drop(guard);
        });
        (listener, true)
    }

    /// A place for a synthesis that `user` started to go on with nobody
    /// listening: one of the instance's, and the user's only one.
    fn detach(self: &Arc<Self>, user: uuid::Uuid) -> Option<DetachedPlace> {
        let permit = self.detached.clone().try_acquire_owned().ok()?;
        let mut users = self
            .detached_users
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        users.insert(user).then(|| DetachedPlace {
            _permit: permit,
            flights: self.clone(),
            user,
        })
    }

    /// Takes `flight` out of the map, and only it: a newer flight of the
    /// same key may stand there already.
    fn remove(&self, flight: &Arc<Flight>) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active
            .get(&flight.key)
            .is_some_and(|f| Arc::ptr_eq(f, flight))
        {
            active.remove(&flight.key);
        }
    }
}

/// A deserted synthesis's place (see `Flights::detached`).
struct DetachedPlace {
    _permit: tokio::sync::OwnedSemaphorePermit,
    flights: Arc<Flights>,
    user: uuid::Uuid,
}

impl Drop for DetachedPlace {
    fn drop(&mut self) {
        let mut users = self
            .flights
            .detached_users
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        users.remove(&self.user);
    }
}

/// Takes a finished (or panicked, or cancelled) flight out of the map, so
/// nobody joins a flight that will never publish again, and fails any
/// follower still waiting.
struct FlightGuard {
    flights: Arc<Flights>,
    flight: Arc<Flight>,
}

impl FlightGuard {
    fn retire(&self) {
        self.flights.remove(&self.flight);
    }

    /// Retires the flight if nobody follows it, atomically with joins:
    /// false when somebody joined meanwhile.
    fn retire_if_deserted(&self) -> bool {
        let mut active = self
            .flights
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.flight.listeners.load(Ordering::SeqCst) > 0 {
            return false;
        }
        if active
            .get(&self.flight.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            active.remove(&self.flight.key);
        }
        true
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.retire();
        let unfinished = self
            .flight
            .progress
            .lock()
            .map(|p| !p.done && p.failed.is_none())
            .unwrap_or(true);
        if unfinished {
            self.flight
                .fail(TtsError::Upstream("synthesis stopped unexpectedly".into()));
            let _ = self.flight.started.send(Some(Err(TtsError::Upstream(
                "synthesis stopped unexpectedly".into(),
            ))));
        }
    }
}

/// Beats the writer's heart on its entry's row until dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(db: &PgPool, key: &str, writer: uuid::Uuid) -> Heartbeat {
        let (db, key) = (db.clone(), key.to_string());
        Heartbeat(tokio::spawn(async move {
            let mut every = tokio::time::interval(cache::HEARTBEAT);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                if let Ok(false) = cache::beat(&db, &key, writer).await {
                    return;
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An upstream that sends nothing for this long is treated as cut.
const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Flight {
    #[allow(clippy::too_many_arguments)]
    async fn lead<F, Fut>(
        &self,
        db: &PgPool,
        content_type: &str,
        finish: Finish,
        start: F,
        guard: &FlightGuard,
        started_by: uuid::Uuid,
    ) where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<AudioStream, TtsError>>,
    {
        let mut detached_place = None;
        let began = Instant::now();
        let writer = uuid::Uuid::new_v4();
        // The claim comes before the upstream call, one database round
        // trip: an instance that finds the entry claimed follows its
        // writer instead of paying for the same synthesis again.
        let claim = loop {
            match cache::begin(db, &self.key, content_type, writer).await {
                Ok(cache::Claim::Busy) => {
                    guard.flights.relayed.fetch_add(1, Ordering::Relaxed);
                    match self.relay(db, guard).await {
                        relay::Relayed::Done => return,
                        relay::Relayed::TakeOver => continue,
                    }
                }
                Ok(claim) => break Some(claim),
                Err(e) => {
                    // Speech goes on without the cache.
                    tracing::warn!(error = %e, "claiming an audio cache entry failed; this synthesis will not be cached");
                    break None;
                }
            }
        };
        // Another request may have completed this entry between its cache
        // check and now: replay it rather than use a second synthesis.
        if claim == Some(cache::Claim::Complete) && self.replay(db).await {
            guard.retire();
            self.finish_ok();
            return;
        }
        let mut persist = claim == Some(cache::Claim::Claimed);
        // The writer's heartbeat, for as long as this leads: followers on
        // other instances take its silence for a dead instance.
        let mut heartbeat = persist.then(|| Heartbeat::start(db, &self.key, writer));
        guard.flights.started.fetch_add(1, Ordering::Relaxed);
        let mut audio = match start().await {
            Ok(a) => a,
            Err(e) => {
                let _ = cache::abandon(db, &self.key, writer).await;
                guard.retire();
                self.fail(e.clone());
                let _ = self.started.send(Some(Err(e)));
                return;
            }
        };
        let mut seq: i32 = 0;
        let mut offset: i64 = 0;
        let mut duration_ms: i64 = 0;
        let mut hash = Sha256::new();
        // Published chunks not yet handed to the database, and the write in
        // flight. Chunks that arrive while a write runs go together in the
        // next one: one statement and one commit for several chunks when
        // the database is the slower side, no waiting when it is not.
        let mut unsaved: Vec<cache::Chunk> = Vec::new();
        let mut write: Option<BoxFuture<'_, sqlx::Result<i32>>> = None;
        let mut ended = false;
        // When nobody has listened since: the synthesis stops at this
        // deadline (at once for unregistered speech).
        let mut deserted_until: Option<tokio::time::Instant> = None;
        loop {
            let deserted = self.deserted.notified();
            tokio::pin!(deserted);
            deserted.as_mut().enable();
            let nobody = self.listeners.load(Ordering::SeqCst) == 0;
            deserted_until = match (nobody, deserted_until) {
                (false, _) => None,
                (true, Some(at)) => Some(at),
                (true, None) => {
                    // Going on (to cache) takes a detached place; with
                    // nothing to cache (another instance writes this entry,
                    // or writing failed), no grace, or no place free (the
                    // starter's one is taken), it stops at once.
                    let grace = match persist && !finish.detached.is_zero() {
                        true => guard.flights.detach(started_by).map(|place| {
                            detached_place.replace(place);
                            finish.detached
                        }),
                        false => None,
                    };
                    Some(tokio::time::Instant::now() + grace.unwrap_or(Duration::ZERO))
                }
            };
            if write.is_none() && persist && !unsaved.is_empty() {
                let batch = std::mem::take(&mut unsaved);
                let (key, saved_to) = (&self.key, seq);
                write = Some(Box::pin(async move {
                    cache::append_all(db, key, writer, &batch).await?;
                    Ok(saved_to)
                }));
            }
            if ended && write.is_none() {
                break;
            }
            // A full batch waits for the write before reading on, so a slow
            // database bounds memory instead of letting it grow.
            let unsaved_bytes: usize = unsaved.iter().map(|c| c.data.len()).sum();
            let read = !ended && unsaved_bytes < MAX_UNSAVED_BYTES;
            let item = tokio::select! {
                saved = async { write.as_mut().expect("guarded").await }, if write.is_some() => {
                    write = None;
                    match saved {
                        Ok(saved_to) => self.saved(saved_to),
                        Err(e) => {
                            // Speech goes on; only caching stops. The cause
                            // (pool exhausted, database down) is what an
                            // operator needs to act on.
                            tracing::warn!(
                                error = %e,
                                "audio cache write failed; this synthesis will not be cached"
                            );
                            persist = false;
                            unsaved.clear();
                            self.keep_everything();
                            // Followers elsewhere must not wait for chunks
                            // that will never come: the entry goes now, and
                            // they take over or end.
                            drop(heartbeat.take());
                            let _ = cache::abandon(db, &self.key, writer).await;
                        }
                    }
                    continue;
                }
                item = tokio::time::timeout(IDLE_LIMIT, audio.next()), if read => item,
                _ = &mut deserted, if !nobody => continue,
                _ = tokio::time::sleep_until(deserted_until.unwrap_or_else(tokio::time::Instant::now)),
                    if deserted_until.is_some() =>
                {
                    // Listeners on other instances, which this one cannot
                    // count, say so in the entry's row.
                    if persist && cache::followed_lately(db, &self.key).await.unwrap_or(false) {
                        deserted_until = Some(tokio::time::Instant::now() + cache::HEARTBEAT);
                        continue;
                    }
                    if !guard.retire_if_deserted() {
                        continue;
                    }
                    // Nobody listens: the upstream call (and a voice worker)
                    // is freed, and nothing half-spoken is cached.
                    tracing::info!("synthesis stopped: nobody is listening");
                    drop(audio);
                    if let Some(write) = write.take() {
                        let _ = write.await;
                    }
                    let _ = cache::abandon(db, &self.key, writer).await;
                    self.fail(TtsError::Upstream("nobody is listening".into()));
                    return;
                }
            };
            let item = match item {
                Ok(Some(item)) => item,
                Ok(None) => {
                    ended = true;
                    continue;
                }
                Err(_) => Err(TtsError::Upstream("the speech stream stalled".into())),
            };
            match item {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => {
                    // A chunk from the SDK is a view into its connection's
                    // read buffer: kept in the window as is, it would pin
                    // that whole buffer while the connection allocates the
                    // next. An exact-size copy lets it go.
                    let bytes = Bytes::copy_from_slice(&bytes);
                    if seq == 0 {
                        metrics::histogram!("voxgate_tts_first_byte_seconds")
                            .record(began.elapsed().as_secs_f64());
                    }
                    if finish.mp3_frames {
                        duration_ms += voxgate_audio::mp3_duration_estimate(&bytes)
                            .map(|d| d.as_millis() as i64)
                            .unwrap_or(0);
                    }
                    hash.update(&bytes);
                    let chunk_offset = offset;
                    offset += bytes.len() as i64;
                    // Published before it is stored: the window keeps every
                    // chunk until it is stored, so a follower always finds
                    // it in one place or the other.
                    self.publish(seq, bytes.clone(), !persist);
                    if seq == 0 {
                        let _ = self.started.send(Some(Ok(())));
                    }
                    if persist {
                        unsaved.push(cache::Chunk {
                            seq,
                            offset: chunk_offset,
                            data: bytes,
                        });
                    }
                    seq += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audio stream failed mid-way; aborting it");
                    if let Some(write) = write.take() {
                        let _ = write.await;
                    }
                    let _ = cache::abandon(db, &self.key, writer).await;
                    guard.retire();
                    self.fail(e.clone());
                    let _ = self.started.send(Some(Err(e)));
                    return;
                }
            }
        }
        if seq == 0 {
            let _ = self.started.send(Some(Ok(())));
        }
        if persist {
            let duration = finish.mp3_frames.then_some(duration_ms);
            let etag = cache::etag_of(&hash.finalize());
            if let Err(e) = cache::finish(
                db,
                &self.key,
                writer,
                offset,
                duration,
                &etag,
                finish.max_cache_bytes,
            )
            .await
            {
                tracing::warn!(error = %e, "finishing the audio cache entry failed");
                let _ = cache::abandon(db, &self.key, writer).await;
            } else if let Some(bucket) = finish.bucket.clone() {
                // Off the listeners' path: they have every byte already.
                let (db, key) = (db.clone(), self.key.clone());
                tokio::spawn(async move {
                    if let Err(e) = cache::move_to_bucket(&db, &bucket, &key).await {
                        tracing::warn!(error = %e, "moving finished audio to the bucket failed; it stays in Postgres");
                    }
                });
            }
        }
        if !persist {
            let _ = cache::abandon(db, &self.key, writer).await;
        }
        guard.retire();
        self.finish_ok();
    }

    /// Publishes a complete cached entry chunk by chunk; false when it is
    /// not readable from the chunk table (its bytes are in the bucket, or
    /// gone) and nothing was published, so the caller synthesizes.
    async fn replay(&self, db: &PgPool) -> bool {
        let Ok(Some(size)) = cache::complete_size(db, &self.key).await else {
            return false;
        };
        let (mut next, mut sent) = (0, 0i64);
        loop {
            let rows = match cache::chunks_between(db, &self.key, next, i32::MAX).await {
                Ok(rows) => rows,
                Err(_) if next == 0 => return false,
                Err(e) => {
                    self.fail(TtsError::Upstream(format!("audio cache read failed: {e}")));
                    return true;
                }
            };
            if rows.is_empty() {
                // No chunks at all: the bytes are elsewhere (the bucket)
                // or gone; the caller synthesizes instead.
                if next == 0 {
                    return false;
                }
                break;
            }
            for (seq, data) in rows {
                if seq != next {
                    self.fail(TtsError::Upstream("the cached audio has a gap".into()));
                    return true;
                }
                sent += data.len() as i64;
                self.publish(seq, Bytes::from(data), true);
                if seq == 0 {
                    let _ = self.started.send(Some(Ok(())));
                }
                next = seq + 1;
            }
        }
        // Chunks that went while they were read (moved, evicted) must not
        // end as a short file.
        if sent != size {
            self.fail(TtsError::Upstream("the cached audio is incomplete".into()));
        }
        true
    }

    /// The cache can no longer be relied on: keep every chunk in memory so
    /// followers still get all of them.
    fn keep_everything(&self) {
        if let Ok(mut p) = self.progress.lock() {
            p.persist_failed = true;
        }
    }

    fn finish_ok(&self) {
        if let Ok(mut p) = self.progress.lock() {
            p.done = true;
        }
        self.notify.notify_waiters();
    }

    fn publish(&self, seq: i32, bytes: Bytes, keep_all: bool) {
        if let Ok(mut p) = self.progress.lock() {
            p.window.push_back((seq, bytes));
            p.persist_failed |= keep_all;
            p.published = seq + 1;
            p.trim();
        }
        self.notify.notify_waiters();
    }

    /// Chunks before `seq` are in the cache table.
    fn saved(&self, seq: i32) {
        if let Ok(mut p) = self.progress.lock() {
            p.saved = seq;
            p.trim();
        }
    }

    fn fail(&self, e: TtsError) {
        if let Ok(mut p) = self.progress.lock() {
            p.failed = Some(e);
            p.window.clear();
        }
        self.notify.notify_waiters();
    }

    /// Waits until the engine answered: `Err` is a failure before the first
    /// byte, which the caller can still turn into a proper error response.
    pub async fn wait_started(&self) -> Result<(), TtsError> {
        let mut rx = self.started.subscribe();
        loop {
            if let Some(result) = rx.borrow_and_update().clone() {
                return result;
            }
            if rx.changed().await.is_err() {
                return Err(TtsError::Upstream("synthesis ended unexpectedly".into()));
            }
        }
    }

    /// Every byte of the synthesis, from the start, as it becomes available.
    fn follow(self: Arc<Self>, db: PgPool) -> AudioStream {
        futures::stream::unfold(
            (self, db, 0i32, VecDeque::<Bytes>::new()),
            |(flight, db, mut next, mut pending)| async move {
                loop {
                    if let Some(b) = pending.pop_front() {
                        return Some((Ok(b), (flight, db, next, pending)));
                    }
                    // A second handle lets the wait borrow it while `flight`
                    // itself can still be moved into the returned state.
                    let waiter = flight.clone();
                    let notified = waiter.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let (published, from_window, failed, done) = {
                        let p = match flight.progress.lock() {
                            Ok(p) => p,
                            Err(poisoned) => poisoned.into_inner(),
                        };
                        let from_window: Vec<Bytes> = p
                            .window
                            .iter()
                            .filter(|(s, _)| *s >= next)
                            .map(|(_, b)| b.clone())
                            .collect();
                        let window_start = p.window.front().map(|(s, _)| *s).unwrap_or(p.published);
                        let usable = if window_start <= next {
                            Some(from_window)
                        } else {
                            None
                        };
                        (p.published, usable, p.failed.clone(), p.done)
                    };
                    if let Some(e) = failed {
                        return Some((Err(e), (flight, db, i32::MAX, pending)));
                    }
                    if next == i32::MAX {
                        return None;
                    }
                    if next < published {
                        match from_window {
                            Some(chunks) => {
                                next += chunks.len() as i32;
                                pending.extend(chunks);
                            }
                            None => match cache::chunks_between(&db, &flight.key, next, published)
                                .await
                            {
                                Ok(rows) if !rows.is_empty() => {
                                    next = rows.last().map(|(s, _)| s + 1).unwrap_or(published);
                                    pending.extend(rows.into_iter().map(|(_, d)| Bytes::from(d)));
                                }
                                Ok(_) => {
                                    // The entry vanished (evicted or abandoned).
                                    return Some((
                                        Err(TtsError::Upstream(
                                            "audio is no longer available".into(),
                                        )),
                                        (flight, db, i32::MAX, pending),
                                    ));
                                }
                                Err(e) => {
                                    return Some((
                                        Err(TtsError::Upstream(format!(
                                            "audio cache read failed: {e}"
                                        ))),
                                        (flight, db, i32::MAX, pending),
                                    ));
                                }
                            },
                        }
                        continue;
                    }
                    if done {
                        return None;
                    }
                    notified.await;
                }
            },
        )
        .boxed()
    }
}
