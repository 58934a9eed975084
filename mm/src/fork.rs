//! `fork()` and `exit()` of a process, and where pins were taken.
//!
//! * `fork` is `copy_process` → `copy_mm` → `dup_mmap`: the child gets a new
//!   mm with a copy of every VMA, and `copy_page_range` →
//!   `copy_present_pte` copies every present leaf. A page without a
//!   `struct page` to count (the zero page, device memory) is mapped as it
//!   is; a file page is shared; a private anonymous page is shared with both
//!   entries write-protected (one more mapping and reference, and it stops
//!   being `PageAnonExclusive`), unless the profile has
//!   `fork_copy_maybe_pinned` and the page may be pinned: then the child
//!   gets a fresh copy and the parent's entry is left as it was
//!   (`copy_present_page`, 70e806e4e645; 5.19+ `page_try_dup_anon_rmap`).
//!   Emulator simplification: a huge leaf of the parent is split before
//!   copying (the kernel shares an unpinned THP as a huge entry); the pages
//!   and their contents are the same either way.
//! * `exit` is `do_exit` → `exit_mm` → `mmput` → `exit_mmap`: every VMA of
//!   the task's mm is unmapped (when no other live task uses the mm).
//! * A [`PinOrigin`] remembers the process and address through which a pin
//!   was taken; [`Machine::check_pin_views`] (in `check`) compares it with
//!   what the process maps there now.

use vmemu_arch::{Arch, Pfn, Pte, PteFlags, VirtAddr};

use crate::Machine;
use crate::errno::Errno;
use crate::mm::{Task, VmFlags, Vma};
use crate::phys::{GUP_PIN_COUNTING_BIAS, Owner, PageFlags};
use crate::profile::WpReuseRule;
use crate::sync::{MmId, TaskId};

/// Where a pin (FOLL_PIN, or a FOLL_LONGTERM reference where the profile
/// has no FOLL_PIN) was taken: the page `pfn` as process `mm` mapped it at
/// `va`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PinOrigin {
    /// The process's mm.
    pub mm: MmId,
    /// The page-aligned user address.
    pub va: VirtAddr,
    /// The pinned frame.
    pub pfn: Pfn,
    /// False once the process unmapped (or discarded) the address itself:
    /// the pin then rightly sees other memory than the process.
    pub live: bool,
    /// A `pin_detached` event was raised for it.
    pub reported: bool,
}

/// What one `fork` did with the parent's pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ForkStats {
    /// Anonymous pages now mapped by both processes.
    pub anon_shared: u32,
    /// Other pages with a `struct page` now mapped by both (page cache).
    pub file_shared: u32,
    /// Entries without a page to count (zero page, device memory).
    pub uncounted: u32,
    /// Maybe-pinned pages the child got a fresh copy of.
    pub copied: u32,
}

// `is_cow_mapping` lives beside `VmFlags` in `mm` (`include/linux/mm.h`);
// re-exported under the path gup uses.
pub(crate) use crate::mm::is_cow_mapping;

impl<A: Arch> Machine<A> {
    /// `fork()` of the current task: returns the child's pid (task id) and
    /// what happened to the pages. The current task stays the parent.
    pub fn fork(&mut self) -> Result<(TaskId, ForkStats), Errno> {
        let parent = self.current;
        let src = self.current_mm();
        let dst = self.mm_alloc().map_err(|_| Errno::ENOMEM)?;
        self.mm_mut(dst).mmap_base = self.mm(src).mmap_base;
        let mut st = ForkStats::default();
        self.dup_mmap(src, dst, &mut st)?;
        let addr_limit = self.task().addr_limit;
        let child = self.new_task(dst);
        let t = &mut self.tasks[child.0 as usize];
        t.parent = Some(parent);
        t.addr_limit = addr_limit;
        Ok((child, st))
    }

    /// `dup_mmap`: the VMAs, then `copy_page_range` for each.
    fn dup_mmap(&mut self, src: MmId, dst: MmId, st: &mut ForkStats) -> Result<(), Errno> {
        let vmas: Vec<Vma> = self.mm(src).vmas.values().copied().collect();
        for v in &vmas {
            self.mm_mut(dst).vmas.insert(v.start.0, *v);
        }
        for v in &vmas {
            self.copy_page_range(src, dst, v, st)?;
        }
        Ok(())
    }

