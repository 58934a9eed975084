//! The bytes a statement writes into user memory (`copy_to_user`,
//! `copy_to_iter`, the `/proc/pid/mem` write of `access_remote_vm`): byte
//! `i` of a write is `i % 251 + 1` (never 0, so a written byte differs from
//! a fresh page's; 251 is prime, so the pattern never lines up with a page).
//!
//! Built by doubling a copy of one period (each step a `memcpy` of what is
//! there) instead of computing byte by byte, and kept for the whole
//! process up to [`KEEP`] bytes (the most one statement may write), so a
//! copy-heavy run pays for its source once rather than per statement
//! (issue 23: generating copy sources byte by byte was 94% of a copy-heavy
//! `vmemu run`). The process keeps as much as the longest write it served;
//! the threads of `vmemu matrix -j N` share that one copy (one per thread
//! was a seventh of the matrix's host page faults, paid once per thread).

use std::sync::{Arc, PoisonError, RwLock};

/// The pattern's period.
const PERIOD: usize = 251;

/// The longest pattern a thread keeps between statements: the 64 MiB a
/// statement may copy at most (`MAX_COPY`; longer writes, which the
/// runner refuses first, would build their own and drop it).
const KEEP: usize = 64 << 20;

/// The kept pattern. A longer one replaces it; callers still reading the
/// old one hold their own reference.
static KEPT: RwLock<Option<Arc<Vec<u8>>>> = RwLock::new(None);

/// Extends `v` (empty, or a whole number of periods long) to at least
/// `len` bytes of the pattern.
fn grow(v: &mut Vec<u8>, len: usize) {
    if v.is_empty() {
        v.extend((0..PERIOD).map(|i| i as u8 + 1));
    }
    while v.len() < len {
        // `v` holds whole periods, so its copy continues the pattern.
        let have = v.len();
        v.extend_from_within(..have.min(len.next_multiple_of(PERIOD) - have));
    }
}

/// The first `len` bytes of the pattern.
#[must_use]
pub(crate) fn pattern(len: u64) -> Vec<u8> {
    let len = usize::try_from(len).expect("a write length fits in memory");
    let mut v = Vec::with_capacity(len.next_multiple_of(PERIOD).max(PERIOD));
    grow(&mut v, len);
    v.truncate(len);
    v
}

/// Calls `f` with the first `len` bytes of the pattern.
pub(crate) fn with_pattern<R>(len: u64, f: impl FnOnce(&[u8]) -> R) -> R {
    let n = usize::try_from(len).expect("a write length fits in memory");
    if n > KEEP {
        return f(&pattern(len));
    }
    let kept = KEPT
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .filter(|k| k.len() >= n);
    let kept = kept.unwrap_or_else(|| {
        let mut slot = KEPT.write().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            // Another thread grew it meanwhile.
            Some(k) if k.len() >= n => Arc::clone(k),
            old => {
                // Whole periods, at least a quarter more than before (few
                // regrowths), but no power-of-two headroom: every byte
                // built is host memory faulted in and kept.
                let had = old.map_or(0, |k| k.len());
                let want = n.max(had + had / 4).next_multiple_of(PERIOD).min(KEEP);
                let mut v = Vec::with_capacity(want.max(n));
                v.extend_from_slice(old.map_or(&[][..], |k| &k[..]));
                grow(&mut v, want.max(n));
                let k = Arc::new(v);
                *slot = Some(Arc::clone(&k));
                k
            }
        }
    });
    f(&kept[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 + 1).collect()
    }

    /// The doubling build and the kept buffer give the byte-by-byte pattern,
    /// at every length around the period and its powers of two, and after a
    /// longer write has grown the kept buffer.
    #[test]
    fn pattern_is_the_byte_by_byte_one() {
        for len in [
            0,
            1,
            250,
            251,
            252,
            501,
            502,
            503,
            4096,
            65_536,
            1 << 20,
            (1 << 20) + 7,
        ] {
            assert_eq!(pattern(len as u64), slow(len), "pattern({len})");
            with_pattern(len as u64, |p| {
                assert_eq!(p, &slow(len)[..], "with_pattern({len})")
            });
        }
        with_pattern(3000, |p| assert_eq!(p, &slow(3000)[..]));
        // Past what a thread keeps: built for the call, sampled (a 64 MiB
        // comparison byte by byte would dominate the test).
        let big = KEEP + 1000;
        with_pattern(big as u64, |p| {
            assert_eq!(p.len(), big);
            for i in (0..big).step_by(4093).chain(big - 300..big) {
                assert_eq!(p[i], (i % 251) as u8 + 1, "byte {i}");
            }
        });
    }
}
