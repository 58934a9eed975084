//! FUSE as of v4.10: direct I/O (`fs/fuse/file.c`) and the `/dev/fuse`
//! reply copy (`fs/fuse/dev.c`), with the two problems of the thread.
//!
//! **Direct I/O.** `fuse_direct_io` sends one READ/WRITE request per round of
//! at most `max_read`/`max_write` bytes; `fuse_get_user_pages` fills the
//! request's page array — `min(iov_iter_npages(iter, 32), 32)` entries
//! (`FUSE_MAX_PAGES_PER_REQ`) — with `iov_iter_get_pages(ii, &pages[n],
//! want - got, max_pages - n, &start)` calls (one segment each) until the
//! bytes or the pages run out; a failure keeps what was gathered. A KVEC
//! iterator bypasses pages (the kernel address goes into the request). The
//! server answers in full; `fuse_release_user_pages` puts every page.
//!
//! **The mmap deadlock (Miklos Szeredi, thread point I).** A thread faults on
//! an mmap of a fuse file: `filemap_fault` → `page_cache_read` (no
//! readahead, e.g. `MADV_RANDOM`, the path Al Viro walks through) adds the
//! page **locked** → `fuse_readpage` → a READ request → the thread sleeps in
//! `request_wait_answer`, still holding `mmap_sem` for read and the page
//! lock. A server thread of the same process reads the request from
//! `/dev/fuse` and writes the reply from an iovec pointing into the same
//! mapping: `fuse_dev_do_write` → `copy_out_args` → `fuse_copy_fill` clears
//! `FR_LOCKED` (`unlock_request`) and calls `iov_iter_get_pages(iter, &page,
//! PAGE_SIZE, 1, &off)`; gup-fast finds no PTE, the slow path faults,
//! `filemap_fault` finds the page locked and (`FAULT_FLAG_ALLOW_RETRY`, not
//! killable in v4.10's `faultin_page`) drops `mmap_sem` and waits in
//! `wait_on_page_locked` — for the page the requester holds while it waits
//! for this very reply. The wait-for graph has a cycle: a `deadlock` event.
//!
//! `fuse_abort_conn` (umount -f, or the fusectl abort) breaks it: a request
//! on the `io` list without `FR_LOCKED` is ended at once (`to_end1`), the
//! requester wakes with `-ECONNABORTED`, `fuse_readpage` unlocks the page
//! (not up to date) and `filemap_fault` returns `VM_FAULT_SIGBUS`. The
//! server's wait ends, its retried fault (`FAULT_FLAG_TRIED`) re-reads the
//! page, `fuse_get_req` fails with `-ENOTCONN`, the fault gives `SIGBUS`,
//! gup `-EFAULT`, and `fuse_dev_do_write` returns `-ENOENT` (the queue is
//! disconnected).
//!
//! **The abort-during-copy window (Al Viro).** If a request were ended while
//! the server still copies into the requester's buffer (an out argument on
//! the requester's stack, e.g. `fuse_entry_out` of LOOKUP), the copy would
//! land in freed memory. v4.10 prevents it with `FR_LOCKED`: set by
//! `lock_request` around the memcpy (pages faulted in beforehand by gup),
//! cleared while `fuse_copy_fill` gathers; `fuse_abort_conn` leaves an
//! `FR_LOCKED` request alone, and a request ended while unlocked makes the
//! next `lock_request` fail with `-ENOENT` before anything is copied. The
//! workload picks the interleaving ([`AbortAt`]) and the copy discipline
//! ([`CopyDiscipline`]): the `copy_{to,from}_iter` conversion Al first
//! suggested cannot hold `FR_LOCKED` across a faulting copy, so an abort
//! during it is a `use_after_free` event; Miklos's plan (requests keep their
//! arguments alive) makes it harmless.

use std::collections::BTreeSet;

use vmemu_arch::{Arch, Pfn, VirtAddr};
use vmemu_mm::sync::{Acquire, MmId, TaskId};
use vmemu_mm::{Backing, Errno, EventKind, FaultFlags, GupFlags, VmFault};

use super::{IoReport, NotModelled};
use crate::Sys;
use crate::iov_iter::{Dir, IovIter, IterType, Piece};

/// `FUSE_MAX_PAGES_PER_REQ`.
pub const FUSE_MAX_PAGES_PER_REQ: u64 = 32;
/// `sizeof(struct fuse_out_header)`.
pub const FUSE_OUT_HEADER: u64 = 16;
/// `sizeof(struct fuse_entry_out)` (the LOOKUP reply).
pub const FUSE_ENTRY_OUT: u64 = 128;

