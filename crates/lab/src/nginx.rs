//! The shipped nginx files (`nginx/`) rendered the way the nginx Docker
//! image renders them (envsubst of `templates/*.template` into `conf.d/`),
//! for local ports, and nginx run in the foreground on them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where the rendered nginx listens and what it proxies to.
pub struct Ports<'a> {
    pub https: u16,
    /// The plain-HTTP listener that redirects to https.
    pub http_redirect: u16,
    /// The internal listener Keycloak's back-channel logout calls.
    pub backchannel: u16,
    /// voxgate's instances: `127.0.0.1:PORT` or `unix:/path`.
    pub upstreams: &'a [String],
    /// Keycloak (or the stand-in): `127.0.0.1:PORT`.
    pub keycloak: &'a str,
    /// The directory holding `server.pem`, `server-key.pem` and `ca.pem`.
    pub certs: &'a Path,
}

/// A value for every placeholder of the template, for `ports`.
pub fn vars(ports: &Ports<'_>) -> BTreeMap<String, String> {
    let cert = |name: &str| ports.certs.join(name).display().to_string();
    let https = format!("127.0.0.1:{}", ports.https);
    [
        (
            "NGINX_HTTP_PORT",
            format!("127.0.0.1:{}", ports.http_redirect),
        ),
        ("NGINX_HTTPS_PORT", https.clone()),
        ("NGINX_SERVER_NAME", "localhost 127.0.0.1".to_string()),
        ("NGINX_PUBLIC_HOST", https),
        ("NGINX_SSL_CERT", cert("server.pem")),
        ("NGINX_SSL_KEY", cert("server-key.pem")),
        ("NGINX_SSL_TRUSTED_CA", cert("ca.pem")),
        ("NGINX_OCSP_STAPLING", "off".to_string()),
        (
            "NGINX_VOXGATE_SERVERS",
            ports
                .upstreams
                .iter()
                .map(|a| format!("server {a} max_fails=3 fail_timeout=10s;"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("NGINX_KEYCLOAK_SERVER", ports.keycloak.to_string()),
        ("NGINX_CREDENTIALS_RATE", "20r/m".to_string()),
        // Production's value; the dev compose file sets 0.
        ("NGINX_HSTS_MAX_AGE", "63072000".to_string()),
        // voxgate's instances; a test's "client from elsewhere" binds
        // 127.0.0.2.
        ("NGINX_CREDENTIALS_EXEMPT", "127.0.0.1/32 1;".to_string()),
        // No name to look up here; compose uses Docker's DNS.
        ("NGINX_RESOLVER", "127.0.0.1".to_string()),
        (
            "NGINX_BACKCHANNEL_PORT",
            format!("127.0.0.1:{}", ports.backchannel),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The `${NGINX_*}` placeholders of a template.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let end = after.find('}').unwrap_or(after.len());
        let name = after[..end].to_string();
        if !found.contains(&name) {
            found.push(name);
        }
        rest = &after[end..];
    }
    found
}

/// Renders the repository's `nginx/` (at `root`) into `dir` (emptied
/// first) with `vars`, plus `extra` as `conf.d/extra.conf` when given;
/// fails on a placeholder `vars` does not fill. Returns the main
/// configuration file.
pub fn render(
    root: &Path,
    dir: &Path,
    vars: &BTreeMap<String, String>,
    extra: Option<&str>,
) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir.join("conf.d"))?;
    std::fs::create_dir_all(dir.join("snippets"))?;
    std::fs::copy(root.join("nginx/nginx.conf"), dir.join("nginx.conf"))?;
    for entry in std::fs::read_dir(root.join("nginx/snippets"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.join("snippets").join(entry.file_name()))?;
    }
    let path = root.join("nginx/templates/voxgate.conf.template");
    let template =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut rendered = template.clone();
    for name in placeholders(&template) {
        let Some(value) = vars.get(&name) else {
            bail!("the nginx template has a placeholder with no value here: {name}");
        };
        rendered = rendered.replace(&format!("${{{name}}}"), value);
    }
    std::fs::write(dir.join("conf.d/voxgate.conf"), rendered)?;
    if let Some(extra) = extra {
        std::fs::write(dir.join("conf.d/extra.conf"), extra)?;
    }
    Ok(dir.join("nginx.conf"))
}

/// nginx in the foreground on the configuration rendered into `dir`, its
/// error log at `error_log`. Add `-t` to check the configuration instead.
pub fn command(dir: &Path, error_log: &Path) -> Command {
    let mut cmd = Command::new("nginx");
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(error_log)
        .arg("-g")
        .arg(globals(dir));
    cmd
}

/// Main-context directives for the command line: foreground, a private
/// pid file, Debian's unprivileged user for the workers when run as root.
pub fn globals(dir: &Path) -> String {
    let mut g = format!("daemon off; pid {};", dir.join("nginx.pid").display());
    if worker_uid().is_some() {
        g.push_str(" user www-data;");
    }
    g
}

/// www-data's user id when nginx's workers run as www-data (run as root
/// and the user exists); `None` when they run as the caller's own user.
pub fn worker_uid() -> Option<u32> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let uid = passwd
        .lines()
        .find_map(|l| l.strip_prefix("www-data:"))?
        .split(':')
        .nth(1)?
        .parse()
        .ok()?;
    root.then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_of_the_shipped_template_has_a_value() {
        let root = crate::repo_root();
        let template =
            std::fs::read_to_string(root.join("nginx/templates/voxgate.conf.template")).unwrap();
        let ports = Ports {
            https: 1,
            http_redirect: 2,
            backchannel: 3,
            upstreams: &["127.0.0.1:4".to_string()],
            keycloak: "127.0.0.1:5",
            certs: Path::new("/certs"),
        };
        let vars = vars(&ports);
        let missing: Vec<_> = placeholders(&template)
            .into_iter()
            .filter(|p| !vars.contains_key(p))
            .collect();
        assert!(missing.is_empty(), "no value for {missing:?}");
    }

    #[test]
    fn rendering_refuses_a_placeholder_without_a_value() {
        let dir = std::env::temp_dir().join(format!("voxgate-lab-{}", std::process::id()));
        let err = render(&crate::repo_root(), &dir, &BTreeMap::new(), None).unwrap_err();
        assert!(err.to_string().contains("NGINX_"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
