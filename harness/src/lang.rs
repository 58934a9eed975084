//! The workload language (`*.vmw`): a line-oriented script a kernel developer
//! reads without docs. See `docs/workloads.md` for the reference.
//!
//! Parsing never panics: every error carries `file:line:col`, says what was
//! expected and shows the line with a caret.

use std::fmt;

use vmemu_mm::KernelProfile;

/// A position in a script (1-based line and column).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Span {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// A script error with its location.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ScriptError {
    /// The script's file name.
    pub file: String,
    /// Where.
    pub span: Span,
    /// What was expected or went wrong.
    pub msg: String,
    /// The source line, for the caret display.
    pub source_line: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.file, self.span.line, self.span.col, self.msg
        )?;
        writeln!(f, "  | {}", self.source_line)?;
        write!(f, "  | {}^", " ".repeat(self.span.col.saturating_sub(1)))
    }
}
impl std::error::Error for ScriptError {}

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
    /// Arches (empty = all).
    pub arches: Vec<String>,
    /// Profiles (empty = all), resolved at parse time.
    pub kernels: Vec<KernelProfile>,
}

/// Options of `map`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MapSpec {
    /// Size in bytes or pages.
    pub size: Expr,
    /// Whether `size` counts pages.
    pub in_pages: bool,
    /// `r`, `rw`, `rx`, `x`, `rwx`, `none`.
    pub prot: String,
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
    /// Fixed address.
    pub at: Option<Expr>,
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

/// What an `expect` looks at.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Target {
    /// `r`: the return value (or, compared with a list, the pages).
    Ret(String),
    /// `r.pages`.
    Pages(String),
    /// `event KIND`: the event happened during the run.
    Event(String),
    /// `r.start`, `it.count`, `it.iov_offset`, `it.nr_segs`.
    Field(String, String),
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
    /// `file NAME SIZE [mkwrite=CODE] [fault_retry] [proc]`.
    File {
        /// Name.
        name: String,
        /// Size in bytes.
        size: Expr,
        /// `->page_mkwrite` result: `ok`, an errno name, or a VM_FAULT name.
        mkwrite: Option<String>,
        /// `->fault` returns RETRY once when allowed.
        fault_retry: bool,
        /// A procfs-like file: no `->splice_read` (splice uses
        /// `default_file_splice_read`).
        proc: bool,
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
        /// Function.
        func: String,
        /// Arguments (flags are words: `FOLL_WRITE|FOLL_FORCE`, `0`).
        args: Vec<Arg>,
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
        kind: String,
        /// READ (destination) or WRITE (source).
        read: bool,
        /// Segments (address, length).
        segs: Vec<(Expr, Expr)>,
        /// The pipe of a pipe iterator.
        pipe: Option<String>,
    },
    /// `pipe NAME`: a pipe.
    Pipe(String),
}

/// A call argument: an expression or a flag set.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Arg {
    /// Value.
    Expr(Expr),
    /// `FOLL_WRITE|FOLL_FORCE`, `PROT_READ|PROT_WRITE`.
    Flags(Vec<String>),
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
    pub arches: Vec<String>,
    /// Physical memory size expression.
    pub mem: Option<Expr>,
    /// Statements.
    pub stmts: Vec<Stmt>,
}

/// Limits that keep hostile scripts cheap.
pub const MAX_LINES: usize = 100_000;
/// Longest accepted line.
pub const MAX_LINE_LEN: usize = 4096;
/// Most segments of one iterator (above UIO_MAXIOV, so import_iovec's limit shows).
pub const MAX_SEGS: usize = 4096;
/// Deepest `set_fs` nesting.
pub const MAX_DEPTH: usize = 16;
/// Most iterations of a `repeat` block, nested blocks multiplied.
pub const MAX_REPEAT: u64 = 65_536;

