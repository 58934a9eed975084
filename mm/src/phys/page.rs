//! The `struct page` array (`include/linux/mm_types.h`, `include/linux/mm.h`):
//! what the emulator keeps per frame — `_refcount`, `_mapcount`, the pin
//! count, `page->flags`, the compound order, an owner tag for symbolic names
//! — and the reference operations on it (`get_page`, `try_get_page`,
//! `put_page`, `compound_head`), including a `_refcount` narrower than 32
//! bits for the CVE-2019-11487 replays. No `unsafe` here: guest memory is the
//! parent module's.

use vmemu_arch::Pfn;

use super::PhysMem;
use crate::errno::Errno;

/// Pincount bias of FOLL_PIN on a small folio (`GUP_PIN_COUNTING_BIAS`).
pub const GUP_PIN_COUNTING_BIAS: u32 = 1024;

bitflags::bitflags! {
    /// `page->flags` bits the emulator models.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PageFlags: u16 {
        /// PG_locked.
        const LOCKED = 1 << 0;
        /// PG_reserved (the zero page, kernel image frames).
        const RESERVED = 1 << 1;
        /// PG_dirty.
        const DIRTY = 1 << 2;
        /// PG_uptodate.
        const UPTODATE = 1 << 3;
        /// PG_head: first page of a compound page.
        const HEAD = 1 << 4;
        /// A tail page of a compound page.
        const TAIL = 1 << 5;
        /// PG_referenced (`mark_page_accessed`).
        const REFERENCED = 1 << 6;
        /// PG_anon_exclusive (6.x): the anon page is mapped by one mm only.
        const ANON_EXCLUSIVE = 1 << 7;
        /// The frame is free (in the allocator).
        const FREE = 1 << 8;
    }
}

/// What a frame is used for; turned into a symbolic name for transcripts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Owner {
    /// Not allocated.
    #[default]
    Free,
    /// The shared zero page.
    Zero,
    /// A page-table page at `level` (0 = pgd) of table number `seq`.
    PageTable { level: u8, seq: u32 },
    /// Page `index` of the anonymous mapping named `name`.
    Anon { name: u32, index: u32 },
    /// Page `index` of the page cache of file `file`. The index is a
    /// `pgoff_t` (`unsigned long`, 64 bits on every modelled arch:
    /// `include/linux/types.h`), so a byte position up to 2^64 - 1 has its
    /// own page.
    File { file: u32, index: u64 },
    /// Page `index` of the kernel buffer named `name` (kmalloc/vmalloc/alloc_page).
    Kernel { name: u32, index: u32 },
    /// The x86 vsyscall page.
    Vsyscall,
    /// Frames of the emulated kernel image / reserved memory.
    Reserved,
    /// The huge zero page (`mm_get_huge_zero_page`): one PMD-sized compound
    /// page mapped read-only by every THP read fault that may map it.
    HugeZero,
}

/// The emulated `struct page`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Page {
    /// `page_ref_count()` (on the head for compound pages).
    pub refcount: u32,
    /// `_mapcount + 1`: number of page-table leaves mapping the page.
    pub mapcount: u32,
    /// `_pincount` of a large folio (small folios count pins in `refcount`
    /// with [`GUP_PIN_COUNTING_BIAS`]).
    pub pincount: u32,
    /// Page flags.
    pub flags: PageFlags,
    /// Compound order (on head and tails).
    pub order: u8,
    /// What the page is.
    pub owner: Owner,
}

/// The `struct page` of a frame that was never allocated.
pub(super) static FREE_PAGE: Page = Page {
    refcount: 0,
    mapcount: 0,
    pincount: 0,
    flags: PageFlags::FREE,
    order: 0,
    owner: Owner::Free,
};

/// The bookkeeping of a `_refcount` of W < 32 bits (CVE-2019-11487 replays):
/// the counter wraps, so the emulator keeps the true number of references
/// beside it to notice a page freed while references are still out.
#[derive(Debug, Default)]
pub(super) struct RefWrap {
    /// W.
    bits: u32,
    /// References really held on each allocated head (not reduced mod 2^W).
    pub(super) true_refs: std::collections::HashMap<u64, u64>,
    /// References still held on a frame by holders of a page that was freed
    /// under them (its counter reached 0 mod 2^W): stale pointers.
    stale: std::collections::BTreeMap<u64, u64>,
    /// Frees of a page with references still out, not yet reported: the
    /// frame, the `struct page` before the free, the references left.
    freed_referenced: Vec<(Pfn, Page, u64)>,
}

