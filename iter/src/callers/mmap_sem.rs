//! Why `iov_iter_for_each_page` must never call back under `mmap_sem`
//! (Al Viro in the thread: "I *really* don't like the idea of having the
//! callbacks done in an inconsistent locking environment - sometimes under
//! ->mmap_sem, sometimes not").
//!
//! Two shapes of the same page walk over a user iterator, with a second
//! thread of the same process calling `mmap` (`down_write(mmap_sem)`) after
//! `writer_after` callbacks, and a callback that touches user memory — a
//! page fault or `get_user_pages`, both `down_read(mmap_sem)`:
//!
//! * **under `mmap_sem`**: the walker takes `down_read(mmap_sem)`, gathers
//!   each segment with `get_user_pages` and calls back while still holding
//!   it. The writer queues behind the walker's read hold; the callback's
//!   `down_read` queues behind the writer (rwsem fairness, spec
//!   `arch-and-gup.md` §8): a `deadlock` event.
//! * **`iov_iter_for_each_page`**: pages come from `iov_iter_get_pages`
//!   (gup-fast; its slow path drops `mmap_sem` before returning) and the
//!   callback runs with no lock held: the writer gets `mmap_sem`, releases
//!   it, and the callback's fault proceeds.
//!
//! After a deadlock the emulator abandons the stuck task in the lock model
//! (the kernel would hang), releases the pages the walker held, and lets the
//! writer finish.

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::sync::{Acquire, TaskId};
use vmemu_mm::{Errno, EventKind, GupFlags};

use super::{IoReport, NotModelled};
use crate::Sys;
use crate::iov_iter::{Dir, IovIter, Piece};

impl<A: Arch> Sys<A> {
    fn writer_task(&mut self) -> TaskId {
        let mm = self.m.current_mm();
        self.m.new_task(mm)
    }

    /// The callback's user access: `down_read(mmap_sem)` of the current
    /// task (a fault), then `up_read`. `false` if it would sleep forever.
    fn callback_fault(&mut self, io: &mut IoReport) -> bool {
        let mm = self.m.current_mm();
        if self.m.mmap_read_lock(mm).is_err() {
            io.note("the callback's fault sleeps in down_read(mmap_sem) behind the queued writer while its own task holds mmap_sem for read");
            return false;
        }
        self.m.mmap_read_unlock(mm);
        true
    }

