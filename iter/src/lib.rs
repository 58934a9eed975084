//! `vmemu-iter`: the iov_iter layer of v4.10 and modern kernels over the
//! emulated mm: iterator kinds and walkers ([`iov_iter`]), the copy and
//! query primitives ([`ops`]), page gathering old, proposed and modern
//! ([`get_pages`]) with a check that a gathered page run holds the
//! iterator's bytes ([`bytemap`]), pipes ([`pipe`], `fs/pipe.c`), the pipe
//! iterator ([`iter_pipe`], `ITER_PIPE` of `lib/iov_iter.c`), vmsplice, splice
//! and tee ([`splice`], `fs/splice.c`), the buffered page-cache read
//! ([`filemap`], `mm/filemap.c`), and the system calls over them with 6.13's
//! argument checks ([`syscalls`]).
//!
//! Everything works on a [`Sys`]: the emulated kernel ([`Machine`]) plus the
//! pipes that iterators and syscalls share.
//!
//! ```
//! use vmemu_arch::X86_64;
//! use vmemu_iter::{Sys, iov_iter::{Dir, IovIter, Iovec}};
//! use vmemu_mm::{Backing, KernelProfile, MapFlags, Prot};
//! let mut sys = Sys::<X86_64>::new(KernelProfile::parse("v4.10").unwrap(), 64 << 20).unwrap();
//! let mm = sys.m.current_mm();
//! let buf = sys.m.mmap(mm, None, 8192, Prot::RW, MapFlags::default(), Backing::Anon, "buf").unwrap();
//! let mut i = IovIter::init(&sys.m, Dir::Read, vec![Iovec { base: buf, len: 100 }], 100);
//! assert_eq!(sys.copy_to_iter(&[7u8; 100], &mut i), 100);
//! assert_eq!(i.count, 0);
//! ```

#![forbid(unsafe_code)]

pub mod bytemap;
pub mod callers;
pub mod check;
pub mod filemap;
pub mod get_pages;
pub mod iov_iter;
pub mod iter_pipe;
pub mod ops;
pub mod pipe;
pub mod segs;
pub mod splice;
pub mod syscalls;

use vmemu_arch::Arch;
use vmemu_mm::{KernelProfile, Machine, MachineError};

pub use iov_iter::{BioVec, Dir, IovIter, Iovec, IterType};
pub use pipe::Pipe;

/// Page-gathering traffic: how many `iov_iter_get_pages*` /
/// `iov_iter_extract_pages` calls were made and how many pages they returned.
/// Caller models report the difference across their run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct GatherStats {
    /// Calls.
    pub calls: u64,
    /// Pages returned (each with a reference or pin, unless the call takes
    /// none).
    pub pages: u64,
}

/// The emulated kernel plus the state iterators share (pipes).
#[derive(Debug)]
pub struct Sys<A: Arch> {
    /// The mm side.
    pub m: Machine<A>,
    /// Pipes, by id.
    pub pipes: Vec<Pipe>,
    /// Open files, by descriptor ([`syscalls`]).
    pub fds: Vec<syscalls::OpenFile>,
    /// Block devices, by number ([`syscalls`]).
    pub bdevs: Vec<syscalls::BlockDev>,
    /// Per file, where the data a fresh page cache page is filled with ends
    /// (its size when the syscall layer first touched it): beyond it a
    /// freshly read page is zero.
    pub file_data_end: std::collections::BTreeMap<vmemu_mm::mm::FileId, u64>,
    /// Per file, the file system it lives on (tmpfs when absent;
    /// [`callers::iomap`]).
    pub file_fs: std::collections::BTreeMap<vmemu_mm::mm::FileId, callers::iomap::FileFs>,
    /// Page-gathering traffic so far.
    pub gather: GatherStats,
    /// The workload declared `expect event infoleak`: pipe buffers holding
    /// bytes nobody wrote are its expected outcome, so the invariant checker
    /// does not report them (as `expect leaked` relaxes the leak check).
    pub expect_infoleak: bool,
}

impl<A: Arch> Sys<A> {
    /// Boots an emulated kernel with `phys_size` bytes of memory.
    pub fn new(profile: KernelProfile, phys_size: u64) -> Result<Self, MachineError> {
        Ok(Self {
            m: Machine::new(profile, phys_size)?,
            pipes: Vec::new(),
            fds: Vec::new(),
            bdevs: Vec::new(),
            file_data_end: std::collections::BTreeMap::new(),
            file_fs: std::collections::BTreeMap::new(),
            gather: GatherStats::default(),
            expect_infoleak: false,
        })
    }
}
