//! Call counters and injected faults.
//!
//! Tests drive these through the library API or the control endpoint to see
//! how a client copes with throttling, server failures, slow responses and
//! broken streams, and to count how many calls (including retries) reached
//! the service.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::errors::ApiError;

/// Which API operation a call is, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    SynthesizeSpeech,
    DescribeVoices,
    Lexicons,
}

/// Fault settings; all off by default.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultSettings {
    pub throttle_next: usize,
    pub fail_next: usize,
    pub fail_status: u16,
    pub first_byte_delay_ms: u64,
    pub chunk_delay_ms: u64,
    pub cut_stream_after: Option<usize>,
}

/// Counter values.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub synth_calls: usize,
    pub billed_characters: u64,
    pub voices_calls: usize,
}

#[derive(Default)]
pub struct Faults {
    synth_calls: AtomicUsize,
    billed_characters: AtomicU64,
    voices_calls: AtomicUsize,
    settings: Mutex<FaultSettings>,
}

impl Faults {
    fn settings(&self) -> std::sync::MutexGuard<'_, FaultSettings> {
        // A panic while holding the lock cannot leave the settings invalid.
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn synth_calls(&self) -> usize {
        self.synth_calls.load(Ordering::SeqCst)
    }

    pub fn billed_characters(&self) -> u64 {
        self.billed_characters.load(Ordering::SeqCst)
    }

    pub fn voices_calls(&self) -> usize {
        self.voices_calls.load(Ordering::SeqCst)
    }

    pub fn counters(&self) -> Counters {
        Counters {
            synth_calls: self.synth_calls(),
            billed_characters: self.billed_characters(),
            voices_calls: self.voices_calls(),
        }
    }

    pub fn add_billed(&self, n: u64) {
        self.billed_characters.fetch_add(n, Ordering::SeqCst);
    }

    pub fn throttle_next(&self, n: usize) {
        self.settings().throttle_next = n;
    }

    pub fn fail_next(&self, n: usize, status: u16) {
        let mut s = self.settings();
        s.fail_next = n;
        s.fail_status = status;
    }

    pub fn set_first_byte_delay(&self, d: Duration) {
        self.settings().first_byte_delay_ms = d.as_millis() as u64;
    }

    pub fn set_chunk_delay(&self, d: Duration) {
        self.settings().chunk_delay_ms = d.as_millis() as u64;
    }

    pub fn cut_stream_after(&self, bytes: Option<usize>) {
        self.settings().cut_stream_after = bytes;
    }

    pub fn reset_faults(&self) {
        *self.settings() = FaultSettings::default();
    }

    pub fn reset_counters(&self) {
        self.synth_calls.store(0, Ordering::SeqCst);
        self.billed_characters.store(0, Ordering::SeqCst);
        self.voices_calls.store(0, Ordering::SeqCst);
    }

    pub fn snapshot(&self) -> FaultSettings {
        self.settings().clone()
    }

    /// Replaces the settings wholesale (control endpoint).
    pub fn apply(&self, settings: FaultSettings) {
        *self.settings() = settings;
    }

    /// Streaming parameters for one response body.
    pub fn stream_settings(&self) -> (Duration, Option<usize>) {
        let s = self.settings();
        (Duration::from_millis(s.chunk_delay_ms), s.cut_stream_after)
    }

    /// Runs at the start of every authenticated API call: counts it, waits
    /// out the first-byte delay, then consumes one pending throttle or
    /// failure if any (throttling first).
    pub async fn gate(&self, op: Operation) -> Result<(), ApiError> {
        match op {
            Operation::SynthesizeSpeech => {
                self.synth_calls.fetch_add(1, Ordering::SeqCst);
            }
            Operation::DescribeVoices => {
                self.voices_calls.fetch_add(1, Ordering::SeqCst);
            }
            Operation::Lexicons => {}
        }
        let (delay, fault) = {
            let mut s = self.settings();
            let fault = if s.throttle_next > 0 {
                s.throttle_next -= 1;
                Some(ApiError::throttling())
            } else if s.fail_next > 0 {
                s.fail_next -= 1;
                let status = if s.fail_status == 0 {
                    500
                } else {
                    s.fail_status
                };
                Some(ApiError::service_failure(status))
            } else {
                None
            };
            (Duration::from_millis(s.first_byte_delay_ms), fault)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        fault.map_or(Ok(()), Err)
    }
}
