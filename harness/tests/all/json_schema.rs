//! Every line of `vmemu matrix --format json` validates against the JSON
//! Schema `docs/vmemu.schema.json` (checked with the `boon` validator),
//! the stream has the record types `docs/json.md` describes, and no
//! number in it is outside the range every JSON reader holds exactly; the
//! JSON of `vmemu fuzz`, `vmemu fuzz merge` and `vmemu bench` validates
//! too, each stream opening with the header.

use std::path::Path;
use std::process::Command;

fn schema() -> (boon::Schemas, boon::SchemaIndex) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vmemu.schema.json");
    let text = std::fs::read_to_string(&path).expect("docs/vmemu.schema.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    let mut schemas = boon::Schemas::new();
    let mut c = boon::Compiler::new();
    c.add_resource("vmemu.schema.json", doc)
        .expect("schema resource");
    let idx = c
        .compile("vmemu.schema.json", &mut schemas)
        .expect("the schema compiles");
    (schemas, idx)
}

/// Whether a number is outside what a double holds exactly or below i32.
fn wide_numbers(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Number(n) => {
            let ok = n
                .as_i64()
                .is_some_and(|x| (-(1 << 31)..(1 << 31)).contains(&x));
            if !ok {
                out.push(n.to_string());
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| wide_numbers(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| wide_numbers(x, out)),
        _ => {}
    }
}

/// Runs vmemu with `args`, checks that it exits with one of `codes`, that
/// its first line is the header and every line validates; the count of
/// records per type.
fn validated(
    (schemas, idx): &(boon::Schemas, boon::SchemaIndex),
    args: &[&str],
    codes: &[i32],
) -> (String, std::collections::BTreeMap<String, usize>) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(args)
        .output()
        .expect("vmemu runs");
    assert!(
        out.status.code().is_some_and(|c| codes.contains(&c)),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut types = std::collections::BTreeMap::<String, usize>::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        if let Err(e) = schemas.validate(&v, *idx) {
            panic!("{args:?} line {}: {line}\ndoes not validate: {e:#}", i + 1);
        }
        let t = v["type"].as_str().expect("a type").to_string();
        if i == 0 {
            assert_eq!(t, "header", "{args:?}: the first record is the header");
            assert_eq!(v["schema"], 1);
        }
        *types.entry(t).or_default() += 1;
    }
    (text, types)
}

/// `vmemu fuzz` (plain and `--concurrency`), `vmemu fuzz merge` and
/// `vmemu bench` (a case and the batch-size study): typed records that
/// validate, the header first; the merge reads the shards' files back.
#[test]
fn fuzz_merge_and_bench_json_validate_against_the_schema() {
    let s = schema();
    let dir = std::env::temp_dir().join(format!("vmemu-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for k in 1..=2 {
        let shard = format!("{k}/2");
        let args = [
            "fuzz",
            "--seed",
            "0x5eed",
            "--count",
            "60",
            "--arch",
            "x86_64",
            "--kernel",
            "v4.10+layton",
            "--shard",
            &shard,
            "--format",
            "json",
            "--out",
        ];
        let mut args = args.to_vec();
        let out_dir = dir.display().to_string();
        args.push(&out_dir);
        let (text, types) = validated(&s, &args, &[0, 1]);
        assert_eq!(types.get("fuzz_report"), Some(&1), "{types:?}");
        let p = dir.join(format!("shard-{k}.json"));
        std::fs::write(&p, text).unwrap();
        files.push(p.display().to_string());
    }
    let mut args = vec!["fuzz", "merge", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let (text, types) = validated(&s, &args, &[0, 1]);
    assert_eq!(types.get("fuzz_report"), Some(&1), "{types:?}");
    assert!(text.contains(r#""shard":"1/1""#), "{text}");
    let conc = [
        "fuzz",
        "--concurrency",
        "--seed",
        "7",
        "--count",
        "4",
        "--format",
        "json",
    ];
    let (_, types) = validated(&s, &conc, &[0]);
    assert_eq!(types.get("concurrency_report"), Some(&1), "{types:?}");
    let bench = |filter| {
        let args = [
            "bench", "--filter", filter, "--arch", "x86_64", "--rounds", "3", "--ms", "1",
            "--format", "json",
        ];
        validated(&s, &args, &[0, 1]).1
    };
    let types = bench("S1");
    assert_eq!(
        (types.get("case"), types.get("bench_summary")),
        (Some(&1), Some(&1))
    );
    assert!(bench("batch").get("batch").is_some_and(|&n| n > 1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_matrix_json_line_validates_against_the_schema() {
    let (schemas, idx) = schema();
    let out = Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(["matrix", "--format", "json"])
        .output()
        .expect("vmemu runs");
    assert_eq!(out.status.code(), Some(0), "the matrix passes");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut types = std::collections::BTreeMap::<String, usize>::new();
    let mut wide = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        if let Err(e) = schemas.validate(&v, idx) {
            panic!("line {}: {line}\ndoes not validate: {e:#}", i + 1);
        }
        let t = v["type"].as_str().expect("a type").to_string();
        if i == 0 {
            assert_eq!(t, "header", "the first record is the header");
            assert_eq!(v["schema"], 1);
        }
        *types.entry(t).or_default() += 1;
        wide_numbers(&v, &mut wide);
    }
    assert!(wide.is_empty(), "numbers outside i32: {wide:?}");
    for t in ["header", "statement", "summary", "skip", "finding"] {
        assert!(types.contains_key(t), "no {t} record: {types:?}");
    }
    assert_eq!(types["header"], 1);
    // A ppc64 kernel address is written as hex, never as a negative number.
    assert!(text.contains("\"0xc00"), "no ppc64 kernel address in hex");
}

/// The schema is not vacuous: records with a missing field, a decimal
/// address, a string event or an unknown type are rejected.
#[test]
fn the_schema_rejects_malformed_records() {
    let (schemas, idx) = schema();
    let good = serde_json::json!({
        "type": "statement", "workload": "w", "arch": "ppc64", "kernel": "v6.13",
        "line": 3, "op": "mmap", "text": "map b 1 page", "ret": "0x7fffb0000000",
        "errno": null, "pages": [], "events": [], "ok": null, "detail": null
    });
    assert!(schemas.validate(&good, idx).is_ok());
    let mut bad = Vec::new();
    let mut v = good.clone();
    v["ret"] = serde_json::json!(-4609434218613702656_i64);
    bad.push(("decimal address", v));
    let mut v = good.clone();
    v["events"] = serde_json::json!(["table_overrun: ..."]);
    bad.push(("string event", v));
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("line");
    bad.push(("no line", v));
    let mut v = good.clone();
    v["type"] = serde_json::json!("record");
    bad.push(("unknown type", v));
    let mut v = good;
    v["extra"] = serde_json::json!(1);
    bad.push(("unknown field", v));
    for (what, v) in bad {
        assert!(schemas.validate(&v, idx).is_err(), "{what} accepted");
    }
}
