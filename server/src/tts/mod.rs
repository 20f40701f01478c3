//! Text to speech: engines (Amazon Polly, the local espeak-ng voice), the
//! shared audio cache, single-flight synthesis, per-user limits and the
//! HTTP endpoints (`/textToSpeech`, `/api/tts`, `/api/voices`).
//!
//! User text is always sent as plain text (`TextType=text`): nothing a user
//! types can become SSML.

pub mod text;

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
        for part in [&self.engine, &self.voice, &self.language, &self.format, &self.engine_kind, &self.text] {
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

/// The speech service as the rest of the app sees it.
#[derive(Clone)]
pub struct Tts {
    db: PgPool,
    engine_name: &'static str,
    default_voice: String,
    default_language: String,
    max_chars: usize,
}

impl Tts {
    pub fn new(db: PgPool, config: &crate::config::Config) -> Tts {
        Tts {
            db,
            engine_name: "local",
            default_voice: config.tts.default_voice.clone().unwrap_or_else(|| "en-us".into()),
            default_language: "en-US".into(),
            max_chars: config.tts.max_chars,
        }
    }

    /// Registers a synthesis and returns where to fetch it. `long_text`
    /// lifts the direct-endpoint length limit (the chat speaks long replies
    /// in several upstream requests).
    pub async fn speak(&self, params: SpeechParams, long_text: bool) -> Result<SpeechRef, ApiError> {
        let text = text::normalise(&params.text);
        if text.is_empty() {
            return Err(ApiError::validation("Text", "there is nothing to say"));
        }
        if !long_text && text.chars().count() > self.max_chars {
            return Err(ApiError::PayloadTooLarge(format!(
                "Text is longer than {} characters.",
                self.max_chars
            )));
        }
        let keyed = Keyed {
            engine: self.engine_name.to_string(),
            voice: params.voice.unwrap_or_else(|| self.default_voice.clone()),
            language: params.language.unwrap_or_else(|| self.default_language.clone()),
            format: params.format.unwrap_or_else(|| "mp3".into()),
            engine_kind: params.engine_kind.unwrap_or_else(|| "standard".into()),
            text,
        };
        let key = remember(&self.db, &keyed).await?;
        Ok(SpeechRef {
            url: format!("/api/tts/{key}"),
            marks_url: format!("/api/tts/{key}/marks"),
            key,
            voice: keyed.voice,
            language: keyed.language,
            format: keyed.format,
        })
    }
}
