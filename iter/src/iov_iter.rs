//! `struct iov_iter` and its walkers, shaped like the kernel's: a *step*
//! receives one piece (the part of one segment an operation touches) and
//! returns the bytes it could **not** process; user steps may fault, kernel
//! steps cannot.

use vmemu_arch::{Arch, Pfn, PhysAddr, VirtAddr};
use vmemu_mm::profile::Knobs;
use vmemu_mm::{Errno, EventKind, Machine};

use crate::segs::Segs;

/// `UIO_MAXIOV`.
pub const UIO_MAXIOV: usize = 1024;
/// `MAX_RW_COUNT`: INT_MAX rounded down to a 4 KiB page.
pub const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// The flavour of an iterator.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IterType {
    /// `ITER_IOVEC`: user `iovec[]`.
    Iovec,
    /// `ITER_KVEC`: kernel `kvec[]`.
    Kvec,
    /// `ITER_BVEC`: `bio_vec[]` (page, len, offset).
    Bvec,
    /// `ITER_PIPE` (v4.9 .. v6.4).
    Pipe,
    /// `ITER_UBUF` (6.0+): one user buffer.
    Ubuf,
    /// `ITER_DISCARD` (4.20+): a sink.
    Discard,
}

impl IterType {
    /// An iovec, ubuf or kvec: address ranges (`iov`), whose walk reads
    /// nothing and raises no event, so a query may stop it early.
    #[must_use]
    pub fn has_segments(self) -> bool {
        matches!(self, IterType::Iovec | IterType::Ubuf | IterType::Kvec)
    }

    /// Every flavour, in the order workloads list them.
    pub const ALL: [IterType; 6] = [
        IterType::Iovec,
        IterType::Kvec,
        IterType::Bvec,
        IterType::Ubuf,
        IterType::Discard,
        IterType::Pipe,
    ];

    /// The word a workload names it with (`iter NAME iovec ...`).
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            IterType::Iovec => "iovec",
            IterType::Kvec => "kvec",
            IterType::Bvec => "bvec",
            IterType::Pipe => "pipe",
            IterType::Ubuf => "ubuf",
            IterType::Discard => "discard",
        }
    }

    /// The flavour a workload's word names.
    #[must_use]
    pub fn from_word(w: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.word() == w)
    }

    /// Whether a kernel with these knobs has the flavour: `ITER_UBUF` and
    /// the modelled `ITER_DISCARD` with the modern iterator, `ITER_PIPE`
    /// from v4.9 until v6.4.
    #[must_use]
    pub fn exists(self, k: &Knobs) -> bool {
        match self {
            IterType::Ubuf | IterType::Discard => k.ubuf_iter,
            IterType::Pipe => k.pipe_iter,
            IterType::Iovec | IterType::Kvec | IterType::Bvec => true,
        }
    }
}

/// Direction: `READ` = the iterator is the destination (`ITER_DEST`),
/// `WRITE` = the iterator is the source (`ITER_SOURCE`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    /// Data flows into the iterator's memory.
    Read,
    /// The iterator's memory is the data source.
    Write,
}

pub use crate::segs::Iovec;

/// A `bio_vec`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BioVec {
    /// `bv_page`.
    pub page: Pfn,
    /// `bv_len`.
    pub len: u32,
    /// `bv_offset`.
    pub offset: u32,
}

/// One piece handed to a step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Piece {
    /// User memory (may fault).
    User {
        /// Start.
        addr: VirtAddr,
        /// Length.
        len: u64,
    },
    /// Kernel virtual memory (cannot fault).
    Kernel {
        /// Start.
        addr: VirtAddr,
        /// Length.
        len: u64,
    },
    /// Part of one page (bvec).
    Page {
        /// The page.
        pfn: Pfn,
        /// Offset in the page.
        offset: u64,
        /// Length (never crosses the page end).
        len: u64,
    },
}

