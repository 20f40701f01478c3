//! Amazon Polly through `aws-sdk-polly`. User text is always sent with
//! `TextType=text`. The SDK's standard retry mode retries throttling and
//! 5xx before the response starts; once audio flows, a failure aborts the
//! stream (it is never retried mid-way, and never cached).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_polly::config::{Credentials, Region};
use aws_sdk_polly::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_polly::operation::synthesize_speech::SynthesizeSpeechError;
use aws_sdk_polly::types::{Engine, LanguageCode, OutputFormat, SpeechMarkType, TextType, VoiceId};
use futures::StreamExt;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::engine::{
    AudioStream, EngineKind, Format, Mark, SpeechEngine, Synthesis, TtsError, Voice,
};
use super::text;
use crate::config::AwsConfig;

/// Polly bills at most 3000 characters per SynthesizeSpeech.
const POLLY_LIMIT: usize = 3000;
const VOICES_TTL: Duration = Duration::from_secs(3600);

pub struct PollyEngine {
    client: aws_sdk_polly::Client,
    /// The voice list, read on every request without waiting…
    voices: std::sync::RwLock<Option<(Instant, Arc<Vec<Voice>>)>>,
    /// …and refreshed by one caller at a time.
    refreshing: Mutex<()>,
    default_voice: String,
}

impl PollyEngine {
    pub async fn new(aws: &AwsConfig, default_voice: Option<String>) -> PollyEngine {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(15))
                    .build(),
            );
        if let Some(region) = &aws.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &aws.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &aws.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&aws.access_key_id, &aws.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret.expose_secret(),
                aws.session_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_string()),
                None,
                "voxgate-config",
            ));
        }
        let config = loader.load().await;
        PollyEngine {
            client: aws_sdk_polly::Client::new(&config),
            voices: std::sync::RwLock::new(None),
            refreshing: Mutex::new(()),
            default_voice: default_voice.unwrap_or_else(|| "Joanna".into()),
        }
    }

    async fn request(
        client: &aws_sdk_polly::Client,
        s: &Synthesis,
        piece: &str,
        format: OutputFormat,
        marks: bool,
    ) -> Result<aws_sdk_polly::operation::synthesize_speech::SynthesizeSpeechOutput, TtsError> {
        let started = Instant::now();
        let mut call = client
            .synthesize_speech()
            .text(piece)
            .text_type(TextType::Text)
            .voice_id(VoiceId::from(s.voice.as_str()))
            .output_format(format)
            .engine(Engine::from(s.engine_kind.as_str()))
            .language_code(LanguageCode::from(s.language.as_str()));
        if marks {
            call = call
                .speech_mark_types(SpeechMarkType::Word)
                .speech_mark_types(SpeechMarkType::Sentence);
        }
        let result = call.send().await;
        metrics::histogram!("voxgate_tts_upstream_seconds", "engine" => "polly")
            .record(started.elapsed().as_secs_f64());
        let output = result.map_err(map_error)?;
        let billed = output.request_characters().max(0) as u64;
        metrics::counter!("voxgate_tts_billed_characters_total", "engine" => "polly")
            .increment(billed);
        Ok(output)
    }
    /// Every voice Polly offers (DescribeVoices, all pages).
    async fn describe_voices(&self) -> Result<Vec<Voice>, TtsError> {
        let mut voices = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_voices()
                .include_additional_language_codes(true)
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|e| {
                    // The cause (which can name the AWS account) is logged,
                    // never shown.
                    tracing::warn!(error = %crate::error::chain(&e), "Polly DescribeVoices failed");
                    TtsError::Unavailable("Polly's list of voices could not be read".into())
                })?;
            for v in page.voices() {
                voices.push(Voice {
                    id: v.id().map(|i| i.as_str().to_string()).unwrap_or_default(),
                    name: v.name().unwrap_or_default().to_string(),
                    language: v
                        .language_code()
                        .map(|l| l.as_str().to_string())
                        .unwrap_or_default(),
                    gender: v.gender().map(|g| g.as_str().to_string()),
                    engines: v
                        .supported_engines()
                        .iter()
                        .map(|e| e.as_str().to_string())
                        .collect(),
                });
            }
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        Ok(voices)
    }
}

fn map_error(
    e: SdkError<SynthesizeSpeechError, aws_sdk_polly::config::http::HttpResponse>,
) -> TtsError {
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let message = err.message().unwrap_or("").to_string();
            match err {
                SynthesizeSpeechError::TextLengthExceededException(_) => {
                    TtsError::TextTooLong(POLLY_LIMIT)
                }
                // Users get fixed texts; Polly's own messages (which can
                // name the AWS account or IAM role) go only to the log, as
                // the cause of a generic 502.
                SynthesizeSpeechError::EngineNotSupportedException(_) => {
                    TtsError::Unsupported("The voice does not support the engine asked for.".into())
                }
                SynthesizeSpeechError::LanguageNotSupportedException(_) => {
                    TtsError::Unsupported("The language is not supported by the voice.".into())
                }
                SynthesizeSpeechError::ServiceFailureException(_) => TtsError::Upstream(message),
                other => match other.code() {
                    Some("ThrottlingException") | Some("TooManyRequestsException") => {
                        TtsError::Throttled
                    }
                    Some("ValidationException") if message.to_lowercase().contains("voice") => {
                        TtsError::InvalidVoice {
                            voice: String::new(),
                            language: None,
                            valid: Vec::new(),
                        }
                    }
                    Some("ValidationException") => TtsError::Unsupported(
                        "Polly refused the request's parameters (text, voice, engine or format)."
                            .into(),
                    ),
                    Some(code) => TtsError::Upstream(format!("{code}: {message}")),
                    None => TtsError::Upstream(message),
                },
            }
        }
        SdkError::TimeoutError(_) => TtsError::Unavailable("Polly did not answer in time".into()),
        SdkError::DispatchFailure(_) => TtsError::Unavailable("Polly cannot be reached".into()),
        _ => TtsError::Upstream(crate::error::chain(&e)),
    }
}

