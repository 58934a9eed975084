//! Syscalls as workload statements, over the library layer
//! [`vmemu_iter::syscalls`] (6.13 argument checks and partial results).
//!
//! An `iter NAME iovec DIR [...]` statement doubles as the user's iovec
//! array: a syscall takes its remaining segments as `iov`/`iovcnt` (the
//! direction is the syscall's, not the iterator's). The first argument of
//! the read/write calls names a pipe (its read end for reads, its write end
//! for writes), a `file` (opened read-write once), or a result variable
//! holding a descriptor (`open_blkdev`).
//!
//! | statement | what it does |
//! |---|---|
//! | `r = sys_readv(p, v)`, `sys_writev(p, v)` | readv/writev |
//! | `r = sys_preadv(f, v, pos)`, `sys_pwritev(f, v, pos)` | preadv/pwritev |
//! | `r = sys_vmsplice(p, v, FLAGS)` | vmsplice; a `WRITE` iterator goes to the write end, `READ` reads from the read end |
//! | `d = open(f, O_DIRECT)` | open a `file` (flags `O_DIRECT` or `0`): `O_DIRECT` on a `fs=ext4`/`fs=xfs` file makes its reads and writes direct (`iomap_dio_rw`), on tmpfs it is `-EINVAL` |
//! | `d = open_blkdev(SIZE, O_DIRECT)` | a block device with 512-byte logical blocks, opened (flags `O_DIRECT` or `0`) |
//! | `t = new_process()`, `switch_to(t)`, `me = getpid()` | a second process (its own mm); make a task current (`map` then maps there) |
//! | `c = fork()`, `exit(c)` | fork the current process (the child's pid; the parent stays current); a task exits (its mm is torn down; if it was current, its parent becomes current) |
//! | `r = sys_process_vm_readv(t, local, remote)`, `sys_process_vm_writev(...)` | process_vm_readv/writev with flags 0 |

use vmemu_arch::Arch;
use vmemu_iter::Iovec;
use vmemu_iter::iov_iter::Dir;
use vmemu_iter::splice::{SPLICE_F_GIFT, SPLICE_F_MORE, SPLICE_F_MOVE, SPLICE_F_NONBLOCK};
use vmemu_iter::syscalls::{FileKind, O_DIRECT};
use vmemu_mm::Errno;
use vmemu_mm::sync::TaskId;

use crate::calls::SysCall;
use crate::lang::{Arg, Expr, ScriptError, Stmt};
use crate::run::{Runner, Var, set_err, to_u64};

/// Which end of a pipe a call wants.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Read,
    Write,
}

