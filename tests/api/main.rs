//! voxgate's integration tests: one binary (each extra binary is another
//! slow link). Every test starts the real app on a random port against its
//! own fresh Postgres database; external services are real servers on
//! loopback (the Keycloak and Polly stand-ins), never in-process mocks.

mod helpers;
mod stack;

mod auth;
mod foundation;

/// Every operation the API must document in `/api/openapi.json`.
pub const EXPECTED_API_OPERATIONS: &[(&str, &str)] = &[("get", "/api/version"), ("get", "/api/me")];
