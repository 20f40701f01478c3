//! HTTP routing and the listener lifecycle (start, go down, come back on the same port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::Shared;
use crate::{
    admin_realm, admin_users, cors, discovery, faults, login, logout, token_endpoint, userinfo,
};

pub struct ServerHandle {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// Signals shutdown without waiting; used from `Drop`.
    pub fn signal(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let oidc = "/realms/{realm}/protocol/openid-connect";
    let users = "/admin/realms/{realm}/users/{id}";
    let mut app = Router::new()
        .route("/realms/{realm}", get(discovery::realm_info))
        .route(
            "/realms/{realm}/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route(&format!("{oidc}/certs"), get(discovery::certs))
        .route(
            &format!("{oidc}/auth"),
            get(login::authorize).post(login::authorize),
        )
        .route(
            &format!("{oidc}/token"),
            post(token_endpoint::token)
                .options(cors::preflight)
                .get(token_endpoint::method_not_allowed),
        )
        .route(
            &format!("{oidc}/token/introspect"),
            post(userinfo::introspect).options(cors::preflight),
        )
        .route(
            &format!("{oidc}/userinfo"),
            get(userinfo::userinfo)
                .post(userinfo::userinfo)
                .options(cors::preflight),
        )
        .route(
            &format!("{oidc}/revoke"),
            post(userinfo::revoke).options(cors::preflight),
        )
        .route(
            &format!("{oidc}/logout"),
            get(logout::logout)
                .post(logout::logout)
                .options(cors::preflight),
        )
        .route(
            &format!("{oidc}/logout/logout-confirm"),
            post(logout::logout_confirm),
        )
        .route(
            "/realms/{realm}/login-actions/authenticate",
            post(login::authenticate),
        )
        .route(
            "/realms/{realm}/login-actions/required-action",
            post(login::required_action),
        )
        .route(
            "/realms/{realm}/login-actions/action-token",
            get(login::action_token),
        )
        .route(
            "/admin/realms",
            get(admin_realm::list_realms).post(admin_realm::create_realm),
        )
        .route(
            "/admin/realms/{realm}",
            get(admin_realm::get_realm)
                .put(admin_realm::update_realm)
                .delete(admin_realm::delete_realm),
        )
        .route(
            "/admin/realms/{realm}/partialImport",
            post(admin_realm::partial_import),
        )
        .route(
            "/admin/realms/{realm}/roles",
            get(admin_realm::list_roles).post(admin_realm::create_role),
        )
        .route(
            "/admin/realms/{realm}/roles/{name}",
            get(admin_realm::get_role).put(admin_realm::update_role),
        )
        .route(
            "/admin/realms/{realm}/clients",
            get(admin_realm::list_clients),
        )
        .route(
            "/admin/realms/{realm}/clients/{id}",
            get(admin_realm::get_client).put(admin_realm::update_client),
        )
        .route(
            "/admin/realms/{realm}/clients/{id}/roles",
            get(admin_realm::list_client_roles),
        )
        .route(
            "/admin/realms/{realm}/clients/{id}/client-secret",
            get(admin_realm::client_secret).post(admin_realm::client_secret),
        )
        .route(
            "/admin/realms/{realm}/clients/{id}/roles/{name}",
            get(admin_realm::get_client_role),
        )
        .route(
            "/admin/realms/{realm}/users",
            get(admin_users::list).post(admin_users::create),
        )
        .route("/admin/realms/{realm}/users/count", get(admin_users::count))
        .route(
            "/admin/realms/{realm}/attack-detection/brute-force/users/{id}",
            get(admin_users::login_failures).delete(admin_users::clear_login_failures),
        )
        .route(
            users,
            get(admin_users::get)
                .put(admin_users::update)
                .delete(admin_users::delete),
        )
        .route(
            &format!("{users}/reset-password"),
            axum::routing::put(admin_users::reset_password),
        )
        .route(
            &format!("{users}/execute-actions-email"),
            axum::routing::put(admin_users::execute_actions_email),
        )
        .route(&format!("{users}/logout"), post(admin_users::logout))
        .route(&format!("{users}/sessions"), get(admin_users::sessions))
        .route(
            &format!("{users}/role-mappings"),
            get(admin_users::role_mappings),
        )
        .route(
            &format!("{users}/role-mappings/realm"),
            get(admin_users::mappings::<{ admin_users::DIRECT }>)
                .post(admin_users::change_mappings::<true>)
                .delete(admin_users::change_mappings::<false>),
        )
        .route(
            &format!("{users}/role-mappings/realm/composite"),
            get(admin_users::mappings::<{ admin_users::COMPOSITE }>),
        )
        .route(
            &format!("{users}/role-mappings/realm/available"),
            get(admin_users::mappings::<{ admin_users::AVAILABLE }>),
        )
        .route(
            &format!("{users}/role-mappings/clients/{{client}}"),
            get(admin_users::mappings::<{ admin_users::DIRECT }>)
                .post(admin_users::change_mappings::<true>)
                .delete(admin_users::change_mappings::<false>),
        )
        .route(
            &format!("{users}/role-mappings/clients/{{client}}/composite"),
            get(admin_users::mappings::<{ admin_users::COMPOSITE }>),
        )
        .route(
            &format!("{users}/role-mappings/clients/{{client}}/available"),
            get(admin_users::mappings::<{ admin_users::AVAILABLE }>),
        );
    if shared.control {
        app = app
            .route("/_standin/down", post(control_down))
            .route("/_standin/latency", post(control_latency))
            .route("/_standin/fail-next", post(control_fail_next))
            .route("/_standin/realms/{realm}/rotate-key", post(control_rotate))
            .route(
                "/_standin/realms/{realm}/retire-old-keys",
                post(control_retire),
            )
            .route(
                "/_standin/realms/{realm}/expire-all-tokens",
                post(control_expire),
            )
            .route("/_standin/counters", get(control_counters))
            .route("/_standin/outbox", get(control_outbox));
    }
    let routes = app
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(from_fn_with_state(shared.clone(), faults::layer))
        .with_state(shared);
    // The path is looked at before routing (an inner layer would run after
    // the route was chosen).
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(crate::wire::layer))
}

async fn not_found() -> Response {
    crate::http::not_found()
}

pub fn spawn(shared: &Arc<Shared>, listener: TcpListener) -> ServerHandle {
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::warn!("server stopped: {e}");
        }
    });
    ServerHandle {
        shutdown: Some(tx),
        task,
    }
}

