//! Statements for the known-bugs replays (Dirty COW, Dirty Pipe):
//!
//! | statement | what it does |
//! |---|---|
//! | `interleave_dontneed(m, LEN, WALK)` | a second task (same mm) runs `madvise(m, LEN, MADV_DONTNEED)` at the retry point of the next gup, before its walk number WALK of a page (1 = first walk; 0 disarms) |
//! | `w = access_remote_vm(m, LEN, FOLL_WRITE\|FOLL_FORCE)` | the `/proc/pid/mem` write: `mem_rw` → `access_remote_vm` writes LEN bytes (1, 2, 3, ... as `copy_to_user` does) page by page through `get_user_pages_remote` |
//! | `b = file_byte(f, POS)` | the byte of file `f` at POS as `read(2)` sees it (through the page cache) |
//! | `s = splice_read(f, POS, p, LEN)` | `splice(f, &POS, p, NULL, LEN, 0)`: file → pipe through the pipe iterator (`generic_file_splice_read`) |

use vmemu_arch::{Arch, VirtAddr};
use vmemu_mm::{Errno, GupFlags};

use crate::lang::{Arg, Expr, ScriptError, Stmt};
use crate::run::{Runner, Var, set_err, to_u64};

/// The known-bugs statements with their arity.
pub const CALLS: &[(&str, usize)] = &[
    ("interleave_dontneed", 3),
    ("access_remote_vm", 3),
    ("file_byte", 2),
    ("splice_read", 4),
];

impl<A: Arch> Runner<'_, A> {
    fn bug_name_arg(&self, s: &Stmt, a: &Arg, what: &str) -> Result<String, ScriptError> {
        match a {
            Arg::Expr(Expr::Name(n, _)) => Ok(n.clone()),
            _ => Err(self.err(s.span, format!("expected {what} name"))),
        }
    }

    fn file_arg(&self, s: &Stmt, a: &Arg) -> Result<u32, ScriptError> {
        let n = self.bug_name_arg(s, a, "a file")?;
        self.files
            .get(&n)
            .copied()
            .ok_or_else(|| self.err(s.span, format!("undefined file `{n}`")))
    }

    /// Runs one of [`CALLS`].
    pub(crate) fn exec_bug_call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let mut r = self.record(s, func);
        let seen_log = self.sys.m.interleave_log.len();
        let res: Result<u64, Errno> = match func {
            "interleave_dontneed" => {
                let addr = VirtAddr(to_u64(self.w, self.expr_arg(&args[0], s)?, s.span)?);
                let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
                let walk = self.expr_arg(&args[2], s)?;
                let walk = u32::try_from(walk)
                    .ok()
                    .filter(|w| *w <= 64)
                    .ok_or_else(|| self.err(s.span, "the walk number must be 0..=64"))?;
                self.sys.m.interleave_dontneed(addr, len, walk);
                r.detail = Some(if walk == 0 {
                    "disarmed".into()
                } else {
                    format!("armed: a second task zaps the range before gup walk {walk}")
                });
                Ok(0)
            }
            "access_remote_vm" => {
                let addr = VirtAddr(to_u64(self.w, self.expr_arg(&args[0], s)?, s.span)?);
                let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
                if len > 1 << 20 {
                    return Err(self.err(s.span, "access_remote_vm length must be <= 1M"));
                }
                let flags = self.flags(s, &args[2])?;
                if flags != GupFlags::FOLL_WRITE | GupFlags::FOLL_FORCE {
                    return Err(self.err(
                        s.span,
                        "only the /proc/pid/mem write (FOLL_WRITE|FOLL_FORCE) is modelled",
                    ));
                }
                let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
                let mm = self.sys.m.current_mm();
                self.sys.m.access_remote_vm_write(mm, addr, &data)
            }
            "file_byte" => {
                let f = self.file_arg(s, &args[0])?;
                let pos = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
                let mut b = [0u8];
                self.sys
                    .m
                    .file_read(f, pos, &mut b)
                    .map(|()| u64::from(b[0]))
            }
            "splice_read" => {
                let f = self.file_arg(s, &args[0])?;
                let mut pos = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
                let pname = self.bug_name_arg(s, &args[2], "a pipe")?;
                let pipe = *self
                    .pipes
                    .get(&pname)
                    .ok_or_else(|| self.err(s.span, format!("undefined pipe `{pname}`")))?;
                let len = to_u64(self.w, self.expr_arg(&args[3], s)?, s.span)?;
                self.sys.splice_file_to_pipe(f, &mut pos, pipe, len)
            }
            _ => return Err(self.err(s.span, format!("unknown function `{func}`"))),
        };
        let log = &self.sys.m.interleave_log[seen_log..];
        if !log.is_empty() {
            r.detail = Some(log.join("; "));
        }
        let ret = match res {
            Ok(v) => {
                r.ret = Some(v as i64);
                v as i64
            }
            Err(e) => {
                set_err(&mut r, e);
                e.to_ret()
            }
        };
        self.push(r);
        if let Some(v) = var {
            self.vars.insert(
                v.to_string(),
                Var {
                    ret,
                    pages: Vec::new(),
                    pin: false,
                    owned: false,
                    start: 0,
                },
            );
        }
        Ok(())
    }
}
