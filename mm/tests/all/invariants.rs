//! The invariant checker: it holds after ordinary operations on every arch,
//! and each kind of corruption is reported.

use vmemu_arch::{Arch, Level, PteFlags, VirtAddr};
use vmemu_mm::phys::Owner;
use vmemu_mm::{Backing, GupFlags, KernelProfile, Machine, MapFlags, Prot};

const FIXED: u64 = 0x4000_0000;

fn machine<A: Arch>(kernel: &str) -> Machine<A> {
    Machine::<A>::new(KernelProfile::parse(kernel).unwrap(), 32 << 20).unwrap()
}

fn ok<A: Arch>(m: &Machine<A>, what: &str) {
    if let Err(v) = m.check_invariants() {
        panic!("{what} on {}: {v:#?}", A::ID);
    }
}

/// A mixed sequence: anon, THP, file, COW, gup refs and pins, partial
/// munmap/mprotect of a THP, DONTNEED; the invariants hold after each step.
fn holds_after_ordinary_operations<A: Arch>() {
    for kernel in ["v4.10", "v6.13"] {
        let mut m = machine::<A>(kernel);
        ok(&m, "boot");
        let mm = m.current_mm();
        let buf = m
            .mmap(
                mm,
                None,
                4 * A::PAGE_SIZE,
                Prot::RW,
                MapFlags::default(),
                Backing::Anon,
                "buf",
            )
            .unwrap();
        assert_eq!(m.clear_user(buf, 2 * A::PAGE_SIZE), 0);
        let mut scratch = vec![0u8; A::PAGE_SIZE as usize];
        assert_eq!(
            m.copy_from_user(&mut scratch, buf.wrapping_add(3 * A::PAGE_SIZE)),
            0
        );
        ok(&m, "faults");
        let mut pages = Vec::new();
        m.get_user_pages_fast(buf, 4, GupFlags::FOLL_WRITE, &mut pages)
            .unwrap();
        ok(&m, "gup refs held");
        let mut pins = Vec::new();
        if m.knobs.foll_pin {
            m.pin_user_pages_fast(buf, 2, GupFlags::FOLL_WRITE, &mut pins)
                .unwrap();
            ok(&m, "pins held");
        }
        m.munmap(mm, buf, 2 * A::PAGE_SIZE).unwrap();
        ok(&m, "munmap with references held");
        for p in pages.drain(..) {
            m.put_page(p).unwrap();
        }
        for p in pins.drain(..) {
            m.unpin_user_page(p).unwrap();
        }
        ok(&m, "references dropped");
        let pmd = A::entry_span(Level(A::levels() as u8 - 2));
        let huge = MapFlags {
            hugepage: true,
            ..MapFlags::default()
        };
        let h = m
            .mmap(
                mm,
                Some(VirtAddr(FIXED)),
                2 * pmd,
                Prot::RW,
                huge,
                Backing::Anon,
                "thp",
            )
            .unwrap();
        assert_eq!(m.clear_user(h, 1), 0);
        ok(&m, "THP fault");
        m.mprotect(mm, h.wrapping_add(A::PAGE_SIZE), A::PAGE_SIZE, Prot::R)
            .unwrap();
        ok(&m, "mprotect inside a THP");
        m.madvise_dontneed(mm, h, 3 * A::PAGE_SIZE).unwrap();
        ok(&m, "DONTNEED inside a THP");
        m.munmap(mm, h, 2 * pmd).unwrap();
        ok(&m, "munmap of the THP range");
        let f = m.create_file("f", 2 * A::PAGE_SIZE, Default::default());
        let fm = m
            .mmap(
                mm,
                None,
                2 * A::PAGE_SIZE,
                Prot::RW,
                MapFlags::default(),
                Backing::File { file: f, pgoff: 0 },
                "fm",
            )
            .unwrap();
        assert_eq!(m.copy_from_user(&mut scratch, fm), 0);
        assert_eq!(m.clear_user(fm, 1), 0);
        ok(&m, "file read then COW");
        let ro = m
            .mmap(
                mm,
                None,
                A::PAGE_SIZE,
                Prot::R,
                MapFlags::default(),
                Backing::Anon,
                "ro",
            )
            .unwrap();
        let mut forced = Vec::new();
        m.get_user_pages_unlocked(
            ro,
            1,
            &mut forced,
            GupFlags::FOLL_WRITE | GupFlags::FOLL_FORCE,
        )
        .unwrap();
        ok(&m, "FOLL_FORCE write to a read-only private mapping");
        for p in forced {
            m.put_page(p).unwrap();
        }
        let none = m
            .mmap(
                mm,
                None,
                A::PAGE_SIZE,
                Prot::NONE,
                MapFlags::default(),
                Backing::Anon,
                "none",
            )
            .unwrap();
        let mut forced = Vec::new();
        m.get_user_pages_unlocked(
            none,
            1,
            &mut forced,
            GupFlags::FOLL_WRITE | GupFlags::FOLL_FORCE,
        )
        .unwrap();
        ok(&m, "FOLL_FORCE write to a PROT_NONE private mapping");
        for p in forced {
            m.put_page(p).unwrap();
        }
        ok(&m, "end");
    }
}

