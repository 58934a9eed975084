//! Semantics of the iov_iter layer (`/work/shared/spec/iov-iter.md` §2.1–§2.7,
//! §3.2) checked against hand-computed examples and small reference models.
//!
//! Every case is generic over the arch and runs on x86_64, arm64, ppc64 (64 KiB
//! pages) and ppc64 with 4 KiB pages; sizes are written in `A::PAGE_SIZE`
//! units. Profiles: v4.10 and v6.13 (v4.17 where `iov_iter_revert`, 4.11+, is
//! exercised), and v4.10+layton / v4.10+layton-intended for Jeff Layton's patch.
//!
//! Copy granularity: the emulated uaccess is byte-exact up to the first byte
//! whose page cannot be made accessible (mm/src/uaccess.rs), so a copy that
//! faults returns exactly the bytes before that page. Real arches only promise
//! "some bytes before the fault" (spec §2.3); the reference models below use
//! the emulator's exact rule.
//!
//! Where the spec's prose and the kernel code (or the emulator) differ, a
//! comment starting with "Spec vs code" says so.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseResult, TestRng, TestRunner};
use vmemu_arch::{Arch, Pfn, VirtAddr};
use vmemu_iter::get_pages::GotPages;
use vmemu_iter::iov_iter::{IterType, MAX_RW_COUNT, UIO_MAXIOV};
use vmemu_iter::{BioVec, Dir, IovIter, Iovec, Sys};
use vmemu_mm::{Backing, Errno, EventKind, KernelProfile, MapFlags, Prot};

// ---------------------------------------------------------------------------
// Helpers.

/// Emulated memory per machine.
const PHYS: u64 = 64 << 20;

fn boot<A: Arch>(profile: &str) -> Sys<A> {
    let sys = Sys::<A>::new(KernelProfile::parse(profile).unwrap(), PHYS).unwrap();
    assert!(
        sys.m.events.is_empty(),
        "events at boot: {:?}",
        sys.m.events
    );
    sys
}

/// Maps `pages` anonymous read/write pages named `name` (not faulted in).
fn map<A: Arch>(sys: &mut Sys<A>, pages: u64, name: &str) -> VirtAddr {
    let mm = sys.m.current_mm();
    sys.m
        .mmap(
            mm,
            None,
            pages * A::PAGE_SIZE,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            name,
        )
        .unwrap()
}

/// The byte the tests pre-fill user memory with at region offset `x`.
fn pattern(x: u64) -> u8 {
    (x.wrapping_mul(31) ^ (x >> 9)) as u8
}

/// Writes the pattern over `len` bytes at `va` (faulting the pages in).
fn fill<A: Arch>(sys: &mut Sys<A>, va: VirtAddr, len: u64) {
    let bytes: Vec<u8> = (0..len).map(pattern).collect();
    assert_eq!(sys.m.copy_to_user(va, &bytes), 0, "fill {va}");
}

/// Maps `pages` pages and faults them all in (written with the pattern).
fn map_filled<A: Arch>(sys: &mut Sys<A>, pages: u64, name: &str) -> VirtAddr {
    let va = map(sys, pages, name);
    fill(sys, va, pages * A::PAGE_SIZE);
    va
}

/// The frame behind a present user address.
fn upfn<A: Arch>(sys: &Sys<A>, va: VirtAddr) -> Pfn {
    let mm = sys.m.current_mm();
    sys.m
        .user_pa(mm, va)
        .unwrap_or_else(|| panic!("{va} not present"))
        .pfn(A::PAGE_SHIFT)
}

/// The frames of `pages` consecutive pages from `va`.
fn upfns<A: Arch>(sys: &Sys<A>, va: VirtAddr, pages: u64) -> Vec<Pfn> {
    (0..pages)
        .map(|k| upfn(sys, va.wrapping_add(k * A::PAGE_SIZE)))
        .collect()
}

fn refcount<A: Arch>(sys: &Sys<A>, pfn: Pfn) -> u32 {
    let h = sys.m.phys.compound_head(pfn);
    sys.m.phys.page(h).refcount
}

fn refcounts<A: Arch>(sys: &Sys<A>, pfns: &[Pfn]) -> Vec<u32> {
    pfns.iter().map(|&p| refcount(sys, p)).collect()
}

/// `base` with `bumps[k]` added to entry k.
fn plus(base: &[u32], bumps: &[u32]) -> Vec<u32> {
    base.iter().zip(bumps).map(|(b, d)| b + d).collect()
}

fn iov(base: VirtAddr, len: u64) -> Iovec {
    Iovec { base, len }
}

fn total(v: &[Iovec]) -> u64 {
    v.iter().map(|s| s.len).sum()
}

/// A user iovec iterator over `v` covering every byte.
fn uiter<A: Arch>(sys: &Sys<A>, dir: Dir, v: Vec<Iovec>) -> IovIter {
    let n = total(&v);
    IovIter::init(&sys.m, dir, v, n)
}

/// The (page, offset, len) triples a get_pages result covers.
fn triples<A: Arch>(g: &GotPages) -> Vec<(Pfn, u64, u64)> {
    let mut out = Vec::new();
    let mut off = g.start;
    let mut rem = g.bytes;
    for &p in &g.pages {
        if rem == 0 {
            break;
        }
        let len = rem.min(A::PAGE_SIZE - off);
        out.push((p, off, len));
        rem -= len;
        off = 0;
    }
    assert_eq!(rem, 0, "{g:?} covers fewer bytes than it claims");
    out
}

/// Merges adjacent triples that continue each other in the same page.
fn canonical(v: &[(Pfn, u64, u64)]) -> Vec<(Pfn, u64, u64)> {
    let mut out: Vec<(Pfn, u64, u64)> = Vec::new();
    for &(p, o, l) in v {
        if l == 0 {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.0 == p && last.1 + last.2 == o => last.2 += l,
            _ => out.push((p, o, l)),
        }
    }
    out
}

/// Reference walk: the (page, offset, len) triples of the next `count`
/// bytes of `segs` from (`idx`, `off`), split at page ends, with `page_of`
/// translating an address. Written independently of the emulator's walker.
fn reference_triples<A: Arch>(
    segs: &[(u64, u64)],
    idx: usize,
    off: u64,
    count: u64,
    page_of: &mut dyn FnMut(u64) -> Pfn,
) -> Vec<(Pfn, u64, u64)> {
    let mut out = Vec::new();
    let mut left = count;
    let mut skip = off;
    for &(base, len) in &segs[idx..] {
        if left == 0 {
            break;
        }
        let mut a = base + skip;
        let mut n = len.saturating_sub(skip).min(left);
        skip = 0;
        left -= n;
        while n > 0 {
            let in_page = a % A::PAGE_SIZE;
            let l = n.min(A::PAGE_SIZE - in_page);
            out.push((page_of(a), in_page, l));
            a += l;
            n -= l;
        }
    }
    out
}

fn assert_no_events<A: Arch>(sys: &Sys<A>) {
    assert!(sys.m.events.is_empty(), "events: {:?}", sys.m.events);
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    )
}

/// Runs `f` on every arch as its own test.
macro_rules! on_all_arches {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[test]
            fn x86_64() {
                super::$case::<vmemu_arch::X86_64>();
            }
            #[test]
            fn arm64() {
                super::$case::<vmemu_arch::Arm64>();
            }
            #[test]
            fn ppc64() {
                super::$case::<vmemu_arch::Ppc64>();
            }
            #[test]
            fn ppc64_4k() {
                super::$case::<vmemu_arch::Ppc64_4k>();
            }
        }
    )+};
}

on_all_arches!(
    get_pages_worked_examples,
    get_pages_contiguous_segments,
    get_pages_kvec_and_bvec,
    layton_length_undercount,
    layton_non_adjacent_pieces,
    layton_unaligned_first_segment,
    layton_short_gup,
    fill_bvecs_fixed_array,
    alignment_queries,
    gap_alignment_v4_10,
    npages_and_single_seg_count,
    import_iovec_rules,
    init_under_kernel_ds,
    copy_from_iter_full_semantics,
    modern_get_pages,
    for_each_page_kvec,
    for_each_page_pipe,
    get_pages_maxpages_zero,
    get_pages2_empty_bvec,
    fault_in_readable_long_piece,
    prop_copy_to_iter,
    prop_copy_from_iter,
    prop_advance_revert,
    prop_get_pages_cover,
    prop_for_each_page,
);

// ---------------------------------------------------------------------------
// 1. Spec §2.6: v4.10 `iov_iter_get_pages`, worked examples in PAGE_SIZE units.

/// A piece at buf + 0x10 of three pages with maxpages 2: *start* 0x10, the
/// length clipped to 2 pages, 2·PAGE − 0x10 bytes in 2 pages; the iterator is
/// not advanced and the caller owns one reference per page. 6.13's
/// `iov_iter_get_pages2` returns the same and advances.
fn get_pages_worked_examples<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let buf = map_filled(&mut sys, 4, "buf");
        let pf = upfns(&sys, buf, 4);
        let base = refcounts(&sys, &pf);
        let mut i = uiter(&sys, Dir::Read, vec![iov(buf.wrapping_add(0x10), 3 * p)]);
        let before = i.clone();
        let g = if prof == "v4.10" {
            let g = sys.iov_iter_get_pages(&i, u64::MAX, 2).unwrap();
            assert_eq!(i, before, "{prof}: v4.10 get_pages does not advance");
            g
        } else {
            let g = sys.iov_iter_get_pages2(&mut i, u64::MAX, 2).unwrap();
            assert_eq!(
                i.count,
                3 * p - (2 * p - 0x10),
                "{prof}: get_pages2 advances"
            );
            assert_eq!((i.idx, i.iov_offset), (0, 2 * p - 0x10));
            g
        };
        assert_eq!(g.start, 0x10, "{prof}");
        assert_eq!(g.bytes, 2 * p - 0x10, "{prof}");
        assert_eq!(g.pages, pf[..2].to_vec(), "{prof}");
        assert!(!g.pinned);
        assert_eq!(refcounts(&sys, &pf), plus(&base, &[1, 1, 0, 0]), "{prof}");
        assert_eq!(sys.m.held_total(), (2, 0), "{prof}");
        sys.release_pages(&g, true);
        assert_eq!(refcounts(&sys, &pf), base, "{prof}");
        assert_eq!(sys.m.held_total(), (0, 0), "{prof}");
        // maxsize smaller than the piece: the length follows maxsize.
        let mut i = uiter(&sys, Dir::Read, vec![iov(buf.wrapping_add(0x10), 3 * p)]);
        let g = if prof == "v4.10" {
            sys.iov_iter_get_pages(&i, 0x20, 8).unwrap()
        } else {
            sys.iov_iter_get_pages2(&mut i, 0x20, 8).unwrap()
        };
        assert_eq!((g.bytes, g.start, g.pages.len()), (0x20, 0x10, 1), "{prof}");
        sys.release_pages(&g, true);
        assert_eq!(sys.m.held_total(), (0, 0));
        assert_no_events(&sys);
    }
}

