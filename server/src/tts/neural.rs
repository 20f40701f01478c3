//! The neural voice: Piper, a neural text-to-speech that runs on a laptop
//! CPU, kept warm in worker processes. The worker (`server/piper/worker.py`,
//! embedded in the binary and run with `python -c`) loads the voice model
//! once; voxgate sends it text a piece at a time and reads back 16-bit PCM,
//! one frame per sentence, encoding each to MP3 as it arrives, so the first
//! sentence plays while the rest is spoken. Piper is GPL-3.0: it only ever
//! runs as a separate process and is never linked or imported here.
//!
//! A worker that dies fails the request it was serving and is replaced on
//! the next one. A stream dropped before its end leaves its worker in the
//! middle of an answer, so that worker is replaced too rather than read out
//! of step.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxgate_audio::Pcm;
use voxgate_audio::worker::{self, Refused};

use super::engine::{
    AudioStream, EngineKind, Format, Mark, SpeechEngine, Synthesis, TtsError, Voice,
};
use super::local::estimated_marks;
use super::text;
use crate::config::PiperConfig;

const WORKER: &str = include_str!("../../piper/worker.py");
/// Piper's memory and time to first audio grow with the longest sentence it
/// is given, so text goes to it in pieces of at most this many characters.
const PIECE_CHARS: usize = 300;
const MP3_KBPS: u32 = 48;
/// Model load takes about a second; a cold disk or a busy machine more.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the next frame in the middle of an answer.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// A frame is one sentence of a piece: far below this.
const MAX_FRAME: u32 = 32 << 20;
const MAX_MESSAGE: u32 = 64 << 10;
/// About 19 characters a second (measured on the bundled voice).
const CHARS_PER_SECOND: u64 = 19;

/// The worker's own tuning variables (threads, log level), passed on when
/// set; nothing else of voxgate's environment reaches it.
pub const WORKER_SETTINGS: &[&str] = &["VOXGATE_PIPER_THREADS", "VOXGATE_PIPER_LOG"];

/// The worker's first line, once its voice is loaded.
#[derive(serde::Deserialize)]
struct Ready {
    voice: String,
    sample_rate: u32,
    language: String,
}

/// A warm voice: the shared worker process, spoken to by [`send_piece`] and
/// [`frame`].
type Worker = worker::Process;

enum Frame {
    Audio(Vec<u8>),
    End,
    Failed(String),
}

async fn start_worker(config: &PiperConfig) -> Result<(Worker, Ready), String> {
    let python = config
        .python
        .as_ref()
        .ok_or("VOXGATE_PIPER_PYTHON is not set")?;
    let mut args = Vec::new();
    if let Some(model) = &config.model {
        args.extend(["--model".into(), model.clone().into_os_string()]);
    }
    let (worker, ready_line) = worker::start(worker::Spec {
        python,
        script: WORKER,
        args,
        settings: WORKER_SETTINGS,
        fixed: &[],
        start_timeout: START_TIMEOUT,
        loads: "voice",
        package: "piper-tts",
    })
    .await?;
    let ready: Ready = serde_json::from_str(&ready_line)
        .map_err(|e| format!("the worker's first line is not its ready line: {e}"))?;
    Ok((worker, ready))
}

/// Sends one piece of text; its audio follows as [`frame`]s.
async fn send_piece(w: &mut Worker, piece: &str) -> Result<(), TtsError> {
    w.begin();
    let mut line = serde_json::to_vec(&serde_json::json!({ "text": piece }))
        .map_err(|e| TtsError::Upstream(e.to_string()))?;
    line.push(b'\n');
    let written = async {
        w.stdin.write_all(&line).await?;
        w.stdin.flush().await
    };
    written.await.map_err(stopped)
}

/// The next frame of the piece being spoken.
async fn frame(w: &mut Worker) -> Result<Frame, TtsError> {
    let read = async {
        let frame = match w.stdout.read_u32().await? {
            0 => {
                w.finished();
                Frame::End
            }
            u32::MAX => {
                let len = w.stdout.read_u32().await?;
                if len > MAX_MESSAGE {
                    return Err(std::io::Error::other("oversized error message"));
                }
                let mut message = vec![0; len as usize];
                w.stdout.read_exact(&mut message).await?;
                w.finished();
                Frame::Failed(String::from_utf8_lossy(&message).into_owned())
            }
            len if len > MAX_FRAME => {
                return Err(std::io::Error::other(format!("a frame of {len} bytes")));
            }
            len => {
                let mut pcm = vec![0; len as usize];
                w.stdout.read_exact(&mut pcm).await?;
                Frame::Audio(pcm)
            }
        };
        Ok::<_, std::io::Error>(frame)
    };
    match tokio::time::timeout(FRAME_TIMEOUT, read).await {
        Ok(result) => result.map_err(stopped),
        Err(_) => Err(TtsError::Upstream(
            "the neural voice did not answer in time".into(),
        )),
    }
}

