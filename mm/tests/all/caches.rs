//! The emulator's speed shortcuts must be invisible: gup-fast's leaf-table
//! cache, uaccess's translation cache and the pool of guest memory mappings
//! give the same results as a cold walk and a fresh mapping, whatever changed
//! in between. Each test warms a cache, changes the tables underneath it, and
//! checks that the next access sees the change.

use vmemu_arch::{Arch, PhysAddr, VirtAddr};
use vmemu_mm::pgtable;
use vmemu_mm::phys::{Owner, PhysMem};
use vmemu_mm::{Backing, GupFlags, KernelProfile, Machine, MapFlags, Prot};

const PHYS: u64 = 32 << 20;
const FIXED: u64 = 0x4000_0000;

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
    gup_fast_after_remap_takes_the_new_pages,
    gup_fast_after_a_byte_write_into_a_table,
    uaccess_after_mprotect_and_munmap,
    uaccess_read_translation_does_not_serve_a_write,
    uaccess_walk_cache_sees_every_flush_point,
    uaccess_walk_cache_switches_mm,
    walk_from_leaf_table_is_the_walk,
    pooled_memory_reads_as_fresh,
);

fn machine<A: Arch>(profile: &str) -> Machine<A> {
    Machine::<A>::new(KernelProfile::parse(profile).unwrap(), PHYS).unwrap()
}

fn map<A: Arch>(m: &mut Machine<A>, name: &str, pages: u64) -> VirtAddr {
    let mm = m.current_mm();
    let base = m
        .mmap(
            mm,
            Some(VirtAddr(FIXED)),
            pages * A::PAGE_SIZE,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            name,
        )
        .unwrap();
    for i in 0..pages {
        m.put_user(i + 1, base.wrapping_add(i * A::PAGE_SIZE), 8)
            .unwrap();
    }
    base
}

fn release<A: Arch>(m: &mut Machine<A>, pages: &mut Vec<vmemu_arch::Pfn>) {
    for p in pages.drain(..) {
        m.put_page(p).unwrap();
    }
}

/// munmap frees the tables (pruned, then freed when no walker is inside);
/// a new mapping at the same address gets new tables and pages. gup-fast,
/// warmed on the old tables, takes the new pages.
fn gup_fast_after_remap_takes_the_new_pages<A: Arch>() {
    for profile in ["v4.10", "v6.13"] {
        let mut m = machine::<A>(profile);
        let mm = m.current_mm();
        let base = map(&mut m, "first", 4);
        let mut pages = Vec::new();
        for i in 0..4 {
            let got = m.__get_user_pages_fast(
                base.wrapping_add(i * A::PAGE_SIZE),
                1,
                GupFlags::FOLL_WRITE,
                &mut pages,
            );
            assert_eq!(got, Ok(1), "{profile}");
        }
        assert_eq!(m.page_name(pages[2]), "first[2]");
        release(&mut m, &mut pages);
        m.munmap(mm, base, 4 * A::PAGE_SIZE).unwrap();
        // Nothing mapped: gup-fast must not find the old leaf table.
        let got = m.__get_user_pages_fast(base, 1, GupFlags::FOLL_WRITE, &mut pages);
        assert_eq!(got, Ok(0), "{profile}: gup-fast after munmap");
        let base2 = map(&mut m, "second", 4);
        assert_eq!(base2, base);
        for i in 0..4 {
            let got = m.__get_user_pages_fast(
                base.wrapping_add(i * A::PAGE_SIZE),
                1,
                GupFlags::FOLL_WRITE,
                &mut pages,
            );
            assert_eq!(got, Ok(1), "{profile}");
        }
        let names: Vec<String> = pages.iter().map(|&p| m.page_name(p)).collect();
        assert_eq!(names, ["second[0]", "second[1]", "second[2]", "second[3]"]);
        release(&mut m, &mut pages);
        assert_eq!(m.held_total(), (0, 0));
    }
}

