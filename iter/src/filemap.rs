//! The read side of the page cache (`mm/filemap.c`): the buffered read loop
//! (`do_generic_file_read` in v4.10, `filemap_read` since 5.12) over the
//! page cache pages of [`vmemu_mm::Machine::find_or_read_page`].

use vmemu_arch::Arch;
use vmemu_mm::Errno;
use vmemu_mm::mm::FileId;

use crate::Sys;
use crate::iov_iter::IovIter;

impl<A: Arch> Sys<A> {
    /// The buffered read loop of v4.10 `do_generic_file_read`, without
    /// readahead or locking: page by page from `pos` up to `i_size`,
    /// `copy_page_to_iter`; stop when the iterator is full, or (short copy)
    /// with `-EFAULT` unless something was read.
    pub(crate) fn filemap_read(
        &mut self,
        file: FileId,
        pos: u64,
        to: &mut IovIter,
    ) -> Result<u64, Errno> {
        let Some(f) = self.m.files.get(file as usize) else {
            return Err(Errno::EBADF);
        };
        let isize = f.size;
        let mut index = pos / A::PAGE_SIZE;
        let mut offset = pos % A::PAGE_SIZE;
        let mut written = 0u64;
        loop {
            if to.count == 0 || index * A::PAGE_SIZE + offset >= isize {
                break;
            }
            let Some((page, _)) = self.m.find_or_read_page(file, index) else {
                return if written > 0 {
                    Ok(written)
                } else {
                    Err(Errno::ENOMEM)
                };
            };
            let end_index = (isize - 1) / A::PAGE_SIZE;
            let mut nr = A::PAGE_SIZE;
            if index == end_index {
                nr = (isize - 1) % A::PAGE_SIZE + 1;
                if nr <= offset {
                    break;
                }
            }
            nr -= offset;
            let ret = self.copy_page_to_iter(page, offset, nr, to);
            offset += ret;
            index += offset / A::PAGE_SIZE;
            offset %= A::PAGE_SIZE;
            written += ret;
            if to.count == 0 {
                break;
            }
            if ret < nr {
                return if written > 0 {
                    Ok(written)
                } else {
                    Err(Errno::EFAULT)
                };
            }
        }
        Ok(written)
    }
}
