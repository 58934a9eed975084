//! `vmemu`: run workloads of the Linux user-memory access layer per arch and
//! kernel profile.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use rayon::prelude::*;
use vmemu_arch::ArchId;
use vmemu_harness::cli::{Cli, Cmd, ColorWhen, Format};
use vmemu_harness::lang::{ScriptError, Workload};
use vmemu_harness::lint;
use vmemu_harness::matrix::{self, Planned};
use vmemu_harness::run::{self, Run, RunOptions};
use vmemu_harness::workloads::BUILTIN;
use vmemu_mm::KernelProfile;

/// An error that ends the command: a usage problem (exit 2).
#[derive(Debug)]
struct Usage(String);

fn parse_arches(v: &[String]) -> Result<Vec<ArchId>, Usage> {
    matrix::parse_arches(v).map_err(Usage)
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

fn execute(
    ws: &[Workload],
    plan: &[Planned],
    format: Format,
    opts: &RunOptions,
) -> Result<Vec<Run>, Usage> {
    matrix::execute(ws, plan, format, opts).map_err(script_err)
}

fn emit(
    ws: &[Workload],
    plan: &[Planned],
    runs: &[Run],
    format: Format,
    color: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    match format {
        Format::Ktap => write!(out, "{}", matrix::ktap(ws, plan, runs)),
        Format::Json => matrix::emit_json(ws, plan, runs, out),
        Format::Text => {
            for r in runs {
                write!(out, "{}", run::format_run_with(r, color))?;
            }
            Ok(())
        }
    }
}

/// The workloads `vmemu matrix` names: files, directories of `.vmw`
/// files, or built-in workload names and globs (`kernel_ds_*`); none: every
/// built-in workload.
fn collect_workloads(args: &[String]) -> Result<Vec<Workload>, Usage> {
    if args.is_empty() {
        // Checking the built-in workloads was most of `vmemu matrix`'s serial
        // start-up (issue 23: 56% of the main thread's instructions): on the
        // rayon pool (`-j`), in order, so the first error in `BUILTIN` order
        // is the one reported.
        let checked: Vec<Result<Workload, Usage>> =
            BUILTIN.par_iter().map(|(f, s)| parse_src(f, s)).collect();
        return checked.into_iter().collect();
    }
    let mut ws = Vec::new();
    for a in args {
        let p = PathBuf::from(a);
        if p.exists() {
            for f in expand_paths(&[p])? {
                ws.push(load(&f.to_string_lossy())?);
            }
            continue;
        }
        let found = matrix::builtin_matching(a);
        if found.is_empty() {
            let names = BUILTIN.iter().map(|(f, _)| f.trim_end_matches(".vmw"));
            let hint = vmemu_harness::calls::suggest(a, names)
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            return Err(Usage(format!(
                "{a}: no such file, and no built-in workload matches it (vmemu list names them){hint}"
            )));
        }
        for (f, s) in found {
            ws.push(parse_src(f, s)?);
        }
    }
    Ok(ws)
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
    let color = color_wanted(cli.color, anstream::AutoStream::choice(&std::io::stdout()));
    let _ = ERR_COLOR.set(color_wanted(
        cli.color,
        anstream::AutoStream::choice(&std::io::stderr()),
    ));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.cmd {
        Cmd::Run {
            files,
            arches,
            kernels,
            format,
            check_invariants,
            show_at,
            limits,
        } => {
            let opts = RunOptions {
                check_invariants,
                oracles: false,
                limits,
                show_at,
            };
            cmd_run(&files, &arches, &kernels, format, &opts, color, &mut out)
        }
        Cmd::Matrix {
            workloads,
            arches,
            kernels,
            jobs,
            check: _,
            format,
            check_invariants,
            limits,
        } => {
            let opts = RunOptions {
                check_invariants,
                oracles: false,
                limits,
                show_at: None,
            };
            cmd_matrix(
                &workloads, &arches, &kernels, jobs, format, &opts, color, &mut out,
            )
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
        Cmd::Show {
            addr,
            arch,
            kernel,
            workload,
            format,
            svg,
        } => cmd_show(
            &addr,
            &arch,
            &kernel,
            workload.as_deref(),
            format,
            svg.as_deref(),
            &mut out,
        ),
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
            bugs,
            markdown,
            write,
            check,
            html,
        } => cmd_report(
            bugs,
            markdown,
            write.as_deref(),
            check.as_deref(),
            html.as_deref(),
            &mut out,
        ),
        Cmd::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a failed write
            // (a closed pipe, `vmemu completions bash | head`).
            let mut script = Vec::new();
            clap_complete::aot::generate(shell, &mut Cli::command(), "vmemu", &mut script);
            let _ = out.write_all(&script);
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

/// Whether a stream gets styles: `--color always`, or `auto` when
/// anstream's detection says so (a terminal that supports colour, NO_COLOR
/// unset; CLICOLOR_FORCE forces it). Styles only ever go to text output,
/// never to JSON or KTAP.
fn color_wanted(when: ColorWhen, detected: anstream::ColorChoice) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => detected != anstream::ColorChoice::Never,
    }
}

/// `vmemu run FILES`: each file on the arches and kernels asked for (or
/// those the workload names).
fn cmd_run(
    files: &[String],
    arches: &[String],
    kernels: &[KernelProfile],
    format: Format,
    opts: &RunOptions,
    color: bool,
    out: &mut impl Write,
) -> Result<bool, Usage> {
    let arches = parse_arches(arches)?;
    let ws: Vec<Workload> = files.iter().map(|f| load(f)).collect::<Result<_, _>>()?;
    let plan = matrix::plan(&ws, &arches, kernels, true);
    // Every combination refused because the kernel lacks the arch's
    // geometry (e.g. `--arch arm64-52 --kernel v4.10`): say so.
    if plan.iter().all(|p| p.skip.is_some())
        && let Some(why) = plan.iter().find_map(|p| {
            p.skip
                .as_deref()
                .filter(|s| !s.starts_with(matrix::NOT_FOR_ARCH))
        })
    {
        return Err(Usage(format!("nothing to run: {why}")));
    }
    let runs = execute(&ws, &plan, format, opts)?;
    let _ = emit(&ws, &plan, &runs, format, color, out);
    Ok(runs.iter().all(|r| r.summary.passed))
}

/// `vmemu matrix [WORKLOADS]`: the built-in (or named) workloads on every
/// arch and kernel they name, as a table, JSON Lines or KTAP.
fn cmd_matrix(
    workloads: &[String],
    arches: &[String],
    kernels: &[KernelProfile],
    jobs: Option<usize>,
    format: Format,
    opts: &RunOptions,
    color: bool,
    out: &mut impl Write,
) -> Result<bool, Usage> {
    if let Some(n) = jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| Usage(format!("-j {n}: {e}")))?;
    }
    let arches = parse_arches(arches)?;
    let ws = collect_workloads(workloads)?;
    let plan = matrix::plan(&ws, &arches, kernels, false);
    let runs = execute(&ws, &plan, format, opts)?;
    // One write per 64 KiB, not per line: stdout is line-buffered, and a
    // system call per line of the table was serial time after the runs.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let _ = match format {
        Format::Json | Format::Ktap => emit(&ws, &plan, &runs, format, color, &mut out),
        Format::Text => matrix::print_table(&ws, &plan, &runs, color, &mut out),
    };
    let _ = out.flush();
    let passed = runs.iter().all(|r| r.summary.passed);
    // The process exits next: freeing every transcript and workload would
    // be serial work on the main thread (17% of its instructions in the
    // matrix, issue 23); the exit gives the memory back at once.
    std::mem::forget(runs);
    std::mem::forget(ws);
    Ok(passed)
}

