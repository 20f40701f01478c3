//! The whole of docs/benchmarks.md, and what it says about the machine.

use super::*;

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into())
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|o| {
            o.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| {
                l.trim_start_matches("PRETTY_NAME=")
                    .trim_matches('"')
                    .to_string()
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn python_packages(lab: &Lab) -> String {
    let out =
        std::process::Command::new(lab.path(&lab.args.venv.join("bin/pip").to_string_lossy()))
            .args(["freeze", "--all"])
            .output();
    let wanted = [
        "fastapi",
        "uvicorn",
        "uvloop",
        "httptools",
        "starlette",
        "pyjwt",
        "cryptography",
        "flask",
        "werkzeug",
        "gunicorn",
        "boto3",
        "botocore",
    ];
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| {
                let name = l.split("==").next().unwrap_or("").to_ascii_lowercase();
                wanted.contains(&name.as_str())
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => "unknown".into(),
    }
}

pub fn git_revision(lab: &Lab) -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&lab.root)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let rev = run(&["rev-parse", "--short", "HEAD"]);
    let dirty = !run(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if rev.is_empty() {
        "unknown".into()
    } else if dirty {
        format!("{rev} with uncommitted changes")
    } else {
        rev
    }
}

/// The whole of docs/benchmarks.md.
pub fn document(lab: &Lab, rep: &Report, elapsed_secs: u64) -> anyhow::Result<String> {
    let out = lab.path(&lab.args.out.to_string_lossy());
    let notes = std::fs::read_to_string(&out)
        .ok()
        .and_then(|old| report::previous_notes(&old))
        .unwrap_or_else(|| "(No notes yet.)".into());
    let now = time::OffsetDateTime::now_utc();
    let date = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute()
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let postgres = std::process::Command::new("psql")
        .arg(&lab.args.database_url)
        .args(["-Atqc", "SHOW server_version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let env = crate::voxgate_env(&lab.args, "http://127.0.0.1:PORT", 0, "ISSUER", "POLLY");
    let mut d = String::new();
    d.push_str("# Benchmarks\n\n");
    d.push_str(
        "Measured speed and memory of voxgate against its own baselines, the Python \
         equivalents and nginx. Everything here is produced by one command, which builds the \
         release binaries, sets up the machine (Debian packages `wrk` and `nginx`, a fresh \
         Postgres database, the Python venv, a local CA), runs every measurement and rewrites \
         this file (only the notes at the end are kept):\n\n```sh\nscripts/bench\n```\n\n\
         Benchmarks are separate from the tests: the test suite makes no timing assertions.\n\n",
    );
    let _ = writeln!(
        d,
        "Last run: {date}, voxgate {}, {} measured runs of {} s per comparison (after {} s of \
         warm-up each), whole run {} min {} s including the build and criterion.\n",
        lab.args
            .revision
            .clone()
            .unwrap_or_else(|| git_revision(lab)),
        lab.args.runs,
        lab.args.seconds,
        lab.args.warmup,
        elapsed_secs / 60,
        elapsed_secs % 60
    );
    d.push_str("## Summary\n\n");
    d.push_str(&rep.summary_table());
    d.push_str(
        "\nRatios are computed within each run (the compared servers measured back to back) and \
         reported as the median with the range over runs; the target is judged on the median.\n\n",
    );
    d.push_str("## Machine and versions\n\n");
    d.push_str(&table(
        &["", ""],
        &[
            vec!["CPU".into(), format!("{} × {}", cores, cpu_model())],
            vec!["memory".into(), mem_total()],
            vec![
                "OS / kernel".into(),
                format!("{} / {}", os_name(), version_of("uname", &["-r"])),
            ],
            vec!["rustc".into(), version_of("rustc", &["-V"])],
            vec!["nginx".into(), version_of("nginx", &["-v"])],
            vec![
                "wrk".into(),
                version_of("wrk", &["-v"])
                    .split(" Copyright")
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ],
            vec!["PostgreSQL".into(), postgres],
            vec![
                "espeak-ng (used by the Polly stand-in)".into(),
                version_of("espeak-ng", &["--version"]),
            ],
            vec![
                "Python".into(),
                version_of(
                    &lab.path(&lab.args.venv.join("bin/python").to_string_lossy())
                        .to_string_lossy(),
                    &["--version"],
                ),
            ],
            vec!["Python packages".into(), python_packages(lab)],
        ],
    ));
    d.push_str("\n## Method\n\n");
    let _ = writeln!(
        d,
        "- Everything runs on this one machine over loopback (127.0.0.1): the **load generator \
         shares the same {cores} cores** with the server under test, the stand-ins, Postgres and \
         nginx, so absolute figures are lower than on a dedicated load host; ratios between \
         servers measured the same way are the meaningful figures.\n\
         - Load: wrk (`-t{} -c{}`, keep-alive, `--latency`), each series warmed up for {} s, \
         then {} runs of {} s; a response other than 2xx/3xx fails the benchmark instead of \
         being counted as throughput. Latency and memory figures come from small Rust clients \
         in `bench/src/sections/`.\n\
         - Servers: release builds (`cargo build --release`); Keycloak stand-in \
         (`keycloak-standin --realm keycloak-realm/realm.json`) and Polly stand-in \
         (`polly-standin --control`) as separate processes; nginx with the project \
         configuration; Python servers from `bench/python/requirements.txt`.\n\
         - Tokens: alice's (an admin) from the password grant of the dev-only `voxgate-cli` \
         client, fetched fresh for every run (they live 300 s). Admins are exempt from the \
         speech quota, and the rate limit is raised, so neither interferes with throughput.\n\
         - voxgate's environment (secrets are the realm's dev-only ones):\n",
        lab.args.threads, lab.args.connections, lab.args.warmup, lab.args.runs, lab.args.seconds
    );
    d.push_str("```sh\n");
    for (k, v) in &env {
        let shown = match k.as_str() {
            "VOXGATE_BIND" => "127.0.0.1:<free port>".to_string(),
            "VOXGATE_PUBLIC_URL" => "http://127.0.0.1:<port>".to_string(),
            "VOXGATE_OIDC_ISSUER" => "http://127.0.0.1:<stand-in port>/realms/voxgate".to_string(),
            "AWS_ENDPOINT_URL_POLLY" => "http://127.0.0.1:<stand-in port>".to_string(),
            _ => v.clone(),
        };
        let _ = writeln!(d, "{k}={shown}");
    }
    d.push_str("```\n\n");
    let _ = write!(
        d,
        "`VOXGATE_TTS_CONCURRENCY` is raised from its default of 8 so that 100 distinct \
         syntheses can stream at once (4b), and `VOXGATE_TTS_USER_CONCURRENCY` with it, since \
         one user's token stands for many people here; everything else is at its default (10 \
         Postgres connections, {cores} tokio worker threads on this machine, one per core).\n\n",
    );
    d.push_str("## Results\n\n");
    for s in &rep.sections {
        d.push_str(s);
        d.push('\n');
    }
    d.push_str("## Notes\n\n");
    d.push_str(report::NOTES_START);
    d.push('\n');
    d.push_str(&notes);
    d.push('\n');
    d.push_str(report::NOTES_END);
    d.push('\n');
    Ok(d)
}
