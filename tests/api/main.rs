//! voxgate's integration tests: one binary (each extra binary is another
//! slow link). Every test starts the real app on a random port against its
//! own fresh Postgres database; external services are real servers on
//! loopback (the Keycloak and Polly stand-ins), never in-process mocks.

mod helpers;
mod stack;

mod admin_access;
mod auth;
mod cache_oracle;
mod chat;
mod conversations;
mod deploy;
mod docs;
mod foundation;
mod fuzz;
mod layout;
mod listening;
mod listening_service;
mod neural;
mod openai;
mod pages;
mod provisioning;
mod real_keycloak;
mod realm_import;
mod replies;
mod tts;
mod tts_capacity;

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
    ("get", "/api/admin/audit/export"),
    ("get", "/api/admin/users/{id}/sessions"),
    ("post", "/api/admin/users/{id}/sign-out"),
    ("get", "/api/admin/users/{id}/lock"),
    ("delete", "/api/admin/users/{id}/lock"),
    ("post", "/api/admin/users/{id}/password-reset"),
    ("post", "/api/admin/users/{id}/recover"),
    ("get", "/api/admin/reconcile"),
    ("post", "/api/admin/reconcile"),
    ("post", "/api/chat"),
    ("post", "/api/chat/messages/{id}/stop"),
    ("get", "/api/chat/conversations"),
    ("post", "/api/chat/conversations"),
    ("patch", "/api/chat/conversations/{id}"),
    ("delete", "/api/chat/conversations/{id}"),
    ("get", "/api/chat/conversations/{id}/messages"),
    ("post", "/api/chat/conversations/{id}/regenerate"),
    ("get", "/api/chat/search"),
    ("get", "/api/chat/history"),
    ("delete", "/api/chat/history"),
    ("get", "/api/me/settings"),
    ("put", "/api/me/settings"),
    ("post", "/api/tts"),
    ("get", "/api/tts/{key}"),
    ("get", "/api/tts/{key}/marks"),
    ("get", "/api/voices"),
    ("post", "/api/stt"),
    ("post", "/v1/audio/transcriptions"),
    ("post", "/v1/audio/speech"),
];
