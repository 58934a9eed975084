//! `blockdev_direct_IO(it, pos, blocksize, extent)`: legacy direct I/O
//! (`fs/direct-io.c`, v4.10); `_viro` with `iov_iter_for_each_page`.

use vmemu_arch::Arch;
use vmemu_iter::callers::dio::DioFs;

use super::{Outcome, iter_state};
use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

impl<A: Arch> Runner<'_, A> {
    pub(super) fn call_dio(
        &mut self,
        s: &Stmt,
        func: &str,
        args: &[Arg],
    ) -> Result<Outcome, ScriptError> {
        let pos = self.num(s, &args[1])?;
        let fs = DioFs {
            blocksize: self.num(s, &args[2])?,
            extent: self.num(s, &args[3])?,
        };
        let (name, mut it) = self.take_iter(s, &args[0])?;
        let r = if func.ends_with("_viro") {
            self.sys.blockdev_direct_io_viro(&mut it, pos, fs)
        } else {
            self.sys.blockdev_direct_io(&mut it, pos, fs)
        };
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let (r, io) = r.map_err(|e| self.not_modelled(s, &e))?;
        let mut o = Outcome::io(r, io);
        o.detail = Some(detail);
        Ok(o)
    }
}
