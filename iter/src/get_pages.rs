//! Page gathering: v4.10 `iov_iter_get_pages{,_alloc}`, Jeff Layton's
//! stitched `iov_iter_get_pages_alloc` (as posted in the thread, and as its
//! commit message intends), the modern advancing forms and
//! `iov_iter_extract_pages`, Al Viro's `iov_iter_for_each_page` and Christoph
//! Hellwig's "fill a bio_vec array".
//!
//! Every page returned carries one reference (or pin) owned by the caller,
//! recorded in the machine's ledger, except where the kernel takes none
//! (`iov_iter_extract_pages` on kernel-backed iterators).

use vmemu_arch::{Arch, Pfn, VirtAddr};
use vmemu_mm::profile::GetPagesAlloc;
use vmemu_mm::{Errno, EventKind, GupFlags};

use crate::Sys;
use crate::iov_iter::{Dir, IovIter, IterType, MAX_RW_COUNT, Piece};

/// What a get_pages call returns: the byte count, the pages and `*start`
/// (the offset of the first byte in the first page).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct GotPages {
    /// Bytes covered.
    pub bytes: u64,
    /// The pages, in order.
    pub pages: Vec<Pfn>,
    /// Offset of the data in the first page.
    pub start: u64,
    /// Whether the pages are pinned (FOLL_PIN) rather than referenced.
    pub pinned: bool,
}

fn gup_write(i: &IovIter) -> GupFlags {
    // The iterator is a destination (READ): the pages will be written.
    if i.dir == Dir::Read {
        GupFlags::FOLL_WRITE
    } else {
        GupFlags::empty()
    }
}

impl<A: Arch> Sys<A> {
    /// Counts one gathering call and the pages it returned.
    fn count_gather(&mut self, r: Result<GotPages, Errno>) -> Result<GotPages, Errno> {
        self.gather.calls += 1;
        if let Ok(g) = &r {
            self.gather.pages += g.pages.len() as u64;
        }
        r
    }

    /// The first non-empty piece within `maxsize` (v4.10 step 2).
    fn first_piece(&mut self, i: &IovIter, maxsize: u64) -> Option<Piece> {
        if i.ty.has_segments() {
            // The segment walk has no side effects for these kinds: stop at
            // the first piece instead of walking all of `maxsize`.
            return i.iov_pieces(maxsize).next();
        }
        let mut first = None;
        i.iterate(&mut self.m, maxsize, &mut |_, p, _| {
            if first.is_none() && !p.is_empty() {
                first = Some(p);
            }
            0
        });
        first
    }

    /// Puts every page of `pages` (unwinding a failed gather).
    fn put_pages(&mut self, pages: &[Pfn]) {
        for &p in pages {
            let _ = self.m.put_page(p);
        }
    }

    /// v4.10 `iov_iter_get_pages(i, pages, maxsize, maxpages, &start)`: the
    /// first non-empty segment only; the iterator is not advanced.
    pub fn iov_iter_get_pages(
        &mut self,
        i: &IovIter,
        maxsize: u64,
        maxpages: u64,
    ) -> Result<GotPages, Errno> {
        let r = self.get_pages_first_segment(i, maxsize, Some(maxpages));
        self.count_gather(r)
    }

    fn get_pages_first_segment(
        &mut self,
        i: &IovIter,
        maxsize: u64,
        maxpages: Option<u64>,
    ) -> Result<GotPages, Errno> {
        let maxsize = maxsize.min(i.count);
        if i.ty == IterType::Pipe {
            return match maxpages {
                Some(mp) => self.pipe_get_pages(i, maxsize, mp),
                None => self.pipe_get_pages_alloc(i, maxsize),
            };
        }
        let Some(p) = self.first_piece(i, maxsize) else {
            return Ok(GotPages::default());
        };
        match p {
            Piece::User { addr, len } => {
                let start = addr.offset_in(A::PAGE_SIZE);
                let mut len = len + start;
                if let Some(mp) = maxpages {
                    len = len.min(mp.saturating_mul(A::PAGE_SIZE));
                }
                let n = len.div_ceil(A::PAGE_SIZE);
                let mut pages = Vec::new();
                let res = self.m.get_user_pages_fast(
                    addr.align_down(A::PAGE_SIZE),
                    n as i64,
                    gup_write(i),
                    &mut pages,
                )?;
                let covered = if res == n { len } else { res * A::PAGE_SIZE };
                if covered < start {
                    // maxpages = 0: no page and nothing covered, yet *start*
                    // is still subtracted; the ssize_t result is -start,
                    // which callers take for an errno.
                    return Err(Errno((start - covered) as i32));
                }
                Ok(GotPages {
                    bytes: covered - start,
                    pages,
                    start,
                    pinned: false,
                })
            }
            Piece::Page { pfn, offset, len } => {
                // maxpages is ignored for a bvec: one page.
                self.m.get_page_held(pfn);
                Ok(GotPages {
                    bytes: len,
                    pages: vec![pfn],
                    start: offset,
                    pinned: false,
                })
            }
            Piece::Kernel { .. } => Err(Errno::EFAULT),
        }
    }

