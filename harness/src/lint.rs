//! `vmemu check`: what the call table, the profiles and the arches tell
//! about a parsed workload without running it.
//!
//! The workload is walked once per arch and profile it names (its
//! `arches`/`kernels` lines and every qualifier), statements under `on` /
//! `kernel` qualifiers included where they apply. A walk tracks the names
//! each statement declares (mappings, files, pipes, iterators, result
//! variables) and evaluates every expression whose value does not depend on
//! the run (constants of the arch and profile, literals, `kdirect`): it
//! reports a function that does not exist in the profile, an undefined
//! name, an argument of the wrong kind, a literal size or count out of
//! range and constant arithmetic that overflows — each where the runner
//! would stop, only earlier and on every arch at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use vmemu_arch::{Arch, ArchId, Level, with_arch};
use vmemu_iter::IterType;
use vmemu_mm::KernelProfile;
use vmemu_mm::profile::Knobs;

use crate::calls::{ArgKind, Call, CallDef, MmCall};
use crate::lang::{
    Arg, Expr, Field, MAX_ERRORS, ScriptError, SegRepeat, Span, Stmt, StmtKind, Target, Value,
    Workload,
};

/// The values of an arch and profile that expressions may name.
#[derive(Clone, Copy, Debug)]
struct Consts {
    page_size: u64,
    page_shift: u32,
    task_size: u64,
    page_offset: u64,
    vmalloc: u64,
    pmd: u64,
    pud: u64,
    va_bits: u32,
}

fn consts_of<A: Arch>(k: &Knobs) -> Consts {
    let l = A::layout(k.family);
    Consts {
        page_size: A::PAGE_SIZE,
        page_shift: A::PAGE_SHIFT,
        task_size: l.task_size_max,
        page_offset: l.page_offset,
        vmalloc: l.vmalloc_start,
        pmd: A::entry_span(Level(A::levels() as u8 - 2)),
        pud: A::entry_span(Level(A::levels() as u8 - 3)),
        va_bits: A::va_bits(),
    }
}

/// Names declared so far in one walk.
#[derive(Clone, Default)]
struct Scope {
    maps: HashSet<String>,
    files: HashSet<String>,
    pipes: HashSet<String>,
    iters: HashSet<String>,
    vars: HashSet<String>,
    /// Pipe iterators and their pipe.
    pipe_iters: HashMap<String, String>,
    /// Pipe iterators whose pipe a call used since: (call, line).
    stale: HashMap<String, (&'static str, usize)>,
}

/// One walk: an arch and a profile.
struct Walk<'w> {
    w: &'w Workload,
    arch: ArchId,
    kernel: &'w KernelProfile,
    k: Consts,
    scope: Scope,
    /// The first arch and profile walked.
    first: bool,
    /// Errors by position (one per position, the first walk's).
    out: &'w mut BTreeMap<(usize, usize), ScriptError>,
}

/// Every arch the workload names: its `arches` line (or the main arches)
/// and the arches of its qualifiers.
fn arches_of(w: &Workload) -> Vec<ArchId> {
    let mut v: Vec<ArchId> = if w.arches.is_empty() {
        ArchId::MAIN.to_vec()
    } else {
        w.arches.clone()
    };
    visit(&w.stmts, &mut |s| v.extend(s.qual.arches.iter().copied()));
    v.sort();
    v.dedup();
    if !w.arches.is_empty() {
        v.retain(|a| w.arches.contains(a));
    }
    v
}

/// Every profile the workload names: its `kernels` line (or the default)
/// and the profiles of its qualifiers.
fn kernels_of(w: &Workload) -> Vec<KernelProfile> {
    let mut v = crate::run::default_kernels(w);
    visit(&w.stmts, &mut |s| {
        for k in &s.qual.kernels {
            if !v.contains(k) {
                v.push(k.clone());
            }
        }
    });
    v
}

fn visit<'a>(stmts: &'a [Stmt], f: &mut impl FnMut(&'a Stmt)) {
    for s in stmts {
        f(s);
        if let StmtKind::SetFs(_, b) | StmtKind::Repeat(_, b) = &s.kind {
            visit(b, f);
        }
    }
}

