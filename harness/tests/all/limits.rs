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

/// Writes `body` to a file named `name` in a directory of its own (tests
/// run in parallel and may use the same name).
fn script(name: &str, body: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vmemu-limits-{}-{n}", std::process::id()));
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

/// A `repeat` counts itself and its body once per iteration: map, repeat
/// and 3 * 2 touches are 8 steps, within a bound of 8; with a fourth
/// iteration the statement past the bound is its first touch (line 3).
#[test]
fn steps_count_repeat_bodies_per_iteration() {
    let body = |n: u32| format!("map a 1 page\nrepeat {n} {{\ntouch a\ntouch a\n}}\n");
    boundary("--max-steps", "8", &body(3), &body(4), ":3:1:");
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

#[test]
fn host_memory() {
    let ok = "map a 8M rw\nr = copy_to_user(a, 1M)\n";
    let over = "map a 32M rw\nr = copy_to_user(a, 20M)\n";
    boundary("--max-host-mem", "16M", ok, over, ":2:1:");
}

// ----------------------------------------------------------------------
// Cost follows what a workload touches (issue 21): each case runs in this
// process and its peak resident memory is read from /proc/self/status.
// ----------------------------------------------------------------------

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Runs `src` on x86_64 under its first profile; returns the run and the
/// growth of peak RSS it caused, in MiB. The peak is reset first
/// (`echo 5 > /proc/self/clear_refs`, Linux 4.0+); where that is refused,
/// the growth of the old peak is all that can be seen.
fn run_measured(name: &str, src: &str) -> (vmemu_harness::run::Run, u64) {
    run_measured_with(name, src, &vmemu_harness::limits::RunOptions::default())
}

/// [`run_measured`] with run options (raised limits).
fn run_measured_with(
    name: &str,
    src: &str,
    opts: &vmemu_harness::limits::RunOptions,
) -> (vmemu_harness::run::Run, u64) {
    use vmemu_harness::{lang, run};
    let w = lang::parse(name, src).unwrap_or_else(|e| panic!("{e}"));
    let kernel = run::default_kernels(&w)[0].clone();
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = if reset {
        status_kib("VmRSS:")
    } else {
        status_kib("VmHWM:")
    };
    let r = run::run_with(&w, vmemu_arch::ArchId::X86_64, &kernel, opts)
        .unwrap_or_else(|e| panic!("{e}"));
    let grew = status_kib("VmHWM:").saturating_sub(before) >> 10;
    (r, grew)
}

fn ret_of(r: &vmemu_harness::run::Run, line: usize) -> i64 {
    r.records
        .iter()
        .rev()
        .find(|x| x.line == line)
        .and_then(|x| x.ret)
        .unwrap_or_else(|| panic!("no result at line {line}"))
}

/// The five cases of issue 21, each within 64 MiB of peak RSS and with the
/// kernel's result. One test, so no other case runs beside a measurement.
#[test]
fn cost_follows_the_pages_touched() {
    // v4.10 iov_iter_get_pages looks at the first segment's first
    // maxpages pages (lib/iov_iter.c: get_user_pages_fast of at most
    // maxpages): one page is mapped, so one page and 4096 bytes, however
    // long the segment says it is.
    let (r, mib) = run_measured(
        "big_iov.vmw",
        "kernels v4.10\nmap buf 1 page rw\ntouch buf write\n\
         iter v iovec WRITE [buf : 1T]\nr = iov_iter_get_pages(v, 1M, 16)\n\
         expect r == 4096\nexpect r.pages == [buf[0]]\nrelease r\n",
    );
    assert!(r.summary.passed, "{:?}", r.records);
    assert!(mib <= 64, "1 TiB segment: {mib} MiB");

    // 65536 one-byte segments written as a repeat rule: copy_from_iter of
    // 100 bytes walks 100 of them and leaves 65436.
    let (r, mib) = run_measured(
        "many_segs.vmw",
        "kernels v6.13\nmap buf 1 page rw\ntouch buf write\n\
         iter v iovec WRITE [buf : 1] repeat 65536 step 0\nr = copy_from_iter(v, 100)\n\
         expect r == 100\nexpect v.nr_segs == 65436\nexpect v.count == 65436\n",
    );
    assert!(r.summary.passed, "{:?}", &r.records[r.records.len() - 3..]);
    assert!(mib <= 64, "65536 segments: {mib} MiB");

    // 2M segments (the case; --max-iovecs raised to allow them):
    // the repeat rule stays a rule, so the iterator and its copy kept per
    // call cost one segment each, not 32 MiB each. A get_pages call reads
    // the one segment it needs, the last advance crosses 2M - 1 of them.
    let mut opts = vmemu_harness::limits::RunOptions::default();
    opts.limits.max_iovecs = 1 << 21;
    let (r, mib) = run_measured_with(
        "segs2m.vmw",
        "kernels v6.13\nmap buf 1 page rw\ntouch buf write\n\
         iter v iovec WRITE [buf : 1] repeat 2097152 step 0\nr = copy_from_iter(v, 100)\n\
         expect r == 100\nexpect v.nr_segs == 2097052\n\
         g = iov_iter_get_pages2(v, 4096, 1)\nexpect g == 1\nrelease g\n\
         iov_iter_advance(v, 2097050)\nexpect v.count == 1\n",
        &opts,
    );
    assert!(r.summary.passed, "{:?}", &r.records[r.records.len() - 3..]);
    assert!(mib <= 16, "2M segments: {mib} MiB");

    // 60000 mappings, each placed top-down right below the previous one
    // (mm/mmap.c: vm_unmapped_area, topdown).
    let mut src = String::from("kernels v6.13\n");
    for i in 0..60_000 {
        src.push_str(&format!("map m{i} 1 page rw\n"));
    }
    let (r, mib) = run_measured("many_maps.vmw", &src);
    let (first, last) = (ret_of(&r, 2), ret_of(&r, 60_001));
    assert_eq!(first - last, 59_999 * 4096);
    assert!(mib <= 64, "60000 mappings: {mib} MiB");

    // A 16 TiB mapping written whole in a 256 MiB guest: clear_user stops
    // where the frames run out and returns the bytes it did not clear, a
    // whole number of pages (the fault that fails is at a page start).
    let (r, mib) = run_measured("touch16t.vmw", "map B 16T rw\ntouch B write\n");
    let left = ret_of(&r, 2);
    assert!(left > 0 && left < 1 << 44 && left % 4096 == 0, "{left:#x}");
    assert!(
        (1i64 << 44) - left > 128 << 20,
        "cleared only {:#x}",
        (1i64 << 44) - left
    );
    assert!(mib <= 64, "16 TiB touch: {mib} MiB");

    // mem 2G and one touch of all of it: every frame is faulted in, none
    // of its bytes is written, so the host pays the struct pages and tables.
    let (r, mib) = run_measured("mem2g.vmw", "mem 2G\nmap b 1G rw\ntouch b write\n");
    assert_eq!(ret_of(&r, 3), 0);
    assert!(mib <= 64, "mem 2G touch: {mib} MiB");
}