    /// `iov_iter_get_pages_alloc(i, &pages, maxsize, &start)` as the profile
    /// has it: v4.10 (first segment, no page cap), or Layton's patch as
    /// posted, or the rule its commit message states.
    pub fn iov_iter_get_pages_alloc(
        &mut self,
        i: &IovIter,
        maxsize: u64,
    ) -> Result<GotPages, Errno> {
        let r = match self.m.knobs.get_pages_alloc {
            GetPagesAlloc::FirstSegment => self.get_pages_first_segment(i, maxsize, None),
            GetPagesAlloc::LaytonPosted => self.get_pages_alloc_layton(i, maxsize, false),
            GetPagesAlloc::LaytonIntended => self.get_pages_alloc_layton(i, maxsize, true),
        };
        self.count_gather(r)
    }

    /// Layton's `iov_iter_pvec_size`: as posted, a piece is added when it is
    /// the first, or when the last *added* piece ended page-aligned and this
    /// one starts page-aligned; a piece that is not added changes nothing
    /// and the walk goes on. `intended` stops at the first such piece.
    pub fn iov_iter_pvec_size(&mut self, i: &IovIter, intended: bool) -> u64 {
        if i.count == 0 {
            return 0;
        }
        if i.ty == IterType::Pipe {
            return i.count;
        }
        let mut size = 0u64;
        let mut first = true;
        let mut contig = false;
        let mut stopped = false;
        i.iterate(&mut self.m, i.count, &mut |_, p, _| {
            if stopped {
                return 0;
            }
            let (start, end) = match p {
                Piece::User { addr, len } | Piece::Kernel { addr, len } => (addr.0, addr.0 + len),
                Piece::Page { offset, len, .. } => (offset, offset + len),
            };
            if first || (contig && start % A::PAGE_SIZE == 0) {
                size += p.len();
                first = false;
                contig = end % A::PAGE_SIZE == 0;
            } else if intended {
                stopped = true;
            }
            0
        });
        size
    }

