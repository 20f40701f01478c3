//! The chat's use cases: sending a message (metered, stored, answered,
//! spoken), the history and the speech settings. Handlers only translate
//! HTTP to these calls and replies to JSON or an event stream.

use futures::StreamExt;
use futures::stream::BoxStream;
use uuid::Uuid;

use super::Chat;
use super::bot::{Ask, Identity, Reply, Turn};
use super::model::{
    ChatMessage, ChatReply, Conversation, MAX_REPLY_CHARS, SearchHit, Settings, Speech, title_from,
};
use super::stops::{self, Running};
use super::{markdown, store};
use crate::error::ApiError;
use crate::identity::CurrentUser;
use crate::limits::{self, Charge, Meter};
use crate::tts::SpeechParams;
use crate::tts::text::normalise;

/// Chat messages a minute, and characters exchanged with the language
/// model a day.
pub const METER: Meter = Meter {
    rate_table: "chat_rate",
    usage_table: "llm_usage",
    amount: "chars",
    unit: "characters",
    requests: "chat messages",
    budget: "language-model budget",
    metric: "voxgate_chat_rejected_total",
};

/// Earlier messages a bot sees as context.
const CONTEXT_MESSAGES: i64 = 20;

/// What a user said has been stored and the bot is answering: its text
/// arrives in `deltas`, and [`Replying::finish`] stores and speaks the
/// whole reply. Finish it even if nobody listens any more: it is what
/// settles the language-model budget.
pub struct Sending {
    deltas: BoxStream<'static, String>,
    /// The text arrives over time (worth speaking a first sentence early).
    pub incremental: bool,
    /// Told when the user stops the reply.
    running: Running,
    stopped: bool,
    pub reply: Replying,
}

impl Sending {
    /// The next piece of the reply; `None` once it is complete or the user
    /// stopped it ([`Sending::stopped`] says which). A stop drops the
    /// bot's stream, which hangs up on the language model.
    pub async fn next_piece(&mut self) -> Option<String> {
        if self.stopped {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.running.stopped() => {
                self.stopped = true;
                self.deltas = Box::pin(futures::stream::empty());
                None
            }
            piece = self.deltas.next() => piece,
        }
    }

    /// Whether the user stopped the reply.
    pub fn stopped(&self) -> bool {
        self.stopped
    }
}

/// What finishing a reply needs (apart from its text).
pub struct Replying {
    /// Id of the stored user message.
    pub user_message_id: i64,
    /// The conversation it was stored in.
    pub conversation_id: Uuid,
    follow_ups: Vec<String>,
    answered: bool,
    /// The characters sent to the language model, charged to the user's
    /// daily budget before the model is asked, in the transaction that
    /// stores the message. When the model did not answer (it was down),
    /// they are given back; when it did, its reply is added.
    charge: Charge,
    speaker: Speaker,
}

/// Who a reply is spoken for, with which voice, saying what aloud.
struct Speaker {
    chat: Chat,
    user: Uuid,
    settings: Settings,
    /// Personal details said in writing but not aloud, with what is
    /// spoken instead.
    private: Vec<(String, &'static str)>,
}

impl Chat {
    /// Stores the user's (already checked) message and asks the bot. The
    /// message counts against the chat rate; with a language model, what
    /// it is sent (the message and its context) is charged first, in the
    /// transaction that stores the message, so a message that could not be
    /// stored costs nothing.
    pub async fn send(
        &self,
        user: &CurrentUser,
        message: String,
        conversation: Option<Uuid>,
    ) -> Result<Sending, ApiError> {
        let db = &self.inner.db;
        let conversation = match conversation {
            Some(id) => self.conversation(user.id, id).await?.id,
            None => self.current(user.id).await?,
        };
        limits::check_rate(db, METER, user.id, self.inner.config.rate_per_minute).await?;
        let title = title_from(&message);
        let history = self.context(user.id, conversation, None).await?;
        let sent = charged_chars(&message, &history);
        // Charged with the message it pays for: one is never stored
        // without the other.
        let mut tx = db.begin().await?;
        let charge = self.charge(&mut tx, user, sent).await?;
        let (user_message_id, _) =
            store::insert_user_message(&mut *tx, user.id, conversation, &message, &title).await?;
        tx.commit().await?;
        self.ask(
            user,
            conversation,
            user_message_id,
            message,
            history,
            charge,
        )
        .await
    }

