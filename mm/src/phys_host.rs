//! Host memory and host system calls: the one place where this workspace
//! reaches memory outside Rust's references, and so the one module (with
//! its parent `phys`) allowed to hold `unsafe`.
//!
//! # Why this module is the boundary
//!
//! Everything the emulator calls "physical memory" is host memory: the
//! guest memory of vm-memory behind [`PhysMem`](super::PhysMem) is an
//! anonymous mapping of this process. The physical-memory module is
//! therefore where the project keeps the relationship between host
//! mappings and Rust values, and the project rule puts every way of
//! touching host memory that the borrow checker cannot see here, where it
//! can be reviewed in one place. The host differential of `vmemu-harness`
//! (`diff_host`) needs exactly that: it hands the host kernel iovecs that
//! point at unmapped, `PROT_NONE`, read-only and kernel addresses, which
//! slice-based APIs (std, `rustix`, `nix`: `IoSlice`) cannot describe, and
//! it maps regions whose pages it protects and punches. This module offers
//! that as a small safe API: system calls that take user addresses as plain
//! `usize`s ([`UserIovec`]), and [`HostRegion`], an owned anonymous mapping
//! whose bytes are only ever moved by the kernel.
//!
//! # Soundness
//!
//! * No function here dereferences a caller's address in Rust. Addresses
//!   become pointers without provenance (`ptr::without_provenance_mut`) and
//!   travel only to the kernel, which checks them itself: an unmapped or
//!   protected address is `EFAULT`, never undefined behaviour here.
//! * A call in which the kernel only *reads* user memory (`write`,
//!   `writev`, `pwritev`, the local side of `process_vm_writev`, the remote
//!   side of `process_vm_readv`) cannot change a Rust value, whatever the
//!   addresses.
//! * A call in which the kernel may *write* user memory (`readv`,
//!   `preadv`, `vmsplice` (checked as if it wrote: it does when the fd is a
//!   pipe's read end), the local side of `process_vm_readv`, the remote side
//!   of `process_vm_writev`) would break Rust's guarantees if an address
//!   named memory Rust owns (a heap block, a stack, a static). So before
//!   such a call the bytes the kernel may write are walked in the order it
//!   fills them: the iovecs front to back, cut off after what the source
//!   holds when that is known (the contents of a pipe a read cannot wait
//!   on, `FIONREAD`). Each byte must lie in a mapped page of a
//!   [`HostRegion`] the caller lends to the call, or be unmapped according
//!   to `/proc/self/maps` (the kernel faults there: `EFAULT` or a short
//!   count). A punched page of a lent region ends the walk: the copy faults
//!   there, and the kernel never writes past the first fault (it returns
//!   the length of the prefix it filled). An unmapped byte elsewhere does
//!   not end it (a stack above it could grow down into it; such fresh stack
//!   pages hold no Rust value yet, but the walk goes on to what follows).
//!   The one exception is a call the kernel rejects before copying
//!   anything: an `iov_len` above `isize::MAX` in any iovec array is
//!   `EINVAL` from `iovec_from_user()` (`readv(2)`, `process_vm_readv(2)`:
//!   "overflows a ssize_t value"). A call that fails the check panics
//!   instead of being made.
//! * A [`HostRegion`] owns its mapping. Rust never forms a reference into
//!   it: its bytes are read and written only by the kernel
//!   (`process_vm_readv`/`process_vm_writev` on this process, bounds-checked
//!   against the region), and `mprotect`/`munmap` only ever act on pages the
//!   region still has mapped. Whatever the kernel or a test does to those
//!   pages cannot invalidate a Rust value.
//!
//! What the check cannot rule out: it is a snapshot. A thread that maps
//! memory between the check and the system call (into a hole punched in a
//! region, or at an unmapped fixed address a call names) could be handed
//! pages the kernel then writes, and a thread or process that writes to the
//! pipe meanwhile makes the copy longer than checked. The harness runs its
//! host cases on one thread, with nothing else mapping memory or holding
//! the pipes; any other caller must do the same.

#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

/// What a system call returned: a count, or the errno it failed with.
pub type SysResult = Result<usize, i32>;

/// `SPLICE_F_NONBLOCK`: a `vmsplice` that does not wait on the pipe.
pub const SPLICE_F_NONBLOCK: u32 = 0x02;

