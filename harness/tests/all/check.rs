//! `vmemu check` as a linter: one broken script per class of error that
//! used to pass `check` and fail only when a run reached the line. Each is
//! an error of `check` and of `run` (exit 2, `file:line:col`, the caret
//! under the token, a suggestion where one applies), also when the broken
//! statement runs only on another arch.

use std::io::Write;
use std::process::{Command, Output};

fn vmemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(args)
        .env_remove("CLICOLOR_FORCE")
        .output()
        .expect("vmemu runs")
}

fn dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vmemu-check-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn script(name: &str, body: &[u8]) -> std::path::PathBuf {
    let p = dir().join(name);
    std::fs::File::create(&p).unwrap().write_all(body).unwrap();
    p
}

/// (file, script, `line:col`, text the message holds, suggestion or "").
const CLASSES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "name.vmw",
        "map b 2 pages rw\nr = get_user_pages_fsat(b, 1, 0)\n",
        "2:5",
        "unknown statement or function `get_user_pages_fsat`",
        "did you mean `get_user_pages_fast`?",
    ),
    (
        "bfu.vmw",
        "map b 2 pages rw\nr = bfu(b)\n",
        "2:5",
        "unknown statement or function `bfu`",
        "",
    ),
    (
        "flag.vmw",
        "kernels v4.10 v6.13\nmap b 2 pages rw\nr = get_user_pages_fast(b, 1, FOLL_WRTIE) on arm64\n",
        "3:31",
        "unknown flag `FOLL_WRTIE`",
        "did you mean `FOLL_WRITE`?",
    ),
    (
        "prot.vmw",
        "map b 2 pages rw\nm = mprotect(b, PAGE_SIZE, PROT_RAED)\n",
        "2:28",
        "unknown protection `PROT_RAED`",
        "did you mean `PROT_READ`?",
    ),
    (
        "pages.vmw",
        "map b -2 pages rw\n",
        "1:7",
        "mapping size must be between 1 byte and 16 TiB, found -2 pages",
        "",
    ),
    (
        "nr_pages.vmw",
        "map b 2 pages rw\nr = get_user_pages(b, -2, 0)\n",
        "2:23",
        "a page count must be 0..=INT_MAX, found -2",
        "",
    ),
    (
        "nr_pages_int.vmw",
        "map b 2 pages rw\nr = get_user_pages_fast(b, -2147483649, 0)\n",
        "2:28",
        "a page count must fit an int (INT_MIN..=INT_MAX), found -2147483649",
        "",
    ),
    (
        "overflow.vmw",
        "map b 2 pages rw\nn = copy_to_user(b, TASK_SIZE * TASK_SIZE * TASK_SIZE) on ppc64\n",
        "2:31",
        "arithmetic overflow (arch ppc64",
        "",
    ),
    (
        "undef.vmw",
        "map b 2 pages rw\nexpect q == 1\n",
        "2:8",
        "undefined result `q`",
        "",
    ),
    (
        "field.vmw",
        "map b 2 pages rw\nr = get_user_pages_fast(b, 1, 0)\nexpect rr.start == 0\nrelease r\n",
        "3:8",
        "undefined result or iterator `rr`",
        "did you mean `r`?",
    ),
    (
        "event.vmw",
        "map b 2 pages rw\nr = get_user_pages_fast(b, 1, 0)\nexpect event table_overun\n",
        "3:14",
        "unknown event kind `table_overun`",
        "did you mean `table_overrun`?",
    ),
    (
        "arch.vmw",
        "map b 2 pages rw on arm46\n",
        "1:21",
        "expected an arch",
        "did you mean `arm64`?",
    ),
    (
        "profile.vmw",
        "kernels v6.13 v4.01\nmap b 2 pages rw\n",
        "1:15",
        "v4.01",
        "",
    ),
    (
        "unavailable.vmw",
        "kernels v4.10 v6.13\nmap b 2 pages rw\niter v iovec READ [b : 10]\nn = iov_iter_get_pages2(v, 10, 1)\n",
        "4:5",
        "iov_iter_get_pages2 does not exist in kernel v4.10",
        "",
    ),
    (
        "iter_kind.vmw",
        "kernels v4.10 v6.13\nmap b 2 pages rw\niter u ubuf READ [b : 10]\n",
        "3:8",
        "a ubuf iterator does not exist in kernel v4.10",
        "",
    ),
    (
        "stale.vmw",
        "kernels v4.10\npipe p\nmap b 1 page rw\niter t pipe p\niter v iovec WRITE [b : 10]\nn = writev(p, v)\nc = copy_to_iter(t, 10)\n",
        "7:18",
        "pipe iterator `t` is stale: `writev` at line 6 used its pipe",
        "",
    ),
    (
        "brace.vmw",
        "map b 2 pages rw\nrepeat 3 {\ntouch b\n",
        "2:1",
        "`repeat` block is never closed",
        "",
    ),
    (
        "kind.vmw",
        "pipe p\nmap b 1 page\nr = vmsplice(p, b + 1)\n",
        "3:17",
        "`vmsplice` wants an iterator name here",
        "",
    ),
];

