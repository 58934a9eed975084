//! NFS O_DIRECT, `fs/nfs/direct.c` and `fs/nfs/pagelist.c` as of v4.10.
//!
//! `nfs_direct_{read,write}_schedule_iovec` loop while the iterator has
//! bytes: `iov_iter_get_pages_alloc(iter, &pagevec, rsize or wsize, &pgbase)`
//! (one segment in v4.10; `rsize`/`wsize` never below `PAGE_SIZE`), advance
//! by the result, then one `nfs_page` request per page of
//! `ceil((result + pgbase) / PAGE_SIZE)` — `nfs_create_request` takes its own
//! reference on the page — added to one `nfs_pageio` descriptor that lives
//! across the loop; then `nfs_direct_release_pages` drops the gather's
//! references on those pages and the array is `kvfree`d. So every gathered
//! page is referenced twice for a moment and its gather reference is put
//! early; an array is allocated per call.
//!
//! Coalescing (`nfs_can_coalesce_requests` + `nfs_generic_pg_test`): a
//! request joins the RPC being built only if its file offset follows the
//! previous one; within the same page the byte ranges touch, across pages
//! the previous ends at `PAGE_SIZE` and this one starts at 0; the RPC's page
//! array stays within one page of pointers (`(count + bytes) >> PAGE_SHIFT`
//! pointers, 8 bytes each, ≤ `PAGE_SIZE`); and it stays within the
//! descriptor's `rsize`/`wsize` — a request that fits only partly is cut and
//! the rest continues as a subrequest (its own `nfs_create_request`, its own
//! reference) in the next RPC. A request that cannot join sends the RPC
//! (`nfs_pageio_doio`) and starts the next. Because the descriptor persists,
//! page-aligned segments coalesce into full-size RPCs even with one
//! segment per gather; the segment limit costs gather calls and array
//! allocations (spec `iov-iter.md` §4.2).
//!
//! RPCs complete successfully and release their requests' references.
//!
//! Each RPC is checked against the iovecs (the emulator's observation, see
//! [`crate::bytemap`]): a request's page and offset must hold the bytes the
//! iterator has at that request's file position. Where they do not, a
//! `data_mismatch` event names the RPC and, stretch by stretch, which page
//! and offset the RPC's bytes come from (write) or land in (read) and
//! where the iovec data is — what Layton's stitched `iov_iter_get_pages_alloc`
//! as posted does to NFS.

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::{Errno, EventKind};

use super::{IoReport, NotModelled};
use crate::Sys;
use crate::bytemap::{compare_runs, slice_locs};
use crate::iov_iter::IovIter;

#[derive(Clone, Copy, Debug)]
struct NfsPage {
    page: Pfn,
    pgbase: u64,
    bytes: u64,
    /// Position of the request's first byte in the I/O (its file offset
    /// relative to the start of the direct I/O), i.e. in the iterator.
    pos: u64,
}

#[derive(Debug)]
struct Pageio {
    bsize: u64,
    list: Vec<NfsPage>,
    count: u64,
    /// RPCs sent so far.
    rpcs: u64,
    /// The iterator as the I/O started, to check each RPC against.
    orig: IovIter,
    dir: NfsDir,
    model: &'static str,
}

/// Which way an NFS direct I/O goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NfsDir {
    /// `nfs_direct_read_schedule_iovec` (rsize).
    Read,
    /// `nfs_direct_write_schedule_iovec` (wsize).
    Write,
}

