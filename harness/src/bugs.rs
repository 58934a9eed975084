//! Statements for the known-bugs replays (Dirty COW, Dirty Pipe, GUP pins
//! vs fork; `fork` and `exit` are with the process syscalls in
//! `syscalls.rs`):
//!
//! | statement | what it does |
//! |---|---|
//! | `interleave_dontneed(m, LEN, WALK)` | a second task (same mm) runs `madvise(m, LEN, MADV_DONTNEED)` at the retry point of the next gup, before its walk number WALK of a page (1 = first walk; 0 disarms) |
//! | `w = access_remote_vm(m, LEN, FOLL_WRITE\|FOLL_FORCE)` | the `/proc/pid/mem` write: `mem_rw` → `access_remote_vm` writes LEN bytes (1, 2, 3, ... as `copy_to_user` does) page by page through `get_user_pages_remote` |
//! | `n = access_remote_vm(m, LEN, FOLL_FORCE)` | the `/proc/pid/mem` read: LEN bytes page by page through `get_user_pages_remote` (which adds FOLL_TOUCH); bytes read, or `-EIO` |
//! | `interleave_dontneed_touch(m, LEN, WALK)` | as `interleave_dontneed`, and after the zap the second task reads the byte at `m` (a read fault) and reads it again through `/proc/pid/mem` (LTP thp04's second thread, Huge Dirty COW) |
//! | `b = file_byte(f, POS)` | the byte of file `f` at POS as `read(2)` sees it (through the page cache) |
//! | `s = splice_read(f, POS, p, LEN)` | `splice(f, &POS, p, NULL, LEN, 0)`: file → pipe through the pipe iterator (`generic_file_splice_read`; a `proc` file has no `->splice_read`: `default_file_splice_read`, 6.x `-EINVAL`) |
//! | `t = tee(a, b, LEN)` | `tee(a, b, LEN, SPLICE_F_NONBLOCK)` (`do_tee` → `link_pipe`): duplicates the buffers of pipe `a` into pipe `b` with `pipe_buf_get`; bytes, or `-EFAULT` when the first `pipe_buf_get` fails (5.1+), `-EAGAIN`, `-EPIPE`, `-EINVAL` |
//! | `c = page_ref_count(ADDR)` | `page_ref_count()` of the page mapped at user ADDR, read as the kernel does (a signed value of `refcount_bits` bits); `-EFAULT` if nothing is mapped there |
//! | `b = get_user(ADDR)` | `get_user()` of the byte at ADDR (through the fault path): the byte or `-EFAULT` |
//! | `put_user(ADDR, BYTE)` | `put_user()` of one byte at ADDR: 0 or `-EFAULT` |
//! | `n = memset(ADDR, BYTE, LEN)` | the current process stores BYTE into LEN bytes at ADDR (a user-space `memset`: write faults as `copy_to_user` takes them); bytes not stored |
//! | `b = page_byte(r, I, OFF)` | byte OFF of page I of gup result `r` through the kernel's direct map: what the holder of the pin or reference (a device, io_uring) sees |

use vmemu_arch::{Arch, VirtAddr};
use vmemu_mm::{Errno, GupFlags};

use crate::calls::BugCall;
use crate::lang::{Arg, Expr, ScriptError, Stmt};
use crate::run::{Runner, Var, set_err, to_u64};

