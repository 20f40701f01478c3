//! The shipped nginx configuration in front of two voxgate processes (the
//! real binary, sharing one database), the Keycloak stand-in and the Polly
//! stand-in, all spoken to over https with a freshly made local CA.
//!
//! nginx is Debian's package, started as a child process on random loopback
//! ports. The tests skip (with a message) only when /usr/sbin/nginx is
//! missing; scripts/test installs it, so CI runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keycloak_standin::{Standin, StandinConfig};
use polly_standin::{PollyConfig, PollyStandin};
use serde_json::Value;

use super::repo;
use crate::helpers::{Caller, TestDatabase, TestSettings, free_port};
use crate::stack::{REALM, Stack, form_action, location, spawn_stack_with, urlencoding};

const NGINX: &str = "/usr/sbin/nginx";
const WEB_SECRET: &str = crate::stack::WEB_SECRET;
const ADMIN_SECRET: &str = crate::stack::ADMIN_SECRET;

pub(crate) fn nginx_missing() -> bool {
    if Path::new(NGINX).exists() {
        return false;
    }
    eprintln!("skipping: {NGINX} is not installed (scripts/test installs Debian's nginx)");
    true
}

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("voxgate-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A local CA and server certificate made by scripts/make-certs.
pub(crate) fn make_certs() -> TempDir {
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

/// The `${NGINX_*}` placeholders of the template.
pub(super) fn template_placeholders(template: &str) -> BTreeSet<String> {
    voxgate_lab::nginx::placeholders(template)
        .into_iter()
        .collect()
}

/// The shipped nginx files rendered into `dir` for local ports.
fn render_nginx(dir: &TempDir, vars: &BTreeMap<String, String>) -> PathBuf {
    voxgate_lab::nginx::render(&voxgate_lab::repo_root(), &dir.0, vars, None)
        .expect("the nginx files render")
}

/// `nginx -t` on a rendered configuration.
fn nginx_test(dir: &TempDir) -> std::process::Output {
    std::process::Command::new(NGINX)
        .arg("-t")
        .args(nginx_command(dir).get_args())
        .output()
        .expect("nginx runs")
}

/// nginx in the foreground on the configuration rendered into `dir`.
fn nginx_command(dir: &TempDir) -> std::process::Command {
    voxgate_lab::nginx::command(&dir.0, &dir.path("error.log"))
}

pub(crate) struct Nginx {
    child: tokio::process::Child,
    _dir: TempDir,
    https_port: u16,
    http_port: u16,
    backchannel_port: u16,
}

impl Nginx {
    /// Renders the configuration for `https_port` (fixed by the caller: the
    /// realm and voxgate need the origin first), checks it with `nginx -t`
    /// and starts nginx in the foreground.
    pub(crate) async fn start(
        certs: &TempDir,
        https_port: u16,
        upstreams: &[String],
        keycloak: SocketAddr,
        backchannel_port: u16,
    ) -> Nginx {
        let http_port = free_port();
        let dir = TempDir::new("nginx");
        render_nginx(
            &dir,
            &nginx_vars(
                certs,
                https_port,
                http_port,
                upstreams,
                keycloak,
                backchannel_port,
            ),
        );
        let checked = nginx_test(&dir);
        assert!(
            checked.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let child = tokio::process::Command::from(nginx_command(&dir))
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
                    backchannel_port,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not start listening on {https_port}");
    }

    pub(crate) fn origin(&self) -> String {
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
    upstreams: &[String],
    keycloak: SocketAddr,
    backchannel_port: u16,
) -> BTreeMap<String, String> {
    voxgate_lab::nginx::vars(&voxgate_lab::nginx::Ports {
        https: https_port,
        http_redirect: http_port,
        backchannel: backchannel_port,
        upstreams,
        keycloak: &keycloak.to_string(),
        certs: &certs.0,
    })
}

/// One voxgate process (`voxgate serve`), killed on drop.
pub(crate) struct Instance {
    child: tokio::process::Child,
    port: u16,
}

impl Instance {
    /// Kills the process outright (SIGKILL): nothing of it runs on.
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

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
        let instance = Instance { child, port };
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Requests this instance counted for `route` with `status`.
    pub(crate) async fn requests(&self, route: &str, status: u16) -> f64 {
        self.metric(
            "voxgate_http_requests_total",
            &[("route", route), ("status", &status.to_string())],
        )
        .await
    }

    /// The sum of `name`'s samples whose labels include `labels`.
    pub(crate) async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// nginx in front of voxgate instances, Keycloak and Polly.
pub(crate) struct Deployment {
    nginx: Nginx,
    pub(crate) apps: Vec<Instance>,
    kc: Standin,
    pub(crate) polly: PollyStandin,
    certs: TempDir,
    pub(crate) db: TestDatabase,
}

impl Deployment {
    /// Two instances.
    async fn start() -> Deployment {
        Deployment::start_with(2, &[]).await
    }

    /// `instances` instances with `extra` settings.
    pub(crate) async fn start_with(instances: usize, extra: &[(&str, String)]) -> Deployment {
        let certs = make_certs();
        let https_port = free_port();
        let backchannel_port = free_port();
        let origin = format!("https://127.0.0.1:{https_port}");
        // The realm's browser URLs point at the nginx origin and its
        // back-channel logout URL at nginx's internal listener, as in the
        // compose stack.
        let backchannel = format!("http://127.0.0.1:{backchannel_port}/auth/backchannel-logout");
        let realm = voxgate_lab::realm::for_origin(
            &voxgate_lab::repo_root(),
            &origin,
            &[("VOXGATE_BACKCHANNEL_LOGOUT_URL", &backchannel)],
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
        let issuer = kc.issuer(REALM);
        let polly_url = polly.endpoint_url();
        let mut env = voxgate_lab::env::voxgate(&voxgate_lab::env::Stack {
            database_url: &db.url,
            public_url: &origin,
            issuer: &issuer,
            polly_url: &polly_url,
        });
        env.insert("VOXGATE_LOG", "warn,voxgate=info".into());
        let env: BTreeMap<String, String> = env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .collect();
        let apps = futures::future::join_all((0..instances).map(|_| Instance::start(&env))).await;
        let kc_addr: SocketAddr = kc.base_url().trim_start_matches("http://").parse().unwrap();
        let upstreams: Vec<String> = apps.iter().map(|a| a.addr().to_string()).collect();
        let nginx = Nginx::start(&certs, https_port, &upstreams, kc_addr, backchannel_port).await;
        Deployment {
            nginx,
            apps,
            kc,
            polly,
            certs,
            db,
        }
    }

    fn origin(&self) -> String {
        self.nginx.origin()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// A client that trusts only the test CA (plus the system roots).
    pub(crate) fn client(&self) -> reqwest::ClientBuilder {
        let pem = std::fs::read(self.certs.path("ca.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
    }

    pub(crate) async fn token(&self, username: &str, password: &str) -> String {
        let response = Caller::at("", reqwest::Client::new())
            .post_form(
                &format!("{}/protocol/openid-connect/token", self.kc.issuer(REALM)),
                &[
                    ("grant_type", "password"),
                    ("client_id", "voxgate-cli"),
                    ("username", username),
                    ("password", password),
                    ("scope", "openid"),
                ],
            )
            .await;
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
    render_nginx(
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
            free_port(),
        ),
    );
    let out = nginx_test(&dir);
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
        let response = Caller::at("", client.clone()).get(&d.url(path)).await;
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

    let start = Caller::at("", browser.clone())
        .get(&d.url("/auth/login?return_to=%2F"))
        .await;
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

    let page = Caller::at("", browser.clone()).get(&authorize).await;
    assert_eq!(page.status(), 200);
    let action = form_action(&page.text().await.unwrap());
    let submitted = Caller::at("", browser.clone())
        .post_form(&action, &[("username", "alice"), ("password", "alice")])
        .await;
    assert_eq!(submitted.status(), 302);
    let callback = location(&submitted);
    assert!(
        callback.starts_with(&format!("{}/auth/callback?", d.origin())),
        "{callback}"
    );

    let done = Caller::at("", browser.clone()).get(&callback).await;
    assert_eq!(done.status(), 303, "callback accepted");
    let session = set_cookie(&done, "__Host-voxgate").expect("session cookie");
    for attribute in ["Secure", "HttpOnly", "Path=/"] {
        assert!(session.contains(attribute), "{attribute}: {session}");
    }
    let me: Value = Caller::at("", browser.clone())
        .get_json(&d.url("/api/me"))
        .await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["authenticatedBy"], "session");

    // The session lives in the shared database: either instance accepts it.
    let pair = session.split(';').next().unwrap().to_string();
    for app in &d.apps {
        let response = Caller::at(&app.url(""), reqwest::Client::new())
            .header("cookie", &pair)
            .get("/api/me")
            .await;
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
        let response = Caller::at("", client.clone())
            .bearer(&token)
            .get(&d.url("/api/me"))
            .await;
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
    let sent = Caller::at("", client.clone())
        .header("x-request-id", "deploy-test-0001")
        .get(&d.url("/api/version"))
        .await;
    assert_eq!(sent.headers()["x-request-id"], "deploy-test-0001");
    let made = Caller::at("", client.clone())
        .get(&d.url("/api/version"))
        .await;
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
        Caller::at("", client.clone())
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .get(&url)
            .await
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

    let discovery = Caller::at("", client.clone())
        .get(&d.url("/realms/voxgate/.well-known/openid-configuration"))
        .await;
    assert_eq!(discovery.status(), 200);
    let body: Value = discovery.json().await.unwrap();
    assert_eq!(body["issuer"], d.kc.issuer(REALM).as_str());

    for path in [
        "/admin/master/console/",
        "/admin/realms/voxgate/users",
        "/metrics",
    ] {
        let response = Caller::at("", client.clone()).get(&d.url(path)).await;
        assert_eq!(response.status(), 403, "{path} is closed at the edge");
    }
    // voxgate's own admin page (exactly /admin) is not caught by that rule.
    let admin_page = Caller::at("", client.clone()).get(&d.url("/admin")).await;
    assert_ne!(admin_page.status(), 403);
    assert!(
        header_values(&admin_page, "content-security-policy").len() == 1,
        "answered by voxgate"
    );

    // A host name that is not ours is refused before any upstream.
    let other_host = Caller::at("", client.clone())
        .header("host", "evil.example")
        .get(&d.url("/api/version"))
        .await;
    assert_eq!(other_host.status(), 421);
}

#[tokio::test]
async fn password_guessing_at_keycloak_through_the_edge_is_rate_limited() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let elsewhere = d
        .client()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let token_url = d.url("/realms/voxgate/protocol/openid-connect/token");
    let guess = [
        ("grant_type", "password"),
        ("client_id", "voxgate-cli"),
        ("username", "alice"),
        ("password", "wrong"),
    ];
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = Caller::at("", elsewhere.clone())
            .post_form(&token_url, &guess)
            .await;
        statuses.push(r.status().as_u16());
    }
    // Keycloak 26.7 answers a wrong password with 400 invalid_grant.
    let refused = statuses.iter().filter(|s| **s == 400).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(refused >= 10 && limited >= 10, "{statuses:?}");
    // The login form's action is limited by the same zone.
    let action = d.url("/realms/voxgate/login-actions/authenticate");
    let r = Caller::at("", elsewhere.clone())
        .post_form(&action, &guess)
        .await;
    assert_eq!(r.status(), 429);
    // voxgate's own address is not held back.
    let own = d.client().build().unwrap();
    let r = Caller::at("", own).post_form(&token_url, &guess).await;
    assert_eq!(r.status(), 400);
    // Nor can a regular expression open the master realm.
    let master = d.url("/realms/master/protocol/openid-connect/token");
    let r = Caller::at("", elsewhere).post_form(&master, &guess).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn another_name_of_ours_is_redirected_to_the_public_origin_before_sign_in() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let client = d.client().build().unwrap();
    let port = d.origin().rsplit(':').next().unwrap().to_string();
    // `localhost` is one of our names, but the public origin is 127.0.0.1.
    for (method, path) in [
        ("GET", "/auth/login?return_to=%2Fchat"),
        ("POST", "/api/chat"),
    ] {
        let url = format!("{}{path}", d.origin());
        let response = client
            .request(method.parse().unwrap(), &url)
            .header("host", format!("localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 308, "{method} {path}");
        assert_eq!(
            response.headers()["location"],
            format!("{}{path}", d.origin()).as_str(),
            "{method} {path}"
        );
    }
    // The public origin itself goes through, over HTTP/1.1 and HTTP/2
    // (whose :authority is not a Host header).
    let login = client.get(d.url("/auth/login")).send().await.unwrap();
    assert_eq!(login.status(), 303);
    let h2 = std::process::Command::new("curl")
        .args([
            "--http2",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--cacert")
        .arg(d.certs.path("ca.pem"))
        .arg(d.url("/api/version"))
        .output();
    match h2 {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200"),
        Err(e) => eprintln!("skipping the HTTP/2 check: curl cannot run ({e})"),
    }
}

#[tokio::test]
async fn the_master_realm_is_refused_at_the_edge_in_every_spelling() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let client = d.client().build().unwrap();
    for path in [
        "/realms/master",
        "/realms/master/",
        "/realms/master/.well-known/openid-configuration",
        "/realms/master;x/.well-known/openid-configuration",
        "/realms/master;jsessionid=1/protocol/openid-connect/token",
        "/realms/MASTER/.well-known/openid-configuration",
        "/realms/Master/protocol/openid-connect/auth",
        "/realms/%6daster/.well-known/openid-configuration",
        "/realms//master/.well-known/openid-configuration",
        "/realms/./master/.well-known/openid-configuration",
        "/realms/voxgate/../master/.well-known/openid-configuration",
    ] {
        // Sent as written: reqwest would otherwise normalise some of them.
        let url = format!("{}{path}", d.origin());
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path} is closed at the edge");
    }
    // The project realm itself stays open.
    let open = client
        .get(d.url("/realms/voxgate/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
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

#[tokio::test]
async fn keycloak_logs_out_through_the_internal_back_channel_listener_and_only_there() {
    if nginx_missing() {
        return;
    }
    let d = Deployment::start().await;
    let browser = d.client().cookie_store(true).build().unwrap();
    let start = Caller::at("", browser.clone())
        .get(&d.url("/auth/login"))
        .await;
    let page = Caller::at("", browser.clone()).get(&location(&start)).await;
    let action = form_action(&page.text().await.unwrap());
    let submitted = Caller::at("", browser.clone())
        .post_form(&action, &[("username", "bob"), ("password", "bob")])
        .await;
    let done = Caller::at("", browser.clone())
        .get(&location(&submitted))
        .await;
    assert_eq!(done.status(), 303, "signed in");
    let me = |client: reqwest::Client| {
        let url = d.url("/api/me");
        async move { Caller::at("", client).get(&url).await.status() }
    };
    assert_eq!(me(browser.clone()).await, 200);

    // The listener answers that one route, to POST only.
    let internal = format!("http://127.0.0.1:{}", d.nginx.backchannel_port);
    let plain = || Caller::at(&internal, reqwest::Client::new());
    assert_eq!(plain().get("/api/me").await.status(), 404);
    assert_eq!(plain().get("/healthz").await.status(), 404);
    assert_eq!(plain().get("/auth/backchannel-logout").await.status(), 403);
    let forged = plain()
        .post_form("/auth/backchannel-logout", &[("logout_token", "not-a-jwt")])
        .await;
    assert_eq!(forged.status(), 400, "voxgate itself answers the route");

    // An admin ends bob's sessions in Keycloak, which calls the listener.
    let admin = Caller::at("", reqwest::Client::new())
        .post_form(
            &format!(
                "{}/realms/master/protocol/openid-connect/token",
                d.kc.base_url()
            ),
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", "admin"),
                ("password", "admin"),
            ],
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let bob = d.kc.user_by_username(REALM, "bob").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let logout = Caller::at("", reqwest::Client::new())
        .bearer(admin["access_token"].as_str().unwrap())
        .post_raw(
            &format!(
                "{}/admin/realms/{REALM}/users/{bob}/logout",
                d.kc.base_url()
            ),
            None,
            "",
        )
        .await;
    assert_eq!(logout.status(), 204);
    let mut ended = false;
    for _ in 0..100 {
        if me(browser.clone()).await == 401 {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ended,
        "the voxgate session ends after Keycloak's call through nginx"
    );
}

/// `voxgate serve` on the Unix socket `path` with `mode`, behind a proxy
/// that reports https for the internal name `voxgate.internal`, plus `env`
/// (the database, the issuer, …).
pub(super) fn voxgate_on_socket(
    path: &Path,
    mode: &str,
    env: &[(&str, &str)],
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .arg("serve")
        .env_clear()
        .envs(crate::helpers::base_env())
        .env("VOXGATE_BIND", format!("unix:{}", path.display()))
        .env("VOXGATE_SOCKET_MODE", mode)
        // A plain-http internal name: the https origin can only come from
        // the proxy's forwarding headers.
        .env("VOXGATE_PUBLIC_URL", "http://voxgate.internal")
        .env("VOXGATE_OIDC_CLIENT_SECRET", WEB_SECRET)
        .env("VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET)
        .env("VOXGATE_TTS_ENGINE", "local")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("voxgate starts")
}

/// Waits until voxgate answers `/readyz` on `path`; the socket file's mode.
pub(super) async fn ready_on_socket(path: &Path) -> u32 {
    for _ in 0..300 {
        if path.exists() && unix_get(path, "/readyz").await.0 == 200 {
            use std::os::unix::fs::PermissionsExt;
            return std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("voxgate on {} did not become ready", path.display());
}

/// `GET path` over a Unix socket, HTTP/1.0: (status, body).
pub(super) async fn unix_get(socket: &Path, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// 2xx answers to `route` an instance counted, read from its /metrics.
fn counted(metrics: &str, route: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("voxgate_http_requests_total{"))
        .filter(|l| l.contains(&format!("route=\"{route}\"")) && l.contains("status=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn behind_nginx_on_unix_sockets_both_instances_serve_and_the_proxy_is_believed() {
    if nginx_missing() {
        return;
    }
    let certs = make_certs();
    let https_port = free_port();
    let origin = format!("https://127.0.0.1:{https_port}");
    let kc = Standin::start(StandinConfig {
        realm_jsons: vec![
            serde_json::from_str(
                &crate::stack::project_realm_text().replace("http://127.0.0.1:8080", &origin),
            )
            .unwrap(),
        ],
        ..StandinConfig::default()
    })
    .await
    .expect("keycloak stand-in starts");
    let db = TestDatabase::new().await;
    let sockets = TempDir::new("sockets");
    let paths = [sockets.path("a.sock"), sockets.path("b.sock")];
    // nginx's workers run as another user here (www-data when root): that
    // user is named as the proxy, as a deployment would.
    let proxy_uids = voxgate_lab::nginx::worker_uid()
        .map(|u| u.to_string())
        .unwrap_or_default();
    let mut children = Vec::new();
    for path in &paths {
        children.push(voxgate_on_socket(
            path,
            "0666",
            &[
                ("DATABASE_URL", db.url.as_str()),
                ("VOXGATE_SOCKET_PROXY_UIDS", proxy_uids.as_str()),
                ("VOXGATE_OIDC_ISSUER", &kc.issuer(REALM)),
            ],
        ));
    }
    for path in &paths {
        assert_eq!(
            ready_on_socket(path).await,
            0o666,
            "the socket has VOXGATE_SOCKET_MODE"
        );
    }
    let kc_addr: SocketAddr = kc.base_url().trim_start_matches("http://").parse().unwrap();
    let nginx = Nginx::start(
        &certs,
        https_port,
        &paths.each_ref().map(|p| format!("unix:{}", p.display())),
        kc_addr,
        free_port(),
    )
    .await;
    let pem = std::fs::read(certs.path("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The peer on the socket is nginx: its X-Forwarded-Proto/-Host decide
    // the origin (Secure cookies, redirect URI on https).
    let login = client
        .get(format!("{}/auth/login", nginx.origin()))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = set_cookie(&login, "voxgate_login").expect("login cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert_eq!(
        query_param(&location(&login), "redirect_uri"),
        Some(format!("{origin}/auth/callback"))
    );

    let token = {
        let response = client
            .post(format!(
                "{}/protocol/openid-connect/token",
                kc.issuer(REALM)
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "bob"),
                ("password", "bob"),
            ])
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    };
    let before = [
        counted(&unix_get(&paths[0], "/metrics").await.1, "/api/me"),
        counted(&unix_get(&paths[1], "/metrics").await.1, "/api/me"),
    ];
    for _ in 0..10 {
        let me = client
            .get(format!("{}/api/me", nginx.origin()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
    }
    let served = [
        counted(&unix_get(&paths[0], "/metrics").await.1, "/api/me") - before[0],
        counted(&unix_get(&paths[1], "/metrics").await.1, "/api/me") - before[1],
    ];
    assert_eq!(served[0] + served[1], 10.0, "{served:?}");
    assert!(served.iter().all(|n| *n >= 1.0), "{served:?}");

    // A clean stop removes the socket file.
    for child in &children {
        let pid = child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
    }
    for (child, path) in children.iter_mut().zip(&paths) {
        child.wait().await.unwrap();
        assert!(!path.exists(), "{} removed at shutdown", path.display());
    }
}
