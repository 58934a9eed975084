//! arm64 (`arch/arm64/include/asm/pgtable-hwdef.h`, `pgtable-prot.h`,
//! `pgtable.h`, `memory.h`, `uaccess.h`) in three kernel configurations:
//! 4 KiB granule with 48-bit VA (the distribution default), 4 KiB with
//! 52-bit VA (`CONFIG_ARM64_VA_BITS_52`, LPA2 descriptors, five levels) and
//! 16 KiB with 48-bit VA (four levels, 11-bit indices, a two-entry pgd).

use crate::{
    Arch, ArchId, Family, HwRoot, Layout, Level, LevelGeom, Pfn, PhysAddr, Pte, PteFlags, SizeKind,
    VirtAddr, bits,
};

/// arm64 with 4 KiB pages and 48-bit virtual addresses.
#[derive(Clone, Copy, Default, Debug)]
pub struct Arm64;

/// arm64 with 4 KiB pages and 52-bit virtual addresses
/// (`CONFIG_ARM64_VA_BITS_52` with `CONFIG_ARM64_4K_PAGES`, which needs
/// FEAT_LPA2: v6.9, 352b0395b505; 6.13 `arch/arm64/Kconfig`
/// `PGTABLE_LEVELS` "default 5 if ARM64_4K_PAGES && ARM64_VA_BITS_52").
/// Modelled on hardware that has LPA2, so `vabits_actual` is 52.
#[derive(Clone, Copy, Default, Debug)]
pub struct Arm64_52;

/// arm64 with 16 KiB pages and 48-bit virtual addresses
/// (`CONFIG_ARM64_16K_PAGES` with `CONFIG_ARM64_VA_BITS_48`: 6.13
/// `PGTABLE_LEVELS` "default 4 if ARM64_16K_PAGES && (ARM64_VA_BITS_48 ||
/// ARM64_VA_BITS_52)"; `PTRS_PER_PGD = 1 << (VA_BITS - PGDIR_SHIFT)` = 2).
#[derive(Clone, Copy, Default, Debug)]
pub struct Arm64_16k;

/// One arm64 kernel configuration.
#[derive(Clone, Copy)]
struct Cfg {
    page_shift: u32,
    va_bits: u32,
    /// LPA2 descriptors (`lpa2_is_enabled()`): output address bits 49..12
    /// in place, bits 51..50 in descriptor bits 9..8 (6.13 `pgtable-hwdef.h`
    /// `PTE_ADDR_HIGH`, `PHYS_TO_PTE_ADDR_MASK` = `GENMASK_ULL(49, 8)`), and
    /// no shareability field there (`PTE_MAYBE_SHARED` is 0, `pgtable-prot.h`).
    lpa2: bool,
}

const CFG_4K_48: Cfg = Cfg {
    page_shift: 12,
    va_bits: 48,
    lpa2: false,
};
const CFG_4K_52: Cfg = Cfg {
    page_shift: 12,
    va_bits: 52,
    lpa2: true,
};
const CFG_16K_48: Cfg = Cfg {
    page_shift: 14,
    va_bits: 48,
    lpa2: false,
};

const PTE_VALID: u64 = 1 << 0;
/// Bit 1: table descriptor at upper levels, page descriptor at the last level.
const PTE_TABLE_BIT: u64 = 1 << 1;
/// AttrIndx = MT_NORMAL (4) in bits 2..4.
const PTE_ATTRINDX_NORMAL: u64 = 4 << 2;
const PTE_USER: u64 = 1 << 6;
const PTE_RDONLY: u64 = 1 << 7;
/// SH = inner shareable.
const PTE_SHARED: u64 = 3 << 8;
const PTE_AF: u64 = 1 << 10;
/// nG for a valid entry; `PTE_PRESENT_INVALID` when VALID is clear (6.x).
const PTE_NG: u64 = 1 << 11;
const PTE_PRESENT_INVALID: u64 = 1 << 11;
/// DBM, used by Linux as the software write permission.
const PTE_WRITE: u64 = 1 << 51;
const PTE_PXN: u64 = 1 << 53;
const PTE_UXN: u64 = 1 << 54;
const PTE_DIRTY: u64 = 1 << 55;
const PTE_SPECIAL: u64 = 1 << 56;
/// 6.x only.
const PTE_DEVMAP: u64 = 1 << 57;
/// v4.10 only (bit 58 is UFFD_WP in 6.x).
const PTE_PROT_NONE: u64 = 1 << 58;

