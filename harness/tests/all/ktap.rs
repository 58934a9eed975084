//! `--format ktap`: the output against a grammar of KTAP version 1 written
//! here from `Documentation/dev-tools/ktap.rst`, and against the kernel's own
//! parser, `tools/testing/kunit/kunit_parser.py`, when python3 and a kernel
//! tree are at hand (`VMEMU_KUNIT_PARSER=/path/to/kunit_parser.py`, else
//! `/usr/src/linux-source-*/tools/testing/kunit/kunit_parser.py`, as the
//! Debian/Ubuntu `linux-source-*` packages extract).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vmemu_harness::ktap::test_name;

fn vmemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(args)
        .output()
        .expect("vmemu runs")
}

/// A directory with a passing workload, a failing one (a wrong expect and a
/// reference never released) and one restricted to arm64.
fn mixed_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmemu-ktap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in [
        (
            "a_ok.vmw",
            "map buf 1 page\ntouch buf\nr = get_user_pages_fast(buf, 1, 0)\nexpect r == 1\nrelease r\n",
        ),
        (
            "b_bad.vmw",
            "map buf 1 page\ntouch buf\nr = get_user_pages_fast(buf, 1, 0)\nexpect r == 7\nexpect r == 1\n",
        ),
        ("c_arm.vmw", "arches arm64\nmap buf 1 page\ntouch buf\n"),
    ] {
        std::fs::File::create(dir.join(name))
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    dir
}

// ---------------------------------------------------------------------------
// The grammar.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    Skip,
}

/// A test result line as the grammar read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: String,
    status: Status,
    /// Diagnostic lines just before the result line, at any depth below.
    diagnostics: Vec<String>,
    children: Vec<Node>,
}

impl Node {
    fn leaves(&self) -> usize {
        if self.children.is_empty() {
            1
        } else {
            self.children.iter().map(Node::leaves).sum()
        }
    }
}

/// One open level: a version line, then a plan, then results numbered 1..N.
struct Level {
    plan: Option<usize>,
    subtest_name: Option<String>,
    done: Vec<Node>,
    pending_diag: Vec<String>,
}

/// `ok N desc [# SKIP reason]` / `not ok N desc`.
fn result_line(s: &str) -> Option<(bool, usize, &str, Option<&str>)> {
    let (ok, rest) = if let Some(r) = s.strip_prefix("ok ") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("not ok ") {
        (false, r)
    } else {
        return None;
    };
    let (num, rest) = rest.split_once(' ')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (desc, directive) = match rest.split_once(" # ") {
        Some((d, dir)) => (d, Some(dir)),
        None => (rest, None),
    };
    Some((ok, num.parse().ok()?, desc, directive))
}