/// Closes the listener and open connections; new connections are refused afterwards.
pub async fn go_down(shared: &Arc<Shared>) {
    let handle = shared.lifecycle.lock().await.take();
    if let Some(mut h) = handle {
        h.signal();
        let abort = h.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(3), &mut h.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Listens again on the original port.
pub async fn come_back(shared: &Arc<Shared>, addr: SocketAddr) -> anyhow::Result<()> {
    let mut slot = shared.lifecycle.lock().await;
    if slot.is_some() {
        return Ok(());
    }
    let mut last_err = None;
    // The port can linger briefly after close; retry for a moment.
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                *slot = Some(spawn(shared, listener));
                return Ok(());
            }
            Err(e) => {
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Err(anyhow::anyhow!(
        "re-binding {addr}: {}",
        last_err.map(|e| e.to_string()).unwrap_or_default()
    ))
}

// ---- control endpoint ----

#[derive(Deserialize)]
struct DownParams {
    ms: Option<u64>,
}

async fn control_down(State(shared): State<Arc<Shared>>, Query(p): Query<DownParams>) -> Response {
    let addr = shared.addr;
    let ms = p.ms.unwrap_or(1000);
    tokio::spawn(async move {
        go_down(&shared).await;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if let Err(e) = come_back(&shared, addr).await {
            tracing::warn!("coming back failed: {e}");
        }
    });
    StatusCode::ACCEPTED.into_response()
}

#[derive(Deserialize)]
struct LatencyParams {
    ms: u64,
}

async fn control_latency(
    State(shared): State<Arc<Shared>>,
    Query(p): Query<LatencyParams>,
) -> Response {
    shared.faults.set_latency(Duration::from_millis(p.ms));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct FailParams {
    method: Option<String>,
    path_contains: String,
    n: Option<usize>,
    status: Option<u16>,
}

async fn control_fail_next(
    State(shared): State<Arc<Shared>>,
    Query(p): Query<FailParams>,
) -> Response {
    shared.faults.fail_next(
        p.method.as_deref(),
        &p.path_contains,
        p.n.unwrap_or(1),
        p.status.unwrap_or(503),
    );
    StatusCode::NO_CONTENT.into_response()
}

async fn control_rotate(State(shared): State<Arc<Shared>>, Path(realm): Path<String>) -> Response {
    crate::rotate_key(&shared, &realm);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_retire(State(shared): State<Arc<Shared>>, Path(realm): Path<String>) -> Response {
    if let Some(r) = shared.world().realm_mut(&realm) {
        r.keys.retire_old();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn control_expire(State(shared): State<Arc<Shared>>, Path(realm): Path<String>) -> Response {
    crate::expire_tokens(&shared, &realm);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_counters(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.faults.counters_json()).into_response()
}

async fn control_outbox(State(shared): State<Arc<Shared>>) -> Response {
    let outbox = shared.world().outbox.clone();
    axum::Json(json!(outbox)).into_response()
}
