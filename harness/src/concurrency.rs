//! `vmemu fuzz --concurrency`: seeded schedules of the real gup calls
//! (`get_user_pages_fast`, `__get_user_pages_fast`, `pin_user_pages_fast`,
//! `get_user_pages_unlocked`) with other tasks' operations run at their
//! preemption points (`vmemu_mm::preempt`): every gup-fast entry read and
//! re-read, the walker leaving its IRQ-off section, the slow path's retry
//! point. The other tasks munmap (in steps: clear the entries, then unlink
//! and free the tables — deferred while a walker is inside), mprotect,
//! madvise(MADV_DONTNEED), split THPs (a partial zap or mprotect of a huge
//! PMD), collapse them (`collapse_huge_page` in its two halves), fork and
//! break COW by writing, exit (`exit_mmap`), and run gup-fast walks of
//! their own. At the slow path's retry point (the caller holds `mmap_sem`
//! for read) only what takes it for read runs. A failing schedule is
//! shrunk: the shortest prefix of calls, then the fewest operations, that
//! still fail the same way.

mod sched;

use std::time::Instant;

use rayon::prelude::*;
use vmemu_arch::{ArchId, with_arch};
use vmemu_mm::{KernelProfile, Machine};

pub use sched::{Failure, ScheduleStats};

/// Main-task gup calls per schedule.
pub const CALLS: usize = 12;

/// The options of the `--concurrency` mode (built by `vmemu fuzz`).
#[derive(Clone, Debug)]
pub struct Options {
    /// Schedules.
    pub count: u64,
    /// Only this schedule.
    pub index: Option<u64>,
    /// Shard `k` of `n` (1-based).
    pub shard: (u64, u64),
    /// JSON output.
    pub json: bool,
    /// Stop starting chunks after this.
    pub deadline: Option<Instant>,
}

pub use crate::seed::splitmix64;

/// The seed of schedule `index` under base seed `base`.
#[must_use]
pub fn schedule_seed(base: u64, index: u64) -> u64 {
    splitmix64(base ^ splitmix64(index.wrapping_add(0xc0c0)))
}

/// Runs schedule `seed` on `arch` under `kernel` (invariants checked every
/// `check_every` preemption points; `broken` disables the table-freeing
/// deferral, to show the schedules catch it). A failure is not shrunk.
pub fn schedule(
    seed: u64,
    arch: ArchId,
    kernel: &KernelProfile,
    check_every: u64,
    broken: bool,
) -> Result<ScheduleStats, String> {
    run(
        seed,
        arch,
        kernel,
        check_every,
        broken,
        &sched::Plan::full(),
    )
    .map_err(|f| f.message)
}

fn run(
    seed: u64,
    arch: ArchId,
    kernel: &KernelProfile,
    check_every: u64,
    broken: bool,
    plan: &sched::Plan,
) -> Result<ScheduleStats, Failure> {
    let profile = kernel.clone();
    with_arch!(arch, A => {
        let mut m = Machine::<A>::new(profile, 64 << 20).map_err(|e| Failure::new(e.to_string()))?;
        m.break_table_deferral = broken;
        sched::run_schedule(&mut m, seed, check_every, plan)
    })
}

/// Runs schedule `seed` and, if it fails, shrinks it: the shortest prefix
/// of calls, then the fewest interleaved operations, with the same failure
/// kind. Returns the failure and the operations that remain.
pub fn schedule_shrunk(
    seed: u64,
    arch: ArchId,
    kernel: &KernelProfile,
    broken: bool,
) -> Result<ScheduleStats, (Failure, Vec<String>)> {
    let full = sched::Plan::full();
    let first = match run(seed, arch, kernel, 8, broken, &full) {
        Ok(s) => return Ok(s),
        Err(f) => f,
    };
    let fails = |p: &sched::Plan| {
        run(seed, arch, kernel, 8, broken, p)
            .err()
            .filter(|f| f.kind == first.kind)
    };
    let mut plan = full;
    for calls in 1..=CALLS {
        let p = sched::Plan {
            calls,
            ..plan.clone()
        };
        if fails(&p).is_some() {
            plan = p;
            break;
        }
    }
    let mut last = fails(&plan).unwrap_or_else(|| first.clone());
    // Drop interleaved operations one at a time, latest first.
    let mut i = last.ops_run;
    while i > 0 {
        i -= 1;
        let mut p = plan.clone();
        p.skip.insert(i);
        if let Some(f) = fails(&p) {
            plan = p;
            last = f;
        }
    }
    let trace = last.trace.clone();
    Err((last, trace))
}

