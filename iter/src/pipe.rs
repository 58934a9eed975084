//! Pipes: a ring of buffers, the v4.10 pipe-backed iterator (`ITER_PIPE`,
//! `lib/iov_iter.c`), `pipe_read`/`pipe_write` (`fs/pipe.c`), vmsplice and
//! `iter_file_splice_write` (`fs/splice.c`) and a buffered splice read
//! (`generic_file_splice_read`).
//!
//! # The ring
//!
//! A [`Pipe`] has `buffers` slots (a power of two, [`PIPE_DEF_BUFFERS`] by
//! default); the occupied slots are `curbuf .. curbuf + nrbufs` (mod
//! `buffers`). Slots keep whatever the previous buffer left in them: the
//! kernel allocates the slot array zeroed once and never clears a slot when a
//! buffer is released (only `ops` becomes NULL, [`BufOps::Null`] here).
//!
//! # Page references
//!
//! * Pages the pipe allocates (`push_pipe`, `pipe_write`) are kernel pages
//!   named `pipe<N>buf[k]`, refcount 1 owned by the pipe.
//! * References the pipe takes on other pages (page cache pages inserted by
//!   `copy_page_to_iter`) are plain `get_page` references on the page, not in
//!   the workload's ledger.
//! * Pages from `iov_iter_get_pages` (vmsplice) arrive with a reference in the
//!   workload's ledger; the pipe takes it over ([`vmemu_mm::Machine::disown_ref`]).
//! * References handed *out* of the pipe by `pipe_get_pages` belong to the
//!   caller (the workload's ledger), like every other get_pages result.
//! * Releasing a buffer puts the pipe's reference; an anonymous buffer whose
//!   page nobody else references may instead become the pipe's one-deep page
//!   cache (`tmp_page`), freed by [`Sys::free_pipe_info`].
//!
//! # Uninitialised `flags`
//!
//! `push_pipe` and `copy_page_to_iter_pipe` fill `page`, `offset`, `len` and
//! `ops` of the slot they occupy but never write `flags`, so the new buffer
//! carries the flags of whatever buffer used that slot before. The model
//! keeps the slot's previous `flags` verbatim. In v4.10 mergeability is a
//! property of the ops (`can_merge`), so a stale flag cannot make a page
//! cache buffer a merge target; what a stale flag does change in v4.10 is
//! `PIPE_BUF_FLAG_PACKET` (left by an `O_DIRECT` pipe write: `pipe_read`
//! then treats the spliced page as a packet and throws away the rest of it
//! after the first read) and `PIPE_BUF_FLAG_GIFT`. When 5.8 (f6dd975583bd)
//! moved mergeability into the flag `PIPE_BUF_FLAG_CAN_MERGE`, the same
//! uninitialised field let `pipe_write` write into page cache pages:
//! "Dirty Pipe", CVE-2022-0847, fixed by 9d2231c5d74e.
//!
//! # Single-threaded model
//!
//! Nothing ever sleeps: where the kernel would wait for room or data, the
//! model behaves as if the file were `O_NONBLOCK` (`-EAGAIN` when nothing was
//! transferred). SIGPIPE is not modelled (only `-EPIPE`).

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::mm::FileId;
use vmemu_mm::phys::{Owner, PageFlags};
use vmemu_mm::profile::PipeAdvanceRelease;
use vmemu_mm::{Errno, EventKind};

use crate::Sys;
use crate::get_pages::GotPages;
use crate::iov_iter::{BioVec, Dir, IovIter, Iovec, IterError, IterType};

/// `PIPE_DEF_BUFFERS`.
pub const PIPE_DEF_BUFFERS: usize = 16;

/// `PIPE_BUF_FLAG_LRU`: the page is on the LRU (set by a successful steal).
pub const PIPE_BUF_FLAG_LRU: u32 = 0x01;
/// `PIPE_BUF_FLAG_ATOMIC`: the page was atomically mapped.
pub const PIPE_BUF_FLAG_ATOMIC: u32 = 0x02;
/// `PIPE_BUF_FLAG_GIFT`: the page is a gift (`vmsplice(SPLICE_F_GIFT)`).
pub const PIPE_BUF_FLAG_GIFT: u32 = 0x04;
/// `PIPE_BUF_FLAG_PACKET`: `read()` as a packet (`O_DIRECT` pipe writes).
pub const PIPE_BUF_FLAG_PACKET: u32 = 0x08;
/// `PIPE_BUF_FLAG_CAN_MERGE` (5.8+, f6dd975583bd): `pipe_write` may append to
/// the buffer. v4.10 has no such flag (it asks `ops->can_merge`); the modern
/// profile sets and tests it.
pub const PIPE_BUF_FLAG_CAN_MERGE: u32 = 0x10;

/// `SPLICE_F_MOVE`.
pub const SPLICE_F_MOVE: u32 = 0x01;
/// `SPLICE_F_NONBLOCK`.
pub const SPLICE_F_NONBLOCK: u32 = 0x02;
/// `SPLICE_F_MORE`.
pub const SPLICE_F_MORE: u32 = 0x04;
/// `SPLICE_F_GIFT`.
pub const SPLICE_F_GIFT: u32 = 0x08;

/// Pages per `iov_iter_get_pages` call in `iter_to_pipe` (a literal 16 in
/// v4.10 `fs/splice.c`, not `PIPE_DEF_BUFFERS`).
pub const VMSPLICE_BATCH: u64 = 16;

/// `EBADF` (not a pipe).
pub const EBADF: Errno = Errno::EBADF;

/// Which `pipe_buf_operations` a buffer has.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum BufOps {
    /// NULL: a slot never used, or whose buffer was released
    /// (`pipe_buf_release` clears `ops` before calling `->release`).
    #[default]
    Null,
    /// `anon_pipe_buf_ops` (`pipe_write`): `can_merge` = 1; release keeps a
    /// page nobody else uses as the pipe's `tmp_page`.
    Anon,
    /// `packet_pipe_buf_ops` (`pipe_write` on an `O_DIRECT` pipe): like
    /// `Anon` with `can_merge` = 0.
    Packet,
    /// `default_pipe_buf_ops` (`fs/splice.c`): pages allocated by the pipe
    /// iterator (`push_pipe`). `can_merge` = 0; release = `put_page`. The
    /// iterator calls these buffers "allocated".
    Default,
    /// `page_cache_pipe_buf_ops`: a page cache page inserted by
    /// `copy_page_to_iter` (zero copy). `can_merge` = 0; confirm checks
    /// `PageUptodate`; release = `put_page` and clear `PIPE_BUF_FLAG_LRU`.
    PageCache,
    /// `user_page_pipe_buf_ops` (vmsplice): `can_merge` = 0; release as
    /// `PageCache`.
    User,
}

