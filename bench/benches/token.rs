//! Bearer-token validation cost: the full path (`TokenValidator::validate`,
//! which does the RSA verification), the cached path (`access_token` after
//! the first call) and, for scale, one raw RSA-2048 PKCS#1 v1.5 SHA-256
//! verification with aws-lc-rs on the same token.
//!
//! Keys come from a real Keycloak stand-in serving the project realm, so
//! the token, the key and the checks are exactly those of production.
//! Run with `cargo bench -p voxgate-bench --bench token` (scripts/bench
//! does, and copies the figures into docs/benchmarks.md).

use std::path::PathBuf;
use std::time::Duration;

use aws_lc_rs::signature::{self, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use keycloak_standin::{Standin, StandinConfig};
use voxgate::auth::provider::Provider;
use voxgate::auth::token::{Expect, TokenValidator};
use voxgate::config::OidcConfig;

const REALM: &str = "voxgate";

struct Fixture {
    _kc: Standin,
    rt: tokio::runtime::Runtime,
    validator: TokenValidator,
    token: String,
    rsa_n: Vec<u8>,
    rsa_e: Vec<u8>,
}

fn fixture() -> Fixture {
    // A current-thread runtime: `block_on` then costs next to nothing, so
    // the cached path is not drowned in thread hand-offs.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let realm = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../keycloak-realm/realm.json"
    ));
    let (kc, validator, token, jwks) = rt.block_on(async {
        let kc = Standin::start(StandinConfig {
            realm_files: vec![realm],
            ..StandinConfig::default()
        })
        .await
        .expect("keycloak stand-in starts");
        let issuer = kc.issuer(REALM);
        let http = reqwest::Client::new();
        let provider = Provider::new(
            OidcConfig {
                issuer: issuer.parse().expect("issuer URL"),
                discovery_url: None,
                extra_issuers: Vec::new(),
                allowed_clients: Vec::new(),
                audience: "voxgate".into(),
                client_id: "voxgate-web".into(),
                client_secret: None,
                leeway: Duration::from_secs(30),
                jwks_refresh: Duration::from_secs(3600),
                jwks_min_refetch: Duration::from_secs(10),
            },
            http.clone(),
        );
        // Runs for the whole benchmark; dropped with the runtime.
        let _refresher = provider.spawn_refresher();
        for _ in 0..200 {
            if provider.status().await.ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(provider.status().await.ready, "keys were never fetched");
        let validator = TokenValidator::new(
            provider,
            vec![issuer.clone()],
            "voxgate".into(),
            "voxgate-web".into(),
            30,
        );
        let grant: serde_json::Value = http
            .post(format!("{issuer}/protocol/openid-connect/token"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "bob"),
                ("password", "bob"),
                ("scope", "openid"),
            ])
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token JSON");
        let token = grant["access_token"]
            .as_str()
            .expect("access token")
            .to_string();
        let jwks: serde_json::Value = http
            .get(format!("{issuer}/protocol/openid-connect/certs"))
            .send()
            .await
            .expect("jwks request")
            .json()
            .await
            .expect("jwks JSON");
        (kc, validator, token, jwks)
    });
    let kid = {
        let header = token.split('.').next().expect("header");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
        header["kid"].as_str().expect("kid").to_string()
    };
    let key = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's key is in the JWKS");
    let b64 = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(key[name].as_str().expect("modulus/exponent"))
            .expect("base64url")
    };
    Fixture {
        rsa_n: b64("n"),
        rsa_e: b64("e"),
        rt,
        _kc: kc,
        validator,
        token,
    }
}

fn token_validation(c: &mut Criterion) {
    let f = fixture();
    // Sanity: both paths accept the token before anything is timed.
    f.rt.block_on(f.validator.validate(&f.token, Expect::Access))
        .expect("token validates");
    f.rt.block_on(f.validator.access_token(&f.token))
        .expect("token validates (cache fill)");

    let (signing_input, signature) = f.token.rsplit_once('.').expect("three parts");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("signature b64");
    let public = RsaPublicKeyComponents {
        n: &f.rsa_n,
        e: &f.rsa_e,
    };
    public
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signing_input.as_bytes(),
            &signature,
        )
        .expect("raw RSA verification succeeds");

    let mut group = c.benchmark_group("token");
    group.bench_function("validate_cold_rsa", |b| {
        b.iter(|| {
            f.rt.block_on(f.validator.validate(&f.token, Expect::Access))
                .expect("valid")
        })
    });
    group.bench_function("access_token_cached", |b| {
        b.iter(|| {
            f.rt.block_on(f.validator.access_token(&f.token))
                .expect("valid")
        })
    });
    group.bench_function("rsa2048_verify_aws_lc_rs", |b| {
        b.iter(|| {
            public
                .verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    signing_input.as_bytes(),
                    &signature,
                )
                .expect("valid")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short but stable on a 2-core machine; the token lives 300 s.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);
    targets = token_validation
}
criterion_main!(benches);
