//! `/api/chat/**` and `/api/me/settings`: thin handlers over the bot, the
//! store and the speech service.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Chat;
use super::Sending;
use super::markdown;
use super::model::{
    ChatReply, Conversation, ConversationPage, HistoryPage, NewConversation, RenameConversation,
    SearchResults, SendMessage, Settings, StreamDone, checked_title,
};
use crate::error::{ApiError, Problem};
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::identity::CurrentUser;
use crate::state::AppState;
use crate::tts::text::{first_sentence, normalise};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(stop))
        .routes(routes!(regenerate))
        .routes(routes!(history, clear_history))
        .routes(routes!(list_conversations, create_conversation))
        .routes(routes!(rename_conversation, delete_conversation))
        .routes(routes!(conversation_messages))
        .routes(routes!(search))
        .routes(routes!(get_settings, put_settings))
}

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// Sends a message to the bot and returns its reply with the URL of the
/// reply's speech. With `Accept: text/event-stream` the reply streams as
/// server-sent events: `started` (`{"userMessageId", "conversationId"}`:
/// the id a stop names), `delta` (`{"text"}`) pieces, a `speech` event
/// with the first sentence's audio when the bot produces text over time,
/// then `done` (the reply object plus `restSpeech`/`restOffset`), or
/// `error`.
#[utoipa::path(post, path = "/api/chat", tag = "chat", request_body = SendMessage,
    responses(
        (status = 200, description = "The reply", content(
            (ChatReply = "application/json"),
            (String = "text/event-stream"))),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn send(
    State(chat): State<Chat>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(request): AppJson<SendMessage>,
) -> Result<Response, ApiError> {
    let message = request.checked()?;
    let sending = chat.send(&user, message, request.conversation_id).await?;
    answer(sending, &headers).await
}

/// Answers the last message of one of the signed-in user's conversations
/// again: the reply it had is replaced by a new one, answered as
/// `POST /api/chat` answers (JSON, or events with `Accept:
/// text/event-stream`). Metered and charged as sending the message again.
#[utoipa::path(post, path = "/api/chat/conversations/{id}/regenerate", tag = "chat",
    params(("id" = uuid::Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 200, description = "The new reply", content(
            (ChatReply = "application/json"),
            (String = "text/event-stream"))),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 429, body = Problem)))]
async fn regenerate(
    State(chat): State<Chat>,
    user: CurrentUser,
    headers: HeaderMap,
    AppPath(id): AppPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    let sending = chat.regenerate(&user, id).await?;
    answer(sending, &headers).await
}

