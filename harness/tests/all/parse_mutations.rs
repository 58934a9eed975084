//! The parser against 10^4 mutations of the built-in workloads (byte flips,
//! truncations, token swaps, duplicated and deleted lines): it never
//! panics, and every error's span lies inside the input (line within the
//! line count, column within the line's length + 1). The same property is
//! fuzzed with libFuzzer by `fuzz/` (cargo-fuzz, outside the workspace).

use vmemu_harness::fuzz::Dice;
use vmemu_harness::fuzz::mutate::mutate;
use vmemu_harness::lang;
use vmemu_harness::workloads::BUILTIN;

#[test]
fn mutated_workloads_never_panic_and_spans_stay_inside() {
    // VMEMU_MUTATIONS=N runs more cases (10^4 by default), VMEMU_SEED another seed.
    let n: u32 = std::env::var("VMEMU_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed = std::env::var("VMEMU_SEED")
        .ok()
        .and_then(|v| vmemu_harness::fuzz::parse_seed(&v).ok())
        .unwrap_or(0x9a75e);
    let mut d = Dice::new(seed);
    let mut errors = 0;
    for case in 0..n {
        let (name, src) = BUILTIN[(case as usize) % BUILTIN.len()];
        let m = mutate(&mut d, src);
        let r = std::panic::catch_unwind(|| lang::parse(name, &m));
        let res = r.unwrap_or_else(|_| panic!("case {case}: the parser panicked on:\n{m}"));
        if let Err(e) = res {
            errors += 1;
            let lines: Vec<&str> = m.lines().collect();
            let (l, c) = (e.span.line, e.span.col);
            assert!(
                l >= 1 && l <= lines.len().max(1),
                "case {case}: line {l} outside 1..={} in\n{m}\n{e}",
                lines.len()
            );
            let len = lines.get(l - 1).map_or(0, |s| s.chars().count());
            assert!(
                c >= 1 && c <= len + 1,
                "case {case}: column {c} outside 1..={} of line {l} `{}`\n{e}",
                len + 1,
                lines.get(l - 1).unwrap_or(&"")
            );
            // The display never panics either and names the place.
            let shown = e.to_string();
            assert!(shown.starts_with(&format!("{name}:{l}:{c}: ")), "{shown}");
        }
    }
    assert!(errors > n / 10, "only {errors} mutations were errors");
}

/// The libFuzzer corpus of `fuzz/` (seeds and past crashers) replayed on
/// stable: no panic, spans inside.
#[test]
fn fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/parse");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("fuzz/corpus/parse exists") {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let src = String::from_utf8_lossy(&bytes).into_owned();
        n += 1;
        if let Err(e) = lang::parse("corpus.vmw", &src) {
            let lines: Vec<&str> = src.lines().collect();
            assert!(
                e.span.line >= 1 && e.span.line <= lines.len().max(1),
                "{}: {e}",
                p.display()
            );
            let len = lines.get(e.span.line - 1).map_or(0, |s| s.chars().count());
            assert!(
                e.span.col >= 1 && e.span.col <= len + 1,
                "{}: {e}",
                p.display()
            );
        }
    }
    assert!(n >= 3);
}
