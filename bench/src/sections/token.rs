//! Section 6: the token validation microbenchmark.

use super::*;

/// 6. Token validation microbenchmark: reads what criterion wrote.
pub async fn token_micro(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let dir = lab
        .path(&lab.args.criterion_dir.to_string_lossy())
        .join("token");
    let read = |id: &str| -> Option<(f64, f64, f64)> {
        let text = std::fs::read_to_string(dir.join(id).join("new/estimates.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let m = &v["median"];
        Some((
            m["point_estimate"].as_f64()?,
            m["confidence_interval"]["lower_bound"].as_f64()?,
            m["confidence_interval"]["upper_bound"].as_f64()?,
        ))
    };
    let cases = [
        (
            "validate_cold_rsa",
            "`TokenValidator::validate` (full: parse, checks, RSA-2048 verify)",
        ),
        (
            "access_token_cached",
            "`TokenValidator::access_token`, second call (SHA-256 + cache lookup)",
        ),
        (
            "rsa2048_verify_aws_lc_rs",
            "raw RSA-2048 PKCS#1 v1.5 SHA-256 verify (aws-lc-rs)",
        ),
    ];
    let found: Vec<_> = cases.iter().map(|(id, _)| read(id)).collect();
    let mut s = String::from("### 6. Token validation (criterion)\n\n");
    s.push_str(
        "`bench/benches/token.rs`, run with `cargo bench -p voxgate-bench --bench token`: a \
         Keycloak stand-in in the same process serves the project realm, a \
         `voxgate::auth::provider::Provider` fetches its keys, and a real access token of bob \
         is validated. Medians of 50 samples with criterion's 95 % confidence interval.\n\n",
    );
    let mut rows = Vec::new();
    for ((id, what), f) in cases.iter().zip(&found) {
        rows.push(vec![
            format!("`{id}`"),
            what.to_string(),
            match f {
                Some((m, lo, hi)) => format!(
                    "{:.2} µs ({:.2}–{:.2})",
                    m / 1000.0,
                    lo / 1000.0,
                    hi / 1000.0
                ),
                None => "not run".into(),
            },
        ]);
    }
    s.push_str(&table(&["benchmark", "what", "median"], &rows));
    if let (Some(cold), Some(cached), Some(rsa)) = (found[0], found[1], found[2]) {
        let _ = writeln!(
            s,
            "\nThe cached path costs {:.1} % of a full validation; RSA verification is {:.0} % of \
             the full validation.\n",
            100.0 * cached.0 / cold.0,
            100.0 * rsa.0 / cold.0
        );
        rep.row(
            "Token validation: full (RSA) / cached / raw RSA-2048 verify",
            format!(
                "{:.1} µs / {:.2} µs / {:.1} µs",
                cold.0 / 1000.0,
                cached.0 / 1000.0,
                rsa.0 / 1000.0
            ),
            "reported",
            Verdict::Info,
        );
    } else {
        s.push_str("\nThe criterion results were not found; run `scripts/bench`.\n");
    }
    rep.section(s);
    Ok(())
}
