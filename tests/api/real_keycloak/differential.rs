//! The stand-in held to the real server: the same request sequences go to
//! both (the same realm file under the same name), and the answers are
//! compared — status, the headers clients read, the JSON shape (keys and
//! value types), and exact values where Keycloak's are deterministic
//! (error codes and messages). Whatever the real server accepts, the
//! stand-in must accept. Known differences are listed in `KNOWN` with their
//! reason (and in `standins/keycloak/README.md`); anything else fails.

use std::collections::BTreeSet;

use keycloak_standin::{Standin, StandinConfig};
use serde_json::{Value, json};

use super::{KcAdmin, server, test_realm};
use crate::helpers::Caller;

/// `(case, path in the JSON shape or header name)` pairs that differ on
/// purpose; each has its reason in the stand-in's README.
const KNOWN: &[(&str, &str)] = &[];

/// Body fields whose values are Keycloak's deterministic error vocabulary.
const EXACT: &[&str] = &["error", "error_description", "errorMessage", "active"];

/// Headers a client reads.
const HEADERS: &[&str] = &[
    "content-type",
    "www-authenticate",
    "access-control-allow-origin",
    "access-control-allow-credentials",
];

/// One side of the comparison.
struct Side {
    name: &'static str,
    base: String,
    admin: KcAdmin,
    http: reqwest::Client,
}

/// What came back, reduced to what is compared.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    location: Option<String>,
    body: Value,
}

impl Side {
    async fn send(&self, case: &Case) -> Answer {
        let url = format!(
            "{}{}",
            self.base,
            case.path.replace("{realm}", &self.admin.realm)
        );
        let mut request = self.http.request(case.method.clone(), url);
        match &case.auth {
            Auth::None => {}
            Auth::Admin => request = request.bearer_auth(self.admin.token().await),
            Auth::Bearer(token) => request = request.bearer_auth(token),
        }
        for (name, value) in &case.headers {
            request = request.header(*name, *value);
        }
        match &case.body {
            Body::None => {}
            Body::Form(pairs) => request = request.form(pairs),
            Body::Json(value, content_type) => {
                request = request
                    .header("content-type", *content_type)
                    .body(value.to_string())
            }
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = HEADERS
            .iter()
            .filter_map(|h| {
                response
                    .headers()
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| (h.to_string(), normalise_header(h, v)))
            })
            .collect();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| l.replace(&self.base, "{base}"));
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            location,
            body,
        }
    }
}