#[derive(serde::Serialize)]
struct Summary {
    seed: String,
    shard: String,
    schedules: u64,
    calls: u64,
    interleaved_calls: u64,
    walks: u64,
    reads: Vec<u64>,
    preempted_reads: Vec<u64>,
    ops: u64,
    pages: u64,
    findings: u64,
    failed: u64,
    failures: Vec<String>,
    elapsed_ms: u64,
}

/// The `--concurrency` mode of `vmemu fuzz`.
pub fn main(
    seed: u64,
    opts: &Options,
    arches: &[ArchId],
    kernels: &[KernelProfile],
) -> Result<bool, String> {
    let started = Instant::now();
    let (k, n) = opts.shard;
    let indices: Vec<u64> = match opts.index {
        Some(i) => vec![i],
        None => (0..opts.count).filter(|i| i % n == k - 1).collect(),
    };
    let mut total = ScheduleStats::default();
    let mut failures = Vec::new();
    let mut ran = 0u64;
    for chunk in indices.chunks(64) {
        if opts.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let res: Vec<_> = chunk
            .par_iter()
            .map(|&i| {
                let a = arches[(i % arches.len() as u64) as usize];
                let kern =
                    kernels[((i / arches.len() as u64) % kernels.len() as u64) as usize].clone();
                let r = schedule_shrunk(schedule_seed(seed, i), a, &kern, false);
                (i, a, kern, r)
            })
            .collect();
        for (i, a, kern, r) in res {
            ran += 1;
            match r {
                Ok(s) => total.add(&s),
                Err((f, trace)) => failures.push(format!(
                    "schedule {i} on {a} under {kern}: {}\nshrunk to {} interleaved operation(s):\n  {}\nreplay: vmemu fuzz --concurrency --seed {seed:#x} --index {i} --arch {a} --kernel {kern}",
                    f.message,
                    trace.len(),
                    trace.join("\n  ")
                )),
            }
        }
    }
    print_summary(seed, opts, ran, &total, &failures, started);
    Ok(failures.is_empty())
}

fn print_summary(
    seed: u64,
    opts: &Options,
    ran: u64,
    total: &ScheduleStats,
    failures: &[String],
    started: Instant,
) {
    let (k, n) = opts.shard;
    let out = Summary {
        seed: format!("{seed:#x}"),
        shard: format!("{k}/{n}"),
        schedules: ran,
        calls: total.calls,
        interleaved_calls: total.interleaved_calls,
        walks: total.walks,
        reads: total.reads.to_vec(),
        preempted_reads: total.preempted.to_vec(),
        ops: total.ops,
        pages: total.pages,
        findings: total.findings,
        failed: failures.len() as u64,
        failures: failures.to_vec(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    if opts.json {
        println!("{}", crate::json::header());
        println!("{}", crate::json::typed("concurrency_report", &out));
        return;
    }
    for f in failures {
        println!("FAIL {f}");
    }
    let levels = |v: &[u64]| {
        v.iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(l, c)| format!("L{l} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "concurrency: {ran} schedules, {} gup calls ({} interleaved), {} gup-fast walks; entry reads reached: {}; preempted at: {}; {} operations of other tasks, {} pages taken, {} known-bug findings, {} failed in {:.1}s (seed {seed:#x}, shard {k}/{n})",
        total.calls,
        total.interleaved_calls,
        total.walks,
        levels(&total.reads),
        levels(&total.preempted),
        total.ops,
        total.pages,
        total.findings,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
}