    fn get_pages_alloc_layton(
        &mut self,
        i: &IovIter,
        maxsize: u64,
        intended: bool,
    ) -> Result<GotPages, Errno> {
        if i.ty == IterType::Pipe {
            return self.pipe_get_pages(i, maxsize, u64::MAX);
        }
        let maxsize = self.iov_iter_pvec_size(i, intended).min(maxsize);
        // As posted, the array holds ceil(maxsize / PAGE_SIZE) entries: the
        // first piece's in-page offset is left out, so an unaligned first
        // piece that needs one more page fails with -EFAULT below. The
        // intended rule (an unaligned first base is allowed) counts it.
        let lead = match (intended, self.first_piece(i, maxsize)) {
            (true, Some(Piece::User { addr, .. })) => addr.offset_in(A::PAGE_SIZE),
            (true, Some(Piece::Page { offset, .. })) => offset,
            _ => 0,
        };
        let npages = (maxsize + lead).div_ceil(A::PAGE_SIZE);
        let mut pages: Vec<Pfn> = Vec::new();
        let mut len = 0u64;
        let mut start = 0u64;
        let mut first = true;
        let mut res: Result<(), Errno> = Ok(());
        let write = gup_write(i);
        let pieces = i.pieces(&mut self.m, maxsize);
        for p in pieces {
            match p {
                Piece::User { addr, len: plen } => {
                    let mut slen = plen;
                    let mut this_start = 0;
                    if first {
                        start = addr.offset_in(A::PAGE_SIZE);
                        slen += start;
                        this_start = start;
                        first = false;
                    }
                    let n = slen.div_ceil(A::PAGE_SIZE);
                    if pages.len() as u64 + n > npages {
                        // "Did something change the iov array?!?"
                        res = Err(Errno::EFAULT);
                        break;
                    }
                    let before = pages.len();
                    let r = self.m.get_user_pages_fast(
                        VirtAddr(addr.0 & !(A::PAGE_SIZE - 1)),
                        n as i64,
                        write,
                        &mut pages,
                    );
                    let got = match r {
                        Ok(g) => g,
                        Err(e) => {
                            res = Err(e);
                            break;
                        }
                    };
                    debug_assert_eq!(pages.len() - before, got as usize);
                    // As posted, `start` is subtracted for every piece; the
                    // intended rule subtracts it once.
                    let sub = if intended { this_start } else { start };
                    // size_t arithmetic, as in the kernel: a later piece
                    // shorter than `start` (an unaligned one the sizing
                    // skipped) takes the total down modulo 2^64 instead of
                    // failing; the array check on the next piece usually
                    // ends such a walk with -EFAULT.
                    let covered = if got == n { slen } else { got * A::PAGE_SIZE };
                    len = len.wrapping_add(covered.wrapping_sub(sub));
                    if intended && got < n {
                        // As posted, a short gup does not stop the walk: the
                        // next piece's pages follow at the slot where the
                        // missing ones belong, and the array no longer maps
                        // the iterator's first `len` bytes. The intended
                        // rule (one contiguous run) ends the batch here.
                        break;
                    }
                }
                Piece::Page {
                    pfn,
                    offset,
                    len: plen,
                } => {
                    if first {
                        start = offset;
                        first = false;
                    }
                    self.m.get_page_held(pfn);
                    pages.push(pfn);
                    len += plen;
                    if pages.len() as u64 > npages {
                        self.m.event(
                            EventKind::KernelBug,
                            "iov_iter_get_pages_alloc: BUG_ON(pc > p + npages) for a bvec",
                        );
                        res = Err(Errno::EFAULT);
                        break;
                    }
                }
                Piece::Kernel { .. } => {
                    res = Err(Errno::EFAULT);
                    break;
                }
            }
        }
        if let Err(e) = res {
            let taken = std::mem::take(&mut pages);
            self.put_pages(&taken);
            return Err(e);
        }
        if (len as i64) < 0 {
            // A total that ends below zero is returned as a negative ssize_t
            // with the array handed over: every caller takes it for an
            // errno and never puts the pages, whose references stay held.
            return Err(Errno(
                i32::try_from((len as i64).unsigned_abs()).unwrap_or(i32::MAX),
            ));
        }
        Ok(GotPages {
            bytes: len,
            pages,
            start,
            pinned: false,
        })
    }

    /// The user-memory branch shared by 6.x `iov_iter_get_pages2` and
    /// `iov_iter_extract_pages` (`first_iovec_segment`, then
    /// `get_user_pages_fast` or, when extracting, `pin_user_pages_fast`;
    /// nothing taken → 0; else advance by the bytes the pages cover).
    fn first_user_segment_pages(
        &mut self,
        i: &mut IovIter,
        maxsize: u64,
        maxpages: u64,
        pin: bool,
    ) -> Result<GotPages, Errno> {
        let Some(Piece::User { addr, len }) = self.first_piece(i, maxsize) else {
            return Ok(GotPages::default());
        };
        let start = addr.offset_in(A::PAGE_SIZE);
        let n = (start + len).div_ceil(A::PAGE_SIZE).min(maxpages);
        let mut pages = Vec::new();
        let base = addr.align_down(A::PAGE_SIZE);
        let res = if pin {
            self.m
                .pin_user_pages_fast(base, n as i64, gup_write(i), &mut pages)?
        } else {
            self.m
                .get_user_pages_fast(base, n as i64, gup_write(i), &mut pages)?
        };
        if res == 0 {
            return Ok(GotPages::default());
        }
        let bytes = len.min(res * A::PAGE_SIZE - start);
        self.iov_iter_advance(i, bytes);
        Ok(GotPages {
            bytes,
            pages,
            start,
            pinned: pin,
        })
    }

