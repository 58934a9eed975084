//! `vmemu-mm`: emulated physical memory, page tables, address spaces, faults,
//! uaccess and get_user_pages (slow path and gup-fast), per arch and kernel
//! profile.
//!
//! A [`Machine`] is one emulated kernel of arch `A` under one
//! [`KernelProfile`]: `init_mm` with the direct map, tasks with `current->mm`
//! and `addr_limit`, VMAs, a page cache, the lock model. Primitives return
//! what the kernel returns (counts, short counts, `Err(Errno)`); hazards the
//! modelled kernel would hit are recorded as [`Event`]s.
//!
//! ```
//! use vmemu_arch::{Arm64, VirtAddr};
//! use vmemu_mm::{Backing, GupFlags, KernelProfile, Machine, MapFlags, Prot};
//! let mut m = Machine::<Arm64>::new(KernelProfile::parse("v4.10").unwrap(), 64 << 20).unwrap();
//! let mm = m.current_mm();
//! let buf = m.mmap(mm, None, 2 * 4096, Prot::RW, MapFlags::default(), Backing::Anon, "buf").unwrap();
//! let mut pages = Vec::new();
//! assert_eq!(m.get_user_pages_fast(buf, 2, GupFlags::FOLL_WRITE, &mut pages), Ok(2));
//! assert_eq!(m.page_name(pages[1]), "buf[1]");
//! ```

// `unsafe_code` is allowed only in `phys` (guest memory), which allows it
// for itself.
#![deny(unsafe_code)]

pub mod check;
pub mod errno;
pub mod event;
pub mod fault;
pub mod filemap;
pub mod fork;
pub mod gup;
pub mod gup_fast;
pub mod khugepaged;
pub mod ledger;
pub mod mm;
pub mod mmap_lock;
pub mod pgtable;
pub mod phys;
pub mod preempt;
pub mod profile;
pub mod race;
pub mod sync;
pub mod uaccess;
pub mod violation;
pub mod vma;
pub mod vma_tree;

use std::marker::PhantomData;

use vmemu_arch::{Arch, Layout, Pfn, PhysAddr};

use crate::filemap::File;
use crate::ledger::HeldLedger;
use crate::mm::MmStruct;
use crate::pgtable::MapError;
use crate::phys::{PhysError, PhysMem};
use crate::profile::Knobs;
use crate::sync::{LockModel, TaskId};

pub use errno::Errno;
pub use event::{Event, EventKind};
pub use fault::{FaultFlags, FileOps, MkwriteBehaviour, VmFault};
pub use gup::GupFlags;
pub use mm::{Backing, DEFAULT_PHYS_SIZE, Prot, Task, VmFlags, Vma};
pub use preempt::{Preempt, PreemptPoint};
pub use profile::KernelProfile;
pub use violation::{BugClass, Violation, ViolationKind};
pub use vma::MapFlags;

// `Machine` is defined here, at the root, so that the subsystem modules that
// own its state (and add its methods) need not import each other through
// one module that holds the struct: `mm/tests/all/structure.rs` keeps the
// module graph free of circles.

/// Errors creating the machine or its objects (emulator limits).
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Physical memory.
    #[error(transparent)]
    Phys(#[from] PhysError),
    /// Page tables.
    #[error(transparent)]
    Map(#[from] MapError),
    /// Out of emulated memory.
    #[error("out of emulated physical memory")]
    NoMemory,
}

/// The emulated kernel of arch `A`.
#[derive(Debug)]
pub struct Machine<A: Arch> {
    /// Physical memory and `struct page`s.
    pub phys: PhysMem,
    /// The profile.
    pub profile: KernelProfile,
    /// Its knobs (copied for speed).
    pub knobs: Knobs,
    /// Layout constants of the family.
    pub layout: Layout,
    /// `init_mm.pgd`.
    pub(crate) init_pgd: PhysAddr,
    /// Address spaces.
    pub(crate) mms: Vec<MmStruct>,
    /// Tasks.
    pub tasks: Vec<Task>,
    /// The running task.
    pub current: TaskId,
    /// Files.
    pub files: Vec<File>,
    /// Names of mappings, files and kernel buffers.
    pub(crate) names: Vec<String>,
    /// `names` by the hash of the name (interning is O(1), not a scan of
    /// every name; the names themselves are stored once, in `names`).
    pub(crate) name_ids: std::collections::HashMap<u64, u32>,
    /// The event log.
    pub events: Vec<Event>,
    /// Sleeping locks.
    pub locks: LockModel,
    /// The zero page.
    pub(crate) zero_pfn: Pfn,
    /// The huge zero page, allocated by the first THP read fault
    /// (`get_huge_zero_page`) and kept from then on.
    pub(crate) huge_zero_pfn: Option<Pfn>,
    /// The x86 vsyscall page.
    pub(crate) vsyscall_pfn: Option<Pfn>,
    /// References held by the workload (the ledger's state; see `ledger`).
    pub(crate) held: HeldLedger,
    /// Table pages unlinked while a lockless walker may still see them.
    pub(crate) deferred_tables: Vec<PhysAddr>,
    /// Lockless (gup-fast) walkers inside their IRQ-off section.
    pub(crate) lockless_walkers: u32,
    /// Page references dropped by a zap while a lockless walker had IRQs off
    /// on an arch whose TLB flush waits for an IPI (x86): the pages are
    /// freed only after the flush, i.e. when the walker leaves
    /// (`tlb_finish_mmu` after `tlb_flush_mmu_tlbonly`).
    pub(crate) deferred_pages: Vec<Pfn>,
    /// **Testing only**: frees unlinked tables at once even while lockless
    /// walkers are inside (the deferral rule broken on purpose, to show that
    /// the concurrency model catches the use-after-free).
    pub break_table_deferral: bool,
    /// The most leaf entries (PTEs and huge leaves) one gup-fast walk
    /// processed inside a single IRQ-off section, i.e. between two points
    /// where the modelled kernel could reschedule (for `vmemu bench`; reset
    /// it freely).
    pub lockless_max_run: u64,
    /// gup-fast's leaf-table cache (the emulator's own TLB for lockless
    /// walks); see `gup_fast::LeafCache`.
    pub(crate) leaf_cache: gup_fast::LeafCache,
    /// uaccess's last translation; see `uaccess::UaccessCache`.
    pub(crate) uaccess_cache: uaccess::UaccessCache,
    /// The table allocator: table numbers, each mm's page-table fragment
    /// cache and the pages cut into fragments (`pgtable::TableAlloc`).
    pub(crate) tables: pgtable::TableAlloc,
    /// Next free offset in the vmalloc area.
    vmalloc_next: u64,
    /// The preemption hook and the walk it watches (`preempt`).
    pub(crate) preempt: preempt::Preemption<A>,
    /// What the interleaved steps did, in order.
    pub interleave_log: Vec<String>,
    /// Where each live pin was taken (`pin_detached` checks them).
    pub(crate) pin_origins: Vec<fork::PinOrigin>,
    _arch: PhantomData<A>,
}
