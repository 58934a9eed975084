//! mmap, munmap, mprotect and madvise(MADV_DONTNEED): VMAs and page tables
//! kept consistent (`mm/mmap.c`, `mm/mprotect.c`, `mm/madvise.c`), and
//! `expand_stack` (`mm/mmap.c`), the stack growth of a user fault.

use vmemu_arch::{Arch, Level, Pfn, PhysAddr, Pte, PteFlags, VirtAddr};

use crate::Machine;
use crate::errno::Errno;
use crate::mm::{Backing, Prot, VmFlags, Vma, page_align};
use crate::pgtable::{self, LeafSlot};
use crate::sync::MmId;

/// Flags of [`Machine::mmap`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MapFlags {
    /// MAP_SHARED (else MAP_PRIVATE).
    pub shared: bool,
    /// MAP_GROWSDOWN (a stack).
    pub growsdown: bool,
    /// madvise(MADV_HUGEPAGE): anon faults map PMD leaves where they fit.
    pub hugepage: bool,
}

impl<A: Arch> Machine<A> {
    /// `do_mmap`: maps `len` bytes named `name`, at `addr` (MAP_FIXED, which
    /// replaces what was there) or top-down below `mmap_base`.
    pub fn mmap(
        &mut self,
        mm: MmId,
        addr: Option<VirtAddr>,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        mut backing: Backing,
        name: &str,
    ) -> Result<VirtAddr, Errno> {
        let len = page_align::<A>(len).ok_or(Errno::ENOMEM)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let top = self.layout.task_size_max;
        let start = match addr {
            Some(a) => {
                if a.offset_in(A::PAGE_SIZE) != 0 {
                    return Err(Errno::EINVAL);
                }
                let end = a.0.checked_add(len).ok_or(Errno::ENOMEM)?;
                if end > top {
                    return Err(Errno::ENOMEM);
                }
                self.do_munmap(mm, a, len)?;
                a
            }
            None => self.get_unmapped_area(mm, len).ok_or(Errno::ENOMEM)?,
        };
        let mut vf = VmFlags::VM_MAYREAD | VmFlags::VM_MAYWRITE | VmFlags::VM_MAYEXEC;
        if prot.read {
            vf |= VmFlags::VM_READ;
        }
        if prot.write {
            vf |= VmFlags::VM_WRITE;
        }
        if prot.exec {
            vf |= VmFlags::VM_EXEC;
        }
        if flags.shared {
            vf |= VmFlags::VM_SHARED | VmFlags::VM_MAYSHARE;
        }
        if flags.growsdown {
            vf |= VmFlags::VM_GROWSDOWN;
        }
        if flags.hugepage {
            vf |= VmFlags::VM_HUGEPAGE;
        }
        if let Backing::Pfnmap { .. } = backing {
            vf |= VmFlags::VM_IO | VmFlags::VM_PFNMAP;
        }
        if flags.shared && backing == Backing::Anon {
            // mmap_region: a shared mapping without a file is backed by a
            // shmem object (shmem_zero_setup), not by anonymous memory.
            backing = Backing::File {
                file: self.shmem_zero_setup(name, len),
                pgoff: 0,
            };
        }
        let name_id = self.intern(name);
        let vma = Vma {
            start,
            end: VirtAddr(start.0 + len),
            flags: vf,
            backing,
            name: name_id,
            name_base: 0,
        };
        self.mm_mut(mm).vmas.insert(start.0, vma);
        if let Backing::Pfnmap { base } = backing {
            // remap_pfn_range: special leaves, no struct page refcounting.
            let mut f = Self::leaf_flags(self.family(), vf, true) | PteFlags::SPECIAL;
            f.remove(PteFlags::RDONLY);
            for i in 0..len / A::PAGE_SIZE {
                let pte = Pte {
                    flags: f,
                    pfn: Pfn(base.0 + i),
                };
                self.set_user_leaf(
                    mm,
                    VirtAddr(start.0 + i * A::PAGE_SIZE),
                    A::leaf_level(),
                    pte,
                )
                .map_err(|_| Errno::ENOMEM)?;
            }
        }
        Ok(start)
    }

    fn get_unmapped_area(&mut self, mm: MmId, len: u64) -> Option<VirtAddr> {
        // Top-down: below the lowest VMA under mmap_base that leaves room.
        // The highest `len` bytes free below mmap_base: above the top VMA
        // under it, else in the highest gap below a VMA that is wide
        // enough (the gap index), else below the lowest VMA. O(log n) plus
        // the narrower gaps passed over (the kernel's vm_unmapped_area
        // walks gaps the same way, with the subtree maxima to skip them).
        let base = self.mm(mm).mmap_base;
        let vmas = &self.mm(mm).vmas;
        let mut hi = base;
        if let Some((_, top)) = vmas.range(..base).next_back()
            && top.end.0 > hi.checked_sub(len)?
        {
            hi = match vmas.gap_below_at_most(top.start.0, len) {
                Some(s) => s,
                None => vmas.values().next().map_or(top.start.0, |v| v.start.0),
            };
        }
        let start = hi.checked_sub(len)?;
        (start >= (1 << 16)).then_some(VirtAddr(start))
    }

