//! The verdict: a Markdown table per traffic kind, the fault windows, resources and
//! revocation latency, and the assertions the soak exits on.

use crate::traffic::{Kind, Outcome, Record};
use crate::{Sample, Survival, Window, ACCESS_TTL, GRACE};

/// RSS of the last minute may exceed that of the minute after the warm-up by this fraction,
/// plus [`RSS_SLACK_KIB`]. The warm-up is `access_ttl` and a minute: by then the
/// verified-token cache holds every token it will hold at once (none outlives its `exp`),
/// and the pools are full; growth after it is what a leak looks like.
const RSS_GROWTH: f64 = 0.20;
const RSS_SLACK_KIB: u64 = 8 * 1024;
/// Open fds of the last minute may exceed the first minute's by this many.
const FD_SLACK: u64 = 16;
/// A revocation must be visible on the other instance within this.
const REVOCATION_LIMIT: f64 = 1.0;

pub struct Report {
    pub total: f64,
    pub records: Vec<Record>,
    pub windows: Vec<Window>,
    pub samples: Vec<Sample>,
    pub revocations: Vec<f64>,
    pub probes_skipped: u64,
    pub survival: Survival,
}

#[derive(Default)]
struct Row {
    requests: u64,
    ok2xx: u64,
    switched: u64,
    c4xx: u64,
    c5xx_in: u64,
    c5xx_out: u64,
    timeouts: u64,
    closed_in: u64,
    closed_out: u64,
    wrong: u64,
}

impl Report {
    /// Whether `record` overlaps a window (with its grace) of a fault that excuses it.
    fn excused(&self, record: &Record, by: impl Fn(&Window) -> bool) -> bool {
        self.windows
            .iter()
            .any(|w| by(w) && record.start <= w.end + GRACE && record.end >= w.start)
    }

    fn row(&self, kind: Kind) -> Row {
        let mut row = Row::default();
        for record in self.records.iter().filter(|r| r.kind == kind) {
            row.requests += 1;
            match record.outcome {
                Outcome::Status(101) => row.switched += 1,
                Outcome::Status(s) if (200..300).contains(&s) => row.ok2xx += 1,
                Outcome::Status(s) if (400..500).contains(&s) => row.c4xx += 1,
                Outcome::Status(_) => {
                    if self.excused(record, |w| w.fault.excuses(kind)) {
                        row.c5xx_in += 1;
                    } else {
                        row.c5xx_out += 1;
                    }
                }
                Outcome::Wrong(_) => row.wrong += 1,
                Outcome::Timeout => row.timeouts += 1,
                Outcome::Closed => {
                    let reset = |w: &Window| {
                        matches!(w.fault, crate::Fault::UpstreamReset) && w.fault.excuses(kind)
                    };
                    if self.excused(record, reset) {
                        row.closed_in += 1;
                    } else {
                        row.closed_out += 1;
                    }
                }
            }
        }
        row
    }

