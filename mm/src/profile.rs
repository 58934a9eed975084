//! Kernel profiles: a base version plus patch overlays, resolved into named knobs.
//!
//! Code asks knobs, never version numbers. Each knob documents the kernel
//! commit or patch it stands for ([`KernelProfile::knob_table`] prints them).
//! Names are written `v4.10`, `v4.10+capper`, `v4.10+layton`, `v4.17`, `v6.13`,
//! `v6.18`. docs/extending.md says how to add a knob, a base or an overlay.

use std::fmt;
use std::str::FromStr;

use vmemu_arch::{ArchId, Family, KernelConfig};

use crate::errno::Errno;
use crate::violation::BugClass;

/// How gup-fast checks the range before walking.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GupFastRange {
    /// v4.10: generic RCU GUP and x86 `__get_user_pages_fast` use `access_ok`
    /// against the current `addr_limit`; x86 `get_user_pages_fast` checks
    /// `end < start` and `end >> __VIRTUAL_MASK_SHIFT` instead (7f8189068726).
    AccessOk,
    /// v4.17 (read in a 4.17 tree): `access_ok` (failure: 0 from
    /// `__get_user_pages_fast`, `-EFAULT` from `get_user_pages_fast`, which
    /// also returns 0 for `nr_pages <= 0` first), then the walk only if
    /// `gup_fast_permitted()` (generic: no wrap; x86: also
    /// `end >> __VIRTUAL_MASK_SHIFT == 0`) (Shutemov, 5b65c4677a57).
    AccessOkThenPermitted,
    /// The fix asked for in the 2017 thread (Torvalds' rule, Capper's offered
    /// arm64 patch): no wraparound and `end <= TASK_SIZE`, instead of
    /// `access_ok`, in both entry points. Never merged in this form.
    Capper,
    /// v6.13 `gup_fast_fallback()`: overflow → `-EOVERFLOW` (9883c7f84053),
    /// `end > TASK_SIZE_MAX` → `-EFAULT` (v6.4), `access_ok` → `-EFAULT`.
    TaskSizeMax,
}

/// The per-leaf permission test of gup-fast on arches using the generic walker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GupFastLeaf {
    /// v4.10 generic RCU GUP: present, not special, not protnone (NUMA
    /// balancing only), writable if writing. **No user-bit check.**
    GenericNoUser,
    /// v4.13+: `pte_access_permitted(pte, write)` (x86 PRESENT+USER[+RW];
    /// arm64 VALID+USER[+WRITE], 6218f96c58db; ppc64 present+user+READ[+WRITE]).
    AccessPermitted,
}

/// How `iov_iter_get_pages_alloc` gathers pages (used by `vmemu-iter`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GetPagesAlloc {
    /// v4.10: the first non-empty segment only.
    FirstSegment,
    /// Jeff Layton's Feb 2017 patch as posted (`iov_iter_pvec_size`).
    LaytonPosted,
    /// The rule Layton's commit message states (stop at the first segment that
    /// breaks page contiguity; subtract the first offset once).
    LaytonIntended,
}

/// How `pipe_advance` releases the pipe buffers past the iterator's new
/// position (CVE-2017-5550).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PipeAdvanceRelease {
    /// v4.9 (241699cd72a8): release from the slot after the new position up
    /// to the first free slot, `curbuf + nrbufs`; on a full ring that slot
    /// is `curbuf` itself, so an advance by 0 from `curbuf` releases nothing.
    FencepostV4_9,
    /// b9dc6f65bc5e (v4.10): `pipe_truncate` counts the buffers to keep from
    /// `curbuf` and releases while `nrbufs` exceeds that count.
    TruncateV4_10,
}

/// How `do_wp_page` decides that a write fault on a read-only anonymous
/// page may reuse it in place instead of copying it (GUP pins vs fork/COW,
/// CVE-2020-29374).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WpReuseRule {
    /// v4.x .. 5.8: `reuse_swap_page()`: the page is mapped once
    /// (`page_trans_huge_mapcount <= 1`); extra references (gup, a pipe
    /// buffer) do not matter.
    Mapcount,
    /// 09854ba94c6a "mm: do_wp_page() simplification" (5.9): reuse only if
    /// `page_count == 1` (and mapped once): any extra reference, a pin
    /// included, forces a copy.
    Refcount,
    /// 6c287605fd56 (5.19): a page marked `PageAnonExclusive` is reused
    /// whatever its references; otherwise as `Refcount`, and the reused page
    /// becomes exclusive.
    AnonExclusive,
}

/// When `touch_pmd` (`follow_trans_huge_pmd` under FOLL_TOUCH) marks the
/// PMD dirty (Huge Dirty COW, CVE-2017-1000405).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ThpTouchDirty {
    /// v4.10 .. 4.14.x: young and dirty on every touch, a read included.
    Always,
    /// a8f97366452e (v4.15-rc; in 4.14.5, 4.17, 6.13): dirty only with
    /// FOLL_WRITE.
    OnWrite,
}

