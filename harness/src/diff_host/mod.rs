//! The host differential: the same syscall case run on the host kernel (real
//! `mmap`/`mprotect`/`munmap` in this process, real pipes, `process_vm_*` on
//! its own pid, a memfd, a loop device with 512-byte blocks) and on the
//! emulator (x86_64, under the profile nearest the host's kernel:
//! [`host_profile`]), comparing the return value (or errno), the
//! bytes of every readable user page, and what the pipe, file or device
//! holds afterwards.
//!
//! Cases come from a fixed table ([`fixed_cases`]) and from a seeded random
//! generator ([`random_cases`]). Only Linux x86-64 hosts can run them
//! ([`host_support`]); elsewhere the comparison is skipped with a reason.
//!
//! User addresses outside the case's own regions are only ever ones no
//! process can map (NULL with length 0, `TASK_SIZE_MAX` and above, kernel
//! and non-canonical addresses), so a case can never touch memory of the
//! process running it.

mod compare;
pub mod emu;
mod fixed;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod host;
mod random;

use std::fmt;

pub use compare::{
    Disagreement, HostRunner, Report, compare, compare_cases, format_disagreement, host_profile,
    host_release, host_support, known_difference,
};
pub use fixed::fixed_cases;
pub use random::{Geometry, HOST, random_case, random_case_for, random_cases};

/// x86-64 page size (the only host the comparison runs on).
pub const PAGE: u64 = 4096;
/// `TASK_SIZE_MAX` on x86-64 with 4-level paging.
pub const TASK_SIZE_MAX: u64 = (1 << 47) - PAGE;
/// Size of the emulated block device and of the host loop device.
pub const BDEV_SIZE: u64 = 2 << 20;

/// What one page of a region is when the syscall runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PageKind {
    /// Written (present), `PROT_READ|PROT_WRITE`.
    Rw,
    /// Written, then `PROT_READ`.
    Ro,
    /// Written, then `PROT_NONE`.
    None,
    /// Unmapped (a hole punched with `munmap`).
    Hole,
    /// `PROT_READ|PROT_WRITE`, never touched (not present, reads as zero).
    Untouched,
}

impl PageKind {
    fn tag(self) -> char {
        match self {
            PageKind::Rw => 'w',
            PageKind::Ro => 'r',
            PageKind::None => 'n',
            PageKind::Hole => '_',
            PageKind::Untouched => 'u',
        }
    }
    /// Whether the page can be read back after the call.
    #[must_use]
    pub fn readable(self) -> bool {
        matches!(self, PageKind::Rw | PageKind::Ro | PageKind::Untouched)
    }
}

/// An address in a case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Addr {
    /// Offset `off` into region `r`.
    Region(usize, u64),
    /// A fixed address no process maps (NULL, `TASK_SIZE_MAX`+, kernel).
    Abs(u64),
}

/// One iovec of a case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Seg {
    /// `iov_base`.
    pub addr: Addr,
    /// `iov_len`.
    pub len: u64,
}

