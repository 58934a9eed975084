//! Syscalls as workload statements (readv/writev on pipes, process_vm_*,
//! preadv/pwritev, O_DIRECT). (Being built.)

use vmemu_arch::Arch;

use crate::lang::{Arg, ScriptError, Stmt};
use crate::run::Runner;

/// Syscall functions a workload may call, with their arity.
pub const CALLS: &[(&str, usize)] = &[];

impl<A: Arch> Runner<'_, A> {
    /// Runs a syscall statement.
    pub(crate) fn exec_syscall(
        &mut self,
        s: &Stmt,
        _var: Option<&str>,
        func: &str,
        _args: &[Arg],
    ) -> Result<(), ScriptError> {
        Err(self.err(s.span, format!("unknown syscall `{func}`")))
    }
}
