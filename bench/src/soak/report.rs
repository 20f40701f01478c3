//! Turns the soak's samples, memory readings and end-of-run checks into
//! docs/soak.md and its chart.

use std::collections::BTreeMap;
use std::fmt::Write;

use voxgate_bench::chart::{Band, Figure, Panel, Series};

use crate::traffic::{Outcome, Sample};

/// Seconds after a fault ends during which its effects may still show
/// (requests that started inside it, pools reconnecting).
pub const GRACE: f64 = 5.0;

#[derive(Clone, Debug)]
pub struct Window {
    pub name: &'static str,
    pub from: f64,
    pub to: f64,
}

impl Window {
    /// The request overlapped the fault (or its grace period).
    pub fn touches(&self, s: &Sample) -> bool {
        s.at <= self.to + GRACE && s.end() >= self.from
    }
}

/// Errors of the service outside every fault window.
pub fn stray_errors<'a>(samples: &'a [Sample], windows: &[Window]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.outcome.is_error() && !windows.iter().any(|w| w.touches(s)))
        .collect()
}

/// The `q`-quantile (0..=1) of unsorted values.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i]
}

pub struct RouteRow {
    pub route: &'static str,
    pub by_class: [u64; 5],
    pub p50: f64,
    pub p99: f64,
    pub p99_quiet: f64,
}

/// Per route: answers by class (2xx, 3xx, 4xx, 5xx, no answer) and latency
/// over answered requests, overall and outside fault windows.
pub fn routes(samples: &[Sample], windows: &[Window]) -> Vec<RouteRow> {
    let mut by: BTreeMap<&'static str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by.entry(s.route).or_default().push(s);
    }
    by.into_iter()
        .map(|(route, list)| {
            let mut by_class = [0u64; 5];
            for s in &list {
                let i = match s.outcome {
                    Outcome::Status(c) => (c as usize / 100).clamp(2, 5) - 2,
                    Outcome::Failed => 4,
                };
                by_class[i] += 1;
            }
            let answered = |quiet: bool| -> Vec<f64> {
                list.iter()
                    .filter(|s| matches!(s.outcome, Outcome::Status(_)))
                    .filter(|s| !quiet || !windows.iter().any(|w| w.touches(s)))
                    .map(|s| s.ms)
                    .collect()
            };
            let mut all = answered(false);
            let mut quiet = answered(true);
            RouteRow {
                route,
                by_class,
                p50: quantile(&mut all.clone(), 0.5),
                p99: quantile(&mut all, 0.99),
                p99_quiet: quantile(&mut quiet, 0.99),
            }
        })
        .collect()
}

/// Per `width`-second bucket: (start, requests/s, error %).
pub fn buckets(samples: &[Sample], width: f64, until: f64) -> Vec<(f64, f64, f64)> {
    // Only whole buckets: a last partial one would show as a drop.
    let n = (until / width).floor().max(1.0) as usize;
    let mut count = vec![0u64; n];
    let mut errors = vec![0u64; n];
    for s in samples {
        let i = (s.end() / width) as usize;
        if i >= n {
            continue;
        }
        count[i] += 1;
        if s.outcome.is_error() {
            errors[i] += 1;
        }
    }
    (0..n)
        .map(|i| {
            let rate = count[i] as f64 / width;
            let err = if count[i] == 0 {
                0.0
            } else {
                100.0 * errors[i] as f64 / count[i] as f64
            };
            (i as f64 * width, rate, err)
        })
        .collect()
}

pub fn figure(samples: &[Sample], rss: &[(f64, f64)], windows: &[Window], until: f64) -> Figure {
    let b = buckets(samples, 5.0, until);
    Figure {
        x_label: "seconds since start (shaded: injected faults)".into(),
        x_log2: false,
        panels: vec![
            Panel {
                title: "Throughput (answered requests/s, 5 s buckets)".into(),
                series: vec![Series {
                    name: "requests/s".into(),
                    points: b.iter().map(|p| (p.0, p.1)).collect(),
                }],
            },
            Panel {
                title: "Errors (5xx or no answer, % of requests)".into(),
                series: vec![Series {
                    name: "error %".into(),
                    points: b.iter().map(|p| (p.0, p.2)).collect(),
                }],
            },
            Panel {
                title: "voxgate resident memory (MiB)".into(),
                series: vec![Series {
                    name: "RSS".into(),
                    points: rss.to_vec(),
                }],
            },
        ],
        bands: windows
            .iter()
            .map(|w| Band {
                from: w.from,
                to: w.to,
                label: w.name.into(),
            })
            .collect(),
    }
}

/// One end-of-run check.
pub struct Check {
    pub what: String,
    pub found: String,
    pub expected: String,
    pub ok: bool,
}

pub struct Run {
    pub date: String,
    pub revision: String,
    pub seconds: f64,
    pub warm_at: f64,
    pub rss_warm_mib: f64,
    pub rss_end_mib: f64,
    pub rss_bound_mib: f64,
    pub windows: Vec<Window>,
    pub checks: Vec<Check>,
    pub tables: Vec<(String, i64, String)>,
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.1}")
    }
}

