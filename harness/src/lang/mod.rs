//! The workload language (`*.vmw`): a line-oriented script a kernel developer
//! reads without docs. See `docs/workloads.md` for the reference.
//!
//! Parsing never panics: every error carries `file:line:col`, says what was
//! expected and shows the line with a caret.

use vmemu_arch::ArchId;
use vmemu_iter::IterType;
use vmemu_mm::{EventKind, GupFlags, KernelProfile, MkwriteBehaviour, Prot};

use crate::calls::{self, CallDef};

pub use crate::diag::{ScriptError, Span};
pub use expr::{CONSTS, FUNCS};

mod cursor;
mod expr;
mod stmt;

use cursor::Cursor;

/// An expression, evaluated per arch at run time.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Expr {
    /// A literal.
    Num(i128),
    /// `PAGE_SIZE`, `TASK_SIZE`, `PAGE_OFFSET`, `VMALLOC_START`, `KERNEL_DS`...
    Const(String, Span),
    /// A mapping's start address.
    Name(String, Span),
    /// A negative errno, `-EFAULT` (kept symbolic for transcripts).
    Errno(i32),
    /// `f(args)`: `kdirect(n)`, `user_alias(x)`, `page(name, i)`.
    Call(String, Vec<Expr>, Span),
    /// Binary arithmetic.
    Bin(Box<Expr>, char, Box<Expr>, Span),
}

/// Arch / profile qualifiers of a statement: `on arm64 ppc64 kernel v4.10`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Qual {
    /// Arches (empty = all; `on all` lists every arch).
    pub arches: Vec<ArchId>,
    /// Profiles (empty = all), resolved at parse time.
    pub kernels: Vec<KernelProfile>,
}

impl Qual {
    /// Whether a statement so qualified runs on `arch` under `kernel`.
    #[must_use]
    pub fn applies(&self, arch: ArchId, kernel: &KernelProfile) -> bool {
        (self.arches.is_empty() || self.arches.contains(&arch))
            && (self.kernels.is_empty() || self.kernels.contains(kernel))
    }
}

/// Options of `map`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MapSpec {
    /// Size in bytes or pages.
    pub size: Expr,
    /// Whether `size` counts pages.
    pub in_pages: bool,
    /// `r`, `rw`, `rx`, `x`, `rwx`, `none`.
    pub prot: Prot,
    /// MAP_SHARED.
    pub shared: bool,
    /// MAP_GROWSDOWN.
    pub growsdown: bool,
    /// MADV_HUGEPAGE.
    pub huge: bool,
    /// Backing file name.
    pub file: Option<String>,
    /// VM_IO|VM_PFNMAP device memory.
    pub device: bool,
    /// Fixed address (boxed: most mappings have none, and a script holds
    /// one statement per line).
    pub at: Option<Box<Expr>>,
}

impl Default for Expr {
    fn default() -> Self {
        Expr::Num(0)
    }
}

/// The value side of an `expect`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Value {
    /// A number or `-ERRNO`.
    Expr(Expr),
    /// A list of symbolic page names.
    Pages(Vec<String>),
}

/// A field `expect VAR.FIELD` reads: a result's `start`, or an
/// iterator's `count`, `iov_offset` and `nr_segs` (`struct iov_iter`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    /// `r.start`: the offset into the first page of a gathered run.
    Start,
    /// `it.count`.
    Count,
    /// `it.iov_offset`.
    IovOffset,
    /// `it.nr_segs`.
    NrSegs,
}

impl Field {
    /// Every field.
    pub const ALL: [Field; 4] = [Field::Start, Field::Count, Field::IovOffset, Field::NrSegs];