impl<A: Arch> Sys<A> {
    /// v4.10 NFS O_DIRECT with `bsize` = rsize or wsize. Returns the bytes
    /// scheduled (all complete) or the error when nothing was.
    pub fn nfs_direct_schedule_iovec(
        &mut self,
        iter: &mut IovIter,
        bsize: u64,
        dir: NfsDir,
        viro: bool,
    ) -> Result<(Result<u64, Errno>, IoReport), NotModelled> {
        self.need_v4("fs/nfs/direct.c")?;
        let name = match (dir, viro) {
            (NfsDir::Read, false) => "nfs_direct_read_schedule_iovec",
            (NfsDir::Write, false) => "nfs_direct_write_schedule_iovec",
            (NfsDir::Read, true) => {
                "nfs_direct_read_schedule_iovec, page loop as iov_iter_for_each_page"
            }
            (NfsDir::Write, true) => {
                "nfs_direct_write_schedule_iovec, page loop as iov_iter_for_each_page"
            }
        };
        let (mut io, before) = IoReport::start(name, self);
        let bsize = bsize.max(A::PAGE_SIZE);
        let mut desc = Pageio {
            bsize,
            list: Vec::new(),
            count: 0,
            rpcs: 0,
            orig: iter.clone(),
            dir,
            model: name,
        };
        let mut requested = 0u64;
        let mut result: Result<(), Errno> = Ok(());
        if viro {
            // The inner loop becomes the callback: the nfs_page takes over
            // the gathered reference (no extra get_page, nothing put after);
            // one batch array of bsize / PAGE_SIZE entries is reused.
            io.allocations += 1;
            let batch = (bsize / A::PAGE_SIZE).max(1);
            let want = iter.count;
            let d = &mut desc;
            let io_ref = &mut io;
            let req_ref = &mut requested;
            let r = self.iov_iter_for_each_page(iter, want, batch, &mut |sys, page, from, len| {
                sys.nfs_pageio_add_request(
                    d,
                    NfsPage {
                        page,
                        pgbase: from,
                        bytes: len,
                        pos: *req_ref,
                    },
                    io_ref,
                );
                *req_ref += len;
                true
            });
            if let Err(e) = r {
                result = Err(e);
            }
        } else {
            while iter.count > 0 {
                let g = match self.iov_iter_get_pages_alloc(iter, bsize) {
                    Ok(g) => g,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                io.allocations += 1;
                let mut bytes = g.bytes;
                self.iov_iter_advance(iter, bytes);
                let npages = (g.bytes + g.start).div_ceil(A::PAGE_SIZE) as usize;
                let mut pgbase = g.start;
                for &page in &g.pages[..npages.min(g.pages.len())] {
                    let req_len = bytes.min(A::PAGE_SIZE - pgbase);
                    // nfs_create_request: the request's own reference.
                    self.consumer_get(page, &mut io);
                    self.nfs_pageio_add_request(
                        &mut desc,
                        NfsPage {
                            page,
                            pgbase,
                            bytes: req_len,
                            pos: requested,
                        },
                        &mut io,
                    );
                    pgbase = 0;
                    bytes -= req_len;
                    requested += req_len;
                }
                // nfs_direct_release_pages(pagevec, npages); kvfree.
                for &page in &g.pages[..npages.min(g.pages.len())] {
                    self.put(page);
                    io.put_early += 1;
                }
                if g.pages.len() > npages {
                    let rest: Vec<String> = g.pages[npages..]
                        .iter()
                        .map(|&p| self.m.page_name(p))
                        .collect();
                    io.note(format!(
                        "the array held {} pages but {:#x} bytes from offset {:#x} cover {npages}: nfs_direct_release_pages never puts the rest ({}), a leaked reference each",
                        g.pages.len(),
                        g.bytes,
                        g.start,
                        rest.join(", ")
                    ));
                }
            }
        }
        // nfs_pageio_complete.
        self.nfs_pageio_doio(&mut desc, &mut io);
        io.finish(self, before);
        let r = if requested == 0 {
            Err(result.err().unwrap_or(Errno::EIO))
        } else {
            Ok(requested)
        };
        Ok((r, io))
    }

    /// `nfs_pageio_add_request` (`__nfs_pageio_add_request`), with the
    /// subrequest split of a request that fits only partly.
    fn nfs_pageio_add_request(&mut self, d: &mut Pageio, mut req: NfsPage, io: &mut IoReport) {
        loop {
            let size = self.nfs_can_coalesce(d, &req);
            if size == 0 && !d.list.is_empty() {
                self.nfs_pageio_doio(d, io);
                continue;
            }
            if size == 0 {
                self.put(req.page); // cannot happen: an empty RPC takes any page
                return;
            }
            let rest = req.bytes - size;
            d.list.push(NfsPage { bytes: size, ..req });
            d.count += size;
            if rest == 0 {
                return;
            }
            // A subrequest for the rest of the page, with its own reference.
            self.consumer_get(req.page, io);
            req = NfsPage {
                page: req.page,
                pgbase: req.pgbase + size,
                bytes: rest,
                pos: req.pos + size,
            };
        }
    }

    /// `nfs_can_coalesce_requests` + `nfs_generic_pg_test`: how many bytes
    /// of `req` join the RPC being built (0: none).
    fn nfs_can_coalesce(&self, d: &Pageio, req: &NfsPage) -> u64 {
        if let Some(prev) = d.list.last() {
            // File offsets follow each other in a direct I/O.
            if req.page == prev.page {
                if req.pgbase != prev.pgbase + prev.bytes {
                    return 0;
                }
            } else if req.pgbase != 0 || prev.pgbase + prev.bytes != A::PAGE_SIZE {
                return 0;
            }
        }
        if ((d.count + req.bytes) >> A::PAGE_SHIFT) * 8 > A::PAGE_SIZE {
            return 0;
        }
        (d.bsize - d.count).min(req.bytes)
    }

    /// `nfs_pageio_doio`: sends the RPC being built (which completes and
    /// releases its requests' references).
    fn nfs_pageio_doio(&mut self, d: &mut Pageio, io: &mut IoReport) {
        if d.list.is_empty() {
            return;
        }
        let list = std::mem::take(&mut d.list);
        io.unit("rpc", d.count, list.len() as u64);
        d.rpcs += 1;
        self.nfs_check_rpc(d, &list);
        for r in list {
            self.put(r.page);
        }
        d.count = 0;
    }

    /// Compares each request of RPC `d.rpcs` with where the iterator's bytes
    /// at its position are, and raises one `data_mismatch` event listing
    /// every stretch that differs.
    fn nfs_check_rpc(&mut self, d: &Pageio, list: &[NfsPage]) {
        // Where the RPC's own bytes are (its requests are consecutive from
        // the first one's position), and where the iterator's bytes on the
        // requests' pages are: work for the bytes and pages of this RPC,
        // not for the whole iterator each time.
        let first = list.first().map_or(0, |r| r.pos);
        let mut at = d.orig.clone();
        self.iov_iter_advance(&mut at, first);
        let Some(span) = self.iter_locations(&at, d.count) else {
            return;
        };
        let truths: Vec<_> = list
            .iter()
            .map(|r| slice_locs(&span, r.pos - first, r.bytes))
            .collect();
        if list
            .iter()
            .zip(&truths)
            .all(|(r, t)| compare_runs(&[(r.page, r.pgbase, r.bytes)], t, &[]).is_empty())
        {
            return;
        }
        // A request disagrees: where else the iterator's bytes lie on its
        // pages, to tell the reader which bytes it carries instead.
        let pages: Vec<Pfn> = list.iter().map(|r| r.page).collect();
        let Some(all) = self.iter_locations_on(&d.orig, d.orig.count, &pages) else {
            return;
        };
        let verb = match d.dir {
            NfsDir::Write => "come from",
            NfsDir::Read => "land in",
        };
        let mut parts = Vec::new();
        for (r, truth) in list.iter().zip(&truths) {
            for m in compare_runs(&[(r.page, r.pgbase, r.bytes)], truth, &all) {
                parts.push(self.describe_mismatch(&d.orig, &m, r.pos, verb));
            }
        }
        if parts.is_empty() {
            return;
        }
        self.m.event(
            EventKind::DataMismatch,
            format!(
                "{}: RPC {} carries I/O bytes {:#x}..{:#x}; RPC {} {}",
                d.model,
                d.rpcs,
                first,
                first + d.count - 1,
                d.rpcs,
                parts.join(&format!("; RPC {} ", d.rpcs))
            ),
        );
    }
}
