//! ceph O_DIRECT (`fs/ceph/file.c` `ceph_direct_read_write`) and the splice
//! soft lockup of the thread.
//!
//! **v4.10–v4.16.** Per OSD request: `dio_get_pagev_size(iter)` sums the
//! current segment (less `iov_offset`) and every following one while the
//! previous ends page-aligned and the next starts page-aligned; the OSD
//! request shrinks that to the object extent (`ceph_calc_file_object_mapping`;
//! 4 MiB objects, one stripe); `dio_get_pages_alloc(iter, len)` copies the
//! iterator, computes `align` = (first base + `iov_offset`) mod `PAGE_SIZE`
//! and `npages` = `calc_pages_for(align, len)`, allocates the array and loops
//! **while idx < npages**: `iov_iter_get_pages(copy, pages + idx, nbytes,
//! npages - idx, &start)`, advance the copy, `nbytes -= ret`,
//! `idx += ceil((ret + start) / PAGE_SIZE)`. Both helpers read the
//! iterator's union through the **iovec view** (`it->iov`) whatever the
//! iterator's type.
//!
//! `splice()` into an O_DIRECT ceph file goes through
//! `iter_file_splice_write`, which hands `->write_iter` an **ITER_BVEC**
//! iterator over the pipe buffers. Read as an iovec, a `bio_vec`'s base is its
//! `struct page *` (64-byte aligned, rarely page-aligned) and its length the
//! 64-bit word holding `bv_len` and `bv_offset` (`bv_len | bv_offset << 32`
//! on little-endian x86-64/arm64, `bv_len << 32 | bv_offset` on big-endian
//! powerpc64). With an unaligned page-struct address, `npages` counts one
//! page more than the bvec provides: after the last real page `nbytes` is 0,
//! `iov_iter_get_pages` clips `maxsize` to 0 and returns 0 without writing
//! `start` (declared in the loop body without an initialiser: the stack slot
//! keeps the previous value, 0 for a bvec at offset 0), `idx` does not move
//! and the loop — which never sleeps — spins: a soft lockup. The model runs
//! the loop and stops it after [`super::WATCHDOG_BUDGET`] iterations
//! without progress, raises a `soft_lockup` event naming the loop, and
//! unwinds: the kernel would spin forever holding the references gathered so
//! far; the emulator puts them (as the failure path's
//! `ceph_put_page_vector` would) so the run's ledger balances, and the
//! syscall reports `-EDEADLK`, vmemu's stand-in for "never returns".
//!
//! **v4.10+layton.** Jeff Layton's 2/2 (never merged; its code was not
//! available) replaced both helpers with his stitched
//! `iov_iter_get_pages_alloc`; modelled as its title and the 1/2 message
//! describe: one `iov_iter_get_pages_alloc(iter, len)` per OSD request.
//!
//! **v4.17+.** The request size is min(count, `wsize`), clipped to the object;
//! `iter_get_bvecs_alloc` sizes a zeroed bvec array by
//! `iov_iter_npages(truncated iter)` and fills it with
//! `iov_iter_get_pages(iter, pages, maxsize - size, 64, &start)` batches
//! (`ITER_GET_BVECS_PAGES`), advancing each time (6.x:
//! `iov_iter_get_pages2`); a shorter result shrinks the request. A 0 return
//! is not checked there either; the model's watchdog would catch a spin.

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::{Errno, EventKind};

use super::{CephDio, IoReport, WATCHDOG_BUDGET};
use crate::Sys;
use crate::iov_iter::{Dir, IovIter, IterType};

/// Object size of the default file layout (4 MiB objects, 4 MiB stripe unit,
/// one stripe).
pub const CEPH_OBJECT_SIZE: u64 = 4 << 20;
/// `ITER_GET_BVECS_PAGES`.
pub const ITER_GET_BVECS_PAGES: u64 = 64;

/// Outcome of a ceph direct I/O: the result, the report, and whether the
/// task never returns (soft lockup or BUG).
#[derive(Debug)]
pub struct CephOutcome {
    /// Bytes, or `-errno` (`-EDEADLK` when the task never returns).
    pub result: Result<u64, Errno>,
    /// Whether the modelled kernel task would never return.
    pub stuck: bool,
}

