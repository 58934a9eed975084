//! get_user_pages: the slow path (`__get_user_pages`, the locked retry loop,
//! `get_user_pages{,_unlocked,_remote}`), the reference helpers both paths
//! share, and gup-fast's choice of leaf test; the gup-fast walker itself is
//! in `gup_fast`. `__get_user_pages` passes a preemption point
//! (`crate::preempt`) before each walk of a page.

use vmemu_arch::{Arch, Pfn, Pte, PteFlags, VirtAddr};

use crate::Machine;
use crate::errno::Errno;
use crate::event::EventKind;
use crate::fault::{FaultFlags, MkwriteBehaviour, VmFault};
use crate::mm::{Backing, VmFlags, Vma};
use crate::pgtable;
use crate::phys::{GUP_PIN_COUNTING_BIAS, PageFlags};
use crate::preempt::PreemptPoint;
use crate::profile::{GupFastLeaf, ThpTouchDirty};
use crate::sync::MmId;

bitflags::bitflags! {
    /// `FOLL_*` flags. The values are the emulator's own (v4.10 and 6.13
    /// number them differently); names are the kernel's.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct GupFlags: u32 {
        /// FOLL_WRITE
        const FOLL_WRITE = 1 << 0;
        /// FOLL_TOUCH
        const FOLL_TOUCH = 1 << 1;
        /// FOLL_GET
        const FOLL_GET = 1 << 2;
        /// FOLL_DUMP
        const FOLL_DUMP = 1 << 3;
        /// FOLL_FORCE
        const FOLL_FORCE = 1 << 4;
        /// FOLL_NOWAIT
        const FOLL_NOWAIT = 1 << 5;
        /// FOLL_POPULATE
        const FOLL_POPULATE = 1 << 6;
        /// FOLL_HWPOISON
        const FOLL_HWPOISON = 1 << 8;
        /// FOLL_NUMA (v4.10; 6.x inverts it as FOLL_HONOR_NUMA_FAULT)
        const FOLL_NUMA = 1 << 9;
        /// FOLL_TRIED
        const FOLL_TRIED = 1 << 11;
        /// FOLL_REMOTE
        const FOLL_REMOTE = 1 << 13;
        /// FOLL_COW (v4.10: the Dirty-COW fix's marker)
        const FOLL_COW = 1 << 14;
        /// FOLL_PIN (5.7+)
        const FOLL_PIN = 1 << 19;
        /// FOLL_LONGTERM
        const FOLL_LONGTERM = 1 << 20;
        /// FOLL_FAST_ONLY (internal)
        const FOLL_FAST_ONLY = 1 << 21;
        /// FOLL_UNLOCKABLE (internal, 6.x)
        const FOLL_UNLOCKABLE = 1 << 22;
        /// FOLL_NOFAULT
        const FOLL_NOFAULT = 1 << 23;
    }
}

/// What `follow_page_mask` found.
enum Follow {
    /// The page (with a reference if FOLL_GET/FOLL_PIN).
    Page(Pfn),
    /// Nothing usable: fault it in.
    NoPage,
    /// A mapping without a struct page, skipped (`-EEXIST`).
    Skip,
    /// A read-only pin of a possibly shared anonymous page: unshare it
    /// first (`gup_must_unshare`, `-EMLINK` in 6.13).
    Unshare,
    /// An error.
    Err(Errno),
}

/// The per-entry test gup-fast applies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Flavour {
    /// v4.10 `arch/x86/mm/gup.c`: `pte_allows_gup` (PRESENT, USER, RW if
    /// writing), devmap entries bypass it; plain `get_page`.
    X86Private,
    /// v4.10 generic RCU GUP: present, not special, writable if writing; no
    /// user check; speculative reference then re-check.
    GenericNoUser,
    /// `pte_access_permitted` era.
    AccessPermitted,
}

fn partial(done: u64, e: Errno) -> Result<u64, Errno> {
    if done > 0 { Ok(done) } else { Err(e) }
}

impl<A: Arch> Machine<A> {
    // ------------------------------------------------------------------
    // Slow path
    // ------------------------------------------------------------------

