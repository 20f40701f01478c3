//! Local speech synthesis for voxgate.
//!
//! This crate owns everything voxgate needs to produce speech without a cloud
//! service:
//!
//! * [`espeak`] runs the `espeak-ng` program as a subprocess. espeak-ng is
//!   GPL-3, so it is never linked: text goes in on stdin, a WAV comes out on
//!   stdout, and concurrency and run time are bounded here.
//! * [`wav`] parses WAV (with `hound`), resamples and generates test tones.
//! * [`mp3`] encodes PCM to MP3 in-process (LAME via `mp3lame-encoder`, LGPL)
//!   and walks MPEG frame headers to estimate durations and split streams.
//! * [`marks`] estimates Polly-shaped speech marks (word and sentence timings)
//!   from text and a total duration, because espeak-ng does not report them.
//! * [`worker`] starts warm Python worker processes (the neural voice, the
//!   speech recogniser) with a cleared environment and hands them out from
//!   a pool, replacing dead or out-of-step ones.
//!
//! The Polly stand-in (`polly-standin`) uses the same pieces to return real,
//! decodable audio.

pub mod environment;
pub mod espeak;
pub mod marks;
pub mod mp3;
pub mod wav;
pub mod worker;

pub use environment::worker_env;
pub use espeak::{Espeak, EspeakConfig, LocalVoice, parse_voices};
pub use marks::{SpeechMark, estimate_speech_marks};
pub use mp3::{encode_mp3, mp3_duration_estimate, split_mp3_frames, wav_to_mp3, wav_to_mp3_chunks};
pub use wav::{Pcm, decode_wav, pcm_to_wav, tone, wav_to_pcm};

/// Everything that can go wrong while producing local audio.
#[derive(thiserror::Error, Debug)]
pub enum AudioError {
    /// The synthesis program could not be found or executed.
    #[error("espeak-ng is not installed or cannot be executed")]
    NotInstalled,
    /// The synthesis program did not finish within the configured timeout.
    #[error("speech synthesis timed out")]
    Timeout,
    /// The synthesis program ran but failed.
    #[error("speech synthesis failed: {0}")]
    Failed(String),
    /// The WAV input could not be parsed or has an unsupported format.
    #[error("invalid WAV data: {0}")]
    BadWav(String),
    /// The MP3 encoder rejected its configuration or input.
    #[error("MP3 encoding failed: {0}")]
    Encode(String),
    /// The requested voice id is not known to the synthesis program.
    #[error("unknown voice: {0}")]
    UnknownVoice(String),
}
