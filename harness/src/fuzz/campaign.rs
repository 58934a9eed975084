//! The `vmemu fuzz` command: a campaign over workload indices (shards, a
//! deadline), each failure and finding shrunk once per signature, the
//! counts, and `--replay`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use vmemu_arch::ArchId;
use vmemu_mm::KernelProfile;
use vmemu_mm::profile::Base;

use super::check::{Outcome, check_text};
use super::generator::{forks_by_default, generate_with};
use super::shrink::shrink;
use super::{
    FuzzArgs, FuzzFormat, parse_duration, parse_seed, parse_shard, splitmix64, workload_seed,
};
use crate::lang;
use crate::limits::Limits;

/// A failure found by the fuzzer, shrunk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Found {
    /// Workload index.
    pub index: u64,
    /// Its seed.
    pub seed: String,
    /// Arch.
    pub arch: String,
    /// Profile.
    pub kernel: String,
    /// A known-bug finding (`FIND`), not a failure (`FAIL`).
    pub finding: bool,
    /// Failure signature.
    pub signature: String,
    /// The first message (of the shrunk workload when there is one).
    pub message: String,
    /// The message of the workload as generated, before shrinking.
    #[serde(default)]
    pub unshrunk_message: String,
    /// The shrunk workload (empty for a repeat of a signature shrunk at a
    /// lower index).
    pub workload: String,
    /// Where it was written.
    pub file: Option<String>,
    /// The command that replays it.
    pub replay: String,
}

/// The `type` of a [`ShardResult`] record (`docs/json.md`).
pub const REPORT: &str = "fuzz_report";

/// One shard's result (`--format json` prints the header and one
/// `fuzz_report` record per shard; `vmemu fuzz merge` reads them back).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardResult {
    /// Base seed.
    pub seed: String,
    /// `K/N`.
    pub shard: String,
    /// Workloads run.
    pub workloads: u64,
    /// Passed.
    pub passed: u64,
    /// Rejected (script errors).
    pub rejected: u64,
    /// Failed (known-bug findings not counted).
    pub failed: u64,
    /// Known-bug findings ([`Outcome::Find`]).
    pub findings: u64,
    /// Arches and profiles used.
    pub arches: Vec<String>,
    /// Profiles.
    pub kernels: Vec<String>,
    /// Mutants of the built-in workloads (`--mutate`), not generated ones.
    #[serde(default)]
    pub mutate: bool,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
    /// The failures and findings, shrunk (the first of each signature).
    pub failures: Vec<Found>,
}

