//! Behaviour tests of the emulated kernel against the rules of
//! `arch-and-gup.md` §5–§8 (and the 2017 thread's claims), each generic over
//! the arch and instantiated on x86_64, arm64, ppc64 (64K) and ppc64 (4K).
//! Every test says which kernel rule it checks.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vmemu_arch::{Arch, ArchId, Pfn, VirtAddr};
use vmemu_mm::phys::{GUP_PIN_COUNTING_BIAS, Owner, PageFlags};
use vmemu_mm::{
    Backing, Errno, EventKind, FaultFlags, FileOps, GupFlags, KernelProfile, Machine, MapFlags,
    MkwriteBehaviour, Prot, VmFault,
};

/// The three base kernels.
const PROFILES: [&str; 3] = ["v4.10", "v4.17", "v6.13"];
/// Emulated memory per machine (enough for a THP on every arch).
const PHYS: u64 = 32 << 20;
/// A fixed user address that is mappable and PMD-aligned on every arch.
const FIXED: u64 = 0x4000_0000;

/// Instantiates `fn name<A: Arch>()` as `name::{x86_64, arm64, ppc64, ppc64_4k}`.
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
                #[test]
                fn ppc64_4k() {
                    super::$f::<vmemu_arch::Ppc64_4k>();
                }
            }
        )*
    };
}

on_every_arch!(
    kernel_writes_are_checked_per_write,
    claim_h_gupf_never_returns_zero,
    zero_length_gupf,
    unaligned_start_same_pages,
    reference_balance,
    ref_underflow_never_wraps,
    reference_outlives_unmap,
    foll_pin_bias,
    cow_zero_page_then_fresh_page,
    cow_foll_force_on_private_file,
    page_mkwrite_codes,
    fault_retry_drops_mmap_sem,
    growsdown_stack_and_kernel_addresses,
    pfnmap_is_refused,
    uaccess_short_copies,
    uaccess_set_fs,
    mmap_sem_recursive_read_deadlock,
    protnone_fast_vs_slow,
    narrow_refcount_gup_wrap,
);

// ----------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------

fn machine<A: Arch>(profile: &str) -> Machine<A> {
    Machine::<A>::new(KernelProfile::parse(profile).unwrap(), PHYS).unwrap()
}

fn page<A: Arch>(base: VirtAddr, i: u64) -> VirtAddr {
    VirtAddr(base.0 + i * A::PAGE_SIZE)
}

fn map<A: Arch>(
    m: &mut Machine<A>,
    at: Option<u64>,
    pages: u64,
    prot: Prot,
    flags: MapFlags,
    backing: Backing,
    name: &str,
) -> VirtAddr {
    let mm = m.current_mm();
    m.mmap(
        mm,
        at.map(VirtAddr),
        pages * A::PAGE_SIZE,
        prot,
        flags,
        backing,
        name,
    )
    .unwrap()
}

fn anon<A: Arch>(m: &mut Machine<A>, pages: u64, prot: Prot, name: &str) -> VirtAddr {
    map(
        m,
        None,
        pages,
        prot,
        MapFlags::default(),
        Backing::Anon,
        name,
    )
}

/// Write-faults `pages` pages at `va` (clear_user).
fn write_fault<A: Arch>(m: &mut Machine<A>, va: VirtAddr, pages: u64) {
    assert_eq!(
        m.clear_user(va, pages * A::PAGE_SIZE),
        0,
        "write fault at {va}"
    );
}

/// Read-faults one page at `va` (copy_from_user).
fn read_fault<A: Arch>(m: &mut Machine<A>, va: VirtAddr) {
    let mut b = [0u8; 8];
    assert_eq!(m.copy_from_user(&mut b, va), 0, "read fault at {va}");
}

fn names<A: Arch>(m: &Machine<A>, pages: &[Pfn]) -> Vec<String> {
    pages.iter().map(|&p| m.page_name(p)).collect()
}

fn indexed(name: &str, range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| format!("{name}[{i}]")).collect()
}

/// `put_page` of every page (the caller's FOLL_GET references).
fn release<A: Arch>(m: &mut Machine<A>, pages: &[Pfn]) {
    for &p in pages {
        m.put_page(p).unwrap();
    }
}

fn count<A: Arch>(m: &Machine<A>, kind: EventKind) -> usize {
    m.events.iter().filter(|e| e.kind == kind).count()
}

/// `get_user_pages` with `mmap_sem` taken and released around it.
fn gup_locked<A: Arch>(
    m: &mut Machine<A>,
    start: VirtAddr,
    nr: u64,
    flags: GupFlags,
    pages: &mut Vec<Pfn>,
) -> Result<u64, Errno> {
    let mm = m.current_mm();
    m.mmap_read_lock(mm).unwrap();
    let r = m.get_user_pages(start, nr, flags, pages);
    m.mmap_read_unlock(mm);
    r
}

/// A frame's direct-map (kernel) address.
fn kaddr<A: Arch>(m: &Machine<A>, pfn: u64) -> VirtAddr {
    m.page_address(Pfn(pfn))
}

/// (refcount, pincount) of every allocated head frame.
type Snapshot = BTreeMap<Pfn, (u32, u32)>;

fn snapshot<A: Arch>(m: &Machine<A>) -> Snapshot {
    m.phys
        .allocated_heads()
        .map(|(p, pg)| (p, (pg.refcount, pg.pincount)))
        .collect()
}

/// Runs `gup`, releases every page it returned (`unpin_user_page` if `pin`,
/// else `put_page`), and asserts that every frame allocated before is back to
/// its (refcount, pincount) and that the workload holds nothing. Returns the
/// gup result and the page names. (A fault that maps an already allocated
/// page — a page-cache page, a COW source — legitimately changes its count:
/// callers map such pages before.)
fn balanced<A: Arch>(
    m: &mut Machine<A>,
    pin: bool,
    what: &str,
    gup: impl FnOnce(&mut Machine<A>, &mut Vec<Pfn>) -> Result<u64, Errno>,
) -> (Result<u64, Errno>, Vec<String>) {
    let before = snapshot(m);
    let mut pages = Vec::new();
    let r = gup(m, &mut pages);
    match r {
        Ok(n) => assert_eq!(pages.len() as u64, n, "{what}: one page per count"),
        Err(_) => assert!(pages.is_empty(), "{what}: pages on error"),
    }
    let got = names(m, &pages);
    for &p in &pages {
        if pin {
            m.unpin_user_page(p).unwrap();
        } else {
            m.put_page(p).unwrap();
        }
    }
    let after = snapshot(m);
    for (pfn, counts) in &before {
        assert_eq!(
            after.get(pfn),
            Some(counts),
            "{what}: {} ({pfn:?}) not back to (refcount, pincount) {counts:?}",
            m.page_name(*pfn)
        );
    }
    assert_eq!(m.held_total(), (0, 0), "{what}: references still held");
    (r, got)
}

// ----------------------------------------------------------------------
// 1. Claim H: get_user_pages_fast returns 0 only for nr_pages == 0
// ----------------------------------------------------------------------

/// Addresses of [`claim_h_layout`].
#[derive(Clone, Copy, Debug)]
struct Layout {
    rw: VirtAddr,
    fresh: VirtAddr,
    zero: VirtAddr,
    ro: VirtAddr,
    ro_file: VirtAddr,
    none: VirtAddr,
    hole: VirtAddr,
    pfnmap: VirtAddr,
    tail: VirtAddr,
    top: VirtAddr,
    retry: VirtAddr,
}

/// One address space with every kind of user mapping gup meets.
fn claim_h_layout<A: Arch>(m: &mut Machine<A>) -> Layout {
    let p = A::PAGE_SIZE;
    let rw = anon(m, 4, Prot::RW, "rw");
    write_fault(m, rw, 4);
    let fresh = anon(m, 4, Prot::RW, "fresh");
    let zero = anon(m, 4, Prot::RW, "zero");
    for i in 0..4 {
        read_fault(m, page::<A>(zero, i));
    }
    let ro = anon(m, 4, Prot::R, "ro");
    read_fault(m, ro);
    let f = m.create_file("f", 4 * p, FileOps::default());
    let ro_file = map(
        m,
        None,
        4,
        Prot::R,
        MapFlags::default(),
        Backing::File { file: f, pgoff: 0 },
        "rofile",
    );
    read_fault(m, ro_file);
    let none = anon(m, 2, Prot::RW, "none");
    write_fault(m, none, 2);
    let mm = m.current_mm();
    m.mprotect(mm, none, 2 * p, Prot::NONE).unwrap();
    let hole = anon(m, 2, Prot::RW, "hole");
    m.munmap(mm, hole, 2 * p).unwrap();
    let dev = m.alloc_kernel_pages("dev", 2).unwrap();
    let pfnmap = map(
        m,
        None,
        1,
        Prot::RW,
        MapFlags {
            shared: true,
            ..MapFlags::default()
        },
        Backing::Pfnmap { base: dev[0] },
        "pfn",
    );
    // The last page of a mapping followed by unmapped pages.
    let tail = anon(m, 4, Prot::RW, "tail");
    write_fault(m, tail, 2);
    m.munmap(mm, page::<A>(tail, 2), 2 * p).unwrap();
    let tail = page::<A>(tail, 1);
    // The last user page (straddles TASK_SIZE for nr >= 2).
    let top_at = m.layout.task_size_max - p;
    let top = map(
        m,
        Some(top_at),
        1,
        Prot::RW,
        MapFlags::default(),
        Backing::Anon,
        "top",
    );
    write_fault(m, top, 1);
    // A file whose ->fault drops mmap_sem and asks for a retry.
    let ops = FileOps {
        fault_retry: true,
        ..FileOps::default()
    };
    let g = m.create_file("g", 64 * p, ops);
    let retry = map(
        m,
        None,
        64,
        Prot::RW,
        MapFlags::default(),
        Backing::File { file: g, pgoff: 0 },
        "retry",
    );
    Layout {
        rw,
        fresh,
        zero,
        ro,
        ro_file,
        none,
        hole,
        pfnmap,
        tail,
        top,
        retry,
    }
}

