//! The knowledge base: a TOML file of intents (example phrases, answers,
//! follow-up suggestions), checked when it is loaded, and the fuzzy matcher
//! that picks an intent for a message. The format is documented in
//! `docs/chat.md`; the default file ships inside the binary.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::bot::Identity;

/// The knowledge base shipped with voxgate (`server/src/chat/knowledge.toml`).
pub const DEFAULT_KB: &str = include_str!("knowledge.toml");

/// Intents every knowledge base has: a file that leaves one out gets the
/// default file's version.
pub const BUILTIN_INTENTS: &[&str] = &["greeting", "help", "whoami", "capabilities"];

/// Placeholders an answer may contain, filled from the signed-in identity.
pub const PLACEHOLDERS: &[&str] = &["name", "full_name", "username", "email", "roles"];

const DEFAULT_THRESHOLD: f64 = 0.6;
/// Scores above this (but under the threshold) are offered as suggestions.
const SUGGESTION_FLOOR: f64 = 0.25;
/// Intents scoring this close to the best one make a message ambiguous.
const AMBIGUITY_MARGIN: f64 = 0.02;
/// Two words count as the same word, typo allowed, from this similarity.
const WORD_SIMILARITY: f64 = 0.66;
/// Words that carry little meaning weigh less, so "what is the …" does not
/// make unrelated questions look alike.
const STOP_WORD_WEIGHT: f64 = 0.25;
const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "are", "as", "at", "be", "can", "could", "do", "does", "for",
    "from", "how", "i", "in", "is", "it", "me", "my", "of", "on", "or", "please", "that", "the",
    "this", "to", "what", "whats", "which", "with", "would", "you", "your",
];

/// Problems found in a knowledge-base file, each with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbError {
    pub source: String,
    pub problems: Vec<(usize, String)>,
}

