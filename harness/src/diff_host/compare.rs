//! Both sides of a comparison and what they disagree on: the host runner,
//! the outcome comparison, the differences explained by host kernels after
//! 6.13, and the report.

use std::fmt::Write as _;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use super::host;
use super::{Case, Op, Outcome, emu, fmt_ret};

/// Whether this host can run the host side, or why not.
pub fn host_support() -> Result<(), String> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        host::support()
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        Err(format!(
            "the host is {} {}, not Linux x86-64",
            std::env::consts::OS,
            std::env::consts::ARCH
        ))
    }
}

/// The host kernel's release (`uname -r`), if readable.
#[must_use]
pub fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The host side of a comparison: pipes, the memfd and the loop device,
/// set up once.
#[derive(Debug)]
pub struct HostRunner {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    inner: host::Host,
    /// Why O_DIRECT cases are skipped, if they are.
    pub bdev_skip: Option<String>,
}

impl HostRunner {
    /// Sets the host side up; `with_bdev` asks for a loop device (needs root
    /// and `losetup`; otherwise the O_DIRECT cases are skipped).
    pub fn new(with_bdev: bool) -> Result<Self, String> {
        host_support()?;
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            let (inner, bdev_skip) = host::Host::new(with_bdev)?;
            Ok(Self { inner, bdev_skip })
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            let _ = with_bdev;
            Err("no host side on this platform".into())
        }
    }

    /// Runs one case on the host (None: skipped).
    pub fn run(&mut self, c: &Case) -> Option<Outcome> {
        if c.op.needs_bdev() && self.bdev_skip.is_some() {
            return None;
        }
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            self.inner.run(c)
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            None
        }
    }
}

/// One disagreement.
#[derive(Clone, Debug)]
pub struct Disagreement {
    /// The case.
    pub case: Case,
    /// Host outcome.
    pub host: Outcome,
    /// Emulator outcome.
    pub emu: Outcome,
    /// What differs.
    pub what: String,
}

/// Compares two outcomes; `None` when they agree.
#[must_use]
pub fn compare(host: &Outcome, emu: &Outcome) -> Option<String> {
    let mut w = String::new();
    if host.ret != emu.ret {
        let _ = write!(w, "return {} vs {}", fmt_ret(host.ret), fmt_ret(emu.ret));
    }
    for (label, a, b) in [
        ("memory", &host.mem, &emu.mem),
        ("pipe/file/device", &host.after, &emu.after),
    ] {
        if a != b {
            if !w.is_empty() {
                w.push_str("; ");
            }
            let first = a.iter().zip(b.iter()).position(|(x, y)| x != y);
            match first {
                Some(i) => {
                    let _ = write!(
                        w,
                        "{label} differs first at byte {i:#x} ({:#04x} vs {:#04x})",
                        a[i], b[i]
                    );
                }
                None => {
                    let _ = write!(w, "{label} length {} vs {}", a.len(), b.len());
                }
            }
        }
    }
    (!w.is_empty()).then_some(w)
}

