//! The fuse statements of the `/dev/fuse` scenario — `fuse_mount()`, `fuse_filemap_fault(addr)`, `fuse_lookup()`,
//! `fuse_dev_read()`, `fuse_dev_write(req, it)`,
//! `fuse_dev_write_abort(req, it, fill|copy, fr_locked|copy_iter|args_kept)`,
//! `fuse_abort_conn()`, `fuse_fault_result(req)`,
//! `fuse_dev_write_result(req)`.

use vmemu_arch::{Arch, VirtAddr};
use vmemu_iter::callers::fuse::{AbortAt, CopyDiscipline};
use vmemu_mm::Errno;

use super::Outcome;
use crate::calls::CallerCall;
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_fuse(
        &mut self,
        s: &Stmt,
        call: CallerCall,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let mut fc = std::mem::take(&mut self.callers.fuse);
        let res = self.call_fuse_conn(s, call, args, &mut fc);
        self.callers.fuse = fc;
        res
    }

    fn call_fuse_conn(
        &mut self,
        s: &Stmt,
        call: CallerCall,
        args: &[Arg],
        fc: &mut vmemu_iter::callers::fuse::FuseConn,
    ) -> Result<Outcome, ScriptError> {
        let plain = |(r, d): (Result<u64, Errno>, String)| Outcome {
            ret: r.map(|v| v as i64),
            detail: (!d.is_empty()).then_some(d),
            io: None,
        };
        Ok(match call {
            CallerCall::FuseFilemapFault => {
                let v = self.expr_arg(&args[0], s)?;
                let a = crate::run::to_u64(self.w, v, s.span)?;
                plain(self.sys.fuse_filemap_fault(fc, VirtAddr(a)))
            }
            CallerCall::FuseMount => {
                // A new connection; tasks asleep on the old one are unwound.
                let note = self.sys.fuse_unwind(fc);
                *fc = vmemu_iter::callers::fuse::FuseConn::default();
                Outcome {
                    ret: Ok(0),
                    detail: note,
                    io: None,
                }
            }
            CallerCall::FuseLookup => plain(self.sys.fuse_lookup(fc)),
            CallerCall::FuseDevRead => plain(self.sys.fuse_dev_read(fc)),
            CallerCall::FuseAbortConn => plain(self.sys.fuse_abort_conn(fc)),
            CallerCall::FuseDevWrite | CallerCall::FuseDevWriteAbort => {
                let unique = self.num(s, &args[0])?;
                let abort = if call == CallerCall::FuseDevWriteAbort {
                    let at = match self.word(s, &args[2], "fill or copy")? {
                        "fill" => AbortAt::Fill,
                        "copy" => AbortAt::Copy,
                        w => {
                            return Err(
                                self.err(s.span, format!("expected fill or copy, found `{w}`"))
                            );
                        }
                    };
                    let d = match self.word(s, &args[3], "fr_locked, copy_iter or args_kept")? {
                        "fr_locked" => CopyDiscipline::FrLocked,
                        "copy_iter" => CopyDiscipline::CopyIter,
                        "args_kept" => CopyDiscipline::ArgsKept,
                        w => {
                            return Err(self.err(
                                s.span,
                                format!("expected fr_locked, copy_iter or args_kept, found `{w}`"),
                            ));
                        }
                    };
                    Some((at, d))
                } else {
                    None
                };
                let (name, mut it) = self.take_iter(s, &args[1])?;
                let r = self.sys.fuse_dev_write(fc, unique, &mut it, abort);
                self.put_iter(name, it);
                plain(r.map_err(|e| self.not_modelled(s, &e))?)
            }
            _ => {
                let unique = self.num(s, &args[0])?;
                let v = if call == CallerCall::FuseFaultResult {
                    fc.initiator_result(unique)
                } else {
                    fc.write_result(unique)
                };
                let v = v.ok_or_else(|| self.err(s.span, format!("no fuse request #{unique}")))?;
                let detail = (v == Errno::EDEADLK.to_ret()).then(|| "still asleep".to_string());
                Outcome {
                    ret: Ok(v),
                    detail,
                    io: None,
                }
            }
        })
    }
}