impl PhysMem {
    /// Makes `_refcount` `bits` wide (the `refcount_bits` knob): stored
    /// modulo 2^bits and read as a signed value of that width. 32 (the
    /// kernel's `atomic_t`) keeps the saturating, never-wrapping counter.
    /// Call before anything references a page beyond its allocation.
    pub fn set_refcount_bits(&mut self, bits: u8) {
        let bits = u32::from(bits).clamp(2, 32);
        self.wrap = (bits < 32).then(|| {
            let mut w = RefWrap {
                bits,
                ..RefWrap::default()
            };
            for (pfn, p) in self.pages.iter().enumerate() {
                if !p.flags.contains(PageFlags::FREE) && !p.flags.contains(PageFlags::TAIL) {
                    w.true_refs.insert(pfn as u64, u64::from(p.refcount));
                }
            }
            Box::new(w)
        });
    }

    /// The width of `_refcount` in bits.
    #[inline]
    #[must_use]
    pub fn refcount_bits(&self) -> u32 {
        self.wrap.as_ref().map_or(32, |w| w.bits)
    }

    /// `page_ref_count()` of the head of `pfn` as the kernel reads it: the
    /// stored counter as a signed value of `refcount_bits` bits.
    #[must_use]
    pub fn page_ref_count(&self, pfn: Pfn) -> i64 {
        let c = u64::from(self.page(self.compound_head(pfn)).refcount);
        let bits = self.refcount_bits();
        if c >> (bits - 1) & 1 == 1 {
            c as i64 - (1i64 << bits)
        } else {
            c as i64
        }
    }

    /// References held on frame `pfn` by holders of a page freed under them
    /// (only with a narrow `_refcount`).
    #[must_use]
    pub fn stale_refs(&self, pfn: Pfn) -> u64 {
        self.wrap
            .as_ref()
            .and_then(|w| w.stale.get(&pfn.0).copied())
            .unwrap_or(0)
    }

    /// Every frame with stale references, in pfn order.
    #[must_use]
    pub fn stale_frames(&self) -> Vec<(Pfn, u64)> {
        self.wrap.as_ref().map_or_else(Vec::new, |w| {
            w.stale.iter().map(|(&p, &n)| (Pfn(p), n)).collect()
        })
    }

    /// A holder of a stale pointer to `pfn` takes one more reference
    /// (`get_page` on what it thinks is its page): counted as stale, the
    /// frame's present owner is not charged. `false` if `pfn` has no stale
    /// references.
    pub fn stale_get(&mut self, pfn: Pfn) -> bool {
        match self.wrap.as_mut().and_then(|w| w.stale.get_mut(&pfn.0)) {
            Some(n) => {
                *n += 1;
                true
            }
            None => false,
        }
    }