/// Where `fuse_abort_conn` runs during the server's reply copy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AbortAt {
    /// Inside `fuse_copy_fill`'s page gathering for the argument, with
    /// `FR_LOCKED` clear.
    Fill,
    /// During the memcpy into the requester's argument.
    Copy,
}

/// How the reply is copied into the request's arguments.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CopyDiscipline {
    /// v4.10: pages gathered by `iov_iter_get_pages`, memcpy under
    /// `FR_LOCKED`.
    FrLocked,
    /// `copy_from_iter` straight from the server's iovec (may fault, so no
    /// `FR_LOCKED` around it).
    CopyIter,
    /// As `CopyIter`, but the request holds its arguments (copied into
    /// refcounted pages) until the server drops it.
    ArgsKept,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Opcode {
    Read,
    Lookup,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Processing,
    Io,
    Finished,
}

#[derive(Clone, Debug)]
struct Req {
    unique: u64,
    opcode: Opcode,
    initiator: TaskId,
    mm: MmId,
    state: State,
    locked: bool,
    aborted: bool,
    private: bool,
    error: Option<Errno>,
    /// READ: the page cache page it reads into (locked by the initiator).
    page: Option<Pfn>,
    fault_addr: VirtAddr,
    /// The initiator's outcome: the fault's VM_FAULT code, or the LOOKUP's
    /// return (0 or -errno as i64). `None` while it sleeps.
    initiator_result: Option<i64>,
    /// LOOKUP: the requester returned and its stack arguments are gone.
    args_freed: bool,
    /// The server's `fuse_dev_write` result, once it returned.
    write_result: Option<Result<u64, Errno>>,
}

/// A server thread asleep in the middle of a reply copy.
#[derive(Clone, Debug)]
struct Suspended {
    unique: u64,
    nbytes: u64,
    page: Pfn,
}

/// One fuse connection (one mount) with its requests and tasks.
#[derive(Clone, Debug, Default)]
pub struct FuseConn {
    aborted: bool,
    next_unique: u64,
    reqs: Vec<Req>,
    server: Option<TaskId>,
    /// Page cache pages of fuse files that are not up to date (being read,
    /// or left so by a failed read), by frame number.
    pending: BTreeSet<u64>,
    suspended: Option<Suspended>,
}

/// The copy state of `fuse_dev_do_write` (`struct fuse_copy_state`).
#[derive(Debug)]
struct Cs {
    /// The page being copied from, with a gup reference (v4.10).
    pg: Option<Pfn>,
    len: u64,
    req: Option<u64>,
}

/// A fuse model result: the value and what to print.
pub type FuseOut = (Result<u64, Errno>, String);

impl FuseConn {
    fn req(&mut self, unique: u64) -> Option<&mut Req> {
        self.reqs.iter_mut().find(|r| r.unique == unique)
    }

    /// The initiator's outcome of request `unique` (`None`: unknown request;
    /// `-EDEADLK`: still asleep).
    #[must_use]
    pub fn initiator_result(&self, unique: u64) -> Option<i64> {
        let r = self.reqs.iter().find(|r| r.unique == unique)?;
        Some(r.initiator_result.unwrap_or(Errno::EDEADLK.to_ret()))
    }

    /// The server's `fuse_dev_write` outcome for request `unique`
    /// (`-EDEADLK` while it sleeps or before it wrote).
    #[must_use]
    pub fn write_result(&self, unique: u64) -> Option<i64> {
        let r = self.reqs.iter().find(|r| r.unique == unique)?;
        Some(match r.write_result {
            Some(Ok(n)) => n as i64,
            Some(Err(e)) => e.to_ret(),
            None => Errno::EDEADLK.to_ret(),
        })
    }
}

