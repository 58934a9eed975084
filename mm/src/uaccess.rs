//! uaccess: `access_ok` against the task's `addr_limit`, and
//! `copy_to_user`/`copy_from_user`/`clear_user`/`get_user`/`put_user` with
//! the kernel's short-copy semantics (they return the bytes **not** copied),
//! translating through the **hardware** root and faulting user pages in.
//!
//! Copies are byte-exact up to the first byte whose page cannot be made
//! accessible (the x86 and arm64 fixup paths finish a faulting copy with a
//! byte-granular tail; the emulator reports that exact count on every arch).

use vmemu_arch::{Arch, Family, HwRoot, Level, PhysAddr, PteFlags, SizeKind, VirtAddr};

use crate::Machine;
use crate::errno::Errno;
use crate::event::EventKind;
use crate::fault::{FaultFlags, VmFault};
use crate::mm::VmFlags;
use crate::pgtable::{self, RootSel};
use crate::sync::MmId;

/// uaccess's software TLB: the last translation, for the next access to the
/// same page, and the table that held its leaf entry (a walk cache, as the
/// MMU's paging-structure caches keep upper levels), for the next page under
/// the same table: a copy across consecutive pages reads one entry per page
/// instead of walking from the root.
///
/// Both are valid while no page table changed ([`PhysMem::generation`]),
/// the roots are the same (switching mm, `set_fs` is `access_ok`'s, checked
/// before every access) and the family is the same. The kernel flushes its
/// TLB only after changing a table entry (`flush_tlb_range` after munmap,
/// mprotect, a COW replacement, a migration or THP split, `MADV_DONTNEED`,
/// fork's write-protect of the parent; `switch_mm`), and every such change
/// here is an entry write or a table frame freed or reused, each of which
/// bumps the generation: a cached translation is dropped at least wherever
/// the kernel flushes, and a hit returns exactly what the walk from the root
/// would. (The emulator models no stale-TLB window for uaccess: its walk
/// always reads the current tables, and so does this cache. A fault handled
/// inside a copy changes tables, so it invalidates too.)
///
/// Only translations whose use has no side effect are kept in the page
/// entry: a readable page, and for writes only a page whose entry is
/// already dirty (or a kernel page), so a hit writes nothing where the walk
/// would write nothing. The table entry re-reads and re-decodes the leaf
/// entry on every use, so the dirty-bit update is made as after a full
/// walk; that one entry write is the only table change the cache survives.
/// An emulator shortcut, invisible in results.
///
/// [`PhysMem::generation`]: crate::phys::PhysMem::generation
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UaccessCache {
    valid: bool,
    generation: u64,
    roots: Option<pgtable::Roots>,
    /// The page (virtual, full address).
    page: u64,
    /// Physical address of the page's first byte.
    pa: u64,
    /// A write needs no fault and no dirty-bit update.
    write: bool,
    /// The table that held the last leaf.
    walk: Option<WalkCache>,
    /// The last leaf decoded through `walk` (independent of memory).
    memo: Option<pgtable::LeafMemo>,
    /// `note_kernel_write` found the page's frame an ordinary one. What it
    /// looks at (free, a page table, the zero page, reserved) changes only
    /// when frames are freed or allocated again, which changes the
    /// generation and so this entry.
    noted: bool,
}

/// Where the last walk found its leaf, with what the levels above it
/// contributed.
#[derive(Clone, Copy, Debug)]
struct WalkCache {
    generation: u64,
    roots: pgtable::Roots,
    family: Family,
    root: HwRoot,
    /// First virtual address the table maps (full address).
    base: u64,
    /// Bytes the table maps.
    span: u64,
    table: PhysAddr,
    level: Level,
    table_perms: PteFlags,
}

impl<A: Arch> Machine<A> {
    /// `access_ok(addr, size)` of the current task.
    #[must_use]
    pub fn access_ok(&self, addr: VirtAddr, size: u64, kind: SizeKind) -> bool {
        A::access_ok(self.family(), addr, size, self.task().addr_limit, kind)
    }

