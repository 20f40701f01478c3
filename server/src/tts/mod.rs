//! Text to speech: engines (Amazon Polly, the neural and espeak-ng voices
//! on this machine), the shared audio cache, single-flight synthesis,
//! per-user limits and the HTTP endpoints (`/textToSpeech`, `/api/tts`,
//! `/api/voices`).
//!
//! This file holds the service and its serving path (cache hit, or a
//! synthesis streamed while it is cached). Beside it: [`request`] (what a
//! key stands for), `resolve` (from a client's ask to a keyed request),
//! `http_cache` (Range, ETag, 304), `quota` (rate, quota and permits) and
//! `marks` (word timings).
//!
//! User text is always sent as plain text (`TextType=text`): nothing a user
//! types can become SSML.

pub mod cache;
pub mod engine;
mod flight;
mod handlers;
mod http_cache;
pub mod local;
mod marks;
pub mod neural;
mod openai;
pub mod polly;
mod quota;
pub mod request;
mod resolve;
pub mod text;

/// The speech routes: voxgate's own and OpenAI's speech endpoint.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::state::AppState> {
    handlers::routes().merge(openai::routes())
}
pub use quota::{METER, QuotaClass, Speaker, SpeechQuota};
pub use request::{Keyed, SpeechParams, SpeechRef};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::config::{Config, TtsConfig, TtsEngineChoice};
use crate::error::ApiError;
use engine::{EngineKind, Format, SpeechEngine, TtsError, Voice};
use flight::{Finish, Flights};

/// The speech service as the rest of the app sees it.
#[derive(Clone)]
pub struct Tts {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    /// Cache writes only (`db::connect_cache`).
    cache_db: PgPool,
    engine: Arc<dyn SpeechEngine>,
    config: TtsConfig,
    memory: cache::Memory,
    flights: Arc<Flights>,
    permits: Arc<Semaphore>,
    user_slots: Arc<quota::UserSlots>,
    readiness: Mutex<Option<(Instant, Result<(), String>)>>,
    /// (user, key) pairs known to be heard: a repeat hearing is then a
    /// lookup here, not a database read.
    heard: Mutex<HashSet<(Uuid, String)>>,
    /// Why the engine asked for is not the one running, when it is not.
    fallback: Option<String>,
    /// Where finished audio goes, when not in Postgres.
    bucket: Option<Arc<cache::Bucket>>,
}

impl From<TtsError> for ApiError {
    fn from(e: TtsError) -> Self {
        match e {
            TtsError::InvalidVoice { .. } | TtsError::Unsupported(_) => {
                ApiError::bad_request(e.to_string())
            }
            TtsError::TextTooLong(limit) => ApiError::PayloadTooLarge(format!(
                "Text is longer than the speech engine accepts ({limit} characters)."
            )),
            TtsError::Throttled => ApiError::Unavailable {
                detail: "The speech service is busy (throttled after retries); try again shortly."
                    .into(),
                retry_after: Some(2),
            },
            TtsError::Upstream(m) => ApiError::BadGateway {
                detail: "The speech service failed.".into(),
                source: Some(anyhow::anyhow!(m)),
            },
            TtsError::Unavailable(m) => ApiError::Unavailable {
                detail: format!("The speech engine is not available: {m}."),
                retry_after: Some(5),
            },
            TtsError::UserBusy(n) => ApiError::TooManyRequests {
                detail: format!(
                    "You already have {n} syntheses in progress; wait for one to finish (or stop listening to it)."
                ),
                retry_after: 2,
            },
        }
    }
}

