//! The machines, tables and buffers the bench cases run on, shared by
//! `vmemu bench` and the criterion benches (`harness/benches/`).
//!
//! Every fixture is built once and reused for all rounds; one *pass* runs the
//! whole workload once (every address, every page, every iovec) and returns
//! the time of the measured part only (references taken by a gup pass are
//! released after the clock stops).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vmemu_arch::{Arch, Family, Level, Pfn, PhysAddr, PteFlags, VirtAddr};
use vmemu_host::{HostPipe, HostRegion, UserIovec, page_size, process_vm_readv_self};
use vmemu_iter::Sys;
use vmemu_iter::iov_iter::{Dir, IovIter, Iovec};
use vmemu_mm::pgtable::{self, RootSel};
use vmemu_mm::phys::PhysMem;
use vmemu_mm::{Backing, GupFlags, KernelProfile, Machine, MapFlags, Prot};

/// Pages walked by the W cases (the mapping they walk).
pub const WALK_PAGES: u64 = 16384;
/// Pages of the 4 KiB-leaf region of the G cases ("all" takes them in one call).
pub const GUP_PAGES: u64 = 16384;
/// Pages of the PMD-leaf (THP) region of G4.
pub const THP_PAGES: u64 = 4096;
/// Pages per gup-fast call in the batch-size study; 0 stands for "all".
pub const BATCHES: [u64; 5] = [1, 16, 64, 512, 0];
/// C1: 16384 user iovecs of 4 KiB.
pub const C1_SEGS: usize = 16384;
/// C1 segment length.
pub const C1_LEN: usize = 4096;
/// C3: 65536 user iovecs of 512 B.
pub const C3_SEGS: usize = 65536;
/// C3 segment length.
pub const C3_LEN: usize = 512;
/// Base virtual address of the fixed mappings (1 TiB: user space on every arch).
const FIXED_BASE: u64 = 1 << 40;

/// The kernel profile the cases run under: the newest base (v6.13).
#[must_use]
pub fn profile() -> KernelProfile {
    KernelProfile::newest()
}

/// A deterministic generator (SplitMix64) for the random address order.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn err(what: &str, e: impl std::fmt::Debug) -> String {
    format!("bench setup: {what}: {e:?}")
}

/// A host buffer of the yardsticks: `len` bytes of anonymous memory of the
/// bench process with base pages only (`MADV_NOHUGEPAGE`), every byte
/// `fill` (every page touched once).
fn host_buf(len: usize, fill: u8) -> Result<HostRegion, String> {
    let r = HostRegion::map_anon(len.max(1).div_ceil(page_size()))
        .map_err(|e| err("host buffer", e))?;
    r.no_hugepage().map_err(|e| err("madvise", e))?;
    r.fill(fill).map_err(|e| err("host buffer fill", e))?;
    Ok(r)
}

/// The yardstick's page tables: the emulated tables of one mm copied into one
/// `Vec<u64>`, every table at its own offset, walked by index arithmetic only.
/// An entry is `payload << 2 | leaf << 1 | present`; the payload is the
/// child table's offset or the leaf's pfn.
#[derive(Debug, Clone)]
pub struct Flat {
    /// All tables, concatenated.
    pub t: Vec<u64>,
    /// Offset of the top-level table.
    pub root: usize,
}

impl Flat {
    /// Copies every table reachable from `pgd`.
    #[must_use]
    pub fn from_tables<A: Arch>(phys: &PhysMem, fam: Family, pgd: PhysAddr) -> Self {
        fn rec<A: Arch>(
            phys: &PhysMem,
            fam: Family,
            pa: PhysAddr,
            level: Level,
            t: &mut Vec<u64>,
        ) -> usize {
            let n = A::entries(level);
            let base = t.len();
            t.resize(base + n, 0);
            let Ok(view) = phys.table(pa, n) else {
                return base;
            };
            let raws: Vec<u64> = (0..n).map(|i| view.get(i).unwrap_or(0)).collect();
            for (i, raw) in raws.into_iter().enumerate() {
                if raw == 0 {
                    continue;
                }
                let pte = A::decode(fam, level, raw);
                if pte.has(PteFlags::TABLE) && level != A::leaf_level() {
                    let child = rec::<A>(
                        phys,
                        fam,
                        pgtable::next_table::<A>(fam, level, raw),
                        Level(level.0 + 1),
                        t,
                    );
                    t[base + i] = (child as u64) << 2 | 1;
                } else if pte.has(PteFlags::LEAF) && pte.has(PteFlags::VALID) {
                    t[base + i] = pte.pfn.0 << 2 | 3;
                }
            }
            base
        }
        let mut t = Vec::new();
        let root = rec::<A>(phys, fam, pgd, Level(0), &mut t);
        Self { t, root }
    }

