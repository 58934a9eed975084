//! System calls on raw user addresses: the iovec calls of the host
//! differential and the bench yardsticks, each with the write-target check
//! (crate docs) before the kernel may write user memory.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::{align_of, offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use crate::check::{check_kernel_writes, pipe_contents};
use crate::region::HostRegion;

/// What a system call returned: a count, or the errno it failed with.
pub type SysResult = Result<usize, i32>;

/// `SPLICE_F_NONBLOCK`: a `vmsplice` that does not wait on the pipe.
pub const SPLICE_F_NONBLOCK: u32 = 0x02;

/// One `struct iovec` as the kernel reads it: a user address and a length,
/// neither checked here (crate docs). Laid out as `struct iovec`, so a
/// slice of them is handed to the kernel as it is.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UserIovec {
    /// `iov_base`.
    pub base: usize,
    /// `iov_len`.
    pub len: usize,
}

const _: () = assert!(
    size_of::<UserIovec>() == size_of::<libc::iovec>()
        && align_of::<UserIovec>() == align_of::<libc::iovec>()
        && offset_of!(UserIovec, base) == offset_of!(libc::iovec, iov_base)
        && offset_of!(UserIovec, len) == offset_of!(libc::iovec, iov_len)
        && size_of::<usize>() == size_of::<*mut libc::c_void>()
);

/// The iovec array argument of a system call: `iov` itself (same layout).
fn iov_arg(iov: &[UserIovec]) -> (*const libc::iovec, libc::c_long) {
    (iov.as_ptr().cast(), iov.len() as libc::c_long)
}

/// This process's pid (`getpid()`).
pub(crate) fn own_pid() -> libc::pid_t {
    std::process::id() as libc::pid_t
}

/// A raw syscall's result.
fn sysret(r: libc::c_long) -> SysResult {
    if r < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as usize)
    }
}

/// `(pos_l, pos_h)` of `preadv`/`pwritev`.
fn pos_lo_hi(pos: i64) -> (libc::c_long, libc::c_long) {
    if cfg!(target_pointer_width = "64") {
        (pos as libc::c_long, 0)
    } else {
        (pos as libc::c_long, (pos >> 32) as libc::c_long)
    }
}

/// The host's page size (`sysconf(_SC_PAGESIZE)`).
#[must_use]
pub fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers and touches no memory of ours.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(r).expect("sysconf(_SC_PAGESIZE) fails on no Linux host")
}

/// `memfd_create(name, flags)`, as a `File`.
pub fn memfd_create(name: &CStr, flags: u32) -> io::Result<File> {
    // SAFETY: `name` is a NUL-terminated string live for the call; the
    // kernel only reads it.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `write(fd, addr, len)` from a raw user address (the kernel reads it, and
/// fails with `EFAULT` if it cannot).
pub fn write_from(fd: BorrowedFd<'_>, addr: usize, len: usize) -> SysResult {
    // SAFETY: the kernel only reads from `addr`, checking it (crate docs);
    // no Rust code dereferences it.
    let r = unsafe { libc::write(fd.as_raw_fd(), ptr::without_provenance(addr), len) };
    sysret(r as libc::c_long)
}

/// `readv(fd, iov)`. The kernel writes through `iov`.
///
/// # Panics
///
/// If `iov` names memory of this process outside `regions` (crate docs).
pub fn readv(fd: BorrowedFd<'_>, iov: &[UserIovec], regions: &[HostRegion]) -> SysResult {
    check_kernel_writes(&[iov], iov, pipe_contents(fd, false), regions);
    let (v, n) = iov_arg(iov);
    // SAFETY: `v` is the live iovec array `iov` of `n` entries; every
    // address the kernel may write through was checked above to be a page
    // of a region lent to this call or unmapped (crate docs).
    let r = unsafe { libc::syscall(libc::SYS_readv, libc::c_long::from(fd.as_raw_fd()), v, n) };
    sysret(r)
}

/// `writev(fd, iov)`: the kernel only reads through `iov`.
pub fn writev(fd: BorrowedFd<'_>, iov: &[UserIovec]) -> SysResult {
    let (v, n) = iov_arg(iov);
    // SAFETY: `v` is a live iovec array; the kernel only reads through it,
    // checking every address itself.
    let r = unsafe { libc::syscall(libc::SYS_writev, libc::c_long::from(fd.as_raw_fd()), v, n) };
    sysret(r)
}

/// `vmsplice(fd, iov, flags)`. Into a pipe's write end it takes references
/// to the user pages; from a read end it writes into them, so `iov` is
/// checked as if the kernel wrote through it.
///
/// # Panics
///
/// If `iov` names memory of this process outside `regions` (crate docs).
pub fn vmsplice(
    fd: BorrowedFd<'_>,
    iov: &[UserIovec],
    flags: u32,
    regions: &[HostRegion],
) -> SysResult {
    let nonblock = flags & SPLICE_F_NONBLOCK != 0;
    check_kernel_writes(&[iov], iov, pipe_contents(fd, nonblock), regions);
    // SAFETY: every address the kernel may write through was checked above
    // (crate docs).
    unsafe { vmsplice_unchecked(fd, iov, flags) }
}

/// `vmsplice(fd, iov, flags)` with no write-target check.
///
/// # Safety
///
/// The kernel must not be able to write memory a Rust value lives in
/// through `iov`: `fd` is a pipe's write end (the kernel then only takes
/// references to the pages), or `iov` passed the write-target check.
pub(crate) unsafe fn vmsplice_unchecked(
    fd: BorrowedFd<'_>,
    iov: &[UserIovec],
    flags: u32,
) -> SysResult {
    let (v, n) = iov_arg(iov);
    // SAFETY: `v` is a live iovec array; what the kernel may write through
    // it is the caller's contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_vmsplice,
            libc::c_long::from(fd.as_raw_fd()),
            v,
            n,
            libc::c_long::from(flags),
        )
    };
    sysret(r)
}

