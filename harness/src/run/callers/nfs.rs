//! `nfs_direct_write(it, wsize)`, `nfs_direct_read(it, rsize)` and their
//! `_viro` forms.

use vmemu_arch::Arch;
use vmemu_iter::callers::nfs::NfsDir;

use super::{Outcome, iter_state};
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_nfs(
        &mut self,
        s: &Stmt,
        func: &str,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let bsize = self.num(s, &args[1])?;
        let dir = if func.starts_with("nfs_direct_write") {
            NfsDir::Write
        } else {
            NfsDir::Read
        };
        let (name, mut it) = self.take_iter(s, &args[0])?;
        let r = self
            .sys
            .nfs_direct_schedule_iovec(&mut it, bsize, dir, func.ends_with("_viro"));
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let (r, io) = r.map_err(|e| self.not_modelled(s, &e))?;
        let mut o = Outcome::io(r, io);
        o.detail = Some(detail);
        Ok(o)
    }
}
