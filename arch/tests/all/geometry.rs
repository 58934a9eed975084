//! The geometry variants (`x86_64-la57`, `arm64-52`, `arm64-16k`): level
//! tables, layouts, `access_ok` edges, hardware root selection and raw
//! entry vectors, each from the kernel header it stands for.

use vmemu_arch::{
    Arch, ArchId, Arm64, Arm64_16k, Arm64_52, Family, HwRoot, Level, Pfn, Pte, PteFlags, SizeKind,
    VirtAddr, X86_64La57,
};

const LEG: Family = Family::Legacy;
const MOD: Family = Family::Modern;
const R: SizeKind = SizeKind::Runtime;
const C: SizeKind = SizeKind::Constant;

fn geometry<A: Arch>() -> Vec<(&'static str, u32, usize, bool)> {
    A::LEVELS
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name, g.shift, A::entries(Level(i as u8)), g.leaf_ok))
        .collect()
}

#[test]
fn level_tables() {
    // x86 5-level: PGDIR_SHIFT 48, P4D_SHIFT 39, 512 entries each
    // (`pgtable_64_types.h`); no p4d or pgd leaves.
    assert_eq!(
        geometry::<X86_64La57>(),
        [
            ("pgd", 48, 512, false),
            ("p4d", 39, 512, false),
            ("pud", 30, 512, true),
            ("pmd", 21, 512, true),
            ("pte", 12, 512, true),
        ]
    );
    assert_eq!(X86_64La57::va_bits(), 57);
    // arm64 4K/52 with LPA2: level -1 resolves VA bits 51..48 (16 entries,
    // PTRS_PER_PGD = 1 << (VA_BITS - PGDIR_SHIFT)).
    assert_eq!(
        geometry::<Arm64_52>(),
        [
            ("pgd", 48, 16, false),
            ("p4d", 39, 512, false),
            ("pud", 30, 512, true),
            ("pmd", 21, 512, true),
            ("pte", 12, 512, true),
        ]
    );
    assert_eq!(Arm64_52::va_bits(), 52);
    // arm64 16K/48: (PAGE_SHIFT - 3) = 11 index bits per level, four levels,
    // a two-entry pgd; PMD blocks of 32 MiB, no PUD blocks.
    assert_eq!(
        geometry::<Arm64_16k>(),
        [
            ("pgd", 47, 2, false),
            ("pud", 36, 2048, false),
            ("pmd", 25, 2048, true),
            ("pte", 14, 2048, true),
        ]
    );
    assert_eq!(Arm64_16k::va_bits(), 48);
    assert_eq!(Arm64_16k::PAGE_SIZE, 16384);
    assert_eq!(Arm64_16k::entry_span(Level(2)), 32 << 20);
    assert_eq!(Arm64_16k::table_bytes(Level(0)), 16);
}

#[test]
fn layouts() {
    // x86 4.17 / 6.13 5-level: TASK_SIZE_MAX = 2^56 - PAGE_SIZE,
    // __PAGE_OFFSET_BASE_L5 0xff10.. (4.17) / 0xff11.. (6.13),
    // __VMALLOC_BASE_L5 0xffa0...
    let tsm = (1u64 << 56) - 4096;
    let l = X86_64La57::layout(LEG);
    assert_eq!(
        (
            l.task_size_max,
            l.page_offset,
            l.vmalloc_start,
            l.user_ds,
            l.kernel_ds
        ),
        (
            tsm,
            0xff10_0000_0000_0000,
            0xffa0_0000_0000_0000,
            tsm,
            u64::MAX
        )
    );
    assert_eq!(l.virtual_mask_shift, Some(56));
    let m = X86_64La57::layout(MOD);
    assert_eq!(
        (
            m.task_size_max,
            m.page_offset,
            m.user_ds,
            m.kernel_ds,
            m.vsyscall
        ),
        (tsm, 0xff11_0000_0000_0000, tsm, tsm, None)
    );
    // arm64 6.13 52-bit: TASK_SIZE_MAX = 2^52, PAGE_OFFSET = -2^52, vmalloc
    // after the modules at PAGE_END = -2^(VA_BITS_MIN - 1) = -2^47.
    let a = Arm64_52::layout(MOD);
    assert_eq!(
        (a.task_size_max, a.page_offset, a.vmalloc_start, a.kernel_ds),
        (
            1 << 52,
            0xfff0_0000_0000_0000,
            0xffff_8000_8000_0000,
            1 << 52
        )
    );
    // arm64 16K/48: the 48-bit layouts of both families.
    for fam in [LEG, MOD] {
        assert_eq!(Arm64_16k::layout(fam), Arm64::layout(fam), "{fam:?}");
    }
    for a in [ArchId::X86_64La57, ArchId::Arm64_52, ArchId::Arm64_16k] {
        vmemu_arch::with_arch!(a, A => {
            for fam in [LEG, MOD] {
                let l = A::layout(fam);
                assert!(l.task_size_max <= 1 << A::va_bits(), "{a}");
                assert!(A::VMEMMAP_START >= l.task_size_max, "{a}");
                for va in [l.page_offset, l.vmalloc_start, l.task_size_max - 1] {
                    assert!(A::hw_root(fam, VirtAddr(va)).is_some(), "{a} {va:#x}");
                }
            }
        });
    }
}

