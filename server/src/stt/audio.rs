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

/// The playing time of a WAV utterance, from its header (16-bit PCM); a
/// header that cannot be read is a 400. The samples themselves are only
/// decoded by the recogniser.
pub fn wav_duration(audio: &[u8]) -> Result<Duration, ApiError> {
    voxgate_audio::wav::wav_duration(audio).map_err(|e| {
        ApiError::bad_request(format!(
            "The WAV file cannot be read ({e}); send {ACCEPTED}."
        ))
    })
}

/// The playing time of an utterance, read from its container without
/// decoding the audio: WAV from its samples, Ogg from the last page's
/// granule position, WebM from its block timestamps. This is what the
/// length limit and the listening quota go by, before any recogniser
/// (or paid service) is involved.
pub fn duration(audio: &[u8], container: Container) -> Result<Duration, ApiError> {
    let measured = match container {
        Container::Wav => return wav_duration(audio),
        Container::Ogg => ogg_duration(audio),
        Container::WebM => webm_duration(audio),
    };
    measured.ok_or_else(|| {
        ApiError::bad_request(format!(
            "The recording's length cannot be read from its container; send {ACCEPTED}."
        ))
    })
}

/// Opus (48 kHz granules, less the pre-skip) or Vorbis (its sample rate).
fn ogg_duration(audio: &[u8]) -> Option<Duration> {
    let page = |at: usize| audio.get(at..at + 27).filter(|h| h.starts_with(b"OggS"));
    let first = page(0)?;
    let segments = usize::from(first[26]);
    let payload = 27 + segments;
    let head = audio.get(payload..)?;
    let (rate, skip) = if head.starts_with(b"OpusHead") {
        (
            48_000u64,
            u64::from(u16::from_le_bytes([*head.get(10)?, *head.get(11)?])),
        )
    } else if head.starts_with(b"\x01vorbis") {
        (
            u64::from(u32::from_le_bytes(head.get(12..16)?.try_into().ok()?)),
            0,
        )
    } else {
        return None;
    };
    let last = audio.windows(4).rposition(|w| w == b"OggS")?;
    let header = page(last)?;
    let granule = u64::from_le_bytes(header[6..14].try_into().ok()?);
    if rate == 0 || granule == u64::MAX {
        return None;
    }
    // A hostile header (a rate of 1 with a huge granule) must not panic.
    Duration::try_from_secs_f64(granule.saturating_sub(skip) as f64 / rate as f64).ok()
}

/// A WebM's length from its blocks' timestamps (browsers' live recordings
/// carry no Duration element and use unknown sizes, so the clusters are
/// walked rather than skipped).
fn webm_duration(audio: &[u8]) -> Option<Duration> {
    const SEGMENT: u32 = 0x1853_8067;
    const CLUSTER: u32 = 0x1F43_B675;
    const INFO: u32 = 0x1549_A966;
    const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    const CLUSTER_TIMECODE: u32 = 0xE7;
    const SIMPLE_BLOCK: u32 = 0xA3;
    const BLOCK_GROUP: u32 = 0xA0;
    const BLOCK: u32 = 0xA1;
    fn vint(data: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
        let first = *data.get(at)?;
        let length = first.leading_zeros() as usize + 1;
        if length > 8 {
            return None;
        }
        let mask: u16 = if keep_marker {
            0xFF
        } else {
            (1u16 << (8 - length)) - 1
        };
        let mut value = u64::from(first) & u64::from(mask);
        for i in 1..length {
            value = (value << 8) | u64::from(*data.get(at + i)?);
        }
        Some((value, length))
    }
    let uint = |bytes: &[u8]| bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
    let (mut at, mut scale, mut cluster, mut last) = (0usize, 1_000_000u64, 0u64, None::<u64>);
    while at < audio.len() {
        let (id, id_length) = vint(audio, at, true)?;
        let (size, size_length) = vint(audio, at + id_length, false)?;
        let body = at + id_length + size_length;
        let unknown = size == (1u64 << (7 * size_length)) - 1;
        match id as u32 {
            SEGMENT | CLUSTER | INFO | BLOCK_GROUP => {
                at = body;
                continue;
            }
            _ if unknown => return None,
            TIMECODE_SCALE => scale = uint(audio.get(body..body + size as usize)?),
            CLUSTER_TIMECODE => cluster = uint(audio.get(body..body + size as usize)?),
            SIMPLE_BLOCK | BLOCK => {
                let (_, track_length) = vint(audio, body, false)?;
                let relative = audio.get(body + track_length..body + track_length + 2)?;
                let relative = i16::from_be_bytes([relative[0], relative[1]]);
                let time = cluster.saturating_add_signed(i64::from(relative));
                last = Some(last.map_or(time, |l| l.max(time)));
            }
            _ => {}
        }
        at = body.checked_add(usize::try_from(size).ok()?)?;
    }
    // The last block's start; a block of speech is tens of milliseconds.
    Some(Duration::from_nanos(last?.saturating_mul(scale)))
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

    /// One Ogg page carrying a Vorbis identification header with `rate`,
    /// its granule position `granule`.
    fn vorbis_page(rate: u32, granule: u64) -> Vec<u8> {
        let mut page = b"OggS\0\x02".to_vec();
        page.extend(granule.to_le_bytes());
        page.extend([0; 12]); // serial, sequence, checksum
        page.push(1); // one segment
        page.push(30);
        page.extend(b"\x01vorbis");
        page.extend([0; 4]); // version
        page.push(1); // channels
        page.extend(rate.to_le_bytes());
        page.extend([0; 14]);
        page
    }

    #[test]
    fn an_ogg_length_is_read_and_an_impossible_one_is_refused() {
        let ten_seconds = vorbis_page(16_000, 160_000);
        assert_eq!(
            duration(&ten_seconds, Container::Ogg).unwrap(),
            Duration::from_secs(10)
        );
        let hostile = vorbis_page(1, u64::MAX - 1);
        assert_eq!(
            duration(&hostile, Container::Ogg).unwrap_err().status(),
            400
        );
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
