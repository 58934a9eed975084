//! The copy and query primitives of `lib/iov_iter.c`, with the kernel's
//! partial-copy semantics: they return the bytes processed and advance the
//! iterator by exactly that much.

use vmemu_arch::{Arch, Pfn, VirtAddr};
use vmemu_mm::{EventKind, Machine};

use crate::Sys;
use crate::iov_iter::{Dir, IovIter, IterError, IterType, Piece, kernel_read, kernel_write};

/// Writes `src` into one piece; returns the bytes not written.
/// `put_piece` of zeroes for a kernel piece, without a host buffer of the
/// piece's length (a kvec may claim a terabyte): every mapped page is
/// noted (holes in the kernel tables skipped whole), then the bytes are
/// zeroed up to the first unmapped page, where the kernel would oops.
fn zero_kernel<A: Arch>(m: &mut Machine<A>, addr: VirtAddr, len: u64) -> u64 {
    let chunk_at = |off: u64| {
        let va = addr.wrapping_add(off);
        (
            va,
            (A::PAGE_SIZE - va.offset_in(A::PAGE_SIZE)).min(len - off),
        )
    };
    let mut off = 0;
    while off < len {
        let (va, chunk) = chunk_at(off);
        let hole = m.unmapped_run(None, va);
        if hole > 0 {
            off = off.saturating_add(hole);
            continue;
        }
        if let Some(pa) = m.kernel_pa(va) {
            m.note_kernel_write(pa, chunk);
        }
        off += chunk;
    }
    let mut done = 0;
    while done < len {
        let (va, chunk) = chunk_at(done);
        match m.kernel_pa(va) {
            Some(pa) if m.phys.zero(pa, chunk as usize).is_ok() => done += chunk,
            _ => break,
        }
    }
    if done < len {
        oops(m, addr);
    }
    0
}

fn put_piece<A: Arch>(m: &mut Machine<A>, p: Piece, src: &[u8]) -> u64 {
    match p {
        Piece::User { addr, .. } => m.copy_to_user(addr, src),
        Piece::Kernel { addr, len } => {
            let mut off = 0;
            while off < len {
                let va = addr.wrapping_add(off);
                let chunk = (A::PAGE_SIZE - va.offset_in(A::PAGE_SIZE)).min(len - off);
                if let Some(pa) = m.kernel_pa(va) {
                    m.note_kernel_write(pa, chunk);
                }
                off += chunk;
            }
            let left = kernel_write(m, addr, src);
            if left != 0 {
                oops(m, addr);
            }
            0
        }
        Piece::Page { pfn, offset, len } => {
            let pa = pfn.addr(A::PAGE_SHIFT).add(offset);
            m.note_kernel_write(pa, len);
            if m.phys.write(pa, src).is_err() {
                oops(m, VirtAddr(pa.0));
            }
            0
        }
    }
}

/// Reads one piece into `dst`; returns the bytes not read.
fn get_piece<A: Arch>(m: &mut Machine<A>, p: Piece, dst: &mut [u8]) -> u64 {
    match p {
        Piece::User { addr, .. } => m.copy_from_user(dst, addr),
        Piece::Kernel { addr, .. } => {
            if kernel_read(m, addr, dst) != 0 {
                oops(m, addr);
            }
            0
        }
        Piece::Page { pfn, offset, .. } => {
            let pa = pfn.addr(A::PAGE_SHIFT).add(offset);
            if m.phys.read(pa, dst).is_err() {
                oops(m, VirtAddr(pa.0));
            }
            0
        }
    }
}

fn oops<A: Arch>(m: &mut Machine<A>, addr: VirtAddr) {
    m.event(
        EventKind::KernelBug,
        format!("kernel access to unmapped address {addr}: an oops in the real kernel"),
    );
}

/// Alignment of a piece's start (virtual address or in-page offset).
fn piece_start(p: &Piece) -> u64 {
    match *p {
        Piece::User { addr, .. } | Piece::Kernel { addr, .. } => addr.0,
        Piece::Page { offset, .. } => offset,
    }
}

/// A `copy_to_iter` of at least this many bytes writes guest memory with
/// streaming stores ([`vmemu_mm::phys::PhysMem::set_streaming`]): four
/// times a 2 MiB L2, a quarter of a 32 MiB L3, where a copy stops fitting the
/// caches of the core that makes it (glibc's own non-temporal threshold is
/// of that order: three quarters of the shared cache per thread).
const STREAM_COPY_MIN: usize = 8 << 20;