    /// The flat walk of `va`: the physical address, or `None`.
    #[inline]
    #[must_use]
    pub fn walk<A: Arch>(&self, va: u64) -> Option<u64> {
        let mut base = self.root;
        for g in A::LEVELS {
            let e = self.t[base + ((va >> g.shift) & ((1 << g.bits) - 1)) as usize];
            if e & 1 == 0 {
                return None;
            }
            if e & 2 != 0 {
                return Some(((e >> 2) << A::PAGE_SHIFT) + (va & ((1u64 << g.shift) - 1)));
            }
            base = (e >> 2) as usize;
        }
        None
    }

    /// The limit of an emulated gup-fast, doing the work v6.13
    /// `gup_fast_pte_range` does per page and no more: walk down to the
    /// leaf table once per table, then per page read and test the entry,
    /// take a reference with `try_get_folio`'s checks (refused on a count
    /// below 0, the overflow check, or of 0, `folio_ref_try_add`), read the
    /// entry again and compare (`pte_val(pte) != pte_val(ptep_get(ptep))`),
    /// set `PG_referenced` (`folio_set_referenced`) and record the page.
    /// Returns the pages taken. With [`FlatPage`]s the counter and flag
    /// updates are the emulator's kind, plain (a machine is driven by one
    /// thread, so the emulator has no atomic `_refcount` to pay for); with
    /// [`AtomicFlatPage`]s they are the kernel's: `atomic_add_unless` (a
    /// compare-and-swap loop) and an atomic `set_bit`.
    #[inline]
    pub fn gup<A: Arch, R: RefInc + ?Sized>(
        &self,
        refs: &mut R,
        start: u64,
        nr: u64,
        out: &mut Vec<u64>,
    ) -> u64 {
        let levels = A::LEVELS;
        let leaf = levels[levels.len() - 1];
        let end = start + nr * A::PAGE_SIZE;
        let mut addr = start;
        let mut taken = 0;
        'tables: while addr < end {
            let mut base = self.root;
            for g in &levels[..levels.len() - 1] {
                let e = self.t[base + ((addr >> g.shift) & ((1 << g.bits) - 1)) as usize];
                if e & 3 != 1 {
                    break 'tables;
                }
                base = (e >> 2) as usize;
            }
            let mut idx = ((addr >> leaf.shift) & ((1 << leaf.bits) - 1)) as usize;
            let entries = 1usize << leaf.bits;
            while addr < end && idx < entries {
                let slot = &self.t[base + idx];
                let e = *slot;
                if e & 1 == 0 {
                    break 'tables;
                }
                let pfn = e >> 2;
                if !refs.try_get(pfn as usize) {
                    break 'tables;
                }
                // The re-read: through `black_box`, so that the compiler
                // cannot reuse `e` (it knows nothing wrote the tables).
                if *std::hint::black_box(slot) != e {
                    refs.dec(pfn as usize);
                    break 'tables;
                }
                refs.mark(pfn as usize);
                out.push(pfn);
                taken += 1;
                idx += 1;
                addr += A::PAGE_SIZE;
            }
        }
        taken
    }
}

/// `PG_referenced` in the flat yardstick's flags word.
const FLAT_REFERENCED: u32 = 1 << 2;

/// The flat yardstick's `struct page`, plain: the reference count and the
/// flags word, side by side as in the emulator's `Page`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlatPage {
    /// `_refcount`.
    pub refcount: u32,
    /// `flags`.
    pub flags: u32,
}

/// The flat yardstick's `struct page` with the kernel's atomics.
#[derive(Debug, Default)]
pub struct AtomicFlatPage {
    /// `_refcount`.
    pub refcount: AtomicU32,
    /// `flags`.
    pub flags: AtomicU32,
}

