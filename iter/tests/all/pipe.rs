//! Pipes: the v4.10 `ITER_PIPE` iterator, readv/writev on a pipe, vmsplice
//! and splice, on x86_64, arm64 and ppc64 (64 KiB pages). Each test names the
//! kernel rule it checks (`lib/iov_iter.c`, `fs/pipe.c`, `fs/splice.c` of
//! v4.10; `iov_iter_revert` of 4.11+ on v4.17) and ends with a reference
//! balance: every page back to its refcount at the start (or freed), and no
//! reference left in the workload's ledger.

use std::collections::BTreeMap;

use vmemu_arch::{Arch, Pfn, VirtAddr};
use vmemu_iter::iov_iter::IterError;
use vmemu_iter::pipe::{
    BufOps, PIPE_BUF_FLAG_CAN_MERGE, PIPE_BUF_FLAG_GIFT, PIPE_BUF_FLAG_PACKET, PIPE_DEF_BUFFERS,
};
use vmemu_iter::splice::SPLICE_F_GIFT;
use vmemu_iter::{Dir, IovIter, Iovec, IterType, Sys};
use vmemu_mm::mm::FileId;
use vmemu_mm::{Backing, Errno, EventKind, FileOps, KernelProfile, MapFlags, Prot};

/// Emulated memory per machine.
const PHYS: u64 = 64 << 20;

/// Instantiates `fn name<A: Arch>()` as `name::{x86_64, arm64, ppc64}`.
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
    partial_page_extension,
    full_ring_short_copy_then_zero,
    full_pipe_get_pages_efault_and_array_leak,
    copy_page_to_iter_is_zero_copy_and_merges,
    file_splice_read_inserts_page_cache_pages,
    get_pages_then_advance_by_less_truncates,
    advance_by_zero_discards_reservation,
    get_pages_respects_maxpages_and_start,
    alignment_and_npages,
    readv_writev_boundaries,
    pipe_write_fault_rules,
    modern_pipe_write_fault_leaves_empty_buffer,
    vmsplice_17_pages_stops_at_16,
    vmsplice_unaligned_and_gift,
    splice_moves_pages_without_copying,
    v6_13_refuses_pipe_iterator,
    revert_v4_17,
    stale_flags_survive_in_slots,
    sanity_failure_is_a_kernel_bug,
    advance_over_empty_ring_soft_lockup,
    pipe_advance_v4_9_fencepost,
    default_file_splice_read_at_eof_leaks_under_v4_9,
);

fn boot<A: Arch>(profile: &str) -> Sys<A> {
    Sys::new(KernelProfile::parse(profile).unwrap(), PHYS).unwrap()
}

fn ps<A: Arch>() -> u64 {
    A::PAGE_SIZE
}

fn pattern(n: u64, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(37))
        .collect()
}

/// Maps `pages` anonymous pages and fills them with `fill` (so every page is
/// present before the balance snapshot).
fn user_buf<A: Arch>(sys: &mut Sys<A>, pages: u64, name: &str, fill: &[u8]) -> VirtAddr {
    let mm = sys.m.current_mm();
    let len = pages * A::PAGE_SIZE;
    let va = sys
        .m
        .mmap(
            mm,
            None,
            len,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            name,
        )
        .unwrap();
    let mut data = fill.to_vec();
    data.resize(len as usize, 0xee);
    assert_eq!(sys.m.copy_to_user(va, &data), 0);
    va
}

fn user_read<A: Arch>(sys: &mut Sys<A>, va: VirtAddr, n: u64) -> Vec<u8> {
    let mut b = vec![0u8; n as usize];
    assert_eq!(sys.m.copy_from_user(&mut b, va), 0);
    b
}

fn user_pfn<A: Arch>(sys: &Sys<A>, va: VirtAddr) -> Pfn {
    let mm = sys.m.current_mm();
    sys.m.user_pa(mm, va).unwrap().pfn(A::PAGE_SHIFT)
}

fn page_bytes<A: Arch>(sys: &Sys<A>, page: Pfn, off: u64, n: u64) -> Vec<u8> {
    let mut b = vec![0u8; n as usize];
    sys.m
        .phys
        .read(page.addr(A::PAGE_SHIFT).add(off), &mut b)
        .unwrap();
    b
}

fn refcount<A: Arch>(sys: &Sys<A>, p: Pfn) -> u32 {
    sys.m.phys.page(sys.m.phys.compound_head(p)).refcount
}

type Snapshot = BTreeMap<Pfn, u32>;

/// Every allocated page and its refcount.
fn snapshot<A: Arch>(sys: &Sys<A>) -> Snapshot {
    sys.m
        .phys
        .allocated_heads()
        .map(|(p, pg)| (p, pg.refcount))
        .collect()
}

/// Frees every pipe, then checks that every page is back to its refcount at
/// `start` (pages allocated since are freed), that the workload holds nothing
/// and that no reference underflowed.
fn assert_balanced<A: Arch>(sys: &mut Sys<A>, start: &Snapshot) {
    for p in 0..sys.pipes.len() {
        sys.free_pipe_info(p);
    }
    assert_eq!(sys.m.held_total(), (0, 0), "workload references left");
    let end = snapshot(sys);
    for (p, rc) in &end {
        match start.get(p) {
            Some(r0) => assert_eq!(rc, r0, "refcount of {} changed", sys.m.page_name(*p)),
            None => panic!("{} leaked (refcount {rc})", sys.m.page_name(*p)),
        }
    }
    for p in start.keys() {
        assert!(end.contains_key(p), "{} was freed", sys.m.page_name(*p));
    }
    assert!(
        !sys.m
            .events
            .iter()
            .any(|e| e.kind == EventKind::RefUnderflow),
        "{:?}",
        sys.m.events
    );
}

fn kernel_bugs<A: Arch>(sys: &Sys<A>) -> usize {
    sys.m
        .events
        .iter()
        .filter(|e| e.kind == EventKind::KernelBug)
        .count()
}

/// Reads the whole pipe through a user buffer of `n` bytes.
fn drain<A: Arch>(sys: &mut Sys<A>, pipe: usize, dst: VirtAddr, n: u64) -> Vec<u8> {
    let mut to = IovIter::init(&sys.m, Dir::Read, vec![Iovec { base: dst, len: n }], n);
    let got = sys.pipe_read(pipe, &mut to).unwrap();
    user_read(sys, dst, got)
}

fn file_with_pages<A: Arch>(sys: &mut Sys<A>, pages: u64) -> FileId {
    let f = sys
        .m
        .create_file("f", pages * A::PAGE_SIZE, FileOps::default());
    for k in 0..pages {
        sys.m.find_or_read_page(f, k).unwrap();
    }
    f
}

/// The page cache fill pattern of `find_or_read_page`.
fn file_bytes(index: u64, off: u64, n: u64) -> Vec<u8> {
    (off..off + n)
        .map(|i| (index as usize * 7 + i as usize) as u8)
        .collect()
}

// ---------------------------------------------------------------------------

