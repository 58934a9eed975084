//! The arch-neutral view of one page-table entry.
//!
//! Each arch decodes its raw 64-bit entries into a [`Pte`] and encodes a [`Pte`]
//! back. The flags are the kernel's *predicates* on an entry (`pte_present`,
//! `pte_user`, `pte_write`, `pte_protnone`, ...), computed the way the arch's
//! headers compute them for the modelled kernel family, so generic code can ask
//! the same questions the generic kernel code asks.

use crate::addr::Pfn;

bitflags::bitflags! {
    /// Arch-neutral predicates of one entry.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PteFlags: u32 {
        /// The hardware would translate through this entry (x86 `_PAGE_PRESENT`,
        /// arm64 `PTE_VALID`, powerpc `_PAGE_PRESENT`).
        const VALID    = 1 << 0;
        /// `pte_present()`: valid, or a PROT_NONE / NUMA-hint entry the kernel
        /// still treats as present.
        const PRESENT  = 1 << 1;
        /// User accessible (x86 `_PAGE_USER`, arm64 `PTE_USER`, powerpc
        /// `_PAGE_PRIVILEGED` clear).
        const USER     = 1 << 2;
        /// Readable (implicit on x86 and arm64 for a valid leaf; `_PAGE_READ` on powerpc).
        const READ     = 1 << 3;
        /// `pte_write()`: write permission (x86 `_PAGE_RW`, arm64 `PTE_WRITE` (DBM),
        /// powerpc `_PAGE_WRITE`).
        const WRITE    = 1 << 4;
        /// arm64 `PTE_RDONLY` (AP[2]): the hardware read-only bit.
        const RDONLY   = 1 << 5;
        /// Executable by user code (x86 NX clear, arm64 UXN clear, powerpc `_PAGE_EXEC`).
        const EXEC     = 1 << 6;
        /// `pte_dirty()`.
        const DIRTY    = 1 << 7;
        /// `pte_young()` (accessed).
        const YOUNG    = 1 << 8;
        /// `pte_special()`: no struct page behind it for gup purposes.
        const SPECIAL  = 1 << 9;
        /// `pte_devmap()`: ZONE_DEVICE memory.
        const DEVMAP   = 1 << 10;
        /// `pte_protnone()` as the arch defines it (meaningful with NUMA balancing).
        const PROTNONE = 1 << 11;
        /// A leaf: always at the last level, a huge page/block at an upper level.
        const LEAF     = 1 << 12;
        /// A pointer to a next-level table.
        const TABLE    = 1 << 13;
    }
}

/// One decoded entry: its predicates and the frame it names (the mapped page for
/// a leaf, the next table for a table entry, zero for an empty entry).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Pte {
    /// The entry's predicates.
    pub flags: PteFlags,
    /// The frame the entry points at.
    pub pfn: Pfn,
}

impl Pte {
    /// `pXd_none()`: the all-zero entry.
    pub const NONE: Pte = Pte {
        flags: PteFlags::empty(),
        pfn: Pfn(0),
    };

    /// Shorthand for `self.flags.contains(f)`.
    #[must_use]
    pub fn has(&self, f: PteFlags) -> bool {
        self.flags.contains(f)
    }
}
