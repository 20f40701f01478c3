//! Listening: an utterance in, the words recognised out, with the same
//! identity, limits and care as speech. `POST /api/stt` takes the recorded
//! bytes; `POST /v1/audio/transcriptions` is OpenAI's shape of the same.
//!
//! The recogniser runs on the machine (`local.rs`: faster-whisper in warm
//! worker processes) or is an OpenAI-compatible transcription service
//! (`service.rs`). Audio is held in memory for the one recognition and
//! never written to disk, the database or a log; only the text a user then
//! sends becomes a chat message. Each user may recognise one utterance at a
//! time, so one user cannot occupy every worker.

mod audio;
mod handlers;
mod local;
mod service;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::{Config, SttConfig, SttEngineChoice};
use crate::error::ApiError;
use crate::limits::{self, Charge, Meter};
use audio::{ACCEPTED, Container};
pub use handlers::routes;
use local::LocalRecogniser;
use service::ServiceRecogniser;

/// The recogniser an instance uses.
enum Recogniser {
    Local(LocalRecogniser),
    Service(ServiceRecogniser),
}

impl Recogniser {
    fn name(&self) -> &'static str {
        match self {
            Recogniser::Local(_) => "local",
            Recogniser::Service(_) => "service",
        }
    }

    async fn recognise(
        &self,
        audio: &[u8],
        container: Container,
        language: Option<&str>,
        partials: Option<&Partials>,
    ) -> Result<Heard, SttError> {
        match self {
            Recogniser::Local(r) => r.recognise(audio, language, partials).await,
            Recogniser::Service(r) => r.recognise(audio, container, language).await,
        }
    }
}
pub use local::WORKER_SETTINGS;

/// Recognitions a minute, and seconds of speech recognised a day.
pub const METER: Meter = Meter {
    rate_table: "stt_rate",
    usage_table: "stt_usage",
    amount: "seconds",
    unit: "seconds",
    requests: "recognitions",
    budget: "listening quota",
    metric: "voxgate_stt_rejected_total",
};

/// Where a recogniser that can tell the text so far sends it.
pub type Partials = tokio::sync::mpsc::Sender<String>;

/// What a recogniser heard.
pub struct Heard {
    pub text: String,
    pub language: String,
    /// How long the recogniser found the audio to be, where it says.
    pub duration: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error("every recogniser worker is busy")]
    Busy,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Undecodable(String),
    #[error("the utterance is too long")]
    TooLong,
    #[error("the language is not one the recogniser knows")]
    BadLanguage,
    #[error("{0}")]
    Engine(String),
}

/// The recognised utterance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transcript {
    pub text: String,
    /// The language heard (ISO 639-1).
    pub language: String,
    pub duration_ms: u64,
    /// `local` or `service`.
    pub engine: &'static str,
}

/// Who is listened to, as far as the recogniser needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Speaker {
    pub user_id: Uuid,
    /// Agents and admins: no daily budget.
    pub exempt: bool,
}

#[derive(Clone)]
pub struct Stt {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Result<Recogniser, String>,
    db: PgPool,
    config: SttConfig,
    /// Users with a recognition under way on this instance.
    busy: Mutex<HashSet<Uuid>>,
}

/// A user's one utterance at a time, admitted; the turn ends when this is
/// dropped, so a client that leaves frees it.
pub struct Admitted {
    stt: Stt,
    speaker: Speaker,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.stt.inner.busy.lock() {
            busy.remove(&self.speaker.user_id);
        }
    }
}

/// A recording that passed every check that needs no recogniser: what
/// it is, how long its container says it is, in which language.
pub struct Utterance {
    container: Container,
    length: Duration,
    language: Option<String>,
}

/// A requested language: an ISO 639-1 code, or none to have it detected.
pub fn check_language(language: Option<&str>) -> Result<(), ApiError> {
    if language.is_some_and(|l| l.len() != 2 || !l.bytes().all(|b| b.is_ascii_lowercase())) {
        return Err(ApiError::validation(
            "language",
            "must be an ISO 639-1 code such as `en`",
        ));
    }
    Ok(())
}

