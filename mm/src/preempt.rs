//! Preemption points: where another task (another CPU) may run while gup is
//! in the middle of a call.
//!
//! The one gup-fast walker (`gup_pgd_range` → `gup_pud_range` /
//! `gup_pmd_range` → `gup_pte_range`, `gup_huge_leaf`; 6.13's
//! `gup_fast_pgd_range` family) and the slow path's retry point call the
//! installed [`Preempt`] hook before each shared-memory access that another
//! CPU can race with: every table-entry read, the re-read after a
//! speculative reference, the moment the walker leaves its IRQ-off section
//! (`local_irq_restore`, where a TLB-flush IPI or an RCU grace period it
//! held up completes), and each walk of a page by `__get_user_pages`. With
//! no hook installed a call runs to completion and a point costs one
//! predictable branch; with one, the hook gets `&mut Machine` and may run
//! another task's operations (munmap, a zap, a COW break, a collapse ...)
//! before the walker goes on.
//!
//! # Why a hook, not a step machine or OS threads
//!
//! What makes gup-fast safe is a *protocol between two CPUs*: the walker
//! reads entries with interrupts off and takes speculative references it
//! re-checks against the entry; the unmapper clears entries and frees table
//! pages (and, where the TLB flush is an IPI, pages) only after every CPU
//! that could be inside such a walk has left it. The emulator's `Machine` is
//! one `&mut` state with no locks: OS threads would serialise on a lock
//! around it, with the interleaving chosen by the host scheduler instead of
//! a seed. The faithful test makes each of the walker's shared-memory
//! accesses (one `READ_ONCE` on real hardware) an atomic step and lets a
//! seeded schedule put any other operation between two of them. A hook
//! called at those points does that on the walker every transcript runs,
//! keeps its code the kernel's shape (a step machine would turn the four
//! per-level functions into one state enum) and costs nothing measurable
//! when none is installed.
//!
//! While the hook runs it is taken out of the machine: what it runs (another
//! task's gup, a fault) is not preempted again. At every entry read the
//! machine itself checks that the table is still the live table the walker
//! stepped into (not freed, not reused: its sequence number); a walker that
//! would read a freed table raises `use_after_free` and stops. This is what
//! the deferral rule (`Machine::free_tables` holds unlinked tables while
//! `lockless_walkers > 0`) guarantees, and what
//! [`Machine::break_table_deferral`] breaks on purpose.

use vmemu_arch::{Arch, Level, PhysAddr, VirtAddr};

use crate::Machine;
use crate::event::EventKind;
use crate::phys::{Owner, PageFlags};

/// Where a task was preempted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PreemptPoint {
    /// gup-fast is about to read entry `idx` of the level-`level` table at
    /// `table` (`recheck`: the re-read after taking a speculative reference).
    GupFastRead {
        /// Table level (0 = pgd).
        level: Level,
        /// The table.
        table: PhysAddr,
        /// Entry index.
        idx: usize,
        /// The re-read of an entry already read.
        recheck: bool,
    },
    /// gup-fast left its IRQ-off section (`local_irq_restore`); the count of
    /// walkers still inside is already decremented.
    GupFastLeave,
    /// `__get_user_pages` is about to walk the page at `addr` for the
    /// `walk`-th time (2 = after the first `faultin_page`, ...), holding
    /// `mmap_sem` for read.
    GupRetry {
        /// The address.
        addr: VirtAddr,
        /// Walk number, from 1.
        walk: u32,
    },
}

/// A hook run at preemption points (see the module docs).
pub trait Preempt<A: Arch>: std::fmt::Debug + Send {
    /// Runs at `at`; may run other tasks' operations on `m`. Returns whether
    /// the hook stays installed.
    fn preempt(&mut self, m: &mut Machine<A>, at: PreemptPoint) -> bool;

    /// For a step that belongs to one call: what to log when the call ended
    /// without reaching it (the hook is then removed). Others return `None`
    /// and stay installed.
    fn unfired(&self) -> Option<String> {
        None
    }
}

/// Deepest table level tracked (levels 0..MAX_LEVELS).
const MAX_LEVELS: usize = 6;

/// The machine's preemption state: the installed hook, and for the walk in
/// progress the table it reads at each level with the table's sequence
/// number when the walker stepped into it.
pub struct Preemption<A: Arch> {
    hook: Option<Box<dyn Preempt<A>>>,
    tables: [(PhysAddr, u32); MAX_LEVELS],
}