impl Tts {
    /// Picks the engine: the one asked for, or with `auto` Polly when AWS
    /// settings are present, else the neural voice when it is installed,
    /// else espeak-ng. A neural voice that cannot start falls back to
    /// espeak-ng, said once in the log and always in `/readyz`.
    pub async fn new(db: PgPool, cache_db: PgPool, config: &Config) -> Tts {
        let tts = config.tts.clone();
        // Half the synthesis slots at most, and never so many that a user's
        // own slots could not be had beside them.
        let detached_places =
            (tts.concurrency / 2).min(tts.concurrency.saturating_sub(tts.user_concurrency));
        let kind = match tts.engine {
            TtsEngineChoice::Polly => EngineKind::Polly,
            TtsEngineChoice::Neural => EngineKind::Neural,
            TtsEngineChoice::Local => EngineKind::Local,
            TtsEngineChoice::Auto if tts.aws.configured() => EngineKind::Polly,
            TtsEngineChoice::Auto if tts.piper.python.is_some() => EngineKind::Neural,
            TtsEngineChoice::Auto => EngineKind::Local,
        };
        let local = || {
            Arc::new(local::LocalEngine::new(
                tts.espeak_program.clone(),
                tts.concurrency,
                tts.default_voice.clone(),
            ))
        };
        let mut fallback = None;
        let engine: Arc<dyn SpeechEngine> = match kind {
            EngineKind::Polly => {
                Arc::new(polly::PollyEngine::new(&tts.aws, tts.default_voice.clone()).await)
            }
            EngineKind::Neural => {
                match neural::NeuralEngine::start(tts.piper.clone(), tts.default_voice.clone())
                    .await
                {
                    Ok(engine) => Arc::new(engine),
                    Err(reason) => {
                        tracing::warn!(%reason, "the neural voice is not available; speaking with espeak-ng instead");
                        fallback = Some(format!("the neural voice is not available ({reason})"));
                        local()
                    }
                }
            }
            EngineKind::Local => local(),
        };
        tracing::info!(engine = engine.name(), "speech engine selected");
        let bucket = match &tts.bucket {
            Some(config) => {
                let bucket = Arc::new(cache::Bucket::new(config, &tts.aws).await);
                spawn_tidying(cache_db.clone(), bucket.clone());
                Some(bucket)
            }
            None => None,
        };
        Tts {
            inner: Arc::new(Inner {
                db,
                cache_db,
                permits: Arc::new(Semaphore::new(tts.concurrency)),
                user_slots: quota::UserSlots::new(tts.user_concurrency),
                engine,
                config: tts,
                memory: cache::Memory::default(),
                flights: Arc::new(Flights::new(detached_places)),
                readiness: Mutex::new(None),
                heard: Mutex::new(HashSet::new()),
                fallback,
                bucket,
            }),
        }
    }

