//! `vmemu list --bugs` and `docs/bugs.md`: where each known bug shows,
//! computed from runs rather than written down.
//!
//! Every replayed bug has a built-in workload and a [`Probe`] saying what,
//! in a run, *is* the bug (an event the emulated kernel raised, or pages a
//! statement should never have returned). The workload runs on x86_64,
//! arm64 and ppc64 under every profile its `kernels` line names; a cell is
//! `shown` when the probe fires, `not shown` when it does not. The list and
//! the document print those cells, so a change to gup or iov_iter that
//! opens or closes a bug changes them, and the staleness test
//! (`harness/tests/all/bugs_doc.rs`) says so in review.

use std::fmt::Write as _;

use vmemu_arch::ArchId;

use crate::bugs::{KNOWN_BUGS, KnownBug};
use crate::report::{self, Runs};
use crate::run::Run;

/// What in a run shows the bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Any statement raised this event.
    Event(&'static str),
    /// The statement assigning this variable returned pages (it should have
    /// failed: a kernel address resolved to unrelated user pages).
    Pages(&'static str),
}

impl Probe {
    /// Whether the probe fires in `run`.
    #[must_use]
    pub fn fires(self, run: &Run) -> bool {
        match self {
            Probe::Event(e) => run
                .records
                .iter()
                .any(|r| r.events.iter().any(|x| x.split(':').next() == Some(e))),
            Probe::Pages(var) => report::find(run, var).is_some_and(|r| !r.pages.is_empty()),
        }
    }

    fn describe(self) -> String {
        match self {
            Probe::Event(e) => format!("the event `{e}`"),
            Probe::Pages(v) => format!("`{v}` returning pages"),
        }
    }
}

/// The probe of each bug workload (by file stem).
pub const PROBES: &[(&str, Probe)] = &[
    ("dirtycow", Probe::Event("page_cache_corrupted")),
    ("dirtypipe", Probe::Event("page_cache_corrupted")),
    ("zero_len_bvec", Probe::Event("soft_lockup")),
    ("kernel_ds_gup_fast", Probe::Pages("r")),
    ("pipe_advance_fencepost", Probe::Event("infoleak")),
    ("refcount_wrap", Probe::Event("use_after_free")),
    ("pin_fork_write", Probe::Event("pin_detached")),
    ("vmsplice_unmap_child", Probe::Event("shared_page_reused")),
    ("ro_pin_on_shared", Probe::Event("pin_detached")),
    ("dirtycow_thp", Probe::Event("zero_page_corrupted")),
];

/// The workloads (file stems) replaying a bug, in the order the table
/// names them.
#[must_use]
pub fn stems(b: &KnownBug) -> Vec<&'static str> {
    b.workload
        .split_whitespace()
        .filter_map(|w| w.strip_suffix(".vmw"))
        .collect()
}

/// The probe of a workload.
#[must_use]
pub fn probe(stem: &str) -> Option<Probe> {
    PROBES.iter().find(|(w, _)| *w == stem).map(|(_, p)| *p)
}

/// Per arch, whether the bug shows (`None`: the workload does not run there).
pub type ArchCells = Vec<(ArchId, Option<bool>)>;

/// One workload's outcome: per profile (in the workload's order), per
/// arch, whether the bug shows, and the runs that failed their expects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// (profile, cells).
    pub cells: Vec<(vmemu_mm::KernelProfile, ArchCells)>,
    /// "arch profile" of runs whose expects failed.
    pub failed: Vec<String>,
}

impl Outcome {
    /// Profiles where the bug shows on at least one arch (with the arches
    /// named when not all).
    #[must_use]
    pub fn shown(&self) -> Vec<String> {
        self.profiles(true)
    }

    /// Profiles where the bug shows on no arch.
    #[must_use]
    pub fn not_shown(&self) -> Vec<String> {
        self.profiles(false)
    }

