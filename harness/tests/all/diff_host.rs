//! The host differential: every case of the fixed table and 1000 seeded
//! random cases run on the host kernel and on the emulator (x86_64, the
//! profile nearest the host's kernel: `diff_host::host_profile`) must agree —
//! return value or errno, the bytes of every readable user page, and what
//! the pipe, file or device holds afterwards — except where a kernel change
//! the host has and that profile lacks explains the difference
//! (`diff_host::known_difference`, listed in docs/fidelity.md).
//!
//! Runs on Linux x86-64 hosts only; elsewhere it prints why it is skipped.
//! The O_DIRECT cases need a loop device (root and `losetup`); without one
//! they are skipped with the reason printed. The host side maps memory and
//! punches holes in it, and every other test of this binary (`tests/all`)
//! maps guest memory in threads of the same process: so the host comparison
//! runs alone, in a child process of this binary filtered to that one test,
//! where nothing else can map something into a hole a case has punched.
//! Replay a seed with `VMEMU_SEED=S cargo test -p vmemu-harness --test all
//! diff_host:: -- --nocapture`.

use vmemu_harness::diff_host::{self, HostRunner};

const DEFAULT_SEED: u64 = 20_261_125;
const RANDOM_CASES: usize = 1000;

/// Set in the child process that runs `host_and_emulator_agree` alone.
const ALONE: &str = "VMEMU_DIFF_HOST_ALONE";

/// Runs `host_and_emulator_agree` in a child process (this test binary,
/// filtered to exactly that test, one thread) and checks that it passed;
/// the child inherits `VMEMU_SEED` and `VMEMU_DIFF_NO_BDEV`.
fn run_alone_in_child() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "diff_host::host_and_emulator_agree",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(stdout.contains("diff_host: seed"), "the child ran the test");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn host_and_emulator_agree() {
    if std::env::var_os(ALONE).is_none() {
        run_alone_in_child();
        return;
    }
    let seed = std::env::var("VMEMU_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!(
        "diff_host: seed {seed} (replay with VMEMU_SEED={seed}), host kernel {}",
        diff_host::host_release()
    );
    let mut host = match HostRunner::new(std::env::var_os("VMEMU_DIFF_NO_BDEV").is_none()) {
        Ok(h) => h,
        Err(why) => {
            println!("diff_host: skipped: {why}");
            return;
        }
    };
    if let Some(why) = &host.bdev_skip {
        println!("diff_host: O_DIRECT cases skipped: {why}");
    }
    let fixed = diff_host::fixed_cases();
    let random = diff_host::random_cases(seed, RANDOM_CASES);

    let table = diff_host::compare_cases(&mut host, &fixed, |_| {});
    for (d, why) in &table.known {
        println!("known ({why}):\n{}", diff_host::format_disagreement(d));
    }
    let rand = diff_host::compare_cases(&mut host, &random, |_| {});
    println!("fixed table: {}", table.summary());
    println!("random: {}", rand.summary());
    let bad: Vec<String> = table
        .disagreements
        .iter()
        .chain(&rand.disagreements)
        .map(diff_host::format_disagreement)
        .collect();
    assert!(
        bad.is_empty(),
        "{} disagreement(s) (seed {seed}):\n{}",
        bad.len(),
        bad.join("\n")
    );
    // The table exercises what it claims to: enough cases really compared.
    assert!(table.compared + table.skipped == fixed.len());
    assert!(
        rand.compared >= RANDOM_CASES / 2,
        "too many random cases skipped"
    );
}

#[test]
fn random_cases_are_reproducible() {
    // Case k depends only on (seed, k), not on how many are generated.
    let a = diff_host::random_cases(7, 50);
    let b = diff_host::random_cases(7, 20);
    assert_eq!(a[..20], b[..]);
    assert_ne!(diff_host::random_cases(8, 20), b);
}

