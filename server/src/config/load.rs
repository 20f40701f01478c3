//! Layering (defaults → TOML file → environment) and parsing into the
//! typed [`Config`]. A bad value fails start-up with a message naming the
//! setting; secrets are never echoed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::settings::{SETTINGS, Setting};
use super::*;

/// Raw text values after layering, keyed by setting.
struct Layers {
    values: BTreeMap<&'static str, String>,
}

impl Layers {
    fn get(&self, setting: &Setting) -> Option<&str> {
        self.values
            .get(setting.key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty() || setting.default == Some(""))
    }
}

fn setting(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| unreachable!("unknown setting key {key}"))
}

impl Config {
    /// Loads defaults → `file` → the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// Same as [`Config::load`] with an explicit environment (tests use this).
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut values = BTreeMap::new();
        for s in SETTINGS {
            if let Some(d) = s.default {
                values.insert(s.key, d.to_string());
            }
        }
        if let Some(path) = file {
            for (key, value) in read_toml(path)? {
                values.insert(key, value);
            }
        }
        for s in SETTINGS {
            if let Some(v) = env(s.env) {
                values.insert(s.key, v);
            }
        }
        Self::from_layers(&Layers { values })
    }

    fn from_layers(l: &Layers) -> Result<Config, ConfigError> {
        let text = |key: &str| -> Result<String, ConfigError> {
            let s = setting(key);
            l.get(s)
                .map(|v| v.trim().to_string())
                .ok_or_else(|| invalid(s, "is required but not set"))
        };
        let opt = |key: &str| -> Option<String> {
            l.get(setting(key))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let secret_opt = |key: &str| -> Option<SecretString> {
            l.get(setting(key))
                .filter(|v| !v.is_empty())
                .map(|v| SecretString::from(v.to_string()))
        };
        fn parse<T: std::str::FromStr>(key: &str, v: String, what: &str) -> Result<T, ConfigError> {
            v.parse::<T>().map_err(|_| {
                let s = setting(key);
                if s.secret {
                    invalid(s, format!("is not {what}"))
                } else {
                    invalid(s, format!("`{v}` is not {what}"))
                }
            })
        }
        let url = |key: &str| -> Result<Url, ConfigError> {
            let v = text(key)?;
            let u = Url::parse(&v)
                .map_err(|e| invalid(setting(key), format!("`{v}` is not a URL ({e})")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(invalid(
                    setting(key),
                    format!("`{v}` must be an http or https URL"),
                ));
            }
            Ok(u)
        };
        let boolean = |key: &str| -> Result<bool, ConfigError> {
            match text(key)?.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(invalid(
                    setting(key),
                    format!("`{other}` is not true or false"),
                )),
            }
        };
        let positive = |key: &str, what: &str| -> Result<u64, ConfigError> {
            let n: u64 = parse(key, text(key)?, what)?;
            if n == 0 {
                return Err(invalid(setting(key), "must be greater than 0"));
            }
            Ok(n)
        };

        let worker_wait = Duration::from_secs(positive(
            "tts.worker_wait_seconds",
            "a whole number of seconds",
        )?);
        let database_url = text("database.url")?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(invalid(
                setting("database.url"),
                "must be a postgres:// or postgresql:// URL",
            ));
        }

        let public_url = url("public_url")?;
        let secure = public_url.scheme() == "https";

        let log_format = match text("log.format")?.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    setting("log.format"),
                    format!("`{other}` is not one of text, json"),
                ));
            }
        };

        let trusted_proxies = split_list(&opt("trusted_proxies").unwrap_or_default())
            .map(|p| {
                p.parse::<IpNet>()
                    .map_err(|e| invalid(setting("trusted_proxies"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let issuer = url("oidc.issuer")?;
        let extra_issuers = split_list(&opt("oidc.extra_issuers").unwrap_or_default())
            .map(|i| {
                Url::parse(i).map(|_| i.to_string()).map_err(|_| {
                    invalid(setting("oidc.extra_issuers"), format!("`{i}` is not a URL"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let leeway: u64 = parse(
            "oidc.leeway_seconds",
            text("oidc.leeway_seconds")?,
            "a number of seconds",
        )?;
        if leeway > 30 {
            return Err(invalid(
                setting("oidc.leeway_seconds"),
                "must be at most 30 seconds",
            ));
        }

        let (derived_base, derived_realm) = split_issuer(&issuer);
        let discovery_url = match opt("oidc.discovery_url") {
            None => None,
            Some(v) => {
                let u = url("oidc.discovery_url")?;
                if u.query().is_some() || u.fragment().is_some() {
                    return Err(invalid(
                        setting("oidc.discovery_url"),
                        format!("`{v}` must be a realm URL without query or fragment"),
                    ));
                }
                let (_, realm) = split_issuer(&u);
                if realm.is_none() || realm != derived_realm {
                    return Err(invalid(
                        setting("oidc.discovery_url"),
                        format!(
                            "`{v}` must name the issuer's realm (…/realms/{})",
                            derived_realm.as_deref().unwrap_or("<realm>")
                        ),
                    ));
                }
                Some(u)
            }
        };
        let derived_base = match &discovery_url {
            Some(u) => split_issuer(u).0,
            None => derived_base,
        };
        let keycloak_base = match opt("keycloak.url") {
            Some(_) => url("keycloak.url")?,
            None => derived_base.ok_or_else(|| {
                invalid(
                    setting("keycloak.url"),
                    "is not set and cannot be derived from VOXGATE_OIDC_ISSUER (expected …/realms/<realm>)",
                )
            })?,
        };
        let realm = match opt("keycloak.realm").or(derived_realm) {
            Some(r) => r,
            None => {
                return Err(invalid(
                    setting("keycloak.realm"),
                    "is required but not set",
                ));
            }
        };

        let session_cookie = match opt("session.cookie_name") {
            Some(name) => {
                if name.starts_with("__Host-") && !secure {
                    return Err(invalid(
                        setting("session.cookie_name"),
                        "a __Host- cookie needs an https VOXGATE_PUBLIC_URL",
                    ));
                }
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
                {
                    return Err(invalid(
                        setting("session.cookie_name"),
                        format!("`{name}` may only contain letters, digits, - and _"),
                    ));
                }
                name
            }
            None if secure => "__Host-voxgate".to_string(),
            None => "voxgate_session".to_string(),
        };

        let engine = match text("tts.engine")?.as_str() {
            "auto" => TtsEngineChoice::Auto,
            "polly" => TtsEngineChoice::Polly,
            "local" => TtsEngineChoice::Local,
            "neural" => TtsEngineChoice::Neural,
            other => {
                return Err(invalid(
                    setting("tts.engine"),
                    format!("`{other}` is not one of auto, polly, neural, local"),
                ));
            }
        };

        let stt_engine = match text("stt.engine")?.as_str() {
            "auto" => Some(SttEngineChoice::Auto),
            "local" => Some(SttEngineChoice::Local),
            "service" => Some(SttEngineChoice::Service),
            "off" => None,
            other => {
                return Err(invalid(
                    setting("stt.engine"),
                    format!("`{other}` is not one of auto, local, service, off"),
                ));
            }
        };
        let stt_service = match opt("stt.service_url") {
            Some(_) => Some(SttServiceConfig {
                url: url("stt.service_url")?,
                key: secret_opt("stt.service_key"),
                model: text("stt.service_model")?,
            }),
            None if stt_engine == Some(SttEngineChoice::Service) => {
                return Err(invalid(
                    setting("stt.service_url"),
                    "must be set when VOXGATE_STT_ENGINE is service",
                ));
            }
            None => None,
        };

        let llm = match opt("llm.url") {
            Some(_) => Some(LlmConfig {
                url: url("llm.url")?,
                model: text("llm.model")?,
                daily_chars: positive("llm.daily_chars", "a whole number")? as i64,
                api_key: secret_opt("llm.api_key"),
            }),
            None => None,
        };

        let bucket = match opt("audio_bucket.name") {
            Some(name) => Some(BucketConfig {
                name,
                endpoint_url: match opt("audio_bucket.endpoint_url") {
                    Some(_) => Some(url("audio_bucket.endpoint_url")?.to_string()),
                    None => None,
                },
                region: text("audio_bucket.region")?,
                path_style: boolean("audio_bucket.path_style")?,
                prefix: text("audio_bucket.prefix")?,
                access_key_id: opt("audio_bucket.access_key_id"),
                secret_access_key: secret_opt("audio_bucket.secret_access_key"),
                presign: match parse(
                    "audio_bucket.presign_seconds",
                    text("audio_bucket.presign_seconds")?,
                    "a whole number of seconds",
                )? {
                    0 => None,
                    // S3 refuses longer presigned URLs: every hit would be
                    // synthesized again, and nothing would say why.
                    seconds if seconds > MAX_PRESIGN_SECONDS => {
                        return Err(invalid(
                            setting("audio_bucket.presign_seconds"),
                            format!(
                                "`{seconds}` is longer than S3 allows a presigned URL to live ({MAX_PRESIGN_SECONDS} s, 7 days); use 0 to stream hits through voxgate"
                            ),
                        ));
                    }
                    seconds => Some(Duration::from_secs(seconds)),
                },
                timeout: Duration::from_millis(positive(
                    "audio_bucket.timeout_ms",
                    "a number of milliseconds",
                )?),
            }),
            None => None,
        };

        let database_migrate = boolean("database.migrate")?;

        Ok(Config {
            database_url: SecretString::from(database_url),
            database_migrate,
            database_max_connections: positive("database.max_connections", "a whole number")?
                as u32,
            bind: parse(
                "bind",
                text("bind")?,
                "an address like 127.0.0.1:8080 or a socket like unix:/run/voxgate/http.sock",
            )?,
            socket_mode: {
                let v = text("http.socket_mode")?;
                match u32::from_str_radix(&v, 8) {
                    Ok(mode) if mode <= 0o777 && v.len() == 4 && v.starts_with('0') => mode,
                    _ => {
                        return Err(invalid(
                            setting("http.socket_mode"),
                            format!("`{v}` is not a file mode like 0660"),
                        ));
                    }
                }
            },
            socket_proxy_uids: split_list(&text("http.socket_proxy_uids")?)
                .map(|u| {
                    u.parse::<u32>().map_err(|_| {
                        invalid(
                            setting("http.socket_proxy_uids"),
                            format!("`{u}` is not a numeric user id"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            public_url,
            trusted_proxies,
            log_format,
            log_filter: text("log.filter")?,
            body_limit: positive("http.body_limit", "a size in bytes")? as usize,
            shutdown_grace: Duration::from_secs(parse(
                "http.shutdown_grace_seconds",
                text("http.shutdown_grace_seconds")?,
                "a number of seconds",
            )?),
            oidc: OidcConfig {
                issuer,
                discovery_url,
                extra_issuers,
                allowed_clients: split_list(&opt("oidc.allowed_clients").unwrap_or_default())
                    .map(str::to_string)
                    .collect(),
                audience: text("oidc.audience")?,
                client_id: text("oidc.client_id")?,
                client_secret: secret_opt("oidc.client_secret"),
                leeway: Duration::from_secs(leeway),
                jwks_refresh: Duration::from_secs(positive(
                    "oidc.jwks_refresh_seconds",
                    "a number of seconds",
                )?),
                jwks_min_refetch: Duration::from_secs(parse(
                    "oidc.jwks_min_refetch_seconds",
                    text("oidc.jwks_min_refetch_seconds")?,
                    "a number of seconds",
                )?),
            },
            session: SessionConfig {
                cookie_name: session_cookie,
                secure,
                idle: Duration::from_secs(
                    60 * positive("session.idle_minutes", "a number of minutes")?,
                ),
                absolute: Duration::from_secs(
                    3600 * positive("session.absolute_hours", "a number of hours")?,
                ),
                sign_ins_per_address: positive("session.sign_ins_per_address", "a whole number")?
                    as u32,
                sign_ins_per_instance: positive("session.sign_ins_per_instance", "a whole number")?
                    as u32,
            },
            keycloak: KeycloakAdminConfig {
                base_url: keycloak_base,
                realm,
                client_id: text("keycloak.admin_client_id")?,
                client_secret: secret_opt("keycloak.admin_client_secret"),
            },
            users: UsersConfig {
                password_min_length: positive("users.password_min_length", "a whole number")?
                    as usize,
            },
            tts: TtsConfig {
                engine,
                aws: AwsConfig {
                    region: opt("aws.region"),
                    profile: opt("aws.profile"),
                    access_key_id: opt("aws.access_key_id"),
                    secret_access_key: secret_opt("aws.secret_access_key"),
                    session_token: secret_opt("aws.session_token"),
                    endpoint_url: opt("aws.endpoint_url_polly").or_else(|| opt("aws.endpoint_url")),
                },
                default_voice: opt("tts.default_voice"),
                max_chars: positive("tts.max_chars", "a whole number")? as usize,
                cache_max_bytes: positive("tts.cache_max_bytes", "a size in bytes")? as i64,
                rate_per_minute: positive("tts.rate_per_minute", "a whole number")? as u32,
                daily_chars: positive("tts.daily_chars", "a whole number")? as i64,
                engine_weights: engine_weights(&text("tts.engine_weights")?)?,
                concurrency: positive("tts.concurrency", "a whole number")? as usize,
                user_concurrency: positive("tts.user_concurrency", "a whole number")? as usize,
                worker_wait,
                detached: Duration::from_secs(parse(
                    "tts.detached_seconds",
                    text("tts.detached_seconds")?,
                    "a whole number of seconds",
                )?),
                bucket,
                espeak_program: PathBuf::from(text("tts.espeak_program")?),
                piper: PiperConfig {
                    python: opt("tts.piper_python").map(PathBuf::from),
                    model: opt("tts.piper_model").map(PathBuf::from),
                    workers: positive("tts.piper_workers", "a whole number")? as usize,
                    wait: worker_wait,
                },
            },
            stt: SttConfig {
                engine: stt_engine,
                whisper_python: opt("stt.whisper_python").map(PathBuf::from),
                whisper_model: opt("stt.whisper_model").map(PathBuf::from),
                service: stt_service,
                workers: positive("stt.workers", "a whole number")? as usize,
                wait: Duration::from_secs(positive(
                    "stt.worker_wait_seconds",
                    "a number of seconds",
                )?),
                max_seconds: positive("stt.max_seconds", "a number of seconds")? as u32,
                max_bytes: positive("stt.max_bytes", "a size in bytes")? as usize,
                rate_per_minute: positive("stt.rate_per_minute", "a whole number")? as u32,
                daily_seconds: positive("stt.daily_seconds", "a number of seconds")? as i64,
            },
            chat: ChatConfig {
                knowledge_base: opt("chat.knowledge_base").map(PathBuf::from),
                rate_per_minute: positive("chat.rate_per_minute", "a whole number")? as u32,
                llm,
            },
        })
    }
}

/// `standard=1,neural=4`: Polly engine names with positive weights.
fn engine_weights(value: &str) -> Result<EngineWeights, ConfigError> {
    const ENGINES: [&str; 4] = ["standard", "neural", "long-form", "generative"];
    let bad = |problem: String| invalid(setting("tts.engine_weights"), problem);
    let mut weights = Vec::new();
    for pair in split_list(value) {
        let (engine, weight) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("`{pair}` is not engine=weight")))?;
        let engine = engine.trim();
        if !ENGINES.contains(&engine) {
            return Err(bad(format!(
                "`{engine}` is not one of {}",
                ENGINES.join(", ")
            )));
        }
        let weight: f64 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w > 0.0)
            .ok_or_else(|| bad(format!("the weight of {engine} must be a number above 0")))?;
        weights.push((engine.to_string(), weight));
    }
    Ok(EngineWeights(weights))
}

fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// `http://host/realms/x` → (`http://host/`, `x`).
fn split_issuer(issuer: &Url) -> (Option<Url>, Option<String>) {
    let path = issuer.path().trim_end_matches('/');
    match path.rsplit_once("/realms/") {
        Some((prefix, realm)) if !realm.is_empty() && !realm.contains('/') => {
            let mut base = issuer.clone();
            base.set_path(&format!("{prefix}/"));
            base.set_query(None);
            (Some(base), Some(realm.to_string()))
        }
        _ => (None, None),
    }
}

fn read_toml(path: &Path) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let file_err = |problem: String| ConfigError::File {
        path: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let mut out = Vec::new();
    flatten("", &table, &mut out, &file_err)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(&'static str, String)>,
    file_err: &dyn Fn(String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let value = match v {
            toml::Value::Table(t) => {
                flatten(&key, t, out, file_err)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            toml::Value::Datetime(d) => d.to_string(),
        };
        let setting = SETTINGS
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| file_err(format!("unknown setting `{key}`")))?;
        out.push((setting.key, value));
    }
    Ok(())
}

/// The longest a SigV4 presigned URL may live.
const MAX_PRESIGN_SECONDS: u64 = 7 * 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_presigned_url_may_live_at_most_seven_days() {
        let bucket = ("VOXGATE_AUDIO_BUCKET", "audio");
        let week = load(&[bucket, ("VOXGATE_AUDIO_BUCKET_PRESIGN_SECONDS", "604800")]).unwrap();
        assert_eq!(
            week.tts.bucket.unwrap().presign,
            Some(Duration::from_secs(604800))
        );
        let message = err(&[bucket, ("VOXGATE_AUDIO_BUCKET_PRESIGN_SECONDS", "604801")]);
        assert!(
            message.contains("VOXGATE_AUDIO_BUCKET_PRESIGN_SECONDS"),
            "{message}"
        );
        assert!(message.contains("7 days"), "{message}");
    }

    fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(None, |k| env.get(k).cloned())
    }

    fn err(env: &[(&str, &str)]) -> String {
        match load(env) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_load_and_derive_the_keycloak_admin_target_from_the_issuer() {
        let c = load(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.keycloak.base_url.as_str(), "http://127.0.0.1:8180/");
        assert_eq!(c.keycloak.realm, "voxgate");
        assert_eq!(c.session.cookie_name, "voxgate_session");
        assert!(!c.session.secure);
        assert_eq!(c.body_limit, 65536);
    }

    #[test]
    fn a_discovery_url_must_name_the_realm_and_becomes_the_admin_target() {
        let issuer = (
            "VOXGATE_OIDC_ISSUER",
            "https://id.example.com/realms/voxgate",
        );
        let c = load(&[
            issuer,
            (
                "VOXGATE_OIDC_DISCOVERY_URL",
                "http://keycloak:8080/realms/voxgate",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.oidc.discovery_document(),
            "http://keycloak:8080/realms/voxgate/.well-known/openid-configuration"
        );
        assert_eq!(c.keycloak.base_url.as_str(), "http://keycloak:8080/");
        assert_eq!(
            c.oidc.issuer.as_str(),
            "https://id.example.com/realms/voxgate"
        );
        let c = load(&[issuer]).unwrap();
        assert_eq!(
            c.oidc.discovery_document(),
            "https://id.example.com/realms/voxgate/.well-known/openid-configuration"
        );
        assert_eq!(c.keycloak.base_url.as_str(), "https://id.example.com/");
        for (bad, says) in [
            (
                "http://keycloak:8080/realms/master",
                "issuer's realm (…/realms/voxgate)",
            ),
            ("http://keycloak:8080/", "issuer's realm"),
            ("ftp://keycloak/realms/voxgate", "http or https"),
            ("http://keycloak:8080/realms/voxgate?x=1", "without query"),
        ] {
            let e = err(&[issuer, ("VOXGATE_OIDC_DISCOVERY_URL", bad)]);
            assert!(
                e.starts_with("VOXGATE_OIDC_DISCOVERY_URL:") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn engine_weights_default_to_polly_prices_and_are_checked() {
        let c = load(&[]).unwrap();
        let w = &c.tts.engine_weights;
        assert_eq!(w.weight("standard"), 1.0);
        assert_eq!(w.weight("neural"), 4.0);
        assert_eq!(w.weight("long-form"), 25.0);
        assert_eq!(w.weight("generative"), 7.5);
        let c = load(&[("VOXGATE_TTS_ENGINE_WEIGHTS", "neural=1")]).unwrap();
        assert_eq!(c.tts.engine_weights.weight("neural"), 1.0);
        assert_eq!(c.tts.engine_weights.weight("long-form"), 1.0, "unlisted");
        let e = err(&[("VOXGATE_TTS_ENGINE_WEIGHTS", "turbo=2")]);
        assert!(
            e.starts_with("VOXGATE_TTS_ENGINE_WEIGHTS:") && e.contains("turbo"),
            "{e}"
        );
        let e = err(&[("VOXGATE_TTS_ENGINE_WEIGHTS", "neural=0")]);
        assert!(e.contains("above 0"), "{e}");
        let e = err(&[("VOXGATE_TTS_ENGINE_WEIGHTS", "neural")]);
        assert!(e.contains("engine=weight"), "{e}");
    }

    #[test]
    fn an_invalid_bind_address_names_the_setting_and_the_value() {
        let e = err(&[("VOXGATE_BIND", "localhost:http")]);
        assert!(e.starts_with("VOXGATE_BIND:"), "{e}");
        assert!(e.contains("localhost:http"), "{e}");
    }

    #[test]
    fn bind_takes_a_unix_socket_by_absolute_path_and_a_socket_mode_in_octal() {
        let c = load(&[("VOXGATE_BIND", "unix:/run/voxgate/http.sock")]).unwrap();
        assert_eq!(
            c.bind,
            crate::config::Bind::Unix("/run/voxgate/http.sock".into())
        );
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.bind.to_string(), "unix:/run/voxgate/http.sock");
        for relative in ["unix:http.sock", "unix:", "unix:/run/voxgate/"] {
            let e = err(&[("VOXGATE_BIND", relative)]);
            assert!(
                e.starts_with("VOXGATE_BIND:") && e.contains("unix:/"),
                "{e}"
            );
        }
        let c = load(&[("VOXGATE_SOCKET_MODE", "0600")]).unwrap();
        assert_eq!(c.socket_mode, 0o600);
        assert!(c.socket_proxy_uids.is_empty());
        let c = load(&[("VOXGATE_SOCKET_PROXY_UIDS", "33, 101")]).unwrap();
        assert_eq!(c.socket_proxy_uids, [33, 101]);
        let e = err(&[("VOXGATE_SOCKET_PROXY_UIDS", "www-data")]);
        assert!(e.starts_with("VOXGATE_SOCKET_PROXY_UIDS:"), "{e}");
        for bad in ["660", "0999", "rw-rw----", "01777"] {
            let e = err(&[("VOXGATE_SOCKET_MODE", bad)]);
            assert!(
                e.starts_with("VOXGATE_SOCKET_MODE:") && e.contains(bad),
                "{e}"
            );
        }
    }

    #[test]
    fn a_required_setting_set_to_empty_is_reported_missing() {
        let e = err(&[("VOXGATE_OIDC_AUDIENCE", "  ")]);
        assert_eq!(e, "VOXGATE_OIDC_AUDIENCE: is required but not set");
    }

    #[test]
    fn leeway_above_thirty_seconds_is_refused() {
        let e = err(&[("VOXGATE_OIDC_LEEWAY_SECONDS", "120")]);
        assert!(e.contains("at most 30"), "{e}");
    }

    #[test]
    fn a_non_postgres_database_url_is_refused_without_echoing_it() {
        let e = err(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]);
        assert!(e.starts_with("DATABASE_URL:"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn https_public_url_switches_to_a_host_prefixed_secure_cookie() {
        let c = load(&[("VOXGATE_PUBLIC_URL", "https://voice.example.org")]).unwrap();
        assert!(c.session.secure);
        assert_eq!(c.session.cookie_name, "__Host-voxgate");
    }

    #[test]
    fn a_host_prefixed_cookie_on_plain_http_is_refused() {
        let e = err(&[("VOXGATE_SESSION_COOKIE", "__Host-x")]);
        assert!(e.contains("https"), "{e}");
    }

    #[test]
    fn trusted_proxies_accept_ips_and_cidrs_and_reject_garbage() {
        let c = load(&[("VOXGATE_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")]).unwrap();
        assert!(c.trusted_proxies[1].contains("10.2.3.4".parse().unwrap()));
        assert!(!c.trusted_proxies[1].contains("11.0.0.1".parse().unwrap()));
        assert!(c.trusted_proxies[0].contains("::ffff:127.0.0.1".parse().unwrap()));
        let e = err(&[("VOXGATE_TRUSTED_PROXIES", "10.0.0.0/40")]);
        assert!(e.starts_with("VOXGATE_TRUSTED_PROXIES:"), "{e}");
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let c = load(&[
            ("VOXGATE_OIDC_CLIENT_SECRET", "s3cr3t-value"),
            ("DATABASE_URL", "postgres://u:pw-in-url@h/db"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t-value"));
        assert!(!debug.contains("pw-in-url"));
        assert_eq!(
            c.oidc
                .client_secret
                .as_ref()
                .map(|s| s.expose_secret().to_string()),
            Some("s3cr3t-value".into())
        );
    }

    #[test]
    fn the_file_layer_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("voxgate-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("voxgate.toml");
        std::fs::write(
            &path,
            "bind = \"127.0.0.1:9000\"\n[oidc]\naudience = \"from-file\"\n",
        )
        .unwrap();
        let env: BTreeMap<String, String> =
            [("VOXGATE_OIDC_AUDIENCE".to_string(), "from-env".to_string())].into();
        let c = Config::load_from(Some(&path), |k| env.get(k).cloned()).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:9000");
        assert_eq!(c.oidc.audience, "from-env");

        std::fs::write(&path, "[oidc]\naudiense = \"typo\"\n").unwrap();
        let e = Config::load_from(Some(&path), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown setting `oidc.audiense`"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn every_setting_has_a_unique_env_name_and_key() {
        let mut envs: Vec<_> = SETTINGS.iter().map(|s| s.env).collect();
        envs.sort();
        envs.dedup();
        assert_eq!(envs.len(), SETTINGS.len());
        let mut keys: Vec<_> = SETTINGS.iter().map(|s| s.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), SETTINGS.len());
        assert!(SETTINGS.iter().all(|s| s.env == "DATABASE_URL"
            || s.env.starts_with("VOXGATE_")
            || s.env.starts_with("AWS_")));
    }
}