impl<A: Arch> Runner<'_, A> {
    /// Remembers where the pins of a gup statement at `start` were taken
    /// (anonymous pages only), for `pin_detached`.
    pub(crate) fn note_pins(&mut self, start: VirtAddr, pages: &[vmemu_arch::Pfn]) {
        let m = &mut self.sys.m;
        let mm = m.current_mm();
        let base = start.align_down(A::PAGE_SIZE);
        for (i, &p) in pages.iter().enumerate() {
            let head = m.phys.compound_head(p);
            if head == m.zero_pfn()
                || !matches!(m.phys.page(head).owner, vmemu_mm::phys::Owner::Anon { .. })
            {
                continue;
            }
            m.note_pin(mm, base.wrapping_add(i as u64 * A::PAGE_SIZE), p);
        }
    }

    fn bug_name_arg(&self, s: &Stmt, a: &Arg, what: &str) -> Result<String, ScriptError> {
        match a {
            Arg::Expr(Expr::Name(n, _)) => Ok(n.clone()),
            _ => Err(self.err(s.span, format!("expected {what} name"))),
        }
    }

    fn file_arg(&self, s: &Stmt, a: &Arg) -> Result<u32, ScriptError> {
        let n = self.bug_name_arg(s, a, "a file")?;
        self.files
            .get(&n)
            .copied()
            .ok_or_else(|| self.err(s.span, format!("undefined file `{n}`")))
    }

    /// Runs a known-bug statement.
    pub(crate) fn exec_bug_call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        call: BugCall,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let mut r = self.record(s, func);
        let seen_log = self.sys.m.interleave_log.len();
        let res = match call {
            BugCall::InterleaveDontneed { touch } => {
                self.bug_interleave(s, args, touch, &mut r.detail)?
            }
            BugCall::AccessRemoteVm => self.bug_access_remote_vm(s, args)?,
            BugCall::FileByte | BugCall::SpliceRead => self.bug_file(s, call, args)?,
            BugCall::Tee => self.bug_tee(s, args, &mut r.detail)?,
            BugCall::PageRefCount => self.bug_page_ref_count(s, args, &mut r.detail)?,
            BugCall::GetUser | BugCall::PutUser | BugCall::Memset => {
                self.bug_uaccess(s, call, args)?
            }
            BugCall::PageByte => self.bug_page_byte(s, args)?,
        };
        let log = &self.sys.m.interleave_log[seen_log..];
        if !log.is_empty() {
            r.detail = Some(log.join("; "));
        }
        let ret = match res {
            Ok(v) => {
                r.ret = Some(v as i64);
                v as i64
            }
            Err(e) => {
                set_err(&mut r, e);
                e.to_ret()
            }
        };
        self.push(r);
        if let Some(v) = var {
            self.bind(s, v, Var::ret(ret))?;
        }
        Ok(())
    }

    /// `interleave_dontneed[_touch](m, LEN, WALK)`: arms the second task.
    fn bug_interleave(
        &mut self,
        s: &Stmt,
        args: &[Arg],
        touch: bool,
        detail: &mut Option<String>,
    ) -> Result<Result<u64, Errno>, ScriptError> {
        let addr = VirtAddr(to_u64(self.w, self.expr_arg(&args[0], s)?, s.span)?);
        let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
        let walk = self.expr_arg(&args[2], s)?;
        let walk = u32::try_from(walk)
            .ok()
            .filter(|w| *w <= 64)
            .ok_or_else(|| self.err(s.span, "the walk number must be 0..=64"))?;
        if touch {
            self.sys.m.interleave_dontneed_touch(addr, len, walk);
        } else {
            self.sys.m.interleave_dontneed(addr, len, walk);
        }
        *detail = Some(if walk == 0 {
            "disarmed".into()
        } else if touch {
            format!(
                "armed: a second task zaps the range, reads it and reads it through /proc/pid/mem before gup walk {walk}"
            )
        } else {
            format!("armed: a second task zaps the range before gup walk {walk}")
        });
        Ok(Ok(0))
    }

    /// `access_remote_vm(m, LEN, FLAGS)`: the `/proc/pid/mem` read or write.
    fn bug_access_remote_vm(
        &mut self,
        s: &Stmt,
        args: &[Arg],
    ) -> Result<Result<u64, Errno>, ScriptError> {
        let addr = VirtAddr(to_u64(self.w, self.expr_arg(&args[0], s)?, s.span)?);
        let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
        if len > 1 << 20 {
            return Err(self.err(s.span, "access_remote_vm length must be <= 1M"));
        }
        let flags = self.flags(s, &args[2])?;
        let mm = self.sys.m.current_mm();
        Ok(if flags == GupFlags::FOLL_FORCE {
            let mut buf = vec![0u8; len as usize];
            self.sys.m.access_remote_vm_read(mm, addr, &mut buf)
        } else if flags == GupFlags::FOLL_WRITE | GupFlags::FOLL_FORCE {
            let m = &mut self.sys.m;
            crate::run::pattern::with_pattern(len, |data| m.access_remote_vm_write(mm, addr, data))
        } else {
            return Err(self.err(
                s.span,
                "only the /proc/pid/mem read (FOLL_FORCE) and write (FOLL_WRITE|FOLL_FORCE) are modelled",
            ));
        })
    }

    /// `file_byte(f, POS)` and `splice_read(f, POS, p, LEN)`.
    fn bug_file(
        &mut self,
        s: &Stmt,
        call: BugCall,
        args: &[Arg],
    ) -> Result<Result<u64, Errno>, ScriptError> {
        let f = self.file_arg(s, &args[0])?;
        let mut pos = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
        if call == BugCall::FileByte {
            // A one-byte read(2) at `pos`: rw_verify_area (fs/read_write.c,
            // v4.10 and 6.13.7) rejects a position negative as loff_t, and
            // one where pos + 1 overflows loff_t, with -EINVAL (a regular
            // file has no FMODE_UNSIGNED_OFFSET) before any page-cache
            // lookup.
            if pos >= i64::MAX as u64 {
                return Ok(Err(Errno::EINVAL));
            }
            let mut b = [0u8];
            return Ok(self
                .sys
                .m
                .file_read(f, pos, &mut b)
                .map(|()| u64::from(b[0])));
        }
        let pname = self.bug_name_arg(s, &args[2], "a pipe")?;
        let pipe = *self
            .pipes
            .get(&pname)
            .ok_or_else(|| self.err(s.span, format!("undefined pipe `{pname}`")))?;
        let len = to_u64(self.w, self.expr_arg(&args[3], s)?, s.span)?;
        Ok(self.sys.splice_file_to_pipe(f, &mut pos, pipe, len))
    }

    /// `tee(a, b, LEN)`.
    fn bug_tee(
        &mut self,
        s: &Stmt,
        args: &[Arg],
        detail: &mut Option<String>,
    ) -> Result<Result<u64, Errno>, ScriptError> {
        let a = self.pipe_arg(s, &args[0])?;
        let b = self.pipe_arg(s, &args[1])?;
        let len = to_u64(self.w, self.expr_arg(&args[2], s)?, s.span)?;
        let res = self.sys.tee(a, b, len);
        let (pa, pb) = (&self.sys.pipes[a], &self.sys.pipes[b]);
        *detail = Some(format!(
            "pipes: in {} buffers, out {} buffers",
            pa.nrbufs, pb.nrbufs
        ));
        Ok(res)
    }

    /// `page_ref_count(ADDR)`, read as the kernel reads it.
    fn bug_page_ref_count(
        &mut self,
        s: &Stmt,
        args: &[Arg],
        detail: &mut Option<String>,
    ) -> Result<Result<u64, Errno>, ScriptError> {
        let addr = VirtAddr(to_u64(self.w, self.expr_arg(&args[0], s)?, s.span)?);
        let m = &self.sys.m;
        Ok(match m.user_pa(m.current_mm(), addr) {
            Some(pa) => {
                let pfn = pa.pfn(A::PAGE_SHIFT);
                *detail = Some(format!(
                    "{} ({} bits)",
                    m.page_name(pfn),
                    m.phys.refcount_bits()
                ));
                Ok(m.phys.page_ref_count(pfn) as u64)
            }
            None => Err(Errno::EFAULT),
        })
    }

    /// `get_user(ADDR)`, `put_user(ADDR, BYTE)` and `memset(ADDR, BYTE, LEN)`.
    fn bug_uaccess(
        &mut self,
        s: &Stmt,
        call: BugCall,
        args: &[Arg],
    ) -> Result<Result<u64, Errno>, ScriptError> {
        let addr = VirtAddr(to_u64(self.w, self.expr_arg(&args[0], s)?, s.span)?);
        if call == BugCall::GetUser {
            return Ok(self.sys.m.get_user(addr, 1));
        }
        let v = self.expr_arg(&args[1], s)?;
        if call == BugCall::PutUser {
            let v = u8::try_from(v)
                .map_err(|_| self.err(s.span, "put_user stores one byte: 0..=255"))?;
            return Ok(self.sys.m.put_user(u64::from(v), addr, 1).map(|()| 0));
        }
        let byte = u8::try_from(v).map_err(|_| self.err(s.span, "the byte must be 0..=255"))?;
        let len = to_u64(self.w, self.expr_arg(&args[2], s)?, s.span)?;
        if len > 1 << 20 {
            return Err(self.err(s.span, "memset length must be <= 1M"));
        }
        let buf = vec![byte; len as usize];
        Ok(Ok(self.sys.m.copy_to_user(addr, &buf)))
    }

    /// `page_byte(r, I, OFF)` through the kernel's direct map.
    fn bug_page_byte(&mut self, s: &Stmt, args: &[Arg]) -> Result<Result<u64, Errno>, ScriptError> {
        let v = self.bug_name_arg(s, &args[0], "a gup result")?;
        let i = self.expr_arg(&args[1], s)?;
        let off = self.expr_arg(&args[2], s)?;
        let pages = &self
            .vars
            .get(&v)
            .ok_or_else(|| self.err(s.span, format!("undefined result `{v}`")))?
            .pages;
        let pfn = usize::try_from(i)
            .ok()
            .and_then(|i| pages.get(i).copied())
            .ok_or_else(|| self.err(s.span, format!("`{v}` holds no page {i} (released?)")))?;
        let off = u64::try_from(off)
            .ok()
            .filter(|o| *o < A::PAGE_SIZE)
            .ok_or_else(|| self.err(s.span, "the offset must be inside the page"))?;
        let mut b = [0u8];
        Ok(self
            .sys
            .m
            .phys
            .read(pfn.addr(A::PAGE_SHIFT).add(off), &mut b)
            .map_err(|_| Errno::EFAULT)
            .map(|()| u64::from(b[0])))
    }
}

