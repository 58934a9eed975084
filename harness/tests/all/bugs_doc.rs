//! docs/bugs.md must hold exactly the tables `vmemu report --bugs` produces
//! now, so a change that opens or closes a known bug shows in review.

use vmemu_harness::{bugs::KNOWN_BUGS, bugs_report, report};

fn doc() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/bugs.md");
    std::fs::read_to_string(p).expect("docs/bugs.md")
}

#[test]
fn bugs_md_tables_are_current() {
    let secs = bugs_report::generate().expect("the bug workloads run");
    let secs: Vec<(&str, String)> = secs.iter().map(|(i, t)| (i.as_str(), t.clone())).collect();
    let doc = doc();
    let stale = report::stale(&doc, &secs);
    assert!(
        stale.is_empty(),
        "docs/bugs.md is stale for {stale:?}; run `vmemu report --bugs --write docs/bugs.md`"
    );
    assert_eq!(report::splice(&doc, &secs).unwrap(), doc);
}

#[test]
fn bugs_md_names_every_bug_and_no_run_fails() {
    let doc = doc();
    for b in KNOWN_BUGS {
        assert!(doc.contains(b.cve), "docs/bugs.md lacks {}", b.cve);
    }
    assert!(
        !doc.contains("WARNING"),
        "a bug workload failed its expects"
    );
}
