//! The emulated kernel state: physical memory, `init_mm` with its direct map
//! (`arch/*/mm/init*.c`, `mm/init-mm.c`), address spaces (`mm_struct`,
//! `kernel/fork.c`'s `mm_alloc`) with VMAs, tasks with `current->mm` and
//! `addr_limit`, the lock model, the event log and symbolic page names. The
//! page cache is `filemap`, the held-reference ledger `ledger`.

use std::marker::PhantomData;

use vmemu_arch::{Arch, Family, Level, Pfn, PhysAddr, Pte, PteFlags, VirtAddr};

use crate::event::{Event, EventKind};
use crate::pgtable::{self, MapError, Roots};
use crate::phys::{Owner, PhysMem};
use crate::profile::KernelProfile;
use crate::sync::{LockModel, MmId, TaskId};
use crate::{Machine, MachineError};

bitflags::bitflags! {
    /// `vma->vm_flags` (values of `include/linux/mm.h`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct VmFlags: u64 {
        /// VM_READ
        const VM_READ = 0x1;
        /// VM_WRITE
        const VM_WRITE = 0x2;
        /// VM_EXEC
        const VM_EXEC = 0x4;
        /// VM_SHARED
        const VM_SHARED = 0x8;
        /// VM_MAYREAD
        const VM_MAYREAD = 0x10;
        /// VM_MAYWRITE
        const VM_MAYWRITE = 0x20;
        /// VM_MAYEXEC
        const VM_MAYEXEC = 0x40;
        /// VM_MAYSHARE
        const VM_MAYSHARE = 0x80;
        /// VM_GROWSDOWN
        const VM_GROWSDOWN = 0x100;
        /// VM_PFNMAP
        const VM_PFNMAP = 0x400;
        /// VM_IO
        const VM_IO = 0x4000;
        /// VM_HUGEPAGE (madvise(MADV_HUGEPAGE): THP faults map PMD leaves)
        const VM_HUGEPAGE = 0x2000_0000;
    }
}

/// `is_cow_mapping` (`include/linux/mm.h`): private and may be written.
pub(crate) fn is_cow_mapping(flags: VmFlags) -> bool {
    flags & (VmFlags::VM_SHARED | VmFlags::VM_MAYWRITE) == VmFlags::VM_MAYWRITE
}

/// `PROT_*` of mmap/mprotect.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Prot {
    /// PROT_READ
    pub read: bool,
    /// PROT_WRITE
    pub write: bool,
    /// PROT_EXEC
    pub exec: bool,
}

impl Prot {
    /// PROT_READ|PROT_WRITE.
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };
    /// PROT_READ.
    pub const R: Prot = Prot {
        read: true,
        write: false,
        exec: false,
    };
    /// PROT_NONE.
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
        exec: false,
    };
}

/// A file in the emulated page cache: an index into `Machine::files` (the
/// page cache itself is `filemap`).
pub type FileId = u32;

/// What backs a VMA.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backing {
    /// Anonymous memory.
    Anon,
    /// A file (page-cache pages); `pgoff` is in pages.
    File {
        /// The file.
        file: FileId,
        /// `vm_pgoff`.
        pgoff: u64,
    },
    /// Device memory mapped with `remap_pfn_range` (VM_IO | VM_PFNMAP).
    Pfnmap {
        /// First frame.
        base: Pfn,
    },
}

/// One `vm_area_struct`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vma {
    /// `vm_start`.
    pub start: VirtAddr,
    /// `vm_end`.
    pub end: VirtAddr,
    /// `vm_flags`.
    pub flags: VmFlags,
    /// What backs it.
    pub backing: Backing,
    /// Name id (for symbolic page names: `name[index]`).
    pub name: u32,
    /// Page index of `start` within the named object (grows-down stacks
    /// decrease it when they extend).
    pub name_base: i64,
}

impl crate::vma_tree::Bounds for Vma {
    fn start(&self) -> u64 {
        self.start.0
    }
    fn end(&self) -> u64 {
        self.end.0
    }
}

