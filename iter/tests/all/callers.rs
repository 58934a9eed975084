//! Caller models (`vmemu_iter::callers`): each test states the kernel rule it
//! checks, as read in the v4.10 / v4.17 / 6.13 sources named, derives the
//! expected outcome from it, and ends with the reference balance (nothing
//! left in the workload's ledger).

use vmemu_arch::{Arch, ArchId, Pfn, VirtAddr};
use vmemu_iter::callers::dio::DioFs;
use vmemu_iter::callers::fuse::{AbortAt, CopyDiscipline, FuseConn};
use vmemu_iter::callers::net::max_skb_frags;
use vmemu_iter::callers::nfs::NfsDir;
use vmemu_iter::callers::{IoUnit, WATCHDOG_BUDGET};
use vmemu_iter::{BioVec, Dir, IovIter, Iovec, Sys};
use vmemu_mm::{Backing, Errno, EventKind, FileOps, KernelProfile, MapFlags, Prot};

const PHYS: u64 = 128 << 20;

macro_rules! on_every_arch {
    ($($f:ident),* $(,)?) => {
        $(
            mod $f {
                #[test]
                fn x86_64() {
                    super::$f::<vmemu_arch::X86_64>();
                }
                #[test]
                fn arm64() {
                    super::$f::<vmemu_arch::Arm64>();
                }
                #[test]
                fn ppc64() {
                    super::$f::<vmemu_arch::Ppc64>();
                }
            }
        )*
    };
}

on_every_arch!(
    ceph_splice_soft_lockup_v4_10,
    ceph_splice_completes_after_the_fix,
    dio_zero_page_calls_once_per_pending_page,
    nfs_coalescing_depends_on_page_size,
    blkdev_simple_is_short_in_v4_10_only,
    skb_frags_run_out,
    af_alg_does_not_advance,
    fuse_mmap_deadlock_and_abort,
    fuse_abort_window_per_discipline,
    callbacks_under_mmap_sem_deadlock,
);

fn sys<A: Arch>(profile: &str) -> Sys<A> {
    Sys::new(KernelProfile::parse(profile).unwrap(), PHYS).unwrap()
}

/// An anonymous mapping of `pages` pages, every page faulted in for write.
fn buf<A: Arch>(s: &mut Sys<A>, pages: u64, name: &str) -> VirtAddr {
    let mm = s.m.current_mm();
    let a =
        s.m.mmap(
            mm,
            None,
            pages * A::PAGE_SIZE,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            name,
        )
        .unwrap();
    assert_eq!(s.m.clear_user(a, pages * A::PAGE_SIZE), 0);
    a
}

fn iovec<A: Arch>(s: &Sys<A>, dir: Dir, segs: &[(VirtAddr, u64)]) -> IovIter {
    let v: Vec<Iovec> = segs
        .iter()
        .map(|&(base, len)| Iovec { base, len })
        .collect();
    let n = v.iter().map(|x| x.len).sum();
    IovIter::init(&s.m, dir, v, n)
}

fn balanced<A: Arch>(s: &Sys<A>) {
    assert_eq!(s.m.held_total(), (0, 0), "references left in the ledger");
}

fn events<A: Arch>(s: &Sys<A>, k: EventKind) -> usize {
    s.m.events.iter().filter(|e| e.kind == k).count()
}

/// vmsplice `pages` pages of a fresh buffer into a new pipe; returns it.
fn spliced_pipe<A: Arch>(s: &mut Sys<A>, pages: u64) -> usize {
    let b = buf(s, pages, "buf");
    let p = s.pipe_create();
    let n = s
        .vmsplice(
            p,
            vec![Iovec {
                base: b,
                len: pages * A::PAGE_SIZE,
            }],
            0,
        )
        .unwrap();
    assert_eq!(n, pages * A::PAGE_SIZE);
    p
}

