//! `vmemu report`: the 2017 thread's claims as generated outcome tables.
//!
//! Each [`Claim`] names the built-in workloads that test it and the
//! statements (by the variable they assign) whose outcomes matter. The
//! report runs those workloads on x86_64, arm64 and ppc64 under every
//! profile each workload declares and prints one markdown table per claim:
//! a row per statement, a column per (arch, profile), and a verdict column.
//!
//! The verdict comes from a per-row predicate, "does the claim hold in this
//! cell". A row whose predicate holds everywhere is `confirmed`, nowhere is
//! `refuted`, and otherwise `depends-on-arch`, `depends-on-profile` or
//! `depends-on-arch/profile`, whichever dimension the answer changes along.
//! A row with no predicate is `undecided`: the emulator shows the outcomes
//! but cannot judge the claim (it models no time, for example).
//!
//! `docs/thread.md` holds the tables between `<!-- claim:ID -->` and
//! `<!-- /claim:ID -->`; [`splice`] replaces them and leaves everything else
//! alone, and [`stale`] lists the sections that no longer match.

use std::collections::HashMap;

use rayon::prelude::*;
use vmemu_arch::ArchId;
use vmemu_mm::KernelProfile;
use vmemu_mm::profile::{GetPagesAlloc, GupFastRange, Knobs};

use crate::lang;
use crate::run::{self, Record, Run};
use crate::workloads::BUILTIN;

/// The outcome of one statement on one (arch, profile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Return value.
    pub ret: Option<i64>,
    /// Pages returned, by name.
    pub pages: Vec<String>,
    /// Events raised.
    pub events: Vec<String>,
    /// A caller model's I/O: (units, largest unit in bytes, gathering calls, arrays).
    pub io: Option<(usize, u64, u64, u64)>,
}

impl Cell {
    fn from_record(r: &Record) -> Self {
        Self {
            ret: r.ret,
            pages: r.pages.clone(),
            events: r.events.clone(),
            io: r.io.as_ref().map(|io| {
                (
                    io.units.len(),
                    io.units.iter().map(|u| u.bytes).max().unwrap_or(0),
                    io.get_pages_calls,
                    io.allocations,
                )
            }),
        }
    }

    /// Whether the statement raised an event of this kind.
    #[must_use]
    pub fn has(&self, event: &str) -> bool {
        self.events
            .iter()
            .any(|e| e.split([':', ' ']).next() == Some(event))
    }

    /// The gathering calls of a caller model (0 for other statements).
    #[must_use]
    pub fn gathers(&self) -> u64 {
        self.io.map_or(0, |io| io.2)
    }

    /// The markdown text of the cell.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = self.ret.map_or_else(|| "-".to_string(), run::fmt_ret);
        if !self.pages.is_empty() {
            if self.pages.len() <= 2 {
                s.push_str(&format!(" [{}]", self.pages.join(", ")));
            } else {
                s.push_str(&format!(" [{} pages]", self.pages.len()));
            }
        }
        if let Some((units, max, gathers, arrays)) = self.io {
            s.push_str(&format!(
                "; {units} unit{} (max {max} B), {gathers} gather{}, {arrays} arr",
                if units == 1 { "" } else { "s" },
                if gathers == 1 { "" } else { "s" }
            ));
        }
        let mut kinds: Vec<&str> = self
            .events
            .iter()
            .filter_map(|e| e.split([':', ' ']).next())
            .collect();
        kinds.dedup();
        for k in kinds {
            s.push_str(&format!("; **{k}**"));
        }
        s
    }
}

/// Whether a claim holds in one cell: (cell, arch, profile) -> holds.
pub type Holds = fn(&Cell, &str, &KernelProfile) -> bool;

/// The profiles a row is judged under, by their knobs.
pub type JudgeOn = fn(&Knobs) -> bool;

/// One row of a claim's table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Built-in workload name, without `.vmw`.
    pub workload: &'static str,
    /// The variable the statement assigns (`r` in `r = ...`).
    pub var: &'static str,
    /// What the row shows, in a few words.
    pub label: &'static str,
    /// The claim's rule for this row; `None`: the emulator cannot decide.
    pub holds: Option<Holds>,
    /// Judge only under the profiles whose knobs this accepts (`None`:
    /// all); other cells are shown for contrast.
    pub judge_on: Option<JudgeOn>,
}