/// One `mm_struct`.
#[derive(Clone, Debug)]
pub struct MmStruct {
    /// `mm->pgd`.
    pub pgd: PhysAddr,
    /// VMAs by start address.
    pub vmas: crate::vma_tree::VmaTree<Vma>,
    /// Top of the top-down mmap area (`mm->mmap_base`).
    pub mmap_base: u64,
    /// Whether the mm has been pinned (`MMF_HAS_PINNED`).
    pub has_pinned: bool,
}

/// One task.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Task {
    /// `current->mm`.
    pub mm: MmId,
    /// `addr_limit` (`USER_DS` or `KERNEL_DS`; fixed at `USER_DS` where the
    /// profile has no `set_fs`).
    pub addr_limit: u64,
    /// A fatal signal is pending.
    pub fatal_signal: bool,
    /// The task that forked this one (`real_parent`), if any.
    pub parent: Option<TaskId>,
    /// The task has exited (`do_exit`: its mm is torn down).
    pub exited: bool,
}

/// Default emulated memory: 256 MiB.
pub const DEFAULT_PHYS_SIZE: u64 = 256 << 20;

impl<A: Arch> Machine<A> {
    /// Boots an emulated kernel: physical memory, the zero page, `init_mm`
    /// with the direct map of all memory (kernel-only leaves, the largest leaf
    /// size that fits), the vmalloc top-level slot, the x86 vsyscall page, and
    /// one task with its own mm.
    pub fn new(profile: KernelProfile, phys_size: u64) -> Result<Self, MachineError> {
        let knobs = profile.knobs;
        let layout = A::layout(knobs.family);
        let mut phys = PhysMem::new::<A>(phys_size)?;
        phys.set_refcount_bits(knobs.refcount_bits);
        phys.reserve(Owner::Reserved)
            .ok_or(MachineError::NoMemory)?;
        let zero_pfn = phys.reserve(Owner::Zero).ok_or(MachineError::NoMemory)?;
        let mut tables = pgtable::TableAlloc::new::<A>(&knobs);
        let init_pgd = tables
            .alloc::<A>(&mut phys, None, Level(0))
            .ok_or(MachineError::NoMemory)?;
        let mut m = Self {
            phys,
            profile,
            knobs,
            layout,
            init_pgd,
            mms: Vec::new(),
            tasks: Vec::new(),
            current: TaskId(0),
            files: Vec::new(),
            names: Vec::new(),
            name_ids: std::collections::HashMap::new(),
            events: Vec::new(),
            locks: LockModel::new(),
            zero_pfn,
            huge_zero_pfn: None,
            vsyscall_pfn: None,
            held: Default::default(),
            deferred_tables: Vec::new(),
            lockless_walkers: 0,
            deferred_pages: Vec::new(),
            break_table_deferral: false,
            lockless_max_run: 0,
            leaf_cache: Default::default(),
            uaccess_cache: Default::default(),
            tables,
            vmalloc_next: 0,
            preempt: Default::default(),
            interleave_log: Vec::new(),
            pin_origins: Vec::new(),
            _arch: PhantomData,
        };
        m.map_direct()?;
        // Populate the top-level slot of vmalloc so that (on x86) every pgd
        // copied later shares it, as the kernel's preallocation does.
        pgtable::ensure_slot::<A>(
            &mut m.phys,
            knobs.family,
            init_pgd,
            VirtAddr(layout.vmalloc_start),
            Level(1),
            &mut m.tables,
            None,
        )?;
        if let Some(v) = layout.vsyscall {
            let pfn = m
                .phys
                .reserve(Owner::Vsyscall)
                .ok_or(MachineError::NoMemory)?;
            // PAGE_KERNEL_VVAR: read-only, USER, NX.
            let flags = PteFlags::VALID
                | PteFlags::PRESENT
                | PteFlags::READ
                | PteFlags::USER
                | PteFlags::YOUNG;
            m.set_kernel_leaf(VirtAddr(v), A::leaf_level(), Pte { flags, pfn })?;
            m.vsyscall_pfn = Some(pfn);
        }
        let mm = m.mm_alloc()?;
        m.tasks.push(Task {
            mm,
            addr_limit: layout.user_ds,
            fatal_signal: false,
            parent: None,
            exited: false,
        });
        Ok(m)
    }