/// fs/ceph/file.c v4.10 + fs/splice.c iter_file_splice_write: the pipe
/// arrives as ITER_BVEC; dio_get_pagev_size/dio_get_pages_alloc read it
/// through the iovec view. Base = `struct page *` = vmemmap + pfn * 64.
/// On 4 KiB pages a page struct is page-aligned only for pfn % 64 == 0; on
/// 64 KiB pages for pfn % 1024 == 0. With the first buffer's struct
/// unaligned, `npages` = calc_pages_for(align != 0, len) counts one page more
/// than the bvec gives (little-endian: len = bv_len = PAGE_SIZE); on
/// big-endian ppc64 the length word is bv_len << 32, the OSD request clamps
/// it to the 4 MiB object and the 16 buffers cannot fill 65 slots. Either
/// way the loop ends with nbytes or maxsize 0, iov_iter_get_pages returns 0
/// and idx stops: the watchdog fires after its budget, with every gathered
/// reference unwound.
fn ceph_splice_soft_lockup_v4_10<A: Arch>() {
    let mut s = sys::<A>("v4.10");
    let p = spliced_pipe(&mut s, 16);
    let (r, io) = s.ceph_splice_write(p, 16 * A::PAGE_SIZE);
    assert_eq!(r, Err(Errno::EDEADLK), "the task never returns");
    assert_eq!(events(&s, EventKind::SoftLockup), 1);
    assert!(
        io.get_pages_calls > WATCHDOG_BUDGET,
        "the loop spun {} calls",
        io.get_pages_calls
    );
    if A::ID == ArchId::Ppc64 {
        // 16 bvec pages gathered, then stuck at idx 16 of 65.
        assert!(
            s.m.events
                .iter()
                .any(|e| e.detail.contains("idx 16 of npages 65"))
        );
        assert_eq!(io.put_early, 16);
    }
    // The pipe still holds its buffers (the splice never returned).
    assert_eq!(s.pipes[p].nrbufs, 16);
    balanced(&s);
}

/// v4.17 iter_get_bvecs_alloc: one iov_iter_get_pages per bvec page
/// (ITER_BVEC gives one page per call), all in one OSD request of the
/// spliced bytes (well under wsize and the 4 MiB object); v6.13 the same
/// with iov_iter_get_pages2; v4.10+layton: one stitched
/// iov_iter_get_pages_alloc (bvec elements at offset 0 of full pages chain).
fn ceph_splice_completes_after_the_fix<A: Arch>() {
    for (k, calls) in [("v4.17", 16), ("v6.13", 16), ("v4.10+layton", 1)] {
        let mut s = sys::<A>(k);
        let p = spliced_pipe(&mut s, 16);
        let (r, io) = s.ceph_splice_write(p, 16 * A::PAGE_SIZE);
        assert_eq!(r, Ok(16 * A::PAGE_SIZE), "{k}");
        assert_eq!(
            io.units,
            vec![IoUnit {
                kind: "osd_write",
                bytes: 16 * A::PAGE_SIZE,
                pages: 16
            }],
            "{k}"
        );
        assert_eq!(io.get_pages_calls, calls, "{k}");
        assert_eq!(events(&s, EventKind::SoftLockup), 0, "{k}");
        assert_eq!(s.pipes[p].nrbufs, 0, "{k}: the pipe is drained");
        balanced(&s);
    }
}

/// fs/direct-io.c v4.10 dio_refill_pages: a failed gather on a write with
/// blocks pending queues one zero page (head 0, tail 1) and records
/// page_errors. One page of user data, then an unreadable segment; the fs
/// maps 8 pages of blocks at once: 7 pages pending after the failure → 7
/// zero pages, each preceded by a failing call, and since the 7th uses the
/// blocks up at its page end, one more failing call ends the request:
/// 1 + 7 + 1 = 9 calls. The bio holds buf[0] and 7 zero pages (contiguous
/// disk blocks of one extent). dio_complete: ret -EFAULT with bytes done
/// becomes 0, then page_errors (-EFAULT) wins. The for_each_page form makes
/// the same bio, gathering 3 times (the helper absorbs the first failure)
/// and taking one zero-page reference instead of seven.
fn dio_zero_page_calls_once_per_pending_page<A: Arch>() {
    for viro in [false, true] {
        let mut s = sys::<A>("v4.10");
        let b = buf(&mut s, 1, "buf");
        let mm = s.m.current_mm();
        let bad =
            s.m.mmap(
                mm,
                None,
                16 * A::PAGE_SIZE,
                Prot::NONE,
                MapFlags::default(),
                Backing::Anon,
                "bad",
            )
            .unwrap();
        let mut it = iovec(
            &s,
            Dir::Write,
            &[(b, A::PAGE_SIZE), (bad, 16 * A::PAGE_SIZE)],
        );
        let fs = DioFs {
            blocksize: 4096,
            extent: 8 * A::PAGE_SIZE,
        };
        let (r, io) = if viro {
            s.blockdev_direct_io_viro(&mut it, 0, fs).unwrap()
        } else {
            s.blockdev_direct_io(&mut it, 0, fs).unwrap()
        };
        assert_eq!(r, Err(Errno::EFAULT));
        assert_eq!(
            io.units,
            vec![IoUnit {
                kind: "bio",
                bytes: 8 * A::PAGE_SIZE,
                pages: 8
            }]
        );
        assert_eq!(io.get_pages_calls, if viro { 3 } else { 9 });
        assert_eq!(io.pages_pinned, 1);
        // 8 dio cur_page refs + 8 bio refs + zero-page queue refs.
        assert_eq!(io.refs_taken, 16 + if viro { 1 } else { 7 });
        balanced(&s);
    }
}

