//! The guest side: static programs built with the cross compiler, packed
//! as a newc cpio initramfs whose `/init` runs them one by one, booted
//! under the arch's `qemu-system-*` with the console on the serial port.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmemu_arch::ArchId;

/// The C compiler that builds static programs for `arch`.
#[must_use]
pub fn cross_cc(arch: ArchId) -> &'static str {
    // Host tooling, looked up by the arch's name (not arch semantics).
    match (arch.name(), std::env::consts::ARCH) {
        ("x86_64", "x86_64") | ("arm64", "aarch64") => "cc",
        ("x86_64", _) => "x86_64-linux-gnu-gcc",
        ("arm64", _) => "aarch64-linux-gnu-gcc",
        _ => "powerpc64le-linux-gnu-gcc",
    }
}

/// QEMU's binary, machine options and the kernel's console for `arch`.
#[must_use]
pub fn qemu(arch: ArchId) -> (&'static str, &'static [&'static str], &'static str) {
    match arch.name() {
        // la57 off: Debian's amd64 kernels have CONFIG_X86_5LEVEL and would
        // run with 5-level paging (TASK_SIZE_MAX 2^56 - 4096) on a CPU that
        // has it; the emulator models 4-level paging.
        "x86_64" => ("qemu-system-x86_64", &["-cpu", "max,la57=off"], "ttyS0"),
        "arm64" => (
            "qemu-system-aarch64",
            &["-M", "virt", "-cpu", "max"],
            "ttyAMA0",
        ),
        _ => (
            "qemu-system-ppc64",
            &["-M", "pseries", "-cpu", "power9"],
            "hvc0",
        ),
    }
}

/// Whether `prog` can be run (found on PATH).
#[must_use]
pub fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Builds `src` into a static program at `out`.
pub fn compile(cc: &str, src: &str, out: &Path) -> Result<(), String> {
    let c = out.with_extension("c");
    std::fs::write(&c, src).map_err(|e| format!("{}: {e}", c.display()))?;
    let o = Command::new(cc)
        .args(["-static", "-O1", "-Wall", "-o"])
        .arg(out)
        .arg(&c)
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let head: Vec<&str> = err.lines().take(8).collect();
        return Err(format!("{cc} {} failed:\n{}", c.display(), head.join("\n")));
    }
    Ok(())
}

/// The guest's `/init`: mounts /proc and /dev, prints the kernel's release
/// and page size, runs each program (killed after `secs` seconds) between
/// `=== BEGIN name` and `=== END name status S` lines, powers off.
#[must_use]
pub fn init_source(progs: &[String], secs: u32) -> String {
    let list = progs
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
static const char *progs[] = {{ {list}, NULL }};
int main(void)
{{
	struct utsname u;
	int i, st;
	mkdir("/proc", 0755);
	mount("proc", "/proc", "proc", 0, NULL);
	mkdir("/dev", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mkdir("/tmp", 01777);
	uname(&u);
	printf("\nVMEMU-GUEST release %s machine %s pagesize %ld\n", u.release, u.machine, sysconf(_SC_PAGESIZE));
	fflush(stdout);
	for (i = 0; progs[i]; i++) {{
		pid_t p;
		printf("=== BEGIN %s\n", progs[i]);
		fflush(stdout);
		p = fork();
		if (p == 0) {{
			alarm({secs});
			execl(progs[i], progs[i], (char *)NULL);
			_exit(127);
		}}
		st = -1;
		if (p > 0)
			waitpid(p, &st, 0);
		printf("\n=== END %s status %d\n", progs[i], st);
		fflush(stdout);
	}}
	printf("VMEMU-GUEST DONE\n");
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}}
"#
    )
}

/// A newc ("070701") cpio archive of `files`: (name, mode, bytes).
#[must_use]
pub fn cpio(files: &[(String, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let nlink = if mode & 0o040_000 != 0 { 2 } else { 1 };
        let hdr = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(hdr.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in files.iter().enumerate() {
        entry(name, *mode, data, i as u32 + 1);
    }
    entry("TRAILER!!!", 0, &[], 0);
    out
}

/// What a boot gave: the console text and how long it took.
#[derive(Debug)]
pub struct Boot {
    /// Everything the guest printed on its console.
    pub console: String,
    /// Wall time from start to power-off (or to the timeout).
    pub wall: Duration,
    /// Whether the guest was killed at the timeout.
    pub timed_out: bool,
}

/// Boots `image` with `initrd` under QEMU for `arch`; kills it after
/// `timeout`.
pub fn boot(arch: ArchId, image: &Path, initrd: &Path, timeout: Duration) -> Result<Boot, String> {
    let (bin, machine, console) = qemu(arch);
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(machine)
        .args([
            "-m",
            "1024",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-kernel",
        ])
        .arg(image)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("console={console} quiet loglevel=1 panic=-1"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{bin}: {e} (install it with tools/fetch-kernels)"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                timed_out = true;
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for {bin}: {e}")),
        }
    }
    let out = reader.join().unwrap_or_default();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let console = String::from_utf8_lossy(&out).replace('\r', "");
    if !timed_out && !console.contains("VMEMU-GUEST") {
        return Err(format!(
            "{bin} ended without the guest starting: {}",
            err.lines()
                .chain(console.lines().rev().take(5))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    Ok(Boot {
        console,
        wall: start.elapsed(),
        timed_out,
    })
}

/// A scratch directory for one run.
pub fn workdir() -> Result<PathBuf, String> {
    let d = std::env::temp_dir().join(format!("vmemu-diff-kernel-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

/// The console text between `=== BEGIN name` and `=== END name`.
#[must_use]
pub fn section<'c>(console: &'c str, name: &str) -> Option<(&'c str, Option<i32>)> {
    let begin = format!("=== BEGIN {name}\n");
    let at = console.find(&begin)? + begin.len();
    let rest = &console[at..];
    let end = format!("=== END {name} status ");
    match rest.find(&end) {
        Some(e) => {
            let st = rest[e + end.len()..]
                .lines()
                .next()
                .and_then(|l| l.trim().parse().ok());
            Some((&rest[..e], st))
        }
        None => Some((rest, None)),
    }
}