/// The fixed cases where the 6.18 host differed from v6.13
/// (docs/fidelity.md): v6.18 returns what the host returned, v6.13 does
/// not, and `known_difference` explains the gap for v6.13's knobs only.
/// (vmsplice to user memory over an empty buffer at the head is no longer
/// one: `eat_empty_buffer` releases it in 6.13 too, as arm64 6.12 under
/// QEMU showed.)
/// Emulator-only: runs on any host.
#[test]
fn v6_18_returns_what_the_6_18_host_did_and_only_v6_13_needs_excuses() {
    let p = |n: &str| vmemu_mm::KernelProfile::parse(n).unwrap();
    let (old, new) = (p("v6.13"), p("v6.18"));
    let cases = diff_host::fixed_cases();
    for (name, host_ret) in [
        ("writev/slot-taken-by-empty-buffer", 0x10000),
        ("dio_read/addr-unaligned", 512),
        ("dio_read/zero-len-unaligned-addr", 1024),
    ] {
        let c = cases.iter().find(|c| c.name == name).expect(name);
        let e_new = diff_host::emu::run(c, &new);
        let e_old = diff_host::emu::run(c, &old);
        assert_eq!(e_new.ret, host_ret, "{name} under v6.18");
        assert_ne!(e_old.ret, host_ret, "{name} under v6.13");
        assert!(
            diff_host::known_difference(c, &e_new, &e_old, &old.knobs).is_some(),
            "{name}: v6.13 has the entry"
        );
        assert!(
            diff_host::known_difference(c, &e_new, &e_old, &new.knobs).is_none(),
            "{name}: v6.18 has no excuse left"
        );
    }
}

/// Every built-in workload `export-c` can express for x86_64 exports, builds
/// with `cc -O1 -Wall -Werror`, runs on the host and agrees, expect by
/// expect, with the emulator on x86_64 under the profile the export checks
/// (the workload's newest): both pass or both fail. A failure the program
/// reports as a known difference (a kernel change after that profile,
/// `export_c::known_difference`) or as a skip for want of a loop device is
/// printed and accepted. Skipped, with the reason printed, without `cc` or
/// off Linux x86-64.
#[test]
fn exported_workloads_agree_with_the_emulator_on_the_host() {
    use std::process::Command;
    use vmemu_arch::ArchId;
    use vmemu_harness::{diff_kernel, export_c, lint, run, workloads::BUILTIN};

    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        println!("export-c host test skipped: not a Linux x86-64 host");
        return;
    }
    if Command::new("cc").arg("--version").output().is_err() {
        println!("export-c host test skipped: no `cc` on PATH");
        return;
    }
    let dir = std::env::temp_dir().join(format!("vmemu-export-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut exported, mut expects) = (0, 0);
    for (file, src) in BUILTIN {
        let w = lint::check_bytes(file, src.as_bytes()).unwrap();
        if !run::applies(&w, ArchId::X86_64) {
            continue;
        }
        let kernel = export_c::default_kernel(&w);
        let Ok(e) = export_c::export(&w, ArchId::X86_64, &kernel, false) else {
            continue;
        };
        exported += 1;
        let c = dir.join(format!("{}.c", w.name));
        let bin = dir.join(&w.name);
        std::fs::write(&c, &e.source).unwrap();
        let cc = Command::new("cc")
            .args(["-O1", "-Wall", "-Werror", "-o"])
            .arg(&bin)
            .arg(&c)
            .output()
            .unwrap();
        assert!(
            cc.status.success(),
            "{}: cc fails:\n{}",
            w.name,
            String::from_utf8_lossy(&cc.stderr)
        );
        let out = Command::new(&bin).current_dir(&dir).output().unwrap();
        let ktap = String::from_utf8_lossy(&out.stdout);
        assert!(ktap.starts_with("KTAP version 1\n"), "{}:\n{ktap}", w.name);
        let guest = diff_kernel::parse_expects(&ktap);
        let emu: Vec<(usize, bool)> = run::run(&w, ArchId::X86_64, &kernel)
            .unwrap()
            .records
            .iter()
            .filter(|r| r.op == "expect")
            .map(|r| (r.line, r.ok.unwrap_or(true)))
            .collect();
        assert_eq!(
            guest.iter().map(|g| g.line).collect::<Vec<_>>(),
            emu.iter().map(|e| e.0).collect::<Vec<_>>(),
            "{}: the program's expects are not the emulator's:\n{ktap}",
            w.name
        );
        for (g, (line, ok)) in guest.iter().zip(&emu) {
            expects += 1;
            if let Some(why) = &g.skip {
                println!("{}:L{line}: skipped on the host: {why}", w.name);
                continue;
            }
            assert_eq!(
                g.ok, *ok,
                "{}:L{line}: the host kernel and the emulator differ:\n{ktap}",
                w.name
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("export-c: {exported} workloads, {expects} expects compared on the host");
    assert!(exported >= 5, "only {exported} built-in workloads export");
}