fn base_seed(args: &FuzzArgs) -> Result<u64, String> {
    if let Some(s) = &args.seed {
        return parse_seed(s);
    }
    if let Ok(s) = std::env::var("VMEMU_SEED") {
        return parse_seed(&s);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(splitmix64(t ^ u64::from(std::process::id())))
}

fn arches_of(v: &[String]) -> Result<Vec<ArchId>, String> {
    let mut out = Vec::new();
    for a in v {
        if a == "all" || a == "main" {
            out.extend(ArchId::MAIN);
        } else {
            out.push(a.parse::<ArchId>().map_err(|e| e.to_string())?);
        }
    }
    out.dedup();
    Ok(out)
}

/// The (arch, kernel) workload `i` runs on.
fn target(i: u64, arches: &[ArchId], kernels: &[KernelProfile]) -> (ArchId, KernelProfile) {
    let a = arches[(i % arches.len() as u64) as usize];
    let k = kernels[((i / arches.len() as u64) % kernels.len() as u64) as usize].clone();
    (a, k)
}

fn check_one(
    seed: u64,
    i: u64,
    arch: ArchId,
    kernel: &KernelProfile,
    (fork, mutate): (bool, bool),
    limits: &Limits,
) -> (Outcome, String) {
    let s = workload_seed(seed, i);
    let text = if mutate {
        super::mutate::mutant(s, i)
    } else {
        generate_with(s, kernel, fork || forks_by_default(kernel)).0
    };
    let file = format!("fuzz-{s:016x}.vmw");
    (check_text(&text, &file, arch, kernel, limits), text)
}

/// One workload's result in a campaign.
struct Checked {
    index: u64,
    outcome: Outcome,
    text: String,
    arch: ArchId,
    kernel: KernelProfile,
}

/// What the campaign runs: the parsed command line.
struct Plan {
    seed: u64,
    shard: (u64, u64),
    arches: Vec<ArchId>,
    kernels: Vec<KernelProfile>,
    deadline: Option<Instant>,
    json: bool,
    mutate: bool,
}

/// Runs the subcommand; `Ok(true)` when every check passed (findings do
/// not count against it).
pub fn main(args: &FuzzArgs) -> Result<bool, String> {
    let arches = arches_of(&args.arches)?;
    // Default: the oldest and the newest base.
    let kernels: Vec<KernelProfile> = if args.kernels.is_empty() {
        vec![
            KernelProfile::of_base(Base::oldest()),
            KernelProfile::newest(),
        ]
    } else {
        args.kernels.clone()
    };
    if let Some(super::FuzzAction::Merge { files, format }) = &args.action {
        return super::merge::main(files, *format);
    }
    if let Some(path) = &args.replay {
        return replay(path, &arches, &kernels, &args.limits);
    }
    let plan = Plan {
        seed: base_seed(args)?,
        shard: parse_shard(&args.shard)?,
        arches,
        kernels,
        deadline: match &args.time {
            Some(t) => Some(Instant::now() + parse_duration(t)?),
            None => None,
        },
        json: args.format == FuzzFormat::Json,
        mutate: args.mutate,
    };
    print_banner(&plan, args);
    if args.concurrency {
        let opts = crate::concurrency::Options {
            count: args.count,
            index: args.index,
            shard: plan.shard,
            json: plan.json,
            deadline: plan.deadline,
        };
        return crate::concurrency::main(plan.seed, &opts, &plan.arches, &plan.kernels);
    }
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs.unwrap_or(0))
        .build()
        .map_err(|e| {
            format!(
                "cannot start {} worker threads: {e}",
                args.jobs.unwrap_or(0)
            )
        })?;
    let results = pool.install(|| run_all(&plan, args));
    let result = tally(&plan, args, &results, started);
    if plan.json {
        println!("{}", crate::json::header());
        println!("{}", crate::json::typed(REPORT, &result));
    }
    Ok(result.failed == 0)
}

/// The seed first (on stderr for JSON: stdout stays JSON).
fn print_banner(plan: &Plan, args: &FuzzArgs) {
    let (seed, (k, n)) = (plan.seed, plan.shard);
    let banner = format!(
        "vmemu fuzz: seed {seed:#x} (replay with --seed {seed:#x} or VMEMU_SEED={seed:#x}), {} {}, shard {k}/{n}, arches {}, kernels {}",
        args.count,
        if args.concurrency {
            "schedules"
        } else {
            "workloads"
        },
        plan.arches
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(","),
        plan.kernels
            .iter()
            .map(KernelProfile::name)
            .collect::<Vec<_>>()
            .join(",")
    );
    if plan.json {
        eprintln!("{banner}");
    } else {
        println!("{banner}");
        let _ = std::io::stdout().flush();
    }
}

/// What a shard ran: the workloads that did not pass, in index order
/// (every workload with `--print`, which shows them all), and how many
/// ran. A pass is only counted, so a campaign's memory follows its
/// failures and findings, not its size.
struct Ran {
    kept: Vec<Checked>,
    total: usize,
}

impl Ran {
    /// The passes not kept.
    fn passes_dropped(&self) -> usize {
        self.total - self.kept.len()
    }
}

