//! Provisioning input, parsed rather than validated: once a value is a
//! [`Username`] or [`Email`] it is known to be acceptable to Keycloak and
//! to our schema.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::FieldError;
pub use crate::identity::{UserRow, UserStatus};

/// A Keycloak-compatible username: stored lower-case (as Keycloak does),
/// 3–255 characters from `a-z 0-9 . _ @ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Username, String> {
        let value = raw.trim().to_lowercase();
        if value.chars().count() < 3 {
            return Err("must be at least 3 characters".into());
        }
        if value.chars().count() > 255 {
            return Err("must be at most 255 characters".into());
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._@-".contains(c))
        {
            return Err("may only contain letters, digits and . _ @ -".into());
        }
        if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err("must start with a letter or digit".into());
        }
        if value.starts_with("service-account-") {
            return Err("the service-account- prefix is reserved by Keycloak".into());
        }
        Ok(Username(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address in the shape Keycloak accepts, in lower case as
/// Keycloak stores it (so both systems hold the same address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let value = raw.trim();
        if value.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err("must look like name@example.com".into());
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err("must look like name@example.com".into());
        }
        Ok(Email(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A first or last name: at most 255 characters, none of the characters
/// Keycloak's person-name validator refuses.
pub fn parse_name(raw: &str) -> Result<String, String> {
    let value = raw.trim();
    if value.chars().count() > 255 {
        return Err("must be at most 255 characters".into());
    }
    if value
        .chars()
        .any(|c| c.is_control() || "<>&\"$%!#?§;*~/\\|^=[]{}()".contains(c))
    {
        return Err("may not contain < > & \" $ % ! # ? § ; * ~ / \\ | ^ = [ ] { } ( ) or control characters".into());
    }
    Ok(value.to_string())
}

#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordInput {
    pub value: String,
    #[serde(default)]
    pub temporary: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateUserRequest {
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub password: Option<PasswordInput>,
    #[serde(default)]
    pub send_invite: bool,
}

impl std::fmt::Debug for PasswordInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordInput")
            .field("value", &"[REDACTED]")
            .field("temporary", &self.temporary)
            .finish()
    }
}

/// How the new user gets a password.
#[derive(Clone)]
pub enum Credential {
    Password { value: String, temporary: bool },
    Invite,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password { temporary, .. } => write!(
                f,
                "Password {{ value: [REDACTED], temporary: {temporary} }}"
            ),
            Credential::Invite => f.write_str("Invite"),
        }
    }
}

/// A create request that passed every check that needs no I/O.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<String>,
    pub credential: Credential,
}

impl CreateUserRequest {
    pub fn parse(self, password_min_length: usize) -> Result<NewUser, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut push = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                message,
            })
        };
        let username = Username::parse(&self.username)
            .map_err(|m| push("username", m))
            .ok();
        let email = Email::parse(&self.email).map_err(|m| push("email", m)).ok();
        let first_name = parse_name(&self.first_name)
            .map_err(|m| push("firstName", m))
            .ok();
        let last_name = parse_name(&self.last_name)
            .map_err(|m| push("lastName", m))
            .ok();
        let credential = match (self.password, self.send_invite) {
            (Some(_), true) => {
                push(
                    "password",
                    "give either a password or sendInvite, not both".into(),
                );
                None
            }
            (None, false) => {
                push("password", "give a password or set sendInvite".into());
                None
            }
            (None, true) => Some(Credential::Invite),
            (Some(p), false) => {
                if p.value.chars().count() < password_min_length {
                    push(
                        "password",
                        format!("must be at least {password_min_length} characters"),
                    );
                    None
                } else if p.value.chars().count() > 256 {
                    push("password", "must be at most 256 characters".into());
                    None
                } else if p.value.trim().is_empty() {
                    push("password", "must not be blank".into());
                    None
                } else {
                    Some(Credential::Password {
                        value: p.value,
                        temporary: p.temporary,
                    })
                }
            }
        };
        let mut roles: Vec<String> = self.roles.iter().map(|r| r.trim().to_lowercase()).collect();
        roles.sort();
        roles.dedup();
        if roles.is_empty() {
            roles.push(crate::identity::AppRole::User.as_str().to_string());
        }
        match (username, email, first_name, last_name, credential) {
            (Some(username), Some(email), Some(first_name), Some(last_name), Some(credential))
                if errors.is_empty() =>
            {
                Ok(NewUser {
                    username,
                    email,
                    first_name,
                    last_name,
                    roles,
                    credential,
                })
            }
            _ => Err(errors),
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateUserRequest {
    pub enabled: Option<bool>,
    pub roles: Option<Vec<String>>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// A new address (not verified until the user verifies it).
    pub email: Option<String>,
}

/// A user as the admin API shows it: the row, with the roles granted in
/// voxgate or mapped from the Keycloak roles last seen for the user.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    #[serde(flatten)]
    pub user: UserRow,
    pub roles: Vec<String>,
}

