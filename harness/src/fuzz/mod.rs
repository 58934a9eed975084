//! `vmemu fuzz`: seeded random workloads, run with the invariant checker and
//! the oracles on; failures are shrunk to a minimal workload and printed
//! with the command that replays them.
//!
//! # Determinism
//!
//! Randomness is `rand_chacha::ChaCha8Rng` (a named, portable generator),
//! seeded per workload from the base seed and the workload's index with
//! SplitMix64 ([`workload_seed`]); every random choice maps a raw
//! `next_u64()` itself (no `rand` distributions). Workload `i` is therefore
//! the same text whatever the thread count, the shard or the rand version.
//! `--shard K/N` takes the indices `i ≡ K-1 (mod N)`; the shards' JSON
//! lines concatenate into the whole run.
//!
//! # What a workload is checked for
//!
//! * a panic anywhere in the emulator;
//! * an invariant violation (`Machine::check_invariants` and the iter
//!   layer's, after every statement);
//! * an in-run oracle (the flat iterator model, gup-fast vs the slow path;
//!   see `oracle`);
//! * references still held at the end although the workload released every
//!   result (unless the emulated kernel raised a bug event first);
//! * a cross-run oracle: the same text under `v4.10` and `v4.10+layton`
//!   must give the same pages for the bytes both `iov_iter_get_pages_alloc`
//!   calls cover; a *portable* workload (user mappings under `USER_DS`,
//!   sizes in pages plus small offsets) must give the same results on a
//!   second arch.
//!
//! A script error (the generator asked for something the profile lacks) is
//! counted as rejected, not failed.
//!
//! # Findings and failures
//!
//! Every check says what it found as a *kind*, not only as a message: the
//! invariant checker a [`vmemu_mm::ViolationKind`], the in-run oracles a
//! [`crate::run::oracle::CheckKind`], the kernel model an event kind; the leak
//! check and the cross-run differentials are kinds of their own. A kind
//! may belong to a known-bug class ([`vmemu_mm::BugClass`]: infoleak,
//! use_after_free, zero_page_corrupted, data_mismatch, leaked_reference,
//! ...), and a profile's knobs declare the classes the kernel it models is
//! known to have ([`vmemu_mm::profile::Knobs::known_bugs`]). [`check`]
//! classifies a run by these types only (a reworded message changes no
//! verdict):
//!
//! * an event of a known-bug class is a *finding*: the emulated kernel
//!   observed it doing what the modelled kernel does (v4.10 detaches a
//!   long-term read-only pin when the process later writes the page;
//!   +dirtycow lets the write reach the page cache);
//! * a checker's violation, a leak or a differential whose class the
//!   profile declares is a finding too (the posted `+layton` patch's
//!   leaked reference and wrong bytes; the infoleak of
//!   `+pipe-advance-fencepost`; a written huge zero page on v4.10);
//! * anything else is a *failure*: the emulator, not the kernel, is wrong.
//!
//! Findings are shrunk and printed like failures (`FIND`), counted apart,
//! and do not change the exit status; on a profile that has every fix there
//! must be none (the tests check the shrunk findings under the fixed
//! profiles).
//!
//! # Files
//!
//! [`generator`] writes workloads, [`check`] runs one with every check and
//! classifies it, [`shrink`] minimises a failing one, [`campaign`] is the
//! command (indices, shards, reporting, replay).

use std::time::Duration;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::limits::Limits;

pub mod campaign;
pub mod check;
pub mod classify;
pub mod generator;
pub mod merge;
pub mod mutate;
pub mod shrink;

pub use campaign::{Found, ShardResult, main};
pub use check::{Outcome, check_text};
pub use generator::{forks_by_default, generate, generate_with};
pub use merge::merge;
pub use shrink::shrink;

