//! Finished speech audio in an S3 bucket, tried against two S3 servers
//! others wrote (moto's and S3Proxy), run here: entries move there when
//! complete and their chunks leave Postgres; hits stream from the bucket
//! with Range and ETag as before, or redirect to a presigned URL; eviction
//! deletes objects; a bucket that is down or slow is answered by
//! synthesis, never a 500; existing entries move in batches.

use std::time::Duration;

use voxgate::tts::cache;
use voxgate_lab::s3::{BUCKET, KEY_ID, REGION, SECRET, Store};

use crate::helpers::{TestSettings, free_port};
use crate::stack::{Stack, spawn_polly_stack};

use super::helpers::{polly, wait_for_count};

/// An S3 server on a local port, with the bucket made; killed on drop.
pub(crate) struct S3 {
    pub store: Store,
    pub endpoint: String,
    child: tokio::process::Child,
    dir: std::path::PathBuf,
    pub client: aws_sdk_s3::Client,
}

impl S3 {
    pub(crate) async fn start(store: Store) -> S3 {
        let dir = std::env::temp_dir().join(format!("voxgate-s3-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let command = store
            .command(&voxgate_lab::repo_root(), port, &dir)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut command = tokio::process::Command::from(command);
        let child = command
            .env_clear()
            .envs(crate::helpers::base_env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", store.name()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = voxgate_lab::s3::client(&endpoint);
        let s3 = S3 {
            store,
            endpoint,
            child,
            dir,
            client,
        };
        for _ in 0..300 {
            if s3
                .client
                .create_bucket()
                .bucket(BUCKET)
                .send()
                .await
                .is_ok()
            {
                return s3;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not start within 30 s", store.name());
    }

    /// Stops answering (the process is paused) until [`S3::resume`].
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The names of the objects in the bucket.
    pub(crate) async fn objects(&self) -> Vec<String> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect("list the bucket");
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// Deletes every object behind voxgate's back.
    pub(crate) async fn empty(&self) {
        for object in self.objects().await {
            self.client
                .delete_object()
                .bucket(BUCKET)
                .key(object)
                .send()
                .await
                .unwrap();
        }
    }

    /// An object's bytes.
    pub(crate) async fn object(&self, name: &str) -> Vec<u8> {
        let got = self
            .client
            .get_object()
            .bucket(BUCKET)
            .key(name)
            .send()
            .await
            .expect("get the object");
        got.body.collect().await.unwrap().to_vec()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // A paused process would not die of SIGKILL's delivery until
        // continued on some kernels' process states: continue it first.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// voxgate's settings for `s3`'s bucket.
pub(crate) fn bucket_settings(settings: TestSettings, s3: &S3) -> TestSettings {
    voxgate_lab::s3::voxgate_env(&s3.endpoint)
        .into_iter()
        .fold(settings, |settings, (name, value)| {
            settings.set(name, value)
        })
}

/// The bucket settings [`bucket_settings`] gives, as configuration.
fn bucket_config(s3: &S3) -> voxgate::config::BucketConfig {
    voxgate::config::BucketConfig {
        name: BUCKET.into(),
        endpoint_url: Some(s3.endpoint.clone()),
        region: REGION.into(),
        path_style: true,
        prefix: "voxgate/audio/".into(),
        access_key_id: Some(KEY_ID.into()),
        secret_access_key: Some(SECRET.to_string().into()),
        presign: None,
        timeout: Duration::from_secs(1),
    }
}

/// A stack speaking through the Polly stand-in with its audio in `s3`,
/// and bob's token.
async fn bucket_stack(s3: &S3, settings: TestSettings) -> (Stack, String) {
    let stack = spawn_polly_stack(bucket_settings(
        settings.set("VOXGATE_AUDIO_BUCKET_TIMEOUT_MS", "1000"),
        s3,
    ))
    .await;
    let bob = stack.password_token("bob", "bob").await;
    (stack, bob)
}

/// The bucket client voxgate uses, for tidying at once.
async fn voxgate_bucket(stack: &Stack) -> cache::Bucket {
    let config = &stack.app.state.config.tts;
    cache::Bucket::new(config.bucket.as_ref().expect("a bucket"), &config.aws).await
}

/// Registers `text` for `token` and hears it whole once; returns its URL,
/// key and bytes, once the entry is in the bucket.
async fn heard_in_bucket(stack: &Stack, token: &str, text: &str) -> (String, String, bytes::Bytes) {
    let speech = stack.register_as_joanna(token, text).await;
    let url = speech["url"].as_str().unwrap().to_string();
    let key = speech["key"].as_str().unwrap().to_string();
    let first = stack.app.caller(token).get(&url).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-voxgate-cache"], "miss");
    let audio = first.bytes().await.unwrap();
    wait_for_count(
        stack,
        &format!(
            "SELECT count(*) FROM tts_cache WHERE key = '{key}' AND bucket_object IS NOT NULL"
        ),
        1,
    )
    .await;
    (url, key, audio)
}

async fn for_each_store<F, Fut>(test: F)
where
    F: Fn(S3) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for store in Store::ALL {
        eprintln!("against {}", store.name());
        test(S3::start(store).await).await;
    }
}

#[tokio::test]
async fn finished_audio_moves_to_the_bucket_and_hits_stream_from_it_with_ranges_and_validators() {
    for_each_store(|s3| async move {
        let (stack, bob) = bucket_stack(&s3, TestSettings::default()).await;
        let text = "Stored in a bucket, served from it, byte for byte.";
        let (url, key, audio) = heard_in_bucket(&stack, &bob, text).await;
        // The object holds the audio, named by key and hash.
        let objects = s3.objects().await;
        assert_eq!(objects.len(), 1, "{}: {objects:?}", s3.store.name());
        assert!(objects[0].starts_with(&format!("voxgate/audio/{key}.")));
        assert_eq!(s3.object(&objects[0]).await, audio.to_vec());
        // The chunks leave Postgres once the grace has passed.
        let done = cache::tidy(&stack.app.db, &voxgate_bucket(&stack).await, Duration::ZERO)
            .await
            .unwrap();
        assert!(done.chunks_dropped > 0);
        assert_eq!(
            stack
                .app
                .count(&format!(
                    "SELECT count(*) FROM tts_chunks WHERE key = '{key}'"
                ))
                .await,
            0
        );
        let calls = polly(&stack).synth_calls();
        let hit = stack.app.caller(&bob).get(&url).await;
        assert_eq!(hit.status(), 200);
        assert_eq!(hit.headers()["x-voxgate-cache"], "hit");
        assert_eq!(
            hit.headers()["content-length"],
            audio.len().to_string().as_str()
        );
        let etag = hit.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(hit.bytes().await.unwrap(), audio);
        let part = stack
            .app
            .caller(&bob)
            .header("range", "bytes=100-199")
            .get(&url)
            .await;
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes 100-199/{}", audio.len()).as_str()
        );
        assert_eq!(part.bytes().await.unwrap(), audio.slice(100..200));
        let suffix = stack
            .app
            .caller(&bob)
            .header("range", "bytes=-10")
            .get(&url)
            .await;
        assert_eq!(
            suffix.bytes().await.unwrap(),
            audio.slice(audio.len() - 10..)
        );
        let not_modified = stack
            .app
            .caller(&bob)
            .header("if-none-match", &etag)
            .get(&url)
            .await;
        assert_eq!(not_modified.status(), 304);
        assert_eq!(
            polly(&stack).synth_calls(),
            calls,
            "nothing synthesized again"
        );
        // Another user's first hearing streams it like a synthesis.
        let alice = stack.password_token("alice", "alice").await;
        let theirs = stack.say_as_joanna(&alice, text).await;
        assert_eq!(theirs.headers()["x-voxgate-cache"], "miss");
        assert!(theirs.headers().get("content-length").is_none());
        assert_eq!(theirs.bytes().await.unwrap(), audio);
        assert_eq!(polly(&stack).synth_calls(), calls);
    })
    .await;
}

#[tokio::test]
async fn with_presigning_a_repeat_hearing_is_redirected_to_the_bucket() {
    for_each_store(|s3| async move {
        let (stack, bob) = bucket_stack(
            &s3,
            TestSettings::default().set("VOXGATE_AUDIO_BUCKET_PRESIGN_SECONDS", "60"),
        )
        .await;
        let (url, _, audio) = heard_in_bucket(
            &stack,
            &bob,
            "Fetched from the bucket by the client itself.",
        )
        .await;
        let not_following = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let hit = crate::helpers::Caller::at(&stack.app.url(""), not_following)
            .bearer(&bob)
            .get(&url)
            .await;
        assert_eq!(
            hit.status(),
            307,
            "{}: {:?}",
            s3.store.name(),
            hit.headers()
        );
        assert_eq!(hit.headers()["cache-control"], "private, no-store");
        let location = hit.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with(&s3.endpoint), "{location}");
        // No credentials needed, ranges answered by the bucket; a client
        // that follows redirects (an <audio> element) just gets the audio.
        let followed = stack.app.caller(&bob).get(&url).await;
        assert_eq!(followed.bytes().await.unwrap(), audio);
        let client = reqwest::Client::new();
        let whole = client.get(&location).send().await.unwrap();
        assert_eq!(whole.status(), 200);
        assert_eq!(whole.bytes().await.unwrap(), audio);
        let part = client
            .get(&location)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(part.bytes().await.unwrap(), audio.slice(10..20));
        // A first hearing is never a redirect: it would tell that the
        // audio was cached.
        let alice = stack.password_token("alice", "alice").await;
        let theirs = stack
            .say_as_joanna(&alice, "Fetched from the bucket by the client itself.")
            .await;
        assert_eq!(theirs.status(), 200);
        assert_eq!(theirs.bytes().await.unwrap(), audio);
        // An object that went missing is never a redirect to an error: the
        // words are spoken again, and cached afresh.
        s3.empty().await;
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let spoken = crate::helpers::Caller::at(&stack.app.url(""), no_redirect)
            .bearer(&bob)
            .get(&url)
            .await;
        assert_eq!(spoken.status(), 200, "{}", s3.store.name());
        assert_eq!(spoken.bytes().await.unwrap(), audio);
    })
    .await;
}

#[tokio::test]
async fn evicted_entries_leave_the_bucket() {
    for_each_store(|s3| async move {
        let (stack, bob) = bucket_stack(&s3, TestSettings::default()).await;
        let (_, first_key, _) = heard_in_bucket(&stack, &bob, "The older entry goes first.").await;
        let (_, second_key, _) = heard_in_bucket(&stack, &bob, "The newer entry stays.").await;
        assert_eq!(s3.objects().await.len(), 2);
        stack
            .app
            .sql(&format!(
                "UPDATE tts_cache SET last_access_at = now() - interval '1 hour' WHERE key = '{first_key}'"
            ))
            .await;
        let size: i64 = stack
            .app
            .count(&format!("SELECT size FROM tts_cache WHERE key = '{second_key}'"))
            .await;
        cache::evict(&stack.app.db, size).await.unwrap();
        assert_eq!(
            stack.app.count("SELECT count(*) FROM tts_bucket_trash").await,
            1,
            "the evicted entry's object waits for deletion"
        );
        let done = cache::tidy(&stack.app.db, &voxgate_bucket(&stack).await, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(done.objects_deleted, 1);
        let left = s3.objects().await;
        assert_eq!(left.len(), 1, "{}", s3.store.name());
        assert!(left[0].contains(&second_key));
        assert_eq!(stack.app.count("SELECT count(*) FROM tts_bucket_trash").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_bucket_that_is_down_or_slow_is_answered_by_synthesis() {
    for_each_store(|mut s3| async move {
        let (stack, bob) = bucket_stack(&s3, TestSettings::default()).await;
        let (url, _, audio) = heard_in_bucket(
            &stack,
            &bob,
            "Spoken again when the bucket will not answer.",
        )
        .await;
        cache::tidy(&stack.app.db, &voxgate_bucket(&stack).await, Duration::ZERO)
            .await
            .unwrap();
        let calls = polly(&stack).synth_calls();
        // Slow: the process is paused, so requests hang until the timeout.
        // (Nothing of the entry is in memory yet: its first hearing was a
        // synthesis.)
        s3.pause();
        let slow = stack.app.caller(&bob).get(&url).await;
        assert_eq!(slow.status(), 200, "{}", s3.store.name());
        assert_eq!(slow.bytes().await.unwrap(), audio);
        assert_eq!(
            polly(&stack).synth_calls(),
            calls + 1,
            "synthesized instead"
        );
        s3.resume();
        let back = stack.app.caller(&bob).get(&url).await;
        assert_eq!(back.headers()["x-voxgate-cache"], "hit");
        assert_eq!(back.bytes().await.unwrap(), audio);
        // Down: nothing listens. Asked of an instance that has not held
        // the entry in memory yet.
        s3.stop().await;
        let fresh = stack.app.another_instance().await;
        let down = fresh.caller(&bob).get(&url).await;
        assert_eq!(down.status(), 200);
        assert_eq!(down.bytes().await.unwrap(), audio);
        assert_eq!(polly(&stack).synth_calls(), calls + 2);
        // The index still points at the bucket: nothing was lost.
        assert_eq!(
            stack
                .app
                .count("SELECT count(*) FROM tts_cache WHERE bucket_object IS NOT NULL")
                .await,
            1
        );
    })
    .await;
}

#[tokio::test]
async fn an_object_missing_from_the_bucket_is_forgotten_and_spoken_again() {
    for_each_store(|s3| async move {
        let (stack, bob) = bucket_stack(&s3, TestSettings::default()).await;
        let (url, key, audio) =
            heard_in_bucket(&stack, &bob, "Deleted behind voxgate's back.").await;
        cache::tidy(&stack.app.db, &voxgate_bucket(&stack).await, Duration::ZERO)
            .await
            .unwrap();
        s3.empty().await;
        let again = stack.app.caller(&bob).get(&url).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.bytes().await.unwrap(), audio);
        // Cached afresh, and in the bucket again.
        wait_for_count(
            &stack,
            &format!(
                "SELECT count(*) FROM tts_cache WHERE key = '{key}' AND bucket_object IS NOT NULL"
            ),
            1,
        )
        .await;
        assert_eq!(s3.objects().await.len(), 1, "{}", s3.store.name());
    })
    .await;
}

#[tokio::test]
async fn entries_cached_before_the_bucket_move_to_it_in_batches_from_the_command_line() {
    let s3 = S3::start(Store::Moto).await;
    // Cached while the bucket was off.
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let bob = stack.password_token("bob", "bob").await;
    let mut cached = Vec::new();
    for text in ["First of three.", "Second of three.", "Third of three."] {
        let r = stack.say_as_joanna(&bob, text).await;
        cached.push(r.bytes().await.unwrap());
    }
    wait_for_count(&stack, "SELECT count(*) FROM tts_cache WHERE complete", 3).await;
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"));
        command
            .args(["audio"])
            .args(args)
            .env_clear()
            .envs(crate::helpers::base_env())
            .env("DATABASE_URL", &stack.app.database.url)
            .env("VOXGATE_OIDC_ISSUER", stack.kc.issuer(crate::stack::REALM));
        for (name, value) in voxgate_lab::s3::voxgate_env(&s3.endpoint) {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let first = run(&["move-to-bucket", "--batch", "2", "--batches", "1"]);
    let said = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        first.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        said.contains("moved 2, failed 0, 1 left in Postgres"),
        "{said}"
    );
    let rest = run(&["move-to-bucket", "--batch", "2"]);
    let said = String::from_utf8_lossy(&rest.stdout).to_string();
    assert!(rest.status.success(), "{said}");
    assert!(
        said.contains("moved 1, failed 0, 0 left in Postgres"),
        "{said}"
    );
    assert_eq!(s3.objects().await.len(), 3);
    let tidy = run(&["tidy", "--grace-seconds", "0"]);
    assert!(tidy.status.success());
    assert_eq!(stack.app.count("SELECT count(*) FROM tts_chunks").await, 0);
    // An instance with the bucket on serves them from it.
    let with_bucket = stack
        .app
        .another_instance_with(|config| config.tts.bucket = Some(bucket_config(&s3)))
        .await;
    for (text, audio) in ["First of three.", "Second of three.", "Third of three."]
        .iter()
        .zip(&cached)
    {
        let query = [("Text", *text), ("VoiceId", "Joanna")];
        let hit = with_bucket
            .caller(&bob)
            .get(super::text_to_speech(&query))
            .await;
        assert_eq!(hit.status(), 200, "{:?}", hit.text().await);
        assert_eq!(hit.headers()["x-voxgate-cache"], "hit");
        assert_eq!(&hit.bytes().await.unwrap(), audio);
    }
    // Without a bucket configured, the command says so.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"));
    let refused = command
        .args(["audio", "tidy"])
        .env_clear()
        .envs(crate::helpers::base_env())
        .env("DATABASE_URL", &stack.app.database.url)
        .env("VOXGATE_OIDC_ISSUER", stack.kc.issuer(crate::stack::REALM))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("VOXGATE_AUDIO_BUCKET"));
}

#[tokio::test]
async fn a_large_entry_is_streamed_from_the_bucket_range_by_range_never_held_whole() {
    for_each_store(|s3| async move {
        let (stack, bob) = bucket_stack(&s3, TestSettings::default()).await;
        let (url, key, _) = heard_in_bucket(&stack, &bob, "Replaced by a long reply.").await;
        // Two and a half MiB (above what is held in memory), put in the
        // bucket under the name the index gives it.
        let data: Vec<u8> = (0..5 * 512 * 1024)
            .map(|i: usize| (i * 31 + i / 7) as u8)
            .collect();
        let object = format!("voxgate/audio/{key}.large");
        s3.client
            .put_object()
            .bucket(BUCKET)
            .key(&object)
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        sqlx::query(
            "UPDATE tts_cache SET size = $2, etag = 'large', bucket_object = $3 WHERE key = $1",
        )
        .bind(&key)
        .bind(data.len() as i64)
        .bind(&object)
        .execute(&stack.app.db)
        .await
        .unwrap();
        let whole = stack.app.caller(&bob).get(&url).await;
        assert_eq!(whole.status(), 200, "{}", s3.store.name());
        assert_eq!(whole.headers()["etag"], "\"large\"");
        assert_eq!(
            whole.headers()["content-length"],
            data.len().to_string().as_str()
        );
        assert_eq!(whole.bytes().await.unwrap().as_ref(), &data[..]);
        let from = 2 * 1024 * 1024 + 5;
        let part = stack
            .app
            .caller(&bob)
            .header("range", &format!("bytes={from}-"))
            .get(&url)
            .await;
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes {from}-{}/{}", data.len() - 1, data.len()).as_str()
        );
        assert_eq!(part.bytes().await.unwrap().as_ref(), &data[from..]);
        let stale = stack
            .app
            .caller(&bob)
            .header("range", "bytes=0-9")
            .header("if-range", "\"other\"")
            .get(&url)
            .await;
        assert_eq!(
            stale.status(),
            200,
            "If-Range that does not match: the whole"
        );
        assert_eq!(stale.bytes().await.unwrap().len(), data.len());
    })
    .await;
}