    /// Answers the last message of the user's `conversation` again: the
    /// replies it had are deleted and the bot is asked anew, with the
    /// conversation before the message as context. Metered and charged as
    /// sending it again would be.
    pub async fn regenerate(
        &self,
        user: &CurrentUser,
        conversation: Uuid,
    ) -> Result<Sending, ApiError> {
        let db = &self.inner.db;
        let conversation = self.conversation(user.id, conversation).await?.id;
        let Some((user_message_id, message)) =
            store::last_user_message(db, user.id, conversation).await?
        else {
            return Err(ApiError::Conflict {
                detail: format!(
                    "Conversation {conversation} has no message of yours to answer again."
                ),
                field: None,
            });
        };
        limits::check_rate(db, METER, user.id, self.inner.config.rate_per_minute).await?;
        let history = self
            .context(user.id, conversation, Some(user_message_id))
            .await?;
        let sent = charged_chars(&message, &history);
        let mut tx = db.begin().await?;
        let charge = self.charge(&mut tx, user, sent).await?;
        store::delete_replies_after(&mut *tx, user.id, conversation, user_message_id).await?;
        tx.commit().await?;
        self.ask(
            user,
            conversation,
            user_message_id,
            message,
            history,
            charge,
        )
        .await
    }

    /// Stops the reply to the user's message `id` while it is written,
    /// on whichever instance writes it.
    pub async fn stop(&self, user: Uuid, id: i64) -> Result<(), ApiError> {
        let db = &self.inner.db;
        let Some(message) = store::answering(db, user, id).await? else {
            return Err(ApiError::NotFound(format!(
                "You have no message {id}; pass the userMessageId the reply's first event named."
            )));
        };
        if message.author != "user" {
            return Err(ApiError::Conflict {
                detail: format!(
                    "Message {id} is a reply; pass the id of your message it answers (userMessageId)."
                ),
                field: None,
            });
        }
        if message.answered {
            return Err(ApiError::Conflict {
                detail: format!("The reply to message {id} is already complete."),
                field: None,
            });
        }
        if !self.inner.stops.stop_here(id) {
            sqlx::query!("SELECT pg_notify($1, $2)", stops::CHANNEL, id.to_string())
                .execute(db)
                .await?;
        }
        Ok(())
    }

    /// Earlier messages of the conversation, as a bot sees them.
    async fn context(
        &self,
        user: Uuid,
        conversation: Uuid,
        before: Option<i64>,
    ) -> Result<Vec<Turn>, ApiError> {
        Ok(
            store::recent(&self.inner.db, user, conversation, before, CONTEXT_MESSAGES)
                .await?
                .into_iter()
                .map(|(author, text)| Turn {
                    from_user: author == "user",
                    text,
                })
                .collect(),
        )
    }

    /// With a language model, what it is sent is charged to the user's
    /// daily budget, in the caller's transaction.
    async fn charge(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        user: &CurrentUser,
        sent: i64,
    ) -> Result<Charge, ApiError> {
        let db = &self.inner.db;
        let budget = self.inner.config.llm.as_ref().filter(|_| !user.unmetered());
        Ok(match budget {
            Some(llm) => Charge::take(&mut **tx, db, METER, user.id, sent, llm.daily_chars).await?,
            None => Charge::none(db, METER, user.id),
        })
    }

    /// Asks the bot to answer the stored message `user_message_id`.
    async fn ask(
        &self,
        user: &CurrentUser,
        conversation: Uuid,
        user_message_id: i64,
        message: String,
        history: Vec<Turn>,
        charge: Charge,
    ) -> Result<Sending, ApiError> {
        let settings = store::settings(&self.inner.db, user.id).await?;
        let running = self.inner.stops.run(&self.inner.db, user_message_id).await;
        let Reply {
            deltas,
            follow_ups,
            incremental,
            answered,
        } = self
            .inner
            .bot
            .reply(Ask {
                message,
                identity: Identity::from(user),
                history,
            })
            .await;
        Ok(Sending {
            deltas,
            incremental,
            running,
            stopped: false,
            reply: Replying {
                user_message_id,
                conversation_id: conversation,
                follow_ups,
                answered,
                charge,
                speaker: Speaker {
                    chat: self.clone(),
                    user: user.id,
                    settings,
                    private: private_details(user),
                },
            },
        })
    }

