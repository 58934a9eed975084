//! The random differential cases as one C program for the guest, and the
//! comparison of its output lines with the emulator's outcomes.
//!
//! The program runs every case as `diff_host`'s host side does (regions
//! mapped, the pattern written, pipe filled, pages protected or punched,
//! then the call) and prints one line per case:
//! `CASE k ret R mem HASH after HASH LEN` with FNV-1a-64 hashes of every
//! readable region page and of what the pipe or file holds afterwards.

use std::fmt::Write as _;

use crate::diff_host::{Addr, Case, Op, Outcome, PageKind, Seg};

/// FNV-1a, 64 bits: what the guest program prints for a byte string.
#[must_use]
pub fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The line the guest prints for an outcome (also made from the
/// emulator's outcome to compare).
#[must_use]
pub fn outcome_line(k: usize, o: &Outcome) -> String {
    format!(
        "CASE {k} ret {} mem {:016x} after {:016x} {}",
        o.ret,
        fnv1a(&o.mem),
        fnv1a(&o.after),
        o.after.len()
    )
}

const PRELUDE: &str = r##"#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
typedef unsigned long long u64;
static u64 PG;
static u64 h_mem, h_after;
static void fnv(u64 *h, const unsigned char *b, u64 n)
{
	u64 i;
	for (i = 0; i < n; i++)
		*h = (*h ^ b[i]) * 0x100000001b3ULL;
}
static long long rr(long long r) { return r == -1 ? -(long long)errno : r; }
/* Regions: kinds 'w' rw, 'r' ro, 'n' none, '_' hole, 'u' untouched. */
static unsigned char *R[4];
static const char *K[4];
static int NR;
static void regions(int n, const char **kinds)
{
	int r, k;
	NR = n;
	for (r = 0; r < n; r++) {
		u64 len = strlen(kinds[r]) * PG;
		K[r] = kinds[r];
		R[r] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (R[r] == MAP_FAILED) {
			printf("mmap failed\n");
			exit(1);
		}
	}
	for (r = 0; r < n; r++)
		for (k = 0; K[r][k]; k++) {
			u64 o, off = k * PG;
			if (K[r][k] == 'u')
				continue;
			for (o = off; o < off + PG; o++)
				R[r][o] = (unsigned char)(r * 31 + o * 13 + 1);
		}
}
static void protect(void)
{
	int r, k;
	for (r = 0; r < NR; r++)
		for (k = 0; K[r][k]; k++) {
			unsigned char *a = R[r] + k * PG;
			if (K[r][k] == 'r')
				mprotect(a, PG, PROT_READ);
			else if (K[r][k] == 'n')
				mprotect(a, PG, PROT_NONE);
			else if (K[r][k] == '_')
				munmap(a, PG);
		}
}
static void readback(void)
{
	int r, k;
	h_mem = 0xcbf29ce484222325ULL;
	for (r = 0; r < NR; r++)
		for (k = 0; K[r][k]; k++)
			if (K[r][k] == 'w' || K[r][k] == 'r' || K[r][k] == 'u')
				fnv(&h_mem, R[r] + k * PG, PG);
	for (r = 0; r < NR; r++)
		munmap(R[r], strlen(K[r]) * PG);
}
static unsigned char fillbuf[1 << 20];
static void fill(int wfd, int k, u64 n)
{
	u64 o;
	if (n == 0) {
		if (write(wfd, (void *)0x1000, 10) != -1)
			printf("# a write from 0x1000 did not fault\n");
		return;
	}
	for (o = 0; o < n; o++)
		fillbuf[o] = (unsigned char)(0xa0 + k + o * 3);
	if (write(wfd, fillbuf, n) < 0 && errno != EAGAIN)
		printf("# fill write: errno %d\n", errno);
}
static u64 drain(int rfd)
{
	static unsigned char b[1 << 16];
	ssize_t n;
	u64 tot = 0;
	h_after = 0xcbf29ce484222325ULL;
	while ((n = read(rfd, b, sizeof b)) > 0) {
		fnv(&h_after, b, (u64)n);
		tot += (u64)n;
	}
	return tot;
}
static int make_file(u64 size)
{
	static unsigned char b[1 << 20];
	int fd = memfd_create("vmemu", 0);
	u64 o;
	for (o = 0; o < size && o < sizeof b; o++)
		b[o] = (unsigned char)((o / PG) * 7 + o % PG);
	if (size && pwrite(fd, b, size, 0) != (ssize_t)size)
		printf("# file fill failed\n");
	return fd;
}
static u64 file_back(int fd)
{
	static unsigned char b[1 << 16];
	off_t len = lseek(fd, 0, SEEK_END), o = 0;
	ssize_t n;
	h_after = 0xcbf29ce484222325ULL;
	while (o < len && (n = pread(fd, b, sizeof b, o)) > 0) {
		fnv(&h_after, b, (u64)n);
		o += n;
	}
	return (u64)len;
}
static void report(int k, long long ret, u64 after_len)
{
	printf("CASE %d ret %lld mem %016llx after %016llx %llu\n", k, ret, h_mem, h_after, after_len);
	fflush(stdout);
}
#define A(r, off) ((u64)(uintptr_t)R[r] + (u64)(off))
"##;

fn addr_c(a: &Addr) -> String {
    match a {
        Addr::Region(r, off) => format!("A({r}, {off:#x}ULL)"),
        Addr::Abs(a) => format!("{a:#x}ULL"),
    }
}

/// Iovec array initialisation as C statements into `v`.
fn iov_c(out: &mut String, v: &str, segs: &[Seg]) {
    let _ = writeln!(out, "\t\tstatic struct iovec {v}[{}];", segs.len().max(1));
    // Runs of equal segments (1024/1025-element vectors) as a loop.
    let mut i = 0;
    while i < segs.len() {
        let mut j = i + 1;
        while j < segs.len() && segs[j] == segs[i] {
            j += 1;
        }
        let _ = writeln!(
            out,
            "\t\tfor (i = {i}; i < {j}; i++) {{ {v}[i].iov_base = (void *)(uintptr_t){}; {v}[i].iov_len = (size_t){:#x}ULL; }}",
            addr_c(&segs[i].addr),
            segs[i].len
        );
        i = j;
    }
}

/// The system call of a case as a C expression (its remote iovecs, file
/// set-up written to `out` first).
fn call_c(out: &mut String, c: &Case) -> String {
    let nl = c.iov.len();
    match &c.op {
        Op::Readv => format!("readv(p[0], iov, {nl})"),
        Op::Writev => format!("writev(p[1], iov, {nl})"),
        Op::VmspliceToPipe => format!("vmsplice(p[1], iov, {nl}, SPLICE_F_NONBLOCK)"),
        Op::VmspliceToUser => format!("vmsplice(p[0], iov, {nl}, SPLICE_F_NONBLOCK)"),
        Op::ProcessVmReadv { remote, flags } | Op::ProcessVmWritev { remote, flags } => {
            iov_c(out, "rem", remote);
            let f = if matches!(c.op, Op::ProcessVmReadv { .. }) {
                "process_vm_readv"
            } else {
                "process_vm_writev"
            };
            format!("{f}(getpid(), iov, {nl}, rem, {}, {flags}UL)", remote.len())
        }
        Op::Preadv { size, pos } | Op::Pwritev { size, pos } => {
            let _ = writeln!(out, "\t\tfd = make_file({size});");
            let f = if matches!(c.op, Op::Preadv { .. }) {
                "preadv"
            } else {
                "pwritev"
            };
            format!("{f}(fd, iov, {nl}, (off_t){pos}LL)")
        }
        Op::PreadvDirect { .. } | Op::PwritevDirect { .. } => {
            unreachable!("O_DIRECT cases are not sent to the guest")
        }
    }
}

/// One case as a C function.
fn case_c(out: &mut String, k: usize, c: &Case) {
    let _ = writeln!(
        out,
        "/* {} */\nstatic void c{k}(void)\n{{",
        c.to_string().replace("*/", "* /")
    );
    let kinds: Vec<String> = c
        .regions
        .iter()
        .map(|r| {
            let s: String = r
                .iter()
                .map(|p| match p {
                    PageKind::Rw => 'w',
                    PageKind::Ro => 'r',
                    PageKind::None => 'n',
                    PageKind::Hole => '_',
                    PageKind::Untouched => 'u',
                })
                .collect();
            format!("\"{s}\"")
        })
        .collect();
    let _ = writeln!(
        out,
        "\t\tstatic const char *kinds[] = {{ {} }};\n\t\tint i, p[2], fd = -1;\n\t\tlong long ret;\n\t\tu64 alen = 0;\n\t\t(void)i; (void)p; (void)fd;\n\t\tregions({}, kinds);",
        kinds.join(", "),
        c.regions.len()
    );
    iov_c(out, "iov", &c.iov);
    if c.op.uses_pipe() {
        let _ = writeln!(
            out,
            "\t\tif (pipe2(p, O_NONBLOCK | O_CLOEXEC)) {{ printf(\"pipe2 failed\\n\"); exit(1); }}"
        );
        for (i, n) in c.fill.iter().enumerate() {
            let _ = writeln!(out, "\t\tfill(p[1], {i}, {n});");
        }
    }
    let _ = writeln!(out, "\t\tprotect();");
    let call = call_c(out, c);
    let _ = writeln!(out, "\t\tret = rr({call});");
    let _ = writeln!(out, "\t\treadback();");
    if c.op.uses_pipe() {
        let _ = writeln!(
            out,
            "\t\talen = drain(p[0]);\n\t\tclose(p[0]);\n\t\tclose(p[1]);"
        );
    } else if matches!(c.op, Op::Preadv { .. } | Op::Pwritev { .. }) {
        let _ = writeln!(out, "\t\talen = file_back(fd);\n\t\tclose(fd);");
    } else {
        let _ = writeln!(out, "\t\th_after = 0xcbf29ce484222325ULL;");
    }
    let _ = writeln!(out, "\t\treport({k}, ret, alen);\n}}");
}

/// The program running `cases` (numbered from their index) with pages of
/// `page` bytes.
#[must_use]
pub fn program(cases: &[(usize, Case)], page: u64) -> String {
    let mut out = String::from(PRELUDE);
    for (k, c) in cases {
        case_c(&mut out, *k, c);
    }
    out.push_str("int main(void)\n{\n");
    let _ = writeln!(
        out,
        "\tPG = {page}ULL;\n\tif ((u64)sysconf(_SC_PAGESIZE) != PG) {{\n\t\tprintf(\"# page size %ld, the cases assume %llu\\n\", sysconf(_SC_PAGESIZE), PG);\n\t\treturn 1;\n\t}}"
    );
    for (k, _) in cases {
        let _ = writeln!(out, "\tc{k}();");
    }
    out.push_str("\tprintf(\"CASES DONE\\n\");\n\treturn 0;\n}\n");
    out
}