/// A claim or question of the thread.
#[derive(Clone, Debug)]
pub struct Claim {
    /// Marker id in docs/thread.md.
    pub id: &'static str,
    /// Short title.
    pub title: &'static str,
    /// The statements to tabulate.
    pub rows: Vec<Row>,
}

impl Claim {
    /// The built-in workloads the claim runs, in first-use order.
    #[must_use]
    pub fn workloads(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = Vec::new();
        for r in &self.rows {
            if !v.contains(&r.workload) {
                v.push(r.workload);
            }
        }
        v
    }
}

const fn row(workload: &'static str, var: &'static str, label: &'static str, holds: Holds) -> Row {
    Row {
        workload,
        var,
        label,
        holds: Some(holds),
        judge_on: None,
    }
}

const fn row_on(
    workload: &'static str,
    var: &'static str,
    label: &'static str,
    judge_on: JudgeOn,
    holds: Holds,
) -> Row {
    Row {
        workload,
        var,
        label,
        holds: Some(holds),
        judge_on: Some(judge_on),
    }
}

const fn shown(workload: &'static str, var: &'static str, label: &'static str) -> Row {
    Row {
        workload,
        var,
        label,
        holds: None,
        judge_on: None,
    }
}

/// Profiles with a TASK_SIZE range check in gup-fast (Capper's patch, 6.x).
const WITH_CHECK: JudgeOn = |k| {
    matches!(
        k.gup_fast_range,
        GupFastRange::Capper | GupFastRange::TaskSizeMax
    )
};

/// Profiles without Layton's `iov_iter_get_pages_alloc` patch.
const WITHOUT_LAYTON: JudgeOn = |k| k.get_pages_alloc == GetPagesAlloc::FirstSegment;

/// Profiles with Layton's patch as posted.
const WITH_LAYTON: JudgeOn = |k| k.get_pages_alloc == GetPagesAlloc::LaytonPosted;

