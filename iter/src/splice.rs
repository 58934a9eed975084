//! Splicing (`fs/splice.c`): `tee` (`do_tee`, `link_pipe`), `add_to_pipe`,
//! vmsplice into a pipe (`vmsplice_to_pipe`, `iter_to_pipe`), splice from a
//! pipe to a `->write_iter` (`iter_file_splice_write`) and from a file to a
//! pipe (`do_splice`, `generic_file_splice_read`,
//! `default_file_splice_read`), with the `SPLICE_F_*` flags of
//! `include/linux/splice.h`. The model never sleeps: where splice would
//! wait for room or data it returns `-EAGAIN`, as with `SPLICE_F_NONBLOCK`.

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::mm::FileId;
use vmemu_mm::{Errno, EventKind};

use crate::Sys;
use crate::iov_iter::{BioVec, Dir, IovIter, Iovec};
use crate::pipe::{BufOps, EBADF, PIPE_BUF_FLAG_CAN_MERGE, PIPE_BUF_FLAG_GIFT, PipeBuffer};

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

/// A `->write_iter` for [`Sys::iter_file_splice_write`]: receives an
/// `ITER_BVEC | WRITE` iterator over the pipe buffers and returns the bytes
/// it consumed (it should advance the iterator by as much) or an error.
pub type SpliceSink<'a, A> = dyn FnMut(&mut Sys<A>, &mut IovIter) -> Result<u64, Errno> + 'a;

impl<A: Arch> Sys<A> {
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
}
