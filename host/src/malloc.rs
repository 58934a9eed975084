//! The host C library's allocator: one setting of glibc's `malloc`.

/// Bytes glibc's `malloc` adds to every growth of a heap beyond what the
/// allocation needs ([`set_malloc_top_pad`]).
pub const TOP_PAD: usize = 4 << 20;

/// Sets glibc's `M_TOP_PAD` (`mallopt(3)`) to `bytes`: a heap that must
/// grow grows by `bytes` more than the allocation needs, and keeps as much
/// when it is trimmed. Without it the heap of each thread grew a few pages at
/// a time, one `mprotect(2)` each (725 for a `vmemu matrix -j 2`, each taking
/// the process's memory-map lock for writing, which a page fault on the other
/// thread then waits for); with 4 MiB, about forty. The pages are only reserved:
/// host memory still follows the bytes touched. Returns whether the C library
/// took the setting (`false` on a C library other than glibc, where nothing
/// changes).
pub fn set_malloc_top_pad(bytes: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(value) = libc::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: `mallopt` changes a parameter of glibc's allocator and
        // touches no memory of the caller; glibc takes the arena lock for it,
        // so it is sound at any time (the harness calls it first in `main`).
        return unsafe { libc::mallopt(libc::M_TOP_PAD, value) } == 1;
    }
    #[allow(unreachable_code)]
    {
        let _ = bytes;
        false
    }
}

#[cfg(test)]
mod tests {
    /// glibc takes the setting (every build of vmemu's CI is glibc Linux);
    /// a value past `int` is refused, not truncated.
    #[test]
    fn glibc_takes_the_top_pad() {
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(super::set_malloc_top_pad(super::TOP_PAD));
        }
        assert!(!super::set_malloc_top_pad(usize::MAX));
    }
}
