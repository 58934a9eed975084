//! The kernel's KUnit suite `iov_iter` (`lib/kunit_iov_iter.c`, 6.13 shape),
//! ported as data: the KVEC and BVEC range tables, the 1 MiB test buffers and
//! the six cases that have an equivalent here (`copy_to_kvec`,
//! `copy_from_kvec`, `copy_to_bvec`, `copy_from_bvec`, `extract_pages_kvec`,
//! `extract_pages_bvec`), with the assertions of the spec's §5 "Assertion
//! details" (`/work/shared/spec/iov-iter.md`). Every case runs on x86_64,
//! arm64, ppc64 (64 KiB pages), ppc64 with 4 KiB pages and the geometry
//! variants x86_64-la57, arm64-52 and arm64-16k (under the profiles whose
//! kernel has them).
//!
//! Not ported, because the emulator has no such iterator kinds or helpers:
//! the three FOLIOQ cases (`copy_to_folioq`, `copy_from_folioq`,
//! `extract_pages_folioq`), the XARRAY cases (`copy_to_xarray`,
//! `copy_from_xarray`, `extract_pages_xarray`), and the mainline-only
//! `iter_to_sg_*` cases (`extract_iter_to_sg`, scatterlists).
//!
//! Profiles:
//! - the copy cases run under v6.13, v6.18, v4.17 and v4.10. The KVEC copies
//!   hold in v4.x (empty segments are skipped, the consumed last segment is
//!   stepped over). The BVEC copies would hang in v4.x: element 0 of the
//!   BVEC table is zero-length and the 4.x bvec walker makes no progress on
//!   it (§2.2, CVE-2020-25641, fixed in 5.9). Here they must stop with a
//!   `soft_lockup` event having processed nothing, while the same case
//!   completes under 6.x;
//! - the extraction cases run under v6.13 and v6.18 only:
//!   `iov_iter_extract_pages` appeared in 6.3, v4.x has nothing to compare
//!   it with.
//!
//! Adaptations (the kernel test assumes nothing of the arch but its tables
//! are written in 4 KiB units):
//! - pattern byte at offset x is x mod 256 (the 6.13 pattern);
//! - the buffer is 0x100000 bytes = 0x100000 / `PAGE_SIZE` frames from
//!   `alloc_kernel_pages`, mapped contiguously with `vmap` (the KVEC ranges
//!   address that mapping). The frames are scattered so that page crossings
//!   are physical discontinuities even with 64 KiB pages: the allocation is
//!   sorted and used in runs of three consecutive frames with one unused
//!   frame between runs (buffer page i → sorted frame 4·(i/3) + i mod 3).
//!   Runs of three (rather than "every other frame") keep some pages
//!   physically consecutive, so the BVEC loader's merge rule both merges and
//!   refuses: with 4 KiB pages entries 4 and 5 merge onto entry 3 (a
//!   three-page bvec) and entry 6 does not;
//! - a BVEC table entry (page p, from, to) lies at byte p·4096 + [from, to)
//!   of the buffer, i.e. in buffer frame (p·4096) / `PAGE_SIZE` at offset
//!   (p·4096) mod `PAGE_SIZE` + from. With 4 KiB pages this is the kernel's
//!   "page p, offset from"; with 64 KiB pages the seven table pages share
//!   buffer frame 0 (the kernel itself would use seven 64 KiB pages with
//!   offsets below 4096). The expected images and extraction positions use
//!   the same byte mapping;
//! - the loader's merge rule is kept in physical terms: an entry merges into
//!   the previous element when it starts at 0 (from = 0), is non-empty, and
//!   its start is the physical address right after the end of the previous
//!   entry, the previous entry having ended on a 4 KiB table boundary (to a
//!   multiple of 4096). With 4 KiB pages that is exactly "the physically
//!   next page"; with 64 KiB pages it merges the adjacent 4 KiB chunks of one
//!   frame;
//! - the extraction position tracking works in buffer bytes and lets one
//!   returned page span consecutive ranges when their bytes are adjacent
//!   (only possible with 64 KiB pages and merged BVEC entries); with 4 KiB
//!   pages it is the kernel's walk exactly;
//! - the kernel pre-fills the page list with a poison value and `offset0`
//!   with `LONG_MAX`; here the call returns a `Vec`, so a slot the kernel
//!   would find poisoned is a missing element, and `start` is always set.

