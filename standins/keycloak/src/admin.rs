//! Admin REST API authorisation: bearer-token authentication against the token's own realm
//! (last segment of `iss`) and the realm-management permission checks Keycloak applies.

use std::collections::HashSet;
use std::sync::{Arc, MutexGuard};

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::{admin_error, bearer_token};
use crate::keys::peek_claims;
use crate::state::{Shared, World};
use crate::tokens::{TokenKind, validate};

/// What every admin handler takes: the shared state, its path parameters
/// and the headers that carry the caller's token.
pub struct Admin<P>(pub Arc<Shared>, pub P, pub HeaderMap);

impl<P: DeserializeOwned + Send> FromRequestParts<Arc<Shared>> for Admin<P> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let Path(path) = Path::<P>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Admin(state.clone(), path, parts.headers.clone()))
    }
}

pub struct Caller {
    pub superuser: bool,
    /// Effective `realm-management` roles in the target realm.
    pub roles: HashSet<String>,
}

impl Caller {
    pub fn has_any(&self, roles: &[&str]) -> bool {
        self.superuser || roles.iter().any(|r| self.roles.contains(*r))
    }
    pub fn can_query_users(&self) -> bool {
        self.has_any(&["query-users", "view-users", "manage-users"])
    }
    pub fn can_view_users(&self) -> bool {
        self.has_any(&["view-users", "manage-users"])
    }
    pub fn can_manage_users(&self) -> bool {
        self.has_any(&["manage-users"])
    }
    pub fn can_view_realm(&self) -> bool {
        self.has_any(&["view-realm", "manage-realm"])
    }
    pub fn can_manage_realm(&self) -> bool {
        self.has_any(&["manage-realm"])
    }
    pub fn can_list_roles(&self) -> bool {
        self.has_any(&[
            "view-realm",
            "manage-realm",
            "query-users",
            "query-clients",
            "query-realms",
            "query-groups",
        ])
    }
    pub fn can_list_clients(&self) -> bool {
        self.has_any(&["query-clients", "view-clients", "manage-clients"])
    }
    pub fn can_manage_clients(&self) -> bool {
        self.has_any(&["manage-clients"])
    }
}

pub fn unauthorized() -> Response {
    admin_error(StatusCode::UNAUTHORIZED, "HTTP 401 Unauthorized")
}

pub fn forbidden() -> Response {
    admin_error(StatusCode::FORBIDDEN, "HTTP 403 Forbidden")
}

pub fn realm_not_found() -> Response {
    admin_error(StatusCode::NOT_FOUND, "Realm not found.")
}

/// Authenticates the bearer token; with `target`, also requires the realm to exist and the
/// caller to belong to it (or be a master-realm administrator).
pub fn authenticate<'a>(
    shared: &'a Arc<Shared>,
    headers: &HeaderMap,
    target: Option<&str>,
) -> Result<(Caller, MutexGuard<'a, World>), Response> {
    let token = bearer_token(headers).ok_or_else(unauthorized)?;
    let iss = peek_claims(&token)
        .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(unauthorized)?;
    let token_realm = iss.rsplit('/').next().unwrap_or("").to_string();
    let world = shared.world();
    let claims = validate(
        &world,
        &shared.frontend_base,
        &token_realm,
        &token,
        TokenKind::Access,
        true,
    )
    .map_err(|_| unauthorized())?;
    let realm = world.realm(&token_realm).ok_or_else(unauthorized)?;
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let user = realm.user(sub).ok_or_else(unauthorized)?;
    let superuser = token_realm == "master"
        && realm
            .effective_realm_role_names(user)
            .iter()
            .any(|r| r == "admin");
    let mut roles = HashSet::new();
    if let Some(target) = target {
        if world.realm(target).is_none() {
            return Err(realm_not_found());
        }
        if target == token_realm {
            roles = realm
                .effective_client_roles(user)
                .into_iter()
                .filter(|(c, _)| c == "realm-management")
                .flat_map(|(_, r)| r)
                .collect();
        } else if !superuser {
            return Err(forbidden());
        }
    } else if token_realm == "master" {
        // Realm-independent calls (list/create realms) are for master-realm users only.
        roles = realm.effective_realm_role_names(user).into_iter().collect();
    }
    Ok((Caller { superuser, roles }, world))
}

/// Parses a JSON request body; malformed bodies get Keycloak's generic 400.
pub fn json_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|_| admin_error(StatusCode::BAD_REQUEST, "unknown_error"))
}

/// A body that must be a JSON object (a representation).
pub fn json_object(body: &[u8]) -> Result<Value, Response> {
    match json_body(body)? {
        object @ Value::Object(_) => Ok(object),
        _ => Err(admin_error(StatusCode::BAD_REQUEST, "unknown_error")),
    }
}

/// The realm an admin call names, or Keycloak's 404.
pub fn realm_in<'w>(world: &'w World, name: &str) -> Result<&'w crate::model::Realm, Response> {
    world.realm(name).ok_or_else(realm_not_found)
}

/// [`realm_in`], for a change.
pub fn realm_in_mut<'w>(
    world: &'w mut World,
    name: &str,
) -> Result<&'w mut crate::model::Realm, Response> {
    world.realm_mut(name).ok_or_else(realm_not_found)
}