/// Claim H of the 2017 thread (and the documented contract of
/// `get_user_pages_fast`, enforced by c61611f70958 for the generic code):
/// for `nr_pages >= 1` the result is at least one page or a negative errno,
/// never 0 — whatever the address (mapped, not yet faulted, read-only for a
/// write, unmapped, kernel, wrapping, straddling TASK_SIZE) and under USER_DS
/// or KERNEL_DS. Every returned page is a reference the caller owns.
fn claim_h_gupf_never_returns_zero<A: Arch>() {
    let p = A::PAGE_SIZE;
    for profile in PROFILES {
        for kernel_ds in [false, true] {
            let mut m = machine::<A>(profile);
            let l = claim_h_layout(&mut m);
            let mut starts = vec![
                ("rw", l.rw),
                ("rw+123", VirtAddr(l.rw.0 + 123)),
                ("fresh", l.fresh),
                ("zero", l.zero),
                ("ro", l.ro),
                ("ro_file", l.ro_file),
                ("none", l.none),
                ("hole", l.hole),
                ("pfnmap", l.pfnmap),
                ("tail", l.tail),
                ("top", l.top),
                ("retry", l.retry),
                ("null", VirtAddr(0)),
                ("kernel", kaddr(&m, 256)),
                ("vmalloc", VirtAddr(m.layout.vmalloc_start)),
                ("wrap", VirtAddr(0u64.wrapping_sub(p))),
                ("task_size", VirtAddr(m.layout.task_size_max)),
            ];
            if let Some(v) = m.layout.vsyscall {
                starts.push(("vsyscall", VirtAddr(v)));
            }
            for (what, start) in starts {
                for flags in [GupFlags::empty(), GupFlags::FOLL_WRITE] {
                    for (nr, entry) in (1..=3i64).flat_map(|n| [(n, 0), (n, 1), (n, 2)]) {
                        let old = m.set_fs(kernel_ds);
                        let mut pages = Vec::new();
                        let r = match entry {
                            0 => m.get_user_pages_fast(start, nr, flags, &mut pages),
                            // The slow path's own contract is the same (§6 step 8).
                            1 => m.get_user_pages_unlocked(start, nr as u64, &mut pages, flags),
                            _ => gup_locked(&mut m, start, nr as u64, flags, &mut pages),
                        };
                        m.restore_fs(old);
                        let ctx = format!(
                            "{profile} {:?} kernel_ds={kernel_ds} {what} ({start}) nr={nr} {flags:?} entry {entry}: {r:?}",
                            A::ID
                        );
                        match r {
                            Ok(n) => {
                                assert!(n >= 1 && n <= nr as u64, "{ctx}");
                                assert_eq!(pages.len() as u64, n, "{ctx}");
                            }
                            Err(_) => assert!(pages.is_empty(), "{ctx}"),
                        }
                        release(&mut m, &pages);
                        assert_eq!(m.held_total(), (0, 0), "{ctx}");
                        assert_eq!(m.locks.held_by(m.current), Vec::<String>::new(), "{ctx}");
                    }
                }
            }
        }
    }
}

/// nr_pages == 0: `get_user_pages_fast` returns 0 for a user start. Whether
/// the walker is reached with start == end (the zero-length hazard, §5.5)
/// depends on the version: v4.10 (x86's own gup.c and the generic RCU walker)
/// and v6.13 (`gup_fast_fallback`) have no guard; v4.17 returns early on
/// `nr_pages <= 0` (c61611f70958). `__get_user_pages_fast` has no guard in
/// any of them. For a kernel start, 6.13 checks `end > TASK_SIZE_MAX` before
/// anything else and returns -EFAULT.
fn zero_length_gupf<A: Arch>() {
    for profile in PROFILES {
        let mut m = machine::<A>(profile);
        let buf = anon(&mut m, 2, Prot::RW, "buf");
        write_fault(&mut m, buf, 2);
        let mut pages = Vec::new();
        assert_eq!(
            m.get_user_pages_fast(buf, 0, GupFlags::empty(), &mut pages),
            Ok(0),
            "{profile}"
        );
        assert!(pages.is_empty());
        let walked = count(&m, EventKind::ZeroLengthWalk);
        let expect = profile != "v4.17";
        assert_eq!(walked == 1, expect, "{profile} {:?}: {:?}", A::ID, m.events);
        assert_eq!(m.held_total(), (0, 0));

        m.events.clear();
        assert_eq!(
            m.__get_user_pages_fast(buf, 0, GupFlags::empty(), &mut pages),
            Ok(0),
            "{profile}"
        );
        assert_eq!(count(&m, EventKind::ZeroLengthWalk), 1, "{profile}");

        // A kernel start: the range check refuses before any walk.
        m.events.clear();
        let k = kaddr(&m, 256);
        let r = m.get_user_pages_fast(k, 0, GupFlags::empty(), &mut pages);
        let expect = if profile == "v6.13" {
            Err(Errno::EFAULT)
        } else {
            Ok(0)
        };
        assert_eq!(r, expect, "{profile}");
        assert_eq!(count(&m, EventKind::ZeroLengthWalk), 0, "{profile}");
        assert!(pages.is_empty());
    }
}

/// `__get_user_pages` does not align `start`: page i is the page containing
/// start + i·PAGE_SIZE, the same pages as for the aligned start; the fast
/// paths align before walking and before falling back (§6). So an unaligned
/// start gives the same pages whether the fast walk takes them, the
/// fallback does (pages not yet faulted in, or mapped read-only — the zero
/// page — for a write), or the slow path is called directly.
fn unaligned_start_same_pages<A: Arch>() {
    let want = indexed("buf", 0..3);
    for profile in PROFILES {
        // Fast walk: everything present and writable.
        let mut m = machine::<A>(profile);
        let buf = anon(&mut m, 4, Prot::RW, "buf");
        write_fault(&mut m, buf, 4);
        let start = VirtAddr(buf.0 + 123);
        let (r, got) = balanced(&mut m, false, "fast-only", |m, v| {
            m.__get_user_pages_fast(start, 3, GupFlags::FOLL_WRITE, v)
        });
        assert_eq!((r, &got), (Ok(3), &want), "{profile} fast-only");
        let (r, got) = balanced(&mut m, false, "fast", |m, v| {
            m.get_user_pages_fast(start, 3, GupFlags::FOLL_WRITE, v)
        });
        assert_eq!((r, &got), (Ok(3), &want), "{profile} fast");

        // Fallback: not faulted in.
        let mut m = machine::<A>(profile);
        let buf = anon(&mut m, 4, Prot::RW, "buf");
        let start = VirtAddr(buf.0 + 123);
        let mut pages = Vec::new();
        let r = m.get_user_pages_fast(start, 3, GupFlags::FOLL_WRITE, &mut pages);
        assert_eq!((r, names(&m, &pages)), (Ok(3), want.clone()), "{profile}");
        release(&mut m, &pages);

        // Fallback for the tail only: page 0 present, pages 1.. not.
        let mut m = machine::<A>(profile);
        let buf = anon(&mut m, 4, Prot::RW, "buf");
        write_fault(&mut m, buf, 1);
        let start = VirtAddr(buf.0 + 123);
        let mut pages = Vec::new();
        let r = m.get_user_pages_fast(start, 3, GupFlags::FOLL_WRITE, &mut pages);
        assert_eq!((r, names(&m, &pages)), (Ok(3), want.clone()), "{profile}");
        release(&mut m, &pages);

        // Fallback: the zero page is mapped read-only, a write breaks COW.
        let mut m = machine::<A>(profile);
        let buf = anon(&mut m, 4, Prot::RW, "buf");
        for i in 0..4 {
            read_fault(&mut m, page::<A>(buf, i));
        }
        let start = VirtAddr(buf.0 + 123);
        let mut pages = Vec::new();
        let r = m.get_user_pages_fast(start, 3, GupFlags::FOLL_WRITE, &mut pages);
        assert_eq!((r, names(&m, &pages)), (Ok(3), want.clone()), "{profile}");
        release(&mut m, &pages);

        // The slow path directly, with the unaligned start.
        let mut m = machine::<A>(profile);
        let buf = anon(&mut m, 4, Prot::RW, "buf");
        let start = VirtAddr(buf.0 + 123);
        let mut pages = Vec::new();
        let r = m.get_user_pages_unlocked(start, 3, &mut pages, GupFlags::FOLL_WRITE);
        assert_eq!((r, names(&m, &pages)), (Ok(3), want.clone()), "{profile}");
        release(&mut m, &pages);
        // start = buf + P - 1: page i is the page containing start + i·P, so
        // page 3 (the VMA's last byte) is taken and page 4 is past the VMA.
        let start = VirtAddr(buf.0 + A::PAGE_SIZE - 1);
        let mut pages = Vec::new();
        let r = m.get_user_pages_unlocked(start, 5, &mut pages, GupFlags::FOLL_WRITE);
        assert_eq!(
            (r, names(&m, &pages)),
            (Ok(4), indexed("buf", 0..4)),
            "{profile}: page 4 is past the VMA"
        );
        release(&mut m, &pages);
    }
}

// ----------------------------------------------------------------------
// 2. gup-fast and the slow path agree on user mappings under USER_DS
// ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hole,
    Fresh,
    Written,
    ReadFaulted,
    RoFresh,
    RoWritten,
    RoReadFaulted,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Hole),
        Just(Kind::Fresh),
        Just(Kind::Written),
        Just(Kind::ReadFaulted),
        Just(Kind::RoFresh),
        Just(Kind::RoWritten),
        Just(Kind::RoReadFaulted),
    ]
}

