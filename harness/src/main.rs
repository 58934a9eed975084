//! `vmemu`: run workloads of the Linux user-memory access layer per arch and
//! kernel profile.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use rayon::prelude::*;
use vmemu_arch::ArchId;
use vmemu_harness::lang::{self, ScriptError, Workload};
use vmemu_harness::run::{self, Run};
use vmemu_harness::workloads::BUILTIN;
use vmemu_mm::KernelProfile;

#[derive(Parser, Debug)]
#[command(
    name = "vmemu",
    version,
    about = "Emulate the Linux kernel's user-memory access layer (page tables, access_ok/set_fs, get_user_pages, gup-fast) per arch and kernel version",
    after_help = "Examples:\n  vmemu matrix                          run every built-in workload on x86_64, arm64, ppc64\n  vmemu run harness/workloads/kernel_ds_gup_fast.vmw --kernel v4.10\n  vmemu list                            arches, kernel profiles and their knobs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run workload scripts and print their transcripts.
    #[command(
        after_help = "Example:\n  vmemu run harness/workloads/kernel_ds_gup_fast.vmw --arch arm64 --kernel v4.10 --format json"
    )]
    Run {
        /// Workload files (*.vmw), or names of built-in workloads.
        #[arg(required = true)]
        files: Vec<String>,
        /// Arch (repeatable): x86_64, arm64, ppc64, ppc64-4k, or all (x86_64, arm64, ppc64).
        #[arg(long = "arch", default_value = "all")]
        arches: Vec<String>,
        /// Kernel profile (repeatable), e.g. v4.10, v4.10+capper, v6.13; default: the script's `kernels` line, else v6.13.
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Run workloads x arches x their profiles in parallel and print a summary table.
    #[command(
        after_help = "Example:\n  vmemu matrix                 all built-in workloads\n  vmemu matrix my/workloads/   every *.vmw under a directory"
    )]
    Matrix {
        /// Workload files or directories (default: the built-in workloads).
        paths: Vec<PathBuf>,
        /// Arch (repeatable); default all three main arches.
        #[arg(long = "arch", default_value = "all")]
        arches: Vec<String>,
        /// Exit 1 if any run fails (the default is to report and exit 1 too; kept for scripts).
        #[arg(long)]
        check: bool,
        /// Output format (json: every record plus one summary per run).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// List arches, kernel profiles with their knobs, and built-in workloads.
    List,
    /// Show both walks of an address level by level, and the knobs that decide gup-fast and uaccess.
    #[command(
        after_help = "Example:\n  vmemu explain 'kdirect(256)' --arch arm64 --kernel v4.10 --workload harness/workloads/kernel_ds_gup_fast.vmw"
    )]
    Explain {
        /// The address: a number or an expression such as kdirect(256) or PAGE_OFFSET + 0x1000.
        addr: String,
        /// Arch.
        #[arg(long)]
        arch: String,
        /// Kernel profile.
        #[arg(long, default_value = "v6.13")]
        kernel: String,
        /// Run this workload first (its mappings are then in the address space).
        #[arg(long)]
        workload: Option<String>,
    },
    /// Parse workload files and report errors, without running them.
    #[command(after_help = "Example:\n  vmemu check harness/workloads/*.vmw")]
    Check {
        /// Workload files.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Print shell completions.
    #[command(after_help = "Example:\n  vmemu completions bash > /etc/bash_completion.d/vmemu")]
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

/// An error that ends the command: a usage problem (exit 2).
#[derive(Debug)]
struct Usage(String);

fn parse_arches(v: &[String]) -> Result<Vec<ArchId>, Usage> {
    let mut out = Vec::new();
    for a in v {
        if a == "all" {
            out.extend(ArchId::MAIN);
        } else {
            out.push(a.parse::<ArchId>().map_err(|e| Usage(e.to_string()))?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn load(name: &str) -> Result<Workload, Usage> {
    let path = Path::new(name);
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            let builtin = BUILTIN
                .iter()
                .find(|(f, _)| *f == name || f.trim_end_matches(".vmw") == name);
            match builtin {
                Some((f, s)) => return parse_src(f, s),
                None => {
                    return Err(Usage(format!(
                        "{name}: {e} (and no built-in workload has that name)"
                    )));
                }
            }
        }
    };
    parse_src(name, &src)
}

fn parse_src(name: &str, src: &str) -> Result<Workload, Usage> {
    lang::parse(name, src).map_err(|e| Usage(e.to_string()))
}

fn script_err(e: ScriptError) -> Usage {
    Usage(e.to_string())
}

/// (workload, arch, kernel) triples in a fixed order.
fn plan(ws: &[Workload], arches: &[ArchId], kernels: &[String]) -> Vec<(usize, ArchId, String)> {
    let mut v = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        let ks = if kernels.is_empty() {
            run::default_kernels(w)
        } else {
            kernels.to_vec()
        };
        for &a in arches {
            if !run::applies(w, a) {
                continue;
            }
            for k in &ks {
                v.push((i, a, k.clone()));
            }
        }
    }
    v
}

fn execute(ws: &[Workload], plan: &[(usize, ArchId, String)]) -> Result<Vec<Run>, Usage> {
    plan.par_iter()
        .map(|(i, a, k)| run::run(&ws[*i], *a, k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(script_err)
}

fn emit(runs: &[Run], format: Format, out: &mut impl Write) -> std::io::Result<()> {
    for r in runs {
        match format {
            Format::Text => write!(out, "{}", run::format_run(r))?,
            Format::Json => {
                for rec in &r.records {
                    writeln!(out, "{}", serde_json::to_string(rec).unwrap_or_default())?;
                }
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&r.summary).unwrap_or_default()
                )?;
            }
        }
    }
    Ok(())
}

fn collect_paths(paths: &[PathBuf]) -> Result<Vec<Workload>, Usage> {
    if paths.is_empty() {
        return BUILTIN.iter().map(|(f, s)| parse_src(f, s)).collect();
    }
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| Usage(format!("{}: {e}", p.display())))?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "vmw"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    files.iter().map(|f| load(&f.to_string_lossy())).collect()
}

fn real_main() -> Result<bool, Usage> {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.cmd {
        Cmd::Run {
            files,
            arches,
            kernels,
            format,
        } => {
            for k in &kernels {
                KernelProfile::parse(k).map_err(|e| Usage(e.to_string()))?;
            }
            let arches = parse_arches(&arches)?;
            let ws: Vec<Workload> = files.iter().map(|f| load(f)).collect::<Result<_, _>>()?;
            let runs = execute(&ws, &plan(&ws, &arches, &kernels))?;
            let _ = emit(&runs, format, &mut out);
            Ok(runs.iter().all(|r| r.summary.passed))
        }
        Cmd::Matrix {
            paths,
            arches,
            check: _,
            format,
        } => {
            let arches = parse_arches(&arches)?;
            let ws = collect_paths(&paths)?;
            let runs = execute(&ws, &plan(&ws, &arches, &[]))?;
            match format {
                Format::Json => {
                    let _ = emit(&runs, format, &mut out);
                }
                Format::Text => {
                    let _ = writeln!(
                        out,
                        "{:<34} {:<9} {:<22} result",
                        "workload", "arch", "kernel"
                    );
                    for r in &runs {
                        let s = &r.summary;
                        let res = if s.passed {
                            format!("pass ({} expects)", s.expects)
                        } else {
                            format!(
                                "FAIL ({} of {} expects failed, {} refs leaked{})",
                                s.failed_expects,
                                s.expects,
                                s.leaked_refs,
                                if s.unexpected_events.is_empty() {
                                    ""
                                } else {
                                    ", unexpected events"
                                }
                            )
                        };
                        let _ = writeln!(
                            out,
                            "{:<34} {:<9} {:<22} {res}",
                            s.workload, s.arch, s.kernel
                        );
                    }
                    let failed = runs.iter().filter(|r| !r.summary.passed).count();
                    let _ = writeln!(
                        out,
                        "{} runs, {} passed, {} failed",
                        runs.len(),
                        runs.len() - failed,
                        failed
                    );
                }
            }
            Ok(runs.iter().all(|r| r.summary.passed))
        }
        Cmd::List => {
            let _ = writeln!(out, "arches:");
            for a in ArchId::ALL {
                let main = if ArchId::MAIN.contains(&a) {
                    ""
                } else {
                    " (on request)"
                };
                let _ = writeln!(out, "  {a}{main}");
            }
            let _ = writeln!(out, "kernel profiles:");
            for n in KernelProfile::builtin_names() {
                let p = KernelProfile::parse(n).map_err(|e| Usage(e.to_string()))?;
                let _ = writeln!(out, "  {n}");
                for (k, v, src) in p.knob_table() {
                    let _ = writeln!(out, "    {k:<20} {v:<24} {src}");
                }
            }
            let _ = writeln!(out, "built-in workloads:");
            for (f, _) in BUILTIN {
                let _ = writeln!(out, "  {f}");
            }
            Ok(true)
        }
        Cmd::Explain {
            addr,
            arch,
            kernel,
            workload,
        } => {
            KernelProfile::parse(&kernel).map_err(|e| Usage(e.to_string()))?;
            let arch = arch.parse::<ArchId>().map_err(|e| Usage(e.to_string()))?;
            let w = workload.as_deref().map(load).transpose()?;
            let text = run::explain(w.as_ref(), arch, &kernel, &addr).map_err(script_err)?;
            let _ = write!(out, "{text}");
            Ok(true)
        }
        Cmd::Check { files } => {
            for f in &files {
                load(f)?;
                let _ = writeln!(out, "{f}: ok");
            }
            Ok(true)
        }
        Cmd::Completions { shell } => {
            clap_complete::aot::generate(shell, &mut Cli::command(), "vmemu", &mut out);
            Ok(true)
        }
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Usage(msg)) => {
            eprintln!("vmemu: {msg}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
