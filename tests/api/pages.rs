//! The HTML pages: who may open them, what they carry (CSRF token,
//! versioned assets), and that they stay within the strict CSP.

use crate::helpers::Caller;
use crate::stack::{Stack, spawn_stack, spawn_with_bob};

async fn csrf_of_latest_session(stack: &Stack) -> String {
    sqlx::query_scalar("SELECT csrf_token FROM sessions ORDER BY created_at DESC LIMIT 1")
        .fetch_one(&stack.app.db)
        .await
        .unwrap()
}

/// Every `<tag …>` opening tag in `html`, lower-cased.
fn tags(html: &str, name: &str) -> Vec<String> {
    let needle = format!("<{name}");
    let lower = html.to_lowercase();
    let mut out = Vec::new();
    let mut rest: &str = &lower;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        if after.starts_with(|c: char| c.is_whitespace() || c == '>') {
            let end = after.find('>').unwrap_or(after.len());
            out.push(format!("{needle}{}>", &after[..end]));
        }
        rest = after;
    }
    out
}

/// No inline script, inline style or event-handler attributes: what the
/// CSP would block anyway, so a page relying on it would be broken.
fn assert_no_inline_code(html: &str) {
    let lower = html.to_lowercase();
    for script in tags(html, "script") {
        assert!(script.contains(" src="), "inline script: {script}");
    }
    assert!(tags(html, "style").is_empty(), "inline <style> element");
    assert!(!lower.contains(" style="), "style= attribute in page");
    let handler = regex::Regex::new(r#"\son[a-z]+\s*="#).unwrap();
    assert!(!handler.is_match(&lower), "inline event handler in page");
    assert!(!lower.contains("javascript:"), "javascript: URL in page");
}

fn assert_strict_csp(response: &reqwest::Response) {
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("style-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

#[tokio::test]
async fn the_chat_page_sends_anonymous_visitors_to_sign_in() {
    let stack = spawn_stack().await;
    let r = stack.app.get("/").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/auth/login?return_to=%2F");
    let r = stack.app.get("/admin").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/auth/login?return_to=%2Fadmin");
}

#[tokio::test]
async fn signing_in_lands_on_the_chat_page_with_the_csrf_token() {
    let stack = spawn_stack().await;
    let (client, landing) = stack.browser_login("bob", "bob", "/").await;
    assert_eq!(landing, stack.app.url("/"));
    let r = Caller::at("", client.clone()).get(&landing).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_strict_csp(&r);
    let html = r.text().await.unwrap();
    let csrf = csrf_of_latest_session(&stack).await;
    assert!(
        html.contains(&format!(r#"<meta name="csrf-token" content="{csrf}">"#)),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            r#"<input type="hidden" name="csrf" value="{csrf}">"#
        )),
        "the sign-out form carries the token"
    );
    assert!(html.contains(r#"action="/auth/logout""#));
    assert!(html.contains("Bob User"), "shows who is signed in");
    assert!(
        !html.contains(r#"href="/admin""#),
        "no admin link for a plain user"
    );
    assert!(
        html.contains(r#"aria-live="polite""#),
        "replies are announced"
    );
    assert_no_inline_code(&html);
}

#[tokio::test]
async fn the_admin_page_is_a_readable_403_for_plain_users() {
    let (stack, client) = spawn_with_bob().await;
    let r = stack.browser(&client).get("/admin").await;
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("Administrators only"), "{html}");
    assert!(html.contains("“bob”"), "{html}");
    assert_no_inline_code(&html);
}

#[tokio::test]
async fn admins_get_the_admin_page_and_an_admin_link() {
    let stack = spawn_stack().await;
    let (client, _) = stack.browser_login("alice", "alice", "/admin").await;
    let r = stack.browser(&client).get("/admin").await;
    assert_eq!(r.status(), 200);
    assert_strict_csp(&r);
    let html = r.text().await.unwrap();
    assert!(html.contains("Create a user"));
    assert!(html.contains(r#"<meta name="csrf-token""#));
    assert_no_inline_code(&html);
    let chat = stack.browser(&client).get("/").await.text().await.unwrap();
    assert!(chat.contains(r#"href="/admin""#));
}

#[tokio::test]
async fn page_scripts_and_styles_are_embedded_with_versioned_urls() {
    let stack = spawn_stack().await;
    let (client, _) = stack.browser_login("alice", "alice", "/").await;
    let asset = regex::Regex::new(r#"(?:src|href)="(/static/[^"]+)""#).unwrap();
    for page in ["/", "/admin"] {
        let html = stack.browser(&client).get(page).await.text().await.unwrap();
        let urls: Vec<String> = asset
            .captures_iter(&html)
            .map(|c| c[1].replace("&amp;", "&"))
            .collect();
        assert!(urls.len() >= 2, "a stylesheet and a script on {page}");
        for url in urls {
            assert!(url.contains("?v="), "{url} is versioned");
            let r = stack.app.get(&url).await;
            assert_eq!(r.status(), 200, "{url}");
            let kind = r.headers()["content-type"].to_str().unwrap().to_string();
            assert!(
                kind.contains("javascript") || kind.contains("css"),
                "{url}: {kind}"
            );
        }
    }
}

#[test]
fn page_scripts_never_insert_markup() {
    // User text must only ever reach the DOM as text.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/static");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "js") {
            let source = std::fs::read_to_string(&path).unwrap();
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!source.contains(banned), "{} uses {banned}", path.display());
            }
        }
    }
}