    /// The walk with callbacks under `mmap_sem` (the variant rejected in the
    /// thread). Returns the bytes called back, or `-EDEADLK` (never
    /// returns).
    pub fn callback_under_mmap_sem(
        &mut self,
        it: &mut IovIter,
        writer_after: u64,
    ) -> Result<(Result<u64, Errno>, IoReport), NotModelled> {
        // Gathering is get_user_pages here, counted by hand.
        let mut io = IoReport {
            model: "page walk calling back under down_read(mmap_sem) (get_user_pages)".into(),
            ..IoReport::default()
        };
        let mm = self.m.current_mm();
        let me = self.m.current;
        let w = self.writer_task();
        if self.m.mmap_read_lock(mm).is_err() {
            return Ok((Err(Errno::EDEADLK), io));
        }
        let flags = if it.dir == Dir::Read {
            GupFlags::FOLL_WRITE
        } else {
            GupFlags::empty()
        };
        let mut calls = 0u64;
        let mut bytes = 0u64;
        let mut held: Vec<Pfn> = Vec::new();
        let mut deadlocked = false;
        let mut writer_done = false;
        let pieces = it.pieces(&mut self.m, it.count);
        'walk: for p in pieces {
            let Piece::User { addr, len } = p else {
                continue;
            };
            let start = addr.offset_in(A::PAGE_SIZE);
            let n = (start + len).div_ceil(A::PAGE_SIZE);
            let mut pages = Vec::new();
            let got = self
                .m
                .get_user_pages(addr.align_down(A::PAGE_SIZE), n, flags, &mut pages)
                .unwrap_or(0);
            io.pages_pinned += got;
            io.get_pages_calls += 1;
            held.extend_from_slice(&pages);
            let mut off = start;
            let mut rem = len;
            for _ in 0..got {
                let l = rem.min(A::PAGE_SIZE - off);
                if calls == writer_after && writer_after > 0 && !writer_done {
                    writer_done = true;
                    self.m.current = w;
                    let r = self.m.locks.down_write(w, mm);
                    self.m.current = me;
                    io.note(format!(
                        "after {calls} callback(s) task {} calls mmap: down_write(mmap_sem) {}",
                        w.0,
                        if r == Ok(Acquire::Queued) {
                            "queues behind the walker's read hold"
                        } else {
                            "is granted"
                        }
                    ));
                    if r == Ok(Acquire::Granted) {
                        let _ = self.m.locks.up_write(w, mm);
                    }
                }
                if !self.callback_fault(&mut io) {
                    deadlocked = true;
                    break 'walk;
                }
                calls += 1;
                bytes += l;
                rem -= l;
                off = 0;
            }
        }
        for p in held {
            self.put(p);
        }
        if deadlocked {
            let granted = self.m.locks.abandon(me);
            io.note(format!(
                "unwound by the emulator: task {} is taken out of the lock model (the kernel would hang), its pages put; {}",
                me.0,
                if granted.contains(&w) { "the writer then gets mmap_sem and finishes" } else { "" }
            ));
            if granted.contains(&w) {
                let _ = self.m.locks.up_write(w, mm);
            }
            io.unit("callbacks", bytes, calls);
            return Ok((Err(Errno::EDEADLK), io));
        }
        self.m.mmap_read_unlock(mm);
        if self.m.locks.holds_mmap_sem(w, mm) {
            let _ = self.m.locks.up_write(w, mm);
        }
        self.iov_iter_advance(it, bytes);
        io.unit("callbacks", bytes, calls);
        Ok((Ok(bytes), io))
    }

    /// The same walk with `iov_iter_for_each_page`: callbacks never run
    /// under `mmap_sem`.
    pub fn callback_for_each_page(
        &mut self,
        it: &mut IovIter,
        writer_after: u64,
    ) -> Result<(Result<u64, Errno>, IoReport), NotModelled> {
        self.need_v4("iov_iter_for_each_page over iov_iter_get_pages")?;
        let (mut io, before) = IoReport::start("iov_iter_for_each_page", self);
        let mm = self.m.current_mm();
        let me = self.m.current;
        let w = self.writer_task();
        let mut calls = 0u64;
        let mut ok = true;
        let want = it.count;
        let res = {
            let io_ref = &mut io;
            let calls_ref = &mut calls;
            let ok_ref = &mut ok;
            self.iov_iter_for_each_page(it, want, 16, &mut |sys, page, _, _| {
                if *calls_ref == writer_after && writer_after > 0 {
                    sys.m.current = w;
                    let r = sys.m.locks.down_write(w, mm);
                    sys.m.current = me;
                    io_ref.note(format!(
                        "after {} callback(s) task {} calls mmap: down_write(mmap_sem) {}",
                        *calls_ref,
                        w.0,
                        if r == Ok(Acquire::Granted) {
                            "is granted (nobody holds mmap_sem during callbacks) and released"
                        } else {
                            "queues"
                        }
                    ));
                    if r == Ok(Acquire::Granted) {
                        let _ = sys.m.locks.up_write(w, mm);
                    }
                }
                *calls_ref += 1;
                let go = sys.callback_fault(io_ref);
                sys.put(page);
                if !go {
                    *ok_ref = false;
                }
                go
            })
        };
        if !ok {
            self.m.event(
                EventKind::KernelBug,
                "callback_for_each_page: a callback could not take mmap_sem",
            );
        }
        io.unit("callbacks", *res.as_ref().unwrap_or(&0), calls);
        io.finish(self, before);
        Ok((res, io))
    }
}
