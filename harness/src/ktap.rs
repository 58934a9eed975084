//! KTAP version 1 output, as the kernel's `Documentation/dev-tools/ktap.rst`
//! defines it and KUnit prints it, so vmemu results can be read by
//! `tools/testing/kunit/kunit_parser.py` and the CI systems that consume
//! kernel test output.
//!
//! A document is a version line, a plan and one result line per test:
//!
//! ```text
//! KTAP version 1
//! 1..3
//!   KTAP version 1
//!   # Subtest: kernel_ds_gup_fast.arm64.v4_10
//!   1..2
//!   ok 1 expect_L23
//!   # L26  expect f.pages == [victim[0], victim[1]]  -> FAILED: got []
//!   not ok 2 expect_L26
//! # kernel_ds_gup_fast on arm64 under v4.10: FAIL: 1 of 2 expects failed, 0 references leaked
//! not ok 1 kernel_ds_gup_fast.arm64.v4_10
//! ok 2 zero_len_bvec.x86_64.v6_13
//! ok 3 only_arm.x86_64.v6_13 # SKIP not for this arch (arches arm64)
//! # Totals: pass:1 fail:1 skip:1 total:3
//! ```
//!
//! * One top-level test per workload × arch × profile, numbered from 1 in
//!   plan order. Its name is `WORKLOAD.ARCH.PROFILE` where each part has
//!   every character other than `A-Z a-z 0-9 _ -` replaced by `_`
//!   ([`test_name`]): `kernel_ds_gup_fast.arm64.v4_10_capper` for
//!   `v4.10+capper`. Dots only separate the parts, as in KUnit's
//!   `suite.test` names; no name contains `#`.
//! * A run with `expect` records has nested subtests, indented two spaces,
//!   with their own version line, `# Subtest:` line (as KUnit prints) and
//!   plan: one per expect record in transcript order, named `expect_L<line>`.
//!   A failing expect is preceded by a `#` diagnostic with its transcript line
//!   (what it saw).
//! * A run that fails for a reason no expect shows gets a further failing
//!   subtest so the failure counts in parsers that count leaf tests:
//!   `no_leaked_references` (with the number still held) and
//!   `no_unexpected_events` (one diagnostic per event). A passing run has
//!   exactly one subtest per expect, and a passing run without expects is a
//!   plain result line.
//! * A failing run's result line is preceded by a diagnostic with the summary
//!   of the text format.
//! * A workload × arch (or profile) that does not apply is listed, not
//!   omitted: `ok N name # SKIP not for this arch (arches arm64)`.
//! * The document ends with `# Totals: pass:P fail:F skip:S total:N` over
//!   the top-level tests.
//!
//! [`render`] renders any tree of [`Test`]s, so other subcommands (`fuzz`)
//! can print KTAP too; [`run_test`] and [`skipped`] build the tests of runs.

use std::fmt::Write as _;

use crate::run::{self, Run};

/// The result of one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `ok`.
    Pass,
    /// `not ok`.
    Fail,
    /// `ok ... # SKIP reason`.
    Skip(String),
}

/// One KTAP test: its result line, the diagnostics printed just before it,
/// and its subtests (printed nested before the diagnostics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Test {
    /// The description (see [`test_name`]); `#` and line breaks are replaced
    /// when rendered.
    pub name: String,
    /// The result.
    pub outcome: Outcome,
    /// Diagnostic lines (without the `# `); may contain line breaks.
    pub diagnostics: Vec<String>,
    /// Nested tests.
    pub subtests: Vec<Test>,
}

impl Test {
    /// A leaf test.
    #[must_use]
    pub fn new(name: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            name: name.into(),
            outcome,
            diagnostics: Vec::new(),
            subtests: Vec::new(),
        }
    }

    /// Whether the test failed (`not ok`).
    #[must_use]
    pub fn failed(&self) -> bool {
        self.outcome == Outcome::Fail
    }
}