    fn profiles(&self, shown: bool) -> Vec<String> {
        self.cells
            .iter()
            .filter(|(_, c)| c.iter().any(|(_, s)| *s == Some(true)) == shown)
            .map(|(k, c)| {
                let archs: Vec<&str> = c
                    .iter()
                    .filter(|(_, s)| *s == Some(true))
                    .map(|(a, _)| a.name())
                    .collect();
                if shown && archs.len() < ArchId::MAIN.len() {
                    format!("{k} ({})", archs.join(", "))
                } else {
                    k.name()
                }
            })
            .collect()
    }
}

fn outcome(workload: &str, p: Probe, runs: &Runs) -> Outcome {
    let mut out = Outcome::default();
    let Some(v) = runs.get(workload) else {
        return out;
    };
    for (_, k, _) in v {
        if out.cells.iter().any(|(p, _)| p == k) {
            continue;
        }
        let row = ArchId::MAIN
            .iter()
            .map(|a| {
                let r = v.iter().find(|(ra, rk, _)| ra == a.name() && rk == k);
                (*a, r.map(|(_, _, run)| p.fires(run)))
            })
            .collect();
        out.cells.push((k.clone(), row));
    }
    for (a, k, run) in v {
        if !run.summary.passed {
            out.failed.push(format!("{a} {k}"));
        }
    }
    out
}

/// A bug and the outcome of each of its workloads.
pub type BugOutcome = (&'static KnownBug, Vec<(&'static str, Outcome)>);

/// Runs every bug workload; each bug in [`KNOWN_BUGS`] order with the
/// outcome of each workload that has a probe (none: not replayed).
pub fn outcomes() -> Result<Vec<BugOutcome>, String> {
    let mut names: Vec<&'static str> = Vec::new();
    for b in KNOWN_BUGS {
        for stem in stems(b) {
            if probe(stem).is_some() && !names.contains(&stem) {
                names.push(stem);
            }
        }
    }
    let runs = report::run_workloads(&names)?;
    Ok(KNOWN_BUGS
        .iter()
        .map(|b| {
            let o = stems(b)
                .into_iter()
                .filter_map(|w| probe(w).map(|p| (w, outcome(w, p, &runs))))
                .collect();
            (b, o)
        })
        .collect())
}

fn join(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

/// "profiles" for one workload, "`w`: profiles; ..." for several.
fn per_workload(o: &[(&str, Outcome)], f: fn(&Outcome) -> Vec<String>) -> String {
    if o.len() == 1 {
        return join(&f(&o[0].1));
    }
    o.iter()
        .map(|(w, x)| format!("{w}: {}", join(&f(x))))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `vmemu list --bugs`: one entry per bug, the profiles computed from runs.
pub fn list() -> Result<String, String> {
    let mut out = String::from("known bugs:\n");
    for (b, o) in outcomes()? {
        let _ = writeln!(out, "  {} ({})", b.name, b.cve);
        let _ = writeln!(out, "    introduced  {}", b.introduced);
        let _ = writeln!(out, "    fixed       {}", b.fixed);
        let _ = writeln!(out, "    workload    {}", b.workload);
        if o.is_empty() {
            let _ = writeln!(out, "    shown       not replayed");
            continue;
        }
        let _ = writeln!(out, "    shown       {}", per_workload(&o, Outcome::shown));
        let _ = writeln!(
            out,
            "    not shown   {}",
            per_workload(&o, Outcome::not_shown)
        );
        let failed: Vec<String> = o
            .iter()
            .flat_map(|(w, x)| x.failed.iter().map(move |f| format!("{w} {f}")))
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "    FAILED      {}", failed.join(", "));
        }
    }
    Ok(out)
}

