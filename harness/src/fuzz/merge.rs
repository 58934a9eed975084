//! `vmemu fuzz merge FILES...`: the shard reports of one campaign (`--shard
//! K/N --format json`, run on any machines) combined into the report one
//! unsharded run of the same seed prints.
//!
//! Shard `K/N` checks the indices `i ≡ K-1 (mod N)` and shrinks the first
//! failure of each signature it meets. An unsharded run shrinks the first
//! of each signature over all indices, which is the lowest-index one among
//! the shards' shrunk ones; the merge keeps that one and turns the others
//! back into repeats (the form the unsharded run gives them). Failures are
//! thereby deduplicated by shrunk workload: each signature's minimal
//! workload appears once.

use std::collections::BTreeSet;

use super::FuzzFormat;
use super::campaign::{Found, ShardResult, repeated_replay};

/// Reads every report of `files` and merges them; prints the result.
/// `Ok(false)` when the campaign has failures (exit 1), as a run would.
pub fn main(files: &[String], format: FuzzFormat) -> Result<bool, String> {
    let mut shards = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: ShardResult = serde_json::from_str(line).map_err(|e| {
                format!(
                    "{f}:{}: not a shard report of `vmemu fuzz --format json`: {e}",
                    n + 1
                )
            })?;
            shards.push(r);
        }
    }
    let m = merge(&shards)?;
    match format {
        FuzzFormat::Json => println!("{}", serde_json::to_string(&m).unwrap_or_default()),
        FuzzFormat::Text => print_text(&m, shards.len()),
    }
    Ok(m.failed == 0)
}

fn print_text(m: &ShardResult, n: usize) {
    for f in &m.failures {
        let word = if f.finding { "FIND" } else { "FAIL" };
        if f.workload.is_empty() {
            println!(
                "{word} workload {} on {} under {}: {} (replay: {})",
                f.index, f.arch, f.kernel, f.signature, f.replay
            );
            continue;
        }
        println!(
            "{word} workload {} (seed {}) on {} under {}: {}\n  {}\nminimal workload:",
            f.index, f.seed, f.arch, f.kernel, f.signature, f.message
        );
        for l in f.workload.lines() {
            println!("  | {l}");
        }
        println!("replay: {}", f.replay);
    }
    let distinct = m.failures.iter().filter(|f| !f.workload.is_empty()).count();
    println!(
        "fuzz merge: {n} shards, {} workloads, {} passed, {} rejected, {} failed, {} known-bug findings, {distinct} distinct shrunk workloads (seed {}, {} ms of shard time)",
        m.workloads, m.passed, m.rejected, m.failed, m.findings, m.seed, m.elapsed_ms
    );
}

/// Merges the reports of shards `1/N ..= N/N` of one campaign: the same
/// seed, arches and profiles, every shard exactly once. The result has
/// shard `1/1` and the summed wall time of the shards.
pub fn merge(shards: &[ShardResult]) -> Result<ShardResult, String> {
    let Some(first) = shards.first() else {
        return Err("no shard reports to merge".into());
    };
    let n = shard_of(&first.shard)?.1;
    let mut seen = BTreeSet::new();
    for s in shards {
        if (&s.seed, &s.arches, &s.kernels, s.mutate)
            != (&first.seed, &first.arches, &first.kernels, first.mutate)
        {
            return Err(format!(
                "shard {} is of another campaign (seed {}, arches {}, kernels {}; the first report has seed {}, arches {}, kernels {})",
                s.shard,
                s.seed,
                s.arches.join(","),
                s.kernels.join(","),
                first.seed,
                first.arches.join(","),
                first.kernels.join(",")
            ));
        }
        let (k, nk) = shard_of(&s.shard)?;
        if nk != n {
            return Err(format!(
                "shard {} does not split the campaign in {n} like shard {}",
                s.shard, first.shard
            ));
        }
        if !seen.insert(k) {
            return Err(format!("shard {k}/{n} is given twice"));
        }
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| !seen.contains(k))
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing shard reports: {}", missing.join(", ")));
    }
    let mut failures: Vec<Found> = shards
        .iter()
        .flat_map(|s| s.failures.iter().cloned())
        .collect();
    failures.sort_by_key(|f| f.index);
    // The first shrunk failure of each signature keeps its workload (a run
    // shrinks the first of a signature, see `campaign::tally`); later
    // shrunk ones become repeats.
    let mut shrunk: BTreeSet<String> = BTreeSet::new();
    for f in &mut failures {
        if f.workload.is_empty() {
            continue;
        }
        if !shrunk.insert(f.signature.clone()) {
            demote(f, &first.seed, first.mutate);
        }
    }
    let sum = |g: fn(&ShardResult) -> u64| shards.iter().map(g).sum::<u64>();
    Ok(ShardResult {
        seed: first.seed.clone(),
        shard: "1/1".into(),
        workloads: sum(|s| s.workloads),
        passed: sum(|s| s.passed),
        rejected: sum(|s| s.rejected),
        failed: failures.iter().filter(|f| !f.finding).count() as u64,
        findings: failures.iter().filter(|f| f.finding).count() as u64,
        arches: first.arches.clone(),
        kernels: first.kernels.clone(),
        mutate: first.mutate,
        elapsed_ms: sum(|s| s.elapsed_ms),
        failures,
    })
}

/// A shard's shrunk failure whose signature a lower index holds: the
/// repeat an unsharded run would have listed.
fn demote(f: &mut Found, base_seed: &str, mutate: bool) {
    let seed = super::parse_seed(base_seed).unwrap_or_default();
    f.message = std::mem::take(&mut f.unshrunk_message);
    f.unshrunk_message = f.message.clone();
    f.workload.clear();
    f.file = None;
    f.replay = repeated_replay(seed, f.index, &f.arch, &f.kernel, mutate);
}

fn shard_of(s: &str) -> Result<(u64, u64), String> {
    super::parse_shard(s).map_err(|e| format!("a report's shard: {e}"))
}
