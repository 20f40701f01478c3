//! The server's module layering, as docs/ARCHITECTURE.md states it: which
//! feature may name which. A `use` that crosses a forbidden line fails
//! here rather than growing a dependency circle unnoticed.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Where code of module `from` names module `to` (comments left out).
fn references(from: &str, to: &str) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src().join(from), &mut files);
    let needle = format!("crate::{to}");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            let names = code.match_indices(&needle).any(|(at, _)| {
                let rest = &code[at + needle.len()..];
                !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if names {
                let relative = file.strip_prefix(src()).unwrap().display().to_string();
                found.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
        // `use crate::{a, b::c}`: the group's names, across lines too.
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        for (at, _) in code.match_indices("crate::{") {
            let group = &code[at + "crate::{".len()..];
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let names_to = group[..end].split(',').any(|item| {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                first == to
            });
            if names_to {
                let relative = file.strip_prefix(src()).unwrap().display().to_string();
                let line = code[..at].lines().count();
                found.push(format!("{relative}:{line}: use crate::{{… {to} …}}"));
            }
        }
    }
    found
}

#[test]
fn features_name_only_the_modules_beneath_them() {
    let forbidden = [
        ("auth", &["users", "chat", "tts", "pages"][..]),
        ("users", &["auth", "chat", "tts", "pages"]),
        (
            "identity",
            &["auth", "users", "chat", "tts", "stt", "pages", "state"],
        ),
        ("tts", &["auth", "users", "chat", "stt", "pages"]),
        ("stt", &["auth", "users", "chat", "tts", "pages"]),
        ("chat", &["auth", "users", "pages"]),
        (
            "web",
            &[
                "auth", "users", "identity", "chat", "tts", "stt", "pages", "state",
            ],
        ),
    ];
    let mut crossings = Vec::new();
    for (from, targets) in forbidden {
        for to in targets {
            crossings.extend(references(from, to));
        }
    }
    assert!(
        crossings.is_empty(),
        "modules naming what they must not:\n{}",
        crossings.join("\n")
    );
}

#[test]
fn the_layering_check_sees_a_crossing() {
    // The check itself: identity's module doc names auth in a comment
    // (ignored), and auth does name identity in code.
    assert!(references("identity", "auth").is_empty());
    assert!(!references("auth", "identity").is_empty());
    // A grouped `use crate::{…}` names its modules too: the router names
    // listening only there.
    assert!(!references("router.rs", "stt").is_empty());
}
