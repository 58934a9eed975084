//! Test-only package: insta snapshots of every built-in workload on every
//! main arch under every profile it declares (see `tests/workloads.rs`).

#![forbid(unsafe_code)]
