//! Text to speech: engines (Amazon Polly, the local espeak-ng voice), the
//! shared audio cache, single-flight synthesis, per-user limits and the
//! HTTP endpoints (`/textToSpeech`, `/api/tts`, `/api/voices`).
//!
//! User text is always sent as plain text (`TextType=text`): nothing a user
//! types can become SSML.

pub mod cache;
pub mod engine;
mod flight;
mod handlers;
pub mod limits;
pub mod local;
pub mod neural;
pub mod polly;
pub mod text;

pub use handlers::routes;

use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::error::ApiError;

/// What to say and how: the input of a synthesis, before it is keyed.
#[derive(Debug, Clone)]
pub struct SpeechParams {
    pub text: String,
    /// Engine voice id (`Joanna`, `en-us`); `None` = the configured default.
    pub voice: Option<String>,
    /// BCP-47 language, e.g. `en-US`; `None` = the voice's language.
    pub language: Option<String>,
    /// `mp3` (default), `ogg_vorbis`, `pcm`.
    pub format: Option<String>,
    /// Polly engine kind: `standard`, `neural`, `long-form`, `generative`.
    pub engine_kind: Option<String>,
}

/// A registered synthesis: fetch its audio at `url`, its word timings at
/// `marks_url`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpeechRef {
    pub key: String,
    pub url: String,
    pub marks_url: String,
    pub voice: String,
    pub language: String,
    pub format: String,
}

/// The normalised request that a cache key stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub engine: String,
    pub voice: String,
    pub language: String,
    pub format: String,
    pub engine_kind: String,
    pub text: String,
}

impl Keyed {
    /// Content address: the same words, voice and format always give the
    /// same key, whoever asks.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            &self.engine,
            &self.voice,
            &self.language,
            &self.format,
            &self.engine_kind,
            &self.text,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        base64_url(&digest[..20])
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Stores what a key stands for so `GET /api/tts/{key}` can synthesize it.
pub async fn remember(db: &PgPool, k: &Keyed) -> Result<String, ApiError> {
    let key = k.key();
    sqlx::query(
        "INSERT INTO tts_requests (key, engine, voice, language, format, engine_kind, text)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING",
    )
    .bind(&key)
    .bind(&k.engine)
    .bind(&k.voice)
    .bind(&k.language)
    .bind(&k.format)
    .bind(&k.engine_kind)
    .bind(&k.text)
    .execute(db)
    .await?;
    Ok(key)
}

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::auth::CurrentUser;
use crate::config::{Config, TtsConfig, TtsEngineChoice};
use engine::{EngineKind, Format, Mark, SpeechEngine, Synthesis, TtsError, Voice};
use flight::{Finish, Flights};

/// Polly engine kinds, and the only one the local voice has.
const ENGINE_KINDS: &[&str] = &["standard", "neural", "long-form", "generative"];

/// The speech service as the rest of the app sees it.
#[derive(Clone)]
pub struct Tts {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    engine: Arc<dyn SpeechEngine>,
    config: TtsConfig,
    memory: cache::Memory,
    flights: Arc<Flights>,
    permits: Arc<Semaphore>,
    readiness: Mutex<Option<(Instant, Result<(), String>)>>,
    /// Why the engine asked for is not the one running, when it is not.
    fallback: Option<String>,
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
        }
    }
}