    /// Its name in a workload.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Field::Start => "start",
            Field::Count => "count",
            Field::IovOffset => "iov_offset",
            Field::NrSegs => "nr_segs",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an `expect` looks at.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Target {
    /// `r`: the return value (or, compared with a list, the pages).
    Ret(String),
    /// `r.pages`.
    Pages(String),
    /// `event KIND`: the event happened during the run.
    Event(EventKind),
    /// `r.start`, `it.count`, `it.iov_offset`, `it.nr_segs`.
    Field(String, Field),
    /// `leaked`: page references and pins held at this point that no result
    /// variable holds (what kernel code left behind). `expect leaked == N`
    /// also tells the run's leak check to accept N held at the end.
    Leaked,
}

/// One statement.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StmtKind {
    /// `map NAME SIZE [pages] [prot] [opts] [at ADDR]`.
    Map(String, MapSpec),
    /// `file NAME SIZE [mkwrite=CODE] [fault_retry] [proc] [fs=ext4|xfs]`.
    File {
        /// Name.
        name: String,
        /// Size in bytes.
        size: Expr,
        /// `->page_mkwrite`: none, `ok`, an errno or a raw VM_FAULT code.
        mkwrite: MkwriteBehaviour,
        /// `->fault` returns RETRY once when allowed.
        fault_retry: bool,
        /// A procfs-like file: no `->splice_read` (splice uses
        /// `default_file_splice_read`).
        proc: bool,
        /// The file system (`fs=`; tmpfs by default).
        fs: vmemu_iter::callers::iomap::FileFs,
    },
    /// `touch NAME [read|write]`: fault every page in through uaccess.
    Touch(String, bool),
    /// `set_fs KERNEL_DS { ... }`.
    SetFs(bool, Vec<Stmt>),
    /// `repeat N { ... }`: the body N times (a literal count).
    Repeat(u32, Vec<Stmt>),
    /// `[r =] call(args)`.
    Call {
        /// Result variable.
        var: Option<String>,
        /// The function, resolved in [`crate::calls::CALLS`].
        func: &'static CallDef,
        /// Arguments, in the order of the function's argument kinds.
        args: Vec<Arg>,
        /// Where each argument starts and its length in characters.
        at: Vec<(Span, usize)>,
    },
    /// `expect TARGET == VALUE`.
    Expect(Target, bool, Option<Value>),
    /// `release r`: put_page/unpin every page of `r`.
    Release(String),
    /// `kbuf NAME SIZE [pages]`: a vmalloc'ed kernel buffer.
    Kbuf(String, Expr, bool),
    /// `iter NAME KIND [READ|WRITE] [ADDR:LEN, ...]` or `iter NAME discard LEN`.
    Iter {
        /// Name.
        name: String,
        /// iovec, kvec, bvec, ubuf, discard, pipe.
        kind: IterType,
        /// READ (destination) or WRITE (source).
        read: bool,
        /// Segments (address, length).
        segs: Vec<(Expr, Expr)>,
        /// `repeat N step S` after the list: a rule, expanded when the
        /// statement runs (never N copies of the expressions).
        repeat: Option<Box<SegRepeat>>,
        /// The pipe of a pipe iterator.
        pipe: Option<String>,
    },
    /// `pipe NAME`: a pipe.
    Pipe(String),
    /// `show ...`: print the state at this line ([`ShowWhat`]).
    Show(ShowWhat),
}

/// What a `show` statement prints (see `show.rs`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ShowWhat {
    /// `show ADDR` / `show NAME`: the VMA, both walks with every entry's
    /// named bits, and the `struct page` counts of the page mapped there.
    Addr(Expr),
    /// `show mm`: the mappings, `/proc/PID/maps` style with VMA flags.
    Mm,
    /// `show page NAME[i]`: page `i` of mapping `NAME`: its leaf entry and
    /// `struct page` counts.
    Page(String, Expr),
}

/// `repeat N step S` after an iterator's segment list: the list `count`
/// times, copy `k`'s addresses shifted by `k * step`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SegRepeat {
    /// N (at least 1).
    pub count: u64,
    /// S.
    pub step: Expr,
    /// Where the rule is written (for arithmetic errors of a copy).
    pub span: Span,
}

/// A call argument: an expression or a flag set.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Arg {
    /// Value.
    Expr(Expr),
    /// `FOLL_WRITE|FOLL_FORCE`.
    Foll(GupFlags, Span),
    /// `PROT_READ|PROT_WRITE`.
    Prot(Prot, Span),
}