use vmemu_arch::{
    Arch, Arm64, Arm64_16k, Arm64_52, Pfn, PhysAddr, Ppc64, Ppc64_4k, VirtAddr, X86_64, X86_64La57,
};
use vmemu_iter::iov_iter::kernel_read;
use vmemu_iter::{BioVec, Dir, IovIter, Iovec, Sys};
use vmemu_mm::{EventKind, KernelProfile, Machine};

// ---------------------------------------------------------------------------
// Test data.

/// Size of each test buffer.
const BUFSIZE: u64 = 0x100000;
/// The unit the BVEC table is written in (the kernel test's 4 KiB pages).
const TABLE_PAGE: u64 = 4096;
/// Capacity of the kvec / bio_vec arrays.
const VEC_CAP: usize = 8;
/// Extraction: bytes per call and page-list slots.
const EXTRACT_MAXSIZE: u64 = 100 * 1024;
const EXTRACT_MAXPAGES: u64 = 8;
/// Emulated memory per machine.
const PHYS: u64 = 32 << 20;

/// One KVEC range: bytes [from, to) of the buffer.
#[derive(Clone, Copy, Debug)]
struct KvecRange {
    from: u64,
    to: u64,
}

/// One BVEC range: bytes [from, to) of table page `page`.
#[derive(Clone, Copy, Debug)]
struct BvecRange {
    page: u64,
    from: u64,
    to: u64,
}

const fn kr(from: u64, to: u64) -> KvecRange {
    KvecRange { from, to }
}

const fn br(page: u64, from: u64, to: u64) -> BvecRange {
    BvecRange { page, from, to }
}

/// The KVEC table: empty segments first and in the middle, unaligned
/// starts and ends, two adjacent ranges (4 and 5), a one-byte tail.
const KVEC_RANGES: [KvecRange; 8] = [
    kr(0x00002, 0x00002),
    kr(0x00027, 0x03000),
    kr(0x05193, 0x18794),
    kr(0x20000, 0x20000),
    kr(0x20000, 0x24000),
    kr(0x24000, 0x27001),
    kr(0x29000, 0xffffb),
    kr(0xffffd, 0xffffe),
];
/// Sum of the KVEC lengths.
const KVEC_TOTAL: u64 = 1_000_919;

/// The BVEC table: a zero-length first entry, partial pages, three whole
/// pages that may merge, and two pieces of the same page.
const BVEC_RANGES: [BvecRange; 8] = [
    br(0, 0x0002, 0x0002),
    br(1, 0x0027, 0x0893),
    br(2, 0x0193, 0x0794),
    br(3, 0x0000, 0x1000),
    br(4, 0x0000, 0x1000),
    br(5, 0x0000, 0x1000),
    br(6, 0x0000, 0x0ffb),
    br(6, 0x0ffd, 0x0ffe),
];
/// Sum of the BVEC lengths.
const BVEC_TOTAL: u64 = 20_073;

/// The 6.13 pattern.
fn pattern(x: u64) -> u8 {
    (x % 256) as u8
}

/// The KVEC ranges in buffer bytes.
fn kvec_spans() -> Vec<(u64, u64)> {
    KVEC_RANGES.iter().map(|r| (r.from, r.to)).collect()
}

/// The BVEC ranges in buffer bytes (table page p = byte p·4096).
fn bvec_spans() -> Vec<(u64, u64)> {
    BVEC_RANGES
        .iter()
        .map(|r| (r.page * TABLE_PAGE + r.from, r.page * TABLE_PAGE + r.to))
        .collect()
}

// ---------------------------------------------------------------------------
// Fixtures.

/// How the kernel test expects a case to end in a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The case runs to the end with every assertion holding.
    Completes,
    /// The walker hits the zero-length bvec 0 and would spin (v4.10).
    SoftLockup,
}

fn boot<A: Arch>(profile: &str) -> Sys<A> {
    let p = KernelProfile::parse(profile).unwrap();
    let sys = Sys::<A>::new(p, PHYS).unwrap();
    assert!(
        sys.m.events.is_empty(),
        "events at boot: {:?}",
        sys.m.events
    );
    sys
}

