#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/loop.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 1U
#endif

/* Not every program uses every helper. */
#define UNUSED __attribute__((unused))

typedef long long i64;
typedef unsigned long long u64;

/* Wrapping arithmetic, as the workload language evaluates in 64 bits. */
UNUSED static i64 ad(i64 a, i64 b) { return (i64)((u64)a + (u64)b); }
UNUSED static i64 sb(i64 a, i64 b) { return (i64)((u64)a - (u64)b); }
UNUSED static i64 ml(i64 a, i64 b) { return (i64)((u64)a * (u64)b); }
UNUSED static i64 dv(i64 a, i64 b) { return b ? a / b : 0; }
UNUSED static i64 md(i64 a, i64 b) { return b ? a % b : 0; }

/* A system call's result as the workload sees it: the value or -errno. */
UNUSED static i64 rr(i64 r) { return r == -1 ? -(i64)errno : r; }

/* Everything the statements share across processes: results, mapping
 * addresses, iovecs, descriptors. One MAP_SHARED page set made before any
 * fork, so a child's results are the parent's too. */
struct state {
	i64 v[NVARS + 1];
	/* Why a result could not be had (then what uses it is skipped). */
	const char *na[NVARS + 1];
	u64 map[NMAPS + 1];
	u64 maplen[NMAPS + 1];
	int mapown[NMAPS + 1];
	struct iovec iov[NIOVS + 1];
	int pfd[NPIPES + 1][2];
	int ffd[NFILES + 1];
	int cur;
};
static struct state *S;

/* Processes other than the first: each serves statements sent to it. */
struct proc { int pid, cmd, ack; };
static struct proc P[NPROCS + 1];
static int me_idx;
static void run_stmt(int k);

UNUSED static void serve(int cmd, int ack)
{
	int k;
	char one = 1;
	while (read(cmd, &k, sizeof k) == (ssize_t)sizeof k && k >= 0) {
		run_stmt(k);
		fflush(stdout);
		if (write(ack, &one, 1) != 1)
			_exit(3);
	}
	_exit(0);
}

/* Runs statement k in process p (0: this one). */
UNUSED static void in_proc(int p, int k)
{
	char one;
	if (p == me_idx) {
		run_stmt(k);
		return;
	}
	fflush(stdout);
	if (write(P[p].cmd, &k, sizeof k) != (ssize_t)sizeof k || read(P[p].ack, &one, 1) != 1) {
		printf("# process %d is gone\n", p);
		exit(1);
	}
}

/* fork() (fresh == 0) or new_process() (fresh == 1: the child drops every
 * mapping the workload made, so it starts with an address space of its
 * own as the emulator's new mm does). Returns the child's pid. */
UNUSED static i64 spawn(int idx, int fresh)
{
	int cmd[2], ack[2], i, pid;
	if (pipe(cmd) || pipe(ack))
		return -(i64)errno;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -(i64)errno;
	if (pid == 0) {
		me_idx = idx;
		close(cmd[1]);
		close(ack[0]);
		if (fresh)
			for (i = 1; i <= NMAPS; i++)
				if (S->maplen[i] && S->mapown[i] == S->cur)
					munmap((void *)(uintptr_t)S->map[i], S->maplen[i]);
		serve(cmd[0], ack[1]);
	}
	close(cmd[0]);
	close(ack[1]);
	P[idx].pid = pid;
	P[idx].cmd = cmd[1];
	P[idx].ack = ack[0];
	return pid;
}

UNUSED static i64 end_proc(int idx)
{
	int k = -1, st;
	if (!P[idx].pid)
		return -3; /* -ESRCH */
	if (write(P[idx].cmd, &k, sizeof k) != (ssize_t)sizeof k)
		return -3;
	waitpid(P[idx].pid, &st, 0);
	P[idx].pid = 0;
	return 0;
}

/* A pid no process has: the workload's literal pids name emulated tasks
 * that do not exist. */
UNUSED static i64 absent_pid(i64 want)
{
	int p;
	if (want > 0 && kill((int)want, 0) == -1 && errno == ESRCH)
		return want;
	for (p = 4000000; p > 1000; p -= 7)
		if (kill(p, 0) == -1 && errno == ESRCH)
			return p;
	return want;
}