    /// `copy_page_range` over one VMA.
    fn copy_page_range(
        &mut self,
        src: MmId,
        dst: MmId,
        vma: &Vma,
        st: &mut ForkStats,
    ) -> Result<(), Errno> {
        // Huge leaves are split in the parent first (see the module docs).
        let mut guard = 0;
        loop {
            let huge = pgtable_leaves::<A>(self, src, vma)
                .into_iter()
                .find(|(_, s)| s.level != A::leaf_level());
            let Some((va, _)) = huge else { break };
            guard += 1;
            if guard > 1 << 16 {
                return Err(Errno::ENOMEM);
            }
            self.split_huge_leaf(src, va)?;
        }
        for (va, slot) in pgtable_leaves::<A>(self, src, vma) {
            self.copy_present_pte(src, dst, vma, va, slot.pte, slot.entry_pa, st)?;
        }
        Ok(())
    }

    /// `page_maybe_dma_pinned`: a pin on a large page, or a reference count
    /// of at least `GUP_PIN_COUNTING_BIAS` on a small one.
    #[must_use]
    pub fn page_maybe_dma_pinned(&self, head: Pfn) -> bool {
        let p = self.phys.page(head);
        if p.order > 0 {
            p.pincount > 0
        } else {
            p.refcount >= GUP_PIN_COUNTING_BIAS
        }
    }

    /// `copy_present_pte`.
    fn copy_present_pte(
        &mut self,
        src: MmId,
        dst: MmId,
        vma: &Vma,
        va: VirtAddr,
        pte: Pte,
        entry_pa: vmemu_arch::PhysAddr,
        st: &mut ForkStats,
    ) -> Result<(), Errno> {
        if !pte.has(PteFlags::PRESENT) {
            return Ok(());
        }
        let cow = is_cow_mapping(vma.flags);
        let counted =
            !pte.has(PteFlags::SPECIAL) && self.phys.pfn_valid(pte.pfn) && pte.pfn != self.zero_pfn;
        if !counted {
            // vm_normal_page() is NULL: nothing to count, map it as it is.
            st.uncounted += 1;
            self.set_user_leaf(dst, va, A::leaf_level(), pte)
                .map_err(|_| Errno::ENOMEM)?;
            return Ok(());
        }
        let head = self.phys.compound_head(pte.pfn);
        let page = *self.phys.page(head);
        let anon = matches!(page.owner, Owner::Anon { .. });
        let exclusive = page.flags.contains(PageFlags::ANON_EXCLUSIVE);
        if anon
            && cow
            && self.knobs.fork_copy_maybe_pinned
            && self.mm(src).has_pinned
            && self.page_maybe_dma_pinned(head)
            && (self.knobs.wp_reuse_rule != WpReuseRule::AnonExclusive || exclusive)
        {
            // copy_present_page: the child gets its own copy now; the
            // parent's entry stays as it was (writable if it was).
            st.copied += 1;
            let new = self.phys.alloc(0, page.owner).ok_or(Errno::ENOMEM)?;
            self.phys.page_mut(new).flags |= PageFlags::ANON_EXCLUSIVE | PageFlags::DIRTY;
            let _ = self.phys.copy(
                pte.pfn.addr(A::PAGE_SHIFT),
                new.addr(A::PAGE_SHIFT),
                A::PAGE_SIZE as usize,
            );
            let writable = vma.flags.contains(VmFlags::VM_WRITE);
            let f = Self::leaf_flags(self.family(), vma.flags, writable) | PteFlags::DIRTY;
            self.phys.page_mut(new).mapcount += 1;
            self.set_user_leaf(dst, va, A::leaf_level(), Pte { flags: f, pfn: new })
                .map_err(|_| Errno::ENOMEM)?;
            return Ok(());
        }
        self.phys.get_page(head, 1);
        let p = self.phys.page_mut(head);
        p.mapcount += 1;
        if anon {
            st.anon_shared += 1;
        } else {
            st.file_shared += 1;
        }
        if anon {
            // The page is mapped by two processes now.
            p.flags.remove(PageFlags::ANON_EXCLUSIVE);
        }
        let mut flags = pte.flags;
        if cow && flags.contains(PteFlags::WRITE) {
            // ptep_set_wrprotect in the parent, and the same for the child.
            flags = A::pte_wrprotect(flags);
            let raw = A::encode(
                self.family(),
                A::leaf_level(),
                Pte {
                    flags,
                    pfn: pte.pfn,
                },
            );
            self.phys
                .write_entry(entry_pa, raw)
                .map_err(|_| Errno::EFAULT)?;
        }
        self.set_user_leaf(
            dst,
            va,
            A::leaf_level(),
            Pte {
                flags,
                pfn: pte.pfn,
            },
        )
        .map_err(|_| Errno::ENOMEM)?;
        Ok(())
    }

