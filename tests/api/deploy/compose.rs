//! The invariants of docker-compose.yml and the Dockerfile, which no Docker
//! engine here can run: pinned images, health checks, loopback-only ports,
//! mounts of real files, and wiring that agrees with nginx and the realm.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::nginx::template_placeholders;
use super::{read, repo};

pub(super) fn compose() -> Value {
    serde_yaml_ng::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("service {name}"))
}

/// A service's environment as Compose gives it: its `env_file`s in order,
/// then the inline `environment:` (which wins).
pub(super) fn env(compose: &Value, name: &str) -> serde_json::Map<String, Value> {
    let service = service(compose, name);
    let files: Vec<&str> = match &service["env_file"] {
        Value::Null => vec![],
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        other => panic!("{name}: env_file as a path or a list: {other}"),
    };
    let mut env = serde_json::Map::new();
    for file in files {
        for (key, value) in super::env_file(file) {
            env.insert(key, Value::String(value));
        }
    }
    if let Some(inline) = service["environment"].as_object() {
        env.extend(inline.clone());
    }
    assert!(!env.is_empty(), "{name}: has an environment");
    env
}

fn env_str(compose: &Value, name: &str, key: &str) -> String {
    env(compose, name)
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{name}: {key}"))
        .to_string()
}

/// `(repository path, container path)` of every bind mount of a service.
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| match v {
            Value::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next()?;
                let target = parts.next()?;
                source
                    .starts_with("./")
                    .then(|| (source.to_string(), target.to_string()))
            }
            long => (long["type"] == "bind").then(|| {
                (
                    long["source"].as_str().unwrap().to_string(),
                    long["target"].as_str().unwrap().to_string(),
                )
            }),
        })
        .collect()
}

/// Files scripts/make-certs writes: mounted, but not in the repository.
const GENERATED_CERT_FILES: &[&str] = &["ca.pem", "server.pem", "server-key.pem"];

#[test]
fn compose_images_are_pinned_and_every_service_has_a_health_check() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    assert_eq!(
        services.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "keycloak",
            "keycloak-admin-console",
            "nginx",
            "postgres",
            "voxgate",
            "voxgate-migrate"
        ])
    );
    for (name, s) in services {
        if s["restart"] == "no" {
            // A one-shot job: it runs to completion, nothing to check.
            continue;
        }
        match s["image"].as_str() {
            Some(image) if s.get("build").is_none() => {
                let (_, tag) = image
                    .rsplit_once(':')
                    .unwrap_or_else(|| panic!("{name}: image {image} has no tag"));
                assert!(
                    tag.chars().next().is_some_and(|c| c.is_ascii_digit()),
                    "{name}: {image} is pinned to a version, not `{tag}`"
                );
                assert!(!tag.contains("latest"), "{name}: {image}");
            }
            _ => assert!(
                s["build"] == "." || (name == "keycloak" && s["build"] == "./keycloak"),
                "{name} is built from a Dockerfile in the repository"
            ),
        }
        let test = &s["healthcheck"]["test"];
        assert!(
            test.as_array().is_some_and(|t| t.len() >= 2),
            "{name} has a health check"
        );
    }
    // Keycloak: the official image, the same version as the tests run
    // (scripts/keycloak), built with its build-time options and started
    // with `start --optimized`, which refuses options that differ from
    // the build.
    let version = pinned_keycloak_version();
    let dockerfile = read("keycloak/Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "a build stage and the runtime image");
    for from in froms {
        assert!(
            from.starts_with(&format!("quay.io/keycloak/keycloak:{version}")),
            "{from}"
        );
    }
    let build = read("keycloak/build.env");
    for option in ["KC_DB=postgres", "KC_HEALTH_ENABLED=true"] {
        assert!(build.contains(option), "built with {option}");
    }
    assert!(dockerfile.contains("COPY build.env "));
    assert!(dockerfile.contains("kc.sh build"));
    assert_eq!(
        service(&compose, "keycloak")["image"].as_str().unwrap(),
        format!("voxgate-keycloak:{version}")
    );
    let command = service(&compose, "keycloak")["command"].to_string();
    assert!(
        command.contains("\"start\"") && command.contains("--optimized"),
        "{command}"
    );
    let keycloak_env = env(&compose, "keycloak");
    for build_time in ["KC_DB", "KC_HEALTH_ENABLED", "KC_CACHE"] {
        assert!(
            !keycloak_env.contains_key(build_time),
            "{build_time} is a build-time option: set in keycloak/Dockerfile"
        );
    }
    let keycloak_check = service(&compose, "keycloak")["healthcheck"]["test"].to_string();
    assert!(
        keycloak_check.contains("/dev/tcp/127.0.0.1/9000") && !keycloak_check.contains("curl"),
        "Keycloak's health is read on the management port without curl: {keycloak_check}"
    );
    let voxgate_check = service(&compose, "voxgate")["healthcheck"]["test"].to_string();
    assert!(voxgate_check.contains("/readyz"), "{voxgate_check}");
    let postgres_check = service(&compose, "postgres")["healthcheck"]["test"].to_string();
    assert!(postgres_check.contains("pg_isready"), "{postgres_check}");

    for dependent in ["keycloak", "voxgate"] {
        assert_eq!(
            service(&compose, dependent)["depends_on"]["postgres"]["condition"],
            "service_healthy",
            "{dependent} waits for Postgres"
        );
    }
    assert_eq!(
        service(&compose, "voxgate")["depends_on"]["keycloak"]["condition"],
        "service_healthy"
    );
}

