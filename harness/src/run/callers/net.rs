//! `zerocopy_sg_from_iter(it, headlen)` and `_viro`.

use vmemu_arch::Arch;

use super::{Outcome, iter_state};
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_net(
        &mut self,
        s: &Stmt,
        func: &str,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let headlen = self.num(s, &args[1])?;
        let (name, mut it) = self.take_iter(s, &args[0])?;
        let r = self
            .sys
            .zerocopy_sg_from_iter(&mut it, headlen, func.ends_with("_viro"));
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let (r, io) = r.map_err(|e| self.not_modelled(s, &e))?;
        let mut o = Outcome::io(r, io);
        o.detail = Some(detail);
        Ok(o)
    }
}