/// Two contiguous page-aligned segments: v4.10 uses the first segment only
/// (PAGE_SIZE, even through `iov_iter_get_pages_alloc`); Layton's patch, as
/// posted and as intended, stitches them (2·PAGE_SIZE).
fn get_pages_contiguous_segments<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v4.10+layton", "v4.10+layton-intended", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let buf = map_filled(&mut sys, 2, "buf");
        let pf = upfns(&sys, buf, 2);
        let base = refcounts(&sys, &pf);
        let segs = vec![iov(buf, p), iov(buf.wrapping_add(p), p)];
        let mut i = uiter(&sys, Dir::Read, segs);
        let before = i.clone();
        if prof == "v6.13" {
            // 6.x: first segment only, and the iterator advances.
            let g = sys.iov_iter_get_pages_alloc2(&mut i, 2 * p).unwrap();
            assert_eq!((g.bytes, g.start, g.pages.clone()), (p, 0, vec![pf[0]]));
            assert_eq!((i.count, i.idx, i.iov_offset, i.nr_segs), (p, 1, 0, 1));
            sys.release_pages(&g, true);
            assert_eq!(refcounts(&sys, &pf), base);
            continue;
        }
        // The capped form never stitches.
        let g = sys.iov_iter_get_pages(&i, 2 * p, 2).unwrap();
        assert_eq!(
            (g.bytes, g.start, g.pages.clone()),
            (p, 0, vec![pf[0]]),
            "{prof}"
        );
        sys.release_pages(&g, true);
        let g = sys.iov_iter_get_pages_alloc(&i, 2 * p).unwrap();
        let stitched = prof != "v4.10";
        if stitched {
            assert_eq!(
                (g.bytes, g.start, g.pages.clone()),
                (2 * p, 0, pf.clone()),
                "{prof}"
            );
            assert_eq!(refcounts(&sys, &pf), plus(&base, &[1, 1]), "{prof}");
        } else {
            assert_eq!(
                (g.bytes, g.start, g.pages.clone()),
                (p, 0, vec![pf[0]]),
                "{prof}"
            );
            assert_eq!(refcounts(&sys, &pf), plus(&base, &[1, 0]), "{prof}");
        }
        assert_eq!(i, before, "{prof}: not advanced");
        sys.release_pages(&g, true);
        assert_eq!(refcounts(&sys, &pf), base, "{prof}");
        assert_eq!(sys.m.held_total(), (0, 0), "{prof}");
        assert_no_events(&sys);
    }
}

/// KVEC → −EFAULT, but a KVEC with count 0 (or maxsize 0) → 0 because the
/// first-piece search runs before the flavour test; BVEC ignores maxpages and
/// returns one page.
fn get_pages_kvec_and_bvec<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let kp = sys.m.alloc_kernel_pages("kbuf", 2).unwrap();
        let kva = sys.m.vmap(&kp).unwrap();
        let base = refcounts(&sys, &kp);
        let k = IovIter::kvec(Dir::Read, vec![iov(kva.wrapping_add(0x10), 0x100)], 0x100);
        let k0 = IovIter::kvec(Dir::Read, vec![iov(kva, 0x100)], 0);
        let kz = IovIter::kvec(Dir::Read, vec![iov(kva, 0), iov(kva, 0)], 0);
        // BVEC: one element of PAGE − 0x20 bytes at offset 0x20.
        let bv = BioVec {
            page: kp[1],
            len: (p - 0x20) as u32,
            offset: 0x20,
        };
        let b = IovIter::bvec(Dir::Read, vec![bv], p - 0x20);
        if prof == "v4.10" {
            assert_eq!(sys.iov_iter_get_pages(&k, u64::MAX, 4), Err(Errno::EFAULT));
            assert_eq!(
                sys.iov_iter_get_pages_alloc(&k, u64::MAX),
                Err(Errno::EFAULT)
            );
            for z in [&k0, &kz] {
                let g = sys.iov_iter_get_pages(z, u64::MAX, 4).unwrap();
                assert_eq!((g.bytes, g.pages.len()), (0, 0));
            }
            let g = sys.iov_iter_get_pages(&k, 0, 4).unwrap();
            assert_eq!((g.bytes, g.pages.len()), (0, 0), "maxsize 0");
            // maxpages is not even looked at for a bvec: 0 still gives a page.
            for maxpages in [0, 1, 16] {
                let g = sys.iov_iter_get_pages(&b, u64::MAX, maxpages).unwrap();
                assert_eq!(
                    (g.bytes, g.start, g.pages.clone()),
                    (p - 0x20, 0x20, vec![kp[1]])
                );
                assert_eq!(refcounts(&sys, &kp), plus(&base, &[0, 1]));
                sys.release_pages(&g, true);
            }
        } else {
            let mut k = k.clone();
            assert_eq!(
                sys.iov_iter_get_pages2(&mut k, u64::MAX, 4),
                Err(Errno::EFAULT)
            );
            let mut k0 = k0.clone();
            let g = sys.iov_iter_get_pages2(&mut k0, u64::MAX, 4).unwrap();
            assert_eq!((g.bytes, g.pages.len()), (0, 0));
            // 6.x guards maxpages == 0 for every flavour.
            let mut b0 = b.clone();
            let g = sys.iov_iter_get_pages2(&mut b0, u64::MAX, 0).unwrap();
            assert_eq!((g.bytes, g.pages.len()), (0, 0));
            assert_eq!(b0, b);
            let g = sys.iov_iter_get_pages2(&mut b0, u64::MAX, 1).unwrap();
            assert_eq!(
                (g.bytes, g.start, g.pages.clone()),
                (p - 0x20, 0x20, vec![kp[1]])
            );
            assert_eq!((b0.count, b0.idx, b0.nr_segs), (0, 1, 0));
            sys.release_pages(&g, true);
        }
        assert_eq!(refcounts(&sys, &kp), base);
        assert_eq!(sys.m.held_total(), (0, 0));
        assert_no_events(&sys);
    }
}

// ---------------------------------------------------------------------------
// 2. Spec §2.7: Layton's patch as posted (seed/000_9fc42c3a3c908919.txt) and
// as its commit message intends.

/// Example (b): [buf0 + 0x10 : PAGE − 0x10], [buf1 : PAGE]. The sizing adds
/// both (2·PAGE − 0x10); the posted fill subtracts *start* for each piece:
/// 2·PAGE − 0x20. The intended rule subtracts it once: 2·PAGE − 0x10.
fn layton_length_undercount<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v4.10+layton", "v4.10+layton-intended"] {
        let mut sys = boot::<A>(prof);
        let b0 = map_filled(&mut sys, 1, "buf0");
        let b1 = map_filled(&mut sys, 1, "buf1");
        let pf = vec![upfn(&sys, b0), upfn(&sys, b1)];
        let base = refcounts(&sys, &pf);
        let i = uiter(
            &sys,
            Dir::Read,
            vec![iov(b0.wrapping_add(0x10), p - 0x10), iov(b1, p)],
        );
        let before = i.clone();
        let g = sys.iov_iter_get_pages_alloc(&i, u64::MAX).unwrap();
        let (bytes, pages) = match prof {
            "v4.10" => (p - 0x10, vec![pf[0]]),
            "v4.10+layton" => (2 * p - 0x20, pf.clone()),
            _ => (2 * p - 0x10, pf.clone()),
        };
        assert_eq!(
            (g.bytes, g.start, g.pages.clone()),
            (bytes, 0x10, pages),
            "{prof}"
        );
        assert_eq!(i, before);
        if prof != "v4.10" {
            assert_eq!(sys.iov_iter_pvec_size(&i, false), 2 * p - 0x10);
            assert_eq!(sys.iov_iter_pvec_size(&i, true), 2 * p - 0x10);
        }
        sys.release_pages(&g, true);
        assert_eq!(refcounts(&sys, &pf), base, "{prof}");
        assert_eq!(sys.m.held_total(), (0, 0));
        assert_no_events(&sys);
    }
}