impl Piece {
    /// Length of the piece.
    #[must_use]
    pub fn len(&self) -> u64 {
        match *self {
            Piece::User { len, .. } | Piece::Kernel { len, .. } | Piece::Page { len, .. } => len,
        }
    }
    /// Whether the piece is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `struct iov_iter`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IovIter {
    /// Flavour.
    pub ty: IterType,
    /// Direction.
    pub dir: Dir,
    /// Bytes consumed in the current segment (pipe: end of data in the
    /// current buffer).
    pub iov_offset: u64,
    /// Bytes remaining.
    pub count: u64,
    /// The segment array (IOVEC, KVEC, UBUF), as rules (`crate::segs`).
    pub iov: Segs,
    /// The bio_vec array (BVEC).
    pub bvec: Vec<BioVec>,
    /// Index of the current segment in the array (the kernel's pointer).
    pub idx: usize,
    /// Segments remaining, the current one included.
    pub nr_segs: usize,
    /// The pipe (PIPE): its id in the caller's pipe table.
    pub pipe: Option<usize>,
    /// Pipe ring slot (PIPE).
    pub pipe_idx: usize,
    /// First slot the iterator wrote (PIPE, 4.11+ `start_idx`).
    pub pipe_start_idx: usize,
}

/// Why an iterator operation is not available.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IterError {
    /// The profile has no such kind or function.
    NotInProfile(&'static str),
    /// The kernel would `BUG()`/`WARN()` here.
    Warn(&'static str),
}

impl IovIter {
    fn new(ty: IterType, dir: Dir, count: u64) -> Self {
        Self {
            ty,
            dir,
            iov_offset: 0,
            count,
            iov: Segs::default(),
            bvec: Vec::new(),
            idx: 0,
            nr_segs: 0,
            pipe: None,
            pipe_idx: 0,
            pipe_start_idx: 0,
        }
    }

    /// `iov_iter_init`: a user iovec iterator. In profiles with `set_fs`, a
    /// task under `KERNEL_DS` silently gets an `ITER_KVEC` (the array is
    /// reinterpreted as kernel addresses), as v4.10 does.
    pub fn init<A: Arch>(m: &Machine<A>, dir: Dir, iov: impl Into<Segs>, count: u64) -> Self {
        let iov = iov.into();
        let ty = if m.under_kernel_ds() {
            IterType::Kvec
        } else {
            IterType::Iovec
        };
        let mut i = Self::new(ty, dir, count);
        i.nr_segs = iov.len();
        i.iov = iov;
        i
    }

    /// `iov_iter_kvec`.
    #[must_use]
    pub fn kvec(dir: Dir, kvec: impl Into<Segs>, count: u64) -> Self {
        let kvec = kvec.into();
        let mut i = Self::new(IterType::Kvec, dir, count);
        i.nr_segs = kvec.len();
        i.iov = kvec;
        i
    }

    /// `iov_iter_bvec`.
    #[must_use]
    pub fn bvec(dir: Dir, bvec: Vec<BioVec>, count: u64) -> Self {
        let mut i = Self::new(IterType::Bvec, dir, count);
        i.nr_segs = bvec.len();
        i.bvec = bvec;
        i
    }

    /// `iov_iter_ubuf` (6.0+).
    pub fn ubuf<A: Arch>(
        m: &Machine<A>,
        dir: Dir,
        addr: VirtAddr,
        len: u64,
    ) -> Result<Self, IterError> {
        if !IterType::Ubuf.exists(&m.knobs) {
            return Err(IterError::NotInProfile("ITER_UBUF"));
        }
        let mut i = Self::new(IterType::Ubuf, dir, len);
        i.iov = vec![Iovec { base: addr, len }].into();
        i.nr_segs = 1;
        Ok(i)
    }

    /// `iov_iter_discard` (4.20+; the modelled modern profile).
    pub fn discard<A: Arch>(m: &Machine<A>, count: u64) -> Result<Self, IterError> {
        if !IterType::Discard.exists(&m.knobs) {
            return Err(IterError::NotInProfile("ITER_DISCARD"));
        }
        Ok(Self::new(IterType::Discard, Dir::Read, count))
    }

    /// A pipe iterator over pipe `pipe` whose first free slot is `idx`
    /// (`iov_iter_pipe`; READ only).
    #[must_use]
    pub fn pipe(pipe: usize, idx: usize, count: u64) -> Self {
        let mut i = Self::new(IterType::Pipe, Dir::Read, count);
        i.pipe = Some(pipe);
        i.pipe_idx = idx;
        i.pipe_start_idx = idx;
        i
    }

    /// `import_iovec`: checks a user-supplied iovec array (as copied in) the
    /// way the kernel does: more than `UIO_MAXIOV` segments or a negative
    /// length → `-EINVAL`; a segment failing `access_ok` → `-EFAULT`; the
    /// running total is clipped at `MAX_RW_COUNT` by shortening the segment
    /// that crosses it.
    ///
    /// Where the profile has `ITER_UBUF` (6.0+), a single segment becomes an
    /// `ITER_UBUF` iterator (`__import_iovec_ubuf` + `import_ubuf`): its
    /// length is clipped to `MAX_RW_COUNT` *before* `access_ok`, so a huge
    /// length at a valid address passes where a multi-segment array with
    /// the same segment gets `-EFAULT`.
    pub fn import_iovec<A: Arch>(
        m: &Machine<A>,
        dir: Dir,
        mut iov: Vec<Iovec>,
    ) -> Result<Self, Errno> {
        if iov.len() == 1 && m.knobs.ubuf_iter {
            let v = iov[0];
            if (v.len as i64) < 0 {
                return Err(Errno::EINVAL);
            }
            let len = v.len.min(MAX_RW_COUNT);
            if !m.access_ok(v.base, len, vmemu_arch::SizeKind::Runtime) {
                return Err(Errno::EFAULT);
            }
            let mut i = Self::new(IterType::Ubuf, dir, len);
            i.iov = vec![Iovec { base: v.base, len }].into();
            i.nr_segs = 1;
            return Ok(i);
        }
        if iov.len() > UIO_MAXIOV {
            return Err(Errno::EINVAL);
        }
        // 5.10+ (`iovec_from_user`): every length is checked while the
        // array is copied in, before any `access_ok`; v4.x checks both per
        // segment in one loop.
        if m.knobs.ubuf_iter && iov.iter().any(|v| (v.len as i64) < 0) {
            return Err(Errno::EINVAL);
        }
        let mut total = 0u64;
        for v in &mut iov {
            if (v.len as i64) < 0 {
                return Err(Errno::EINVAL);
            }
            if !m.access_ok(v.base, v.len, vmemu_arch::SizeKind::Runtime) {
                return Err(Errno::EFAULT);
            }
            if v.len > MAX_RW_COUNT - total {
                v.len = MAX_RW_COUNT - total;
            }
            total += v.len;
        }
        if m.knobs.iter_modern_advance && iov.len() == 1 && !m.under_kernel_ds() {
            // 6.x: a single segment becomes ITER_UBUF.
            let mut i = Self::new(IterType::Ubuf, dir, total);
            i.iov = iov.into();
            i.nr_segs = 1;
            return Ok(i);
        }
        Ok(Self::init(m, dir, iov, total))
    }

    /// `iov_iter_rw`.
    #[must_use]
    pub fn rw(&self) -> Dir {
        self.dir
    }

    /// `iov_iter_truncate`.
    pub fn truncate(&mut self, count: u64) {
        if self.count > count {
            self.count = count;
        }
    }

    /// `iov_iter_reexpand`.
    pub fn reexpand(&mut self, count: u64) {
        self.count = count;
    }

    /// Whether the memory behind the iterator is user memory.
    #[must_use]
    pub fn user_backed(&self) -> bool {
        matches!(self.ty, IterType::Iovec | IterType::Ubuf)
    }

    /// Walks `n` bytes (the caller clips to `count`) from the current position,
    /// calling `step` per piece; returns (bytes processed, final index, final
    /// offset). With `stop_on_fault`, the first step that leaves bytes
    /// unprocessed ends the walk (user memory).
    fn walk<A: Arch>(
        &self,
        m: &mut Machine<A>,
        n: u64,
        step: &mut dyn FnMut(&mut Machine<A>, Piece, u64) -> u64,
    ) -> (u64, usize, u64) {
        if n == 0 {
            return (0, self.idx, self.iov_offset);
        }
        match self.ty {
            IterType::Iovec | IterType::Ubuf | IterType::Kvec => {
                let user = self.ty != IterType::Kvec;
                let mut idx = self.idx;
                let mut skip = self.iov_offset;
                let mut left_n = n;
                let mut done = 0u64;
                let Some(seg) = self.iov.get(idx) else {
                    return (0, idx, skip);
                };
                let mut len = left_n.min(seg.len.saturating_sub(skip));
                let mut faulted = false;
                if len > 0 {
                    let p = mk_piece(user, seg.base.wrapping_add(skip), len);
                    let left = step(m, p, done);
                    let left = if user { left } else { 0 };
                    let took = len - left;
                    skip += took;
                    left_n -= took;
                    done += took;
                    faulted = left != 0;
                }
                while !faulted && left_n > 0 {
                    idx += 1;
                    let Some(seg) = self.iov.get(idx) else {
                        break; // the caller broke the count invariant
                    };
                    len = left_n.min(seg.len);
                    skip = 0;
                    if len == 0 {
                        continue;
                    }
                    let p = mk_piece(user, seg.base, len);
                    let left = step(m, p, done);
                    let left = if user { left } else { 0 };
                    let took = len - left;
                    skip = took;
                    left_n -= took;
                    done += took;
                    faulted = left != 0;
                }
                (done, idx, skip)
            }
            IterType::Bvec => {
                let mut idx = self.idx;
                let mut bdone = self.iov_offset;
                let mut size = n;
                let mut done = 0u64;
                while size > 0 {
                    let Some(bv) = self.bvec.get(idx) else {
                        break;
                    };
                    let len = size.min(u64::from(bv.len).saturating_sub(bdone));
                    if len == 0 {
                        if m.knobs.bvec_zero_len_livelock {
                            m.event(
                                EventKind::SoftLockup,
                                format!(
                                    "bvec walker at element {idx} (bv_len {}): bvec_iter_advance makes no progress on a zero-length bvec and the loop would spin forever",
                                    bv.len
                                ),
                            );
                            break;
                        }
                        idx += 1;
                        bdone = 0;
                        continue;
                    }
                    // Split at page boundaries (multi-page bvecs).
                    let off = u64::from(bv.offset) + bdone;
                    let page = Pfn(bv.page.0 + off / A::PAGE_SIZE);
                    let in_page = off % A::PAGE_SIZE;
                    let len = len.min(A::PAGE_SIZE - in_page);
                    let left = step(
                        m,
                        Piece::Page {
                            pfn: page,
                            offset: in_page,
                            len,
                        },
                        done,
                    );
                    let took = len - left.min(len);
                    done += took;
                    size -= took;
                    bdone += took;
                    if bdone == u64::from(bv.len) {
                        idx += 1;
                        bdone = 0;
                    }
                    if took < len {
                        break;
                    }
                }
                (done, idx, bdone)
            }
            IterType::Discard => (n, self.idx, self.iov_offset),
            IterType::Pipe => (0, self.idx, self.iov_offset),
        }
    }

    /// `iterate_and_advance`: clips to `count`, walks, and advances by what was
    /// processed. Returns the bytes processed.
    pub fn iterate_and_advance<A: Arch>(
        &mut self,
        m: &mut Machine<A>,
        n: u64,
        step: &mut dyn FnMut(&mut Machine<A>, Piece, u64) -> u64,
    ) -> u64 {
        let n = n.min(self.count);
        if n == 0 {
            return 0;
        }
        let (done, mut idx, mut off) = self.walk(m, n, step);
        if self.ty.has_segments() && self.iov.get(idx).is_some_and(|s| off == s.len) {
            idx += 1;
            off = 0;
        }
        if self.ty != IterType::Discard {
            let moved = idx - self.idx;
            self.nr_segs = self.nr_segs.saturating_sub(moved);
            self.idx = idx;
            self.iov_offset = off;
        }
        self.count -= done;
        done
    }

    /// The non-advancing walk (`iterate_all_kinds`).
    pub fn iterate<A: Arch>(
        &self,
        m: &mut Machine<A>,
        n: u64,
        step: &mut dyn FnMut(&mut Machine<A>, Piece, u64) -> u64,
    ) -> u64 {
        self.walk(m, n, step).0
    }

    /// The pieces of the next `n` bytes of an iovec, ubuf or kvec iterator,
    /// cut as [`IovIter::walk`] cuts them (one per segment, from the current
    /// position), computed lazily: a query that stops early (the first
    /// piece, `npages` up to `maxpages`) reads only the segments it needs.
    /// Empty for other kinds, whose walk may raise events.
    pub fn iov_pieces(&self, n: u64) -> impl Iterator<Item = Piece> + '_ {
        let user = self.ty != IterType::Kvec;
        let left = if self.ty.has_segments() { n } else { 0 };
        let (mut left, mut skip, mut idx) = (left, self.iov_offset, self.idx);
        std::iter::from_fn(move || {
            while left > 0 {
                let seg = self.iov.get(idx)?;
                let len = left.min(seg.len.saturating_sub(skip));
                let base = seg.base.wrapping_add(skip);
                idx += 1;
                skip = 0;
                if len > 0 {
                    left -= len;
                    return Some(mk_piece(user, base, len));
                }
            }
            None
        })
    }

    /// Every piece of the next `n` bytes, without side effects (queries).
    pub fn pieces<A: Arch>(&self, m: &mut Machine<A>, n: u64) -> Vec<Piece> {
        let mut v = Vec::new();
        self.walk(m, n, &mut |_, p, _| {
            v.push(p);
            0
        });
        v
    }
}