/// Checks the shard's workloads (in parallel, in chunks so that the
/// deadline check stays cheap and the results stay in index order).
fn run_all(plan: &Plan, args: &FuzzArgs) -> Ran {
    let (k, n) = plan.shard;
    let indices: Vec<u64> = match args.index {
        Some(i) => vec![i],
        None => (0..args.count).filter(|i| i % n == k - 1).collect(),
    };
    if let (true, Some(i)) = (args.print, args.index) {
        // One workload: show it before running it (a crash such as a stack
        // overflow cannot be caught and would lose it).
        let (a, kern) = target(i, &plan.arches, &plan.kernels);
        let fork = args.fork || forks_by_default(&kern);
        let text = if args.mutate {
            super::mutate::mutant(workload_seed(plan.seed, i), i)
        } else {
            generate_with(workload_seed(plan.seed, i), &kern, fork).0
        };
        println!("# workload {i} on {a} under {kern}\n{text}");
        let _ = std::io::stdout().flush();
    }
    let late = || plan.deadline.is_some_and(|d| Instant::now() >= d);
    let quiet = QuietPanics::new();
    let mut results = Ran {
        kept: Vec::new(),
        total: 0,
    };
    let bar =
        crate::progress::Bar::new("fuzz", indices.len() as u64, !plan.json).forced(args.progress);
    let (fails, finds) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut seen = std::collections::HashSet::new();
    for chunk in indices.chunks(256) {
        if late() {
            break;
        }
        let part: Vec<_> = chunk
            .par_iter()
            .map(|&i| {
                let (arch, kernel) = target(i, &plan.arches, &plan.kernels);
                if late() {
                    return None;
                }
                bar.start(&format!(
                    "seed {:#x}, workload {i} on {arch} under {kernel}; {} failures, {} findings",
                    plan.seed,
                    fails.load(Ordering::Relaxed),
                    finds.load(Ordering::Relaxed)
                ));
                let (outcome, text) = check_one(
                    plan.seed,
                    i,
                    arch,
                    &kernel,
                    (args.fork, args.mutate),
                    &args.limits,
                );
                match outcome {
                    Outcome::Fail(..) => fails.fetch_add(1, Ordering::Relaxed),
                    Outcome::Find(..) => finds.fetch_add(1, Ordering::Relaxed),
                    Outcome::Pass | Outcome::Rejected(_) => 0,
                };
                bar.inc();
                Some(Checked {
                    index: i,
                    outcome,
                    text,
                    arch,
                    kernel,
                })
            })
            .collect();
        for mut c in part.into_iter().flatten() {
            results.total += 1;
            if !args.print {
                // What `tally` reads of a result: the first line of a
                // rejection's error, and the workload only of the first
                // failure or finding of each signature (the one it shrinks);
                // the rest would hold a campaign's memory for nothing.
                match &mut c.outcome {
                    Outcome::Pass => continue,
                    Outcome::Rejected(e) => {
                        e.truncate(e.find('\n').unwrap_or(e.len()));
                        c.text = String::new();
                    }
                    Outcome::Fail(sig, _) | Outcome::Find(sig, _) => {
                        if !seen.insert(sig.clone()) {
                            c.text = String::new();
                        }
                    }
                }
            }
            results.kept.push(c);
        }
    }
    bar.start(&format!(
        "seed {:#x}, {} workloads; {} failures, {} findings (before shrinking)",
        plan.seed,
        results.total,
        fails.load(Ordering::Relaxed),
        finds.load(Ordering::Relaxed)
    ));
    bar.finish();
    drop(quiet);
    results
}

/// The first line of a script error, shortened: why a workload was rejected.
fn rejection_reason(e: &str) -> String {
    let first = e.lines().next().unwrap_or("");
    let why = first.splitn(4, ':').nth(3).unwrap_or(first).trim();
    why.split('`')
        .next()
        .unwrap_or(why)
        .chars()
        .take(60)
        .collect()
}