/// One known bug of the user-memory access layer (spec known-bugs.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownBug {
    /// Short name.
    pub name: &'static str,
    /// CVE, or `-`.
    pub cve: &'static str,
    /// The commit or release that introduced it.
    pub introduced: &'static str,
    /// The mainline fix.
    pub fixed: &'static str,
    /// The built-in workloads replaying it (space-separated), or `-` when
    /// not modelled yet.
    pub workload: &'static str,
}

/// The known bugs, replayed or still to model.
pub const KNOWN_BUGS: &[KnownBug] = &[
    KnownBug {
        name: "Dirty COW",
        cve: "CVE-2016-5195",
        introduced: "f33ea7f404e5 (2005)",
        fixed: "19be0eaffa3a (v4.9)",
        workload: "dirtycow.vmw",
    },
    KnownBug {
        name: "Dirty Pipe",
        cve: "CVE-2022-0847",
        introduced: "241699cd72a8 (v4.9), exploitable from f6dd975583bd (5.8)",
        fixed: "9d2231c5d74e (5.17; 5.16.11, 5.15.25, 5.10.102)",
        workload: "dirtypipe.vmw",
    },
    KnownBug {
        name: "page refcount overflow",
        cve: "CVE-2019-11487",
        introduced: "always",
        fixed: "f958d7b528b1 88b1a17dfc3e 8fde12ca79af 15fab63e1e57 (5.1)",
        workload: "refcount_wrap.vmw",
    },
    KnownBug {
        name: "zero-length bvec livelock",
        cve: "CVE-2020-25641",
        introduced: "1bdc76aea115 (v4.8)",
        fixed: "7e24969022cb (5.9)",
        workload: "zero_len_bvec.vmw",
    },
    KnownBug {
        name: "KERNEL_DS + generic gup-fast",
        cve: "-",
        introduced: "generic RCU GUP (v3.18)",
        fixed: "set_fs removal (5.10/5.11), TASK_SIZE_MAX check (v6.4)",
        workload: "kernel_ds_gup_fast.vmw",
    },
    KnownBug {
        name: "pipe_advance fencepost",
        cve: "CVE-2017-5550",
        introduced: "241699cd72a8 (v4.9)",
        fixed: "b9dc6f65bc5e (v4.10)",
        workload: "pipe_advance_fencepost.vmw",
    },
    KnownBug {
        name: "GUP pin vs fork/COW",
        cve: "CVE-2020-29374",
        introduced: "always",
        fixed: "17839856fd58 (5.8), 09854ba94c6a 70e806e4e645 a308c71bf1e6 (5.9), 6c287605fd56 (5.19)",
        workload: "vmsplice_unmap_child.vmw pin_fork_write.vmw ro_pin_on_shared.vmw",
    },
    KnownBug {
        name: "Huge Dirty COW",
        cve: "CVE-2017-1000405",
        introduced: "8310d48b125d (Jan 2017, v4.10)",
        fixed: "a8f97366452e (v4.15-rc; 4.14.5)",
        workload: "dirtycow_thp.vmw",
    },
];

