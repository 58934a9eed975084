//! The runner: executes a workload on one (arch, profile) and produces its
//! transcript — one record per statement with the return value (negative
//! errnos written `-EFAULT`), the pages returned named symbolically, and the
//! events — followed by the leak check.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use vmemu_arch::{Arch, ArchId, Level, Pfn, SizeKind, VirtAddr, with_arch};
use vmemu_iter::Sys;
use vmemu_iter::get_pages::GotPages;
use vmemu_iter::iov_iter::{BioVec, Dir, IovIter, Iovec};
use vmemu_mm::{
    Backing, DEFAULT_PHYS_SIZE, Errno, FileOps, GupFlags, KernelProfile, MapFlags,
    MkwriteBehaviour, Prot, VmFault,
};

use crate::calls::Family;
use crate::lang::{
    Arg, Expr, MapSpec, Qual, ScriptError, Span, Stmt, StmtKind, Target, Value, Workload,
};
pub use crate::limits::{Limits, RunOptions};

/// One transcript line.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Record {
    /// Workload name.
    pub workload: String,
    /// Arch.
    pub arch: String,
    /// Profile.
    pub kernel: String,
    /// Script line.
    pub line: usize,
    /// Operation: the function called, or `map`, `expect`, ...
    pub op: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<Io>,
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
}

/// Whether a workload applies to `arch` (its `arches` line).
#[must_use]
pub fn applies(w: &Workload, arch: ArchId) -> bool {
    w.arches.is_empty() || w.arches.contains(&arch)
}

/// The profiles a workload runs under by default.
#[must_use]
pub fn default_kernels(w: &Workload) -> Vec<String> {
    if w.kernels.is_empty() {
        vec!["v6.13".to_string()]
    } else {
        w.kernels.clone()
    }
}

/// Runs `w` on `arch` under `kernel`.
pub fn run(w: &Workload, arch: ArchId, kernel: &str) -> Result<Run, ScriptError> {
    run_with(w, arch, kernel, &RunOptions::default())
}