    pub fn engine_name(&self) -> &'static str {
        self.inner.engine.name()
    }

    fn engine_kind(&self) -> EngineKind {
        self.inner.engine.kind()
    }

    /// Why the engine running is not the one asked for, if it is not.
    pub fn fallback(&self) -> Option<&str> {
        self.inner.fallback.as_deref()
    }

    /// How many syntheses this instance has started (identical concurrent
    /// requests share one).
    pub fn syntheses_started(&self) -> u64 {
        self.inner.flights.started()
    }

    /// How many syntheses led by another instance this one followed
    /// instead of synthesizing the same text again.
    pub fn syntheses_followed(&self) -> u64 {
        self.inner.flights.relayed()
    }

    /// The speech engine's own processes on this machine.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.inner.engine.worker_pids()
    }

    /// Stops the engine's processes (at the end of a graceful shutdown).
    pub async fn shutdown(&self) {
        self.inner.engine.shutdown().await;
    }

    /// Whether the engine can synthesize now (checked at most every 30 s).
    pub async fn status(&self) -> Result<(), String> {
        if let Ok(r) = self.inner.readiness.lock()
            && let Some((at, result)) = r.as_ref()
            && at.elapsed() < Duration::from_secs(30)
        {
            return result.clone();
        }
        let result = self.inner.engine.ready().await;
        if let Ok(mut r) = self.inner.readiness.lock() {
            *r = Some((Instant::now(), result.clone()));
        }
        result
    }

    pub async fn voices(&self, language: Option<&str>) -> Result<Vec<Voice>, ApiError> {
        let voices = self.inner.engine.voices().await?;
        Ok(match language.filter(|l| !l.is_empty()) {
            Some(l) => voices
                .iter()
                .filter(|v| resolve::language_matches(&v.language, l))
                .cloned()
                .collect(),
            None => voices.as_ref().clone(),
        })
    }

    /// Registers a synthesis for `listener` and returns where to fetch it;
    /// they pay at the first hearing. `long_text` lifts the direct-endpoint
    /// length limit (the chat speaks long replies in several upstream
    /// requests).
    pub async fn speak(
        &self,
        params: SpeechParams,
        long_text: bool,
        listener: Uuid,
    ) -> Result<SpeechRef, ApiError> {
        let keyed = self.resolve(params, long_text).await?;
        request::register(&self.inner.db, &keyed, listener, false).await?;
        let key = keyed.key();
        Ok(keyed.reference(key))
    }

    /// `POST /api/tts`: registers a synthesis and charges `speaker` for it
    /// now, like a first hearing (registering the same text again is free).
    pub async fn register(
        &self,
        params: SpeechParams,
        speaker: Speaker,
    ) -> Result<SpeechRef, ApiError> {
        let keyed = self.resolve(params, false).await?;
        let key = keyed.key();
        let registered = self.registration(speaker.user_id, &key).await?;
        if !registered.is_some_and(|r| r.paid) {
            let charge = self.admit(speaker, &keyed.text, keyed.engine_kind).await?;
            if !request::register(&self.inner.db, &keyed, speaker.user_id, true).await? {
                charge.refund().await;
            }
        } else {
            self.check_rate(speaker.user_id).await?;
        }
        Ok(keyed.reference(key))
    }

    /// Undoes a first hearing's payment: the synthesis did not happen.
    async fn take_back(&self, charge: Option<crate::limits::Charge>, user: Uuid, key: &str) {
        if let Some(charge) = charge {
            charge.refund().await;
            let _ = request::unpay(&self.inner.db, user, key).await;
        }
    }

    /// `user`'s registration of `key` (from the database).
    async fn registration(
        &self,
        user: Uuid,
        key: &str,
    ) -> Result<Option<request::Registration>, ApiError> {
        let registration = request::registration(&self.inner.db, user, key).await?;
        if registration.is_some_and(|r| r.heard) {
            self.remember_heard(user, key);
        }
        Ok(registration)
    }

    /// `(paid, heard)` of `user`'s registration of `key`, `None` if there is
    /// none; a key known heard is answered from memory.
    async fn hearing(&self, user: Uuid, key: &str) -> Result<Option<(bool, bool)>, ApiError> {
        let pair = (user, key.to_string());
        if self.inner.heard.lock().is_ok_and(|h| h.contains(&pair)) {
            return Ok(Some((true, true)));
        }
        Ok(self
            .registration(user, key)
            .await?
            .map(|r| (r.paid, r.heard)))
    }

    fn remember_heard(&self, user: Uuid, key: &str) {
        if let Ok(mut heard) = self.inner.heard.lock() {
            if heard.len() > 100_000 {
                heard.clear();
            }
            heard.insert((user, key.to_string()));
        }
    }

    /// Ends `body` by recording that `user` heard `key`, once every byte
    /// went out: the client sees the end only after the record, so its
    /// next request is a `hit`. A body that failed or was dropped records
    /// nothing.
    fn recording_heard(
        &self,
        user: Uuid,
        key: &str,
        body: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> BoxStream<'static, std::io::Result<Bytes>> {
        let tts = self.clone();
        let key = key.to_string();
        let failed = Arc::new(AtomicBool::new(false));
        let seen = failed.clone();
        body.inspect(move |item| {
            if item.is_err() {
                seen.store(true, Ordering::Relaxed);
            }
        })
        .chain(
            futures::stream::once(async move {
                if !failed.load(Ordering::Relaxed) {
                    match request::mark_heard(&tts.inner.db, user, &key).await {
                        Ok(()) => tts.remember_heard(user, &key),
                        Err(e) => tracing::warn!(error = %e, "recording a hearing failed"),
                    }
                }
            })
            .filter_map(|()| async { None }),
        )
        .boxed()
    }

    /// The audio of a registered key (`GET /api/tts/{key}`).
    pub async fn audio(
        &self,
        speaker: Speaker,
        key: &str,
        headers: &HeaderMap,
        cache_control: &'static str,
    ) -> Result<Response, ApiError> {
        self.serve(speaker, key, None, headers, cache_control).await
    }

    /// Speaks `params` and serves the audio in one go (`/textToSpeech`): a
    /// repeat hearing of cached audio costs no database write and no
    /// rate-limit count.
    pub async fn speak_and_serve(
        &self,
        speaker: Speaker,
        params: SpeechParams,
        headers: &HeaderMap,
        cache_control: &'static str,
    ) -> Result<Response, ApiError> {
        let keyed = self.resolve(params, false).await?;
        let key = keyed.key();
        self.serve(speaker, &key, Some(keyed), headers, cache_control)
            .await
    }

    /// From the cache (with `Range` and `If-None-Match`), or synthesized and
    /// streamed while it is cached. Misses count against the rate limit and
    /// the daily quota.
    async fn serve(
        &self,
        speaker: Speaker,
        key: &str,
        known: Option<Keyed>,
        headers: &HeaderMap,
        cache_control: &'static str,
    ) -> Result<Response, ApiError> {
        let user = speaker.user_id;
        let legacy = known.is_some();
        // Only those who registered a key may hear it; to anyone else it
        // does not exist, as an unknown key.
        let (paid, heard) = match self.hearing(user, key).await? {
            None if known.is_none() => return Err(request::not_registered(key)),
            None => (false, false),
            Some(hearing) => hearing,
        };
        let cached = match self.inner.memory.get(key) {
            Some(e) => Some(http_cache::Cached::Memory(e)),
            None => match cache::lookup(&self.inner.db, key).await? {
                Some(cache::Found::Whole(e)) => {
                    Some(http_cache::Cached::Memory(self.inner.memory.put(key, e)))
                }
                Some(cache::Found::Large(stored)) => Some(http_cache::Cached::Postgres {
                    db: self.inner.db.clone(),
                    key: key.to_string(),
                    stored,
                }),
                Some(cache::Found::Bucket { stored, object }) => {
                    self.bucket_entry(key, stored, object, heard, headers).await
                }
                None => None,
            },
        };
        // Only a user who heard this key before learns that it is cached.
        if heard && let Some(entry) = &cached {
            metrics::counter!("voxgate_tts_cache_total", "result" => "hit").increment(1);
            // The ETag names the stored bytes: a later re-synthesis of the
            // same key may encode differently.
            let etag = entry
                .etag()
                .map_or_else(|| format!("\"{key}\""), |e| format!("\"{e}\""));
            return Ok(http_cache::serve_cached(
                entry,
                &etag,
                headers,
                cache_control,
            ));
        }
        // Anything but a repeat hearing of cached audio takes one of the
        // user's slots, held by this response alone for as long as it
        // streams: cached or synthesized, led or joined, so neither a
        // refusal nor when a slot comes back tells whether somebody else
        // had these words spoken. Before anything is charged.
        let slot = Some(self.inner.user_slots.take(user, key)?);
        let keyed = match known {
            Some(k) => k,
            None => request::lookup(&self.inner.db, key).await?,
        };
        let synthesis = self.synthesis(&keyed)?;
        let chars = keyed.text.chars().count() as i64;
        // A first hearing costs what a synthesis costs, cached or not, so
        // nothing tells whether somebody else had this spoken before.
        let charge = if paid {
            self.check_rate(user).await?;
            None
        } else {
            let charge = self.admit(speaker, &keyed.text, keyed.engine_kind).await?;
            if request::register(&self.inner.db, &keyed, user, true).await? {
                Some(charge)
            } else {
                // A concurrent request of the same user paid already.
                charge.refund().await;
                None
            }
        };
        let format = keyed.format;
        if let Some(entry) = cached {
            metrics::counter!("voxgate_tts_cache_total", "result" => "hit").increment(1);
            // A first hearing of cached audio: streamed as a synthesis is.
            let body = holding(http_cache::whole_stream(&entry), slot);
            let body = self.recording_heard(user, key, body);
            return Ok(http_cache::streamed(format.content_type(), "miss", body));
        }
        metrics::counter!("voxgate_tts_cache_total", "result" => "miss").increment(1);
        if self.engine_kind().on_machine() {
            // Polly's billed count comes from its response; voices on this
            // machine "bill" what they speak.
            metrics::counter!("voxgate_tts_billed_characters_total", "engine" => self.engine_name())
                .increment(chars as u64);
        }
        let engine = self.inner.engine.clone();
        let permits = self.inner.permits.clone();
        let wait = self.inner.config.worker_wait;
        let start = move || async move {
            let permit = quota::permit(permits, wait).await?;
            let stream = engine.synthesize(&synthesis).await?;
            Ok(stream
                .map(move |chunk| {
                    let _held = &permit;
                    chunk
                })
                .boxed())
        };
        let finish = Finish {
            max_cache_bytes: self.inner.config.cache_max_bytes,
            mp3_frames: format == Format::Mp3 && self.engine_kind().on_machine(),
            // Registered speech (chat replies, `POST /api/tts`) is worth
            // finishing for the cache a little while; `/textToSpeech` not.
            detached: match legacy {
                true => Duration::ZERO,
                false => self.inner.config.detached,
            },
            bucket: self.inner.bucket.clone(),
        };
        let (listener, leader) = self.inner.flights.join_or_start(
            &self.inner.cache_db,
            key,
            user,
            format.content_type(),
            finish,
            start,
        );
        let flight = listener.flight().clone();
        if let Err(e) = flight.wait_started().await {
            self.take_back(charge, user, key).await;
            return Err(e.into());
        }
        // Only a listener who heard this key before learns that they joined
        // a synthesis under way.
        let label = match leader || !heard {
            true => "miss",
            false => "shared",
        };
        let body = listener
            .follow(self.inner.db.clone())
            .map(|r| r.map_err(std::io::Error::other))
            .boxed();
        let body = holding(body, slot);
        let body = match heard {
            true => body,
            false => self.recording_heard(user, key, body),
        };
        Ok(http_cache::streamed(format.content_type(), label, body))
    }
}

