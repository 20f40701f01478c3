//! Stopping a reply while the bot is writing it, from any instance.
//!
//! A reply is written by the instance that received the message; the
//! request to stop it may reach another one (nginx spreads requests). Each
//! instance keeps its running replies by the id of the message they answer
//! and listens on a Postgres channel; a stop is announced on that channel
//! and also signalled directly when the reply runs here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

/// The channel stops are announced on; the payload is the id of the
/// user's message whose reply is to stop.
pub const CHANNEL: &str = "voxgate_chat_stop";

/// How long the first reply waits for the listening connection before it
/// starts without it (stops sent to this instance
/// still work; stops through another one wait for the connection).
const LISTEN_READY: Duration = Duration::from_secs(2);

/// The replies being written on this instance.
#[derive(Default)]
pub struct Stops {
    running: Mutex<HashMap<i64, watch::Sender<bool>>>,
    listening: OnceLock<watch::Receiver<bool>>,
    waited: AtomicBool,
}

/// A reply being written: told when it is to stop. Forgotten when dropped.
pub struct Running {
    stops: Arc<Stops>,
    message: i64,
    stopped: watch::Receiver<bool>,
}

impl Running {
    /// Resolves once the reply is to stop (never, if nobody asks).
    pub async fn stopped(&mut self) {
        if self.stopped.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut running) = self.stops.running.lock() {
            running.remove(&self.message);
        }
    }
}

impl Stops {
    /// Registers the reply to `message`, once this instance hears stops
    /// announced by the others.
    pub async fn run(self: &Arc<Self>, db: &PgPool, message: i64) -> Running {
        let mut ready = self.listen(db);
        // Waited for by the first reply only: with the connection down, the
        // replies after it must not each pay the wait.
        if !self.waited.swap(true, Ordering::Relaxed) {
            let _ = tokio::time::timeout(LISTEN_READY, ready.wait_for(|up| *up)).await;
        }
        let (tx, stopped) = watch::channel(false);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(message, tx);
        Running {
            stops: self.clone(),
            message,
            stopped,
        }
    }

    /// Stops the reply to `message` if it runs here; whether it did.
    pub fn stop_here(&self, message: i64) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get(&message) {
            Some(tx) => {
                tx.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Starts listening (once); tells when the connection is up.
    fn listen(self: &Arc<Self>, db: &PgPool) -> watch::Receiver<bool> {
        self.listening
            .get_or_init(|| {
                let (up, ready) = watch::channel(false);
                let this = Arc::downgrade(self);
                let db = db.clone();
                tokio::spawn(async move {
                    loop {
                        if let Err(e) = listen(&this, &db, &up).await {
                            tracing::warn!(error = %e, "listening for chat stops failed; retrying");
                        }
                        up.send_replace(false);
                        if this.strong_count() == 0 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                });
                ready
            })
            .clone()
    }
}

async fn listen(stops: &Weak<Stops>, db: &PgPool, up: &watch::Sender<bool>) -> sqlx::Result<()> {
    // A connection of its own: a listener holds it for good.
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.connect_options().as_ref().clone())
        .await?;
    let mut listener = PgListener::connect_with(&own).await?;
    listener.listen(CHANNEL).await?;
    up.send_replace(true);
    loop {
        let Some(notice) = listener.try_recv().await? else {
            // Reconnected: stops announced meanwhile are lost; the reply
            // then ends on its own, as it would have without a stop.
            continue;
        };
        let Some(stops) = stops.upgrade() else {
            return Ok(());
        };
        if let Ok(message) = notice.payload().parse::<i64>() {
            stops.stop_here(message);
        }
    }
}
