//! `vmemu bench`: speed ratios against yardsticks measured in the same run. (Being built.)

/// Options of `vmemu bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {}

/// Runs the subcommand; `Ok(true)` when every check passed.
pub fn main(_args: &BenchArgs) -> Result<bool, String> {
    Err("not built yet".to_string())
}
