//! The chat: bots, conversations and their HTTP endpoints.
//!
//! A message goes to the configured [`bot::Bot`] (the knowledge-base bot,
//! or the LLM bot when `VOXGATE_LLM_URL` is set), the reply is stored with
//! the user's conversation and registered with the speech service so the
//! browser can play it. `docs/chat.md` describes the knowledge-base format
//! and the API.

pub mod bot;
mod handlers;
pub mod kb;
pub mod llm;
pub mod markdown;
pub mod model;
mod service;
mod stops;
mod store;

use std::sync::Arc;

use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;

use crate::config::{ChatConfig, Config};
use crate::state::AppState;
use crate::tts::Tts;
use bot::{Bot, KbBot};
use kb::KnowledgeBase;
use llm::{LlmBot, LlmTimeouts};

pub fn routes() -> OpenApiRouter<AppState> {
    handlers::routes()
}

pub use service::{METER, Replying, Sending};

/// The chat service: the bot, the conversations and what it meters.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    bot: Arc<dyn Bot>,
    db: PgPool,
    tts: Tts,
    config: ChatConfig,
    stops: Arc<stops::Stops>,
}

impl Chat {
    /// Loads the knowledge base (a broken file stops start-up, with every
    /// problem and its line listed) and picks the bot.
    pub fn new(config: &Config, db: PgPool, tts: Tts) -> anyhow::Result<Chat> {
        let kb = KnowledgeBase::load(config.chat.knowledge_base.as_deref())
            .map_err(|e| anyhow::anyhow!("VOXGATE_KB_FILE: {e}"))?;
        let bot: Arc<dyn Bot> = match &config.chat.llm {
            Some(llm) => Arc::new(LlmBot::new(llm, LlmTimeouts::default())?),
            None => Arc::new(KbBot { kb }),
        };
        tracing::info!(bot = bot.name(), "chat bot ready");
        Ok(Chat {
            inner: Arc::new(Inner {
                bot,
                db,
                tts,
                config: config.chat.clone(),
                stops: Arc::default(),
            }),
        })
    }
}
