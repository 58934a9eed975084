//! Walker and foundation tests (spec §2–§3): what `pgtable::walk` resolves
//! for kernel and user addresses under both root selections, huge leaves,
//! fault records per level, the trace callback, the in-memory byte order of
//! entries, a property test of translations over random mappings, and the
//! host memory cost of a large guest.
//!
//! Every generic test runs on x86_64, arm64, ppc64 (64 KiB) and ppc64-4k, for
//! the v4.10 and v6.13 profiles.

use std::collections::BTreeSet;

use proptest::prelude::*;
use vmemu_arch::{
    Arch, ArchId, Arm64, HwRoot, Level, Pfn, Ppc64, Ppc64_4k, PteFlags, VirtAddr, X86_64,
};
use vmemu_mm::pgtable::{self, FaultKind, RootSel, Step, Translation, WalkFault};
use vmemu_mm::phys::PageFlags;
use vmemu_mm::{Backing, KernelProfile, Machine, MapFlags, Prot};

const PROFILES: [&str; 2] = ["v4.10", "v6.13"];

/// A base address for user mappings: 256 GiB, aligned to every level's span
/// below the pgd (so adding one entry span changes exactly one index), inside
/// the top-level slot 0 on every arch, and below every `TASK_SIZE`.
const BASE: u64 = 0x40_0000_0000;

fn machine<A: Arch>(profile: &str, size: u64) -> Machine<A> {
    Machine::<A>::new(KernelProfile::parse(profile).unwrap(), size).unwrap()
}

fn walk<A: Arch>(m: &Machine<A>, va: VirtAddr, sel: RootSel) -> Result<Translation, WalkFault> {
    let mm = m.current_mm();
    pgtable::walk::<A>(&m.phys, m.family(), m.roots(mm), va, sel, |_| {})
}

fn walk_traced<A: Arch>(
    m: &Machine<A>,
    va: VirtAddr,
    sel: RootSel,
) -> (Result<Translation, WalkFault>, Vec<Step>) {
    let mm = m.current_mm();
    let mut steps = Vec::new();
    let r = pgtable::walk::<A>(&m.phys, m.family(), m.roots(mm), va, sel, |s| {
        steps.push(*s)
    });
    (r, steps)
}

/// Maps `pages` anonymous RW pages named `name` at `at` (MAP_FIXED) and
/// write-faults them all in with `clear_user`.
fn map_touched<A: Arch>(m: &mut Machine<A>, at: VirtAddr, pages: u64, name: &str) {
    let mm = m.current_mm();
    let len = pages * A::PAGE_SIZE;
    let got = m
        .mmap(
            mm,
            Some(at),
            len,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            name,
        )
        .unwrap();
    assert_eq!(got, at);
    assert_eq!(m.clear_user(at, len), 0, "{name} at {at} faulted in");
}

fn pmd_level<A: Arch>() -> Level {
    Level(A::levels() as u8 - 2)
}

