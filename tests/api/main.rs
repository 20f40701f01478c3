//! voxgate's integration tests: one binary (each extra binary is another
//! slow link). Every test starts the real app on a random port against its
//! own fresh Postgres database; external services are real servers on
//! loopback (the Keycloak and Polly stand-ins), never in-process mocks.

mod helpers;
mod stack;

mod auth;
mod foundation;
mod provisioning;

/// Every operation the API must document in `/api/openapi.json`.
pub const EXPECTED_API_OPERATIONS: &[(&str, &str)] = &[
    ("get", "/api/version"),
    ("get", "/api/me"),
    ("get", "/api/admin/users"),
    ("post", "/api/admin/users"),
    ("get", "/api/admin/users/{id}"),
    ("patch", "/api/admin/users/{id}"),
    ("delete", "/api/admin/users/{id}"),
    ("get", "/api/admin/roles"),
    ("get", "/api/admin/audit"),
];