    /// Prints everything; whether every assertion held.
    pub fn print(&self) -> bool {
        let mut failures: Vec<String> = Vec::new();
        println!("\n### Faults injected (grace after each: {GRACE} s)\n");
        println!("| start | end | fault |\n|---:|---:|---|");
        for w in &self.windows {
            println!(
                "| {:.1} s | {:.1} s | {} |",
                w.start,
                w.end,
                w.fault.label()
            );
        }
        println!("\n### Requests\n");
        println!(
            "| kind | requests | 2xx | 101 | 4xx | 5xx in a fault window | 5xx outside | timeouts | closed, no answer (in reset windows / outside) | wrong answer |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut total = Row::default();
        for kind in Kind::ALL {
            let r = self.row(kind);
            println!(
                "| {kind:?} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
                r.requests,
                r.ok2xx,
                r.switched,
                r.c4xx,
                r.c5xx_in,
                r.c5xx_out,
                r.timeouts,
                r.closed_in,
                r.closed_out,
                r.wrong
            );
            if r.c5xx_out > 0 {
                failures.push(format!(
                    "{kind:?}: {} 5xx outside fault windows",
                    r.c5xx_out
                ));
            }
            if r.timeouts > 0 {
                failures.push(format!(
                    "{kind:?}: {} requests without an answer in time",
                    r.timeouts
                ));
            }
            if r.closed_out > 0 {
                failures.push(format!(
                    "{kind:?}: {} closed without an answer outside upstream-reset windows",
                    r.closed_out
                ));
            }
            if r.wrong > 0 {
                failures.push(format!("{kind:?}: {} wrong answers", r.wrong));
            }
            if r.requests == 0 && kind != Kind::Probe {
                failures.push(format!("{kind:?}: no requests at all"));
            }
            total.requests += r.requests;
            total.c5xx_in += r.c5xx_in;
        }
        println!(
            "\n{} requests in {:.0} s ({:.0}/s).",
            total.requests,
            self.total,
            total.requests as f64 / self.total
        );
        self.print_4xx();
        self.resources(&mut failures);
        self.revocation(&mut failures);
        let s = &self.survival;
        println!(
            "\nSessions stored before a Redis SIGKILL and refreshed after its restart: {} of {} ({} lost).",
            s.stored - s.lost,
            s.stored,
            s.lost
        );
        if s.lost > 0 || s.stored == 0 {
            failures.push(format!(
                "{} of {} sessions Redis had were lost",
                s.lost, s.stored
            ));
        }
        self.print_failed_records();
        if failures.is_empty() {
            println!("\nEvery assertion held.");
            true
        } else {
            println!("\nFAILED:");
            for f in &failures {
                println!("- {f}");
            }
            false
        }
    }

    /// 4xx answers outside any fault window: not asserted, listed so they can be read.
    fn print_4xx(&self) {
        let outside: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Status(s) if (400..500).contains(&s)))
            // A probe ends on the 401 it waits for.
            .filter(|r| r.kind != Kind::Probe)
            .filter(|r| !self.excused(r, |w| w.fault.excuses(r.kind)))
            .collect();
        println!("4xx outside fault windows: {}", outside.len());
        for r in outside.iter().take(10) {
            println!("  {:?} {:?} at {:.1} s", r.kind, r.outcome, r.start);
        }
    }

    /// The first records behind a failed assertion, with their times, to read beside the logs.
    fn print_failed_records(&self) {
        let failed: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| match r.outcome {
                Outcome::Status(s) if s >= 500 => !self.excused(r, |w| w.fault.excuses(r.kind)),
                Outcome::Status(_) => false,
                Outcome::Closed => !self.excused(r, |w| {
                    matches!(w.fault, crate::Fault::UpstreamReset) && w.fault.excuses(r.kind)
                }),
                Outcome::Wrong(_) | Outcome::Timeout => true,
            })
            .collect();
        if !failed.is_empty() {
            println!("\nFailed requests ({}, the first 20):", failed.len());
        }
        for r in failed.iter().take(20) {
            println!(
                "  {:?} {:?} {:.3}-{:.3} s",
                r.kind, r.outcome, r.start, r.end
            );
        }
    }

    fn resources(&self, failures: &mut Vec<String>) {
        let minute = (self.total / 6.0).min(60.0);
        // A short run cannot wait for the cache's steady size; it compares its second third.
        let settled = (ACCESS_TTL.as_secs_f64() + 60.0).min(self.total / 3.0);
        println!(
            "\n### Resources (median of samples every 2 s; {minute:.0} s from {settled:.0} s, the warm-up's end, vs the last {minute:.0} s)\n"
        );
        println!("| instance | VmRSS settled | VmRSS last | open fds settled | open fds last |");
        println!("|---|---:|---:|---:|---:|");
        for (instance, name) in ["A", "B"].iter().enumerate() {
            let pick = |from: f64, to: f64| -> Vec<Sample> {
                self.samples
                    .iter()
                    .filter(|s| s.instance == instance && s.at >= from && s.at <= to)
                    .copied()
                    .collect()
            };
            let first = pick(settled, settled + minute);
            let last = pick(self.total - minute, self.total);
            let (Some(rss0), Some(rss1), Some(fd0), Some(fd1)) = (
                median(first.iter().map(|s| s.rss_kib)),
                median(last.iter().map(|s| s.rss_kib)),
                median(first.iter().map(|s| s.fds)),
                median(last.iter().map(|s| s.fds)),
            ) else {
                failures.push(format!("instance {name}: no resource samples"));
                continue;
            };
            println!(
                "| {name} | {:.1} MiB | {:.1} MiB | {fd0} | {fd1} |",
                rss0 as f64 / 1024.0,
                rss1 as f64 / 1024.0
            );
            let rss_limit = (rss0 as f64 * (1.0 + RSS_GROWTH)) as u64 + RSS_SLACK_KIB;
            if rss1 > rss_limit {
                failures.push(format!(
                    "instance {name}: VmRSS grew from {rss0} KiB to {rss1} KiB (limit {rss_limit})"
                ));
            }
            if fd1 > fd0 + FD_SLACK {
                failures.push(format!(
                    "instance {name}: open fds grew from {fd0} to {fd1}"
                ));
            }
        }
        self.rss_timeline(minute);
        println!(
            "\nTolerance: last VmRSS at most {:.0}% + {} MiB above the settled one; open fds at most {FD_SLACK} more.",
            RSS_GROWTH * 100.0,
            RSS_SLACK_KIB / 1024
        );
    }

    /// The median VmRSS of each instance per slice of the run, with the allocator's own
    /// allocated and resident figures, to tell a cache filling up to its bound (a rise that
    /// levels off) from a leak (a rise that does not), and live data from freed memory the
    /// allocator has not returned yet.
    fn rss_timeline(&self, slice: f64) {
        let slices = (self.total / slice).ceil() as usize;
        for (instance, name) in ["A", "B"].iter().enumerate() {
            let per_slice = |figure: &dyn Fn(&Sample) -> Option<u64>| -> String {
                (0..slices)
                    .map(|i| {
                        let (from, to) = (i as f64 * slice, (i + 1) as f64 * slice);
                        let values = self
                            .samples
                            .iter()
                            .filter(|s| s.instance == instance && s.at >= from && s.at < to)
                            .filter_map(figure);
                        median(values).map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!("\nInstance {name} per {slice:.0} s (MiB):");
            println!("- VmRSS: {}", per_slice(&|s| Some(s.rss_kib)));
            println!("- heap allocated: {}", per_slice(&|s| s.heap.map(|h| h.0)));
            println!("- heap resident: {}", per_slice(&|s| s.heap.map(|h| h.1)));
        }
    }

    fn revocation(&self, failures: &mut Vec<String>) {
        let mut lat = self.revocations.clone();
        lat.sort_by(f64::total_cmp);
        let at = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
        if lat.is_empty() {
            failures.push("no revocation probe outside fault windows".into());
            return;
        }
        println!(
            "\nRevocation (logout on one instance, 401 on the other), {} probes outside fault windows: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} more probes during faults, not counted).",
            lat.len(),
            at(0.5) * 1e3,
            at(0.99) * 1e3,
            at(1.0) * 1e3,
            self.probes_skipped
        );
        if at(1.0) >= REVOCATION_LIMIT {
            failures.push(format!(
                "a revocation took {:.3} s to reach the other instance",
                at(1.0)
            ));
        }
        let unrevoked = self
            .records
            .iter()
            .filter(|r| r.kind == Kind::Probe && r.outcome != Outcome::Status(401))
            .count();
        if unrevoked > 0 {
            failures.push(format!(
                "{unrevoked} logged-out tokens still accepted after 5 s"
            ));
        }
    }
}

fn median(values: impl Iterator<Item = u64>) -> Option<u64> {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}
