//! Criterion benches of the micro cases of `vmemu bench` (the walk, gup-fast
//! at several batch sizes, `copy_to_iter` with small iovecs) on x86_64, for
//! profiling and statistics over many samples. The goals and their
//! yardsticks live in `vmemu bench`; CI only builds these
//! (`cargo bench --no-run`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vmemu_arch::X86_64;
use vmemu_harness::bench::fixtures::{CopyFix, GUP_PAGES, GupFix, THP_PAGES, WALK_PAGES, WalkFix};

fn walks(c: &mut Criterion) {
    let w = WalkFix::<X86_64>::new(WALK_PAGES).expect("walk fixture");
    let mut g = c.benchmark_group("walk");
    g.bench_function("emulated seq", |b| b.iter(|| black_box(w.emu(&w.seq))));
    g.bench_function("emulated rand", |b| b.iter(|| black_box(w.emu(&w.rand))));
    g.bench_function("flat seq", |b| b.iter(|| black_box(w.flat(&w.seq))));
    g.bench_function("flat rand", |b| b.iter(|| black_box(w.flat(&w.rand))));
    g.finish();
}

fn gup_fast(c: &mut Criterion) {
    let mut f = GupFix::<X86_64>::new(GUP_PAGES, THP_PAGES).expect("gup fixture");
    let mut g = c.benchmark_group("gup_fast");
    for nr in [1u64, 16, 512] {
        g.bench_function(format!("{nr} pages per call"), |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    t += f.emu_pass(nr, false).expect("gup pass").0;
                }
                t
            })
        });
    }
    g.bench_function("PMD leaves, 512 per call", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                t += f.emu_pass(512, true).expect("gup pass").0;
            }
            t
        })
    });
    g.bench_function("flat limit, 512 per call", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                t += f.flat_pass(512, false).expect("flat pass").0;
            }
            t
        })
    });
    g.finish();
}

fn copies(c: &mut Criterion) {
    let mut f = CopyFix::<X86_64>::new().expect("copy fixture");
    let mut g = c.benchmark_group("copy_to_iter");
    g.sample_size(10);
    g.bench_function("65536 x 512 B iovecs", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                t += f.pass(true).expect("copy pass").0;
            }
            t
        })
    });
    g.finish();
}

criterion_group!(benches, walks, gup_fast, copies);
criterion_main!(benches);
