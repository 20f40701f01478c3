//! WAV parsing and simple PCM manipulation.
//!
//! espeak-ng writes WAV to a pipe, where it cannot seek back to fill in the
//! chunk sizes, so its headers claim a huge (`0x7ffff000`-ish) data length.
//! [`decode_wav`] repairs those sizes from the actual byte count before
//! handing the data to `hound`.

use std::borrow::Cow;
use std::io::Cursor;
use std::time::Duration;

use crate::AudioError;

/// Interleaved signed 16-bit samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pcm {
    pub samples: Vec<i16>,
    pub channels: u16,
    pub sample_rate: u32,
}

impl Pcm {
    /// Number of sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// Playing time of the samples.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.frames() as f64 / f64::from(self.sample_rate))
    }

    /// Averages all channels into one.
    pub fn to_mono(&self) -> Pcm {
        if self.channels <= 1 {
            return self.clone();
        }
        let ch = usize::from(self.channels);
        let samples = self
            .samples
            .chunks_exact(ch)
            .map(|f| (f.iter().map(|&s| i32::from(s)).sum::<i32>() / ch as i32) as i16)
            .collect();
        Pcm {
            samples,
            channels: 1,
            sample_rate: self.sample_rate,
        }
    }

    /// Linear-interpolation resampling. Good enough for speech at telephone
    /// to wideband rates; this is not a high-fidelity resampler.
    pub fn resample(&self, rate: u32) -> Pcm {
        if rate == self.sample_rate || self.sample_rate == 0 || rate == 0 || self.samples.is_empty()
        {
            return Pcm {
                sample_rate: if self.samples.is_empty() {
                    rate
                } else {
                    self.sample_rate
                },
                ..self.clone()
            };
        }
        let ch = usize::from(self.channels.max(1));
        let in_frames = self.frames();
        let out_frames =
            ((in_frames as u64 * u64::from(rate)) / u64::from(self.sample_rate)).max(1) as usize;
        let step = f64::from(self.sample_rate) / f64::from(rate);
        let mut samples = Vec::with_capacity(out_frames * ch);
        for i in 0..out_frames {
            let pos = i as f64 * step;
            let i0 = (pos.floor() as usize).min(in_frames - 1);
            let i1 = (i0 + 1).min(in_frames - 1);
            let frac = pos - i0 as f64;
            for c in 0..ch {
                let a = f64::from(self.samples[i0 * ch + c]);
                let b = f64::from(self.samples[i1 * ch + c]);
                samples.push((a + (b - a) * frac).round() as i16);
            }
        }
        Pcm {
            samples,
            channels: self.channels,
            sample_rate: rate,
        }
    }

    /// Raw little-endian bytes of the interleaved samples.
    pub fn to_s16le(&self) -> Vec<u8> {
        self.samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }
}

/// A reader of a 16-bit integer PCM WAV file (mono or stereo), its header
/// checked.
fn checked_reader(wav: &[u8]) -> Result<hound::WavReader<Cursor<&[u8]>>, AudioError> {
    let reader =
        hound::WavReader::new(Cursor::new(wav)).map_err(|e| AudioError::BadWav(e.to_string()))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(AudioError::BadWav(format!(
            "only 16-bit integer PCM is supported, got {} bit {:?}",
            spec.bits_per_sample, spec.sample_format
        )));
    }
    if !(1..=2).contains(&spec.channels) {
        return Err(AudioError::BadWav(format!(
            "unsupported channel count {}",
            spec.channels
        )));
    }
    if spec.sample_rate == 0 {
        return Err(AudioError::BadWav("a sample rate of 0".into()));
    }
    Ok(reader)
}

/// The playing time of a 16-bit PCM WAV file, read from its header and
/// data size without decoding the samples.
pub fn wav_duration(wav: &[u8]) -> Result<Duration, AudioError> {
    let fixed = repair_sizes(wav)?;
    let reader = checked_reader(fixed.as_ref())?;
    let rate = reader.spec().sample_rate;
    Ok(Duration::from_secs_f64(
        f64::from(reader.duration()) / f64::from(rate),
    ))
}

/// Parses a 16-bit integer PCM WAV file (mono or stereo).
pub fn decode_wav(wav: &[u8]) -> Result<Pcm, AudioError> {
    let fixed = repair_sizes(wav)?;
    let mut reader = checked_reader(fixed.as_ref())?;
    let spec = reader.spec();
    let samples = reader
        .samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(|e| AudioError::BadWav(e.to_string()))?;
    // A truncated final frame would misalign channels downstream.
    let ch = usize::from(spec.channels);
    let mut samples = samples;
    samples.truncate(samples.len() / ch * ch);
    Ok(Pcm {
        samples,
        channels: spec.channels,
        sample_rate: spec.sample_rate,
    })
}

/// Returns the raw s16le sample bytes of a WAV file and its sample rate.
pub fn wav_to_pcm(wav: &[u8]) -> Result<(Vec<u8>, u32), AudioError> {
    let pcm = decode_wav(wav)?;
    Ok((pcm.to_s16le(), pcm.sample_rate))
}

