//! The optional LLM bot: any OpenAI-compatible chat-completions endpoint,
//! read as a token stream (`"stream": true`, server-sent events). Every
//! failure mode (unreachable, slow, 4xx/5xx, garbage, a stream cut off
//! half-way) ends in a polite sentence instead of an error.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::bot::{Ask, Bot, Reply};
use crate::config::LlmConfig;

/// Said when the model cannot be reached or fails before saying anything.
pub const UNAVAILABLE: &str =
    "Sorry, I can't reach my language service right now. Please try again in a moment.";
/// Appended when the stream breaks after part of the reply was sent.
pub const CUT_OFF: &str = " … Sorry, my answer was cut off. Please ask again.";

/// How long to wait for the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct LlmTimeouts {
    pub connect: Duration,
    /// Until the response headers arrive.
    pub first_byte: Duration,
    /// Between two pieces of the stream.
    pub idle: Duration,
    /// For the whole reply.
    pub total: Duration,
}

impl Default for LlmTimeouts {
    fn default() -> Self {
        LlmTimeouts {
            connect: Duration::from_secs(3),
            first_byte: Duration::from_secs(20),
            idle: Duration::from_secs(20),
            total: Duration::from_secs(120),
        }
    }
}

pub struct LlmBot {
    http: reqwest::Client,
    endpoint: String,
    model: String,
    api_key: Option<secrecy::SecretString>,
    timeouts: LlmTimeouts,
}

/// Earlier turns sent along for context.
const HISTORY_TURNS: usize = 12;

impl LlmBot {
    pub fn new(config: &LlmConfig, timeouts: LlmTimeouts) -> anyhow::Result<LlmBot> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("voxgate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeouts.connect)
            .build()?;
        let base = config.url.as_str().trim_end_matches('/');
        let endpoint = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        Ok(LlmBot {
            http,
            endpoint,
            model: config.model.clone(),
            api_key: config.api_key.clone(),
            timeouts,
        })
    }

    fn messages(ask: &Ask) -> Vec<Value> {
        let who = &ask.identity;
        let roles: Vec<&str> = who.roles.iter().map(String::as_str).collect();
        let system = format!(
            "You are the assistant of voxgate, a chat whose replies are spoken aloud. \
             Answer in plain sentences without markdown, lists or code blocks, and keep \
             answers short. The user is signed in as {} ({}) with the roles: {}.",
            who.username,
            who.full_name(),
            roles.join(", ")
        );
        let mut messages = vec![json!({"role": "system", "content": system})];
        let skip = ask.history.len().saturating_sub(HISTORY_TURNS);
        for turn in &ask.history[skip..] {
            let role = if turn.from_user { "user" } else { "assistant" };
            messages.push(json!({"role": role, "content": turn.text}));
        }
        messages.push(json!({"role": "user", "content": ask.message}));
        messages
    }

    async fn start(&self, ask: &Ask) -> Result<reqwest::Response, String> {
        let mut request = self.http.post(&self.endpoint).json(&json!({
            "model": self.model,
            "messages": Self::messages(ask),
            "stream": true,
        }));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = tokio::time::timeout(self.timeouts.first_byte, request.send())
            .await
            .map_err(|_| "no response in time".to_string())?
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        Ok(response)
    }
}

/// Parser state of an upstream event stream.
struct Upstream {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    said_something: bool,
    finished: bool,
    idle: Duration,
    deadline: tokio::time::Instant,
}

enum Line {
    Text(String),
    Done,
    Nothing,
}

/// One `data:` line of a chat-completions stream.
fn parse_line(line: &str) -> Result<Line, String> {
    let line = line.trim_end_matches('\r');
    let Some(data) = line.strip_prefix("data:") else {
        // Comments (": keep-alive"), `event:`/`id:` fields, blank lines.
        return Ok(Line::Nothing);
    };
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Line::Done);
    }
    let chunk: Value = serde_json::from_str(data).map_err(|e| format!("bad chunk: {e}"))?;
    if let Some(error) = chunk.get("error") {
        return Err(format!("error in stream: {error}"));
    }
    let text = chunk["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap_or_default();
    Ok(if text.is_empty() {
        Line::Nothing
    } else {
        Line::Text(text.to_string())
    })
}

impl Upstream {
    /// The next piece of text, `None` at the end. Errors become the
    /// apology, once.
    async fn next_piece(&mut self) -> Option<String> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                match parse_line(&line) {
                    Ok(Line::Text(t)) => {
                        self.said_something = true;
                        return Some(t);
                    }
                    Ok(Line::Done) => {
                        self.finished = true;
                        return None;
                    }
                    Ok(Line::Nothing) => continue,
                    Err(why) => return self.fail(&why),
                }
            }
            let wait = self.idle.min(
                self.deadline
                    .saturating_duration_since(tokio::time::Instant::now()),
            );
            match tokio::time::timeout(wait, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.buffer.extend_from_slice(&bytes),
                Ok(Some(Err(e))) => return self.fail(&format!("stream broke: {e}")),
                Ok(None) => {
                    // Ended without [DONE]: accept what came if anything did.
                    if !self.buffer.is_empty() {
                        self.buffer.push(b'\n');
                        continue;
                    }
                    return if self.said_something {
                        self.finished = true;
                        None
                    } else {
                        self.fail("stream ended without any text")
                    };
                }
                Err(_) => return self.fail("stream stalled"),
            }
        }
    }

    fn fail(&mut self, why: &str) -> Option<String> {
        tracing::warn!(reason = why, "language model stream failed");
        self.finished = true;
        Some(if self.said_something {
            CUT_OFF.to_string()
        } else {
            UNAVAILABLE.to_string()
        })
    }
}

#[async_trait::async_trait]
impl Bot for LlmBot {
    fn name(&self) -> &'static str {
        "llm"
    }

    async fn reply(&self, ask: Ask) -> Reply {
        let response = match self.start(&ask).await {
            Ok(r) => r,
            Err(why) => {
                tracing::warn!(reason = %why, endpoint = %self.endpoint, "language model unavailable");
                return Reply::unanswered(UNAVAILABLE.to_string());
            }
        };
        let upstream = Upstream {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            said_something: false,
            finished: false,
            idle: self.timeouts.idle,
            deadline: tokio::time::Instant::now() + self.timeouts.total,
        };
        let deltas = stream::unfold(upstream, |mut up| async move {
            up.next_piece().await.map(|piece| (piece, up))
        })
        .boxed();
        Reply {
            deltas,
            follow_ups: Vec::new(),
            incremental: true,
            answered: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_yield_their_delta_text() {
        let line = r#"data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#;
        assert!(matches!(parse_line(line), Ok(Line::Text(t)) if t == "Hel"));
        assert!(matches!(parse_line("data: [DONE]"), Ok(Line::Done)));
        assert!(matches!(parse_line(": keep-alive"), Ok(Line::Nothing)));
        assert!(matches!(
            parse_line(r#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#),
            Ok(Line::Nothing)
        ));
        assert!(parse_line("data: {not json").is_err());
        assert!(parse_line(r#"data: {"error":{"message":"boom"}}"#).is_err());
    }
}
