//! The integration tests of `vmemu-harness` and the `vmemu` binary, in one binary.
//!
//! One test binary per crate (issue 23): each module below was a test binary
//! of its own, each compiled and linked separately. Select a module's
//! tests by its module path, e.g. `cargo test -p vmemu-harness --test all bugs_doc::`.

mod bugs_doc;
mod check;
mod cli;
mod diff_host;
mod extending;
mod fuzz;
mod json_schema;
mod ktap;
mod limits;
mod parse_mutations;
mod profiles;
mod report_html;
mod thread_doc;