impl<A: Arch> Sys<A> {
    /// Element `k` of the iterator's array read through the iovec view:
    /// (`iov_base`, `iov_len`).
    pub fn ceph_iovec_view(&self, it: &IovIter, k: usize) -> Option<(u64, u64)> {
        match it.ty {
            IterType::Iovec | IterType::Kvec => it.iov.get(k).map(|v| (v.base.0, v.len)),
            IterType::Bvec => it.bvec.get(k).map(|b| {
                let base = self.caller_knobs().page_struct(b.page);
                let (len, off) = (u64::from(b.len), u64::from(b.offset));
                let word = if A::BIG_ENDIAN {
                    len << 32 | off
                } else {
                    len | off << 32
                };
                (base, word)
            }),
            _ => None,
        }
    }

    /// v4.10 `dio_get_pagev_size(it)`.
    fn dio_get_pagev_size(&self, it: &IovIter) -> u64 {
        let end = it.idx + it.nr_segs;
        let aligned = |x: u64| x & (A::PAGE_SIZE - 1) == 0;
        let Some((mut base, mut len)) = self.ceph_iovec_view(it, it.idx) else {
            return 0;
        };
        let mut size = len.wrapping_sub(it.iov_offset);
        let mut k = it.idx;
        while aligned(base.wrapping_add(len)) {
            k += 1;
            if k >= end {
                break;
            }
            let Some((b, l)) = self.ceph_iovec_view(it, k) else {
                break;
            };
            if !aligned(b) {
                break;
            }
            size = size.wrapping_add(l);
            base = b;
            len = l;
        }
        size
    }

    /// v4.10 `dio_get_pages_alloc(it, nbytes, &align, &num_pages)`, with the
    /// no-progress watchdog. `Err((e, stuck))`.
    fn dio_get_pages_alloc(
        &mut self,
        it: &IovIter,
        nbytes: u64,
        io: &mut IoReport,
    ) -> Result<(Vec<Pfn>, u64, u64), (Errno, bool)> {
        let mut tmp = it.clone();
        let base = self.ceph_iovec_view(it, it.idx).map_or(0, |v| v.0);
        let align = base.wrapping_add(it.iov_offset) & (A::PAGE_SIZE - 1);
        let npages = (align + nbytes).div_ceil(A::PAGE_SIZE) - (align >> A::PAGE_SHIFT);
        io.allocations += 1;
        let mut pages: Vec<Pfn> = Vec::new();
        let mut idx = 0u64;
        let mut nbytes = nbytes;
        // `size_t start;` inside the loop body, never initialised: the same
        // stack slot every iteration. Its first value is taken to be 0.
        let mut start = 0u64;
        let mut spins = 0u64;
        while idx < npages {
            let g = match self.iov_iter_get_pages(&tmp, nbytes, npages - idx) {
                Ok(g) => g,
                Err(e) => {
                    io.put_early += pages.len() as u64;
                    for &p in &pages {
                        self.put(p);
                    }
                    return Err((e, false));
                }
            };
            if g.bytes > 0 {
                start = g.start;
            }
            pages.extend_from_slice(&g.pages);
            self.iov_iter_advance(&mut tmp, g.bytes);
            nbytes = nbytes.wrapping_sub(g.bytes);
            let inc = (g.bytes + start).div_ceil(A::PAGE_SIZE);
            if inc == 0 {
                spins += 1;
                if spins >= WATCHDOG_BUDGET {
                    self.m.event(
                        EventKind::SoftLockup,
                        format!(
                            "ceph dio_get_pages_alloc: `for (idx = 0; idx < npages; )` stuck at idx {idx} of npages {npages} (align {align:#x}, nbytes {nbytes}): iov_iter_get_pages returns 0 and the stale `start` ({start}) adds no page; {spins} iterations without progress (watchdog budget)"
                        ),
                    );
                    io.note(format!(
                        "unwound by the emulator: the spinning kernel would hold {} page reference(s) forever; put as ceph_put_page_vector(pages, {idx}) would",
                        pages.len()
                    ));
                    io.put_early += pages.len() as u64;
                    for &p in &pages {
                        self.put(p);
                    }
                    return Err((Errno::EDEADLK, true));
                }
            } else {
                spins = 0;
            }
            idx += inc;
        }
        if nbytes != 0 {
            self.m.event(
                EventKind::KernelBug,
                format!("ceph dio_get_pages_alloc: BUG_ON(nbytes != 0) with nbytes {nbytes} after {idx} pages"),
            );
            io.note("unwound by the emulator: the task dies in BUG(); its page references are put");
            for &p in &pages {
                self.put(p);
            }
            return Err((Errno::EDEADLK, true));
        }
        Ok((pages, align, npages))
    }

