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

pub use errno::Errno;
pub use event::{Event, EventKind};
pub use fault::{FaultFlags, VmFault};
pub use gup::GupFlags;
pub use mm::{
    Backing, DEFAULT_PHYS_SIZE, FileOps, Machine, MkwriteBehaviour, Prot, Task, VmFlags, Vma,
};
pub use preempt::{Preempt, PreemptPoint};
pub use profile::KernelProfile;
pub use violation::{BugClass, Violation, ViolationKind};
pub use vma::MapFlags;