/// push_pipe step 2: a copy that fits in the rest of the current allocated
/// buffer grows it; two small copy_to_iter calls land in one buffer.
fn partial_page_extension<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let dst = user_buf(&mut sys, 3, "dst", &[]);
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe(p).unwrap();
    assert_eq!(i.ty, IterType::Pipe);
    assert_eq!(i.count, PIPE_DEF_BUFFERS as u64 * ps::<A>());
    let a = pattern(100, 1);
    let b = pattern(200, 2);
    assert_eq!(sys.copy_to_iter(&a, &mut i), 100);
    assert_eq!(sys.copy_to_iter(&b, &mut i), 200);
    let pipe = &sys.pipes[p];
    assert_eq!(pipe.nrbufs, 1, "both copies in one buffer");
    let buf = pipe.bufs[0];
    assert_eq!((buf.ops, buf.offset, buf.len), (BufOps::Default, 0, 300));
    assert_eq!((i.pipe_idx, i.iov_offset), (0, 300));
    assert_eq!(sys.m.page_name(buf.page), "pipe0buf[0]");
    assert_eq!(refcount(&sys, buf.page), 1);
    assert_eq!(
        page_bytes(&sys, buf.page, 0, 300),
        [a.clone(), b.clone()].concat()
    );
    // A copy crossing the page end fills the buffer and spills into a new one.
    let c = pattern(ps::<A>(), 3);
    assert_eq!(sys.copy_to_iter(&c, &mut i), ps::<A>());
    let pipe = &sys.pipes[p];
    assert_eq!(pipe.nrbufs, 2);
    assert_eq!(pipe.bufs[0].len as u64, ps::<A>());
    assert_eq!(pipe.bufs[1].len, 300);
    assert_eq!((i.pipe_idx, i.iov_offset), (1, 300));
    assert_eq!(i.count, (PIPE_DEF_BUFFERS as u64 - 1) * ps::<A>() - 300);
    // iov_iter_zero is the same reservation with zeroes.
    assert_eq!(sys.iov_iter_zero(10, &mut i), 10);
    assert_eq!(sys.pipes[p].bufs[1].len, 310);
    let all = drain(&mut sys, p, dst, 3 * ps::<A>());
    let mut want = [a, b, c].concat();
    want.extend_from_slice(&[0u8; 10]);
    assert_eq!(all, want);
    assert!(sys.pipes[p].is_empty());
    assert_eq!(kernel_bugs(&sys), 0);
    assert_balanced(&mut sys, &start);
}

/// push_pipe step 3 stops at the ring's end: 16 buffers, then a short copy,
/// then 0 (copy_to_iter and iov_iter_zero).
fn full_ring_short_copy_then_zero<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let dst = user_buf(&mut sys, 16, "dst", &[]);
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let n = 17 * ps::<A>();
    let mut i = sys.iov_iter_pipe_len(p, n).unwrap();
    let src = pattern(n, 4);
    assert_eq!(sys.copy_to_iter(&src, &mut i), 16 * ps::<A>());
    assert!(sys.pipes[p].is_full());
    assert_eq!((i.pipe_idx, i.iov_offset), (15, ps::<A>()));
    assert_eq!(i.count, ps::<A>());
    assert_eq!(sys.copy_to_iter(&[1], &mut i), 0);
    assert_eq!(sys.iov_iter_zero(1, &mut i), 0);
    assert_eq!(i.count, ps::<A>());
    // A new iterator on a full pipe: the kernel WARNs and makes it anyway.
    let before = kernel_bugs(&sys);
    let j = sys.iov_iter_pipe(p).unwrap();
    assert_eq!(j.count, 0);
    assert_eq!(kernel_bugs(&sys), before + 1);
    assert_eq!(
        drain(&mut sys, p, dst, 16 * ps::<A>()),
        src[..(16 * ps::<A>()) as usize]
    );
    // Iterator buffers have default ops: reading them puts their pages (no
    // tmp_page caching, which only anon buffers get).
    assert_eq!(sys.pipes[p].tmp_page, None);
    assert_balanced(&mut sys, &start);
}

/// pipe_get_pages on a full pipe whose data start is curbuf: the slot formula
/// says 16, push_pipe reserves nothing → -EFAULT. pipe_get_pages_alloc: the
/// same, and v4.10 hands back (leaks) the page array; 4.17 does not.
fn full_pipe_get_pages_efault_and_array_leak<A: Arch>() {
    for (profile, leaks) in [("v4.10", 1), ("v4.17", 0)] {
        let mut sys = boot::<A>(profile);
        let start = snapshot(&sys);
        let p = sys.pipe_create();
        let mut i = sys.iov_iter_pipe(p).unwrap();
        let n = 16 * ps::<A>();
        assert_eq!(sys.copy_to_iter(&pattern(n, 5), &mut i), n);
        i.reexpand(ps::<A>()); // a caller that still wants more
        assert_eq!(
            sys.iov_iter_npages(&i, 100),
            16,
            "slot formula on a full ring"
        );
        assert_eq!(sys.iov_iter_get_pages(&i, ps::<A>(), 4), Err(Errno::EFAULT));
        assert_eq!(sys.pipe_get_pages_alloc(&i, ps::<A>()), Err(Errno::EFAULT));
        assert_eq!(sys.pipes[p].leaked_page_arrays, leaks, "{profile}");
        assert_eq!(sys.m.held_total(), (0, 0), "no page reference was taken");
        assert_balanced(&mut sys, &start);
    }
}

/// copy_page_to_iter on a pipe: no copy, the buffer's page is the page
/// passed, with one more reference; a contiguous range of the same page
/// merges (no new reference); a non-contiguous one takes the next slot.
fn copy_page_to_iter_is_zero_copy_and_merges<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let dst = user_buf(&mut sys, 2, "dst", &[]);
    let f = file_with_pages(&mut sys, 2);
    let page = sys.m.find_or_read_page(f, 0).unwrap().0;
    let start = snapshot(&sys);
    let rc0 = refcount(&sys, page);
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe(p).unwrap();
    assert_eq!(sys.copy_page_to_iter(page, 0, 100, &mut i), 100);
    let b = sys.pipes[p].bufs[0];
    assert_eq!(b.page, page, "the pipe buffer IS the page");
    assert_eq!((b.ops, b.offset, b.len), (BufOps::PageCache, 0, 100));
    assert_eq!(refcount(&sys, page), rc0 + 1);
    assert_eq!(
        sys.m.held_total(),
        (0, 0),
        "the pipe's reference, not the workload's"
    );
    // Contiguous in the same page: merge.
    assert_eq!(sys.copy_page_to_iter(page, 100, 50, &mut i), 50);
    assert_eq!(sys.pipes[p].nrbufs, 1);
    assert_eq!(sys.pipes[p].bufs[0].len, 150);
    assert_eq!(refcount(&sys, page), rc0 + 1);
    assert_eq!((i.pipe_idx, i.iov_offset), (0, 150));
    // Not contiguous: a new buffer with its own reference.
    assert_eq!(sys.copy_page_to_iter(page, 300, 10, &mut i), 10);
    assert_eq!(sys.pipes[p].nrbufs, 2);
    assert_eq!(refcount(&sys, page), rc0 + 2);
    // copy_to_iter after a page cache buffer: data start is the next slot
    // (the buffer is not "allocated").
    assert_eq!(sys.copy_to_iter(&[9; 5], &mut i), 5);
    assert_eq!(sys.pipes[p].nrbufs, 3);
    assert_eq!(sys.pipes[p].bufs[2].ops, BufOps::Default);
    let got = drain(&mut sys, p, dst, 2 * ps::<A>());
    let want = [file_bytes(0, 0, 150), file_bytes(0, 300, 10), vec![9; 5]].concat();
    assert_eq!(got, want);
    assert_eq!(refcount(&sys, page), rc0);
    assert_balanced(&mut sys, &start);
}