    fn set_kernel_leaf(&mut self, va: VirtAddr, level: Level, pte: Pte) -> Result<(), MapError> {
        pgtable::set_leaf::<A>(
            &mut self.phys,
            self.knobs.family,
            self.init_pgd,
            va,
            level,
            pte,
            &mut self.tables,
            None,
        )
        .map(|_| ())
    }

    /// The kernel's direct map: all of physical memory at `PAGE_OFFSET`.
    fn map_direct(&mut self) -> Result<(), MachineError> {
        let flags = PteFlags::VALID
            | PteFlags::PRESENT
            | PteFlags::READ
            | PteFlags::WRITE
            | PteFlags::YOUNG
            | PteFlags::DIRTY;
        let size = self.phys.size();
        let mut pa = 0u64;
        while pa < size {
            let level = (1..A::levels() as u8)
                .map(Level)
                .find(|&l| {
                    let span = A::entry_span(l);
                    A::geom(l).leaf_ok && pa.is_multiple_of(span) && pa + span <= size
                })
                .unwrap_or(A::leaf_level());
            let va = VirtAddr(self.layout.page_offset + pa);
            let pfn = PhysAddr(pa).pfn(A::PAGE_SHIFT);
            self.set_kernel_leaf(va, level, Pte { flags, pfn })?;
            pa += A::entry_span(level);
        }
        Ok(())
    }

    /// `mm_alloc()` + `pgd_alloc()`: a new address space. On x86 the kernel
    /// half of the pgd (slots `pgd_index(PAGE_OFFSET)`..) is copied from
    /// `swapper_pg_dir` (`pgd_ctor`); arm64 and powerpc keep kernel mappings in
    /// a separate root.
    pub fn mm_alloc(&mut self) -> Result<MmId, MachineError> {
        let id = MmId(self.mms.len() as u32);
        let pgd = self
            .tables
            .alloc::<A>(&mut self.phys, Some(id), Level(0))
            .ok_or(MachineError::NoMemory)?;
        if A::SHARED_KERNEL_PGD {
            let first = A::pgd_index(VirtAddr(self.layout.page_offset));
            for i in first..A::entries(Level(0)) {
                let raw = self.phys.read_entry(self.init_pgd.add(i as u64 * 8))?;
                self.phys.write_entry(pgd.add(i as u64 * 8), raw)?;
            }
        }
        self.mms.push(MmStruct {
            pgd,
            vmas: crate::vma_tree::VmaTree::new(),
            mmap_base: self.layout.task_size_max.min(1 << 46) - (256 << 20),
            has_pinned: false,
        });
        Ok(MmId(self.mms.len() as u32 - 1))
    }

    /// Adds a task running in `mm`; returns its id.
    pub fn new_task(&mut self, mm: MmId) -> TaskId {
        self.tasks.push(Task {
            mm,
            addr_limit: self.layout.user_ds,
            fatal_signal: false,
            parent: None,
            exited: false,
        });
        TaskId(self.tasks.len() as u32 - 1)
    }

    /// The running task.
    #[must_use]
    pub fn task(&self) -> &Task {
        &self.tasks[self.current.0 as usize]
    }
    /// `current->mm`.
    #[must_use]
    pub fn current_mm(&self) -> MmId {
        self.task().mm
    }
    /// An mm.
    #[must_use]
    pub fn mm(&self, id: MmId) -> &MmStruct {
        &self.mms[id.0 as usize]
    }
    pub(crate) fn mm_mut(&mut self, id: MmId) -> &mut MmStruct {
        &mut self.mms[id.0 as usize]
    }
    /// The roots for walks in `mm`.
    #[must_use]
    pub fn roots(&self, mm: MmId) -> Roots {
        Roots {
            mm: self.mm(mm).pgd,
            kernel: self.init_pgd,
        }
    }
    /// The family.
    #[must_use]
    pub fn family(&self) -> Family {
        self.knobs.family
    }