impl Cfg {
    /// The output-address bits held in place: 47..PAGE_SHIFT (48-bit PA),
    /// 49..12 with LPA2.
    const fn addr_low(self) -> u64 {
        let top = if self.lpa2 { 50 } else { 48 };
        bits(top) & !bits(self.page_shift)
    }

    /// The frame an entry names.
    #[inline]
    const fn pfn(self, raw: u64) -> Pfn {
        let mut pa = raw & self.addr_low();
        if self.lpa2 {
            pa |= ((raw >> 8) & 3) << 50;
        }
        Pfn(pa >> self.page_shift)
    }

    /// The address bits of an entry for `pfn`.
    const fn oa(self, pfn: Pfn) -> u64 {
        let pa = pfn.0 << self.page_shift;
        let mut raw = pa & self.addr_low();
        if self.lpa2 {
            raw |= ((pa >> 50) & 3) << 8;
        }
        raw
    }

    #[inline]
    fn decode(self, family: Family, last: bool, raw: u64) -> Pte {
        if raw == 0 {
            return Pte::NONE;
        }
        let valid = raw & PTE_VALID != 0;
        let pfn = self.pfn(raw);
        if !last && raw & PTE_TABLE_BIT != 0 {
            // A table descriptor (when valid); an invalid entry with bit 1 set is
            // neither table nor leaf.
            let flags = if valid {
                PteFlags::VALID | PteFlags::PRESENT | PteFlags::TABLE
            } else {
                PteFlags::empty()
            };
            return Pte { flags, pfn };
        }
        // A page (last level) or block (upper level, bit 1 clear). A last-level
        // descriptor with bit 1 clear is reserved: the hardware faults on it.
        let hw_valid = valid && (!last || raw & PTE_TABLE_BIT != 0);
        let mut f = PteFlags::LEAF;
        f.set(PteFlags::VALID, hw_valid);
        let user = raw & PTE_USER != 0;
        let protnone = !valid
            && match family {
                Family::Legacy => raw & PTE_PROT_NONE != 0,
                Family::Modern => raw & PTE_PRESENT_INVALID != 0 && !user && raw & PTE_UXN != 0,
            };
        let present = hw_valid
            || match family {
                Family::Legacy => raw & PTE_PROT_NONE != 0,
                Family::Modern => raw & PTE_PRESENT_INVALID != 0,
            };
        f.set(PteFlags::PROTNONE, protnone);
        f.set(PteFlags::PRESENT, present);
        f.set(PteFlags::READ, hw_valid);
        f.set(PteFlags::USER, user);
        f.set(PteFlags::RDONLY, raw & PTE_RDONLY != 0);
        f.set(PteFlags::YOUNG, raw & PTE_AF != 0);
        let write = raw & PTE_WRITE != 0;
        f.set(PteFlags::WRITE, write);
        f.set(PteFlags::EXEC, raw & PTE_UXN == 0);
        // pte_dirty: software dirty, or hardware dirty (writable and RDONLY clear).
        f.set(
            PteFlags::DIRTY,
            raw & PTE_DIRTY != 0 || (write && raw & PTE_RDONLY == 0),
        );
        f.set(PteFlags::SPECIAL, raw & PTE_SPECIAL != 0);
        f.set(
            PteFlags::DEVMAP,
            family == Family::Modern && raw & PTE_DEVMAP != 0,
        );
        Pte { flags: f, pfn }
    }

