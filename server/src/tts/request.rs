//! Registered syntheses: what a cache key stands for, kept in
//! `tts_requests` so `GET /api/tts/{key}` can synthesize it later, and who
//! registered it (`tts_registrations`): only they may hear it, and each of
//! them pays once, cached or not, so the shared cache is no oracle.

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::engine::{EngineKind, Format, VoiceEngine};
use crate::error::ApiError;

/// What to say and how: the input of a synthesis, as the client sent it.
#[derive(Debug, Clone)]
pub struct SpeechParams {
    pub text: String,
    /// Engine voice id (`Joanna`, `en-us`); `None` = the configured default.
    pub voice: Option<String>,
    /// BCP-47 language, e.g. `en-US`; `None` = the voice's language.
    pub language: Option<String>,
    /// `mp3` (default), `ogg_vorbis`, `pcm`.
    pub format: Option<String>,
    /// Polly engine: `standard`, `neural`, `long-form`, `generative`.
    pub engine_kind: Option<String>,
}

/// A registered synthesis (also stored with chat replies).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpeechRef {
    pub key: String,
    /// `GET` streams the audio.
    pub url: String,
    /// `GET` returns the word and sentence timings (speech marks).
    pub marks_url: String,
    pub voice: String,
    pub language: String,
    pub format: Format,
}

/// The normalised request that a cache key stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub engine: EngineKind,
    pub voice: String,
    pub language: String,
    pub format: Format,
    pub engine_kind: VoiceEngine,
    pub text: String,
}

impl Keyed {
    /// Content address: the same words, voice and format always give the
    /// same key, whoever asks.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.engine.name(),
            &self.voice,
            &self.language,
            self.format.name(),
            self.engine_kind.as_str(),
            &self.text,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        base64_url(&digest[..20])
    }

    /// Where clients fetch this synthesis.
    pub fn reference(self, key: String) -> SpeechRef {
        SpeechRef {
            url: format!("/api/tts/{key}"),
            marks_url: format!("/api/tts/{key}/marks"),
            key,
            voice: self.voice,
            language: self.language,
            format: self.format,
        }
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Registers `k` for `user`, who may then fetch it (and pays at the first
/// hearing). `paid`: the caller has charged the user already; returns
/// whether this call made the registration paid (false when it already
/// was, so the caller refunds).
pub async fn register(db: &PgPool, k: &Keyed, user: Uuid, paid: bool) -> Result<bool, ApiError> {
    let key = k.key();
    let became_paid = sqlx::query_scalar!(
        "WITH request AS (
             INSERT INTO tts_requests (key, engine, voice, language, format, engine_kind, text)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING
         )
         INSERT INTO tts_registrations (user_id, key, paid) VALUES ($8, $1, $9)
         ON CONFLICT (user_id, key) DO UPDATE SET paid = true
           WHERE $9 AND NOT tts_registrations.paid
         RETURNING paid",
        key,
        k.engine.name(),
        k.voice,
        k.language,
        k.format.name(),
        k.engine_kind.as_str(),
        k.text,
        user,
        paid,
    )
    .fetch_optional(db)
    .await?;
    Ok(became_paid == Some(true) && paid)
}

/// What a user's registration of a key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// They were charged for hearing it.
    pub paid: bool,
    /// A hearing of theirs delivered every byte: later ones may be `hit`s.
    pub heard: bool,
    /// They were charged for its (billed) speech marks.
    pub marks_paid: bool,
}

/// `user`'s registration of `key`, if any.
pub async fn registration(
    db: &PgPool,
    user: Uuid,
    key: &str,
) -> sqlx::Result<Option<Registration>> {
    sqlx::query_as!(
        Registration,
        "SELECT paid, heard, marks_paid FROM tts_registrations WHERE user_id = $1 AND key = $2",
        user,
        key,
    )
    .fetch_optional(db)
    .await
}

/// Records that a hearing of `key` delivered every byte to `user`.
pub async fn mark_heard(db: &PgPool, user: Uuid, key: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE tts_registrations SET heard = true
          WHERE user_id = $1 AND key = $2 AND NOT heard",
        user,
        key,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records that `user` paid for the speech marks of `key`; false when a
/// concurrent request of theirs did already (the caller refunds).
pub async fn pay_marks(db: &PgPool, user: Uuid, key: &str, paid: bool) -> sqlx::Result<bool> {
    let changed = sqlx::query!(
        "UPDATE tts_registrations SET marks_paid = $3
          WHERE user_id = $1 AND key = $2 AND marks_paid <> $3",
        user,
        key,
        paid,
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// Takes a payment back (the synthesis it paid for did not happen).
pub async fn unpay(db: &PgPool, user: Uuid, key: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE tts_registrations SET paid = false WHERE user_id = $1 AND key = $2",
        user,
        key,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The answer for a key that is unknown, or that the caller did not
/// register: the same in both cases.
pub fn not_registered(key: &str) -> ApiError {
    ApiError::NotFound(format!(
        "No speech is registered under `{key}` for you; create it with POST /api/tts."
    ))
}

/// What `key` was registered for.
pub async fn lookup(db: &PgPool, key: &str) -> Result<Keyed, ApiError> {
    let not_found = || not_registered(key);
    if key.len() != 27
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(not_found());
    }
    let row = sqlx::query!(
        "SELECT engine, voice, language, format, engine_kind, text FROM tts_requests WHERE key = $1",
        key,
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(not_found)?;
    let engine = row.engine;
    let engine = EngineKind::parse(&engine).ok_or_else(|| {
        ApiError::NotFound(format!(
            "This speech was registered for the {engine} engine, which this server does not run."
        ))
    })?;
    let unreadable =
        |what: &str| ApiError::Internal(anyhow::anyhow!("tts_requests row {key}: bad {what}"));
    Ok(Keyed {
        engine,
        voice: row.voice,
        language: row.language,
        format: Format::parse(&row.format).ok_or_else(|| unreadable("format"))?,
        engine_kind: VoiceEngine::parse(&row.engine_kind)
            .ok_or_else(|| unreadable("engine_kind"))?,
        text: row.text,
    })
}

/// How long a registration no stored chat reply points at is kept: a
/// client that registered speech plays it within minutes, not months.
pub const UNREFERENCED_DAYS: i32 = 30;

/// Drops registrations older than [`UNREFERENCED_DAYS`] that no stored chat
/// reply points at (their audio, if cached, ages out of the cache by
/// itself).
pub async fn sweep(db: &PgPool) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM tts_requests r WHERE r.created_at < now() - make_interval(days => $1)
           AND NOT EXISTS (SELECT 1 FROM chat_messages m
                            WHERE m.speech IS NOT NULL AND m.speech ->> 'key' = r.key)",
        UNREFERENCED_DAYS,
    )
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_sensitive_to_every_part() {
        let k = Keyed {
            engine: EngineKind::Local,
            voice: "en-us".into(),
            language: "en-US".into(),
            format: Format::Mp3,
            engine_kind: VoiceEngine::Standard,
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
