//! SynthesizeSpeech (`POST /v1/speech`).
//!
//! Validates the request the way Polly does (required fields, enum values,
//! text limits, SSML, engine/voice/language/sample-rate combinations,
//! lexicons), produces real audio with the local engine, and streams the
//! body in chunks so clients can observe streaming and injected stream
//! faults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use voxgate_audio::{AudioError, Espeak, Pcm, decode_wav, encode_mp3, estimate_speech_marks, tone};

use crate::AppState;
use crate::errors::ApiError;
use crate::faults::Operation;
use crate::ssml::{self, Extracted};
use crate::voices::{
    self, ENGINES, LANGUAGE_CODES, OUTPUT_FORMATS, SPEECH_MARK_TYPES, Voice, enum_violation,
};

/// Polly's limit on the whole `Text` value.
pub const MAX_TOTAL_CHARS: usize = 6000;
/// Polly's limit on billed characters (text content without SSML tags).
pub const MAX_BILLED_CHARS: usize = 3000;
/// MP3 bitrate; Polly's MP3 output is low-bitrate speech too.
const MP3_KBPS: u32 = 48;
/// Speaking rate handed to espeak-ng.
const WORDS_PER_MINUTE: u32 = 175;

/// The request body, with the JSON member names the SDK sends.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct SynthesizeSpeechInput {
    pub engine: Option<String>,
    pub language_code: Option<String>,
    pub lexicon_names: Option<Vec<String>>,
    pub output_format: Option<String>,
    pub sample_rate: Option<String>,
    pub speech_mark_types: Option<Vec<String>>,
    pub text: Option<String>,
    pub text_type: Option<String>,
    pub voice_id: Option<String>,
}

/// A request that passed validation.
struct Job {
    voice: &'static Voice,
    language: String,
    format: String,
    sample_rate: u32,
    original: String,
    extracted: Extracted,
    mark_types: Vec<String>,
}

pub(crate) async fn synthesize_speech(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.faults.gate(Operation::SynthesizeSpeech).await?;
    let input: SynthesizeSpeechInput = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "SerializationException",
            format!("Invalid request body: {e}"),
        )
    })?;
    let job = validate(&state, input)?;

    let pcm = state
        .audio
        .speech(&job.voice.espeak_voice(&job.language), &job.extracted.text)
        .await?;
    let (content_type, data) = match job.format.as_str() {
        "mp3" => {
            let resampled = pcm.to_mono().resample(job.sample_rate);
            let mp3 = encode_mp3(&resampled, MP3_KBPS).map_err(internal)?;
            ("audio/mpeg", Bytes::from(mp3))
        }
        "pcm" => {
            let resampled = pcm.to_mono().resample(job.sample_rate);
            ("audio/pcm", Bytes::from(resampled.to_s16le()))
        }
        _ => (
            "application/x-json-stream",
            Bytes::from(speech_marks(&job, pcm.duration())),
        ),
    };
    let billed = job.extracted.billed_chars;
    state.faults.add_billed(billed as u64);

    let (chunk_delay, cut) = state.faults.stream_settings();
    let mut resp = Response::new(stream_body(data, state.cfg.chunk_size, chunk_delay, cut));
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert("x-amzn-RequestCharacters", HeaderValue::from(billed));
    Ok(resp)
}

fn internal(e: AudioError) -> ApiError {
    tracing::error!(error = %e, "audio production failed");
    ApiError::service_failure(500)
}

