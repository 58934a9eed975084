//! `vmemu diff-kernel`: the emulator against a real kernel of any arch,
//! booted under QEMU (TCG).
//!
//! The built-in workloads that `export-c` can express, and `diff-host`'s
//! random syscall cases generated for the guest arch's page size and
//! address limits ([`crate::diff_host::random_case_for`]), are built
//! statically with the arch's cross compiler, packed as the programs of a
//! newc initramfs whose `/init` runs them in one boot, and read back from
//! the serial console. The same cases run on the emulator under the
//! profile nearest the guest's version; every case is printed as agree,
//! known difference (with the kernel change that explains it) or
//! disagree, and the command exits 1 on an unexplained disagreement.
//! The boot has an explicit timeout (`--timeout`), reported when hit.
//!
//! `tools/fetch-kernels` installs QEMU, the cross compilers and Debian's
//! kernel images.

mod cases_c;
mod guest;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmemu_arch::{Arch, ArchId, with_arch};
use vmemu_mm::KernelProfile;

use crate::diff_host::{Case, Geometry, random_case_for};
use crate::lang::Workload;

pub use cases_c::{fnv1a, outcome_line};
pub use guest::cpio;

/// Options of `vmemu diff-kernel`.
#[derive(clap::Args, Debug, Clone)]
pub struct DiffKernelArgs {
    /// The guest's arch: x86_64, arm64, ppc64 (64 KiB pages) or ppc64-4k.
    #[arg(long, value_parser = crate::complete::arch_names(), hide_possible_values = true)]
    pub arch: String,
    /// The kernel image to boot (vmlinuz/Image for x86_64 and arm64,
    /// vmlinux for ppc64), e.g. from tools/fetch-kernels.
    #[arg(long, value_name = "PATH")]
    pub kernel_image: PathBuf,
    /// Random syscall cases to run (0: only the workloads).
    #[arg(long, default_value_t = 1000)]
    pub cases: usize,
    /// Seed of the random cases (printed first; also read from VMEMU_SEED).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The emulator profile to compare with (default: the one nearest the
    /// version in the image's file name).
    #[arg(long, value_parser = crate::complete::profile_parser(), hide_possible_values = true)]
    pub kernel: Option<KernelProfile>,
    /// Seconds the guest may run before it is killed (default: 300 plus
    /// half a second per case).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Skip the built-in workloads (only the random cases).
    #[arg(long)]
    pub no_workloads: bool,
    /// Print the guest's console.
    #[arg(long)]
    pub show_console: bool,
    /// Workloads to export and run (files or built-in names; default:
    /// every built-in workload export-c can express for the arch).
    #[arg(value_parser = crate::complete::workload_names(), hide_possible_values = true)]
    pub workloads: Vec<String>,
}

/// `vX.Y` of a profile name or a kernel file name, as major * 1000 + minor.
fn version_of(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            continue;
        }
        let rest = &s[i..];
        let mut it = rest.splitn(3, '.');
        let maj = it.next()?.parse::<u32>().ok();
        let min: Option<u32> = it.next().and_then(|m| {
            let d: String = m.chars().take_while(char::is_ascii_digit).collect();
            d.parse().ok()
        });
        if let (Some(a), Some(b)) = (maj, min)
            && (2..=9).contains(&a)
        {
            return Some(a * 1000 + b);
        }
    }
    None
}

/// The base profile nearest kernel version `v` (a tie goes to the newer).
#[must_use]
pub fn nearest_profile(v: u32) -> KernelProfile {
    KernelProfile::builtins()
        .into_iter()
        .filter(|p| p.overlays.is_empty())
        .filter_map(|p| version_of(&p.name()).map(|pv| (pv, p)))
        .min_by_key(|(pv, _)| (pv.abs_diff(v), u32::MAX - pv))
        .map_or_else(KernelProfile::newest, |(_, p)| p)
}

/// The geometry random cases use on `arch` (the emulator's layout).
#[must_use]
pub fn geometry(arch: ArchId, profile: &KernelProfile) -> Geometry {
    with_arch!(arch, A => {
        let l = A::layout(profile.knobs.family);
        Geometry { page: A::PAGE_SIZE, task_size_max: l.task_size_max, kernel_addr: l.page_offset }
    })
}

