//! `voxgate realm import`: applies a Keycloak realm file (the
//! RealmRepresentation JSON that `kc.sh import` reads) to a running Keycloak
//! through its admin REST API.
//!
//! A missing realm is created from the file as it is (`POST /admin/realms`);
//! an existing one gets the file's missing users, clients and roles through
//! `POST /admin/realms/{realm}/partialImport` (policy `SKIP`, or `FAIL`).
//! Resources that exist are compared field by field with the file, so a
//! changed redirect URI shows as a change, never as "exists". `overwrite`
//! updates those in place (`PUT` on the user, client or role) instead of
//! Keycloak's own `OVERWRITE`, which deletes and recreates them: that would
//! give users new ids (voxgate maps users by id) and drop the role mappings
//! of users who are not in the file and a client's service account.
//! The file is sent as raw JSON, never through typed structs, so fields this
//! program does not know still reach Keycloak.
//!
//! Exit codes (scripts rely on them, see docs/deployment.md):
//! 0 done or nothing to do, 1 error (Keycloak unreachable, sign-in refused,
//! import rejected), 2 usage (bad arguments, unreadable or invalid file),
//! 3 conflict (a resource exists and the policy is `fail`).
//!
//! Secrets and tokens are never printed: messages carry Keycloak's error
//! text, never request headers or bodies.

pub mod placeholders;
mod production;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};
use url::Url;

#[derive(Subcommand)]
pub enum RealmCommand {
    /// Create or update a realm in Keycloak from a realm JSON file.
    Import(ImportArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("credentials").required(true).args(["client_id", "admin_user"])))]
pub struct ImportArgs {
    /// Realm file (Keycloak RealmRepresentation JSON).
    #[arg(long)]
    pub file: PathBuf,
    /// Keycloak base URL, e.g. http://127.0.0.1:8180 (without /realms/…).
    #[arg(long)]
    pub url: String,
    /// Realm to sign in at: `master` (default) or the target realm itself.
    #[arg(long, default_value = "master")]
    pub auth_realm: String,
    /// Client id for the client-credentials grant (a service account with
    /// realm-admin rights).
    #[arg(long, requires = "client_secret", conflicts_with = "admin_user")]
    pub client_id: Option<String>,
    /// Secret of --client-id. Prefer the environment variable: arguments
    /// are visible to other users of the machine.
    #[arg(
        long,
        env = "VOXGATE_REALM_CLIENT_SECRET",
        hide_env_values = true,
        requires = "client_id"
    )]
    pub client_secret: Option<String>,
    /// Keycloak administrator, signed in through `admin-cli`.
    #[arg(long, requires = "admin_password")]
    pub admin_user: Option<String>,
    /// Password of --admin-user. Prefer the environment variable.
    #[arg(
        long,
        env = "VOXGATE_REALM_ADMIN_PASSWORD",
        hide_env_values = true,
        requires = "admin_user"
    )]
    pub admin_password: Option<String>,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do with users, clients and roles that already exist.
    #[arg(long, value_enum, default_value_t = IfExists::Skip)]
    pub if_exists: IfExists,
    /// `production` leaves the realm in the production state whatever it
    /// holds: the dev-only users gone, the dev-only clients disabled, the
    /// file's dev-only secrets never used, the production password policy on.
    #[arg(long, value_enum, default_value_t = Profile::Dev)]
    pub profile: Profile,
    /// With `--profile production`: a user named like a dev user who is
    /// somebody real (repeatable). Kept, but signed out, their password
    /// removed and a new one required; every other dev user is deleted.
    #[arg(long = "keep-user", value_name = "USERNAME")]
    pub keep_users: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Everything as the file has it.
    Dev,
    /// Dev-only users left out (and deleted from an existing realm),
    /// dev-only clients disabled with direct grants off, dev-only client
    /// secrets generated anew by Keycloak, the production password policy on.
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IfExists {
    /// Keep what Keycloak has; only add what is missing.
    Skip,
    /// Update existing users, clients and roles to the file's version, in
    /// place (ids, role mappings, passwords and service accounts are kept).
    Overwrite,
    /// Stop (exit 3) if any resource already exists; nothing is imported.
    Fail,
}