fn validate(state: &AppState, input: SynthesizeSpeechInput) -> Result<Job, ApiError> {
    let mut violations = Vec::new();
    let null = |field: &str| {
        format!("Value null at '{field}' failed to satisfy constraint: Member must not be null")
    };
    let voice_ids: Vec<&str> = voices::VOICES.iter().map(|v| v.id).collect();

    match &input.output_format {
        None => violations.push(null("outputFormat")),
        Some(f) if !OUTPUT_FORMATS.contains(&f.as_str()) => {
            violations.push(enum_violation(f, "outputFormat", OUTPUT_FORMATS))
        }
        _ => {}
    }
    if input.text.is_none() {
        violations.push(null("text"));
    }
    match &input.voice_id {
        None => violations.push(null("voiceId")),
        Some(v) if voices::find(v).is_none() => {
            violations.push(enum_violation(v, "voiceId", &voice_ids))
        }
        _ => {}
    }
    if let Some(e) = input.engine.as_deref().filter(|e| !ENGINES.contains(e)) {
        violations.push(enum_violation(e, "engine", ENGINES));
    }
    if let Some(t) = input
        .text_type
        .as_deref()
        .filter(|t| !["text", "ssml"].contains(t))
    {
        violations.push(enum_violation(t, "textType", &["ssml", "text"]));
    }
    if let Some(l) = input
        .language_code
        .as_deref()
        .filter(|l| !LANGUAGE_CODES.contains(l))
    {
        violations.push(enum_violation(l, "languageCode", LANGUAGE_CODES));
    }
    let mark_types = input.speech_mark_types.clone().unwrap_or_default();
    if let Some(bad) = mark_types
        .iter()
        .find(|m| !SPEECH_MARK_TYPES.contains(&m.as_str()))
    {
        violations.push(format!(
            "Value '[{}]' at 'speechMarkTypes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]] (offending value '{bad}')",
            mark_types.join(", "),
            SPEECH_MARK_TYPES.join(", ")
        ));
    }
    if mark_types.len() > 4 {
        violations.push("Value at 'speechMarkTypes' failed to satisfy constraint: Member must have length less than or equal to 4".into());
    }
    let lexicons = input.lexicon_names.clone().unwrap_or_default();
    if lexicons.len() > 5 {
        violations.push("Value at 'lexiconNames' failed to satisfy constraint: Member must have length less than or equal to 5".into());
    }
    if let Some(bad) = lexicons.iter().find(|n| !crate::lexicons::valid_name(n)) {
        violations.push(format!(
            "Value '{bad}' at 'lexiconNames' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9A-Za-z]{{1,20}}"
        ));
    }
    if !violations.is_empty() {
        return Err(ApiError::validation(&violations));
    }
    // Checked above: these are present and valid.
    let (Some(format), Some(text), Some(voice_id)) =
        (input.output_format, input.text, input.voice_id)
    else {
        return Err(ApiError::validation(&[null("text")]));
    };
    let voice = voices::find(&voice_id).ok_or_else(|| ApiError::validation(&[null("voiceId")]))?;
    let is_ssml = input.text_type.as_deref() == Some("ssml");

    if text.chars().count() > MAX_TOTAL_CHARS {
        return Err(text_too_long());
    }
    let extracted = if is_ssml {
        ssml::parse(&text).map_err(|why| {
            ApiError::bad_request(
                "InvalidSsmlException",
                format!("Invalid SSML request: {why}"),
            )
        })?
    } else {
        ssml::plain(&text)
    };
    if extracted.billed_chars > MAX_BILLED_CHARS {
        return Err(text_too_long());
    }

    if format == "json" {
        if mark_types.is_empty() {
            return Err(ApiError::validation(&[
                "SpeechMarkTypes must be specified when OutputFormat is json".to_string(),
            ]));
        }
        if mark_types.iter().any(|m| m == "ssml") && !is_ssml {
            return Err(ApiError::bad_request(
                "SsmlMarksNotSupportedForTextTypeException",
                "SSML speech marks are not supported for plain text-type input.",
            ));
        }
    } else if !mark_types.is_empty() {
        return Err(ApiError::bad_request(
            "MarksNotSupportedForFormatException",
            format!("Speech marks are not supported for OutputFormat {format}; use json."),
        ));
    }

    let engine = input.engine.as_deref().unwrap_or("standard");
    if !voice.supports(engine) {
        return Err(ApiError::bad_request(
            "EngineNotSupportedException",
            format!("This voice does not support the selected engine: {engine}"),
        ));
    }

    let language = input
        .language_code
        .unwrap_or_else(|| voice.language_code.to_string());
    if !voice.speaks(&language) {
        return Err(ApiError::bad_request(
            "LanguageNotSupportedException",
            format!("Voice {} does not support language {language}.", voice.id),
        ));
    }

    let sample_rate = sample_rate(&format, engine, input.sample_rate.as_deref())?;

    if let Some(missing) = lexicons.iter().find(|n| !state.lexicons.contains(n)) {
        return Err(ApiError::new(
            404,
            "LexiconNotFoundException",
            format!("Lexicon not found: {missing}"),
        ));
    }

    if !matches!(format.as_str(), "mp3" | "pcm" | "json") {
        return Err(ApiError::validation(&[format!(
            "OutputFormat {format} is not implemented by this Polly stand-in; use mp3, pcm or json"
        )]));
    }

    Ok(Job {
        voice,
        language,
        format,
        sample_rate,
        original: text,
        extracted,
        mark_types,
    })
}

