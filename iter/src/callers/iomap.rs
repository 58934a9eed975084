//! `O_DIRECT` reads and writes of a regular file on an ext4- or XFS-like
//! file system: the syscall layer's `->read_iter`/`->write_iter` of a file
//! declared `file F SIZE fs=ext4` (or `fs=xfs`) and opened with
//! `open(F, O_DIRECT)`.
//!
//! The file system modelled: 4 KiB blocks on a device with 512-byte logical
//! blocks and the default DMA alignment (511); the blocks of the file are
//! allocated up to the block holding EOF, nothing past it (no holes inside
//! the file, no preallocation, no unwritten extents). Its page cache is
//! coherent with the blocks (the kernel writes the range back and
//! invalidates it around a direct I/O), so the bios move data between the
//! user pages and the file's page cache pages ([`Medium::File`]).
//!
//! The user pages are gathered by the one `bio_iov_iter_get_pages` model of
//! [`super::bio`] (references in v4.x, pins and the fill loop in 6.x), a
//! bio per call sized by `iov_iter_npages(iter, 256)`, as `iomap_dio_actor`
//! (v4.10/v4.17 fs/iomap.c) and `iomap_dio_bio_iter` (6.13
//! fs/iomap/direct-io.c) build them.
//!
//! Per file system and profile:
//! * **XFS** (all profiles) and **ext4** where the profile has
//!   `ext4_iomap_dio` (v5.5+): `iomap_dio_rw` with no `IOMAP_DIO_PARTIAL`.
//!   A read at or past EOF is 0. The mapped extent is checked — `(pos |
//!   length)` against the logical block, and the iterator's addresses and
//!   lengths (6.13 `bdev_iter_is_aligned`; v4.x `iov_iter_alignment`; 6.18
//!   only `(pos | length)`, the vectors at bio split) — `-EINVAL`. A bio
//!   that gathers nothing after earlier bios moved data fails the **whole**
//!   call with `-EFAULT` (the earlier bios' data did move). Past the block
//!   holding EOF the file is a hole: 6.13 `iomap_dio_hole_iter` zero-fills
//!   the user buffer to the end of the request (nothing zeroed: `-EFAULT`),
//!   v4.17 stops at `i_size` (`iomap_dio_read_stops_at_eof`), v4.10 zeroes
//!   and ignores a short count (`iomap_dio_hole_zero_checked`). The result
//!   is clipped to `i_size - pos` (`iomap_dio_complete`).
//! * **ext4 before v5.5**: `ext4_direct_IO` → `__blockdev_direct_IO`
//!   (fs/direct-io.c): `(pos | iov_iter_alignment)` against the logical
//!   block (after the fs block), then 0 at or past EOF; blocks up to the
//!   one holding EOF are read, then `do_direct_IO` "hit eof" stops — the
//!   user buffer past it is left alone; `dio_complete` ignores `-EFAULT`
//!   once some I/O was done (the bytes of the bios before the fault) and
//!   clips to `i_size - pos`; `generic_file_read_iter` then reads the rest
//!   of a short direct read inside the file through the page cache. Its
//!   direct writes (the zero-page rule of [`super::dio`], orphan handling)
//!   are not modelled.
//!
//! Writes (XFS; ext4 from v5.5): XFS checks `(pos | count)` against the
//! logical block first (`xfs_file_dio_write`); blocks past EOF are
//! allocated; `i_size` moves to the end of a write that succeeded
//! (`->end_io`), not of one that failed.

use vmemu_arch::{Arch, Family};
use vmemu_mm::mm::FileId;
use vmemu_mm::{Errno, EventKind};

use super::IoReport;
use super::bio::{BIO_MAX_PAGES, BdevIo, Dio, LOGICAL_BLOCK_SIZE, Medium};
use crate::Sys;
use crate::iov_iter::IovIter;

/// The file system block size of the modelled ext4/XFS.
pub const FS_BLOCK_SIZE: u64 = 4096;

/// The file system a regular file lives on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum FileFs {
    /// tmpfs (the default): no `->direct_IO` for an `O_DIRECT` open.
    #[default]
    Tmpfs,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
}

