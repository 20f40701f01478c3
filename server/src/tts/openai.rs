//! OpenAI's `POST /v1/audio/speech` over voxgate's voices, with the same
//! quotas, limits and cache as `/textToSpeech`, so chat front-ends that
//! speak that API (Open WebUI, LibreChat) can use voxgate's voices with a
//! Keycloak access token as their API key.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::handlers::speaker;
use super::{SpeechParams, Tts};
use crate::error::{ApiError, Problem};
use crate::extract::AppJson;
use crate::identity::CurrentUser;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(speech))
}

/// OpenAI's voice names: clients send one of these by default, and each
/// speaks with this server's default voice.
pub const OPENAI_VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
];

#[derive(Deserialize, utoipa::ToSchema)]
struct SpeechRequest {
    /// Accepted and ignored: the server's engine speaks (e.g. `tts-1`).
    #[allow(dead_code)]
    model: Option<String>,
    /// The text to speak.
    input: String,
    /// A voice id from `/api/voices`, or one of OpenAI's names (alloy, echo,
    /// …), which speak with the default voice.
    voice: Option<String>,
    /// `mp3` (the default and the only one offered).
    #[schema(pattern = "^mp3$")]
    response_format: Option<String>,
    /// Accepted and ignored (the voices speak at their own pace).
    #[allow(dead_code)]
    speed: Option<f64>,
    /// Accepted and ignored.
    #[allow(dead_code)]
    instructions: Option<String>,
}

/// Speaks `input` and streams the audio, as OpenAI's speech endpoint does.
#[utoipa::path(post, path = "/v1/audio/speech", tag = "speech", request_body = SpeechRequest,
    responses((status = 200, description = "The audio, streamed", content_type = "audio/mpeg"),
        (status = 400, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem), (status = 503, body = Problem)))]
async fn speech(
    State(tts): State<Tts>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(request): AppJson<SpeechRequest>,
) -> Result<Response, ApiError> {
    // OpenAI's `pcm` is 24 kHz; this server's voices speak at 16 to 22 kHz,
    // which a client expecting 24 kHz would play too fast: mp3 only.
    if request
        .response_format
        .as_deref()
        .is_some_and(|f| f != "mp3")
    {
        return Err(ApiError::validation(
            "response_format",
            "must be mp3 on this server",
        ));
    }
    let voice = request
        .voice
        .filter(|v| !OPENAI_VOICES.contains(&v.to_ascii_lowercase().as_str()));
    let params = SpeechParams {
        text: request.input,
        voice,
        language: None,
        format: Some("mp3".to_string()),
        engine_kind: None,
    };
    tts.speak_and_serve(speaker(&user), params, &headers, "private, max-age=86400")
        .await
}
