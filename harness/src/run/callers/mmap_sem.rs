//! `callback_under_mmap_sem(it, writer_after)` and
//! `callback_for_each_page(it, writer_after)`.

use vmemu_arch::Arch;

use super::{Outcome, iter_state};
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_mmap_sem(
        &mut self,
        s: &Stmt,
        func: &str,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let after = self.num(s, &args[1])?;
        let (name, mut it) = self.take_iter(s, &args[0])?;
        let r = if func == "callback_under_mmap_sem" {
            self.sys.callback_under_mmap_sem(&mut it, after)
        } else {
            self.sys.callback_for_each_page(&mut it, after)
        };
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let (r, io) = r.map_err(|e| self.not_modelled(s, &e))?;
        let mut o = Outcome::io(r, io);
        o.detail = Some(detail);
        Ok(o)
    }
}
