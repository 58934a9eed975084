//! Emulated physical memory on vm-memory, the frame allocator and the
//! `struct page` array.
//!
//! Guest memory is one anonymous `MAP_NORESERVE` region from
//! `GuestMemoryMmap::from_ranges`, so frames cost host memory only once they
//! are touched. Page-table entries are 8-byte words in these frames, stored in
//! the arch's byte order. Entries are read through a [`Table`] view obtained
//! once per table page (one `get_slice`), then one bounds-checked atomic load
//! per entry: no vm-memory region lookup per level.
//!
//! No `unsafe` is needed here: vm-memory's `VolatileSlice` offers atomic
//! loads and stores and bulk copies. This module and the files it includes
//! are the only place allowed to hold `unsafe`; today that is [`host`]
//! (`phys_host.rs`, Linux only): host system calls on raw user addresses
//! and host mappings Rust never references, behind a safe API, for the host
//! differential of `vmemu-harness`.

use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};
use vmemu_arch::{Arch, Pfn, PhysAddr};

use crate::errno::Errno;

// Kept on one line (the include the project rule names).
#[rustfmt::skip]
#[cfg(target_os = "linux")] #[path = "phys_host.rs"] pub mod host;

/// Pincount bias of FOLL_PIN on a small folio (`GUP_PIN_COUNTING_BIAS`).
pub const GUP_PIN_COUNTING_BIAS: u32 = 1024;

bitflags::bitflags! {
    /// `page->flags` bits the emulator models.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PageFlags: u16 {
        /// PG_locked.
        const LOCKED = 1 << 0;
        /// PG_reserved (the zero page, kernel image frames).
        const RESERVED = 1 << 1;
        /// PG_dirty.
        const DIRTY = 1 << 2;
        /// PG_uptodate.
        const UPTODATE = 1 << 3;
        /// PG_head: first page of a compound page.
        const HEAD = 1 << 4;
        /// A tail page of a compound page.
        const TAIL = 1 << 5;
        /// PG_referenced (`mark_page_accessed`).
        const REFERENCED = 1 << 6;
        /// PG_anon_exclusive (6.x): the anon page is mapped by one mm only.
        const ANON_EXCLUSIVE = 1 << 7;
        /// The frame is free (in the allocator).
        const FREE = 1 << 8;
    }
}

/// What a frame is used for; turned into a symbolic name for transcripts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Owner {
    /// Not allocated.
    #[default]
    Free,
    /// The shared zero page.
    Zero,
    /// A page-table page at `level` (0 = pgd) of table number `seq`.
    PageTable { level: u8, seq: u32 },
    /// Page `index` of the anonymous mapping named `name`.
    Anon { name: u32, index: u32 },
    /// Page `index` of the page cache of file `file`.
    File { file: u32, index: u32 },
    /// Page `index` of the kernel buffer named `name` (kmalloc/vmalloc/alloc_page).
    Kernel { name: u32, index: u32 },
    /// The x86 vsyscall page.
    Vsyscall,
    /// Frames of the emulated kernel image / reserved memory.
    Reserved,
}

/// The emulated `struct page`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Page {
    /// `page_ref_count()` (on the head for compound pages).
    pub refcount: u32,
    /// `_mapcount + 1`: number of page-table leaves mapping the page.
    pub mapcount: u32,
    /// `_pincount` of a large folio (small folios count pins in `refcount`
    /// with [`GUP_PIN_COUNTING_BIAS`]).
    pub pincount: u32,
    /// Page flags.
    pub flags: PageFlags,
    /// Compound order (on head and tails).
    pub order: u8,
    /// What the page is.
    pub owner: Owner,
}

/// Errors of the physical memory layer (host-side problems, not emulated faults).
#[derive(Debug, thiserror::Error)]
pub enum PhysError {
    /// The guest memory could not be created.
    #[error("cannot create {size} bytes of guest memory: {reason}")]
    Create { size: u64, reason: String },
    /// An access fell outside guest memory.
    #[error("physical address {0} is outside guest memory")]
    OutOfRange(PhysAddr),
}

/// Guest physical memory plus the `struct page` array and the frame allocator.
#[derive(Debug)]
pub struct PhysMem {
    mem: GuestMemoryMmap<()>,
    page_shift: u32,
    big_endian: bool,
    size: u64,
    pages: Vec<Page>,
    /// Next never-used frame (fresh frames are known to be zero).
    bump: u64,
    /// Recycled frames per order.
    free: Vec<Vec<u64>>,
    /// Frames currently allocated.
    allocated: u64,
}

