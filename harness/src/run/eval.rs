//! Expression evaluation: names, `kaddr`/`page`/`kdirect`/`user_alias`,
//! constants of the arch and profile, checked arithmetic; the flag and value
//! arguments of calls.

use super::*;

impl<'w, A: Arch> Runner<'w, A> {
    pub(crate) fn eval(&self, e: &Expr) -> Result<i128, ScriptError> {
        let l = self.sys.m.layout;
        match e {
            Expr::Name(n, span) => {
                self.maps
                    .get(n)
                    .map(|(a, _)| i128::from(a.0))
                    .ok_or_else(|| {
                        self.err(
                            *span,
                            format!("undefined mapping `{n}` (map it first, on this arch)"),
                        )
                    })
            }
            Expr::Call(f, args, span) if f == "kaddr" => {
                // The direct-map address of the frame behind page i of a
                // mapping or kernel buffer.
                let Expr::Name(n, nspan) = &args[0] else {
                    return Err(self.err(*span, "kaddr(NAME, INDEX) takes a mapping name first"));
                };
                let base = self.eval(&Expr::Name(n.clone(), *nspan))?;
                let i = self.eval(&args[1])?;
                let va = checked(
                    self,
                    *span,
                    i.checked_mul(i128::from(A::PAGE_SIZE))
                        .and_then(|o| o.checked_add(base)),
                )?;
                let va = VirtAddr(to_u64(self.w, va, *span)?);
                let m = &self.sys.m;
                let pa = m
                    .user_pa(m.current_mm(), va)
                    .or_else(|| m.kernel_pa(va))
                    .ok_or_else(|| {
                        self.err(
                            *span,
                            format!("page {i} of `{n}` is not present (touch it first)"),
                        )
                    })?;
                Ok(i128::from(m.page_address(pa.pfn(A::PAGE_SHIFT)).0))
            }
            Expr::Call(f, args, span) if f == "page" => {
                let Expr::Name(n, nspan) = &args[0] else {
                    return Err(self.err(*span, "page(NAME, INDEX) takes a mapping name first"));
                };
                let base = self.eval(&Expr::Name(n.clone(), *nspan))?;
                let i = self.eval(&args[1])?;
                checked(
                    self,
                    *span,
                    i.checked_mul(i128::from(A::PAGE_SIZE))
                        .and_then(|o| o.checked_add(base)),
                )
            }
            Expr::Call(f, args, span) => {
                let v: Vec<i128> = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<_, _>>()?;
                apply_func::<A>(self.w, f, &v, *span, l.page_offset)
            }
            Expr::Bin(a, op, b, span) => {
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                binop(self.w, *op, x, y, *span)
            }
            other => eval_const::<A>(
                self.w,
                other,
                l.page_offset,
                l.task_size_max,
                l.vmalloc_start,
            ),
        }
    }

    pub(crate) fn addr(&self, e: &Expr, span: Span) -> Result<VirtAddr, ScriptError> {
        let v = self.eval(e)?;
        to_u64(self.w, v, span).map(VirtAddr)
    }

    pub(crate) fn flags(&self, s: &Stmt, a: &Arg) -> Result<GupFlags, ScriptError> {
        match a {
            Arg::Expr(e) => {
                let v = self.eval(e)?;
                if v != 0 {
                    return Err(
                        self.err(s.span, "gup flags are FOLL_* names joined with `|`, or 0")
                    );
                }
                Ok(GupFlags::empty())
            }
            Arg::Foll(f, _) => Ok(*f),
            Arg::Prot(_, span) => Err(self.err(*span, "expected FOLL_* flags, found protections")),
        }
    }

    pub(crate) fn expr_arg(&self, a: &Arg, _s: &Stmt) -> Result<i128, ScriptError> {
        match a {
            Arg::Expr(e) => self.eval(e),
            Arg::Foll(_, span) | Arg::Prot(_, span) => {
                Err(self.err(*span, "expected a value, found flags"))
            }
        }
    }
}

