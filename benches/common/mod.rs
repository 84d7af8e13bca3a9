//! Latency measurement shared by the benchmarks: every kind of request once per round, interleaved, reported
//! as ratios to a baseline measured in the same run.
#![allow(unreachable_pub)]

use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;

pub struct Stats {
    pub median: Duration,
    pub p99: Duration,
}

/// One kind of request, run once per round.
pub type Request<'a> = Box<dyn FnMut() -> LocalBoxFuture<'a, ()> + 'a>;

/// Runs every request once per round, in rotating order, so that machine noise (other processes, frequency
/// changes) falls on all of them alike and the ratios stay meaningful.
pub async fn measure_interleaved(
    requests: &mut [(&str, Request<'_>)],
    warmup: usize,
    rounds: usize,
) -> Vec<Stats> {
    for _ in 0..warmup {
        for (_, request) in requests.iter_mut() {
            request().await;
        }
    }
    let n = requests.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        // Each round starts with a different kind, so no kind always follows the same neighbour.
        for k in 0..n {
            let i = (round + k) % n;
            let started = Instant::now();
            (requests[i].1)().await;
            samples[i].push(started.elapsed());
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            Stats {
                median: s[rounds / 2],
                p99: s[rounds * 99 / 100],
            }
        })
        .collect()
}

/// One line: median and p99, and the median's ratio to `baseline`'s.
pub fn report(name: &str, stats: &Stats, baseline: &Stats) {
    println!(
        "{name:<36} median {:>9.1} µs  p99 {:>9.1} µs  median ratio to direct {:>6.3}",
        stats.median.as_secs_f64() * 1e6,
        stats.p99.as_secs_f64() * 1e6,
        stats.median.as_secs_f64() / baseline.median.as_secs_f64()
    );
}
