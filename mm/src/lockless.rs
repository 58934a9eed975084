//! gup-fast as a step-wise state machine, for interleaving with `munmap`,
//! `mprotect` and `madvise(MADV_DONTNEED)` at every table-entry read.
//!
//! # Why an interleaving model, not OS threads
//!
//! What makes gup-fast safe is a *protocol between two CPUs*: the walker
//! reads table entries with interrupts off and takes speculative page
//! references it re-checks against the entry; the unmapper clears entries,
//! and frees table pages (and, where the TLB flush is an IPI, pages) only
//! after every CPU that could be inside such a walk has left it
//! (`tlb_remove_table` / RCU table freeing, the IPI of the flush). The
//! emulator's `Machine` is one `&mut` state with no locks: running it on
//! several OS threads would need a lock around it, which serialises each
//! operation exactly as this model does, only with the interleaving chosen
//! by the host scheduler instead of a seed — less coverage and no replay.
//! Several threads each with their own `Machine` share nothing and test no
//! concurrency at all. The faithful test is therefore to make the walker's
//! shared-memory accesses (each table-entry read, the reference grab, the
//! re-check read) the atomic steps, as they are on real hardware (one
//! `READ_ONCE` each), and let a seeded schedule put any unmapper operation
//! (atomic with respect to the walker: it holds `mmap_sem` and the page
//! table lock, and the walker takes neither) between any two of them.
//!
//! The walker checks every table page it reads: still a table page, the
//! same one it was when the walker stepped into it (its sequence number),
//! and not poisoned ([`crate::check::TABLE_POISON`]: freed table frames are
//! filled with it). With the deferral rule (`Machine::free_tables` holds
//! unlinked tables while `lockless_walkers > 0`) no read ever fails; with
//! [`Machine::break_table_deferral`] set, the schedules find walkers reading
//! freed tables.

use vmemu_arch::{Arch, Level, Pfn, PhysAddr, PteFlags, VirtAddr};

use crate::check::TABLE_POISON;
use crate::gup::Flavour;
use crate::mm::{Backing, Machine, Prot};
use crate::phys::{Owner, PageFlags};
use crate::vma::MapFlags;

#[derive(Clone, Copy, Debug)]
struct Frame {
    level: Level,
    table: PhysAddr,
    /// Table sequence number when the walker stepped into the table.
    seq: u32,
    idx: usize,
    addr: VirtAddr,
    end: VirtAddr,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Start,
    Walk,
    /// An entry was read; the reference is taken next.
    Grab {
        raw: u64,
        first: Pfn,
        refs: u32,
        next: VirtAddr,
    },
    /// References taken; the entry is read again next.
    Recheck {
        raw: u64,
        first: Pfn,
        refs: u32,
        next: VirtAddr,
    },
    Done,
}

/// What one step did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StepResult {
    /// More steps to go.
    Running,
    /// The walk ended (all pages, or it stopped early as gup-fast does).
    Finished,
    /// The walker read memory it must never read.
    Violation(String),
}

/// One lockless gup-fast walk of `[start, start + nr pages)` in the current
/// mm, advanced one shared-memory access at a time.
#[derive(Debug)]
pub struct LocklessWalker {
    frames: Vec<Frame>,
    start: VirtAddr,
    end: VirtAddr,
    phase: Phase,
    flavour: Flavour,
    write: bool,
    pin: bool,
    /// Pages taken so far (each with a reference or pin in `Machine::held`).
    pub pages: Vec<Pfn>,
    /// Steps taken.
    pub steps: u64,
}

impl LocklessWalker {
    /// A walker for `nr` pages from `start` (rounded down to a page).
    #[must_use]
    pub fn new<A: Arch>(m: &Machine<A>, start: VirtAddr, nr: u64, write: bool, pin: bool) -> Self {
        let start = start.align_down(A::PAGE_SIZE);
        Self {
            frames: Vec::new(),
            start,
            end: start.wrapping_add(nr * A::PAGE_SIZE),
            phase: Phase::Start,
            flavour: m.flavour(),
            write,
            pin: pin && m.knobs.foll_pin,
            pages: Vec::new(),
            steps: 0,
        }
    }

