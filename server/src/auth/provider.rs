//! What we know about the identity provider: its discovery document and
//! signing keys, kept fresh in the background.
//!
//! Keys are fetched at start (retrying with backoff; the app starts anyway
//! and reports not-ready until keys exist), refreshed periodically, and
//! refetched when a token names an unknown `kid` — at most once per
//! cooldown, with concurrent callers sharing that one fetch. The last good
//! keys stay in use while the provider is unreachable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use crate::config::OidcConfig;

/// Endpoints from the discovery document.
#[derive(Clone, Debug, Deserialize)]
pub struct Endpoints {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

#[derive(Clone)]
pub struct SigningKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

#[derive(Default)]
struct Snapshot {
    endpoints: Option<Endpoints>,
    keys: HashMap<String, SigningKey>,
    fetched_at: Option<Instant>,
    last_error: Option<String>,
    failures: u64,
    /// Bumped on every fetch attempt, so waiters can tell a fetch happened.
    generation: u64,
}

/// Health of the provider connection, for `/readyz`.
pub struct ProviderStatus {
    pub ready: bool,
    pub key_count: usize,
    pub key_age: Option<Duration>,
    pub failures: u64,
    /// Key-set downloads tried since start, scheduled or on an unknown kid.
    pub fetches: u64,
    pub last_error: Option<String>,
}

#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    config: OidcConfig,
    http: reqwest::Client,
    snapshot: RwLock<Snapshot>,
    fetch_lock: Mutex<Option<Instant>>,
    reachable: std::sync::Mutex<Option<(Instant, bool)>>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl Provider {
    pub fn new(config: OidcConfig, http: reqwest::Client) -> Provider {
        Provider {
            inner: Arc::new(Inner {
                config,
                http,
                snapshot: RwLock::new(Snapshot::default()),
                fetch_lock: Mutex::new(None),
                reachable: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Fetches at start with backoff, then refreshes periodically. Runs
    /// until the returned handle is aborted.
    pub fn spawn_refresher(&self) -> tokio::task::JoinHandle<()> {
        let provider = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                match provider.fetch().await {
                    Ok(()) => {
                        backoff = Duration::from_millis(250);
                        tokio::time::sleep(provider.inner.config.jwks_refresh).await;
                    }
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        })
    }

    pub async fn endpoints(&self) -> Option<Endpoints> {
        self.inner.snapshot.read().await.endpoints.clone()
    }

    pub async fn status(&self) -> ProviderStatus {
        let s = self.inner.snapshot.read().await;
        ProviderStatus {
            ready: s.endpoints.is_some() && !s.keys.is_empty(),
            key_count: s.keys.len(),
            key_age: s.fetched_at.map(|t| t.elapsed()),
            failures: s.failures,
            fetches: s.generation,
            last_error: s.last_error.clone(),
        }
    }

    /// The key for `kid`; an unknown kid triggers one refetch unless one
    /// happened within the cooldown.
    pub async fn key(&self, kid: &str) -> Option<SigningKey> {
        let generation = {
            let s = self.inner.snapshot.read().await;
            if let Some(k) = s.keys.get(kid) {
                return Some(k.clone());
            }
            s.generation
        };
        {
            let mut last = self.inner.fetch_lock.lock().await;
            let fetched_meanwhile = self.inner.snapshot.read().await.generation != generation;
            let cooling = last.is_some_and(|t| t.elapsed() < self.inner.config.jwks_min_refetch);
            if !fetched_meanwhile && !cooling {
                *last = Some(Instant::now());
                tracing::info!("unknown signing key id; refetching keys");
                let _ = self.fetch_unlocked().await;
            }
        }
        self.inner.snapshot.read().await.keys.get(kid).cloned()
    }

    /// A scheduled fetch. It does not start the unknown-kid cooldown: a key
    /// rotated just after a scheduled fetch must still be found at once.
    async fn fetch(&self) -> Result<(), String> {
        let _guard = self.inner.fetch_lock.lock().await;
        self.fetch_unlocked().await
    }

    async fn fetch_unlocked(&self) -> Result<(), String> {
        let result = self.download().await;
        let mut s = self.inner.snapshot.write().await;
        s.generation += 1;
        match result {
            Ok((endpoints, keys)) => {
                metrics::gauge!("voxgate_oidc_signing_keys").set(keys.len() as f64);
                // Key age is "now - this" in PromQL.
                metrics::gauge!("voxgate_oidc_keys_fetched_timestamp_seconds")
                    .set(time::OffsetDateTime::now_utc().unix_timestamp() as f64);
                s.endpoints = Some(endpoints);
                s.keys = keys;
                s.fetched_at = Some(Instant::now());
                s.last_error = None;
                Ok(())
            }
            Err(e) => {
                metrics::counter!("voxgate_oidc_key_fetch_failures_total").increment(1);
                tracing::warn!(error = %e, "fetching identity provider keys failed; keeping the last good keys");
                s.failures += 1;
                s.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn download(&self) -> Result<(Endpoints, HashMap<String, SigningKey>), String> {
        let issuer = self.inner.config.issuer.as_str().trim_end_matches('/');
        let url = self.inner.config.discovery_document();
        let endpoints: Endpoints = self.get_json(&url).await?;
        if endpoints.issuer != issuer {
            return Err(format!(
                "discovery reports issuer `{}` but VOXGATE_OIDC_ISSUER is `{issuer}`",
                endpoints.issuer
            ));
        }
        let jwks: Jwks = self.get_json(&endpoints.jwks_uri).await?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            if let Some((kid, key)) = signing_key(jwk) {
                keys.insert(kid, key);
            }
        }
        if keys.is_empty() {
            return Err("the key set has no usable RSA signing key".into());
        }
        Ok((endpoints, keys))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .inner
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::error::chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        response
            .json::<T>()
            .await
            .map_err(|e| format!("GET {url}: {e}"))
    }

    /// Whether the provider answers right now (used before sending a
    /// browser there).
    pub async fn reachable(&self) -> bool {
        // Cached briefly: anonymous /auth/login requests must not each
        // cost an outbound call.
        if let Ok(r) = self.inner.reachable.lock()
            && let Some((at, ok)) = *r
            && at.elapsed()
                < if ok {
                    Duration::from_secs(3)
                } else {
                    Duration::from_secs(1)
                }
        {
            return ok;
        }
        let url = self.inner.config.discovery_document();
        let ok = matches!(
            self.inner.http.get(url).timeout(Duration::from_secs(2)).send().await,
            Ok(r) if r.status().is_success()
        );
        if let Ok(mut r) = self.inner.reachable.lock() {
            *r = Some((Instant::now(), ok));
        }
        ok
    }
}

/// Only asymmetric signature keys are usable; HMAC or `enc` keys never are.
fn signing_key(jwk: Jwk) -> Option<(String, SigningKey)> {
    if jwk.kty != "RSA" || jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let algorithm = match jwk.alg.as_deref().unwrap_or("RS256") {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        _ => return None,
    };
    let key = DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok()?;
    Some((jwk.kid?, SigningKey { algorithm, key }))
}
