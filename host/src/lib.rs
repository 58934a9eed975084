//! The host probes: host memory and host system calls, the one crate of
//! this workspace (beside `vmemu-mm`'s physical memory) that reaches memory
//! outside Rust's references, and so the one allowed to hold `unsafe`.
//!
//! Nothing in the emulator uses it. Two parts of `vmemu-harness` do:
//!
//! * the host differential (`diff_host`, `vmemu diff-host`), which hands the
//!   host kernel iovecs that point at unmapped, `PROT_NONE`, read-only and
//!   kernel addresses — slice-based APIs (std, `rustix`, `nix`: `IoSlice`)
//!   cannot describe those — and maps regions whose pages it protects and
//!   punches;
//! * the speed yardsticks of `vmemu bench`: host `vmsplice(2)` of 4 KiB pages
//!   into a pipe ([`HostPipe`]) and `process_vm_readv(2)` on the bench's own
//!   pid between two regions.
//!
//! The harness also sets one parameter of the C library's allocator at
//! start-up ([`set_malloc_top_pad`], `mallopt(3)`).
//!
//! Both use the same small safe API: system calls that take user addresses
//! as plain `usize`s ([`UserIovec`], [`readv`], [`vmsplice`],
//! [`process_vm_readv_self`], …) and [`HostRegion`], an owned anonymous
//! mapping whose bytes are only ever moved by the kernel. Linux only; the
//! crate is empty elsewhere.
//!
//! # Soundness
//!
//! * No function here dereferences a caller's address in Rust. Addresses
//!   travel only to the kernel (a [`UserIovec`] has the layout of
//!   `struct iovec`; a single address becomes a pointer without provenance),
//!   which checks them itself: an unmapped or protected address is
//!   `EFAULT`, never undefined behaviour here.
//! * A call in which the kernel only *reads* user memory (`write`,
//!   `writev`, `pwritev`, the local side of `process_vm_writev`, the remote
//!   side of `process_vm_readv`, `vmsplice` into a pipe's write end that
//!   [`HostPipe`] owns) cannot change a Rust value, whatever the addresses.
//! * A call in which the kernel may *write* user memory (`readv`,
//!   `preadv`, [`vmsplice`] on an fd it does not know (checked as if it
//!   wrote: it does when the fd is a pipe's read end), the local side of
//!   `process_vm_readv`, the remote side of `process_vm_writev`) would break
//!   Rust's guarantees if an address named memory Rust owns (a heap block, a
//!   stack, a static). So before such a call the *write-target check* walks
//!   the bytes the kernel may write in the order it fills them: the iovecs
//!   front to back, cut off after what the source holds when that is known
//!   (the contents of a pipe a read cannot wait on, `FIONREAD`). Each byte
//!   must lie in a mapped page of a [`HostRegion`] the caller lends to the
//!   call, or be unmapped according to `/proc/self/maps` (the kernel faults
//!   there: `EFAULT` or a short count). A punched page of a lent region ends
//!   the walk: the copy faults there, and the kernel never writes past the
//!   first fault (it returns the length of the prefix it filled). An
//!   unmapped byte elsewhere does not end it (a stack above it could grow
//!   down into it; such fresh stack pages hold no Rust value yet, but the
//!   walk goes on to what follows). The one exception is a call the kernel
//!   rejects before copying anything: an `iov_len` above `isize::MAX` in any
//!   iovec array is `EINVAL` from `iovec_from_user()` (`readv(2)`,
//!   `process_vm_readv(2)`: "overflows a ssize_t value"). A call that fails
//!   the check panics instead of being made. [`HostRegion::read`] and
//!   [`HostRegion::write`] check their one target span against the region
//!   itself.
//! * A [`HostRegion`] owns its mapping. Rust never forms a reference into
//!   it: its bytes are read and written only by the kernel
//!   (`process_vm_readv`/`process_vm_writev` on this process, bounds-checked
//!   against the region), and `mprotect`/`madvise`/`munmap` only ever act
//!   on pages the region still has mapped. Whatever the kernel or a test
//!   does to those pages cannot invalidate a Rust value.
//!
//! What the check cannot rule out: it is a snapshot. A thread that maps
//! memory between the check and the system call (into a hole punched in a
//! region, or at an unmapped fixed address a call names) could be handed
//! pages the kernel then writes, and a thread or process that writes to the
//! pipe meanwhile makes the copy longer than checked. The harness runs its
//! host cases on one thread, with nothing else mapping memory or holding
//! the pipes; any other caller must do the same.

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(target_os = "linux")]
mod calls;
#[cfg(target_os = "linux")]
mod check;
mod malloc;
#[cfg(target_os = "linux")]
mod pipe;
#[cfg(target_os = "linux")]
mod region;

#[cfg(target_os = "linux")]
pub use calls::{
    SPLICE_F_NONBLOCK, SysResult, UserIovec, memfd_create, page_size, preadv,
    process_vm_readv_self, process_vm_writev_self, pwritev, readv, vmsplice, write_from, writev,
};
pub use malloc::{TOP_PAD, set_malloc_top_pad};
#[cfg(target_os = "linux")]
pub use pipe::{HostPipe, pipe2};
#[cfg(target_os = "linux")]
pub use region::{HostProt, HostRegion};

#[cfg(all(test, target_os = "linux"))]
mod tests;
