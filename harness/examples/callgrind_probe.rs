//! A fixed amount of each bench workload, for instruction counts that do not
//! depend on timing:
//!
//! ```text
//! cargo build --release --example callgrind_probe
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/callgrind_probe gup x86_64
//! callgrind_annotate cg.out | head -40
//! ```
//!
//! Cases: `walk-seq`, `walk-rand`, `flat-seq`, `flat-rand` (the yardstick), `gup` (512 pages per call), `gup1` (1 page
//! per call), `thp`, `c1`, `c3`, `matrix`. The setup runs outside the
//! instrumented part (`--collect-atstart=no --toggle-collect=*measured*` to
//! count only the measured passes).

use std::hint::black_box;

use vmemu_arch::{Arch, ArchId, with_arch};
use vmemu_harness::bench::fixtures::{CopyFix, GUP_PAGES, GupFix, THP_PAGES, WALK_PAGES, WalkFix};

#[inline(never)]
fn measured<A: Arch>(
    case: &str,
    walk: Option<&WalkFix<A>>,
    gup: Option<&mut GupFix<A>>,
    copy: Option<&mut CopyFix<A>>,
) {
    match (case, walk, gup, copy) {
        ("walk-seq", Some(w), _, _) => {
            black_box(w.emu(&w.seq));
        }
        ("walk-rand", Some(w), _, _) => {
            black_box(w.emu(&w.rand));
        }
        ("flat-seq", Some(w), _, _) => {
            black_box(w.flat(&w.seq));
        }
        ("flat-rand", Some(w), _, _) => {
            black_box(w.flat(&w.rand));
        }
        ("gup", _, Some(g), _) => {
            g.emu_pass(512, false).expect("gup pass");
        }
        ("gup1", _, Some(g), _) => {
            g.emu_pass(1, false).expect("gup pass");
        }
        ("thp", _, Some(g), _) => {
            g.emu_pass(512, true).expect("gup pass");
        }
        ("c1", _, _, Some(c)) => {
            c.pass(false).expect("copy pass");
        }
        ("c3", _, _, Some(c)) => {
            c.pass(true).expect("copy pass");
        }
        _ => unreachable!(),
    }
}

fn run<A: Arch>(case: &str) {
    match case {
        "walk-seq" | "walk-rand" | "flat-seq" | "flat-rand" => {
            let w = WalkFix::<A>::new(WALK_PAGES).expect("walk fixture");
            black_box(w.emu(&w.seq));
            measured::<A>(case, Some(&w), None, None);
        }
        "gup" | "gup1" | "thp" => {
            let mut g = GupFix::<A>::new(GUP_PAGES, THP_PAGES).expect("gup fixture");
            g.emu_pass(512, case == "thp").expect("warm-up");
            measured::<A>(case, None, Some(&mut g), None);
        }
        "c1" | "c3" => {
            let mut c = CopyFix::<A>::new().expect("copy fixture");
            c.pass(case == "c3").expect("warm-up");
            measured::<A>(case, None, None, Some(&mut c));
        }
        _ => panic!("unknown case {case}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map_or("gup", String::as_str);
    let arch: ArchId = args
        .get(2)
        .map_or("x86_64", String::as_str)
        .parse()
        .expect("an arch name");
    if case == "matrix" {
        vmemu_harness::bench::matrix_once().expect("matrix");
        return;
    }
    with_arch!(arch, A => run::<A>(case));
}
