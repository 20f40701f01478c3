//! Deployment: the shipped nginx configuration in front of two voxgate
//! processes (the real binary, sharing one database), the Keycloak stand-in
//! and the Polly stand-in, all spoken to over https with a freshly made local
//! CA; plus the invariants of docker-compose.yml and the Dockerfile.
//!
//! nginx is Debian's package, started as a child process on random loopback
//! ports. The end-to-end tests skip (with a message) only when
//! /usr/sbin/nginx is missing; scripts/test installs it, so CI runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keycloak_standin::{Standin, StandinConfig};
use polly_standin::{PollyConfig, PollyStandin};
use serde_json::Value;

use crate::helpers::{TestDatabase, TestSettings};
use crate::stack::{REALM, Stack, form_action, free_port, location, spawn_stack_with, urlencoding};

const NGINX: &str = "/usr/sbin/nginx";
const WEB_SECRET: &str = crate::stack::WEB_SECRET;
const ADMIN_SECRET: &str = crate::stack::ADMIN_SECRET;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn nginx_missing() -> bool {
    if Path::new(NGINX).exists() {
        return false;
    }
    eprintln!("skipping: {NGINX} is not installed (scripts/test installs Debian's nginx)");
    true
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("voxgate-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A local CA and server certificate made by scripts/make-certs.
fn make_certs() -> TempDir {
    let dir = TempDir::new("certs");
    let out = std::process::Command::new(repo("scripts/make-certs"))
        .arg(&dir.0)
        .output()
        .expect("scripts/make-certs runs");
    assert!(
        out.status.success(),
        "make-certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The `${NGINX_*}` placeholders of the template, in order of appearance.
fn template_placeholders(template: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("closed placeholder") + start;
        found.insert(rest[start + 2..end].to_string());
        rest = &rest[end + 1..];
    }
    found
}

/// Renders the shipped nginx files into `dir` the way the nginx Docker
/// image does (envsubst of templates/*.template into conf.d/).
fn render_nginx(dir: &TempDir, vars: &BTreeMap<&str, String>) -> PathBuf {
    std::fs::create_dir_all(dir.path("conf.d")).unwrap();
    std::fs::create_dir_all(dir.path("snippets")).unwrap();
    std::fs::copy(repo("nginx/nginx.conf"), dir.path("nginx.conf")).unwrap();
    for entry in std::fs::read_dir(repo("nginx/snippets")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path("snippets").join(entry.file_name())).unwrap();
    }
    let template = read("nginx/templates/voxgate.conf.template");
    let mut rendered = template.clone();
    for name in template_placeholders(&template) {
        let value = vars
            .get(name.as_str())
            .unwrap_or_else(|| panic!("no value for placeholder {name}"));
        rendered = rendered.replace(&format!("${{{name}}}"), value);
    }
    assert!(!rendered.contains("${"), "every placeholder is filled");
    std::fs::write(dir.path("conf.d/voxgate.conf"), rendered).unwrap();
    dir.path("nginx.conf")
}

/// Main-context directives given on the command line: no daemon, a private
/// pid file, and Debian's unprivileged user for the workers when root.
fn nginx_globals(dir: &TempDir) -> String {
    let mut globals = format!("daemon off; pid {};", dir.path("nginx.pid").display());
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let www_data = std::fs::read_to_string("/etc/passwd")
        .map(|p| p.lines().any(|l| l.starts_with("www-data:")))
        .unwrap_or(false);
    if root && www_data {
        globals.push_str(" user www-data;");
    }
    globals
}

/// `nginx -t` on a rendered configuration.
fn nginx_test(dir: &TempDir, conf: &Path) -> std::process::Output {
    std::process::Command::new(NGINX)
        .arg("-t")
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(conf)
        .arg("-g")
        .arg(nginx_globals(dir))
        .output()
        .expect("nginx runs")
}

struct Nginx {
    child: tokio::process::Child,
    _dir: TempDir,
    https_port: u16,
    http_port: u16,
}

impl Nginx {
    /// Renders the configuration for `https_port` (fixed by the caller: the
    /// realm and voxgate need the origin first), checks it with `nginx -t`
    /// and starts nginx in the foreground.
    async fn start(
        certs: &TempDir,
        https_port: u16,
        upstreams: &[SocketAddr],
        keycloak: SocketAddr,
    ) -> Nginx {
        let http_port = free_port();
        let dir = TempDir::new("nginx");
        let conf = render_nginx(
            &dir,
            &nginx_vars(certs, https_port, http_port, upstreams, keycloak),
        );
        let checked = nginx_test(&dir, &conf);
        assert!(
            checked.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let child = tokio::process::Command::new(NGINX)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(nginx_globals(&dir))
            .stdin(Stdio::null())
            .stdout(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", https_port))
                .await
                .is_ok()
            {
                return Nginx {
                    child,
                    _dir: dir,
                    https_port,
                    http_port,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not start listening on {https_port}");
    }

    fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.https_port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A SIGKILL (kill_on_drop) would leave the workers running: ask the
        // master for a fast shutdown, which stops them before it exits.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..200 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn nginx_vars(
    certs: &TempDir,
    https_port: u16,
    http_port: u16,
    upstreams: &[SocketAddr],
    keycloak: SocketAddr,
) -> BTreeMap<&'static str, String> {
    let cert = |name: &str| certs.path(name).display().to_string();
    BTreeMap::from([
        ("NGINX_HTTP_PORT", format!("127.0.0.1:{http_port}")),
        ("NGINX_HTTPS_PORT", format!("127.0.0.1:{https_port}")),
        ("NGINX_SERVER_NAME", "localhost 127.0.0.1".to_string()),
        ("NGINX_PUBLIC_HOST", format!("127.0.0.1:{https_port}")),
        ("NGINX_SSL_CERT", cert("server.pem")),
        ("NGINX_SSL_KEY", cert("server-key.pem")),
        ("NGINX_SSL_TRUSTED_CA", cert("ca.pem")),
        ("NGINX_OCSP_STAPLING", "off".to_string()),
        (
            "NGINX_VOXGATE_SERVERS",
            upstreams
                .iter()
                .map(|a| format!("server {a} max_fails=3 fail_timeout=10s;"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("NGINX_KEYCLOAK_SERVER", keycloak.to_string()),
    ])
}

/// One voxgate process (`voxgate serve`), killed on drop.
struct Instance {
    _child: tokio::process::Child,
    port: u16,
}

impl Instance {
    async fn start(env: &BTreeMap<String, String>) -> Instance {
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .arg("serve")
            .env_clear()
            .envs(crate::helpers::base_env())
            .envs(env)
            .env("VOXGATE_BIND", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("voxgate starts");
        let instance = Instance {
            _child: child,
            port,
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(instance.url("/readyz")).send().await
                && r.status() == 200
            {
                return instance;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("voxgate on port {port} never became ready");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Requests this instance counted for `route` with `status`.
    async fn requests(&self, route: &str, status: u16) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("voxgate_http_requests_total{"))
            .filter(|l| l.contains(&format!("route=\"{route}\"")))
            .filter(|l| l.contains(&format!("status=\"{status}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// nginx in front of two voxgate instances, Keycloak and Polly.
struct Deployment {
    nginx: Nginx,
    apps: [Instance; 2],
    kc: Standin,
    polly: PollyStandin,
    certs: TempDir,
    _db: TestDatabase,
}

impl Deployment {
    async fn start() -> Deployment {
        let certs = make_certs();
        let https_port = free_port();
        let origin = format!("https://127.0.0.1:{https_port}");
        // The realm's browser URLs point at the nginx origin, as in production.
        let realm: Value = serde_json::from_str(
            &read("keycloak-realm/realm.json")
                .replace("http://127.0.0.1:8080", &origin)
                .replace("http://localhost:8080", &origin),
        )
        .unwrap();
        let kc = Standin::start(StandinConfig {
            realm_jsons: vec![realm],
            ..StandinConfig::default()
        })
        .await
        .expect("keycloak stand-in starts");
        let polly = PollyStandin::start(PollyConfig {
            chunk_size: 1024,
            ..PollyConfig::default()
        })
        .await
        .expect("polly stand-in starts");
        let db = TestDatabase::new().await;
        let env: BTreeMap<String, String> = [
            ("DATABASE_URL", db.url.clone()),
            ("VOXGATE_PUBLIC_URL", origin.clone()),
            ("VOXGATE_TRUSTED_PROXIES", "127.0.0.1".into()),
            ("VOXGATE_OIDC_ISSUER", kc.issuer(REALM)),
            ("VOXGATE_OIDC_CLIENT_SECRET", WEB_SECRET.into()),
            ("VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET.into()),
            ("VOXGATE_TTS_ENGINE", "polly".into()),
            ("AWS_ENDPOINT_URL_POLLY", polly.endpoint_url()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "AKIDVOXGATETEST".into()),
            ("AWS_SECRET_ACCESS_KEY", "voxgate-test-secret".into()),
            ("VOXGATE_LOG", "warn,voxgate=info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let (a, b) = tokio::join!(Instance::start(&env), Instance::start(&env));
        let kc_addr: SocketAddr = kc.base_url().trim_start_matches("http://").parse().unwrap();
        let nginx = Nginx::start(&certs, https_port, &[a.addr(), b.addr()], kc_addr).await;
        Deployment {
            nginx,
            apps: [a, b],
            kc,
            polly,
            certs,
            _db: db,
        }
    }

    fn origin(&self) -> String {
        self.nginx.origin()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// A client that trusts only the test CA (plus the system roots).
    fn client(&self) -> reqwest::ClientBuilder {
        let pem = std::fs::read(self.certs.path("ca.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
    }

    async fn token(&self, username: &str, password: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/protocol/openid-connect/token",
                self.kc.issuer(REALM)
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", username),
                ("password", password),
                ("scope", "openid"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }
}

fn header_values(response: &reqwest::Response, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The cookie `name` set by a response, with its attributes.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    header_values(response, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

#[test]
fn the_shipped_nginx_configuration_passes_nginx_t() {
    if nginx_missing() {
        return;
    }
    let certs = make_certs();
    let dir = TempDir::new("nginx-t");
    let conf = render_nginx(
        &dir,
        &nginx_vars(
            &certs,
            free_port(),
            free_port(),
            &[
                "127.0.0.1:18081".parse().unwrap(),
                "127.0.0.1:18082".parse().unwrap(),
            ],
            "127.0.0.1:18180".parse().unwrap(),
        ),
    );
    let out = nginx_test(&dir, &conf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
}

#[tokio::test]
async fn plain_http_is_redirected_permanently_to_the_https_origin() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let response = d
        .client()
        .build()
        .unwrap()
        .get(format!(
            "http://127.0.0.1:{}/chat?room=1",
            d.nginx.http_port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(
        response.headers()["location"],
        format!("{}/chat?room=1", d.origin()).as_str()
    );
}

#[tokio::test]
async fn https_responses_carry_hsts_and_the_apps_security_headers_exactly_once() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let client = d.client().build().unwrap();
    for path in ["/api/version", "/", "/auth/signed-out", "/no-such-page"] {
        let response = client.get(d.url(path)).send().await.unwrap();
        assert_eq!(
            header_values(&response, "strict-transport-security"),
            vec!["max-age=63072000"],
            "{path}"
        );
        for name in [
            "content-security-policy",
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
        ] {
            assert_eq!(
                header_values(&response, name).len(),
                1,
                "{path}: {name} exactly once"
            );
        }
        assert!(
            response
                .headers()
                .get("server")
                .is_none_or(|s| s == "nginx"),
            "no version in the Server header"
        );
    }

    // HTTP/2 is offered through ALPN, next to HTTP/1.1.
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-alpn", "h2,http/1.1", "-connect"])
        .arg(format!("127.0.0.1:{}", d.nginx.https_port))
        .arg("-CAfile")
        .arg(d.certs.path("ca.pem"))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("openssl s_client runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
}

#[tokio::test]
async fn sign_in_through_nginx_uses_https_redirect_uris_and_the_session_works_on_both_instances() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let browser = d.client().cookie_store(true).build().unwrap();

    let start = browser
        .get(d.url("/auth/login?return_to=%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let login_cookie = set_cookie(&start, "__Host-voxgate-login").expect("login cookie");
    assert!(login_cookie.contains("Secure"), "{login_cookie}");
    let authorize = location(&start);
    assert!(authorize.starts_with(&d.kc.issuer(REALM)), "{authorize}");
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(format!("{}/auth/callback", d.origin()).as_str()),
        "Keycloak is told the https origin, not an instance's address"
    );

    let page = browser.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let action = form_action(&page.text().await.unwrap());
    let submitted = browser
        .post(&action)
        .form(&[("username", "alice"), ("password", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 302);
    let callback = location(&submitted);
    assert!(
        callback.starts_with(&format!("{}/auth/callback?", d.origin())),
        "{callback}"
    );

    let done = browser.get(&callback).send().await.unwrap();
    assert_eq!(done.status(), 303, "callback accepted");
    let session = set_cookie(&done, "__Host-voxgate").expect("session cookie");
    for attribute in ["Secure", "HttpOnly", "Path=/"] {
        assert!(session.contains(attribute), "{attribute}: {session}");
    }
    let me: Value = browser
        .get(d.url("/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["authenticatedBy"], "session");

    // The session lives in the shared database: either instance accepts it.
    let pair = session.split(';').next().unwrap().to_string();
    for app in &d.apps {
        let response = reqwest::Client::new()
            .get(app.url("/api/me"))
            .header("cookie", &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "instance on port {}", app.port);
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["username"], "alice");
    }
}

#[tokio::test]
async fn bearer_requests_through_nginx_are_spread_over_both_instances() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let token = d.token("bob", "bob").await;
    let client = d.client().build().unwrap();
    let before = [
        d.apps[0].requests("/api/me", 200).await,
        d.apps[1].requests("/api/me", 200).await,
    ];

    const N: usize = 12;
    for _ in 0..N {
        let response = client
            .get(d.url("/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["username"], "bob");
    }

    let served = [
        d.apps[0].requests("/api/me", 200).await - before[0],
        d.apps[1].requests("/api/me", 200).await - before[1],
    ];
    assert_eq!(served[0] + served[1], N as f64, "{served:?}");
    assert!(
        served.iter().all(|n| *n >= 1.0),
        "both instances served requests: {served:?}"
    );

    // A request id is passed through when sent, and made by nginx when not.
    let sent = client
        .get(d.url("/api/version"))
        .header("x-request-id", "deploy-test-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "deploy-test-0001");
    let made = client.get(d.url("/api/version")).send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "nginx's $request_id reached voxgate: {id}"
    );
}

#[tokio::test]
async fn speech_audio_streams_through_nginx_before_synthesis_finishes() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let token = d.token("bob", "bob").await;
    d.polly.set_chunk_delay(Duration::from_millis(150));
    let text = "This sentence is long enough to make several chunks of audio. ".repeat(4);
    let url = format!(
        "{}?Text={}&VoiceId=Joanna&OutputFormat=mp3",
        d.url("/textToSpeech"),
        urlencoding(&text)
    );
    let started = Instant::now();
    let response = d
        .client()
        .build()
        .unwrap()
        .get(url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first chunk").unwrap();
    let first_at = started.elapsed();
    assert!(!first.is_empty());
    let mut bytes = first.len();
    while let Some(chunk) = body.next().await {
        bytes += chunk.unwrap().len();
    }
    let done_at = started.elapsed();
    assert!(bytes > 4 * 1024, "a real clip arrived ({bytes} bytes)");
    // Polly sends a 1 KiB piece every 150 ms, so the clip takes seconds; a
    // buffering proxy would deliver the first byte only at the end.
    assert!(
        done_at > first_at + Duration::from_millis(600),
        "first byte after {first_at:?}, last after {done_at:?}"
    );
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_the_trusted_proxy() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let expected = format!("{}/auth/callback", d.origin());
    let redirect_uri = |response: &reqwest::Response| {
        assert_eq!(response.status(), 303);
        query_param(&location(response), "redirect_uri").expect("redirect_uri")
    };
    let spoof = |client: reqwest::Client, url: String| async move {
        client
            .get(url)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .send()
            .await
            .unwrap()
    };
    let no_redirects = || reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());

    // Straight to an instance from 127.0.0.2, which is not a trusted proxy.
    let untrusted = no_redirects()
        .local_address(Some(IpAddr::from([127, 0, 0, 2])))
        .build()
        .unwrap();
    for app in &d.apps {
        let response = spoof(untrusted.clone(), app.url("/auth/login")).await;
        assert_eq!(redirect_uri(&response), expected, "port {}", app.port);
    }

    // Through nginx, whatever the client claims is replaced.
    let response = spoof(d.client().build().unwrap(), d.url("/auth/login")).await;
    assert_eq!(redirect_uri(&response), expected);

    // The same headers from the trusted address are believed: this is what
    // makes the checks above meaningful.
    let trusted = no_redirects().build().unwrap();
    let response = spoof(trusted, d.apps[0].url("/auth/login")).await;
    assert_eq!(
        redirect_uri(&response),
        "https://evil.example/auth/callback"
    );
}

#[tokio::test]
async fn keycloak_sign_in_is_proxied_but_its_admin_api_and_the_metrics_are_not() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let client = d.client().build().unwrap();

    let discovery = client
        .get(d.url("/realms/voxgate/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), 200);
    let body: Value = discovery.json().await.unwrap();
    assert_eq!(body["issuer"], d.kc.issuer(REALM).as_str());

    for path in [
        "/admin/master/console/",
        "/admin/realms/voxgate/users",
        "/metrics",
    ] {
        let response = client.get(d.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path} is closed at the edge");
    }
    // voxgate's own admin page (exactly /admin) is not caught by that rule.
    let admin_page = client.get(d.url("/admin")).send().await.unwrap();
    assert_ne!(admin_page.status(), 403);
    assert!(
        header_values(&admin_page, "content-security-policy").len() == 1,
        "answered by voxgate"
    );

    // A host name that is not ours is refused before any upstream.
    let other_host = client
        .get(d.url("/api/version"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(other_host.status(), 421);
}

#[tokio::test]
async fn cookies_are_secure_when_a_trusted_proxy_reports_https() {
    // A public URL of plain http (e.g. an internal name) behind a TLS proxy:
    // the browser still reached us over https, so cookies must be Secure.
    let stack: Stack =
        spawn_stack_with(TestSettings::default().set("VOXGATE_TRUSTED_PROXIES", "127.0.0.1")).await;
    let host = stack.app.address.to_string();
    let login = |https: bool| {
        let mut request = stack.app.client.get(stack.app.url("/auth/login"));
        if https {
            request = request
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", &host);
        }
        request.send()
    };

    let proxied = login(true).await.unwrap();
    assert_eq!(proxied.status(), 303);
    let cookie = set_cookie(&proxied, "voxgate_login").expect("login cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert_eq!(
        query_param(&location(&proxied), "redirect_uri"),
        Some(format!("https://{host}/auth/callback"))
    );

    let direct = login(false).await.unwrap();
    let cookie = set_cookie(&direct, "voxgate_login").expect("login cookie");
    assert!(!cookie.contains("Secure"), "{cookie}");
}

// ---- docker-compose.yml and Dockerfile ----

fn compose() -> Value {
    serde_yaml_ng::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("service {name}"))
}

fn env<'a>(compose: &'a Value, name: &str) -> &'a serde_json::Map<String, Value> {
    service(compose, name)["environment"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: environment as a map"))
}

fn env_str<'a>(compose: &'a Value, name: &str, key: &str) -> &'a str {
    env(compose, name)
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{name}: {key}"))
}

/// `(repository path, container path)` of every bind mount of a service.
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| match v {
            Value::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next()?;
                let target = parts.next()?;
                source
                    .starts_with("./")
                    .then(|| (source.to_string(), target.to_string()))
            }
            long => (long["type"] == "bind").then(|| {
                (
                    long["source"].as_str().unwrap().to_string(),
                    long["target"].as_str().unwrap().to_string(),
                )
            }),
        })
        .collect()
}

/// Files scripts/make-certs writes: mounted, but not in the repository.
const GENERATED_CERT_FILES: &[&str] = &["ca.pem", "server.pem", "server-key.pem"];

#[test]
fn compose_images_are_pinned_and_every_service_has_a_health_check() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    assert_eq!(
        services.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["keycloak", "nginx", "postgres", "voxgate"])
    );
    for (name, s) in services {
        match s["image"].as_str() {
            Some(image) if s.get("build").is_none() => {
                let (_, tag) = image
                    .rsplit_once(':')
                    .unwrap_or_else(|| panic!("{name}: image {image} has no tag"));
                assert!(
                    tag.chars().next().is_some_and(|c| c.is_ascii_digit()),
                    "{name}: {image} is pinned to a version, not `{tag}`"
                );
                assert!(!tag.contains("latest"), "{name}: {image}");
            }
            _ => assert_eq!(s["build"], ".", "{name} is built from the Dockerfile"),
        }
        let test = &s["healthcheck"]["test"];
        assert!(
            test.as_array().is_some_and(|t| t.len() >= 2),
            "{name} has a health check"
        );
    }
    assert_eq!(
        service(&compose, "keycloak")["image"].as_str().unwrap(),
        format!("quay.io/keycloak/keycloak:{}", pinned_keycloak_version()),
        "the official Keycloak image, the same version as the tests run (scripts/keycloak)"
    );
    let keycloak_check = service(&compose, "keycloak")["healthcheck"]["test"].to_string();
    assert!(
        keycloak_check.contains("/dev/tcp/127.0.0.1/9000") && !keycloak_check.contains("curl"),
        "Keycloak's health is read on the management port without curl: {keycloak_check}"
    );
    assert_eq!(env_str(&compose, "keycloak", "KC_HEALTH_ENABLED"), "true");
    let voxgate_check = service(&compose, "voxgate")["healthcheck"]["test"].to_string();
    assert!(voxgate_check.contains("/readyz"), "{voxgate_check}");
    let postgres_check = service(&compose, "postgres")["healthcheck"]["test"].to_string();
    assert!(postgres_check.contains("pg_isready"), "{postgres_check}");

    for dependent in ["keycloak", "voxgate"] {
        assert_eq!(
            service(&compose, dependent)["depends_on"]["postgres"]["condition"],
            "service_healthy",
            "{dependent} waits for Postgres"
        );
    }
    assert_eq!(
        service(&compose, "voxgate")["depends_on"]["keycloak"]["condition"],
        "service_healthy"
    );
}

#[test]
fn compose_mounts_and_ports_point_at_real_files_and_loopback_only() {
    let compose = compose();
    for (name, s) in compose["services"].as_object().unwrap() {
        for (source, target) in bind_mounts(s) {
            let path = repo(source.trim_start_matches("./"));
            let generated = source.starts_with("./nginx/certs/")
                && GENERATED_CERT_FILES.iter().any(|f| source.ends_with(f));
            if generated {
                assert!(
                    path.parent().unwrap().is_dir(),
                    "{name}: {source} is made by scripts/make-certs into an existing directory"
                );
            } else {
                assert!(path.exists(), "{name}: mount source {source} exists");
            }
            assert!(target.starts_with('/'), "{name}: {target}");
        }
        for port in s["ports"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let port = port.as_str().expect("ports as strings");
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name}: {port} is published on loopback only (dev secrets)"
            );
        }
    }
    let keycloak = bind_mounts(service(&compose, "keycloak"));
    assert!(keycloak.contains(&(
        "./keycloak-realm".to_string(),
        "/opt/keycloak/data/import".to_string()
    )));
    let command = service(&compose, "keycloak")["command"].to_string();
    assert!(
        command.contains("start-dev") && command.contains("--import-realm"),
        "{command}"
    );
    let nginx: BTreeMap<_, _> = bind_mounts(service(&compose, "nginx"))
        .into_iter()
        .map(|(s, t)| (t, s))
        .collect();
    assert_eq!(nginx["/etc/nginx/nginx.conf"], "./nginx/nginx.conf");
    assert_eq!(nginx["/etc/nginx/templates"], "./nginx/templates");
    assert_eq!(nginx["/etc/nginx/snippets"], "./nginx/snippets");
    assert_eq!(nginx["/etc/nginx/certs"], "./nginx/certs");
    let postgres = bind_mounts(service(&compose, "postgres"));
    assert!(
        postgres
            .iter()
            .any(|(_, t)| t.starts_with("/docker-entrypoint-initdb.d/")),
        "an init script creates Keycloak's database"
    );
    assert!(read("scripts/postgres-init-keycloak.sql").contains("CREATE DATABASE keycloak"));
}

#[test]
fn compose_gives_voxgate_only_settings_it_reads() {
    // Standard AWS variables read by the SDK's credential chain.
    const AWS: &[&str] = &[
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_POLLY",
    ];
    let compose = compose();
    let known: BTreeSet<&str> = voxgate::config::SETTINGS
        .iter()
        .map(|s| s.env)
        .chain(AWS.iter().copied())
        .collect();
    let names = env(&compose, "voxgate");
    for name in names.keys() {
        assert!(
            known.contains(name.as_str()),
            "{name} is not a setting voxgate reads"
        );
    }
    for required in [
        "DATABASE_URL",
        "VOXGATE_PUBLIC_URL",
        "VOXGATE_TRUSTED_PROXIES",
        "VOXGATE_OIDC_ISSUER",
        "VOXGATE_OIDC_EXTRA_ISSUERS",
        "VOXGATE_OIDC_CLIENT_SECRET",
        "VOXGATE_KEYCLOAK_URL",
        "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET",
    ] {
        assert!(names.contains_key(required), "voxgate gets {required}");
    }
    assert_eq!(env_str(&compose, "voxgate", "VOXGATE_TTS_ENGINE"), "auto");
    for aws in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            names[aws].is_null(),
            "{aws} is passed through from the shell, never set to a value here"
        );
    }
}

#[test]
fn compose_wiring_agrees_between_nginx_keycloak_voxgate_and_the_realm() {
    let compose = compose();
    let public_host = env_str(&compose, "nginx", "NGINX_PUBLIC_HOST");
    let public_url = env_str(&compose, "voxgate", "VOXGATE_PUBLIC_URL");
    assert_eq!(public_url, format!("https://{public_host}"));
    assert_eq!(
        env_str(&compose, "keycloak", "KC_HOSTNAME"),
        public_url,
        "Keycloak's pinned hostname is the public origin"
    );
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_OIDC_ISSUER"),
        format!("{public_url}/realms/voxgate")
    );
    let https_port = env_str(&compose, "nginx", "NGINX_HTTPS_PORT");
    assert!(public_host.ends_with(&format!(":{https_port}")));
    assert_eq!(
        service(&compose, "voxgate")["network_mode"],
        "service:nginx"
    );
    // In nginx's network namespace nginx reaches voxgate on loopback, the
    // only trusted proxy address.
    let bind = env_str(&compose, "voxgate", "VOXGATE_BIND");
    assert!(bind.starts_with("127.0.0.1:"), "{bind}");
    assert!(
        env_str(&compose, "nginx", "NGINX_VOXGATE_SERVERS").contains(&format!("server {bind}"))
    );
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_TRUSTED_PROXIES"),
        "127.0.0.1"
    );
    assert!(voxgate_check_uses_port(
        &compose,
        bind.rsplit(':').next().unwrap()
    ));

    let realm: Value = serde_json::from_str(&read("keycloak-realm/realm.json")).unwrap();
    let client = |id: &str| {
        realm["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["clientId"] == id)
            .unwrap()
            .clone()
    };
    let web = client("voxgate-web");
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_OIDC_CLIENT_SECRET"),
        web["secret"]
    );
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET"),
        client("voxgate-admin")["secret"]
    );
    assert!(
        web["redirectUris"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == &Value::from(format!("{public_url}/*"))),
        "the realm accepts redirects to {public_url}"
    );

    // nginx gets a value for every placeholder of the template, and only
    // those (plus the image's envsubst filter).
    let placeholders = template_placeholders(&read("nginx/templates/voxgate.conf.template"));
    let given: BTreeSet<String> = env(&compose, "nginx")
        .keys()
        .filter(|k| k.as_str() != "NGINX_ENVSUBST_FILTER")
        .cloned()
        .collect();
    assert_eq!(given, placeholders);
    let ports: Vec<&str> = service(&compose, "nginx")["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for port in [https_port, env_str(&compose, "nginx", "NGINX_HTTP_PORT")] {
        assert!(
            ports.contains(&format!("127.0.0.1:{port}:{port}").as_str()),
            "nginx publishes {port} as itself (voxgate uses the same origin inside): {ports:?}"
        );
    }
}

fn voxgate_check_uses_port(compose: &Value, port: &str) -> bool {
    service(compose, "voxgate")["healthcheck"]["test"]
        .to_string()
        .contains(&format!("/dev/tcp/127.0.0.1/{port}"))
}

#[test]
fn every_nginx_placeholder_is_documented() {
    let docs = read("docs/deployment.md");
    for name in template_placeholders(&read("nginx/templates/voxgate.conf.template")) {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} in docs/deployment.md"
        );
    }
}

#[test]
fn the_dockerfile_builds_a_pinned_non_root_image_with_a_health_check() {
    let dockerfile = read("Dockerfile");
    let from: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(
        from.len(),
        3,
        "manifests, builder and runtime stages: {from:?}"
    );
    for line in &from {
        let image = line.split_whitespace().next().unwrap();
        let (_, tag) = image.rsplit_once(':').expect("tagged image");
        assert!(!tag.contains("latest"), "{image}");
    }
    assert!(from[0].starts_with("rust:") && from[0].ends_with(" AS manifests"));
    assert!(from[1].starts_with("rust:") && from[1].ends_with(" AS builder"));
    assert!(from[2].starts_with("debian:bookworm-slim"), "{}", from[2]);

    let build_lines: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.contains("cargo build"))
        .collect();
    assert_eq!(
        build_lines.len(),
        2,
        "dependencies first (stub sources), then voxgate"
    );
    for line in build_lines {
        assert!(
            line.contains("--release") && line.contains("--locked") && line.contains("-p voxgate"),
            "{line}"
        );
    }
    let runtime = &dockerfile[dockerfile.rfind("FROM ").unwrap()..];
    assert!(runtime.contains("espeak-ng") && runtime.contains("ca-certificates"));
    // The neural voice, at the versions the tests run.
    assert!(
        runtime.contains("-r /opt/piper-src/requirements.txt")
            && runtime.contains("VOXGATE_PIPER_PYTHON=/opt/piper/bin/python"),
        "the runtime image carries the pinned neural voice"
    );
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as non-root: {user}"
    );
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("/readyz"));

    // Everything the builder copies is in the build context.
    let ignore = read(".dockerignore");
    let builder = &dockerfile[dockerfile.find(" AS builder").unwrap()..];
    for line in builder.lines().filter_map(|l| l.strip_prefix("COPY ")) {
        if line.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(repo(source).exists(), "COPY {source}: exists");
            let source = source.trim_end_matches('/');
            assert!(
                ignore
                    .lines()
                    .any(|l| l.trim_start_matches('!').trim_end_matches('/') == source),
                "COPY {source}: admitted by .dockerignore"
            );
        }
    }
    // The stub build compiles the dependencies; the second build voxgate.
    let stub = builder
        .find("touch server/src/lib.rs crates/audio/src/lib.rs")
        .unwrap();
    let sources = builder.find("COPY server/src").unwrap();
    assert!(
        stub < sources,
        "dependencies are built before the sources arrive"
    );
}

/// The Keycloak version `scripts/keycloak` fetches and the real-Keycloak
/// lane runs.
fn pinned_keycloak_version() -> String {
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/keycloak"))
            .unwrap();
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix("KEYCLOAK_VERSION="))
        .expect("scripts/keycloak pins KEYCLOAK_VERSION");
    assert!(line.starts_with("26."), "a Keycloak 26 release: {line}");
    line.to_string()
}
