//! The pipe-backed iterator, `ITER_PIPE` of v4.10's `lib/iov_iter.c`
//! (`iov_iter_pipe`, `push_pipe`, `copy_pipe_to_iter`, `pipe_zero`,
//! `copy_page_to_iter_pipe`, `pipe_advance`, `pipe_truncate`,
//! `pipe_get_pages{,_alloc}`, `iov_iter_npages`/`alignment` of a pipe) and
//! 4.11+'s `iov_iter_revert` on a pipe. 6.4 removed `ITER_PIPE`; profiles
//! without it (the knob `pipe_iter`) refuse to make one. The ring it fills
//! is [`crate::pipe`]'s; the buffers it adds carry `default_pipe_buf_ops`
//! (pages it allocates) or `page_cache_pipe_buf_ops` (zero copy), with the
//! slot's stale `flags` (see [`crate::pipe`]).

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::profile::PipeAdvanceRelease;
use vmemu_mm::{Errno, EventKind};

use crate::Sys;
use crate::get_pages::GotPages;
use crate::iov_iter::{IovIter, IterError, IterType};
use crate::pipe::BufOps;

impl<A: Arch> Sys<A> {
    /// Whether v4.10's `pipe_get_pages_alloc` keeps its result in a `size_t`
    /// (so `-EFAULT` looks positive and the array is handed back, not freed).
    /// Still so in 4.11 (HCLS/linux-4.11), fixed by 4.17 (`ssize_t`,
    /// LakshK98/linux-4.17). No knob names it; among the modelled profiles it
    /// coincides with "no `iov_iter_revert`" (v4.10).
    fn pipe_alloc_array_leaks(&self) -> bool {
        self.m.knobs.pipe_iter && !self.m.knobs.iov_iter_revert
    }

    // ------------------------------------------------------------------
    // The pipe iterator (v4.10 lib/iov_iter.c, 4.11+ revert)
    // ------------------------------------------------------------------

    /// `iov_iter_pipe(i, ITER_PIPE | READ, pipe, count)` with `count` = the
    /// free room of the ring (`(buffers - nrbufs) * PAGE_SIZE`), i.e. "as
    /// much as fits". Refused where the profile has no `ITER_PIPE` (6.4+).
    pub fn iov_iter_pipe(&mut self, pipe: usize) -> Result<IovIter, IterError> {
        let free = self
            .pipes
            .get(pipe)
            .map_or(0, |p| (p.buffers - p.nrbufs) as u64 * A::PAGE_SIZE);
        self.iov_iter_pipe_len(pipe, free)
    }

    /// `iov_iter_pipe(i, ITER_PIPE | READ, pipe, count)` with the caller's
    /// count (a splice read passes `len`). The first free slot becomes `idx`
    /// (and `start_idx`); a full pipe triggers the kernel's `WARN_ON`
    /// (recorded as a `kernel_bug` event) and the iterator is still made.
    pub fn iov_iter_pipe_len(&mut self, pipe: usize, count: u64) -> Result<IovIter, IterError> {
        if !IterType::Pipe.exists(&self.m.knobs) {
            return Err(IterError::NotInProfile("ITER_PIPE (v4.9 .. v6.4)"));
        }
        let Some(p) = self.pipes.get(pipe) else {
            return Err(IterError::Warn("iov_iter_pipe: no such pipe"));
        };
        let full = p.is_full();
        let idx = (p.curbuf + p.nrbufs) & p.mask();
        if full {
            self.m.event(
                EventKind::KernelBug,
                "iov_iter_pipe on a full pipe: WARN_ON(pipe->nrbufs == pipe->buffers)",
            );
        }
        Ok(IovIter::pipe(pipe, idx, count))
    }

    /// The pipe of a pipe iterator, or a `kernel_bug` event.
    fn iter_pipe_id(&mut self, i: &IovIter) -> Option<usize> {
        match i.pipe {
            Some(id)
                if i.ty == IterType::Pipe
                    && id < self.pipes.len()
                    && i.pipe_idx < self.pipes[id].buffers =>
            {
                Some(id)
            }
            _ => {
                self.m.event(
                    EventKind::KernelBug,
                    "pipe operation on an iterator without a valid pipe",
                );
                None
            }
        }
    }

