//! The invariant checker: what must hold of a [`Machine`] between two
//! operations, whatever the workload did.
//!
//! * **Page tables.** Every table is reachable exactly once from the
//!   roots (`init_mm` and every mm), or waits in the deferred list while a
//!   lockless walker is inside: a whole table page once, a page cut into
//!   page-table fragments once per live fragment (a page of N tables is
//!   reached N times, at N offsets); its fragment count is its live
//!   fragments plus those pending in an mm's fragment cache. Every table
//!   entry points at the start of a live table of the next level; on x86 the kernel half of every pgd equals
//!   `swapper_pg_dir`'s. Every present user leaf lies inside one VMA whose
//!   permissions allow it (a writable leaf only in a `VM_WRITE` VMA, an
//!   accessible leaf only in a VMA that is not `PROT_NONE`, a special leaf
//!   only for the zero page or in a `VM_PFNMAP` VMA, the zero page never
//!   writable), and maps an allocated frame.
//! * **`struct page` accounting.** For every allocated page, `refcount` =
//!   the owner's reference (page cache, page table, reserved frame) + one per
//!   leaf mapping it (user leaves; kernel `vmap` leaves) + the references and
//!   pins the workload holds ([`Machine::held`]; a pin of a small page is
//!   [`GUP_PIN_COUNTING_BIAS`]) + references other kernel objects hold
//!   (pipe buffers: passed in by the caller as `extra`); `mapcount` = user
//!   leaves mapping it; `pincount` = pins held on a large page (0 on small
//!   ones). No freed page is mapped, held, cached or referenced.
//! * **The huge zero page** (once allocated) reads as all zero and is only
//!   mapped by read-only PMD leaves, which take no reference or mapcount
//!   (the kernel counts its users apart, `huge_zero_refcount`).

use std::collections::BTreeMap;

use vmemu_arch::{Arch, Level, Pfn, PhysAddr, Pte, PteFlags};

use crate::Machine;
use crate::mm::{Backing, VmFlags};
use crate::phys::WRITE_GRANULE;

/// A page's name, formatted only when a violation message shows it (the
/// checker runs after every statement and names nothing when all holds).
struct PageName<'a, A: Arch>(&'a Machine<A>, Pfn);

impl<A: Arch> std::fmt::Display for PageName<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.page_name(self.1))
    }
}

/// `mm N: leaf at VA (SPAN bytes, PAGE)`, formatted only for a violation.
struct LeafAt<'a, A: Arch> {
    m: &'a Machine<A>,
    mm: u32,
    va: u64,
    span: u64,
    pfn: Pfn,
}

impl<A: Arch> std::fmt::Display for LeafAt<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mm {}: leaf at {:#x} ({} bytes, {})",
            self.mm,
            self.va,
            self.span,
            self.m.page_name(self.pfn)
        )
    }
}
use crate::phys::{GUP_PIN_COUNTING_BIAS, Owner, PageFlags};
use crate::sync::MmId;
use crate::violation::{Violation, ViolationKind};

pub use crate::pgtable::{TABLE_POISON, TABLE_POISON_BYTE};

/// References other kernel objects (pipe buffers, ...) hold, per head page.
pub type ExtraRefs = BTreeMap<Pfn, u32>;

struct Walk {
    /// Table (physical address: a page, or a fragment of one) → times reached.
    tables: BTreeMap<u64, u32>,
    /// User leaves: (mm, va, level, pte).
    user: Vec<(MmId, u64, Level, Pte)>,
    /// Kernel leaves other than the direct map and the vsyscall page.
    kernel_refs: BTreeMap<Pfn, u32>,
    errs: Vec<Violation>,
}

impl Walk {
    fn err(&mut self, kind: ViolationKind, msg: String) {
        self.errs.push(Violation::new(kind, msg));
    }
}

