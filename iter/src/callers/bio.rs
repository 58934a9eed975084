//! `bio_iov_iter_get_pages` and its direct-I/O callers: the block device's
//! `blkdev_direct_IO` (`fs/block_dev.c` v4.10/v4.17, `block/fops.c` 6.13)
//! and `iomap_dio_actor` (`fs/iomap.c`).
//!
//! * v4.10–v4.17: `bio_iov_iter_get_pages` makes **one**
//!   `iov_iter_get_pages(iter, pages, LONG_MAX, free_vecs, &offset)` call
//!   (one segment; one page for a bvec), writes the page pointers into the
//!   bio's unused bvec slots and expands them backwards into bio_vecs, then
//!   advances the iterator. `__blkdev_direct_IO_simple` (synchronous, at most
//!   `BIO_MAX_PAGES` pages) puts up to `DIO_INLINE_BIO_VECS` = 4 bvecs on the
//!   stack (no allocation) and calls it once: a multi-segment request
//!   transfers only its first segment — a short read or write.
//!   `__blkdev_direct_IO` and `iomap_dio_actor` allocate a bio sized by
//!   `iov_iter_npages(iter, 256)` and call it once per bio: one bio per
//!   segment.
//! * 6.13 (17d51b10d777, present by 4.19, then the extraction rework):
//!   `bio_iov_iter_get_pages` loops `__bio_iov_iter_get_pages` until the
//!   bio is full or the iterator empty; user memory is **pinned**
//!   (`iov_iter_extract_pages`), a page physically contiguous with the last
//!   bvec extends it (`bvec_try_merge_page`; a second pin on the same page
//!   is dropped at once), and a bvec iterator is used as is
//!   (`bio_iov_bvec_set`: no page references).
//!
//! Logical block size 512; a request not aligned to it is `-EINVAL`. Bios
//! complete synchronously; completion moves the data (for the syscall
//! layer's block devices, [`Sys::blkdev_direct_io_bdev`]) and puts (or
//! unpins) each page.
//!
//! This is the one model of block-device direct I/O: the caller model
//! [`Sys::blkdev_direct_io`] (gathering and references, per profile) and
//! the syscall layer's `O_DIRECT` reads and writes of a block device
//! (`blkdev_read_iter`/`blkdev_write_iter` → [`Sys::blkdev_direct_io_bdev`],
//! 6.13) build their bios with the same `bio_iov_iter_get_pages` and submit
//! them with the same `__blkdev_direct_IO_simple` / `__blkdev_direct_IO`
//! ([`Sys::blkdev_dio_bios`]).

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::Errno;

use super::IoReport;
use crate::Sys;
use crate::iov_iter::{Dir, IovIter, IterType};

/// `DIO_INLINE_BIO_VECS`.
pub const DIO_INLINE_BIO_VECS: u64 = 4;
/// `BIO_MAX_PAGES` (6.x `BIO_MAX_VECS`).
pub const BIO_MAX_PAGES: u64 = 256;
/// Logical block size of the modelled block device.
pub const LOGICAL_BLOCK_SIZE: u64 = 512;
/// `SECTOR_SIZE - 1`: the default `dma_alignment` of a request queue.
pub const DMA_ALIGNMENT: u64 = 511;

/// A bio under construction.
#[derive(Clone, Debug, Default)]
pub struct Bio {
    /// bio_vecs: the pages each covers (one, or several for a merged
    /// 6.x bvec), offset in the first, length.
    pub vecs: Vec<(Vec<Pfn>, u64, u64)>,
    /// `bi_max_vecs`.
    pub max_vecs: u64,
    /// `bi_iter.bi_size`.
    pub size: u64,
    /// The pages are pinned (`BIO_PAGE_PINNED`) rather than referenced.
    pub pinned: bool,
    /// The bvecs are the iterator's own (`bio_iov_bvec_set`): no references.
    pub borrowed: bool,
    /// Pins dropped at once because a range merged into a bvec on the same
    /// page (6.x), or pages extracted beyond a block-trimmed size.
    pub released_early: u64,
    /// The mask each extraction checks the current segment against under
    /// the knob `dio_extract_align` (the device's DMA alignment; 0: none,
    /// as for passthrough bios).
    pub mem_align: u64,
}

