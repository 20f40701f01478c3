//! SSML checking and text extraction.
//!
//! Polly rejects SSML that is not well-formed XML rooted at `<speak>` or that
//! uses tags it does not support, and bills only the text content. This module
//! checks that, and extracts the speakable text together with a map from each
//! byte of that text back to its offset in the SSML, so speech marks can
//! report offsets into the original input as Polly does.

/// Text extracted from an SSML document.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Speakable text: character data with entities decoded; element
    /// boundaries become single spaces.
    pub text: String,
    /// For every byte of `text`, the byte offset in the SSML it came from.
    pub offsets: Vec<usize>,
    /// Characters of text content, i.e. what Polly bills (tags and the
    /// boundary spaces this module inserts do not count).
    pub billed_chars: usize,
    /// `<mark name="..."/>` positions: (byte offset in `text`, SSML start,
    /// SSML end, name).
    pub marks: Vec<(usize, usize, usize, String)>,
}

/// Tags Polly accepts inside `<speak>`.
const SUPPORTED_TAGS: &[&str] = &[
    "speak",
    "break",
    "emphasis",
    "lang",
    "mark",
    "p",
    "phoneme",
    "prosody",
    "s",
    "say-as",
    "sub",
    "w",
    "amazon:auto-breaths",
    "amazon:breath",
    "amazon:domain",
    "amazon:effect",
];

/// Plain text as an [`Extracted`]: offsets are the identity.
pub fn plain(text: &str) -> Extracted {
    Extracted {
        text: text.to_string(),
        offsets: (0..text.len()).collect(),
        billed_chars: text.chars().count(),
        marks: Vec::new(),
    }
}

/// Checks `ssml` and extracts its text; the error says what is wrong.
pub fn parse(ssml: &str) -> Result<Extracted, String> {
    let b = ssml.as_bytes();
    let mut out = Extracted::default();
    let mut stack: Vec<&str> = Vec::new();
    let mut root_done = false;
    let mut i = 0;

    // Optional XML declaration.
    let lead = ssml.len() - ssml.trim_start().len();
    if ssml[lead..].starts_with("<?xml") {
        let end = ssml[lead..]
            .find("?>")
            .ok_or("unterminated XML declaration")?;
        i = lead + end + 2;
    }

    while i < b.len() {
        if b[i] == b'<' {
            if ssml[i..].starts_with("<!--") {
                let end = ssml[i..].find("-->").ok_or("unterminated comment")?;
                i += end + 3;
                continue;
            }
            if ssml[i..].starts_with("<![CDATA[") {
                if stack.is_empty() {
                    return Err("character data outside <speak>".into());
                }
                let end = ssml[i..].find("]]>").ok_or("unterminated CDATA section")?;
                let start = i + 9;
                for (k, c) in ssml[start..i + end].char_indices() {
                    push_char(&mut out, c, start + k, true);
                }
                i += end + 3;
                continue;
            }
            if ssml[i..].starts_with("<!") || ssml[i..].starts_with("<?") {
                return Err(
                    "declarations and processing instructions are not allowed in SSML".into(),
                );
            }
            let close = ssml[i..].find('>').ok_or("unterminated tag")? + i;
            let tag_start = i;
            let inner = &ssml[i + 1..close];
            i = close + 1;
            if let Some(name) = inner.strip_prefix('/') {
                let name = name.trim_end();
                match stack.pop() {
                    Some(open) if open == name => {}
                    Some(open) => return Err(format!("</{name}> closes <{open}>")),
                    None => return Err(format!("unexpected </{name}>")),
                }
                if stack.is_empty() {
                    root_done = true;
                }
                if separates(name) {
                    boundary(&mut out, tag_start);
                }
                continue;
            }
            let self_closing = inner.ends_with('/');
            let inner = inner.strip_suffix('/').unwrap_or(inner);
            let name_end = inner
                .find(|c: char| c.is_whitespace())
                .unwrap_or(inner.len());
            let name = &inner[..name_end];
            if !valid_name(name) {
                return Err(format!("invalid tag name '{name}'"));
            }
            let attrs = parse_attributes(&inner[name_end..])?;
            if stack.is_empty() {
                if root_done {
                    return Err("more than one root element".into());
                }
                if name != "speak" {
                    return Err(format!("root element must be <speak>, found <{name}>"));
                }
            }
            if !SUPPORTED_TAGS.contains(&name) {
                return Err(format!("unsupported SSML tag <{name}>"));
            }
            if name == "mark" {
                let mark_name = attrs
                    .iter()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.clone())
                    .ok_or("<mark> requires a name attribute")?;
                out.marks.push((out.text.len(), tag_start, i, mark_name));
            }
            if separates(name) {
                boundary(&mut out, tag_start);
            }
            if self_closing {
                if stack.is_empty() {
                    root_done = true;
                }
            } else {
                stack.push(name);
            }
        } else {
            let next = ssml[i..].find('<').map_or(b.len(), |n| i + n);
            let chunk = &ssml[i..next];
            if stack.is_empty() {
                if !chunk.trim().is_empty() {
                    return Err("text outside <speak>".into());
                }
            } else {
                decode_text(&mut out, chunk, i)?;
            }
            i = next;
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> is not closed"));
    }
    if !root_done {
        return Err("no <speak> element".into());
    }
    Ok(out)
}

