//! `/api/chat/**` and `/api/me/settings`: thin handlers over the bot, the
//! store and the speech service.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::bot::{Ask, Identity, Reply, Turn};
use super::model::{
    ChatReply, HistoryPage, MAX_REPLY_CHARS, SendMessage, Settings, Speech, StreamDone,
};
use super::store;
use crate::auth::{AppRole, CurrentUser};
use crate::error::{ApiError, Problem};
use crate::extract::{AppJson, AppQuery};
use crate::limits::{self, Meter};
use crate::state::AppState;
use crate::tts::SpeechParams;
use crate::tts::text::{first_sentence, normalise};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(history, clear_history))
        .routes(routes!(get_settings, put_settings))
}

/// Earlier messages a bot sees as context.
const CONTEXT_MESSAGES: i64 = 20;

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// Sends a message to the bot and returns its reply with the URL of the
/// reply's speech. With `Accept: text/event-stream` the reply streams as
/// server-sent events: `delta` (`{"text"}`) pieces, a `speech` event with
/// the first sentence's audio when the bot produces text over time, then
/// `done` (the reply object plus `restSpeech`/`restOffset`), or `error`.
#[utoipa::path(post, path = "/api/chat", tag = "chat", request_body = SendMessage,
    responses(
        (status = 200, description = "The reply", content(
            (ChatReply = "application/json"),
            (String = "text/event-stream"))),
        (status = 401, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem)))]
async fn send(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(request): AppJson<SendMessage>,
) -> Result<Response, ApiError> {
    let message = request.checked()?;
    let rate = state.config.chat.rate_per_minute;
    limits::check_rate(&state.db, Meter::Chat, user.id, rate).await?;
    let settings = store::settings(&state.db, user.id).await?;
    let history: Vec<Turn> = store::recent(&state.db, user.id, CONTEXT_MESSAGES)
        .await?
        .into_iter()
        .map(|(author, text)| Turn {
            from_user: author == "user",
            text,
        })
        .collect();
    // What the model is sent is charged before anything is stored; its
    // reply is added when it is complete.
    let exempt = user.has_role(AppRole::Agent) || user.has_role(AppRole::Admin);
    let metered = match &state.config.chat.llm {
        Some(llm) if !exempt => {
            let sent = message.chars().count()
                + history
                    .iter()
                    .map(|t| t.text.chars().count())
                    .sum::<usize>();
            let daily = llm.daily_chars;
            limits::charge(&state.db, Meter::Chat, user.id, sent as i64, daily).await?;
            true
        }
        _ => false,
    };
    let (user_message_id, _) = store::insert_user_message(&state.db, user.id, &message).await?;
    let reply = state
        .chat
        .bot
        .reply(Ask {
            message,
            identity: Identity::from(&user),
            history,
        })
        .await;
    let mut private = Vec::new();
    if let Some(email) = &user.email {
        private.push((email.clone(), "your email address"));
    }
    if !user.username.eq_ignore_ascii_case(&user.first_name) {
        private.push((user.username.clone(), "your username"));
    }
    let pending = Pending {
        state,
        user: user.id,
        settings,
        user_message_id,
        metered,
        private,
    };
    if wants_event_stream(&headers) {
        return Ok(stream_reply(pending, reply).into_response());
    }
    let text: String = reply.deltas.collect::<Vec<_>>().await.concat();
    let done = pending.finish(text, reply.follow_ups).await?;
    Ok(AppJson(done).into_response())
}

/// What finishing a reply needs.
struct Pending {
    state: AppState,
    user: Uuid,
    settings: Settings,
    user_message_id: i64,
    /// The reply counts against the user's language-model budget.
    metered: bool,
    /// Personal details said in writing but not aloud, with what is
    /// spoken instead.
    private: Vec<(String, &'static str)>,
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

impl Pending {
    /// Registers speech for `text`; a failure leaves the reply silent
    /// rather than failing the chat.
    async fn speak(&self, text: &str) -> Option<Speech> {
        let params = SpeechParams {
            text: speakable(text, &self.private),
            voice: self.settings.voice.clone(),
            language: self.settings.language.clone(),
            format: None,
            engine_kind: None,
        };
        match self.state.tts.speak(params, true, self.user).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "reply speech could not be registered");
                None
            }
        }
    }

    async fn finish(&self, text: String, follow_ups: Vec<String>) -> Result<ChatReply, ApiError> {
        let mut text = text.trim().to_string();
        if text.chars().count() > MAX_REPLY_CHARS {
            text = text.chars().take(MAX_REPLY_CHARS).collect::<String>() + "…";
        }
        if self.metered
            && let Err(e) = limits::record(
                &self.state.db,
                Meter::Chat,
                self.user,
                text.chars().count() as i64,
            )
            .await
        {
            tracing::warn!(error = %e, "recording the model's reply in the budget failed");
        }
        if text.is_empty() {
            text = "Sorry, I have no answer to that.".into();
        }
        let speech = self.speak(&text).await;
        let (id, created_at) = store::insert_bot_message(
            &self.state.db,
            self.user,
            &text,
            speech.as_ref(),
            &follow_ups,
        )
        .await?;
        Ok(ChatReply {
            id,
            user_message_id: self.user_message_id,
            reply: text,
            speech,
            follow_ups,
            created_at,
        })
    }
}