/// One `struct iovec` as the kernel reads it: a user address and a length,
/// neither checked here (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UserIovec {
    /// `iov_base`.
    pub base: usize,
    /// `iov_len`.
    pub len: usize,
}

/// This process's pid (`getpid()`).
fn own_pid() -> libc::pid_t {
    std::process::id() as libc::pid_t
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A raw syscall's result.
fn sysret(r: libc::c_long) -> SysResult {
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as usize)
    }
}

fn raw_iovecs(v: &[UserIovec]) -> Vec<libc::iovec> {
    v.iter()
        .map(|s| libc::iovec {
            iov_base: ptr::without_provenance_mut(s.base),
            iov_len: s.len,
        })
        .collect()
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

/// `pipe2(flags)`: the read end and the write end.
pub fn pipe2(flags: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a live, writable array of two ints, which is all the
    // kernel writes; invalid flags are EINVAL.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), flags) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by the kernel for us and nothing
    // else owns them, so each `OwnedFd` is their only owner.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
    // SAFETY: the kernel only reads from `addr`, checking it (module docs);
    // no Rust code dereferences it.
    let r = unsafe { libc::write(fd.as_raw_fd(), ptr::without_provenance(addr), len) };
    sysret(r as libc::c_long)
}

/// `readv(fd, iov)`. The kernel writes through `iov`.
///
/// # Panics
///
/// If `iov` names memory of this process outside `regions` (module docs).
pub fn readv(fd: BorrowedFd<'_>, iov: &[UserIovec], regions: &[HostRegion]) -> SysResult {
    check_kernel_writes(&[iov], iov, pipe_contents(fd, false), regions);
    let v = raw_iovecs(iov);
    // SAFETY: `v` is a live iovec array of `v.len()` entries; every address
    // the kernel may write through was checked above to be a page of a
    // region lent to this call or unmapped (module docs).
    let r = unsafe {
        libc::syscall(
            libc::SYS_readv,
            libc::c_long::from(fd.as_raw_fd()),
            v.as_ptr(),
            v.len() as libc::c_long,
        )
    };
    sysret(r)
}

/// `writev(fd, iov)`: the kernel only reads through `iov`.
pub fn writev(fd: BorrowedFd<'_>, iov: &[UserIovec]) -> SysResult {
    let v = raw_iovecs(iov);
    // SAFETY: `v` is a live iovec array; the kernel only reads through it,
    // checking every address itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_writev,
            libc::c_long::from(fd.as_raw_fd()),
            v.as_ptr(),
            v.len() as libc::c_long,
        )
    };
    sysret(r)
}