/// The syscall of a case.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Op {
    /// `readv` of a pipe's read end after `fill` writes.
    Readv,
    /// `writev` to a pipe's write end after `fill` writes.
    Writev,
    /// `vmsplice` to a pipe's write end (`SPLICE_F_NONBLOCK`).
    VmspliceToPipe,
    /// `vmsplice` from a pipe's read end into user memory.
    VmspliceToUser,
    /// `process_vm_readv` on the own process: `remote` → `iov`.
    ProcessVmReadv {
        /// The remote iovecs.
        remote: Vec<Seg>,
        /// `flags`.
        flags: u64,
    },
    /// `process_vm_writev` on the own process: `iov` → `remote`.
    ProcessVmWritev {
        /// The remote iovecs.
        remote: Vec<Seg>,
        /// `flags`.
        flags: u64,
    },
    /// `preadv` of a file of `size` bytes.
    Preadv {
        /// File size.
        size: u64,
        /// Position.
        pos: i64,
    },
    /// `pwritev` to a file of `size` bytes.
    Pwritev {
        /// File size.
        size: u64,
        /// Position.
        pos: i64,
    },
    /// `preadv` of the block device opened `O_DIRECT`.
    PreadvDirect {
        /// Position.
        pos: i64,
    },
    /// `pwritev` to the block device opened `O_DIRECT`.
    PwritevDirect {
        /// Position.
        pos: i64,
    },
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Readv => "readv",
            Op::Writev => "writev",
            Op::VmspliceToPipe => "vmsplice(to pipe)",
            Op::VmspliceToUser => "vmsplice(to user)",
            Op::ProcessVmReadv { .. } => "process_vm_readv",
            Op::ProcessVmWritev { .. } => "process_vm_writev",
            Op::Preadv { .. } => "preadv",
            Op::Pwritev { .. } => "pwritev",
            Op::PreadvDirect { .. } => "preadv(O_DIRECT)",
            Op::PwritevDirect { .. } => "pwritev(O_DIRECT)",
        }
    }
    /// Whether the case needs the block device.
    #[must_use]
    pub fn needs_bdev(&self) -> bool {
        matches!(self, Op::PreadvDirect { .. } | Op::PwritevDirect { .. })
    }
    /// Whether the case uses a pipe.
    #[must_use]
    pub fn uses_pipe(&self) -> bool {
        matches!(
            self,
            Op::Readv | Op::Writev | Op::VmspliceToPipe | Op::VmspliceToUser
        )
    }
}

/// One differential case.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Case {
    /// A short name (fixed table) or `random#N`.
    pub name: String,
    /// The user regions: each an mmap of `len()` pages.
    pub regions: Vec<Vec<PageKind>>,
    /// Sizes of the plain `write`s put into the pipe first.
    pub fill: Vec<u64>,
    /// The (local) iovec array.
    pub iov: Vec<Seg>,
    /// The call.
    pub op: Op,
}

/// What a run of a case gave.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Outcome {
    /// Bytes, or `-errno`.
    pub ret: i64,
    /// Every readable page of every region, in order.
    pub mem: Vec<u8>,
    /// The pipe's bytes, the file, or the device afterwards.
    pub after: Vec<u8>,
}

/// The byte user page memory holds before a call: region `r`, offset `off`.
#[must_use]
pub fn user_byte(r: usize, off: u64) -> u8 {
    (r as u64 * 31 + off * 13 + 1) as u8
}

/// The byte of the `k`-th fill write at offset `off`.
#[must_use]
pub fn fill_byte(k: usize, off: u64) -> u8 {
    (0xa0 + k as u64 + off * 3) as u8
}

/// The byte a fresh file or device holds at `off` (the emulator's page
/// cache pattern).
#[must_use]
pub fn file_byte(off: u64) -> u8 {
    vmemu_iter::syscalls::pattern_byte(off, PAGE)
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.op.name())?;
        for (i, r) in self.regions.iter().enumerate() {
            let s: String = r.iter().map(|k| k.tag()).collect();
            write!(f, " R{i}=[{s}]")?;
        }
        if !self.fill.is_empty() {
            write!(f, " fill={:?}", self.fill)?;
        }
        write!(f, " iov={}", segs_str(&self.iov))?;
        match &self.op {
            Op::ProcessVmReadv { remote, flags } | Op::ProcessVmWritev { remote, flags } => {
                write!(f, " remote={}", segs_str(remote))?;
                if *flags != 0 {
                    write!(f, " flags={flags}")?;
                }
            }
            Op::Preadv { size, pos } | Op::Pwritev { size, pos } => {
                write!(f, " size={size} pos={pos}")?;
            }
            Op::PreadvDirect { pos } | Op::PwritevDirect { pos } => write!(f, " pos={pos}")?,
            _ => {}
        }
        Ok(())
    }
}

