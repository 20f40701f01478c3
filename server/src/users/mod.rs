//! User provisioning and administration: `/api/admin/**`, the
//! `voxgate users …` commands and the recovery worker. Users are created in
//! Keycloak and Postgres together, or in neither.

mod handlers;
pub mod keycloak;
pub mod model;
pub mod repo;
pub mod service;

pub use handlers::routes;
pub use service::{Actor, Drift, Users};

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
                Ok((0, 0, _)) => {}
                Ok((finished, compensated, pending)) => {
                    tracing::info!(finished, compensated, pending, "provisioning recovery ran");
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(e.as_ref()), "provisioning recovery failed")
                }
            }
        }
    })
}