/// `vmsplice(fd, iov, flags)`. Into a pipe's write end it takes references
/// to the user pages; from a read end it writes into them, so `iov` is
/// checked as if the kernel wrote through it.
///
/// # Panics
///
/// If `iov` names memory of this process outside `regions` (module docs).
pub fn vmsplice(
    fd: BorrowedFd<'_>,
    iov: &[UserIovec],
    flags: u32,
    regions: &[HostRegion],
) -> SysResult {
    let nonblock = flags & SPLICE_F_NONBLOCK != 0;
    check_kernel_writes(&[iov], iov, pipe_contents(fd, nonblock), regions);
    let v = raw_iovecs(iov);
    // SAFETY: `v` is a live iovec array; every address the kernel may write
    // through was checked above (module docs).
    let r = unsafe {
        libc::syscall(
            libc::SYS_vmsplice,
            libc::c_long::from(fd.as_raw_fd()),
            v.as_ptr(),
            v.len() as libc::c_long,
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
/// If `iov` names memory of this process outside `regions` (module docs).
pub fn preadv(
    fd: BorrowedFd<'_>,
    iov: &[UserIovec],
    pos: i64,
    regions: &[HostRegion],
) -> SysResult {
    check_kernel_writes(&[iov], iov, None, regions);
    let v = raw_iovecs(iov);
    let (lo, hi) = pos_lo_hi(pos);
    // SAFETY: `v` is a live iovec array; every address the kernel may write
    // through was checked above (module docs).
    let r = unsafe {
        libc::syscall(
            libc::SYS_preadv,
            libc::c_long::from(fd.as_raw_fd()),
            v.as_ptr(),
            v.len() as libc::c_long,
            lo,
            hi,
        )
    };
    sysret(r)
}

/// `pwritev(fd, iov, pos)`: the kernel only reads through `iov`.
pub fn pwritev(fd: BorrowedFd<'_>, iov: &[UserIovec], pos: i64) -> SysResult {
    let v = raw_iovecs(iov);
    let (lo, hi) = pos_lo_hi(pos);
    // SAFETY: `v` is a live iovec array; the kernel only reads through it,
    // checking every address itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pwritev,
            libc::c_long::from(fd.as_raw_fd()),
            v.as_ptr(),
            v.len() as libc::c_long,
            lo,
            hi,
        )
    };
    sysret(r)
}

fn process_vm(
    nr: libc::c_long,
    local: &[UserIovec],
    remote: &[UserIovec],
    flags: u64,
) -> SysResult {
    let (l, r) = (raw_iovecs(local), raw_iovecs(remote));
    // SAFETY: both iovec arrays are live; the callers checked every address
    // the kernel may write through (module docs).
    let ret = unsafe {
        libc::syscall(
            nr,
            libc::c_long::from(own_pid()),
            l.as_ptr(),
            l.len() as libc::c_long,
            r.as_ptr(),
            r.len() as libc::c_long,
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
/// If `local` names memory of this process outside `regions` (module docs).
pub fn process_vm_readv_self(
    local: &[UserIovec],
    remote: &[UserIovec],
    flags: u64,
    regions: &[HostRegion],
) -> SysResult {
    check_kernel_writes(&[local, remote], local, None, regions);
    process_vm(libc::SYS_process_vm_readv, local, remote, flags)
}

/// `process_vm_writev(getpid(), local, remote, flags)`: copies from
/// `local` to `remote`, both in this process.
///
/// # Panics
///
/// If `remote` names memory of this process outside `regions` (module docs).
pub fn process_vm_writev_self(
    local: &[UserIovec],
    remote: &[UserIovec],
    flags: u64,
    regions: &[HostRegion],
) -> SysResult {
    check_kernel_writes(&[local, remote], remote, None, regions);
    process_vm(libc::SYS_process_vm_writev, local, remote, flags)
}

/// Checks that the kernel cannot write into memory Rust owns, and panics
/// if it could.
///
/// Unless some iovec of the call (`all`) has a length above `isize::MAX`
/// (the kernel then rejects the call with `EINVAL` before copying), the
/// bytes of `targets` are walked in order, as the kernel fills them, for at
/// most `bound` bytes (what the source holds, when known):
///
/// * a byte in a mapped page of one of `regions` is fine;
/// * a byte in a punched page of one of `regions` ends the walk: the copy
///   faults there and stops (the kernel copies front to back and returns
///   the count of the prefix it filled);
/// * any other byte must be unmapped in `/proc/self/maps` (the copy faults
///   there; the walk goes on, being conservative).
///
/// # Panics
///
/// If a byte is in some other mapping of this process, or
/// `/proc/self/maps` cannot be read.
fn check_kernel_writes(
    all: &[&[UserIovec]],
    targets: &[UserIovec],
    bound: Option<usize>,
    regions: &[HostRegion],
) {
    if all
        .iter()
        .flat_map(|v| v.iter())
        .any(|s| s.len > isize::MAX as usize)
    {
        return;
    }
    let live: Vec<(usize, usize)> = regions.iter().flat_map(HostRegion::live_ranges).collect();
    let spans: Vec<(usize, usize)> = regions.iter().map(HostRegion::span_range).collect();
    let within = |set: &[(usize, usize)], a: usize| {
        set.iter()
            .find(|&&(lo, hi)| lo <= a && a < hi)
            .map(|&(_, hi)| hi)
    };
    let mut maps: Option<Vec<(usize, usize)>> = None;
    let mut left = bound.unwrap_or(usize::MAX);
    'walk: for s in targets {
        if left == 0 {
            break;
        }
        let len = s.len.min(left);
        left -= len;
        let (mut a, b) = (s.base, s.base.saturating_add(len));
        while a < b {
            if let Some(hi) = within(&live, a) {
                a = hi;
                continue;
            }
            if within(&spans, a).is_some() {
                break 'walk;
            }
            // Outside the regions, up to the next region or the end.
            let next = spans
                .iter()
                .map(|&(lo, _)| lo)
                .filter(|&lo| lo > a)
                .fold(b, usize::min);
            let maps = maps.get_or_insert_with(|| {
                own_mappings().expect("reading /proc/self/maps to check a system call's iovecs")
            });
            if let Some(&(lo, hi)) = maps.iter().find(|&&(lo, hi)| lo < next && a < hi) {
                panic!(
                    "iovec {:#x}+{:#x}: the kernel could write into {:#x}..{:#x}, memory of \
                     this process outside the regions lent to the call",
                    s.base,
                    s.len,
                    a.max(lo),
                    next.min(hi)
                );
            }
            a = next;
        }
    }
}

/// The bytes a pipe holds (`FIONREAD`), if `fd` is a pipe that a read
/// cannot wait on: opened `O_NONBLOCK`, or `nonblocking_call`. `None` for
/// anything else: no bound.
///
/// That is all a `readv` (or a `vmsplice` to user memory) of it can copy,
/// unless another thread or process writes to the pipe meanwhile (module
/// docs). For `vmsplice` into a pipe the kernel writes no user memory at
/// all, so any bound is right.
fn pipe_contents(fd: BorrowedFd<'_>, nonblocking_call: bool) -> Option<usize> {
    let raw = fd.as_raw_fd();
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` into `st`, a live local of
    // that type, and nothing else.
    if unsafe { libc::fstat(raw, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return None;
    }
    // SAFETY: F_GETFL takes no pointer and touches no memory of ours.
    let fl = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if !nonblocking_call && (fl < 0 || fl & libc::O_NONBLOCK == 0) {
        return None;
    }
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, a live local.
    let r = unsafe { libc::ioctl(raw, libc::FIONREAD, &raw mut n) };
    if r != 0 {
        return None;
    }
    usize::try_from(n).ok()
}

/// The mappings of this process, from `/proc/self/maps`.
fn own_mappings() -> io::Result<Vec<(usize, usize)>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let parsed = line
            .split_once(' ')
            .and_then(|(range, _)| range.split_once('-'))
            .and_then(|(lo, hi)| {
                Some((
                    usize::from_str_radix(lo, 16).ok()?,
                    usize::from_str_radix(hi, 16).ok()?,
                ))
            });
        match parsed {
            Some(r) => out.push(r),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected /proc/self/maps line {line:?}"),
                ));
            }
        }
    }
    Ok(out)
}

/// Protection of a region's pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HostProt {
    /// `PROT_NONE`.
    None,
    /// `PROT_READ`.
    Read,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// An anonymous private mapping of this process that Rust never references:
/// its bytes are moved only by the kernel ([`read`](Self::read) and
/// [`write`](Self::write) use `process_vm_readv`/`process_vm_writev` on this
/// process), so its pages can be protected, punched and handed to system
/// calls at will. Dropping it unmaps the pages it still has mapped.
#[derive(Debug)]
pub struct HostRegion {
    base: usize,
    page: usize,
    /// Per page: still mapped by this region (false: punched).
    mapped: Vec<bool>,
}

impl HostRegion {
    /// Maps `pages` fresh read-write pages wherever the kernel chooses.
    pub fn map_anon(pages: usize) -> io::Result<Self> {
        let page = page_size();
        let len = pages
            .checked_mul(page)
            .filter(|&l| l > 0)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: no fixed address: the kernel picks a range nothing is
        // mapped at, so the new mapping cannot overlap memory Rust owns; the
        // call touches no memory of ours.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: p.addr(),
            page,
            mapped: vec![true; pages],
        })
    }

    /// The address of the first page.
    #[must_use]
    pub fn base(&self) -> usize {
        self.base
    }

    /// Length in pages (punched ones included).
    #[must_use]
    pub fn pages(&self) -> usize {
        self.mapped.len()
    }

    /// The region's addresses, punched pages included.
    fn span_range(&self) -> (usize, usize) {
        (self.base, self.base + self.pages() * self.page)
    }

    /// Maximal runs of still-mapped pages, as address ranges.
    fn live_ranges(&self) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (k, _) in self.mapped.iter().enumerate().filter(|(_, m)| **m) {
            let lo = self.base + k * self.page;
            match out.last_mut() {
                Some(last) if last.1 == lo => last.1 = lo + self.page,
                _ => out.push((lo, lo + self.page)),
            }
        }
        out
    }

    /// Checks that pages `first..first + n` exist and are all still mapped;
    /// returns their address and length.
    fn mapped_pages(&self, first: usize, n: usize) -> io::Result<(usize, usize)> {
        let end = first.checked_add(n).filter(|&e| e <= self.pages() && n > 0);
        match end {
            Some(end) if self.mapped[first..end].iter().all(|&m| m) => {
                Ok((self.base + first * self.page, n * self.page))
            }
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    /// `mprotect` of pages `first..first + n` (all still mapped).
    pub fn protect(&mut self, first: usize, n: usize, prot: HostProt) -> io::Result<()> {
        let (at, len) = self.mapped_pages(first, n)?;
        let prot = match prot {
            HostProt::None => libc::PROT_NONE,
            HostProt::Read => libc::PROT_READ,
            HostProt::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        };
        // SAFETY: the range is pages this region mapped and still has
        // mapped; no Rust reference points into them, so changing their
        // protection cannot affect a Rust value.
        let r = unsafe { libc::mprotect(ptr::without_provenance_mut(at), len, prot) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `munmap` of pages `first..first + n` (all still mapped), punching a
    /// hole. The region never touches those addresses again.
    pub fn unmap(&mut self, first: usize, n: usize) -> io::Result<()> {
        let (at, len) = self.mapped_pages(first, n)?;
        // SAFETY: as for `protect`: pages of this region, still mapped,
        // never referenced by Rust.
        let r = unsafe { libc::munmap(ptr::without_provenance_mut(at), len) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        self.mapped[first..first + n].fill(false);
        Ok(())
    }

    /// `[off, off + len)` as an iovec, or an error unless it lies in pages
    /// of the region that are still mapped (a punched page may hold
    /// someone else's mapping by now).
    fn span(&self, off: usize, len: usize) -> io::Result<libc::iovec> {
        let ok = match off.checked_add(len) {
            Some(end) if end <= self.pages() * self.page => {
                len == 0
                    || self.mapped[off / self.page..end.div_ceil(self.page)]
                        .iter()
                        .all(|&m| m)
            }
            _ => false,
        };
        if !ok {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        Ok(libc::iovec {
            iov_base: ptr::without_provenance_mut(self.base + off),
            iov_len: len,
        })
    }

    /// Copies `data` to byte `off` of the region (`process_vm_writev` on
    /// this process: a read-only page is an error, not a fault; so is a
    /// range outside the region or over a punched page).
    pub fn write(&self, off: usize, data: &[u8]) -> io::Result<()> {
        let remote = self.span(off, data.len())?;
        let local = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        // SAFETY: the kernel reads `data` (a live slice of that length) and
        // writes only to `remote`, which `span` checked to lie in pages this
        // region still has mapped; Rust never references them.
        let n = unsafe {
            libc::process_vm_writev(own_pid(), &raw const local, 1, &raw const remote, 1, 0)
        };
        full(n, data.len())
    }

    /// Copies bytes `off..off + buf.len()` of the region into `buf`
    /// (`process_vm_readv` on this process; a `PROT_NONE` page, a range
    /// outside the region or over a punched page is an error).
    pub fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let remote = self.span(off, buf.len())?;
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: the kernel writes only into `buf`, a live slice we
        // borrow mutably, of the length given; it reads `remote`, which
        // `span` checked to lie in pages this region still has mapped.
        let n = unsafe {
            libc::process_vm_readv(own_pid(), &raw const local, 1, &raw const remote, 1, 0)
        };
        full(n, buf.len())
    }
}

/// A `process_vm_*` result that must have moved `want` bytes.
fn full(n: isize, want: usize) -> io::Result<()> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else if n as usize != want {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("moved {n} of {want} bytes"),
        ))
    } else {
        Ok(())
    }
}

impl Drop for HostRegion {
    fn drop(&mut self) {
        for (lo, hi) in self.live_ranges() {
            // SAFETY: pages this region mapped and still has mapped (punched
            // ones are skipped: something else may be mapped there by now);
            // nothing references them.
            unsafe { libc::munmap(ptr::without_provenance_mut(lo), hi - lo) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn region_bytes_move_through_the_kernel() {
        let p = page_size();
        let mut r = HostRegion::map_anon(3).unwrap();
        r.write(p - 2, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 6];
        r.read(p - 3, &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3, 4, 0]);
        assert!(r.read(3 * p - 1, &mut b).is_err(), "past the end");
        r.protect(1, 1, HostProt::Read).unwrap();
        assert!(r.write(p, &[9]).is_err(), "read-only page");
        r.unmap(2, 1).unwrap();
        assert!(r.read(2 * p, &mut b[..1]).is_err(), "punched page");
        assert!(r.unmap(2, 1).is_err(), "already punched");
        assert!(r.protect(1, 2, HostProt::None).is_err(), "range has a hole");
    }

    #[test]
    fn syscalls_return_counts_and_errnos() {
        let r = HostRegion::map_anon(2).unwrap();
        let p = page_size();
        r.write(0, b"hello").unwrap();
        let (rd, wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
        let iov = [UserIovec {
            base: r.base(),
            len: 5,
        }];
        assert_eq!(writev(wr.as_fd(), &iov), Ok(5));
        let into = [UserIovec {
            base: r.base() + p,
            len: 5,
        }];
        assert_eq!(readv(rd.as_fd(), &into, std::slice::from_ref(&r)), Ok(5));
        let mut b = [0u8; 5];
        r.read(p, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert_eq!(write_from(wr.as_fd(), 0x1000, 10), Err(libc::EFAULT));
        // A kernel address: checked by the kernel, not mapped here.
        let k = [UserIovec {
            base: 0xffff_8880_0000_0000,
            len: 8,
        }];
        assert_eq!(process_vm_readv_self(&k, &iov, 0, &[]), Err(libc::EFAULT));
    }

    #[test]
    #[should_panic(expected = "outside the regions lent to the call")]
    fn kernel_writes_into_rust_memory_are_refused() {
        let v = [0u8; 64];
        let (rd, wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
        File::from(wr).write_all(&[5; 10]).unwrap();
        let iov = [UserIovec {
            base: v.as_ptr().addr(),
            len: v.len(),
        }];
        let _ = readv(rd.as_fd(), &iov, &[]);
    }

    #[test]
    fn a_pipe_read_is_checked_as_far_as_the_pipe_holds() {
        let p = page_size();
        let r = HostRegion::map_anon(1).unwrap();
        let v = [0u8; 64];
        let (rd, wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
        let mut wr = File::from(wr);
        wr.write_all(&[5; 10]).unwrap();
        // Runs past the region into `v`, but the pipe holds only 10 bytes.
        let iov = [
            UserIovec {
                base: r.base() + p - 10,
                len: 10,
            },
            UserIovec {
                base: v.as_ptr().addr(),
                len: v.len(),
            },
        ];
        let regions = std::slice::from_ref(&r);
        assert_eq!(readv(rd.as_fd(), &iov, regions), Ok(10));
        assert_eq!(vmsplice(rd.as_fd(), &iov, SPLICE_F_NONBLOCK, regions), Err(libc::EAGAIN));
        assert_eq!(v, [0; 64]);
    }

    #[test]
    fn a_punched_page_ends_the_copy() {
        let p = page_size();
        let mut r = HostRegion::map_anon(2).unwrap();
        r.unmap(1, 1).unwrap();
        let v = [0u8; 64];
        let (rd, wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
        let mut wr = File::from(wr);
        wr.write_all(&vec![5; 3 * p]).unwrap();
        // The copy stops at the hole and never reaches `v`.
        let iov = [
            UserIovec {
                base: r.base(),
                len: 2 * p,
            },
            UserIovec {
                base: v.as_ptr().addr(),
                len: v.len(),
            },
        ];
        assert_eq!(readv(rd.as_fd(), &iov, std::slice::from_ref(&r)), Ok(p));
        assert_eq!(v, [0; 64]);
    }

    #[test]
    #[should_panic(expected = "outside the regions lent to the call")]
    fn a_blocking_pipe_gives_no_bound() {
        let v = [0u8; 64];
        let (rd, _wr) = pipe2(libc::O_CLOEXEC).unwrap();
        let iov = [UserIovec {
            base: v.as_ptr().addr(),
            len: v.len(),
        }];
        let _ = vmsplice(rd.as_fd(), &iov, 0, &[]);
    }

    #[test]
    fn an_oversized_iovec_is_left_to_the_kernel() {
        let v = [0u8; 64];
        let (rd, _wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
        let iov = [
            UserIovec {
                base: v.as_ptr().addr(),
                len: v.len(),
            },
            UserIovec {
                base: 0,
                len: usize::MAX - 5,
            },
        ];
        assert_eq!(readv(rd.as_fd(), &iov, &[]), Err(libc::EINVAL));
    }
}