impl fmt::Display for KbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "knowledge base {} is invalid:", self.source)?;
        for (line, message) in &self.problems {
            write!(f, "\n  line {line}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KbError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    threshold: Option<Spanned<f64>>,
    #[serde(default)]
    fallback: Vec<Spanned<String>>,
    #[serde(default)]
    intent: Vec<RawIntent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntent {
    id: Spanned<String>,
    examples: Spanned<Vec<Spanned<String>>>,
    answers: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    follow_ups: Vec<Spanned<String>>,
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub id: String,
    examples: Vec<Vec<String>>,
    /// The first example as written: offered when the bot is unsure.
    pub suggestion: String,
    pub answers: Vec<String>,
    pub follow_ups: Vec<String>,
}

/// A loaded, valid knowledge base.
#[derive(Debug, Clone)]
pub struct KnowledgeBase {
    pub threshold: f64,
    fallback: Vec<String>,
    pub intents: Vec<Intent>,
}

/// What the knowledge base answers to one message.
#[derive(Debug, Clone, PartialEq)]
pub struct KbAnswer {
    pub text: String,
    pub follow_ups: Vec<String>,
    /// The matched intent; `None` for the fallback.
    pub intent: Option<String>,
    pub score: f64,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl KnowledgeBase {
    /// The knowledge base shipped in the binary.
    pub fn embedded() -> KnowledgeBase {
        // The default file is checked by a unit test, so this cannot fail
        // in a released binary.
        KnowledgeBase::parse(DEFAULT_KB, "(embedded)")
            .expect("the embedded knowledge base is valid")
    }

    /// Reads `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>) -> Result<KnowledgeBase, KbError> {
        let Some(path) = path else {
            return Ok(KnowledgeBase::embedded());
        };
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KbError {
            source: source.clone(),
            problems: vec![(0, format!("cannot be read: {e}"))],
        })?;
        let mut kb = KnowledgeBase::parse(&text, &source)?;
        let defaults = KnowledgeBase::embedded();
        for id in BUILTIN_INTENTS {
            if !kb.intents.iter().any(|i| i.id == *id)
                && let Some(intent) = defaults.intents.iter().find(|i| i.id == *id)
            {
                kb.intents.push(intent.clone());
            }
        }
        if kb.fallback.is_empty() {
            kb.fallback = defaults.fallback;
        }
        Ok(kb)
    }

    /// Parses and checks a knowledge base, reporting every problem at once.
    pub fn parse(text: &str, source: &str) -> Result<KnowledgeBase, KbError> {
        let fail = |problems| KbError {
            source: source.to_string(),
            problems,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            fail(vec![(line, e.message().trim().to_string())])
        })?;
        let mut problems: Vec<(usize, String)> = Vec::new();
        let mut problem = |span: Range<usize>, message: String| {
            problems.push((line_of(text, span.start), message))
        };

        let threshold = match &raw.threshold {
            Some(t) if !(0.0..=1.0).contains(t.get_ref()) => {
                problem(t.span(), "threshold must be between 0 and 1".into());
                DEFAULT_THRESHOLD
            }
            Some(t) => *t.get_ref(),
            None => DEFAULT_THRESHOLD,
        };
        let mut fallback = Vec::new();
        for f in &raw.fallback {
            match check_answer(f.get_ref()) {
                Ok(()) => fallback.push(f.get_ref().trim().to_string()),
                Err(m) => problem(f.span(), format!("fallback answer {m}")),
            }
        }

        let mut seen = HashSet::new();
        let mut intents = Vec::new();
        for raw in raw.intent {
            let id = raw.id.get_ref().trim().to_string();
            let id_ok = !id.is_empty()
                && id.len() <= 64
                && id.starts_with(|c: char| c.is_ascii_lowercase())
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !id_ok {
                problem(
                    raw.id.span(),
                    format!(
                        "intent id `{id}` must be 1-64 characters of a-z, 0-9 and -, starting with a letter"
                    ),
                );
            } else if !seen.insert(id.clone()) {
                problem(raw.id.span(), format!("intent `{id}` is defined twice"));
            }
            let mut examples = Vec::new();
            let mut suggestion = None;
            if raw.examples.get_ref().is_empty() {
                problem(
                    raw.examples.span(),
                    format!("intent `{id}` needs at least one example"),
                );
            }
            for example in raw.examples.get_ref() {
                let words = tokens(example.get_ref());
                if words.is_empty() {
                    problem(
                        example.span(),
                        format!("an example of intent `{id}` has no words"),
                    );
                } else {
                    suggestion.get_or_insert_with(|| example.get_ref().trim().to_string());
                    examples.push(words);
                }
            }
            if raw.answers.get_ref().is_empty() {
                problem(
                    raw.answers.span(),
                    format!("intent `{id}` needs at least one answer"),
                );
            }
            let mut answers = Vec::new();
            for answer in raw.answers.get_ref() {
                match check_answer(answer.get_ref()) {
                    Ok(()) => answers.push(answer.get_ref().trim().to_string()),
                    Err(m) => problem(answer.span(), format!("an answer of intent `{id}` {m}")),
                }
            }
            let mut follow_ups = Vec::new();
            for f in &raw.follow_ups {
                let value = f.get_ref().trim();
                if value.is_empty() || value.chars().count() > 200 {
                    problem(
                        f.span(),
                        format!("a follow-up of intent `{id}` must be 1-200 characters"),
                    );
                } else {
                    follow_ups.push(value.to_string());
                }
            }
            intents.push(Intent {
                id,
                examples,
                suggestion: suggestion.unwrap_or_default(),
                answers,
                follow_ups,
            });
        }
        if problems.is_empty() {
            Ok(KnowledgeBase {
                threshold,
                fallback,
                intents,
            })
        } else {
            problems.sort_by_key(|(line, _)| *line);
            Err(fail(problems))
        }
    }

    /// The best intent for `message` and its score, if any scored at all.
    fn rank(&self, message: &[String]) -> Vec<(usize, f64)> {
        let mut scored: Vec<(usize, f64)> = self
            .intents
            .iter()
            .enumerate()
            .map(|(i, intent)| {
                let best = intent
                    .examples
                    .iter()
                    .map(|e| similarity(message, e))
                    .fold(0.0, f64::max);
                (i, best)
            })
            .filter(|(_, s)| *s > 0.0)
            .collect();
        // Stable sort: on equal scores the intent listed first wins.
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored
    }

    /// Answers `message` for `who`: the best intent above the threshold, or
    /// the fallback with the nearest intents as suggestions.
    pub fn answer(&self, message: &str, who: &Identity) -> KbAnswer {
        let words = tokens(message);
        let seed = fnv1a(&words.join(" "));
        let ranked = self.rank(&words);
        let ambiguous = match ranked.as_slice() {
            [(a, top), (b, second), ..] => {
                *second >= self.threshold
                    && top - second < AMBIGUITY_MARGIN
                    && self.intents[*a].suggestion != self.intents[*b].suggestion
            }
            _ => false,
        };
        if ambiguous {
            let options: Vec<String> = ranked
                .iter()
                .take_while(|(_, s)| ranked[0].1 - s < AMBIGUITY_MARGIN)
                .take(3)
                .map(|(i, _)| self.intents[*i].suggestion.clone())
                .collect();
            let quoted: Vec<String> = options.iter().map(|s| format!("“{s}”")).collect();
            return KbAnswer {
                text: format!(
                    "That could mean several things. Did you mean {}?",
                    join_or(&quoted)
                ),
                follow_ups: options,
                intent: None,
                score: ranked[0].1,
            };
        }
        if let Some(&(i, score)) = ranked.first()
            && score >= self.threshold
        {
            let intent = &self.intents[i];
            let template = &intent.answers[(seed % intent.answers.len() as u64) as usize];
            return KbAnswer {
                text: fill(template, who),
                follow_ups: intent.follow_ups.clone(),
                intent: Some(intent.id.clone()),
                score,
            };
        }
        let suggestions: Vec<String> = ranked
            .iter()
            .filter(|(_, s)| *s >= SUGGESTION_FLOOR)
            .map(|(i, _)| self.intents[*i].suggestion.clone())
            .take(3)
            .collect();
        let base = if self.fallback.is_empty() {
            "I'm not sure I understood that.".to_string()
        } else {
            fill(
                &self.fallback[(seed % self.fallback.len() as u64) as usize],
                who,
            )
        };
        let (text, follow_ups) = if suggestions.is_empty() {
            let help = self
                .intents
                .iter()
                .find(|i| i.id == "capabilities")
                .map(|i| i.suggestion.clone());
            (
                format!("{base} You can ask “what can you do?” to see what I know about."),
                help.into_iter().collect(),
            )
        } else {
            let quoted: Vec<String> = suggestions.iter().map(|s| format!("“{s}”")).collect();
            (
                format!("{base} Did you mean {}?", join_or(&quoted)),
                suggestions,
            )
        };
        KbAnswer {
            text,
            follow_ups,
            intent: None,
            score: ranked.first().map(|r| r.1).unwrap_or(0.0),
        }
    }
}