impl<A: Arch> Sys<A> {
    /// `copy_to_iter(addr, bytes, i)`.
    pub fn copy_to_iter(&mut self, src: &[u8], i: &mut IovIter) -> u64 {
        if i.ty == IterType::Pipe {
            return self.copy_pipe_to_iter(src, i);
        }
        let stream = src.len() >= STREAM_COPY_MIN;
        if stream {
            self.m.phys.set_streaming(true);
        }
        let n = i.iterate_and_advance(&mut self.m, src.len() as u64, &mut |m, p, done| {
            let d = done as usize;
            put_piece(m, p, &src[d..d + p.len() as usize])
        });
        if stream {
            self.m.phys.set_streaming(false);
        }
        n
    }

    /// `copy_from_iter(addr, bytes, i)`; a pipe source is a kernel warning and 0.
    pub fn copy_from_iter(&mut self, dst: &mut [u8], i: &mut IovIter) -> u64 {
        if i.ty == IterType::Pipe {
            self.m.event(
                EventKind::KernelBug,
                "copy_from_iter on an ITER_PIPE: WARN_ON, returns 0",
            );
            return 0;
        }
        let n = dst.len() as u64;
        i.iterate_and_advance(&mut self.m, n, &mut |m, p, done| {
            let d = done as usize;
            get_piece(m, p, &mut dst[d..d + p.len() as usize])
        })
    }

    /// `copy_from_iter_nocache`: the same bytes as `copy_from_iter` (the
    /// non-temporal hint changes no result).
    pub fn copy_from_iter_nocache(&mut self, dst: &mut [u8], i: &mut IovIter) -> u64 {
        self.copy_from_iter(dst, i)
    }

    /// `copy_from_iter_full`: all or nothing. `count < n` → false with nothing
    /// consumed; a fault → false, the destination partly written and the
    /// iterator **not** advanced; success → advance and true.
    pub fn copy_from_iter_full(&mut self, dst: &mut [u8], i: &mut IovIter) -> bool {
        if i.ty == IterType::Pipe {
            self.m.event(
                EventKind::KernelBug,
                "copy_from_iter_full on an ITER_PIPE: WARN_ON, returns false",
            );
            return false;
        }
        let n = dst.len() as u64;
        if i.count < n {
            return false;
        }
        let done = i.iterate(&mut self.m, n, &mut |m, p, done| {
            let d = done as usize;
            get_piece(m, p, &mut dst[d..d + p.len() as usize])
        });
        if done < n {
            return false;
        }
        self.iov_iter_advance(i, n);
        true
    }

    /// `copy_from_iter_full_nocache`.
    pub fn copy_from_iter_full_nocache(&mut self, dst: &mut [u8], i: &mut IovIter) -> bool {
        self.copy_from_iter_full(dst, i)
    }

    /// `copy_page_to_iter(page, offset, bytes, i)`: a pipe gets a reference
    /// to the page itself (zero copy); other kinds copy.
    pub fn copy_page_to_iter(
        &mut self,
        page: Pfn,
        offset: u64,
        bytes: u64,
        i: &mut IovIter,
    ) -> u64 {
        if i.ty == IterType::Pipe {
            return self.copy_page_to_iter_pipe(page, offset, bytes, i);
        }
        let bytes = bytes.min(i.count);
        let mut buf = vec![0u8; bytes as usize];
        if self
            .m
            .phys
            .read(page.addr(A::PAGE_SHIFT).add(offset), &mut buf)
            .is_err()
        {
            return 0;
        }
        self.copy_to_iter(&buf, i)
    }

    /// `copy_page_from_iter(page, offset, bytes, i)`.
    pub fn copy_page_from_iter(
        &mut self,
        page: Pfn,
        offset: u64,
        bytes: u64,
        i: &mut IovIter,
    ) -> u64 {
        let mut buf = vec![0u8; bytes.min(i.count) as usize];
        let n = self.copy_from_iter(&mut buf, i);
        let _ = self
            .m
            .phys
            .write(page.addr(A::PAGE_SHIFT).add(offset), &buf[..n as usize]);
        n
    }