    /// Splits the VMAs of `mm` so that `addr` is a boundary.
    fn split_vma_at(&mut self, mm: MmId, addr: VirtAddr) {
        let Some(v) = self.vma_at(mm, addr) else {
            return;
        };
        if v.start == addr {
            return;
        }
        let pages = (addr.0 - v.start.0) / A::PAGE_SIZE;
        let mut lo = v;
        lo.end = addr;
        let mut hi = v;
        hi.start = addr;
        hi.name_base = v.name_base + pages as i64;
        if let Backing::File { file, pgoff } = v.backing {
            hi.backing = Backing::File {
                file,
                pgoff: pgoff + pages,
            };
        }
        if let Backing::Pfnmap { base } = v.backing {
            hi.backing = Backing::Pfnmap {
                base: Pfn(base.0 + pages),
            };
        }
        let vmas = &mut self.mm_mut(mm).vmas;
        vmas.insert(lo.start.0, lo);
        vmas.insert(hi.start.0, hi);
        // vma_adjust_trans_huge: a huge leaf may not straddle the new
        // boundary (mprotect would give it two permissions).
        if let Some(slot) = pgtable::lookup::<A>(&self.phys, self.family(), self.mm(mm).pgd, addr)
            && slot.level != A::leaf_level()
            && slot.pte.has(PteFlags::LEAF)
            && addr.offset_in(A::entry_span(slot.level)) != 0
        {
            let _ = self.split_huge_leaf(mm, addr);
        }
    }

    /// VMAs fully inside `[start, end)` after splitting at both ends.
    fn vmas_in(&mut self, mm: MmId, start: VirtAddr, end: VirtAddr) -> Vec<Vma> {
        self.split_vma_at(mm, start);
        self.split_vma_at(mm, end);
        self.mm(mm)
            .vmas
            .range(start.0..end.0)
            .map(|(_, v)| *v)
            .collect()
    }

    /// `munmap(addr, len)`.
    pub fn munmap(&mut self, mm: MmId, addr: VirtAddr, len: u64) -> Result<(), Errno> {
        if addr.offset_in(A::PAGE_SIZE) != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align::<A>(len).ok_or(Errno::EINVAL)?;
        addr.0.checked_add(len).ok_or(Errno::EINVAL)?;
        self.do_munmap(mm, addr, len)
    }

    fn do_munmap(&mut self, mm: MmId, addr: VirtAddr, len: u64) -> Result<(), Errno> {
        let end = VirtAddr(addr.0 + len);
        let vmas = self.vmas_in(mm, addr, end);
        if vmas.is_empty() {
            return Ok(());
        }
        self.zap_page_range(mm, addr, end)?;
        for v in &vmas {
            self.mm_mut(mm).vmas.remove(&v.start.0);
        }
        let pgd = self.mm(mm).pgd;
        // Tables covering only the unmapped range (floor/ceiling of the
        // neighbouring VMAs are respected because their leaves keep tables busy).
        let freed = pgtable::prune_empty_tables::<A>(&self.phys, self.family(), pgd, addr, end);
        self.free_tables(freed);
        Ok(())
    }

    fn user_leaves(&self, mm: MmId, start: VirtAddr, end: VirtAddr) -> Vec<(VirtAddr, LeafSlot)> {
        let mut out = Vec::new();
        pgtable::for_each_leaf::<A>(
            &self.phys,
            self.family(),
            self.mm(mm).pgd,
            start,
            end,
            &mut |va, slot| out.push((va, slot)),
        );
        out
    }

    /// `zap_page_range`: clears the leaves in `[start, end)` and drops the
    /// mappings' references. A huge leaf only partly inside is split first.
    pub fn zap_page_range(
        &mut self,
        mm: MmId,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), Errno> {
        if !self.pin_origins.is_empty() {
            self.forget_pins_in(mm, start, end);
        }
        self.zap_range(mm, start, end, 0)
    }

