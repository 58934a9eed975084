//! Checking one workload: one run with every check and in-run oracle, the
//! cross-run differentials (`+layton` against v4.10, a second arch for a
//! portable workload), and the verdict by kind ([`super::classify`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use vmemu_arch::ArchId;
use vmemu_mm::profile::Overlay;
use vmemu_mm::{BugClass, KernelProfile};

use super::classify::{self, Verdict};
use crate::lang;
use crate::limits::{Limits, RunOptions};
use crate::run::{self, Run};

/// The result of checking one workload on one (arch, kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passed.
    Pass,
    /// The workload is not valid here (a script error): not counted as a failure.
    Rejected(String),
    /// A check failed: (signature, message). Shrinking keeps the signature.
    Fail(String, String),
    /// A known-bug class of the kernel under test showed (an event of the
    /// class, or a violation of a class the profile declares): (signature
    /// `bug: CLASS`, message). Shrunk like a failure; not a failure.
    Find(String, String),
}

impl Outcome {
    /// The outcome of a verdict.
    #[must_use]
    pub fn of(v: Verdict) -> Self {
        if v.finding {
            Outcome::Find(v.sig, v.msg)
        } else {
            Outcome::Fail(v.sig, v.msg)
        }
    }

    /// The signature of a failure or finding.
    #[must_use]
    pub fn signature(&self) -> Option<&str> {
        match self {
            Outcome::Fail(s, _) | Outcome::Find(s, _) => Some(s),
            Outcome::Pass | Outcome::Rejected(_) => None,
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}

/// A run, its script error, or the panic it raised.
enum Ran {
    Ok(Box<Run>),
    ScriptError(String),
    Panic(String),
}

fn run_caught(w: &lang::Workload, arch: ArchId, kernel: &KernelProfile, opts: &RunOptions) -> Ran {
    match catch_unwind(AssertUnwindSafe(|| run::run_with(w, arch, kernel, opts))) {
        Ok(Ok(r)) => Ran::Ok(Box::new(r)),
        Ok(Err(e)) => Ran::ScriptError(e.to_string()),
        Err(p) => Ran::Panic(panic_message(&p)),
    }
}

/// Whether two return values agree across arches: equal, or — with
/// different page sizes — both `Q * PAGE_SIZE + R` for the same `Q >= 0`
/// and `R >= 0` (the workload's sizes are pages plus small offsets).
fn same_across(x: i64, px: u64, y: i64, py: u64) -> bool {
    if x == y {
        return true;
    }
    if x < 0 || y < 0 || px == py {
        return false;
    }
    let (x, px, y, py) = if px < py {
        (x, px as i64, y, py as i64)
    } else {
        (y, py as i64, x, px as i64)
    };
    // R may be negative (a copy short by a few bytes), but above -PAGE_SIZE.
    let d = y - x;
    d > 0 && d % (py - px) == 0 && x - (d / (py - px)) * px > -px
}

/// Compares two runs of a portable workload on two arches.
fn compare_arches(a: &Run, aa: ArchId, b: &Run, ba: ArchId) -> Option<String> {
    for (x, y) in a.records.iter().zip(&b.records) {
        if x.line != y.line || x.op != y.op {
            return None; // one run halted or skipped: nothing more to compare
        }
        if matches!(
            x.op.as_str(),
            "mmap"
                | "vmalloc"
                | "iov_iter_alignment"
                | "iov_iter_gap_alignment"
                | "invariant"
                | "get_user"
        ) {
            continue;
        }
        let rets_agree = match (x.ret, y.ret) {
            (Some(u), Some(v)) => same_across(u, aa.page_size(), v, ba.page_size()),
            (u, v) => u == v,
        };
        if !rets_agree || x.pages != y.pages {
            return Some(format!(
                "line {} `{}`: {aa} gives {} [{}], {ba} gives {} [{}]",
                x.line,
                x.text,
                x.ret.map_or("-".into(), run::fmt_ret),
                x.pages.join(", "),
                y.ret.map_or("-".into(), run::fmt_ret),
                y.pages.join(", ")
            ));
        }
    }
    None
}

/// Compares `iov_iter_get_pages_alloc` under v4.10 and +layton.
fn compare_layton(legacy: &Run, layton: &Run, page: u64) -> Option<String> {
    for (x, y) in legacy.records.iter().zip(&layton.records) {
        if x.line != y.line || x.op != y.op {
            return None;
        }
        if x.op != "iov_iter_get_pages_alloc" {
            if x.ret != y.ret || x.pages != y.pages {
                return None; // the runs diverged (e.g. references changed a COW decision)
            }
            continue;
        }
        // After calls that did different things (one failed, or they
        // covered different ranges) the runs may diverge (gup faulted and
        // COWed different pages): compare up to here only.
        let same = x.ret == y.ret && x.pages == y.pages;
        let (Some(bx), Some(by)) = (x.ret, y.ret) else {
            return None;
        };
        if bx <= 0 || by <= 0 {
            if same {
                continue;
            }
            return None;
        }
        let start = |r: &run::Record| {
            r.detail
                .as_deref()
                .and_then(|d| d.strip_prefix("start 0x"))
                .and_then(|d| d.split(';').next())
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or(0)
        };
        let (sx, sy) = (start(x), start(y));
        let common = bx.min(by) as u64;
        let diverges = !same;
        let n = (sx + common).div_ceil(page) as usize;
        let ok =
            sx == sy && x.pages.len() >= n && y.pages.len() >= n && x.pages[..n] == y.pages[..n];
        if ok && diverges {
            return None;
        }
        if !ok {
            return Some(format!(
                "line {} `{}`: v4.10 covers {bx} bytes from {sx:#x} with [{}], +layton {by} bytes from {sy:#x} with [{}]",
                x.line,
                x.text,
                x.pages.join(", "),
                y.pages.join(", ")
            ));
        }
    }
    None
}

/// Runs one workload text on (arch, kernel) with every check and oracle.
#[must_use]
pub fn check_text(
    text: &str,
    file: &str,
    arch: ArchId,
    kernel: &KernelProfile,
    limits: &Limits,
) -> Outcome {
    let w = match catch_unwind(|| lang::parse(file, text)) {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return Outcome::Rejected(e.to_string()),
        Err(p) => return Outcome::Fail("panic in the parser".into(), panic_message(&p)),
    };
    let opts = RunOptions {
        check_invariants: true,
        oracles: true,
        limits: *limits,
        show_at: None,
    };
    let base = match run_caught(&w, arch, kernel, &opts) {
        Ran::Panic(p) => return Outcome::Fail("panic".into(), p),
        Ran::ScriptError(e) => return Outcome::Rejected(e),
        Ran::Ok(r) => r,
    };
    if let Some(v) = classify::run_verdict(&base) {
        return Outcome::of(v);
    }
    // +layton against the tree it was posted on (v4.10) over the same bytes.
    if let Some(layton) = kernel.as_posted_with(Overlay::Layton)
        && text.contains("iov_iter_get_pages_alloc(")
        && let Some(v) = against_layton(&w, &base, arch, &layton, &opts)
    {
        return Outcome::of(v);
    }
    // A second arch for portable workloads.
    if text.contains(", portable")
        && let Some(v) = against_partner(&w, &base, arch, kernel, &opts)
    {
        return Outcome::of(v);
    }
    Outcome::Pass
}

/// The v4.10 workload `w` (its run `base`) under the posted `+layton`
/// patch: that run's own verdict (its leaked reference is the patch's
/// flaw (b), a finding: `+layton` declares it), then the pages both cover.
fn against_layton(
    w: &lang::Workload,
    base: &Run,
    arch: ArchId,
    layton: &KernelProfile,
    opts: &RunOptions,
) -> Option<Verdict> {
    match run_caught(w, arch, layton, opts) {
        Ran::Panic(p) => Some(Verdict::failure("panic".into(), p)),
        Ran::ScriptError(_) => None,
        Ran::Ok(r) => {
            if let Some(v) = classify::run_verdict(&r) {
                return Some(v.seen("+layton"));
            }
            let msg = compare_layton(base, &r, arch.page_size())?;
            // Different pages for bytes both calls cover: the patch's
            // wrong bytes (flaw (a)).
            Some(classify::differential(
                "+layton vs v4.10",
                Some(BugClass::DataMismatch),
                &r,
                msg,
            ))
        }
    }
}

/// A portable workload on the partner arch of `arch` (`ArchId::partner`).
fn against_partner(
    w: &lang::Workload,
    base: &Run,
    arch: ArchId,
    kernel: &KernelProfile,
    opts: &RunOptions,
) -> Option<Verdict> {
    let other = arch.partner();
    match run_caught(w, other, kernel, opts) {
        Ran::Panic(p) => Some(Verdict::failure("panic".into(), p)),
        Ran::ScriptError(_) => None,
        Ran::Ok(r) => {
            if let Some(v) = classify::run_verdict(&r) {
                return Some(v.seen(&format!("on {other}")));
            }
            let msg = compare_arches(base, arch, &r, other)?;
            Some(classify::differential("arches", None, &r, msg))
        }
    }
}
