//! scripts/stack (the compose topology as local processes) and
//! docker-compose.yml take their settings from the same deploy/*.env files;
//! these tests fail when the two drift apart anyway: a setting given to a
//! service in one and not the other, or a value that differs by more than
//! where the service runs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::compose::{compose, env};
use super::{read, repo};

/// Where a service is, in compose and as a process (`scripts/stack env`
/// uses compose's ports). Nothing else may differ.
const ADDRESSES: &[(&str, &str)] = &[
    ("postgres:5432", "127.0.0.1:5432"),
    // Keycloak's container port 8080 is published as 8180, the port the
    // process listens on.
    ("keycloak:8080", "127.0.0.1:8180"),
    ("nginx:8082", "127.0.0.1:8082"),
    // nginx's fixed address on the compose network: the one trusted proxy.
    ("172.30.42.10", "127.0.0.1"),
    // A container listens on every interface of its own; a process on
    // loopback only.
    ("0.0.0.0:", "127.0.0.1:"),
    // Docker's DNS; processes have nothing to look up.
    ("127.0.0.11", "127.0.0.1"),
];

/// Settings only a process needs: a container gets them from its image.
const PROCESS_ONLY: &[(&str, &str)] = &[
    ("keycloak", "KC_HTTP_HOST"),
    ("keycloak", "KC_HTTP_PORT"),
    ("keycloak", "KC_HTTP_MANAGEMENT_PORT"),
    ("keycloak-admin-console", "KCADM"),
];

/// `scripts/stack env SERVICE`, with a shell that passes no AWS settings.
fn stack_env(service: &str, aws: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut command = std::process::Command::new(repo("scripts/stack"));
    command.args(["env", service]);
    for name in [
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        command.env_remove(name);
    }
    command.envs(aws.iter().copied());
    let output = command.output().expect("scripts/stack runs");
    assert!(
        output.status.success(),
        "scripts/stack env {service}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut env = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let (key, value) = line.split_once('=').expect("KEY=value");
        assert!(
            env.insert(key.to_string(), value.to_string()).is_none(),
            "{service}: {key} is given once"
        );
    }
    env
}

/// A compose value as the process stack must have it.
fn as_process(service: &str, key: &str, value: &str) -> String {
    let certs = repo("nginx/certs").canonicalize().unwrap();
    let mut value = value.replace("/etc/nginx/certs", certs.to_str().unwrap());
    for (container, process) in ADDRESSES {
        value = value.replace(container, process);
    }
    if service == "nginx" && key.ends_with("_PORT") {
        // Listen on loopback only (the container listens everywhere).
        value = format!("127.0.0.1:{value}");
    }
    // Debian's nginx has no `resolve` on upstream servers, and processes do
    // not move.
    value.replace(" resolve", "")
}

#[test]
fn the_process_stack_gives_every_service_what_compose_gives_it() {
    let compose = compose();
    for service in [
        "postgres",
        "keycloak",
        "keycloak-admin-console",
        "voxgate-migrate",
        "voxgate",
        "nginx",
    ] {
        let composed = env(&compose, service);
        let stack = stack_env(service, &[]);
        for (key, value) in &composed {
            let Value::String(value) = value else {
                // Passed through from the shell (AWS credentials).
                assert!(value.is_null(), "{service}: {key}: {value}");
                assert!(
                    !stack.contains_key(key),
                    "{service}: {key} comes from the shell only"
                );
                continue;
            };
            let Some(given) = stack.get(key) else {
                panic!("{service}: compose sets {key}, the process stack does not");
            };
            if service == "nginx" && key == "NGINX_VOXGATE_SERVERS" {
                // One `server` line per instance where compose has one name.
                let lines: Vec<&str> = given.split_inclusive(';').map(str::trim).collect();
                assert_eq!(lines.len(), 2, "two instances: {given}");
                for (line, port) in lines.iter().zip(["8081", "8083"]) {
                    let expected = as_process(service, key, value)
                        .replace("voxgate:8081", &format!("127.0.0.1:{port}"));
                    assert_eq!(*line, expected, "{service}: {key}");
                }
                continue;
            }
            assert_eq!(
                given,
                &as_process(service, key, value),
                "{service}: {key} differs"
            );
        }
        for key in stack.keys() {
            assert!(
                composed.contains_key(key) || PROCESS_ONLY.contains(&(service, key.as_str())),
                "{service}: the process stack sets {key}, compose does not"
            );
        }
    }
}

#[test]
fn process_only_settings_agree_with_the_containers_ports_and_aws_passes_through() {
    let compose = compose();
    let keycloak = stack_env("keycloak", &[]);
    let published = compose["services"]["keycloak"]["ports"][0]
        .as_str()
        .unwrap();
    assert_eq!(published, "127.0.0.1:8180:8080");
    assert_eq!(keycloak["KC_HTTP_PORT"], "8180");
    assert_eq!(keycloak["KC_HTTP_HOST"], "127.0.0.1");
    // The management port compose's health check reads.
    assert!(
        compose["services"]["keycloak"]["healthcheck"]["test"]
            .to_string()
            .contains("/dev/tcp/127.0.0.1/9000")
    );
    assert_eq!(keycloak["KC_HTTP_MANAGEMENT_PORT"], "9000");

    let voxgate = stack_env(
        "voxgate",
        &[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ],
    );
    assert_eq!(voxgate["AWS_REGION"], "eu-west-1");
    assert_eq!(voxgate["AWS_ACCESS_KEY_ID"], "AKIDEXAMPLE");
    assert!(!voxgate.contains_key("AWS_SECRET_ACCESS_KEY"));
}

