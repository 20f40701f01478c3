//! The stand-in's voice catalogue.
//!
//! A subset of Polly's voices with the language, gender and engines Polly
//! documents for them, plus the espeak-ng voice used to actually speak for
//! each one. Also the enum value sets that Polly validates request fields
//! against (taken from the service model), so invalid values fail the same
//! way they do against the real service.

use serde_json::{Value, json};

/// One Polly voice.
#[derive(Clone, Copy, Debug)]
pub struct Voice {
    pub id: &'static str,
    pub name: &'static str,
    pub gender: &'static str,
    pub language_code: &'static str,
    pub language_name: &'static str,
    pub additional_language_codes: &'static [&'static str],
    pub engines: &'static [&'static str],
}

const GEN_LF_NEU: &[&str] = &["generative", "long-form", "neural"];
const LF_NEU: &[&str] = &["long-form", "neural"];
const GEN_NEU_STD: &[&str] = &["generative", "neural", "standard"];
const GEN_NEU: &[&str] = &["generative", "neural"];
const NEU_STD: &[&str] = &["neural", "standard"];
const NEU: &[&str] = &["neural"];
const STD: &[&str] = &["standard"];

macro_rules! voice {
    ($id:literal, $name:literal, $g:literal, $lc:literal, $ln:literal, $eng:expr) => {
        voice!($id, $name, $g, $lc, $ln, $eng, &[])
    };
    ($id:literal, $name:literal, $g:literal, $lc:literal, $ln:literal, $eng:expr, $add:expr) => {
        Voice {
            id: $id,
            name: $name,
            gender: $g,
            language_code: $lc,
            language_name: $ln,
            additional_language_codes: $add,
            engines: $eng,
        }
    };
}

/// The voices this stand-in offers.
pub const VOICES: &[Voice] = &[
    voice!(
        "Danielle",
        "Danielle",
        "Female",
        "en-US",
        "US English",
        GEN_LF_NEU
    ),
    voice!("Gregory", "Gregory", "Male", "en-US", "US English", LF_NEU),
    voice!("Ivy", "Ivy", "Female", "en-US", "US English", NEU_STD),
    voice!(
        "Joanna",
        "Joanna",
        "Female",
        "en-US",
        "US English",
        GEN_NEU_STD
    ),
    voice!("Joey", "Joey", "Male", "en-US", "US English", NEU_STD),
    voice!("Justin", "Justin", "Male", "en-US", "US English", NEU_STD),
    voice!("Kendra", "Kendra", "Female", "en-US", "US English", NEU_STD),
    voice!("Kevin", "Kevin", "Male", "en-US", "US English", NEU),
    voice!(
        "Kimberly",
        "Kimberly",
        "Female",
        "en-US",
        "US English",
        NEU_STD
    ),
    voice!(
        "Matthew",
        "Matthew",
        "Male",
        "en-US",
        "US English",
        GEN_NEU_STD
    ),
    voice!("Ruth", "Ruth", "Female", "en-US", "US English", GEN_LF_NEU),
    voice!(
        "Salli",
        "Salli",
        "Female",
        "en-US",
        "US English",
        GEN_NEU_STD
    ),
    voice!("Stephen", "Stephen", "Male", "en-US", "US English", GEN_NEU),
    voice!(
        "Amy",
        "Amy",
        "Female",
        "en-GB",
        "British English",
        GEN_NEU_STD
    ),
    voice!(
        "Emma",
        "Emma",
        "Female",
        "en-GB",
        "British English",
        NEU_STD
    ),
    voice!(
        "Brian",
        "Brian",
        "Male",
        "en-GB",
        "British English",
        GEN_NEU_STD
    ),
    voice!("Arthur", "Arthur", "Male", "en-GB", "British English", NEU),
    voice!(
        "Aditi",
        "Aditi",
        "Female",
        "en-IN",
        "Indian English",
        STD,
        &["hi-IN"]
    ),
    voice!(
        "Raveena",
        "Raveena",
        "Female",
        "en-IN",
        "Indian English",
        STD
    ),
    voice!(
        "Kajal",
        "Kajal",
        "Female",
        "en-IN",
        "Indian English",
        GEN_NEU,
        &["hi-IN"]
    ),
    voice!("Marlene", "Marlene", "Female", "de-DE", "German", STD),
    voice!("Vicki", "Vicki", "Female", "de-DE", "German", GEN_NEU_STD),
    voice!("Hans", "Hans", "Male", "de-DE", "German", STD),
    voice!("Daniel", "Daniel", "Male", "de-DE", "German", GEN_NEU),
    voice!("Celine", "Céline", "Female", "fr-FR", "French", STD),
    voice!("Lea", "Léa", "Female", "fr-FR", "French", GEN_NEU_STD),
    voice!("Mathieu", "Mathieu", "Male", "fr-FR", "French", STD),
    voice!("Remi", "Rémi", "Male", "fr-FR", "French", GEN_NEU),
    voice!(
        "Conchita",
        "Conchita",
        "Female",
        "es-ES",
        "Castilian Spanish",
        STD
    ),
    voice!(
        "Lucia",
        "Lucia",
        "Female",
        "es-ES",
        "Castilian Spanish",
        GEN_NEU_STD
    ),
    voice!(
        "Enrique",
        "Enrique",
        "Male",
        "es-ES",
        "Castilian Spanish",
        STD
    ),
    voice!(
        "Sergio",
        "Sergio",
        "Male",
        "es-ES",
        "Castilian Spanish",
        GEN_NEU
    ),
    voice!("Mizuki", "Mizuki", "Female", "ja-JP", "Japanese", STD),
    voice!("Takumi", "Takumi", "Male", "ja-JP", "Japanese", NEU_STD),
    voice!("Kazuha", "Kazuha", "Female", "ja-JP", "Japanese", NEU),
    voice!("Tomoko", "Tomoko", "Female", "ja-JP", "Japanese", NEU),
];

