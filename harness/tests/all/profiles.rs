//! Kernel profiles are resolved once, where they are written: a bad profile
//! in a `kernels` line or a `kernel` qualifier is a script error at its
//! `file:line:col`, a bad `--kernel` is a usage error (exit 2), and what
//! the parser and the command line hand on is the resolved profile.

use std::io::Write;
use std::process::{Command, Output};

use vmemu_arch::ArchId;
use vmemu_harness::{lang, run};
use vmemu_mm::KernelProfile;
use vmemu_mm::profile::{GetPagesAlloc, GupFastRange};

fn vmemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(args)
        .output()
        .expect("vmemu runs")
}

fn script(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vmemu-profiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    p
}

/// Each bad profile, written where a script names profiles, with the span
/// of the bad word and the reason the profile table gives.
const BAD_IN_SCRIPTS: &[(&str, &str, &str, &str)] = &[
    (
        "kernels_unknown_base",
        "kernels v4.10 v5.0\nmap b 1 page\n",
        ":1:15:",
        "unknown kernel `v5.0`",
    ),
    (
        "kernels_unknown_overlay",
        "kernels v4.10+nope\nmap b 1 page\n",
        ":1:9:",
        "unknown overlay `+nope`",
    ),
    (
        "kernels_inapplicable",
        "# a comment\nkernels v4.17 v6.13+capper\n",
        ":2:15:",
        "makes no sense on v6.13",
    ),
    (
        "qualifier_unknown_base",
        "kernels v4.10\nmap b 1 page\ntouch b kernel v4.10 v9.9\n",
        ":3:22:",
        "unknown kernel `v9.9`",
    ),
    (
        "qualifier_duplicate_overlay",
        "map b 1 page\ntouch b on x86_64 kernel v4.10+numa+numa\n",
        ":2:26:",
        "given twice",
    ),
    (
        "qualifier_inapplicable",
        "map b 1 page\ntouch b kernel v6.13+layton on arm64\n",
        ":2:16:",
        "makes no sense on v6.13",
    ),
];

#[test]
fn a_bad_profile_in_a_script_is_an_error_at_its_word() {
    for (name, body, span, why) in BAD_IN_SCRIPTS {
        let e = lang::parse(&format!("{name}.vmw"), body).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains(&format!("{name}.vmw{span}")),
            "{name}: {shown}"
        );
        assert!(shown.contains(why), "{name}: {shown}");
        for cmd in ["run", "check"] {
            let p = script(&format!("{name}.vmw"), body);
            let out = vmemu(&[cmd, p.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}: {err}");
            assert!(
                err.contains(&format!("{name}.vmw{span}")),
                "{cmd} {name}: {err}"
            );
            assert!(!err.contains("panicked"), "{cmd} {name}: {err}");
        }
    }
}

#[test]
fn a_bad_kernel_argument_exits_2_before_anything_runs() {
    for (args, why) in [
        (
            vec!["run", "kernel_ds_gup_fast", "--kernel", "v4.10+nope"],
            "unknown overlay",
        ),
        (
            vec![
                "run",
                "kernel_ds_gup_fast",
                "--kernel",
                "v4.10",
                "--kernel",
                "v6.13+capper",
            ],
            "makes no sense on v6.13",
        ),
        (
            vec!["explain", "0x1000", "--arch", "x86_64", "--kernel", "v5.0"],
            "unknown kernel",
        ),
        (
            vec!["fuzz", "--count", "1", "--kernel", "v4.10+numa+numa"],
            "given twice",
        ),
    ] {
        let out = vmemu(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} ran something");
    }
}

/// The parser hands on resolved profiles (knobs included); a run prints
/// the profile under the name it was written with.
#[test]
fn parsed_profiles_carry_their_knobs_and_their_name() {
    let w = lang::parse(
        "t.vmw",
        "kernels v4.10+capper v4.10+layton\nmap b 1 page\ntouch b kernel v4.10+layton\n",
    )
    .unwrap();
    assert_eq!(w.kernels[0].knobs.gup_fast_range, GupFastRange::Capper);
    assert_eq!(
        w.stmts[1].qual.kernels[0].knobs.get_pages_alloc,
        GetPagesAlloc::LaytonPosted
    );
    assert_eq!(run::default_kernels(&w), w.kernels);
    // Only the `+layton` run executes the qualified statement.
    let spans = |k: &KernelProfile| run::executed_spans(&w, ArchId::X86_64, k).len();
    assert_eq!((spans(&w.kernels[0]), spans(&w.kernels[1])), (1, 2));
    let r = run::run(&w, ArchId::Arm64, &w.kernels[1]).unwrap();
    assert_eq!(r.summary.kernel, "v4.10+layton");
    assert!(r.records.iter().all(|x| x.kernel == "v4.10+layton"));
    assert!(run::format_run(&r).starts_with("# t on arm64 under v4.10+layton\n"));
    // Without a `kernels` line: the newest base.
    let w = lang::parse("u.vmw", "map b 1 page\n").unwrap();
    assert_eq!(run::default_kernels(&w), [KernelProfile::newest()]);
    assert_eq!(KernelProfile::newest().name(), "v6.18");
}
