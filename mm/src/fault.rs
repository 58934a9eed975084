//! `handle_mm_fault`: anonymous faults (zero page on read, fresh page on
//! write, COW), file faults through a scripted `vm_operations_struct`
//! (`->fault`, `->page_mkwrite`) with the `VM_FAULT_*` codes and the
//! `FAULT_FLAG_ALLOW_RETRY` / `RETRY_NOWAIT` rules, and `do_page_mkwrite`.

use vmemu_arch::{Arch, Level, Pfn, Pte, PteFlags, VirtAddr};

use crate::Machine;
use crate::errno::Errno;
use crate::event::EventKind;
use crate::mm::{Backing, VmFlags, Vma};
use crate::pgtable;
use crate::phys::{Owner, PageFlags};
use crate::profile::WpReuseRule;
use crate::sync::MmId;

bitflags::bitflags! {
    /// `VM_FAULT_*` (v4.10 values; `WRITE` was removed in 6.x).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct VmFault: u32 {
        /// VM_FAULT_OOM
        const OOM = 0x1;
        /// VM_FAULT_SIGBUS
        const SIGBUS = 0x2;
        /// VM_FAULT_MAJOR
        const MAJOR = 0x4;
        /// VM_FAULT_WRITE: COW was broken (gup sets FOLL_COW on it).
        const WRITE = 0x8;
        /// VM_FAULT_HWPOISON
        const HWPOISON = 0x10;
        /// VM_FAULT_HWPOISON_LARGE
        const HWPOISON_LARGE = 0x20;
        /// VM_FAULT_SIGSEGV
        const SIGSEGV = 0x40;
        /// VM_FAULT_NOPAGE
        const NOPAGE = 0x100;
        /// VM_FAULT_LOCKED
        const LOCKED = 0x200;
        /// VM_FAULT_RETRY: the handler released mmap_sem (unless RETRY_NOWAIT).
        const RETRY = 0x400;
        /// VM_FAULT_FALLBACK
        const FALLBACK = 0x800;
        /// VM_FAULT_DONE_COW
        const DONE_COW = 0x1000;
    }
}

/// What `->page_mkwrite` does, as scripted by a workload.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum MkwriteBehaviour {
    /// No `->page_mkwrite` (the page is made writable directly).
    #[default]
    None,
    /// Returns `block_page_mkwrite_return(err)` (0 → LOCKED).
    Errno(Option<Errno>),
    /// Returns this raw `VM_FAULT_*` code (e.g. RETRY, the thread's point G).
    Raw(VmFault),
}

/// `vm_operations_struct` behaviour of a file.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FileOps {
    /// `->page_mkwrite`.
    pub page_mkwrite: MkwriteBehaviour,
    /// `->fault` finds the page locked and returns `VM_FAULT_RETRY` when
    /// `FAULT_FLAG_ALLOW_RETRY` is set and `FAULT_FLAG_TRIED` is not
    /// (`lock_page_or_retry`), dropping `mmap_sem`.
    pub fault_retry: bool,
}

impl VmFault {
    /// `VM_FAULT_ERROR`.
    pub const ERROR: VmFault = VmFault::OOM
        .union(VmFault::SIGBUS)
        .union(VmFault::SIGSEGV)
        .union(VmFault::HWPOISON)
        .union(VmFault::HWPOISON_LARGE)
        .union(VmFault::FALLBACK);

    /// `block_page_mkwrite_return(err)` / 6.x `vmf_fs_error`.
    #[must_use]
    pub fn from_mkwrite_errno(err: Option<Errno>) -> VmFault {
        match err {
            None => VmFault::LOCKED,
            Some(Errno::EFAULT | Errno::EAGAIN) => VmFault::NOPAGE,
            Some(Errno::ENOMEM) => VmFault::OOM,
            Some(_) => VmFault::SIGBUS,
        }
    }

    /// Parses a name such as `RETRY` or `VM_FAULT_RETRY`.
    #[must_use]
    pub fn parse_name(s: &str) -> Option<VmFault> {
        VmFault::from_name(s.strip_prefix("VM_FAULT_").unwrap_or(s))
    }
}

