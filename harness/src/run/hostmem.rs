//! The `--max-host-mem` bound: what one run costs the host, checked after
//! every statement, so a workload that writes more guest memory than the
//! host should give ends with a script error (exit 2) naming the bound
//! instead of being killed.

use super::*;

impl<A: Arch> Runner<'_, A> {
    /// Host bytes this run holds: guest memory written and its
    /// `struct page` array ([`vmemu_mm::phys::PhysMem::host_bytes`]) and
    /// the iterators' segment arrays.
    pub(crate) fn host_mem(&self) -> u64 {
        let segs: usize = self
            .iters
            .values()
            .map(|i| i.iov.heap_bytes() + i.bvec.capacity() * size_of::<BioVec>())
            .sum();
        self.sys.m.phys.host_bytes() + segs as u64
    }

    /// Ends the run at `s` if it holds more host memory than `--max-host-mem`.
    pub(crate) fn check_host_mem(&self, s: &Stmt) -> Result<(), ScriptError> {
        let (used, max) = (self.host_mem(), self.opts.limits.max_host_mem);
        if used <= max {
            return Ok(());
        }
        Err(self.err(
            s.span,
            format!(
                "host memory limit: after this statement the run holds {} MiB of host memory (guest memory written, struct pages, iterator segments), more than the limit of {} MiB; raise it with --max-host-mem",
                used >> 20,
                max >> 20
            ),
        ))
    }
}
