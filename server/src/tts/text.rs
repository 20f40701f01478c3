//! Text handling before synthesis: normalisation (so equal texts share a
//! cache entry) and splitting at sentence boundaries under an engine limit.

/// Drops control characters (keeping line breaks as spaces), trims and
/// collapses runs of whitespace.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c == '\u{200b}' {
            space = !out.is_empty();
        } else if c.is_control()
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
        {
            continue;
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Splits `text` into pieces of at most `limit` characters, preferring
/// sentence ends, then other punctuation, then spaces.
pub fn split(text: &str, limit: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > limit {
        let window: String = rest.chars().take(limit).collect();
        let cut = best_cut(&window).unwrap_or(window.len());
        let (head, tail) = rest.split_at(cut);
        let head = head.trim();
        if !head.is_empty() {
            pieces.push(head.to_string());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_string());
    }
    pieces
}

/// Byte index just after the last good break in `window`.
fn best_cut(window: &str) -> Option<usize> {
    let after = |pred: &dyn Fn(char) -> bool| {
        window
            .char_indices()
            .filter(|(i, c)| {
                pred(*c) && window[i + c.len_utf8()..].starts_with(char::is_whitespace)
            })
            .map(|(i, c)| i + c.len_utf8())
            .last()
    };
    after(&|c| matches!(c, '.' | '!' | '?' | '。' | '！' | '？'))
        .or_else(|| after(&|c| matches!(c, ';' | ':' | ',')))
        .or_else(|| window.rfind(' ').filter(|i| *i > 0))
        .filter(|i| *i > 0)
}

/// The first sentence of a text (for speaking a reply before it is done).
pub fn first_sentence(text: &str) -> &str {
    let t = text.trim_start();
    for (i, c) in t.char_indices() {
        if matches!(c, '.' | '!' | '?') && t[i + 1..].starts_with(char::is_whitespace) {
            return &t[..=i];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_strips_controls_and_collapses_space() {
        assert_eq!(normalise("  Hello,\n\tworld\u{0007}!  "), "Hello, world!");
        assert_eq!(normalise("a\u{202e}b"), "ab");
        assert_eq!(normalise(""), "");
    }

    #[test]
    fn splitting_prefers_sentence_ends_and_respects_the_limit() {
        let text = "One two three. Four five six. Seven eight nine.";
        let parts = split(text, 20);
        assert_eq!(
            parts,
            ["One two three.", "Four five six.", "Seven eight nine."]
        );
        let long = "word ".repeat(1000);
        for p in split(&long, 300) {
            assert!(p.chars().count() <= 300);
        }
        assert_eq!(split(&long, 300).join(" "), long.trim());
    }

    #[test]
    fn splitting_an_unbreakable_run_cuts_it() {
        let parts = split(&"x".repeat(25), 10);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [10, 10, 5]
        );
    }

    #[test]
    fn first_sentence_stops_at_the_first_end() {
        assert_eq!(first_sentence("Hi there! How are you?"), "Hi there!");
        assert_eq!(first_sentence("No end"), "No end");
        assert_eq!(
            first_sentence("Version 1.2 is out. Yes."),
            "Version 1.2 is out."
        );
    }
}
