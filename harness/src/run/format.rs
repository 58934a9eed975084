//! The text transcript: records, I/O reports and run summaries, with
//! optional ANSI styles.

use super::*;

/// Style of passing words (`pass`) in coloured text output.
pub const PASS_STYLE: anstyle::Style = anstyle::AnsiColor::Green.on_default().bold();
/// Style of failing words (`FAIL`, `-> FAILED ...`) in coloured text output.
pub const FAIL_STYLE: anstyle::Style = anstyle::AnsiColor::Red.on_default().bold();

/// `text` wrapped in the escapes of `style` when `color`.
#[must_use]
pub fn paint(text: &str, style: anstyle::Style, color: bool) -> String {
    if color {
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

/// Text form of one record.
#[must_use]
pub fn format_record(r: &Record) -> String {
    format_record_with(r, false)
}

/// Text form of one record, with a failed expect's `-> FAILED ...` in
/// [`FAIL_STYLE`] when `color`.
#[must_use]
pub fn format_record_with(r: &Record, color: bool) -> String {
    let mut s = format!("L{:<3} {}", r.line, r.text);
    if let Some(ok) = r.ok {
        if ok {
            s.push_str("  -> ok");
        } else {
            s.push_str("  ");
            let failed = format!("-> {}", r.detail.as_deref().unwrap_or("FAILED"));
            s.push_str(&paint(&failed, FAIL_STYLE, color));
        }
        return s;
    }
    if let Some(v) = r.ret {
        s.push_str(&format!("  = {}", fmt_ret(v)));
    }
    if !r.pages.is_empty() {
        s.push_str(&format!(" [{}]", r.pages.join(", ")));
    }
    if let Some(d) = &r.detail {
        s.push_str(&format!("  ({d})"));
    }
    if let Some(io) = &r.io {
        s.push_str(&format_io(io));
    }
    if let Some(v) = &r.show {
        for l in &v.lines {
            s.push_str("\n       ");
            s.push_str(l);
        }
    }
    for e in &r.events {
        s.push_str(&format!("\n       event {e}"));
    }
    s
}

/// Continuation lines of a caller model's record: its units (runs of equal
/// units collapsed), its page traffic, its notes.
fn format_io(io: &Io) -> String {
    let mut s = format!("\n       io {}:", io.model);
    if io.units.is_empty() {
        s.push_str(" no I/O");
    }
    let mut i = 0;
    let mut parts = Vec::new();
    while i < io.units.len() {
        let u = &io.units[i];
        let mut n = 1;
        while i + n < io.units.len() && io.units[i + n] == *u {
            n += 1;
        }
        let one = format!(
            "{}({} bytes, {} page{})",
            u.kind,
            u.bytes,
            u.pages,
            if u.pages == 1 { "" } else { "s" }
        );
        parts.push(if n > 1 { format!("{n} x {one}") } else { one });
        i += n;
    }
    if !parts.is_empty() {
        s.push(' ');
        s.push_str(&parts.join(", "));
    }
    s.push_str(&format!(
        "\n       pages: {} gathering call(s) -> {} page(s); consumer refs {}; put early {}; arrays {}",
        io.get_pages_calls, io.pages_pinned, io.refs_taken, io.put_early, io.allocations
    ));
    for n in &io.notes {
        s.push_str(&format!("\n       note: {n}"));
    }
    s
}

/// Text transcript of a run.
#[must_use]
pub fn format_run(run: &Run) -> String {
    format_run_with(run, false)
}

/// Text transcript of a run, with `pass`/`FAIL` and failed expects coloured
/// when `color`.
#[must_use]
pub fn format_run_with(run: &Run, color: bool) -> String {
    let sm = &run.summary;
    let mut out = format!("# {} on {} under {}\n", sm.workload, sm.arch, sm.kernel);
    // Most lines are short: one reservation instead of doublings (a long
    // transcript would otherwise peak at twice its size).
    out.reserve(run.records.len() * 64);
    for r in &run.records {
        out.push_str(&format_record_with(r, color));
        out.push('\n');
    }
    out.push_str(&format!(
        "# {}: {} expects, {} failed, {} references leaked{}{}{}\n",
        if sm.passed {
            paint("pass", PASS_STYLE, color)
        } else {
            paint("FAIL", FAIL_STYLE, color)
        },
        sm.expects,
        sm.failed_expects,
        sm.leaked_refs,
        match (sm.leaked_pages.is_empty(), sm.expected_leaks) {
            (true, 0) => String::new(),
            (false, 0) => format!(" ({})", sm.leaked_pages.join(", ")),
            (_, n) => format!(
                " ({}; {n} declared by `expect leaked`)",
                sm.leaked_pages.join(", ")
            ),
        },
        if sm.unexpected_events.is_empty() {
            String::new()
        } else {
            format!(", unexpected events: {}", sm.unexpected_events.join("; "))
        },
        if sm.invariant_violations == 0 {
            String::new()
        } else {
            ", invariant or oracle violated".to_string()
        }
    ));
    out
}
