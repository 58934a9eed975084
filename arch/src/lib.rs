//! `vmemu-arch`: page-table formats and address-space rules of the emulated
//! architectures, as pure code (no memory access).
//!
//! Every architecture is a zero-sized type implementing [`Arch`]: its page size,
//! its level table (shift, index bits, which levels may hold leaves), its layout
//! constants per kernel family (`TASK_SIZE`, `PAGE_OFFSET`, `USER_DS`/`KERNEL_DS`),
//! its exact `access_ok` predicate, the codec between raw 64-bit entries and the
//! neutral [`Pte`] view, and the hardware root selection. Generic code (the
//! walker, gup, the copy loops in `vmemu-mm`) is monomorphised over it; the
//! run-time choice is [`ArchId`] with [`with_arch!`] at the edge.
//!
//! Two kernel families are modelled: [`Family::Legacy`] (v4.10 to v4.17: `set_fs`
//! exists, the arm64 linear map is the upper half of the kernel VA range) and
//! [`Family::Modern`] (v6.13).
//!
//! ```
//! use vmemu_arch::{Arch, Arm64, Family, VirtAddr};
//! // The software pgd_index of an arm64 linear-map address is the index of the
//! // user address kaddr mod 2^48: the alias the thread was about.
//! let kaddr = VirtAddr(Arm64::layout(Family::Legacy).page_offset);
//! let alias = VirtAddr(kaddr.0 & ((1 << 48) - 1));
//! assert_eq!(Arm64::pgd_index(kaddr), Arm64::pgd_index(alias));
//! ```
#![forbid(unsafe_code)]

mod addr;
mod arm64;
mod ppc64;
mod pte;
mod x86_64;

pub use addr::{Level, Pfn, PhysAddr, VirtAddr};
pub use arm64::{Arm64, Arm64_16k, Arm64_52};
pub use ppc64::{Ppc64, Ppc64_4k};
pub use pte::{Pte, PteFlags};
pub use x86_64::{X86_64, X86_64La57};

use std::fmt;
use std::str::FromStr;

/// Kernel family whose layout constants, entry formats and `access_ok` apply.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Family {
    /// v4.10 .. v4.17: `set_fs`/`addr_limit` exist; v4.x layouts and PTE bits.
    Legacy,
    /// v6.13: no `set_fs`; generic `access_ok` against `TASK_SIZE_MAX`.
    Modern,
}

/// Whether the size given to `access_ok` is a compile-time constant at the call
/// site (x86 takes a shorter path for those) or computed at run time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SizeKind {
    /// `__builtin_constant_p(size)` holds (e.g. `get_user` of a `u64`).
    Constant,
    /// The size is a run-time value (copies, gup ranges).
    Runtime,
}

/// Address-space constants of one arch in one kernel family.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout {
    /// `TASK_SIZE_MAX`: first address above the largest user address space.
    pub task_size_max: u64,
    /// `PAGE_OFFSET`: start of the linear (direct) map of physical memory.
    pub page_offset: u64,
    /// `VMALLOC_START`.
    pub vmalloc_start: u64,
    /// `USER_DS`: the `addr_limit` of a normal task.
    pub user_ds: u64,
    /// `KERNEL_DS`: the `addr_limit` under `set_fs(KERNEL_DS)`.
    pub kernel_ds: u64,
    /// x86 `__VIRTUAL_MASK_SHIFT` (gup-fast's `end >> 47` test); `None` elsewhere.
    pub virtual_mask_shift: Option<u32>,
    /// The x86-64 vsyscall page (the gate area), when the kernel maps it readable.
    pub vsyscall: Option<u64>,
}

/// Which translation root the hardware uses for an address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HwRoot {
    /// The current mm's table (x86 CR3 — whose kernel half is shared —, arm64
    /// TTBR0, powerpc radix quadrant 0 = the mm's PID).
    Mm,
    /// The kernel's `init_mm` table (arm64 TTBR1, powerpc radix quadrant 3 = PID 0).
    Kernel,
}

