//! MP3 encoding (LAME, in-process) and MPEG frame walking.
//!
//! Encoding is CBR without a Xing/Info tag so that every frame is audio and
//! the output can be cut on any frame boundary and streamed. Frame walking is
//! used both to estimate durations without decoding and to split an encoded
//! stream into frame-aligned chunks.

use std::time::Duration;

use bytes::Bytes;
use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, InterleavedPcm, Mode, MonoPcm, Quality};

use crate::AudioError;
use crate::wav::{Pcm, decode_wav};

/// Encodes a 16-bit WAV file (mono or stereo) to CBR MP3 at about `kbps`.
pub fn wav_to_mp3(wav: &[u8], kbps: u32) -> Result<Vec<u8>, AudioError> {
    encode_mp3(&decode_wav(wav)?, kbps)
}

/// Like [`wav_to_mp3`], but returns the MP3 split into chunks of
/// `chunk_frames` MPEG frames each, ready to be streamed as they are.
pub fn wav_to_mp3_chunks(
    wav: &[u8],
    kbps: u32,
    chunk_frames: usize,
) -> Result<Vec<Bytes>, AudioError> {
    let mp3 = wav_to_mp3(wav, kbps)?;
    Ok(split_mp3_frames(&mp3, chunk_frames))
}

/// Encodes PCM samples to CBR MP3. The sample rate must be one MP3 supports
/// (8000 to 48000 Hz); the bitrate is rounded up to the next one LAME offers.
pub fn encode_mp3(pcm: &Pcm, kbps: u32) -> Result<Vec<u8>, AudioError> {
    let enc_err = |e: &dyn std::fmt::Display| AudioError::Encode(e.to_string());
    if !(1..=2).contains(&pcm.channels) {
        return Err(AudioError::Encode(format!(
            "unsupported channel count {}",
            pcm.channels
        )));
    }
    let mut builder =
        Builder::new().ok_or_else(|| AudioError::Encode("cannot allocate LAME encoder".into()))?;
    builder
        .set_num_channels(pcm.channels as u8)
        .map_err(|e| enc_err(&e))?;
    builder
        .set_sample_rate(pcm.sample_rate)
        .map_err(|e| enc_err(&e))?;
    builder.set_brate(bitrate(kbps)).map_err(|e| enc_err(&e))?;
    builder
        .set_mode(if pcm.channels == 1 {
            Mode::Mono
        } else {
            Mode::JointStereo
        })
        .map_err(|e| enc_err(&e))?;
    builder
        .set_quality(Quality::Good)
        .map_err(|e| enc_err(&e))?;
    // No Xing/Info frame: every frame carries audio, which keeps frame
    // counting exact and lets the stream be split anywhere.
    builder
        .set_to_write_vbr_tag(false)
        .map_err(|e| enc_err(&e))?;
    let mut encoder = builder.build().map_err(|e| enc_err(&e))?;

    let ch = usize::from(pcm.channels);
    let block = 4608 * ch;
    let mut out = Vec::with_capacity(pcm.samples.len() / 4 + 8192);
    for part in pcm.samples.chunks(block) {
        let frames = part.len() / ch;
        out.reserve(mp3lame_encoder::max_required_buffer_size(frames));
        if ch == 1 {
            encoder
                .encode_to_vec(MonoPcm(part), &mut out)
                .map_err(|e| enc_err(&e))?;
        } else {
            encoder
                .encode_to_vec(InterleavedPcm(part), &mut out)
                .map_err(|e| enc_err(&e))?;
        }
    }
    out.reserve(7200);
    encoder
        .flush_to_vec::<FlushNoGap>(&mut out)
        .map_err(|e| enc_err(&e))?;
    Ok(out)
}

fn bitrate(kbps: u32) -> Bitrate {
    use Bitrate::*;
    const ALL: [(u32, Bitrate); 16] = [
        (8, Kbps8),
        (16, Kbps16),
        (24, Kbps24),
        (32, Kbps32),
        (40, Kbps40),
        (48, Kbps48),
        (64, Kbps64),
        (80, Kbps80),
        (96, Kbps96),
        (112, Kbps112),
        (128, Kbps128),
        (160, Kbps160),
        (192, Kbps192),
        (224, Kbps224),
        (256, Kbps256),
        (320, Kbps320),
    ];
    ALL.iter()
        .find(|(k, _)| *k >= kbps)
        .map(|(_, b)| *b)
        .unwrap_or(Kbps320)
}

/// One parsed MPEG audio frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameHeader {
    /// Frame length in bytes, header included.
    len: usize,
    samples: u32,
    sample_rate: u32,
}

fn parse_header(b: &[u8]) -> Option<FrameHeader> {
    if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return None;
    }
    // 0 = MPEG 2.5, 2 = MPEG 2, 3 = MPEG 1 (1 is reserved)
    let version = (b[1] >> 3) & 3;
    // 1 = layer III, 2 = layer II, 3 = layer I (0 is reserved)
    let layer = (b[1] >> 1) & 3;
    let br_idx = usize::from(b[2] >> 4);
    let sr_idx = usize::from((b[2] >> 2) & 3);
    let padding = usize::from((b[2] >> 1) & 1);
    if version == 1 || layer == 0 || br_idx == 0 || br_idx == 15 || sr_idx == 3 {
        return None;
    }
    const V1_L1: [u32; 15] = [
        0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ];
    const V1_L2: [u32; 15] = [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ];
    const V1_L3: [u32; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const V2_L1: [u32; 15] = [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ];
    const V2_L23: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let kbps = match (version == 3, layer) {
        (true, 3) => V1_L1[br_idx],
        (true, 2) => V1_L2[br_idx],
        (true, _) => V1_L3[br_idx],
        (false, 3) => V2_L1[br_idx],
        (false, _) => V2_L23[br_idx],
    };
    let sample_rate = match version {
        3 => [44100, 48000, 32000][sr_idx],
        2 => [22050, 24000, 16000][sr_idx],
        _ => [11025, 12000, 8000][sr_idx],
    };
    let bps = kbps as usize * 1000;
    let sr = sample_rate as usize;
    let (len, samples) = match layer {
        3 => ((12 * bps / sr + padding) * 4, 384),
        2 => (144 * bps / sr + padding, 1152),
        _ if version == 3 => (144 * bps / sr + padding, 1152),
        _ => (72 * bps / sr + padding, 576),
    };
    Some(FrameHeader {
        len,
        samples,
        sample_rate,
    })
}