struct Cursor<'a> {
    file: &'a str,
    line_no: usize,
    line: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl Into<String>) -> ScriptError {
        self.err_at(self.pos, msg)
    }
    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ScriptError {
        // `pos` may point inside a multi-byte character (callers add 1 to
        // a word's start): the column is that of the character holding it.
        let mut pos = pos.min(self.line.len());
        while !self.line.is_char_boundary(pos) {
            pos -= 1;
        }
        ScriptError {
            file: self.file.to_string(),
            span: Span {
                line: self.line_no,
                col: self.line[..pos].chars().count() + 1,
            },
            msg: msg.into(),
            source_line: self.line.to_string(),
        }
    }
    fn span(&self) -> Span {
        let mut pos = self.pos.min(self.line.len());
        while !self.line.is_char_boundary(pos) {
            pos -= 1;
        }
        Span {
            line: self.line_no,
            col: self.line[..pos].chars().count() + 1,
        }
    }
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }
    fn peek(&self) -> Option<char> {
        self.line[self.pos..].chars().next()
    }
    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.line.len()
    }
    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.line[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &str, what: &str) -> Result<(), ScriptError> {
        if self.eat(s) {
            Ok(())
        } else {
            let f = self.found();
            Err(self.err(format!("expected {what}, found {f}")))
        }
    }
    fn found(&mut self) -> String {
        self.skip_ws();
        match self.line[self.pos..].split_whitespace().next() {
            Some(w) => format!("`{w}`"),
            None => "end of line".to_string(),
        }
    }
    /// An identifier: `[A-Za-z_][A-Za-z0-9_]*`.
    fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let rest = &self.line[self.pos..];
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
            if !ok {
                break;
            }
            end = i + c.len_utf8();
        }
        if end == 0 {
            return None;
        }
        self.pos += end;
        Some(&rest[..end])
    }
    fn need_ident(&mut self, what: &str) -> Result<&'a str, ScriptError> {
        let save = self.pos;
        self.ident().ok_or_else(|| {
            self.pos = save;
            let f = self.found();
            self.err(format!("expected {what}, found {f}"))
        })
    }
    /// A raw word up to whitespace, `,`, `]`, `)` or `#`.
    fn word(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let rest = &self.line[self.pos..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | ')' | '#' | '{' | ':'))
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        self.pos += end;
        Some(&rest[..end])
    }
    fn peek_word(&mut self) -> Option<&'a str> {
        let save = self.pos;
        let w = self.word();
        self.pos = save;
        w
    }
}

/// Parses a number: decimal or `0x` hex, optional `K`/`M`/`G` suffix.
fn parse_number(s: &str) -> Option<i128> {
    let (digits, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1i128 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let digits = digits.replace('_', "");
    let v = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(h, 16).ok()?
    } else {
        digits.parse::<i128>().ok()?
    };
    v.checked_mul(mult)
}

const CONSTS: [&str; 7] = [
    "PAGE_SIZE",
    "PAGE_SHIFT",
    "TASK_SIZE",
    "PAGE_OFFSET",
    "VMALLOC_START",
    "PMD_SIZE",
    "PUD_SIZE",
];
const FUNCS: [(&str, usize); 4] = [("kdirect", 1), ("user_alias", 1), ("page", 2), ("kaddr", 2)];

fn parse_expr(c: &mut Cursor<'_>) -> Result<Expr, ScriptError> {
    let mut lhs = parse_term(c)?;
    loop {
        c.skip_ws();
        let span = c.span();
        let op = match c.peek() {
            Some(o @ ('+' | '-')) => o,
            _ => return Ok(lhs),
        };
        c.pos += 1;
        let rhs = parse_term(c)?;
        lhs = Expr::Bin(Box::new(lhs), op, Box::new(rhs), span);
    }
}

fn parse_term(c: &mut Cursor<'_>) -> Result<Expr, ScriptError> {
    let mut lhs = parse_factor(c)?;
    loop {
        c.skip_ws();
        let span = c.span();
        let op = match c.peek() {
            Some(o @ ('*' | '/' | '%')) => o,
            _ => return Ok(lhs),
        };
        c.pos += 1;
        let rhs = parse_factor(c)?;
        lhs = Expr::Bin(Box::new(lhs), op, Box::new(rhs), span);
    }
}

