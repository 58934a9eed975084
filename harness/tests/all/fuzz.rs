//! The fuzzer in the test suite: a short seeded run with every check, the
//! shrunk regressions it found, and the `vmemu fuzz` command line (seed
//! first, replay, shards, bad input).

use std::process::{Command, Output};

use vmemu_arch::ArchId;
use vmemu_harness::fuzz::{self, Outcome};
use vmemu_harness::limits::Limits;
use vmemu_mm::KernelProfile;

/// A profile named in a test.
fn p(name: &str) -> KernelProfile {
    name.parse().unwrap()
}

fn vmemu(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmemu"));
    c.args(args).env_remove("VMEMU_SEED");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("vmemu runs")
}

/// A short run: 150 workloads over the main arches and both base kernels,
/// with the invariant checker, the in-run oracles and the cross-run
/// differentials; none may fail.
#[test]
fn short_seeded_run_passes() {
    let limits = Limits::default();
    let mut passed = 0;
    for i in 0..150u64 {
        let arch = ArchId::MAIN[(i % 3) as usize];
        let kernel = if (i / 3) % 2 == 0 { "v4.10" } else { "v6.13" };
        let seed = fuzz::workload_seed(0x7e57, i);
        let (text, _) = fuzz::generate(seed, &p(kernel));
        match fuzz::check_text(&text, "t.vmw", arch, &p(kernel), &limits) {
            Outcome::Pass => passed += 1,
            Outcome::Rejected(_) => {}
            Outcome::Fail(sig, msg) | Outcome::Find(sig, msg) => {
                panic!("workload {i} on {arch} under {kernel}: {sig}: {msg}\n{text}")
            }
        }
    }
    assert!(passed > 130, "only {passed} of 150 workloads ran");
}

/// CVE-2017-5550 without being told: the generator knows `proc` files and
/// `splice_read` on `+pipe-advance-fencepost` profiles only; among the
/// first workloads of seed 0x12 that splice, the invariant checker flags
/// unwritten pipe buffers under the vulnerable profile, and the same
/// texts pass under the fixed v4.10 and v4.17.
#[test]
fn pipe_advance_fencepost_found_only_when_vulnerable() {
    let limits = Limits::default();
    let vuln = &p("v4.10+pipe-advance-fencepost");
    let (mut found, mut splicing) = (0, 0);
    // Seed 0x12 first finds it at workload 416; stop at the first finding.
    for i in 0..2000u64 {
        if found > 0 && splicing > 20 {
            break;
        }
        let arch = ArchId::MAIN[(i % 3) as usize];
        let (text, _) = fuzz::generate(fuzz::workload_seed(0x12, i), vuln);
        if !text.contains("splice_read(") {
            continue;
        }
        splicing += 1;
        match fuzz::check_text(&text, "t.vmw", arch, vuln, &limits) {
            Outcome::Find(sig, msg) => {
                assert_eq!(sig, "bug: infoleak", "{msg}\n{text}");
                assert!(msg.contains("nobody wrote"), "{msg}");
                found += 1;
            }
            Outcome::Fail(sig, msg) => panic!("workload {i} on {arch}: {sig}: {msg}\n{text}"),
            Outcome::Pass | Outcome::Rejected(_) => {}
        }
        for fixed in ["v4.10", "v4.17"] {
            if let Outcome::Fail(sig, msg) | Outcome::Find(sig, msg) =
                fuzz::check_text(&text, "t.vmw", arch, &p(fixed), &limits)
            {
                panic!("workload {i} on {arch} under {fixed}: {sig}: {msg}\n{text}");
            }
        }
    }
    assert!(splicing > 20, "only {splicing} workloads splice");
    assert!(found > 0, "no finding in {splicing} splicing workloads");
}

