//! From what a client asked for to what will be spoken: text limits, the
//! output format, the voice (by id, or by language), and the Polly engine.
//! The result is a [`Keyed`] request, the same for every spelling of the
//! same ask, so equal requests share one cache entry.

use super::engine::{Format, Synthesis, VoiceEngine};
use super::request::{Keyed, SpeechParams};
use super::{Tts, text};
use crate::error::ApiError;

impl Tts {
    /// Validates and normalises a request into what its cache key stands for.
    pub(super) async fn resolve(
        &self,
        params: SpeechParams,
        long_text: bool,
    ) -> Result<Keyed, ApiError> {
        let text = text::normalise(&params.text);
        if text.is_empty() {
            return Err(ApiError::bad_request(
                "Text is empty: there is nothing to say.",
            ));
        }
        if !long_text && text.chars().count() > self.inner.config.max_chars {
            return Err(ApiError::PayloadTooLarge(format!(
                "Text is {} characters long; this endpoint accepts at most {}.",
                text.chars().count(),
                self.inner.config.max_chars
            )));
        }
        let format = params
            .format
            .as_deref()
            .filter(|f| !f.is_empty())
            .unwrap_or("mp3");
        let format = Format::parse(format).ok_or_else(|| {
            ApiError::bad_request(format!(
                "OutputFormat `{format}` is not one of mp3, ogg_vorbis, pcm."
            ))
        })?;
        let engine = &self.inner.engine;
        if engine.kind().on_machine() && format == Format::OggVorbis {
            return Err(ApiError::bad_request(format!(
                "OutputFormat ogg_vorbis is not available with the {} voice; use mp3 or pcm.",
                engine.name()
            )));
        }
        let language = params
            .language
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string());
        let voices = engine.voices().await?;
        let find = |id: &str| voices.iter().find(|v| v.id.eq_ignore_ascii_case(id));
        let for_language = |l: &str| voices.iter().find(|v| language_matches(&v.language, l));
        let voice = match params
            .voice
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            Some(id) => match find(id) {
                Some(v) => v,
                // The local voice accepts Polly voice names (clients of the
                // original endpoint send them) by speaking the language.
                None if engine.kind().on_machine()
                    && language.as_deref().and_then(for_language).is_some() =>
                {
                    language
                        .as_deref()
                        .and_then(for_language)
                        .ok_or_else(|| ApiError::bad_request("no voice"))?
                }
                None => {
                    let valid: Vec<&str> = voices
                        .iter()
                        .filter(|v| {
                            language
                                .as_deref()
                                .is_none_or(|l| language_matches(&v.language, l))
                        })
                        .map(|v| v.id.as_str())
                        .take(60)
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "VoiceId `{id}` is not available{}. Valid voices: {}.",
                        language
                            .as_deref()
                            .map(|l| format!(" for {l}"))
                            .unwrap_or_default(),
                        if valid.is_empty() {
                            "none for this language".to_string()
                        } else {
                            valid.join(", ")
                        }
                    )));
                }
            },
            None => match language.as_deref() {
                Some(l) => match find(engine.default_voice())
                    .filter(|v| language_matches(&v.language, l))
                    .or_else(|| for_language(l))
                {
                    Some(v) => v,
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "No voice is available for LanguageCode `{l}`."
                        )));
                    }
                },
                None => find(engine.default_voice())
                    .or_else(|| voices.first())
                    .ok_or_else(|| ApiError::unavailable("The speech engine offers no voices."))?,
            },
        };
        let supports = |k: VoiceEngine| voice.engines.iter().any(|e| e == k.as_str());
        let kind = match params
            .engine_kind
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            Some(k) => match VoiceEngine::parse(k) {
                None => {
                    return Err(ApiError::bad_request(format!(
                        "Engine `{k}` is not one of {}.",
                        VoiceEngine::ALL.map(VoiceEngine::as_str).join(", ")
                    )));
                }
                Some(kind) if !supports(kind) => {
                    return Err(ApiError::bad_request(format!(
                        "Voice `{}` does not support the {k} engine; it supports {}.",
                        voice.id,
                        voice.engines.join(", ")
                    )));
                }
                Some(kind) => kind,
            },
            None if supports(VoiceEngine::Standard) || voice.engines.is_empty() => {
                VoiceEngine::Standard
            }
            None => voice
                .engines
                .iter()
                .find_map(|e| VoiceEngine::parse(e))
                .unwrap_or(VoiceEngine::Standard),
        };
        Ok(Keyed {
            engine: engine.kind(),
            voice: voice.id.clone(),
            // One spelling per language, so `en_us` and `en-US` share a cache entry.
            language: match language {
                Some(l) if !language_matches(&voice.language, &l) => l,
                _ => voice.language.clone(),
            },
            format,
            engine_kind: kind,
            text,
        })
    }

    pub(super) fn synthesis(&self, k: &Keyed) -> Result<Synthesis, ApiError> {
        if k.engine != self.engine_kind() {
            return Err(ApiError::NotFound(format!(
                "This speech was registered for the {} engine, which this server does not run.",
                k.engine.name()
            )));
        }
        Ok(Synthesis {
            text: k.text.clone(),
            voice: k.voice.clone(),
            language: k.language.clone(),
            format: k.format,
            engine_kind: k.engine_kind,
        })
    }
}

/// `en-US` matches `en-us`, and a bare `en` matches any English.
pub(super) fn language_matches(voice_language: &str, wanted: &str) -> bool {
    let v = voice_language.to_ascii_lowercase();
    let w = wanted.to_ascii_lowercase().replace('_', "-");
    v == w || (!w.contains('-') && v.split('-').next() == Some(w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_match_case_insensitively_and_by_primary_tag() {
        assert!(language_matches("en-US", "en-us"));
        assert!(language_matches("en-GB", "en"));
        assert!(!language_matches("en-GB", "en-US"));
        assert!(language_matches("de-DE", "de_DE"));
    }
}