/// Example (a): [A : PAGE], [B + 0x10 : 0x10], [C : PAGE], three separate
/// page-aligned mappings.
///
/// Posted code: the sizing adds A, skips B without touching its flags (so
/// *contig* stays true) and adds C: 2·PAGE, an array of 2 slots. The fill walks
/// the consecutive pieces within 2·PAGE bytes: A (1 page), B (1 page: the
/// page of B although its data starts at 0x10), then C cut to PAGE − 0x10
/// bytes, which needs a third slot: "pc + n > p + npages" → −EFAULT, and the
/// two references taken are put.
///
/// Spec vs code: §2.7(a) says the fill pins A, B and C and returns 2·PAGE
/// with *start* 0. The array is sized ceil(2·PAGE / PAGE) = 2 from the sizing
/// result, so the third piece overflows it and the call fails with −EFAULT.
/// The non-adjacent stitching the spec describes does happen when the caller's
/// maxsize stops the walk before C: with maxsize PAGE + 0x10 the posted code
/// returns PAGE + 0x10 bytes in pages [A, B] with *start* 0, and a caller
/// reading them as one byte run takes B's bytes from offset 0, not 0x10.
///
/// Intended rule: stop at B (unaligned start): PAGE in one page.
fn layton_non_adjacent_pieces<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v4.10+layton", "v4.10+layton-intended"] {
        let mut sys = boot::<A>(prof);
        let a = map_filled(&mut sys, 1, "A");
        let b = map_filled(&mut sys, 1, "B");
        let c = map_filled(&mut sys, 1, "C");
        let pf = vec![upfn(&sys, a), upfn(&sys, b), upfn(&sys, c)];
        let base = refcounts(&sys, &pf);
        let i = uiter(
            &sys,
            Dir::Read,
            vec![iov(a, p), iov(b.wrapping_add(0x10), 0x10), iov(c, p)],
        );
        let before = i.clone();
        let r = sys.iov_iter_get_pages_alloc(&i, u64::MAX);
        match prof {
            "v4.10" => {
                let g = r.unwrap();
                assert_eq!((g.bytes, g.start, g.pages.clone()), (p, 0, vec![pf[0]]));
                sys.release_pages(&g, true);
            }
            "v4.10+layton" => {
                assert_eq!(sys.iov_iter_pvec_size(&i, false), 2 * p);
                assert_eq!(r, Err(Errno::EFAULT), "the third piece overflows the array");
                assert_eq!(refcounts(&sys, &pf), base, "every reference taken was put");
                assert_eq!(sys.m.held_total(), (0, 0));
                // With maxsize PAGE + 0x10 the array has 2 slots and the walk
                // ends inside B: non-adjacent bytes reported as one run.
                let g = sys.iov_iter_get_pages_alloc(&i, p + 0x10).unwrap();
                assert_eq!(
                    (g.bytes, g.start, g.pages.clone()),
                    (p + 0x10, 0, vec![pf[0], pf[1]])
                );
                sys.release_pages(&g, true);
            }
            _ => {
                assert_eq!(sys.iov_iter_pvec_size(&i, true), p);
                let g = r.unwrap();
                assert_eq!((g.bytes, g.start, g.pages.clone()), (p, 0, vec![pf[0]]));
                sys.release_pages(&g, true);
            }
        }
        assert_eq!(i, before);
        assert_eq!(refcounts(&sys, &pf), base, "{prof}");
        assert_eq!(sys.m.held_total(), (0, 0), "{prof}");
        assert_no_events(&sys);

        // The same shape as bvecs: the posted fill stores the third bvec's
        // page past the 2-entry array and hits BUG_ON(pc > p + npages).
        let bv: Vec<BioVec> = [(pf[0], p, 0), (pf[1], 0x10, 0x10), (pf[2], p, 0)]
            .iter()
            .map(|&(page, len, offset)| BioVec {
                page,
                len: len as u32,
                offset,
            })
            .collect();
        let b = IovIter::bvec(Dir::Read, bv, 2 * p + 0x10);
        let r = sys.iov_iter_get_pages_alloc(&b, u64::MAX);
        match prof {
            "v4.10" | "v4.10+layton-intended" => {
                let g = r.unwrap();
                assert_eq!((g.bytes, g.start, g.pages.clone()), (p, 0, vec![pf[0]]));
                sys.release_pages(&g, true);
                assert_no_events(&sys);
            }
            _ => {
                assert_eq!(r, Err(Errno::EFAULT));
                assert_eq!(sys.m.events.len(), 1);
                assert_eq!(sys.m.events[0].kind, EventKind::KernelBug);
            }
        }
        assert_eq!(refcounts(&sys, &pf), base, "{prof}");
        assert_eq!(sys.m.held_total(), (0, 0), "{prof}");
    }
}

/// A single segment at buf + 0x10 of PAGE bytes. v4.10: PAGE bytes in two
/// pages. Posted patch: the array is sized ceil(maxsize / PAGE) = 1 without
/// the first piece's offset, the piece needs ceil((PAGE + 0x10) / PAGE) = 2
/// slots → −EFAULT: an unaligned first segment that crosses a page boundary
/// it would not cross if aligned always fails, although the commit message
/// says an unaligned first base is allowed. The intended overlay sizes the
/// array with the offset and returns what v4.10 does.
fn layton_unaligned_first_segment<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v4.10+layton", "v4.10+layton-intended"] {
        let mut sys = boot::<A>(prof);
        let buf = map_filled(&mut sys, 3, "buf");
        let pf = upfns(&sys, buf, 3);
        let base = refcounts(&sys, &pf);
        for (len, pages) in [(p, 2usize), (2 * p - 0x10, 2), (0x20, 1)] {
            let i = uiter(&sys, Dir::Read, vec![iov(buf.wrapping_add(0x10), len)]);
            let r = sys.iov_iter_get_pages_alloc(&i, u64::MAX);
            if prof == "v4.10+layton" && len == p {
                assert_eq!(r, Err(Errno::EFAULT), "{prof} len {len:#x}");
            } else {
                let g = r.unwrap();
                assert_eq!(
                    (g.bytes, g.start, g.pages.clone()),
                    (len, 0x10, pf[..pages].to_vec()),
                    "{prof} len {len:#x}"
                );
                sys.release_pages(&g, true);
            }
            assert_eq!(refcounts(&sys, &pf), base, "{prof}");
        }
        assert_eq!(sys.m.held_total(), (0, 0));
        assert_no_events(&sys);
    }
}

/// A short gup inside the walk: [A : 2·PAGE] whose second page is a hole,
/// then [C : PAGE]. The sizing adds both (3·PAGE). As posted, A's gup pins 1
/// of 2 pages, adds PAGE and the walk goes on: C's page lands in slot 1, so
/// the result (2·PAGE in [A0, C0]) tells the caller that the iterator's bytes
/// PAGE..2·PAGE (A's hole) live in C's page. v4.10 and the intended rule stop
/// after the short piece: PAGE in [A0].
///
/// A gup error on a later piece ([A : PAGE], [hole : PAGE]) fails the whole
/// call in both overlays (−EFAULT, A's reference put), where v4.10 returns
/// the first segment.
fn layton_short_gup<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v4.10+layton", "v4.10+layton-intended"] {
        let mut sys = boot::<A>(prof);
        let a = map_filled(&mut sys, 2, "A");
        let c = map_filled(&mut sys, 1, "C");
        let mm = sys.m.current_mm();
        let hole = a.wrapping_add(p);
        sys.m.munmap(mm, hole, p).unwrap();
        let pf = vec![upfn(&sys, a), upfn(&sys, c)];
        let base = refcounts(&sys, &pf);
        let i = uiter(&sys, Dir::Read, vec![iov(a, 2 * p), iov(c, p)]);
        let g = sys.iov_iter_get_pages_alloc(&i, u64::MAX).unwrap();
        if prof == "v4.10+layton" {
            assert_eq!((g.bytes, g.start, g.pages.clone()), (2 * p, 0, pf.clone()));
        } else {
            assert_eq!(
                (g.bytes, g.start, g.pages.clone()),
                (p, 0, vec![pf[0]]),
                "{prof}"
            );
        }
        sys.release_pages(&g, true);
        assert_eq!(refcounts(&sys, &pf), base);

        let i = uiter(&sys, Dir::Read, vec![iov(a, p), iov(hole, p)]);
        let r = sys.iov_iter_get_pages_alloc(&i, u64::MAX);
        if prof == "v4.10" {
            let g = r.unwrap();
            assert_eq!((g.bytes, g.pages.clone()), (p, vec![pf[0]]));
            sys.release_pages(&g, true);
        } else {
            assert_eq!(r, Err(Errno::EFAULT), "{prof}");
        }
        assert_eq!(refcounts(&sys, &pf), base, "{prof}");
        assert_eq!(sys.m.held_total(), (0, 0));
        assert_no_events(&sys);
    }
}

// ---------------------------------------------------------------------------
// 5. Hellwig's fill-a-bvec-array.

/// A fixed 4-entry array on a 6-page iovec: the first call fills 4 bvecs
/// (one page each) and advances by their 4 pages; the second fills the other
/// 2. Each bvec holds one reference; nothing else is taken.
fn fill_bvecs_fixed_array<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let buf = map_filled(&mut sys, 6, "buf");
        let pf = upfns(&sys, buf, 6);
        let base = refcounts(&sys, &pf);
        let mut i = uiter(&sys, Dir::Read, vec![iov(buf, 6 * p)]);
        let mut bv = [BioVec {
            page: Pfn(0),
            len: 0,
            offset: 0,
        }; 4];
        let (n, bytes) = sys.iov_iter_fill_bvecs(&mut i, &mut bv, u64::MAX).unwrap();
        assert_eq!((n, bytes), (4, 4 * p), "{prof}");
        for (k, b) in bv.iter().enumerate() {
            assert_eq!((b.page, b.offset, u64::from(b.len)), (pf[k], 0, p));
        }
        assert_eq!((i.count, i.iov_offset), (2 * p, 4 * p));
        assert_eq!(sys.m.held_total(), (4, 0), "one reference per filled bvec");
        let first: Vec<Pfn> = bv.iter().map(|b| b.page).collect();
        let (n, bytes) = sys.iov_iter_fill_bvecs(&mut i, &mut bv, u64::MAX).unwrap();
        assert_eq!((n, bytes), (2, 2 * p), "{prof}");
        assert_eq!((bv[0].page, bv[1].page), (pf[4], pf[5]));
        assert_eq!((i.count, i.idx, i.nr_segs), (0, 1, 0));
        assert_eq!(refcounts(&sys, &pf), plus(&base, &[1; 6]));
        for pfn in first.into_iter().chain([bv[0].page, bv[1].page]) {
            sys.m.put_page(pfn).unwrap();
        }
        assert_eq!(refcounts(&sys, &pf), base);
        assert_eq!(sys.m.held_total(), (0, 0));
        // An empty iterator fills nothing.
        let (n, bytes) = sys.iov_iter_fill_bvecs(&mut i, &mut bv, u64::MAX).unwrap();
        assert_eq!((n, bytes), (0, 0));
        assert_no_events(&sys);
    }
}

// ---------------------------------------------------------------------------
// 6. Queries (spec §2.5) and constructors (§2.1), hand-computed.

fn alignment_queries<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let a = VirtAddr(0x1000_0000);
        let b = VirtAddr(0x2000_0000);
        // OR of every piece's start and length.
        let i = uiter(
            &sys,
            Dir::Read,
            vec![iov(a.wrapping_add(0x10), 0x30), iov(b, 0x100)],
        );
        assert_eq!(
            sys.iov_iter_alignment(&i),
            (a.0 + 0x10) | 0x30 | b.0 | 0x100
        );
        // Only the pieces within count: the second is cut to 0x80.
        let mut i = uiter(&sys, Dir::Read, vec![iov(a, 0x100), iov(b, 0x100)]);
        i.truncate(0x180);
        assert_eq!(sys.iov_iter_alignment(&i), a.0 | 0x100 | b.0 | 0x80);
        // The first piece starts at iov_offset.
        sys.iov_iter_advance(&mut i, 0x8);
        assert_eq!(sys.iov_iter_alignment(&i), (a.0 + 8) | 0xf8 | b.0 | 0x80);
        i.truncate(0);
        assert_eq!(sys.iov_iter_alignment(&i), 0);
        // BVEC: bv_offset | bv_len.
        let bv = vec![
            BioVec {
                page: Pfn(5),
                len: 0x200,
                offset: 0x40,
            },
            BioVec {
                page: Pfn(6),
                len: (p - 8) as u32,
                offset: 8,
            },
        ];
        let i = IovIter::bvec(Dir::Write, bv, 0x200 + p - 8);
        assert_eq!(sys.iov_iter_alignment(&i), 0x40 | 0x200 | 8 | (p - 8));
        assert_no_events(&sys);
    }
}