/// The PMD entry above the leaf table overwritten as bytes (through the
/// table's frame, not through `write_entry`): gup-fast, warmed on that leaf
/// table, must walk again and find nothing.
fn gup_fast_after_a_byte_write_into_a_table<A: Arch>() {
    let mut m = machine::<A>("v6.13");
    let mm = m.current_mm();
    let base = map(&mut m, "buf", 2);
    let mut pages = Vec::new();
    let got = m.__get_user_pages_fast(base, 2, GupFlags::FOLL_WRITE, &mut pages);
    assert_eq!(got, Ok(2));
    release(&mut m, &mut pages);
    let mut steps = Vec::new();
    pgtable::walk::<A>(
        &m.phys,
        m.family(),
        m.roots(mm),
        base,
        pgtable::RootSel::Software,
        |s| steps.push(*s),
    )
    .unwrap();
    let pmd = steps[steps.len() - 2];
    assert!(matches!(
        m.phys.page(pmd.entry_pa.pfn(A::PAGE_SHIFT)).owner,
        Owner::PageTable { .. }
    ));
    m.phys.write(pmd.entry_pa, &[0u8; 8]).unwrap();
    let got = m.__get_user_pages_fast(base, 2, GupFlags::FOLL_WRITE, &mut pages);
    assert_eq!(got, Ok(0), "the cleared PMD entry stops gup-fast");
    // get_user_pages_fast falls back and faults the pages in again.
    let got = m.get_user_pages_fast(base, 2, GupFlags::FOLL_WRITE, &mut pages);
    assert_eq!(got, Ok(2));
    release(&mut m, &mut pages);
}

/// uaccess, warmed on a writable page, must see mprotect and munmap.
fn uaccess_after_mprotect_and_munmap<A: Arch>() {
    let mut m = machine::<A>("v6.13");
    let mm = m.current_mm();
    let base = map(&mut m, "buf", 2);
    let a = base.wrapping_add(64);
    assert_eq!(m.copy_to_user(a, &[7u8; 16]), 0);
    assert_eq!(m.copy_to_user(a, &[8u8; 16]), 0);
    m.mprotect(mm, base, 2 * A::PAGE_SIZE, Prot::R).unwrap();
    assert_eq!(
        m.copy_to_user(a, &[9u8; 16]),
        16,
        "read-only after mprotect"
    );
    let mut buf = [0u8; 16];
    assert_eq!(m.copy_from_user(&mut buf, a), 0);
    assert_eq!(buf, [8u8; 16], "the failed write changed nothing");
    m.munmap(mm, base, 2 * A::PAGE_SIZE).unwrap();
    assert_eq!(
        m.copy_from_user(&mut buf, a),
        16,
        "nothing mapped after munmap"
    );
    assert_eq!(m.get_user(a, 8), Err(vmemu_mm::Errno::EFAULT));
}

/// A read maps the zero page read-only; a cached read translation must not
/// let the following write skip the COW fault.
fn uaccess_read_translation_does_not_serve_a_write<A: Arch>() {
    let mut m = machine::<A>("v6.13");
    let mm = m.current_mm();
    let base = m
        .mmap(
            mm,
            Some(VirtAddr(FIXED)),
            A::PAGE_SIZE,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "buf",
        )
        .unwrap();
    assert_eq!(m.get_user(base, 8), Ok(0));
    assert_eq!(m.get_user(base.wrapping_add(8), 8), Ok(0));
    let zero = m.user_pa(mm, base).unwrap();
    assert_eq!(m.page_name(zero.pfn(A::PAGE_SHIFT)), "ZERO");
    m.put_user(0x55, base, 8).unwrap();
    let pa = m.user_pa(mm, base).unwrap();
    assert_eq!(m.page_name(pa.pfn(A::PAGE_SHIFT)), "buf[0]", "COW broke");
    assert_eq!(m.get_user(base, 8), Ok(0x55));
    let mut z = [1u8; 8];
    m.phys.read(zero, &mut z).unwrap();
    assert_eq!(z, [0u8; 8], "the zero page stays zero");
}