#[cfg(test)]
mod tests {
    use vmemu_arch::ArchId;

    use crate::{lang, run, workloads::BUILTIN};

    /// Runs a built-in workload; returns (passed, page_cache_corrupted raised).
    fn replay(name: &str, arch: ArchId, kernel: &str) -> (bool, bool) {
        replay_event(name, arch, kernel, "page_cache_corrupted")
    }

    /// Runs a built-in workload with the invariant checks; returns (passed,
    /// an event starting with `event` raised).
    fn replay_event(name: &str, arch: ArchId, kernel: &str, event: &str) -> (bool, bool) {
        let (f, src) = BUILTIN
            .iter()
            .find(|(f, _)| *f == format!("{name}.vmw"))
            .unwrap();
        let w = lang::parse(f, src).unwrap();
        let opts = crate::limits::RunOptions {
            check_invariants: true,
            ..Default::default()
        };
        let kernel: vmemu_mm::KernelProfile = kernel.parse().unwrap();
        let r = run::run_with(&w, arch, &kernel, &opts).unwrap();
        let hit = r
            .records
            .iter()
            .any(|x| x.events.iter().any(|e| e.starts_with(&format!("{event}:"))));
        (r.summary.passed, hit)
    }

    /// CVE-2019-11487 with a 12-bit `_refcount`: without the 5.1 checks
    /// 4097 references wrap the counter to 1, the mapping's put frees the
    /// page under 4096 pipe buffers and a reader sees the next owner's
    /// byte; with them (a v4.17 base plus the series, and v6.13) tee and
    /// gup refuse at 2048 and the page survives.
    #[test]
    fn refcount_wrap_only_without_the_page_refs_series() {
        for a in ArchId::MAIN {
            assert_eq!(
                replay_event("refcount_wrap", a, "v4.17+small-refcount", "use_after_free"),
                (true, true),
                "{a}"
            );
            for k in [
                "v4.17+small-refcount+refcount-checks",
                "v6.13+small-refcount",
            ] {
                assert_eq!(
                    replay_event("refcount_wrap", a, k, "use_after_free"),
                    (true, false),
                    "{a} {k}"
                );
            }
        }
    }

