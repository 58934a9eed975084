//! The one table of workload functions: for every `[VAR =] FUNCTION(ARGS)`
//! statement its name, the kinds of its arguments, the shape of its result,
//! the profiles where it exists and the executor family that runs it.
//!
//! This module is data and types only: the parser (`lang`) resolves every
//! name against [`CALLS`] and builds typed statements, the linter
//! (`lint`) checks arguments and availability from it without running, and
//! the runner dispatches on [`CallDef::family`]. Nothing here imports an
//! executor.

use vmemu_mm::profile::Knobs;

/// What an argument must be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ArgKind {
    /// A user or kernel address expression.
    Addr,
    /// A length, size, position or count expression.
    Count,
    /// A page count (`nr_pages`): an `int`, not negative.
    NrPages,
    /// A byte value expression.
    Byte,
    /// `FOLL_*` names joined with `|`, or `0`.
    Foll,
    /// `PROT_*` names joined with `|`, or `0`.
    Prot,
    /// The name of an iterator (`iter NAME ...`).
    Iter,
    /// The name of a pipe (`pipe NAME`).
    Pipe,
    /// The name of a file (`file NAME ...`).
    File,
    /// A descriptor: a pipe, a file or a result variable holding one.
    Fd,
    /// A process: a result variable holding a pid, or an expression.
    Pid,
    /// A result variable holding pages (a gup result).
    Result,
    /// A fuse request id: a number or a result variable.
    Req,
    /// `O_DIRECT`, `SPLICE_F_*` or a number.
    OpenFlags,
    /// One of a fixed set of words.
    Word(&'static [&'static str]),
}

impl ArgKind {
    /// How an error message names the kind.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            ArgKind::Addr => "an address",
            ArgKind::Count => "a number",
            ArgKind::NrPages => "a page count",
            ArgKind::Byte => "a byte value",
            ArgKind::Foll => "FOLL_* flags joined with `|`, or 0",
            ArgKind::Prot => "PROT_* protections joined with `|`, or 0",
            ArgKind::Iter => "an iterator name",
            ArgKind::Pipe => "a pipe name",
            ArgKind::File => "a file name",
            ArgKind::Fd => "a pipe, a file or a descriptor variable",
            ArgKind::Pid => "a process (a pid variable)",
            ArgKind::Result => "a gup result variable",
            ArgKind::Req => "a request id",
            ArgKind::OpenFlags => "O_DIRECT, SPLICE_F_* or a number",
            ArgKind::Word(_) => "a word",
        }
    }
}

/// What a call's result variable holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    /// A return value (`-errno` on failure).
    Ret,
    /// Pages taken (references or pins) and the return value.
    Pages,
    /// Pages, the return value and `.start` (iov_iter page gathering).
    PagesStart,
    /// A descriptor or pid.
    Handle,
}

/// gup and uaccess on the current mm (`mm/gup.c`, `lib/usercopy.c`, mmap).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(non_camel_case_types)]
pub enum MmCall {
    /// `get_user_pages_fast`.
    GetUserPagesFast,
    /// `__get_user_pages_fast`: the IRQ-safe walk without fallback.
    __GetUserPagesFast,
    /// `get_user_pages_fast_only` (its 5.x name).
    GetUserPagesFastOnly,
    /// `pin_user_pages_fast`.
    PinUserPagesFast,
    /// `get_user_pages` under `mmap_read_lock`.
    GetUserPages,
    /// `get_user_pages_unlocked`.
    GetUserPagesUnlocked,
    /// `copy_to_user`.
    CopyToUser,
    /// `copy_from_user`.
    CopyFromUser,
    /// `clear_user`.
    ClearUser,
    /// `munmap`.
    Munmap,
    /// `mprotect`.
    Mprotect,
    /// `madvise(MADV_DONTNEED)`.
    MadviseDontneed,
    /// `access_ok`.
    AccessOk,
}