/// The claims, in the order of docs/thread.md.
#[must_use]
pub fn claims() -> Vec<Claim> {
    vec![
        Claim {
            id: "layton_motive",
            title: "Layton's motive: larger NFS/ceph I/Os from page-aligned iovecs",
            rows: vec![
                row_on(
                    "nfs_page_aligned_iovecs",
                    "r",
                    "NFS O_DIRECT write, 256 aligned 4 KiB iovecs: v4.10 already sends one 1 MiB RPC",
                    WITHOUT_LAYTON,
                    |c, _, _| c.io.is_some_and(|io| io.0 == 1 && io.1 == 1 << 20),
                ),
                row_on(
                    "nfs_page_aligned_iovecs",
                    "r",
                    "same, +layton: all 256 iovecs in one gathering call",
                    WITH_LAYTON,
                    |c, _, _| c.gathers() == 1,
                ),
                row(
                    "ceph_dio_iovec",
                    "r",
                    "ceph O_DIRECT write, 4 aligned 4 KiB iovecs: one OSD request",
                    |c, _, _| c.io.is_some_and(|io| io.0 == 1),
                ),
            ],
        },
        Claim {
            id: "ceph_softlockup",
            title: "vmsplice + splice to an O_DIRECT ceph file soft-locks",
            rows: vec![
                row(
                    "ceph_splice_softlockup",
                    "r",
                    "vmsplice 16 pages into the pipe",
                    |c, _, _| c.ret.is_some_and(|r| r > 0),
                ),
                row(
                    "ceph_splice_softlockup",
                    "w",
                    "splice the pipe to ceph O_DIRECT: soft lockup",
                    |c, _, _| c.has("soft_lockup"),
                ),
            ],
        },
        Claim {
            id: "for_each_page",
            title: "Viro: most iov_iter_get_pages callers are a loop over page ranges (iov_iter_for_each_page)",
            rows: vec![
                row(
                    "dio_zero_page",
                    "r2",
                    "do_direct_IO as a callback: same -EFAULT as r",
                    |c, _, _| c.ret == Some(-14),
                ),
                row(
                    "nfs_page_aligned_iovecs",
                    "r2",
                    "nfs_direct_write as a callback: all 1 MiB",
                    |c, _, _| c.ret == Some(1 << 20),
                ),
                row(
                    "skb_af_alg_frags",
                    "r3",
                    "zerocopy_sg_from_iter as a callback: same -EMSGSIZE",
                    |c, _, _| c.ret == Some(-90),
                ),
                row(
                    "fuse_direct_io",
                    "r3",
                    "fuse_get_user_pages as a callback: all 40 pages",
                    |c, a, _| c.ret == Some(40 * page_size(a)),
                ),
                row(
                    "iter_to_pipe_batches",
                    "r2",
                    "iter_to_pipe as a callback: 16 pages into the pipe",
                    |c, a, _| c.ret == Some(16 * page_size(a)),
                ),
                row(
                    "mmap_sem_callback",
                    "r",
                    "callbacks under mmap_sem with a queued writer: deadlock",
                    |c, _, _| c.has("deadlock"),
                ),
                row(
                    "mmap_sem_callback",
                    "r2",
                    "callbacks with no lock held (gup-fast batch): completes",
                    |c, a, _| c.ret == Some(4 * page_size(a)),
                ),
            ],
        },
        Claim {
            id: "bio_vec",
            title: "Hellwig: small block O_DIRECT must not allocate; on-stack bio_vecs",
            rows: vec![
                row(
                    "blkdev_dio_bio",
                    "r",
                    "3 x 4 KiB iovecs, blkdev write: inline bvecs, no array allocated",
                    |c, _, _| c.io.is_some_and(|io| io.3 == 0),
                ),
                row(
                    "blkdev_dio_bio",
                    "r",
                    "... and the whole 12 KiB written",
                    |c, _, _| c.ret == Some(12 << 10),
                ),
                row(
                    "blkdev_dio_bio",
                    "r3",
                    "one 64 KiB segment: no array allocated",
                    |c, _, _| c.io.is_some_and(|io| io.3 == 0),
                ),
                row(
                    "blkdev_dio_bio",
                    "r6",
                    "bio_iov_iter_get_pages over 3 bvecs: all three in one call",
                    |c, a, _| c.ret == Some(3 * page_size(a)),
                ),
            ],
        },
        Claim {
            id: "zero_page",
            title: "Direct-io zero page: iov_iter_get_pages called again for every pending page",
            rows: vec![
                row(
                    "dio_zero_page",
                    "r",
                    "8 pages of blocks pending, 4 KiB blocks: one gather per page and one more",
                    |c, _, _| c.gathers() > 2,
                ),
                row(
                    "dio_zero_page",
                    "r2",
                    "callback form: zero-fills pending blocks without re-gathering (at most 3 calls)",
                    |c, _, _| c.gathers() <= 3,
                ),
                row(
                    "dio_zero_page",
                    "r3",
                    "1 KiB blocks, extent ends inside a page: no extra call (3 calls)",
                    |c, _, _| c.gathers() == 3,
                ),
            ],
        },
        Claim {
            id: "batch",
            title: "Kara: batch cost is the page-table walk; only huge batches hurt (soft lockups, irq latency)",
            rows: vec![
                shown("fuse_direct_io", "r", "40 pages, one segment"),
                shown("fuse_direct_io", "r2", "40 pages, 40 segments"),
                shown("iter_to_pipe_batches", "r", "iter_to_pipe, batches of 16"),
                shown("blkdev_dio_bio", "r4", "2 MiB blkdev write"),
            ],
        },
        Claim {
            id: "page_mkwrite",
            title: "VM_FAULT_RETRY from ->page_mkwrite never reaches handle_mm_fault callers",
            rows: vec![
                row(
                    "page_mkwrite_retry",
                    "w",
                    "mkwrite returns RETRY: write succeeds, RETRY dropped (kernel_bug)",
                    |c, _, _| c.ret == Some(0) && c.has("kernel_bug"),
                ),
                row(
                    "page_mkwrite_retry",
                    "x",
                    "mkwrite returns SIGBUS (-ENOSPC): copy_to_user short",
                    |c, _, _| c.ret == Some(16),
                ),
                row(
                    "page_mkwrite_retry",
                    "y",
                    "same, gup-fast for write: -EFAULT",
                    |c, _, _| c.ret == Some(-14),
                ),
            ],
        },
        Claim {
            id: "gupf_zero",
            title: "get_user_pages_fast returns 0 only for zero pages",
            rows: vec![
                row(
                    "gup_fast_zero_and_alignment",
                    "z",
                    "get_user_pages_fast(buf, 0): 0",
                    |c, _, _| c.ret == Some(0),
                ),
                row(
                    "gup_fast_zero_and_alignment",
                    "zf",
                    "__get_user_pages_fast(buf, 0): 0",
                    |c, _, _| c.ret == Some(0),
                ),
                row(
                    "gup_fast_zero_and_alignment",
                    "n",
                    "get_user_pages_fast(kernel addr, 1): not 0",
                    |c, _, _| c.ret != Some(0),
                ),
                row(
                    "gup_fast_matrix",
                    "b",
                    "get_user_pages_fast(kernel addr, 2) under USER_DS: not 0",
                    |c, _, _| c.ret != Some(0),
                ),
                row(
                    "gup_fast_matrix",
                    "e",
                    "range straddling TASK_SIZE: not 0",
                    |c, _, _| c.ret != Some(0),
                ),
            ],
        },
        Claim {
            id: "alignment",
            title: "An unaligned start is harmless: fast path and fallback both return the page containing it",
            rows: vec![
                row(
                    "gup_fast_zero_and_alignment",
                    "u",
                    "buf + 123, pages present (fast path)",
                    |c, _, _| {
                        c.pages.len() == 2
                            && c.pages[0].ends_with("[0]")
                            && c.pages[1].ends_with("[1]")
                    },
                ),
                row(
                    "gup_fast_zero_and_alignment",
                    "s",
                    "lazy + 123, not faulted in (fallback)",
                    |c, _, _| {
                        c.pages.len() == 2
                            && c.pages[0].ends_with("[0]")
                            && c.pages[1].ends_with("[1]")
                    },
                ),
                row(
                    "gup_fast_zero_and_alignment",
                    "g",
                    "get_user_pages(lazy + PAGE_SIZE - 1, 2)",
                    |c, _, _| {
                        c.pages.len() == 2
                            && c.pages[0].ends_with("[0]")
                            && c.pages[1].ends_with("[1]")
                    },
                ),
            ],
        },
        Claim {
            id: "find_extend_vma",
            title: "Viro: gup-fast has no find_extend_vma, so under KERNEL_DS it can walk kernel addresses",
            rows: vec![
                row(
                    "kernel_ds_gup_fast",
                    "r",
                    "KERNEL_DS, get_user_pages_fast(kdirect(256), 2): pages returned",
                    |c, _, _| !c.pages.is_empty(),
                ),
                row(
                    "kernel_ds_gup_fast",
                    "f",
                    "KERNEL_DS, __get_user_pages_fast(kdirect(256), 2): pages returned",
                    |c, _, _| !c.pages.is_empty(),
                ),
            ],
        },
        Claim {
            id: "pte_allows_gup",
            title: "Torvalds: gup-fast cannot return kernel pages (pte_allows_gup needs _PAGE_USER)",
            rows: vec![
                row(
                    "kernel_ds_gup_fast",
                    "f",
                    "KERNEL_DS, __get_user_pages_fast(kdirect(256)): no pages",
                    |c, _, _| c.pages.is_empty(),
                ),
                row(
                    "gup_fast_matrix",
                    "b2",
                    "USER_DS, __get_user_pages_fast(kdirect(256)): no pages",
                    |c, _, _| c.pages.is_empty(),
                ),
            ],
        },
        Claim {
            id: "access_ok",
            title: "Torvalds: access_ok is a bogus range check for gup-fast (addr_limit is not TASK_SIZE)",
            rows: vec![
                row(
                    "kernel_ds_gup_fast",
                    "r",
                    "KERNEL_DS, kernel address: access_ok lets the walk run",
                    |c, _, _| !c.pages.is_empty(),
                ),
                row(
                    "gup_fast_matrix",
                    "dk2",
                    "KERNEL_DS, start = -PAGE_SIZE (wraps): 0",
                    |c, _, _| c.ret == Some(0),
                ),
                row(
                    "gup_fast_matrix",
                    "ek",
                    "KERNEL_DS, range past TASK_SIZE: walk runs",
                    |c, _, _| !c.pages.is_empty(),
                ),
                row(
                    "gup_fast_matrix",
                    "e2",
                    "USER_DS, range past TASK_SIZE: pages (ppc64 access_ok)",
                    |c, _, _| !c.pages.is_empty(),
                ),
            ],
        },
        Claim {
            id: "TASK_SIZE",
            title: "Capper: replace access_ok with a wrap-around + TASK_SIZE check",
            rows: vec![
                row_on(
                    "kernel_ds_gup_fast",
                    "r",
                    "KERNEL_DS, kernel address: -EFAULT",
                    WITH_CHECK,
                    |c, _, _| c.ret == Some(-14),
                ),
                row_on(
                    "kernel_ds_gup_fast",
                    "f",
                    "KERNEL_DS, kernel address, __gupf: no pages",
                    WITH_CHECK,
                    |c, _, _| c.pages.is_empty(),
                ),
                row_on(
                    "gup_fast_matrix",
                    "ek",
                    "KERNEL_DS, range past TASK_SIZE: no pages",
                    WITH_CHECK,
                    |c, _, _| c.pages.is_empty(),
                ),
                row_on(
                    "gup_fast_matrix",
                    "e2",
                    "USER_DS, range past TASK_SIZE: no pages",
                    WITH_CHECK,
                    |c, _, _| c.pages.is_empty(),
                ),
            ],
        },
        Claim {
            id: "fuse_deadlock",
            title: "Szeredi: a fuse server writing a reply from the faulting mapping deadlocks; abort breaks it",
            rows: vec![
                row(
                    "fuse_mmap_deadlock",
                    "w",
                    "server's fuse_dev_write from the locked page: deadlock",
                    |c, _, _| c.has("deadlock"),
                ),
                row(
                    "fuse_mmap_deadlock",
                    "a",
                    "umount -f (fuse_abort_conn): one request ended",
                    |c, _, _| c.ret == Some(1),
                ),
                row(
                    "fuse_mmap_deadlock",
                    "f2",
                    "the fault returns VM_FAULT_SIGBUS",
                    |c, _, _| c.ret == Some(2),
                ),
                row(
                    "fuse_mmap_deadlock",
                    "w2",
                    "the server's write returns -ENOENT",
                    |c, _, _| c.ret == Some(-2),
                ),
            ],
        },
        Claim {
            id: "fuse_abort",
            title: "Abort during the reply copy: FR_LOCKED closes the use-after-free window",
            rows: vec![
                row(
                    "fuse_abort_during_copy",
                    "w1",
                    "abort while gathering (not locked): no use after free",
                    |c, _, _| !c.has("use_after_free"),
                ),
                row(
                    "fuse_abort_during_copy",
                    "w2",
                    "abort during the copy, FR_LOCKED: no use after free",
                    |c, _, _| !c.has("use_after_free"),
                ),
                row(
                    "fuse_abort_during_copy",
                    "w3",
                    "copy_from_iter without FR_LOCKED: use after free (the window)",
                    |c, _, _| c.has("use_after_free"),
                ),
                row(
                    "fuse_abort_during_copy",
                    "w4",
                    "copy_from_iter, arguments kept alive: no use after free",
                    |c, _, _| !c.has("use_after_free"),
                ),
            ],
        },
    ]
}

