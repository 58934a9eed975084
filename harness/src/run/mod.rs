//! The runner: executes a workload on one (arch, profile) and produces its
//! transcript — one record per statement with the return value (negative
//! errnos written `-EFAULT`), the pages returned named symbolically, and the
//! events — followed by the leak check.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use vmemu_arch::{Arch, ArchId, Level, Pfn, SizeKind, VirtAddr, with_arch};
use vmemu_iter::Sys;
use vmemu_iter::get_pages::GotPages;
use vmemu_iter::iov_iter::{BioVec, Dir, IovIter, Iovec, IterType};
use vmemu_mm::{
    Backing, DEFAULT_PHYS_SIZE, Errno, FileOps, GupFlags, KernelProfile, MapFlags,
    MkwriteBehaviour, Prot,
};

use crate::calls::{Call, CallDef, IterCall, MmCall, PipeCall};
use crate::lang::{
    Arg, Expr, MapSpec, Qual, ScriptError, Span, Stmt, StmtKind, Target, Value, Workload,
};
pub use crate::limits::{Limits, RunOptions};

pub mod callers;
mod eval;
mod expect;
mod explain;
mod format;
mod hostmem;
mod iter;
mod mm;
pub(crate) mod oracle;
pub(crate) mod pattern;
mod pipe;
mod shared;
mod show;
mod state;
pub mod syscalls;

pub(crate) use eval::eval_const;
pub(crate) use eval::to_u64;
pub use explain::explain;
pub use format::{
    FAIL_STYLE, PASS_STYLE, format_record, format_record_with, format_run, format_run_with, paint,
};
pub use shared::Shared;
pub use show::{Shown, show};

/// One transcript line.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Record {
    /// Workload name.
    pub workload: Shared,
    /// Arch.
    pub arch: Shared,
    /// Profile.
    pub kernel: Shared,
    /// Script line.
    pub line: usize,
    /// Operation: the function called, or `map`, `expect`, ...
    pub op: Shared,
    /// The statement's text.
    pub text: String,
    /// Return value (count, address, bytes not copied, or `-errno`).
    pub ret: Option<i64>,
    /// Errno name when `ret` is negative.
    pub errno: Option<String>,
    /// Pages returned, by symbolic name.
    pub pages: Vec<String>,
    /// Events raised by the statement.
    pub events: Vec<String>,
    /// For `expect`: whether it held.
    pub ok: Option<bool>,
    /// Extra detail (what an expect saw, a note).
    pub detail: Option<String>,
    /// For a caller model (`harness::callers`): its I/O units and page
    /// traffic. Absent from JSON for every other statement.
    /// (Boxed: a transcript holds one record per statement, and most
    /// have none.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<Box<Io>>,
    /// For `show`: what it printed (text lines and JSON; `crate::show`).
    #[serde(skip)]
    pub show: Option<Box<crate::show::View>>,
    /// `pages` not yet named: set instead of `pages` for a statement in an
    /// iteration a `repeat` may leave out of the transcript, named when the
    /// record is kept (`Runner::exec_repeat`). Empty in a finished run.
    #[serde(skip)]
    pub(crate) page_keys: Vec<vmemu_mm::mm::PageNameKey>,
}

/// The I/O a caller model produced and its page-reference traffic.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Io {
    /// The kernel function modelled.
    pub model: String,
    /// I/O units in issue order.
    pub units: Vec<IoUnit>,
    /// `iov_iter_get_pages*` / `iov_iter_extract_pages` calls.
    pub get_pages_calls: u64,
    /// Pages those calls returned (references or pins taken).
    pub pages_pinned: u64,
    /// References the consumer took itself.
    pub refs_taken: u64,
    /// References dropped before the I/O completed.
    pub put_early: u64,
    /// Page-pointer or bvec arrays allocated.
    pub allocations: u64,
    /// What happened, in words.
    pub notes: Vec<String>,
}

/// One I/O unit: a bio, an RPC, an OSD request, an skb, ...
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IoUnit {
    /// `bio`, `rpc`, `osd_write`, ...
    pub kind: String,
    /// Bytes.
    pub bytes: u64,
    /// Pages (bvecs, requests, frags, entries).
    pub pages: u64,
}

impl From<vmemu_iter::callers::IoReport> for Io {
    fn from(r: vmemu_iter::callers::IoReport) -> Self {
        Self {
            model: r.model,
            units: r
                .units
                .into_iter()
                .map(|u| IoUnit {
                    kind: u.kind.to_string(),
                    bytes: u.bytes,
                    pages: u.pages,
                })
                .collect(),
            get_pages_calls: r.get_pages_calls,
            pages_pinned: r.pages_pinned,
            refs_taken: r.refs_taken,
            put_early: r.put_early,
            allocations: r.allocations,
            notes: r.notes,
        }
    }
}