/// v4.10 gap alignment: the first piece's start contributes 0 while the
/// accumulator is 0; every piece whose length differs from the bytes left
/// (itself included) ORs those bytes in. BVEC: the budget is never
/// decremented, so each piece shorter than `count` ORs `count`, and the
/// address is `bv_offset`.
///
/// The emulator applies these v4.10 rules in every profile. In 6.13 the
/// function is IOVEC-only (other kinds WARN and give ~0U, UBUF gives 0), ORs
/// each segment's start with the previous segment's end and ignores
/// `iov_offset`; that is not modelled, so only v4.10 is checked here.
fn gap_alignment_v4_10<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let (a, b, c) = (0x1000_0000u64, 0x2000_0010u64, 0x3000_0100u64);
    let i = uiter(
        &sys,
        Dir::Read,
        vec![
            iov(VirtAddr(a), 0x100),
            iov(VirtAddr(b), 0x200),
            iov(VirtAddr(c), 0x50),
        ],
    );
    // Piece 1: rem 0x350 ≠ 0x100 → 0x350. Piece 2: | b, rem 0x250 ≠ 0x200 →
    // | 0x250. Piece 3: | c, rem 0x50 == 0x50 → nothing.
    assert_eq!(sys.iov_iter_gap_alignment(&i), 0x350 | b | 0x250 | c);
    // A single piece gives 0, whatever its address.
    let i = uiter(&sys, Dir::Read, vec![iov(VirtAddr(b + 3), 0x123)]);
    assert_eq!(sys.iov_iter_gap_alignment(&i), 0);
    // A first piece equal to the whole count leaves the accumulator at 0, so
    // the next piece's start is not ORed either.
    let mut i = uiter(
        &sys,
        Dir::Read,
        vec![iov(VirtAddr(a), 0x100), iov(VirtAddr(b), 0x200)],
    );
    i.truncate(0x100);
    assert_eq!(sys.iov_iter_gap_alignment(&i), 0);
    // Zero-length segments are skipped.
    let i = uiter(
        &sys,
        Dir::Read,
        vec![
            iov(VirtAddr(a), 0x100),
            iov(VirtAddr(0x5), 0),
            iov(VirtAddr(c), 0x50),
        ],
    );
    assert_eq!(sys.iov_iter_gap_alignment(&i), 0x150 | c);
    // BVEC quirk: count 0x500 ORed for both pieces, bv_offset for the second.
    let bv = vec![
        BioVec {
            page: Pfn(5),
            len: 0x200,
            offset: 0x100,
        },
        BioVec {
            page: Pfn(6),
            len: 0x300,
            offset: 0x40,
        },
    ];
    let i = IovIter::bvec(Dir::Write, bv.clone(), 0x500);
    assert_eq!(sys.iov_iter_gap_alignment(&i), 0x500 | 0x40);
    // The same shape as an iovec would give 0x500 | start2 (0x300 == rem).
    let k = IovIter::kvec(
        Dir::Write,
        vec![iov(VirtAddr(0x100), 0x200), iov(VirtAddr(0x40), 0x300)],
        0x500,
    );
    assert_eq!(sys.iov_iter_gap_alignment(&k), 0x500 | 0x40);
    // Where they differ: a last bvec piece shorter than count still ORs count.
    let bv3 = vec![
        bv[0],
        bv[1],
        BioVec {
            page: Pfn(7),
            len: 0x10,
            offset: 0,
        },
    ];
    let i = IovIter::bvec(Dir::Write, bv3, 0x510);
    assert_eq!(sys.iov_iter_gap_alignment(&i), 0x510 | 0x40);
    let k = IovIter::kvec(
        Dir::Write,
        vec![
            iov(VirtAddr(0x100), 0x200),
            iov(VirtAddr(0x40), 0x300),
            iov(VirtAddr(0x1000), 0x10),
        ],
        0x510,
    );
    assert_eq!(
        sys.iov_iter_gap_alignment(&k),
        0x510 | 0x40 | 0x310 | 0x1000
    );
    assert_no_events(&sys);
}

fn npages_and_single_seg_count<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let a = VirtAddr(0x1000_0000);
        let b = VirtAddr(0x2000_0000);
        // [a + 0x10 : 2·PAGE] spans 3 pages; [b + PAGE − 8 : 0x10] spans 2.
        let segs = vec![
            iov(a.wrapping_add(0x10), 2 * p),
            iov(b.wrapping_add(p - 8), 0x10),
        ];
        let mut i = uiter(&sys, Dir::Read, segs.clone());
        assert_eq!(sys.iov_iter_npages(&i, 100), 5);
        assert_eq!(sys.iov_iter_npages(&i, 3), 3);
        assert_eq!(sys.iov_iter_npages(&i, 2), 2);
        i.truncate(2 * p);
        assert_eq!(sys.iov_iter_npages(&i, 100), 3);
        i.truncate(0);
        assert_eq!(sys.iov_iter_npages(&i, 100), 0);
        // KVEC: the same arithmetic.
        let k = IovIter::kvec(Dir::Read, segs.clone(), 2 * p + 0x10);
        assert_eq!(sys.iov_iter_npages(&k, 100), 5);
        // BVEC: one per piece.
        let bv = vec![
            BioVec {
                page: Pfn(5),
                len: 0x10,
                offset: (p - 0x10) as u32,
            },
            BioVec {
                page: Pfn(6),
                len: 0x10,
                offset: 0,
            },
        ];
        let bi = IovIter::bvec(Dir::Read, bv.clone(), 0x20);
        assert_eq!(sys.iov_iter_npages(&bi, 100), 2);
        assert_eq!(sys.iov_iter_npages(&bi, 1), 1);
        if prof == "v6.13" {
            // 6.x bvecs may span pages; bvec_npages counts the pages spanned.
            let mut bv = bv;
            bv[0].offset = (p - 8) as u32;
            let bi = IovIter::bvec(Dir::Read, bv, 0x20);
            assert_eq!(sys.iov_iter_npages(&bi, 100), 3);
        }

        // single_seg_count: min(count, current segment length − offset).
        let mut i = uiter(&sys, Dir::Read, vec![iov(a, 0x100), iov(b, 0x200)]);
        assert_eq!(sys.iov_iter_single_seg_count(&i), 0x100);
        sys.iov_iter_advance(&mut i, 0x80);
        assert_eq!(sys.iov_iter_single_seg_count(&i), 0x80);
        i.truncate(0x50);
        assert_eq!(sys.iov_iter_single_seg_count(&i), 0x50);
        // One segment left: count.
        let mut i = uiter(&sys, Dir::Read, vec![iov(a, 0x100), iov(b, 0x200)]);
        sys.iov_iter_advance(&mut i, 0x100);
        assert_eq!(i.nr_segs, 1);
        assert_eq!(sys.iov_iter_single_seg_count(&i), 0x200);
        // A zero-length current segment gives 0.
        let i = uiter(&sys, Dir::Read, vec![iov(a, 0), iov(b, 0x200)]);
        assert_eq!(sys.iov_iter_single_seg_count(&i), 0);
        // BVEC uses bv_len.
        let bv = vec![
            BioVec {
                page: Pfn(5),
                len: 0x30,
                offset: 0x10,
            },
            BioVec {
                page: Pfn(6),
                len: 0x40,
                offset: 0,
            },
        ];
        let mut bi = IovIter::bvec(Dir::Read, bv, 0x70);
        assert_eq!(sys.iov_iter_single_seg_count(&bi), 0x30);
        sys.iov_iter_advance(&mut bi, 0x20);
        assert_eq!(sys.iov_iter_single_seg_count(&bi), 0x10);
        assert_no_events(&sys);
    }
}

/// `import_iovec` (rw_copy_check_uvector): more than UIO_MAXIOV segments or a
/// negative length → EINVAL; a kernel address under USER_DS → EFAULT; the
/// total is clipped at MAX_RW_COUNT by shortening the segment that crosses it.
fn import_iovec_rules<A: Arch>() {
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let u = VirtAddr(0x1000_0000);
        let many = vec![iov(u, 1); UIO_MAXIOV + 1];
        assert_eq!(
            IovIter::import_iovec(&sys.m, Dir::Read, many).map(|_| ()),
            Err(Errno::EINVAL)
        );
        let max = vec![iov(u, 1); UIO_MAXIOV];
        let i = IovIter::import_iovec(&sys.m, Dir::Read, max).unwrap();
        assert_eq!((i.count, i.nr_segs), (UIO_MAXIOV as u64, UIO_MAXIOV));
        // A length that is negative as ssize_t.
        let neg = vec![iov(u, 0x10), iov(u, (-1i64) as u64)];
        assert_eq!(
            IovIter::import_iovec(&sys.m, Dir::Read, neg).map(|_| ()),
            Err(Errno::EINVAL)
        );
        let neg = vec![iov(u, 0x10), iov(u, 1 << 63)];
        assert_eq!(
            IovIter::import_iovec(&sys.m, Dir::Read, neg).map(|_| ()),
            Err(Errno::EINVAL)
        );
        // A kernel address under USER_DS.
        let kp = sys.m.alloc_kernel_pages("k", 1).unwrap();
        let kva = sys.m.page_address(kp[0]);
        let kern = vec![iov(u, 0x10), iov(kva, 0x10)];
        assert_eq!(
            IovIter::import_iovec(&sys.m, Dir::Write, kern).map(|_| ()),
            Err(Errno::EFAULT)
        );
        // Clipping: 0x7000_0000 + 0x7000_0000 → the second is cut to
        // MAX_RW_COUNT − 0x7000_0000, a third becomes empty.
        let big = vec![iov(u, 0x7000_0000), iov(u, 0x7000_0000), iov(u, 0x1000)];
        let i = IovIter::import_iovec(&sys.m, Dir::Read, big).unwrap();
        assert_eq!(i.count, MAX_RW_COUNT);
        assert_eq!(
            i.iov.iter().map(|s| s.len).collect::<Vec<_>>(),
            vec![0x7000_0000, MAX_RW_COUNT - 0x7000_0000, 0]
        );
        assert_eq!(i.ty, IterType::Iovec);
        // No segments: an empty iterator.
        let i = IovIter::import_iovec(&sys.m, Dir::Read, Vec::new()).unwrap();
        assert_eq!((i.count, i.nr_segs), (0, 0));
        assert_no_events(&sys);
    }
}

