//! Two emulated tasks with a chosen interleaving, for the races of the
//! known-bugs replays (Dirty COW): a second task's `madvise(MADV_DONTNEED)`
//! runs at one of the retry points of `__get_user_pages` (a preemption
//! hook, `crate::preempt`) (the walk of a page
//! that follows a `faultin_page`), and the `/proc/pid/mem` write path
//! (`mem_rw` → `access_remote_vm`) that races with it. For Huge Dirty COW
//! (CVE-2017-1000405) the second task also reads the range back in and
//! reads it through `/proc/pid/mem` (a FOLL_TOUCH gup of the huge zero PMD).

use vmemu_arch::{Arch, Pfn, VirtAddr};

use crate::errno::Errno;
use crate::event::EventKind;
use crate::gup::GupFlags;
use crate::mm::{Backing, Machine, VmFlags};
use crate::phys::{Owner, PageFlags};
use crate::preempt::{Preempt, PreemptPoint};
use crate::sync::{MmId, TaskId};

/// A step of a second task, run when gup is about to walk a page for the
/// `before_walk`-th time (1 = the first walk, 2 = the walk after the first
/// `faultin_page`, ...). Runs once: an instance of the preemption hook
/// ([`Preempt`]) at the slow path's retry point.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GupInterleave {
    /// The walk number before which the step runs.
    pub before_walk: u32,
    /// The task running the step (it shares the mm).
    pub task: TaskId,
    /// `madvise(addr, len, MADV_DONTNEED)` in this mm.
    pub mm: MmId,
    /// Start of the range.
    pub addr: VirtAddr,
    /// Length.
    pub len: u64,
    /// After the zap, a read of the byte at `addr` (a read fault) and a
    /// one-byte `/proc/pid/mem` read there (`access_remote_vm` without
    /// FOLL_WRITE: a FOLL_TOUCH walk).
    pub touch: bool,
}

impl<A: Arch> Preempt<A> for GupInterleave {
    fn preempt(&mut self, m: &mut Machine<A>, at: PreemptPoint) -> bool {
        match at {
            PreemptPoint::GupRetry { walk, .. } if walk == self.before_walk => {
                m.run_interleaved_dontneed(self, walk);
                false
            }
            _ => true,
        }
    }

    fn unfired(&self) -> Option<String> {
        Some(format!(
            "task {} never ran: gup did not reach walk {}",
            self.task.0, self.before_walk
        ))
    }
}

impl<A: Arch> Machine<A> {
    /// Arms `madvise(addr, len, MADV_DONTNEED)` by a new task sharing the
    /// current mm, to run before walk number `before_walk` of the next gup
    /// (0 disarms).
    pub fn interleave_dontneed(&mut self, addr: VirtAddr, len: u64, before_walk: u32) {
        self.arm_interleave(addr, len, before_walk, false);
    }

    /// As [`Machine::interleave_dontneed`], and after the zap the second
    /// task reads the byte at `addr` (faulting it back in) and reads it once
    /// more through `/proc/pid/mem` (LTP thp04's second thread).
    pub fn interleave_dontneed_touch(&mut self, addr: VirtAddr, len: u64, before_walk: u32) {
        self.arm_interleave(addr, len, before_walk, true);
    }

    fn arm_interleave(&mut self, addr: VirtAddr, len: u64, before_walk: u32, touch: bool) {
        if before_walk == 0 {
            self.set_preempt_hook(None);
            return;
        }
        let mm = self.current_mm();
        let task = self.new_task(mm);
        self.set_preempt_hook(Some(Box::new(GupInterleave {
            before_walk,
            task,
            mm,
            addr,
            len,
            touch,
        })));
    }

    /// The armed step of the other task, run at the retry point before walk
    /// `walk` of a page.
    fn run_interleaved_dontneed(&mut self, h: &GupInterleave, walk: u32) {
        let me = self.current;
        self.current = h.task;
        // MADV_DONTNEED takes mmap_sem for read only, so it runs while the
        // gup task holds it for read too.
        let r = match self.mmap_read_lock(h.mm) {
            Ok(()) => {
                let r = self.madvise_dontneed(h.mm, h.addr, h.len);
                self.mmap_read_unlock(h.mm);
                r
            }
            Err(e) => Err(e),
        };
        let shown = |r: Result<u64, Errno>| match r {
            Ok(v) => v.to_string(),
            Err(e) => e.to_string(),
        };
        let touched = if h.touch {
            // A user read (a read fault maps what a fresh fault maps), then
            // a /proc/pid/mem read of the same byte.
            let b = self.get_user(h.addr, 1);
            let mut one = [0u8];
            let n = self.access_remote_vm_read(h.mm, h.addr, &mut one);
            format!(
                "; read({}) = {}; access_remote_vm({}, 1, FOLL_FORCE) = {}",
                h.addr,
                shown(b),
                h.addr,
                shown(n)
            )
        } else {
            String::new()
        };
        self.current = me;
        self.interleave_log.push(format!(
            "task {} ran madvise({}, {:#x}, MADV_DONTNEED) before gup walk {walk}: {}{touched}",
            h.task.0,
            h.addr,
            h.len,
            shown(r.map(|()| 0)),
        ));
    }

