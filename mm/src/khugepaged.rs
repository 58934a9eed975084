//! THP collapse (`mm/khugepaged.c` `collapse_huge_page`), in the two halves
//! a concurrent gup-fast walker can fall between: `pmdp_collapse_flush`
//! clears the PMD that points at the pte table; then, once no IRQ-off walker
//! can still be inside (the x86 TLB-flush IPI, ppc64's
//! `serialize_against_pte_lookup`, 6.x `tlb_remove_table_sync_one`),
//! `__collapse_huge_page_isolate` checks that nobody else holds a reference
//! to the small pages, the bytes are copied into one compound page, the
//! PMD maps it and the old pte table is freed.
//!
//! The arm64 window before 2ba99c5e0881 ("mm/khugepaged: fix GUP-fast
//! interaction by sending IPI", 6.1; v4.10 and v4.17 there have no IPI) is
//! not modelled: every profile waits for the walkers to leave.

use vmemu_arch::{Arch, Level, Pfn, PhysAddr, Pte, PteFlags, VirtAddr};

use crate::Machine;
use crate::errno::Errno;
use crate::mm::{Backing, VmFlags};
use crate::phys::{Owner, PageFlags};
use crate::sync::MmId;

/// A collapse between its two halves: the PMD cleared, the pte table
/// detached but not freed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Collapse {
    mm: MmId,
    /// The PMD-aligned address.
    pub addr: VirtAddr,
    pmd_entry: PhysAddr,
    old_pmd: u64,
    table: PhysAddr,
}

impl<A: Arch> Machine<A> {
    fn pmd_level() -> Level {
        Level(A::levels() as u8 - 2)
    }

    /// The PMD entry covering `addr` in `mm` and the pte table it points at.
    fn pmd_entry_of(&self, mm: MmId, addr: VirtAddr) -> Option<(PhysAddr, u64, PhysAddr)> {
        let mut table = self.mm(mm).pgd;
        for l in 0..A::levels() as u8 - 1 {
            let level = Level(l);
            let entry = table.add(A::index(addr, level) as u64 * 8);
            let raw = self.phys.read_entry(entry).ok()?;
            let pte = A::decode(self.family(), level, raw);
            if !pte.has(PteFlags::TABLE) {
                return None;
            }
            let next = crate::pgtable::next_table::<A>(self.family(), level, raw);
            if level == Self::pmd_level() {
                return Some((entry, raw, next));
            }
            table = next;
        }
        None
    }

    /// Whether the small page mapped by `raw` may be collapsed: a present,
    /// normal anonymous page mapped once, with no reference but its
    /// mapping's (`is_refcount_suitable`).
    fn collapsible(&self, raw: u64) -> Option<Pfn> {
        let pte = A::decode(self.family(), A::leaf_level(), raw);
        if !pte.has(PteFlags::PRESENT) || !pte.has(PteFlags::LEAF) || pte.has(PteFlags::SPECIAL) {
            return None;
        }
        let pfn = pte.pfn;
        if !self.phys.pfn_valid(pfn) || pfn == self.zero_pfn {
            return None;
        }
        let p = self.phys.page(pfn);
        let ok = matches!(p.owner, Owner::Anon { .. })
            && p.order == 0
            && p.mapcount == 1
            && p.refcount == 1
            && !p.flags.contains(PageFlags::FREE);
        ok.then_some(pfn)
    }

    /// The pages of the pte table at `table`, if every one is collapsible.
    fn isolate(&self, table: PhysAddr) -> Option<Vec<Pfn>> {
        let t = self.phys.table(table, A::entries(A::leaf_level())).ok()?;
        (0..A::entries(A::leaf_level()))
            .map(|i| t.get(i).and_then(|raw| self.collapsible(raw)))
            .collect()
    }

