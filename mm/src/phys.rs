//! Emulated physical memory on vm-memory: `PhysMem`, its guest memory and
//! the table views into it. The frame allocator is the child module `alloc`,
//! the `struct page` array and its reference operations `page`; both work on
//! `PhysMem`'s fields without touching host memory themselves.
//!
//! Guest memory is one anonymous `MAP_NORESERVE` region from
//! `GuestMemoryMmap::from_ranges`, so frames cost host memory only once they
//! are touched. Page-table entries are 8-byte words in these frames, stored in
//! the arch's byte order.
//!
//! Speed: the guest memory is one host mapping, so its host address is
//! resolved once when the memory is created. Table entries are then read and
//! written as atomics through that host pointer: a [`Table`] view is a bounds
//! check and a pointer, and reading an entry is one atomic load — no vm-memory
//! region lookup or slice construction per entry or per level (those cost
//! ~5 ns each, more than the rest of a walk). Bulk copies still go through
//! vm-memory. This module is the only place in `vmemu-mm` with `unsafe`
//! (the host probes of the harness have their own crate, `vmemu-host`);
//! every block says why it is sound.
//!
//! Reuse: every write to guest memory marks the 4 KiB host pages it touches.
//! When a `PhysMem` is dropped, its mapping goes, as it is, to a small
//! process-wide pool, from which the next `PhysMem` of the same size takes
//! it, zeroing exactly the marked pages first (scrub on reuse, not on drop:
//! nothing is zeroed for a mapping that is never reused): it reads as
//! all-zero, like a fresh mapping, but its pages are already resident. Runs of the matrix (and the tests) thus do
//! not pay a host page fault per touched page each time — on a virtual
//! machine such faults cost microseconds and serialise threads.

// The one module of `vmemu-mm` where `unsafe` is allowed.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmemu_arch::{Arch, PhysAddr};

mod alloc;
mod page;

use page::{FREE_PAGE, RefWrap};
pub use page::{GUP_PIN_COUNTING_BIAS, Owner, Page, PageFlags};

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
    /// Host address of guest physical address 0: `mem` is one region of
    /// `size` bytes, mapped once, so `host + pa` is the host address of `pa`
    /// for every `pa < size`.
    host: NonNull<u8>,
    /// One bit per 4 KiB of guest memory written since the mapping was last
    /// all zero.
    dirty: Vec<AtomicU64>,
    /// Bits set in `dirty` by this `PhysMem` (granules it made resident).
    dirtied: AtomicU64,
    /// One bit per 4 KiB granule written in an earlier life of a pooled
    /// mapping (zeroed since, but still resident host memory): with `dirty`,
    /// what the mapping costs the host if it goes back to the pool.
    resident: Vec<u64>,
    page_shift: u32,
    big_endian: bool,
    size: u64,
    /// Frames of guest memory.
    nr_frames: u64,
    /// `struct page`s of frames `0..pages.len()`; frames above were never
    /// allocated and are free (the array grows with the allocator, so a large
    /// guest costs nothing until its frames are used).
    pages: Vec<Page>,
    /// Next never-used frame (fresh frames are known to be zero).
    bump: u64,
    /// Recycled frames per order.
    free: Vec<Vec<u64>>,
    /// Frames currently allocated.
    allocated: u64,
    /// What `page_mut` hands out for an invalid frame (reset every time).
    scratch: Page,
    /// Bumped whenever a page table may have changed (see
    /// [`PhysMem::generation`]), so a cache of what a walk read knows when it
    /// may be stale.
    generation: AtomicU64,
    /// A `_refcount` narrower than 32 bits (the `refcount_bits` knob), with
    /// the references really outstanding per page; `None` in every profile
    /// with the kernel's 32-bit counter.
    wrap: Option<Box<RefWrap>>,
    /// How [`PhysMem::write`] stores ([`PhysMem::set_streaming`]).
    streaming: Stream,
}

// SAFETY: `host` points into the mapping owned by `mem`, which is itself
// `Send + Sync` and lives as long as `self`. Through `&PhysMem` the pointer is
// only used for atomic loads and stores of aligned entry words — the access
// model of vm-memory's own `VolatileSlice::load/store` on shared guest memory.
unsafe impl Send for PhysMem {}
// SAFETY: as above.
unsafe impl Sync for PhysMem {}

/// A table checked against guest memory once, held without a borrow of
/// the memory (so a walker may update `struct page`s while it reads the
/// table): entries are read through [`PhysMem::entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRef {
    /// Byte offset of entry 0 in guest memory (8-byte aligned).
    off: usize,
    /// Number of entries.
    entries: usize,
}