bitflags::bitflags! {
    /// `FAULT_FLAG_*`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct FaultFlags: u32 {
        /// FAULT_FLAG_WRITE
        const WRITE = 0x1;
        /// FAULT_FLAG_MKWRITE
        const MKWRITE = 0x2;
        /// FAULT_FLAG_ALLOW_RETRY: the handler may drop mmap_sem and return RETRY.
        const ALLOW_RETRY = 0x4;
        /// FAULT_FLAG_RETRY_NOWAIT: return RETRY without dropping the lock.
        const RETRY_NOWAIT = 0x8;
        /// FAULT_FLAG_KILLABLE
        const KILLABLE = 0x10;
        /// FAULT_FLAG_TRIED: second attempt.
        const TRIED = 0x20;
        /// FAULT_FLAG_USER
        const USER = 0x40;
        /// FAULT_FLAG_REMOTE
        const REMOTE = 0x80;
        /// FAULT_FLAG_UNSHARE (5.19): make an anonymous page exclusive for a
        /// read-only pin, without write permission (6.13 value 1 << 10).
        const UNSHARE = 0x400;
    }
}

impl<A: Arch> Machine<A> {
    /// `handle_mm_fault(vma, address, flags)` in `mm`.
    pub fn handle_mm_fault(
        &mut self,
        mm: MmId,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
    ) -> VmFault {
        self.handle_fault_depth(mm, vma, addr, flags, 0)
    }

    fn handle_fault_depth(
        &mut self,
        mm: MmId,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
        depth: u32,
    ) -> VmFault {
        if depth > 2 * A::levels() as u32 {
            // Splitting or restoring the entry made no progress: not an
            // entry this code wrote (a table corrupted through the direct map).
            self.event(
                EventKind::KernelBug,
                format!(
                    "handle_mm_fault at {addr}: the entry does not change (a corrupted table?)"
                ),
            );
            return VmFault::SIGBUS;
        }
        let write = flags.contains(FaultFlags::WRITE);
        let unshare = flags.contains(FaultFlags::UNSHARE) && !write;
        let pgd = self.mm(mm).pgd;
        let page_va = addr.align_down(A::PAGE_SIZE);
        let slot = pgtable::lookup::<A>(&self.phys, self.family(), pgd, page_va);
        // pte_present(): a PROT_NONE entry is present (it maps its page);
        // only its permissions make every access fault.
        let present = slot.filter(|s| {
            s.pte.has(PteFlags::LEAF)
                && (s.pte.has(PteFlags::VALID) || s.pte.has(PteFlags::PROTNONE))
                && s.pte.has(PteFlags::PRESENT)
        });
        if let Some(s) = present
            && s.pte.has(PteFlags::PROTNONE)
            && vma
                .flags
                .intersects(VmFlags::VM_READ | VmFlags::VM_WRITE | VmFlags::VM_EXEC)
        {
            // do_numa_page: a NUMA hinting entry in an accessible VMA gets
            // the VMA's protection back (never write: a later fault does).
            let mut f = Self::leaf_flags(self.family(), vma.flags, false);
            f |= s.pte.flags & PteFlags::DIRTY;
            let raw = A::encode(
                self.family(),
                s.level,
                Pte {
                    flags: f,
                    pfn: s.pte.pfn,
                },
            );
            let _ = self.phys.write_entry(s.entry_pa, raw);
            return self.handle_fault_depth(mm, vma, addr, flags, depth + 1);
        }
        if let Some(s) = present
            && s.level != A::leaf_level()
            && write
            && !s.pte.has(PteFlags::WRITE)
            && Some(s.pte.pfn) == self.huge_zero_pfn
            && vma.flags.contains(VmFlags::VM_HUGEPAGE)
        {
            // do_huge_pmd_wp_page on the huge zero PMD: a fresh THP, or
            // split and fall back to the base page when none is free.
            if let Some(ret) = self.do_huge_pmd_wp_zero_page(mm, vma, page_va, s.level) {
                return ret;
            }
            if self.split_huge_leaf(mm, page_va).is_err() {
                return VmFault::OOM;
            }
            return self.handle_fault_depth(mm, vma, addr, flags, depth + 1);
        }
        if let Some(s) = present
            && s.level != A::leaf_level()
            && (write || unshare)
            && !s.pte.has(PteFlags::WRITE)
        {
            // A write to a read-only huge leaf: split, then handle the base page.
            if self.split_huge_leaf(mm, page_va).is_err() {
                return VmFault::OOM;
            }
            return self.handle_fault_depth(mm, vma, addr, flags, depth + 1);
        }
        match (vma.backing, present) {
            (Backing::Pfnmap { .. }, _) => VmFault::SIGBUS,
            (Backing::Anon, None) => self.do_anonymous_page(mm, vma, page_va, write),
            (Backing::File { file, pgoff }, None) => {
                let index = pgoff + (page_va.0 - vma.start.0) / A::PAGE_SIZE;
                self.do_fault(mm, vma, page_va, file, index, flags)
            }
            (_, Some(s)) => {
                if write && !s.pte.has(PteFlags::WRITE) {
                    if vma.flags.contains(VmFlags::VM_SHARED) {
                        self.wp_page_shared(mm, vma, page_va, s.pte, flags)
                    } else {
                        self.do_wp_page(mm, vma, page_va, s.pte, false)
                    }
                } else if unshare && !s.pte.has(PteFlags::WRITE) {
                    if vma.flags.contains(VmFlags::VM_SHARED) {
                        VmFault::empty()
                    } else {
                        self.do_wp_page(mm, vma, page_va, s.pte, true)
                    }
                } else {
                    // Spurious or accessed/dirty update.
                    let mut f = s.pte.flags | PteFlags::YOUNG;
                    if write {
                        f |= PteFlags::DIRTY;
                        f.remove(PteFlags::RDONLY);
                    }
                    let raw = A::encode(
                        self.family(),
                        s.level,
                        Pte {
                            flags: f,
                            pfn: s.pte.pfn,
                        },
                    );
                    let _ = self.phys.write_entry(s.entry_pa, raw);
                    VmFault::empty()
                }
            }
        }
    }