impl Tts {
    /// Picks the engine: the one asked for, or with `auto` Polly when AWS
    /// settings are present, else the neural voice when it is installed,
    /// else espeak-ng. A neural voice that cannot start falls back to
    /// espeak-ng, said once in the log and always in `/readyz`.
    pub async fn new(db: PgPool, config: &Config) -> Tts {
        let tts = config.tts.clone();
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
        Tts {
            inner: Arc::new(Inner {
                db,
                permits: Arc::new(Semaphore::new(tts.concurrency)),
                engine,
                config: tts,
                memory: cache::Memory::default(),
                flights: Arc::new(Flights::default()),
                readiness: Mutex::new(None),
                fallback,
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
                .filter(|v| language_matches(&v.language, l))
                .cloned()
                .collect(),
            None => voices.as_ref().clone(),
        })
    }

    /// Validates and normalises a request into what its cache key stands for.
    async fn resolve(&self, params: SpeechParams, long_text: bool) -> Result<Keyed, ApiError> {
        let text = text::normalise(&params.text);
        if text.is_empty() {
            return Err(ApiError::bad_request(
                "Text is empty: there is nothing to say.",
            ));
        }
        if !long_text && text.chars().count() > self.inner.config.max_chars {
            return Err(ApiError::PayloadTooLarge(format!(
                "Text is {} characters long; this endpoint accepts at most {}.",
                text.chars().count(),
                self.inner.config.max_chars
            )));
        }
        let format = params
            .format
            .as_deref()
            .filter(|f| !f.is_empty())
            .unwrap_or("mp3");
        let format = Format::parse(format).ok_or_else(|| {
            ApiError::bad_request(format!(
                "OutputFormat `{format}` is not one of mp3, ogg_vorbis, pcm."
            ))
        })?;
        let engine = &self.inner.engine;
        if engine.kind().on_machine() && format == Format::OggVorbis {
            return Err(ApiError::bad_request(format!(
                "OutputFormat ogg_vorbis is not available with the {} voice; use mp3 or pcm.",
                engine.name()
            )));
        }
        let language = params
            .language
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string());
        let voices = engine.voices().await?;
        let find = |id: &str| voices.iter().find(|v| v.id.eq_ignore_ascii_case(id));
        let for_language = |l: &str| voices.iter().find(|v| language_matches(&v.language, l));
        let voice = match params
            .voice
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            Some(id) => match find(id) {
                Some(v) => v,
                // The local voice accepts Polly voice names (clients of the
                // original endpoint send them) by speaking the language.
                None if engine.kind().on_machine()
                    && language.as_deref().and_then(for_language).is_some() =>
                {
                    language
                        .as_deref()
                        .and_then(for_language)
                        .ok_or_else(|| ApiError::bad_request("no voice"))?
                }
                None => {
                    let valid: Vec<&str> = voices
                        .iter()
                        .filter(|v| {
                            language
                                .as_deref()
                                .is_none_or(|l| language_matches(&v.language, l))
                        })
                        .map(|v| v.id.as_str())
                        .take(60)
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "VoiceId `{id}` is not available{}. Valid voices: {}.",
                        language
                            .as_deref()
                            .map(|l| format!(" for {l}"))
                            .unwrap_or_default(),
                        if valid.is_empty() {
                            "none for this language".to_string()
                        } else {
                            valid.join(", ")
                        }
                    )));
                }
            },
            None => match language.as_deref() {
                Some(l) => match find(engine.default_voice())
                    .filter(|v| language_matches(&v.language, l))
                    .or_else(|| for_language(l))
                {
                    Some(v) => v,
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "No voice is available for LanguageCode `{l}`."
                        )));
                    }
                },
                None => find(engine.default_voice())
                    .or_else(|| voices.first())
                    .ok_or_else(|| ApiError::unavailable("The speech engine offers no voices."))?,
            },
        };
        let kind = match params
            .engine_kind
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            Some(k) if !ENGINE_KINDS.contains(&k) => {
                return Err(ApiError::bad_request(format!(
                    "Engine `{k}` is not one of {}.",
                    ENGINE_KINDS.join(", ")
                )));
            }
            Some(k) if !voice.engines.iter().any(|e| e == k) => {
                return Err(ApiError::bad_request(format!(
                    "Voice `{}` does not support the {k} engine; it supports {}.",
                    voice.id,
                    voice.engines.join(", ")
                )));
            }
            Some(k) => k.to_string(),
            None if voice.engines.iter().any(|e| e == "standard") || voice.engines.is_empty() => {
                "standard".into()
            }
            None => voice.engines[0].clone(),
        };
        Ok(Keyed {
            engine: engine.name().to_string(),
            voice: voice.id.clone(),
            // One spelling per language, so `en_us` and `en-US` share a cache entry.
            language: match language {
                Some(l) if !language_matches(&voice.language, &l) => l,
                _ => voice.language.clone(),
            },
            format: format.name().to_string(),
            engine_kind: kind,
            text,
        })
    }

    /// Registers a synthesis and returns where to fetch it. `long_text`
    /// lifts the direct-endpoint length limit (the chat speaks long replies
    /// in several upstream requests).
    pub async fn speak(
        &self,
        params: SpeechParams,
        long_text: bool,
    ) -> Result<SpeechRef, ApiError> {
        let keyed = self.resolve(params, long_text).await?;
        let key = remember(&self.inner.db, &keyed).await?;
        Ok(SpeechRef {
            url: format!("/api/tts/{key}"),
            marks_url: format!("/api/tts/{key}/marks"),
            key,
            voice: keyed.voice,
            language: keyed.language,
            format: keyed.format,
        })
    }

    async fn keyed(&self, key: &str) -> Result<Keyed, ApiError> {
        let not_found = || {
            ApiError::NotFound(format!(
                "No speech is registered under `{key}`; create it with POST /api/tts."
            ))
        };
        if key.len() != 27
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(not_found());
        }
        let row: Option<(String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT engine, voice, language, format, engine_kind, text FROM tts_requests WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.inner.db)
        .await?;
        let (engine, voice, language, format, engine_kind, text) = row.ok_or_else(not_found)?;
        Ok(Keyed {
            engine,
            voice,
            language,
            format,
            engine_kind,
            text,
        })
    }

    fn synthesis(&self, k: &Keyed) -> Result<Synthesis, ApiError> {
        if EngineKind::parse(&k.engine) != Some(self.engine_kind()) {
            return Err(ApiError::NotFound(format!(
                "This speech was registered for the {} engine, which this server does not run.",
                k.engine
            )));
        }
        Ok(Synthesis {
            text: k.text.clone(),
            voice: k.voice.clone(),
            language: k.language.clone(),
            format: Format::parse(&k.format).unwrap_or(Format::Mp3),
            engine_kind: k.engine_kind.clone(),
        })
    }

    /// Counts a direct speech request against the user's rate limit.
    pub async fn check_rate(&self, user: &CurrentUser) -> Result<(), ApiError> {
        limits::check_rate(&self.inner.db, user.id, self.inner.config.rate_per_minute).await
    }

    /// The audio for `key`: from the cache (with `Range` and
    /// `If-None-Match`), or synthesized and streamed while it is cached.
    /// The audio of a registered key (`GET /api/tts/{key}`).
    pub async fn audio(
        &self,
        user: &CurrentUser,
        key: &str,
        headers: &HeaderMap,
        cache_control: &'static str,
    ) -> Result<Response, ApiError> {
        self.serve(user, key, None, headers, cache_control).await
    }

    /// Speaks `params` and serves the audio in one go (`/textToSpeech`):
    /// a cache hit costs no database write and no rate-limit count.
    pub async fn speak_and_serve(
        &self,
        user: &CurrentUser,
        params: SpeechParams,
        headers: &HeaderMap,
        cache_control: &'static str,
    ) -> Result<Response, ApiError> {
        let keyed = self.resolve(params, false).await?;
        let key = keyed.key();
        self.serve(user, &key, Some(keyed), headers, cache_control)
            .await
    }

    /// From the cache (with `Range` and `If-None-Match`), or synthesized and
    /// streamed while it is cached. Misses count against the rate limit and
    /// the daily quota.
    async fn serve(
        &self,
        user: &CurrentUser,
        key: &str,
        known: Option<Keyed>,
        headers: &HeaderMap,
        cache_control: &'static str,
    ) -> Result<Response, ApiError> {
        let etag = format!("\"{key}\"");
        let cached = match self.inner.memory.get(key) {
            Some(e) => Some(e),
            None => cache::load(&self.inner.db, key)
                .await?
                .map(|e| self.inner.memory.put(key, e)),
        };
        if let Some(entry) = cached {
            metrics::counter!("voxgate_tts_cache_total", "result" => "hit").increment(1);
            // The ETag names the stored bytes: a later re-synthesis of the
            // same key may encode differently.
            let etag = entry
                .etag
                .as_deref()
                .map(|e| format!("\"{e}\""))
                .unwrap_or(etag);
            return Ok(serve_cached(&entry, &etag, headers, cache_control));
        }
        let keyed = match known {
            Some(k) => {
                // Recorded for /api/tts/{key}/marks; off the critical path.
                let db = self.inner.db.clone();
                let record = k.clone();
                tokio::spawn(async move {
                    if let Err(e) = remember(&db, &record).await {
                        tracing::warn!(error = %e, "recording a speech request failed");
                    }
                });
                k
            }
            None => self.keyed(key).await?,
        };
        let synthesis = self.synthesis(&keyed)?;
        metrics::counter!("voxgate_tts_cache_total", "result" => "miss").increment(1);
        self.check_rate(user).await?;
        let chars = keyed.text.chars().count() as i64;
        let exempt = user.has_role("agent") || user.has_role("admin");
        if !exempt {
            limits::charge(
                &self.inner.db,
                user.id,
                chars,
                self.inner.config.daily_chars,
            )
            .await?;
        }
        if self.engine_kind().on_machine() {
            // Polly's billed count comes from its response; voices on this
            // machine "bill" what they speak.
            metrics::counter!("voxgate_tts_billed_characters_total", "engine" => self.engine_name())
                .increment(chars as u64);
        }
        let engine = self.inner.engine.clone();
        let permits = self.inner.permits.clone();
        let start = move || async move {
            // Bounded concurrency keeps us under the upstream's TPS quota.
            let permit = tokio::time::timeout(Duration::from_secs(10), permits.acquire_owned())
                .await
                .map_err(|_| TtsError::Unavailable("too many syntheses in progress".into()))?
                .map_err(|_| TtsError::Unavailable("shutting down".into()))?;
            let stream = engine.synthesize(&synthesis).await?;
            Ok(stream
                .map(move |chunk| {
                    let _held = &permit;
                    chunk
                })
                .boxed())
        };
        let format = Format::parse(&keyed.format).unwrap_or(Format::Mp3);
        let finish = Finish {
            max_cache_bytes: self.inner.config.cache_max_bytes,
            mp3_frames: format == Format::Mp3 && self.engine_kind().on_machine(),
        };
        let (flight, leader) = self.inner.flights.join_or_start(
            &self.inner.db,
            key,
            format.content_type(),
            finish,
            start,
        );
        if !leader && !exempt {
            // Joining a synthesis someone else started costs nothing.
            limits::refund(&self.inner.db, user.id, chars).await;
        }
        if let Err(e) = flight.wait_started().await {
            if leader && !exempt {
                limits::refund(&self.inner.db, user.id, chars).await;
            }
            return Err(e.into());
        }
        let body = Body::from_stream(
            flight
                .follow(self.inner.db.clone())
                .map(|r| r.map_err(std::io::Error::other)),
        );
        let mut response = (StatusCode::OK, body).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        // No validator while streaming: the final bytes are not known yet,
        // and a later synthesis of the same key may encode differently.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
        h.insert(
            "x-voxgate-cache",
            HeaderValue::from_static(if leader { "miss" } else { "shared" }),
        );
        Ok(response)
    }

    /// Word and sentence timings for `key` (cached once known exactly).
    /// Computing Polly marks is a billed synthesis, so it counts against
    /// the user's rate limit and quota and takes a concurrency permit.
    pub async fn marks(&self, user: &CurrentUser, key: &str) -> Result<Vec<Mark>, ApiError> {
        let marks_key = format!("{key}.marks");
        if let Some(entry) = self.inner.memory.get(&marks_key) {
            return serde_json::from_slice(&entry.data).map_err(|e| ApiError::Internal(e.into()));
        }
        if let Some(entry) = cache::load(&self.inner.db, &marks_key).await? {
            let marks =
                serde_json::from_slice(&entry.data).map_err(|e| ApiError::Internal(e.into()))?;
            self.inner.memory.put(&marks_key, entry);
            return Ok(marks);
        }
        let keyed = self.keyed(key).await?;
        let synthesis = self.synthesis(&keyed)?;
        let duration = cache::duration_ms(&self.inner.db, key)
            .await?
            .map(|ms| Duration::from_millis(ms.max(0) as u64));
        let billed = self.engine_kind() == EngineKind::Polly;
        let chars = keyed.text.chars().count() as i64;
        let exempt = user.has_role("agent") || user.has_role("admin");
        if billed {
            self.check_rate(user).await?;
            if !exempt {
                limits::charge(
                    &self.inner.db,
                    user.id,
                    chars,
                    self.inner.config.daily_chars,
                )
                .await?;
            }
        }
        let computed = async {
            let _permit = if billed {
                Some(
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        self.inner.permits.clone().acquire_owned(),
                    )
                    .await
                    .map_err(|_| TtsError::Unavailable("too many syntheses in progress".into()))?
                    .map_err(|_| TtsError::Unavailable("shutting down".into()))?,
                )
            } else {
                None
            };
            self.inner.engine.speech_marks(&synthesis, duration).await
        }
        .await;
        let marks = match computed {
            Ok(m) => m,
            Err(e) => {
                if billed && !exempt {
                    limits::refund(&self.inner.db, user.id, chars).await;
                }
                return Err(e.into());
            }
        };
        // Local marks are estimates; keep them only once the real
        // duration is known.
        if billed || duration.is_some() {
            let data = serde_json::to_vec(&marks).map_err(|e| ApiError::Internal(e.into()))?;
            if cache::store_whole(
                &self.inner.db,
                &marks_key,
                "application/json",
                &data,
                self.inner.config.cache_max_bytes,
            )
            .await
            .is_ok()
            {
                self.inner.memory.put(
                    &marks_key,
                    cache::Entry {
                        content_type: "application/json".into(),
                        data: data.into(),
                        duration_ms: None,
                        etag: None,
                    },
                );
            }
        }
        Ok(marks)
    }
}