    /// GUP pins vs fork (spec §8.3): each workload shows its bug exactly
    /// under the profiles the spec names, on every arch.
    #[test]
    fn gup_pin_vs_fork_only_where_the_spec_says() {
        let cases: [(&str, &str, &[&str], &[&str]); 3] = [
            (
                "pin_fork_write",
                "pin_detached",
                &["v4.17", "v4.17+cow-break-on-pin"],
                &["v4.17+wp-page-count", "v6.13"],
            ),
            (
                "vmsplice_unmap_child",
                "shared_page_reused",
                &["v4.17"],
                &["v4.17+cow-break-on-pin", "v4.17+wp-page-count", "v6.13"],
            ),
            (
                "ro_pin_on_shared",
                "pin_detached",
                &["v4.17", "v4.17+wp-page-count"],
                &["v4.17+cow-break-on-pin", "v6.13"],
            ),
        ];
        for (w, ev, vulnerable, fixed) in cases {
            for a in ArchId::MAIN {
                for k in vulnerable {
                    assert_eq!(replay_event(w, a, k, ev), (true, true), "{w} {a} {k}");
                }
                for k in fixed {
                    assert_eq!(replay_event(w, a, k, ev), (true, false), "{w} {a} {k}");
                }
            }
        }
    }

    #[test]
    fn dirty_pipe_only_in_its_window() {
        for a in ArchId::MAIN {
            assert_eq!(replay("dirtypipe", a, "v4.17+dirtypipe"), (true, true));
            for k in ["v4.10", "v4.17", "v4.17+dirtypipe-fixed"] {
                assert_eq!(replay("dirtypipe", a, k), (true, false), "{a} {k}");
            }
        }
    }

