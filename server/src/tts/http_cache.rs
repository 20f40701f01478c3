//! Serving a cached entry over HTTP: whole, one byte range (`Range`,
//! `If-Range`), or 304 (`If-None-Match`), from memory, streamed from
//! Postgres or the audio bucket, or redirected to the bucket.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::PgPool;

use super::cache;

/// A complete cached entry and where its bytes come from.
pub(super) enum Cached {
    Memory(Arc<cache::Entry>),
    /// Too large to hold: streamed from Postgres chunk by chunk.
    Postgres {
        db: PgPool,
        key: String,
        stored: cache::Stored,
    },
    /// In the audio bucket, already asked for the bytes this response
    /// sends (so a failing bucket is known before answering).
    Bucket {
        stored: cache::Stored,
        body: Mutex<Option<BoxStream<'static, std::io::Result<Bytes>>>>,
    },
    /// In the audio bucket, served by the bucket itself through a
    /// presigned URL.
    Redirect {
        stored: cache::Stored,
        url: String,
    },
}

impl Cached {
    fn stored(&self) -> Option<&cache::Stored> {
        match self {
            Cached::Memory(_) => None,
            Cached::Postgres { stored, .. }
            | Cached::Bucket { stored, .. }
            | Cached::Redirect { stored, .. } => Some(stored),
        }
    }

    pub(super) fn etag(&self) -> Option<&str> {
        match self {
            Cached::Memory(entry) => entry.etag.as_deref(),
            other => other.stored().and_then(|s| s.etag.as_deref()),
        }
    }

    fn content_type(&self) -> &str {
        match self {
            Cached::Memory(entry) => &entry.content_type,
            other => other.stored().map_or("", |s| s.content_type.as_str()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Cached::Memory(entry) => entry.data.len(),
            other => other.stored().map_or(0, |s| s.size as usize),
        }
    }

    /// Bytes `start..=end` as a body (for the bucket, the range it was
    /// opened with: [`plan`] chose both).
    fn body(&self, start: usize, end: usize) -> Body {
        match self {
            Cached::Memory(entry) => Body::from(entry.data.slice(start..=end)),
            Cached::Postgres { db, key, .. } => Body::from_stream(cache::stream_range(
                db.clone(),
                key.clone(),
                start as u64,
                end as u64,
            )),
            Cached::Bucket { body, .. } => Body::from_stream(take(body)),
            Cached::Redirect { .. } => Body::empty(),
        }
    }
}

/// The opened bucket stream, once.
fn take(
    body: &Mutex<Option<BoxStream<'static, std::io::Result<Bytes>>>>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    body.lock()
        .ok()
        .and_then(|mut b| b.take())
        .unwrap_or_else(|| {
            futures::stream::once(async {
                Err(std::io::Error::other("the bucket stream was used already"))
            })
            .boxed()
        })
}

/// What a request for a cached entry of `total` bytes with validator
/// `etag` is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    NotModified,
    Unsatisfiable,
    Part(usize, usize),
    Whole,
}

pub(super) fn plan(total: usize, etag: &str, headers: &HeaderMap) -> Plan {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Plan::NotModified;
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    match range.filter(|_| if_range_ok).map(|r| parse_range(r, total)) {
        Some(Some(Ok((start, end)))) => Plan::Part(start, end),
        Some(Some(Err(()))) => Plan::Unsatisfiable,
        // No range, or a form we do not serve (several ranges): the whole.
        _ => Plan::Whole,
    }
}

/// A cached entry as a response: whole, a byte range, or 304.
pub(super) fn serve_cached(
    entry: &Cached,
    etag: &str,
    headers: &HeaderMap,
    cache_control: &'static str,
) -> Response {
    let common = |h: &mut HeaderMap| {
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert("x-voxgate-cache", HeaderValue::from_static("hit"));
    };
    let total = entry.len();
    let plan = plan(total, etag, headers);
    if plan == Plan::NotModified {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        common(r.headers_mut());
        return r;
    }
    if let Cached::Redirect { url, .. } = entry {
        // The bucket answers the client's own Range; the URL expires, so
        // the redirect is not to be stored.
        let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
        if let Ok(v) = HeaderValue::from_str(url) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        common(r.headers_mut());
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        return r;
    }
    let mut response = match plan {
        Plan::Part(start, end) => {
            let mut r = (StatusCode::PARTIAL_CONTENT, entry.body(start, end)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            r
        }
        Plan::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            common(r.headers_mut());
            return r;
        }
        _ if total == 0 => StatusCode::OK.into_response(),
        _ => {
            let mut r = (StatusCode::OK, entry.body(0, total - 1)).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
            r
        }
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(entry.content_type()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    common(h);
    response
}

/// A complete cached entry's bytes, a few chunks at a time, as a first
/// hearing streams them (see [`streamed`]).
pub(super) fn whole_stream(entry: &Cached) -> BoxStream<'static, std::io::Result<Bytes>> {
    match entry {
        Cached::Memory(entry) => {
            let data = entry.data.clone();
            let pieces = (0..data.len())
                .step_by(16 * 1024)
                .map(move |at| Ok(data.slice(at..(at + 16 * 1024).min(data.len()))))
                .collect::<Vec<_>>();
            futures::stream::iter(pieces).boxed()
        }
        Cached::Postgres { db, key, stored } => {
            cache::stream_range(db.clone(), key.clone(), 0, stored.size.saturating_sub(1)).boxed()
        }
        Cached::Bucket { body, .. } => take(body),
        // Never made for a first hearing (see `Tts::bucket_entry`).
        Cached::Redirect { .. } => futures::stream::empty().boxed(),
    }
}

/// A streamed response: a synthesis in progress, or a user's first hearing
/// of cached audio, which must look exactly like one (no length, no
/// validator, no ranges), so both are built here and nowhere else.
pub(super) fn streamed(
    content_type: &'static str,
    label: &'static str,
    body: BoxStream<'static, std::io::Result<Bytes>>,
) -> Response {
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // No validator while streaming: the final bytes are not known yet, and
    // a later synthesis of the same key may encode differently.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert("x-voxgate-cache", HeaderValue::from_static(label));
    response
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive range. `None`: not a
/// single byte range (ignored); `Err`: unsatisfiable.
fn parse_range(value: &str, total: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if total == 0 {
        return Some(Err(()));
    }
    let result = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: usize = b.parse().ok()?;
            if n == 0 {
                Err(())
            } else {
                Ok((total.saturating_sub(n), total - 1))
            }
        }
        (false, _) => {
            let start: usize = a.parse().ok()?;
            let end: usize = if b.is_empty() {
                total - 1
            } else {
                b.parse::<usize>().ok()?.min(total - 1)
            };
            if start >= total || start > end {
                Err(())
            } else {
                Ok((start, end))
            }
        }
        _ => return None,
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some(Ok((990, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=5-2", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
