//! The `vmemu` binary: exit codes, error spans, JSON Lines fields.

use std::io::Write;
use std::process::{Command, Output};

fn vmemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(args)
        .output()
        .expect("vmemu runs")
}

fn script(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vmemu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    p
}

/// Malformed input: each gives exit 2 with `file:line:col` and never a panic.
#[test]
fn malformed_inputs_exit_2_with_a_span() {
    let huge_iovecs = format!(
        "map b 1 page\niter v iovec READ [{}]\n",
        vec!["b:1"; 1_000_000].join(", ")
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown statement",
            "map buf 4K\nfrobnicate the pages\n".into(),
            ":2:1:",
        ),
        ("bad number", "map buf 0x12G3\n".into(), ":1:9:"),
        (
            "undefined mapping",
            "r = get_user_pages_fast(nowhere, 1, 0)\n".into(),
            ":1:",
        ),
        (
            "overflowing arithmetic",
            "map a 1 page at 0xffffffffffffffff * 0xffffffffffffffff * 4\n".into(),
            ":1:",
        ),
        ("10^6 iovecs", huge_iovecs, ":2:1:"),
        (
            "unclosed block",
            "set_fs KERNEL_DS {\nmap a 1 page\n".into(),
            ":1:1:",
        ),
        ("bad profile", "kernels v9.9\n".into(), ":1:9:"),
        (
            "bad flag",
            "map a 1 page\nr = get_user_pages_fast(a, 1, FOLL_BOGUS)\n".into(),
            ":2:",
        ),
    ];
    for (what, body, span) in cases {
        let p = script(&format!("{}.vmw", what.replace(' ', "_")), &body);
        let out = vmemu(&["run", p.to_str().unwrap(), "--arch", "x86_64"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(span), "{what}: no span {span} in {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(vmemu(&["run", "/nonexistent.vmw"]).status.code(), Some(2));
    assert_eq!(
        vmemu(&["run", "kernel_ds_gup_fast", "--arch", "mips"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        vmemu(&["run", "kernel_ds_gup_fast", "--kernel", "v4.10+nope"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(vmemu(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn failed_expect_exits_1_and_passing_exits_0() {
    let ok = script(
        "ok.vmw",
        "map buf 1 page\ntouch buf\nr = get_user_pages_fast(buf, 1, 0)\nexpect r == 1\nrelease r\n",
    );
    assert_eq!(vmemu(&["run", ok.to_str().unwrap()]).status.code(), Some(0));
    let bad = script(
        "bad.vmw",
        "map buf 1 page\nr = get_user_pages_fast(buf, 1, 0)\nexpect r == 7\nrelease r\n",
    );
    assert_eq!(
        vmemu(&["run", bad.to_str().unwrap()]).status.code(),
        Some(1)
    );
    // A reference never released is a leak: exit 1.
    let leak = script(
        "leak.vmw",
        "map buf 1 page\nr = get_user_pages_fast(buf, 1, 0)\n",
    );
    let out = vmemu(&[
        "run",
        leak.to_str().unwrap(),
        "--arch",
        "arm64",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(last.contains("\"leaked_refs\":1"), "{last}");
}

/// `expect leaked == N` counts the references held that no result variable
/// owns (what kernel code left behind), and the leak check then accepts
/// exactly N held at the end. Layton's posted patch under NFS leaves C's
/// reference (layton_first_offset.vmw); `r` is the workload's own.
#[test]
fn declared_leaks_pass_only_when_exact() {
    let body = |n: u32, release: bool| {
        format!(
            "kernels v4.10+layton\nmap A 1 page\nmap B 1 page\nmap C 1 page\ntouch A\ntouch B\ntouch C\n\
             iter t iovec WRITE [A + PAGE_SIZE / 2 : PAGE_SIZE / 2, B : PAGE_SIZE, C : PAGE_SIZE]\n\
             w = nfs_direct_write(t, 4 * PAGE_SIZE)\nr = get_user_pages_fast(A, 1, 0)\n\
             expect leaked == {n}\n{}",
            if release { "release r\n" } else { "" }
        )
    };
    // (declared, release r, exit code, leaked at the end, pages held)
    let cases = [
        (1, true, 0, 1, "[\"C[0]\"]"),
        (0, true, 1, 1, "[\"C[0]\"]"),
        (2, true, 1, 1, "[\"C[0]\"]"),
        // r is not counted by the expect (a variable holds it), but it is
        // still held at the end: 2 held, 1 declared.
        (1, false, 1, 2, "[\"A[0]\",\"C[0]\"]"),
    ];
    for (n, release, code, leaked, pages) in cases {
        let p = script(&format!("declared{n}{release}.vmw"), &body(n, release));
        let out = vmemu(&[
            "run",
            p.to_str().unwrap(),
            "--arch",
            "x86_64",
            "--format",
            "json",
        ]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "declared {n}, release {release}"
        );
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        assert!(
            last.contains(&format!("\"leaked_refs\":{leaked},")),
            "{last}"
        );
        assert!(last.contains(&format!("\"expected_leaks\":{n},")), "{last}");
        assert!(
            last.contains(&format!("\"leaked_pages\":{pages}")),
            "{last}"
        );
    }
}

#[test]
fn json_lines_have_the_documented_fields() {
    let out = vmemu(&[
        "run",
        "kernel_ds_gup_fast",
        "--kernel",
        "v4.10",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut saw_pin = false;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        if v["type"] != "statement" {
            if v["type"] == "summary" {
                assert!(v.get("leaked_refs").is_some());
            }
            continue;
        }
        for f in [
            "workload", "arch", "kernel", "line", "op", "ret", "errno", "pages", "events",
        ] {
            assert!(v.get(f).is_some(), "missing {f} in {line}");
        }
        if v["op"] == "get_user_pages_fast" && v["arch"] == "arm64" {
            assert_eq!(v["pages"], serde_json::json!(["victim[0]", "victim[1]"]));
            saw_pin = true;
        }
        if v["op"] == "get_user_pages_fast" && v["arch"] == "x86_64" {
            assert_eq!(v["errno"], "EFAULT");
            assert_eq!(v["ret"], -14);
        }
    }
    assert!(saw_pin);
}

#[test]
fn explain_shows_both_walks() {
    let out = vmemu(&[
        "explain",
        "kdirect(256)",
        "--arch",
        "arm64",
        "--kernel",
        "v4.10",
        "--workload",
        "kernel_ds_gup_fast",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("page victim[0] (user)"), "{t}");
    assert!(t.contains("TTBR1"), "{t}");
    assert!(t.contains("kdirect[256] (kernel only)"), "{t}");
}

#[test]
fn check_and_list() {
    let out = vmemu(&["list"]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("v4.10+capper")
            && t.contains("gup_fast_range")
            && t.contains("kernel_ds_gup_fast.vmw")
    );
    let bad = script("check.vmw", "map buf 4K\nthis is not a statement @@\n");
    let out = vmemu(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("check.vmw:2:"));
}

/// `vmemu` with a clean colour environment plus `env`.
fn vmemu_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmemu"));
    for v in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "TERM"] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied())
        .args(args)
        .output()
        .expect("vmemu runs")
}

#[test]
fn color_flag_and_no_color() {
    let bad = script(
        "color_bad.vmw",
        "map buf 1 page\ntouch buf\nr = get_user_pages_fast(buf, 1, 0)\nexpect r == 7\nrelease r\n",
    );
    let bad = bad.to_str().unwrap();
    let esc = |o: &Output| o.stdout.contains(&0x1b);
    for args in [
        vec!["matrix", "--arch", "arm64"],
        vec!["run", bad, "--arch", "arm64"],
        vec!["matrix", bad, "--arch", "arm64"],
    ] {
        let mut never = args.clone();
        never.extend(["--color", "never"]);
        let mut always = args.clone();
        always.extend(["--color", "always"]);
        assert!(!esc(&vmemu_env(&never, &[])), "{never:?}");
        assert!(esc(&vmemu_env(&always, &[])), "{always:?}");
        // auto: not a terminal here, so no colour ...
        assert!(!esc(&vmemu_env(&args, &[])), "{args:?}");
        // ... unless forced, and NO_COLOR wins over the force.
        assert!(esc(&vmemu_env(&args, &[("CLICOLOR_FORCE", "1")])));
        assert!(!esc(&vmemu_env(
            &args,
            &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]
        )));
        // `--color always` colours even with NO_COLOR (an explicit request).
        assert!(esc(&vmemu_env(&always, &[("NO_COLOR", "1")])));
    }
    // What is coloured: the result words and the failed expect.
    let out = vmemu_env(&["--color", "always", "run", bad, "--arch", "arm64"], &[]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("\x1b[1m\x1b[31m-> FAILED: got 1\x1b[0m"), "{t}");
    assert!(
        t.contains("# \x1b[1m\x1b[31mFAIL\x1b[0m: 1 expects, 1 failed"),
        "{t}"
    );
    let out = vmemu_env(&["matrix", "--color=always", "--arch", "x86_64"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\x1b[1m\x1b[32mpass\x1b[0m ("));
    // JSON and KTAP never.
    for f in ["json", "ktap"] {
        let out = vmemu_env(&["--color", "always", "run", bad, "--format", f], &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(!esc(&out), "{f}");
    }
    // A bad value is a usage error.
    let out = vmemu_env(&["--color", "sometimes", "list"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_page_names_every_subcommand() {
    use clap::CommandFactory;
    let out = vmemu(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).expect("UTF-8 roff");
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH VMEMU 1"));
    let cmd = vmemu_harness::cli::Cli::command();
    let mut n = 0;
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        assert!(
            page.contains(&format!(".SS \"vmemu {name}\"")),
            "no section for {name}"
        );
        n += 1;
    }
    assert!(n >= 9, "{n} subcommands");
    for s in [
        r"\-\-color",
        r"\-\-format",
        "EXIT STATUS",
        "NO_COLOR",
        "ktap",
    ] {
        assert!(page.contains(s), "{s} missing");
    }
    // Rendered by groff without warnings, when groff is installed.
    let path = std::env::temp_dir().join(format!("vmemu-{}.1", std::process::id()));
    std::fs::write(&path, &page).unwrap();
    match Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&path)
        .output()
    {
        Ok(o) => {
            assert!(o.status.success());
            assert!(
                o.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(e) => eprintln!("groff not run: {e}"),
    }
}

#[test]
fn completions_cover_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = vmemu(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let t = String::from_utf8_lossy(&out.stdout);
        for sub in ["matrix", "man", "completions"] {
            assert!(t.contains(sub), "{shell}: {sub}");
        }
        assert!(t.contains("--color") || t.contains("color"), "{shell}");
    }
    assert_eq!(vmemu(&["completions", "tcsh"]).status.code(), Some(2));
}

/// Wherever a command takes an arch, a kernel profile or a workload, the
/// completions offer the arch names, the built-in profiles and the
/// built-in workloads (fish for options, zsh for positional arguments,
/// which fish's generator does not complete).
#[test]
fn completions_offer_arches_profiles_and_workloads() {
    let fish = String::from_utf8(vmemu(&["completions", "fish"]).stdout).unwrap();
    // One `complete` command per option; its values, one a line, follow
    // `-a "` as `VALUE\tHELP` (the option's help may name them too).
    let offers = |sub: &str, flag: &str, word: &str| {
        fish.split("\ncomplete -c vmemu ").any(|c| {
            let cond = format!("__fish_vmemu_using_subcommand {sub}");
            (c.contains(&format!("{cond}\"")) || c.contains(&format!("{cond};")))
                && c.contains(&format!(" -l {flag} "))
                && c.split_once(" -a \"").is_some_and(|(_, values)| {
                    values.lines().any(|v| v.starts_with(&format!("{word}\\t")))
                })
        })
    };
    let subs = [
        "run",
        "matrix",
        "show",
        "explain",
        "fuzz",
        "bench",
        "export-c",
        "diff-kernel",
    ];
    for sub in subs {
        assert!(offers(sub, "arch", "ppc64-4k"), "{sub} --arch");
        if sub != "bench" {
            assert!(offers(sub, "kernel", "v4.10+capper"), "{sub} --kernel");
        }
    }
    for sub in ["show", "explain"] {
        assert!(
            offers(sub, "workload", "kernel_ds_gup_fast"),
            "{sub} --workload"
        );
    }
    let zsh = String::from_utf8(vmemu(&["completions", "zsh"]).stdout).unwrap();
    for sub in ["run", "matrix", "export-c", "diff-kernel"] {
        let start = zsh
            .find(&format!("({sub})\n"))
            .unwrap_or_else(|| panic!("no zsh case for {sub}"));
        let block = zsh[start..].split(";;").next().unwrap_or_default();
        assert!(
            block.contains("kernel_ds_gup_fast"),
            "{sub} WORKLOAD: {block}"
        );
    }
}

/// Caller-model records carry an `io` object (units and page traffic); every
/// other record keeps the old fields only (no `io` key). The soft lockup of
/// the ceph splice workload shows in the JSON events of every arch under
/// v4.10 and nowhere under v4.17.
#[test]
fn caller_io_in_json_and_ceph_lockup() {
    let out = vmemu(&[
        "run",
        "ceph_splice_softlockup",
        "--kernel",
        "v4.10",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lockups = std::collections::BTreeSet::new();
    let mut with_io = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] != "statement" {
            continue;
        }
        let op = v["op"].as_str().unwrap();
        if op == "ceph_splice_write" {
            with_io += 1;
            let io = &v["io"];
            assert!(io["get_pages_calls"].as_u64().unwrap() > 1000);
            assert!(io["units"].as_array().unwrap().is_empty());
            let ev = v["events"].as_array().unwrap();
            if ev.iter().any(|e| e["kind"] == "soft_lockup") {
                lockups.insert(v["arch"].as_str().unwrap().to_string());
            }
        } else {
            assert!(v.get("io").is_none(), "{op} has no io");
        }
    }
    assert_eq!(with_io, 3);
    assert_eq!(lockups.len(), 3, "{lockups:?}");
    let out = vmemu(&[
        "run",
        "ceph_splice_softlockup",
        "--kernel",
        "v4.17",
        "--format",
        "json",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("soft_lockup"));
    assert!(text.contains("\"kind\":\"osd_write\""));
}

/// `vmemu bench`: usage errors exit 2; the S1 probe (a child process) gives
/// the header, one JSON line per case with the documented fields and a
/// summary. Only the
/// shape is checked: no test asserts a timing or a ratio.
#[test]
fn bench_usage_and_json_shape() {
    for args in [
        &["bench", "--rounds", "2"][..],
        &["bench", "--filter", "nothing-matches"],
        &["bench", "--arch", "mips"],
        &["bench", "--filter", "S1", "--svg", "/dev/null"],
    ] {
        let out = vmemu(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    let out = vmemu(&[
        "bench", "--filter", "S1", "--arch", "x86_64", "--format", "json",
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["type"], "header");
    let row = &lines[1];
    for f in [
        "case",
        "arch",
        "subject",
        "subject_value",
        "yardstick",
        "yardstick_value",
        "unit",
        "ratio",
        "goal",
        "pass",
        "rounds",
    ] {
        assert!(row.get(f).is_some(), "missing {f} in {row}");
    }
    assert_eq!(row["case"], "S1");
    assert_eq!(row["type"], "case");
    assert_eq!(lines[2]["type"], "bench_summary");
    assert_eq!(lines[2]["cases"], 1);
}

/// A 100 MB script of one line: the error names the line and echoes only a
/// window of it around the caret; the file is written in pieces, never
/// held by the test.
#[test]
fn a_100_mb_line_is_echoed_as_a_window() {
    let dir = std::env::temp_dir().join(format!("vmemu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("long.vmw");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    f.write_all(b"map b 1 page\nr = clear_user(b, ").unwrap();
    let chunk = vec![b'1'; 1 << 20];
    for _ in 0..100 {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b")\n").unwrap();
    drop(f);
    let out = Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(["run", p.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_file(&p).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", &err[..err.len().min(500)]);
    assert!(err.len() < 2000, "{} bytes of error", err.len());
    assert!(err.contains("long.vmw:2:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// docs/performance.md names the commit its figures were measured at; once
/// more than 20 commits touching the benched code (arch, mm, iter,
/// harness/src) lie between it and HEAD, the figures are stale: rerun the
/// bench and regenerate the tables. Skipped (with the reason printed) where
/// the checkout has no git history.
#[test]
fn performance_figures_are_fresh() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/performance.md")).unwrap();
    let at = doc
        .split("Measured at commit ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("docs/performance.md says `Measured at commit HASH`");
    assert!(
        at.len() >= 7 && at.chars().all(|c| c.is_ascii_hexdigit()),
        "`{at}` is not a commit hash"
    );
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    if git(&["rev-parse", "--git-dir"]).is_none() {
        eprintln!("skipped: no git history here to compare {at} with");
        return;
    }
    let Some(_) = git(&["cat-file", "-e", &format!("{at}^{{commit}}")]) else {
        panic!("docs/performance.md names {at}, which is not a commit of this repository");
    };
    let out = git(&[
        "rev-list",
        "--count",
        &format!("{at}..HEAD"),
        "--",
        "arch",
        "mm",
        "iter",
        "harness/src",
    ])
    .expect("git rev-list");
    let behind: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        behind <= 20,
        "docs/performance.md was measured at {at}, {behind} commits of benched code ago: \
         rerun `cargo run --release -- bench --format json --svg docs/batch-size.svg > \
         docs/bench-figures.jsonl` and regenerate its tables"
    );
}