/// `preadv(fd, iov, pos)`. The kernel (or a device, for `O_DIRECT`) writes
/// through `iov`.
///
/// # Panics
///
/// If `iov` names memory of this process outside `regions` (crate docs).
pub fn preadv(
    fd: BorrowedFd<'_>,
    iov: &[UserIovec],
    pos: i64,
    regions: &[HostRegion],
) -> SysResult {
    check_kernel_writes(&[iov], iov, None, regions);
    // SAFETY: every address the kernel may write through was checked above
    // (crate docs).
    unsafe { p_rw_v(libc::SYS_preadv, fd, iov, pos) }
}

/// `pwritev(fd, iov, pos)`: the kernel only reads through `iov`.
pub fn pwritev(fd: BorrowedFd<'_>, iov: &[UserIovec], pos: i64) -> SysResult {
    // SAFETY: the kernel only reads through `iov`, checking every address
    // itself.
    unsafe { p_rw_v(libc::SYS_pwritev, fd, iov, pos) }
}

/// `preadv` or `pwritev` (`nr`).
///
/// # Safety
///
/// For `preadv`, `iov` passed the write-target check.
unsafe fn p_rw_v(nr: libc::c_long, fd: BorrowedFd<'_>, iov: &[UserIovec], pos: i64) -> SysResult {
    let (v, n) = iov_arg(iov);
    let (lo, hi) = pos_lo_hi(pos);
    // SAFETY: `v` is a live iovec array; what the kernel may write through
    // it is the caller's contract.
    let r = unsafe { libc::syscall(nr, libc::c_long::from(fd.as_raw_fd()), v, n, lo, hi) };
    sysret(r)
}

/// `process_vm_readv` or `process_vm_writev` (`nr`) on this process.
///
/// # Safety
///
/// The side the kernel writes (`local` for a read, `remote` for a write)
/// passed the write-target check, or lies in pages a [`HostRegion`] still
/// has mapped.
pub(crate) unsafe fn process_vm(
    nr: libc::c_long,
    local: &[UserIovec],
    remote: &[UserIovec],
    flags: u64,
) -> SysResult {
    let ((l, ln), (r, rn)) = (iov_arg(local), iov_arg(remote));
    // SAFETY: both iovec arrays are live; what the kernel may write through
    // them is the caller's contract.
    let ret = unsafe {
        libc::syscall(
            nr,
            libc::c_long::from(own_pid()),
            l,
            ln,
            r,
            rn,
            flags as libc::c_long,
        )
    };
    sysret(ret)
}

/// `process_vm_readv(getpid(), local, remote, flags)`: copies from
/// `remote` to `local`, both in this process.
///
/// # Panics
///
/// If `local` names memory of this process outside `regions` (crate docs).
pub fn process_vm_readv_self(
    local: &[UserIovec],
    remote: &[UserIovec],
    flags: u64,
    regions: &[HostRegion],
) -> SysResult {
    check_kernel_writes(&[local, remote], local, None, regions);
    // SAFETY: `local`, the side the kernel writes, was checked above.
    unsafe { process_vm(libc::SYS_process_vm_readv, local, remote, flags) }
}

/// `process_vm_writev(getpid(), local, remote, flags)`: copies from
/// `local` to `remote`, both in this process.
///
/// # Panics
///
/// If `remote` names memory of this process outside `regions` (crate docs).
pub fn process_vm_writev_self(
    local: &[UserIovec],
    remote: &[UserIovec],
    flags: u64,
    regions: &[HostRegion],
) -> SysResult {
    check_kernel_writes(&[local, remote], remote, None, regions);
    // SAFETY: `remote`, the side the kernel writes, was checked above.
    unsafe { process_vm(libc::SYS_process_vm_writev, local, remote, flags) }
}