impl Tts {
    /// A bucket entry ready to serve: the bucket already asked for the
    /// bytes this response sends (or for a presigned URL, for a repeat
    /// hearing when the operator allows it). `None` when the bucket fails
    /// or is not configured: the caller then synthesizes, as for a miss.
    async fn bucket_entry(
        &self,
        key: &str,
        stored: cache::Stored,
        object: String,
        heard: bool,
        headers: &HeaderMap,
    ) -> Option<http_cache::Cached> {
        let Some(bucket) = &self.inner.bucket else {
            tracing::warn!(
                key,
                "cached audio is in a bucket, but no bucket is configured; synthesizing"
            );
            return None;
        };
        let total = stored.size as usize;
        // Small entries are read whole and kept in memory, like small
        // entries from Postgres: a hot reply costs no bucket request.
        if !(heard && bucket.presigns()) && total > 0 && total <= cache::MEMORY_ENTRY_MAX {
            let read = bucket.read_whole(&object, total as u64);
            let outcome = read.await.map(|data| {
                http_cache::Cached::Memory(self.inner.memory.put(
                    key,
                    cache::Entry {
                        content_type: stored.content_type,
                        data,
                        duration_ms: stored.duration_ms,
                        etag: stored.etag,
                    },
                ))
            });
            return self.bucket_outcome(key, &object, outcome).await;
        }
        let etag = stored
            .etag
            .as_deref()
            .map_or_else(|| format!("\"{key}\""), |e| format!("\"{e}\""));
        let range = match heard {
            true => match http_cache::plan(total, &etag, headers) {
                http_cache::Plan::Part(start, end) => Some((start, end)),
                http_cache::Plan::Whole if total > 0 => Some((0, total - 1)),
                _ => None,
            },
            // A first hearing streams it all, as a synthesis would.
            false => (total > 0).then(|| (0, total - 1)),
        };
        let outcome = match (heard && bucket.presigns(), range) {
            // The client would get the bucket's error, not synthesis: the
            // object must be there before the redirect.
            (true, _) => match bucket.exists(&object).await {
                Ok(()) => bucket
                    .presigned(&object)
                    .await
                    .map(|url| http_cache::Cached::Redirect { stored, url }),
                Err(e) => Err(e),
            },
            (false, None) => Ok(http_cache::Cached::Bucket {
                stored,
                body: std::sync::Mutex::new(Some(futures::stream::empty().boxed())),
            }),
            (false, Some((start, end))) => bucket
                .open(&object, start as u64, end as u64)
                .await
                .map(|body| http_cache::Cached::Bucket {
                    stored,
                    body: std::sync::Mutex::new(Some(body)),
                }),
        };
        self.bucket_outcome(key, &object, outcome).await
    }

