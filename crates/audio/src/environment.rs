//! The environment speech subprocesses start with. They parse untrusted
//! text in C (espeak-ng) and Python (Piper), so they get nothing of
//! voxgate's own environment but what finding programs, decoding text and
//! the math libraries need: no database URL, client secret, cloud key or
//! API key can leak to them, or through them into a crash report.

/// Variables a speech subprocess may inherit, when set.
pub const INHERITED: &[&str] = &[
    // Finding programs and libraries; voices and their data.
    "PATH",
    "LD_LIBRARY_PATH",
    "ESPEAK_DATA_PATH",
    // Text encoding and time zone.
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    // Math library threading and CPU-specific kernels (some processors need
    // OPENBLAS_CORETYPE for correct results).
    "OMP_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
];

/// The environment to start a speech subprocess with (after `env_clear`).
pub fn worker_env() -> Vec<(String, String)> {
    INHERITED
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_inherited_name_can_hold_a_secret() {
        for name in INHERITED {
            let lower = name.to_lowercase();
            for word in [
                "secret", "password", "key", "token", "url", "database", "aws",
            ] {
                assert!(!lower.contains(word), "{name}");
            }
        }
    }
}