/// `vmemu show ADDR`: the mappings, both walks and the page's counts, as
/// text or JSON, and the walk as SVG when asked.
fn cmd_show(
    addr: &str,
    arch: &str,
    kernel: &KernelProfile,
    workload: Option<&str>,
    format: Format,
    svg: Option<&Path>,
    out: &mut impl Write,
) -> Result<bool, Usage> {
    let arch = arch.parse::<ArchId>().map_err(|e| Usage(e.to_string()))?;
    let w = workload.map(load).transpose()?;
    let s = vmemu_harness::run::show(w.as_ref(), arch, kernel, addr).map_err(script_err)?;
    if let Some(path) = svg {
        std::fs::write(path, &s.svg).map_err(|e| Usage(format!("{}: {e}", path.display())))?;
    }
    let _ = match format {
        Format::Json => writeln!(out, "{}", s.view.json),
        _ => writeln!(out, "{}", s.view.lines.join("\n")),
    };
    Ok(true)
}

/// `vmemu report`: the HTML site, the known-bugs report or the thread
/// report (written, checked against a file, or printed).
fn cmd_report(
    bugs: bool,
    markdown: bool,
    write: Option<&Path>,
    check: Option<&Path>,
    html: Option<&Path>,
    out: &mut impl Write,
) -> Result<bool, Usage> {
    if let Some(dir) = html {
        let cells = vmemu_harness::report_html::write_site(dir).map_err(Usage)?;
        let _ = writeln!(
            out,
            "{}: index.html ({cells} cells), claims.html, walks.html",
            dir.display()
        );
        return Ok(true);
    }
    if bugs {
        return vmemu_harness::bugs_report::main(write, check, out).map_err(Usage);
    }
    vmemu_harness::report::main(markdown, write, check, out).map_err(Usage)
}

/// `vmemu list`: arches, kernel profiles with their knobs, built-in workloads.
fn list(out: &mut impl Write) -> bool {
    let _ = writeln!(out, "arches:");
    for a in ArchId::ALL {
        let (page, levels, va) = vmemu_arch::with_arch!(a, A => (<A as vmemu_arch::Arch>::PAGE_SIZE >> 10, <A as vmemu_arch::Arch>::levels(), <A as vmemu_arch::Arch>::va_bits()));
        let mut note = String::new();
        if !ArchId::MAIN.contains(&a) {
            note = " (on request".to_string();
            let without: Vec<String> = vmemu_mm::profile::Base::IN_ORDER
                .iter()
                .map(|b| KernelProfile::of_base(*b))
                .filter_map(|k| k.supports_arch(a).err().map(|_| k.to_string()))
                .collect();
            if !without.is_empty() {
                note += &format!("; not under {}", without.join(" "));
            }
            note += ")";
        }
        let _ = writeln!(
            out,
            "  {:<12} {page} KiB pages, {levels} levels, {va}-bit VA{note}",
            a.name()
        );
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
    // Before any thread exists: each heap then grows in few steps (see
    // `vmemu_host::set_malloc_top_pad`; issue 23's M2).
    vmemu_host::set_malloc_top_pad(vmemu_host::TOP_PAD);
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