/// The outcome of one run.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Always true: marks the summary record in JSON Lines.
    pub summary: bool,
    /// Workload name.
    pub workload: String,
    /// Arch.
    pub arch: String,
    /// Profile.
    pub kernel: String,
    /// Whether every expect held, nothing leaked and no unexpected event.
    pub passed: bool,
    /// Expects checked.
    pub expects: usize,
    /// Expects that failed.
    pub failed_expects: usize,
    /// References and pins still held at the end.
    pub leaked_refs: u64,
    /// The pages still held at the end, by name (`C[0]`, `C[0] x2`).
    pub leaked_pages: Vec<String>,
    /// References the workload declared as left behind (`expect leaked ==
    /// N`); the run passes only if `leaked_refs` equals it.
    pub expected_leaks: u64,
    /// Events nobody expected.
    pub unexpected_events: Vec<String>,
    /// Invariant violations (with `--check-invariants`; the run stops at the first).
    #[serde(skip_serializing_if = "is_zero")]
    pub invariant_violations: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A run: its records and summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Transcript records.
    pub records: Vec<Record>,
    /// The summary.
    pub summary: Summary,
    /// The kind of the check that halted the run (its first violation), if
    /// one did: what the fuzzer classifies by, not the message.
    pub failed_check: Option<crate::run::oracle::CheckKind>,
    /// The emulated kernel's events, typed, in order.
    pub events: Vec<vmemu_mm::Event>,
    /// The known-bug classes the profile declares
    /// ([`vmemu_mm::profile::Knobs::known_bugs`]).
    pub known_bugs: Vec<vmemu_mm::BugClass>,
    /// References and pins still held at the end that no unreleased result
    /// of the workload accounts for (a result left unreleased holds its
    /// pages' references: those are the workload's, not leaked by the
    /// emulated kernel). The fuzzer's leak check counts these.
    pub unowned_refs: u64,
}

/// Whether a workload applies to `arch` (its `arches` line).
#[must_use]
pub fn applies(w: &Workload, arch: ArchId) -> bool {
    w.arches.is_empty() || w.arches.contains(&arch)
}

/// The arch `w`'s `on ...` qualifiers are matched against on `arch`:
/// `arch` itself where a qualifier of the workload names it, else
/// [`ArchId::qualifier_alias`] (a geometry variant runs the lines of the
/// main arch of its MMU). An `arches` line is exact ([`applies`]): a
/// workload that lists its arches runs only there.
#[must_use]
pub fn qual_arch(w: &Workload, arch: ArchId) -> ArchId {
    fn named(stmts: &[Stmt], arch: ArchId) -> bool {
        stmts.iter().any(|s| {
            s.qual.arches.contains(&arch)
                || match &s.kind {
                    StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) => named(body, arch),
                    _ => false,
                }
        })
    }
    if named(&w.stmts, arch) {
        arch
    } else {
        arch.qualifier_alias()
    }
}

/// The profiles a workload runs under by default: its `kernels` line, else
/// the newest base.
#[must_use]
pub fn default_kernels(w: &Workload) -> Vec<KernelProfile> {
    if w.kernels.is_empty() {
        vec![KernelProfile::newest()]
    } else {
        w.kernels.clone()
    }
}

/// Runs `w` on `arch` under `kernel`.
pub fn run(w: &Workload, arch: ArchId, kernel: &KernelProfile) -> Result<Run, ScriptError> {
    run_with(w, arch, kernel, &RunOptions::default())
}

/// Runs `w` on `arch` under `kernel` with options (invariant checks,
/// oracles, resource bounds).
pub fn run_with(
    w: &Workload,
    arch: ArchId,
    kernel: &KernelProfile,
    opts: &RunOptions,
) -> Result<Run, ScriptError> {
    with_arch!(arch, A => Runner::<A>::start_with(w, kernel, *opts)?.run())
}

/// Statements in `stmts`, `set_fs` bodies included.
#[must_use]
pub fn count_statements(stmts: &[Stmt]) -> usize {
    stmts
        .iter()
        .map(|s| match &s.kind {
            StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) => 1 + count_statements(body),
            _ => 1,
        })
        .sum()
}

/// The statements a run of `w` on `arch` under `kernel` executes, in order
/// (the language has no branches: qualifiers decide statically; a `repeat`
/// body counts once per iteration).
#[must_use]
pub fn executed_spans(w: &Workload, arch: ArchId, kernel: &KernelProfile) -> Vec<Span> {
    executed_spans_capped(w, arch, kernel, usize::MAX)
}