pub(crate) fn checked<A: Arch>(
    r: &Runner<'_, A>,
    span: Span,
    v: Option<i128>,
) -> Result<i128, ScriptError> {
    v.filter(|x| (-(1i128 << 64)..(1i128 << 64)).contains(x))
        .ok_or_else(|| r.err(span, "arithmetic overflow"))
}

pub(crate) fn to_u64(w: &Workload, v: i128, span: Span) -> Result<u64, ScriptError> {
    if (-(1i128 << 63)..(1i128 << 64)).contains(&v) {
        Ok(v as u64)
    } else {
        Err(err_at(
            w,
            span,
            format!("value {v} does not fit in 64 bits"),
        ))
    }
}

pub(crate) fn binop(
    w: &Workload,
    op: char,
    x: i128,
    y: i128,
    span: Span,
) -> Result<i128, ScriptError> {
    let r = match op {
        '+' => x.checked_add(y),
        '-' => x.checked_sub(y),
        '*' => x.checked_mul(y),
        '/' => x.checked_div(y),
        _ => x.checked_rem(y),
    };
    r.filter(|v| (-(1i128 << 64)..(1i128 << 64)).contains(v))
        .ok_or_else(|| {
            err_at(
                w,
                span,
                if y == 0 && matches!(op, '/' | '%') {
                    "division by zero".to_string()
                } else {
                    "arithmetic overflow".to_string()
                },
            )
        })
}

pub(crate) fn apply_func<A: Arch>(
    w: &Workload,
    f: &str,
    v: &[i128],
    span: Span,
    page_offset: u64,
) -> Result<i128, ScriptError> {
    match f {
        "kdirect" => v[0]
            .checked_mul(i128::from(A::PAGE_SIZE))
            .and_then(|o| o.checked_add(i128::from(page_offset)))
            .filter(|x| *x < 1i128 << 64)
            .ok_or_else(|| err_at(w, span, "kdirect: frame number out of range")),
        // The user address the software walk (pgd_offset + index masking)
        // resolves for this address: its low va_bits bits.
        _ => Ok(((v[0] as u128 as u64) & ((1u64 << A::va_bits()) - 1)).into()),
    }
}

pub(crate) fn eval_const<A: Arch>(
    w: &Workload,
    e: &Expr,
    page_offset: u64,
    task_size: u64,
    vmalloc: u64,
) -> Result<i128, ScriptError> {
    match e {
        Expr::Num(n) => Ok(*n),
        Expr::Errno(e) => Ok(-i128::from(*e)),
        Expr::Const(c, _) => Ok(match c.as_str() {
            "PAGE_SIZE" => A::PAGE_SIZE.into(),
            "PAGE_SHIFT" => A::PAGE_SHIFT.into(),
            "TASK_SIZE" => task_size.into(),
            "PAGE_OFFSET" => page_offset.into(),
            "VMALLOC_START" => vmalloc.into(),
            "PMD_SIZE" => A::entry_span(Level(A::levels() as u8 - 2)).into(),
            _ => A::entry_span(Level(A::levels() as u8 - 3)).into(),
        }),
        Expr::Bin(a, op, b, span) => {
            let x = eval_const::<A>(w, a, page_offset, task_size, vmalloc)?;
            let y = eval_const::<A>(w, b, page_offset, task_size, vmalloc)?;
            binop(w, *op, x, y, *span)
        }
        Expr::Call(f, args, span) if f != "page" && f != "kaddr" => {
            let v: Vec<i128> = args
                .iter()
                .map(|a| eval_const::<A>(w, a, page_offset, task_size, vmalloc))
                .collect::<Result<_, _>>()?;
            apply_func::<A>(w, f, &v, *span, page_offset)
        }
        Expr::Name(n, span) | Expr::Call(n, _, span) => {
            Err(err_at(w, *span, format!("`{n}` cannot be used here")))
        }
    }
}