/// `en-US` matches `en-us`, and a bare `en` matches any English.
fn language_matches(voice_language: &str, wanted: &str) -> bool {
    let v = voice_language.to_ascii_lowercase();
    let w = wanted.to_ascii_lowercase().replace('_', "-");
    v == w || (!w.contains('-') && v.split('-').next() == Some(w.as_str()))
}

/// A cached entry as a response: whole, a byte range, or 304.
fn serve_cached(
    entry: &cache::Entry,
    etag: &str,
    headers: &HeaderMap,
    cache_control: &'static str,
) -> Response {
    let common = |h: &mut HeaderMap| {
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert("x-voxgate-cache", HeaderValue::from_static("hit"));
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        common(r.headers_mut());
        return r;
    }
    let total = entry.data.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let mut response = match range.filter(|_| if_range_ok).map(|r| parse_range(r, total)) {
        Some(Some(Ok((start, end)))) => {
            let mut r =
                (StatusCode::PARTIAL_CONTENT, entry.data.slice(start..=end)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        Some(Some(Err(()))) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            common(r.headers_mut());
            return r;
        }
        // No range, or a form we do not serve (several ranges): the whole.
        _ => (StatusCode::OK, entry.data.clone()).into_response(),
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    common(h);
    response
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive range. `None`: not a
/// single byte range (ignored); `Err`: unsatisfiable.
fn parse_range(value: &str, total: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if total == 0 {
        return Some(Err(()));
    }
    let result = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: usize = b.parse().ok()?;
            if n == 0 {
                Err(())
            } else {
                Ok((total.saturating_sub(n), total - 1))
            }
        }
        (false, _) => {
            let start: usize = a.parse().ok()?;
            let end: usize = if b.is_empty() {
                total - 1
            } else {
                b.parse::<usize>().ok()?.min(total - 1)
            };
            if start >= total || start > end {
                Err(())
            } else {
                Ok((start, end))
            }
        }
        _ => return None,
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some(Ok((990, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=5-2", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }

    #[test]
    fn languages_match_case_insensitively_and_by_primary_tag() {
        assert!(language_matches("en-US", "en-us"));
        assert!(language_matches("en-GB", "en"));
        assert!(!language_matches("en-GB", "en-US"));
        assert!(language_matches("de-DE", "de_DE"));
    }

    #[test]
    fn keys_are_stable_and_sensitive_to_every_part() {
        let k = Keyed {
            engine: "local".into(),
            voice: "en-us".into(),
            language: "en-US".into(),
            format: "mp3".into(),
            engine_kind: "standard".into(),
            text: "Hello".into(),
        };
        assert_eq!(k.key(), k.clone().key());
        assert_eq!(k.key().len(), 27);
        let mut other = k.clone();
        other.text = "Hello!".into();
        assert_ne!(k.key(), other.key());
        let mut shifted = k.clone();
        shifted.voice = "en-usH".into();
        shifted.text = "ello".into();
        assert_ne!(
            k.key(),
            shifted.key(),
            "length-prefixed parts cannot run together"
        );
    }
}
