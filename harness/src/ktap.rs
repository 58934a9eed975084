//! KTAP version 1 output (the format KUnit prints). (Being built.)

use crate::run::Run;

/// KTAP text for a set of runs.
#[must_use]
pub fn format_runs(runs: &[Run]) -> String {
    let mut out = String::from("KTAP version 1\n");
    out.push_str(&format!("1..{}\n", runs.len()));
    for (i, r) in runs.iter().enumerate() {
        let s = &r.summary;
        let ok = if s.passed { "ok" } else { "not ok" };
        out.push_str(&format!(
            "{ok} {} {}.{}.{}\n",
            i + 1,
            s.workload,
            s.arch,
            s.kernel
        ));
    }
    out
}