fn plan_line(s: &str) -> Option<usize> {
    let n = s.strip_prefix("1..")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// Checks `doc` line by line against KTAP version 1 (the subset vmemu
/// writes: no unknown lines) and returns the top-level tests.
fn parse_ktap(doc: &str) -> Result<Vec<Node>, String> {
    let mut lines = doc.lines().enumerate().peekable();
    match lines.next() {
        Some((_, "KTAP version 1")) => {}
        other => return Err(format!("line 1 is not `KTAP version 1`: {other:?}")),
    }
    let mut stack = vec![Level {
        plan: None,
        subtest_name: None,
        done: Vec::new(),
        pending_diag: Vec::new(),
    }];
    for (i, line) in lines {
        let at = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = &line[indent..];
        let depth = stack.len() - 1;
        if indent % 2 != 0 {
            return Err(at("indentation is not a multiple of two spaces"));
        }
        let level = indent / 2;
        let top = stack.last_mut().expect("a level is open");
        if content == "KTAP version 1" {
            if level != depth + 1 || top.plan.is_none() {
                return Err(at(
                    "a nested version line must be one level deeper, after a plan",
                ));
            }
            stack.push(Level {
                plan: None,
                subtest_name: None,
                done: Vec::new(),
                pending_diag: Vec::new(),
            });
        } else if let Some(n) = plan_line(content) {
            if level != depth || top.plan.is_some() || !top.done.is_empty() {
                return Err(at("a plan must follow its version line, once"));
            }
            top.plan = Some(n);
        } else if let Some(d) = content.strip_prefix('#') {
            if level > depth {
                return Err(at("a diagnostic deeper than any open test"));
            }
            let d = d.strip_prefix(' ').unwrap_or(d);
            if let Some(name) = d.strip_prefix("Subtest: ") {
                if top.plan.is_some() || depth == 0 {
                    return Err(at(
                        "`# Subtest:` belongs between a nested version line and its plan",
                    ));
                }
                top.subtest_name = Some(name.to_string());
            } else if depth == 0 && d.starts_with("Totals: ") {
                // The closing summary of the document.
            } else {
                // A diagnostic belongs to the level of its indentation (the
                // spec puts a parent's diagnostics at the parent's level).
                stack[level].pending_diag.push(d.to_string());
            }
        } else if let Some((ok, num, desc, directive)) = result_line(content) {
            if top.plan.is_none() {
                return Err(at("a result before the plan"));
            }
            let children = if level + 1 == depth {
                // Closes the nested level: it is the parent's result.
                let child = stack.pop().expect("nested level");
                if Some(child.done.len()) != child.plan {
                    return Err(at("a nested level closed before its plan was complete"));
                }
                if child.subtest_name.as_deref() != Some(desc) {
                    return Err(at("the result's name differs from its `# Subtest:` line"));
                }
                if !child.pending_diag.is_empty() {
                    return Err(at(
                        "diagnostics after the last nested result belong to the parent's level",
                    ));
                }
                child.done
            } else if level == depth {
                Vec::new()
            } else {
                return Err(at("a result at the wrong indentation"));
            };
            let top = stack.last_mut().expect("a level is open");
            if num != top.done.len() + 1 {
                return Err(at(&format!("expected test number {}", top.done.len() + 1)));
            }
            if Some(num) > top.plan {
                return Err(at("more results than the plan"));
            }
            let valid = !desc.is_empty()
                && desc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !desc.starts_with('.')
                && !desc.ends_with('.');
            if !valid {
                return Err(at("name is not WORD(.WORD)* of [A-Za-z0-9_-]"));
            }
            if top.done.iter().any(|n| n.name == desc) {
                return Err(at("duplicate name at this level"));
            }
            let status = match directive {
                None if ok => Status::Pass,
                None => Status::Fail,
                Some(d) if d == "SKIP" || d.starts_with("SKIP ") => Status::Skip,
                Some(d) => return Err(at(&format!("unexpected directive {d}"))),
            };
            let failed_child = children.iter().any(|c| c.status == Status::Fail);
            if !children.is_empty() && failed_child != (status == Status::Fail) {
                return Err(at(
                    "a parent must fail exactly when one of its subtests fails",
                ));
            }
            let diagnostics = std::mem::take(&mut top.pending_diag);
            top.done.push(Node {
                name: desc.to_string(),
                status,
                diagnostics,
                children,
            });
        } else {
            return Err(at("not a KTAP line"));
        }
    }
    if stack.len() != 1 {
        return Err("the document ends inside a nested test".into());
    }
    let top = stack.pop().expect("top level");
    if Some(top.done.len()) != top.plan {
        return Err(format!(
            "plan 1..{:?} but {} results",
            top.plan,
            top.done.len()
        ));
    }
    Ok(top.done)
}

#[test]
fn the_grammar_rejects_what_the_spec_forbids() {
    let good = "KTAP version 1\n1..2\n  KTAP version 1\n  # Subtest: a.b\n  1..1\n  ok 1 x\nok 1 a.b\nok 2 c # SKIP why\n";
    let t = parse_ktap(good).expect("valid");
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].children.len(), 1);
    assert_eq!(t[1].status, Status::Skip);
    for (what, bad) in [
        ("no version", "1..1\nok 1 a\n"),
        ("no plan", "KTAP version 1\nok 1 a\n"),
        ("numbering", "KTAP version 1\n1..2\nok 1 a\nok 3 b\n"),
        ("short", "KTAP version 1\n1..2\nok 1 a\n"),
        ("hash in name", "KTAP version 1\n1..1\nok 1 a#b\n"),
        ("odd indent", "KTAP version 1\n1..1\n ok 1 a\n"),
        (
            "unclosed nesting",
            "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  ok 1 x\n",
        ),
        (
            "parent ok with a failing child",
            "KTAP version 1\n1..1\n  KTAP version 1\n  # Subtest: p\n  1..1\n  not ok 1 x\nok 1 p\n",
        ),
        (
            "nested plan incomplete",
            "KTAP version 1\n1..1\n  KTAP version 1\n  # Subtest: p\n  1..2\n  ok 1 x\nok 1 p\n",
        ),
        ("unknown line", "KTAP version 1\n1..1\nhello\nok 1 a\n"),
    ] {
        assert!(parse_ktap(bad).is_err(), "{what} accepted");
    }
}

