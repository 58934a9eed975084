//! The per-arch outcome matrix of gup-fast: cases (a)–(e) × x86_64 / arm64 /
//! ppc64 (both page sizes) × `get_user_pages_fast` / `__get_user_pages_fast`
//! (6.x: `get_user_pages_fast_only`) × v4.10 / v6.13 / v6.18, plus the thread's fix
//! (`+capper`). Each expectation is a cell of the reference matrix; the
//! comment on each row says why.
//!
//! Case definitions (P = PAGE_SIZE, nr = 2):
//! (a) a mapped, present user buffer under USER_DS;
//! (b) a kernel direct-map address under USER_DS;
//! (c) the same under KERNEL_DS, with an unrelated user mapping `victim`
//!     placed at the address the software walk aliases it to (arm64: kaddr
//!     mod 2^48, powerpc: kaddr mod 2^52; x86 has no alias: the walk reaches
//!     the shared kernel half of the pgd);
//! (d) start = 2^64 − P (the range wraps);
//! (e) start = TASK_SIZE − P with that page mapped (straddles TASK_SIZE).

use vmemu_arch::{
    Arch, ArchId, Arm64, Arm64_16k, Arm64_52, Ppc64, Ppc64_4k, VirtAddr, X86_64, X86_64La57,
};
use vmemu_mm::{Backing, Errno, EventKind, GupFlags, KernelProfile, Machine, MapFlags, Prot};

/// An outcome: the return value and the symbolic names of the pages taken.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    ret: Result<u64, Errno>,
    pages: Vec<String>,
    overrun: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    A,
    B,
    C,
    D,
    E,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Gupf,
    UnderGupf,
}

/// Frame of the direct map used as the kernel address (its alias must be a
/// mappable user address on every arch).
const KPFN: u64 = 256;

fn run<A: Arch>(profile: &str, case: Case, entry: Entry, kernel_ds: bool) -> Outcome {
    let p = KernelProfile::parse(profile).unwrap();
    let mut m = Machine::<A>::new(p, 64 << 20).unwrap();
    let mm = m.current_mm();
    let page = A::PAGE_SIZE;
    let layout = m.layout;
    let kaddr = VirtAddr(layout.page_offset + KPFN * page);
    let (start, map_at, map_len) = match case {
        Case::A => (None, None, 2 * page),
        Case::B | Case::C => {
            // The software walk's alias: the index bits of the top level and
            // below, i.e. kaddr mod 2^(va bits).
            let alias = kaddr.0 & ((1u64 << A::va_bits()) - 1);
            (Some(kaddr), Some(VirtAddr(alias)), 2 * page)
        }
        Case::D => (Some(VirtAddr(0u64.wrapping_sub(page))), None, 2 * page),
        Case::E => {
            let s = layout.task_size_max - page;
            (Some(VirtAddr(s)), Some(VirtAddr(s)), page)
        }
    };
    let name = if matches!(case, Case::B | Case::C) {
        "victim"
    } else {
        "buf"
    };
    let has_alias = A::ID.mmu() != ArchId::X86_64;
    let buf = if matches!(case, Case::B | Case::C) && !has_alias {
        // x86: no alias; map the victim anywhere, it must not be found.
        m.mmap(
            mm,
            None,
            map_len,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            name,
        )
        .unwrap()
    } else {
        m.mmap(
            mm,
            map_at,
            map_len,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            name,
        )
        .unwrap()
    };
    // Fault the pages in (written, so they are present, writable, dirty).
    assert_eq!(m.clear_user(buf, map_len), 0);
    let start = start.unwrap_or(buf);
    let old = m.set_fs(kernel_ds);
    let mut pages = Vec::new();
    let ret = match entry {
        Entry::Gupf => m.get_user_pages_fast(start, 2, GupFlags::empty(), &mut pages),
        Entry::UnderGupf => m.__get_user_pages_fast(start, 2, GupFlags::empty(), &mut pages),
    };
    m.restore_fs(old);
    let names = pages.iter().map(|&p| m.page_name(p)).collect();
    let overrun = m.events.iter().any(|e| e.kind == EventKind::TableOverrun);
    for &p in &pages {
        m.put_page(p).unwrap();
    }
    assert_eq!(m.held_total(), (0, 0), "references balance");
    Outcome {
        ret,
        pages: names,
        overrun,
    }
}

fn ok(n: u64, pages: &[&str]) -> Outcome {
    Outcome {
        ret: Ok(n),
        pages: pages.iter().map(|s| s.to_string()).collect(),
        overrun: false,
    }
}
fn err(e: Errno) -> Outcome {
    Outcome {
        ret: Err(e),
        pages: vec![],
        overrun: false,
    }
}
fn overrun(mut o: Outcome) -> Outcome {
    o.overrun = true;
    o
}