fn segs_str(v: &[Seg]) -> String {
    if v.len() > 8 {
        let tot = v.iter().fold(0u64, |a, s| a.wrapping_add(s.len));
        return format!(
            "[{} segs, first {}, len sum {tot:#x}]",
            v.len(),
            seg_str(&v[0])
        );
    }
    let parts: Vec<String> = v.iter().map(seg_str).collect();
    format!("[{}]", parts.join(", "))
}

fn seg_str(s: &Seg) -> String {
    match s.addr {
        Addr::Region(r, off) => format!("R{r}+{off:#x}:{:#x}", s.len),
        Addr::Abs(a) => format!("{a:#x}:{:#x}", s.len),
    }
}

/// Formats a return value the way transcripts do.
#[must_use]
pub fn fmt_ret(v: i64) -> String {
    crate::run::fmt_ret(v)
}

fn seg(r: usize, off: u64, len: u64) -> Seg {
    Seg {
        addr: Addr::Region(r, off),
        len,
    }
}

fn abs(a: u64, len: u64) -> Seg {
    Seg {
        addr: Addr::Abs(a),
        len,
    }
}

// ----------------------------------------------------------------------
// `vmemu diff-host`
// ----------------------------------------------------------------------

/// Options of `vmemu diff-host`.
#[derive(clap::Args, Debug, Clone)]
pub struct DiffHostArgs {
    /// Random cases to run after the fixed table.
    #[arg(long, default_value_t = 1000)]
    pub cases: usize,
    /// Seed of the random cases (printed first; also read from VMEMU_SEED).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip the fixed table.
    #[arg(long)]
    pub no_table: bool,
    /// Do not set up a loop device (the O_DIRECT cases are then skipped).
    #[arg(long)]
    pub no_bdev: bool,
    /// Print every case, not only disagreements.
    #[arg(long)]
    pub verbose: bool,
}

/// The seed of a differential run: `--seed`, else `VMEMU_SEED`, else the
/// clock (printed, so the run can be replayed). Shared by `diff-host` and
/// `diff-kernel`.
pub(crate) fn resolve_seed(seed: Option<u64>) -> Result<u64, String> {
    Ok(match seed {
        Some(s) => s,
        None => match std::env::var("VMEMU_SEED") {
            Ok(v) => v
                .parse()
                .map_err(|_| format!("VMEMU_SEED must be a number, found `{v}`"))?,
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs()),
        },
    })
}

/// Runs `vmemu diff-host`: `Ok(true)` when every compared case agrees.
/// Where the host cannot run the cases, says why on stderr and succeeds.
pub fn main(args: &DiffHostArgs) -> Result<bool, String> {
    let seed = resolve_seed(args.seed)?;
    println!(
        "seed {seed} (replay: vmemu diff-host --cases {} --seed {seed}); host kernel {}, emulated {}",
        args.cases,
        host_release(),
        host_profile()
    );
    let mut host = match HostRunner::new(!args.no_bdev) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("diff-host: skipped: {why}");
            println!("0 agree, 0 disagree, 0 skipped (host not supported: {why})");
            return Ok(true);
        }
    };
    if let Some(why) = &host.bdev_skip {
        eprintln!("diff-host: O_DIRECT cases skipped: {why}");
    }
    let mut cases = if args.no_table {
        Vec::new()
    } else {
        fixed_cases()
    };
    cases.extend(random_cases(seed, args.cases));
    let rep = compare_cases(&mut host, &cases, |_| {});
    if args.verbose {
        for (c, (_, h, e, agreed)) in cases
            .iter()
            .filter(|c| !c.op.needs_bdev() || host.bdev_skip.is_none())
            .zip(&rep.log)
        {
            let mark = if *agreed { "agree" } else { "DIFFER" };
            println!(
                "{c}\n  host {}, emulator {}: {mark}",
                fmt_ret(*h),
                fmt_ret(*e)
            );
        }
    }
    if args.verbose {
        for (d, why) in &rep.known {
            println!("KNOWN ({why})\n{}", format_disagreement(d));
        }
    }
    for d in &rep.disagreements {
        println!("{}", format_disagreement(d));
    }
    println!("{}", rep.summary());
    Ok(rep.disagreements.is_empty())
}