/// The knobs of one profile.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Knobs {
    /// Layout constants, PTE bit positions and `access_ok` form.
    pub family: Family,
    /// `set_fs()`/`addr_limit` exist (removed: x86 5.10, 47058bb54b57; arm64 5.11).
    pub set_fs: bool,
    /// x86 uses its private `arch/x86/mm/gup.c` (until Shutemov's move to the
    /// generic walker in v4.13, e585513b76f7).
    pub x86_private_gup: bool,
    /// Range check of gup-fast.
    pub gup_fast_range: GupFastRange,
    /// Leaf test of the generic gup-fast walker.
    pub gup_fast_leaf: GupFastLeaf,
    /// `CONFIG_NUMA_BALANCING`: `pte_protnone()` is meaningful (else constant 0).
    pub numa_balancing: bool,
    /// FOLL_PIN / `pin_user_pages*` exist, with `GUP_PIN_COUNTING_BIAS` (5.7+).
    pub foll_pin: bool,
    /// `get_user_pages_fast_only` may return a negative errno (6.13).
    pub gup_fast_only_errno: bool,
    /// gup's VMA lookup grows a VM_GROWSDOWN stack (`find_extend_vma`); 6.x
    /// `gup_vma_lookup` never does (8d7071af8907).
    pub gup_extends_stack: bool,
    /// The errno of gup's fatal-signal check (v4.10 `-ERESTARTSYS`, 6.x `-EINTR`).
    pub gup_fatal_signal: Errno,
    /// The locked gup loop may retry after `VM_FAULT_RETRY` more than once (6.x).
    pub gup_repeat_retry: bool,
    /// `iov_iter_get_pages_alloc` page gathering.
    pub get_pages_alloc: GetPagesAlloc,
    /// ITER_PIPE exists (v4.9 .. v6.4).
    pub pipe_iter: bool,
    /// ITER_UBUF exists (v6.0+).
    pub ubuf_iter: bool,
    /// `iov_iter_revert` exists (v4.11+).
    pub iov_iter_revert: bool,
    /// The advancing `iov_iter_get_pages2`/`_alloc2` (6.0) and
    /// `iov_iter_extract_pages` (6.3) replace the non-advancing
    /// `iov_iter_get_pages`/`_alloc`.
    pub get_pages2: bool,
    /// 6.x `iov_iter_advance` on IOVEC/KVEC/BVEC steps over every segment
    /// it has consumed and every empty one after it (`iov_iter_iovec_advance`,
    /// `iov_iter_bvec_advance`); v4.x steps over at most the one it ended in.
    /// 6.x `import_iovec` of one segment also builds an ITER_UBUF.
    pub iter_modern_advance: bool,
    /// A zero-length bvec stops the bvec walker from making progress
    /// (1bdc76aea115, v4.10; fixed by 7e24969022cb in 5.9, CVE-2020-25641).
    pub bvec_zero_len_livelock: bool,
    /// A FOLL_FORCE write that broke COW on a read-only private mapping
    /// marks the walk with FOLL_COW and `follow_page_pte` accepts the
    /// read-only pte only if it is dirty (19be0eaffa3a, v4.9-rc; the Dirty
    /// COW fix, CVE-2016-5195). Without it `faultin_page` drops FOLL_WRITE.
    pub foll_cow: bool,
    /// Mergeability of a pipe buffer is the bit `PIPE_BUF_FLAG_CAN_MERGE` in
    /// its `flags` (f6dd975583bd, 5.8); before, `pipe_write` asked the
    /// buffer's ops (`ops->can_merge`, later "ops is the anon ops").
    pub pipe_can_merge_flag: bool,
    /// `push_pipe`/`copy_page_to_iter_pipe` zero the new buffer's `flags`
    /// (9d2231c5d74e, 5.17 and 5.16.11/5.15.25/5.10.102; the Dirty Pipe fix,
    /// CVE-2022-0847). Without it a new buffer keeps its slot's old flags.
    pub pipe_iter_inits_flags: bool,
    // pipe_advance fencepost (CVE-2017-5550):
    /// How `pipe_advance` releases the buffers after the new position.
    pub pipe_advance_release: PipeAdvanceRelease,
    // Page refcount overflow, CVE-2019-11487 (known-bugs.md §4).
    /// Width W of `struct page`'s `_refcount`: stored modulo 2^W, read as a
    /// signed W-bit value. 32 is the kernel's `atomic_t`; a smaller W is a
    /// stand-in that lets a workload wrap the counter with a few thousand
    /// references instead of 2^32 (overlay `+small-refcount`).
    pub refcount_bits: u8,
    /// User-driven reference gets refuse a page whose count is close to
    /// overflow (the 5.1 `page-refs` series: f958d7b528b1, 88b1a17dfc3e
    /// `try_get_page`, 8fde12ca79af gup, 15fab63e1e57 `pipe_buf_get`):
    /// slow gup and the gate page refuse a signed count <= 0 (-ENOMEM),
    /// gup-fast's speculative get refuses a count < 0, `pipe_buf_get`
    /// fails (tee stops). 6.13's `try_grab_folio` keeps the rule.
    pub ref_get_checked: bool,
    // GUP pins vs fork/COW (CVE-2020-29374), spec known-bugs.md §8.
    /// Write-fault reuse rule of `do_wp_page` for anonymous pages.
    pub wp_reuse_rule: WpReuseRule,
    /// `fork()` gives the child a fresh copy of an anonymous page that may be
    /// pinned (`page_maybe_dma_pinned`: pincount on a large page, refcount >=
    /// `GUP_PIN_COUNTING_BIAS` on a small one) when the parent mm has pinned
    /// (`has_pinned` / `MMF_HAS_PINNED`); the parent keeps its mapping
    /// writable. 70e806e4e645 (5.9); in 5.19+ the same test sits in
    /// `page_try_dup_anon_rmap` and applies to `PageAnonExclusive` pages.
    pub fork_copy_maybe_pinned: bool,
    /// A read-only FOLL_PIN of an anonymous page that is not
    /// `PageAnonExclusive` first unshares it (`gup_must_unshare`,
    /// FAULT_FLAG_UNSHARE), in the slow path and in gup-fast (which stops
    /// and leaves the page to the slow path). 5.19 (Hildenbrand's series
    /// with 6c287605fd56).
    pub ro_pin_unshare: bool,
    /// `gup_must_unshare(vma, flags, page)` also unshares a page that is
    /// not anonymous (the shared zero page, a page-cache page) for a
    /// read-only FOLL_LONGTERM pin in a COW mapping, so that the pin sees
    /// later writes of the process (84209e87c696 "mm/gup: reliable R/O
    /// long-term pinning in COW mappings", 6.2; 6.13 mm/internal.h). 6.1
    /// still returns false for `!PageAnon`. gup-fast, without a VMA,
    /// leaves every such page to the slow path.
    pub longterm_unshare_non_anon: bool,
    /// A FOLL_PIN | FOLL_LONGTERM write gup on a file mapping that needs
    /// dirty tracking (shared and writable, with `->page_mkwrite` or a
    /// mapping that writes back: any file but shmem) is refused with
    /// `-EFAULT` (`writable_file_mapping_allowed` in `check_vma_flags`,
    /// 05e6f3ae3a4b, 6.5), and gup-fast leaves file folios other than
    /// shmem to the slow path for such a pin (`gup_fast_folio_allowed`,
    /// same series).
    pub longterm_write_needs_no_writeback: bool,
    /// FOLL_LONGTERM is accepted only together with FOLL_PIN: the
    /// `get_user_pages*` entry points return `-EINVAL` for it (6.1
    /// `is_valid_gup_flags`, 6.13 `is_valid_gup_args`, "LONGTERM can only
    /// be specified when pinning"). v4.x has no FOLL_PIN; the emulator's
    /// FOLL_LONGTERM there stands for 4.15's `get_user_pages_longterm`.
    pub longterm_needs_pin: bool,
    /// gup strips the tag of a user address (`untagged_addr`, arm64 TBI;
    /// [`vmemu_arch::Arch::untagged_addr`]) before looking it up: the
    /// start address of `__get_user_pages` (`untagged_addr_remote`) and
    /// of gup-fast (`gup_fast_fallback`), so `process_vm_readv` with a
    /// tagged remote iovec, `/proc/pid/mem` and direct I/O on a tagged
    /// buffer work. "mm: untag user pointers in mm/gup.c" (Andrey
    /// Konovalov, 5.4, the arm64 tagged address ABI series); 6.13
    /// mm/gup.c `__get_user_pages`, `gup_fast_fallback`. `access_ok`
    /// untags only for a task that enabled the ABI (`TIF_TAGGED_ADDR`,
    /// `prctl(PR_SET_TAGGED_ADDR_CTRL)`), which no emulated task does.
    pub untag_user_addr: bool,
    /// 17839856fd58 (5.8 only; removed by a308c71bf1e6 in 5.9): slow gup
    /// with FOLL_GET or FOLL_PIN on a COW mapping forces FOLL_WRITE
    /// (`should_force_cow_break`), gup-fast walks as a write, and
    /// `can_follow_write_pte` accepts a read-only pte with FOLL_COW and dirty
    /// without asking for FOLL_FORCE.
    pub force_cow_on_read_pin: bool,
    // Huge Dirty COW (CVE-2017-1000405), spec known-bugs.md §2.5.
    /// `touch_pmd` sets dirty on every FOLL_TOUCH walk of a huge PMD, or
    /// only with FOLL_WRITE (a8f97366452e).
    pub thp_touch_dirty: ThpTouchDirty,
    // The consumers of the pages (`vmemu_iter::callers`).
    /// ceph O_DIRECT (`ceph_direct_read_write`) fills each OSD request with
    /// `iter_get_bvecs_alloc`: 64-page `iov_iter_get_pages` batches into a
    /// bvec array, advancing the iterator ("ceph: fix iov_iter issues in
    /// ceph_direct_read_write()", Ilya Dryomov, v4.17). Without it, v4.10's
    /// `dio_get_pagev_size` + `dio_get_pages_alloc` (or, with `+layton`,
    /// Layton's 2/2, by [`Knobs::get_pages_alloc`]).
    pub ceph_dio_bvecs: bool,
    /// The cap on one ceph O_DIRECT OSD request, the default `wsize`
    /// (`CEPH_MAX_WRITE_SIZE` = `CEPH_MSG_MAX_DATA_LEN`): 16 MiB in 4.17,
    /// 32 MiB from 94e6992bb560 "libceph: bump CEPH_MSG_MAX_DATA_LEN"
    /// (v4.20), 64 MiB from "libceph: bump CEPH_MSG_MAX_DATA_LEN (again)"
    /// (v5.3). `None`: v4.10 sizes the request before any cap ("ceph: fix
    /// rsize/wsize capping in ceph_direct_read_write()" came later).
    pub ceph_max_write_size: Option<u64>,
    /// `bio_iov_iter_get_pages` loops until the bio is full or the iterator
    /// is empty (17d51b10d777 "block: bio_iov_iter_get_pages: pin more
    /// pages for multi-segment IOs", v4.19); before, one gathering call per
    /// bio. The modelled loop is 6.x's (`iov_iter_extract_pages`, merging of
    /// physically contiguous pages).
    pub bio_iov_iter_loop: bool,
    // 6.13 .. 6.18 (docs/extending.md carries this base through as its
    // worked example).
    /// Block-device `O_DIRECT` checks only `(pos | count)` against the
    /// logical block size up front (`blkdev_dio_invalid`); the vectors are
    /// checked while the bio is built and split: `bio_iov_iter_get_pages`
    /// no longer trims each batch but aligns the whole bio down to the
    /// block size (none left: `-EFAULT`), and a bio that may need splitting
    /// (more than one bvec, or one crossing a page) fails with `-EINVAL` if
    /// a bvec's offset or length is not a multiple of the DMA alignment
    /// (`bio_split_rw_at`). Keith Busch's series applied for 6.18:
    /// fec2e705729d, 743bf2e0c49c, 20a0e6276edb, 5ff3f74e145a, 7eac33186957,
    /// 9eab1d4e0d15 (`bdev_iter_is_aligned` removed). Before: every iovec's
    /// address and length checked up front (`-EINVAL` before any page is
    /// touched), each batch trimmed to the block size.
    pub dio_align_in_bio: bool,
    /// `pipe_write` copies into the new page before the buffer enters the
    /// ring; a faulting chunk gives the page back (`anon_pipe_put_page`)
    /// and leaves no empty buffer behind. ee5eda8ea595 "pipe: change
    /// pipe_write() to never add a zero-sized buffer" (v6.15). Before (since
    /// a194dfe6e6f6, 5.5), the slot is taken before the copy and a faulting
    /// first chunk leaves a zero-length buffer in the ring.
    pub pipe_write_no_empty_buf: bool,
    /// `generic_perform_write` tries the atomic copy first and faults the
    /// source in only after a copy of 0 bytes; by then `->write_begin` /
    /// `->write_end` have run, and tmpfs' `shmem_write_end` moves `i_size`
    /// up to `pos` even with nothing copied. 665575cff098 "filemap: move
    /// prefaulting out of hot write path" (v6.15). Before: the source is
    /// faulted in first and a chunk that cannot be faulted at all is
    /// `-EFAULT` before `->write_begin`.
    pub write_prefault_after_copy: bool,
    /// ext4 does direct I/O through `iomap_dio_rw` (ext4_dio_read_iter,
    /// ext4_dio_write_iter): b1b4705d54ab "ext4: introduce direct I/O read
    /// using iomap infrastructure" and 378f32bab371 "ext4: introduce direct
    /// I/O write using iomap infrastructure" (v5.5). Before: `ext4_direct_IO`
    /// → `__blockdev_direct_IO` (fs/direct-io.c), whose `dio_complete`
    /// ignores `-EFAULT` once some I/O was done and which stops at the
    /// block holding EOF; `generic_file_read_iter` reads the rest of a
    /// short direct read through the page cache.
    pub ext4_iomap_dio: bool,
    /// `iomap_dio_rw` stops a read once `pos >= i_size` after an extent
    /// (v4.17 fs/iomap.c): nothing past the block holding EOF is zeroed.
    /// Not in v4.10 (the loop runs to the end of the request); gone again
    /// with "iomap: switch iomap_dio_rw to use iomap_iter" (v5.15), where
    /// `__iomap_dio_rw` iterates over the whole request, zero-fills the
    /// holes past EOF (`iomap_dio_hole_iter`) and reverts the iterator to
    /// `i_size` after the loop.
    pub iomap_dio_read_stops_at_eof: bool,
    /// A hole read's `iov_iter_zero` count is used: a short zeroing ends
    /// the extent with what was zeroed, nothing zeroed is `-EFAULT` in 6.x
    /// (`iomap_dio_hole_iter`). cfe057f7db1f "iomap_dio_actor(): fix
    /// iov_iter bugs" (v4.15). Before (v4.10 `iomap_dio_actor`): the count
    /// is ignored, the hole's whole length is added to `dio->size` and
    /// returned, and a zeroing that cannot progress is retried at ever
    /// larger file offsets while the iterator stays put.
    pub iomap_dio_hole_zero_checked: bool,
    /// tmpfs accepts `O_DIRECT` at open (`shmem_file_open` sets
    /// `FMODE_CAN_ODIRECT`) and does the I/O buffered: e88e0d366f9c
    /// "tmpfs: trivial support for direct IO" (v6.6). Before:
    /// `do_dentry_open` refuses it (`-EINVAL`, no `->direct_IO`).
    pub shmem_odirect: bool,
    /// Each extraction of a direct-I/O bio checks the iterator's current
    /// segment (address and remaining length) against the device's DMA
    /// alignment, and a misaligned one fails the whole I/O with `-EINVAL`,
    /// whatever the bio's shape. Keith Busch, "[PATCH v3 5/5] block:
    /// validate user space vectors during extraction" (linux-block, 24 Jun
    /// 2026, Fixes: 5ff3f74e145a 7eac33186957): proposed, not in any
    /// modelled release (overlay `+dio-extract-align`).
    pub dio_extract_align: bool,
    /// Where the arch cuts PTE tables from pages as fragments
    /// (`Arch::TABLE_FRAGMENTS`: book3s64 with 64 KiB pages), radix uses
    /// the hash MMU's 4 KiB fragment for its 256-byte PTE table, 16 per
    /// page: v4.10 `radix__early_init_mmu` sets `__pte_frag_nr` and
    /// `__pte_frag_size_shift` from `H_PTE_FRAG_NR` and
    /// `H_PTE_FRAG_SIZE_SHIFT`. v4.17 has `RADIX_PTE_FRAG_SIZE_SHIFT`
    /// (`radix-64k.h`: the table's own 256 bytes, 256 per page).
    pub radix_pte_frag_hash_size: bool,
    /// PMD tables are page fragments too (`pmd_fragment_alloc`,
    /// `mm->context.pmd_frag`, 6.13 `arch/powerpc/mm/book3s64/pgtable.c`,
    /// `RADIX_PMD_FRAG_SIZE_SHIFT`); v4.x takes them from the
    /// `PGT_CACHE(PMD_CACHE_INDEX)` slab (`book3s/64/pgalloc.h`
    /// `pmd_alloc_one`), a whole frame each here.
    pub pmd_fragments: bool,
    /// A fragment page counts its fragments in `ptdesc->pt_frag_refcount`
    /// and holds one `_refcount` (6.13 `pgtable-frag.c`
    /// `__alloc_for_ptecache`, `pte_fragment_free`); v4.x counts them in
    /// `_refcount` itself (`set_page_count(page, PTE_FRAG_NR)`,
    /// `put_page_testzero` in `pte_fragment_free`, `pgtable_64.c`).
    pub pt_frag_refcount: bool,
    /// `CONFIG_X86_5LEVEL` exists: 5-level paging (LA57), since v4.14
    /// (77ef56e4f0fb; boot-time switchable in 4.17, `pgtable_l5_enabled`).
    /// Without it the `x86_64-la57` arch is refused.
    pub x86_5level: bool,
    /// 52-bit VAs with 4 KiB pages (`CONFIG_ARM64_VA_BITS_52` on FEAT_LPA2),
    /// since v6.9 (352b0395b505 "arm64: Enable 52-bit virtual addressing for
    /// 4k and 16k granule configs"; 6.1's Kconfig still has "depends on ARM64_64K_PAGES").
    /// Without it the `arm64-52` arch is refused.
    pub arm64_lpa2: bool,
}

