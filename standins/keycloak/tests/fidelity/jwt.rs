//! Token and key decoding for the suite: JWT header and claim bytes, Keycloak's header prefix,
//! and the kid/thumbprint derivations and RS256 validation a relying party would do.
//!
//! Everything here is done by hand (or with `jsonwebtoken`), never by the stand-in's own code,
//! so a bug in the stand-in cannot also hide in the check.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::Digest;

/// Base64url of `{"alg":"RS256","typ" : "JWT","kid" : "`. The 51st character also carries the
/// top bits of the kid's first character, so the full prefix holds for kids starting with a
/// letter or `_` (as in every captured token); the first 48 characters hold for any kid.
pub const HEADER_PREFIX: &str = "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJ";

pub fn has_keycloak_header_prefix(token: &str) -> bool {
    let kid_first = jwt_header(token)["kid"]
        .as_str()
        .and_then(|k| k.chars().next())
        .unwrap_or('A');
    if kid_first.is_ascii_alphabetic() || kid_first == '_' {
        token.starts_with(HEADER_PREFIX)
    } else {
        token.starts_with(&HEADER_PREFIX[..48])
    }
}

fn b64_json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64url")).expect("json")
}

/// The decoded JOSE header of a compact JWS.
pub fn jwt_header(token: &str) -> Value {
    b64_json(token.split('.').next().expect("header"))
}

/// The header exactly as signed: Keycloak's spacing is part of what is compared.
pub fn header_str(token: &str) -> String {
    String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("utf8")
}

pub fn claims(token: &str) -> Value {
    b64_json(token.split('.').nth(1).expect("payload"))
}

/// An object's keys in document order (serde_json keeps order), for claim-order checks.
pub fn keys_of(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

/// A string member of a JSON body, such as a token response's `access_token`.
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// SubjectPublicKeyInfo DER of an RSA key, rebuilt from the JWK's `n` and `e`.
fn spki_from_jwk(jwk: &Value) -> Vec<u8> {
    let int = |b64: &str| {
        let mut bytes = URL_SAFE_NO_PAD.decode(b64).expect("b64");
        if bytes[0] & 0x80 != 0 {
            bytes.insert(0, 0);
        }
        der(0x02, &bytes)
    };
    let rsa = der(
        0x30,
        &[
            int(jwk["n"].as_str().expect("n")),
            int(jwk["e"].as_str().expect("e")),
        ]
        .concat(),
    );
    let alg = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let bits = der(0x03, &[vec![0u8], rsa].concat());
    der(0x30, &[alg, bits].concat())
}

pub fn check_jwk_derivations(jwk: &Value) {
    let spki = spki_from_jwk(jwk);
    let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&spki));
    assert_eq!(jwk["kid"], json!(kid), "kid = b64url(SHA-256(SPKI))");
    let cert = STANDARD
        .decode(jwk["x5c"][0].as_str().expect("x5c"))
        .expect("cert b64");
    assert!(
        cert.windows(spki.len()).any(|w| w == spki.as_slice()),
        "certificate carries the key"
    );
    assert_eq!(
        jwk["x5t"],
        json!(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&cert)))
    );
    assert_eq!(
        jwk["x5t#S256"],
        json!(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&cert)))
    );
}

/// The RSA public key of a JWK, as a relying party using `jsonwebtoken` would load it.
pub fn rsa_decoding_key(jwk: &Value) -> jsonwebtoken::DecodingKey {
    jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().expect("n"),
        jwk["e"].as_str().expect("e"),
    )
    .expect("decoding key")
}

pub fn rs256_validate(token: &str, jwks: &Value, audience: Option<&str>, issuer: &str) -> Value {
    let kid = jwt_header(token)["kid"].as_str().expect("kid").to_string();
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == json!(kid) && k["use"] == json!("sig"))
        .expect("signing key for kid");
    let key = rsa_decoding_key(jwk);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    match audience {
        Some(a) => validation.set_audience(&[a]),
        None => validation.validate_aud = false,
    }
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("token validates")
        .claims
}
