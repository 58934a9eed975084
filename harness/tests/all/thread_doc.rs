//! docs/thread.md must hold exactly the claim tables `vmemu report` produces
//! now: regenerate them and compare each marked section, so the tour of the
//! 2017 thread cannot go stale.

use vmemu_harness::report;

fn doc() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/thread.md");
    std::fs::read_to_string(p).expect("docs/thread.md")
}

#[test]
fn thread_md_tables_are_current() {
    let secs = report::generate().expect("the claim workloads run");
    let doc = doc();
    let stale = report::stale(&doc, &secs);
    assert!(
        stale.is_empty(),
        "docs/thread.md is stale for {stale:?}; run `vmemu report --write docs/thread.md`"
    );
    // Splicing the current tables into the committed file changes nothing.
    assert_eq!(report::splice(&doc, &secs).unwrap(), doc);
}

#[test]
fn thread_md_covers_every_claim_and_arch() {
    let doc = doc();
    for c in report::claims() {
        let s = report::section(&doc, c.id).unwrap_or_else(|| panic!("no section {}", c.id));
        for arch in ["x86_64", "arm64", "ppc64"] {
            assert!(s.contains(arch), "claim {} has no {arch} column", c.id);
        }
        assert!(
            s.contains("Claim verdict: **"),
            "claim {} has no verdict",
            c.id
        );
        assert!(
            !s.contains("WARNING"),
            "claim {}: a workload run failed",
            c.id
        );
        // Every row the claim names was found in its runs.
        assert!(
            !s.contains("(not run)"),
            "claim {}: a statement is missing",
            c.id
        );
    }
    // The marker pair of the Layton claim written in parallel elsewhere.
    assert!(report::section(&doc, "layton").is_some());
}

#[test]
fn verdicts_follow_the_outcomes() {
    let secs = report::generate().unwrap();
    let verdict = |id: &str| {
        let s = &secs.iter().find(|(i, _)| *i == id).unwrap().1;
        s.split("Claim verdict: **")
            .nth(1)
            .unwrap()
            .split("**")
            .next()
            .unwrap()
            .to_string()
    };
    // arm64/ppc64 v4.10 walk kernel addresses under KERNEL_DS; x86 and the
    // fixed profiles do not.
    assert_eq!(verdict("find_extend_vma"), "depends-on-arch/profile");
    // Capper's check closes it on every arch.
    assert_eq!(verdict("TASK_SIZE"), "confirmed");
    // The ceph lockup is a v4.10 bug, fixed by Layton's patch and v4.17.
    assert_eq!(verdict("ceph_softlockup"), "depends-on-profile");
    // The emulator models no time.
    assert_eq!(verdict("batch"), "undecided");
}
