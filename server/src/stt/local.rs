//! The local recogniser: faster-whisper in warm worker processes
//! (`server/whisper/worker.py`, embedded and run with `python -c`), each
//! holding the model. An utterance goes to a worker over a pipe and is
//! decoded there in memory; nothing is written to disk.
//!
//! A worker that dies fails the utterance it was serving and is replaced
//! on the next one. A client that leaves mid-recognition drops its lease
//! with the worker still working, so that worker is replaced rather than
//! read out of step; its slot is free at once.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use voxgate_audio::worker::{self, Refused};

use super::{Heard, Partials, SttError};
use crate::config::SttConfig;

const WORKER: &str = include_str!("../../whisper/worker.py");
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// A recognition of the longest utterance takes a few seconds here; a
/// worker silent for this long is stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// Variables the worker reads, passed through from voxgate's environment.
pub const WORKER_SETTINGS: &[&str] = &["VOXGATE_WHISPER_THREADS", "VOXGATE_WHISPER_LOG"];

#[derive(serde::Deserialize)]
struct Ready {
    model: String,
}

#[derive(serde::Deserialize)]
struct Answer {
    /// The text so far, before the final answer.
    partial: Option<String>,
    text: Option<String>,
    language: Option<String>,
    duration_ms: Option<u64>,
    error: Option<String>,
    #[serde(default)]
    undecodable: bool,
    #[serde(default)]
    too_long: bool,
    #[serde(default)]
    bad_language: bool,
}

/// A warm recogniser: the shared worker process, spoken to by
/// [`recognise`].
type Worker = worker::Process;

async fn start_worker(config: &SttConfig) -> Result<(Worker, Ready), String> {
    let python = config
        .whisper_python
        .as_ref()
        .ok_or("VOXGATE_WHISPER_PYTHON is not set")?;
    let mut args = Vec::new();
    if let Some(model) = &config.whisper_model {
        args.extend(["--model".into(), model.clone().into_os_string()]);
    }
    let (worker, ready_line) = worker::start(worker::Spec {
        python,
        script: WORKER,
        args,
        settings: WORKER_SETTINGS,
        // A model path that does not exist must not turn into a
        // download from the Hugging Face hub.
        fixed: &[("HF_HUB_OFFLINE", "1")],
        start_timeout: START_TIMEOUT,
        loads: "model",
        package: "faster-whisper",
    })
    .await?;
    let ready: Ready = serde_json::from_str(&ready_line)
        .map_err(|e| format!("the recogniser's first line is not its ready line: {e}"))?;
    Ok((worker, ready))
}

/// Sends one utterance and reads the answer, passing partial texts on.
async fn recognise(
    w: &mut Worker,
    audio: &[u8],
    language: Option<&str>,
    max_seconds: u32,
    partials: Option<&Partials>,
) -> Result<Answer, SttError> {
    w.begin();
    let mut header = serde_json::to_vec(&serde_json::json!({
        "bytes": audio.len(),
        "language": language,
        "max_seconds": max_seconds,
        "partials": partials.is_some(),
    }))
    .map_err(|e| SttError::Engine(e.to_string()))?;
    header.push(b'\n');
    let sent = async {
        w.stdin.write_all(&header).await?;
        w.stdin.write_all(audio).await?;
        w.stdin.flush().await
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, sent).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(SttError::Engine(format!("the recogniser stopped: {e}"))),
        Err(_) => {
            return Err(SttError::Engine(
                "the recogniser did not take the audio in time".into(),
            ));
        }
    }
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(ANSWER_TIMEOUT, w.stdout.read_line(&mut line)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => return Err(SttError::Engine("the recogniser stopped".into())),
            Ok(Err(e)) => return Err(SttError::Engine(format!("the recogniser stopped: {e}"))),
            Err(_) => {
                return Err(SttError::Engine(
                    "the recogniser did not answer in time".into(),
                ));
            }
        }
        let answer: Answer = serde_json::from_str(line.trim())
            .map_err(|e| SttError::Engine(format!("the recogniser answered nonsense: {e}")))?;
        match (&answer.partial, partials) {
            (Some(text), Some(sink)) => {
                // A slow reader misses partials, never the answer.
                let _ = sink.try_send(text.clone());
            }
            (Some(_), None) => {}
            (None, _) => {
                w.finished();
                return Ok(answer);
            }
        }
    }
}

pub struct LocalRecogniser {
    config: SttConfig,
    workers: worker::Pool<Worker>,
    model: String,
}

impl LocalRecogniser {
    /// Starts the first worker, so that a missing install is found at
    /// start and not at the first utterance.
    pub async fn start(config: SttConfig) -> Result<LocalRecogniser, String> {
        let (worker, ready) = start_worker(&config).await?;
        let workers = worker::Pool::new(config.workers, config.wait, worker);
        tracing::info!(model = %ready.model, workers = workers.size(), "speech recogniser loaded");
        Ok(LocalRecogniser {
            config,
            workers,
            model: ready.model,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub async fn recognise(
        &self,
        audio: &[u8],
        language: Option<&str>,
        partials: Option<&Partials>,
    ) -> Result<Heard, SttError> {
        let start = || async {
            let (worker, _) = start_worker(&self.config).await?;
            tracing::info!("recogniser worker started");
            Ok::<_, String>(worker)
        };
        let mut lease = self.workers.lease(start).await.map_err(|e| match e {
            Refused::Busy => SttError::Busy,
            Refused::Closed => SttError::Unavailable("shutting down".into()),
            Refused::Start(reason) => {
                tracing::error!(%reason, "starting a recogniser worker failed");
                SttError::Unavailable("the speech recogniser could not start".into())
            }
        })?;
        let max_seconds = self.config.max_seconds;
        let Some(worker) = lease.worker() else {
            return Err(SttError::Unavailable(
                "the recogniser worker is gone".into(),
            ));
        };
        let answer = match recognise(worker, audio, language, max_seconds, partials).await {
            Ok(answer) => answer,
            Err(e) => {
                self.workers.discard(&mut lease);
                return Err(e);
            }
        };
        match answer {
            Answer {
                error: Some(why),
                undecodable: true,
                ..
            } => Err(SttError::Undecodable(why)),
            Answer { too_long: true, .. } => Err(SttError::TooLong),
            Answer {
                bad_language: true, ..
            } => Err(SttError::BadLanguage),
            Answer {
                error: Some(why), ..
            } => Err(SttError::Engine(why)),
            Answer {
                text: Some(text),
                language,
                duration_ms,
                ..
            } => Ok(Heard {
                text,
                language: language.unwrap_or_else(|| "en".into()),
                duration: duration_ms.map(Duration::from_millis),
            }),
            _ => {
                // An answer that is none of the above: the worker cannot be
                // trusted to stay in step, so it is replaced.
                self.workers.discard(&mut lease);
                Err(SttError::Engine("the recogniser answered nothing".into()))
            }
        }
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.pids()
    }

    /// Whether every worker is leased to an utterance.
    pub fn all_busy(&self) -> bool {
        !self.workers.idle()
    }

    pub fn shutdown(&self) {
        self.workers.shutdown();
    }
}