impl std::ops::Deref for UserView {
    type Target = UserRow;

    fn deref(&self) -> &UserRow {
        &self.user
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub items: Vec<UserView>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

/// One of a user's sessions in Keycloak.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    /// Where the session was started from.
    pub ip_address: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_access_at: Option<OffsetDateTime>,
    /// The client ids signed in through it (e.g. `voxgate-web`).
    pub clients: Vec<String>,
}

/// Keycloak's brute-force detection for a user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockView {
    /// Locked out now (temporarily or until unlocked) after failed
    /// sign-ins.
    pub locked: bool,
    /// Failed sign-ins since the last success or unlock.
    pub failures: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_failure_at: Option<OffsetDateTime>,
    /// Where the last failure came from.
    pub last_failure_ip: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target_id: Option<Uuid>,
    pub target: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_cased_and_checked_like_keycloak() {
        assert_eq!(
            Username::parse("  Carol.Smith ").unwrap().as_str(),
            "carol.smith"
        );
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("bad name").is_err());
        assert!(Username::parse("-dash").is_err());
        assert!(Username::parse("über").is_err());
        assert!(Username::parse("service-account-x").is_err());
        assert!(Username::parse(&"a".repeat(256)).is_err());
        assert!(Username::parse("carol@example.com").is_ok());
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert_eq!(
            Email::parse("Carol@Example.COM").unwrap().as_str(),
            "carol@example.com"
        );
        for bad in [
            "carol",
            "carol@",
            "@example.com",
            "carol@example",
            "a b@example.com",
            "carol@exa_mple.com",
            "carol..x@example.com",
            "carol@-example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_refuse_markup_characters() {
        assert_eq!(parse_name(" Zoë ").unwrap(), "Zoë");
        assert!(parse_name("<script>").is_err());
        assert!(parse_name("a\u{0007}b").is_err());
    }

    fn request() -> CreateUserRequest {
        CreateUserRequest {
            username: "carol".into(),
            email: "carol@example.com".into(),
            first_name: "Carol".into(),
            last_name: "Smith".into(),
            roles: vec![],
            password: Some(PasswordInput {
                value: "correct horse battery".into(),
                temporary: true,
            }),
            send_invite: false,
        }
    }

    #[test]
    fn a_create_request_reports_every_bad_field_at_once() {
        let mut r = request();
        r.username = "x".into();
        r.email = "nope".into();
        r.password = Some(PasswordInput {
            value: "short".into(),
            temporary: false,
        });
        let errors = r.parse(12).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["username", "email", "password"]);
    }

    #[test]
    fn exactly_one_of_password_or_invite() {
        let mut both = request();
        both.send_invite = true;
        assert_eq!(both.parse(12).unwrap_err()[0].field, "password");
        let mut neither = request();
        neither.password = None;
        assert_eq!(neither.parse(12).unwrap_err()[0].field, "password");
        let mut invite = request();
        invite.password = None;
        invite.send_invite = true;
        assert!(matches!(
            invite.parse(12).unwrap().credential,
            Credential::Invite
        ));
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let r = request();
        assert!(!format!("{r:?}").contains("correct horse"));
        assert!(!format!("{:?}", r.parse(12).unwrap()).contains("correct horse"));
    }

    #[test]
    fn roles_default_to_user_and_are_normalised() {
        assert_eq!(request().parse(12).unwrap().roles, ["user"]);
        let mut r = request();
        r.roles = vec!["Agent".into(), "agent".into(), "user".into()];
        assert_eq!(r.parse(12).unwrap().roles, ["agent", "user"]);
    }
}