impl MmCall {
    /// A copy with a length (`copy_*_user`, `clear_user`).
    #[must_use]
    pub fn is_copy(self) -> bool {
        matches!(
            self,
            MmCall::CopyToUser | MmCall::CopyFromUser | MmCall::ClearUser
        )
    }

    /// The IRQ-safe walk that never falls back to the slow path.
    #[must_use]
    pub fn is_fast_only(self) -> bool {
        matches!(
            self,
            MmCall::__GetUserPagesFast | MmCall::GetUserPagesFastOnly
        )
    }
}

/// `iov_iter` primitives on one iterator (`lib/iov_iter.c`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IterCall {
    /// `copy_to_iter`.
    CopyToIter,
    /// `copy_from_iter`.
    CopyFromIter,
    /// `copy_from_iter_full`.
    CopyFromIterFull,
    /// `iov_iter_zero`.
    IovIterZero,
    /// `iov_iter_advance`.
    IovIterAdvance,
    /// `iov_iter_revert`.
    IovIterRevert,
    /// `iov_iter_get_pages` (before 6.0: does not advance).
    IovIterGetPages,
    /// `iov_iter_get_pages_alloc` (before 6.0).
    IovIterGetPagesAlloc,
    /// `iov_iter_get_pages2` (6.0+: advances).
    IovIterGetPages2,
    /// `iov_iter_get_pages_alloc2` (6.0+).
    IovIterGetPagesAlloc2,
    /// `iov_iter_extract_pages` (6.3+).
    IovIterExtractPages,
    /// `iov_iter_npages`.
    IovIterNpages,
    /// `iov_iter_alignment`.
    IovIterAlignment,
    /// `iov_iter_gap_alignment`.
    IovIterGapAlignment,
    /// `iov_iter_single_seg_count`.
    IovIterSingleSegCount,
    /// `iov_iter_for_each_page`.
    IovIterForEachPage,
    /// `iov_iter_fill_bvecs`.
    IovIterFillBvecs,
}

impl IterCall {
    /// A page-gathering call that does not move the iterator (before 6.0).
    #[must_use]
    pub fn is_get_pages1(self) -> bool {
        matches!(
            self,
            IterCall::IovIterGetPages | IterCall::IovIterGetPagesAlloc
        )
    }

    /// A page-gathering call that moves the iterator past what it took.
    #[must_use]
    pub fn is_get_pages2(self) -> bool {
        matches!(
            self,
            IterCall::IovIterGetPages2
                | IterCall::IovIterGetPagesAlloc2
                | IterCall::IovIterExtractPages
        )
    }
}

/// The pipe-buffer paths of `fs/splice.c` and `fs/pipe.c`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PipeCall {
    /// `vmsplice` into the pipe.
    Vmsplice,
    /// `readv` from the pipe.
    Readv,
    /// `writev` into the pipe.
    Writev,
    /// A `->splice_write` draining the pipe.
    SpliceWrite,
}

/// The `sys_*` system calls and processes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SysCall {
    /// `readv(2)`, `writev(2)`, `preadv(2)`, `pwritev(2)`.
    ReadWritev {
        /// A write (`writev`, `pwritev`).
        write: bool,
        /// Takes a position (`preadv`, `pwritev`).
        positioned: bool,
    },
    /// `vmsplice(2)`.
    Vmsplice,
    /// `process_vm_readv(2)` or `process_vm_writev(2)`.
    ProcessVmRw {
        /// `process_vm_writev`.
        write: bool,
    },
    /// Open the block device.
    OpenBlkdev,
    /// `open(2)` of a `file` (flags `O_DIRECT` or 0).
    Open,
    /// A new process with its own mm.
    NewProcess,
    /// Run as another process.
    SwitchTo,
    /// `getpid(2)`.
    Getpid,
    /// `fork(2)`.
    Fork,
    /// `exit(2)` of a process.
    Exit,
}

