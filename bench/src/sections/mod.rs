//! The measurements, one file per section of docs/benchmarks.md, the
//! helpers they share, and the document itself (`document.rs`).

mod admin_list;
mod api;
mod cache_hit;
mod curves;
mod document;
mod flight;
mod growth;
mod listening;
mod long_hits;
mod original;
mod rss;
mod scale;
mod tls;
mod token;
mod ttfb;
mod voices;

pub use admin_list::admin_list;
pub use api::api;
pub use cache_hit::cache_hit;
pub use curves::curves;
pub use document::document;
pub use flight::single_flight;
pub use growth::growth;
pub use listening::listening;
pub use long_hits::long_hits;
pub use original::original;
pub use rss::rss_streams;
pub use scale::scale;
pub use tls::tls;
pub use token::token_micro;
pub use ttfb::ttfb_miss;
pub use voices::voices;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aws_sdk_polly::types::{Engine, LanguageCode, OutputFormat, TextType, VoiceId};
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Lab;
use crate::procs::{proc_status_kib, rss_kib, version_of};
use crate::report::{self, Report, Verdict, percentile, spread, table};
use crate::wrk::{Load, WrkResult};

/// About 300 characters: roughly 17 s of speech, a ~100 KB MP3 at the
/// stand-in's 48 kbit/s.
const LONG_TEXT: &str = "Welcome to the voxgate benchmark. This paragraph is long enough \
to become about one hundred kilobytes of speech, which is a typical size for a spoken chat \
reply. It is synthesized once, cached, and then served from the cache many thousands of \
times while the load generator measures how fast that is.";

/// About 200 characters (~11 s of speech, ~16 stream chunks): long enough
/// to hold a stream open for seconds with a per-chunk delay.
const STREAM_TEXT: &str = "is one of a hundred long streams held open at the same time, \
so that the memory each open stream costs the server can be read from its resident set size \
while all of them are still running.";