/// generic_file_splice_read: an ITER_PIPE of len bytes, filled by the
/// buffered read with copy_page_to_iter: the pipe holds the page cache pages
/// themselves. A splice longer than the ring stops at 16 pages.
fn file_splice_read_inserts_page_cache_pages<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let f = file_with_pages(&mut sys, 20);
    let pc: Vec<Pfn> = (0..20)
        .map(|k| sys.m.find_or_read_page(f, k).unwrap().0)
        .collect();
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut pos = 10;
    let n = sys
        .generic_file_splice_read(f, &mut pos, p, 2 * ps::<A>())
        .unwrap();
    assert_eq!(n, 2 * ps::<A>());
    assert_eq!(pos, 10 + n);
    let bufs = sys.pipes[p].occupied_bufs();
    assert_eq!(bufs.len(), 3);
    assert_eq!(bufs[0].page, pc[0]);
    assert_eq!(
        (bufs[0].offset as u64, bufs[0].len as u64),
        (10, ps::<A>() - 10)
    );
    assert_eq!(bufs[1].page, pc[1]);
    assert_eq!(bufs[2].page, pc[2]);
    assert_eq!(bufs[2].len, 10);
    assert!(bufs.iter().all(|b| b.ops == BufOps::PageCache));
    let mut out = Vec::new();
    assert_eq!(sys.splice_to_vec(p, u64::MAX, &mut out), Ok(n));
    let want: Vec<u8> = [
        file_bytes(0, 10, ps::<A>() - 10),
        file_bytes(1, 0, ps::<A>()),
        file_bytes(2, 0, 10),
    ]
    .concat();
    assert_eq!(out, want);
    // More than the ring holds: 16 buffers, short result.
    let mut pos = 0;
    let n = sys
        .generic_file_splice_read(f, &mut pos, p, 20 * ps::<A>())
        .unwrap();
    assert_eq!(n, 16 * ps::<A>());
    assert!(sys.pipes[p].is_full());
    // The splice syscall waits for space first: -EAGAIN, nothing touched.
    assert_eq!(
        sys.splice_file_to_pipe(f, &mut pos, p, ps::<A>()),
        Err(Errno::EAGAIN)
    );
    assert_eq!(sys.pipes[p].nrbufs, 16);
    assert_eq!(refcount(&sys, pc[3]), start[&pc[3]] + 1);
    // generic_file_splice_read itself on a full pipe: WARN, -EFAULT from the
    // read becomes -EAGAIN, and the reset-and-advance(0) from idx = curbuf
    // releases every buffer that was in the pipe.
    let bugs = kernel_bugs(&sys);
    assert_eq!(
        sys.generic_file_splice_read(f, &mut pos, p, ps::<A>()),
        Err(Errno::EAGAIN)
    );
    assert_eq!(kernel_bugs(&sys), bugs + 1);
    assert!(
        sys.pipes[p].is_empty(),
        "the pipe's contents were discarded"
    );
    assert_eq!(refcount(&sys, pc[3]), start[&pc[3]]);
    assert_balanced(&mut sys, &start);
}

/// pipe_get_pages reserves without moving the iterator; advancing by less
/// than was reserved truncates the pipe and releases the over-reserved pages
/// (the pipe's reference; the caller still holds its own).
fn get_pages_then_advance_by_less_truncates<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe(p).unwrap();
    let count0 = i.count;
    let g = sys.iov_iter_get_pages(&i, 3 * ps::<A>(), 16).unwrap();
    assert_eq!((g.bytes, g.start, g.pages.len()), (3 * ps::<A>(), 0, 3));
    assert_eq!(sys.pipes[p].nrbufs, 3);
    assert_eq!(
        (i.pipe_idx, i.iov_offset, i.count),
        (0, 0, count0),
        "not advanced"
    );
    for (k, &pg) in g.pages.iter().enumerate() {
        assert_eq!(pg, sys.pipes[p].bufs[k].page);
        assert_eq!(refcount(&sys, pg), 2, "pipe + caller");
    }
    assert_eq!(sys.m.held_total(), (3, 0));
    // The caller filled 1 page + 100 bytes.
    sys.iov_iter_advance(&mut i, ps::<A>() + 100);
    assert_eq!((i.pipe_idx, i.iov_offset), (1, 100));
    assert_eq!(i.count, count0 - ps::<A>() - 100);
    let pipe = &sys.pipes[p];
    assert_eq!(pipe.nrbufs, 2);
    assert_eq!(pipe.bufs[1].len, 100);
    assert_eq!(pipe.bufs[2].ops, BufOps::Null, "released");
    assert_eq!(refcount(&sys, g.pages[2]), 1, "only the caller's reference");
    sys.release_pages(&g, true);
    assert!(
        sys.m
            .phys
            .page(g.pages[2])
            .flags
            .contains(vmemu_mm::phys::PageFlags::FREE),
        "the over-reserved page is freed"
    );
    assert_eq!(refcount(&sys, g.pages[0]), 1);
    // The next copy continues in the partial buffer.
    assert_eq!(sys.copy_to_iter(&[1; 10], &mut i), 10);
    assert_eq!(sys.pipes[p].bufs[1].len, 110);
    assert_eq!(kernel_bugs(&sys), 0);
    assert_balanced(&mut sys, &start);
}

/// iov_iter_advance(i, 0) still truncates: "advance by what was really
/// written" after get_pages discards every over-reserved page.
fn advance_by_zero_discards_reservation<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe(p).unwrap();
    assert_eq!(sys.copy_to_iter(&[7; 50], &mut i), 50);
    let g = sys.pipe_get_pages_alloc(&i, 2 * ps::<A>()).unwrap();
    assert_eq!(g.start, 50, "continues in the allocated buffer");
    assert_eq!(g.bytes, 2 * ps::<A>());
    assert_eq!(g.pages.len(), 3);
    assert_eq!(sys.pipes[p].nrbufs, 3);
    assert_eq!(sys.pipes[p].bufs[0].len as u64, ps::<A>());
    sys.iov_iter_advance(&mut i, 0);
    assert_eq!(sys.pipes[p].nrbufs, 1);
    assert_eq!(sys.pipes[p].bufs[0].len, 50, "cut back to iov_offset");
    sys.release_pages(&g, true);
    assert_balanced(&mut sys, &start);
}

