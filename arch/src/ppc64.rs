//! powerpc64 book3s with the radix MMU (`arch/powerpc/include/asm/book3s/64/
//! pgtable.h`, `radix.h`, `radix-64k.h`, `radix-4k.h`, `uaccess.h`).
//!
//! Entries are the Linux book3s PTE format (shared by radix and hash since
//! v4.7), stored **big-endian**. The radix tree resolves 52 EA bits; the EA
//! quadrant (bits 63:62) selects the process table entry: quadrant 0 the mm's
//! PID, quadrant 3 PID 0 (`init_mm`).

use crate::arm64::generic_access_ok;
use crate::{
    Arch, ArchId, Family, HwRoot, Layout, Level, LevelGeom, Pfn, PhysAddr, Pte, PteFlags, SizeKind,
    VirtAddr, bits,
};

/// powerpc64 radix with 64 KiB pages.
#[derive(Clone, Copy, Default, Debug)]
pub struct Ppc64;

/// powerpc64 radix with 4 KiB pages.
#[derive(Clone, Copy, Default, Debug)]
pub struct Ppc64_4k;

const _PAGE_EXEC: u64 = 0x1;
const _PAGE_WRITE: u64 = 0x2;
const _PAGE_READ: u64 = 0x4;
const _PAGE_RWX: u64 = _PAGE_EXEC | _PAGE_WRITE | _PAGE_READ;
const _PAGE_PRIVILEGED: u64 = 0x8;
const _PAGE_DIRTY: u64 = 0x80;
const _PAGE_ACCESSED: u64 = 0x100;
const _PAGE_SPECIAL: u64 = 0x400;
/// 6.x only (SW1).
const _PAGE_DEVMAP: u64 = 0x800;
/// 6.x `_PAGE_INVALID` (SW0): present to the kernel, invalid to the MMU.
const _PAGE_INVALID: u64 = 1 << 61;
const _PAGE_PTE: u64 = 1 << 62;
const _PAGE_PRESENT: u64 = 1 << 63;
/// Real page number: physical address bits up to 56.
const PTE_RPN_MASK: u64 = bits(57);
/// Next-level base in a directory entry: bits 8..56; NLS in bits 0..4.
const NLB_MASK: u64 = bits(57) & !bits(8);

/// The bits of a radix entry by their `book3s/64/pgtable.h` and
/// `radix.h` names. A directory entry (not the last level, `_PAGE_PTE`
/// clear) has only `_PAGE_PRESENT`, the next level's base and its size
/// (`RPDS`/NLS in the low bits, shown as `NLS=n`); a leaf has the
/// permission and software bits. The RWX bits are all clear in a 6.x
/// PROT_NONE entry; user pages are those without `_PAGE_PRIVILEGED`.
fn entry_bits(f: Family, last: bool, raw: u64) -> Vec<(&'static str, bool)> {
    let present = raw & _PAGE_PRESENT != 0;
    if !last && raw & _PAGE_PTE == 0 {
        return vec![("_PAGE_PRESENT", present), ("_PAGE_PTE", false)];
    }
    let mut v = vec![
        ("_PAGE_PRESENT", present),
        ("_PAGE_PTE", raw & _PAGE_PTE != 0),
        ("_PAGE_PRIVILEGED", raw & _PAGE_PRIVILEGED != 0),
        ("_PAGE_READ", raw & _PAGE_READ != 0),
        ("_PAGE_WRITE", raw & _PAGE_WRITE != 0),
        ("_PAGE_EXEC", raw & _PAGE_EXEC != 0),
        ("_PAGE_ACCESSED", raw & _PAGE_ACCESSED != 0),
        ("_PAGE_DIRTY", raw & _PAGE_DIRTY != 0),
        ("_PAGE_SPECIAL", raw & _PAGE_SPECIAL != 0),
    ];
    if f == Family::Modern {
        v.push(("_PAGE_DEVMAP", raw & _PAGE_DEVMAP != 0));
        v.push(("_PAGE_INVALID", raw & _PAGE_INVALID != 0));
    }
    v
}