    /// A holder of a stale pointer to `pfn` drops its reference. `false`
    /// if `pfn` has no stale references (the put is then a normal one).
    pub fn stale_put(&mut self, pfn: Pfn) -> bool {
        let Some(w) = self.wrap.as_mut() else {
            return false;
        };
        match w.stale.get_mut(&pfn.0) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    w.stale.remove(&pfn.0);
                }
                true
            }
            None => false,
        }
    }

    /// Takes the frees of pages with references still held since the last
    /// call: the frame, its `struct page` before the free, the references
    /// left.
    pub fn take_freed_referenced(&mut self) -> Vec<(Pfn, Page, u64)> {
        self.wrap
            .as_mut()
            .map_or_else(Vec::new, |w| std::mem::take(&mut w.freed_referenced))
    }

    /// Adds `refs` to the counter of `head` under a narrow `_refcount`.
    #[cold]
    fn wrap_add(&mut self, head: Pfn, refs: u32) {
        let Some(w) = self.wrap.as_mut() else {
            return;
        };
        let mask = (1u64 << w.bits) - 1;
        *w.true_refs.entry(head.0).or_default() += u64::from(refs);
        if let Some(p) = self.pages.get_mut(head.0 as usize) {
            p.refcount = ((u64::from(p.refcount) + u64::from(refs)) & mask) as u32;
        }
    }

    /// The `struct page` of `pfn`: a free, unreferenced page for a frame
    /// never allocated — and for a frame number outside memory (a corrupted
    /// table entry, e.g. after a workload overwrote a page table through
    /// the direct map under `KERNEL_DS`), so that its users fail cleanly
    /// instead of panicking.
    #[inline]
    #[must_use]
    pub fn page(&self, pfn: Pfn) -> &Page {
        self.pages.get(pfn.0 as usize).unwrap_or(&FREE_PAGE)
    }
    /// Sets `PG_referenced` on a page already referenced (its `struct
    /// page` exists): no growth of the array on this path.
    #[inline]
    pub fn set_referenced(&mut self, pfn: Pfn) {
        match self.pages.get_mut(pfn.0 as usize) {
            Some(p) => p.flags |= PageFlags::REFERENCED,
            None => self.page_mut(pfn).flags |= PageFlags::REFERENCED,
        }
    }

    /// Mutable `struct page` of `pfn` (for a frame outside memory, a
    /// scratch page whose changes are discarded).
    #[inline]
    pub fn page_mut(&mut self, pfn: Pfn) -> &mut Page {
        // The array never extends past memory, so a frame it covers is a
        // frame of memory: one bounds check on the common path.
        let i = pfn.0 as usize;
        if i < self.pages.len() {
            return &mut self.pages[i];
        }
        self.page_mut_beyond(pfn)
    }

    /// [`PhysMem::page_mut`] of a frame the array does not cover yet.
    #[cold]
    #[inline(never)]
    fn page_mut_beyond(&mut self, pfn: Pfn) -> &mut Page {
        if pfn.0 >= self.nr_frames {
            self.scratch = FREE_PAGE;
            return &mut self.scratch;
        }
        self.grow(pfn.0);
        &mut self.pages[pfn.0 as usize]
    }

    /// `compound_head()`.
    #[inline]
    #[must_use]
    pub fn compound_head(&self, pfn: Pfn) -> Pfn {
        let p = self.page(pfn);
        if p.flags.contains(PageFlags::TAIL) {
            Pfn(pfn.0 & !((1u64 << p.order) - 1))
        } else {
            pfn
        }
    }

    /// `get_page()` / `folio_ref_add()`: adds `refs` to the head's refcount.
    pub fn get_page(&mut self, pfn: Pfn, refs: u32) {
        let h = self.compound_head(pfn);
        self.get_head(h, refs);
    }

    /// [`PhysMem::get_page`] on a page already known to be its compound head.
    #[inline]
    pub fn get_head(&mut self, head: Pfn, refs: u32) {
        if self.wrap.is_some() {
            return self.wrap_add(head, refs);
        }
        let p = self.page_mut(head);
        p.refcount = p.refcount.saturating_add(refs);
    }

    /// `try_get_page()`-style speculative reference: fails on a free page
    /// (refcount 0), as `page_cache_get_speculative` does.
    pub fn try_get_page(&mut self, pfn: Pfn, refs: u32) -> bool {
        let h = self.compound_head(pfn);
        self.try_get_head(h, refs)
    }

    /// [`PhysMem::try_get_page`] on a page already known to be its compound head.
    #[inline]
    pub fn try_get_head(&mut self, head: Pfn, refs: u32) -> bool {
        if self.wrap.is_some() {
            // A counter wrapped to 0 looks free to a speculative get.
            if self.page(head).refcount == 0 || self.page(head).flags.contains(PageFlags::FREE) {
                return false;
            }
            self.wrap_add(head, refs);
            return true;
        }
        let p = self.page_mut(head);
        if p.refcount == 0 {
            return false;
        }
        p.refcount = p.refcount.saturating_add(refs);
        true
    }

    /// `put_page()` of `refs` references. Returns `Err(EINVAL)` on an underflow
    /// (never wraps) and frees the page when the count reaches zero.
    pub fn put_page(&mut self, pfn: Pfn, refs: u32) -> Result<(), Errno> {
        let h = self.compound_head(pfn);
        if self.wrap.is_some() {
            return self.wrap_put(h, refs);
        }
        let p = self.page_mut(h);
        if p.refcount < refs || p.flags.contains(PageFlags::FREE) {
            return Err(Errno::EINVAL);
        }
        p.refcount -= refs;
        if p.refcount == 0 && !p.flags.contains(PageFlags::RESERVED) {
            self.free(h);
        }
        Ok(())
    }

    /// [`PhysMem::put_page`] under a narrow `_refcount`: the counter drops
    /// modulo 2^W; reaching 0 frees the page, however many references are
    /// really still out (they become stale). A put on a free frame, or one
    /// more than were ever taken, is an underflow.
    #[cold]
    fn wrap_put(&mut self, h: Pfn, refs: u32) -> Result<(), Errno> {
        let Some(w) = self.wrap.as_mut() else {
            return Err(Errno::EINVAL);
        };
        let mask = (1u64 << w.bits) - 1;
        let Some(p) = self.pages.get_mut(h.0 as usize) else {
            return Err(Errno::EINVAL);
        };
        let truly = w.true_refs.get(&h.0).copied().unwrap_or(0);
        if p.flags.contains(PageFlags::FREE) || truly < u64::from(refs) {
            return Err(Errno::EINVAL);
        }
        let left = truly - u64::from(refs);
        w.true_refs.insert(h.0, left);
        p.refcount = (u64::from(p.refcount).wrapping_sub(u64::from(refs)) & mask) as u32;
        if p.refcount == 0 && !p.flags.contains(PageFlags::RESERVED) {
            if left > 0 {
                w.freed_referenced.push((h, *p, left));
                *w.stale.entry(h.0).or_default() += left;
            }
            self.free(h);
        }
        Ok(())
    }
}
