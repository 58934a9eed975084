//! Models of the kernel code that **consumes** iov_iter pages — the callers
//! the 2017 thread argues about — run over the emulated mm:
//!
//! * [`dio`]: legacy direct I/O, `fs/direct-io.c` (v4.10): the 64-page queue
//!   of `dio_refill_pages`/`dio_get_page`, bios per contiguous disk run,
//!   `dio_cleanup` and the zero-page rule.
//! * [`bio`]: `bio_iov_iter_get_pages`, the block device's
//!   `__blkdev_direct_IO_simple`/`__blkdev_direct_IO` and `iomap_dio_actor`.
//! * [`iomap`]: `O_DIRECT` reads and writes of a regular file on ext4/XFS
//!   (`iomap_dio_rw`, and ext4's fs/direct-io.c path before v5.5) over the
//!   bios of [`bio`].
//! * [`nfs`]: `nfs_direct_{read,write}_schedule_iovec` and the `nfs_pageio`
//!   coalescing of `fs/nfs/pagelist.c`.
//! * [`ceph`]: ceph's O_DIRECT path, v4.10 (`dio_get_pagev_size`,
//!   `dio_get_pages_alloc`, reading any iterator through the iovec view) and
//!   v4.17+ (64-page batches into a bvec array), and the splice soft lockup.
//! * [`net`]: `zerocopy_sg_from_iter`; [`af_alg`]: `af_alg_make_sg` and
//!   `hash_sendmsg`; [`splice`]: `iter_to_pipe` with an I/O report.
//! * [`fuse`]: `fuse_direct_io`/`fuse_get_user_pages`, and the `/dev/fuse`
//!   reply copy (`fuse_copy_fill`, `FR_LOCKED`, `fuse_abort_conn`) with the
//!   mmap deadlock and the abort-during-copy window.
//! * [`mmap_sem`]: a page callback run under `mmap_sem` versus
//!   `iov_iter_for_each_page`.
//!
//! Every model returns what the kernel function returns plus an
//! [`IoReport`]: the I/O units it produced and its page-reference traffic.
//! Each `*_viro` entry point runs the same model with its page loop converted
//! to Al Viro's proposed `iov_iter_for_each_page` (the thread's "loop over
//! page subranges" shape); both produce the same I/O units.
//!
//! Every page reference a model takes goes through the machine's ledger
//! (`get_page_held`/`put_page`), so a model that forgets one fails the run
//! with a leak, as the kernel would leak it.

pub mod af_alg;
pub mod bio;
mod bio_align;
pub mod ceph;
pub mod dio;
pub mod fuse;
pub mod iomap;
pub mod mmap_sem;
pub mod net;
pub mod nfs;
pub mod splice;

use std::fmt;

use vmemu_arch::{Arch, Family, Pfn};
use vmemu_mm::KernelProfile;
use vmemu_mm::profile::GetPagesAlloc;

use crate::{GatherStats, Sys};

/// No-progress iterations after which a modelled loop is declared a soft
/// lockup: a count of iterations, not wall time, so runs are deterministic.
pub const WATCHDOG_BUDGET: u64 = 1000;

/// `sizeof(struct page)` on the modelled 64-bit kernels.
pub const STRUCT_PAGE_SIZE: u64 = 64;

/// One I/O unit a model produced: a bio, an NFS RPC, a ceph OSD request, an
/// skb, a scatterlist, a FUSE request, a pipe buffer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IoUnit {
    /// `bio`, `rpc`, `osd_write`, `skb`, `sgl`, `fuse_write`, ...
    pub kind: &'static str,
    /// Bytes.
    pub bytes: u64,
    /// Pages (bio_vecs, nfs_page requests, frags, scatterlist entries).
    pub pages: u64,
}

impl fmt::Display for IoUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}({} bytes, {} pages)",
            self.kind, self.bytes, self.pages
        )
    }
}

/// What a caller model did: its I/O units and its page-reference traffic.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct IoReport {
    /// The kernel function modelled.
    pub model: String,
    /// I/O units in issue order.
    pub units: Vec<IoUnit>,
    /// `iov_iter_get_pages*` / `iov_iter_extract_pages` calls.
    pub get_pages_calls: u64,
    /// Pages those calls returned (each pinned by a reference or pin).
    pub pages_pinned: u64,
    /// References the consumer took itself (`get_page` for a bio, an
    /// `nfs_page`, the zero page, ...).
    pub refs_taken: u64,
    /// References dropped before the I/O they were gathered for completed
    /// (unused queue pages, the gather's references once requests hold
    /// their own, the rest of a batch after a failure).
    pub put_early: u64,
    /// Page-pointer or bvec arrays allocated.
    pub allocations: u64,
    /// What happened, in words.
    pub notes: Vec<String>,
}

impl IoReport {
    /// A report for `model`, counting gathering calls from `sys`'s present
    /// totals.
    pub fn start<A: Arch>(model: impl Into<String>, sys: &Sys<A>) -> (Self, GatherStats) {
        (
            Self {
                model: model.into(),
                ..Self::default()
            },
            sys.gather,
        )
    }