/// An answer must be non-empty and use only known placeholders.
fn check_answer(answer: &str) -> Result<(), String> {
    if answer.trim().is_empty() {
        return Err("is empty".into());
    }
    if answer.chars().count() > 2000 {
        return Err("is longer than 2000 characters".into());
    }
    let mut rest = answer;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("has a `{` without a closing `}`".into());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "uses the unknown placeholder `{{{name}}}` (known: {})",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The answer with the user's details put in. A reply is Markdown: the
/// details are escaped so that they show as they are (a name like `*Star*`
/// is not emphasis).
fn fill(template: &str, who: &Identity) -> String {
    let full_name = who.full_name();
    let roles: Vec<String> = who.roles.iter().cloned().collect();
    let e = super::markdown::escape_markdown;
    template
        .replace("{name}", &e(who.display_name()))
        .replace("{full_name}", &e(&full_name))
        .replace("{username}", &e(&who.username))
        .replace(
            "{email}",
            &e(who.email.as_deref().unwrap_or("no email address on file")),
        )
        .replace(
            "{roles}",
            &if roles.is_empty() {
                "no roles".to_string()
            } else {
                e(&join_and(&roles))
            },
        )
}

fn join_with(items: &[String], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., tail] => format!("{} {last} {tail}", init.join(", ")),
    }
}

fn join_and(items: &[String]) -> String {
    join_with(items, "and")
}

fn join_or(items: &[String]) -> String {
    join_with(items, "or")
}

/// Lower-cased words: letters and digits only (apostrophes dropped, so
/// "what's" is "whats"), any other character separates words.
pub fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn weight(word: &str) -> f64 {
    if STOP_WORDS.contains(&word) {
        STOP_WORD_WEIGHT
    } else {
        1.0
    }
}

/// How alike two words are, 0 unless close enough to be a typo. Short
/// words must match exactly: "hi" and "he" are different words.
fn word_similarity(a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    if a.chars().count() < 3 || b.chars().count() < 3 {
        return 0.0;
    }
    let s = strsim::normalized_damerau_levenshtein(a, b);
    if s >= WORD_SIMILARITY { s } else { 0.0 }
}