impl Bio {
    /// An empty bio with `max_vecs` slots.
    #[must_use]
    pub fn new(max_vecs: u64) -> Self {
        Self {
            max_vecs,
            ..Self::default()
        }
    }
}

/// Where the data of completed bios lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Medium {
    /// A block device: its bytes, `Sys::bdevs[dev].data`.
    Bdev(usize),
    /// The blocks of a regular file of an iomap file system
    /// ([`super::iomap`]); its page cache is modelled as coherent with them
    /// (`iomap_dio_rw` writes back and invalidates the range around the
    /// I/O), so the bios read and write the file's page cache pages.
    File(vmemu_mm::mm::FileId),
}

/// The medium that completed bios read or write: bytes from `pos` on of
/// `medium`, in direction `dir` (READ fills the pages).
#[derive(Clone, Copy, Debug)]
pub struct BdevIo {
    /// The device or file.
    pub medium: Medium,
    /// Device offset of the next byte.
    pub pos: u64,
    /// The iterator's direction.
    pub dir: Dir,
}

/// One direct I/O's submission: its report, how its bios gather pages,
/// what a failing later bio does, and where the data goes.
#[derive(Debug)]
pub struct Dio<'a> {
    /// The caller model's report (discarded by the syscall layer).
    pub io: &'a mut IoReport,
    /// `bio_iov_iter_get_pages` loops until the bio is full (6.x, the
    /// knob [`super::CallerKnobs::bio_iov_loop`]) rather than one call.
    pub bio_iov_loop: bool,
    /// A later bio that gathers nothing fails the whole call, although the
    /// earlier bios moved their data (block/fops.c `__blkdev_direct_IO`:
    /// the error stays in `dio->bio.bi_status`; `iomap_dio_rw`: the error
    /// of the next `iomap_iter` round becomes `dio->error`); `false`
    /// returns the earlier bios' bytes. The caller model of
    /// `blkdev_direct_IO` keeps the latter rule.
    pub whole_error: bool,
    /// The medium, for the syscall layer's block devices.
    pub target: Option<BdevIo>,
}

impl<A: Arch> Sys<A> {
    /// `bio_iov_iter_get_pages(bio, iter)` as the profile has it.
    pub fn bio_iov_iter_get_pages(
        &mut self,
        bio: &mut Bio,
        iter: &mut IovIter,
    ) -> Result<(), Errno> {
        let bio_iov_loop = self.caller_knobs().bio_iov_loop;
        self.bio_iov_iter_get_pages_as(bio, iter, bio_iov_loop)
    }

    /// `bio_iov_iter_get_pages(bio, iter)`: the 6.x loop or v4.x's one call.
    fn bio_iov_iter_get_pages_as(
        &mut self,
        bio: &mut Bio,
        iter: &mut IovIter,
        bio_iov_loop: bool,
    ) -> Result<(), Errno> {
        if bio_iov_loop {
            self.bio_iov_iter_get_pages_loop(bio, iter)
        } else {
            self.bio_iov_iter_get_pages_once(bio, iter)
        }
    }

    fn bio_iov_iter_get_pages_once(
        &mut self,
        bio: &mut Bio,
        iter: &mut IovIter,
    ) -> Result<(), Errno> {
        let nr = bio.max_vecs - bio.vecs.len() as u64;
        let g = self.iov_iter_get_pages(iter, i64::MAX as u64, nr)?;
        if g.bytes == 0 {
            return Err(Errno::EFAULT);
        }
        let n = (g.bytes + g.start).div_ceil(A::PAGE_SIZE) as usize;
        let mut left = g.bytes;
        let mut off = g.start;
        for &p in &g.pages[..n] {
            let len = left.min(A::PAGE_SIZE - off);
            bio.vecs.push((vec![p], off, len));
            left -= len;
            off = 0;
        }
        bio.size += g.bytes;
        self.iov_iter_advance(iter, g.bytes);
        Ok(())
    }