impl<A: Arch> Sys<A> {
    /// v4.10 `fuse_direct_io` with `nmax` = `max_read`/`max_write`.
    pub fn fuse_direct_io(
        &mut self,
        iter: &mut IovIter,
        nmax: u64,
        viro: bool,
    ) -> Result<(Result<u64, Errno>, IoReport), NotModelled> {
        self.need_v4("fs/fuse/file.c")?;
        let (mut io, before) = IoReport::start(
            if viro {
                "fuse_direct_io, fuse_get_user_pages as iov_iter_for_each_page"
            } else {
                "fuse_direct_io"
            },
            self,
        );
        let write = iter.dir == Dir::Write;
        let kind = if write { "fuse_write" } else { "fuse_read" };
        let mut res = 0u64;
        let mut err: Option<Errno> = None;
        while iter.count > 0 {
            let max_pages = self
                .iov_iter_npages(iter, FUSE_MAX_PAGES_PER_REQ)
                .min(FUSE_MAX_PAGES_PER_REQ);
            io.allocations += 1; // fuse_get_req(fc, npages): the page array
            let want = iter.count.min(nmax.max(1));
            let mut pages: Vec<Pfn> = Vec::new();
            let mut nbytes = 0u64;
            let mut e = None;
            if iter.ty == IterType::Kvec {
                // Kernel I/O: the kernel address goes into the request.
                let n = iter.pieces(&mut self.m, want).first().map_or(0, Piece::len);
                self.iov_iter_advance(iter, n);
                nbytes = n;
            } else if viro {
                let pg = &mut pages;
                let nb = &mut nbytes;
                let r =
                    self.iov_iter_for_each_page(iter, want, max_pages, &mut |_, page, _, len| {
                        pg.push(page);
                        *nb += len;
                        (pg.len() as u64) < max_pages
                    });
                if let Err(x) = r {
                    e = Some(x);
                }
            } else {
                while nbytes < want && (pages.len() as u64) < max_pages {
                    match self.iov_iter_get_pages(
                        iter,
                        want - nbytes,
                        max_pages - pages.len() as u64,
                    ) {
                        Ok(g) => {
                            self.iov_iter_advance(iter, g.bytes);
                            nbytes += g.bytes;
                            let n = (g.bytes + g.start).div_ceil(A::PAGE_SIZE) as usize;
                            pages.extend_from_slice(&g.pages[..n.min(g.pages.len())]);
                            for &p in &g.pages[n.min(g.pages.len())..] {
                                self.put(p);
                            }
                        }
                        Err(x) => {
                            e = Some(x);
                            break;
                        }
                    }
                }
            }
            if let Some(x) = e
                && nbytes == 0
            {
                err = Some(x);
                io.allocations -= 1;
                break;
            }
            // The server answers every byte; fuse_release_user_pages.
            io.unit(kind, nbytes, pages.len() as u64);
            for p in pages {
                self.put(p);
            }
            res += nbytes;
            if nbytes == 0 {
                break;
            }
        }
        io.finish(self, before);
        let r = if res > 0 {
            Ok(res)
        } else {
            Err(err.unwrap_or(Errno::EIO))
        };
        if viro {
            io.put_early = io.pages_pinned - io.units.iter().map(|u| u.pages).sum::<u64>();
        }
        Ok((r, io))
    }

    /// A thread of the current process faults on `addr` in an mmap of a
    /// fuse file (read): `filemap_fault` → `page_cache_read` →
    /// `fuse_readpage` → a READ request; it sleeps in `request_wait_answer`
    /// holding `mmap_sem` (read) and the page lock. Returns the request's
    /// `unique`.
    pub fn fuse_filemap_fault(&mut self, fc: &mut FuseConn, addr: VirtAddr) -> FuseOut {
        let mm = self.m.current_mm();
        let Some(vma) = self.m.vma_at(mm, addr) else {
            return (Err(Errno::EFAULT), "no VMA at the address: SIGSEGV".into());
        };
        let Backing::File { file, pgoff } = vma.backing else {
            return (Err(Errno::EINVAL), "not a file mapping".into());
        };
        let index = pgoff + (addr.0 - vma.start.0) / A::PAGE_SIZE;
        let me = self.m.current;
        let a = self.m.new_task(mm);
        self.m.current = a;
        let _ = self.m.locks.down_read(a, mm);
        let cached = self.m.files[file as usize].pages.contains_key(&index);
        let Some((page, _)) = self.m.find_or_read_page(file, index) else {
            self.m.current = me;
            return (Err(Errno::ENOMEM), "out of memory".into());
        };
        if cached && !fc.pending.contains(&page.0) {
            // Up to date: the fault maps it and returns.
            let r = self.m.handle_mm_fault(mm, &vma, addr, FaultFlags::USER);
            let _ = self.m.locks.up_read(a, mm);
            self.m.current = me;
            return (
                Ok(0),
                format!("{}: page cache hit, mapped ({r:?})", describe_task(a)),
            );
        }
        let _ = self.m.locks.lock_page(a, page.0);
        fc.pending.insert(page.0);
        fc.next_unique += 1;
        let unique = fc.next_unique;
        fc.reqs.push(Req {
            unique,
            opcode: Opcode::Read,
            initiator: a,
            mm,
            state: State::Pending,
            locked: false,
            aborted: false,
            private: false,
            error: None,
            page: Some(page),
            fault_addr: addr,
            initiator_result: None,
            args_freed: false,
            write_result: None,
        });
        let _ = self.m.locks.request_wait(a, unique);
        self.m.current = me;
        let name = self.m.page_name(page);
        (
            Ok(unique),
            format!(
                "{}: down_read(mmap_sem); page_cache_read adds {name} locked; fuse_readpage sends FUSE_READ #{unique} and sleeps in request_wait_answer",
                describe_task(a)
            ),
        )
    }

