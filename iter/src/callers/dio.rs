//! Legacy direct I/O, `fs/direct-io.c` as of v4.10 (`do_blockdev_direct_IO`,
//! `do_direct_IO`): the user pages come through a 64-entry queue
//! (`DIO_PAGES`) refilled by `dio_refill_pages` with one
//! `iov_iter_get_pages(iter, pages, LONG_MAX, 64, &from)` call whenever it is
//! empty (`dio_get_page`); each page's subrange is mapped to disk blocks and
//! handed to `submit_page_section`, which grows the current page chunk or
//! sends it into the bio under assembly; a new bio starts when the disk or
//! file offset is not contiguous or the bio is full (capacity
//! `min(pages_in_io, BIO_MAX_PAGES)`); bios therefore span iovec segments.
//!
//! **Zero-page rule.** When the refill fails on a write while blocks the
//! filesystem already mapped are pending (`blocks_available` > 0), the first
//! error is remembered in `page_errors`, one reference to `ZERO_PAGE` is
//! queued as a whole page (head 0, tail 1, from 0, to `PAGE_SIZE`), and the
//! pending blocks are written with zeros instead of exposing stale data;
//! `get_more_blocks` then returns `page_errors`, so nothing new is mapped, and
//! `dio_complete` reports `page_errors` even when bytes were written. With
//! more than a page of pending blocks the queue holds one page at a time, so
//! `iov_iter_get_pages` is called — and fails — once per pending page, plus
//! once more if the last zero page uses the blocks up exactly (Al Viro's
//! question in the thread; Christoph Hellwig: "There shouldn't be a need for
//! it").
//!
//! The filesystem modelled: blocks of `blocksize` bytes (the request must be
//! aligned to it — sub-block `blkfactor` alignment is not modelled);
//! `get_block` maps at most `extent` bytes per call, up to the next extent
//! boundary, contiguous on disk within an extent, with a one-block gap
//! between extents; writes allocate (`buffer_new`). No holes, no EOF.
//! Synchronous: every bio completes before return (`dio_await_completion`),
//! putting the reference it held on each bvec page.

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::{Errno, EventKind};

use super::{IoReport, NotModelled};
use crate::Sys;
use crate::iov_iter::{Dir, IovIter};

/// `DIO_PAGES`.
pub const DIO_PAGES: u64 = 64;
/// `BIO_MAX_PAGES`.
pub const BIO_MAX_PAGES: u64 = 256;

/// The filesystem behind a direct I/O.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DioFs {
    /// fs block size (`1 << i_blkbits`), a power of two ≤ `PAGE_SIZE`.
    pub blocksize: u64,
    /// Bytes `get_block` maps per call at most (a multiple of `blocksize`).
    pub extent: u64,
}

#[derive(Clone, Copy, Debug)]
struct CurPage {
    page: Pfn,
    offset: u64,
    len: u64,
    block: u64,
    fs_offset: u64,
}

#[derive(Debug, Default)]
struct Bio {
    /// (page, offset, len) per bio_vec.
    vecs: Vec<(Pfn, u64, u64)>,
    max_vecs: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Dio {
    write: bool,
    blkbits: u32,
    extent_blocks: u64,
    // dio_submit
    block_in_file: u64,
    final_block_in_request: u64,
    blocks_available: u64,
    next_block_for_io: u64,
    pages_in_io: u64,
    pages: Vec<Pfn>,
    head: usize,
    tail: usize,
    from: u64,
    to: u64,
    cur_page: Option<CurPage>,
    bio: Option<Bio>,
    logical_offset_in_bio: u64,
    final_block_in_bio: u64,
    // dio
    result: u64,
    page_errors: Option<Errno>,
    bios: Vec<Bio>,
    zero_pages: u64,
    calls_after_error: u64,
}

/// What a direct I/O returned and its report.
pub type DioResult = (Result<u64, Errno>, IoReport);

impl<A: Arch> Sys<A> {
    /// v4.10 `__blockdev_direct_IO(iocb, inode, bdev, iter, get_block, ...)`
    /// at file offset `pos`, synchronous. The iterator advances by what was
    /// gathered (the kernel advances it in `dio_refill_pages`).
    pub fn blockdev_direct_io(
        &mut self,
        iter: &mut IovIter,
        pos: u64,
        fs: DioFs,
    ) -> Result<DioResult, NotModelled> {
        self.need_v4("fs/direct-io.c")?;
        Ok(self.dio_run(iter, pos, fs, false))
    }

    /// The same direct I/O with `do_direct_IO`'s page loop converted to
    /// `iov_iter_for_each_page` (batches of 64): the inner loop is the
    /// callback, which consumes each page's reference; when gathering fails
    /// on a write with blocks pending, the pending blocks are written from
    /// the zero page without asking for pages again.
    pub fn blockdev_direct_io_viro(
        &mut self,
        iter: &mut IovIter,
        pos: u64,
        fs: DioFs,
    ) -> Result<DioResult, NotModelled> {
        self.need_v4("fs/direct-io.c")?;
        Ok(self.dio_run(iter, pos, fs, true))
    }