#[inline]
fn decode(family: Family, page_shift: u32, last: bool, raw: u64) -> Pte {
    if raw == 0 {
        return Pte::NONE;
    }
    let present_bit = raw & _PAGE_PRESENT != 0;
    if !last && raw & _PAGE_PTE == 0 {
        let flags = if present_bit {
            PteFlags::VALID | PteFlags::PRESENT | PteFlags::TABLE
        } else {
            PteFlags::empty()
        };
        return Pte {
            flags,
            pfn: Pfn((raw & NLB_MASK) >> page_shift),
        };
    }
    let privileged = raw & _PAGE_PRIVILEGED != 0;
    let mut f = PteFlags::LEAF;
    f.set(PteFlags::VALID, present_bit);
    let (present, protnone) = match family {
        // v4.10 pte_protnone (NUMA balancing): PRESENT and PRIVILEGED both set,
        // which every kernel PTE also satisfies.
        Family::Legacy => (present_bit, present_bit && privileged),
        // 6.x: present includes _PAGE_INVALID; protnone = PRESENT|PTE, no RWX.
        Family::Modern => (
            present_bit || raw & _PAGE_INVALID != 0,
            present_bit && raw & _PAGE_RWX == 0,
        ),
    };
    f.set(PteFlags::PRESENT, present);
    f.set(PteFlags::PROTNONE, protnone);
    f.set(PteFlags::USER, !privileged);
    f.set(PteFlags::EXEC, raw & _PAGE_EXEC != 0);
    f.set(PteFlags::WRITE, raw & _PAGE_WRITE != 0);
    f.set(PteFlags::READ, present_bit && raw & _PAGE_READ != 0);
    f.set(PteFlags::DIRTY, raw & _PAGE_DIRTY != 0);
    f.set(PteFlags::YOUNG, raw & _PAGE_ACCESSED != 0);
    f.set(PteFlags::SPECIAL, raw & _PAGE_SPECIAL != 0);
    f.set(
        PteFlags::DEVMAP,
        family == Family::Modern && raw & _PAGE_DEVMAP != 0,
    );
    Pte {
        flags: f,
        pfn: Pfn((raw & PTE_RPN_MASK) >> page_shift),
    }
}

fn encode(family: Family, page_shift: u32, next_bits: Option<u32>, pte: Pte) -> u64 {
    let f = pte.flags;
    if f.contains(PteFlags::TABLE) {
        let mut raw = (pte.pfn.0 << page_shift) & NLB_MASK;
        if f.contains(PteFlags::VALID) {
            // PMD_VAL_BITS etc.: PRESENT | log2(entries of the next table).
            raw |= _PAGE_PRESENT | u64::from(next_bits.unwrap_or(0));
        }
        return raw;
    }
    if !f.contains(PteFlags::LEAF) {
        return (pte.pfn.0 << page_shift) & PTE_RPN_MASK;
    }
    let mut raw = _PAGE_PTE | ((pte.pfn.0 << page_shift) & PTE_RPN_MASK);
    let set = |raw: &mut u64, flag: PteFlags, bit: u64| {
        if f.contains(flag) {
            *raw |= bit;
        }
    };
    set(&mut raw, PteFlags::VALID, _PAGE_PRESENT);
    set(&mut raw, PteFlags::EXEC, _PAGE_EXEC);
    set(&mut raw, PteFlags::WRITE, _PAGE_WRITE);
    set(&mut raw, PteFlags::READ, _PAGE_READ);
    set(&mut raw, PteFlags::DIRTY, _PAGE_DIRTY);
    set(&mut raw, PteFlags::YOUNG, _PAGE_ACCESSED);
    set(&mut raw, PteFlags::SPECIAL, _PAGE_SPECIAL);
    if !f.contains(PteFlags::USER) {
        raw |= _PAGE_PRIVILEGED;
    }
    if family == Family::Modern {
        set(&mut raw, PteFlags::DEVMAP, _PAGE_DEVMAP);
    }
    if f.contains(PteFlags::PROTNONE) {
        // Set what the family's pte_protnone tests, so that decode -> encode is
        // lossless. PAGE_NONE (PRESENT | PRIVILEGED (| ACCESSED), no R/W/X) results
        // when USER and R/W/X are not asked for.
        raw |= _PAGE_PRESENT;
        match family {
            // v4.10: PRESENT and PRIVILEGED. A user entry becomes PAGE_NONE (R/W/X
            // cleared); a kernel entry already decodes as protnone and keeps R/W/X.
            Family::Legacy => {
                if f.contains(PteFlags::USER) {
                    raw &= !_PAGE_RWX;
                }
                raw |= _PAGE_PRIVILEGED;
            }
            // 6.x: PRESENT | PTE with no R/W/X; PRIVILEGED follows USER (set above).
            Family::Modern => raw &= !_PAGE_RWX,
        }
    }
    raw
}