/// A typical short reply for the comparison with the original endpoint.
const SHORT_TEXT: &str =
    "Thanks for calling. Your appointment is confirmed for Tuesday at ten in the morning.";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn legacy_path(text: &str) -> String {
    format!(
        "/textToSpeech?VoiceId=Joanna&LanguageCode=en-US&OutputFormat=mp3&Text={}",
        enc(text)
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A whole GET, checked for success.
async fn get_ok(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(reqwest::header::HeaderMap, bytes::Bytes)> {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await?;
    if !status.is_success() {
        bail!(
            "GET {url}: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok((headers, body))
}

fn cache_header(h: &reqwest::header::HeaderMap) -> String {
    h.get("x-voxgate-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Time to the first body byte of a GET, then the rest of the body.
async fn ttfb_http(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(Duration, usize, String)> {
    let start = Instant::now();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut r = req.send().await?;
    let status = r.status();
    let cache = cache_header(r.headers());
    if !status.is_success() {
        bail!(
            "GET {url}: HTTP {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let mut first = None;
    let mut len = 0;
    while let Some(chunk) = r.chunk().await? {
        if first.is_none() && !chunk.is_empty() {
            first = Some(start.elapsed());
        }
        len += chunk.len();
    }
    Ok((first.context("empty body")?, len, cache))
}

/// Time to the first audio byte straight from the Polly stand-in, through
/// the same AWS SDK and request shape voxgate uses.
async fn ttfb_polly(lab: &Lab, text: &str) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let out = lab
        .polly
        .synthesize_speech()
        .text(text)
        .text_type(TextType::Text)
        .voice_id(VoiceId::Joanna)
        .output_format(OutputFormat::Mp3)
        .engine(Engine::Standard)
        .language_code(LanguageCode::EnUs)
        .send()
        .await
        .context("SynthesizeSpeech")?;
    let mut stream = out.audio_stream;
    let mut first = None;
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if first.is_none() && !chunk.is_empty() {
            first = Some(start.elapsed());
        }
        len += chunk.len();
    }
    Ok((first.context("empty audio")?, len))
}

/// Registers a synthesis with `POST /api/tts`; returns its URL.
async fn register(lab: &Lab, token: &str, text: &str) -> anyhow::Result<String> {
    let r = lab
        .http
        .post(format!("{}/api/tts", lab.vx_url))
        .bearer_auth(token)
        .json(&json!({"text": text, "voice": "Joanna", "language": "en-US", "format": "mp3"}))
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    ensure!(status == 201, "POST /api/tts: HTTP {status}: {body}");
    Ok(format!(
        "{}{}",
        lab.vx_url,
        body["url"]
            .as_str()
            .context("url in POST /api/tts answer")?
    ))
}

fn load(lab: &Lab, url: String) -> Load {
    Load::new(url, lab.args.threads, lab.args.connections, lab.duration())
}

fn warm(l: &Load, lab: &Lab) -> Load {
    let mut w = l.clone();
    w.duration = lab.warmup();
    w
}

fn checked(name: &str, r: WrkResult) -> anyhow::Result<WrkResult> {
    ensure!(
        r.non_2xx == 0 && r.requests > 0,
        "{name}: {} of {} responses were not successes",
        r.non_2xx,
        r.requests
    );
    Ok(r)
}

fn rps(r: &WrkResult) -> String {
    format!("{:.0}", r.rps)
}

fn p99(r: &WrkResult) -> String {
    format!("{:.2}", r.p99_ms)
}

/// Runs `loads` back to back per run (after one warm-up of each) and
/// returns results[run][load]. A fresh token per run keeps every run
/// inside the tokens' 300 s lifetime.
async fn series(
    lab: &Lab,
    names: &[&str],
    make: impl Fn(&str) -> Vec<Load>,
) -> anyhow::Result<Vec<Vec<WrkResult>>> {
    let token = lab.token("alice").await?;
    for l in make(&token) {
        warm(&l, lab).run().await?;
    }
    let mut runs = Vec::new();
    for run in 0..lab.args.runs {
        let token = lab.token("alice").await?;
        let mut results = Vec::new();
        for (i, l) in make(&token).into_iter().enumerate() {
            eprintln!("  run {} {}", run + 1, names[i]);
            results.push(checked(names[i], l.run().await?)?);
        }
        runs.push(results);
    }
    Ok(runs)
}

fn commands(loads: &[Load], names: &[&str]) -> String {
    let mut s = String::from("```sh\n");
    for (l, n) in loads.iter().zip(names) {
        let _ = writeln!(s, "# {n}\n{}", l.command_line());
    }
    s.push_str("```\n");
    s
}

/// A line chart over a log₂ x axis, written beside the report.
type Line<'a> = (&'a str, Vec<(f64, f64)>);

fn write_chart(
    lab: &Lab,
    file: &str,
    x_label: &str,
    panels: Vec<(&str, Vec<Line<'_>>)>,
) -> anyhow::Result<()> {
    use voxgate_bench::chart::{Figure, Panel, Series};
    let figure = Figure {
        x_label: x_label.into(),
        x_log2: true,
        panels: panels
            .into_iter()
            .map(|(title, lines)| Panel {
                title: title.into(),
                series: lines
                    .into_iter()
                    .map(|(name, points)| Series {
                        name: name.into(),
                        points,
                    })
                    .collect(),
            })
            .collect(),
        bands: vec![],
    };
    let path = lab
        .path(&lab.args.out.to_string_lossy())
        .with_file_name(file);
    std::fs::write(&path, figure.svg()).with_context(|| format!("writing {}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sockets to `port` in TIME-WAIT: connections that were closed rather
/// than kept alive.
fn time_wait_to(port: u16) -> usize {
    std::process::Command::new("ss")
        .args(["-tanH", "state", "time-wait"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// The detail `/readyz` of the voxgate at `url` gives for `check`.
async fn readyz_detail(lab: &Lab, url: &str, check: &str) -> anyhow::Result<String> {
    let ready: serde_json::Value = lab
        .http
        .get(format!("{url}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    Ok(ready["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == check))
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_default()
        .to_string())
}