    fn dio_run(&mut self, iter: &mut IovIter, pos: u64, fs: DioFs, viro: bool) -> DioResult {
        let name = if viro {
            "do_blockdev_direct_IO, page loop as iov_iter_for_each_page"
        } else {
            "do_blockdev_direct_IO"
        };
        let (mut io, before) = IoReport::start(name, self);
        let page = A::PAGE_SIZE;
        let bs = fs.blocksize;
        if !bs.is_power_of_two() || bs > page || fs.extent < bs || !fs.extent.is_multiple_of(bs) {
            io.note("blocksize must be a power of two up to PAGE_SIZE and extent a multiple of it");
            return (Err(Errno::EINVAL), io);
        }
        let count = iter.count;
        let align = pos | self.iov_iter_alignment(iter);
        if align & (bs - 1) != 0 {
            io.note(format!(
                "(pos | iov_iter_alignment) = {align:#x} is not a multiple of the block size: -EINVAL (the kernel first retries with the bdev's logical block size; sub-block dio blocks are not modelled)"
            ));
            return (Err(Errno::EINVAL), io);
        }
        let write = iter.dir == Dir::Write;
        if !write && count == 0 {
            return (Ok(0), io);
        }
        let blkbits = bs.trailing_zeros();
        let mut d = Dio {
            write,
            blkbits,
            extent_blocks: fs.extent / bs,
            block_in_file: pos >> blkbits,
            final_block_in_request: (pos + count) >> blkbits,
            blocks_available: 0,
            next_block_for_io: 0,
            pages_in_io: self.iov_iter_npages(iter, i32::MAX as u64),
            pages: Vec::new(),
            head: 0,
            tail: 0,
            from: 0,
            to: 0,
            cur_page: None,
            bio: None,
            logical_offset_in_bio: 0,
            final_block_in_bio: u64::MAX,
            result: 0,
            page_errors: None,
            bios: Vec::new(),
            zero_pages: 0,
            calls_after_error: 0,
        };
        let mut ret = if viro {
            self.do_direct_io_viro(&mut d, iter, &mut io)
        } else {
            self.do_direct_io(&mut d, iter, &mut io)
        };
        if ret.is_err() {
            self.dio_cleanup(&mut d, &mut io);
        }
        // dio_zero_block(end) does nothing without a blkfactor.
        if let Some(c) = d.cur_page.take() {
            let r2 = self.dio_send_cur_page(&mut d, c, &mut io);
            if ret.is_ok() {
                ret = r2;
            }
            self.put(c.page);
        }
        if let Some(b) = d.bio.take() {
            d.bios.push(b);
        }
        self.dio_cleanup(&mut d, &mut io);
        // dio_await_completion: every bio ends, putting its page references.
        for b in std::mem::take(&mut d.bios) {
            for &(p, _, _) in &b.vecs {
                self.put(p);
            }
            io.unit("bio", b.bytes, b.vecs.len() as u64);
        }
        // dio_complete.
        let mut r = ret.err();
        if r == Some(Errno::EFAULT) && d.result > 0 {
            r = None; // "ignore EFAULT if some IO has been done"
        }
        if r.is_none() {
            r = d.page_errors;
        }
        let errs = d.page_errors.map_or("none".to_string(), |e| e.to_string());
        if d.zero_pages > 0 && !viro {
            io.note(format!(
                "gathering failed on a write with mapped blocks pending: {} zero page(s) queued one at a time; iov_iter_get_pages failed {} time(s) in all (the first, then once per zero page after it{}); page_errors {errs} is the result although {} bytes were written",
                d.zero_pages,
                d.calls_after_error + 1,
                if d.calls_after_error >= d.zero_pages {
                    ", then once more with nothing pending"
                } else {
                    ""
                },
                d.result
            ));
        } else if d.zero_pages > 0 {
            io.note(format!(
                "iov_iter_for_each_page returns an error only when it made no progress, so the first failure is absorbed and the next call returns it; the pending blocks are then written from {} zero page(s) with one reference and no further gathering; page_errors {errs} is the result although {} bytes were written",
                d.zero_pages, d.result
            ));
        }
        io.finish(self, before);
        (r.map_or(Ok(d.result), Err), io)
    }

