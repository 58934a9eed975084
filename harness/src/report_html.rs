//! `vmemu report --html DIR`: a static site (no server, no script) of
//! the built-in matrix and the thread's claims.
//!
//! * `index.html`: the matrix as a coloured grid, a row per workload ×
//!   profile and a column per arch; each cell is one planned run (pass,
//!   fail, finding — passed, and showed an event of a known-bug class — or
//!   skip) and links to its transcript page `runs/NAME.html`.
//! * `claims.html`: every claim of the 2017 thread with its verdict and
//!   its generated table (`crate::report`).
//! * `walks.html`: the two page walks of `kdirect(256)` after
//!   `kernel_ds_gup_fast` under v4.10, per arch, drawn as SVG
//!   (`crate::walk_svg`; the masked pgd index of arm64 and ppc64 in red).

use std::fmt::Write as _;
use std::path::Path;

use vmemu_arch::ArchId;
use vmemu_mm::KernelProfile;

use crate::cli::Format;
use crate::lang::Workload;
use crate::matrix::{self, Planned};
use crate::run::{self, Run, RunOptions};
use crate::walk_svg::esc;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}\
table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}\
td.cell a{color:inherit;text-decoration:none;display:block}\
.pass{background:#c8f7c5}.fail{background:#f5b7b1}.finding{background:#fad7a0}.skip{background:#e5e7e9;color:#777}\
pre{background:#f8f9f9;padding:1em;overflow-x:auto}nav a{margin-right:1em}";

/// A page with the site's head and navigation.
fn page(title: &str, depth: usize, body: &str) -> String {
    let up = "../".repeat(depth);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body>\n<nav><a href=\"{up}index.html\">matrix</a>\
         <a href=\"{up}claims.html\">thread claims</a><a href=\"{up}walks.html\">page walks</a></nav>\n\
         <h1>{t}</h1>\n{body}\n</body></html>\n",
        t = esc(title)
    )
}

/// The state of one planned run: `pass`, `fail`, `finding` or `skip`.
#[must_use]
pub fn state(skip: bool, run: Option<&Run>) -> &'static str {
    match (skip, run) {
        (true, _) | (false, None) => "skip",
        (false, Some(r)) if !r.summary.passed => "fail",
        (false, Some(r)) if !matrix::finding_classes(r).is_empty() => "finding",
        _ => "pass",
    }
}

fn run_file(w: &str, arch: ArchId, k: &KernelProfile) -> String {
    let k: String = k
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("runs/{w}__{arch}__{k}.html")
}