/// The generated sections of `docs/bugs.md`: `bugs-summary`, then one per
/// bug workload (`bug-WORKLOAD`).
pub fn generate() -> Result<Vec<(String, String)>, String> {
    let all = outcomes()?;
    let mut secs = Vec::new();
    let mut s = String::from(
        "Generated by `vmemu report --bugs`.\n\n| bug | CVE | introduced | fixed | workload | shown under | not under |\n|---|---|---|---|---|---|---|\n",
    );
    for (b, o) in &all {
        let (shown, not) = if o.is_empty() {
            ("not replayed".into(), "-".into())
        } else {
            (
                per_workload(o, Outcome::shown),
                per_workload(o, Outcome::not_shown),
            )
        };
        let w: Vec<String> = b
            .workload
            .split_whitespace()
            .map(|w| format!("`{w}`"))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {shown} | {not} |",
            b.name,
            b.cve,
            b.introduced,
            b.fixed,
            w.join(" ")
        );
    }
    secs.push(("bugs-summary".to_string(), s));
    for (_, o) in &all {
        for (w, o) in o {
            let Some(p) = probe(w) else { continue };
            let mut s = format!(
                "Generated by `vmemu report --bugs` from `{w}.vmw`; a cell is **shown** when {} fires.\n\n| profile |",
                p.describe()
            );
            for a in ArchId::MAIN {
                let _ = write!(s, " {} |", a.name());
            }
            s.push_str("\n|---|");
            for _ in ArchId::MAIN {
                s.push_str("---|");
            }
            s.push('\n');
            for (k, row) in &o.cells {
                let _ = write!(s, "| {k} |");
                for (_, c) in row {
                    s.push_str(match c {
                        Some(true) => " **shown** |",
                        Some(false) => " not shown |",
                        None => " · |",
                    });
                }
                s.push('\n');
            }
            if o.failed.is_empty() {
                s.push_str(
                    "\nEvery run passed its expects (`·`: the workload does not run there).\n",
                );
            } else {
                let _ = writeln!(
                    s,
                    "\nWARNING: these runs failed their expects: {}.",
                    o.failed.join(", ")
                );
            }
            secs.push((format!("bug-{}", w.replace('_', "-")), s));
        }
    }
    Ok(secs)
}

/// `vmemu report --bugs`: prints, writes or checks `docs/bugs.md`.
pub fn main(
    write: Option<&std::path::Path>,
    check: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> Result<bool, String> {
    let secs = generate()?;
    let secs: Vec<(&str, String)> = secs.iter().map(|(i, t)| (i.as_str(), t.clone())).collect();
    report::write_or_check(&secs, write, check, out).map(|ok| {
        if ok.is_none() {
            for (id, text) in &secs {
                let _ = writeln!(out, "<!-- claim:{id} -->\n{text}<!-- /claim:{id} -->\n");
            }
        }
        ok.unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replayed_bug_has_a_probe() {
        for b in KNOWN_BUGS {
            for w in stems(b) {
                assert!(probe(w).is_some(), "{}: {w} has no probe", b.name);
            }
        }
        for (w, _) in PROBES {
            assert!(
                KNOWN_BUGS.iter().any(|b| stems(b).contains(w)),
                "probe for {w} names no bug"
            );
        }
    }

    #[test]
    fn outcomes_separate_vulnerable_from_fixed_profiles() {
        let all = outcomes().unwrap();
        let get = |w: &str| {
            all.iter()
                .flat_map(|(_, o)| o)
                .find(|(s, _)| *s == w)
                .map(|(_, o)| o.clone())
                .unwrap()
        };
        let cow = get("dirtycow");
        assert!(cow.failed.is_empty());
        assert_eq!(cow.shown(), ["v4.10+dirtycow"]);
        assert_eq!(cow.not_shown(), ["v4.10", "v4.17", "v6.13", "v6.18"]);
        // x86 has no alias and x86 runs show no pages: the arch list says so.
        let kds = get("kernel_ds_gup_fast");
        assert_eq!(kds.shown(), ["v4.10 (arm64, ppc64)"]);
        // Every bug workload shows its bug somewhere and not everywhere.
        for (_, o) in &all {
            for (w, x) in o {
                assert!(!x.shown().is_empty(), "{w} shows nowhere");
                assert!(!x.not_shown().is_empty(), "{w} shows everywhere");
            }
        }
    }
}
