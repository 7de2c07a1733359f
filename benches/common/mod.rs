//! Timing and reporting shared by the bench binaries (`harness = false`).
//!
//! Under `cargo bench` the binary gets a `--bench` argument: every measurement then runs a
//! warm-up and several timed rounds and reports the median. Under `cargo test --all-targets`
//! the argument is absent: every measurement runs once, so CI checks that the benches work
//! without spending time on them. Figures are only ever printed, never asserted.

#![allow(dead_code)]

pub mod b2b;

use std::time::{Duration, Instant};

/// Whether this is a full benchmark run (`cargo bench` passes `--bench`) rather than the
/// quick smoke run of `cargo test --all-targets`.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Time spent on one timed round of a full run.
const ROUND_TIME: Duration = Duration::from_millis(40);
/// Timed rounds per measurement in a full run (odd, so the median is one of them).
const ROUNDS: usize = 15;

/// Median of some samples (the samples are sorted in place). NaN if there are none.
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    match samples.len() {
        0 => f64::NAN,
        n => samples[n / 2],
    }
}

/// Iterations of `f` that take about [`ROUND_TIME`], found by doubling (also the warm-up).
fn calibrate(f: &mut dyn FnMut()) -> u64 {
    let mut iters: u64 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        let took = start.elapsed();
        if took >= ROUND_TIME / 4 || iters >= 1 << 30 {
            let per = took.as_secs_f64() / iters as f64;
            return ((ROUND_TIME.as_secs_f64() / per.max(1e-12)) as u64).max(1);
        }
        iters *= 2;
    }
}

/// Nanoseconds per call of each closure: the median over rounds, the closures' rounds
/// interleaved so that drift of the machine's speed affects them alike. In a quick run each
/// closure is called once and its single time is returned.
pub fn compare_ns(fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    if !full_run() {
        return fs
            .iter_mut()
            .map(|f| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e9
            })
            .collect();
    }
    let iters: Vec<u64> = fs.iter_mut().map(|f| calibrate(&mut **f)).collect();
    let mut samples = vec![Vec::with_capacity(ROUNDS); fs.len()];
    for _ in 0..ROUNDS {
        for (i, f) in fs.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..iters[i] {
                f();
            }
            samples[i].push(start.elapsed().as_secs_f64() * 1e9 / iters[i] as f64);
        }
    }
    samples.iter_mut().map(|s| median(s)).collect()
}

/// A plain text table, printed with aligned columns.
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a title and column names.
    pub fn new(title: &str, header: &[&str]) -> Self {
        Table {
            title: title.to_string(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table to standard output.
    pub fn print(&self) {
        let columns = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                width[i] = width[i].max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                if i == 0 {
                    out.push_str(&format!("{:<w$}", cell, w = width[i]));
                } else {
                    out.push_str(&format!("  {:>w$}", cell, w = width[i]));
                }
            }
            println!("{}", out.trim_end());
        };
        let total: usize = width.iter().sum::<usize>() + 2 * columns.saturating_sub(1);
        println!();
        println!("{}", self.title);
        println!("{}", "=".repeat(total.max(self.title.len())));
        line(&self.header);
        println!("{}", "-".repeat(total));
        for row in &self.rows {
            line(row);
        }
        if !full_run() {
            println!(
                "(quick run: one iteration each, figures are not meaningful; use `cargo bench`)"
            );
        }
    }
}

/// A ratio written for the table, e.g. `0.62x`.
pub fn ratio(ours: f64, baseline: f64) -> String {
    format!("{:.2}x", ours / baseline)
}
