//! `${NAME}` and `${NAME:default}` in a realm file, resolved as Keycloak's
//! `--import-realm` resolves them (its `StringPropertyReplacer`): the
//! variable's value, else the text after the first colon, else the
//! reference stays as written. One realm file then serves every
//! environment: the compose stack's Keycloak, `voxgate realm import` and the
//! stand-in read the same per-environment values from their environment.

/// Replaces every `${NAME}` / `${NAME:default}` using `lookup`.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) if !name.is_empty() => (name, Some(default)),
            _ => (inner, None),
        };
        match lookup(name).or_else(|| default.map(str::to_string)) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[at..at + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// From the process environment, as `kc.sh` and `voxgate realm import` do.
pub fn from_env(text: &str) -> String {
    substitute(text, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_string())
    }

    #[test]
    fn values_defaults_and_unknown_references() {
        assert_eq!(substitute("a ${SET} b", lookup), "a value b");
        assert_eq!(
            substitute("${UNSET:http://x:8080/y}", lookup),
            "http://x:8080/y"
        );
        assert_eq!(substitute("${SET:ignored}", lookup), "value");
        assert_eq!(substitute("${UNSET}", lookup), "${UNSET}");
        assert_eq!(substitute("${UNSET:}", lookup), "");
        assert_eq!(
            substitute("no refs, $ and { alone", lookup),
            "no refs, $ and { alone"
        );
        assert_eq!(substitute("open ${SET", lookup), "open ${SET");
        assert_eq!(substitute("${SET}${SET}", lookup), "valuevalue");
    }
}
