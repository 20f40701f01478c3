//! Section 2: voxgate behind the project's nginx (TLS) vs a static file over the same TLS.

use super::*;

/// Section 2: the same request through the project's nginx (TLS) vs
/// nginx serving a static file over the same TLS.
pub async fn tls(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let (tls, tls_static, tls_unix, client) = (
        lab.tls_url.clone(),
        lab.tls_static_url.clone(),
        lab.tls_unix_url.clone(),
        lab.tls_client.clone(),
    );
    let token = lab.token("alice").await?;
    let (_, body) = get_ok(&client, &format!("{tls}/api/me"), Some(&token)).await?;
    // The static file is the very JSON /api/me answers, so both sides
    // move the same bytes.
    std::fs::write(lab.work.join("static/me.json"), &body)?;
    let (_, same) = get_ok(&client, &format!("{tls_static}/me.json"), None).await?;
    ensure!(same == body, "nginx serves the static copy unchanged");
    let (_, over_socket) = get_ok(&client, &format!("{tls_unix}/api/me"), Some(&token)).await?;
    ensure!(
        over_socket == body,
        "the instance on the Unix socket answers the same"
    );
    // /healthz through the same proxy separates the cost of the extra hop
    // from the cost of the authenticated handler.
    let names = [
        "nginx TLS → voxgate /api/me",
        "nginx TLS → voxgate /healthz",
        "nginx TLS static me.json",
        "nginx TLS → voxgate on a Unix socket /api/me",
    ];
    let make = |t: &str| {
        vec![
            load(lab, format!("{tls}/api/me")).bearer(t),
            load(lab, format!("{tls}/healthz")),
            load(lab, format!("{tls_static}/me.json")),
            load(lab, format!("{tls_unix}/api/me")).bearer(t),
        ]
    };
    let tw_before = time_wait_to(lab.vx_port());
    let runs = series(lab, &names, make).await?;
    let tw_after = time_wait_to(lab.vx_port());
    let mut rows = Vec::new();
    let (mut ratios, mut health_ratios, mut unix_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in runs.iter().enumerate() {
        ratios.push(r[0].rps / r[2].rps);
        health_ratios.push(r[1].rps / r[2].rps);
        unix_ratios.push(r[3].rps / r[2].rps);
        rows.push(vec![
            (i + 1).to_string(),
            rps(&r[0]),
            p99(&r[0]),
            rps(&r[3]),
            p99(&r[3]),
            rps(&r[1]),
            p99(&r[1]),
            rps(&r[2]),
            p99(&r[2]),
            format!("{:.2}", r[0].rps / r[2].rps),
            format!("{:.2}", r[3].rps / r[2].rps),
            format!("{:.2}", r[1].rps / r[2].rps),
        ]);
    }
    let ratio = spread(&ratios);
    let health_ratio = spread(&health_ratios);
    let unix_ratio = spread(&unix_ratios);
    let col = |k: usize| spread(&runs.iter().map(|r| r[k].rps).collect::<Vec<_>>());
    rep.row(
        "`GET /api/me` through nginx TLS vs nginx static file over the same TLS",
        format!(
            "{} ({:.0} vs {:.0} req/s; `/healthz` the same way {})",
            ratio.show(2),
            col(0).median,
            col(2).median,
            health_ratio.show(2)
        ),
        "≥ 0.5×",
        Verdict::of(ratio.median >= 0.5),
    );
    rep.row(
        "the same with voxgate on a Unix socket (`VOXGATE_BIND=unix:…`)",
        format!("{} ({:.0} req/s)", unix_ratio.show(2), col(3).median),
        "≥ 0.5×",
        Verdict::of(unix_ratio.median >= 0.5),
    );
    let mut s = String::from("### 2. Through nginx with TLS\n\n");
    s.push_str(
        "nginx runs the project's configuration (`nginx/nginx.conf`, `nginx/snippets/`, \
         `nginx/templates/voxgate.conf.template` rendered for local ports, certificate from \
         `scripts/make-certs`, HTTP/1.1 keep-alive to voxgate). The baseline is a second server \
         in the same `http` block — same certificate, protocols, ciphers and session settings — \
         serving the identical JSON as a static file. wrk negotiates TLS 1.3 over HTTP/1.1 and \
         keeps connections alive, so handshakes are amortised in both. `/healthz` through the \
         same proxy shows what the extra hop alone costs. A second nginx, rendered from the same \
         files with only the upstream changed, proxies to a second voxgate listening on a Unix \
         domain socket (`VOXGATE_BIND=unix:…`); only one of the two is under load at a time.\n\n",
    );
    s.push_str(&commands(&make("$TOKEN"), &names));
    s.push('\n');
    s.push_str(&table(
        &[
            "run",
            "/api/me via nginx req/s",
            "p99 ms",
            "/api/me via nginx, Unix socket req/s",
            "p99 ms",
            "/healthz via nginx req/s",
            "p99 ms",
            "static TLS req/s",
            "p99 ms",
            "/api/me ÷ static",
            "Unix socket ÷ static",
            "/healthz ÷ static",
        ],
        &rows,
    ));
    let _ = writeln!(
        s,
        "\nMedian (min–max): /api/me through nginx {} req/s (on a Unix socket {} req/s), \
         /healthz through nginx {} req/s, static {} req/s; ratios {}, {} and {}. Connections between nginx and voxgate left in \
         TIME-WAIT during the series: {} (upstream keep-alive pool: `keepalive 128` per worker, \
         {} client connections).\n",
        col(0).show(0),
        col(3).show(0),
        col(1).show(0),
        col(2).show(0),
        ratio.show(2),
        unix_ratio.show(2),
        health_ratio.show(2),
        tw_after.saturating_sub(tw_before),
        lab.args.connections
    );
    rep.section(s);
    Ok(())
}