/// Builds the layout deterministically: one anon mapping "buf", faulted per
/// page, then pages made read-only, then holes punched.
fn build<A: Arch>(profile: &str, kinds: &[Kind]) -> (Machine<A>, VirtAddr) {
    let mut m = machine::<A>(profile);
    let mm = m.current_mm();
    let p = A::PAGE_SIZE;
    let base = anon(&mut m, kinds.len() as u64, Prot::RW, "buf");
    for (i, k) in kinds.iter().enumerate() {
        let va = page::<A>(base, i as u64);
        match k {
            Kind::Written | Kind::RoWritten => write_fault(&mut m, va, 1),
            Kind::ReadFaulted | Kind::RoReadFaulted => read_fault(&mut m, va),
            _ => {}
        }
    }
    for (i, k) in kinds.iter().enumerate() {
        let va = page::<A>(base, i as u64);
        if matches!(k, Kind::RoFresh | Kind::RoWritten | Kind::RoReadFaulted) {
            m.mprotect(mm, va, p, Prot::R).unwrap();
        }
        if *k == Kind::Hole {
            m.munmap(mm, va, p).unwrap();
        }
    }
    (m, base)
}

/// gup-fast is only a lockless shortcut of the slow path: for user mappings
/// under USER_DS, `get_user_pages_fast` must take the same pages (same
/// names, same count, same errno when nothing is taken) as
/// `get_user_pages_unlocked` on the same state (§5.1–§5.3, §6), in every
/// profile. The pages taken are the caller's references and balance out.
fn fast_matches_slow<A: Arch>(
    profile: &str,
    kinds: &[Kind],
    first: usize,
    nr: u64,
    off: u64,
    write: bool,
) -> Result<(), TestCaseError> {
    let flags = if write {
        GupFlags::FOLL_WRITE
    } else {
        GupFlags::empty()
    };
    let (mut fm, base) = build::<A>(profile, kinds);
    let (mut sm, base2) = build::<A>(profile, kinds);
    prop_assert_eq!(base, base2);
    let start = VirtAddr(page::<A>(base, first as u64).0 + off % A::PAGE_SIZE);
    let mut fp = Vec::new();
    let fr = fm.get_user_pages_fast(start, nr as i64, flags, &mut fp);
    let mut sp = Vec::new();
    let sr = sm.get_user_pages_unlocked(start, nr, &mut sp, flags);
    let fnames = names(&fm, &fp);
    let snames = names(&sm, &sp);
    prop_assert_eq!(
        (fr, &fnames),
        (sr, &snames),
        "{} {:?} {:?} first={} nr={} {:?}",
        profile,
        A::ID,
        kinds,
        first,
        nr,
        flags
    );
    release(&mut fm, &fp);
    release(&mut sm, &sp);
    prop_assert_eq!(fm.held_total(), (0, 0));
    prop_assert_eq!(sm.held_total(), (0, 0));
    prop_assert_eq!(fm.locks.held_by(fm.current), Vec::<String>::new());
    prop_assert_eq!(sm.locks.held_by(sm.current), Vec::<String>::new());
    Ok(())
}

fn gup_profiles() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "v4.10",
        "v4.10+capper",
        "v4.17",
        "v6.13",
        "v6.13+numa",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn fast_matches_slow_x86_64(
        profile in gup_profiles(), kinds in prop::collection::vec(kind(), 1..10),
        first in 0usize..10, nr in 1u64..8, off in any::<u64>(), write in any::<bool>(),
    ) {
        fast_matches_slow::<vmemu_arch::X86_64>(profile, &kinds, first, nr, off, write)?;
    }

    #[test]
    fn fast_matches_slow_arm64(
        profile in gup_profiles(), kinds in prop::collection::vec(kind(), 1..10),
        first in 0usize..10, nr in 1u64..8, off in any::<u64>(), write in any::<bool>(),
    ) {
        fast_matches_slow::<vmemu_arch::Arm64>(profile, &kinds, first, nr, off, write)?;
    }

    #[test]
    fn fast_matches_slow_ppc64(
        profile in gup_profiles(), kinds in prop::collection::vec(kind(), 1..10),
        first in 0usize..10, nr in 1u64..8, off in any::<u64>(), write in any::<bool>(),
    ) {
        fast_matches_slow::<vmemu_arch::Ppc64>(profile, &kinds, first, nr, off, write)?;
    }

    #[test]
    fn fast_matches_slow_ppc64_4k(
        profile in gup_profiles(), kinds in prop::collection::vec(kind(), 1..10),
        first in 0usize..10, nr in 1u64..8, off in any::<u64>(), write in any::<bool>(),
    ) {
        fast_matches_slow::<vmemu_arch::Ppc64_4k>(profile, &kinds, first, nr, off, write)?;
    }
}

/// Known divergence, kept visible: v4.10's generic RCU gup-fast (arm64,
/// powerpc) tests only "present, not special, not protnone (NUMA balancing
/// only)" — `pte_present` includes PROT_NONE, so without NUMA balancing a
/// read pins PROT_NONE pages the slow path refuses (check_vma_flags: no
/// VM_READ → -EFAULT) (§5.5). x86 v4.10 (`pte_allows_gup` needs PRESENT and
/// USER) and the `pte_access_permitted` era (v4.17, v6.13) refuse them in
/// the fast walk too, and NUMA balancing makes the protnone test stop it.
fn protnone_fast_vs_slow<A: Arch>() {
    for profile in ["v4.10", "v4.10+numa", "v4.17", "v6.13"] {
        let mut m = machine::<A>(profile);
        let mm = m.current_mm();
        let buf = anon(&mut m, 1, Prot::RW, "buf");
        write_fault(&mut m, buf, 1);
        m.mprotect(mm, buf, A::PAGE_SIZE, Prot::NONE).unwrap();
        let (slow, _) = balanced(&mut m, false, "slow", |m, v| {
            m.get_user_pages_unlocked(buf, 1, v, GupFlags::empty())
        });
        assert_eq!(slow, Err(Errno::EFAULT), "{profile}");
        let (fast, got) = balanced(&mut m, false, "fast", |m, v| {
            m.get_user_pages_fast(buf, 1, GupFlags::empty(), v)
        });
        let leaky = profile == "v4.10" && A::ID != ArchId::X86_64;
        if leaky {
            assert_eq!((fast, got), (Ok(1), indexed("buf", 0..1)), "{profile}");
        } else {
            assert_eq!(fast, Err(Errno::EFAULT), "{profile} {:?}", A::ID);
        }
    }
}

// ----------------------------------------------------------------------
// 3. Reference balance
// ----------------------------------------------------------------------

/// Every page gup returns carries one reference (FOLL_GET) the caller drops
/// with `put_page` (§5.1 "take a plain reference", §5.2 speculative
/// reference, §6 step 6): after releasing them every page is back to its
/// count, on every entry point, with faults, huge leaves and partial results.
fn reference_balance<A: Arch>() {
    for profile in PROFILES {
        let mut m = machine::<A>(profile);
        let buf = anon(&mut m, 4, Prot::RW, "buf");
        write_fault(&mut m, buf, 2);
        let mm = m.current_mm();
        // Present pages through the fast walk.
        let (r, _) = balanced(&mut m, false, "fast", |m, v| {
            m.get_user_pages_fast(buf, 2, GupFlags::FOLL_WRITE, v)
        });
        assert_eq!(r, Ok(2));
        let (r, _) = balanced(&mut m, false, "fast-only", |m, v| {
            m.__get_user_pages_fast(buf, 4, GupFlags::empty(), v)
        });
        assert_eq!(r, Ok(2), "{profile}: stops at the first absent page");
        // Faults in pages 2..3 through the fallback (new pages appear).
        let (r, _) = balanced(&mut m, false, "fallback", |m, v| {
            m.get_user_pages_fast(buf, 4, GupFlags::FOLL_WRITE, v)
        });
        assert_eq!(r, Ok(4));
        // The slow path, locked and unlocked.
        let (r, _) = balanced(&mut m, false, "gup", |m, v| {
            gup_locked(m, buf, 4, GupFlags::empty(), v)
        });
        assert_eq!(r, Ok(4));
        let (r, _) = balanced(&mut m, false, "gup_unlocked", |m, v| {
            m.get_user_pages_unlocked(buf, 4, v, GupFlags::FOLL_WRITE)
        });
        assert_eq!(r, Ok(4));
        // A partial result: 4 pages then a hole.
        let (r, _) = balanced(&mut m, false, "partial", |m, v| {
            m.get_user_pages_fast(buf, 6, GupFlags::empty(), v)
        });
        assert_eq!(r, Ok(4));
        // The zero page.
        let z = anon(&mut m, 1, Prot::RW, "z");
        read_fault(&mut m, z);
        let (r, got) = balanced(&mut m, false, "zero", |m, v| {
            m.get_user_pages_fast(z, 1, GupFlags::empty(), v)
        });
        assert_eq!((r, got), (Ok(1), vec!["ZERO".to_string()]));
        // Page-cache pages (the cache and the mapping hold their own
        // references), private and shared.
        let f = m.create_file("f", 4 * A::PAGE_SIZE, FileOps::default());
        for shared in [false, true] {
            let fm = map(
                &mut m,
                None,
                4,
                Prot::RW,
                MapFlags {
                    shared,
                    ..MapFlags::default()
                },
                Backing::File { file: f, pgoff: 0 },
                "fm",
            );
            // Both pages mapped first: a fault mapping an existing cache page
            // legitimately adds the new mapping's reference.
            read_fault(&mut m, fm);
            read_fault(&mut m, page::<A>(fm, 1));
            let (r, got) = balanced(&mut m, false, "file", |m, v| {
                m.get_user_pages_fast(fm, 2, GupFlags::empty(), v)
            });
            assert_eq!((r, got), (Ok(2), indexed("file:f", 0..2)), "{profile}");
            let (r, _) = balanced(&mut m, false, "file again", |m, v| {
                gup_locked(m, fm, 2, GupFlags::empty(), v)
            });
            assert_eq!(r, Ok(2));
        }
        // A THP: one compound head, refs added per subpage.
        let span = A::entry_span(vmemu_arch::Level(A::levels() as u8 - 2));
        let thp = map(
            &mut m,
            Some(FIXED),
            span / A::PAGE_SIZE,
            Prot::RW,
            MapFlags {
                hugepage: true,
                ..MapFlags::default()
            },
            Backing::Anon,
            "thp",
        );
        write_fault(&mut m, thp, 1);
        let head = Pfn(m.user_pa(mm, thp).unwrap().0 >> A::PAGE_SHIFT);
        assert!(m.phys.page(head).order > 0, "{profile}: a THP was mapped");
        let (r, got) = balanced(&mut m, false, "thp", |m, v| {
            m.get_user_pages_fast(page::<A>(thp, 1), 3, GupFlags::FOLL_WRITE, v)
        });
        assert_eq!((r, got), (Ok(3), indexed("thp", 1..4)), "{profile}");
        let (r, _) = balanced(&mut m, false, "thp slow", |m, v| {
            gup_locked(m, page::<A>(thp, 1), 3, GupFlags::FOLL_WRITE, v)
        });
        assert_eq!(r, Ok(3));
    }
}

