//! Pipes (`fs/pipe.c`, with `struct pipe_inode_info` and `struct
//! pipe_buffer` of `include/linux/pipe_fs_i.h`): the ring of buffers, its
//! buffer operations, `pipe_read`/`pipe_write`, and the page references a
//! pipe holds. Built on it, each in the module named after its kernel file:
//! the pipe-backed iterator (`iter_pipe`, `lib/iov_iter.c`), vmsplice, splice
//! and tee (`splice`, `fs/splice.c`) and the buffered page-cache read that
//! splice uses (`filemap`, `mm/filemap.c`).
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
use vmemu_mm::phys::{Owner, PageFlags};
use vmemu_mm::{Errno, EventKind};

use crate::Sys;
use crate::iov_iter::IovIter;

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
    pub(crate) fn pipe_alloc_page(&mut self, id: usize) -> Option<Pfn> {
        let p = &mut self.pipes[id];
        let index = p.allocs;
        p.allocs += 1;
        let name = p.name;
        self.m.phys.alloc_uninit(0, Owner::Kernel { name, index })
    }

    /// `pipe_buf_release` of a buffer (in a slot or not): `ops` becomes NULL,
    /// then the old ops' `->release` runs. Returns the buffer as left.
    pub(crate) fn pipe_buf_release(&mut self, id: usize, mut buf: PipeBuffer) -> PipeBuffer {
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

    pub(crate) fn pipe_buf_release_slot(&mut self, id: usize, slot: usize) {
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
    pub(crate) fn pipe_buf_confirm(&self, buf: &PipeBuffer) -> Result<(), Errno> {
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
    /// the new buffer in the ring before copying (a194dfe6e6f6 "pipe:
    /// Rearrange sequence in pipe_write() to preallocate slot", 5.5, of the
    /// head/tail rework). The knob `pipe_can_merge_flag` names the first;
    /// among the modelled profiles the second coincides with it or with "no
    /// ITER_PIPE" (v6.13).
    pub(crate) fn modern_pipe_ring(&self) -> bool {
        !self.m.knobs.pipe_iter || self.m.knobs.pipe_can_merge_flag
    }

    // ------------------------------------------------------------------
    // read(2) / write(2) on a pipe (fs/pipe.c)
    // ------------------------------------------------------------------

    pub(crate) fn pipe_id(&self, pipe: usize) -> Result<usize, Errno> {
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
    ///   partly filled page is not inserted (v4.10 and, from ee5eda8ea595,
    ///   6.15+ keep it as `tmp_page`; 5.5 .. 6.14's ring already holds it as
    ///   an empty buffer: knob `pipe_write_no_empty_buf`). Inserted
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
        // 5.5 .. 6.14 take the slot before the copy (a194dfe6e6f6); from
        // ee5eda8ea595 (v6.15) the copy comes first, as in v4.10.
        let slot_first = modern && !self.m.knobs.pipe_write_no_empty_buf;
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
                if slot_first {
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
                if slot_first {
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
    // References on buffer pages (pipe_buf_get, freed pages)
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
    pub(crate) fn pipe_buf_get(&mut self, buf: &PipeBuffer) -> bool {
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
}