impl BufOps {
    /// `ops->can_merge` (v4.10's merge test in `pipe_write`).
    #[must_use]
    pub fn can_merge(self) -> bool {
        self == BufOps::Anon
    }

    /// The kernel's name of the ops table.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BufOps::Null => "NULL",
            BufOps::Anon => "anon_pipe_buf_ops",
            BufOps::Packet => "packet_pipe_buf_ops",
            BufOps::Default => "default_pipe_buf_ops",
            BufOps::PageCache => "page_cache_pipe_buf_ops",
            BufOps::User => "user_page_pipe_buf_ops",
        }
    }
}

/// `struct pipe_buffer`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PipeBuffer {
    /// The page holding the data.
    pub page: Pfn,
    /// Offset of the data in the page.
    pub offset: u32,
    /// Length of the data.
    pub len: u32,
    /// The operations.
    pub ops: BufOps,
    /// `PIPE_BUF_FLAG_*`.
    pub flags: u32,
}

/// `struct pipe_inode_info` (the parts the model needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipe {
    /// The slots (`bufs`).
    pub bufs: Vec<PipeBuffer>,
    /// Number of slots (a power of two).
    pub buffers: usize,
    /// First occupied slot.
    pub curbuf: usize,
    /// Number of occupied slots.
    pub nrbufs: usize,
    /// The one-deep cache of a released anonymous page.
    pub tmp_page: Option<Pfn>,
    /// Open read ends (0: writes get `-EPIPE`).
    pub readers: u32,
    /// Open write ends (0: an empty pipe reads as EOF).
    pub writers: u32,
    /// The write end was opened `O_DIRECT` (packet mode, `is_packetized`).
    pub packetized: bool,
    /// Not kernel state: interned name of the pipe's own pages.
    pub name: u32,
    /// Not kernel state: pages the pipe allocated so far (names them).
    pub allocs: u32,
    /// Not kernel state: page-pointer arrays v4.10's `pipe_get_pages_alloc`
    /// stored into the caller's pointer while returning `-EFAULT` (so no
    /// caller frees them): a leaked kmalloc/vmalloc allocation, not a page
    /// reference.
    pub leaked_page_arrays: u32,
    /// Not kernel state: per slot, the page of a buffer that kernel code
    /// left in the pipe although nothing ever wrote its bytes — a page
    /// `push_pipe` allocated (not zeroed) for a `pipe_get_pages`
    /// reservation that its caller neither filled nor truncated away
    /// (CVE-2017-5550). A reader of the buffer gets the page's previous
    /// contents (`infoleak`); the invariant checker reports it. Cleared
    /// when the slot's buffer is released.
    pub unwritten: Vec<Option<Pfn>>,
}

impl Pipe {
    /// An empty pipe with `buffers` slots (a power of two), one reader and
    /// one writer.
    #[must_use]
    pub fn new(buffers: usize, name: u32) -> Self {
        assert!(
            buffers.is_power_of_two(),
            "pipe buffers must be a power of two"
        );
        Self {
            bufs: vec![PipeBuffer::default(); buffers],
            buffers,
            curbuf: 0,
            nrbufs: 0,
            tmp_page: None,
            readers: 1,
            writers: 1,
            packetized: false,
            name,
            allocs: 0,
            leaked_page_arrays: 0,
            unwritten: vec![None; buffers],
        }
    }

    /// `buffers - 1`.
    #[must_use]
    pub fn mask(&self) -> usize {
        self.buffers - 1
    }

    /// `next_idx`.
    #[must_use]
    pub fn next_idx(&self, idx: usize) -> usize {
        (idx + 1) & self.mask()
    }

    /// Whether slot `idx` holds a buffer (lies in `curbuf .. curbuf+nrbufs`).
    #[must_use]
    pub fn occupied(&self, idx: usize) -> bool {
        (idx.wrapping_sub(self.curbuf) & self.mask()) < self.nrbufs
    }

    /// Every slot is occupied.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.nrbufs == self.buffers
    }

    /// No slot is occupied.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nrbufs == 0
    }

    /// The occupied slots, oldest first.
    #[must_use]
    pub fn slots(&self) -> Vec<usize> {
        (0..self.nrbufs)
            .map(|k| (self.curbuf + k) & self.mask())
            .collect()
    }

    /// The occupied buffers, oldest first.
    #[must_use]
    pub fn occupied_bufs(&self) -> Vec<PipeBuffer> {
        self.slots().into_iter().map(|s| self.bufs[s]).collect()
    }

    /// Bytes in the pipe (`FIONREAD`).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.occupied_bufs().iter().map(|b| u64::from(b.len)).sum()
    }
}

impl Default for Pipe {
    fn default() -> Self {
        Self::new(PIPE_DEF_BUFFERS, 0)
    }
}

/// A `->write_iter` for [`Sys::iter_file_splice_write`]: receives an
/// `ITER_BVEC | WRITE` iterator over the pipe buffers and returns the bytes
/// it consumed (it should advance the iterator by as much) or an error.
pub type SpliceSink<'a, A> = dyn FnMut(&mut Sys<A>, &mut IovIter) -> Result<u64, Errno> + 'a;

impl<A: Arch> Sys<A> {
    // ------------------------------------------------------------------
    // Pipe objects
    // ------------------------------------------------------------------

    /// Creates a pipe with [`PIPE_DEF_BUFFERS`] slots; returns its id.
    pub fn pipe_create(&mut self) -> usize {
        self.pipe_create_sized(PIPE_DEF_BUFFERS)
    }

    /// Creates a pipe with `buffers` slots rounded up to a power of two (as
    /// `F_SETPIPE_SZ` would leave it; at least 1); returns its id.
    pub fn pipe_create_sized(&mut self, buffers: usize) -> usize {
        let buffers = buffers.max(1).next_power_of_two();
        let id = self.pipes.len();
        let name = self.m.intern(&format!("pipe{id}buf"));
        self.pipes.push(Pipe::new(buffers, name));
        id
    }

    /// `free_pipe_info`: releases every slot whose `ops` is not NULL, then
    /// frees `tmp_page`. The pipe stays in the table, empty, with no readers
    /// or writers.
    pub fn free_pipe_info(&mut self, pipe: usize) {
        if pipe >= self.pipes.len() {
            return;
        }
        for slot in 0..self.pipes[pipe].buffers {
            if self.pipes[pipe].bufs[slot].ops != BufOps::Null {
                self.pipe_buf_release_slot(pipe, slot);
            }
        }
        let p = &mut self.pipes[pipe];
        p.nrbufs = 0;
        p.readers = 0;
        p.writers = 0;
        if let Some(t) = p.tmp_page.take() {
            self.put_pipe_ref(t);
        }
    }

