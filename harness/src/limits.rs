//! Resource bounds of a run and the options that raise them.
//!
//! Every bound has a flag; crossing one is a script error at the statement
//! that crossed it (`file:line:col`, exit 2) naming the bound and its flag,
//! never an out-of-memory kill or a panic. Guest memory is sparse
//! (`MAP_NORESERVE`), so a large mapping costs only the frames it touches;
//! what bounds the host's memory is `--max-mem` (the frames and their
//! `struct page` array), the copy sizes (64 MiB per call) and these counts.

/// Hard ceiling of `--max-mem`: 64 GiB of guest memory (16 Mi frames of
/// 4 KiB, a 256 MiB `struct page` array on the host).
pub const MEM_CEILING: u64 = 64 << 30;

/// Resource bounds (flattened into `vmemu run`, `matrix` and `fuzz`).
#[derive(clap::Args, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest guest memory a workload's `mem` line may ask for (at most 64G).
    #[arg(long, value_name = "SIZE", default_value = "16G", value_parser = parse_mem)]
    pub max_mem: u64,
    /// Most VMAs in one address space (the kernel's vm.max_map_count default is 65530).
    #[arg(long, value_name = "N", default_value_t = 65_530)]
    pub max_mappings: usize,
    /// Most segments (iovecs, kvecs, bvecs) in one iterator (16 bytes of
    /// host memory each). In-kernel iterators have no limit; the iovec
    /// arrays syscalls copy in stop at UIO_MAXIOV (1024) whatever this is.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    pub max_iovecs: usize,
    /// Most pipe buffers (slots of all pipes together) in one run.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_pipe_buffers: usize,
    /// Most statements in one workload.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_statements: usize,
    /// Most statements executed by one command, over all its runs.
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    pub max_steps: u64,
    /// Most host memory one run's guest memory may take: the host pages
    /// of guest memory written, the `struct page` array, the iterators'
    /// segment arrays (checked after every statement).
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_host_mem)]
    pub max_host_mem: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_mem: 16 << 30,
            max_mappings: 65_530,
            max_iovecs: 1 << 20,
            max_pipe_buffers: 4096,
            max_statements: 100_000,
            max_steps: 10_000_000,
            max_host_mem: 2 << 30,
        }
    }
}

/// Parses a memory size such as `256M`, `16G` or `0x1000000`.
pub fn parse_mem(s: &str) -> Result<u64, String> {
    let e = crate::lang::parse_expr_str("--max-mem", s).map_err(|e| e.msg)?;
    let v = match e {
        crate::lang::Expr::Num(n) => n,
        _ => return Err(format!("expected a size such as 256M or 16G, found `{s}`")),
    };
    if !(16 << 20..=i128::from(MEM_CEILING)).contains(&v) {
        return Err(format!("must be between 16M and 64G, found {v}"));
    }
    Ok(v as u64)
}

/// Parses `--max-host-mem`: a size from 16M to 1T.
pub fn parse_host_mem(s: &str) -> Result<u64, String> {
    let e = crate::lang::parse_expr_str("--max-host-mem", s).map_err(|e| e.msg)?;
    let v = match e {
        crate::lang::Expr::Num(n) => n,
        _ => return Err(format!("expected a size such as 256M or 2G, found `{s}`")),
    };
    if !(16 << 20..=1 << 40).contains(&v) {
        return Err(format!("must be between 16M and 1T, found {v}"));
    }
    Ok(v as u64)
}

/// Options of one run beyond the workload itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Check the invariants (`Machine::check_invariants`, pipes, iterators)
    /// after every statement; a violation ends the run with an `invariant`
    /// record.
    pub check_invariants: bool,
    /// Differential oracles inside the run (iterator copies against a flat
    /// model, gup-fast against the slow path); see `fuzz`.
    pub oracles: bool,
    /// Resource bounds.
    pub limits: Limits,
    /// `--show-at LINE`: after the statement of that line, `show mm` and a
    /// `show` of every mapping (`show.rs`).
    pub show_at: Option<usize>,
}