    /// A thread sends FUSE_LOOKUP whose reply (`fuse_entry_out`) goes to its
    /// stack, and sleeps in `request_wait_answer`. Returns `unique`.
    pub fn fuse_lookup(&mut self, fc: &mut FuseConn) -> FuseOut {
        let mm = self.m.current_mm();
        let a = self.m.new_task(mm);
        fc.next_unique += 1;
        let unique = fc.next_unique;
        fc.reqs.push(Req {
            unique,
            opcode: Opcode::Lookup,
            initiator: a,
            mm,
            state: State::Pending,
            locked: false,
            aborted: false,
            private: false,
            error: None,
            page: None,
            fault_addr: VirtAddr(0),
            initiator_result: None,
            args_freed: false,
            write_result: None,
        });
        let _ = self.m.locks.request_wait(a, unique);
        (
            Ok(unique),
            format!(
                "{}: FUSE_LOOKUP #{unique}, reply buffer (fuse_entry_out, {FUSE_ENTRY_OUT} bytes) on its stack; sleeps in request_wait_answer",
                describe_task(a)
            ),
        )
    }

    fn fuse_server(&mut self, fc: &mut FuseConn) -> TaskId {
        match fc.server {
            Some(s) => s,
            None => {
                let mm = self.m.current_mm();
                let s = self.m.new_task(mm);
                fc.server = Some(s);
                s
            }
        }
    }

    /// The server thread reads `/dev/fuse` (non-blocking): takes the oldest
    /// pending request. Returns its `unique`.
    pub fn fuse_dev_read(&mut self, fc: &mut FuseConn) -> FuseOut {
        let s = self.fuse_server(fc);
        if fc.aborted {
            return (Err(Errno::ENODEV), "connection aborted".into());
        }
        let Some(r) = fc.reqs.iter_mut().find(|r| r.state == State::Pending) else {
            return (Err(Errno::EAGAIN), "no request pending".into());
        };
        r.state = State::Processing;
        let u = r.unique;
        let _ = self.m.locks.request_claim(s, u);
        (
            Ok(u),
            format!(
                "{} (server) takes request #{u} (processing list)",
                describe_task(s)
            ),
        )
    }

    /// The server writes the reply to request `unique` from `it`
    /// (`fuse_dev_write` → `fuse_dev_do_write`), optionally with
    /// `fuse_abort_conn` interleaved.
    pub fn fuse_dev_write(
        &mut self,
        fc: &mut FuseConn,
        unique: u64,
        it: &mut IovIter,
        abort: Option<(AbortAt, CopyDiscipline)>,
    ) -> Result<FuseOut, NotModelled> {
        self.need_v4("fs/fuse/dev.c")?;
        let s = self.fuse_server(fc);
        let me = self.m.current;
        self.m.current = s;
        let mut notes = Vec::new();
        let r = self.fuse_dev_do_write(fc, unique, it, abort, &mut notes);
        self.m.current = me;
        let asleep = r == Err(Errno::EDEADLK) && fc.suspended.is_some();
        if let Some(req) = fc.req(unique)
            && !asleep
        {
            req.write_result = Some(r);
        }
        Ok((r, notes.join("; ")))
    }