/// capacity = min(usable slots, maxpages) * PAGE_SIZE - start.
fn get_pages_respects_maxpages_and_start<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe(p).unwrap();
    assert_eq!(sys.copy_to_iter(&[1; 100], &mut i), 100);
    let g = sys.iov_iter_get_pages(&i, u64::MAX, 2).unwrap();
    assert_eq!(g.start, 100);
    assert_eq!(g.bytes, 2 * ps::<A>() - 100);
    assert_eq!(g.pages.len(), 2);
    assert_eq!(g.pages[0], sys.pipes[p].bufs[0].page);
    // maxsize is clipped to count first.
    i.truncate(150);
    sys.release_pages(&g, true);
    sys.iov_iter_advance(&mut i, 0);
    let g = sys.iov_iter_get_pages(&i, u64::MAX, 16).unwrap();
    assert_eq!((g.bytes, g.pages.len()), (150, 1));
    sys.release_pages(&g, true);
    sys.iov_iter_advance(&mut i, 150);
    assert_eq!(sys.pipes[p].bufs[0].len, 250);
    assert_balanced(&mut sys, &start);
}

/// iov_iter_alignment of a pipe: count, OR'd with iov_offset only when the
/// current buffer is allocated; iov_iter_npages: usable slots from the data
/// start, capped.
fn alignment_and_npages<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let f = file_with_pages(&mut sys, 1);
    let page = sys.m.find_or_read_page(f, 0).unwrap().0;
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe_len(p, 0x10000 * 16).unwrap();
    assert_eq!(sys.iov_iter_alignment(&i), i.count);
    assert_eq!(sys.iov_iter_npages(&i, 100), 16);
    assert_eq!(sys.iov_iter_npages(&i, 5), 5);
    assert_eq!(sys.copy_to_iter(&[1; 100], &mut i), 100);
    assert_eq!(sys.iov_iter_alignment(&i), i.count | 100);
    assert_eq!(
        sys.iov_iter_npages(&i, 100),
        16,
        "some of this one + 15 after"
    );
    assert_eq!(
        sys.copy_to_iter(&vec![1; 2 * ps::<A>() as usize], &mut i),
        2 * ps::<A>()
    );
    // Data start is slot 2 (partial): ((0 - 2 - 1) & 15) + 1 = 14.
    assert_eq!(sys.iov_iter_npages(&i, 100), 14);
    assert_eq!(sys.copy_page_to_iter(page, 0, 64, &mut i), 64);
    assert_eq!(
        sys.iov_iter_alignment(&i),
        i.count,
        "page cache buffer: not allocated"
    );
    assert_eq!(sys.iov_iter_npages(&i, 100), 12);
    // gap_alignment and dup_iter refuse pipes.
    assert_eq!(sys.iov_iter_gap_alignment(&i), u64::from(u32::MAX));
    assert!(sys.dup_iter(&i).is_none());
    assert_eq!(sys.iov_iter_single_seg_count(&i), i.count);
    assert_balanced(&mut sys, &start);
}

/// pipe_write / pipe_read (v4.10): a 1.5-page writev makes a full and a half
/// buffer; a 1-page read consumes the first (its page becomes tmp_page); a
/// small write merges into the anon tail; a write of PAGE+10 merges its
/// *first* 10 bytes and puts the rest in a fresh page (tmp_page reused);
/// a read split over two iovecs returns everything in order; empty pipe →
/// -EAGAIN, no writers → 0.
fn readv_writev_boundaries<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let pg = ps::<A>();
    let data = pattern(4 * pg, 6);
    let src = user_buf(&mut sys, 4, "src", &data);
    let dst = user_buf(&mut sys, 4, "dst", &[]);
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let w = |sys: &mut Sys<A>, iov: Vec<Iovec>| {
        let mut from = IovIter::import_iovec(&sys.m, Dir::Write, iov).unwrap();
        sys.pipe_write(p, &mut from)
    };
    // 1.5 pages in two segments.
    let half = pg / 2;
    let r = w(
        &mut sys,
        vec![
            Iovec {
                base: src,
                len: pg - 7,
            },
            Iovec {
                base: src.wrapping_add(pg - 7),
                len: half + 7,
            },
        ],
    );
    assert_eq!(r, Ok(pg + half));
    let bufs = sys.pipes[p].occupied_bufs();
    assert_eq!(bufs.len(), 2);
    assert_eq!((bufs[0].len as u64, bufs[1].len as u64), (pg, half));
    assert!(bufs.iter().all(|b| b.ops == BufOps::Anon && b.flags == 0));
    let first_page = bufs[0].page;
    // Read one page: the first buffer is consumed and cached as tmp_page.
    let mut to = IovIter::init(&sys.m, Dir::Read, vec![Iovec { base: dst, len: pg }], pg);
    assert_eq!(sys.pipe_read(p, &mut to), Ok(pg));
    assert_eq!(user_read(&mut sys, dst, pg), data[..pg as usize]);
    assert_eq!(sys.pipes[p].nrbufs, 1);
    assert_eq!(sys.pipes[p].tmp_page, Some(first_page));
    // A small write merges into the half buffer.
    let s = src.wrapping_add(pg + half);
    assert_eq!(w(&mut sys, vec![Iovec { base: s, len: 100 }]), Ok(100));
    assert_eq!(sys.pipes[p].nrbufs, 1);
    assert_eq!(sys.pipes[p].bufs[1].len as u64, half + 100);
    // PAGE+10: the first 10 bytes merge, the page goes to a new buffer that
    // reuses tmp_page.
    let s = s.wrapping_add(100);
    assert_eq!(
        w(
            &mut sys,
            vec![Iovec {
                base: s,
                len: pg + 10
            }]
        ),
        Ok(pg + 10)
    );
    assert_eq!(sys.pipes[p].nrbufs, 2);
    assert_eq!(sys.pipes[p].bufs[1].len as u64, half + 110);
    assert_eq!(sys.pipes[p].bufs[2].page, first_page);
    assert_eq!(sys.pipes[p].tmp_page, None);
    // Read everything through two iovecs.
    let total = half + 110 + pg;
    let q = pg / 4;
    let mut to = IovIter::init(
        &sys.m,
        Dir::Read,
        vec![
            Iovec { base: dst, len: q },
            Iovec {
                base: dst.wrapping_add(2 * pg),
                len: 2 * pg,
            },
        ],
        q + 2 * pg,
    );
    assert_eq!(sys.pipe_read(p, &mut to), Ok(total));
    let mut got = user_read(&mut sys, dst, q);
    got.extend(user_read(&mut sys, dst.wrapping_add(2 * pg), total - q));
    assert_eq!(got, data[pg as usize..(pg + total) as usize]);
    assert!(sys.pipes[p].is_empty());
    // Empty: -EAGAIN (non-blocking model); without writers: EOF.
    let mut to = IovIter::init(&sys.m, Dir::Read, vec![Iovec { base: dst, len: 1 }], 1);
    assert_eq!(sys.pipe_read(p, &mut to), Err(Errno::EAGAIN));
    sys.pipes[p].writers = 0;
    assert_eq!(sys.pipe_read(p, &mut to), Ok(0));
    // A write that does not fit: what fits, then -EAGAIN.
    sys.pipes[p].writers = 1;
    let mut from = IovIter::kvec(Dir::Write, vec![], 0);
    assert_eq!(sys.pipe_write(p, &mut from), Ok(0), "null write");
    for k in 0..16 {
        assert_eq!(
            w(&mut sys, vec![Iovec { base: src, len: pg }]),
            Ok(pg),
            "{k}"
        );
    }
    assert_eq!(
        w(&mut sys, vec![Iovec { base: src, len: pg }]),
        Err(Errno::EAGAIN)
    );
    sys.pipes[p].readers = 0;
    assert_eq!(
        w(&mut sys, vec![Iovec { base: src, len: 1 }]),
        Err(Errno::EPIPE)
    );
    assert_balanced(&mut sys, &start);
}