impl<A: Arch> Default for Preemption<A> {
    fn default() -> Self {
        Self {
            hook: None,
            tables: [(PhysAddr(u64::MAX), 0); MAX_LEVELS],
        }
    }
}

impl<A: Arch> std::fmt::Debug for Preemption<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preemption")
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl<A: Arch> Preemption<A> {
    /// Whether a hook is installed.
    #[inline(always)]
    pub(crate) fn armed(&self) -> bool {
        self.hook.is_some()
    }
}

impl<A: Arch> Machine<A> {
    /// Installs `hook` (or removes the hook with `None`); returns the one it
    /// replaces.
    pub fn set_preempt_hook(
        &mut self,
        hook: Option<Box<dyn Preempt<A>>>,
    ) -> Option<Box<dyn Preempt<A>>> {
        std::mem::replace(&mut self.preempt.hook, hook)
    }

    /// Whether a preemption hook is installed.
    #[must_use]
    pub fn preempt_hook_installed(&self) -> bool {
        self.preempt.armed()
    }

    /// Removes a hook that belongs to one call and returns its log line
    /// (see [`Preempt::unfired`]); other hooks stay.
    pub(crate) fn take_unfired_hook(&mut self) -> Option<String> {
        let msg = self.preempt.hook.as_ref()?.unfired()?;
        self.preempt.hook = None;
        Some(msg)
    }

    /// Runs the hook at `at` (callers test [`Preemption::armed`] first).
    #[cold]
    #[inline(never)]
    pub(crate) fn preempt_at(&mut self, at: PreemptPoint) {
        let Some(mut h) = self.preempt.hook.take() else {
            return;
        };
        let keep = h.preempt(self, at);
        if keep && self.preempt.hook.is_none() {
            self.preempt.hook = Some(h);
        }
    }

    /// A gup-fast walk starts: forget the tables of the previous one.
    #[cold]
    #[inline(never)]
    pub(crate) fn preempt_walk_start(&mut self) {
        self.preempt.tables = [(PhysAddr(u64::MAX), 0); MAX_LEVELS];
    }

    /// The preemption point before gup-fast reads entry `idx` of `table`:
    /// runs the hook, then checks that `table` is still the table the walker
    /// stepped into. `false`: it was freed (`use_after_free` raised), the
    /// walker stops.
    #[cold]
    #[inline(never)]
    pub(crate) fn preempt_read(
        &mut self,
        level: Level,
        table: PhysAddr,
        idx: usize,
        recheck: bool,
    ) -> bool {
        let l = usize::from(level.0).min(MAX_LEVELS - 1);
        if self.preempt.tables[l].0 != table {
            // First read in this table: nothing ran since the walker read
            // the entry pointing at it, so it is live now.
            self.preempt.tables[l] = (table, self.table_seq_of(table).unwrap_or(u32::MAX));
        }
        self.preempt_at(PreemptPoint::GupFastRead {
            level,
            table,
            idx,
            recheck,
        });
        let seq = self.preempt.tables[l].1;
        match self.table_seq_of(table) {
            Some(now)
                if now == seq
                    && !self.table_frame_free(table)
                    && self.tables.is_live::<A>(table) =>
            {
                true
            }
            _ => {
                let pfn = table.pfn(A::PAGE_SHIFT).0;
                let now = self.table_frame_owner(table);
                let frag = self.freed_fragment(table);
                let whose =
                    if self.table_seq_of(table) == Some(seq) && !self.table_frame_free(table) {
                        format!("a fragment of frame {pfn:#x}, which was freed")
                    } else {
                        format!("whose frame {pfn:#x} was freed{now}")
                    };
                self.event(
                    EventKind::UseAfterFree,
                    format!(
                        "gup-fast read entry {idx} of a level-{} table (pt#{seq}{frag}) {whose}: a table freed while a lockless walker was inside",
                        level.0
                    ),
                );
                false
            }
        }
    }

    fn table_seq_of(&self, table: PhysAddr) -> Option<u32> {
        let pfn = table.pfn(A::PAGE_SHIFT);
        if !self.phys.pfn_valid(pfn) {
            return None;
        }
        match self.phys.page(pfn).owner {
            Owner::PageTable { seq, .. } => Some(seq),
            _ => None,
        }
    }

    /// `table` as a fragment of its frame (`.2`, the frame still holding
    /// live fragments), or nothing.
    fn freed_fragment(&self, table: PhysAddr) -> String {
        self.tables
            .frag_index::<A>(table)
            .map_or(String::new(), |i| format!(".{i}"))
    }