    /// `mem_rw` of a read of `/proc/pid/mem` at `addr`: `access_remote_vm`
    /// with FOLL_FORCE, page by page under `mmap_sem` (read):
    /// `get_user_pages_remote` of one page (which adds FOLL_TOUCH), copy
    /// out through the kernel mapping, `put_page`. Returns the bytes read,
    /// or EIO if none were.
    pub fn access_remote_vm_read(
        &mut self,
        mm: MmId,
        addr: VirtAddr,
        buf: &mut [u8],
    ) -> Result<u64, Errno> {
        let mut done = 0u64;
        let len = buf.len() as u64;
        self.mmap_read_lock(mm)?;
        while done < len {
            let cur = addr.wrapping_add(done);
            let off = cur.offset_in(A::PAGE_SIZE);
            let n = (A::PAGE_SIZE - off).min(len - done);
            let mut pages: Vec<Pfn> = Vec::new();
            let r = self.get_user_pages_remote(mm, cur, 1, GupFlags::FOLL_FORCE, &mut pages);
            let Some(&page) = pages.first().filter(|_| matches!(r, Ok(1))) else {
                break;
            };
            let pa = page.addr(A::PAGE_SHIFT).add(off);
            let _ = self
                .phys
                .read(pa, &mut buf[done as usize..(done + n) as usize]);
            let _ = self.put_page(page);
            done += n;
        }
        self.mmap_read_unlock(mm);
        if done == 0 { Err(Errno::EIO) } else { Ok(done) }
    }

    /// `mem_rw` of a write to `/proc/pid/mem` at `addr`: `access_remote_vm`
    /// with `FOLL_FORCE|FOLL_WRITE`, page by page under `mmap_sem` (read):
    /// `get_user_pages_remote` of one page, copy into it through the kernel
    /// mapping, `set_page_dirty_lock`, `put_page`. Returns the bytes
    /// written, or the error if none were.
    ///
    /// A write that lands in a page-cache page of a mapping the writer may
    /// not write to the file through (not `VM_SHARED`) raises
    /// `page_cache_corrupted`.
    pub fn access_remote_vm_write(
        &mut self,
        mm: MmId,
        addr: VirtAddr,
        data: &[u8],
    ) -> Result<u64, Errno> {
        let mut done = 0u64;
        let len = data.len() as u64;
        self.mmap_read_lock(mm)?;
        while done < len {
            let cur = addr.wrapping_add(done);
            let off = cur.offset_in(A::PAGE_SIZE);
            let n = (A::PAGE_SIZE - off).min(len - done);
            let mut pages: Vec<Pfn> = Vec::new();
            let r = self.get_user_pages_remote(
                mm,
                cur,
                1,
                GupFlags::FOLL_FORCE | GupFlags::FOLL_WRITE,
                &mut pages,
            );
            let Some(&page) = pages.first().filter(|_| matches!(r, Ok(1))) else {
                break;
            };
            self.check_forced_write(mm, cur, page);
            let pa = page.addr(A::PAGE_SHIFT).add(off);
            let chunk = &data[done as usize..(done + n) as usize];
            let _ = self.phys.write(pa, chunk);
            // set_page_dirty_lock
            let head = self.phys.compound_head(page);
            self.phys.page_mut(head).flags |= PageFlags::DIRTY;
            let _ = self.put_page(page);
            done += n;
        }
        self.mmap_read_unlock(mm);
        // The other task's step belongs to this call only.
        if let Some(line) = self.take_unfired_hook() {
            self.interleave_log.push(line);
        }
        if done == 0 { Err(Errno::EIO) } else { Ok(done) }
    }

    /// The data-integrity check of a FOLL_FORCE write: the page gup returned
    /// must not be the file's page-cache page unless the VMA is shared.
    fn check_forced_write(&mut self, mm: MmId, addr: VirtAddr, page: Pfn) {
        let head = self.phys.compound_head(page);
        let Owner::File { .. } = self.phys.page(head).owner else {
            return;
        };
        let Some(vma) = self.vma_at(mm, addr) else {
            return;
        };
        if vma.flags.contains(VmFlags::VM_SHARED) || !matches!(vma.backing, Backing::File { .. }) {
            return;
        }
        let name = self.page_name(page);
        self.event(
            EventKind::PageCacheCorrupted,
            format!(
                "a FOLL_FORCE write through the read-only private mapping at {addr} lands in {name}, the file's page-cache page"
            ),
        );
    }

