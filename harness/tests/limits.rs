//! Resource bounds: each limit at its boundary runs, one past it is exit 2
//! with `file:line:col`, the limit and the flag that raises it — never an
//! out-of-memory kill or a panic.

use std::process::{Command, Output};

fn vmemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(args)
        .output()
        .expect("vmemu runs")
}

fn script(name: &str, body: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vmemu-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

/// Runs `ok` and `over` with `flag value`: the first passes, the second
/// exits 2 naming the flag at `span`.
fn boundary(flag: &str, value: &str, ok: &str, over: &str, span: &str) {
    let name = flag.trim_start_matches("--");
    let a = script(&format!("{name}-ok.vmw"), ok);
    let out = vmemu(&[
        "run",
        &a,
        "--arch",
        "x86_64",
        "--check-invariants",
        flag,
        value,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{flag} {value} at the boundary: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let b = script(&format!("{name}-over.vmw"), over);
    let out = vmemu(&["run", &b, "--arch", "x86_64", flag, value]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{flag} one past: {err}");
    assert!(
        err.contains(flag),
        "{flag}: the error does not name the flag: {err}"
    );
    assert!(
        err.contains(&format!("{name}-over.vmw{span}")),
        "{flag}: no span {span}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn mem() {
    boundary(
        "--max-mem",
        "32M",
        "mem 32M\nmap a 1 page\n",
        "map a 1 page\nmem 33M\n",
        ":2:1:",
    );
}

#[test]
fn mappings() {
    let ok = "map a 1 page\nmap b 1 page\nmap c 1 page\n";
    let over = "map a 1 page\nmap b 1 page\nmap c 1 page\nmap d 1 page\n";
    boundary("--max-mappings", "3", ok, over, ":4:1:");
}

#[test]
fn iovecs() {
    let ok = "map a 1 page\niter v iovec READ [a : 1, a : 2, a : 3]\n";
    let over = "map a 1 page\niter v iovec READ [a : 1, a : 2, a : 3, a : 4]\n";
    boundary("--max-iovecs", "3", ok, over, ":2:1:");
}

#[test]
fn pipe_buffers() {
    let ok = "pipe p\npipe q\n";
    let over = "pipe p\npipe q\npipe r\n";
    boundary("--max-pipe-buffers", "32", ok, over, ":3:1:");
}

#[test]
fn statements() {
    let ok = "map a 1 page\ntouch a\ntouch a\ntouch a\ntouch a\n";
    let over = "map a 1 page\ntouch a\ntouch a\ntouch a\ntouch a\ntouch a\n";
    boundary("--max-statements", "5", ok, over, ":6:1:");
}

#[test]
fn steps_over_all_runs() {
    // Five statements per run; two profiles make ten executed statements.
    let body = "kernels v4.10 v6.13\nmap a 1 page\ntouch a\ntouch a\ntouch a\ntouch a\n";
    // The first run executes six, the second crosses the bound at its fifth.
    boundary(
        "--max-steps",
        "10",
        body,
        &format!("{body}touch a\n"),
        ":6:1:",
    );
}

#[test]
fn out_of_range_limits_are_usage_errors() {
    for args in [
        ["--max-mem", "65G"],
        ["--max-mem", "1M"],
        ["--max-mappings", "-1"],
    ] {
        let out = vmemu(&["run", "kernel_ds_gup_fast", args[0], args[1]]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// A sparse 1 TiB mapping with a few pages touched runs in a default
/// 256 MiB guest: mapping costs nothing until touched.
#[test]
fn sparse_terabyte_mapping() {
    let body = "map big 1T\n\
        a = copy_to_user(big, 4096)\n\
        b = copy_to_user(big + 512G, 4096)\n\
        c = copy_to_user(big + 1T - 4096, 4096)\n\
        expect a == 0\nexpect b == 0\nexpect c == 0\n\
        munmap(big, 1T)\n";
    let p = script("sparse.vmw", body);
    let out = vmemu(&["run", &p, "--check-invariants"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy through a 1 TiB iterator is refused before any host buffer is
/// allocated (at most 64M per statement).
#[test]
fn huge_iterator_copies_are_refused() {
    let body = "map big 1T\niter v iovec READ [big : 1T]\nr = copy_to_iter(v, 1T)\n";
    let p = script("huge-copy.vmw", body);
    let out = vmemu(&["run", &p, "--arch", "x86_64"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("huge-copy.vmw:3:1:") && err.contains("64M"),
        "{err}"
    );
}