/// pipe_write partial rules (v4.10): a fault in a new-page chunk returns the
/// completed chunks (the partial page stays as tmp_page, not in the ring), or
/// -EFAULT when nothing was written; a fault in the merge chunk is -EFAULT
/// and the buffer does not grow. pipe_read faulting on its destination keeps
/// the buffer.
fn pipe_write_fault_rules<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let pg = ps::<A>();
    let data = pattern(3 * pg, 7);
    let src = user_buf(&mut sys, 3, "src", &data);
    let dst = user_buf(&mut sys, 1, "dst", &[]);
    let mm = sys.m.current_mm();
    let hole = src.wrapping_add(pg);
    sys.m.munmap(mm, hole, pg).unwrap();
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let w = |sys: &mut Sys<A>, iov: Vec<Iovec>| {
        let mut from = IovIter::import_iovec(&sys.m, Dir::Write, iov).unwrap();
        let r = sys.pipe_write(p, &mut from);
        (r, from.count)
    };
    // One good page then 100 unmapped bytes.
    let (r, _) = w(
        &mut sys,
        vec![
            Iovec { base: src, len: pg },
            Iovec {
                base: hole,
                len: 100,
            },
        ],
    );
    assert_eq!(r, Ok(pg));
    assert_eq!(sys.pipes[p].nrbufs, 1);
    assert!(
        sys.pipes[p].tmp_page.is_some(),
        "the page of the failed chunk stays cached"
    );
    // Nothing writable: -EFAULT.
    let (r, _) = w(
        &mut sys,
        vec![Iovec {
            base: hole,
            len: 2 * pg,
        }],
    );
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(sys.pipes[p].nrbufs, 1);
    // Make an anon tail with room, then fault in the merge chunk.
    let mut to = IovIter::init(&sys.m, Dir::Read, vec![Iovec { base: dst, len: pg }], pg);
    assert_eq!(sys.pipe_read(p, &mut to), Ok(pg));
    let (r, _) = w(
        &mut sys,
        vec![Iovec {
            base: src,
            len: 100,
        }],
    );
    assert_eq!(r, Ok(100));
    let (r, left) = w(
        &mut sys,
        vec![
            Iovec { base: src, len: 10 },
            Iovec {
                base: hole,
                len: 40,
            },
        ],
    );
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(
        left, 40,
        "the 10 good bytes were consumed from the iterator"
    );
    assert_eq!(
        sys.pipes[p].bufs[sys.pipes[p].curbuf].len, 100,
        "buffer not grown"
    );
    // pipe_read into an unmapped destination: -EFAULT, nothing consumed.
    let mut to = IovIter::init(
        &sys.m,
        Dir::Read,
        vec![Iovec {
            base: hole,
            len: 50,
        }],
        50,
    );
    assert_eq!(sys.pipe_read(p, &mut to), Err(Errno::EFAULT));
    assert_eq!(sys.pipes[p].bytes(), 100);
    assert_eq!(drain(&mut sys, p, dst, pg), data[..100]);
    assert_balanced(&mut sys, &start);
}

/// The modern ring (v6.13): the new buffer is in the ring before the copy,
/// so a faulting chunk leaves an empty buffer (flags CAN_MERGE), which a
/// later write merges into and a read consumes.
fn modern_pipe_write_fault_leaves_empty_buffer<A: Arch>() {
    let mut sys = boot::<A>("v6.13");
    let pg = ps::<A>();
    let data = pattern(3 * pg, 8);
    let src = user_buf(&mut sys, 3, "src", &data);
    let dst = user_buf(&mut sys, 2, "dst", &[]);
    let mm = sys.m.current_mm();
    let hole = src.wrapping_add(pg);
    sys.m.munmap(mm, hole, pg).unwrap();
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut from = IovIter::import_iovec(
        &sys.m,
        Dir::Write,
        vec![
            Iovec { base: src, len: pg },
            Iovec {
                base: hole,
                len: 100,
            },
        ],
    )
    .unwrap();
    assert_eq!(sys.pipe_write(p, &mut from), Ok(pg));
    let bufs = sys.pipes[p].occupied_bufs();
    assert_eq!(bufs.len(), 2);
    assert_eq!(bufs[1].len, 0);
    assert_eq!(bufs[0].flags, PIPE_BUF_FLAG_CAN_MERGE);
    assert_eq!(sys.pipes[p].tmp_page, None);
    let mut from =
        IovIter::import_iovec(&sys.m, Dir::Write, vec![Iovec { base: src, len: 30 }]).unwrap();
    assert_eq!(sys.pipe_write(p, &mut from), Ok(30));
    assert_eq!(sys.pipes[p].bufs[1].len, 30, "merged into the empty buffer");
    let got = drain(&mut sys, p, dst, 2 * pg);
    assert_eq!(got, [&data[..pg as usize], &data[..30]].concat());
    assert_balanced(&mut sys, &start);
}

/// vmsplice (v4.10 iter_to_pipe; 6.13's advancing form gives the same
/// result): 16 pages per iov_iter_get_pages batch, one
/// user-page buffer per page, each the user's own page with the pipe's
/// reference; the 17th page does not fit the 16-slot ring (-EAGAIN from
/// add_to_pipe, its reference put) → 16 pages spliced. A 32-slot pipe takes
/// all 17 (two batches).
fn vmsplice_17_pages_stops_at_16<A: Arch>() {
    for profile in ["v4.10", "v6.13"] {
        vmsplice_17_on::<A>(profile);
    }
}

