//! The write-target check (crate docs): before a call in which the kernel
//! may write user memory, every byte it may write is in a page of a region
//! lent to the call, or unmapped in this process.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::calls::UserIovec;
use crate::region::HostRegion;

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
pub(crate) fn check_kernel_writes(
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
/// unless another thread or process writes to the pipe meanwhile (crate
/// docs). For `vmsplice` into a pipe the kernel writes no user memory at
/// all, so any bound is right.
pub(crate) fn pipe_contents(fd: BorrowedFd<'_>, nonblocking_call: bool) -> Option<usize> {
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
