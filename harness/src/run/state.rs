//! The runner's state and its statement loop: starting a run (limits, `mem`),
//! the qualifiers, blocks and `repeat`, the dispatch of each statement, the
//! invariant check after it, and the records of the transcript.

use super::*;

impl<'w, A: Arch> Runner<'w, A> {
    pub(crate) fn start(w: &'w Workload, kernel: &KernelProfile) -> Result<Self, ScriptError> {
        Self::start_with(w, kernel, RunOptions::default())
    }

    pub(crate) fn start_with(
        w: &'w Workload,
        kernel: &KernelProfile,
        opts: RunOptions,
    ) -> Result<Self, ScriptError> {
        let n = count_statements(&w.stmts);
        if n > opts.limits.max_statements {
            let span = nth_statement(&w.stmts, opts.limits.max_statements).unwrap_or_default();
            return Err(err_at(
                w,
                span,
                format!(
                    "the workload has {n} statements, more than {}; raise the limit with --max-statements",
                    opts.limits.max_statements
                ),
            ));
        }
        if let Err(why) = kernel.supports_arch(A::ID) {
            return Err(err_at(w, Span { line: 1, col: 1 }, why));
        }
        let profile = kernel.clone();
        let size = phys_size::<A>(w, &profile, &opts)?;
        let sys = Sys::<A>::new(profile, size)
            .map_err(|e| err_at(w, Span { line: 1, col: 1 }, e.to_string()))?;
        Ok(Self {
            w,
            qual_arch: qual_arch(w, A::ID),
            kernel: kernel.to_string(),
            sys,
            // Sized once for the script's mappings (a long script's table
            // would otherwise leave its outgrown copies to the allocator).
            maps: HashMap::with_capacity(
                w.stmts
                    .iter()
                    .filter(|s| matches!(s.kind, StmtKind::Map(..)))
                    .count(),
            ),
            files: HashMap::new(),
            vars: HashMap::new(),
            iters: HashMap::new(),
            pipes: HashMap::new(),
            // One record per statement written (more with `repeat`):
            // reserved, so a long flat script's transcript does not carry
            // a doubling's slack.
            records: Vec::with_capacity(n.min(1 << 20)),
            names: super::shared::RecordNames::new(&w.name, A::ID.name(), &kernel.to_string()),
            expected_events: BTreeSet::new(),
            seen_events: 0,
            expects: 0,
            failed: 0,
            expected_leaks: 0,
            callers: crate::run::callers::State::default(),
            opts,
            halted: false,
            eliding: 0,
            violations: 0,
            failed_check: None,
            pipe_buffers: 0,
            oracle: crate::run::oracle::OracleState::default(),
            stale_iters: HashMap::new(),
        })
    }

    pub(crate) fn applies(&self, q: &Qual) -> bool {
        q.applies(self.qual_arch, &self.sys.m.profile)
    }

    pub(crate) fn run(mut self) -> Result<Run, ScriptError> {
        // The workload outlives the runner: its statements are borrowed,
        // not copied (a copy per run of a long script).
        let w = self.w;
        let stmts = &w.stmts;
        // Expected events are declared anywhere in the script.
        collect_expected_events(stmts, &mut |k, q| {
            if self.applies(q) {
                self.expected_events.insert(k.to_string());
            }
        });
        self.sys.expect_infoleak = self.expected_events.contains("infoleak");
        self.exec_block(stmts)?;
        self.callers_finish();
        let (refs, pins) = self.sys.m.held_total();
        let leaked = refs + pins;
        let mut unexpected: Vec<String> = self
            .sys
            .m
            .events
            .iter()
            .filter(|e| !self.expected_events.contains(e.kind.name()))
            .map(|e| e.to_string())
            .collect();
        unexpected.dedup();
        let leaked_pages = self.held_names(&self.held_pages(false));
        let unowned_refs = self.held_pages(true).iter().map(|&(_, n)| n).sum();
        let passed = self.failed == 0
            && leaked == self.expected_leaks
            && unexpected.is_empty()
            && self.violations == 0;
        let summary = Summary {
            summary: true,
            workload: self.w.name.clone(),
            arch: A::ID.name().to_string(),
            kernel: self.kernel.clone(),
            passed,
            expects: self.expects,
            failed_expects: self.failed,
            leaked_refs: leaked,
            leaked_pages,
            expected_leaks: self.expected_leaks,
            unexpected_events: unexpected,
            invariant_violations: self.violations,
        };
        Ok(Run {
            records: self.records,
            summary,
            failed_check: self.failed_check,
            known_bugs: self.sys.m.knobs.known_bugs(),
            events: self.sys.m.events,
            unowned_refs,
        })
    }

