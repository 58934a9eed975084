//! System calls over the iterator layer, with the argument checks and
//! partial-result rules of the 6.13 kernel:
//!
//! * `readv`/`writev`/`preadv`/`pwritev` (`fs/read_write.c`: `do_readv`,
//!   `do_preadv`, `vfs_readv`, `rw_verify_area`) on pipes ([`Sys::pipe_read`],
//!   [`Sys::pipe_write`]), regular files ([`Sys::shmem_file_read_iter`],
//!   [`Sys::shmem_file_write_iter`]) and block devices
//!   ([`Sys::blkdev_read_iter`], [`Sys::blkdev_write_iter`], `O_DIRECT`
//!   through the one block-device direct-I/O model of
//!   [`crate::callers::bio`], [`Sys::blkdev_direct_io_bdev`]), and
//!   `O_DIRECT` files on ext4/XFS ([`Sys::file_direct_read`],
//!   [`Sys::file_direct_write`], [`crate::callers::iomap`]);
//! * `vmsplice` both ways (`fs/splice.c`);
//! * `process_vm_readv`/`process_vm_writev` (`mm/process_vm_access.c`).
//!
//! # Files
//!
//! Descriptors index [`Sys::fds`]. A regular file is a page-cache file of the
//! emulated mm ([`vmemu_mm::Machine::create_file`]) read and written the way
//! tmpfs does it (`shmem_file_read_iter`, `generic_perform_write` with
//! `shmem_write_end`, which accepts short copies): short copies count byte
//! by byte. A block device ([`BlockDev`]) has 512-byte logical blocks and
//! the default DMA alignment (511); its page cache is modelled as coherent
//! with the medium.
//!
//! # What is not modelled
//!
//! Sleeping (every descriptor behaves as `O_NONBLOCK`; vmsplice as with
//! `SPLICE_F_NONBLOCK`), signals (SIGPIPE), the current file position of
//! `readv` on files beyond a plain `f_pos`, credentials (`mm_access` always
//! succeeds), compat iovecs.

use std::collections::BTreeMap;

use vmemu_arch::{Arch, Pfn, VirtAddr};
use vmemu_mm::mm::FileId;
use vmemu_mm::sync::TaskId;
use vmemu_mm::{Errno, GupFlags};

use crate::Sys;
use crate::callers::iomap::FileFs;
use crate::iov_iter::{Dir, IovIter, Iovec, UIO_MAXIOV};
use crate::pipe::{BufOps, PIPE_BUF_FLAG_GIFT};
use crate::splice::{SPLICE_F_GIFT, SPLICE_F_NONBLOCK};

/// `O_DIRECT` (x86 and arm64 value).
pub const O_DIRECT: u32 = 0o40000;
/// `SPLICE_F_ALL`: the flags `vmsplice` accepts.
pub const SPLICE_F_ALL: u32 = 0x0f;
/// `PVM_MAX_KMALLOC_PAGES`: pages of `struct page *` process_vm_rw_core
/// allocates at most.
pub const PVM_MAX_KMALLOC_PAGES: u64 = 2;
/// `PVM_MAX_PP_ARRAY_COUNT`: entries of the on-stack page array; larger
/// remote iovecs use a kmalloc'ed one.
pub const PVM_MAX_PP_ARRAY_COUNT: u64 = 16;
/// `BIO_MAX_VECS`.
pub const BIO_MAX_VECS: u64 = crate::callers::bio::BIO_MAX_PAGES;
/// Logical block size of the emulated block devices.
pub const BDEV_LOGICAL_BLOCK_SIZE: u64 = crate::callers::bio::LOGICAL_BLOCK_SIZE;
/// `SECTOR_SIZE - 1`: the default `dma_alignment` of a request queue.
pub const BDEV_DMA_ALIGNMENT: u64 = crate::callers::bio::DMA_ALIGNMENT;

/// What an open file is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FileKind {
    /// The read end of a pipe.
    PipeRead(usize),
    /// The write end of a pipe.
    PipeWrite(usize),
    /// A regular (tmpfs-like) file of the page cache.
    Regular(FileId),
    /// A block device.
    Bdev(usize),
}

/// `struct file` (the parts the syscalls look at).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OpenFile {
    /// What it is.
    pub kind: FileKind,
    /// `f_pos` (files and block devices; pipes are streams).
    pub f_pos: u64,
    /// Opened with `O_DIRECT` (`IOCB_DIRECT` on every kiocb).
    pub direct: bool,
}

impl OpenFile {
    /// `FMODE_READ`.
    #[must_use]
    pub fn can_read(&self) -> bool {
        !matches!(self.kind, FileKind::PipeWrite(_))
    }
    /// `FMODE_WRITE`.
    #[must_use]
    pub fn can_write(&self) -> bool {
        !matches!(self.kind, FileKind::PipeRead(_))
    }
    /// `FMODE_PREAD`/`FMODE_PWRITE` (pipes are `stream_open`ed without them).
    #[must_use]
    pub fn can_pread(&self) -> bool {
        matches!(self.kind, FileKind::Regular(_) | FileKind::Bdev(_))
    }
}