impl Knobs {
    /// Whether the kernel of these knobs has the build option `c`, which an
    /// arch variant needs (`ArchId::needs`).
    #[must_use]
    pub const fn has_config(&self, c: KernelConfig) -> bool {
        match c {
            KernelConfig::X86_5Level => self.x86_5level,
            KernelConfig::Arm64Lpa2 => self.arm64_lpa2,
        }
    }

    /// The known-bug classes (spec known-bugs.md) these knobs are known to
    /// have: what a run on this profile may show as the kernel's own flaw.
    /// The fuzzer consults this list, never the profile's name, to tell a
    /// finding from a failure.
    #[must_use]
    pub fn known_bugs(&self) -> Vec<BugClass> {
        let has = |c: BugClass| match c {
            // Dirty COW without FOLL_COW; Dirty Pipe's stale CAN_MERGE flag.
            BugClass::PageCacheCorrupted => {
                !self.foll_cow || (self.pipe_can_merge_flag && !self.pipe_iter_inits_flags)
            }
            // A narrow counter wraps to a free (CVE-2019-11487) unless the
            // 5.1 checks refuse the get.
            BugClass::UseAfterFree => self.refcount_bits < 32 && !self.ref_get_checked,
            // v4.9's pipe_advance leaves reserved buffers unfilled.
            BugClass::Infoleak => self.pipe_advance_release == PipeAdvanceRelease::FencepostV4_9,
            // GUP pins vs fork: detached pins until 5.19's PageAnonExclusive
            // with the read-only pin unshare.
            BugClass::PinDetached => {
                !(self.wp_reuse_rule == WpReuseRule::AnonExclusive && self.ro_pin_unshare)
            }
            // do_wp_page's mapcount rule reuses a page others reference.
            BugClass::SharedPageReused => self.wp_reuse_rule == WpReuseRule::Mapcount,
            // Huge Dirty COW: touch_pmd dirties on every touch.
            BugClass::ZeroPageCorrupted => self.thp_touch_dirty == ThpTouchDirty::Always,
            // The posted Layton patch: wrong bytes (a) and a leaked
            // reference per call (b) (docs/thread.md).
            BugClass::DataMismatch | BugClass::LeakedReference => {
                self.get_pages_alloc == GetPagesAlloc::LaytonPosted
            }
            // 6.x `__iov_iter_get_pages_alloc` (lib/iov_iter.c, 6.13 and
            // mainline): an empty current bvec element gives 0 bytes and a
            // referenced page (`first_bvec_segment`, `want_pages_array`).
            BugClass::EmptyBvecPageRef => self.get_pages2,
        };
        BugClass::ALL.into_iter().filter(|&c| has(c)).collect()
    }
}

