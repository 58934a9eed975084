//! The `sys_*` calls and the process statements (`new_process`, `fork`,
//! `switch_to`, `getpid`, `exit`) as C.

use super::emit::{Emitter, NotC};
use crate::calls::SysCall;
use crate::lang::{Arg, Expr, Stmt};

/// The C of one call of the syscall family.
pub(super) fn call(
    em: &mut Emitter<'_>,
    s: &Stmt,
    var: Option<&str>,
    call: SysCall,
    name: &str,
    args: &[Arg],
) -> Result<(), NotC> {
    match call {
        SysCall::NewProcess
        | SysCall::Fork
        | SysCall::Getpid
        | SysCall::SwitchTo
        | SysCall::Exit => process(em, var, call, name, args, s.span.line),
        _ => io_call(em, s, var, call, name, args),
    }
}

/// The process statements: run by the first process, which drives the
/// others.
fn process(
    em: &mut Emitter<'_>,
    var: Option<&str>,
    call: SysCall,
    name: &str,
    args: &[Arg],
    line: usize,
) -> Result<(), NotC> {
    match call {
        SysCall::NewProcess | SysCall::Fork => {
            if em.cur() != 0 {
                return Err(NotC::Unsupported(format!(
                    "{name}() from a process other than the first"
                )));
            }
            let fresh = i32::from(call == SysCall::NewProcess);
            let (p, i) = em.new_proc(var);
            em.push_main(format!(
                "S->v[{i}] = spawn({p}, {fresh}); printf(\"  # L{line} {name}: pid %lld\\n\", S->v[{i}]);"
            ));
            Ok(())
        }
        SysCall::Getpid => {
            let p = em.cur();
            let i = em.bind_pid(var, p);
            let pid = if p == 0 {
                "getpid()".to_string()
            } else {
                format!("P[{p}].pid")
            };
            em.push_main(format!("S->v[{i}] = {pid};"));
            Ok(())
        }
        _ => {
            let (p, _) = em.proc_of(&args[0]).ok_or_else(|| {
                NotC::Unsupported(format!(
                    "{name}() of something that is not a process variable"
                ))
            })?;
            let i = em.bind_ret(var);
            if call == SysCall::SwitchTo {
                em.set_cur(p);
                em.push_main(format!("S->cur = {p}; S->v[{i}] = 0;"));
            } else {
                if p == 0 {
                    return Err(NotC::Unsupported("exit() of the first process".into()));
                }
                em.push_main(format!("S->v[{i}] = end_proc({p});"));
            }
            Ok(())
        }
    }
}

/// The calls that move bytes, run in the current process.
fn io_call(
    em: &mut Emitter<'_>,
    s: &Stmt,
    var: Option<&str>,
    call: SysCall,
    name: &str,
    args: &[Arg],
) -> Result<(), NotC> {
    let line = s.span.line;
    match call {
        SysCall::OpenBlkdev => {
            let size = expr(em, &args[0])?;
            let flags = open_flags(&args[1])?;
            let i = em.bind_ret(var);
            let ps = em.arch.page_size();
            em.emit_case(
                s,
                format!(
                    "S->v[{i}] = open_blkdev((u64)({size}), {flags}, {ps}ULL, {i});\n\t\tprintf(\"  # L{line} open_blkdev = %lld\\n\", S->v[{i}]);"
                ),
            );
            Ok(())
        }
        SysCall::ProcessVmRw { write } => {
            let pid = match em.proc_of(&args[0]) {
                Some((_, i)) => format!("S->v[{i}]"),
                None => format!("absent_pid({})", expr(em, &args[0])?),
            };
            let (l, ln) = em.iov(&args[1])?;
            let (r, rn) = em.iov(&args[2])?;
            let f = if write {
                "process_vm_writev"
            } else {
                "process_vm_readv"
            };
            let i = em.bind_ret(var);
            em.emit_case(
                s,
                format!(
                    "S->v[{i}] = rr({f}((pid_t){pid}, {l}, {ln}, {r}, {rn}, 0));\n\t\tprintf(\"  # L{line} {name} = %lld\\n\", S->v[{i}]);{}",
                    if !write {
                        format!("\n\t\tshow_landed({l}, {ln}, S->v[{i}]);")
                    } else {
                        String::new()
                    }
                ),
            );
            Ok(())
        }
        SysCall::Open => Err(NotC::Unsupported(
            "`open` of a file (the C program opens each file once, as a memfd)".into(),
        )),
        _ => rw_call(em, s, var, call, name, args),
    }
}

