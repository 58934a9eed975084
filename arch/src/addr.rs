//! Newtypes for the numbers that must not be confused: virtual addresses,
//! physical addresses, page frame numbers and page-table levels.

use std::fmt;

/// A virtual (effective) address, user or kernel, as a 64-bit register holds it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(pub u64);

/// An emulated physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

/// A page frame number in units of the arch's base page size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

/// A page-table level counted from the top: `Level(0)` is the PGD.
///
/// The leaf (PTE) level is `Level(levels - 1)` of the arch's level table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Level(pub u8);

impl VirtAddr {
    /// The address rounded down to a multiple of `size` (a power of two).
    #[must_use]
    pub const fn align_down(self, size: u64) -> Self {
        Self(self.0 & !(size - 1))
    }
    /// Offset of the address inside a block of `size` bytes (a power of two).
    #[must_use]
    pub const fn offset_in(self, size: u64) -> u64 {
        self.0 & (size - 1)
    }
    /// `self + n`, wrapping at 2^64 the way unsigned long arithmetic does.
    #[must_use]
    pub const fn wrapping_add(self, n: u64) -> Self {
        Self(self.0.wrapping_add(n))
    }
}

impl PhysAddr {
    /// The frame holding this address for pages of `1 << page_shift` bytes.
    #[must_use]
    pub const fn pfn(self, page_shift: u32) -> Pfn {
        Pfn(self.0 >> page_shift)
    }
    /// `self + n`.
    #[must_use]
    pub const fn add(self, n: u64) -> Self {
        Self(self.0 + n)
    }
}

impl Pfn {
    /// First physical address of the frame.
    #[must_use]
    pub const fn addr(self, page_shift: u32) -> PhysAddr {
        PhysAddr(self.0 << page_shift)
    }
}

impl Level {
    /// Position in the arch level table (0 = top).
    #[must_use]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}
impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}
impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}
impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Level({})", self.0)
    }
}