/// A statement with its location and qualifiers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Stmt {
    /// Where it starts.
    pub span: Span,
    /// The source text (trimmed, without comment).
    pub text: String,
    /// What it does.
    pub kind: StmtKind,
    /// Where it applies.
    pub qual: Qual,
}

/// A parsed workload.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Workload {
    /// Name (file stem).
    pub name: String,
    /// File name for errors.
    pub file: String,
    /// The full source (for run-time errors with carets).
    pub source: String,
    /// Declared profiles (`kernels` line), resolved at parse time.
    pub kernels: Vec<KernelProfile>,
    /// Declared arches (`arches` line); empty = all.
    pub arches: Vec<ArchId>,
    /// Physical memory size expression.
    pub mem: Option<Expr>,
    /// Statements.
    pub stmts: Vec<Stmt>,
}

/// Limits that keep hostile scripts cheap.
pub const MAX_LINES: usize = 100_000;
/// Longest accepted line.
pub const MAX_LINE_LEN: usize = 4096;
/// Deepest `set_fs` nesting.
pub const MAX_DEPTH: usize = 16;
/// Most iterations of a `repeat` block, nested blocks multiplied.
pub const MAX_REPEAT: u64 = 65_536;

/// Most errors one file reports.
pub const MAX_ERRORS: usize = 50;

/// Parses one expression (the address argument of `vmemu explain`).
pub fn parse_expr_str(file: &str, src: &str) -> Result<Expr, ScriptError> {
    let mut c = Cursor {
        file,
        line_no: 1,
        line: src,
        pos: 0,
    };
    let e = expr::parse_expr(&mut c)?;
    if !c.at_end() {
        return Err(c.unexpected("end of expression"));
    }
    Ok(e)
}

/// Parses a workload script: the workload, or its first error.
pub fn parse(file: &str, src: &str) -> Result<Workload, ScriptError> {
    parse_all(file, src).map_err(|mut v| v.swap_remove(0))
}

/// Parses a script read as bytes: invalid UTF-8 is an error at the line
/// and column of its first bad byte.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Workload, Vec<ScriptError>> {
    parse_all(file, utf8(file, bytes)?)
}

/// `bytes` as text, or the error at its first invalid byte.
pub fn utf8<'b>(file: &str, bytes: &'b [u8]) -> Result<&'b str, Vec<ScriptError>> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line_end = bytes[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| line_start + i);
        let line_no = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let before = String::from_utf8_lossy(&good[line_start..]);
        let shown = String::from_utf8_lossy(&bytes[line_start..line_end]);
        let span = Span {
            line: line_no,
            col: before.chars().count() + 1,
        };
        vec![
            ScriptError::new(
                file,
                span,
                format!(
                    "invalid UTF-8: byte {:#04x} (a script is UTF-8 text)",
                    bytes[e.valid_up_to()]
                ),
                &shown,
            )
            .with_label("not UTF-8"),
        ]
    })
}

/// Parses a workload script and reports every error (up to [`MAX_ERRORS`]).
pub fn parse_all(file: &str, src: &str) -> Result<Workload, Vec<ScriptError>> {
    let mut p = Parser::new(file, src);
    let mut errors = Vec::new();
    for (i, raw) in src.lines().enumerate() {
        if i >= MAX_LINES {
            let c = Cursor {
                file,
                line_no: i + 1,
                line: raw,
                pos: 0,
            };
            errors.push(c.err(format!("script longer than {MAX_LINES} lines")));
            break;
        }
        if let Err(e) = p.line(i + 1, raw) {
            errors.push(e);
            if errors.len() >= MAX_ERRORS {
                break;
            }
            p.recover(i + 1, raw);
        }
    }
    if errors.len() < MAX_ERRORS
        && let Err(e) = p.unclosed()
    {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(p.finish())
    } else {
        Err(errors)
    }
}

/// The parser's state between lines: the workload and the open blocks.
struct Parser<'s> {
    file: &'s str,
    src: &'s str,
    w: Workload,
    /// Blocks: a stack of (statement being built, its body).
    stack: Vec<(Stmt, Vec<Stmt>)>,
    top: Vec<Stmt>,
}

