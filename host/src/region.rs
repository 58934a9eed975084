//! [`HostRegion`]: an anonymous mapping of this process whose bytes only
//! the kernel moves.

use std::io;
use std::ptr;

use crate::calls::{SysResult, UserIovec, page_size, process_vm};

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
    /// Punched pages (0: every page is mapped, and the checks are bounds
    /// checks only).
    holes: usize,
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
            holes: 0,
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

    /// Length in bytes (punched pages included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.pages() * self.page
    }

    /// Whether the region is empty (never: at least one page).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.mapped.is_empty()
    }

    /// The region's addresses, punched pages included.
    pub(crate) fn span_range(&self) -> (usize, usize) {
        (self.base, self.base + self.len())
    }

    /// Maximal runs of still-mapped pages, as address ranges.
    pub(crate) fn live_ranges(&self) -> Vec<(usize, usize)> {
        if self.holes == 0 {
            return vec![self.span_range()];
        }
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
        self.holes += n;
        Ok(())
    }

    /// `madvise(MADV_NOHUGEPAGE)` of every page still mapped: the kernel
    /// backs them with base pages only (the bench yardsticks compare with
    /// 4 KiB pages).
    pub fn no_hugepage(&self) -> io::Result<()> {
        for (lo, hi) in self.live_ranges() {
            // SAFETY: pages this region mapped and still has mapped; the
            // advice changes how the kernel backs them, not their contents
            // as any Rust value sees them (Rust never references them).
            let r = unsafe {
                libc::madvise(
                    ptr::without_provenance_mut(lo),
                    hi - lo,
                    libc::MADV_NOHUGEPAGE,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Writes `byte` to every byte of the region (all pages still mapped
    /// and writable), touching every page once.
    pub fn fill(&self, byte: u8) -> io::Result<()> {
        let chunk = vec![byte; (64 << 10).min(self.len())];
        let mut off = 0;
        while off < self.len() {
            let n = chunk.len().min(self.len() - off);
            self.write(off, &chunk[..n])?;
            off += n;
        }
        Ok(())
    }

    /// `[off, off + len)` as an iovec, or an error unless it lies in pages
    /// of the region that are still mapped (a punched page may hold
    /// someone else's mapping by now).
    pub fn span(&self, off: usize, len: usize) -> io::Result<UserIovec> {
        let ok = match off.checked_add(len) {
            Some(end) if end <= self.len() => {
                len == 0
                    || self.holes == 0
                    || self.mapped[off / self.page..end.div_ceil(self.page)]
                        .iter()
                        .all(|&m| m)
            }
            _ => false,
        };
        if !ok {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        Ok(UserIovec {
            base: self.base + off,
            len,
        })
    }

    /// Copies `data` to byte `off` of the region (`process_vm_writev` on
    /// this process: a read-only page is an error, not a fault; so is a
    /// range outside the region or over a punched page).
    pub fn write(&self, off: usize, data: &[u8]) -> io::Result<()> {
        let remote = self.span(off, data.len())?;
        let local = UserIovec {
            base: data.as_ptr().addr(),
            len: data.len(),
        };
        // SAFETY: the kernel reads `data` (a live slice of that length) and
        // writes only to `remote`, which `span` checked to lie in pages this
        // region still has mapped; Rust never references them.
        let n = unsafe { process_vm(libc::SYS_process_vm_writev, &[local], &[remote], 0) };
        full(n, data.len())
    }

    /// Copies bytes `off..off + buf.len()` of the region into `buf`
    /// (`process_vm_readv` on this process; a `PROT_NONE` page, a range
    /// outside the region or over a punched page is an error).
    pub fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let remote = self.span(off, buf.len())?;
        let local = UserIovec {
            base: buf.as_mut_ptr().addr(),
            len: buf.len(),
        };
        // SAFETY: the kernel writes only into `buf`, a live slice we
        // borrow mutably, of the length given; it reads `remote`, which
        // `span` checked to lie in pages this region still has mapped.
        let n = unsafe { process_vm(libc::SYS_process_vm_readv, &[local], &[remote], 0) };
        full(n, buf.len())
    }
}

/// A `process_vm_*` result that must have moved `want` bytes.
fn full(n: SysResult, want: usize) -> io::Result<()> {
    match n {
        Err(e) => Err(io::Error::from_raw_os_error(e)),
        Ok(n) if n != want => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("moved {n} of {want} bytes"),
        )),
        Ok(_) => Ok(()),
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
