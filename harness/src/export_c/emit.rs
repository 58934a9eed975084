//! The walk over a workload's typed statements that writes the C program:
//! one `case` of `run_stmt` per statement (run in the process the script
//! has switched to), expects and process management in `main`.

use std::collections::HashMap;
use std::fmt::Write as _;

use vmemu_arch::{ArchId, with_arch};
use vmemu_mm::{KernelProfile, Prot};

use crate::calls::{BugCall, Call, MmCall};
use crate::lang::{Arg, Expr, MapSpec, ScriptError, Stmt, StmtKind, Target, Value, Workload};

/// Why a statement is not turned into C.
pub(super) enum NotC {
    /// It exists only inside the kernel (`--skip-internal` drops it).
    Internal(String),
    /// The exporter cannot express it (always an error).
    Unsupported(String),
}

/// What a result variable holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VarKind {
    Ret,
    Proc(usize),
}

/// The exporter's state along the walk.
pub(super) struct Emitter<'w> {
    pub w: &'w Workload,
    pub arch: ArchId,
    pub kernel: KernelProfile,
    pub skip_internal: bool,
    /// Addresses the emulator gave each `map` statement (by line, in order).
    pub map_addrs: HashMap<usize, Vec<i64>>,
    vars: HashMap<String, (usize, VarKind)>,
    maps: HashMap<String, usize>,
    pipes: HashMap<String, (usize, usize, u32)>,
    files: HashMap<String, usize>,
    iters: HashMap<String, (usize, usize)>,
    niov: usize,
    nprocs: usize,
    /// Process the script runs in now (0: the first).
    cur: usize,
    /// Spawn serial of each process (when it was forked).
    born: Vec<u32>,
    clock: u32,
    /// Names dropped with `--skip-internal`, and why.
    dropped: HashMap<String, String>,
    cases: Vec<String>,
    main: Vec<String>,
    pub errors: Vec<ScriptError>,
    /// Statements dropped (line, text, why), for the report.
    pub skipped: Vec<(usize, String, String)>,
}