#[test]
fn compose_mounts_and_ports_point_at_real_files_and_loopback_only() {
    let compose = compose();
    for (name, s) in compose["services"].as_object().unwrap() {
        for (source, target) in bind_mounts(s) {
            let path = repo(source.trim_start_matches("./"));
            let generated = source.starts_with("./nginx/certs/")
                && GENERATED_CERT_FILES.iter().any(|f| source.ends_with(f));
            if generated {
                assert!(
                    path.parent().unwrap().is_dir(),
                    "{name}: {source} is made by scripts/make-certs into an existing directory"
                );
            } else {
                assert!(path.exists(), "{name}: mount source {source} exists");
            }
            assert!(target.starts_with('/'), "{name}: {target}");
        }
        for port in s["ports"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let port = port.as_str().expect("ports as strings");
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name}: {port} is published on loopback only (dev secrets)"
            );
        }
    }
    let keycloak = bind_mounts(service(&compose, "keycloak"));
    assert!(keycloak.contains(&(
        "./keycloak-realm".to_string(),
        "/opt/keycloak/data/import".to_string()
    )));
    let command = service(&compose, "keycloak")["command"].to_string();
    assert!(command.contains("--import-realm"), "{command}");
    let nginx: BTreeMap<_, _> = bind_mounts(service(&compose, "nginx"))
        .into_iter()
        .map(|(s, t)| (t, s))
        .collect();
    assert_eq!(nginx["/etc/nginx/nginx.conf"], "./nginx/nginx.conf");
    assert_eq!(nginx["/etc/nginx/templates"], "./nginx/templates");
    assert_eq!(nginx["/etc/nginx/snippets"], "./nginx/snippets");
    assert_eq!(nginx["/etc/nginx/certs"], "./nginx/certs");
    let postgres = bind_mounts(service(&compose, "postgres"));
    assert!(
        postgres
            .iter()
            .any(|(_, t)| t.starts_with("/docker-entrypoint-initdb.d/")),
        "an init script creates Keycloak's database"
    );
    assert!(read("scripts/postgres-init-keycloak.sql").contains("CREATE DATABASE keycloak"));
    // voxgate serves as a role that cannot change the schema; the owner
    // migrates first, in a one-shot.
    assert!(
        postgres
            .iter()
            .any(|(s, _)| s == "./scripts/postgres-init-voxgate-app.sql"),
        "the init scripts create voxgate's runtime role"
    );
    let serve_url = env_str(&compose, "voxgate", "DATABASE_URL");
    assert!(
        serve_url.starts_with("postgres://voxgate_app:"),
        "{serve_url}"
    );
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_DATABASE_MIGRATE"),
        "false"
    );
    let migrate_url = env_str(&compose, "voxgate-migrate", "DATABASE_URL");
    assert!(
        migrate_url.starts_with("postgres://voxgate:"),
        "{migrate_url}"
    );
    assert_eq!(
        service(&compose, "voxgate-migrate")["command"][0],
        "migrate"
    );
    assert_eq!(
        service(&compose, "voxgate")["depends_on"]["voxgate-migrate"]["condition"],
        "service_completed_successfully"
    );
}