/// Lints a parsed workload: every error found on any arch and profile it
/// names, in line order (at most [`MAX_ERRORS`]).
#[must_use]
pub fn check(w: &Workload) -> Vec<ScriptError> {
    let mut out = BTreeMap::new();
    let mut first = true;
    for kernel in kernels_of(w) {
        for arch in arches_of(w) {
            let k = with_arch!(arch, A => consts_of::<A>(&kernel.knobs));
            let mut walk = Walk {
                w,
                arch,
                kernel: &kernel,
                k,
                scope: Scope::default(),
                first,
                out: &mut out,
            };
            walk.mem();
            walk.block(&w.stmts);
            first = false;
        }
    }
    out.into_values().take(MAX_ERRORS).collect()
}

/// Parses and lints a script read as bytes: every error of the file.
pub fn check_bytes(file: &str, bytes: &[u8]) -> Result<Workload, Vec<ScriptError>> {
    let w = crate::lang::parse_bytes(file, bytes)?;
    let errors = check(&w);
    if errors.is_empty() {
        Ok(w)
    } else {
        Err(errors)
    }
}

impl Walk<'_> {
    /// Records an error at `span` unless one is there already (from this
    /// or an earlier walk).
    fn report(&mut self, span: Span, len: usize, msg: String, label: Option<String>) {
        if self.out.contains_key(&(span.line, span.col)) {
            return;
        }
        let line = self
            .w
            .source
            .lines()
            .nth(span.line.saturating_sub(1))
            .unwrap_or("");
        let mut e = ScriptError::new(&self.w.file, span, msg, line).with_len(len);
        e.label = label.map(String::into_boxed_str);
        self.out.insert((span.line, span.col), e);
    }

    /// ` (arch ..., kernel ...)` for an error the first walk did not see.
    fn here(&self) -> String {
        if self.first {
            String::new()
        } else {
            format!(" (arch {}, kernel {})", self.arch, self.kernel)
        }
    }

    fn applies(&self, s: &Stmt) -> bool {
        s.qual.applies(self.arch, self.kernel)
    }

    fn mem(&mut self) {
        let Some(e) = self.w.mem.clone() else { return };
        if let Some(v) = self.eval(&e) {
            let mut span = self.first_span(&e);
            if span.line == 0 {
                let line = self
                    .w
                    .source
                    .lines()
                    .position(|l| l.trim_start().starts_with("mem "));
                span = Span {
                    line: line.map_or(1, |l| l + 1),
                    col: 1,
                };
            }
            if !(16i128 << 20..=64i128 << 30).contains(&v) {
                self.report(
                    span,
                    1,
                    format!("mem must be between 16M and 64G, found {v}"),
                    None,
                );
            }
        }
    }

    fn block(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            if self.applies(s) {
                self.stmt(s);
            }
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Map(name, spec) => {
                self.size(&spec.size, spec.in_pages, s, "mapping size", 1 << 44);
                if let Some(f) = &spec.file
                    && !self.scope.files.contains(f)
                {
                    self.undefined(s.span, s.text.len(), "file", f);
                }
                if let Some(at) = &spec.at {
                    self.expr(at);
                }
                self.scope.maps.insert(name.clone());
            }
            StmtKind::File { name, size, .. } => {
                self.expr(size);
                self.scope.files.insert(name.clone());
            }
            StmtKind::Touch(name, _) => self.need_map(s, name),
            StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) => self.block(body),
            StmtKind::Call {
                var,
                func,
                args,
                at,
            } => {
                self.call(s, func, args, at);
                if let Some(v) = var {
                    self.scope.vars.insert(v.clone());
                }
            }
            StmtKind::Expect(t, _, v) => self.expect(s, t, v.as_ref()),
            StmtKind::Release(v) => {
                if !self.scope.vars.contains(v) {
                    self.undefined(s.span, s.text.chars().count(), "result", v);
                }
            }
            StmtKind::Kbuf(name, size, in_pages) => {
                self.kbuf(s, size, *in_pages);
                self.scope.maps.insert(name.clone());
            }
            StmtKind::Iter {
                name,
                kind,
                segs,
                repeat,
                pipe,
                ..
            } => self.iter_decl(s, name, *kind, segs, repeat.as_deref(), pipe.as_deref()),
            StmtKind::Pipe(name) => {
                self.scope.pipes.insert(name.clone());
            }
            StmtKind::Show(what) => self.show(s, what),
        }
    }

    /// An `iter` declaration: its flavour exists in the profile, its
    /// segments' expressions and its pipe are defined; it replaces any
    /// stale iterator of that name.
    fn iter_decl(
        &mut self,
        s: &Stmt,
        name: &str,
        kind: IterType,
        segs: &[(Expr, Expr)],
        repeat: Option<&SegRepeat>,
        pipe: Option<&str>,
    ) {
        self.iter_kind(s, kind);
        for (a, l) in segs {
            self.expr(a);
            self.expr(l);
        }
        if let Some(r) = repeat {
            self.expr(&r.step);
        }
        if let Some(p) = pipe
            && !self.scope.pipes.contains(p)
        {
            self.undefined(s.span, s.text.chars().count(), "pipe", p);
        }
        self.scope.iters.insert(name.to_string());
        self.scope.stale.remove(name);
        match pipe {
            Some(p) => self
                .scope
                .pipe_iters
                .insert(name.to_string(), p.to_string()),
            None => self.scope.pipe_iters.remove(name),
        };
    }

    /// A `show` statement: its address or page index.
    fn show(&mut self, s: &Stmt, what: &crate::lang::ShowWhat) {
        match what {
            crate::lang::ShowWhat::Addr(e) => self.expr(e),
            crate::lang::ShowWhat::Mm => {}
            crate::lang::ShowWhat::Page(name, i) => {
                self.need_map(s, name);
                if self.eval(i).is_some_and(|v| v < 0) {
                    let here = self.here();
                    self.report(
                        s.span,
                        s.text.chars().count(),
                        format!("a page index is not negative{here}"),
                        None,
                    );
                }
            }
        }
    }

    fn need_map(&mut self, s: &Stmt, name: &str) {
        if !self.scope.maps.contains(name) {
            self.undefined(s.span, s.text.chars().count(), "mapping", name);
        }
    }

    /// An undefined name of `what` (mapping, file, pipe, iterator, result).
    fn undefined(&mut self, span: Span, len: usize, what: &str, name: &str) {
        let pool: Vec<String> = match what {
            "mapping" => self.scope.maps.iter().cloned().collect(),
            "file" => self.scope.files.iter().cloned().collect(),
            "pipe" => self.scope.pipes.iter().cloned().collect(),
            "iterator" => self.scope.iters.iter().cloned().collect(),
            _ => self.scope.vars.iter().cloned().collect(),
        };
        let mut pool: Vec<&str> = pool.iter().map(String::as_str).collect();
        pool.sort_unstable();
        let guess = crate::calls::suggest(name, pool).map(str::to_string);
        let here = self.here();
        let label = format!("no {what} of this name is declared before this line");
        self.report(
            span,
            len,
            format!("undefined {what} `{name}`{here}"),
            Some(label),
        );
        if let Some(e) = self.out.get_mut(&(span.line, span.col))
            && e.help.is_none()
            && let Some(g) = guess
        {
            e.help = Some(format!("did you mean `{g}`?").into());
        }
    }

    fn kbuf(&mut self, s: &Stmt, size: &Expr, in_pages: bool) {
        let Some(n) = self.eval(size) else { return };
        let ps = i128::from(self.k.page_size);
        let pages = if in_pages { n } else { (n + ps - 1) / ps };
        if !(1..=4096).contains(&pages) {
            let span = self.first_span(size);
            let span = if span.line == 0 { s.span } else { span };
            self.report(
                span,
                1,
                format!("kernel buffer must be 1..=4096 pages, found {pages}"),
                None,
            );
        }
    }

    /// A size in bytes (or pages) that must be 1..=`max` bytes.
    fn size(&mut self, e: &Expr, in_pages: bool, s: &Stmt, what: &str, max: i128) {
        let Some(v) = self.eval(e) else { return };
        let bytes = if in_pages {
            v.checked_mul(i128::from(self.k.page_size))
        } else {
            Some(v)
        };
        if !bytes.is_some_and(|b| b > 0 && b <= max) {
            let span = self.first_span(e);
            let span = if span.line == 0 { s.span } else { span };
            let unit = if in_pages { " pages" } else { " bytes" };
            let msg = format!("{what} must be between 1 byte and 16 TiB, found {v}{unit}");
            self.report(span, 1, msg, Some("out of range".into()));
        }
    }
}