/// Runs `w` on `arch` under `kernel` with options (invariant checks,
/// oracles, resource bounds).
pub fn run_with(
    w: &Workload,
    arch: ArchId,
    kernel: &str,
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
pub fn executed_spans(w: &Workload, arch: ArchId, kernel: &str) -> Vec<Span> {
    executed_spans_capped(w, arch, kernel, usize::MAX)
}

/// [`executed_spans`], stopping after `cap` spans.
fn executed_spans_capped(w: &Workload, arch: ArchId, kernel: &str, cap: usize) -> Vec<Span> {
    fn rec(stmts: &[Stmt], arch: ArchId, kernel: &str, out: &mut Vec<Span>, cap: usize) {
        for s in stmts {
            if out.len() >= cap {
                return;
            }
            let q = &s.qual;
            let arch_ok = q.arches.is_empty() || q.arches.contains(&arch);
            let kernel_ok = q.kernels.is_empty() || q.kernels.iter().any(|k| k == kernel);
            if arch_ok && kernel_ok {
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
    rec(&w.stmts, arch, kernel, &mut out, cap);
    out
}

/// Checks that the runs of `plan` (workload index, arch, kernel) together
/// execute at most `max_steps` statements; the error points at the first
/// statement past the bound.
pub fn check_step_budget(
    ws: &[Workload],
    plan: &[(usize, ArchId, String)],
    max_steps: u64,
) -> Result<(), ScriptError> {
    let mut total = 0u64;
    for (i, a, k) in plan {
        let w = &ws[*i];
        let cap = usize::try_from(max_steps.saturating_sub(total).saturating_add(1))
            .unwrap_or(usize::MAX);
        for span in executed_spans_capped(w, *a, k, cap) {
            total += 1;
            if total > max_steps {
                return Err(err_at(
                    w,
                    span,
                    format!(
                        "the runs would execute more than {max_steps} statements in total (on {a} under {k}); raise the limit with --max-steps"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `vmemu explain`: both walks of `addr` level by level, after running the
/// workload `w` (if any) to set up the address space, and what the profile's
/// knobs make of the address.
pub fn explain(
    w: Option<&Workload>,
    arch: ArchId,
    kernel: &str,
    addr: &str,
) -> Result<String, ScriptError> {
    with_arch!(arch, A => explain_in::<A>(w, kernel, addr))
}

fn explain_in<A: Arch>(
    w: Option<&Workload>,
    kernel: &str,
    addr: &str,
) -> Result<String, ScriptError> {
    use std::fmt::Write as _;
    use vmemu_arch::PteFlags;
    use vmemu_mm::pgtable::{self, RootSel, Step};
    let empty = Workload {
        name: "explain".into(),
        file: "<explain>".into(),
        ..Workload::default()
    };
    let w = w.unwrap_or(&empty);
    let mut r = Runner::<A>::start(w, kernel)?;
    let stmts = w.stmts.clone();
    r.exec_block(&stmts)?;
    let e = crate::lang::parse_expr_str("<address>", addr)?;
    let va = r.addr(&e, Span { line: 1, col: 1 })?;
    let m = &r.sys.m;
    let fam = m.family();
    let mut out = String::new();
    let _ = writeln!(out, "address {va} on {} under {kernel}", A::ID);
    let root_name = A::hw_root_desc;
    let mm = m.current_mm();
    let roots = m.roots(mm);
    for (title, sel) in [
        (
            "software walk (gup: pgd_offset(current->mm, addr) and the level table's index masking)",
            RootSel::Software,
        ),
        (
            "hardware walk (the MMU, as uaccess sees it)",
            RootSel::Hardware,
        ),
    ] {
        let _ = writeln!(out, "{title}:");
        if sel == RootSel::Hardware {
            match A::hw_root(fam, va) {
                Some(root) => {
                    let _ = writeln!(out, "  root: {}", root_name(root));
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  root: none: the MMU cannot translate this address (fault before any table is read)"
                    );
                    continue;
                }
            }
        }
        let mut steps: Vec<Step> = Vec::new();
        let res = pgtable::walk::<A>(&m.phys, fam, roots, va, sel, |s| steps.push(*s));
        for s in &steps {
            let kind = if s.raw == 0 {
                "none".to_string()
            } else if s.pte.has(PteFlags::TABLE) {
                format!("table -> {}", m.page_name(s.pte.pfn))
            } else {
                format!("leaf {:?}", s.pte.flags)
            };
            let _ = writeln!(
                out,
                "  {}[{}] at pa {} = {:#018x}  {kind}",
                A::geom(s.level).name,
                s.index,
                s.entry_pa,
                s.raw
            );
        }
        match res {
            Ok(t) => {
                let _ = writeln!(
                    out,
                    "  => {} byte page at level {}, page {}{}",
                    t.page_size,
                    A::geom(t.level).name,
                    m.page_name(t.pfn),
                    if t.eff.contains(PteFlags::USER) {
                        " (user)"
                    } else {
                        " (kernel only)"
                    }
                );
            }
            Err(f) => {
                let _ = writeln!(
                    out,
                    "  => fault at level {}: {:?}",
                    A::geom(f.level).name,
                    f.kind
                );
            }
        }
    }
    let l = m.layout;
    let page = A::PAGE_SIZE;
    let ok_user = A::access_ok(fam, va, page, l.user_ds, SizeKind::Runtime);
    let ok_kernel = A::access_ok(fam, va, page, l.kernel_ds, SizeKind::Runtime);
    let k = &m.knobs;
    let _ = writeln!(out, "knobs that decide the outcome:");
    let _ = writeln!(
        out,
        "  access_ok(addr, PAGE_SIZE): USER_DS {ok_user}, KERNEL_DS {}",
        if k.set_fs {
            ok_kernel.to_string()
        } else {
            "n/a (no set_fs in this kernel)".into()
        }
    );
    let _ = writeln!(
        out,
        "  gup_fast_range = {:?}; end = addr + PAGE_SIZE {} TASK_SIZE_MAX ({:#x})",
        k.gup_fast_range,
        if va.0.wrapping_add(page) <= l.task_size_max {
            "<="
        } else {
            ">"
        },
        l.task_size_max
    );
    let _ = writeln!(
        out,
        "  gup-fast leaf test: {}",
        if A::PRIVATE_GUP_FAST && k.x86_private_gup {
            "x86 pte_allows_gup (PRESENT and USER)".to_string()
        } else {
            format!("{:?}", k.gup_fast_leaf)
        }
    );
    let _ = writeln!(
        out,
        "  set_fs = {}, numa_balancing = {}",
        k.set_fs, k.numa_balancing
    );
    Ok(out)
}

pub(crate) struct Var {
    pub(crate) ret: i64,
    pub(crate) pages: Vec<Pfn>,
    pub(crate) pin: bool,
    /// Whether the pages carry references the workload must release.
    pub(crate) owned: bool,
    pub(crate) start: u64,
}

pub(crate) struct Runner<'w, A: Arch> {
    pub(crate) w: &'w Workload,
    pub(crate) kernel: String,
    pub(crate) sys: Sys<A>,
    pub(crate) maps: HashMap<String, (VirtAddr, u64)>,
    pub(crate) files: HashMap<String, u32>,
    pub(crate) vars: HashMap<String, Var>,
    pub(crate) iters: HashMap<String, IovIter>,
    pub(crate) pipes: HashMap<String, usize>,
    pub(crate) records: Vec<Record>,
    pub(crate) expected_events: BTreeSet<String>,
    pub(crate) seen_events: usize,
    pub(crate) expects: usize,
    pub(crate) failed: usize,
    /// The count of the last `expect leaked == N` that ran.
    pub(crate) expected_leaks: u64,
    /// State the caller models keep across statements (fuse connection).
    pub(crate) callers: crate::callers::State,
    pub(crate) opts: RunOptions,
    /// An invariant or oracle failed: the rest of the workload is skipped.
    pub(crate) halted: bool,
    pub(crate) violations: usize,
    /// Pipe slots created so far (`--max-pipe-buffers`).
    pub(crate) pipe_buffers: usize,
    /// Oracle state (the flat models of the iterators).
    pub(crate) oracle: crate::oracle::OracleState,
    /// Pipe iterators whose pipe another call used since: (call, line).
    pub(crate) stale_iters: HashMap<String, (String, usize)>,
}

/// Gathering functions whose result is one byte run (pages from *start*)
/// and is checked against the iterator's bytes.
const GATHERS: &[&str] = &[
    "iov_iter_get_pages",
    "iov_iter_get_pages_alloc",
    "iov_iter_get_pages2",
    "iov_iter_get_pages_alloc2",
    "iov_iter_extract_pages",
];

/// Largest copy a script may ask for.
const MAX_COPY: u64 = 64 << 20;

impl<'w, A: Arch> Runner<'w, A> {
    fn start(w: &'w Workload, kernel: &str) -> Result<Self, ScriptError> {
        Self::start_with(w, kernel, RunOptions::default())
    }

    fn start_with(w: &'w Workload, kernel: &str, opts: RunOptions) -> Result<Self, ScriptError> {
        let n = count_statements(&w.stmts);
        if n > opts.limits.max_statements {
            let span = nth_statement(&w.stmts, opts.limits.max_statements).unwrap_or_default();
            return Err(err_at(
                w,
                span,
                format!(
                    "the workload has {n} statements, more than {}; raise the limit with --max-statements",
                    opts.limits.max_statements
                ),
            ));
        }
        let profile = KernelProfile::parse(kernel)
            .map_err(|e| ScriptError::new(&w.file, Span { line: 0, col: 0 }, e.to_string(), ""))?;
        let mut size = DEFAULT_PHYS_SIZE;
        if let Some(e) = &w.mem {
            let layout = A::layout(profile.knobs.family);
            let v = eval_const::<A>(
                w,
                e,
                layout.page_offset,
                layout.task_size_max,
                layout.vmalloc_start,
            )?;
            let max = i128::from(opts.limits.max_mem);
            if v < 16 << 20 {
                return Err(err_at(
                    w,
                    mem_span(w),
                    format!("mem must be at least 16M, found {v}"),
                ));
            }
            if v > max {
                return Err(err_at(
                    w,
                    mem_span(w),
                    format!(
                        "mem {v} is more than the limit of {max} bytes; raise it with --max-mem (at most 64G)"
                    ),
                ));
            }
            size = v as u64;
        }
        let sys = Sys::<A>::new(profile, size)
            .map_err(|e| err_at(w, Span { line: 1, col: 1 }, e.to_string()))?;
        Ok(Self {
            w,
            kernel: kernel.to_string(),
            sys,
            maps: HashMap::new(),
            files: HashMap::new(),
            vars: HashMap::new(),
            iters: HashMap::new(),
            pipes: HashMap::new(),
            records: Vec::new(),
            expected_events: BTreeSet::new(),
            seen_events: 0,
            expects: 0,
            failed: 0,
            expected_leaks: 0,
            callers: crate::callers::State::default(),
            opts,
            halted: false,
            violations: 0,
            pipe_buffers: 0,
            oracle: crate::oracle::OracleState::default(),
            stale_iters: HashMap::new(),
        })
    }

    fn applies(&self, q: &Qual) -> bool {
        let arch_ok = q.arches.is_empty() || q.arches.contains(&A::ID);
        let kernel_ok = q.kernels.is_empty() || q.kernels.contains(&self.kernel);
        arch_ok && kernel_ok
    }

    fn run(mut self) -> Result<Run, ScriptError> {
        let stmts = self.w.stmts.clone();
        // Expected events are declared anywhere in the script.
        collect_expected_events(&stmts, &mut |k, q| {
            if self.applies(q) {
                self.expected_events.insert(k.to_string());
            }
        });
        self.sys.expect_infoleak = self.expected_events.contains("infoleak");
        self.exec_block(&stmts)?;
        self.callers_finish();
        let (refs, pins) = self.sys.m.held_total();
        let leaked = refs + pins;
        let mut unexpected: Vec<String> = self
            .sys
            .m
            .events
            .iter()
            .filter(|e| !self.expected_events.contains(e.kind.name()))
            .map(|e| e.to_string())
            .collect();
        unexpected.dedup();
        let leaked_pages = self.held_names(&self.held_pages(false));
        let passed = self.failed == 0
            && leaked == self.expected_leaks
            && unexpected.is_empty()
            && self.violations == 0;
        let summary = Summary {
            summary: true,
            workload: self.w.name.clone(),
            arch: A::ID.name().to_string(),
            kernel: self.kernel.clone(),
            passed,
            expects: self.expects,
            failed_expects: self.failed,
            leaked_refs: leaked,
            leaked_pages,
            expected_leaks: self.expected_leaks,
            unexpected_events: unexpected,
            invariant_violations: self.violations,
        };
        Ok(Run {
            records: self.records,
            summary,
        })
    }

    pub(crate) fn exec_block(&mut self, stmts: &[Stmt]) -> Result<(), ScriptError> {
        for s in stmts {
            if self.halted {
                break;
            }
            if self.applies(&s.qual) {
                if self.opts.oracles {
                    self.oracle_before(s)?;
                }
                self.exec(s)?;
                if self.opts.oracles && !self.halted {
                    self.oracle_after(s)?;
                }
                if self.opts.check_invariants && !self.halted {
                    self.check_after(s);
                }
            }
        }
        Ok(())
    }

    /// Whether the emulated kernel has done something the real one would
    /// WARN, BUG or corrupt memory on: its state is then not expected to
    /// satisfy the invariants any more.
    pub(crate) fn kernel_state_broken(&self) -> bool {
        use vmemu_mm::EventKind as K;
        self.sys.m.events.iter().any(|e| {
            matches!(
                e.kind,
                K::KernelBug
                    | K::RefUnderflow
                    | K::SoftLockup
                    | K::UseAfterFree
                    | K::ZeroPageCorrupted
            )
        })
    }

    /// `repeat N { ... }`: the body N times. The transcript keeps the
    /// records of the first and the last iteration, and of any other one
    /// that raised an event or failed an expect; the `repeat` record says
    /// how many it left out.
    fn exec_repeat(&mut self, s: &Stmt, n: u32, body: &[Stmt]) -> Result<(), ScriptError> {
        let r = self.record(s, "repeat");
        self.push(r);
        let at = self.records.len() - 1;
        let mut elided = 0usize;
        let mut ran = 0u32;
        for k in 0..n {
            if self.halted {
                break;
            }
            let before = self.records.len();
            self.exec_block(body)?;
            ran += 1;
            if k > 0 && k + 1 < n && !self.halted {
                let tail = self.records.split_off(before);
                for rec in tail {
                    if rec.events.is_empty() && rec.ok != Some(false) {
                        elided += 1;
                    } else {
                        self.records.push(rec);
                    }
                }
            }
        }
        let mut d = format!("{ran} iteration(s)");
        if elided > 0 {
            d.push_str(&format!(
                "; {elided} record(s) of iterations 2..{} without events or failed expects not shown",
                n - 1
            ));
        }
        self.records[at].detail = Some(d);
        Ok(())
    }

    /// Runs the invariant checker after statement `s`.
    fn check_after(&mut self, s: &Stmt) {
        if self.kernel_state_broken() {
            return;
        }
        let iters: Vec<(&str, &IovIter)> =
            self.iters.iter().map(|(n, i)| (n.as_str(), i)).collect();
        if let Err(v) = self.sys.check_invariants(iters) {
            self.fail_check(s, "invariant", v);
        }
    }

    /// Records a failed invariant or oracle after `s` and halts the run.
    pub(crate) fn fail_check(&mut self, s: &Stmt, kind: &str, v: Vec<String>) {
        let mut r = self.record(s, kind);
        r.detail = Some(format!("{} violation(s)", v.len()));
        self.push(r);
        if let Some(last) = self.records.last_mut() {
            last.events.extend(
                v.into_iter()
                    .map(|m| format!("{kind}: after line {} `{}`: {m}", s.span.line, s.text)),
            );
        }
        self.violations += 1;
        self.halted = true;
    }

    /// References and pins held in the ledger per page (compound head);
    /// with `unowned`, less those the workload's result variables hold.
    fn held_pages(&self, unowned: bool) -> Vec<(Pfn, u64)> {
        let m = &self.sys.m;
        let mut held: std::collections::BTreeMap<Pfn, u64> = m
            .held()
            .iter()
            .map(|(p, h)| (p, u64::from(h.refs) + u64::from(h.pins)))
            .collect();
        if unowned {
            for v in self.vars.values().filter(|v| v.owned) {
                for &p in &v.pages {
                    if let Some(n) = held.get_mut(&m.phys.compound_head(p)) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
        }
        held.into_iter().filter(|&(_, n)| n > 0).collect()
    }

    /// `C[0]`, `C[0] x2`, ... for [`Runner::held_pages`].
    fn held_names(&self, held: &[(Pfn, u64)]) -> Vec<String> {
        held.iter()
            .map(|&(p, n)| {
                let name = self.sys.m.page_name(p);
                if n == 1 { name } else { format!("{name} x{n}") }
            })
            .collect()
    }

    pub(crate) fn record(&mut self, s: &Stmt, op: &str) -> Record {
        Record {
            workload: self.w.name.clone(),
            arch: A::ID.name().to_string(),
            kernel: self.kernel.clone(),
            line: s.span.line,
            op: op.to_string(),
            text: s.text.clone(),
            ret: None,
            errno: None,
            pages: Vec::new(),
            events: Vec::new(),
            ok: None,
            detail: None,
            io: None,
        }
    }

    pub(crate) fn push(&mut self, mut r: Record) {
        self.sys.report_freed_referenced();
        self.sys.m.check_pin_views();
        r.events = self.sys.m.events[self.seen_events..]
            .iter()
            .map(|e| e.to_string())
            .collect();
        self.seen_events = self.sys.m.events.len();
        self.records.push(r);
    }

    pub(crate) fn err(&self, span: Span, msg: impl Into<String>) -> ScriptError {
        err_at(self.w, span, msg)
    }

    pub(crate) fn eval(&self, e: &Expr) -> Result<i128, ScriptError> {
        let l = self.sys.m.layout;
        match e {
            Expr::Name(n, span) => {
                self.maps
                    .get(n)
                    .map(|(a, _)| i128::from(a.0))
                    .ok_or_else(|| {
                        self.err(
                            *span,
                            format!("undefined mapping `{n}` (map it first, on this arch)"),
                        )
                    })
            }
            Expr::Call(f, args, span) if f == "kaddr" => {
                // The direct-map address of the frame behind page i of a
                // mapping or kernel buffer.
                let Expr::Name(n, nspan) = &args[0] else {
                    return Err(self.err(*span, "kaddr(NAME, INDEX) takes a mapping name first"));
                };
                let base = self.eval(&Expr::Name(n.clone(), *nspan))?;
                let i = self.eval(&args[1])?;
                let va = checked(
                    self,
                    *span,
                    i.checked_mul(i128::from(A::PAGE_SIZE))
                        .and_then(|o| o.checked_add(base)),
                )?;
                let va = VirtAddr(to_u64(self.w, va, *span)?);
                let m = &self.sys.m;
                let pa = m
                    .user_pa(m.current_mm(), va)
                    .or_else(|| m.kernel_pa(va))
                    .ok_or_else(|| {
                        self.err(
                            *span,
                            format!("page {i} of `{n}` is not present (touch it first)"),
                        )
                    })?;
                Ok(i128::from(m.page_address(pa.pfn(A::PAGE_SHIFT)).0))
            }
            Expr::Call(f, args, span) if f == "page" => {
                let Expr::Name(n, nspan) = &args[0] else {
                    return Err(self.err(*span, "page(NAME, INDEX) takes a mapping name first"));
                };
                let base = self.eval(&Expr::Name(n.clone(), *nspan))?;
                let i = self.eval(&args[1])?;
                checked(
                    self,
                    *span,
                    i.checked_mul(i128::from(A::PAGE_SIZE))
                        .and_then(|o| o.checked_add(base)),
                )
            }
            Expr::Call(f, args, span) => {
                let v: Vec<i128> = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<_, _>>()?;
                apply_func::<A>(self.w, f, &v, *span, l.page_offset)
            }
            Expr::Bin(a, op, b, span) => {
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                binop(self.w, *op, x, y, *span)
            }
            other => eval_const::<A>(
                self.w,
                other,
                l.page_offset,
                l.task_size_max,
                l.vmalloc_start,
            ),
        }
    }

    pub(crate) fn addr(&self, e: &Expr, span: Span) -> Result<VirtAddr, ScriptError> {
        let v = self.eval(e)?;
        to_u64(self.w, v, span).map(VirtAddr)
    }

    fn exec(&mut self, s: &Stmt) -> Result<(), ScriptError> {
        match &s.kind {
            StmtKind::Map(name, spec) => self.exec_map(s, name, spec),
            StmtKind::File {
                name,
                size,
                mkwrite,
                fault_retry,
                proc,
            } => {
                let size = to_u64(self.w, self.eval(size)?, s.span)?;
                let page_mkwrite = match mkwrite.as_deref() {
                    None => MkwriteBehaviour::None,
                    Some("ok") => MkwriteBehaviour::Errno(None),
                    Some(v) => match Errno::from_name(v) {
                        Some(e) => MkwriteBehaviour::Errno(Some(e)),
                        None => {
                            MkwriteBehaviour::Raw(VmFault::parse_name(v).unwrap_or(VmFault::SIGBUS))
                        }
                    },
                };
                let id = self.sys.m.create_file(
                    name,
                    size,
                    FileOps {
                        page_mkwrite,
                        fault_retry: *fault_retry,
                    },
                );
                if *proc {
                    self.sys.m.files[id as usize].splice_read = false;
                }
                self.files.insert(name.clone(), id);
                let r = self.record(s, "file");
                self.push(r);
                Ok(())
            }
            StmtKind::Touch(name, write) => {
                let &(addr, len) = self
                    .maps
                    .get(name)
                    .ok_or_else(|| self.err(s.span, format!("undefined mapping `{name}`")))?;
                let left = if *write {
                    self.sys.m.clear_user(addr, len)
                } else {
                    let mut buf = vec![0u8; len.min(MAX_COPY) as usize];
                    self.sys.m.copy_from_user(&mut buf, addr)
                };
                let mut r = self.record(s, "touch");
                r.ret = Some(left as i64);
                self.push(r);
                Ok(())
            }
            StmtKind::SetFs(kds, body) => {
                let old = self.sys.m.set_fs(*kds);
                let mut r = self.record(s, "set_fs");
                if !self.sys.m.knobs.set_fs {
                    r.detail = Some("no effect: this kernel has no set_fs/addr_limit".into());
                }
                self.push(r);
                let res = self.exec_block(body);
                self.sys.m.restore_fs(old);
                res
            }
            StmtKind::Repeat(n, body) => self.exec_repeat(s, *n, body),
            StmtKind::Call {
                var, func, args, ..
            } => {
                let (var, name) = (var.as_deref(), func.name);
                match func.family {
                    Family::Bug => self.exec_bug_call(s, var, name, args),
                    Family::Caller => self.exec_caller(s, var, name, args),
                    Family::Syscall => self.exec_syscall(s, var, name, args),
                    Family::Pipe => self.exec_pipe_call(s, var, name, args),
                    Family::Iter => self.exec_iter_call(s, var, name, args),
                    Family::Mm => self.exec_call(s, var, name, args),
                }
            }
            StmtKind::Kbuf(name, size, in_pages) => {
                let n = self.eval(size)?;
                let ps = i128::from(A::PAGE_SIZE);
                let pages = if *in_pages { n } else { (n + ps - 1) / ps };
                let pages = u32::try_from(pages)
                    .ok()
                    .filter(|p| (1..=4096).contains(p))
                    .ok_or_else(|| {
                        self.err(
                            s.span,
                            format!("kernel buffer must be 1..=4096 pages, found {pages}"),
                        )
                    })?;
                let pfns = self
                    .sys
                    .m
                    .alloc_kernel_pages(name, pages)
                    .map_err(|e| self.err(s.span, e.to_string()))?;
                let va = self
                    .sys
                    .m
                    .vmap(&pfns)
                    .map_err(|e| self.err(s.span, e.to_string()))?;
                self.maps
                    .insert(name.clone(), (va, u64::from(pages) * A::PAGE_SIZE));
                let mut r = self.record(s, "vmalloc");
                r.ret = Some(va.0 as i64);
                self.push(r);
                Ok(())
            }
            StmtKind::Pipe(name) => {
                let slots = vmemu_iter::pipe::PIPE_DEF_BUFFERS;
                if self.pipe_buffers + slots > self.opts.limits.max_pipe_buffers {
                    return Err(self.err(
                        s.span,
                        format!(
                            "pipe `{name}` would bring the run to {} pipe buffers, more than {}; raise the limit with --max-pipe-buffers",
                            self.pipe_buffers + slots,
                            self.opts.limits.max_pipe_buffers
                        ),
                    ));
                }
                self.pipe_buffers += slots;
                let id = self.sys.pipe_create();
                self.pipes.insert(name.clone(), id);
                let r = self.record(s, "pipe");
                self.push(r);
                Ok(())
            }
            StmtKind::Iter {
                name,
                kind,
                read,
                segs,
                pipe,
            } => self.exec_iter(s, name, kind, *read, segs, pipe.as_deref()),
            StmtKind::Expect(t, eq, v) => self.exec_expect(s, t, *eq, v.as_ref()),
            StmtKind::Release(var) => {
                let v = self
                    .vars
                    .get_mut(var)
                    .ok_or_else(|| err_at(self.w, s.span, format!("undefined result `{var}`")))?;
                let pages = std::mem::take(&mut v.pages);
                let pin = v.pin;
                let owned = v.owned;
                let mut bad = 0;
                for p in pages.into_iter().filter(|_| owned) {
                    self.sys.m.drop_pin_origin(p);
                    let r = if pin {
                        self.sys.m.unpin_user_page(p)
                    } else {
                        self.sys.m.put_page(p)
                    };
                    if r.is_err() {
                        bad += 1;
                    }
                }
                let mut r = self.record(s, if pin { "unpin_user_pages" } else { "put_page" });
                r.ret = Some(if bad == 0 { 0 } else { Errno::EINVAL.to_ret() });
                self.push(r);
                Ok(())
            }
        }
    }

    fn exec_map(&mut self, s: &Stmt, name: &str, spec: &MapSpec) -> Result<(), ScriptError> {
        let size = self.eval(&spec.size)?;
        let bytes = if spec.in_pages {
            size.checked_mul(i128::from(A::PAGE_SIZE))
        } else {
            Some(size)
        };
        let bytes = bytes.filter(|b| *b > 0 && *b <= 1 << 44).ok_or_else(|| {
            self.err(
                s.span,
                format!("mapping size must be between 1 byte and 16 TiB, found {size}"),
            )
        })? as u64;
        let at = match &spec.at {
            Some(e) => Some(self.addr(e, s.span)?),
            None => None,
        };
        let backing = if let Some(f) = &spec.file {
            let id = *self.files.get(f).ok_or_else(|| {
                self.err(
                    s.span,
                    format!("undefined file `{f}` (declare it with `file {f} SIZE`)"),
                )
            })?;
            Backing::File { file: id, pgoff: 0 }
        } else if spec.device {
            // Device memory lies outside RAM: frames with no struct page.
            Backing::Pfnmap {
                base: Pfn(self.sys.m.phys.nr_frames() + 0x100),
            }
        } else {
            Backing::Anon
        };
        let flags = MapFlags {
            shared: spec.shared,
            growsdown: spec.growsdown,
            hugepage: spec.huge,
        };
        let mm = self.sys.m.current_mm();
        let res = self
            .sys
            .m
            .mmap(mm, at, bytes, spec.prot, flags, backing, name);
        let mut r = self.record(s, "mmap");
        match res {
            Ok(a) => {
                let n = self.sys.m.mm(mm).vmas.len();
                if n > self.opts.limits.max_mappings {
                    return Err(self.err(
                        s.span,
                        format!(
                            "`map {name}` brings the address space to {n} mappings, more than {}; raise the limit with --max-mappings",
                            self.opts.limits.max_mappings
                        ),
                    ));
                }
                self.maps
                    .insert(name.to_string(), (a, bytes.next_multiple_of(A::PAGE_SIZE)));
                r.ret = Some(a.0 as i64);
            }
            Err(e) => set_err(&mut r, e),
        }
        self.push(r);
        Ok(())
    }

    pub(crate) fn flags(&self, s: &Stmt, a: &Arg) -> Result<GupFlags, ScriptError> {
        match a {
            Arg::Expr(e) => {
                let v = self.eval(e)?;
                if v != 0 {
                    return Err(
                        self.err(s.span, "gup flags are FOLL_* names joined with `|`, or 0")
                    );
                }
                Ok(GupFlags::empty())
            }
            Arg::Foll(f, _) => Ok(*f),
            Arg::Prot(_, span) => Err(self.err(*span, "expected FOLL_* flags, found protections")),
        }
    }

    pub(crate) fn expr_arg(&self, a: &Arg, _s: &Stmt) -> Result<i128, ScriptError> {
        match a {
            Arg::Expr(e) => self.eval(e),
            Arg::Foll(_, span) | Arg::Prot(_, span) => {
                Err(self.err(*span, "expected a value, found flags"))
            }
        }
    }

    fn exec_call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let mut r = self.record(s, func);
        let a0 = to_u64(self.w, self.expr_arg(&args[0], s)?, s.span).map(VirtAddr)?;
        let mut pages = Vec::new();
        let mut pin = false;
        let mut longterm = false;
        let ret: Result<i64, Errno> = match func {
            "get_user_pages_fast"
            | "__get_user_pages_fast"
            | "get_user_pages_fast_only"
            | "pin_user_pages_fast"
            | "get_user_pages"
            | "get_user_pages_unlocked" => {
                let nr = self.expr_arg(&args[1], s)?;
                let nr = i64::try_from(nr)
                    .ok()
                    .filter(|n| i32::try_from(*n).is_ok())
                    .ok_or_else(|| {
                        self.err(s.span, format!("nr_pages must fit an int, found {nr}"))
                    })?;
                let flags = self.flags(s, &args[2])?;
                let m = &mut self.sys.m;
                // Where FOLL_PIN does not exist, a FOLL_LONGTERM reference
                // (get_user_pages_longterm, 4.15+) is the long-term pin.
                longterm = flags.contains(GupFlags::FOLL_LONGTERM) && !m.knobs.foll_pin;
                let res = match func {
                    "get_user_pages_fast" => m.get_user_pages_fast(a0, nr, flags, &mut pages),
                    "__get_user_pages_fast" | "get_user_pages_fast_only" => {
                        m.__get_user_pages_fast(a0, nr, flags, &mut pages)
                    }
                    "pin_user_pages_fast" => {
                        pin = true;
                        m.pin_user_pages_fast(a0, nr, flags, &mut pages)
                    }
                    "get_user_pages" => {
                        let mm = m.current_mm();
                        match m.mmap_read_lock(mm) {
                            Ok(()) => {
                                let res = m.get_user_pages(a0, nr.max(0) as u64, flags, &mut pages);
                                m.mmap_read_unlock(mm);
                                res
                            }
                            Err(e) => Err(e),
                        }
                    }
                    _ => m.get_user_pages_unlocked(a0, nr.max(0) as u64, &mut pages, flags),
                };
                res.map(|n| n as i64)
            }
            "copy_to_user" | "copy_from_user" | "clear_user" => {
                let len = self.expr_arg(&args[1], s)?;
                let len = u64::try_from(len)
                    .ok()
                    .filter(|l| *l <= MAX_COPY)
                    .ok_or_else(|| {
                        self.err(s.span, format!("copy length must be 0..=64M, found {len}"))
                    })?;
                let left = match func {
                    "copy_to_user" => {
                        let buf: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
                        self.sys.m.copy_to_user(a0, &buf)
                    }
                    "copy_from_user" => {
                        let mut buf = vec![0u8; len as usize];
                        self.sys.m.copy_from_user(&mut buf, a0)
                    }
                    _ => self.sys.m.clear_user(a0, len),
                };
                Ok(left as i64)
            }
            "access_ok" => {
                let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
                Ok(i64::from(self.sys.m.access_ok(a0, len, SizeKind::Runtime)))
            }
            "munmap" | "madvise_dontneed" | "mprotect" => {
                let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
                let mm = self.sys.m.current_mm();
                let res = match func {
                    "munmap" => self.sys.m.munmap(mm, a0, len),
                    "madvise_dontneed" => self.sys.m.madvise_dontneed(mm, a0, len),
                    _ => {
                        let prot = match &args[2] {
                            Arg::Prot(p, _) => *p,
                            Arg::Foll(_, span) => {
                                return Err(
                                    self.err(*span, "expected PROT_* protections, found flags")
                                );
                            }
                            Arg::Expr(_) => Prot::NONE,
                        };
                        self.sys.m.mprotect(mm, a0, len, prot)
                    }
                };
                res.map(|()| 0)
            }
            _ => return Err(self.err(s.span, format!("unknown function `{func}`"))),
        };
        match ret {
            Ok(v) => r.ret = Some(v),
            Err(e) => set_err(&mut r, e),
        }
        r.pages = pages.iter().map(|p| self.sys.m.page_name(*p)).collect();
        let retv = r.ret.unwrap_or(0);
        if (pin || longterm) && var.is_some() {
            self.note_pins(a0, &pages);
        }
        self.push(r);
        match var {
            Some(v) => {
                if let Some(old) = self.vars.get(v)
                    && !old.pages.is_empty()
                {
                    return Err(self.err(
                        s.span,
                        format!("`{v}` still holds pages: `release {v}` before reusing the name"),
                    ));
                }
                self.vars.insert(
                    v.to_string(),
                    Var {
                        ret: retv,
                        pages,
                        pin,
                        owned: true,
                        start: 0,
                    },
                );
            }
            None if !pages.is_empty() => {
                // Pages nobody can release: give them back and say so.
                for p in pages {
                    let _ = if pin {
                        self.sys.m.unpin_user_page(p)
                    } else {
                        self.sys.m.put_page(p)
                    };
                }
            }
            None => {}
        }
        Ok(())
    }

    fn exec_iter(
        &mut self,
        s: &Stmt,
        name: &str,
        kind: &str,
        read: bool,
        segs: &[(Expr, Expr)],
        pipe: Option<&str>,
    ) -> Result<(), ScriptError> {
        let dir = if read { Dir::Read } else { Dir::Write };
        if segs.len() > self.opts.limits.max_iovecs {
            return Err(self.err(
                s.span,
                format!(
                    "iterator `{name}` has {} segments, more than {}; raise the limit with --max-iovecs",
                    segs.len(),
                    self.opts.limits.max_iovecs
                ),
            ));
        }
        let mut v = Vec::with_capacity(segs.len());
        for (a, l) in segs {
            let a = self.addr(a, s.span)?;
            let l = to_u64(self.w, self.eval(l)?, s.span)?;
            v.push(Iovec { base: a, len: l });
        }
        let count = v.iter().fold(0u64, |acc, x| acc.wrapping_add(x.len));
        let not_here = |what: &str| {
            format!(
                "{what} does not exist in kernel {}: qualify the statement with `kernel ...`",
                self.kernel
            )
        };
        let it = match kind {
            "iovec" => IovIter::init(&self.sys.m, dir, v, count),
            "kvec" => IovIter::kvec(dir, v, count),
            "bvec" => {
                let mut b = Vec::new();
                for x in &v {
                    let mm = self.sys.m.current_mm();
                    let pa = self
                        .sys
                        .m
                        .kernel_pa(x.base)
                        .or_else(|| self.sys.m.user_pa(mm, x.base))
                        .ok_or_else(|| {
                            self.err(s.span, format!("bvec address {} is not mapped", x.base))
                        })?;
                    let len = u32::try_from(x.len)
                        .map_err(|_| self.err(s.span, "bvec length must fit in 32 bits"))?;
                    // A bio_vec covers physically contiguous memory: every
                    // page of the segment must follow the previous frame.
                    let first = pa.pfn(A::PAGE_SHIFT).0;
                    let last_off = (pa.0 % A::PAGE_SIZE + u64::from(len)).saturating_sub(1);
                    for k in 1..=last_off / A::PAGE_SIZE {
                        let va = x
                            .base
                            .align_down(A::PAGE_SIZE)
                            .wrapping_add(k * A::PAGE_SIZE);
                        let p = self
                            .sys
                            .m
                            .kernel_pa(va)
                            .or_else(|| self.sys.m.user_pa(mm, va))
                            .map(|p| p.pfn(A::PAGE_SHIFT).0);
                        if p != Some(first + k) {
                            return Err(self.err(
                                s.span,
                                format!(
                                    "bvec segment at {} (+{len}) is not physically contiguous: page {k} is not the frame after page {}",
                                    x.base,
                                    k - 1
                                ),
                            ));
                        }
                    }
                    b.push(BioVec {
                        page: pa.pfn(A::PAGE_SHIFT),
                        len,
                        offset: (pa.0 % A::PAGE_SIZE) as u32,
                    });
                }
                IovIter::bvec(dir, b, count)
            }
            "ubuf" => {
                let [x] = v.as_slice() else {
                    return Err(self.err(s.span, "a ubuf iterator has exactly one segment"));
                };
                IovIter::ubuf(&self.sys.m, dir, x.base, x.len)
                    .map_err(|_| self.err(s.span, not_here("ITER_UBUF")))?
            }
            "discard" => IovIter::discard(&self.sys.m, count)
                .map_err(|_| self.err(s.span, not_here("ITER_DISCARD")))?,
            _ => {
                let p = pipe.unwrap_or_default();
                let id = *self
                    .pipes
                    .get(p)
                    .ok_or_else(|| self.err(s.span, format!("undefined pipe `{p}`")))?;
                self.sys
                    .iov_iter_pipe(id)
                    .map_err(|_| self.err(s.span, not_here("ITER_PIPE")))?
            }
        };
        let mut r = self.record(s, "iov_iter_init");
        r.ret = Some(it.count as i64);
        r.detail = Some(format!("{:?}", it.ty).to_uppercase());
        self.push(r);
        self.stale_iters.remove(name);
        self.iters.insert(name.to_string(), it);
        Ok(())
    }

    fn exec_pipe_call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let name_of = |a: &Arg| match a {
            Arg::Expr(Expr::Name(n, _)) => Some(n.clone()),
            _ => None,
        };
        let pname = name_of(&args[0])
            .ok_or_else(|| self.err(s.span, format!("`{func}` takes a pipe name first")))?;
        let pipe = *self
            .pipes
            .get(&pname)
            .ok_or_else(|| self.err(s.span, format!("undefined pipe `{pname}`")))?;
        // An ITER_PIPE lives inside one splice call, under the pipe lock:
        // no other call can use the pipe while it exists. Iterators over
        // this pipe cannot be used after this call.
        for (n, it) in &self.iters {
            if it.ty == vmemu_iter::IterType::Pipe && it.pipe == Some(pipe) {
                self.stale_iters
                    .insert(n.clone(), (func.to_string(), s.span.line));
            }
        }
        let mut r = self.record(s, func);
        let res = if func == "splice_write" {
            let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
            let mut out = Vec::new();
            self.sys.splice_to_vec(pipe, len, &mut out)
        } else {
            let iname = name_of(&args[1]).ok_or_else(|| {
                self.err(s.span, format!("`{func}` takes an iterator name second"))
            })?;
            let mut it = self
                .iters
                .remove(&iname)
                .ok_or_else(|| self.err(s.span, format!("undefined iterator `{iname}`")))?;
            let res = match func {
                "vmsplice" => {
                    let iov = it.iov[it.idx.min(it.iov.len())..].to_vec();
                    self.sys.vmsplice(pipe, iov, 0)
                }
                "readv" => self.sys.pipe_read(pipe, &mut it),
                _ => self.sys.pipe_write(pipe, &mut it),
            };
            self.iters.insert(iname, it);
            res
        };
        match res {
            Ok(v) => r.ret = Some(v as i64),
            Err(e) => set_err(&mut r, e),
        }
        let p = &self.sys.pipes[pipe];
        r.detail = Some(format!(
            "pipe: {} buffers, {} bytes",
            p.nrbufs,
            fmt_ret(p.bytes() as i64)
        ));
        let retv = r.ret.unwrap_or(0);
        self.push(r);
        if let Some(v) = var {
            self.vars.insert(
                v.to_string(),
                Var {
                    ret: retv,
                    pages: Vec::new(),
                    pin: false,
                    owned: false,
                    start: 0,
                },
            );
        }
        Ok(())
    }

    fn exec_iter_call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let Some(Arg::Expr(Expr::Name(it_name, nspan))) = args.first() else {
            return Err(self.err(s.span, format!("`{func}` takes an iterator name first")));
        };
        if let Some((f, line)) = self.stale_iters.get(it_name) {
            return Err(self.err(
                *nspan,
                format!(
                    "pipe iterator `{it_name}` is stale: `{f}` at line {line} used its pipe (an ITER_PIPE exists only inside one splice call, under the pipe lock); create a new one with `iter {it_name} pipe ...`"
                ),
            ));
        }
        let mut it = self.iters.remove(it_name).ok_or_else(|| {
            self.err(
                *nspan,
                format!("undefined iterator `{it_name}` (create it with `iter {it_name} ...`)"),
            )
        })?;
        let mut nums: Vec<u64> = Vec::new();
        for a in &args[1..] {
            let v = self.expr_arg(a, s)?;
            nums.push(
                u64::try_from(v)
                    .ok()
                    .filter(|x| *x <= 1 << 40)
                    .ok_or_else(|| {
                        self.err(s.span, format!("argument must be 0..=2^40, found {v}"))
                    })?,
            );
        }
        let k = self.sys.m.knobs;
        let present = match func {
            "iov_iter_get_pages" | "iov_iter_get_pages_alloc" => !k.get_pages2,
            "iov_iter_get_pages2" | "iov_iter_get_pages_alloc2" | "iov_iter_extract_pages" => {
                k.get_pages2
            }
            "iov_iter_revert" => k.iov_iter_revert,
            _ => true,
        };
        if !present {
            self.iters.insert(it_name.clone(), it);
            return Err(self.err(
                s.span,
                format!(
                    "{func} does not exist in kernel {}: qualify the statement with `kernel ...`",
                    self.kernel
                ),
            ));
        }
        // Host buffers: a copy moves at most `count` bytes, and at most
        // MAX_COPY (64 MiB) per statement; arrays of bvecs are bounded too.
        if matches!(func, "copy_to_iter" | "copy_from_iter") {
            nums[0] = nums[0].min(it.count);
        }
        let host = match func {
            "copy_to_iter" | "copy_from_iter" => nums[0],
            "copy_from_iter_full" if nums[0] <= it.count => nums[0],
            "iov_iter_fill_bvecs" => nums[0].saturating_mul(16),
            _ => 0,
        };
        if host > MAX_COPY {
            self.iters.insert(it_name.clone(), it);
            return Err(self.err(
                s.span,
                format!(
                    "`{func}` would need a {host}-byte buffer; a statement may copy at most 64M"
                ),
            ));
        }
        let mut r = self.record(s, func);
        let mut got: Option<(GotPages, bool)> = None;
        // The iterator as the call found it, to check a gathered run against.
        let before = it.clone();
        let sys = &mut self.sys;
        let res: Result<i64, Errno> = match func {
            "copy_to_iter" => {
                let src: Vec<u8> = (0..nums[0]).map(|i| (i % 251) as u8 + 1).collect();
                Ok(sys.copy_to_iter(&src, &mut it) as i64)
            }
            "copy_from_iter" => {
                let mut dst = vec![0u8; nums[0] as usize];
                let n = sys.copy_from_iter(&mut dst, &mut it);
                dst.truncate(n as usize);
                self.oracle.last_read = Some(dst);
                Ok(n as i64)
            }
            "copy_from_iter_full" if nums[0] > it.count => {
                // Nothing is copied (a pipe still WARNs).
                let pipe = it.ty == vmemu_iter::IterType::Pipe;
                Ok(i64::from(pipe && sys.copy_from_iter_full(&mut [], &mut it)))
            }
            "copy_from_iter_full" => {
                let mut dst = vec![0u8; nums[0] as usize];
                Ok(i64::from(sys.copy_from_iter_full(&mut dst, &mut it)))
            }
            "iov_iter_zero" => Ok(sys.iov_iter_zero(nums[0], &mut it) as i64),
            "iov_iter_advance" => {
                sys.iov_iter_advance(&mut it, nums[0]);
                Ok(it.count as i64)
            }
            "iov_iter_revert" => match sys.iov_iter_revert(&mut it, nums[0]) {
                Ok(()) => Ok(it.count as i64),
                Err(_) => {
                    self.iters.insert(it_name.clone(), it);
                    return Err(self.err(
                        s.span,
                        format!("iov_iter_revert does not exist in kernel {}", self.kernel),
                    ));
                }
            },
            "iov_iter_get_pages" => sys.iov_iter_get_pages(&it, nums[0], nums[1]).map(|g| {
                let b = g.bytes as i64;
                got = Some((g, true));
                b
            }),
            "iov_iter_get_pages_alloc" => sys.iov_iter_get_pages_alloc(&it, nums[0]).map(|g| {
                let b = g.bytes as i64;
                got = Some((g, true));
                b
            }),
            "iov_iter_get_pages2" => sys.iov_iter_get_pages2(&mut it, nums[0], nums[1]).map(|g| {
                let b = g.bytes as i64;
                got = Some((g, true));
                b
            }),
            "iov_iter_get_pages_alloc2" => {
                sys.iov_iter_get_pages_alloc2(&mut it, nums[0]).map(|g| {
                    let b = g.bytes as i64;
                    got = Some((g, true));
                    b
                })
            }
            "iov_iter_extract_pages" => {
                let user = it.user_backed();
                sys.iov_iter_extract_pages(&mut it, nums[0], nums[1])
                    .map(|g| {
                        let b = g.bytes as i64;
                        got = Some((g, user));
                        b
                    })
            }
            "iov_iter_npages" => Ok(sys.iov_iter_npages(&it, nums[0]) as i64),
            "iov_iter_alignment" => Ok(sys.iov_iter_alignment(&it) as i64),
            "iov_iter_gap_alignment" => Ok(sys.iov_iter_gap_alignment(&it) as i64),
            "iov_iter_single_seg_count" => Ok(sys.iov_iter_single_seg_count(&it) as i64),
            "iov_iter_for_each_page" => {
                let stop_after = nums[2];
                let mut calls = 0u64;
                let mut seen = Vec::new();
                let res =
                    sys.iov_iter_for_each_page(&mut it, nums[0], nums[1], &mut |_, p, _, _| {
                        calls += 1;
                        seen.push(p);
                        stop_after == 0 || calls < stop_after
                    });
                let n = res.map(|b| b as i64);
                got = Some((
                    GotPages {
                        pages: seen,
                        ..GotPages::default()
                    },
                    true,
                ));
                n
            }
            "iov_iter_fill_bvecs" => {
                let mut bv = vec![
                    BioVec {
                        page: Pfn(0),
                        len: 0,
                        offset: 0
                    };
                    nums[0] as usize
                ];
                let res = sys.iov_iter_fill_bvecs(&mut it, &mut bv, nums[1]);
                res.map(|(n, bytes)| {
                    got = Some((
                        GotPages {
                            pages: bv[..n].iter().map(|b| b.page).collect(),
                            bytes,
                            ..GotPages::default()
                        },
                        true,
                    ));
                    bytes as i64
                })
            }
            _ => {
                self.iters.insert(it_name.clone(), it);
                return Err(self.err(s.span, format!("unknown function `{func}`")));
            }
        };
        match res {
            Ok(v) => r.ret = Some(v),
            Err(e) => set_err(&mut r, e),
        }
        if let Some((g, _)) = &got
            && GATHERS.contains(&func)
        {
            // Does the returned run hold the iterator's bytes? (A
            // `data_mismatch` event if not; see vmemu_iter::bytemap.)
            self.sys.check_gathered(&before, g, func);
        }
        let (pages, pin, owned, start) = match got {
            Some((g, owned)) => (g.pages, g.pinned, owned, g.start),
            None => (Vec::new(), false, false, 0),
        };
        r.pages = pages.iter().map(|p| self.sys.m.page_name(*p)).collect();
        if start != 0 {
            r.detail = Some(format!("start {start:#x}"));
        }
        r.detail = Some(format!(
            "{}count {}, nr_segs {}, iov_offset {}",
            r.detail
                .as_deref()
                .map(|d| format!("{d}; "))
                .unwrap_or_default(),
            fmt_ret(it.count as i64),
            it.nr_segs,
            fmt_ret(it.iov_offset as i64)
        ));
        let retv = r.ret.unwrap_or(0);
        self.push(r);
        self.iters.insert(it_name.clone(), it);
        match var {
            Some(v) => {
                if let Some(old) = self.vars.get(v)
                    && old.owned
                    && !old.pages.is_empty()
                {
                    return Err(self.err(
                        s.span,
                        format!("`{v}` still holds pages: `release {v}` before reusing the name"),
                    ));
                }
                self.vars.insert(
                    v.to_string(),
                    Var {
                        ret: retv,
                        pages,
                        pin,
                        owned,
                        start,
                    },
                );
            }
            None if owned => {
                for p in pages {
                    let _ = if pin {
                        self.sys.m.unpin_user_page(p)
                    } else {
                        self.sys.m.put_page(p)
                    };
                }
            }
            None => {}
        }
        Ok(())
    }

    fn exec_expect(
        &mut self,
        s: &Stmt,
        t: &Target,
        eq: bool,
        v: Option<&Value>,
    ) -> Result<(), ScriptError> {
        self.expects += 1;
        let (holds, seen) = match t {
            Target::Event(kind) => {
                let seen = self.sys.m.events.iter().any(|e| e.kind == *kind);
                (
                    seen,
                    if seen {
                        "raised".to_string()
                    } else {
                        "not raised".to_string()
                    },
                )
            }
            Target::Leaked => {
                let held = self.held_pages(true);
                let n: u64 = held.iter().map(|&(_, n)| n).sum();
                let Some(Value::Expr(e)) = v else {
                    return Err(self.err(s.span, "compare `leaked` with a number"));
                };
                let want = self.eval(e)?;
                if eq {
                    self.expected_leaks = u64::try_from(want).unwrap_or(0);
                }
                let names = self.held_names(&held);
                (
                    i128::from(n) == want,
                    if names.is_empty() {
                        "0".to_string()
                    } else {
                        format!("{n} ({})", names.join(", "))
                    },
                )
            }
            Target::Field(var, field) => {
                let got: u64 = if let Some(it) = self.iters.get(var) {
                    match field.as_str() {
                        "count" => it.count,
                        "iov_offset" => it.iov_offset,
                        "nr_segs" => it.nr_segs as u64,
                        _ => {
                            return Err(self.err(
                                s.span,
                                format!(
                                    "an iterator has count, iov_offset and nr_segs, not `{field}`"
                                ),
                            ));
                        }
                    }
                } else if let Some(x) = self.vars.get(var) {
                    match field.as_str() {
                        "start" => x.start,
                        _ => {
                            return Err(self.err(
                                s.span,
                                format!("a result has pages and start, not `{field}`"),
                            ));
                        }
                    }
                } else {
                    return Err(self.err(s.span, format!("undefined result or iterator `{var}`")));
                };
                let Some(Value::Expr(e)) = v else {
                    return Err(self.err(s.span, "compare a field with a number"));
                };
                let want = self.eval(e)?;
                (i128::from(got) == want, format!("{got:#x}"))
            }
            Target::Ret(var) | Target::Pages(var) => {
                let x = self
                    .vars
                    .get(var)
                    .ok_or_else(|| self.err(s.span, format!("undefined result `{var}`")))?;
                let names: Vec<String> = x.pages.iter().map(|p| self.sys.m.page_name(*p)).collect();
                match v {
                    Some(Value::Pages(want)) => {
                        let got = names.clone();
                        (got == *want, format!("[{}]", names.join(", ")))
                    }
                    Some(Value::Expr(e)) => {
                        if matches!(t, Target::Pages(_)) {
                            return Err(self.err(
                                s.span,
                                "compare `.pages` with a list such as [buf[0], buf[1]]",
                            ));
                        }
                        let want = self.eval(e)?;
                        (i128::from(x.ret) == want, fmt_ret(x.ret))
                    }
                    None => (true, String::new()),
                }
            }
        };
        let ok = holds == eq;
        if !ok {
            self.failed += 1;
        }
        let mut r = self.record(s, "expect");
        r.ok = Some(ok);
        r.detail = Some(if ok {
            "ok".to_string()
        } else {
            format!("FAILED: got {seen}")
        });
        self.push(r);
        Ok(())
    }
}

fn collect_expected_events(stmts: &[Stmt], f: &mut impl FnMut(&str, &Qual)) {
    for s in stmts {
        match &s.kind {
            StmtKind::Expect(Target::Event(k), _, _) => f(k.name(), &s.qual),
            StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) => {
                collect_expected_events(body, f);
            }
            _ => {}
        }
    }
}

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

/// The span of the `n`-th statement (0-based, `set_fs` bodies included).
fn nth_statement(stmts: &[Stmt], n: usize) -> Option<Span> {
    fn rec(stmts: &[Stmt], n: &mut usize) -> Option<Span> {
        for s in stmts {
            if *n == 0 {
                return Some(s.span);
            }
            *n -= 1;
            if let StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) = &s.kind
                && let Some(sp) = rec(body, n)
            {
                return Some(sp);
            }
        }
        None
    }
    let mut n = n;
    rec(stmts, &mut n)
}

/// Where the `mem` line is (line 1 if it cannot be found).
fn mem_span(w: &Workload) -> Span {
    w.source
        .lines()
        .position(|l| l.trim_start().starts_with("mem "))
        .map_or(Span { line: 1, col: 1 }, |i| Span {
            line: i + 1,
            col: w
                .source
                .lines()
                .nth(i)
                .map_or(0, |l| l.len() - l.trim_start().len())
                + 1,
        })
}

pub(crate) fn err_at(w: &Workload, span: Span, msg: impl Into<String>) -> ScriptError {
    let line = w
        .source
        .lines()
        .nth(span.line.saturating_sub(1))
        .unwrap_or("");
    ScriptError::new(&w.file, span, msg, line)
}

fn checked<A: Arch>(r: &Runner<'_, A>, span: Span, v: Option<i128>) -> Result<i128, ScriptError> {
    v.filter(|x| (-(1i128 << 64)..(1i128 << 64)).contains(x))
        .ok_or_else(|| r.err(span, "arithmetic overflow"))
}

pub(crate) fn to_u64(w: &Workload, v: i128, span: Span) -> Result<u64, ScriptError> {
    if (-(1i128 << 63)..(1i128 << 64)).contains(&v) {
        Ok(v as u64)
    } else {
        Err(err_at(
            w,
            span,
            format!("value {v} does not fit in 64 bits"),
        ))
    }
}

fn binop(w: &Workload, op: char, x: i128, y: i128, span: Span) -> Result<i128, ScriptError> {
    let r = match op {
        '+' => x.checked_add(y),
        '-' => x.checked_sub(y),
        '*' => x.checked_mul(y),
        '/' => x.checked_div(y),
        _ => x.checked_rem(y),
    };
    r.filter(|v| (-(1i128 << 64)..(1i128 << 64)).contains(v))
        .ok_or_else(|| {
            err_at(
                w,
                span,
                if y == 0 && matches!(op, '/' | '%') {
                    "division by zero".to_string()
                } else {
                    "arithmetic overflow".to_string()
                },
            )
        })
}

fn apply_func<A: Arch>(
    w: &Workload,
    f: &str,
    v: &[i128],
    span: Span,
    page_offset: u64,
) -> Result<i128, ScriptError> {
    match f {
        "kdirect" => v[0]
            .checked_mul(i128::from(A::PAGE_SIZE))
            .and_then(|o| o.checked_add(i128::from(page_offset)))
            .filter(|x| *x < 1i128 << 64)
            .ok_or_else(|| err_at(w, span, "kdirect: frame number out of range")),
        // The user address the software walk (pgd_offset + index masking)
        // resolves for this address: its low va_bits bits.
        _ => Ok(((v[0] as u128 as u64) & ((1u64 << A::va_bits()) - 1)).into()),
    }
}

fn eval_const<A: Arch>(
    w: &Workload,
    e: &Expr,
    page_offset: u64,
    task_size: u64,
    vmalloc: u64,
) -> Result<i128, ScriptError> {
    match e {
        Expr::Num(n) => Ok(*n),
        Expr::Errno(e) => Ok(-i128::from(*e)),
        Expr::Const(c, _) => Ok(match c.as_str() {
            "PAGE_SIZE" => A::PAGE_SIZE.into(),
            "PAGE_SHIFT" => A::PAGE_SHIFT.into(),
            "TASK_SIZE" => task_size.into(),
            "PAGE_OFFSET" => page_offset.into(),
            "VMALLOC_START" => vmalloc.into(),
            "PMD_SIZE" => A::entry_span(Level(A::levels() as u8 - 2)).into(),
            _ => A::entry_span(Level(1)).into(),
        }),
        Expr::Bin(a, op, b, span) => {
            let x = eval_const::<A>(w, a, page_offset, task_size, vmalloc)?;
            let y = eval_const::<A>(w, b, page_offset, task_size, vmalloc)?;
            binop(w, *op, x, y, *span)
        }
        Expr::Call(f, args, span) if f != "page" && f != "kaddr" => {
            let v: Vec<i128> = args
                .iter()
                .map(|a| eval_const::<A>(w, a, page_offset, task_size, vmalloc))
                .collect::<Result<_, _>>()?;
            apply_func::<A>(w, f, &v, *span, page_offset)
        }
        Expr::Name(n, span) | Expr::Call(n, _, span) => {
            Err(err_at(w, *span, format!("`{n}` cannot be used here")))
        }
    }
}

/// Style of passing words (`pass`) in coloured text output.
pub const PASS_STYLE: anstyle::Style = anstyle::AnsiColor::Green.on_default().bold();
/// Style of failing words (`FAIL`, `-> FAILED ...`) in coloured text output.
pub const FAIL_STYLE: anstyle::Style = anstyle::AnsiColor::Red.on_default().bold();

/// `text` wrapped in the escapes of `style` when `color`.
#[must_use]
pub fn paint(text: &str, style: anstyle::Style, color: bool) -> String {
    if color {
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

/// Text form of one record.
#[must_use]
pub fn format_record(r: &Record) -> String {
    format_record_with(r, false)
}

/// Text form of one record, with a failed expect's `-> FAILED ...` in
/// [`FAIL_STYLE`] when `color`.
#[must_use]
pub fn format_record_with(r: &Record, color: bool) -> String {
    let mut s = format!("L{:<3} {}", r.line, r.text);
    if let Some(ok) = r.ok {
        if ok {
            s.push_str("  -> ok");
        } else {
            s.push_str("  ");
            let failed = format!("-> {}", r.detail.as_deref().unwrap_or("FAILED"));
            s.push_str(&paint(&failed, FAIL_STYLE, color));
        }
        return s;
    }
    if let Some(v) = r.ret {
        s.push_str(&format!("  = {}", fmt_ret(v)));
    }
    if !r.pages.is_empty() {
        s.push_str(&format!(" [{}]", r.pages.join(", ")));
    }
    if let Some(d) = &r.detail {
        s.push_str(&format!("  ({d})"));
    }
    if let Some(io) = &r.io {
        s.push_str(&format_io(io));
    }
    for e in &r.events {
        s.push_str(&format!("\n       event {e}"));
    }
    s
}

/// Continuation lines of a caller model's record: its units (runs of equal
/// units collapsed), its page traffic, its notes.
fn format_io(io: &Io) -> String {
    let mut s = format!("\n       io {}:", io.model);
    if io.units.is_empty() {
        s.push_str(" no I/O");
    }
    let mut i = 0;
    let mut parts = Vec::new();
    while i < io.units.len() {
        let u = &io.units[i];
        let mut n = 1;
        while i + n < io.units.len() && io.units[i + n] == *u {
            n += 1;
        }
        let one = format!(
            "{}({} bytes, {} page{})",
            u.kind,
            u.bytes,
            u.pages,
            if u.pages == 1 { "" } else { "s" }
        );
        parts.push(if n > 1 { format!("{n} x {one}") } else { one });
        i += n;
    }
    if !parts.is_empty() {
        s.push(' ');
        s.push_str(&parts.join(", "));
    }
    s.push_str(&format!(
        "\n       pages: {} gathering call(s) -> {} page(s); consumer refs {}; put early {}; arrays {}",
        io.get_pages_calls, io.pages_pinned, io.refs_taken, io.put_early, io.allocations
    ));
    for n in &io.notes {
        s.push_str(&format!("\n       note: {n}"));
    }
    s
}

/// Text transcript of a run.
#[must_use]
pub fn format_run(run: &Run) -> String {
    format_run_with(run, false)
}

/// Text transcript of a run, with `pass`/`FAIL` and failed expects coloured
/// when `color`.
#[must_use]
pub fn format_run_with(run: &Run, color: bool) -> String {
    let sm = &run.summary;
    let mut out = format!("# {} on {} under {}\n", sm.workload, sm.arch, sm.kernel);
    for r in &run.records {
        out.push_str(&format_record_with(r, color));
        out.push('\n');
    }
    out.push_str(&format!(
        "# {}: {} expects, {} failed, {} references leaked{}{}{}\n",
        if sm.passed {
            paint("pass", PASS_STYLE, color)
        } else {
            paint("FAIL", FAIL_STYLE, color)
        },
        sm.expects,
        sm.failed_expects,
        sm.leaked_refs,
        match (sm.leaked_pages.is_empty(), sm.expected_leaks) {
            (true, 0) => String::new(),
            (false, 0) => format!(" ({})", sm.leaked_pages.join(", ")),
            (_, n) => format!(
                " ({}; {n} declared by `expect leaked`)",
                sm.leaked_pages.join(", ")
            ),
        },
        if sm.unexpected_events.is_empty() {
            String::new()
        } else {
            format!(", unexpected events: {}", sm.unexpected_events.join("; "))
        },
        if sm.invariant_violations == 0 {
            String::new()
        } else {
            ", invariant or oracle violated".to_string()
        }
    ));
    out
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
        let plan = vec![(0usize, ArchId::X86_64, "v4.10".to_string())];
        // 1 map + 1 repeat + 100 bodies + 1 expect = 103 statements.
        assert!(super::check_step_budget(std::slice::from_ref(&w), &plan, 103).is_ok());
        let e = super::check_step_budget(std::slice::from_ref(&w), &plan, 102).unwrap_err();
        assert!(e.msg.contains("more than 102 statements"), "{}", e.msg);
        assert_eq!(e.span.line, 5);
        let r = super::run(&w, ArchId::X86_64, "v4.10").unwrap();
        assert!(r.summary.passed);
        let ops: Vec<&str> = r.records.iter().map(|x| x.op.as_str()).collect();
        assert_eq!(
            ops,
            ["mmap", "repeat", "clear_user", "clear_user", "expect"]
        );
        let d = r.records[1].detail.as_deref().unwrap_or("");
        assert!(d.starts_with("100 iteration(s); 98 record(s)"), "{d}");
    }
}