fn npages<A: Arch>() -> usize {
    (BUFSIZE / A::PAGE_SIZE) as usize
}

/// A test buffer: its frames in buffer order and its `vmap` address.
#[derive(Debug)]
struct Buffer {
    pfns: Vec<Pfn>,
    va: VirtAddr,
}

/// Frames per run of physically consecutive buffer pages.
const RUN: usize = 3;

/// Allocates and maps a 1 MiB buffer with scattered frames (see the module
/// comment).
fn create_buffer<A: Arch>(m: &mut Machine<A>, name: &str) -> Buffer {
    let n = npages::<A>();
    let runs = n.div_ceil(RUN);
    let mut frames = m
        .alloc_kernel_pages(name, (runs * (RUN + 1)) as u32)
        .unwrap();
    frames.sort();
    let pfns: Vec<Pfn> = (0..n)
        .map(|i| frames[(i / RUN) * (RUN + 1) + i % RUN])
        .collect();
    assert!(
        pfns.windows(2).any(|w| w[1].0 != w[0].0 + 1),
        "the buffer must have physically discontiguous page crossings"
    );
    let va = m.vmap(&pfns).unwrap();
    assert_eq!(va.offset_in(A::PAGE_SIZE), 0);
    for (i, p) in pfns.iter().enumerate() {
        let pa = m.kernel_pa(VirtAddr(va.0 + i as u64 * A::PAGE_SIZE));
        assert_eq!(pa, Some(p.addr(A::PAGE_SHIFT)), "vmap of buffer page {i}");
    }
    Buffer { pfns, va }
}

/// Whether the frames a buffer was carved from were one consecutive block
/// (then the runs of three are physically consecutive and the BVEC element
/// count is known).
fn runs_are_contiguous(buf: &Buffer) -> bool {
    buf.pfns
        .chunks(RUN)
        .all(|c| c.windows(2).all(|w| w[1].0 == w[0].0 + 1))
}

fn frame_pa<A: Arch>(p: Pfn) -> PhysAddr {
    p.addr(A::PAGE_SHIFT)
}

/// Fills the buffer with the pattern, frame by frame.
fn fill_pattern<A: Arch>(m: &Machine<A>, buf: &Buffer) {
    let ps = A::PAGE_SIZE;
    for (i, &p) in buf.pfns.iter().enumerate() {
        let base = i as u64 * ps;
        let bytes: Vec<u8> = (base..base + ps).map(pattern).collect();
        m.phys.write(frame_pa::<A>(p), &bytes).unwrap();
    }
}

/// Zeroes the buffer.
fn zero<A: Arch>(m: &Machine<A>, buf: &Buffer) {
    for &p in &buf.pfns {
        m.phys
            .zero(frame_pa::<A>(p), A::PAGE_SIZE as usize)
            .unwrap();
    }
}

/// Reads the whole buffer through its frames.
fn read_frames<A: Arch>(m: &Machine<A>, buf: &Buffer) -> Vec<u8> {
    let ps = A::PAGE_SIZE as usize;
    let mut out = vec![0u8; BUFSIZE as usize];
    for (i, &p) in buf.pfns.iter().enumerate() {
        m.phys
            .read(frame_pa::<A>(p), &mut out[i * ps..(i + 1) * ps])
            .unwrap();
    }
    out
}

/// Compares two 1 MiB images; reports the first mismatch like the kernel.
fn compare(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len());
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: byte {i:#x} is {:#04x}, expected {:#04x}",
            got[i], want[i]
        );
    }
}

/// The KVEC loader: one kvec per table entry (empty ones kept), count = sum.
fn load_kvec(dir: Dir, buf: &Buffer) -> IovIter {
    let mut kvec = Vec::with_capacity(VEC_CAP);
    let mut size = 0;
    for r in &KVEC_RANGES {
        assert!(r.to >= r.from && r.to <= BUFSIZE);
        kvec.push(Iovec {
            base: VirtAddr(buf.va.0 + r.from),
            len: r.to - r.from,
        });
        size += r.to - r.from;
    }
    assert!(kvec.len() <= VEC_CAP);
    let i = IovIter::kvec(dir, kvec, size);
    assert_eq!(i.count, KVEC_TOTAL);
    assert_eq!(i.nr_segs, KVEC_RANGES.len());
    i
}