#[test]
fn compose_gives_voxgate_only_settings_it_reads() {
    // Standard AWS variables read by the SDK's credential chain.
    const AWS: &[&str] = &[
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_POLLY",
    ];
    let compose = compose();
    let known: BTreeSet<&str> = voxgate::config::SETTINGS
        .iter()
        .map(|s| s.env)
        .chain(AWS.iter().copied())
        .collect();
    let names = env(&compose, "voxgate");
    for name in names.keys() {
        assert!(
            known.contains(name.as_str()),
            "{name} is not a setting voxgate reads"
        );
    }
    for required in [
        "DATABASE_URL",
        "VOXGATE_PUBLIC_URL",
        "VOXGATE_TRUSTED_PROXIES",
        "VOXGATE_OIDC_ISSUER",
        "VOXGATE_OIDC_DISCOVERY_URL",
        "VOXGATE_OIDC_CLIENT_SECRET",
        "VOXGATE_KEYCLOAK_URL",
        "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET",
    ] {
        assert!(names.contains_key(required), "voxgate gets {required}");
    }
    assert_eq!(env_str(&compose, "voxgate", "VOXGATE_TTS_ENGINE"), "auto");
    for aws in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            names[aws].is_null(),
            "{aws} is passed through from the shell, never set to a value here"
        );
    }
}

#[test]
fn compose_wiring_agrees_between_nginx_keycloak_voxgate_and_the_realm() {
    let compose = compose();
    let public_host = env_str(&compose, "nginx", "NGINX_PUBLIC_HOST");
    // A development stack must not pin a developer's browser to https for
    // every localhost port.
    assert_eq!(env_str(&compose, "nginx", "NGINX_HSTS_MAX_AGE"), "0");
    let public_url = env_str(&compose, "voxgate", "VOXGATE_PUBLIC_URL");
    assert_eq!(public_url, format!("https://{public_host}"));
    assert_eq!(
        env_str(&compose, "keycloak", "KC_HOSTNAME"),
        public_url,
        "Keycloak's pinned hostname is the public origin"
    );
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_OIDC_ISSUER"),
        format!("{public_url}/realms/voxgate")
    );
    let https_port = env_str(&compose, "nginx", "NGINX_HTTPS_PORT");
    assert!(public_host.ends_with(&format!(":{https_port}")));
    // voxgate has a network of its own (a restarted nginx must not take
    // it along) and is reached by name; nginx looks names up again while it
    // runs, so recreated containers are found.
    assert!(service(&compose, "voxgate").get("network_mode").is_none());
    assert!(
        service(&compose, "voxgate").get("ports").is_none(),
        "voxgate is not published"
    );
    let bind = env_str(&compose, "voxgate", "VOXGATE_BIND");
    let port = bind.rsplit(':').next().unwrap();
    assert_eq!(bind, format!("0.0.0.0:{port}"));
    let servers = env_str(&compose, "nginx", "NGINX_VOXGATE_SERVERS");
    assert!(
        servers.contains(&format!("server voxgate:{port} resolve")),
        "{servers}"
    );
    assert!(env_str(&compose, "nginx", "NGINX_KEYCLOAK_SERVER").ends_with(" resolve"));
    assert_eq!(env_str(&compose, "nginx", "NGINX_RESOLVER"), "127.0.0.11");
    assert!(
        service(&compose, "nginx").get("depends_on").is_none(),
        "nginx starts without waiting for the names it proxies to"
    );
    // The one proxy voxgate and Keycloak believe is nginx, at its fixed address.
    let nginx_ip = service(&compose, "nginx")["networks"]["backend"]["ipv4_address"]
        .as_str()
        .unwrap();
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_TRUSTED_PROXIES"),
        nginx_ip
    );
    assert_eq!(
        env_str(&compose, "keycloak", "KC_PROXY_TRUSTED_ADDRESSES"),
        format!("{nginx_ip}/32")
    );
    assert!(voxgate_check_uses_port(&compose, port));
    // The issuer stays public; discovery, keys and the admin API go inside.
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_OIDC_DISCOVERY_URL"),
        "http://keycloak:8080/realms/voxgate"
    );
    assert_eq!(
        env_str(&compose, "keycloak", "KC_HOSTNAME_BACKCHANNEL_DYNAMIC"),
        "true"
    );
    // Keycloak's logouts reach voxgate through nginx's unpublished
    // back-channel listener, named in the realm file's placeholder.
    let backchannel = env_str(&compose, "nginx", "NGINX_BACKCHANNEL_PORT");
    assert_eq!(
        env_str(&compose, "keycloak", "VOXGATE_BACKCHANNEL_LOGOUT_URL"),
        format!("http://nginx:{backchannel}/auth/backchannel-logout")
    );
    assert!(
        read("keycloak-realm/realm.json")
            .contains("\"backchannel.logout.url\": \"${VOXGATE_BACKCHANNEL_LOGOUT_URL:")
    );

    // As Keycloak's own import reads it: the secrets' placeholders fall
    // back to their dev-only defaults, which compose's voxgate must hold.
    let realm: Value = serde_json::from_str(&crate::stack::project_realm_text()).unwrap();
    let client = |id: &str| {
        realm["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["clientId"] == id)
            .unwrap()
            .clone()
    };
    let web = client("voxgate-web");
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_OIDC_CLIENT_SECRET"),
        web["secret"]
    );
    assert_eq!(
        env_str(&compose, "voxgate", "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET"),
        client("voxgate-admin")["secret"]
    );
    assert!(
        web["redirectUris"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == &Value::from(format!("{public_url}/*"))),
        "the realm accepts redirects to {public_url}"
    );

    // nginx gets a value for every placeholder of the template, and only
    // those (plus the image's envsubst filter).
    let placeholders = template_placeholders(&read("nginx/templates/voxgate.conf.template"));
    let given: BTreeSet<String> = env(&compose, "nginx")
        .keys()
        .filter(|k| k.as_str() != "NGINX_ENVSUBST_FILTER")
        .cloned()
        .collect();
    assert_eq!(given, placeholders);
    let ports: Vec<&str> = service(&compose, "nginx")["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for port in [https_port, env_str(&compose, "nginx", "NGINX_HTTP_PORT")] {
        assert!(
            ports.contains(&format!("127.0.0.1:{port}:{port}").as_str()),
            "nginx publishes {port} as itself (voxgate uses the same origin inside): {ports:?}"
        );
    }
}

