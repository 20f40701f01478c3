//! Admission of a billed synthesis: the per-minute rate limit, the daily
//! character quota (charged up front, refunded when the synthesis does not
//! happen), and a permit from the bounded pool of concurrent syntheses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::Tts;
use super::engine::{TtsError, VoiceEngine};
use crate::error::ApiError;
use crate::limits::{self, Charge, Meter};

/// Speech requests a minute, and characters synthesised a day.
pub const METER: Meter = Meter {
    rate_table: "tts_rate",
    usage_table: "tts_usage",
    amount: "chars",
    unit: "characters",
    requests: "speech requests",
    budget: "speech quota",
    metric: "voxgate_tts_rejected_total",
};

/// Who speech is for, as far as limits go.
#[derive(Debug, Clone, Copy)]
pub struct Speaker {
    pub user_id: Uuid,
    pub quota: QuotaClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaClass {
    /// Counted against the daily character quota.
    Daily,
    /// Staff: rate-limited, but no daily quota.
    Exempt,
}

/// How much of today's speech quota a user has left.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpeechQuota {
    /// Characters spoken today (UTC), each counted at its engine's weight.
    pub used: i64,
    /// The daily quota; `null` for staff, who have none.
    pub limit: Option<i64>,
    /// What is left of it; `null` for staff.
    pub remaining: Option<i64>,
    /// When the day's count starts again (midnight UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: time::OffsetDateTime,
}

impl Tts {
    /// `speaker`'s use of the daily speech quota today.
    pub async fn quota(&self, speaker: Speaker) -> Result<SpeechQuota, ApiError> {
        let used = limits::used_today(&self.inner.db, METER, speaker.user_id).await?;
        let limit = (speaker.quota == QuotaClass::Daily).then_some(self.inner.config.daily_chars);
        Ok(SpeechQuota {
            used,
            limit,
            remaining: limit.map(|l| (l - used).max(0)),
            resets_at: limits::next_reset(),
        })
    }

    /// Counts a speech request against the user's rate limit.
    pub async fn check_rate(&self, user_id: Uuid) -> Result<(), ApiError> {
        limits::check_rate(
            &self.inner.db,
            METER,
            user_id,
            self.inner.config.rate_per_minute,
        )
        .await
    }

    /// Admits a billed synthesis of `text` with Polly engine `engine` for
    /// `speaker`: the quota counts each character at the engine's weight.
    pub(super) async fn admit(
        &self,
        speaker: Speaker,
        text: &str,
        engine: VoiceEngine,
    ) -> Result<Charge, ApiError> {
        self.check_rate(speaker.user_id).await?;
        // Polly's engines cost differently; voices on this machine cost
        // nothing, whatever their voice list calls them.
        let weight = match self.engine_kind().on_machine() {
            true => 1.0,
            false => self.inner.config.engine_weights.weight(engine.as_str()),
        };
        let chars = (text.chars().count() as f64 * weight).ceil() as i64;
        let db = &self.inner.db;
        if speaker.quota != QuotaClass::Daily {
            return Ok(Charge::none(db, METER, speaker.user_id));
        }
        let daily = self.inner.config.daily_chars;
        Charge::take(db, db, METER, speaker.user_id, chars, daily)
            .await
            .map_err(|e| match e {
                ApiError::TooManyRequests {
                    detail,
                    retry_after,
                } if weight != 1.0 => ApiError::TooManyRequests {
                    detail: format!(
                        "{detail} The {} engine counts each character {weight} times.",
                        engine.as_str()
                    ),
                    retry_after,
                },
                e => e,
            })
    }
}

/// A slot among the concurrent syntheses, which keeps us under the
/// upstream's request quota; waits at most `wait`.
pub(super) async fn permit(
    permits: Arc<Semaphore>,
    wait: Duration,
) -> Result<OwnedSemaphorePermit, TtsError> {
    tokio::time::timeout(wait, permits.acquire_owned())
        .await
        .map_err(|_| TtsError::Unavailable("too many syntheses in progress".into()))?
        .map_err(|_| TtsError::Unavailable("shutting down".into()))
}

/// The hearings each user has in progress on this instance, by key, so
/// that one user (staff included: the quota exemption is about money, not
/// capacity) cannot hold every synthesis slot or voice worker. Every
/// hearing that is not a repeat takes a slot, served from the cache or
/// not, so a refusal tells nothing about the cache; the same user's
/// concurrent hearings of one key share a slot.
pub(super) struct UserSlots {
    limit: usize,
    held: Mutex<HashMap<Uuid, HashMap<String, usize>>>,
}

/// A user's slot for one key, given back when dropped (when the hearing
/// or the synthesis it leads ends, fails or is stopped).
pub(super) struct UserSlot {
    slots: Arc<UserSlots>,
    user: Uuid,
    key: String,
}

impl UserSlots {
    pub fn new(limit: usize) -> Arc<UserSlots> {
        Arc::new(UserSlots {
            limit,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `user` and `key`, or `UserBusy` when they hold slots
    /// for as many other keys as they may.
    pub fn take(self: &Arc<Self>, user: Uuid, key: &str) -> Result<UserSlot, TtsError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let keys = held.entry(user).or_default();
        let others = keys.len();
        match keys.get_mut(key) {
            Some(n) => *n += 1,
            None if others >= self.limit => return Err(TtsError::UserBusy(self.limit)),
            None => {
                keys.insert(key.to_string(), 1);
            }
        }
        Ok(UserSlot {
            slots: self.clone(),
            user,
            key: key.to_string(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = held.get_mut(&self.user) {
            if let Some(n) = keys.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    keys.remove(&self.key);
                }
            }
            if keys.is_empty() {
                held.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_the_limit_and_dropping_gives_a_slot_back() {
        let slots = UserSlots::new(2);
        let (bob, alice) = (Uuid::new_v4(), Uuid::new_v4());
        let first = slots.take(bob, "a").unwrap();
        let again = slots.take(bob, "a").unwrap();
        let _second = slots.take(bob, "b").unwrap();
        assert!(matches!(slots.take(bob, "c"), Err(TtsError::UserBusy(2))));
        assert!(slots.take(bob, "b").is_ok(), "the same key shares its slot");
        assert!(slots.take(alice, "c").is_ok(), "others are not affected");
        drop(first);
        assert!(slots.take(bob, "c").is_err(), "`a` is still held once");
        drop(again);
        assert!(slots.take(bob, "c").is_ok());
    }
}