/// uaccess's walk cache (the table of the last leaf), warmed by a copy
/// across consecutive pages, must see each change after which the kernel
/// flushes the TLB: mprotect, MADV_DONTNEED, fork's write-protect of the
/// parent (and the COW replacement of every page written then), munmap.
fn uaccess_walk_cache_sees_every_flush_point<A: Arch>() {
    const N: u64 = 8;
    let mut m = machine::<A>("v6.13");
    let mm = m.current_mm();
    let base = map(&mut m, "buf", N);
    let len = (N * A::PAGE_SIZE) as usize;
    let at = |i: u64| base.wrapping_add(i * A::PAGE_SIZE);
    assert_eq!(m.copy_to_user(base, &vec![1u8; len]), 0);
    let mut back = vec![0u8; len];
    assert_eq!(m.copy_from_user(&mut back, base), 0);
    assert!(back.iter().all(|&b| b == 1));

    m.mprotect(mm, at(3), A::PAGE_SIZE, Prot::R).unwrap();
    assert_eq!(
        m.copy_to_user(base, &vec![2u8; len]),
        (N - 3) * A::PAGE_SIZE,
        "the copy stops at the page made read-only"
    );
    m.mprotect(mm, at(3), A::PAGE_SIZE, Prot::RW).unwrap();

    m.madvise_dontneed(mm, at(5), A::PAGE_SIZE).unwrap();
    assert_eq!(m.copy_from_user(&mut back, base), 0);
    let page = A::PAGE_SIZE as usize;
    assert!(back[..3 * page].iter().all(|&b| b == 2));
    assert!(back[3 * page..5 * page].iter().all(|&b| b == 1));
    assert!(
        back[5 * page..6 * page].iter().all(|&b| b == 0),
        "MADV_DONTNEED dropped page 5: it reads as zero"
    );

    let before: Vec<_> = (0..N).map(|i| m.user_pa(mm, at(i)).unwrap()).collect();
    m.fork().unwrap();
    assert_eq!(m.copy_to_user(base, &vec![3u8; len]), 0);
    for (i, old) in before.iter().enumerate() {
        let new = m.user_pa(mm, at(i as u64)).unwrap();
        assert_ne!(
            new, *old,
            "page {i}: written through the old page after fork"
        );
        let mut b = [0u8; 1];
        m.phys.read(*old, &mut b).unwrap();
        assert_ne!(b[0], 3, "page {i}: the child's page was written");
    }

    m.munmap(mm, at(6), A::PAGE_SIZE).unwrap();
    assert_eq!(
        m.copy_from_user(&mut back, base),
        (N - 6) * A::PAGE_SIZE,
        "the copy stops at the unmapped page"
    );
    assert!(back[..6 * page].iter().all(|&b| b == 3));

    // The tables themselves go: munmap frees the leaf table the cache
    // points into; a new mapping at the same place gets new tables.
    m.munmap(mm, base, N * A::PAGE_SIZE).unwrap();
    assert_eq!(
        m.copy_from_user(&mut back, base),
        len as u64,
        "nothing mapped"
    );
    let again = m
        .mmap(
            mm,
            Some(base),
            N * A::PAGE_SIZE,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "again",
        )
        .unwrap();
    assert_eq!(again, base);
    assert_eq!(m.copy_from_user(&mut back, base), 0);
    assert!(back.iter().all(|&b| b == 0), "fresh anonymous memory");
}

/// The same user address in another mm (the child after fork) is another
/// translation: the cache is keyed by the roots.
fn uaccess_walk_cache_switches_mm<A: Arch>() {
    let mut m = machine::<A>("v6.13");
    let base = map(&mut m, "buf", 4);
    let parent = m.current;
    let (child, _) = m.fork().unwrap();
    let len = (4 * A::PAGE_SIZE) as usize;
    assert_eq!(m.copy_to_user(base, &vec![7u8; len]), 0);
    m.current = child;
    let mut back = vec![0u8; len];
    assert_eq!(m.copy_from_user(&mut back, base), 0);
    assert!(back.iter().all(|&b| b != 7), "the child sees its own pages");
    m.current = parent;
    assert_eq!(m.copy_from_user(&mut back, base), 0);
    assert!(back.iter().all(|&b| b == 7));
}