/// Caller models: kernel code consuming iov_iter pages. `viro` marks the
/// variant as rewritten in Al Viro's 2017 series.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallerCall {
    /// `__blockdev_direct_IO` (`fs/direct-io.c`).
    BlockdevDirectIo {
        /// The rewritten variant.
        viro: bool,
    },
    /// `blkdev_direct_IO` (`block/fops.c`).
    BlkdevDirectIo,
    /// `iomap_dio_rw` (`fs/iomap/direct-io.c`).
    IomapDioRw,
    /// `bio_iov_iter_get_pages` (`block/bio.c`).
    BioIovIterGetPages,
    /// `nfs_direct_read`/`nfs_direct_write` (`fs/nfs/direct.c`).
    NfsDirect {
        /// The write side.
        write: bool,
        /// The rewritten variant.
        viro: bool,
    },
    /// `ceph_direct_read_write` (`fs/ceph/file.c`).
    CephDirectReadWrite,
    /// `ceph_splice_write` via `iter_file_splice_write`.
    CephSpliceWrite,
    /// `zerocopy_sg_from_iter` (`net/core/datagram.c`).
    ZerocopySgFromIter {
        /// The rewritten variant.
        viro: bool,
    },
    /// `af_alg_make_sg` (`crypto/af_alg.c`).
    AfAlgMakeSg,
    /// `hash_sendmsg` (`crypto/algif_hash.c`).
    HashSendmsg,
    /// `fuse_direct_io` (`fs/fuse/file.c`).
    FuseDirectIo {
        /// The rewritten variant.
        viro: bool,
    },
    /// `default_file_splice_read`'s iterator into a pipe.
    IterToPipe {
        /// The rewritten variant.
        viro: bool,
    },
    /// Mount a fuse filesystem.
    FuseMount,
    /// A fault on a fuse-backed mapping (`filemap_fault` → `->readpage`).
    FuseFilemapFault,
    /// A fuse `LOOKUP` request.
    FuseLookup,
    /// The daemon reads a request (`fuse_dev_read`).
    FuseDevRead,
    /// The daemon answers (`fuse_dev_write`).
    FuseDevWrite,
    /// The daemon answers and the connection is aborted mid-copy.
    FuseDevWriteAbort,
    /// `fuse_abort_conn`.
    FuseAbortConn,
    /// The result of a fault waiting on a request.
    FuseFaultResult,
    /// The result of a `fuse_dev_write`.
    FuseDevWriteResult,
    /// A callback run under `mmap_sem` for the whole range.
    CallbackUnderMmapSem,
    /// A callback run page by page with the lock dropped.
    CallbackForEachPage,
}

/// Statements of the known-bug replays and byte-level helpers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BugCall {
    /// gup interleaved with `MADV_DONTNEED` (and a touch when `touch`).
    InterleaveDontneed {
        /// Touch the page again between the steps.
        touch: bool,
    },
    /// `access_remote_vm` (`/proc/PID/mem`).
    AccessRemoteVm,
    /// A byte of a file through the page cache.
    FileByte,
    /// `splice(2)` from a file into a pipe.
    SpliceRead,
    /// `tee(2)`.
    Tee,
    /// `page_ref_count` of the page mapped at an address.
    PageRefCount,
    /// `get_user`.
    GetUser,
    /// `put_user`.
    PutUser,
    /// `memset` of user memory.
    Memset,
    /// A byte of a page held by a gup result.
    PageByte,
}

/// The executor of a call and which of its operations: the runner
/// dispatches on this, never on a name's spelling.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Call {
    /// gup and uaccess on the current mm.
    Mm(MmCall),
    /// `iov_iter` primitives.
    Iter(IterCall),
    /// Pipe-buffer paths.
    Pipe(PipeCall),
    /// System calls and processes.
    Syscall(SysCall),
    /// Caller models.
    Caller(CallerCall),
    /// Known-bug replays.
    Bug(BugCall),
}

/// Where a call exists: a profile knob the linter and the runner evaluate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exists {
    /// In every profile (a call that fails in some returns an errno there).
    Always,
    /// Only where the non-advancing `iov_iter_get_pages*` exist (before 6.0).
    GetPages1,
    /// Only where `iov_iter_get_pages2` and friends exist (6.0+).
    GetPages2,
    /// Only where `iov_iter_revert` exists (4.11+).
    IovIterRevert,
}