impl FileFs {
    /// The name a workload spells (`fs=ext4`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FileFs::Tmpfs => "tmpfs",
            FileFs::Ext4 => "ext4",
            FileFs::Xfs => "xfs",
        }
    }

    /// Parses a name.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        [FileFs::Tmpfs, FileFs::Ext4, FileFs::Xfs]
            .into_iter()
            .find(|f| f.name() == s)
    }
}

impl<A: Arch> Sys<A> {
    /// The file system of `file`.
    #[must_use]
    pub fn file_fs(&self, file: FileId) -> FileFs {
        self.file_fs.get(&file).copied().unwrap_or_default()
    }

    /// Whether `file`'s direct I/O goes through `iomap_dio_rw` under this
    /// profile (XFS always; ext4 from v5.5).
    fn file_dio_iomap(&self, file: FileId) -> bool {
        match self.file_fs(file) {
            FileFs::Xfs => true,
            FileFs::Ext4 => self.m.knobs.ext4_iomap_dio,
            FileFs::Tmpfs => false,
        }
    }

    /// Whether this profile's direct writes of `file` are modelled (not
    /// ext4's fs/direct-io.c writes).
    #[must_use]
    pub fn file_dio_write_modelled(&self, file: FileId) -> bool {
        self.file_dio_iomap(file)
    }

    /// The extent check of `iomap_dio_bio_iter` (6.13) / `iomap_dio_actor`
    /// (v4.x) for `length` bytes at `pos`: `true` if the I/O may go on.
    fn iomap_extent_aligned(&mut self, iter: &IovIter, pos: u64, length: u64) -> bool {
        let mask = LOGICAL_BLOCK_SIZE - 1;
        if (pos | length) & mask != 0 {
            return false;
        }
        if self.m.knobs.dio_align_in_bio {
            // 6.18: the vectors are checked when the bio is split.
            return true;
        }
        if self.m.knobs.family == Family::Modern {
            // 6.13 bdev_iter_is_aligned(bdev, iter).
            Self::iov_iter_is_aligned(iter, super::bio::DMA_ALIGNMENT, mask)
        } else {
            // v4.x: (pos | length | iov_iter_alignment(iter)).
            self.iov_iter_alignment(iter) & mask == 0
        }
    }

    /// The bios of one mapped extent of `length` bytes at `pos` of `file`
    /// (the iterator truncated to it, then re-expanded): `Ok(bytes)`, or
    /// the error that fails the whole `iomap_dio_rw` (`whole`), or, for
    /// fs/direct-io.c, the bytes moved before a failed gathering.
    fn file_dio_bios(
        &mut self,
        file: FileId,
        pos: u64,
        length: u64,
        iter: &mut IovIter,
        whole: bool,
    ) -> Result<u64, Errno> {
        let orig = iter.count;
        iter.truncate(length);
        let nr = self.iov_iter_npages(iter, BIO_MAX_PAGES);
        let (mut io, _) = IoReport::start("iomap_dio_rw", self);
        let mut dio = Dio {
            io: &mut io,
            bio_iov_loop: self.caller_knobs().bio_iov_loop,
            whole_error: whole,
            target: Some(BdevIo {
                medium: Medium::File(file),
                pos,
                dir: iter.dir,
            }),
        };
        let r = if nr == 0 {
            Ok(0)
        } else {
            self.bio_per_call_loop(iter, nr, &mut dio)
        };
        let left = iter.count;
        iter.reexpand(left + (orig - length));
        r
    }

