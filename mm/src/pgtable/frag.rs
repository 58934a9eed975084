//! Table allocation, whole pages or page-table fragments.
//!
//! Where a table is smaller than a page and the kernel packs several into
//! one page (book3s64 with 64 KiB pages), a table is a *fragment*: the
//! kernel keeps, per mm, the next unused fragment of the page it last took
//! (`mm->context.pte_frag`, and `pmd_frag` where PMD tables are fragments
//! too), hands fragments out from it in address order, and counts the
//! fragments of a page that are handed out or still pending in the cache;
//! the page is freed when that count drops to zero. Freed fragments are not
//! reused: only the cache's forward pointer hands fragments out (6.13
//! `arch/powerpc/mm/pgtable-frag.c`: `pte_fragment_alloc`,
//! `get_pte_from_cache`, `__alloc_for_ptecache`, `pte_fragment_free`;
//! `mm/book3s64/pgtable.c`: `pmd_fragment_alloc`, `pmd_fragment_free`; v4.10
//! and v4.17 `arch/powerpc/mm/pgtable_64.c`: `get_from_cache`,
//! `__alloc_for_cache`). The count is `ptdesc->pt_frag_refcount` in 6.x
//! and the page's `_refcount` itself in v4.x (`set_page_count(page,
//! PTE_FRAG_NR)`, `put_page_testzero`): the profile says which
//! ([`Knobs::pt_frag_refcount`]).
//!
//! Tables the kernel takes from a slab cache instead (`PGT_CACHE`: the
//! powerpc PUD, the v4.x PMD) are whole frames here.

use std::collections::BTreeMap;

use vmemu_arch::{Arch, Level, Pfn, PhysAddr};

use crate::phys::{Owner, PhysMem};
use crate::profile::Knobs;
use crate::sync::MmId;

/// Levels a table tree may have (arm64-52 and x86-la57 have five).
const MAX_LEVELS: usize = 6;

/// What the allocator knows of one page cut into fragments.
#[derive(Clone, Copy, Debug)]
pub struct FragPage {
    /// The table level of its fragments.
    pub level: u8,
    /// Fragments handed out and not freed yet, one bit each (at most 256:
    /// a 64 KiB page of 256-byte PTE tables).
    live: [u64; 4],
    /// The fragment count (`pt_frag_refcount`, or `_refcount` in v4.x):
    /// fragments live plus those still pending in an mm's cache.
    pub count: u32,
}

impl FragPage {
    fn bit(&self, i: usize) -> bool {
        self.live[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize, on: bool) {
        if on {
            self.live[i / 64] |= 1 << (i % 64);
        } else {
            self.live[i / 64] &= !(1 << (i % 64));
        }
    }
    /// Indices of the fragments handed out and not freed.
    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..256).filter(|&i| self.bit(i))
    }
}

/// The table allocator of a machine: table numbers (for names), the
/// fragment geometry of the profile and arch, each mm's fragment cache and
/// the pages cut into fragments.
#[derive(Debug, Default)]
pub struct TableAlloc {
    /// Number of the next table page (`pt:L3#7`).
    seq: u32,
    /// log2 bytes of a fragment at each level; `None`: whole pages.
    frag_shift: [Option<u8>; MAX_LEVELS],
    /// The count is `pt_frag_refcount` (6.x); else the page's `_refcount`.
    pt_frag_refcount: bool,
    /// `mm->context.pte_frag` / `pmd_frag`: the next fragment to hand out,
    /// per level, for `init_mm` (index 0) and mm `i` (index `i + 1`).
    cache: Vec<[Option<PhysAddr>; MAX_LEVELS]>,
    /// Pages cut into fragments, by pfn.
    pages: BTreeMap<u64, FragPage>,
}

impl TableAlloc {
    /// The allocator for arch `A` under `knobs`: PTE tables are fragments
    /// where the arch has them ([`Arch::TABLE_FRAGMENTS`]), of the table's
    /// own size (`RADIX_PTE_FRAG_SIZE_SHIFT`) or, with
    /// [`Knobs::radix_pte_frag_hash_size`], of the hash MMU's; PMD tables
    /// too with [`Knobs::pmd_fragments`]. A fragment as large as a page is
    /// a whole page (`PTE_FRAG_NR == 1`).
    #[must_use]
    pub fn new<A: Arch>(knobs: &Knobs) -> Self {
        let mut frag_shift: [Option<u32>; MAX_LEVELS] = [None; MAX_LEVELS];
        if let Some(hash_pte_shift) = A::TABLE_FRAGMENTS {
            let own = |l: Level| A::table_bytes(l).trailing_zeros();
            let leaf = A::leaf_level();
            let pte = if knobs.radix_pte_frag_hash_size {
                hash_pte_shift
            } else {
                own(leaf)
            };
            frag_shift[leaf.index()] = Some(pte);
            if knobs.pmd_fragments && leaf.0 > 0 {
                let pmd = Level(leaf.0 - 1);
                frag_shift[pmd.index()] = Some(own(pmd));
            }
        }
        let frag_shift = frag_shift.map(|s| s.filter(|&s| s < A::PAGE_SHIFT).map(|s| s as u8));
        Self {
            seq: 0,
            frag_shift,
            pt_frag_refcount: knobs.pt_frag_refcount,
            cache: Vec::new(),
            pages: BTreeMap::new(),
        }
    }

