//! Realm key material: the RS256 signing key(s), the RSA-OAEP encryption key, the HS512
//! refresh-token key, their JWKS form, and compact-JWS signing/verification.
//!
//! Header bytes are written by hand because Keycloak's `JWSBuilder` concatenates strings
//! (`{"alg":"RS256","typ" : "JWT","kid" : "…"}`), which no JSON encoder reproduces.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use aws_lc_rs::{hmac, signature};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha1::Digest as _;

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(bytes).to_vec()
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredRsaKey {
    pkcs8: String,
    cert: String,
    created_ms: i64,
}

/// An RSA key with its self-signed certificate, as Keycloak's `rsa-generated` provider keeps it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "StoredRsaKey", into = "StoredRsaKey")]
pub struct RsaKey {
    pair: Arc<KeyPair>,
    pkcs8: Vec<u8>,
    pub kid: String,
    pub cert_der: Vec<u8>,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub created_ms: i64,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").field("kid", &self.kid).finish()
    }
}

impl From<RsaKey> for StoredRsaKey {
    fn from(k: RsaKey) -> Self {
        StoredRsaKey {
            pkcs8: STANDARD.encode(&k.pkcs8),
            cert: STANDARD.encode(&k.cert_der),
            created_ms: k.created_ms,
        }
    }
}

impl TryFrom<StoredRsaKey> for RsaKey {
    type Error = anyhow::Error;
    fn try_from(s: StoredRsaKey) -> anyhow::Result<Self> {
        let pkcs8 = STANDARD.decode(&s.pkcs8)?;
        let cert = STANDARD.decode(&s.cert)?;
        RsaKey::from_parts(pkcs8, Some(cert), s.created_ms, "")
    }
}

impl RsaKey {
    pub fn generate(realm: &str) -> anyhow::Result<RsaKey> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow!("RSA key generation failed"))?;
        let pkcs8 = pair
            .as_der()
            .map_err(|_| anyhow!("PKCS#8 encoding failed"))?
            .as_ref()
            .to_vec();
        RsaKey::from_parts(pkcs8, None, crate::model::now_ms(), realm)
    }

    fn from_parts(
        pkcs8: Vec<u8>,
        cert: Option<Vec<u8>>,
        created_ms: i64,
        realm: &str,
    ) -> anyhow::Result<RsaKey> {
        let pair = KeyPair::from_pkcs8(&pkcs8).map_err(|e| anyhow!("invalid RSA key: {e}"))?;
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| anyhow!("SPKI encoding failed"))?
            .as_ref()
            .to_vec();
        let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let cert_der = match cert {
            Some(c) => c,
            None => self_signed_cert(&pkcs8, realm, created_ms)?,
        };
        Ok(RsaKey {
            kid: b64url(&sha256(&spki)),
            n: strip_leading_zeros(&components.n),
            e: strip_leading_zeros(&components.e),
            pair: Arc::new(pair),
            pkcs8,
            cert_der,
            created_ms,
        })
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self
            .pair
            .sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
        {
            Ok(()) => sig,
            // Signing with a valid in-memory key cannot fail short of an allocator failure;
            // an empty signature simply never verifies.
            Err(_) => Vec::new(),
        }
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let public = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.pair.public_key().as_ref(),
        );
        public.verify(msg, sig).is_ok()
    }

    /// JWK in Keycloak's key order: `kid, kty, alg, use, n, e, x5c, x5t, x5t#S256`.
    pub fn jwk(&self, alg: &str, use_: &str) -> Value {
        json!({
            "kid": self.kid,
            "kty": "RSA",
            "alg": alg,
            "use": use_,
            "n": b64url(&self.n),
            "e": b64url(&self.e),
            "x5c": [STANDARD.encode(&self.cert_der)],
            "x5t": b64url(&sha1::Sha1::digest(&self.cert_der)),
            "x5t#S256": b64url(&sha256(&self.cert_der)),
        })
    }

    pub fn public_key_b64(&self) -> String {
        match self.pair.public_key().as_der() {
            Ok(der) => STANDARD.encode(der.as_ref()),
            Err(_) => String::new(),
        }
    }
}

