//! The API description tells the truth: a property-based fuzzer
//! (schemathesis) reads `/api/openapi.json` and walks every operation with
//! generated valid and invalid inputs, with a fixed seed and a bounded
//! number of cases. It fails on any 5xx, any status or content type the
//! document does not list, any response that does not match its schema,
//! any schema-invalid request that is accepted and any schema-valid request
//! that is refused.
//!
//! The settings are in `tests/fuzz/schemathesis.toml`: a few operations
//! whose acceptance depends on more than a schema can say (the engine's
//! voices, Keycloak's validators, the roles table) are not held to
//! accepting every schema-valid request; docs/api.md lists them and why.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::TestSettings;
use crate::stack::spawn_polly_stack;

/// The fuzzer's `st` command, installed by scripts/test.
fn schemathesis() -> String {
    if let Ok(st) = std::env::var("VOXGATE_SCHEMATHESIS") {
        return st;
    }
    let installed = concat!(env!("CARGO_MANIFEST_DIR"), "/../.local/schemathesis/bin/st");
    assert!(
        std::path::Path::new(installed).exists(),
        "the API fuzzer is not installed: run scripts/test (or set VOXGATE_SCHEMATHESIS)"
    );
    installed.to_string()
}

#[tokio::test]
async fn the_api_description_holds_under_a_property_based_fuzzer() {
    let st = schemathesis();
    let stack = spawn_polly_stack(
        TestSettings::default()
            .set("VOXGATE_TTS_RATE_PER_MINUTE", "100000")
            .set("VOXGATE_CHAT_RATE_PER_MINUTE", "100000")
            .set("VOXGATE_STT_RATE_PER_MINUTE", "100000")
            .set("VOXGATE_STT_ENGINE", "local")
            .set("VOXGATE_WHISPER_PYTHON", crate::listening::whisper_python()),
    )
    .await;
    let token = stack.password_token("alice", "alice").await;
    let schema = stack.app.url("/api/openapi.json");
    // schemathesis keeps an example cache in its working directory; it
    // belongs to this run, not to the repository.
    let workdir = std::env::temp_dir().join(format!("voxgate-fuzz-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&workdir).unwrap();
    let child = tokio::process::Command::new(&st)
        .current_dir(&workdir)
        .arg("--config-file")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fuzz/schemathesis.toml"
        ))
        .args(["run", &schema, "--no-color", "--seed", "20261129"])
        .args(["--max-examples", "6", "--request-timeout", "10"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .envs(crate::helpers::base_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("schemathesis runs");
    let out = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .expect("the fuzzer finishes within ten minutes")
        .unwrap();
    let _ = std::fs::remove_dir_all(&workdir);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(report.contains("Tested:"), "the fuzzer ran: {report}");
}
