//! The stand-in as seen by the real `aws-sdk-polly` client: requests are
//! signed by the SDK, responses and errors are parsed by the SDK's own
//! deserializers and retry classifiers.

use std::time::{Duration, Instant};

use aws_sdk_polly::Client;
use aws_sdk_polly::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_polly::config::retry::RetryConfig;
use aws_sdk_polly::config::timeout::TimeoutConfig;
use aws_sdk_polly::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_polly::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_polly::operation::describe_voices::DescribeVoicesError;
use aws_sdk_polly::operation::synthesize_speech::{SynthesizeSpeechError, SynthesizeSpeechOutput};
use aws_sdk_polly::primitives::{ByteStream, SdkBody};
use aws_sdk_polly::types::{Engine, LanguageCode, OutputFormat, SpeechMarkType, TextType, VoiceId};
use polly_standin::{PollyConfig, PollyStandin};

const KEY_ID: &str = "AKIDVOXGATETEST";
const SECRET: &str = "voxgate-test-secret";

async fn standin() -> PollyStandin {
    PollyStandin::start(PollyConfig::default())
        .await
        .expect("stand-in starts")
}

fn config(s: &PollyStandin, secret: &str, retry: RetryConfig) -> aws_sdk_polly::config::Builder {
    aws_sdk_polly::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(s.endpoint_url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            KEY_ID,
            secret,
            None,
            None,
            "protocol-tests",
        ))
        .retry_config(retry)
}

/// A client that does not retry, so every fault is seen as it is.
fn client(s: &PollyStandin) -> Client {
    Client::from_conf(config(s, SECRET, RetryConfig::disabled()).build())
}

/// A client in standard retry mode with short backoffs.
fn retrying_client(s: &PollyStandin, attempts: u32) -> Client {
    let retry = RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20));
    Client::from_conf(config(s, SECRET, retry).build())
}

/// Reads a streamed body, returning its chunks as received.
async fn chunks(
    mut stream: ByteStream,
) -> Result<Vec<bytes::Bytes>, aws_sdk_polly::primitives::ByteStreamError> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.try_next().await? {
        out.push(chunk);
    }
    Ok(out)
}

async fn speak(
    c: &Client,
    voice: VoiceId,
    text: &str,
) -> Result<SynthesizeSpeechOutput, SdkError<SynthesizeSpeechError>> {
    c.synthesize_speech()
        .voice_id(voice)
        .output_format(OutputFormat::Mp3)
        .text(text)
        .send()
        .await
}

fn status<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// A speech-marks request (`OutputFormat::Json`) in `voice`.
fn marks_request(
    s: &PollyStandin,
    voice: VoiceId,
) -> aws_sdk_polly::operation::synthesize_speech::builders::SynthesizeSpeechFluentBuilder {
    client(s)
        .synthesize_speech()
        .voice_id(voice)
        .output_format(OutputFormat::Json)
}

