//! voxgate: Keycloak-authenticated chat with spoken replies.
//!
//! Start with `docs/ARCHITECTURE.md`. [`app::App`] wires everything; each
//! feature lives in its own module and exposes a `router()`.

pub mod app;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod health;
pub mod identity;
pub mod limits;
pub mod listener;
pub mod openapi;
pub mod pages;
/// `voxgate realm import`, a crate of its own (`crates/realm`).
pub use voxgate_realm as realm;
pub mod router;
pub mod state;
pub mod stt;
pub mod telemetry;
pub mod tts;
pub mod users;
pub mod web;

pub use app::App;
pub use config::Config;