/// Weighted average of each word's best match in `other`.
fn coverage(words: &[String], other: &[String]) -> f64 {
    let total: f64 = words.iter().map(|w| weight(w)).sum();
    if total == 0.0 {
        return 0.0;
    }
    let matched: f64 = words
        .iter()
        .map(|w| {
            let best = other
                .iter()
                .map(|o| word_similarity(w, o))
                .fold(0.0, f64::max);
            weight(w) * best
        })
        .sum();
    matched / total
}

/// Order-independent, typo-tolerant similarity of a message and an example
/// (0–1): the harmonic mean of how much of each is found in the other.
/// When the message has meaningful words but shares none of them with the
/// example, the score is halved: agreeing on "what is the" means little.
pub fn similarity(message: &[String], example: &[String]) -> f64 {
    if message.is_empty() || example.is_empty() {
        return 0.0;
    }
    let recall = coverage(example, message);
    let precision = coverage(message, example);
    if recall + precision == 0.0 {
        return 0.0;
    }
    let score = 2.0 * recall * precision / (recall + precision);
    let content = |w: &&String| weight(w) == 1.0;
    let shares_content = message.iter().filter(content).any(|m| {
        example
            .iter()
            .filter(content)
            .any(|e| word_similarity(m, e) > 0.0)
    });
    if shares_content || !message.iter().any(|w| weight(w) == 1.0) {
        score
    } else {
        score / 2.0
    }
}