fn stopped(e: std::io::Error) -> TtsError {
    TtsError::Upstream(format!("the neural voice stopped: {e}"))
}

/// The warm workers and how to start another.
struct Pool {
    config: PiperConfig,
    workers: worker::Pool<Worker>,
}

type Lease = worker::Lease<Worker>;

impl Pool {
    /// A free worker, waiting at most the configured time (the wait is
    /// first come, first served).
    async fn lease(&self) -> Result<Lease, TtsError> {
        let start = || async {
            let (worker, _) = start_worker(&self.config).await?;
            tracing::info!("neural-voice worker started");
            Ok::<_, String>(worker)
        };
        self.workers.lease(start).await.map_err(|e| match e {
            Refused::Busy => TtsError::Unavailable("every neural-voice worker is busy".into()),
            Refused::Closed => TtsError::Unavailable("shutting down".into()),
            Refused::Start(reason) => {
                // The reason names local paths: it goes to the log, not to users.
                tracing::error!(%reason, "starting a neural-voice worker failed");
                TtsError::Unavailable("the neural voice could not start".into())
            }
        })
    }
}

fn leased(lease: &mut Lease) -> Result<&mut Worker, TtsError> {
    lease
        .worker()
        .ok_or_else(|| TtsError::Unavailable("the neural-voice worker is gone".into()))
}

pub struct NeuralEngine {
    pool: Arc<Pool>,
    voices: Arc<Vec<Voice>>,
    default_voice: String,
    sample_rate: u32,
}

impl NeuralEngine {
    /// Starts the first worker, so that a missing install is found now and
    /// not at the first request.
    pub async fn start(
        config: PiperConfig,
        default_voice: Option<String>,
    ) -> Result<NeuralEngine, String> {
        let (worker, ready) = start_worker(&config).await?;
        let workers = worker::Pool::new(config.workers, config.wait, worker);
        let voice = Voice {
            id: ready.voice.clone(),
            name: format!("{} (neural)", speaker_name(&ready.voice)),
            language: ready.language.replace('_', "-"),
            gender: None,
            engines: vec!["neural".into()],
        };
        tracing::info!(voice = %voice.id, sample_rate = ready.sample_rate, workers = workers.size(), "neural voice loaded");
        Ok(NeuralEngine {
            pool: Arc::new(Pool { config, workers }),
            default_voice: default_voice.unwrap_or_else(|| voice.id.clone()),
            voices: Arc::new(vec![voice]),
            sample_rate: ready.sample_rate,
        })
    }
}

/// Piper reads `[[ … ]]` in its input as raw phonemes: user text must stay
/// plain text (as it never becomes SSML for Polly), so the brackets are
/// kept apart.
fn plain(text: &str) -> String {
    let mut text = text.to_string();
    // One pass leaves `[[` behind in `[[[`; each pass shortens the runs.
    while text.contains("[[") || text.contains("]]") {
        text = text.replace("[[", "[ [").replace("]]", "] ]");
    }
    text
}

/// `en_US-joe-medium` → `Joe`.
fn speaker_name(model: &str) -> String {
    let speaker = model.split('-').nth(1).unwrap_or(model);
    let mut chars = speaker.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => model.to_string(),
    }
}

/// One sentence of PCM in the asked-for format.
async fn encode(pcm: Vec<u8>, sample_rate: u32, format: Format) -> Result<Bytes, TtsError> {
    tokio::task::spawn_blocking(move || {
        let pcm = Pcm {
            samples: pcm
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect(),
            channels: 1,
            sample_rate,
        };
        match format {
            Format::Mp3 => voxgate_audio::encode_mp3(&pcm, MP3_KBPS).map(Bytes::from),
            // Polly's pcm is 16 kHz; clients of the original endpoint expect it.
            Format::Pcm => Ok(Bytes::from(pcm.resample(16_000).to_s16le())),
            Format::OggVorbis => Err(voxgate_audio::AudioError::Encode(
                "ogg_vorbis is refused before synthesis".into(),
            )),
        }
    })
    .await
    .map_err(|e| TtsError::Upstream(e.to_string()))?
    .map_err(|e| TtsError::Upstream(e.to_string()))
}

/// Where a synthesis stands between two frames. The worker is leased one
/// piece of text at a time: between pieces it goes back to the pool, so a
/// long text shares the workers with everybody else's instead of holding
/// one to its end.
struct Speaking {
    pool: Arc<Pool>,
    lease: Option<Lease>,
    pieces: std::vec::IntoIter<String>,
    sample_rate: u32,
    format: Format,
    /// Set at the end of the text or after an error: the worker owes
    /// nothing more, and reading on would wait for a frame never sent.
    finished: bool,
}

impl Speaking {
    /// The next sentence's audio, `None` at the end of the text.
    async fn next_audio(&mut self) -> Option<Result<Bytes, TtsError>> {
        if self.finished {
            return None;
        }
        let next = self.read().await;
        if !matches!(next, Some(Ok(_))) {
            self.finished = true;
        }
        next
    }