impl Exists {
    /// Whether the call exists in a profile with these knobs.
    #[must_use]
    pub fn holds(self, k: &Knobs) -> bool {
        match self {
            Exists::Always => true,
            Exists::GetPages1 => !k.get_pages2,
            Exists::GetPages2 => k.get_pages2,
            Exists::IovIterRevert => k.iov_iter_revert,
        }
    }
}

/// One workload function.
#[derive(PartialEq, Eq, Debug)]
pub struct CallDef {
    /// The kernel's name.
    pub name: &'static str,
    /// Its arguments, in order.
    pub args: &'static [ArgKind],
    /// What `VAR =` receives.
    pub result: Shape,
    /// Who runs it, and which of its operations.
    pub call: Call,
    /// Where it exists.
    pub exists: Exists,
}

use ArgKind as K;
use Exists::{Always, GetPages1, GetPages2, IovIterRevert};
use Shape as S;

const fn c(
    name: &'static str,
    args: &'static [ArgKind],
    result: Shape,
    call: Call,
    exists: Exists,
) -> CallDef {
    CallDef {
        name,
        args,
        result,
        call,
        exists,
    }
}

const GUP: &[ArgKind] = &[K::Addr, K::NrPages, K::Foll];
const ADDR_LEN: &[ArgKind] = &[K::Addr, K::Count];
const IT_N: &[ArgKind] = &[K::Iter, K::Count];
const IT_N_N: &[ArgKind] = &[K::Iter, K::Count, K::Count];
const PIPE_IT: &[ArgKind] = &[K::Pipe, K::Iter];
const NONE: &[ArgKind] = &[];
const ABORT_AT: &[&str] = &["fill", "copy"];
const ABORT_COPY: &[&str] = &["fr_locked", "copy_iter", "args_kept"];