fn voxgate_check_uses_port(compose: &Value, port: &str) -> bool {
    service(compose, "voxgate")["healthcheck"]["test"]
        .to_string()
        .contains(&format!("/dev/tcp/127.0.0.1/{port}"))
}

#[test]
fn every_nginx_placeholder_is_documented() {
    let docs = read("docs/deployment.md");
    for name in template_placeholders(&read("nginx/templates/voxgate.conf.template")) {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} in docs/deployment.md"
        );
    }
}

#[test]
fn the_dockerfile_builds_a_pinned_non_root_image_with_a_health_check() {
    let dockerfile = read("Dockerfile");
    let from: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(
        from.len(),
        3,
        "manifests, builder and runtime stages: {from:?}"
    );
    for line in &from {
        let image = line.split_whitespace().next().unwrap();
        let (_, tag) = image.rsplit_once(':').expect("tagged image");
        assert!(!tag.contains("latest"), "{image}");
    }
    assert!(from[0].starts_with("rust:") && from[0].ends_with(" AS manifests"));
    assert!(from[1].starts_with("rust:") && from[1].ends_with(" AS builder"));
    assert!(from[2].starts_with("debian:bookworm-slim"), "{}", from[2]);

    let build_lines: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.contains("cargo build"))
        .collect();
    assert_eq!(
        build_lines.len(),
        2,
        "dependencies first (stub sources), then voxgate"
    );
    for line in build_lines {
        assert!(
            line.contains("--release") && line.contains("--locked") && line.contains("-p voxgate"),
            "{line}"
        );
    }
    let runtime = &dockerfile[dockerfile.rfind("FROM ").unwrap()..];
    assert!(runtime.contains("espeak-ng") && runtime.contains("ca-certificates"));
    // The neural voice, at the versions the tests run.
    assert!(
        runtime.contains("-r /opt/piper-src/requirements.txt")
            && runtime.contains("VOXGATE_PIPER_PYTHON=/opt/piper/bin/python"),
        "the runtime image carries the pinned neural voice"
    );
    // And the recogniser, likewise.
    assert!(
        runtime.contains("-r /opt/whisper-src/requirements.txt")
            && runtime.contains("VOXGATE_WHISPER_PYTHON=/opt/whisper/bin/python"),
        "the runtime image carries the pinned speech recogniser"
    );
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as non-root: {user}"
    );
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("/readyz"));

    // Everything the builder copies is in the build context.
    let ignore = read(".dockerignore");
    let builder = &dockerfile[dockerfile.find(" AS builder").unwrap()..];
    for line in builder.lines().filter_map(|l| l.strip_prefix("COPY ")) {
        if line.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(repo(source).exists(), "COPY {source}: exists");
            let source = source.trim_end_matches('/');
            assert!(
                ignore
                    .lines()
                    .any(|l| l.trim_start_matches('!').trim_end_matches('/') == source),
                "COPY {source}: admitted by .dockerignore"
            );
        }
    }
    // Cargo reads every member's manifest, also those whose sources stay
    // out of the image: each either gets a stub source here or names its
    // targets' paths itself (a manifest that only relies on `src/lib.rs`
    // being there stops the build with "no targets specified").
    let workspace = read("Cargo.toml");
    let members = workspace
        .lines()
        .find_map(|l| l.strip_prefix("members = ["))
        .expect("the workspace lists its members");
    for member in members.trim_end_matches(']').split(',') {
        let member = member.trim().trim_matches('"');
        let stubbed = builder.contains(&format!("touch {member}/src/lib.rs"))
            || builder.contains(&format!(" {member}/src/lib.rs"));
        let manifest = read(&format!("{member}/Cargo.toml"));
        let explicit = manifest.contains("[lib]\npath =") || manifest.contains("[[bin]]");
        assert!(
            stubbed || explicit,
            "{member}: the image's dependency build needs a stub source or an explicit [lib] path"
        );
    }
    // The stub build compiles the dependencies; the second build voxgate.
    let stub = builder
        .find("touch server/src/lib.rs crates/audio/src/lib.rs")
        .unwrap();
    let sources = builder.find("COPY server/src").unwrap();
    assert!(
        stub < sources,
        "dependencies are built before the sources arrive"
    );
}

