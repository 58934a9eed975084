//! gup-fast, structured like `mm/gup.c` (and v4.10 `arch/x86/mm/gup.c`):
//! the range check, then one function per page-table level
//! (`gup_pgd_range` → `gup_pud_range` → `gup_pmd_range` → `gup_pte_range`,
//! huge leaves in `gup_huge_leaf`; 6.13 spells them `gup_fast_pgd_range`,
//! `gup_fast_pud_range`, `gup_fast_pmd_range`, `gup_fast_pte_range`,
//! `gup_fast_pmd_leaf`/`gup_fast_pud_leaf`), then the fallback to the slow
//! path (`gup_fast_fallback` in 6.13).
//!
//! The walk uses the **software** root: `pgd_offset(current->mm, addr)`,
//! then advances the top-level index by one per `PGDIR_SIZE` step as the
//! kernel advances its pointer; a step past the end of a table is reported
//! as a `table_overrun` event instead of being read.
//!
//! Before every entry read (and every re-read after a speculative
//! reference) the walker passes a preemption point (`crate::preempt`): with
//! a hook installed, another task's operation may run there, and the walker
//! checks that the table it reads is still live. A normal call has no hook
//! and runs to completion.

use vmemu_arch::{Arch, Level, Pfn, PhysAddr, Pte, PteFlags, SizeKind, VirtAddr};

use crate::Machine;
use crate::errno::Errno;
use crate::event::EventKind;
use crate::gup::{Flavour, GupFlags};
use crate::phys::{Owner, PageFlags};
use crate::preempt::PreemptPoint;
use crate::profile::GupFastRange;

/// The last leaf table a gup-fast walk descended into: for the span of
/// virtual addresses one leaf table maps (one PMD entry), under `pgd`, as long
/// as no page table has changed since ([`PhysMem::generation`]). A walk whose
/// whole range lies in that span would read the same pgd, pud and pmd entries
/// and reach the same leaf table, so it starts there. This is an emulator
/// shortcut with no effect on results or events: it is taken only when
/// nothing the skipped reads depend on can have changed.
///
/// [`PhysMem::generation`]: crate::phys::PhysMem::generation
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LeafCache {
    valid: bool,
    generation: u64,
    pgd: PhysAddr,
    /// First virtual address of the span (full address, not masked).
    base: u64,
    /// The leaf table.
    table: PhysAddr,
    /// The non-pfn bits of the last leaf entry that passed gup-fast's leaf
    /// test, with what the test depended on besides the entry (see
    /// `gup_pte_range`). Independent of guest memory.
    accepted: Option<(LeafTestKey, u64)>,
}

/// What `gup_fast_leaf_ok` depends on besides the entry's flags, packed
/// into one word (flavour, write, longterm, NUMA balancing, family) so the
/// leaf-flags cache is checked with one comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct LeafTestKey(u32);

impl LeafTestKey {
    fn new(
        flavour: Flavour,
        write: bool,
        longterm: bool,
        numa_balancing: bool,
        family: vmemu_arch::Family,
    ) -> Self {
        let flavour = match flavour {
            Flavour::X86Private => 0,
            Flavour::GenericNoUser => 1,
            Flavour::AccessPermitted => 2,
        };
        let family = match family {
            vmemu_arch::Family::Legacy => 0,
            vmemu_arch::Family::Modern => 1,
        };
        Self(
            flavour
                | u32::from(write) << 2
                | u32::from(longterm) << 3
                | u32::from(numa_balancing) << 4
                | family << 5,
        )
    }
}

/// State of one lockless walk.
struct FastWalk<'a> {
    pages: &'a mut Vec<Pfn>,
    write: bool,
    pin: bool,
    longterm: bool,
    /// `gup_must_unshare` applies to this walk (a read-only pin where the
    /// profile unshares).
    unshare: bool,
    flavour: Flavour,
    /// `gup_fast_folio_allowed` (the long-term write part) or
    /// `gup_must_unshare` may refuse a page of this walk: decided once per
    /// call from the flags and the profile, as the kernel's tests of
    /// `flags` are, so the page loop tests one bool.
    folio_checks: bool,
    /// Leaf entries (PTEs and huge leaves) processed in this IRQ-off section.
    entries: u64,
    /// The pgd walked (for the leaf-table cache).
    pgd: PhysAddr,
    /// The key of this walk's leaf test (for the leaf-flags cache).
    test: LeafTestKey,
}