    /// Puts one page reference owned by a pipe.
    fn put_pipe_ref(&mut self, page: Pfn) {
        let head = self.m.phys.compound_head(page);
        if self.m.phys.stale_put(head) {
            // The page was freed under this buffer (CVE-2019-11487): the
            // put goes to whatever the frame is now; the model charges it
            // to the stale references, not to the frame's new owner.
            return;
        }
        if self.m.phys.put_page(page, 1).is_err() {
            self.m.event(
                EventKind::RefUnderflow,
                format!(
                    "pipe put_page of {}: no reference left",
                    self.m.page_name(page)
                ),
            );
        }
    }

    /// Allocates one page for pipe `id` (`alloc_page(GFP_USER)` in
    /// `push_pipe`, `GFP_HIGHUSER` in `pipe_write`: no `__GFP_ZERO`, so a
    /// recycled frame still holds its previous owner's bytes); `None` when
    /// memory is exhausted.
    fn pipe_alloc_page(&mut self, id: usize) -> Option<Pfn> {
        let p = &mut self.pipes[id];
        let index = p.allocs;
        p.allocs += 1;
        let name = p.name;
        self.m.phys.alloc_uninit(0, Owner::Kernel { name, index })
    }

    /// `pipe_buf_release` of a buffer (in a slot or not): `ops` becomes NULL,
    /// then the old ops' `->release` runs. Returns the buffer as left.
    fn pipe_buf_release(&mut self, id: usize, mut buf: PipeBuffer) -> PipeBuffer {
        let ops = std::mem::replace(&mut buf.ops, BufOps::Null);
        match ops {
            BufOps::Null => self.m.event(
                EventKind::KernelBug,
                "pipe_buf_release of a buffer with NULL ops: NULL pointer dereference",
            ),
            BufOps::Anon | BufOps::Packet => {
                let head = self.m.phys.compound_head(buf.page);
                let only_us = self.m.phys.page(head).refcount == 1;
                if only_us && self.pipes[id].tmp_page.is_none() {
                    self.pipes[id].tmp_page = Some(buf.page);
                } else {
                    self.put_pipe_ref(buf.page);
                }
            }
            BufOps::Default => self.put_pipe_ref(buf.page),
            BufOps::PageCache | BufOps::User => {
                self.put_pipe_ref(buf.page);
                buf.flags &= !PIPE_BUF_FLAG_LRU;
            }
        }
        buf
    }

    /// Releases the buffer at `curbuf` and moves `curbuf` on (a consumed
    /// head buffer, as `pipe_update_tail` does).
    pub(crate) fn pipe_consume_head(&mut self, id: usize) {
        let cur = self.pipes[id].curbuf;
        self.pipe_buf_release_slot(id, cur);
        let p = &mut self.pipes[id];
        p.curbuf = p.next_idx(cur);
        p.nrbufs -= 1;
    }

    fn pipe_buf_release_slot(&mut self, id: usize, slot: usize) {
        let b = self.pipes[id].bufs[slot];
        let b = self.pipe_buf_release(id, b);
        self.pipes[id].bufs[slot] = b;
        if let Some(u) = self.pipes[id].unwritten.get_mut(slot) {
            *u = None;
        }
    }

    /// Whether slot `slot` of pipe `id` holds a buffer nobody wrote (see
    /// [`Pipe::unwritten`]).
    #[must_use]
    pub fn pipe_slot_unwritten(&self, id: usize, slot: usize) -> bool {
        let p = &self.pipes[id];
        p.occupied(slot)
            && p.bufs[slot].ops != BufOps::Null
            && p.unwritten.get(slot).copied().flatten() == Some(p.bufs[slot].page)
    }

    /// A reader is about to hand `bytes` bytes of slot `slot` to user
    /// space: if nobody wrote them, note the page's name and the bytes in `leaked`
    /// (reported by [`Sys::report_unwritten_read`]).
    pub(crate) fn note_unwritten_read(
        &self,
        id: usize,
        slot: usize,
        bytes: u64,
        leaked: &mut Vec<(String, u64)>,
    ) {
        if bytes != 0 && self.pipe_slot_unwritten(id, slot) {
            leaked.push((self.m.page_name(self.pipes[id].bufs[slot].page), bytes));
        }
    }

    /// One `infoleak` event for the buffers nobody wrote that reader `who`
    /// handed to user space.
    pub(crate) fn report_unwritten_read(&mut self, who: &str, leaked: &[(String, u64)]) {
        if leaked.is_empty() {
            return;
        }
        let total: u64 = leaked.iter().map(|(_, n)| n).sum();
        let names: Vec<&str> = leaked.iter().map(|(p, _)| p.as_str()).collect();
        self.m.event(
            EventKind::Infoleak,
            format!(
                "{who} hands user space {total} bytes nobody wrote, from {}: pages push_pipe allocated without zeroing and pipe_advance left in the pipe (stale contents of the frames' previous owners)",
                names.join(", ")
            ),
        );
    }

    /// `pipe_buf_confirm`: page cache buffers need an up-to-date page
    /// (else `-EIO`); every other kind is always good.
    fn pipe_buf_confirm(&self, buf: &PipeBuffer) -> Result<(), Errno> {
        if buf.ops == BufOps::PageCache {
            let head = self.m.phys.compound_head(buf.page);
            if !self.m.phys.page(head).flags.contains(PageFlags::UPTODATE) {
                return Err(Errno::EIO);
            }
        }
        Ok(())
    }