    /// `sanity()` (PIPE_PARANOIA is on in 4.10 .. 4.17): with `iov_offset`
    /// ≠ 0 the pipe must be non-empty, `idx` its last occupied slot, and that
    /// buffer must end at `iov_offset`; with `iov_offset` = 0, `idx` must be
    /// the first free slot. A failure dumps the ring and WARNs (a
    /// `kernel_bug` event); the caller then returns 0 or `-EFAULT`.
    fn pipe_sanity(&mut self, i: &IovIter) -> Option<usize> {
        let id = self.iter_pipe_id(i)?;
        let p = &self.pipes[id];
        let next = p.curbuf + p.nrbufs;
        let ok = if i.iov_offset != 0 {
            p.nrbufs != 0 && i.pipe_idx == (next - 1) & p.mask() && {
                let b = &p.bufs[i.pipe_idx];
                u64::from(b.offset) + u64::from(b.len) == i.iov_offset
            }
        } else {
            i.pipe_idx == next & p.mask()
        };
        if ok {
            return Some(id);
        }
        let mut dump = format!(
            "pipe iterator sanity check failed (WARN_ON): idx = {}, offset = {}; curbuf = {}, nrbufs = {}, buffers = {};",
            i.pipe_idx, i.iov_offset, p.curbuf, p.nrbufs, p.buffers
        );
        for (k, b) in p.bufs.iter().enumerate() {
            dump.push_str(&format!(
                " [{k}: {} {} {} {}]",
                b.ops.name(),
                self.m.page_name(b.page),
                b.offset,
                b.len
            ));
        }
        self.m.event(EventKind::KernelBug, dump);
        None
    }

    /// `data_start`: where new bytes go — the current buffer at `iov_offset`
    /// if it is one the iterator allocated (default ops) and not full, else
    /// the next slot at offset 0.
    fn pipe_data_start(&self, id: usize, i: &IovIter) -> (usize, u64) {
        let p = &self.pipes[id];
        let (idx, off) = (i.pipe_idx, i.iov_offset);
        if off != 0 && (p.bufs[idx].ops != BufOps::Default || off == A::PAGE_SIZE) {
            (p.next_idx(idx), 0)
        } else {
            (idx, off)
        }
    }

    /// `push_pipe(i, size, &idx, &off)`: reserves up to `size` (clipped to
    /// `count`) bytes from the data start, growing the current allocated
    /// buffer and then occupying free slots with fresh pages (default ops,
    /// offset 0, `flags` **left as the slot had it**). Stops at the ring's
    /// end (the slot `curbuf` of a non-empty pipe) or when allocation fails.
    /// Returns (bytes reserved, data-start slot, data-start offset); nothing
    /// of the iterator moves.
    fn push_pipe(&mut self, id: usize, i: &IovIter, size: u64) -> (u64, usize, u64) {
        let size = size.min(i.count);
        if size == 0 {
            return (0, i.pipe_idx, i.iov_offset);
        }
        let (idx0, off0) = self.pipe_data_start(id, i);
        let mut idx = idx0;
        let mut left = size;
        if off0 != 0 {
            let room = A::PAGE_SIZE - off0;
            let p = &mut self.pipes[id];
            if size <= room {
                p.bufs[idx].len = p.bufs[idx].len.wrapping_add(size as u32);
                return (size, idx0, off0);
            }
            left -= room;
            p.bufs[idx].len = A::PAGE_SIZE as u32;
            idx = p.next_idx(idx);
        }
        loop {
            let p = &self.pipes[id];
            if idx == p.curbuf && p.nrbufs != 0 {
                break;
            }
            let Some(page) = self.pipe_alloc_page(id) else {
                break;
            };
            let inits = self.m.knobs.pipe_iter_inits_flags;
            let p = &mut self.pipes[id];
            p.nrbufs += 1;
            let b = &mut p.bufs[idx];
            b.ops = BufOps::Default;
            b.page = page;
            b.offset = 0;
            // b.flags: not initialised before 9d2231c5d74e (module docs).
            if inits {
                b.flags = 0;
            }
            if left <= A::PAGE_SIZE {
                b.len = left as u32;
                return (size, idx0, off0);
            }
            b.len = A::PAGE_SIZE as u32;
            left -= A::PAGE_SIZE;
            idx = p.next_idx(idx);
        }
        (size - left, idx0, off0)
    }

