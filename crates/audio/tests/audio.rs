//! Behaviour of the local speech pipeline: espeak-ng as a subprocess, WAV to
//! MP3, duration estimates and speech-mark estimates.
//!
//! Tests that run the real `espeak-ng` need it installed
//! (`apt-get install -y espeak-ng`); fake programs are small shell scripts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use voxgate_audio::*;

fn espeak() -> Espeak {
    Espeak::new(EspeakConfig {
        program: PathBuf::from("espeak-ng"),
        timeout: Duration::from_secs(30),
        max_concurrency: 2,
    })
}

fn wav_duration(wav: &[u8]) -> Duration {
    decode_wav(wav)
        .expect("espeak-ng output is a WAV")
        .duration()
}

/// Writes an executable shell script standing in for espeak-ng.
fn fake_program(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxgate-audio-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A freshly written script can briefly be "text file busy" while another
/// test thread forks; retry that specific failure.
async fn synth_retrying_busy(e: &Espeak, text: &str) -> Result<Vec<u8>, AudioError> {
    for _ in 0..20 {
        match e.synthesize_wav("en-us", text, 175).await {
            Err(AudioError::Failed(msg)) if msg.contains("busy") => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => return other,
        }
    }
    e.synthesize_wav("en-us", text, 175).await
}

#[test]
fn sine_wave_wav_encodes_to_mp3_of_the_same_length() {
    let pcm = tone(Duration::from_secs(2), 22050, 440.0);
    let wav = pcm_to_wav(&pcm).unwrap();
    let mp3 = wav_to_mp3(&wav, 48).unwrap();
    assert!(mp3.len() > 1000, "mp3 is {} bytes", mp3.len());
    let est = mp3_duration_estimate(&mp3).expect("frames found");
    // LAME adds up to a couple of frames of encoder delay/padding.
    assert!((est.as_secs_f64() - 2.0).abs() < 0.15, "estimated {est:?}");

    let stereo = Pcm {
        samples: pcm.samples.iter().flat_map(|&s| [s, s / 2]).collect(),
        channels: 2,
        sample_rate: 22050,
    };
    let mp3 = wav_to_mp3(&pcm_to_wav(&stereo).unwrap(), 64).unwrap();
    let est = mp3_duration_estimate(&mp3).unwrap();
    assert!(
        (est.as_secs_f64() - 2.0).abs() < 0.15,
        "stereo estimated {est:?}"
    );
}

#[test]
fn sox_agrees_with_the_mp3_duration_when_installed() {
    let Ok(status) = std::process::Command::new("sox").arg("--version").output() else {
        eprintln!("sox not installed; cross-check covered by mp3_duration_estimate only");
        return;
    };
    assert!(status.status.success());
    let wav = pcm_to_wav(&tone(Duration::from_millis(1500), 22050, 440.0)).unwrap();
    let mp3 = wav_to_mp3(&wav, 48).unwrap();
    let path = std::env::temp_dir().join(format!("voxgate-audio-sox-{}.mp3", std::process::id()));
    std::fs::write(&path, &mp3).unwrap();
    let out = std::process::Command::new("sox")
        .arg(&path)
        .args(["-n", "stat"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let report = String::from_utf8_lossy(&out.stderr);
    if report.contains("no handler for file extension") || report.contains("FAIL") {
        panic!("sox cannot read mp3 (install libsox-fmt-mp3): {report}");
    }
    let length: f64 = report
        .lines()
        .find_map(|l| l.strip_prefix("Length (seconds):"))
        .expect("sox stat prints a length")
        .trim()
        .parse()
        .unwrap();
    assert!((length - 1.5).abs() < 0.15, "sox says {length}s");
    let est = mp3_duration_estimate(&mp3).unwrap().as_secs_f64();
    assert!(
        (length - est).abs() < 0.1,
        "sox {length}s vs estimate {est}s"
    );
}

#[test]
fn voices_are_parsed_from_espeak_ng_listing() {
    let listing = "\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  af              --/M      Afrikaans          gmw/af
 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 3  en-uk           --/M      english-mb-en1     mb/mb-en1            (en-gb 3)(en 2)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  en-us           --/F      us-mbrola-1        mb/mb-us1            (en 8)
 5  sr-latn         --/F      Serbian            zls/sr
 5  de              --/-      German             gmw/de
";
    let voices = parse_voices(listing);
    let ids: Vec<&str> = voices.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        ["af", "en-gb", "en-us", "sr-latn", "de"],
        "mbrola voices are skipped"
    );
    let us = &voices[2];
    assert_eq!(us.name, "English (America)");
    assert_eq!(us.language, "en-US");
    assert_eq!(us.gender.as_deref(), Some("Male"));
    assert_eq!(voices[3].language, "sr-Latn");
    assert_eq!(voices[3].gender.as_deref(), Some("Female"));
    assert_eq!(voices[4].gender, None);
}

#[tokio::test]
async fn installed_espeak_lists_american_english() {
    let e = espeak();
    assert!(
        e.is_available().await,
        "espeak-ng must be installed for this test"
    );
    let voices = e.voices().await.unwrap();
    assert!(
        voices
            .iter()
            .any(|v| v.id == "en-us" && v.language == "en-US"),
        "{voices:?}"
    );
}

#[tokio::test]
async fn plain_text_is_synthesized_to_a_wav() {
    let wav = espeak()
        .synthesize_wav("en-us", "Hello from voxgate.", 175)
        .await
        .unwrap();
    let d = wav_duration(&wav);
    assert!(
        d > Duration::from_millis(500) && d < Duration::from_secs(5),
        "{d:?}"
    );
    let mp3 = wav_to_mp3(&wav, 48).unwrap();
    let est = mp3_duration_estimate(&mp3).unwrap();
    assert!(
        (est.as_secs_f64() - d.as_secs_f64()).abs() < 0.15,
        "{est:?} vs {d:?}"
    );
}

#[tokio::test]
async fn ssml_looking_text_is_spoken_literally_not_obeyed() {
    let e = espeak();
    let markup = r#"</speak><speak><break time="10s"/>"#;
    let wav = e.synthesize_wav("en-us", markup, 175).await.unwrap();
    let d = wav_duration(&wav);
    // Obeying the break would add ten seconds of silence.
    assert!(d < Duration::from_secs(8), "markup produced {d:?} of audio");
    assert!(d > Duration::from_millis(100), "markup produced no audio");
}

#[tokio::test]
async fn text_starting_with_dashes_is_spoken_not_parsed_as_an_option() {
    let wav = espeak()
        .synthesize_wav("en-us", "--help -v xx", 175)
        .await
        .unwrap();
    // `--help` as an option would print usage text instead of a WAV.
    assert_eq!(&wav[0..4], b"RIFF");
    assert!(wav_duration(&wav) > Duration::from_millis(300));
}

#[tokio::test]
async fn unknown_voice_is_reported_as_such() {
    let e = espeak();
    let err = e
        .synthesize_wav("xx-nonexistent", "hello", 175)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AudioError::UnknownVoice(ref v) if v == "xx-nonexistent"),
        "{err:?}"
    );
    let err = e
        .synthesize_wav("--voices", "hello", 175)
        .await
        .unwrap_err();
    assert!(matches!(err, AudioError::UnknownVoice(_)), "{err:?}");
}