    /// Translates `va` for a kernel-mode access, faulting a user page in as
    /// `do_page_fault` would. `None` means the exception-table fixup runs.
    /// The page of the last translation (the TLB entry it left) is checked
    /// here, inline; everything else is [`Machine::uaccess_translate_miss`].
    #[inline]
    fn uaccess_translate(&mut self, va: VirtAddr, write: bool) -> Option<PhysAddr> {
        let mm = self.current_mm();
        let page = va.align_down(A::PAGE_SIZE);
        let roots = self.roots(mm);
        let c = &self.uaccess_cache;
        if c.valid
            && c.page == page.0
            && (c.write || !write)
            && c.generation == self.phys.generation()
            && c.roots == Some(roots)
        {
            return Some(PhysAddr(c.pa + va.offset_in(A::PAGE_SIZE)));
        }
        self.uaccess_translate_miss(va, write)
    }

    /// [`Machine::uaccess_translate`] past the last page's entry: from the
    /// cached leaf table, else a walk from the root and the fault path.
    #[inline(never)]
    fn uaccess_translate_miss(&mut self, va: VirtAddr, write: bool) -> Option<PhysAddr> {
        let mm = self.current_mm();
        let roots = self.roots(mm);
        let generation = self.phys.generation();
        let c = &self.uaccess_cache;
        if let Some(w) = c.walk
            && w.generation == generation
            && w.roots == roots
            && w.family == self.family()
            && va.0.wrapping_sub(w.base) < w.span
            && A::hw_root(self.family(), va) == Some(w.root)
        {
            let mut memo = c.memo;
            let t = pgtable::walk_from_leaf_table::<A>(
                &self.phys,
                w.family,
                w.table,
                w.level,
                w.table_perms,
                w.root,
                va,
                &mut memo,
            );
            self.uaccess_cache.memo = memo;
            if let Some(t) = t
                && let Some(pa) = self.uaccess_use(&t, va, write, roots)
            {
                return Some(pa);
            }
        }
        // A miss, or a translation that needs the fault path: walk from
        // the root (the same translation, for the latter) and go on there.
        for attempt in 0..3 {
            let roots = self.roots(mm);
            if let Ok(t) = pgtable::walk::<A>(
                &self.phys,
                self.family(),
                roots,
                va,
                RootSel::Hardware,
                |_| {},
            ) {
                let span = A::entries(t.level) as u64 * t.page_size;
                self.uaccess_cache.walk = Some(WalkCache {
                    generation: self.phys.generation(),
                    roots,
                    family: self.family(),
                    root: t.root,
                    base: va.0 & !(span - 1),
                    span,
                    table: PhysAddr(t.entry_pa.0 - A::index(va, t.level) as u64 * 8),
                    level: t.level,
                    table_perms: t.table_perms,
                });
                if let Some(pa) = self.uaccess_use(&t, va, write, roots) {
                    return Some(pa);
                }
                if t.root == HwRoot::Kernel {
                    return None;
                }
            }
            if attempt == 2 {
                // Two faults were handled without error (e.g. VM_FAULT_NOPAGE
                // from ->page_mkwrite returning -EAGAIN) and the access still
                // faults: the kernel restarts the instruction forever.
                self.event(
                    EventKind::SoftLockup,
                    format!(
                        "uaccess at {va}: the fault was handled without error but the access still faults; the kernel would retry it forever"
                    ),
                );
                return None;
            }
            if !self.do_user_fault(mm, va, write) {
                return None;
            }
        }
        None
    }