impl Walk<'_> {
    fn call(&mut self, s: &Stmt, def: &CallDef, args: &[Arg], at: &[(Span, usize)]) {
        if !def.exists.holds(&self.kernel.knobs) {
            let (span, len) = func_span(s, def);
            let kernel = self.kernel;
            let msg = format!(
                "{} does not exist in kernel {kernel}: qualify the statement with `kernel ...`",
                def.name
            );
            self.report(span, len, msg, Some(format!("not in {kernel}")));
            return;
        }
        for (i, (a, kind)) in args.iter().zip(def.args).enumerate() {
            let (span, len) = at.get(i).copied().unwrap_or((s.span, 1));
            self.arg(def, a, *kind, span, len);
        }
        self.stale_pipe_iters(s, def, args, at);
    }

    /// An iterator flavour the profile lacks (`ITER_UBUF` before 6.0,
    /// `ITER_PIPE` after 6.4), where the runner would stop.
    fn iter_kind(&mut self, s: &Stmt, kind: IterType) {
        if kind.exists(&self.kernel.knobs) {
            return;
        }
        let word = kind.word();
        let at = s.text.find(&format!(" {word}")).map_or(0, |i| i + 1);
        let span = Span {
            line: s.span.line,
            col: s.span.col + s.text[..at].chars().count(),
        };
        let kernel = self.kernel;
        let msg = format!(
            "a {word} iterator does not exist in kernel {kernel}: qualify the statement with `kernel ...`"
        );
        let label = format!("not in {kernel}{}", self.here());
        self.report(span, word.len(), msg, Some(label));
    }

    /// An ITER_PIPE lives inside one splice call: after a pipe call uses
    /// its pipe, an iov_iter primitive on an older pipe iterator is an
    /// error (as in the runner).
    fn stale_pipe_iters(&mut self, s: &Stmt, def: &CallDef, args: &[Arg], at: &[(Span, usize)]) {
        let name = |a: Option<&Arg>| match a {
            Some(Arg::Expr(Expr::Name(n, _))) => Some(n.clone()),
            _ => None,
        };
        match def.call {
            Call::Iter(_) => {
                if let Some(it) = name(args.first())
                    && let Some(&(f, line)) = self.scope.stale.get(&it)
                {
                    let (span, len) = at.first().copied().unwrap_or((s.span, 1));
                    let msg = format!(
                        "pipe iterator `{it}` is stale: `{f}` at line {line} used its pipe (an ITER_PIPE exists only inside one splice call, under the pipe lock); create a new one with `iter {it} pipe ...`"
                    );
                    self.report(span, len, msg, Some("stale".into()));
                }
            }
            Call::Pipe(_) => {
                if let Some(p) = name(args.first()) {
                    for (it, ip) in &self.scope.pipe_iters {
                        if *ip == p {
                            self.scope.stale.insert(it.clone(), (def.name, s.span.line));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn arg(&mut self, def: &CallDef, a: &Arg, kind: ArgKind, span: Span, len: usize) {
        let name = match a {
            Arg::Expr(Expr::Name(n, _) | Expr::Const(n, _)) => Some(n.as_str()),
            _ => None,
        };
        let sc = &self.scope;
        let (ok, what) = match (kind, name) {
            (ArgKind::Iter, Some(n)) => (sc.iters.contains(n), "iterator"),
            (ArgKind::Pipe, Some(n)) => (sc.pipes.contains(n), "pipe"),
            (ArgKind::File, Some(n)) => (sc.files.contains(n), "file"),
            (ArgKind::Result, Some(n)) => (sc.vars.contains(n), "result"),
            (ArgKind::Fd, Some(n)) => (
                sc.pipes.contains(n) || sc.files.contains(n) || sc.vars.contains(n),
                "pipe, file or descriptor variable",
            ),
            (ArgKind::Pid, Some(n)) if sc.vars.contains(n) => (true, ""),
            (ArgKind::OpenFlags, Some(n)) if crate::calls::OPEN_FLAGS.contains(&n) => (true, ""),
            (ArgKind::Word(_), _) => (true, ""),
            (_, _) => {
                if let Arg::Expr(e) = a {
                    self.value_arg(def, e, kind, span, len);
                }
                (true, "")
            }
        };
        if !ok {
            self.undefined(span, len, what, name.unwrap_or_default());
        }
    }

    /// An expression argument: names defined, constant value in range.
    fn value_arg(&mut self, def: &CallDef, e: &Expr, kind: ArgKind, span: Span, len: usize) {
        let Some(v) = self.eval(e) else { return };
        let range: Option<(i128, i128, &str)> = match (kind, def.call) {
            // The gup-fast entry points take an `int nr_pages`, and what a
            // negative one does differs per arch and version (workload
            // gup_fast_negative_count); get_user_pages* take an unsigned long.
            (
                ArgKind::NrPages,
                Call::Mm(
                    MmCall::GetUserPagesFast
                    | MmCall::__GetUserPagesFast
                    | MmCall::GetUserPagesFastOnly
                    | MmCall::PinUserPagesFast,
                ),
            ) => Some((
                i128::from(i32::MIN),
                i128::from(i32::MAX),
                "a page count must fit an int (INT_MIN..=INT_MAX)",
            )),
            (ArgKind::NrPages, _) => {
                Some((0, i128::from(i32::MAX), "a page count must be 0..=INT_MAX"))
            }
            (ArgKind::Foll, _) if v != 0 => {
                Some((0, 0, "gup flags are FOLL_* names joined with `|`, or 0"))
            }
            (ArgKind::Count, Call::Iter(_)) => Some((0, 1 << 40, "argument must be 0..=2^40")),
            (ArgKind::Count, Call::Mm(c)) if c.is_copy() => {
                Some((0, 64 << 20, "copy length must be 0..=64M"))
            }
            (ArgKind::Addr, _) => {
                Some((-(1 << 63), (1 << 64) - 1, "value does not fit in 64 bits"))
            }
            _ => None,
        };
        if let Some((lo, hi, msg)) = range
            && !(lo..=hi).contains(&v)
        {
            self.report(
                span,
                len,
                format!("{msg}, found {v}"),
                Some("out of range".into()),
            );
        }
    }

    fn expect(&mut self, s: &Stmt, t: &Target, v: Option<&Value>) {
        let var_at = |var: &str| -> (Span, usize) {
            let col = s.text.find("expect").map_or(0, |i| i + "expect".len());
            let off = s.text[col..].find(var).map_or(0, |i| col + i);
            (
                Span {
                    line: s.span.line,
                    col: s.span.col + s.text[..off].chars().count(),
                },
                var.chars().count(),
            )
        };
        match t {
            Target::Ret(var) | Target::Pages(var) => {
                if !self.scope.vars.contains(var) {
                    let (span, len) = var_at(var);
                    self.undefined(span, len, "result", var);
                }
            }
            Target::Field(var, f) => {
                let (span, len) = var_at(var);
                let it = self.scope.iters.contains(var);
                let res = self.scope.vars.contains(var);
                if !it && !res {
                    self.undefined(span, len, "result or iterator", var);
                } else if !it && *f != Field::Start {
                    let msg = format!("a result has pages and start, not `{f}`");
                    self.report(span, len, msg, None);
                } else if it && *f == Field::Start && !res {
                    let msg = "an iterator has count, iov_offset and nr_segs, not `start`";
                    self.report(span, len, msg.into(), None);
                }
            }
            Target::Event(_) | Target::Leaked => {}
        }
        if let Some(Value::Expr(e)) = v {
            self.expr(e);
        }
    }
}

/// The function name's position in a call statement.
fn func_span(s: &Stmt, def: &CallDef) -> (Span, usize) {
    let off = s.text.find(def.name).unwrap_or(0);
    (
        Span {
            line: s.span.line,
            col: s.span.col + s.text[..off].chars().count(),
        },
        def.name.len(),
    )
}

impl Walk<'_> {
    /// Checks an expression: names defined, constant arithmetic in range.
    fn expr(&mut self, e: &Expr) {
        let _ = self.eval(e);
    }

    /// The value of `e` if it does not depend on the run; reports undefined
    /// mapping names and overflowing constant arithmetic on the way.
    fn eval(&mut self, e: &Expr) -> Option<i128> {
        let k = self.k;
        match e {
            Expr::Num(n) => Some(*n),
            Expr::Errno(n) => Some(-i128::from(*n)),
            Expr::Const(c, _) => Some(match c.as_str() {
                "PAGE_SIZE" => k.page_size.into(),
                "PAGE_SHIFT" => k.page_shift.into(),
                "TASK_SIZE" => k.task_size.into(),
                "PAGE_OFFSET" => k.page_offset.into(),
                "VMALLOC_START" => k.vmalloc.into(),
                "PMD_SIZE" => k.pmd.into(),
                _ => k.pud.into(),
            }),
            Expr::Name(n, span) => {
                if !self.scope.maps.contains(n) {
                    self.undefined(*span, n.chars().count(), "mapping", n);
                }
                None
            }
            Expr::Call(f, args, span) => self.eval_call(f, args, *span),
            Expr::Bin(a, op, b, span) => {
                let (x, y) = (self.eval(a), self.eval(b));
                let (x, y) = (x?, y?);
                let r = match op {
                    '+' => x.checked_add(y),
                    '-' => x.checked_sub(y),
                    '*' => x.checked_mul(y),
                    '/' => x.checked_div(y),
                    _ => x.checked_rem(y),
                }
                .filter(|v| (-(1i128 << 64)..(1i128 << 64)).contains(v));
                if r.is_none() {
                    let msg = if y == 0 && matches!(op, '/' | '%') {
                        "division by zero"
                    } else {
                        "arithmetic overflow"
                    };
                    let here = self.here();
                    let label = format!("`{op}` of {x} and {y}");
                    self.report(*span, 1, format!("{msg}{here}"), Some(label));
                }
                r
            }
        }
    }

    fn eval_call(&mut self, f: &str, args: &[Expr], span: Span) -> Option<i128> {
        let v: Vec<Option<i128>> = args.iter().map(|a| self.eval(a)).collect();
        let k = self.k;
        match f {
            "kdirect" => {
                let r = v[0]?
                    .checked_mul(i128::from(k.page_size))
                    .and_then(|o| o.checked_add(i128::from(k.page_offset)))
                    .filter(|x| *x < 1i128 << 64);
                if r.is_none() {
                    let msg = "kdirect: frame number out of range";
                    self.report(span, f.len(), msg.into(), None);
                }
                r
            }
            "user_alias" => Some(((v[0]? as u128 as u64) & ((1u64 << k.va_bits) - 1)).into()),
            _ => None,
        }
    }

    /// The first span inside `e` (for errors about the whole expression).
    fn first_span(&self, e: &Expr) -> Span {
        match e {
            Expr::Const(_, s) | Expr::Name(_, s) | Expr::Call(_, _, s) => *s,
            Expr::Bin(a, _, _, s) => {
                let inner = self.first_span(a);
                if inner.line == 0 { *s } else { inner }
            }
            _ => Span::default(),
        }
    }
}
