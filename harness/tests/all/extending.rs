//! docs/extending.md, followed literally: its workload excerpt is the
//! built-in workload it names, its workloads pass under every profile and
//! arch they declare, the knobs and commits of its table are the ones
//! `vmemu list` prints for `v6.18`, and the profiles it says are refused are.

use vmemu_arch::ArchId;
use vmemu_harness::{lang, run, workloads::BUILTIN};
use vmemu_mm::KernelProfile;
use vmemu_mm::profile::ProfileError;

fn guide() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/extending.md");
    std::fs::read_to_string(p).expect("docs/extending.md")
}

fn builtin(name: &str) -> &'static str {
    BUILTIN
        .iter()
        .find(|(f, _)| f.strip_suffix(".vmw") == Some(name))
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("{name} is not a built-in workload"))
}

#[test]
fn the_guides_excerpt_is_the_workload_it_names() {
    let g = guide();
    let start = g.find("```vmw\n").expect("a vmw block") + "```vmw\n".len();
    let block = &g[start..start + g[start..].find("```").expect("block end")];
    assert!(
        builtin("post_6_13_changes").contains(block),
        "the excerpt in docs/extending.md is not in post_6_13_changes.vmw:\n{block}"
    );
}

#[test]
fn the_guides_workloads_pass_on_every_arch_and_profile_they_declare() {
    for name in ["post_6_13_changes", "dio_extract_align"] {
        assert!(guide().contains(&format!("harness/workloads/{name}.vmw")));
        let w = lang::parse(&format!("{name}.vmw"), builtin(name)).expect("parses");
        let kernels = run::default_kernels(&w);
        assert!(kernels.len() >= 2, "{name} compares profiles");
        let mut runs = 0;
        for a in ArchId::MAIN {
            if !run::applies(&w, a) {
                continue;
            }
            for k in &kernels {
                let r = run::run(&w, a, k).expect("runs");
                assert!(r.summary.passed, "{name} {a} {k}:\n{}", run::format_run(&r));
                runs += 1;
            }
        }
        assert!(runs >= 4, "{name}: {runs} runs");
    }
}

#[test]
fn the_guides_knob_table_is_what_list_prints_for_v6_18() {
    let g = guide();
    let v613 = KernelProfile::parse("v6.13").unwrap().knob_table();
    let v618 = KernelProfile::parse("v6.18").unwrap().knob_table();
    for (knob, commit) in [
        ("dio_align_in_bio", "5ff3f74e145a"),
        ("pipe_write_no_empty_buf", "ee5eda8ea595"),
        ("write_prefault_after_copy", "665575cff098"),
    ] {
        let row = format!("| `{knob}` | false | true |");
        assert!(g.contains(&row), "guide lacks `{row}`");
        let new = v618.iter().find(|r| r.0 == knob).expect("knob listed");
        let old = v613.iter().find(|r| r.0 == knob).expect("knob listed");
        assert_eq!(
            (old.1.as_str(), new.1.as_str()),
            ("false", "true"),
            "{knob}"
        );
        assert!(
            new.2.contains(commit) && g.contains(commit),
            "{knob}: {commit}"
        );
    }
}

#[test]
fn the_guides_overlay_applies_where_it_says_and_is_refused_elsewhere() {
    let g = guide();
    let k = KernelProfile::parse("v6.18+dio-extract-align").expect("the overlay");
    assert!(k.knobs.dio_extract_align);
    for refused in ["v6.13+dio-extract-align", "v6.13+capper", "v6.13+layton"] {
        assert!(g.contains(&format!("`{refused}`")), "{refused}");
        assert!(
            matches!(
                KernelProfile::parse(refused),
                Err(ProfileError::Inapplicable { .. })
            ),
            "{refused}"
        );
    }
    assert!(KernelProfile::builtin_names().contains(&"v6.18+dio-extract-align"));
}
