//! The command line of `voxgate realm import`, and why an import stops.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

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
    pub(crate) fn keycloak_name(self) -> &'static str {
        match self {
            IfExists::Skip => "SKIP",
            IfExists::Overwrite => "OVERWRITE",
            IfExists::Fail => "FAIL",
        }
    }

    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Error(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Conflict(_) => 3,
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Error(m) | Failure::Conflict(m) => m,
        }
    }
}