    fn fuse_dev_do_write(
        &mut self,
        fc: &mut FuseConn,
        unique: u64,
        it: &mut IovIter,
        abort: Option<(AbortAt, CopyDiscipline)>,
        notes: &mut Vec<String>,
    ) -> Result<u64, Errno> {
        let nbytes = it.count;
        if nbytes < FUSE_OUT_HEADER {
            return Err(Errno::EINVAL);
        }
        let discipline = abort.map_or(CopyDiscipline::FrLocked, |a| a.1);
        let mut cs = Cs {
            pg: None,
            len: 0,
            req: None,
        };
        // fuse_copy_one(cs, &oh, sizeof(oh)): the header, no request yet.
        if let Err(e) = self.fuse_copy(fc, &mut cs, it, FUSE_OUT_HEADER, None, notes) {
            self.fuse_copy_finish(&mut cs);
            return Err(e);
        }
        notes.push(format!(
            "header read from the iovec (taken as oh.unique = {unique}, oh.len = {nbytes})"
        ));
        let aborted = fc.aborted;
        let Some(req) = fc.req(unique) else {
            self.fuse_copy_finish(&mut cs);
            return Err(Errno::ENOENT);
        };
        if aborted || req.state != State::Processing {
            self.fuse_copy_finish(&mut cs);
            return Err(Errno::ENOENT);
        }
        req.state = State::Io;
        req.locked = true;
        cs.req = Some(unique);
        let arg = match req.opcode {
            Opcode::Read => A::PAGE_SIZE.min(nbytes - FUSE_OUT_HEADER),
            Opcode::Lookup => FUSE_ENTRY_OUT.min(nbytes - FUSE_OUT_HEADER),
        };
        if discipline != CopyDiscipline::FrLocked {
            // No FR_LOCKED around a copy that may fault.
            if let Some(r) = fc.req(unique) {
                r.locked = false;
            }
        }
        let res = self.fuse_copy(fc, &mut cs, it, arg, abort, notes);
        if res == Err(Errno::EDEADLK) && fc.suspended.is_some() {
            if let Some(sp) = &mut fc.suspended {
                sp.nbytes = nbytes;
            }
            return Err(Errno::EDEADLK);
        }
        self.fuse_copy_finish(&mut cs);
        self.fuse_dev_write_tail(fc, unique, res, nbytes, notes)
    }

    /// The end of `fuse_dev_do_write` after `copy_out_args`.
    fn fuse_dev_write_tail(
        &mut self,
        fc: &mut FuseConn,
        unique: u64,
        res: Result<(), Errno>,
        nbytes: u64,
        notes: &mut Vec<String>,
    ) -> Result<u64, Errno> {
        let aborted = fc.aborted;
        let Some(req) = fc.req(unique) else {
            return Err(Errno::ENOENT);
        };
        req.locked = false;
        let err = if aborted {
            Some(Errno::ENOENT)
        } else if res.is_err() {
            req.error = Some(Errno::EIO);
            res.err()
        } else {
            None
        };
        self.fuse_request_end(fc, unique, notes);
        err.map_or(Ok(nbytes), Err)
    }

    /// `fuse_copy_finish`: puts the page being copied from.
    fn fuse_copy_finish(&mut self, cs: &mut Cs) {
        if let Some(p) = cs.pg.take() {
            self.put(p);
        }
        cs.len = 0;
    }

    /// Copies `size` bytes of the reply (`fuse_copy_one`/`fuse_copy_page`):
    /// refills `cs` from the iterator as needed.
    fn fuse_copy(
        &mut self,
        fc: &mut FuseConn,
        cs: &mut Cs,
        it: &mut IovIter,
        mut size: u64,
        abort: Option<(AbortAt, CopyDiscipline)>,
        notes: &mut Vec<String>,
    ) -> Result<(), Errno> {
        let discipline = abort.map_or(CopyDiscipline::FrLocked, |a| a.1);
        let mut abort_pending = abort.map(|a| a.0);
        if discipline != CopyDiscipline::FrLocked && cs.req.is_some() {
            // copy_from_iter straight into the argument: no fills, no
            // FR_LOCKED; the abort can only hit the copy.
            if abort_pending.is_some() {
                notes.push("fuse_abort_conn runs on another CPU during the copy".into());
                self.fuse_abort(fc, notes);
                self.fuse_copy_into_arg(fc, cs, size, discipline, notes);
            }
            let mut buf = vec![0u8; size as usize];
            let n = self.copy_from_iter(&mut buf, it);
            return if n == size {
                Ok(())
            } else {
                Err(Errno::EFAULT)
            };
        }
        while size > 0 {
            if cs.len == 0 {
                // fuse_copy_fill.
                if let Some(u) = cs.req
                    && let Some(r) = fc.req(u)
                {
                    if r.aborted {
                        return Err(Errno::ENOENT);
                    }
                    r.locked = false; // unlock_request
                }
                if abort_pending == Some(AbortAt::Fill) && cs.req.is_some() {
                    abort_pending = None;
                    notes.push("fuse_abort_conn runs on another CPU while fuse_copy_fill gathers (FR_LOCKED clear)".into());
                    self.fuse_abort(fc, notes);
                }
                self.fuse_copy_finish(cs);
                self.fuse_fill_page(fc, cs, it, notes)?;
                if let Some(u) = cs.req
                    && let Some(r) = fc.req(u)
                {
                    if r.aborted {
                        notes.push("lock_request: FR_ABORTED -> -ENOENT, nothing copied".into());
                        return Err(Errno::ENOENT);
                    }
                    r.locked = true; // lock_request
                }
            }
            let n = size.min(cs.len);
            if cs.req.is_some() && abort_pending.is_some() {
                abort_pending = None;
                notes.push(
                    "fuse_abort_conn runs on another CPU during the memcpy (FR_LOCKED set)".into(),
                );
                self.fuse_abort(fc, notes);
            }
            if cs.req.is_some() {
                self.fuse_copy_into_arg(fc, cs, n, discipline, notes);
            }
            cs.len -= n;
            size -= n;
        }
        if abort_pending.is_some() && cs.req.is_some() {
            notes.push("fuse_abort_conn runs after the copy".into());
            self.fuse_abort(fc, notes);
        }
        Ok(())
    }