/// Counts the results, shrinks the first failure or finding of each
/// signature (the others are listed), prints them for people.
fn tally(plan: &Plan, args: &FuzzArgs, ran: &Ran, started: Instant) -> ShardResult {
    let (mut passed, mut rejected) = (ran.passes_dropped() as u64, 0);
    let results = &ran.kept;
    let mut reasons: std::collections::BTreeMap<String, u64> = Default::default();
    let mut failures: Vec<Found> = Vec::new();
    for c in results {
        if args.print && !plan.json && args.index.is_none() {
            println!(
                "# workload {} on {} under {}\n{}",
                c.index, c.arch, c.kernel, c.text
            );
        }
        let (finding, sig, msg) = match &c.outcome {
            Outcome::Pass => {
                passed += 1;
                continue;
            }
            Outcome::Rejected(e) => {
                rejected += 1;
                *reasons.entry(rejection_reason(e)).or_default() += 1;
                continue;
            }
            Outcome::Fail(sig, msg) => (false, sig, msg),
            Outcome::Find(sig, msg) => (true, sig, msg),
        };
        let f = if failures.iter().any(|f| f.signature == *sig) {
            repeated(plan, c, finding, sig, msg)
        } else {
            shrink_failure(plan.seed, c, finding, sig, msg, args)
        };
        if !plan.json {
            print_found(&f);
        }
        failures.push(f);
    }
    let (k, n) = plan.shard;
    let result = ShardResult {
        seed: format!("{:#x}", plan.seed),
        shard: format!("{k}/{n}"),
        workloads: ran.total as u64,
        passed,
        rejected,
        failed: failures.iter().filter(|f| !f.finding).count() as u64,
        findings: failures.iter().filter(|f| f.finding).count() as u64,
        arches: plan.arches.iter().map(|a| a.name().to_string()).collect(),
        kernels: plan.kernels.iter().map(KernelProfile::name).collect(),
        mutate: plan.mutate,
        elapsed_ms: started.elapsed().as_millis() as u64,
        failures,
    };
    if !plan.json {
        print_summary(&result, &reasons, started);
    }
    result
}

/// A failure or finding whose signature was shrunk already: listed with
/// the command that regenerates it.
pub(super) fn repeated_replay(seed: u64, i: u64, a: &str, kern: &str, mutate: bool) -> String {
    let m = if mutate { " --mutate" } else { "" };
    format!("vmemu fuzz --seed {seed:#x} --index {i} --arch {a} --kernel {kern}{m}")
}

fn repeated(plan: &Plan, c: &Checked, finding: bool, sig: &str, msg: &str) -> Found {
    let (seed, i, a, kern) = (plan.seed, c.index, c.arch, &c.kernel);
    Found {
        index: i,
        seed: format!("{:#x}", workload_seed(seed, i)),
        arch: a.name().into(),
        kernel: kern.name(),
        finding,
        signature: sig.to_string(),
        message: msg.to_string(),
        unshrunk_message: msg.to_string(),
        workload: String::new(),
        file: None,
        replay: repeated_replay(seed, i, a.name(), &kern.name(), plan.mutate),
    }
}