impl<'w> Emitter<'w> {
    pub fn new(w: &'w Workload, arch: ArchId, kernel: KernelProfile, skip_internal: bool) -> Self {
        Self {
            w,
            arch,
            kernel,
            skip_internal,
            map_addrs: HashMap::new(),
            vars: HashMap::new(),
            maps: HashMap::new(),
            pipes: HashMap::new(),
            files: HashMap::new(),
            iters: HashMap::new(),
            niov: 0,
            nprocs: 0,
            cur: 0,
            born: vec![0],
            clock: 0,
            dropped: HashMap::new(),
            cases: Vec::new(),
            main: Vec::new(),
            errors: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn page_size(&self) -> u64 {
        self.arch.page_size()
    }

    fn applies(&self, s: &Stmt) -> bool {
        s.qual.applies(self.arch, &self.kernel)
    }

    fn error(&mut self, s: &Stmt, msg: String) {
        let line = self.w.source.lines().nth(s.span.line - 1).unwrap_or("");
        self.errors
            .push(ScriptError::new(&self.w.file, s.span, msg, line));
    }

    /// Walks every statement that applies to the arch and profile.
    pub fn walk(&mut self) {
        let stmts = self.w.stmts.clone();
        for s in &stmts {
            if !self.applies(s) {
                continue;
            }
            match self.stmt(s) {
                Ok(()) => {}
                Err(NotC::Internal(what)) => self.internal(s, &what),
                Err(NotC::Unsupported(why)) => {
                    self.error(s, format!("export-c cannot express this statement: {why}"));
                }
            }
        }
    }

    fn internal(&mut self, s: &Stmt, what: &str) {
        if !self.skip_internal {
            self.error(
                s,
                format!(
                    "`{what}` exists only inside the kernel: a C program cannot call it (--skip-internal drops it and the expects that depend on it)"
                ),
            );
            return;
        }
        let why = format!("depends on kernel-internal `{what}` (line {})", s.span.line);
        for n in defined_names(s) {
            self.dropped.insert(n, why.clone());
        }
        if let StmtKind::Expect(..) = &s.kind {
            self.main.push(format!(
                "expect_skip({}, {});",
                s.span.line,
                cstr(&format!("kernel-internal: {what}"))
            ));
        } else {
            self.main.push(format!(
                "printf(\"  # SKIP L{}: %s\\n\", {});",
                s.span.line,
                cstr(&format!("{} (kernel-internal)", s.text))
            ));
        }
        self.skipped.push((
            s.span.line,
            s.text.clone(),
            format!("kernel-internal `{what}`"),
        ));
    }

    /// The C of one statement, or why there is none.
    fn stmt(&mut self, s: &Stmt) -> Result<(), NotC> {
        if let Some(why) = used_names(s).iter().find_map(|n| self.dropped.get(n)) {
            let why = why.clone();
            for n in defined_names(s) {
                self.dropped.insert(n, why.clone());
            }
            self.skipped
                .push((s.span.line, s.text.clone(), why.clone()));
            if let StmtKind::Expect(..) = &s.kind {
                self.main
                    .push(format!("expect_skip({}, {});", s.span.line, cstr(&why)));
            }
            return Ok(());
        }
        match &s.kind {
            StmtKind::Map(name, spec) => self.map(s, name, spec),
            StmtKind::File {
                name,
                size,
                mkwrite,
                fault_retry,
                proc,
                fs,
            } => {
                if *mkwrite != vmemu_mm::MkwriteBehaviour::None || *fault_retry || *proc {
                    return Err(NotC::Internal(
                        "a file with ->page_mkwrite/->fault behaviour or a procfs file".into(),
                    ));
                }
                if *fs != vmemu_iter::callers::iomap::FileFs::Tmpfs {
                    return Err(NotC::Internal(format!(
                        "a file on {} (the C program's files are memfds, tmpfs)",
                        fs.name()
                    )));
                }
                self.file(s, name, size)
            }
            StmtKind::Touch(name, write) => {
                let i = self.map_index(name)?;
                let mode = if *write { 0 } else { 1 };
                self.case(
                    s,
                    format!(
                        "i64 left = user_access(S->map[{i}], S->maplen[{i}], {mode}, 0);\n\t\tif (left) printf(\"  # L{} touch: %lld bytes not done\\n\", left);",
                        s.span.line
                    ),
                );
                Ok(())
            }
            StmtKind::SetFs(..) => Err(NotC::Internal("set_fs".into())),
            StmtKind::Kbuf(..) => Err(NotC::Internal("kbuf (a vmalloc'ed kernel buffer)".into())),
            StmtKind::Release(_) => {
                Err(NotC::Internal("release (put_page/unpin_user_page)".into()))
            }
            StmtKind::Repeat(..) => {
                Err(NotC::Unsupported("`repeat` blocks are not exported".into()))
            }
            StmtKind::Pipe(name) => {
                let i = self.pipes.len() + 1;
                self.clock += 1;
                self.pipes.insert(name.clone(), (i, self.cur, self.clock));
                self.case(
                    s,
                    format!(
                        "if (pipe2(S->pfd[{i}], O_NONBLOCK)) {{ perror(\"pipe2\"); exit(1); }}"
                    ),
                );
                Ok(())
            }
            StmtKind::Iter {
                name,
                kind,
                segs,
                repeat,
                ..
            } => {
                if repeat.is_some() {
                    return Err(NotC::Unsupported(
                        "an iterator built with `repeat` (expand it in the script)".into(),
                    ));
                }
                self.iter(s, name, *kind, segs)
            }
            StmtKind::Expect(t, eq, v) => self.expect(s, t, *eq, v.as_ref()),
            // `show` inspects the emulator's state: nothing to do on a real
            // kernel.
            StmtKind::Show(_) => Ok(()),
            StmtKind::Call {
                var, func, args, ..
            } => self.call(s, var.as_deref(), func, args),
        }
    }

    /// `file NAME SIZE`: a memfd holding the page-cache pattern.
    fn file(&mut self, s: &Stmt, name: &str, size: &Expr) -> Result<(), NotC> {
        let size = self.cexpr(size)?;
        let i = self.files.len() + 1;
        self.files.insert(name.to_string(), i);
        let ps = self.page_size();
        self.case(
            s,
            format!("S->ffd[{i}] = make_file((u64)({size}), {ps}ULL);"),
        );
        Ok(())
    }

    /// `iter NAME iovec|ubuf DIR [segments]`: the iovecs in `S->iov`.
    fn iter(
        &mut self,
        s: &Stmt,
        name: &str,
        kind: vmemu_iter::IterType,
        segs: &[(Expr, Expr)],
    ) -> Result<(), NotC> {
        if !matches!(
            kind,
            vmemu_iter::IterType::Iovec | vmemu_iter::IterType::Ubuf
        ) {
            return Err(NotC::Internal(format!("an {} iov_iter", kind.word())));
        }
        let off = self.niov;
        self.niov += segs.len();
        self.iters.insert(name.to_string(), (off, segs.len()));
        let mut body = String::new();
        for (k, (a, l)) in segs.iter().enumerate() {
            let (a, l) = (self.cexpr(a)?, self.cexpr(l)?);
            let _ = write!(
                body,
                "S->iov[{}].iov_base = (void *)(uintptr_t)(u64)({a}); S->iov[{}].iov_len = (size_t)(u64)({l});\n\t\t",
                off + k,
                off + k
            );
        }
        self.case(s, body.trim_end().to_string());
        Ok(())
    }

    fn map(&mut self, s: &Stmt, name: &str, spec: &MapSpec) -> Result<(), NotC> {
        if spec.device {
            return Err(NotC::Internal("device memory (VM_IO|VM_PFNMAP)".into()));
        }
        let size = self.cexpr(&spec.size)?;
        let len = if spec.in_pages {
            format!("ml({size}, {})", self.page_size())
        } else {
            size
        };
        let addr = match &spec.at {
            Some(e) => format!("(u64)({})", self.cexpr(e)?),
            None => {
                let v = self
                    .map_addrs
                    .get_mut(&s.span.line)
                    .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
                    .filter(|a| *a > 0)
                    .unwrap_or(0);
                format!("{:#x}ULL", v as u64)
            }
        };
        let mut prot = Vec::new();
        let Prot { read, write, exec } = spec.prot;
        if read {
            prot.push("PROT_READ");
        }
        if write {
            prot.push("PROT_WRITE");
        }
        if exec {
            prot.push("PROT_EXEC");
        }
        let prot = if prot.is_empty() {
            "PROT_NONE".to_string()
        } else {
            prot.join("|")
        };
        let mut flags = vec![if spec.shared {
            "MAP_SHARED"
        } else {
            "MAP_PRIVATE"
        }];
        if spec.growsdown {
            flags.push("MAP_GROWSDOWN");
        }
        let fd = match &spec.file {
            Some(f) => {
                let i = *self
                    .files
                    .get(f)
                    .ok_or_else(|| NotC::Unsupported(format!("undefined file `{f}`")))?;
                format!("S->ffd[{i}]")
            }
            None => {
                flags.push("MAP_ANONYMOUS");
                "-1".to_string()
            }
        };
        let i = self.maps.len() + 1;
        self.maps.insert(name.to_string(), i);
        let mut body = format!(
            "i64 a = do_map({i}, {addr}, (u64)({len}), {prot}, {}, {fd});\n\t\tprintf(\"  # L{} map {name} at %#llx\\n\", (u64)a);",
            flags.join("|"),
            s.span.line
        );
        if spec.huge {
            let _ = write!(
                body,
                "\n\t\tif (a > 0) madvise((void *)(uintptr_t)a, S->maplen[{i}], MADV_HUGEPAGE);"
            );
        }
        self.case(s, body);
        Ok(())
    }

    fn expect(&mut self, s: &Stmt, t: &Target, eq: bool, v: Option<&Value>) -> Result<(), NotC> {
        let var = match t {
            Target::Ret(v) => v,
            Target::Pages(_) => {
                return Err(NotC::Internal("expect on the pages gup returned".into()));
            }
            Target::Event(k) => {
                return Err(NotC::Internal(format!("expect event {}", k.name())));
            }
            Target::Field(_, f) => {
                return Err(NotC::Internal(format!("expect on an iterator's .{f}")));
            }
            Target::Leaked => return Err(NotC::Internal("expect leaked (page references)".into())),
        };
        let Some(Value::Expr(e)) = v else {
            return Err(NotC::Internal("expect on a list of pages".into()));
        };
        let (i, _) = self.var(var)?;
        let e = self.cexpr(e)?;
        let op = if eq { "==" } else { "!=" };
        let known = super::known::for_expect(&self.w.name, &s.text);
        let known = match known {
            Some((since, why)) => format!("{}, {}, {}", since.0, since.1, cstr(why)),
            None => "0, 0, NULL".to_string(),
        };
        self.main.push(format!(
            "if (S->na[{i}]) expect_skip({line}, S->na[{i}]); else expect({line}, {}, S->v[{i}] {op} ({e}), S->v[{i}], {known});",
            cstr(&s.text),
            line = s.span.line,
        ));
        Ok(())
    }

    fn var(&self, n: &str) -> Result<(usize, VarKind), NotC> {
        self.vars
            .get(n)
            .copied()
            .ok_or_else(|| NotC::Unsupported(format!("`{n}` is not a result variable")))
    }

    fn map_index(&self, n: &str) -> Result<usize, NotC> {
        self.maps
            .get(n)
            .copied()
            .ok_or_else(|| NotC::Unsupported(format!("undefined mapping `{n}`")))
    }

    /// Binds `var` (if any) to a fresh slot of `S->v`.
    fn bind(&mut self, var: Option<&str>, kind: VarKind) -> usize {
        match var {
            Some(v) => {
                let i = self.vars.len() + 1;
                self.vars.insert(v.to_string(), (i, kind));
                i
            }
            None => 0,
        }
    }

    /// A statement run in the current process.
    fn case(&mut self, s: &Stmt, body: String) {
        let k = self.cases.len();
        self.cases.push(format!(
            "\tcase {k}: {{ /* L{}: {} */\n\t\t{body}\n\t\tbreak;\n\t}}",
            s.span.line,
            s.text.replace("*/", "* /")
        ));
        self.main.push(format!("in_proc({}, {k});", self.cur));
    }

    fn call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        func: &crate::calls::CallDef,
        args: &[Arg],
    ) -> Result<(), NotC> {
        let name = func.name;
        match func.call {
            Call::Iter(_) | Call::Pipe(_) | Call::Caller(_) => {
                return Err(NotC::Internal(name.to_string()));
            }
            Call::Syscall(c) => return super::syscalls::call(self, s, var, c, name, args),
            Call::Mm(_) | Call::Bug(_) => {}
        }
        let e = |me: &Self, k: usize| -> Result<String, NotC> {
            match &args[k] {
                Arg::Expr(x) => me.cexpr(x),
                Arg::Prot(p, _) => Ok(prot_c(*p)),
                Arg::Foll(..) => Err(NotC::Internal("FOLL_* flags".into())),
            }
        };
        let c = match func.call {
            Call::Mm(MmCall::CopyToUser) => format!(
                "user_access((u64)({}), (u64)({}), 0, -1)",
                e(self, 0)?,
                e(self, 1)?
            ),
            Call::Mm(MmCall::CopyFromUser) => format!(
                "user_access((u64)({}), (u64)({}), 1, 0)",
                e(self, 0)?,
                e(self, 1)?
            ),
            Call::Mm(MmCall::ClearUser) => format!(
                "user_access((u64)({}), (u64)({}), 0, 0)",
                e(self, 0)?,
                e(self, 1)?
            ),
            Call::Mm(MmCall::Munmap) => format!(
                "rr(munmap((void *)(uintptr_t)(u64)({}), (size_t)({})))",
                e(self, 0)?,
                e(self, 1)?
            ),
            Call::Mm(MmCall::MadviseDontneed) => format!(
                "rr(madvise((void *)(uintptr_t)(u64)({}), (size_t)({}), MADV_DONTNEED))",
                e(self, 0)?,
                e(self, 1)?
            ),
            Call::Mm(MmCall::Mprotect) => format!(
                "rr(mprotect((void *)(uintptr_t)(u64)({}), (size_t)({}), {}))",
                e(self, 0)?,
                e(self, 1)?,
                e(self, 2)?
            ),
            Call::Bug(BugCall::GetUser) => format!("get_user_byte((u64)({}))", e(self, 0)?),
            Call::Bug(BugCall::PutUser) => format!(
                "(user_access((u64)({}), 1, 0, (int)({})) ? -14 : 0)",
                e(self, 0)?,
                e(self, 1)?
            ),
            Call::Bug(BugCall::Memset) => format!(
                "user_access((u64)({}), (u64)({}), 0, (int)({}))",
                e(self, 0)?,
                e(self, 2)?,
                e(self, 1)?
            ),
            _ => return Err(NotC::Internal(name.to_string())),
        };
        let i = self.bind(var, VarKind::Ret);
        self.case(
            s,
            format!(
                "S->v[{i}] = {c};\n\t\tprintf(\"  # L{} {name} = %lld\\n\", S->v[{i}]);",
                s.span.line
            ),
        );
        Ok(())
    }

    /// An expression as C (a `long long`).
    pub(super) fn cexpr(&self, e: &Expr) -> Result<String, NotC> {
        Ok(match e {
            Expr::Num(n) => lit(*n),
            Expr::Errno(n) => format!("(-{n}LL)"),
            Expr::Const(..) => {
                let v = with_arch!(self.arch, A => {
                    let l = <A as vmemu_arch::Arch>::layout(self.kernel.knobs.family);
                    crate::run::eval_const::<A>(self.w, e, l.page_offset, l.task_size_max, l.vmalloc_start)
                });
                lit(v.map_err(|err| NotC::Unsupported(err.msg))?)
            }
            Expr::Name(n, _) => {
                if let Some(i) = self.maps.get(n) {
                    format!("((i64)S->map[{i}])")
                } else if let Some((i, _)) = self.vars.get(n) {
                    format!("S->v[{i}]")
                } else {
                    return Err(NotC::Unsupported(format!("undefined name `{n}`")));
                }
            }
            Expr::Call(f, args, _) => match f.as_str() {
                "page" => {
                    let Expr::Name(n, _) = &args[0] else {
                        return Err(NotC::Unsupported("page() takes a mapping name".into()));
                    };
                    let i = self.map_index(n)?;
                    format!(
                        "ad((i64)S->map[{i}], ml({}, {}))",
                        self.cexpr(&args[1])?,
                        self.page_size()
                    )
                }
                "kaddr" => {
                    return Err(NotC::Internal("kaddr (a kernel direct-map address)".into()));
                }
                _ => {
                    let v = with_arch!(self.arch, A => {
                        let l = <A as vmemu_arch::Arch>::layout(self.kernel.knobs.family);
                        crate::run::eval_const::<A>(self.w, e, l.page_offset, l.task_size_max, l.vmalloc_start)
                    });
                    lit(v.map_err(|_| {
                        NotC::Unsupported(format!("{f}() of a value known only at run time"))
                    })?)
                }
            },
            Expr::Bin(a, op, b, _) => {
                let f = match op {
                    '+' => "ad",
                    '-' => "sb",
                    '*' => "ml",
                    '/' => "dv",
                    _ => "md",
                };
                format!("{f}({}, {})", self.cexpr(a)?, self.cexpr(b)?)
            }
        })
    }

    /// The whole program.
    pub fn program(&self, arch_name: &str, test_name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "/* {}: exported by `vmemu export-c --arch {arch_name}` (profile {}).\n * Build: cc -O1 -Wall -o {} {}.c; run: ./{}; prints KTAP version 1. */",
            self.w.name,
            self.kernel.name(),
            self.w.name,
            self.w.name,
            self.w.name
        );
        let _ = writeln!(out, "#define NVARS {}", self.vars.len().max(1));
        let _ = writeln!(out, "#define NMAPS {}", self.maps.len().max(1));
        let _ = writeln!(out, "#define NIOVS {}", self.niov.max(1));
        let _ = writeln!(out, "#define NPIPES {}", self.pipes.len().max(1));
        let _ = writeln!(out, "#define NFILES {}", self.files.len().max(1));
        let _ = writeln!(out, "#define NPROCS {}", self.nprocs.max(1));
        out.push_str(super::PRELUDE);
        out.push_str("\nstatic void run_stmt(int k)\n{\n\tswitch (k) {\n");
        for c in &self.cases {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str("\tdefault:\n\t\tbreak;\n\t}\n}\n\n");
        let nexp = self
            .main
            .iter()
            .filter(|l| l.contains("expect(") || l.contains("expect_skip("))
            .count();
        let _ = write!(
            out,
            "int main(void)\n{{\n\tS = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);\n\tif (S == MAP_FAILED) {{\n\t\tperror(\"mmap\");\n\t\treturn 1;\n\t}}\n\tsetvbuf(stdout, NULL, _IOFBF, 1 << 16);\n\tcatch_faults();\n\tprintf(\"KTAP version 1\\n1..1\\n  KTAP version 1\\n  # Subtest: {test_name}\\n  1..{nexp}\\n\");\n"
        );
        for l in &self.main {
            let _ = writeln!(out, "\t{l}");
        }
        let _ = write!(
            out,
            "\tfinish({}, \"{test_name}\");\n\treturn n_fail != 0;\n}}\n",
            self.nprocs
        );
        out
    }

    pub(super) fn push_main(&mut self, l: String) {
        self.main.push(l);
    }
    pub(super) fn cur(&self) -> usize {
        self.cur
    }
    pub(super) fn set_cur(&mut self, p: usize) {
        self.cur = p;
    }
    pub(super) fn new_proc(&mut self, var: Option<&str>) -> (usize, usize) {
        self.nprocs += 1;
        self.clock += 1;
        self.born.push(self.clock);
        let p = self.nprocs;
        (p, self.bind(var, VarKind::Proc(p)))
    }
    pub(super) fn bind_ret(&mut self, var: Option<&str>) -> usize {
        self.bind(var, VarKind::Ret)
    }
    pub(super) fn bind_pid(&mut self, var: Option<&str>, p: usize) -> usize {
        self.bind(var, VarKind::Proc(p))
    }
    pub(super) fn emit_case(&mut self, s: &Stmt, body: String) {
        self.case(s, body);
    }
    /// The process a pid argument names, if it is a process variable.
    pub(super) fn proc_of(&self, a: &Arg) -> Option<(usize, usize)> {
        if let Arg::Expr(Expr::Name(n, _)) = a
            && let Some(&(i, VarKind::Proc(p))) = self.vars.get(n)
        {
            return Some((p, i));
        }
        None
    }
    /// The C of an iterator argument: (first iovec, count).
    pub(super) fn iov(&self, a: &Arg) -> Result<(String, usize), NotC> {
        if let Arg::Expr(Expr::Name(n, _)) = a
            && let Some(&(off, n)) = self.iters.get(n)
        {
            return Ok((format!("&S->iov[{off}]"), n));
        }
        Err(NotC::Unsupported("expected an iovec iterator".into()))
    }
    /// The C of a descriptor argument; `write` picks a pipe's end.
    pub(super) fn fd(&self, a: &Arg, write: bool) -> Result<(String, Option<String>), NotC> {
        let Arg::Expr(Expr::Name(n, _)) = a else {
            return Err(NotC::Unsupported(
                "expected a pipe, a file or a descriptor".into(),
            ));
        };
        if let Some(&(i, owner, at)) = self.pipes.get(n) {
            // A pipe is open in the process that made it and in the
            // processes forked from it later.
            let ok = owner == self.cur || (owner == 0 && self.born[self.cur] > at);
            if !ok {
                return Err(NotC::Unsupported(format!(
                    "pipe `{n}` is used by a process that does not hold its descriptors"
                )));
            }
            return Ok((
                format!("S->pfd[{i}][{}]", usize::from(write)),
                Some(format!("show_pipe(\"{n}\", S->pfd[{i}][0]);")),
            ));
        }
        if let Some(&i) = self.files.get(n) {
            return Ok((format!("S->ffd[{i}]"), None));
        }
        if let Some(&(i, _)) = self.vars.get(n) {
            return Ok((format!("(int)S->v[{i}]"), None));
        }
        Err(NotC::Unsupported(format!(
            "`{n}` is not a pipe, a file or a descriptor variable"
        )))
    }
}

/// A C string literal.
pub(super) fn cstr(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '%' => o.push_str("%%"),
            c if c.is_ascii_graphic() || c == ' ' => o.push(c),
            _ => o.push('?'),
        }
    }
    o.push('"');
    o
}

