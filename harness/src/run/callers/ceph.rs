//! `ceph_direct_read_write(it, pos)` and `ceph_splice_write(pipe, len)`.

use vmemu_arch::Arch;

use super::{Outcome, iter_state};
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_ceph_splice(
        &mut self,
        s: &Stmt,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let pipe = self.pipe_arg(s, &args[0])?;
        let len = self.num(s, &args[1])?;
        let (r, io) = self.sys.ceph_splice_write(pipe, len);
        let mut o = Outcome::io(r, io);
        o.detail = Some(self.pipe_detail(pipe));
        Ok(o)
    }

    pub(super) fn call_ceph_direct(
        &mut self,
        s: &Stmt,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let pos = self.num(s, &args[1])?;
        let (name, mut it) = self.take_iter(s, &args[0])?;
        if !matches!(
            it.ty,
            vmemu_iter::IterType::Iovec
                | vmemu_iter::IterType::Bvec
                | vmemu_iter::IterType::Kvec
                | vmemu_iter::IterType::Ubuf
        ) {
            self.put_iter(name, it);
            return Err(self.err(
                s.span,
                "ceph direct I/O takes an iovec, kvec or bvec iterator",
            ));
        }
        let (r, io) = self.sys.ceph_direct_rw(&mut it, pos);
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let mut o = Outcome::io(r, io);
        o.detail = Some(detail);
        Ok(o)
    }
}
