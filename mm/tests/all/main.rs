//! The integration tests of `vmemu-mm`, in one binary.
//!
//! One test binary per crate (issue 23): each module below was a test binary
//! of its own, each compiled and linked separately. Select a module's
//! tests by its module path, e.g. `cargo test -p vmemu-mm --test all caches::`.

mod caches;
mod fork;
mod gup_matrix;
mod invariants;
mod semantics;
mod structure;
mod walker;
