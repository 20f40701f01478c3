//! A minimal in-memory lexicon store (PutLexicon, GetLexicon, DeleteLexicon,
//! ListLexicons).
//!
//! Lexicons are stored and described, and SynthesizeSpeech checks that named
//! lexicons exist, but their pronunciations are not applied to the audio.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::errors::ApiError;
use crate::faults::Operation;

/// Polly's limit on one lexicon's size, in characters.
const MAX_LEXICON_CHARS: usize = 40_000;
/// Polly's limit on stored lexicons per region.
const MAX_LEXICONS: usize = 100;
/// Account id used in ARNs.
const ACCOUNT_ID: &str = "123456789012";

#[derive(Clone, Debug)]
struct Lexicon {
    content: String,
    alphabet: String,
    language_code: String,
    lexemes: usize,
    modified: f64,
}

#[derive(Default)]
pub struct Store {
    lexicons: Mutex<BTreeMap<String, Lexicon>>,
}

impl Store {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Lexicon>> {
        self.lexicons.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map().contains_key(name)
    }
}

/// Lexicon names: `[0-9A-Za-z]{1,20}`.
pub fn valid_name(name: &str) -> bool {
    (1..=20).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::validation(&[format!(
            "Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9A-Za-z]{{1,20}}"
        )]))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        404,
        "LexiconNotFoundException",
        format!("Lexicon not found: {name}"),
    )
}

fn attributes(name: &str, l: &Lexicon, region: &str) -> Value {
    json!({
        "Alphabet": l.alphabet,
        "LanguageCode": l.language_code,
        "LastModified": l.modified,
        "LexemesCount": l.lexemes,
        "LexiconArn": format!("arn:aws:polly:{region}:{ACCOUNT_ID}:lexicon/{name}"),
        "Size": l.content.len(),
    })
}

/// Value of `attr="..."` inside the `<lexicon ...>` start tag.
fn lexicon_attr(content: &str, attr: &str) -> Option<String> {
    let start = content.find("<lexicon")?;
    let tag_end = content[start..].find('>')? + start;
    let tag = &content[start..tag_end];
    let at = tag.find(&format!("{attr}="))? + attr.len() + 1;
    let quote = tag[at..].chars().next()?;
    let rest = &tag[at + 1..];
    Some(rest[..rest.find(quote)?].to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutLexiconInput {
    content: Option<String>,
}

pub(crate) async fn put_lexicon(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    state.faults.gate(Operation::Lexicons).await?;
    check_name(&name)?;
    let input: PutLexiconInput = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "SerializationException",
            format!("Invalid request body: {e}"),
        )
    })?;
    let Some(content) = input.content else {
        return Err(ApiError::validation(&[
            "Value null at 'content' failed to satisfy constraint: Member must not be null".into(),
        ]));
    };
    if content.chars().count() > MAX_LEXICON_CHARS {
        return Err(ApiError::bad_request(
            "LexiconSizeExceededException",
            "The maximum size of the specified lexicon would be exceeded by this operation.",
        ));
    }
    let (Some(alphabet), Some(language_code)) = (
        lexicon_attr(&content, "alphabet"),
        lexicon_attr(&content, "xml:lang"),
    ) else {
        return Err(ApiError::bad_request(
            "InvalidLexiconException",
            "Amazon Polly can't find the specified lexicon. Verify that the lexicon's name is spelled correctly, and then try again.",
        ));
    };
    if alphabet != "ipa" && alphabet != "x-sampa" {
        return Err(ApiError::bad_request(
            "UnsupportedPlsAlphabetException",
            "The alphabet specified by the lexicon is not a supported alphabet. Valid values are x-sampa and ipa.",
        ));
    }
    let mut map = state.lexicons.map();
    if !map.contains_key(&name) && map.len() >= MAX_LEXICONS {
        return Err(ApiError::bad_request(
            "MaxLexiconsNumberExceededException",
            "The maximum number of lexicons would be exceeded by this operation.",
        ));
    }
    let modified = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let lexemes = content.matches("<lexeme").count();
    map.insert(
        name,
        Lexicon {
            content,
            alphabet,
            language_code,
            lexemes,
            modified: (modified * 1000.0).round() / 1000.0,
        },
    );
    Ok(Json(json!({})))
}

pub(crate) async fn get_lexicon(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.faults.gate(Operation::Lexicons).await?;
    check_name(&name)?;
    let map = state.lexicons.map();
    let l = map.get(&name).ok_or_else(|| not_found(&name))?;
    Ok(Json(json!({
        "Lexicon": {"Content": l.content, "Name": name},
        "LexiconAttributes": attributes(&name, l, &state.cfg.region),
    })))
}

pub(crate) async fn delete_lexicon(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.faults.gate(Operation::Lexicons).await?;
    check_name(&name)?;
    state
        .lexicons
        .map()
        .remove(&name)
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(json!({})))
}

pub(crate) async fn list_lexicons(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.faults.gate(Operation::Lexicons).await?;
    let map = state.lexicons.map();
    let list: Vec<Value> = map
        .iter()
        .map(
            |(name, l)| json!({"Name": name, "Attributes": attributes(name, l, &state.cfg.region)}),
        )
        .collect();
    Ok(Json(json!({ "Lexicons": list })))
}
