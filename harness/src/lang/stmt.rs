//! Statements: one parser per statement keyword, the call statement typed
//! against the call table, and the qualifiers.

use vmemu_arch::ArchId;
use vmemu_iter::IterType;
use vmemu_mm::{EventKind, GupFlags, KernelProfile, MkwriteBehaviour, Prot};

use super::cursor::Cursor;
use super::expr::parse_expr;
use super::{
    Arg, Expr, Field, MapSpec, Qual, ScriptError, SegRepeat, ShowWhat, StmtKind, Target, Value,
};
use crate::calls::{self, ArgKind, CallDef};

/// Where an argument starts and its length in characters.
type ArgAt = (super::Span, usize);

/// Statement keywords (for "did you mean" on an unknown word).
pub(super) const KEYWORDS: [&str; 14] = [
    "map", "file", "touch", "set_fs", "repeat", "expect", "release", "pipe", "kbuf", "iter",
    "show", "kernels", "arches", "mem",
];

/// The arch named `w` (`all`: every arch), or an error at its token.
pub(super) fn arch_word(
    c: &Cursor<'_>,
    at: usize,
    w: &str,
    all: bool,
) -> Result<Vec<ArchId>, ScriptError> {
    if all && w == "all" {
        return Ok(ArchId::ALL.to_vec());
    }
    w.parse::<ArchId>().map(|a| vec![a]).map_err(|_| {
        c.err_tok(
            at,
            w.len(),
            format!("expected an arch (x86_64, arm64, ppc64, ppc64-4k), found `{w}`"),
        )
        .with_label("unknown arch")
        .did_you_mean(calls::suggest(w, ArchId::ALL.iter().map(|a| a.name())))
    })
}

/// A profile name `w`, resolved against mm's profile table (the one place a
/// profile is parsed, with the CLI).
pub(super) fn profile_word(
    c: &Cursor<'_>,
    at: usize,
    w: &str,
) -> Result<KernelProfile, ScriptError> {
    KernelProfile::parse(w).map_err(|e| {
        let base = w.split('+').next().unwrap_or(w);
        c.err_tok(at, w.len(), e.to_string())
            .with_label("unknown profile")
            .did_you_mean(
                calls::suggest(base, KernelProfile::builtin_names().iter().copied())
                    .filter(|s| *s != base),
            )
    })
}

pub(super) fn parse_qual(c: &mut Cursor<'_>) -> Result<Qual, ScriptError> {
    let mut q = Qual::default();
    loop {
        if c.at_stmt_end() {
            return Ok(q);
        }
        match c.word_at() {
            Some((_, "on")) => {
                while let Some(w) = c.peek_word() {
                    if w == "kernel" || w.starts_with('#') {
                        break;
                    }
                    let (at, w) = c.word_at().unwrap_or_default();
                    q.arches.extend(arch_word(c, at, w, true)?);
                }
            }
            Some((_, "kernel")) => {
                while let Some(w) = c.peek_word() {
                    if w == "on" || w.starts_with('#') {
                        break;
                    }
                    let (at, w) = c.word_at().unwrap_or_default();
                    q.kernels.push(profile_word(c, at, w)?);
                }
            }
            Some((at, w)) => {
                return Err(c.err_tok(
                    at,
                    w.len(),
                    format!(
                        "expected `on ARCH...`, `kernel PROFILE...` or end of line, found `{w}`"
                    ),
                ));
            }
            None => return Ok(q),
        }
    }
}

pub(super) fn parse_map(c: &mut Cursor<'_>) -> Result<StmtKind, ScriptError> {
    let name = c.need_ident("a mapping name")?.to_string();
    let mut spec = MapSpec {
        size: parse_expr(c)?,
        prot: Prot::RW,
        ..MapSpec::default()
    };
    while let Some(wd) = c.peek_word() {
        match wd {
            "page" | "pages" => spec.in_pages = true,
            "r" | "ro" | "rw" | "rx" | "x" | "rwx" | "none" | "w" => {
                spec.prot = Prot {
                    read: wd.contains('r'),
                    write: wd.contains('w'),
                    exec: wd.contains('x'),
                }
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
                spec.at = Some(Box::new(parse_expr(c)?));
                continue;
            }
            _ => break,
        }
        c.word();
    }
    Ok(StmtKind::Map(name, spec))
}

