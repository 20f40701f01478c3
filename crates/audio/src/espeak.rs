//! Running `espeak-ng` as a subprocess.
//!
//! espeak-ng is GPL-3 licensed, so voxgate only ever *executes* it: the program
//! is spawned directly (no shell), options are passed as separate argv
//! entries, and the text to speak is written to its stdin (`--stdin`). Text
//! therefore can never be mistaken for an option, and because `-m` is never
//! passed, SSML-looking markup is spoken literally instead of being obeyed.
//! The WAV result is read from stdout (`--stdout`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::AudioError;

/// How to run espeak-ng.
#[derive(Clone, Debug)]
pub struct EspeakConfig {
    /// Program to execute; looked up in `PATH` when it is a bare name.
    pub program: PathBuf,
    /// Upper bound on one synthesis (or voice listing) run; the process is
    /// killed when it is exceeded.
    pub timeout: Duration,
    /// How many espeak-ng processes may run at once.
    pub max_concurrency: usize,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        EspeakConfig {
            program: PathBuf::from("espeak-ng"),
            timeout: Duration::from_secs(20),
            max_concurrency: 2,
        }
    }
}

/// A voice offered by the local engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalVoice {
    /// What to pass to `-v`, e.g. `en-us`.
    pub id: String,
    /// Human readable name, e.g. `English (America)`.
    pub name: String,
    /// BCP-47-ish language tag, e.g. `en-US`.
    pub language: String,
    /// `Male`/`Female` when espeak-ng states it.
    pub gender: Option<String>,
}

/// Handle to the local synthesis program. Cheap to clone; clones share the
/// concurrency limit.
#[derive(Clone, Debug)]
pub struct Espeak {
    cfg: Arc<EspeakConfig>,
    permits: Arc<Semaphore>,
}

/// espeak-ng's default speaking rate; also what callers get for `0`.
const DEFAULT_WPM: u32 = 175;
/// The range espeak-ng accepts for `-s`.
const WPM_RANGE: (u32, u32) = (80, 450);

impl Espeak {
    pub fn new(cfg: EspeakConfig) -> Espeak {
        let permits = Arc::new(Semaphore::new(cfg.max_concurrency.max(1)));
        Espeak {
            cfg: Arc::new(cfg),
            permits,
        }
    }

    /// The configuration this handle was built with.
    pub fn config(&self) -> &EspeakConfig {
        &self.cfg
    }

    /// Lists the voices espeak-ng offers (parsed from `espeak-ng --voices`).
    pub async fn voices(&self) -> Result<Vec<LocalVoice>, AudioError> {
        let out = self.run(&["--voices"], None).await?;
        if !out.status.success() {
            return Err(AudioError::Failed(stderr_text(&out.stderr)));
        }
        Ok(parse_voices(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Whether the program can be executed at all.
    pub async fn is_available(&self) -> bool {
        matches!(self.run(&["--version"], None).await, Ok(out) if out.status.success())
    }

    /// Speaks `text` (plain text, never SSML) with `voice_id` and returns a
    /// 16-bit PCM WAV file. `words_per_minute` of 0 means the default rate.
    pub async fn synthesize_wav(
        &self,
        voice_id: &str,
        text: &str,
        words_per_minute: u32,
    ) -> Result<Vec<u8>, AudioError> {
        if !valid_voice_id(voice_id) {
            return Err(AudioError::UnknownVoice(voice_id.to_string()));
        }
        let wpm = if words_per_minute == 0 {
            DEFAULT_WPM
        } else {
            words_per_minute.clamp(WPM_RANGE.0, WPM_RANGE.1)
        };
        let wpm = wpm.to_string();
        // `-b 1`: stdin is UTF-8. No `-m`: markup is text, not instructions.
        let args = ["-v", voice_id, "-s", &wpm, "-b", "1", "--stdout", "--stdin"];
        let out = self.run(&args, Some(text.as_bytes())).await?;
        let stderr = stderr_text(&out.stderr);
        if !out.status.success() {
            if stderr.contains("voice does not exist") {
                return Err(AudioError::UnknownVoice(voice_id.to_string()));
            }
            return Err(AudioError::Failed(if stderr.is_empty() {
                format!("espeak-ng exited with {}", out.status)
            } else {
                stderr
            }));
        }
        if out.stdout.len() < 44 {
            return Err(AudioError::Failed(format!(
                "espeak-ng produced no audio{}",
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                }
            )));
        }
        Ok(out.stdout)
    }

    /// Runs the program with a concurrency permit and the timeout; `stdin`
    /// is written concurrently with reading stdout so large texts cannot
    /// deadlock on full pipes.
    async fn run(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<std::process::Output, AudioError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AudioError::Failed("synthesis engine shut down".into()))?;
        let mut cmd = Command::new(&self.cfg.program);
        cmd.env_clear()
            .envs(crate::worker_env())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out run drops the child; it must not outlive us.
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                AudioError::NotInstalled
            }
            _ => AudioError::Failed(format!("cannot start {}: {e}", self.cfg.program.display())),
        })?;
        let writer = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.to_vec();
                Some(tokio::spawn(async move {
                    // A program that exits early closes the pipe; its exit
                    // status is what matters, not the write error.
                    let _ = pipe.write_all(&data).await;
                    let _ = pipe.shutdown().await;
                }))
            }
            _ => None,
        };
        let result = tokio::time::timeout(self.cfg.timeout, child.wait_with_output()).await;
        if let Some(writer) = writer {
            writer.abort();
        }
        match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(AudioError::Failed(format!("waiting for espeak-ng: {e}"))),
            Err(_) => Err(AudioError::Timeout),
        }
    }
}

