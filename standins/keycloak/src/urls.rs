//! Redirect-URI and origin matching with Keycloak's wildcard rules, and redirect building.

/// Keycloak's rule: exact match, or prefix match for entries ending in `*` (`*` alone = any).
pub fn matches_any(allowed: &[String], uri: &str) -> bool {
    if uri.is_empty() || url::Url::parse(uri).is_err() {
        return false;
    }
    allowed.iter().any(|pattern| {
        if pattern == "*" {
            true
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            uri.starts_with(prefix)
        } else {
            pattern == uri
        }
    })
}

/// `scheme://host[:port]` of an absolute URL (wildcards stripped first).
pub fn origin_of(uri: &str) -> Option<String> {
    let cleaned = uri.trim_end_matches('*');
    let parsed = url::Url::parse(cleaned).ok()?;
    match parsed.origin() {
        url::Origin::Tuple(..) => Some(parsed.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn query_string(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Appends parameters to a redirect URI in query or fragment form.
pub fn append_params(base: &str, params: &[(&str, String)], fragment: bool) -> String {
    let qs = query_string(params);
    if qs.is_empty() {
        return base.to_string();
    }
    if fragment {
        let sep = if base.contains('#') { "&" } else { "#" };
        format!("{base}{sep}{qs}")
    } else {
        let (head, frag) = match base.split_once('#') {
            Some((h, f)) => (h, Some(f)),
            None => (base, None),
        };
        let sep = if head.contains('?') { "&" } else { "?" };
        match frag {
            Some(f) => format!("{head}{sep}{qs}#{f}"),
            None => format!("{head}{sep}{qs}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_prefix_only() {
        let allowed = vec!["http://127.0.0.1:8080/*".to_string()];
        assert!(matches_any(&allowed, "http://127.0.0.1:8080/auth/callback"));
        assert!(!matches_any(
            &allowed,
            "http://127.0.0.1:9090/auth/callback"
        ));
        assert!(!matches_any(&allowed, "not a url"));
    }

    #[test]
    fn params_go_into_query_or_fragment() {
        let p = [("state", "a b".to_string())];
        assert_eq!(
            append_params("http://x/cb?y=1", &p, false),
            "http://x/cb?y=1&state=a+b"
        );
        assert_eq!(
            append_params("http://x/cb", &p, true),
            "http://x/cb#state=a+b"
        );
        assert_eq!(
            origin_of("http://localhost:8080/*").as_deref(),
            Some("http://localhost:8080")
        );
    }
}