#[inline]
fn layout(family: Family, page_shift: u32) -> Layout {
    let (task_size_max, user_ds, kernel_ds) = match family {
        // TASK_SIZE_USER64 = 64 TiB; USER_DS = TASK_SIZE_USER64 - 1; KERNEL_DS = ~0.
        Family::Legacy => (1u64 << 46, (1u64 << 46) - 1, u64::MAX),
        // TASK_SIZE_MAX = TASK_SIZE_USER64: 4 PiB with 64K pages, 64 TiB with 4K.
        Family::Modern => {
            let t = if page_shift == 16 {
                1u64 << 52
            } else {
                1u64 << 46
            };
            (t, t, t)
        }
    };
    Layout {
        task_size_max,
        page_offset: 0xc000_0000_0000_0000,
        vmalloc_start: 0xc008_0000_0000_0000,
        user_ds,
        kernel_ds,
        virtual_mask_shift: None,
        vsyscall: None,
    }
}

#[inline]
fn access_ok(family: Family, addr: VirtAddr, size: u64, limit: u64, max: u64) -> bool {
    match family {
        // v4.10 __access_ok(): addr <= seg and size <= seg; the sum is never checked.
        Family::Legacy => addr.0 <= limit && size <= limit,
        Family::Modern => generic_access_ok(max, addr, size),
    }
}

#[inline]
fn hw_root(va: VirtAddr) -> Option<HwRoot> {
    // Radix: the tree covers EA bits 0..51; bits 61..52 must be zero.
    if va.0 & (bits(62) & !bits(52)) != 0 {
        return None;
    }
    match va.0 >> 62 {
        0 => Some(HwRoot::Mm),
        3 => Some(HwRoot::Kernel),
        _ => None,
    }
}

