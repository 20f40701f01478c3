//! Configuration: the only module that reads the environment.
//!
//! Every setting is declared once in [`SETTINGS`] with its environment
//! variable, TOML key, default and help text. Values are layered
//! defaults → optional TOML file → environment, then parsed into the typed
//! [`Config`]. A bad value fails start-up with a message naming the
//! setting. `--help` and `docs/configuration.md` are generated from the same
//! table, so the documentation cannot drift from the code.

//!
//! [`settings`] is the table, [`load`] turns layered text into the typed
//! structs below, and [`docs`] renders the table as help and Markdown.

mod docs;
mod load;
mod settings;

pub use docs::{help_text, markdown_table};
pub use settings::{SETTINGS, Setting};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {problem}")]
    Invalid { setting: String, problem: String },
    #[error("config file {path}: {problem}")]
    File { path: String, problem: String },
}

fn invalid(setting: &Setting, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.env.to_string(),
        problem: problem.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtsEngineChoice {
    Auto,
    Polly,
    Local,
    Neural,
}

/// A proxy address or network whose forwarded headers are believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has an invalid prefix length"))?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

/// Where the HTTP server listens: a TCP address, or a Unix domain socket
/// (`unix:/absolute/path`) for a proxy on the same machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Bind {
    type Err = ();

    fn from_str(s: &str) -> Result<Bind, ()> {
        match s.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') && path.len() > 1 && !path.ends_with('/') => {
                Ok(Bind::Unix(PathBuf::from(path)))
            }
            Some(_) => Err(()),
            None => s.parse().map(Bind::Tcp).map_err(|_| ()),
        }
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Tcp(address) => address.fmt(f),
            Bind::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// Apply pending migrations at start; otherwise only check the schema.
    pub database_migrate: bool,
    pub bind: Bind,
    /// Permissions of the socket file when `bind` is a Unix socket.
    pub socket_mode: u32,
    /// Users whose Unix-socket connections count as the proxy; empty: the
    /// socket's own user and group (see `listener::Peer`).
    pub socket_proxy_uids: Vec<u32>,
    pub public_url: Url,
    pub trusted_proxies: Vec<IpNet>,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub body_limit: usize,
    pub shutdown_grace: Duration,
    pub oidc: OidcConfig,
    pub session: SessionConfig,
    pub keycloak: KeycloakAdminConfig,
    pub users: UsersConfig,
    pub tts: TtsConfig,
    pub stt: SttConfig,
    pub chat: ChatConfig,
}

#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: Url,
    /// The realm's URL as voxgate reaches it, when not the issuer.
    pub discovery_url: Option<Url>,
    pub extra_issuers: Vec<String>,
    pub allowed_clients: Vec<String>,
    pub audience: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub leeway: Duration,
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
}

impl OidcConfig {
    /// Where the discovery document is fetched: the realm as voxgate
    /// reaches it.
    pub fn discovery_document(&self) -> String {
        let base = self.discovery_url.as_ref().unwrap_or(&self.issuer);
        format!(
            "{}/.well-known/openid-configuration",
            base.as_str().trim_end_matches('/')
        )
    }
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub secure: bool,
    pub idle: Duration,
    pub absolute: Duration,
    pub sign_ins_per_address: u32,
    pub sign_ins_per_instance: u32,
}

#[derive(Clone, Debug)]
pub struct KeycloakAdminConfig {
    pub base_url: Url,
    pub realm: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
}

#[derive(Clone, Debug)]
pub struct UsersConfig {
    pub password_min_length: usize,
}

/// AWS settings read for the Polly engine. The SDK's credential chain
/// (profiles, instance roles…) still applies when no key is given.
#[derive(Clone, Debug, Default)]
pub struct AwsConfig {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    pub session_token: Option<SecretString>,
    pub endpoint_url: Option<String>,
}

impl AwsConfig {
    /// Whether the environment points at an AWS account at all.
    pub fn configured(&self) -> bool {
        self.region.is_some() && (self.access_key_id.is_some() || self.profile.is_some())
    }
}

/// Where finished speech audio goes when not in Postgres.
#[derive(Clone, Debug)]
pub struct BucketConfig {
    pub name: String,
    pub endpoint_url: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    /// `None`: voxgate streams hits; `Some`: redirects to a presigned URL.
    pub presign: Option<std::time::Duration>,
    pub timeout: std::time::Duration,
}

#[derive(Clone, Debug)]
pub struct TtsConfig {
    pub engine: TtsEngineChoice,
    pub aws: AwsConfig,
    pub default_voice: Option<String>,
    pub max_chars: usize,
    pub cache_max_bytes: i64,
    pub rate_per_minute: u32,
    pub daily_chars: i64,
    pub engine_weights: EngineWeights,
    pub concurrency: usize,
    /// Syntheses one user may lead at once on this instance.
    pub user_concurrency: usize,
    /// Longest wait for a synthesis slot or a worker.
    pub worker_wait: std::time::Duration,
    /// How long a registered synthesis outlives its last listener.
    pub detached: std::time::Duration,
    pub bucket: Option<BucketConfig>,
    pub espeak_program: PathBuf,
    pub piper: PiperConfig,
}

/// Quota weights by Polly engine (`standard`, `neural`, `long-form`,
/// `generative`): what one spoken character costs of the daily quota.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineWeights(pub Vec<(String, f64)>);

impl EngineWeights {
    /// The weight of `engine`; 1 when not listed.
    pub fn weight(&self, engine: &str) -> f64 {
        self.0
            .iter()
            .find(|(name, _)| name == engine)
            .map_or(1.0, |(_, w)| *w)
    }
}

/// The neural voice's worker processes.
#[derive(Clone, Debug)]
pub struct PiperConfig {
    pub python: Option<PathBuf>,
    pub model: Option<PathBuf>,
    pub workers: usize,
    /// Longest wait for a free worker (per piece of text).
    pub wait: std::time::Duration,
}

/// The speech recogniser.
#[derive(Clone, Debug)]
pub struct SttConfig {
    /// `None`: recognition is off.
    pub engine: Option<SttEngineChoice>,
    pub whisper_python: Option<PathBuf>,
    pub whisper_model: Option<PathBuf>,
    pub service: Option<SttServiceConfig>,
    pub workers: usize,
    /// Longest wait for a free worker.
    pub wait: std::time::Duration,
    pub max_seconds: u32,
    pub max_bytes: usize,
    pub rate_per_minute: u32,
    pub daily_seconds: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SttEngineChoice {
    /// The service if configured, else the local recogniser if it is
    /// installed, else none.
    Auto,
    Local,
    Service,
}

/// An OpenAI-compatible transcription service.
#[derive(Clone, Debug)]
pub struct SttServiceConfig {
    /// Up to and including `/v1`.
    pub url: Url,
    pub key: Option<SecretString>,
    pub model: String,
}

#[derive(Clone, Debug)]
pub struct ChatConfig {
    pub knowledge_base: Option<PathBuf>,
    pub rate_per_minute: u32,
    pub llm: Option<LlmConfig>,
}

#[derive(Clone, Debug)]
pub struct LlmConfig {
    pub url: Url,
    pub model: String,
    pub daily_chars: i64,
    pub api_key: Option<SecretString>,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}