    /// Common body of `copy_pipe_to_iter` and `pipe_zero`.
    fn pipe_fill(&mut self, n: u64, src: Option<&[u8]>, i: &mut IovIter) -> u64 {
        let Some(id) = self.pipe_sanity(i) else {
            return 0;
        };
        let (bytes, mut idx, mut off) = self.push_pipe(id, i, n);
        if bytes == 0 {
            return 0;
        }
        let mut left = bytes;
        let mut done = 0usize;
        while left > 0 {
            let chunk = left.min(A::PAGE_SIZE - off);
            let pa = self.pipes[id].bufs[idx].page.addr(A::PAGE_SHIFT).add(off);
            let r = match src {
                Some(s) => self.m.phys.write(pa, &s[done..done + chunk as usize]),
                None => self.m.phys.zero(pa, chunk as usize),
            };
            if r.is_err() {
                self.m.event(
                    EventKind::KernelBug,
                    format!("pipe page at {pa} outside memory: an oops in the real kernel"),
                );
            }
            i.pipe_idx = idx;
            i.iov_offset = off + chunk;
            left -= chunk;
            done += chunk as usize;
            idx = self.pipes[id].next_idx(idx);
            off = 0;
        }
        i.count -= bytes;
        bytes
    }

    /// `copy_to_iter` on a pipe (`copy_pipe_to_iter`): sanity (failure → 0),
    /// reserve with `push_pipe`, copy slot by slot (the first chunk at the
    /// data-start offset), leaving `idx`/`iov_offset` at the end of the last
    /// chunk; `count` −= reserved. Short when the ring fills or allocation
    /// fails.
    pub fn copy_pipe_to_iter(&mut self, src: &[u8], i: &mut IovIter) -> u64 {
        self.pipe_fill(src.len() as u64, Some(src), i)
    }

    /// `iov_iter_zero` on a pipe (`pipe_zero`): as `copy_pipe_to_iter` with
    /// zeroes.
    pub fn pipe_zero(&mut self, n: u64, i: &mut IovIter) -> u64 {
        self.pipe_fill(n, None, i)
    }

    /// `copy_page_to_iter` on a pipe (`copy_page_to_iter_pipe`), zero copy:
    /// clip to `count` (0 → 0); sanity (failure → 0). If `iov_offset` ≠ 0,
    /// `offset` equals it and `page` is the current buffer's page, the
    /// buffer grows (no new reference). Otherwise the next slot (the current
    /// one when `iov_offset` = 0) is occupied with page cache ops, a
    /// `get_page` reference on `page` and the given offset/len (`flags` left
    /// as the slot had it), unless that slot is `curbuf` of a non-empty pipe
    /// (full → 0). No check that `offset + bytes` stays inside the page.
    pub fn copy_page_to_iter_pipe(
        &mut self,
        page: Pfn,
        offset: u64,
        bytes: u64,
        i: &mut IovIter,
    ) -> u64 {
        let bytes = bytes.min(i.count);
        if bytes == 0 {
            return 0;
        }
        let Some(id) = self.pipe_sanity(i) else {
            return 0;
        };
        let off = i.iov_offset;
        let mut idx = i.pipe_idx;
        let p = &mut self.pipes[id];
        if off != 0 {
            if offset == off && p.bufs[idx].page == page {
                // Merge with the last buffer.
                p.bufs[idx].len = p.bufs[idx].len.wrapping_add(bytes as u32);
                i.iov_offset += bytes;
                i.count -= bytes;
                return bytes;
            }
            idx = p.next_idx(idx);
        }
        if idx == p.curbuf && p.nrbufs != 0 {
            return 0;
        }
        p.nrbufs += 1;
        let b = &mut p.bufs[idx];
        b.ops = BufOps::PageCache;
        b.page = page;
        b.offset = offset as u32;
        b.len = bytes as u32;
        // b.flags: not initialised before 9d2231c5d74e (module docs).
        if self.m.knobs.pipe_iter_inits_flags {
            b.flags = 0;
        }
        self.m.phys.get_page(page, 1);
        i.iov_offset = offset + bytes;
        i.pipe_idx = idx;
        i.count -= bytes;
        bytes
    }