    fn table_frame_free(&self, table: PhysAddr) -> bool {
        let pfn = table.pfn(A::PAGE_SHIFT);
        self.phys.page(pfn).flags.contains(PageFlags::FREE)
    }

    fn table_frame_owner(&self, table: PhysAddr) -> String {
        let pfn = table.pfn(A::PAGE_SHIFT);
        if !self.phys.pfn_valid(pfn) || self.table_frame_free(table) {
            return String::new();
        }
        format!(" and reused as {:?}", self.phys.page(pfn).owner)
    }
}

#[cfg(test)]
mod tests {
    use vmemu_arch::{Arch, Arm64, Pfn, VirtAddr, X86_64};

    use super::{Preempt, PreemptPoint};
    use crate::Machine;
    use crate::event::EventKind;
    use crate::gup::GupFlags;
    use crate::mm::{Backing, Prot};
    use crate::profile::KernelProfile;
    use crate::sync::MmId;
    use crate::vma::MapFlags;

    /// Unmaps `[addr, addr + len)` at the first leaf-level entry read past
    /// `after`, and counts the reads per level.
    #[derive(Debug)]
    struct UnmapAt {
        mm: MmId,
        addr: VirtAddr,
        len: u64,
        after: usize,
        reads: [u64; 6],
        done: bool,
    }

    impl<A: Arch> Preempt<A> for UnmapAt {
        fn preempt(&mut self, m: &mut Machine<A>, at: PreemptPoint) -> bool {
            if let PreemptPoint::GupFastRead { level, idx, .. } = at {
                self.reads[usize::from(level.0)] += 1;
                if !self.done && level == A::leaf_level() && idx > self.after {
                    self.done = true;
                    m.munmap(self.mm, self.addr, self.len).unwrap();
                }
            }
            true
        }
    }

    /// gup-fast of 8 pages with an munmap of all of them at the walker's
    /// fourth pte read: returns the pages taken, whether a freed table was
    /// read, and the reads per level.
    fn unmap_inside<A: Arch>(broken: bool) -> (u64, bool, [u64; 6]) {
        let mut m = Machine::<A>::new(KernelProfile::parse("v6.13").unwrap(), 32 << 20).unwrap();
        m.break_table_deferral = broken;
        let mm = m.current_mm();
        let a = VirtAddr(1 << 32);
        let len = 8 * A::PAGE_SIZE;
        m.mmap(
            mm,
            Some(a),
            len,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "r",
        )
        .unwrap();
        assert_eq!(m.clear_user(a, len), 0);
        let hook = UnmapAt {
            mm,
            addr: a,
            len,
            after: 2,
            reads: [0; 6],
            done: false,
        };
        // The hook comes back boxed; its counts are read from its Debug.
        m.set_preempt_hook(Some(Box::new(hook)));
        let mut pages: Vec<Pfn> = Vec::new();
        let n = m
            .__get_user_pages_fast(a, 8, GupFlags::FOLL_WRITE, &mut pages)
            .unwrap();
        let h = m.set_preempt_hook(None).unwrap();
        let reads = parse_reads(&format!("{h:?}"));
        for p in pages {
            m.put_page(p).unwrap();
        }
        let uaf = m.events.iter().any(|e| e.kind == EventKind::UseAfterFree);
        if !broken {
            m.check_invariants().unwrap();
            assert_eq!(m.deferred_table_count(), 0);
        }
        (n, uaf, reads)
    }

    fn parse_reads(dbg: &str) -> [u64; 6] {
        let i = dbg.find("reads: [").unwrap() + 8;
        let j = i + dbg[i..].find(']').unwrap();
        let mut out = [0; 6];
        for (k, v) in dbg[i..j].split(", ").enumerate() {
            out[k] = v.parse().unwrap();
        }
        out
    }

    #[test]
    fn an_unmap_at_a_gup_fast_read_is_seen_and_deferred() {
        fn run<A: Arch>() {
            let (n, uaf, reads) = unmap_inside::<A>(false);
            // The walker read pgd, pud, pmd once and ptes until the cleared
            // entry stopped it: three pages taken, no freed table read.
            assert_eq!(n, 3);
            assert!(!uaf);
            for l in 0..A::levels() - 1 {
                assert_eq!(reads[l], 1, "level {l}: {reads:?}");
            }
            assert!(reads[usize::from(A::leaf_level().0)] >= 4, "{reads:?}");
            // The deferral rule broken: the next pte read is of a freed table.
            let (n, uaf, _) = unmap_inside::<A>(true);
            assert_eq!(n, 3);
            assert!(uaf);
        }
        run::<X86_64>();
        run::<Arm64>();
    }
}