fn lit(n: i128) -> String {
    if let Ok(v) = i64::try_from(n) {
        if v == i64::MIN {
            return "(i64)0x8000000000000000ULL".into();
        }
        return format!("{v}LL");
    }
    format!("(i64){:#x}ULL", n as u64)
}

fn prot_c(p: Prot) -> String {
    let mut v = Vec::new();
    if p.read {
        v.push("PROT_READ");
    }
    if p.write {
        v.push("PROT_WRITE");
    }
    if p.exec {
        v.push("PROT_EXEC");
    }
    if v.is_empty() {
        "PROT_NONE".into()
    } else {
        v.join("|")
    }
}

/// Names a statement defines.
fn defined_names(s: &Stmt) -> Vec<String> {
    match &s.kind {
        StmtKind::Map(n, _)
        | StmtKind::Kbuf(n, _, _)
        | StmtKind::Pipe(n)
        | StmtKind::File { name: n, .. }
        | StmtKind::Iter { name: n, .. } => vec![n.clone()],
        StmtKind::Call { var: Some(v), .. } => vec![v.clone()],
        StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) => {
            body.iter().flat_map(defined_names).collect()
        }
        _ => Vec::new(),
    }
}

fn expr_names(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Name(n, _) => out.push(n.clone()),
        Expr::Call(_, a, _) => a.iter().for_each(|x| expr_names(x, out)),
        Expr::Bin(a, _, b, _) => {
            expr_names(a, out);
            expr_names(b, out);
        }
        _ => {}
    }
}

/// Names a statement reads.
fn used_names(s: &Stmt) -> Vec<String> {
    let mut out = Vec::new();
    match &s.kind {
        StmtKind::Map(_, spec) => {
            expr_names(&spec.size, &mut out);
            if let Some(a) = &spec.at {
                expr_names(a, &mut out);
            }
            out.extend(spec.file.iter().cloned());
        }
        StmtKind::Touch(n, _) | StmtKind::Release(n) => out.push(n.clone()),
        StmtKind::Iter { segs, pipe, .. } => {
            for (a, l) in segs {
                expr_names(a, &mut out);
                expr_names(l, &mut out);
            }
            out.extend(pipe.iter().cloned());
        }
        StmtKind::Call { args, .. } => {
            for a in args {
                if let Arg::Expr(e) = a {
                    expr_names(e, &mut out);
                }
            }
        }
        StmtKind::Expect(t, _, v) => {
            match t {
                Target::Ret(n) | Target::Pages(n) | Target::Field(n, _) => out.push(n.clone()),
                _ => {}
            }
            if let Some(Value::Expr(e)) = v {
                expr_names(e, &mut out);
            }
        }
        _ => {}
    }
    out
}
