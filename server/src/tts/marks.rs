//! Word and sentence timings of a registered synthesis (Polly's speech
//! marks; estimates for voices on this machine), cached once known exactly.

use std::time::Duration;

use super::engine::{EngineKind, Mark};
use super::quota::{Speaker, permit};
use super::{Tts, cache, request};
use crate::error::ApiError;

impl Tts {
    /// Computing Polly marks is a billed synthesis, so it counts against
    /// the user's rate limit and quota and takes a concurrency permit.
    pub async fn marks(&self, speaker: Speaker, key: &str) -> Result<Vec<Mark>, ApiError> {
        if self.is_paid(speaker.user_id, key).await?.is_none() {
            return Err(request::not_registered(key));
        }
        let marks_key = format!("{key}.marks");
        if let Some(entry) = self.inner.memory.get(&marks_key) {
            return serde_json::from_slice(&entry.data).map_err(|e| ApiError::Internal(e.into()));
        }
        if let Some(entry) = cache::load(&self.inner.db, &marks_key).await? {
            let marks =
                serde_json::from_slice(&entry.data).map_err(|e| ApiError::Internal(e.into()))?;
            self.inner.memory.put(&marks_key, entry);
            return Ok(marks);
        }
        let keyed = request::lookup(&self.inner.db, key).await?;
        let synthesis = self.synthesis(&keyed)?;
        let duration = cache::duration_ms(&self.inner.db, key)
            .await?
            .map(|ms| Duration::from_millis(ms.max(0) as u64));
        let billed = self.engine_kind() == EngineKind::Polly;
        let charge = if billed {
            Some(self.admit(speaker, &keyed.text, keyed.engine_kind).await?)
        } else {
            None
        };
        let computed = async {
            let _permit = match billed {
                true => Some(permit(self.inner.permits.clone()).await?),
                false => None,
            };
            self.inner.engine.speech_marks(&synthesis, duration).await
        }
        .await;
        let marks = match computed {
            Ok(m) => m,
            Err(e) => {
                if let Some(c) = charge {
                    c.refund().await;
                }
                return Err(e.into());
            }
        };
        // Estimates are kept only once the real duration is known.
        if billed || duration.is_some() {
            self.store_marks(&marks_key, &marks).await?;
        }
        Ok(marks)
    }

    async fn store_marks(&self, marks_key: &str, marks: &[Mark]) -> Result<(), ApiError> {
        let data = serde_json::to_vec(marks).map_err(|e| ApiError::Internal(e.into()))?;
        let stored = cache::store_whole(
            &self.inner.db,
            marks_key,
            "application/json",
            &data,
            self.inner.config.cache_max_bytes,
        )
        .await;
        if stored.is_ok() {
            self.inner.memory.put(
                marks_key,
                cache::Entry {
                    content_type: "application/json".into(),
                    data: data.into(),
                    duration_ms: None,
                    etag: None,
                },
            );
        }
        Ok(())
    }
}