fn page_size(arch: &str) -> i64 {
    arch.parse::<vmemu_arch::ArchId>()
        .map_or(4096, |a| a.page_size() as i64)
}

/// The verdict of one row or claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Holds on every arch and profile.
    Confirmed,
    /// Holds nowhere.
    Refuted,
    /// Holds on some arches only (the same on every profile).
    DependsOnArch,
    /// Holds under some profiles only (the same on every arch).
    DependsOnProfile,
    /// Changes with both.
    DependsOnArchProfile,
    /// The emulator shows the outcomes but cannot judge.
    Undecided,
    /// Some statements hold everywhere, others nowhere (claims only).
    Mixed,
}

impl Verdict {
    /// The word used in the tables.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Refuted => "refuted",
            Self::DependsOnArch => "depends-on-arch",
            Self::DependsOnProfile => "depends-on-profile",
            Self::DependsOnArchProfile => "depends-on-arch/profile",
            Self::Undecided => "undecided",
            Self::Mixed => "mixed",
        }
    }
}

/// One judged cell: (arch, profile, whether the claim holds there).
pub type Judged = (String, String, bool);

/// The verdict from (arch, profile, holds) triples.
#[must_use]
pub fn judge(cells: &[Judged]) -> Verdict {
    if cells.is_empty() {
        return Verdict::Undecided;
    }
    if cells.iter().all(|c| c.2) {
        return Verdict::Confirmed;
    }
    if cells.iter().all(|c| !c.2) {
        return Verdict::Refuted;
    }
    // Varies with arch: for some profile, two arches disagree.
    let varies = |same: &dyn Fn(&Judged, &Judged) -> bool| {
        cells
            .iter()
            .any(|a| cells.iter().any(|b| same(a, b) && a.2 != b.2))
    };
    let by_arch = varies(&|a, b| a.1 == b.1);
    let by_profile = varies(&|a, b| a.0 == b.0);
    match (by_arch, by_profile) {
        (true, false) => Verdict::DependsOnArch,
        (false, true) => Verdict::DependsOnProfile,
        _ => Verdict::DependsOnArchProfile,
    }
}

