//! Following a synthesis that another instance leads: one synthesis per
//! text however many instances are asked for it at once.
//!
//! The instance that claimed a cache entry writes its chunks to the table
//! as they arrive and announces each write on a Postgres channel. An
//! instance that finds the entry claimed starts a relay in place of a
//! synthesis: it reads the chunks from the table as they are announced (or
//! every [`POLL`], should an announcement be lost while its listening
//! connection reconnects) and publishes them to its own listeners exactly
//! as a leader publishes audio. It tells the writer it is there, so the
//! writer does not stop for want of listeners it cannot see, and it
//! watches the writer's heartbeat: a writer that dies before the first
//! byte is replaced (this instance claims the entry and synthesizes), one
//! that dies later ends every follower with an error and its half-written
//! entry is deleted, never served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Flight, FlightGuard};
use crate::tts::cache;
use crate::tts::engine::TtsError;

/// How often a relay looks at the table when no announcement came.
const POLL: Duration = Duration::from_millis(500);

/// What a relay ended with.
pub(super) enum Relayed {
    /// Every listener got what there was (or an error).
    Done,
    /// The writer vanished before a byte was published: this instance may
    /// claim the entry and synthesize it itself.
    TakeOver,
}

/// The announcements of cache writes, for the relays of this instance:
/// one listening connection, opened when the first relay starts.
#[derive(Default)]
pub(super) struct Announcements {
    waiting: Mutex<HashMap<String, Weak<Notify>>>,
    started: OnceLock<()>,
}

impl Announcements {
    /// Woken when `key`'s writer announces something. Held for as long as
    /// the relay runs.
    fn watch(self: &Arc<Self>, db: &PgPool, key: &str) -> Arc<Notify> {
        self.start(db);
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = waiting.get(key).and_then(Weak::upgrade) {
            return notify;
        }
        waiting.retain(|_, w| w.strong_count() > 0);
        let notify = Arc::new(Notify::new());
        waiting.insert(key.to_string(), Arc::downgrade(&notify));
        notify
    }

    fn start(self: &Arc<Self>, db: &PgPool) {
        if self.started.set(()).is_err() {
            return;
        }
        let this = Arc::downgrade(self);
        let db = db.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&this, &db).await {
                    // Relays still poll; announcements only make them fast.
                    tracing::warn!(error = %e, "listening for audio cache writes failed; retrying");
                }
                if this.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
}

async fn listen(announcements: &Weak<Announcements>, db: &PgPool) -> sqlx::Result<()> {
    // A connection of its own, outside the cache pool: a listener holds
    // its connection for good, and the writers' heartbeats must never wait
    // behind it.
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.connect_options().as_ref().clone())
        .await?;
    let mut listener = PgListener::connect_with(&own).await?;
    listener.listen(cache::CHANNEL).await?;
    loop {
        // `None`: the connection was lost (and is being restored); whatever
        // was announced meanwhile is found by polling.
        let Some(notice) = listener.try_recv().await? else {
            continue;
        };
        let Some(announcements) = announcements.upgrade() else {
            return Ok(());
        };
        let notify = announcements
            .waiting
            .lock()
            .ok()
            .and_then(|w| w.get(notice.payload()).and_then(Weak::upgrade));
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }
}

impl Flight {
    /// Publishes the entry another instance is writing, chunk by chunk as
    /// it is stored, until it is complete, its writer fails, or nobody here
    /// listens any more.
    pub(super) async fn relay(&self, db: &PgPool, guard: &FlightGuard) -> Relayed {
        let announced = guard.flights.announcements.watch(db, &self.key);
        let mut writer: Option<Uuid> = None;
        let mut next: i32 = 0;
        let mut sent: i64 = 0;
        let mut told_at: Option<Instant> = None;
        let mut complete_seen = false;
        loop {
            let woken = announced.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let deserted = self.deserted.notified();
            tokio::pin!(deserted);
            deserted.as_mut().enable();
            // Said before anything is published, so that the writer, once
            // a listener here has heard a byte, knows of them.
            if told_at.is_none_or(|at| at.elapsed() >= cache::HEARTBEAT) {
                let _ = cache::followed(db, &self.key).await;
                told_at = Some(Instant::now());
            }
            let state = match cache::writing(db, &self.key).await {
                Ok(state) => state,
                Err(e) => return self.relay_failed(format!("audio cache read failed: {e}")),
            };
            let Some(state) = state else {
                // Abandoned (failed upstream, nobody listening there) or
                // evicted already.
                return match next {
                    0 => Relayed::TakeOver,
                    _ => self.relay_failed("the synthesis on another instance stopped".into()),
                };
            };
            // A writer that took over from a dead one may encode the text
            // differently: its bytes cannot continue the first one's.
            if writer.is_some_and(|w| w != state.writer) && next > 0 {
                return self.relay_failed("the synthesis on another instance stopped".into());
            }
            writer = Some(state.writer);
            let rows = match cache::chunks_of(db, &self.key, state.writer, next).await {
                Ok(rows) => rows,
                Err(e) => return self.relay_failed(format!("audio cache read failed: {e}")),
            };
            if !rows.is_empty() {
                for (seq, data) in rows {
                    if seq != next {
                        return self.relay_failed("the cached audio has a gap".into());
                    }
                    sent += data.len() as i64;
                    self.publish(seq, Bytes::from(data), false);
                    if seq == 0 {
                        let _ = self.started.send(Some(Ok(())));
                    }
                    next = seq + 1;
                }
                self.saved(next);
                continue;
            }
            if state.complete {
                // Chunks stored before completion may have been read before
                // this state was: one more read settles it.
                if !complete_seen {
                    complete_seen = true;
                    continue;
                }
                // Chunks that went while they were read must not end as
                // a short file.
                if sent != state.size {
                    return match next {
                        0 => Relayed::TakeOver,
                        _ => self.relay_failed("the cached audio is incomplete".into()),
                    };
                }
                if next == 0 {
                    let _ = self.started.send(Some(Ok(())));
                }
                guard.retire();
                self.finish_ok();
                return Relayed::Done;
            }
            if state.stale {
                if next == 0 {
                    return Relayed::TakeOver;
                }
                let _ = cache::drop_stale(db, &self.key, state.writer).await;
                return self.relay_failed("the instance speaking this stopped".into());
            }
            if self.listeners.load(std::sync::atomic::Ordering::SeqCst) == 0
                && guard.retire_if_deserted()
            {
                self.fail(TtsError::Upstream("nobody is listening".into()));
                return Relayed::Done;
            }
            tokio::select! {
                _ = &mut woken => {}
                _ = &mut deserted => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    fn relay_failed(&self, why: String) -> Relayed {
        tracing::warn!(reason = %why, "following another instance's synthesis failed");
        let e = TtsError::Upstream(why);
        self.fail(e.clone());
        let _ = self.started.send(Some(Err(e)));
        Relayed::Done
    }
}