/// fs/nfs/pagelist.c v4.10: requests coalesce across pages only if the
/// previous ends at PAGE_SIZE and the next starts at 0; the RPC is capped
/// by wsize. 256 page-aligned 4 KiB iovecs: on 4 KiB pages every request is
/// a whole page → one 1 MiB RPC even though iov_iter_get_pages_alloc takes
/// one iovec per call; on 64 KiB pages no 4 KiB request ends at PAGE_SIZE →
/// 256 RPCs. fs/nfs/direct.c: nfs_create_request takes its own reference
/// and nfs_direct_release_pages drops the gather's, one array per call. The
/// for_each_page form hands the reference to the request: same RPCs, no
/// second reference, no early put.
fn nfs_coalescing_depends_on_page_size<A: Arch>() {
    for viro in [false, true] {
        let mut s = sys::<A>("v4.10");
        let b = buf(&mut s, 256, "buf");
        let segs: Vec<(VirtAddr, u64)> = (0..256)
            .map(|k| (VirtAddr(b.0 + k * A::PAGE_SIZE), 4096))
            .collect();
        let mut it = iovec(&s, Dir::Write, &segs);
        let (r, io) = s
            .nfs_direct_schedule_iovec(&mut it, 1 << 20, NfsDir::Write, viro)
            .unwrap();
        assert_eq!(r, Ok(1 << 20));
        let want = if A::PAGE_SIZE == 4096 {
            vec![IoUnit {
                kind: "rpc",
                bytes: 1 << 20,
                pages: 256,
            }]
        } else {
            vec![
                IoUnit {
                    kind: "rpc",
                    bytes: 4096,
                    pages: 1
                };
                256
            ]
        };
        assert_eq!(io.units, want);
        assert_eq!(io.get_pages_calls, 256);
        assert_eq!(io.refs_taken, if viro { 0 } else { 256 });
        assert_eq!(io.put_early, if viro { 0 } else { 256 });
        assert_eq!(io.allocations, if viro { 1 } else { 256 });
        balanced(&s);
    }
    // Layton's patch as posted stitches the page-aligned iovecs only where
    // each ends on a page boundary: all 256 on 4 KiB pages, none on 64 KiB.
    let mut s = sys::<A>("v4.10+layton");
    let b = buf(&mut s, 256, "buf");
    let segs: Vec<(VirtAddr, u64)> = (0..256)
        .map(|k| (VirtAddr(b.0 + k * A::PAGE_SIZE), 4096))
        .collect();
    let mut it = iovec(&s, Dir::Write, &segs);
    let (_, io) = s
        .nfs_direct_schedule_iovec(&mut it, 1 << 20, NfsDir::Write, false)
        .unwrap();
    assert_eq!(
        io.get_pages_calls,
        if A::PAGE_SIZE == 4096 { 1 } else { 256 }
    );
    balanced(&s);
}

/// fs/block_dev.c v4.10/v4.17 __blkdev_direct_IO_simple calls
/// bio_iov_iter_get_pages once: of three segments only the first is
/// written. 6.13 (block/bio.c) loops until the iterator is empty.
fn blkdev_simple_is_short_in_v4_10_only<A: Arch>() {
    for (k, want) in [("v4.10", 1), ("v4.17", 1), ("v6.13", 3)] {
        let mut s = sys::<A>(k);
        let b = buf(&mut s, 3, "buf");
        let segs: Vec<(VirtAddr, u64)> = (0..3)
            .map(|i| (VirtAddr(b.0 + i * A::PAGE_SIZE), 4096))
            .collect();
        let mut it = iovec(&s, Dir::Write, &segs);
        let (r, io) = s.blkdev_direct_io(&mut it, 0);
        assert_eq!(r, Ok(want * 4096), "{k}");
        assert_eq!(io.units.len(), 1, "{k}: one bio");
        assert_eq!(it.count, (3 - want) * 4096, "{k}");
        balanced(&s);
    }
}

