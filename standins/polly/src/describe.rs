//! DescribeVoices (`GET /v1/voices`).
//!
//! Filters the catalogue by `Engine` and `LanguageCode` (optionally matching
//! additional languages of bilingual voices) and returns everything in one
//! page, so any `NextToken` a client sends cannot be one this service issued.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use crate::AppState;
use crate::errors::ApiError;
use crate::faults::Operation;
use crate::voices::{ENGINES, LANGUAGE_CODES, VOICES, enum_violation};

pub(crate) async fn describe_voices(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    state.faults.gate(Operation::DescribeVoices).await?;
    let mut violations = Vec::new();
    let engine = q.get("Engine").map(String::as_str);
    if let Some(e) = engine.filter(|e| !ENGINES.contains(e)) {
        violations.push(enum_violation(e, "engine", ENGINES));
    }
    let language = q.get("LanguageCode").map(String::as_str);
    if let Some(l) = language.filter(|l| !LANGUAGE_CODES.contains(l)) {
        violations.push(enum_violation(l, "languageCode", LANGUAGE_CODES));
    }
    let include_additional = match q.get("IncludeAdditionalLanguageCodes").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            violations.push(format!(
                "Value '{other}' at 'includeAdditionalLanguageCodes' failed to satisfy constraint: Member must be a boolean"
            ));
            false
        }
    };
    if !violations.is_empty() {
        return Err(ApiError::validation(&violations));
    }
    if q.contains_key("NextToken") {
        return Err(ApiError::bad_request(
            "InvalidNextTokenException",
            "The NextToken is invalid. Verify that it's spelled correctly, and then try again.",
        ));
    }
    let voices: Vec<Value> = VOICES
        .iter()
        .filter(|v| engine.is_none_or(|e| v.supports(e)))
        .filter(|v| {
            language.is_none_or(|l| v.language_code == l || (include_additional && v.speaks(l)))
        })
        .map(|v| v.to_json(include_additional))
        .collect();
    Ok(Json(json!({ "Voices": voices })))
}
