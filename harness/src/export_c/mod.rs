//! `vmemu export-c`: a workload as one self-contained C program (libc
//! only) that does what the workload does through real system calls and
//! prints KTAP version 1 with the test names `vmemu run --format ktap`
//! uses, so the two outputs diff line by line.
//!
//! * `map` → `mmap` with `MAP_FIXED_NOREPLACE` at the address the emulator
//!   gave it (the workload is run on the emulator first, under the chosen
//!   profile, to learn them); `touch`, `memset`, `copy_*_user`,
//!   `get_user`/`put_user` → plain loads and stores that catch `SIGSEGV`
//!   and report the bytes not done, as uaccess does.
//! * `pipe` → `pipe2(O_NONBLOCK)`; `file` → a memfd holding the emulator's
//!   page-cache pattern; `open_blkdev` → a loop device over a memfd (its
//!   users are skipped where there is none).
//! * `new_process` / `fork` → real `fork`s; each child serves the
//!   statements run while the script has switched to it (the result
//!   variables live in a `MAP_SHARED` page made before any fork).
//!   `new_process`' child unmaps what the first process had mapped, so it
//!   starts from an empty layout as the emulator's new mm does.
//! * `sys_*` → the real calls with the same iovecs.
//!
//! Kernel-internal statements (gup, `set_fs`, `iov_iter_*`, caller models,
//! `kbuf`, expects on pages, events or references) are refused, each named
//! with its line; `--skip-internal` drops them and the expects that
//! depend on them (`# SKIP`).

mod emit;
mod known;
mod syscalls;

use std::io::Write;

use vmemu_arch::ArchId;
use vmemu_mm::KernelProfile;

use crate::lang::{ScriptError, Workload};

pub use known::for_expect as known_difference;

/// The C helpers every exported program starts with.
const PRELUDE: &str = include_str!("prelude.c");

/// Options of `vmemu export-c`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// The workload: a `.vmw` file or a built-in workload's name.
    #[arg(value_parser = crate::complete::workload_names(), hide_possible_values = true)]
    pub workload: String,
    /// The arch whose page size and constants the program uses (the one it
    /// is meant to run on).
    #[arg(long, default_value = "x86_64", value_parser = crate::complete::arch_names(), hide_possible_values = true)]
    pub arch: String,
    /// The profile whose expects the program checks (default: the newest
    /// the workload names, else the newest built-in).
    #[arg(long, value_parser = crate::complete::profile_parser(), hide_possible_values = true)]
    pub kernel: Option<KernelProfile>,
    /// Drop kernel-internal statements and the expects that depend on
    /// them instead of refusing the workload.
    #[arg(long)]
    pub skip_internal: bool,
}

/// Why a workload cannot be exported.
#[derive(Debug)]
pub enum ExportError {
    /// Statements with no C equivalent (each with its line).
    Statements(Vec<ScriptError>),
    /// Anything else (unknown arch, emulator error).
    Other(String),
}

/// An exported program.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The C source.
    pub source: String,
    /// The KTAP name of its one top-level test.
    pub test_name: String,
    /// Statements dropped by `--skip-internal`: (line, text, why).
    pub skipped: Vec<(usize, String, String)>,
}

/// The profile an export checks by default: the newest plain base the
/// workload names, else the newest built-in.
#[must_use]
pub fn default_kernel(w: &Workload) -> KernelProfile {
    let order = KernelProfile::builtin_names();
    w.kernels
        .iter()
        .filter(|k| k.overlays.is_empty())
        .max_by_key(|k| order.iter().position(|n| *n == k.name()).unwrap_or(0))
        .cloned()
        .unwrap_or_else(KernelProfile::newest)
}

/// Exports `w` for `arch` under `kernel`.
pub fn export(
    w: &Workload,
    arch: ArchId,
    kernel: &KernelProfile,
    skip_internal: bool,
) -> Result<Exported, ExportError> {
    if !crate::run::applies(w, arch) {
        return Err(ExportError::Other(format!(
            "{} is not for {arch} (its arches line)",
            w.name
        )));
    }
    let mut em = emit::Emitter::new(w, arch, kernel.clone(), skip_internal);
    // The emulator's run gives every `map` its address.
    if let Ok(run) = crate::run::run(w, arch, kernel) {
        for r in run.records.iter().filter(|r| r.op == "mmap") {
            em.map_addrs
                .entry(r.line)
                .or_default()
                .push(r.ret.unwrap_or(0));
        }
    }
    em.walk();
    if !em.errors.is_empty() {
        return Err(ExportError::Statements(em.errors));
    }
    let test_name = crate::ktap::test_name(&[&w.name, arch.name(), &kernel.name()]);
    Ok(Exported {
        source: em.program(arch.name(), &test_name),
        skipped: em.skipped.clone(),
        test_name,
    })
}

/// Runs `vmemu export-c` on a loaded workload: the C on `out`.
pub fn main(w: &Workload, args: &ExportArgs, out: &mut impl Write) -> Result<(), ExportError> {
    let arch: ArchId = args
        .arch
        .parse()
        .map_err(|_| ExportError::Other(format!("unknown arch `{}`", args.arch)))?;
    let kernel = args.kernel.clone().unwrap_or_else(|| default_kernel(w));
    let e = export(w, arch, &kernel, args.skip_internal)?;
    for (line, text, why) in &e.skipped {
        eprintln!("export-c: {}:{line}: dropped `{text}`: {why}", w.file);
    }
    out.write_all(e.source.as_bytes())
        .map_err(|e| ExportError::Other(format!("writing the program: {e}")))
}