/// Where table page `page` starts: (buffer frame, offset in it).
fn table_page_loc<A: Arch>(buf: &Buffer, page: u64) -> (Pfn, u64) {
    let byte = page * TABLE_PAGE;
    (
        buf.pfns[(byte / A::PAGE_SIZE) as usize],
        byte % A::PAGE_SIZE,
    )
}

/// The BVEC loader with the merge rule (see the module comment).
fn load_bvec<A: Arch>(dir: Dir, buf: &Buffer) -> IovIter {
    let mut bvec: Vec<BioVec> = Vec::with_capacity(VEC_CAP);
    let mut can_merge: Option<PhysAddr> = None;
    let mut size = 0;
    for r in &BVEC_RANGES {
        assert!(r.page * TABLE_PAGE < BUFSIZE);
        assert!(r.to >= r.from && r.to <= TABLE_PAGE);
        let (pfn, off) = table_page_loc::<A>(buf, r.page);
        let page_pa = frame_pa::<A>(pfn).add(off);
        if r.from == 0 && r.from != r.to && can_merge == Some(page_pa) {
            bvec.last_mut().unwrap().len += r.to as u32;
        } else {
            bvec.push(BioVec {
                page: pfn,
                len: (r.to - r.from) as u32,
                offset: (off + r.from) as u32,
            });
        }
        size += r.to - r.from;
        can_merge = (r.to % TABLE_PAGE == 0).then(|| page_pa.add(r.to));
    }
    assert!(bvec.len() <= VEC_CAP);
    // Element 0 is always the zero-length piece of table page 0.
    let (p0, off0) = table_page_loc::<A>(buf, 0);
    assert_eq!(
        bvec[0],
        BioVec {
            page: p0,
            len: 0,
            offset: (off0 + 2) as u32
        }
    );
    assert!((5..=8).contains(&bvec.len()), "{bvec:?}");
    if runs_are_contiguous(buf) {
        // 4 KiB: [0] [1] [2] [3+4+5] [6] [7]; 64 KiB: [0] [1] [2] [3+4+5+6] [7].
        let want = if A::PAGE_SIZE == TABLE_PAGE { 6 } else { 5 };
        assert_eq!(bvec.len(), want, "{bvec:?}");
    }
    let i = IovIter::bvec(dir, bvec, size);
    assert_eq!(i.count, BVEC_TOTAL);
    i
}

fn count_events<A: Arch>(m: &Machine<A>, kind: EventKind) -> usize {
    m.events.iter().filter(|e| e.kind == kind).count()
}

fn assert_clean<A: Arch>(m: &Machine<A>) {
    assert!(m.events.is_empty(), "unexpected events: {:?}", m.events);
}

// ---------------------------------------------------------------------------
// Expected images.

/// "to" case, KVEC: the ranges hold pattern(0), pattern(1), … in order.
fn kvec_to_image() -> Vec<u8> {
    let mut img = vec![0u8; BUFSIZE as usize];
    let mut patt = 0;
    for r in &KVEC_RANGES {
        for j in r.from..r.to {
            img[j as usize] = pattern(patt);
            patt += 1;
        }
    }
    img
}

/// "from" case, KVEC: the concatenation of pattern(from..to) per range.
fn kvec_from_image() -> Vec<u8> {
    let mut img = vec![0u8; BUFSIZE as usize];
    let mut i = 0;
    for r in &KVEC_RANGES {
        for j in r.from..r.to {
            img[i] = pattern(j);
            i += 1;
        }
    }
    img
}

/// "to" case, BVEC: table page p bytes [from, to) hold the running pattern.
fn bvec_to_image() -> Vec<u8> {
    let mut img = vec![0u8; BUFSIZE as usize];
    let mut patt = 0;
    for r in &BVEC_RANGES {
        let base = r.page * TABLE_PAGE;
        for j in r.from..r.to {
            img[(base + j) as usize] = pattern(patt);
            patt += 1;
        }
    }
    img
}

