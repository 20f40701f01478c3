//! AWS Signature Version 4 verification for header-signed requests.
//!
//! Rebuilds the canonical request the way the AWS SDK for Rust signs it
//! (`aws-sigv4`: double-encoded path, form-decoded then re-encoded and sorted
//! query, signed headers trimmed and comma-joined, SHA-256 payload hash or
//! the `x-amz-content-sha256` value when sent) and compares HMAC-SHA256
//! signatures in constant time. Hashing and HMAC use `aws-lc-rs`.

use aws_lc_rs::{digest, hmac};
use axum::http::HeaderMap;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::errors::ApiError;

/// Characters escaped in canonical URIs and query strings: everything but
/// RFC 3986 unreserved characters, like the SDK's encoder.
const QUERY_SET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'/')
    .add(b':')
    .add(b',')
    .add(b'?')
    .add(b'#')
    .add(b'[')
    .add(b']')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'@')
    .add(b'!')
    .add(b'$')
    .add(b'&')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b'+')
    .add(b';')
    .add(b'=')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'"')
    .add(b'^')
    .add(b'`')
    .add(b'\\');
/// Paths keep their `/` separators.
const PATH_SET: &AsciiSet = &QUERY_SET.remove(b'/');

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's timestamp may be from the server's clock.
const MAX_SKEW: time::Duration = time::Duration::minutes(5);

/// The credentials and scope requests must be signed for.
#[derive(Clone, Debug)]
pub struct Verifier {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub service: String,
}

/// The parts of a request that are signed.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// Path as received (still percent-encoded once).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