/// Values that legitimately vary (realm keys in a challenge) are cut down
/// to their structure.
fn normalise_header(name: &str, value: &str) -> String {
    match name {
        "content-type" => value.to_ascii_lowercase().replace(' ', ""),
        "www-authenticate" => value
            .split(',')
            .map(|p| p.split('=').next().unwrap_or("").trim().to_string())
            .collect::<Vec<_>>()
            .join(","),
        _ => value.to_string(),
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Admin,
    Bearer(String),
}

#[derive(Clone)]
enum Body {
    None,
    Form(Vec<(&'static str, String)>),
    Json(Value, &'static str),
}

#[derive(Clone)]
struct Case {
    name: String,
    method: reqwest::Method,
    path: String,
    auth: Auth,
    headers: Vec<(&'static str, &'static str)>,
    body: Body,
}

fn case(name: &str, method: reqwest::Method, path: &str) -> Case {
    Case {
        name: name.to_string(),
        method,
        path: path.to_string(),
        auth: Auth::None,
        headers: Vec::new(),
        body: Body::None,
    }
}

impl Case {
    fn admin(mut self) -> Case {
        self.auth = Auth::Admin;
        self
    }
    fn form(mut self, pairs: &[(&'static str, &str)]) -> Case {
        self.body = Body::Form(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect());
        self
    }
    fn json(mut self, value: Value) -> Case {
        self.body = Body::Json(value, "application/json");
        self
    }
    fn json_as(mut self, value: Value, content_type: &'static str) -> Case {
        self.body = Body::Json(value, content_type);
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.headers.push((name, value));
        self
    }
}

/// The type skeleton of a JSON value: objects keep their keys, arrays the
/// union of their elements' shapes.
fn shape(value: &Value, path: &str, out: &mut BTreeSet<(String, &'static str)>) {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    out.insert((path.to_string(), kind));
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                // Maps keyed by data (attributes, client ids) are compared as
                // maps, not by their keys.
                let key = if path.ends_with("attributes") || path.ends_with("clientMappings") {
                    "*"
                } else {
                    k.as_str()
                };
                shape(v, &format!("{path}.{key}"), out);
            }
        }
        Value::Array(items) => {
            for v in items {
                shape(v, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

fn compare(case: &str, real: &Answer, standin: &Answer) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut note = |what: &str, detail: String| {
        if !KNOWN.contains(&(case, what)) {
            diffs.push(format!("{case}: {what}: {detail}"));
        }
    };
    if real.status != standin.status {
        note(
            "status",
            format!("real {} / stand-in {}", real.status, standin.status),
        );
        return diffs;
    }
    for h in HEADERS {
        let r = real.headers.iter().find(|(n, _)| n == h).map(|(_, v)| v);
        let s = standin.headers.iter().find(|(n, _)| n == h).map(|(_, v)| v);
        if r != s {
            note(h, format!("real {r:?} / stand-in {s:?}"));
        }
    }
    if real.location.is_some() != standin.location.is_some() {
        note(
            "location",
            format!("real {:?} / stand-in {:?}", real.location, standin.location),
        );
    }
    let (mut r, mut s) = (BTreeSet::new(), BTreeSet::new());
    shape(&real.body, "$", &mut r);
    shape(&standin.body, "$", &mut s);
    for (path, kind) in r.difference(&s) {
        note(path, format!("real has {kind}, the stand-in does not"));
    }
    for (path, kind) in s.difference(&r) {
        note(
            path,
            format!("the stand-in has {kind}, the real server does not"),
        );
    }
    for field in EXACT {
        if let (Some(a), Some(b)) = (real.body.get(*field), standin.body.get(*field))
            && a != b
        {
            note(field, format!("real {a} / stand-in {b}"));
        }
    }
    diffs
}

/// Sends every case to both sides in order and collects the differences.
async fn run(cases: &[Case], real: &Side, standin: &Side) -> Vec<String> {
    let mut diffs = Vec::new();
    for case in cases {
        let a = real.send(case).await;
        let b = standin.send(case).await;
        diffs.extend(compare(&case.name, &a, &b));
    }
    diffs
}

struct Pair {
    real: Side,
    standin: Side,
    _standin_server: Standin,
}

/// The project realm under one name on both servers.
async fn pair() -> Option<Pair> {
    let kc = server()?;
    let realm = format!(
        "vg-diff-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let json = test_realm(&realm, "http://127.0.0.1:8080", |_| {});
    let admin = kc.admin(&realm);
    assert_eq!(admin.create_realm(&json).await.status(), 201);
    let standin_server = Standin::start(StandinConfig {
        realm_jsons: vec![json],
        ..StandinConfig::default()
    })
    .await
    .expect("stand-in starts");
    let standin_admin = KcAdmin {
        base: standin_server.base_url(),
        realm: realm.clone(),
        password: "admin".into(),
        http: reqwest::Client::new(),
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Some(Pair {
        real: Side {
            name: "real",
            base: kc.base.clone(),
            admin,
            http: http.clone(),
        },
        standin: Side {
            name: "stand-in",
            base: standin_server.base_url(),
            admin: standin_admin,
            http,
        },
        _standin_server: standin_server,
    })
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.real.admin.delete_realm_from_drop();
    }
}

fn report(diffs: &[String]) {
    assert!(
        diffs.is_empty(),
        "the stand-in differs from the real server in {} place(s):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

const TOKEN: &str = "/realms/{realm}/protocol/openid-connect/token";

#[tokio::test]
async fn discovery_and_token_endpoint_errors_match_the_real_server() {
    let Some(pair) = pair().await else {
        return;
    };
    use reqwest::Method as M;
    let cases = vec![
        case(
            "discovery",
            M::GET,
            "/realms/{realm}/.well-known/openid-configuration",
        ),
        case(
            "unknown realm discovery",
            M::GET,
            "/realms/no-such-realm/.well-known/openid-configuration",
        ),
        case("bad password", M::POST, TOKEN).form(&[
            ("grant_type", "password"),
            ("client_id", "voxgate-cli"),
            ("username", "bob"),
            ("password", "wrong"),
        ]),
        case("unknown user", M::POST, TOKEN).form(&[
            ("grant_type", "password"),
            ("client_id", "voxgate-cli"),
            ("username", "nobody"),
            ("password", "wrong"),
        ]),
        case("bad client secret", M::POST, TOKEN).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "voxgate-admin"),
            ("client_secret", "wrong"),
        ]),
        case("unknown client", M::POST, TOKEN).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "no-such-client"),
            ("client_secret", "x"),
        ]),
        case("unsupported grant", M::POST, TOKEN).form(&[
            ("grant_type", "urn:example:nothing"),
            ("client_id", "voxgate-cli"),
        ]),
        case("missing grant type", M::POST, TOKEN).form(&[("client_id", "voxgate-cli")]),
        case(
            "password grant on a client without direct grants",
            M::POST,
            TOKEN,
        )
        .form(&[
            ("grant_type", "password"),
            ("client_id", "voxgate-web"),
            ("client_secret", crate::stack::WEB_SECRET),
            ("username", "bob"),
            ("password", "bob"),
        ]),
        case("bad authorization code", M::POST, TOKEN).form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "voxgate-web"),
            ("client_secret", crate::stack::WEB_SECRET),
            ("code", "not-a-code"),
            ("redirect_uri", "http://127.0.0.1:8080/auth/callback"),
        ]),
        case("bad refresh token", M::POST, TOKEN).form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "voxgate-cli"),
            ("refresh_token", "not-a-token"),
        ]),
        case("GET on the token endpoint", M::GET, TOKEN),
        case("CORS preflight on the token endpoint", M::OPTIONS, TOKEN)
            .header("origin", "http://127.0.0.1:8080")
            .header("access-control-request-method", "POST"),
        case(
            "userinfo without a token",
            M::GET,
            "/realms/{realm}/protocol/openid-connect/userinfo",
        ),
    ];
    report(&run(&cases, &pair.real, &pair.standin).await);
}