    /// Uses the translation `t` of `va` (from a walk, or from the walk
    /// cache) if it allows the access without a fault: caches it and sets
    /// the dirty bit of a user entry written for the first time, as the
    /// hardware does. `None` if the access faults.
    #[inline(always)]
    fn uaccess_use(
        &mut self,
        t: &pgtable::Translation,
        va: VirtAddr,
        write: bool,
        roots: pgtable::Roots,
    ) -> Option<PhysAddr> {
        if !(t.eff.contains(PteFlags::READ) && (!write || t.eff.contains(PteFlags::WRITE))) {
            return None;
        }
        let clean_write = t.eff.contains(PteFlags::WRITE)
            && (t.leaf.has(PteFlags::DIRTY) || t.root != HwRoot::Mm);
        let generation = self.phys.generation();
        self.uaccess_cache.valid = true;
        self.uaccess_cache.generation = generation;
        self.uaccess_cache.roots = Some(roots);
        self.uaccess_cache.page = va.align_down(A::PAGE_SIZE).0;
        self.uaccess_cache.pa = t.pa.0 - va.offset_in(A::PAGE_SIZE);
        self.uaccess_cache.write = clean_write;
        self.uaccess_cache.noted = false;
        if write && !t.leaf.has(PteFlags::DIRTY) && t.root == HwRoot::Mm {
            // The hardware sets the dirty bit on a writable entry.
            let mut f = t.leaf.flags | PteFlags::DIRTY | PteFlags::YOUNG;
            f.remove(PteFlags::RDONLY);
            let raw = A::encode(
                self.family(),
                t.level,
                vmemu_arch::Pte {
                    flags: f,
                    pfn: t.leaf.pfn,
                },
            );
            let _ = self.phys.write_entry(t.entry_pa, raw);
            // That write changed one leaf entry, which the walk cache
            // re-reads on every use: it stays valid if nothing else changed.
            if let Some(w) = self.uaccess_cache.walk.as_mut()
                && w.generation == generation
                && self.phys.generation() == generation + 1
            {
                w.generation = generation + 1;
            }
        }
        Some(t.pa)
    }

    /// [`Machine::note_kernel_write`] for `len` bytes at `pa` in the page of
    /// the last translation: checked once per translation, not per access.
    #[inline]
    fn note_uaccess_write(&mut self, pa: PhysAddr, len: u64) {
        let page = pa.0 & !(A::PAGE_SIZE - 1);
        if self.uaccess_cache.noted && self.uaccess_cache.pa == page {
            return;
        }
        if self.note_kernel_write(pa, len) && self.uaccess_cache.pa == page {
            self.uaccess_cache.noted = true;
        }
    }

    /// The user-address part of `do_page_fault` for a kernel-mode access:
    /// `find_vma`, stack expansion, the VMA permission check, then
    /// `handle_mm_fault` with ALLOW_RETRY|KILLABLE and one TRIED retry.
    /// Returns whether the fault was handled.
    fn do_user_fault(&mut self, mm: MmId, va: VirtAddr, write: bool) -> bool {
        if A::hw_root(self.family(), va) != Some(HwRoot::Mm) || va.0 >= self.layout.task_size_max {
            return false; // kernel address: no user fault handling, fixup
        }
        if self.mmap_read_lock(mm).is_err() {
            return false;
        }
        let (handled, still_locked) = self.do_user_fault_locked(mm, va, write);
        if still_locked {
            self.mmap_read_unlock(mm);
        }
        handled
    }

    /// Returns (handled, still holding the lock).
    fn do_user_fault_locked(&mut self, mm: MmId, va: VirtAddr, write: bool) -> (bool, bool) {
        let Some(mut vma) = self.find_vma(mm, va) else {
            return (false, true);
        };
        if vma.start > va {
            if !vma.flags.contains(VmFlags::VM_GROWSDOWN) {
                return (false, true);
            }
            match self.expand_stack(mm, va) {
                Some(v) => vma = v,
                None => return (false, true),
            }
        }
        let access = VmFlags::VM_READ | VmFlags::VM_WRITE | VmFlags::VM_EXEC;
        let allowed = if write {
            vma.flags.contains(VmFlags::VM_WRITE)
        } else {
            // An execute-only VMA is readable to the fault handler unless the
            // arch calls a read fault there an access error (powerpc 6.x).
            vma.flags.intersects(access)
                && !(A::exec_only_read_is_access_error(self.family())
                    && vma.flags & access == VmFlags::VM_EXEC)
        };
        if !allowed {
            return (false, true);
        }
        let mut flags = FaultFlags::ALLOW_RETRY | FaultFlags::KILLABLE;
        if write {
            flags |= FaultFlags::WRITE;
        }
        let r = self.handle_mm_fault(mm, &vma, va, flags);
        if r.contains(VmFault::RETRY) {
            // mmap_sem was dropped: take it again and retry once with TRIED.
            if self.mmap_read_lock(mm).is_err() {
                return (false, false);
            }
            flags.remove(FaultFlags::ALLOW_RETRY);
            flags |= FaultFlags::TRIED;
            let r = self.handle_mm_fault(mm, &vma, va, flags);
            return (!r.intersects(VmFault::ERROR | VmFault::RETRY), true);
        }
        (!r.intersects(VmFault::ERROR), true)
    }