impl<A: Arch> Machine<A> {
    /// A kernel-mode write of `len` bytes at `pa` (uaccess under
    /// `KERNEL_DS`, a kvec or bvec): if it lands in memory no pointer of the
    /// kernel may write — a free frame, a page table, the zero page, a
    /// reserved frame — the kernel would corrupt itself: a `kernel_bug`
    /// event (the write still happens, as it would). Returns whether the
    /// write landed in ordinary memory (no event).
    #[inline]
    pub fn note_kernel_write(&mut self, pa: PhysAddr, len: u64) -> bool {
        let mut off = 0;
        while off < len.max(1) {
            let pfn = pa.add(off).pfn(A::PAGE_SHIFT);
            if !self.phys.pfn_valid(pfn) {
                return true;
            }
            let head = self.phys.compound_head(pfn);
            let p = self.phys.page(head);
            let what = if p.flags.contains(PageFlags::FREE) {
                Some("a free frame")
            } else {
                match p.owner {
                    Owner::PageTable { .. } => Some("a page table"),
                    Owner::Zero => Some("the zero page"),
                    Owner::HugeZero => Some("the huge zero page"),
                    Owner::Reserved | Owner::Vsyscall => Some("a reserved frame"),
                    _ => None,
                }
            };
            if let Some(what) = what {
                self.kernel_write_corrupts(pa.add(off), pfn, what);
                return false;
            }
            off += A::PAGE_SIZE - pa.add(off).0 % A::PAGE_SIZE;
        }
        true
    }

    /// The `kernel_bug` event of [`Machine::note_kernel_write`].
    #[cold]
    #[inline(never)]
    fn kernel_write_corrupts(&mut self, pa: PhysAddr, pfn: Pfn, what: &str) {
        let name = PageName(self, pfn);
        self.event(
            crate::event::EventKind::KernelBug,
            format!(
                "a kernel write at pa {pa} lands in {what} ({name}): the kernel corrupts its own memory"
            ),
        );
    }

    /// Checks every invariant of the module docs; `Err` lists the violations.
    pub fn check_invariants(&self) -> Result<(), Vec<Violation>> {
        self.check_invariants_with(&ExtraRefs::new())
    }

    /// As [`Machine::check_invariants`], with the references that kernel
    /// objects outside the mm layer hold (pipe buffers) in `extra`.
    pub fn check_invariants_with(&self, extra: &ExtraRefs) -> Result<(), Vec<Violation>> {
        let mut w = Walk {
            tables: BTreeMap::new(),
            user: Vec::new(),
            kernel_refs: BTreeMap::new(),
            errs: Vec::new(),
        };
        self.walk_root(&mut w, self.init_pgd, None);
        let x86_user_top = A::pgd_index(vmemu_arch::VirtAddr(self.layout.page_offset));
        for (i, mm) in self.mms.iter().enumerate() {
            let id = MmId(i as u32);
            if A::TABLE_PERMS {
                // x86: the kernel half is shared with swapper_pg_dir.
                for k in x86_user_top..A::entries(Level(0)) {
                    let a = self.phys.read_entry(mm.pgd.add(k as u64 * 8)).ok();
                    let b = self.phys.read_entry(self.init_pgd.add(k as u64 * 8)).ok();
                    if a != b {
                        w.err(ViolationKind::PageTable, format!(
                            "mm {i}: pgd[{k}] = {a:#x?} differs from swapper_pg_dir's {b:#x?} (the kernel half must be shared)"
                        ));
                    }
                }
            }
            self.walk_root(&mut w, mm.pgd, Some(id));
        }
        self.check_tables(&mut w);
        let mapped = self.check_user_leaves(&mut w);
        self.check_pages(&mut w, &mapped, extra);
        self.check_huge_zero_page(&mut w);
        if w.errs.is_empty() {
            Ok(())
        } else {
            Err(w.errs)
        }
    }

    fn walk_root(&self, w: &mut Walk, root: PhysAddr, mm: Option<MmId>) {
        *w.tables.entry(root.0).or_default() += 1;
        let top = match mm {
            Some(_) if A::TABLE_PERMS => {
                A::pgd_index(vmemu_arch::VirtAddr(self.layout.page_offset))
            }
            _ => A::entries(Level(0)),
        };
        self.walk_table(w, root, Level(0), 0, top, mm);
    }