/// A base kernel version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Base {
    /// Linux 4.10 (Feb 2017, the thread).
    V4_10,
    /// Linux 4.17 (ceph's reworked DIO, generic gup on x86).
    V4_17,
    /// Linux 6.13.
    V6_13,
    /// Linux 6.18: 6.13 with the knobs of docs/extending.md's worked
    /// example (block-layer `O_DIRECT` alignment, `pipe_write`, the
    /// `generic_perform_write` prefault).
    V6_18,
}

/// A patch applied on top of a base.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Overlay {
    /// gup-fast range check = no wrap and `end <= TASK_SIZE` (the thread's fix).
    Capper,
    /// Jeff Layton's `iov_iter_get_pages_alloc` patch as posted.
    Layton,
    /// The rule Layton's commit message states.
    LaytonIntended,
    /// `CONFIG_NUMA_BALANCING=y`.
    Numa,
    /// Before the Dirty COW fix 19be0eaffa3a: no FOLL_COW, `faultin_page`
    /// clears FOLL_WRITE after a COW on a read-only private mapping.
    Dirtycow,
    /// The Dirty Pipe window (5.8 .. 5.16.10): mergeability is the
    /// `PIPE_BUF_FLAG_CAN_MERGE` flag (f6dd975583bd) and the pipe iterator
    /// leaves `flags` uninitialised (until 9d2231c5d74e).
    Dirtypipe,
    /// The Dirty Pipe window closed: as `dirtypipe`, plus 9d2231c5d74e
    /// (the pipe iterator zeroes `flags`).
    DirtypipeFixed,
    /// v4.9's `pipe_advance`, before b9dc6f65bc5e: an advance by 0 on a
    /// ring the iterator filled releases nothing (CVE-2017-5550).
    PipeAdvanceFencepost,
    /// A 12-bit `_refcount` (`refcount_bits` = 12): a stand-in for the
    /// kernel's 32-bit counter so that a workload wraps it with 4096
    /// references (CVE-2019-11487 needs 2^32, ~140 GiB of RAM).
    SmallRefcount,
    /// The 5.1 `page-refs` series (f958d7b528b1 88b1a17dfc3e 8fde12ca79af
    /// 15fab63e1e57, the CVE-2019-11487 fix) on a v4.x base.
    RefcountChecks,
    /// 5.8 for GUP vs COW: 17839856fd58 "gup: document and work around 'COW
    /// can break either way' issue" (read gets on COW mappings break COW at
    /// gup time), with FOLL_PIN (5.7) available.
    CowBreakOnPin,
    /// 5.9 for GUP vs COW: 09854ba94c6a (`do_wp_page` reuses only at
    /// `page_count == 1`), 70e806e4e645 (fork copies maybe-pinned pages for
    /// the child) and a308c71bf1e6 (no forced COW at gup time), with
    /// FOLL_PIN (5.7).
    WpPageCount,
    /// Keith Busch's proposed "block: validate user space vectors during
    /// extraction" (v3 5/5, June 2026) on a base with 6.18's bio-time
    /// alignment checks: every extraction checks the current segment
    /// against the DMA alignment (`-EINVAL` for the whole I/O).
    DioExtractAlign,
}

