//! The server's module layering, as docs/ARCHITECTURE.md states it: which
//! feature may name which. A `use` that crosses a forbidden line fails
//! here rather than growing a dependency circle unnoticed.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
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
            &["auth", "users", "chat", "tts", "pages", "state"],
        ),
        ("tts", &["auth", "users", "chat", "pages"]),
        ("chat", &["auth", "users", "pages"]),
        (
            "web",
            &["auth", "users", "identity", "chat", "tts", "pages", "state"],
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
}