fn parse_factor(c: &mut Cursor<'_>) -> Result<Expr, ScriptError> {
    c.skip_ws();
    let span = c.span();
    match c.peek() {
        Some('(') => {
            c.pos += 1;
            let e = parse_expr(c)?;
            c.expect(")", "`)`")?;
            Ok(e)
        }
        Some('-') => {
            c.pos += 1;
            c.skip_ws();
            if c.peek().is_some_and(|ch| ch.is_ascii_uppercase()) {
                let save = c.pos;
                let id = c.need_ident("an errno name")?;
                if let Some(e) = vmemu_mm::Errno::from_name(id) {
                    return Ok(Expr::Errno(e.0));
                }
                c.pos = save;
            }
            let f = parse_factor(c)?;
            Ok(Expr::Bin(Box::new(Expr::Num(0)), '-', Box::new(f), span))
        }
        Some(ch) if ch.is_ascii_digit() => {
            let w = c.word().unwrap_or_default();
            // A word may run into an operator: split at the first one.
            let cut = w.find(['+', '-', '*', '/', '%', '(']).unwrap_or(w.len());
            c.pos -= w.len() - cut;
            let w = &w[..cut];
            parse_number(w).map(Expr::Num).ok_or_else(|| {
                c.err_at(
                    c.pos - w.len(),
                    format!("expected a number (decimal, 0x hex, K/M/G suffix), found `{w}`"),
                )
            })
        }
        Some(ch) if ch == '_' || ch.is_ascii_alphabetic() => {
            let id = c.need_ident("a name")?;
            if CONSTS.contains(&id) {
                return Ok(Expr::Const(id.to_string(), span));
            }
            c.skip_ws();
            if c.peek() == Some('(') {
                let Some(&(_, arity)) = FUNCS.iter().find(|(n, _)| *n == id) else {
                    return Err(c.err_at(
                        c.pos - id.len(),
                        format!(
                            "unknown function `{id}` (expected kdirect, user_alias, page or kaddr)"
                        ),
                    ));
                };
                c.pos += 1;
                let mut args = Vec::new();
                loop {
                    args.push(parse_expr(c)?);
                    if c.eat(",") {
                        continue;
                    }
                    c.expect(")", "`,` or `)`")?;
                    break;
                }
                if args.len() != arity {
                    return Err(c.err_at(
                        span_pos(c, span),
                        format!("`{id}` takes {arity} argument(s), found {}", args.len()),
                    ));
                }
                return Ok(Expr::Call(id.to_string(), args, span));
            }
            Ok(Expr::Name(id.to_string(), span))
        }
        _ => {
            let f = c.found();
            Err(c.err(format!("expected an expression, found {f}")))
        }
    }
}