/// The reference and flag operations of a flat gup: plain or atomic.
pub trait RefInc {
    /// `try_get_folio` of one reference on frame `i`: refused (`false`)
    /// when the count reads below 0 as a signed value or is 0.
    fn try_get(&mut self, i: usize) -> bool;
    /// `folio_set_referenced` on frame `i`.
    fn mark(&mut self, i: usize);
    /// Drops one reference from frame `i`.
    fn dec(&mut self, i: usize);
}

impl RefInc for [FlatPage] {
    #[inline]
    fn try_get(&mut self, i: usize) -> bool {
        let p = &mut self[i];
        if (p.refcount as i32) <= 0 {
            return false;
        }
        p.refcount = p.refcount.saturating_add(1);
        true
    }
    #[inline]
    fn mark(&mut self, i: usize) {
        self[i].flags |= FLAT_REFERENCED;
    }
    #[inline]
    fn dec(&mut self, i: usize) {
        self[i].refcount -= 1;
    }
}

impl RefInc for [AtomicFlatPage] {
    #[inline]
    fn try_get(&mut self, i: usize) -> bool {
        // `atomic_add_unless(&_refcount, 1, 0)` after the `< 0` check: a
        // compare-and-swap loop (`lock cmpxchg` on x86, `casal` on arm64
        // with LSE), fully ordered as the kernel's.
        self[i]
            .refcount
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                ((c as i32) > 0).then_some(c + 1)
            })
            .is_ok()
    }
    #[inline]
    fn mark(&mut self, i: usize) {
        // `set_bit`: an atomic or (`lock or` on x86).
        self[i].flags.fetch_or(FLAT_REFERENCED, Ordering::Relaxed);
    }
    #[inline]
    fn dec(&mut self, i: usize) {
        self[i].refcount.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `pages` pages from `base` through the flat limit in calls of `nr`.
#[inline]
fn flat_calls<A: Arch, R: RefInc + ?Sized>(
    flat: &Flat,
    refs: &mut R,
    base: u64,
    pages: u64,
    nr: u64,
    out: &mut Vec<u64>,
) -> u64 {
    let mut taken = 0;
    let mut done = 0;
    while done < pages {
        let n = nr.min(pages - done);
        taken += flat.gup::<A, R>(refs, base + done * A::PAGE_SIZE, n, out);
        done += n;
    }
    taken
}

/// W1/W3: a mapping of [`WALK_PAGES`] pages, every page read-faulted (each
/// maps the zero page: the walk does not care which frame), and both address
/// orders.
#[derive(Debug)]
pub struct WalkFix<A: Arch> {
    /// The emulated kernel.
    pub m: Machine<A>,
    /// The same tables, flat.
    pub flat: Flat,
    /// Addresses in page order.
    pub seq: Vec<u64>,
    /// The same addresses shuffled.
    pub rand: Vec<u64>,
}

impl<A: Arch> WalkFix<A> {
    /// Builds the mapping and checks that both walks agree on every address.
    pub fn new(pages: u64) -> Result<Self, String> {
        let mut m = Machine::<A>::new(profile(), 128 << 20).map_err(|e| err("machine", e))?;
        let mm = m.current_mm();
        let base = m
            .mmap(
                mm,
                Some(VirtAddr(FIXED_BASE)),
                pages * A::PAGE_SIZE,
                Prot::RW,
                MapFlags::default(),
                Backing::Anon,
                "walk",
            )
            .map_err(|e| err("mmap", e))?;
        let seq: Vec<u64> = (0..pages)
            .map(|i| base.0 + i * A::PAGE_SIZE + 0x10)
            .collect();
        for &va in &seq {
            m.get_user(VirtAddr(va), 1)
                .map_err(|e| err("read fault", e))?;
        }
        let flat = Flat::from_tables::<A>(&m.phys, m.family(), m.mm(mm).pgd);
        let mut rand = seq.clone();
        SplitMix(0x5eed).shuffle(&mut rand);
        let f = Self { m, flat, seq, rand };
        for &va in &f.seq {
            let e = f.emu_one(va);
            let g = f.flat.walk::<A>(va);
            if e != g {
                return Err(format!(
                    "bench setup: walks disagree at {va:#x}: {e:x?} vs {g:x?}"
                ));
            }
        }
        Ok(f)
    }

    #[inline]
    fn emu_one(&self, va: u64) -> Option<u64> {
        let mm = self.m.current_mm();
        pgtable::walk::<A>(
            &self.m.phys,
            self.m.family(),
            self.m.roots(mm),
            VirtAddr(va),
            RootSel::Software,
            |_| {},
        )
        .ok()
        .map(|t| t.pa.0)
    }

    /// Walks every address through the emulated tables; returns a checksum.
    #[must_use]
    pub fn emu(&self, addrs: &[u64]) -> u64 {
        let fam = self.m.family();
        let roots = self.m.roots(self.m.current_mm());
        let mut sum = 0u64;
        for &va in addrs {
            if let Ok(t) = pgtable::walk::<A>(
                &self.m.phys,
                fam,
                roots,
                VirtAddr(va),
                RootSel::Software,
                |_| {},
            ) {
                sum = sum.wrapping_add(t.pa.0);
            }
        }
        sum
    }

    /// Walks every address through the flat tables; returns a checksum.
    #[must_use]
    pub fn flat(&self, addrs: &[u64]) -> u64 {
        let mut sum = 0u64;
        for &va in addrs {
            if let Some(pa) = self.flat.walk::<A>(va) {
                sum = sum.wrapping_add(pa);
            }
        }
        sum
    }
}

/// G1–G4 and the batch-size study: a region of [`GUP_PAGES`] write-faulted
/// 4 KiB-leaf pages, a region of [`THP_PAGES`] pages mapped by PMD leaves,
/// the flat copy of the tables, and the host buffer and pipe of the vmsplice
/// yardstick.
#[derive(Debug)]
pub struct GupFix<A: Arch> {
    /// The emulated kernel.
    pub m: Machine<A>,
    /// Start of the 4 KiB-leaf region.
    pub base: VirtAddr,
    /// Its pages.
    pub pages: u64,
    /// Start of the PMD-leaf region.
    pub thp: VirtAddr,
    /// Its pages.
    pub thp_pages: u64,
    /// The tables, flat.
    pub flat: Flat,
    /// The flat yardstick's `struct page`s, by pfn, with the emulator's
    /// reference counts (a mapped page holds one).
    pub refs: Vec<FlatPage>,
    /// The same as atomics, for the atomic yardstick.
    pub arefs: Vec<AtomicFlatPage>,
    out: Vec<Pfn>,
    flat_out: Vec<u64>,
}

impl<A: Arch> GupFix<A> {
    /// Maps and faults both regions.
    pub fn new(pages: u64, thp_pages: u64) -> Result<Self, String> {
        let phys = (pages + thp_pages) * A::PAGE_SIZE + (64 << 20);
        let mut m = Machine::<A>::new(profile(), phys).map_err(|e| err("machine", e))?;
        let mm = m.current_mm();
        let base = m
            .mmap(
                mm,
                Some(VirtAddr(FIXED_BASE)),
                pages * A::PAGE_SIZE,
                Prot::RW,
                MapFlags::default(),
                Backing::Anon,
                "gup",
            )
            .map_err(|e| err("mmap", e))?;
        for i in 0..pages {
            m.put_user(i, base.wrapping_add(i * A::PAGE_SIZE), 1)
                .map_err(|e| err("write fault", e))?;
        }
        let pmd = Level(A::levels() as u8 - 2);
        let span = A::entry_span(pmd);
        let thp_len = (thp_pages * A::PAGE_SIZE).div_ceil(span) * span;
        let thp = m
            .mmap(
                mm,
                Some(VirtAddr(FIXED_BASE * 2)),
                thp_len,
                Prot::RW,
                MapFlags {
                    hugepage: true,
                    ..MapFlags::default()
                },
                Backing::Anon,
                "thp",
            )
            .map_err(|e| err("mmap thp", e))?;
        for i in 0..thp_len / span {
            let va = thp.wrapping_add(i * span);
            m.put_user(i, va, 1).map_err(|e| err("thp fault", e))?;
            let slot = pgtable::lookup::<A>(&m.phys, m.family(), m.mm(mm).pgd, va);
            if slot.is_none_or(|s| s.level != pmd) {
                return Err(format!("bench setup: no PMD leaf at {va}"));
            }
        }
        let flat = Flat::from_tables::<A>(&m.phys, m.family(), m.mm(mm).pgd);
        let refs: Vec<FlatPage> = (0..m.phys.nr_frames())
            .map(|p| FlatPage {
                refcount: m.phys.page(Pfn(p)).refcount,
                flags: 0,
            })
            .collect();
        let n = pages.max(thp_pages) as usize;
        Ok(Self {
            m,
            base,
            pages,
            thp,
            thp_pages,
            flat,
            arefs: refs
                .iter()
                .map(|r| AtomicFlatPage {
                    refcount: AtomicU32::new(r.refcount),
                    flags: AtomicU32::new(r.flags),
                })
                .collect(),
            refs,
            out: Vec::with_capacity(n),
            flat_out: Vec::with_capacity(n),
        })
    }

    /// One pass of `get_user_pages_fast(FOLL_WRITE)` over the 4 KiB region
    /// (or the THP region) in calls of `nr` pages (0 = all in one call).
    /// Returns the time of the calls and the pages taken; the references are
    /// released after the clock stops.
    pub fn emu_pass(&mut self, nr: u64, thp: bool) -> Result<(Duration, u64), String> {
        let (base, pages) = if thp {
            (self.thp, self.thp_pages)
        } else {
            (self.base, self.pages)
        };
        let nr = if nr == 0 { pages } else { nr };
        self.out.clear();
        let mut short = None;
        let t0 = Instant::now();
        let mut done = 0;
        while done < pages {
            let n = nr.min(pages - done);
            let got = self.m.get_user_pages_fast(
                base.wrapping_add(done * A::PAGE_SIZE),
                n as i64,
                GupFlags::FOLL_WRITE,
                &mut self.out,
            );
            if got != Ok(n) {
                short = Some(got);
            }
            done += n;
        }
        let dt = t0.elapsed();
        for p in self.out.drain(..) {
            let _ = self.m.put_page(p);
        }
        match short {
            Some(got) => Err(format!("gup-fast of {nr} pages returned {got:?}")),
            None => Ok((dt, pages)),
        }
    }

    /// One pass of the flat limit over the 4 KiB region in calls of `nr`
    /// pages, with plain (the emulator's kind) or atomic (the kernel's
    /// kind) refcount increments.
    pub fn flat_pass(&mut self, nr: u64, atomic: bool) -> Result<(Duration, u64), String> {
        let pages = self.pages;
        let nr = if nr == 0 { pages } else { nr };
        self.flat_out.clear();
        let (flat, base, out) = (&self.flat, self.base.0, &mut self.flat_out);
        let t0 = Instant::now();
        let taken = if atomic {
            flat_calls::<A, _>(flat, &mut self.arefs[..], base, pages, nr, out)
        } else {
            flat_calls::<A, _>(flat, &mut self.refs[..], base, pages, nr, out)
        };
        let dt = t0.elapsed();
        for p in self.flat_out.drain(..) {
            if atomic {
                self.arefs[..].dec(p as usize);
            } else {
                self.refs[..].dec(p as usize);
            }
        }
        if taken != pages {
            return Err(format!("flat gup took {taken} of {pages} pages"));
        }
        Ok((dt, pages))
    }
}

/// G2's yardstick: host pages (4 KiB, no THP) spliced into a pipe with
/// `vmsplice(2)` and drained with `read(2)`.
#[derive(Debug)]
pub struct HostSplice {
    buf: HostRegion,
    pipe: HostPipe,
    scratch: Vec<u8>,
    pages: usize,
}

impl HostSplice {
    /// A buffer of `pages` host pages and a pipe of up to 512 pages.
    pub fn new(pages: usize) -> Result<Self, String> {
        Ok(Self {
            buf: host_buf(pages * 4096, 0x5a)?,
            pipe: HostPipe::new(512 * 4096).map_err(|e| err("pipe", e))?,
            scratch: vec![0; 64 << 10],
            pages,
        })
    }

    /// Bytes the pipe holds.
    #[must_use]
    pub fn pipe_capacity(&self) -> usize {
        self.pipe.capacity()
    }

    /// One pass: every page, `nr` pages per vmsplice request (split where
    /// the pipe is full), the pipe drained after each request. Only the
    /// `vmsplice` calls are timed: the drain copies every page out of the
    /// pipe, which is the reader's work, not the page gathering that gup-fast
    /// is compared with.
    pub fn pass(&mut self, nr: usize) -> Result<(Duration, u64), String> {
        let mut spliced = Duration::ZERO;
        let mut page = 0;
        while page < self.pages {
            let n = nr.min(self.pages - page);
            let (mut off, end) = (page * 4096, (page + n) * 4096);
            while off < end {
                let t0 = Instant::now();
                let k = self
                    .pipe
                    .vmsplice(&self.buf, off, end - off)
                    .map_err(|e| err("vmsplice", e))?;
                spliced += t0.elapsed();
                self.pipe
                    .drain(&mut self.scratch)
                    .map_err(|e| err("read", e))?;
                off += k;
            }
            page += n;
        }
        Ok((spliced, self.pages as u64))
    }
}

/// C1/C3: a user region of 64 MiB, write-faulted, a kernel source buffer and
/// the two iovec layouts.
#[derive(Debug)]
pub struct CopyFix<A: Arch> {
    /// The emulated kernel.
    pub sys: Sys<A>,
    src: Vec<u8>,
    it4k: IovIter,
    it512: IovIter,
}

impl<A: Arch> CopyFix<A> {
    /// Maps and faults the user region.
    pub fn new() -> Result<Self, String> {
        let len = (C1_SEGS * C1_LEN).max(C3_SEGS * C3_LEN) as u64;
        let mut sys = Sys::<A>::new(profile(), len + (128 << 20)).map_err(|e| err("machine", e))?;
        let mm = sys.m.current_mm();
        let user = sys
            .m
            .mmap(
                mm,
                Some(VirtAddr(FIXED_BASE)),
                len,
                Prot::RW,
                MapFlags::default(),
                Backing::Anon,
                "user",
            )
            .map_err(|e| err("mmap", e))?;
        for i in 0..len / A::PAGE_SIZE {
            sys.m
                .put_user(0, user.wrapping_add(i * A::PAGE_SIZE), 1)
                .map_err(|e| err("write fault", e))?;
        }
        let src = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let layout = |segs: usize, seg: usize| {
            (0..segs)
                .map(|i| Iovec {
                    base: user.wrapping_add((i * seg) as u64),
                    len: seg as u64,
                })
                .collect::<Vec<_>>()
        };
        let it4k = IovIter::init(
            &sys.m,
            Dir::Read,
            layout(C1_SEGS, C1_LEN),
            (C1_SEGS * C1_LEN) as u64,
        );
        let it512 = IovIter::init(
            &sys.m,
            Dir::Read,
            layout(C3_SEGS, C3_LEN),
            (C3_SEGS * C3_LEN) as u64,
        );
        Ok(Self {
            sys,
            src,
            it4k,
            it512,
        })
    }

    /// One `copy_to_iter` of the whole layout: C1 (4 KiB iovecs) or C3
    /// (512 B iovecs). Returns the time and the number of iovecs.
    pub fn pass(&mut self, small: bool) -> Result<(Duration, u64), String> {
        let (mut it, segs) = if small {
            (self.it512.clone(), C3_SEGS)
        } else {
            (self.it4k.clone(), C1_SEGS)
        };
        let total = it.count as usize;
        let t0 = Instant::now();
        let n = self.sys.copy_to_iter(&self.src[..total], &mut it);
        let dt = t0.elapsed();
        if n != total as u64 {
            return Err(format!("copy_to_iter copied {n} of {total} bytes"));
        }
        Ok((dt, segs as u64))
    }
}

/// The local iovecs of one layout, 1024 (`IOV_MAX`) per system call, made
/// before the clock starts (the emulator's iterator is built untimed too).
fn host_calls(dst: &HostRegion, segs: usize, seg: usize) -> Result<Vec<Vec<UserIovec>>, String> {
    let all = (0..segs)
        .map(|i| dst.span(i * seg, seg))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| err("iovec", e))?;
    Ok(all.chunks(1024).map(<[UserIovec]>::to_vec).collect())
}

