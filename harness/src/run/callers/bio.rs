//! `blkdev_direct_IO(it, pos)`, `iomap_dio_rw(it, pos)` and
//! `bio_iov_iter_get_pages(it, nr_vecs)`.

use vmemu_arch::Arch;

use super::{Outcome, iter_state};
use crate::calls::CallerCall;
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_bio(
        &mut self,
        s: &Stmt,
        call: CallerCall,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let n = self.num(s, &args[1])?;
        let (name, mut it) = self.take_iter(s, &args[0])?;
        let k = self.sys.m.knobs;
        if !k.get_pages2
            && call != CallerCall::BioIovIterGetPages
            && it.ty == vmemu_iter::IterType::Pipe
        {
            self.put_iter(name, it);
            return Err(self.err(s.span, "direct I/O from a pipe iterator is not modelled"));
        }
        let (r, io) = match call {
            CallerCall::BlkdevDirectIo => self.sys.blkdev_direct_io(&mut it, n),
            CallerCall::IomapDioRw => self.sys.iomap_dio_rw(&mut it, n),
            _ => self
                .sys
                .bio_iov_iter_get_pages_once_report(&mut it, n.max(1)),
        };
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let mut o = Outcome::io(r, io);
        o.detail = Some(detail);
        Ok(o)
    }
}
