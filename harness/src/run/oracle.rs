//! Differential oracles checked inside a run (with `RunOptions::oracles`,
//! as `vmemu fuzz` runs workloads):
//!
//! * **Iterators against a flat model.** A user-backed iterator
//!   (`ITER_IOVEC`, `ITER_UBUF`) is modelled as its segments laid end to end
//!   and a position. After `copy_to_iter`, `copy_from_iter`, `iov_iter_zero`,
//!   `iov_iter_advance`, `iov_iter_revert` and the advancing get_pages calls
//!   the iterator's position and `count` must be the model's; a copy must
//!   move exactly the bytes the model predicts from the VMAs (anonymous
//!   memory with the needed permission is reachable, the rest faults), and
//!   the bytes in memory must be the ones copied.
//! * **gup-fast against the slow path.** When a gup-fast call
//!   (`get_user_pages_fast`, `__get_user_pages_fast`,
//!   `get_user_pages_fast_only`, `pin_user_pages_fast`) is immediately
//!   followed by `get_user_pages` or `get_user_pages_unlocked` with the same
//!   arguments, both must return the same pages where both succeed (except
//!   with `FOLL_FORCE`, where a second COW break is the kernel's behaviour,
//!   under `KERNEL_DS`, and when a second task ran inside the slow call).
//!
//! Cross-run oracles (profiles, arches) are in `fuzz`.

use vmemu_arch::{Arch, Pfn, SizeKind, VirtAddr};
use vmemu_iter::iov_iter::{IovIter, IterType};
use vmemu_mm::{Backing, BugClass, ViolationKind, VmFlags};

use crate::calls::{Call, IterCall, MmCall};
use crate::lang::{ScriptError, Stmt, StmtKind};
use crate::run::Runner;

/// Which check of a run failed: an invariant of the checker (with the
/// violation's kind) or one of this module's oracles. The fuzzer
/// classifies a failed run by this, never by the message's words.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CheckKind {
    /// An invariant (`Sys::check_invariants`), by its first violation.
    Invariant(ViolationKind),
    /// gup-fast and the slow path returned different pages for one range.
    FastVsSlow,
    /// An iterator's position, count or bytes differ from its flat model.
    IterModel,
}

impl CheckKind {
    /// The transcript record's `op`: `invariant` or `oracle`.
    #[must_use]
    pub fn op(self) -> &'static str {
        match self {
            CheckKind::Invariant(_) => "invariant",
            CheckKind::FastVsSlow | CheckKind::IterModel => "oracle",
        }
    }

    /// The known-bug class the failed check shows, if any.
    #[must_use]
    pub fn bug_class(self) -> Option<BugClass> {
        match self {
            CheckKind::Invariant(k) => k.bug_class(),
            CheckKind::FastVsSlow | CheckKind::IterModel => None,
        }
    }
}

/// Largest copy whose bytes the oracle compares.
const BYTE_CHECK_MAX: u64 = 1 << 20;

/// The oracle's memory of the previous statement.
#[derive(Debug, Default)]
pub(crate) struct OracleState {
    /// The iterator a statement is about to use, as it was before.
    before: Option<(String, IovIter)>,
    /// The previous statement, if it was a gup-fast call: (args, var, under
    /// KERNEL_DS, length of the interleaving log before it).
    prev_fast: Option<(String, String, bool, usize)>,
    /// Bytes the last `copy_from_iter` produced.
    pub(crate) last_read: Option<Vec<u8>>,
    /// Length of the interleaving log before the statement: a second task
    /// that ran inside the fast call (its slow fallback) or the slow one
    /// (`interleave_dontneed`) changed the mm between or under them.
    interleaved_before: usize,
}

fn args_text(text: &str) -> &str {
    text.split_once('(').map_or("", |(_, a)| a)
}