/// The JSON lines of a speech-marks response.
async fn json_lines(
    out: aws_sdk_polly::operation::synthesize_speech::SynthesizeSpeechOutput,
) -> Vec<serde_json::Value> {
    let body = out.audio_stream.collect().await.unwrap().into_bytes();
    std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Sends a request that Polly must refuse with `$variant`; the error.
macro_rules! refused {
    ($request:expr, $variant:ident) => {{
        let e = $request.send().await.unwrap_err();
        assert!(
            matches!(
                e.as_service_error(),
                Some(SynthesizeSpeechError::$variant(_))
            ),
            "{e:?}"
        );
        e
    }};
}

/// [`refused!`] for a `speak(…)` call.
macro_rules! refused_speaking {
    ($call:expr, $variant:ident) => {{
        let e = $call.await.unwrap_err();
        assert!(
            matches!(
                e.as_service_error(),
                Some(SynthesizeSpeechError::$variant(_))
            ),
            "{e:?}"
        );
        e
    }};
}

#[tokio::test]
async fn synthesize_mp3_streams_decodable_audio_and_reports_billed_characters() {
    let s = standin().await;
    s.set_chunk_delay(Duration::from_millis(10));
    let text = "Hello from the voxgate Polly stand-in. This sentence is long enough to span several chunks.";
    let out = speak(&client(&s), VoiceId::Joanna, text).await.unwrap();
    assert_eq!(out.content_type(), Some("audio/mpeg"));
    assert_eq!(out.request_characters(), text.chars().count() as i32);
    let parts = chunks(out.audio_stream).await.unwrap();
    assert!(parts.len() > 1, "body arrived in {} chunk(s)", parts.len());
    let mp3 = parts.concat();
    let d = voxgate_audio::mp3_duration_estimate(&mp3).expect("body is MPEG audio");
    assert!(
        d > Duration::from_secs(2) && d < Duration::from_secs(15),
        "duration {d:?}"
    );
    assert_eq!(s.synth_calls(), 1);
    assert_eq!(s.billed_characters(), text.chars().count() as u64);
    s.shutdown().await;
}

#[tokio::test]
async fn mp3_sample_rate_follows_engine_default_and_request() {
    let s = standin().await;
    let c = client(&s);
    let frame_rate = |mp3: &[u8]| -> u32 {
        // MPEG-2 layer III sample rate index → 22050/24000/16000.
        let i = mp3.iter().position(|&b| b == 0xFF).unwrap();
        [22050, 24000, 16000][usize::from((mp3[i + 2] >> 2) & 3)]
    };
    let standard = speak(&c, VoiceId::Matthew, "Rate check.").await.unwrap();
    let standard = standard.audio_stream.collect().await.unwrap().into_bytes();
    assert_eq!(frame_rate(&standard), 22050);
    let neural = c
        .synthesize_speech()
        .engine(Engine::Neural)
        .voice_id(VoiceId::Matthew)
        .output_format(OutputFormat::Mp3)
        .text("Rate check.")
        .send()
        .await
        .unwrap();
    assert_eq!(
        frame_rate(&neural.audio_stream.collect().await.unwrap().into_bytes()),
        24000
    );
    let low = c
        .synthesize_speech()
        .voice_id(VoiceId::Matthew)
        .output_format(OutputFormat::Mp3)
        .sample_rate("16000")
        .text("Rate check.")
        .send()
        .await
        .unwrap();
    assert_eq!(
        frame_rate(&low.audio_stream.collect().await.unwrap().into_bytes()),
        16000
    );
    s.shutdown().await;
}

#[tokio::test]
async fn ssml_is_billed_without_tags() {
    let s = standin().await;
    let ssml = r#"<speak>Hello <break time="300ms"/><emphasis>world</emphasis>.</speak>"#;
    let out = client(&s)
        .synthesize_speech()
        .voice_id(VoiceId::Amy)
        .output_format(OutputFormat::Mp3)
        .text_type(TextType::Ssml)
        .text(ssml)
        .send()
        .await
        .unwrap();
    assert_eq!(out.request_characters(), "Hello world.".len() as i32);
    let mp3 = out.audio_stream.collect().await.unwrap().into_bytes();
    assert!(voxgate_audio::mp3_duration_estimate(&mp3).unwrap() > Duration::from_millis(300));
    s.shutdown().await;
}

#[tokio::test]
async fn pcm_is_raw_16bit_at_the_requested_rate() {
    let s = standin().await;
    let c = client(&s);
    let text = "Raw samples please.";
    let pcm = |rate: Option<&'static str>| {
        let mut b = c
            .synthesize_speech()
            .voice_id(VoiceId::Brian)
            .output_format(OutputFormat::Pcm)
            .text(text);
        if let Some(r) = rate {
            b = b.sample_rate(r);
        }
        b.send()
    };
    let wide = pcm(None).await.unwrap();
    assert_eq!(wide.content_type(), Some("audio/pcm"));
    let wide = wide.audio_stream.collect().await.unwrap().into_bytes();
    let narrow = pcm(Some("8000"))
        .await
        .unwrap()
        .audio_stream
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(wide.len() % 2, 0);
    let secs = wide.len() as f64 / 2.0 / 16000.0;
    assert!(secs > 0.5 && secs < 6.0, "{secs}s at 16 kHz");
    let ratio = wide.len() as f64 / narrow.len() as f64;
    assert!(
        (ratio - 2.0).abs() < 0.01,
        "16 kHz is twice 8 kHz, got ratio {ratio}"
    );
    assert!(
        wide.chunks_exact(2)
            .any(|s| i16::from_le_bytes([s[0], s[1]]).abs() > 1000),
        "not silence"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn speech_marks_are_json_lines_with_byte_offsets() {
    let s = standin().await;
    let text = "Mary had a little lamb. Its fleece was white as snow.";
    let out = marks_request(&s, VoiceId::Joanna)
        .speech_mark_types(SpeechMarkType::Sentence)
        .speech_mark_types(SpeechMarkType::Word)
        .text(text)
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_type(), Some("application/x-json-stream"));
    let marks = json_lines(out).await;
    let first = &marks[0];
    assert_eq!(first["type"], "sentence");
    assert_eq!(first["time"], 0);
    assert_eq!(first["start"], 0);
    assert_eq!(first["end"], 23);
    assert_eq!(first["value"], "Mary had a little lamb.");
    let words: Vec<&serde_json::Value> = marks.iter().filter(|m| m["type"] == "word").collect();
    assert_eq!(words.len(), 11);
    for w in &words {
        let (a, b) = (
            w["start"].as_u64().unwrap() as usize,
            w["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(&text[a..b], w["value"].as_str().unwrap());
    }
    let times: Vec<u64> = marks.iter().map(|m| m["time"].as_u64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times go backwards: {times:?}"
    );
    assert_eq!(marks.iter().filter(|m| m["type"] == "sentence").count(), 2);
    s.shutdown().await;
}

#[tokio::test]
async fn ssml_speech_marks_point_into_the_ssml_text() {
    let s = standin().await;
    let ssml = r#"<speak>Fish &amp; chips <mark name="here"/>today.</speak>"#;
    let out = marks_request(&s, VoiceId::Emma)
        .text_type(TextType::Ssml)
        .speech_mark_types(SpeechMarkType::Word)
        .speech_mark_types(SpeechMarkType::Ssml)
        .text(ssml)
        .send()
        .await
        .unwrap();
    let marks = json_lines(out).await;
    let words: Vec<&str> = marks
        .iter()
        .filter(|m| m["type"] == "word")
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["Fish", "chips", "today"]);
    for m in marks.iter().filter(|m| m["type"] == "word") {
        let (a, b) = (
            m["start"].as_u64().unwrap() as usize,
            m["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(&ssml[a..b], m["value"].as_str().unwrap());
    }
    let mark = marks
        .iter()
        .find(|m| m["type"] == "ssml")
        .expect("ssml mark");
    assert_eq!(mark["value"], "here");
    s.shutdown().await;
}

#[tokio::test]
async fn describe_voices_lists_and_filters_the_catalogue() {
    let s = standin().await;
    let c = client(&s);
    let all = c.describe_voices().send().await.unwrap();
    let all = all.voices();
    for id in [
        "Joanna", "Matthew", "Ivy", "Kendra", "Salli", "Joey", "Justin", "Kevin", "Amy", "Brian",
        "Emma", "Hans", "Marlene", "Vicki", "Celine", "Mathieu", "Lea", "Conchita", "Enrique",
        "Lucia", "Mizuki", "Takumi",
    ] {
        assert!(
            all.iter().any(|v| v.id().map(|i| i.as_str()) == Some(id)),
            "{id} missing"
        );
    }
    let kevin = all
        .iter()
        .find(|v| v.id() == Some(&VoiceId::Kevin))
        .unwrap();
    assert_eq!(kevin.supported_engines(), [Engine::Neural]);
    assert_eq!(kevin.language_code(), Some(&LanguageCode::EnUs));
    assert_eq!(kevin.language_name(), Some("US English"));

    let neural = c
        .describe_voices()
        .engine(Engine::Neural)
        .send()
        .await
        .unwrap();
    assert!(
        neural
            .voices()
            .iter()
            .all(|v| v.supported_engines().contains(&Engine::Neural))
    );
    assert!(
        !neural
            .voices()
            .iter()
            .any(|v| v.id() == Some(&VoiceId::Celine)),
        "Celine is standard only"
    );

    let gb = c
        .describe_voices()
        .language_code(LanguageCode::EnGb)
        .send()
        .await
        .unwrap();
    let mut gb: Vec<&str> = gb
        .voices()
        .iter()
        .map(|v| v.id().unwrap().as_str())
        .collect();
    gb.sort();
    assert_eq!(gb, ["Amy", "Arthur", "Brian", "Emma"]);

    let hindi = c
        .describe_voices()
        .language_code(LanguageCode::HiIn)
        .send()
        .await
        .unwrap();
    assert!(hindi.voices().is_empty(), "no voice is primarily Hindi");
    let bilingual = c
        .describe_voices()
        .language_code(LanguageCode::HiIn)
        .include_additional_language_codes(true)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = bilingual
        .voices()
        .iter()
        .map(|v| v.id().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["Aditi", "Kajal"]);
    assert_eq!(
        bilingual.voices()[0].additional_language_codes(),
        [LanguageCode::HiIn]
    );
    assert_eq!(s.voices_calls(), 5);

    let err = c
        .describe_voices()
        .next_token("bogus")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(DescribeVoicesError::InvalidNextTokenException(_))
    ));
    s.shutdown().await;
}

#[tokio::test]
async fn validation_failures_arrive_as_typed_sdk_errors() {
    let s = standin().await;
    let c = client(&s);
    let base = || {
        c.synthesize_speech()
            .voice_id(VoiceId::Joanna)
            .output_format(OutputFormat::Mp3)
    };

    let e = base().text("a".repeat(3001)).send().await.unwrap_err();
    assert!(
        matches!(
            e.as_service_error(),
            Some(SynthesizeSpeechError::TextLengthExceededException(_))
        ),
        "{e:?}"
    );
    assert_eq!(status(&e), Some(400));
    // 3000 billed characters wrapped in tags beyond 6000 total is also too long.
    let heavy = format!("<speak>{}</speak>", "<s>a</s>".repeat(800));
    refused!(
        base().text_type(TextType::Ssml).text(heavy),
        TextLengthExceededException
    );
    // ...while 3000 billed characters in plain text are fine.
    base()
        .text("a ".repeat(1500))
        .send()
        .await
        .expect("3000 characters are allowed");

    let e = base()
        .text_type(TextType::Ssml)
        .text("<speak>unclosed")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.as_service_error(),
            Some(SynthesizeSpeechError::InvalidSsmlException(_))
        ),
        "{e:?}"
    );
    assert!(e.message().unwrap_or_default().contains("SSML"));

    refused!(
        base().speech_mark_types(SpeechMarkType::Word).text("hi"),
        MarksNotSupportedForFormatException
    );

    refused!(
        c.synthesize_speech()
            .voice_id(VoiceId::Joanna)
            .output_format(OutputFormat::Json)
            .speech_mark_types(SpeechMarkType::Ssml)
            .text("hi"),
        SsmlMarksNotSupportedForTextTypeException
    );

    refused!(
        base().sample_rate("44100").text("hi"),
        InvalidSampleRateException
    );
    refused!(
        c.synthesize_speech()
            .voice_id(VoiceId::Joanna)
            .output_format(OutputFormat::Pcm)
            .sample_rate("22050")
            .text("hi"),
        InvalidSampleRateException
    );

    // Kevin is a neural-only voice; the default engine is standard.
    refused_speaking!(speak(&c, VoiceId::Kevin, "hi"), EngineNotSupportedException);
    refused!(
        c.synthesize_speech()
            .engine(Engine::LongForm)
            .voice_id(VoiceId::Joanna)
            .output_format(OutputFormat::Mp3)
            .text("hi"),
        EngineNotSupportedException
    );

    refused!(
        base().language_code(LanguageCode::DeDe).text("hi"),
        LanguageNotSupportedException
    );

    let e = refused!(
        base().lexicon_names("missing").text("hi"),
        LexiconNotFoundException
    );
    assert_eq!(status(&e), Some(404));

    // Not modelled for SynthesizeSpeech: the SDK surfaces the code.
    let e = speak(&c, VoiceId::from("Nobody"), "hi").await.unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
    assert!(
        e.message().unwrap().contains("voiceId"),
        "{:?}",
        e.message()
    );
    assert_eq!(status(&e), Some(400));

    let e = c
        .synthesize_speech()
        .voice_id(VoiceId::Joanna)
        .output_format(OutputFormat::OggVorbis)
        .text("hi")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
    assert!(e.message().unwrap().contains("ogg_vorbis"));

    assert_eq!(
        s.billed_characters(),
        3000,
        "only the successful call is billed"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn throttling_is_classified_by_the_sdk_and_retried_in_standard_mode() {
    let s = standin().await;
    s.throttle_next(1);
    let e = speak(&client(&s), VoiceId::Joanna, "hi").await.unwrap_err();
    assert_eq!(e.code(), Some("ThrottlingException"));
    assert_eq!(status(&e), Some(400));
    assert_eq!(s.synth_calls(), 1, "retries disabled: one call");

    s.throttle_next(2);
    let out = speak(&retrying_client(&s, 3), VoiceId::Joanna, "hi")
        .await
        .expect("third attempt succeeds");
    assert_eq!(out.request_characters(), 2);
    assert_eq!(
        s.synth_calls(),
        4,
        "two throttled attempts and a successful one"
    );

    s.throttle_next(5);
    let e = speak(&retrying_client(&s, 2), VoiceId::Joanna, "hi")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ThrottlingException"));
    assert_eq!(s.synth_calls(), 6, "gives up after max attempts");
    s.shutdown().await;
}

#[tokio::test]
async fn service_failures_are_typed_and_retried() {
    let s = standin().await;
    s.fail_next(1, 500);
    let e = refused_speaking!(
        speak(&client(&s), VoiceId::Salli, "hi"),
        ServiceFailureException
    );
    assert_eq!(status(&e), Some(500));

    s.fail_next(1, 503);
    speak(&retrying_client(&s, 3), VoiceId::Salli, "hi")
        .await
        .expect("retried after 503");
    assert_eq!(s.synth_calls(), 3);

    s.fail_next(1, 500);
    let e = client(&s).describe_voices().send().await.unwrap_err();
    assert!(matches!(
        e.as_service_error(),
        Some(DescribeVoicesError::ServiceFailureException(_))
    ));
    s.reset_faults();
    client(&s)
        .describe_voices()
        .send()
        .await
        .expect("faults cleared");
    s.shutdown().await;
}

/// Rewrites the body after the SDK has signed the request.
#[derive(Debug)]
struct TamperBody;

impl Intercept for TamperBody {
    fn name(&self) -> &'static str {
        "TamperBody"
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let req = ctx.request_mut();
        let body = req
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let tampered = body.replace("pay me", "pay ME");
        assert_ne!(body, tampered, "the body was not tampered with");
        *req.body_mut() = SdkBody::from(tampered);
        Ok(())
    }
}

#[tokio::test]
async fn requests_signed_by_the_sdk_pass_and_tampered_or_wrongly_signed_ones_fail() {
    let s = standin().await;
    speak(&client(&s), VoiceId::Joanna, "pay me")
        .await
        .expect("a genuine SDK signature verifies");

    let tampering = Client::from_conf(
        config(&s, SECRET, RetryConfig::disabled())
            .interceptor(TamperBody)
            .build(),
    );
    let e = speak(&tampering, VoiceId::Joanna, "pay me")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidSignatureException"));
    assert_eq!(status(&e), Some(403));
    assert!(
        e.message()
            .unwrap()
            .contains("signature we calculated does not match")
    );

    let wrong_secret =
        Client::from_conf(config(&s, "not-the-secret", RetryConfig::disabled()).build());
    let e = speak(&wrong_secret, VoiceId::Joanna, "hi")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidSignatureException"));

    let unknown_key = Client::from_conf(
        config(&s, SECRET, RetryConfig::disabled())
            .credentials_provider(Credentials::new("AKIDSOMEONEELSE", SECRET, None, None, "t"))
            .build(),
    );
    let e = unknown_key.describe_voices().send().await.unwrap_err();
    assert_eq!(e.code(), Some("UnrecognizedClientException"));
    assert_eq!(status(&e), Some(403));

    let wrong_region = Client::from_conf(
        config(&s, SECRET, RetryConfig::disabled())
            .region(Region::new("eu-west-1"))
            .build(),
    );
    let e = wrong_region.describe_voices().send().await.unwrap_err();
    assert_eq!(e.code(), Some("InvalidSignatureException"));

    assert_eq!(
        s.synth_calls(),
        1,
        "rejected requests never reach the operation"
    );
    assert_eq!(s.voices_calls(), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn unsigned_requests_get_missing_authentication_token() {
    let s = standin().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/speech", s.endpoint_url()))
        .header("content-type", "application/json")
        .body(r#"{"OutputFormat":"mp3","Text":"hi","VoiceId":"Joanna"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let code = resp.headers()["x-amzn-errortype"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        code.starts_with("MissingAuthenticationTokenException"),
        "{code}"
    );
    assert!(resp.headers().contains_key("x-amzn-requestid"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Missing Authentication Token");
    s.shutdown().await;
}

#[tokio::test]
async fn slow_first_byte_delays_the_response_and_trips_client_timeouts() {
    let s = standin().await;
    s.set_first_byte_delay(Duration::from_millis(400));
    let started = Instant::now();
    client(&s).describe_voices().send().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    let impatient = Client::from_conf(
        config(&s, SECRET, RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(150))
                    .build(),
            )
            .build(),
    );
    let e = speak(&impatient, VoiceId::Joanna, "hi").await.unwrap_err();
    assert!(matches!(e, SdkError::TimeoutError(_)), "{e:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn slow_stream_spaces_out_chunks() {
    let s = PollyStandin::start(PollyConfig {
        chunk_size: 1024,
        ..PollyConfig::default()
    })
    .await
    .unwrap();
    s.set_chunk_delay(Duration::from_millis(60));
    let out = speak(
        &client(&s),
        VoiceId::Ivy,
        "A few seconds of speech to stream slowly.",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let parts = chunks(out.audio_stream).await.unwrap();
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let expected_chunks = total.div_ceil(1024);
    assert!(expected_chunks >= 4, "only {total} bytes");
    let min = Duration::from_millis(60 * (expected_chunks as u64 - 2));
    assert!(
        started.elapsed() >= min,
        "{:?} < {min:?}",
        started.elapsed()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn cut_stream_surfaces_as_a_body_error_after_partial_audio() {
    let s = standin().await;
    s.cut_stream_after(Some(5000));
    let text =
        "This reply is long enough that its audio is well over five thousand bytes of MP3 data.";
    let out = speak(&client(&s), VoiceId::Joanna, text)
        .await
        .expect("headers arrive before the cut");
    let mut stream = out.audio_stream;
    let mut received = 0;
    let err = loop {
        match stream.try_next().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => panic!("stream ended cleanly after {received} bytes"),
            Err(e) => break e,
        }
    };
    assert!(received <= 5000, "{received} bytes before the cut");
    assert!(!err.to_string().is_empty());

    s.cut_stream_after(None);
    let out = speak(&client(&s), VoiceId::Joanna, text).await.unwrap();
    let whole = out.audio_stream.collect().await.unwrap().into_bytes();
    assert!(whole.len() > 5000);
    s.shutdown().await;
}

#[tokio::test]
async fn control_endpoint_reports_counters_and_injects_faults() {
    let s = PollyStandin::start(PollyConfig {
        control_endpoint: true,
        ..PollyConfig::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/_standin/{p}", s.endpoint_url());
    let set = http
        .post(url("faults"))
        .json(&serde_json::json!({"throttle_next": 1, "cut_stream_after": null}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    let c = client(&s);
    assert_eq!(
        speak(&c, VoiceId::Joanna, "one").await.unwrap_err().code(),
        Some("ThrottlingException")
    );
    speak(&c, VoiceId::Joanna, "two").await.unwrap();
    c.describe_voices().send().await.unwrap();
    let stats: serde_json::Value = http
        .get(url("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["counters"]["synth_calls"], 2);
    assert_eq!(stats["counters"]["billed_characters"], 3);
    assert_eq!(stats["counters"]["voices_calls"], 1);

    http.post(url("faults"))
        .json(&serde_json::json!({"fail_next": 3}))
        .send()
        .await
        .unwrap();
    http.post(url("reset")).send().await.unwrap();
    speak(&c, VoiceId::Joanna, "three")
        .await
        .expect("reset cleared the failures");
    http.post(url("reset-counters")).send().await.unwrap();
    assert_eq!(s.synth_calls(), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn control_endpoint_is_absent_unless_enabled() {
    let s = standin().await;
    let resp = reqwest::get(format!("{}/_standin/stats", s.endpoint_url()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    s.shutdown().await;
}

#[tokio::test]
async fn without_espeak_a_tone_of_proportional_length_is_returned() {
    let s = PollyStandin::start(PollyConfig {
        espeak_program: "/nonexistent/espeak-ng".into(),
        ..PollyConfig::default()
    })
    .await
    .unwrap();
    let c = client(&s);
    let short = speak(&c, VoiceId::Joanna, "Hi.").await.unwrap();
    let short = short.audio_stream.collect().await.unwrap().into_bytes();
    let long = speak(&c, VoiceId::Joanna, &"word ".repeat(40))
        .await
        .unwrap();
    let long = long.audio_stream.collect().await.unwrap().into_bytes();
    let (ds, dl) = (
        voxgate_audio::mp3_duration_estimate(&short).unwrap(),
        voxgate_audio::mp3_duration_estimate(&long).unwrap(),
    );
    assert!(ds >= Duration::from_millis(250), "{ds:?}");
    assert!(dl > ds * 10, "{dl:?} vs {ds:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn lexicons_can_be_stored_listed_used_and_deleted() {
    let s = standin().await;
    let c = client(&s);
    let pls = r#"<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa" xml:lang="en-US">
  <lexeme><grapheme>voxgate</grapheme><alias>vox gate</alias></lexeme>
</lexicon>"#;
    c.put_lexicon()
        .name("vox")
        .content(pls)
        .send()
        .await
        .unwrap();
    let got = c.get_lexicon().name("vox").send().await.unwrap();
    assert_eq!(got.lexicon().unwrap().content(), Some(pls));
    let attrs = got.lexicon_attributes().unwrap();
    assert_eq!(attrs.alphabet(), Some("ipa"));
    assert_eq!(attrs.lexemes_count(), 1);
    assert_eq!(attrs.language_code(), Some(&LanguageCode::EnUs));
    assert!(attrs.last_modified().is_some());
    let list = c.list_lexicons().send().await.unwrap();
    assert_eq!(list.lexicons().len(), 1);
    assert_eq!(list.lexicons()[0].name(), Some("vox"));

    speak_with_lexicon(&c, "vox")
        .await
        .expect("known lexicon accepted");
    c.delete_lexicon().name("vox").send().await.unwrap();
    let e = c.get_lexicon().name("vox").send().await.unwrap_err();
    assert_eq!(e.code(), Some("LexiconNotFoundException"));
    let e = c
        .put_lexicon()
        .name("bad")
        .content("not a lexicon")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidLexiconException"));
    s.shutdown().await;
}

async fn speak_with_lexicon(
    c: &Client,
    name: &str,
) -> Result<SynthesizeSpeechOutput, SdkError<SynthesizeSpeechError>> {
    c.synthesize_speech()
        .lexicon_names(name)
        .voice_id(VoiceId::Joanna)
        .output_format(OutputFormat::Mp3)
        .text("voxgate")
        .send()
        .await
}

#[tokio::test]
async fn repeated_text_is_served_from_the_cache_identically() {
    let s = standin().await;
    let c = client(&s);
    let a = speak(&c, VoiceId::Joey, "Same words twice.").await.unwrap();
    let a = a.audio_stream.collect().await.unwrap().into_bytes();
    let started = Instant::now();
    let b = speak(&c, VoiceId::Joey, "Same words twice.").await.unwrap();
    let b = b.audio_stream.collect().await.unwrap().into_bytes();
    assert_eq!(a, b);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        s.billed_characters(),
        2 * "Same words twice.".len() as u64,
        "cached calls are still billed"
    );
    s.shutdown().await;
}