    /// The first half of `collapse_huge_page` for the PMD covering `addr`
    /// (khugepaged holds `mmap_sem` for write): checks the VMA and the
    /// pages (`hugepage_vma_revalidate`, `hpage_collapse_scan_pmd`), then
    /// `pmdp_collapse_flush` clears the PMD. `EINVAL`: not a THP-enabled
    /// anonymous range; `EAGAIN`: a page that cannot be collapsed.
    pub fn collapse_huge_page_begin(
        &mut self,
        mm: MmId,
        addr: VirtAddr,
    ) -> Result<Collapse, Errno> {
        let span = A::entry_span(Self::pmd_level());
        let haddr = addr.align_down(span);
        let vma = self.vma_at(mm, haddr).ok_or(Errno::EINVAL)?;
        let huge_ok = vma.flags.contains(VmFlags::VM_HUGEPAGE)
            && !vma.flags.contains(VmFlags::VM_SHARED)
            && matches!(vma.backing, Backing::Anon)
            && vma.end.0 >= haddr.0 + span;
        if !huge_ok {
            return Err(Errno::EINVAL);
        }
        let (pmd_entry, old_pmd, table) = self.pmd_entry_of(mm, haddr).ok_or(Errno::EAGAIN)?;
        self.isolate(table).ok_or(Errno::EAGAIN)?;
        self.phys
            .write_entry(pmd_entry, 0)
            .map_err(|_| Errno::EFAULT)?;
        Ok(Collapse {
            mm,
            addr: haddr,
            pmd_entry,
            old_pmd,
            table,
        })
    }

    /// The second half: `EAGAIN` while a gup-fast walker is inside its
    /// IRQ-off section (the flush waits for it). Then the isolation check
    /// again (a reference a walker took meanwhile fails it: the PMD is
    /// restored, `Ok(false)`), the copy, the huge PMD, the old pages and
    /// the pte table freed (`Ok(true)`).
    pub fn collapse_huge_page_finish(&mut self, c: Collapse) -> Result<bool, Errno> {
        if self.lockless_walkers > 0 {
            return Err(Errno::EAGAIN);
        }
        let Some(pages) = self.isolate(c.table) else {
            // SCAN_PAGE_COUNT: pmd_populate(old table).
            self.phys
                .write_entry(c.pmd_entry, c.old_pmd)
                .map_err(|_| Errno::EFAULT)?;
            return Ok(false);
        };
        let vma = self.vma_at(c.mm, c.addr).ok_or(Errno::EFAULT)?;
        let index = vma.name_base + ((c.addr.0 - vma.start.0) / A::PAGE_SIZE) as i64;
        let owner = Owner::Anon {
            name: vma.name,
            index: index as u32,
        };
        let order = (A::entry_span(Self::pmd_level()) / A::PAGE_SIZE).trailing_zeros() as u8;
        let Some(huge) = self.phys.alloc(order, owner) else {
            self.phys
                .write_entry(c.pmd_entry, c.old_pmd)
                .map_err(|_| Errno::EFAULT)?;
            return Err(Errno::ENOMEM);
        };
        // __collapse_huge_page_copy, then release the small pages.
        for (i, &p) in pages.iter().enumerate() {
            let to = huge.addr(A::PAGE_SHIFT).add(i as u64 * A::PAGE_SIZE);
            let _ = self
                .phys
                .copy(p.addr(A::PAGE_SHIFT), to, A::PAGE_SIZE as usize);
            let _ = self.phys.write_entry(c.table.add(i as u64 * 8), 0);
            let page = self.phys.page_mut(p);
            page.mapcount = 0;
            let _ = self.phys.put_page(p, 1);
        }
        self.phys.page_mut(huge).flags |= PageFlags::ANON_EXCLUSIVE | PageFlags::DIRTY;
        self.phys.page_mut(huge).mapcount += 1;
        let f = Self::leaf_flags(self.family(), vma.flags, true) | PteFlags::DIRTY;
        self.set_user_leaf(
            c.mm,
            c.addr,
            Self::pmd_level(),
            Pte {
                flags: f,
                pfn: huge,
            },
        )
        .map_err(|_| Errno::ENOMEM)?;
        self.free_tables(vec![c.table]);
        Ok(true)
    }
}