impl Admitted {
    /// What can be told of the recording without hearing it: its format,
    /// its length from its container (over the limit is a 413) and the
    /// language asked for. Answered before any recogniser (or paid
    /// service) is involved, and before a streamed answer begins.
    pub fn check(&self, audio: &[u8], language: Option<String>) -> Result<Utterance, ApiError> {
        check_language(language.as_deref())?;
        let max = self.stt.inner.config.max_seconds;
        let container = Container::sniff(audio)?;
        let length = audio::duration(audio, container)?;
        if length > Duration::from_secs(u64::from(max)) {
            return Err(too_long(max));
        }
        Ok(Utterance {
            container,
            length,
            language,
        })
    }

    /// Recognises the checked utterance, sending the text so far to
    /// `partials` while it is recognised where the engine can tell it (the
    /// local recogniser, after each segment). The seconds are charged up
    /// front, given back if the recogniser cannot hear it, and made up to
    /// what it heard if that was longer.
    pub async fn transcribe(
        &self,
        audio: &[u8],
        utterance: Utterance,
        partials: Option<&Partials>,
    ) -> Result<Transcript, ApiError> {
        let inner = &self.stt.inner;
        let engine = inner.engine.as_ref().map_err(|why| unavailable(why))?;
        let max = inner.config.max_seconds;
        let Utterance {
            container,
            length,
            language,
        } = utterance;
        let language = language.as_deref();
        let speaker = self.speaker;
        let seconds = whole_seconds(length);
        // Charged before it is heard, given back if it cannot be.
        let charge = if speaker.exempt {
            Charge::none(&inner.db, METER, speaker.user_id)
        } else {
            let daily = inner.config.daily_seconds;
            Charge::take(&inner.db, &inner.db, METER, speaker.user_id, seconds, daily).await?
        };
        let heard = match engine.recognise(audio, container, language, partials).await {
            Ok(heard) => heard,
            Err(e) => {
                charge.refund().await;
                return Err(refusal(e, max));
            }
        };
        // The container's length is the file's own claim; what the
        // recogniser decoded is what was heard, and a longer recording
        // costs what it was.
        let length = heard.duration.map_or(length, |heard| heard.max(length));
        charge.add(whole_seconds(length) - seconds).await?;
        metrics::counter!("voxgate_stt_recognitions_total").increment(1);
        let text = crate::extract::trim_blank(&heard.text).to_string();
        if text.is_empty() {
            return Err(ApiError::Validation {
                detail: "Nothing was heard: the recording holds no speech. Speak closer to the microphone, or type the message.".into(),
                errors: Vec::new(),
            });
        }
        Ok(Transcript {
            text,
            language: heard.language,
            duration_ms: length.as_millis() as u64,
            engine: engine.name(),
        })
    }
}

/// Listening is off on this server, and why.
fn unavailable(why: &str) -> ApiError {
    ApiError::Unavailable {
        detail: format!(
            "Speech recognition is not available on this server ({why}); type the message instead."
        ),
        retry_after: None,
    }
}

/// Seconds as the quota counts them: started seconds, at least one.
fn whole_seconds(length: Duration) -> i64 {
    (length.as_millis().div_ceil(1000) as i64).max(1)
}

/// What a recogniser's failure answers.
fn refusal(e: SttError, max: u32) -> ApiError {
    match e {
        SttError::Busy => ApiError::Unavailable {
            detail: "Every speech recogniser is busy; try again in a moment.".into(),
            retry_after: Some(2),
        },
        SttError::Unavailable(why) => ApiError::unavailable(format!(
            "Speech recognition is not available right now ({why}); type the message instead."
        )),
        SttError::Undecodable(_) => {
            ApiError::bad_request(format!("The audio cannot be decoded; send {ACCEPTED}."))
        }
        SttError::BadLanguage => {
            ApiError::validation("language", "is not a language the recogniser knows")
        }
        SttError::TooLong => too_long(max),
        SttError::Engine(why) => ApiError::BadGateway {
            detail:
                "The speech recogniser failed on this utterance; try again, or type the message."
                    .into(),
            source: Some(anyhow::anyhow!(why)),
        },
    }
}

