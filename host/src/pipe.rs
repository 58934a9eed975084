//! Pipes: `pipe2(2)`, and [`HostPipe`], the pipe of the `vmsplice(2)`
//! yardstick of `vmemu bench`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use crate::calls::{SPLICE_F_NONBLOCK, vmsplice_unchecked};
use crate::region::HostRegion;

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

/// A pipe fed with `vmsplice(2)` from a [`HostRegion`] and drained with
/// `read(2)`. It owns both ends, so its `vmsplice` goes into a write end:
/// the kernel takes references to the region's pages and writes no user
/// memory (no write-target check is needed, only the region's bounds).
#[derive(Debug)]
pub struct HostPipe {
    rd: File,
    wr: OwnedFd,
    capacity: usize,
    pending: usize,
}

impl HostPipe {
    /// A pipe whose capacity is raised towards `want` bytes
    /// (`F_SETPIPE_SZ`; the granted size is [`HostPipe::capacity`]).
    pub fn new(want: usize) -> io::Result<Self> {
        let (rd, wr) = pipe2(libc::O_CLOEXEC)?;
        let mut size = want.next_power_of_two().max(4096);
        let capacity = loop {
            // SAFETY: fcntl on a descriptor we own, with an integer argument.
            let r = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
            if r > 0 {
                break r as usize;
            }
            if size <= 65536 {
                break 65536; // the default capacity stays in force
            }
            size /= 2;
        };
        Ok(Self {
            rd: File::from(rd),
            wr,
            capacity,
            pending: 0,
        })
    }

    /// Bytes the pipe holds at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// `vmsplice(2)` of bytes `off..off + len` of `region` (no gift,
    /// `SPLICE_F_NONBLOCK`): the pipe takes references to the pages.
    /// Returns the bytes spliced (at most what fits: the call never blocks).
    /// The range must lie in pages the region still has mapped.
    pub fn vmsplice(&mut self, region: &HostRegion, off: usize, len: usize) -> io::Result<usize> {
        let iov = region.span(off, len)?;
        let len = len.min(self.capacity - self.pending);
        if len == 0 {
            return Ok(0);
        }
        let iov = [crate::UserIovec { len, ..iov }];
        // SAFETY: `wr` is the write end of this pipe, owned here: the kernel
        // only reads the region's pages (takes references to them), which
        // `span` checked to be mapped pages of `region`.
        let r = unsafe { vmsplice_unchecked(self.wr.as_fd(), &iov, SPLICE_F_NONBLOCK) };
        let n = r.map_err(io::Error::from_raw_os_error)?;
        self.pending += n;
        Ok(n)
    }

    /// Reads everything the pipe holds into `scratch` (reused; its
    /// contents are overwritten chunk by chunk).
    pub fn drain(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        while self.pending > 0 {
            let n = self.pending.min(scratch.len());
            let got = self.rd.read(&mut scratch[..n])?;
            if got == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            self.pending -= got;
        }
        Ok(())
    }
}
