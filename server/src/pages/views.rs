//! The chat page (`/`) and the admin page (`/admin`).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::auth::PageUser;
use crate::error::PageError;
use crate::identity::{AppRole, AuthMethod, CurrentUser};
use crate::users::Users;
use crate::web::asset_url;

/// What the page header shows about the signed-in user.
struct Header {
    username: String,
    display_name: String,
    is_admin: bool,
    csrf: String,
}

impl Header {
    fn of(user: &CurrentUser) -> Header {
        let full = format!("{} {}", user.first_name.trim(), user.last_name.trim());
        let full = full.trim();
        Header {
            username: user.username.clone(),
            display_name: if full.is_empty() {
                user.username.clone()
            } else {
                full.to_string()
            },
            is_admin: user.has_role(AppRole::Admin),
            csrf: match &user.method {
                AuthMethod::Session { csrf_token, .. } => csrf_token.clone(),
                // Pages are only served to browser sessions.
                AuthMethod::Bearer => String::new(),
            },
        }
    }
}

#[derive(askama::Template)]
#[template(path = "chat.html")]
struct ChatPage {
    header: Header,
    script: String,
    /// The microphone: push-to-talk (`listen.js`), and the audio worklet
    /// it captures with.
    listen_script: String,
    capture_worklet: String,
}

#[derive(askama::Template)]
#[template(path = "admin.html")]
struct AdminPage {
    header: Header,
    script: String,
    /// Keycloak's admin console for the realm, for what voxgate does not do.
    console: Option<String>,
}

impl ChatPage {
    fn css(&self) -> String {
        asset_url("app.css")
    }

    fn theme(&self) -> String {
        asset_url("theme.js")
    }
}

impl AdminPage {
    fn css(&self) -> String {
        asset_url("app.css")
    }

    fn theme(&self) -> String {
        asset_url("theme.js")
    }
}

/// Pages carry the session's CSRF token: never cache them.
fn render(page: &impl askama::Template) -> Result<Response, PageError> {
    let html = page.render().map_err(PageError::internal)?;
    let mut response = Html(html).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn chat(PageUser(user): PageUser) -> Result<Response, PageError> {
    render(&ChatPage {
        header: Header::of(&user),
        script: asset_url("chat.js"),
        listen_script: asset_url("listen.js"),
        capture_worklet: asset_url("capture-worklet.js"),
    })
}

pub async fn admin(
    State(users): State<Users>,
    PageUser(user): PageUser,
) -> Result<Response, PageError> {
    if !user.has_role(AppRole::Admin) {
        return Err(PageError::page(
            StatusCode::FORBIDDEN,
            "Administrators only",
            format!(
                "The admin page needs the admin role, and the account “{}” does not have it. Ask an administrator if you need access.",
                user.username
            ),
        ));
    }
    render(&AdminPage {
        header: Header::of(&user),
        script: asset_url("admin.js"),
        console: users.console_url(),
    })
}