/// Every workload function (`docs/workloads.md` documents each).
pub static CALLS: &[CallDef] = &[
    // mm: gup and uaccess.
    c(
        "get_user_pages_fast",
        GUP,
        S::Pages,
        Call::Mm(MmCall::GetUserPagesFast),
        Always,
    ),
    c(
        "__get_user_pages_fast",
        GUP,
        S::Pages,
        Call::Mm(MmCall::__GetUserPagesFast),
        Always,
    ),
    c(
        "get_user_pages_fast_only",
        GUP,
        S::Pages,
        Call::Mm(MmCall::GetUserPagesFastOnly),
        Always,
    ),
    c(
        "pin_user_pages_fast",
        GUP,
        S::Pages,
        Call::Mm(MmCall::PinUserPagesFast),
        Always,
    ),
    c(
        "get_user_pages",
        GUP,
        S::Pages,
        Call::Mm(MmCall::GetUserPages),
        Always,
    ),
    c(
        "get_user_pages_unlocked",
        GUP,
        S::Pages,
        Call::Mm(MmCall::GetUserPagesUnlocked),
        Always,
    ),
    c(
        "copy_to_user",
        ADDR_LEN,
        S::Ret,
        Call::Mm(MmCall::CopyToUser),
        Always,
    ),
    c(
        "copy_from_user",
        ADDR_LEN,
        S::Ret,
        Call::Mm(MmCall::CopyFromUser),
        Always,
    ),
    c(
        "clear_user",
        ADDR_LEN,
        S::Ret,
        Call::Mm(MmCall::ClearUser),
        Always,
    ),
    c("munmap", ADDR_LEN, S::Ret, Call::Mm(MmCall::Munmap), Always),
    c(
        "mprotect",
        &[K::Addr, K::Count, K::Prot],
        S::Ret,
        Call::Mm(MmCall::Mprotect),
        Always,
    ),
    c(
        "madvise_dontneed",
        ADDR_LEN,
        S::Ret,
        Call::Mm(MmCall::MadviseDontneed),
        Always,
    ),
    c(
        "access_ok",
        ADDR_LEN,
        S::Ret,
        Call::Mm(MmCall::AccessOk),
        Always,
    ),
    // Pipes: splice paths.
    c(
        "vmsplice",
        PIPE_IT,
        S::Ret,
        Call::Pipe(PipeCall::Vmsplice),
        Always,
    ),
    c(
        "readv",
        PIPE_IT,
        S::Ret,
        Call::Pipe(PipeCall::Readv),
        Always,
    ),
    c(
        "writev",
        PIPE_IT,
        S::Ret,
        Call::Pipe(PipeCall::Writev),
        Always,
    ),
    c(
        "splice_write",
        &[K::Pipe, K::Count],
        S::Ret,
        Call::Pipe(PipeCall::SpliceWrite),
        Always,
    ),
    // iov_iter primitives.
    c(
        "copy_to_iter",
        IT_N,
        S::Ret,
        Call::Iter(IterCall::CopyToIter),
        Always,
    ),
    c(
        "copy_from_iter",
        IT_N,
        S::Ret,
        Call::Iter(IterCall::CopyFromIter),
        Always,
    ),
    c(
        "copy_from_iter_full",
        IT_N,
        S::Ret,
        Call::Iter(IterCall::CopyFromIterFull),
        Always,
    ),
    c(
        "iov_iter_zero",
        IT_N,
        S::Ret,
        Call::Iter(IterCall::IovIterZero),
        Always,
    ),
    c(
        "iov_iter_advance",
        IT_N,
        S::Ret,
        Call::Iter(IterCall::IovIterAdvance),
        Always,
    ),
    c(
        "iov_iter_revert",
        IT_N,
        S::Ret,
        Call::Iter(IterCall::IovIterRevert),
        IovIterRevert,
    ),
    c(
        "iov_iter_get_pages",
        IT_N_N,
        S::PagesStart,
        Call::Iter(IterCall::IovIterGetPages),
        GetPages1,
    ),
    c(
        "iov_iter_get_pages_alloc",
        IT_N,
        S::PagesStart,
        Call::Iter(IterCall::IovIterGetPagesAlloc),
        GetPages1,
    ),
    c(
        "iov_iter_get_pages2",
        IT_N_N,
        S::PagesStart,
        Call::Iter(IterCall::IovIterGetPages2),
        GetPages2,
    ),
    c(
        "iov_iter_get_pages_alloc2",
        IT_N,
        S::PagesStart,
        Call::Iter(IterCall::IovIterGetPagesAlloc2),
        GetPages2,
    ),
    c(
        "iov_iter_extract_pages",
        IT_N_N,
        S::PagesStart,
        Call::Iter(IterCall::IovIterExtractPages),
        GetPages2,
    ),
    c(
        "iov_iter_npages",
        IT_N,
        S::Ret,
        Call::Iter(IterCall::IovIterNpages),
        Always,
    ),
    c(
        "iov_iter_alignment",
        &[K::Iter],
        S::Ret,
        Call::Iter(IterCall::IovIterAlignment),
        Always,
    ),
    c(
        "iov_iter_gap_alignment",
        &[K::Iter],
        S::Ret,
        Call::Iter(IterCall::IovIterGapAlignment),
        Always,
    ),
    c(
        "iov_iter_single_seg_count",
        &[K::Iter],
        S::Ret,
        Call::Iter(IterCall::IovIterSingleSegCount),
        Always,
    ),
    c(
        "iov_iter_for_each_page",
        &[K::Iter, K::Count, K::Count, K::Count],
        S::Ret,
        Call::Iter(IterCall::IovIterForEachPage),
        Always,
    ),
    c(
        "iov_iter_fill_bvecs",
        IT_N_N,
        S::Ret,
        Call::Iter(IterCall::IovIterFillBvecs),
        Always,
    ),
    // System calls and processes.
    c(
        "sys_readv",
        &[K::Fd, K::Iter],
        S::Ret,
        Call::Syscall(SysCall::ReadWritev {
            write: false,
            positioned: false,
        }),
        Always,
    ),
    c(
        "sys_writev",
        &[K::Fd, K::Iter],
        S::Ret,
        Call::Syscall(SysCall::ReadWritev {
            write: true,
            positioned: false,
        }),
        Always,
    ),
    c(
        "sys_preadv",
        &[K::Fd, K::Iter, K::Count],
        S::Ret,
        Call::Syscall(SysCall::ReadWritev {
            write: false,
            positioned: true,
        }),
        Always,
    ),
    c(
        "sys_pwritev",
        &[K::Fd, K::Iter, K::Count],
        S::Ret,
        Call::Syscall(SysCall::ReadWritev {
            write: true,
            positioned: true,
        }),
        Always,
    ),
    c(
        "sys_vmsplice",
        &[K::Fd, K::Iter, K::OpenFlags],
        S::Ret,
        Call::Syscall(SysCall::Vmsplice),
        Always,
    ),
    c(
        "sys_process_vm_readv",
        &[K::Pid, K::Iter, K::Iter],
        S::Ret,
        Call::Syscall(SysCall::ProcessVmRw { write: false }),
        Always,
    ),
    c(
        "sys_process_vm_writev",
        &[K::Pid, K::Iter, K::Iter],
        S::Ret,
        Call::Syscall(SysCall::ProcessVmRw { write: true }),
        Always,
    ),
    c(
        "open",
        &[K::File, K::OpenFlags],
        S::Handle,
        Call::Syscall(SysCall::Open),
        Always,
    ),
    c(
        "open_blkdev",
        &[K::Count, K::OpenFlags],
        S::Handle,
        Call::Syscall(SysCall::OpenBlkdev),
        Always,
    ),
    c(
        "new_process",
        NONE,
        S::Handle,
        Call::Syscall(SysCall::NewProcess),
        Always,
    ),
    c(
        "switch_to",
        &[K::Pid],
        S::Ret,
        Call::Syscall(SysCall::SwitchTo),
        Always,
    ),
    c(
        "getpid",
        NONE,
        S::Handle,
        Call::Syscall(SysCall::Getpid),
        Always,
    ),
    c(
        "fork",
        NONE,
        S::Handle,
        Call::Syscall(SysCall::Fork),
        Always,
    ),
    c(
        "exit",
        &[K::Pid],
        S::Ret,
        Call::Syscall(SysCall::Exit),
        Always,
    ),
    // Caller models.
    c(
        "blockdev_direct_IO",
        &[K::Iter, K::Count, K::Count, K::Count],
        S::Ret,
        Call::Caller(CallerCall::BlockdevDirectIo { viro: false }),
        Always,
    ),
    c(
        "blockdev_direct_IO_viro",
        &[K::Iter, K::Count, K::Count, K::Count],
        S::Ret,
        Call::Caller(CallerCall::BlockdevDirectIo { viro: true }),
        Always,
    ),
    c(
        "blkdev_direct_IO",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::BlkdevDirectIo),
        Always,
    ),
    c(
        "iomap_dio_rw",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::IomapDioRw),
        Always,
    ),
    c(
        "bio_iov_iter_get_pages",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::BioIovIterGetPages),
        Always,
    ),
    c(
        "nfs_direct_write",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::NfsDirect {
            write: true,
            viro: false,
        }),
        Always,
    ),
    c(
        "nfs_direct_read",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::NfsDirect {
            write: false,
            viro: false,
        }),
        Always,
    ),
    c(
        "nfs_direct_write_viro",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::NfsDirect {
            write: true,
            viro: true,
        }),
        Always,
    ),
    c(
        "nfs_direct_read_viro",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::NfsDirect {
            write: false,
            viro: true,
        }),
        Always,
    ),
    c(
        "ceph_direct_read_write",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::CephDirectReadWrite),
        Always,
    ),
    c(
        "ceph_splice_write",
        &[K::Pipe, K::Count],
        S::Ret,
        Call::Caller(CallerCall::CephSpliceWrite),
        Always,
    ),
    c(
        "zerocopy_sg_from_iter",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::ZerocopySgFromIter { viro: false }),
        Always,
    ),
    c(
        "zerocopy_sg_from_iter_viro",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::ZerocopySgFromIter { viro: true }),
        Always,
    ),
    c(
        "af_alg_make_sg",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::AfAlgMakeSg),
        Always,
    ),
    c(
        "hash_sendmsg",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::HashSendmsg),
        Always,
    ),
    c(
        "fuse_direct_io",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::FuseDirectIo { viro: false }),
        Always,
    ),
    c(
        "fuse_direct_io_viro",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::FuseDirectIo { viro: true }),
        Always,
    ),
    c(
        "iter_to_pipe",
        PIPE_IT,
        S::Ret,
        Call::Caller(CallerCall::IterToPipe { viro: false }),
        Always,
    ),
    c(
        "iter_to_pipe_viro",
        PIPE_IT,
        S::Ret,
        Call::Caller(CallerCall::IterToPipe { viro: true }),
        Always,
    ),
    c(
        "fuse_mount",
        NONE,
        S::Ret,
        Call::Caller(CallerCall::FuseMount),
        Always,
    ),
    c(
        "fuse_filemap_fault",
        &[K::Addr],
        S::Handle,
        Call::Caller(CallerCall::FuseFilemapFault),
        Always,
    ),
    c(
        "fuse_lookup",
        NONE,
        S::Handle,
        Call::Caller(CallerCall::FuseLookup),
        Always,
    ),
    c(
        "fuse_dev_read",
        NONE,
        S::Handle,
        Call::Caller(CallerCall::FuseDevRead),
        Always,
    ),
    c(
        "fuse_dev_write",
        &[K::Req, K::Iter],
        S::Ret,
        Call::Caller(CallerCall::FuseDevWrite),
        Always,
    ),
    c(
        "fuse_dev_write_abort",
        &[K::Req, K::Iter, K::Word(ABORT_AT), K::Word(ABORT_COPY)],
        S::Ret,
        Call::Caller(CallerCall::FuseDevWriteAbort),
        Always,
    ),
    c(
        "fuse_abort_conn",
        NONE,
        S::Ret,
        Call::Caller(CallerCall::FuseAbortConn),
        Always,
    ),
    c(
        "fuse_fault_result",
        &[K::Req],
        S::Ret,
        Call::Caller(CallerCall::FuseFaultResult),
        Always,
    ),
    c(
        "fuse_dev_write_result",
        &[K::Req],
        S::Ret,
        Call::Caller(CallerCall::FuseDevWriteResult),
        Always,
    ),
    c(
        "callback_under_mmap_sem",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::CallbackUnderMmapSem),
        Always,
    ),
    c(
        "callback_for_each_page",
        IT_N,
        S::Ret,
        Call::Caller(CallerCall::CallbackForEachPage),
        Always,
    ),
    // Known-bug replays.
    c(
        "interleave_dontneed",
        &[K::Addr, K::Count, K::Count],
        S::Ret,
        Call::Bug(BugCall::InterleaveDontneed { touch: false }),
        Always,
    ),
    c(
        "interleave_dontneed_touch",
        &[K::Addr, K::Count, K::Count],
        S::Ret,
        Call::Bug(BugCall::InterleaveDontneed { touch: true }),
        Always,
    ),
    c(
        "access_remote_vm",
        &[K::Addr, K::Count, K::Foll],
        S::Ret,
        Call::Bug(BugCall::AccessRemoteVm),
        Always,
    ),
    c(
        "file_byte",
        &[K::File, K::Count],
        S::Ret,
        Call::Bug(BugCall::FileByte),
        Always,
    ),
    c(
        "splice_read",
        &[K::File, K::Count, K::Pipe, K::Count],
        S::Ret,
        Call::Bug(BugCall::SpliceRead),
        Always,
    ),
    c(
        "tee",
        &[K::Pipe, K::Pipe, K::Count],
        S::Ret,
        Call::Bug(BugCall::Tee),
        Always,
    ),
    c(
        "page_ref_count",
        &[K::Addr],
        S::Ret,
        Call::Bug(BugCall::PageRefCount),
        Always,
    ),
    c(
        "get_user",
        &[K::Addr],
        S::Ret,
        Call::Bug(BugCall::GetUser),
        Always,
    ),
    c(
        "put_user",
        &[K::Addr, K::Byte],
        S::Ret,
        Call::Bug(BugCall::PutUser),
        Always,
    ),
    c(
        "memset",
        &[K::Addr, K::Byte, K::Count],
        S::Ret,
        Call::Bug(BugCall::Memset),
        Always,
    ),
    c(
        "page_byte",
        &[K::Result, K::Count, K::Count],
        S::Ret,
        Call::Bug(BugCall::PageByte),
        Always,
    ),
];