    /// 6.x `iov_iter_get_pages2`: like v4.10 but clipped to `MAX_RW_COUNT`,
    /// multi-page bvec elements give several pages, and the iterator
    /// **advances** by the bytes returned.
    pub fn iov_iter_get_pages2(
        &mut self,
        i: &mut IovIter,
        maxsize: u64,
        maxpages: u64,
    ) -> Result<GotPages, Errno> {
        let r = self.get_pages2(i, maxsize, maxpages);
        self.count_gather(r)
    }

    fn get_pages2(
        &mut self,
        i: &mut IovIter,
        maxsize: u64,
        maxpages: u64,
    ) -> Result<GotPages, Errno> {
        if maxpages == 0 {
            return Ok(GotPages::default());
        }
        let maxsize = maxsize.min(i.count).min(MAX_RW_COUNT);
        if maxsize == 0 {
            return Ok(GotPages::default());
        }
        match i.ty {
            IterType::Iovec | IterType::Ubuf => {
                self.first_user_segment_pages(i, maxsize, maxpages, false)
            }
            IterType::Bvec => {
                // 6.13 `__iov_iter_get_pages_alloc`, bvec branch (unchanged
                // in mainline): `first_bvec_segment` takes the current
                // element as it is, empty or not (`first_iovec_segment`
                // skips empty ones), and `want_pages_array` sizes the array
                // from DIV_ROUND_UP(size + start, PAGE_SIZE).
                let Some(bv) = i.bvec.get(i.idx).copied() else {
                    return Ok(GotPages::default());
                };
                let size = maxsize.min(u64::from(bv.len) - i.iov_offset);
                let skip = i.iov_offset + u64::from(bv.offset);
                let page = Pfn(bv.page.0 + skip / A::PAGE_SIZE);
                let start = skip % A::PAGE_SIZE;
                let n = (start + size).div_ceil(A::PAGE_SIZE).min(maxpages);
                if n == 0 {
                    // An empty current element at a page boundary:
                    // want_pages_array() sizes a 0-entry array (its
                    // WARN_ON(!count)) → -ENOMEM, the iterator untouched.
                    return Err(Errno::ENOMEM);
                }
                let mut pages = Vec::new();
                for k in 0..n {
                    self.m.get_page_held(Pfn(page.0 + k));
                    pages.push(Pfn(page.0 + k));
                }
                let bytes = size.min(n * A::PAGE_SIZE - start);
                if bytes == 0 {
                    // An empty element inside a page: one slot, one
                    // reference, 0 bytes. Callers count pages from the
                    // bytes (and `_alloc2` kvfree()s the array on <= 0),
                    // so nobody puts this reference.
                    let name = self.m.page_name(page);
                    self.m.event(
                        EventKind::EmptyBvecPageRef,
                        format!(
                            "__iov_iter_get_pages_alloc: bvec element {} is empty (offset {start:#x} in {name}); 0 bytes returned with a reference on {name} that no caller puts",
                            i.idx
                        ),
                    );
                }
                // The kernel's own bookkeeping, not iov_iter_advance(): it
                // steps over the current element only when it is used up,
                // and never over the empty elements after it.
                i.count -= bytes;
                i.iov_offset += bytes;
                if i.iov_offset == u64::from(bv.len) {
                    i.iov_offset = 0;
                    i.idx += 1;
                    i.nr_segs -= 1;
                }
                Ok(GotPages {
                    bytes,
                    pages,
                    start,
                    pinned: false,
                })
            }
            IterType::Pipe => {
                let g = self.pipe_get_pages(i, maxsize, maxpages)?;
                self.iov_iter_advance(i, g.bytes);
                Ok(g)
            }
            IterType::Kvec | IterType::Discard => Err(Errno::EFAULT),
        }
    }

    /// 6.x `iov_iter_get_pages_alloc2` (no page cap).
    pub fn iov_iter_get_pages_alloc2(
        &mut self,
        i: &mut IovIter,
        maxsize: u64,
    ) -> Result<GotPages, Errno> {
        let r = self.get_pages2(i, maxsize, u64::MAX / A::PAGE_SIZE);
        self.count_gather(r)
    }

