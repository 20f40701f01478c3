//! The documentation cannot drift silently from the repository: every
//! repository path, setting or variable name, script flag and `voxgate`
//! command that a Markdown file names (in inline code) must exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every file of the repository, less build output, packages and what
/// the tests write, and less the directories in `skip`.
fn files(skip: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let generated = [
                "target",
                "node_modules",
                ".git",
                ".local",
                "artifacts",
                ".schemathesis",
            ];
            if !path.is_dir() {
                out.push(path);
            } else if !generated.contains(&name.as_str()) && !skip.contains(&name.as_str()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The project's own Markdown files.
fn markdown_files() -> Vec<PathBuf> {
    files(&[])
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect()
}

/// The inline code spans of a Markdown text (fenced blocks left out).
fn code_spans(text: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut fenced = false;
    let mut prose = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let mut parts = prose.split('`');
    parts.next();
    while let Some(span) = parts.next() {
        spans.push(span.to_string());
        parts.next();
    }
    spans
}

/// Every file of the repository that is not Markdown, read once.
fn sources() -> String {
    files(&["docs"])
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

const TOP: &[&str] = &[
    "server/",
    "web/",
    "migrations/",
    "keycloak-realm/",
    "keycloak/",
    "nginx/",
    "scripts/",
    "docs/",
    "deploy/",
    "tests/",
    "bench/",
    "standins/",
    "crates/",
    ".ci/",
];

/// Whether a path named in `file` exists: from the repository root, or
/// beside the Markdown file. `*` and `…` stand for anything.
fn exists(path: &str, file: &Path) -> bool {
    let path = path.trim_end_matches(['.', ',', ':', ';', ')']);
    let cut = path.find(['*', '…', '{', '<']).unwrap_or(path.len());
    let fixed = path[..cut].trim_end_matches(|c| c != '/');
    let probe = if cut < path.len() { fixed } else { path };
    let probe = probe.trim_end_matches('/');
    if probe.is_empty() {
        return true;
    }
    let here = |base: PathBuf| {
        let path = base.join(probe);
        // What git ignores (keys, certificates, test artifacts) is made on
        // the machine and never committed: the docs name where it is written,
        // which a fresh clone does not have yet. Its folder must still be
        // part of the repository, or made on the machine too: an ignored
        // name in a folder that does not exist is a typo.
        path.exists() || ignored(&path) && path.parent().is_some_and(|p| p.is_dir() || ignored(p))
    };
    here(root()) || here(file.parent().unwrap().to_path_buf())
}

/// Whether git ignores `path`, asked of git itself so the answer follows
/// `.gitignore` exactly, negations included. A path that does not exist yet
/// is asked about as a file and as a directory.
fn ignored(path: &Path) -> bool {
    let ask = |path: &std::ffi::OsStr| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root())
            .args(["check-ignore", "-q", "--no-index"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut dir = path.as_os_str().to_owned();
    dir.push("/");
    ask(path.as_os_str()) || ask(&dir)
}

/// A Rust source named by its module path (`tts/neural.rs`) exists under
/// one of the crates' sources.
fn rust_module_exists(path: &str) -> bool {
    [
        "server/src",
        "crates/audio/src",
        "standins/keycloak/src",
        "standins/polly/src",
        "bench/src",
        "tests/api",
    ]
    .iter()
    .any(|base| root().join(base).join(path).exists())
}

/// Every inline code span of every Markdown file, with where it is.
fn spans() -> Vec<(PathBuf, String)> {
    markdown_files()
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            code_spans(&text)
                .into_iter()
                .map(move |span| (file.clone(), span))
        })
        .collect()
}

/// `file: what` for a finding.
fn finding(file: &Path, what: &str) -> String {
    format!("{}: {what}", file.strip_prefix(root()).unwrap().display())
}

fn assert_none(found: BTreeSet<String>, what: &str) {
    assert!(
        found.is_empty(),
        "{what}:\n{}",
        found.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_repository_path_named_in_the_docs_exists() {
    let mut missing = BTreeSet::new();
    for (file, span) in spans() {
        for word in span.split_whitespace() {
            let word = word.trim_matches(|c: char| c == '"' || c == '\'' || c == '(');
            let named_from_root = TOP.iter().any(|t| word.starts_with(t))
                && !word.contains("://")
                && !word.contains('=');
            let module = word.ends_with(".rs")
                && word.contains('/')
                && !named_from_root
                && !word.starts_with('/');
            if !(named_from_root || module) {
                continue;
            }
            if !(exists(word, &file) || (module && rust_module_exists(word))) {
                missing.insert(finding(&file, word));
            }
        }
    }
    assert_none(missing, "named in the docs, not in the repository");
}

#[test]
fn every_setting_and_variable_named_in_the_docs_is_read_somewhere() {
    let sources = sources();
    let settings: BTreeSet<&str> = voxgate::config::SETTINGS.iter().map(|s| s.env).collect();
    let mut unknown = BTreeSet::new();
    for (file, span) in spans() {
        for word in span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let named = ["VOXGATE_", "NGINX_", "KC_"]
                .iter()
                .any(|p| word.starts_with(p))
                && word.len() > 6
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if named && !settings.contains(word) && !sources.contains(word) {
                unknown.insert(finding(&file, word));
            }
        }
    }
    assert_none(unknown, "named in the docs, read nowhere");
}

#[test]
fn every_script_flag_named_in_the_docs_is_one_the_script_takes() {
    let mut unknown = BTreeSet::new();
    for (file, span) in spans() {
        let words: Vec<&str> = span.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| w.starts_with("scripts/")) else {
            continue;
        };
        let Ok(body) = std::fs::read_to_string(root().join(words[at])) else {
            continue; // a missing script is the path test's finding
        };
        for flag in words[at + 1..].iter().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap().trim_end_matches(['.', ',']);
            if !body.contains(flag) {
                unknown.insert(finding(&file, &format!("{} {flag}", words[at])));
            }
        }
    }
    assert_none(unknown, "flags the scripts do not take");
}

/// Lines of fenced code blocks.
fn fenced_lines(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            lines.push(line.to_string());
        }
    }
    lines
}

#[test]
fn every_voxgate_command_named_in_the_docs_exists() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    };
    let mut checked = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut lines = code_spans(&text);
        lines.extend(fenced_lines(&text));
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() != Some(&"voxgate") {
                continue;
            }
            // `voxgate users create|list|…` names several at once.
            let first = words.get(1).copied().unwrap_or_default();
            if first.is_empty() || first.starts_with('-') {
                continue;
            }
            let seconds: Vec<&str> = words
                .get(2)
                .filter(|w| {
                    w.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '|')
                })
                .map(|w| w.split('|').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default();
            if !checked.insert(format!("{first} {}", seconds.join("|"))) {
                continue;
            }
            let Some(sub) = help(&[first]) else {
                unknown.insert(finding(&file, &format!("voxgate {first}")));
                continue;
            };
            if !sub.contains("Commands:") {
                continue;
            }
            for second in seconds {
                if !sub
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(second))
                {
                    unknown.insert(finding(&file, &format!("voxgate {first} {second}")));
                }
            }
        }
    }
    assert_none(unknown, "commands voxgate does not have");
}