impl<'s> Parser<'s> {
    fn new(file: &'s str, src: &'s str) -> Self {
        let name = std::path::Path::new(file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("workload")
            .to_string();
        let w = Workload {
            name,
            file: file.to_string(),
            source: src.to_string(),
            ..Workload::default()
        };
        Self {
            file,
            src,
            w,
            stack: Vec::new(),
            // At most one statement per line: reserved once, instead of
            // doublings whose freed blocks the allocator keeps.
            top: Vec::with_capacity(src.lines().count().min(MAX_LINES)),
        }
    }

    fn push(&mut self, st: Stmt) {
        match self.stack.last_mut() {
            Some((_, b)) => b.push(st),
            None => self.top.push(st),
        }
    }

    /// After an error on a line that opens a block: open a stand-in so
    /// that its `}` does not report a second error.
    fn recover(&mut self, line_no: usize, raw: &str) {
        let code = raw.split('#').next().unwrap_or("").trim_end();
        if code.ends_with('{') && self.stack.len() < MAX_DEPTH {
            let st = Stmt {
                span: Span {
                    line: line_no,
                    col: 1,
                },
                text: String::new(),
                kind: StmtKind::Repeat(1, Vec::new()),
                qual: Qual::default(),
            };
            self.stack.push((st, Vec::new()));
        }
    }

    fn line(&mut self, line_no: usize, raw: &'s str) -> Result<(), ScriptError> {
        let mut c = Cursor {
            file: self.file,
            line_no,
            line: raw,
            pos: 0,
        };
        if raw.len() > MAX_LINE_LEN {
            return Err(c.err(format!("line longer than {MAX_LINE_LEN} bytes")));
        }
        if c.at_stmt_end() {
            return Ok(());
        }
        let span = c.span();
        let text = raw.split('#').next().unwrap_or("").trim().to_string();
        if c.eat("}") {
            return self.close_block(&mut c, span);
        }
        let kw_pos = c.pos;
        let kw = c.need_ident("a statement (map, file, touch, set_fs, expect, release, show, kernels, arches, mem, or a call)")?;
        let kind = match kw {
            "kernels" => return self.kernels(&mut c),
            "arches" => return self.arches(&mut c),
            "mem" => return self.mem(&mut c),
            "set_fs" => return self.open_set_fs(&mut c, kw_pos, span, text),
            "repeat" if !c.line[c.pos..].trim_start().starts_with('=') => {
                return self.open_repeat(&mut c, kw_pos, span, text);
            }
            "map" => stmt::parse_map(&mut c)?,
            "file" => stmt::parse_file(&mut c)?,
            "touch" => stmt::parse_touch(&mut c)?,
            "expect" => stmt::parse_expect(&mut c)?,
            "release" => StmtKind::Release(c.need_ident("a result name")?.to_string()),
            "pipe" => StmtKind::Pipe(c.need_ident("a pipe name")?.to_string()),
            "kbuf" => stmt::parse_kbuf(&mut c)?,
            "iter" => stmt::parse_iter(&mut c)?,
            "show" => stmt::parse_show(&mut c)?,
            first => stmt::parse_call(&mut c, first, kw_pos)?,
        };
        let qual = stmt::parse_qual(&mut c)?;
        self.push(Stmt {
            span,
            text,
            kind,
            qual,
        });
        Ok(())
    }

    fn close_block(&mut self, c: &mut Cursor<'_>, span: Span) -> Result<(), ScriptError> {
        if !c.at_stmt_end() {
            return Err(c.unexpected("end of line after `}`"));
        }
        let Some((mut st, body)) = self.stack.pop() else {
            return Err(c
                .err_at(c.pos_of(span), "`}` without an open `set_fs` block")
                .with_label("nothing to close"));
        };
        if let StmtKind::SetFs(_, b) | StmtKind::Repeat(_, b) = &mut st.kind {
            *b = body;
        }
        self.push(st);
        Ok(())
    }

    /// `kernels PROFILE...`.
    fn kernels(&mut self, c: &mut Cursor<'_>) -> Result<(), ScriptError> {
        let mut v = Vec::new();
        while let Some((at, wd)) = c.word_at() {
            if wd.starts_with('#') {
                break;
            }
            v.push(stmt::profile_word(c, at, wd)?);
        }
        if v.is_empty() {
            return Err(c.err("expected at least one profile"));
        }
        self.w.kernels = v;
        Ok(())
    }

    /// `arches ARCH...`.
    fn arches(&mut self, c: &mut Cursor<'_>) -> Result<(), ScriptError> {
        let mut v = Vec::new();
        while let Some((at, wd)) = c.word_at() {
            if wd.starts_with('#') {
                break;
            }
            v.extend(stmt::arch_word(c, at, wd, false)?);
        }
        if v.is_empty() {
            return Err(c.err("expected at least one arch"));
        }
        self.w.arches = v;
        Ok(())
    }

    fn mem(&mut self, c: &mut Cursor<'_>) -> Result<(), ScriptError> {
        self.w.mem = Some(expr::parse_expr(c)?);
        if !c.at_end() {
            return Err(c.unexpected("end of line"));
        }
        Ok(())
    }

    /// A `{` ending the line of a block statement.
    fn open_brace(c: &mut Cursor<'_>, what: &str) -> Result<(), ScriptError> {
        c.expect("{", what)?;
        if !c.at_end() {
            return Err(c.unexpected("end of line after `{`"));
        }
        Ok(())
    }

    fn open_set_fs(
        &mut self,
        c: &mut Cursor<'_>,
        kw_pos: usize,
        span: Span,
        text: String,
    ) -> Result<(), ScriptError> {
        let (at, which) = c.need_ident_at("KERNEL_DS or USER_DS")?;
        let kds = match which {
            "KERNEL_DS" => true,
            "USER_DS" => false,
            _ => {
                return Err(c
                    .err_tok(
                        at,
                        which.len(),
                        format!("expected KERNEL_DS or USER_DS, found `{which}`"),
                    )
                    .did_you_mean(calls::suggest(which, ["KERNEL_DS", "USER_DS"])));
            }
        };
        Self::open_brace(
            c,
            "`{` (the statements of the set_fs scope follow, closed by `}`)",
        )?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(c.err_at(
                kw_pos,
                format!("set_fs blocks nested deeper than {MAX_DEPTH}"),
            ));
        }
        let kind = StmtKind::SetFs(kds, Vec::new());
        self.stack.push((
            Stmt {
                span,
                text,
                kind,
                qual: Qual::default(),
            },
            Vec::new(),
        ));
        Ok(())
    }