pub fn markdown(run: &Run, samples: &[Sample], chart_file: &str) -> String {
    let mut out = String::new();
    let passed = run.checks.iter().all(|c| c.ok);
    let total = samples.len();
    let _ = write!(
        out,
        "# Soak\n\n\
         A bounded run of mixed traffic against one voxgate on loopback while \
         faults are injected on a schedule; it checks that nothing leaks and \
         nothing acknowledged is lost. Produced by one command, which rewrites \
         this file and `{chart_file}`:\n\n\
         ```sh\nscripts/soak            # 10 minutes; scripts/soak --seconds 120 for a short run\n```\n\n\
         Last run: {date}, voxgate {rev}, {secs:.0} s of traffic, {total} requests. \
         Result: **{verdict}**.\n\n",
        date = run.date,
        rev = run.revision,
        secs = run.seconds,
        verdict = if passed { "PASS" } else { "FAIL" },
    );
    out.push_str(
        "The traffic: browser-style visits (sign-in through the Keycloak page, \
         the chat page's CSRF token, three chat messages with their speech, \
         history, sign-out), bearer API calls (`/api/me`, voices, history), \
         chat over the API with each reply's speech, `/textToSpeech` with \
         three in four texts heard before (cache hits) and one new (a miss), \
         and an admin creating, listing and deleting users (retrying a \
         creation that got no answer with the same `Idempotency-Key`). \
         Keycloak is the stand-in (which can go down and slow down on \
         demand), Polly the Polly stand-in, Postgres the machine's.\n\n",
    );
    let _ = writeln!(
        out,
        "![Throughput, errors and memory over time]({chart_file})\n"
    );
    out.push_str("## Faults injected\n\n| Fault | From (s) | To (s) |\n|---|---|---|\n");
    for w in &run.windows {
        let _ = writeln!(out, "| {} | {:.0} | {:.0} |", w.name, w.from, w.to);
    }
    let _ = write!(
        out,
        "\nA request counts as inside a fault when it overlapped the fault or \
         the {GRACE:.0} s after it.\n\n## Checks\n\n| Check | Found | Expected | |\n|---|---|---|---|\n"
    );
    for c in &run.checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            c.what,
            c.found,
            c.expected,
            if c.ok { "PASS" } else { "**FAIL**" }
        );
    }
    out.push_str(
        "\n## Requests by route and outcome\n\n\
         Latency in ms over answered requests; *p99 quiet* leaves out \
         requests that overlapped a fault.\n\n\
         | Route | 2xx | 3xx | 4xx | 5xx | no answer | p50 | p99 | p99 quiet |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in routes(samples, &run.windows) {
        let c = r.by_class;
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.route,
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            ms(r.p50),
            ms(r.p99),
            ms(r.p99_quiet)
        );
    }
    let _ = write!(
        out,
        "\n## Memory\n\nResident memory of the voxgate process: {warm:.1} MiB once warm \
         (at {at:.0} s), {end:.1} MiB at the end; the bound is {bound:.0} MiB of growth \
         after warm-up.\n\n## Rows left in every table\n\n\
         After the traffic stopped and the provisioning jobs an outage left were \
         settled (`voxgate users recover`).\n\n| Table | Rows | What the traffic should have left |\n|---|---|---|\n",
        warm = run.rss_warm_mib,
        at = run.warm_at,
        end = run.rss_end_mib,
        bound = run.rss_bound_mib,
    );
    for (table, rows, expect) in &run.tables {
        let _ = writeln!(out, "| `{table}` | {rows} | {expect} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, ms: f64, outcome: Outcome) -> Sample {
        Sample {
            route: "GET /x",
            at,
            ms,
            outcome,
        }
    }

    #[test]
    fn errors_count_only_outside_fault_windows_and_their_grace() {
        let windows = [Window {
            name: "Keycloak down",
            from: 100.0,
            to: 130.0,
        }];
        let samples = [
            sample(99.0, 2000.0, Outcome::Status(503)),
            sample(120.0, 5.0, Outcome::Failed),
            sample(134.0, 5.0, Outcome::Status(500)),
            sample(136.0, 5.0, Outcome::Status(502)),
            sample(50.0, 5.0, Outcome::Status(500)),
            sample(60.0, 5.0, Outcome::Status(404)),
        ];
        let stray = stray_errors(&samples, &windows);
        let at: Vec<f64> = stray.iter().map(|s| s.at).collect();
        assert_eq!(at, [136.0, 50.0]);
    }

    #[test]
    fn routes_split_outcomes_and_quantiles() {
        let mut samples: Vec<Sample> = (1..=100)
            .map(|i| sample(i as f64, i as f64, Outcome::Status(200)))
            .collect();
        samples.push(sample(1.0, 1.0, Outcome::Status(302)));
        samples.push(sample(1.0, 1.0, Outcome::Status(429)));
        samples.push(sample(1.0, 1.0, Outcome::Failed));
        let rows = routes(&samples, &[]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].by_class, [100, 1, 1, 0, 1]);
        assert_eq!(rows[0].p99, 99.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn buckets_give_rate_and_error_share() {
        let samples = [
            sample(0.0, 10.0, Outcome::Status(200)),
            sample(1.0, 10.0, Outcome::Status(500)),
            sample(6.0, 10.0, Outcome::Status(200)),
        ];
        let b = buckets(&samples, 5.0, 10.0);
        assert_eq!(b, vec![(0.0, 0.4, 50.0), (5.0, 0.2, 0.0)]);
    }

    #[test]
    fn the_report_names_every_failed_check() {
        let run = Run {
            date: "2026-01-01".into(),
            revision: "abc".into(),
            seconds: 60.0,
            warm_at: 10.0,
            rss_warm_mib: 20.0,
            rss_end_mib: 21.0,
            rss_bound_mib: 32.0,
            windows: vec![],
            checks: vec![Check {
                what: "provisioning jobs".into(),
                found: "2".into(),
                expected: "0".into(),
                ok: false,
            }],
            tables: vec![("users".into(), 3, "reported".into())],
        };
        let md = markdown(&run, &[], "soak.svg");
        assert!(md.contains("Result: **FAIL**"));
        assert!(md.contains("| provisioning jobs | 2 | 0 | **FAIL** |"));
        assert!(md.contains("| `users` | 3 | reported |"));
        assert!(md.contains("![Throughput, errors and memory over time](soak.svg)"));
    }
}