pub(super) fn parse_file(c: &mut Cursor<'_>) -> Result<StmtKind, ScriptError> {
    let name = c.need_ident("a file name")?.to_string();
    let size = parse_expr(c)?;
    let (mut mkwrite, mut fault_retry, mut proc) = (MkwriteBehaviour::None, false, false);
    let mut fs = vmemu_iter::callers::iomap::FileFs::Tmpfs;
    while let Some(wd) = c.peek_word() {
        if let Some(v) = wd.strip_prefix("mkwrite=") {
            let parsed = if v == "ok" {
                Some(MkwriteBehaviour::Errno(None))
            } else if let Some(e) = vmemu_mm::Errno::from_name(v) {
                Some(MkwriteBehaviour::Errno(Some(e)))
            } else {
                vmemu_mm::VmFault::parse_name(v).map(MkwriteBehaviour::Raw)
            };
            let Some(parsed) = parsed else {
                c.skip_ws();
                return Err(c.err_tok(
                    c.pos + "mkwrite=".len(),
                    v.len(),
                    format!(
                        "expected ok, an errno (ENOSPC) or a VM_FAULT code (RETRY), found `{v}`"
                    ),
                ));
            };
            mkwrite = parsed;
        } else if wd == "fault_retry" {
            fault_retry = true;
        } else if wd == "proc" {
            proc = true;
        } else if let Some(v) = wd.strip_prefix("fs=") {
            let Some(f) = vmemu_iter::callers::iomap::FileFs::from_name(v) else {
                c.skip_ws();
                return Err(c.err_tok(
                    c.pos + "fs=".len(),
                    v.len(),
                    format!("expected tmpfs, ext4 or xfs, found `{v}`"),
                ));
            };
            fs = f;
        } else {
            break;
        }
        c.word();
    }
    Ok(StmtKind::File {
        name,
        size,
        mkwrite,
        fault_retry,
        proc,
        fs,
    })
}

pub(super) fn parse_touch(c: &mut Cursor<'_>) -> Result<StmtKind, ScriptError> {
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
    Ok(StmtKind::Touch(name, write))
}

/// `show mm`, `show page NAME[i]`, `show ADDR` (a name is a mapping's
/// start); the forms are listed in [`calls::SHOW_FORMS`].
pub(super) fn parse_show(c: &mut Cursor<'_>) -> Result<StmtKind, ScriptError> {
    let what = match c.peek_word() {
        Some("mm") => {
            c.word();
            ShowWhat::Mm
        }
        Some("page")
            if !c.line[c.pos..].trim_start()[4..]
                .trim_start()
                .starts_with('(') =>
        {
            c.word();
            let name = c.need_ident("a mapping name")?.to_string();
            c.expect("[", "`[` and a page index, as in `show page buf[0]`")?;
            let i = parse_expr(c)?;
            c.expect("]", "`]`")?;
            ShowWhat::Page(name, i)
        }
        _ => ShowWhat::Addr(parse_expr(c)?),
    };
    Ok(StmtKind::Show(what))
}

pub(super) fn parse_kbuf(c: &mut Cursor<'_>) -> Result<StmtKind, ScriptError> {
    let name = c.need_ident("a kernel buffer name")?.to_string();
    let size = parse_expr(c)?;
    let pages = matches!(c.peek_word(), Some("page" | "pages"));
    if pages {
        c.word();
    }
    Ok(StmtKind::Kbuf(name, size, pages))
}

