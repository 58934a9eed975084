//! The JSON Lines output of `vmemu run` and `vmemu matrix`: one typed
//! record per line, described in `docs/json.md` and by the JSON Schema
//! `docs/vmemu.schema.json` (`harness/tests/all/json_schema.rs` validates every
//! line of `vmemu matrix --format json` against it).
//!
//! Every record has a `type`: the first is the `header` with the schema
//! version, then per planned run either one `skip` or its `statement`
//! records, its `finding` records and its `summary`. Addresses and other
//! 64-bit values are `"0x…"` strings, so that no consumer rounds them (a
//! ppc64 kernel address such as `0xc008000000000000` is negative as an
//! `i64` and past 2^53 as a `u64`); events are objects with a `kind`.

use serde_json::{Map, Value, json};
use vmemu_mm::EventKind;

use crate::run::{Record, Run};

/// The version of the record layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Operations whose return value is an address (`map`, `kbuf`).
const ADDRESS_OPS: [&str; 2] = ["mmap", "vmalloc"];

/// The first record of a stream.
#[must_use]
pub fn header() -> Value {
    json!({
        "type": "header",
        "schema": SCHEMA_VERSION,
        "generator": concat!("vmemu ", env!("CARGO_PKG_VERSION")),
    })
}

/// `value` (a record struct of `vmemu fuzz` or `vmemu bench`) as a
/// record of type `kind`: its fields and `"type": kind`, keys in
/// alphabetical order like every record of `vmemu matrix`.
#[must_use]
pub fn typed(kind: &str, value: &impl serde::Serialize) -> Value {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("type".into(), json!(kind));
    }
    v
}

/// `v` as a JSON integer when it is exact in every consumer (32-bit range)
/// and not an address, else as the `"0x…"` string of its 64 bits.
#[must_use]
pub fn int_or_hex(v: i64, address: bool) -> Value {
    if !address && i32::try_from(v).is_ok() {
        json!(v)
    } else {
        json!(format!("{:#x}", v as u64))
    }
}

/// An unsigned 64-bit count or address as the `"0x…"` string it must be
/// past 2^31, an integer below.
#[must_use]
pub fn u64_value(v: u64) -> Value {
    match i32::try_from(v) {
        Ok(n) => json!(n),
        Err(_) => json!(format!("{v:#x}")),
    }
}

/// An event of a transcript (`kind: detail`, as the text transcript shows
/// it) as an object: its `kind`, its `message`, and for a
/// `table_overrun` the `level` whose table the walk ran off and the
/// `index` it reached.
#[must_use]
pub fn event(text: &str) -> Value {
    let (kind, message) = text.split_once(": ").unwrap_or((text, ""));
    let mut o = Map::new();
    o.insert("kind".into(), json!(kind));
    o.insert("message".into(), json!(message));
    if let Some(k) = EventKind::from_name(kind)
        && let Some(class) = k.bug_class()
    {
        o.insert("bug_class".into(), json!(class.to_string()));
    }
    if kind == EventKind::TableOverrun.name()
        && let Some((level, index)) = overrun_place(message)
    {
        o.insert("level".into(), json!(level));
        o.insert("index".into(), json!(index));
    }
    Value::Object(o)
}

/// The level and index of a `table_overrun` message (`... advanced the
/// pmd pointer to index 512, past ...`).
fn overrun_place(message: &str) -> Option<(&str, u64)> {
    let rest = message.split_once("advanced the ")?.1;
    let (level, rest) = rest.split_once(" pointer to index ")?;
    let index = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((level, index.parse().ok()?))
}

/// The record of one statement.
#[must_use]
pub fn statement(r: &Record) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!("statement"));
    o.insert("workload".into(), json!(r.workload));
    o.insert("arch".into(), json!(r.arch));
    o.insert("kernel".into(), json!(r.kernel));
    o.insert("line".into(), json!(r.line));
    o.insert("op".into(), json!(r.op));
    o.insert("text".into(), json!(r.text));
    let address = ADDRESS_OPS.contains(&r.op.as_str()) && r.errno.is_none();
    o.insert(
        "ret".into(),
        r.ret.map_or(Value::Null, |v| int_or_hex(v, address)),
    );
    o.insert("errno".into(), json!(r.errno));
    o.insert("pages".into(), json!(r.pages));
    let events: Vec<Value> = r.events.iter().map(|e| event(e)).collect();
    o.insert("events".into(), Value::Array(events));
    o.insert("ok".into(), json!(r.ok));
    o.insert("detail".into(), json!(r.detail));
    if let Some(io) = &r.io {
        o.insert("io".into(), io_value(io));
    }
    if let Some(v) = &r.show {
        o.insert("show".into(), v.json.clone());
    }
    Value::Object(o)
}