fn output_format(format: Format) -> OutputFormat {
    match format {
        Format::Mp3 => OutputFormat::Mp3,
        Format::OggVorbis => OutputFormat::OggVorbis,
        Format::Pcm => OutputFormat::Pcm,
    }
}

/// Relays the SDK's body chunk by chunk, without buffering it.
fn relay(body: aws_smithy_types::byte_stream::ByteStream) -> AudioStream {
    futures::stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        match body.next().await {
            Some(Ok(bytes)) => Some((Ok(bytes), Some(body))),
            Some(Err(e)) => Some((Err(TtsError::Upstream(format!("stream cut: {e}"))), None)),
            None => None,
        }
    })
    .boxed()
}

#[async_trait::async_trait]
impl SpeechEngine for PollyEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Polly
    }

    fn default_voice(&self) -> &str {
        &self.default_voice
    }

    fn request_limit(&self) -> usize {
        POLLY_LIMIT
    }

    async fn voices(&self) -> Result<Arc<Vec<Voice>>, TtsError> {
        let fresh = |v: &Option<(Instant, Arc<Vec<Voice>>)>| {
            v.as_ref()
                .filter(|(at, _)| at.elapsed() < VOICES_TTL)
                .map(|(_, l)| l.clone())
        };
        if let Some(list) = self.voices.read().ok().and_then(|v| fresh(&v)) {
            return Ok(list);
        }
        let _refresh = self.refreshing.lock().await;
        if let Some(list) = self.voices.read().ok().and_then(|v| fresh(&v)) {
            return Ok(list);
        }
        match self.describe_voices().await {
            Ok(voices) => {
                let list = Arc::new(voices);
                if let Ok(mut v) = self.voices.write() {
                    *v = Some((Instant::now(), list.clone()));
                }
                Ok(list)
            }
            // A failed refresh keeps serving the last list: voices rarely
            // change, and speech must not stop for a DescribeVoices blip.
            Err(e) => match self
                .voices
                .read()
                .ok()
                .and_then(|v| v.as_ref().map(|(_, l)| l.clone()))
            {
                Some(stale) => {
                    tracing::warn!(error = %e, "refreshing Polly voices failed; using the last list");
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }

    async fn synthesize(&self, s: &Synthesis) -> Result<AudioStream, TtsError> {
        let pieces = text::split(&s.text, POLLY_LIMIT);
        let mut pieces = pieces.into_iter();
        let Some(first) = pieces.next() else {
            return Ok(futures::stream::empty().boxed());
        };
        let format = output_format(s.format);
        let head = Self::request(&self.client, s, &first, format.clone(), false).await?;
        let client = self.client.clone();
        let synthesis = s.clone();
        // Later pieces start only when the previous one has been relayed.
        let rest = futures::stream::iter(pieces)
            .then(move |piece| {
                let client = client.clone();
                let synthesis = synthesis.clone();
                let format = format.clone();
                async move { Self::request(&client, &synthesis, &piece, format, false).await }
            })
            .flat_map(|r| match r {
                Ok(out) => relay(out.audio_stream),
                Err(e) => futures::stream::iter(vec![Err(e)]).boxed(),
            });
        Ok(relay(head.audio_stream).chain(rest).boxed())
    }

    async fn speech_marks(
        &self,
        s: &Synthesis,
        _duration: Option<Duration>,
    ) -> Result<Vec<Mark>, TtsError> {
        let mut marks = Vec::new();
        let mut offset_ms = 0u64;
        let mut offset_bytes = 0usize;
        for piece in text::split(&s.text, POLLY_LIMIT) {
            let out = Self::request(&self.client, s, &piece, OutputFormat::Json, true).await?;
            let body = out
                .audio_stream
                .collect()
                .await
                .map_err(|e| TtsError::Upstream(e.to_string()))?
                .into_bytes();
            let mut last = 0;
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let mut m: Mark = serde_json::from_slice(line)
                    .map_err(|e| TtsError::Upstream(format!("bad speech mark: {e}")))?;
                last = last.max(m.time);
                m.time += offset_ms;
                m.start += offset_bytes;
                m.end += offset_bytes;
                marks.push(m);
            }
            offset_ms += last + 500;
            // Pieces are joined by one space in the normalised text.
            offset_bytes += piece.len() + 1;
        }
        Ok(marks)
    }

    async fn ready(&self) -> Result<(), String> {
        self.voices().await.map(|_| ()).map_err(|e| e.to_string())
    }
}
