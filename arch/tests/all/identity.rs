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

#[test]
fn arch_items_agree_with_the_arch() {
    use vmemu_arch::{Arch, ArchId, Family, Pfn, Pte, PteFlags, with_arch};
    for a in ArchId::ALL {
        with_arch!(a, A => {
            assert_eq!(a.page_size(), A::PAGE_SIZE, "{a}");
            let p = a.partner();
            assert_ne!(p, a);
            if ArchId::MAIN.contains(&a) || a.mmu() == ArchId::Ppc64 {
                assert_eq!(p.partner(), a, "{a}");
                // Same page size, or the other page size of the same MMU.
                assert!(p.page_size() == a.page_size() || a.name().starts_with("ppc64"));
            } else {
                // A geometry variant: compared with a main arch.
                assert!(ArchId::MAIN.contains(&p), "{a}");
            }
            // Qualifiers of a workload that never names a variant answer for
            // it with the main arch of its MMU.
            assert_eq!(a.qualifier_alias().mmu(), a.mmu(), "{a}");
            assert!(
                ArchId::MAIN.contains(&a.qualifier_alias()) || a == ArchId::Ppc64_4k,
                "{a}"
            );
            for fam in [Family::Legacy, Family::Modern] {
                assert!(A::VMEMMAP_START >= A::layout(fam).task_size_max, "{a}");
                // A write-protected user leaf decodes without WRITE, and
                // with the hardware read-only bit exactly on arm64.
                let rw = PteFlags::VALID
                    | PteFlags::PRESENT
                    | PteFlags::LEAF
                    | PteFlags::USER
                    | PteFlags::READ
                    | PteFlags::WRITE;
                let ro = A::pte_wrprotect(rw);
                assert!(!ro.contains(PteFlags::WRITE), "{a}");
                let raw = A::encode(fam, A::leaf_level(), Pte { flags: ro, pfn: Pfn(7) });
                let back = A::decode(fam, A::leaf_level(), raw);
                assert!(!back.has(PteFlags::WRITE), "{a} {fam:?}");
                assert_eq!(back.has(PteFlags::RDONLY), a.mmu() == ArchId::Arm64, "{a} {fam:?}");
            }
            // Execute-only: only arm64 leaves the user bit clear.
            // Execute-only: only arm64 v4.x (PAGE_EXECONLY) leaves the user
            // bit clear; only powerpc 6.x (PAGE_EXECONLY_X) the read bit, and
            // there alone a read fault in such a VMA is an access error.
            let legacy = A::exec_only_prot(Family::Legacy);
            let modern = A::exec_only_prot(Family::Modern);
            assert_eq!(legacy.contains(PteFlags::USER), a.mmu() != ArchId::Arm64, "{a}");
            assert!(modern.contains(PteFlags::USER), "{a}");
            assert_eq!(modern.contains(PteFlags::READ), a.mmu() != ArchId::Ppc64, "{a}");
            assert!(legacy.contains(PteFlags::READ) || a.mmu() == ArchId::Arm64, "{a}");
            assert_eq!(
                A::exec_only_read_is_access_error(Family::Modern),
                a.mmu() == ArchId::Ppc64,
                "{a}"
            );
            assert!(!A::exec_only_read_is_access_error(Family::Legacy), "{a}");
            assert_eq!(A::PRIVATE_GUP_FAST, a.mmu() == ArchId::X86_64);
            assert_eq!(a.name().parse::<ArchId>(), Ok(a));
        });
    }
}