/// [`executed_spans`], stopping after `cap` spans.
fn executed_spans_capped(
    w: &Workload,
    arch: ArchId,
    kernel: &KernelProfile,
    cap: usize,
) -> Vec<Span> {
    fn rec(stmts: &[Stmt], arch: ArchId, kernel: &KernelProfile, out: &mut Vec<Span>, cap: usize) {
        for s in stmts {
            if out.len() >= cap {
                return;
            }
            if s.qual.applies(arch, kernel) {
                out.push(s.span);
                match &s.kind {
                    StmtKind::SetFs(_, body) => rec(body, arch, kernel, out, cap),
                    StmtKind::Repeat(n, body) => {
                        for _ in 0..*n {
                            rec(body, arch, kernel, out, cap);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let mut out = Vec::new();
    rec(&w.stmts, qual_arch(w, arch), kernel, &mut out, cap);
    out
}

/// Checks that the runs of `plan` (workload index, arch, kernel) together
/// execute at most `max_steps` statements; the error points at the first
/// statement past the bound.
pub fn check_step_budget(
    ws: &[Workload],
    plan: &[(usize, ArchId, KernelProfile)],
    max_steps: u64,
) -> Result<(), ScriptError> {
    let mut total = 0u64;
    for (i, a, k) in plan {
        let w = &ws[*i];
        let n = executed_count(&w.stmts, qual_arch(w, *a), k);
        if total.saturating_add(n) > max_steps {
            // Only now the statement past the bound is looked for.
            let cap = usize::try_from(max_steps - total + 1).unwrap_or(usize::MAX);
            let span = *executed_spans_capped(w, *a, k, cap)
                .last()
                .expect("the run executes past the bound");
            return Err(err_at(
                w,
                span,
                format!(
                    "the runs would execute more than {max_steps} statements in total (on {a} under {k}); raise the limit with --max-steps"
                ),
            ));
        }
        total += n;
    }
    Ok(())
}

/// How many statements [`executed_spans`] would give (saturating): a
/// `repeat` multiplies its body's count instead of walking it each time.
fn executed_count(stmts: &[Stmt], arch: ArchId, kernel: &KernelProfile) -> u64 {
    let mut n = 0u64;
    for s in stmts {
        if !s.qual.applies(arch, kernel) {
            continue;
        }
        let body = match &s.kind {
            StmtKind::SetFs(_, body) => executed_count(body, arch, kernel),
            StmtKind::Repeat(times, body) => {
                executed_count(body, arch, kernel).saturating_mul(u64::from(*times))
            }
            _ => 0,
        };
        n = n.saturating_add(1).saturating_add(body);
    }
    n
}

pub(crate) struct Var {
    pub(crate) ret: i64,
    pub(crate) pages: Vec<Pfn>,
    pub(crate) pin: bool,
    /// Whether the pages carry references the workload must release.
    pub(crate) owned: bool,
    pub(crate) start: u64,
}

impl Var {
    /// A result that is only a return value (no pages).
    pub(crate) fn ret(ret: i64) -> Self {
        Self {
            ret,
            pages: Vec::new(),
            pin: false,
            owned: false,
            start: 0,
        }
    }
}

pub(crate) struct Runner<'w, A: Arch> {
    pub(crate) w: &'w Workload,
    /// The arch the workload's qualifiers are matched against ([`qual_arch`]).
    pub(crate) qual_arch: ArchId,
    /// The printed name of the profile (`sys.m.profile`), for records and
    /// messages.
    pub(crate) kernel: String,
    pub(crate) sys: Sys<A>,
    pub(crate) maps: HashMap<String, (VirtAddr, u64)>,
    pub(crate) files: HashMap<String, u32>,
    pub(crate) vars: HashMap<String, Var>,
    pub(crate) iters: HashMap<String, IovIter>,
    pub(crate) pipes: HashMap<String, usize>,
    pub(crate) records: Vec<Record>,
    /// The strings every record repeats, allocated once.
    pub(crate) names: shared::RecordNames,
    pub(crate) expected_events: BTreeSet<String>,
    pub(crate) seen_events: usize,
    pub(crate) expects: usize,
    pub(crate) failed: usize,
    /// The count of the last `expect leaked == N` that ran.
    pub(crate) expected_leaks: u64,
    /// State the caller models keep across statements (fuse connection).
    pub(crate) callers: crate::run::callers::State,
    pub(crate) opts: RunOptions,
    /// An invariant or oracle failed: the rest of the workload is skipped.
    pub(crate) halted: bool,
    /// How many `repeat` iterations being run may be left out of the
    /// transcript (neither the first nor the last of their block): records
    /// made meanwhile carry page keys, named only if kept.
    pub(crate) eliding: u32,
    pub(crate) violations: usize,
    /// The kind of the first violation of the check that halted the run.
    pub(crate) failed_check: Option<crate::run::oracle::CheckKind>,
    /// Pipe slots created so far (`--max-pipe-buffers`).
    pub(crate) pipe_buffers: usize,
    /// Oracle state (the flat models of the iterators).
    pub(crate) oracle: crate::run::oracle::OracleState,
    /// Pipe iterators whose pipe another call used since: (call, line).
    pub(crate) stale_iters: HashMap<String, (String, usize)>,
}

/// Largest copy a script may ask for.
const MAX_COPY: u64 = 64 << 20;

pub(crate) fn set_err(r: &mut Record, e: Errno) {
    r.ret = Some(e.to_ret());
    r.errno = Some(e.name().to_string());
}

/// `-EFAULT` for negative errnos, the number otherwise.
#[must_use]
pub fn fmt_ret(v: i64) -> String {
    if v < 0 && v > -4096 {
        let e = Errno((-v) as i32);
        if e.name() != "E?" {
            return format!("-{}", e.name());
        }
    }
    if !(-0xffff..=0xffff).contains(&v) {
        // Addresses and large sizes read best in hex (kernel addresses are
        // negative as i64).
        format!("{:#x}", v as u64)
    } else {
        v.to_string()
    }
}

pub(crate) fn err_at(w: &Workload, span: Span, msg: impl Into<String>) -> ScriptError {
    let line = w
        .source
        .lines()
        .nth(span.line.saturating_sub(1))
        .unwrap_or("");
    ScriptError::new(&w.file, span, msg, line)
}

/// The failed expects of a run: (line, text, what was seen).
#[must_use]
pub fn failed_expects(r: &Run) -> Vec<(usize, &str, &str)> {
    r.records
        .iter()
        .filter(|x| x.ok == Some(false))
        .map(|x| {
            let got = x.detail.as_deref().unwrap_or("");
            let got = got.strip_prefix("FAILED: got ").unwrap_or(got);
            (x.line, x.text.as_str(), got)
        })
        .collect()
}

#[cfg(test)]
mod repeat_tests {
    use vmemu_arch::ArchId;

    use crate::lang;

    /// A `repeat` body counts once per iteration against `--max-steps`,
    /// and the transcript keeps only the first and last iteration.
    #[test]
    fn repeat_counts_every_iteration_and_elides_the_middle() {
        let src = "map m 1 page rw\nrepeat 100 {\n  c = clear_user(m, 1)\n}\nexpect c == 0\n";
        let w = lang::parse("rep.vmw", src).unwrap();
        let v4_10: vmemu_mm::KernelProfile = "v4.10".parse().unwrap();
        let plan = vec![(0usize, ArchId::X86_64, v4_10.clone())];
        // 1 map + 1 repeat + 100 bodies + 1 expect = 103 statements.
        assert!(super::check_step_budget(std::slice::from_ref(&w), &plan, 103).is_ok());
        let e = super::check_step_budget(std::slice::from_ref(&w), &plan, 102).unwrap_err();
        assert!(e.msg.contains("more than 102 statements"), "{}", e.msg);
        assert_eq!(e.span.line, 5);
        let r = super::run(&w, ArchId::X86_64, &v4_10).unwrap();
        assert!(r.summary.passed);
        let ops: Vec<&str> = r.records.iter().map(|x| x.op.as_str()).collect();
        assert_eq!(
            ops,
            ["mmap", "repeat", "clear_user", "clear_user", "expect"]
        );
        let d = r.records[1].detail.as_deref().unwrap_or("");
        assert!(d.starts_with("100 iteration(s); 98 record(s)"), "{d}");
    }
    /// Every call family binds its result through `Runner::bind`: a name
    /// whose result still holds references cannot be rebound (by a gup call
    /// or a syscall alike), and a result without pages can.
    #[test]
    fn rebinding_a_result_that_holds_pages_is_an_error_for_every_family() {
        let k = vmemu_mm::KernelProfile::newest();
        let gup = "map m 1 page rw\nr = get_user_pages_fast(m, 1, FOLL_WRITE)\n";
        for again in ["r = get_user_pages_fast(m, 1, 0)", "r = getpid()"] {
            let src = format!("{gup}{again}\n");
            let w = lang::parse("rebind.vmw", &src).unwrap();
            let e = super::run(&w, ArchId::X86_64, &k).unwrap_err();
            assert!(
                e.msg.contains("`r` still holds pages"),
                "{again}: {}",
                e.msg
            );
            assert_eq!(e.span.line, 3, "{again}");
        }
        let src = "map m 1 page rw\nr = clear_user(m, 1)\nr = getpid()\nr = clear_user(m, 1)\n";
        let w = lang::parse("rebind.vmw", src).unwrap();
        assert!(super::run(&w, ArchId::X86_64, &k).unwrap().summary.passed);
    }
}