/// Size of a leading ID3v2 tag, if any.
fn id3v2_len(b: &[u8]) -> usize {
    if b.len() >= 10 && &b[0..3] == b"ID3" {
        let size = b[6..10]
            .iter()
            .fold(0usize, |acc, &x| (acc << 7) | usize::from(x & 0x7f));
        let footer = if b[5] & 0x10 != 0 { 10 } else { 0 };
        (10 + size + footer).min(b.len())
    } else {
        0
    }
}

/// Byte ranges of complete frames, skipping tags and garbage between frames.
/// Later frames must agree with the first one on sample rate, which keeps
/// stray `0xFF` bytes in tags from being read as frames.
fn frames(mp3: &[u8]) -> Vec<(usize, FrameHeader)> {
    let mut pos = id3v2_len(mp3);
    let mut found: Vec<(usize, FrameHeader)> = Vec::new();
    while pos + 4 <= mp3.len() {
        match parse_header(&mp3[pos..]) {
            Some(h)
                if pos + h.len <= mp3.len()
                    && found
                        .first()
                        .is_none_or(|(_, f)| f.sample_rate == h.sample_rate) =>
            {
                found.push((pos, h));
                pos += h.len;
            }
            _ => pos += 1,
        }
    }
    found
}

/// Estimates the playing time of an MP3 by walking its frame headers.
/// Returns `None` when no MPEG audio frame is found.
pub fn mp3_duration_estimate(mp3: &[u8]) -> Option<Duration> {
    let frames = frames(mp3);
    if frames.is_empty() {
        return None;
    }
    let secs: f64 = frames
        .iter()
        .enumerate()
        .filter(|(i, (pos, h))| !(*i == 0 && is_info_frame(&mp3[*pos..*pos + h.len])))
        .map(|(_, (_, h))| f64::from(h.samples) / f64::from(h.sample_rate))
        .sum();
    Some(Duration::from_secs_f64(secs))
}

/// A Xing/Info frame (written by many encoders) holds metadata, not audio.
fn is_info_frame(frame: &[u8]) -> bool {
    let head = &frame[..frame.len().min(64)];
    head.windows(4).any(|w| w == b"Xing" || w == b"Info")
}

/// Splits an MP3 into chunks of `chunk_frames` whole frames (at least one).
/// Bytes before the first frame (an ID3 tag) travel with the first chunk and
/// trailing non-frame bytes with the last, so concatenating the chunks gives
/// back the input exactly.
pub fn split_mp3_frames(mp3: &[u8], chunk_frames: usize) -> Vec<Bytes> {
    let per = chunk_frames.max(1);
    let frames = frames(mp3);
    if frames.is_empty() {
        return if mp3.is_empty() {
            Vec::new()
        } else {
            vec![Bytes::copy_from_slice(mp3)]
        };
    }
    let mut cuts: Vec<usize> = frames
        .iter()
        .step_by(per)
        .skip(1)
        .map(|(pos, _)| *pos)
        .collect();
    cuts.push(mp3.len());
    let mut start = 0;
    cuts.into_iter()
        .map(|end| {
            let chunk = Bytes::copy_from_slice(&mp3[start..end]);
            start = end;
            chunk
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::{pcm_to_wav, tone};

    #[test]
    fn header_parser_knows_mpeg1_and_mpeg2_layer3() {
        // MPEG1 L3 128 kbps 44.1 kHz, no padding: 417 bytes, 1152 samples.
        let h = parse_header(&[0xFF, 0xFB, 0x90, 0x00]).unwrap();
        assert_eq!((h.len, h.samples, h.sample_rate), (417, 1152, 44100));
        // MPEG2 L3 48 kbps 22.05 kHz: 72*48000/22050 = 156 bytes, 576 samples.
        let h = parse_header(&[0xFF, 0xF3, 0x60, 0x00]).unwrap();
        assert_eq!((h.len, h.samples, h.sample_rate), (156, 576, 22050));
        assert!(
            parse_header(&[0xFF, 0xFB, 0xF0, 0x00]).is_none(),
            "bad bitrate index"
        );
    }

    #[test]
    fn chunks_are_frame_aligned_and_reassemble_exactly() {
        let wav = pcm_to_wav(&tone(Duration::from_secs(2), 22050, 330.0)).unwrap();
        let whole = wav_to_mp3(&wav, 48).unwrap();
        let chunks = wav_to_mp3_chunks(&wav, 48, 10).unwrap();
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        for c in &chunks {
            assert!(parse_header(c).is_some(), "chunk does not start on a frame");
        }
        assert_eq!(chunks.concat(), whole);
    }

    #[test]
    fn garbage_has_no_duration() {
        assert_eq!(mp3_duration_estimate(b"this is not audio"), None);
        assert_eq!(mp3_duration_estimate(&[]), None);
    }

    #[test]
    fn bitrates_round_up_to_what_lame_offers() {
        assert_eq!(bitrate(48) as u16, 48);
        assert_eq!(bitrate(50) as u16, 64);
        assert_eq!(bitrate(1000) as u16, 320);
    }
}