impl Base {
    const ALL: [(Base, &'static str); 4] = [
        (Base::V4_10, "v4.10"),
        (Base::V4_17, "v4.17"),
        (Base::V6_13, "v6.13"),
        (Base::V6_18, "v6.18"),
    ];
    /// Every base, oldest first.
    pub const IN_ORDER: [Base; 4] = [Base::V4_10, Base::V4_17, Base::V6_13, Base::V6_18];

    /// The kernel release the base models, `(major, minor)`.
    #[must_use]
    pub const fn release(self) -> (u32, u32) {
        match self {
            Base::V4_10 => (4, 10),
            Base::V4_17 => (4, 17),
            Base::V6_13 => (6, 13),
            Base::V6_18 => (6, 18),
        }
    }

    /// The oldest base.
    #[must_use]
    pub const fn oldest() -> Base {
        Self::IN_ORDER[0]
    }

    /// The newest base.
    #[must_use]
    pub const fn newest() -> Base {
        Self::IN_ORDER[Self::IN_ORDER.len() - 1]
    }

    /// The printed name (`v4.10`).
    #[must_use]
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(b, _)| *b == self)
            .map_or("?", |(_, n)| n)
    }
    fn knobs(self) -> Knobs {
        match self {
            Base::V4_10 => Knobs {
                family: Family::Legacy,
                set_fs: true,
                x86_private_gup: true,
                gup_fast_range: GupFastRange::AccessOk,
                gup_fast_leaf: GupFastLeaf::GenericNoUser,
                numa_balancing: false,
                foll_pin: false,
                gup_fast_only_errno: false,
                gup_extends_stack: true,
                gup_fatal_signal: Errno::ERESTARTSYS,
                gup_repeat_retry: false,
                get_pages_alloc: GetPagesAlloc::FirstSegment,
                pipe_iter: true,
                ubuf_iter: false,
                iov_iter_revert: false,
                get_pages2: false,
                iter_modern_advance: false,
                bvec_zero_len_livelock: true,
                foll_cow: true,
                pipe_can_merge_flag: false,
                pipe_iter_inits_flags: false,
                pipe_advance_release: PipeAdvanceRelease::TruncateV4_10,
                refcount_bits: 32,
                ref_get_checked: false,
                wp_reuse_rule: WpReuseRule::Mapcount,
                fork_copy_maybe_pinned: false,
                ro_pin_unshare: false,
                longterm_unshare_non_anon: false,
                longterm_write_needs_no_writeback: false,
                longterm_needs_pin: false,
                untag_user_addr: false,
                force_cow_on_read_pin: false,
                thp_touch_dirty: ThpTouchDirty::Always,
                ceph_dio_bvecs: false,
                ceph_max_write_size: None,
                bio_iov_iter_loop: false,
                dio_align_in_bio: false,
                pipe_write_no_empty_buf: false,
                write_prefault_after_copy: false,
                ext4_iomap_dio: false,
                iomap_dio_read_stops_at_eof: false,
                iomap_dio_hole_zero_checked: false,
                shmem_odirect: false,
                dio_extract_align: false,
                x86_5level: false,
                arm64_lpa2: false,
                radix_pte_frag_hash_size: true,
                pmd_fragments: false,
                pt_frag_refcount: false,
            },
            Base::V4_17 => Knobs {
                x86_private_gup: false,
                thp_touch_dirty: ThpTouchDirty::OnWrite,
                gup_fast_range: GupFastRange::AccessOkThenPermitted,
                gup_fast_leaf: GupFastLeaf::AccessPermitted,
                iov_iter_revert: true,
                ceph_dio_bvecs: true,
                ceph_max_write_size: Some(16 << 20),
                x86_5level: true,
                iomap_dio_read_stops_at_eof: true,
                iomap_dio_hole_zero_checked: true,
                radix_pte_frag_hash_size: false,
                ..Base::V4_10.knobs()
            },
            Base::V6_13 => Knobs {
                family: Family::Modern,
                set_fs: false,
                x86_private_gup: false,
                gup_fast_range: GupFastRange::TaskSizeMax,
                gup_fast_leaf: GupFastLeaf::AccessPermitted,
                numa_balancing: false,
                foll_pin: true,
                gup_fast_only_errno: true,
                gup_extends_stack: false,
                gup_fatal_signal: Errno::EINTR,
                gup_repeat_retry: true,
                get_pages_alloc: GetPagesAlloc::FirstSegment,
                pipe_iter: false,
                ubuf_iter: true,
                iov_iter_revert: true,
                get_pages2: true,
                iter_modern_advance: true,
                bvec_zero_len_livelock: false,
                foll_cow: true,
                pipe_can_merge_flag: true,
                // No ITER_PIPE: splice_folio_into_pipe fills the whole
                // buffer with a struct initialiser.
                pipe_iter_inits_flags: true,
                // No ITER_PIPE; the value says what 4.10 .. 6.4 did.
                pipe_advance_release: PipeAdvanceRelease::TruncateV4_10,
                refcount_bits: 32,
                ref_get_checked: true,
                wp_reuse_rule: WpReuseRule::AnonExclusive,
                fork_copy_maybe_pinned: true,
                ro_pin_unshare: true,
                longterm_unshare_non_anon: true,
                longterm_write_needs_no_writeback: true,
                longterm_needs_pin: true,
                untag_user_addr: true,
                force_cow_on_read_pin: false,
                thp_touch_dirty: ThpTouchDirty::OnWrite,
                ceph_dio_bvecs: true,
                ceph_max_write_size: Some(64 << 20),
                bio_iov_iter_loop: true,
                x86_5level: true,
                arm64_lpa2: true,
                dio_align_in_bio: false,
                pipe_write_no_empty_buf: false,
                write_prefault_after_copy: false,
                ext4_iomap_dio: true,
                iomap_dio_read_stops_at_eof: false,
                iomap_dio_hole_zero_checked: true,
                shmem_odirect: true,
                dio_extract_align: false,
                radix_pte_frag_hash_size: false,
                pmd_fragments: true,
                pt_frag_refcount: true,
            },
            Base::V6_18 => Knobs {
                dio_align_in_bio: true,
                pipe_write_no_empty_buf: true,
                write_prefault_after_copy: true,
                ..Base::V6_13.knobs()
            },
        }
    }
}