/// One level of the page-table geometry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LevelGeom {
    /// Kernel name of the level (`pgd`, `pud`, `pmd`, `pte`).
    pub name: &'static str,
    /// `PGDIR_SHIFT`, `PUD_SHIFT`, ...: the VA bit where this level's index starts.
    pub shift: u32,
    /// Number of index bits (`log2(PTRS_PER_*)`).
    pub bits: u32,
    /// Whether an entry at this level may be a leaf (huge page / block).
    pub leaf_ok: bool,
}

/// The run-time name of an emulated architecture.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum ArchId {
    /// x86-64, 4-level paging, 4 KiB pages.
    X86_64,
    /// arm64, 4 KiB granule, 48-bit VA.
    Arm64,
    /// powerpc64 book3s radix, 64 KiB pages (the distribution default).
    Ppc64,
    /// powerpc64 book3s radix, 4 KiB pages.
    Ppc64_4k,
    /// x86-64, 5-level paging (LA57), 57-bit VA.
    X86_64La57,
    /// arm64, 4 KiB granule, 52-bit VA (LPA2, five levels).
    Arm64_52,
    /// arm64, 16 KiB granule, 48-bit VA.
    Arm64_16k,
}

/// A kernel build option an arch variant needs and not every kernel of a
/// family has: the profile says whether it has it (`vmemu_mm`'s knobs), and
/// a profile without it refuses the arch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KernelConfig {
    /// `CONFIG_X86_5LEVEL`: 5-level paging, since v4.14 (77ef56e4f0fb);
    /// absent from a v4.10 tree (its `arch/x86/Kconfig` has no such option).
    X86_5Level,
    /// `CONFIG_ARM64_VA_BITS_52` with 4 KiB pages, which needs FEAT_LPA2
    /// descriptors: v6.9 (6.1 `arch/arm64/Kconfig`: "depends on
    /// ARM64_64K_PAGES"; 6.13: no page-size dependency, `PGTABLE_LEVELS`
    /// 5 for 4K/52). v4.x has neither 52-bit VAs nor LPA2.
    Arm64Lpa2,
}

impl ArchId {
    /// Every modelled arch, in transcript order.
    pub const ALL: [ArchId; 7] = [
        ArchId::X86_64,
        ArchId::Arm64,
        ArchId::Ppc64,
        ArchId::Ppc64_4k,
        ArchId::X86_64La57,
        ArchId::Arm64_52,
        ArchId::Arm64_16k,
    ];
    /// The three arches of the main job (the others are variants run on request).
    pub const MAIN: [ArchId; 3] = [ArchId::X86_64, ArchId::Arm64, ArchId::Ppc64];

    /// The kernel build option this arch needs beyond its family, if any.
    #[must_use]
    pub const fn needs(self) -> Option<KernelConfig> {
        match self {
            ArchId::X86_64La57 => Some(KernelConfig::X86_5Level),
            ArchId::Arm64_52 => Some(KernelConfig::Arm64Lpa2),
            _ => None,
        }
    }

    /// The name used on the command line and in transcripts.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ArchId::X86_64 => "x86_64",
            ArchId::Arm64 => "arm64",
            ArchId::Ppc64 => "ppc64",
            ArchId::Ppc64_4k => "ppc64-4k",
            ArchId::X86_64La57 => "x86_64-la57",
            ArchId::Arm64_52 => "arm64-52",
            ArchId::Arm64_16k => "arm64-16k",
        }
    }

    /// `PAGE_SIZE` of the arch ([`Arch::PAGE_SIZE`] at run time).
    #[must_use]
    pub const fn page_size(self) -> u64 {
        with_arch!(self, A => A::PAGE_SIZE)
    }

    /// The arch a portable workload is compared with: for a main arch, one
    /// with the same page size where there is one (x86_64 and arm64, both
    /// 4 KiB), else the other page size of the same MMU (ppc64 against
    /// ppc64-4k); for a geometry variant, the main arch of its MMU.
    #[must_use]
    pub const fn partner(self) -> ArchId {
        match self {
            ArchId::X86_64 => ArchId::Arm64,
            ArchId::Arm64 | ArchId::Arm64_52 | ArchId::Arm64_16k => ArchId::X86_64,
            ArchId::Ppc64 => ArchId::Ppc64_4k,
            ArchId::Ppc64_4k => ArchId::Ppc64,
            ArchId::X86_64La57 => ArchId::X86_64,
        }
    }

    /// The arch whose name a workload's `on ...` qualifiers and `arches`
    /// line answer for this one when they never name it: the main arch of
    /// the same MMU for the geometry variants (`x86_64-la57` → `x86_64`,
    /// `arm64-52` and `arm64-16k` → `arm64`), the arch itself otherwise
    /// (`ppc64-4k` is named by the workloads that run on it).
    #[must_use]
    pub const fn qualifier_alias(self) -> ArchId {
        match self {
            ArchId::X86_64La57 => ArchId::X86_64,
            ArchId::Arm64_52 | ArchId::Arm64_16k => ArchId::Arm64,
            a => a,
        }
    }

    /// The arch family this variant belongs to (`x86_64`, `arm64` or `ppc64`):
    /// the same MMU and entry format, another geometry.
    #[must_use]
    pub const fn mmu(self) -> ArchId {
        match self {
            ArchId::X86_64 | ArchId::X86_64La57 => ArchId::X86_64,
            ArchId::Arm64 | ArchId::Arm64_52 | ArchId::Arm64_16k => ArchId::Arm64,
            ArchId::Ppc64 | ArchId::Ppc64_4k => ArchId::Ppc64,
        }
    }
}