/// `index.html` and the transcript pages; returns the number of cells.
fn write_matrix(
    dir: &Path,
    ws: &[Workload],
    plan: &[Planned],
    runs: &[Run],
) -> Result<usize, String> {
    let mut it = runs.iter();
    let runs_of: Vec<Option<&Run>> = plan
        .iter()
        .map(|p| if p.skip.is_some() { None } else { it.next() })
        .collect();
    let mut rows: Vec<(usize, KernelProfile)> = Vec::new();
    for p in plan {
        let key = (p.w, p.kernel.clone());
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    let mut body = String::from(
        "<p>Every built-in workload on each main arch under each profile it declares. \
         <span class=\"pass\">pass</span> <span class=\"finding\">finding (passed; a known kernel bug shown)</span> \
         <span class=\"fail\">fail</span> <span class=\"skip\">skip</span>. A cell links to its transcript.</p>\n\
         <table id=\"matrix\"><tr><th>workload</th><th>profile</th>",
    );
    for a in ArchId::MAIN {
        let _ = write!(body, "<th>{a}</th>");
    }
    body.push_str("</tr>\n");
    let (mut cells, mut counts) = (0, std::collections::BTreeMap::<&str, usize>::new());
    for (w, k) in &rows {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td>",
            esc(&ws[*w].name),
            esc(&k.to_string())
        );
        for a in ArchId::MAIN {
            let found = plan
                .iter()
                .zip(&runs_of)
                .find(|(p, _)| p.w == *w && p.kernel == *k && p.arch == a);
            let Some((p, r)) = found else {
                body.push_str("<td></td>");
                continue;
            };
            let st = state(p.skip.is_some(), *r);
            cells += 1;
            *counts.entry(st).or_default() += 1;
            let href = run_file(&ws[*w].name, a, k);
            let text = match (p.skip.as_deref(), r) {
                (Some(why), _) => format!("{} on {a} under {k}: {why}", ws[*w].name),
                (None, Some(r)) => run::format_run(r),
                (None, None) => String::new(),
            };
            write_file(
                &dir.join(&href),
                &page(
                    &format!("{} on {a} under {k}", ws[*w].name),
                    1,
                    &format!("<pre>{}</pre>", esc(&text)),
                ),
            )?;
            let _ = write!(
                body,
                "<td class=\"cell {st}\"><a href=\"{href}\">{st}</a></td>"
            );
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</table>\n");
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = write!(
        body,
        "<p id=\"counts\">{cells} cells: {}</p>",
        summary.join(", ")
    );
    write_file(&dir.join("index.html"), &page("vmemu matrix", 0, &body))?;
    Ok(cells)
}

/// A markdown table (lines starting with `|`) as HTML; other lines as
/// paragraphs.
fn markdown_table(md: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            if t.trim_matches(|c| "|-: ".contains(c)).is_empty() {
                continue;
            }
            if !in_table {
                out.push_str("<table>");
                in_table = true;
            }
            out.push_str("<tr>");
            for c in t.trim_matches('|').split('|') {
                let _ = write!(out, "<td>{}</td>", esc(c.trim()));
            }
            out.push_str("</tr>\n");
        } else {
            if in_table {
                out.push_str("</table>\n");
                in_table = false;
            }
            if !t.is_empty() {
                let _ = writeln!(out, "<p>{}</p>", esc(&t.replace("**", "")));
            }
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    out
}

fn write_claims(dir: &Path) -> Result<(), String> {
    let secs = crate::report::generate()?;
    let mut body =
        String::from("<p>The claims of the February 2017 thread (docs/thread.md), replayed.</p>\n");
    for ((id, text), c) in secs.iter().zip(crate::report::claims()) {
        let verdict = text
            .split("Claim verdict: **")
            .nth(1)
            .and_then(|t| t.split("**").next())
            .unwrap_or("?");
        let _ = write!(
            body,
            "<h2 id=\"{id}\">{}</h2><p class=\"verdict\">verdict: <b>{}</b></p>\n{}",
            esc(c.title),
            esc(verdict),
            markdown_table(text)
        );
    }
    write_file(
        &dir.join("claims.html"),
        &page("The thread's claims", 0, &body),
    )
}

fn write_walks(dir: &Path) -> Result<(), String> {
    let (file, src) = crate::workloads::BUILTIN
        .iter()
        .find(|(f, _)| *f == "kernel_ds_gup_fast.vmw")
        .ok_or("no kernel_ds_gup_fast workload")?;
    let w = crate::lang::parse(file, src).map_err(|e| e.to_string())?;
    let k: KernelProfile = KernelProfile::parse("v4.10").map_err(|e| e.to_string())?;
    let mut body = String::from(
        "<p>The hardware walk (the MMU) and gup's software walk (<code>pgd_offset(mm, addr)</code>) \
         of <code>kdirect(256)</code> after <code>kernel_ds_gup_fast</code> under v4.10; \
         levels where the walks read different entries are drawn in red.</p>\n",
    );
    for a in ArchId::MAIN {
        let s = crate::run::show(Some(&w), a, &k, "kdirect(256)").map_err(|e| e.to_string())?;
        let _ = write!(body, "<h2>{a}</h2>\n{}\n", s.svg);
    }
    write_file(&dir.join("walks.html"), &page("Page walks", 0, &body))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the site into `dir`; returns the number of grid cells.
pub fn write_site(dir: &Path) -> Result<usize, String> {
    let ws: Vec<Workload> = crate::workloads::BUILTIN
        .iter()
        .map(|(f, s)| crate::lang::parse(f, s).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let plan = matrix::plan(&ws, &ArchId::MAIN, &[], false);
    let runs = matrix::execute(&ws, &plan, Format::Json, &RunOptions::default())
        .map_err(|e| e.to_string())?;
    let cells = write_matrix(dir, &ws, &plan, &runs)?;
    write_claims(dir)?;
    write_walks(dir)?;
    Ok(cells)
}