#[tokio::test]
async fn a_password_token_userinfo_and_introspection_match_the_real_server() {
    let Some(pair) = pair().await else {
        return;
    };
    use reqwest::Method as M;
    let grant = case("password grant", M::POST, TOKEN).form(&[
        ("grant_type", "password"),
        ("client_id", "voxgate-cli"),
        ("username", "bob"),
        ("password", "bob"),
        ("scope", "openid"),
    ]);
    let real = pair.real.send(&grant).await;
    let standin = pair.standin.send(&grant).await;
    let mut diffs = compare("password grant", &real, &standin);
    let mut per_side = Vec::new();
    for (side, answer) in [(&pair.real, &real), (&pair.standin, &standin)] {
        let token = answer.body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let userinfo = Case {
            auth: Auth::Bearer(token.clone()),
            ..case(
                "userinfo",
                M::GET,
                "/realms/{realm}/protocol/openid-connect/userinfo",
            )
        };
        let introspect = case(
            "introspection",
            M::POST,
            "/realms/{realm}/protocol/openid-connect/token/introspect",
        )
        .form(&[
            ("client_id", "voxgate-web"),
            ("client_secret", crate::stack::WEB_SECRET),
            ("token", token.as_str()),
        ]);
        let bad_introspect = case(
            "introspection of garbage",
            M::POST,
            "/realms/{realm}/protocol/openid-connect/token/introspect",
        )
        .form(&[
            ("client_id", "voxgate-web"),
            ("client_secret", crate::stack::WEB_SECRET),
            ("token", "garbage"),
        ]);
        // A plain user's token on the admin API: Keycloak's 403 body.
        let forbidden = Case {
            auth: Auth::Bearer(token.clone()),
            ..case(
                "admin call without rights",
                M::GET,
                "/admin/realms/{realm}/users",
            )
        };
        let refresh = answer.body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let logout = |name: &str, token: &str| {
            case(
                name,
                M::POST,
                "/realms/{realm}/protocol/openid-connect/logout",
            )
            .form(&[("client_id", "voxgate-cli"), ("refresh_token", token)])
        };
        per_side.push(vec![
            ("userinfo", side.send(&userinfo).await),
            ("introspection", side.send(&introspect).await),
            ("introspection of garbage", side.send(&bad_introspect).await),
            ("admin call without rights", side.send(&forbidden).await),
            (
                "logout with a bad refresh token",
                side.send(&logout("logout with a bad refresh token", "garbage"))
                    .await,
            ),
            (
                "logout with the refresh token",
                side.send(&logout("logout with the refresh token", &refresh))
                    .await,
            ),
            (
                "refresh after logout",
                side.send(&case("refresh after logout", M::POST, TOKEN).form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "voxgate-cli"),
                    ("refresh_token", refresh.as_str()),
                ]))
                .await,
            ),
        ]);
    }
    for ((name, r), (_, s)) in per_side[0].iter().zip(per_side[1].iter()) {
        diffs.extend(compare(name, r, s));
    }
    // The token's claims: same names, same types.
    let claims = |a: &Answer| {
        crate::stack::Stack::claims(a.body["access_token"].as_str().unwrap_or("x.e30.x"))
    };
    let claim_answer = |a: &Answer| Answer {
        status: 200,
        headers: Vec::new(),
        location: None,
        body: claims(a),
    };
    diffs.extend(compare(
        "access-token claims",
        &claim_answer(&real),
        &claim_answer(&standin),
    ));
    report(&diffs);
}