    fn walk_table(
        &self,
        w: &mut Walk,
        table: PhysAddr,
        level: Level,
        base: u64,
        limit: usize,
        mm: Option<MmId>,
    ) {
        let fam = self.family();
        let span = A::entry_span(level);
        let Ok(t) = self.phys.table(table, A::entries(level)) else {
            w.err(
                ViolationKind::PageTable,
                format!("table at {table} of level {} lies outside memory", level.0),
            );
            return;
        };
        // The entries lying in a 4 KiB granule of guest memory never written
        // since it was last all zero are all empty: skipped whole (most of
        // a top-level table, and all of a 64 KiB ppc64 pgd but a few
        // granules), so a check costs the entries in use, not every slot.
        let end = limit.min(A::entries(level));
        let mut i = 0;
        let mut chunk_end = 0;
        while i < end {
            if i == chunk_end {
                let pa = t.entry_pa(i);
                let left = (WRITE_GRANULE - pa.0 % WRITE_GRANULE) / 8;
                chunk_end = end.min(i + left as usize);
                if !self.phys.may_be_written(pa, (chunk_end - i) as u64 * 8) {
                    i = chunk_end;
                    continue;
                }
            }
            let Some(at) = t.next_nonzero(i, chunk_end) else {
                i = chunk_end;
                continue;
            };
            let raw = t.get(at).unwrap_or(0);
            i = at + 1;
            if raw == 0 {
                continue;
            }
            let i = at;
            let va = base.wrapping_add(i as u64 * span);
            let pte = A::decode(fam, level, raw);
            if pte.has(PteFlags::TABLE) && level != A::leaf_level() {
                let next = Level(level.0 + 1);
                let child_pa = crate::pgtable::next_table::<A>(fam, level, raw);
                let child = child_pa.pfn(A::PAGE_SHIFT);
                let ok_owner = self.phys.pfn_valid(child)
                    && matches!(self.phys.page(child).owner, Owner::PageTable { level: l, .. } if l == next.0)
                    && !self.phys.page(child).flags.contains(PageFlags::FREE);
                let side = if mm.is_some() { "user" } else { "kernel" };
                if !ok_owner {
                    let what = if self.phys.pfn_valid(child) {
                        format!("{:?}", self.phys.page(child).owner)
                    } else {
                        "no frame".into()
                    };
                    w.err(ViolationKind::PageTable, format!(
                        "{side} entry {i} of a level-{} table ({}) points at pfn {:#x} ({what}), not a level-{} table page",
                        level.0,
                        self.table_name(table),
                        child.0,
                        next.0
                    ));
                    continue;
                }
                // A page cut into fragments holds several tables: the entry
                // must point at one handed out and not freed; a whole table
                // page at its start.
                if !self.tables.is_live::<A>(child_pa) {
                    w.err(ViolationKind::PageTable, format!(
                        "{side} entry {i} of a level-{} table ({}) points at {child_pa} in {}, which is not the start of a live level-{} table",
                        level.0,
                        self.table_name(table),
                        self.page_name(child),
                        next.0
                    ));
                    continue;
                }
                let n = w.tables.entry(child_pa.0).or_default();
                *n += 1;
                if *n > 1 {
                    // Reached twice: report, do not walk it again.
                    continue;
                }
                self.walk_table(w, child_pa, next, va, A::entries(next), mm);
                continue;
            }
            match mm {
                Some(id) => w.user.push((id, va, level, pte)),
                None => self.kernel_leaf(w, va, pte),
            }
        }
    }

    /// A kernel leaf holds a reference unless it is the direct map (which
    /// maps every frame without one) or the vsyscall page.
    fn kernel_leaf(&self, w: &mut Walk, va: u64, pte: Pte) {
        if !pte.has(PteFlags::PRESENT) || pte.has(PteFlags::SPECIAL) {
            return;
        }
        let mask = if A::va_bits() >= 64 {
            u64::MAX
        } else {
            (1u64 << A::va_bits()) - 1
        };
        let direct = self
            .layout
            .page_offset
            .wrapping_add(pte.pfn.0 << A::PAGE_SHIFT);
        if va & mask == direct & mask || Some(pte.pfn) == self.vsyscall_pfn {
            return;
        }
        if !self.phys.pfn_valid(pte.pfn) {
            return;
        }
        let head = self.phys.compound_head(pte.pfn);
        *w.kernel_refs.entry(head).or_default() += 1;
    }