    /// `pipe_truncate`: keeps the buffers up to the iterator's position —
    /// with `iov_offset` ≠ 0 the current buffer is cut to end there — and
    /// releases every buffer after it (`nrbufs` shrinks).
    fn pipe_truncate(&mut self, id: usize, i: &IovIter) {
        let p = &mut self.pipes[id];
        if p.nrbufs == 0 {
            return;
        }
        let mut idx = i.pipe_idx;
        let mut keep = idx.wrapping_sub(p.curbuf) & p.mask();
        if i.iov_offset != 0 {
            let b = &mut p.bufs[idx];
            b.len = (i.iov_offset as u32).wrapping_sub(b.offset);
            idx = p.next_idx(idx);
            keep += 1;
        }
        while self.pipes[id].nrbufs > keep {
            self.pipe_buf_release_slot(id, idx);
            let p = &mut self.pipes[id];
            idx = p.next_idx(idx);
            p.nrbufs -= 1;
        }
    }

    /// `iov_iter_advance` on a pipe (`pipe_advance`): clip to `count`; walk
    /// from the current position through the buffer lengths to the buffer
    /// holding the new end and set `idx`/`iov_offset` there; `count` −= n;
    /// then **truncate** the pipe after the new position — also for n = 0,
    /// which is how callers discard pages a `pipe_get_pages` over-reserved.
    ///
    /// Advancing past the reserved data walks into free slots with stale
    /// lengths (a `kernel_bug` event); if every slot has length 0 the kernel
    /// loop never ends (a `soft_lockup` event, the iterator is left alone).
    ///
    /// With `pipe_advance_release = FencepostV4_9` the release is v4.9's
    /// instead of `pipe_truncate` ([`Sys::pipe_advance_v4_9`]).
    pub fn pipe_advance(&mut self, i: &mut IovIter, n: u64) {
        let Some(id) = self.iter_pipe_id(i) else {
            return;
        };
        let size = n.min(i.count);
        if size != 0 {
            let Some((idx, left)) = self.pipe_advance_walk(id, i, size) else {
                return;
            };
            if self.m.knobs.pipe_advance_release == PipeAdvanceRelease::FencepostV4_9 {
                // v4.9 cuts the buffer it lands in right away.
                self.pipes[id].bufs[idx].len = left as u32;
            }
            i.pipe_idx = idx;
            i.iov_offset = u64::from(self.pipes[id].bufs[idx].offset) + left;
        }
        i.count -= size;
        match self.m.knobs.pipe_advance_release {
            PipeAdvanceRelease::TruncateV4_10 => self.pipe_truncate(id, i),
            PipeAdvanceRelease::FencepostV4_9 => self.pipe_advance_v4_9(id, i),
        }
    }

    /// The walk of `pipe_advance`: from the current position, `size` bytes
    /// on through the buffer lengths; returns the slot holding the new end
    /// and the bytes of that buffer before it, or `None` (a `soft_lockup`
    /// event) when every slot has length 0.
    fn pipe_advance_walk(&mut self, id: usize, i: &IovIter, size: u64) -> Option<(usize, u64)> {
        let p = &self.pipes[id];
        let mut idx = i.pipe_idx;
        let mut left = size;
        if i.iov_offset != 0 {
            // Relative to the beginning of the buffer.
            left += i.iov_offset.wrapping_sub(u64::from(p.bufs[idx].offset));
        }
        let mut steps = 0usize;
        let mut stale = false;
        loop {
            let b = &p.bufs[idx];
            stale |= !p.occupied(idx);
            if left <= u64::from(b.len) {
                break;
            }
            left -= u64::from(b.len);
            idx = p.next_idx(idx);
            steps += 1;
            if steps.is_multiple_of(p.buffers) {
                let total: u64 = p.bufs.iter().map(|b| u64::from(b.len)).sum();
                if total == 0 {
                    self.m.event(
                        EventKind::SoftLockup,
                        format!(
                            "pipe_advance by {size}: every pipe slot has length 0, the walk never ends"
                        ),
                    );
                    return None;
                }
                // Skip the whole turns of the ring the kernel would walk.
                left = (left - 1) % total + 1;
            }
        }
        if stale {
            self.m.event(
                EventKind::KernelBug,
                format!(
                    "pipe_advance by {size} walked past the occupied buffers into stale slots (ended at slot {idx})"
                ),
            );
        }
        Some((idx, left))
    }

