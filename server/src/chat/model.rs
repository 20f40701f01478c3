//! The chat API's JSON shapes and the checks on what users send.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{ApiError, FieldError};
use crate::tts::SpeechRef;

/// Longest message a user may send, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest reply kept from a bot, in characters.
pub const MAX_REPLY_CHARS: usize = 8000;

/// Where a reply's audio is: the same shape as the speech service's
/// The speech of a reply, stored with the message.
pub type Speech = SpeechRef;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendMessage {
    /// 1–2000 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub message: String,
    /// The conversation to continue; default: the one most recently used,
    /// or a new one for a user who has none.
    #[serde(default)]
    pub conversation_id: Option<uuid::Uuid>,
}

impl SendMessage {
    /// The message, trimmed; blank or too long (as sent) is a 422 naming
    /// `message`.
    pub fn checked(&self) -> Result<String, ApiError> {
        checked_text("message", &self.message, MAX_MESSAGE_CHARS)
    }
}

/// The bot's answer to a message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatReply {
    /// Id of the bot's message.
    pub id: i64,
    /// The conversation both messages belong to.
    pub conversation_id: uuid::Uuid,
    /// Id of the user's message it answers.
    pub user_message_id: i64,
    /// The reply as written (Markdown).
    pub reply: String,
    /// The reply as HTML of a safe subset of Markdown (paragraphs, lists,
    /// quotes, emphasis, code, web and mail links); raw HTML in the reply
    /// is shown as text.
    pub html: String,
    /// The reply's audio (its words without the markup); `null` if speech
    /// could not be prepared, or a stopped reply had no words yet.
    pub speech: Option<Speech>,
    pub follow_ups: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The user stopped the reply while it was written: `reply` is what
    /// had been written by then.
    pub stopped: bool,
}

/// The last event of a streamed reply.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamDone {
    #[serde(flatten)]
    pub reply: ChatReply,
    /// When a `speech` event already carried the first sentence: the audio
    /// of the rest of the reply, to play after it.
    pub rest_speech: Option<Speech>,
    /// Byte offset of the rest within the normalised reply text (add it to
    /// the rest's speech-mark offsets).
    pub rest_offset: Option<usize>,
}

/// One message of the conversation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: i64,
    /// `user` or `bot`.
    pub author: String,
    /// As written (a bot's reply: Markdown).
    pub text: String,
    /// A bot's reply as HTML of a safe subset of Markdown (see
    /// `ChatReply.html`); `null` for the user's own messages, shown as
    /// written.
    pub html: Option<String>,
    pub speech: Option<Speech>,
    pub follow_ups: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A reply the user stopped while it was written.
    pub stopped: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// Oldest first.
    pub items: Vec<ChatMessage>,
    /// Pass as `before` to get the previous page; `null` at the beginning.
    pub next_before: Option<i64>,
}

/// A user's speech preferences.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// A voice id from `/api/voices`; `null` or blank = the server's default.
    #[serde(default)]
    #[schema(pattern = r"^\s*(?:[A-Za-z0-9][A-Za-z0-9_+.\-]{0,63})?\s*$")]
    pub voice: Option<String>,
    /// BCP-47 language such as `en-US` (a language and up to three
    /// subtags); `null` or blank = the voice's language.
    #[serde(default)]
    #[schema(pattern = r"^\s*(?:[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3})?\s*$")]
    pub language: Option<String>,
    /// Play new replies without pressing Play.
    #[serde(default = "yes")]
    pub autoplay: bool,
    /// Playback speed, 0.5–2.0.
    #[serde(default = "normal_rate")]
    #[schema(minimum = 0.5, maximum = 2.0)]
    pub speech_rate: f64,
}

fn yes() -> bool {
    true
}

fn normal_rate() -> f64 {
    1.0
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            voice: None,
            language: None,
            autoplay: true,
            speech_rate: 1.0,
        }
    }
}

/// A voice id as engines spell them (`Joanna`, `en-us`, `en-gb-x-rp`).
pub fn valid_voice_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c))
}