    /// Bytes of a fragment at `level`, or `None` where tables are whole pages.
    #[must_use]
    pub fn frag_size(&self, level: Level) -> Option<u64> {
        self.frag_shift
            .get(level.index())
            .copied()
            .flatten()
            .map(|s| 1u64 << s)
    }

    /// Whether the fragment count is `pt_frag_refcount` (not `_refcount`).
    #[must_use]
    pub fn counts_in_ptdesc(&self) -> bool {
        self.pt_frag_refcount
    }

    fn slot(&mut self, mm: Option<MmId>) -> &mut [Option<PhysAddr>; MAX_LEVELS] {
        let i = mm.map_or(0, |m| m.0 as usize + 1);
        if self.cache.len() <= i {
            self.cache.resize(i + 1, [None; MAX_LEVELS]);
        }
        &mut self.cache[i]
    }

    /// Allocates a zeroed table for `level` of `mm` (`None`: `init_mm`):
    /// the next fragment of the mm's cached page where the level is cut
    /// into fragments (`pte_fragment_alloc` / `pmd_fragment_alloc`), else a
    /// whole page (several for a table larger than a page, such as the
    /// 64 KiB pgd of ppc64 with 4 KiB pages).
    pub fn alloc<A: Arch>(
        &mut self,
        phys: &mut PhysMem,
        mm: Option<MmId>,
        level: Level,
    ) -> Option<PhysAddr> {
        let Some(size) = self.frag_size(level) else {
            let pfn = phys.alloc(table_order::<A>(level), self.owner(level))?;
            return Some(pfn.addr(A::PAGE_SHIFT));
        };
        // get_pte_from_cache: the cached fragment, the cache moved on (to
        // nothing past the page's last fragment).
        if let Some(ret) = self.slot(mm)[level.index()] {
            let next = ret.add(size);
            self.slot(mm)[level.index()] = (!next.0.is_multiple_of(A::PAGE_SIZE)).then_some(next);
            let pfn = ret.pfn(A::PAGE_SHIFT);
            let i = (ret.0 % A::PAGE_SIZE / size) as usize;
            if let Some(p) = self.pages.get_mut(&pfn.0) {
                p.set(i, true);
            }
            return Some(ret);
        }
        // __alloc_for_ptecache: a new page, its first fragment handed out,
        // the others pending in the cache, the count at PTE_FRAG_NR.
        let pfn = phys.alloc(0, self.owner(level))?;
        let nr = (A::PAGE_SIZE / size) as u32;
        if !self.pt_frag_refcount {
            phys.get_page(pfn, nr - 1);
        }
        let mut page = FragPage {
            level: level.0,
            live: [0; 4],
            count: nr,
        };
        page.set(0, true);
        self.pages.insert(pfn.0, page);
        let ret = pfn.addr(A::PAGE_SHIFT);
        self.slot(mm)[level.index()] = (nr > 1).then_some(ret.add(size));
        Some(ret)
    }

    fn owner(&mut self, level: Level) -> Owner {
        let o = Owner::PageTable {
            level: level.0,
            seq: self.seq,
        };
        self.seq += 1;
        o
    }

    /// Frees the table at `table` (already unlinked, and no lockless walker
    /// inside): its bytes are overwritten with `poison` so that a walker
    /// still reading it is caught; a whole page is freed, a fragment counted
    /// down (`pte_fragment_free` / `pmd_fragment_free`) and its page freed
    /// with the last one. Returns whether a page went back to the
    /// allocator.
    pub fn free<A: Arch>(&mut self, phys: &mut PhysMem, table: PhysAddr, poison: u8) -> bool {
        let pfn = table.pfn(A::PAGE_SHIFT);
        let Some(page) = self.pages.get_mut(&pfn.0) else {
            let bytes = (A::PAGE_SIZE << phys.page(pfn).order) as usize;
            let _ = phys.fill(pfn.addr(A::PAGE_SHIFT), bytes, poison);
            let _ = phys.put_page(pfn, 1);
            return true;
        };
        let size = self.frag_shift[usize::from(page.level)].map_or(A::PAGE_SIZE, |s| 1 << s);
        let i = (table.0 % A::PAGE_SIZE / size) as usize;
        page.set(i, false);
        let _ = phys.fill(table, size as usize, poison);
        page.count = page.count.saturating_sub(1);
        let last = page.count == 0;
        if last {
            self.pages.remove(&pfn.0);
            let _ = phys.fill(pfn.addr(A::PAGE_SHIFT), A::PAGE_SIZE as usize, poison);
        }
        // v4.x counts in _refcount (put_page_testzero frees the page with
        // the last fragment); 6.x drops the page's one reference then.
        if last || !self.pt_frag_refcount {
            let _ = phys.put_page(pfn, 1);
        }
        last
    }