    /// Copies between kernel memory and user memory page by page; `op` gets the
    /// physical address and the offset/length within the kernel buffer.
    /// Returns the bytes not done.
    #[inline(always)]
    fn uaccess(
        &mut self,
        addr: VirtAddr,
        n: u64,
        write: bool,
        kind: SizeKind,
        mut op: impl FnMut(&Machine<A>, PhysAddr, usize, usize) -> bool,
    ) -> u64 {
        if !self.access_ok(addr, n, kind) {
            return n;
        }
        let mut done = 0u64;
        while done < n {
            let va = addr.wrapping_add(done);
            let chunk = (A::PAGE_SIZE - va.offset_in(A::PAGE_SIZE)).min(n - done);
            let Some(pa) = self.uaccess_translate(va, write) else {
                break;
            };
            if write {
                self.note_uaccess_write(pa, chunk);
            }
            if !op(self, pa, done as usize, chunk as usize) {
                break;
            }
            done += chunk;
        }
        n - done
    }

    /// `copy_to_user(to, from)`: bytes not copied.
    pub fn copy_to_user(&mut self, to: VirtAddr, from: &[u8]) -> u64 {
        self.uaccess(
            to,
            from.len() as u64,
            true,
            SizeKind::Runtime,
            |m, pa, off, len| m.phys.write(pa, &from[off..off + len]).is_ok(),
        )
    }

    /// `copy_from_user(to, from)`: bytes not copied; the uncopied tail of
    /// `to` is zeroed, as the kernel does.
    pub fn copy_from_user(&mut self, to: &mut [u8], from: VirtAddr) -> u64 {
        let n = to.len() as u64;
        let left = self.uaccess(from, n, false, SizeKind::Runtime, |m, pa, off, len| {
            m.phys.read(pa, &mut to[off..off + len]).is_ok()
        });
        let done = (n - left) as usize;
        to[done..].fill(0);
        left
    }

    /// `clear_user(to, n)`: bytes not cleared.
    pub fn clear_user(&mut self, to: VirtAddr, n: u64) -> u64 {
        self.uaccess(to, n, true, SizeKind::Runtime, |m, pa, _, len| {
            m.phys.zero(pa, len).is_ok()
        })
    }

    /// `get_user(x, ptr)` of a `size`-byte (1, 2, 4, 8) little-endian value.
    pub fn get_user(&mut self, ptr: VirtAddr, size: u64) -> Result<u64, Errno> {
        let mut buf = [0u8; 8];
        let n = size.min(8) as usize;
        let left = self.uaccess(
            ptr,
            n as u64,
            false,
            SizeKind::Constant,
            |m, pa, off, len| m.phys.read(pa, &mut buf[off..off + len]).is_ok(),
        );
        if left != 0 {
            return Err(Errno::EFAULT);
        }
        Ok(u64::from_le_bytes(buf))
    }

    /// `put_user(x, ptr)` of a `size`-byte value.
    pub fn put_user(&mut self, val: u64, ptr: VirtAddr, size: u64) -> Result<(), Errno> {
        let bytes = val.to_le_bytes();
        let n = size.min(8) as usize;
        if self.uaccess(
            ptr,
            n as u64,
            true,
            SizeKind::Constant,
            |m, pa, off, len| m.phys.write(pa, &bytes[off..off + len]).is_ok(),
        ) != 0
        {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }
}