    pub(crate) fn exec_block(&mut self, stmts: &[Stmt]) -> Result<(), ScriptError> {
        for s in stmts {
            if self.halted {
                break;
            }
            if self.applies(&s.qual) {
                if self.opts.oracles {
                    self.oracle_before(s)?;
                }
                self.exec(s)?;
                self.check_host_mem(s)?;
                self.show_at(s)?;
                if self.opts.oracles && !self.halted {
                    self.oracle_after(s)?;
                }
                if self.opts.check_invariants && !self.halted {
                    self.check_after(s);
                }
            }
        }
        Ok(())
    }

    /// Whether the emulated kernel has done something the real one would
    /// WARN, BUG or corrupt memory on: its state is then not expected to
    /// satisfy the invariants any more.
    pub(crate) fn kernel_state_broken(&self) -> bool {
        use vmemu_mm::EventKind as K;
        self.sys.m.events.iter().any(|e| {
            matches!(
                e.kind,
                K::KernelBug
                    | K::RefUnderflow
                    | K::SoftLockup
                    | K::UseAfterFree
                    | K::ZeroPageCorrupted
            )
        })
    }

    /// `repeat N { ... }`: the body N times. The transcript keeps the
    /// records of the first and the last iteration, and of any other one
    /// that raised an event or failed an expect; the `repeat` record says
    /// how many it left out.
    pub(crate) fn exec_repeat(
        &mut self,
        s: &Stmt,
        n: u32,
        body: &[Stmt],
    ) -> Result<(), ScriptError> {
        let r = self.record(s, "repeat");
        self.push(r);
        let at = self.records.len() - 1;
        let mut elided = 0usize;
        let mut ran = 0u32;
        for k in 0..n {
            if self.halted {
                break;
            }
            let before = self.records.len();
            let middle = k > 0 && k + 1 < n;
            self.eliding += u32::from(middle);
            let done = self.exec_block(body);
            self.eliding -= u32::from(middle);
            if middle && done.is_ok() && !self.halted {
                let tail = self.records.split_off(before);
                for rec in tail {
                    if rec.events.is_empty() && rec.ok != Some(false) {
                        elided += 1;
                    } else {
                        self.records.push(rec);
                    }
                }
            }
            if self.eliding == 0 {
                self.name_kept_pages(before);
            }
            done?;
            ran += 1;
        }
        let mut d = format!("{ran} iteration(s)");
        if elided > 0 {
            d.push_str(&format!(
                "; {elided} record(s) of iterations 2..{} without events or failed expects not shown",
                n - 1
            ));
        }
        self.records[at].detail = Some(d);
        Ok(())
    }

    /// Runs the invariant checker after statement `s`.
    pub(crate) fn check_after(&mut self, s: &Stmt) {
        if self.kernel_state_broken() {
            return;
        }
        let iters: Vec<(&str, &IovIter)> =
            self.iters.iter().map(|(n, i)| (n.as_str(), i)).collect();
        if let Err(v) = self.sys.check_invariants(iters) {
            let kind = crate::run::oracle::CheckKind::Invariant(v[0].kind);
            self.fail_check(s, kind, v.into_iter().map(|x| x.msg).collect());
        }
    }

    /// Records a failed invariant or oracle after `s` and halts the run.
    pub(crate) fn fail_check(
        &mut self,
        s: &Stmt,
        check: crate::run::oracle::CheckKind,
        v: Vec<String>,
    ) {
        let kind = check.op();
        self.failed_check.get_or_insert(check);
        let mut r = self.record(s, kind);
        r.detail = Some(format!("{} violation(s)", v.len()));
        self.push(r);
        if let Some(last) = self.records.last_mut() {
            last.events.extend(
                v.into_iter()
                    .map(|m| format!("{kind}: after line {} `{}`: {m}", s.span.line, s.text)),
            );
        }
        self.violations += 1;
        self.halted = true;
    }

    /// Drops the references of `pages` that no result variable will hold
    /// (`unpin_user_page` for pins, `put_page` otherwise).
    pub(crate) fn give_back(&mut self, pages: Vec<Pfn>, pin: bool) {
        for p in pages {
            let _ = if pin {
                self.sys.m.unpin_user_page(p)
            } else {
                self.sys.m.put_page(p)
            };
        }
    }