#[test]
fn access_ok_edges() {
    let p48 = 1u64 << 48;
    let p52 = 1u64 << 52;
    // The zero-length iovec at 1 << 48: -EFAULT on a 48-bit kernel, passes on
    // a 52-bit one (6.13 `TASK_SIZE_MAX (UL(1) << VA_BITS)`, generic
    // `access_ok`: size <= max && addr <= max - size).
    assert!(!Arm64::access_ok(MOD, VirtAddr(p48 + 1), 0, 0, R));
    assert!(Arm64::access_ok(MOD, VirtAddr(p48), 0, 0, R));
    assert!(!Arm64::access_ok(MOD, VirtAddr(p48), 1, 0, R));
    assert!(Arm64_52::access_ok(MOD, VirtAddr(p48), 1, 0, R));
    assert!(Arm64_52::access_ok(MOD, VirtAddr(p52), 0, 0, R));
    assert!(!Arm64_52::access_ok(MOD, VirtAddr(p52 - 7), 8, 0, R));
    assert!(!Arm64_52::access_ok(MOD, VirtAddr(u64::MAX - 3), 8, 0, R));
    // 16K/48: the 48-bit rules, v4.10's 65-bit sum included.
    for (addr, size) in [(p48 - 8, 8), (p48 - 7, 8), (p48, 0), (u64::MAX, 2)] {
        for fam in [LEG, MOD] {
            let lim = Arm64::layout(fam).user_ds;
            assert_eq!(
                Arm64_16k::access_ok(fam, VirtAddr(addr), size, lim, R),
                Arm64::access_ok(fam, VirtAddr(addr), size, lim, R),
                "{addr:#x} {size}"
            );
        }
    }
    // x86 5-level: USER_PTR_MAX = TASK_SIZE_MAX = 2^56 - 4096; a constant
    // size up to a page checks the start only (6.13 `__access_ok`).
    let tsm = (1u64 << 56) - 4096;
    assert!(X86_64La57::access_ok(MOD, VirtAddr(1 << 47), 4096, 0, R));
    assert!(X86_64La57::access_ok(MOD, VirtAddr(tsm - 8), 8, 0, R));
    assert!(!X86_64La57::access_ok(MOD, VirtAddr(tsm - 7), 8, 0, R));
    assert!(X86_64La57::access_ok(MOD, VirtAddr(tsm), 8, 0, C));
    assert!(!X86_64La57::access_ok(MOD, VirtAddr(tsm + 1), 8, 0, C));
    assert!(!X86_64La57::access_ok(MOD, VirtAddr(u64::MAX - 3), 8, 0, R));
    // 4.17 under USER_DS and KERNEL_DS.
    assert!(X86_64La57::access_ok(LEG, VirtAddr(1 << 50), 8, tsm, R));
    assert!(!X86_64La57::access_ok(LEG, VirtAddr(tsm), 8, tsm, R));
    assert!(X86_64La57::access_ok(
        LEG,
        VirtAddr(0xff10_0000_0000_0000),
        8,
        u64::MAX,
        R
    ));
}