/// "from" case, BVEC: the concatenation of pattern(p·4096 + j).
fn bvec_from_image() -> Vec<u8> {
    let mut img = vec![0u8; BUFSIZE as usize];
    let mut i = 0;
    for r in &BVEC_RANGES {
        for j in r.from..r.to {
            img[i] = pattern(r.page * TABLE_PAGE + j);
            i += 1;
        }
    }
    img
}

// ---------------------------------------------------------------------------
// Cases.

/// `copy_to_kvec`: copy the pattern into the KVEC ranges of a zeroed buffer.
fn copy_to_kvec<A: Arch>(profile: &str, expect: Expect) {
    assert_eq!(expect, Expect::Completes);
    let mut sys = boot::<A>(profile);
    let scratch: Vec<u8> = (0..BUFSIZE).map(pattern).collect();
    let buf = create_buffer(&mut sys.m, "kunit-buffer");
    zero(&sys.m, &buf);
    let mut iter = load_kvec(Dir::Read, &buf);
    let size = iter.count;
    let copied = sys.copy_to_iter(&scratch[..size as usize], &mut iter);
    assert_eq!(copied, size);
    assert_eq!(iter.count, 0);
    assert_eq!(iter.nr_segs, 0);
    compare("copy_to_kvec", &read_frames(&sys.m, &buf), &kvec_to_image());
    // The vmap view agrees with the frames.
    let mut via_vmap = vec![0u8; BUFSIZE as usize];
    assert_eq!(kernel_read(&sys.m, buf.va, &mut via_vmap), 0);
    compare("copy_to_kvec (vmap)", &via_vmap, &kvec_to_image());
    assert_clean(&sys.m);
}

/// `copy_from_kvec`: copy the KVEC ranges of a pattern buffer out.
fn copy_from_kvec<A: Arch>(profile: &str, expect: Expect) {
    assert_eq!(expect, Expect::Completes);
    let mut sys = boot::<A>(profile);
    let buf = create_buffer(&mut sys.m, "kunit-buffer");
    fill_pattern(&sys.m, &buf);
    let mut scratch = vec![0u8; BUFSIZE as usize];
    let mut iter = load_kvec(Dir::Write, &buf);
    let size = iter.count.min(BUFSIZE);
    let copied = sys.copy_from_iter(&mut scratch, &mut iter);
    assert_eq!(copied, size);
    assert_eq!(iter.count, 0);
    assert_eq!(iter.nr_segs, 0);
    compare("copy_from_kvec", &scratch, &kvec_from_image());
    // The source is untouched.
    let src: Vec<u8> = (0..BUFSIZE).map(pattern).collect();
    compare("copy_from_kvec source", &read_frames(&sys.m, &buf), &src);
    assert_clean(&sys.m);
}

/// In v4.10 the bvec walker stops at element 0: nothing is processed, the
/// iterator is unchanged and a soft lockup is reported at element 0.
fn assert_bvec_livelock<A: Arch>(sys: &Sys<A>, copied: u64, before: &IovIter, after: &IovIter) {
    assert_eq!(copied, 0, "the walker cannot pass the zero-length bvec 0");
    assert_eq!(after, before, "the iterator must not move");
    assert_eq!(
        count_events(&sys.m, EventKind::SoftLockup),
        1,
        "{:?}",
        sys.m.events
    );
    assert_eq!(sys.m.events.len(), 1, "{:?}", sys.m.events);
    let e = &sys.m.events[0];
    assert!(e.detail.contains("element 0"), "{e}");
}

/// `copy_to_bvec`: copy the pattern into the BVEC ranges of a zeroed buffer.
fn copy_to_bvec<A: Arch>(profile: &str, expect: Expect) {
    let mut sys = boot::<A>(profile);
    let scratch_buf = create_buffer(&mut sys.m, "kunit-scratch");
    fill_pattern(&sys.m, &scratch_buf);
    let scratch = read_frames(&sys.m, &scratch_buf);
    let buf = create_buffer(&mut sys.m, "kunit-buffer");
    zero(&sys.m, &buf);
    let mut iter = load_bvec::<A>(Dir::Read, &buf);
    let before = iter.clone();
    let size = iter.count;
    let copied = sys.copy_to_iter(&scratch[..size as usize], &mut iter);
    match expect {
        Expect::Completes => {
            assert_eq!(copied, size);
            assert_eq!(iter.count, 0);
            assert_eq!(iter.nr_segs, 0);
            compare("copy_to_bvec", &read_frames(&sys.m, &buf), &bvec_to_image());
            assert_clean(&sys.m);
        }
        Expect::SoftLockup => {
            assert_bvec_livelock(&sys, copied, &before, &iter);
            compare(
                "copy_to_bvec (stalled)",
                &read_frames(&sys.m, &buf),
                &vec![0u8; BUFSIZE as usize],
            );
        }
    }
}