macro_rules! ppc64_arch {
    ($ty:ident, $id:expr, $shift:expr, $pte_bits:expr, $frag:expr) => {
        impl Arch for $ty {
            const ID: ArchId = $id;
            const PAGE_SHIFT: u32 = $shift;
            const LEVELS: &'static [LevelGeom] = &[
                LevelGeom {
                    name: "pgd",
                    shift: 39,
                    bits: 13,
                    leaf_ok: false,
                },
                LevelGeom {
                    name: "pud",
                    shift: 30,
                    bits: 9,
                    leaf_ok: true,
                },
                LevelGeom {
                    name: "pmd",
                    shift: 21,
                    bits: 9,
                    leaf_ok: true,
                },
                LevelGeom {
                    name: "pte",
                    shift: $shift,
                    bits: $pte_bits,
                    leaf_ok: true,
                },
            ];
            const BIG_ENDIAN: bool = true;
            const TABLE_PERMS: bool = false;
            const SHARED_KERNEL_PGD: bool = false;
            const TLB_FLUSH_IPI: bool = false;
            const PRIVATE_GUP_FAST: bool = false;
            const VMEMMAP_START: u64 = 0xc00a_0000_0000_0000;

            fn exec_only_prot(family: Family) -> PteFlags {
                match family {
                    // v4.10 book3s/64/pgtable.h: __P100 = PAGE_READONLY_X
                    // (_PAGE_BASE | _PAGE_READ | _PAGE_EXEC).
                    Family::Legacy => PteFlags::USER | PteFlags::READ,
                    // 6.13 mm/pgtable.c: protection_map[VM_EXEC] =
                    // PAGE_EXECONLY_X (_PAGE_BASE | _PAGE_NAX, no _PAGE_READ),
                    // kept by vm_get_page_prot under radix
                    // (mm/book3s64/pgtable.c; hash adds VM_READ).
                    Family::Modern => PteFlags::USER,
                }
            }

            fn exec_only_read_is_access_error(family: Family) -> bool {
                // 6.13 mm/fault.c access_error(): a read fault in a VMA
                // whose access flags are VM_EXEC alone is bad access.
                family == Family::Modern
            }

            fn hw_root_desc(root: HwRoot) -> &'static str {
                match root {
                    HwRoot::Mm => "quadrant 0: the process table entry of the mm's PID",
                    HwRoot::Kernel => "quadrant 3: PID 0 (init_mm)",
                }
            }

            #[inline]
            fn layout(family: Family) -> Layout {
                layout(family, $shift)
            }
            #[inline]
            fn access_ok(
                family: Family,
                addr: VirtAddr,
                size: u64,
                limit: u64,
                _kind: SizeKind,
            ) -> bool {
                access_ok(
                    family,
                    addr,
                    size,
                    limit,
                    Self::layout(family).task_size_max,
                )
            }
            #[inline]
            fn decode(family: Family, level: Level, raw: u64) -> Pte {
                decode(family, $shift, level == Self::leaf_level(), raw)
            }
            fn entry_bits(family: Family, level: Level, raw: u64) -> Vec<(&'static str, bool)> {
                entry_bits(family, level == Self::leaf_level(), raw)
            }
            #[inline]
            fn table_step(_family: Family, level: Level, raw: u64) -> Option<(PhysAddr, PteFlags)> {
                // decode: TABLE = not the last level, _PAGE_PTE clear, PRESENT set.
                if level == Self::leaf_level() || raw & (_PAGE_PTE | _PAGE_PRESENT) != _PAGE_PRESENT
                {
                    return None;
                }
                // The next-level base keeps bits 8 and up: a PTE or PMD
                // table may be a fragment of its page (`pte_fragment_alloc`).
                Some((PhysAddr(raw & NLB_MASK), PteFlags::empty()))
            }
            #[inline]
            fn leaf_pfn_field(_level: Level) -> Option<(u64, u32)> {
                Some((PTE_RPN_MASK & !bits($shift), $shift))
            }
            fn table_entry(family: Family, level: Level, table: PhysAddr) -> u64 {
                // pmd_populate / pud_populate: __pgtable_ptr_val(table) |
                // *_VAL_BITS, the table's own address (a fragment's offset
                // included) in the next-level base.
                let pte = Pte {
                    flags: crate::TABLE_ENTRY_FLAGS,
                    pfn: table.pfn($shift),
                };
                Self::encode(family, level, pte) | (table.0 & NLB_MASK & bits($shift))
            }
            const TABLE_FRAGMENTS: Option<u32> = $frag;
            fn encode(family: Family, level: Level, pte: Pte) -> u64 {
                let next = Self::LEVELS.get(level.index() + 1).map(|g| g.bits);
                encode(family, $shift, next, pte)
            }
            #[inline]
            fn hw_root(_family: Family, va: VirtAddr) -> Option<HwRoot> {
                hw_root(va)
            }
        }
    };
}