/// Instantiates a generic `fn(profile: &str)` for the four arches, each run
/// for both profiles.
macro_rules! per_arch {
    ($modname:ident, $f:ident) => {
        per_arch!($modname, $f, #[test]);
    };
    ($modname:ident, $f:ident, $(#[$attr:meta])+) => {
        mod $modname {
            use super::*;
            $(#[$attr])+
            fn x86_64() {
                for p in PROFILES {
                    $f::<X86_64>(p);
                }
            }
            $(#[$attr])+
            fn arm64() {
                for p in PROFILES {
                    $f::<Arm64>(p);
                }
            }
            $(#[$attr])+
            fn ppc64() {
                for p in PROFILES {
                    $f::<Ppc64>(p);
                }
            }
            $(#[$attr])+
            fn ppc64_4k() {
                for p in PROFILES {
                    $f::<Ppc64_4k>(p);
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------
// 1. A kernel direct-map address in the current mm (§2.2).

fn direct_map_address<A: Arch>(profile: &str) {
    let mut m = machine::<A>(profile, 64 << 20);
    let legacy = profile == "v4.10";
    for n in [256u64, 301] {
        let kaddr = VirtAddr(m.layout.page_offset + n * A::PAGE_SIZE);
        let ctx = format!("{:?} {profile} kaddr {kaddr}", A::ID);
        // The hardware walk always finds the kernel's direct map: pfn n, no
        // user access.
        let hw = walk(&m, kaddr, RootSel::Hardware).unwrap();
        assert_eq!(hw.pfn, Pfn(n), "{ctx}");
        assert_eq!(hw.pa.0, n * A::PAGE_SIZE, "{ctx}");
        assert!(hw.leaf.has(PteFlags::VALID | PteFlags::LEAF), "{ctx}");
        assert!(!hw.leaf.has(PteFlags::USER), "{ctx}: kernel leaf");
        assert!(!hw.eff.contains(PteFlags::USER), "{ctx}");
        if A::ID == ArchId::X86_64 {
            // One root whose kernel half is shared: the software walk of the
            // user pgd reaches the very same kernel leaf (slot 272 / 273).
            assert_eq!(hw.root, HwRoot::Mm, "{ctx}");
            assert_eq!(A::pgd_index(kaddr), if legacy { 272 } else { 273 });
            let sw = walk(&m, kaddr, RootSel::Software).unwrap();
            assert_eq!(sw, hw, "{ctx}");
            assert_eq!(sw.pfn, Pfn(n));
            assert!(!sw.leaf.has(PteFlags::USER));
            continue;
        }
        // arm64 (TTBR1) and powerpc (quadrant 3): the kernel root.
        assert_eq!(hw.root, HwRoot::Kernel, "{ctx}");
        let bits = A::va_bits();
        assert_eq!(bits, if A::ID == ArchId::Arm64 { 48 } else { 52 });
        let alias = VirtAddr(kaddr.0 & ((1u64 << bits) - 1));
        match (A::ID, legacy) {
            // v4.10 arm64: PAGE_OFFSET 0xffff800000000000 aliases the upper
            // user half.
            (ArchId::Arm64, true) => {
                assert_eq!(alias.0, (1 << 47) + n * A::PAGE_SIZE, "{ctx}");
            }
            // 6.x arm64 (0xffff000000000000) and powerpc (0xc000...):
            // low user addresses.
            _ => assert_eq!(alias.0, n * A::PAGE_SIZE, "{ctx}"),
        }
        for l in 0..A::levels() as u8 {
            assert_eq!(A::index(kaddr, Level(l)), A::index(alias, Level(l)));
        }
        // Nothing mapped at the alias yet: the software walk of kaddr faults
        // in the user table; it never consults the kernel root.
        let f = walk(&m, kaddr, RootSel::Software).unwrap_err();
        assert_eq!(f.kind, FaultKind::NotPresent, "{ctx}");
        assert_eq!(f.raw, 0, "{ctx}");
        // Map a victim at the alias: the software walk of the kernel address
        // now returns the victim's frames.
        let name = format!("victim{n}");
        map_touched(&mut m, alias, 2, &name);
        for i in 0..2u64 {
            let k = VirtAddr(kaddr.0 + i * A::PAGE_SIZE + 0x18);
            let sw = walk(&m, k, RootSel::Software).unwrap();
            assert_eq!(sw.root, HwRoot::Mm, "{ctx}");
            assert_eq!(m.page_name(sw.pfn), format!("{name}[{i}]"), "{ctx}");
            assert!(sw.leaf.has(PteFlags::USER), "{ctx}: a user leaf");
            let u = walk(
                &m,
                VirtAddr(alias.0 + i * A::PAGE_SIZE + 0x18),
                RootSel::Hardware,
            );
            assert_eq!(Ok(sw), u, "{ctx}: same translation as the alias itself");
            // The hardware still goes to the kernel root.
            let hw = walk(&m, k, RootSel::Hardware).unwrap();
            assert_eq!(hw.root, HwRoot::Kernel, "{ctx}");
            assert_eq!(hw.pfn, Pfn(n + i), "{ctx}");
            assert!(!hw.leaf.has(PteFlags::USER), "{ctx}");
        }
    }
}
per_arch!(direct_map_address_per_arch, direct_map_address);

/// The spec's wording: "victim[0]" for the first aliased frame.
#[test]
fn arm64_and_ppc64_victim_named_as_in_the_matrix() {
    fn check<A: Arch>(profile: &str) {
        let mut m = machine::<A>(profile, 64 << 20);
        let kaddr = VirtAddr(m.layout.page_offset + 256 * A::PAGE_SIZE);
        let alias = VirtAddr(kaddr.0 & ((1u64 << A::va_bits()) - 1));
        map_touched(&mut m, alias, 1, "victim");
        let sw = walk(&m, kaddr, RootSel::Software).unwrap();
        assert_eq!(m.page_name(sw.pfn), "victim[0]");
        let hw = walk(&m, kaddr, RootSel::Hardware).unwrap();
        assert_eq!((hw.root, hw.pfn), (HwRoot::Kernel, Pfn(256)));
        assert!(!hw.leaf.has(PteFlags::USER));
    }
    for p in PROFILES {
        check::<Arm64>(p);
        check::<Ppc64>(p);
        check::<Ppc64_4k>(p);
    }
}

// ---------------------------------------------------------------------------
// 2. Huge leaves: a THP at PMD level, and the direct map.

/// A VM_HUGEPAGE anon mapping of two PMD spans at a PMD-aligned address,
/// write-faulted: two PMD leaves on compound pages. With `neighbour`, a base
/// page in the same PMD table is mapped first, so the PMD table exists
/// before the THP fault.
fn huge_pmd_leaf<A: Arch>(profile: &str, neighbour: bool) {
    let mut m = machine::<A>(profile, 64 << 20);
    let mm = m.current_mm();
    let pmd = pmd_level::<A>();
    assert_eq!(pmd, Level(2));
    let span = A::entry_span(pmd);
    assert_eq!(span, 2 << 20, "PMD size is 2 MiB");
    let per = span / A::PAGE_SIZE;
    let base = VirtAddr(BASE);
    if neighbour {
        map_touched(&mut m, VirtAddr(BASE + 4 * span), 1, "nb");
        let t = walk(&m, VirtAddr(BASE + 4 * span), RootSel::Software).unwrap();
        assert_eq!(t.level, A::leaf_level());
    }
    let flags = MapFlags {
        hugepage: true,
        ..MapFlags::default()
    };
    let got = m
        .mmap(
            mm,
            Some(base),
            2 * span,
            Prot::RW,
            flags,
            Backing::Anon,
            "buf",
        )
        .unwrap();
    assert_eq!(got, base);
    assert_eq!(m.clear_user(base, 2 * span), 0);
    let ctx = format!("{:?} {profile}", A::ID);
    for s in 0..2u64 {
        let span_va = VirtAddr(base.0 + s * span);
        let head = walk(&m, span_va, RootSel::Software).unwrap();
        assert_eq!(head.level, pmd, "{ctx}: a PMD leaf");
        assert_eq!(head.page_size, span, "{ctx}");
        assert!(
            head.leaf
                .has(PteFlags::LEAF | PteFlags::USER | PteFlags::WRITE)
        );
        assert_eq!(
            head.pfn.0 % per,
            0,
            "{ctx}: naturally aligned compound page"
        );
        let hp = m.phys.page(head.pfn);
        assert!(hp.flags.contains(PageFlags::HEAD), "{ctx}");
        assert_eq!(1u64 << hp.order, per, "{ctx}");
        for k in [0, 1, per / 2, per - 1] {
            let off = k * A::PAGE_SIZE + 0x7c;
            let va = VirtAddr(span_va.0 + off);
            for sel in [RootSel::Software, RootSel::Hardware] {
                let t = walk(&m, va, sel).unwrap();
                assert_eq!(t.level, pmd, "{ctx} {va}");
                assert_eq!(t.page_size, span, "{ctx} {va}");
                assert_eq!(t.entry_pa, head.entry_pa, "{ctx}: the same PMD entry");
                assert_eq!(t.pfn, Pfn(head.pfn.0 + k), "{ctx}: head + offset");
                assert_eq!(t.pa, head.pfn.addr(A::PAGE_SHIFT).add(off), "{ctx}");
                assert_eq!(m.page_name(t.pfn), format!("buf[{}]", s * per + k), "{ctx}");
            }
        }
    }
    // The two spans are distinct compound pages.
    let a = walk(&m, base, RootSel::Software).unwrap();
    let b = walk(&m, VirtAddr(base.0 + span), RootSel::Software).unwrap();
    assert_ne!(a.pfn, b.pfn);
    // The page just past the mapping is not mapped.
    let f = walk(&m, VirtAddr(base.0 + 2 * span), RootSel::Software).unwrap_err();
    assert_eq!(f.kind, FaultKind::NotPresent);
}
fn huge_pmd_leaf_after_neighbour<A: Arch>(profile: &str) {
    huge_pmd_leaf::<A>(profile, true);
}
per_arch!(huge_pmd_leaf_per_arch, huge_pmd_leaf_after_neighbour);

/// The first fault of an empty region: the kernel's `__handle_mm_fault`
/// allocates the pud and pmd tables and then maps a huge PMD when the PMD
/// entry is none (`create_huge_pmd`). The emulator's `do_anonymous_page`
/// only takes the THP path when the PMD table already exists.
fn huge_pmd_leaf_fresh_region<A: Arch>(profile: &str) {
    huge_pmd_leaf::<A>(profile, false);
}
per_arch!(
    huge_pmd_leaf_fresh_region_per_arch,
    huge_pmd_leaf_fresh_region,
    #[test]
);

fn direct_map_uses_huge_leaves<A: Arch>(profile: &str) {
    // 64 MiB: PMD blocks; 1 GiB: one PUD block.
    for (size, level) in [(64u64 << 20, Level(2)), (1 << 30, Level(1))] {
        let m = machine::<A>(profile, size);
        let ctx = format!("{:?} {profile} {size:#x}", A::ID);
        let off = size / 2 + 3 * A::PAGE_SIZE + 0x11;
        let kaddr = VirtAddr(m.layout.page_offset + off);
        let t = walk(&m, kaddr, RootSel::Hardware).unwrap();
        assert!(t.level < A::leaf_level(), "{ctx}: a huge leaf");
        assert_eq!(t.level, level, "{ctx}");
        assert_eq!(t.page_size, A::entry_span(level), "{ctx}");
        assert_eq!(t.pa.0, off, "{ctx}");
        assert_eq!(t.pfn, Pfn(off >> A::PAGE_SHIFT), "{ctx}");
        assert!(!t.leaf.has(PteFlags::USER), "{ctx}");
        // The last byte of memory too.
        let last = VirtAddr(m.layout.page_offset + size - 1);
        let t = walk(&m, last, RootSel::Hardware).unwrap();
        assert_eq!(t.pa.0, size - 1, "{ctx}");
        // Just past the end of memory: not mapped.
        let past = VirtAddr(m.layout.page_offset + size);
        assert!(walk(&m, past, RootSel::Hardware).is_err(), "{ctx}");
    }
}
per_arch!(
    direct_map_uses_huge_leaves_per_arch,
    direct_map_uses_huge_leaves
);

// ---------------------------------------------------------------------------
// 3. Fault records: the level of the absent entry, and untranslatable
//    addresses.

fn fault_levels<A: Arch>(profile: &str) {
    let mut m = machine::<A>(profile, 64 << 20);
    let ctx = format!("{:?} {profile}", A::ID);
    let x = VirtAddr(BASE);
    // Empty address space: the pgd entry is none.
    for sel in [RootSel::Software, RootSel::Hardware] {
        let f = walk(&m, x, sel).unwrap_err();
        assert_eq!(
            (f.level, f.kind, f.raw),
            (Level(0), FaultKind::NotPresent, 0),
            "{ctx}"
        );
        assert_eq!(f.va, x);
        assert!(f.entry_pa.is_some(), "{ctx}");
    }
    map_touched(&mut m, x, 1, "one");
    assert!(walk(&m, x, RootSel::Software).is_ok());
    // x is aligned to every span below the pgd, so x + span(L) shares the
    // entries above L with x and differs at L, whose entry is empty.
    for l in 0..A::levels() as u8 {
        let level = Level(l);
        let probe = VirtAddr(x.0 + A::entry_span(level));
        for l2 in 0..l {
            assert_eq!(A::index(probe, Level(l2)), A::index(x, Level(l2)));
        }
        assert_ne!(A::index(probe, level), A::index(x, level));
        for sel in [RootSel::Software, RootSel::Hardware] {
            let (r, steps) = walk_traced(&m, probe, sel);
            let f = r.unwrap_err();
            assert_eq!(f.level, level, "{ctx} probe {probe}");
            assert_eq!(f.kind, FaultKind::NotPresent, "{ctx}");
            assert_eq!(f.raw, 0, "{ctx}: an empty entry");
            let pa = f.entry_pa.expect("entry read");
            assert_eq!(m.phys.read_entry(pa).unwrap(), 0);
            let last = steps.last().unwrap();
            assert_eq!(last.entry_pa, pa, "{ctx}");
            assert_eq!(last.index, A::index(probe, level));
            assert_eq!(steps.len(), l as usize + 1);
            // The entry is the neighbour of x's entry at that level.
            let mine = walk_traced(&m, x, sel).1[l as usize];
            assert_eq!(pa.0, mine.entry_pa.0 + 8, "{ctx}: adjacent slot");
        }
    }
}
per_arch!(fault_levels_per_arch, fault_levels);

fn no_translation<A: Arch>(profile: &str) {
    let mut m = machine::<A>(profile, 64 << 20);
    let ctx = format!("{:?} {profile}", A::ID);
    let x = VirtAddr(BASE + 5 * A::PAGE_SIZE);
    map_touched(&mut m, x, 1, "u");
    let mine = walk(&m, x, RootSel::Hardware).unwrap();
    assert_eq!(m.page_name(mine.pfn), "u[0]");
    let bad: Vec<u64> = match A::ID.mmu() {
        // Non-canonical: bits 63..47 not all equal.
        ArchId::X86_64 => vec![
            x.0 | 1 << 47,
            x.0 | 1 << 48,
            x.0 | 0x8000_0000_0000_0000,
            x.0 | 0x7fff_0000_0000_0000,
        ],
        // Bits 55..48 do not match bit 55 (the top byte of a user address is
        // ignored, but not bits 48..55).
        ArchId::Arm64 => vec![
            x.0 | 1 << 48,
            x.0 | 0x00ff_0000_0000_0000,
            x.0 | 0x0080_0000_0000_0000,
            x.0 | 0xff7f_0000_0000_0000,
            x.0 | 0xfffe_0000_0000_0000,
        ],
        // Quadrants 1 and 2, and bits 52..61 above the radix tree.
        ArchId::Ppc64 | ArchId::Ppc64_4k => vec![
            x.0 | 0x4000_0000_0000_0000,
            x.0 | 0x8000_0000_0000_0000,
            x.0 | 1 << 52,
            x.0 | 0xc010_0000_0000_0000,
        ],
        _ => unreachable!("mmu() names one of the three MMUs"),
    };
    for va in bad.into_iter().map(VirtAddr) {
        let (r, steps) = walk_traced(&m, va, RootSel::Hardware);
        let f = r.unwrap_err();
        assert_eq!(f.kind, FaultKind::NoTranslation, "{ctx} {va}");
        assert_eq!((f.level, f.raw, f.entry_pa), (Level(0), 0, None), "{ctx}");
        assert!(steps.is_empty(), "{ctx}: no table read");
        // The software walk masks the high bits.
        match walk(&m, va, RootSel::Software) {
            Err(f) => {
                assert_ne!(f.kind, FaultKind::NoTranslation, "{ctx} {va}");
                // Only x86 can miss here: its masked index may differ from x's.
                assert_eq!(A::ID, ArchId::X86_64, "{ctx} {va}");
            }
            Ok(t) => {
                if A::pgd_index(va) == A::pgd_index(x) {
                    assert_eq!(t.pfn, mine.pfn, "{ctx} {va}: masked to x");
                }
            }
        }
    }
    if A::ID != ArchId::X86_64 {
        // arm64 and powerpc: every index bit is below bit 48, so the masked
        // walk lands exactly on x.
        for va in [x.0 | 1 << 48, x.0 | 0x4000_0000_0000_0000] {
            let va = VirtAddr(va);
            if A::hw_root(m.family(), va).is_none() {
                let t = walk(&m, va, RootSel::Software).unwrap();
                assert_eq!(m.page_name(t.pfn), "u[0]", "{ctx} {va}");
            }
        }
    } else {
        // x86: a non-canonical alias of the direct map (bit 47 kept, sign
        // extension dropped) reaches the kernel half by software, never by
        // hardware.
        let n = 77u64;
        let kaddr = m.layout.page_offset + n * A::PAGE_SIZE;
        let nc = VirtAddr(kaddr & ((1u64 << 48) - 1));
        let f = walk(&m, nc, RootSel::Hardware).unwrap_err();
        assert_eq!(f.kind, FaultKind::NoTranslation);
        let t = walk(&m, nc, RootSel::Software).unwrap();
        assert_eq!(t.pfn, Pfn(n));
        assert!(!t.eff.contains(PteFlags::USER));
        // 0x0000_8000_0000_0000 → slot 256, empty (hypervisor hole).
        let f = walk(&m, VirtAddr(1 << 47), RootSel::Software).unwrap_err();
        assert_eq!((f.kind, f.level), (FaultKind::NotPresent, Level(0)));
        assert_eq!(A::pgd_index(VirtAddr(1 << 47)), 256);
    }
}
per_arch!(no_translation_per_arch, no_translation);

// ---------------------------------------------------------------------------
// 4. The trace callback.

fn trace_indices<A: Arch>(profile: &str) {
    let mut m = machine::<A>(profile, 64 << 20);
    let ctx = format!("{:?} {profile}", A::ID);
    let x = VirtAddr(BASE + (3 << 30) + (5 << 21) + 7 * A::PAGE_SIZE);
    map_touched(&mut m, x, 1, "t");
    let va = VirtAddr(x.0 + 0x123);
    for sel in [RootSel::Software, RootSel::Hardware] {
        let (r, steps) = walk_traced(&m, va, sel);
        let t = r.unwrap();
        assert_eq!(steps.len(), A::levels(), "{ctx}: once per level");
        for (i, s) in steps.iter().enumerate() {
            assert_eq!(s.level, Level(i as u8), "{ctx}");
            assert_eq!(s.index, A::index(va, s.level), "{ctx} level {i}");
            assert_eq!(s.raw, m.phys.read_entry(s.entry_pa).unwrap(), "{ctx}");
            assert_eq!(s.pte, A::decode(m.family(), s.level, s.raw), "{ctx}");
            if i + 1 < steps.len() {
                assert!(s.pte.has(PteFlags::TABLE), "{ctx}");
                // The next entry lies in the table this one points at.
                let next = s.pte.pfn.addr(A::PAGE_SHIFT);
                assert_eq!(
                    steps[i + 1].entry_pa.0,
                    next.0 + steps[i + 1].index as u64 * 8,
                    "{ctx}"
                );
            }
        }
        let last = steps.last().unwrap();
        assert_eq!((last.entry_pa, last.raw), (t.entry_pa, t.raw), "{ctx}");
    }
    // A huge leaf stops the trace early: the direct map through the kernel
    // root (arm64/ppc64) or the shared half (x86).
    let kaddr = VirtAddr(m.layout.page_offset + (5 << 20) + 0x40);
    let (r, steps) = walk_traced(&m, kaddr, RootSel::Hardware);
    let t = r.unwrap();
    assert_eq!(steps.len(), t.level.index() + 1, "{ctx}");
    assert!(steps.len() < A::levels(), "{ctx}");
    for s in &steps {
        assert_eq!(s.index, A::index(kaddr, s.level), "{ctx}");
    }
    // The software walk of the same kernel address uses the masked indices.
    let (_, steps) = walk_traced(&m, kaddr, RootSel::Software);
    assert!(!steps.is_empty());
    for s in &steps {
        assert_eq!(s.index, A::index(kaddr, s.level), "{ctx}");
    }
}
per_arch!(trace_indices_per_arch, trace_indices);

// ---------------------------------------------------------------------------
// 5. Byte order of entries in memory.

fn entry_bytes<A: Arch>(profile: &str) {
    let mut m = machine::<A>(profile, 64 << 20);
    let ctx = format!("{:?} {profile}", A::ID);
    let x = VirtAddr(BASE);
    map_touched(&mut m, x, 1, "e");
    let (r, steps) = walk_traced(&m, x, RootSel::Software);
    let t = r.unwrap();
    let mut b = [0u8; 8];
    m.phys.read(t.entry_pa, &mut b).unwrap();
    match A::ID.mmu() {
        ArchId::Ppc64 | ArchId::Ppc64_4k => {
            assert_eq!(u64::from_be_bytes(b), t.raw, "{ctx}: big-endian");
            // _PAGE_PRESENT | _PAGE_PTE in the most significant byte, first.
            assert_eq!(b[0], 0xc0, "{ctx}: {b:02x?}");
            // READ | WRITE, PRIVILEGED clear, in the last byte.
            assert_eq!(b[7] & 0x0e, 0x06, "{ctx}: {b:02x?}");
            // The frame number sits at its shifted position.
            assert_eq!((t.raw & ((1 << 57) - 1)) >> A::PAGE_SHIFT, t.pfn.0);
            // A directory entry: PRESENT without PTE, NLS in the low bits.
            let mut d = [0u8; 8];
            m.phys.read(steps[2].entry_pa, &mut d).unwrap();
            assert_eq!(d[0], 0x80, "{ctx}: pmd entry {d:02x?}");
            assert_eq!(u64::from(d[7] & 0x1f), u64::from(A::LEVELS[3].bits));
        }
        ArchId::X86_64 => {
            assert_eq!(u64::from_le_bytes(b), t.raw, "{ctx}: little-endian");
            // PRESENT | RW | USER in the first byte.
            assert_eq!(b[0] & 0x07, 0x07, "{ctx}: {b:02x?}");
            // NX in the last byte (anon data is not executable).
            assert_eq!(b[7] & 0x80, 0x80, "{ctx}: {b:02x?}");
        }
        ArchId::Arm64 => {
            assert_eq!(u64::from_le_bytes(b), t.raw, "{ctx}: little-endian");
            // A valid page descriptor (0b11) with AP[1] = USER.
            assert_eq!(b[0] & 0x43, 0x43, "{ctx}: {b:02x?}");
        }
        _ => unreachable!("mmu() names one of the three MMUs"),
    }
}
per_arch!(entry_bytes_per_arch, entry_bytes);

// ---------------------------------------------------------------------------
// 6. Property: random mappings translate to their own frames.

/// One requested mapping: pages, a page-aligned address in the low 1 TiB,
/// and whether to move it across a PMD or PUD boundary.
#[derive(Clone, Copy, Debug)]
struct Req {
    pages: u64,
    slot: u64,
    straddle: u8,
    before: u64,
}

fn req() -> impl Strategy<Value = Req> {
    (1u64..40, any::<u64>(), 0u8..3, any::<u64>()).prop_map(|(pages, slot, straddle, before)| Req {
        pages,
        slot,
        straddle,
        before,
    })
}

const TIB: u64 = 1 << 40;

/// Turns requests into non-overlapping `(start, pages)` for arch `A`;
/// requests that overlap an earlier one, or leave the low 1 TiB, are dropped.
fn place<A: Arch>(reqs: &[Req]) -> Vec<(u64, u64)> {
    let p = A::PAGE_SIZE;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for r in reqs {
        let len = r.pages * p;
        let addr = (r.slot % (TIB / p)) * p;
        let start = match r.straddle {
            0 => Some(addr),
            s => {
                let span = A::entry_span(Level(if s == 1 { 2 } else { 1 }));
                // Start `before` pages below a boundary (1..=pages): the
                // mapping crosses it unless `before == pages`.
                let before = r.before % r.pages + 1;
                let boundary = (addr / span).max(1) * span;
                boundary.checked_sub(before * p)
            }
        };
        let Some(start) = start else { continue };
        if start < (1 << 20) || start + len > TIB {
            continue;
        }
        if out
            .iter()
            .any(|&(s, n)| start < s + n * p && s < start + len)
        {
            continue;
        }
        out.push((start, r.pages));
    }
    out
}

fn check_random_mappings<A: Arch>(profile: &str, reqs: &[Req], offs: &[u64]) {
    let mut m = machine::<A>(profile, 64 << 20);
    let p = A::PAGE_SIZE;
    let maps = place::<A>(reqs);
    for (i, &(start, pages)) in maps.iter().enumerate() {
        map_touched(&mut m, VirtAddr(start), pages, &format!("m{i}"));
    }
    let mapped: BTreeSet<u64> = maps
        .iter()
        .flat_map(|&(s, n)| (0..n).map(move |j| s + j * p))
        .collect();
    let ctx = format!("{:?} {profile}", A::ID);
    let mut k = 0;
    for (i, &(start, pages)) in maps.iter().enumerate() {
        for j in 0..pages {
            let va = VirtAddr(start + j * p);
            let off = offs[k % offs.len()] % p;
            k += 1;
            let sw = walk(&m, va, RootSel::Software)
                .unwrap_or_else(|f| panic!("{ctx}: m{i}[{j}] at {va}: {f:?}"));
            let hw = walk(&m, va, RootSel::Hardware).unwrap();
            assert_eq!(sw, hw, "{ctx} {va}: user addresses use the mm root");
            assert_eq!(sw.level, A::leaf_level(), "{ctx} {va}");
            assert_eq!(m.page_name(sw.pfn), format!("m{i}[{j}]"), "{ctx} {va}");
            assert!(sw.eff.contains(PteFlags::USER | PteFlags::WRITE), "{ctx}");
            for sel in [RootSel::Software, RootSel::Hardware] {
                let t = walk(&m, VirtAddr(va.0 + off), sel).unwrap();
                assert_eq!(t.pfn, sw.pfn, "{ctx} {va}+{off:#x}");
                assert_eq!(t.pa, sw.pa.add(off), "{ctx} {va}+{off:#x}");
            }
        }
    }
    // Unmapped pages next to and between the mappings fault.
    let mut probes = BTreeSet::new();
    let mut sorted = maps.clone();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        let end = w[0].0 + w[0].1 * p;
        let next = w[1].0;
        if next > end {
            probes.insert(end + ((next - end) / p / 2) * p);
        }
    }
    for &(s, n) in &sorted {
        probes.insert(s - p);
        probes.insert(s + n * p);
    }
    for va in probes {
        if mapped.contains(&va) {
            continue;
        }
        for sel in [RootSel::Software, RootSel::Hardware] {
            let f = walk(&m, VirtAddr(va), sel)
                .map(|t| m.page_name(t.pfn))
                .unwrap_err();
            assert_eq!(f.kind, FaultKind::NotPresent, "{ctx} {va:#x}");
            assert_eq!(f.raw, 0, "{ctx} {va:#x}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_mappings_x86_64(
        reqs in prop::collection::vec(req(), 1..8),
        offs in prop::collection::vec(any::<u64>(), 1..8),
        modern in any::<bool>(),
    ) {
        check_random_mappings::<X86_64>(PROFILES[usize::from(modern)], &reqs, &offs);
    }

    #[test]
    fn random_mappings_arm64(
        reqs in prop::collection::vec(req(), 1..8),
        offs in prop::collection::vec(any::<u64>(), 1..8),
        modern in any::<bool>(),
    ) {
        check_random_mappings::<Arm64>(PROFILES[usize::from(modern)], &reqs, &offs);
    }

    #[test]
    fn random_mappings_ppc64(
        reqs in prop::collection::vec(req(), 1..8),
        offs in prop::collection::vec(any::<u64>(), 1..8),
        modern in any::<bool>(),
    ) {
        check_random_mappings::<Ppc64>(PROFILES[usize::from(modern)], &reqs, &offs);
    }

    #[test]
    fn random_mappings_ppc64_4k(
        reqs in prop::collection::vec(req(), 1..8),
        offs in prop::collection::vec(any::<u64>(), 1..8),
        modern in any::<bool>(),
    ) {
        check_random_mappings::<Ppc64_4k>(PROFILES[usize::from(modern)], &reqs, &offs);
    }
}

/// The placement really produces boundary-straddling mappings.
#[test]
fn placement_straddles_boundaries() {
    let reqs: Vec<Req> = (0..3u8)
        .map(|straddle| Req {
            pages: 10,
            slot: 0x1234_5678 * (u64::from(straddle) + 1),
            straddle,
            before: 4,
        })
        .collect();
    fn crosses(start: u64, pages: u64, span: u64, p: u64) -> bool {
        start / span != (start + pages * p - 1) / span
    }
    fn check<A: Arch>(reqs: &[Req]) {
        let maps = place::<A>(reqs);
        assert_eq!(maps.len(), 3, "{:?}", A::ID);
        let p = A::PAGE_SIZE;
        assert!(crosses(maps[1].0, maps[1].1, A::entry_span(Level(2)), p));
        assert!(crosses(maps[2].0, maps[2].1, A::entry_span(Level(1)), p));
        check_random_mappings::<A>("v4.10", reqs, &[0x5a5]);
    }
    check::<X86_64>(&reqs);
    check::<Arm64>(&reqs);
    check::<Ppc64>(&reqs);
    check::<Ppc64_4k>(&reqs);
}

// ---------------------------------------------------------------------------
// 7. Host memory: a 4 GiB guest with 1000 scattered touched pages.

const RSS_CHILD: &str = "VMEMU_WALKER_RSS_CHILD";
const RSS_BUDGET: u64 = 64 << 20;

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn rss_measure() {
    let before = rss_bytes();
    let mut m = machine::<X86_64>("v4.10", 4 << 30);
    let after_boot = rss_bytes();
    let mm = m.current_mm();
    // 1000 single-page mappings scattered over the low 1 TiB (a different
    // PMD, mostly a different PUD, for each), each written once.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut vas = BTreeSet::new();
    while vas.len() < 1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let va = (1 << 30) + ((x % ((TIB - (2 << 30)) >> 12)) << 12);
        vas.insert(va);
    }
    for (i, &va) in vas.iter().enumerate() {
        let va = VirtAddr(va);
        m.mmap(
            mm,
            Some(va),
            4096,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            &format!("s{i}"),
        )
        .unwrap();
        assert_eq!(m.put_user(i as u64, va, 8), Ok(()));
    }
    for (i, &va) in vas.iter().enumerate() {
        let t = walk(&m, VirtAddr(va), RootSel::Software).unwrap();
        assert_eq!(m.page_name(t.pfn), format!("s{i}[0]"));
    }
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    println!(
        "rss: before {} KiB, after boot {} KiB (+{} KiB), after 1000 pages {} KiB; \
         growth {} KiB ({:.1} MiB); struct page = {} bytes x {} frames = {} KiB; \
         frames allocated {}",
        before >> 10,
        after_boot >> 10,
        after_boot.saturating_sub(before) >> 10,
        after >> 10,
        growth >> 10,
        growth as f64 / f64::from(1 << 20),
        std::mem::size_of::<vmemu_mm::phys::Page>(),
        m.phys.nr_frames(),
        (std::mem::size_of::<vmemu_mm::phys::Page>() as u64 * m.phys.nr_frames()) >> 10,
        m.phys.allocated(),
    );
    assert!(
        growth < RSS_BUDGET,
        "RSS grew by {growth} bytes (budget {RSS_BUDGET})"
    );
}

/// Runs the measurement in a child process (this test binary, filtered to
/// this test) so that tests running in parallel do not inflate the figure.
/// The name is the test's path in the crate's one test binary (`tests/all`).
#[test]
fn rss_4gib_guest_1000_scattered_pages() {
    if std::env::var_os(RSS_CHILD).is_some() {
        rss_measure();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "walker::rss_4gib_guest_1000_scattered_pages",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RSS_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("rss: before"),
        "the child ran the measurement"
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}
