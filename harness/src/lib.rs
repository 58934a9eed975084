//! `vmemu-harness`: the workload language, the runner and the `vmemu`
//! command-line tool.
//!
//! A workload (`*.vmw`) declares user mappings, `set_fs` scopes and calls of
//! mm primitives with `expect` lines; [`run::run`] executes it on one arch and
//! kernel profile and returns a transcript with symbolic page names.
//!
//! ```
//! use vmemu_arch::ArchId;
//! use vmemu_mm::KernelProfile;
//! let w = vmemu_harness::lang::parse("demo.vmw", "map buf 2 pages rw\ntouch buf\nr = get_user_pages_fast(buf, 2, FOLL_WRITE)\nexpect r == 2\nrelease r\n").unwrap();
//! let v4_10 = KernelProfile::parse("v4.10").unwrap();
//! let run = vmemu_harness::run::run(&w, ArchId::Arm64, &v4_10).unwrap();
//! assert!(run.summary.passed);
//! ```

#![forbid(unsafe_code)]

pub mod bench;
pub mod bugs;
pub mod bugs_report;
pub mod calls;
pub mod cli;
pub mod complete;
pub mod concurrency;
pub mod diag;
pub mod diff_host;
pub mod diff_kernel;
pub mod export_c;
pub mod fuzz;
pub mod json;
pub mod ktap;
pub mod lang;
pub mod limits;
pub mod lint;
pub mod man;
pub mod matrix;
pub mod progress;
pub mod report;
pub mod report_html;
pub mod run;
pub mod seed;
pub mod show;
pub mod walk_svg;
pub use run::{callers, syscalls};
pub mod workloads;
