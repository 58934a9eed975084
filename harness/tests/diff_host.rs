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
//! they are skipped with the reason printed. Only one test here maps
//! memory, so no other test thread of this binary can map something into a
//! hole a case has punched.
//! Replay a seed with `VMEMU_SEED=S cargo test -p vmemu-harness --test
//! diff_host -- --nocapture`.

use vmemu_harness::diff_host::{self, HostRunner};

const DEFAULT_SEED: u64 = 20_261_125;
const RANDOM_CASES: usize = 1000;

#[test]
fn host_and_emulator_agree() {
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

/// The four fixed cases where the 6.18 host differed from v6.13
/// (docs/fidelity.md): v6.18 returns what the host returned, v6.13 does
/// not, and `known_difference` explains the gap for v6.13's knobs only.
/// Emulator-only: runs on any host.
#[test]
fn v6_18_returns_what_the_6_18_host_did_and_only_v6_13_needs_excuses() {
    let p = |n: &str| vmemu_mm::KernelProfile::parse(n).unwrap();
    let (old, new) = (p("v6.13"), p("v6.18"));
    let cases = diff_host::fixed_cases();
    for (name, host_ret) in [
        ("vmsplice/to-user-empty-buffer-at-head", 200),
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