/// The forms of the `show` statement, which inspects the state at its line
/// without changing it (no call: no parentheses, no result). The parser
/// reads them (`lang::stmt::parse_show`), the linter checks their names
/// and expressions, `show.rs` prints them; `docs/workloads.md` and
/// `docs/json.md` describe the output.
pub const SHOW_FORMS: [&str; 4] = ["show ADDR", "show NAME", "show mm", "show page NAME[i]"];

/// The function called `name`.
#[must_use]
pub fn lookup(name: &str) -> Option<&'static CallDef> {
    CALLS.iter().find(|d| d.name == name)
}

/// The candidate nearest to `word` by edit distance, if it is near enough
/// to be a likely misspelling ("did you mean").
#[must_use]
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `FOLL_*` names a workload may use.
pub fn foll_names() -> impl Iterator<Item = &'static str> {
    vmemu_mm::GupFlags::all().iter_names().map(|(n, _)| n)
}

/// Words an [`ArgKind::OpenFlags`] argument may name.
pub const OPEN_FLAGS: [&str; 5] = [
    "O_DIRECT",
    "SPLICE_F_MOVE",
    "SPLICE_F_NONBLOCK",
    "SPLICE_F_MORE",
    "SPLICE_F_GIFT",
];

/// `PROT_*` names a workload may use.
pub const PROT_NAMES: [&str; 4] = ["PROT_READ", "PROT_WRITE", "PROT_EXEC", "PROT_NONE"];