/// A disagreement explained by a change in the host kernel after 6.13:
/// the explanation, or `None`.
#[must_use]
pub fn known_difference(c: &Case, host: &Outcome, emu: &Outcome) -> Option<&'static str> {
    // 6.13 pipe_write() puts the new buffer in the ring before copying and
    // leaves it there, empty, when the first chunk faults: it takes a slot,
    // a later small write merges into it, and vmsplice to user memory stops
    // at it when it follows a consumed buffer. The host kernel leaves no
    // such buffer (observed: 16 page writes still fit after a faulting
    // write): O. Nesterov's pipe_write() rework of Feb 2025, after 6.13.
    if c.op.uses_pipe() && c.fill.contains(&0) {
        return Some(
            "post-6.13 pipe_write (O. Nesterov, 2025): no empty buffer left in the ring by a faulting write",
        );
    }
    match c.op {
        // 6.13 blkdev_dio_invalid() checks every iovec's address against
        // the queue's dma_alignment and its length against the logical
        // block size (iov_iter_is_aligned); 6.18 (block layer rework,
        // 7eac33186957 / 5ff3f74e145a, v6.18-rc1) only checks the position
        // and leaves the rest to bio building, so the host goes on to copy
        // or fails later (-EFAULT) where 6.13 says -EINVAL.
        Op::PreadvDirect { pos } | Op::PwritevDirect { pos } => {
            let total = c.iov.iter().fold(0u64, |a, s| a.wrapping_add(s.len));
            (emu.ret == -22 && host.ret != -22 && pos >= 0 && pos % 512 == 0 && (total as i64) >= 0)
                .then_some("6.18 O_DIRECT: per-iovec alignment no longer checked up front (7eac33186957, 5ff3f74e145a)")
        }
        // 6.13 generic_perform_write() pre-faults the source and fails with
        // -EFAULT before ->write_begin; since "filemap: move prefaulting out
        // of hot write path" (D. Hansen, 2025) the copy is tried first, so a
        // write whose first byte faults still runs ->write_begin/->write_end,
        // and tmpfs' shmem_write_end() moves i_size up to pos.
        Op::Pwritev { size, pos } => {
            let pos = pos as u64;
            (host.ret == emu.ret
                && host.mem == emu.mem
                && pos > size
                && host.after.len() as u64 == pos.max(emu.after.len() as u64)
                && host.after.starts_with(&emu.after)
                && host.after[emu.after.len()..].iter().all(|&b| b == 0))
                .then_some("post-6.13 generic_perform_write: prefault after the copy, a failed write past EOF still grows a tmpfs file to pos")
        }
        _ => None,
    }
}

/// Totals of a comparison run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Cases compared.
    pub compared: usize,
    /// Cases skipped (no loop device).
    pub skipped: usize,
    /// Disagreements.
    pub disagreements: Vec<Disagreement>,
    /// Disagreements explained by host kernel changes after 6.13
    /// ([`known_difference`]), with the explanation.
    pub known: Vec<(Disagreement, &'static str)>,
    /// Every compared case: (name, host return, emulator return, agreed).
    pub log: Vec<(String, i64, i64, bool)>,
}

impl Report {
    /// `N passed, N failed, N skipped`-style closing line.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "{} agree, {} differ as known (host kernel after 6.13), {} disagree, {} skipped",
            self.compared - self.disagreements.len() - self.known.len(),
            self.known.len(),
            self.disagreements.len(),
            self.skipped
        )
    }
}

/// Runs every case on both sides. `progress` is called after each case.
pub fn compare_cases(
    host: &mut HostRunner,
    cases: &[Case],
    mut progress: impl FnMut(usize),
) -> Report {
    let mut rep = Report::default();
    for (k, c) in cases.iter().enumerate() {
        progress(k);
        let Some(h) = host.run(c) else {
            rep.skipped += 1;
            continue;
        };
        let e = emu::run(c);
        rep.compared += 1;
        let agreed = compare(&h, &e).is_none();
        rep.log.push((c.name.clone(), h.ret, e.ret, agreed));
        if let Some(what) = compare(&h, &e) {
            let known = known_difference(c, &h, &e);
            let d = Disagreement {
                case: c.clone(),
                host: h,
                emu: e,
                what,
            };
            match known {
                Some(why) => rep.known.push((d, why)),
                None => rep.disagreements.push(d),
            }
        }
    }
    rep
}

/// A disagreement as a few lines: the case, both outcomes, what differs.
#[must_use]
pub fn format_disagreement(d: &Disagreement) -> String {
    format!(
        "DIFF {}\n  host: {}   emulator: {}\n  {}",
        d.case,
        fmt_ret(d.host.ret),
        fmt_ret(d.emu.ret),
        d.what
    )
}
