//! `vmemu`: run workloads of the Linux user-memory access layer per arch and
//! kernel profile.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use rayon::prelude::*;
use vmemu_arch::ArchId;
use vmemu_harness::cli::{Cli, Cmd, ColorWhen, Format};
use vmemu_harness::lang::{ScriptError, Workload};
use vmemu_harness::lint;
use vmemu_harness::run::{self, Run, RunOptions};
use vmemu_harness::workloads::BUILTIN;
use vmemu_mm::KernelProfile;

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

/// Whether diagnostics on stderr get ANSI styles (`--color`).
static ERR_COLOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Script errors as the user sees them: each rendered with its source line.
fn render_errors(errors: &[ScriptError]) -> String {
    let color = ERR_COLOR.get().copied().unwrap_or(false);
    let shown: Vec<String> = errors.iter().map(|e| e.render(color)).collect();
    shown.join("\n\n")
}

/// The bytes of a workload file, or of the built-in workload of that name.
fn read_workload(name: &str) -> Result<(String, std::borrow::Cow<'static, [u8]>), Usage> {
    match std::fs::read(name) {
        Ok(b) => Ok((name.to_string(), b.into())),
        Err(e) => BUILTIN
            .iter()
            .find(|(f, _)| *f == name || f.trim_end_matches(".vmw") == name)
            .map(|(f, s)| (f.to_string(), s.as_bytes().into()))
            .ok_or_else(|| {
                Usage(format!(
                    "{name}: {e} (and no built-in workload has that name)"
                ))
            }),
    }
}

/// Loads a workload: parsed and linted for every arch and profile it
/// names; every error is reported.
fn load(name: &str) -> Result<Workload, Usage> {
    let (file, bytes) = read_workload(name)?;
    lint::check_bytes(&file, &bytes).map_err(|e| Usage(render_errors(&e)))
}

fn parse_src(name: &str, src: &str) -> Result<Workload, Usage> {
    lint::check_bytes(name, src.as_bytes()).map_err(|e| Usage(render_errors(&e)))
}

fn script_err(e: ScriptError) -> Usage {
    Usage(render_errors(&[e]))
}

/// One workload × arch × profile of a plan.
#[derive(Debug, Clone)]
struct Planned {
    /// Index of the workload.
    w: usize,
    arch: ArchId,
    kernel: KernelProfile,
    /// Why it is not run (listed as a skip in KTAP, omitted elsewhere).
    skip: Option<String>,
}

/// Every (workload, arch, kernel) in a fixed order, with the combinations a
/// workload does not apply to (its `arches` line) marked as skipped.
fn plan(ws: &[Workload], arches: &[ArchId], kernels: &[KernelProfile]) -> Vec<Planned> {
    let mut v = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        let ks = if kernels.is_empty() {
            run::default_kernels(w)
        } else {
            kernels.to_vec()
        };
        for &a in arches {
            let skip = (!run::applies(w, a))
                .then(|| format!("not for this arch (arches {})", arch_names(&w.arches)));
            for k in &ks {
                v.push(Planned {
                    w: i,
                    arch: a,
                    kernel: k.clone(),
                    skip: skip.clone(),
                });
            }
        }
    }
    v
}

