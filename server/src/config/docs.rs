//! `voxgate --help` and the table of `docs/configuration.md`, generated
//! from the settings table so the documentation cannot drift.

use super::settings::SETTINGS;

/// Help text listing every setting, for `voxgate --help`.
pub fn help_text() -> String {
    let mut out = String::from("Settings (environment variable, TOML key, default):\n");
    for s in SETTINGS {
        let default = match s.default {
            Some("") | None => "unset".to_string(),
            Some(d) => d.to_string(),
        };
        out.push_str(&format!(
            "  {}  [{}]  (default: {})\n      {}\n",
            s.env, s.key, default, s.help
        ));
    }
    out.push_str(
        "\nThe AWS_* settings are the standard AWS variables; the SDK's credential chain \
         (profiles, container and instance roles) applies too.\n",
    );
    out
}

/// The settings table of `docs/configuration.md`.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Environment variable | TOML key | Default | Meaning |\n|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let default = match s.default {
            Some("") | None => "*(unset)*".to_string(),
            Some(d) => format!("`{d}`"),
        };
        let help = if s.secret {
            format!("{} **Secret.**", s.help)
        } else {
            s.help.to_string()
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            s.env, s.key, default, help
        ));
    }
    out
}
