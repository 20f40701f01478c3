//! The admin user list on 100,000 users: the first, a middle and the last
//! page in each order, a search, and a filter, as the admin page asks for
//! them (`GET /api/admin/users`, 25 a page, with the total).

use super::*;

/// Users planted for the measurement.
const USERS: i64 = 100_000;
const PER_PAGE: i64 = 25;

/// Plants `USERS` active users straight into Postgres (a third never signed
/// in), as a realm that grew over years would look to voxgate, vacuumed as
/// autovacuum would.
async fn plant(db: &sqlx::PgPool, run_id: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO users (keycloak_id, username, email, first_name, last_name, status, created_at, last_login_at)
         SELECT 'bench-' || $1 || '-' || g, 'bench-' || $1 || '-' || lpad(g::text, 6, '0'),
                'bench-' || $1 || '-' || g || '@example.com', 'First' || (g % 977), 'Last' || (g % 613),
                'active', now() - (($2 - g) * interval '1 minute'),
                CASE WHEN g % 3 = 0 THEN NULL ELSE now() - ((g * 7919) % $2) * interval '1 second' END
           FROM generate_series(1, $2) AS g",
    )
    .bind(run_id)
    .bind(USERS)
    .execute(db)
    .await?;
    // As autovacuum leaves a table that has settled: statistics, and the
    // visibility map that lets index-only scans skip the table.
    sqlx::query("VACUUM ANALYZE users").execute(db).await?;
    Ok(())
}

pub async fn admin_list(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let db = sqlx::PgPool::connect(&lab.args.database_url).await?;
    plant(&db, &lab.run_id).await?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE status IN ('pending', 'active')")
            .fetch_one(&db)
            .await?;
    let last = (total + PER_PAGE - 1) / PER_PAGE;
    let middle = last / 2;
    let url = |q: String| format!("{}/api/admin/users?per_page={PER_PAGE}&{q}", lab.vx_url);
    let cases: Vec<(String, String)> = vec![
        ("created, page 1".into(), url("page=1".into())),
        (
            format!("created, page {middle}"),
            url(format!("page={middle}")),
        ),
        (
            format!("created, page {last} (last)"),
            url(format!("page={last}")),
        ),
        (
            format!("username, page {middle}"),
            url(format!("sort=username&page={middle}")),
        ),
        (
            "-lastSignIn, page 1".into(),
            url("sort=-lastSignIn&page=1".into()),
        ),
        (
            format!("-lastSignIn, page {middle}"),
            url(format!("sort=-lastSignIn&page={middle}")),
        ),
        (
            format!("lastSignIn, page {last} (last)"),
            url(format!("sort=lastSignIn&page={last}")),
        ),
        ("search `-04217`".into(), url("search=-04217".into())),
        ("status failed (none)".into(), url("status=failed".into())),
    ];
    let token = lab.token("alice").await?;
    for (name, u) in &cases {
        get_ok(&lab.http, u, Some(&token))
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
    let make = |t: &str| {
        cases
            .iter()
            .map(|(_, u)| {
                let mut l = load(lab, u.clone()).bearer(t);
                // A list page is an admin's click, not a hot path: a few
                // connections show its latency without queueing.
                l.connections = l.connections.min(8);
                l
            })
            .collect::<Vec<_>>()
    };
    let runs = series(lab, &names, make).await?;
    let mut rows = Vec::new();
    let mut worst_p99: f64 = 0.0;
    for (i, name) in names.iter().enumerate() {
        let r: Vec<&WrkResult> = runs.iter().map(|run| &run[i]).collect();
        let s_rps = spread(&r.iter().map(|x| x.rps).collect::<Vec<_>>());
        let s_p50 = spread(&r.iter().map(|x| x.p50_ms).collect::<Vec<_>>());
        let s_p99 = spread(&r.iter().map(|x| x.p99_ms).collect::<Vec<_>>());
        worst_p99 = worst_p99.max(s_p99.median);
        rows.push(vec![
            name.to_string(),
            s_rps.show(0),
            s_p50.show(2),
            s_p99.show(2),
        ]);
    }
    rep.row(
        "Admin user list on 100k users, worst p99 of a page (any order, first to last page, search)",
        format!("{worst_p99:.1} ms"),
        "< 250 ms",
        Verdict::of(worst_p99 < 250.0),
    );
    let mut s = String::from("### Admin user list on 100,000 users\n\n");
    let _ = writeln!(
        s,
        "{USERS} active users planted in Postgres (a third never signed in; sign-in times \
         scattered; `VACUUM ANALYZE` after, as autovacuum leaves a settled table), {total} \
         listed by default (migration 0020's indexes). Each case is `GET /api/admin/users` with \
         alice's bearer token, {PER_PAGE} a page, as the admin page asks for it: the page's ids \
         in the order asked, the rows, and the total (`count(*)` over the filter), two queries. \
         At most 8 connections (an admin's clicks, not a hot path). Median (min–max) of {} runs.\n",
        lab.args.runs
    );
    s.push_str(&table(&["case", "req/s", "p50 ms", "p99 ms"], &rows));
    s.push('\n');
    rep.section(s);
    sqlx::query("DELETE FROM users WHERE keycloak_id LIKE 'bench-' || $1 || '-%'")
        .bind(&lab.run_id)
        .execute(&db)
        .await?;
    Ok(())
}