    /// `dio_refill_pages`.
    fn dio_refill_pages(
        &mut self,
        d: &mut Dio,
        iter: &mut IovIter,
        io: &mut IoReport,
    ) -> Result<(), Errno> {
        if d.page_errors.is_some() {
            d.calls_after_error += 1;
        }
        match self.iov_iter_get_pages(iter, i64::MAX as u64, DIO_PAGES) {
            Err(e) if d.blocks_available > 0 && d.write => {
                if d.page_errors.is_none() {
                    d.page_errors = Some(e);
                }
                let zero = self.m.zero_pfn();
                self.consumer_get(zero, io);
                d.zero_pages += 1;
                d.pages = vec![zero];
                d.head = 0;
                d.tail = 1;
                d.from = 0;
                d.to = A::PAGE_SIZE;
                Ok(())
            }
            Err(e) => Err(e),
            Ok(g) => {
                self.iov_iter_advance(iter, g.bytes);
                let ret = g.bytes + g.start;
                d.from = g.start;
                d.pages = g.pages;
                d.head = 0;
                d.tail = ret.div_ceil(A::PAGE_SIZE) as usize;
                d.to = ((ret.wrapping_sub(1)) & (A::PAGE_SIZE - 1)) + 1;
                // Pages gup returned beyond the bytes (none in practice) stay
                // in the array past tail: nobody puts them.
                Ok(())
            }
        }
    }

    /// `dio_cleanup`: puts the queued pages not consumed.
    fn dio_cleanup(&mut self, d: &mut Dio, io: &mut IoReport) {
        while d.head < d.tail {
            let p = d.pages[d.head];
            d.head += 1;
            self.put(p);
            io.put_early += 1;
        }
    }

    /// `get_more_blocks` + the mapping part of `do_direct_IO`.
    fn dio_map_blocks(&mut self, d: &mut Dio) -> Result<(), Errno> {
        if let Some(e) = d.page_errors {
            return Err(e);
        }
        let start = d.block_in_file;
        let count = d.final_block_in_request - start;
        let e = d.extent_blocks;
        let run = count.min(e - start % e);
        d.blocks_available = run;
        // Disk layout: extent k starts at block k * (E + 1).
        d.next_block_for_io = start + start / e;
        Ok(())
    }

    /// The inner loop of `do_direct_IO` for one page subrange
    /// `from..to`; `Err` ends the request (the caller puts the page).
    fn dio_page(
        &mut self,
        d: &mut Dio,
        page: Pfn,
        mut from: u64,
        to: u64,
        io: &mut IoReport,
    ) -> Result<(), Errno> {
        while from < to {
            if d.blocks_available == 0 {
                self.dio_map_blocks(d)?;
            }
            let mut chunk = d.blocks_available;
            chunk = chunk.min((to - from) >> d.blkbits);
            chunk = chunk.min(d.final_block_in_request - d.block_in_file);
            let bytes = chunk << d.blkbits;
            if bytes == 0 {
                self.m.event(
                    EventKind::KernelBug,
                    "do_direct_IO: BUG_ON(this_chunk_bytes == 0)",
                );
                return Err(Errno::EINVAL);
            }
            self.submit_page_section(d, page, from, bytes, d.next_block_for_io, io)?;
            d.next_block_for_io += chunk;
            d.block_in_file += chunk;
            from += bytes;
            d.result += bytes;
            d.blocks_available -= chunk;
            if d.block_in_file == d.final_block_in_request {
                break;
            }
        }
        Ok(())
    }

    /// v4.10 `do_direct_IO`.
    fn do_direct_io(
        &mut self,
        d: &mut Dio,
        iter: &mut IovIter,
        io: &mut IoReport,
    ) -> Result<(), Errno> {
        while d.block_in_file < d.final_block_in_request {
            // dio_get_page
            if d.tail == d.head {
                self.dio_refill_pages(d, iter, io)?;
                if d.tail == d.head {
                    self.m.event(
                        EventKind::KernelBug,
                        "dio_get_page: BUG_ON(dio_pages_present(sdio) == 0)",
                    );
                    return Err(Errno::EINVAL);
                }
            }
            let page = d.pages[d.head];
            let from = if d.head > 0 { 0 } else { d.from };
            let to = if d.head == d.tail - 1 {
                d.to
            } else {
                A::PAGE_SIZE
            };
            d.head += 1;
            let r = self.dio_page(d, page, from, to, io);
            // Drop the reference that came from the queue.
            self.put(page);
            r?;
        }
        Ok(())
    }