/// `put_page` of a reference not held is a refcount underflow: the emulator
/// refuses it (Err(EINVAL)), records `ref_underflow`, and never wraps the
/// count (the kernel would hit VM_BUG_ON_PAGE(page_ref_count(page) == 0)
/// or free a page still in use).
fn ref_underflow_never_wraps<A: Arch>() {
    for profile in PROFILES {
        let mut m = machine::<A>(profile);
        let mm = m.current_mm();
        let buf = anon(&mut m, 1, Prot::RW, "buf");
        write_fault(&mut m, buf, 1);
        let pfn = Pfn(m.user_pa(mm, buf).unwrap().0 >> A::PAGE_SHIFT);
        let rc = m.phys.page(pfn).refcount;
        assert_eq!(m.put_page(pfn), Err(Errno::EINVAL));
        assert_eq!(count(&m, EventKind::RefUnderflow), 1);
        assert_eq!(m.phys.page(pfn).refcount, rc, "never wraps");
        // One gup reference, released twice.
        let mut pages = Vec::new();
        assert_eq!(
            m.get_user_pages_fast(buf, 1, GupFlags::empty(), &mut pages),
            Ok(1)
        );
        assert_eq!(m.phys.page(pfn).refcount, rc + 1);
        assert_eq!(m.put_page(pfn), Ok(()));
        assert_eq!(m.put_page(pfn), Err(Errno::EINVAL));
        assert_eq!(count(&m, EventKind::RefUnderflow), 2);
        assert_eq!(m.phys.page(pfn).refcount, rc);
        // A pin is not a reference and vice versa.
        assert_eq!(m.unpin_user_page(pfn), Err(Errno::EINVAL));
        assert_eq!(count(&m, EventKind::RefUnderflow), 3);
        assert_eq!(m.phys.page(pfn).refcount, rc);
        assert_eq!(m.held_total(), (0, 0));
    }
}

/// A gup reference (or pin) keeps the page allocated after the mapping is
/// gone (munmap / MADV_DONTNEED drop only the mapping's reference, `zap_pte_range`
/// → `page_remove_rmap` + `tlb_remove_page`); the page is freed by the
/// caller's final `put_page` / `unpin_user_page`.
fn reference_outlives_unmap<A: Arch>() {
    for profile in PROFILES {
        let ctx = format!("{profile} {:?}", A::ID);
        let mut m = machine::<A>(profile);
        let mm = m.current_mm();
        let buf = anon(&mut m, 2, Prot::RW, "buf");
        assert_eq!(m.copy_to_user(buf, b"still here"), 0);
        let mut pages = Vec::new();
        assert_eq!(
            m.get_user_pages_fast(buf, 2, GupFlags::FOLL_WRITE, &mut pages),
            Ok(2)
        );
        m.munmap(mm, buf, A::PAGE_SIZE).unwrap();
        m.madvise_dontneed(mm, page::<A>(buf, 1), A::PAGE_SIZE)
            .unwrap();
        for &p in &pages {
            let pg = m.phys.page(p);
            assert_eq!(
                (pg.refcount, pg.mapcount),
                (1, 0),
                "{ctx}: only our reference"
            );
        }
        assert_eq!(names(&m, &pages), indexed("buf", 0..2));
        let mut b = [0u8; 10];
        m.phys.read(pages[0].addr(A::PAGE_SHIFT), &mut b).unwrap();
        assert_eq!(&b, b"still here");
        release(&mut m, &pages);
        for &p in &pages {
            assert!(
                !m.phys.allocated_heads().any(|(h, _)| h == p),
                "{ctx}: freed by the last put_page"
            );
        }
        assert_eq!(m.events, vec![], "{ctx}");
        if profile == "v6.13" {
            let buf = anon(&mut m, 1, Prot::RW, "pinned");
            let mut pages = Vec::new();
            assert_eq!(
                m.pin_user_pages_fast(buf, 1, GupFlags::FOLL_WRITE, &mut pages),
                Ok(1)
            );
            m.munmap(mm, buf, A::PAGE_SIZE).unwrap();
            assert_eq!(m.phys.page(pages[0]).refcount, GUP_PIN_COUNTING_BIAS);
            m.unpin_user_page(pages[0]).unwrap();
            assert!(!m.phys.allocated_heads().any(|(h, _)| h == pages[0]));
            assert_eq!(m.held_total(), (0, 0));
        }
    }
}

/// FOLL_PIN (5.7+, §5.3 "folio grabbing"): a pin of a small folio adds
/// GUP_PIN_COUNTING_BIAS (1024) to the refcount, a pin of a large folio adds
/// 1 to the refcount and 1 to `_pincount`; the zero page is never pinned;
/// `unpin_user_page` undoes exactly that. v4.10 has no FOLL_PIN at all:
/// `pin_user_pages_fast` does not exist (modelled as -EINVAL).
fn foll_pin_bias<A: Arch>() {
    let mut m = machine::<A>("v4.10");
    let buf = anon(&mut m, 1, Prot::RW, "buf");
    write_fault(&mut m, buf, 1);
    let before = snapshot(&m);
    let mut pages = Vec::new();
    assert_eq!(
        m.pin_user_pages_fast(buf, 1, GupFlags::FOLL_WRITE, &mut pages),
        Err(Errno::EINVAL)
    );
    assert!(pages.is_empty());
    assert_eq!(snapshot(&m), before);
    assert_eq!(m.held_total(), (0, 0));

    let mut m = machine::<A>("v6.13");
    let mm = m.current_mm();
    let buf = anon(&mut m, 2, Prot::RW, "buf");
    write_fault(&mut m, buf, 1);
    let pfn = Pfn(m.user_pa(mm, buf).unwrap().0 >> A::PAGE_SHIFT);
    let rc = m.phys.page(pfn).refcount;
    let mut pages = Vec::new();
    for k in 1..=2u32 {
        assert_eq!(
            m.pin_user_pages_fast(buf, 1, GupFlags::FOLL_WRITE, &mut pages),
            Ok(1)
        );
        assert_eq!(m.phys.page(pfn).refcount, rc + k * GUP_PIN_COUNTING_BIAS);
        assert_eq!(m.phys.page(pfn).pincount, 0, "small folio: no _pincount");
    }
    assert_eq!(m.held_total(), (0, 2));
    assert!(m.mm(mm).has_pinned, "MMF_HAS_PINNED");
    // A plain reference on top counts 1.
    let mut refs = Vec::new();
    assert_eq!(
        m.get_user_pages_fast(buf, 1, GupFlags::empty(), &mut refs),
        Ok(1)
    );
    assert_eq!(
        m.phys.page(pfn).refcount,
        rc + 2 * GUP_PIN_COUNTING_BIAS + 1
    );
    release(&mut m, &refs);
    for &p in &pages {
        m.unpin_user_page(p).unwrap();
    }
    assert_eq!(m.phys.page(pfn).refcount, rc);
    // The slow path pins the same way (page 1 is faulted in by it).
    let (r, got) = balanced(&mut m, true, "pin slow", |m, v| {
        m.pin_user_pages_fast(buf, 2, GupFlags::FOLL_WRITE, v)
    });
    assert_eq!((r, got), (Ok(2), indexed("buf", 0..2)));
    // The zero page is not pinned.
    let z = anon(&mut m, 1, Prot::RW, "z");
    read_fault(&mut m, z);
    let zero = m.zero_pfn();
    let zrc = m.phys.page(zero).refcount;
    let mut pages = Vec::new();
    assert_eq!(
        m.pin_user_pages_fast(z, 1, GupFlags::empty(), &mut pages),
        Ok(1)
    );
    assert_eq!(names(&m, &pages), vec!["ZERO".to_string()]);
    assert_eq!(m.phys.page(zero).refcount, zrc);
    m.unpin_user_page(pages[0]).unwrap();
    assert_eq!(m.phys.page(zero).refcount, zrc);
    // A large folio: refcount and _pincount +1 per pinned subpage.
    let span = A::entry_span(vmemu_arch::Level(A::levels() as u8 - 2));
    let thp = map(
        &mut m,
        Some(FIXED),
        span / A::PAGE_SIZE,
        Prot::RW,
        MapFlags {
            hugepage: true,
            ..MapFlags::default()
        },
        Backing::Anon,
        "thp",
    );
    write_fault(&mut m, thp, 1);
    let head = Pfn(m.user_pa(mm, thp).unwrap().0 >> A::PAGE_SHIFT);
    assert!(m.phys.page(head).order > 0);
    let rc = m.phys.page(head).refcount;
    let mut pages = Vec::new();
    assert_eq!(
        m.pin_user_pages_fast(page::<A>(thp, 1), 3, GupFlags::FOLL_WRITE, &mut pages),
        Ok(3)
    );
    assert_eq!(m.phys.page(head).refcount, rc + 3);
    assert_eq!(m.phys.page(head).pincount, 3);
    for &p in &pages {
        m.unpin_user_page(p).unwrap();
    }
    assert_eq!(m.phys.page(head).refcount, rc);
    assert_eq!(m.phys.page(head).pincount, 0);
    assert_eq!(m.held_total(), (0, 0));
}

// ----------------------------------------------------------------------
// 4. COW
// ----------------------------------------------------------------------