/// `sys_readv`, `sys_writev`, `sys_preadv`, `sys_pwritev`, `sys_vmsplice`.
fn rw_call(
    em: &mut Emitter<'_>,
    s: &Stmt,
    var: Option<&str>,
    call: SysCall,
    name: &str,
    args: &[Arg],
) -> Result<(), NotC> {
    let line = s.span.line;
    let (iov, n) = em.iov(&args[1])?;
    // Which end of a pipe: the direction of the call, or for vmsplice the
    // direction of its iterator (WRITE: user pages go into the pipe).
    let write = match call {
        SysCall::Vmsplice => iter_is_write(em, s),
        SysCall::ReadWritev { write, .. } => write,
        _ => {
            return Err(NotC::Unsupported(format!(
                "`{name}` is not a read or write"
            )));
        }
    };
    let (fd, show) = em.fd(&args[0], write)?;
    let call = match call {
        SysCall::ReadWritev {
            write,
            positioned: false,
        } => format!(
            "{}({fd}, {iov}, {n})",
            if write { "writev" } else { "readv" }
        ),
        SysCall::ReadWritev {
            write,
            positioned: true,
        } => format!(
            "{}({fd}, {iov}, {n}, (off_t)({}))",
            if write { "pwritev" } else { "preadv" },
            expr(em, &args[2])?
        ),
        _ => format!(
            "vmsplice({fd}, {iov}, {n}, (unsigned)({}))",
            open_flags(&args[2])?
        ),
    };
    let i = em.bind_ret(var);
    let mut body = format!(
        "S->v[{i}] = rr({call});\n\t\tprintf(\"  # L{line} {name} = %lld\\n\", S->v[{i}]);"
    );
    if !write {
        body.push_str(&format!("\n\t\tshow_landed({iov}, {n}, S->v[{i}]);"));
    }
    if let Some(show) = show {
        body.push_str("\n\t\t");
        body.push_str(&show);
    }
    // A descriptor that could not be had (no loop device): the call is
    // not made and what depends on it is skipped.
    if let Arg::Expr(Expr::Name(..)) = &args[0]
        && fd.starts_with("(int)S->v[")
    {
        let d = &fd["(int)S->v[".len()..fd.len() - 1];
        body = format!(
            "if (S->na[{d}]) {{\n\t\t\tS->na[{i}] = S->na[{d}];\n\t\t\tbreak;\n\t\t}}\n\t\t{body}"
        );
    }
    em.emit_case(s, body);
    Ok(())
}

fn iter_is_write(em: &Emitter<'_>, s: &Stmt) -> bool {
    let crate::lang::StmtKind::Call { args, .. } = &s.kind else {
        return false;
    };
    let Arg::Expr(Expr::Name(it, _)) = &args[1] else {
        return false;
    };
    em.w.stmts
        .iter()
        .rev()
        .filter(|x| x.span.line < s.span.line)
        .find_map(|x| match &x.kind {
            crate::lang::StmtKind::Iter { name, read, .. } if name == it => Some(!read),
            _ => None,
        })
        .unwrap_or(false)
}

fn expr(em: &Emitter<'_>, a: &Arg) -> Result<String, NotC> {
    match a {
        Arg::Expr(e) => em.cexpr(e),
        _ => Err(NotC::Unsupported("expected a value".into())),
    }
}

/// `O_DIRECT`, `SPLICE_F_*` or a number, as C.
fn open_flags(a: &Arg) -> Result<String, NotC> {
    match a {
        Arg::Expr(Expr::Name(n, _) | Expr::Const(n, _)) => Ok(match n.as_str() {
            "O_DIRECT" => "O_DIRECT",
            "SPLICE_F_MOVE" => "SPLICE_F_MOVE",
            "SPLICE_F_NONBLOCK" => "SPLICE_F_NONBLOCK",
            "SPLICE_F_MORE" => "SPLICE_F_MORE",
            "SPLICE_F_GIFT" => "SPLICE_F_GIFT",
            other => return Err(NotC::Unsupported(format!("unknown flag `{other}`"))),
        }
        .to_string()),
        Arg::Expr(Expr::Num(n)) => Ok(format!("{n}")),
        _ => Err(NotC::Unsupported("expected flags".into())),
    }
}
