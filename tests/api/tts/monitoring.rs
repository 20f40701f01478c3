//! What operators see of speech: the engine in `/readyz`, and the cache,
//! billing and latency series in `/metrics`.

use crate::helpers::{TestSettings, detail_has};
use crate::stack::spawn_polly_stack;

use super::helpers::polly_with_bob;

#[tokio::test]
async fn the_readiness_check_reports_the_speech_engine() {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let speech = stack.app.readiness_check("speech_engine").await;
    assert_eq!(speech["ok"], true);
    detail_has(&speech, "polly");
}

#[tokio::test]
async fn speech_metrics_count_hits_misses_and_billed_characters() {
    let (stack, token) = polly_with_bob().await;
    for _ in 0..2 {
        let r = stack.say_as_joanna(&token, "Count me twice.").await;
        r.bytes().await.unwrap();
    }
    let text = stack.app.get("/metrics").await.text().await.unwrap();
    for needle in [
        "voxgate_tts_cache_total{result=\"hit\"}",
        "voxgate_tts_cache_total{result=\"miss\"}",
        "voxgate_tts_billed_characters_total{engine=\"polly\"}",
        "voxgate_tts_first_byte_seconds",
        "voxgate_tts_upstream_seconds",
        "voxgate_oidc_keys_fetched_timestamp_seconds",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}");
    }
}