    /// `do_direct_IO` with the page loop as an `iov_iter_for_each_page`
    /// callback.
    fn do_direct_io_viro(
        &mut self,
        d: &mut Dio,
        iter: &mut IovIter,
        io: &mut IoReport,
    ) -> Result<(), Errno> {
        let mut err: Option<Errno> = None;
        while d.block_in_file < d.final_block_in_request && err.is_none() {
            let want = iter.count;
            let mut cb_err = None;
            let res = {
                let dref: &mut Dio = d;
                let io_ref: &mut IoReport = io;
                let cb_err_ref = &mut cb_err;
                self.iov_iter_for_each_page(iter, want, DIO_PAGES, &mut |sys, page, from, len| {
                    let r = sys.dio_page(dref, page, from, from + len, io_ref);
                    // The callback owns the page's reference.
                    sys.put(page);
                    match r {
                        Ok(()) => dref.block_in_file < dref.final_block_in_request,
                        Err(e) => {
                            *cb_err_ref = Some(e);
                            false
                        }
                    }
                })
            };
            if let Some(e) = cb_err {
                return Err(e);
            }
            match res {
                Ok(n) if n > 0 => continue,
                Ok(_) => break,
                Err(e) => err = Some(e),
            }
        }
        let Some(e) = err else {
            return Ok(());
        };
        if !(d.write && d.blocks_available > 0) {
            return Err(e);
        }
        // Write the pending blocks from the zero page, without gathering
        // again.
        d.page_errors = Some(e);
        let zero = self.m.zero_pfn();
        self.consumer_get(zero, io);
        while d.blocks_available > 0 && d.block_in_file < d.final_block_in_request {
            d.zero_pages += 1;
            if let Err(e) = self.dio_page(d, zero, 0, A::PAGE_SIZE, io) {
                self.put(zero);
                return Err(e);
            }
        }
        self.put(zero);
        // get_more_blocks now reports page_errors.
        Err(e)
    }

    /// `submit_page_section`.
    fn submit_page_section(
        &mut self,
        d: &mut Dio,
        page: Pfn,
        offset: u64,
        len: u64,
        block: u64,
        io: &mut IoReport,
    ) -> Result<(), Errno> {
        if let Some(c) = &mut d.cur_page
            && c.page == page
            && c.offset + c.len == offset
            && c.block + (c.len >> d.blkbits) == block
        {
            c.len += len;
            return Ok(());
        }
        if let Some(c) = d.cur_page.take() {
            let r = self.dio_send_cur_page(d, c, io);
            self.put(c.page);
            r?;
        }
        self.consumer_get(page, io); // it is in the dio
        d.cur_page = Some(CurPage {
            page,
            offset,
            len,
            block,
            fs_offset: d.block_in_file << d.blkbits,
        });
        Ok(())
    }

    /// `dio_send_cur_page` with `dio_new_bio` and `dio_bio_add_page`.
    fn dio_send_cur_page(
        &mut self,
        d: &mut Dio,
        c: CurPage,
        io: &mut IoReport,
    ) -> Result<(), Errno> {
        if let Some(b) = &d.bio {
            let next = d.logical_offset_in_bio + b.bytes;
            if d.final_block_in_bio != c.block || c.fs_offset != next {
                let b = d.bio.take().unwrap_or_default();
                d.bios.push(b);
            }
        }
        if d.bio.is_none() {
            self.dio_new_bio(d, c)?;
        }
        if !self.dio_bio_add_page(d, c, io) {
            let b = d.bio.take().unwrap_or_default();
            d.bios.push(b);
            self.dio_new_bio(d, c)?;
            let ok = self.dio_bio_add_page(d, c, io);
            debug_assert!(ok);
        }
        Ok(())
    }

    fn dio_new_bio(&mut self, d: &mut Dio, c: CurPage) -> Result<(), Errno> {
        let nr = d.pages_in_io.min(BIO_MAX_PAGES);
        if nr == 0 {
            self.m
                .event(EventKind::KernelBug, "dio_new_bio: BUG_ON(nr_pages <= 0)");
            return Err(Errno::EINVAL);
        }
        d.bio = Some(Bio {
            vecs: Vec::new(),
            max_vecs: nr,
            bytes: 0,
        });
        d.logical_offset_in_bio = c.fs_offset;
        Ok(())
    }

    /// `dio_bio_add_page` (with v4.10 `bio_add_page`'s merge of a
    /// consecutive range of the last page).
    fn dio_bio_add_page(&mut self, d: &mut Dio, c: CurPage, io: &mut IoReport) -> bool {
        let Some(b) = &mut d.bio else {
            return false;
        };
        let merged = match b.vecs.last_mut() {
            Some(last) if last.0 == c.page && c.offset == last.1 + last.2 => {
                last.2 += c.len;
                true
            }
            _ => false,
        };
        if !merged {
            if b.vecs.len() as u64 >= b.max_vecs {
                return false;
            }
            b.vecs.push((c.page, c.offset, c.len));
        }
        b.bytes += c.len;
        if c.len + c.offset == A::PAGE_SIZE {
            d.pages_in_io = d.pages_in_io.saturating_sub(1);
        }
        // The bio's reference; completion puts one per bvec. (A merge by
        // bio_add_page would take one more than completion puts; do_direct_IO
        // never reaches it: submit_page_section grows such a range first.)
        self.consumer_get(c.page, io);
        d.final_block_in_bio = c.block + (c.len >> d.blkbits);
        true
    }
}
