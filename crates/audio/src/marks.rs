//! Estimated speech marks.
//!
//! espeak-ng does not report when each word is spoken, so timings are
//! estimated: the total duration is shared out proportionally to word length,
//! with an extra pause after each sentence. Offsets are byte offsets into the
//! input text, which is what Polly reports.

use std::time::Duration;

/// One Polly-shaped speech mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeechMark {
    /// Milliseconds from the start of the audio.
    pub time_ms: u64,
    /// `"sentence"` or `"word"`.
    pub kind: String,
    /// Byte offset of the first byte in the text.
    pub start: usize,
    /// Byte offset one past the last byte in the text.
    pub end: usize,
    /// The marked text (`text[start..end]`).
    pub value: String,
}

/// Weight of the gap after every word, in characters.
const WORD_GAP: f64 = 1.0;
/// Weight of the pause after every sentence, in characters.
const SENTENCE_PAUSE: f64 = 6.0;

struct Word {
    start: usize,
    end: usize,
    /// The whitespace-delimited token this word came from ends a sentence.
    ends_sentence: bool,
    /// Start and end of the raw token, so sentence marks keep their
    /// punctuation and quotes.
    raw_start: usize,
    raw_end: usize,
}

/// Estimates sentence and word marks for `text` spoken over `duration`.
///
/// Marks come in Polly's order (each sentence mark followed by its word
/// marks), times never decrease, and every word of the text gets one mark.
pub fn estimate_speech_marks(text: &str, duration: Duration) -> Vec<SpeechMark> {
    let words = words(text);
    if words.is_empty() {
        return Vec::new();
    }
    // Group words into sentences.
    let mut sentences: Vec<&[Word]> = Vec::new();
    let mut first = 0;
    for (i, w) in words.iter().enumerate() {
        if w.ends_sentence || i + 1 == words.len() {
            sentences.push(&words[first..=i]);
            first = i + 1;
        }
    }
    let weight = |w: &Word| text[w.start..w.end].chars().count() as f64 + WORD_GAP;
    let total: f64 =
        words.iter().map(weight).sum::<f64>() + SENTENCE_PAUSE * (sentences.len() - 1) as f64;
    let total_ms = duration.as_secs_f64() * 1000.0;
    let at = |units: f64| (units / total * total_ms).floor() as u64;

    let mut marks = Vec::with_capacity(words.len() + sentences.len());
    let mut units = 0.0;
    for (si, sentence) in sentences.iter().enumerate() {
        let (start, end) = (sentence[0].raw_start, sentence[sentence.len() - 1].raw_end);
        marks.push(SpeechMark {
            time_ms: at(units),
            kind: "sentence".into(),
            start,
            end,
            value: text[start..end].to_string(),
        });
        for w in *sentence {
            marks.push(SpeechMark {
                time_ms: at(units),
                kind: "word".into(),
                start: w.start,
                end: w.end,
                value: text[w.start..w.end].to_string(),
            });
            units += weight(w);
        }
        if si + 1 < sentences.len() {
            units += SENTENCE_PAUSE;
        }
    }
    marks
}

/// Splits on whitespace and trims punctuation off each token's edges; tokens
/// with nothing speakable left are dropped.
fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut token_start: Option<usize> = None;
    let push = |s: usize, e: usize, out: &mut Vec<Word>| {
        let token = &text[s..e];
        let lead = token.len()
            - token
                .trim_start_matches(|c: char| !c.is_alphanumeric())
                .len();
        let trail = token.len() - token.trim_end_matches(|c: char| !c.is_alphanumeric()).len();
        if lead + trail >= token.len() {
            // Pure punctuation such as "-" or "...": attach a sentence end to
            // the previous word, if any.
            if let (true, Some(prev)) = (ends_sentence(token), out.last_mut()) {
                prev.ends_sentence = true;
                prev.raw_end = e;
            }
            return;
        }
        out.push(Word {
            start: s + lead,
            end: e - trail,
            ends_sentence: ends_sentence(token),
            raw_start: s,
            raw_end: e,
        });
    };
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = token_start.take() {
                push(s, i, &mut out);
            }
        } else if token_start.is_none() {
            token_start = Some(i);
        }
    }
    if let Some(s) = token_start {
        push(s, text.len(), &mut out);
    }
    out
}

/// `word.`, `word?!`, `word."` and `word.)` end a sentence.
fn ends_sentence(token: &str) -> bool {
    let t = token.trim_end_matches(['"', '\'', ')', ']', '»', '”', '’']);
    t.ends_with(['.', '!', '?', '…', '。', '！', '？'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_punctuation_is_not_part_of_a_word() {
        let text = "Hi, (you) there!";
        let marks = estimate_speech_marks(text, Duration::from_secs(1));
        let words: Vec<&str> = marks
            .iter()
            .filter(|m| m.kind == "word")
            .map(|m| m.value.as_str())
            .collect();
        assert_eq!(words, ["Hi", "you", "there"]);
        assert_eq!(marks[0].kind, "sentence");
        assert_eq!(marks[0].value, "Hi, (you) there!");
    }

    #[test]
    fn empty_or_punctuation_only_text_has_no_marks() {
        assert!(estimate_speech_marks("", Duration::from_secs(1)).is_empty());
        assert!(estimate_speech_marks(" ... - ", Duration::from_secs(1)).is_empty());
    }
}