fn execute(
    ws: &[Workload],
    plan: &[Planned],
    format: Format,
    opts: &RunOptions,
) -> Result<Vec<Run>, Usage> {
    let plan: Vec<&Planned> = plan.iter().filter(|p| p.skip.is_none()).collect();
    let triples: Vec<(usize, ArchId, KernelProfile)> = plan
        .iter()
        .map(|p| (p.w, p.arch, p.kernel.clone()))
        .collect();
    run::check_step_budget(ws, &triples, opts.limits.max_steps).map_err(script_err)?;
    // A progress bar on stderr, shown only once the runs take longer than a
    // second, only on a terminal, and never with JSON output.
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(plan.len() as u64),
        indicatif::ProgressDrawTarget::hidden(),
    );
    let started = std::time::Instant::now();
    let shown = std::sync::atomic::AtomicBool::new(false);
    let out = plan
        .par_iter()
        .map(|p| {
            let r = run::run_with(&ws[p.w], p.arch, &p.kernel, opts);
            bar.inc(1);
            if format == Format::Text
                && started.elapsed().as_secs() >= 1
                && std::io::IsTerminal::is_terminal(&std::io::stderr())
                && !shown.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            r
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(script_err);
    bar.finish_and_clear();
    out
}

/// The KTAP document of a plan and the runs of its non-skipped entries.
fn ktap(ws: &[Workload], plan: &[Planned], runs: &[Run]) -> String {
    use vmemu_harness::ktap;
    let mut runs = runs.iter();
    let tests: Vec<ktap::Test> = plan
        .iter()
        .filter_map(|p| match &p.skip {
            Some(why) => Some(ktap::skipped(&ws[p.w].name, p.arch.name(), &p.kernel, why)),
            None => runs.next().map(ktap::run_test),
        })
        .collect();
    ktap::render(&tests)
}

fn emit(
    ws: &[Workload],
    plan: &[Planned],
    runs: &[Run],
    format: Format,
    color: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    if format == Format::Ktap {
        return write!(out, "{}", ktap(ws, plan, runs));
    }
    for r in runs {
        match format {
            Format::Text => write!(out, "{}", run::format_run_with(r, color))?,
            Format::Ktap => {}
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

/// `x86_64 arm64` for an `arches` line.
fn arch_names(v: &[ArchId]) -> String {
    let names: Vec<&str> = v.iter().map(|a| a.name()).collect();
    names.join(" ")
}

fn collect_paths(paths: &[PathBuf]) -> Result<Vec<Workload>, Usage> {
    if paths.is_empty() {
        return BUILTIN.iter().map(|(f, s)| parse_src(f, s)).collect();
    }
    expand_paths(paths)?
        .iter()
        .map(|f| load(&f.to_string_lossy()))
        .collect()
}

/// Files and the `.vmw` files of directories, each directory sorted.
fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Usage> {
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
    Ok(files)
}

/// `vmemu check`: every error of every file (directories expanded).
fn check_files(args: &[String], out: &mut impl Write) -> Result<bool, Usage> {
    let paths: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
    let (mut bad, mut errors) = (0, 0);
    let files = expand_paths(&paths)?;
    for f in &files {
        let name = f.to_string_lossy();
        let res = read_workload(&name).and_then(|(file, bytes)| {
            lint::check_bytes(&file, &bytes).map_err(|e| {
                errors += e.len();
                Usage(render_errors(&e))
            })
        });
        match res {
            Ok(_) => {
                let _ = writeln!(out, "{name}: ok");
            }
            Err(Usage(msg)) => {
                bad += 1;
                eprintln!("{msg}\n");
            }
        }
    }
    if bad > 0 {
        return Err(Usage(format!(
            "{errors} error(s) in {bad} of {} file(s)",
            files.len()
        )));
    }
    Ok(true)
}

/// Parses the command line; clap's help and errors follow `--color` too.
fn parse_cli() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let choice = match ColorWhen::from_args(&args) {
        ColorWhen::Auto => clap::ColorChoice::Auto,
        ColorWhen::Always => clap::ColorChoice::Always,
        ColorWhen::Never => clap::ColorChoice::Never,
    };
    let matches = Cli::command().color(choice).get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn real_main() -> Result<bool, Usage> {
    let cli = parse_cli();
    // Whether text output gets styles: `--color always`, or `auto` when
    // anstream's detection says so (stdout is a terminal that supports
    // colour, NO_COLOR unset; CLICOLOR_FORCE forces it). Styles are only
    // ever added to text output, never to JSON or KTAP.
    let color = match cli.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
        }
    };
    let _ = ERR_COLOR.set(match cli.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
        }
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.cmd {
        Cmd::Run {
            files,
            arches,
            kernels,
            format,
            check_invariants,
            limits,
        } => {
            let opts = RunOptions {
                check_invariants,
                oracles: false,
                limits,
            };
            let arches = parse_arches(&arches)?;
            let ws: Vec<Workload> = files.iter().map(|f| load(f)).collect::<Result<_, _>>()?;
            let plan = plan(&ws, &arches, &kernels);
            let runs = execute(&ws, &plan, format, &opts)?;
            let _ = emit(&ws, &plan, &runs, format, color, &mut out);
            Ok(runs.iter().all(|r| r.summary.passed))
        }
        Cmd::Matrix {
            paths,
            arches,
            check: _,
            format,
            check_invariants,
            limits,
        } => {
            let opts = RunOptions {
                check_invariants,
                oracles: false,
                limits,
            };
            let arches = parse_arches(&arches)?;
            let ws = collect_paths(&paths)?;
            let plan = plan(&ws, &arches, &[]);
            let runs = execute(&ws, &plan, format, &opts)?;
            match format {
                Format::Json | Format::Ktap => {
                    let _ = emit(&ws, &plan, &runs, format, color, &mut out);
                }
                Format::Text => print_matrix_table(&plan, &runs, color, &mut out),
            }
            Ok(runs.iter().all(|r| r.summary.passed))
        }
        Cmd::List { bugs: true } => {
            let _ = write!(
                out,
                "{}",
                vmemu_harness::bugs_report::list().map_err(Usage)?
            );
            Ok(true)
        }
        Cmd::List { bugs: false } => Ok(list(&mut out)),
        Cmd::Explain {
            addr,
            arch,
            kernel,
            workload,
        } => {
            let arch = arch.parse::<ArchId>().map_err(|e| Usage(e.to_string()))?;
            let w = workload.as_deref().map(load).transpose()?;
            let text = run::explain(w.as_ref(), arch, &kernel, &addr).map_err(script_err)?;
            let _ = write!(out, "{text}");
            Ok(true)
        }
        Cmd::Check { files } => check_files(&files, &mut out),
        Cmd::Bench(args) => vmemu_harness::bench::main(&args).map_err(Usage),
        Cmd::Fuzz(args) => vmemu_harness::fuzz::main(&args).map_err(Usage),
        Cmd::DiffHost(args) => vmemu_harness::diff_host::main(&args).map_err(Usage),
        Cmd::ExportC(args) => {
            use vmemu_harness::export_c::{self, ExportError};
            let w = load(&args.workload)?;
            match export_c::main(&w, &args, &mut out) {
                Ok(()) => Ok(true),
                Err(ExportError::Statements(e)) => Err(Usage(render_errors(&e))),
                Err(ExportError::Other(m)) => Err(Usage(m)),
            }
        }
        Cmd::DiffKernel(args) => vmemu_harness::diff_kernel::main(&args).map_err(Usage),
        Cmd::Report {
            bugs: true,
            write,
            check,
            ..
        } => vmemu_harness::bugs_report::main(write.as_deref(), check.as_deref(), &mut out)
            .map_err(Usage),
        Cmd::Report {
            bugs: false,
            markdown,
            write,
            check,
        } => vmemu_harness::report::main(markdown, write.as_deref(), check.as_deref(), &mut out)
            .map_err(Usage),
        Cmd::Completions { shell } => {
            clap_complete::aot::generate(shell, &mut Cli::command(), "vmemu", &mut out);
            Ok(true)
        }
        Cmd::Man => {
            let page = vmemu_harness::man::man_page()
                .map_err(|e| Usage(format!("cannot render the man page: {e}")))?;
            let _ = out.write_all(&page);
            Ok(true)
        }
    }
}

/// `vmemu matrix`'s text table: one line per run and a count line.
fn print_matrix_table(plan: &[Planned], runs: &[Run], color: bool, out: &mut impl Write) {
    let _ = writeln!(
        out,
        "{:<34} {:<9} {:<22} result",
        "workload", "arch", "kernel"
    );
    for r in runs {
        let s = &r.summary;
        let res = if s.passed {
            format!(
                "{} ({} expects)",
                run::paint("pass", run::PASS_STYLE, color),
                s.expects
            )
        } else {
            format!(
                "{} ({} of {} expects failed, {} refs leaked{}{})",
                run::paint("FAIL", run::FAIL_STYLE, color),
                s.failed_expects,
                s.expects,
                s.leaked_refs,
                if s.unexpected_events.is_empty() {
                    ""
                } else {
                    ", unexpected events"
                },
                if s.invariant_violations == 0 {
                    ""
                } else {
                    ", invariant violated"
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
    let skipped = plan.iter().filter(|p| p.skip.is_some()).count();
    let _ = writeln!(
        out,
        "{} runs, {} passed, {} failed{}",
        runs.len(),
        runs.len() - failed,
        failed,
        if skipped > 0 {
            format!(", {skipped} skipped (not for their arch)")
        } else {
            String::new()
        }
    );
}

/// `vmemu list`: arches, kernel profiles with their knobs, built-in workloads.
fn list(out: &mut impl Write) -> bool {
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
    for p in KernelProfile::builtins() {
        let _ = writeln!(out, "  {p}");
        for (k, v, src) in p.knob_table() {
            let _ = writeln!(out, "    {k:<20} {v:<24} {src}");
        }
    }
    let _ = writeln!(out, "built-in workloads:");
    for (f, _) in BUILTIN {
        let _ = writeln!(out, "  {f}");
    }
    true
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
