//! User provisioning and administration: `/api/admin/**`, the
//! `voxgate users …` commands and the recovery worker. Users are created in
//! Keycloak and Postgres together, or in neither.
//!
//! [`service`] holds the shared state and the read side; the write side is
//! split by use case: [`create`] (the saga, its compensation and
//! recovery), [`manage`] (update and delete), [`reconcile`] (drift between
//! the systems), with [`idempotency`] keys and the [`audit`] trail beside
//! them. [`repo`] has every SQL statement on the users tables.

mod access;
mod audit;
mod create;
mod export;
mod handlers;
pub mod idempotency;
pub mod keycloak;
mod manage;
pub mod model;
mod reconcile;
pub mod repo;
mod service;

pub use create::{Created, RecoveryReport};
pub use handlers::routes;
pub use idempotency::IdempotencyKey;
pub use reconcile::Drift;
pub use service::{Actor, Users};

use std::time::Duration;

/// Finishes or compensates interrupted sagas at start and then every
/// minute. Only jobs idle for ten minutes are touched — far longer than a
/// live saga's slowest step with its retries — so a saga in flight on
/// another instance is left alone (and a saga that outlives that anyway
/// stops when it finds its job gone).
pub fn spawn_recovery(users: Users) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(60));
        loop {
            interval.tick().await;
            match users.recover(Duration::from_secs(600)).await {
                Ok(RecoveryReport {
                    finished: 0,
                    compensated: 0,
                    ..
                }) => {}
                Ok(RecoveryReport {
                    finished,
                    compensated,
                    pending,
                }) => {
                    tracing::info!(finished, compensated, pending, "provisioning recovery ran");
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(e.as_ref()), "provisioning recovery failed")
                }
            }
        }
    })
}