/// A read view of one page-table page: a host pointer to its first entry,
/// checked against guest memory once when the view is made.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    ptr: NonNull<AtomicU64>,
    big_endian: bool,
    /// Physical address of entry 0.
    pub base: PhysAddr,
    /// Number of entries in the table.
    pub entries: usize,
    _mem: PhantomData<&'a PhysMem>,
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
        // SAFETY: `PhysMem::table` checked that the `entries` words from `ptr`
        // lie inside guest memory and that `ptr` is 8-byte aligned; `i` is
        // below `entries`; the view borrows the `PhysMem` that owns the
        // mapping, so it stays mapped. Entry words are accessed atomically.
        let v = unsafe { (*self.ptr.as_ptr().add(i)).load(Ordering::Acquire) };
        Some(if self.big_endian {
            u64::from_be(v)
        } else {
            u64::from_le(v)
        })
    }

    /// The first index in `from..to` (clamped to the table) whose entry is
    /// not zero: a scan of raw words (zero in either byte order), four at a
    /// time, for walks over sparse tables.
    #[inline]
    #[must_use]
    pub fn next_nonzero(&self, from: usize, to: usize) -> Option<usize> {
        let to = to.min(self.entries);
        let word = |i: usize| {
            // SAFETY: as in `get`: `i < to <= entries`, inside the checked
            // view of guest memory; entry words are accessed atomically.
            unsafe { (*self.ptr.as_ptr().add(i)).load(Ordering::Relaxed) }
        };
        let mut i = from;
        while i + 4 <= to {
            if word(i) | word(i + 1) | word(i + 2) | word(i + 3) != 0 {
                break;
            }
            i += 4;
        }
        (i..to).find(|&j| word(j) != 0)
    }

    /// Physical address of entry `i`.
    #[must_use]
    pub fn entry_pa(&self, i: usize) -> PhysAddr {
        self.base.add(i as u64 * 8)
    }
}

static ZEROES: [u8; 65536] = [0; 65536];

/// How [`PhysMem::write`] stores: plain copies, or non-temporal (streaming)
/// stores 16 or 32 bytes wide ([`PhysMem::set_streaming`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    /// `copy_nonoverlapping`.
    Off,
    /// SSE2 `movntdq` (x86-64 baseline); plain copies elsewhere.
    Sse2,
    /// AVX2 `vmovntdq`, on an x86-64 host whose CPU has AVX2.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
}

impl Stream {
    /// The widest streaming store the host has.
    fn widest() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Self::Avx2;
        }
        Self::Sse2
    }
}

/// The shape both streaming copies share: plain copies for the head up to
/// an `ALIGN`-byte boundary of `dst` and for the tail, and `block` for each
/// `STEP`-byte block between them, at a `dst` that is `ALIGN`-aligned.
///
/// # Safety
/// `src..src+len` readable, `dst..dst+len` writable, not overlapping;
/// `block(s, d)` reads `STEP` bytes at `s` and writes `STEP` bytes at `d`,
/// and needs no more alignment than `ALIGN` at `d`.
#[inline(always)]
unsafe fn stream_blocks<const ALIGN: usize, const STEP: usize>(
    dst: *mut u8,
    src: *const u8,
    len: usize,
    block: impl Fn(*const u8, *mut u8),
) {
    let head = dst.align_offset(ALIGN).min(len);
    if head > 0 {
        // SAFETY: `head <= len`: inside both ranges (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(src, dst, head) };
    }
    let blocks = (len - head) / STEP;
    // SAFETY: `head <= len`: both pointers stay inside their ranges.
    let (mut s, mut d) = unsafe { (src.add(head), dst.add(head)) };
    for _ in 0..blocks {
        // Each of the `blocks` steps stays inside both ranges
        // (`head + STEP * blocks <= len`); `d` stays `ALIGN`-aligned
        // (`head` aligned it, and `STEP` is a multiple of `ALIGN`).
        block(s, d);
        // SAFETY: at most one past the last block: inside both ranges.
        unsafe {
            s = s.add(STEP);
            d = d.add(STEP);
        }
    }
    let tail = len - head - blocks * STEP;
    if tail > 0 {
        // SAFETY: the last `tail` bytes of both ranges.
        unsafe { std::ptr::copy_nonoverlapping(s, d, tail) };
    }
}

/// Copies `len` bytes from `src` to `dst` with non-temporal stores where
/// the host has them (x86-64: SSE2 `movntdq`, part of the base
/// instruction set), plain copies for the unaligned head and the tail.
///
/// # Safety
/// `src..src+len` readable, `dst..dst+len` writable, not overlapping.
#[inline]
unsafe fn stream_copy(dst: *mut u8, src: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let block = |s: *const u8, d: *mut u8| {
            // SAFETY: `stream_blocks` hands over 64 readable bytes at `s`
            // and 64 writable, 16-byte aligned bytes at `d`, as `movntdq`
            // needs.
            unsafe {
                let (s, d) = (s.cast::<__m128i>(), d.cast::<__m128i>());
                let (a, b) = (_mm_loadu_si128(s), _mm_loadu_si128(s.add(1)));
                let (c, e) = (_mm_loadu_si128(s.add(2)), _mm_loadu_si128(s.add(3)));
                _mm_stream_si128(d, a);
                _mm_stream_si128(d.add(1), b);
                _mm_stream_si128(d.add(2), c);
                _mm_stream_si128(d.add(3), e);
            }
        };
        // SAFETY: the caller's contract; `block` is as `stream_blocks` needs.
        unsafe { stream_blocks::<16, 64>(dst, src, len, block) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller's contract.
    unsafe {
        std::ptr::copy_nonoverlapping(src, dst, len);
    }
}

/// [`stream_copy`] with 32-byte AVX2 streaming stores, 128 bytes a step.
///
/// # Safety
/// As [`stream_copy`], and the CPU has AVX2 ([`Stream::widest`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stream_copy_avx2(dst: *mut u8, src: *const u8, len: usize) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_stream_si256};
    let block = |s: *const u8, d: *mut u8| {
        // SAFETY: `stream_blocks` hands over 128 readable bytes at `s` and
        // 128 writable, 32-byte aligned bytes at `d`, as `vmovntdq` needs.
        unsafe {
            let (s, d) = (s.cast::<__m256i>(), d.cast::<__m256i>());
            let (a, b) = (_mm256_loadu_si256(s), _mm256_loadu_si256(s.add(1)));
            let (c, e) = (_mm256_loadu_si256(s.add(2)), _mm256_loadu_si256(s.add(3)));
            _mm256_stream_si256(d, a);
            _mm256_stream_si256(d.add(1), b);
            _mm256_stream_si256(d.add(2), c);
            _mm256_stream_si256(d.add(3), e);
        }
    };
    // SAFETY: the caller's contract; `block` is as `stream_blocks` needs.
    unsafe { stream_blocks::<32, 128>(dst, src, len, block) };
}

