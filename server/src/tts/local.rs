//! The local voice: the `espeak-ng` program (run as a subprocess — it is
//! GPL and never linked) and an in-process MP3 encoder. Works with no
//! cloud account; the default engine when no AWS settings are present.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::OnceCell;
use voxgate_audio::{AudioError, Espeak, EspeakConfig};

use super::engine::{
    AudioStream, EngineKind, Format, Mark, SpeechEngine, Synthesis, TtsError, Voice,
};
use super::text;

/// Pieces are kept short so the first audio arrives quickly.
const PIECE_CHARS: usize = 600;
const MP3_KBPS: u32 = 48;

pub struct LocalEngine {
    espeak: Espeak,
    voices: OnceCell<std::sync::Arc<Vec<Voice>>>,
    default_voice: String,
}

impl LocalEngine {
    pub fn new(
        program: std::path::PathBuf,
        concurrency: usize,
        default_voice: Option<String>,
    ) -> LocalEngine {
        LocalEngine {
            espeak: Espeak::new(EspeakConfig {
                program,
                timeout: Duration::from_secs(30),
                max_concurrency: concurrency.max(1),
            }),
            voices: OnceCell::new(),
            default_voice: default_voice.unwrap_or_else(|| "en-us".into()),
        }
    }
}

fn audio_error(e: AudioError) -> TtsError {
    match e {
        AudioError::NotInstalled => TtsError::Unavailable("espeak-ng is not installed".into()),
        AudioError::Timeout => TtsError::Upstream("the local voice timed out".into()),
        AudioError::UnknownVoice(v) => TtsError::InvalidVoice {
            voice: v,
            language: None,
            valid: Vec::new(),
        },
        other => TtsError::Upstream(other.to_string()),
    }
}

async fn render(
    espeak: &Espeak,
    voice: &str,
    piece: &str,
    format: Format,
) -> Result<Vec<Bytes>, TtsError> {
    let wav = espeak
        .synthesize_wav(voice, piece, 0)
        .await
        .map_err(audio_error)?;
    // Encoding is CPU work; keep it off the async workers.
    tokio::task::spawn_blocking(move || match format {
        Format::Mp3 => voxgate_audio::wav_to_mp3_chunks(&wav, MP3_KBPS, 16),
        Format::Pcm => voxgate_audio::decode_wav(&wav)
            .map(|pcm| vec![Bytes::from(pcm.to_mono().resample(16_000).to_s16le())]),
        Format::OggVorbis => unreachable!("refused before synthesis"),
    })
    .await
    .map_err(|e| TtsError::Upstream(e.to_string()))?
    .map_err(audio_error)
}

#[async_trait::async_trait]
impl SpeechEngine for LocalEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Local
    }

    fn default_voice(&self) -> &str {
        &self.default_voice
    }

    fn request_limit(&self) -> usize {
        PIECE_CHARS
    }

    async fn voices(&self) -> Result<std::sync::Arc<Vec<Voice>>, TtsError> {
        self.voices
            .get_or_try_init(|| async {
                let voices = self.espeak.voices().await.map_err(audio_error)?;
                Ok::<_, TtsError>(std::sync::Arc::new(
                    voices
                        .into_iter()
                        .map(|v| Voice {
                            id: v.id,
                            name: v.name,
                            language: v.language,
                            gender: v.gender,
                            engines: vec!["standard".into()],
                        })
                        .collect(),
                ))
            })
            .await
            .cloned()
    }

    async fn synthesize(&self, s: &Synthesis) -> Result<AudioStream, TtsError> {
        if s.format == Format::OggVorbis {
            return Err(TtsError::Unsupported(
                "OutputFormat ogg_vorbis is not available with the local voice; use mp3 or pcm"
                    .into(),
            ));
        }
        let pieces = text::split(&s.text, PIECE_CHARS);
        let mut pieces = pieces.into_iter();
        let first = match pieces.next() {
            Some(p) => render(&self.espeak, &s.voice, &p, s.format).await?,
            None => Vec::new(),
        };
        let espeak = self.espeak.clone();
        let voice = s.voice.clone();
        let format = s.format;
        let rest = futures::stream::iter(pieces)
            .then(move |piece| {
                let espeak = espeak.clone();
                let voice = voice.clone();
                async move { render(&espeak, &voice, &piece, format).await }
            })
            .flat_map(|result| match result {
                Ok(chunks) => futures::stream::iter(chunks.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            });
        Ok(futures::stream::iter(first.into_iter().map(Ok))
            .chain(rest)
            .boxed())
    }

    async fn speech_marks(
        &self,
        s: &Synthesis,
        duration: Option<Duration>,
    ) -> Result<Vec<Mark>, TtsError> {
        // espeak-ng reports no timings.
        Ok(estimated_marks(
            &s.text,
            duration.unwrap_or_else(|| estimate_duration(&s.text)),
        ))
    }

    async fn ready(&self) -> Result<(), String> {
        if self.espeak.is_available().await {
            Ok(())
        } else {
            Err("espeak-ng is not installed".into())
        }
    }
}

/// Word and sentence timings for voices that report none: the known (or
/// estimated) duration spread over the words by length, with pauses at
/// sentence ends.
pub fn estimated_marks(text: &str, duration: Duration) -> Vec<Mark> {
    voxgate_audio::estimate_speech_marks(text, duration)
        .into_iter()
        .map(|m| Mark {
            time: m.time_ms,
            kind: m.kind,
            start: m.start,
            end: m.end,
            value: m.value,
        })
        .collect()
}

/// About 14 characters a second at espeak-ng's default 175 words a minute.
pub fn estimate_duration(text: &str) -> Duration {
    Duration::from_millis((text.chars().count() as u64 * 1000 / 14).max(300))
}
