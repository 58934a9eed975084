//! Arch identity stays in `arch/`: no source file of another crate compares
//! `A::ID` or matches on an `ArchId` variant. What differs between arches
//! is a constant or method of `Arch` / `Layout` (or of `ArchId` for the
//! run-time tables); the harness picks the arch at the edge with
//! `with_arch!`. The patterns are those of the project's check:
//! `A::ID *[=!]=`, `ArchId::<variant> *=>`, `== *ArchId::`.

use std::fs;
use std::path::{Path, PathBuf};

/// Whether `line` tests arch identity by one of the three patterns.
fn identity_test(line: &str) -> bool {
    let b = line.as_bytes();
    let skip_spaces = |mut i: usize| {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        i
    };
    for (at, _) in line.match_indices("A::ID") {
        let i = skip_spaces(at + "A::ID".len());
        if i + 1 < b.len() && (b[i] == b'=' || b[i] == b'!') && b[i + 1] == b'=' {
            return true;
        }
    }
    for (at, _) in line.match_indices("ArchId::") {
        let mut i = at + "ArchId::".len();
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let j = skip_spaces(i);
        if i > start && b[j..].starts_with(b"=>") {
            return true;
        }
    }
    for (at, _) in line.match_indices("==") {
        if b[skip_spaces(at + 2)..].starts_with(b"ArchId::") {
            return true;
        }
    }
    false
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_pattern_finds_identity_tests() {
    for yes in [
        "if A::ID == ArchId::Arm64 {",
        "if A::ID!=vmemu_arch::ArchId::X86_64 {",
        "        ArchId::Ppc64 => 64 << 10,",
        "let x = set.iter().position(|&y| y == ArchId::X86_64);",
        "if arch ==ArchId::X86_64 {",
    ] {
        assert!(identity_test(yes), "{yes}");
    }
    for no in [
        "let _ = writeln!(out, \"on {}\", A::ID);",
        "out.extend(ArchId::MAIN);",
        "for a in ArchId::ALL {",
        "let run = run(&w, ArchId::Arm64, \"v4.10\");",
        "if A::TLB_FLUSH_IPI {",
    ] {
        assert!(!identity_test(no), "{no}");
    }
}

#[test]
fn no_arch_identity_test_outside_arch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut crates = 0;
    for e in fs::read_dir(&root).unwrap().flatten() {
        let src = e.path().join("src");
        if e.file_name() == "arch" || e.file_name() == "target" || !src.is_dir() {
            continue;
        }
        crates += 1;
        rust_files(&src, &mut files);
    }
    assert!(crates >= 3, "expected mm/, iter/, harness/ beside arch/");
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut found = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if identity_test(line) {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "arch identity tested outside arch/ (make it an Arch/Layout item):\n{}",
        found.join("\n")
    );
}