    /// Whether the walk has ended.
    #[must_use]
    pub fn done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Whether the pages carry pins (else plain references).
    #[must_use]
    pub fn pinned(&self) -> bool {
        self.pin
    }

    fn finish<A: Arch>(&mut self, m: &mut Machine<A>) -> StepResult {
        if !matches!(self.phase, Phase::Start | Phase::Done) {
            // local_irq_restore
            m.lockless_walkers -= 1;
            if m.lockless_walkers == 0 {
                m.flush_deferred_tables();
            }
        }
        self.phase = Phase::Done;
        StepResult::Finished
    }

    /// Checks that `f.table` is still the live table the walker entered.
    fn table_ok<A: Arch>(m: &Machine<A>, f: &Frame) -> Result<(), String> {
        let pfn = f.table.pfn(A::PAGE_SHIFT);
        if !m.phys.pfn_valid(pfn) {
            return Err(format!("table at {} is outside memory", f.table));
        }
        let p = m.phys.page(pfn);
        if p.flags.contains(PageFlags::FREE) {
            return Err(format!(
                "read entry {} of a level-{} table whose frame {:#x} was freed (use after free)",
                f.idx, f.level.0, pfn.0
            ));
        }
        match p.owner {
            Owner::PageTable { level, seq } if level == f.level.0 && seq == f.seq => Ok(()),
            other => Err(format!(
                "read entry {} of a level-{} table (pt#{}) whose frame {:#x} was freed and reused as {other:?}",
                f.idx, f.level.0, f.seq, pfn.0
            )),
        }
    }

    fn read<A: Arch>(m: &Machine<A>, f: &Frame) -> Result<Option<u64>, String> {
        Self::table_ok(m, f)?;
        let raw = m
            .phys
            .table(f.table, A::entries(f.level))
            .ok()
            .and_then(|t| t.get(f.idx));
        if raw == Some(TABLE_POISON) {
            return Err(format!(
                "read a poisoned entry {} of a level-{} table (freed)",
                f.idx, f.level.0
            ));
        }
        Ok(raw)
    }

    fn frame_of<A: Arch>(
        m: &Machine<A>,
        table: PhysAddr,
        level: Level,
        addr: VirtAddr,
        end: VirtAddr,
    ) -> Frame {
        let seq = match m.phys.page(table.pfn(A::PAGE_SHIFT)).owner {
            Owner::PageTable { seq, .. } => seq,
            _ => u32::MAX,
        };
        Frame {
            level,
            table,
            seq,
            idx: A::index(addr, level),
            addr,
            end,
        }
    }

    /// Advances the top frame past the entry just handled.
    fn advance(&mut self, next: VirtAddr) {
        if let Some(f) = self.frames.last_mut() {
            f.addr = next;
            f.idx += 1;
        }
    }