fn io_value(io: &crate::run::Io) -> Value {
    let units: Vec<Value> = io
        .units
        .iter()
        .map(|u| json!({"kind": u.kind, "bytes": u64_value(u.bytes), "pages": u64_value(u.pages)}))
        .collect();
    json!({
        "model": io.model,
        "units": units,
        "get_pages_calls": u64_value(io.get_pages_calls),
        "pages_pinned": u64_value(io.pages_pinned),
        "refs_taken": u64_value(io.refs_taken),
        "put_early": u64_value(io.put_early),
        "allocations": u64_value(io.allocations),
        "notes": io.notes,
    })
}

/// A run's findings: each event of a known-bug class
/// ([`EventKind::bug_class`]) with the line that raised it. A finding is
/// the modelled kernel's flaw shown, not a failure of the run.
#[must_use]
pub fn findings(run: &Run) -> Vec<Value> {
    let s = &run.summary;
    let mut out = Vec::new();
    for r in &run.records {
        for e in &r.events {
            let ev = event(e);
            if let Some(class) = ev.get("bug_class") {
                out.push(json!({
                    "type": "finding",
                    "workload": s.workload,
                    "arch": s.arch,
                    "kernel": s.kernel,
                    "line": r.line,
                    "class": class,
                    "kind": ev["kind"],
                    "message": ev["message"],
                }));
            }
        }
    }
    out
}

/// The summary record of a run; a failed run's also lists its failed
/// expects and `rerun`, the command that reruns it.
#[must_use]
pub fn summary(run: &Run, rerun: &str) -> Value {
    let s = &run.summary;
    let unexpected: Vec<Value> = s.unexpected_events.iter().map(|e| event(e)).collect();
    let mut v = json!({
        "type": "summary",
        "workload": s.workload,
        "arch": s.arch,
        "kernel": s.kernel,
        "passed": s.passed,
        "expects": s.expects,
        "failed_expects": s.failed_expects,
        "leaked_refs": u64_value(s.leaked_refs),
        "leaked_pages": s.leaked_pages,
        "expected_leaks": u64_value(s.expected_leaks),
        "unexpected_events": unexpected,
        "invariant_violations": s.invariant_violations,
        "findings": findings(run).len(),
    });
    if !s.passed {
        let failed: Vec<Value> = crate::run::failed_expects(run)
            .into_iter()
            .map(|(line, text, got)| json!({"line": line, "text": text, "got": got}))
            .collect();
        v["failed"] = Value::Array(failed);
        v["rerun"] = json!(rerun);
    }
    v
}

/// The record of a planned run that is not run, and why.
#[must_use]
pub fn skip(workload: &str, arch: &str, kernel: &str, reason: &str) -> Value {
    json!({
        "type": "skip",
        "workload": workload,
        "arch": arch,
        "kernel": kernel,
        "reason": reason,
    })
}

/// Every line of one run: its statements, findings and summary.
#[must_use]
pub fn run_lines(run: &Run, rerun: &str) -> Vec<Value> {
    let mut v: Vec<Value> = run.records.iter().map(statement).collect();
    v.extend(findings(run));
    v.push(summary(run, rerun));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_hex_and_small_values_numbers() {
        assert_eq!(int_or_hex(-14, false), json!(-14));
        assert_eq!(int_or_hex(4096, false), json!(4096));
        assert_eq!(
            int_or_hex(0xc008_0000_0000_0000_u64 as i64, false),
            json!("0xc008000000000000")
        );
        assert_eq!(int_or_hex(0x1000, true), json!("0x1000"));
        assert_eq!(u64_value(1 << 40), json!("0x10000000000"));
    }

    #[test]
    fn events_are_objects_with_their_kind() {
        let e = event(
            "table_overrun: gup-fast advanced the pmd pointer to index 512, past the end of its 512-entry table",
        );
        assert_eq!(e["kind"], "table_overrun");
        assert_eq!(e["level"], "pmd");
        assert_eq!(e["index"], 512);
        let e = event("infoleak: pipe_read hands user space 8 bytes nobody wrote");
        assert_eq!(e["kind"], "infoleak");
        assert_eq!(e["bug_class"], "infoleak");
        assert!(e.get("level").is_none());
    }
}