    /// gup's VMA lookup: v4.10 `find_extend_vma` (grows a VM_GROWSDOWN stack;
    /// never finds a kernel address), 6.x `gup_vma_lookup` (never grows).
    fn gup_vma_lookup(&mut self, mm: MmId, addr: VirtAddr) -> Option<Vma> {
        let addr = addr.align_down(A::PAGE_SIZE);
        let vma = self.find_vma(mm, addr)?;
        if vma.start <= addr {
            return Some(vma);
        }
        if !self.knobs.gup_extends_stack || !vma.flags.contains(VmFlags::VM_GROWSDOWN) {
            return None;
        }
        self.expand_stack(mm, addr)
    }

    /// `in_gate_area`: the x86-64 vsyscall page.
    fn in_gate_area(&self, addr: VirtAddr) -> bool {
        self.layout
            .vsyscall
            .is_some_and(|v| addr.0 >= v && addr.0 < v + A::PAGE_SIZE)
    }

    /// `get_gate_page`: a read of the gate area takes the page the kernel's
    /// tables map there.
    fn get_gate_page(
        &mut self,
        addr: VirtAddr,
        flags: GupFlags,
        want: bool,
    ) -> Result<Option<Pfn>, Errno> {
        if flags.contains(GupFlags::FOLL_WRITE) {
            return Err(Errno::EFAULT);
        }
        let slot = pgtable::lookup::<A>(&self.phys, self.family(), self.init_pgd, addr)
            .ok_or(Errno::EFAULT)?;
        if !slot.pte.has(PteFlags::LEAF) || !slot.pte.has(PteFlags::PRESENT) {
            return Err(Errno::EFAULT);
        }
        if !want {
            return Ok(None);
        }
        if self.knobs.ref_get_checked && self.phys.page_ref_count(slot.pte.pfn) <= 0 {
            // try_get_page() refuses (8fde12ca79af).
            return Err(Errno::ENOMEM);
        }
        self.phys.get_page(slot.pte.pfn, 1);
        self.hold(slot.pte.pfn, false, 1);
        Ok(Some(slot.pte.pfn))
    }