fn vmsplice_17_on<A: Arch>(profile: &str) {
    let mut sys = boot::<A>(profile);
    let pg = ps::<A>();
    let data = pattern(17 * pg, 9);
    let src = user_buf(&mut sys, 17, "src", &data);
    let upages: Vec<Pfn> = (0..17)
        .map(|k| user_pfn(&sys, src.wrapping_add(k * pg)))
        .collect();
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let r = sys.vmsplice(
        p,
        vec![Iovec {
            base: src,
            len: 17 * pg,
        }],
        0,
    );
    assert_eq!(r, Ok(16 * pg));
    let bufs = sys.pipes[p].occupied_bufs();
    assert_eq!(bufs.len(), 16);
    for (k, b) in bufs.iter().enumerate() {
        assert_eq!(b.page, upages[k], "buffer {k} is the user page");
        assert_eq!((b.ops, b.offset, b.len as u64), (BufOps::User, 0, pg));
        assert_eq!(refcount(&sys, upages[k]), start[&upages[k]] + 1);
    }
    assert_eq!(
        refcount(&sys, upages[16]),
        start[&upages[16]],
        "17th put back"
    );
    assert_eq!(sys.m.held_total(), (0, 0), "references went to the pipe");
    // Full pipe: wait_for_space says -EAGAIN.
    assert_eq!(
        sys.vmsplice(p, vec![Iovec { base: src, len: 1 }], 0),
        Err(Errno::EAGAIN)
    );
    // A 32-slot pipe takes all 17.
    let q = sys.pipe_create_sized(32);
    assert_eq!(
        sys.vmsplice(
            q,
            vec![Iovec {
                base: src,
                len: 17 * pg
            }],
            0
        ),
        Ok(17 * pg)
    );
    assert_eq!(sys.pipes[q].nrbufs, 17);
    // The pipe reads the user's data (and later user writes show through:
    // no copy was made).
    assert_eq!(sys.m.copy_to_user(src, &[0xab; 4]), 0);
    let mut out = Vec::new();
    assert_eq!(sys.splice_to_vec(q, u64::MAX, &mut out), Ok(17 * pg));
    assert_eq!(&out[..4], &[0xab; 4]);
    assert_eq!(out[4..], data[4..]);
    // iter_to_pipe leaves the iterator at the first byte not added (v4.10:
    // advanced per buffer; 6.13: advanced per batch, then reverted).
    let r = sys.pipe_create();
    let mut from = IovIter::import_iovec(
        &sys.m,
        Dir::Write,
        vec![Iovec {
            base: src,
            len: 17 * pg,
        }],
    )
    .unwrap();
    assert_eq!(sys.iter_to_pipe(&mut from, r, 0), Ok(16 * pg));
    assert_eq!(from.count, pg, "{profile}");
    assert_eq!(sys.m.held_total(), (0, 0));
    assert_balanced(&mut sys, &start);
}

/// vmsplice of an unaligned range: the first buffer starts at the in-page
/// offset; SPLICE_F_GIFT marks every buffer PIPE_BUF_FLAG_GIFT; only the
/// first non-empty segment is taken per batch, later segments in later
/// rounds.
fn vmsplice_unaligned_and_gift<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let pg = ps::<A>();
    let data = pattern(4 * pg, 10);
    let src = user_buf(&mut sys, 4, "src", &data);
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let iov = vec![
        Iovec {
            base: src.wrapping_add(100),
            len: pg,
        },
        Iovec { base: src, len: 0 },
        Iovec {
            base: src.wrapping_add(3 * pg),
            len: 10,
        },
    ];
    assert_eq!(sys.vmsplice(p, iov, SPLICE_F_GIFT), Ok(pg + 10));
    let bufs = sys.pipes[p].occupied_bufs();
    assert_eq!(bufs.len(), 3);
    assert_eq!((bufs[0].offset, bufs[0].len as u64), (100, pg - 100));
    assert_eq!((bufs[1].offset, bufs[1].len), (0, 100));
    assert_eq!((bufs[2].offset, bufs[2].len), (0, 10));
    assert!(bufs.iter().all(|b| b.flags == PIPE_BUF_FLAG_GIFT));
    let mut out = Vec::new();
    assert_eq!(sys.splice_to_vec(p, u64::MAX, &mut out), Ok(pg + 10));
    let want = [
        &data[100..(pg + 100) as usize],
        &data[(3 * pg) as usize..(3 * pg + 10) as usize],
    ]
    .concat();
    assert_eq!(out, want);
    assert_balanced(&mut sys, &start);
}

/// iter_file_splice_write: the sink gets an ITER_BVEC|WRITE whose pages are
/// the pipe buffers' pages (here vmspliced user pages: no copy anywhere on
/// the way); what it consumed releases whole buffers and shortens the
/// partial one.
fn splice_moves_pages_without_copying<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let pg = ps::<A>();
    let data = pattern(4 * pg, 11);
    let src = user_buf(&mut sys, 4, "src", &data);
    let upages: Vec<Pfn> = (0..4)
        .map(|k| user_pfn(&sys, src.wrapping_add(k * pg)))
        .collect();
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    assert_eq!(
        sys.vmsplice(
            p,
            vec![Iovec {
                base: src,
                len: 4 * pg
            }],
            0
        ),
        Ok(4 * pg)
    );
    let mut seen: Vec<(Pfn, u32, u32)> = Vec::new();
    let mut written = Vec::new();
    let take = pg + pg / 2;
    let r = sys.iter_file_splice_write(p, 3 * pg, &mut |sys, from| {
        assert_eq!((from.ty, from.dir), (IterType::Bvec, Dir::Write));
        seen.extend(from.bvec.iter().map(|b| (b.page, b.offset, b.len)));
        // A file that takes only 1.5 pages per write_iter.
        let mut buf = vec![0u8; take.min(from.count) as usize];
        let n = sys.copy_from_iter(&mut buf, from);
        written.extend_from_slice(&buf[..n as usize]);
        Ok(n)
    });
    assert_eq!(r, Ok(3 * pg));
    // First round: 3 bvecs over the first 3 user pages (len clipped to 3
    // pages); second round: the half-eaten buffer and the third.
    assert_eq!(
        seen[..3],
        [
            (upages[0], 0, pg as u32),
            (upages[1], 0, pg as u32),
            (upages[2], 0, pg as u32)
        ]
    );
    assert_eq!(seen[3], (upages[1], (pg / 2) as u32, (pg / 2) as u32));
    assert_eq!(seen[4], (upages[2], 0, pg as u32));
    assert_eq!(written, data[..(3 * pg) as usize]);
    // One buffer left; the consumed pages' references are back.
    assert_eq!(sys.pipes[p].nrbufs, 1);
    for k in 0..3 {
        assert_eq!(refcount(&sys, upages[k]), start[&upages[k]]);
    }
    assert_eq!(refcount(&sys, upages[3]), start[&upages[3]] + 1);
    // A sink error with nothing spliced is returned; empty pipe → -EAGAIN,
    // or 0 without writers.
    assert_eq!(
        sys.iter_file_splice_write(p, 10, &mut |_, _| Err(Errno::ENOSPC)),
        Err(Errno::ENOSPC)
    );
    let mut out = Vec::new();
    assert_eq!(sys.splice_to_vec(p, u64::MAX, &mut out), Ok(pg));
    assert_eq!(sys.splice_to_vec(p, 1, &mut out), Err(Errno::EAGAIN));
    sys.pipes[p].writers = 0;
    assert_eq!(sys.splice_to_vec(p, 1, &mut out), Ok(0));
    assert_balanced(&mut sys, &start);
}