impl<A: Arch> Machine<A> {
    /// The permission test of one leaf (PTE or huge) for gup-fast; `None`
    /// means stop.
    #[inline]
    fn gup_fast_leaf_ok(&self, w: &FastWalk<'_>, pte: Pte) -> bool {
        self.fast_leaf_ok(w.flavour, w.write, w.longterm, pte)
    }

    /// The leaf test of a flavour (shared with the step-wise walker).
    pub(crate) fn fast_leaf_ok(
        &self,
        flavour: Flavour,
        write: bool,
        longterm: bool,
        pte: Pte,
    ) -> bool {
        struct W {
            write: bool,
            longterm: bool,
        }
        let w = W { write, longterm };
        let f = pte.flags;
        let numa_stop = self.knobs.numa_balancing && f.contains(PteFlags::PROTNONE);
        match flavour {
            Flavour::X86Private => {
                if numa_stop {
                    return false;
                }
                // Devmap entries skip pte_allows_gup (the v4.10 DAX branch).
                if f.contains(PteFlags::DEVMAP) {
                    return true;
                }
                let allows = f.contains(PteFlags::VALID | PteFlags::USER)
                    && (!w.write || f.contains(PteFlags::WRITE));
                allows && !f.contains(PteFlags::SPECIAL)
            }
            Flavour::GenericNoUser => {
                f.contains(PteFlags::PRESENT)
                    && !f.contains(PteFlags::SPECIAL)
                    && !numa_stop
                    && (!w.write || f.contains(PteFlags::WRITE))
            }
            Flavour::AccessPermitted => {
                if numa_stop {
                    return false;
                }
                let permitted = f.contains(PteFlags::VALID | PteFlags::USER | PteFlags::READ)
                    && (!w.write || f.contains(PteFlags::WRITE));
                if !permitted {
                    return false;
                }
                if f.contains(PteFlags::DEVMAP) {
                    return !w.longterm;
                }
                !f.contains(PteFlags::SPECIAL)
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn overrun(&mut self, level: Level, index: usize) {
        self.event(
            EventKind::TableOverrun,
            format!(
                "gup-fast advanced the {} pointer to index {index}, past the end of its {}-entry table",
                A::geom(level).name,
                A::entries(level)
            ),
        );
    }

    /// The start of a walk over `[start, end)` (both page aligned) under
    /// `pgd`: the leaf table when the leaf-table cache
    /// holds it for the whole range (the walk from the pgd would read the
    /// same three table entries and reach it), else `None`.
    #[inline(always)]
    fn cached_leaf_table(&self, pgd: PhysAddr, start: VirtAddr, end: VirtAddr) -> Option<PhysAddr> {
        let span_shift = A::geom(Level(A::levels() as u8 - 2)).shift;
        let c = &self.leaf_cache;
        (c.valid
            && start < end
            && c.pgd == pgd
            && c.generation == self.phys.generation()
            && start.0 >> span_shift == c.base >> span_shift
            && (end.0 - 1) >> span_shift == c.base >> span_shift)
            .then_some(c.table)
    }

    /// `gup_pgd_range`: the lockless walk from `pgd_offset(current->mm, addr)`.
    #[doc(alias = "gup_fast_pgd_range")]
    fn gup_pgd_range(&mut self, start: VirtAddr, end: VirtAddr, w: &mut FastWalk<'_>) {
        let pgd = w.pgd;
        let mut addr = start;
        let mut idx = A::pgd_index(start);
        loop {
            let next = A::addr_end(addr, end, Level(0));
            if !self.fast_read_point(Level(0), pgd, idx, false) {
                break;
            }
            let Some(raw) = self.read_table_entry(pgd, Level(0), idx) else {
                self.overrun(Level(0), idx);
                break;
            };
            // decode(raw).has(TABLE), by the fast path.
            let Some((pud, _)) = A::table_step(self.family(), Level(0), raw) else {
                break;
            };
            if !self.gup_pud_range(pud, addr, next, w) {
                break;
            }
            addr = next;
            idx += 1;
            if addr == end {
                break;
            }
        }
    }

    #[inline(always)]
    fn leave_lockless(&mut self, w: &FastWalk<'_>) {
        self.lockless_max_run = self.lockless_max_run.max(w.entries);
        self.lockless_walkers -= 1; // local_irq_restore
        if self.lockless_walkers == 0 && !self.deferred_tables.is_empty() {
            self.flush_deferred_tables();
        }
        if self.preempt.armed() {
            self.preempt_at(PreemptPoint::GupFastLeave);
        }
    }

    /// The preemption point before an entry read (`crate::preempt`): with no
    /// hook installed, one branch. `false`: the table was freed under the
    /// walker (`use_after_free` raised), stop.
    #[inline(always)]
    fn fast_read_point(
        &mut self,
        level: Level,
        table: PhysAddr,
        idx: usize,
        recheck: bool,
    ) -> bool {
        !self.preempt.armed() || self.preempt_read(level, table, idx, recheck)
    }

    #[inline]
    fn read_table_entry(&self, table: PhysAddr, level: Level, idx: usize) -> Option<u64> {
        self.phys.table(table, A::entries(level)).ok()?.get(idx)
    }

    /// `gup_pud_range` / `gup_pmd_range`: one upper level (PUD = level 1,
    /// PMD = level 2): empty → stop; huge leaf → `gup_huge_leaf`; table → next.
    /// Inlined into one function per level, so the level's geometry is a
    /// constant there.
    #[inline(always)]
    fn gup_upper_range(
        &mut self,
        level: Level,
        table: PhysAddr,
        mut addr: VirtAddr,
        end: VirtAddr,
        w: &mut FastWalk<'_>,
    ) -> bool {
        let mut idx = A::index(addr, level);
        loop {
            let next = A::addr_end(addr, end, level);
            if !self.fast_read_point(level, table, idx, false) {
                return false;
            }
            let Some(raw) = self.read_table_entry(table, level, idx) else {
                self.overrun(level, idx);
                return false;
            };
            if raw == 0 {
                return false;
            }
            // A table entry (the common case) by the fast path; decode says
            // TABLE exactly then, and TABLE and LEAF exclude each other.
            let ok = if let Some((t, _)) = A::table_step(self.family(), level, raw) {
                if level.0 + 2 == A::levels() as u8 {
                    self.leaf_cache = LeafCache {
                        valid: true,
                        generation: self.phys.generation(),
                        pgd: w.pgd,
                        base: addr.0,
                        table: t,
                        accepted: self.leaf_cache.accepted,
                    };
                    self.gup_pte_range(t, addr, next, w)
                } else if level.0 == 1 {
                    self.gup_pmd_range(t, addr, next, w)
                } else {
                    self.gup_deeper_range(Level(level.0 + 1), t, addr, next, w)
                }
            } else {
                let e = A::decode(self.family(), level, raw);
                e.has(PteFlags::LEAF)
                    && e.has(PteFlags::PRESENT)
                    && self.gup_huge_leaf(level, table, idx, raw, e, addr, next, w)
            };
            if !ok {
                return false;
            }
            addr = next;
            idx += 1;
            if addr == end {
                return true;
            }
        }
    }

    /// `gup_pud_range`.
    #[doc(alias = "gup_fast_pud_range")]
    fn gup_pud_range(
        &mut self,
        table: PhysAddr,
        addr: VirtAddr,
        end: VirtAddr,
        w: &mut FastWalk<'_>,
    ) -> bool {
        self.gup_upper_range(Level(1), table, addr, end, w)
    }

    /// `gup_pmd_range` (level 2, above the leaf level on 4-level arches).
    #[doc(alias = "gup_fast_pmd_range")]
    fn gup_pmd_range(
        &mut self,
        table: PhysAddr,
        addr: VirtAddr,
        end: VirtAddr,
        w: &mut FastWalk<'_>,
    ) -> bool {
        self.gup_upper_range(Level(2), table, addr, end, w)
    }

    /// Levels below the PMD on arches with more than four levels.
    #[inline(never)]
    fn gup_deeper_range(
        &mut self,
        level: Level,
        table: PhysAddr,
        addr: VirtAddr,
        end: VirtAddr,
        w: &mut FastWalk<'_>,
    ) -> bool {
        self.gup_upper_range(level, table, addr, end, w)
    }

    /// `gup_huge_pmd` / `gup_huge_pud`: all subpages of `[addr, end)` in one
    /// step on the compound head, then re-check the entry.
    #[doc(alias = "gup_fast_pmd_leaf", alias = "gup_fast_pud_leaf")]
    #[inline(always)]
    fn gup_huge_leaf(
        &mut self,
        level: Level,
        table: PhysAddr,
        idx: usize,
        raw: u64,
        e: Pte,
        addr: VirtAddr,
        end: VirtAddr,
        w: &mut FastWalk<'_>,
    ) -> bool {
        w.entries += 1;
        if !self.gup_fast_leaf_ok(w, e) {
            return false;
        }
        let span = A::entry_span(level);
        let first = e.pfn.0 + addr.offset_in(span) / A::PAGE_SIZE;
        let refs = (end.0.wrapping_sub(addr.0) / A::PAGE_SIZE) as u32;
        let speculative = w.flavour != Flavour::X86Private;
        if self.grab(Pfn(first), refs, w.pin, speculative).is_none() {
            return false;
        }
        if speculative
            && (!self.fast_read_point(level, table, idx, true)
                || self.read_table_entry(table, level, idx) != Some(raw))
        {
            self.ungrab(Pfn(first), refs, w.pin);
            return false;
        }
        if w.folio_checks && !self.gup_fast_folio_checks(w, e.pfn, e.has(PteFlags::WRITE)) {
            self.ungrab(Pfn(first), refs, w.pin);
            return false;
        }
        w.pages.extend((first..first + u64::from(refs)).map(Pfn));
        let head = self.phys.compound_head(e.pfn);
        self.phys.page_mut(head).flags |= PageFlags::REFERENCED;
        true
    }

    /// `gup_pte_range`: one entry after the other of the leaf table; per page
    /// one entry read, one reference on the compound head (looked up once),
    /// one re-read of the entry where the flavour is speculative. What does
    /// not change within a call (whether preemption points are armed,
    /// whether the flavour is speculative, the folio checks) is decided once
    /// per leaf table, not per page.
    #[inline]
    #[doc(alias = "gup_fast_pte_range")]
    fn gup_pte_range(
        &mut self,
        table: PhysAddr,
        addr: VirtAddr,
        end: VirtAddr,
        w: &mut FastWalk<'_>,
    ) -> bool {
        let speculative = w.flavour != Flavour::X86Private;
        match (self.preempt.armed(), speculative) {
            (false, true) => self.gup_pte_loop::<false, true>(table, addr, end, w),
            (false, false) => self.gup_pte_loop::<false, false>(table, addr, end, w),
            (true, true) => self.gup_pte_loop::<true, true>(table, addr, end, w),
            (true, false) => self.gup_pte_loop::<true, false>(table, addr, end, w),
        }
    }

    /// The page loop of [`Machine::gup_pte_range`], one copy per
    /// combination of `PREEMPT` (preemption points armed) and `SPEC` (the
    /// reference is speculative and the entry is re-read after it, v6.13
    /// `gup_fast_pte_range`: `pte_val(pte) != pte_val(ptep_get(ptep))`).
    #[inline(always)]
    fn gup_pte_loop<const PREEMPT: bool, const SPEC: bool>(
        &mut self,
        table: PhysAddr,
        addr: VirtAddr,
        end: VirtAddr,
        w: &mut FastWalk<'_>,
    ) -> bool {
        let level = A::leaf_level();
        let family = self.family();
        let first = A::index(addr, level);
        let mut idx = first;
        // The loop ends where `addr` would reach `end` (both page aligned),
        // counted in entries.
        let stop = first.wrapping_add((end.0.wrapping_sub(addr.0) / A::PAGE_SIZE) as usize);
        // Entries that differ from the last accepted one only in the pfn
        // field have its flags (`Arch::leaf_pfn_field`), so they pass the
        // same leaf test without a decode. An accepted entry has a present
        // bit outside that field, so its key is never 0; `NO_KEY` (all
        // ones) matches no entry, since the field's bits are cleared.
        const NO_KEY: u64 = u64::MAX;
        let field = A::leaf_pfn_field(level);
        let (mask, shift) = field.unwrap_or((0, 0));
        let test = w.test;
        let mut key = match self.leaf_cache.accepted {
            Some((t, key)) if t == test && key != 0 => key,
            _ => NO_KEY,
        };
        let (pin, folio_checks) = (w.pin, w.folio_checks);
        // The table is checked against guest memory once; each read then
        // costs an index check.
        let Ok(tref) = self.phys.table_ref(table, A::entries(level)) else {
            self.overrun(level, idx);
            return false;
        };
        // Every exit below passes through here with the entries read.
        let ok = loop {
            if PREEMPT && !self.preempt_read(level, table, idx, false) {
                break None;
            }
            let Some(raw) = self.phys.entry_of::<A>(tref, idx) else {
                self.overrun(level, idx);
                break None;
            };
            let pfn = if field.is_some() && raw & !mask == key {
                Pfn((raw & mask) >> shift)
            } else {
                let pte = A::decode(family, level, raw);
                if !self.gup_fast_leaf_ok(w, pte) {
                    break Some(false);
                }
                if field.is_some() && raw & !mask != 0 {
                    key = raw & !mask;
                    self.leaf_cache.accepted = Some((test, key));
                }
                pte.pfn
            };
            if !self.phys.pfn_valid(pfn) {
                break Some(false);
            }
            let Some(head) = self.grab(pfn, 1, pin, SPEC) else {
                break Some(false);
            };
            if SPEC
                && ((PREEMPT && !self.preempt_read(level, table, idx, true))
                    || self.phys.entry_again::<A>(tref, idx) != Some(raw))
            {
                self.ungrab(pfn, 1, pin);
                break Some(false);
            }
            if folio_checks
                && !self.gup_fast_folio_checks(
                    w,
                    pfn,
                    A::decode(family, level, raw).has(PteFlags::WRITE),
                )
            {
                // gup_fast_folio_allowed / gup_must_unshare: leave it to
                // the slow path.
                self.ungrab(pfn, 1, pin);
                break Some(false);
            }
            self.phys.set_referenced(head);
            w.pages.push(pfn);
            idx += 1;
            if idx == stop {
                break Some(true);
            }
        };
        // Entries read: those taken, plus the one that stopped the loop
        // after its read (`Some(false)`).
        let read = idx.wrapping_sub(first) as u64;
        match ok {
            Some(true) => {
                w.entries += read;
                true
            }
            Some(false) => {
                w.entries += read + 1;
                false
            }
            None => {
                w.entries += read;
                false
            }
        }
    }

    /// The gup-fast walk over `[start, end)`, with the zero-length hazard of
    /// the modelled versions reported instead of run.
    #[inline(always)]
    fn gup_fast_walk(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        flags: GupFlags,
        pages: &mut Vec<Pfn>,
    ) -> u64 {
        if start == end {
            self.event(
                EventKind::ZeroLengthWalk,
                "gup-fast reached its walker with start == end: the leaf loop has no length guard \
                 and would take pages until an entry fails (modelled as 0 pages)",
            );
            return 0;
        }
        let mut w = FastWalk {
            pages,
            write: flags.contains(GupFlags::FOLL_WRITE),
            pin: flags.contains(GupFlags::FOLL_PIN),
            longterm: flags.contains(GupFlags::FOLL_LONGTERM),
            unshare: self.knobs.ro_pin_unshare
                && flags & (GupFlags::FOLL_WRITE | GupFlags::FOLL_PIN) == GupFlags::FOLL_PIN,
            flavour: self.flavour(),
            folio_checks: false,
            entries: 0,
            pgd: self.mm(self.current_mm()).pgd,
            test: LeafTestKey(0),
        };
        w.folio_checks = w.unshare
            || (w.pin && w.longterm && w.write && self.knobs.longterm_write_needs_no_writeback);
        w.test = LeafTestKey::new(
            w.flavour,
            w.write,
            w.longterm,
            self.knobs.numa_balancing,
            self.family(),
        );
        let before = w.pages.len();
        // gup_fast(): local_irq_save, the walk from the pgd, local_irq_restore.
        self.lockless_walkers += 1;
        if self.preempt.armed() {
            self.preempt_walk_start();
            self.gup_pgd_range(start, end, &mut w);
        } else if let Some(table) = self.cached_leaf_table(w.pgd, start, end) {
            self.gup_pte_range(table, start, end, &mut w);
        } else {
            self.gup_pgd_range(start, end, &mut w);
        }
        self.leave_lockless(&w);
        // Every page taken was recorded, one entry per page.
        (w.pages.len() - before) as u64
    }

    /// The per-folio checks of a walk with `folio_checks`: 6.13
    /// `gup_fast_folio_allowed`, the long-term write part (where the
    /// profile has `longterm_write_needs_no_writeback`): a FOLL_PIN |
    /// FOLL_LONGTERM | FOLL_WRITE walk takes anonymous and shmem folios
    /// only; any other page-cache folio goes to the slow path, whose
    /// `check_vma_flags` decides with the VMA. Then `gup_must_unshare` for
    /// an entry that is not writable. `false`: leave the page to the slow
    /// path.
    #[cold]
    #[inline(never)]
    fn gup_fast_folio_checks(&self, w: &FastWalk<'_>, pfn: Pfn, writable: bool) -> bool {
        if w.pin && w.longterm && w.write && self.knobs.longterm_write_needs_no_writeback {
            let head = self.phys.compound_head(pfn);
            if let Owner::File { file, .. } = self.phys.page(head).owner
                && !self.files.iter().any(|f| f.name == file && f.shmem)
            {
                return false;
            }
        }
        !(w.unshare && !writable && self.gup_must_unshare(None, w.longterm, pfn))
    }

    /// Capper's check: no wraparound and `end <= TASK_SIZE`.
    fn capper_ok(&self, start: VirtAddr, end: VirtAddr) -> bool {
        end >= start && end.0 <= self.layout.task_size_max
    }

    /// x86 `gup_fast_permitted` (and the generic one: only "no wrap").
    fn gup_fast_permitted(&self, start: VirtAddr, end: VirtAddr) -> bool {
        if end < start {
            return false;
        }
        match self.layout.virtual_mask_shift {
            Some(s) => end.0 >> s == 0,
            None => true,
        }
    }

    /// The common fast part: `(start, end)` after alignment, or the early result.
    fn fast_range(&self, start: VirtAddr, nr_pages: i64) -> (VirtAddr, u64, VirtAddr) {
        let start = start.align_down(A::PAGE_SIZE);
        // (unsigned long)nr_pages << PAGE_SHIFT: a negative int sign-extends.
        let len = (nr_pages as u64).wrapping_shl(A::PAGE_SHIFT);
        (start, len, start.wrapping_add(len))
    }

    /// `__get_user_pages_fast(start, nr_pages, write, pages)` (v4.x) /
    /// `get_user_pages_fast_only` (6.x): never sleeps, never faults.
    pub fn __get_user_pages_fast(
        &mut self,
        start: VirtAddr,
        nr_pages: i64,
        flags: GupFlags,
        pages: &mut Vec<Pfn>,
    ) -> Result<u64, Errno> {
        if self.knobs.gup_fast_range == GupFastRange::TaskSizeMax {
            return self.gup_fast_fallback(
                start,
                nr_pages,
                flags | GupFlags::FOLL_GET | GupFlags::FOLL_FAST_ONLY,
                pages,
            );
        }
        let (start, len, end) = self.fast_range(start, nr_pages);
        let flags = flags | GupFlags::FOLL_GET;
        let range_ok = match self.knobs.gup_fast_range {
            GupFastRange::Capper => self.capper_ok(start, end),
            GupFastRange::AccessOkThenPermitted => {
                self.access_ok(start, len, SizeKind::Runtime) && self.gup_fast_permitted(start, end)
            }
            _ => self.access_ok(start, len, SizeKind::Runtime),
        };
        if !range_ok {
            return Ok(0);
        }
        Ok(self.gup_fast_walk(start, end, flags, pages))
    }

    /// `get_user_pages_fast(start, nr_pages, write, pages)`: the fast walk,
    /// then the slow path for the rest.
    pub fn get_user_pages_fast(
        &mut self,
        start: VirtAddr,
        nr_pages: i64,
        flags: GupFlags,
        pages: &mut Vec<Pfn>,
    ) -> Result<u64, Errno> {
        let flags = flags | GupFlags::FOLL_GET;
        let (start, len, end) = self.fast_range(start, nr_pages);
        // 17839856fd58 (5.8): the fast walk of a read takes writable entries
        // only, so that a read-only (COW) page goes to the slow path.
        let walk = if self.knobs.force_cow_on_read_pin {
            flags | GupFlags::FOLL_WRITE
        } else {
            flags
        };
        let permitted = match (self.knobs.gup_fast_range, self.flavour()) {
            (GupFastRange::TaskSizeMax, _) => {
                return self.gup_fast_fallback(start, nr_pages, flags, pages);
            }
            // v4.10 arch/x86/mm/gup.c: wrap and __VIRTUAL_MASK_SHIFT, no access_ok.
            (GupFastRange::AccessOk, Flavour::X86Private) => {
                let shift = self.layout.virtual_mask_shift.unwrap_or(64);
                end >= start && end.0.checked_shr(shift).unwrap_or(0) == 0
            }
            (GupFastRange::Capper, _) => self.capper_ok(start, end),
            (GupFastRange::AccessOk, _) => self.access_ok(start, len, SizeKind::Runtime),
            (GupFastRange::AccessOkThenPermitted, _) => {
                // v4.17 (observed): a guard for nr_pages <= 0, and access_ok
                // failure is -EFAULT here (0 in __get_user_pages_fast).
                if nr_pages <= 0 {
                    return Ok(0);
                }
                if !self.access_ok(start, len, SizeKind::Runtime) {
                    return Err(Errno::EFAULT);
                }
                self.gup_fast_permitted(start, end)
            }
        };
        let taken = if permitted {
            self.gup_fast_walk(start, end, walk, pages)
        } else {
            0
        };
        let Some(rest) = self.gup_fast_rest(start, end, nr_pages, taken) else {
            return Ok(taken);
        };
        let rest_start = start.wrapping_add(taken * A::PAGE_SIZE);
        let slow =
            self.get_user_pages_unlocked(rest_start, rest, pages, flags & GupFlags::FOLL_WRITE);
        Ok(match slow {
            Ok(n) => taken + n,
            Err(e) if taken == 0 => return Err(e),
            Err(_) => taken,
        })
    }

    /// How many pages `get_user_pages_fast` (v4.x) leaves to the slow path
    /// after the fast walk took `taken`, or `None` when it returns `taken`.
    ///
    /// v4.10 `arch/x86/mm/gup.c` `get_user_pages_fast` counts in addresses:
    /// the slow path gets `(end - start) >> PAGE_SHIFT` pages, so a negative
    /// `nr_pages` (whose `end` wrapped below `start`) goes there with a huge
    /// count. The generic v4.10 `mm/gup.c` `get_user_pages_fast` (arm64,
    /// ppc64) compares the `int`s instead, `if (nr < nr_pages)`, and hands
    /// `nr_pages - nr` on: with a negative `nr_pages` it returns `nr` as it
    /// is. (v4.17 returns 0 for `nr_pages <= 0` before any of this.)
    fn gup_fast_rest(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        nr_pages: i64,
        taken: u64,
    ) -> Option<u64> {
        if self.flavour() == Flavour::X86Private {
            let total = end.0.wrapping_sub(start.0) / A::PAGE_SIZE;
            (taken < total).then(|| total - taken)
        } else {
            // `taken` never exceeds a positive nr_pages.
            let nr = taken as i64;
            (nr < nr_pages).then(|| (nr_pages - nr) as u64)
        }
    }

    /// `pin_user_pages_fast` (FOLL_PIN; profiles with pins only).
    pub fn pin_user_pages_fast(
        &mut self,
        start: VirtAddr,
        nr_pages: i64,
        flags: GupFlags,
        pages: &mut Vec<Pfn>,
    ) -> Result<u64, Errno> {
        if !self.knobs.foll_pin {
            return Err(Errno::EINVAL);
        }
        self.gup_fast_fallback(
            start,
            nr_pages,
            (flags - GupFlags::FOLL_GET) | GupFlags::FOLL_PIN,
            pages,
        )
    }

    /// 6.13 `gup_fast_fallback`.
    #[inline(always)]
    fn gup_fast_fallback(
        &mut self,
        start: VirtAddr,
        nr_pages: i64,
        flags: GupFlags,
        pages: &mut Vec<Pfn>,
    ) -> Result<u64, Errno> {
        let allowed = GupFlags::FOLL_WRITE
            | GupFlags::FOLL_LONGTERM
            | GupFlags::FOLL_FORCE
            | GupFlags::FOLL_PIN
            | GupFlags::FOLL_GET
            | GupFlags::FOLL_FAST_ONLY
            | GupFlags::FOLL_NOFAULT;
        if !(flags - allowed).is_empty()
            || flags.contains(GupFlags::FOLL_GET | GupFlags::FOLL_PIN)
            || self.longterm_without_pin(flags)
        {
            return Err(Errno::EINVAL);
        }
        if flags.contains(GupFlags::FOLL_PIN) {
            let mm = self.current_mm();
            self.mm_mut(mm).has_pinned = true;
        }
        // `start = untagged_addr(start) & PAGE_MASK` (5.4+).
        let start = if self.knobs.untag_user_addr {
            A::untagged_addr(start)
        } else {
            start
        }
        .align_down(A::PAGE_SIZE);
        let len = (nr_pages as u64).wrapping_shl(A::PAGE_SHIFT);
        let end = VirtAddr(start.0.checked_add(len).ok_or(Errno::EOVERFLOW)?);
        if end.0 > self.layout.task_size_max {
            return Err(Errno::EFAULT);
        }
        if !self.access_ok(start, len, SizeKind::Runtime) {
            return Err(Errno::EFAULT);
        }
        let walk = if self.knobs.force_cow_on_read_pin && !flags.contains(GupFlags::FOLL_FAST_ONLY)
        {
            flags | GupFlags::FOLL_WRITE
        } else {
            flags
        };
        let taken = if self.gup_fast_permitted(start, end) {
            self.gup_fast_walk(start, end, walk, pages)
        } else {
            0
        };
        let total = len / A::PAGE_SIZE;
        if taken == total || flags.contains(GupFlags::FOLL_FAST_ONLY) {
            return Ok(taken);
        }
        let rest = start.wrapping_add(taken * A::PAGE_SIZE);
        let slow_flags = flags
            & (GupFlags::FOLL_WRITE
                | GupFlags::FOLL_PIN
                | GupFlags::FOLL_FORCE
                | GupFlags::FOLL_LONGTERM)
            | GupFlags::FOLL_UNLOCKABLE;
        match self.get_user_pages_unlocked(rest, total - taken, pages, slow_flags) {
            Ok(n) => Ok(taken + n),
            Err(e) if taken == 0 => Err(e),
            Err(_) => Ok(taken),
        }
    }
}