    /// Binds the result variable `v` of statement `s`. Rebinding a name
    /// whose pages still carry references the workload must release (an
    /// owned, non-empty result) is an error: those references would be lost.
    pub(crate) fn bind(&mut self, s: &Stmt, v: &str, var: Var) -> Result<(), ScriptError> {
        if let Some(old) = self.vars.get(v)
            && old.owned
            && !old.pages.is_empty()
        {
            return Err(self.err(
                s.span,
                format!("`{v}` still holds pages: `release {v}` before reusing the name"),
            ));
        }
        self.vars.insert(v.to_string(), var);
        Ok(())
    }

    /// References and pins held in the ledger per page (compound head);
    /// with `unowned`, less those the workload's result variables hold.
    pub(crate) fn held_pages(&self, unowned: bool) -> Vec<(Pfn, u64)> {
        let m = &self.sys.m;
        let mut held: std::collections::BTreeMap<Pfn, u64> = m
            .held()
            .iter()
            .map(|(p, h)| (p, u64::from(h.refs) + u64::from(h.pins)))
            .collect();
        if unowned {
            for v in self.vars.values().filter(|v| v.owned) {
                for &p in &v.pages {
                    if let Some(n) = held.get_mut(&m.phys.compound_head(p)) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
        }
        held.into_iter().filter(|&(_, n)| n > 0).collect()
    }

    /// `C[0]`, `C[0] x2`, ... for [`Runner::held_pages`].
    pub(crate) fn held_names(&self, held: &[(Pfn, u64)]) -> Vec<String> {
        held.iter()
            .map(|&(p, n)| {
                let name = self.sys.m.page_name(p);
                if n == 1 { name } else { format!("{name} x{n}") }
            })
            .collect()
    }

    pub(crate) fn record(&mut self, s: &Stmt, op: &str) -> Record {
        Record {
            workload: self.names.workload.clone(),
            arch: self.names.arch.clone(),
            kernel: self.names.kernel.clone(),
            line: s.span.line,
            op: self.names.op(op),
            text: s.text.clone(),
            ret: None,
            errno: None,
            pages: Vec::new(),
            events: Vec::new(),
            ok: None,
            detail: None,
            io: None,
            show: None,
            page_keys: Vec::new(),
        }
    }

    /// Sets the pages of `r`: their names, or, in an iteration a `repeat`
    /// may leave out ([`Runner::eliding`]), their keys, named by
    /// [`Runner::name_kept_pages`] if the record is kept (issue 23: naming
    /// pages of records later dropped was most of a gup-heavy `vmemu run`).
    pub(crate) fn set_pages(&self, r: &mut Record, pages: &[Pfn]) {
        let m = &self.sys.m;
        if self.eliding > 0 {
            r.page_keys = pages.iter().map(|p| m.page_name_key(*p)).collect();
        } else {
            r.pages = pages.iter().map(|p| m.page_name(*p)).collect();
        }
    }

    /// Names the pages of the records from `from` on that carry keys.
    fn name_kept_pages(&mut self, from: usize) {
        let m = &self.sys.m;
        for r in &mut self.records[from..] {
            if !r.page_keys.is_empty() {
                r.pages = r.page_keys.drain(..).map(|k| m.key_name(k)).collect();
            }
        }
    }

    pub(crate) fn push(&mut self, mut r: Record) {
        self.sys.report_freed_referenced();
        self.sys.m.check_pin_views();
        r.events = self.sys.m.events[self.seen_events..]
            .iter()
            .map(|e| e.to_string())
            .collect();
        self.seen_events = self.sys.m.events.len();
        self.records.push(r);
    }

    pub(crate) fn err(&self, span: Span, msg: impl Into<String>) -> ScriptError {
        err_at(self.w, span, msg)
    }

    pub(crate) fn exec(&mut self, s: &Stmt) -> Result<(), ScriptError> {
        match &s.kind {
            StmtKind::Map(name, spec) => self.exec_map(s, name, spec),
            StmtKind::File {
                name,
                size,
                mkwrite,
                fault_retry,
                proc,
                fs,
            } => {
                self.exec_file(s, name, size, *mkwrite, *fault_retry, *proc)?;
                if let Some(&id) = self.files.get(name.as_str()) {
                    self.sys.file_fs.insert(id, *fs);
                }
                Ok(())
            }
            StmtKind::Touch(name, write) => self.exec_touch(s, name, *write),
            StmtKind::SetFs(kds, body) => self.exec_set_fs(s, *kds, body),
            StmtKind::Repeat(n, body) => self.exec_repeat(s, *n, body),
            StmtKind::Call {
                var, func, args, ..
            } => {
                let var = var.as_deref();
                let name = func.name;
                match func.call {
                    Call::Bug(c) => self.exec_bug_call(s, var, c, name, args),
                    Call::Caller(c) => self.exec_caller(s, var, c, name, args),
                    Call::Syscall(c) => self.exec_syscall(s, var, c, name, args),
                    Call::Pipe(c) => self.exec_pipe_call(s, var, c, name, args),
                    Call::Iter(c) => self.exec_iter_call(s, var, func, c, args),
                    Call::Mm(c) => self.exec_call(s, var, c, name, args),
                }
            }
            StmtKind::Kbuf(name, size, in_pages) => self.exec_kbuf(s, name, size, *in_pages),
            StmtKind::Pipe(name) => self.exec_pipe(s, name),
            StmtKind::Iter {
                name,
                kind,
                read,
                segs,
                repeat,
                pipe,
            } => self.exec_iter(
                s,
                name,
                *kind,
                *read,
                (segs, repeat.as_deref()),
                pipe.as_deref(),
            ),
            StmtKind::Expect(t, eq, v) => self.exec_expect(s, t, *eq, v.as_ref()),
            StmtKind::Release(var) => self.exec_release(s, var),
            StmtKind::Show(what) => self.exec_show(s, what),
        }
    }

    fn exec_file(
        &mut self,
        s: &Stmt,
        name: &str,
        size: &Expr,
        page_mkwrite: MkwriteBehaviour,
        fault_retry: bool,
        proc: bool,
    ) -> Result<(), ScriptError> {
        let size = to_u64(self.w, self.eval(size)?, s.span)?;
        let id = self.sys.m.create_file(
            name,
            size,
            FileOps {
                page_mkwrite,
                fault_retry,
            },
        );
        if proc {
            self.sys.m.files[id as usize].splice_read = false;
        }
        self.files.insert(name.to_string(), id);
        let r = self.record(s, "file");
        self.push(r);
        Ok(())
    }

    fn exec_touch(&mut self, s: &Stmt, name: &str, write: bool) -> Result<(), ScriptError> {
        let &(addr, len) = self
            .maps
            .get(name)
            .ok_or_else(|| self.err(s.span, format!("undefined mapping `{name}`")))?;
        let left = if write {
            self.sys.m.clear_user(addr, len)
        } else {
            let mut buf = vec![0u8; len.min(MAX_COPY) as usize];
            self.sys.m.copy_from_user(&mut buf, addr)
        };
        let mut r = self.record(s, "touch");
        r.ret = Some(left as i64);
        self.push(r);
        Ok(())
    }

    fn exec_set_fs(&mut self, s: &Stmt, kds: bool, body: &[Stmt]) -> Result<(), ScriptError> {
        let old = self.sys.m.set_fs(kds);
        let mut r = self.record(s, "set_fs");
        if !self.sys.m.knobs.set_fs {
            r.detail = Some("no effect: this kernel has no set_fs/addr_limit".into());
        }
        self.push(r);
        let res = self.exec_block(body);
        self.sys.m.restore_fs(old);
        res
    }

    fn exec_kbuf(
        &mut self,
        s: &Stmt,
        name: &str,
        size: &Expr,
        in_pages: bool,
    ) -> Result<(), ScriptError> {
        let n = self.eval(size)?;
        let ps = i128::from(A::PAGE_SIZE);
        let pages = if in_pages { n } else { (n + ps - 1) / ps };
        let pages = u32::try_from(pages)
            .ok()
            .filter(|p| (1..=4096).contains(p))
            .ok_or_else(|| {
                self.err(
                    s.span,
                    format!("kernel buffer must be 1..=4096 pages, found {pages}"),
                )
            })?;
        let pfns = self
            .sys
            .m
            .alloc_kernel_pages(name, pages)
            .map_err(|e| self.err(s.span, e.to_string()))?;
        let va = self
            .sys
            .m
            .vmap(&pfns)
            .map_err(|e| self.err(s.span, e.to_string()))?;
        self.maps
            .insert(name.to_string(), (va, u64::from(pages) * A::PAGE_SIZE));
        let mut r = self.record(s, "vmalloc");
        r.ret = Some(va.0 as i64);
        self.push(r);
        Ok(())
    }

    fn exec_pipe(&mut self, s: &Stmt, name: &str) -> Result<(), ScriptError> {
        let slots = vmemu_iter::pipe::PIPE_DEF_BUFFERS;
        if self.pipe_buffers + slots > self.opts.limits.max_pipe_buffers {
            return Err(self.err(
                s.span,
                format!(
                    "pipe `{name}` would bring the run to {} pipe buffers, more than {}; raise the limit with --max-pipe-buffers",
                    self.pipe_buffers + slots,
                    self.opts.limits.max_pipe_buffers
                ),
            ));
        }
        self.pipe_buffers += slots;
        let id = self.sys.pipe_create();
        self.pipes.insert(name.to_string(), id);
        let r = self.record(s, "pipe");
        self.push(r);
        Ok(())
    }

    fn exec_release(&mut self, s: &Stmt, var: &str) -> Result<(), ScriptError> {
        let v = self
            .vars
            .get_mut(var)
            .ok_or_else(|| err_at(self.w, s.span, format!("undefined result `{var}`")))?;
        let pages = std::mem::take(&mut v.pages);
        let pin = v.pin;
        let owned = v.owned;
        let mut bad = 0;
        for p in pages.into_iter().filter(|_| owned) {
            self.sys.m.drop_pin_origin(p);
            let r = if pin {
                self.sys.m.unpin_user_page(p)
            } else {
                self.sys.m.put_page(p)
            };
            if r.is_err() {
                bad += 1;
            }
        }
        let mut r = self.record(s, if pin { "unpin_user_pages" } else { "put_page" });
        r.ret = Some(if bad == 0 { 0 } else { Errno::EINVAL.to_ret() });
        self.push(r);
        Ok(())
    }
}

pub(crate) fn collect_expected_events(stmts: &[Stmt], f: &mut impl FnMut(&str, &Qual)) {
    for s in stmts {
        match &s.kind {
            StmtKind::Expect(Target::Event(k), _, _) => f(k.name(), &s.qual),
            StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) => {
                collect_expected_events(body, f);
            }
            _ => {}
        }
    }
}

/// The span of the `n`-th statement (0-based, `set_fs` bodies included).
pub(crate) fn nth_statement(stmts: &[Stmt], n: usize) -> Option<Span> {
    fn rec(stmts: &[Stmt], n: &mut usize) -> Option<Span> {
        for s in stmts {
            if *n == 0 {
                return Some(s.span);
            }
            *n -= 1;
            if let StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) = &s.kind
                && let Some(sp) = rec(body, n)
            {
                return Some(sp);
            }
        }
        None
    }
    let mut n = n;
    rec(stmts, &mut n)
}

