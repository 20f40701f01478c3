//! What a valid token says about its subject, in the terms of
//! [`crate::identity`], which records it and resolves the principal.

use std::sync::Arc;

use sqlx::PgPool;

use super::token::{Claims, TokenKey};
use crate::identity::{self, PrincipalCache, Resolved, SignedIn, UserRow};

fn subject<'a>(claims: &'a Claims, realm_roles: &'a [String]) -> SignedIn<'a> {
    SignedIn {
        keycloak_id: &claims.sub,
        username: claims
            .preferred_username
            .as_deref()
            .filter(|u| !u.is_empty())
            .unwrap_or(&claims.sub),
        email: claims.email.as_deref(),
        first_name: claims.given_name.as_deref().unwrap_or_default(),
        last_name: claims.family_name.as_deref().unwrap_or_default(),
        realm_roles,
    }
}

fn realm_roles(claims: &Claims) -> &[String] {
    claims
        .realm_access
        .as_ref()
        .map(|r| r.roles.as_slice())
        .unwrap_or_default()
}

/// The principal behind a bearer token (cached per token).
pub async fn resolve(
    db: &PgPool,
    cache: &PrincipalCache,
    claims: &Claims,
    token: TokenKey,
    client_id: &str,
) -> sqlx::Result<Arc<Resolved>> {
    let client_roles = claims
        .resource_access
        .get(client_id)
        .map(|r| r.roles.as_slice())
        .unwrap_or_default();
    let subject = subject(claims, realm_roles(claims));
    identity::resolve(db, cache, token, &subject, client_roles).await
}

/// Creates or refreshes the row for the token's subject (at sign-in).
pub async fn record_sign_in(db: &PgPool, claims: &Claims) -> sqlx::Result<UserRow> {
    identity::record_sign_in(db, &subject(claims, realm_roles(claims))).await
}