    /// v4.9's release at the end of `pipe_advance` (before b9dc6f65bc5e):
    /// start at the iterator's slot, or the one after it when `iov_offset`
    /// ≠ 0, and release buffers until reaching the first free slot, `unused`
    /// = (`curbuf` + `nrbufs`) mod `buffers`. That stop test cannot tell
    /// "nothing after the position" from "the whole ring after it": on a
    /// **full** pipe `unused` is `curbuf`, so an advance by 0 of an
    /// iterator that started on the empty pipe (at `curbuf`) and filled it
    /// releases **nothing** (CVE-2017-5550). A walk that would take `nrbufs`
    /// below 0 (an iterator outside the occupied slots) is a `kernel_bug`.
    fn pipe_advance_v4_9(&mut self, id: usize, i: &IovIter) {
        let p = &self.pipes[id];
        if p.nrbufs == 0 {
            return;
        }
        let mut idx = i.pipe_idx;
        if i.iov_offset != 0 {
            idx = p.next_idx(idx);
        }
        let unused = (p.curbuf + p.nrbufs) & p.mask();
        while idx != unused {
            if self.pipes[id].nrbufs == 0 {
                self.m.event(
                    EventKind::KernelBug,
                    "pipe_advance (v4.9) releases past the occupied slots: nrbufs wraps",
                );
                return;
            }
            self.pipe_buf_release_slot(id, idx);
            let p = &mut self.pipes[id];
            idx = p.next_idx(idx);
            p.nrbufs -= 1;
        }
    }

    /// `iov_iter_revert` on a pipe (4.11+; `count` was already increased by
    /// the caller): walk back from the current position through the buffers
    /// towards `start_idx`; landing exactly on the start of `start_idx`'s
    /// buffer gives offset 0 there; then truncate after the new position
    /// (releasing the reverted buffers).
    ///
    /// Reverting more than was written walks back past `start_idx` into
    /// buffers that are not the iterator's (a `kernel_bug` event; the walk is
    /// bounded to one turn of the ring).
    pub fn pipe_revert(&mut self, i: &mut IovIter, n: u64) {
        let Some(id) = self.iter_pipe_id(i) else {
            return;
        };
        let p = &self.pipes[id];
        let mut idx = i.pipe_idx;
        let mut off = i.iov_offset;
        let mut unroll = n;
        let mut past_start = false;
        let mut steps = 0usize;
        loop {
            let boff = u64::from(p.bufs[idx].offset);
            let Some(k) = off.checked_sub(boff) else {
                past_start = true;
                off = 0;
                break;
            };
            if unroll < k {
                off -= unroll;
                break;
            }
            unroll -= k;
            if unroll == 0 && idx == i.pipe_start_idx {
                off = 0;
                break;
            }
            if idx == i.pipe_start_idx {
                past_start = true;
            }
            steps += 1;
            if steps > p.buffers {
                break;
            }
            idx = if idx == 0 { p.buffers - 1 } else { idx - 1 };
            off = u64::from(p.bufs[idx].offset) + u64::from(p.bufs[idx].len);
        }
        if past_start {
            self.m.event(
                EventKind::KernelBug,
                format!("iov_iter_revert by {n} on a pipe walks back past start_idx"),
            );
        }
        i.iov_offset = off;
        i.pipe_idx = idx;
        self.pipe_truncate(id, i);
    }

    /// `iov_iter_alignment` of a pipe: `count`, OR'd with `iov_offset` when
    /// `count` ≠ 0, `iov_offset` ≠ 0 and the current buffer is one the
    /// iterator allocated (default ops).
    pub fn pipe_alignment(&mut self, i: &IovIter) -> u64 {
        let size = i.count;
        let Some(id) = self.iter_pipe_id(i) else {
            return size;
        };
        if size != 0 && i.iov_offset != 0 && self.pipes[id].bufs[i.pipe_idx].ops == BufOps::Default
        {
            return size | i.iov_offset;
        }
        size
    }

    /// Ring slots usable from the data start: "some of this one + all after
    /// this one" = ((curbuf − start − 1) mod buffers) + 1 (all of them when
    /// the pipe is empty — and also when it is full and the data start is
    /// `curbuf`).
    fn pipe_slots_from(&self, id: usize, start_idx: usize) -> u64 {
        let p = &self.pipes[id];
        ((p.curbuf.wrapping_sub(start_idx).wrapping_sub(1) & p.mask()) + 1) as u64
    }

    /// `iov_iter_npages` of a pipe (the caller handles `count` = 0 and caps at
    /// `maxpages`): sanity (failure → 0), then the usable slots from the data
    /// start.
    pub fn pipe_npages(&mut self, i: &IovIter) -> u64 {
        let Some(id) = self.pipe_sanity(i) else {
            return 0;
        };
        let (idx, _) = self.pipe_data_start(id, i);
        self.pipe_slots_from(id, idx)
    }