/// A hash that never changes between builds, so the same message always
/// gets the same answer.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Identity {
        Identity {
            username: "bob".into(),
            first_name: "Bob".into(),
            last_name: "Builder".into(),
            email: Some("bob@example.com".into()),
            roles: ["user".to_string()].into_iter().collect(),
        }
    }

    fn kb() -> KnowledgeBase {
        KnowledgeBase::embedded()
    }

    fn intent_of(message: &str) -> Option<String> {
        kb().answer(message, &bob()).intent
    }

    #[test]
    fn the_shipped_knowledge_base_is_valid_and_has_the_builtin_intents() {
        let kb = KnowledgeBase::parse(DEFAULT_KB, "default").unwrap();
        for id in BUILTIN_INTENTS {
            assert!(kb.intents.iter().any(|i| i.id == *id), "{id} is missing");
        }
        assert!(kb.intents.len() >= 12, "a useful default has many intents");
    }

    #[test]
    fn exact_examples_match_their_intent() {
        assert_eq!(intent_of("hello").as_deref(), Some("greeting"));
        assert_eq!(intent_of("Who am I?").as_deref(), Some("whoami"));
        assert_eq!(
            intent_of("What can you do?").as_deref(),
            Some("capabilities")
        );
        assert_eq!(intent_of("help").as_deref(), Some("help"));
    }

    #[test]
    fn typos_still_match() {
        assert_eq!(intent_of("helo").as_deref(), Some("greeting"));
        assert_eq!(intent_of("waht is voxgte").as_deref(), Some("about"));
        assert_eq!(
            intent_of("how do I chnage my pasword").as_deref(),
            Some("password")
        );
    }

    #[test]
    fn word_order_does_not_matter() {
        assert_eq!(intent_of("am I who").as_deref(), Some("whoami"));
        assert_eq!(intent_of("voice change how do I").as_deref(), Some("voice"));
    }

    #[test]
    fn nonsense_gets_the_fallback_with_a_pointer_to_help() {
        let answer = kb().answer("purple elephants juggle quietly", &bob());
        assert_eq!(answer.intent, None);
        assert!(answer.text.contains("what can you do"), "{}", answer.text);
        assert!(!answer.follow_ups.is_empty());
    }

    #[test]
    fn a_near_miss_is_offered_as_a_suggestion() {
        let answer = kb().answer("speed settings please", &bob());
        assert_eq!(answer.intent, None);
        assert!(answer.text.contains("Did you mean"), "{}", answer.text);
        assert_eq!(answer.follow_ups[0], "How do I change the speed?");
    }

    #[test]
    fn an_ambiguous_message_asks_which_one_was_meant() {
        let answer = kb().answer("change", &bob());
        assert_eq!(answer.intent, None);
        assert!(
            answer
                .follow_ups
                .contains(&"How do I change the voice?".to_string()),
            "{answer:?}"
        );
        assert!(
            answer
                .follow_ups
                .contains(&"How do I change my password?".to_string()),
            "{answer:?}"
        );
    }

    #[test]
    fn sharing_only_filler_words_is_no_match() {
        let answer = kb().answer("what is the weather", &bob());
        assert_eq!(answer.intent, None);
        assert!(!answer.text.contains("Did you mean"), "{}", answer.text);
    }

    #[test]
    fn who_am_i_answers_from_the_identity() {
        let answer = kb().answer("who am i", &bob());
        assert!(answer.text.contains("bob"), "{}", answer.text);
        assert!(answer.text.contains("user"), "{}", answer.text);
        let mut admin = bob();
        admin.username = "alice".into();
        admin.roles = ["admin".to_string(), "user".to_string()]
            .into_iter()
            .collect();
        let answer = kb().answer("who am i", &admin);
        assert!(answer.text.contains("alice"), "{}", answer.text);
        assert!(answer.text.contains("admin and user"), "{}", answer.text);
    }

    #[test]
    fn the_same_message_always_gets_the_same_answer() {
        let a = kb().answer("hi there", &bob());
        for _ in 0..5 {
            assert_eq!(kb().answer("hi there", &bob()), a);
        }
    }

    #[test]
    fn several_answers_are_all_used_across_messages() {
        let kb = kb();
        let greeting = kb.intents.iter().find(|i| i.id == "greeting").unwrap();
        assert!(greeting.answers.len() > 1);
        let seen: HashSet<String> = ["hello", "hi", "hey", "good morning", "hello there", "hiya"]
            .iter()
            .map(|m| kb.answer(m, &bob()).text)
            .collect();
        assert!(seen.len() > 1, "{seen:?}");
    }

    #[test]
    fn syntax_errors_report_their_line() {
        let err = KnowledgeBase::parse("threshold = 0.5\n\n[[intent]\nid = \"x\"\n", "t.toml")
            .unwrap_err();
        assert_eq!(err.problems[0].0, 3, "{err}");
        assert!(err.to_string().contains("t.toml"));
        assert!(err.to_string().contains("line 3"));
    }

    #[test]
    fn unknown_keys_report_their_line() {
        let text =
            "[[intent]]\nid = \"x\"\nexamples = [\"a b\"]\nanswers = [\"A.\"]\nfolowups = []\n";
        let err = KnowledgeBase::parse(text, "t").unwrap_err();
        assert_eq!(err.problems[0].0, 5, "{err}");
        assert!(err.problems[0].1.contains("folowups"), "{err}");
    }

    #[test]
    fn every_semantic_problem_is_reported_with_its_line() {
        let text = r#"threshold = 1.5

[[intent]]
id = "Bad Id"
examples = ["hello"]
answers = ["Hi {nmae}!"]

[[intent]]
id = "dup"
examples = []
answers = ["ok"]

[[intent]]
id = "dup"
examples = ["?!"]
answers = []
follow_ups = [""]
"#;
        let err = KnowledgeBase::parse(text, "t").unwrap_err();
        let lines: Vec<usize> = err.problems.iter().map(|p| p.0).collect();
        assert_eq!(lines, [1, 4, 6, 10, 14, 15, 16, 17], "{err}");
        let text = err.to_string();
        assert!(
            text.contains(
                "line 6: an answer of intent `Bad Id` uses the unknown placeholder `{nmae}`"
            ),
            "{text}"
        );
        assert!(text.contains("defined twice"));
        assert!(text.contains("has no words"));
    }

    #[test]
    fn a_custom_file_keeps_the_builtin_intents() {
        let dir = std::env::temp_dir().join(format!("kb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kb.toml");
        std::fs::write(
            &path,
            "[[intent]]\nid = \"opening-hours\"\nexamples = [\"when are you open\"]\nanswers = [\"Nine to five.\"]\n",
        )
        .unwrap();
        let kb = KnowledgeBase::load(Some(&path)).unwrap();
        assert_eq!(kb.answer("when are you opne", &bob()).text, "Nine to five.");
        assert_eq!(
            kb.answer("who am i", &bob()).intent.as_deref(),
            Some("whoami")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let err = KnowledgeBase::load(Some(Path::new("/nonexistent/kb.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kb.toml"));
    }

    #[test]
    fn similarity_ignores_order_and_tolerates_typos() {
        let a = tokens("change the voice");
        let b = tokens("voice the change");
        assert!((similarity(&a, &b) - 1.0).abs() < 1e-9);
        assert!(similarity(&tokens("chnage voice"), &a) > 0.7);
        assert_eq!(similarity(&tokens("hi"), &tokens("he")), 0.0);
    }
}