/// `iov_iter_init` under KERNEL_DS silently makes a KVEC in v4.10; 6.13 has
/// no set_fs and makes an IOVEC.
fn init_under_kernel_ds<A: Arch>() {
    for (prof, want) in [("v4.10", IterType::Kvec), ("v6.13", IterType::Iovec)] {
        let mut sys = boot::<A>(prof);
        let v = vec![iov(VirtAddr(0x1000_0000), 0x10)];
        assert_eq!(
            IovIter::init(&sys.m, Dir::Read, v.clone(), 0x10).ty,
            IterType::Iovec
        );
        let old = sys.m.set_fs(true);
        let i = IovIter::init(&sys.m, Dir::Read, v.clone(), 0x10);
        assert_eq!(i.ty, want, "{prof}");
        // import_iovec goes through iov_iter_init too, except that 6.13's
        // __import_iovec turns a single segment into an ITER_UBUF
        // (__import_iovec_ubuf, lib/iov_iter.c of 6.13).
        let i = IovIter::import_iovec(&sys.m, Dir::Read, v.clone()).unwrap();
        let want_single = if prof == "v6.13" {
            IterType::Ubuf
        } else {
            want
        };
        assert_eq!(i.ty, want_single, "{prof}");
        let two = vec![
            iov(VirtAddr(0x1000_0000), 0x10),
            iov(VirtAddr(0x1000_1000), 0x10),
        ];
        let i = IovIter::import_iovec(&sys.m, Dir::Read, two).unwrap();
        assert_eq!(i.ty, want, "{prof}: two segments");
        sys.m.restore_fs(old);
        assert_eq!(
            IovIter::init(&sys.m, Dir::Read, v, 0x10).ty,
            IterType::Iovec
        );
    }
}

/// `copy_from_iter_full`: count < n → false with nothing consumed or written;
/// a fault → false, the destination partly written, the iterator not
/// advanced; success → true and advanced by n.
fn copy_from_iter_full_semantics<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let buf = map_filled(&mut sys, 2, "buf");
        // Page 1 becomes unreadable.
        let mm = sys.m.current_mm();
        sys.m
            .mprotect(mm, buf.wrapping_add(p), p, Prot::NONE)
            .unwrap();
        let segs = vec![
            iov(buf.wrapping_add(p - 0x20), 0x10),
            iov(buf.wrapping_add(p - 0x10), 0x20),
        ];
        let mut i = uiter(&sys, Dir::Write, segs);
        let before = i.clone();
        // count < n.
        let mut dst = vec![0xa5u8; 0x31];
        assert!(!sys.copy_from_iter_full(&mut dst, &mut i));
        assert_eq!(i, before);
        assert!(dst.iter().all(|&x| x == 0xa5), "nothing written");
        // A fault after 0x20 bytes.
        let mut dst = vec![0xa5u8; 0x30];
        assert!(!sys.copy_from_iter_full(&mut dst, &mut i));
        assert_eq!(i, before, "not advanced on a fault");
        let want: Vec<u8> = (p - 0x20..p).map(pattern).collect();
        assert_eq!(
            &dst[..0x20],
            &want[..],
            "the bytes before the fault were copied"
        );
        // Within the readable part it succeeds and advances.
        let mut dst = vec![0u8; 0x18];
        assert!(sys.copy_from_iter_full(&mut dst, &mut i));
        assert_eq!(&dst[..], &want[..0x18]);
        assert_eq!((i.count, i.idx, i.iov_offset), (0x18, 1, 8));
        // copy_from_iter (not _full) consumes the readable part and stops.
        let mut dst = vec![0u8; 0x18];
        assert_eq!(sys.copy_from_iter(&mut dst, &mut i), 8);
        assert_eq!((i.count, i.idx, i.iov_offset), (0x10, 1, 0x10));
        assert_no_events(&sys);
    }
}

/// 6.x page gathering (§3.2): `iov_iter_get_pages2` takes references and
/// advances; `iov_iter_extract_pages` pins user pages (FOLL_PIN, released by
/// unpinning) and takes nothing for KVEC and BVEC.
fn modern_get_pages<A: Arch>() {
    let p = A::PAGE_SIZE;
    let mut sys = boot::<A>("v6.13");
    let buf = map_filled(&mut sys, 3, "buf");
    let pf = upfns(&sys, buf, 3);
    let base = refcounts(&sys, &pf);
    let segs = vec![iov(buf.wrapping_add(0x10), 2 * p), iov(buf, 0x10)];

    let mut i = uiter(&sys, Dir::Read, segs.clone());
    let g = sys.iov_iter_get_pages2(&mut i, u64::MAX, 8).unwrap();
    assert_eq!(
        (g.bytes, g.start, g.pages.clone(), g.pinned),
        (2 * p, 0x10, pf.clone(), false)
    );
    assert_eq!((i.count, i.idx, i.iov_offset, i.nr_segs), (0x10, 1, 0, 1));
    assert_eq!(sys.m.held_total(), (3, 0));
    assert_eq!(refcounts(&sys, &pf), plus(&base, &[1, 1, 1]));
    sys.release_pages(&g, true);
    assert_eq!(refcounts(&sys, &pf), base);

    let mut i = uiter(&sys, Dir::Read, segs);
    let g = sys.iov_iter_extract_pages(&mut i, u64::MAX, 2).unwrap();
    assert_eq!(
        (g.bytes, g.start, g.pages.clone(), g.pinned),
        (2 * p - 0x10, 0x10, pf[..2].to_vec(), true)
    );
    assert_eq!((i.count, i.iov_offset), (0x20, 2 * p - 0x10));
    assert_eq!(sys.m.held_total(), (0, 2), "two pins, no references");
    for k in 0..2 {
        assert!(refcount(&sys, pf[k]) > base[k], "a pin raises the refcount");
    }
    sys.release_pages(&g, true);
    assert_eq!(refcounts(&sys, &pf), base);
    assert_eq!(sys.m.held_total(), (0, 0));

    // KVEC and BVEC: pages looked up, no reference, no pin; still advances.
    let kp = sys.m.alloc_kernel_pages("kbuf", 2).unwrap();
    let kbase = refcounts(&sys, &kp);
    let kva = sys.m.vmap(&kp).unwrap();
    let mut k = IovIter::kvec(Dir::Read, vec![iov(kva.wrapping_add(0x10), p)], p);
    let g = sys.iov_iter_extract_pages(&mut k, u64::MAX, 4).unwrap();
    assert_eq!(
        (g.bytes, g.start, g.pages.clone(), g.pinned),
        (p, 0x10, kp.clone(), false)
    );
    assert_eq!(k.count, 0);
    let bv = vec![
        BioVec {
            page: kp[0],
            len: (p - 0x10) as u32,
            offset: 0x10,
        },
        BioVec {
            page: kp[1],
            len: p as u32,
            offset: 0,
        },
    ];
    let mut b = IovIter::bvec(Dir::Read, bv, 2 * p - 0x10);
    let g = sys.iov_iter_extract_pages(&mut b, u64::MAX, 4).unwrap();
    assert_eq!(
        (g.bytes, g.start, g.pages.clone(), g.pinned),
        (2 * p - 0x10, 0x10, kp.clone(), false)
    );
    assert_eq!(b.count, 0);
    assert_eq!(refcounts(&sys, &kp), kbase);
    assert_eq!(sys.m.held_total(), (0, 0));
    assert_no_events(&sys);
}

// ---------------------------------------------------------------------------
// 4. Al Viro's iov_iter_for_each_page.

/// KVEC: every page of kernel memory is looked up (no reference) and handed
/// to the callback; an early stop advances by what was handed out.
fn for_each_page_kvec<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let kp = sys.m.alloc_kernel_pages("kbuf", 3).unwrap();
        let base = refcounts(&sys, &kp);
        let kva = sys.m.vmap(&kp).unwrap();
        let segs = vec![
            iov(kva.wrapping_add(p - 0x10), 0x20),
            iov(kva, 0),
            iov(kva.wrapping_add(0x40), 2 * p),
        ];
        let n = total(&segs);
        let want = [
            (kp[0], p - 0x10, 0x10),
            (kp[1], 0, 0x10),
            (kp[0], 0x40, p - 0x40),
            (kp[1], 0, p),
            (kp[2], 0, 0x40),
        ];
        for stop in [usize::MAX, 1, 3] {
            let mut i = IovIter::kvec(Dir::Read, segs.clone(), n);
            let mut got = Vec::new();
            let r = sys.iov_iter_for_each_page(&mut i, u64::MAX, 2, &mut |s, pg, from, len| {
                got.push((pg, from, len));
                assert_eq!(s.m.held_total(), (0, 0));
                got.len() < stop
            });
            let k = stop.min(want.len());
            assert_eq!(got, want[..k].to_vec(), "{prof} stop {stop}");
            let bytes: u64 = want[..k].iter().map(|t| t.2).sum();
            assert_eq!(r, Ok(bytes));
            assert_eq!(i.count, n - bytes);
            assert_eq!(refcounts(&sys, &kp), base);
        }
        assert_no_events(&sys);
    }
}

/// PIPE (v4.9 .. v6.4): `iov_iter_get_pages` on a pipe iterator allocates
/// pipe buffers (`push_pipe`), so the callback sees the pipe's new pages in
/// ring order, whole pages but the last. An early stop drops the references
/// of the pages not handed out, and the advance by the bytes handed out
/// truncates the pipe after them (their buffers are released and freed).
fn for_each_page_pipe<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v4.17"] {
        for stop in [usize::MAX, 1, 3] {
            let mut sys = boot::<A>(prof);
            let id = sys.pipe_create();
            let mut i = sys.iov_iter_pipe(id).unwrap();
            let size = 3 * p + 0x100;
            let mut got = Vec::new();
            let r = sys.iov_iter_for_each_page(&mut i, size, 2, &mut |_, pg, from, len| {
                got.push((pg, from, len));
                got.len() < stop
            });
            let bufs: Vec<(Pfn, u64, u64)> = sys.pipes[id]
                .occupied_bufs()
                .iter()
                .map(|b| (b.page, u64::from(b.offset), u64::from(b.len)))
                .collect();
            let k = stop.min(4);
            assert_eq!(got.len(), k, "{prof} stop {stop}");
            assert_eq!(
                got, bufs,
                "{prof} stop {stop}: the pipe keeps exactly what was handed out"
            );
            let lens: Vec<u64> = got.iter().map(|t| t.2).collect();
            let want: Vec<u64> = [p, p, p, 0x100][..k].to_vec();
            assert_eq!(lens, want);
            let bytes: u64 = want.iter().sum();
            assert_eq!(r, Ok(bytes));
            assert_eq!(sys.m.held_total(), (k as u64, 0));
            for &(pg, _, _) in &got {
                // The pipe's reference and the callback's.
                assert_eq!(refcount(&sys, pg), 2);
                sys.m.put_page(pg).unwrap();
            }
            assert_eq!(sys.m.held_total(), (0, 0));
            sys.free_pipe_info(id);
            for &(pg, _, _) in &got {
                assert_eq!(refcount(&sys, pg), 0, "freed with the pipe");
            }
            assert_no_events(&sys);
        }
    }
    // 6.13 has no ITER_PIPE.
    let mut sys = boot::<A>("v6.13");
    let id = sys.pipe_create();
    assert!(sys.iov_iter_pipe(id).is_err());
}

