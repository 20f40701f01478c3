//! The `service` recogniser: an OpenAI-compatible transcription endpoint
//! (`{url}/audio/transcriptions`: OpenAI, Groq, a self-hosted
//! faster-whisper server…). The utterance is sent as OpenAI's multipart
//! form and never stored here; at most `VOXGATE_STT_WORKERS` recognitions
//! are sent at once, and a client that leaves cancels its request.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::sync::Semaphore;

use super::audio::Container;
use super::{Heard, SttError};
use crate::config::{SttConfig, SttServiceConfig};

const TIMEOUT: Duration = Duration::from_secs(60);

pub struct ServiceRecogniser {
    http: reqwest::Client,
    service: SttServiceConfig,
    permits: Arc<Semaphore>,
    wait: Duration,
}

#[derive(serde::Deserialize)]
struct Verbose {
    text: String,
    language: Option<String>,
    /// Seconds of audio the service heard.
    duration: Option<f64>,
}

impl ServiceRecogniser {
    pub fn new(config: &SttConfig, service: SttServiceConfig) -> Result<ServiceRecogniser, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("voxgate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(3))
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ServiceRecogniser {
            http,
            service,
            permits: Arc::new(Semaphore::new(config.workers.max(1))),
            wait: config.wait,
        })
    }

    /// The service's address without credentials or query, for `/readyz`.
    pub fn describe(&self) -> String {
        let url = &self.service.url;
        format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        )
    }

    pub fn model(&self) -> &str {
        &self.service.model
    }

    pub async fn recognise(
        &self,
        audio: &[u8],
        container: Container,
        language: Option<&str>,
    ) -> Result<Heard, SttError> {
        let _permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| SttError::Busy)?
            .map_err(|_| SttError::Unavailable("shutting down".into()))?;
        let (name, mime) = match container {
            Container::Wav => ("speech.wav", "audio/wav"),
            Container::WebM => ("speech.webm", "audio/webm"),
            Container::Ogg => ("speech.ogg", "audio/ogg"),
        };
        let mut fields = vec![
            ("model", self.service.model.as_str()),
            ("response_format", "verbose_json"),
        ];
        if let Some(language) = language {
            fields.push(("language", language));
        }
        let (content_type, body) = form(audio, name, mime, &fields);
        let url = format!(
            "{}/audio/transcriptions",
            self.service.url.as_str().trim_end_matches('/')
        );
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(key) = &self.service.key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|e| {
            tracing::warn!(error = %crate::error::chain(&e), "transcription service unreachable");
            SttError::Unavailable("the transcription service cannot be reached".into())
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .contains_key(reqwest::header::RETRY_AFTER);
        let body = bounded(response).await?;
        if !status.is_success() {
            let detail: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            // The operator needs the service's own words: a wrong model
            // name also comes back as a 400 about "the request".
            tracing::warn!(%status, %detail, "the transcription service refused an utterance");
            return Err(match status.as_u16() {
                400 | 415 | 422 => SttError::Undecodable(detail),
                // Busy for a moment; without a Retry-After, a 429 is an
                // account out of credit, which retrying does not mend.
                429 if retry_after => SttError::Busy,
                429 => SttError::Unavailable(
                    "the transcription service refuses more work from this server".into(),
                ),
                401 | 403 => SttError::Engine(format!(
                    "the transcription service refused the key ({status})"
                )),
                _ => SttError::Engine(format!(
                    "the transcription service answered {status}: {detail}"
                )),
            });
        }
        let verbose: Verbose = serde_json::from_slice(&body).map_err(|e| {
            SttError::Engine(format!("the transcription service answered nonsense: {e}"))
        })?;
        // OpenAI names the language ("english"); answers carry a code.
        let language = verbose
            .language
            .filter(|l| l.len() == 2)
            .or_else(|| language.map(str::to_string))
            .unwrap_or_else(|| "und".into());
        Ok(Heard {
            text: verbose.text,
            language,
            duration: verbose
                .duration
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
        })
    }
}

/// A transcript is a few KiB: a service answering more is cut off.
const MAX_ANSWER: usize = 1 << 20;

async fn bounded(mut response: reqwest::Response) -> Result<Vec<u8>, SttError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        SttError::Unavailable(format!("the transcription service's answer broke off: {e}"))
    })? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(SttError::Engine(
                "the transcription service answered more than 1 MiB".into(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// OpenAI's multipart form: the fields, then the file.
fn form(audio: &[u8], name: &str, mime: &str, fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = format!("voxgate-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(audio.len() + 512);
    for (field, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
