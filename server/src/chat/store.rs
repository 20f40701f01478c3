//! SQL for the chat tables (`migrations/0005_chat.sql`,
//! `migrations/0018_chat_conversations.sql`). Every query is scoped by
//! `user_id`: a user only ever sees or deletes their own rows.

use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::markdown;
use super::model::{ChatMessage, Conversation, SearchHit, Settings, Speech, UNTITLED};

struct MessageRow {
    id: i64,
    author: String,
    body: String,
    speech: Option<Json<Speech>>,
    follow_ups: Json<Vec<String>>,
    created_at: OffsetDateTime,
    stopped: bool,
}

impl From<MessageRow> for ChatMessage {
    fn from(r: MessageRow) -> Self {
        // A reply is Markdown; what the user wrote is shown as written.
        let html = (r.author == "bot").then(|| markdown::html(&r.body));
        ChatMessage {
            id: r.id,
            author: r.author,
            text: r.body,
            html,
            speech: r.speech.map(|s| s.0),
            follow_ups: r.follow_ups.0,
            created_at: r.created_at,
            stopped: r.stopped,
        }
    }
}

/// Stores a user's message in `conversation`, which it titles if it has no
/// title yet, and makes the conversation the most recently updated.
pub async fn insert_user_message(
    db: impl PgExecutor<'_>,
    user: Uuid,
    conversation: Uuid,
    text: &str,
    title: &str,
) -> sqlx::Result<(i64, OffsetDateTime)> {
    let row = sqlx::query!(
        r#"WITH touched AS (
             UPDATE chat_conversations SET updated_at = now(), title = coalesce(title, $4)
              WHERE id = $2 AND user_id = $1)
           INSERT INTO chat_messages (user_id, conversation_id, author, body)
           VALUES ($1, $2, 'user', $3) RETURNING id, created_at"#,
        user,
        conversation,
        text,
        title,
    )
    .fetch_one(db)
    .await?;
    Ok((row.id, row.created_at))
}

/// A bot's reply as stored.
pub struct BotMessage<'a> {
    pub user: Uuid,
    pub conversation: Uuid,
    /// The user's message it answers.
    pub reply_to: i64,
    pub text: &'a str,
    pub speech: Option<&'a Speech>,
    pub follow_ups: &'a [String],
    pub stopped: bool,
}

pub async fn insert_bot_message(
    db: &PgPool,
    m: BotMessage<'_>,
) -> sqlx::Result<(i64, OffsetDateTime)> {
    let row = sqlx::query!(
        r#"WITH touched AS (
             UPDATE chat_conversations SET updated_at = now() WHERE id = $2 AND user_id = $1)
           INSERT INTO chat_messages
                  (user_id, conversation_id, author, body, speech, follow_ups, reply_to, stopped)
           VALUES ($1, $2, 'bot', $3, $4, $5, $6, $7) RETURNING id, created_at"#,
        m.user,
        m.conversation,
        m.text,
        m.speech.map(Json) as _,
        Json(m.follow_ups) as _,
        m.reply_to,
        m.stopped,
    )
    .fetch_one(db)
    .await?;
    Ok((row.id, row.created_at))
}