/// The Keycloak version `scripts/keycloak` fetches and the real-Keycloak
/// lane runs.
fn pinned_keycloak_version() -> String {
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/keycloak"))
            .unwrap();
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix("KEYCLOAK_VERSION="))
        .expect("scripts/keycloak pins KEYCLOAK_VERSION");
    assert!(line.starts_with("26."), "a Keycloak 26 release: {line}");
    line.to_string()
}

/// The production variant (docker-compose.production.yml over the base
/// file) never lets Keycloak import the development realm: the realm comes
/// from `voxgate realm import --profile production`, which finishes before
/// voxgate starts, and the client secrets must be given (compose refuses
/// to start without them) rather than fall back to the dev values.
#[test]
fn the_production_variant_never_imports_the_development_realm() {
    let text = read("docker-compose.production.yml");
    assert!(
        text.contains("volumes: !reset []"),
        "Keycloak's realm mount is removed, not merged with the base file's"
    );
    // serde's JSON values have no YAML tags; the reset is checked above.
    let production: Value = serde_yaml_ng::from_str(&text.replace("!reset ", ""))
        .expect("docker-compose.production.yml is YAML");
    let keycloak = service(&production, "keycloak");
    let command = keycloak["command"].to_string();
    assert!(!command.contains("--import-realm"), "{command}");
    assert!(command.contains("--optimized"), "{command}");
    assert_eq!(keycloak["volumes"], serde_json::json!([]));

    let import = service(&production, "keycloak-realm");
    let entrypoint = import["entrypoint"].to_string();
    for part in [
        "voxgate realm import",
        "--profile production",
        "--url http://keycloak:8080",
        "VOXGATE_REALM_ADMIN_PASSWORD=",
    ] {
        assert!(entrypoint.contains(part), "{part}: {entrypoint}");
    }
    assert!(
        !entrypoint.contains("--admin-password"),
        "the password stays out of the command line"
    );
    for (source, _) in bind_mounts(import) {
        assert!(repo(source.trim_start_matches("./")).exists(), "{source}");
    }
    assert_eq!(
        import["depends_on"]["keycloak"]["condition"],
        "service_healthy"
    );
    let voxgate = service(&production, "voxgate");
    assert_eq!(
        voxgate["depends_on"]["keycloak-realm"]["condition"],
        "service_completed_successfully"
    );
    for service in [import, voxgate] {
        for secret in [
            "VOXGATE_OIDC_CLIENT_SECRET",
            "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET",
        ] {
            let value = service["environment"][secret].as_str().unwrap_or_default();
            assert!(
                value.starts_with(&format!("${{{secret}:?")),
                "{secret} is required, never defaulted: {value}"
            );
        }
    }
    // Where the operator puts them: a file git never takes.
    let example = read("deploy/production.env.example");
    for secret in [
        "VOXGATE_OIDC_CLIENT_SECRET=",
        "VOXGATE_KEYCLOAK_ADMIN_CLIENT_SECRET=",
    ] {
        let line = example
            .lines()
            .find(|l| l.starts_with(secret))
            .unwrap_or_else(|| panic!("{secret} in the example"));
        assert_eq!(line, secret, "the example holds no value");
    }
    assert!(read(".gitignore").lines().any(|l| l == "/.env"));
}
