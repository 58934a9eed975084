//! The whole-program cases of `vmemu bench`: M1/M2 (the built-in matrix
//! on 1, 2 and all threads) and S1 (peak RSS of a sparse mapping, in a
//! child process).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use vmemu_arch::{Arch, ArchId, VirtAddr};
use vmemu_mm::{Backing, Machine, MapFlags, Prot};

use super::{BenchArgs, Den, Group, Row, Spec, Steps, fixtures, measure, median, ratio_row};
use crate::lang::{self, Workload};
use crate::run;
use crate::workloads::BUILTIN;

/// The built-in matrix's yardstick: KUnit `kunit_iov_iter` warm under UML.
const KUNIT_WARM_NS: f64 = 2.6e9;
/// M2's goal: the matrix on two threads at least 1.6 times as fast as on
/// one (1 / 1.6).
const M2_GOAL: f64 = 0.625;
/// S1's bound.
const S1_LIMIT: u64 = 64 << 20;
/// S1: the sparse mapping and how many of its pages are touched.
const S1_LEN: u64 = 1 << 40;
const S1_TOUCHED: u64 = 1000;

// ----------------------------------------------------------------------
// M: the built-in matrix
// ----------------------------------------------------------------------

/// The runs of the built-in matrix: (workload index, arch, profile).
type Plan = Vec<(usize, ArchId, vmemu_mm::KernelProfile)>;

struct MatrixGroup {
    ws: Vec<Workload>,
    plan: Plan,
    /// M1: the matrix in this process on a local pool of every CPU.
    all: (usize, rayon::ThreadPool),
    /// M2: this program, `vmemu matrix -j N`, as users run it.
    exe: std::path::PathBuf,
    /// The host's own parallelism beside M2: pools of 2 and 1 threads.
    compute: Vec<(usize, rayon::ThreadPool)>,
}

/// The matrix group's time per measurement per round, in units of `--ms`.
const MATRIX_MS_FACTOR: u64 = 10;

/// `vmemu matrix -j N` processes of M2 (2 threads, then 1).
const M2_JOBS: [usize; 2] = [2, 1];

fn pool(n: usize) -> Result<(usize, rayon::ThreadPool), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map(|p| (n, p))
        .map_err(|e| e.to_string())
}