    /// One step: one table-entry read, one reference grab, or one re-check.
    pub fn step<A: Arch>(&mut self, m: &mut Machine<A>) -> StepResult {
        self.steps += 1;
        match self.phase {
            Phase::Done => StepResult::Finished,
            Phase::Start => {
                if self.start >= self.end {
                    return self.finish(m);
                }
                // local_irq_save
                m.lockless_walkers += 1;
                let pgd = m.mm(m.current_mm()).pgd;
                self.frames = vec![Self::frame_of(m, pgd, Level(0), self.start, self.end)];
                self.phase = Phase::Walk;
                StepResult::Running
            }
            Phase::Walk => {
                // Pop finished frames (no memory access).
                while let Some(f) = self.frames.last().copied() {
                    if f.addr < f.end {
                        break;
                    }
                    self.frames.pop();
                    if self.frames.is_empty() {
                        return self.finish(m);
                    }
                    self.advance(f.end);
                }
                let Some(f) = self.frames.last().copied() else {
                    return self.finish(m);
                };
                let raw = match Self::read(m, &f) {
                    Err(e) => {
                        let r = StepResult::Violation(e);
                        self.finish(m);
                        return r;
                    }
                    Ok(None) => return self.finish(m), // table overrun: stop
                    Ok(Some(r)) => r,
                };
                let pte = A::decode(m.family(), f.level, raw);
                let next = A::addr_end(f.addr, f.end, f.level);
                if f.level != A::leaf_level() {
                    if raw == 0 {
                        return self.finish(m);
                    }
                    if pte.has(PteFlags::TABLE) {
                        let child = Self::frame_of(
                            m,
                            pte.pfn.addr(A::PAGE_SHIFT),
                            Level(f.level.0 + 1),
                            f.addr,
                            next,
                        );
                        self.frames.push(child);
                        return StepResult::Running;
                    }
                    if !pte.has(PteFlags::LEAF)
                        || !pte.has(PteFlags::PRESENT)
                        || !m.fast_leaf_ok(self.flavour, self.write, false, pte)
                    {
                        return self.finish(m);
                    }
                    let span = A::entry_span(f.level);
                    let first = Pfn(pte.pfn.0 + f.addr.offset_in(span) / A::PAGE_SIZE);
                    let refs = (next.0.wrapping_sub(f.addr.0) / A::PAGE_SIZE) as u32;
                    self.phase = Phase::Grab {
                        raw,
                        first,
                        refs,
                        next,
                    };
                    return StepResult::Running;
                }
                if !m.fast_leaf_ok(self.flavour, self.write, false, pte)
                    || !m.phys.pfn_valid(pte.pfn)
                {
                    return self.finish(m);
                }
                self.phase = Phase::Grab {
                    raw,
                    first: pte.pfn,
                    refs: 1,
                    next,
                };
                StepResult::Running
            }
            Phase::Grab {
                raw,
                first,
                refs,
                next,
            } => {
                let speculative = self.flavour != Flavour::X86Private;
                if !speculative {
                    // get_page() without a re-check: only safe because the
                    // page cannot be freed while IRQs are off.
                    let head = m.phys.compound_head(first);
                    if m.phys.page(head).flags.contains(PageFlags::FREE) {
                        let r = StepResult::Violation(format!(
                            "get_page on freed frame {:#x} (x86 gup-fast relies on the TLB-flush IPI to keep pages alive)",
                            head.0
                        ));
                        self.finish(m);
                        return r;
                    }
                }
                if m.grab(first, refs, self.pin, speculative).is_none() {
                    return self.finish(m);
                }
                if speculative {
                    self.phase = Phase::Recheck {
                        raw,
                        first,
                        refs,
                        next,
                    };
                } else {
                    self.accept(first, refs, next);
                }
                StepResult::Running
            }
            Phase::Recheck {
                raw,
                first,
                refs,
                next,
            } => {
                let Some(f) = self.frames.last().copied() else {
                    return self.finish(m);
                };
                match Self::read(m, &f) {
                    Err(e) => {
                        m.ungrab(first, refs, self.pin);
                        let r = StepResult::Violation(e);
                        self.finish(m);
                        r
                    }
                    Ok(now) if now != Some(raw) => {
                        // The entry changed under us: drop the reference, stop.
                        m.ungrab(first, refs, self.pin);
                        self.finish(m)
                    }
                    Ok(_) => {
                        self.accept(first, refs, next);
                        StepResult::Running
                    }
                }
            }
        }
    }

    fn accept(&mut self, first: Pfn, refs: u32, next: VirtAddr) {
        for i in 0..u64::from(refs) {
            self.pages.push(Pfn(first.0 + i));
        }
        self.phase = Phase::Walk;
        self.advance(next);
    }

    /// Puts (or unpins) every page the walk took.
    pub fn release<A: Arch>(&mut self, m: &mut Machine<A>) {
        for p in std::mem::take(&mut self.pages) {
            let _ = if self.pin {
                m.unpin_user_page(p)
            } else {
                m.put_page(p)
            };
        }
    }
}

