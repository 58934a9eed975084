//! Models of the kernel code that consumes iov_iter pages (direct-io, NFS,
//! ceph, skb, af_alg, fuse, bio): callable from workloads. (Being built.)

use vmemu_arch::Arch;

use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

/// Caller-model functions a workload may call, with their arity.
pub const CALLS: &[(&str, usize)] = &[];

impl<A: Arch> Runner<'_, A> {
    /// Runs a caller-model statement.
    pub(crate) fn exec_caller(
        &mut self,
        s: &Stmt,
        _var: Option<&str>,
        func: &str,
        _args: &[Arg],
    ) -> Result<(), ScriptError> {
        Err(self.err(s.span, format!("unknown caller model `{func}`")))
    }
}
