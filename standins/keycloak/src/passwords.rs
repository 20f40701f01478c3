//! Password credentials: PBKDF2 hashes in Keycloak's stored form, so exported realms with
//! `secretData`/`credentialData` verify and state files never hold plain-text passwords.

use aws_lc_rs::pbkdf2;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

/// Kept low: this server exists for tests, where thousands of hashes per run are common.
const OWN_ITERATIONS: u32 = 1000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PasswordHash {
    pub algorithm: String,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

fn alg_for(name: &str) -> Option<(pbkdf2::Algorithm, usize)> {
    match name {
        "pbkdf2-sha256" => Some((pbkdf2::PBKDF2_HMAC_SHA256, 32)),
        "pbkdf2-sha512" => Some((pbkdf2::PBKDF2_HMAC_SHA512, 64)),
        "pbkdf2" => Some((pbkdf2::PBKDF2_HMAC_SHA1, 20)),
        _ => None,
    }
}

impl PasswordHash {
    pub fn create(password: &str) -> PasswordHash {
        let salt: [u8; 16] = rand::random();
        let mut hash = vec![0u8; 32];
        let iterations = NonZeroU32::new(OWN_ITERATIONS).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        PasswordHash {
            algorithm: "pbkdf2-sha256".into(),
            iterations: OWN_ITERATIONS,
            salt: salt.to_vec(),
            hash,
        }
    }

    /// From an exported credential's `secretData` / `credentialData` JSON strings.
    pub fn from_keycloak_export(secret_data: &str, credential_data: &str) -> Option<PasswordHash> {
        let secret: serde_json::Value = serde_json::from_str(secret_data).ok()?;
        let cred: serde_json::Value = serde_json::from_str(credential_data).ok()?;
        let hash = STANDARD.decode(secret.get("value")?.as_str()?).ok()?;
        let salt = STANDARD.decode(secret.get("salt")?.as_str()?).ok()?;
        let iterations = u32::try_from(cred.get("hashIterations")?.as_i64()?).ok()?;
        let algorithm = cred.get("algorithm")?.as_str()?.to_string();
        alg_for(&algorithm)?;
        Some(PasswordHash {
            algorithm,
            iterations,
            salt,
            hash,
        })
    }

    pub fn verify(&self, password: &str) -> bool {
        let Some((alg, _)) = alg_for(&self.algorithm) else {
            return false;
        };
        let Some(iterations) = NonZeroU32::new(self.iterations) else {
            return false;
        };
        pbkdf2::verify(alg, iterations, &self.salt, password.as_bytes(), &self.hash).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_hash_verifies_only_the_right_password() {
        let h = PasswordHash::create("s3cret");
        assert!(h.verify("s3cret"));
        assert!(!h.verify("other"));
    }
}