/* User accesses that may fault: the bytes not done, as uaccess reports. */
static sigjmp_buf fault_jb;
UNUSED static void on_fault(int sig)
{
	(void)sig;
	siglongjmp(fault_jb, 1);
}
UNUSED static void catch_faults(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_fault;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}
/* mode 0: write `fill` (or the copy_to_user pattern when fill < 0);
 * mode 1: read. */
UNUSED static i64 user_access(u64 a, u64 n, int mode, int fill)
{
	volatile u64 done = 0;
	volatile unsigned char sink = 0;
	if (sigsetjmp(fault_jb, 1))
		return (i64)(n - done);
	for (; done < n; done++) {
		volatile unsigned char *p = (volatile unsigned char *)(uintptr_t)(a + done);
		if (mode == 1)
			sink ^= *p;
		else
			*p = fill >= 0 ? (unsigned char)fill : (unsigned char)(done % 251 + 1);
	}
	(void)sink;
	return 0;
}
UNUSED static i64 get_user_byte(u64 a)
{
	volatile int v = -14;
	if (sigsetjmp(fault_jb, 1))
		return -14; /* -EFAULT */
	v = *(volatile unsigned char *)(uintptr_t)a;
	return v;
}

UNUSED static i64 do_map(int i, u64 addr, u64 len, int prot, int flags, int fd)
{
	void *p = mmap((void *)(uintptr_t)addr, len, prot, flags | (addr ? MAP_FIXED_NOREPLACE : 0), fd, 0);
	if (p == MAP_FAILED)
		return -(i64)errno;
	if (addr && (u64)(uintptr_t)p != addr) {
		munmap(p, len);
		return -17; /* -EEXIST: an old kernel ignored MAP_FIXED_NOREPLACE */
	}
	S->map[i] = (u64)(uintptr_t)p;
	S->maplen[i] = (len + (u64)sysconf(_SC_PAGESIZE) - 1) & ~((u64)sysconf(_SC_PAGESIZE) - 1);
	S->mapown[i] = S->cur;
	return (i64)(uintptr_t)p;
}

/* A file holding the emulator's page-cache pattern (pattern_byte). */
UNUSED static int make_file(u64 size, u64 page)
{
	int fd = memfd_create("vmemu", MFD_CLOEXEC);
	unsigned char buf[4096];
	u64 off = 0, i, n;
	if (fd < 0)
		return -errno;
	while (off < size) {
		n = size - off < sizeof buf ? size - off : sizeof buf;
		for (i = 0; i < n; i++)
			buf[i] = (unsigned char)(((off + i) / page) * 7 + (off + i) % page);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			return -errno;
		off += n;
	}
	return fd;
}

/* A block device of `size` bytes with 512-byte blocks holding the
 * page-cache pattern: a loop device over a memfd (needs root and the loop
 * driver; otherwise the result is marked unavailable and its users are
 * skipped). Returns the descriptor opened with `flags`. */
UNUSED static i64 open_blkdev(u64 size, int flags, u64 page, int var)
{
	static char path[64];
	int ctl, n, lfd, back, fd;
	struct loop_info64 li;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		S->na[var] = "no loop device (/dev/loop-control cannot be opened)";
		return -(i64)errno;
	}
	n = ioctl(ctl, LOOP_CTL_GET_FREE);
	close(ctl);
	back = make_file(size, page);
	snprintf(path, sizeof path, "/dev/loop%d", n);
	lfd = n < 0 || back < 0 ? -1 : open(path, O_RDWR | O_CLOEXEC);
	if (lfd < 0 || ioctl(lfd, LOOP_SET_FD, back)) {
		S->na[var] = "no loop device (LOOP_CTL_GET_FREE/LOOP_SET_FD failed)";
		return -(i64)errno;
	}
	memset(&li, 0, sizeof li);
	li.lo_flags = LO_FLAGS_AUTOCLEAR;
	ioctl(lfd, LOOP_SET_STATUS64, &li);
	ioctl(lfd, LOOP_SET_BLOCK_SIZE, 512);
	fd = open(path, O_RDWR | O_CLOEXEC | flags);
	close(lfd);
	close(back);
	if (fd < 0) {
		S->na[var] = "the loop device cannot be opened with these flags";
		return -(i64)errno;
	}
	return fd;
}