/// Polly's `Engine` enum.
pub const ENGINES: &[&str] = &["standard", "neural", "long-form", "generative"];

/// Polly's `OutputFormat` enum.
pub const OUTPUT_FORMATS: &[&str] = &[
    "json",
    "mp3",
    "ogg_vorbis",
    "ogg_opus",
    "pcm",
    "mulaw",
    "alaw",
];

/// Polly's `SpeechMarkType` enum.
pub const SPEECH_MARK_TYPES: &[&str] = &["sentence", "ssml", "viseme", "word"];

/// Polly's `LanguageCode` enum.
pub const LANGUAGE_CODES: &[&str] = &[
    "arb",
    "cmn-CN",
    "cy-GB",
    "da-DK",
    "de-DE",
    "en-AU",
    "en-GB",
    "en-GB-WLS",
    "en-IN",
    "en-US",
    "es-ES",
    "es-MX",
    "es-US",
    "fr-CA",
    "fr-FR",
    "is-IS",
    "it-IT",
    "ja-JP",
    "hi-IN",
    "ko-KR",
    "nb-NO",
    "nl-NL",
    "pl-PL",
    "pt-BR",
    "pt-PT",
    "ro-RO",
    "ru-RU",
    "sv-SE",
    "tr-TR",
    "en-NZ",
    "en-ZA",
    "ca-ES",
    "de-AT",
    "yue-CN",
    "ar-AE",
    "fi-FI",
    "en-IE",
    "nl-BE",
    "fr-BE",
    "cs-CZ",
    "de-CH",
    "en-SG",
];

impl Voice {
    pub fn supports(&self, engine: &str) -> bool {
        self.engines.contains(&engine)
    }

    pub fn speaks(&self, language_code: &str) -> bool {
        self.language_code == language_code
            || self.additional_language_codes.contains(&language_code)
    }

    /// The espeak-ng voice that speaks for this Polly voice in `language`.
    pub fn espeak_voice(&self, language: &str) -> String {
        let base = match language {
            "en-US" => "en-us",
            "en-GB" => "en-gb",
            "en-IN" => "en",
            "hi-IN" => "hi",
            "de-DE" => "de",
            "fr-FR" => "fr-fr",
            "es-ES" => "es",
            "ja-JP" => "ja",
            _ => "en-us",
        };
        // espeak-ng's female variant keeps male and female voices apart.
        if self.gender == "Female" {
            format!("{base}+f3")
        } else {
            base.to_string()
        }
    }

    /// DescribeVoices JSON for this voice.
    pub fn to_json(&self, include_additional: bool) -> Value {
        let mut v = json!({
            "Gender": self.gender,
            "Id": self.id,
            "LanguageCode": self.language_code,
            "LanguageName": self.language_name,
            "Name": self.name,
        });
        if include_additional && !self.additional_language_codes.is_empty() {
            v["AdditionalLanguageCodes"] = json!(self.additional_language_codes);
        }
        v["SupportedEngines"] = json!(self.engines);
        v
    }
}

pub fn find(id: &str) -> Option<&'static Voice> {
    VOICES.iter().find(|v| v.id == id)
}

/// Polly's error text for a value outside an enum.
pub fn enum_violation(value: &str, field: &str, allowed: &[&str]) -> String {
    format!(
        "Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        allowed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_voice_has_a_known_language_and_engine() {
        for v in VOICES {
            assert!(LANGUAGE_CODES.contains(&v.language_code), "{}", v.id);
            assert!(v.engines.iter().all(|e| ENGINES.contains(e)), "{}", v.id);
            assert!(!v.engines.is_empty());
        }
        assert!(find("Kevin").unwrap().engines == ["neural"]);
    }
}