impl IfExists {
    fn keycloak_name(self) -> &'static str {
        match self {
            IfExists::Skip => "SKIP",
            IfExists::Overwrite => "OVERWRITE",
            IfExists::Fail => "FAIL",
        }
    }

    fn name(self) -> &'static str {
        match self {
            IfExists::Skip => "skip",
            IfExists::Overwrite => "overwrite",
            IfExists::Fail => "fail",
        }
    }
}

/// Why the import stopped; each kind has its own exit code.
#[derive(Debug)]
pub enum Failure {
    /// Exit 2: the arguments or the file are wrong.
    Usage(String),
    /// Exit 1: Keycloak could not be reached or refused the request.
    Error(String),
    /// Exit 3: a resource exists and the policy is `fail`.
    Conflict(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Error(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Conflict(_) => 3,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Error(m) | Failure::Conflict(m) => m,
        }
    }
}

pub async fn run(command: RealmCommand) -> ExitCode {
    let RealmCommand::Import(args) = command;
    let mut report = Vec::new();
    let result = import(&args, &mut report).await;
    for line in report {
        println!("{line}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("voxgate: {}", f.message());
            ExitCode::from(f.code())
        }
    }
}

/// Runs the import; the report lines (standard output) go to `report`,
/// also when it fails (a dry run under `fail` lists the conflicts).
pub async fn import(args: &ImportArgs, report: &mut Vec<String>) -> Result<(), Failure> {
    let mut realm_file = RealmFile::read(&args.file)?;
    let production = (args.profile == Profile::Production).then(|| realm_file.production(report));
    let base = keycloak_base(&args.url)?;
    let http = reqwest::Client::builder()
        .user_agent(concat!(
            "voxgate/",
            env!("CARGO_PKG_VERSION"),
            " realm-import"
        ))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Failure::Error(format!("cannot build the HTTP client: {e}")))?;
    let admin = Admin {
        token: sign_in(&http, &base, args).await?,
        http,
        base,
        realm: realm_file.name.clone(),
    };
    let shown = admin.shown_base();
    if !admin.realm_exists().await? {
        let summary = realm_file.summary();
        if args.dry_run {
            report.push(format!(
                "dry run: realm {} does not exist at {shown}; would create it with {summary}; nothing was changed",
                realm_file.name
            ));
            return Ok(());
        }
        admin.create_realm(&realm_file.json).await?;
        report.push(format!(
            "created realm {} at {shown} ({summary})",
            realm_file.name
        ));
        // What Keycloak adds to every new realm (admin-cli's direct grants)
        // is brought to the production state too.
        if let Some(rules) = &production {
            let options = production::Options {
                dry_run: false,
                signed_in_through: signed_in_through(args),
                keep_users: &args.keep_users,
            };
            production::enforce(&admin, rules, &options, report).await?;
        }
        return Ok(());
    }
    // Under `fail` nothing may change when anything exists, the production
    // state included: checked before it is enforced.
    if args.if_exists == IfExists::Fail && !args.dry_run {
        let existing = plan(&admin, &realm_file).await?;
        let found = existing.iter().filter(|i| i.exists()).count();
        if found > 0 {
            return Err(Failure::Conflict(format!(
                "nothing was imported into realm {}: {found} resource(s) already exist (policy fail; use --if-exists skip or overwrite)",
                realm_file.name
            )));
        }
    }
    // The production state is enforced before anything else is compared:
    // whatever an earlier (development) import left, the dev logins go.
    let enforced = match &production {
        Some(rules) => {
            let options = production::Options {
                dry_run: args.dry_run,
                signed_in_through: signed_in_through(args),
                keep_users: &args.keep_users,
            };
            production::enforce(&admin, rules, &options, report).await?
        }
        None => production::Enforced::default(),
    };
    let mut plan = plan(&admin, &realm_file).await?;
    if args.dry_run {
        // The dry run changed nothing, so Keycloak still has the dev-only
        // clients enabled; the enforcement lines above already say so.
        for item in plan.iter_mut() {
            if item.kind == Kind::Client && enforced.disabled_clients.contains(&item.name) {
                item.differs
                    .retain(|f| f != "enabled" && f != "directAccessGrantsEnabled");
            }
        }
        return dry_run(&admin, &realm_file, &plan, args.if_exists, report);
    }
    // Additions (and the fail policy's all-or-nothing check) go through
    // Keycloak's partial import; it never touches what exists under SKIP.
    let policy = match args.if_exists {
        IfExists::Fail => IfExists::Fail,
        IfExists::Skip | IfExists::Overwrite => IfExists::Skip,
    };
    let response = admin
        .partial_import(&realm_file.partial_import_body(policy))
        .await?;
    let mut overwritten = Vec::new();
    if args.if_exists == IfExists::Overwrite {
        for item in plan.iter().filter(|i| !i.differs.is_empty()) {
            admin.update_in_place(item).await?;
            overwritten.push(item);
        }
    }
    report.extend(summarise(
        &realm_file,
        &shown,
        &response,
        &overwritten,
        args.if_exists,
        &plan,
    ));
    Ok(())
}