    fn check_tables(&self, w: &mut Walk) {
        let deferred: BTreeMap<u64, ()> = self.deferred_tables.iter().map(|t| (t.0, ())).collect();
        if self.lockless_walkers == 0 && !self.deferred_tables.is_empty() {
            w.err(
                ViolationKind::PageTable,
                format!(
                    "{} table pages wait for lockless walkers but none is inside",
                    self.deferred_tables.len()
                ),
            );
        }
        for (pfn, page) in self.phys.allocated_heads() {
            let Owner::PageTable { level, .. } = page.owner else {
                continue;
            };
            let base = pfn.addr(A::PAGE_SHIFT);
            // The tables this page holds: itself, or its live fragments.
            let tables: Vec<PhysAddr> = match self.tables.frag_page(pfn) {
                None => vec![base],
                Some(fp) => {
                    let size = self.tables.frag_size(Level(level)).unwrap_or(A::PAGE_SIZE);
                    let live: Vec<PhysAddr> =
                        fp.live().map(|i| base.add(i as u64 * size)).collect();
                    // pt_frag_refcount (or _refcount, v4.x): the fragments
                    // handed out and not freed, plus those still pending
                    // in an mm's cache.
                    let pending = self.tables.pending::<A>(pfn);
                    let want = live.len() as u32 + pending;
                    if fp.count != want {
                        w.err(ViolationKind::PageTable, format!(
                            "table page {} counts {} fragments but {} are live and {pending} pending in a cache",
                            self.page_name(pfn),
                            fp.count,
                            live.len()
                        ));
                    }
                    if want == 0 {
                        w.err(ViolationKind::PageTable, format!(
                            "table page {} holds no live fragment and no cache points into it, yet it is allocated",
                            self.page_name(pfn)
                        ));
                    }
                    live
                }
            };
            for t in tables {
                let n = w.tables.get(&t.0).copied().unwrap_or(0);
                let d = deferred.contains_key(&t.0);
                let name = || self.table_name(t);
                match (n, d) {
                    (1, false) | (0, true) => {}
                    (0, false) => w.err(ViolationKind::PageTable, format!(
                        "table page {} (level {level}) is allocated but unreachable from every root (leaked)", name()
                    )),
                    (_, true) => w.err(ViolationKind::PageTable, format!(
                        "table page {} is both linked and waiting to be freed", name()
                    )),
                    (n, false) => w.err(ViolationKind::PageTable, format!(
                        "table page {} is reachable {n} times from the roots (must be exactly once)", name()
                    )),
                }
            }
        }
        for (&pa, &n) in &w.tables {
            let p = PhysAddr(pa).pfn(A::PAGE_SHIFT);
            if !self.phys.pfn_valid(p) || self.phys.page(p).flags.contains(PageFlags::FREE) {
                w.errs.push(Violation::new(
                    ViolationKind::PageTable,
                    format!("a freed frame {:#x} is linked as a table ({n} times)", p.0),
                ));
            }
        }
    }