fn event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

/// Drives the bot in a task of its own, so the reply is finished and saved
/// even if the browser goes away half-way.
fn stream_reply(pending: Pending, reply: Reply) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let Reply {
            mut deltas,
            follow_ups,
            incremental,
        } = reply;
        let mut text = String::new();
        let mut first: Option<String> = None;
        while let Some(piece) = deltas.next().await {
            text.push_str(&piece);
            let _ = tx.send(event("delta", &json!({ "text": piece }))).await;
            if incremental && first.is_none() {
                let sentence = first_sentence(&text);
                if sentence.len() < text.trim_start().len() && !normalise(sentence).is_empty() {
                    let sentence = sentence.to_string();
                    if let Some(speech) = pending.speak(&sentence).await {
                        let _ = tx
                            .send(event(
                                "speech",
                                &json!({ "speech": speech, "text": sentence }),
                            ))
                            .await;
                        first = Some(sentence);
                    }
                }
            }
        }
        match pending.finish(text, follow_ups).await {
            Ok(reply) => {
                let (rest_speech, rest_offset) = match &first {
                    Some(sentence) => {
                        let rest = reply
                            .reply
                            .trim_start()
                            .get(sentence.len()..)
                            .unwrap_or_default()
                            .trim();
                        if normalise(rest).is_empty() {
                            (None, None)
                        } else {
                            (
                                pending.speak(rest).await,
                                Some(normalise(sentence).len() + 1),
                            )
                        }
                    }
                    None => (None, None),
                };
                let done = StreamDone {
                    reply,
                    rest_speech,
                    rest_offset,
                };
                let _ = tx.send(event("done", &done)).await;
            }
            Err(e) => {
                let status = e.status().as_u16();
                let detail = if status >= 500 {
                    "The reply could not be saved. Please try again.".to_string()
                } else {
                    e.to_string()
                };
                // Logs a 5xx cause the same way a plain response would.
                let _ = e.into_response();
                let _ = tx
                    .send(event(
                        "error",
                        &json!({ "status": status, "detail": detail }),
                    ))
                    .await;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    // Tell buffering proxies (nginx) to pass events through at once.
    response
        .headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Only messages with a smaller id (the `nextBefore` of the page after).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// The signed-in user's conversation, newest page first, each page oldest
/// message first.
#[utoipa::path(get, path = "/api/chat/history", tag = "chat", params(HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> Result<AppJson<HistoryPage>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::validation(
            "before",
            "must be a message id (1 or more)",
        ));
    }
    let (items, more) = store::page(&state.db, user.id, q.before, limit).await?;
    let next_before = if more {
        items.first().map(|m| m.id)
    } else {
        None
    };
    Ok(AppJson(HistoryPage { items, next_before }))
}

/// Deletes the signed-in user's whole conversation.
#[utoipa::path(delete, path = "/api/chat/history", tag = "chat",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn clear_history(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<StatusCode, ApiError> {
    let n = store::clear(&state.db, user.id).await?;
    tracing::info!(user = %user.username, messages = n, "chat history cleared");
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user's speech settings (defaults until saved).
#[utoipa::path(get, path = "/api/me/settings", tag = "chat",
    responses((status = 200, body = Settings), (status = 401, body = Problem)))]
async fn get_settings(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<AppJson<Settings>, ApiError> {
    Ok(AppJson(store::settings(&state.db, user.id).await?))
}

/// Replaces the signed-in user's speech settings; omitted fields take
/// their defaults.
#[utoipa::path(put, path = "/api/me/settings", tag = "chat", request_body = Settings,
    responses((status = 200, body = Settings), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn put_settings(
    State(state): State<AppState>,
    user: CurrentUser,
    AppJson(settings): AppJson<Settings>,
) -> Result<AppJson<Settings>, ApiError> {
    let settings = settings.checked()?;
    check_voice_exists(&state, settings.voice.as_deref()).await?;
    store::save_settings(&state.db, user.id, &settings).await?;
    Ok(AppJson(settings))
}

/// A voice must be one the engine offers. If the list cannot be had right
/// now (Polly unreachable), the shape check already done has to suffice:
/// an unknown voice then falls back to the default when spoken.
async fn check_voice_exists(state: &AppState, voice: Option<&str>) -> Result<(), ApiError> {
    let Some(voice) = voice else { return Ok(()) };
    match state.tts.voices(None).await {
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