/// The protection named `name`, as a set to or into a `Prot`.
#[must_use]
pub fn prot_from_name(name: &str) -> Option<vmemu_mm::Prot> {
    let mut p = vmemu_mm::Prot::NONE;
    match name {
        "PROT_READ" => p.read = true,
        "PROT_WRITE" => p.write = true,
        "PROT_EXEC" => p.exec = true,
        "PROT_NONE" => {}
        _ => return None,
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_suggestions_find_typos() {
        let mut names: Vec<&str> = CALLS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a function is listed twice");
        let all = || CALLS.iter().map(|d| d.name);
        assert_eq!(
            suggest("get_user_pages_fsat", all()),
            Some("get_user_pages_fast")
        );
        assert_eq!(suggest("bfu", all()), None);
        assert_eq!(suggest("FOLL_WRTIE", foll_names()), Some("FOLL_WRITE"));
        assert_eq!(suggest("PROT_RAED", PROT_NAMES), Some("PROT_READ"));
    }

    #[test]
    fn every_name_resolves_to_its_own_operation() {
        // The runner dispatches on `call`: two names sharing one would run
        // the same code whatever the script said.
        for (i, a) in CALLS.iter().enumerate() {
            for b in &CALLS[i + 1..] {
                assert_ne!(
                    a.call, b.call,
                    "{} and {} share an operation",
                    a.name, b.name
                );
            }
        }
        // The table's existence rule is what the runner checks.
        let get_pages = lookup("iov_iter_get_pages").map(|d| d.exists);
        assert_eq!(get_pages, Some(Exists::GetPages1));
        assert_eq!(
            lookup("iov_iter_extract_pages").map(|d| d.call),
            Some(Call::Iter(IterCall::IovIterExtractPages))
        );
    }
}
