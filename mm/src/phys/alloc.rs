//! The frame allocator (`mm/page_alloc.c` reduced to what the emulator
//! needs): naturally aligned blocks of `2^order` frames from a bump pointer
//! over never-used frames and per-order free lists of recycled ones, zeroed
//! on request (`__GFP_ZERO`). No `unsafe` here: guest memory is the parent
//! module's.

use vmemu_arch::{Pfn, PhysAddr};

use super::PhysMem;
use super::page::{FREE_PAGE, Owner, Page, PageFlags};

impl PhysMem {
    /// Allocates `2^order` contiguous, naturally aligned, zeroed frames; the
    /// head gets refcount 1 and `owner`. `None` when memory is exhausted.
    pub fn alloc(&mut self, order: u8, owner: Owner) -> Option<Pfn> {
        self.alloc_pages(order, owner, true)
    }

    /// `alloc_pages()` without `__GFP_ZERO` (`alloc_page(GFP_USER)`, as
    /// `push_pipe` and `pipe_write` ask): a recycled frame keeps the bytes
    /// its previous owner left in it (the page allocator does not clear on
    /// free); a frame never allocated before reads as zero.
    pub fn alloc_uninit(&mut self, order: u8, owner: Owner) -> Option<Pfn> {
        self.alloc_pages(order, owner, false)
    }

    fn alloc_pages(&mut self, order: u8, owner: Owner, zero: bool) -> Option<Pfn> {
        let n = 1u64 << order;
        let (pfn, fresh) = if let Some(p) = self.free[order as usize].pop() {
            (p, false)
        } else {
            let start = (self.bump + n - 1) & !(n - 1);
            if start + n > self.nr_frames() {
                return None;
            }
            // Frames skipped for alignment go to the order-0 free list.
            for p in self.bump..start {
                self.free[0].push(p);
            }
            self.bump = start + n;
            (start, true)
        };
        if !fresh && !zero {
            // No byte changes, but the frame may have been a page table.
            self.tables_changed();
        } else if !fresh {
            // Only the granules written since the mapping was last all zero
            // need zeroes; the rest read as zero already, and writing them
            // would cost host pages the workload never touched.
            self.tables_changed();
            self.zero(
                PhysAddr(pfn << self.page_shift),
                (n << self.page_shift) as usize,
            )
            .ok()?;
        }
        self.grow(pfn + n - 1);
        for i in 0..n {
            let p = &mut self.pages[(pfn + i) as usize];
            *p = Page {
                order,
                owner,
                ..Page::default()
            };
            if order > 0 {
                p.flags = if i == 0 {
                    PageFlags::HEAD
                } else {
                    PageFlags::TAIL
                };
            }
        }
        self.pages[pfn as usize].refcount = 1;
        self.allocated += n;
        if let Some(w) = self.wrap.as_mut() {
            w.true_refs.insert(pfn, 1);
        }
        Some(Pfn(pfn))
    }

    /// Returns the frames of a page whose last reference went away.
    pub fn free(&mut self, head: Pfn) {
        self.tables_changed();
        let order = self.page(head).order;
        self.grow(head.0 + (1u64 << order) - 1);
        let n = 1u64 << order;
        for i in 0..n {
            self.pages[(head.0 + i) as usize] = Page {
                flags: PageFlags::FREE,
                ..Page::default()
            };
        }
        self.free[order as usize].push(head.0);
        self.allocated -= n;
        if let Some(w) = self.wrap.as_mut() {
            w.true_refs.remove(&head.0);
        }
    }

    /// Marks frame `pfn` (order 0) as allocated for `owner` without going
    /// through the free lists; used for frames reserved at boot.
    pub fn reserve(&mut self, owner: Owner) -> Option<Pfn> {
        let p = self.alloc(0, owner)?;
        self.page_mut(p).flags |= PageFlags::RESERVED;
        Some(p)
    }

    /// Whether `pfn` names a frame of guest memory.
    #[must_use]
    pub fn pfn_valid(&self, pfn: Pfn) -> bool {
        pfn.0 < self.nr_frames()
    }

    /// Makes the `struct page` array cover `pfn` (a frame of guest memory).
    #[inline]
    pub(super) fn grow(&mut self, pfn: u64) {
        if pfn as usize >= self.pages.len() {
            self.grow_to(pfn);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow_to(&mut self, pfn: u64) {
        debug_assert!(pfn < self.nr_frames, "pfn {pfn:#x} outside guest memory");
        // Never past memory, whatever a corrupted entry says.
        let pfn = pfn.min(self.nr_frames.saturating_sub(1));
        self.pages.resize(pfn as usize + 1, FREE_PAGE);
    }

    /// Frames ever handed out (the allocator's high-water mark): the frames a
    /// run has touched, whatever the size of guest memory.
    #[must_use]
    pub fn high_water(&self) -> u64 {
        self.bump
    }

    /// Every allocated head frame, in pfn order (for invariant checks).
    /// Only frames below the allocator's high-water mark are visited, so the
    /// cost follows what was ever allocated, not the size of memory.
    pub fn allocated_heads(&self) -> impl Iterator<Item = (Pfn, &Page)> {
        self.pages[..self.bump as usize]
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.flags.intersects(PageFlags::FREE | PageFlags::TAIL))
            .map(|(i, p)| (Pfn(i as u64), p))
    }
}
