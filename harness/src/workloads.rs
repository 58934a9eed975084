//! The built-in workloads, embedded in the binary.

/// (file name, source) of every built-in workload.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "gup_fast_matrix.vmw",
        include_str!("../workloads/gup_fast_matrix.vmw"),
    ),
    (
        "kernel_ds_gup_fast.vmw",
        include_str!("../workloads/kernel_ds_gup_fast.vmw"),
    ),
    (
        "gup_fast_zero_and_alignment.vmw",
        include_str!("../workloads/gup_fast_zero_and_alignment.vmw"),
    ),
    (
        "page_mkwrite_retry.vmw",
        include_str!("../workloads/page_mkwrite_retry.vmw"),
    ),
];