impl Overlay {
    const ALL: [(Overlay, &'static str); 13] = [
        (Overlay::Capper, "capper"),
        (Overlay::Layton, "layton"),
        (Overlay::LaytonIntended, "layton-intended"),
        (Overlay::Numa, "numa"),
        (Overlay::Dirtycow, "dirtycow"),
        (Overlay::Dirtypipe, "dirtypipe"),
        (Overlay::DirtypipeFixed, "dirtypipe-fixed"),
        (Overlay::PipeAdvanceFencepost, "pipe-advance-fencepost"),
        (Overlay::SmallRefcount, "small-refcount"),
        (Overlay::RefcountChecks, "refcount-checks"),
        (Overlay::CowBreakOnPin, "cow-break-on-pin"),
        (Overlay::WpPageCount, "wp-page-count"),
        (Overlay::DioExtractAlign, "dio-extract-align"),
    ];
    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("?", |(_, n)| n)
    }
    /// Applies the overlay, or says why it makes no sense on these knobs.
    fn apply(self, k: &mut Knobs) -> Result<(), String> {
        match self {
            Overlay::Capper => {
                if k.gup_fast_range == GupFastRange::TaskSizeMax {
                    return Err("the base already checks end against TASK_SIZE_MAX".into());
                }
                k.gup_fast_range = GupFastRange::Capper;
            }
            Overlay::Layton | Overlay::LaytonIntended => {
                if !k.pipe_iter || k.family != Family::Legacy {
                    return Err("the patch applies to the v4.x iov_iter code only".into());
                }
                if k.get_pages_alloc != GetPagesAlloc::FirstSegment {
                    return Err("only one of layton and layton-intended can apply".into());
                }
                k.get_pages_alloc = if self == Overlay::Layton {
                    GetPagesAlloc::LaytonPosted
                } else {
                    GetPagesAlloc::LaytonIntended
                };
            }
            Overlay::Numa => k.numa_balancing = true,
            Overlay::Dirtycow => {
                if k.family != Family::Legacy {
                    return Err("6.x replaced FOLL_COW by the PageAnonExclusive rule (5535be309971); the overlay rewinds the v4.x gup code only".into());
                }
                k.foll_cow = false;
            }
            Overlay::Dirtypipe | Overlay::DirtypipeFixed => {
                if !k.pipe_iter {
                    return Err(
                        "the base has no ITER_PIPE (push_pipe/copy_page_to_iter_pipe)".into(),
                    );
                }
                if k.pipe_can_merge_flag {
                    return Err("only one of dirtypipe and dirtypipe-fixed can apply".into());
                }
                k.pipe_can_merge_flag = true;
                k.pipe_iter_inits_flags = self == Overlay::DirtypipeFixed;
            }
            Overlay::PipeAdvanceFencepost => {
                if !k.pipe_iter {
                    return Err("the base has no ITER_PIPE (pipe_advance)".into());
                }
                k.pipe_advance_release = PipeAdvanceRelease::FencepostV4_9;
            }
            Overlay::SmallRefcount => k.refcount_bits = 12,
            Overlay::RefcountChecks => {
                if k.ref_get_checked {
                    return Err("the base already has the 5.1 page-refs series".into());
                }
                k.ref_get_checked = true;
            }
            Overlay::CowBreakOnPin | Overlay::WpPageCount => {
                if k.family != Family::Legacy {
                    return Err("the base already has the 5.19 PageAnonExclusive rules (6c287605fd56); the overlay moves the v4.x COW code forward".into());
                }
                if k.force_cow_on_read_pin || k.wp_reuse_rule != WpReuseRule::Mapcount {
                    return Err("only one of cow-break-on-pin (5.8) and wp-page-count (5.9, whose a308c71bf1e6 removed the forced COW break) can apply".into());
                }
                k.foll_pin = true;
                if self == Overlay::CowBreakOnPin {
                    k.force_cow_on_read_pin = true;
                } else {
                    k.wp_reuse_rule = WpReuseRule::Refcount;
                    k.fork_copy_maybe_pinned = true;
                }
            }
            Overlay::DioExtractAlign => {
                if !k.dio_align_in_bio {
                    return Err("the base checks O_DIRECT vectors up front (before 5ff3f74e145a, v6.18); the patch fixes the bio-time checks that replaced that".into());
                }
                k.dio_extract_align = true;
            }
        }
        Ok(())
    }
}

/// A profile name that does not parse or does not make sense.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Unknown base version.
    #[error(
        "unknown kernel `{0}` (expected v4.10, v4.17, v6.13 or v6.18, optionally +capper, +layton, +layton-intended, +numa, +dirtycow, +dirtypipe, +dirtypipe-fixed, +pipe-advance-fencepost, +small-refcount, +refcount-checks, +cow-break-on-pin, +wp-page-count, +dio-extract-align)"
    )]
    UnknownBase(String),
    /// Unknown overlay.
    #[error(
        "unknown overlay `+{0}` (expected capper, layton, layton-intended, numa, dirtycow, dirtypipe, dirtypipe-fixed, pipe-advance-fencepost, small-refcount, refcount-checks, cow-break-on-pin, wp-page-count or dio-extract-align)"
    )]
    UnknownOverlay(String),
    /// The overlay does not apply to this base.
    #[error("overlay `+{overlay}` makes no sense on {base}: {reason}")]
    Inapplicable {
        /// The overlay.
        overlay: String,
        /// The base version.
        base: String,
        /// Why.
        reason: String,
    },
    /// The same overlay twice.
    #[error("overlay `+{0}` is given twice")]
    Duplicate(String),
}

/// A resolved kernel profile.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KernelProfile {
    /// The base version.
    pub base: Base,
    /// The overlays, in the order given.
    pub overlays: Vec<Overlay>,
    /// The resolved knobs.
    pub knobs: Knobs,
}

impl KernelProfile {
    /// Whether this kernel can run on `arch`: `Err` names the build option
    /// the arch variant needs and this profile's kernel lacks.
    pub fn supports_arch(&self, arch: ArchId) -> Result<(), String> {
        match arch.needs() {
            Some(c) if !self.knobs.has_config(c) => Err(format!(
                "{arch} needs {}, which {self} does not have",
                match c {
                    KernelConfig::X86_5Level => "CONFIG_X86_5LEVEL (v4.14)",
                    KernelConfig::Arm64Lpa2 => "52-bit VA with 4 KiB pages (LPA2, v6.9)",
                }
            )),
            _ => Ok(()),
        }
    }

    /// Parses `v4.10`, `v4.10+capper`, ...
    pub fn parse(s: &str) -> Result<Self, ProfileError> {
        let mut parts = s.split('+');
        let b = parts.next().unwrap_or_default();
        let base = Base::ALL
            .iter()
            .find(|(_, n)| *n == b)
            .map(|(b, _)| *b)
            .ok_or_else(|| ProfileError::UnknownBase(b.to_string()))?;
        let mut knobs = base.knobs();
        let mut overlays = Vec::new();
        for o in parts {
            let ov = Overlay::ALL
                .iter()
                .find(|(_, n)| *n == o)
                .map(|(o, _)| *o)
                .ok_or_else(|| ProfileError::UnknownOverlay(o.to_string()))?;
            if overlays.contains(&ov) {
                return Err(ProfileError::Duplicate(o.to_string()));
            }
            ov.apply(&mut knobs)
                .map_err(|reason| ProfileError::Inapplicable {
                    overlay: o.to_string(),
                    base: base.name().to_string(),
                    reason,
                })?;
            overlays.push(ov);
        }
        Ok(Self {
            base,
            overlays,
            knobs,
        })
    }

    /// A base without overlays.
    #[must_use]
    pub fn of_base(base: Base) -> Self {
        Self {
            base,
            overlays: Vec::new(),
            knobs: base.knobs(),
        }
    }

    /// The newest base without overlays: the profile a workload without a
    /// `kernels` line runs under, and the one the benches model.
    #[must_use]
    pub fn newest() -> Self {
        Self::of_base(Base::newest())
    }

    /// The base nearest a kernel release as `uname -r` prints it
    /// (`6.18.44`, `6.15.0-rc3-amd64`), without overlays: the profile the
    /// host differential compares with. Nearest by (major, minor); a tie
    /// goes to the older base. `None` if the release does not start with
    /// `MAJOR.MINOR`.
    #[must_use]
    pub fn nearest_to_release(release: &str) -> Option<Self> {
        let mut nums = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = nums.next()?.parse().ok()?;
        let minor: u32 = nums.next()?.parse().ok()?;
        let at = |(ma, mi): (u32, u32)| i64::from(ma) * 1000 + i64::from(mi);
        let host = at((major, minor));
        Base::IN_ORDER
            .into_iter()
            .min_by_key(|b| (at(b.release()) - host).abs())
            .map(Self::of_base)
    }