    /// Fills in the gathering calls made since `before`.
    pub fn finish<A: Arch>(&mut self, sys: &Sys<A>, before: GatherStats) {
        self.get_pages_calls = sys.gather.calls - before.calls;
        self.pages_pinned = sys.gather.pages - before.pages;
    }

    /// Adds a unit.
    pub fn unit(&mut self, kind: &'static str, bytes: u64, pages: u64) {
        self.units.push(IoUnit { kind, bytes, pages });
    }

    /// Adds a note.
    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }
}

/// How ceph's O_DIRECT path gathers pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CephDio {
    /// v4.10–v4.16: `dio_get_pagev_size` + `dio_get_pages_alloc`, both
    /// reading the iterator through the iovec view of its union.
    PagevSize,
    /// Jeff Layton's 2/2 ("ceph: switch DIO code to use
    /// iov_iter_get_pages_alloc"; never merged): the stitched
    /// `iov_iter_get_pages_alloc` of his 1/2.
    LaytonAlloc,
    /// v4.17 "ceph: fix iov_iter issues in ceph_direct_read_write()":
    /// `iter_get_bvecs_alloc`, 64-page `iov_iter_get_pages` batches into a
    /// bvec array (6.x: `iov_iter_get_pages2`).
    BvecBatches,
}

/// What the caller models need to know about a profile, derived from its
/// knobs in one place (the consumer knobs `ceph_dio_bvecs`,
/// `ceph_max_write_size` and `bio_iov_iter_loop` sit in the profile table
/// beside the mm ones, each with its kernel commit) and from the arch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CallerKnobs {
    /// The v4.x `iov_iter_get_pages{,_alloc}` (non-advancing) exist; the
    /// v4.10 consumer loops (direct-io, NFS, skb, af_alg, fuse) are modelled
    /// only there.
    pub v4_get_pages: bool,
    /// ceph's O_DIRECT gathering.
    pub ceph_dio: CephDio,
    /// ceph's default `wsize`/`rsize` (knob `ceph_max_write_size`;
    /// `u64::MAX` where no cap applies before the request is built).
    pub ceph_wsize: u64,
    /// `bio_iov_iter_get_pages` loops until the bio is full or the iterator
    /// empty (knob `bio_iov_iter_loop`, 17d51b10d777), with
    /// `iov_iter_extract_pages` (pins user pages) and physically contiguous
    /// merging as 6.x has them.
    pub bio_iov_loop: bool,
    /// `struct page *` values are `vmemmap + pfn * 64`: the vmemmap base.
    pub vmemmap: u64,
}

impl CallerKnobs {
    /// The knobs of `p` for arch `A`.
    #[must_use]
    pub fn of<A: Arch>(p: &KernelProfile) -> Self {
        let k = &p.knobs;
        let legacy = k.family == Family::Legacy;
        let ceph_dio = if k.ceph_dio_bvecs {
            CephDio::BvecBatches
        } else if k.get_pages_alloc == GetPagesAlloc::FirstSegment {
            CephDio::PagevSize
        } else {
            CephDio::LaytonAlloc
        };
        let vmemmap = A::VMEMMAP_START;
        Self {
            v4_get_pages: legacy && !k.get_pages2,
            ceph_dio,
            ceph_wsize: k.ceph_max_write_size.unwrap_or(u64::MAX),
            bio_iov_loop: k.bio_iov_iter_loop,
            vmemmap,
        }
    }

    /// The value of `struct page *` for `pfn`.
    #[must_use]
    pub fn page_struct(&self, pfn: Pfn) -> u64 {
        self.vmemmap.wrapping_add(pfn.0 * STRUCT_PAGE_SIZE)
    }
}

/// Why a model cannot run under a profile.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NotModelled(pub String);

impl fmt::Display for NotModelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<A: Arch> Sys<A> {
    /// The caller knobs of this machine's profile.
    #[must_use]
    pub fn caller_knobs(&self) -> CallerKnobs {
        CallerKnobs::of::<A>(&self.m.profile)
    }

    /// Refuses a v4.x consumer loop under a profile without the v4.x
    /// `iov_iter_get_pages`.
    pub(crate) fn need_v4(&self, what: &str) -> Result<(), NotModelled> {
        if self.caller_knobs().v4_get_pages {
            Ok(())
        } else {
            Err(NotModelled(format!(
                "{what} is modelled as in v4.10/v4.17 (non-advancing iov_iter_get_pages), not under {}",
                self.m.profile
            )))
        }
    }

    /// A reference the consumer takes on `pfn` (recorded in the ledger).
    pub(crate) fn consumer_get(&mut self, pfn: Pfn, io: &mut IoReport) {
        self.m.get_page_held(pfn);
        io.refs_taken += 1;
    }

    /// Drops a reference in the ledger.
    pub(crate) fn put(&mut self, pfn: Pfn) {
        let _ = self.m.put_page(pfn);
    }
}
