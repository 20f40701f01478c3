//! The soak's clients: browser-style visits with sign-in and CSRF, bearer
//! API calls, chat, speech hits and misses, and admin provisioning. Every
//! request to voxgate is recorded with its route, start, duration and
//! outcome; what voxgate acknowledged is kept in a ledger that the final
//! checks hold the database to.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// No complete answer: refused, reset, timed out or cut mid-body.
    Failed,
}

impl Outcome {
    /// A failure of the service (not of the client's request).
    pub fn is_error(self) -> bool {
        match self {
            Outcome::Status(s) => s >= 500,
            Outcome::Failed => true,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub route: &'static str,
    /// Seconds since the run started.
    pub at: f64,
    pub ms: f64,
    pub outcome: Outcome,
}

impl Sample {
    pub fn end(&self) -> f64 {
        self.at + self.ms / 1000.0
    }
}

/// A user creation as voxgate answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// 201: the user exists in both systems.
    Yes { id: String },
    /// 201 and later 204 on delete: in neither.
    Deleted,
    /// No acknowledgement either way (an outage): either is fine, but not
    /// half.
    Unknown,
    /// A 4xx/503 problem: must exist in neither.
    Refused,
}

#[derive(Default)]
pub struct Ledger {
    /// Ids of chat messages voxgate acknowledged (user and bot).
    pub chat_ids: Vec<i64>,
    pub users: BTreeMap<String, Created>,
    /// Sign-ins started at voxgate, finished at its callback, and ended.
    pub sign_in_starts: u64,
    pub sign_ins: u64,
    pub logouts: u64,
    /// Visits that ended early, by the step that failed.
    pub visits_cut: BTreeMap<&'static str, u64>,
    pub texts: std::collections::BTreeSet<String>,
}

pub struct Traffic {
    pub t0: Instant,
    pub vx: String,
    pub issuer: String,
    pub run_id: String,
    pub http: Client,
    samples: Mutex<Vec<Sample>>,
    pub ledger: Mutex<Ledger>,
    tokens: Mutex<BTreeMap<&'static str, String>>,
    pub stop: AtomicBool,
    counter: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Texts spoken again and again: cache hits after their first time.
const HOT_TEXTS: [&str; 8] = [
    "Welcome back.",
    "Your order has shipped.",
    "The meeting starts in five minutes.",
    "Please hold while I look that up.",
    "Thank you for calling.",
    "Your password was changed.",
    "It is sunny in the afternoon.",
    "Goodbye, and have a nice day.",
];

impl Traffic {
    pub fn new(vx: String, issuer: String, run_id: String) -> anyhow::Result<Traffic> {
        Ok(Traffic {
            t0: Instant::now(),
            vx,
            issuer,
            run_id,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            samples: Mutex::new(Vec::new()),
            ledger: Mutex::new(Ledger::default()),
            tokens: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            counter: AtomicU64::new(0),
        })
    }

    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).clone()
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends, reads the whole body and records the outcome under `route`.
    async fn call(&self, route: &'static str, rb: RequestBuilder) -> Option<(u16, String)> {
        let at = self.now();
        let started = Instant::now();
        let result = async {
            let r = rb.send().await?;
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = r.bytes().await?;
            // A redirect's target is what the caller needs from it.
            let text = match location {
                Some(l) if (300..400).contains(&status) => l,
                _ => String::from_utf8_lossy(&body).into_owned(),
            };
            Ok::<_, reqwest::Error>((status, text))
        }
        .await;
        let outcome = match &result {
            Ok((s, _)) => Outcome::Status(*s),
            Err(_) => Outcome::Failed,
        };
        lock(&self.samples).push(Sample {
            route,
            at,
            ms: started.elapsed().as_secs_f64() * 1000.0,
            outcome,
        });
        result.ok()
    }

    async fn password_grant(&self, user: &str) -> anyhow::Result<String> {
        voxgate_bench::oidc::password_token(&self.http, &self.issuer, user).await
    }

    /// Keeps a fresh token per user; while Keycloak is down the old one
    /// is used until it expires, as a real client would.
    pub async fn refresh_tokens(&self) -> anyhow::Result<()> {
        for user in ["alice", "bob"] {
            if let Ok(t) = self.password_grant(user).await {
                lock(&self.tokens).insert(user, t);
            }
        }
        anyhow::ensure!(lock(&self.tokens).len() == 2, "no tokens at start");
        Ok(())
    }

    pub async fn token_refresher(&self) {
        while self.running() {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let _ = self.refresh_tokens().await;
        }
    }