impl<A: Arch> Runner<'_, A> {
    pub(crate) fn oracle_before(&mut self, s: &Stmt) -> Result<(), ScriptError> {
        self.oracle.before = None;
        self.oracle.last_read = None;
        self.oracle.interleaved_before = self.sys.m.interleave_log.len();
        if let StmtKind::Call { args, .. } = &s.kind
            && let Some(crate::lang::Arg::Expr(crate::lang::Expr::Name(n, _))) = args.first()
            && let Some(it) = self.iters.get(n)
        {
            self.oracle.before = Some((n.clone(), it.clone()));
        }
        Ok(())
    }

    pub(crate) fn oracle_after(&mut self, s: &Stmt) -> Result<(), ScriptError> {
        let StmtKind::Call { var, func, .. } = &s.kind else {
            self.oracle.prev_fast = None;
            return Ok(());
        };
        if self.kernel_state_broken() {
            // After a modelled WARN/BUG the kernel's state is not the model's.
            self.oracle.prev_fast = None;
            self.oracle.before = None;
            return Ok(());
        }
        let prev = self.oracle.prev_fast.take();
        let mm_call = match func.call {
            Call::Mm(c) => Some(c),
            _ => None,
        };
        if self.oracle_fast_vs_slow(s, var.as_ref(), mm_call, prev) {
            return Ok(());
        }
        if let Some((name, before)) = self.oracle.before.take() {
            let ret = self.vars.get(var.as_deref().unwrap_or("")).map(|v| v.ret);
            let ret = self.records.last().and_then(|r| r.ret).or(ret).unwrap_or(0);
            if let Some(after) = self.iters.get(&name).cloned()
                && let Call::Iter(call) = func.call
                && let Err(msg) = self.check_iter_model(call, func.name, &before, &after, ret, s)
            {
                self.fail_check(
                    s,
                    CheckKind::IterModel,
                    vec![format!("iterator `{name}`: {msg}")],
                );
            }
        }
        Ok(())
    }

    /// gup-fast against the slow path: a fast call remembers its arguments;
    /// the slow call right after it with the same arguments (not under
    /// KERNEL_DS, not with FOLL_FORCE, nothing interleaved) must return the
    /// same pages where both succeed. Returns whether the check failed.
    fn oracle_fast_vs_slow(
        &mut self,
        s: &Stmt,
        var: Option<&String>,
        mm_call: Option<MmCall>,
        prev: Option<(String, String, bool, usize)>,
    ) -> bool {
        let kds = self.sys.m.under_kernel_ds();
        // 17839856fd58 (5.8) left the IRQ-safe fast-only walk reading
        // read-only entries while the slow path breaks COW on them: the two
        // may rightly return different pages of a COW-shared range.
        let fast_only_reads_cow =
            self.sys.m.knobs.force_cow_on_read_pin && mm_call.is_some_and(MmCall::is_fast_only);
        let fast = matches!(
            mm_call,
            Some(
                MmCall::GetUserPagesFast
                    | MmCall::__GetUserPagesFast
                    | MmCall::GetUserPagesFastOnly
                    | MmCall::PinUserPagesFast
            )
        );
        if fast && !fast_only_reads_cow {
            if let Some(v) = var {
                self.oracle.prev_fast = Some((
                    args_text(&s.text).to_string(),
                    v.clone(),
                    kds,
                    self.oracle.interleaved_before,
                ));
            }
        } else if matches!(
            mm_call,
            Some(MmCall::GetUserPages | MmCall::GetUserPagesUnlocked)
        ) && let (Some(v), Some((pargs, pvar, pkds, plog))) = (var, prev)
            && pargs == args_text(&s.text)
            && !pkds
            && !kds
            && !pargs.contains("FOLL_FORCE")
            && self.sys.m.interleave_log.len() == plog
            && let (Some(a), Some(b)) = (self.vars.get(&pvar), self.vars.get(v))
            && a.ret > 0
            && b.ret > 0
        {
            let k = (a.ret.min(b.ret) as usize)
                .min(a.pages.len())
                .min(b.pages.len());
            if a.pages[..k] != b.pages[..k] {
                let names = |p: &[Pfn]| {
                    p.iter()
                        .map(|&x| self.sys.m.page_name(x))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let msg = format!(
                    "gup-fast `{pvar}` and the slow path `{v}` disagree over the same range: [{}] vs [{}]",
                    names(&a.pages[..k]),
                    names(&b.pages[..k])
                );
                self.fail_check(s, CheckKind::FastVsSlow, vec![msg]);
                return true;
            }
        }
        false
    }

    /// Position of an iovec-like iterator: bytes consumed from its start.
    fn flat_pos(it: &IovIter) -> u64 {
        it.iov
            .slice(0, it.idx)
            .iter()
            .fold(0u64, |a, v| a.wrapping_add(v.len))
            .wrapping_add(it.iov_offset)
    }

    fn check_iter_model(
        &mut self,
        call: IterCall,
        func: &str,
        before: &IovIter,
        after: &IovIter,
        ret: i64,
        s: &Stmt,
    ) -> Result<(), String> {
        if !matches!(before.ty, IterType::Iovec | IterType::Ubuf) {
            return Ok(());
        }
        let p0 = Self::flat_pos(before);
        let p1 = Self::flat_pos(after);
        let moved = p1.wrapping_sub(p0);
        let consumed = before.count.wrapping_sub(after.count);
        let n_arg = || -> u64 {
            // The statement's second argument, as evaluated by the run.
            if let StmtKind::Call { args, .. } = &s.kind
                && let Some(a) = args.get(1)
                && let Ok(v) = self.expr_arg(a, s)
            {
                return u64::try_from(v).unwrap_or(0);
            }
            0
        };
        let expect_move = |want: u64| -> Result<(), String> {
            if moved != want || consumed != want {
                return Err(format!(
                    "{func}: the model moves {want} bytes, the iterator moved its position by {moved} and its count by {consumed}"
                ));
            }
            Ok(())
        };
        match call {
            IterCall::CopyToIter | IterCall::IovIterZero | IterCall::CopyFromIter => {
                let n = n_arg().min(before.count);
                let ret = u64::try_from(ret).map_err(|_| format!("{func} returned {ret}"))?;
                expect_move(ret)?;
                self.check_copy_model(call, func, before, n, ret)
            }
            IterCall::IovIterAdvance => expect_move(n_arg().min(before.count)),
            IterCall::IovIterRevert => {
                let n = n_arg();
                if n <= p0
                    && n <= vmemu_iter::iov_iter::MAX_RW_COUNT
                    && (p1 != p0 - n || after.count != before.count + n)
                {
                    return Err(format!(
                        "iov_iter_revert({n}): position {p0} -> {p1}, count {} -> {}",
                        before.count, after.count
                    ));
                }
                Ok(())
            }
            c if c.is_get_pages2() => expect_move(u64::try_from(ret).unwrap_or(0)),
            IterCall::CopyFromIterFull => expect_move(if ret == 1 { n_arg() } else { 0 }),
            // Queries and non-advancing calls leave the iterator alone.
            c if c.is_get_pages1() => expect_move(0),
            IterCall::IovIterNpages
            | IterCall::IovIterAlignment
            | IterCall::IovIterGapAlignment
            | IterCall::IovIterSingleSegCount => expect_move(0),
            _ => Ok(()),
        }
    }

    /// A copy of `ret` bytes out of the `n` asked for: the flat model
    /// reaches as far, and the bytes in memory are the ones copied.
    fn check_copy_model(
        &self,
        call: IterCall,
        func: &str,
        before: &IovIter,
        n: u64,
        ret: u64,
    ) -> Result<(), String> {
        let write = call != IterCall::CopyFromIter;
        let pieces = Self::pieces(before, n);
        if let Some(want) = self.model_copy(&pieces, write)
            && want != ret
        {
            return Err(format!(
                "{func}({n}): the flat model reaches {want} bytes, the iterator copied {ret}"
            ));
        }
        if ret > BYTE_CHECK_MAX {
            return Ok(());
        }
        let done = Self::pieces(before, ret);
        let (got, phys) = self
            .read_pieces(&done)
            .ok_or_else(|| format!("{func}: bytes reported copied are not mapped"))?;
        let want: Vec<u8> = match call {
            IterCall::CopyToIter => super::pattern::pattern(ret),
            IterCall::IovIterZero => vec![0; ret as usize],
            _ => self.oracle.last_read.clone().unwrap_or_default(),
        };
        // Segments that overlap, virtually or through two mappings of one
        // page, see the later bytes.
        let overlap = Self::overlapping(&done) || Self::overlapping(&phys);
        if !overlap && want.len() as u64 >= ret && got[..] != want[..ret as usize] {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!(
                "{func}: byte {at} of the copy is {:#x} in memory, {:#x} expected",
                got.get(at).copied().unwrap_or(0),
                want.get(at).copied().unwrap_or(0)
            ));
        }
        Ok(())
    }

    /// The user pieces the next `n` bytes of an iovec iterator cover.
    fn pieces(it: &IovIter, n: u64) -> Vec<(VirtAddr, u64)> {
        let mut out = Vec::new();
        let mut left = n.min(it.count);
        let mut idx = it.idx;
        let mut skip = it.iov_offset;
        while left > 0 {
            let Some(seg) = it.iov.get(idx) else {
                break;
            };
            let len = left.min(seg.len.saturating_sub(skip));
            if len > 0 {
                out.push((seg.base.wrapping_add(skip), len));
            }
            left -= len;
            idx += 1;
            skip = 0;
        }
        out
    }

    fn overlapping(pieces: &[(VirtAddr, u64)]) -> bool {
        let mut v: Vec<(u64, u64)> = pieces.iter().map(|(a, l)| (a.0, a.0 + l)).collect();
        v.sort_unstable();
        v.windows(2).any(|w| w[1].0 < w[0].1)
    }

    /// Bytes a copy reaches by the flat model, or `None` where the model
    /// cannot tell (file mappings, device memory, exec-only, stacks that
    /// may grow, memory nearly exhausted).
    fn model_copy(&self, pieces: &[(VirtAddr, u64)], write: bool) -> Option<u64> {
        let m = &self.sys.m;
        if m.phys.nr_frames() - m.phys.allocated() < 4096 {
            return None;
        }
        let mm = m.current_mm();
        let mut done = 0u64;
        for &(addr, len) in pieces {
            if !m.access_ok(addr, len, SizeKind::Runtime) {
                return Some(done);
            }
            let mut off = 0u64;
            while off < len {
                let va = addr.wrapping_add(off);
                let chunk = (A::PAGE_SIZE - va.offset_in(A::PAGE_SIZE)).min(len - off);
                let ok = match m.vma_at(mm, va) {
                    None => {
                        if m.find_vma(mm, va)
                            .is_some_and(|v| v.flags.contains(VmFlags::VM_GROWSDOWN))
                            || va.0 >= m.layout.task_size_max
                        {
                            return None;
                        }
                        false
                    }
                    Some(v) => {
                        if !matches!(v.backing, Backing::Anon) {
                            return None;
                        }
                        let r = v.flags.contains(VmFlags::VM_READ);
                        let w = v.flags.contains(VmFlags::VM_WRITE);
                        let x = v.flags.contains(VmFlags::VM_EXEC);
                        if write {
                            w
                        } else if r || w {
                            true
                        } else if x {
                            return None;
                        } else {
                            false
                        }
                    }
                };
                if !ok {
                    return Some(done + off);
                }
                off += chunk;
            }
            done += len;
        }
        Some(done)
    }

    /// Reads memory without faulting (the MMU's walk); `None` if a page is
    /// not mapped. Also returns the physical ranges read.
    #[allow(clippy::type_complexity)]
    fn read_pieces(&self, pieces: &[(VirtAddr, u64)]) -> Option<(Vec<u8>, Vec<(VirtAddr, u64)>)> {
        let m = &self.sys.m;
        let mm = m.current_mm();
        let mut out = Vec::new();
        let mut phys = Vec::new();
        for &(addr, len) in pieces {
            let mut off = 0u64;
            while off < len {
                let va = addr.wrapping_add(off);
                let chunk = (A::PAGE_SIZE - va.offset_in(A::PAGE_SIZE)).min(len - off);
                // The MMU's walk (kernel addresses under KERNEL_DS too).
                let pa = vmemu_mm::pgtable::walk::<A>(
                    &m.phys,
                    m.family(),
                    m.roots(mm),
                    va,
                    vmemu_mm::pgtable::RootSel::Hardware,
                    |_| {},
                )
                .ok()?
                .pa;
                let start = out.len();
                out.resize(start + chunk as usize, 0);
                m.phys.read(pa, &mut out[start..]).ok()?;
                phys.push((VirtAddr(pa.0), chunk));
                off += chunk;
            }
        }
        Some((out, phys))
    }
}
