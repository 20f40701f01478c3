//! Fidelity suite: checks the stand-in against the Keycloak 26 wire facts (header bytes, kid
//! derivation, claim sets and order, discovery, status codes and error bodies) and runs the
//! browser, token, logout, admin and fault-injection flows end to end over HTTP.
//!
//! One test binary with a module per behaviour, because each extra binary is another link.

mod admin;
mod browser;
mod faults;
mod helpers;
mod jwt;
mod logout;
mod realm;
mod tokens;
mod wire;