    async fn read(&mut self) -> Option<Result<Bytes, TtsError>> {
        loop {
            let frame = match self.lease.as_mut().map(leased) {
                Some(Ok(worker)) => frame(worker).await,
                Some(Err(e)) => return Some(Err(e)),
                None => return Some(Err(TtsError::Upstream("no worker leased".into()))),
            };
            match frame {
                Ok(Frame::Audio(pcm)) => {
                    return Some(encode(pcm, self.sample_rate, self.format).await);
                }
                Ok(Frame::End) => {
                    let piece = self.pieces.next()?;
                    // The worker owes nothing now: back to the pool, and
                    // the next piece waits its turn like anybody's.
                    self.lease = None;
                    let lease = match self.pool.lease().await {
                        Ok(lease) => lease,
                        Err(e) => return Some(Err(e)),
                    };
                    match send(&self.pool, lease, &piece).await {
                        Ok(lease) => self.lease = Some(lease),
                        Err(e) => return Some(Err(e)),
                    }
                }
                Ok(Frame::Failed(message)) => return Some(Err(TtsError::Upstream(message))),
                Err(e) => {
                    if let Some(lease) = self.lease.as_mut() {
                        self.pool.workers.discard(lease);
                    }
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Sends a piece of text on a leased worker; a worker that cannot take it
/// is discarded.
async fn send(pool: &Pool, mut lease: Lease, piece: &str) -> Result<Lease, TtsError> {
    let sent = match leased(&mut lease) {
        Ok(worker) => send_piece(worker, piece).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => Ok(lease),
        Err(e) => {
            pool.workers.discard(&mut lease);
            Err(e)
        }
    }
}

#[async_trait::async_trait]
impl SpeechEngine for NeuralEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Neural
    }

    fn default_voice(&self) -> &str {
        &self.default_voice
    }

    fn request_limit(&self) -> usize {
        PIECE_CHARS
    }

    async fn voices(&self) -> Result<Arc<Vec<Voice>>, TtsError> {
        Ok(self.voices.clone())
    }

    async fn synthesize(&self, s: &Synthesis) -> Result<AudioStream, TtsError> {
        if s.format == Format::OggVorbis {
            return Err(TtsError::Unsupported(
                "OutputFormat ogg_vorbis is not available with the neural voice; use mp3 or pcm"
                    .into(),
            ));
        }
        let mut pieces = text::split(&plain(&s.text), PIECE_CHARS).into_iter();
        let Some(first) = pieces.next() else {
            return Ok(futures::stream::empty().boxed());
        };
        let lease = send(&self.pool, self.pool.lease().await?, &first).await?;
        let mut speaking = Speaking {
            pool: self.pool.clone(),
            lease: Some(lease),
            pieces,
            sample_rate: self.sample_rate,
            format: s.format,
            finished: false,
        };
        // The first sentence is awaited here: a failure before any audio is
        // an error of the request, not of its stream.
        let head = match speaking.next_audio().await {
            Some(Err(e)) => return Err(e),
            head => head,
        };
        let rest = futures::stream::unfold(speaking, |mut speaking| async move {
            speaking.next_audio().await.map(|audio| (audio, speaking))
        });
        Ok(futures::stream::iter(head).chain(rest).boxed())
    }

    async fn speech_marks(
        &self,
        s: &Synthesis,
        duration: Option<Duration>,
    ) -> Result<Vec<Mark>, TtsError> {
        // Piper reports no word timings.
        let estimate = || {
            Duration::from_millis(
                (s.text.chars().count() as u64 * 1000 / CHARS_PER_SECOND).max(300),
            )
        };
        Ok(estimated_marks(&s.text, duration.unwrap_or_else(estimate)))
    }

    async fn ready(&self) -> Result<(), String> {
        // A busy pool is a working one; otherwise make sure a worker runs.
        if !self.pool.workers.idle() {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_secs(5), self.pool.lease()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Ok(()),
        }
    }

    async fn shutdown(&self) {
        self.pool.workers.shutdown();
    }

    fn worker_pids(&self) -> Vec<u32> {
        self.pool.workers.pids()
    }
}

#[cfg(test)]
mod tests {
    use super::{plain, speaker_name};

    #[test]
    fn raw_phoneme_markup_never_reaches_piper() {
        assert_eq!(plain("say [[ h@loU ]] now"), "say [ [ h@loU ] ] now");
        assert_eq!(plain("[[[x]]]"), "[ [ [x] ] ]");
        assert!(!plain("[[[[ a ]]]]").contains("[["));
    }

    #[test]
    fn the_speaker_is_named_from_the_model_file() {
        assert_eq!(speaker_name("en_US-joe-medium"), "Joe");
        assert_eq!(speaker_name("plain"), "Plain");
    }
}
