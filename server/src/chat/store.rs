//! SQL for the chat tables (`migrations/0005_chat.sql`). Every query is
//! scoped by `user_id`: a user only ever sees or deletes their own rows.

use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{ChatMessage, Settings, Speech};

struct MessageRow {
    id: i64,
    author: String,
    body: String,
    speech: Option<Json<Speech>>,
    follow_ups: Json<Vec<String>>,
    created_at: OffsetDateTime,
}

impl From<MessageRow> for ChatMessage {
    fn from(r: MessageRow) -> Self {
        ChatMessage {
            id: r.id,
            author: r.author,
            text: r.body,
            speech: r.speech.map(|s| s.0),
            follow_ups: r.follow_ups.0,
            created_at: r.created_at,
        }
    }
}

pub async fn insert_user_message(
    db: impl PgExecutor<'_>,
    user: Uuid,
    text: &str,
) -> sqlx::Result<(i64, OffsetDateTime)> {
    let row = sqlx::query!(
        "INSERT INTO chat_messages (user_id, author, body) VALUES ($1, 'user', $2) RETURNING id, created_at",
        user,
        text,
    )
    .fetch_one(db)
    .await?;
    Ok((row.id, row.created_at))
}

pub async fn insert_bot_message(
    db: &PgPool,
    user: Uuid,
    text: &str,
    speech: Option<&Speech>,
    follow_ups: &[String],
) -> sqlx::Result<(i64, OffsetDateTime)> {
    let row = sqlx::query!(
        "INSERT INTO chat_messages (user_id, author, body, speech, follow_ups)
         VALUES ($1, 'bot', $2, $3, $4) RETURNING id, created_at",
        user,
        text,
        speech.map(Json) as _,
        Json(follow_ups) as _,
    )
    .fetch_one(db)
    .await?;
    Ok((row.id, row.created_at))
}

/// Up to `limit` messages older than `before` (newest first from the
/// database, returned oldest first), and whether older ones exist.
pub async fn page(
    db: &PgPool,
    user: Uuid,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<(Vec<ChatMessage>, bool)> {
    let mut rows = sqlx::query_as!(
        MessageRow,
        r#"SELECT id, author, body, speech AS "speech: Json<Speech>",
                  follow_ups AS "follow_ups: Json<Vec<String>>", created_at
             FROM chat_messages
            WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $3"#,
        user,
        before,
        limit + 1,
    )
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    rows.reverse();
    Ok((rows.into_iter().map(ChatMessage::from).collect(), more))
}

/// The latest `limit` messages as context for a bot, oldest first.
pub async fn recent(db: &PgPool, user: Uuid, limit: i64) -> sqlx::Result<Vec<(String, String)>> {
    let rows = sqlx::query!(
        "SELECT author, body FROM chat_messages WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
        user,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().rev().map(|r| (r.author, r.body)).collect())
}

pub async fn clear(db: &PgPool, user: Uuid) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("DELETE FROM chat_messages WHERE user_id = $1", user)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

pub async fn settings(db: &PgPool, user: Uuid) -> sqlx::Result<Settings> {
    let row = sqlx::query_as!(
        Settings,
        "SELECT voice, language, autoplay, speech_rate FROM chat_settings WHERE user_id = $1",
        user,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.unwrap_or_default())
}

pub async fn save_settings(db: &PgPool, user: Uuid, s: &Settings) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO chat_settings (user_id, voice, language, autoplay, speech_rate)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id) DO UPDATE SET voice = EXCLUDED.voice, language = EXCLUDED.language,
             autoplay = EXCLUDED.autoplay, speech_rate = EXCLUDED.speech_rate",
        user,
        s.voice,
        s.language,
        s.autoplay,
        s.speech_rate,
    )
    .execute(db)
    .await?;
    Ok(())
}