/// The client this import signed in through at the target realm itself
/// (an administrator's password through its admin-cli), which must keep
/// taking passwords or the next import could not sign in.
fn signed_in_through(args: &ImportArgs) -> Option<&'static str> {
    let name = RealmFile::read(&args.file).ok()?.name;
    (args.admin_user.is_some() && args.auth_realm == name).then_some("admin-cli")
}

/// The parsed realm file.
struct RealmFile {
    name: String,
    json: Value,
}

impl RealmFile {
    fn read(path: &Path) -> Result<RealmFile, Failure> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("--file {shown}: cannot read it: {e}")))?;
        // Placeholders first, as Keycloak's own import does: a value can
        // then hold any JSON string.
        let json: Value = serde_json::from_str(&placeholders::from_env(&text))
            .map_err(|e| Failure::Usage(format!("--file {shown}: not valid JSON: {e}")))?;
        let name = json
            .get("realm")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--file {shown}: not a realm file (no \"realm\" name at the top level)"
                ))
            })?
            .to_string();
        if name.contains('/') || name.chars().any(char::is_control) {
            return Err(Failure::Usage(format!(
                "--file {shown}: the realm name `{name}` is not usable in a URL path"
            )));
        }
        Ok(RealmFile { name, json })
    }

    /// Applies the production profile to the file (dev-only clients off,
    /// dev-only users out, the production password policy on, dev-only
    /// secrets left for Keycloak to generate), naming each change, and
    /// returns what an existing realm must be brought to.
    fn production(&mut self, report: &mut Vec<String>) -> production::Rules {
        let rules = production::Rules::of(&self.json);
        production::apply_to_file(&mut self.json, &rules, report);
        rules
    }

    fn list(&self, key: &str) -> &[Value] {
        self.json
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn clients(&self) -> impl Iterator<Item = &str> {
        self.list("clients")
            .iter()
            .filter_map(|c| c.get("clientId").and_then(Value::as_str))
    }

    fn realm_roles(&self) -> impl Iterator<Item = &str> {
        self.json
            .pointer("/roles/realm")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.get("name").and_then(Value::as_str))
    }

    /// `(client id, role name)` for every client role in the file.
    fn client_roles(&self) -> Vec<(&str, &str)> {
        let Some(map) = self
            .json
            .pointer("/roles/client")
            .and_then(Value::as_object)
        else {
            return Vec::new();
        };
        map.iter()
            .flat_map(|(client, roles)| {
                roles
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(move |r| {
                        r.get("name")
                            .and_then(Value::as_str)
                            .map(|n| (client.as_str(), n))
                    })
            })
            .collect()
    }

    fn summary(&self) -> String {
        format!(
            "{} clients, {} users, {} realm roles",
            self.clients().count(),
            self.list("users").len(),
            self.realm_roles().count()
        )
    }

    /// Keycloak's PartialImportRepresentation: the resource lists of the
    /// file, untouched, plus the policy.
    fn partial_import_body(&self, policy: IfExists) -> Value {
        let mut body = Map::new();
        body.insert("ifResourceExists".into(), json!(policy.keycloak_name()));
        for key in ["users", "clients", "groups", "identityProviders", "roles"] {
            if let Some(v) = self.json.get(key) {
                body.insert(key.into(), v.clone());
            }
        }
        Value::Object(body)
    }
}