    /// The page cut into fragments at `pfn`, if it is one.
    #[must_use]
    pub fn frag_page(&self, pfn: Pfn) -> Option<&FragPage> {
        self.pages.get(&pfn.0)
    }

    /// Fragments of the page at `pfn` still pending in an mm's cache (not
    /// handed out yet, counted in its fragment count).
    #[must_use]
    pub fn pending<A: Arch>(&self, pfn: Pfn) -> u32 {
        self.cache
            .iter()
            .flatten()
            .flatten()
            .filter(|next| next.pfn(A::PAGE_SHIFT) == pfn)
            .map(|next| {
                let size = self.pages.get(&pfn.0).map_or(A::PAGE_SIZE, |p| {
                    self.frag_size(Level(p.level)).unwrap_or(A::PAGE_SIZE)
                });
                ((A::PAGE_SIZE - next.0 % A::PAGE_SIZE) / size) as u32
            })
            .sum()
    }

    /// Whether `table` is a table handed out and not freed: a whole table
    /// page starts at it, or it is a live fragment of a fragment page.
    /// (Whether the frame itself is allocated is the caller's question.)
    #[must_use]
    pub fn is_live<A: Arch>(&self, table: PhysAddr) -> bool {
        let pfn = table.pfn(A::PAGE_SHIFT);
        match self.pages.get(&pfn.0) {
            None => table.0.is_multiple_of(A::PAGE_SIZE),
            Some(p) => {
                let size = self.frag_size(Level(p.level)).unwrap_or(A::PAGE_SIZE);
                table.0.is_multiple_of(size) && p.bit((table.0 % A::PAGE_SIZE / size) as usize)
            }
        }
    }

    /// The fragment index of `table` in its page, if its page is cut into
    /// fragments.
    #[must_use]
    pub fn frag_index<A: Arch>(&self, table: PhysAddr) -> Option<u64> {
        let p = self.pages.get(&table.pfn(A::PAGE_SHIFT).0)?;
        let size = self.frag_size(Level(p.level))?;
        Some(table.0 % A::PAGE_SIZE / size)
    }
}