/// v4.10 `iov_iter_get_pages` with maxpages 0 (not guarded for IOVEC): the
/// length is clipped to 0 and gup is asked for 0 pages (a zero-length
/// gup-fast walk, modelled as 0 pages); the result is then
/// (0 − *start*) as ssize_t: 0 for an aligned piece, −start otherwise, which
/// a caller reads as an errno (−16 = −EBUSY for *start* 0x10).
fn get_pages_maxpages_zero<A: Arch>() {
    let mut sys = boot::<A>("v4.10");
    let buf = map_filled(&mut sys, 1, "buf");
    let i = uiter(&sys, Dir::Read, vec![iov(buf, 0x100)]);
    let g = sys.iov_iter_get_pages(&i, u64::MAX, 0).unwrap();
    assert_eq!((g.bytes, g.pages.len()), (0, 0));
    let i = uiter(&sys, Dir::Read, vec![iov(buf.wrapping_add(0x10), 0x100)]);
    assert_eq!(sys.iov_iter_get_pages(&i, u64::MAX, 0), Err(Errno(0x10)));
    assert_eq!(sys.m.held_total(), (0, 0));
    assert!(
        sys.m
            .events
            .iter()
            .all(|e| e.kind == EventKind::ZeroLengthWalk),
        "{:?}",
        sys.m.events
    );
    assert!(!sys.m.events.is_empty(), "gup-fast walked zero pages");
}

/// 6.13 `iov_iter_get_pages2` on an empty current bvec: the first element is
/// used as is (no skipping), its size is 0, `want_pages_array` gets 0 pages
/// and the call fails with −ENOMEM, taking nothing.
fn get_pages2_empty_bvec<A: Arch>() {
    let p = A::PAGE_SIZE;
    let mut sys = boot::<A>("v6.13");
    let kp = sys.m.alloc_kernel_pages("kbuf", 1).unwrap();
    let bv = vec![
        BioVec {
            page: kp[0],
            len: 0,
            offset: 0,
        },
        BioVec {
            page: kp[0],
            len: p as u32,
            offset: 0,
        },
    ];
    let mut b = IovIter::bvec(Dir::Read, bv, p);
    let before = b.clone();
    assert_eq!(
        sys.iov_iter_get_pages2(&mut b, u64::MAX, 4),
        Err(Errno::ENOMEM)
    );
    assert_eq!(b, before);
    assert_eq!(sys.m.held_total(), (0, 0));
    // Extraction steps over it (6.13.7) and returns the page.
    let g = sys.iov_iter_extract_pages(&mut b, u64::MAX, 4).unwrap();
    assert_eq!((g.bytes, g.pages.clone()), (p, kp.clone()));
    assert_no_events(&sys);
}

/// `iov_iter_fault_in_readable` touches every page of each piece (a piece
/// longer than 1 MiB included), stops at the first failure, and does not
/// clip its byte count to `count`.
fn fault_in_readable_long_piece<A: Arch>() {
    let p = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        let mut sys = boot::<A>(prof);
        let pages = (2 << 20) / p + 2;
        let buf = map(&mut sys, pages, "big");
        let mm = sys.m.current_mm();
        let hole = buf.wrapping_add((pages - 1) * p);
        sys.m.munmap(mm, hole, p).unwrap();
        let len = (pages - 1) * p;
        let i = uiter(&sys, Dir::Write, vec![iov(buf, len)]);
        assert_eq!(sys.iov_iter_fault_in_readable(&i, len), 0, "{prof}");
        let i = uiter(&sys, Dir::Write, vec![iov(buf, len + 1)]);
        assert_eq!(
            sys.iov_iter_fault_in_readable(&i, len + 1),
            Errno::EFAULT.to_ret(),
            "{prof}"
        );
        // Not clipped to count: asking past count walks into the next segment.
        let mut i = uiter(&sys, Dir::Write, vec![iov(buf, 0x10), iov(hole, 0x10)]);
        i.truncate(0x10);
        assert_eq!(sys.iov_iter_fault_in_readable(&i, 0x10), 0);
        assert_eq!(
            sys.iov_iter_fault_in_readable(&i, 0x11),
            Errno::EFAULT.to_ret()
        );
        assert_no_events(&sys);
    }
}

// ---------------------------------------------------------------------------
// 3. Property tests against reference models.

/// Pages in the user region of the copy properties.
const NP: u64 = 6;

/// What a page of the region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PState {
    /// Read/write, faulted in and filled with the pattern.
    Rw,
    /// Read/write, never touched (a copy faults it in).
    Fresh,
    /// Read-only (filled, then mprotect PROT_READ).
    Ro,
    /// PROT_NONE (filled, then mprotect).
    NoAccess,
    /// A hole (munmap).
    Unmapped,
}

impl PState {
    fn writable(self) -> bool {
        matches!(self, PState::Rw | PState::Fresh)
    }
    fn readable(self) -> bool {
        matches!(self, PState::Rw | PState::Fresh | PState::Ro)
    }
}

fn pstate() -> impl Strategy<Value = PState> {
    prop_oneof![
        8 => Just(PState::Rw),
        3 => Just(PState::Fresh),
        1 => Just(PState::Ro),
        1 => Just(PState::NoAccess),
        1 => Just(PState::Unmapped),
    ]
}

/// A segment (start offset in a region of `pages` pages, length): starts near
/// page boundaries more often than not, lengths from 0 to 2.5 pages.
fn seg(ps: u64, pages: u64) -> impl Strategy<Value = (u64, u64)> {
    let start = (0..pages, prop_oneof![0..64u64, ps - 64..ps, 0..ps])
        .prop_map(move |(pg, off)| pg * ps + off);
    let len = prop_oneof![1 => Just(0u64), 2 => 1..64u64, 3 => 1..=(5 * ps / 2)];
    (start, len).prop_map(move |(s, l)| (s, l.min(pages * ps - s)))
}

/// The user region: its mapping, page states and the bytes it should hold.
struct Region {
    base: VirtAddr,
    states: Vec<PState>,
    image: Vec<u8>,
}

fn setup_region<A: Arch>(sys: &mut Sys<A>, states: &[PState]) -> Region {
    let ps = A::PAGE_SIZE;
    let base = map(sys, NP, "u");
    let mut image = vec![0u8; (NP * ps) as usize];
    let mm = sys.m.current_mm();
    for (k, &st) in states.iter().enumerate() {
        let off = k as u64 * ps;
        if matches!(st, PState::Rw | PState::Ro | PState::NoAccess) {
            let bytes: Vec<u8> = (off..off + ps).map(pattern).collect();
            assert_eq!(sys.m.copy_to_user(base.wrapping_add(off), &bytes), 0);
            image[off as usize..(off + ps) as usize].copy_from_slice(&bytes);
        }
    }
    for (k, &st) in states.iter().enumerate() {
        let va = base.wrapping_add(k as u64 * ps);
        match st {
            PState::Ro => sys.m.mprotect(mm, va, ps, Prot::R).unwrap(),
            PState::NoAccess => sys.m.mprotect(mm, va, ps, Prot::NONE).unwrap(),
            PState::Unmapped => sys.m.munmap(mm, va, ps).unwrap(),
            _ => {}
        }
    }
    Region {
        base,
        states: states.to_vec(),
        image,
    }
}

/// Result of the reference walk of one advancing copy.
#[derive(Debug)]
struct ModelWalk {
    /// Bytes processed.
    done: u64,
    /// Final segment index and offset.
    idx: usize,
    off: u64,
    /// (region offset, buffer offset, length) of every byte run copied.
    runs: Vec<(u64, u64, u64)>,
    /// The faulting piece: (buffer offset of its start, its length).
    fault: Option<(u64, u64)>,
}

/// The reference model of `iterate_and_advance` for a user iovec (spec §2.2,
/// §2.3): pieces are min(budget left, segment left); empty segments are
/// skipped; a piece copies up to its first byte on a page `ok` rejects and
/// the walk stops there, pointing into that segment; a walk ending exactly at
/// a segment's end steps to the next segment (one step only).
fn model_walk(
    segs: &[(u64, u64)],
    idx0: usize,
    off0: u64,
    budget: u64,
    ps: u64,
    ok: &dyn Fn(u64) -> bool,
) -> ModelWalk {
    let (mut idx, mut off, mut done) = (idx0, off0, 0u64);
    let mut runs = Vec::new();
    let mut fault = None;
    while done < budget && idx < segs.len() {
        let (s, l) = segs[idx];
        if off >= l {
            idx += 1;
            off = 0;
            continue;
        }
        let piece = (l - off).min(budget - done);
        let a = s + off;
        let mut k = 0;
        while k < piece && ok(a + k) {
            k += (ps - (a + k) % ps).min(piece - k);
        }
        if k > 0 {
            runs.push((a, done, k));
        }
        if k < piece {
            fault = Some((done, piece));
            done += k;
            off += k;
            break;
        }
        done += k;
        off += k;
        if off == l {
            idx += 1;
            off = 0;
        }
    }
    ModelWalk {
        done,
        idx,
        off,
        runs,
        fault,
    }
}

/// The random input of one copy case.
#[derive(Clone, Debug)]
struct CopyCase {
    states: Vec<PState>,
    segs: Vec<(u64, u64)>,
    /// Bytes cut off the total to get `count` (clipped).
    cut: u64,
    /// Bytes advanced before the copy (clipped to count / 2).
    pre: u64,
    /// Bytes asked for beyond (or short of) the count.
    extra: i64,
    salt: u8,
}

fn copy_case(ps: u64) -> impl Strategy<Value = CopyCase> {
    (
        prop::collection::vec(pstate(), NP as usize),
        prop::collection::vec(seg(ps, NP), 0..7),
        prop_oneof![3 => Just(0u64), 1 => 0..2 * ps],
        prop_oneof![2 => Just(0u64), 1 => 0..2 * ps],
        prop_oneof![2 => Just(0i64), 1 => -64i64..64, 1 => -(2 * ps as i64)..0],
        any::<u8>(),
    )
        .prop_map(|(states, segs, cut, pre, extra, salt)| CopyCase {
            states,
            segs,
            cut,
            pre,
            extra,
            salt,
        })
}

