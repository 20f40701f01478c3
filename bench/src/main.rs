//! voxgate's load benchmarks: starts the stand-ins, voxgate, the Python
//! comparison servers and nginx on loopback, measures with wrk and small
//! clients, and rewrites docs/benchmarks.md.
//!
//! Run it through `scripts/bench`, which builds the release binaries,
//! prepares the machine (packages, Postgres, a fresh database, the Python
//! venv, local certificates) and runs the criterion token benchmark first.

mod lab;
mod provision;
mod report;
mod sections;
mod wrk;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use lab::start_lab;
pub use lab::{CACHE_MAX_BYTES, Lab, RATE_PER_MINUTE, REALM, TTS_CONCURRENCY, voxgate_env};
use report::Report;
use voxgate_bench::procs;

#[derive(Parser, Clone)]
#[command(about = "Runs voxgate's load benchmarks and rewrites docs/benchmarks.md")]
pub struct Args {
    /// Repository root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Where the release binaries are (relative to the root).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Python venv with bench/python/requirements.txt installed.
    #[arg(long, default_value = "target/bench-venv")]
    venv: PathBuf,
    /// Scratch directory: logs, static files, nginx configuration.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Local CA and server certificate from scripts/make-certs.
    #[arg(long, default_value = "target/bench/certs")]
    certs: PathBuf,
    /// An empty database for this run (scripts/bench recreates it).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/voxgate_bench"
    )]
    database_url: String,
    /// Measured runs per comparison.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Length of one wrk run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Length of one point of the concurrency curves.
    #[arg(long, default_value_t = 5)]
    curve_seconds: u64,
    /// Warm-up before each series of wrk runs.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// wrk threads and connections for throughput runs.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Where criterion wrote the token benchmark's estimates.
    #[arg(long, default_value = "target/criterion")]
    criterion_dir: PathBuf,
    /// The report to rewrite.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Only these sections (api, tls, hit, ttfb, rss, flight, original,
    /// provision, token, voices, curves, growth, listening, scale); all when
    /// omitted.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The neural voice's Python (scripts/bench installs it); without it the
    /// voices section measures espeak-ng and Polly only.
    #[arg(long, env = "VOXGATE_PIPER_PYTHON")]
    piper_python: Option<PathBuf>,
    /// The recogniser's Python (scripts/bench installs it); the listening
    /// section needs it.
    #[arg(long, env = "VOXGATE_WHISPER_PYTHON")]
    whisper_python: Option<PathBuf>,
    /// Before measuring, print every URL and a token and keep the servers
    /// up this long (to profile or try things by hand).
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// The Polly stand-in's stream chunk size (its default is 4096).
    #[arg(long, default_value_t = 4096)]
    polly_chunk_size: usize,
    /// Extra environment for voxgate, KEY=VALUE (repeatable), to compare
    /// variants such as another allocator through LD_PRELOAD.
    #[arg(long = "voxgate-env")]
    voxgate_env: Vec<String>,
    /// The source revision the binaries were built from (scripts/bench reads
    /// it before building; read at start when not given).
    #[arg(long)]
    revision: Option<String>,
    /// Seconds `scripts/bench` spent before this program (build, setup,
    /// criterion), for the report.
    #[arg(long, default_value_t = 0)]
    setup_seconds: u64,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let run = run(args);
    tokio::pin!(run);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Returning (rather than exiting) drops the lab, which stops every
    // process it started.
    tokio::select! {
        r = &mut run => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = term.recv() => bail!("terminated"),
    }
    eprintln!(
        "voxgate-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut lab = start_lab(args).await?;
    let mut rep = Report::default();
    let a = lab.args.clone();
    if a.hold > 0 {
        eprintln!(
            "voxgate-bench: holding for {} s\n  voxgate {} (pid {})\n  python {}\n  flask {}\n  \
             polly {}\n  issuer {}\n  nginx static {}\n  nginx TLS {} static TLS {}\n  token {}",
            a.hold,
            lab.vx_url,
            lab.vx_pid,
            lab.py_url,
            lab.flask_url,
            lab.polly_url,
            lab.issuer,
            lab.static_url,
            lab.tls_url,
            lab.tls_static_url,
            lab.token("alice").await?
        );
        tokio::time::sleep(Duration::from_secs(a.hold)).await;
    }
    macro_rules! section {
        ($name:literal, $f:path) => {
            if a.wants($name) {
                eprintln!("voxgate-bench: {}", $name);
                $f(&mut lab, &mut rep)
                    .await
                    .with_context(|| format!("section {}", $name))?;
                lab.check_alive()?;
            }
        };
    }
    section!("api", sections::api);
    section!("tls", sections::tls);
    section!("hit", sections::cache_hit);
    section!("ttfb", sections::ttfb_miss);
    section!("rss", sections::rss_streams);
    section!("long", sections::long_hits);
    section!("flight", sections::single_flight);
    section!("original", sections::original);
    section!("token", sections::token_micro);
    section!("provision", provision::provisioning);
    section!("voices", sections::voices);
    section!("curves", sections::curves);
    section!("growth", sections::growth);
    section!("listening", sections::listening);
    section!("scale", sections::scale);
    section!("admin", sections::admin_list);
    let elapsed = started.elapsed().as_secs() + a.setup_seconds;
    let doc = sections::document(&lab, &rep, elapsed)?;
    let out = lab.path(&a.out.to_string_lossy());
    std::fs::write(&out, doc).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("voxgate-bench: wrote {}", out.display());
    Ok(())
}