/// `do_anonymous_page`: a read fault maps the shared zero page (read-only,
/// special), so gup without FOLL_WRITE returns the zero page; a write fault
/// replaces it with a fresh anonymous page (`wp_page_copy` from the zero
/// page), which gup then returns.
fn cow_zero_page_then_fresh_page<A: Arch>() {
    for profile in PROFILES {
        let mut m = machine::<A>(profile);
        let buf = anon(&mut m, 2, Prot::RW, "buf");
        let mut b = [0xffu8; 16];
        assert_eq!(m.copy_from_user(&mut b, buf), 0);
        assert_eq!(b, [0u8; 16], "the zero page reads zeroes");
        let (r, got) = balanced(&mut m, false, "read", |m, v| {
            gup_locked(m, buf, 1, GupFlags::empty(), v)
        });
        assert_eq!((r, got), (Ok(1), vec!["ZERO".to_string()]), "{profile}");
        let (r, got) = balanced(&mut m, false, "read fast", |m, v| {
            m.get_user_pages_fast(buf, 1, GupFlags::empty(), v)
        });
        assert_eq!((r, got), (Ok(1), vec!["ZERO".to_string()]), "{profile}");

        assert_eq!(m.copy_to_user(buf, b"hello"), 0);
        let mut pages = Vec::new();
        assert_eq!(
            gup_locked(&mut m, buf, 1, GupFlags::empty(), &mut pages),
            Ok(1)
        );
        assert_eq!(names(&m, &pages), indexed("buf", 0..1), "{profile}");
        let mut b = [0u8; 5];
        m.phys.read(pages[0].addr(A::PAGE_SHIFT), &mut b).unwrap();
        assert_eq!(&b, b"hello");
        release(&mut m, &pages);
        // The zero page itself was not written.
        let mut z = [0xffu8; 16];
        m.phys
            .read(m.zero_pfn().addr(A::PAGE_SHIFT), &mut z)
            .unwrap();
        assert_eq!(z, [0u8; 16]);

        // gup with FOLL_WRITE on a read-faulted page breaks COW itself.
        read_fault(&mut m, page::<A>(buf, 1));
        let (r, got) = balanced(&mut m, false, "write", |m, v| {
            gup_locked(m, page::<A>(buf, 1), 1, GupFlags::FOLL_WRITE, v)
        });
        assert_eq!((r, got), (Ok(1), indexed("buf", 1..2)), "{profile}");
    }
}

/// `check_vma_flags` + `faultin_page` + `follow_page_mask` (§6 steps 4, 6,
/// 7): FOLL_WRITE on a VMA without VM_WRITE is -EFAULT unless FOLL_FORCE and
/// the VMA is a private (COW) mapping; then the write fault breaks COW
/// (VM_FAULT_WRITE → FOLL_COW) and gup returns a new anonymous copy, while
/// the file's page-cache page stays as it was and the PTE stays read-only
/// (the Dirty-COW rule: the caller's write goes to the copy only).
fn cow_foll_force_on_private_file<A: Arch>() {
    let p = A::PAGE_SIZE;
    for profile in PROFILES {
        let mut m = machine::<A>(profile);
        let f = m.create_file("f", 4 * p, FileOps::default());
        let pr = map(
            &mut m,
            None,
            4,
            Prot::R,
            MapFlags::default(),
            Backing::File { file: f, pgoff: 0 },
            "priv",
        );
        let mut b = [0u8; 4];
        assert_eq!(m.copy_from_user(&mut b, pr), 0);
        assert_eq!(b, [0, 1, 2, 3], "file pattern");
        let mut pages = Vec::new();
        assert_eq!(
            gup_locked(&mut m, pr, 1, GupFlags::empty(), &mut pages),
            Ok(1)
        );
        assert_eq!(names(&m, &pages), vec!["file:f[0]".to_string()]);
        let orig = pages[0];
        release(&mut m, &pages);

        // No FOLL_FORCE: -EFAULT, from the slow and the fast entry points.
        for start in [pr, page::<A>(pr, 1)] {
            let (r, _) = balanced(&mut m, false, "write", |m, v| {
                gup_locked(m, start, 1, GupFlags::FOLL_WRITE, v)
            });
            assert_eq!(r, Err(Errno::EFAULT), "{profile}");
            let (r, _) = balanced(&mut m, false, "write fast", |m, v| {
                m.get_user_pages_fast(start, 1, GupFlags::FOLL_WRITE, v)
            });
            assert_eq!(r, Err(Errno::EFAULT), "{profile}");
        }
        // A normal write through uaccess is refused (no VM_WRITE).
        assert_eq!(m.copy_to_user(pr, b"nope"), 4);

        // FOLL_FORCE|FOLL_WRITE: a private anonymous copy.
        let mut pages = Vec::new();
        let flags = GupFlags::FOLL_FORCE | GupFlags::FOLL_WRITE;
        assert_eq!(gup_locked(&mut m, pr, 1, flags, &mut pages), Ok(1));
        assert_eq!(names(&m, &pages), indexed("priv", 0..1), "{profile}");
        assert_ne!(pages[0], orig);
        // Write through the returned page (as ptrace's access_process_vm).
        m.phys.write(pages[0].addr(A::PAGE_SHIFT), b"poke").unwrap();
        release(&mut m, &pages);
        // The task now sees the copy ...
        assert_eq!(m.copy_from_user(&mut b, pr), 0);
        assert_eq!(&b, b"poke");
        // ... the page cache is unchanged ...
        assert_eq!(m.files[f as usize].pages.get(&0), Some(&orig));
        m.phys.read(orig.addr(A::PAGE_SHIFT), &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3]);
        // ... and the mapping is still read-only.
        assert_eq!(m.copy_to_user(pr, b"nope"), 4);
        // A second forced write reuses the exclusive copy.
        let mut pages = Vec::new();
        assert_eq!(gup_locked(&mut m, pr, 1, flags, &mut pages), Ok(1));
        assert_eq!(names(&m, &pages), indexed("priv", 0..1));
        release(&mut m, &pages);
        // Not yet faulted: FOLL_FORCE write → do_cow_fault copy.
        let mut pages = Vec::new();
        assert_eq!(
            gup_locked(&mut m, page::<A>(pr, 2), 1, flags, &mut pages),
            Ok(1)
        );
        assert_eq!(names(&m, &pages), indexed("priv", 2..3), "{profile}");
        release(&mut m, &pages);
        assert_eq!(m.held_total(), (0, 0));

        // FOLL_FORCE does not apply to a shared mapping.
        let sh = map(
            &mut m,
            None,
            1,
            Prot::R,
            MapFlags {
                shared: true,
                ..MapFlags::default()
            },
            Backing::File { file: f, pgoff: 0 },
            "shared",
        );
        let (r, _) = balanced(&mut m, false, "shared", |m, v| {
            gup_locked(m, sh, 1, flags, v)
        });
        assert_eq!(r, Err(Errno::EFAULT), "{profile}");
    }
}

// ----------------------------------------------------------------------
// 5. page_mkwrite and fault retry
// ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mkwrite {
    /// The write fault succeeds.
    Ok,
    /// VM_FAULT_SIGBUS: uaccess is short, gup -EFAULT.
    Sigbus,
    /// VM_FAULT_OOM: gup -ENOMEM.
    Oom,
    /// VM_FAULT_NOPAGE: the fault "succeeds" without mapping anything; the
    /// kernel retries forever.
    NoPage,
}