    /// A page of one of the user's conversations (see `store::page`);
    /// without one, of the most recently used.
    pub async fn history(
        &self,
        user: Uuid,
        conversation: Option<Uuid>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<ChatMessage>, bool), ApiError> {
        let conversation = match conversation {
            Some(id) => self.conversation(user, id).await?.id,
            None => match store::latest_conversation(&self.inner.db, user).await? {
                Some(id) => id,
                None => return Ok((Vec::new(), false)),
            },
        };
        Ok(store::page(&self.inner.db, user, conversation, before, limit).await?)
    }

    /// Deletes every conversation of the user; how many messages went.
    pub async fn clear(&self, user: Uuid) -> Result<u64, ApiError> {
        Ok(store::clear(&self.inner.db, user).await?)
    }

    /// One of the user's conversations; anyone else's does not exist.
    pub async fn conversation(&self, user: Uuid, id: Uuid) -> Result<Conversation, ApiError> {
        store::conversation(&self.inner.db, user, id)
            .await?
            .ok_or_else(|| no_conversation(id))
    }

    /// The conversation a message without one goes to: the most recently
    /// used, or a new one.
    async fn current(&self, user: Uuid) -> Result<Uuid, ApiError> {
        match store::latest_conversation(&self.inner.db, user).await? {
            Some(id) => Ok(id),
            None => Ok(store::create_conversation(&self.inner.db, user, None)
                .await?
                .id),
        }
    }