    /// The memcpy into the request's argument: a write into freed memory if
    /// the requester already returned.
    fn fuse_copy_into_arg(
        &mut self,
        fc: &mut FuseConn,
        cs: &Cs,
        n: u64,
        discipline: CopyDiscipline,
        notes: &mut Vec<String>,
    ) {
        let Some(u) = cs.req else {
            return;
        };
        let Some(r) = fc.req(u) else {
            return;
        };
        if r.args_freed {
            if discipline == CopyDiscipline::ArgsKept {
                notes.push(format!(
                    "the server copies {n} bytes into request #{u}'s arguments, kept alive by the request: no use after free"
                ));
            } else {
                let t = r.initiator;
                self.m.event(
                    EventKind::UseAfterFree,
                    format!(
                        "fuse_dev_do_write copies {n} bytes of the reply to request #{u} into the stack of {}, which already returned from request_wait_answer (the request was ended by fuse_abort_conn while unlocked)",
                        describe_task(t)
                    ),
                );
            }
        }
    }

    /// Gathers the next source page of the reply (`iov_iter_get_pages(iter,
    /// &page, PAGE_SIZE, 1, &off)`), through the fuse fault path when it
    /// lies on a fuse page being read.
    fn fuse_fill_page(
        &mut self,
        fc: &mut FuseConn,
        cs: &mut Cs,
        it: &mut IovIter,
        notes: &mut Vec<String>,
    ) -> Result<(), Errno> {
        let first = it
            .pieces(&mut self.m, it.count)
            .into_iter()
            .find(|p| !p.is_empty());
        if let Some(Piece::User { addr, .. }) = first
            && let Some(pfn) = self.fuse_page_at(fc, addr)
        {
            return self.fuse_gup_fuse_page(fc, cs, addr, pfn, notes);
        }
        let g = self.iov_iter_get_pages(it, A::PAGE_SIZE, 1)?;
        if g.bytes == 0 {
            self.m
                .event(EventKind::KernelBug, "fuse_copy_fill: BUG_ON(!err)");
            return Err(Errno::EFAULT);
        }
        cs.len = g.bytes;
        cs.pg = g.pages.first().copied();
        for &p in g.pages.iter().skip(1) {
            self.put(p);
        }
        self.iov_iter_advance(it, g.bytes);
        Ok(())
    }

    /// The fuse page being read behind user address `addr` of the current
    /// mm, if any.
    fn fuse_page_at(&self, fc: &FuseConn, addr: VirtAddr) -> Option<Pfn> {
        let mm = self.m.current_mm();
        let vma = self.m.vma_at(mm, addr)?;
        let Backing::File { file, pgoff } = vma.backing else {
            return None;
        };
        let index = pgoff + (addr.0 - vma.start.0) / A::PAGE_SIZE;
        let pfn = *self.m.files[file as usize].pages.get(&index)?;
        fc.pending.contains(&pfn.0).then_some(pfn)
    }

    /// gup of a fuse page being read: gup-fast finds no PTE; the slow path
    /// faults, and `filemap_fault` waits for the page lock.
    fn fuse_gup_fuse_page(
        &mut self,
        fc: &mut FuseConn,
        cs: &mut Cs,
        addr: VirtAddr,
        pfn: Pfn,
        notes: &mut Vec<String>,
    ) -> Result<(), Errno> {
        let s = self.m.current;
        let mm = self.m.current_mm();
        let mut pages = Vec::new();
        let fast = self
            .m
            .__get_user_pages_fast(
                addr.align_down(A::PAGE_SIZE),
                1,
                GupFlags::empty(),
                &mut pages,
            )
            .unwrap_or(0);
        for p in pages {
            self.put(p);
        }
        let name = self.m.page_name(pfn);
        notes.push(format!(
            "fuse_copy_fill: iov_iter_get_pages on {name}: gup-fast pinned {fast} (no PTE), slow path: down_read(mmap_sem), handle_mm_fault -> filemap_fault finds the page locked, lock_page_or_retry drops mmap_sem and sleeps in wait_on_page_locked (not killable)"
        ));
        if let Ok(Acquire::Queued) = self.m.locks.down_read(s, mm) {
            self.fuse_report_wait(notes);
            return self.fuse_suspend(fc, cs, pfn);
        }
        let _ = self.m.locks.up_read(s, mm);
        match self.m.locks.lock_page(s, pfn.0) {
            Ok(Acquire::Queued) => {
                self.fuse_report_wait(notes);
                self.fuse_suspend(fc, cs, pfn)
            }
            _ => {
                // Not locked any more: the waiter only needed the bit clear.
                let _ = self.m.locks.unlock_page(s, pfn.0);
                self.fuse_retry_fault(fc, pfn, notes)
            }
        }
    }