/// include/linux/skbuff.h: MAX_SKB_FRAGS = 65536/PAGE_SIZE + 1, at least 16.
/// net/core/datagram.c: when all frags are used and bytes remain,
/// -EMSGSIZE; the frags stay with the skb (freed by the caller).
fn skb_frags_run_out<A: Arch>() {
    let max = max_skb_frags(A::PAGE_SIZE);
    assert_eq!(max, if A::PAGE_SIZE == 4096 { 17 } else { 16 });
    let mut s = sys::<A>("v4.10");
    let b = buf(&mut s, max + 1, "buf");
    let mut it = iovec(&s, Dir::Write, &[(b, (max + 1) * A::PAGE_SIZE)]);
    let (r, io) = s.zerocopy_sg_from_iter(&mut it, 0, false).unwrap();
    assert_eq!(r, Err(Errno::EMSGSIZE));
    assert_eq!(io.units[0].pages, max);
    assert_eq!(it.count, A::PAGE_SIZE);
    balanced(&s);
}

/// crypto/af_alg.c v4.10: af_alg_make_sg gathers at most ALG_MAX_PAGES = 16
/// pages with one iov_iter_get_pages call and does not advance the
/// iterator; af_alg_free_sg puts every page.
fn af_alg_does_not_advance<A: Arch>() {
    let mut s = sys::<A>("v4.10");
    let b = buf(&mut s, 20, "buf");
    let it = iovec(&s, Dir::Write, &[(b, 20 * A::PAGE_SIZE)]);
    let (r, io) = s.af_alg_make_sg(&it, 20 * A::PAGE_SIZE).unwrap();
    assert_eq!(r, Ok(16 * A::PAGE_SIZE));
    assert_eq!(io.units[0].pages, 16);
    assert_eq!(it.count, 20 * A::PAGE_SIZE);
    balanced(&s);
}

/// fs/fuse/dev.c + mm/filemap.c v4.10 (Miklos's scenario): the faulting
/// thread holds the page lock while it waits for the reply; the server's
/// gup of the same page waits for the page lock: a cycle. fuse_abort_conn
/// ends the request (not FR_LOCKED during fuse_copy_fill's gather): the
/// fault gets VM_FAULT_SIGBUS, the server's retried fault fails
/// (fuse_get_req -ENOTCONN), and fuse_dev_do_write returns -ENOENT.
fn fuse_mmap_deadlock_and_abort<A: Arch>() {
    let mut s = sys::<A>("v4.10");
    let mm = s.m.current_mm();
    let f = s.m.create_file("ff", 4 * A::PAGE_SIZE, FileOps::default());
    let hdr = buf(&mut s, 1, "hdr");
    let fm =
        s.m.mmap(
            mm,
            Some(VirtAddr(hdr.0 + A::PAGE_SIZE)),
            4 * A::PAGE_SIZE,
            Prot::R,
            MapFlags {
                shared: true,
                ..MapFlags::default()
            },
            Backing::File { file: f, pgoff: 0 },
            "fm",
        )
        .unwrap();
    let mut fc = FuseConn::default();
    assert_eq!(s.fuse_filemap_fault(&mut fc, fm).0, Ok(1));
    assert_eq!(s.fuse_dev_read(&mut fc).0, Ok(1));
    let mut reply = iovec(&s, Dir::Write, &[(VirtAddr(fm.0 - 16), 16 + A::PAGE_SIZE)]);
    let (w, _) = s.fuse_dev_write(&mut fc, 1, &mut reply, None).unwrap();
    assert_eq!(w, Err(Errno::EDEADLK));
    let d = s.m.locks.deadlock().expect("a wait-for cycle");
    assert_eq!(d.steps.len(), 2);
    assert!(
        !d.killable(),
        "wait_on_page_locked in v4.10 gup is not killable"
    );
    assert_eq!(events(&s, EventKind::Deadlock), 1);
    assert_eq!(fc.initiator_result(1), Some(Errno::EDEADLK.to_ret()));
    // umount -f.
    assert_eq!(s.fuse_abort_conn(&mut fc).0, Ok(1));
    assert_eq!(fc.initiator_result(1), Some(0x2), "VM_FAULT_SIGBUS");
    assert_eq!(fc.write_result(1), Some(Errno::ENOENT.to_ret()));
    assert!(s.m.locks.deadlock().is_none() && s.m.locks.blocked().is_empty());
    assert!(s.fuse_unwind(&mut fc).is_none(), "nobody is left asleep");
    balanced(&s);
}