    fn encode(self, family: Family, last: bool, pte: Pte) -> u64 {
        let f = pte.flags;
        let mut raw = self.oa(pte.pfn);
        if f.contains(PteFlags::TABLE) {
            if f.contains(PteFlags::VALID) {
                raw |= PTE_VALID | PTE_TABLE_BIT;
            }
            return raw;
        }
        if !f.contains(PteFlags::LEAF) {
            return raw;
        }
        raw |= PTE_ATTRINDX_NORMAL | PTE_PXN;
        if !self.lpa2 {
            raw |= PTE_SHARED;
        }
        if last {
            raw |= PTE_TABLE_BIT; // page descriptor type
        }
        let set = |raw: &mut u64, flag: PteFlags, bit: u64| {
            if f.contains(flag) {
                *raw |= bit;
            }
        };
        set(&mut raw, PteFlags::VALID, PTE_VALID);
        set(&mut raw, PteFlags::USER, PTE_USER);
        set(&mut raw, PteFlags::RDONLY, PTE_RDONLY);
        set(&mut raw, PteFlags::YOUNG, PTE_AF);
        set(&mut raw, PteFlags::WRITE, PTE_WRITE);
        set(&mut raw, PteFlags::DIRTY, PTE_DIRTY);
        set(&mut raw, PteFlags::SPECIAL, PTE_SPECIAL);
        if !f.contains(PteFlags::EXEC) {
            raw |= PTE_UXN;
        }
        if f.contains(PteFlags::USER) && f.contains(PteFlags::VALID) {
            raw |= PTE_NG;
        }
        match family {
            Family::Legacy => {
                if f.contains(PteFlags::PROTNONE) {
                    raw = (raw & !PTE_VALID) | PTE_PROT_NONE;
                }
            }
            Family::Modern => {
                set(&mut raw, PteFlags::DEVMAP, PTE_DEVMAP);
                if f.contains(PteFlags::PROTNONE) {
                    raw = (raw & !(PTE_VALID | PTE_USER)) | PTE_PRESENT_INVALID | PTE_UXN;
                }
            }
        }
        raw
    }

    #[inline]
    fn table_step(self, last: bool, raw: u64) -> Option<(PhysAddr, PteFlags)> {
        // decode: TABLE = not the last level, VALID and the table bit set.
        let t = PTE_VALID | PTE_TABLE_BIT;
        if last || raw & t != t {
            return None;
        }
        Some((self.pfn(raw).addr(self.page_shift), PteFlags::empty()))
    }

    /// The leaf frame field as one mask: none with LPA2 (two fields).
    fn leaf_pfn_field(self) -> Option<(u64, u32)> {
        (!self.lpa2).then_some((self.addr_low(), self.page_shift))
    }

    #[inline]
    fn layout(self, family: Family) -> Layout {
        // TASK_SIZE_MAX = 1 << VA_BITS (`asm/processor.h`, both families).
        let task_size = 1u64 << self.va_bits;
        match family {
            // v4.10 `asm/memory.h`: VA_START = -(1 << VA_BITS), PAGE_OFFSET =
            // -(1 << (VA_BITS - 1)): the linear map is the upper half of the
            // kernel range; VA_START holds the modules (128 MiB) and then
            // vmalloc (no KASAN shadow). No v4.x kernel has 52-bit VAs with
            // 4 KiB pages: the arch's `KernelConfig` keeps such profiles out.
            Family::Legacy => Layout {
                task_size_max: task_size,
                page_offset: (1u64 << (self.va_bits - 1)).wrapping_neg(),
                vmalloc_start: (1u64 << self.va_bits).wrapping_neg() + (128 << 20),
                user_ds: task_size,
                kernel_ds: u64::MAX,
                virtual_mask_shift: None,
                vsyscall: None,
            },
            // 6.x (since 5.4) `asm/memory.h`: PAGE_OFFSET = -(1 << VA_BITS),
            // the linear map up to PAGE_END = -(1 << (VA_BITS_MIN - 1)), then
            // the modules (2 GiB) and vmalloc. VA_BITS_MIN is 48 for a 52-bit
            // 4 KiB kernel.
            Family::Modern => Layout {
                task_size_max: task_size,
                page_offset: (1u64 << self.va_bits).wrapping_neg(),
                vmalloc_start: (1u64 << 47).wrapping_neg() + (2 << 30),
                user_ds: task_size,
                kernel_ds: task_size,
                virtual_mask_shift: None,
                vsyscall: None,
            },
        }
    }