#[tokio::test]
async fn missing_program_is_not_installed() {
    let e = Espeak::new(EspeakConfig {
        program: PathBuf::from("/nonexistent/espeak-ng"),
        timeout: Duration::from_secs(5),
        max_concurrency: 1,
    });
    assert!(!e.is_available().await);
    assert!(matches!(
        e.synthesize_wav("en-us", "hello", 175).await,
        Err(AudioError::NotInstalled)
    ));
    assert!(matches!(e.voices().await, Err(AudioError::NotInstalled)));
}

#[tokio::test]
async fn slow_program_times_out_and_is_killed() {
    let e = Espeak::new(EspeakConfig {
        program: fake_program("sleepy", "exec sleep 10"),
        timeout: Duration::from_millis(300),
        max_concurrency: 1,
    });
    let started = Instant::now();
    let err = synth_retrying_busy(&e, "hello").await.unwrap_err();
    assert!(matches!(err, AudioError::Timeout), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn failing_program_reports_its_stderr() {
    let e = Espeak::new(EspeakConfig {
        program: fake_program("broken", "echo 'synth exploded' >&2; exit 3"),
        timeout: Duration::from_secs(5),
        max_concurrency: 1,
    });
    let err = synth_retrying_busy(&e, "hello").await.unwrap_err();
    assert!(
        matches!(err, AudioError::Failed(ref m) if m.contains("synth exploded")),
        "{err:?}"
    );
}

#[tokio::test]
async fn text_reaches_the_program_on_stdin_not_argv() {
    let record = std::env::temp_dir().join(format!("voxgate-audio-argv-{}", std::process::id()));
    let script = format!(
        "printf '%s\\n' \"$@\" > '{0}.args'; cat > '{0}.stdin'; exit 1",
        record.display()
    );
    let e = Espeak::new(EspeakConfig {
        program: fake_program("recorder", &script),
        timeout: Duration::from_secs(5),
        max_concurrency: 1,
    });
    let text = "--help <speak>secret words</speak>";
    let _ = synth_retrying_busy(&e, text).await;
    let args = std::fs::read_to_string(format!("{}.args", record.display())).unwrap();
    let stdin = std::fs::read_to_string(format!("{}.stdin", record.display())).unwrap();
    assert_eq!(stdin, text);
    assert!(!args.contains("secret"), "text leaked into argv: {args}");
    let args: Vec<&str> = args.lines().collect();
    assert!(
        args.contains(&"--stdin") && args.contains(&"--stdout"),
        "{args:?}"
    );
    assert!(
        !args.contains(&"-m"),
        "SSML interpretation must stay off: {args:?}"
    );
}

#[tokio::test]
async fn concurrency_is_bounded_by_the_semaphore() {
    let e = Espeak::new(EspeakConfig {
        program: fake_program("slow-ok", "sleep 0.3; exit 1"),
        timeout: Duration::from_secs(5),
        max_concurrency: 1,
    });
    // Warm up so a "text file busy" retry does not skew the timing.
    let _ = synth_retrying_busy(&e, "x").await;
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        e.synthesize_wav("en-us", "a", 175),
        e.synthesize_wav("en-us", "b", 175),
        e.synthesize_wav("en-us", "c", 175)
    );
    assert!(a.is_err() && b.is_err() && c.is_err());
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "ran in parallel: {:?}",
        started.elapsed()
    );
}

