//! Where block-device direct I/O checks alignment, per the knob
//! `dio_align_in_bio` (6.13 → 6.18).
//!
//! * Up to 6.17 (`blkdev_dio_invalid` with `bdev_iter_is_aligned`, and
//!   `iomap_dio_bio_iter`'s `iov_iter_alignment`): the position, every
//!   iovec's address and every length, before any page is touched; each
//!   `__bio_iov_iter_get_pages` batch is trimmed to the logical block size.
//! * 6.18 (Keith Busch's series, applied for 6.18: fec2e705729d "block:
//!   check for valid bio while splitting", 743bf2e0c49c "block: add size
//!   alignment to bio_iov_iter_get_pages", 20a0e6276edb "block: align the
//!   bio after building it", 5ff3f74e145a / 7eac33186957 "block/iomap:
//!   simplify direct io validity check"): only `(pos | count)` against the
//!   block size up front; the whole bio is aligned down after it is built
//!   (`bio_iov_iter_align_down`), and the split path (`bio_split_rw_at`,
//!   reached only when `bio_may_need_split`) fails a bio whose bvecs'
//!   offsets or lengths are not multiples of the DMA alignment.
//! * Proposed on top (overlay `+dio-extract-align`, knob
//!   `dio_extract_align`): Keith Busch's "block: validate user space
//!   vectors during extraction" checks, before each extraction, the
//!   iterator's current segment against the DMA alignment and fails the
//!   whole I/O with `-EINVAL`, so the outcome no longer depends on whether
//!   the bio happens to need splitting (one bvec within a page does not).

use vmemu_arch::Arch;
use vmemu_mm::Errno;

use super::bio::{Bio, LOGICAL_BLOCK_SIZE};
use crate::Sys;
use crate::iov_iter::IovIter;

impl<A: Arch> Sys<A> {
    /// The up-front check of a direct I/O at `pos`: `true` if it may go on.
    /// 6.18 `blkdev_dio_invalid`: `(pos | count)` against the block size.
    /// Before: the position and [`Sys::iov_iter_is_aligned`] (addresses to
    /// `addr_mask`, lengths to the block size).
    pub(crate) fn dio_aligned(&self, iter: &IovIter, pos: u64, addr_mask: u64) -> bool {
        let lbs_mask = LOGICAL_BLOCK_SIZE - 1;
        if self.m.knobs.dio_align_in_bio {
            (pos | iter.count) & lbs_mask == 0
        } else {
            pos & lbs_mask == 0 && Self::iov_iter_is_aligned(iter, addr_mask, lbs_mask)
        }
    }

    /// How much of a `__bio_iov_iter_get_pages` batch of `bytes` is given
    /// back: the part past the last whole block before 6.18, none after
    /// (the whole bio is aligned at the end, [`Sys::bio_iov_iter_align_down`]).
    pub(crate) fn bio_batch_trim(&self, bytes: u64) -> u64 {
        if self.m.knobs.dio_align_in_bio {
            0
        } else {
            bytes & (LOGICAL_BLOCK_SIZE - 1)
        }
    }

    /// 6.18 `bio_iov_iter_align_down`: the bio's size rounded down to the
    /// block size; the bytes cut are reverted in `iter`, whole bvecs cut
    /// release their pages. A bio left empty is `-EFAULT`. A no-op before
    /// 6.18 (each batch was trimmed instead).
    pub(crate) fn bio_iov_iter_align_down(
        &mut self,
        bio: &mut Bio,
        iter: &mut IovIter,
    ) -> Result<(), Errno> {
        if !self.m.knobs.dio_align_in_bio {
            return Ok(());
        }
        let mut nbytes = bio.size & (LOGICAL_BLOCK_SIZE - 1);
        if nbytes == 0 {
            return Ok(());
        }
        let _ = self.iov_iter_revert(iter, nbytes);
        bio.size -= nbytes;
        while nbytes > 0 {
            let Some(last) = bio.vecs.last_mut() else {
                break;
            };
            if nbytes < last.2 {
                last.2 -= nbytes;
                break;
            }
            nbytes -= last.2;
            let (pages, _, _) = bio.vecs.pop().unwrap_or_default();
            for p in pages {
                bio.released_early += 1;
                if bio.pinned {
                    let _ = self.m.unpin_user_page(p);
                } else {
                    let _ = self.m.put_page(p);
                }
            }
        }
        if bio.vecs.is_empty() {
            Err(Errno::EFAULT)
        } else {
            Ok(())
        }
    }

    /// 6.18 submission of a built bio: `bio_may_need_split` (more than one
    /// bvec, or one that ends past its first page) sends it through
    /// `bio_split_rw_at`, which fails it with `-EINVAL` if a bvec's offset
    /// or length is not a multiple of `dma_mask + 1`. Always `Ok` before
    /// 6.18 (the vectors were checked up front).
    pub(crate) fn bio_split_check(&self, bio: &Bio, dma_mask: u64) -> Result<(), Errno> {
        if !self.m.knobs.dio_align_in_bio {
            return Ok(());
        }
        let may_need_split = match bio.vecs.as_slice() {
            [] => false,
            [(_, off, len)] => off + len > A::PAGE_SIZE,
            _ => true,
        };
        let misaligned = bio
            .vecs
            .iter()
            .any(|(_, off, len)| (off | len) & dma_mask != 0);
        if may_need_split && misaligned {
            Err(Errno::EINVAL)
        } else {
            Ok(())
        }
    }

    /// Under `dio_extract_align` (the proposed patch), before each
    /// extraction into `bio`: the iterator's current segment must start
    /// and end on the bio's `mem_align` (`iter_iov_addr | iter_iov_len`);
    /// otherwise the pages pinned so far are released and the whole I/O is
    /// `-EINVAL`. A no-op without the knob, for bvec iterators and for
    /// bios without an alignment (`mem_align` 0).
    pub(crate) fn bio_extract_align_check(
        &mut self,
        bio: &mut Bio,
        iter: &IovIter,
    ) -> Result<(), Errno> {
        if !self.m.knobs.dio_extract_align || bio.mem_align == 0 || iter.count == 0 {
            return Ok(());
        }
        let Some(seg) = iter.iov.get(iter.idx) else {
            return Ok(());
        };
        let addr = seg.base.wrapping_add(iter.iov_offset).0;
        let len = seg.len.saturating_sub(iter.iov_offset).min(iter.count);
        if (addr | len) & bio.mem_align == 0 {
            return Ok(());
        }
        self.bio_release_pages(bio);
        bio.vecs.clear();
        bio.size = 0;
        Err(Errno::EINVAL)
    }
}
