//! Word and sentence timings of a registered synthesis (Polly's speech
//! marks; estimates for voices on this machine), cached once known exactly.

use std::time::Duration;

use super::engine::{EngineKind, Mark};
use super::quota::{Speaker, permit};
use super::{Tts, cache, request};
use crate::error::ApiError;

impl Tts {
    /// Word and sentence timings of a registered key. What a user gets
    /// never depends on what others did: Polly's marks are a billed call,
    /// charged at each user's first request whether cached or not; the
    /// local voices' estimates use the stored audio's length only once the
    /// user has heard that audio themselves (before, from the text alone).
    pub async fn marks(&self, speaker: Speaker, key: &str) -> Result<Vec<Mark>, ApiError> {
        let user = speaker.user_id;
        let Some(registration) = request::registration(&self.inner.db, user, key).await? else {
            return Err(request::not_registered(key));
        };
        let keyed = request::lookup(&self.inner.db, key).await?;
        let synthesis = self.synthesis(&keyed)?;
        let marks_key = format!("{key}.marks");
        if self.engine_kind() != EngineKind::Polly {
            if !registration.heard {
                return Ok(self.inner.engine.speech_marks(&synthesis, None).await?);
            }
            if let Some(marks) = self.cached_marks(&marks_key).await? {
                return Ok(marks);
            }
            let duration = cache::duration_ms(&self.inner.db, key)
                .await?
                .map(|ms| Duration::from_millis(ms.max(0) as u64));
            let marks = self.inner.engine.speech_marks(&synthesis, duration).await?;
            // Estimates are kept only once the real duration is known.
            if duration.is_some() {
                self.store_marks(&marks_key, &marks).await?;
            }
            return Ok(marks);
        }

        // A first request for the marks holds one of the user's slots (and
        // a permit, when computed) as a synthesis does, cached or not.
        let _slot = match registration.marks_paid {
            false => Some(self.inner.user_slots.take(user, key)?),
            true => None,
        };
        let charge = match registration.marks_paid {
            true => {
                self.check_rate(user).await?;
                None
            }
            false => {
                let charge = self.admit(speaker, &keyed.text, keyed.engine_kind).await?;
                if request::pay_marks(&self.inner.db, user, key, true).await? {
                    Some(charge)
                } else {
                    charge.refund().await;
                    None
                }
            }
        };
        if let Some(marks) = self.cached_marks(&marks_key).await? {
            return Ok(marks);
        }
        let computed = async {
            let _permit = permit(self.inner.permits.clone(), self.inner.config.worker_wait).await?;
            self.inner.engine.speech_marks(&synthesis, None).await
        }
        .await;
        match computed {
            Ok(marks) => {
                self.store_marks(&marks_key, &marks).await?;
                Ok(marks)
            }
            Err(e) => {
                if let Some(charge) = charge {
                    charge.refund().await;
                    let _ = request::pay_marks(&self.inner.db, user, key, false).await;
                }
                Err(e.into())
            }
        }
    }

    async fn cached_marks(&self, marks_key: &str) -> Result<Option<Vec<Mark>>, ApiError> {
        if let Some(entry) = self.inner.memory.get(marks_key) {
            return serde_json::from_slice(&entry.data)
                .map(Some)
                .map_err(|e| ApiError::Internal(e.into()));
        }
        let Some(entry) = cache::load(&self.inner.db, marks_key).await? else {
            return Ok(None);
        };
        let marks =
            serde_json::from_slice(&entry.data).map_err(|e| ApiError::Internal(e.into()))?;
        self.inner.memory.put(marks_key, entry);
        Ok(Some(marks))
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