/// Options of `vmemu fuzz`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  vmemu fuzz --count 2000                    seeded random workloads on x86_64, arm64, ppc64 under v4.10 and v6.13\n  VMEMU_SEED=0x1234 vmemu fuzz --arch arm64  replay a seed\n  vmemu fuzz --replay shrunk.vmw --arch x86_64 --kernel v4.10\n  vmemu fuzz --concurrency --count 200       gup-fast against concurrent munmap/mprotect/madvise"
)]
pub struct FuzzArgs {
    /// Base seed (decimal or 0x hex); default: $VMEMU_SEED, else taken from the clock.
    #[arg(long)]
    pub seed: Option<String>,
    /// Number of workloads (or, with --concurrency, of schedules).
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Arch (repeatable): x86_64, arm64, ppc64, ppc64-4k, or all or main (the three main ones).
    #[arg(long = "arch", default_value = "all", value_parser = crate::complete::arch_names(), hide_possible_values = true)]
    pub arches: Vec<String>,
    /// Kernel profile (repeatable); default v4.10 and v6.13.
    #[arg(long = "kernel", value_parser = crate::complete::profile_parser(), hide_possible_values = true)]
    pub kernels: Vec<vmemu_mm::KernelProfile>,
    /// Stop generating after this long (e.g. 30s, 5m); the workloads run so far are reported.
    #[arg(long, value_name = "DURATION")]
    pub time: Option<String>,
    /// Run only shard K of N (1-based): the workload indices i with i mod N = K-1.
    #[arg(long, value_name = "K/N", default_value = "1/1")]
    pub shard: String,
    /// Output format: text, or JSON (the header and one `fuzz_report` record; docs/json.md).
    #[arg(long, value_enum, default_value = "text")]
    pub format: FuzzFormat,
    /// Run only the workload of this index (with the seed, reproduces one workload).
    #[arg(long)]
    pub index: Option<u64>,
    /// Run this workload file with every check and oracle instead of generating.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<String>,
    /// Print each generated workload before running it.
    #[arg(long)]
    pub print: bool,
    /// Where to write shrunk failing workloads (default: the system temp directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<String>,
    /// Fuzz lockless gup-fast walks interleaved with munmap/mprotect/madvise instead.
    #[arg(long)]
    pub concurrency: bool,
    /// Also generate processes (fork, switch_to, exit) and user stores on
    /// every kernel; default only on v4.17 profiles (GUP pins vs fork).
    #[arg(long)]
    pub fork: bool,
    /// Mutate the built-in workloads' text (seeded; workload i is a mutant
    /// of built-in i mod their number) instead of generating workloads.
    #[arg(long)]
    pub mutate: bool,
    /// Worker threads (default: one per CPU). Results do not depend on
    /// it: every workload's seed comes from the base seed and its index.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Draw the progress bar on stderr (workloads done, ETA, the current
    /// workload, failures and findings so far) also when stderr is not a
    /// terminal (as a plain line a second) or with --format json; default:
    /// only on a terminal, for text output.
    #[arg(long)]
    pub progress: bool,
    #[command(flatten)]
    pub limits: Limits,
    /// `merge`: combine shard reports.
    #[command(subcommand)]
    pub action: Option<FuzzAction>,
}

/// Subcommands of `vmemu fuzz`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum FuzzAction {
    /// Combine the JSON reports of the shards of one campaign (`--shard K/N
    /// --format json`, run anywhere) into one report: counts summed,
    /// failures in index order, each signature's shrunk workload kept once
    /// (from its lowest index, as an unsharded run shrinks it).
    #[command(
        after_help = "Example:\n  for k in 1 2 3 4; do vmemu fuzz --seed 7 --count 4000 --shard $k/4 --format json > shard-$k.json; done\n  vmemu fuzz merge shard-*.json"
    )]
    Merge {
        /// Shard reports (`fuzz_report` lines, headers between them; several per file are fine).
        #[arg(required = true)]
        files: Vec<String>,
        /// Output format: text, or JSON (the header and the merged `fuzz_report`).
        #[arg(long, value_enum, default_value = "text")]
        format: FuzzFormat,
    },
}

/// Output format of `vmemu fuzz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FuzzFormat {
    /// For people.
    Text,
    /// JSON Lines: the header and one report per shard (docs/json.md).
    Json,
}

// ----------------------------------------------------------------------
// Seeds and random numbers
// ----------------------------------------------------------------------

pub use crate::seed::splitmix64;

/// The seed of workload `index` under base seed `base`.
#[must_use]
pub fn workload_seed(base: u64, index: u64) -> u64 {
    splitmix64(base ^ splitmix64(index.wrapping_add(0x5eed)))
}

/// The portable generator for a seed: ChaCha8 keyed by four SplitMix64 words.
#[must_use]
pub fn rng_for(seed: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    let mut s = seed;
    for chunk in key.chunks_mut(8) {
        s = splitmix64(s);
        chunk.copy_from_slice(&s.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// Random choices from raw `next_u64()` values (no rand distributions).
#[derive(Debug)]
pub struct Dice {
    rng: ChaCha8Rng,
}

impl Dice {
    /// Dice for a seed.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { rng: rng_for(seed) }
    }
    /// A raw word.
    pub fn word(&mut self) -> u64 {
        self.rng.next_u64()
    }
    /// Uniform-ish in `0..n` (`n` = 0 gives 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.word() % n }
    }
    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Parses a seed: decimal or `0x` hex.
pub fn parse_seed(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    };
    r.map_err(|_| format!("invalid seed `{s}`: expected a decimal or 0x hex number"))
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{s}`: expected e.g. 30s, 5m"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("invalid duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

pub(crate) fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid shard `{s}`: expected K/N with 1 <= K <= N");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let k: u64 = k.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if n == 0 || k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_stable() {
        // Golden values: a change here changes every replayed seed.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let v4_10: vmemu_mm::KernelProfile = "v4.10".parse().unwrap();
        let a = generate(workload_seed(1, 7), &v4_10).0;
        assert_eq!(a, generate(workload_seed(1, 7), &v4_10).0);
        assert_ne!(a, generate(workload_seed(1, 8), &v4_10).0);
        assert_eq!(parse_seed("0x10"), Ok(16));
        assert_eq!(parse_shard("2/3"), Ok((2, 3)));
        assert!(parse_shard("0/3").is_err());
        assert!(parse_shard("4/3").is_err());
    }
}