    fn anon_owner(&mut self, vma: &Vma, va: VirtAddr) -> Owner {
        let index = vma.name_base + ((va.0 - vma.start.0) / A::PAGE_SIZE) as i64;
        Owner::Anon {
            name: vma.name,
            index: index as u32,
        }
    }

    fn map_new_page(
        &mut self,
        mm: MmId,
        vma: &Vma,
        va: VirtAddr,
        pfn: Pfn,
        writable: bool,
        dirty: bool,
    ) -> VmFault {
        let mut f = Self::leaf_flags(self.family(), vma.flags, writable);
        if dirty {
            f |= PteFlags::DIRTY;
        }
        self.phys.page_mut(pfn).mapcount += 1;
        match self.set_user_leaf(mm, va, A::leaf_level(), Pte { flags: f, pfn }) {
            Ok(_) => VmFault::empty(),
            Err(_) => {
                // No memory for a page table. The kernel allocates the
                // tables before the page (6.13 mm/memory.c
                // `__handle_mm_fault` pmd_alloc, `do_anonymous_page`
                // pte_alloc, both VM_FAULT_OOM), so the page the caller
                // brought for this mapping goes back: its mapcount and the
                // reference the leaf would have owned.
                let p = self.phys.page_mut(pfn);
                p.mapcount = p.mapcount.saturating_sub(1);
                let _ = self.phys.put_page(pfn, 1);
                VmFault::OOM
            }
        }
    }

    /// `do_anonymous_page`: the zero page on a read, a fresh page on a write
    /// (a PMD-sized compound page in a VM_HUGEPAGE VMA where it fits).
    fn do_anonymous_page(&mut self, mm: MmId, vma: &Vma, va: VirtAddr, write: bool) -> VmFault {
        let pmd = Level(A::levels() as u8 - 2);
        let span = A::entry_span(pmd);
        let base = va.align_down(span);
        let thp = vma.flags.contains(VmFlags::VM_HUGEPAGE)
            && base >= vma.start
            && base.0 + span <= vma.end.0
            && pgtable::lookup::<A>(&self.phys, self.family(), self.mm(mm).pgd, base)
                .is_none_or(|s| s.level <= pmd && s.raw == 0);
        if !write && thp {
            // do_huge_pmd_anonymous_page on a read fault maps the huge zero
            // page (transparent_hugepage_use_zero_page(), on by default).
            if let Some(ret) = self.map_huge_zero_page(mm, vma, base, pmd) {
                return ret;
            }
        }
        if !write {
            let mut f = Self::leaf_flags(self.family(), vma.flags, false) | PteFlags::SPECIAL;
            f.remove(PteFlags::WRITE | PteFlags::DIRTY);
            let zero = self.zero_pfn;
            return match self.set_user_leaf(
                mm,
                va,
                A::leaf_level(),
                Pte {
                    flags: f,
                    pfn: zero,
                },
            ) {
                Ok(_) => VmFault::empty(),
                Err(_) => VmFault::OOM,
            };
        }
        if thp {
            return self.do_huge_pmd_anonymous_page(mm, vma, base, pmd);
        }
        let owner = self.anon_owner(vma, va);
        let Some(pfn) = self.phys.alloc(0, owner) else {
            return VmFault::OOM;
        };
        self.phys.page_mut(pfn).flags |= PageFlags::ANON_EXCLUSIVE | PageFlags::DIRTY;
        self.map_new_page(mm, vma, va, pfn, true, true)
    }

