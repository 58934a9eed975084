//! x86-64, 4-level and 5-level paging (`arch/x86/include/asm/pgtable_64_types.h`,
//! `page_64_types.h`, `pgtable_types.h`, `uaccess.h`).

use crate::{
    Arch, ArchId, Family, HwRoot, Layout, Level, LevelGeom, Pfn, PhysAddr, Pte, PteFlags, SizeKind,
    VirtAddr, bits,
};

/// x86-64 with 4-level page tables and 4 KiB pages.
#[derive(Clone, Copy, Default, Debug)]
pub struct X86_64;

/// x86-64 with 5-level page tables (LA57, `CONFIG_X86_5LEVEL`: 4.14
/// 77ef56e4f0fb, switchable at boot since 4.17) on a CPU that has LA57:
/// 57-bit virtual addresses, `__VIRTUAL_MASK_SHIFT` = 56.
#[derive(Clone, Copy, Default, Debug)]
pub struct X86_64La57;

const _PAGE_PRESENT: u64 = 1 << 0;
const _PAGE_RW: u64 = 1 << 1;
const _PAGE_USER: u64 = 1 << 2;
const _PAGE_ACCESSED: u64 = 1 << 5;
const _PAGE_DIRTY: u64 = 1 << 6;
/// `_PAGE_PSE` in a PMD/PUD (PAT in a PTE).
const _PAGE_PSE: u64 = 1 << 7;
/// `_PAGE_GLOBAL`, read as `_PAGE_PROTNONE` when PRESENT is clear.
const _PAGE_PROTNONE: u64 = 1 << 8;
const _PAGE_SPECIAL: u64 = 1 << 9;
/// `_PAGE_DEVMAP`: SOFTW4 (bit 58) in v4.10, bit 57 in 6.x.
const fn page_devmap(f: Family) -> u64 {
    match f {
        Family::Legacy => 1 << 58,
        Family::Modern => 1 << 57,
    }
}
const _PAGE_NX: u64 = 1 << 63;
/// `PTE_PFN_MASK` for 52-bit physical addresses.
const PTE_PFN_MASK: u64 = bits(52) & !bits(12);

/// The address-space constants of 4-level (`la57` false) or 5-level paging.
#[inline]
fn layout(family: Family, la57: bool) -> Layout {
    // TASK_SIZE_MAX = 2^__VIRTUAL_MASK_SHIFT - PAGE_SIZE (the guard page below
    // the non-canonical hole; 4.17 and 6.13 `page_64_types.h`
    // `__VIRTUAL_MASK_SHIFT (pgtable_l5_enabled() ? 56 : 47)`), USER_DS =
    // TASK_SIZE_MAX, KERNEL_DS = -1 (v4.x).
    let shift = if la57 { 56 } else { 47 };
    let task_size_max = (1u64 << shift) - 4096;
    Layout {
        task_size_max,
        // __PAGE_OFFSET_BASE_L4 / _L5: 0xffff880000000000 / 0xff10000000000000
        // in 4.17, 0xffff888000000000 / 0xff11000000000000 in 6.13.
        page_offset: match (family, la57) {
            (Family::Legacy, false) => 0xffff_8800_0000_0000,
            (Family::Modern, false) => 0xffff_8880_0000_0000,
            (Family::Legacy, true) => 0xff10_0000_0000_0000,
            (Family::Modern, true) => 0xff11_0000_0000_0000,
        },
        // __VMALLOC_BASE_L4 / _L5 (`pgtable_64_types.h`, 4.17 and 6.13).
        vmalloc_start: if la57 {
            0xffa0_0000_0000_0000
        } else {
            0xffff_c900_0000_0000
        },
        user_ds: task_size_max,
        // 6.x has no set_fs: KERNEL_DS cannot widen the limit (as on arm64/ppc64).
        kernel_ds: match family {
            Family::Legacy => u64::MAX,
            Family::Modern => task_size_max,
        },
        virtual_mask_shift: Some(shift),
        // v4.10 default vsyscall=emulate maps the page readable with USER;
        // 6.x defaults to xonly, which leaves no readable PTE.
        vsyscall: match family {
            Family::Legacy => Some(0xffff_ffff_ff60_0000),
            Family::Modern => None,
        },
    }
}