fn self_signed_cert(pkcs8: &[u8], realm: &str, created_ms: i64) -> anyhow::Result<Vec<u8>> {
    let key = rcgen::KeyPair::try_from(pkcs8).context("loading key for certificate")?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, realm);
    params.distinguished_name = dn;
    let serial = strip_leading_zeros(&(created_ms.max(1) as u64).to_be_bytes());
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now
        .replace_year(now.year() + 10)
        .unwrap_or(now + time::Duration::days(3652));
    let cert = params
        .self_signed(&key)
        .context("self-signing certificate")?;
    Ok(cert.der().to_vec())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HmacKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl HmacKey {
    pub fn generate() -> HmacKey {
        let secret: [u8; 64] = rand::random();
        HmacKey {
            kid: crate::model::new_id(),
            secret: secret.to_vec(),
        }
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA512, &self.secret)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RealmKeys {
    /// Index 0 is the active key; later entries are passive keys still published in JWKS.
    pub signing: Vec<RsaKey>,
    pub encryption: RsaKey,
    pub hmac: HmacKey,
}

impl RealmKeys {
    pub fn generate(realm: &str) -> anyhow::Result<RealmKeys> {
        Ok(RealmKeys {
            signing: vec![RsaKey::generate(realm)?],
            encryption: RsaKey::generate(realm)?,
            hmac: HmacKey::generate(),
        })
    }

    pub fn active(&self) -> Option<&RsaKey> {
        self.signing.first()
    }

    pub fn jwks(&self) -> Value {
        let mut keys: Vec<Value> = self.signing.iter().map(|k| k.jwk("RS256", "sig")).collect();
        keys.push(self.encryption.jwk("RSA-OAEP", "enc"));
        json!({ "keys": keys })
    }

    pub fn rotate(&mut self, realm: &str) -> anyhow::Result<()> {
        let key = RsaKey::generate(realm)?;
        self.signing.insert(0, key);
        Ok(())
    }

    pub fn retire_old(&mut self) {
        self.signing.truncate(1);
    }

    /// Signs `payload` with the active RSA key using Keycloak's header layout.
    pub fn sign_rs256(&self, typ: &str, payload: &Value) -> String {
        match self.active() {
            Some(key) => {
                let header = format!(r#"{{"alg":"RS256","typ" : "{typ}","kid" : "{}"}}"#, key.kid);
                sign_with(key, &header, payload)
            }
            None => String::new(),
        }
    }

    pub fn sign_hs512(&self, payload: &Value) -> String {
        let header = format!(
            r#"{{"alg":"HS512","typ" : "JWT","kid" : "{}"}}"#,
            self.hmac.kid
        );
        let input = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(payload.to_string().as_bytes())
        );
        let tag = hmac::sign(&self.hmac.key(), input.as_bytes());
        format!("{input}.{}", b64url(tag.as_ref()))
    }

    /// Verifies a compact JWS signed by this realm (any published RSA key or the HMAC key).
    pub fn verify(&self, token: &str) -> Option<Verified> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&b64url_decode(h)?).ok()?;
        let sig = b64url_decode(s)?;
        let input = format!("{h}.{p}");
        let alg = header.get("alg")?.as_str()?;
        let kid = header.get("kid").and_then(Value::as_str);
        let ok = match alg {
            "RS256" => self
                .signing
                .iter()
                .filter(|k| kid.is_none_or(|kid| kid == k.kid))
                .any(|k| k.verify(input.as_bytes(), &sig)),
            "HS512" => {
                kid.is_none_or(|kid| kid == self.hmac.kid)
                    && hmac::verify(&self.hmac.key(), input.as_bytes(), &sig).is_ok()
            }
            _ => false,
        };
        if !ok {
            return None;
        }
        let claims: Value = serde_json::from_slice(&b64url_decode(p)?).ok()?;
        claims.is_object().then_some(Verified {
            alg: alg.to_string(),
            claims,
        })
    }
}

pub struct Verified {
    pub alg: String,
    pub claims: Value,
}

/// `b64(header).b64(payload).b64(RS256 signature)` with `header_json` used verbatim.
pub fn sign_with(key: &RsaKey, header_json: &str, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header_json.as_bytes()),
        b64url(payload.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

/// Unverified payload of a compact JWS (used only to route a token to its realm).
pub fn peek_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&b64url_decode(payload)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_tampering_fails() {
        let keys = RealmKeys::generate("test").expect("keys");
        let token = keys.sign_rs256("JWT", &json!({"a": 1}));
        // The first 48 characters are fixed; the next ones carry bits of the
        // kid, which is random here.
        assert!(token.starts_with("eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6"));
        assert!(keys.verify(&token).is_some());
        let refresh = keys.sign_hs512(&json!({"b": 2}));
        assert!(keys.verify(&refresh).is_some());
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(keys.verify(&tampered).is_none());
    }
}