/// `do_page_mkwrite` and `block_page_mkwrite_return` (§7): 0 → LOCKED
/// (success); -EFAULT/-EAGAIN → NOPAGE; -ENOMEM → OOM; anything else
/// (-ENOSPC, -EDQUOT, -EIO) → SIGBUS, which GUP maps to -EFAULT and uaccess
/// to a short copy. A handler returning RETRY is a contract violation
/// (do_page_mkwrite cleared ALLOW_RETRY; the thread's point G): the kernel
/// does not look at the bit, locks the page and succeeds — recorded as
/// `kernel_bug`. NOPAGE means "handled, retry the access": with a handler
/// that keeps returning it, the kernel restarts the access forever (uaccess)
/// or loops in `__get_user_pages` (follow_page → faultin_page → 0 → retry),
/// reported as `soft_lockup` with a short copy / -EFAULT. Checked for both
/// the first write fault of a shared file page (`do_shared_fault`) and a
/// write to a page mapped read-only (`wp_page_shared`).
fn page_mkwrite_codes<A: Arch>() {
    let p = A::PAGE_SIZE;
    let cases = [
        (MkwriteBehaviour::None, Mkwrite::Ok),
        (MkwriteBehaviour::Errno(None), Mkwrite::Ok),
        (
            MkwriteBehaviour::Errno(Some(Errno::ENOSPC)),
            Mkwrite::Sigbus,
        ),
        (
            MkwriteBehaviour::Errno(Some(Errno::EDQUOT)),
            Mkwrite::Sigbus,
        ),
        (MkwriteBehaviour::Errno(Some(Errno::EIO)), Mkwrite::Sigbus),
        (MkwriteBehaviour::Errno(Some(Errno::ENOMEM)), Mkwrite::Oom),
        (
            MkwriteBehaviour::Errno(Some(Errno::EFAULT)),
            Mkwrite::NoPage,
        ),
        (
            MkwriteBehaviour::Errno(Some(Errno::EAGAIN)),
            Mkwrite::NoPage,
        ),
        (MkwriteBehaviour::Raw(VmFault::RETRY), Mkwrite::Ok),
    ];
    for profile in PROFILES {
        for (behaviour, expect) in cases {
            let ctx = format!("{profile} {:?} {behaviour:?}", A::ID);
            let mut m = machine::<A>(profile);
            let ops = FileOps {
                page_mkwrite: behaviour,
                ..FileOps::default()
            };
            let f = m.create_file("f", 4 * p, ops);
            let sh = map(
                &mut m,
                None,
                4,
                Prot::RW,
                MapFlags {
                    shared: true,
                    ..MapFlags::default()
                },
                Backing::File { file: f, pgoff: 0 },
                "sh",
            );
            let retry_bug = behaviour == MkwriteBehaviour::Raw(VmFault::RETRY);

            // The handler's code as do_page_mkwrite returns it.
            let (pfn, _) = m.find_or_read_page(f, 3).unwrap();
            let r = m.do_page_mkwrite(f, pfn, FaultFlags::WRITE | FaultFlags::ALLOW_RETRY);
            let want = match (behaviour, expect) {
                (_, Mkwrite::Ok) if retry_bug => VmFault::RETRY | VmFault::LOCKED,
                (_, Mkwrite::Ok) => VmFault::LOCKED,
                (_, Mkwrite::Sigbus) => VmFault::SIGBUS,
                (_, Mkwrite::Oom) => VmFault::OOM,
                (_, Mkwrite::NoPage) => VmFault::NOPAGE,
            };
            assert_eq!(r, want, "{ctx}");
            assert_eq!(
                count(&m, EventKind::KernelBug),
                usize::from(retry_bug),
                "{ctx}"
            );
            m.events.clear();

            // First write fault (do_shared_fault) through uaccess.
            let left = m.copy_to_user(sh, &[0xaa; 100]);
            let uaccess_ok = expect == Mkwrite::Ok;
            assert_eq!(left, if uaccess_ok { 0 } else { 100 }, "{ctx}");
            // NOPAGE is "handled": the kernel restarts the access forever.
            assert_eq!(
                count(&m, EventKind::SoftLockup),
                usize::from(expect == Mkwrite::NoPage),
                "{ctx}: {:?}",
                m.events
            );
            m.events.retain(|e| e.kind != EventKind::SoftLockup);
            // First write fault through gup.
            let (r, got) = balanced(&mut m, false, "gup write", |m, v| {
                gup_locked(m, page::<A>(sh, 1), 1, GupFlags::FOLL_WRITE, v)
            });
            match expect {
                Mkwrite::Ok => {
                    assert_eq!((r, got), (Ok(1), vec!["file:f[1]".to_string()]), "{ctx}")
                }
                Mkwrite::Sigbus => assert_eq!(r, Err(Errno::EFAULT), "{ctx}"),
                Mkwrite::Oom => assert_eq!(r, Err(Errno::ENOMEM), "{ctx}"),
                Mkwrite::NoPage => {
                    assert_eq!(r, Err(Errno::EFAULT), "{ctx}");
                    assert!(
                        count(&m, EventKind::SoftLockup) > 0,
                        "{ctx}: the kernel spins"
                    );
                }
            }
            // A write to a page mapped read-only by a read fault (wp_page_shared).
            let ro = page::<A>(sh, 2);
            read_fault(&mut m, ro);
            assert_eq!(
                m.copy_to_user(ro, &[0xbb; 10]),
                if uaccess_ok { 0 } else { 10 },
                "{ctx}"
            );
            read_fault(&mut m, page::<A>(sh, 3));
            let (r, _) = balanced(&mut m, false, "gup wp", |m, v| {
                gup_locked(m, page::<A>(sh, 3), 1, GupFlags::FOLL_WRITE, v)
            });
            let want = match expect {
                Mkwrite::Ok => Ok(1),
                Mkwrite::Oom => Err(Errno::ENOMEM),
                _ => Err(Errno::EFAULT),
            };
            assert_eq!(r, want, "{ctx}");
            if expect == Mkwrite::Ok {
                // Written data landed in the page-cache page.
                let pfn = m.files[f as usize].pages[&0];
                let mut b = [0u8; 4];
                m.phys.read(pfn.addr(A::PAGE_SHIFT), &mut b).unwrap();
                assert_eq!(b, [0xaa; 4], "{ctx}");
            }
            assert_eq!(
                count(&m, EventKind::KernelBug) > 0,
                retry_bug,
                "{ctx}: {:?}",
                m.events
            );
            assert_eq!(m.held_total(), (0, 0));
            assert_eq!(m.locks.held_by(m.current), Vec::<String>::new());
        }
    }
}

/// `lock_page_or_retry` / VM_FAULT_RETRY (§6 steps 7, 9; §7): with a
/// `locked` pointer (get_user_pages_unlocked) the fault may drop mmap_sem and
/// return RETRY; `__get_user_pages` then returns what it has with
/// `*locked == 0`, and the locked loop re-takes mmap_sem and faults the page
/// again with FOLL_TRIED, which succeeds. Nothing is left held. Without
/// `locked` (get_user_pages, caller holds mmap_sem) ALLOW_RETRY is never set,
/// so RETRY never happens and mmap_sem is never dropped under the caller.
fn fault_retry_drops_mmap_sem<A: Arch>() {
    let p = A::PAGE_SIZE;
    for profile in PROFILES {
        let ctx = format!("{profile} {:?}", A::ID);
        let mut m = machine::<A>(profile);
        let mm = m.current_mm();
        let me = m.current;
        let ops = FileOps {
            fault_retry: true,
            ..FileOps::default()
        };
        let f = m.create_file("f", 8 * p, ops);
        let buf = map(
            &mut m,
            None,
            8,
            Prot::R,
            MapFlags::default(),
            Backing::File { file: f, pgoff: 0 },
            "fm",
        );
        // The drop itself, one level down.
        m.mmap_read_lock(mm).unwrap();
        let mut locked = true;
        let mut pages = Vec::new();
        let r = m.__get_user_pages(
            mm,
            buf,
            2,
            GupFlags::FOLL_GET | GupFlags::FOLL_TOUCH,
            Some(&mut pages),
            Some(&mut locked),
        );
        assert_eq!(r, Ok(0), "{ctx}: RETRY before any page");
        assert!(!locked, "{ctx}: *locked cleared");
        assert!(
            !m.holds_mmap_sem(mm),
            "{ctx}: the fault handler dropped mmap_sem"
        );
        assert!(pages.is_empty());

        // get_user_pages_unlocked retries and succeeds; nothing held after.
        let (r, got) = balanced(&mut m, false, "unlocked", |m, v| {
            m.get_user_pages_unlocked(buf, 3, v, GupFlags::empty())
        });
        assert_eq!((r, got), (Ok(3), indexed("file:f", 0..3)), "{ctx}");
        assert!(!m.holds_mmap_sem(mm), "{ctx}");
        assert_eq!(m.locks.held_by(me), Vec::<String>::new(), "{ctx}");
        assert!(!m.locks.is_blocked(me));
        // The fast path's fallback is the same loop.
        let (r, got) = balanced(&mut m, false, "fast", |m, v| {
            m.get_user_pages_fast(page::<A>(buf, 3), 2, GupFlags::empty(), v)
        });
        assert_eq!((r, got), (Ok(2), indexed("file:f", 3..5)), "{ctx}");
        assert_eq!(m.locks.held_by(me), Vec::<String>::new(), "{ctx}");

        // get_user_pages: the caller's mmap_sem is never dropped.
        m.mmap_read_lock(mm).unwrap();
        let mut pages = Vec::new();
        let r = m.get_user_pages(page::<A>(buf, 5), 3, GupFlags::empty(), &mut pages);
        assert_eq!(r, Ok(3), "{ctx}");
        assert_eq!(names(&m, &pages), indexed("file:f", 5..8), "{ctx}");
        assert!(m.holds_mmap_sem(mm), "{ctx}: still held by the caller");
        m.mmap_read_unlock(mm);
        release(&mut m, &pages);
        assert_eq!(m.locks.held_by(me), Vec::<String>::new());
        assert_eq!(count(&m, EventKind::KernelBug), 0, "{ctx}: {:?}", m.events);
    }
}

// ----------------------------------------------------------------------
// 6. find_extend_vma, kernel addresses
// ----------------------------------------------------------------------

/// gup's VMA lookup (§6 step 2): v4.10/v4.17 `find_extend_vma` grows a
/// VM_GROWSDOWN VMA down to an address just below it, so gup there
/// succeeds; 6.x `gup_vma_lookup` never grows the stack (8d7071af8907) →
/// -EFAULT (the user fault path still grows it). A kernel address never has
/// a VMA (every VMA ends below TASK_SIZE) → -EFAULT from the slow path,
/// under USER_DS and KERNEL_DS; the only exception is the x86-64 v4.10 gate
/// page (vsyscall), readable without a VMA.
fn growsdown_stack_and_kernel_addresses<A: Arch>() {
    let p = A::PAGE_SIZE;
    for profile in PROFILES {
        let ctx = format!("{profile} {:?}", A::ID);
        let grows = profile != "v6.13";
        for entry in 0..3 {
            let mut m = machine::<A>(profile);
            let mm = m.current_mm();
            let stack = map(
                &mut m,
                Some(FIXED),
                4,
                Prot::RW,
                MapFlags {
                    growsdown: true,
                    ..MapFlags::default()
                },
                Backing::Anon,
                "stack",
            );
            let below = VirtAddr(stack.0 - p);
            let mut pages = Vec::new();
            let r = match entry {
                0 => gup_locked(&mut m, below, 1, GupFlags::FOLL_WRITE, &mut pages),
                1 => m.get_user_pages_unlocked(below, 1, &mut pages, GupFlags::FOLL_WRITE),
                _ => m.get_user_pages_fast(below, 1, GupFlags::FOLL_WRITE, &mut pages),
            };
            let start = m.vma_at(mm, stack).unwrap().start;
            if grows {
                assert_eq!(r, Ok(1), "{ctx} entry {entry}");
                assert_eq!(start, below, "{ctx}: the stack grew");
                // The new page is part of the stack and usable.
                assert_eq!(m.copy_to_user(below, b"x"), 0);
            } else {
                assert_eq!(r, Err(Errno::EFAULT), "{ctx} entry {entry}");
                assert_eq!(start, stack, "{ctx}: the stack did not grow");
                assert!(m.find_vma(mm, below).is_some_and(|v| v.start == stack));
                // A user-mode style fault through uaccess still grows it.
                assert_eq!(m.copy_to_user(below, b"x"), 0, "{ctx}");
                assert_eq!(m.vma_at(mm, stack).unwrap().start, below);
            }
            release(&mut m, &pages);
            assert_eq!(m.held_total(), (0, 0));
        }

        // Kernel addresses: no VMA, -EFAULT from the slow path.
        for kernel_ds in [false, true] {
            let mut m = machine::<A>(profile);
            let mm = m.current_mm();
            let old = m.set_fs(kernel_ds);
            let kernel = [
                kaddr(&m, 256),
                VirtAddr(m.layout.page_offset + PHYS - p),
                VirtAddr(m.layout.vmalloc_start),
                VirtAddr(m.layout.page_offset),
                VirtAddr(!(p - 1)),
            ];
            for k in kernel {
                assert!(m.find_vma(mm, k).is_none(), "{ctx}: a VMA for {k}");
                for flags in [GupFlags::empty(), GupFlags::FOLL_WRITE] {
                    let (r, _) = balanced(&mut m, false, "kernel", |m, v| {
                        gup_locked(m, k, 1, flags, v)
                    });
                    assert_eq!(r, Err(Errno::EFAULT), "{ctx} {k} ds={kernel_ds}");
                    let (r, _) = balanced(&mut m, false, "kernel unlocked", |m, v| {
                        m.get_user_pages_unlocked(k, 2, v, flags)
                    });
                    assert_eq!(r, Err(Errno::EFAULT), "{ctx} {k} ds={kernel_ds}");
                }
            }
            // The gate area (x86-64 vsyscall page, v4.10 `vsyscall=emulate`).
            if let Some(v) = m.layout.vsyscall {
                let v = VirtAddr(v);
                let (r, got) = balanced(&mut m, false, "gate", |m, pv| {
                    gup_locked(m, v, 2, GupFlags::empty(), pv)
                });
                assert_eq!((r, got), (Ok(1), vec!["vsyscall".to_string()]), "{ctx}");
                let (r, _) = balanced(&mut m, false, "gate write", |m, pv| {
                    gup_locked(m, v, 1, GupFlags::FOLL_WRITE, pv)
                });
                assert_eq!(r, Err(Errno::EFAULT), "{ctx}");
            }
            m.restore_fs(old);
        }
    }
}