/// A BCP-47-shaped tag: a 2–3 letter language, then up to three 1–8
/// character subtags (`en-US`, `zh-Hans-CN`, `sr-Latn-RS`).
pub fn valid_language(l: &str) -> bool {
    let mut parts = l.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    let subtags: Vec<&str> = parts.collect();
    first_ok
        && subtags.len() <= 3
        && subtags
            .iter()
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl Settings {
    /// Trims and checks every field, reporting all problems at once.
    pub fn checked(mut self) -> Result<Settings, ApiError> {
        let mut errors = Vec::new();
        let blank_to_none = |v: Option<String>| {
            v.map(|s| crate::extract::trim_blank(&s).to_string())
                .filter(|s| !s.is_empty())
        };
        self.voice = blank_to_none(self.voice);
        self.language = blank_to_none(self.language);
        if let Some(v) = &self.voice
            && !valid_voice_id(v)
        {
            errors.push(FieldError {
                field: "voice".into(),
                message: "must be a voice id from /api/voices".into(),
            });
        }
        if let Some(l) = &self.language
            && !valid_language(l)
        {
            errors.push(FieldError {
                field: "language".into(),
                message: "must be a language tag such as en-US".into(),
            });
        }
        if !self.speech_rate.is_finite() || !(0.5..=2.0).contains(&self.speech_rate) {
            errors.push(FieldError {
                field: "speechRate".into(),
                message: "must be between 0.5 and 2.0".into(),
            });
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(ApiError::Validation {
                detail: format!(
                    "Invalid settings: {}.",
                    errors
                        .iter()
                        .map(|e| format!("{} {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                errors,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_ids_and_languages_are_shape_checked() {
        for ok in ["Joanna", "en-us", "en-gb-x-rp", "Matthew"] {
            assert!(valid_voice_id(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "<script>", &"a".repeat(65)] {
            assert!(!valid_voice_id(bad), "{bad}");
        }
        for ok in ["en", "en-US", "cmn-CN", "de-DE-1996"] {
            assert!(valid_language(ok), "{ok}");
        }
        for bad in ["", "e", "english!", "en_US", "en--US"] {
            assert!(!valid_language(bad), "{bad}");
        }
    }

    #[test]
    fn messages_are_trimmed_and_bounded() {
        let ok = SendMessage {
            message: "  hi \n".into(),
            conversation_id: None,
        };
        assert_eq!(ok.checked().unwrap(), "hi");
        let long = SendMessage {
            message: "é".repeat(MAX_MESSAGE_CHARS + 1),
            conversation_id: None,
        };
        assert_eq!(long.checked().unwrap_err().status(), 422);
        let exactly = SendMessage {
            message: "é".repeat(MAX_MESSAGE_CHARS),
            conversation_id: None,
        };
        assert!(exactly.checked().is_ok());
    }
}

/// Longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// What a conversation is called before its first message.
pub const UNTITLED: &str = "New conversation";
/// Characters of the first message a conversation is titled with.
pub const TITLE_FROM_MESSAGE_CHARS: usize = 60;

/// One of the user's conversations.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: uuid::Uuid,
    /// From the first message until renamed; "New conversation" before.
    pub title: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The last message or rename.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// How many messages it holds.
    pub messages: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    /// Most recently updated first.
    pub items: Vec<Conversation>,
    /// Pass as `before` for the next page; `null` at the end.
    pub next_before: Option<uuid::Uuid>,
}

/// A new conversation; without a title, the first message gives it one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    /// 1–200 characters, not all blank.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub title: Option<String>,
}

/// A conversation's new title.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameConversation {
    /// 1–200 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub title: String,
}

/// A title as sent, trimmed; blank or too long is a 422 naming `title`.
pub fn checked_title(title: &str) -> Result<String, ApiError> {
    checked_text("title", title, MAX_TITLE_CHARS)
}

/// `value` trimmed; blank, or longer than `max` characters as sent, is a
/// 422 naming `field`.
fn checked_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let text = crate::extract::trim_blank(value);
    if text.is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(ApiError::validation(
            field,
            format!("must be at most {max} characters (this one has {chars})"),
        ));
    }
    Ok(text.to_string())
}

/// The title a first message gives a conversation: its words on one line,
/// cut at [`TITLE_FROM_MESSAGE_CHARS`] characters.
pub fn title_from(message: &str) -> String {
    let words: Vec<&str> = message.split_whitespace().collect();
    let line = words.join(" ");
    match line.char_indices().nth(TITLE_FROM_MESSAGE_CHARS) {
        Some((at, _)) => line[..at].to_string(),
        None => line,
    }
}

/// A message that matched a search, and where it is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    pub conversation_id: uuid::Uuid,
    pub conversation_title: String,
    pub message: ChatMessage,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchResults {
    /// Newest first.
    pub items: Vec<SearchHit>,
}

#[cfg(test)]
mod conversation_tests {
    use super::*;

    #[test]
    fn a_first_message_titles_its_conversation_on_one_line_cut_at_sixty_characters() {
        assert_eq!(title_from("  Hello\n  there,\tbot  "), "Hello there, bot");
        let long = "é".repeat(100);
        assert_eq!(title_from(&long).chars().count(), 60);
        assert_eq!(title_from(""), "");
    }
}