    #[inline]
    fn hw_root(self, va: VirtAddr) -> Option<HwRoot> {
        // Bit 55 selects TTBR1 (kernel) or TTBR0 (user); the bits between the
        // VA size and bit 55 must match it, and (TBI1 off) so must the top byte
        // of a kernel address. User addresses have TBI0 (top byte ignored).
        let upper = va.0 >> self.va_bits;
        let ones = bits(64 - self.va_bits);
        if va.0 & (1 << 55) != 0 {
            (upper == ones).then_some(HwRoot::Kernel)
        } else {
            (upper & bits(56 - self.va_bits) == 0).then_some(HwRoot::Mm)
        }
    }
}

const fn lvl(name: &'static str, shift: u32, bits: u32, leaf_ok: bool) -> LevelGeom {
    LevelGeom {
        name,
        shift,
        bits,
        leaf_ok,
    }
}

/// The bits of an arm64 descriptor by their `pgtable-hwdef.h` /
/// `pgtable-prot.h` names. Bits 1:0 are `PMD_TYPE_TABLE` (3) or a block
/// (`PMD_TYPE_SECT`, 1) above the last level and `PTE_TYPE_PAGE` (3) in a
/// PTE; bit 11 is nG in a valid entry and `PTE_PRESENT_INVALID` (6.x) in
/// one without `PTE_VALID`.
fn entry_bits(f: Family, last: bool, lpa2: bool, raw: u64) -> Vec<(&'static str, bool)> {
    let valid = raw & PTE_VALID != 0;
    let table_bit = raw & PTE_TABLE_BIT != 0;
    if !last && table_bit {
        return vec![("PTE_VALID", valid), ("PMD_TYPE_TABLE", valid)];
    }
    let mut v = vec![("PTE_VALID", valid)];
    v.push(if last {
        ("PTE_TYPE_PAGE", table_bit)
    } else {
        ("PMD_TYPE_SECT", valid)
    });
    v.push((
        "PTE_ATTRINDX(MT_NORMAL)",
        raw & (7 << 2) == PTE_ATTRINDX_NORMAL,
    ));
    v.push(("PTE_USER", raw & PTE_USER != 0));
    v.push(("PTE_RDONLY", raw & PTE_RDONLY != 0));
    // With LPA2, bits 9..8 hold output-address bits 51..50, not the
    // shareability field.
    if !lpa2 {
        v.push(("PTE_SHARED", raw & PTE_SHARED == PTE_SHARED));
    }
    v.push(("PTE_AF", raw & PTE_AF != 0));
    match (f, valid) {
        (Family::Modern, false) => v.push(("PTE_PRESENT_INVALID", raw & PTE_PRESENT_INVALID != 0)),
        _ => v.push(("PTE_NG", raw & PTE_NG != 0)),
    }
    v.push(("PTE_WRITE", raw & PTE_WRITE != 0));
    v.push(("PTE_PXN", raw & PTE_PXN != 0));
    v.push(("PTE_UXN", raw & PTE_UXN != 0));
    v.push(("PTE_DIRTY", raw & PTE_DIRTY != 0));
    v.push(("PTE_SPECIAL", raw & PTE_SPECIAL != 0));
    match f {
        Family::Modern => v.push(("PTE_DEVMAP", raw & PTE_DEVMAP != 0)),
        Family::Legacy => v.push(("PTE_PROT_NONE", raw & PTE_PROT_NONE != 0)),
    }
    v
}