fn stderr_text(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).trim().to_string()
}

/// Voice ids are file-ish names with optional `+variant`; anything else is
/// rejected before it reaches the command line.
fn valid_voice_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/'))
}

/// Parses the table printed by `espeak-ng --voices`.
///
/// MBROLA voices (`mb/...` files) are skipped because they need separately
/// installed voice data; the first entry for a language id wins.
pub fn parse_voices(output: &str) -> Vec<LocalVoice> {
    let mut voices: Vec<LocalVoice> = Vec::new();
    for line in output.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Pty Language Age/Gender VoiceName File [Other Languages...]
        if cols.len() < 5 || cols[0].parse::<u32>().is_err() {
            continue;
        }
        let (id, age_gender, name, file) = (cols[1], cols[2], cols[3], cols[4]);
        if file.starts_with("mb/") || voices.iter().any(|v| v.id == id) {
            continue;
        }
        let gender = match age_gender.rsplit('/').next() {
            Some("M") => Some("Male".to_string()),
            Some("F") => Some("Female".to_string()),
            _ => None,
        };
        voices.push(LocalVoice {
            id: id.to_string(),
            name: name.replace('_', " "),
            language: bcp47(id),
            gender,
        });
    }
    voices
}

/// `en-us` → `en-US`, `sr-latn` → `sr-Latn`, `chr-US-Qaaa-x-west` kept
/// apart from casing of the region/script subtags.
fn bcp47(id: &str) -> String {
    let mut out = Vec::new();
    let mut private = false;
    for (i, part) in id.split('-').enumerate() {
        if part.eq_ignore_ascii_case("x") {
            private = true;
        }
        let p = if i == 0 || private {
            part.to_ascii_lowercase()
        } else if part.len() == 2 && part.chars().all(|c| c.is_ascii_alphabetic()) {
            part.to_ascii_uppercase()
        } else if part.len() == 4 && part.chars().all(|c| c.is_ascii_alphabetic()) {
            let lower = part.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        } else {
            part.to_ascii_lowercase()
        };
        out.push(p);
    }
    out.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_get_bcp47_casing() {
        assert_eq!(bcp47("en-us"), "en-US");
        assert_eq!(bcp47("de"), "de");
        assert_eq!(bcp47("sr-latn"), "sr-Latn");
        assert_eq!(bcp47("en-gb-x-rp"), "en-GB-x-rp");
    }

    #[test]
    fn voice_ids_that_look_like_options_are_rejected() {
        assert!(valid_voice_id("en-us"));
        assert!(valid_voice_id("en-us+f3"));
        assert!(!valid_voice_id("--help"));
        assert!(!valid_voice_id("en us"));
        assert!(!valid_voice_id(""));
    }
}