fn print_summary(
    result: &ShardResult,
    reasons: &std::collections::BTreeMap<String, u64>,
    started: Instant,
) {
    if let Some((why, c)) = reasons.iter().max_by_key(|(_, c)| **c) {
        println!(
            "rejected (script errors: the generated workload asked for something this arch or profile lacks), most often ({c}): {why}"
        );
    }
    println!(
        "fuzz: {} workloads, {} passed, {} rejected, {} failed{} in {:.1}s (seed {}, shard {})",
        result.workloads,
        result.passed,
        result.rejected,
        result.failed,
        if result.findings > 0 {
            format!(", {} known-bug findings", result.findings)
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64(),
        result.seed,
        result.shard
    );
}

/// Shrinks workload `c` keeping its outcome (failure or finding) and
/// signature, writes the small form to `--out` and says how to replay it.
fn shrink_failure(
    seed: u64,
    c: &Checked,
    finding: bool,
    sig: &str,
    msg: &str,
    args: &FuzzArgs,
) -> Found {
    let (i, a, kern) = (c.index, c.arch, &c.kernel);
    let same = |o: &Outcome| match o {
        Outcome::Fail(s, _) => !finding && s == sig,
        Outcome::Find(s, _) => finding && s == sig,
        Outcome::Pass | Outcome::Rejected(_) => false,
    };
    let quiet = QuietPanics::new();
    let mut pred = |t: &str| same(&check_text(t, "shrink.vmw", a, kern, &args.limits));
    let small = shrink(&c.text, &mut pred, 3000);
    let message = match check_text(&small, "shrink.vmw", a, kern, &args.limits) {
        Outcome::Fail(_, m) | Outcome::Find(_, m) => m,
        Outcome::Pass | Outcome::Rejected(_) => msg.to_string(),
    };
    drop(quiet);
    let ws = workload_seed(seed, i);
    let dir = args
        .out
        .clone()
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let path = dir.join(format!("vmemu-fuzz-{ws:016x}.vmw"));
    let file = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, &small))
        .ok()
        .map(|()| path.display().to_string());
    let replay = match &file {
        Some(p) => format!("vmemu fuzz --replay {p} --arch {a} --kernel {kern}"),
        None => repeated_replay(seed, i, a.name(), &kern.name(), args.mutate),
    };
    Found {
        index: i,
        seed: format!("{ws:#x}"),
        arch: a.name().into(),
        kernel: kern.name(),
        finding,
        signature: sig.to_string(),
        message,
        unshrunk_message: msg.to_string(),
        workload: small,
        file,
        replay,
    }
}

fn fail_word(finding: bool) -> &'static str {
    if finding { "FIND" } else { "FAIL" }
}

/// Prints a shrunk failure or finding, or one line for a repeated one.
fn print_found(f: &Found) {
    let word = fail_word(f.finding);
    if f.workload.is_empty() {
        println!(
            "{word} workload {} (seed {}) on {} under {}: {} (as above; replay: {})",
            f.index, f.seed, f.arch, f.kernel, f.signature, f.replay
        );
        return;
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{word} workload {} (seed {}) on {} under {}: {}",
        f.index, f.seed, f.arch, f.kernel, f.signature
    );
    let _ = writeln!(s, "  {}", f.message);
    let _ = writeln!(s, "minimal workload:");
    for l in f.workload.lines() {
        let _ = writeln!(s, "  | {l}");
    }
    let _ = writeln!(s, "replay: {}", f.replay);
    print!("{s}");
}

/// `--replay FILE`: the file on every arch and kernel asked for; `Ok(false)`
/// if a check failed there (a finding is not a failure).
fn replay(
    path: &str,
    arches: &[ArchId],
    kernels: &[KernelProfile],
    limits: &Limits,
) -> Result<bool, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // A script error in the file is a usage error (exit 2).
    lang::parse(path, &text).map_err(|e| e.to_string())?;
    let mut ok = true;
    for &a in arches {
        for k in kernels {
            match check_text(&text, path, a, k, limits) {
                Outcome::Pass => println!("{path} on {a} under {k}: pass"),
                Outcome::Rejected(e) => println!("{path} on {a} under {k}: rejected: {e}"),
                Outcome::Fail(sig, msg) => {
                    ok = false;
                    println!("{path} on {a} under {k}: FAIL {sig}\n  {msg}");
                }
                Outcome::Find(sig, msg) => println!("{path} on {a} under {k}: FIND {sig}\n  {msg}"),
            }
        }
    }
    Ok(ok)
}

/// Silences the default panic message while the fuzzer catches panics
/// (they are reported as failures instead); restores the hook on drop.
type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

struct QuietPanics {
    prev: Option<PanicHook>,
}

impl QuietPanics {
    fn new() -> Self {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        Self { prev: Some(prev) }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if let Some(p) = self.prev.take() {
            std::panic::set_hook(p);
        }
    }
}