    fn bio_iov_iter_get_pages_loop(
        &mut self,
        bio: &mut Bio,
        iter: &mut IovIter,
    ) -> Result<(), Errno> {
        if iter.ty == IterType::Bvec {
            // bio_iov_bvec_set: the bio uses the iterator's bvecs.
            let pieces = iter.pieces(&mut self.m, iter.count);
            for p in pieces {
                if let crate::iov_iter::Piece::Page { pfn, offset, len } = p {
                    bio.vecs.push((vec![pfn], offset, len));
                }
            }
            bio.size += iter.count;
            bio.borrowed = true;
            let n = iter.count;
            self.iov_iter_advance(iter, n);
            return Ok(());
        }
        let mut ret = Ok(());
        loop {
            self.bio_extract_align_check(bio, iter)?;
            if let Err(e) = self.bio_iov_iter_get_pages_one(bio, iter) {
                ret = Err(e);
                break;
            }
            if iter.count == 0 || bio.vecs.len() as u64 >= bio.max_vecs {
                break;
            }
        }
        if bio.vecs.is_empty() {
            ret
        } else {
            self.bio_iov_iter_align_down(bio, iter)
        }
    }

    /// 6.13 `__bio_iov_iter_get_pages`.
    fn bio_iov_iter_get_pages_one(
        &mut self,
        bio: &mut Bio,
        iter: &mut IovIter,
    ) -> Result<(), Errno> {
        let nr = bio.max_vecs - bio.vecs.len() as u64;
        let g = self.iov_iter_extract_pages(iter, u64::from(u32::MAX) - bio.size, nr)?;
        if g.bytes == 0 {
            return Err(Errno::EFAULT);
        }
        bio.pinned = g.pinned;
        let trim = self.bio_batch_trim(g.bytes);
        let size = g.bytes - trim;
        if trim > 0 {
            let _ = self.iov_iter_revert(iter, trim);
        }
        let n = (g.bytes + g.start).div_ceil(A::PAGE_SIZE) as usize;
        let mut left = size;
        let mut off = g.start;
        let mut i = 0usize;
        while left > 0 {
            let p = g.pages[i];
            let len = left.min(A::PAGE_SIZE - off);
            let merged = match bio.vecs.last_mut() {
                Some((pages, boff, blen))
                    if pages[0].0 * A::PAGE_SIZE + *boff + *blen == p.0 * A::PAGE_SIZE + off =>
                {
                    let end = pages[0].0 * A::PAGE_SIZE + *boff + *blen - 1;
                    let same_page = end / A::PAGE_SIZE == p.0;
                    *blen += len;
                    if same_page {
                        if g.pinned {
                            let _ = self.m.unpin_user_page(p);
                            bio.released_early += 1;
                        }
                    } else {
                        pages.push(p);
                    }
                    true
                }
                _ => false,
            };
            if !merged {
                bio.vecs.push((vec![p], off, len));
            }
            bio.size += len;
            left -= len;
            off = 0;
            i += 1;
        }
        // Pages extracted beyond the trimmed size are released.
        for &p in &g.pages[i..n.min(g.pages.len())] {
            bio.released_early += 1;
            if g.pinned {
                let _ = self.m.unpin_user_page(p);
            } else {
                let _ = self.m.put_page(p);
            }
        }
        if size == 0 {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }

    /// Completion of a bio: every page's reference (or pin) is released.
    pub fn bio_release_pages(&mut self, bio: &Bio) {
        if bio.borrowed {
            return;
        }
        for (pages, _, _) in &bio.vecs {
            for &p in pages {
                if bio.pinned {
                    let _ = self.m.unpin_user_page(p);
                } else {
                    let _ = self.m.put_page(p);
                }
            }
        }
    }

    /// One `bio_iov_iter_get_pages` call on an empty bio of `nr_vecs` slots,
    /// then the bio completes. Returns the bio's size.
    pub fn bio_iov_iter_get_pages_once_report(
        &mut self,
        iter: &mut IovIter,
        nr_vecs: u64,
    ) -> (Result<u64, Errno>, IoReport) {
        let (mut io, before) = IoReport::start("bio_iov_iter_get_pages", self);
        let mut bio = Bio::new(nr_vecs);
        let r = self.bio_iov_iter_get_pages(&mut bio, iter);
        self.bio_done(&bio, &mut io, None);
        io.finish(self, before);
        (r.map(|()| bio.size), io)
    }

    /// Completion of a bio (`bio_endio`): its data moves to or from the
    /// medium, page by page, then its pages are released.
    fn bio_done(&mut self, bio: &Bio, io: &mut IoReport, target: Option<&mut BdevIo>) {
        io.put_early += bio.released_early;
        if bio.vecs.is_empty() {
            return;
        }
        if let Some(t) = target {
            self.bio_transfer(bio, t);
        }
        self.bio_release_pages(bio);
        let pages: u64 = bio.vecs.iter().map(|v| v.0.len() as u64).sum();
        io.unit("bio", bio.size, pages);
        if (bio.vecs.len() as u64) < pages {
            io.note(format!(
                "{pages} pages in {} bvec(s): physically contiguous pages extend the last bvec (bvec_try_merge_page)",
                bio.vecs.len()
            ));
        }
    }

    /// The I/O of a completed bio on the medium `t`.
    fn bio_transfer(&mut self, bio: &Bio, t: &mut BdevIo) {
        for (pages, first_off, len) in &bio.vecs {
            let mut left = *len;
            let mut off = *first_off;
            for &page in pages {
                if left == 0 {
                    break;
                }
                let n = left.min(A::PAGE_SIZE - off);
                let pa = page.addr(A::PAGE_SHIFT).add(off);
                self.medium_io(t, pa, n);
                t.pos += n;
                left -= n;
                off = 0;
            }
        }
    }

    /// `n` bytes at `t.pos` of the medium to (READ) or from (WRITE) the
    /// user page bytes at `pa`; `n` never crosses a page of either side
    /// for a file (bvecs and file blocks are both page-split here).
    fn medium_io(&mut self, t: &BdevIo, pa: vmemu_arch::PhysAddr, n: u64) {
        match t.medium {
            Medium::Bdev(dev) => {
                let medium = &mut self.bdevs[dev].data;
                let mut bytes = vec![0u8; n as usize];
                medium.read(t.pos, &mut bytes);
                match t.dir {
                    Dir::Read => {
                        let _ = self.m.phys.write(pa, &bytes);
                    }
                    Dir::Write => {
                        // What a failed read leaves in `bytes` (nothing, or
                        // the part before guest memory ends) is stored.
                        let _ = self.m.phys.read(pa, &mut bytes);
                        medium.write(t.pos, &bytes);
                    }
                }
            }
            Medium::File(file) => {
                let mut done = 0;
                while done < n {
                    let pos = t.pos + done;
                    let off = pos % A::PAGE_SIZE;
                    let len = (n - done).min(A::PAGE_SIZE - off);
                    let Some(fp) = self.shmem_get_page(file, pos / A::PAGE_SIZE) else {
                        return;
                    };
                    let fa = fp.addr(A::PAGE_SHIFT).add(off);
                    let ua = pa.add(done);
                    let mut buf = vec![0u8; len as usize];
                    let (from, to) = match t.dir {
                        Dir::Read => (fa, ua),
                        Dir::Write => (ua, fa),
                    };
                    let _ = self.m.phys.read(from, &mut buf);
                    let _ = self.m.phys.write(to, &buf);
                    done += len;
                }
            }
        }
    }

    fn blk_aligned(&mut self, iter: &IovIter, pos: u64) -> bool {
        self.dio_aligned(iter, pos, LOGICAL_BLOCK_SIZE - 1)
    }

    /// `blkdev_direct_IO(iocb, iter)` for a synchronous kiocb at `pos`.
    pub fn blkdev_direct_io(
        &mut self,
        iter: &mut IovIter,
        pos: u64,
    ) -> (Result<u64, Errno>, IoReport) {
        let (mut io, before) = IoReport::start("blkdev_direct_IO", self);
        let bio_iov_loop = self.caller_knobs().bio_iov_loop;
        let bvec_set = bio_iov_loop && iter.ty == IterType::Bvec;
        let nr = if bvec_set {
            0 // bio_iov_vecs_to_alloc: the iterator's own bvecs are used
        } else {
            self.iov_iter_npages(iter, BIO_MAX_PAGES + 1)
        };
        if iter.count == 0 || (nr == 0 && !bvec_set) {
            io.finish(self, before);
            return (Ok(0), io);
        }
        if !self.blk_aligned(iter, pos) {
            io.note("(pos | iov_iter_alignment) is not a multiple of the 512-byte logical block: -EINVAL");
            io.finish(self, before);
            return (Err(Errno::EINVAL), io);
        }
        let mut dio = Dio {
            io: &mut io,
            bio_iov_loop,
            whole_error: false,
            target: None,
        };
        let r = self.blkdev_dio_bios(iter, nr, &mut dio);
        io.finish(self, before);
        (r, io)
    }

    /// `blkdev_direct_IO` of the syscall layer (6.13 `block/fops.c`) on
    /// block device `dev` at `pos`: a zero count is 0; `pos` not a multiple
    /// of the logical block size, or the iterator not aligned (addresses to
    /// the DMA alignment, lengths to the block size: `blkdev_dio_invalid`)
    /// → `-EINVAL`; then the bios of [`Sys::blkdev_dio_bios`] with 6.x's
    /// `bio_iov_iter_get_pages` loop, moving the data: up to
    /// [`BIO_MAX_PAGES`] pages in one bio, where pinning stops at the first
    /// page that cannot be had (a short result, or `-EFAULT` when the bio
    /// holds nothing); more pages take several bios, and a later one that
    /// pins nothing fails the **whole** call, although the earlier bios
    /// moved their data.
    pub fn blkdev_direct_io_bdev(
        &mut self,
        dev: usize,
        pos: u64,
        iter: &mut IovIter,
        dir: Dir,
    ) -> Result<u64, Errno> {
        if iter.count == 0 {
            return Ok(0);
        }
        let (lbs, dma) = {
            let d = &self.bdevs[dev];
            (d.logical_block_size, d.dma_alignment)
        };
        if pos & (lbs - 1) != 0 || !self.dio_aligned(iter, pos, dma) {
            return Err(Errno::EINVAL);
        }
        let nr = self.iov_iter_npages(iter, BIO_MAX_PAGES + 1);
        let (mut io, _) = IoReport::start("blkdev_direct_IO", self);
        let mut dio = Dio {
            io: &mut io,
            bio_iov_loop: true,
            whole_error: true,
            target: Some(BdevIo {
                medium: Medium::Bdev(dev),
                pos,
                dir,
            }),
        };
        self.blkdev_dio_bios(iter, nr, &mut dio)
    }

    /// The bios of `blkdev_direct_IO` for an iterator of `nr` pages (at
    /// most [`BIO_MAX_PAGES`] + 1, `bio_iov_vecs_to_alloc`):
    /// `__blkdev_direct_IO_simple` puts up to [`BIO_MAX_PAGES`] in one bio
    /// (a short one gives a short result), `__blkdev_direct_IO` a bio per
    /// `bio_iov_iter_get_pages` call ([`Sys::bio_per_call_loop`]).
    pub fn blkdev_dio_bios(
        &mut self,
        iter: &mut IovIter,
        nr: u64,
        dio: &mut Dio<'_>,
    ) -> Result<u64, Errno> {
        if nr > BIO_MAX_PAGES {
            dio.io.model = "__blkdev_direct_IO".into();
            return self.bio_per_call_loop(iter, nr.min(BIO_MAX_PAGES), dio);
        }
        dio.io.model = "__blkdev_direct_IO_simple".into();
        if nr <= DIO_INLINE_BIO_VECS {
            dio.io.note(format!(
                "{nr} bvec(s) fit the {DIO_INLINE_BIO_VECS} inline (on-stack) bio_vecs: no allocation"
            ));
        } else {
            dio.io.allocations += 1;
            dio.io.note(format!("kmalloc'd array of {nr} bvecs"));
        }
        let mut bio = Bio::new(nr.max(1));
        bio.mem_align = self.dio_dma_mask(dio);
        let wanted = iter.count;
        let mut r = self.bio_iov_iter_get_pages_as(&mut bio, iter, dio.bio_iov_loop);
        if r.is_ok() {
            r = self.bio_split_check(&bio, self.dio_dma_mask(dio));
        }
        let target = if r.is_ok() { dio.target.as_mut() } else { None };
        self.bio_done(&bio, dio.io, target);
        if r.is_ok() && bio.size < wanted {
            dio.io.note(format!(
                "short {}: {} of {wanted} bytes (one bio_iov_iter_get_pages call)",
                if iter.dir == Dir::Read {
                    "read"
                } else {
                    "write"
                },
                bio.size
            ));
        }
        r.map(|()| bio.size)
    }

    /// `__blkdev_direct_IO` / `iomap_dio_actor`: a bio sized by
    /// `iov_iter_npages(iter, 256)` per `bio_iov_iter_get_pages` call; a
    /// bio that gathers nothing ends the call as [`Dio::whole_error`] says.
    pub(crate) fn bio_per_call_loop(
        &mut self,
        iter: &mut IovIter,
        mut nr: u64,
        dio: &mut Dio<'_>,
    ) -> Result<u64, Errno> {
        let mut size = 0u64;
        let mut failed = None;
        loop {
            let mut bio = Bio::new(nr.max(1));
            bio.mem_align = self.dio_dma_mask(dio);
            dio.io.allocations += 1;
            let r = self.bio_iov_iter_get_pages_as(&mut bio, iter, dio.bio_iov_loop);
            // A bio the split path refuses completes with its error and
            // moves nothing; the loop goes on (6.18, `dio_align_in_bio`).
            let split = r.and_then(|()| self.bio_split_check(&bio, self.dio_dma_mask(dio)));
            let target = if split.is_ok() {
                dio.target.as_mut()
            } else {
                None
            };
            self.bio_done(&bio, dio.io, target);
            if let Err(e) = r {
                return match failed {
                    Some(f) => Err(f),
                    None if size > 0 && !dio.whole_error => Ok(size),
                    None => Err(e),
                };
            }
            match split {
                Ok(()) => size += bio.size,
                Err(e) => failed = failed.or(Some(e)),
            }
            nr = self.iov_iter_npages(iter, BIO_MAX_PAGES);
            if nr == 0 {
                break;
            }
        }
        match failed {
            Some(e) if dio.whole_error || size == 0 => Err(e),
            _ => Ok(size),
        }
    }

    /// The DMA alignment mask the bios of `dio` are checked against: the
    /// syscall layer's device's, or the block size for the caller model.
    fn dio_dma_mask(&self, dio: &Dio<'_>) -> u64 {
        dio.target
            .map_or(LOGICAL_BLOCK_SIZE - 1, |t| match t.medium {
                Medium::Bdev(dev) => self.bdevs[dev].dma_alignment,
                Medium::File(_) => DMA_ALIGNMENT,
            })
    }

    /// `iomap_dio_rw` over one mapped extent covering the request
    /// (`iomap_dio_actor`), synchronous, at `pos`, for a file system that
    /// passes no `IOMAP_DIO_PARTIAL` (ext4, XFS). A fault after earlier
    /// bios moved data fails the whole call: 6.13
    /// `fs/iomap/direct-io.c` `iomap_dio_bio_iter` returns the bytes it
    /// moved, the next `iomap_iter` round fails at once, and
    /// `__iomap_dio_rw` turns that error into `dio->error`, which
    /// `iomap_dio_complete` returns instead of `dio->size`; v4.10/v4.17
    /// `fs/iomap.c` `iomap_dio_actor` returns the error itself
    /// (`return ret` after a failed `bio_iov_iter_get_pages`).
    pub fn iomap_dio_rw(&mut self, iter: &mut IovIter, pos: u64) -> (Result<u64, Errno>, IoReport) {
        let (mut io, before) = IoReport::start("iomap_dio_actor", self);
        if !self.blk_aligned(iter, pos) {
            io.note("(pos | length | iov_iter_alignment) is not a multiple of the 512-byte logical block: -EINVAL");
            io.finish(self, before);
            return (Err(Errno::EINVAL), io);
        }
        let length = iter.count;
        let mut it = iter.clone();
        let nr = self.iov_iter_npages(&it, BIO_MAX_PAGES);
        let bio_iov_loop = self.caller_knobs().bio_iov_loop;
        let mut dio = Dio {
            io: &mut io,
            bio_iov_loop,
            whole_error: true,
            target: None,
        };
        let r = if nr == 0 {
            Ok(0)
        } else {
            self.bio_per_call_loop(&mut it, nr, &mut dio)
        };
        if r.is_ok() {
            self.iov_iter_advance(iter, length);
        }
        io.finish(self, before);
        (r, io)
    }
}