    /// Reads `buf.len()` bytes of `file` at `pos` through the page cache
    /// (what `read(2)` of the file returns; reads pages in if needed).
    pub fn file_read(&mut self, file: u32, pos: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            let p = pos + done as u64;
            let (page, _) = self
                .find_or_read_page(file, p / A::PAGE_SIZE)
                .ok_or(Errno::ENOMEM)?;
            let off = p % A::PAGE_SIZE;
            let n = ((A::PAGE_SIZE - off) as usize).min(buf.len() - done);
            self.phys
                .read(page.addr(A::PAGE_SHIFT).add(off), &mut buf[done..done + n])
                .map_err(|_| Errno::EIO)?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use vmemu_arch::{Arch, Arm64, Ppc64, X86_64};

    use crate::event::EventKind;
    use crate::mm::{Backing, FileOps, Machine, Prot};
    use crate::profile::KernelProfile;
    use crate::vma::MapFlags;

    /// The Dirty COW interleaving: returns the file byte at the write's
    /// offset afterwards and whether `page_cache_corrupted` was raised.
    fn dirtycow<A: Arch>(kernel: &str, before_walk: u32) -> (u8, bool) {
        let mut m = Machine::<A>::new(KernelProfile::parse(kernel).unwrap(), 64 << 20).unwrap();
        let f = m.create_file("f", A::PAGE_SIZE, FileOps::default());
        let mm = m.current_mm();
        let ro = Prot {
            read: true,
            write: false,
            exec: false,
        };
        let a = m
            .mmap(
                mm,
                None,
                A::PAGE_SIZE,
                ro,
                MapFlags::default(),
                Backing::File { file: f, pgoff: 0 },
                "m",
            )
            .unwrap();
        m.interleave_dontneed(a, A::PAGE_SIZE, before_walk);
        assert_eq!(
            m.access_remote_vm_write(mm, a.wrapping_add(64), &[0xee; 8]),
            Ok(8)
        );
        let mut b = [0u8];
        m.file_read(f, 64, &mut b).unwrap();
        let hit = m
            .events
            .iter()
            .any(|e| e.kind == EventKind::PageCacheCorrupted);
        (b[0], hit)
    }

    fn all_arches(kernel: &str, before_walk: u32) -> Vec<(u8, bool)> {
        vec![
            dirtycow::<X86_64>(kernel, before_walk),
            dirtycow::<Arm64>(kernel, before_walk),
            dirtycow::<Ppc64>(kernel, before_walk),
        ]
    }

    #[test]
    fn dirtycow_window_writes_the_file_before_the_fix() {
        // Walk 3 follows the wp fault that dropped FOLL_WRITE.
        assert!(
            all_arches("v4.10+dirtycow", 3)
                .iter()
                .all(|r| *r == (0xee, true))
        );
        // Outside the window, or with no race, the private copy takes it.
        for w in [0, 1, 2, 4] {
            assert!(
                all_arches("v4.10+dirtycow", w)
                    .iter()
                    .all(|r| *r == (64, false))
            );
        }
    }

    #[test]
    fn dirtycow_fixed_profiles_never_write_the_file() {
        for k in ["v4.10", "v4.17", "v6.13"] {
            for w in 0..=5 {
                assert!(
                    all_arches(k, w).iter().all(|r| *r == (64, false)),
                    "{k} walk {w}"
                );
            }
        }
    }

    /// Huge Dirty COW (LTP thp04): returns the byte a second huge-zero-backed
    /// mapping reads afterwards and whether `zero_page_corrupted` was raised.
    fn huge_dirtycow<A: Arch>(kernel: &str, before_walk: u32) -> (u8, bool) {
        use vmemu_arch::Level;
        let mut m = Machine::<A>::new(KernelProfile::parse(kernel).unwrap(), 256 << 20).unwrap();
        let mm = m.current_mm();
        let pmd = A::entry_span(Level(A::levels() as u8 - 2));
        let ro = Prot {
            read: true,
            write: false,
            exec: false,
        };
        let huge = MapFlags {
            hugepage: true,
            ..MapFlags::default()
        };
        let region = |m: &mut Machine<A>, name: &str| {
            let a = m
                .mmap(mm, None, 2 * pmd, ro, huge, Backing::Anon, name)
                .unwrap();
            let r = vmemu_arch::VirtAddr((a.0 + pmd - 1) & !(pmd - 1));
            assert_eq!(m.get_user(r, 1), Ok(0));
            r
        };
        let r = region(&mut m, "r");
        let z = region(&mut m, "z");
        m.interleave_dontneed_touch(r, pmd, before_walk);
        assert_eq!(
            m.access_remote_vm_write(mm, r.wrapping_add(64), &[0xee; 8]),
            Ok(8)
        );
        let b = m.get_user(z.wrapping_add(64), 1).unwrap() as u8;
        let hit = m
            .events
            .iter()
            .any(|e| e.kind == EventKind::ZeroPageCorrupted);
        assert_eq!(
            m.check_invariants().is_err(),
            b != 0,
            "{kernel} {before_walk}"
        );
        (b, hit)
    }

    #[test]
    fn huge_dirtycow_writes_the_huge_zero_page_on_v4_10_only() {
        for w in 0..=4 {
            let want = if w == 2 { (0xee, true) } else { (0, false) };
            assert_eq!(huge_dirtycow::<X86_64>("v4.10", w), want, "walk {w}");
            assert_eq!(huge_dirtycow::<Arm64>("v4.10", w), want, "walk {w}");
            assert_eq!(huge_dirtycow::<Ppc64>("v4.10", w), want, "walk {w}");
            for k in ["v4.17", "v6.13"] {
                assert_eq!(huge_dirtycow::<X86_64>(k, w), (0, false), "{k} walk {w}");
                assert_eq!(huge_dirtycow::<Arm64>(k, w), (0, false), "{k} walk {w}");
                assert_eq!(huge_dirtycow::<Ppc64>(k, w), (0, false), "{k} walk {w}");
            }
        }
    }

    /// The huge zero page outside the race: a read fault of a whole aligned
    /// PMD in a `huge` VMA maps it (shared by every such mapping, no
    /// reference per mapping); a zap of part of it splits the PMD into
    /// small zero ptes; a read that does not cover a whole PMD maps the
    /// small zero page; and the checker flags a huge zero page that is not
    /// zero by itself.
    #[test]
    fn huge_zero_page_mapping_split_and_check() {
        use vmemu_arch::{Level, VirtAddr};
        fn run<A: Arch>() {
            let mut m =
                Machine::<A>::new(KernelProfile::parse("v4.10").unwrap(), 64 << 20).unwrap();
            let mm = m.current_mm();
            let pmd = A::entry_span(Level(A::levels() as u8 - 2));
            let ro = Prot {
                read: true,
                write: false,
                exec: false,
            };
            let huge = MapFlags {
                hugepage: true,
                ..MapFlags::default()
            };
            let a = m
                .mmap(
                    mm,
                    Some(VirtAddr(4 * pmd)),
                    pmd,
                    ro,
                    huge,
                    Backing::Anon,
                    "a",
                )
                .unwrap();
            let b = m
                .mmap(
                    mm,
                    Some(VirtAddr(8 * pmd)),
                    pmd,
                    ro,
                    huge,
                    Backing::Anon,
                    "b",
                )
                .unwrap();
            let c = m
                .mmap(
                    mm,
                    Some(VirtAddr(12 * pmd)),
                    pmd / 2,
                    ro,
                    huge,
                    Backing::Anon,
                    "c",
                )
                .unwrap();
            for x in [a, b, c] {
                assert_eq!(m.get_user(x.wrapping_add(8), 1), Ok(0));
            }
            let name = |m: &Machine<A>, x: VirtAddr| {
                m.page_name(m.user_pa(mm, x).unwrap().pfn(A::PAGE_SHIFT))
            };
            assert_eq!(name(&m, a), "HUGE_ZERO");
            assert_eq!(name(&m, b.wrapping_add(A::PAGE_SIZE)), "HUGE_ZERO");
            assert_eq!(name(&m, c), "ZERO");
            let hz = m.huge_zero_pfn.unwrap();
            assert_eq!(m.phys.page(hz).refcount, 1);
            assert_eq!(m.phys.page(hz).mapcount, 0);
            m.check_invariants().unwrap();
            // Zapping one page splits the PMD: small zero ptes around it.
            m.madvise_dontneed(mm, a, A::PAGE_SIZE).unwrap();
            assert_eq!(name(&m, a.wrapping_add(A::PAGE_SIZE)), "ZERO");
            assert!(m.user_pa(mm, a).is_none());
            assert_eq!(name(&m, b), "HUGE_ZERO");
            m.check_invariants().unwrap();
            // A byte in the huge zero page shows through b, and the checker
            // names it.
            m.phys.write(hz.addr(A::PAGE_SHIFT).add(8), &[7]).unwrap();
            assert_eq!(m.get_user(b.wrapping_add(8), 1), Ok(7));
            let errs = m.check_invariants().unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.contains("huge zero page is not zero")),
                "{errs:?}"
            );
        }
        run::<X86_64>();
        run::<Arm64>();
        run::<Ppc64>();
    }
}