/// The JSON summaries of the same command, as an independent account of
/// the runs: (name, passed, expects, leaked, unexpected events).
fn summaries(args: &[&str]) -> Vec<(String, bool, usize, u64, usize)> {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let out = vmemu(&a);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            (v["type"] == "summary").then_some(())?;
            Some((
                test_name(&[
                    v["workload"].as_str()?,
                    v["arch"].as_str()?,
                    v["kernel"].as_str()?,
                ]),
                v["passed"].as_bool()?,
                v["expects"].as_u64()? as usize,
                v["leaked_refs"].as_u64()?,
                v["unexpected_events"].as_array()?.len(),
            ))
        })
        .collect()
}

#[test]
fn matrix_ktap_follows_the_grammar_and_lists_every_run() {
    let out = vmemu(&["matrix", "--format", "ktap"]);
    assert_eq!(out.status.code(), Some(0));
    let doc = String::from_utf8(out.stdout).expect("UTF-8");
    let all = parse_ktap(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    // Combinations a workload's `arches` line excludes are listed as SKIP in
    // KTAP and left out of the JSON summaries.
    let skipped = all.iter().filter(|t| t.status == Status::Skip).count();
    let tests: Vec<_> = all
        .into_iter()
        .filter(|t| t.status != Status::Skip)
        .collect();
    let sums = summaries(&["matrix"]);
    assert_eq!(tests.len(), sums.len());
    for (t, (name, passed, expects, _, _)) in tests.iter().zip(&sums) {
        assert_eq!(&t.name, name);
        assert!(*passed);
        assert_eq!(t.status, Status::Pass, "{name}");
        assert_eq!(t.children.len(), *expects, "{name}: one subtest per expect");
        assert!(t.children.iter().all(|c| c.name.starts_with("expect_L")));
    }
    assert!(
        tests
            .iter()
            .any(|t| t.name == "kernel_ds_gup_fast.arm64.v4_10_capper")
    );
    let leaves: usize = tests.iter().map(Node::leaves).sum();
    assert_eq!(leaves, sums.iter().map(|s| s.2.max(1)).sum::<usize>());
    assert!(doc.ends_with(&format!(
        "# Totals: pass:{n} fail:0 skip:{skipped} total:{t}\n",
        n = tests.len(),
        t = tests.len() + skipped
    )));
    assert!(!doc.contains('\x1b'), "KTAP is never coloured");
    let colored = vmemu(&["--color", "always", "matrix", "--format", "ktap"]);
    assert_eq!(colored.stdout, doc.as_bytes());
}

#[test]
fn failures_and_skips_in_ktap() {
    let dir = mixed_dir();
    let out = vmemu(&["matrix", dir.to_str().unwrap(), "--format", "ktap"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = String::from_utf8(out.stdout).expect("UTF-8");
    let tests = parse_ktap(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    let got: Vec<(&str, Status)> = tests.iter().map(|t| (t.name.as_str(), t.status)).collect();
    use Status::*;
    assert_eq!(
        got,
        [
            ("a_ok.x86_64.v6_18", Pass),
            ("a_ok.arm64.v6_18", Pass),
            ("a_ok.ppc64.v6_18", Pass),
            ("b_bad.x86_64.v6_18", Fail),
            ("b_bad.arm64.v6_18", Fail),
            ("b_bad.ppc64.v6_18", Fail),
            ("c_arm.x86_64.v6_18", Skip),
            ("c_arm.arm64.v6_18", Pass),
            ("c_arm.ppc64.v6_18", Skip),
        ]
    );
    assert!(doc.contains("ok 7 c_arm.x86_64.v6_18 # SKIP not for this arch (arches arm64)\n"));
    assert_eq!(tests.iter().map(Node::leaves).sum::<usize>(), 15);
    let bad = &tests[4];
    let kids: Vec<(&str, Status)> = bad
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.status))
        .collect();
    assert_eq!(
        kids,
        [
            ("expect_L4", Fail),
            ("expect_L5", Pass),
            ("no_leaked_references", Fail)
        ]
    );
    assert_eq!(
        bad.children[0].diagnostics,
        ["L4   expect r == 7  -> FAILED: got 1"]
    );
    assert_eq!(
        bad.children[2].diagnostics,
        ["1 page references or pins still held at the end of the run"]
    );
    assert!(bad.diagnostics[0].starts_with("b_bad on arm64 under v6.18: FAIL"));
    // `run` lists the same skips.
    let run = vmemu(&[
        "run",
        dir.join("c_arm.vmw").to_str().unwrap(),
        "--format",
        "ktap",
    ]);
    assert_eq!(run.status.code(), Some(0));
    let tests = parse_ktap(&String::from_utf8_lossy(&run.stdout)).expect("valid");
    let st: Vec<Status> = tests.iter().map(|t| t.status).collect();
    assert_eq!(st, [Skip, Pass, Skip]);
}

// ---------------------------------------------------------------------------
// The kernel's parser.

/// python3 and kunit_parser.py, or why not.
fn kunit_parser() -> Result<(String, PathBuf), String> {
    let python = "python3".to_string();
    match Command::new(&python).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return Err("python3 not found".into()),
    }
    if let Some(p) = std::env::var_os("VMEMU_KUNIT_PARSER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "VMEMU_KUNIT_PARSER={} is not a file",
            p.display()
        );
        return Ok((python, p));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/src")
        .map_err(|e| format!("/usr/src: {e}"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("linux-source-"))
        .map(|e| e.path().join("tools/testing/kunit/kunit_parser.py"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().map(|p| (python, p)).ok_or_else(|| {
        "no kunit_parser.py: set VMEMU_KUNIT_PARSER, or `apt-get install linux-source-6.1` \
         and extract tools/testing/kunit from /usr/src/linux-source-*.tar.xz"
            .into()
    })
}

/// What kunit_parser.py made of `doc`: the JSON printed by the snippet.
fn kunit_parse(python: &str, parser: &Path, doc: &str) -> serde_json::Value {
    const SNIPPET: &str = r#"
import inspect, json, sys
sys.path.insert(0, sys.argv[1])
import kunit_parser, kunit_printer
lines = sys.stdin.read().splitlines()
if len(inspect.signature(kunit_parser.parse_run_tests).parameters) >= 2:
    test = kunit_parser.parse_run_tests(lines, kunit_printer.stdout)
else:
    test = kunit_parser.parse_run_tests(lines)
def node(t):
    return {"name": t.name, "status": t.status.name, "log": t.log,
            "subtests": [node(s) for s in t.subtests]}
c = test.counts
print("VMEMU-KUNIT " + json.dumps({
    "status": test.status.name, "total": c.total(), "passed": c.passed,
    "failed": c.failed, "skipped": c.skipped, "crashed": c.crashed,
    "errors": c.errors, "subtests": [node(s) for s in test.subtests]}))
"#;
    let dir = parser.parent().expect("a directory");
    let mut child = Command::new(python)
        .args(["-c", SNIPPET])
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(doc.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kunit_parser failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VMEMU-KUNIT "))
        .unwrap_or_else(|| panic!("no result from the snippet:\n{text}"));
    serde_json::from_str(line).expect("JSON")
}

#[test]
fn kunit_parser_accepts_the_matrix() {
    let (python, parser) = match kunit_parser() {
        Ok(x) => x,
        Err(why) => {
            eprintln!("skipping the kunit_parser.py check: {why}");
            return;
        }
    };
    eprintln!("using {}", parser.display());
    let out = vmemu(&["matrix", "--format", "ktap"]);
    assert_eq!(out.status.code(), Some(0));
    let v = kunit_parse(&python, &parser, &String::from_utf8_lossy(&out.stdout));
    let sums = summaries(&["matrix"]);
    let leaves: usize = sums.iter().map(|s| s.2.max(1)).sum();
    let skipped = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ok ") && l.contains("# SKIP"))
        .count();
    assert_eq!(v["status"], "SUCCESS", "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["total"], leaves + skipped, "every result counted");
    assert_eq!(v["passed"], leaves);
    assert_eq!(v["skipped"], skipped);
    let subs: Vec<&serde_json::Value> = v["subtests"]
        .as_array()
        .expect("subtests")
        .iter()
        .filter(|s| s["status"] != "SKIPPED")
        .collect();
    assert_eq!(subs.len(), sums.len());
    for (s, (name, _, expects, _, _)) in subs.iter().zip(&sums) {
        assert_eq!(s["name"], name.as_str());
        assert_eq!(s["status"], "SUCCESS", "{name}");
        assert_eq!(s["subtests"].as_array().expect("array").len(), *expects);
    }
}

#[test]
fn kunit_parser_sees_failures_and_skips() {
    let (python, parser) = match kunit_parser() {
        Ok(x) => x,
        Err(why) => {
            eprintln!("skipping the kunit_parser.py check: {why}");
            return;
        }
    };
    let dir = mixed_dir();
    let out = vmemu(&["matrix", dir.to_str().unwrap(), "--format", "ktap"]);
    assert_eq!(out.status.code(), Some(1));
    let v = kunit_parse(&python, &parser, &String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["status"], "FAILURE", "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    // a_ok: 3 expects pass; b_bad: per arch one failing and one passing
    // expect and the leak; c_arm: one pass, two skips.
    assert_eq!(
        (
            &v["total"],
            &v["passed"],
            &v["failed"],
            &v["skipped"],
            &v["crashed"]
        ),
        (&15.into(), &7.into(), &6.into(), &2.into(), &0.into()),
        "{v}"
    );
    let statuses: Vec<&str> = v["subtests"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        [
            "SUCCESS", "SUCCESS", "SUCCESS", "FAILURE", "FAILURE", "FAILURE", "SKIPPED", "SUCCESS",
            "SKIPPED"
        ]
    );
    let bad = &v["subtests"][3];
    assert_eq!(bad["name"], "b_bad.x86_64.v6_13");
    let expect = &bad["subtests"][0];
    assert_eq!(expect["name"], "expect_L4");
    assert_eq!(expect["status"], "FAILURE");
    assert!(
        expect["log"]
            .as_array()
            .expect("log")
            .iter()
            .any(|l| l.as_str().unwrap_or("").contains("-> FAILED: got 1")),
        "{expect}"
    );
    assert_eq!(bad["subtests"][2]["name"], "no_leaked_references");
    assert_eq!(bad["subtests"][2]["status"], "FAILURE");
}