/// Orders the streaming stores of [`stream_copy`] before later stores.
fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no operands and is part of SSE (x86-64 baseline).
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
}

/// Granule of the dirty map.
const DIRTY_SHIFT: u32 = 12;

/// Bytes per granule of the written-since-zero map
/// ([`PhysMem::may_be_written`]).
pub const WRITE_GRANULE: u64 = 1 << DIRTY_SHIFT;

/// A guest memory mapping of a dropped `PhysMem`, with its dirty map: the
/// granules it marks are zeroed when the mapping is taken again.
struct Pooled {
    mem: GuestMemoryMmap<()>,
    host: NonNull<u8>,
    size: u64,
    dirty: Vec<AtomicU64>,
    resident: Vec<u64>,
    /// Resident host bytes of the mapping (granules of `resident` or `dirty`).
    bytes: u64,
}

// SAFETY: `host` points into the mapping owned by `mem` (`Send`); a pooled
// mapping is used by nobody until one `PhysMem` takes it out of the pool.
unsafe impl Send for Pooled {}

/// Mappings of dropped `PhysMem`s, waiting for the next `new` of the same
/// size (which scrubs them). Bounded: beyond it, mappings are unmapped as usual.
static POOL: Mutex<Vec<Pooled>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 16;
/// Resident host memory the pool may keep in all (a pooled mapping keeps the
/// host pages its earlier lives wrote): beyond it, a dropped mapping is
/// unmapped, so a campaign of many large runs costs what its runs in flight
/// touch, not what sixteen of them once did.
const POOL_BYTES_MAX: u64 = 64 << 20;

type Mapping = (GuestMemoryMmap<()>, NonNull<u8>, Vec<AtomicU64>, Vec<u64>);

fn take_pooled(size: u64) -> Option<Mapping> {
    let mut pool = POOL.lock().ok()?;
    let i = pool.iter().position(|p| p.size == size)?;
    let mut p = pool.swap_remove(i);
    drop(pool);
    scrub(p.host, p.size, &mut p.dirty, &mut p.resident);
    Some((p.mem, p.host, p.dirty, p.resident))
}

/// A fresh anonymous `MAP_NORESERVE` mapping of `size` bytes.
fn map_guest(size: u64) -> Result<Mapping, PhysError> {
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)]).map_err(|e| {
            PhysError::Create {
                size,
                reason: e.to_string(),
            }
        })?;
    let host = mem
        .get_host_address(GuestAddress(0))
        .ok()
        .and_then(NonNull::new)
        .ok_or_else(|| PhysError::Create {
            size,
            reason: "guest memory has no host mapping".into(),
        })?;
    // `host + pa` is only valid if the whole range is one mapping.
    if mem.num_regions() != 1 || mem.get_slice(GuestAddress(0), size as usize).is_err() {
        return Err(PhysError::Create {
            size,
            reason: "guest memory is not one contiguous host mapping".into(),
        });
    }
    let granules = size.div_ceil(1 << DIRTY_SHIFT);
    let words = granules.div_ceil(64) as usize;
    let dirty = (0..words).map(|_| AtomicU64::new(0)).collect();
    Ok((mem, host, dirty, vec![0; words]))
}

impl Drop for PhysMem {
    fn drop(&mut self) {
        // The mapping goes to the pool as it is; the next `PhysMem` that
        // takes it zeroes what was written (`take_pooled`). Scrubbing here
        // would be wasted on a mapping the pool has no room for and on
        // those still pooled when the process exits.
        let bytes = self
            .resident
            .iter()
            .zip(&mut self.dirty)
            .map(|(r, d)| u64::from((r | *d.get_mut()).count_ones()))
            .sum::<u64>()
            << DIRTY_SHIFT;
        let Ok(mut pool) = POOL.lock() else {
            return;
        };
        let pooled: u64 = pool.iter().map(|p| p.bytes).sum();
        if pool.len() < POOL_MAX && pooled + bytes <= POOL_BYTES_MAX {
            pool.push(Pooled {
                mem: std::mem::take(&mut self.mem),
                host: self.host,
                size: self.size,
                dirty: std::mem::take(&mut self.dirty),
                resident: std::mem::take(&mut self.resident),
                bytes,
            });
        }
    }
}