/// The text of one page name in a list: up to a `,` or `]` outside brackets.
fn page_name_item(rest: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (i, ch) in rest.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            ']' | ',' => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

fn span_pos(c: &Cursor<'_>, s: Span) -> usize {
    c.line
        .char_indices()
        .nth(s.col - 1)
        .map_or(c.line.len(), |(i, _)| i)
}

fn parse_qual(c: &mut Cursor<'_>) -> Result<Qual, ScriptError> {
    let mut q = Qual::default();
    loop {
        if c.at_end() || c.peek() == Some('#') {
            return Ok(q);
        }
        let save = c.pos;
        match c.word() {
            Some("on") => {
                while let Some(w) = c.peek_word() {
                    if w == "kernel" || w.starts_with('#') {
                        break;
                    }
                    let at = c.pos;
                    c.word();
                    if w.parse::<vmemu_arch::ArchId>().is_err() && w != "all" {
                        return Err(c.err_at(
                            at + 1,
                            format!(
                                "expected an arch (x86_64, arm64, ppc64, ppc64-4k), found `{w}`"
                            ),
                        ));
                    }
                    q.arches.push(w.to_string());
                }
            }
            Some("kernel") => {
                while let Some(w) = c.peek_word() {
                    if w == "on" || w.starts_with('#') {
                        break;
                    }
                    let at = c.pos;
                    c.word();
                    let p = KernelProfile::parse(w).map_err(|e| c.err_at(at + 1, e.to_string()))?;
                    q.kernels.push(p);
                }
            }
            Some(w) => {
                return Err(c.err_at(
                    save + 1,
                    format!(
                        "expected `on ARCH...`, `kernel PROFILE...` or end of line, found `{w}`"
                    ),
                ));
            }
            None => return Ok(q),
        }
    }
}

fn parse_args(c: &mut Cursor<'_>) -> Result<Vec<Arg>, ScriptError> {
    let mut args = Vec::new();
    c.expect("(", "`(`")?;
    if c.eat(")") {
        return Ok(args);
    }
    loop {
        c.skip_ws();
        let save = c.pos;
        let flagish = c
            .ident()
            .is_some_and(|w| w.starts_with("FOLL_") || w.starts_with("PROT_"));
        c.pos = save;
        if flagish {
            let mut fl = Vec::new();
            loop {
                fl.push(c.need_ident("a flag")?.to_string());
                if !c.eat("|") {
                    break;
                }
            }
            args.push(Arg::Flags(fl));
        } else {
            args.push(Arg::Expr(parse_expr(c)?));
        }
        if c.eat(",") {
            continue;
        }
        c.expect(")", "`,` or `)`")?;
        return Ok(args);
    }
}

/// Functions a workload may call, with their arity.
pub const CALLS: [(&str, usize); 34] = [
    ("vmsplice", 2),
    ("readv", 2),
    ("writev", 2),
    ("splice_write", 2),
    ("copy_to_iter", 2),
    ("copy_from_iter", 2),
    ("copy_from_iter_full", 2),
    ("iov_iter_zero", 2),
    ("iov_iter_advance", 2),
    ("iov_iter_revert", 2),
    ("iov_iter_get_pages", 3),
    ("iov_iter_get_pages_alloc", 2),
    ("iov_iter_get_pages2", 3),
    ("iov_iter_get_pages_alloc2", 2),
    ("iov_iter_extract_pages", 3),
    ("iov_iter_npages", 2),
    ("iov_iter_alignment", 1),
    ("iov_iter_gap_alignment", 1),
    ("iov_iter_single_seg_count", 1),
    ("iov_iter_for_each_page", 4),
    ("iov_iter_fill_bvecs", 3),
    ("get_user_pages_fast", 3),
    ("__get_user_pages_fast", 3),
    ("get_user_pages_fast_only", 3),
    ("pin_user_pages_fast", 3),
    ("get_user_pages", 3),
    ("get_user_pages_unlocked", 3),
    ("copy_to_user", 2),
    ("copy_from_user", 2),
    ("clear_user", 2),
    ("munmap", 2),
    ("mprotect", 3),
    ("madvise_dontneed", 2),
    ("access_ok", 2),
];

/// Parses one expression (the address argument of `vmemu explain`).
pub fn parse_expr_str(file: &str, src: &str) -> Result<Expr, ScriptError> {
    let mut c = Cursor {
        file,
        line_no: 1,
        line: src,
        pos: 0,
    };
    let e = parse_expr(&mut c)?;
    if !c.at_end() {
        let f = c.found();
        return Err(c.err(format!("expected end of expression, found {f}")));
    }
    Ok(e)
}

/// Parses a workload script.
pub fn parse(file: &str, src: &str) -> Result<Workload, ScriptError> {
    let name = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("workload")
        .to_string();
    let mut w = Workload {
        name,
        file: file.to_string(),
        source: src.to_string(),
        ..Workload::default()
    };
    // Blocks: a stack of (statement being built, its body).
    let mut stack: Vec<(Stmt, Vec<Stmt>)> = Vec::new();
    let mut top: Vec<Stmt> = Vec::new();
    for (i, raw) in src.lines().enumerate() {
        let mut c = Cursor {
            file,
            line_no: i + 1,
            line: raw,
            pos: 0,
        };
        if i >= MAX_LINES {
            return Err(c.err(format!("script longer than {MAX_LINES} lines")));
        }
        if raw.len() > MAX_LINE_LEN {
            return Err(c.err(format!("line longer than {MAX_LINE_LEN} bytes")));
        }
        if c.at_end() || c.peek() == Some('#') {
            continue;
        }
        let span = c.span();
        let text = raw.split('#').next().unwrap_or("").trim().to_string();
        if c.eat("}") {
            if !c.at_end() && c.peek() != Some('#') {
                let f = c.found();
                return Err(c.err(format!("expected end of line after `}}`, found {f}")));
            }
            let Some((mut st, body)) = stack.pop() else {
                return Err(c.err_at(span_pos(&c, span), "`}` without an open `set_fs` block"));
            };
            if let StmtKind::SetFs(_, b) | StmtKind::Repeat(_, b) = &mut st.kind {
                *b = body;
            }
            match stack.last_mut() {
                Some((_, b)) => b.push(st),
                None => top.push(st),
            }
            continue;
        }
        let kw_pos = c.pos;
        let kw = c.need_ident("a statement (map, file, touch, set_fs, expect, release, kernels, arches, mem, or a call)")?;
        let kind = match kw {
            "kernels" | "arches" => {
                let mut v = Vec::new();
                let mut profiles = Vec::new();
                while let Some(wd) = c.peek_word() {
                    if wd.starts_with('#') {
                        break;
                    }
                    let at = c.pos;
                    c.word();
                    if kw == "kernels" {
                        profiles.push(
                            KernelProfile::parse(wd)
                                .map_err(|e| c.err_at(at + 1, e.to_string()))?,
                        );
                    } else if wd.parse::<vmemu_arch::ArchId>().is_err() {
                        return Err(c.err_at(
                            at + 1,
                            format!(
                                "expected an arch (x86_64, arm64, ppc64, ppc64-4k), found `{wd}`"
                            ),
                        ));
                    }
                    v.push(wd.to_string());
                }
                if v.is_empty() {
                    return Err(c.err(format!(
                        "expected at least one {}",
                        if kw == "kernels" { "profile" } else { "arch" }
                    )));
                }
                if kw == "kernels" {
                    w.kernels = profiles
                } else {
                    w.arches = v
                }
                continue;
            }
            "mem" => {
                w.mem = Some(parse_expr(&mut c)?);
                if !c.at_end() {
                    let f = c.found();
                    return Err(c.err(format!("expected end of line, found {f}")));
                }
                continue;
            }
            "map" => {
                let name = c.need_ident("a mapping name")?.to_string();
                let mut spec = MapSpec {
                    size: parse_expr(&mut c)?,
                    prot: "rw".into(),
                    ..MapSpec::default()
                };
                while let Some(wd) = c.peek_word() {
                    match wd {
                        "page" | "pages" => spec.in_pages = true,
                        "r" | "ro" | "rw" | "rx" | "x" | "rwx" | "none" | "w" => {
                            spec.prot = wd.to_string()
                        }
                        "shared" => spec.shared = true,
                        "private" => spec.shared = false,
                        "growsdown" => spec.growsdown = true,
                        "huge" => spec.huge = true,
                        "device" => spec.device = true,
                        "file" => {
                            c.word();
                            spec.file = Some(c.need_ident("a file name")?.to_string());
                            continue;
                        }
                        "at" => {
                            c.word();
                            spec.at = Some(parse_expr(&mut c)?);
                            continue;
                        }
                        _ => break,
                    }
                    c.word();
                }
                StmtKind::Map(name, spec)
            }
            "file" => {
                let name = c.need_ident("a file name")?.to_string();
                let size = parse_expr(&mut c)?;
                let mut mkwrite = None;
                let mut fault_retry = false;
                let mut proc = false;
                while let Some(wd) = c.peek_word() {
                    if let Some(v) = wd.strip_prefix("mkwrite=") {
                        let ok = v == "ok"
                            || vmemu_mm::Errno::from_name(v).is_some()
                            || vmemu_mm::VmFault::parse_name(v).is_some();
                        if !ok {
                            return Err(c.err_at(c.pos + 1 + "mkwrite=".len(), format!("expected ok, an errno (ENOSPC) or a VM_FAULT code (RETRY), found `{v}`")));
                        }
                        mkwrite = Some(v.to_string());
                    } else if wd == "fault_retry" {
                        fault_retry = true;
                    } else if wd == "proc" {
                        proc = true;
                    } else {
                        break;
                    }
                    c.word();
                }
                StmtKind::File {
                    name,
                    size,
                    mkwrite,
                    fault_retry,
                    proc,
                }
            }
            "touch" => {
                let name = c.need_ident("a mapping name")?.to_string();
                let write = match c.peek_word() {
                    Some("read") => {
                        c.word();
                        false
                    }
                    Some("write") => {
                        c.word();
                        true
                    }
                    _ => true,
                };
                StmtKind::Touch(name, write)
            }
            "set_fs" => {
                let which = c.need_ident("KERNEL_DS or USER_DS")?;
                let kds = match which {
                    "KERNEL_DS" => true,
                    "USER_DS" => false,
                    _ => {
                        return Err(c.err_at(
                            c.pos - which.len(),
                            format!("expected KERNEL_DS or USER_DS, found `{which}`"),
                        ));
                    }
                };
                c.expect(
                    "{",
                    "`{` (the statements of the set_fs scope follow, closed by `}`)",
                )?;
                if !c.at_end() {
                    let f = c.found();
                    return Err(c.err(format!("expected end of line after `{{`, found {f}")));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(c.err_at(
                        kw_pos,
                        format!("set_fs blocks nested deeper than {MAX_DEPTH}"),
                    ));
                }
                let st = Stmt {
                    span,
                    text,
                    kind: StmtKind::SetFs(kds, Vec::new()),
                    qual: Qual::default(),
                };
                stack.push((st, Vec::new()));
                continue;
            }
            "repeat" if !c.line[c.pos..].trim_start().starts_with('=') => {
                let at = c.pos + 1;
                let n = match parse_expr(&mut c)? {
                    Expr::Num(n) if (1..=MAX_REPEAT as i128).contains(&n) => n as u64,
                    _ => {
                        return Err(c.err_at(
                            at,
                            format!("expected a literal repeat count from 1 to {MAX_REPEAT}"),
                        ));
                    }
                };
                let outer: u64 = stack
                    .iter()
                    .map(|(st, _)| match st.kind {
                        StmtKind::Repeat(k, _) => u64::from(k),
                        _ => 1,
                    })
                    .product();
                if outer.saturating_mul(n) > MAX_REPEAT {
                    return Err(c.err_at(
                        kw_pos + 1,
                        format!("nested repeat blocks run their body more than {MAX_REPEAT} times"),
                    ));
                }
                c.expect(
                    "{",
                    "`{` (the statements to repeat follow, closed by `}`)",
                )?;
                if !c.at_end() {
                    let f = c.found();
                    return Err(c.err(format!("expected end of line after `{{`, found {f}")));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(c.err_at(
                        kw_pos,
                        format!("blocks nested deeper than {MAX_DEPTH}"),
                    ));
                }
                let st = Stmt {
                    span,
                    text,
                    kind: StmtKind::Repeat(n as u32, Vec::new()),
                    qual: Qual::default(),
                };
                stack.push((st, Vec::new()));
                continue;
            }
            "expect" => {
                match c.need_ident("a result name, `event` or `leaked`")? {
                    "event" => StmtKind::Expect(Target::Event(c.need_ident("an event kind (table_overrun, zero_length_walk, kernel_bug, deadlock, ...)")?.to_string()), true, None),
                    var => {
                        let t = if var == "leaked" {
                            Target::Leaked
                        } else if c.eat(".pages") {
                            Target::Pages(var.to_string())
                        } else if c.eat(".") {
                            let f = c.need_ident("a field (pages, start, count, iov_offset, nr_segs)")?;
                            if !["start", "count", "iov_offset", "nr_segs"].contains(&f) {
                                return Err(c.err_at(c.pos - f.len(), format!("unknown field `{f}` (expected pages, start, count, iov_offset or nr_segs)")));
                            }
                            Target::Field(var.to_string(), f.to_string())
                        } else {
                            Target::Ret(var.to_string())
                        };
                        let eq = if c.eat("==") {
                            true
                        } else if c.eat("!=") {
                            false
                        } else {
                            let f = c.found();
                            return Err(c.err(format!("expected `==` or `!=`, found {f}")));
                        };
                        c.skip_ws();
                        let v = if c.eat("[") {
                            let mut names = Vec::new();
                            if !c.eat("]") {
                                loop {
                                    c.skip_ws();
                                    let start = c.pos;
                                    let item = page_name_item(&c.line[c.pos..])
                                        .ok_or_else(|| c.err("expected `,` or `]` closing the page list"))?;
                                    if item.trim().is_empty() {
                                        return Err(c.err_at(start, "expected a page name such as buf[0], ZERO or vsyscall"));
                                    }
                                    names.push(item.trim().to_string());
                                    c.pos += item.len();
                                    if c.eat(",") {
                                        continue;
                                    }
                                    c.expect("]", "`,` or `]`")?;
                                    break;
                                }
                            }
                            Value::Pages(names)
                        } else {
                            Value::Expr(parse_expr(&mut c)?)
                        };
                        StmtKind::Expect(t, eq, Some(v))
                    }
                }
            }
            "release" => StmtKind::Release(c.need_ident("a result name")?.to_string()),
            "pipe" => StmtKind::Pipe(c.need_ident("a pipe name")?.to_string()),
            "kbuf" => {
                let name = c.need_ident("a kernel buffer name")?.to_string();
                let size = parse_expr(&mut c)?;
                let pages = matches!(c.peek_word(), Some("page" | "pages"));
                if pages {
                    c.word();
                }
                StmtKind::Kbuf(name, size, pages)
            }
            "iter" => {
                let name = c.need_ident("an iterator name")?.to_string();
                let at = c.pos;
                let kind = c.need_ident("an iterator kind (iovec, kvec, bvec, ubuf, discard, pipe)")?;
                if !["iovec", "kvec", "bvec", "ubuf", "discard", "pipe"].contains(&kind) {
                    return Err(c.err_at(at + 1, format!("expected an iterator kind (iovec, kvec, bvec, ubuf, discard, pipe), found `{kind}`")));
                }
                let mut segs = Vec::new();
                let mut pipe = None;
                let mut read = true;
                match kind {
                    "pipe" => pipe = Some(c.need_ident("a pipe name")?.to_string()),
                    "discard" => segs.push((Expr::Num(0), parse_expr(&mut c)?)),
                    _ => {
                        read = match c.need_ident("READ or WRITE")? {
                            "READ" => true,
                            "WRITE" => false,
                            other => return Err(c.err_at(c.pos - other.len(), format!("expected READ (the iterator is the destination) or WRITE (the source), found `{other}`"))),
                        };
                        c.expect("[", "`[` starting the segment list ADDR:LEN, ...")?;
                        if !c.eat("]") {
                            loop {
                                let a = parse_expr(&mut c)?;
                                c.expect(":", "`:` between a segment's address and length")?;
                                let l = parse_expr(&mut c)?;
                                segs.push((a, l));
                                if segs.len() > MAX_SEGS {
                                    return Err(c.err(format!("more than {MAX_SEGS} segments")));
                                }
                                if c.eat(",") {
                                    continue;
                                }
                                c.expect("]", "`,` or `]`")?;
                                break;
                            }
                        }
                        // `repeat N step S`: the list N times, copy k shifted by k * S.
                        if c.peek_word() == Some("repeat") {
                            c.word();
                            let at = c.pos;
                            let n = match parse_expr(&mut c)? {
                                Expr::Num(n) if n >= 1 => n,
                                _ => return Err(c.err_at(at, "expected a literal repeat count of at least 1")),
                            };
                            if c.peek_word() != Some("step") {
                                let f = c.found();
                                return Err(c.err(format!("expected `step` and the address step, found {f}")));
                            }
                            c.word();
                            let step = parse_expr(&mut c)?;
                            let total = segs.len() as i128 * n;
                            if total > MAX_SEGS as i128 {
                                return Err(c.err_at(at, format!("more than {MAX_SEGS} segments")));
                            }
                            let base = std::mem::take(&mut segs);
                            let sp = c.span();
                            for k in 0..n {
                                for (a, l) in &base {
                                    let off = Expr::Bin(Box::new(Expr::Num(k)), '*', Box::new(step.clone()), sp);
                                    segs.push((Expr::Bin(Box::new(a.clone()), '+', Box::new(off), sp), l.clone()));
                                }
                            }
                        }
                    }
                }
                StmtKind::Iter { name, kind: kind.to_string(), read, segs, pipe }
            }
            first => {
                // `r = call(...)` or `call(...)`.
                let (var, func, func_pos) = if c.eat("=") {
                    c.skip_ws();
                    let at = c.pos;
                    (Some(first.to_string()), c.need_ident("a function name")?, at)
                } else {
                    (None, first, kw_pos)
                };
                let all = || CALLS.iter().chain(crate::callers::CALLS).chain(crate::syscalls::CALLS).chain(crate::bugs::CALLS);
                let Some(&(_, arity)) = all().find(|(n, _)| *n == func) else {
                    let known: Vec<&str> = all().map(|(n, _)| *n).collect();
                    return Err(c.err_at(func_pos, format!("unknown statement or function `{func}` (expected map, file, touch, set_fs, expect, release or one of: {})", known.join(", "))));
                };
                let args = parse_args(&mut c)?;
                if args.len() != arity {
                    return Err(c.err_at(
                        c.pos - 1,
                        format!("`{func}` takes {arity} arguments, found {}", args.len()),
                    ));
                }
                StmtKind::Call {
                    var,
                    func: func.to_string(),
                    args,
                }
            }
        };
        let qual = parse_qual(&mut c)?;
        let st = Stmt {
            span,
            text,
            kind,
            qual,
        };
        match stack.last_mut() {
            Some((_, b)) => b.push(st),
            None => top.push(st),
        }
    }
    if let Some((st, _)) = stack.last() {
        let line = src.lines().nth(st.span.line - 1).unwrap_or("");
        return Err(ScriptError {
            file: file.to_string(),
            span: st.span,
            msg: if matches!(st.kind, StmtKind::Repeat(..)) {
                "`repeat` block is never closed: expected `}`".into()
            } else {
                "`set_fs` block is never closed: expected `}`".into()
            },
            source_line: line.to_string(),
        });
    }
    w.stmts = top;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let StmtKind::Iter { segs, .. } = &w.stmts[0].kind else {
            panic!()
        };
        assert_eq!(segs.len(), 6);
        assert_eq!(segs[4].1, Expr::Num(4096));
        let e = err("iter v iovec WRITE [b : 1] repeat 0 step 1\n");
        assert!(e.msg.contains("repeat count"), "{}", e.msg);
        let e = err("iter v iovec WRITE [b : 1] repeat 5000 step 1\n");
        assert!(e.msg.contains("more than"), "{}", e.msg);
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