#[tokio::test]
async fn the_user_admin_api_matches_the_real_server_in_the_forms_clients_send() {
    let Some(pair) = pair().await else {
        return;
    };
    use reqwest::Method as M;
    let user = json!({
        "username": "diff-user",
        "email": "diff-user@example.com",
        "firstName": "Diff",
        "lastName": "User",
        "enabled": true,
        "credentials": [{"type": "password", "value": "a long enough password", "temporary": false}]
    });
    let cases = vec![
        case(
            "admin call without a token",
            M::GET,
            "/admin/realms/{realm}/users",
        ),
        case(
            "admin call of an unknown realm",
            M::GET,
            "/admin/realms/no-such-realm/users",
        )
        .admin(),
        case("create user", M::POST, "/admin/realms/{realm}/users")
            .admin()
            .json(user.clone()),
        case(
            "create the same user again",
            M::POST,
            "/admin/realms/{realm}/users",
        )
        .admin()
        .json(user.clone()),
        case(
            "create in other letter case",
            M::POST,
            "/admin/realms/{realm}/users",
        )
        .admin()
        .json(json!({"username": "DIFF-USER", "email": "other@example.com"})),
        case(
            "create with a taken email",
            M::POST,
            "/admin/realms/{realm}/users",
        )
        .admin()
        .json(json!({"username": "someone-new", "email": "Diff-User@Example.com"})),
        case(
            "create with charset in the content type",
            M::POST,
            "/admin/realms/{realm}/users",
        )
        .admin()
        .json_as(
            json!({"username": "charset-user"}),
            "application/json;charset=UTF-8",
        ),
        case(
            "exact search",
            M::GET,
            "/admin/realms/{realm}/users?username=diff-user&exact=true",
        )
        .admin(),
        case(
            "exact search, parameters reversed",
            M::GET,
            "/admin/realms/{realm}/users?exact=true&username=DIFF-USER",
        )
        .admin(),
        case(
            "search",
            M::GET,
            "/admin/realms/{realm}/users?search=diff&first=0&max=10",
        )
        .admin(),
        case(
            "brief search",
            M::GET,
            "/admin/realms/{realm}/users?search=diff&briefRepresentation=true",
        )
        .admin(),
        case(
            "search by email",
            M::GET,
            "/admin/realms/{realm}/users?email=diff-user%40example.com&exact=true",
        )
        .admin(),
        case(
            "list with a trailing slash",
            M::GET,
            "/admin/realms/{realm}/users/",
        )
        .admin(),
        case("count", M::GET, "/admin/realms/{realm}/users/count").admin(),
        case(
            "count by search",
            M::GET,
            "/admin/realms/{realm}/users/count?search=diff",
        )
        .admin(),
        case(
            "unknown user",
            M::GET,
            "/admin/realms/{realm}/users/00000000-0000-0000-0000-000000000000",
        )
        .admin(),
        case("roles", M::GET, "/admin/realms/{realm}/roles").admin(),
        case("one role", M::GET, "/admin/realms/{realm}/roles/agent").admin(),
        case(
            "unknown role",
            M::GET,
            "/admin/realms/{realm}/roles/no-such-role",
        )
        .admin(),
        case(
            "clients by client id",
            M::GET,
            "/admin/realms/{realm}/clients?clientId=voxgate-web",
        )
        .admin(),
    ];
    let mut diffs = run(&cases, &pair.real, &pair.standin).await;

    // Per-user calls, on each side with that side's id.
    let mut answers = Vec::new();
    for side in [&pair.real, &pair.standin] {
        let found = side
            .admin
            .user_by_username("diff-user")
            .await
            .expect("created");
        let id = found["id"].as_str().unwrap().to_string();
        let agent = side.admin.get("/roles/agent").await;
        let path = |rest: &str| format!("/admin/realms/{{realm}}/users/{id}{rest}");
        let per_user = vec![
            case("get user", M::GET, &path("")).admin(),
            case("update user", M::PUT, &path("")).admin().json(json!({"firstName": "Changed"})),
            case("update user with a bad email", M::PUT, &path("")).admin().json(json!({"email": "not an email"})),
            case("realm role mappings", M::GET, &path("/role-mappings/realm")).admin(),
            case("add a realm role", M::POST, &path("/role-mappings/realm")).admin().json(json!([agent])),
            case("composite realm roles", M::GET, &path("/role-mappings/realm/composite")).admin(),
            case("available realm roles", M::GET, &path("/role-mappings/realm/available")).admin(),
            case("all role mappings", M::GET, &path("/role-mappings")).admin(),
            case("remove a realm role", M::DELETE, &path("/role-mappings/realm")).admin().json(json!([agent])),
            case("reset password", M::PUT, &path("/reset-password")).admin().json(json!({"type": "password", "value": "another long password", "temporary": true})),
            case("reset password without a value", M::PUT, &path("/reset-password")).admin().json(json!({"type": "password"})),
            case("sessions", M::GET, &path("/sessions")).admin(),
            case("logout user", M::POST, &path("/logout")).admin(),
            case("delete user", M::DELETE, &path("")).admin(),
            case("get deleted user", M::GET, &path("")).admin(),
        ];
        let mut side_answers = Vec::new();
        for c in &per_user {
            side_answers.push((c.name.clone(), side.send(c).await));
        }
        answers.push(side_answers);
    }
    for ((name, r), (_, s)) in answers[0].iter().zip(answers[1].iter()) {
        diffs.extend(compare(name, r, s));
    }
    report(&diffs);
}

