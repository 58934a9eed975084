//! fork/exit and the write-fault reuse rules (GUP pins vs fork, spec
//! known-bugs.md §8), on every arch: what `copy_present_pte` does to the
//! parent's page, what a write after fork does under each `wp_reuse_rule`,
//! and that exit gives every reference back.

use vmemu_arch::{Arch, Pfn, VirtAddr};
use vmemu_mm::{Backing, EventKind, GupFlags, KernelProfile, Machine, MapFlags, Prot};

fn machine<A: Arch>(k: &str) -> (Machine<A>, VirtAddr) {
    let mut m = Machine::<A>::new(KernelProfile::parse(k).unwrap(), 32 << 20).unwrap();
    let mm = m.current_mm();
    let buf = m
        .mmap(
            mm,
            None,
            A::PAGE_SIZE,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "buf",
        )
        .unwrap();
    assert_eq!(m.copy_to_user(buf, &[7; 16]), 0);
    (m, buf)
}

fn frame<A: Arch>(m: &Machine<A>, va: VirtAddr) -> Pfn {
    let mm = m.current_mm();
    m.user_pa(mm, va).unwrap().pfn(A::PAGE_SHIFT)
}

fn ok<A: Arch>(m: &Machine<A>) {
    if let Err(v) = m.check_invariants() {
        panic!("invariants: {v:#?}");
    }
}

/// An unpinned private anon page is shared by fork (mapcount 2, one more
/// reference); a write in either process copies it (every rule: it is
/// mapped twice); the child's exit gives its references back.
fn fork_shares_then_cow_copies<A: Arch>() {
    for k in [
        "v4.17",
        "v4.17+cow-break-on-pin",
        "v4.17+wp-page-count",
        "v6.13",
    ] {
        let (mut m, buf) = machine::<A>(k);
        let x = frame(&m, buf);
        let parent = m.current;
        let (child, st) = m.fork().unwrap();
        assert_eq!((st.anon_shared, st.copied), (1, 0), "{k}");
        let p = *m.phys.page(x);
        assert_eq!((p.mapcount, p.refcount), (2, 2), "{k}");
        ok(&m);
        m.current = child;
        assert_eq!(m.copy_to_user(buf, &[9]), 0);
        let y = frame(&m, buf);
        assert_ne!(x, y, "{k}: the child's write must copy");
        m.current = parent;
        assert_eq!(frame(&m, buf), x);
        let mut b = [0u8; 1];
        assert_eq!(m.copy_from_user(&mut b, buf), 0);
        assert_eq!(b[0], 7, "{k}: the parent keeps its bytes");
        m.exit_task(child).unwrap();
        let p = *m.phys.page(x);
        assert_eq!((p.mapcount, p.refcount), (1, 1), "{k}");
        assert!(
            m.phys
                .page(y)
                .flags
                .contains(vmemu_mm::phys::PageFlags::FREE),
            "{k}"
        );
        ok(&m);
        assert!(m.events.is_empty(), "{k}: {:?}", m.events);
    }
}

/// A page with an extra gup reference, shared at fork, then unmapped by
/// the child: the parent's write reuses it in place only under the
/// mapcount rule (`shared_page_reused`); page_count and PageAnonExclusive
/// copy it.
fn reuse_rule_after_child_unmaps<A: Arch>() {
    for (k, reused) in [
        ("v4.17", true),
        ("v4.17+wp-page-count", false),
        ("v6.13", false),
    ] {
        let (mut m, buf) = machine::<A>(k);
        let x = frame(&m, buf);
        let parent = m.current;
        let (child, _) = m.fork().unwrap();
        m.current = child;
        let mut pages = Vec::new();
        assert_eq!(
            m.get_user_pages_fast(buf, 1, GupFlags::empty(), &mut pages),
            Ok(1)
        );
        let cmm = m.current_mm();
        m.munmap(cmm, buf, A::PAGE_SIZE).unwrap();
        m.current = parent;
        assert_eq!(m.copy_to_user(buf, &[9]), 0);
        assert_eq!(frame(&m, buf) == x, reused, "{k}");
        let ev = m
            .events
            .iter()
            .any(|e| e.kind == EventKind::SharedPageReused);
        assert_eq!(ev, reused, "{k}");
        let mut b = [0u8; 1];
        m.phys.read(pages[0].addr(A::PAGE_SHIFT), &mut b).unwrap();
        assert_eq!(
            b[0],
            if reused { 9 } else { 7 },
            "{k}: what the reference sees"
        );
        m.put_page(pages[0]).unwrap();
        m.exit_task(child).unwrap();
        ok(&m);
    }
}

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

on_every_arch!(fork_shares_then_cow_copies, reuse_rule_after_child_unmaps);
