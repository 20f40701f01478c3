//! Request metrics keep a bounded amount of memory however many requests
//! an instance serves without being scraped. The Prometheus recorder
//! queues every histogram sample until something drains the queue; voxgate
//! runs that upkeep itself. A counting allocator measures the heap this
//! process holds, so this test has a binary of its own.

use std::alloc::System;
use std::time::Duration;

use cap::Cap;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn live() -> isize {
    ALLOCATOR.allocated() as isize
}

const SAMPLES: usize = 1_000_000;

fn record(samples: usize) {
    let labels = [("route", "/api/me"), ("method", "GET"), ("status", "200")];
    for i in 0..samples {
        metrics::histogram!("voxgate_http_request_duration_seconds", &labels)
            .record((i % 100) as f64 / 1000.0);
    }
}

#[tokio::test]
async fn histogram_samples_are_drained_without_a_scrape() {
    let handle = voxgate::telemetry::metrics_handle();
    // Warm up the series so that only queued samples differ below.
    record(1000);
    handle.run_upkeep();

    // Without upkeep the queue holds every sample (8 bytes each).
    let before = live();
    record(SAMPLES);
    let queued = live() - before;
    assert!(
        queued >= (SAMPLES * 6) as isize,
        "the recorder queues samples until upkeep ({queued} bytes for {SAMPLES})"
    );

    // voxgate's own upkeep task drains them, and with it running the same
    // traffic again leaves no more than a little behind (freed blocks are
    // reclaimed as the recorder keeps being used).
    let task = voxgate::telemetry::spawn_metrics_upkeep(Duration::from_millis(20));
    for _ in 0..100 {
        record(SAMPLES / 100);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    record(1000);
    let left = live() - before;
    assert!(
        left < queued / 4,
        "{left} bytes held after {SAMPLES} more samples with upkeep ({queued} without)"
    );
    task.abort();
    // The rendered histogram counted every sample.
    let text = handle.render();
    let count: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("voxgate_http_request_duration_seconds_count{") && l.contains("/api/me")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the histogram is rendered");
    assert_eq!(count, (2 * SAMPLES + 2000) as f64);
}