/// `parts` joined by `.`, each with every character other than ASCII letters,
/// digits, `_` and `-` replaced by `_` (an empty part becomes `_`).
#[must_use]
pub fn test_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            if p.is_empty() {
                return "_".to_string();
            }
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The test of one run: nested expect subtests, diagnostics for what failed.
#[must_use]
pub fn run_test(r: &Run) -> Test {
    let s = &r.summary;
    let mut subtests: Vec<Test> = Vec::new();
    for rec in r.records.iter().filter(|rec| rec.op == "expect") {
        let ok = rec.ok.unwrap_or(true);
        let mut name = format!("expect_L{}", rec.line);
        // The language has no loops, but keep names unique regardless.
        let mut n = 2;
        while subtests.iter().any(|t| t.name == name) {
            name = format!("expect_L{}_{n}", rec.line);
            n += 1;
        }
        let mut t = Test::new(name, if ok { Outcome::Pass } else { Outcome::Fail });
        if !ok {
            t.diagnostics.push(run::format_record(rec));
        }
        subtests.push(t);
    }
    if s.leaked_refs != s.expected_leaks {
        let mut t = Test::new("no_leaked_references", Outcome::Fail);
        t.diagnostics.push(format!(
            "{} page references or pins still held at the end of the run{}",
            s.leaked_refs,
            if s.expected_leaks == 0 {
                String::new()
            } else {
                format!(" ({} declared by `expect leaked`)", s.expected_leaks)
            }
        ));
        subtests.push(t);
    }
    if !s.unexpected_events.is_empty() {
        let mut t = Test::new("no_unexpected_events", Outcome::Fail);
        t.diagnostics.extend(
            s.unexpected_events
                .iter()
                .map(|e| format!("unexpected event: {e}")),
        );
        subtests.push(t);
    }
    let mut t = Test::new(
        test_name(&[&s.workload, &s.arch, &s.kernel]),
        if s.passed {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
    );
    if !s.passed {
        t.diagnostics.push(format!(
            "{} on {} under {}: FAIL: {} of {} expects failed, {} references leaked{}",
            s.workload,
            s.arch,
            s.kernel,
            s.failed_expects,
            s.expects,
            s.leaked_refs,
            if s.unexpected_events.is_empty() {
                ""
            } else {
                ", unexpected events"
            }
        ));
    }
    t.subtests = subtests;
    t
}

/// The test of a workload × arch × profile that was not run.
#[must_use]
pub fn skipped(workload: &str, arch: &str, kernel: &vmemu_mm::KernelProfile, reason: &str) -> Test {
    Test::new(
        test_name(&[workload, arch, &kernel.name()]),
        Outcome::Skip(reason.to_string()),
    )
}

/// KTAP text for a set of runs (no skips).
#[must_use]
pub fn format_runs(runs: &[Run]) -> String {
    render(&runs.iter().map(run_test).collect::<Vec<_>>())
}

/// A KTAP version 1 document of `tests`, ending with a `# Totals:` line.
#[must_use]
pub fn render(tests: &[Test]) -> String {
    let mut out = String::new();
    render_level(&mut out, tests, None, 0);
    let count = |f: fn(&Outcome) -> bool| tests.iter().filter(|t| f(&t.outcome)).count();
    let _ = writeln!(
        out,
        "# Totals: pass:{} fail:{} skip:{} total:{}",
        count(|o| *o == Outcome::Pass),
        count(|o| *o == Outcome::Fail),
        count(|o| matches!(o, Outcome::Skip(_))),
        tests.len()
    );
    out
}

fn clean_name(name: &str) -> String {
    let n: String = name
        .trim()
        .chars()
        .map(|c| {
            if matches!(c, '#' | '\n' | '\r') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if n.is_empty() { "_".to_string() } else { n }
}

fn diag(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{indent}# {}", line.trim_end());
    }
    if text.is_empty() {
        let _ = writeln!(out, "{indent}#");
    }
}

fn render_level(out: &mut String, tests: &[Test], parent: Option<&str>, depth: usize) {
    let indent = "  ".repeat(depth);
    let _ = writeln!(out, "{indent}KTAP version 1");
    if let Some(p) = parent {
        let _ = writeln!(out, "{indent}# Subtest: {p}");
    }
    let _ = writeln!(out, "{indent}1..{}", tests.len());
    for (i, t) in tests.iter().enumerate() {
        let name = clean_name(&t.name);
        if !t.subtests.is_empty() {
            render_level(out, &t.subtests, Some(&name), depth + 1);
        }
        for d in &t.diagnostics {
            diag(out, &indent, d);
        }
        let (res, directive) = match &t.outcome {
            Outcome::Pass => ("ok", String::new()),
            Outcome::Fail => ("not ok", String::new()),
            Outcome::Skip(why) => {
                let why = why.replace(['\n', '\r'], " ");
                let why = why.trim();
                (
                    "ok",
                    if why.is_empty() {
                        " # SKIP".to_string()
                    } else {
                        format!(" # SKIP {why}")
                    },
                )
            }
        };
        let _ = writeln!(out, "{indent}{res} {} {name}{directive}", i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang;
    use vmemu_arch::ArchId;

    #[test]
    fn names_keep_only_safe_characters() {
        assert_eq!(
            test_name(&["kernel_ds_gup_fast", "arm64", "v4.10+capper"]),
            "kernel_ds_gup_fast.arm64.v4_10_capper"
        );
        assert_eq!(test_name(&["a b#c", "ppc64-4k", ""]), "a_b_c.ppc64-4k._");
    }

    #[test]
    fn nested_skip_and_diagnostics_render_as_the_spec_shows() {
        let mut inner = Test::new("child_2", Outcome::Fail);
        inner.diagnostics.push("child_2: FAIL".into());
        let mut parent = Test::new("example", Outcome::Fail);
        parent.subtests = vec![Test::new("child_1", Outcome::Pass), inner];
        parent.diagnostics.push("example failed".into());
        let tests = vec![
            parent,
            Test::new("skipped # not", Outcome::Skip("not here\nat all".into())),
        ];
        assert_eq!(
            render(&tests),
            "KTAP version 1\n1..2\n  KTAP version 1\n  # Subtest: example\n  1..2\n  ok 1 child_1\n  # child_2: FAIL\n  not ok 2 child_2\n# example failed\nnot ok 1 example\nok 2 skipped _ not # SKIP not here at all\n# Totals: pass:0 fail:1 skip:1 total:2\n"
        );
    }

    #[test]
    fn a_run_maps_expects_to_subtests_and_leaks_to_a_failing_one() {
        let w = lang::parse(
            "demo.vmw",
            "map buf 1 page\ntouch buf\nr = get_user_pages_fast(buf, 1, 0)\nexpect r == 1\nexpect r == 7\n",
        )
        .unwrap();
        let r = crate::run::run(&w, ArchId::X86_64, &"v4.10".parse().unwrap()).unwrap();
        let t = run_test(&r);
        assert_eq!(t.name, "demo.x86_64.v4_10");
        assert!(t.failed());
        let names: Vec<(&str, bool)> = t
            .subtests
            .iter()
            .map(|s| (s.name.as_str(), s.failed()))
            .collect();
        assert_eq!(
            names,
            [
                ("expect_L4", false),
                ("expect_L5", true),
                ("no_leaked_references", true)
            ]
        );
        assert!(t.subtests[1].diagnostics[0].contains("FAILED: got 1"));
        assert!(t.subtests[2].diagnostics[0].starts_with("1 page references"));
    }

    #[test]
    fn a_passing_run_without_expects_is_a_leaf() {
        let w = lang::parse("plain.vmw", "map buf 1 page\ntouch buf\n").unwrap();
        let r = crate::run::run(&w, ArchId::Arm64, &"v6.13".parse().unwrap()).unwrap();
        let t = run_test(&r);
        assert_eq!(t, Test::new("plain.arm64.v6_13", Outcome::Pass));
    }
}