    fn token(&self, user: &'static str) -> String {
        lock(&self.tokens).get(user).cloned().unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.vx)
    }

    async fn pause(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn record_reply(&self, body: &str) -> Option<String> {
        let v: Value = serde_json::from_str(body).ok()?;
        let (id, user_id) = (v["id"].as_i64()?, v["userMessageId"].as_i64()?);
        lock(&self.ledger).chat_ids.extend([user_id, id]);
        v["speech"]["url"].as_str().map(str::to_string)
    }

    /// API clients with bearer tokens: who am I, voices, history.
    pub async fn bearer_worker(&self) {
        while self.running() {
            let t = self.token("bob");
            let get = |p: &str| self.http.get(self.url(p)).bearer_auth(&t);
            self.call("GET /api/me", get("/api/me")).await;
            self.call("GET /api/voices", get("/api/voices")).await;
            self.call("GET /api/chat/history", get("/api/chat/history?limit=5"))
                .await;
            self.pause(40).await;
        }
    }

    /// Chat over the API, and the reply's speech.
    pub async fn chat_worker(&self) {
        const ASKS: [&str; 5] = [
            "hello",
            "what can you do?",
            "tell me about voices",
            "how do I change my password?",
            "thanks",
        ];
        while self.running() {
            let n = self.next();
            let message = format!("{} ({})", ASKS[n as usize % ASKS.len()], n % 7);
            let post = self
                .http
                .post(self.url("/api/chat"))
                .bearer_auth(self.token("bob"))
                .json(&json!({ "message": message }));
            if let Some((200, body)) = self.call("POST /api/chat", post).await
                && let Some(speech) = self.record_reply(&body)
            {
                let get = self
                    .http
                    .get(self.url(&speech))
                    .bearer_auth(self.token("bob"));
                self.call("GET /api/tts/{key}", get).await;
            }
            self.pause(150).await;
        }
    }

    /// The original endpoint: mostly texts heard before, some new.
    pub async fn speech_worker(&self) {
        while self.running() {
            let n = self.next();
            let text = if n.is_multiple_of(4) {
                format!("Fresh words number {n} of run {}.", self.run_id)
            } else {
                HOT_TEXTS[n as usize % HOT_TEXTS.len()].to_string()
            };
            lock(&self.ledger).texts.insert(text.clone());
            let rb = self
                .http
                .get(self.url("/textToSpeech"))
                .query(&[
                    ("Text", text.as_str()),
                    ("VoiceId", "Joanna"),
                    ("OutputFormat", "mp3"),
                ])
                .bearer_auth(self.token("bob"));
            self.call("GET /textToSpeech", rb).await;
            self.pause(60).await;
        }
    }

    /// An admin creating, listing and deleting users. A creation without an
    /// answer is retried with the same Idempotency-Key, as a client should.
    pub async fn admin_worker(&self) {
        while self.running() {
            let n = self.next();
            let username = format!("soak-{}-{n}", self.run_id);
            let key = format!("soak-{}-{n}", self.run_id);
            let body = json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "firstName": "Soak",
                "lastName": format!("User {n}"),
                "roles": ["user"],
                "password": {"value": format!("Soak-pass-{n}-long"), "temporary": false},
            });
            let mut state = Created::Unknown;
            for attempt in 0..4 {
                if attempt > 0 {
                    self.pause(2000).await;
                }
                let post = self
                    .http
                    .post(self.url("/api/admin/users"))
                    .bearer_auth(self.token("alice"))
                    .header("Idempotency-Key", &key)
                    .json(&body);
                match self.call("POST /api/admin/users", post).await {
                    Some((201, text)) => {
                        let v: Value = serde_json::from_str(&text).unwrap_or_default();
                        state = Created::Yes {
                            id: v["id"].as_str().unwrap_or_default().to_string(),
                        };
                        break;
                    }
                    // Keycloak unavailable: nothing was kept; try again.
                    Some((503, _)) => state = Created::Refused,
                    Some((s, _)) if s < 500 => {
                        state = Created::Refused;
                        break;
                    }
                    _ => state = Created::Unknown,
                }
            }
            lock(&self.ledger)
                .users
                .insert(username.clone(), state.clone());
            let list = self
                .http
                .get(self.url("/api/admin/users"))
                .query(&[("search", "soak-"), ("per_page", "25")])
                .bearer_auth(self.token("alice"));
            self.call("GET /api/admin/users", list).await;
            if let Created::Yes { id } = state
                && n.is_multiple_of(2)
            {
                let delete = self
                    .http
                    .delete(self.url(&format!("/api/admin/users/{id}")))
                    .bearer_auth(self.token("alice"));
                if let Some((204, _)) = self.call("DELETE /api/admin/users/{id}", delete).await {
                    lock(&self.ledger).users.insert(username, Created::Deleted);
                }
            }
            self.pause(400).await;
        }
    }

    /// A person in a browser: signs in through Keycloak's page, chats with
    /// the CSRF token from the page, hears the replies and signs out.
    pub async fn browser_worker(&self) {
        while self.running() {
            if let Err(step) = self.browser_visit().await {
                *lock(&self.ledger).visits_cut.entry(step).or_default() += 1;
                self.pause(1000).await;
            }
            self.pause(100).await;
        }
    }

    async fn browser_visit(&self) -> Result<(), &'static str> {
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .map_err(|_| "client")?;
        let (_, auth_url) = self
            .call(
                "GET /auth/login",
                client.get(self.url("/auth/login?return_to=/")),
            )
            .await
            .filter(|(s, _)| *s == 303)
            .ok_or("voxgate's sign-in start")?;
        lock(&self.ledger).sign_in_starts += 1;
        // Keycloak's own pages are not voxgate's: failures there during an
        // outage end the visit without counting against voxgate.
        let page = async { client.get(&auth_url).send().await?.text().await };
        let page = page.await.map_err(|_| "Keycloak's sign-in page")?;
        let action = form_action(&page).ok_or("Keycloak's sign-in page (no form)")?;
        let submitted = client
            .post(&action)
            .form(&[("username", "bob"), ("password", "bob")])
            .send()
            .await
            .map_err(|_| "Keycloak's sign-in form")?;
        let callback = submitted
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or("Keycloak's sign-in form (no redirect)")?
            .to_string();
        self.call("GET /auth/callback", client.get(&callback))
            .await
            .filter(|(s, _)| *s == 303)
            .ok_or("voxgate's callback")?;
        lock(&self.ledger).sign_ins += 1;
        let (_, html) = self
            .call("GET /", client.get(self.url("/")))
            .await
            .filter(|(s, _)| *s == 200)
            .ok_or("the chat page")?;
        let csrf = meta_csrf(&html).ok_or("the chat page (no CSRF token)")?;
        for i in 0..3 {
            let post = client
                .post(self.url("/api/chat"))
                .header("X-CSRF-Token", &csrf)
                .header("Origin", &self.vx)
                .json(&json!({ "message": format!("browser says hello {i}") }));
            if let Some((200, body)) = self.call("POST /api/chat", post).await
                && let Some(speech) = self.record_reply(&body)
            {
                self.call("GET /api/tts/{key}", client.get(self.url(&speech)))
                    .await;
            }
            self.pause(200).await;
        }
        self.call(
            "GET /api/chat/history",
            client.get(self.url("/api/chat/history?limit=20")),
        )
        .await;
        let out = client
            .post(self.url("/auth/logout"))
            .header("Origin", &self.vx)
            .form(&[("csrf", csrf.as_str())]);
        self.call("POST /auth/logout", out)
            .await
            .filter(|(s, _)| *s == 303)
            .ok_or("voxgate's sign-out")?;
        lock(&self.ledger).logouts += 1;
        Ok(())
    }
}

/// The `action` of the first form on a page, entities decoded.
pub fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    let start = form.find("action=\"")? + 8;
    let end = form[start..].find('"')?;
    Some(form[start..start + end].replace("&amp;", "&"))
}

/// The CSRF token the chat page carries for its scripts.
pub fn meta_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf-token\" content=\"")? + 27;
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_yield_their_form_and_token() {
        let html = r#"<meta name="csrf-token" content="abc123"><form id="kc" action="http://kc/x?a=1&amp;b=2" method="post">"#;
        assert_eq!(meta_csrf(html).as_deref(), Some("abc123"));
        assert_eq!(form_action(html).as_deref(), Some("http://kc/x?a=1&b=2"));
        assert_eq!(meta_csrf("<p>no token</p>"), None);
        assert_eq!(form_action("<p>no form</p>"), None);
    }

    #[test]
    fn server_errors_and_broken_answers_are_errors() {
        assert!(Outcome::Status(500).is_error());
        assert!(Outcome::Status(503).is_error());
        assert!(Outcome::Failed.is_error());
        assert!(!Outcome::Status(429).is_error());
        assert!(!Outcome::Status(200).is_error());
    }
}
