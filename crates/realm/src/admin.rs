//! Keycloak's admin REST API as the import uses it: signing in, reading
//! and changing one realm's resources, and Keycloak's errors in words.

use serde_json::{Value, json};
use url::Url;

use crate::args::{Failure, ImportArgs};
use crate::plan::{Item, Kind};

pub(crate) fn keycloak_base(raw: &str) -> Result<Url, Failure> {
    let mut url = Url::parse(raw.trim())
        .map_err(|e| Failure::Usage(format!("--url `{raw}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::Usage(format!(
            "--url `{raw}` must be an http or https URL"
        )));
    }
    if url.path().contains("/realms/") {
        return Err(Failure::Usage(format!(
            "--url `{raw}` must be Keycloak's base URL, without /realms/…"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Gets an admin access token: client credentials, or the admin's password
/// through `admin-cli`, at `--auth-realm`.
pub(crate) async fn sign_in(
    http: &reqwest::Client,
    base: &Url,
    args: &ImportArgs,
) -> Result<String, Failure> {
    let token_url = join(
        base,
        &format!("realms/{}/protocol/openid-connect/token", args.auth_realm),
    )?;
    let (who, form): (String, Vec<(&str, &str)>) = match (
        &args.client_id,
        &args.client_secret,
        &args.admin_user,
        &args.admin_password,
    ) {
        (Some(id), Some(secret), None, _) => (
            format!("client {id}"),
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ],
        ),
        (None, _, Some(user), Some(password)) => (
            format!("user {user}"),
            vec![
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", user),
                ("password", password),
            ],
        ),
        _ => {
            return Err(Failure::Usage(
                "give either --client-id and --client-secret, or --admin-user and --admin-password"
                    .into(),
            ));
        }
    };
    let response = http
        .post(token_url)
        .form(&form)
        .send()
        .await
        .map_err(|e| cannot_reach(base, e))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(Failure::Error(format!(
            "Keycloak at {} refused the sign-in of {who} at realm {} (HTTP {}: {})",
            shown(base),
            args.auth_realm,
            status.as_u16(),
            keycloak_error(&body)
        )));
    }
    body.get("access_token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Failure::Error("Keycloak's token response has no access_token".into()))
}

/// An authenticated admin API client for one realm.
pub(crate) struct Admin {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) token: String,
    pub(crate) realm: String,
}

impl Admin {
    pub(crate) fn shown_base(&self) -> String {
        shown(&self.base)
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url, Failure> {
        join(&self.base, path)
    }

    pub(crate) fn realm_url(&self, rest: &str) -> Result<Url, Failure> {
        let realm = segment(&self.realm);
        self.url(&format!("admin/realms/{realm}{rest}"))
    }

    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), Failure> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| cannot_reach(&self.base, e))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub(crate) async fn get(&self, url: Url) -> Result<Value, Failure> {
        let shown = url.path().to_string();
        let (status, body) = self.send(self.http.get(url)).await?;
        match status {
            200 => Ok(body),
            401 | 403 => Err(self.not_allowed(status, &format!("read {shown}"))),
            _ => Err(Failure::Error(format!(
                "GET {shown} failed (HTTP {status}: {})",
                keycloak_error(&body)
            ))),
        }
    }

    pub(crate) fn not_allowed(&self, status: u16, what: &str) -> Failure {
        Failure::Error(format!(
            "Keycloak did not allow this account to {what} (HTTP {status}); it needs realm-admin rights on realm {} or the master realm's admin role",
            self.realm
        ))
    }

    pub(crate) async fn realm_exists(&self) -> Result<bool, Failure> {
        let (status, body) = self.send(self.http.get(self.realm_url("")?)).await?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            401 | 403 => Err(self.not_allowed(status, &format!("read realm {}", self.realm))),
            _ => Err(Failure::Error(format!(
                "cannot tell whether realm {} exists (HTTP {status}: {})",
                self.realm,
                keycloak_error(&body)
            ))),
        }
    }

    pub(crate) async fn create_realm(&self, realm: &Value) -> Result<(), Failure> {
        let (status, body) = self
            .send(self.http.post(self.url("admin/realms")?).json(realm))
            .await?;
        match status {
            200 | 201 | 204 => Ok(()),
            401 | 403 => Err(self.not_allowed(status, "create realms")),
            409 => Err(Failure::Error(format!(
                "realm {} was created by someone else meanwhile; run the import again",
                self.realm
            ))),
            _ => Err(Failure::Error(format!(
                "Keycloak refused to create realm {} (HTTP {status}: {})",
                self.realm,
                keycloak_error(&body)
            ))),
        }
    }

    pub(crate) async fn partial_import(&self, body: &Value) -> Result<Value, Failure> {
        let (status, response) = self
            .send(self.http.post(self.realm_url("/partialImport")?).json(body))
            .await?;
        match status {
            200 => Ok(response),
            401 | 403 => Err(self.not_allowed(status, "import into the realm")),
            409 => Err(Failure::Conflict(format!(
                "nothing was imported into realm {}: {} (policy fail; use --if-exists skip or overwrite)",
                self.realm,
                keycloak_error(&response)
            ))),
            _ => Err(Failure::Error(format!(
                "Keycloak refused the import into realm {} (HTTP {status}: {})",
                self.realm,
                keycloak_error(&response)
            ))),
        }
    }

    /// Every client of the realm, as Keycloak represents it.
    pub(crate) async fn clients(&self) -> Result<Vec<Value>, Failure> {
        self.list("/clients").await
    }

    /// A list resource under the realm (`/roles`, `/clients/{id}/roles`…).
    pub(crate) async fn list(&self, path: &str) -> Result<Vec<Value>, Failure> {
        let mut url = self.realm_url(path)?;
        url.query_pairs_mut().append_pair("max", "10000");
        Ok(self.get(url).await?.as_array().cloned().unwrap_or_default())
    }

    /// The user with exactly this username (any letter case), if any.
    pub(crate) async fn user(&self, username: &str) -> Result<Option<Value>, Failure> {
        let mut url = self.realm_url("/users")?;
        url.query_pairs_mut()
            .append_pair("username", username)
            .append_pair("exact", "true");
        let list = self.get(url).await?;
        Ok(list
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .find(|u| {
                u.get("username")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(username))
            })
            .cloned())
    }

    /// Brings an existing resource to the file's version with a `PUT` on
    /// the resource itself: Keycloak keeps its id, its role mappings, its
    /// credentials and (for a client) its roles and service account.
    pub(crate) async fn update_in_place(&self, item: &Item) -> Result<(), Failure> {
        let Some(current) = &item.current else {
            return Ok(());
        };
        let mut body = current.clone();
        if let (Some(body), Some(file)) = (body.as_object_mut(), item.file.as_object()) {
            for (key, value) in file {
                if item.kind.ignored().contains(&key.as_str()) {
                    continue;
                }
                if key == "attributes" {
                    let attributes = body.entry("attributes").or_insert_with(|| json!({}));
                    if let (Some(a), Some(v)) = (attributes.as_object_mut(), value.as_object()) {
                        for (k, v) in v {
                            a.insert(k.clone(), v.clone());
                        }
                    }
                } else {
                    body.insert(key.clone(), value.clone());
                }
            }
        }
        let id = current
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = match item.kind {
            Kind::Client => format!("/clients/{id}"),
            Kind::User => format!("/users/{id}"),
            Kind::RealmRole => format!(
                "/roles/{}",
                percent_encoding::utf8_percent_encode(
                    &item.name,
                    percent_encoding::NON_ALPHANUMERIC
                )
            ),
            Kind::ClientRole => return Ok(()),
        };
        let (status, response) = self
            .send(self.http.put(self.realm_url(&path)?).json(&body))
            .await?;
        match status {
            200 | 204 => Ok(()),
            401 | 403 => Err(self.not_allowed(
                status,
                &format!("update {} {}", item.kind.label(), item.name),
            )),
            _ => Err(Failure::Error(format!(
                "Keycloak refused to update {} {} (HTTP {status}: {}); what was listed before this line was applied",
                item.kind.label(),
                item.name,
                keycloak_error(&response)
            ))),
        }
    }
}