// ----------------------------------------------------------------------
// 7. VM_IO / VM_PFNMAP
// ----------------------------------------------------------------------

/// `check_vma_flags`: VM_IO or VM_PFNMAP → -EFAULT (§6 step 4); gup-fast
/// stops at the special PTE `remap_pfn_range` installs (§5.1 step 3, §5.2
/// step 2, §5.3 step 7) and its fallback then fails in the slow path. A
/// range that starts on normal pages keeps what the fast walk took. The
/// device frames' counts never change; uaccess still reads them (the MMU
/// maps them).
fn pfnmap_is_refused<A: Arch>() {
    let p = A::PAGE_SIZE;
    for profile in PROFILES {
        let ctx = format!("{profile} {:?}", A::ID);
        let mut m = machine::<A>(profile);
        // Two contiguous device frames (an order-1 allocation).
        let name = m.intern("dev");
        let d0 = m.phys.alloc(1, Owner::Kernel { name, index: 0 }).unwrap();
        let dev = [d0, Pfn(d0.0 + 1)];
        m.phys.write(dev[0].addr(A::PAGE_SHIFT), b"device").unwrap();
        let buf = map(
            &mut m,
            Some(FIXED),
            1,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "buf",
        );
        write_fault(&mut m, buf, 1);
        let io = map(
            &mut m,
            Some(FIXED + p),
            2,
            Prot::RW,
            MapFlags {
                shared: true,
                ..MapFlags::default()
            },
            Backing::Pfnmap { base: dev[0] },
            "dev",
        );
        let counts = |m: &Machine<A>| {
            dev.iter()
                .map(|&d| (m.phys.page(d).refcount, m.phys.page(d).pincount))
                .collect::<Vec<_>>()
        };
        let before = counts(&m);
        for flags in [GupFlags::empty(), GupFlags::FOLL_WRITE] {
            let (r, _) = balanced(&mut m, false, "gup", |m, v| gup_locked(m, io, 1, flags, v));
            assert_eq!(r, Err(Errno::EFAULT), "{ctx}");
            let (r, _) = balanced(&mut m, false, "fast", |m, v| {
                m.get_user_pages_fast(io, 2, flags, v)
            });
            assert_eq!(r, Err(Errno::EFAULT), "{ctx}");
            let (r, _) = balanced(&mut m, false, "fast-only", |m, v| {
                m.__get_user_pages_fast(io, 2, flags, v)
            });
            assert_eq!(r, Ok(0), "{ctx}: the walk stops at the special PTE");
            let (r, got) = balanced(&mut m, false, "partial", |m, v| {
                m.get_user_pages_fast(buf, 3, flags, v)
            });
            assert_eq!((r, got), (Ok(1), indexed("buf", 0..1)), "{ctx}");
            if profile == "v6.13" {
                let (r, _) = balanced(&mut m, true, "pin", |m, v| {
                    m.pin_user_pages_fast(io, 1, flags, v)
                });
                assert_eq!(r, Err(Errno::EFAULT), "{ctx}");
            }
        }
        assert_eq!(counts(&m), before, "{ctx}");
        let mut b = [0u8; 6];
        assert_eq!(m.copy_from_user(&mut b, io), 0);
        assert_eq!(&b, b"device");
    }
}

// ----------------------------------------------------------------------
// 8. uaccess
// ----------------------------------------------------------------------

/// `copy_to_user`/`copy_from_user` return the number of bytes NOT copied,
/// exact at the first byte whose page cannot be made accessible (the
/// exception-table fixup finishes byte-exact); `copy_from_user` zeroes the
/// uncopied tail of the kernel buffer. Under USER_DS an address beyond the
/// limit fails `access_ok` and nothing is copied (§4.3).
fn uaccess_short_copies<A: Arch>() {
    let p = A::PAGE_SIZE;
    for profile in PROFILES {
        let ctx = format!("{profile} {:?}", A::ID);
        let mut m = machine::<A>(profile);
        let mm = m.current_mm();
        let buf = anon(&mut m, 3, Prot::RW, "buf");
        m.munmap(mm, page::<A>(buf, 2), p).unwrap();
        // Mapped (not yet faulted) then unmapped.
        let start = VirtAddr(buf.0 + 2 * p - 100);
        let data: Vec<u8> = (0..300u32).map(|i| i as u8 | 1).collect();
        assert_eq!(m.copy_to_user(start, &data), 200, "{ctx}");
        let mut back = vec![0xeeu8; 300];
        assert_eq!(m.copy_from_user(&mut back, start), 200, "{ctx}");
        assert_eq!(&back[..100], &data[..100], "{ctx}");
        assert!(back[100..].iter().all(|&b| b == 0), "{ctx}: tail zeroed");
        assert_eq!(m.clear_user(start, 300), 200, "{ctx}");
        // Entirely unmapped: nothing copied, all zeroed.
        let mut back = vec![0xeeu8; 64];
        assert_eq!(m.copy_from_user(&mut back, page::<A>(buf, 2)), 64);
        assert_eq!(back, vec![0u8; 64]);
        // A read-only page: reads work, writes are short from its first byte.
        let ro = anon(&mut m, 2, Prot::RW, "ro");
        m.mprotect(mm, page::<A>(ro, 1), p, Prot::R).unwrap();
        assert_eq!(
            m.copy_to_user(VirtAddr(ro.0 + p - 10), &[7; 50]),
            40,
            "{ctx}"
        );
        let mut back = [0u8; 50];
        assert_eq!(m.copy_from_user(&mut back, VirtAddr(ro.0 + p - 10)), 0);
        assert_eq!(&back[..10], &[7; 10]);
        assert_eq!(&back[10..], &[0; 40], "zero page");
        // get_user/put_user: -EFAULT, no partial value.
        assert_eq!(m.get_user(page::<A>(buf, 2), 8), Err(Errno::EFAULT));
        assert_eq!(m.put_user(1, page::<A>(ro, 1), 8), Err(Errno::EFAULT));
        assert_eq!(m.put_user(0x1122, buf, 8), Ok(()));
        assert_eq!(m.get_user(buf, 8), Ok(0x1122));

        // A kernel address under USER_DS: access_ok fails, nothing copied.
        let frame = m.alloc_kernel_pages("kbuf", 1).unwrap()[0];
        m.phys
            .write(frame.addr(A::PAGE_SHIFT), b"kernel secret")
            .unwrap();
        let k = m.page_address(frame);
        let mut back = [0xeeu8; 13];
        assert_eq!(m.copy_from_user(&mut back, k), 13, "{ctx}");
        assert_eq!(back, [0u8; 13]);
        assert_eq!(m.copy_to_user(k, b"overwrite"), 9, "{ctx}");
        let mut b = [0u8; 13];
        m.phys.read(frame.addr(A::PAGE_SHIFT), &mut b).unwrap();
        assert_eq!(&b, b"kernel secret");
        assert_eq!(m.get_user(k, 8), Err(Errno::EFAULT));
        // Straddling TASK_SIZE: nothing (access_ok covers the whole range),
        // except on v4.10 ppc64 whose access_ok does not check addr + size.
        let top_at = m.layout.task_size_max - p;
        let top = map(
            &mut m,
            Some(top_at),
            1,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "top",
        );
        let s = VirtAddr(top.0 + p - 8);
        let left = m.copy_to_user(s, &[1; 16]);
        let ppc_legacy = matches!(A::ID, ArchId::Ppc64 | ArchId::Ppc64_4k) && profile != "v6.13";
        assert_eq!(left, if ppc_legacy { 8 } else { 16 }, "{ctx}");
        assert!(m.events.is_empty(), "{ctx}: {:?}", m.events);
    }
}