    fn do_huge_pmd_anonymous_page(
        &mut self,
        mm: MmId,
        vma: &Vma,
        base: VirtAddr,
        pmd: Level,
    ) -> VmFault {
        let order = (A::entry_span(pmd) / A::PAGE_SIZE).trailing_zeros() as u8;
        let owner = self.anon_owner(vma, base);
        let Some(pfn) = self.phys.alloc(order, owner) else {
            return VmFault::OOM;
        };
        self.phys.page_mut(pfn).flags |= PageFlags::ANON_EXCLUSIVE | PageFlags::DIRTY;
        self.phys.page_mut(pfn).mapcount += 1;
        let f = Self::leaf_flags(self.family(), vma.flags, true) | PteFlags::DIRTY;
        match self.set_user_leaf(mm, base, pmd, Pte { flags: f, pfn }) {
            Ok(_) => VmFault::empty(),
            Err(_) => VmFault::OOM,
        }
    }

    /// `mm_get_huge_zero_page` + `set_huge_zero_page`: maps the huge zero
    /// page read-only and clean at `base` (a PMD leaf; no reference or
    /// mapcount per mapping). `None` if it cannot be allocated (the fault
    /// falls back to base pages).
    fn map_huge_zero_page(
        &mut self,
        mm: MmId,
        vma: &Vma,
        base: VirtAddr,
        pmd: Level,
    ) -> Option<VmFault> {
        let order = (A::entry_span(pmd) / A::PAGE_SIZE).trailing_zeros() as u8;
        let hz = match self.huge_zero_pfn {
            Some(p) => p,
            None => {
                let p = self.phys.alloc(order, Owner::HugeZero)?;
                self.huge_zero_pfn = Some(p);
                p
            }
        };
        let mut f = Self::leaf_flags(self.family(), vma.flags, false);
        f.remove(PteFlags::WRITE | PteFlags::DIRTY);
        Some(
            match self.set_user_leaf(mm, base, pmd, Pte { flags: f, pfn: hz }) {
                Ok(_) => VmFault::empty(),
                Err(_) => VmFault::OOM,
            },
        )
    }

    /// `do_huge_pmd_wp_page` on the huge zero PMD (v4.10 and v4.17 `goto
    /// alloc`; 6.13 `do_huge_zero_wp_pmd`): a fresh zeroed THP replaces it,
    /// dirty, writable only if the VMA is (a FOLL_FORCE write to a read-only
    /// mapping), and the fault returns VM_FAULT_WRITE. `None` when no THP
    /// can be allocated (the caller splits and falls back).
    fn do_huge_pmd_wp_zero_page(
        &mut self,
        mm: MmId,
        vma: &Vma,
        va: VirtAddr,
        pmd: Level,
    ) -> Option<VmFault> {
        let span = A::entry_span(pmd);
        let base = va.align_down(span);
        let order = (span / A::PAGE_SIZE).trailing_zeros() as u8;
        let owner = self.anon_owner(vma, base);
        let pfn = self.phys.alloc(order, owner)?;
        self.phys.page_mut(pfn).flags |= PageFlags::ANON_EXCLUSIVE | PageFlags::DIRTY;
        self.phys.page_mut(pfn).mapcount += 1;
        let writable = vma.flags.contains(VmFlags::VM_WRITE);
        let mut f = Self::leaf_flags(self.family(), vma.flags, writable) | PteFlags::DIRTY;
        if writable {
            f.remove(PteFlags::RDONLY);
        }
        Some(
            match self.set_user_leaf(mm, base, pmd, Pte { flags: f, pfn }) {
                Ok(_) => VmFault::WRITE,
                Err(_) => VmFault::OOM,
            },
        )
    }

