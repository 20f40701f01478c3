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

mod admin;
mod args;
mod file;
pub mod placeholders;
mod plan;
mod production;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use admin::{Admin, keycloak_base, sign_in};
pub use args::{Failure, IfExists, ImportArgs, Profile, RealmCommand};
use file::RealmFile;
use plan::{Kind, plan};
use report::{dry_run, summarise};

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
    if !args.keep_users.is_empty() && args.profile != Profile::Production {
        return Err(Failure::Usage(
            "--keep-user only applies with --profile production (the development profile deletes no user)"
                .into(),
        ));
    }
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
                signed_in_through: signed_in_through(args, &realm_file.name),
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
                signed_in_through: signed_in_through(args, &realm_file.name),
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
fn signed_in_through(args: &ImportArgs, realm: &str) -> Option<&'static str> {
    (args.admin_user.is_some() && args.auth_realm == realm).then_some("admin-cli")
}

#[cfg(test)]
mod tests;
