//! The iterator statements: `iter NAME KIND ...` (`iov_iter_init` and
//! friends) and the `iov_iter` primitives on one iterator.

use super::eval::binop;
use super::*;
use crate::lang::SegRepeat;
use vmemu_iter::segs::Segs;

impl<'w, A: Arch> Runner<'w, A> {
    pub(crate) fn exec_iter(
        &mut self,
        s: &Stmt,
        name: &str,
        kind: IterType,
        read: bool,
        segs: (&[(Expr, Expr)], Option<&SegRepeat>),
        pipe: Option<&str>,
    ) -> Result<(), ScriptError> {
        let dir = if read { Dir::Read } else { Dir::Write };
        let v = self.iter_segments(s, name, segs.0, segs.1)?;
        let count = v.total_len();
        let not_here = |what: &str| {
            format!(
                "{what} does not exist in kernel {}: qualify the statement with `kernel ...`",
                self.kernel
            )
        };
        let it = match kind {
            IterType::Iovec => IovIter::init(&self.sys.m, dir, v, count),
            IterType::Kvec => IovIter::kvec(dir, v, count),
            IterType::Bvec => IovIter::bvec(dir, self.bvec_segments(s, &v.to_vec())?, count),
            IterType::Ubuf => {
                let (1, Some(x)) = (v.len(), v.get(0)) else {
                    return Err(self.err(s.span, "a ubuf iterator has exactly one segment"));
                };
                IovIter::ubuf(&self.sys.m, dir, x.base, x.len)
                    .map_err(|_| self.err(s.span, not_here("ITER_UBUF")))?
            }
            IterType::Discard => IovIter::discard(&self.sys.m, count)
                .map_err(|_| self.err(s.span, not_here("ITER_DISCARD")))?,
            IterType::Pipe => {
                let p = pipe.unwrap_or_default();
                let id = *self
                    .pipes
                    .get(p)
                    .ok_or_else(|| self.err(s.span, format!("undefined pipe `{p}`")))?;
                self.sys
                    .iov_iter_pipe(id)
                    .map_err(|_| self.err(s.span, not_here("ITER_PIPE")))?
            }
        };
        let mut r = self.record(s, "iov_iter_init");
        r.ret = Some(it.count as i64);
        r.detail = Some(format!("{:?}", it.ty).to_uppercase());
        self.push(r);
        self.stale_iters.remove(name);
        self.iters.insert(name.to_string(), it);
        Ok(())
    }

    /// The `bio_vec`s of a bvec iterator: each segment's address translated
    /// (kernel mapping first, then the current process's), its pages
    /// physically contiguous as one `bio_vec` requires.
    fn bvec_segments(&self, s: &Stmt, v: &[Iovec]) -> Result<Vec<BioVec>, ScriptError> {
        let mut b = Vec::new();
        for x in v {
            let mm = self.sys.m.current_mm();
            let pa = self
                .sys
                .m
                .kernel_pa(x.base)
                .or_else(|| self.sys.m.user_pa(mm, x.base))
                .ok_or_else(|| {
                    self.err(s.span, format!("bvec address {} is not mapped", x.base))
                })?;
            let len = u32::try_from(x.len)
                .map_err(|_| self.err(s.span, "bvec length must fit in 32 bits"))?;
            // A bio_vec covers physically contiguous memory: every
            // page of the segment must follow the previous frame.
            let first = pa.pfn(A::PAGE_SHIFT).0;
            let last_off = (pa.0 % A::PAGE_SIZE + u64::from(len)).saturating_sub(1);
            for k in 1..=last_off / A::PAGE_SIZE {
                let va = x
                    .base
                    .align_down(A::PAGE_SIZE)
                    .wrapping_add(k * A::PAGE_SIZE);
                let p = self
                    .sys
                    .m
                    .kernel_pa(va)
                    .or_else(|| self.sys.m.user_pa(mm, va))
                    .map(|p| p.pfn(A::PAGE_SHIFT).0);
                if p != Some(first + k) {
                    return Err(self.err(
                        s.span,
                        format!(
                            "bvec segment at {} (+{len}) is not physically contiguous: page {k} is not the frame after page {}",
                            x.base,
                            k - 1
                        ),
                    ));
                }
            }
            b.push(BioVec {
                page: pa.pfn(A::PAGE_SHIFT),
                len,
                offset: (pa.0 % A::PAGE_SIZE) as u32,
            });
        }
        Ok(b)
    }