/// Every shrunk workload the fuzzer found passes now, on the arch and
/// kernel it was found on and on the other main ones (or is rejected with
/// a clear error where its header says so, or — `finding SIGNATURE` — is
/// the known-bug finding its profile declares, never a failure).
#[test]
fn fuzz_regressions_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        if f.extension().is_none_or(|x| x != "vmw") {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&f).unwrap();
        let header = text.lines().next().unwrap();
        let words: Vec<&str> = header
            .strip_prefix("# regression: ")
            .expect("first line: # regression: ARCH KERNEL [rejected | finding SIGNATURE]")
            .split_whitespace()
            .collect();
        let arch: ArchId = words[0].parse().unwrap();
        let kernel = &p(words[1]);
        let rejected = words.get(2) == Some(&"rejected");
        let finding = (words.get(2) == Some(&"finding")).then(|| words[3..].join(" "));
        let name = f.display().to_string();
        match fuzz::check_text(&text, &name, arch, kernel, &Limits::default()) {
            Outcome::Pass if !rejected && finding.is_none() => {}
            Outcome::Find(sig, _) if finding.as_ref() == Some(&sig) => {}
            Outcome::Rejected(e) if rejected => {
                assert!(e.contains(&format!("{name}:")), "{e}");
            }
            other => panic!("{name} on {arch} under {kernel}: {other:?}"),
        }
        if !rejected {
            // Its `expect` lines hold too.
            let w = vmemu_harness::lang::parse(&name, &text).unwrap();
            let r = vmemu_harness::run::run(&w, arch, kernel).unwrap();
            assert_eq!(
                r.summary.failed_expects,
                0,
                "{}",
                vmemu_harness::run::format_run(&r)
            );
        }
        for a in ArchId::MAIN {
            for k in ["v4.10", "v6.13"] {
                match fuzz::check_text(&text, &name, a, &p(k), &Limits::default()) {
                    Outcome::Fail(sig, msg) => panic!("{name} on {a} under {k}: {sig}: {msg}"),
                    Outcome::Find(sig, msg) if finding.as_ref() != Some(&sig) => {
                        panic!("{name} on {a} under {k}: {sig}: {msg}")
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(n >= 3, "regressions found: {n}");
}

#[test]
fn the_seed_is_printed_first_and_taken_from_the_environment() {
    let out = vmemu(
        &["fuzz", "--count", "3", "--arch", "x86_64"],
        &[("VMEMU_SEED", "0x2a")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let first = stdout.lines().next().unwrap();
    assert!(first.starts_with("vmemu fuzz: seed 0x2a"), "{first}");
    assert!(stdout.contains("3 workloads"), "{stdout}");
    // --seed wins over the environment.
    let out = vmemu(
        &["fuzz", "--count", "1", "--seed", "7"],
        &[("VMEMU_SEED", "0x2a")],
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("vmemu fuzz: seed 0x7"));
}

/// `--shard K/N` partitions the indices: the JSON lines of the shards add
/// up to the whole run and each shard's result is one JSON object.
#[test]
fn shards_concatenate() {
    let mut total = 0;
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let out = vmemu(
            &[
                "fuzz", "--seed", "0x99", "--count", "20", "--shard", &shard, "--format", "json",
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(0));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "the header and the report: {stdout}");
        let h: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!((&h["type"], &h["schema"]), (&"header".into(), &1.into()));
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["type"], "fuzz_report");
        assert_eq!(v["shard"], shard.as_str());
        assert_eq!(v["seed"], "0x99");
        total += v["workloads"].as_u64().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("seed 0x99"));
    }
    assert_eq!(total, 20);
}

#[test]
fn replay_of_a_file() {
    let f = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fuzz_regressions/thp_mprotect_split.vmw"
    );
    let out = vmemu(
        &[
            "fuzz", "--replay", f, "--arch", "arm64", "--kernel", "v6.13",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"));
}

#[test]
fn bad_fuzz_arguments_exit_2() {
    for args in [
        vec!["fuzz", "--shard", "3/2"],
        vec!["fuzz", "--seed", "zz"],
        vec!["fuzz", "--time", "soon"],
        vec!["fuzz", "--arch", "mips"],
        vec!["fuzz", "--kernel", "v9.9"],
        vec!["fuzz", "--replay", "/nonexistent.vmw"],
    ] {
        let out = vmemu(&args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let dir = std::env::temp_dir().join(format!("vmemu-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.vmw");
    std::fs::write(&p, "map a 1 page\nfrobnicate\n").unwrap();
    let out = vmemu(&["fuzz", "--replay", p.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.vmw:2:1:"));
}

/// The concurrency fuzzer in its short form (the long one is
/// `vmemu fuzz --concurrency --count 40000`, ≥ 10^5 interleaved calls): the
/// real gup-fast walker is preempted at its entry reads on every level, from
/// `gup_pgd_range` down to `gup_pte_range`, and no schedule fails.
#[test]
fn concurrency_short() {
    use vmemu_harness::concurrency::{schedule, schedule_seed};
    let out = vmemu(
        &["fuzz", "--concurrency", "--seed", "3", "--count", "30"],
        &[],
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("30 schedules") && s.contains(" 0 failed"), "{s}");
    for a in ArchId::MAIN {
        let st = schedule(schedule_seed(5, 1), a, &p("v6.13"), 4, false).unwrap();
        assert!(st.calls >= 12 && st.walks > 0, "{a}: {st:?}");
    }
    // Per level, the entry reads the fuzzer preempted the walker at.
    let mut total = vmemu_harness::concurrency::ScheduleStats::default();
    for i in 0..12 {
        let a = ArchId::MAIN[(i % 3) as usize];
        total.add(&schedule(schedule_seed(7, i), a, &p("v4.10"), 8, false).unwrap());
    }
    for l in 0..4 {
        assert!(
            total.preempted[l] > 0 && total.reads[l] >= total.preempted[l],
            "level {l}: {total:?}"
        );
    }
    assert!(total.interleaved_calls > 0, "{total:?}");
}

/// The deferral rule broken on purpose (`Machine::break_table_deferral`):
/// some schedule catches the walker reading a table freed under it.
#[test]
fn concurrency_catches_a_broken_deferral_rule() {
    use vmemu_harness::concurrency::{schedule, schedule_seed};
    let caught = (0..80).find_map(|i| {
        let a = ArchId::MAIN[(i % 3) as usize];
        schedule(schedule_seed(5, i), a, &p("v6.13"), 4, true)
            .err()
            .filter(|e| e.contains("UseAfterFree") && e.contains("freed"))
    });
    assert!(
        caught.is_some(),
        "no schedule caught a walker reading a freed table"
    );
    // The same schedules pass with the rule.
    for i in 0..20 {
        let a = ArchId::MAIN[(i % 3) as usize];
        assert!(
            schedule(schedule_seed(5, i), a, &p("v6.13"), 4, false).is_ok(),
            "{i}"
        );
    }
}

/// ≥ 10^5 interleaved gup calls, zero failures (run with
/// `cargo test --release -- --ignored`).
#[test]
#[ignore = "long: minutes in release"]
fn concurrency_long() {
    use vmemu_harness::concurrency::{ScheduleStats, schedule, schedule_seed};
    let mut total = ScheduleStats::default();
    let mut i = 0u64;
    while total.interleaved_calls < 100_000 {
        let a = ArchId::MAIN[(i % 3) as usize];
        let k = if (i / 3).is_multiple_of(2) {
            "v4.10"
        } else {
            "v6.13"
        };
        let s = schedule(schedule_seed(11, i), a, &p(k), 8, false)
            .unwrap_or_else(|e| panic!("schedule {i} on {a} under {k}: {e}"));
        total.add(&s);
        i += 1;
    }
}

/// What seeded fuzzing found on the vulnerable profiles of the known bugs,
/// as the fuzzer shrank it: the bug's event is a finding under the
/// vulnerable profile on every main arch, and the same workload passes
/// every check under the fixed profiles. Header: `# finding: VULNERABLE
/// EVENT [on ARCH...]; fixed: K...`.
#[test]
fn fuzz_findings_show_only_on_vulnerable_profiles() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_findings");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let f = e.unwrap().path();
        if f.extension().is_none_or(|x| x != "vmw") {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&f).unwrap();
        let header = text.lines().next().unwrap();
        let (vuln, fixed) = header
            .strip_prefix("# finding: ")
            .and_then(|h| h.split_once("; fixed: "))
            .expect("first line: # finding: KERNEL EVENT; fixed: K...");
        // `KERNEL EVENT [on ARCH...]`: a layout-dependent finding names the
        // arches its shrunk form reproduces on (page sizes move boundaries).
        let (vuln, on) = vuln.split_once(" on ").unwrap_or((vuln, ""));
        let (kernel, event) = vuln.split_once(' ').unwrap();
        let kernel = &p(kernel);
        let name = f.display().to_string();
        for arch in ArchId::MAIN {
            if !on.is_empty() && !on.split_whitespace().any(|a| a == arch.name()) {
                continue;
            }
            match fuzz::check_text(&text, &name, arch, kernel, &Limits::default()) {
                Outcome::Find(sig, _) => assert_eq!(sig, format!("bug: {event}"), "{name}"),
                other => panic!("{name} on {arch} under {kernel}: {other:?}"),
            }
            for k in fixed.split_whitespace() {
                let o = fuzz::check_text(&text, &name, arch, &p(k), &Limits::default());
                assert_eq!(o, Outcome::Pass, "{name} on {arch} under {k}");
            }
        }
    }
    assert!(n >= 1);
}

/// `vmemu fuzz merge` of shards 1/4 .. 4/4 gives the report of one
/// unsharded run of the same seed (all but the wall time), whatever the
/// thread count of each (`-j`): counts summed, failures in index order,
/// each signature shrunk once from its lowest index.
#[test]
fn merged_shards_equal_one_run() {
    let dir = std::env::temp_dir().join(format!("vmemu-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_dir = dir.join("shrunk");
    let out_dir = out_dir.to_str().unwrap();
    // Seed 0x5eed under the posted Layton patch finds its data mismatch at
    // workloads 172 (shard 1) and 1446 (shard 3): both shards shrink it.
    let common = [
        "fuzz",
        "--seed",
        "0x5eed",
        "--count",
        "2000",
        "--arch",
        "x86_64",
        "--kernel",
        "v4.10+layton",
        "--format",
        "json",
        "--out",
        out_dir,
    ];
    let json = |extra: &[&str]| {
        let args: Vec<&str> = common.iter().chain(extra).copied().collect();
        let out = vmemu(&args, &[]);
        assert!(out.status.code().is_some_and(|c| c < 2), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let mut files = Vec::new();
    for k in 1..=4 {
        let shard = format!("{k}/4");
        let jobs = if k % 2 == 0 { "1" } else { "2" };
        let p = dir.join(format!("shard-{k}.json"));
        std::fs::write(&p, json(&["--shard", &shard, "-j", jobs])).unwrap();
        files.push(p.display().to_string());
    }
    // The last line of a report is the `fuzz_report` (after the header).
    let report = |text: &str| -> serde_json::Value {
        serde_json::from_str(text.trim().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let whole = report(&json(&["-j", "2"]));
    let mut args = vec!["fuzz", "merge", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let out = vmemu(&args, &[]);
    assert!(out.status.code().is_some_and(|c| c < 2), "{out:?}");
    let merged = report(&String::from_utf8_lossy(&out.stdout));
    let strip = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("elapsed_ms");
        v
    };
    assert_eq!(strip(merged.clone()), strip(whole.clone()));
    assert_eq!(merged["workloads"], 2000);
    // The campaign has repeated signatures, so the merge had work to do.
    let fails = merged["failures"].as_array().unwrap();
    let shrunk = fails.iter().filter(|f| f["workload"] != "").count();
    assert!(fails.len() > shrunk, "{merged}");
    // A missing shard is an error.
    let out = vmemu(&["fuzz", "merge", &files[0], &files[1]], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing shard reports: 3/4, 4/4"));
}
