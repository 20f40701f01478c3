//! Section 7: throughput and p99 latency against concurrent connections.

use super::*;

/// Concurrent connections of the curves.
const CURVE_CONNECTIONS: [u32; 6] = [1, 4, 16, 64, 256, 1024];

/// Section 7, throughput and p99 latency against concurrent connections:
/// `/api/me` and a speech cache hit from voxgate beside the same bytes from
/// nginx (plain HTTP, static files). Written as a chart beside the report.
pub async fn curves(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let token = lab.token("alice").await?;
    let me_url = format!("{}/api/me", lab.vx_url);
    let (_, me) = get_ok(&lab.http, &me_url, Some(&token)).await?;
    std::fs::write(lab.work.join("static/me.json"), &me)?;
    let hit_url = register(lab, &token, LONG_TEXT).await?;
    let (_, audio) = get_ok(&lab.http, &hit_url, Some(&token)).await?;
    let (h, again) = get_ok(&lab.http, &hit_url, Some(&token)).await?;
    ensure!(audio == again && cache_header(&h) == "hit", "a cache hit");
    std::fs::write(lab.work.join("static/speech.mp3"), &audio)?;
    let targets: [(&str, String, bool); 4] = [
        ("voxgate /api/me", me_url, true),
        (
            "nginx me.json",
            format!("{}/me.json", lab.static_url),
            false,
        ),
        ("voxgate cache hit", hit_url, true),
        (
            "nginx speech.mp3",
            format!("{}/speech.mp3", lab.static_url),
            false,
        ),
    ];
    let seconds = Duration::from_secs(lab.args.curve_seconds);
    // results[target][level]
    let mut results: Vec<Vec<WrkResult>> = vec![Vec::new(); targets.len()];
    for (t, (name, url, bearer)) in targets.iter().enumerate() {
        for c in CURVE_CONNECTIONS {
            let threads = lab.args.threads.min(c);
            let mut l = Load::new(url.clone(), threads, c, seconds);
            if *bearer {
                // A fresh token per point: the series outlasts one.
                l = l.bearer(&lab.token("alice").await?);
            }
            eprintln!("  {name}, {c} connections");
            let mut w = l.clone();
            w.duration = Duration::from_secs(1);
            w.run().await?;
            results[t].push(checked(name, l.run().await?)?);
        }
    }
    let series = |k: usize, value: fn(&WrkResult) -> f64| {
        let points = CURVE_CONNECTIONS.iter().zip(&results[k]);
        (
            targets[k].0,
            points.map(|(c, r)| (f64::from(*c), value(r))).collect(),
        )
    };
    write_chart(
        lab,
        CURVES_SVG,
        "concurrent connections (wrk, keep-alive)",
        vec![
            (
                "Throughput (requests/s)",
                (0..targets.len()).map(|k| series(k, |r| r.rps)).collect(),
            ),
            (
                "p99 latency (ms)",
                (0..targets.len())
                    .map(|k| series(k, |r| r.p99_ms))
                    .collect(),
            ),
        ],
    )?;

    let at = |k: usize, c: u32| {
        let i = CURVE_CONNECTIONS.iter().position(|x| *x == c).unwrap();
        &results[k][i]
    };
    rep.row(
        "`/api/me` vs nginx static at 1 / 64 / 1024 connections (req/s)",
        format!(
            "{:.0} vs {:.0} / {:.0} vs {:.0} / {:.0} vs {:.0}",
            at(0, 1).rps,
            at(1, 1).rps,
            at(0, 64).rps,
            at(1, 64).rps,
            at(0, 1024).rps,
            at(1, 1024).rps
        ),
        "chart",
        Verdict::Info,
    );
    let mut s = String::from("### 7. Throughput and latency against concurrency\n\n");
    let _ = writeln!(
        s,
        "Each target at 1, 4, 16, 64, 256 and 1024 keep-alive connections, {} s per point after \
         1 s of warm-up, wrk with up to {} threads; nginx serves the identical bytes as static \
         files over plain HTTP (`sendfile on`). voxgate's `/api/me` needs a bearer token, which \
         it validates (from its cache after the first request).\n\n![Throughput and p99 latency \
         against concurrent connections]({CURVES_SVG})\n",
        lab.args.curve_seconds, lab.args.threads
    );
    let mut header = vec!["connections".to_string()];
    for (name, _, _) in &targets {
        header.push(format!("{name} req/s"));
        header.push("p99 ms".into());
    }
    let rows: Vec<Vec<String>> = CURVE_CONNECTIONS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut row = vec![c.to_string()];
            for r in &results {
                row.push(format!("{:.0}", r[i].rps));
                row.push(format!("{:.2}", r[i].p99_ms));
            }
            row
        })
        .collect();
    s.push_str(&table(&header, &rows));
    rep.section(s);
    Ok(())
}

/// The concurrency chart, beside docs/benchmarks.md.
pub const CURVES_SVG: &str = "benchmarks-concurrency.svg";