    /// `exit()` of task `pid` (`do_exit` → `exit_mm` → `mmput` →
    /// `exit_mmap`): its mm loses every VMA unless another live task uses
    /// it. If it was current, its parent (or task 0) becomes current.
    pub fn exit_task(&mut self, pid: TaskId) -> Result<(), Errno> {
        let t: Task = *self.tasks.get(pid.0 as usize).ok_or(Errno::ESRCH)?;
        if t.exited || pid.0 == 0 {
            return Err(Errno::ESRCH);
        }
        self.tasks[pid.0 as usize].exited = true;
        let shared = self.tasks.iter().any(|o| !o.exited && o.mm == t.mm);
        if !shared {
            let vmas: Vec<Vma> = self.mm(t.mm).vmas.values().copied().collect();
            for v in vmas {
                self.munmap(t.mm, v.start, v.end.0 - v.start.0)?;
            }
        }
        if self.current == pid {
            self.current = t
                .parent
                .filter(|p| !self.tasks[p.0 as usize].exited)
                .unwrap_or(TaskId(0));
        }
        Ok(())
    }

    /// Remembers that `pfn` was pinned through `va` of `mm`. The origin is
    /// recorded when the gup call returns; if the process no longer maps
    /// `pfn` there by then (a second task discarded the range inside the
    /// call, after the fast path had pinned it), the owner discarded it
    /// and the origin starts out forgotten.
    pub fn note_pin(&mut self, mm: MmId, va: VirtAddr, pfn: Pfn) {
        let va = va.align_down(A::PAGE_SIZE);
        let live = crate::pgtable::lookup::<A>(&self.phys, self.family(), self.mm(mm).pgd, va)
            .filter(|s| s.pte.has(PteFlags::LEAF) && s.pte.has(PteFlags::PRESENT))
            .is_some_and(|s| {
                let span = A::entry_span(s.level);
                Pfn(s.pte.pfn.0 + va.offset_in(span) / A::PAGE_SIZE) == pfn
            });
        self.pin_origins.push(PinOrigin {
            mm,
            va,
            pfn,
            live,
            reported: false,
        });
    }

    /// Forgets one pin origin of `pfn` (the pin was released).
    pub fn drop_pin_origin(&mut self, pfn: Pfn) {
        if let Some(i) = self.pin_origins.iter().position(|o| o.pfn == pfn) {
            self.pin_origins.remove(i);
        }
    }

    /// The owner unmapped or discarded `[start, end)` of `mm`: pins taken
    /// there may rightly see other memory from now on.
    pub(crate) fn forget_pins_in(&mut self, mm: MmId, start: VirtAddr, end: VirtAddr) {
        for o in &mut self.pin_origins {
            if o.mm == mm && o.va >= start && o.va < end {
                o.live = false;
            }
        }
    }
}

fn pgtable_leaves<A: Arch>(
    m: &Machine<A>,
    mm: MmId,
    vma: &Vma,
) -> Vec<(VirtAddr, crate::pgtable::LeafSlot)> {
    let mut out = Vec::new();
    crate::pgtable::for_each_leaf::<A>(
        &m.phys,
        m.family(),
        m.mm(mm).pgd,
        vma.start,
        vma.end,
        &mut |va, slot| out.push((va, slot)),
    );
    out
}