/// Counts of one schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleStats {
    /// Walker steps (table-entry reads, grabs, re-checks).
    pub walker_steps: u64,
    /// Unmapper operations run between them.
    pub ops: u64,
    /// Walks completed.
    pub walks: u64,
    /// Pages the walks took.
    pub pages: u64,
}

/// Regions of the arena the unmapper works on.
const REGIONS: u64 = 3;
/// Pages per region.
const REGION_PAGES: u64 = 24;

fn region_base<A: Arch>(r: u64) -> VirtAddr {
    // One region per PUD-sized slot, so unmapping one frees its PTE and
    // PMD tables (and the last one the PUD table).
    VirtAddr((1u64 << 32) + r * A::entry_span(Level(1)))
}

/// One seeded schedule: `walkers` gup-fast walks over an arena of mapped
/// regions, interleaved with `munmap`, `mprotect`, `madvise(DONTNEED)` and
/// re-`mmap`s chosen by `rnd(n)` (a number below `n`). The invariants are
/// checked every `check_every` steps (0: only at the end). Returns the
/// counts, or the first violation.
pub fn run_schedule<A: Arch>(
    m: &mut Machine<A>,
    rnd: &mut dyn FnMut(u64) -> u64,
    walkers: usize,
    check_every: u64,
) -> Result<ScheduleStats, String> {
    let mm = m.current_mm();
    let mut stats = ScheduleStats::default();
    let remap = |m: &mut Machine<A>, r: u64, rnd: &mut dyn FnMut(u64) -> u64| {
        let base = region_base::<A>(r);
        let len = REGION_PAGES * A::PAGE_SIZE;
        let _ = m.mmap(
            mm,
            Some(base),
            len,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            &format!("region{r}"),
        );
        // Populate a random part (fresh pages; the zero page on reads).
        let (first, n) = if rnd(3) == 0 {
            let f = rnd(REGION_PAGES);
            (f, 1 + rnd(REGION_PAGES - f))
        } else {
            (0, REGION_PAGES)
        };
        let a = base.wrapping_add(first * A::PAGE_SIZE);
        if rnd(4) == 0 {
            let mut buf = vec![0u8; (n * A::PAGE_SIZE) as usize];
            let _ = m.copy_from_user(&mut buf, a);
        } else {
            let _ = m.clear_user(a, n * A::PAGE_SIZE);
        }
    };
    for r in 0..REGIONS {
        remap(m, r, rnd);
    }
    let mut ws: Vec<LocklessWalker> = Vec::new();
    let mut started = 0usize;
    let mut step = 0u64;
    let fail = |m: &mut Machine<A>,
                ws: &mut Vec<LocklessWalker>,
                e: String|
     -> Result<ScheduleStats, String> {
        for w in ws.iter_mut() {
            if !w.done() {
                w.finish(m);
            }
            w.release(m);
        }
        Err(e)
    };
    loop {
        // Start walkers up to the count, a few at a time.
        while ws.iter().filter(|w| !w.done()).count() < 2 && started < walkers {
            let r = rnd(REGIONS);
            let p = rnd(REGION_PAGES);
            let nr = 1 + rnd(REGION_PAGES - p);
            let start = region_base::<A>(r).wrapping_add(p * A::PAGE_SIZE);
            ws.push(LocklessWalker::new(m, start, nr, rnd(2) == 0, rnd(3) == 0));
            started += 1;
        }
        let live: Vec<usize> = (0..ws.len()).filter(|&i| !ws[i].done()).collect();
        if live.is_empty() {
            break;
        }
        step += 1;
        if rnd(100) < 20 {
            // An unmapper operation between two walker accesses.
            stats.ops += 1;
            let r = rnd(REGIONS);
            let base = region_base::<A>(r);
            let p = rnd(REGION_PAGES);
            let n = 1 + rnd(REGION_PAGES - p);
            let a = base.wrapping_add(p * A::PAGE_SIZE);
            let len = n * A::PAGE_SIZE;
            match rnd(5) {
                0 | 1 => {
                    let _ = m.munmap(mm, a, len);
                }
                2 => {
                    let prot = match rnd(3) {
                        0 => Prot::NONE,
                        1 => Prot::R,
                        _ => Prot::RW,
                    };
                    let _ = m.mprotect(mm, a, len, prot);
                }
                3 => {
                    let _ = m.madvise_dontneed(mm, a, len);
                }
                _ => {
                    if m.vma_at(mm, base).is_none() || rnd(3) == 0 {
                        remap(m, r, rnd);
                    }
                }
            }
        } else {
            let i = live[rnd(live.len() as u64) as usize];
            stats.walker_steps += 1;
            match ws[i].step(m) {
                StepResult::Running => {}
                StepResult::Finished => {
                    stats.walks += 1;
                    stats.pages += ws[i].pages.len() as u64;
                    ws[i].release(m);
                }
                StepResult::Violation(e) => return fail(m, &mut ws, e),
            }
        }
        if check_every != 0
            && step.is_multiple_of(check_every)
            && let Err(v) = m.check_invariants()
        {
            let e = format!("invariant during the schedule: {}", v.join("; "));
            return fail(m, &mut ws, e);
        }
        if step > 1_000_000 {
            return fail(m, &mut ws, "schedule did not end".into());
        }
    }
    for w in &mut ws {
        w.release(m);
    }
    if m.lockless_walkers != 0 || !m.deferred_tables.is_empty() || !m.deferred_pages.is_empty() {
        return Err(format!(
            "after every walker left: {} walkers inside, {} tables and {} pages still deferred",
            m.lockless_walkers,
            m.deferred_tables.len(),
            m.deferred_pages.len()
        ));
    }
    let (refs, pins) = m.held_total();
    if refs + pins != 0 {
        return Err(format!(
            "after every walker released its pages: {refs} references and {pins} pins still held"
        ));
    }
    // No page stays pinned: every pincount is zero and refcounts balance.
    if let Some((p, _)) = m.phys.allocated_heads().find(|(_, pg)| pg.pincount != 0) {
        return Err(format!("{} is still pinned", m.page_name(p)));
    }
    m.check_invariants()
        .map_err(|v| format!("invariant after the schedule: {}", v.join("; ")))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::KernelProfile;
    use vmemu_arch::{Arm64, Ppc64, X86_64};

    fn rnd(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut s = seed;
        move |n| {
            // SplitMix64
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            if n == 0 { 0 } else { (z ^ (z >> 31)) % n }
        }
    }

    fn schedules<A: Arch>(kernel: &str, broken: bool, count: u64) -> (u64, Vec<String>) {
        let mut steps = 0;
        let mut errs = Vec::new();
        for seed in 0..count {
            let mut m = Machine::<A>::new(KernelProfile::parse(kernel).unwrap(), 32 << 20).unwrap();
            m.break_table_deferral = broken;
            match run_schedule(&mut m, &mut rnd(seed), 8, 4) {
                Ok(s) => steps += s.walker_steps,
                Err(e) => errs.push(e),
            }
        }
        (steps, errs)
    }

    #[test]
    fn no_violation_with_the_deferral_rule() {
        let (s1, e1) = schedules::<X86_64>("v4.10", false, 40);
        let (s2, e2) = schedules::<Arm64>("v6.13", false, 40);
        let (s3, e3) = schedules::<Ppc64>("v4.10", false, 20);
        assert!(
            e1.is_empty() && e2.is_empty() && e3.is_empty(),
            "{e1:?} {e2:?} {e3:?}"
        );
        assert!(s1 + s2 + s3 > 1000, "{s1} {s2} {s3} steps");
    }

    #[test]
    fn a_broken_deferral_rule_is_caught() {
        let (_, errs) = schedules::<Arm64>("v6.13", true, 60);
        assert!(
            errs.iter().any(|e| e.contains("freed")),
            "no schedule caught a walker reading a freed table: {errs:?}"
        );
    }
}