/* What a pipe holds, without taking it out: tee(2) into a scratch pipe
 * (a diagnostic; the pipe's buffers stay as they are). */
UNUSED static void show_pipe(const char *name, int rfd)
{
	static unsigned char buf[1 << 20];
	int sp[2];
	ssize_t n = 0, t, i;
	unsigned h = 2166136261u;
	if (pipe2(sp, O_NONBLOCK))
		return;
	fcntl(sp[1], F_SETPIPE_SZ, 1 << 20);
	t = tee(rfd, sp[1], 1 << 20, SPLICE_F_NONBLOCK);
	if (t > 0)
		n = read(sp[0], buf, sizeof buf);
	close(sp[0]);
	close(sp[1]);
	if (n < 0)
		n = 0;
	for (i = 0; i < n; i++)
		h = (h ^ buf[i]) * 16777619u;
	printf("  # pipe %s holds %ld bytes, fnv1a %08x\n", name, (long)n, h);
}

/* The bytes a read landed in an iovec array: their count and hash. */
UNUSED static void show_landed(const struct iovec *iov, int n, i64 ret)
{
	unsigned h = 2166136261u;
	i64 left = ret;
	int i;
	u64 j;
	if (ret <= 0)
		return;
	for (i = 0; i < n && left > 0; i++)
		for (j = 0; j < iov[i].iov_len && left > 0; j++, left--) {
			i64 b = get_user_byte((u64)(uintptr_t)iov[i].iov_base + j);
			h = (h ^ (unsigned)(b & 0xff)) * 16777619u;
		}
	printf("  # %lld bytes landed, fnv1a %08x\n", ret, h);
}

static int n_ok, n_fail, n_skip, n_test;

/* The running kernel's version, major * 1000 + minor. */
UNUSED static int kernel_version(void)
{
	static char rel[256];
	int maj = 0, min = 0;
	FILE *f = fopen("/proc/sys/kernel/osrelease", "r");
	if (f) {
		if (fgets(rel, sizeof rel, f) && sscanf(rel, "%d.%d", &maj, &min) != 2)
			maj = min = 0;
		fclose(f);
	}
	return maj * 1000 + min;
}

/* One expect. A failure that a known kernel change explains (the change
 * came after `since`, and this kernel is newer) is a skip that says why. */
UNUSED static void expect(int line, const char *text, int ok, i64 got, int since_maj, int since_min,
		   const char *why)
{
	n_test++;
	if (ok) {
		n_ok++;
		printf("  ok %d expect_L%d\n", n_test, line);
	} else if (why && kernel_version() > since_maj * 1000 + since_min) {
		n_skip++;
		printf("  # L%d  %s  -> got %lld on this kernel\n", line, text, got);
		printf("  ok %d expect_L%d # SKIP known difference: %s\n", n_test, line, why);
	} else {
		n_fail++;
		printf("  # L%d  %s  -> FAILED: got %lld\n", line, text, got);
		printf("  not ok %d expect_L%d\n", n_test, line);
	}
}
UNUSED static void expect_skip(int line, const char *why)
{
	n_test++;
	n_skip++;
	printf("  ok %d expect_L%d # SKIP %s\n", n_test, line, why);
}

/* Ends the children and prints the test's result line and the totals. */
UNUSED static void finish(int nprocs, const char *name)
{
	int p;
	for (p = 1; p <= nprocs; p++)
		end_proc(p);
	if (n_fail)
		printf("# %s: FAIL: %d of %d expects failed on this kernel\nnot ok 1 %s\n", name, n_fail, n_test, name);
	else
		printf("ok 1 %s\n", name);
	printf("# Totals: pass:%d fail:%d skip:0 total:1\n", n_fail ? 0 : 1, n_fail ? 1 : 0);
	fflush(stdout);
}