macro_rules! arm64_arch {
    ($ty:ident, $id:expr, $cfg:expr, $levels:expr, $vmemmap:expr) => {
        impl Arch for $ty {
            const ID: ArchId = $id;
            const PAGE_SHIFT: u32 = $cfg.page_shift;
            const LEVELS: &'static [LevelGeom] = $levels;
            const BIG_ENDIAN: bool = false;
            const TABLE_PERMS: bool = false;
            const SHARED_KERNEL_PGD: bool = false;
            const TLB_FLUSH_IPI: bool = false;
            const PRIVATE_GUP_FAST: bool = false;
            const VMEMMAP_START: u64 = $vmemmap;

            fn entry_bits(family: Family, level: Level, raw: u64) -> Vec<(&'static str, bool)> {
                entry_bits(family, level == Self::leaf_level(), $cfg.lpa2, raw)
            }

            fn exec_only_prot(family: Family) -> PteFlags {
                match family {
                    // PAGE_EXECONLY, PTE_USER clear: v4.10 and v4.17
                    // `pgtable-prot.h` `__P100`/`__S100` (since cab15ce604e5,
                    // v4.9; reverted by 24cecc377463 "arm64: Revert support
                    // for execute-only user mappings" in v5.5, Cc stable
                    // 4.9.x-, so later 4.x stable releases lack it). EL1 reads it:
                    // privileged access is not denied by AP[1] = 0.
                    Family::Legacy => PteFlags::empty(),
                    // 6.13 `mmap.c`: protection_map[VM_EXEC] is
                    // PAGE_READONLY_EXEC (PTE_USER set) unless the CPU has
                    // EPAN (`adjust_protection_map`, 18107f8a2df6, v5.13);
                    // the model is a CPU without EPAN (before ARMv8.7).
                    Family::Modern => PteFlags::USER | PteFlags::READ,
                }
            }

            fn pte_wrprotect(flags: PteFlags) -> PteFlags {
                flags.difference(PteFlags::WRITE) | PteFlags::RDONLY
            }

            /// arm64 `untagged_addr` (`asm/memory.h`, 5.4+; the same in
            /// 6.13): the address ANDed with itself sign-extended from bit
            /// 55, which clears the top byte (TBI tag) of a user address
            /// (bit 55 clear) and leaves a kernel address (bit 55 set) as it
            /// is. Unconditional: unlike `access_ok`, it does not ask whether
            /// the task enabled the tagged address ABI (`TIF_TAGGED_ADDR`).
            fn untagged_addr(addr: VirtAddr) -> VirtAddr {
                let ext = (((addr.0 << 8) as i64) >> 8) as u64;
                VirtAddr(addr.0 & ext)
            }

            fn hw_root_desc(root: HwRoot) -> &'static str {
                match root {
                    HwRoot::Mm => "TTBR0 (bit 55 clear): the mm's table",
                    HwRoot::Kernel => "TTBR1 (bit 55 set): swapper_pg_dir of init_mm",
                }
            }

            #[inline]
            fn layout(family: Family) -> Layout {
                $cfg.layout(family)
            }

            #[inline]
            fn access_ok(
                family: Family,
                addr: VirtAddr,
                size: u64,
                limit: u64,
                _kind: SizeKind,
            ) -> bool {
                match family {
                    // v4.10 __range_ok(): (u65)addr + (u65)size <= addr_limit, with
                    // USER_DS = 2^VA_BITS and KERNEL_DS = 2^64 - 1.
                    Family::Legacy => (addr.0 as u128) + (size as u128) <= limit as u128,
                    Family::Modern => {
                        generic_access_ok(Self::layout(family).task_size_max, addr, size)
                    }
                }
            }

            #[inline]
            fn decode(family: Family, level: Level, raw: u64) -> Pte {
                $cfg.decode(family, level == Self::leaf_level(), raw)
            }

            #[inline]
            fn table_step(_family: Family, level: Level, raw: u64) -> Option<(PhysAddr, PteFlags)> {
                $cfg.table_step(level == Self::leaf_level(), raw)
            }

            #[inline]
            fn leaf_pfn_field(_level: Level) -> Option<(u64, u32)> {
                $cfg.leaf_pfn_field()
            }

            fn encode(family: Family, level: Level, pte: Pte) -> u64 {
                $cfg.encode(family, level == Self::leaf_level(), pte)
            }

            #[inline]
            fn hw_root(_family: Family, va: VirtAddr) -> Option<HwRoot> {
                $cfg.hw_root(va)
            }
        }
    };
}