    /// Checks user leaves against VMAs; returns the user mappings per head.
    fn check_user_leaves(&self, w: &mut Walk) -> BTreeMap<Pfn, u32> {
        let mut mapped: BTreeMap<Pfn, u32> = BTreeMap::new();
        let user = std::mem::take(&mut w.user);
        for &(mm, va, level, pte) in &user {
            if !pte.has(PteFlags::PRESENT) {
                continue;
            }
            let span = A::entry_span(level);
            let at = LeafAt {
                m: self,
                mm: mm.0,
                va,
                span,
                pfn: pte.pfn,
            };
            let Some(vma) = self.vma_at(mm, vmemu_arch::VirtAddr(va)) else {
                w.err(ViolationKind::UserLeaf, format!("{at} lies in no VMA"));
                continue;
            };
            if va.wrapping_add(span) > vma.end.0 || va < vma.start.0 {
                w.err(
                    ViolationKind::UserLeaf,
                    format!(
                        "{at} crosses the end of its VMA [{:#x}, {:#x})",
                        vma.start.0, vma.end.0
                    ),
                );
            }
            let f = pte.flags;
            let vf = vma.flags;
            let accessible = f.contains(PteFlags::VALID) && !f.contains(PteFlags::PROTNONE);
            if f.contains(PteFlags::WRITE) && !vf.contains(VmFlags::VM_WRITE) {
                w.err(
                    ViolationKind::UserLeaf,
                    format!("{at} is writable in a VMA without VM_WRITE ({vf:?})"),
                );
            }
            if accessible
                && f.contains(PteFlags::USER)
                && !vf.intersects(VmFlags::VM_READ | VmFlags::VM_WRITE | VmFlags::VM_EXEC)
            {
                w.err(
                    ViolationKind::UserLeaf,
                    format!("{at} is accessible in a PROT_NONE VMA"),
                );
            }
            let pfnmap = vf.contains(VmFlags::VM_PFNMAP);
            if f.contains(PteFlags::SPECIAL) {
                if pte.pfn == self.zero_pfn {
                    if f.contains(PteFlags::WRITE) {
                        w.err(
                            ViolationKind::UserLeaf,
                            format!("{at}: the zero page is mapped writable"),
                        );
                    }
                } else if !pfnmap {
                    w.err(
                        ViolationKind::UserLeaf,
                        format!("{at} is special outside a VM_PFNMAP VMA"),
                    );
                }
                continue;
            }
            if pfnmap {
                w.err(
                    ViolationKind::UserLeaf,
                    format!("{at} is a normal leaf in a VM_PFNMAP VMA"),
                );
                continue;
            }
            if pte.pfn == self.zero_pfn {
                w.err(
                    ViolationKind::UserLeaf,
                    format!("{at} maps the zero page without the special bit"),
                );
                continue;
            }
            if let Some(hz) = self.huge_zero_pfn
                && self.phys.pfn_valid(pte.pfn)
                && self.phys.compound_head(pte.pfn) == hz
            {
                // set_huge_zero_page: a read-only PMD leaf of the whole page.
                if level == A::leaf_level() || pte.pfn != hz {
                    w.err(
                        ViolationKind::UserLeaf,
                        format!("{at} maps part of the huge zero page"),
                    );
                }
                if f.contains(PteFlags::WRITE) {
                    w.err(
                        ViolationKind::UserLeaf,
                        format!("{at}: the huge zero page is mapped writable"),
                    );
                }
                continue;
            }
            if !self.phys.pfn_valid(pte.pfn) {
                w.err(
                    ViolationKind::UserLeaf,
                    format!("{at} maps a frame outside memory"),
                );
                continue;
            }
            let head = self.phys.compound_head(pte.pfn);
            let hp = self.phys.page(head);
            if hp.flags.contains(PageFlags::FREE) {
                w.err(ViolationKind::UserLeaf, format!("{at} maps a freed frame"));
                continue;
            }
            if level != A::leaf_level() {
                // A huge leaf maps its whole compound page from the head.
                let pages = span / A::PAGE_SIZE;
                if head != pte.pfn || (1u64 << hp.order) != pages {
                    w.err(
                        ViolationKind::UserLeaf,
                        format!(
                            "{at} maps {pages} pages but its compound page has order {}",
                            hp.order
                        ),
                    );
                }
            }
            if let (Backing::File { .. }, Owner::File { .. }) = (vma.backing, hp.owner)
                && f.contains(PteFlags::WRITE)
                && !vf.contains(VmFlags::VM_SHARED)
            {
                w.err(
                    ViolationKind::UserLeaf,
                    format!(
                        "{at}: a page cache page is writable in a private mapping (COW skipped)"
                    ),
                );
            }
            *mapped.entry(head).or_default() += 1;
        }
        mapped
    }

    /// The huge zero page must read as zero: a byte written into it shows
    /// through every mapping of it, in every process (CVE-2017-1000405).
    fn check_huge_zero_page(&self, w: &mut Walk) {
        let Some(hz) = self.huge_zero_pfn else {
            return;
        };
        let pages = 1u64 << self.phys.page(hz).order;
        let mut buf = vec![0u8; A::PAGE_SIZE as usize];
        for i in 0..pages {
            let pa = Pfn(hz.0 + i).addr(A::PAGE_SHIFT);
            // A page never written since guest memory was last all zero
            // reads as zero: only written ones are read and scanned.
            if !self.phys.may_be_written(pa, A::PAGE_SIZE) {
                continue;
            }
            if self.phys.read(pa, &mut buf).is_err() {
                continue;
            }
            if let Some(off) = buf.iter().position(|b| *b != 0) {
                w.err(
                    ViolationKind::HugeZeroPage,
                    format!(
                        "the huge zero page is not zero: byte {:#x} of its page {i} is {:#04x}",
                        off, buf[off]
                    ),
                );
                return;
            }
        }
    }

