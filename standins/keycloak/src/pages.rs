//! HTML pages of the login theme: login form, update-password form, errors, logout
//! confirmation and info pages. Element ids follow Keycloak's theme so scripted browsers work.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

/// The look of voxgate's own pages (web/static/app.css: palette, type,
/// fields and buttons), so that signing in does not feel like leaving the
/// app. Inline: the stand-in serves no static files.
const STYLE: &str = "\
:root{--bg:#f6f7f9;--fg:#1d2330;--muted:#5b6475;--accent:#2456d8;--border:#d7dce5;--focus:#1a4fd6;--danger:#b42318;--warn:#9a6700}\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;background:var(--bg);color:var(--fg)}\
#kc-header{padding:.6rem 1rem;background:#fff;border-bottom:1px solid var(--border);font-weight:800;font-size:1.25rem}\
#kc-content{max-width:26rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid var(--border);border-radius:.75rem;box-shadow:0 1px 2px rgba(20,30,60,.08)}\
#kc-page-title{margin:0 0 1rem;font-size:1.4rem}\
form{display:flex;flex-direction:column;gap:.35rem}\
label{font-weight:600;margin-top:.5rem}\
input[type=text],input[type=password],input[type=email]{font:inherit;color:inherit;border:1px solid var(--border);border-radius:.5rem;padding:.45rem .6rem;background:#fff}\
input[type=submit],button{margin-top:1rem;font:inherit;font-weight:600;padding:.5rem 1rem;border-radius:.5rem;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer;min-height:2.5rem}\
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}\
.alert-error{color:var(--danger);margin-bottom:.5rem}\
.alert-warning{color:var(--warn);margin-bottom:.5rem}\
a{color:var(--accent)}";

fn layout(realm: &str, title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="robots" content="noindex, nofollow">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body id="keycloak-bg">
<div id="kc-header"><div id="kc-header-wrapper">{realm}</div></div>
<main id="kc-content">
<h1 id="kc-page-title">{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = text(title),
        realm = text(realm),
    )
}

fn alert(error: Option<&str>) -> String {
    match error {
        Some(e) => format!(
            r#"<div class="alert-error"><span id="input-error" class="kc-feedback-text" aria-live="polite">{}</span></div>"#,
            text(e)
        ),
        None => String::new(),
    }
}

pub fn login(
    realm: &str,
    action: &str,
    username: &str,
    error: Option<&str>,
    email_allowed: bool,
) -> String {
    let label = if email_allowed {
        "Username or email"
    } else {
        "Username"
    };
    let body = format!(
        r#"{alert}
<form id="kc-form-login" action="{action}" method="post">
<label for="username">{label}</label>
<input id="username" name="username" type="text" value="{username}" autofocus autocomplete="username">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<input type="hidden" id="id-hidden-input" name="credentialId" value="">
<input id="kc-login" name="login" type="submit" value="Sign In">
</form>"#,
        alert = alert(error),
        action = attr(action),
        username = attr(username),
    );
    layout(realm, "Sign in to your account", &body)
}

pub fn update_password(realm: &str, action: &str, error: Option<&str>) -> String {
    let body = format!(
        r#"<div class="alert-warning"><span class="kc-feedback-text">You need to change your password to activate your account.</span></div>
{alert}
<form id="kc-passwd-update-form" action="{action}" method="post">
<label for="password-new">New Password</label>
<input id="password-new" name="password-new" type="password" autocomplete="new-password" autofocus>
<label for="password-confirm">Confirm password</label>
<input id="password-confirm" name="password-confirm" type="password" autocomplete="new-password">
<input type="submit" value="Submit">
</form>"#,
        alert = alert(error),
        action = attr(action),
    );
    layout(realm, "Update password", &body)
}

pub fn error(realm: &str, message: &str) -> String {
    let body = format!(
        r#"<div id="kc-error-message"><p class="instruction">{}</p></div>"#,
        text(message)
    );
    layout(realm, "We are sorry...", &body)
}

pub fn info(realm: &str, title: &str, message: &str, link: Option<&str>) -> String {
    let link = match link {
        Some(l) => format!(r#"<p><a href="{}">« Back to Application</a></p>"#, attr(l)),
        None => String::new(),
    };
    let body = format!(
        r#"<div id="kc-info-message"><p class="instruction">{}</p>{link}</div>"#,
        text(message)
    );
    layout(realm, title, &body)
}

pub fn logout_confirm(realm: &str, action: &str, session_code: &str) -> String {
    let body = format!(
        r#"<div id="kc-logout-confirm"><p class="instruction">Do you want to log out?</p>
<form class="form-actions" action="{action}" method="POST">
<input type="hidden" name="session_code" value="{code}">
<input name="confirmLogout" id="kc-logout" type="submit" value="Logout">
</form></div>"#,
        action = attr(action),
        code = attr(session_code),
    );
    layout(realm, "Logging out", &body)
}

/// `response_mode=form_post`: an auto-submitting form carrying the response parameters.
pub fn form_post(redirect_uri: &str, params: &[(&str, String)]) -> String {
    let inputs: String = params
        .iter()
        .map(|(k, v)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}"/>"#,
                attr(k),
                attr(v)
            )
        })
        .collect();
    format!(
        r#"<HTML><HEAD><TITLE>Submit This Form</TITLE></HEAD><BODY Onload="javascript:document.forms[0].submit()"><FORM METHOD="POST" ACTION="{}">{inputs}<NOSCRIPT><P>JavaScript is disabled. We strongly recommend to enable it. You can click the button below to continue.</P><INPUT name="continue" TYPE="SUBMIT" VALUE="CONTINUE" /></NOSCRIPT></FORM></BODY></HTML>"#,
        attr(redirect_uri)
    )
}
