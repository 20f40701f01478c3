//! Public realm metadata: the OIDC discovery document, the JWKS, and the realm info document.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::http::json_response;
use crate::state::Shared;

const SIGNING_ALGS: &[&str] = &[
    "PS384", "RS384", "EdDSA", "ES384", "HS256", "HS512", "ES256", "RS256", "HS384", "ES512",
    "PS256", "PS512", "RS512",
];
const ENC_ALGS: &[&str] = &["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"];
const ENC_ENCS: &[&str] = &[
    "A256GCM",
    "A192GCM",
    "A128GCM",
    "A128CBC-HS256",
    "A192CBC-HS384",
    "A256CBC-HS512",
];
const AUTH_METHODS: &[&str] = &[
    "private_key_jwt",
    "client_secret_basic",
    "client_secret_post",
    "tls_client_auth",
    "client_secret_jwt",
];

fn with_none(algs: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = algs.iter().map(|s| s.to_string()).collect();
    v.push("none".into());
    v
}

/// Field order follows a captured Keycloak 24+ document.
/// `issuer` is the realm under its frontend URL, `backend` under the address
/// the document was asked at: Keycloak gives the browser-facing endpoints
/// (authorization, end session, session iframe) the first and every
/// back-channel endpoint the second.
pub fn document(issuer: &str, backend: &str) -> Value {
    let front = format!("{issuer}/protocol/openid-connect");
    let oidc = format!("{backend}/protocol/openid-connect");
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{front}/auth"),
        "token_endpoint": format!("{oidc}/token"),
        "introspection_endpoint": format!("{oidc}/token/introspect"),
        "userinfo_endpoint": format!("{oidc}/userinfo"),
        "end_session_endpoint": format!("{front}/logout"),
        "frontchannel_logout_session_supported": true,
        "frontchannel_logout_supported": true,
        "jwks_uri": format!("{oidc}/certs"),
        "check_session_iframe": format!("{front}/login-status-iframe.html"),
        "grant_types_supported": ["authorization_code", "client_credentials", "implicit", "password", "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code", "urn:openid:params:grant-type:ciba"],
        "acr_values_supported": ["0", "1"],
        "response_types_supported": ["code", "none", "id_token", "token", "id_token token", "code id_token", "code token", "code id_token token"],
        "subject_types_supported": ["public", "pairwise"],
        "prompt_values_supported": ["none", "login", "consent"],
        "id_token_signing_alg_values_supported": SIGNING_ALGS,
        "id_token_encryption_alg_values_supported": ENC_ALGS,
        "id_token_encryption_enc_values_supported": ENC_ENCS,
        "userinfo_signing_alg_values_supported": with_none(SIGNING_ALGS),
        "userinfo_encryption_alg_values_supported": ENC_ALGS,
        "userinfo_encryption_enc_values_supported": ENC_ENCS,
        "request_object_signing_alg_values_supported": with_none(SIGNING_ALGS),
        "request_object_encryption_alg_values_supported": ENC_ALGS,
        "request_object_encryption_enc_values_supported": ENC_ENCS,
        "response_modes_supported": ["query", "fragment", "form_post", "query.jwt", "fragment.jwt", "form_post.jwt", "jwt"],
        "registration_endpoint": format!("{backend}/clients-registrations/openid-connect"),
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "authorization_signing_alg_values_supported": SIGNING_ALGS,
        "authorization_encryption_alg_values_supported": ENC_ALGS,
        "authorization_encryption_enc_values_supported": ENC_ENCS,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "name", "given_name", "family_name", "preferred_username", "email", "acr", "azp", "nonce"],
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": true,
        "scopes_supported": ["openid", "roles", "offline_access", "email", "microprofile-jwt", "web-origins", "acr", "phone", "profile", "address", "basic", "organization"],
        "request_parameter_supported": true,
        "request_uri_parameter_supported": true,
        "require_request_uri_registration": true,
        "code_challenge_methods_supported": ["plain", "S256"],
        "tls_client_certificate_bound_access_tokens": true,
        "revocation_endpoint": format!("{oidc}/revoke"),
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "backchannel_logout_supported": true,
        "dpop_signing_alg_values_supported": ["PS384", "RS384", "EdDSA", "ES384", "ES256", "RS256", "ES512", "PS256", "PS512", "RS512"],
        "backchannel_logout_session_supported": true,
        "device_authorization_endpoint": format!("{oidc}/auth/device"),
        "backchannel_token_delivery_modes_supported": ["poll", "ping"],
        "backchannel_authentication_endpoint": format!("{oidc}/ext/ciba/auth"),
        "backchannel_authentication_request_signing_alg_values_supported": ["PS384", "RS384", "EdDSA", "ES384", "ES256", "RS256", "ES512", "PS256", "PS512", "RS512"],
        "require_pushed_authorization_requests": false,
        "pushed_authorization_request_endpoint": format!("{oidc}/ext/par/request"),
        "mtls_endpoint_aliases": {
            "token_endpoint": format!("{oidc}/token"),
            "revocation_endpoint": format!("{oidc}/revoke"),
            "introspection_endpoint": format!("{oidc}/token/introspect"),
            "device_authorization_endpoint": format!("{oidc}/auth/device"),
            "registration_endpoint": format!("{backend}/clients-registrations/openid-connect"),
            "userinfo_endpoint": format!("{oidc}/userinfo"),
            "pushed_authorization_request_endpoint": format!("{oidc}/ext/par/request"),
            "backchannel_authentication_endpoint": format!("{oidc}/ext/ciba/auth"),
        },
        "authorization_response_iss_parameter_supported": true,
    })
}

fn no_cache(mut resp: Response, value: &'static str) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    resp
}

pub async fn openid_configuration(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
) -> Response {
    if shared.world().realm(&realm).is_none() {
        return crate::http::realm_not_found();
    }
    no_cache(
        json_response(
            StatusCode::OK,
            document(&shared.issuer(&realm), &shared.backend_issuer(&realm)),
        ),
        "no-cache, must-revalidate, no-transform, no-store",
    )
}

pub async fn certs(State(shared): State<Arc<Shared>>, Path(realm): Path<String>) -> Response {
    let jwks = shared.world().realm(&realm).map(|r| r.keys.jwks());
    match jwks {
        Some(j) => no_cache(json_response(StatusCode::OK, j), "no-cache"),
        None => crate::http::realm_not_found(),
    }
}

/// `GET /realms/{realm}`: the public realm document older adapters read.
pub async fn realm_info(State(shared): State<Arc<Shared>>, Path(realm): Path<String>) -> Response {
    let world = shared.world();
    let Some(r) = world.realm(&realm) else {
        return crate::http::realm_not_found();
    };
    let issuer = shared.issuer(&realm);
    let public_key = r
        .keys
        .active()
        .map(|k| k.public_key_b64())
        .unwrap_or_default();
    json_response(
        StatusCode::OK,
        json!({
            "realm": r.name,
            "public_key": public_key,
            "token-service": format!("{issuer}/protocol/openid-connect"),
            "account-service": format!("{issuer}/account"),
            "tokens-not-before": r.not_before,
        }),
    )
}