    /// `__pipe_get_pages`: reserve with `push_pipe`; nothing reserved →
    /// `-EFAULT`; else one reference (the caller's) on every page covering
    /// `[start, start + reserved)` from the data-start slot.
    fn pipe_get_pages_inner(
        &mut self,
        id: usize,
        i: &IovIter,
        maxsize: u64,
    ) -> Result<GotPages, Errno> {
        let (n, mut idx, start) = self.push_pipe(id, i, maxsize);
        if n == 0 {
            return Err(Errno::EFAULT);
        }
        let npages = (n + start).div_ceil(A::PAGE_SIZE);
        let mut pages = Vec::with_capacity(npages as usize);
        for _ in 0..npages {
            let page = self.pipes[id].bufs[idx].page;
            self.m.get_page_held(page);
            pages.push(page);
            idx = self.pipes[id].next_idx(idx);
        }
        Ok(GotPages {
            bytes: n,
            pages,
            start,
            pinned: false,
        })
    }

    /// v4.10 `pipe_get_pages(i, pages, maxsize, maxpages, &start)` (the caller
    /// has clipped `maxsize` to `count`): 0 → 0; sanity (failure →
    /// `-EFAULT`); data start; capacity = min(usable slots, maxpages) ×
    /// PAGE_SIZE − start; reserve min(maxsize, capacity) with `push_pipe`
    /// (nothing → `-EFAULT`, e.g. a full pipe whose data start is `curbuf`);
    /// one reference per page of the reserved range. The iterator does
    /// **not** move: callers follow with `iov_iter_advance(actual)`, which
    /// truncates what they did not use.
    ///
    /// `maxpages` = 0 with a non-zero start makes the capacity wrap (size_t)
    /// and the pages overflow the caller's array (a `kernel_bug` event).
    pub fn pipe_get_pages(
        &mut self,
        i: &IovIter,
        maxsize: u64,
        maxpages: u64,
    ) -> Result<GotPages, Errno> {
        if maxsize == 0 {
            return Ok(GotPages::default());
        }
        let Some(id) = self.pipe_sanity(i) else {
            return Err(Errno::EFAULT);
        };
        let (idx, start) = self.pipe_data_start(id, i);
        let npages = self.pipe_slots_from(id, idx);
        let capacity = npages
            .min(maxpages)
            .wrapping_mul(A::PAGE_SIZE)
            .wrapping_sub(start);
        let g = self.pipe_get_pages_inner(id, i, maxsize.min(capacity))?;
        if g.pages.len() as u64 > maxpages {
            self.m.event(
                EventKind::KernelBug,
                format!(
                    "pipe_get_pages stored {} pages into an array of {maxpages}",
                    g.pages.len()
                ),
            );
        }
        Ok(g)
    }

    /// v4.10 `pipe_get_pages_alloc(i, &pages, maxsize, &start)`: as
    /// [`Sys::pipe_get_pages`] with no page cap (the array is sized to the
    /// usable slots, or to the pages `maxsize` needs).
    ///
    /// v4.10 (and 4.11) keep the result in a `size_t`, so `-EFAULT` from a
    /// full pipe compares as "> 0": the array is stored into the caller's
    /// pointer instead of freed, and `-EFAULT` is returned; the pipe callers
    /// (`default_file_splice_read`, ceph's sync read) turn any result ≤ 0
    /// into `-ENOMEM` without freeing it. That leaks the page-pointer array
    /// (an allocation, **not** a page reference: no page was taken). The
    /// model counts it in [`Pipe::leaked_page_arrays`]; 4.17 is fixed.
    pub fn pipe_get_pages_alloc(&mut self, i: &IovIter, maxsize: u64) -> Result<GotPages, Errno> {
        let maxsize = maxsize.min(i.count);
        if maxsize == 0 {
            return Ok(GotPages::default());
        }
        let Some(id) = self.pipe_sanity(i) else {
            return Err(Errno::EFAULT);
        };
        let (idx, start) = self.pipe_data_start(id, i);
        let npages = self.pipe_slots_from(id, idx);
        let room = npages * A::PAGE_SIZE - start;
        let r = self.pipe_get_pages_inner(id, i, maxsize.min(room));
        if r == Err(Errno::EFAULT) && self.pipe_alloc_array_leaks() {
            self.pipes[id].leaked_page_arrays += 1;
        }
        r
    }
}