struct AuthHeader<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl Verifier {
    /// Checks the request's `Authorization` header; the error is what AWS
    /// answers for that kind of failure.
    pub fn verify(&self, req: &SignedRequest<'_>, now: OffsetDateTime) -> Result<(), ApiError> {
        let Some(auth) = req.headers.get("authorization") else {
            return Err(ApiError::auth(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ));
        };
        let auth = auth.to_str().map_err(|_| {
            ApiError::auth(
                "IncompleteSignatureException",
                "Authorization header is not ASCII",
            )
        })?;
        let parsed = parse_auth_header(auth)?;

        let scope: Vec<&str> = parsed.credential.split('/').collect();
        if scope.len() != 5 || scope[4] != "aws4_request" {
            return Err(ApiError::auth(
                "IncompleteSignatureException",
                format!(
                    "Credential should be scoped to a valid region, not '{}'. Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{}'",
                    scope.get(2).unwrap_or(&""),
                    parsed.credential
                ),
            ));
        }
        let (key_id, scope_date, region, service) = (scope[0], scope[1], scope[2], scope[3]);
        if key_id != self.access_key_id {
            return Err(ApiError::auth(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
        if region != self.region {
            return Err(ApiError::auth(
                "InvalidSignatureException",
                format!(
                    "Credential should be scoped to a valid region, not '{region}'. Credential should be scoped to '{}'.",
                    self.region
                ),
            ));
        }
        if service != self.service {
            return Err(ApiError::auth(
                "InvalidSignatureException",
                format!(
                    "Credential should be scoped to correct service: '{}'. ",
                    self.service
                ),
            ));
        }

        let amz_date = req
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::auth(
                    "IncompleteSignatureException",
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                )
            })?;
        let signed_at = time::PrimitiveDateTime::parse(
            amz_date,
            format_description!("[year][month][day]T[hour][minute][second]Z"),
        )
        .map_err(|_| {
            ApiError::auth(
                "IncompleteSignatureException",
                format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'."),
            )
        })?
        .assume_utc();
        if !amz_date.starts_with(scope_date) || scope_date.len() != 8 {
            return Err(ApiError::auth(
                "InvalidSignatureException",
                format!(
                    "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{}'",
                    &amz_date[..amz_date.len().min(8)]
                ),
            ));
        }
        if signed_at < now - MAX_SKEW {
            return Err(ApiError::auth(
                "InvalidSignatureException",
                format!(
                    "Signature expired: {amz_date} is now earlier than the 5 minute allowance."
                ),
            ));
        }
        if signed_at > now + MAX_SKEW {
            return Err(ApiError::auth(
                "InvalidSignatureException",
                format!(
                    "Signature not yet current: {amz_date} is still later than the 5 minute allowance."
                ),
            ));
        }

        let signed: Vec<&str> = parsed.signed_headers.split(';').collect();
        if !signed.contains(&"host") {
            return Err(ApiError::auth(
                "InvalidSignatureException",
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }

        let payload_hash = match req
            .headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
        {
            Some(claimed) if claimed != "UNSIGNED-PAYLOAD" => {
                let actual = sha256_hex(req.body);
                if claimed != actual {
                    return Err(ApiError::auth(
                        "InvalidSignatureException",
                        "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    ));
                }
                actual
            }
            Some(unsigned) => unsigned.to_string(),
            None => sha256_hex(req.body),
        };

        let canonical = canonical_request(req, &signed, parsed.signed_headers, &payload_hash);
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope_date}/{region}/{service}/aws4_request\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let key = signing_key(&self.secret_access_key, scope_date, region, service);
        let provided = hex::decode(parsed.signature).unwrap_or_default();
        hmac::verify(&key, string_to_sign.as_bytes(), &provided).map_err(|_| {
            ApiError::auth(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
            )
        })
    }
}

fn parse_auth_header(value: &str) -> Result<AuthHeader<'_>, ApiError> {
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        let algorithm = value.split_whitespace().next().unwrap_or("");
        return Err(ApiError::auth(
            "IncompleteSignatureException",
            format!("Unsupported AWS 'algorithm': '{algorithm}'"),
        ));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let mut missing = Vec::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if v.is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) if missing.is_empty() => {
            Ok(AuthHeader {
                credential,
                signed_headers,
                signature,
            })
        }
        _ => Err(ApiError::auth(
            "IncompleteSignatureException",
            format!("{} Authorization={value}", missing.join(" ")),
        )),
    }
}

fn canonical_request(
    req: &SignedRequest<'_>,
    signed: &[&str],
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical_uri = utf8_percent_encode(path, PATH_SET).to_string();

    let mut params: Vec<(String, String)> = req
        .query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (encode_query(&form_decode(k)), encode_query(&form_decode(v)))
        })
        .collect();
    params.sort();
    let canonical_query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<String> = req
            .headers
            .get_all(*name)
            .iter()
            .map(|v| trim_all(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    format!(
        "{}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        req.method
    )
}

/// `application/x-www-form-urlencoded` decoding, as the signer parses the
/// query before re-encoding it.
fn form_decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn encode_query(s: &str) -> String {
    utf8_percent_encode(s, QUERY_SET).to_string()
}

/// Trims spaces and collapses runs of spaces, as SigV4 requires.
fn trim_all(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_space = false;
    for c in s.trim_matches(' ').chars() {
        if c == ' ' {
            if !last_space {
                out.push(c);
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, "aws4_request"] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &key);
        key = hmac::sign(&k, part.as_bytes()).as_ref().to_vec();
    }
    hmac::Key::new(hmac::HMAC_SHA256, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `get-vanilla` case from the AWS SigV4 test suite.
    #[test]
    fn aws_test_suite_get_vanilla_verifies() {
        let verifier = Verifier {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            service: "service".into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .parse()
                .unwrap(),
        );
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: None,
            headers: &headers,
            body: b"",
        };
        let now = time::macros::datetime!(2015-08-30 12:36:00 UTC);
        verifier
            .verify(&req, now)
            .expect("reference signature verifies");

        let tampered = SignedRequest {
            method: "POST",
            ..req
        };
        let err = verifier.verify(&tampered, now).unwrap_err();
        assert_eq!(err.code, "InvalidSignatureException");

        let err = verifier
            .verify(&req, now + time::Duration::hours(1))
            .unwrap_err();
        assert!(
            err.message.starts_with("Signature expired"),
            "{}",
            err.message
        );
    }

    #[test]
    fn query_is_decoded_sorted_and_reencoded() {
        let headers = HeaderMap::new();
        let req = SignedRequest {
            method: "GET",
            path: "/v1/voices",
            query: Some("LanguageCode=en-US&Engine=neural&X=a+b%2Fc"),
            headers: &headers,
            body: b"",
        };
        let c = canonical_request(&req, &[], "", "h");
        assert_eq!(
            c.lines().nth(2).unwrap(),
            "Engine=neural&LanguageCode=en-US&X=a%20b%2Fc"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(trim_all("  a   b c  "), "a b c");
    }
}
