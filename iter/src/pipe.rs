//! Pipes: a ring of buffers, the v4.10 pipe-backed iterator, readv/writev,
//! vmsplice and splice. (Being written.)

use vmemu_arch::{Arch, Pfn};

use crate::Sys;
use crate::iov_iter::IovIter;

/// `PIPE_DEF_BUFFERS`.
pub const PIPE_DEF_BUFFERS: usize = 16;

/// A pipe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pipe {}

impl<A: Arch> Sys<A> {
    /// `copy_to_iter` on a pipe.
    pub fn copy_pipe_to_iter(&mut self, _src: &[u8], _i: &mut IovIter) -> u64 {
        0
    }
    /// `iov_iter_zero` on a pipe.
    pub fn pipe_zero(&mut self, _n: u64, _i: &mut IovIter) -> u64 {
        0
    }
    /// `copy_page_to_iter` on a pipe.
    pub fn copy_page_to_iter_pipe(
        &mut self,
        _page: Pfn,
        _offset: u64,
        _bytes: u64,
        _i: &mut IovIter,
    ) -> u64 {
        0
    }
    /// `iov_iter_advance` on a pipe.
    pub fn pipe_advance(&mut self, _i: &mut IovIter, _n: u64) {}
    /// `iov_iter_revert` on a pipe.
    pub fn pipe_revert(&mut self, _i: &mut IovIter, _n: u64) {}
    /// `iov_iter_alignment` of a pipe.
    pub fn pipe_alignment(&mut self, i: &IovIter) -> u64 {
        i.count
    }
    /// `pipe_get_pages` (v4.10).
    pub fn pipe_get_pages(
        &mut self,
        _i: &IovIter,
        _maxsize: u64,
        _maxpages: u64,
    ) -> Result<crate::get_pages::GotPages, vmemu_mm::Errno> {
        Err(vmemu_mm::Errno::EFAULT)
    }
    /// `iov_iter_npages` of a pipe.
    pub fn pipe_npages(&mut self, _i: &IovIter) -> u64 {
        0
    }
}