    fn fuse_report_wait(&mut self, notes: &mut Vec<String>) {
        match self.m.locks.deadlock() {
            Some(d) => {
                notes.push("the server never returns".into());
                let mut text = d.to_string();
                for st in &d.steps {
                    if let vmemu_mm::sync::LockId::Page(pfn) = st.lock {
                        let name = self.m.page_name(Pfn(pfn));
                        text = text.replace(&format!("pfn {pfn:#x}"), &name);
                    }
                }
                self.m.event(EventKind::Deadlock, text);
            }
            None => {
                let t = self.m.current;
                self.m.event(
                    EventKind::Blocked,
                    format!("{} sleeps in wait_on_page_locked", describe_task(t)),
                );
            }
        }
    }

    fn fuse_suspend(&mut self, fc: &mut FuseConn, cs: &Cs, pfn: Pfn) -> Result<(), Errno> {
        fc.suspended = Some(Suspended {
            unique: cs.req.unwrap_or(0),
            nbytes: 0,
            page: pfn,
        });
        Err(Errno::EDEADLK)
    }

    /// The server's fault retried with `FAULT_FLAG_TRIED` after the page
    /// was unlocked: `lock_page`, the page is not up to date, `->readpage`
    /// again — `fuse_get_req` fails with `-ENOTCONN` once the connection is
    /// aborted (the only way a pending page is unlocked here), the fault
    /// returns `VM_FAULT_SIGBUS` and gup `-EFAULT`.
    fn fuse_retry_fault(
        &mut self,
        fc: &mut FuseConn,
        pfn: Pfn,
        notes: &mut Vec<String>,
    ) -> Result<(), Errno> {
        let s = self.m.current;
        let mm = self.m.current_mm();
        let _ = self.m.locks.down_read(s, mm);
        let _ = self.m.locks.lock_page(s, pfn.0);
        let _ = self.m.locks.unlock_page(s, pfn.0);
        let _ = self.m.locks.up_read(s, mm);
        notes.push(format!(
            "retried fault (FAULT_FLAG_TRIED): {} not up to date, ->readpage: {}, VM_FAULT_SIGBUS, gup -EFAULT",
            self.m.page_name(pfn),
            if fc.aborted {
                "fuse_get_req fails with -ENOTCONN"
            } else {
                "the read fails"
            }
        ));
        Err(Errno::EFAULT)
    }

    /// `request_end`: the request finishes and its initiator wakes.
    fn fuse_request_end(&mut self, fc: &mut FuseConn, unique: u64, notes: &mut Vec<String>) {
        let Some(r) = fc.req(unique) else {
            return;
        };
        if r.state == State::Finished {
            return;
        }
        r.state = State::Finished;
        let req = r.clone();
        self.m.locks.request_answer(unique);
        let me = self.m.current;
        self.m.current = req.initiator;
        let err = req.error;
        let result: i64 = match req.opcode {
            Opcode::Read => {
                let page = req.page.unwrap_or(Pfn(0));
                let ok = err.is_none();
                // fuse_readpage: SetPageUptodate on success; unlock_page.
                if ok {
                    fc.pending.remove(&page.0);
                }
                let _ = self.m.locks.unlock_page(req.initiator, page.0);
                let code = if ok {
                    // The fault finishes: the page is mapped.
                    if let Some(vma) = self.m.vma_at(req.mm, req.fault_addr) {
                        let _ =
                            self.m
                                .handle_mm_fault(req.mm, &vma, req.fault_addr, FaultFlags::USER);
                    }
                    VmFault::MAJOR | VmFault::LOCKED
                } else {
                    VmFault::SIGBUS
                };
                let _ = self.m.locks.up_read(req.initiator, req.mm);
                notes.push(format!(
                    "{} wakes: request #{unique} {}; fuse_readpage unlocks {}; filemap_fault returns {}",
                    describe_task(req.initiator),
                    err.map_or("answered".to_string(), |e| format!("failed with {e}")),
                    self.m.page_name(page),
                    if ok { "VM_FAULT_MAJOR|VM_FAULT_LOCKED (page mapped)" } else { "VM_FAULT_SIGBUS: SIGBUS" }
                ));
                i64::from(code.bits())
            }
            Opcode::Lookup => {
                notes.push(format!(
                    "{} wakes and returns {} from the lookup; its stack (the reply buffer) is gone",
                    describe_task(req.initiator),
                    err.map_or("0".to_string(), |e| e.to_string())
                ));
                err.map_or(0, Errno::to_ret)
            }
        };
        self.m.current = me;
        if let Some(r) = fc.req(unique) {
            r.initiator_result = Some(result);
            r.args_freed = r.opcode == Opcode::Lookup;
        }
    }