/// Elements that separate words; inline ones (`<emphasis>`, `<prosody>`...)
/// can sit inside a word.
fn separates(name: &str) -> bool {
    matches!(name, "break" | "p" | "s" | "mark")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

fn parse_attributes(mut s: &str) -> Result<Vec<(String, String)>, String> {
    let mut attrs: Vec<(String, String)> = Vec::new();
    loop {
        let trimmed = s.trim_start();
        if trimmed.is_empty() {
            return Ok(attrs);
        }
        if trimmed.len() == s.len() && !attrs.is_empty() {
            return Err("attributes must be separated by whitespace".into());
        }
        s = trimmed;
        let eq = s
            .find('=')
            .ok_or_else(|| format!("attribute without value near '{s}'"))?;
        let name = s[..eq].trim();
        if !valid_name(name) {
            return Err(format!("invalid attribute name '{name}'"));
        }
        let rest = s[eq + 1..].trim_start();
        let quote = rest
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or("attribute values must be quoted")?;
        let end = rest[1..]
            .find(quote)
            .ok_or("unterminated attribute value")?
            + 1;
        let raw = &rest[1..end];
        if raw.contains('<') {
            return Err("'<' is not allowed in attribute values".into());
        }
        let mut decoded = Extracted::default();
        decode_text(&mut decoded, raw, 0)?;
        if attrs.iter().any(|(k, _)| k == name) {
            return Err(format!("duplicate attribute '{name}'"));
        }
        attrs.push((name.to_string(), decoded.text));
        s = &rest[end + 1..];
    }
}

/// Appends character data, decoding the five XML entities and character
/// references.
fn decode_text(out: &mut Extracted, chunk: &str, base: usize) -> Result<(), String> {
    let mut rest = chunk;
    let mut pos = base;
    while let Some(amp) = rest.find('&') {
        for (k, c) in rest[..amp].char_indices() {
            push_char(out, c, pos + k, true);
        }
        let semi = rest[amp..]
            .find(';')
            .ok_or("'&' must start an entity reference")?
            + amp;
        let entity = &rest[amp + 1..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("invalid character reference &{e};"))?,
            e if e.starts_with('#') => e[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("invalid character reference &{e};"))?,
            e => return Err(format!("unknown entity &{e};")),
        };
        push_char(out, c, pos + amp, true);
        pos += semi + 1;
        rest = &rest[semi + 1..];
    }
    for (k, c) in rest.char_indices() {
        push_char(out, c, pos + k, true);
    }
    Ok(())
}

fn push_char(out: &mut Extracted, c: char, at: usize, billed: bool) {
    let len = c.len_utf8();
    out.text.push(c);
    // Every byte of a directly copied character maps to its own byte; a
    // decoded entity maps all its bytes to the `&`.
    for k in 0..len {
        out.offsets.push(at + k);
    }
    if billed {
        out.billed_chars += 1;
    }
}

/// Separating elements split words (`a<break/>b` is two words) without
/// adding billed characters.
fn boundary(out: &mut Extracted, at: usize) {
    if !out.text.is_empty() && !out.text.ends_with(char::is_whitespace) {
        push_char(out, ' ', at, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_content_is_extracted_and_billed_without_tags() {
        let ssml =
            r#"<speak>Hello <break time="1s"/>big &amp; <emphasis>bold</emphasis> world.</speak>"#;
        let x = parse(ssml).unwrap();
        assert_eq!(x.text, "Hello big & bold world.");
        assert_eq!(x.billed_chars, 23);
        let amp = x.text.find('&').unwrap();
        assert_eq!(&ssml[x.offsets[amp]..x.offsets[amp] + 5], "&amp;");
        let bold = x.text.find("bold").unwrap();
        assert_eq!(&ssml[x.offsets[bold]..x.offsets[bold] + 4], "bold");
    }

    #[test]
    fn malformed_ssml_is_rejected() {
        for bad in [
            "Hello",
            "<speak>Hello",
            "<speak>Hello</p></speak>",
            "<speak>a & b</speak>",
            "<speak><break time=1s/></speak>",
            "<speak></speak><speak></speak>",
            "<p>x</p>",
            "<speak><blink>x</blink></speak>",
            "<speak>x</speak> trailing",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn marks_and_declarations_are_understood() {
        let ssml = "<?xml version=\"1.0\"?>\n<speak>One <mark name=\"m1\"/>two<!-- c --></speak>";
        let x = parse(ssml).unwrap();
        assert_eq!(x.text, "One two");
        assert_eq!(x.marks.len(), 1);
        assert_eq!(x.marks[0].3, "m1");
        assert_eq!(x.marks[0].0, 4);
    }
}