/// `set_fs(KERNEL_DS)` (v4.x, §4.2): `access_ok` passes for kernel
/// addresses and copy_{from,to}_user access kernel memory through the
/// direct map on every arch (x86: the shared kernel half of the pgd; arm64:
/// TTBR1; powerpc radix: quadrant 3). set_fs no longer exists in 6.x (x86
/// 5.10, arm64 5.11): the limit stays USER_DS and nothing is copied.
/// Restoring the old limit works.
fn uaccess_set_fs<A: Arch>() {
    for profile in PROFILES {
        let ctx = format!("{profile} {:?}", A::ID);
        let mut m = machine::<A>(profile);
        let frame = m.alloc_kernel_pages("kbuf", 1).unwrap()[0];
        let pattern: Vec<u8> = (0..64u8).map(|i| i ^ 0x5a).collect();
        m.phys.write(frame.addr(A::PAGE_SHIFT), &pattern).unwrap();
        let k = m.page_address(frame);
        let user_ds = m.task().addr_limit;
        assert_eq!(user_ds, m.layout.user_ds);

        let old = m.set_fs(true);
        assert_eq!(old, user_ds);
        let has_set_fs = profile != "v6.13";
        assert_eq!(m.under_kernel_ds(), has_set_fs, "{ctx}");
        let mut back = vec![0xeeu8; 64];
        let left = m.copy_from_user(&mut back, k);
        if has_set_fs {
            assert_eq!(left, 0, "{ctx}");
            assert_eq!(back, pattern, "{ctx}: reads the real kernel memory");
            assert_eq!(m.copy_to_user(VirtAddr(k.0 + 100), b"written"), 0, "{ctx}");
            let mut b = [0u8; 7];
            m.phys
                .read(frame.addr(A::PAGE_SHIFT).add(100), &mut b)
                .unwrap();
            assert_eq!(&b, b"written");
            assert_eq!(m.get_user(k, 1), Ok(u64::from(pattern[0])));
        } else {
            assert_eq!(left, 64, "{ctx}: set_fs has no effect");
            assert_eq!(back, vec![0u8; 64]);
            assert_eq!(m.copy_to_user(k, b"written"), 7, "{ctx}");
        }
        m.restore_fs(old);
        assert_eq!(m.task().addr_limit, user_ds);
        assert!(!m.under_kernel_ds());
        let mut back = vec![0xeeu8; 64];
        assert_eq!(m.copy_from_user(&mut back, k), 64, "{ctx}: USER_DS again");
        assert!(m.events.is_empty(), "{ctx}: {:?}", m.events);
    }
}

// ----------------------------------------------------------------------
// 9. mmap_sem: recursive read behind a queued writer
// ----------------------------------------------------------------------

/// rwsem fairness (§8): a reader is admitted at once only if no writer
/// holds the lock and no waiter is queued. A task holding mmap_sem for read
/// whose copy_to_user faults (do_page_fault → down_read/mmap_read_lock)
/// after another task queued down_write deadlocks: the writer waits for the
/// outer hold, the inner read waits behind the writer. The emulator reports
/// the cycle as a `deadlock` event and the copy comes back short. Without a
/// queued writer the recursive read is fine, and a copy that needs no fault
/// never takes the lock.
fn mmap_sem_recursive_read_deadlock<A: Arch>() {
    for profile in PROFILES {
        let ctx = format!("{profile} {:?}", A::ID);
        let mut m = machine::<A>(profile);
        let mm = m.current_mm();
        let me = m.current;
        let other = m.new_task(mm);
        let buf = anon(&mut m, 3, Prot::RW, "buf");
        write_fault(&mut m, buf, 1);

        // Holding read, no writer queued: a faulting copy is fine.
        m.locks.down_read(me, mm).unwrap();
        assert_eq!(m.copy_to_user(page::<A>(buf, 1), b"ok"), 0, "{ctx}");
        // A writer queues behind our hold.
        assert_eq!(
            m.locks.down_write(other, mm),
            Ok(vmemu_mm::sync::Acquire::Queued)
        );
        // No fault needed: no lock taken, no deadlock.
        assert_eq!(m.copy_to_user(buf, b"present"), 0, "{ctx}");
        assert!(m.events.is_empty(), "{ctx}: {:?}", m.events);
        // gup-fast of present pages takes no lock either.
        let mut pages = Vec::new();
        assert_eq!(
            m.get_user_pages_fast(buf, 2, GupFlags::empty(), &mut pages),
            Ok(2)
        );
        release(&mut m, &pages);
        assert!(m.events.is_empty(), "{ctx}: {:?}", m.events);
        // A fault: mmap_read_lock queues behind the writer → deadlock.
        assert_eq!(m.copy_to_user(page::<A>(buf, 2), &[1; 32]), 32, "{ctx}");
        assert_eq!(count(&m, EventKind::Deadlock), 1, "{ctx}: {:?}", m.events);
        let d = m.locks.deadlock().expect("a cycle");
        let mut tasks = d.tasks();
        tasks.sort();
        assert_eq!(tasks, vec![me, other], "{ctx}: {d}");
        assert!(m.locks.is_blocked(me));
        assert!(m.locks.is_blocked(other));
    }
    // The lock primitive itself: Errno 35 (EDEADLK) stands for "never returns".
    let mut m = machine::<A>("v4.10");
    let mm = m.current_mm();
    let me = m.current;
    let other = m.new_task(mm);
    m.locks.down_read(me, mm).unwrap();
    m.locks.down_write(other, mm).unwrap();
    assert_eq!(m.mmap_read_lock(mm), Err(Errno(35)));
    assert_eq!(count(&m, EventKind::Deadlock), 1);
    // The slow path through gup-fast's fallback reports the same.
    let mut m = machine::<A>("v6.13");
    let mm = m.current_mm();
    let me = m.current;
    let other = m.new_task(mm);
    let buf = anon(&mut m, 1, Prot::RW, "buf");
    m.locks.down_read(me, mm).unwrap();
    m.locks.down_write(other, mm).unwrap();
    let mut pages = Vec::new();
    assert_eq!(
        m.get_user_pages_fast(buf, 1, GupFlags::FOLL_WRITE, &mut pages),
        Err(Errno(35))
    );
    assert_eq!(count(&m, EventKind::Deadlock), 1);
    assert!(pages.is_empty());
}

/// CVE-2019-11487 through gup alone, with a 12-bit `_refcount`: without
/// the 5.1 checks 4095 gup references on top of the mapping's wrap the
/// counter to 0 (gup-fast's speculative get then refuses: it looks free),
/// the slow path's `get_page` takes it to 1, and the mapping's put frees
/// the page under 4096 held references; the invariant checker says so by
/// itself. With the checks, gup stops at a signed count <= 0 (-ENOMEM) and
/// the page is never freed early.
fn narrow_refcount_gup_wrap<A: Arch>() {
    for (profile, checked) in [
        ("v4.17+small-refcount", false),
        ("v4.17+small-refcount+refcount-checks", true),
    ] {
        let mut m = machine::<A>(profile);
        let mm = m.current_mm();
        let buf = anon(&mut m, 1, Prot::RW, "buf");
        write_fault(&mut m, buf, 1);
        let pfn = Pfn(m.user_pa(mm, buf).unwrap().0 >> A::PAGE_SHIFT);
        let mut pages = Vec::new();
        let mut refused = None;
        for k in 0..4096u32 {
            match m.get_user_pages(buf, 1, GupFlags::empty(), &mut pages) {
                Ok(1) => {}
                other => {
                    refused = Some((k, other));
                    break;
                }
            }
        }
        if checked {
            // 1 + 2047 = 2048 reads as -2048: the 2048th get is refused.
            assert_eq!(refused, Some((2047, Err(Errno::ENOMEM))), "{profile}");
            assert_eq!(m.phys.page_ref_count(pfn), -2048);
            assert_eq!(m.madvise_dontneed(mm, buf, A::PAGE_SIZE), Ok(()));
            assert!(!m.phys.page(pfn).flags.contains(PageFlags::FREE));
            assert!(m.check_invariants().is_ok(), "{profile}");
        } else {
            assert_eq!(refused, None, "{profile}");
            assert_eq!(m.phys.page_ref_count(pfn), 1, "4097 references read as 1");
            assert_eq!(m.madvise_dontneed(mm, buf, A::PAGE_SIZE), Ok(()));
            assert!(m.phys.page(pfn).flags.contains(PageFlags::FREE));
            let errs = m.check_invariants().unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.contains("freed while 4096 references")),
                "{errs:?}"
            );
        }
        for p in pages {
            let _ = m.put_page(p);
        }
        assert_eq!(m.held_total(), (0, 0), "{profile}");
        assert_eq!(m.phys.stale_frames(), Vec::new(), "{profile}");
    }
}

/// A kernel-mode write into a page table (`copy_to_user` under KERNEL_DS to
/// its direct-map address) is a `kernel_bug` every time, not only the first
/// time the translation is made (uaccess checks a frame once per cached
/// translation, and a frame found bad is never taken as checked); writes
/// to an ordinary user page are none, also once the address is unmapped
/// and mapped again (a new page, a new translation).
fn kernel_writes_are_checked_per_write<A: Arch>() {
    let mut m = machine::<A>("v4.10");
    let mm = m.current_mm();
    let buf = anon::<A>(&mut m, 1, Prot::RW, "buf");
    write_fault::<A>(&mut m, buf, 1);
    for _ in 0..3 {
        assert_eq!(m.copy_to_user(buf, &[1; 16]), 0);
    }
    assert_eq!(count(&m, EventKind::KernelBug), 0, "{:?}", m.events);
    // The newest page-table frame (the leaf table of `buf`).
    let table = (0..m.phys.high_water())
        .rev()
        .find(|&f| matches!(m.phys.page(Pfn(f)).owner, Owner::PageTable { .. }))
        .expect("a page-table frame");
    let old = m.set_fs(true);
    let at = kaddr::<A>(&m, table);
    for k in 1..=3 {
        assert_eq!(m.copy_to_user(at, &[0; 8]), 0);
        assert_eq!(
            count(&m, EventKind::KernelBug),
            k,
            "write {k}: {:?}",
            m.events
        );
    }
    // The user page's frame freed, then the same user address again: a
    // fresh page, written without an event.
    m.restore_fs(old);
    m.munmap(mm, buf, A::PAGE_SIZE).unwrap();
    let again = map::<A>(
        &mut m,
        Some(buf.0),
        1,
        Prot::RW,
        MapFlags::default(),
        Backing::Anon,
        "again",
    );
    assert_eq!(again, buf);
    assert_eq!(m.copy_to_user(buf, &[2; 16]), 0);
    assert_eq!(count(&m, EventKind::KernelBug), 3, "{:?}", m.events);
}