    /// 6.13 `iov_iter_extract_pages(i, &pages, maxsize, maxpages, 0, &offset0)`:
    /// user memory is **pinned** (FOLL_PIN); KVEC pages are looked up with no
    /// reference; BVEC pieces are collected while the previous piece ended at
    /// its page end and the next starts at offset 0, with no reference.
    /// Always advances.
    pub fn iov_iter_extract_pages(
        &mut self,
        i: &mut IovIter,
        maxsize: u64,
        maxpages: u64,
    ) -> Result<GotPages, Errno> {
        let r = self.extract_pages(i, maxsize, maxpages);
        self.count_gather(r)
    }

    fn extract_pages(
        &mut self,
        i: &mut IovIter,
        maxsize: u64,
        maxpages: u64,
    ) -> Result<GotPages, Errno> {
        let maxsize = maxsize.min(i.count).min(MAX_RW_COUNT);
        if maxsize == 0 || maxpages == 0 {
            return Ok(GotPages::default());
        }
        match i.ty {
            IterType::Iovec | IterType::Ubuf => {
                self.first_user_segment_pages(i, maxsize, maxpages, true)
            }
            IterType::Kvec => {
                let Some(Piece::Kernel { addr, len }) = self.first_piece(i, maxsize) else {
                    return Ok(GotPages::default());
                };
                let start = addr.offset_in(A::PAGE_SIZE);
                let n = (start + len).div_ceil(A::PAGE_SIZE).min(maxpages);
                let mut pages = Vec::new();
                for k in 0..n {
                    let va = VirtAddr(addr.0 - start + k * A::PAGE_SIZE);
                    match self.m.kernel_pa(va) {
                        Some(pa) => pages.push(pa.pfn(A::PAGE_SHIFT)),
                        None => return Err(Errno::EFAULT),
                    }
                }
                let bytes = len.min(n * A::PAGE_SIZE - start);
                self.iov_iter_advance(i, bytes);
                Ok(GotPages {
                    bytes,
                    pages,
                    start,
                    pinned: false,
                })
            }
            IterType::Bvec => {
                if i.nr_segs == 0 {
                    return Ok(GotPages::default());
                }
                if i.bvec
                    .get(i.idx)
                    .is_some_and(|b| i.iov_offset == u64::from(b.len))
                {
                    i.iov_offset = 0;
                    i.nr_segs -= 1;
                    i.idx += 1;
                }
                let mut k = i.clone();
                k.count = maxsize;
                let mut pages = Vec::new();
                let mut start = 0u64;
                let mut size = 0u64;
                let mut stop = false;
                k.iterate(&mut self.m, maxsize, &mut |_, p, _| {
                    if stop {
                        return p.len();
                    }
                    let Piece::Page { pfn, offset, len } = p else {
                        return p.len();
                    };
                    if pages.is_empty() {
                        start = offset;
                    } else if offset != 0 {
                        stop = true;
                        return len;
                    }
                    pages.push(pfn);
                    size += len;
                    if pages.len() as u64 >= maxpages || offset + len != A::PAGE_SIZE {
                        stop = true;
                    }
                    0
                });
                self.iov_iter_advance(i, size);
                Ok(GotPages {
                    bytes: size,
                    pages,
                    start,
                    pinned: false,
                })
            }
            IterType::Pipe | IterType::Discard => Err(Errno::EFAULT),
        }
    }

    /// Releases what a get_pages call returned (put_page or unpin per page;
    /// nothing for extraction results that took no reference).
    pub fn release_pages(&mut self, g: &GotPages, took_refs: bool) {
        if !took_refs {
            return;
        }
        for &p in &g.pages {
            let _ = if g.pinned {
                self.m.unpin_user_page(p)
            } else {
                self.m.put_page(p)
            };
        }
    }