// 64K pages: `CONFIG_PPC_64K_PAGES` page-table fragments; the hash MMU's
// PTE fragment is 4 KiB (`H_PTE_FRAG_SIZE_SHIFT` 12, v4.10 hash-64k.h).
ppc64_arch!(Ppc64, ArchId::Ppc64, 16, 5, Some(12));
ppc64_arch!(Ppc64_4k, ArchId::Ppc64_4k, 12, 9, None);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_rw_vector_is_big_endian_in_memory() {
        let pte = Pte {
            flags: PteFlags::VALID
                | PteFlags::USER
                | PteFlags::READ
                | PteFlags::WRITE
                | PteFlags::LEAF,
            pfn: Pfn(0x12),
        };
        let raw = Ppc64::encode(Family::Legacy, Level(3), pte);
        // _PAGE_PRESENT | _PAGE_PTE | pa 0x120000 | READ | WRITE
        assert_eq!(raw, 0xc000_0000_0012_0006);
        assert_eq!(raw.to_be_bytes(), [0xc0, 0, 0, 0, 0, 0x12, 0, 0x06]);
        let d = Ppc64::decode(Family::Legacy, Level(3), raw);
        assert!(d.has(PteFlags::PRESENT | PteFlags::USER | PteFlags::READ | PteFlags::WRITE));
        assert_eq!(d.pfn, Pfn(0x12));
    }

    #[test]
    fn kernel_ptes_look_protnone_in_v4_10() {
        let k = Pte {
            flags: PteFlags::VALID | PteFlags::READ | PteFlags::WRITE | PteFlags::LEAF,
            pfn: Pfn(1),
        };
        let raw = Ppc64::encode(Family::Legacy, Level(3), k);
        assert_ne!(raw & _PAGE_PRIVILEGED, 0);
        assert!(Ppc64::decode(Family::Legacy, Level(3), raw).has(PteFlags::PROTNONE));
        // In 6.x protnone needs the RWX bits clear, so a kernel RW PTE is not.
        assert!(!Ppc64::decode(Family::Modern, Level(3), raw).has(PteFlags::PROTNONE));
    }

    #[test]
    fn directory_entry_carries_next_level_size() {
        let t = Pte {
            flags: PteFlags::VALID | PteFlags::TABLE,
            pfn: Pfn(7),
        };
        // 64K pages: a PMD entry points at a 32-entry PTE table (NLS = 5).
        assert_eq!(
            Ppc64::encode(Family::Legacy, Level(2), t),
            0x8000_0000_0007_0005
        );
        assert_eq!(
            Ppc64_4k::encode(Family::Legacy, Level(2), t),
            0x8000_0000_0000_7009
        );
        assert!(
            Ppc64::decode(Family::Legacy, Level(2), 0x8000_0000_0007_0005).has(PteFlags::TABLE)
        );
    }

    #[test]
    fn quadrants() {
        assert_eq!(
            Ppc64::hw_root(Family::Legacy, VirtAddr(0x1000)),
            Some(HwRoot::Mm)
        );
        assert_eq!(
            Ppc64::hw_root(Family::Legacy, VirtAddr(0xc000_0000_0000_1000)),
            Some(HwRoot::Kernel)
        );
        assert_eq!(
            Ppc64::hw_root(Family::Legacy, VirtAddr(0x4000_0000_0000_0000)),
            None
        );
        assert_eq!(Ppc64::hw_root(Family::Legacy, VirtAddr(1 << 52)), None);
    }

    #[test]
    fn pgd_index_drops_the_quadrant() {
        let x = 0x0000_0123_4567_0000u64;
        assert_eq!(
            Ppc64::pgd_index(VirtAddr(0xc000_0000_0000_0000 | x)),
            Ppc64::pgd_index(VirtAddr(x))
        );
        assert_eq!(Ppc64::entries(Level(0)), 8192);
        assert_eq!(Ppc64::entries(Level(3)), 32);
        assert_eq!(Ppc64::table_bytes(Level(3)), 256);
    }
}