/// The cases sent to the guest: every random case that needs no block
/// device (the initramfs has no loop driver).
#[must_use]
pub fn guest_cases(
    arch: ArchId,
    profile: &KernelProfile,
    seed: u64,
    n: usize,
) -> (Vec<(usize, Case)>, usize) {
    let g = geometry(arch, profile);
    let all: Vec<(usize, Case)> = (0..n).map(|k| (k, random_case_for(&g, seed, k))).collect();
    let total = all.len();
    let kept: Vec<(usize, Case)> = all
        .into_iter()
        .filter(|(_, c)| !c.op.needs_bdev())
        .collect();
    let skipped = total - kept.len();
    (kept, skipped)
}

/// Tally of one comparison.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Compared.
    pub compared: usize,
    /// Agreed.
    pub agree: usize,
    /// Differed in a known way.
    pub known: usize,
    /// Differed.
    pub disagree: usize,
    /// Not run.
    pub skipped: usize,
}

fn load_workloads(names: &[String]) -> Result<Vec<Workload>, String> {
    let srcs: Vec<(String, Vec<u8>)> = if names.is_empty() {
        crate::workloads::BUILTIN
            .iter()
            .map(|(f, s)| (f.to_string(), s.as_bytes().to_vec()))
            .collect()
    } else {
        names
            .iter()
            .map(|n| match std::fs::read(n) {
                Ok(b) => Ok((n.clone(), b)),
                Err(e) => crate::workloads::BUILTIN
                    .iter()
                    .find(|(f, _)| *f == n || f.trim_end_matches(".vmw") == n)
                    .map(|(f, s)| (f.to_string(), s.as_bytes().to_vec()))
                    .ok_or_else(|| format!("{n}: {e} (and no built-in workload has that name)")),
            })
            .collect::<Result<_, _>>()?
    };
    srcs.iter()
        .map(|(f, b)| {
            crate::lint::check_bytes(f, b).map_err(|e| {
                e.iter()
                    .map(|x| x.headline())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        })
        .collect()
}

/// Runs `vmemu diff-kernel`: `Ok(true)` when nothing disagrees unexplained.
pub fn main(a: &DiffKernelArgs) -> Result<bool, String> {
    let arch: ArchId = a
        .arch
        .parse()
        .map_err(|_| format!("unknown arch `{}` (x86_64, arm64, ppc64, ppc64-4k)", a.arch))?;
    if !a.kernel_image.is_file() {
        return Err(format!(
            "no kernel image at {} (tools/fetch-kernels unpacks Debian's)",
            a.kernel_image.display()
        ));
    }
    let cc = guest::cross_cc(arch);
    let (qemu, _, _) = guest::qemu(arch);
    for tool in [cc, qemu] {
        if !guest::have(tool) {
            return Err(format!(
                "`{tool}` is not installed (tools/fetch-kernels installs it)"
            ));
        }
    }
    let file_version = a
        .kernel_image
        .file_name()
        .and_then(|f| version_of(&f.to_string_lossy()));
    let profile = match (&a.kernel, file_version) {
        (Some(k), _) => k.clone(),
        (None, Some(v)) => nearest_profile(v),
        (None, None) => KernelProfile::newest(),
    };
    let seed = crate::diff_host::resolve_seed(a.seed)?;
    println!(
        "seed {seed} (replay: vmemu diff-kernel --arch {arch} --kernel-image {} --cases {} --seed {seed}); emulator {arch} under {}",
        a.kernel_image.display(),
        a.cases,
        profile.name()
    );
    let dir = guest::workdir()?;
    let res = campaign(a, arch, &profile, seed, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    res
}

/// One exported workload on its way to the guest.
struct Exported {
    w: Workload,
    prog: String,
}

/// What goes into the initramfs.
struct Built {
    files: Vec<(String, u32, Vec<u8>)>,
    progs: Vec<String>,
    exported: Vec<Exported>,
    cases: Vec<(usize, Case)>,
    bdev_skipped: usize,
}

/// Exports and builds the workloads and the case program.
fn build(
    a: &DiffKernelArgs,
    arch: ArchId,
    profile: &KernelProfile,
    seed: u64,
    dir: &Path,
) -> Result<Built, String> {
    let cc = guest::cross_cc(arch);
    let mut files: Vec<(String, u32, Vec<u8>)> = Vec::new();
    let mut progs = Vec::new();
    let mut exported = Vec::new();
    if !a.no_workloads {
        let mut refused = Vec::new();
        for w in load_workloads(&a.workloads)? {
            if !crate::run::applies(&w, arch) {
                continue;
            }
            match crate::export_c::export(&w, arch, profile, false) {
                Ok(e) => {
                    let prog = format!("w_{}", w.name);
                    let bin = dir.join(&prog);
                    guest::compile(cc, &e.source, &bin)?;
                    files.push((prog.clone(), 0o100_755, read(&bin)?));
                    progs.push(format!("/{prog}"));
                    exported.push(Exported { w, prog });
                }
                Err(_) => refused.push(w.name.clone()),
            }
        }
        println!(
            "workloads: {} exported for {arch}; {} not exportable (kernel-internal statements): {}",
            exported.len(),
            refused.len(),
            refused.join(" ")
        );
    }
    let (cases, bdev_skipped) = guest_cases(arch, profile, seed, a.cases);
    if !cases.is_empty() {
        let bin = dir.join("cases");
        guest::compile(cc, &cases_c::program(&cases, arch.page_size()), &bin)?;
        files.push(("cases".into(), 0o100_755, read(&bin)?));
        progs.push("/cases".into());
    }
    Ok(Built {
        files,
        progs,
        exported,
        cases,
        bdev_skipped,
    })
}

fn campaign(
    a: &DiffKernelArgs,
    arch: ArchId,
    profile: &KernelProfile,
    seed: u64,
    dir: &Path,
) -> Result<bool, String> {
    let cc = guest::cross_cc(arch);
    let t0 = Instant::now();
    let Built {
        mut files,
        progs,
        exported,
        cases,
        bdev_skipped,
    } = build(a, arch, profile, seed, dir)?;
    let timeout = Duration::from_secs(a.timeout.unwrap_or(300 + a.cases as u64 / 2));
    let init = dir.join("init");
    guest::compile(
        cc,
        &guest::init_source(&progs, timeout.as_secs() as u32),
        &init,
    )?;
    files.insert(0, ("init".into(), 0o100_755, read(&init)?));
    let initrd = dir.join("initrd.cpio");
    std::fs::write(&initrd, cpio(&files)).map_err(|e| format!("{}: {e}", initrd.display()))?;
    let build = t0.elapsed();
    let boot = guest::boot(arch, &a.kernel_image, &initrd, timeout)?;
    if a.show_console {
        println!("{}", boot.console);
    }
    let release = boot
        .console
        .lines()
        .find_map(|l| l.strip_prefix("VMEMU-GUEST release "))
        .unwrap_or("unknown")
        .to_string();
    println!(
        "guest: {release}; build {:.1} s, boot and run {:.1} s{}",
        build.as_secs_f64(),
        boot.wall.as_secs_f64(),
        if boot.timed_out {
            format!(
                " (TIMED OUT after {} s: the guest was killed)",
                timeout.as_secs()
            )
        } else {
            String::new()
        }
    );
    let page = format!("pagesize {} ", arch.page_size());
    if !release.contains(&page) && !release.ends_with(&format!("pagesize {}", arch.page_size())) {
        return Err(format!(
            "the guest's page size is not {} ({release}): boot a kernel built for {arch}",
            arch.page_size()
        ));
    }
    let t1 = Instant::now();
    let wl = compare_workloads(arch, profile, &exported, &boot.console);
    let mut cs = compare_cases(arch, profile, &cases, &boot.console);
    cs.skipped += bdev_skipped;
    println!(
        "workload expects: {} agree, {} differ as known, {} disagree, {} skipped",
        wl.agree, wl.known, wl.disagree, wl.skipped
    );
    println!(
        "cases: {} compared, {} agree, {} differ as known, {} disagree, {} skipped (O_DIRECT: no block device in the guest); emulator {:.1} s",
        cs.compared,
        cs.agree,
        cs.known,
        cs.disagree,
        cs.skipped,
        t1.elapsed().as_secs_f64()
    );
    Ok(wl.disagree == 0 && cs.disagree == 0 && !boot.timed_out)
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Each exported workload's expects, guest against emulator.
fn compare_workloads(
    arch: ArchId,
    profile: &KernelProfile,
    exported: &[Exported],
    console: &str,
) -> Tally {
    let mut t = Tally::default();
    for e in exported {
        let emu: Vec<(usize, bool)> = match crate::run::run(&e.w, arch, profile) {
            Ok(r) => r
                .records
                .iter()
                .filter(|r| r.op == "expect")
                .map(|r| (r.line, r.ok.unwrap_or(true)))
                .collect(),
            Err(err) => {
                println!(
                    "DISAGREE {}: the emulator cannot run it: {}",
                    e.w.name, err.msg
                );
                t.disagree += 1;
                continue;
            }
        };
        let guest: Vec<GuestExpect> = guest::section(console, &format!("/{}", e.prog))
            .map(|(text, _)| parse_expects(text))
            .unwrap_or_default();
        for (i, (line, ok)) in emu.iter().enumerate() {
            t.compared += 1;
            let verdict = match guest.get(i) {
                None => Verdict::Disagree("no result from the guest".into()),
                Some(g) if g.line != *line => {
                    Verdict::Disagree(format!("guest test {i} is expect_L{}", g.line))
                }
                Some(g) => match (&g.skip, g.ok, ok) {
                    (Some(why), _, _) if why.starts_with("known difference") => {
                        Verdict::Known(why.clone())
                    }
                    (Some(why), _, _) => Verdict::Skip(why.clone()),
                    (None, a, b) if a == *b => Verdict::Agree,
                    (None, a, b) => {
                        Verdict::Disagree(format!("guest {}, emulator {}", pass(a), pass(*b)))
                    }
                },
            };
            let name = format!("{}:L{line}", e.w.name);
            tally(&mut t, &name, &verdict);
        }
    }
    t
}

fn pass(ok: bool) -> &'static str {
    if ok { "passes" } else { "fails" }
}

enum Verdict {
    Agree,
    Known(String),
    Skip(String),
    Disagree(String),
}

fn tally(t: &mut Tally, name: &str, v: &Verdict) {
    match v {
        Verdict::Agree => {
            t.agree += 1;
            println!("agree {name}");
        }
        Verdict::Known(why) => {
            t.known += 1;
            println!("known difference {name}: {why}");
        }
        Verdict::Skip(why) => {
            t.compared -= 1;
            t.skipped += 1;
            println!("skipped {name}: {why}");
        }
        Verdict::Disagree(why) => {
            t.disagree += 1;
            println!("DISAGREE {name}: {why}");
        }
    }
}

/// One expect result of an exported program's KTAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestExpect {
    /// Its script line (`expect_L<line>`).
    pub line: usize,
    /// `ok` (a skip is `ok` too).
    pub ok: bool,
    /// The reason of a `# SKIP`.
    pub skip: Option<String>,
}

/// The `ok N expect_LX [# SKIP why]` lines of an exported program's KTAP.
#[must_use]
pub fn parse_expects(text: &str) -> Vec<GuestExpect> {
    let mut v = Vec::new();
    for l in text.lines() {
        let l = l.trim_start();
        let (ok, rest) = if let Some(r) = l.strip_prefix("not ok ") {
            (false, r)
        } else if let Some(r) = l.strip_prefix("ok ") {
            (true, r)
        } else {
            continue;
        };
        let mut words = rest.splitn(2, ' ');
        let _n = words.next();
        let Some(name) = words.next() else { continue };
        let (name, skip) = match name.split_once(" # SKIP ") {
            Some((n, why)) => (n, Some(why.to_string())),
            None => (name, None),
        };
        if let Some(line) = name.strip_prefix("expect_L").and_then(|x| x.parse().ok()) {
            v.push(GuestExpect { line, ok, skip });
        }
    }
    v
}

/// Each random case, guest against emulator.
fn compare_cases(
    arch: ArchId,
    profile: &KernelProfile,
    cases: &[(usize, Case)],
    console: &str,
) -> Tally {
    let mut t = Tally::default();
    let text = guest::section(console, "/cases").map_or("", |(s, _)| s);
    let mut got = std::collections::HashMap::new();
    for l in text.lines() {
        if let Some(rest) = l.trim().strip_prefix("CASE ")
            && let Some(k) = rest.split(' ').next().and_then(|k| k.parse::<usize>().ok())
        {
            got.insert(k, l.trim().to_string());
        }
    }
    for (k, c) in cases {
        let emu = with_arch!(arch, A => crate::diff_host::emu::run_on::<A>(c, profile.clone()));
        let want = outcome_line(*k, &emu);
        t.compared += 1;
        let v = match got.get(k) {
            None => Verdict::Disagree("no result from the guest".into()),
            Some(g) if *g == want => Verdict::Agree,
            Some(g) => match known_case_difference(arch, c, g, &emu) {
                Some(why) => Verdict::Known(why.into()),
                None => Verdict::Disagree(format!("guest `{g}`, emulator `{want}`")),
            },
        };
        let name = format!("{c}");
        tally(&mut t, &name, &v);
    }
    t
}

/// A case difference explained by a kernel change or configuration
/// between the guest and the emulated arch.
fn known_case_difference(
    arch: ArchId,
    c: &Case,
    _guest: &str,
    emu: &crate::diff_host::Outcome,
) -> Option<&'static str> {
    // Debian builds arm64 6.12 with CONFIG_ARM64_VA_BITS_52 (4 KiB pages
    // with LPA2, 6.9+): TASK_SIZE_MAX is 2^52 and access_ok()
    // (arch/arm64/include/asm/uaccess.h) passes an iovec that straddles
    // 2^48, which then faults page by page; the emulator models VA_BITS=48,
    // where import_iovec() fails it with -EFAULT up front.
    let task = 1u64 << 48;
    let straddles = c.iov.iter().any(|s| {
        matches!(s.addr, crate::diff_host::Addr::Abs(a) if a < task && a.wrapping_add(s.len) > task)
    });
    (arch.name() == "arm64" && straddles && emu.ret == -14).then_some(
        "Debian's arm64 6.12 has CONFIG_ARM64_VA_BITS_52: TASK_SIZE_MAX 2^52, so access_ok() passes an iovec straddling 2^48 (the emulator models VA_BITS=48)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_nearest_profiles() {
        assert_eq!(version_of("vmlinuz-6.12.118+deb12-arm64"), Some(6012));
        assert_eq!(version_of("v4.17"), Some(4017));
        assert_eq!(version_of("Image"), None);
        assert_eq!(nearest_profile(6012).name(), "v6.13");
        assert_eq!(nearest_profile(4014).name(), "v4.17");
        assert_eq!(nearest_profile(4010).name(), "v4.10");
    }

    #[test]
    fn cpio_is_newc_with_a_trailer() {
        let c = cpio(&[("init".into(), 0o100_755, b"abc".to_vec())]);
        assert!(c.starts_with(b"070701"));
        assert_eq!(c.len() % 4, 0);
        let s = String::from_utf8_lossy(&c);
        assert!(s.contains("init\0"));
        assert!(s.contains("TRAILER!!!"));
        // The header's file size field (7th) is 3.
        assert_eq!(&s[6 + 8 * 6..6 + 8 * 7], "00000003");
    }

    #[test]
    fn guest_cases_follow_the_arch_geometry() {
        let p = KernelProfile::newest();
        let (c4, _) = guest_cases(ArchId::Arm64, &p, 7, 200);
        let (c64, _) = guest_cases(ArchId::Ppc64, &p, 7, 200);
        assert!(c4.iter().all(|(_, c)| !c.op.needs_bdev()));
        // Page-sized fills follow the page size.
        assert!(c64.iter().any(|(_, c)| c.fill.contains(&65536)));
        assert!(!c4.iter().any(|(_, c)| c.fill.contains(&65536)));
    }
}
