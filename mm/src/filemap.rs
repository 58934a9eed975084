//! The page cache (`mm/filemap.c`): files with their cached pages, and
//! `find_or_read_page` (the `pagecache_get_page` + `->readpage` path of a
//! buffered read or a file fault, without readahead: every page read is
//! up to date at once). The read loop over it is `vmemu-iter`'s `filemap`.

use std::collections::BTreeMap;

use vmemu_arch::{Arch, Pfn};

use crate::Machine;
use crate::fault::FileOps;
pub use crate::mm::FileId;
use crate::phys::{Owner, PageFlags};

/// A file with its page cache.
#[derive(Clone, Debug)]
pub struct File {
    /// Name.
    pub name: u32,
    /// Size in bytes (`i_size`).
    pub size: u64,
    /// Page cache: index → frame.
    pub pages: BTreeMap<u64, Pfn>,
    /// Fault handlers.
    pub ops: FileOps,
    /// `f_op->splice_read` is set (`generic_file_splice_read`: page-cache
    /// pages go into the pipe by reference). False for a procfs-like file,
    /// whose `file_operations` have only `->read`: `do_splice_to` then
    /// uses `default_file_splice_read`.
    pub splice_read: bool,
    /// A shmem object (`mm/shmem.c`): a page first looked up is a zeroed
    /// page (`shmem_get_folio` allocates and clears it), not read from a
    /// medium; nothing writes it back, so a shared mapping of it needs no
    /// dirty tracking (`vma_needs_dirty_tracking` is false: no
    /// `->page_mkwrite`, `mapping_can_writeback` false).
    pub shmem: bool,
}

impl<A: Arch> Machine<A> {
    /// Creates a file of `size` bytes; its pages are filled with `fill(index)`
    /// when first read into the page cache.
    pub fn create_file(&mut self, name: &str, size: u64, ops: FileOps) -> FileId {
        let name = self.intern(name);
        self.files.push(File {
            name,
            size,
            pages: BTreeMap::new(),
            ops,
            splice_read: true,
            shmem: false,
        });
        self.files.len() as FileId - 1
    }

    /// `shmem_zero_setup` (`mm/shmem.c`, the same in v4.10 and 6.13): the
    /// object behind a `MAP_SHARED | MAP_ANONYMOUS` mapping of `len` bytes
    /// (`mmap_region` calls it for a shared VMA without a file). The kernel
    /// names it `dev/zero`; here it takes the mapping's name, so its pages
    /// print as `file:NAME[i]`.
    pub fn shmem_zero_setup(&mut self, name: &str, len: u64) -> FileId {
        let f = self.create_file(name, len, FileOps::default());
        self.files[f as usize].shmem = true;
        f
    }

    /// Finds or reads page `index` of `file` into the page cache; returns the
    /// frame and whether I/O was needed (`VM_FAULT_MAJOR`).
    pub fn find_or_read_page(&mut self, file: FileId, index: u64) -> Option<(Pfn, bool)> {
        if let Some(&p) = self.files[file as usize].pages.get(&index) {
            return Some((p, false));
        }
        let name = self.files[file as usize].name;
        let pfn = self.phys.alloc(0, Owner::File { file: name, index })?;
        self.phys.page_mut(pfn).flags |= PageFlags::UPTODATE;
        if self.files[file as usize].shmem {
            // shmem_get_folio: a new page of the object is a zeroed page
            // (phys.alloc clears it).
            self.files[file as usize].pages.insert(index, pfn);
            return Some((pfn, false));
        }
        // Fill with a recognisable pattern: byte = (index * 7 + offset) as u8,
        // 4 KiB at a time (the pattern repeats every 256 bytes).
        let mut chunk = [0u8; 4096];
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = (index as usize * 7 + i) as u8;
        }
        let mut off = 0;
        while off < A::PAGE_SIZE {
            let n = (A::PAGE_SIZE - off).min(chunk.len() as u64);
            self.phys
                .write(pfn.addr(A::PAGE_SHIFT).add(off), &chunk[..n as usize])
                .ok()?;
            off += n;
        }
        self.files[file as usize].pages.insert(index, pfn);
        Some((pfn, true))
    }
}

#[cfg(test)]
mod tests {
    use vmemu_arch::{Arch, Ppc64, X86_64};

    use crate::Machine;
    use crate::fault::FileOps;
    use crate::profile::KernelProfile;

    /// Page `1 << 32` of a file is its own page-cache page (a `pgoff_t`
    /// index is 64 bits), not page 0's: both are named by their own index
    /// and the checker accepts the cache.
    fn index_beyond_u32<A: Arch>() {
        let mut m = Machine::<A>::new(KernelProfile::parse("v6.13").unwrap(), 16 << 20).unwrap();
        let f = m.create_file("f", A::PAGE_SIZE, FileOps::default());
        let (p0, _) = m.find_or_read_page(f, 0).unwrap();
        let (p1, io) = m.find_or_read_page(f, 1 << 32).unwrap();
        assert!(io, "index 2^32 must be read, not found at index 0");
        assert_ne!(p0, p1);
        assert_eq!(m.page_name(p1), "file:f[4294967296]");
        assert_eq!(m.page_name(p0), "file:f[0]");
        m.check_invariants().unwrap();
    }

    #[test]
    fn index_beyond_u32_x86_64() {
        index_beyond_u32::<X86_64>();
    }

    #[test]
    fn index_beyond_u32_ppc64() {
        index_beyond_u32::<Ppc64>();
    }
}
