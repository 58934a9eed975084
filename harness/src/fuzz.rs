//! `vmemu fuzz`: seeded random workloads with invariant checks and shrinking. (Being built.)

/// Options of `vmemu fuzz`.
#[derive(clap::Args, Debug, Clone)]
pub struct FuzzArgs {}

/// Runs the subcommand; `Ok(true)` when every check passed.
pub fn main(_args: &FuzzArgs) -> Result<bool, String> {
    Err("not built yet".to_string())
}