/// Up to `limit` messages of `conversation` older than `before` (newest
/// first from the database, returned oldest first), and whether older ones
/// exist.
pub async fn page(
    db: &PgPool,
    user: Uuid,
    conversation: Uuid,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<(Vec<ChatMessage>, bool)> {
    let mut rows = sqlx::query_as!(
        MessageRow,
        r#"SELECT id, author, body, speech AS "speech: Json<Speech>",
                  follow_ups AS "follow_ups: Json<Vec<String>>", created_at, stopped
             FROM chat_messages
            WHERE user_id = $1 AND conversation_id = $2 AND ($3::bigint IS NULL OR id < $3)
            ORDER BY id DESC LIMIT $4"#,
        user,
        conversation,
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

/// The latest `limit` messages of `conversation` (before the message
/// `before`, if given) as context for a bot, oldest first.
pub async fn recent(
    db: &PgPool,
    user: Uuid,
    conversation: Uuid,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    let rows = sqlx::query!(
        "SELECT author, body FROM chat_messages
          WHERE user_id = $1 AND conversation_id = $2 AND ($3::bigint IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4",
        user,
        conversation,
        before,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().rev().map(|r| (r.author, r.body)).collect())
}

/// A query for conversations as the API shows them: the columns, then
/// `$tail` (conditions and order) with its arguments.
macro_rules! query_conversation {
    (($($tail:tt)+) $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Conversation,
            r#"SELECT c.id, coalesce(c.title, 'New conversation') AS "title!",
                      c.created_at, c.updated_at,
                      (SELECT count(*) FROM chat_messages m WHERE m.conversation_id = c.id) AS "messages!"
                 FROM chat_conversations c"#
                + $($tail)+
            $(, $arg)*
        )
    };
}

/// Up to `limit` of the user's conversations, most recently updated
/// first, after the one `before` names; and whether more follow.
pub async fn conversations(
    db: &PgPool,
    user: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<(Vec<Conversation>, bool)> {
    let mut rows = query_conversation!(
        (r#"
            WHERE c.user_id = $1
              AND ($2::uuid IS NULL OR (c.updated_at, c.id) <
                   (SELECT b.updated_at, b.id FROM chat_conversations b WHERE b.id = $2 AND b.user_id = $1))
            ORDER BY c.updated_at DESC, c.id DESC LIMIT $3"#),
        user,
        before,
        limit + 1,
    )
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// One of the user's conversations.
pub async fn conversation(db: &PgPool, user: Uuid, id: Uuid) -> sqlx::Result<Option<Conversation>> {
    query_conversation!((" WHERE c.user_id = $1 AND c.id = $2"), user, id,)
        .fetch_optional(db)
        .await
}

/// The user's most recently updated conversation, if any.
pub async fn latest_conversation(db: &PgPool, user: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM chat_conversations WHERE user_id = $1
          ORDER BY updated_at DESC, id DESC LIMIT 1",
        user
    )
    .fetch_optional(db)
    .await
}

/// A new, empty conversation (`title`: `None` until the first message).
pub async fn create_conversation(
    db: &PgPool,
    user: Uuid,
    title: Option<&str>,
) -> sqlx::Result<Conversation> {
    let row = sqlx::query!(
        "INSERT INTO chat_conversations (user_id, title) VALUES ($1, $2)
         RETURNING id, created_at, updated_at",
        user,
        title,
    )
    .fetch_one(db)
    .await?;
    Ok(Conversation {
        id: row.id,
        title: title.unwrap_or(UNTITLED).to_string(),
        created_at: row.created_at,
        updated_at: row.updated_at,
        messages: 0,
    })
}

/// Renames the user's conversation; false if they have none by that id.
pub async fn rename_conversation(
    db: &PgPool,
    user: Uuid,
    id: Uuid,
    title: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE chat_conversations SET title = $3, updated_at = now() WHERE id = $2 AND user_id = $1",
        user,
        id,
        title,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the user's conversation and its messages; false if they have
/// none by that id.
pub async fn delete_conversation(db: &PgPool, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM chat_conversations WHERE id = $2 AND user_id = $1",
        user,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

struct HitRow {
    id: i64,
    author: String,
    body: String,
    speech: Option<Json<Speech>>,
    follow_ups: Json<Vec<String>>,
    created_at: OffsetDateTime,
    stopped: bool,
    conversation_id: Uuid,
    title: String,
}

/// The user's messages containing `text` (any case), newest first.
pub async fn search(
    db: &PgPool,
    user: Uuid,
    text: &str,
    limit: i64,
) -> sqlx::Result<Vec<SearchHit>> {
    // The words are matched as they are: `%` and `_` are not wildcards.
    let pattern = crate::db::contains_pattern(text);
    let rows = sqlx::query_as!(
        HitRow,
        r#"SELECT m.id, m.author, m.body, m.speech AS "speech: Json<Speech>",
                  m.follow_ups AS "follow_ups: Json<Vec<String>>", m.created_at,
                  m.stopped, m.conversation_id, coalesce(c.title, 'New conversation') AS "title!"
             FROM chat_messages m JOIN chat_conversations c ON c.id = m.conversation_id
            WHERE m.user_id = $1 AND m.body ILIKE $2 ESCAPE '\'
            ORDER BY m.id DESC LIMIT $3"#,
        user,
        pattern,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SearchHit {
            conversation_id: r.conversation_id,
            conversation_title: r.title,
            message: ChatMessage::from(MessageRow {
                id: r.id,
                author: r.author,
                body: r.body,
                speech: r.speech,
                follow_ups: r.follow_ups,
                created_at: r.created_at,
                stopped: r.stopped,
            }),
        })
        .collect())
}

/// What a user's message is to a stop: its author, and whether it has
/// its reply.
pub struct Answering {
    pub author: String,
    pub answered: bool,
}

/// The user's message `id` as a stop sees it; `None` if they have none.
pub async fn answering(db: &PgPool, user: Uuid, id: i64) -> sqlx::Result<Option<Answering>> {
    sqlx::query_as!(
        Answering,
        r#"SELECT m.author,
                  EXISTS (SELECT 1 FROM chat_messages r
                           WHERE r.conversation_id = m.conversation_id AND r.author = 'bot'
                             AND (r.reply_to = m.id OR (r.reply_to IS NULL AND r.id > m.id)))
                  AS "answered!"
             FROM chat_messages m WHERE m.id = $2 AND m.user_id = $1"#,
        user,
        id,
    )
    .fetch_optional(db)
    .await
}

/// The last message the user wrote in `conversation`: its id and text.
pub async fn last_user_message(
    db: &PgPool,
    user: Uuid,
    conversation: Uuid,
) -> sqlx::Result<Option<(i64, String)>> {
    let row = sqlx::query!(
        "SELECT id, body FROM chat_messages
          WHERE user_id = $1 AND conversation_id = $2 AND author = 'user'
          ORDER BY id DESC LIMIT 1",
        user,
        conversation,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.body)))
}

/// Deletes the replies after the user's message `id` in its conversation
/// (those stored before replies named their message included); how many.
pub async fn delete_replies_after(
    db: impl PgExecutor<'_>,
    user: Uuid,
    conversation: Uuid,
    id: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM chat_messages
          WHERE user_id = $1 AND conversation_id = $2 AND author = 'bot' AND id > $3",
        user,
        conversation,
        id,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes every conversation of the user; how many messages went.
pub async fn clear(db: &PgPool, user: Uuid) -> sqlx::Result<u64> {
    let messages = sqlx::query_scalar!(
        r#"WITH gone AS (DELETE FROM chat_conversations WHERE user_id = $1 RETURNING id)
           SELECT count(*) AS "n!" FROM chat_messages WHERE conversation_id IN (SELECT id FROM gone)"#,
        user
    )
    .fetch_one(db)
    .await?;
    Ok(messages as u64)
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
