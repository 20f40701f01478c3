//! What an utterance's bytes are, told from the bytes themselves (a
//! browser's `Content-Type` is often generic), and what WAV alone can tell
//! before any worker is involved.

use std::time::Duration;

use crate::error::ApiError;

/// The containers recognised: what browsers record, and plain WAV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// RIFF/WAVE with 16-bit PCM.
    Wav,
    /// WebM (Matroska), as Chromium and Firefox record Opus.
    WebM,
    /// Ogg, as Firefox and Safari record Opus.
    Ogg,
}

pub const ACCEPTED: &str =
    "16-bit PCM WAV (audio/wav), WebM (audio/webm) or Ogg (audio/ogg) with Opus";

impl Container {
    /// The container of `audio`, or a 415 naming what is accepted.
    pub fn sniff(audio: &[u8]) -> Result<Container, ApiError> {
        if audio.len() >= 12 && &audio[..4] == b"RIFF" && &audio[8..12] == b"WAVE" {
            Ok(Container::Wav)
        } else if audio.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
            Ok(Container::WebM)
        } else if audio.starts_with(b"OggS") {
            Ok(Container::Ogg)
        } else if audio.is_empty() {
            Err(ApiError::bad_request(
                "The body is empty: send the recorded utterance.",
            ))
        } else {
            Err(ApiError::UnsupportedMediaType(format!(
                "This audio format is not accepted; send {ACCEPTED}."
            )))
        }
    }
}

/// A declared `Content-Type` that cannot be audio is refused before the
/// bytes are looked at; generic ones (none, octet-stream) are sniffed.
pub fn check_declared(content_type: Option<&str>) -> Result<(), ApiError> {
    let Some(declared) = content_type else {
        return Ok(());
    };
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let audio = essence.starts_with("audio/")
        || essence == "video/webm"
        || essence == "application/ogg"
        || essence == "application/octet-stream"
        || essence.is_empty();
    if audio {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "`{essence}` is not audio; send {ACCEPTED}."
        )))
    }
}

/// The playing time of a WAV utterance, checked to be 16-bit PCM that
/// decodes; a corrupt file is a 400.
pub fn wav_duration(audio: &[u8]) -> Result<Duration, ApiError> {
    let pcm = voxgate_audio::wav::decode_wav(audio).map_err(|e| {
        ApiError::bad_request(format!(
            "The WAV file cannot be read ({e}); send {ACCEPTED}."
        ))
    })?;
    Ok(pcm.duration())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_told_from_their_first_bytes() {
        assert_eq!(
            Container::sniff(b"RIFF\0\0\0\0WAVEfmt ").unwrap(),
            Container::Wav
        );
        assert_eq!(
            Container::sniff(&[0x1a, 0x45, 0xdf, 0xa3, 1]).unwrap(),
            Container::WebM
        );
        assert_eq!(Container::sniff(b"OggS\0\x02").unwrap(), Container::Ogg);
        assert_eq!(Container::sniff(b"ID3\x04mp3").unwrap_err().status(), 415);
        assert_eq!(Container::sniff(b"").unwrap_err().status(), 400);
    }

    #[test]
    fn declared_types_that_cannot_be_audio_are_refused() {
        assert!(check_declared(Some("audio/webm;codecs=opus")).is_ok());
        assert!(check_declared(Some("application/octet-stream")).is_ok());
        assert!(check_declared(None).is_ok());
        assert_eq!(
            check_declared(Some("text/plain")).unwrap_err().status(),
            415
        );
    }
}