pub(super) fn parse_expect(c: &mut Cursor<'_>) -> Result<StmtKind, ScriptError> {
    let (at, var) = c.need_ident_at("a result name, `event` or `leaked`")?;
    if var == "event" {
        let (at, k) = c.need_ident_at(
            "an event kind (table_overrun, zero_length_walk, kernel_bug, deadlock, ...)",
        )?;
        let kind = EventKind::from_name(k).ok_or_else(|| {
            c.err_tok(at, k.len(), format!("unknown event kind `{k}`"))
                .with_label("not an event the emulator raises")
                .did_you_mean(calls::suggest(k, EventKind::ALL.iter().map(|e| e.name())))
        })?;
        return Ok(StmtKind::Expect(Target::Event(kind), true, None));
    }
    let _ = at;
    let t = if var == "leaked" {
        Target::Leaked
    } else if c.eat(".pages") {
        Target::Pages(var.to_string())
    } else if c.eat(".") {
        let (at, f) = c.need_ident_at("a field (pages, start, count, iov_offset, nr_segs)")?;
        let Some(field) = Field::ALL.into_iter().find(|x| x.name() == f) else {
            return Err(c
                .err_tok(
                    at,
                    f.len(),
                    format!(
                        "unknown field `{f}` (expected pages, start, count, iov_offset or nr_segs)"
                    ),
                )
                .did_you_mean(calls::suggest(
                    f,
                    Field::ALL.map(Field::name).into_iter().chain(["pages"]),
                )));
        };
        Target::Field(var.to_string(), field)
    } else {
        Target::Ret(var.to_string())
    };
    let eq = if c.eat("==") {
        true
    } else if c.eat("!=") {
        false
    } else {
        return Err(c.unexpected("`==` or `!=`"));
    };
    c.skip_ws();
    let v = if c.eat("[") {
        Value::Pages(parse_page_list(c)?)
    } else {
        Value::Expr(parse_expr(c)?)
    };
    Ok(StmtKind::Expect(t, eq, Some(v)))
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

/// `[NAME, ...]` after its `[`.
fn parse_page_list(c: &mut Cursor<'_>) -> Result<Vec<String>, ScriptError> {
    let mut names = Vec::new();
    if c.eat("]") {
        return Ok(names);
    }
    loop {
        c.skip_ws();
        let start = c.pos;
        let item = page_name_item(&c.line[c.pos..])
            .ok_or_else(|| c.err("expected `,` or `]` closing the page list"))?;
        if item.trim().is_empty() {
            return Err(c.err_at(
                start,
                "expected a page name such as buf[0], ZERO or vsyscall",
            ));
        }
        names.push(item.trim().to_string());
        c.pos += item.len();
        if c.eat(",") {
            continue;
        }
        c.expect("]", "`,` or `]`")?;
        return Ok(names);
    }
}

pub(super) fn parse_iter(c: &mut Cursor<'_>) -> Result<StmtKind, ScriptError> {
    let name = c.need_ident("an iterator name")?.to_string();
    let (at, kind) =
        c.need_ident_at("an iterator kind (iovec, kvec, bvec, ubuf, discard, pipe)")?;
    let Some(ty) = IterType::from_word(kind) else {
        return Err(c
            .err_tok(
                at,
                kind.len(),
                format!("expected an iterator kind (iovec, kvec, bvec, ubuf, discard, pipe), found `{kind}`"),
            )
            .did_you_mean(calls::suggest(kind, IterType::ALL.map(IterType::word))));
    };
    let (mut segs, mut pipe, mut read, mut repeat) = (Vec::new(), None, true, None);
    match ty {
        IterType::Pipe => pipe = Some(c.need_ident("a pipe name")?.to_string()),
        IterType::Discard => segs.push((Expr::Num(0), parse_expr(c)?)),
        _ => {
            let (at, d) = c.need_ident_at("READ or WRITE")?;
            read = match d {
                "READ" => true,
                "WRITE" => false,
                other => {
                    return Err(c.err_tok(
                        at,
                        other.len(),
                        format!("expected READ (the iterator is the destination) or WRITE (the source), found `{other}`"),
                    ));
                }
            };
            (segs, repeat) = parse_segments(c)?;
        }
    }
    Ok(StmtKind::Iter {
        name,
        kind: ty,
        read,
        segs,
        repeat,
        pipe,
    })
}

/// The segment list of an iterator, and its repeat rule.
type Segments = (Vec<(Expr, Expr)>, Option<Box<SegRepeat>>);

/// `[ADDR:LEN, ...] [repeat N step S]`. No segment cap here: in-kernel
/// iterators have none (`UIO_MAXIOV` bounds only the arrays syscalls copy
/// in, see `import_iovec`); a run applies `--max-iovecs`.
fn parse_segments(c: &mut Cursor<'_>) -> Result<Segments, ScriptError> {
    let mut segs = Vec::new();
    c.expect("[", "`[` starting the segment list ADDR:LEN, ...")?;
    if !c.eat("]") {
        loop {
            let a = parse_expr(c)?;
            c.expect(":", "`:` between a segment's address and length")?;
            let l = parse_expr(c)?;
            segs.push((a, l));
            if c.eat(",") {
                continue;
            }
            c.expect("]", "`,` or `]`")?;
            break;
        }
    }
    let mut repeat = None;
    if c.peek_word() == Some("repeat") {
        c.word();
        repeat = Some(parse_seg_repeat(c)?);
    }
    Ok((segs, repeat))
}

/// `repeat N step S`: the list N times, copy k shifted by k * S (kept as
/// this rule; the run expands it).
fn parse_seg_repeat(c: &mut Cursor<'_>) -> Result<Box<SegRepeat>, ScriptError> {
    c.skip_ws();
    let at = c.pos;
    let count = match parse_expr(c)? {
        Expr::Num(n) if n >= 1 => u64::try_from(n).ok(),
        _ => None,
    };
    let Some(count) = count else {
        return Err(c.err_tok(
            at,
            c.pos - at,
            "expected a literal repeat count of at least 1",
        ));
    };
    if c.peek_word() != Some("step") {
        return Err(c.unexpected("`step` and the address step"));
    }
    c.word();
    let step = parse_expr(c)?;
    Ok(Box::new(SegRepeat {
        count,
        step,
        span: c.span(),
    }))
}

/// `[VAR =] FUNC(ARGS)`, `first` already read at `first_pos`.
pub(super) fn parse_call(
    c: &mut Cursor<'_>,
    first: &str,
    first_pos: usize,
) -> Result<StmtKind, ScriptError> {
    let (var, func, func_pos) = if c.eat("=") {
        let (at, f) = c.need_ident_at("a function name")?;
        (Some(first.to_string()), f, at)
    } else {
        (None, first, first_pos)
    };
    let Some(def) = calls::lookup(func) else {
        let names = calls::CALLS.iter().map(|d| d.name);
        let guess = if var.is_some() {
            calls::suggest(func, names)
        } else {
            calls::suggest(func, names.chain(KEYWORDS))
        };
        let e = c
            .err_tok(
                func_pos,
                func.len(),
                format!("unknown statement or function `{func}`"),
            )
            .with_label("not a statement or workload function");
        return Err(match guess {
            Some(_) => e.did_you_mean(guess),
            None => e.with_help("docs/workloads.md lists the statements and functions"),
        });
    };
    let (args, at) = parse_args(c, def)?;
    if args.len() != def.args.len() {
        return Err(c.err_at(
            c.pos - 1,
            format!(
                "`{func}` takes {} arguments, found {}",
                def.args.len(),
                args.len()
            ),
        ));
    }
    Ok(StmtKind::Call {
        var,
        func: def,
        args,
        at,
    })
}

/// `(ARG, ...)`: each argument as its kind in `def` asks.
fn parse_args(c: &mut Cursor<'_>, def: &CallDef) -> Result<(Vec<Arg>, Vec<ArgAt>), ScriptError> {
    let (mut args, mut at) = (Vec::new(), Vec::new());
    c.expect("(", "`(`")?;
    if c.eat(")") {
        return Ok((args, at));
    }
    loop {
        c.skip_ws();
        let start = c.pos;
        let kind = def.args.get(args.len()).copied();
        let a = parse_arg(c, def, kind)?;
        at.push((
            c.span_at(start),
            c.line[start..c.pos].trim_end().chars().count(),
        ));
        args.push(a);
        if c.eat(",") {
            continue;
        }
        c.expect(")", "`,` or `)`")?;
        return Ok((args, at));
    }
}

/// One argument: a flag set where the word starts `FOLL_`/`PROT_`, else an
/// expression; checked against the argument's kind.
fn parse_arg(c: &mut Cursor<'_>, def: &CallDef, kind: Option<ArgKind>) -> Result<Arg, ScriptError> {
    let start = c.pos;
    let word = c.ident();
    c.pos = start;
    let a = match word {
        Some(w) if w.starts_with("FOLL_") => parse_flag_set(c, true)?,
        Some(w) if w.starts_with("PROT_") => parse_flag_set(c, false)?,
        _ => Arg::Expr(parse_expr(c)?),
    };
    let Some(kind) = kind else { return Ok(a) };
    let mismatch = match (&a, kind) {
        (Arg::Foll(..), ArgKind::Foll) | (Arg::Prot(..), ArgKind::Prot) => false,
        (Arg::Foll(..) | Arg::Prot(..), _) => true,
        (Arg::Expr(Expr::Name(..) | Expr::Const(..)), _) => false,
        (
            Arg::Expr(_),
            ArgKind::Iter
            | ArgKind::Pipe
            | ArgKind::File
            | ArgKind::Fd
            | ArgKind::Result
            | ArgKind::Word(_),
        ) => true,
        (Arg::Expr(_), _) => false,
    };
    if mismatch {
        let n = def.args.len();
        return Err(c
            .err_tok(
                start,
                c.pos - start,
                format!("`{}` wants {} here", def.name, kind.describe()),
            )
            .with_label(format!("argument {} of {n}", args_index(def, c, start))));
    }
    if let (ArgKind::Word(words), Arg::Expr(Expr::Name(w, _))) = (kind, &a)
        && !words.contains(&w.as_str())
    {
        return Err(c
            .err_tok(
                start,
                w.len(),
                format!("expected one of {}, found `{w}`", words.join(", ")),
            )
            .did_you_mean(calls::suggest(w, words.iter().copied())));
    }
    Ok(a)
}

/// Which argument (1-based) starts at `start` (for labels).
fn args_index(_def: &CallDef, c: &Cursor<'_>, start: usize) -> usize {
    let open = c.line[..start].rfind('(').unwrap_or(0);
    c.line[open..start].matches(',').count() + 1
}

/// `FOLL_A|FOLL_B` (`foll`) or `PROT_A|PROT_B`.
fn parse_flag_set(c: &mut Cursor<'_>, foll: bool) -> Result<Arg, ScriptError> {
    c.skip_ws();
    let span = c.span();
    let (mut f, mut p) = (GupFlags::empty(), Prot::NONE);
    loop {
        let (at, n) = c.need_ident_at("a flag")?;
        let known = if foll {
            GupFlags::from_name(n).map(|x| f |= x).is_some()
        } else {
            calls::prot_from_name(n)
                .map(|x| {
                    p.read |= x.read;
                    p.write |= x.write;
                    p.exec |= x.exec;
                })
                .is_some()
        };
        if !known {
            let e = if foll {
                c.err_tok(at, n.len(), format!("unknown flag `{n}` (expected a FOLL_* name such as FOLL_WRITE, FOLL_FORCE, FOLL_LONGTERM)"))
                    .with_label("not a FOLL_* flag")
                    .did_you_mean(calls::suggest(n, calls::foll_names()))
            } else {
                c.err_tok(at, n.len(), format!("unknown protection `{n}` (expected PROT_READ, PROT_WRITE, PROT_EXEC or PROT_NONE)"))
                    .with_label("not a PROT_* protection")
                    .did_you_mean(calls::suggest(n, calls::PROT_NAMES))
            };
            return Err(e);
        }
        if !c.eat("|") {
            break;
        }
    }
    Ok(if foll {
        Arg::Foll(f, span)
    } else {
        Arg::Prot(p, span)
    })
}
