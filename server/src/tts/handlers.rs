//! Speech endpoints: the original `GET /textToSpeech` (same query names as
//! the Flask endpoint it replaces), `POST /api/tts`, `GET /api/tts/{key}`,
//! its speech marks, and `GET /api/voices`. All need a signed-in user.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Tts;
use super::engine::{Mark, Voice};
use super::{QuotaClass, Speaker, SpeechParams, SpeechRef};
use crate::error::{ApiError, Problem};
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::identity::CurrentUser;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(text_to_speech))
        .routes(routes!(create_speech))
        .routes(routes!(speech_audio))
        .routes(routes!(speech_marks))
        .routes(routes!(voices))
        .routes(routes!(speech_quota))
}

/// The signed-in user's daily speech quota: used, left, and when it
/// starts again.
#[utoipa::path(get, path = "/api/me/speech-quota", tag = "speech",
    responses((status = 200, body = super::SpeechQuota), (status = 401, body = Problem)))]
async fn speech_quota(
    State(tts): State<Tts>,
    user: CurrentUser,
) -> Result<AppJson<super::SpeechQuota>, ApiError> {
    Ok(AppJson(tts.quota(speaker(&user)).await?))
}

/// A cookie-authenticated speech request from another site (a link or an
/// embedded `<audio>` elsewhere) would spend the user's quota: refuse it.
/// Fetch metadata tells; requests without it (non-browsers) pass.
fn refuse_cross_site(user: &CurrentUser, headers: &HeaderMap) -> Result<(), ApiError> {
    let session = matches!(user.method, crate::identity::AuthMethod::Session { .. });
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if session && matches!(site, Some("cross-site") | Some("same-site")) {
        return Err(ApiError::Forbidden(
            "Speech cannot be requested from another site.".into(),
        ));
    }
    Ok(())
}

/// Staff speak without the daily quota.
pub(super) fn speaker(user: &CurrentUser) -> Speaker {
    let exempt = user.unmetered();
    Speaker {
        user_id: user.id,
        quota: if exempt {
            QuotaClass::Exempt
        } else {
            QuotaClass::Daily
        },
    }
}

const KEYED_CACHE: &str = "private, max-age=31536000, immutable";
const LEGACY_CACHE: &str = "private, max-age=86400";

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LegacyQuery {
    #[serde(rename = "Text")]
    text: Option<String>,
    #[serde(rename = "VoiceId")]
    voice_id: Option<String>,
    #[serde(rename = "LanguageCode")]
    language_code: Option<String>,
    /// mp3 (default), ogg_vorbis or pcm.
    #[serde(rename = "OutputFormat")]
    output_format: Option<String>,
    /// Polly engine: standard, neural, long-form or generative.
    #[serde(rename = "Engine")]
    engine: Option<String>,
}

/// Speaks `Text` and streams the audio (compatible with the original
/// Flask endpoint's query parameters).
#[utoipa::path(get, path = "/textToSpeech", tag = "speech", params(LegacyQuery),
    responses((status = 200, description = "Audio stream", content_type = "audio/mpeg"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem),
        (status = 429, body = Problem), (status = 503, body = Problem)))]
async fn text_to_speech(
    State(tts): State<Tts>,
    user: CurrentUser,
    AppQuery(q): AppQuery<LegacyQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    refuse_cross_site(&user, &headers)?;
    let Some(text) = q.text else {
        return Err(ApiError::bad_request(
            "The Text query parameter is required.",
        ));
    };
    let params = SpeechParams {
        text,
        voice: q.voice_id,
        language: q.language_code,
        format: q.output_format,
        engine_kind: q.engine,
    };
    tts.speak_and_serve(speaker(&user), params, &headers, LEGACY_CACHE)
        .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateSpeech {
    text: String,
    voice: Option<String>,
    language: Option<String>,
    /// mp3 (default), ogg_vorbis or pcm.
    format: Option<String>,
    /// Polly engine: standard, neural, long-form or generative.
    engine: Option<String>,
}

/// Registers a synthesis; fetch the audio from the returned `url`.
#[utoipa::path(post, path = "/api/tts", tag = "speech", request_body = CreateSpeech,
    responses((status = 201, body = SpeechRef), (status = 400, body = Problem), (status = 413, body = Problem), (status = 429, body = Problem)))]
async fn create_speech(
    State(tts): State<Tts>,
    user: CurrentUser,
    AppJson(body): AppJson<CreateSpeech>,
) -> Result<Response, ApiError> {
    let params = SpeechParams {
        text: body.text,
        voice: body.voice,
        language: body.language,
        format: body.format,
        engine_kind: body.engine,
    };
    let speech = tts.register(params, speaker(&user)).await?;
    Ok((
        StatusCode::CREATED,
        [("location", speech.url.clone())],
        AppJson(speech),
    )
        .into_response())
}

/// The audio of a registered synthesis: cached (with `Range`, `ETag`) or
/// streamed while it is synthesized.
#[utoipa::path(get, path = "/api/tts/{key}", tag = "speech",
    params(("key" = String, Path, description = "A key returned by POST /api/tts")),
    responses((status = 200, description = "Audio", content_type = "audio/mpeg"), (status = 206, description = "Part of the audio"),
        (status = 304, description = "Not modified"), (status = 404, body = Problem)))]
async fn speech_audio(
    State(tts): State<Tts>,
    user: CurrentUser,
    AppPath(key): AppPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    refuse_cross_site(&user, &headers)?;
    tts.audio(speaker(&user), &key, &headers, KEYED_CACHE).await
}

/// Word and sentence timings of a registered synthesis (Polly speech-mark
/// shape; estimated for the local voice).
#[utoipa::path(get, path = "/api/tts/{key}/marks", tag = "speech",
    params(("key" = String, Path, description = "A key returned by POST /api/tts")),
    responses((status = 200, body = Vec<Mark>), (status = 404, body = Problem)))]
async fn speech_marks(
    State(tts): State<Tts>,
    user: CurrentUser,
    AppPath(key): AppPath<String>,
    headers: HeaderMap,
) -> Result<AppJson<Vec<Mark>>, ApiError> {
    refuse_cross_site(&user, &headers)?;
    Ok(AppJson(tts.marks(speaker(&user), &key).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct VoicesQuery {
    /// Only voices for this language, e.g. `en-US` or `en`.
    language: Option<String>,
}

/// The voices of the active speech engine.
#[utoipa::path(get, path = "/api/voices", tag = "speech", params(VoicesQuery), responses((status = 200, body = Vec<Voice>)))]
async fn voices(
    State(tts): State<Tts>,
    _: CurrentUser,
    AppQuery(q): AppQuery<VoicesQuery>,
) -> Result<AppJson<Vec<Voice>>, ApiError> {
    Ok(AppJson(tts.voices(q.language.as_deref()).await?))
}
