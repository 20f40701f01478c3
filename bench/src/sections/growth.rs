//! Section 8: cost as data grows.

use super::*;

/// Data sizes of the growth curves.
const GROWTH_SIZES: [i64; 3] = [1_000, 10_000, 100_000];

/// Median milliseconds of `n` sequential GETs (each must answer 200).
async fn median_get_ms(lab: &Lab, url: &str, token: &str, n: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = lab.http.get(url).bearer_auth(token).send().await?;
        ensure!(r.status() == 200, "{url}: HTTP {}", r.status());
        r.bytes().await?;
        times.push(ms(t.elapsed()));
    }
    Ok(spread(&times).median)
}

/// Median milliseconds of one SQL statement run `n` times from here.
async fn median_sql_ms(db: &sqlx::PgPool, sql: &str, n: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sqlx::query(sql).execute(db).await?;
        times.push(ms(t.elapsed()));
    }
    Ok(spread(&times).median)
}

/// Section 8, cost as data grows: the admin user list and search, the
/// session lookup, and a cache miss with the cache at its bound, at 1k, 10k
/// and 100k rows, made by bulk inserts.
pub async fn growth(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let db = sqlx::PgPool::connect(&lab.args.database_url).await?;
    let token = lab.token("alice").await?;
    let users_url = |q: &str| format!("{}/api/admin/users?{q}", lab.vx_url);
    let bound: i64 = crate::CACHE_MAX_BYTES.parse()?;
    // The statement a session lookup runs, for a hash that exists.
    let session_sql = "SELECT user_id FROM sessions WHERE id_hash = sha256('growth-probe'::bytea) \
                       AND expires_at > now() AND last_seen_at > now() - make_interval(secs => 3600)";
    // The eviction check this version runs after a miss, and the whole-cache
    // window sum the previous version ran instead.
    let evict_check_sql = format!("SELECT bytes > {bound} FROM tts_cache_usage WHERE id");
    let old_evict_sql = format!(
        "SELECT count(*) FROM (SELECT key, sum(size) OVER (ORDER BY last_access_at DESC, key) \
         AS running FROM tts_cache WHERE complete) ranked WHERE running > {bound}"
    );
    let names = [
        "list, first page",
        "list, last page",
        "search, one match",
        "session lookup",
        "miss at the bound",
        "eviction check",
        "old eviction query",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut miss = 0;
    for n in GROWTH_SIZES {
        eprintln!("  {n} rows");
        // Users: bulk rows up to n, one of them findable by a rare name.
        sqlx::query(
            "INSERT INTO users (username, email, first_name, last_name, keycloak_id)
             SELECT 'grow' || g, 'grow' || g || '@example.com', 'Grow', 'User ' || g,
                    'growth-' || g
               FROM generate_series((SELECT count(*) FROM users WHERE username LIKE 'grow%') + 1, $1) g",
        )
        .bind(n)
        .execute(&db)
        .await?;
        // Sessions of those users, one with a known hash.
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, id_token, access_token,
                                   access_expires_at, expires_at)
             SELECT sha256(('growth-' || u.username)::bytea), u.id, 'c', 'i', 'a',
                    now() + interval '1 hour', now() + interval '1 day'
               FROM users u WHERE u.username LIKE 'grow%'
             ON CONFLICT DO NOTHING",
        )
        .execute(&db)
        .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, id_token, access_token,
                                   access_expires_at, expires_at)
             SELECT sha256('growth-probe'::bytea), id, 'c', 'i', 'a', now() + interval '1 hour',
                    now() + interval '1 day' FROM users WHERE username = 'grow1'
             ON CONFLICT DO NOTHING",
        )
        .execute(&db)
        .await?;
        // Cache entries up to n, filling the cache exactly to its bound, in
        // random LRU order (metadata only: eviction reads no audio).
        sqlx::query("DELETE FROM tts_cache WHERE key LIKE 'growth-%'")
            .execute(&db)
            .await?;
        let used: i64 = sqlx::query_scalar("SELECT bytes FROM tts_cache_usage")
            .fetch_one(&db)
            .await?;
        let each = ((bound - used) / n).max(1);
        sqlx::query(
            "INSERT INTO tts_cache (key, content_type, size, complete, writer, last_access_at)
             SELECT 'growth-' || g, 'audio/mpeg', $2, true, gen_random_uuid(),
                    now() - random() * interval '30 days'
               FROM generate_series(1, $1) g",
        )
        .bind(n)
        .bind(each)
        .execute(&db)
        .await?;
        sqlx::raw_sql("ANALYZE users; ANALYZE sessions; ANALYZE tts_cache")
            .execute(&db)
            .await?;
        let last_page = (n + 2) / 25 + 1;
        results[0].push(median_get_ms(lab, &users_url("per_page=25"), &token, 20).await?);
        results[1].push(
            median_get_ms(
                lab,
                &users_url(&format!("per_page=25&page={last_page}")),
                &token,
                20,
            )
            .await?,
        );
        results[2].push(
            median_get_ms(
                lab,
                &users_url(&format!("search=grow{}", n / 2 + 7)),
                &token,
                20,
            )
            .await?,
        );
        results[3].push(median_sql_ms(&db, session_sql, 200).await?);
        let mut misses = Vec::new();
        for _ in 0..10 {
            miss += 1;
            let url = format!(
                "{}{}",
                lab.vx_url,
                legacy_path(&format!("Growth {} miss {miss}", lab.run_id))
            );
            let t = Instant::now();
            get_ok(&lab.http, &url, Some(&token)).await?;
            misses.push(ms(t.elapsed()));
        }
        results[4].push(spread(&misses).median);
        results[5].push(median_sql_ms(&db, &evict_check_sql, 50).await?);
        results[6].push(median_sql_ms(&db, &old_evict_sql, 5).await?);
    }
    let series = |k: usize| {
        let points = GROWTH_SIZES.iter().zip(&results[k]);
        (names[k], points.map(|(n, v)| (*n as f64, *v)).collect())
    };
    write_chart(
        lab,
        GROWTH_SVG,
        "rows (users, sessions, cache entries)",
        vec![
            ("Admin API (median ms)", (0..3).map(series).collect()),
            (
                "Sessions and the speech cache (median ms)",
                (3..7).map(series).collect(),
            ),
        ],
    )?;
    let growth = |k: usize| results[k][2] / results[k][0].max(0.001);
    rep.row(
        "Cost at 100k rows ÷ at 1k: admin list first page / admin search / session lookup (SQL) / miss at the cache bound",
        format!(
            "{:.1}× / {:.1}× / {:.1}× / {:.1}× (previous eviction query {:.1}×: {:.2} → {:.2} ms)",
            growth(0),
            growth(2),
            growth(3),
            growth(4),
            growth(6),
            results[6][0],
            results[6][2]
        ),
        "flat or log",
        Verdict::Info,
    );
    let mut s = String::from("### 8. Cost as data grows\n\n");
    let _ = writeln!(
        s,
        "Rows are made by bulk inserts (`generate_series`), not through the API: users (with \
         one session each), and speech cache entries that fill the cache exactly to its bound \
         (`VOXGATE_TTS_CACHE_MAX_BYTES={bound}`, metadata only, random ages), so every miss \
         below evicts. API timings are medians of 20 sequential requests (10 for misses, each a \
         new text through the Polly stand-in); the session lookup, the eviction check and the \
         previous version's eviction query are SQL statements timed from the benchmark (medians, \
         round trip included).\n\n![Cost against data size]({GROWTH_SVG})\n"
    );
    let mut header = vec!["rows".to_string()];
    header.extend(names.iter().map(|n| format!("{n} ms")));
    let rows: Vec<Vec<String>> = GROWTH_SIZES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut row = vec![n.to_string()];
            row.extend(results.iter().map(|r| format!("{:.2}", r[i])));
            row
        })
        .collect();
    s.push_str(&table(&header, &rows));
    rep.section(s);
    sqlx::query("DELETE FROM tts_cache WHERE key LIKE 'growth-%'")
        .execute(&db)
        .await?;
    db.close().await;
    Ok(())
}

/// The growth chart, beside docs/benchmarks.md.
pub const GROWTH_SVG: &str = "benchmarks-growth.svg";