fn text_too_long() -> ApiError {
    ApiError::bad_request(
        "TextLengthExceededException",
        format!(
            "Maximum text length has been exceeded: at most {MAX_TOTAL_CHARS} characters in total, of which at most {MAX_BILLED_CHARS} billed characters."
        ),
    )
}

/// The output sample rate: Polly's defaults per format and engine, and its
/// allowed values.
fn sample_rate(format: &str, engine: &str, requested: Option<&str>) -> Result<u32, ApiError> {
    let (allowed, default): (&[u32], u32) = match format {
        "pcm" => (&[8000, 16000], 16000),
        _ if engine == "standard" => (&[8000, 16000, 22050, 24000], 22050),
        _ => (&[8000, 16000, 22050, 24000], 24000),
    };
    let Some(requested) = requested else {
        return Ok(default);
    };
    match requested.parse::<u32>() {
        Ok(rate) if allowed.contains(&rate) => Ok(rate),
        // Speech marks carry no audio; Polly ignores their sample rate.
        _ if format == "json" => Ok(default),
        _ => Err(ApiError::bad_request(
            "InvalidSampleRateException",
            format!(
                "The specified sample rate {requested} is not valid for OutputFormat {format}."
            ),
        )),
    }
}

/// Speech marks as JSON lines with offsets into the original `Text`.
fn speech_marks(job: &Job, duration: Duration) -> Vec<u8> {
    let x = &job.extracted;
    let wanted = |t: &str| job.mark_types.iter().any(|m| m == t);
    let to_original = |start: usize, end: usize| -> (usize, usize) {
        if start >= end || end > x.offsets.len() {
            return (start, end);
        }
        (x.offsets[start], x.offsets[end - 1] + 1)
    };
    let estimated = estimate_speech_marks(&x.text, duration);
    let mut lines: Vec<(u64, serde_json::Value)> = Vec::new();
    for m in &estimated {
        if !wanted(&m.kind) {
            continue;
        }
        let (start, end) = to_original(m.start, m.end);
        let value = job.original.get(start..end).unwrap_or(&m.value);
        lines.push((
            m.time_ms,
            json!({"time": m.time_ms, "type": m.kind, "start": start, "end": end, "value": value}),
        ));
    }
    if wanted("ssml") {
        for (pos, start, end, name) in &x.marks {
            // A mark fires when the next word starts.
            let time = estimated
                .iter()
                .find(|m| m.kind == "word" && m.start >= *pos)
                .map_or(duration.as_millis() as u64, |m| m.time_ms);
            lines.push((
                time,
                json!({"time": time, "type": "ssml", "start": start, "end": end, "value": name}),
            ));
        }
    }
    // Stable: sentence marks stay ahead of their first word.
    lines.sort_by_key(|(t, _)| *t);
    let mut out = Vec::new();
    for (_, v) in lines {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Pause before a cut stream fails.
const CUT_FLUSH_PAUSE: Duration = Duration::from_millis(50);

/// Streams `data` in `chunk` sized pieces, sleeping `delay` between pieces,
/// and if `cut` is set, failing the body after that many bytes so the
/// connection is aborted mid-response.
fn stream_body(data: Bytes, chunk: usize, delay: Duration, cut: Option<usize>) -> Body {
    struct S {
        data: Bytes,
        pos: usize,
        end: usize,
        cut: bool,
        done: bool,
    }
    let chunk = chunk.max(1);
    let end = cut.map_or(data.len(), |c| c.min(data.len()));
    let state = S {
        cut: cut.is_some_and(|c| c < data.len()),
        data,
        pos: 0,
        end,
        done: false,
    };
    let stream = futures::stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        if s.pos >= s.end {
            if s.cut {
                s.done = true;
                // Let the server flush what was sent so far (headers
                // included) before the connection is dropped; otherwise the
                // client would see a failed request instead of a broken body.
                tokio::time::sleep(CUT_FLUSH_PAUSE).await;
                return Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "stream cut by fault injection",
                    )),
                    s,
                ));
            }
            return None;
        }
        if s.pos > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let next = (s.pos + chunk).min(s.end);
        let piece = s.data.slice(s.pos..next);
        s.pos = next;
        Some((Ok(piece), s))
    });
    Body::from_stream(stream)
}