    /// The profiles `vmemu list` shows, resolved.
    #[must_use]
    pub fn builtins() -> Vec<Self> {
        Self::builtin_names()
            .iter()
            .filter_map(|n| Self::parse(n).ok())
            .collect()
    }

    /// The printed name (`v4.10+capper`): the base, then each overlay in
    /// the order given. Parsing it gives this profile back.
    #[must_use]
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// Whether the built-in profiles show GUP pins vs fork (CVE-2020-29374)
    /// in its three eras on this profile's base: the base itself (mapcount
    /// reuse), `+cow-break-on-pin` (17839856fd58, 5.8) and
    /// `+wp-page-count` (09854ba94c6a, 5.9). True for every profile on
    /// that base (v4.17), overlays or not.
    #[must_use]
    pub fn has_gup_fork_eras(&self) -> bool {
        Self::builtins()
            .iter()
            .any(|b| b.base == self.base && b.knobs.force_cow_on_read_pin)
    }

    /// `self` with `overlay` on top, when `self` is exactly the tree the
    /// patch was posted against (no other overlay); `None` otherwise.
    /// Layton's Feb 2017 `iov_iter_get_pages_alloc` patch (`+layton`, and
    /// `+layton-intended`, the rule its message states) was posted against
    /// v4.10.
    #[must_use]
    pub fn as_posted_with(&self, overlay: Overlay) -> Option<Self> {
        let posted_on = match overlay {
            Overlay::Layton | Overlay::LaytonIntended => Base::V4_10,
            _ => return None,
        };
        if self.base != posted_on || !self.overlays.is_empty() {
            return None;
        }
        let mut p = self.clone();
        overlay.apply(&mut p.knobs).ok()?;
        p.overlays.push(overlay);
        Some(p)
    }