/// `copy_from_bvec`: copy the BVEC ranges of a pattern buffer out.
fn copy_from_bvec<A: Arch>(profile: &str, expect: Expect) {
    let mut sys = boot::<A>(profile);
    let buf = create_buffer(&mut sys.m, "kunit-buffer");
    fill_pattern(&sys.m, &buf);
    let mut scratch = vec![0u8; BUFSIZE as usize];
    let mut iter = load_bvec::<A>(Dir::Write, &buf);
    let before = iter.clone();
    let size = iter.count.min(BUFSIZE);
    let copied = sys.copy_from_iter(&mut scratch, &mut iter);
    match expect {
        Expect::Completes => {
            assert_eq!(copied, size);
            assert_eq!(iter.count, 0);
            assert_eq!(iter.nr_segs, 0);
            compare("copy_from_bvec", &scratch, &bvec_from_image());
            assert_clean(&sys.m);
        }
        Expect::SoftLockup => {
            assert_bvec_livelock(&sys, copied, &before, &iter);
            compare(
                "copy_from_bvec (stalled)",
                &scratch,
                &vec![0u8; BUFSIZE as usize],
            );
        }
    }
}

/// The kernel test's expected-position walk over the ranges, in buffer bytes.
struct Cursor<'a> {
    spans: &'a [(u64, u64)],
    ri: usize,
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn new(spans: &'a [(u64, u64)]) -> Self {
        Self {
            spans,
            ri: 0,
            pos: spans[0].0,
        }
    }

    /// Skips every range whose end the cursor has reached (empty ranges
    /// included); false when the table is exhausted.
    fn settle(&mut self) -> bool {
        while self.pos == self.spans[self.ri].1 {
            self.ri += 1;
            if self.ri == self.spans.len() {
                return false;
            }
            self.pos = self.spans[self.ri].0;
        }
        true
    }

    /// Moves `n` bytes on; a page piece may only run into the next range if
    /// that range continues the same bytes.
    fn advance(&mut self, mut n: u64) {
        loop {
            let take = n.min(self.spans[self.ri].1 - self.pos);
            self.pos += take;
            n -= take;
            if n == 0 {
                return;
            }
            let end = self.pos;
            assert!(self.settle(), "a page piece runs past the last range");
            assert_eq!(
                self.pos, end,
                "a page piece spans two non-adjacent ranges (range {})",
                self.ri
            );
        }
    }
}

/// The extraction loop of `extract_pages_kvec` / `extract_pages_bvec`.
/// Returns the largest number of pages one call returned.
fn extraction_loop<A: Arch>(
    sys: &mut Sys<A>,
    iter: &mut IovIter,
    buf: &Buffer,
    spans: &[(u64, u64)],
) -> usize {
    let ps = A::PAGE_SIZE;
    let mut size = iter.count;
    let mut cur = Cursor::new(spans);
    let mut most = 0;
    'calls: loop {
        let g = sys
            .iov_iter_extract_pages(iter, EXTRACT_MAXSIZE, EXTRACT_MAXPAGES)
            .unwrap_or_else(|e| panic!("extraction failed: {e:?}"));
        let mut len = g.bytes;
        let mut offset0 = g.start;
        assert!(offset0 < ps, "offset0 {offset0:#x}");
        assert!(len <= size, "returned {len} with {size} left");
        assert_eq!(iter.count, size - len);
        size -= len;
        if len == 0 {
            break;
        }
        assert!(!g.pinned, "kernel-backed extraction neither pins nor refs");
        assert!(g.pages.len() as u64 <= EXTRACT_MAXPAGES, "{g:?}");
        most = most.max(g.pages.len());
        for k in 0..EXTRACT_MAXPAGES as usize {
            let part = len.min(ps - offset0);
            if !cur.settle() {
                break 'calls;
            }
            let ix = (cur.pos / ps) as usize;
            assert!(ix < buf.pfns.len());
            let Some(&got) = g.pages.get(k) else {
                panic!("slot {k} not filled (poison) with {len} bytes left: {g:?}");
            };
            assert_eq!(
                got, buf.pfns[ix],
                "slot {k}: position {:#x} is in buffer page {ix}",
                cur.pos
            );
            assert_eq!(offset0, cur.pos % ps, "slot {k}: offset at {:#x}", cur.pos);
            cur.advance(part);
            len -= part;
            if len == 0 {
                break;
            }
            offset0 = 0;
        }
        if iter.count == 0 {
            break;
        }
    }
    assert_eq!(size, 0);
    assert_eq!(iter.count, 0);
    assert_eq!(sys.m.held_total(), (0, 0), "no reference may be taken");
    most
}