/// C1/C3's yardstick: `process_vm_readv(2)` on the bench's own pid into the
/// same local layout as the emulator's iovecs, from a contiguous remote side
/// (one remote iovec per call), as `copy_to_iter` copies from one contiguous
/// kernel buffer.
#[derive(Debug)]
pub struct HostReadv {
    src: HostRegion,
    dst: HostRegion,
    l4k: Vec<Vec<UserIovec>>,
    l512: Vec<Vec<UserIovec>>,
}

impl HostReadv {
    /// Two 64 MiB host buffers (4 KiB pages).
    pub fn new() -> Result<Self, String> {
        let len = (C1_SEGS * C1_LEN).max(C3_SEGS * C3_LEN);
        let dst = host_buf(len, 0)?;
        Ok(Self {
            src: host_buf(len, 0x11)?,
            l4k: host_calls(&dst, C1_SEGS, C1_LEN)?,
            l512: host_calls(&dst, C3_SEGS, C3_LEN)?,
            dst,
        })
    }

    /// One pass over a layout; returns the time and the number of iovecs.
    pub fn pass(&mut self, small: bool) -> Result<(Duration, u64), String> {
        let (calls, want) = if small {
            (&self.l512, C3_SEGS * C3_LEN)
        } else {
            (&self.l4k, C1_SEGS * C1_LEN)
        };
        let lent = std::slice::from_ref(&self.dst);
        let mut total = 0usize;
        let t0 = Instant::now();
        for liov in calls {
            let len = liov.iter().map(|s| s.len).sum();
            let riov = [self
                .src
                .span(total, len)
                .map_err(|e| err("process_vm_readv", e))?];
            total += process_vm_readv_self(liov, &riov, 0, lent)
                .map_err(|e| err("process_vm_readv", std::io::Error::from_raw_os_error(e)))?;
        }
        let dt = t0.elapsed();
        if total != want {
            return Err(format!("process_vm_readv copied {total} of {want} bytes"));
        }
        Ok((dt, calls.iter().map(|c| c.len() as u64).sum()))
    }
}