#[tokio::test]
async fn partial_import_answers_like_the_real_server_under_each_policy() {
    let Some(pair) = pair().await else {
        return;
    };
    use reqwest::Method as M;
    let body = |policy: &str| {
        json!({
            "ifResourceExists": policy,
            "users": [
                {"username": "bob", "enabled": true, "firstName": "Imported"},
                {"username": "imported-one", "enabled": true}
            ],
            "roles": {"realm": [{"name": "agent"}, {"name": "imported-role"}]}
        })
    };
    let cases = vec![
        case(
            "partial import, skip",
            M::POST,
            "/admin/realms/{realm}/partialImport",
        )
        .admin()
        .json(body("SKIP")),
        case(
            "partial import, fail",
            M::POST,
            "/admin/realms/{realm}/partialImport",
        )
        .admin()
        .json(body("FAIL")),
        case(
            "partial import, overwrite",
            M::POST,
            "/admin/realms/{realm}/partialImport",
        )
        .admin()
        .json(body("OVERWRITE")),
        case(
            "partial import, unknown policy",
            M::POST,
            "/admin/realms/{realm}/partialImport",
        )
        .admin()
        .json(body("SOMETIMES")),
    ];
    let diffs = run(&cases, &pair.real, &pair.standin).await;
    report(&diffs);
}

