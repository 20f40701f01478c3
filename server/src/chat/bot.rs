//! The bot abstraction: something that turns a message (plus who asks and
//! the conversation so far) into a stream of reply text. Bots never fail:
//! trouble upstream becomes a polite sentence in the reply, so the chat
//! endpoint does not answer 5xx because a model is down.

use std::collections::BTreeSet;

use futures::stream::{self, BoxStream, StreamExt};

use super::kb::KnowledgeBase;
use crate::identity::CurrentUser;

/// The signed-in person, as far as a bot needs to know.
#[derive(Debug, Clone)]
pub struct Identity {
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub roles: BTreeSet<String>,
}

impl Identity {
    /// First name, or the username when there is none.
    pub fn display_name(&self) -> &str {
        if self.first_name.trim().is_empty() {
            &self.username
        } else {
            &self.first_name
        }
    }

    pub fn full_name(&self) -> String {
        let full = format!("{} {}", self.first_name.trim(), self.last_name.trim());
        let full = full.trim();
        if full.is_empty() {
            self.username.clone()
        } else {
            full.to_string()
        }
    }
}

impl From<&CurrentUser> for Identity {
    fn from(u: &CurrentUser) -> Self {
        Identity {
            username: u.username.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            email: u.email.clone(),
            roles: u.roles.as_ref().clone(),
        }
    }
}

/// One earlier message of the conversation.
#[derive(Debug, Clone)]
pub struct Turn {
    pub from_user: bool,
    pub text: String,
}

/// What a bot is asked.
#[derive(Debug, Clone)]
pub struct Ask {
    pub message: String,
    pub identity: Identity,
    /// Earlier messages, oldest first.
    pub history: Vec<Turn>,
}

/// A reply being produced.
pub struct Reply {
    /// Pieces of the reply text, in order; concatenated they are the reply.
    pub deltas: BoxStream<'static, String>,
    /// Questions to offer as next steps.
    pub follow_ups: Vec<String>,
    /// True when the text arrives over time (worth speaking the first
    /// sentence before the rest is known).
    pub incremental: bool,
    /// False when the bot could not answer and says so instead (its
    /// model was down): nothing was spent on it.
    pub answered: bool,
}

impl Reply {
    /// A reply known in full up front.
    pub fn complete(text: String, follow_ups: Vec<String>) -> Reply {
        Reply {
            deltas: stream::iter([text]).boxed(),
            follow_ups,
            incremental: false,
            answered: true,
        }
    }

    /// The bot's apology when it could not answer.
    pub fn unanswered(text: String) -> Reply {
        Reply {
            answered: false,
            ..Reply::complete(text, Vec::new())
        }
    }
}

#[async_trait::async_trait]
pub trait Bot: Send + Sync {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    async fn reply(&self, ask: Ask) -> Reply;
}

/// The built-in bot: answers from the knowledge base.
pub struct KbBot {
    pub kb: KnowledgeBase,
}

#[async_trait::async_trait]
impl Bot for KbBot {
    fn name(&self) -> &'static str {
        "knowledge-base"
    }

    async fn reply(&self, ask: Ask) -> Reply {
        let answer = self.kb.answer(&ask.message, &ask.identity);
        tracing::debug!(intent = ?answer.intent, score = answer.score, "knowledge-base match");
        Reply::complete(answer.text, answer.follow_ups)
    }
}