const BOTH: [&str; 2] = ["buf[0]", "buf[1]"];
const VICTIM: [&str; 2] = ["victim[0]", "victim[1]"];

/// Cells shared by every arch.
fn common(profile: &str, case: Case, entry: Entry, kds: bool) -> Option<Outcome> {
    // v6.18 has v6.13's gup_fast_fallback range checks.
    let modern = profile.starts_with("v6.");
    Some(match (case, entry) {
        // (a): all present user pages, from both entry points.
        (Case::A, _) => ok(2, &BOTH),
        // Modern: end > TASK_SIZE_MAX → -EFAULT, no partial result, either DS.
        (Case::B | Case::C | Case::E, _) if modern => err(Errno::EFAULT),
        // Modern: start + len overflows → -EOVERFLOW.
        (Case::D, _) if modern => err(Errno::EOVERFLOW),
        // v4.10 (b): the range check fails (x86 end >= 2^47; arm64 access_ok
        // limit 2^48; ppc64 addr <= 2^46 - 1) → nothing fast; the slow path
        // finds no VMA for a kernel address.
        (Case::B, Entry::Gupf) => err(Errno::EFAULT),
        (Case::B, Entry::UnderGupf) => ok(0, &[]),
        // +capper: no wrap and end <= TASK_SIZE, instead of access_ok.
        (Case::C, Entry::Gupf) if profile.contains("capper") => err(Errno::EFAULT),
        (Case::C, Entry::UnderGupf) if profile.contains("capper") => ok(0, &[]),
        // +capper (e): end = TASK_SIZE + P fails the check → nothing fast (no
        // overrun on arm64, no walk past 2^46 on ppc64); GUPF's slow path
        // pins page 1 and finds no VMA for page 2.
        (Case::E, Entry::Gupf) if profile.contains("capper") => ok(1, &["buf[0]"]),
        (Case::E, Entry::UnderGupf) if profile.contains("capper") => ok(0, &[]),
        _ => {
            let _ = kds;
            return None;
        }
    })
}

fn expect_x86(profile: &str, case: Case, entry: Entry, kds: bool) -> Outcome {
    if let Some(o) = common(profile, case, entry, kds) {
        return o;
    }
    match (case, entry) {
        // (c) GUPF ignores addr_limit: end >= 2^47 → slow → no VMA.
        (Case::C, Entry::Gupf) => err(Errno::EFAULT),
        // (c) __GUPF: access_ok passes under KERNEL_DS, the walk reaches the
        // shared kernel half; the direct-map leaf lacks _PAGE_USER → 0.
        (Case::C, Entry::UnderGupf) => ok(0, &[]),
        // (d) end < start → slow → no VMA at 2^64 - P.
        (Case::D, Entry::Gupf) => err(Errno::EFAULT),
        // (d) access_ok sees the carry → 0.
        (Case::D, Entry::UnderGupf) => ok(0, &[]),
        // (e) end = 2^47 → entirely slow: page 1, then no VMA → 1.
        (Case::E, Entry::Gupf) => ok(1, &["buf[0]"]),
        // (e) __GUPF: USER_DS access_ok fails; KERNEL_DS walk pins page 1,
        // page 2's PTE is absent → 1.
        (Case::E, Entry::UnderGupf) if kds => ok(1, &["buf[0]"]),
        (Case::E, Entry::UnderGupf) => ok(0, &[]),
        _ => unreachable!(),
    }
}

fn expect_arm64(profile: &str, case: Case, entry: Entry, kds: bool) -> Outcome {
    if let Some(o) = common(profile, case, entry, kds) {
        return o;
    }
    match (case, entry) {
        // (c) access_ok passes; the walk of the user TTBR0 table at kaddr mod
        // 2^48 pins the unrelated user pages.
        (Case::C, _) => ok(2, &VICTIM),
        // (d) the 65-bit access_ok fails under both DS.
        (Case::D, Entry::Gupf) => err(Errno::EFAULT),
        (Case::D, Entry::UnderGupf) => ok(0, &[]),
        // (e) USER_DS: access_ok fails → slow: page 1, then no VMA → 1.
        (Case::E, Entry::Gupf) if !kds => ok(1, &["buf[0]"]),
        (Case::E, Entry::UnderGupf) if !kds => ok(0, &[]),
        // (e) KERNEL_DS: page 1 pinned fast, then the pgd pointer steps to
        // index 512, past the table (hazard reported); slow for page 2 → 1.
        (Case::E, _) => overrun(ok(1, &["buf[0]"])),
        _ => unreachable!(),
    }
}

