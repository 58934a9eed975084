//! One schedule: the main task's gup calls, and the other tasks'
//! operations run by a preemption hook.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use vmemu_arch::{Arch, Level, Pfn, VirtAddr};
use vmemu_mm::errno::Errno;
use vmemu_mm::khugepaged::Collapse;
use vmemu_mm::sync::{MmId, TaskId};
use vmemu_mm::{Backing, EventKind, GupFlags, MapFlags, Preempt, PreemptPoint, Prot};

use super::splitmix64;

type Machine<A> = vmemu_mm::Machine<A>;

/// Levels counted (0 = pgd).
pub const LEVELS: usize = 5;

/// Counts of one or more schedules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleStats {
    /// gup calls (the main task's and the other tasks' walks).
    pub calls: u64,
    /// Calls with at least one operation of another task inside them.
    pub interleaved_calls: u64,
    /// gup-fast walks that reached their walker (IRQ-off sections left).
    pub walks: u64,
    /// Entry reads (and re-reads) the walker passed, per level.
    pub reads: [u64; LEVELS],
    /// Entry reads at which another task's operation ran, per level.
    pub preempted: [u64; LEVELS],
    /// Operations of other tasks.
    pub ops: u64,
    /// Pages the main task's calls took.
    pub pages: u64,
    /// Known-bug events of the modelled kernel the interleaving reached
    /// ([`FINDINGS`]): counted, not failures.
    pub findings: u64,
}

impl ScheduleStats {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Self) {
        self.calls += o.calls;
        self.interleaved_calls += o.interleaved_calls;
        self.walks += o.walks;
        for l in 0..LEVELS {
            self.reads[l] += o.reads[l];
            self.preempted[l] += o.preempted[l];
        }
        self.ops += o.ops;
        self.pages += o.pages;
        self.findings += o.findings;
    }
}

/// Events that are known bugs of the modelled kernel rather than of the
/// lockless protocol (GUP pins vs fork on v4.x: a fork and a write at a
/// preemption point inside a call that holds references): findings.
pub const FINDINGS: &[EventKind] = &[
    EventKind::SharedPageReused,
    EventKind::PinDetached,
    EventKind::ZeroPageCorrupted,
    EventKind::PageCacheCorrupted,
];

/// What a schedule runs: the first `calls` main calls, without the
/// interleaved operations numbered in `skip` (their dice are still drawn, so
/// the rest of the schedule stays the same).
#[derive(Clone, Debug)]
pub struct Plan {
    /// Main calls.
    pub calls: usize,
    /// Operations (by number, from 0) not run.
    pub skip: BTreeSet<u64>,
}

impl Plan {
    /// Everything.
    #[must_use]
    pub fn full() -> Self {
        Self {
            calls: usize::MAX,
            skip: BTreeSet::new(),
        }
    }
}

/// A failed schedule.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The kind (what shrinking keeps).
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// Operations numbered so far (run or skipped).
    pub ops_run: u64,
    /// The operations that ran, in order.
    pub trace: Vec<String>,
}

impl Failure {
    /// A failure outside any schedule (a bad profile, no memory).
    #[must_use]
    pub fn new(message: String) -> Self {
        Self {
            kind: "setup".into(),
            message,
            ops_run: 0,
            trace: Vec::new(),
        }
    }
}

/// A multi-step operation of another task in progress (it holds `mmap_sem`
/// for write, so nothing but walkers runs beside it).
#[derive(Clone, Debug)]
enum Pending {
    /// munmap: the entries of `parts` are cleared one part per step, then
    /// the VMA goes and its tables are unlinked and freed.
    Munmap {
        addr: VirtAddr,
        len: u64,
        parts: Vec<(VirtAddr, u64)>,
    },
    /// A collapse between its halves.
    Collapse(Collapse),
}

#[derive(Debug)]
struct State {
    rng: u64,
    mm: MmId,
    other: TaskId,
    child: Option<TaskId>,
    pending: Option<Pending>,
    stats: ScheduleStats,
    ops_numbered: u64,
    ops_in_call: u64,
    points: u64,
    check_every: u64,
    skip: BTreeSet<u64>,
    trace: Vec<String>,
    violation: Option<(String, String)>,
    where_: String,
}

