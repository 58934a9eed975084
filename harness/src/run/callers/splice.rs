//! `iter_to_pipe(pipe, it)` and `_viro`: vmsplice's loop with a report.

use vmemu_arch::Arch;

use super::{Outcome, iter_state};
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_splice(
        &mut self,
        s: &Stmt,
        viro: bool,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let pipe = self.pipe_arg(s, &args[0])?;
        let (name, mut it) = self.take_iter(s, &args[1])?;
        let r = self.sys.iter_to_pipe_report(&mut it, pipe, viro);
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let (r, io) = r.map_err(|e| self.not_modelled(s, &e))?;
        let mut o = Outcome::io(r, io);
        o.detail = Some(format!("{detail}; {}", self.pipe_detail(pipe)));
        Ok(o)
    }
}