fn check_case(cmd: &str, file: &str, body: &[u8], at: &str, msg: &str, help: &str) {
    let p = script(file, body);
    let path = p.to_str().unwrap();
    let out = if cmd == "check" {
        vmemu(&["check", path])
    } else {
        vmemu(&["run", path, "--arch", "x86_64"])
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{cmd} {file}: {err}");
    let head = format!("{path}:{at}: ");
    assert!(err.contains(&head), "{cmd} {file}: want `{head}` in\n{err}");
    assert!(err.contains(msg), "{cmd} {file}: want `{msg}` in\n{err}");
    assert!(err.contains(help), "{cmd} {file}: want `{help}` in\n{err}");
    assert!(
        !err.contains('\u{1b}'),
        "{cmd} {file}: ANSI escapes without --color\n{err}"
    );
    // The caret line: `^` under the token's first character.
    let col: usize = at.split(':').nth(1).unwrap().parse().unwrap();
    let line: usize = at.split(':').next().unwrap().parse().unwrap();
    let src = String::from_utf8_lossy(body);
    let text = src.lines().nth(line - 1).unwrap();
    let shown = err
        .lines()
        .find(|l| l.ends_with(text) && l.contains(" | "))
        .unwrap_or_else(|| panic!("{cmd} {file}: source line not shown\n{err}"));
    let caret = err
        .lines()
        .skip_while(|l| *l != shown)
        .nth(1)
        .unwrap_or_default();
    let start = shown.len() - text.len();
    assert_eq!(
        caret.find('^'),
        Some(start + col - 1),
        "{cmd} {file}: caret misplaced\n{err}"
    );
}

#[test]
fn every_false_green_is_an_error_of_check_and_run() {
    for &(file, body, at, msg, help) in CLASSES {
        for cmd in ["check", "run"] {
            check_case(cmd, file, body.as_bytes(), at, msg, help);
        }
    }
}

#[test]
fn invalid_utf8_is_an_error_at_its_byte() {
    let body = b"map b 2 pages rw\nmap c\t1 \xff page\n";
    let p = script("bad_utf8.vmw", body);
    for cmd in ["check", "run"] {
        let out = vmemu(&[cmd, p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("{}:2:9: invalid UTF-8", p.display())),
            "{err}"
        );
    }
}

#[test]
fn check_reports_every_error_of_every_file_of_a_directory() {
    let d = dir().join("many");
    std::fs::create_dir_all(&d).unwrap();
    let mut f = std::fs::File::create(d.join("a.vmw")).unwrap();
    f.write_all(
        b"map b 1 page\nr = get_user_pages_fast(b, 1, FOLL_WRTIE)\nx = bfu(b)\nexpect event nope\n",
    )
    .unwrap();
    std::fs::write(d.join("b.vmw"), "map b 1 page\nexpect q == 1\nrelease q\n").unwrap();
    std::fs::write(d.join("c.vmw"), "map b 1 page\ntouch b\n").unwrap();
    let out = vmemu(&["check", d.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for at in ["a.vmw:2:", "a.vmw:3:", "a.vmw:4:", "b.vmw:2:", "b.vmw:3:"] {
        assert!(err.contains(at), "no error at {at} in\n{err}");
    }
    assert!(err.contains("5 error(s) in 2 of 3 file(s)"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("c.vmw: ok"));
}

#[test]
fn the_builtin_workloads_pass_check() {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
    let out = vmemu(&["check", d.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_long_line_is_not_echoed_whole() {
    let body = format!(
        "map b 1 page\nr = get_user_pages_fast(b, 1, {}FOLL_X)\n",
        "0 + ".repeat(900)
    );
    let p = script("long.vmw", body.as_bytes());
    let out = vmemu(&["check", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.len() < 2000, "{} bytes echoed", err.len());
    let big = format!("map b 1 page\n{}\n", "x".repeat(10 << 20));
    let p = script("huge.vmw", big.as_bytes());
    let out = vmemu(&["check", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("huge.vmw:2:1: line longer than"),
        "{}",
        &err[..err.len().min(500)]
    );
    assert!(err.len() < 2000, "{} bytes echoed", err.len());
}