    /// `ceph_direct_read_write(iocb, iter)` at file offset `pos`, as the
    /// profile has it. The iterator advances by the bytes done.
    pub fn ceph_direct_read_write(
        &mut self,
        it: &mut IovIter,
        pos: u64,
        io: &mut IoReport,
    ) -> CephOutcome {
        match self.caller_knobs().ceph_dio {
            CephDio::PagevSize => self.ceph_dio_v4_10(it, pos, io),
            CephDio::LaytonAlloc => self.ceph_dio_layton(it, pos, io),
            CephDio::BvecBatches => self.ceph_dio_bvecs(it, pos, io),
        }
    }

    fn osd_kind(it: &IovIter) -> &'static str {
        if it.dir == Dir::Write {
            "osd_write"
        } else {
            "osd_read"
        }
    }

    fn ceph_dio_v4_10(&mut self, it: &mut IovIter, pos0: u64, io: &mut IoReport) -> CephOutcome {
        let mut pos = pos0;
        let mut ret: Result<(), Errno> = Ok(());
        let mut stuck = false;
        let mut nreq = 0;
        while it.count > 0 {
            let view = self.ceph_iovec_view(it, it.idx);
            let size = self.dio_get_pagev_size(it);
            let objlen = CEPH_OBJECT_SIZE - pos % CEPH_OBJECT_SIZE;
            let len = size.min(objlen);
            nreq += 1;
            if let Some((b, l)) = view
                && nreq <= 4
            {
                io.note(format!(
                    "request {nreq}: {} element {} read as an iovec: base {b:#x}, len {l:#x}; dio_get_pagev_size {size:#x}, object extent {objlen:#x} -> {len:#x}",
                    format!("{:?}", it.ty).to_uppercase(),
                    it.idx
                ));
            }
            let (pages, align, npages) = match self.dio_get_pages_alloc(it, len, io) {
                Ok(v) => v,
                Err((e, s)) => {
                    ret = Err(e);
                    stuck = s;
                    break;
                }
            };
            if nreq <= 4 {
                io.note(format!(
                    "request {nreq}: align {align:#x}, npages {npages}: gathered {} page(s)",
                    pages.len()
                ));
            }
            io.unit(Self::osd_kind(it), len, npages);
            // ceph_put_page_vector(pages, num_pages, dirty).
            for &p in &pages {
                self.put(p);
            }
            pos += len;
            self.iov_iter_advance(it, len);
        }
        CephOutcome {
            result: finish(ret, stuck, pos - pos0),
            stuck,
        }
    }

    fn ceph_dio_layton(&mut self, it: &mut IovIter, pos0: u64, io: &mut IoReport) -> CephOutcome {
        io.note("Layton's 2/2: one iov_iter_get_pages_alloc (his stitched version) per OSD request; the 2/2 code itself was not available");
        let mut pos = pos0;
        let mut ret: Result<(), Errno> = Ok(());
        while it.count > 0 {
            let len = it.count.min(CEPH_OBJECT_SIZE - pos % CEPH_OBJECT_SIZE);
            let g = match self.iov_iter_get_pages_alloc(it, len) {
                Ok(g) if g.bytes > 0 => g,
                Ok(_) => {
                    io.note("iov_iter_get_pages_alloc returned 0: stop");
                    break;
                }
                Err(e) => {
                    ret = Err(e);
                    break;
                }
            };
            io.allocations += 1;
            io.unit(Self::osd_kind(it), g.bytes, g.pages.len() as u64);
            for &p in &g.pages {
                self.put(p);
            }
            pos += g.bytes;
            self.iov_iter_advance(it, g.bytes);
        }
        CephOutcome {
            result: finish(ret, false, pos - pos0),
            stuck: false,
        }
    }

    fn ceph_dio_bvecs(&mut self, it: &mut IovIter, pos0: u64, io: &mut IoReport) -> CephOutcome {
        let ck = self.caller_knobs();
        let two = self.m.knobs.get_pages2;
        let mut pos = pos0;
        let mut ret: Result<(), Errno> = Ok(());
        while it.count > 0 {
            let size = it
                .count
                .min(ck.ceph_wsize)
                .min(CEPH_OBJECT_SIZE - pos % CEPH_OBJECT_SIZE);
            // iter_get_bvecs_alloc
            let mut t = it.clone();
            t.truncate(size);
            let npages = self.iov_iter_npages(&t, i32::MAX as u64);
            io.allocations += 1;
            let maxsize = size.min(it.count);
            let mut got = 0u64;
            let mut pages: Vec<Pfn> = Vec::new();
            let mut spins = 0u64;
            let mut err = None;
            while got < maxsize {
                let r = if two {
                    self.iov_iter_get_pages2(it, maxsize - got, ITER_GET_BVECS_PAGES)
                } else {
                    self.iov_iter_get_pages(it, maxsize - got, ITER_GET_BVECS_PAGES)
                };
                let g = match r {
                    Ok(g) => g,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                };
                if !two {
                    self.iov_iter_advance(it, g.bytes);
                }
                got += g.bytes;
                pages.extend_from_slice(&g.pages);
                if g.bytes == 0 {
                    spins += 1;
                    if spins >= WATCHDOG_BUDGET {
                        self.m.event(
                            EventKind::SoftLockup,
                            "ceph __iter_get_bvecs: iov_iter_get_pages returns 0 and the loop repeats without progress",
                        );
                        for &p in &pages {
                            self.put(p);
                        }
                        return CephOutcome {
                            result: Err(Errno::EDEADLK),
                            stuck: true,
                        };
                    }
                }
            }
            if got == 0 {
                ret = Err(err.unwrap_or(Errno::EFAULT));
                break;
            }
            if got != size {
                io.note(format!(
                    "request shrunk from {size} to {got} bytes (osd_req_op_extent_update)"
                ));
            }
            io.unit(Self::osd_kind(it), got, npages);
            // put_bvecs: every non-NULL page.
            for &p in &pages {
                self.put(p);
            }
            pos += got;
        }
        CephOutcome {
            result: finish(ret, false, pos - pos0),
            stuck: false,
        }
    }

    /// `splice(pipe, ceph O_DIRECT file)`: `iter_file_splice_write` with
    /// `ceph_write_iter` → `ceph_direct_read_write` on a copy of the ITER_BVEC
    /// iterator, advancing the original by what was written.
    pub fn ceph_splice_write(&mut self, pipe: usize, len: u64) -> (Result<u64, Errno>, IoReport) {
        let (mut io, before) = IoReport::start(
            match self.caller_knobs().ceph_dio {
                CephDio::PagevSize => {
                    "iter_file_splice_write -> ceph_direct_read_write (v4.10 dio_get_pagev_size/dio_get_pages_alloc)"
                }
                CephDio::LaytonAlloc => {
                    "iter_file_splice_write -> ceph_direct_read_write (Layton's 2/2)"
                }
                CephDio::BvecBatches => {
                    "iter_file_splice_write -> ceph_direct_read_write (iter_get_bvecs_alloc)"
                }
            },
            self,
        );
        let mut pos = 0u64;
        let mut stuck = false;
        let r = {
            let io_ref = &mut io;
            let pos_ref = &mut pos;
            let stuck_ref = &mut stuck;
            self.iter_file_splice_write(pipe, len, &mut |sys, from| {
                let mut data = from.clone();
                let out = sys.ceph_direct_read_write(&mut data, *pos_ref, io_ref);
                if out.stuck {
                    *stuck_ref = true;
                }
                let w = out.result?;
                *pos_ref += w;
                sys.iov_iter_advance(from, w);
                Ok(w)
            })
        };
        io.finish(self, before);
        let r = if stuck { Err(Errno::EDEADLK) } else { r };
        (r, io)
    }

    /// `ceph_direct_read_write` on a workload iterator at `pos` (an
    /// O_DIRECT `read`/`write` of a ceph file).
    pub fn ceph_direct_rw(&mut self, it: &mut IovIter, pos: u64) -> (Result<u64, Errno>, IoReport) {
        let (mut io, before) = IoReport::start("ceph_direct_read_write", self);
        let mut data = it.clone();
        let out = self.ceph_direct_read_write(&mut data, pos, &mut io);
        if let Ok(w) = out.result {
            self.iov_iter_advance(it, w);
        }
        io.finish(self, before);
        (out.result, io)
    }
}

fn finish(ret: Result<(), Errno>, stuck: bool, done: u64) -> Result<u64, Errno> {
    if stuck {
        return Err(Errno::EDEADLK);
    }
    match ret {
        Err(e) if done == 0 => Err(e),
        _ => Ok(done),
    }
}