/// Builds the iterator of a copy case, advanced by `pre`; returns it with the
/// byte count to ask for (≥ 1 when anything is left: a 0-byte copy is left
/// out, see `prop_copy_to_iter`).
fn copy_iter<A: Arch>(sys: &mut Sys<A>, r: &Region, c: &CopyCase, dir: Dir) -> (IovIter, u64) {
    let v: Vec<Iovec> = c
        .segs
        .iter()
        .map(|&(s, l)| iov(r.base.wrapping_add(s), l))
        .collect();
    let count = total(&v).saturating_sub(c.cut);
    let mut i = IovIter::init(&sys.m, dir, v, count);
    sys.iov_iter_advance(&mut i, c.pre.min(count / 2));
    let n = (i.count as i64 + c.extra).max(1) as u64;
    (i, n)
}

/// Reads the region back and compares it with the image (pages that are not
/// present must be all zero in the image; holes are skipped).
fn check_region<A: Arch>(sys: &Sys<A>, r: &Region) -> TestCaseResult {
    let ps = A::PAGE_SIZE;
    let mm = sys.m.current_mm();
    for (k, &st) in r.states.iter().enumerate() {
        let off = k as u64 * ps;
        let want = &r.image[off as usize..(off + ps) as usize];
        if st == PState::Unmapped {
            continue;
        }
        match sys.m.user_pa(mm, r.base.wrapping_add(off)) {
            Some(pa) => {
                let mut got = vec![0u8; ps as usize];
                sys.m.phys.read(pa, &mut got).unwrap();
                prop_assert!(got == want, "page {} ({:?}) differs from the model", k, st);
            }
            None => prop_assert!(
                st == PState::NoAccess || want.iter().all(|&b| b == 0),
                "page {} ({:?}) not present but the model wrote it",
                k,
                st
            ),
        }
    }
    Ok(())
}

/// `copy_to_iter` over random user layouts (holes, PROT_NONE and read-only
/// pages, untouched pages, empty and page-crossing segments): returns exactly
/// the bytes before the first byte the user cannot write, the bytes land where
/// the flat model says, and count / idx / iov_offset / nr_segs follow the
/// model. A 0-byte copy is not generated: v4.x `iterate_and_advance` runs its
/// walk whenever `count` ≠ 0 and so steps over a zero-length current segment
/// even for 0 bytes, while 6.13 returns at once; the emulator returns at once
/// in every profile.
fn prop_copy_to_iter<A: Arch>() {
    let ps = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        runner(96)
            .run(&copy_case(ps), |c| {
                let mut sys = boot::<A>(prof);
                let mut r = setup_region(&mut sys, &c.states);
                let (mut i, n) = copy_iter(&mut sys, &r, &c, Dir::Read);
                let (idx0, off0, count0, nr0) = (i.idx, i.iov_offset, i.count, i.nr_segs);
                let src: Vec<u8> = (0..n)
                    .map(|k| (k as u8).wrapping_mul(13).wrapping_add(c.salt))
                    .collect();
                let got = sys.copy_to_iter(&src, &mut i);
                let states = c.states.clone();
                let w = model_walk(&c.segs, idx0, off0, n.min(count0), ps, &|x| {
                    states[(x / ps) as usize].writable()
                });
                prop_assert_eq!(got, w.done, "{}: {:?}", prof, w);
                prop_assert_eq!(
                    (i.count, i.idx, i.iov_offset, i.nr_segs),
                    (count0 - w.done, w.idx, w.off, nr0 - (w.idx - idx0)),
                    "{}: {:?}",
                    prof,
                    w
                );
                for &(ro, bo, l) in &w.runs {
                    r.image[ro as usize..(ro + l) as usize]
                        .copy_from_slice(&src[bo as usize..(bo + l) as usize]);
                }
                check_region(&sys, &r)?;
                prop_assert_eq!(sys.m.held_total(), (0, 0));
                Ok(())
            })
            .unwrap();
    }
}

/// `copy_from_iter`, the mirror image: bytes up to the first unreadable one,
/// in order; the rest of the faulting piece is zeroed (v4.10: x86
/// `copy_user_handle_tail` clears the kernel destination's tail of each
/// `__copy_from_user` call; the emulator zeroes it in every profile, while
/// 6.13's `raw_copy_from_user` leaves it unspecified, so it is only checked
/// under v4.10); the destination beyond that piece is untouched.
fn prop_copy_from_iter<A: Arch>() {
    let ps = A::PAGE_SIZE;
    for prof in ["v4.10", "v6.13"] {
        runner(96)
            .run(&copy_case(ps), |c| {
                let mut sys = boot::<A>(prof);
                let r = setup_region(&mut sys, &c.states);
                let (mut i, n) = copy_iter(&mut sys, &r, &c, Dir::Write);
                let (idx0, off0, count0, nr0) = (i.idx, i.iov_offset, i.count, i.nr_segs);
                let mut dst = vec![0xa5u8; n as usize];
                let got = sys.copy_from_iter(&mut dst, &mut i);
                let states = c.states.clone();
                let w = model_walk(&c.segs, idx0, off0, n.min(count0), ps, &|x| {
                    states[(x / ps) as usize].readable()
                });
                prop_assert_eq!(got, w.done, "{}: {:?}", prof, w);
                prop_assert_eq!(
                    (i.count, i.idx, i.iov_offset, i.nr_segs),
                    (count0 - w.done, w.idx, w.off, nr0 - (w.idx - idx0)),
                    "{}: {:?}",
                    prof,
                    w
                );
                let mut want = vec![0xa5u8; n as usize];
                for &(ro, bo, l) in &w.runs {
                    want[bo as usize..(bo + l) as usize]
                        .copy_from_slice(&r.image[ro as usize..(ro + l) as usize]);
                }
                let mut skip = None;
                if let Some((ps0, pl)) = w.fault {
                    let range = w.done as usize..(ps0 + pl) as usize;
                    if prof == "v4.10" {
                        want[range].fill(0);
                    } else {
                        skip = Some(range);
                    }
                }
                for (k, (&g, &e)) in dst.iter().zip(&want).enumerate() {
                    if skip.as_ref().is_some_and(|s| s.contains(&k)) {
                        continue;
                    }
                    prop_assert_eq!(g, e, "{}: dst[{:#x}] ({:?})", prof, k, w);
                }
                check_region(&sys, &r)?;
                Ok(())
            })
            .unwrap();
    }
}

/// Which iterator kind a property case builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Iovec,
    Kvec,
    Bvec,
}

/// `iov_iter_advance(n)` then `iov_iter_revert(n)` (4.11+) restores the
/// iterator, for IOVEC, KVEC and BVEC, from any reachable position.
///
/// One exception, from the kernel's rules: a position on a zero-length
/// segment (reachable: a walk that ends at a segment's end steps onto the
/// next one, empty or not) comes back as the same byte position on the next
/// non-empty segment, because revert stops at the first segment the
/// remainder fits in (`unroll <= len`) walking backwards. There only `count`
/// and the remaining pieces are compared.
///
/// v4.17 bvecs are single-page and non-empty (a zero-length bvec hangs the
/// 4.x walker, CVE-2020-25641); v6.13 bvecs may be empty or span pages.
fn prop_advance_revert<A: Arch>() {
    let ps = A::PAGE_SIZE;
    let lens = prop::collection::vec(
        (
            prop_oneof![1 => Just(0u64), 2 => 1..64u64, 2 => 1..=3 * ps],
            0..ps,
        ),
        0..8,
    );
    // A position: at a segment boundary ± 1 byte, or anywhere.
    let at = || (any::<bool>(), 0..9usize, -1i64..=1, 0..4 * ps);
    let strat = (
        prop_oneof![Just(Kind::Iovec), Just(Kind::Kvec), Just(Kind::Bvec)],
        lens,
        at(),
        at(),
        prop_oneof![Just(0u64), 0..64u64],
    );
    for prof in ["v4.17", "v6.13"] {
        runner(192)
            .run(&strat, |(kind, lens, pre, n, cut)| {
                let mut sys = boot::<A>(prof);
                let modern = prof == "v6.13";
                let mut i = match kind {
                    Kind::Iovec | Kind::Kvec => {
                        let v: Vec<Iovec> = lens
                            .iter()
                            .enumerate()
                            .map(|(k, &(l, o))| iov(VirtAddr(0x1000_0000 * (k as u64 + 1) + o), l))
                            .collect();
                        let t = total(&v).saturating_sub(cut);
                        if kind == Kind::Iovec {
                            IovIter::init(&sys.m, Dir::Read, v, t)
                        } else {
                            IovIter::kvec(Dir::Read, v, t)
                        }
                    }
                    Kind::Bvec => {
                        let v: Vec<BioVec> = lens
                            .iter()
                            .enumerate()
                            .map(|(k, &(l, o))| {
                                let (len, off) = if modern {
                                    (l, o)
                                } else {
                                    (l.clamp(1, ps - o), o)
                                };
                                BioVec {
                                    page: Pfn(16 * k as u64 + 16),
                                    len: len as u32,
                                    offset: off as u32,
                                }
                            })
                            .collect();
                        let t = v
                            .iter()
                            .map(|b| u64::from(b.len))
                            .sum::<u64>()
                            .saturating_sub(cut);
                        IovIter::bvec(Dir::Read, v, t)
                    }
                };
                let mut bounds = vec![0u64];
                for k in 0..i.nr_segs {
                    let l = match kind {
                        Kind::Bvec => u64::from(i.bvec[k].len),
                        _ => i.iov.get(k).map_or(0, |s| s.len),
                    };
                    bounds.push(bounds[k] + l);
                }
                let place = |(b, j, d, raw): (bool, usize, i64, u64)| {
                    if b {
                        bounds[j % bounds.len()].saturating_add_signed(d)
                    } else {
                        raw
                    }
                };
                let pre = place(pre).min(i.count);
                sys.iov_iter_advance(&mut i, pre);
                let start = i.clone();
                let n = place(n).saturating_sub(pre).min(i.count);
                sys.iov_iter_advance(&mut i, n);
                prop_assert_eq!(i.count, start.count - n);
                sys.iov_iter_revert(&mut i, n).unwrap();
                prop_assert_eq!(i.count, start.count);
                let seg_len = match kind {
                    Kind::Bvec => start.bvec.get(start.idx).map(|b| u64::from(b.len)),
                    _ => start.iov.get(start.idx).map(|s| s.len),
                };
                if seg_len.is_some_and(|l| start.iov_offset < l) {
                    prop_assert_eq!(&i, &start, "{} {:?}", prof, kind);
                } else {
                    let a = i.pieces(&mut sys.m, i.count);
                    let b = start.pieces(&mut sys.m, start.count);
                    prop_assert_eq!(a, b, "{} {:?}", prof, kind);
                }
                prop_assert!(sys.m.events.is_empty(), "{:?}", sys.m.events);
                Ok(())
            })
            .unwrap();
    }
}