#[test]
fn both_build_keycloak_alike_and_start_it_alike() {
    // keycloak/Dockerfile and `scripts/keycloak fetch --postgres` both
    // build with keycloak/build.env.
    let dockerfile = read("keycloak/Dockerfile");
    assert!(dockerfile.contains("COPY build.env "), "{dockerfile}");
    assert!(dockerfile.contains("kc.sh build"));
    let keycloak_script = read("scripts/keycloak");
    assert!(keycloak_script.contains("keycloak/build.env"));
    let build: BTreeMap<_, _> = super::env_file("keycloak/build.env").into_iter().collect();
    assert_eq!(build["KC_DB"], "postgres");
    assert_eq!(build["KC_HEALTH_ENABLED"], "true");

    let compose = compose();
    let command: Vec<&str> = compose["services"]["keycloak"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command, ["start", "--optimized", "--import-realm"]);
    let stack = read("scripts/stack");
    assert!(
        stack.contains("kc.sh\" start --optimized --import-realm"),
        "the process stack starts Keycloak as compose does"
    );
    for one_shot in [
        "keycloak/admin-console.sh",
        "voxgate migrate",
        "scripts/postgres-init-voxgate-app.sql",
    ] {
        assert!(
            stack.contains(one_shot),
            "the process stack runs {one_shot}"
        );
    }
}

#[test]
fn the_database_init_scripts_create_the_roles_the_env_files_name() {
    let keycloak: BTreeMap<_, _> = super::env_file("deploy/keycloak.env").into_iter().collect();
    let init = read("scripts/postgres-init-keycloak.sql");
    assert!(init.contains(&format!(
        "CREATE ROLE {} LOGIN PASSWORD '{}'",
        keycloak["KC_DB_USERNAME"], keycloak["KC_DB_PASSWORD"]
    )));
    let postgres: BTreeMap<_, _> = super::env_file("deploy/postgres.env").into_iter().collect();
    let compose = compose();
    let migrate = env(&compose, "voxgate-migrate");
    assert_eq!(
        migrate["DATABASE_URL"],
        format!(
            "postgres://{}:{}@postgres:5432/{}",
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
        )
    );
}

/// Runs `pg_dev_role` (scripts/lib.sh) against the test cluster.
fn pg_dev_role(name: &str, password: &str) -> std::process::Output {
    std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"source scripts/lib.sh && pg_dev_role "$1" "$2" "$3""#)
        .args([
            "pg_dev_role",
            &crate::helpers::admin_database_url(),
            name,
            password,
        ])
        .current_dir(repo(""))
        .output()
        .unwrap()
}

/// Whether `name` logs in to the test cluster with `password`.
async fn logs_in(name: &str, password: &str) -> bool {
    let mut url = url::Url::parse(&crate::helpers::admin_database_url()).unwrap();
    url.set_username(name).unwrap();
    url.set_password(Some(password)).unwrap();
    url.set_path("/postgres");
    use sqlx::Connection;
    sqlx::PgConnection::connect(url.as_str()).await.is_ok()
}

/// The stack gives its roles dev-only passwords, but only roles it made
/// itself: a role of the same name somebody else made keeps its password,
/// and the stack refuses to run with a reason instead.
#[tokio::test]
async fn the_stack_never_resets_the_password_of_a_role_it_did_not_make() {
    let admin = sqlx::PgPool::connect(&crate::helpers::admin_database_url())
        .await
        .unwrap();
    let theirs = format!(
        "vg_theirs_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ours = format!(
        "vg_ours_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    sqlx::query(&format!(
        "CREATE ROLE {theirs} LOGIN PASSWORD 'their own password'"
    ))
    .execute(&admin)
    .await
    .unwrap();

    let out = pg_dev_role(&theirs, "dev-only-password");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(stderr.contains("was not made by these scripts"), "{stderr}");
    assert!(
        logs_in(&theirs, "their own password").await,
        "password kept"
    );
    assert!(!logs_in(&theirs, "dev-only-password").await);
    // Already the dev password: nothing to change, the stack may go on.
    sqlx::query(&format!("ALTER ROLE {theirs} PASSWORD 'dev-only-password'"))
        .execute(&admin)
        .await
        .unwrap();
    assert!(pg_dev_role(&theirs, "dev-only-password").status.success());

    // A role the stack makes is its own to set again.
    let made = pg_dev_role(&ours, "first");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(logs_in(&ours, "first").await);
    assert!(pg_dev_role(&ours, "second").status.success());
    assert!(logs_in(&ours, "second").await);

    for role in [theirs, ours] {
        sqlx::query(&format!("DROP ROLE {role}"))
            .execute(&admin)
            .await
            .unwrap();
    }
}