/// fs/fuse/dev.c v4.10 FR_LOCKED rule, per copy discipline and abort point:
/// only a copy that runs without FR_LOCKED after the request was ended
/// writes into the requester's freed stack.
fn fuse_abort_window_per_discipline<A: Arch>() {
    let cases = [
        (AbortAt::Fill, CopyDiscipline::FrLocked, false),
        (AbortAt::Copy, CopyDiscipline::FrLocked, false),
        (AbortAt::Copy, CopyDiscipline::CopyIter, true),
        (AbortAt::Copy, CopyDiscipline::ArgsKept, false),
    ];
    for (at, d, uaf) in cases {
        let mut s = sys::<A>("v4.10");
        let rb = buf(&mut s, 2, "rb");
        let mut fc = FuseConn::default();
        assert_eq!(s.fuse_lookup(&mut fc).0, Ok(1));
        assert_eq!(s.fuse_dev_read(&mut fc).0, Ok(1));
        let p1 = VirtAddr(rb.0 + A::PAGE_SIZE);
        let mut reply = iovec(&s, Dir::Write, &[(VirtAddr(p1.0 - 16), 16), (p1, 128)]);
        let (w, _) = s
            .fuse_dev_write(&mut fc, 1, &mut reply, Some((at, d)))
            .unwrap();
        assert_eq!(w, Err(Errno::ENOENT), "{at:?} {d:?}");
        assert_eq!(fc.initiator_result(1), Some(Errno::ECONNABORTED.to_ret()));
        assert_eq!(
            events(&s, EventKind::UseAfterFree) == 1,
            uaf,
            "{at:?} {d:?}"
        );
        balanced(&s);
    }
}

/// kernel/locking rwsem fairness (spec arch-and-gup.md §8): a reader that
/// holds mmap_sem and asks again after a writer queued deadlocks; callbacks
/// outside mmap_sem (iov_iter_for_each_page) do not.
fn callbacks_under_mmap_sem_deadlock<A: Arch>() {
    let mut s = sys::<A>("v4.10");
    let b = buf(&mut s, 4, "buf");
    let mut it = iovec(&s, Dir::Write, &[(b, 4 * A::PAGE_SIZE)]);
    let (r, io) = s.callback_under_mmap_sem(&mut it, 2).unwrap();
    assert_eq!(r, Err(Errno::EDEADLK));
    assert_eq!(
        io.units[0].pages, 2,
        "two callbacks ran before the deadlock"
    );
    assert_eq!(events(&s, EventKind::Deadlock), 1);
    assert!(s.m.locks.blocked().is_empty(), "unwound");
    balanced(&s);
    let mut it = iovec(&s, Dir::Write, &[(b, 4 * A::PAGE_SIZE)]);
    let (r, _) = s.callback_for_each_page(&mut it, 2).unwrap();
    assert_eq!(r, Ok(4 * A::PAGE_SIZE));
    assert_eq!(events(&s, EventKind::Deadlock), 1, "no new deadlock");
    balanced(&s);
}

/// The iovec view of a bio_vec (fs/ceph/file.c v4.10 reads `it->iov`):
/// `struct bio_vec` is {page pointer, u32 bv_len, u32 bv_offset}, so the
/// iovec's length word holds bv_len in its low half on little-endian x86-64
/// and arm64, and in its high half on big-endian powerpc64; the base is the
/// page pointer, vmemmap + pfn * 64.
fn iovec_view<A: Arch>() -> (u64, u64, u64) {
    let s = sys::<A>("v4.10");
    let it = IovIter::bvec(
        Dir::Write,
        vec![BioVec {
            page: Pfn(0x41),
            len: 0x1000,
            offset: 0x20,
        }],
        0x1000,
    );
    let (base, len) = s.ceph_iovec_view(&it, 0).unwrap();
    (base, len, s.caller_knobs().vmemmap)
}

#[test]
fn iovec_view_length_word_by_endianness() {
    let (b, l, v) = iovec_view::<vmemu_arch::X86_64>();
    assert_eq!((b, l), (v + 0x41 * 64, 0x20 << 32 | 0x1000));
    assert_eq!(v, 0xffff_ea00_0000_0000);
    let (b, l, v) = iovec_view::<vmemu_arch::Arm64>();
    assert_eq!((b, l), (v + 0x41 * 64, 0x20 << 32 | 0x1000));
    let (b, l, _) = iovec_view::<vmemu_arch::Ppc64>();
    assert_eq!(l, 0x1000 << 32 | 0x20);
    // 0x41 * 64 = 0x1040: not page-aligned on either page size.
    assert_ne!(b % 4096, 0);
}