// v4.10 VMEMMAP_START = PAGE_OFFSET - VMEMMAP_SIZE with VMEMMAP_SIZE =
// 1 << (VA_BITS - PAGE_SHIFT - 1 + STRUCT_PAGE_MAX_SHIFT) (`asm/memory.h`).
arm64_arch!(
    Arm64,
    ArchId::Arm64,
    CFG_4K_48,
    &[
        lvl("pgd", 39, 9, false),
        lvl("pud", 30, 9, true),
        lvl("pmd", 21, 9, true),
        lvl("pte", 12, 9, true),
    ],
    0xffff_7e00_0000_0000
);
// 6.13 `asm/memory.h`: VMEMMAP_END = -1 GiB, VMEMMAP_START = VMEMMAP_END -
// VMEMMAP_SIZE, the struct pages of PAGE_OFFSET .. PAGE_END
// ((-2^47 - -2^52) >> 12 pages of 64 bytes). With LPA2 the level above the
// pgd of the 48-bit table (level -1) indexes VA bits 51..48: 16 entries.
arm64_arch!(
    Arm64_52,
    ArchId::Arm64_52,
    CFG_4K_52,
    &[
        lvl("pgd", 48, 4, false),
        lvl("p4d", 39, 9, false),
        lvl("pud", 30, 9, true),
        lvl("pmd", 21, 9, true),
        lvl("pte", 12, 9, true),
    ],
    0xffff_c1ff_c000_0000
);
// 16 KiB granule: no level-1 blocks without LPA2 (`pud_sect` is false), a
// 32 MiB PMD block, 11-bit indices below the two-entry pgd. VMEMMAP_START
// as for Arm64 with PAGE_SHIFT 14: -2^47 - 2^39.
arm64_arch!(
    Arm64_16k,
    ArchId::Arm64_16k,
    CFG_16K_48,
    &[
        lvl("pgd", 47, 1, false),
        lvl("pud", 36, 11, false),
        lvl("pmd", 25, 11, true),
        lvl("pte", 14, 11, true),
    ],
    0xffff_7f80_0000_0000
);

