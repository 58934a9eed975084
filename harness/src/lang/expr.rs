//! Expressions: numbers, named constants, mapping names, `-ERRNO`,
//! `kdirect(n)`-style functions and checked arithmetic.

use super::cursor::{Cursor, parse_number};
use super::{Expr, ScriptError};

/// Named constants of an arch and profile.
pub const CONSTS: [&str; 7] = [
    "PAGE_SIZE",
    "PAGE_SHIFT",
    "TASK_SIZE",
    "PAGE_OFFSET",
    "VMALLOC_START",
    "PMD_SIZE",
    "PUD_SIZE",
];
/// Functions of expressions, with their arity.
pub const FUNCS: [(&str, usize); 4] =
    [("kdirect", 1), ("user_alias", 1), ("page", 2), ("kaddr", 2)];

pub(super) fn parse_expr(c: &mut Cursor<'_>) -> Result<Expr, ScriptError> {
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
        Some('-') => parse_negative(c, span),
        Some(ch) if ch.is_ascii_digit() => parse_literal(c),
        Some(ch) if ch == '_' || ch.is_ascii_alphabetic() => parse_named(c),
        _ => Err(c.unexpected("an expression")),
    }
}

/// `-ERRNO` or a negated factor.
fn parse_negative(c: &mut Cursor<'_>, span: super::Span) -> Result<Expr, ScriptError> {
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

fn parse_literal(c: &mut Cursor<'_>) -> Result<Expr, ScriptError> {
    let w = c.word().unwrap_or_default();
    // A word may run into an operator: split at the first one.
    let cut = w.find(['+', '-', '*', '/', '%', '(']).unwrap_or(w.len());
    c.pos -= w.len() - cut;
    let w = &w[..cut];
    parse_number(w).map(Expr::Num).ok_or_else(|| {
        c.err_tok(
            c.pos - w.len(),
            w.len(),
            format!("expected a number (decimal, 0x hex, K/M/G suffix), found `{w}`"),
        )
        .with_label("not a number")
    })
}

/// A constant, a mapping name or `f(args)`.
fn parse_named(c: &mut Cursor<'_>) -> Result<Expr, ScriptError> {
    let span = c.span();
    let start = c.pos;
    let id = c.need_ident("a name")?;
    if CONSTS.contains(&id) {
        return Ok(Expr::Const(id.to_string(), span));
    }
    c.skip_ws();
    if c.peek() != Some('(') {
        return Ok(Expr::Name(id.to_string(), span));
    }
    let Some(&(_, arity)) = FUNCS.iter().find(|(n, _)| *n == id) else {
        return Err(c
            .err_tok(
                start,
                id.len(),
                format!("unknown function `{id}` (expected kdirect, user_alias, page or kaddr)"),
            )
            .with_label("not a function of expressions")
            .did_you_mean(crate::calls::suggest(id, FUNCS.iter().map(|(n, _)| *n))));
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
        return Err(c.err_tok(
            start,
            c.pos - start,
            format!("`{id}` takes {arity} argument(s), found {}", args.len()),
        ));
    }
    Ok(Expr::Call(id.to_string(), args, span))
}