/// C3's second yardstick: `preadv(2)` from a memfd (tmpfs page cache, 4 KiB
/// folios) into the same local layout, 1024 iovecs per call at increasing
/// file offsets: the host kernel's own `copy_page_to_iter` from kernel
/// pages into user iovecs, with no remote pages to pin. What it does beyond
/// the emulator's `copy_to_iter` is the page-cache lookup per 4 KiB page
/// and importing the iovec array per call.
#[derive(Debug)]
pub struct HostPreadv {
    file: std::fs::File,
    dst: HostRegion,
    l4k: Vec<Vec<UserIovec>>,
    l512: Vec<Vec<UserIovec>>,
}

impl HostPreadv {
    /// A 64 MiB memfd, written (so its page cache is populated), and a
    /// 64 MiB host buffer (4 KiB pages).
    pub fn new() -> Result<Self, String> {
        use std::io::Write;
        let len = (C1_SEGS * C1_LEN).max(C3_SEGS * C3_LEN);
        let mut file =
            vmemu_host::memfd_create(c"vmemu-bench-c3", 0).map_err(|e| err("memfd_create", e))?;
        let chunk = vec![0x11u8; 1 << 20];
        for _ in 0..len / chunk.len() {
            file.write_all(&chunk).map_err(|e| err("memfd write", e))?;
        }
        let dst = host_buf(len, 0)?;
        Ok(Self {
            file,
            l4k: host_calls(&dst, C1_SEGS, C1_LEN)?,
            l512: host_calls(&dst, C3_SEGS, C3_LEN)?,
            dst,
        })
    }

    /// One pass over a layout; returns the time and the number of iovecs.
    pub fn pass(&mut self, small: bool) -> Result<(Duration, u64), String> {
        use std::os::fd::AsFd;
        let (calls, want) = if small {
            (&self.l512, C3_SEGS * C3_LEN)
        } else {
            (&self.l4k, C1_SEGS * C1_LEN)
        };
        let lent = std::slice::from_ref(&self.dst);
        let fd = self.file.as_fd();
        let mut total = 0usize;
        let t0 = Instant::now();
        for liov in calls {
            total += vmemu_host::preadv(fd, liov, total as i64, lent)
                .map_err(|e| err("preadv", std::io::Error::from_raw_os_error(e)))?;
        }
        let dt = t0.elapsed();
        if total != want {
            return Err(format!("preadv copied {total} of {want} bytes"));
        }
        Ok((dt, calls.iter().map(|c| c.len() as u64).sum()))
    }
}