fn expect_ppc64(profile: &str, case: Case, entry: Entry, kds: bool) -> Outcome {
    if let Some(o) = common(profile, case, entry, kds) {
        return o;
    }
    match (case, entry) {
        // (c) access_ok (all ones) passes; the walk of mm->pgd at kaddr mod
        // 2^52 pins the unrelated user pages.
        (Case::C, _) => ok(2, &VICTIM),
        // (d) USER_DS: addr > seg → slow → no VMA. KERNEL_DS: access_ok has
        // no sum check and passes; the walk starts at pgd slot 8191, empty →
        // 0 → slow → no VMA.
        (Case::D, Entry::Gupf) => err(Errno::EFAULT),
        (Case::D, Entry::UnderGupf) => ok(0, &[]),
        // (e) access_ok passes even under USER_DS (addr <= seg, size <= seg):
        // page 1 pinned fast, page 2 at 2^46 is pgd slot 128 (empty) → stop;
        // the slow path finds no VMA for it → 1.
        (Case::E, _) => ok(1, &["buf[0]"]),
        _ => unreachable!(),
    }
}

fn check<A: Arch>(expect: fn(&str, Case, Entry, bool) -> Outcome) {
    check_in::<A>(&["v4.10", "v4.10+capper", "v6.13", "v6.18"], expect);
}

/// The matrix under `profiles` (a geometry variant: the profiles whose
/// kernel has it, `KernelProfile::supports_arch`).
fn check_in<A: Arch>(profiles: &[&str], expect: fn(&str, Case, Entry, bool) -> Outcome) {
    let mut failures = Vec::new();
    for &profile in profiles {
        let p = KernelProfile::parse(profile).unwrap();
        assert!(p.supports_arch(A::ID).is_ok(), "{} {profile}", A::ID);
        for case in [Case::A, Case::B, Case::C, Case::D, Case::E] {
            for entry in [Entry::Gupf, Entry::UnderGupf] {
                // (c) is the KERNEL_DS case; the others run under both.
                let dss: &[bool] = match case {
                    Case::B => &[false],
                    Case::C => &[true],
                    _ => &[false, true],
                };
                for &kds in dss {
                    let got = run::<A>(profile, case, entry, kds);
                    let want = expect(profile, case, entry, kds);
                    if got != want {
                        failures.push(format!(
                            "{} {profile} {case:?} {entry:?} kernel_ds={kds}: got {got:?}, want {want:?}",
                            A::ID
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn matrix_x86_64() {
    check::<X86_64>(expect_x86);
}

#[test]
fn matrix_arm64() {
    check::<Arm64>(expect_arm64);
}

#[test]
fn matrix_ppc64_64k() {
    check::<Ppc64>(expect_ppc64);
}

#[test]
fn matrix_ppc64_4k() {
    check::<Ppc64_4k>(expect_ppc64);
}

#[test]
fn matrix_x86_64_la57() {
    // 5-level paging is not in v4.10 (CONFIG_X86_5LEVEL: v4.14).
    assert!(
        KernelProfile::parse("v4.10")
            .unwrap()
            .supports_arch(ArchId::X86_64La57)
            .is_err()
    );
    // 6.x: every cell is the common one; (e) starts at TASK_SIZE_MAX - P =
    // 2^56 - 2 pages (`pgtable_64_types.h`: __VIRTUAL_MASK_SHIFT 56 with
    // LA57; `page_64.h` task_size_max() is 2^56 - PAGE_SIZE).
    check_in::<X86_64La57>(&["v6.13", "v6.18"], expect_x86);
}

#[test]
fn matrix_arm64_52() {
    // 52-bit VAs with 4 KiB pages need LPA2 (v6.9).
    for old in ["v4.10", "v4.17"] {
        let p = KernelProfile::parse(old).unwrap();
        assert!(p.supports_arch(ArchId::Arm64_52).is_err());
    }
    // (c) aliases kaddr mod 2^52 (TASK_SIZE_64 = 1 << vabits_actual, 52 on
    // LPA2 hardware, `processor.h`); the five-level walk reaches the victim.
    check_in::<Arm64_52>(&["v6.13", "v6.18"], expect_arm64);
}

#[test]
fn matrix_arm64_16k() {
    // (c): the walk at kaddr mod 2^48 reaches the victim as with 4 KiB pages;
    // (e) under KERNEL_DS the pgd pointer steps to index 2 of the two-entry
    // pgd: the same overrun.
    check::<Arm64_16k>(expect_arm64);
}