/// Page gathering plus advancing over the whole iterator visits every byte
/// once, in order: v4.10 `iov_iter_get_pages` + `iov_iter_advance`, v6.13
/// `iov_iter_get_pages2` (advancing), with random maxsize / maxpages per call,
/// over IOVEC and BVEC. The (page, offset, len) triples, merged where they
/// continue each other, equal a reference walk's; every reference is released
/// and the refcounts come back.
///
/// BVECs here are non-empty: 4.x hangs on an empty bvec, and 6.13
/// `iov_iter_get_pages2` on an empty current bvec sizes a 0-entry array and
/// fails with −ENOMEM (`want_pages_array`).
fn prop_get_pages_cover<A: Arch>() {
    let ps = A::PAGE_SIZE;
    let strat = (
        any::<bool>(),
        prop::collection::vec(seg(ps, NP), 0..7),
        prop::collection::vec((1..3 * ps, 1..5u64), 1..6),
        0..64u64,
    );
    for prof in ["v4.10", "v6.13"] {
        runner(64)
            .run(&strat, |(bvec, segs, limits, cut)| {
                let mut sys = boot::<A>(prof);
                let base = map_filled(&mut sys, NP, "u");
                let pf = upfns(&sys, base, NP);
                let rc0 = refcounts(&sys, &pf);
                let (mut i, segs) = if bvec {
                    // The same layout as bvecs over the region's frames, cut
                    // at page ends (single-page elements, as in 4.x).
                    let mut v = Vec::new();
                    let mut flat = Vec::new();
                    for &(s, l) in &segs {
                        let mut a = s;
                        let end = s + l;
                        while a < end {
                            let len = (ps - a % ps).min(end - a);
                            v.push(BioVec {
                                page: pf[(a / ps) as usize],
                                len: len as u32,
                                offset: (a % ps) as u32,
                            });
                            flat.push((a, len));
                            a += len;
                        }
                    }
                    let t = flat.iter().map(|s| s.1).sum::<u64>().saturating_sub(cut);
                    (IovIter::bvec(Dir::Read, v, t), flat)
                } else {
                    let v: Vec<Iovec> = segs
                        .iter()
                        .map(|&(s, l)| iov(base.wrapping_add(s), l))
                        .collect();
                    let t = total(&v).saturating_sub(cut);
                    (IovIter::init(&sys.m, Dir::Read, v, t), segs)
                };
                let count = i.count;
                let mut seen = Vec::new();
                let mut calls = 0usize;
                while i.count > 0 {
                    let (maxsize, maxpages) = limits[calls % limits.len()];
                    calls += 1;
                    prop_assert!(calls < 10_000);
                    let g = if prof == "v4.10" {
                        sys.iov_iter_get_pages(&i, maxsize, maxpages)
                    } else {
                        sys.iov_iter_get_pages2(&mut i, maxsize, maxpages)
                    };
                    let g = g.map_err(|e| TestCaseError::fail(format!("{prof}: {e}")))?;
                    prop_assert!(g.bytes > 0 && g.bytes <= maxsize);
                    if !bvec {
                        prop_assert!(g.pages.len() as u64 <= maxpages);
                    }
                    seen.extend(triples::<A>(&g));
                    prop_assert_eq!(sys.m.held_total(), (g.pages.len() as u64, 0));
                    sys.release_pages(&g, true);
                    if prof == "v4.10" {
                        let c = i.count;
                        sys.iov_iter_advance(&mut i, g.bytes);
                        prop_assert_eq!(i.count, c - g.bytes);
                    }
                }
                let want =
                    reference_triples::<A>(&segs, 0, 0, count, &mut |a| pf[(a / ps) as usize]);
                prop_assert_eq!(canonical(&seen), canonical(&want), "{}", prof);
                prop_assert_eq!(refcounts(&sys, &pf), rc0);
                prop_assert_eq!(sys.m.held_total(), (0, 0));
                prop_assert!(sys.m.events.is_empty(), "{:?}", sys.m.events);
                Ok(())
            })
            .unwrap();
    }
}

/// `iov_iter_for_each_page` over IOVEC and BVEC calls back with exactly the
/// reference walk's (page, from, len) sequence (pieces split at page ends;
/// a batch never joins two segments). With an early stop after k calls the
/// pages handed out keep one reference each, every other reference taken is
/// dropped, and the iterator has advanced by the bytes handed out.
fn prop_for_each_page<A: Arch>() {
    let ps = A::PAGE_SIZE;
    let strat = (
        any::<bool>(),
        prop::collection::vec(seg(ps, NP), 0..6),
        1..5u64,
        prop_oneof![Just(usize::MAX), 1..12usize],
    );
    for prof in ["v4.10", "v6.13"] {
        runner(64)
            .run(&strat, |(bvec, segs, batch, stop)| {
                let mut sys = boot::<A>(prof);
                let base = map_filled(&mut sys, NP, "u");
                let pf = upfns(&sys, base, NP);
                let rc0 = refcounts(&sys, &pf);
                let segs: Vec<(u64, u64)> = if bvec {
                    // Single-page, non-empty bvecs.
                    segs.iter()
                        .filter(|s| s.1 > 0)
                        .map(|&(s, l)| (s, l.min(ps - s % ps)))
                        .collect()
                } else {
                    segs
                };
                let mut i = if bvec {
                    let v: Vec<BioVec> = segs
                        .iter()
                        .map(|&(s, l)| BioVec {
                            page: pf[(s / ps) as usize],
                            len: l as u32,
                            offset: (s % ps) as u32,
                        })
                        .collect();
                    let t = segs.iter().map(|s| s.1).sum();
                    IovIter::bvec(Dir::Read, v, t)
                } else {
                    let v: Vec<Iovec> = segs
                        .iter()
                        .map(|&(s, l)| iov(base.wrapping_add(s), l))
                        .collect();
                    uiter(&sys, Dir::Read, v)
                };
                let count = i.count;
                let want =
                    reference_triples::<A>(&segs, 0, 0, count, &mut |a| pf[(a / ps) as usize]);
                let mut got = Vec::new();
                let r =
                    sys.iov_iter_for_each_page(&mut i, u64::MAX, batch, &mut |_, pg, from, len| {
                        got.push((pg, from, len));
                        got.len() < stop
                    });
                let k = stop.min(want.len());
                prop_assert_eq!(&got, &want[..k].to_vec(), "{}", prof);
                let bytes: u64 = got.iter().map(|t| t.2).sum();
                prop_assert_eq!(r, Ok(bytes));
                prop_assert_eq!(i.count, count - bytes);
                prop_assert_eq!(
                    sys.m.held_total(),
                    (k as u64, 0),
                    "one reference per callback"
                );
                let mut bumps = vec![0u32; NP as usize];
                for &(pg, _, _) in &got {
                    bumps[pf.iter().position(|&x| x == pg).unwrap()] += 1;
                }
                prop_assert_eq!(refcounts(&sys, &pf), plus(&rc0, &bumps));
                for &(pg, _, _) in &got {
                    sys.m.put_page(pg).unwrap();
                }
                prop_assert_eq!(refcounts(&sys, &pf), rc0);
                prop_assert_eq!(sys.m.held_total(), (0, 0));
                prop_assert!(sys.m.events.is_empty(), "{:?}", sys.m.events);
                Ok(())
            })
            .unwrap();
    }
}

/// Advancing to the end of a segment: v4.10's iterate_and_advance steps over
/// that one segment only (landing on a following empty one); 6.x's
/// iov_iter_iovec_advance stops at the first segment the position lies
/// strictly inside, so it also steps over the empty one.
fn advance_over_empty_segments<A: Arch>() {
    for (prof, idx, nr) in [("v4.10", 1, 2), ("v6.13", 2, 1)] {
        let mut sys = boot::<A>(prof);
        let v = vec![
            iov(VirtAddr(0x1000_0000), 0x10),
            iov(VirtAddr(0x1000_2000), 0),
            iov(VirtAddr(0x1000_4000), 0x10),
        ];
        let mut i = IovIter::kvec(Dir::Read, v, 0x20);
        sys.iov_iter_advance(&mut i, 0x10);
        assert_eq!(
            (i.idx, i.nr_segs, i.iov_offset, i.count),
            (idx, nr, 0, 0x10),
            "{prof}"
        );
    }
}
on_all_arches!(advance_over_empty_segments);

// ---------------------------------------------------------------------------
// A copy large enough to be written with streaming stores.

/// `copy_to_iter` of more than `STREAM_COPY_MIN` (8 MiB) bytes, into iovecs
/// at odd offsets and lengths, the last one running into an unmapped page:
/// the bytes before the fault land exactly as a small copy would put them,
/// nothing after it, and the count stops at the fault.
fn big_copy_is_byte_exact<A: Arch>() {
    let mut sys = boot::<A>("v6.13");
    let len = (9 << 20) + 3 * A::PAGE_SIZE;
    let pages = len.div_ceil(A::PAGE_SIZE);
    // One mapping with room for the copy, then an unmapped hole after it.
    let va = map_filled::<A>(&mut sys, pages + 1, "big");
    let mm = sys.m.current_mm();
    let hole = va.wrapping_add(pages * A::PAGE_SIZE);
    sys.m.munmap(mm, hole, A::PAGE_SIZE).unwrap();
    let src: Vec<u8> = (0..len).map(|x| pattern(x + 5) ^ 0x5a).collect();
    // Odd-sized segments from offset 3; the last one crosses into the hole.
    let mut v = Vec::new();
    let mut at = 3;
    while at < len - 8191 {
        v.push(iov(va.wrapping_add(at), 8191));
        at += 8191;
    }
    let last = len - at + A::PAGE_SIZE;
    v.push(iov(va.wrapping_add(at), last));
    let mut it = uiter(&sys, Dir::Read, v);
    let fits = pages * A::PAGE_SIZE - 3;
    let copied = sys.copy_to_iter(&src[..len as usize], &mut it);
    assert_eq!(copied, fits.min(len), "stops at the unmapped page");
    let mut back = vec![0u8; fits as usize + 3];
    assert_eq!(sys.m.copy_from_user(&mut back, va), 0);
    assert_eq!(&back[..3], &[pattern(0), pattern(1), pattern(2)]);
    assert!(back[3..] == src[..fits as usize], "bytes differ");
}

#[test]
fn big_copy_is_byte_exact_x86_64() {
    big_copy_is_byte_exact::<vmemu_arch::X86_64>();
}

#[test]
fn big_copy_is_byte_exact_ppc64() {
    big_copy_is_byte_exact::<vmemu_arch::Ppc64>();
}