/// A claim's verdict from its rows' verdicts: the common one; else, when some
/// rows depend on arch or profile, the union of those dimensions (rows that
/// hold or fail everywhere do not change it); else undecided rows are
/// ignored, and confirmed beside refuted rows is `Mixed`.
#[must_use]
pub fn combine(rows: &[Verdict]) -> Verdict {
    let judged: Vec<Verdict> = rows
        .iter()
        .copied()
        .filter(|v| *v != Verdict::Undecided)
        .collect();
    let Some(first) = judged.first().copied() else {
        return Verdict::Undecided;
    };
    if judged.iter().all(|v| *v == first) {
        return first;
    }
    let arch = judged
        .iter()
        .any(|v| matches!(v, Verdict::DependsOnArch | Verdict::DependsOnArchProfile));
    let profile = judged
        .iter()
        .any(|v| matches!(v, Verdict::DependsOnProfile | Verdict::DependsOnArchProfile));
    match (arch, profile) {
        (true, true) => Verdict::DependsOnArchProfile,
        (true, false) => Verdict::DependsOnArch,
        (false, true) => Verdict::DependsOnProfile,
        (false, false) => Verdict::Mixed,
    }
}

/// Every run a claim needs: workload -> [(arch, profile, run)].
pub type Runs = HashMap<&'static str, Vec<(String, KernelProfile, Run)>>;