/// v6.13 has no ITER_PIPE (removed in 6.4): creating one is refused; pipes,
/// read/write, vmsplice and splice still work.
fn v6_13_refuses_pipe_iterator<A: Arch>() {
    let mut sys = boot::<A>("v6.13");
    let pg = ps::<A>();
    let data = pattern(2 * pg, 12);
    let src = user_buf(&mut sys, 2, "src", &data);
    let f = file_with_pages(&mut sys, 1);
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    assert!(matches!(
        sys.iov_iter_pipe(p),
        Err(IterError::NotInProfile(_))
    ));
    assert!(matches!(
        sys.iov_iter_pipe_len(p, 10),
        Err(IterError::NotInProfile(_))
    ));
    let mut pos = 0;
    assert_eq!(
        sys.generic_file_splice_read(f, &mut pos, p, 10),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        sys.vmsplice(
            p,
            vec![Iovec {
                base: src,
                len: 2 * pg
            }],
            0
        ),
        Ok(2 * pg)
    );
    let mut out = Vec::new();
    assert_eq!(sys.splice_to_vec(p, u64::MAX, &mut out), Ok(2 * pg));
    assert_eq!(out, data);
    assert_balanced(&mut sys, &start);
}

/// iov_iter_revert on a pipe (4.11+, here v4.17): walk back towards
/// start_idx, then truncate — reverted buffers are released (page cache
/// references put); landing on the start gives offset 0 at start_idx.
/// v4.10 has no iov_iter_revert.
fn revert_v4_17<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe(p).unwrap();
    assert!(sys.iov_iter_revert(&mut i, 1).is_err());

    let mut sys = boot::<A>("v4.17");
    let pg = ps::<A>();
    let f = file_with_pages(&mut sys, 1);
    let page = sys.m.find_or_read_page(f, 0).unwrap().0;
    let start = snapshot(&sys);
    let rc0 = refcount(&sys, page);
    let p = sys.pipe_create();
    // Something already in the pipe before the iterator starts.
    let mut pre = sys.iov_iter_pipe(p).unwrap();
    assert_eq!(sys.copy_to_iter(&[5; 30], &mut pre), 30);
    let mut i = sys.iov_iter_pipe(p).unwrap();
    assert_eq!((i.pipe_idx, i.pipe_start_idx), (1, 1));
    let count0 = i.count;
    assert_eq!(sys.copy_to_iter(&pattern(pg + 50, 13), &mut i), pg + 50); // slots 1, 2
    assert_eq!(sys.copy_page_to_iter(page, 0, 64, &mut i), 64); // slot 3
    assert_eq!(sys.pipes[p].nrbufs, 4);
    assert_eq!(refcount(&sys, page), rc0 + 1);
    // Revert the page cache bytes and 20 more.
    sys.iov_iter_revert(&mut i, 84).unwrap();
    assert_eq!((i.pipe_idx, i.iov_offset), (2, 30));
    assert_eq!(i.count, count0 - pg - 30);
    assert_eq!(sys.pipes[p].nrbufs, 3);
    assert_eq!(sys.pipes[p].bufs[2].len, 30);
    assert_eq!(refcount(&sys, page), rc0, "page cache reference put");
    // Revert exactly to the start.
    sys.iov_iter_revert(&mut i, pg + 30).unwrap();
    assert_eq!((i.pipe_idx, i.iov_offset, i.count), (1, 0, count0));
    assert_eq!(sys.pipes[p].nrbufs, 1, "only the earlier writer's buffer");
    assert_eq!(sys.pipes[p].bufs[0].len, 30);
    assert_eq!(kernel_bugs(&sys), 0);
    // And the iterator works again from there.
    assert_eq!(sys.copy_to_iter(&[6; 10], &mut i), 10);
    let mut out = Vec::new();
    assert_eq!(sys.splice_to_vec(p, u64::MAX, &mut out), Ok(40));
    assert_eq!(out, [[5u8; 30].as_slice(), &[6u8; 10]].concat());
    assert_balanced(&mut sys, &start);
}

/// push_pipe and copy_page_to_iter_pipe never write `flags`: a buffer takes
/// the flags its slot had. In v4.10 a stale PIPE_BUF_FLAG_PACKET (left by
/// O_DIRECT pipe writes) makes pipe_read treat a spliced page cache page as
/// a packet and drop the rest of it. (With 5.8's CAN_MERGE flag the same
/// field is Dirty Pipe.)
fn stale_flags_survive_in_slots<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let pg = ps::<A>();
    let src = user_buf(&mut sys, 1, "src", &[1, 2, 3]);
    let dst = user_buf(&mut sys, 1, "dst", &[]);
    let f = file_with_pages(&mut sys, 1);
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    // Sixteen one-byte packets, read back one per read: every slot now has
    // PIPE_BUF_FLAG_PACKET left in it.
    sys.pipes[p].packetized = true;
    for _ in 0..16 {
        let mut from =
            IovIter::import_iovec(&sys.m, Dir::Write, vec![Iovec { base: src, len: 1 }]).unwrap();
        assert_eq!(sys.pipe_write(p, &mut from), Ok(1));
        let mut to = IovIter::init(&sys.m, Dir::Read, vec![Iovec { base: dst, len: 10 }], 10);
        assert_eq!(sys.pipe_read(p, &mut to), Ok(1));
    }
    sys.pipes[p].packetized = false;
    assert_eq!(sys.pipes[p].curbuf, 0);
    assert!(
        sys.pipes[p]
            .bufs
            .iter()
            .all(|b| b.flags == PIPE_BUF_FLAG_PACKET)
    );
    // Splice a file page in: page cache ops, stale PACKET flag.
    let mut pos = 0;
    assert_eq!(sys.generic_file_splice_read(f, &mut pos, p, pg), Ok(pg));
    let b = sys.pipes[p].bufs[0];
    assert_eq!(b.ops, BufOps::PageCache);
    assert_eq!(b.flags, PIPE_BUF_FLAG_PACKET, "flags not initialised");
    // A 100-byte read gets 100 bytes and the other PAGE-100 are dropped.
    let mut to = IovIter::init(
        &sys.m,
        Dir::Read,
        vec![Iovec {
            base: dst,
            len: 100,
        }],
        100,
    );
    assert_eq!(sys.pipe_read(p, &mut to), Ok(100));
    assert_eq!(user_read(&mut sys, dst, 100), file_bytes(0, 0, 100));
    assert!(
        sys.pipes[p].is_empty(),
        "the rest of the page was thrown away"
    );
    // The same on a fresh pipe keeps the rest.
    let q = sys.pipe_create();
    let mut pos = 0;
    assert_eq!(sys.generic_file_splice_read(f, &mut pos, q, pg), Ok(pg));
    assert_eq!(sys.pipes[q].bufs[0].flags, 0);
    let mut to = IovIter::init(
        &sys.m,
        Dir::Read,
        vec![Iovec {
            base: dst,
            len: 100,
        }],
        100,
    );
    assert_eq!(sys.pipe_read(q, &mut to), Ok(100));
    assert_eq!(sys.pipes[q].bytes(), pg - 100);
    assert_balanced(&mut sys, &start);
}