    fn check_pages(&self, w: &mut Walk, mapped: &BTreeMap<Pfn, u32>, extra: &ExtraRefs) {
        // Page cache: index → frame, each frame owned by its file.
        let mut cached: BTreeMap<Pfn, u32> = BTreeMap::new();
        for f in &self.files {
            for (&idx, &pfn) in &f.pages {
                *cached.entry(pfn).or_default() += 1;
                let p = self.phys.page(pfn);
                let ok = matches!(p.owner, Owner::File { file, index } if file == f.name && index == idx)
                    && !p.flags.contains(PageFlags::FREE);
                if !ok {
                    w.err(
                        ViolationKind::PageAccounting,
                        format!(
                            "page cache of file {} index {idx} holds pfn {:#x} owned by {:?}{}",
                            self.names.get(f.name as usize).map_or("?", String::as_str),
                            pfn.0,
                            p.owner,
                            if p.flags.contains(PageFlags::FREE) {
                                " (freed)"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        }
        let mut deferred_pages: BTreeMap<Pfn, u32> = BTreeMap::new();
        for &p in &self.deferred_pages {
            *deferred_pages.entry(p).or_default() += 1;
        }
        // Every frame someone claims must be allocated.
        let claims: [(&str, &BTreeMap<Pfn, u32>); 5] = [
            ("mapped", mapped),
            ("referenced by kernel objects", extra),
            ("mapped by a kernel (vmap) leaf", &w.kernel_refs),
            ("cached", &cached),
            ("waiting for a deferred put", &deferred_pages),
        ];
        for (what, m) in claims {
            for &pfn in m.keys() {
                if !self.phys.pfn_valid(pfn) || self.phys.page(pfn).flags.contains(PageFlags::FREE)
                {
                    w.errs.push(Violation::new(
                        ViolationKind::PageAccounting,
                        format!("freed frame {:#x} is still {what}", pfn.0),
                    ));
                } else if self.phys.page(pfn).flags.contains(PageFlags::TAIL) {
                    w.errs.push(Violation::new(
                        ViolationKind::PageAccounting,
                        format!(
                            "tail page {} is counted as a head ({what})",
                            self.page_name(pfn)
                        ),
                    ));
                }
            }
        }
        // A page freed while references were still out: its counter
        // wrapped (CVE-2019-11487), every holder now points at whatever the
        // frame became.
        for (pfn, n) in self.phys.stale_frames() {
            w.err(ViolationKind::FreedWhileReferenced, format!(
                "frame {:#x} was freed while {n} references to it were still held (page_ref_count wrapped mod 2^{})",
                pfn.0,
                self.phys.refcount_bits()
            ));
        }
        for (pfn, h) in self.held.iter() {
            if h.refs == 0 && h.pins == 0 {
                w.err(
                    ViolationKind::PageAccounting,
                    format!(
                        "held-reference ledger keeps an empty entry for {}",
                        self.page_name(pfn)
                    ),
                );
            }
            if !self.phys.pfn_valid(pfn) || self.phys.page(pfn).flags.contains(PageFlags::FREE) {
                w.err(
                    ViolationKind::PageAccounting,
                    format!(
                        "the workload holds {} refs and {} pins on freed frame {:#x}",
                        h.refs, h.pins, pfn.0
                    ),
                );
            }
        }
        for (pfn, page) in self.phys.allocated_heads() {
            let large = page.order > 0;
            let owner_ref: u64 = match page.owner {
                // v4.x counts a fragment page's fragments in _refcount
                // (`set_page_count(page, PTE_FRAG_NR)`).
                Owner::PageTable { .. } if !self.tables.counts_in_ptdesc() => self
                    .tables
                    .frag_page(pfn)
                    .map_or(1, |fp| u64::from(fp.count)),
                Owner::PageTable { .. }
                | Owner::Zero
                | Owner::HugeZero
                | Owner::Reserved
                | Owner::Vsyscall => 1,
                Owner::File { .. } => u64::from(cached.get(&pfn).copied().unwrap_or(0)),
                Owner::Anon { .. } | Owner::Kernel { .. } | Owner::Free => 0,
            };
            let map = u64::from(mapped.get(&pfn).copied().unwrap_or(0));
            let kref = u64::from(w.kernel_refs.get(&pfn).copied().unwrap_or(0));
            let ext = u64::from(extra.get(&pfn).copied().unwrap_or(0));
            let dpg = u64::from(deferred_pages.get(&pfn).copied().unwrap_or(0));
            let (hr, hp) = self
                .held
                .get(pfn)
                .map_or((0, 0), |h| (u64::from(h.refs), u64::from(h.pins)));
            let pin_refs = if pfn == self.zero_pfn {
                0
            } else if large {
                hp
            } else {
                hp * u64::from(GUP_PIN_COUNTING_BIAS)
            };
            let expected = owner_ref + map + kref + ext + dpg + hr + pin_refs;
            let name = PageName(self, pfn);
            // `_refcount` holds the count modulo 2^refcount_bits (the
            // kernel's 32 bits never wrap in any workload; a narrow one does).
            let bits = self.phys.refcount_bits();
            let stored_as = if bits < 32 {
                expected & ((1u64 << bits) - 1)
            } else {
                expected
            };
            if u64::from(page.refcount) != stored_as {
                w.err(ViolationKind::PageAccounting, format!(
                    "{name}: refcount {} but {expected} expected (owner {owner_ref}, user mappings {map}, vmap {kref}, kernel objects {ext}, deferred {dpg}, held refs {hr}, held pins {hp})",
                    page.refcount
                ));
            }
            if u64::from(page.mapcount) != map {
                w.err(
                    ViolationKind::PageAccounting,
                    format!(
                        "{name}: mapcount {} but {map} user leaves map it",
                        page.mapcount
                    ),
                );
            }
            let want_pins = if large && pfn != self.zero_pfn { hp } else { 0 };
            if u64::from(page.pincount) != want_pins {
                w.err(
                    ViolationKind::PageAccounting,
                    format!(
                        "{name}: pincount {} but {want_pins} expected ({hp} pins held, order {})",
                        page.pincount, page.order
                    ),
                );
            }
            if page.refcount == 0
                && !page.flags.contains(PageFlags::RESERVED)
                && expected == stored_as
            {
                w.err(
                    ViolationKind::PageAccounting,
                    format!("{name}: allocated with refcount 0"),
                );
            }
        }
    }
}

impl<A: Arch> Machine<A> {
    /// The pin view against the process view: a pin taken through address
    /// `va` of a process whose page there is now another page, although the
    /// process never unmapped `va`, raises one `pin_detached` event (see
    /// [`crate::fork::PinOrigin`]). The runner calls it after every
    /// statement; it costs nothing while no pin is held.
    pub fn check_pin_views(&mut self) {
        if self.pin_origins.is_empty() {
            return;
        }
        for i in 0..self.pin_origins.len() {
            let o = self.pin_origins[i];
            if !o.live || o.reported || o.mm.0 as usize >= self.mms.len() {
                continue;
            }
            let Some(slot) =
                crate::pgtable::lookup::<A>(&self.phys, self.family(), self.mm(o.mm).pgd, o.va)
            else {
                continue;
            };
            if !slot.pte.has(PteFlags::LEAF) || !slot.pte.has(PteFlags::PRESENT) {
                continue;
            }
            let span = A::entry_span(slot.level);
            let now = Pfn(slot.pte.pfn.0 + o.va.offset_in(span) / A::PAGE_SIZE);
            if now == o.pfn {
                continue;
            }
            self.pin_origins[i].reported = true;
            let (pinned, mapped) = (self.page_name(o.pfn), self.page_name(now));
            self.event(
                crate::event::EventKind::PinDetached,
                format!(
                    "{pinned} (pfn {:#x}) was pinned at {} of mm {}, which now maps {mapped} (pfn {:#x}) there: \
                     the pin and the process see different memory",
                    o.pfn.0, o.va, o.mm.0, now.0
                ),
            );
        }
    }
}
