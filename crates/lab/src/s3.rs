//! The S3 implementations voxgate's audio bucket is tested and measured
//! against, written by others and run here: moto's S3 server (PyPI) and
//! S3Proxy (Maven Central), both installed by `scripts/lib.sh`
//! (`ensure_moto`, `ensure_s3proxy`). What each needs to start on a local
//! port, and voxgate's settings to use it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bucket the tests and the benchmark use.
pub const BUCKET: &str = "voxgate-audio";
/// Dev-only credentials of the local S3 servers (moto takes any).
pub const KEY_ID: &str = "voxgate-dev-only-key";
pub const SECRET: &str = "voxgate-dev-only-secret";
pub const REGION: &str = "us-east-1";
/// The S3Proxy release `scripts/lib.sh` fetches (`S3PROXY_VERSION` there).
pub const S3PROXY_VERSION: &str = "2.6.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Moto,
    S3Proxy,
}

impl Store {
    pub const ALL: [Store; 2] = [Store::Moto, Store::S3Proxy];

    pub fn name(self) -> &'static str {
        match self {
            Store::Moto => "moto",
            Store::S3Proxy => "s3proxy",
        }
    }

    /// The installed program (moto's `moto_server`) or jar (S3Proxy): from
    /// `VOXGATE_MOTO_SERVER` / `VOXGATE_S3PROXY_JAR`, else `.local/` under
    /// `root` where the scripts put them.
    pub fn installed(self, root: &Path) -> anyhow::Result<PathBuf> {
        let (variable, default) = match self {
            Store::Moto => (
                "VOXGATE_MOTO_SERVER",
                root.join(".local/moto/bin/moto_server"),
            ),
            Store::S3Proxy => (
                "VOXGATE_S3PROXY_JAR",
                root.join(format!(
                    ".local/s3proxy/s3proxy-{S3PROXY_VERSION}-jar-with-dependencies.jar"
                )),
            ),
        };
        let path = std::env::var_os(variable)
            .map(PathBuf::from)
            .unwrap_or(default);
        anyhow::ensure!(
            path.exists(),
            "{} is not installed at {}: run scripts/test (or set {variable})",
            self.name(),
            path.display()
        );
        Ok(path)
    }

    /// The command that serves S3 on 127.0.0.1:`port`, keeping what it
    /// needs in `dir` (S3Proxy's properties; both keep objects in memory).
    pub fn command(self, root: &Path, port: u16, dir: &Path) -> anyhow::Result<Command> {
        let installed = self.installed(root)?;
        Ok(match self {
            Store::Moto => {
                let mut command = Command::new(installed);
                command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                command
            }
            Store::S3Proxy => {
                let properties = dir.join("s3proxy.properties");
                std::fs::write(
                    &properties,
                    format!(
                        "s3proxy.endpoint=http://127.0.0.1:{port}\n\
                         s3proxy.authorization=aws-v2-or-v4\n\
                         s3proxy.identity={KEY_ID}\n\
                         s3proxy.credential={SECRET}\n\
                         jclouds.provider=transient\n\
                         jclouds.identity={KEY_ID}\n\
                         jclouds.credential={SECRET}\n"
                    ),
                )?;
                let mut command = Command::new("java");
                command
                    .arg("-jar")
                    .arg(installed)
                    .arg("--properties")
                    .arg(properties);
                command
            }
        })
    }
}

/// An S3 client for the local server at `endpoint`, to make the bucket and
/// look into it. Checksums only where S3 requires them: S3Proxy refuses
/// the headers the SDK adds by default.
pub fn client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(KEY_ID, SECRET, None, None, "voxgate-lab"))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// voxgate's settings for the bucket at `endpoint`.
pub fn voxgate_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("VOXGATE_AUDIO_BUCKET", BUCKET.into()),
        ("VOXGATE_AUDIO_BUCKET_ENDPOINT_URL", endpoint.into()),
        ("VOXGATE_AUDIO_BUCKET_REGION", REGION.into()),
        ("VOXGATE_AUDIO_BUCKET_PATH_STYLE", "true".into()),
        ("VOXGATE_AUDIO_BUCKET_ACCESS_KEY_ID", KEY_ID.into()),
        ("VOXGATE_AUDIO_BUCKET_SECRET_ACCESS_KEY", SECRET.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3proxy_version_is_the_one_the_scripts_fetch() {
        let lib = std::fs::read_to_string(crate::repo_root().join("scripts/lib.sh")).unwrap();
        assert!(
            lib.lines()
                .any(|l| l == format!("S3PROXY_VERSION={S3PROXY_VERSION}")),
            "scripts/lib.sh fetches another S3Proxy than {S3PROXY_VERSION}"
        );
    }
}