/// PIPE_PARANOIA's sanity check: an iterator that does not sit at the end
/// of the pipe's data WARNs (kernel_bug) and the operation returns 0 /
/// -EFAULT.
fn sanity_failure_is_a_kernel_bug<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe(p).unwrap();
    assert_eq!(sys.copy_to_iter(&[1; 10], &mut i), 10);
    let mut bad = i.clone();
    bad.iov_offset = 5; // not the end of the buffer
    assert_eq!(sys.copy_to_iter(&[1; 10], &mut bad), 0);
    assert_eq!(kernel_bugs(&sys), 1);
    assert!(sys.m.events[0].detail.contains("sanity"));
    let f = sys.m.zero_pfn();
    assert_eq!(sys.copy_page_to_iter(f, 0, 1, &mut bad), 0);
    assert_eq!(sys.iov_iter_get_pages(&bad, 10, 1), Err(Errno::EFAULT));
    assert_eq!(sys.iov_iter_npages(&bad, 10), 0);
    let mut bad2 = i.clone();
    bad2.iov_offset = 0; // idx should then be the first free slot
    assert_eq!(sys.iov_iter_zero(1, &mut bad2), 0);
    assert_eq!(kernel_bugs(&sys), 5);
    // copy_from_iter on a pipe: WARN, 0.
    assert_eq!(sys.copy_from_iter(&mut [0; 4], &mut i), 0);
    assert_eq!(kernel_bugs(&sys), 6);
    assert_balanced(&mut sys, &start);
}

/// pipe_advance past the reserved data walks stale slots; with every slot of
/// length 0 the kernel loop never ends (soft lockup).
fn advance_over_empty_ring_soft_lockup<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let start = snapshot(&sys);
    let p = sys.pipe_create();
    let mut i = sys.iov_iter_pipe(p).unwrap();
    sys.iov_iter_advance(&mut i, 100);
    assert!(sys.m.events.iter().any(|e| e.kind == EventKind::SoftLockup));
    assert_eq!((i.pipe_idx, i.iov_offset), (0, 0), "left alone");
    assert_balanced(&mut sys, &start);
}

// ---------------------------------------------------------------------------
// pipe_advance fencepost (CVE-2017-5550)

/// v4.9's `pipe_advance` releases from the new position up to
/// `curbuf + nrbufs`: right for a partly filled ring and for any advance
/// that moves, wrong (nothing released) for an advance by 0 from `curbuf`
/// of a ring the reservation filled. `pipe_truncate` (v4.10) releases it.
fn pipe_advance_v4_9_fencepost<A: Arch>() {
    for (profile, full_zero_left) in [("v4.10", 0), ("v4.10+pipe-advance-fencepost", 16)] {
        let mut sys = boot::<A>(profile);
        let start = snapshot(&sys);
        let p = sys.pipe_create();
        // Three pages reserved, advance by 0: all released either way.
        let mut i = sys.iov_iter_pipe(p).unwrap();
        let g = sys.pipe_get_pages_alloc(&i, 3 * ps::<A>()).unwrap();
        sys.release_pages(&g, true);
        assert_eq!(sys.pipes[p].nrbufs, 3);
        sys.iov_iter_advance(&mut i, 0);
        assert_eq!(sys.pipes[p].nrbufs, 0, "{profile}: partial ring");
        // The whole ring reserved from curbuf, advance by 100: one buffer of
        // 100 bytes stays either way.
        let mut i = sys.iov_iter_pipe(p).unwrap();
        let g = sys.pipe_get_pages_alloc(&i, u64::MAX).unwrap();
        sys.release_pages(&g, true);
        assert!(sys.pipes[p].is_full());
        sys.iov_iter_advance(&mut i, 100);
        assert_eq!(sys.pipes[p].nrbufs, 1, "{profile}: advance by 100");
        assert_eq!(sys.pipes[p].bufs[sys.pipes[p].curbuf].len, 100);
        sys.free_pipe_info(p);
        // The whole ring reserved from curbuf, advance by 0.
        let p = sys.pipe_create();
        let mut i = sys.iov_iter_pipe(p).unwrap();
        let g = sys.pipe_get_pages_alloc(&i, u64::MAX).unwrap();
        sys.release_pages(&g, true);
        sys.iov_iter_advance(&mut i, 0);
        assert_eq!(
            sys.pipes[p].nrbufs, full_zero_left,
            "{profile}: full ring, advance by 0"
        );
        assert_eq!(i.count, PIPE_DEF_BUFFERS as u64 * ps::<A>());
        assert_eq!(kernel_bugs(&sys), 0);
        assert_balanced(&mut sys, &start);
    }
}

/// splice from a file without ->splice_read at EOF: `default_file_splice_read`
/// reserves the whole ring, the read returns 0, the advance by 0 must drop
/// the reservation. Under v4.9's rule the 16 unwritten pages stay: the
/// invariant checker names them and reading the pipe raises `infoleak` and
/// returns the frames' earlier bytes.
fn default_file_splice_read_at_eof_leaks_under_v4_9<A: Arch>() {
    for (profile, leaks) in [("v4.10", false), ("v4.10+pipe-advance-fencepost", true)] {
        let mut sys = boot::<A>(profile);
        let f = sys
            .m
            .create_file("status", A::PAGE_SIZE, FileOps::default());
        sys.m.files[f as usize].splice_read = false;
        // A previous owner: 16 pages of 0x5a, freed (not zeroed).
        let len = 16 * ps::<A>();
        let secret = user_buf::<A>(&mut sys, 16, "secret", &vec![0x5a; len as usize]);
        let mm = sys.m.current_mm();
        assert_eq!(sys.m.madvise_dontneed(mm, secret, len), Ok(()));
        let p = sys.pipe_create();
        let mut pos = 3 * ps::<A>();
        assert_eq!(
            sys.splice_file_to_pipe(f, &mut pos, p, len),
            Ok(0),
            "{profile}"
        );
        assert_eq!(pos, 3 * ps::<A>());
        let errs = sys.check_invariants(std::iter::empty()).err();
        if !leaks {
            assert_eq!(sys.pipes[p].nrbufs, 0);
            assert_eq!(errs, None);
            continue;
        }
        assert_eq!(sys.pipes[p].nrbufs, 16);
        let errs = errs.expect("the checker sees the unwritten buffers");
        assert_eq!(errs.len(), 16, "{errs:?}");
        assert!(errs[0].contains("nobody wrote"), "{errs:?}");
        let dst = user_buf::<A>(&mut sys, 16, "dst", &[0]);
        let got = drain(&mut sys, p, dst, len);
        assert_eq!(got.len() as u64, len);
        assert!(got.iter().all(|&b| b == 0x5a), "the secret's bytes");
        assert!(
            sys.m.events.iter().any(|e| e.kind == EventKind::Infoleak),
            "{:?}",
            sys.m.events
        );
        assert_eq!(sys.check_invariants(std::iter::empty()), Ok(()));
        assert_eq!(sys.m.held_total(), (0, 0));
    }
}