/// Zeroes the 4 KiB granules `dirty` marks in the `size`-byte mapping at
/// `host` and clears the marks: the mapping then reads as fresh. The marks
/// move to `resident` (the host pages stay allocated).
fn scrub(host: NonNull<u8>, size: u64, dirty: &mut [AtomicU64], resident: &mut [u64]) {
    for (w, word) in dirty.iter_mut().enumerate() {
        let mut bits = std::mem::take(word.get_mut());
        resident[w] |= bits;
        while bits != 0 {
            let b = bits.trailing_zeros() as u64;
            bits &= bits - 1;
            // Runs of marked granules are zeroed with one call.
            let mut run = 1;
            while b + run < 64 && bits & (1 << (b + run)) != 0 {
                bits &= !(1 << (b + run));
                run += 1;
            }
            let off = ((w as u64 * 64 + b) << DIRTY_SHIFT).min(size);
            let len = (run << DIRTY_SHIFT).min(size - off);
            // SAFETY: `off + len <= size` and the mapping at `host` is `size`
            // bytes; the caller owns the mapping exclusively (it was just
            // taken out of the pool), so no view of it is alive.
            unsafe { std::ptr::write_bytes(host.as_ptr().add(off as usize), 0, len as usize) };
        }
    }
}

impl PhysMem {
    /// Guest memory of `size` bytes for arch `A` (rounded down to whole pages).
    pub fn new<A: Arch>(size: u64) -> Result<Self, PhysError> {
        let size = size & !(A::PAGE_SIZE - 1);
        let (mem, host, dirty, resident) = match take_pooled(size) {
            Some(b) => b,
            None => map_guest(size)?,
        };
        let nr = size >> A::PAGE_SHIFT;
        Ok(Self {
            mem,
            host,
            dirty,
            dirtied: AtomicU64::new(0),
            resident,
            page_shift: A::PAGE_SHIFT,
            big_endian: A::BIG_ENDIAN,
            size,
            nr_frames: nr,
            pages: Vec::new(),
            bump: 0,
            free: vec![Vec::new(); 16],
            allocated: 0,
            scratch: FREE_PAGE,
            generation: AtomicU64::new(0),
            wrap: None,
            streaming: Stream::Off,
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
        self.nr_frames
    }
    /// Frames currently allocated.
    #[must_use]
    pub fn allocated(&self) -> u64 {
        self.allocated
    }
    /// Host memory this guest memory costs, as the emulator accounts it:
    /// the 4 KiB host pages of guest memory written (the rest is never
    /// touched: the mapping is `MAP_NORESERVE` and zeroing untouched bytes
    /// writes nothing), the `struct page` array and the dirty map. What a
    /// run's `--max-host-mem` bound is checked against.
    #[must_use]
    pub fn host_bytes(&self) -> u64 {
        (self.dirtied.load(Ordering::Relaxed) << DIRTY_SHIFT)
            + (self.pages.capacity() * std::mem::size_of::<Page>()) as u64
            + (self.dirty.len() * 8) as u64
    }

    /// Page size in bytes.
    #[must_use]
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }

    /// The table generation: it changes whenever a page table may have
    /// changed — every entry write ([`PhysMem::write_entry`]), every byte
    /// write that touches a frame owned by a page table, every allocation
    /// that zeroes a recycled frame and every free. Two equal readings mean
    /// no table changed in between, so whatever a walk read (entries, the
    /// location of a leaf table, a translation) still holds.
    #[inline]
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    #[inline]
    fn tables_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a write of `len` bytes at `pa` (already checked to lie in
    /// guest memory): the dirty map, and a new table generation if the bytes
    /// land in a page-table frame (`entry` writes always count).
    #[inline]
    fn wrote(&self, pa: u64, len: u64, entry: bool) {
        if len == 0 {
            return;
        }
        if entry {
            self.tables_changed();
        } else {
            self.wrote_tables(pa, len);
        }
        let (first, last) = (pa >> DIRTY_SHIFT, (pa + len - 1) >> DIRTY_SHIFT);
        for g in first..=last {
            let (w, bit) = ((g / 64) as usize, 1u64 << (g % 64));
            if let Some(word) = self.dirty.get(w)
                && word.load(Ordering::Relaxed) & bit == 0
                && word.fetch_or(bit, Ordering::Relaxed) & bit == 0
            {
                self.dirtied.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `wrote` for a range that may lie partly outside guest memory (the
    /// write itself then fails; marking the part inside is harmless).
    #[inline]
    fn wrote_clamped(&self, pa: u64, len: u64) {
        let end = pa.saturating_add(len).min(self.size);
        if pa < end {
            self.wrote(pa, end - pa, false);
        }
    }

    /// The entry word at `pa`, if `len` bytes from `pa` lie in guest memory
    /// and `pa` is 8-byte aligned.
    #[inline]
    fn word(&self, pa: PhysAddr, len: u64) -> Option<NonNull<AtomicU64>> {
        let end = pa.0.checked_add(len)?;
        if end > self.size || !pa.0.is_multiple_of(8) {
            return None;
        }
        // SAFETY: `pa < size`, and the mapping behind `host` is `size` bytes
        // (checked in `new`), so the offset stays inside it.
        let p = unsafe { self.host.as_ptr().add(pa.0 as usize) };
        NonNull::new(p.cast::<AtomicU64>())
    }

    /// A view of the table of `entries` words at `pa`.
    #[inline]
    pub fn table(&self, pa: PhysAddr, entries: usize) -> Result<Table<'_>, PhysError> {
        let ptr = self
            .word(pa, entries as u64 * 8)
            .ok_or(PhysError::OutOfRange(pa))?;
        Ok(Table {
            ptr,
            big_endian: self.big_endian,
            base: pa,
            entries,
            _mem: PhantomData,
        })
    }

    /// The table of `entries` words at `pa`, checked once, for
    /// [`PhysMem::entry`].
    #[inline]
    pub fn table_ref(&self, pa: PhysAddr, entries: usize) -> Result<TableRef, PhysError> {
        self.word(pa, entries as u64 * 8)
            .ok_or(PhysError::OutOfRange(pa))?;
        Ok(TableRef {
            off: pa.0 as usize,
            entries,
        })
    }

    /// Raw entry `i` of `t` in host order; `None` past the end of the table.
    #[inline]
    #[must_use]
    pub fn entry(&self, t: TableRef, i: usize) -> Option<u64> {
        if i >= t.entries {
            return None;
        }
        let off = t.off + i * 8;
        if off as u64 + 8 > self.size {
            return None;
        }
        // SAFETY: `off + 8 <= size` (checked just above, whatever memory
        // made `t`), the mapping behind `host` is `size` bytes, and `off`
        // is 8-byte aligned (`table_ref` checked the base, entries are 8
        // bytes). Entry words are accessed atomically.
        let v =
            unsafe { (*self.host.as_ptr().add(off).cast::<AtomicU64>()).load(Ordering::Acquire) };
        Some(if self.big_endian {
            u64::from_be(v)
        } else {
            u64::from_le(v)
        })
    }

    /// [`PhysMem::entry`] in the byte order of `A` known at compile time
    /// (the byte order this memory was made with, [`PhysMem::new`]).
    #[inline(always)]
    #[must_use]
    pub fn entry_of<A: Arch>(&self, t: TableRef, i: usize) -> Option<u64> {
        if i >= t.entries {
            return None;
        }
        self.entry_again::<A>(t, i)
    }

    /// Entry `i` of `t` read again, in `A`'s byte order, after
    /// [`PhysMem::entry_of`] returned it (gup-fast's re-check of the entry
    /// after taking a reference: `i` is known to be inside the table, so
    /// only the memory bound is checked); `None` outside memory.
    #[inline(always)]
    #[must_use]
    pub fn entry_again<A: Arch>(&self, t: TableRef, i: usize) -> Option<u64> {
        debug_assert_eq!(self.big_endian, A::BIG_ENDIAN);
        let off = t.off + i * 8;
        if off as u64 + 8 > self.size {
            return None;
        }
        // SAFETY: as in `entry`: `off + 8 <= size` checked just above, the
        // mapping behind `host` is `size` bytes, `off` is 8-byte aligned.
        let v =
            unsafe { (*self.host.as_ptr().add(off).cast::<AtomicU64>()).load(Ordering::Acquire) };
        Some(if A::BIG_ENDIAN {
            u64::from_be(v)
        } else {
            u64::from_le(v)
        })
    }

    /// Reads the entry word at `pa` (arch byte order).
    #[inline]
    pub fn read_entry(&self, pa: PhysAddr) -> Result<u64, PhysError> {
        let w = self.word(pa, 8).ok_or(PhysError::OutOfRange(pa))?;
        // SAFETY: `word` checked bounds and alignment; the mapping lives as
        // long as `self`; entry words are accessed atomically.
        let v = unsafe { w.as_ref() }.load(Ordering::Acquire);
        Ok(if self.big_endian {
            u64::from_be(v)
        } else {
            u64::from_le(v)
        })
    }

    /// Writes the entry word at `pa` (arch byte order), atomically.
    #[inline]
    pub fn write_entry(&self, pa: PhysAddr, raw: u64) -> Result<(), PhysError> {
        let v = if self.big_endian {
            raw.to_be()
        } else {
            raw.to_le()
        };
        let w = self.word(pa, 8).ok_or(PhysError::OutOfRange(pa))?;
        self.wrote(pa.0, 8, true);
        // SAFETY: as in `read_entry`.
        unsafe { w.as_ref() }.store(v, Ordering::Release);
        Ok(())
    }

    /// The host address of `len` bytes at `pa`, if they lie in guest memory.
    #[inline]
    fn bytes(&self, pa: PhysAddr, len: usize) -> Option<*mut u8> {
        let end = pa.0.checked_add(len as u64)?;
        if end > self.size {
            return None;
        }
        // SAFETY: `pa + len <= size` and the mapping behind `host` is `size`
        // bytes, so the offset stays inside it.
        Some(unsafe { self.host.as_ptr().add(pa.0 as usize) })
    }

    /// Copies `buf.len()` bytes out of guest memory at `pa`. A granule
    /// never written since the mapping was last all zero reads as zeroes
    /// without being touched: reading fresh anonymous memory would map the
    /// host's zero page, and the first write after it would then need a
    /// copy-on-write fault with a TLB shootdown to every CPU the process
    /// runs on (on a virtual machine an interprocessor interrupt each).
    #[inline]
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), PhysError> {
        if let Some(src) = self.bytes(pa, buf.len()) {
            let mut off = 0;
            while off < buf.len() {
                let at = pa.0 + off as u64;
                let (n, dirty) = self.same_state_run(at, buf.len() - off);
                let out = &mut buf[off..off + n];
                if dirty {
                    // SAFETY: `src..src+len` is inside the mapping (checked
                    // by `bytes`), which lives as long as `self`, and
                    // `off + n <= len`; `out` is a distinct host buffer.
                    // Plain byte copies of guest memory are what
                    // vm-memory's `read_slice` does too.
                    unsafe { std::ptr::copy_nonoverlapping(src.add(off), out.as_mut_ptr(), n) };
                } else {
                    out.fill(0);
                }
                off += n;
            }
            return Ok(());
        }
        // Out of range: vm-memory's partial-copy behaviour and error.
        self.mem
            .read_slice(buf, GuestAddress(pa.0))
            .map_err(|_| PhysError::OutOfRange(pa))
    }

    /// Copies `buf` into guest memory at `pa`.
    #[inline]
    pub fn write(&self, pa: PhysAddr, buf: &[u8]) -> Result<(), PhysError> {
        self.wrote_clamped(pa.0, buf.len() as u64);
        if let Some(dst) = self.bytes(pa, buf.len()) {
            match self.streaming {
                // SAFETY: as below; `stream_copy` writes exactly `len` bytes
                // at `dst` and reads `len` bytes of `buf`.
                Stream::Sse2 => unsafe { stream_copy(dst, buf.as_ptr(), buf.len()) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as for `Sse2`; `Avx2` is chosen only where the CPU
                // has AVX2 (`Stream::widest`).
                Stream::Avx2 => unsafe { stream_copy_avx2(dst, buf.as_ptr(), buf.len()) },
                // SAFETY: as in `read`, the other way round (vm-memory's
                // `write_slice` writes guest memory through `&self` the same
                // way).
                _ => unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, buf.len()) },
            }
            return Ok(());
        }
        self.mem
            .write_slice(buf, GuestAddress(pa.0))
            .map_err(|_| PhysError::OutOfRange(pa))
    }

    /// Makes [`PhysMem::write`] copy with non-temporal (streaming) stores,
    /// or stops it (`false`, which also fences the stores made). For one
    /// copy much larger than the host's caches (a `copy_to_iter` of
    /// megabytes), as glibc's `memcpy` switches to streaming stores past its
    /// non-temporal threshold: the emulator copies such a buffer a page at a
    /// time, so no single `memcpy` sees its size. Only the host's cache
    /// traffic changes; the bytes written are the same.
    pub fn set_streaming(&mut self, on: bool) {
        self.set_stream(if on { Stream::widest() } else { Stream::Off });
    }

    fn set_stream(&mut self, to: Stream) {
        if self.streaming != Stream::Off && to == Stream::Off {
            store_fence();
        }
        self.streaming = to;
    }

    /// Copies `len` bytes between two guest ranges (bulk, no byte loop).
    pub fn copy(&self, from: PhysAddr, to: PhysAddr, len: usize) -> Result<(), PhysError> {
        if self.bytes(to, len).is_some() && !self.may_be_written(from, len as u64) {
            // The source reads as zero without being touched (see `read`),
            // so the destination ends all zero, overlapping or not.
            return self.zero(to, len);
        }
        self.wrote_clamped(to.0, len as u64);
        if let (Some(src), Some(dst)) = (self.bytes(from, len), self.bytes(to, len)) {
            // SAFETY: both ranges are inside the mapping (checked by
            // `bytes`); `copy` allows them to overlap.
            unsafe { std::ptr::copy(src, dst, len) };
            return Ok(());
        }
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

    /// Fills `len` bytes at `pa` with zeroes. A 4 KiB granule the dirty map
    /// says was never written since the mapping was last all zero holds
    /// zeroes already and is left alone (only a page-table frame still
    /// bumps the generation, as a write would): zeroing untouched memory —
    /// `clear_user` over a huge fresh mapping, a `touch` — costs no host
    /// page, so host memory follows the bytes really written.
    pub fn zero(&self, pa: PhysAddr, len: usize) -> Result<(), PhysError> {
        let mut off = 0;
        while off < len {
            let at = pa.0 + off as u64;
            let granule_end = ((at >> DIRTY_SHIFT) + 1) << DIRTY_SHIFT;
            let n = ((granule_end - at) as usize).min(len - off);
            if at + n as u64 <= self.size && !self.is_dirty(at) {
                self.wrote_tables(at, n as u64);
            } else {
                self.write(PhysAddr(at), &ZEROES[..n])?;
            }
            off += n;
        }
        Ok(())
    }

    /// Whether any byte of `len` bytes at `pa` may have been written since
    /// the mapping was last all zero (`false`: all of them read as zero).
    /// A range reaching outside guest memory counts as written.
    #[must_use]
    pub fn may_be_written(&self, pa: PhysAddr, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        match pa.0.checked_add(len) {
            Some(end) if end <= self.size => {
                let (first, last) = (pa.0 >> DIRTY_SHIFT, (end - 1) >> DIRTY_SHIFT);
                (first..=last).any(|g| self.is_dirty(g << DIRTY_SHIFT))
            }
            _ => true,
        }
    }

    /// The bytes from `pa` (inside guest memory), at most `len`, whose
    /// granules are all written since the mapping was last all zero or all
    /// not, and which of the two: the next run [`PhysMem::read`] copies or
    /// fills with zeroes.
    #[inline]
    fn same_state_run(&self, pa: u64, len: usize) -> (usize, bool) {
        let end = pa + len as u64;
        let dirty = self.is_dirty(pa);
        let mut at = ((pa >> DIRTY_SHIFT) + 1) << DIRTY_SHIFT;
        while at < end && self.is_dirty(at) == dirty {
            at += 1 << DIRTY_SHIFT;
        }
        ((at.min(end) - pa) as usize, dirty)
    }

    /// Whether the granule of `pa` (inside guest memory) was written since
    /// the mapping was last all zero.
    #[inline]
    fn is_dirty(&self, pa: u64) -> bool {
        let g = pa >> DIRTY_SHIFT;
        self.dirty
            .get((g / 64) as usize)
            .is_none_or(|w| w.load(Ordering::Relaxed) & (1 << (g % 64)) != 0)
    }

    /// The generation part of [`PhysMem::wrote`] alone: a table may have
    /// changed if the range lies in a page-table frame.
    #[inline]
    fn wrote_tables(&self, pa: u64, len: u64) {
        if len > 0
            && (pa >> self.page_shift..=(pa + len - 1) >> self.page_shift).any(|f| {
                matches!(
                    self.pages.get(f as usize).map(|p| p.owner),
                    Some(Owner::PageTable { .. })
                )
            })
        {
            self.tables_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use vmemu_arch::{Pfn, Ppc64, X86_64};

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

    /// A recycled 64 KiB frame (ppc64) reads as zero again, and zeroing it
    /// writes only the 4 KiB granule its last owner wrote: the other 15
    /// cost no host memory.
    #[test]
    fn recycled_frames_zero_only_the_granules_written() {
        let mut m = PhysMem::new::<Ppc64>(1 << 24).unwrap();
        let a = m.alloc(0, Owner::Zero).unwrap();
        m.write(a.addr(16).add(60 << 10), &[0xaa; 8]).unwrap();
        let before = m.host_bytes();
        m.put_page(a, 1).unwrap();
        let b = m.alloc(0, Owner::Zero).unwrap();
        assert_eq!(a, b, "recycled frame");
        assert_eq!(m.host_bytes(), before, "no granule newly written");
        let mut all = vec![1u8; 64 << 10];
        m.read(b.addr(16), &mut all).unwrap();
        assert!(all.iter().all(|&x| x == 0), "the frame reads as zero");
    }

    /// Whether the pool holds a mapping of `size` bytes, and the resident
    /// bytes it holds in all.
    fn pool_state(size: u64) -> (bool, u64) {
        let pool = POOL.lock().unwrap();
        (
            pool.iter().any(|p| p.size == size),
            pool.iter().map(|p| p.bytes).sum(),
        )
    }

    #[test]
    fn the_pool_scrubs_and_unmaps_mappings_beyond_its_bytes() {
        // Sizes no other test uses, so the pool's entries of these sizes are ours.
        let (small, large) = ((3 << 20) + (5 << 12), (97 << 20) + (3 << 12));
        let m = PhysMem::new::<X86_64>(small).unwrap();
        m.write(PhysAddr(0x2000), &[1; 100]).unwrap();
        drop(m);
        // Pooled unless other tests filled the pool's sixteen places; either
        // way the pool stays within its bytes.
        assert!(pool_state(small).1 <= POOL_BYTES_MAX);
        // Reused (or fresh): the byte written reads as zero again.
        let m = PhysMem::new::<X86_64>(small).unwrap();
        let mut b = [9u8; 1];
        m.read(PhysAddr(0x2000), &mut b).unwrap();
        assert_eq!(b, [0]);
        drop(m);
        // One byte in each of 65 MiB worth of granules: more resident host
        // memory than the pool may keep, so the mapping is unmapped.
        let m = PhysMem::new::<X86_64>(large).unwrap();
        for g in 0..(65u64 << 20) / WRITE_GRANULE {
            m.write(PhysAddr(g * WRITE_GRANULE), &[1]).unwrap();
        }
        drop(m);
        let (held, bytes) = pool_state(large);
        assert!(!held, "a mapping with 65 MiB resident is not pooled");
        assert!(bytes <= POOL_BYTES_MAX, "pool holds {bytes} bytes");
    }

    #[test]
    fn streaming_writes_store_the_same_bytes() {
        let mut m = PhysMem::new::<X86_64>(1 << 20).unwrap();
        let src: Vec<u8> = (0..9000u32).map(|i| (i * 7 % 251) as u8 + 1).collect();
        // Both store widths where the host has AVX2 (only SSE2's otherwise).
        let mut kinds = vec![Stream::Sse2, Stream::widest()];
        kinds.dedup();
        for (w, &kind) in kinds.iter().enumerate() {
            // Every head alignment (0..32), and lengths below, at and above
            // a 64- and a 128-byte block, so the plain head, the streamed
            // body and the plain tail each get exercised, alone and together.
            for (k, len) in [
                0usize, 1, 15, 16, 31, 32, 63, 64, 65, 127, 128, 129, 200, 4096, 8999,
            ]
            .into_iter()
            .enumerate()
            {
                for head in 0..32u64 {
                    let pa = PhysAddr(0x1_0000 * (k as u64 + 1) + 0x4000 * w as u64 + head);
                    m.set_stream(kind);
                    m.write(pa, &src[..len]).unwrap();
                    m.set_stream(Stream::Off);
                    let mut back = vec![0xeeu8; len + 2];
                    m.read(PhysAddr(pa.0 - 1), &mut back).unwrap();
                    let at = format!("{kind:?} len {len} head {head}");
                    assert_eq!(&back[1..=len], &src[..len], "{at}");
                    // The write before this one (one byte lower) left src[0] there.
                    let before = if head == 0 || len == 0 { 0 } else { src[0] };
                    assert_eq!(back[0], before, "byte before, {at}");
                    assert_eq!(back[len + 1], 0, "byte after, {at}");
                }
            }
        }
        // Past the end of memory: the same error as a plain write.
        m.set_streaming(true);
        assert!(m.write(PhysAddr((1 << 20) - 8), &src[..64]).is_err());
        m.set_streaming(false);
    }

    /// Reads and copies of granules never written since the mapping was
    /// last all zero give zeroes without touching them; the bytes seen are
    /// those of a plain byte array given the same writes and copies, across
    /// granule edges, in a fresh mapping and in one taken again from the pool.
    #[test]
    fn unwritten_granules_read_as_zero_like_a_byte_array() {
        const SIZE: u64 = 1 << 20;
        for life in 0..2 {
            let m = PhysMem::new::<X86_64>(SIZE).unwrap();
            let mut model = vec![0u8; SIZE as usize];
            let mut rng = ChaCha8Rng::seed_from_u64(0x5eed + life);
            let mut next = |n: u64| rng.random_range(0..n);
            for step in 0..400u64 {
                let at = next(SIZE - 3 * WRITE_GRANULE);
                let len = next(3 * WRITE_GRANULE) as usize;
                match next(3) {
                    0 => {
                        let bytes: Vec<u8> =
                            (0..len).map(|i| (i as u64 + step) as u8 | 1).collect();
                        m.write(PhysAddr(at), &bytes).unwrap();
                        model[at as usize..at as usize + len].copy_from_slice(&bytes);
                    }
                    1 => {
                        let to = next(SIZE - 3 * WRITE_GRANULE);
                        m.copy(PhysAddr(at), PhysAddr(to), len).unwrap();
                        model.copy_within(at as usize..at as usize + len, to as usize);
                    }
                    _ => {
                        let mut back = vec![0xeeu8; len];
                        m.read(PhysAddr(at), &mut back).unwrap();
                        assert_eq!(
                            back,
                            model[at as usize..at as usize + len],
                            "life {life} step {step}"
                        );
                    }
                }
            }
            let mut all = vec![0xeeu8; SIZE as usize];
            m.read(PhysAddr(0), &mut all).unwrap();
            assert!(all == model, "life {life}: the whole memory");
            // Dropped here: the next life takes the mapping from the pool.
        }
    }

    #[test]
    fn put_page_underflow_is_an_error() {
        let mut m = PhysMem::new::<X86_64>(1 << 24).unwrap();
        let a = m.alloc(0, Owner::Zero).unwrap();
        m.get_page(a, 1);
        m.put_page(a, 2).unwrap();
        assert_eq!(m.put_page(a, 1), Err(Errno::EINVAL));
    }

    /// A 4-bit counter: 16 gets bring it back to where it was, a get on a
    /// wrapped 0 is refused only by the speculative path, the signed read
    /// turns negative at 8, and the put that reaches 0 frees the frame with
    /// the true count still out, as stale references the next owner of the
    /// frame is not charged with.
    #[test]
    fn narrow_refcount_wraps_and_frees_under_its_holders() {
        let mut m = PhysMem::new::<X86_64>(1 << 24).unwrap();
        m.set_refcount_bits(4);
        let a = m.alloc(0, Owner::Zero).unwrap();
        m.get_page(a, 7);
        assert_eq!(m.page_ref_count(a), -8, "8 reads as -8 in 4 bits");
        m.get_page(a, 8);
        assert_eq!(m.page(a).refcount, 0, "16 references wrap to 0");
        assert!(!m.try_get_page(a, 1), "a speculative get sees 0");
        m.get_page(a, 1);
        assert_eq!(m.page_ref_count(a), 1);
        assert!(m.take_freed_referenced().is_empty());
        m.put_page(a, 1).unwrap();
        assert!(m.page(a).flags.contains(PageFlags::FREE));
        let freed = m.take_freed_referenced();
        assert_eq!(freed.len(), 1);
        assert_eq!((freed[0].0, freed[0].2), (a, 16));
        assert_eq!(m.stale_refs(a), 16);
        // The frame's next owner keeps its own count; stale puts drain the rest.
        let b = m.alloc(0, Owner::Reserved).unwrap();
        assert_eq!(a, b);
        assert!(m.stale_put(b));
        assert_eq!(m.stale_refs(b), 15);
        assert_eq!(m.page(b).refcount, 1);
        // A put of more than was ever taken is still an underflow.
        assert_eq!(m.put_page(b, 2), Err(Errno::EINVAL));
    }

    #[test]
    fn the_32_bit_counter_never_wraps() {
        let mut m = PhysMem::new::<X86_64>(1 << 24).unwrap();
        m.set_refcount_bits(32);
        let a = m.alloc(0, Owner::Zero).unwrap();
        m.get_page(a, u32::MAX);
        assert_eq!(m.page(a).refcount, u32::MAX, "saturates");
        assert_eq!(m.stale_frames(), Vec::new());
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