    /// `iov_iter_zero(bytes, i)`.
    pub fn iov_iter_zero(&mut self, n: u64, i: &mut IovIter) -> u64 {
        if i.ty == IterType::Pipe {
            return self.pipe_zero(n, i);
        }
        i.iterate_and_advance(&mut self.m, n, &mut |m, p, _| match p {
            Piece::User { addr, len } => m.clear_user(addr, len),
            Piece::Kernel { addr, len } => zero_kernel(m, addr, len),
            other => {
                let z = vec![0u8; other.len() as usize];
                put_piece(m, other, &z)
            }
        })
    }

    /// `iov_iter_advance(i, n)` (never faults).
    pub fn iov_iter_advance(&mut self, i: &mut IovIter, n: u64) {
        if i.ty == IterType::Pipe {
            self.pipe_advance(i, n);
            return;
        }
        i.iterate_and_advance(&mut self.m, n, &mut |_, _, _| 0);
        if self.m.knobs.iter_modern_advance {
            // 6.x: the advance loop stops at the first segment the remaining
            // offset lies strictly inside, so empty segments after the new
            // position are stepped over too.
            match i.ty {
                IterType::Iovec | IterType::Kvec | IterType::Ubuf => {
                    while let Some(s) = i.iov.get(i.idx)
                        && i.nr_segs > 0
                        && i.iov_offset >= s.len
                    {
                        i.iov_offset -= s.len;
                        i.idx += 1;
                        i.nr_segs -= 1;
                    }
                }
                IterType::Bvec => {
                    while i.nr_segs > 0
                        && i.bvec
                            .get(i.idx)
                            .is_some_and(|b| i.iov_offset >= u64::from(b.len))
                    {
                        i.iov_offset -= u64::from(i.bvec[i.idx].len);
                        i.idx += 1;
                        i.nr_segs -= 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// `iov_iter_revert(i, n)` (4.11+): walks back over whole segments.
    pub fn iov_iter_revert(&mut self, i: &mut IovIter, n: u64) -> Result<(), IterError> {
        if !self.m.knobs.iov_iter_revert {
            return Err(IterError::NotInProfile("iov_iter_revert (4.11+)"));
        }
        if n == 0 {
            return Ok(());
        }
        if n > crate::iov_iter::MAX_RW_COUNT {
            self.m.event(
                EventKind::KernelBug,
                "iov_iter_revert: WARN_ON(unroll > MAX_RW_COUNT)",
            );
            return Ok(());
        }
        i.count += n;
        if i.ty == IterType::Pipe {
            self.pipe_revert(i, n);
            return Ok(());
        }
        if i.ty == IterType::Discard {
            return Ok(());
        }
        if n <= i.iov_offset {
            i.iov_offset -= n;
            return Ok(());
        }
        let mut n = n - i.iov_offset;
        loop {
            if i.idx == 0 {
                // Reverting past the start is a kernel bug; stop at the start.
                self.m.event(
                    EventKind::KernelBug,
                    "iov_iter_revert past the first segment",
                );
                i.iov_offset = 0;
                return Ok(());
            }
            i.idx -= 1;
            i.nr_segs += 1;
            let len = match i.ty {
                IterType::Bvec => u64::from(i.bvec[i.idx].len),
                _ => i.iov.get(i.idx).map_or(0, |s| s.len),
            };
            if n <= len {
                i.iov_offset = len - n;
                return Ok(());
            }
            n -= len;
        }
    }

    /// `iov_iter_single_seg_count`.
    #[must_use]
    pub fn iov_iter_single_seg_count(&self, i: &IovIter) -> u64 {
        if i.ty == IterType::Pipe || i.nr_segs == 1 {
            return i.count;
        }
        let len = match i.ty {
            IterType::Bvec => i.bvec.get(i.idx).map_or(0, |b| u64::from(b.len)),
            IterType::Discard => return i.count,
            _ => i.iov.get(i.idx).map_or(0, |s| s.len),
        };
        i.count.min(len.saturating_sub(i.iov_offset))
    }

    /// `iov_iter_alignment`: OR of every piece's start and length.
    pub fn iov_iter_alignment(&mut self, i: &IovIter) -> u64 {
        if i.ty == IterType::Pipe {
            return self.pipe_alignment(i);
        }
        let mut res = 0u64;
        for p in i.pieces(&mut self.m, i.count) {
            res |= piece_start(&p) | p.len();
        }
        res
    }

    /// `iov_iter_gap_alignment` (v4.10): see `docs` — the first piece
    /// contributes nothing while the accumulator is 0; every piece but the
    /// last ORs in the bytes remaining including itself (BVEC: always the
    /// whole count, and `bv_offset` instead of an address).
    pub fn iov_iter_gap_alignment(&mut self, i: &IovIter) -> u64 {
        if i.ty == IterType::Pipe {
            self.m.event(
                EventKind::KernelBug,
                "iov_iter_gap_alignment on an ITER_PIPE: WARN_ON, returns ~0U",
            );
            return u64::from(u32::MAX);
        }
        let pieces = i.pieces(&mut self.m, i.count);
        let mut res = 0u64;
        let mut rem = i.count;
        for p in &pieces {
            if res != 0 {
                res |= piece_start(p);
            }
            let size = if i.ty == IterType::Bvec { i.count } else { rem };
            if size > p.len() {
                res |= size;
            }
            if i.ty != IterType::Bvec {
                rem -= p.len();
            }
        }
        res
    }

    /// `iov_iter_npages(i, maxpages)`.
    pub fn iov_iter_npages(&mut self, i: &IovIter, maxpages: u64) -> u64 {
        if i.count == 0 {
            return 0;
        }
        if i.ty == IterType::Pipe {
            return self.pipe_npages(i).min(maxpages);
        }
        let mut npages = 0u64;
        // iov_npages: from the current segment, stopping once maxpages is
        // reached (a bio loop calls this per bio, so collecting every
        // remaining segment each time would be quadratic). Other kinds are
        // walked whole, as their walk may raise events.
        let walked = if i.ty.has_segments() {
            Vec::new()
        } else {
            i.pieces(&mut self.m, i.count)
        };
        for p in i.iov_pieces(i.count).chain(walked) {
            npages += match p {
                Piece::User { addr, len } | Piece::Kernel { addr, len } => addr
                    .0
                    .wrapping_add(len)
                    .div_ceil(A::PAGE_SIZE)
                    .wrapping_sub(addr.0 / A::PAGE_SIZE),
                Piece::Page { .. } => 1,
            };
            if npages >= maxpages {
                return maxpages;
            }
        }
        npages
    }

    /// `dup_iter`: a copy sharing nothing, with the remaining segments.
    pub fn dup_iter(&mut self, i: &IovIter) -> Option<IovIter> {
        if i.ty == IterType::Pipe {
            self.m.event(
                EventKind::KernelBug,
                "dup_iter of an ITER_PIPE: WARN_ON, returns NULL",
            );
            return None;
        }
        let mut n = i.clone();
        match i.ty {
            IterType::Bvec => {
                n.bvec = i.bvec[i.idx..i.idx + i.nr_segs.min(i.bvec.len() - i.idx)].to_vec()
            }
            _ => n.iov = i.iov.slice(i.idx, i.idx + i.nr_segs),
        }
        n.idx = 0;
        Some(n)
    }

    /// `iov_iter_fault_in_readable(i, bytes)`: pre-faults each user piece;
    /// non-zero on the first failure. `bytes` is not clipped to `count`.
    pub fn iov_iter_fault_in_readable(&mut self, i: &IovIter, bytes: u64) -> i64 {
        if matches!(i.ty, IterType::Kvec | IterType::Bvec | IterType::Discard) {
            return 0;
        }
        let mut failed = false;
        let mut k = i.clone();
        if k.ty == IterType::Pipe {
            // v4.10 does not special-case pipes here; a pipe has no iovecs.
            return 0;
        }
        k.count = u64::MAX;
        k.iterate(&mut self.m, bytes, &mut |m, p, _| {
            if let Piece::User { addr, len } = p {
                // fault_in_pages_readable: one byte of every page of the
                // piece, however long it is.
                let mut a = addr;
                let end = addr.wrapping_add(len - 1);
                if end < addr {
                    failed = true; // the range wraps: -EFAULT
                    return len;
                }
                while a <= end {
                    let mut b = [0u8; 1];
                    if m.copy_from_user(&mut b, a) != 0 {
                        failed = true;
                        return len;
                    }
                    a = a.align_down(A::PAGE_SIZE).wrapping_add(A::PAGE_SIZE);
                    if a.0 == 0 {
                        break;
                    }
                }
            }
            0
        });
        if failed {
            vmemu_mm::Errno::EFAULT.to_ret()
        } else {
            0
        }
    }

    /// Direction check helper for callers.
    #[must_use]
    pub fn is_dest(i: &IovIter) -> bool {
        i.dir == Dir::Read
    }
}