/// Stops the reply to the signed-in user's message while the bot writes
/// it (the `userMessageId` of the reply's `started` event). The bot is
/// stopped, and what it had written is stored as the reply, marked
/// `stopped`, and sent as the stream's `done` event.
#[utoipa::path(post, path = "/api/chat/messages/{id}/stop", tag = "chat",
    params(("id" = i64, Path, minimum = 1, description = "The id of the user's message being answered")),
    responses((status = 202, description = "The reply is being stopped"), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The message is a reply, or its reply is complete")))]
async fn stop(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    chat.stop(user.id, id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// A reply as JSON, or as events when the client asked for them.
async fn answer(sending: Sending, headers: &HeaderMap) -> Result<Response, ApiError> {
    if wants_event_stream(headers) {
        return Ok(stream_reply(sending).into_response());
    }
    // In a task of its own, as the event stream's: a client that leaves
    // half-way still gets its reply stored and its budget settled.
    let finished = tokio::spawn(async move {
        let mut sending = sending;
        let mut text = String::new();
        while let Some(piece) = sending.next_piece().await {
            text.push_str(&piece);
        }
        sending.reply.finish(text, sending.stopped()).await
    });
    let reply = finished
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the reply task failed: {e}")))??;
    Ok(AppJson(reply).into_response())
}

fn event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

/// Drives the bot in a task of its own, so the reply is finished and saved
/// even if the browser goes away half-way.
fn stream_reply(sending: Sending) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let mut sending = sending;
    tokio::spawn(async move {
        let started = json!({
            "userMessageId": sending.reply.user_message_id,
            "conversationId": sending.reply.conversation_id,
        });
        let _ = tx.send(event("started", &started)).await;
        let mut text = String::new();
        let mut first: Option<String> = None;
        while let Some(piece) = sending.next_piece().await {
            text.push_str(&piece);
            let _ = tx.send(event("delta", &json!({ "text": piece }))).await;
            if sending.incremental && first.is_none() {
                // Spoken as words: the markup of what came so far is not.
                let words = markdown::spoken(&text);
                let sentence = first_sentence(&words);
                if sentence.len() < words.trim_start().len() && !normalise(sentence).is_empty() {
                    let sentence = sentence.to_string();
                    if let Some(speech) = sending.reply.speak(&sentence).await {
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
        let replying = &sending.reply;
        match replying.finish(text, sending.stopped()).await {
            Ok(reply) => {
                let (rest_speech, rest_offset) = match &first {
                    Some(sentence) => replying.speak_rest(&reply.reply, sentence).await,
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

/// A page size given as `limit`: `default` when absent, else 1–100.
fn page_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    Ok(limit)
}

impl HistoryQuery {
    /// The page size, checked.
    fn limit(&self) -> Result<i64, ApiError> {
        let limit = page_limit(self.limit, 50)?;
        if self.before.is_some_and(|b| b < 1) {
            return Err(ApiError::validation(
                "before",
                "must be a message id (1 or more)",
            ));
        }
        Ok(limit)
    }
}

/// A page of messages, oldest first, with the cursor of the page before.
fn history_page(items: Vec<super::model::ChatMessage>, more: bool) -> HistoryPage {
    let next_before = if more {
        items.first().map(|m| m.id)
    } else {
        None
    };
    HistoryPage { items, next_before }
}

/// The signed-in user's most recently used conversation, newest page
/// first, each page oldest message first.
#[utoipa::path(get, path = "/api/chat/history", tag = "chat", params(HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn history(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> Result<AppJson<HistoryPage>, ApiError> {
    let limit = q.limit()?;
    let (items, more) = chat.history(user.id, None, q.before, limit).await?;
    Ok(AppJson(history_page(items, more)))
}

/// The messages of one of the signed-in user's conversations, newest page
/// first, each page oldest message first.
#[utoipa::path(get, path = "/api/chat/conversations/{id}/messages", tag = "chat",
    params(("id" = uuid::Uuid, Path, description = "The conversation's id"), HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn conversation_messages(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppPath(id): AppPath<uuid::Uuid>,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> Result<AppJson<HistoryPage>, ApiError> {
    let limit = q.limit()?;
    let (items, more) = chat.history(user.id, Some(id), q.before, limit).await?;
    Ok(AppJson(history_page(items, more)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ConversationQuery {
    /// Only conversations after this one (the `nextBefore` of the page
    /// before).
    before: Option<uuid::Uuid>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// The signed-in user's conversations, most recently updated first.
#[utoipa::path(get, path = "/api/chat/conversations", tag = "chat", params(ConversationQuery),
    responses((status = 200, body = ConversationPage), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn list_conversations(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ConversationQuery>,
) -> Result<AppJson<ConversationPage>, ApiError> {
    let limit = page_limit(q.limit, 50)?;
    let (items, more) = chat.conversations(user.id, q.before, limit).await?;
    let next_before = if more {
        items.last().map(|c| c.id)
    } else {
        None
    };
    Ok(AppJson(ConversationPage { items, next_before }))
}

/// Starts a new, empty conversation; without a title, its first message
/// gives it one.
#[utoipa::path(post, path = "/api/chat/conversations", tag = "chat", request_body = NewConversation,
    responses((status = 201, body = Conversation), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
async fn create_conversation(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppJson(request): AppJson<NewConversation>,
) -> Result<(StatusCode, AppJson<Conversation>), ApiError> {
    let title = request.title.as_deref().map(checked_title).transpose()?;
    let created = chat.create_conversation(user.id, title.as_deref()).await?;
    Ok((StatusCode::CREATED, AppJson(created)))
}

/// Renames one of the signed-in user's conversations.
#[utoipa::path(patch, path = "/api/chat/conversations/{id}", tag = "chat",
    params(("id" = uuid::Uuid, Path, description = "The conversation's id")), request_body = RenameConversation,
    responses((status = 200, body = Conversation), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn rename_conversation(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppPath(id): AppPath<uuid::Uuid>,
    AppJson(request): AppJson<RenameConversation>,
) -> Result<AppJson<Conversation>, ApiError> {
    let title = checked_title(&request.title)?;
    Ok(AppJson(
        chat.rename_conversation(user.id, id, &title).await?,
    ))
}

/// Deletes one of the signed-in user's conversations with its messages.
#[utoipa::path(delete, path = "/api/chat/conversations/{id}", tag = "chat",
    params(("id" = uuid::Uuid, Path, description = "The conversation's id")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_conversation(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppPath(id): AppPath<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    chat.delete_conversation(user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    /// The words to find in one's own messages (2–200 characters, any
    /// case; `%` and `_` are plain characters).
    #[param(min_length = 2, max_length = 200)]
    q: String,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// The signed-in user's messages that contain the words asked for, newest
/// first, each with its conversation.
#[utoipa::path(get, path = "/api/chat/search", tag = "chat", params(SearchQuery),
    responses((status = 200, body = SearchResults), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn search(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppQuery(q): AppQuery<SearchQuery>,
) -> Result<AppJson<SearchResults>, ApiError> {
    let text = crate::extract::trim_blank(&q.q);
    let chars = q.q.chars().count();
    if text.chars().count() < 2 || chars > 200 {
        return Err(ApiError::validation(
            "q",
            "must be 2 to 200 characters, not all blank",
        ));
    }
    let limit = page_limit(q.limit, 20)?;
    let items = chat.search(user.id, text, limit).await?;
    Ok(AppJson(SearchResults { items }))
}

/// Deletes every conversation of the signed-in user.
#[utoipa::path(delete, path = "/api/chat/history", tag = "chat",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn clear_history(
    State(chat): State<Chat>,
    user: CurrentUser,
) -> Result<StatusCode, ApiError> {
    let n = chat.clear(user.id).await?;
    tracing::info!(user = %user.username, messages = n, "chat history cleared");
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user's speech settings (defaults until saved).
#[utoipa::path(get, path = "/api/me/settings", tag = "chat",
    responses((status = 200, body = Settings), (status = 401, body = Problem)))]
async fn get_settings(
    State(chat): State<Chat>,
    user: CurrentUser,
) -> Result<AppJson<Settings>, ApiError> {
    Ok(AppJson(chat.settings(user.id).await?))
}

/// Replaces the signed-in user's speech settings; omitted fields take
/// their defaults.
#[utoipa::path(put, path = "/api/me/settings", tag = "chat", request_body = Settings,
    responses((status = 200, body = Settings), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn put_settings(
    State(chat): State<Chat>,
    user: CurrentUser,
    AppJson(settings): AppJson<Settings>,
) -> Result<AppJson<Settings>, ApiError> {
    Ok(AppJson(chat.save_settings(user.id, settings).await?))
}