fn mk_piece(user: bool, addr: VirtAddr, len: u64) -> Piece {
    if user {
        Piece::User { addr, len }
    } else {
        Piece::Kernel { addr, len }
    }
}

/// Copies `buf` into a kernel virtual range page by page (direct map or
/// vmalloc); returns the bytes not copied (an unmapped kernel address is a
/// kernel oops in reality; reported by the caller).
pub fn kernel_write<A: Arch>(m: &Machine<A>, addr: VirtAddr, buf: &[u8]) -> u64 {
    kernel_io(m, addr, buf.len() as u64, |m, pa, off, len| {
        m.phys.write(pa, &buf[off..off + len]).is_ok()
    })
}

/// Copies a kernel virtual range into `buf`; returns the bytes not copied.
pub fn kernel_read<A: Arch>(m: &Machine<A>, addr: VirtAddr, buf: &mut [u8]) -> u64 {
    let n = buf.len() as u64;
    kernel_io(m, addr, n, |m, pa, off, len| {
        m.phys.read(pa, &mut buf[off..off + len]).is_ok()
    })
}

fn kernel_io<A: Arch>(
    m: &Machine<A>,
    addr: VirtAddr,
    n: u64,
    mut op: impl FnMut(&Machine<A>, PhysAddr, usize, usize) -> bool,
) -> u64 {
    let mut done = 0u64;
    while done < n {
        let va = addr.wrapping_add(done);
        let chunk = (A::PAGE_SIZE - va.offset_in(A::PAGE_SIZE)).min(n - done);
        let Some(pa) = m.kernel_pa(va) else {
            break;
        };
        if !op(m, pa, done as usize, chunk as usize) {
            break;
        }
        done += chunk;
    }
    n - done
}