/// `asm-generic/access_ok.h` (6.x): `size <= max && addr <= max - size`.
pub(crate) fn generic_access_ok(max: u64, addr: VirtAddr, size: u64) -> bool {
    size <= max && addr.0 <= max - size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_addr_clears_the_top_byte_of_user_addresses_only() {
        // A user address (bit 55 clear) loses its tag, on every arm64 variant.
        let tagged = VirtAddr(0x0100_5000_0000_0000);
        assert_eq!(Arm64::untagged_addr(tagged), VirtAddr(0x5000_0000_0000));
        assert_eq!(Arm64_52::untagged_addr(tagged), VirtAddr(0x5000_0000_0000));
        assert_eq!(
            Arm64::untagged_addr(VirtAddr(0xff00_0000_1234_5000)),
            VirtAddr(0x0000_0000_1234_5000)
        );
        // A kernel address (bit 55 set) is left as it is, whatever its top byte.
        let k = VirtAddr(0xffff_8000_0000_1000);
        assert_eq!(Arm64::untagged_addr(k), k);
        assert_eq!(
            Arm64::untagged_addr(VirtAddr(0x0080_0000_0000_0000)),
            VirtAddr(0x0080_0000_0000_0000)
        );
        // The other arches do not untag.
        assert_eq!(crate::X86_64::untagged_addr(tagged), tagged);
    }

    #[test]
    fn user_readonly_vector() {
        // A user read-only page: VALID, page type, MT_NORMAL, USER, RDONLY, SH,
        // AF, nG, PXN and UXN (not executable).
        let pte = Pte {
            flags: PteFlags::VALID
                | PteFlags::USER
                | PteFlags::RDONLY
                | PteFlags::YOUNG
                | PteFlags::LEAF,
            pfn: Pfn(0x40_0000),
        };
        let raw = Arm64::encode(Family::Legacy, Level(3), pte);
        assert_eq!(raw, 0x0060_0004_0000_0fd3);
        let back = Arm64::decode(Family::Legacy, Level(3), raw);
        assert!(back.has(PteFlags::PRESENT | PteFlags::USER | PteFlags::RDONLY | PteFlags::READ));
        assert!(!back.has(PteFlags::WRITE) && !back.has(PteFlags::DIRTY));
    }

    #[test]
    fn writable_clean_is_rdonly_and_hw_dirty_is_not() {
        let base = PteFlags::VALID | PteFlags::USER | PteFlags::WRITE | PteFlags::LEAF;
        let clean = Arm64::encode(
            Family::Legacy,
            Level(3),
            Pte {
                flags: base | PteFlags::RDONLY,
                pfn: Pfn(1),
            },
        );
        assert!(!Arm64::decode(Family::Legacy, Level(3), clean).has(PteFlags::DIRTY));
        let dirty = Arm64::encode(
            Family::Legacy,
            Level(3),
            Pte {
                flags: base,
                pfn: Pfn(1),
            },
        );
        assert!(Arm64::decode(Family::Legacy, Level(3), dirty).has(PteFlags::DIRTY));
    }

    #[test]
    fn block_vs_table_at_pmd() {
        let block = Arm64::encode(
            Family::Legacy,
            Level(2),
            Pte {
                flags: PteFlags::VALID | PteFlags::LEAF,
                pfn: Pfn(0x200),
            },
        );
        assert_eq!(block & 3, 0b01);
        assert!(Arm64::decode(Family::Legacy, Level(2), block).has(PteFlags::LEAF));
        let table = Arm64::encode(
            Family::Legacy,
            Level(2),
            Pte {
                flags: PteFlags::VALID | PteFlags::TABLE,
                pfn: Pfn(0x33),
            },
        );
        assert_eq!(table, 0x33003);
        assert!(Arm64::decode(Family::Legacy, Level(2), table).has(PteFlags::TABLE));
        // At the last level bits[1:0] = 01 is reserved: not valid for the MMU.
        assert!(!Arm64::decode(Family::Legacy, Level(3), 0x1001).has(PteFlags::VALID));
    }

    #[test]
    fn prot_none_per_family() {
        let pn = Pte {
            flags: PteFlags::PROTNONE | PteFlags::LEAF | PteFlags::RDONLY,
            pfn: Pfn(9),
        };
        let l = Arm64::encode(Family::Legacy, Level(3), pn);
        assert_ne!(l & PTE_PROT_NONE, 0);
        assert_eq!(l & PTE_VALID, 0);
        let d = Arm64::decode(Family::Legacy, Level(3), l);
        assert!(d.has(PteFlags::PROTNONE | PteFlags::PRESENT) && !d.has(PteFlags::VALID));
        let m = Arm64::encode(Family::Modern, Level(3), pn);
        assert_ne!(m & PTE_PRESENT_INVALID, 0);
        assert_eq!(m & PTE_PROT_NONE, 0);
        let d = Arm64::decode(Family::Modern, Level(3), m);
        assert!(d.has(PteFlags::PROTNONE | PteFlags::PRESENT) && !d.has(PteFlags::VALID));
        // In 6.x bit 58 is UFFD_WP, not PROT_NONE.
        assert!(!Arm64::decode(Family::Modern, Level(3), l).has(PteFlags::PRESENT));
    }

    #[test]
    fn exec_only_has_user_clear() {
        // v4.9+ exec-only: valid, USER clear, UXN clear.
        let raw = Arm64::encode(
            Family::Legacy,
            Level(3),
            Pte {
                flags: PteFlags::VALID | PteFlags::EXEC | PteFlags::LEAF | PteFlags::RDONLY,
                pfn: Pfn(3),
            },
        );
        let d = Arm64::decode(Family::Legacy, Level(3), raw);
        assert!(d.has(PteFlags::EXEC | PteFlags::PRESENT) && !d.has(PteFlags::USER));
    }

    #[test]
    fn ttbr_selection_by_bit_55() {
        assert_eq!(
            Arm64::hw_root(Family::Legacy, VirtAddr(0x0000_ffff_ffff_f000)),
            Some(HwRoot::Mm)
        );
        assert_eq!(
            Arm64::hw_root(Family::Legacy, VirtAddr(0xffff_8000_0000_0000)),
            Some(HwRoot::Kernel)
        );
        assert_eq!(
            Arm64::hw_root(Family::Legacy, VirtAddr(0x0001_0000_0000_0000)),
            None
        );
        // Top byte ignored for user addresses.
        assert_eq!(
            Arm64::hw_root(Family::Legacy, VirtAddr(0x5a00_0000_0000_1000)),
            Some(HwRoot::Mm)
        );
    }

    #[test]
    fn linear_map_aliases_upper_user_half_in_v4_10_and_low_in_6x() {
        let l = Arm64::layout(Family::Legacy).page_offset;
        assert_eq!(
            Arm64::pgd_index(VirtAddr(l)),
            Arm64::pgd_index(VirtAddr(1 << 47))
        );
        let m = Arm64::layout(Family::Modern).page_offset;
        assert_eq!(Arm64::pgd_index(VirtAddr(m)), 0);
    }
}