/// `extract_pages_kvec` (v6.13 only).
fn extract_pages_kvec<A: Arch>(profile: &str, expect: Expect) {
    assert_eq!(expect, Expect::Completes);
    let mut sys = boot::<A>(profile);
    let buf = create_buffer(&mut sys.m, "kunit-buffer");
    let mut iter = load_kvec(Dir::Read, &buf);
    let most = extraction_loop(&mut sys, &mut iter, &buf, &kvec_spans());
    // Range 6 is 880,635 bytes: calls of 100 KiB return several pages.
    assert!(most > 1, "every call returned one page");
    assert_clean(&sys.m);
}

/// `extract_pages_bvec` (v6.13 only).
fn extract_pages_bvec<A: Arch>(profile: &str, expect: Expect) {
    assert_eq!(expect, Expect::Completes);
    let mut sys = boot::<A>(profile);
    let buf = create_buffer(&mut sys.m, "kunit-buffer");
    let mut iter = load_bvec::<A>(Dir::Read, &buf);
    let most = extraction_loop(&mut sys, &mut iter, &buf, &bvec_spans());
    if A::PAGE_SIZE == TABLE_PAGE && runs_are_contiguous(&buf) {
        // [3+4+5] ends on a page end and [6] starts at 0: one call returns
        // the four pages 3, 4, 5, 6.
        assert_eq!(most, 4);
    }
    assert_clean(&sys.m);
}

// ---------------------------------------------------------------------------
// Instantiation: case × profile × arch.
//
// The geometry variants run the same vectors under every profile whose
// kernel has them (`KernelProfile::supports_arch`): `x86_64-la57` needs
// CONFIG_X86_5LEVEL (v4.14, so not v4.10) and `arm64-52` needs 52-bit VAs
// with 4 KiB pages (LPA2, v6.9); `arm64-16k` exists in every profile. Their
// expectations are those of the base arch: nothing in the vectors depends on
// the VA width (the buffers are vmap'ed kernel memory, not user addresses),
// and with 16 KiB pages the BVEC table behaves as with 64 KiB pages (table
// pages 0-3 share buffer frame 0 and 4-7 frame 1, so the loader merges
// [3+4+5+6] into one element: five elements, as `load_bvec` checks).
// `geometry_variants_need_their_build_option` checks the refusals.

macro_rules! kunit_arch_tests {
    ($f:ident, $name:literal, $expect:expr; $($arch:ident = $ty:ty),+) => {
        $(
            #[test]
            fn $arch() {
                $f::<$ty>($name, $expect);
            }
        )+
    };
}

macro_rules! kunit_case {
    ($case:ident => $f:ident: $($prof:ident = ($name:literal, $expect:expr) [$($arch:ident = $ty:ty),+]),+ $(,)?) => {
        mod $case {
            $(
                mod $prof {
                    use super::super::*;
                    kunit_arch_tests!($f, $name, $expect; $($arch = $ty),+);
                }
            )+
        }
    };
}