    /// Records an event.
    pub fn event(&mut self, kind: EventKind, detail: impl Into<String>) {
        self.events.push(Event {
            kind,
            detail: detail.into(),
        });
    }

    /// Interns a name for symbolic page names.
    pub fn intern(&mut self, name: &str) -> u32 {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::hash::DefaultHasher::new();
        name.hash(&mut h);
        let h = h.finish();
        if let Some(&i) = self.name_ids.get(&h) {
            if self.names[i as usize] == name {
                return i;
            }
            // Two names with one hash: the first keeps the slot, the
            // others are found by a scan.
            if let Some(i) = self.names.iter().position(|n| n == name) {
                return i as u32;
            }
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.name_ids.entry(h).or_insert(id);
        id
    }

    /// The name behind an id from [`Machine::intern`] (a mapping's, a
    /// file's or a kernel buffer's).
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// The shared zero page (`ZERO_PAGE(0)`).
    pub fn zero_pfn(&self) -> Pfn {
        self.zero_pfn
    }

    /// `set_fs(KERNEL_DS)` (true) or `set_fs(USER_DS)`; returns the previous
    /// limit. Without `set_fs` in the profile the limit stays `USER_DS`.
    pub fn set_fs(&mut self, kernel_ds: bool) -> u64 {
        let l = if kernel_ds && self.knobs.set_fs {
            self.layout.kernel_ds
        } else {
            self.layout.user_ds
        };
        let t = &mut self.tasks[self.current.0 as usize];
        std::mem::replace(&mut t.addr_limit, l)
    }
    /// Restores a limit saved by [`Machine::set_fs`].
    pub fn restore_fs(&mut self, old: u64) {
        self.tasks[self.current.0 as usize].addr_limit = old;
    }
    /// Whether the current task runs under `KERNEL_DS`.
    #[must_use]
    pub fn under_kernel_ds(&self) -> bool {
        self.knobs.set_fs && self.task().addr_limit == self.layout.kernel_ds
    }

    /// Direct-map address of a frame (`page_address` / `__va`).
    #[must_use]
    pub fn page_address(&self, pfn: Pfn) -> VirtAddr {
        VirtAddr(self.layout.page_offset + (pfn.0 << A::PAGE_SHIFT))
    }

    /// Allocates `pages` kernel pages named `name` (as `alloc_pages` would)
    /// and returns their frames; their direct-map addresses are contiguous
    /// when `contiguous` (a high-order allocation split into pages).
    pub fn alloc_kernel_pages(&mut self, name: &str, pages: u32) -> Result<Vec<Pfn>, MachineError> {
        let id = self.intern(name);
        let mut out = Vec::with_capacity(pages as usize);
        for index in 0..pages {
            let p = self
                .phys
                .alloc(0, Owner::Kernel { name: id, index })
                .ok_or(MachineError::NoMemory)?;
            out.push(p);
        }
        Ok(out)
    }

    /// `find_vma(mm, addr)`: the first VMA with `end > addr`.
    #[must_use]
    pub fn find_vma(&self, mm: MmId, addr: VirtAddr) -> Option<Vma> {
        // VMAs are disjoint and ordered, so their ends are too: the first
        // ending above `addr` contains it or is the next one (O(log n)).
        let vmas = &self.mm(mm).vmas;
        vmas.range(..=addr.0)
            .next_back()
            .filter(|(_, v)| v.end > addr)
            .or_else(|| vmas.range(addr.0.saturating_add(1)..).next())
            .map(|(_, v)| *v)
    }

    /// The VMA containing `addr`.
    #[must_use]
    pub fn vma_at(&self, mm: MmId, addr: VirtAddr) -> Option<Vma> {
        self.mm(mm)
            .vmas
            .range(..=addr.0)
            .next_back()
            .map(|(_, v)| *v)
            .filter(|v| v.end > addr)
    }

    /// `vm_get_page_prot`: the leaf flags for a VMA's protection (writable
    /// only where `write` is also asked for, as faults decide).
    pub(crate) fn leaf_flags(family: Family, flags: VmFlags, write: bool) -> PteFlags {
        let mut f = PteFlags::VALID | PteFlags::PRESENT | PteFlags::LEAF | PteFlags::YOUNG;
        let r = flags.contains(VmFlags::VM_READ);
        let w = flags.contains(VmFlags::VM_WRITE) && write;
        let x = flags.contains(VmFlags::VM_EXEC);
        if !r && !flags.contains(VmFlags::VM_WRITE) && !x {
            // PROT_NONE
            return PteFlags::PRESENT | PteFlags::PROTNONE | PteFlags::LEAF | PteFlags::YOUNG;
        }
        if r || flags.contains(VmFlags::VM_WRITE) {
            f |= PteFlags::READ | PteFlags::USER;
        } else {
            f |= A::exec_only_prot(family);
        }
        if x {
            f |= PteFlags::EXEC;
        }
        if w {
            f |= PteFlags::WRITE | PteFlags::DIRTY;
        } else {
            f = A::pte_wrprotect(f);
        }
        f
    }

    /// Installs a user leaf in `mm`.
    pub(crate) fn set_user_leaf(
        &mut self,
        mm: MmId,
        va: VirtAddr,
        level: Level,
        pte: Pte,
    ) -> Result<Pte, MapError> {
        let pgd = self.mm(mm).pgd;
        pgtable::set_leaf::<A>(
            &mut self.phys,
            self.knobs.family,
            pgd,
            va,
            level,
            pte,
            &mut self.tables,
            Some(mm),
        )
    }

    /// Frees table pages now, or defers them while a lockless walker is inside
    /// its IRQ-off section (`tlb_remove_table`).
    pub(crate) fn free_tables(&mut self, tables: Vec<PhysAddr>) {
        self.deferred_tables.extend(tables);
        if self.lockless_walkers == 0 || self.break_table_deferral {
            self.flush_deferred_tables();
        }
    }

    /// Frees the deferred tables (poisoned first, so that a walker still
    /// reading one is caught; a fragment counted down and its page freed
    /// with the last one: `TableAlloc::free`) and the deferred page
    /// references.
    pub(crate) fn flush_deferred_tables(&mut self) {
        for t in std::mem::take(&mut self.deferred_tables) {
            self.tables
                .free::<A>(&mut self.phys, t, pgtable::TABLE_POISON_BYTE);
        }
        for p in std::mem::take(&mut self.deferred_pages) {
            if self.phys.put_page(p, 1).is_err() {
                self.event(
                    EventKind::RefUnderflow,
                    format!("deferred put of {} found no reference", self.page_name(p)),
                );
            }
        }
    }

    /// Lockless walkers currently inside their IRQ-off section.
    #[must_use]
    pub fn lockless_walker_count(&self) -> u32 {
        self.lockless_walkers
    }

    /// Table pages waiting for lockless walkers to leave.
    #[must_use]
    pub fn deferred_table_count(&self) -> usize {
        self.deferred_tables.len()
    }

    /// The symbolic name a page had under `page` (its `struct page`, e.g.
    /// as it was before a free).
    #[must_use]
    pub fn owner_name(&self, pfn: Pfn, page: &crate::phys::Page) -> String {
        self.frame_name(pfn, page.owner, 0)
    }

    /// Symbolic name of a frame: `buf[3]`, `file:f[0]`, `kdirect[17]`,
    /// `ZERO`, `vsyscall`, `pt:L1#4`.
    #[must_use]
    pub fn page_name(&self, pfn: Pfn) -> String {
        self.key_name(self.page_name_key(pfn))
    }

    /// What [`Machine::page_name`] of `pfn` is made of now, without
    /// formatting it (no allocation): [`Machine::key_name`] turns it into
    /// the same name later, whatever the frame became in between (mapping
    /// names are never removed). For records that may be dropped unread.
    #[must_use]
    pub fn page_name_key(&self, pfn: Pfn) -> PageNameKey {
        if !self.phys.pfn_valid(pfn) {
            return PageNameKey {
                pfn,
                owner: None,
                sub: 0,
            };
        }
        let head = self.phys.compound_head(pfn);
        PageNameKey {
            pfn,
            owner: Some(self.phys.page(head).owner),
            sub: pfn.0 - head.0,
        }
    }

    /// The name a [`PageNameKey`] stands for.
    #[must_use]
    pub fn key_name(&self, k: PageNameKey) -> String {
        match k.owner {
            None => format!("pfn[{:#x}]", k.pfn.0),
            Some(owner) => self.frame_name(k.pfn, owner, k.sub),
        }
    }

    /// Symbolic name of the table at `table`: its page's name (`pt:L3#7`)
    /// and, where that page is cut into page-table fragments, the
    /// fragment's index in it (`pt:L3#7.2`).
    #[must_use]
    pub fn table_name(&self, table: PhysAddr) -> String {
        let name = self.page_name(table.pfn(A::PAGE_SHIFT));
        match self.tables.frag_index::<A>(table) {
            Some(i) => format!("{name}.{i}"),
            None => name,
        }
    }

    /// The name of frame `pfn`, page `sub` of a compound page whose head has
    /// `owner`.
    fn frame_name(&self, pfn: Pfn, owner: Owner, sub: u64) -> String {
        let name = |i: u32| self.names.get(i as usize).map_or("?", String::as_str);
        match owner {
            Owner::Zero => "ZERO".to_string(),
            Owner::HugeZero => "HUGE_ZERO".to_string(),
            Owner::Vsyscall => "vsyscall".to_string(),
            Owner::PageTable { level, seq } => format!("pt:L{level}#{seq}"),
            // A grown-down stack has pages below its original start: index < 0.
            Owner::Anon { name: n, index } => {
                format!("{}[{}]", name(n), i64::from(index as i32) + sub as i64)
            }
            Owner::File { file, index } => {
                format!("file:{}[{}]", name(file), index + sub)
            }
            Owner::Kernel { name: n, index } => format!("{}[{}]", name(n), u64::from(index) + sub),
            Owner::Free | Owner::Reserved => format!("kdirect[{}]", pfn.0),
        }
    }
}

/// A page's symbolic name captured unformatted ([`Machine::page_name_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageNameKey {
    pfn: Pfn,
    /// The compound head's owner; `None` for a pfn outside memory.
    owner: Option<Owner>,
    /// Index of the page in its compound page.
    sub: u64,
}