    /// The segments of an `iter` statement; a repeat rule stays a rule
    /// ([`Segs::repeat`]: copy 0 written out, the copies computed when
    /// read), at most `--max-iovecs` segments. Each expression is evaluated
    /// once, in the order the written-out copies would evaluate them (copy
    /// 0 segment by segment: address, step, length). A copy's address is
    /// `a + k * step` with the arithmetic checks of the expression it stands
    /// for: the first copy whose address would not fit gets the error the
    /// written-out copy would have raised.
    fn iter_segments(
        &self,
        s: &Stmt,
        name: &str,
        segs: &[(Expr, Expr)],
        repeat: Option<&SegRepeat>,
    ) -> Result<Segs, ScriptError> {
        let copies = repeat.map_or(1, |r| r.count);
        let total = (segs.len() as u64).saturating_mul(copies);
        let max = self.opts.limits.max_iovecs;
        if total > max as u64 {
            return Err(self.err(
                s.span,
                format!(
                    "iterator `{name}` has {total} segments, more than {max}; raise the limit with --max-iovecs"
                ),
            ));
        }
        let mut group = Vec::with_capacity(segs.len());
        let Some(r) = repeat else {
            for (a, l) in segs {
                let a = self.addr(a, s.span)?;
                let l = to_u64(self.w, self.eval(l)?, s.span)?;
                group.push(Iovec { base: a, len: l });
            }
            return Ok(group.into());
        };
        let mut addrs: Vec<i128> = Vec::with_capacity(segs.len());
        let mut step = None;
        for (a, l) in segs {
            let av = self.eval(a)?;
            let sv = match step {
                Some(sv) => sv,
                None => *step.insert(self.eval(&r.step)?),
            };
            let base = self.copy_base(s, r, av, sv, 0)?;
            let len = to_u64(self.w, self.eval(l)?, s.span)?;
            addrs.push(av);
            group.push(Iovec {
                base: VirtAddr(base),
                len,
            });
        }
        let sv = step.unwrap_or_default();
        // Copy k of segment j is valid for k below a bound, as its checks
        // are linear in k: `binop` keeps `k * step` and the sum inside
        // [-2^64, 2^64), `to_u64` the sum inside [-2^63, 2^64). The
        // written-out copies fail first at the smallest such k, lowest j on
        // a tie; copy 0 passed, so `av` is inside [-2^63, 2^64).
        let top = (1i128 << 64) - 1;
        let first_bad = addrs
            .iter()
            .enumerate()
            .filter_map(|(j, &av)| {
                let k = match sv.signum() {
                    1 => (top - av.max(0)) / sv + 1,
                    -1 => (1i128 << 64).min(av + (1i128 << 63)) / -sv + 1,
                    _ => return None,
                };
                (k < i128::from(r.count)).then_some((k, j))
            })
            .min();
        if let Some((k, j)) = first_bad {
            self.copy_base(s, r, addrs[j], sv, k)?;
        }
        Ok(Segs::repeat(group, sv as u64, r.count as usize))
    }

    /// The address of copy `k` of a segment at `av`, as the written-out
    /// copy's expression `av + k * step` computes it.
    fn copy_base(
        &self,
        s: &Stmt,
        r: &SegRepeat,
        av: i128,
        sv: i128,
        k: i128,
    ) -> Result<u64, ScriptError> {
        let off = binop(self.w, '*', k, sv, r.span)?;
        to_u64(self.w, binop(self.w, '+', av, off, r.span)?, s.span)
    }