    /// `fuse_abort_conn` (umount -f, or writing to the connection's `abort`
    /// file in fusectl). Returns the requests ended now.
    pub fn fuse_abort_conn(&mut self, fc: &mut FuseConn) -> FuseOut {
        let mut notes = Vec::new();
        let n = self.fuse_abort(fc, &mut notes);
        // A server woken from its page wait goes on with its reply.
        if let Some(sp) = fc.suspended.take() {
            let s = fc.server.unwrap_or(self.m.current);
            if self.m.locks.is_blocked(s) {
                fc.suspended = Some(sp);
                notes.push(format!("{} still sleeps", describe_task(s)));
            } else {
                let me = self.m.current;
                self.m.current = s;
                let _ = self.m.locks.unlock_page(s, sp.page.0);
                notes.push(format!(
                    "{} (server) wakes from wait_on_page_locked",
                    describe_task(s)
                ));
                let r = self.fuse_retry_fault(fc, sp.page, &mut notes);
                let res = self.fuse_dev_write_tail(fc, sp.unique, r, sp.nbytes, &mut notes);
                notes.push(format!(
                    "fuse_dev_write returns {}",
                    res.map_or_else(|e| e.to_string(), |v| v.to_string())
                ));
                if let Some(req) = fc.req(sp.unique) {
                    req.write_result = Some(res);
                }
                self.m.current = me;
            }
        }
        (Ok(n), notes.join("; "))
    }

    fn fuse_abort(&mut self, fc: &mut FuseConn, notes: &mut Vec<String>) -> u64 {
        if fc.aborted {
            return 0;
        }
        fc.aborted = true;
        let mut to_end = Vec::new();
        for r in &mut fc.reqs {
            match r.state {
                State::Io => {
                    r.error = Some(Errno::ECONNABORTED);
                    r.aborted = true;
                    if r.locked {
                        notes.push(format!(
                            "request #{} is FR_LOCKED: fuse_abort_conn leaves it to the server",
                            r.unique
                        ));
                    } else {
                        r.private = true;
                        to_end.push(r.unique);
                    }
                }
                State::Pending | State::Processing => {
                    r.error = Some(Errno::ECONNABORTED);
                    to_end.push(r.unique);
                }
                State::Finished => {}
            }
        }
        for &u in &to_end {
            notes.push(format!(
                "fuse_abort_conn ends request #{u} with -ECONNABORTED"
            ));
            self.fuse_request_end(fc, u, notes);
        }
        to_end.len() as u64
    }

    /// End of the run: tasks still asleep stay asleep in the kernel; the
    /// emulator takes them out of the lock model. Returns what it did.
    pub fn fuse_unwind(&mut self, fc: &mut FuseConn) -> Option<String> {
        let mut asleep = Vec::new();
        for r in &fc.reqs {
            if r.initiator_result.is_none() {
                asleep.push(r.initiator);
            }
        }
        if fc.suspended.is_some()
            && let Some(s) = fc.server
        {
            asleep.push(s);
        }
        if asleep.is_empty() {
            return None;
        }
        for &t in &asleep {
            self.m.locks.abandon(t);
        }
        let names: Vec<String> = asleep.iter().map(|&t| describe_task(t)).collect();
        Some(format!(
            "{} stay asleep in the kernel at the end of the workload (nothing breaks the wait); the emulator abandons them (locks released); they hold no page references in the ledger (fuse_copy_fill put the server's source page before gathering)",
            names.join(" and ")
        ))
    }
}

fn describe_task(t: TaskId) -> String {
    format!("task {}", t.0)
}