fn keycloak_base(raw: &str) -> Result<Url, Failure> {
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
async fn sign_in(http: &reqwest::Client, base: &Url, args: &ImportArgs) -> Result<String, Failure> {
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
struct Admin {
    http: reqwest::Client,
    base: Url,
    token: String,
    realm: String,
}

impl Admin {
    fn shown_base(&self) -> String {
        shown(&self.base)
    }

    fn url(&self, path: &str) -> Result<Url, Failure> {
        join(&self.base, path)
    }

    fn realm_url(&self, rest: &str) -> Result<Url, Failure> {
        let realm = segment(&self.realm);
        self.url(&format!("admin/realms/{realm}{rest}"))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), Failure> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| cannot_reach(&self.base, e))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn get(&self, url: Url) -> Result<Value, Failure> {
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

    fn not_allowed(&self, status: u16, what: &str) -> Failure {
        Failure::Error(format!(
            "Keycloak did not allow this account to {what} (HTTP {status}); it needs realm-admin rights on realm {} or the master realm's admin role",
            self.realm
        ))
    }

    async fn realm_exists(&self) -> Result<bool, Failure> {
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

    async fn create_realm(&self, realm: &Value) -> Result<(), Failure> {
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

    async fn partial_import(&self, body: &Value) -> Result<Value, Failure> {
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
    async fn clients(&self) -> Result<Vec<Value>, Failure> {
        self.list("/clients").await
    }

    /// A list resource under the realm (`/roles`, `/clients/{id}/roles`…).
    async fn list(&self, path: &str) -> Result<Vec<Value>, Failure> {
        let mut url = self.realm_url(path)?;
        url.query_pairs_mut().append_pair("max", "10000");
        Ok(self.get(url).await?.as_array().cloned().unwrap_or_default())
    }

    /// The user with exactly this username (any letter case), if any.
    async fn user(&self, username: &str) -> Result<Option<Value>, Failure> {
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
    async fn update_in_place(&self, item: &Item) -> Result<(), Failure> {
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
fn segment(name: &str) -> String {
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

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.get(field).and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// What kind of resource a plan item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Client,
    RealmRole,
    ClientRole,
    User,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::RealmRole => "realm role",
            Kind::ClientRole => "client role",
            Kind::User => "user",
        }
    }

    /// Fields that are not the resource's own settings, or that an update
    /// in place must not send (ids, credentials, mappings, sub-resources).
    fn ignored(self) -> &'static [&'static str] {
        match self {
            // A secret is a credential: whatever the file says, the one
            // Keycloak holds (rotated, generated) stays.
            Kind::Client => &[
                "id",
                "secret",
                "protocolMappers",
                "defaultClientScopes",
                "optionalClientScopes",
                "authorizationSettings",
                "access",
            ],
            Kind::RealmRole | Kind::ClientRole => {
                &["id", "composite", "composites", "containerId", "clientRole"]
            }
            Kind::User => &[
                "id",
                "credentials",
                "realmRoles",
                "clientRoles",
                "groups",
                "serviceAccountClientId",
                "federatedIdentities",
                "access",
                "createdTimestamp",
            ],
        }
    }
}

/// One resource of the file and what Keycloak has of it.
struct Item {
    kind: Kind,
    name: String,
    /// The file's version.
    file: Value,
    /// Keycloak's current version, when it exists.
    current: Option<Value>,
    /// Fields whose value in the file differs from Keycloak's.
    differs: Vec<String>,
}

impl Item {
    fn new(kind: Kind, name: String, file: Value, current: Option<Value>) -> Item {
        let differs = current
            .as_ref()
            .map(|c| differing_fields(&file, c, kind.ignored()))
            .unwrap_or_default();
        Item {
            kind,
            name,
            file,
            current,
            differs,
        }
    }

    /// Service-account users are made by their client; they are never
    /// compared or updated on their own.
    fn exists(&self) -> bool {
        self.current.is_some()
    }
}

/// The fields of `file` whose values Keycloak holds differently. A field
/// Keycloak does not report is not counted as a difference; `attributes`
/// are compared key by key; lists are compared as sets.
fn differing_fields(file: &Value, current: &Value, ignored: &[&str]) -> Vec<String> {
    let Some(fields) = file.as_object() else {
        return Vec::new();
    };
    let mut differs = Vec::new();
    for (key, wanted) in fields {
        if ignored.contains(&key.as_str()) {
            continue;
        }
        let Some(have) = current.get(key) else {
            continue;
        };
        if key == "attributes" {
            for (name, value) in wanted.as_object().into_iter().flatten() {
                if !same(value, have.get(name).unwrap_or(&Value::Null)) {
                    differs.push(format!("attributes.{name}"));
                }
            }
        } else if !same(wanted, have) {
            differs.push(key.clone());
        }
    }
    differs
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            let mut x: Vec<String> = x.iter().map(Value::to_string).collect();
            let mut y: Vec<String> = y.iter().map(Value::to_string).collect();
            x.sort();
            y.sort();
            x.dedup();
            y.dedup();
            x == y
        }
        // Keycloak stores attribute values as strings (or lists of them).
        (Value::String(x), Value::Array(y)) | (Value::Array(y), Value::String(x)) => {
            y.len() == 1 && y[0].as_str() == Some(x)
        }
        (Value::Bool(x), Value::String(y)) | (Value::String(y), Value::Bool(x)) => {
            y == &x.to_string()
        }
        _ => a == b,
    }
}

/// Reads what Keycloak has of every resource in the file.
async fn plan(admin: &Admin, file: &RealmFile) -> Result<Vec<Item>, Failure> {
    let clients = admin.clients().await?;
    let realm_roles = admin.list("/roles").await?;
    let find = |list: &[Value], field: &str, name: &str| {
        list.iter()
            .find(|v| v.get(field).and_then(Value::as_str) == Some(name))
            .cloned()
    };
    let mut plan = Vec::new();
    for client in file.list("clients") {
        let Some(id) = client.get("clientId").and_then(Value::as_str) else {
            continue;
        };
        let current = find(&clients, "clientId", id);
        plan.push(Item::new(
            Kind::Client,
            id.to_string(),
            client.clone(),
            current,
        ));
    }
    for role in file
        .json
        .pointer("/roles/realm")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(name) = role.get("name").and_then(Value::as_str) else {
            continue;
        };
        let current = find(&realm_roles, "name", name);
        plan.push(Item::new(
            Kind::RealmRole,
            name.to_string(),
            role.clone(),
            current,
        ));
    }
    let mut client_roles: Vec<(String, Vec<String>)> = Vec::new();
    for (client, role) in file.client_roles() {
        let internal = find(&clients, "clientId", client)
            .and_then(|c| c.get("id").and_then(Value::as_str).map(str::to_string));
        let present = match internal {
            None => false,
            Some(internal) => {
                if !client_roles.iter().any(|(c, _)| c == client) {
                    let roles = admin.list(&format!("/clients/{internal}/roles")).await?;
                    let names = names(&Value::Array(roles), "name");
                    client_roles.push((client.to_string(), names));
                }
                client_roles
                    .iter()
                    .any(|(c, names)| c == client && names.iter().any(|n| n == role))
            }
        };
        // Client roles are only added, never compared.
        let current = present.then(|| json!({}));
        plan.push(Item::new(
            Kind::ClientRole,
            format!("{client}/{role}"),
            json!({}),
            current,
        ));
    }
    for user in file.list("users") {
        let Some(username) = user.get("username").and_then(Value::as_str) else {
            continue;
        };
        // Keycloak's user search never returns service-account users; one
        // exists exactly when its client does, and is left to its client.
        let current = match user.get("serviceAccountClientId").and_then(Value::as_str) {
            Some(client) => find(&clients, "clientId", client).map(|_| json!({})),
            None => admin.user(username).await?,
        };
        let file_version = if user.get("serviceAccountClientId").is_some() {
            json!({})
        } else {
            user.clone()
        };
        plan.push(Item::new(
            Kind::User,
            username.to_string(),
            file_version,
            current,
        ));
    }
    Ok(plan)
}

/// Says what an import would do, from the plan.
fn dry_run(
    admin: &Admin,
    file: &RealmFile,
    plan: &[Item],
    policy: IfExists,
    lines: &mut Vec<String>,
) -> Result<(), Failure> {
    lines.push(format!(
        "dry run: realm {} exists at {}; comparing its users, clients and roles with {} (policy {})",
        file.name,
        admin.shown_base(),
        file.summary(),
        policy.name()
    ));
    let (mut add, mut overwrite, mut skip, mut differ) = (0, 0, 0, 0);
    for item in plan {
        let action = match (item.exists(), item.differs.is_empty(), policy) {
            (false, _, _) => {
                add += 1;
                "would add"
            }
            (true, true, IfExists::Skip | IfExists::Overwrite) => {
                skip += 1;
                "would skip (exists)"
            }
            (true, false, IfExists::Skip) => {
                skip += 1;
                differ += 1;
                "would skip (differs)"
            }
            (true, false, IfExists::Overwrite) => {
                overwrite += 1;
                "would overwrite"
            }
            (true, _, IfExists::Fail) => {
                skip += 1;
                "conflict (exists)"
            }
        };
        let fields = if item.differs.is_empty() || policy == IfExists::Fail {
            String::new()
        } else {
            format!(": {}", item.differs.join(", "))
        };
        lines.push(format!(
            "  {action:<20} {} {}{fields}",
            item.kind.label(),
            item.name
        ));
    }
    if policy == IfExists::Fail && skip > 0 {
        return Err(Failure::Conflict(format!(
            "dry run: an import would fail: {skip} resource(s) already exist (policy fail); nothing was changed"
        )));
    }
    if differ > 0 {
        lines.push(format!(
            "dry run: {differ} existing resource(s) differ from the file; --if-exists overwrite would update them in place"
        ));
    }
    lines.push(format!(
        "dry run: {add} to add, {overwrite} to overwrite, {skip} to skip; realm settings of an existing realm are not changed; nothing was changed"
    ));
    Ok(())
}

/// Turns Keycloak's partial-import summary and the updates made in place
/// into report lines.
fn summarise(
    file: &RealmFile,
    base: &str,
    response: &Value,
    overwritten: &[&Item],
    policy: IfExists,
    plan: &[Item],
) -> Vec<String> {
    let count = |k: &str| response.get(k).and_then(Value::as_u64).unwrap_or(0);
    let added = count("added");
    let overwritten_count = overwritten.len() as u64;
    let skipped = count("skipped").saturating_sub(overwritten_count);
    let kept: Vec<&Item> = if policy == IfExists::Skip {
        plan.iter().filter(|i| !i.differs.is_empty()).collect()
    } else {
        Vec::new()
    };
    let mut lines = if added == 0 && overwritten_count == 0 {
        vec![format!(
            "no change: realm {} at {base} already has every user, client and role in the file ({skipped} skipped)",
            file.name
        )]
    } else {
        vec![format!(
            "updated realm {} at {base}: {added} added, {overwritten_count} overwritten, {skipped} skipped",
            file.name
        )]
    };
    for result in response
        .get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let field = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or("?");
        if field("action") != "SKIPPED" {
            lines.push(format!(
                "  {:<12} {} {}",
                field("action").to_lowercase(),
                field("resourceType").to_lowercase().replace('_', " "),
                field("resourceName")
            ));
        }
    }
    for item in overwritten {
        lines.push(format!(
            "  {:<12} {} {} ({})",
            "overwritten",
            item.kind.label(),
            item.name,
            item.differs.join(", ")
        ));
    }
    for item in &kept {
        lines.push(format!(
            "  {:<12} {} {} differs from the file ({}); kept Keycloak's version",
            "skipped",
            item.kind.label(),
            item.name,
            item.differs.join(", ")
        ));
    }
    if !kept.is_empty() {
        lines.push(format!(
            "{} existing resource(s) differ from the file; run again with --if-exists overwrite to update them in place",
            kept.len()
        ));
    }
    lines
}

fn join(base: &Url, path: &str) -> Result<Url, Failure> {
    base.join(path)
        .map_err(|e| Failure::Usage(format!("cannot build a Keycloak URL from --url: {e}")))
}

/// The base URL without any user:password part.
fn shown(base: &Url) -> String {
    let mut u = base.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn cannot_reach(base: &Url, e: reqwest::Error) -> Failure {
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
fn keycloak_error(body: &Value) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: Value) -> RealmFile {
        RealmFile {
            name: json["realm"].as_str().unwrap_or_default().to_string(),
            json,
        }
    }

    #[test]
    fn the_partial_import_body_carries_the_files_resources_untouched() {
        let f = file(json!({
            "realm": "r",
            "accessTokenLifespan": 300,
            "users": [{"username": "u", "someFutureField": {"kept": true}}],
            "clients": [{"clientId": "c"}],
            "roles": {"realm": [{"name": "x"}]}
        }));
        let body = f.partial_import_body(IfExists::Overwrite);
        assert_eq!(body["ifResourceExists"], "OVERWRITE");
        assert_eq!(body["users"][0]["someFutureField"]["kept"], true);
        assert_eq!(body["roles"]["realm"][0]["name"], "x");
        // Realm settings are not part of a partial import.
        assert!(body.get("accessTokenLifespan").is_none());
        assert!(body.get("realm").is_none());
    }

    #[test]
    fn differences_are_the_files_fields_keycloak_holds_otherwise() {
        let file = json!({
            "clientId": "web",
            "redirectUris": ["https://a/*", "https://b/*"],
            "publicClient": false,
            "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "+"},
            "protocolMappers": [{"name": "ignored"}],
            "futureField": 1
        });
        let same = json!({
            "id": "x",
            "clientId": "web",
            "redirectUris": ["https://b/*", "https://a/*"],
            "publicClient": false,
            "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "+", "other": "1"},
            "protocolMappers": []
        });
        assert!(differing_fields(&file, &same, Kind::Client.ignored()).is_empty());
        let mut changed = same.clone();
        changed["redirectUris"] = json!(["https://a/*"]);
        changed["attributes"]["pkce.code.challenge.method"] = json!("plain");
        assert_eq!(
            differing_fields(&file, &changed, Kind::Client.ignored()),
            ["redirectUris", "attributes.pkce.code.challenge.method"]
        );
    }

    #[test]
    fn user_credentials_and_mappings_are_never_compared() {
        let file = json!({"username": "bob", "firstName": "Robert", "credentials": [{"value": "x"}], "realmRoles": ["user"]});
        let current = json!({"id": "1", "username": "bob", "firstName": "Bob", "credentials": [], "realmRoles": []});
        assert_eq!(
            differing_fields(&file, &current, Kind::User.ignored()),
            ["firstName"]
        );
    }

    #[test]
    fn names_in_paths_keep_unreserved_characters_as_they_are() {
        assert_eq!(segment("vg-imp_1.x~"), "vg-imp_1.x~");
        assert_eq!(segment("a/b c%"), "a%2Fb%20c%25");
    }

    #[test]
    fn keycloak_base_refuses_realm_urls_and_other_schemes() {
        assert_eq!(
            keycloak_base("http://kc:8080").unwrap().as_str(),
            "http://kc:8080/"
        );
        assert_eq!(
            keycloak_base("https://kc.example/auth").unwrap().as_str(),
            "https://kc.example/auth/"
        );
        assert!(matches!(
            keycloak_base("http://kc:8080/realms/voxgate"),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(keycloak_base("ftp://kc"), Err(Failure::Usage(_))));
    }

    #[test]
    fn the_shown_url_never_contains_credentials() {
        let u = Url::parse("https://admin:hunter2@kc.example/").unwrap();
        assert_eq!(shown(&u), "https://kc.example/");
    }

    #[test]
    fn keycloak_errors_are_summarised_from_the_known_fields() {
        assert_eq!(
            keycloak_error(
                &json!({"error": "invalid_client", "error_description": "Invalid client credentials"})
            ),
            "invalid_client: Invalid client credentials"
        );
        assert_eq!(
            keycloak_error(&json!({"errorMessage": "User exists with same username"})),
            "User exists with same username"
        );
        assert_eq!(keycloak_error(&Value::Null), "no details");
    }

    #[test]
    fn a_report_with_nothing_added_or_overwritten_says_no_change() {
        let f = file(json!({"realm": "r"}));
        let lines = summarise(
            &f,
            "http://kc/",
            &json!({"added": 0, "overwritten": 0, "skipped": 4, "results": []}),
            &[],
            IfExists::Skip,
            &[],
        );
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("no change: realm r"), "{lines:?}");
        let lines = summarise(
            &f,
            "http://kc/",
            &json!({"added": 1, "overwritten": 0, "skipped": 1, "results": [
                {"action": "ADDED", "resourceType": "USER", "resourceName": "carol"},
                {"action": "SKIPPED", "resourceType": "CLIENT", "resourceName": "web"}
            ]}),
            &[],
            IfExists::Skip,
            &[],
        );
        assert!(lines[0].starts_with("updated realm r"), "{lines:?}");
        assert_eq!(lines.len(), 2, "skipped resources are only counted");
        assert!(lines[1].contains("added") && lines[1].contains("user carol"));
    }
}