impl fmt::Display for ArchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An arch name that is not one of [`ArchId::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownArch(pub String);

impl fmt::Display for UnknownArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown arch `{}` (expected one of x86_64, arm64, ppc64, ppc64-4k, x86_64-la57, arm64-52, arm64-16k)",
            self.0
        )
    }
}
impl std::error::Error for UnknownArch {}

impl FromStr for ArchId {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ArchId::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownArch(s.to_string()))
    }
}

/// Runs `$body` with the type alias `$A` bound to the zero-sized arch type of `$id`.
///
/// ```
/// use vmemu_arch::{with_arch, Arch, ArchId};
/// let size = with_arch!(ArchId::Ppc64, A => A::PAGE_SIZE);
/// assert_eq!(size, 65536);
/// ```
#[macro_export]
macro_rules! with_arch {
    ($id:expr, $A:ident => $body:expr) => {
        match $id {
            $crate::ArchId::X86_64 => {
                type $A = $crate::X86_64;
                $body
            }
            $crate::ArchId::Arm64 => {
                type $A = $crate::Arm64;
                $body
            }
            $crate::ArchId::Ppc64 => {
                type $A = $crate::Ppc64;
                $body
            }
            $crate::ArchId::Ppc64_4k => {
                type $A = $crate::Ppc64_4k;
                $body
            }
            $crate::ArchId::X86_64La57 => {
                type $A = $crate::X86_64La57;
                $body
            }
            $crate::ArchId::Arm64_52 => {
                type $A = $crate::Arm64_52;
                $body
            }
            $crate::ArchId::Arm64_16k => {
                type $A = $crate::Arm64_16k;
                $body
            }
        }
    };
}

/// The rules of one emulated architecture.
pub trait Arch: Copy + Default + Send + Sync + fmt::Debug + 'static {
    /// Run-time name.
    const ID: ArchId;
    /// `PAGE_SHIFT`.
    const PAGE_SHIFT: u32;
    /// `PAGE_SIZE`.
    const PAGE_SIZE: u64 = 1 << Self::PAGE_SHIFT;
    /// The level table, top (PGD) first, leaf (PTE) last.
    const LEVELS: &'static [LevelGeom];
    /// Entries are stored big-endian in memory (powerpc64).
    const BIG_ENDIAN: bool;
    /// Table entries carry user/write bits that the hardware ANDs with the leaf's (x86).
    const TABLE_PERMS: bool;
    /// A new mm's pgd holds a copy of the kernel half of `swapper_pg_dir`
    /// (x86 `pgd_alloc` → `pgd_ctor` → `clone_pgd_range` from
    /// `KERNEL_PGD_BOUNDARY`, `arch/x86/mm/pgtable.c`); arm64 (TTBR1) and
    /// powerpc radix (process table entry 0) keep the kernel in a root of
    /// its own.
    const SHARED_KERNEL_PGD: bool;
    /// The TLB shootdown after an unmap is an IPI the unmapper waits for
    /// (x86 `flush_tlb_mm_range` → `native_flush_tlb_others` →
    /// `smp_call_function_many(.., wait)`, `arch/x86/mm/tlb.c`): a CPU in
    /// gup-fast's `local_irq_save` section holds it up, so a page unmapped
    /// while a gup-fast walker runs is freed only after the walker leaves.
    /// arm64 (`__tlbi(vale1is)`, `asm/tlbflush.h`) and powerpc radix
    /// (`tlbie`, `radix_tlb.c`) broadcast the invalidation in hardware and
    /// free at once; gup-fast is safe there through the speculative
    /// reference (`page_cache_get_speculative` / `try_grab_folio_fast`) and
    /// the entry re-check. Unlinked page *tables* wait for the walker on
    /// every arch (IPI on x86, `HAVE_RCU_TABLE_FREE`'s `tlb_remove_table`
    /// grace period on arm64 and powerpc).
    const TLB_FLUSH_IPI: bool;
    /// The arch has a gup-fast walker of its own that a profile may select
    /// instead of `mm/gup.c`'s generic one: x86's `arch/x86/mm/gup.c`
    /// (`gup_pte_range` with `pte_allows_gup`: present and user, plus write),
    /// until the move to the generic walker in v4.13 (e585513b76f7). The
    /// profile knob `x86_private_gup` says whether the kernel still has it.
    const PRIVATE_GUP_FAST: bool;
    /// `VMEMMAP_START` without KASLR: where the `struct page` array lives,
    /// giving the value of a `struct page *` (x86-64 `__VMEMMAP_BASE_L4`,
    /// `asm/pgtable_64_types.h`; arm64 v4.10 `PAGE_OFFSET - VMEMMAP_SIZE`
    /// for a 48-bit VA with 4K pages, `asm/memory.h`; powerpc radix
    /// `RADIX_VMEMMAP_BASE` = `RADIX_VMALLOC_END`,
    /// `asm/book3s/64/radix.h`). One value for both families.
    const VMEMMAP_START: u64;

    /// The permission flags of a user leaf whose VMA allows execution only
    /// (`PROT_EXEC` without `PROT_READ`/`PROT_WRITE`) in `family`, besides
    /// the present, leaf, young and exec bits: `vm_get_page_prot`'s
    /// `__P100`/`__S100` (v4.x) or `protection_map[VM_EXEC]` (6.x). The
    /// default is readable by user and kernel ([`PteFlags::USER`] |
    /// [`PteFlags::READ`]): x86 `PAGE_READONLY_EXEC` in v4.10, v4.17 and
    /// 6.13 (`pgtable_types.h`; an execute-only protection key would need
    /// `CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS` on a PKU CPU, not
    /// modelled). arm64 and powerpc override it per family.
    #[must_use]
    fn exec_only_prot(_family: Family) -> PteFlags {
        PteFlags::USER | PteFlags::READ
    }

    /// Whether a read fault in a VMA that allows execution only is an
    /// access error (`-EFAULT` from uaccess, no page mapped). `false` (the
    /// default): the fault handler maps the page as on any accessible VMA
    /// (x86 `access_error` and arm64 `do_page_fault` count `VM_EXEC` as
    /// readable for a read fault without EPAN). powerpc 6.13 overrides it.
    #[must_use]
    fn exec_only_read_is_access_error(_family: Family) -> bool {
        false
    }

    /// `pte_wrprotect`: the leaf flags `flags` without write permission. The
    /// default clears [`PteFlags::WRITE`]; arm64 also sets `PTE_RDONLY`
    /// (AP[2], `asm/pgtable.h`), the bit the hardware checks, as its
    /// read-only protections (`PAGE_READONLY`, `PAGE_COPY`) carry it.
    #[must_use]
    fn pte_wrprotect(flags: PteFlags) -> PteFlags {
        flags.difference(PteFlags::WRITE)
    }

    /// `untagged_addr(addr)` of a process that has not enabled an address
    /// tagging mode of its own: the address with whatever tag bits the
    /// hardware ignores cleared. The default is the identity: x86-64's LAM
    /// untag mask is all ones until the process asks for LAM
    /// (`ARCH_ENABLE_TAGGED_ADDR`, 6.4+ `asm/uaccess_64.h`), powerpc has
    /// no tagging. arm64 overrides it (TBI, below). Where the kernel calls
    /// it is a profile question (the `untag_user_addr` knob).
    #[must_use]
    fn untagged_addr(addr: VirtAddr) -> VirtAddr {
        addr
    }

    /// How a diagnostic names the root [`Arch::hw_root`] selects.
    fn hw_root_desc(root: HwRoot) -> &'static str;

    /// The named bits of the raw entry `raw` read at `level`, as the arch's
    /// headers name them (`_PAGE_USER`, `PTE_UXN`, `_PAGE_PRIVILEGED`), each
    /// with whether it is set: what `vmemu show` prints beside a raw entry.
    /// Only the bits the entry's kind (table or leaf) defines are listed.
    #[must_use]
    fn entry_bits(family: Family, level: Level, raw: u64) -> Vec<(&'static str, bool)> {
        let _ = (family, level, raw);
        Vec::new()
    }

    /// Layout constants in `family`.
    fn layout(family: Family) -> Layout;

    /// `access_ok(addr, size)` against `limit` (the task's `addr_limit`, ignored
    /// by the modern generic form) exactly as the family's header computes it.
    fn access_ok(family: Family, addr: VirtAddr, size: u64, limit: u64, kind: SizeKind) -> bool;

    /// Decode a raw entry read at `level`.
    fn decode(family: Family, level: Level, raw: u64) -> Pte;

    /// Encode a neutral entry for `level`. Flags that the format cannot hold in
    /// this family (e.g. DEVMAP on v4.10 arm64) are dropped.
    fn encode(family: Family, level: Level, pte: Pte) -> u64;

    /// The root the MMU selects for `va`, or `None` when the address cannot be
    /// translated at all (non-canonical on x86, bits outside the VA range on
    /// arm64, a reserved quadrant or bits above the radix tree on powerpc).
    fn hw_root(family: Family, va: VirtAddr) -> Option<HwRoot>;

    /// The walkers' fast path for an entry on the way down: if `raw` at
    /// `level` is a table entry ([`PteFlags::TABLE`] in [`Arch::decode`]), the
    /// physical address of the next table and the entry's
    /// [`PteFlags::USER`] and [`PteFlags::WRITE`] predicates; else `None`.
    /// The address is the frame `decode` gives plus, where the format holds
    /// one, the table's offset inside it (powerpc's next-level base keeps
    /// bits 8 and up: a table may be a fragment of a page). Exactly what
    /// `decode` says otherwise (arches override it with the few bit tests it
    /// takes; a test checks them against `decode`), without computing the
    /// other predicates.
    #[inline]
    #[must_use]
    fn table_step(family: Family, level: Level, raw: u64) -> Option<(PhysAddr, PteFlags)> {
        let p = Self::decode(family, level, raw);
        p.has(PteFlags::TABLE).then_some((
            p.pfn.addr(Self::PAGE_SHIFT),
            p.flags & (PteFlags::USER | PteFlags::WRITE),
        ))
    }

    /// The entry at `level` that links the next-level table at `table`
    /// (`pmd_populate`, `pud_populate`, `p4d_populate`, `pgd_populate`).
    /// The default encodes [`TABLE_ENTRY_FLAGS`] with `table`'s frame, which
    /// must then be the table's start; powerpc keeps the offset of a table
    /// that is a fragment of its page ([`Arch::table_step`] gives it back).
    #[must_use]
    fn table_entry(family: Family, level: Level, table: PhysAddr) -> u64 {
        Self::encode(
            family,
            level,
            Pte {
                flags: TABLE_ENTRY_FLAGS,
                pfn: table.pfn(Self::PAGE_SHIFT),
            },
        )
    }

    /// Whether the kernel may allocate tables smaller than a page as
    /// fragments of one page (`pte_fragment_alloc`, `pmd_fragment_alloc`:
    /// book3s64 with 64 KiB pages, `CONFIG_PPC_64K_PAGES`), and if so the
    /// log2 size of the hash MMU's PTE fragment (`H_PTE_FRAG_SIZE_SHIFT`),
    /// which v4.10's radix used for its PTE fragments too
    /// (`radix__early_init_mmu` sets `__pte_frag_size_shift` from it).
    /// Which levels are fragments, and of what size, is the kernel
    /// profile's question; `None` (the default): every table takes whole
    /// pages (x86 and arm64 tables are page-sized; powerpc with 4 KiB pages
    /// allocates `pte_alloc_one` with `__get_free_page`, v4.17
    /// `book3s/64/pgalloc.h`, and 6.13's `RADIX_PTE_FRAG_NR` is 1 there).
    const TABLE_FRAGMENTS: Option<u32> = None;

    /// The frame-number field of a leaf entry at `level`, as `(mask, shift)`:
    /// for a leaf, `decode(raw).pfn == Pfn((raw & mask) >> shift)`, and the
    /// flags `decode` gives a non-zero entry do not depend on the bits in
    /// `mask`. Walkers that visit many leaves (gup-fast) decode one entry and
    /// reuse its flags for the next ones that differ only in `mask`. `None`
    /// (the default): decode every entry. A test checks both properties.
    #[inline]
    #[must_use]
    fn leaf_pfn_field(_level: Level) -> Option<(u64, u32)> {
        None
    }

    /// Number of levels.
    #[must_use]
    fn levels() -> usize {
        Self::LEVELS.len()
    }
    /// The leaf (PTE) level.
    #[must_use]
    fn leaf_level() -> Level {
        Level((Self::LEVELS.len() - 1) as u8)
    }
    /// Geometry of `level`.
    #[must_use]
    fn geom(level: Level) -> LevelGeom {
        Self::LEVELS[level.index()]
    }
    /// Entries in a table at `level` (`PTRS_PER_*`).
    #[must_use]
    fn entries(level: Level) -> usize {
        1 << Self::geom(level).bits
    }
    /// Bytes of a table at `level`.
    #[must_use]
    fn table_bytes(level: Level) -> u64 {
        (Self::entries(level) as u64) * 8
    }
    /// Bytes mapped by one entry at `level` (`PGDIR_SIZE`, `PMD_SIZE`, ...).
    #[must_use]
    fn entry_span(level: Level) -> u64 {
        1 << Self::geom(level).shift
    }
    /// Index of `va` in a table at `level`: `(va >> shift) & (PTRS_PER - 1)`.
    /// Bits above the level's index are dropped, as the kernel's macros do.
    #[must_use]
    fn index(va: VirtAddr, level: Level) -> usize {
        let g = Self::geom(level);
        ((va.0 >> g.shift) & ((1u64 << g.bits) - 1)) as usize
    }
    /// `pgd_index(addr)`.
    #[must_use]
    fn pgd_index(va: VirtAddr) -> usize {
        Self::index(va, Level(0))
    }
    /// Bits of VA the table tree resolves (`PGDIR_SHIFT + PGD index bits`).
    #[must_use]
    fn va_bits() -> u32 {
        let g = Self::LEVELS[0];
        g.shift + g.bits
    }
    /// `*_addr_end(addr, end)` at `level`: the next boundary of an entry at
    /// `level` above `addr`, or `end` if that is nearer, computed as
    /// "boundary − 1 < end − 1" so an `end` of 0 (top of the address space) works.
    #[must_use]
    fn addr_end(addr: VirtAddr, end: VirtAddr, level: Level) -> VirtAddr {
        let span = Self::entry_span(level);
        let boundary = (addr.0.wrapping_add(span)) & !(span - 1);
        if boundary.wrapping_sub(1) < end.0.wrapping_sub(1) {
            VirtAddr(boundary)
        } else {
            end
        }
    }
}

/// The flags of an entry that links a next-level table
/// ([`Arch::table_entry`]): x86 `_PAGE_TABLE` is P|RW|USER|A|D (v4.10
/// populates kernel tables this way too, which is what lets user mode reach
/// the vsyscall page); the other formats drop what they cannot hold.
pub const TABLE_ENTRY_FLAGS: PteFlags = PteFlags::VALID
    .union(PteFlags::PRESENT)
    .union(PteFlags::TABLE)
    .union(PteFlags::WRITE)
    .union(PteFlags::USER)
    .union(PteFlags::YOUNG)
    .union(PteFlags::DIRTY)
    .union(PteFlags::EXEC);

/// Mask of `n` low bits.
pub(crate) const fn bits(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}
