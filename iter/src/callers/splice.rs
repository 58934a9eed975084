//! `iter_to_pipe` (`fs/splice.c`, the body of `vmsplice` to a pipe) with an
//! I/O report: batches of `iov_iter_get_pages(from, pages, ~0UL, 16, &start)`
//! (a literal 16, one segment), one pipe buffer per page taking over the
//! page's reference; the first failed `add_to_pipe` (full → `-EAGAIN`, no
//! readers → `-EPIPE`) releases that buffer and the rest of the batch is put.
//! The model itself is [`Sys::iter_to_pipe`]; the `_viro` form converts the
//! loop to `iov_iter_for_each_page` with `add_to_pipe` as the callback.

use vmemu_arch::Arch;
use vmemu_mm::Errno;

use super::{IoReport, NotModelled};
use crate::Sys;
use crate::iov_iter::IovIter;
use crate::pipe::{BufOps, PipeBuffer};
use crate::splice::VMSPLICE_BATCH;

impl<A: Arch> Sys<A> {
    /// `iter_to_pipe(from, pipe, 0)` with a report of buffers added and
    /// references put.
    pub fn iter_to_pipe_report(
        &mut self,
        from: &mut IovIter,
        pipe: usize,
        viro: bool,
    ) -> Result<(Result<u64, Errno>, IoReport), NotModelled> {
        if viro {
            self.need_v4("iter_to_pipe as iov_iter_for_each_page")?;
        }
        let (mut io, before) = IoReport::start(
            if viro {
                "iter_to_pipe, page loop as iov_iter_for_each_page"
            } else {
                "iter_to_pipe"
            },
            self,
        );
        let Some(p) = self.pipes.get(pipe) else {
            return Ok((Err(Errno::EBADF), io));
        };
        let bufs_before = p.nrbufs;
        let r = if viro {
            let want = from.count;
            let mut failed = None;
            let mut total = 0u64;
            let fr = &mut failed;
            let tot = &mut total;
            let res = self.iov_iter_for_each_page(
                from,
                want,
                VMSPLICE_BATCH,
                &mut |sys, page, off, len| {
                    // The buffer takes over the callback's reference.
                    let _ = sys.m.disown_ref(page);
                    let buf = PipeBuffer {
                        page,
                        offset: off as u32,
                        len: len as u32,
                        ops: BufOps::User,
                        flags: 0,
                    };
                    match sys.add_to_pipe(pipe, buf) {
                        Ok(n) => {
                            *tot += n;
                            true
                        }
                        Err(e) => {
                            *fr = Some(e);
                            false
                        }
                    }
                },
            );
            // The failed page was handed to the callback, but not added:
            // for_each_page advanced past it; the kernel's loop does not.
            if let Some(e) = failed {
                io.note(format!(
                    "add_to_pipe failed with {e}: iov_iter_for_each_page counts the refused page as handed out, so the iterator advances past it (iter_to_pipe advances per added buffer only)"
                ));
            }
            match (res, failed) {
                (_, Some(e)) if total == 0 => Err(e),
                (Err(e), _) if total == 0 => Err(e),
                _ => Ok(total),
            }
        } else {
            self.iter_to_pipe(from, pipe, 0)
        };
        let added = self.pipes[pipe].nrbufs.saturating_sub(bufs_before) as u64;
        let bytes = *r.as_ref().unwrap_or(&0);
        io.unit("pipe_buffers", bytes, added);
        io.finish(self, before);
        io.put_early = io.pages_pinned.saturating_sub(added);
        Ok((r, io))
    }
}
