//! `POST /api/stt` (the recorded bytes as the body) and OpenAI's
//! `POST /v1/audio/transcriptions` (a multipart form), over one service.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admitted, Speaker, Stt, Transcript, Utterance, audio};
use crate::error::{ApiError, Problem};
use crate::extract::{AppJson, AppQuery};
use crate::identity::CurrentUser;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(recognise))
        .routes(routes!(transcriptions))
        // An utterance is larger than any JSON body the API takes: these
        // routes apply VOXGATE_STT_MAX_BYTES themselves (`limited`).
        .layer(DefaultBodyLimit::disable())
}

/// The request with its body cut off at the recogniser's limit.
fn limited(stt: &Stt, request: Request) -> Request {
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, stt.max_bytes()));
    Request::from_parts(parts, body)
}

fn speaker(user: &CurrentUser) -> Speaker {
    Speaker {
        user_id: user.id,
        exempt: user.unmetered(),
    }
}

fn too_large(e: &dyn std::fmt::Display, status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(
            "The recording is larger than this server accepts (VOXGATE_STT_MAX_BYTES).".into(),
        )
    } else {
        ApiError::bad_request(format!("The request body could not be read: {e}."))
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RecogniseQuery {
    /// The language spoken (ISO 639-1); default: detected, or the model's.
    #[param(pattern = "^[a-z]{2}$")]
    language: Option<String>,
}

/// Recognises one utterance: the body is the recording (16-bit PCM WAV, or
/// Opus in WebM or Ogg as browsers record it). With `Accept:
/// text/event-stream` the answer streams: `partial` events (`{"text"}`,
/// the text so far, where the engine can tell it), then `done` (the
/// transcript) or `error` (`{"status", "detail"}`).
#[utoipa::path(post, path = "/api/stt", tag = "listening", params(RecogniseQuery),
    request_body(description = "The utterance: audio/wav, audio/webm, audio/ogg, or any of them as application/octet-stream",
        content((Vec<u8> = "application/octet-stream"), (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/webm"), (Vec<u8> = "audio/ogg"))),
    responses((status = 200, description = "The transcript, or its events", content(
            (Transcript = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem),
        (status = 503, body = Problem)))]
async fn recognise(
    State(stt): State<Stt>,
    user: CurrentUser,
    AppQuery(q): AppQuery<RecogniseQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let streamed = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let declared = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    audio::check_declared(declared.as_deref())?;
    let language = q.language.filter(|l| !l.is_empty());
    super::check_language(language.as_deref())?;
    // Refused before the upload is read: no recogniser, over the rate, or
    // another utterance of the user's under way.
    let admitted = stt.admit(speaker(&user)).await?;
    let body = Bytes::from_request(limited(&stt, request), &())
        .await
        .map_err(|e| too_large(&e, e.status()))?;
    // What the recording is and how long are known at once: answered as a
    // status, also when the answer would stream.
    let utterance = admitted.check(&body, language)?;
    if streamed {
        return Ok(events(admitted, body, utterance));
    }
    let transcript = admitted.transcribe(&body, utterance, None).await?;
    Ok(AppJson(transcript).into_response())
}

/// The recognition as server-sent events. The recognition runs inside the
/// response stream, so a client that leaves cancels it and frees its
/// worker; partials and the answer travel through one channel, in order.
fn events(admitted: Admitted, body: Bytes, utterance: Utterance) -> Response {
    enum Said {
        Partial(String),
        Done(Result<Transcript, ApiError>),
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Said>(32);
    let work = async move {
        let (partial_tx, mut partial_rx) = tokio::sync::mpsc::channel::<String>(16);
        let forward = {
            let tx = tx.clone();
            async move {
                while let Some(text) = partial_rx.recv().await {
                    let _ = tx.send(Said::Partial(text)).await;
                }
            }
        };
        let recognise = async {
            let result = admitted
                .transcribe(&body, utterance, Some(&partial_tx))
                .await;
            drop(partial_tx);
            result
        };
        let (result, ()) = futures::join!(recognise, forward);
        let _ = tx.send(Said::Done(result)).await;
    };
    let said = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|said| (said, rx))
    });
    // The work yields nothing itself: it only has to be driven. When it
    // ends, its senders are gone and the channel, so the stream, ends too.
    let driven = futures::stream::once(work).filter_map(|()| std::future::ready(None));
    let said = futures::stream::select(said, driven);
    let events = said.map(|said| {
        let event = match said {
            Said::Partial(text) => Event::default()
                .event("partial")
                .json_data(json!({ "text": text })),
            Said::Done(Ok(transcript)) => Event::default().event("done").json_data(&transcript),
            Said::Done(Err(e)) => {
                let status = e.status().as_u16();
                let retry_after = match &e {
                    ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
                    ApiError::Unavailable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let detail = if status >= 500 && status != 503 {
                    "Your speech could not be recognised; try again.".to_string()
                } else {
                    e.to_string()
                };
                // Logs a 5xx cause the same way a plain response would.
                let _ = e.into_response();
                Event::default().event("error").json_data(
                    json!({ "status": status, "detail": detail, "retryAfter": retry_after }),
                )
            }
        };
        Ok::<_, std::convert::Infallible>(event.unwrap_or_else(|_| Event::default().event("error")))
    });
    let mut response = Sse::new(events).into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

/// OpenAI's transcription form (`file`, `model`, `language`,
/// `response_format`…), for clients written against that API.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct TranscriptionForm {
    /// The recording.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Accepted and ignored: the server's recogniser answers (e.g. `whisper-1`).
    model: String,
    #[schema(pattern = "^[a-z]{2}$")]
    language: Option<String>,
    /// `json` (default), `text` or `verbose_json`.
    #[schema(pattern = "^(json|text|verbose_json)$")]
    response_format: Option<String>,
    prompt: Option<String>,
    temperature: Option<f64>,
}

/// OpenAI-compatible transcription: the same recogniser, limits and
/// quotas; authenticate with a Keycloak access token as the API key.
#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "listening",
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "`{\"text\"}`, the text, or the verbose form",
        content((String = "application/json"), (String = "text/plain"))),
        (status = 400, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
async fn transcriptions(
    State(stt): State<Stt>,
    user: CurrentUser,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_form {
        return Err(ApiError::bad_request(
            "Send a multipart/form-data body with the recording as `file`.",
        ));
    }
    let admitted = stt.admit(speaker(&user)).await?;
    let mut form = Multipart::from_request(limited(&stt, request), &())
        .await
        .map_err(|e| ApiError::bad_request(format!("The form could not be read: {e}.")))?;
    let mut file = None;
    let mut language = None;
    let mut format = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| too_large(&e, e.status()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                audio::check_declared(field.content_type())?;
                file = Some(field.bytes().await.map_err(|e| too_large(&e, e.status()))?);
            }
            "language" | "response_format" | "model" | "prompt" | "temperature" => {
                let value = field.text().await.map_err(|e| too_large(&e, e.status()))?;
                let value = crate::extract::trim_blank(&value).to_string();
                match name.as_str() {
                    "language" if !value.is_empty() => language = Some(value),
                    "response_format" if !value.is_empty() => format = Some(value),
                    _ => {}
                }
            }
            // Fields this server does not use (timestamp granularities…).
            _ => {}
        }
    }
    let Some(file) = file else {
        return Err(ApiError::validation("file", "the recording is missing"));
    };
    let format = format.unwrap_or_else(|| "json".into());
    if !["json", "text", "verbose_json"].contains(&format.as_str()) {
        return Err(ApiError::validation(
            "response_format",
            "must be json, text or verbose_json",
        ));
    }
    let utterance = admitted.check(&file, language)?;
    let t = admitted.transcribe(&file, utterance, None).await?;
    Ok(match format.as_str() {
        "text" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", t.text),
        )
            .into_response(),
        "verbose_json" => axum::Json(json!({
            "task": "transcribe",
            "language": t.language,
            "duration": t.duration_ms as f64 / 1000.0,
            "text": t.text,
            "segments": [],
        }))
        .into_response(),
        _ => axum::Json(json!({ "text": t.text })).into_response(),
    })
}
