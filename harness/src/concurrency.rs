//! `vmemu fuzz --concurrency`: seeded schedules of step-wise gup-fast walks
//! interleaved with `munmap`, `mprotect` and `madvise(MADV_DONTNEED)` (see
//! `vmemu_mm::lockless` for the model and why it is the faithful test).

use std::time::Instant;

use rayon::prelude::*;
use vmemu_arch::{ArchId, with_arch};
use vmemu_mm::lockless::{ScheduleStats, run_schedule};
use vmemu_mm::{KernelProfile, Machine};

use crate::fuzz::{Dice, FuzzArgs, FuzzFormat, workload_seed};

/// Walks per schedule.
pub const WALKERS: usize = 12;

/// Runs schedule `seed` on `arch` under `kernel`; `broken` disables the
/// table-freeing deferral (to show the model catches it).
pub fn schedule(
    seed: u64,
    arch: ArchId,
    kernel: &KernelProfile,
    check_every: u64,
    broken: bool,
) -> Result<ScheduleStats, String> {
    let profile = kernel.clone();
    with_arch!(arch, A => {
        let mut m = Machine::<A>::new(profile, 64 << 20).map_err(|e| e.to_string())?;
        m.break_table_deferral = broken;
        let mut d = Dice::new(seed);
        run_schedule(&mut m, &mut |n| d.below(n), WALKERS, check_every)
    })
}

#[derive(serde::Serialize)]
struct Result_ {
    seed: String,
    shard: String,
    schedules: u64,
    walker_steps: u64,
    unmapper_ops: u64,
    walks: u64,
    pages: u64,
    failed: u64,
    failures: Vec<String>,
    elapsed_ms: u64,
}

/// The `--concurrency` mode of `vmemu fuzz`.
pub fn main(
    seed: u64,
    args: &FuzzArgs,
    arches: &[ArchId],
    kernels: &[KernelProfile],
    (k, n): (u64, u64),
    deadline: Option<Instant>,
) -> Result<bool, String> {
    let started = Instant::now();
    let indices: Vec<u64> = match args.index {
        Some(i) => vec![i],
        None => (0..args.count).filter(|i| i % n == k - 1).collect(),
    };
    let mut total = ScheduleStats::default();
    let mut failures = Vec::new();
    let mut ran = 0u64;
    for chunk in indices.chunks(64) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let res: Vec<(u64, ArchId, KernelProfile, Result<ScheduleStats, String>)> = chunk
            .par_iter()
            .map(|&i| {
                let a = arches[(i % arches.len() as u64) as usize];
                let kern =
                    kernels[((i / arches.len() as u64) % kernels.len() as u64) as usize].clone();
                let r = schedule(workload_seed(seed, i), a, &kern, 8, false);
                (i, a, kern, r)
            })
            .collect();
        for (i, a, kern, r) in res {
            ran += 1;
            match r {
                Ok(s) => {
                    total.walker_steps += s.walker_steps;
                    total.ops += s.ops;
                    total.walks += s.walks;
                    total.pages += s.pages;
                }
                Err(e) => failures.push(format!(
                    "schedule {i} on {a} under {kern}: {e}\nreplay: vmemu fuzz --concurrency --seed {seed:#x} --index {i} --arch {a} --kernel {kern}"
                )),
            }
        }
    }
    let out = Result_ {
        seed: format!("{seed:#x}"),
        shard: format!("{k}/{n}"),
        schedules: ran,
        walker_steps: total.walker_steps,
        unmapper_ops: total.ops,
        walks: total.walks,
        pages: total.pages,
        failed: failures.len() as u64,
        failures: failures.clone(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    if args.format == FuzzFormat::Json {
        println!("{}", serde_json::to_string(&out).unwrap_or_default());
    } else {
        for f in &failures {
            println!("FAIL {f}");
        }
        println!(
            "concurrency: {ran} schedules, {} gup-fast steps against {} concurrent munmap/mprotect/madvise/mmap, {} walks took {} pages, {} failed in {:.1}s (seed {seed:#x}, shard {k}/{n})",
            total.walker_steps,
            total.ops,
            total.walks,
            total.pages,
            failures.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(failures.is_empty())
}
