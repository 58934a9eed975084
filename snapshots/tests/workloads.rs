//! One snapshot test per built-in workload × arch × kernel profile, named
//! `WORKLOAD__ARCH__PROFILE` like its `.snap` file, so that `cargo test -p
//! vmemu-snapshots -- kernel_ds_gup_fast` runs exactly that workload's
//! snapshots and a run reports every mismatch, not only the first (a
//! libtest-mimic harness: `harness = false` in Cargo.toml). Each test runs
//! its workload with the invariant checker after every statement.

use libtest_mimic::{Arguments, Failed, Trial};
use vmemu_arch::ArchId;
use vmemu_harness::{lang, run, workloads::BUILTIN};
use vmemu_mm::KernelProfile;

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings
        .set_snapshot_path(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings
}

/// Every (workload, arch, profile) of the built-in matrix.
fn jobs() -> Vec<(lang::Workload, ArchId, KernelProfile)> {
    let mut jobs = Vec::new();
    for (f, s) in BUILTIN {
        let w = lang::parse(f, s).expect("built-in workloads parse");
        for a in ArchId::MAIN {
            if !run::applies(&w, a) {
                continue;
            }
            for k in run::default_kernels(&w) {
                jobs.push((w.clone(), a, k));
            }
        }
    }
    jobs
}

fn snapshot_name(w: &lang::Workload, a: ArchId, k: &KernelProfile) -> String {
    format!("{}__{}__{}", w.name, a, k)
}

/// One run's transcript against its snapshot; the run must pass and
/// satisfy the invariants after every statement.
fn check_run(w: &lang::Workload, a: ArchId, k: &KernelProfile) -> Result<(), Failed> {
    let opts = run::RunOptions {
        check_invariants: true,
        ..run::RunOptions::default()
    };
    let r = run::run_with(w, a, k, &opts).map_err(|e| Failed::from(e.to_string()))?;
    let text = run::format_run(&r);
    if r.summary.invariant_violations != 0 || !r.summary.passed {
        return Err(format!("{} fails:\n{text}", snapshot_name(w, a, k)).into());
    }
    let name = snapshot_name(w, a, k);
    settings().bind(|| insta::assert_snapshot!(name.as_str(), text));
    Ok(())
}

/// No stale snapshots: every .snap belongs to a current run (or to the
/// help and parse-error snapshots), so a deleted workload or profile
/// cannot leave one behind unnoticed.
fn no_stale_snapshots(names: &[String]) -> Result<(), Failed> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts");
    let mut expected: std::collections::BTreeSet<String> =
        names.iter().map(|n| format!("{n}.snap")).collect();
    expected.insert("parse_error.snap".into());
    expected.insert("vmemu_help.snap".into());
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .map_err(|e| Failed::from(format!("{}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    let stale: Vec<&String> = on_disk.difference(&expected).collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("snapshots without a run: {stale:?}").into())
    }
}

fn parse_error_display() -> Result<(), Failed> {
    let err = lang::parse(
        "bad.vmw",
        "map buf 2 pages rw\nr = get_user_pages_fast(buf, 0xZZ, 0)\n",
    )
    .unwrap_err();
    settings().bind(|| insta::assert_snapshot!("parse_error", err.to_string()));
    Ok(())
}

fn vmemu_help() -> Result<(), Failed> {
    use clap::CommandFactory;
    let mut cmd = vmemu_harness::cli::Cli::command();
    let help = cmd.render_long_help().to_string();
    settings().bind(|| insta::assert_snapshot!("vmemu_help", help));
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let jobs = jobs();
    let names: Vec<String> = jobs
        .iter()
        .map(|(w, a, k)| snapshot_name(w, *a, k))
        .collect();
    let mut trials = vec![
        Trial::test("no_stale_snapshots", move || no_stale_snapshots(&names)),
        Trial::test("parse_error_display", parse_error_display),
        Trial::test("vmemu_help", vmemu_help),
    ];
    for (w, a, k) in jobs {
        trials.push(Trial::test(snapshot_name(&w, a, &k), move || {
            check_run(&w, a, &k)
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
