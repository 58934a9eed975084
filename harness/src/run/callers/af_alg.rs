//! `af_alg_make_sg(it, len)` and `hash_sendmsg(it, sndbuf)`.

use vmemu_arch::Arch;

use super::{Outcome, iter_state};
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_af_alg(
        &mut self,
        s: &Stmt,
        func: &str,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let n = self.num(s, &args[1])?;
        let (name, mut it) = self.take_iter(s, &args[0])?;
        let r = if func == "hash_sendmsg" {
            self.sys.hash_sendmsg(&mut it, n)
        } else {
            self.sys.af_alg_make_sg(&it, n)
        };
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let (r, io) = r.map_err(|e| self.not_modelled(s, &e))?;
        let mut o = Outcome::io(r, io);
        o.detail = Some(detail);
        Ok(o)
    }
}
