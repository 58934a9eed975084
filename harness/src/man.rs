//! `vmemu man`: one man page, vmemu(1), generated from the clap definition
//! with clap_mangen, with a section per subcommand (its synopsis, options
//! and examples) instead of separate vmemu-SUBCOMMAND(1) pages.

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::Cli;

/// Renders a part of a page with `render` and drops its `.SH` heading lines
/// (the caller writes its own headings).
fn body(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> std::io::Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .lines()
        .filter(|l| !l.starts_with(".SH "))
        .map(|l| format!("{l}\n"))
        .collect())
}

/// Quotes a macro argument for roff.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\(dq"))
}

/// Plain text as roff lines (escaping backslashes and leading control
/// characters).
fn text(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        if line.trim().is_empty() {
            out.push_str(".PP\n");
        } else {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The man page vmemu(1) in roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone()).title("VMEMU").section("1");
    let mut page = String::new();
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    page.push_str(&String::from_utf8_lossy(&buf));

    page.push_str(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub
            .get_bin_name()
            .map_or_else(|| format!("vmemu {}", sub.get_name()), str::to_string);
        page.push_str(&format!(".SS {}\n", quoted(&name)));
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            page.push_str(&text(&about.to_string()));
        }
        // Global options (--color) are described once, under OPTIONS.
        let mut local = sub.clone();
        for id in cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().clone())
        {
            local = local.mut_arg(id, |a| a.hide(true));
        }
        let m = Man::new(local.clone());
        page.push_str(".PP\n");
        page.push_str(&body(|b| m.render_synopsis_section(b))?);
        if local.get_arguments().any(|a| !a.is_hide_set()) {
            page.push_str(&body(|b| m.render_options_section(b))?);
        }
        if let Some(after) = sub.get_after_long_help().or_else(|| sub.get_after_help()) {
            page.push_str(".PP\n");
            page.push_str(".nf\n");
            page.push_str(&text(&after.to_string()));
            page.push_str(".fi\n");
        }
    }

    page.push_str(".SH EXAMPLES\n.nf\n");
    if let Some(after) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        let after = after.to_string();
        let examples: Vec<&str> = after
            .lines()
            .filter(|l| *l != "Examples:")
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect();
        page.push_str(&text(&examples.join("\n")));
    }
    page.push_str(".fi\n");
    page.push_str(
        ".SH \"EXIT STATUS\"\n\
         .TP\n0\nEverything ran and every outcome held.\n\
         .TP\n1\nAn outcome failed: an expect, a leaked page reference or an unexpected event.\n\
         .TP\n2\nA usage or script error (reported as file:line:col with the line and a caret).\n",
    );
    page.push_str(
        ".SH ENVIRONMENT\n\
         .TP\nNO_COLOR\nWhen set and not empty, \\fB\\-\\-color auto\\fR does not colour.\n\
         .TP\nCLICOLOR_FORCE\nWhen set and not 0, \\fB\\-\\-color auto\\fR colours even when not writing to a terminal (NO_COLOR wins).\n",
    );
    page.push_str(
        ".SH \"SEE ALSO\"\n\
         The workload language: docs/workloads.md in the vmemu sources.\n\
         .br\n\
         KTAP: Documentation/dev-tools/ktap.rst in the Linux kernel sources.\n",
    );
    let mut tail = Vec::new();
    man.render_version_section(&mut tail)?;
    page.push_str(&String::from_utf8_lossy(&tail));
    // Every rendered part starts with the same string definition; keep the
    // first.
    let mut seen = std::collections::HashSet::new();
    let page: String = page
        .lines()
        .filter(|l| !l.contains(".ds Aq") || seen.insert(l.to_string()))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(page.into_bytes())
}
