//! `vmemu bench --probe WHAT --iters N`: one operation repeated N times with
//! no clock, for an instruction counter (callgrind) to count. Set-up is the
//! same whatever N, so the difference of two runs with different N divided
//! by the difference of their units is the instructions per unit — what
//! `tools/icount-guard` compares with its budgets.

use vmemu_arch::{Arch, VirtAddr};
use vmemu_mm::GupFlags;

use super::fixtures::{
    C1_SEGS, C3_SEGS, CopyFix, GUP_PAGES, GupFix, THP_PAGES, WALK_PAGES, WalkFix,
};
use super::system::matrix_once;

/// What a probe repeats.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum Probe {
    /// `get_user_pages_fast(FOLL_WRITE)` in calls of 512 pages, references
    /// kept; unit: a page.
    GupFast,
    /// `get_user_pages_fast(FOLL_WRITE)` of one page per call over the
    /// same region (G3's numerator); unit: a call.
    GupFastOne,
    /// `get_user_pages_fast(FOLL_WRITE)` in calls of 512 pages over the
    /// region mapped by PMD leaves (G4's numerator); unit: a page.
    GupThp,
    /// `copy_to_iter` to 4 KiB user iovecs; unit: a page.
    Copy,
    /// `copy_to_iter` to 512-byte user iovecs (C3's numerator); unit: an
    /// iovec.
    CopySmall,
    /// A software walk of one address, root to leaf; unit: a walk.
    Walk,
    /// The built-in matrix, every run; unit: a whole matrix.
    Matrix,
}

/// Runs `iters` repetitions; returns the units done.
pub fn run<A: Arch>(what: Probe, iters: u64) -> Result<u64, String> {
    match what {
        // The references are kept (a probe process ends right after):
        // releasing them would count put_page as well.
        Probe::GupFast => {
            let mut f = GupFix::<A>::new(GUP_PAGES, 1)?;
            let base = f.base;
            gup_passes(&mut f, base, GUP_PAGES, 512, iters)
        }
        Probe::GupFastOne => {
            let mut f = GupFix::<A>::new(GUP_PAGES, 1)?;
            let base = f.base;
            gup_passes(&mut f, base, GUP_PAGES, 1, iters)
        }
        Probe::GupThp => {
            let mut f = GupFix::<A>::new(512, THP_PAGES)?;
            let thp = f.thp;
            gup_passes(&mut f, thp, THP_PAGES, 512, iters)
        }
        Probe::Copy => {
            let mut f = CopyFix::<A>::new()?;
            for _ in 0..iters {
                f.pass(false)?;
            }
            Ok(iters * C1_SEGS as u64)
        }
        Probe::CopySmall => {
            let mut f = CopyFix::<A>::new()?;
            for _ in 0..iters {
                f.pass(true)?;
            }
            Ok(iters * C3_SEGS as u64)
        }
        Probe::Walk => {
            let f = WalkFix::<A>::new(WALK_PAGES)?;
            let mut sum = 0u64;
            for _ in 0..iters {
                sum = sum.wrapping_add(f.emu(&f.rand));
            }
            std::hint::black_box(sum);
            Ok(iters * WALK_PAGES)
        }
        Probe::Matrix => {
            for _ in 0..iters {
                matrix_once()?;
            }
            Ok(iters)
        }
    }
}

/// `iters` passes of `get_user_pages_fast(FOLL_WRITE)` over the `pages`
/// pages from `base`, `per_call` pages a call; returns the pages taken.
fn gup_passes<A: Arch>(
    f: &mut GupFix<A>,
    base: VirtAddr,
    pages: u64,
    per_call: u64,
    iters: u64,
) -> Result<u64, String> {
    let mut out = Vec::with_capacity(per_call as usize);
    for _ in 0..iters {
        for call in 0..pages / per_call {
            out.clear();
            let start = base.wrapping_add(call * per_call * A::PAGE_SIZE);
            let got =
                f.m.get_user_pages_fast(start, per_call as i64, GupFlags::FOLL_WRITE, &mut out);
            if got != Ok(per_call) {
                return Err(format!(
                    "gup-fast of {per_call} pages at {start} returned {got:?}"
                ));
            }
        }
    }
    Ok(iters * pages)
}