    #[test]
    fn dirty_cow_only_before_its_fix() {
        for a in ArchId::MAIN {
            assert_eq!(replay("dirtycow", a, "v4.10+dirtycow"), (true, true));
            for k in ["v4.10", "v4.17", "v6.13"] {
                assert_eq!(replay("dirtycow", a, k), (true, false), "{a} {k}");
            }
        }
    }

    /// Huge Dirty COW (CVE-2017-1000405): the huge zero page changes under
    /// v4.10 (touch_pmd dirties on a read) and never under v4.17 or v6.13
    /// (a8f97366452e), on every arch whose PMD leaves the emulator maps.
    #[test]
    fn huge_dirty_cow_only_before_its_fix() {
        for a in ArchId::MAIN {
            assert_eq!(
                replay_event("dirtycow_thp", a, "v4.10", "zero_page_corrupted"),
                (true, true),
                "{a}"
            );
            for k in ["v4.17", "v6.13"] {
                assert_eq!(
                    replay_event("dirtycow_thp", a, k, "zero_page_corrupted"),
                    (true, false),
                    "{a} {k}"
                );
            }
        }
    }

    /// Whether the kernel `k` has the geometry of `a` (a variant may need a
    /// build option the profile lacks).
    fn has_arch(a: ArchId, k: &str) -> bool {
        k.parse::<vmemu_mm::KernelProfile>()
            .unwrap()
            .supports_arch(a)
            .is_ok()
    }

    #[test]
    fn pipe_advance_fencepost_only_before_its_fix() {
        for a in ArchId::ALL {
            let k = "v4.10+pipe-advance-fencepost";
            if has_arch(a, k) {
                assert_eq!(
                    replay_event("pipe_advance_fencepost", a, k, "infoleak"),
                    (true, true),
                    "{a}"
                );
            }
            for k in ["v4.10", "v4.17", "v6.13"] {
                if has_arch(a, k) {
                    assert_eq!(
                        replay_event("pipe_advance_fencepost", a, k, "infoleak"),
                        (true, false),
                        "{a} {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_modelled_bug_names_a_builtin_workload() {
        for b in super::KNOWN_BUGS.iter().filter(|b| b.workload != "-") {
            for w in b.workload.split_whitespace() {
                assert!(BUILTIN.iter().any(|(f, _)| *f == w), "{}: {w}", b.name);
            }
        }
    }
}
