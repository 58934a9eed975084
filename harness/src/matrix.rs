//! `vmemu matrix` and `vmemu run`: the plan of workload × arch × profile
//! runs (with the filters of `matrix`: arches, profiles, workload names or
//! globs), running it in parallel, and the outputs — the text table with
//! the failed expects and the command that reruns a failed run, KTAP, and
//! JSON Lines.

use std::io::Write;

use rayon::prelude::*;
use vmemu_arch::ArchId;
use vmemu_mm::KernelProfile;

use crate::cli::Format;
use crate::lang::{ScriptError, Workload};
use crate::run::{self, Run, RunOptions};

/// One workload × arch × profile of a plan.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Index of the workload.
    pub w: usize,
    /// The arch.
    pub arch: ArchId,
    /// The profile.
    pub kernel: KernelProfile,
    /// Why it is not run (a skip record in KTAP and JSON).
    pub skip: Option<String>,
}

/// The arches of `--arch` values: names, comma lists of names, `main` (the
/// three main arches) or `all` (every arch, the geometry variants too).
pub fn parse_arches(v: &[String]) -> Result<Vec<ArchId>, String> {
    let mut out = Vec::new();
    for a in v.iter().flat_map(|a| a.split(',')).map(str::trim) {
        if a == "main" {
            out.extend(ArchId::MAIN);
        } else if a == "all" {
            out.extend(ArchId::ALL);
        } else if !a.is_empty() {
            out.push(a.parse::<ArchId>().map_err(|e| e.to_string())?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `x86_64 arm64` for an `arches` line.
#[must_use]
pub fn arch_names(v: &[ArchId]) -> String {
    let names: Vec<&str> = v.iter().map(|a| a.name()).collect();
    names.join(" ")
}

/// The start of the skip reason of a workload's `arches` line.
pub const NOT_FOR_ARCH: &str = "not for this arch";

/// Every (workload, arch, kernel) in a fixed order, with the combinations a
/// workload does not apply to (its `arches` line) and the arch variants
/// whose geometry a kernel lacks (`KernelProfile::supports_arch`) marked as
/// skipped.
/// With `only` profiles, a workload runs under those of its profiles (its
/// `kernels` line, else the newest base) that are among them (a filter:
/// `vmemu matrix --kernel v4.10` runs what the matrix runs under v4.10);
/// with `force`, under exactly the profiles given (`vmemu run --kernel`).
#[must_use]
pub fn plan(
    ws: &[Workload],
    arches: &[ArchId],
    kernels: &[KernelProfile],
    force: bool,
) -> Vec<Planned> {
    let mut v = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        let ks: Vec<KernelProfile> = if kernels.is_empty() {
            run::default_kernels(w)
        } else if force {
            kernels.to_vec()
        } else {
            run::default_kernels(w)
                .into_iter()
                .filter(|k| kernels.contains(k))
                .collect()
        };
        for &a in arches {
            let skip = (!run::applies(w, a))
                .then(|| format!("{NOT_FOR_ARCH} (arches {})", arch_names(&w.arches)));
            for k in &ks {
                v.push(Planned {
                    w: i,
                    arch: a,
                    kernel: k.clone(),
                    skip: skip.clone().or_else(|| k.supports_arch(a).err()),
                });
            }
        }
    }
    v
}

/// Whether `name` matches the shell-style `pattern` (`*` any run of
/// characters, `?` one character).
#[must_use]
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| rec(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && rec(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && rec(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    rec(&p, &n)
}

/// The built-in workloads (file name, source) whose name (with or without
/// `.vmw`) matches `pattern`.
#[must_use]
pub fn builtin_matching(pattern: &str) -> Vec<(&'static str, &'static str)> {
    let pat = pattern.trim_end_matches(".vmw");
    crate::workloads::BUILTIN
        .iter()
        .filter(|(f, _)| glob_match(pat, f.trim_end_matches(".vmw")))
        .copied()
        .collect()
}

/// Runs the non-skipped entries of `plan`, in parallel, with a progress
/// bar on stderr (text output on a terminal only) that names the current
/// workload and the time left.
pub fn execute(
    ws: &[Workload],
    plan: &[Planned],
    format: Format,
    opts: &RunOptions,
) -> Result<Vec<Run>, ScriptError> {
    let plan: Vec<&Planned> = plan.iter().filter(|p| p.skip.is_none()).collect();
    let triples: Vec<(usize, ArchId, KernelProfile)> = plan
        .iter()
        .map(|p| (p.w, p.arch, p.kernel.clone()))
        .collect();
    run::check_step_budget(ws, &triples, opts.limits.max_steps)?;
    let bar = crate::progress::Bar::new("matrix", plan.len() as u64, format == Format::Text);
    let out = plan
        .par_iter()
        .map(|p| {
            bar.start(&format!("{} {} {}", ws[p.w].name, p.arch, p.kernel));
            let r = run::run_with(&ws[p.w], p.arch, &p.kernel, opts);
            bar.inc();
            r
        })
        .collect::<Result<Vec<_>, _>>();
    bar.finish();
    out
}

/// The KTAP document of a plan and the runs of its non-skipped entries.
#[must_use]
pub fn ktap(ws: &[Workload], plan: &[Planned], runs: &[Run]) -> String {
    let mut runs = runs.iter();
    let tests: Vec<crate::ktap::Test> = plan
        .iter()
        .filter_map(|p| match &p.skip {
            Some(why) => Some(crate::ktap::skipped(
                &ws[p.w].name,
                p.arch.name(),
                &p.kernel,
                why,
            )),
            None => runs.next().map(crate::ktap::run_test),
        })
        .collect();
    crate::ktap::render(&tests)
}

/// JSON Lines (`docs/json.md`): the header, then per planned run its skip
/// record or its statements, findings and summary (with the command that
/// reruns a failed run).
pub fn emit_json(
    ws: &[Workload],
    plan: &[Planned],
    runs: &[Run],
    out: &mut impl Write,
) -> std::io::Result<()> {
    use crate::json;
    writeln!(out, "{}", json::header())?;
    let mut runs = runs.iter();
    for p in plan {
        let lines = match &p.skip {
            Some(why) => vec![json::skip(
                &ws[p.w].name,
                p.arch.name(),
                &p.kernel.to_string(),
                why,
            )],
            None => runs
                .next()
                .map(|r| json::run_lines(r, &rerun_command(&ws[p.w], r)))
                .unwrap_or_default(),
        };
        for l in lines {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}

/// `word` quoted for a POSIX shell if it needs it.
fn shell_word(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./+=:,@%".contains(c));
    if plain && !word.is_empty() {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command that reruns the one run `r` of workload `w`: the workload
/// by its built-in name, or by the file it was read from.
#[must_use]
pub fn rerun_command(w: &Workload, r: &Run) -> String {
    let builtin = crate::workloads::BUILTIN
        .iter()
        .any(|(f, s)| *f == w.file && *s == w.source);
    let what = if builtin { &w.name } else { &w.file };
    format!(
        "vmemu run {} --arch {} --kernel {}",
        shell_word(what),
        r.summary.arch,
        shell_word(&r.summary.kernel)
    )
}

pub use crate::run::failed_expects;

/// The known-bug classes a run's events show (its findings), in order,
/// without repeats.
#[must_use]
pub fn finding_classes(r: &Run) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for e in &r.events {
        if let Some(c) = e.kind.bug_class() {
            let c = c.to_string();
            if !v.contains(&c) {
                v.push(c);
            }
        }
    }
    v
}

/// The result column of one run of the text table.
fn result_cell(r: &Run, color: bool) -> String {
    let s = &r.summary;
    let findings = finding_classes(r);
    let found = if findings.is_empty() {
        String::new()
    } else {
        format!("; finding: {}", findings.join(", "))
    };
    if s.passed {
        return format!(
            "{} ({} expects{found})",
            run::paint("pass", run::PASS_STYLE, color),
            s.expects
        );
    }
    format!(
        "{} ({} of {} expects failed, {} refs leaked{}{}{found})",
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
}

/// `vmemu matrix`'s text table: one line per run; under a failed run its
/// failed expects (line, text, what was seen) and the command that reruns
/// it; then a count line with the findings counted apart.
pub fn print_table(
    ws: &[Workload],
    plan: &[Planned],
    runs: &[Run],
    color: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<34} {:<9} {:<22} result",
        "workload", "arch", "kernel"
    )?;
    let ran = plan.iter().filter(|p| p.skip.is_none());
    for (p, r) in ran.zip(runs) {
        let s = &r.summary;
        writeln!(
            out,
            "{:<34} {:<9} {:<22} {}",
            s.workload,
            s.arch,
            s.kernel,
            result_cell(r, color)
        )?;
        if s.passed {
            continue;
        }
        for (line, text, got) in failed_expects(r) {
            let msg = format!("L{line} {text}  -> got {got}");
            writeln!(out, "    {}", run::paint(&msg, run::FAIL_STYLE, color))?;
        }
        for e in &s.unexpected_events {
            writeln!(out, "    unexpected event {e}")?;
        }
        if s.leaked_refs != s.expected_leaks {
            writeln!(out, "    leaked: {}", s.leaked_pages.join(", "))?;
        }
        writeln!(out, "    rerun: {}", rerun_command(&ws[p.w], r))?;
    }
    let failed = runs.iter().filter(|r| !r.summary.passed).count();
    let findings = runs
        .iter()
        .filter(|r| !finding_classes(r).is_empty())
        .count();
    let skipped = plan.iter().filter(|p| p.skip.is_some()).count();
    let by_arch = plan
        .iter()
        .filter(|p| {
            p.skip
                .as_deref()
                .is_some_and(|s| s.starts_with(NOT_FOR_ARCH))
        })
        .count();
    let mut skips = String::new();
    if by_arch > 0 {
        skips = format!(", {by_arch} skipped (not for their arch)");
    }
    if skipped > by_arch {
        skips += &format!(
            ", {} skipped (arch geometry not in that kernel)",
            skipped - by_arch
        );
    }
    writeln!(
        out,
        "{} runs, {} passed, {} failed{}{}",
        runs.len(),
        runs.len() - failed,
        failed,
        skips,
        if findings > 0 {
            format!("; {findings} show a known kernel bug (findings, counted apart)")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_arch_lists() {
        assert!(glob_match("kernel_ds_*", "kernel_ds_gup_fast"));
        assert!(glob_match("*gup_fast", "kernel_ds_gup_fast"));
        assert!(glob_match("gup_fast_?atrix", "gup_fast_matrix"));
        assert!(!glob_match("gup_fast", "gup_fast_matrix"));
        assert_eq!(builtin_matching("kernel_ds_gup_fast").len(), 1);
        assert!(builtin_matching("gup_fast*").len() >= 2);
        assert_eq!(
            parse_arches(&["arm64,ppc64".into()]).unwrap(),
            vec![ArchId::Arm64, ArchId::Ppc64]
        );
        assert_eq!(parse_arches(&["main".into()]).unwrap(), ArchId::MAIN);
        let mut all = ArchId::ALL.to_vec();
        all.sort();
        assert_eq!(parse_arches(&["all".into()]).unwrap(), all);
        assert!(parse_arches(&["arm65".into()]).is_err());
        assert_eq!(shell_word("v4.10+capper"), "v4.10+capper");
        assert_eq!(shell_word("my dir/a.vmw"), "'my dir/a.vmw'");
    }

    /// A failed run's row names the failed expect and the command that
    /// reruns exactly that run; the plan filter keeps one profile.
    #[test]
    fn failed_rows_name_the_expect_and_the_rerun_command() {
        let src = "kernels v4.10 v6.13\nmap b 1 page rw\nr = clear_user(b, 1)\nexpect r == 7\n";
        let w = crate::lang::parse("/tmp/x y.vmw", src).unwrap();
        let v4_10: KernelProfile = "v4.10".parse().unwrap();
        let ws = [w];
        let p = plan(&ws, &[ArchId::Arm64], std::slice::from_ref(&v4_10), false);
        assert_eq!(p.len(), 1);
        let runs = execute(&ws, &p, Format::Json, &RunOptions::default()).unwrap();
        let mut out = Vec::new();
        print_table(&ws, &p, &runs, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("    L4 expect r == 7  -> got 0\n"), "{text}");
        assert!(
            text.contains("    rerun: vmemu run '/tmp/x y.vmw' --arch arm64 --kernel v4.10\n"),
            "{text}"
        );
        assert!(text.ends_with("1 runs, 0 passed, 1 failed\n"), "{text}");
    }
}