/// A read view of one page-table page.
#[derive(Debug)]
pub struct Table<'a> {
    slice: VolatileSlice<'a, ()>,
    big_endian: bool,
    /// Physical address of entry 0.
    pub base: PhysAddr,
    /// Number of entries in the table.
    pub entries: usize,
}

impl Table<'_> {
    /// Raw entry `i` in host order; `None` if `i` is past the end of the table
    /// (the caller reports the overrun instead of reading beyond).
    #[inline]
    #[must_use]
    pub fn get(&self, i: usize) -> Option<u64> {
        if i >= self.entries {
            return None;
        }
        let v: u64 = self.slice.load(i * 8, Ordering::Acquire).ok()?;
        Some(if self.big_endian {
            u64::from_be(v)
        } else {
            u64::from_le(v)
        })
    }

    /// Physical address of entry `i`.
    #[must_use]
    pub fn entry_pa(&self, i: usize) -> PhysAddr {
        self.base.add(i as u64 * 8)
    }
}

static ZEROES: [u8; 65536] = [0; 65536];

impl PhysMem {
    /// Guest memory of `size` bytes for arch `A` (rounded down to whole pages).
    pub fn new<A: Arch>(size: u64) -> Result<Self, PhysError> {
        let size = size & !(A::PAGE_SIZE - 1);
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)]).map_err(
            |e| PhysError::Create {
                size,
                reason: e.to_string(),
            },
        )?;
        let nr = size >> A::PAGE_SHIFT;
        let free_page = Page {
            flags: PageFlags::FREE,
            ..Page::default()
        };
        Ok(Self {
            mem,
            page_shift: A::PAGE_SHIFT,
            big_endian: A::BIG_ENDIAN,
            size,
            pages: vec![free_page; nr as usize],
            bump: 0,
            free: vec![Vec::new(); 16],
            allocated: 0,
        })
    }

    /// Bytes of guest memory.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Number of frames.
    #[must_use]
    pub fn nr_frames(&self) -> u64 {
        self.pages.len() as u64
    }
    /// Frames currently allocated.
    #[must_use]
    pub fn allocated(&self) -> u64 {
        self.allocated
    }
    /// Page size in bytes.
    #[must_use]
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }

    /// Allocates `2^order` contiguous, naturally aligned, zeroed frames; the
    /// head gets refcount 1 and `owner`. `None` when memory is exhausted.
    pub fn alloc(&mut self, order: u8, owner: Owner) -> Option<Pfn> {
        let n = 1u64 << order;
        let (pfn, fresh) = if let Some(p) = self.free[order as usize].pop() {
            (p, false)
        } else {
            let start = (self.bump + n - 1) & !(n - 1);
            if start + n > self.nr_frames() {
                return None;
            }
            // Frames skipped for alignment go to the order-0 free list.
            for p in self.bump..start {
                self.free[0].push(p);
            }
            self.bump = start + n;
            (start, true)
        };
        if !fresh {
            let bytes = (n << self.page_shift) as usize;
            let pa = pfn << self.page_shift;
            let mut off = 0;
            while off < bytes {
                let len = (bytes - off).min(ZEROES.len());
                self.mem
                    .write_slice(&ZEROES[..len], GuestAddress(pa + off as u64))
                    .ok()?;
                off += len;
            }
        }
        for i in 0..n {
            let p = &mut self.pages[(pfn + i) as usize];
            *p = Page {
                order,
                owner,
                ..Page::default()
            };
            if order > 0 {
                p.flags = if i == 0 {
                    PageFlags::HEAD
                } else {
                    PageFlags::TAIL
                };
            }
        }
        self.pages[pfn as usize].refcount = 1;
        self.allocated += n;
        Some(Pfn(pfn))
    }

    /// Returns the frames of a page whose last reference went away.
    pub fn free(&mut self, head: Pfn) {
        let order = self.pages[head.0 as usize].order;
        let n = 1u64 << order;
        for i in 0..n {
            self.pages[(head.0 + i) as usize] = Page {
                flags: PageFlags::FREE,
                ..Page::default()
            };
        }
        self.free[order as usize].push(head.0);
        self.allocated -= n;
    }

    /// Marks frame `pfn` (order 0) as allocated for `owner` without going
    /// through the free lists; used for frames reserved at boot.
    pub fn reserve(&mut self, owner: Owner) -> Option<Pfn> {
        let p = self.alloc(0, owner)?;
        self.pages[p.0 as usize].flags |= PageFlags::RESERVED;
        Some(p)
    }

    /// Whether `pfn` names a frame of guest memory.
    #[must_use]
    pub fn pfn_valid(&self, pfn: Pfn) -> bool {
        pfn.0 < self.nr_frames()
    }

    /// The `struct page` of `pfn`.
    #[must_use]
    pub fn page(&self, pfn: Pfn) -> &Page {
        &self.pages[pfn.0 as usize]
    }
    /// Mutable `struct page` of `pfn`.
    pub fn page_mut(&mut self, pfn: Pfn) -> &mut Page {
        &mut self.pages[pfn.0 as usize]
    }

    /// `compound_head()`.
    #[must_use]
    pub fn compound_head(&self, pfn: Pfn) -> Pfn {
        let p = &self.pages[pfn.0 as usize];
        if p.flags.contains(PageFlags::TAIL) {
            Pfn(pfn.0 & !((1u64 << p.order) - 1))
        } else {
            pfn
        }
    }

    /// `get_page()` / `folio_ref_add()`: adds `refs` to the head's refcount.
    pub fn get_page(&mut self, pfn: Pfn, refs: u32) {
        let h = self.compound_head(pfn);
        let p = &mut self.pages[h.0 as usize];
        p.refcount = p.refcount.saturating_add(refs);
    }

    /// `try_get_page()`-style speculative reference: fails on a free page
    /// (refcount 0), as `page_cache_get_speculative` does.
    pub fn try_get_page(&mut self, pfn: Pfn, refs: u32) -> bool {
        let h = self.compound_head(pfn);
        let p = &mut self.pages[h.0 as usize];
        if p.refcount == 0 {
            return false;
        }
        p.refcount = p.refcount.saturating_add(refs);
        true
    }

    /// `put_page()` of `refs` references. Returns `Err(EINVAL)` on an underflow
    /// (never wraps) and frees the page when the count reaches zero.
    pub fn put_page(&mut self, pfn: Pfn, refs: u32) -> Result<(), Errno> {
        let h = self.compound_head(pfn);
        let p = &mut self.pages[h.0 as usize];
        if p.refcount < refs || p.flags.contains(PageFlags::FREE) {
            return Err(Errno::EINVAL);
        }
        p.refcount -= refs;
        if p.refcount == 0 && !p.flags.contains(PageFlags::RESERVED) {
            self.free(h);
        }
        Ok(())
    }

    /// A view of the table of `entries` words at `pa`.
    pub fn table(&self, pa: PhysAddr, entries: usize) -> Result<Table<'_>, PhysError> {
        let slice = self
            .mem
            .get_slice(GuestAddress(pa.0), entries * 8)
            .map_err(|_| PhysError::OutOfRange(pa))?;
        Ok(Table {
            slice,
            big_endian: self.big_endian,
            base: pa,
            entries,
        })
    }

    /// Reads the entry word at `pa` (arch byte order).
    pub fn read_entry(&self, pa: PhysAddr) -> Result<u64, PhysError> {
        let v: u64 = self
            .mem
            .load(GuestAddress(pa.0), Ordering::Acquire)
            .map_err(|_| PhysError::OutOfRange(pa))?;
        Ok(if self.big_endian {
            u64::from_be(v)
        } else {
            u64::from_le(v)
        })
    }

    /// Writes the entry word at `pa` (arch byte order), atomically.
    pub fn write_entry(&self, pa: PhysAddr, raw: u64) -> Result<(), PhysError> {
        let v = if self.big_endian {
            raw.to_be()
        } else {
            raw.to_le()
        };
        self.mem
            .store(v, GuestAddress(pa.0), Ordering::Release)
            .map_err(|_| PhysError::OutOfRange(pa))
    }

    /// Copies `buf.len()` bytes out of guest memory at `pa`.
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), PhysError> {
        self.mem
            .read_slice(buf, GuestAddress(pa.0))
            .map_err(|_| PhysError::OutOfRange(pa))
    }

    /// Copies `buf` into guest memory at `pa`.
    pub fn write(&self, pa: PhysAddr, buf: &[u8]) -> Result<(), PhysError> {
        self.mem
            .write_slice(buf, GuestAddress(pa.0))
            .map_err(|_| PhysError::OutOfRange(pa))
    }

    /// Copies `len` bytes between two guest ranges (bulk, no byte loop).
    pub fn copy(&self, from: PhysAddr, to: PhysAddr, len: usize) -> Result<(), PhysError> {
        let src = self
            .mem
            .get_slice(GuestAddress(from.0), len)
            .map_err(|_| PhysError::OutOfRange(from))?;
        let dst = self
            .mem
            .get_slice(GuestAddress(to.0), len)
            .map_err(|_| PhysError::OutOfRange(to))?;
        src.copy_to_volatile_slice(dst);
        Ok(())
    }

    /// Fills `len` bytes at `pa` with `byte` (poisoning freed table frames).
    pub fn fill(&self, pa: PhysAddr, len: usize, byte: u8) -> Result<(), PhysError> {
        let chunk = [byte; 4096];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(chunk.len());
            self.write(pa.add(off as u64), &chunk[..n])?;
            off += n;
        }
        Ok(())
    }

    /// Frames ever handed out (the allocator's high-water mark): the frames a
    /// run has touched, whatever the size of guest memory.
    #[must_use]
    pub fn high_water(&self) -> u64 {
        self.bump
    }

    /// Fills `len` bytes at `pa` with zeroes.
    pub fn zero(&self, pa: PhysAddr, len: usize) -> Result<(), PhysError> {
        let mut off = 0;
        while off < len {
            let n = (len - off).min(ZEROES.len());
            self.write(pa.add(off as u64), &ZEROES[..n])?;
            off += n;
        }
        Ok(())
    }

    /// Every allocated head frame, in pfn order (for invariant checks).
    /// Only frames below the allocator's high-water mark are visited, so the
    /// cost follows what was ever allocated, not the size of memory.
    pub fn allocated_heads(&self) -> impl Iterator<Item = (Pfn, &Page)> {
        self.pages[..self.bump as usize]
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.flags.intersects(PageFlags::FREE | PageFlags::TAIL))
            .map(|(i, p)| (Pfn(i as u64), p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmemu_arch::{Ppc64, X86_64};

    #[test]
    fn alloc_is_aligned_and_zeroed_after_reuse() {
        let mut m = PhysMem::new::<X86_64>(1 << 24).unwrap();
        let a = m.alloc(0, Owner::Zero).unwrap();
        let big = m.alloc(4, Owner::Reserved).unwrap();
        assert_eq!(big.0 % 16, 0);
        assert_eq!(m.compound_head(Pfn(big.0 + 5)), big);
        m.write(a.addr(12), &[0xaa; 64]).unwrap();
        m.put_page(a, 1).unwrap();
        let b = m.alloc(0, Owner::Zero).unwrap();
        assert_eq!(a, b, "recycled frame");
        let mut buf = [1u8; 64];
        m.read(b.addr(12), &mut buf).unwrap();
        assert_eq!(buf, [0u8; 64]);
    }

    #[test]
    fn put_page_underflow_is_an_error() {
        let mut m = PhysMem::new::<X86_64>(1 << 24).unwrap();
        let a = m.alloc(0, Owner::Zero).unwrap();
        m.get_page(a, 1);
        m.put_page(a, 2).unwrap();
        assert_eq!(m.put_page(a, 1), Err(Errno::EINVAL));
    }

    #[test]
    fn entries_are_big_endian_on_ppc64() {
        let mut m = PhysMem::new::<Ppc64>(1 << 24).unwrap();
        let t = m.alloc(0, Owner::PageTable { level: 3, seq: 0 }).unwrap();
        let pa = t.addr(16);
        m.write_entry(pa, 0xc000_0000_0012_0006).unwrap();
        let mut bytes = [0u8; 8];
        m.read(pa, &mut bytes).unwrap();
        assert_eq!(bytes, [0xc0, 0, 0, 0, 0, 0x12, 0, 0x06]);
        assert_eq!(m.table(pa, 32).unwrap().get(0), Some(0xc000_0000_0012_0006));
        assert_eq!(m.table(pa, 32).unwrap().get(32), None);
    }
}