    fn zap_range(
        &mut self,
        mm: MmId,
        start: VirtAddr,
        end: VirtAddr,
        depth: u32,
    ) -> Result<(), Errno> {
        for (va, slot) in self.user_leaves(mm, start, end) {
            let span = A::entry_span(slot.level);
            if va < start || va.0 + span > end.0 {
                if depth >= 2 * A::levels() as u32 {
                    // Splitting made no progress: not a leaf this code wrote
                    // (a table the workload corrupted through the direct map).
                    self.event(
                        crate::event::EventKind::KernelBug,
                        format!(
                            "zap_page_range: the entry at {va} cannot be split (a corrupted table?)"
                        ),
                    );
                    return Err(Errno::EFAULT);
                }
                self.split_huge_leaf(
                    mm,
                    if va < start {
                        start
                    } else {
                        end.align_down(A::PAGE_SIZE)
                    },
                )?;
                return self.zap_range(mm, start, end, depth + 1);
            }
            self.phys
                .write_entry(slot.entry_pa, 0)
                .map_err(|_| Errno::EFAULT)?;
            self.drop_mapping(slot.pte);
        }
        Ok(())
    }

    /// `__split_huge_pmd` (and of a PUD): replaces the huge leaf covering `va`
    /// by a table of next-level leaves with the same permissions, each mapping
    /// its part of the compound page, until `va` is mapped by a base page.
    pub(crate) fn split_huge_leaf(&mut self, mm: MmId, va: VirtAddr) -> Result<(), Errno> {
        let slot = pgtable::lookup::<A>(&self.phys, self.family(), self.mm(mm).pgd, va)
            .ok_or(Errno::EFAULT)?;
        if slot.level == A::leaf_level() || !slot.pte.has(PteFlags::LEAF) {
            return Ok(());
        }
        let level = slot.level;
        let child = Level(level.0 + 1);
        let t = self
            .tables
            .alloc::<A>(&mut self.phys, Some(mm), child)
            .ok_or(Errno::ENOMEM)?;
        let per = A::entry_span(child) / A::PAGE_SIZE;
        // __split_huge_zero_page_pmd: the small zero page in every pte,
        // special and clean.
        let huge_zero = Some(slot.pte.pfn) == self.huge_zero_pfn;
        for i in 0..A::entries(child) as u64 {
            let pte = if huge_zero {
                let mut f = slot.pte.flags | PteFlags::SPECIAL;
                f.remove(PteFlags::WRITE | PteFlags::DIRTY);
                Pte {
                    flags: f,
                    pfn: self.zero_pfn,
                }
            } else {
                Pte {
                    flags: slot.pte.flags,
                    pfn: Pfn(slot.pte.pfn.0 + i * per),
                }
            };
            let raw = A::encode(self.family(), child, pte);
            self.phys
                .write_entry(t.add(i * 8), raw)
                .map_err(|_| Errno::EFAULT)?;
        }
        let entry = pgtable::table_entry::<A>(self.family(), level, t);
        self.phys
            .write_entry(slot.entry_pa, entry)
            .map_err(|_| Errno::EFAULT)?;
        // The compound page is now mapped by many leaves: each holds a
        // reference and a mapping.
        if !slot.pte.has(PteFlags::SPECIAL) && self.phys.pfn_valid(slot.pte.pfn) && !huge_zero {
            let n = A::entries(child) as u32;
            let head = self.phys.compound_head(slot.pte.pfn);
            self.phys.get_page(head, n - 1);
            self.phys.page_mut(head).mapcount += n - 1;
        }
        self.split_huge_leaf(mm, va)
    }

    /// Drops the reference and mapcount a leaf held on its page.
    pub(crate) fn drop_mapping(&mut self, pte: Pte) {
        if pte.has(PteFlags::SPECIAL) || !self.phys.pfn_valid(pte.pfn) || pte.pfn == self.zero_pfn {
            return;
        }
        if Some(self.phys.compound_head(pte.pfn)) == self.huge_zero_pfn {
            return; // no reference per mapping (put_huge_zero_page)
        }
        if !pte.has(PteFlags::PRESENT) {
            return;
        }
        let head = self.phys.compound_head(pte.pfn);
        let p = self.phys.page_mut(head);
        p.mapcount = p.mapcount.saturating_sub(1);
        if self.lockless_walkers > 0 && A::TLB_FLUSH_IPI {
            // The TLB flush IPI cannot complete while a walker has IRQs
            // off: the page is freed after it leaves.
            self.deferred_pages.push(head);
            return;
        }
        if self.phys.put_page(head, 1).is_err() {
            self.event(
                crate::event::EventKind::RefUnderflow,
                format!("unmapping {} found no reference", self.page_name(head)),
            );
        }
    }

