//! The integration tests of `vmemu-arch`, in one binary.
//!
//! One test binary per crate (issue 23): each module below was a test binary
//! of its own, each compiled and linked separately. Select a module's
//! tests by its module path, e.g. `cargo test -p vmemu-arch --test all geometry::`.

mod geometry;
mod identity;
mod rules;