#[test]
fn speech_marks_are_monotonic_and_cover_every_word_with_byte_offsets() {
    let text = "Héllo wörld, this is voxgate!  Ça va? Yes... \"quoted\" end";
    let marks = estimate_speech_marks(text, Duration::from_millis(4000));
    let expected_words = [
        "Héllo", "wörld", "this", "is", "voxgate", "Ça", "va", "Yes", "quoted", "end",
    ];
    let words: Vec<&SpeechMark> = marks.iter().filter(|m| m.kind == "word").collect();
    assert_eq!(
        words.iter().map(|m| m.value.as_str()).collect::<Vec<_>>(),
        expected_words
    );
    for m in &marks {
        assert_eq!(&text[m.start..m.end], m.value, "offsets of {m:?}");
        assert!(m.time_ms < 4000);
    }
    assert!(
        marks.windows(2).all(|w| w[0].time_ms <= w[1].time_ms),
        "not monotonic: {marks:?}"
    );
    let sentences: Vec<&str> = marks
        .iter()
        .filter(|m| m.kind == "sentence")
        .map(|m| m.value.as_str())
        .collect();
    assert_eq!(
        sentences,
        [
            "Héllo wörld, this is voxgate!",
            "Ça va?",
            "Yes...",
            "\"quoted\" end"
        ]
    );
    assert_eq!(marks[0].time_ms, 0);
    // Word marks inside a sentence start no earlier than the sentence mark.
    assert_eq!(marks[0].kind, "sentence");
    assert_eq!(marks[1].start, marks[0].start);
    // Multi-byte characters are counted in bytes, as Polly does.
    assert_eq!(words[1].start, "Héllo ".len());
    // Longer words take longer.
    let gap = |i: usize| words[i + 1].time_ms - words[i].time_ms;
    assert!(gap(4) > gap(3), "voxgate should take longer than 'is'");
}

#[tokio::test]
async fn speech_marks_fit_the_real_synthesized_duration() {
    let text = "The quick brown fox. It jumps over the lazy dog.";
    let wav = espeak().synthesize_wav("en-us", text, 175).await.unwrap();
    let d = wav_duration(&wav);
    let marks = estimate_speech_marks(text, d);
    assert_eq!(marks.iter().filter(|m| m.kind == "sentence").count(), 2);
    assert!(marks.last().unwrap().time_ms < d.as_millis() as u64);
}