impl Stt {
    /// Starts the configured recogniser. One that cannot start leaves
    /// listening off (503 with the reason) rather than stopping voxgate:
    /// sign-in, chat and speech work without it.
    pub async fn new(config: &Config, db: PgPool) -> Stt {
        let stt = config.stt.clone();
        let engine = match (stt.engine, &stt.service) {
            (None, _) => Err("speech recognition is turned off (VOXGATE_STT_ENGINE=off)".to_string()),
            (Some(SttEngineChoice::Service | SttEngineChoice::Auto), Some(service)) => {
                ServiceRecogniser::new(&stt, service.clone()).map(Recogniser::Service)
            }
            (Some(SttEngineChoice::Service), None) => {
                Err("VOXGATE_STT_SERVICE_URL is not set".to_string())
            }
            (Some(SttEngineChoice::Auto), None) if stt.whisper_python.is_none() => {
                Err("no recogniser is installed (VOXGATE_WHISPER_PYTHON is not set)".to_string())
            }
            (Some(_), _) => LocalRecogniser::start(stt.clone())
                .await
                .map(Recogniser::Local)
                .inspect_err(|reason| {
                    tracing::error!(%reason, "the speech recogniser could not start; listening is off");
                }),
        };
        Stt {
            inner: Arc::new(Inner {
                engine,
                db,
                config: stt,
                busy: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Largest body the recognition endpoints read.
    pub fn max_bytes(&self) -> usize {
        self.inner.config.max_bytes
    }

    /// Lets `speaker` send an utterance: listening is available, the
    /// request counts against their rate, and they have no other
    /// utterance under way on this instance. Checked before the body is
    /// read, so a refused request costs no upload.
    pub async fn admit(&self, speaker: Speaker) -> Result<Admitted, ApiError> {
        let inner = &self.inner;
        if let Err(why) = &inner.engine {
            return Err(unavailable(why));
        }
        let user = speaker.user_id;
        limits::check_rate(&inner.db, METER, user, inner.config.rate_per_minute).await?;
        let mut busy = inner.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(user) {
            return Err(ApiError::TooManyRequests {
                detail: "One utterance at a time: the previous one is still being recognised."
                    .into(),
                retry_after: 1,
            });
        }
        Ok(Admitted {
            stt: self.clone(),
            speaker,
        })
    }

    /// For `/readyz`: whether listening is as configured, and the engine
    /// and its workers or why listening is off. Off by choice (or with
    /// nothing installed under `auto`) is as configured; a recogniser that
    /// was asked for and could not start is not.
    pub fn status(&self) -> (bool, String) {
        match &self.inner.engine {
            Ok(Recogniser::Local(engine)) => {
                let pids: Vec<String> = engine.worker_pids().iter().map(u32::to_string).collect();
                let detail = format!(
                    "local recogniser ({}) ready; worker pid {}",
                    engine.model(),
                    pids.join(", ")
                );
                (true, detail)
            }
            Ok(Recogniser::Service(service)) => (
                true,
                format!(
                    "transcription service at {} (model {})",
                    service.describe(),
                    service.model()
                ),
            ),
            Err(why) => (
                matches!(self.inner.config.engine, None | Some(SttEngineChoice::Auto)),
                format!("off: {why}"),
            ),
        }
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        match &self.inner.engine {
            Ok(Recogniser::Local(engine)) => engine.worker_pids(),
            _ => Vec::new(),
        }
    }

    /// Whether every local worker is recognising an utterance now (a
    /// further one would wait).
    pub fn all_busy(&self) -> bool {
        matches!(&self.inner.engine, Ok(Recogniser::Local(engine)) if engine.all_busy())
    }

    pub async fn shutdown(&self) {
        if let Ok(Recogniser::Local(engine)) = &self.inner.engine {
            engine.shutdown();
        }
    }
}

fn too_long(max: u32) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "The utterance is longer than {max} s; speak in shorter turns."
    ))
}
