//! Past one machine: three voxgate processes (the real binary) behind the
//! shipped nginx over https, on one Postgres, with their audio in an S3
//! bucket (moto's server). One synthesis serves a popular new text
//! however the requests are spread, repeat hearings come from the bucket
//! on every instance, and an instance killed in the middle of a synthesis
//! leaves neither a broken nor a half-cached entry.

use std::time::Duration;

use futures::StreamExt;
use voxgate_lab::s3::Store;

use super::nginx::{Deployment, nginx_missing};
use crate::tts::bucket::S3;
use crate::tts::text_to_speech;

/// `/textToSpeech` for `text` in Joanna's voice.
fn joanna(text: &str) -> String {
    text_to_speech(&[
        ("Text", text),
        ("VoiceId", "Joanna"),
        ("OutputFormat", "mp3"),
    ])
}

#[tokio::test]
async fn three_instances_share_one_synthesis_and_the_bucket_and_outlive_a_killed_writer() {
    if nginx_missing() {
        return;
    }
    let s3 = S3::start(Store::Moto).await;
    let mut settings = voxgate_lab::s3::voxgate_env(&s3.endpoint);
    settings.push(("VOXGATE_TTS_RATE_PER_MINUTE", "1000".into()));
    let mut d = Deployment::start_with(3, &settings).await;
    let db = d.db.pool().await;
    let count = |query: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(query)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let bob = d.token("bob", "bob").await;
    let client = d.client().build().unwrap();

    // Thirty concurrent requests for one new text, spread by nginx.
    d.polly.set_first_byte_delay(Duration::from_millis(400));
    let popular = joanna("The bot's popular reply, asked for by thirty people at once.");
    // Thirty people: thirty addresses, each within nginx's per-address
    // speech limit.
    let requests = (0..30u8).map(|i| {
        let person = d
            .client()
            .local_address(std::net::IpAddr::from([127, 0, 0, 10 + i]))
            .build()
            .unwrap();
        let request = person.get(d.url(&popular)).bearer_auth(&bob);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    });
    let answers = futures::future::join_all(requests).await;
    assert_eq!(
        d.polly.synth_calls(),
        1,
        "one upstream synthesis for thirty requests"
    );
    assert!(answers.iter().all(|a| a == &answers[0] && !a.is_empty()));
    for (i, app) in d.apps.iter().enumerate() {
        assert!(
            app.requests("/textToSpeech", 200).await > 0.0,
            "instance {i} served some of them"
        );
    }
    d.polly.set_first_byte_delay(Duration::ZERO);

    // Once finished, the entry moves to the bucket; repeat hearings on
    // every instance come from there (and then from memory).
    for _ in 0..100 {
        if count("SELECT count(*) FROM tts_cache WHERE bucket_object IS NOT NULL").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s3.objects().await.len(), 1);
    let mut before = Vec::new();
    for app in &d.apps {
        before.push(
            app.metric("voxgate_tts_bucket_reads_total", &[("result", "ok")])
                .await,
        );
    }
    for _ in 0..9 {
        let hit = client
            .get(d.url(&popular))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(hit.headers()["x-voxgate-cache"], "hit");
        assert_eq!(hit.bytes().await.unwrap(), answers[0]);
    }
    // Each instance read it from the bucket once, then held it in memory
    // (it is small).
    for (i, (app, before)) in d.apps.iter().zip(before).enumerate() {
        let read = app
            .metric("voxgate_tts_bucket_reads_total", &[("result", "ok")])
            .await
            - before;
        assert_eq!(
            read, 1.0,
            "instance {i} read the entry from the bucket once"
        );
    }
    assert_eq!(d.polly.synth_calls(), 1);

    // An instance killed while it writes a synthesis that another follows.
    d.polly.set_chunk_delay(Duration::from_millis(150));
    let long = joanna(
        &"A long reply, cut off when the instance speaking it is killed half way through. "
            .repeat(3),
    );
    let writer = client
        .get(d.apps[0].url(&long))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let mut writer = writer.bytes_stream();
    writer.next().await.unwrap().unwrap();
    let follower = client
        .get(d.apps[1].url(&long))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(follower.status(), 200);
    let mut follower = follower.bytes_stream();
    follower.next().await.unwrap().unwrap();
    d.apps[0].kill().await;
    drop(writer);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match follower.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the follower ends once the writer's heart stops");
    assert!(
        matches!(ended, Some(Err(_))),
        "a cut stream, never a short file: {ended:?}"
    );
    assert_eq!(
        count("SELECT count(*) FROM tts_cache").await,
        1,
        "nothing of the killed synthesis is kept"
    );
    assert_eq!(d.polly.synth_calls(), 2);
    // Asked again (nginx passes over the dead instance), it is spoken
    // whole, cached whole, and moves to the bucket.
    d.polly.set_chunk_delay(Duration::ZERO);
    let again = client
        .get(d.url(&long))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let whole = again.bytes().await.unwrap();
    for _ in 0..100 {
        if count("SELECT count(*) FROM tts_cache WHERE bucket_object IS NOT NULL").await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s3.objects().await.len(), 2);
    let hit = client
        .get(d.apps[2].url(&long))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(hit.headers()["x-voxgate-cache"], "hit");
    assert_eq!(hit.bytes().await.unwrap(), whole);
    assert_eq!(d.polly.synth_calls(), 3);
}
