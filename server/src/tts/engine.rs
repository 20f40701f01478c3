//! The speech-engine abstraction: list voices, synthesize text into a
//! stream of audio bytes, produce speech marks.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::Serialize;

/// A voice an engine offers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Voice {
    pub id: String,
    pub name: String,
    pub language: String,
    pub gender: Option<String>,
    /// Engine kinds the voice supports (`standard`, `neural`…).
    pub engines: Vec<String>,
}

/// Audio formats voxgate serves.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Mp3,
    OggVorbis,
    Pcm,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "mp3" => Some(Format::Mp3),
            "ogg_vorbis" => Some(Format::OggVorbis),
            "pcm" => Some(Format::Pcm),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Mp3 => "mp3",
            Format::OggVorbis => "ogg_vorbis",
            Format::Pcm => "pcm",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Mp3 => "audio/mpeg",
            Format::OggVorbis => "audio/ogg",
            Format::Pcm => "audio/pcm",
        }
    }
}

/// Which engine speaks. Stored with every registered synthesis, so a key
/// made by one engine is never served by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Polly,
    /// Piper, a neural voice run on this machine.
    Neural,
    /// espeak-ng.
    Local,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Polly => "polly",
            EngineKind::Neural => "neural",
            EngineKind::Local => "local",
        }
    }

    pub fn parse(s: &str) -> Option<EngineKind> {
        match s {
            "polly" => Some(EngineKind::Polly),
            "neural" => Some(EngineKind::Neural),
            "local" => Some(EngineKind::Local),
            _ => None,
        }
    }

    /// Runs on this machine: nothing is billed, audio is encoded here (MP3
    /// frame-aligned, no Ogg), and word timings are estimates.
    pub fn on_machine(self) -> bool {
        self != EngineKind::Polly
    }
}

/// Polly's `Engine`: the voice technology, which sets quality and price.
/// Voices on this machine offer `standard` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceEngine {
    Standard,
    Neural,
    LongForm,
    Generative,
}

impl VoiceEngine {
    pub const ALL: [VoiceEngine; 4] = [
        VoiceEngine::Standard,
        VoiceEngine::Neural,
        VoiceEngine::LongForm,
        VoiceEngine::Generative,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VoiceEngine::Standard => "standard",
            VoiceEngine::Neural => "neural",
            VoiceEngine::LongForm => "long-form",
            VoiceEngine::Generative => "generative",
        }
    }

    pub fn parse(s: &str) -> Option<VoiceEngine> {
        VoiceEngine::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One synthesis, already validated and normalised.
#[derive(Debug, Clone)]
pub struct Synthesis {
    pub text: String,
    pub voice: String,
    pub language: String,
    pub format: Format,
    pub engine_kind: VoiceEngine,
}

/// A word or sentence timing, shaped like Polly's speech marks.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Mark {
    pub time: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub start: usize,
    pub end: usize,
    pub value: String,
}

pub type AudioStream = BoxStream<'static, Result<Bytes, TtsError>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TtsError {
    #[error("voice `{voice}` is not available{for_language}; valid voices: {valid}", for_language = language.as_ref().map(|l| format!(" for {l}")).unwrap_or_default(), valid = valid.join(", "))]
    InvalidVoice {
        voice: String,
        language: Option<String>,
        valid: Vec<String>,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("the text is longer than the engine accepts ({0} characters)")]
    TextTooLong(usize),
    #[error("the speech service is throttling requests")]
    Throttled,
    #[error("the speech service failed: {0}")]
    Upstream(String),
    #[error("the speech engine is not available: {0}")]
    Unavailable(String),
    /// The user has as many syntheses in progress as one user may.
    #[error("you already have {0} syntheses in progress")]
    UserBusy(usize),
}

/// A speech engine. Implementations must never interpret user text as
/// markup.
#[async_trait::async_trait]
pub trait SpeechEngine: Send + Sync {
    fn kind(&self) -> EngineKind;
    fn name(&self) -> &'static str {
        self.kind().name()
    }
    fn default_voice(&self) -> &str;
    /// Most characters one upstream request may carry.
    fn request_limit(&self) -> usize;
    /// Shared, so the per-request voice check does not copy the list.
    async fn voices(&self) -> Result<std::sync::Arc<Vec<Voice>>, TtsError>;
    /// Starts a synthesis. Errors before the first byte are returned here;
    /// later ones arrive in the stream.
    async fn synthesize(&self, s: &Synthesis) -> Result<AudioStream, TtsError>;
    /// Word and sentence timings; `duration` is the audio's length when known.
    async fn speech_marks(
        &self,
        s: &Synthesis,
        duration: Option<Duration>,
    ) -> Result<Vec<Mark>, TtsError>;
    /// `Ok` when the engine can synthesize now.
    async fn ready(&self) -> Result<(), String>;
    /// Processes the engine runs on this machine (shown in `/readyz`).
    fn worker_pids(&self) -> Vec<u32> {
        Vec::new()
    }
    /// Stops the engine's own processes; the app is shutting down.
    async fn shutdown(&self) {}
}