    /// `do_wp_page` on a private mapping: reuse an anonymous page in place
    /// where the profile's `wp_reuse_rule` allows it, else copy
    /// (`wp_page_copy`). The new entry is writable only if the VMA is (a
    /// FOLL_FORCE write to a read-only private mapping breaks COW but leaves
    /// the entry read-only and returns VM_FAULT_WRITE). With `unshare`
    /// (FAULT_FLAG_UNSHARE, 5.19+) a reusable page only becomes exclusive
    /// and a copy is mapped read-only; nothing is made writable.
    fn do_wp_page(
        &mut self,
        mm: MmId,
        vma: &Vma,
        va: VirtAddr,
        old: Pte,
        unshare: bool,
    ) -> VmFault {
        let writable = vma.flags.contains(VmFlags::VM_WRITE) && !unshare;
        let head = self.phys.compound_head(old.pfn);
        let page = *self.phys.page(head);
        let anon = matches!(page.owner, Owner::Anon { .. }) && old.pfn != self.zero_pfn;
        let exclusive = page.flags.contains(PageFlags::ANON_EXCLUSIVE);
        let reuse = anon
            && match self.knobs.wp_reuse_rule {
                // reuse_swap_page(): mapped once; other references ignored.
                // For a THP mapped by ptes it asks page_trans_huge_mapcount(),
                // the largest mapcount of one subpage; the emulator keeps the
                // pte mappings of all subpages on the head, so it takes their
                // mean, rounded up (exact until a fork is partly unmapped,
                // and then it errs towards copying).
                WpReuseRule::Mapcount => page.mapcount.div_ceil(1 << page.order) == 1,
                // 09854ba94c6a: the mapping's reference must be the only one.
                WpReuseRule::Refcount => page.mapcount == 1 && page.refcount == 1,
                // 6c287605fd56: an exclusive page whatever its references.
                WpReuseRule::AnonExclusive => {
                    exclusive || (page.mapcount == 1 && page.refcount == 1)
                }
            };
        if reuse {
            if !exclusive && page.refcount > page.mapcount {
                let name = self.page_name(old.pfn);
                self.event(
                    EventKind::SharedPageReused,
                    format!(
                        "do_wp_page at {va} reuses {name} in place although it was shared with another \
                         process at fork and {} reference(s) beyond its mapping remain: whoever took one \
                         through the other process sees this write",
                        page.refcount - page.mapcount
                    ),
                );
            }
            // page_move_anon_rmap: mapped by this process only from now on.
            self.phys.page_mut(head).flags |= PageFlags::ANON_EXCLUSIVE;
            if unshare {
                return VmFault::empty();
            }
            let mut f = Self::leaf_flags(self.family(), vma.flags, writable) | PteFlags::DIRTY;
            if writable {
                f.remove(PteFlags::RDONLY);
            }
            let _ = self.set_user_leaf(
                mm,
                va,
                A::leaf_level(),
                Pte {
                    flags: f,
                    pfn: old.pfn,
                },
            );
            return VmFault::WRITE;
        }
        let owner = self.anon_owner(vma, va);
        let Some(new) = self.phys.alloc(0, owner) else {
            return VmFault::OOM;
        };
        self.phys.page_mut(new).flags |= PageFlags::ANON_EXCLUSIVE | PageFlags::DIRTY;
        let _ = self.phys.copy(
            old.pfn.addr(A::PAGE_SHIFT),
            new.addr(A::PAGE_SHIFT),
            A::PAGE_SIZE as usize,
        );
        self.drop_mapping(old);
        let r = self.map_new_page(mm, vma, va, new, writable, !unshare);
        if unshare {
            r
        } else if r.is_empty() {
            VmFault::WRITE
        } else {
            r
        }
    }

    /// `wp_page_shared`: a write to a shared file page calls `->page_mkwrite`.
    fn wp_page_shared(
        &mut self,
        mm: MmId,
        vma: &Vma,
        va: VirtAddr,
        old: Pte,
        flags: FaultFlags,
    ) -> VmFault {
        let file = match vma.backing {
            Backing::File { file, .. } => file,
            _ => return self.do_wp_page(mm, vma, va, old, false),
        };
        let r = self.do_page_mkwrite(file, old.pfn, flags);
        if r.intersects(VmFault::ERROR | VmFault::NOPAGE) || !r.contains(VmFault::LOCKED) {
            return r;
        }
        let f = Self::leaf_flags(self.family(), vma.flags, true) | PteFlags::DIRTY;
        let _ = self.set_user_leaf(
            mm,
            va,
            A::leaf_level(),
            Pte {
                flags: f,
                pfn: old.pfn,
            },
        );
        let p = self.phys.page_mut(old.pfn);
        p.flags |= PageFlags::DIRTY;
        p.flags.remove(PageFlags::LOCKED);
        VmFault::WRITE
    }