    /// `check_vma_flags`.
    fn check_vma_flags(&self, vma: &Vma, flags: GupFlags) -> Result<(), Errno> {
        let vf = vma.flags;
        if vf.intersects(VmFlags::VM_IO | VmFlags::VM_PFNMAP) {
            return Err(Errno::EFAULT);
        }
        if flags.contains(GupFlags::FOLL_WRITE) {
            // 6.13 check_vma_flags: `!vma_anon && !writable_file_mapping_allowed()`.
            if self.knobs.longterm_write_needs_no_writeback
                && flags.contains(GupFlags::FOLL_PIN | GupFlags::FOLL_LONGTERM)
                && self.vma_needs_dirty_tracking(vma)
            {
                return Err(Errno::EFAULT);
            }
            if !vf.contains(VmFlags::VM_WRITE) {
                let cow = vf & (VmFlags::VM_SHARED | VmFlags::VM_MAYWRITE) == VmFlags::VM_MAYWRITE;
                if !flags.contains(GupFlags::FOLL_FORCE) || !cow {
                    return Err(Errno::EFAULT);
                }
            }
        } else if !vf.contains(VmFlags::VM_READ)
            && (!flags.contains(GupFlags::FOLL_FORCE) || !vf.contains(VmFlags::VM_MAYREAD))
        {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }

    /// Takes `refs` references (FOLL_GET) or pins (FOLL_PIN) on the page
    /// containing `pfn` and records them as held by the caller. Pins of the
    /// zero page take nothing (6.x). Returns the compound head, or `None` if
    /// the speculative reference failed.
    #[inline(always)]
    pub(crate) fn grab(
        &mut self,
        pfn: Pfn,
        refs: u32,
        pin: bool,
        speculative: bool,
    ) -> Option<Pfn> {
        if pfn.0 >= self.phys.nr_frames() {
            // `vm_normal_page()`: a pfn past the last frame is a bad pte
            // (`print_bad_pte`), never a page to reference; only a kernel
            // that wrote into its own page tables gets here. (A tail's head
            // lies below it, so only such a pfn has its head out of range.)
            self.event(
                EventKind::KernelBug,
                format!(
                    "print_bad_pte: a pte maps pfn {:#x}, past the last frame; no page taken",
                    pfn.0
                ),
            );
            return None;
        }
        if self.phys.refcount_bits() < 32 {
            let head = self.phys.compound_head(pfn);
            return self.grab_narrow(head, refs, pin, speculative);
        }
        // `try_grab_folio` / `try_get_page`: `page_folio()`, then the
        // overflow check and the increment on the one `struct page` of the
        // head (v6.13 mm/gup.c `try_grab_folio`, 5.1 include/linux/mm.h
        // `try_get_page`), not a second lookup for each.
        let checked = self.knobs.ref_get_checked;
        let mut head = pfn;
        let mut p = self.phys.page_mut(pfn);
        if p.flags.contains(PageFlags::TAIL) {
            head = Pfn(pfn.0 & !((1u64 << p.order) - 1));
            p = self.phys.page_mut(head);
        }
        if pin && head == self.zero_pfn {
            if checked && !self.ref_get_allowed(head, speculative) {
                return None;
            }
            self.held.add(head, true, refs);
            return Some(head);
        }
        // `page_ref_count()` of a 32-bit `atomic_t`, read signed: a count
        // above 0 passes every check below, so the common case is one test.
        let c = p.refcount;
        if (c as i32) <= 0 && !Self::grab_allowed(c, checked, pin, speculative) {
            return None;
        }
        let add = if pin && p.order == 0 {
            refs * GUP_PIN_COUNTING_BIAS
        } else {
            refs
        };
        p.refcount = c.saturating_add(add);
        if pin && p.order > 0 {
            p.pincount += refs;
        }
        self.held.add(head, pin, refs);
        Some(head)
    }

    /// Whether [`Machine::grab`] may take a reference on a head whose
    /// 32-bit count `c` reads <= 0 as a signed value: with the 5.1 overflow
    /// checks (`checked`) a count < 0 is refused, and 0 by every get but a
    /// non-pinning plain `get_page`; without them, 0 is refused by a pin or
    /// a speculative get (`folio_ref_try_add`: a free page takes no
    /// reference).
    #[cold]
    #[inline(never)]
    fn grab_allowed(c: u32, checked: bool, pin: bool, speculative: bool) -> bool {
        let c = c as i32;
        if checked && (c < 0 || (c == 0 && !speculative)) {
            return false;
        }
        !((pin || speculative) && c == 0)
    }

    /// [`Machine::grab`] under a `_refcount` narrower than 32 bits (the
    /// CVE-2019-11487 replays), where the counter wraps.
    #[cold]
    #[inline(never)]
    fn grab_narrow(&mut self, head: Pfn, refs: u32, pin: bool, speculative: bool) -> Option<Pfn> {
        if self.knobs.ref_get_checked && !self.ref_get_allowed(head, speculative) {
            return None;
        }
        if pin {
            if head == self.zero_pfn {
                self.held.add(head, true, refs);
                return Some(head);
            }
            let large = self.phys.page(head).order > 0;
            let add = if large {
                refs
            } else {
                refs * GUP_PIN_COUNTING_BIAS
            };
            if !self.phys.try_get_head(head, add) {
                return None;
            }
            if large {
                self.phys.page_mut(head).pincount += refs;
            }
        } else if speculative {
            if !self.phys.try_get_head(head, refs) {
                return None;
            }
        } else {
            self.phys.get_head(head, refs);
        }
        self.held.add(head, pin, refs);
        Some(head)
    }

    /// The 5.1 overflow checks (`ref_get_checked`): a speculative gup-fast
    /// get refuses a signed count < 0 (`try_get_compound_head`, 6.x
    /// `try_grab_folio_fast`), every other get one <= 0 (`try_get_page`,
    /// 6.x `try_grab_folio`). The zero page is not refcounted for pins.
    #[cold]
    fn ref_get_allowed(&self, head: Pfn, speculative: bool) -> bool {
        let c = self.phys.page_ref_count(head);
        if speculative { c >= 0 } else { c > 0 }
    }

    /// Undoes [`Machine::grab`].
    pub(crate) fn ungrab(&mut self, pfn: Pfn, refs: u32, pin: bool) {
        for _ in 0..refs {
            let r = if pin {
                self.unpin_user_page(pfn)
            } else {
                self.put_page(pfn)
            };
            debug_assert!(r.is_ok());
        }
    }

    /// `follow_page_mask`: the software walk under the page-table lock.
    fn follow_page_mask(&mut self, mm: MmId, vma: &Vma, addr: VirtAddr, flags: GupFlags) -> Follow {
        let pgd = self.mm(mm).pgd;
        let Some(slot) = pgtable::lookup::<A>(
            &self.phys,
            self.family(),
            pgd,
            addr.align_down(A::PAGE_SIZE),
        ) else {
            return Follow::NoPage;
        };
        let pte = slot.pte;
        if !pte.has(PteFlags::LEAF) || !pte.has(PteFlags::PRESENT) {
            return Follow::NoPage;
        }
        if flags.contains(GupFlags::FOLL_NUMA)
            && self.knobs.numa_balancing
            && pte.has(PteFlags::PROTNONE)
        {
            return Follow::NoPage;
        }
        // can_follow_write_pte (19be0eaffa3a); before it, only a writable
        // pte passes a FOLL_WRITE walk.
        // 17839856fd58 (5.8) dropped the FOLL_FORCE term: a forced COW
        // break of a read gets FOLL_COW without FOLL_FORCE.
        let cow_ok = if self.knobs.force_cow_on_read_pin {
            flags.contains(GupFlags::FOLL_COW)
        } else {
            flags.contains(GupFlags::FOLL_FORCE | GupFlags::FOLL_COW)
        };
        if flags.contains(GupFlags::FOLL_WRITE)
            && !pte.has(PteFlags::WRITE)
            && !(self.knobs.foll_cow && cow_ok && pte.has(PteFlags::DIRTY))
        {
            return Follow::NoPage;
        }
        let span = A::entry_span(slot.level);
        let pfn = Pfn(pte.pfn.0 + addr.offset_in(span) / A::PAGE_SIZE);
        // A huge leaf is followed by follow_trans_huge_pmd: the same write
        // rule (can_follow_write_pmd, 8310d48b125d), touch_pmd below.
        let huge = slot.level != A::leaf_level();
        let huge_zero = huge && Some(pte.pfn) == self.huge_zero_pfn;
        if huge_zero && flags.contains(GupFlags::FOLL_DUMP) {
            return Follow::Err(Errno::EFAULT);
        }
        if flags.contains(GupFlags::FOLL_WRITE) && (huge_zero || pte.pfn == self.zero_pfn) {
            // The kernel writes into what a FOLL_WRITE walk returns: into
            // the page every read-only zero mapping shares.
            let name = if huge_zero {
                "huge zero page"
            } else {
                "zero page"
            };
            self.event(
                EventKind::ZeroPageCorrupted,
                format!(
                    "a FOLL_WRITE gup at {addr} follows a read-only {}entry of the {name} (FOLL_COW and dirty): the write lands in the {name}, every mapping of it reads it",
                    if pte.has(PteFlags::DIRTY) { "dirty " } else { "" }
                ),
            );
        }
        if pte.has(PteFlags::SPECIAL) && pte.pfn != self.zero_pfn {
            // vm_normal_page() is NULL and it is not the zero page.
            if flags.contains(GupFlags::FOLL_DUMP) {
                return Follow::Err(Errno::EFAULT);
            }
            return if flags.intersects(GupFlags::FOLL_GET | GupFlags::FOLL_PIN) {
                Follow::Err(Errno::EFAULT)
            } else {
                Follow::Skip
            };
        }
        if self.knobs.ro_pin_unshare
            && flags & (GupFlags::FOLL_WRITE | GupFlags::FOLL_PIN) == GupFlags::FOLL_PIN
            && !pte.has(PteFlags::WRITE)
            && self.gup_must_unshare(Some(vma), flags.contains(GupFlags::FOLL_LONGTERM), pfn)
        {
            return Follow::Unshare;
        }
        let get = flags.intersects(GupFlags::FOLL_GET | GupFlags::FOLL_PIN);
        if get
            && self
                .grab(pfn, 1, flags.contains(GupFlags::FOLL_PIN), false)
                .is_none()
        {
            return Follow::Err(Errno::ENOMEM);
        }
        if flags.contains(GupFlags::FOLL_TOUCH) {
            let mut f = pte.flags | PteFlags::YOUNG;
            // touch_pmd: before a8f97366452e dirty on every touch.
            if huge
                && (flags.contains(GupFlags::FOLL_WRITE)
                    || self.knobs.thp_touch_dirty == ThpTouchDirty::Always)
            {
                f |= PteFlags::DIRTY;
            }
            if flags.contains(GupFlags::FOLL_WRITE) && pte.has(PteFlags::WRITE) {
                f |= PteFlags::DIRTY;
                f.remove(PteFlags::RDONLY);
                let head = self.phys.compound_head(pfn);
                self.phys.page_mut(head).flags |= PageFlags::DIRTY;
            }
            let raw = A::encode(
                self.family(),
                slot.level,
                Pte {
                    flags: f,
                    pfn: pte.pfn,
                },
            );
            let _ = self.phys.write_entry(slot.entry_pa, raw);
            let head = self.phys.compound_head(pfn);
            self.phys.page_mut(head).flags |= PageFlags::REFERENCED;
        }
        Follow::Page(pfn)
    }

    /// `gup_must_unshare(vma, flags, page)` for a read-only pin (the
    /// callers check `(flags & (FOLL_WRITE | FOLL_PIN)) == FOLL_PIN` and
    /// the read-only entry; `vma` is `None` in gup-fast).
    ///
    /// An anonymous page must be unshared when it is not known to be
    /// mapped by this process only (`!PageAnonExclusive`). Any other page
    /// (the zero page, a page-cache page: `!PageAnon`) only where the
    /// profile has `longterm_unshare_non_anon` (6.2+, 6.13 mm/internal.h):
    /// for a FOLL_LONGTERM pin in a COW mapping, and always in gup-fast,
    /// which cannot see the VMA and leaves the page to the slow path.
    pub(crate) fn gup_must_unshare(&self, vma: Option<&Vma>, longterm: bool, pfn: Pfn) -> bool {
        let head = self.phys.compound_head(pfn);
        let p = self.phys.page(head);
        let anon = head != self.zero_pfn && matches!(p.owner, crate::phys::Owner::Anon { .. });
        if !anon {
            return self.knobs.longterm_unshare_non_anon
                && longterm
                && vma.is_none_or(|v| crate::fork::is_cow_mapping(v.flags));
        }
        !p.flags.contains(PageFlags::ANON_EXCLUSIVE)
    }

    /// `vma_needs_dirty_tracking` (6.13 mm/mmap.c): a shared writable
    /// file mapping whose file is told of writes (`->page_mkwrite`) or
    /// writes pages back (`mapping_can_writeback`; every emulated file but
    /// shmem, whose backing device has no writeback).
    pub(crate) fn vma_needs_dirty_tracking(&self, vma: &Vma) -> bool {
        let shared_writable = vma.flags.contains(VmFlags::VM_SHARED | VmFlags::VM_WRITE);
        match vma.backing {
            Backing::File { file, .. } if shared_writable => {
                let f = &self.files[file as usize];
                f.ops.page_mkwrite != MkwriteBehaviour::None || !f.shmem
            }
            _ => false,
        }
    }

    /// 6.13 `is_valid_gup_args`' rule "LONGTERM can only be specified when
    /// pinning" (6.1 `is_valid_gup_flags`), where the profile has it
    /// (`longterm_needs_pin`): `-EINVAL` from the `get_user_pages*` entry
    /// points.
    pub(crate) fn longterm_without_pin(&self, flags: GupFlags) -> bool {
        self.knobs.longterm_needs_pin
            && flags.contains(GupFlags::FOLL_LONGTERM)
            && !flags.contains(GupFlags::FOLL_PIN)
    }

    /// `faultin_page` (with `unshare`: FAULT_FLAG_UNSHARE, 5.19+).
    fn faultin_page(
        &mut self,
        mm: MmId,
        vma: &Vma,
        addr: VirtAddr,
        flags: &mut GupFlags,
        unshare: bool,
        locked: Option<&mut bool>,
    ) -> Result<(), Errno> {
        let mut ff = FaultFlags::empty();
        if unshare {
            ff |= FaultFlags::UNSHARE;
        }
        if flags.contains(GupFlags::FOLL_WRITE) {
            ff |= FaultFlags::WRITE;
        }
        if flags.contains(GupFlags::FOLL_REMOTE) {
            ff |= FaultFlags::REMOTE;
        }
        if locked.is_some() {
            ff |= FaultFlags::ALLOW_RETRY;
        }
        if flags.contains(GupFlags::FOLL_NOWAIT) {
            ff |= FaultFlags::ALLOW_RETRY | FaultFlags::RETRY_NOWAIT;
        }
        if flags.contains(GupFlags::FOLL_TRIED) {
            ff |= FaultFlags::TRIED;
        }
        let ret = self.handle_mm_fault(mm, vma, addr, ff);
        if ret.intersects(VmFault::ERROR) {
            if ret.contains(VmFault::OOM) {
                return Err(Errno::ENOMEM);
            }
            if ret.intersects(VmFault::HWPOISON | VmFault::HWPOISON_LARGE) {
                return Err(if flags.contains(GupFlags::FOLL_HWPOISON) {
                    Errno::EHWPOISON
                } else {
                    Errno::EFAULT
                });
            }
            return Err(Errno::EFAULT);
        }
        if ret.contains(VmFault::RETRY) {
            if !ff.contains(FaultFlags::RETRY_NOWAIT)
                && let Some(l) = locked
            {
                *l = false;
            }
            return Err(Errno::EBUSY);
        }
        // A COW was broken on a VMA the caller may not write (FOLL_FORCE):
        // follow the (read-only, dirty) copy from now on.
        if ret.contains(VmFault::WRITE) && !vma.flags.contains(VmFlags::VM_WRITE) {
            if self.knobs.foll_cow {
                *flags |= GupFlags::FOLL_COW;
            } else {
                // Before 19be0eaffa3a: stop asking for a writable pte at
                // all. The next walk is a read walk; if the private copy is
                // zapped meanwhile it faults in the page-cache page (Dirty
                // COW).
                flags.remove(GupFlags::FOLL_WRITE);
            }
        }
        Ok(())
    }

    /// `__get_user_pages`: does not align `start`; page `i` is the page
    /// containing `start + i * PAGE_SIZE`. Returns the pages taken so far if
    /// any, else the error; `Ok(0)` with `*locked == false` after a retry.
    pub fn __get_user_pages(
        &mut self,
        mm: MmId,
        start: VirtAddr,
        nr: u64,
        mut gup_flags: GupFlags,
        mut pages: Option<&mut Vec<Pfn>>,
        mut locked: Option<&mut bool>,
    ) -> Result<u64, Errno> {
        if nr == 0 {
            return Ok(0);
        }
        // 6.13 `start = untagged_addr_remote(mm, start)` (5.4+).
        let start = if self.knobs.untag_user_addr {
            A::untagged_addr(start)
        } else {
            start
        };
        if !gup_flags.contains(GupFlags::FOLL_FORCE) {
            gup_flags |= GupFlags::FOLL_NUMA;
        }
        let want = pages.is_some() && gup_flags.intersects(GupFlags::FOLL_GET | GupFlags::FOLL_PIN);
        let mut vma: Option<Vma> = None;
        let mut i = 0u64;
        while i < nr {
            let addr = start.wrapping_add(i.wrapping_mul(A::PAGE_SIZE));
            if vma.is_none_or(|v| addr >= v.end || addr < v.start) {
                vma = self.gup_vma_lookup(mm, addr);
                if vma.is_none() && self.in_gate_area(addr) {
                    match self.get_gate_page(addr, gup_flags, want) {
                        Ok(p) => {
                            if let (Some(v), Some(p)) = (pages.as_deref_mut(), p) {
                                v.push(p);
                            }
                            i += 1;
                            continue;
                        }
                        Err(e) => return partial(i, e),
                    }
                }
                match vma {
                    None => return partial(i, Errno::EFAULT),
                    Some(v) => {
                        if let Err(e) = self.check_vma_flags(&v, gup_flags) {
                            return partial(i, e);
                        }
                    }
                }
            }
            let Some(v) = vma else {
                return partial(i, Errno::EFAULT);
            };
            if self.task().fatal_signal {
                return partial(i, self.knobs.gup_fatal_signal);
            }
            let mut foll = gup_flags;
            // should_force_cow_break (17839856fd58, 5.8 only).
            if self.knobs.force_cow_on_read_pin
                && crate::fork::is_cow_mapping(v.flags)
                && foll.intersects(GupFlags::FOLL_GET | GupFlags::FOLL_PIN)
            {
                foll |= GupFlags::FOLL_WRITE;
            }
            let mut tries = 0;
            loop {
                tries += 1;
                if tries > 8 {
                    self.event(
                        EventKind::SoftLockup,
                        format!("__get_user_pages: no progress faulting in {addr}"),
                    );
                    return partial(i, Errno::EFAULT);
                }
                // The retry point: another task may run here.
                if self.preempt.armed() {
                    self.preempt_at(PreemptPoint::GupRetry { addr, walk: tries });
                }
                match self.follow_page_mask(mm, &v, addr, foll) {
                    Follow::Page(p) => {
                        if let Some(v) = pages.as_deref_mut() {
                            v.push(p);
                        }
                        break;
                    }
                    Follow::Skip => break,
                    Follow::Err(e) => return partial(i, e),
                    f @ (Follow::NoPage | Follow::Unshare) => {
                        let unshare = matches!(f, Follow::Unshare);
                        match self.faultin_page(
                            mm,
                            &v,
                            addr,
                            &mut foll,
                            unshare,
                            locked.as_deref_mut(),
                        ) {
                            Ok(()) => {}
                            Err(Errno::EBUSY) => return Ok(i),
                            Err(e) => return partial(i, e),
                        }
                    }
                }
            }
            i += 1;
        }
        Ok(i)
    }

    /// `__get_user_pages_locked`: with `locked`, faults may drop `mmap_sem`
    /// (VM_FAULT_RETRY); the loop re-takes it and fetches one page with
    /// FOLL_TRIED (v4.10: without ALLOW_RETRY; 6.x: retries repeatedly).
    fn __get_user_pages_locked(
        &mut self,
        mm: MmId,
        mut start: VirtAddr,
        mut nr: u64,
        pages: &mut Vec<Pfn>,
        flags: GupFlags,
        locked: Option<&mut bool>,
    ) -> Result<u64, Errno> {
        if flags.contains(GupFlags::FOLL_PIN) {
            // mm_set_has_pinned_flag.
            self.mm_mut(mm).has_pinned = true;
        }
        let Some(locked) = locked else {
            return self.__get_user_pages(mm, start, nr, flags, Some(pages), None);
        };
        let mut done = 0u64;
        loop {
            let ret =
                self.__get_user_pages(mm, start, nr, flags, Some(&mut *pages), Some(&mut *locked));
            let got = match ret {
                Ok(n) => n,
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            };
            nr -= got;
            done += got;
            if nr == 0 || *locked {
                return Ok(done);
            }
            // VM_FAULT_RETRY: mmap_sem was dropped. Re-take it and fetch one
            // page with FOLL_TRIED (6.x: again allowing a retry, which drops
            // the lock once more and loops here).
            start = start.wrapping_add(got * A::PAGE_SIZE);
            loop {
                if self.task().fatal_signal {
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(self.knobs.gup_fatal_signal)
                    };
                }
                if self.mmap_read_lock(mm).is_err() {
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(Errno::EDEADLK)
                    };
                }
                *locked = true;
                let again = if self.knobs.gup_repeat_retry {
                    Some(&mut *locked)
                } else {
                    None
                };
                let r = self.__get_user_pages(
                    mm,
                    start,
                    1,
                    flags | GupFlags::FOLL_TRIED,
                    Some(&mut *pages),
                    again,
                );
                match r {
                    Ok(1) => break,
                    Ok(_) if self.knobs.gup_repeat_retry && !*locked => continue,
                    Ok(_) => return Ok(done),
                    Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
                }
            }
            nr -= 1;
            done += 1;
            if nr == 0 {
                return Ok(done);
            }
            start = start.wrapping_add(A::PAGE_SIZE);
        }
    }

    /// `get_user_pages(start, nr, gup_flags, pages)` of the current mm; the
    /// caller holds `mmap_sem` (checked: calling without it is a kernel bug).
    pub fn get_user_pages(
        &mut self,
        start: VirtAddr,
        nr: u64,
        gup_flags: GupFlags,
        pages: &mut Vec<Pfn>,
    ) -> Result<u64, Errno> {
        let mm = self.current_mm();
        self.get_user_pages_remote(mm, start, nr, gup_flags & !GupFlags::FOLL_REMOTE, pages)
    }

    /// `get_user_pages_remote(mm, ...)`: gup on another mm (FOLL_REMOTE).
    pub fn get_user_pages_remote(
        &mut self,
        mm: MmId,
        start: VirtAddr,
        nr: u64,
        gup_flags: GupFlags,
        pages: &mut Vec<Pfn>,
    ) -> Result<u64, Errno> {
        if self.longterm_without_pin(gup_flags) {
            return Err(Errno::EINVAL);
        }
        if !self.holds_mmap_sem(mm) {
            self.event(
                EventKind::KernelBug,
                "get_user_pages called without mmap_sem held",
            );
        }
        let mut flags = gup_flags | GupFlags::FOLL_TOUCH;
        if !flags.contains(GupFlags::FOLL_PIN) {
            flags |= GupFlags::FOLL_GET;
        }
        self.__get_user_pages_locked(mm, start, nr, pages, flags, None)
    }

    /// `get_user_pages_unlocked(start, nr, pages, gup_flags)`: takes
    /// `mmap_sem` itself and lets faults drop it.
    pub fn get_user_pages_unlocked(
        &mut self,
        start: VirtAddr,
        nr: u64,
        pages: &mut Vec<Pfn>,
        gup_flags: GupFlags,
    ) -> Result<u64, Errno> {
        if self.longterm_without_pin(gup_flags) {
            return Err(Errno::EINVAL);
        }
        let mm = self.current_mm();
        self.mmap_read_lock(mm)?;
        let mut locked = true;
        let mut flags = gup_flags | GupFlags::FOLL_TOUCH;
        if !flags.contains(GupFlags::FOLL_PIN) {
            flags |= GupFlags::FOLL_GET;
        }
        let r = self.__get_user_pages_locked(mm, start, nr, pages, flags, Some(&mut locked));
        if locked {
            self.mmap_read_unlock(mm);
        }
        r
    }

    // ------------------------------------------------------------------
    // gup-fast
    // ------------------------------------------------------------------

    pub(crate) fn flavour(&self) -> Flavour {
        if A::PRIVATE_GUP_FAST && self.knobs.x86_private_gup {
            Flavour::X86Private
        } else {
            match self.knobs.gup_fast_leaf {
                GupFastLeaf::GenericNoUser => Flavour::GenericNoUser,
                GupFastLeaf::AccessPermitted => Flavour::AccessPermitted,
            }
        }
    }
}