/// Where the `mem` line is (line 1 if it cannot be found).
pub(crate) fn mem_span(w: &Workload) -> Span {
    w.source
        .lines()
        .position(|l| l.trim_start().starts_with("mem "))
        .map_or(Span { line: 1, col: 1 }, |i| Span {
            line: i + 1,
            col: w
                .source
                .lines()
                .nth(i)
                .map_or(0, |l| l.len() - l.trim_start().len())
                + 1,
        })
}

/// Guest RAM for a run: the workload's `mem` line checked against
/// `--max-mem`, else the default size.
fn phys_size<A: Arch>(
    w: &Workload,
    kernel: &KernelProfile,
    opts: &RunOptions,
) -> Result<u64, ScriptError> {
    let mut size = DEFAULT_PHYS_SIZE;
    if let Some(e) = &w.mem {
        let layout = A::layout(kernel.knobs.family);
        let v = eval_const::<A>(
            w,
            e,
            layout.page_offset,
            layout.task_size_max,
            layout.vmalloc_start,
        )?;
        let max = i128::from(opts.limits.max_mem);
        if v < 16 << 20 {
            return Err(err_at(
                w,
                mem_span(w),
                format!("mem must be at least 16M, found {v}"),
            ));
        }
        if v > max {
            return Err(err_at(
                w,
                mem_span(w),
                format!(
                    "mem {v} is more than the limit of {max} bytes; raise it with --max-mem (at most 64G)"
                ),
            ));
        }
        size = v as u64;
    }
    Ok(size)
}