    /// Whether the pipe ring follows the modern rules: buffers are merged by
    /// `PIPE_BUF_FLAG_CAN_MERGE` (5.8, f6dd975583bd) and `pipe_write` puts
    /// the new buffer in the ring before copying (the 5.5 head/tail rework;
    /// release unverified). The knob `pipe_can_merge_flag` names the first;
    /// among the modelled profiles the second coincides with it or with "no
    /// ITER_PIPE" (v6.13).
    fn modern_pipe_ring(&self) -> bool {
        !self.m.knobs.pipe_iter || self.m.knobs.pipe_can_merge_flag
    }

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
        if !self.m.knobs.pipe_iter {
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

    // ------------------------------------------------------------------
    // read(2) / write(2) on a pipe (fs/pipe.c)
    // ------------------------------------------------------------------

    fn pipe_id(&self, pipe: usize) -> Result<usize, Errno> {
        if pipe < self.pipes.len() {
            Ok(pipe)
        } else {
            Err(EBADF)
        }
    }

    /// `pipe_read` (readv into the user iterator `to`), as v4.10 (same in
    /// 4.17 and, for these paths, 6.13):
    ///
    /// * `count` 0 → 0.
    /// * Buffer by buffer from `curbuf`: chars = min(len, bytes still
    ///   wanted); confirm (page cache: not up to date → `-EIO`); copy with
    ///   `copy_page_to_iter`. A **short copy** (fault) ends the read with
    ///   the bytes of the *previous* buffers, or `-EFAULT` if there were
    ///   none; the buffer is not consumed at all, so bytes that did reach
    ///   the user before the fault are still in the pipe.
    /// * A consumed buffer is released (`curbuf` moves on). A buffer with
    ///   `PIPE_BUF_FLAG_PACKET` ends the read after it and its remaining
    ///   bytes are dropped.
    /// * Empty pipe: no writers → return what was read (0 = EOF); something
    ///   read → return it; else `-EAGAIN` (the model is non-blocking).
    pub fn pipe_read(&mut self, pipe: usize, to: &mut IovIter) -> Result<u64, Errno> {
        let mut leaked = Vec::new();
        let r = self.pipe_read_bufs(pipe, to, &mut leaked);
        self.report_unwritten_read("pipe_read", &leaked);
        r
    }

    fn pipe_read_bufs(
        &mut self,
        pipe: usize,
        to: &mut IovIter,
        leaked: &mut Vec<(String, u64)>,
    ) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        let mut total_len = to.count;
        if total_len == 0 {
            return Ok(0);
        }
        let mut ret = 0u64;
        let partial = |ret: u64, e: Errno| if ret == 0 { Err(e) } else { Ok(ret) };
        loop {
            if self.pipes[id].nrbufs != 0 {
                let cur = self.pipes[id].curbuf;
                let b = self.pipes[id].bufs[cur];
                let chars = u64::from(b.len).min(total_len);
                if let Err(e) = self.pipe_buf_confirm(&b) {
                    return partial(ret, e);
                }
                self.note_unwritten_read(id, cur, chars, leaked);
                self.note_stale_read(id, &b, "pipe_read");
                let written = self.copy_page_to_iter(b.page, u64::from(b.offset), chars, to);
                if written < chars {
                    return partial(ret, Errno::EFAULT);
                }
                ret += chars;
                let p = &mut self.pipes[id];
                let bm = &mut p.bufs[cur];
                bm.offset = bm.offset.wrapping_add(chars as u32);
                bm.len -= chars as u32;
                if bm.flags & PIPE_BUF_FLAG_PACKET != 0 {
                    total_len = chars;
                    bm.len = 0;
                }
                if bm.len == 0 {
                    self.pipe_buf_release_slot(id, cur);
                    let p = &mut self.pipes[id];
                    p.curbuf = p.next_idx(cur);
                    p.nrbufs -= 1;
                }
                total_len -= chars;
                if total_len == 0 {
                    break;
                }
            }
            let p = &self.pipes[id];
            if p.nrbufs != 0 {
                continue;
            }
            if p.writers == 0 || ret != 0 {
                break;
            }
            return Err(Errno::EAGAIN);
        }
        Ok(ret)
    }