    pub(crate) fn exec_iter_call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        def: &'static CallDef,
        call: IterCall,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let func = def.name;
        let (it_name, mut it) = self.take_iter_arg(s, func, args)?;
        let mut nums = self.iter_nums(s, &args[1..])?;
        if let Err(e) = self.iter_call_allowed(s, def, call, &it, &mut nums) {
            self.iters.insert(it_name, it);
            return Err(e);
        }
        let mut r = self.record(s, func);
        let mut got: Option<(GotPages, bool)> = None;
        // The iterator as the call found it, to check a gathered run against.
        let before = it.clone();
        let res = match self.iter_primitive(s, call, &mut it, &nums, &mut got) {
            Ok(res) => res,
            Err(e) => {
                self.iters.insert(it_name, it);
                return Err(e);
            }
        };
        match res {
            Ok(v) => r.ret = Some(v),
            Err(e) => set_err(&mut r, e),
        }
        if let Some((g, _)) = &got
            && (call.is_get_pages1() || call.is_get_pages2())
        {
            // Does the returned run hold the iterator's bytes? (A
            // `data_mismatch` event if not; see vmemu_iter::bytemap.)
            self.sys.check_gathered(&before, g, func);
        }
        let (pages, pin, owned, start) = match got {
            Some((g, owned)) => (g.pages, g.pinned, owned, g.start),
            None => (Vec::new(), false, false, 0),
        };
        self.set_pages(&mut r, &pages);
        if start != 0 {
            r.detail = Some(format!("start {start:#x}"));
        }
        r.detail = Some(format!(
            "{}count {}, nr_segs {}, iov_offset {}",
            r.detail
                .as_deref()
                .map(|d| format!("{d}; "))
                .unwrap_or_default(),
            fmt_ret(it.count as i64),
            it.nr_segs,
            fmt_ret(it.iov_offset as i64)
        ));
        let retv = r.ret.unwrap_or(0);
        self.push(r);
        self.iters.insert(it_name, it);
        match var {
            Some(v) => {
                let var = Var {
                    ret: retv,
                    pages,
                    pin,
                    owned,
                    start,
                };
                self.bind(s, v, var)?;
            }
            None if owned => self.give_back(pages, pin),
            None => {}
        }
        Ok(())
    }

    /// The iterator an iov_iter call names first, taken out of the runner
    /// (the caller puts it back); a stale pipe iterator is an error.
    fn take_iter_arg(
        &mut self,
        s: &Stmt,
        func: &str,
        args: &[Arg],
    ) -> Result<(String, IovIter), ScriptError> {
        let Some(Arg::Expr(Expr::Name(it_name, nspan))) = args.first() else {
            return Err(self.err(s.span, format!("`{func}` takes an iterator name first")));
        };
        if let Some((f, line)) = self.stale_iters.get(it_name) {
            return Err(self.err(
                *nspan,
                format!(
                    "pipe iterator `{it_name}` is stale: `{f}` at line {line} used its pipe (an ITER_PIPE exists only inside one splice call, under the pipe lock); create a new one with `iter {it_name} pipe ...`"
                ),
            ));
        }
        let it = self.iters.remove(it_name).ok_or_else(|| {
            self.err(
                *nspan,
                format!("undefined iterator `{it_name}` (create it with `iter {it_name} ...`)"),
            )
        })?;
        Ok((it_name.clone(), it))
    }

    /// The numeric arguments of an iov_iter call, each 0..=2^40.
    fn iter_nums(&self, s: &Stmt, args: &[Arg]) -> Result<Vec<u64>, ScriptError> {
        let mut nums: Vec<u64> = Vec::new();
        for a in args {
            let v = self.expr_arg(a, s)?;
            nums.push(
                u64::try_from(v)
                    .ok()
                    .filter(|x| *x <= 1 << 40)
                    .ok_or_else(|| {
                        self.err(s.span, format!("argument must be 0..=2^40, found {v}"))
                    })?,
            );
        }
        Ok(nums)
    }

    /// Whether the call exists in the profile (the call table's `exists`)
    /// and its host buffer fits; clamps a copy's length to the iterator's
    /// count.
    fn iter_call_allowed(
        &self,
        s: &Stmt,
        def: &CallDef,
        call: IterCall,
        it: &IovIter,
        nums: &mut [u64],
    ) -> Result<(), ScriptError> {
        let func = def.name;
        if !def.exists.holds(&self.sys.m.knobs) {
            return Err(self.err(
                s.span,
                format!(
                    "{func} does not exist in kernel {}: qualify the statement with `kernel ...`",
                    self.kernel
                ),
            ));
        }
        // Host buffers: a copy moves at most `count` bytes, and at most
        // MAX_COPY (64 MiB) per statement; arrays of bvecs are bounded too.
        if matches!(call, IterCall::CopyToIter | IterCall::CopyFromIter) {
            nums[0] = nums[0].min(it.count);
        }
        let host = match call {
            IterCall::CopyToIter | IterCall::CopyFromIter => nums[0],
            IterCall::CopyFromIterFull if nums[0] <= it.count => nums[0],
            IterCall::IovIterFillBvecs => nums[0].saturating_mul(16),
            _ => 0,
        };
        if host > MAX_COPY {
            return Err(self.err(
                s.span,
                format!(
                    "`{func}` would need a {host}-byte buffer; a statement may copy at most 64M"
                ),
            ));
        }
        Ok(())
    }

    /// Runs the iov_iter primitive `call` on `it`; the pages a gathering
    /// call returns go to `got` (with whether they carry references).
    fn iter_primitive(
        &mut self,
        s: &Stmt,
        call: IterCall,
        it: &mut IovIter,
        nums: &[u64],
        got: &mut Option<(GotPages, bool)>,
    ) -> Result<Result<i64, Errno>, ScriptError> {
        let sys = &mut self.sys;
        let mut gathered = |g: GotPages, owned: bool| {
            let b = g.bytes as i64;
            *got = Some((g, owned));
            b
        };
        Ok(match call {
            IterCall::CopyToIter => {
                let n = super::pattern::with_pattern(nums[0], |src| sys.copy_to_iter(src, it));
                Ok(n as i64)
            }
            IterCall::CopyFromIter => {
                let mut dst = vec![0u8; nums[0] as usize];
                let n = sys.copy_from_iter(&mut dst, it);
                dst.truncate(n as usize);
                self.oracle.last_read = Some(dst);
                Ok(n as i64)
            }
            IterCall::CopyFromIterFull if nums[0] > it.count => {
                // Nothing is copied (a pipe still WARNs).
                let pipe = it.ty == vmemu_iter::IterType::Pipe;
                Ok(i64::from(pipe && sys.copy_from_iter_full(&mut [], it)))
            }
            IterCall::CopyFromIterFull => {
                let mut dst = vec![0u8; nums[0] as usize];
                Ok(i64::from(sys.copy_from_iter_full(&mut dst, it)))
            }
            IterCall::IovIterZero => Ok(sys.iov_iter_zero(nums[0], it) as i64),
            IterCall::IovIterAdvance => {
                sys.iov_iter_advance(it, nums[0]);
                Ok(it.count as i64)
            }
            IterCall::IovIterRevert => match sys.iov_iter_revert(it, nums[0]) {
                Ok(()) => Ok(it.count as i64),
                Err(_) => {
                    return Err(self.err(
                        s.span,
                        format!("iov_iter_revert does not exist in kernel {}", self.kernel),
                    ));
                }
            },
            IterCall::IovIterGetPages => sys
                .iov_iter_get_pages(it, nums[0], nums[1])
                .map(|g| gathered(g, true)),
            IterCall::IovIterGetPagesAlloc => sys
                .iov_iter_get_pages_alloc(it, nums[0])
                .map(|g| gathered(g, true)),
            IterCall::IovIterGetPages2 => sys
                .iov_iter_get_pages2(it, nums[0], nums[1])
                .map(|g| gathered(g, true)),
            IterCall::IovIterGetPagesAlloc2 => sys
                .iov_iter_get_pages_alloc2(it, nums[0])
                .map(|g| gathered(g, true)),
            IterCall::IovIterExtractPages => {
                let user = it.user_backed();
                sys.iov_iter_extract_pages(it, nums[0], nums[1])
                    .map(|g| gathered(g, user))
            }
            IterCall::IovIterNpages => Ok(sys.iov_iter_npages(it, nums[0]) as i64),
            IterCall::IovIterAlignment => Ok(sys.iov_iter_alignment(it) as i64),
            IterCall::IovIterGapAlignment => Ok(sys.iov_iter_gap_alignment(it) as i64),
            IterCall::IovIterSingleSegCount => Ok(sys.iov_iter_single_seg_count(it) as i64),
            IterCall::IovIterForEachPage | IterCall::IovIterFillBvecs => {
                Self::iter_page_walk(sys, call, it, nums, got)
            }
        })
    }

    /// `iov_iter_for_each_page` and `iov_iter_fill_bvecs`: the pages they
    /// visit go to `got`.
    fn iter_page_walk(
        sys: &mut Sys<A>,
        call: IterCall,
        it: &mut IovIter,
        nums: &[u64],
        got: &mut Option<(GotPages, bool)>,
    ) -> Result<i64, Errno> {
        if call == IterCall::IovIterForEachPage {
            let stop_after = nums[2];
            let mut calls = 0u64;
            let mut seen = Vec::new();
            let res = sys.iov_iter_for_each_page(it, nums[0], nums[1], &mut |_, p, _, _| {
                calls += 1;
                seen.push(p);
                stop_after == 0 || calls < stop_after
            });
            let n = res.map(|b| b as i64);
            *got = Some((
                GotPages {
                    pages: seen,
                    ..GotPages::default()
                },
                true,
            ));
            return n;
        }
        let mut bv = vec![
            BioVec {
                page: Pfn(0),
                len: 0,
                offset: 0
            };
            nums[0] as usize
        ];
        let res = sys.iov_iter_fill_bvecs(it, &mut bv, nums[1]);
        res.map(|(n, bytes)| {
            *got = Some((
                GotPages {
                    pages: bv[..n].iter().map(|b| b.page).collect(),
                    bytes,
                    ..GotPages::default()
                },
                true,
            ));
            bytes as i64
        })
    }
}