#[inline]
fn access_ok(
    family: Family,
    max: u64,
    addr: VirtAddr,
    size: u64,
    limit: u64,
    kind: SizeKind,
) -> bool {
    match family {
        // v4.10 __chk_range_not_ok(): a constant size compares addr with
        // limit - size; otherwise the sum must not carry and must be <= limit.
        Family::Legacy => match kind {
            SizeKind::Constant => addr.0 <= limit.wrapping_sub(size),
            SizeKind::Runtime => {
                let sum = addr.0.wrapping_add(size);
                sum >= size && sum <= limit
            }
        },
        // 6.13 __access_ok(): USER_PTR_MAX = TASK_SIZE_MAX (without LAM,
        // `arch/x86/kernel/cpu/common.c`); constant sizes up to a page only
        // check the start (the guard page absorbs the slop).
        Family::Modern => {
            if kind == SizeKind::Constant && size <= 4096 {
                addr.0 <= max
            } else {
                let sum = addr.0.wrapping_add(size);
                sum <= max && sum >= addr.0
            }
        }
    }
}

#[inline]
fn decode(family: Family, last: bool, raw: u64) -> Pte {
    if raw == 0 {
        return Pte::NONE;
    }
    let p = raw & _PAGE_PRESENT != 0;
    let pse = !last && raw & _PAGE_PSE != 0;
    let leaf = last || pse;
    let mut f = PteFlags::empty();
    f.set(PteFlags::VALID, p);
    // pte_protnone: PROTNONE set and PRESENT clear.
    let protnone = leaf && !p && raw & _PAGE_PROTNONE != 0;
    f.set(PteFlags::PROTNONE, protnone);
    // pte_present accepts PROTNONE; pmd_present also PSE.
    let present = p || protnone || pse;
    f.set(PteFlags::PRESENT, present);
    f.set(PteFlags::WRITE, raw & _PAGE_RW != 0);
    f.set(PteFlags::USER, raw & _PAGE_USER != 0);
    f.set(PteFlags::YOUNG, raw & _PAGE_ACCESSED != 0);
    f.set(PteFlags::DIRTY, raw & _PAGE_DIRTY != 0);
    f.set(PteFlags::EXEC, raw & _PAGE_NX == 0);
    if leaf {
        f |= PteFlags::LEAF;
        f.set(PteFlags::READ, p);
        f.set(PteFlags::SPECIAL, raw & _PAGE_SPECIAL != 0);
        f.set(PteFlags::DEVMAP, raw & page_devmap(family) != 0);
    } else if p {
        f |= PteFlags::TABLE;
    }
    Pte {
        flags: f,
        pfn: Pfn((raw & PTE_PFN_MASK) >> 12),
    }
}

#[inline]
fn table_step(last: bool, raw: u64) -> Option<(PhysAddr, PteFlags)> {
    // decode: TABLE = not the last level, PRESENT set, PSE clear.
    if last || raw & (_PAGE_PRESENT | _PAGE_PSE) != _PAGE_PRESENT {
        return None;
    }
    let mut f = PteFlags::empty();
    f.set(PteFlags::WRITE, raw & _PAGE_RW != 0);
    f.set(PteFlags::USER, raw & _PAGE_USER != 0);
    Some((PhysAddr(raw & PTE_PFN_MASK), f))
}

fn encode(family: Family, last: bool, pte: Pte) -> u64 {
    // pXd_none() is the all-zero entry (NX below would otherwise be set).
    if pte == Pte::NONE {
        return 0;
    }
    let f = pte.flags;
    let mut raw = (pte.pfn.0 << 12) & PTE_PFN_MASK;
    let set = |raw: &mut u64, flag: PteFlags, bit: u64| {
        if f.contains(flag) {
            *raw |= bit;
        }
    };
    set(&mut raw, PteFlags::VALID, _PAGE_PRESENT);
    set(&mut raw, PteFlags::WRITE, _PAGE_RW);
    set(&mut raw, PteFlags::USER, _PAGE_USER);
    set(&mut raw, PteFlags::YOUNG, _PAGE_ACCESSED);
    set(&mut raw, PteFlags::DIRTY, _PAGE_DIRTY);
    if !f.contains(PteFlags::EXEC) {
        raw |= _PAGE_NX;
    }
    if f.contains(PteFlags::LEAF) {
        if !last {
            raw |= _PAGE_PSE;
        }
        set(&mut raw, PteFlags::SPECIAL, _PAGE_SPECIAL);
        set(&mut raw, PteFlags::DEVMAP, page_devmap(family));
        if f.contains(PteFlags::PROTNONE) {
            raw = (raw & !_PAGE_PRESENT) | _PAGE_PROTNONE;
        }
    }
    raw
}

const fn lvl(name: &'static str, shift: u32, bits: u32, leaf_ok: bool) -> LevelGeom {
    LevelGeom {
        name,
        shift,
        bits,
        leaf_ok,
    }
}

