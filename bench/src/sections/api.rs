//! Section 1: `GET /api/me` with a bearer token vs `/healthz` and vs Python.

use super::*;

/// 1. `GET /api/me` with a bearer token vs `/healthz` and vs Python.
pub async fn api(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let token = lab.token("alice").await?;
    get_ok(&lab.http, &format!("{}/api/me", lab.vx_url), Some(&token)).await?;
    get_ok(&lab.http, &format!("{}/api/me", lab.py_url), Some(&token)).await?;
    let names = ["voxgate /healthz", "voxgate /api/me", "Python /api/me"];
    let make = |t: &str| {
        vec![
            load(lab, format!("{}/healthz", lab.vx_url)),
            load(lab, format!("{}/api/me", lab.vx_url)).bearer(t),
            load(lab, format!("{}/api/me", lab.py_url)).bearer(t),
        ]
    };
    let runs = series(lab, &names, make).await?;
    let mut rows = Vec::new();
    let (mut r_health, mut r_py, mut me_p99, mut py_p99) = (vec![], vec![], vec![], vec![]);
    for (i, r) in runs.iter().enumerate() {
        let (h, m, p) = (&r[0], &r[1], &r[2]);
        r_health.push(m.rps / h.rps);
        r_py.push(m.rps / p.rps);
        me_p99.push(m.p99_ms);
        py_p99.push(p.p99_ms);
        rows.push(vec![
            (i + 1).to_string(),
            rps(h),
            p99(h),
            rps(m),
            format!("{:.2}", m.p50_ms),
            p99(m),
            rps(p),
            format!("{:.2}", p.p50_ms),
            p99(p),
            format!("{:.2}", m.rps / h.rps),
            format!("{:.1}", m.rps / p.rps),
        ]);
    }
    let col = |k: usize| spread(&runs.iter().map(|r| r[k].rps).collect::<Vec<_>>());
    let (sh, sm, sp) = (col(0), col(1), col(2));
    let (rh, rpy) = (spread(&r_health), spread(&r_py));
    rep.row(
        "`GET /api/me` (bearer) vs own `/healthz`, throughput ratio",
        format!(
            "{} ({:.0} vs {:.0} req/s)",
            rh.show(2),
            sm.median,
            sh.median
        ),
        "≥ 0.8×",
        Verdict::of(rh.median >= 0.8),
    );
    rep.row(
        "`GET /api/me` vs Python (FastAPI + PyJWT), throughput ratio",
        format!("{}× ({:.0} req/s)", rpy.show(1), sp.median),
        "≥ 10×",
        Verdict::of(rpy.median >= 10.0),
    );
    rep.row(
        "`GET /api/me` p99 latency, voxgate / Python",
        format!(
            "{:.2} ms / {:.2} ms",
            spread(&me_p99).median,
            spread(&py_p99).median
        ),
        "reported",
        Verdict::Info,
    );
    let mut s = String::from("### 1. Authenticated API\n\n");
    let _ = writeln!(
        s,
        "voxgate's `GET /api/me` with alice's bearer token (validated, principal resolved, JSON \
         written) against `GET /healthz` on the same instance, and against the Python equivalent \
         (`bench/python/me_fastapi.py`: FastAPI {} uvicorn workers with uvloop/httptools, PyJWT \
         checking RS256 against the realm JWKS, `iss`, `aud`, `exp`/`iat`, `typ`; signature \
         verified on every request, no database). Runs alternate the three targets; ratios are \
         taken within a run.\n",
        lab.py_workers
    );
    s.push_str(&commands(&make("$TOKEN"), &names));
    s.push('\n');
    s.push_str(&table(
        &[
            "run",
            "/healthz req/s",
            "p99 ms",
            "/api/me req/s",
            "p50 ms",
            "p99 ms",
            "Python req/s",
            "p50 ms",
            "p99 ms",
            "me/healthz",
            "me/Python",
        ],
        &rows,
    ));
    let _ = writeln!(
        s,
        "\nMedian (min–max) req/s: /healthz {}, /api/me {}, Python {}. \
         Ratios: /api/me ÷ /healthz {}, /api/me ÷ Python {}.\n",
        sh.show(0),
        sm.show(0),
        sp.show(0),
        rh.show(2),
        rpy.show(1)
    );
    rep.section(s);
    Ok(())
}