/// A case under every base profile, each with the arches its kernel has;
/// `$expect4` is the v4.x outcome.
macro_rules! kunit_case_every_profile {
    ($case:ident => $f:ident: $expect4:expr) => {
        kunit_case!($case => $f:
            v6_13 = ("v6.13", Expect::Completes) [
                x86_64 = X86_64, arm64 = Arm64, ppc64 = Ppc64, ppc64_4k = Ppc64_4k,
                x86_64_la57 = X86_64La57, arm64_52 = Arm64_52, arm64_16k = Arm64_16k
            ],
            v6_18 = ("v6.18", Expect::Completes) [
                x86_64 = X86_64, arm64 = Arm64, ppc64 = Ppc64, ppc64_4k = Ppc64_4k,
                x86_64_la57 = X86_64La57, arm64_52 = Arm64_52, arm64_16k = Arm64_16k
            ],
            v4_17 = ("v4.17", $expect4) [
                x86_64 = X86_64, arm64 = Arm64, ppc64 = Ppc64, ppc64_4k = Ppc64_4k,
                x86_64_la57 = X86_64La57, arm64_16k = Arm64_16k
            ],
            v4_10 = ("v4.10", $expect4) [
                x86_64 = X86_64, arm64 = Arm64, ppc64 = Ppc64, ppc64_4k = Ppc64_4k,
                arm64_16k = Arm64_16k
            ],
        );
    };
}

kunit_case_every_profile!(copy_to_kvec => copy_to_kvec: Expect::Completes);
kunit_case_every_profile!(copy_from_kvec => copy_from_kvec: Expect::Completes);
// v4.10 and v4.17 hang on the zero-length bvec 0 (fixed in 5.9).
kunit_case_every_profile!(copy_to_bvec => copy_to_bvec: Expect::SoftLockup);
kunit_case_every_profile!(copy_from_bvec => copy_from_bvec: Expect::SoftLockup);
// v4.x has no iov_iter_extract_pages (6.3+): the extraction cases have no
// v4.x counterpart and run under the 6.x profiles only.
kunit_case!(extract_pages_kvec => extract_pages_kvec:
    v6_13 = ("v6.13", Expect::Completes) [
        x86_64 = X86_64, arm64 = Arm64, ppc64 = Ppc64, ppc64_4k = Ppc64_4k,
        x86_64_la57 = X86_64La57, arm64_52 = Arm64_52, arm64_16k = Arm64_16k
    ],
    v6_18 = ("v6.18", Expect::Completes) [
        x86_64 = X86_64, arm64 = Arm64, ppc64 = Ppc64, ppc64_4k = Ppc64_4k,
        x86_64_la57 = X86_64La57, arm64_52 = Arm64_52, arm64_16k = Arm64_16k
    ],
);
kunit_case!(extract_pages_bvec => extract_pages_bvec:
    v6_13 = ("v6.13", Expect::Completes) [
        x86_64 = X86_64, arm64 = Arm64, ppc64 = Ppc64, ppc64_4k = Ppc64_4k,
        x86_64_la57 = X86_64La57, arm64_52 = Arm64_52, arm64_16k = Arm64_16k
    ],
    v6_18 = ("v6.18", Expect::Completes) [
        x86_64 = X86_64, arm64 = Arm64, ppc64 = Ppc64, ppc64_4k = Ppc64_4k,
        x86_64_la57 = X86_64La57, arm64_52 = Arm64_52, arm64_16k = Arm64_16k
    ],
);

/// The variants the v4.x rows leave out are those the profile refuses
/// (`vmemu run`/`matrix` do not run them), for the reason the instantiation
/// comment gives; the rows of the other profiles run every variant.
#[test]
fn geometry_variants_need_their_build_option() {
    for (profile, la57, lpa2) in [
        ("v4.10", false, false),
        ("v4.17", true, false),
        ("v6.13", true, true),
        ("v6.18", true, true),
    ] {
        let p = KernelProfile::parse(profile).unwrap();
        let has = |id| p.supports_arch(id).is_ok();
        assert_eq!(has(<X86_64La57 as Arch>::ID), la57, "{profile}");
        assert_eq!(has(<Arm64_52 as Arch>::ID), lpa2, "{profile}");
        assert!(has(<Arm64_16k as Arch>::ID), "{profile}");
    }
}