/// The bits of an x86 entry by their `pgtable_types.h` names. Bit 7 is
/// `_PAGE_PSE` above the last level and `_PAGE_PAT` in a PTE; bit 8 is
/// `_PAGE_GLOBAL` in a present entry and read as `_PAGE_PROTNONE` in one
/// without `_PAGE_PRESENT`.
fn entry_bits(f: Family, last: bool, raw: u64) -> Vec<(&'static str, bool)> {
    let present = raw & _PAGE_PRESENT != 0;
    let mut v = vec![
        ("_PAGE_PRESENT", present),
        ("_PAGE_RW", raw & _PAGE_RW != 0),
        ("_PAGE_USER", raw & _PAGE_USER != 0),
        ("_PAGE_PWT", raw & (1 << 3) != 0),
        ("_PAGE_PCD", raw & (1 << 4) != 0),
        ("_PAGE_ACCESSED", raw & _PAGE_ACCESSED != 0),
        ("_PAGE_DIRTY", raw & _PAGE_DIRTY != 0),
    ];
    let leaf = last || raw & _PAGE_PSE != 0;
    if leaf {
        v.push((
            if last { "_PAGE_PAT" } else { "_PAGE_PSE" },
            raw & _PAGE_PSE != 0,
        ));
        let g = if present {
            "_PAGE_GLOBAL"
        } else {
            "_PAGE_PROTNONE"
        };
        v.push((g, raw & _PAGE_PROTNONE != 0));
        v.push(("_PAGE_SPECIAL", raw & _PAGE_SPECIAL != 0));
        v.push(("_PAGE_DEVMAP", raw & page_devmap(f) != 0));
    } else {
        v.push(("_PAGE_PSE", false));
    }
    v.push(("_PAGE_NX", raw & _PAGE_NX != 0));
    v
}

macro_rules! x86_arch {
    ($ty:ident, $id:expr, $la57:expr, $levels:expr, $vmemmap:expr) => {
        impl Arch for $ty {
            fn entry_bits(family: Family, level: Level, raw: u64) -> Vec<(&'static str, bool)> {
                entry_bits(family, level == Self::leaf_level(), raw)
            }
            const ID: ArchId = $id;
            const PAGE_SHIFT: u32 = 12;
            const LEVELS: &'static [LevelGeom] = $levels;
            const BIG_ENDIAN: bool = false;
            const TABLE_PERMS: bool = true;
            const SHARED_KERNEL_PGD: bool = true;
            const TLB_FLUSH_IPI: bool = true;
            const PRIVATE_GUP_FAST: bool = true;
            const VMEMMAP_START: u64 = $vmemmap;

            fn hw_root_desc(_root: HwRoot) -> &'static str {
                "CR3: the mm's pgd, whose kernel half is shared with init_mm"
            }

            #[inline]
            fn layout(family: Family) -> Layout {
                layout(family, $la57)
            }

            #[inline]
            fn access_ok(
                family: Family,
                addr: VirtAddr,
                size: u64,
                limit: u64,
                kind: SizeKind,
            ) -> bool {
                access_ok(
                    family,
                    Self::layout(family).task_size_max,
                    addr,
                    size,
                    limit,
                    kind,
                )
            }

            #[inline]
            fn decode(family: Family, level: Level, raw: u64) -> Pte {
                decode(family, level == Self::leaf_level(), raw)
            }

            #[inline]
            fn table_step(_family: Family, level: Level, raw: u64) -> Option<(PhysAddr, PteFlags)> {
                table_step(level == Self::leaf_level(), raw)
            }

            #[inline]
            fn leaf_pfn_field(_level: Level) -> Option<(u64, u32)> {
                Some((PTE_PFN_MASK, 12))
            }

            fn encode(family: Family, level: Level, pte: Pte) -> u64 {
                encode(family, level == Self::leaf_level(), pte)
            }

            #[inline]
            fn hw_root(_family: Family, va: VirtAddr) -> Option<HwRoot> {
                // Canonical: bits 63..VA_BITS-1 all equal. One root; its
                // kernel half is shared.
                let s = 64 - Self::va_bits();
                let canonical = ((va.0 << s) as i64 >> s) as u64 == va.0;
                canonical.then_some(HwRoot::Mm)
            }
        }
    };
}