    /// `do_page_mkwrite`: calls `->page_mkwrite` with the flags forced to
    /// WRITE|MKWRITE (ALLOW_RETRY and KILLABLE removed), returns errors and
    /// NOPAGE unchanged, and otherwise makes sure the page is locked. A RETRY
    /// bit is not inspected by the kernel: the emulator reports it as a kernel
    /// bug event and then does what the kernel does (locks the page, success).
    pub fn do_page_mkwrite(&mut self, file: u32, pfn: Pfn, orig: FaultFlags) -> VmFault {
        let flags = FaultFlags::WRITE | FaultFlags::MKWRITE;
        let ret = match self.files[file as usize].ops.page_mkwrite {
            MkwriteBehaviour::None => return VmFault::LOCKED,
            MkwriteBehaviour::Errno(e) => VmFault::from_mkwrite_errno(e),
            MkwriteBehaviour::Raw(r) => r,
        };
        if ret.intersects(VmFault::ERROR | VmFault::NOPAGE) {
            return ret;
        }
        if ret.contains(VmFault::RETRY) && !flags.contains(FaultFlags::ALLOW_RETRY) {
            self.event(
                EventKind::KernelBug,
                format!(
                    "->page_mkwrite returned VM_FAULT_RETRY without FAULT_FLAG_ALLOW_RETRY \
                     (do_page_mkwrite cleared it; caller's flags {:#x}); RETRY is ignored and the page locked",
                    orig.bits()
                ),
            );
        }
        let mut ret = ret;
        if !ret.contains(VmFault::LOCKED) {
            self.phys.page_mut(pfn).flags |= PageFlags::LOCKED;
            ret |= VmFault::LOCKED;
        }
        ret
    }

    /// `__do_fault` + `do_read_fault` / `do_cow_fault` / `do_shared_fault`.
    fn do_fault(
        &mut self,
        mm: MmId,
        vma: &Vma,
        va: VirtAddr,
        file: u32,
        index: u64,
        flags: FaultFlags,
    ) -> VmFault {
        let write = flags.contains(FaultFlags::WRITE);
        let size = self.files[file as usize].size;
        if index * A::PAGE_SIZE >= size.next_multiple_of(A::PAGE_SIZE) {
            return VmFault::SIGBUS;
        }
        if self.files[file as usize].ops.fault_retry
            && flags.contains(FaultFlags::ALLOW_RETRY)
            && !flags.contains(FaultFlags::TRIED)
        {
            // lock_page_or_retry: the page is locked elsewhere; drop mmap_sem
            // unless RETRY_NOWAIT, and ask for a retry.
            if !flags.contains(FaultFlags::RETRY_NOWAIT) {
                let task = self.current;
                let _ = self.locks.up_read(task, mm);
            }
            return VmFault::RETRY;
        }
        let Some((page, major)) = self.find_or_read_page(file, index) else {
            return VmFault::OOM;
        };
        let major = if major {
            VmFault::MAJOR
        } else {
            VmFault::empty()
        };
        if !write {
            // do_read_fault: map the cache page read-only.
            self.phys.get_page(page, 1);
            return self.map_new_page(mm, vma, va, page, false, false) | major;
        }
        if !vma.flags.contains(VmFlags::VM_SHARED) {
            // do_cow_fault: a private copy in a fresh anon page.
            let owner = self.anon_owner(vma, va);
            let Some(new) = self.phys.alloc(0, owner) else {
                return VmFault::OOM;
            };
            self.phys.page_mut(new).flags |= PageFlags::ANON_EXCLUSIVE | PageFlags::DIRTY;
            let _ = self.phys.copy(
                page.addr(A::PAGE_SHIFT),
                new.addr(A::PAGE_SHIFT),
                A::PAGE_SIZE as usize,
            );
            return self.map_new_page(
                mm,
                vma,
                va,
                new,
                vma.flags.contains(VmFlags::VM_WRITE),
                true,
            ) | major;
        }
        // do_shared_fault.
        let r = self.do_page_mkwrite(file, page, flags);
        if r.intersects(VmFault::ERROR | VmFault::NOPAGE) {
            return r | major;
        }
        self.phys.get_page(page, 1);
        let r2 = self.map_new_page(mm, vma, va, page, true, true);
        let p = self.phys.page_mut(page);
        p.flags |= PageFlags::DIRTY;
        p.flags.remove(PageFlags::LOCKED);
        r2 | major
    }
}
