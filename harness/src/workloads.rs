//! The built-in workloads, embedded in the binary.

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$((concat!($name, ".vmw"), include_str!(concat!("../workloads/", $name, ".vmw")))),*]
    };
}

/// (file name, source) of every built-in workload, in transcript order.
pub const BUILTIN: &[(&str, &str)] = builtin![
    "gup_fast_matrix",
    "kernel_ds_gup_fast",
    "show_walk",
    "gup_fast_zero_and_alignment",
    "page_mkwrite_retry",
    "get_pages_stitching",
    "layton_nonadjacent",
    "layton_first_offset",
    "iov_iter_get_pages_examples",
    "zero_len_bvec",
    "vmsplice_16",
    "pipe_iter_fill",
    "pipe_readv_writev",
    "vmsplice_syscall",
    "process_vm_rw",
    "preadv_pwritev_file",
    "o_direct_blkdev",
    "dio_zero_page",
    "blkdev_dio_bio",
    "nfs_page_aligned_iovecs",
    "ceph_splice_softlockup",
    "ceph_dio_iovec",
    "skb_af_alg_frags",
    "fuse_direct_io",
    "iter_to_pipe_batches",
    "fuse_mmap_deadlock",
    "fuse_abort_during_copy",
    "mmap_sem_callback",
    "dirtycow",
    "dirtypipe",
    "pipe_advance_fencepost",
    "refcount_wrap",
    "pin_fork_write",
    "vmsplice_unmap_child",
    "ro_pin_on_shared",
    "dirtycow_thp",
    "pagecache_index_64bit",
    "gup_fast_negative_count",
    "shmem_shared_anon",
    "longterm_pin_rules",
    "tagged_addr_gup",
    "iomap_dio_fault",
    "file_dio_fault",
    "file_dio_eof",
    "file_dio_align",
    "post_6_13_changes",
    "dio_extract_align",
    "exec_only",
];