    /// Al Viro's proposed `iov_iter_for_each_page(iter, size, f, data)`:
    /// gathers pages into a fixed batch of `batch` entries with
    /// `iov_iter_get_pages`, calls `f(page, from, len)` for each page
    /// subrange — never with `mmap_sem` held (checked) — and advances the
    /// iterator. `f` receives the page's reference; if it returns false the
    /// walk stops and only the references not handed out are dropped. KVEC
    /// pages are looked up in the kernel's tables and carry no reference.
    /// Returns the bytes handed to `f`, or the first error if none.
    pub fn iov_iter_for_each_page(
        &mut self,
        i: &mut IovIter,
        size: u64,
        batch: u64,
        f: &mut dyn FnMut(&mut Self, Pfn, u64, u64) -> bool,
    ) -> Result<u64, Errno> {
        let mut left = size.min(i.count);
        let mut done = 0u64;
        if i.ty == IterType::Kvec {
            // Kernel memory has no pages to get: look each page up (no
            // reference is taken, none is handed to f).
            let pieces = i.pieces(&mut self.m, left);
            let mut bytes = 0u64;
            'outer: for p in pieces {
                let Piece::Kernel { addr, len } = p else {
                    continue;
                };
                let mut off = 0u64;
                while off < len {
                    let va = addr.wrapping_add(off);
                    let chunk = (A::PAGE_SIZE - va.offset_in(A::PAGE_SIZE)).min(len - off);
                    let Some(pa) = self.m.kernel_pa(va) else {
                        break 'outer;
                    };
                    let go_on = f(
                        self,
                        pa.pfn(A::PAGE_SHIFT),
                        va.offset_in(A::PAGE_SIZE),
                        chunk,
                    );
                    bytes += chunk;
                    off += chunk;
                    if !go_on {
                        break 'outer;
                    }
                }
            }
            self.iov_iter_advance(i, bytes);
            return Ok(bytes);
        }
        while left > 0 {
            let g = match self.iov_iter_get_pages(i, left, batch) {
                Ok(g) if g.bytes > 0 => g,
                Ok(_) => break,
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            };
            let mm = self.m.current_mm();
            let mut off = g.start;
            let mut rem = g.bytes;
            let mut used = 0usize;
            let mut stopped = false;
            let mut bytes = 0u64;
            for (k, &p) in g.pages.iter().enumerate() {
                if rem == 0 {
                    break;
                }
                let len = rem.min(A::PAGE_SIZE - off);
                if self.m.holds_mmap_sem(mm) {
                    self.m.event(
                        EventKind::KernelBug,
                        "iov_iter_for_each_page callback called with mmap_sem held",
                    );
                }
                used = k + 1;
                let go_on = f(self, p, off, len);
                bytes += len;
                rem -= len;
                off = 0;
                if !go_on {
                    stopped = true;
                    break;
                }
            }
            // References of pages never handed to f are dropped.
            let unused: Vec<Pfn> = g.pages[used..].to_vec();
            self.put_pages(&unused);
            self.iov_iter_advance(i, bytes);
            done += bytes;
            left -= bytes.min(left);
            if stopped {
                break;
            }
        }
        Ok(done)
    }

    /// Christoph Hellwig's suggestion: fill a caller-provided (possibly
    /// on-stack, fixed-size) bio_vec array from the iterator, with no
    /// allocation; each bvec holds one page reference. Advances the iterator
    /// and returns (bvecs filled, bytes).
    pub fn iov_iter_fill_bvecs(
        &mut self,
        i: &mut IovIter,
        bvecs: &mut [crate::BioVec],
        maxsize: u64,
    ) -> Result<(usize, u64), Errno> {
        let mut n = 0usize;
        let mut bytes = 0u64;
        let mut left = maxsize.min(i.count);
        while n < bvecs.len() && left > 0 {
            let g = match self.iov_iter_get_pages(i, left, (bvecs.len() - n) as u64) {
                Ok(g) if g.bytes > 0 => g,
                Ok(_) => break,
                Err(e) => return if n > 0 { Ok((n, bytes)) } else { Err(e) },
            };
            let mut off = g.start;
            let mut rem = g.bytes;
            for &p in &g.pages {
                let len = rem.min(A::PAGE_SIZE - off);
                bvecs[n] = crate::BioVec {
                    page: p,
                    len: len as u32,
                    offset: off as u32,
                };
                n += 1;
                rem -= len;
                off = 0;
            }
            self.iov_iter_advance(i, g.bytes);
            bytes += g.bytes;
            left -= g.bytes.min(left);
        }
        Ok((n, bytes))
    }
}