    /// `mprotect(addr, len, prot)`.
    pub fn mprotect(
        &mut self,
        mm: MmId,
        addr: VirtAddr,
        len: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        if addr.offset_in(A::PAGE_SIZE) != 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align::<A>(len).ok_or(Errno::ENOMEM)?;
        let end = VirtAddr(addr.0.checked_add(len).ok_or(Errno::ENOMEM)?);
        // Every page must be mapped.
        let mut cur = addr;
        while cur < end {
            let v = self.vma_at(mm, cur).ok_or(Errno::ENOMEM)?;
            cur = v.end;
        }
        for v in self.vmas_in(mm, addr, end) {
            let mut nv = v;
            nv.flags
                .remove(VmFlags::VM_READ | VmFlags::VM_WRITE | VmFlags::VM_EXEC);
            if prot.read {
                nv.flags |= VmFlags::VM_READ;
            }
            if prot.write {
                nv.flags |= VmFlags::VM_WRITE;
            }
            if prot.exec {
                nv.flags |= VmFlags::VM_EXEC;
            }
            self.mm_mut(mm).vmas.insert(nv.start.0, nv);
            // change_protection: keep the frame, rewrite permissions; never
            // grant write (a later fault does, after COW if needed).
            for (_, slot) in self.user_leaves(mm, v.start, v.end) {
                if !slot.pte.has(PteFlags::PRESENT) {
                    continue;
                }
                let was_write = slot.pte.has(PteFlags::WRITE);
                let mut f = Self::leaf_flags(self.family(), nv.flags, was_write);
                f |= slot.pte.flags & (PteFlags::SPECIAL | PteFlags::DEVMAP | PteFlags::DIRTY);
                if f.contains(PteFlags::WRITE) && f.contains(PteFlags::DIRTY) {
                    f.remove(PteFlags::RDONLY);
                }
                let raw = A::encode(
                    self.family(),
                    slot.level,
                    Pte {
                        flags: f,
                        pfn: slot.pte.pfn,
                    },
                );
                self.phys
                    .write_entry(slot.entry_pa, raw)
                    .map_err(|_| Errno::EFAULT)?;
            }
        }
        Ok(())
    }

    /// `madvise(addr, len, MADV_DONTNEED)`: zap the range, keep the VMAs.
    pub fn madvise_dontneed(&mut self, mm: MmId, addr: VirtAddr, len: u64) -> Result<(), Errno> {
        if addr.offset_in(A::PAGE_SIZE) != 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align::<A>(len).ok_or(Errno::EINVAL)?;
        let end = VirtAddr(addr.0.checked_add(len).ok_or(Errno::EINVAL)?);
        let mut cur = addr;
        while cur < end {
            let v = self.vma_at(mm, cur).ok_or(Errno::ENOMEM)?;
            if v.flags.intersects(VmFlags::VM_PFNMAP | VmFlags::VM_IO) {
                return Err(Errno::EINVAL);
            }
            cur = v.end;
        }
        self.zap_page_range(mm, addr, end)
    }

    /// Direct-map ("kernel") physical address of a user address, if mapped.
    #[must_use]
    pub fn user_pa(&self, mm: MmId, va: VirtAddr) -> Option<PhysAddr> {
        let slot = pgtable::lookup::<A>(&self.phys, self.family(), self.mm(mm).pgd, va)?;
        if !slot.pte.has(PteFlags::LEAF) || !slot.pte.has(PteFlags::PRESENT) {
            return None;
        }
        let span = A::entry_span(slot.level);
        Some(slot.pte.pfn.addr(A::PAGE_SHIFT).add(va.offset_in(span)))
    }

    /// Bytes from `va` on that translate to nothing in `mm`'s tables (the
    /// kernel's, `init_mm`, for `None`), at least to the end of the hole's
    /// aligned block; `0` when `va` has a present leaf. A walk over a long
    /// range ([`Machine::user_pa`] or [`Machine::kernel_pa`] page by page)
    /// skips that many bytes, so it costs the tables and pages that exist,
    /// not the length of the range.
    #[must_use]
    pub fn unmapped_run(&self, mm: Option<MmId>, va: VirtAddr) -> u64 {
        let pgd = mm.map_or(self.init_pgd, |mm| self.mm(mm).pgd);
        pgtable::hole_at::<A>(&self.phys, self.family(), pgd, va)
    }
}

impl<A: Arch> Machine<A> {
    /// `expand_stack`: grows a VM_GROWSDOWN VMA down to cover `va`.
    pub(crate) fn expand_stack(&mut self, mm: MmId, va: VirtAddr) -> Option<Vma> {
        let next = self.find_vma(mm, va)?;
        if !next.flags.contains(VmFlags::VM_GROWSDOWN) {
            return None;
        }
        let new_start = va.align_down(A::PAGE_SIZE);
        // The stack guard gap: no other VMA may end within one page below.
        if let Some(prev) = self.vma_at(mm, VirtAddr(new_start.0.saturating_sub(1)))
            && prev.start != next.start
        {
            return None;
        }
        let grown_pages = (next.start.0 - new_start.0) / A::PAGE_SIZE;
        let mut v = next;
        v.start = new_start;
        v.name_base -= grown_pages as i64;
        let vmas = &mut self.mm_mut(mm).vmas;
        vmas.remove(&next.start.0);
        vmas.insert(v.start.0, v);
        Some(v)
    }
}