/// Produces speech PCM for (espeak voice, text), caching results.
pub struct AudioSource {
    espeak: Espeak,
    cache: Mutex<HashMap<(String, String), Arc<Pcm>>>,
}

/// Cache entries kept before the cache is emptied; tests reuse few texts.
const CACHE_LIMIT: usize = 256;
/// espeak-ng's fallback when it has no voice for a language.
const FALLBACK_ESPEAK_VOICE: &str = "en-us";

impl AudioSource {
    pub fn new(espeak: Espeak) -> AudioSource {
        AudioSource {
            espeak,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Pcm>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn speech(&self, espeak_voice: &str, text: &str) -> Result<Arc<Pcm>, ApiError> {
        let key = (espeak_voice.to_string(), text.to_string());
        if let Some(hit) = self.cache().get(&key) {
            return Ok(hit.clone());
        }
        let pcm = Arc::new(self.produce(espeak_voice, text).await?);
        let mut cache = self.cache();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, pcm.clone());
        Ok(pcm)
    }

    async fn produce(&self, espeak_voice: &str, text: &str) -> Result<Pcm, ApiError> {
        if text.trim().is_empty() {
            // Nothing to say: a short silence, as Polly returns.
            return Ok(Pcm {
                samples: vec![0; 2205],
                channels: 1,
                sample_rate: 22050,
            });
        }
        let wav = match self
            .espeak
            .synthesize_wav(espeak_voice, text, WORDS_PER_MINUTE)
            .await
        {
            Err(AudioError::UnknownVoice(_)) => {
                self.espeak
                    .synthesize_wav(FALLBACK_ESPEAK_VOICE, text, WORDS_PER_MINUTE)
                    .await
            }
            other => other,
        };
        match wav {
            Ok(wav) => decode_wav(&wav).map_err(internal),
            Err(AudioError::NotInstalled) => Ok(placeholder_tone(text)),
            Err(e) => Err(internal(e)),
        }
    }
}

/// Without espeak-ng: a tone lasting about as long as speaking the text
/// would, so clients still get decodable audio of plausible length.
fn placeholder_tone(text: &str) -> Pcm {
    let ms = (text.chars().count() as u64 * 60).max(300);
    tone(Duration::from_millis(ms), 22050, 440.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_rates_follow_polly_defaults_and_limits() {
        assert_eq!(sample_rate("mp3", "standard", None).unwrap(), 22050);
        assert_eq!(sample_rate("mp3", "neural", None).unwrap(), 24000);
        assert_eq!(sample_rate("pcm", "neural", None).unwrap(), 16000);
        assert_eq!(sample_rate("pcm", "standard", Some("8000")).unwrap(), 8000);
        assert_eq!(
            sample_rate("pcm", "standard", Some("22050"))
                .unwrap_err()
                .code,
            "InvalidSampleRateException"
        );
        assert_eq!(
            sample_rate("mp3", "standard", Some("44100"))
                .unwrap_err()
                .code,
            "InvalidSampleRateException"
        );
    }

    #[test]
    fn placeholder_tone_scales_with_text_length() {
        assert!(placeholder_tone(&"a".repeat(100)).duration() > placeholder_tone("hi").duration());
    }
}
