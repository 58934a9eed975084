//! One snapshot per built-in workload × arch × kernel profile, so a review
//! diff names exactly which arch and profile changed. Transcripts are computed
//! in parallel and asserted serially (insta settings are thread-local).

use rayon::prelude::*;
use vmemu_arch::ArchId;
use vmemu_harness::{lang, run, workloads::BUILTIN};

#[test]
fn builtin_workloads() {
    let ws: Vec<lang::Workload> = BUILTIN
        .iter()
        .map(|(f, s)| lang::parse(f, s).expect("built-in workloads parse"))
        .collect();
    let mut jobs = Vec::new();
    for w in &ws {
        for a in ArchId::MAIN {
            if !run::applies(w, a) {
                continue;
            }
            for k in run::default_kernels(w) {
                jobs.push((w, a, k));
            }
        }
    }
    let outs: Vec<(String, String, bool)> = jobs
        .par_iter()
        .map(|(w, a, k)| {
            // Every built-in run also passes the invariant checker after
            // each statement (a violation would show in the transcript).
            let opts = run::RunOptions {
                check_invariants: true,
                ..run::RunOptions::default()
            };
            let r = run::run_with(w, *a, k, &opts).expect("built-in workloads run");
            assert_eq!(r.summary.invariant_violations, 0, "{}", run::format_run(&r));
            (
                format!("{}__{}__{}", w.name, a, k),
                run::format_run(&r),
                r.summary.passed,
            )
        })
        .collect();
    // No stale snapshots: every .snap belongs to a current run (or to the
    // help and parse-error snapshots), so a deleted workload or profile
    // cannot leave one behind unnoticed.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts");
    let mut expected: std::collections::BTreeSet<String> =
        outs.iter().map(|(n, _, _)| format!("{n}.snap")).collect();
    expected.insert("parse_error.snap".into());
    expected.insert("vmemu_help.snap".into());
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".snap"))
                .collect()
        })
        .unwrap_or_default();
    let stale: Vec<&String> = on_disk.difference(&expected).collect();
    assert!(stale.is_empty(), "snapshots without a run: {stale:?}");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../transcripts");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for (name, text, passed) in &outs {
            assert!(passed, "{name} fails:\n{text}");
            insta::assert_snapshot!(name.as_str(), text);
        }
    });
}

#[test]
fn parse_error_display() {
    let err = lang::parse(
        "bad.vmw",
        "map buf 2 pages rw\nr = get_user_pages_fast(buf, 0xZZ, 0)\n",
    )
    .unwrap_err();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../transcripts");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!("parse_error", err.to_string()));
}

#[test]
fn vmemu_help() {
    use clap::CommandFactory;
    let mut cmd = vmemu_harness::cli::Cli::command();
    let help = cmd.render_long_help().to_string();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../transcripts");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!("vmemu_help", help));
}
