//! What the benchmark's load tools share about measuring: percentiles, and the gate that
//! lets `bench/run.sh` read the servers' CPU time exactly around a measured window.
//!
//! The gate: after its warm-up a tool prints `ready` and waits for a line on stdin; the
//! script reads the counters and sends one; the tool measures, prints its result line and
//! stays until its input ends, so the script reads the counters again before the tool
//! exits (a coprocess that exits may take its output with it).
// Each tool uses its part of this module.
#![allow(dead_code)]

use std::io::{BufRead, Write};

/// The `p`th percentile (nearest rank) of sorted values; 0 for none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Says `ready` and returns when the script says go.
pub fn ready_then_wait() {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready").expect("write stdout");
    stdout.flush().expect("flush stdout");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("read stdin");
}

/// Prints the result line and returns when the script closes our input.
pub fn report_then_wait(result: &str) {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{result}").expect("write stdout");
    stdout.flush().expect("flush stdout");
    for _ in std::io::stdin().lock().lines() {}
}
