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
use super::campaign::{Found, REPORT, ShardResult, repeated_replay};

/// Reads every report of `files` and merges them; prints the result.
/// `Ok(false)` when the campaign has failures (exit 1), as a run would.
pub fn main(files: &[String], format: FuzzFormat) -> Result<bool, String> {
    let mut shards = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        for (n, line) in text.lines().enumerate() {
            if let Some(r) = read_record(line).map_err(|e| format!("{f}:{}: {e}", n + 1))? {
                shards.push(r);
            }
        }
    }
    let m = merge(&shards)?;
    match format {
        FuzzFormat::Json => {
            println!("{}", crate::json::header());
            println!("{}", crate::json::typed(REPORT, &m));
        }
        FuzzFormat::Text => print_text(&m, shards.len()),
    }
    Ok(m.failed == 0)
}

/// One line of a shard file: a `fuzz_report` (or, from a vmemu older than
/// the typed records, a report with no `type`); a `header` of a schema
/// this vmemu reads is skipped, blank lines too. Anything else is an error
/// that says what the line is.
fn read_record(line: &str) -> Result<Option<ShardResult>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let not_report = |e: &dyn std::fmt::Display| {
        format!("not a shard report of `vmemu fuzz --format json`: {e}")
    };
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| not_report(&e))?;
    match v.get("type").and_then(serde_json::Value::as_str) {
        Some("header") => {
            let schema = v.get("schema").and_then(serde_json::Value::as_u64);
            match schema {
                Some(s) if s <= u64::from(crate::json::SCHEMA_VERSION) => Ok(None),
                _ => Err(format!(
                    "written with JSON schema {}, this vmemu reads schema {} and older (docs/json.md): merge with the vmemu that wrote the shards",
                    schema.map_or_else(|| "?".into(), |s| s.to_string()),
                    crate::json::SCHEMA_VERSION
                )),
            }
        }
        Some(REPORT) | None => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| not_report(&e)),
        Some(other) => Err(not_report(&format_args!(
            "a `{other}` record (the shards' files hold `header` and `{REPORT}` records)"
        ))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{"seed":"0x7","shard":"1/2","workloads":3,"passed":3,"rejected":0,"failed":0,"findings":0,"arches":["x86_64"],"kernels":["v6.13"],"elapsed_ms":5,"failures":[]}"#;

    /// A shard file of a vmemu before the typed records (no header, no
    /// `type`) still merges; a typed one too; the header is skipped.
    #[test]
    fn reads_old_and_typed_reports_and_skips_the_header() {
        let old = read_record(OLD).unwrap().unwrap();
        assert_eq!((old.shard.as_str(), old.workloads), ("1/2", 3));
        let typed = crate::json::typed(REPORT, &old).to_string();
        assert!(typed.contains(r#""type":"fuzz_report""#), "{typed}");
        assert_eq!(read_record(&typed).unwrap(), Some(old));
        let header = crate::json::header().to_string();
        assert_eq!(read_record(&header).unwrap(), None);
        assert_eq!(read_record("  ").unwrap(), None);
    }

    /// A newer schema, another record type or no JSON at all is an error
    /// that says what the line is.
    #[test]
    fn other_lines_fail_clearly() {
        let newer = r#"{"type":"header","schema":99,"generator":"vmemu 9"}"#;
        let e = read_record(newer).unwrap_err();
        assert!(
            e.contains("schema 99") && e.contains("reads schema 1"),
            "{e}"
        );
        let skip =
            r#"{"type":"skip","workload":"w","arch":"x86_64","kernel":"v6.13","reason":"r"}"#;
        let e = read_record(skip).unwrap_err();
        assert!(e.contains("a `skip` record"), "{e}");
        let e = read_record("fuzz: 10 workloads").unwrap_err();
        assert!(e.starts_with("not a shard report"), "{e}");
    }
}