/// An emulated block device: a [`Medium`] with
/// [`BDEV_LOGICAL_BLOCK_SIZE`]-byte logical blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDev {
    /// The medium.
    pub data: Medium,
    /// `bdev_logical_block_size`.
    pub logical_block_size: u64,
    /// `bdev_dma_alignment`.
    pub dma_alignment: u64,
}

/// Bytes of a [`Medium`] stored per written chunk.
const MEDIUM_CHUNK: usize = 4096;

/// A block device's medium: `len` bytes that hold [`pattern_byte`] until
/// written. Only the 4 KiB chunks written are stored, so host memory and
/// time follow the bytes a workload reads and writes, not the size it
/// gives the device (a fresh 4 MiB device allocated and filled its 4 MiB
/// for every run: a fifth of `vmemu matrix`'s host page faults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Medium {
    len: u64,
    page_size: u64,
    written: BTreeMap<u64, Box<[u8]>>,
}

impl Medium {
    /// `len` bytes of [`pattern_byte`] for pages of `page_size` bytes.
    #[must_use]
    pub fn new(len: u64, page_size: u64) -> Self {
        Self {
            len,
            page_size,
            written: BTreeMap::new(),
        }
    }

    /// The size in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the medium has no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks of `buf.len()` bytes from `at`: (chunk index, offset in
    /// the chunk, offset in `buf`, length).
    fn pieces(at: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
        let mut off = 0;
        std::iter::from_fn(move || {
            (off < len).then(|| {
                let pos = at + off as u64;
                let in_chunk = (pos % MEDIUM_CHUNK as u64) as usize;
                let n = (MEDIUM_CHUNK - in_chunk).min(len - off);
                let piece = (pos / MEDIUM_CHUNK as u64, in_chunk, off, n);
                off += n;
                piece
            })
        })
    }

    /// Copies the bytes at `at..at + buf.len()` (inside the medium) into
    /// `buf`.
    pub fn read(&self, at: u64, buf: &mut [u8]) {
        assert!(at + buf.len() as u64 <= self.len, "read past the medium");
        for (chunk, in_chunk, off, n) in Self::pieces(at, buf.len()) {
            let out = &mut buf[off..off + n];
            match self.written.get(&chunk) {
                Some(c) => out.copy_from_slice(&c[in_chunk..in_chunk + n]),
                None => fill_pattern(out, at + off as u64, self.page_size),
            }
        }
    }

    /// Stores `buf` at `at..at + buf.len()` (inside the medium).
    pub fn write(&mut self, at: u64, buf: &[u8]) {
        assert!(at + buf.len() as u64 <= self.len, "write past the medium");
        for (chunk, in_chunk, off, n) in Self::pieces(at, buf.len()) {
            let page_size = self.page_size;
            let c = self.written.entry(chunk).or_insert_with(|| {
                let mut c = vec![0u8; MEDIUM_CHUNK].into_boxed_slice();
                fill_pattern(&mut c, chunk * MEDIUM_CHUNK as u64, page_size);
                c
            });
            c[in_chunk..in_chunk + n].copy_from_slice(&buf[off..off + n]);
        }
    }

    /// Every byte, in order.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; usize::try_from(self.len).expect("a medium fits in memory")];
        self.read(0, &mut v);
        v
    }
}

/// The byte a fresh file page or block device holds at `offset`: the same
/// pattern [`vmemu_mm::Machine::find_or_read_page`] fills page cache pages
/// with, `(index * 7 + offset_in_page) as u8`.
#[must_use]
pub fn pattern_byte(offset: u64, page_size: u64) -> u8 {
    ((offset / page_size) * 7 + offset % page_size) as u8
}

/// The first `size` bytes of [`pattern_byte`].
#[must_use]
pub fn pattern_bytes(size: u64, page_size: u64) -> Vec<u8> {
    let mut data = vec![0u8; usize::try_from(size).expect("a device fits in memory")];
    fill_pattern(&mut data, 0, page_size);
    data
}

/// Fills `buf` with [`pattern_byte`] from `offset` on, copying runs of the
/// ramp 0, 1, .., 255, 0, 1, .. instead of computing byte by byte: within
/// a page the pattern is that ramp, starting at `index * 7 mod 256`.
fn fill_pattern(buf: &mut [u8], offset: u64, page_size: u64) {
    const RAMP: [u8; 512] = {
        let mut r = [0u8; 512];
        let mut i = 0;
        while i < 512 {
            r[i] = i as u8;
            i += 1;
        }
        r
    };
    let mut off = 0;
    while off < buf.len() {
        let pos = offset + off as u64;
        let to_page_end = page_size - pos % page_size;
        let n = usize::try_from(to_page_end)
            .unwrap_or(usize::MAX)
            .min(buf.len() - off)
            .min(256);
        let start = usize::from(pattern_byte(pos, page_size));
        buf[off..off + n].copy_from_slice(&RAMP[start..start + n]);
        off += n;
    }
}

impl<A: Arch> Sys<A> {
    // ------------------------------------------------------------------
    // Descriptors
    // ------------------------------------------------------------------

    fn fd_install(&mut self, f: OpenFile) -> i32 {
        self.fds.push(f);
        self.fds.len() as i32 - 1
    }