#[test]
fn hw_roots() {
    // arm64 52-bit: TTBR0 up to 2^52 (top byte ignored), TTBR1 from -2^52.
    assert_eq!(Arm64_52::hw_root(MOD, VirtAddr(1 << 51)), Some(HwRoot::Mm));
    assert_eq!(Arm64::hw_root(MOD, VirtAddr(1 << 51)), None);
    assert_eq!(Arm64_52::hw_root(MOD, VirtAddr(1 << 52)), None);
    assert_eq!(
        Arm64_52::hw_root(MOD, VirtAddr(0x5a0f_0000_0000_0000)),
        Some(HwRoot::Mm)
    );
    assert_eq!(
        Arm64_52::hw_root(MOD, VirtAddr(0xfff0_0000_0000_0000)),
        Some(HwRoot::Kernel)
    );
    assert_eq!(
        Arm64_52::hw_root(MOD, VirtAddr(0xffe0_0000_0000_0000)),
        None
    );
    // x86 LA57: canonical in 57 bits.
    assert_eq!(
        X86_64La57::hw_root(MOD, VirtAddr(0x00ff_ffff_ffff_f000)),
        Some(HwRoot::Mm)
    );
    assert_eq!(X86_64La57::hw_root(MOD, VirtAddr(1 << 56)), None);
    assert_eq!(
        X86_64La57::hw_root(MOD, VirtAddr(0xff11_0000_0000_0000)),
        Some(HwRoot::Mm)
    );
    // The pgd index of a 6.13 LA57 direct-map address: the shared kernel
    // half starts at KERNEL_PGD_BOUNDARY = pgd_index(PAGE_OFFSET).
    assert_eq!(X86_64La57::pgd_index(VirtAddr(0xff11_0000_0000_0000)), 273);
}

#[test]
fn raw_entry_vectors() {
    let ro = PteFlags::VALID | PteFlags::USER | PteFlags::RDONLY | PteFlags::YOUNG | PteFlags::LEAF;
    // arm64 LPA2: no SH field (PTE_MAYBE_SHARED = 0); OA bits 51..50 in
    // descriptor bits 9..8 (`PTE_ADDR_HIGH`, shift 42).
    let pfn = Pfn((1 << 38) | 0x40_0000); // PA bit 50 and 0x4_0000_0000
    let raw = Arm64_52::encode(MOD, Level(4), Pte { flags: ro, pfn });
    assert_eq!(raw & (3 << 8), 1 << 8);
    assert_eq!(raw & ((1 << 50) - (1 << 12)), 0x4_0000_0000);
    assert_eq!(Arm64_52::decode(MOD, Level(4), raw).pfn, pfn);
    let small = Arm64_52::encode(
        MOD,
        Level(4),
        Pte {
            flags: ro,
            pfn: Pfn(0x40_0000),
        },
    );
    assert_eq!(small, 0x0060_0004_0000_0cd3);
    // The 48-bit format keeps SH = inner shareable in bits 9..8.
    let four = Arm64::encode(
        MOD,
        Level(3),
        Pte {
            flags: ro,
            pfn: Pfn(0x40_0000),
        },
    );
    assert_eq!(four, 0x0060_0004_0000_0fd3);
    // arm64 16K: the output address is bits 47..14.
    let k16 = Arm64_16k::encode(
        LEG,
        Level(3),
        Pte {
            flags: ro,
            pfn: Pfn(0x10_0000),
        },
    );
    assert_eq!(k16, 0x0060_0004_0000_0fd3);
    assert_eq!(Arm64_16k::decode(LEG, Level(3), k16).pfn, Pfn(0x10_0000));
    // A 16K table descriptor: next-level address | table | valid.
    let t = Arm64_16k::encode(
        LEG,
        Level(1),
        Pte {
            flags: PteFlags::VALID | PteFlags::TABLE,
            pfn: Pfn(3),
        },
    );
    assert_eq!(t, 0xc003);
    // x86 LA57 entries are the 4-level format, one level higher.
    let p4d = X86_64La57::encode(
        MOD,
        Level(1),
        Pte {
            flags: PteFlags::VALID | PteFlags::TABLE | PteFlags::WRITE | PteFlags::USER,
            pfn: Pfn(0x1234),
        },
    );
    assert!(X86_64La57::decode(MOD, Level(1), p4d).has(PteFlags::TABLE));
    assert!(X86_64La57::decode(MOD, Level(4), p4d).has(PteFlags::LEAF));
}