/// Runs the browser part of the code flow on one side and returns the code
/// Keycloak sent to the redirect URI.
async fn code_for(side: &Side, challenge: Option<&str>) -> String {
    let browser = crate::stack::browser();
    let mut auth = url::Url::parse(&format!(
        "{}/realms/{}/protocol/openid-connect/auth",
        side.base, side.admin.realm
    ))
    .unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", "voxgate-web")
        .append_pair("redirect_uri", "http://127.0.0.1:8080/auth/callback")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", "s");
    if let Some(challenge) = challenge {
        auth.query_pairs_mut()
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
    }
    let page = Caller::at("", browser.clone()).get(&auth).await;
    assert_eq!(page.status(), 200, "{} login page", side.name);
    let action = crate::stack::form_action(&page.text().await.unwrap());
    let submitted = Caller::at("", browser.clone())
        .post_form(&action, &[("username", "bob"), ("password", "bob")])
        .await;
    assert_eq!(submitted.status(), 302, "{} login accepted", side.name);
    let location = url::Url::parse(&crate::stack::location(&submitted)).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{}: no code in {location}", side.name))
}

fn exchange(code: &str, verifier: Option<&str>) -> Case {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("client_id", "voxgate-web"),
        ("client_secret", crate::stack::WEB_SECRET),
        ("code", code),
        ("redirect_uri", "http://127.0.0.1:8080/auth/callback"),
    ];
    if let Some(v) = verifier {
        pairs.push(("code_verifier", v));
    }
    case("code exchange", reqwest::Method::POST, TOKEN).form(&pairs)
}

#[tokio::test]
async fn pkce_code_reuse_disabled_and_unfinished_accounts_answer_like_the_real_server() {
    let Some(pair) = pair().await else {
        return;
    };
    use base64::Engine;
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let mut per_side = Vec::new();
    for side in [&pair.real, &pair.standin] {
        let mut answers = Vec::new();
        // A wrong verifier, then a missing one, each on a fresh code.
        let code = code_for(side, Some(&challenge)).await;
        answers.push((
            "wrong PKCE verifier",
            side.send(&exchange(
                &code,
                Some("wrong-verifier-wrong-verifier-wrong-verifier-00"),
            ))
            .await,
        ));
        let code = code_for(side, Some(&challenge)).await;
        answers.push((
            "missing PKCE verifier",
            side.send(&exchange(&code, None)).await,
        ));
        // The right verifier, then the same code again.
        let code = code_for(side, Some(&challenge)).await;
        answers.push((
            "code exchange with PKCE",
            side.send(&exchange(&code, Some(verifier))).await,
        ));
        answers.push((
            "reused code",
            side.send(&exchange(&code, Some(verifier))).await,
        ));

        // A disabled user, and one whose password is temporary.
        for (username, temporary) in [("diff-disabled", false), ("diff-temporary", true)] {
            let r = side
                .admin
                .call(
                    reqwest::Method::POST,
                    "/users",
                    Some(&json!({
                        "username": username,
                        "enabled": !username.ends_with("disabled"),
                        "credentials": [{"type": "password", "value": "a long enough password", "temporary": temporary}]
                    })),
                )
                .await;
            assert_eq!(r.status(), 201, "{} creates {username}", side.name);
            let grant = case(username, reqwest::Method::POST, TOKEN).form(&[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", username),
                ("password", "a long enough password"),
            ]);
            answers.push((username, side.send(&grant).await));
        }
        per_side.push(answers);
    }
    let mut diffs = Vec::new();
    for ((name, r), (_, s)) in per_side[0].iter().zip(per_side[1].iter()) {
        diffs.extend(compare(name, r, s));
    }
    report(&diffs);
}