impl<A: Arch> Runner<'_, A> {
    /// Runs a syscall statement.
    pub(crate) fn exec_syscall(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        call: SysCall,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let mut r = self.record(s, func);
        let mut pipe_shown = None;
        let res = match call {
            SysCall::ReadWritev { .. } | SysCall::Vmsplice | SysCall::ProcessVmRw { .. } => {
                self.sys_io(s, call, args, &mut pipe_shown)?
            }
            _ => self.sys_task(s, call, args, &mut r.detail)?,
        };
        match res {
            Ok(v) => r.ret = Some(v as i64),
            Err(e) => set_err(&mut r, e),
        }
        if let Some(p) = pipe_shown {
            r.detail = Some(self.pipe_detail(p));
        }
        let retv = r.ret.unwrap_or(0);
        self.push(r);
        if let Some(v) = var {
            self.bind(s, v, Var::ret(retv))?;
        }
        Ok(())
    }

    /// The calls that move data through iovecs; `pipe_shown` receives the
    /// pipe whose state the record shows.
    fn sys_io(
        &mut self,
        s: &Stmt,
        call: SysCall,
        args: &[Arg],
        pipe_shown: &mut Option<usize>,
    ) -> Result<Result<u64, Errno>, ScriptError> {
        Ok(match call {
            SysCall::ReadWritev { write, positioned } => {
                let end = if write { End::Write } else { End::Read };
                let (fd, pipe) = self.fd_arg(s, &args[0], end)?;
                *pipe_shown = pipe;
                if let Ok(f) = self.sys.fdget(fd)
                    && let FileKind::Regular(file) = f.kind
                    && write
                    && f.direct
                    && !self.sys.file_dio_write_modelled(file)
                {
                    return Err(self.err(
                        s.span,
                        format!(
                            "O_DIRECT writes of an ext4 file under {} (ext4_direct_IO_write over fs/direct-io.c) are not modelled",
                            self.sys.m.profile
                        ),
                    ));
                }
                let iov = self.iov_arg(s, &args[1])?;
                if positioned {
                    let pos = self.expr_arg(&args[2], s)?;
                    let pos = i64::try_from(pos)
                        .map_err(|_| self.err(s.span, "pos must fit in a loff_t"))?;
                    if write {
                        self.sys.sys_pwritev(fd, iov, pos)
                    } else {
                        self.sys.sys_preadv(fd, iov, pos)
                    }
                } else if write {
                    self.sys.sys_writev(fd, iov)
                } else {
                    self.sys.sys_readv(fd, iov)
                }
            }
            SysCall::Vmsplice => {
                let dir = self.iter_dir(s, &args[1])?;
                let end = if dir == Dir::Write {
                    End::Write
                } else {
                    End::Read
                };
                let (fd, pipe) = self.fd_arg(s, &args[0], end)?;
                *pipe_shown = pipe;
                let iov = self.iov_arg(s, &args[1])?;
                let flags = self.flag_arg(s, &args[2])?;
                self.sys.sys_vmsplice(fd, iov, flags)
            }
            SysCall::ProcessVmRw { write } => {
                let pid = self.expr_or_var(s, &args[0])?;
                let pid = u32::try_from(pid).map_err(|_| self.err(s.span, "bad pid"))?;
                let local = self.iov_arg(s, &args[1])?;
                let remote = self.iov_arg(s, &args[2])?;
                if write {
                    self.sys
                        .sys_process_vm_writev(TaskId(pid), local, remote, 0)
                } else {
                    self.sys.sys_process_vm_readv(TaskId(pid), local, remote, 0)
                }
            }
            _ => self.sys_task(s, call, args, &mut None)?,
        })
    }

    /// Devices and processes; `detail` receives what `fork` shares.
    fn sys_task(
        &mut self,
        s: &Stmt,
        call: SysCall,
        args: &[Arg],
        detail: &mut Option<String>,
    ) -> Result<Result<u64, Errno>, ScriptError> {
        Ok(match call {
            SysCall::OpenBlkdev => {
                let size = to_u64(self.w, self.expr_arg(&args[0], s)?, s.span)?;
                if !(512..=(64 << 20)).contains(&size) {
                    return Err(self.err(s.span, "a block device has 512 bytes .. 64 MiB"));
                }
                let flags = self.flag_arg(s, &args[1])?;
                let dev = self.sys.blkdev_create(size);
                self.sys.sys_open_bdev(dev, flags).map(|fd| fd as u64)
            }
            SysCall::Open => {
                let n = self.name_arg(s, &args[0])?;
                let Some(&f) = self.files.get(n) else {
                    return Err(self.err(s.span, format!("undefined file `{n}`")));
                };
                let flags = self.flag_arg(s, &args[1])?;
                self.sys.sys_open_file(f, flags).map(|fd| fd as u64)
            }
            SysCall::NewProcess => {
                let mm = self
                    .sys
                    .m
                    .mm_alloc()
                    .map_err(|e| self.err(s.span, e.to_string()))?;
                Ok(u64::from(self.sys.m.new_task(mm).0))
            }
            SysCall::SwitchTo => {
                let pid = self.expr_or_var(s, &args[0])?;
                match u32::try_from(pid) {
                    Ok(p)
                        if (p as usize) < self.sys.m.tasks.len()
                            && !self.sys.m.tasks[p as usize].exited =>
                    {
                        self.sys.m.current = TaskId(p);
                        Ok(0)
                    }
                    _ => Err(Errno::ESRCH),
                }
            }
            SysCall::Getpid => Ok(u64::from(self.sys.m.current.0)),
            SysCall::Fork => self.sys.m.fork().map(|(t, st)| {
                *detail = Some(format!(
                    "child {}: shared {} anon + {} file page(s) (private writable entries write-protected), copied {} maybe-pinned page(s), {} entries without struct page",
                    t.0, st.anon_shared, st.file_shared, st.copied, st.uncounted
                ));
                u64::from(t.0)
            }),
            SysCall::Exit => {
                let pid = self.expr_or_var(s, &args[0])?;
                match u32::try_from(pid) {
                    Ok(p) => self.sys.m.exit_task(TaskId(p)).map(|()| 0),
                    Err(_) => Err(Errno::ESRCH),
                }
            }
            _ => self.sys_io(s, call, args, &mut None)?,
        })
    }

    fn name_arg<'a>(&self, s: &Stmt, a: &'a Arg) -> Result<&'a str, ScriptError> {
        match a {
            Arg::Expr(Expr::Name(n, _) | Expr::Const(n, _)) => Ok(n),
            _ => Err(self.err(s.span, "expected a name")),
        }
    }

    /// A descriptor: a pipe (the wanted end), a file (opened once) or a
    /// result variable holding a descriptor. Also returns the pipe.
    fn fd_arg(&mut self, s: &Stmt, a: &Arg, end: End) -> Result<(i32, Option<usize>), ScriptError> {
        let n = self.name_arg(s, a)?.to_string();
        if let Some(&p) = self.pipes.get(&n) {
            let want = match end {
                End::Read => FileKind::PipeRead(p),
                End::Write => FileKind::PipeWrite(p),
            };
            let fd = match self.sys.fds.iter().position(|f| f.kind == want) {
                Some(fd) => fd as i32,
                None => {
                    let (r, w) = self.sys.pipe_fds(p);
                    if end == End::Read { r } else { w }
                }
            };
            return Ok((fd, Some(p)));
        }
        if let Some(&f) = self.files.get(&n) {
            let want = FileKind::Regular(f);
            let fd = match self.sys.fds.iter().position(|o| o.kind == want) {
                Some(fd) => fd as i32,
                None => self
                    .sys
                    .sys_open_file(f, 0)
                    .map_err(|e| self.err(s.span, format!("open {n}: {e}")))?,
            };
            return Ok((fd, None));
        }
        if let Some(v) = self.vars.get(&n) {
            return Ok((v.ret as i32, None));
        }
        Err(self.err(
            s.span,
            format!("`{n}` is not a pipe, a file or a descriptor variable"),
        ))
    }

    fn iter_dir(&self, s: &Stmt, a: &Arg) -> Result<Dir, ScriptError> {
        let n = self.name_arg(s, a)?;
        self.iters
            .get(n)
            .map(|i| i.dir)
            .ok_or_else(|| self.err(s.span, format!("undefined iterator `{n}`")))
    }

    /// The remaining segments of an iovec iterator, as a user iovec array.
    fn iov_arg(&self, s: &Stmt, a: &Arg) -> Result<Vec<Iovec>, ScriptError> {
        let n = self.name_arg(s, a)?;
        let it = self
            .iters
            .get(n)
            .ok_or_else(|| self.err(s.span, format!("undefined iterator `{n}`")))?;
        if !matches!(
            it.ty,
            vmemu_iter::IterType::Iovec | vmemu_iter::IterType::Ubuf | vmemu_iter::IterType::Kvec
        ) {
            return Err(self.err(s.span, format!("`{n}` is not an iovec iterator")));
        }
        Ok(it.iov.slice(it.idx, usize::MAX).to_vec())
    }

    /// `O_DIRECT`, `SPLICE_F_*` or a number.
    fn flag_arg(&self, s: &Stmt, a: &Arg) -> Result<u32, ScriptError> {
        if let Arg::Expr(Expr::Name(n, _) | Expr::Const(n, _)) = a {
            let v = match n.as_str() {
                "O_DIRECT" => Some(O_DIRECT),
                "SPLICE_F_MOVE" => Some(SPLICE_F_MOVE),
                "SPLICE_F_NONBLOCK" => Some(SPLICE_F_NONBLOCK),
                "SPLICE_F_MORE" => Some(SPLICE_F_MORE),
                "SPLICE_F_GIFT" => Some(SPLICE_F_GIFT),
                _ => None,
            };
            if let Some(v) = v {
                return Ok(v);
            }
        }
        let v = self.expr_arg(a, s)?;
        u32::try_from(v).map_err(|_| self.err(s.span, "flags must fit in 32 bits"))
    }

    /// A result variable's value, or an expression.
    fn expr_or_var(&self, s: &Stmt, a: &Arg) -> Result<i128, ScriptError> {
        if let Arg::Expr(Expr::Name(n, _)) = a
            && let Some(v) = self.vars.get(n)
        {
            return Ok(i128::from(v.ret));
        }
        self.expr_arg(a, s)
    }
}