    fn open_repeat(
        &mut self,
        c: &mut Cursor<'_>,
        kw_pos: usize,
        span: Span,
        text: String,
    ) -> Result<(), ScriptError> {
        c.skip_ws();
        let at = c.pos;
        let n = match expr::parse_expr(c)? {
            Expr::Num(n) if (1..=MAX_REPEAT as i128).contains(&n) => n as u64,
            _ => {
                return Err(c.err_tok(
                    at,
                    c.pos - at,
                    format!("expected a literal repeat count from 1 to {MAX_REPEAT}"),
                ));
            }
        };
        let outer: u64 = self
            .stack
            .iter()
            .map(|(st, _)| match st.kind {
                StmtKind::Repeat(k, _) => u64::from(k),
                _ => 1,
            })
            .product();
        if outer.saturating_mul(n) > MAX_REPEAT {
            return Err(c.err_at(
                kw_pos,
                format!("nested repeat blocks run their body more than {MAX_REPEAT} times"),
            ));
        }
        Self::open_brace(c, "`{` (the statements to repeat follow, closed by `}`)")?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(c.err_at(kw_pos, format!("blocks nested deeper than {MAX_DEPTH}")));
        }
        let kind = StmtKind::Repeat(n as u32, Vec::new());
        self.stack.push((
            Stmt {
                span,
                text,
                kind,
                qual: Qual::default(),
            },
            Vec::new(),
        ));
        Ok(())
    }

    /// The innermost block left open at the end of the script.
    fn unclosed(&self) -> Result<(), ScriptError> {
        let Some((st, _)) = self.stack.last() else {
            return Ok(());
        };
        let line = self.src.lines().nth(st.span.line - 1).unwrap_or("");
        let msg = if matches!(st.kind, StmtKind::SetFs(..)) {
            "`set_fs` block is never closed: expected `}`"
        } else {
            "`repeat` block is never closed: expected `}`"
        };
        Err(ScriptError::new(self.file, st.span, msg, line).with_label("opened here"))
    }

    fn finish(mut self) -> Workload {
        self.w.stmts = self.top;
        self.w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cursor::parse_number;

    #[test]
    fn parses_the_design_example() {
        let src = "kernels v4.10 v4.10+capper v6.13\n\
            map victim 2 pages rw at user_alias(kdirect(256)) on arm64 ppc64 # alias\n\
            map victim 2 pages rw on x86_64\n\
            touch victim write\n\
            set_fs KERNEL_DS {\n\
              r = get_user_pages_fast(kdirect(256), 2, 0)\n\
            }\n\
            expect r == -EFAULT on x86_64\n\
            expect r.pages == [victim[0], victim[1]] on arm64 ppc64 kernel v4.10\n\
            release r\n";
        let w = parse("t.vmw", src).unwrap();
        let names = |v: &[KernelProfile]| v.iter().map(KernelProfile::name).collect::<Vec<_>>();
        assert_eq!(names(&w.kernels), ["v4.10", "v4.10+capper", "v6.13"]);
        assert_eq!(
            w.kernels[1].knobs.gup_fast_range,
            vmemu_mm::profile::GupFastRange::Capper
        );
        assert_eq!(w.stmts.len(), 7);
        let StmtKind::SetFs(true, body) = &w.stmts[3].kind else {
            panic!()
        };
        assert_eq!(body.len(), 1);
        let StmtKind::Expect(Target::Pages(_), true, Some(Value::Pages(p))) = &w.stmts[5].kind
        else {
            panic!()
        };
        assert_eq!(p, &["victim[0]", "victim[1]"]);
        assert_eq!(names(&w.stmts[5].qual.kernels), ["v4.10"]);
    }

    fn err(src: &str) -> ScriptError {
        parse("bad.vmw", src).unwrap_err()
    }

    #[test]
    fn errors_have_spans() {
        let e = err("map buf 2 pages\nfrobnicate(1)\n");
        assert_eq!((e.span.line, e.span.col), (2, 1));
        assert!(e.msg.contains("unknown statement"), "{}", e.msg);
        let e = err("map buf 0xZZ\n");
        assert_eq!(e.span.col, 9);
        assert!(
            e.to_string().starts_with("bad.vmw:1:9: expected a number"),
            "{e}"
        );
        let e = err("set_fs KERNEL_DS {\nmap a 1\n");
        assert!(e.msg.contains("never closed"));
        let e = err("repeat 3 {\nmap a 1\n");
        assert!(
            e.msg.contains("`repeat` block is never closed"),
            "{}",
            e.msg
        );
        let e = err("repeat 0 {\n}\n");
        assert_eq!((e.span.line, e.span.col), (1, 8));
        assert!(e.msg.contains("repeat count from 1 to 65536"), "{}", e.msg);
        let e = err("repeat n {\n}\n");
        assert!(e.msg.contains("literal repeat count"), "{}", e.msg);
        let e = err("repeat 256 {\nrepeat 257 {\n}\n}\n");
        assert_eq!(e.span.line, 2);
        assert!(e.msg.contains("more than 65536 times"), "{}", e.msg);
        let e = err("repeat 4 \n");
        assert!(e.msg.contains("`{`"), "{}", e.msg);
        let e = err("}\n");
        assert!(e.msg.contains("without an open"));
        let e = err("r = get_user_pages_fast(1, 2)\n");
        assert!(e.msg.contains("takes 3 arguments"), "{}", e.msg);
        let e = err("kernels v9.9\n");
        assert_eq!(e.span.col, 9);
        let e = err("expect r = 3\n");
        assert!(e.msg.contains("expected `==`"));
        let e = err("map buf 1 on mips\n");
        assert!(e.msg.contains("expected an arch"));
        let e = err("mem kdirect(1, 2)\n");
        assert!(e.msg.contains("takes 1 argument"), "{}", e.msg);
    }

    /// Every statement of every built-in workload, parsed again from its own
    /// text (the transcript shows that text), gives the same statement.
    #[test]
    fn statements_round_trip_through_their_text() {
        fn strip(k: &StmtKind) -> StmtKind {
            match k {
                StmtKind::SetFs(b, _) => StmtKind::SetFs(*b, Vec::new()),
                StmtKind::Repeat(n, _) => StmtKind::Repeat(*n, Vec::new()),
                other => other.clone(),
            }
        }
        fn spans_free(e: &str) -> String {
            // Spans differ (columns move); compare the debug text without them.
            let mut out = String::new();
            let mut skip = 0;
            for (i, _) in e.char_indices() {
                if skip > i {
                    continue;
                }
                if e[i..].starts_with("Span {") {
                    skip = i + e[i..].find('}').unwrap_or(0) + 1;
                    continue;
                }
                out.push_str(&e[i..i + e[i..].chars().next().map_or(1, char::len_utf8)]);
            }
            out
        }
        let mut n = 0;
        for (f, src) in crate::workloads::BUILTIN {
            let w = parse(f, src).unwrap();
            let mut all = Vec::new();
            let mut stack: Vec<&Stmt> = w.stmts.iter().collect();
            while let Some(s) = stack.pop() {
                if let StmtKind::SetFs(_, body) | StmtKind::Repeat(_, body) = &s.kind {
                    stack.extend(body.iter());
                }
                all.push(s);
            }
            for s in all {
                let text = if matches!(s.kind, StmtKind::SetFs(..) | StmtKind::Repeat(..)) {
                    format!("{}\n}}", s.text)
                } else {
                    s.text.clone()
                };
                let again = parse("again.vmw", &format!("{text}\n")).unwrap();
                let a = &again.stmts[0];
                assert_eq!(
                    spans_free(&format!("{:?}", strip(&a.kind))),
                    spans_free(&format!("{:?}", strip(&s.kind))),
                    "{f}: {}",
                    s.text
                );
                assert_eq!(a.qual, s.qual);
                n += 1;
            }
        }
        assert!(n > 50, "only {n} statements checked");
    }

    #[test]
    fn iter_repeat_expands_segments() {
        let w = parse(
            "t.vmw",
            "iter v iovec WRITE [b : 4K, b + 8K : 16] repeat 3 step 64K\n",
        )
        .unwrap();
        let StmtKind::Iter { segs, repeat, .. } = &w.stmts[0].kind else {
            panic!()
        };
        // The rule stays a rule: two expressions pairs and the count.
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].1, Expr::Num(4096));
        let r = repeat.as_ref().expect("a repeat rule");
        assert_eq!((r.count, &r.step), (3, &Expr::Num(64 << 10)));
        let e = err("iter v iovec WRITE [b : 1] repeat 0 step 1\n");
        assert!(e.msg.contains("repeat count"), "{}", e.msg);
        // No cap at parse time (in-kernel iterators have none; the run
        // applies --max-iovecs).
        let w = parse(
            "t.vmw",
            "iter v iovec WRITE [b : 1] repeat 2000000 step 1\n",
        )
        .unwrap();
        let StmtKind::Iter { repeat, .. } = &w.stmts[0].kind else {
            panic!()
        };
        assert_eq!(repeat.as_ref().map(|r| r.count), Some(2_000_000));
        let e = err("iter v iovec WRITE [b : 1] repeat 2 by 1\n");
        assert!(e.msg.contains("expected `step`"), "{}", e.msg);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x10"), Some(16));
        assert_eq!(parse_number("4K"), Some(4096));
        assert_eq!(parse_number("2M"), Some(2 << 20));
        assert_eq!(parse_number("1_000"), Some(1000));
        assert_eq!(parse_number("12x"), None);
    }
}