impl MatrixGroup {
    fn plan() -> Result<(Vec<Workload>, Plan), String> {
        let ws: Vec<Workload> = BUILTIN
            .iter()
            .map(|(f, s)| lang::parse(f, s).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let mut plan = Vec::new();
        for (i, w) in ws.iter().enumerate() {
            for a in ArchId::MAIN {
                if run::applies(w, a) {
                    for k in run::default_kernels(w) {
                        plan.push((i, a, k));
                    }
                }
            }
        }
        Ok((ws, plan))
    }

    fn new(cores: usize) -> Result<Self, String> {
        let (ws, plan) = Self::plan()?;
        Ok(Self {
            ws,
            plan,
            all: pool(cores)?,
            exe: std::env::current_exe().map_err(|e| e.to_string())?,
            compute: vec![pool(2)?, pool(1)?],
        })
    }
}

/// One `vmemu matrix -j jobs` process, start to exit, its output to
/// `/dev/null` (text format: no terminal, so no progress bar and no color).
fn matrix_process(exe: &std::path::Path, jobs: usize) -> Result<Duration, String> {
    let t0 = Instant::now();
    let out = std::process::Command::new(exe)
        .args(["matrix", "-j", &jobs.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("vmemu matrix -j {jobs}: {e}"))?;
    let dt = t0.elapsed();
    if !out.status.success() {
        return Err(format!(
            "vmemu matrix -j {jobs} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dt)
}

/// The host's own parallelism, beside M2: the matrix's task shape (one task
/// per run) with pure arithmetic of about the same length per task.
fn compute_task(i: usize) -> u64 {
    let mut x = i as u64 | 1;
    for _ in 0..100_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    x
}

/// Measurement indices of [`MatrixGroup`]: M1 in process, then the M2
/// processes, then the host's compute pools.
const M1_AT: usize = 0;
const M2_AT: usize = 1;
const COMPUTE_AT: usize = M2_AT + M2_JOBS.len();

impl Group for MatrixGroup {
    fn labels(&self) -> Vec<String> {
        let mut v = vec![format!("matrix in process on {} threads", self.all.0)];
        v.extend(M2_JOBS.iter().map(|n| format!("vmemu matrix -j {n}")));
        v.extend(
            self.compute
                .iter()
                .map(|(n, _)| format!("compute on {n} threads")),
        );
        v
    }
    fn pass(&mut self, i: usize) -> Result<(Duration, u64), String> {
        let (ws, plan) = (&self.ws, &self.plan);
        if i >= COMPUTE_AT {
            let pool = &self.compute[i - COMPUTE_AT].1;
            pool.broadcast(|_| ());
            let t0 = Instant::now();
            let x: u64 = pool.install(|| {
                (0..plan.len())
                    .into_par_iter()
                    .map(compute_task)
                    .reduce(|| 0, u64::wrapping_add)
            });
            let dt = t0.elapsed();
            black_box(x);
            return Ok((dt, 1));
        }
        if i >= M2_AT {
            return Ok((matrix_process(&self.exe, M2_JOBS[i - M2_AT])?, 1));
        }
        // Wake every worker first (they sleep while the other measurements
        // run): the pass measures the matrix on running threads, not how
        // long the host takes to schedule a sleeping thread again.
        let pool = &self.all.1;
        pool.broadcast(|_| ());
        let t0 = Instant::now();
        let runs = pool.install(|| {
            plan.par_iter()
                .map(|(w, a, k)| run::run(&ws[*w], *a, k).map(|r| r.summary.passed))
                .collect::<Result<Vec<bool>, _>>()
        });
        let dt = t0.elapsed();
        let runs = runs.map_err(|e| e.to_string())?;
        if runs.iter().any(|p| !p) {
            return Err("a built-in workload failed during the matrix bench".into());
        }
        Ok((dt, 1))
    }
}

/// Runs the built-in matrix once, sequentially on the calling thread (for
/// instruction counts); returns the number of runs.
pub fn matrix_once() -> Result<usize, String> {
    let (ws, plan) = MatrixGroup::plan()?;
    for (w, a, k) in &plan {
        let r = run::run(&ws[*w], *a, k).map_err(|e| e.to_string())?;
        if !r.summary.passed {
            return Err(format!("{} on {a} under {k} failed", ws[*w].name));
        }
    }
    Ok(plan.len())
}

pub(super) fn matrix_rows(
    want: &dyn Fn(&str) -> bool,
    a: &BenchArgs,
    steps: &Steps,
) -> Result<Vec<Row>, String> {
    if !want("M1") && !want("M2") {
        return Ok(Vec::new());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = MatrixGroup::new(cores)?;
    steps.next(&format!(
        "the built-in matrix ({} runs) in process on {cores} threads, and `vmemu matrix -j 2` and `-j 1` processes",
        g.plan.len(),
    ));
    // A pass here is a whole matrix (20-45 ms): at `--ms` every measurement
    // would get one pass per round, and the fastest of one pass filters no
    // noise. Ten times `--ms` gives each a few passes per round, as every
    // other group gets.
    let per_round = Duration::from_millis(a.ms.saturating_mul(MATRIX_MS_FACTOR));
    let m = measure(&mut g, a.rounds as usize, per_round)?;
    let mut rows = Vec::new();
    if want("M1") {
        rows.push(ratio_row(
            &m,
            M1_AT,
            Den::Const(KUNIT_WARM_NS),
            Spec {
                case: "M1",
                arch: "host".into(),
                subject: format!("built-in matrix, {} runs on {cores} threads", g.plan.len()),
                yardstick: "KUnit kunit_iov_iter, UML warm (PERF.md)".into(),
                unit: "ns",
                goal: 0.05,
            },
        ));
    }
    if want("M2") {
        let host: Vec<f64> = m[COMPUTE_AT]
            .iter()
            .zip(&m[COMPUTE_AT + 1])
            .map(|(a, b)| a / b)
            .collect();
        let mut row = ratio_row(
            &m,
            M2_AT,
            Den::Meas(M2_AT + 1),
            Spec {
                case: "M2",
                arch: "host".into(),
                subject: "`vmemu matrix -j 2` process".into(),
                yardstick: "`vmemu matrix -j 1` process".into(),
                unit: "ns",
                // 1.6x faster on two threads.
                goal: M2_GOAL,
            },
        );
        row.note = Some(format!(
            "the host itself: pure arithmetic in the same task shape on 2 threads ÷ 1 thread = {:.3} (1.0: no second CPU was free)",
            median(&host)
        ));
        rows.push(row);
    }
    Ok(rows)
}

// ----------------------------------------------------------------------
// S1: sparse mapping, peak RSS in a child process
// ----------------------------------------------------------------------

/// Peak resident set size of this process (`VmHWM`), in bytes.
#[must_use]
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The S1 probe: a 1 TiB mapping, 1000 pages touched evenly across it.
pub(super) fn s1_probe<A: Arch>() -> Result<u64, String> {
    let mut m = Machine::<A>::new(fixtures::profile(), vmemu_mm::DEFAULT_PHYS_SIZE)
        .map_err(|e| e.to_string())?;
    let mm = m.current_mm();
    let base = m
        .mmap(
            mm,
            Some(VirtAddr(1 << 42)),
            S1_LEN,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "sparse",
        )
        .map_err(|e| format!("mmap 1 TiB: {e:?}"))?;
    let stride = (S1_LEN / S1_TOUCHED) & !(A::PAGE_SIZE - 1);
    for i in 0..S1_TOUCHED {
        m.put_user(i, base.wrapping_add(i * stride), 8)
            .map_err(|e| format!("touch {i}: {e:?}"))?;
    }
    for i in 0..S1_TOUCHED {
        if m.get_user(base.wrapping_add(i * stride), 8) != Ok(i) {
            return Err(format!("page {i} lost its value"));
        }
    }
    black_box(&m);
    peak_rss().ok_or_else(|| "no VmHWM in /proc/self/status".into())
}

pub(super) fn s1_rows(
    arches: &[ArchId],
    want: &dyn Fn(&str) -> bool,
    steps: &Steps,
) -> Result<Vec<Row>, String> {
    if !want("S1") {
        return Ok(Vec::new());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &arch in arches {
        steps.next(&format!("1 TiB sparse mapping on {arch} (child process)"));
        let out = std::process::Command::new(&exe)
            .args(["bench", "--s1-child", arch.name()])
            .output()
            .map_err(|e| format!("S1 child: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let bytes: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("peak_rss_bytes "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "S1 child on {arch} printed no figure: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let ratio = bytes as f64 / S1_LIMIT as f64;
        rows.push(Row {
            kind: "case",
            case: "S1".into(),
            arch: arch.to_string(),
            subject: format!("peak RSS, 1 TiB mapping, {S1_TOUCHED} pages touched"),
            subject_value: bytes as f64,
            yardstick: "64 MiB".into(),
            yardstick_value: S1_LIMIT as f64,
            unit: "bytes",
            ratio,
            goal: 1.0,
            pass: ratio <= 1.0,
            rounds: 1,
            note: None,
        });
    }
    Ok(rows)
}