/// A name as one URL path segment. Only what would end or change the
/// segment is escaped: Keycloak refuses paths that escape unreserved
/// characters such as `-` ("Request path not normalized").
pub(crate) fn segment(name: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'/')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

pub(crate) fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.get(field).and_then(Value::as_str).map(str::to_string))
        .collect()
}

pub(crate) fn join(base: &Url, path: &str) -> Result<Url, Failure> {
    base.join(path)
        .map_err(|e| Failure::Usage(format!("cannot build a Keycloak URL from --url: {e}")))
}

/// The base URL without any user:password part.
pub(crate) fn shown(base: &Url) -> String {
    let mut u = base.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

pub(crate) fn cannot_reach(base: &Url, e: reqwest::Error) -> Failure {
    let why = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.without_url().to_string()
    };
    Failure::Error(format!("cannot reach Keycloak at {}: {why}", shown(base)))
}

/// Keycloak's own error text from an error body, shortened.
pub(crate) fn keycloak_error(body: &Value) -> String {
    let text = ["errorMessage", "error_description", "error"]
        .iter()
        .filter_map(|k| body.get(*k).and_then(Value::as_str))
        .collect::<Vec<_>>();
    let text = match text.as_slice() {
        [] => "no details".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{}: {first}", rest.join(", ")),
    };
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}