    /// A page of the user's conversations, most recently updated first.
    pub async fn conversations(
        &self,
        user: Uuid,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<(Vec<Conversation>, bool), ApiError> {
        if let Some(before) = before
            && store::conversation(&self.inner.db, user, before)
                .await?
                .is_none()
        {
            return Err(ApiError::NotFound(format!(
                "No conversation {before} to page after (pass the nextBefore of the page before)."
            )));
        }
        Ok(store::conversations(&self.inner.db, user, before, limit).await?)
    }

    pub async fn create_conversation(
        &self,
        user: Uuid,
        title: Option<&str>,
    ) -> Result<Conversation, ApiError> {
        Ok(store::create_conversation(&self.inner.db, user, title).await?)
    }

    pub async fn rename_conversation(
        &self,
        user: Uuid,
        id: Uuid,
        title: &str,
    ) -> Result<Conversation, ApiError> {
        if !store::rename_conversation(&self.inner.db, user, id, title).await? {
            return Err(no_conversation(id));
        }
        self.conversation(user, id).await
    }

    pub async fn delete_conversation(&self, user: Uuid, id: Uuid) -> Result<(), ApiError> {
        match store::delete_conversation(&self.inner.db, user, id).await? {
            true => Ok(()),
            false => Err(no_conversation(id)),
        }
    }

    /// The user's messages containing `text`, newest first.
    pub async fn search(
        &self,
        user: Uuid,
        text: &str,
        limit: i64,
    ) -> Result<Vec<SearchHit>, ApiError> {
        Ok(store::search(&self.inner.db, user, text, limit).await?)
    }

    pub async fn settings(&self, user: Uuid) -> Result<Settings, ApiError> {
        Ok(store::settings(&self.inner.db, user).await?)
    }

    /// Checks and saves the user's speech settings.
    pub async fn save_settings(
        &self,
        user: Uuid,
        settings: Settings,
    ) -> Result<Settings, ApiError> {
        let settings = settings.checked()?;
        self.check_voice_exists(settings.voice.as_deref()).await?;
        store::save_settings(&self.inner.db, user, &settings).await?;
        Ok(settings)
    }

    /// A voice must be one the engine offers. If the list cannot be had
    /// right now (Polly unreachable), the shape check already done has to
    /// suffice: an unknown voice then falls back to the default when spoken.
    async fn check_voice_exists(&self, voice: Option<&str>) -> Result<(), ApiError> {
        let Some(voice) = voice else { return Ok(()) };
        match self.inner.tts.voices(None).await {
            Ok(voices) if voices.iter().any(|v| v.id == voice) => Ok(()),
            Ok(_) => Err(ApiError::validation(
                "voice",
                format!("`{voice}` is not one of the voices listed by /api/voices"),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "voice list unavailable; voice checked by shape only");
                Ok(())
            }
        }
    }
}

/// What asking the model sends: the message and its context.
fn charged_chars(message: &str, history: &[Turn]) -> i64 {
    (message.chars().count()
        + history
            .iter()
            .map(|t| t.text.chars().count())
            .sum::<usize>()) as i64
}

/// Another user's conversation reads the same as one that never existed.
fn no_conversation(id: Uuid) -> ApiError {
    ApiError::NotFound(format!(
        "You have no conversation {id} (it may have been deleted); GET /api/chat/conversations lists yours."
    ))
}

/// The details spoken as a phrase rather than read out.
fn private_details(user: &CurrentUser) -> Vec<(String, &'static str)> {
    let mut private = Vec::new();
    if let Some(email) = &user.email {
        private.push((email.clone(), "your email address"));
    }
    if !user.username.eq_ignore_ascii_case(&user.first_name) {
        private.push((user.username.clone(), "your username"));
    }
    private
}

/// The reply as spoken: personal details (the email address, the
/// username) are named rather than read out, so they never reach the
/// speech engine or the audio cache.
fn speakable(text: &str, private: &[(String, &'static str)]) -> String {
    let mut spoken = text.to_string();
    for (value, instead) in private {
        if value.is_empty() {
            continue;
        }
        let lower = spoken.to_ascii_lowercase();
        let needle = value.to_ascii_lowercase();
        let mut out = String::with_capacity(spoken.len());
        let mut at = 0;
        while let Some(found) = lower[at..].find(&needle) {
            out.push_str(&spoken[at..at + found]);
            out.push_str(instead);
            at += found + needle.len();
        }
        out.push_str(&spoken[at..]);
        spoken = out;
    }
    spoken
}

impl Replying {
    /// Registers speech for part of the reply (words, without markup);
    /// a failure leaves it silent rather than failing the chat.
    pub async fn speak(&self, text: &str) -> Option<Speech> {
        let s = &self.speaker;
        let params = SpeechParams {
            text: speakable(text, &s.private),
            voice: s.settings.voice.clone(),
            language: s.settings.language.clone(),
            format: None,
            engine_kind: None,
        };
        match s.chat.inner.tts.speak(params, true, s.user).await {
            Ok(speech) => Some(speech),
            Err(e) => {
                tracing::warn!(error = %e, "reply speech could not be registered");
                None
            }
        }
    }

    /// Stores the whole reply `text` (what was written by then, if the
    /// user `stopped` it) with its speech and settles the budget: the
    /// model's reply is added to it, or, if the model never answered, what
    /// was charged for asking it is given back.
    pub async fn finish(&self, text: String, stopped: bool) -> Result<ChatReply, ApiError> {
        let mut text = text.trim().to_string();
        if text.chars().count() > MAX_REPLY_CHARS {
            text = text.chars().take(MAX_REPLY_CHARS).collect::<String>() + "…";
        }
        let received = text.chars().count() as i64;
        if text.is_empty() && !stopped {
            text = "Sorry, I have no answer to that.".into();
        }
        // The model's answer was paid for whether or not it can be stored.
        if !self.answered {
            self.charge.refund().await;
        } else if let Err(e) = self.charge.add(received).await {
            tracing::warn!(error = %e, "recording the model's reply in the budget failed");
        }
        let words = markdown::spoken(&text);
        let speech = match normalise(&words).is_empty() {
            true => None,
            false => self.speak(&words).await,
        };
        // Suggestions follow a whole answer, not one cut short.
        let follow_ups = if stopped {
            &[][..]
        } else {
            &self.follow_ups[..]
        };
        let (id, created_at) = store::insert_bot_message(
            &self.speaker.chat.inner.db,
            store::BotMessage {
                user: self.speaker.user,
                conversation: self.conversation_id,
                reply_to: self.user_message_id,
                text: &text,
                speech: speech.as_ref(),
                follow_ups,
                stopped,
            },
        )
        .await?;
        Ok(ChatReply {
            id,
            conversation_id: self.conversation_id,
            user_message_id: self.user_message_id,
            html: markdown::html(&text),
            reply: text,
            speech,
            follow_ups: follow_ups.to_vec(),
            created_at,
            stopped,
        })
    }

    /// After a first sentence was spoken early: the speech of the rest of
    /// `reply`'s words, and where the rest starts in the normalised text.
    pub async fn speak_rest(&self, reply: &str, first: &str) -> (Option<Speech>, Option<usize>) {
        let words = markdown::spoken(reply);
        let rest = words
            .trim_start()
            .get(first.len()..)
            .unwrap_or_default()
            .trim();
        if normalise(rest).is_empty() {
            return (None, None);
        }
        (self.speak(rest).await, Some(normalise(first).len() + 1))
    }
}