/// Rounds `len` up to whole pages of `A`.
pub(crate) fn page_align<A: Arch>(len: u64) -> Option<u64> {
    len.checked_add(A::PAGE_SIZE - 1)
        .map(|l| l & !(A::PAGE_SIZE - 1))
}

impl<A: Arch> Machine<A> {
    /// The physical address a kernel virtual address maps to in `init_mm`
    /// (direct map, vmalloc), or `None` if it is not mapped.
    #[must_use]
    pub fn kernel_pa(&self, va: VirtAddr) -> Option<PhysAddr> {
        let roots = Roots {
            mm: self.init_pgd,
            kernel: self.init_pgd,
        };
        pgtable::walk::<A>(
            &self.phys,
            self.family(),
            roots,
            va,
            pgtable::RootSel::Software,
            |_| {},
        )
        .ok()
        .map(|t| t.pa)
    }

    /// `vmap(pages)`: maps frames at consecutive addresses of the vmalloc
    /// area of `init_mm` (kernel read/write leaves) and returns the start.
    pub fn vmap(&mut self, pages: &[Pfn]) -> Result<VirtAddr, MachineError> {
        let start = VirtAddr(self.layout.vmalloc_start + self.vmalloc_next);
        let flags = PteFlags::VALID
            | PteFlags::PRESENT
            | PteFlags::READ
            | PteFlags::WRITE
            | PteFlags::YOUNG
            | PteFlags::DIRTY;
        for (i, &pfn) in pages.iter().enumerate() {
            let va = VirtAddr(start.0 + i as u64 * A::PAGE_SIZE);
            self.set_kernel_leaf(va, A::leaf_level(), Pte { flags, pfn })?;
        }
        // Leave a guard page between areas, as vmalloc does.
        self.vmalloc_next += (pages.len() as u64 + 1) * A::PAGE_SIZE;
        Ok(start)
    }
}

impl<A: Arch> Machine<A> {}