    /// The profiles `vmemu list` shows and the matrix defaults to.
    #[must_use]
    pub fn builtin_names() -> &'static [&'static str] {
        &[
            "v4.10",
            "v4.10+capper",
            "v4.10+layton",
            "v4.10+layton-intended",
            "v4.10+dirtycow",
            "v4.10+pipe-advance-fencepost",
            "v4.17",
            "v4.17+dirtypipe",
            "v4.17+dirtypipe-fixed",
            "v4.17+small-refcount",
            "v4.17+small-refcount+refcount-checks",
            "v4.17+cow-break-on-pin",
            "v4.17+wp-page-count",
            "v6.13",
            "v6.13+small-refcount",
            "v6.18",
            "v6.18+dio-extract-align",
        ]
    }

    /// Every knob with its value and the kernel change it stands for.
    #[must_use]
    pub fn knob_table(&self) -> Vec<(&'static str, String, &'static str)> {
        let k = &self.knobs;
        vec![
            (
                "family",
                format!("{:?}", k.family),
                "layout, PTE bits and access_ok of v4.x vs 6.x",
            ),
            (
                "set_fs",
                k.set_fs.to_string(),
                "addr_limit; removed by 47058bb54b57 (x86 5.10) and in arm64 5.11",
            ),
            (
                "x86_private_gup",
                k.x86_private_gup.to_string(),
                "arch/x86/mm/gup.c until e585513b76f7 (v4.13)",
            ),
            (
                "gup_fast_range",
                format!("{:?}", k.gup_fast_range),
                "access_ok (2008) / gup_fast_permitted (5b65c4677a57) / Capper 2017 / v6.4 TASK_SIZE_MAX + 9883c7f84053 EOVERFLOW",
            ),
            (
                "gup_fast_leaf",
                format!("{:?}", k.gup_fast_leaf),
                "generic RCU GUP 2667f50e8b81 / pte_access_permitted (v4.13, arm64 6218f96c58db)",
            ),
            (
                "numa_balancing",
                k.numa_balancing.to_string(),
                "CONFIG_NUMA_BALANCING: pte_protnone meaningful",
            ),
            (
                "foll_pin",
                k.foll_pin.to_string(),
                "FOLL_PIN and GUP_PIN_COUNTING_BIAS (v5.7)",
            ),
            (
                "gup_fast_only_errno",
                k.gup_fast_only_errno.to_string(),
                "get_user_pages_fast_only may return -errno (6.x gup_fast_fallback)",
            ),
            (
                "gup_extends_stack",
                k.gup_extends_stack.to_string(),
                "find_extend_vma in __get_user_pages; 6.x gup_vma_lookup (8d7071af8907)",
            ),
            (
                "gup_fatal_signal",
                k.gup_fatal_signal.to_string(),
                "fatal signal in __get_user_pages",
            ),
            (
                "gup_repeat_retry",
                k.gup_repeat_retry.to_string(),
                "__get_user_pages_locked retries more than once (6.x)",
            ),
            (
                "get_pages_alloc",
                format!("{:?}", k.get_pages_alloc),
                "iov_iter_get_pages_alloc; Layton Feb 2017 patch",
            ),
            (
                "pipe_iter",
                k.pipe_iter.to_string(),
                "ITER_PIPE (241699cd72a8, v4.9; removed v6.5)",
            ),
            (
                "ubuf_iter",
                k.ubuf_iter.to_string(),
                "ITER_UBUF (fcb14cb1bdac, v6.0)",
            ),
            (
                "iov_iter_revert",
                k.iov_iter_revert.to_string(),
                "iov_iter_revert (27c0e3748e41, v4.11)",
            ),
            (
                "get_pages2",
                k.get_pages2.to_string(),
                "iov_iter_get_pages2 (v6.0) and iov_iter_extract_pages (v6.3) replace iov_iter_get_pages",
            ),
            (
                "iter_modern_advance",
                k.iter_modern_advance.to_string(),
                "6.x iov_iter_advance skips consumed and empty segments; import_iovec of one segment is ITER_UBUF",
            ),
            (
                "bvec_zero_len_livelock",
                k.bvec_zero_len_livelock.to_string(),
                "zero-length bvec never advances: 1bdc76aea115, fixed by 7e24969022cb (5.9)",
            ),
            (
                "foll_cow",
                k.foll_cow.to_string(),
                "FOLL_COW + dirty pte for FOLL_FORCE writes: 19be0eaffa3a (Dirty COW fix, CVE-2016-5195)",
            ),
            (
                "pipe_can_merge_flag",
                k.pipe_can_merge_flag.to_string(),
                "PIPE_BUF_FLAG_CAN_MERGE decides pipe_write merges: f6dd975583bd (5.8)",
            ),
            (
                "pipe_iter_inits_flags",
                k.pipe_iter_inits_flags.to_string(),
                "push_pipe/copy_page_to_iter_pipe zero flags: 9d2231c5d74e (Dirty Pipe fix, CVE-2022-0847)",
            ),
            (
                "pipe_advance_release",
                format!("{:?}", k.pipe_advance_release),
                "pipe_advance releases up to curbuf+nrbufs (v4.9) / pipe_truncate: b9dc6f65bc5e (CVE-2017-5550)",
            ),
            (
                "refcount_bits",
                k.refcount_bits.to_string(),
                "width of page->_refcount (32; +small-refcount: 12, a stand-in so 4096 references wrap it)",
            ),
            (
                "ref_get_checked",
                k.ref_get_checked.to_string(),
                "try_get_page / pipe_buf_get refuse counts near overflow: f958d7b528b1 88b1a17dfc3e 8fde12ca79af 15fab63e1e57 (5.1, CVE-2019-11487 fix)",
            ),
            (
                "wp_reuse_rule",
                format!("{:?}", k.wp_reuse_rule),
                "do_wp_page anon reuse: mapcount (reuse_swap_page, v4.x) / page_count == 1 (09854ba94c6a, 5.9) / PageAnonExclusive (6c287605fd56, 5.19)",
            ),
            (
                "fork_copy_maybe_pinned",
                k.fork_copy_maybe_pinned.to_string(),
                "fork copies maybe-pinned anon pages for the child: 70e806e4e645 (5.9); page_try_dup_anon_rmap (5.19)",
            ),
            (
                "ro_pin_unshare",
                k.ro_pin_unshare.to_string(),
                "R/O FOLL_PIN unshares a non-exclusive anon page (gup_must_unshare, FAULT_FLAG_UNSHARE): 5.19",
            ),
            (
                "longterm_unshare_non_anon",
                k.longterm_unshare_non_anon.to_string(),
                "R/O FOLL_LONGTERM pin unshares the zero page and page-cache pages in COW mappings: 84209e87c696 (6.2)",
            ),
            (
                "longterm_write_needs_no_writeback",
                k.longterm_write_needs_no_writeback.to_string(),
                "FOLL_LONGTERM write pin refused on shared file mappings needing dirty tracking (writable_file_mapping_allowed): 05e6f3ae3a4b (6.5)",
            ),
            (
                "longterm_needs_pin",
                k.longterm_needs_pin.to_string(),
                "FOLL_LONGTERM without FOLL_PIN is -EINVAL (is_valid_gup_flags in 6.1, is_valid_gup_args in 6.13)",
            ),
            (
                "untag_user_addr",
                k.untag_user_addr.to_string(),
                "gup untags the start address (untagged_addr: arm64 TBI; x86 LAM only once a process enables it): \"mm: untag user pointers in mm/gup.c\" (5.4)",
            ),
            (
                "force_cow_on_read_pin",
                k.force_cow_on_read_pin.to_string(),
                "gup with FOLL_GET/FOLL_PIN on a COW mapping breaks COW: 17839856fd58 (5.8), removed by a308c71bf1e6 (5.9)",
            ),
            (
                "thp_touch_dirty",
                format!("{:?}", k.thp_touch_dirty),
                "touch_pmd marks the PMD dirty on every FOLL_TOUCH walk / only with FOLL_WRITE: a8f97366452e (v4.15-rc, 4.14.5; CVE-2017-1000405 fix)",
            ),
            (
                "ceph_dio_bvecs",
                k.ceph_dio_bvecs.to_string(),
                "ceph O_DIRECT gathers with iter_get_bvecs_alloc, not dio_get_pagev_size/dio_get_pages_alloc: \"ceph: fix iov_iter issues in ceph_direct_read_write()\" (v4.17)",
            ),
            (
                "ceph_max_write_size",
                k.ceph_max_write_size
                    .map_or_else(|| "none".to_string(), |n| format!("{} MiB", n >> 20)),
                "CEPH_MAX_WRITE_SIZE caps a ceph O_DIRECT request: 16 MiB (4.17), 32 MiB 94e6992bb560 (v4.20), 64 MiB \"libceph: bump CEPH_MSG_MAX_DATA_LEN (again)\" (v5.3)",
            ),
            (
                "bio_iov_iter_loop",
                k.bio_iov_iter_loop.to_string(),
                "bio_iov_iter_get_pages fills the bio in a loop: 17d51b10d777 (v4.19)",
            ),
            (
                "dio_align_in_bio",
                k.dio_align_in_bio.to_string(),
                "O_DIRECT vectors checked at bio build/split, not up front: fec2e705729d 743bf2e0c49c 20a0e6276edb 5ff3f74e145a 7eac33186957 (v6.18)",
            ),
            (
                "pipe_write_no_empty_buf",
                k.pipe_write_no_empty_buf.to_string(),
                "pipe_write copies before taking the slot, no zero-sized buffer: ee5eda8ea595 (v6.15)",
            ),
            (
                "dio_extract_align",
                k.dio_extract_align.to_string(),
                "each bio extraction checks the segment against the DMA alignment: Busch, [PATCH v3 5/5] block: validate user space vectors during extraction (proposed 2026)",
            ),
            (
                "write_prefault_after_copy",
                k.write_prefault_after_copy.to_string(),
                "generic_perform_write faults the source in after a 0-byte copy: 665575cff098 (v6.15)",
            ),
            (
                "ext4_iomap_dio",
                k.ext4_iomap_dio.to_string(),
                "ext4 O_DIRECT through iomap_dio_rw, not fs/direct-io.c: b1b4705d54ab 378f32bab371 (v5.5)",
            ),
            (
                "iomap_dio_read_stops_at_eof",
                k.iomap_dio_read_stops_at_eof.to_string(),
                "iomap_dio_rw ends a read at i_size, no zero-fill past the EOF block: v4.17 fs/iomap.c; removed by \"iomap: switch iomap_dio_rw to use iomap_iter\" (v5.15)",
            ),
            (
                "iomap_dio_hole_zero_checked",
                k.iomap_dio_hole_zero_checked.to_string(),
                "a hole read uses iov_iter_zero's count (6.x: none zeroed is -EFAULT): cfe057f7db1f (v4.15)",
            ),
            (
                "shmem_odirect",
                k.shmem_odirect.to_string(),
                "tmpfs accepts O_DIRECT and does buffered I/O: e88e0d366f9c (v6.6)",
            ),
            (
                "x86_5level",
                k.x86_5level.to_string(),
                "CONFIG_X86_5LEVEL (LA57, arch x86_64-la57): 77ef56e4f0fb (v4.14)",
            ),
            (
                "arm64_lpa2",
                k.arm64_lpa2.to_string(),
                "52-bit VA with 4 KiB pages (FEAT_LPA2, arch arm64-52): 352b0395b505 (v6.9)",
            ),
            (
                "radix_pte_frag_hash_size",
                k.radix_pte_frag_hash_size.to_string(),
                "ppc64 64K radix PTE tables in the hash MMU's 4 KiB fragments, 16 per page (v4.10 radix__early_init_mmu); RADIX_PTE_FRAG_SIZE_SHIFT, 256 per page, by v4.17",
            ),
            (
                "pmd_fragments",
                k.pmd_fragments.to_string(),
                "ppc64 64K PMD tables as page fragments (pmd_fragment_alloc, book3s64; v4.x: PGT_CACHE slab)",
            ),
            (
                "pt_frag_refcount",
                k.pt_frag_refcount.to_string(),
                "a fragment page counts its fragments in ptdesc->pt_frag_refcount (6.13 pgtable-frag.c); v4.x in _refcount",
            ),
        ]
    }
}

impl fmt::Display for KernelProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.name())?;
        for o in &self.overlays {
            write!(f, "+{}", o.name())?;
        }
        Ok(())
    }
}

impl FromStr for KernelProfile {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests;