/// Runs the built-in workloads `names` on the three main arches under each
/// workload's profiles.
pub fn run_workloads(names: &[&'static str]) -> Result<Runs, String> {
    let mut jobs = Vec::new();
    for &n in names {
        let file = format!("{n}.vmw");
        let src = BUILTIN
            .iter()
            .find(|(f, _)| *f == file)
            .ok_or_else(|| format!("no built-in workload {n}"))?
            .1;
        let w = lang::parse(&file, src).map_err(|e| e.to_string())?;
        for arch in ArchId::MAIN {
            if !run::applies(&w, arch) {
                continue;
            }
            for k in run::default_kernels(&w) {
                jobs.push((n, w.clone(), arch, k));
            }
        }
    }
    let done: Vec<_> = jobs
        .into_par_iter()
        .map(|(n, w, arch, k)| {
            run::run(&w, arch, &k)
                .map(|r| (n, arch.name().to_string(), k, r))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let mut out: Runs = HashMap::new();
    for (n, a, k, r) in done {
        out.entry(n).or_default().push((a, k, r));
    }
    Ok(out)
}

/// The record of `var = ...` in a run.
pub(crate) fn find<'a>(run: &'a Run, var: &str) -> Option<&'a Record> {
    let prefix = format!("{var} = ");
    run.records
        .iter()
        .find(|r| r.op != "expect" && r.text.trim_start().starts_with(&prefix))
}

/// The generated markdown of one claim (what goes between its markers).
#[must_use]
pub fn render_claim(claim: &Claim, runs: &Runs) -> String {
    // Columns: arch-major, profiles in the order the workloads declare them.
    let mut cols: Vec<(String, KernelProfile)> = Vec::new();
    for arch in ArchId::MAIN {
        for w in claim.workloads() {
            for (a, k, _) in runs.get(w).into_iter().flatten() {
                let c = (a.clone(), k.clone());
                if a == arch.name() && !cols.contains(&c) {
                    cols.push(c);
                }
            }
        }
    }
    let mut s = String::new();
    s.push_str(&format!(
        "Generated by `vmemu report` (workloads: {}).\n\n",
        claim
            .workloads()
            .iter()
            .map(|w| format!("`{w}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str("| statement |");
    for (a, k) in &cols {
        s.push_str(&format!(" {a} {k} |"));
    }
    s.push_str(" verdict |\n|---|");
    for _ in &cols {
        s.push_str("---|");
    }
    s.push_str("---|\n");
    let mut verdicts = Vec::new();
    let mut failed = Vec::new();
    // Per row with `judge_on`: the profiles it is judged under, in column order.
    let mut judged_under: Vec<Vec<String>> = Vec::new();
    for r in &claim.rows {
        let mut under: Vec<String> = Vec::new();
        s.push_str(&format!("| `{}` {}: {} |", r.workload, r.var, r.label));
        let mut judged = Vec::new();
        for (a, k) in &cols {
            let cell = runs
                .get(r.workload)
                .and_then(|v| v.iter().find(|(ra, rk, _)| ra == a && rk == k))
                .map(|(_, _, run)| {
                    if !run.summary.passed {
                        let f = format!("{} {a} {k}", r.workload);
                        if !failed.contains(&f) {
                            failed.push(f);
                        }
                    }
                    find(run, r.var).map(Cell::from_record)
                });
            if cell.is_some()
                && r.judge_on.is_some_and(|f| f(&k.knobs))
                && !under.contains(&k.name())
            {
                under.push(k.name());
            }
            match cell {
                None => s.push_str(" · |"),
                Some(None) => s.push_str(" (not run) |"),
                Some(Some(c)) => {
                    s.push_str(&format!(" {} |", c.render()));
                    if let Some(h) = r.holds.filter(|_| r.judge_on.is_none_or(|f| f(&k.knobs))) {
                        judged.push((a.clone(), k.name(), h(&c, a, k)));
                    }
                }
            }
        }
        let v = if r.holds.is_some() {
            judge(&judged)
        } else {
            Verdict::Undecided
        };
        verdicts.push(v);
        judged_under.push(under);
        s.push_str(&format!(" {} |\n", v.word()));
    }
    let overall = combine(&verdicts).word();
    s.push_str(&format!(
        "\n`·`: the workload does not run under that profile. Claim verdict: **{overall}**.\n"
    ));
    for (i, (r, under)) in claim.rows.iter().zip(&judged_under).enumerate() {
        if r.judge_on.is_some() {
            s.push_str(&format!(
                "Row {} is judged under {} only; its other columns are for contrast.\n",
                i + 1,
                under.join(", ")
            ));
        }
    }
    if !failed.is_empty() {
        s.push_str(&format!(
            "\nWARNING: these runs failed their expects: {}.\n",
            failed.join(", ")
        ));
    }
    s
}

/// Every claim's generated section, by id.
pub fn generate() -> Result<Vec<(&'static str, String)>, String> {
    let cs = claims();
    let mut names = Vec::new();
    for c in &cs {
        for w in c.workloads() {
            if !names.contains(&w) {
                names.push(w);
            }
        }
    }
    let runs = run_workloads(&names)?;
    Ok(cs.iter().map(|c| (c.id, render_claim(c, &runs))).collect())
}

fn markers(id: &str) -> (String, String) {
    (
        format!("<!-- claim:{id} -->"),
        format!("<!-- /claim:{id} -->"),
    )
}

/// The text between a claim's markers in `doc`, if both are there.
#[must_use]
pub fn section<'a>(doc: &'a str, id: &str) -> Option<&'a str> {
    let (open, close) = markers(id);
    let a = doc.find(&open)? + open.len();
    let b = a + doc[a..].find(&close)?;
    Some(&doc[a..b])
}

/// `doc` with each claim's section replaced by `"\n" + text`; errors when a
/// marker pair is missing.
pub fn splice(doc: &str, sections: &[(&str, String)]) -> Result<String, String> {
    let mut out = doc.to_string();
    for (id, text) in sections {
        let (open, close) = markers(id);
        let a = out.find(&open).ok_or_else(|| format!("no {open} marker"))? + open.len();
        let b = a + out[a..]
            .find(&close)
            .ok_or_else(|| format!("no {close} marker after {open}"))?;
        out.replace_range(a..b, &format!("\n{text}"));
    }
    Ok(out)
}

/// Ids of the sections of `doc` that differ from `sections` (or are missing).
#[must_use]
pub fn stale(doc: &str, sections: &[(&str, String)]) -> Vec<String> {
    sections
        .iter()
        .filter(|(id, text)| section(doc, id) != Some(format!("\n{text}").as_str()))
        .map(|(id, _)| (*id).to_string())
        .collect()
}

/// Writes `sections` into the file `write`, or checks the file `check`
/// against them; `Ok(None)` when neither is asked, `Ok(Some(false))` when
/// `check` found stale sections.
pub fn write_or_check(
    secs: &[(&str, String)],
    write: Option<&std::path::Path>,
    check: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> Result<Option<bool>, String> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    if let Some(p) = write {
        let doc = splice(&read(p)?, secs)?;
        std::fs::write(p, doc).map_err(|e| format!("{}: {e}", p.display()))?;
        let _ = writeln!(out, "{}: {} tables written", p.display(), secs.len());
        return Ok(Some(true));
    }
    if let Some(p) = check {
        let bad = stale(&read(p)?, secs);
        if bad.is_empty() {
            let _ = writeln!(out, "{}: {} tables up to date", p.display(), secs.len());
        } else {
            let _ = writeln!(
                out,
                "{}: stale tables: {} (run `vmemu report{} --write {}`)",
                p.display(),
                bad.join(", "),
                if p.ends_with("bugs.md") {
                    " --bugs"
                } else {
                    ""
                },
                p.display()
            );
        }
        return Ok(Some(bad.is_empty()));
    }
    Ok(None)
}

/// `vmemu report`: prints, writes or checks; `Ok(false)` when `check` found
/// stale sections.
pub fn main(
    markdown: bool,
    write: Option<&std::path::Path>,
    check: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> Result<bool, String> {
    let secs = generate()?;
    if let Some(ok) = write_or_check(&secs, write, check, out)? {
        return Ok(ok);
    }
    let cs = claims();
    for ((id, text), c) in secs.iter().zip(&cs) {
        if markdown {
            let _ = writeln!(
                out,
                "### {}\n\n<!-- claim:{id} -->\n{text}<!-- /claim:{id} -->\n",
                c.title
            );
        } else {
            let verdict = text
                .split("Claim verdict: **")
                .nth(1)
                .and_then(|t| t.split("**").next())
                .unwrap_or("?");
            let _ = writeln!(out, "{id:<16} {verdict:<24} {}", c.title);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(a: &str, k: &str, h: bool) -> (String, String, bool) {
        (a.into(), k.into(), h)
    }

    #[test]
    fn judge_classifies_by_dimension() {
        assert_eq!(
            judge(&[t("x", "1", true), t("y", "1", true)]),
            Verdict::Confirmed
        );
        assert_eq!(
            judge(&[t("x", "1", false), t("y", "1", false)]),
            Verdict::Refuted
        );
        assert_eq!(
            judge(&[
                t("x", "1", true),
                t("y", "1", false),
                t("x", "2", true),
                t("y", "2", false)
            ]),
            Verdict::DependsOnArch
        );
        assert_eq!(
            judge(&[
                t("x", "1", true),
                t("y", "1", true),
                t("x", "2", false),
                t("y", "2", false)
            ]),
            Verdict::DependsOnProfile
        );
        assert_eq!(
            judge(&[
                t("x", "1", true),
                t("y", "1", false),
                t("x", "2", false),
                t("y", "2", false)
            ]),
            Verdict::DependsOnArchProfile
        );
    }

    #[test]
    fn splice_keeps_prose_and_is_idempotent() {
        let doc = "intro\n<!-- claim:a -->\nold\n<!-- /claim:a -->\nprose\n<!-- claim:b -->\n<!-- /claim:b -->\nend\n";
        let secs = vec![("a", "T1\n".to_string()), ("b", "T2\n".to_string())];
        let out = splice(doc, &secs).unwrap();
        assert_eq!(
            out,
            "intro\n<!-- claim:a -->\nT1\n<!-- /claim:a -->\nprose\n<!-- claim:b -->\nT2\n<!-- /claim:b -->\nend\n"
        );
        assert!(stale(&out, &secs).is_empty());
        assert_eq!(stale(doc, &secs), vec!["a", "b"]);
        assert_eq!(splice(&out, &secs).unwrap(), out);
        assert!(splice("no markers", &secs).is_err());
    }
}