/// The walk cache's last step gives exactly the walk's translation, for
/// every address under the table of a leaf, mapped or not.
fn walk_from_leaf_table_is_the_walk<A: Arch>() {
    use vmemu_mm::pgtable::RootSel;
    let mut m = machine::<A>("v6.13");
    let mm = m.current_mm();
    let base = map(&mut m, "buf", 6);
    m.mprotect(
        mm,
        base.wrapping_add(2 * A::PAGE_SIZE),
        A::PAGE_SIZE,
        Prot::R,
    )
    .unwrap();
    m.munmap(mm, base.wrapping_add(4 * A::PAGE_SIZE), A::PAGE_SIZE)
        .unwrap();
    let roots = m.roots(mm);
    let fam = m.family();
    let t = pgtable::walk::<A>(&m.phys, fam, roots, base, RootSel::Hardware, |_| {}).unwrap();
    let table = PhysAddr(t.entry_pa.0 - A::index(base, t.level) as u64 * 8);
    let mut hits = 0;
    let span = A::entries(t.level) as u64 * t.page_size;
    // Without and with the decode memo carried from entry to entry.
    let mut memo = None;
    for carry in [false, true] {
        for i in 0..A::entries(t.level) as u64 {
            let va = VirtAddr((base.0 & !(span - 1)) + i * t.page_size + 8);
            let full = pgtable::walk::<A>(&m.phys, fam, roots, va, RootSel::Hardware, |_| {});
            if !carry {
                memo = None;
            }
            let cached = pgtable::walk_from_leaf_table::<A>(
                &m.phys,
                fam,
                table,
                t.level,
                t.table_perms,
                t.root,
                va,
                &mut memo,
            );
            match full {
                Ok(f) => {
                    assert_eq!(cached, Some(f), "{va}");
                    hits += 1;
                }
                Err(_) => assert_eq!(cached, None, "{va}"),
            }
        }
    }
    assert_eq!(hits, 10, "five pages mapped, one of them read-only");
}

/// A dropped machine's memory goes back to the pool scrubbed: the next
/// `PhysMem` of the same size reads zero everywhere it was written, and its
/// allocator's fresh frames are zero.
fn pooled_memory_reads_as_fresh<A: Arch>() {
    let size = 8 << 20;
    let spots: Vec<u64> = vec![0, 4096, 8190, size / 2 + 17, size - 64];
    for _ in 0..3 {
        let mut p = PhysMem::new::<A>(size).unwrap();
        for &s in &spots {
            let mut b = [0u8; 64];
            let n = (size - s).min(64) as usize;
            p.read(PhysAddr(s), &mut b[..n]).unwrap();
            assert_eq!(&b[..n], &[0u8; 64][..n], "byte at {s:#x} not scrubbed");
            p.write(PhysAddr(s), &[0xa5; 64][..n]).unwrap();
        }
        let f = p.alloc(0, Owner::Zero).unwrap();
        let mut page = vec![1u8; A::PAGE_SIZE as usize];
        p.read(f.addr(A::PAGE_SHIFT), &mut page).unwrap();
        // Frame 0 was written above; a fresh frame from the allocator is not
        // zeroed by it: the pool must have done it.
        assert!(
            page.iter().all(|&b| b == 0) || f.0 == 0,
            "fresh frame {f:?} not zero"
        );
        p.write_entry(PhysAddr(size - 8), 0x1234).unwrap();
        let other = PhysMem::new::<A>(size + A::PAGE_SIZE).unwrap();
        let mut b = [1u8; 8];
        other.read(PhysAddr(size - 8), &mut b).unwrap();
        assert_eq!(b, [0u8; 8], "a mapping of another size is fresh too");
    }
}