impl State {
    fn below(&mut self, n: u64) -> u64 {
        self.rng = splitmix64(self.rng);
        if n == 0 { 0 } else { self.rng % n }
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// Regions of small pages.
const REGIONS: u64 = 3;
/// Pages per small region.
const REGION_PAGES: u64 = 24;

fn region_base<A: Arch>(r: u64) -> VirtAddr {
    // One region per PUD-sized slot, so unmapping one frees its PTE and PMD
    // tables (and the last one the PUD table). Region REGIONS is the THP
    // region: two PMDs of a VM_HUGEPAGE mapping.
    VirtAddr((1u64 << 32) + r * A::entry_span(Level(1)))
}

fn pmd_span<A: Arch>() -> u64 {
    A::entry_span(Level(A::levels() as u8 - 2))
}

fn region_len<A: Arch>(r: u64) -> u64 {
    if r == REGIONS {
        2 * pmd_span::<A>()
    } else {
        REGION_PAGES * A::PAGE_SIZE
    }
}

/// A random page range inside region `r`.
fn range_in<A: Arch>(st: &mut State, r: u64) -> (VirtAddr, u64) {
    let pages = region_len::<A>(r) / A::PAGE_SIZE;
    let p = st.below(pages);
    let n = 1 + st.below((pages - p).min(REGION_PAGES));
    (
        region_base::<A>(r).wrapping_add(p * A::PAGE_SIZE),
        n * A::PAGE_SIZE,
    )
}

/// (Re)maps region `r` and populates a random part of it (write faults:
/// fresh pages or THPs; sometimes reads: the zero pages).
fn remap<A: Arch>(m: &mut Machine<A>, st: &mut State, r: u64) {
    let base = region_base::<A>(r);
    let len = region_len::<A>(r);
    let flags = MapFlags {
        hugepage: r == REGIONS,
        ..MapFlags::default()
    };
    let name = format!("region{r}");
    let _ = m.mmap(
        st.mm,
        Some(base),
        len,
        Prot::RW,
        flags,
        Backing::Anon,
        &name,
    );
    let (a, n) = if st.chance(30) {
        range_in::<A>(st, r)
    } else {
        (base, len)
    };
    if st.chance(20) {
        let mut buf = vec![0u8; n as usize];
        let _ = m.copy_from_user(&mut buf, a);
    } else {
        let _ = m.clear_user(a, n);
    }
}

/// Runs `f` as task `t`.
fn as_task<A: Arch, R>(m: &mut Machine<A>, t: TaskId, f: impl FnOnce(&mut Machine<A>) -> R) -> R {
    let me = m.current;
    m.current = t;
    let r = f(m);
    m.current = me;
    r
}

fn shown(r: Result<(), Errno>) -> String {
    match r {
        Ok(()) => "0".into(),
        Err(e) => e.to_string(),
    }
}

/// One step of the pending operation; `true` if there was one.
fn advance_pending<A: Arch>(m: &mut Machine<A>, st: &mut State) -> bool {
    let Some(p) = st.pending.take() else {
        return false;
    };
    match p {
        Pending::Munmap {
            addr,
            len,
            mut parts,
        } => {
            if let Some((a, l)) = parts.pop() {
                let r = m.madvise_dontneed(st.mm, a, l);
                st.trace.push(format!(
                    "  munmap step: clear entries {a}+{l:#x} = {}",
                    shown(r)
                ));
                st.pending = Some(Pending::Munmap { addr, len, parts });
            } else {
                let r = m.munmap(st.mm, addr, len);
                st.trace.push(format!(
                    "  munmap step: unlink and free the tables of {addr}+{len:#x} = {}",
                    shown(r)
                ));
            }
        }
        Pending::Collapse(c) => match m.collapse_huge_page_finish(c) {
            Err(Errno::EAGAIN) => st.pending = Some(Pending::Collapse(c)),
            r => st.trace.push(format!(
                "  collapse step: isolate, copy, map the THP at {} = {r:?}",
                c.addr
            )),
        },
    }
    true
}

/// Runs every pending step (no walker is inside).
fn finish_pending<A: Arch>(m: &mut Machine<A>, st: &mut State) {
    let mut guard = 0;
    while st.pending.is_some() && guard < 1000 {
        advance_pending(m, st);
        guard += 1;
    }
}

/// Picks and runs one operation of another task. `read_locked`: the main
/// task holds `mmap_sem` for read (only read-side operations may run).
fn run_op<A: Arch>(m: &mut Machine<A>, st: &mut State, read_locked: bool) -> bool {
    let n = st.ops_numbered;
    st.ops_numbered += 1;
    let kind = if read_locked {
        [2, 3, 6, 7, 9][st.below(5) as usize]
    } else {
        st.below(10)
    };
    let r = st.below(REGIONS + 1);
    let (a, len) = range_in::<A>(st, r);
    let pick = st.below(1 << 16);
    if st.skip.contains(&n) {
        return false;
    }
    st.stats.ops += 1;
    st.ops_in_call += 1;
    let at = st.where_.clone();
    let line = if kind < 5 {
        op_mm(m, st, kind, (r, a, len), pick)
    } else {
        op_tasks(m, st, kind, (r, a, len), pick)
    };
    st.trace.push(format!("{at}: {line}"));
    true
}

/// Operations on the main task's mm by the other task sharing it.
fn op_mm<A: Arch>(
    m: &mut Machine<A>,
    st: &mut State,
    kind: u64,
    (_, a, len): (u64, VirtAddr, u64),
    pick: u64,
) -> String {
    let (mm, other) = (st.mm, st.other);
    match kind {
        0 => {
            // munmap in steps: clear entries part by part, then unlink and
            // free the tables (deferred while a walker is inside).
            let mut parts = Vec::new();
            let pages = len / A::PAGE_SIZE;
            let cut = 1 + pick % pages.max(1);
            parts.push((a, cut * A::PAGE_SIZE));
            if cut < pages {
                parts.push((
                    a.wrapping_add(cut * A::PAGE_SIZE),
                    (pages - cut) * A::PAGE_SIZE,
                ));
            }
            parts.reverse();
            st.pending = Some(Pending::Munmap {
                addr: a,
                len,
                parts,
            });
            format!("munmap({a}, {len:#x}) begins")
        }
        1 => {
            let prot = [Prot::NONE, Prot::R, Prot::RW][(pick % 3) as usize];
            let r = as_task(m, other, |m| m.mprotect(mm, a, len, prot));
            format!("mprotect({a}, {len:#x}, {prot:?}) = {}", shown(r))
        }
        2 => {
            let r = as_task(m, other, |m| m.madvise_dontneed(mm, a, len));
            format!("madvise({a}, {len:#x}, MADV_DONTNEED) = {}", shown(r))
        }
        3 => {
            // A THP split: a zap of one page of a huge PMD.
            let t = region_base::<A>(REGIONS)
                .wrapping_add((pick % (2 * pmd_span::<A>() / A::PAGE_SIZE)) * A::PAGE_SIZE);
            let r = as_task(m, other, |m| m.madvise_dontneed(mm, t, A::PAGE_SIZE));
            format!(
                "madvise({t}, one page, MADV_DONTNEED) (splits a THP) = {}",
                shown(r)
            )
        }
        4 => {
            let t = region_base::<A>(REGIONS).wrapping_add((pick % 2) * pmd_span::<A>());
            if pick & 4 != 0 {
                // khugepaged needs every pte present: fault the PMD in.
                as_task(m, other, |m| m.clear_user(t, pmd_span::<A>()));
            }
            match m.collapse_huge_page_begin(mm, t) {
                Ok(c) => {
                    st.pending = Some(Pending::Collapse(c));
                    format!("collapse_huge_page({t}) begins: pmdp_collapse_flush")
                }
                Err(e) => format!("collapse_huge_page({t}) = {e}"),
            }
        }
        _ => {
            let r = as_task(m, other, |m| m.madvise_dontneed(mm, a, len));
            format!("madvise({a}, {len:#x}, MADV_DONTNEED) = {}", shown(r))
        }
    }
}

/// fork, COW breaks, exit, re-mmap, and a second walker.
fn op_tasks<A: Arch>(
    m: &mut Machine<A>,
    st: &mut State,
    kind: u64,
    (r, a, len): (u64, VirtAddr, u64),
    pick: u64,
) -> String {
    let (mm, other) = (st.mm, st.other);
    match kind {
        5 => match st.child {
            Some(_) => {
                let r = as_task(m, other, |m| m.mprotect(mm, a, len, Prot::RW));
                format!("mprotect({a}, {len:#x}, RW) = {}", shown(r))
            }
            None => match as_task(m, other, |m| m.fork()) {
                Ok((c, _)) => {
                    st.child = Some(c);
                    format!("fork() = task {}", c.0)
                }
                Err(e) => format!("fork() = {e}"),
            },
        },
        6 => {
            // A write breaks COW (in this mm, or in the child's).
            let who = match st.child {
                Some(c) if pick.is_multiple_of(2) => c,
                _ => other,
            };
            let r = as_task(m, who, |m| m.put_user(0x5a, a, 1));
            format!("task {} writes {a} (COW break) = {}", who.0, shown(r))
        }
        7 => match st.child.take() {
            Some(c) => {
                let r = m.exit_task(c);
                format!("exit(task {}) (exit_mmap) = {}", c.0, shown(r))
            }
            None => {
                let r = as_task(m, other, |m| m.madvise_dontneed(mm, a, len));
                format!("madvise({a}, {len:#x}, MADV_DONTNEED) = {}", shown(r))
            }
        },
        8 => {
            remap(m, st, r);
            format!("mmap(region{r}) and populate")
        }
        _ => {
            // Another CPU's gup-fast walk (runs to completion).
            let nr = (len / A::PAGE_SIZE) as i64;
            let mut pages = Vec::new();
            let flags = if pick.is_multiple_of(2) {
                GupFlags::FOLL_WRITE
            } else {
                GupFlags::empty()
            };
            let r = as_task(m, other, |m| {
                m.__get_user_pages_fast(a, nr, flags, &mut pages)
            });
            st.stats.calls += 1;
            for p in pages {
                let _ = m.put_page(p);
            }
            format!("__get_user_pages_fast({a}, {nr}) = {r:?}")
        }
    }
}

#[derive(Debug)]
struct Hook {
    st: Arc<Mutex<State>>,
}

impl<A: Arch> Preempt<A> for Hook {
    fn preempt(&mut self, m: &mut Machine<A>, at: PreemptPoint) -> bool {
        let mut st = self.st.lock().unwrap_or_else(PoisonError::into_inner);
        if st.violation.is_some() {
            return true;
        }
        let read_locked = match at {
            PreemptPoint::GupFastLeave => {
                st.stats.walks += 1;
                // The IPI or grace period the walker held up completes; the
                // operation holding mmap_sem for write runs to its end
                // before the caller can take mmap_sem (the fallback).
                finish_pending(m, &mut st);
                return true;
            }
            PreemptPoint::GupFastRead { level, .. } => {
                st.stats.reads[usize::from(level.0).min(LEVELS - 1)] += 1;
                false
            }
            PreemptPoint::GupRetry { .. } => true,
        };
        st.points += 1;
        if st.chance(25) {
            st.where_ = format!("{at:?}");
            let ran = if st.pending.is_some() {
                advance_pending(m, &mut st);
                st.ops_in_call += 1;
                true
            } else {
                run_op(m, &mut st, read_locked)
            };
            if let (true, PreemptPoint::GupFastRead { level, .. }) = (ran, at) {
                st.stats.preempted[usize::from(level.0).min(LEVELS - 1)] += 1;
            }
        }
        if st.check_every != 0
            && st.points.is_multiple_of(st.check_every)
            && st.pending.is_none()
            && let Err(v) = m.check_invariants()
        {
            st.violation = Some((
                "invariant".into(),
                format!("invariant during the schedule ({at:?}): {}", v.join("; ")),
            ));
        }
        true
    }
}

/// The main task's gup call number `i`: returns the pages and whether they
/// are pinned.
fn main_call<A: Arch>(m: &mut Machine<A>, st: &Arc<Mutex<State>>, i: usize) -> (Vec<Pfn>, bool) {
    let (a, nr, kind, write) = {
        let mut s = st.lock().unwrap_or_else(PoisonError::into_inner);
        let r = s.below(REGIONS + 1);
        let (a, len) = range_in::<A>(&mut s, r);
        let kind = s.below(4);
        let write = s.chance(50);
        s.where_ = format!("call {i}");
        (a, (len / A::PAGE_SIZE) as i64, kind, write)
    };
    let flags = if write {
        GupFlags::FOLL_WRITE
    } else {
        GupFlags::empty()
    };
    let mut pages = Vec::new();
    let pin = kind == 2 && m.knobs.foll_pin;
    let _ = match kind {
        0 => m.__get_user_pages_fast(a, nr, flags, &mut pages),
        1 => m.get_user_pages_fast(a, nr, flags, &mut pages),
        2 if pin => m.pin_user_pages_fast(a, nr, flags, &mut pages),
        2 => m.get_user_pages_fast(a, nr, flags, &mut pages),
        _ => m.get_user_pages_unlocked(a, nr as u64, &mut pages, flags),
    };
    (pages, pin)
}

fn release<A: Arch>(m: &mut Machine<A>, pages: Vec<Pfn>, pin: bool) {
    for p in pages {
        let _ = if pin {
            m.unpin_user_page(p)
        } else {
            m.put_page(p)
        };
    }
}

/// Runs one schedule of `plan.calls` (at most `CALLS`) main calls (see the module docs of
/// `concurrency`); the invariants are checked every `check_every`
/// preemption points (0: only at the end).
pub fn run_schedule<A: Arch>(
    m: &mut Machine<A>,
    seed: u64,
    check_every: u64,
    plan: &Plan,
) -> Result<ScheduleStats, Failure> {
    let mm = m.current_mm();
    let other = m.new_task(mm);
    let st = Arc::new(Mutex::new(State {
        rng: seed,
        mm,
        other,
        child: None,
        pending: None,
        stats: ScheduleStats::default(),
        ops_numbered: 0,
        ops_in_call: 0,
        points: 0,
        check_every,
        skip: plan.skip.clone(),
        trace: Vec::new(),
        violation: None,
        where_: String::new(),
    }));
    {
        let mut s = st.lock().unwrap_or_else(PoisonError::into_inner);
        for r in 0..=REGIONS {
            remap(m, &mut s, r);
        }
    }
    let mut seen = m.events.len();
    m.set_preempt_hook(Some(Box::new(Hook {
        st: Arc::clone(&st),
    })));
    for i in 0..plan.calls.min(super::CALLS) {
        st.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ops_in_call = 0;
        let (pages, pin) = main_call(m, &st, i);
        let mut s = st.lock().unwrap_or_else(PoisonError::into_inner);
        s.stats.calls += 1;
        s.stats.pages += pages.len() as u64;
        if s.ops_in_call > 0 {
            s.stats.interleaved_calls += 1;
        }
        drop(s);
        release(m, pages, pin);
        scan_events(m, &mut seen, &st, &format!("call {i}"));
        if st
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .violation
            .is_some()
        {
            break;
        }
    }
    m.set_preempt_hook(None);
    let mut s = st.lock().unwrap_or_else(PoisonError::into_inner);
    finish_pending(m, &mut s);
    if let Some(c) = s.child.take() {
        let _ = m.exit_task(c);
    }
    let fail = |s: &State, kind: &str, message: String| Failure {
        kind: kind.into(),
        message,
        ops_run: s.ops_numbered,
        trace: s.trace.clone(),
    };
    if let Some((k, msg)) = s.violation.clone() {
        return Err(fail(&s, &k, msg));
    }
    drop(s);
    scan_events(m, &mut seen, &st, "after the calls");
    let s = st.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((k, msg)) = s.violation.clone() {
        return Err(fail(&s, &k, msg));
    }
    if m.lockless_walker_count() != 0 || m.deferred_table_count() != 0 {
        let msg = format!(
            "after every walker left: {} walkers inside, {} tables still deferred",
            m.lockless_walker_count(),
            m.deferred_table_count()
        );
        return Err(fail(&s, "deferred", msg));
    }
    let (refs, pins) = m.held_total();
    if refs + pins != 0 {
        let msg = format!(
            "after every call released its pages: {refs} references and {pins} pins still held"
        );
        return Err(fail(&s, "held", msg));
    }
    if let Some((p, _)) = m.phys.allocated_heads().find(|(_, pg)| pg.pincount != 0) {
        return Err(fail(
            &s,
            "pinned",
            format!("{} is still pinned", m.page_name(p)),
        ));
    }
    if let Err(v) = m.check_invariants() {
        return Err(fail(
            &s,
            "invariant",
            format!("invariant after the schedule: {}", v.join("; ")),
        ));
    }
    Ok(s.stats)
}

/// Classifies the events raised since `seen`: findings are counted, any
/// other event is the schedule's violation.
fn scan_events<A: Arch>(m: &Machine<A>, seen: &mut usize, st: &Arc<Mutex<State>>, at: &str) {
    let mut s = st.lock().unwrap_or_else(PoisonError::into_inner);
    for e in &m.events[*seen..] {
        if FINDINGS.contains(&e.kind) {
            s.stats.findings += 1;
        } else if s.violation.is_none() {
            s.violation = Some((
                format!("{:?}", e.kind),
                format!("{at}: {:?}: {}", e.kind, e.detail),
            ));
        }
    }
    *seen = m.events.len();
}