/// Writes samples as a 16-bit PCM WAV file.
pub fn pcm_to_wav(pcm: &Pcm) -> Result<Vec<u8>, AudioError> {
    let spec = hound::WavSpec {
        channels: pcm.channels,
        sample_rate: pcm.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    {
        let mut w =
            hound::WavWriter::new(&mut out, spec).map_err(|e| AudioError::BadWav(e.to_string()))?;
        for &s in &pcm.samples {
            w.write_sample(s)
                .map_err(|e| AudioError::BadWav(e.to_string()))?;
        }
        w.finalize()
            .map_err(|e| AudioError::BadWav(e.to_string()))?;
    }
    Ok(out.into_inner())
}

/// A mono sine tone with short fades (so it does not click), used for test
/// signals and as audible filler when no speech engine is installed.
pub fn tone(duration: Duration, sample_rate: u32, frequency_hz: f32) -> Pcm {
    let n = (duration.as_secs_f64() * f64::from(sample_rate)).round() as usize;
    let fade = (sample_rate as usize / 100).max(1).min(n / 2 + 1);
    let samples = (0..n)
        .map(|i| {
            let t = i as f32 / sample_rate as f32;
            let env = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
            (f32::sin(2.0 * std::f32::consts::PI * frequency_hz * t)
                * 0.4
                * env
                * f32::from(i16::MAX)) as i16
        })
        .collect();
    Pcm {
        samples,
        channels: 1,
        sample_rate,
    }
}

/// Rewrites the RIFF and `data` chunk sizes when they claim more bytes than
/// exist (streamed WAV). Leaves well-formed files untouched.
fn repair_sizes(wav: &[u8]) -> Result<Cow<'_, [u8]>, AudioError> {
    if wav.len() < 12 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err(AudioError::BadWav("not a RIFF/WAVE file".into()));
    }
    let mut pos = 12usize;
    while pos + 8 <= wav.len() {
        let id = &wav[pos..pos + 4];
        let size =
            u32::from_le_bytes([wav[pos + 4], wav[pos + 5], wav[pos + 6], wav[pos + 7]]) as usize;
        let body = pos + 8;
        if id == b"data" {
            let available = wav.len() - body;
            let riff_size = (wav.len() - 8) as u32;
            let riff_claimed = u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]);
            if size <= available && riff_claimed == riff_size {
                return Ok(Cow::Borrowed(wav));
            }
            let data_len = size.min(available);
            // Keep whole 16-bit samples only.
            let data_len = data_len - data_len % 2;
            let mut owned = wav[..body + data_len].to_vec();
            owned[pos + 4..pos + 8].copy_from_slice(&(data_len as u32).to_le_bytes());
            let riff = (owned.len() - 8) as u32;
            owned[4..8].copy_from_slice(&riff.to_le_bytes());
            return Ok(Cow::Owned(owned));
        }
        // Chunks are padded to even sizes.
        pos = body.saturating_add(size).saturating_add(size % 2);
    }
    Err(AudioError::BadWav("no data chunk".into()))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_length_is_read_from_the_header_as_decoding_would_find_it() {
        let pcm = tone(Duration::from_millis(1500), 16_000, 440.0);
        let wav = pcm_to_wav(&pcm).unwrap();
        assert_eq!(
            wav_duration(&wav).unwrap(),
            decode_wav(&wav).unwrap().duration()
        );
        let mut eight_bit = wav.clone();
        eight_bit[34] = 8; // bits per sample
        assert!(wav_duration(&eight_bit).is_err());
        assert!(wav_duration(b"RIFF\x24\0\0\0WAVEfmt ").is_err());
    }
    use super::*;

    #[test]
    fn streamed_wav_with_bogus_sizes_is_repaired() {
        let pcm = tone(Duration::from_millis(100), 22050, 440.0);
        let mut wav = pcm_to_wav(&pcm).unwrap();
        // What espeak-ng writes when its stdout is a pipe.
        wav[4..8].copy_from_slice(&0x7fff_f024u32.to_le_bytes());
        wav[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        let decoded = decode_wav(&wav).unwrap();
        assert_eq!(decoded, pcm);
    }

    #[test]
    fn resampling_scales_length_and_keeps_channels() {
        let pcm = tone(Duration::from_secs(1), 22050, 440.0);
        let down = pcm.resample(16000);
        assert_eq!(down.sample_rate, 16000);
        assert!(
            (down.frames() as i64 - 16000).abs() <= 1,
            "{}",
            down.frames()
        );
        let stereo = Pcm {
            samples: pcm.samples.iter().flat_map(|&s| [s, s]).collect(),
            channels: 2,
            sample_rate: 22050,
        };
        let r = stereo.resample(8000);
        assert_eq!(r.channels, 2);
        assert_eq!(r.to_mono().frames(), r.frames());
    }

    #[test]
    fn non_wav_input_is_rejected() {
        assert!(matches!(
            decode_wav(b"ID3 not a wav at all"),
            Err(AudioError::BadWav(_))
        ));
    }

    #[test]
    fn wav_to_pcm_returns_little_endian_samples() {
        let pcm = Pcm {
            samples: vec![1, -2, 300],
            channels: 1,
            sample_rate: 8000,
        };
        let (raw, rate) = wav_to_pcm(&pcm_to_wav(&pcm).unwrap()).unwrap();
        assert_eq!(rate, 8000);
        assert_eq!(raw, vec![1, 0, 0xfe, 0xff, 0x2c, 0x01]);
    }
}