    /// `fdget`: the open file, or `-EBADF`.
    pub fn fdget(&self, fd: i32) -> Result<OpenFile, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get(i).copied())
            .ok_or(Errno::EBADF)
    }

    /// `pipe2(fds, 0)`: a new pipe; returns (read end, write end).
    pub fn sys_pipe(&mut self) -> (i32, i32) {
        let p = self.pipe_create();
        self.pipe_fds(p)
    }

    /// Descriptors for both ends of an existing pipe (read end, write end).
    pub fn pipe_fds(&mut self, pipe: usize) -> (i32, i32) {
        let r = self.fd_install(OpenFile {
            kind: FileKind::PipeRead(pipe),
            f_pos: 0,
            direct: false,
        });
        let w = self.fd_install(OpenFile {
            kind: FileKind::PipeWrite(pipe),
            f_pos: 0,
            direct: false,
        });
        (r, w)
    }

    /// Opens a regular file of the page cache read-write. `O_DIRECT` on a
    /// tmpfs file is refused with `-EINVAL` (`do_dentry_open`: no
    /// `->direct_IO`) unless the profile has `shmem_odirect` (v6.6:
    /// accepted, the I/O stays buffered); on an ext4/XFS file
    /// ([`crate::callers::iomap`]) every read and write of the descriptor
    /// is direct.
    pub fn sys_open_file(&mut self, file: FileId, flags: u32) -> Result<i32, Errno> {
        if (file as usize) >= self.m.files.len() {
            return Err(Errno::ENOENT);
        }
        let direct = flags & O_DIRECT != 0;
        let tmpfs = self.file_fs(file) == FileFs::Tmpfs;
        if direct && tmpfs && !self.m.knobs.shmem_odirect {
            return Err(Errno::EINVAL);
        }
        Ok(self.fd_install(OpenFile {
            kind: FileKind::Regular(file),
            f_pos: 0,
            direct: direct && !tmpfs,
        }))
    }

    /// Creates a block device of `size` bytes (rounded down to whole
    /// logical blocks) holding [`pattern_byte`]; returns its number.
    pub fn blkdev_create(&mut self, size: u64) -> usize {
        let size = size - size % BDEV_LOGICAL_BLOCK_SIZE;
        let data = Medium::new(size, A::PAGE_SIZE);
        self.bdevs.push(BlockDev {
            data,
            logical_block_size: BDEV_LOGICAL_BLOCK_SIZE,
            dma_alignment: BDEV_DMA_ALIGNMENT,
        });
        self.bdevs.len() - 1
    }

    /// Opens block device `dev` read-write, with `O_DIRECT` if asked.
    pub fn sys_open_bdev(&mut self, dev: usize, flags: u32) -> Result<i32, Errno> {
        if dev >= self.bdevs.len() {
            return Err(Errno::ENOENT);
        }
        Ok(self.fd_install(OpenFile {
            kind: FileKind::Bdev(dev),
            f_pos: 0,
            direct: flags & O_DIRECT != 0,
        }))
    }

    // ------------------------------------------------------------------
    // readv / writev / preadv / pwritev
    // ------------------------------------------------------------------

    /// `readv(fd, iov, iovcnt)`.
    pub fn sys_readv(&mut self, fd: i32, iov: Vec<Iovec>) -> Result<u64, Errno> {
        let f = self.fdget(fd)?;
        let mut pos = f.f_pos;
        let ppos = f.can_pread().then_some(&mut pos);
        let r = self.vfs_readv(f, iov, ppos);
        if r.is_ok() && f.can_pread() {
            self.fds[fd as usize].f_pos = pos;
        }
        r
    }

    /// `writev(fd, iov, iovcnt)`.
    pub fn sys_writev(&mut self, fd: i32, iov: Vec<Iovec>) -> Result<u64, Errno> {
        let f = self.fdget(fd)?;
        let mut pos = f.f_pos;
        let ppos = f.can_pread().then_some(&mut pos);
        let r = self.vfs_writev(f, iov, ppos);
        if r.is_ok() && f.can_pread() {
            self.fds[fd as usize].f_pos = pos;
        }
        r
    }

    /// `preadv(fd, iov, iovcnt, pos)`: a negative `pos` is `-EINVAL` before
    /// the descriptor is looked at; a pipe is `-ESPIPE`.
    pub fn sys_preadv(&mut self, fd: i32, iov: Vec<Iovec>, pos: i64) -> Result<u64, Errno> {
        if pos < 0 {
            return Err(Errno::EINVAL);
        }
        let f = self.fdget(fd)?;
        if !f.can_pread() {
            return Err(Errno::ESPIPE);
        }
        let mut pos = pos as u64;
        self.vfs_readv(f, iov, Some(&mut pos))
    }

    /// `pwritev(fd, iov, iovcnt, pos)`.
    pub fn sys_pwritev(&mut self, fd: i32, iov: Vec<Iovec>, pos: i64) -> Result<u64, Errno> {
        if pos < 0 {
            return Err(Errno::EINVAL);
        }
        let f = self.fdget(fd)?;
        if !f.can_pread() {
            return Err(Errno::ESPIPE);
        }
        let mut pos = pos as u64;
        self.vfs_writev(f, iov, Some(&mut pos))
    }

    /// `rw_verify_area`: a count that is negative as `ssize_t` is
    /// `-EINVAL`; so is `pos + count` overflowing `loff_t`.
    fn rw_verify_area(pos: Option<u64>, count: u64) -> Result<(), Errno> {
        if (count as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        if let Some(p) = pos
            && (p as i64).checked_add(count as i64).is_none()
        {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// `vfs_readv`: `FMODE_READ` (else `-EBADF`), `import_iovec`, a zero
    /// count returns 0, `rw_verify_area`, then the file's `->read_iter`.
    fn vfs_readv(
        &mut self,
        f: OpenFile,
        iov: Vec<Iovec>,
        pos: Option<&mut u64>,
    ) -> Result<u64, Errno> {
        if !f.can_read() {
            return Err(Errno::EBADF);
        }
        let mut iter = IovIter::import_iovec(&self.m, Dir::Read, iov)?;
        if iter.count == 0 {
            return Ok(0);
        }
        Self::rw_verify_area(pos.as_deref().copied(), iter.count)?;
        self.read_iter(f, &mut iter, pos)
    }

    /// `vfs_writev`: as [`Sys::vfs_readv`] with `FMODE_WRITE`.
    fn vfs_writev(
        &mut self,
        f: OpenFile,
        iov: Vec<Iovec>,
        pos: Option<&mut u64>,
    ) -> Result<u64, Errno> {
        if !f.can_write() {
            return Err(Errno::EBADF);
        }
        let mut iter = IovIter::import_iovec(&self.m, Dir::Write, iov)?;
        if iter.count == 0 {
            return Ok(0);
        }
        Self::rw_verify_area(pos.as_deref().copied(), iter.count)?;
        self.write_iter(f, &mut iter, pos)
    }

    /// `->read_iter` of an open file (`do_iter_readv_writev`).
    pub fn read_iter(
        &mut self,
        f: OpenFile,
        to: &mut IovIter,
        pos: Option<&mut u64>,
    ) -> Result<u64, Errno> {
        let mut scratch = 0u64;
        let pos = pos.unwrap_or(&mut scratch);
        match f.kind {
            FileKind::PipeRead(p) => self.pipe_read(p, to),
            FileKind::PipeWrite(_) => Err(Errno::EBADF),
            FileKind::Regular(file) if f.direct => self.file_direct_read(file, pos, to),
            FileKind::Regular(file) => self.shmem_file_read_iter(file, pos, to),
            FileKind::Bdev(dev) => self.blkdev_read_iter(dev, pos, to, f.direct),
        }
    }

    /// `->write_iter` of an open file.
    pub fn write_iter(
        &mut self,
        f: OpenFile,
        from: &mut IovIter,
        pos: Option<&mut u64>,
    ) -> Result<u64, Errno> {
        let mut scratch = 0u64;
        let pos = pos.unwrap_or(&mut scratch);
        match f.kind {
            FileKind::PipeWrite(p) => self.pipe_write(p, from),
            FileKind::PipeRead(_) => Err(Errno::EBADF),
            FileKind::Regular(file) if f.direct => self.file_direct_write(file, pos, from),
            FileKind::Regular(file) => self.shmem_file_write_iter(file, pos, from),
            FileKind::Bdev(dev) => self.blkdev_write_iter(dev, pos, from, f.direct),
        }
    }

    // ------------------------------------------------------------------
    // Regular files (tmpfs-like)
    // ------------------------------------------------------------------

    /// The page cache page `index` of `file`, read in if needed; a page read
    /// in now is zero beyond the file's original data (`i_size` when the
    /// syscall layer first saw the file, kept in [`Sys::file_data_end`]),
    /// as tmpfs keeps the bytes past EOF and the holes a write past EOF
    /// leaves.
    pub fn shmem_get_page(&mut self, file: FileId, index: u64) -> Option<Pfn> {
        let size = self.m.files.get(file as usize)?.size;
        let size = *self.file_data_end.entry(file).or_insert(size);
        let (pfn, fresh) = self.m.find_or_read_page(file, index)?;
        if fresh {
            let start = index * A::PAGE_SIZE;
            if start + A::PAGE_SIZE > size {
                let from = size.saturating_sub(start);
                let zeros = vec![0u8; (A::PAGE_SIZE - from) as usize];
                let _ = self.m.phys.write(pfn.addr(A::PAGE_SHIFT).add(from), &zeros);
            }
        }
        Some(pfn)
    }

    /// `shmem_file_read_iter`: page by page from `*pos` up to `i_size`,
    /// `copy_page_to_iter` of min(rest of the page, rest of the file, rest
    /// of the iterator); a short copy ends the read with the bytes copied so
    /// far **including the partial page**, or `-EFAULT` if none. `*pos`
    /// advances by the bytes read.
    pub fn shmem_file_read_iter(
        &mut self,
        file: FileId,
        pos: &mut u64,
        to: &mut IovIter,
    ) -> Result<u64, Errno> {
        let mut retval = 0u64;
        let mut error = None;
        loop {
            let isize = self.m.files[file as usize].size;
            if *pos >= isize {
                break;
            }
            let index = *pos / A::PAGE_SIZE;
            let Some(page) = self.shmem_get_page(file, index) else {
                error = Some(Errno::ENOMEM);
                break;
            };
            let end = isize.min(*pos + to.count);
            let offset = *pos % A::PAGE_SIZE;
            let nr = (end - *pos).min(A::PAGE_SIZE - offset);
            let ret = self.copy_page_to_iter(page, offset, nr, to);
            retval += ret;
            *pos += ret;
            if to.count == 0 {
                break;
            }
            if ret < nr {
                error = Some(Errno::EFAULT);
                break;
            }
        }
        match error {
            Some(e) if retval == 0 => Err(e),
            _ => Ok(retval),
        }
    }

    /// `shmem_file_write_iter` → `generic_perform_write`: per page chunk,
    /// fault the source in (nothing at all → `-EFAULT`), copy, and let
    /// `shmem_write_end` accept whatever was copied (`i_size` grows to the
    /// end of it). Returns the bytes written (byte-exact at a fault) or
    /// `-EFAULT` when none.
    pub fn shmem_file_write_iter(
        &mut self,
        file: FileId,
        pos: &mut u64,
        from: &mut IovIter,
    ) -> Result<u64, Errno> {
        if from.count == 0 {
            return Ok(0);
        }
        let mut written = 0u64;
        let mut status = Ok(0);
        while from.count != 0 {
            let offset = *pos % A::PAGE_SIZE;
            let bytes = (A::PAGE_SIZE - offset).min(from.count);
            let Some(page) = self.shmem_get_page(file, *pos / A::PAGE_SIZE) else {
                status = Err(Errno::ENOMEM);
                break;
            };
            // The model's copy faults pages in as it goes, which is what
            // fault_in_iov_iter_readable + the atomic copy amount to.
            let copied = self.copy_page_from_iter(page, offset, bytes, from);
            if copied == 0 {
                self.shmem_write_end_nothing_copied(file, *pos);
                status = Err(Errno::EFAULT);
                break;
            }
            let f = &mut self.m.files[file as usize];
            f.size = f.size.max(*pos + copied);
            *pos += copied;
            written += copied;
        }
        if written == 0 { status } else { Ok(written) }
    }

    /// A chunk of `generic_perform_write` that copied nothing. 6.13 faults
    /// the source in before `->write_begin` and stops there. From
    /// 665575cff098 (v6.15; knob `write_prefault_after_copy`) the copy
    /// comes first, so `->write_begin`/`->write_end` have run with 0 bytes
    /// and `shmem_write_end` has moved `i_size` up to `pos`; the
    /// fault-in that follows fails at the first byte (the model's copy
    /// already faulted what it could), so the write is `-EFAULT` all the
    /// same.
    fn shmem_write_end_nothing_copied(&mut self, file: FileId, pos: u64) {
        if self.m.knobs.write_prefault_after_copy {
            let f = &mut self.m.files[file as usize];
            f.size = f.size.max(pos);
        }
    }

    // ------------------------------------------------------------------
    // Block devices (block/fops.c)
    // ------------------------------------------------------------------

    /// `blkdev_read_iter`: clip at the end of the device (`pos` at or past
    /// it reads 0); with `O_DIRECT` try [`Sys::blkdev_direct_io_bdev`] first,
    /// and read what it left (a short direct read) through the page cache
    /// (`filemap_read`, byte-exact at a fault) — an error from the direct
    /// part is returned as is.
    pub fn blkdev_read_iter(
        &mut self,
        dev: usize,
        pos: &mut u64,
        to: &mut IovIter,
        direct: bool,
    ) -> Result<u64, Errno> {
        let size = self.bdevs[dev].data.len();
        let mut shorted = 0;
        if *pos + to.count > size {
            if *pos >= size {
                return Ok(0);
            }
            shorted = to.count - (size - *pos);
            to.truncate(size - *pos);
        }
        let mut count = to.count;
        let mut already = 0;
        let res = 'out: {
            if count == 0 {
                break 'out Ok(0);
            }
            if direct {
                let r = self.blkdev_direct_io_bdev(dev, *pos, to, Dir::Read);
                if let Ok(n) = r {
                    *pos += n;
                    count -= n;
                    already = n;
                }
                let back = count - to.count;
                let _ = self.iov_iter_revert(to, back);
                if r.is_err() || count == 0 {
                    break 'out r;
                }
            }
            // filemap_read on the device's page cache.
            let avail = (size - *pos).min(to.count) as usize;
            let start = *pos as usize;
            let mut src = vec![0u8; avail];
            self.bdevs[dev].data.read(start as u64, &mut src);
            let n = self.copy_to_iter(&src, to);
            *pos += n;
            if n == 0 && avail > 0 && already == 0 {
                Err(Errno::EFAULT)
            } else {
                Ok(already + n)
            }
        };
        if shorted != 0 {
            to.reexpand(to.count + shorted);
        }
        res
    }

    /// `blkdev_write_iter`: a zero count writes 0; `pos` at or past the end
    /// is `-ENOSPC`; the count is clipped at the end; with `O_DIRECT` the
    /// direct write goes first and a short one falls back to a buffered
    /// write of the rest (`direct_write_fallback`: an error there returns
    /// the direct bytes, or the error when there were none).
    pub fn blkdev_write_iter(
        &mut self,
        dev: usize,
        pos: &mut u64,
        from: &mut IovIter,
        direct: bool,
    ) -> Result<u64, Errno> {
        let size = self.bdevs[dev].data.len();
        if from.count == 0 {
            return Ok(0);
        }
        if *pos >= size {
            return Err(Errno::ENOSPC);
        }
        let mut shorted = 0;
        if from.count > size - *pos {
            shorted = from.count - (size - *pos);
            from.truncate(size - *pos);
        }
        let res = if direct {
            let mut count = from.count;
            let r = self.blkdev_direct_io_bdev(dev, *pos, from, Dir::Write);
            if let Ok(n) = r {
                *pos += n;
                count -= n;
            }
            let back = count - from.count;
            let _ = self.iov_iter_revert(from, back);
            match r {
                Ok(d) if from.count != 0 => match self.blkdev_buffered_write(dev, pos, from) {
                    Err(e) => {
                        if d != 0 {
                            Ok(d)
                        } else {
                            Err(e)
                        }
                    }
                    Ok(b) => Ok(d + b),
                },
                other => other,
            }
        } else {
            self.blkdev_buffered_write(dev, pos, from)
        };
        if shorted != 0 {
            from.reexpand(from.count + shorted);
        }
        res
    }

    /// The buffered write of a block device (byte-exact at a fault: a short
    /// copy is retried for the bytes that did arrive).
    fn blkdev_buffered_write(
        &mut self,
        dev: usize,
        pos: &mut u64,
        from: &mut IovIter,
    ) -> Result<u64, Errno> {
        let mut buf = vec![0u8; from.count as usize];
        let n = self.copy_from_iter(&mut buf, from);
        if n == 0 {
            return Err(Errno::EFAULT);
        }
        self.bdevs[dev].data.write(*pos, &buf[..n as usize]);
        *pos += n;
        Ok(n)
    }

    /// `iov_iter_is_aligned(i, addr_mask, len_mask)` for user iterators:
    /// UBUF checks the count and the address; IOVEC checks every segment
    /// piece up to `count` — its length against `len_mask` and its address
    /// against `addr_mask`, **also for zero-length segments** before the
    /// count runs out.
    #[must_use]
    pub fn iov_iter_is_aligned(i: &IovIter, addr_mask: u64, len_mask: u64) -> bool {
        if i.count == 0 {
            return true;
        }
        let mut size = i.count;
        let mut skip = i.iov_offset;
        for seg in i.iov.slice(i.idx, usize::MAX).iter() {
            let len = (seg.len - skip).min(size);
            if len & len_mask != 0 {
                return false;
            }
            if seg.base.wrapping_add(skip).0 & addr_mask != 0 {
                return false;
            }
            size -= len;
            skip = 0;
            if size == 0 {
                break;
            }
        }
        true
    }

    // ------------------------------------------------------------------
    // vmsplice (fs/splice.c)
    // ------------------------------------------------------------------

    /// `vmsplice(fd, iov, nr_segs, flags)`: unknown flags → `-EINVAL`
    /// (before the descriptor); on a pipe's write end the user pages go
    /// into the pipe by reference ([`Sys::vmsplice`]: `wait_for_space`,
    /// then `iter_to_pipe` in batches of 16 pages); on the read end the
    /// pipe's bytes are copied out ([`Sys::vmsplice_to_user`]).
    pub fn sys_vmsplice(&mut self, fd: i32, iov: Vec<Iovec>, flags: u32) -> Result<u64, Errno> {
        if flags & !SPLICE_F_ALL != 0 {
            return Err(Errno::EINVAL);
        }
        let f = self.fdget(fd)?;
        match f.kind {
            FileKind::PipeWrite(p) => {
                let mut from = IovIter::import_iovec(&self.m, Dir::Write, iov)?;
                if from.count == 0 {
                    return Ok(0);
                }
                let buf_flag = if flags & SPLICE_F_GIFT != 0 {
                    PIPE_BUF_FLAG_GIFT
                } else {
                    0
                };
                let pi = &self.pipes[p];
                if pi.readers == 0 {
                    return Err(Errno::EPIPE);
                }
                if pi.is_full() {
                    return Err(Errno::EAGAIN);
                }
                self.iter_to_pipe(&mut from, p, buf_flag)
            }
            FileKind::PipeRead(p) => {
                let mut to = IovIter::import_iovec(&self.m, Dir::Read, iov)?;
                if to.count == 0 {
                    return Ok(0);
                }
                self.vmsplice_to_user(p, &mut to, flags)
            }
            _ => {
                // Not a pipe: import_iovec runs first, then get_pipe_info fails.
                IovIter::import_iovec(&self.m, Dir::Write, iov)?;
                Err(Errno::EBADF)
            }
        }
    }

    /// `vmsplice_to_user` (`__splice_from_pipe` with `pipe_to_user`):
    /// buffer by buffer, copy min(len, wanted) bytes; a short copy is
    /// `-EFAULT` for that buffer (not consumed; the bytes copied before it
    /// are returned if any). A **zero-length buffer** at the head when the
    /// splice starts is released first (`splice_from_pipe_next` →
    /// `eat_empty_buffer`, fs/splice.c, 6.1–6.13); one met after a buffer
    /// was consumed ends the splice (`splice_from_pipe_feed`: the actor's 0
    /// stops the feed). An empty pipe returns what was spliced, 0 without
    /// writers, else `-EAGAIN`.
    pub fn vmsplice_to_user(
        &mut self,
        pipe: usize,
        to: &mut IovIter,
        flags: u32,
    ) -> Result<u64, Errno> {
        let _ = flags & SPLICE_F_NONBLOCK; // the model never sleeps
        let mut total_len = to.count;
        let mut num_spliced = 0u64;
        // splice_from_pipe_next() runs before the first feed only: after it
        // the feed goes on until the pipe is empty or the actor stops.
        let mut next = true;
        loop {
            let p = &self.pipes[pipe];
            if p.nrbufs == 0 {
                if p.writers == 0 || num_spliced != 0 {
                    return Ok(num_spliced);
                }
                return Err(Errno::EAGAIN);
            }
            let cur = p.curbuf;
            let b = p.bufs[cur];
            if next && b.len == 0 {
                self.pipe_consume_head(pipe);
                continue;
            }
            next = false;
            let len = u64::from(b.len).min(total_len);
            if b.ops == BufOps::PageCache && !self.page_uptodate(b.page) {
                return if num_spliced != 0 {
                    Ok(num_spliced)
                } else {
                    Err(Errno::EIO)
                };
            }
            let mut leaked = Vec::new();
            self.note_unwritten_read(pipe, cur, len, &mut leaked);
            self.report_unwritten_read("vmsplice", &leaked);
            let n = self.copy_page_to_iter(b.page, u64::from(b.offset), len, to);
            if n != len {
                return if num_spliced != 0 {
                    Ok(num_spliced)
                } else {
                    Err(Errno::EFAULT)
                };
            }
            if n == 0 {
                return Ok(num_spliced);
            }
            let bm = &mut self.pipes[pipe].bufs[cur];
            bm.offset += n as u32;
            bm.len -= n as u32;
            num_spliced += n;
            total_len -= n;
            if bm.len == 0 {
                self.pipe_consume_head(pipe);
            }
            if total_len == 0 {
                return Ok(num_spliced);
            }
        }
    }

    fn page_uptodate(&self, page: Pfn) -> bool {
        let head = self.m.phys.compound_head(page);
        self.m
            .phys
            .page(head)
            .flags
            .contains(vmemu_mm::phys::PageFlags::UPTODATE)
    }

    // ------------------------------------------------------------------
    // process_vm_readv / process_vm_writev (mm/process_vm_access.c)
    // ------------------------------------------------------------------

    /// `process_vm_readv(pid, lvec, liovcnt, rvec, riovcnt, flags)`: from
    /// task `pid`'s memory into the caller's.
    pub fn sys_process_vm_readv(
        &mut self,
        pid: TaskId,
        lvec: Vec<Iovec>,
        rvec: Vec<Iovec>,
        flags: u64,
    ) -> Result<u64, Errno> {
        self.process_vm_rw(pid, lvec, rvec, flags, false)
    }

    /// `process_vm_writev(pid, lvec, liovcnt, rvec, riovcnt, flags)`.
    pub fn sys_process_vm_writev(
        &mut self,
        pid: TaskId,
        lvec: Vec<Iovec>,
        rvec: Vec<Iovec>,
        flags: u64,
    ) -> Result<u64, Errno> {
        self.process_vm_rw(pid, lvec, rvec, flags, true)
    }

    /// `process_vm_rw`: flags ≠ 0 → `-EINVAL`; the local array goes through
    /// `import_iovec` (> 1024 → `-EINVAL`, negative length → `-EINVAL`,
    /// `access_ok` → `-EFAULT`, clipped at `MAX_RW_COUNT`); a local count of
    /// 0 returns 0 **before the remote array is looked at**; the remote
    /// array only through `iovec_from_user` (> 1024 → `-EINVAL`, negative
    /// length → `-EINVAL`; no `access_ok`, no sum check — a remote sum
    /// overflowing `ssize_t` is not an error in 6.13).
    pub fn process_vm_rw(
        &mut self,
        pid: TaskId,
        lvec: Vec<Iovec>,
        rvec: Vec<Iovec>,
        flags: u64,
        vm_write: bool,
    ) -> Result<u64, Errno> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let dir = if vm_write { Dir::Write } else { Dir::Read };
        let mut iter = IovIter::import_iovec(&self.m, dir, lvec)?;
        if iter.count == 0 {
            return Ok(0);
        }
        if rvec.len() > UIO_MAXIOV {
            return Err(Errno::EINVAL);
        }
        if rvec.iter().any(|v| (v.len as i64) < 0) {
            return Err(Errno::EINVAL);
        }
        self.process_vm_rw_core(pid, &mut iter, &rvec, vm_write)
    }

    /// `process_vm_rw_core`: the largest remote iovec in pages sizes the
    /// page array (none → 0); unknown pid → `-ESRCH`; then remote iovec by
    /// remote iovec while the local iterator has room and nothing failed.
    /// Any bytes moved are returned, else the error (or 0).
    fn process_vm_rw_core(
        &mut self,
        pid: TaskId,
        iter: &mut IovIter,
        rvec: &[Iovec],
        vm_write: bool,
    ) -> Result<u64, Errno> {
        let total = iter.count;
        let nr_pages = rvec
            .iter()
            .filter(|v| v.len > 0)
            .map(|v| pvm_nr_pages::<A>(v.base, v.len))
            .max()
            .unwrap_or(0);
        if nr_pages == 0 {
            return Ok(0);
        }
        let Some(task) = self.m.tasks.get(pid.0 as usize).copied() else {
            return Err(Errno::ESRCH);
        };
        let mm = task.mm;
        let mut rc = Ok(());
        for v in rvec {
            if iter.count == 0 || rc.is_err() {
                break;
            }
            rc = self.process_vm_rw_single_vec(v.base, v.len, iter, mm, vm_write);
        }
        let moved = total - iter.count;
        match rc {
            _ if moved != 0 => Ok(moved),
            Err(e) => Err(e),
            Ok(()) => Ok(0),
        }
    }

    /// `process_vm_rw_single_vec`: pin the remote pages with
    /// `pin_user_pages_remote` in batches of up to
    /// [`pvm_max_user_pages`] pages (what two pages of `struct page *`
    /// hold: 1024 with 4 KiB pages) — the on-stack array of
    /// [`PVM_MAX_PP_ARRAY_COUNT`] is used when the largest remote iovec
    /// fits in it — and copy page by page; a batch that pins nothing is
    /// `-EFAULT` (remote faults are page-granular), a short local copy is
    /// `-EFAULT` after the bytes it did move (local faults are
    /// byte-exact).
    fn process_vm_rw_single_vec(
        &mut self,
        addr: VirtAddr,
        len: u64,
        iter: &mut IovIter,
        mm: vmemu_mm::sync::MmId,
        vm_write: bool,
    ) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        let mut pa = addr.align_down(A::PAGE_SIZE);
        let mut start_offset = addr.0 - pa.0;
        let mut nr_pages = pvm_nr_pages::<A>(addr, len);
        let mut len = len;
        let mut flags = GupFlags::FOLL_PIN | GupFlags::FOLL_REMOTE;
        if vm_write {
            flags |= GupFlags::FOLL_WRITE;
        }
        while nr_pages != 0 && iter.count != 0 {
            let want = nr_pages.min(pvm_max_user_pages::<A>());
            self.m.mmap_read_lock(mm)?;
            let mut pages = Vec::new();
            let r = self
                .m
                .get_user_pages_remote(mm, pa, want, flags, &mut pages);
            self.m.mmap_read_unlock(mm);
            let pinned = match r {
                Ok(n) if n > 0 => n,
                _ => {
                    for &p in &pages {
                        let _ = self.m.unpin_user_page(p);
                    }
                    return Err(Errno::EFAULT);
                }
            };
            let bytes = (pinned * A::PAGE_SIZE - start_offset).min(len);
            let rc = self.process_vm_rw_pages(&pages, start_offset, bytes, iter, vm_write);
            len -= bytes;
            start_offset = 0;
            nr_pages -= pinned;
            pa = pa.wrapping_add(pinned * A::PAGE_SIZE);
            for &p in &pages {
                let _ = self.m.unpin_user_page(p);
            }
            rc?;
        }
        Ok(())
    }

    /// `process_vm_rw_pages`: copy page by page between the pinned remote
    /// pages and the local iterator.
    fn process_vm_rw_pages(
        &mut self,
        pages: &[Pfn],
        offset: u64,
        len: u64,
        iter: &mut IovIter,
        vm_write: bool,
    ) -> Result<(), Errno> {
        let mut len = len;
        let mut offset = offset;
        let mut k = 0;
        while len != 0 && iter.count != 0 {
            let page = pages[k];
            k += 1;
            let copy = (A::PAGE_SIZE - offset).min(len);
            let copied = if vm_write {
                self.copy_page_from_iter(page, offset, copy, iter)
            } else {
                self.copy_page_to_iter(page, offset, copy, iter)
            };
            len -= copied;
            if copied < copy && iter.count != 0 {
                return Err(Errno::EFAULT);
            }
            offset = 0;
        }
        Ok(())
    }
}

/// Pages spanned by a remote iovec, computed with the kernel's unsigned
/// wrap-around.
fn pvm_nr_pages<A: Arch>(base: VirtAddr, len: u64) -> u64 {
    (base.0.wrapping_add(len).wrapping_sub(1) / A::PAGE_SIZE)
        .wrapping_sub(base.0 / A::PAGE_SIZE)
        .wrapping_add(1)
}

/// `PVM_MAX_USER_PAGES`: pointers that fit in
/// [`PVM_MAX_KMALLOC_PAGES`] pages (1024 with 4 KiB pages).
#[must_use]
pub fn pvm_max_user_pages<A: Arch>() -> u64 {
    PVM_MAX_KMALLOC_PAGES * A::PAGE_SIZE / 8
}