/// Allocation order for a table of `level` (tables larger than a page, such as
/// the 64 KiB pgd of ppc64 with 4 KiB pages, take several contiguous frames).
pub fn table_order<A: Arch>(level: Level) -> u8 {
    let pages = A::table_bytes(level).div_ceil(A::PAGE_SIZE);
    pages.next_power_of_two().trailing_zeros() as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::KernelProfile;
    use vmemu_arch::{Ppc64, Ppc64_4k, X86_64};

    fn knobs(p: &str) -> Knobs {
        p.parse::<KernelProfile>().unwrap().knobs
    }

    fn phys<A: Arch>() -> PhysMem {
        PhysMem::new::<A>(64 << 20).unwrap()
    }

    #[test]
    fn geometry_per_profile_and_arch() {
        let pte = Ppc64::leaf_level();
        let pmd = Level(pte.0 - 1);
        // v4.10: the hash MMU's 4 KiB PTE fragment; PMDs from a slab.
        let t = TableAlloc::new::<Ppc64>(&knobs("v4.10"));
        assert_eq!((t.frag_size(pte), t.frag_size(pmd)), (Some(4096), None));
        // v4.17: the radix table's own 256 bytes.
        let t = TableAlloc::new::<Ppc64>(&knobs("v4.17"));
        assert_eq!((t.frag_size(pte), t.frag_size(pmd)), (Some(256), None));
        // 6.13: PMD fragments too.
        let t = TableAlloc::new::<Ppc64>(&knobs("v6.13"));
        assert_eq!(
            (t.frag_size(pte), t.frag_size(pmd)),
            (Some(256), Some(4096))
        );
        assert_eq!(t.frag_size(Level(1)), None, "PUDs come from a slab");
        // Page-sized tables are never fragments.
        for p in ["v4.10", "v6.13"] {
            let t = TableAlloc::new::<Ppc64_4k>(&knobs(p));
            let x = TableAlloc::new::<X86_64>(&knobs(p));
            for l in 0..4 {
                assert_eq!(t.frag_size(Level(l)), None);
                assert_eq!(x.frag_size(Level(l)), None);
            }
        }
    }

    /// Fragments come out of one page in address order, per mm; the count
    /// is live + pending; the page goes back with the last fragment.
    fn fragments_share_a_page(profile: &str) {
        let k = knobs(profile);
        let mut phys = phys::<Ppc64>();
        let mut t = TableAlloc::new::<Ppc64>(&k);
        let pte = Ppc64::leaf_level();
        let size = t.frag_size(pte).unwrap();
        let nr = (Ppc64::PAGE_SIZE / size) as u32;
        let mm = Some(MmId(0));
        let a = t.alloc::<Ppc64>(&mut phys, mm, pte).unwrap();
        let b = t.alloc::<Ppc64>(&mut phys, mm, pte).unwrap();
        let other = t.alloc::<Ppc64>(&mut phys, Some(MmId(1)), pte).unwrap();
        assert_eq!(b, a.add(size), "the next fragment of the cached page");
        assert_ne!(other.pfn(16), a.pfn(16), "each mm has its own cache");
        let pfn = a.pfn(16);
        let fp = *t.frag_page(pfn).unwrap();
        assert_eq!(fp.count, nr);
        assert_eq!(fp.live().count(), 2);
        assert_eq!(t.pending::<Ppc64>(pfn), nr - 2);
        assert_eq!(t.frag_index::<Ppc64>(b), Some(1));
        assert!(t.is_live::<Ppc64>(b) && !t.is_live::<Ppc64>(b.add(size)));
        let refs = |phys: &PhysMem| phys.page(pfn).refcount;
        // v4.x: the count is _refcount; 6.x: pt_frag_refcount, one reference.
        let expect_refs = if k.pt_frag_refcount { 1 } else { nr };
        assert_eq!(refs(&phys), expect_refs);
        // Hand out the rest: the cache empties at the end of the page.
        let mut last = b;
        for _ in 2..nr {
            last = t.alloc::<Ppc64>(&mut phys, mm, pte).unwrap();
        }
        assert_eq!(last.pfn(16), pfn);
        assert_eq!(t.pending::<Ppc64>(pfn), 0);
        let next = t.alloc::<Ppc64>(&mut phys, mm, pte).unwrap();
        assert_ne!(next.pfn(16), pfn, "a full page: a new one");
        // Free all but one: the page stays, the freed fragments poisoned.
        for i in 1..nr {
            assert!(!t.free::<Ppc64>(&mut phys, a.add(u64::from(i) * size), 0x6b));
        }
        assert!(!phys.page(pfn).flags.contains(crate::phys::PageFlags::FREE));
        assert_eq!(phys.read_entry(b).unwrap(), u64::from_ne_bytes([0x6b; 8]));
        assert_eq!(phys.read_entry(a).unwrap(), 0, "a live fragment untouched");
        assert_eq!(refs(&phys), 1);
        assert!(
            t.free::<Ppc64>(&mut phys, a, 0x6b),
            "the last fragment frees the page"
        );
        assert!(phys.page(pfn).flags.contains(crate::phys::PageFlags::FREE));
        assert!(t.frag_page(pfn).is_none());
    }

    #[test]
    fn fragments_share_a_page_v4_10() {
        fragments_share_a_page("v4.10");
    }

    #[test]
    fn fragments_share_a_page_v4_17() {
        fragments_share_a_page("v4.17");
    }

    #[test]
    fn fragments_share_a_page_v6_13() {
        fragments_share_a_page("v6.13");
    }

    /// A page whose fragments are all freed while the cache still points
    /// into it stays allocated: the pending fragments hold it.
    #[test]
    fn pending_fragments_keep_the_page() {
        let mut phys = phys::<Ppc64>();
        let mut t = TableAlloc::new::<Ppc64>(&knobs("v6.13"));
        let pte = Ppc64::leaf_level();
        let a = t.alloc::<Ppc64>(&mut phys, None, pte).unwrap();
        assert!(!t.free::<Ppc64>(&mut phys, a, 0x6b));
        let pfn = a.pfn(16);
        assert_eq!(t.frag_page(pfn).unwrap().count, t.pending::<Ppc64>(pfn));
        // Freed fragments are not handed out again: the cache moves on.
        let b = t.alloc::<Ppc64>(&mut phys, None, pte).unwrap();
        assert_eq!(b, a.add(256));
    }
}
