//! The host differential: the same syscall case run on the host kernel (real
//! `mmap`/`mprotect`/`munmap` in this process, real pipes, `process_vm_*` on
//! its own pid, a memfd, a loop device with 512-byte blocks) and on the
//! emulator (x86_64, v6.13), comparing the return value (or errno), the
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

pub mod emu;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod host;

use std::fmt::{self, Write as _};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
    fn uses_pipe(&self) -> bool {
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

// ----------------------------------------------------------------------
// The fixed table
// ----------------------------------------------------------------------

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

fn case(name: &str, regions: &[&str], fill: &[u64], iov: Vec<Seg>, op: Op) -> Case {
    Case {
        name: name.to_string(),
        regions: regions
            .iter()
            .map(|s| {
                s.chars()
                    .map(|c| match c {
                        'w' => PageKind::Rw,
                        'r' => PageKind::Ro,
                        'n' => PageKind::None,
                        '_' => PageKind::Hole,
                        _ => PageKind::Untouched,
                    })
                    .collect()
            })
            .collect(),
        fill: fill.to_vec(),
        iov,
        op,
    }
}

/// The fixed table of cases.
#[must_use]
pub fn fixed_cases() -> Vec<Case> {
    use Op::*;
    let p = PAGE;
    let full: Vec<u64> = vec![p; 16];
    let mut v = vec![
        // readv on a pipe
        case("readv/whole", &["ww"], &[p], vec![seg(0, 0, p)], Readv),
        case("readv/empty-pipe", &["w"], &[], vec![seg(0, 0, 100)], Readv),
        case(
            "readv/zero-count",
            &["w"],
            &[100],
            vec![seg(0, 0, 0)],
            Readv,
        ),
        case("readv/no-segments", &["w"], &[100], vec![], Readv),
        case(
            "readv/fault-in-first-buffer",
            &["w_"],
            &[p],
            vec![seg(0, p - 100, 200)],
            Readv,
        ),
        case(
            "readv/fault-in-second-buffer",
            &["ww_"],
            &[p, p],
            vec![seg(0, 0, 3 * p)],
            Readv,
        ),
        case(
            "readv/ro-destination",
            &["r"],
            &[100],
            vec![seg(0, 0, 100)],
            Readv,
        ),
        case(
            "readv/prot-none-destination",
            &["wn"],
            &[p],
            vec![seg(0, p / 2, p)],
            Readv,
        ),
        case(
            "readv/untouched-destination",
            &["uu"],
            &[p, 100],
            vec![seg(0, 10, 2 * p)],
            Readv,
        ),
        case(
            "readv/zero-length-segments",
            &["ww"],
            &[300],
            vec![
                seg(0, 0, 0),
                abs(0, 0),
                seg(0, 5, 100),
                seg(0, 0, 0),
                seg(0, p + 7, 300),
            ],
            Readv,
        ),
        case(
            "readv/1025-segments",
            &["w"],
            &[100],
            vec![seg(0, 0, 1); 1025],
            Readv,
        ),
        case(
            "readv/1024-segments",
            &["w"],
            &[100],
            vec![seg(0, 0, 1); 1024],
            Readv,
        ),
        case(
            "readv/kernel-address",
            &["w"],
            &[100],
            vec![seg(0, 0, 10), abs(0xffff_8880_0000_0000, 10)],
            Readv,
        ),
        case(
            "readv/crosses-task-size",
            &["w"],
            &[100],
            vec![seg(0, 0, 10), abs(TASK_SIZE_MAX - 16, 32)],
            Readv,
        ),
        case(
            "readv/ends-at-task-size",
            &["w"],
            &[100],
            vec![abs(TASK_SIZE_MAX - 16, 16)],
            Readv,
        ),
        case(
            "readv/negative-length",
            &["w"],
            &[100],
            vec![seg(0, 0, 10), seg(0, 0, u64::MAX)],
            Readv,
        ),
        case(
            "readv/sum-overflows-ssize",
            &["w"],
            &[100],
            vec![seg(0, 0, 1 << 62), seg(0, 0, 1 << 62), seg(0, 0, 1 << 62)],
            Readv,
        ),
        case(
            "readv/full-pipe",
            &["wwww"],
            &full,
            vec![seg(0, 0, 4 * p)],
            Readv,
        ),
        // writev on a pipe
        case("writev/small", &["w"], &[], vec![seg(0, 0, 100)], Writev),
        case("writev/merge", &["w"], &[100], vec![seg(0, 0, 200)], Writev),
        case(
            "writev/merge-fault",
            &["w_"],
            &[100],
            vec![seg(0, p - 50, 100)],
            Writev,
        ),
        case(
            "writev/page-fault-mid-chunk",
            &["ww_"],
            &[],
            vec![seg(0, 100, 2 * p + 100)],
            Writev,
        ),
        case(
            "writev/fault-first-chunk",
            &["w_"],
            &[],
            vec![seg(0, p / 2, p)],
            Writev,
        ),
        case(
            "writev/fault-then-retry",
            &["w_w"],
            &[],
            vec![seg(0, 0, p + 10), seg(0, 2 * p, 10)],
            Writev,
        ),
        case(
            "writev/prot-none-source",
            &["nw"],
            &[],
            vec![seg(0, 0, 2 * p)],
            Writev,
        ),
        case(
            "writev/ro-source",
            &["rr"],
            &[],
            vec![seg(0, 1, p + 5)],
            Writev,
        ),
        case(
            "writev/full-pipe",
            &["w"],
            &full,
            vec![seg(0, 0, 10)],
            Writev,
        ),
        case(
            "writev/fills-pipe",
            &["wwww"],
            &[p; 14],
            vec![seg(0, 0, 4 * p)],
            Writev,
        ),
        case(
            "writev/untouched-source",
            &["uu"],
            &[],
            vec![seg(0, 0, 2 * p)],
            Writev,
        ),
        case(
            "writev/1025-segments",
            &["w"],
            &[],
            vec![seg(0, 0, 1); 1025],
            Writev,
        ),
        // vmsplice
        case(
            "vmsplice/two-pages",
            &["ww"],
            &[],
            vec![seg(0, 100, p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/hole",
            &["w_w"],
            &[],
            vec![seg(0, 0, 3 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/first-page-hole",
            &["_w"],
            &[],
            vec![seg(0, 0, 2 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/prot-none",
            &["wn"],
            &[],
            vec![seg(0, 0, 2 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/ro-source",
            &["r"],
            &[],
            vec![seg(0, 0, p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/full",
            &["w"],
            &full,
            vec![seg(0, 0, 10)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/nearly-full",
            &["wwww"],
            &[p; 14],
            vec![seg(0, 0, 4 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/17-pages",
            &["wwwwwwwwwwwwwwwww"],
            &[],
            vec![seg(0, 0, 17 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/to-user",
            &["ww"],
            &[100, p],
            vec![seg(0, 0, 2 * p)],
            VmspliceToUser,
        ),
        case(
            "vmsplice/to-user-fault",
            &["w_"],
            &[p, p],
            vec![seg(0, 10, 2 * p)],
            VmspliceToUser,
        ),
        case(
            "vmsplice/to-user-empty",
            &["w"],
            &[],
            vec![seg(0, 0, 10)],
            VmspliceToUser,
        ),
        case(
            "vmsplice/to-user-empty-buffer-at-head",
            &["w"],
            &[0, p],
            vec![seg(0, 0, 200)],
            VmspliceToUser,
        ),
        case(
            "readv/empty-buffer-at-head",
            &["w"],
            &[0, p],
            vec![seg(0, 0, 200)],
            Readv,
        ),
        case(
            "readv/only-empty-buffer",
            &["w"],
            &[0],
            vec![seg(0, 0, 200)],
            Readv,
        ),
        case(
            "writev/merges-into-empty-buffer",
            &["w"],
            &[0],
            vec![seg(0, 0, 100)],
            Writev,
        ),
        case(
            "writev/faulted-twice",
            &["w"],
            &[0, 0],
            vec![seg(0, 0, 100)],
            Writev,
        ),
        case(
            "writev/slot-taken-by-empty-buffer",
            &[&"w".repeat(16)],
            &[0],
            vec![seg(0, 0, 16 * p)],
            Writev,
        ),
        // process_vm_readv / writev
        case(
            "pvm_readv/simple",
            &["ww", "ww"],
            &[],
            vec![seg(0, 10, p)],
            ProcessVmReadv {
                remote: vec![seg(1, 100, p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/flags",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 10)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 10)],
                flags: 1,
            },
        ),
        case(
            "pvm_readv/remote-hole",
            &["www", "w_w"],
            &[],
            vec![seg(0, 0, 3 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 3 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-first-page-hole",
            &["ww", "_w"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 100, p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/local-fault-mid-page",
            &["w_", "ww"],
            &[],
            vec![seg(0, p - 300, 600)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/local-ro",
            &["wr", "ww"],
            &[],
            vec![seg(0, 100, p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-prot-none",
            &["ww", "wn"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-untouched",
            &["ww", "uu"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/local-1025",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 1); 1025],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 10)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-1025",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 10)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 1); 1025],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-1025-local-empty",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 0)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 1); 1025],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-sum-overflows",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 100)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 1 << 62), seg(1, 0, 1 << 62), seg(1, 0, 1 << 62)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-negative",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 100)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 10), seg(1, 0, 1 << 63)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-kernel",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            ProcessVmReadv {
                remote: vec![abs(0xffff_8880_0000_0000, 100)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-zero-lengths",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 100)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 0), abs(0, 0)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/many-remote-segments",
            &["ww", "www"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmReadv {
                remote: (0..40).map(|k| seg(1, k * 200 + 3, 150)).collect(),
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-batch-of-40-pages",
            &[&"w".repeat(40), &"w".repeat(40)],
            &[],
            vec![seg(0, 0, 40 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 40 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_writev/simple",
            &["ww", "ww"],
            &[],
            vec![seg(0, 10, p)],
            ProcessVmWritev {
                remote: vec![seg(1, 100, p)],
                flags: 0,
            },
        ),
        case(
            "pvm_writev/remote-ro",
            &["ww", "wr"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmWritev {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_writev/remote-hole",
            &["ww", "w_"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmWritev {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_writev/local-prot-none",
            &["wn", "ww"],
            &[],
            vec![seg(0, 50, p)],
            ProcessVmWritev {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        // preadv / pwritev on a file
        case(
            "preadv/simple",
            &["ww"],
            &[],
            vec![seg(0, 3, 5000)],
            Preadv {
                size: 3 * p,
                pos: 100,
            },
        ),
        case(
            "preadv/past-eof",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            Preadv { size: p, pos: 5000 },
        ),
        case(
            "preadv/short-at-eof",
            &["ww"],
            &[],
            vec![seg(0, 0, 2 * p)],
            Preadv {
                size: 5000,
                pos: 10,
            },
        ),
        case(
            "preadv/negative-pos",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            Preadv { size: p, pos: -1 },
        ),
        case(
            "preadv/fault-mid-page",
            &["w_"],
            &[],
            vec![seg(0, p - 123, 1000)],
            Preadv {
                size: 3 * p,
                pos: 0,
            },
        ),
        case(
            "preadv/fault-second-seg",
            &["w_"],
            &[],
            vec![seg(0, 0, 10), seg(0, p, 10)],
            Preadv { size: p, pos: 0 },
        ),
        case(
            "preadv/ro-destination",
            &["r"],
            &[],
            vec![seg(0, 0, 10)],
            Preadv { size: p, pos: 0 },
        ),
        case(
            "preadv/pos-overflow",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            Preadv {
                size: p,
                pos: i64::MAX - 10,
            },
        ),
        case(
            "pwritev/simple",
            &["ww"],
            &[],
            vec![seg(0, 3, 5000)],
            Pwritev {
                size: 3 * p,
                pos: 100,
            },
        ),
        case(
            "pwritev/extends",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            Pwritev {
                size: 1000,
                pos: 5000,
            },
        ),
        case(
            "pwritev/fault-mid-page",
            &["w_"],
            &[],
            vec![seg(0, p - 123, 1000)],
            Pwritev {
                size: 3 * p,
                pos: 7,
            },
        ),
        case(
            "pwritev/prot-none-first",
            &["nw"],
            &[],
            vec![seg(0, 0, 100)],
            Pwritev { size: p, pos: 0 },
        ),
        case(
            "pwritev/ro-source",
            &["r"],
            &[],
            vec![seg(0, 0, 100)],
            Pwritev { size: p, pos: 0 },
        ),
        case(
            "pwritev/untouched-source",
            &["u"],
            &[],
            vec![seg(0, 0, 100)],
            Pwritev { size: p, pos: 0 },
        ),
        // O_DIRECT on the block device
        case(
            "dio_read/aligned",
            &["ww"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PreadvDirect { pos: 512 },
        ),
        case(
            "dio_read/pos-unaligned",
            &["w"],
            &[],
            vec![seg(0, 0, 512)],
            PreadvDirect { pos: 100 },
        ),
        case(
            "dio_read/len-unaligned",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/addr-unaligned",
            &["ww"],
            &[],
            vec![seg(0, 100, 512)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/addr-512",
            &["ww"],
            &[],
            vec![seg(0, 512, 1024)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/seg-len-unaligned",
            &["ww"],
            &[],
            vec![seg(0, 0, 256), seg(0, p, 256)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/zero-len-unaligned-addr",
            &["ww"],
            &[],
            vec![seg(0, 0, 512), seg(0, 3, 0), seg(0, p, 512)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/hole",
            &["ww_w"],
            &[],
            vec![seg(0, 0, 4 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/first-page-hole",
            &["_w"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/ro-destination",
            &["wr"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/at-end",
            &["ww"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PreadvDirect {
                pos: (BDEV_SIZE - 512) as i64,
            },
        ),
        case(
            "dio_read/past-end",
            &["w"],
            &[],
            vec![seg(0, 0, 512)],
            PreadvDirect {
                pos: BDEV_SIZE as i64,
            },
        ),
        case(
            "dio_read/multi-bio-hole",
            &[&("w".repeat(280) + "_" + &"w".repeat(19))],
            &[],
            vec![seg(0, 0, 300 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/multi-bio",
            &[&"w".repeat(300)],
            &[],
            vec![seg(0, 0, 300 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_write/aligned",
            &["ww"],
            &[],
            vec![seg(0, 512, p)],
            PwritevDirect { pos: 1024 },
        ),
        case(
            "dio_write/hole",
            &["w_"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PwritevDirect { pos: 0 },
        ),
        case(
            "dio_write/prot-none",
            &["nw"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PwritevDirect { pos: 0 },
        ),
        case(
            "dio_write/past-end",
            &["w"],
            &[],
            vec![seg(0, 0, 512)],
            PwritevDirect {
                pos: BDEV_SIZE as i64,
            },
        ),
        case(
            "dio_write/clipped-at-end",
            &["ww"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PwritevDirect {
                pos: (BDEV_SIZE - 1024) as i64,
            },
        ),
        case(
            "dio_write/unaligned",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            PwritevDirect { pos: 0 },
        ),
    ];
    v.retain(|c| !c.name.is_empty());
    v
}

// ----------------------------------------------------------------------
// The random generator
// ----------------------------------------------------------------------

/// SplitMix64, to derive per-case seeds from (seed, index).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, v: &[T]) -> T {
    v[(rng.next_u64() % v.len() as u64) as usize]
}

fn rand_region(rng: &mut ChaCha8Rng, max_pages: u64) -> Vec<PageKind> {
    let n = 1 + rng.next_u64() % max_pages;
    (0..n)
        .map(|_| match rng.next_u64() % 10 {
            0 => PageKind::Ro,
            1 => PageKind::None,
            2 => PageKind::Hole,
            3 => PageKind::Untouched,
            _ => PageKind::Rw,
        })
        .collect()
}

fn rand_len(rng: &mut ChaCha8Rng, room: u64, block: bool) -> u64 {
    if block {
        return 512 * (rng.next_u64() % (room / 512 + 1));
    }
    let len = match rng.next_u64() % 8 {
        0 => 0,
        1 => 1 + rng.next_u64() % 16,
        2 => PAGE,
        3 => room,
        _ => rng.next_u64() % (room + 1),
    };
    // Never past the region: the host would touch its neighbours.
    len.min(room)
}

/// Random iovecs over `regions`: `block` keeps them 512-aligned; `remote`
/// leaves out fixed addresses below `TASK_SIZE_MAX` (a remote iovec is not
/// checked with `access_ok`, so the kernel would really touch them).
fn rand_segs(
    rng: &mut ChaCha8Rng,
    regions: &[Vec<PageKind>],
    block: bool,
    remote: bool,
    only: Option<usize>,
) -> Vec<Seg> {
    let n = match rng.next_u64() % 20 {
        0 => 0,
        1 => 1025,
        2 => 1024,
        _ => 1 + rng.next_u64() % 5,
    };
    if n >= 1024 {
        return vec![seg(only.unwrap_or(0), 0, rng.next_u64() % 2); n as usize];
    }
    (0..n)
        .map(|_| {
            if rng.next_u64().is_multiple_of(25) {
                return pick(
                    rng,
                    &[
                        abs(0, 0),
                        abs(0xffff_8880_0000_0000, 64),
                        if remote {
                            abs(TASK_SIZE_MAX, 16)
                        } else {
                            abs(TASK_SIZE_MAX - 8, 16)
                        },
                        abs(0x8000_0000_0000_0000, 8),
                        seg(0, 0, u64::MAX - 5),
                    ],
                );
            }
            let r = only.unwrap_or((rng.next_u64() % regions.len() as u64) as usize);
            let size = regions[r].len() as u64 * PAGE;
            let off = if block {
                512 * (rng.next_u64() % (size / 512))
            } else {
                match rng.next_u64() % 4 {
                    0 => 0,
                    1 => {
                        (rng.next_u64() % regions[r].len() as u64 + 1) * PAGE
                            - 1
                            - rng.next_u64() % 64
                    }
                    _ => rng.next_u64() % size,
                }
            };
            let len = rand_len(rng, size - off, block);
            seg(r, off, len)
        })
        .collect()
}

/// `n` random cases from `seed` (each case from its own derived seed, so
/// case `k` is the same whatever `n`).
#[must_use]
pub fn random_cases(seed: u64, n: usize) -> Vec<Case> {
    (0..n).map(|k| random_case(seed, k)).collect()
}

/// Random case number `k` of `seed`.
#[must_use]
pub fn random_case(seed: u64, k: usize) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(k as u64)));
    let kind = rng.next_u64() % 10;
    let block = kind >= 8;
    let nregions = if (4..=5).contains(&kind) {
        2
    } else {
        1 + rng.next_u64() % 2
    } as usize;
    let regions: Vec<Vec<PageKind>> = (0..nregions).map(|_| rand_region(&mut rng, 6)).collect();
    let aligned = block && rng.next_u64() % 8 != 0;
    // process_vm_*: local iovecs in region 0, remote ones in region 1 (two
    // processes never share memory; overlapping copies would depend on the
    // copy routine's direction).
    let pvm = (4..=5).contains(&kind);
    let iov = rand_segs(&mut rng, &regions, aligned, false, pvm.then_some(0));
    let fill = if kind < 4 {
        match rng.next_u64() % 6 {
            0 => vec![],
            1 => vec![1 + rng.next_u64() % 200],
            2 => vec![PAGE; (rng.next_u64() % 17) as usize],
            3 => {
                let mut f = vec![PAGE; (rng.next_u64() % 15) as usize];
                f.push(1 + rng.next_u64() % (PAGE - 1));
                f
            }
            _ => vec![PAGE, 1 + rng.next_u64() % 500],
        }
    } else {
        vec![]
    };
    let op = match kind {
        0 => Op::Readv,
        1 => Op::Writev,
        2 => Op::VmspliceToPipe,
        3 => Op::VmspliceToUser,
        4 | 5 => {
            let remote = rand_segs(&mut rng, &regions, false, true, Some(1));
            let flags = u64::from(rng.next_u64() % 30 == 0);
            if kind == 4 {
                Op::ProcessVmReadv { remote, flags }
            } else {
                Op::ProcessVmWritev { remote, flags }
            }
        }
        6 | 7 => {
            let size = pick(&mut rng, &[0, 100, PAGE, 3 * PAGE + 17, 5 * PAGE]);
            let pos = match rng.next_u64() % 6 {
                0 => 0,
                1 => -1,
                2 => size as i64,
                _ => (rng.next_u64() % (size + 2 * PAGE)) as i64,
            };
            if kind == 6 {
                Op::Preadv { size, pos }
            } else {
                Op::Pwritev { size, pos }
            }
        }
        _ => {
            let pos = match rng.next_u64() % 6 {
                0 => 0,
                1 => rng.random_range(0..BDEV_SIZE as i64),
                2 => BDEV_SIZE as i64 - 512,
                _ => 512 * rng.random_range(0..(BDEV_SIZE / 512) as i64),
            };
            if rng.next_u64() % 2 == 0 {
                Op::PreadvDirect { pos }
            } else {
                Op::PwritevDirect { pos }
            }
        }
    };
    let name = format!("random#{k}");
    let c = Case {
        name,
        regions,
        fill,
        iov,
        op,
    };
    debug_assert!(c.op.uses_pipe() || c.fill.is_empty());
    c
}

// ----------------------------------------------------------------------
// Comparison
// ----------------------------------------------------------------------

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
    // at it (the actor's 0 ends the splice). The host kernel leaves no such
    // buffer (observed: 16 page writes still fit after a faulting write);
    // the commit was not identified.
    if c.op.uses_pipe() && c.fill.contains(&0) {
        return Some(
            "post-6.13 pipe_write: no empty buffer left in the ring by a faulting write (observed; commit not identified)",
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

/// Runs `vmemu diff-host`: `Ok(true)` when every compared case agrees.
/// Where the host cannot run the cases, says why on stderr and succeeds.
pub fn main(args: &DiffHostArgs) -> Result<bool, String> {
    let seed = match args.seed {
        Some(s) => s,
        None => match std::env::var("VMEMU_SEED") {
            Ok(v) => v
                .parse()
                .map_err(|_| format!("VMEMU_SEED must be a number, found `{v}`"))?,
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs()),
        },
    };
    println!(
        "seed {seed} (replay: vmemu diff-host --cases {} --seed {seed}); host kernel {}",
        args.cases,
        host_release()
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