    /// The entry read from the bucket, or `None` (counted and logged) when
    /// the bucket failed: then the caller synthesizes.
    async fn bucket_outcome(
        &self,
        key: &str,
        object: &str,
        outcome: Result<http_cache::Cached, cache::BucketError>,
    ) -> Option<http_cache::Cached> {
        match outcome {
            Ok(cached) => {
                metrics::counter!("voxgate_tts_bucket_reads_total", "result" => "ok").increment(1);
                Some(cached)
            }
            Err(cache::BucketError::Missing) => {
                tracing::warn!(
                    key,
                    "cached audio is missing from the bucket; forgetting it"
                );
                metrics::counter!("voxgate_tts_bucket_reads_total", "result" => "missing")
                    .increment(1);
                let _ = cache::forget(&self.inner.db, key, object).await;
                None
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "the audio bucket failed; synthesizing instead");
                metrics::counter!("voxgate_tts_bucket_reads_total", "result" => "failed")
                    .increment(1);
                None
            }
        }
    }
}

/// How long moved chunks stay for streams that were reading them (a
/// listener behind the leader, a long entry streamed from Postgres): long
/// enough for any reply heard at its own pace.
pub const CHUNK_GRACE: Duration = Duration::from_secs(30 * 60);

/// Every half minute: objects of deleted entries leave the bucket, and the
/// chunks of entries that moved there [`CHUNK_GRACE`] ago leave Postgres.
fn spawn_tidying(db: PgPool, bucket: Arc<cache::Bucket>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            every.tick().await;
            if let Err(e) = cache::tidy(&db, &bucket, CHUNK_GRACE).await {
                tracing::warn!(error = %e, "tidying the audio bucket failed");
            }
        }
    });
}

/// `body`, holding `slot` until it ends or is dropped.
fn holding(
    body: BoxStream<'static, std::io::Result<Bytes>>,
    slot: Option<quota::UserSlot>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    match slot {
        None => body,
        Some(slot) => body
            .map(move |chunk| {
                let _held = &slot;
                chunk
            })
            .boxed(),
    }
}