    /// `pipe_write` (writev from the user iterator `from`), as v4.10 (same
    /// in 4.17):
    ///
    /// * `count` 0 → 0; no readers → `-EPIPE`.
    /// * Merge: chars = `count mod PAGE_SIZE` (the size of the *last*
    ///   page's worth of data). If it is non-zero, the pipe is not empty, the
    ///   last buffer can merge (v4.10: anon ops; modern: `CAN_MERGE` flag)
    ///   and `offset + len + chars ≤ PAGE_SIZE`, the **first** chars bytes
    ///   are appended to it. A short copy there returns `-EFAULT` even
    ///   though bytes reached the page (the buffer's len is not grown, so
    ///   they stay invisible).
    /// * Then one page per chunk of up to PAGE_SIZE while a slot is free
    ///   (`tmp_page` reused first). A copy shorter than PAGE_SIZE with bytes
    ///   still left in `from` is a fault: return the bytes of the completed
    ///   chunks (merge included), or `-EFAULT` if there were none; the
    ///   partly filled page is not inserted (v4.10 keeps it as `tmp_page`;
    ///   the modern ring already holds it as an empty buffer). Inserted
    ///   buffers get anon ops and flags 0 (v4.10) / `CAN_MERGE` (modern), or
    ///   packet ops and `PACKET` on a packetized pipe.
    /// * Ring full with bytes left: the bytes written, or `-EAGAIN` if none
    ///   (non-blocking model). Allocation failure: bytes written or
    ///   `-ENOMEM`.
    pub fn pipe_write(&mut self, pipe: usize, from: &mut IovIter) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        let total_len = from.count;
        if total_len == 0 {
            return Ok(0);
        }
        if self.pipes[id].readers == 0 {
            return Err(Errno::EPIPE);
        }
        let modern = self.modern_pipe_ring();
        let page_size = A::PAGE_SIZE;
        let mut ret = 0u64;
        let partial = |ret: u64, e: Errno| if ret == 0 { Err(e) } else { Ok(ret) };
        let chars = total_len & (page_size - 1);
        let p = &self.pipes[id];
        if p.nrbufs != 0 && chars != 0 {
            let last = (p.curbuf + p.nrbufs - 1) & p.mask();
            let b = p.bufs[last];
            let offset = u64::from(b.offset) + u64::from(b.len);
            let mergeable = if self.m.knobs.pipe_can_merge_flag {
                b.flags & PIPE_BUF_FLAG_CAN_MERGE != 0
            } else {
                b.ops.can_merge()
            };
            if mergeable && offset + chars <= page_size {
                self.pipe_buf_confirm(&b)?;
                let head = self.m.phys.compound_head(b.page);
                if let Owner::File { .. } = self.m.phys.page(head).owner {
                    let name = self.m.page_name(b.page);
                    self.m.event(
                        EventKind::PageCacheCorrupted,
                        format!(
                            "pipe_write merges {chars} bytes at offset {offset} into {name}, a page-cache page spliced into the pipe (stale PIPE_BUF_FLAG_CAN_MERGE)"
                        ),
                    );
                }
                let c = self.copy_page_from_iter(b.page, offset, chars, from);
                if c < chars {
                    return Err(Errno::EFAULT);
                }
                let bm = &mut self.pipes[id].bufs[last];
                bm.len = bm.len.wrapping_add(c as u32);
                ret = c;
                if from.count == 0 {
                    return Ok(ret);
                }
            }
        }
        loop {
            if self.pipes[id].readers == 0 {
                return partial(ret, Errno::EPIPE);
            }
            let p = &self.pipes[id];
            if p.nrbufs < p.buffers {
                let newbuf = (p.curbuf + p.nrbufs) & p.mask();
                let packet = p.packetized;
                let page = match p.tmp_page {
                    Some(t) => t,
                    None => {
                        let Some(t) = self.pipe_alloc_page(id) else {
                            return partial(ret, Errno::ENOMEM);
                        };
                        self.pipes[id].tmp_page = Some(t);
                        t
                    }
                };
                let (ops, flags) = match (packet, modern) {
                    (true, _) => (BufOps::Packet, PIPE_BUF_FLAG_PACKET),
                    (false, true) => (BufOps::Anon, PIPE_BUF_FLAG_CAN_MERGE),
                    (false, false) => (BufOps::Anon, 0),
                };
                let mut buf = PipeBuffer {
                    page,
                    offset: 0,
                    len: 0,
                    ops,
                    flags,
                };
                if modern {
                    // The slot is taken before the copy.
                    let p = &mut self.pipes[id];
                    p.bufs[newbuf] = buf;
                    p.nrbufs += 1;
                    p.tmp_page = None;
                }
                let copied = self.copy_page_from_iter(page, 0, page_size, from);
                if copied < page_size && from.count != 0 {
                    return partial(ret, Errno::EFAULT);
                }
                ret += copied;
                let p = &mut self.pipes[id];
                if modern {
                    p.bufs[newbuf].len = copied as u32;
                } else {
                    buf.len = copied as u32;
                    p.bufs[newbuf] = buf;
                    p.nrbufs += 1;
                    p.tmp_page = None;
                }
                if from.count == 0 {
                    break;
                }
            }
            let p = &self.pipes[id];
            if p.nrbufs < p.buffers {
                continue;
            }
            return partial(ret, Errno::EAGAIN);
        }
        Ok(ret)
    }

    // ------------------------------------------------------------------
    // vmsplice and splice (fs/splice.c)
    // ------------------------------------------------------------------

    /// A read through a pipe buffer whose page was freed under it (its
    /// `_refcount` wrapped, CVE-2019-11487): the bytes are those of the
    /// frame's present owner. Raises `use_after_free` naming it.
    fn note_stale_read(&mut self, id: usize, b: &PipeBuffer, what: &str) {
        let head = self.m.phys.compound_head(b.page);
        if self.m.phys.stale_refs(head) == 0 {
            return;
        }
        let now = if self.m.phys.page(head).flags.contains(PageFlags::FREE) {
            "a free frame".to_string()
        } else {
            self.m.page_name(head)
        };
        let pname = format!("pipe{id}");
        self.m.event(
            EventKind::UseAfterFree,
            format!(
                "{what}: {pname} buffer (offset {:#x}, len {:#x}) points to pfn {:#x}, freed while referenced; its bytes now belong to {now}",
                b.offset, b.len, head.0
            ),
        );
    }

    /// `pipe_buf_get(pipe, buf)`: a new reference to the buffer's page.
    /// Since 15fab63e1e57 (5.1, the `ref_get_checked` knob) it is
    /// `try_get_page` and fails on a signed count <= 0; before, it is an
    /// unconditional `get_page`. On a frame freed under the buffer the
    /// reference is a stale one.
    fn pipe_buf_get(&mut self, buf: &PipeBuffer) -> bool {
        let head = self.m.phys.compound_head(buf.page);
        if self.m.phys.stale_get(head) {
            return true;
        }
        if self.m.knobs.ref_get_checked && self.m.phys.page_ref_count(head) <= 0 {
            return false;
        }
        self.m.phys.get_page(head, 1);
        true
    }

    /// `tee(in, out, len, flags)` (`do_tee`): `-EINVAL` for the same pipe;
    /// `link_ipipe_prep` (empty input: 0 if it has no writers, else
    /// `-EAGAIN`: the model never sleeps), `link_opipe_prep` (no readers:
    /// `-EPIPE`; full: `-EAGAIN`), then `link_pipe`: each input buffer in
    /// turn, while `len` lasts and the output has room, is duplicated into
    /// the output with `pipe_buf_get` (the copy loses `PIPE_BUF_FLAG_GIFT`
    /// and, where the flag exists, `PIPE_BUF_FLAG_CAN_MERGE`; its len is
    /// capped at what is left of `len`). A failed `pipe_buf_get` stops the
    /// loop: `-EFAULT` if nothing was duplicated yet. Returns the bytes
    /// duplicated; the input is not consumed.
    pub fn tee(&mut self, input: usize, output: usize, len: u64) -> Result<u64, Errno> {
        let iid = self.pipe_id(input)?;
        let oid = self.pipe_id(output)?;
        if iid == oid {
            return Err(Errno::EINVAL);
        }
        // link_ipipe_prep
        if self.pipes[iid].nrbufs == 0 {
            return if self.pipes[iid].writers == 0 {
                Ok(0)
            } else {
                Err(Errno::EAGAIN)
            };
        }
        // link_opipe_prep
        let o = &self.pipes[oid];
        if o.is_full() {
            return Err(if o.readers == 0 {
                Errno::EPIPE
            } else {
                Errno::EAGAIN
            });
        }
        let mut len = len;
        let mut ret: Result<u64, Errno> = Ok(0);
        let mut i = 0usize;
        let modern = self.modern_pipe_ring();
        loop {
            if self.pipes[oid].readers == 0 {
                if ret == Ok(0) {
                    ret = Err(Errno::EPIPE);
                }
                break;
            }
            let (ip, op) = (&self.pipes[iid], &self.pipes[oid]);
            if i >= ip.nrbufs || op.is_full() {
                break;
            }
            let ibuf = ip.bufs[(ip.curbuf + i) & ip.mask()];
            let nbuf = (op.curbuf + op.nrbufs) & op.mask();
            if !self.pipe_buf_get(&ibuf) {
                if ret == Ok(0) {
                    ret = Err(Errno::EFAULT);
                }
                break;
            }
            let mut obuf = ibuf;
            obuf.flags &= !PIPE_BUF_FLAG_GIFT;
            if modern {
                obuf.flags &= !PIPE_BUF_FLAG_CAN_MERGE;
            }
            if u64::from(obuf.len) > len {
                obuf.len = len as u32;
            }
            let op = &mut self.pipes[oid];
            op.bufs[nbuf] = obuf;
            op.nrbufs += 1;
            ret = ret.map(|r| r + u64::from(obuf.len));
            len -= u64::from(obuf.len);
            i += 1;
            if len == 0 {
                break;
            }
        }
        ret
    }

    /// Reports the pages freed while references were still held since the
    /// last call (`use_after_free`), naming the pipe buffers that hold them.
    pub fn report_freed_referenced(&mut self) {
        let found: Vec<(Pfn, usize, usize)> = self
            .m
            .phys
            .stale_frames()
            .into_iter()
            .map(|(pfn, _)| {
                let (mut bufs, mut pipes) = (0, 0);
                for p in &self.pipes {
                    let n = p
                        .occupied_bufs()
                        .iter()
                        .filter(|b| b.ops != BufOps::Null && b.page == pfn)
                        .count();
                    bufs += n;
                    pipes += usize::from(n > 0);
                }
                (pfn, bufs, pipes)
            })
            .collect();
        self.m.report_freed_referenced(&|_, pfn| {
            let (b, n) = found
                .iter()
                .find(|(p, _, _)| *p == pfn)
                .map_or((0, 0), |x| (x.1, x.2));
            format!("{b} pipe buffers in {n} pipes")
        });
    }

    /// `add_to_pipe(pipe, buf)`: the buffer (whose page reference the caller
    /// hands over) goes into the first free slot, returning its len; no
    /// readers → `-EPIPE`, full → `-EAGAIN`, and in both cases the buffer is
    /// released here (its reference put).
    pub fn add_to_pipe(&mut self, pipe: usize, buf: PipeBuffer) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        let p = &mut self.pipes[id];
        let err = if p.readers == 0 {
            Errno::EPIPE
        } else if p.is_full() {
            Errno::EAGAIN
        } else {
            let slot = (p.curbuf + p.nrbufs) & p.mask();
            p.bufs[slot] = buf;
            p.nrbufs += 1;
            return Ok(u64::from(buf.len));
        };
        self.pipe_buf_release(id, buf);
        Err(err)
    }

    /// `vmsplice(fd, iov, nr_segs, flags)` on the write end of `pipe`
    /// (`vmsplice_to_pipe`): `SPLICE_F_GIFT` marks the buffers
    /// `PIPE_BUF_FLAG_GIFT`; the iovec array is checked by `import_iovec`
    /// (source direction); no readers → `-EPIPE`; full pipe → `-EAGAIN`
    /// (the model never sleeps, as with `SPLICE_F_NONBLOCK`); then
    /// [`Sys::iter_to_pipe`]. Returns the bytes spliced.
    pub fn vmsplice(&mut self, pipe: usize, iov: Vec<Iovec>, flags: u32) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        let buf_flag = if flags & SPLICE_F_GIFT != 0 {
            PIPE_BUF_FLAG_GIFT
        } else {
            0
        };
        let mut from = IovIter::import_iovec(&self.m, Dir::Write, iov)?;
        // wait_for_space
        let p = &self.pipes[id];
        if p.readers == 0 {
            return Err(Errno::EPIPE);
        }
        if p.is_full() {
            return Err(Errno::EAGAIN);
        }
        self.iter_to_pipe(&mut from, id, buf_flag)
    }

    /// v4.10 `iter_to_pipe(from, pipe, flags)`: while bytes remain and no
    /// add failed, gather up to [`VMSPLICE_BATCH`] pages of the first
    /// non-empty segment with `iov_iter_get_pages(from, ~0UL, 16)`; add one
    /// buffer per page (user-page ops, the given flags, the page's part of
    /// the data); the pipe takes over each page's reference, and the
    /// iterator advances per added buffer. The first failed add (full →
    /// `-EAGAIN`, no readers → `-EPIPE`) releases that page and stops; the
    /// rest of the batch is put. Returns the bytes added, or the error when
    /// none were.
    ///
    /// Where `iov_iter_get_pages2` replaced it (the `get_pages2` knob, 6.x),
    /// the batch is gathered with the advancing call and a failed add
    /// reverts the iterator by the bytes not added (6.13 `iter_to_pipe`):
    /// the same outcome.
    pub fn iter_to_pipe(
        &mut self,
        from: &mut IovIter,
        pipe: usize,
        flags: u32,
    ) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        if self.m.knobs.get_pages2 {
            return self.iter_to_pipe_advancing(from, id, flags);
        }
        let mut total = 0u64;
        let mut ret: Result<u64, Errno> = Ok(0);
        let mut failed = false;
        while from.count != 0 && !failed {
            let g = match self.iov_iter_get_pages(from, u64::MAX, VMSPLICE_BATCH) {
                Ok(g) if g.bytes > 0 => g,
                Ok(_) => {
                    ret = Ok(0);
                    break;
                }
                Err(e) => {
                    ret = Err(e);
                    break;
                }
            };
            let mut copied = g.bytes;
            let mut start = g.start;
            let mut n = 0usize;
            while copied > 0 {
                let size = copied.min(A::PAGE_SIZE - start);
                let page = g.pages[n];
                if failed {
                    let _ = self.m.put_page(page);
                } else {
                    self.hand_ref_to_pipe(page);
                    let buf = PipeBuffer {
                        page,
                        offset: start as u32,
                        len: size as u32,
                        ops: BufOps::User,
                        flags,
                    };
                    match self.add_to_pipe(id, buf) {
                        Ok(r) => {
                            self.iov_iter_advance(from, r);
                            total += r;
                        }
                        Err(e) => {
                            failed = true;
                            ret = Err(e);
                        }
                    }
                }
                copied -= size;
                n += 1;
                start = 0;
            }
            // Pages gup returned beyond the byte count (none in practice).
            for &page in &g.pages[n..] {
                let _ = self.m.put_page(page);
            }
        }
        if total > 0 { Ok(total) } else { ret }
    }

    /// Hands a page reference from the workload's ledger to the pipe.
    fn hand_ref_to_pipe(&mut self, page: Pfn) {
        if self.m.disown_ref(page).is_err() {
            self.m.event(
                EventKind::RefUnderflow,
                format!(
                    "vmsplice: no workload reference on {} to hand to the pipe",
                    self.m.page_name(page)
                ),
            );
        }
    }

    /// 6.13 `iter_to_pipe`: `iov_iter_get_pages2` (advancing) per batch; on
    /// the first failed add, revert the bytes not added and put the pages
    /// after the failed one.
    fn iter_to_pipe_advancing(
        &mut self,
        from: &mut IovIter,
        id: usize,
        flags: u32,
    ) -> Result<u64, Errno> {
        let mut total = 0u64;
        while from.count != 0 {
            let g = match self.iov_iter_get_pages2(from, u64::MAX, VMSPLICE_BATCH) {
                Ok(g) if g.bytes > 0 => g,
                Ok(_) => return Ok(total),
                Err(e) => return if total > 0 { Ok(total) } else { Err(e) },
            };
            let mut left = g.bytes;
            let mut start = g.start;
            let n = (left + start).div_ceil(A::PAGE_SIZE) as usize;
            for k in 0..n {
                let size = left.min(A::PAGE_SIZE - start);
                let page = g.pages[k];
                self.hand_ref_to_pipe(page);
                let buf = PipeBuffer {
                    page,
                    offset: start as u32,
                    len: size as u32,
                    ops: BufOps::User,
                    flags,
                };
                match self.add_to_pipe(id, buf) {
                    Ok(r) => total += r,
                    Err(e) => {
                        let _ = self.iov_iter_revert(from, left);
                        for &p in &g.pages[k + 1..] {
                            let _ = self.m.put_page(p);
                        }
                        return if total > 0 { Ok(total) } else { Err(e) };
                    }
                }
                left -= size;
                start = 0;
            }
            for &p in &g.pages[n..] {
                let _ = self.m.put_page(p);
            }
        }
        Ok(total)
    }

    /// `iter_file_splice_write(pipe, out, ppos, len, flags)`: splices up to
    /// `len` bytes from `pipe` to a `->write_iter` (`sink`). Per round: an
    /// empty pipe ends the splice (no writers, or something spliced) or gives
    /// `-EAGAIN`; one `bio_vec` per buffer from `curbuf` (page, len clipped
    /// to what is left of `len`, offset) — the pipe's own pages, **no copy**
    /// — make an `ITER_BVEC | WRITE` iterator for the sink; the bytes it
    /// took dismiss the fully eaten buffers (released) and shorten the
    /// partial one. A sink result ≤ 0 ends the splice. Returns the bytes
    /// spliced, or the sink's error / `-EAGAIN` when none were.
    pub fn iter_file_splice_write(
        &mut self,
        pipe: usize,
        len: u64,
        sink: &mut SpliceSink<'_, A>,
    ) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        let mut total_len = len;
        let mut num_spliced = 0u64;
        let mut ret: Result<u64, Errno> = Ok(0);
        while total_len != 0 {
            // splice_from_pipe_next
            let p = &self.pipes[id];
            if p.nrbufs == 0 {
                ret = if p.writers == 0 || num_spliced != 0 {
                    Ok(0)
                } else {
                    Err(Errno::EAGAIN)
                };
                break;
            }
            // Build the vector.
            let mut left = total_len;
            let mut array = Vec::with_capacity(p.nrbufs);
            let mut unwritten = Vec::new();
            let mut confirm_err = None;
            for slot in p.slots() {
                if left == 0 {
                    break;
                }
                let b = p.bufs[slot];
                let this_len = u64::from(b.len).min(left);
                if let Err(e) = self.pipe_buf_confirm(&b) {
                    confirm_err = Some(e);
                    break;
                }
                self.note_unwritten_read(id, slot, this_len, &mut unwritten);
                array.push(BioVec {
                    page: b.page,
                    len: this_len as u32,
                    offset: b.offset,
                });
                left -= this_len;
            }
            if let Some(e) = confirm_err {
                ret = Err(e);
                break;
            }
            self.report_unwritten_read("iter_file_splice_write", &unwritten);
            let mut from = IovIter::bvec(Dir::Write, array, total_len - left);
            let r = match sink(self, &mut from) {
                Ok(r) if r > 0 => r,
                other => {
                    ret = other;
                    break;
                }
            };
            num_spliced += r;
            total_len = total_len.saturating_sub(r);
            // Dismiss the fully eaten buffers, adjust the partial one.
            let mut r = r;
            while r != 0 {
                let p = &mut self.pipes[id];
                if p.nrbufs == 0 {
                    self.m.event(
                        EventKind::KernelBug,
                        "iter_file_splice_write: ->write_iter returned more than it was given",
                    );
                    break;
                }
                let cur = p.curbuf;
                let b = &mut p.bufs[cur];
                if r >= u64::from(b.len) {
                    r -= u64::from(b.len);
                    b.len = 0;
                    self.pipe_buf_release_slot(id, cur);
                    let p = &mut self.pipes[id];
                    p.curbuf = p.next_idx(cur);
                    p.nrbufs -= 1;
                } else {
                    b.offset = b.offset.wrapping_add(r as u32);
                    b.len -= r as u32;
                    r = 0;
                }
            }
        }
        if num_spliced != 0 {
            Ok(num_spliced)
        } else {
            ret
        }
    }

    /// [`Sys::iter_file_splice_write`] into a byte vector (a file whose
    /// `->write_iter` copies with `copy_from_iter`).
    pub fn splice_to_vec(
        &mut self,
        pipe: usize,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, Errno> {
        self.iter_file_splice_write(pipe, len, &mut |sys, from| {
            // Straight into `out`, no staging buffer.
            let start = out.len();
            out.resize(start + from.count as usize, 0);
            let n = sys.copy_from_iter(&mut out[start..], from);
            out.truncate(start + n as usize);
            Ok(n)
        })
    }

    /// `generic_file_splice_read(file, ppos, pipe, len)` (v4.9 .. v6.4):
    /// an `ITER_PIPE` iterator of `len` bytes at the pipe's first free slot,
    /// then a buffered read (a simplified `do_generic_file_read`: no
    /// readahead, every page up to date) that hands each page cache page to
    /// `copy_page_to_iter` — zero copy: the pipe buffers *are* the page
    /// cache pages. A read ending short of the iterator (the ring filled)
    /// gives the bytes read, or `-EFAULT` when none; on an error the
    /// iterator is reset to its start and advanced by 0, which releases
    /// everything it emitted, and `-EFAULT` becomes `-EAGAIN`. `*pos`
    /// advances by the bytes read. `-EINVAL` where there is no `ITER_PIPE`.
    ///
    /// Called on a **full** pipe (its callers prevent this with
    /// `wait_for_space`, see [`Sys::splice_file_to_pipe`]), the iterator
    /// starts at slot `curbuf` (the kernel WARNs), nothing can be added, and
    /// the error path's advance-by-0 truncates from `idx` = `curbuf`: every
    /// buffer already in the pipe is released.
    pub fn generic_file_splice_read(
        &mut self,
        file: FileId,
        pos: &mut u64,
        pipe: usize,
        len: u64,
    ) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        let mut to = self.iov_iter_pipe_len(id, len).map_err(|_| Errno::EINVAL)?;
        let idx = to.pipe_idx;
        match self.filemap_read(file, *pos, &mut to) {
            Ok(n) => {
                *pos += n;
                Ok(n)
            }
            Err(e) => {
                to.pipe_idx = idx;
                to.iov_offset = 0;
                self.iov_iter_advance(&mut to, 0);
                Err(if e == Errno::EFAULT { Errno::EAGAIN } else { e })
            }
        }
    }

    /// `splice(file, pos, pipe, NULL, len, flags)` (v4.10 `do_splice`, file →
    /// pipe): no readers → `-EPIPE`; a full pipe → `-EAGAIN` (the model never
    /// sleeps, as with `SPLICE_F_NONBLOCK`) — this `wait_for_space` is what
    /// keeps `generic_file_splice_read` away from full pipes; `len` clipped
    /// to `MAX_RW_COUNT`; then [`Sys::generic_file_splice_read`].
    pub fn splice_file_to_pipe(
        &mut self,
        file: FileId,
        pos: &mut u64,
        pipe: usize,
        len: u64,
    ) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        let p = &self.pipes[id];
        if p.readers == 0 {
            return Err(Errno::EPIPE);
        }
        if p.is_full() {
            return Err(Errno::EAGAIN);
        }
        let len = len.min(crate::iov_iter::MAX_RW_COUNT);
        match self.m.files.get(file as usize) {
            None => Err(EBADF),
            Some(f) if f.splice_read => self.generic_file_splice_read(file, pos, id, len),
            // 5.10 (36e2c7421f02) removed default_file_splice_read: no
            // ->splice_read is -EINVAL (`warn_unsupported` in 6.x).
            Some(_) if !self.m.knobs.pipe_iter => Err(Errno::EINVAL),
            Some(_) => self.default_file_splice_read(file, pos, id, len),
        }
    }

    /// v4.10 `default_file_splice_read(in, ppos, pipe, len)` (`fs/splice.c`;
    /// the same in 4.9 and 4.17), what `do_splice_to` runs for a file
    /// without `->splice_read` (a procfs file): full pipe → `-EAGAIN`; an
    /// `ITER_PIPE` iterator of `len + offset` bytes (`offset` = `*ppos`
    /// within its page, to keep page boundaries); `iov_iter_get_pages_alloc`
    /// reserves the pages with `push_pipe` (fresh, **not zeroed**; nothing
    /// reserved → `-ENOMEM`); the first buffer starts at `offset`; one kvec
    /// per page at its direct-map address; `kernel_readv` (`set_fs(KERNEL_DS)`,
    /// `vfs_readv` → the file's `->read`, modelled by the buffered read of its
    /// data); the page references are put; `iov_iter_advance(copied)` must
    /// then truncate the reservation to what the read wrote — all of it when
    /// the read returned 0 (at or past EOF) or an error. Returns the read's
    /// result; `*ppos` advances by the bytes read.
    ///
    /// With v4.9's `pipe_advance` (`pipe_advance_release = FencepostV4_9`)
    /// and a reservation that filled the ring from `curbuf` (an empty pipe,
    /// `len` ≥ the ring), the advance by 0 releases nothing: splice returns
    /// 0, yet the pipe holds 16 pages of whatever their frames held before
    /// (CVE-2017-5550). The model marks such buffers in [`Pipe::unwritten`].
    pub fn default_file_splice_read(
        &mut self,
        file: FileId,
        pos: &mut u64,
        pipe: usize,
        len: u64,
    ) -> Result<u64, Errno> {
        let id = self.pipe_id(pipe)?;
        if self.pipes[id].is_full() {
            return Err(Errno::EAGAIN);
        }
        let offset = *pos % A::PAGE_SIZE;
        let mut to = self
            .iov_iter_pipe_len(id, len + offset)
            .map_err(|_| Errno::EINVAL)?;
        let start_idx = to.pipe_idx;
        let g = match self.iov_iter_get_pages_alloc(&to, len + offset) {
            Ok(g) if g.bytes > 0 => g,
            _ => return Err(Errno::ENOMEM),
        };
        if g.start != 0 {
            self.m.event(
                EventKind::KernelBug,
                "default_file_splice_read: BUG_ON(dummy): the pipe iterator's pages do not start at offset 0",
            );
        }
        let nr_pages = g.bytes.div_ceil(A::PAGE_SIZE) as usize;
        {
            let b = &mut self.pipes[id].bufs[to.pipe_idx];
            b.offset = offset as u32;
            b.len = b.len.wrapping_sub(offset as u32);
        }
        let mut vec = Vec::with_capacity(nr_pages);
        let mut left = len;
        let mut off = offset;
        for &page in g.pages.iter().take(nr_pages) {
            let this_len = left.min(A::PAGE_SIZE - off);
            vec.push(Iovec {
                base: self.m.page_address(page).wrapping_add(off),
                len: this_len,
            });
            left -= this_len;
            off = 0;
        }
        // kernel_readv: vfs_readv under KERNEL_DS (v4.x iov_iter_init then
        // makes the iovec a kvec); ->read copies the file's bytes from *ppos.
        let total: u64 = vec.iter().map(|v| v.len).sum();
        let mut kv = IovIter::kvec(Dir::Read, vec, total);
        let old = self.m.set_fs(true);
        let res = self.filemap_read(file, *pos, &mut kv);
        self.m.restore_fs(old);
        let copied = match res {
            Ok(n) if n > 0 => {
                *pos += n;
                n
            }
            _ => 0,
        };
        for &page in &g.pages {
            let _ = self.m.put_page(page);
        }
        self.iov_iter_advance(&mut to, copied);
        // Not kernel code: remember the reserved buffers the read never
        // wrote that the advance left in the pipe.
        let written = (offset + copied).div_ceil(A::PAGE_SIZE) as usize;
        let written = if copied == 0 { 0 } else { written };
        let mut slot = start_idx;
        for (k, &page) in g.pages.iter().enumerate().take(nr_pages) {
            let p = &mut self.pipes[id];
            if k >= written && p.occupied(slot) && p.bufs[slot].page == page {
                p.unwritten[slot] = Some(page);
            }
            slot = p.next_idx(slot);
        }
        res
    }

    /// The buffered read loop of v4.10 `do_generic_file_read`, without
    /// readahead or locking: page by page from `pos` up to `i_size`,
    /// `copy_page_to_iter`; stop when the iterator is full, or (short copy)
    /// with `-EFAULT` unless something was read.
    fn filemap_read(&mut self, file: FileId, pos: u64, to: &mut IovIter) -> Result<u64, Errno> {
        let Some(f) = self.m.files.get(file as usize) else {
            return Err(EBADF);
        };
        let isize = f.size;
        let mut index = pos / A::PAGE_SIZE;
        let mut offset = pos % A::PAGE_SIZE;
        let mut written = 0u64;
        loop {
            if to.count == 0 || index * A::PAGE_SIZE + offset >= isize {
                break;
            }
            let Some((page, _)) = self.m.find_or_read_page(file, index) else {
                return if written > 0 {
                    Ok(written)
                } else {
                    Err(Errno::ENOMEM)
                };
            };
            let end_index = (isize - 1) / A::PAGE_SIZE;
            let mut nr = A::PAGE_SIZE;
            if index == end_index {
                nr = (isize - 1) % A::PAGE_SIZE + 1;
                if nr <= offset {
                    break;
                }
            }
            nr -= offset;
            let ret = self.copy_page_to_iter(page, offset, nr, to);
            offset += ret;
            index += offset / A::PAGE_SIZE;
            offset %= A::PAGE_SIZE;
            written += ret;
            if to.count == 0 {
                break;
            }
            if ret < nr {
                return if written > 0 {
                    Ok(written)
                } else {
                    Err(Errno::EFAULT)
                };
            }
        }
        Ok(written)
    }
}