/// Each corruption is named by the checker.
fn corruptions_are_reported<A: Arch>() {
    let mut m = machine::<A>("v6.13");
    let mm = m.current_mm();
    let buf = m
        .mmap(
            mm,
            Some(VirtAddr(FIXED)),
            2 * A::PAGE_SIZE,
            Prot::R,
            MapFlags::default(),
            Backing::Anon,
            "buf",
        )
        .unwrap();
    assert_eq!(m.clear_user(buf, 0), 0);
    let mut pages = Vec::new();
    // A read fault maps the zero page; write through FOLL_FORCE for a real page.
    m.get_user_pages_unlocked(
        buf,
        1,
        &mut pages,
        GupFlags::FOLL_WRITE | GupFlags::FOLL_FORCE,
    )
    .unwrap();
    let page = m.phys.compound_head(pages[0]);
    ok(&m, "setup");

    // 1. A reference nobody accounts for.
    m.phys.get_page(page, 1);
    let e = m.check_invariants().unwrap_err();
    assert!(e.iter().any(|x| x.contains("refcount")), "{e:?}");
    m.phys.put_page(page, 1).unwrap();
    ok(&m, "refcount restored");

    // 2. A writable leaf in a VMA without VM_WRITE.
    let slot = vmemu_mm::pgtable::lookup::<A>(&m.phys, m.family(), m.mm(mm).pgd, buf).unwrap();
    let mut pte = slot.pte;
    pte.flags |= PteFlags::WRITE | PteFlags::DIRTY;
    pte.flags.remove(PteFlags::RDONLY);
    m.phys
        .write_entry(slot.entry_pa, A::encode(m.family(), slot.level, pte))
        .unwrap();
    let e = m.check_invariants().unwrap_err();
    assert!(
        e.iter()
            .any(|x| x.contains("writable in a VMA without VM_WRITE")),
        "{e:?}"
    );
    m.phys.write_entry(slot.entry_pa, slot.raw).unwrap();
    ok(&m, "leaf restored");

    // 3. A table page unlinked from its parent: leaked, and its page's mapping lost.
    let pgd = m.mm(mm).pgd;
    let top = pgd.add(A::pgd_index(buf) as u64 * 8);
    let saved = m.phys.read_entry(top).unwrap();
    m.phys.write_entry(top, 0).unwrap();
    let e = m.check_invariants().unwrap_err();
    assert!(e.iter().any(|x| x.contains("unreachable")), "{e:?}");
    assert!(e.iter().any(|x| x.contains("mapcount")), "{e:?}");
    m.phys.write_entry(top, saved).unwrap();
    ok(&m, "table relinked");

    // 4. A table linked twice.
    let other = A::pgd_index(VirtAddr(FIXED)) + 1;
    let other_pa = pgd.add(other as u64 * 8);
    let was = m.phys.read_entry(other_pa).unwrap();
    m.phys.write_entry(other_pa, saved).unwrap();
    let e = m.check_invariants().unwrap_err();
    assert!(
        e.iter()
            .any(|x| x.contains("reachable 2 times") || x.contains("lies in no VMA")),
        "{e:?}"
    );
    m.phys.write_entry(other_pa, was).unwrap();
    ok(&m, "second link removed");

    // 5. A held page freed under the workload (its ledger entry remains).
    m.phys.put_page(page, 1).unwrap();
    m.phys.page_mut(page).mapcount = 0;
    let e = m.check_invariants().unwrap_err();
    assert!(!e.is_empty());
    let buf = m.intern("buf");
    assert_eq!(
        m.phys.page(page).owner,
        Owner::Anon {
            name: buf,
            index: 0
        }
    );
}

macro_rules! on_every_arch {
    ($($f:ident),* $(,)?) => {
        $(
            mod $f {
                #[test]
                fn x86_64() { super::$f::<vmemu_arch::X86_64>(); }
                #[test]
                fn arm64() { super::$f::<vmemu_arch::Arm64>(); }
                #[test]
                fn ppc64() { super::$f::<vmemu_arch::Ppc64>(); }
                #[test]
                fn ppc64_4k() { super::$f::<vmemu_arch::Ppc64_4k>(); }
            }
        )*
    };
}

on_every_arch!(holds_after_ordinary_operations, corruptions_are_reported);

/// A sparse 1 TiB mapping costs only the frames it touches.
#[test]
fn sparse_terabyte_mapping_costs_what_is_touched() {
    let mut m = machine::<vmemu_arch::X86_64>("v6.13");
    let mm = m.current_mm();
    let before = m.phys.allocated();
    let big = m
        .mmap(
            mm,
            None,
            1 << 40,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "big",
        )
        .unwrap();
    assert_eq!(m.phys.allocated(), before, "mmap allocates nothing");
    for i in 0..4u64 {
        assert_eq!(m.clear_user(big.wrapping_add(i * (1 << 38)), 4096), 0);
    }
    // 4 pages plus at most 3 tables each.
    assert!(
        m.phys.allocated() - before <= 4 * 4,
        "{} frames",
        m.phys.allocated() - before
    );
    ok(&m, "sparse");
    m.munmap(mm, big, 1 << 40).unwrap();
    assert_eq!(m.phys.allocated(), before);
    ok(&m, "unmapped");
}
