//! The output of `vmemu bench`: the table of ratios, the batch-size study,
//! progress bar.

use std::fmt::Write as _;

use vmemu_arch::ArchId;

use super::fixtures::GUP_PAGES;
use super::{BatchPoint, Row};

// ----------------------------------------------------------------------
// Output
// ----------------------------------------------------------------------

/// The 1-minute load average of the host (`/proc/loadavg`): other work on
/// the machine takes CPU time from the rounds and, above all, the second
/// thread from M2.
pub(super) fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next().map(str::to_string)
}

/// The progress bar of a bench run: one step per group of measurements
/// (the walks; the gup-fast cases of one arch; ...), named by what the
/// group measures.
#[derive(Debug)]
pub(super) struct Steps {
    bar: crate::progress::Bar,
    begun: std::cell::Cell<bool>,
}

impl Steps {
    /// `len` groups; a bar only for text output on a terminal.
    pub(super) fn new(len: u64, text: bool) -> Self {
        Self {
            bar: crate::progress::Bar::new("bench", len, text).at_once(),
            begun: std::cell::Cell::new(false),
        }
    }

    /// The previous group is done, `what` begins.
    pub(super) fn next(&self, what: &str) {
        if self.begun.replace(true) {
            self.bar.inc();
        }
        self.bar.start(what);
    }

    /// The last group is done.
    pub(super) fn finish(&self) {
        if self.begun.get() {
            self.bar.inc();
        }
        self.bar.finish();
    }
}

pub(super) fn names(v: &[ArchId]) -> String {
    v.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

fn human(v: f64, unit: &str) -> String {
    match unit {
        "bytes" => format!("{:.1} MiB", v / f64::from(1 << 20)),
        "ns" if v >= 1e6 => format!("{:.1} ms", v / 1e6),
        _ if v >= 1e4 => format!("{:.1} µs{}", v / 1e3, unit.strip_prefix("ns").unwrap_or("")),
        _ => format!("{v:.1} {unit}"),
    }
}

/// The table of ratios.
#[must_use]
pub fn format_rows(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:<9} {:>16} {:>16} {:>8} {:>7}  {:<6} subject ÷ yardstick",
        "case", "arch", "subject", "yardstick", "ratio", "goal", "result"
    );
    for r in rows {
        let note = r
            .note
            .as_deref()
            .map_or(String::new(), |n| format!("\n{:<19}note: {n}", ""));
        let _ = writeln!(
            s,
            "{:<8} {:<9} {:>16} {:>16} {:>8.3} {:>7}  {:<6} {} ÷ {}{note}",
            r.case,
            r.arch,
            human(r.subject_value, r.unit),
            human(r.yardstick_value, r.unit),
            r.ratio,
            format!("≤ {}", r.goal),
            if r.pass { "PASS" } else { "MISS" },
            r.subject,
            r.yardstick
        );
    }
    s
}

/// The batch-size study as a table.
#[must_use]
pub fn format_study(points: &[BatchPoint]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "batch-size study: get_user_pages_fast(FOLL_WRITE), v6.13, {GUP_PAGES} pages on leaves of the base page size"
    );
    let _ = writeln!(
        s,
        "{:<9} {:>10} {:>10} {:>14} {:>9} {:>12} {:>15}",
        "arch", "pages/call", "ns/page", "flat ns/page", "÷ flat", "max PTE run", "IRQ-off/call"
    );
    for p in points {
        let call = if p.all {
            format!("all={}", p.pages_per_call)
        } else {
            p.pages_per_call.to_string()
        };
        let _ = writeln!(
            s,
            "{:<9} {:>10} {:>10.2} {:>14.2} {:>9.2} {:>12} {:>15}",
            p.arch,
            call,
            p.ns_per_page,
            p.flat_ns_per_page,
            p.ratio_to_flat,
            p.max_pte_run,
            human(p.ns_per_call, "ns")
        );
    }
    s
}