// __VMEMMAP_BASE_L4 (`pgtable_64_types.h`).
x86_arch!(
    X86_64,
    ArchId::X86_64,
    false,
    &[
        lvl("pgd", 39, 9, false),
        lvl("pud", 30, 9, true),
        lvl("pmd", 21, 9, true),
        lvl("pte", 12, 9, true),
    ],
    0xffff_ea00_0000_0000
);
// 5-level: PGDIR_SHIFT 48 above P4D_SHIFT 39 (`pgtable_64_types.h`); no
// p4d leaves. __VMEMMAP_BASE_L5.
x86_arch!(
    X86_64La57,
    ArchId::X86_64La57,
    true,
    &[
        lvl("pgd", 48, 9, false),
        lvl("p4d", 39, 9, false),
        lvl("pud", 30, 9, true),
        lvl("pmd", 21, 9, true),
        lvl("pte", 12, 9, true),
    ],
    0xffd4_0000_0000_0000
);

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: Family = Family::Legacy;

    #[test]
    fn user_rw_4k_vector() {
        // A present, writable, user, accessed, dirty 4K entry for pfn 0x1234 with NX.
        let pte = Pte {
            flags: PteFlags::VALID
                | PteFlags::WRITE
                | PteFlags::USER
                | PteFlags::YOUNG
                | PteFlags::DIRTY
                | PteFlags::LEAF,
            pfn: Pfn(0x1234),
        };
        let raw = X86_64::encode(LEGACY, Level(3), pte);
        assert_eq!(raw, 0x8000_0000_0123_4067);
        let back = X86_64::decode(LEGACY, Level(3), raw);
        assert!(back.has(PteFlags::PRESENT | PteFlags::READ | PteFlags::USER | PteFlags::WRITE));
        assert!(!back.has(PteFlags::EXEC));
        assert_eq!(back.pfn, Pfn(0x1234));
    }

    #[test]
    fn pse_marks_upper_leaf_but_is_pat_at_pte_level() {
        let raw = 0x0000_0000_0020_0000 | _PAGE_PRESENT | _PAGE_RW | _PAGE_PSE;
        let pmd = X86_64::decode(LEGACY, Level(2), raw);
        assert!(pmd.has(PteFlags::LEAF) && !pmd.has(PteFlags::TABLE));
        assert_eq!(pmd.pfn, Pfn(0x200));
        let pte = X86_64::decode(LEGACY, Level(3), raw);
        assert!(pte.has(PteFlags::LEAF));
        // Without PSE the same entry at PMD level is a table pointer.
        let table = X86_64::decode(LEGACY, Level(2), raw & !_PAGE_PSE);
        assert!(table.has(PteFlags::TABLE) && !table.has(PteFlags::LEAF));
    }

    #[test]
    fn protnone_is_global_bit_without_present() {
        let raw = (5 << 12) | _PAGE_PROTNONE | _PAGE_ACCESSED;
        let p = X86_64::decode(LEGACY, Level(3), raw);
        assert!(p.has(PteFlags::PROTNONE | PteFlags::PRESENT));
        assert!(!p.has(PteFlags::VALID));
        // With PRESENT set, bit 8 is GLOBAL, not PROTNONE.
        let g = X86_64::decode(LEGACY, Level(3), raw | _PAGE_PRESENT);
        assert!(!g.has(PteFlags::PROTNONE));
    }

    #[test]
    fn devmap_moved_from_58_to_57() {
        let pte = Pte {
            flags: PteFlags::VALID | PteFlags::LEAF | PteFlags::DEVMAP,
            pfn: Pfn(1),
        };
        assert_ne!(X86_64::encode(Family::Legacy, Level(3), pte) & (1 << 58), 0);
        assert_ne!(X86_64::encode(Family::Modern, Level(3), pte) & (1 << 57), 0);
        assert!(X86_64::decode(Family::Modern, Level(3), (1 << 57) | 1).has(PteFlags::DEVMAP));
        assert!(!X86_64::decode(Family::Legacy, Level(3), (1 << 57) | 1).has(PteFlags::DEVMAP));
    }

    #[test]
    fn canonical_addresses_only() {
        assert_eq!(
            X86_64::hw_root(LEGACY, VirtAddr(0x7fff_ffff_f000)),
            Some(HwRoot::Mm)
        );
        assert_eq!(
            X86_64::hw_root(LEGACY, VirtAddr(0xffff_8800_0000_0000)),
            Some(HwRoot::Mm)
        );
        assert_eq!(
            X86_64::hw_root(LEGACY, VirtAddr(0x0000_8000_0000_0000)),
            None
        );
    }

    #[test]
    fn kernel_addresses_index_the_shared_half() {
        // pgd_index(PAGE_OFFSET) = KERNEL_PGD_BOUNDARY: 272 in v4.10, 273 in 6.x.
        let l = X86_64::layout(Family::Legacy).page_offset;
        let m = X86_64::layout(Family::Modern).page_offset;
        assert_eq!(X86_64::pgd_index(VirtAddr(l)), 272);
        assert_eq!(X86_64::pgd_index(VirtAddr(m)), 273);
        // A non-canonical address aliases by bit 47.
        assert_eq!(X86_64::pgd_index(VirtAddr(0x0000_8000_0000_0000)), 256);
    }
}