    /// `->read_iter` of an `O_DIRECT` file on ext4/XFS at `*pos` (the
    /// caller has returned 0 for an empty iterator). `*pos` advances by
    /// the bytes read.
    pub fn file_direct_read(
        &mut self,
        file: FileId,
        pos: &mut u64,
        to: &mut IovIter,
    ) -> Result<u64, Errno> {
        let isize = self.m.files[file as usize].size;
        let start = *pos;
        let mapped_end = isize.next_multiple_of(FS_BLOCK_SIZE);
        if !self.file_dio_iomap(file) {
            return self.ext4_direct_read_legacy(file, pos, to, mapped_end);
        }
        // __iomap_dio_rw / v4.x iomap_dio_rw: a read at or past EOF is 0.
        if start >= isize {
            return Ok(0);
        }
        let count = to.count;
        let length = count.min(mapped_end - start);
        if !self.iomap_extent_aligned(to, start, length) {
            return Err(Errno::EINVAL);
        }
        let mut size = self.file_dio_bios(file, start, length, to, true)?;
        let hole = count - length;
        if hole > 0 && !self.m.knobs.iomap_dio_read_stops_at_eof {
            // The hole past the block holding EOF (IOMAP_HOLE).
            let hpos = start + length;
            if !self.m.knobs.iomap_dio_hole_zero_checked
                && !self.iomap_extent_aligned(to, hpos, hole)
            {
                // v4.10 iomap_dio_actor checks every extent, holes too.
                return Err(Errno::EINVAL);
            }
            let zeroed = self.iov_iter_zero(hole, to);
            if self.m.knobs.iomap_dio_hole_zero_checked {
                // 6.13 iomap_dio_hole_iter: a short zeroing ends the round
                // with what was zeroed; the next round zeroes nothing and
                // its -EFAULT becomes dio->error.
                if zeroed < hole {
                    return Err(Errno::EFAULT);
                }
                size += zeroed;
            } else if zeroed < hole {
                self.m.event(
                    EventKind::SoftLockup,
                    format!(
                        "v4.10 iomap_dio_actor: iov_iter_zero zeroed {zeroed} of the {hole}-byte hole past EOF; its count is ignored, the hole's length is returned, and iomap_dio_rw's `while (iov_iter_count(iter) > 0)` maps further holes at ever larger offsets while the iterator makes no progress: the read never returns"
                    ),
                );
                return Err(Errno::EDEADLK);
            } else {
                size += hole;
            }
        }
        // iomap_dio_complete: a short read stops at i_size.
        let ret = size.min(isize - start);
        *pos += ret;
        Ok(ret)
    }

    /// v4.x ext4 (`ext4_direct_IO_read` → `__blockdev_direct_IO`), then
    /// `generic_file_read_iter`'s page-cache read of what a short direct
    /// read left inside the file.
    fn ext4_direct_read_legacy(
        &mut self,
        file: FileId,
        pos: &mut u64,
        to: &mut IovIter,
        mapped_end: u64,
    ) -> Result<u64, Errno> {
        let isize = self.m.files[file as usize].size;
        let start = *pos;
        // do_blockdev_direct_IO: the fs block, then the logical block.
        if (start | self.iov_iter_alignment(to)) & (LOGICAL_BLOCK_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if start >= isize {
            return Ok(0);
        }
        let count = to.count;
        let length = count.min(mapped_end - start);
        let moved = self.file_dio_bios(file, start, length, to, false)?;
        // dio_complete: the short-read clip.
        let direct = moved.min(isize - start);
        *pos += direct;
        if direct == count || *pos >= isize {
            return Ok(direct);
        }
        // generic_file_read_iter: the rest through the page cache. The
        // iterator stands where the direct part stopped gathering; it is
        // rewound to the clipped position first (iov_iter_revert).
        let _ = self.iov_iter_revert(to, moved - direct);
        match self.shmem_file_read_iter(file, pos, to) {
            Ok(n) => Ok(direct + n),
            Err(_) if direct > 0 => Ok(direct),
            Err(e) => Err(e),
        }
    }

    /// `->write_iter` of an `O_DIRECT` file on XFS (or ext4 from v5.5) at
    /// `*pos`: XFS's up-front `(pos | count)` check, the extent check, the
    /// bios (a failed later bio fails the whole write), and `i_size` moved
    /// to the end of a write that succeeded.
    pub fn file_direct_write(
        &mut self,
        file: FileId,
        pos: &mut u64,
        from: &mut IovIter,
    ) -> Result<u64, Errno> {
        let count = from.count;
        let start = *pos;
        let mask = LOGICAL_BLOCK_SIZE - 1;
        if self.file_fs(file) == FileFs::Xfs && (start | count) & mask != 0 {
            return Err(Errno::EINVAL);
        }
        if !self.iomap_extent_aligned(from, start, count) {
            return Err(Errno::EINVAL);
        }
        // Make sure the page cache knows the file's original data before
        // the bios write into it (shmem_get_page keeps it).
        let isize = self.m.files[file as usize].size;
        self.file_data_end.entry(file).or_insert(isize);
        let n = self.file_dio_bios(file, start, count, from, true)?;
        let f = &mut self.m.files[file as usize];
        f.size = f.size.max(start + n);
        *pos += n;
        Ok(n)
    }
}
