//! The VMAs of one address space, ordered by start address, with the gaps
//! between them indexed for `get_unmapped_area`.
//!
//! The kernel keeps VMAs in an augmented rbtree (4.x, `rb_subtree_gap`) or
//! a maple tree (6.1+, which records the largest gap of every node), so
//! lookups, inserts and the top-down search for a free range are all
//! O(log n). Here a `BTreeMap` keyed by `vm_start` gives O(log n) find,
//! insert, remove and split; a second map holds every non-empty gap below a
//! VMA (keyed by that VMA's start), so the top-down search visits only the
//! gaps too small for the request above the one it takes — none when the
//! address space is packed, as after many `mmap` calls without `MAP_FIXED`.

use std::collections::BTreeMap;
use std::ops::RangeBounds;

/// What the tree needs of a VMA: its bounds (`vm_start`, `vm_end`).
pub trait Bounds {
    /// `vm_start`.
    fn start(&self) -> u64;
    /// `vm_end`.
    fn end(&self) -> u64;
}

/// VMAs by start address, plus the gap index.
#[derive(Clone, Debug)]
pub struct VmaTree<Vma> {
    vmas: BTreeMap<u64, Vma>,
    /// `start -> start - prev.end` for each VMA that has a predecessor and
    /// a free gap below it.
    gaps: BTreeMap<u64, u64>,
}

impl<Vma> Default for VmaTree<Vma> {
    fn default() -> Self {
        Self {
            vmas: BTreeMap::new(),
            gaps: BTreeMap::new(),
        }
    }
}

impl<Vma: Bounds> VmaTree<Vma> {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of VMAs (`mm->map_count`).
    #[must_use]
    pub fn len(&self) -> usize {
        self.vmas.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.vmas.is_empty()
    }

    /// The VMAs in address order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Vma> {
        self.vmas.values()
    }

    /// The VMAs whose start lies in `r`, in address order.
    pub fn range<R: RangeBounds<u64>>(
        &self,
        r: R,
    ) -> impl DoubleEndedIterator<Item = (&u64, &Vma)> {
        self.vmas.range(r)
    }

    /// Inserts (or replaces) the VMA starting at `start`: O(log n).
    pub fn insert(&mut self, start: u64, v: Vma) -> Option<Vma> {
        let old = self.vmas.insert(start, v);
        self.fix_gap(start);
        self.fix_next(start);
        old
    }

    /// Removes the VMA starting at `start`: O(log n).
    pub fn remove(&mut self, start: &u64) -> Option<Vma> {
        let old = self.vmas.remove(start);
        self.gaps.remove(start);
        self.fix_next(*start);
        old
    }

    /// The highest gap of at least `len` bytes below a VMA starting at or
    /// below `at`: that VMA's start. Gaps below the lowest VMA are not
    /// indexed (the caller knows the lowest VMA).
    #[must_use]
    pub fn gap_below_at_most(&self, at: u64, len: u64) -> Option<u64> {
        self.gaps
            .range(..=at)
            .rev()
            .find(|&(_, &g)| g >= len)
            .map(|(&s, _)| s)
    }

    /// Recomputes the gap below the VMA at `start` (if it exists).
    fn fix_gap(&mut self, start: u64) {
        let Some(v) = self.vmas.get(&start) else {
            self.gaps.remove(&start);
            return;
        };
        let prev_end = self.vmas.range(..start).next_back().map(|(_, p)| p.end());
        match prev_end {
            Some(e) if e < v.start() => {
                self.gaps.insert(start, v.start() - e);
            }
            _ => {
                self.gaps.remove(&start);
            }
        }
    }

    /// Recomputes the gap below the first VMA after `start`.
    fn fix_next(&mut self, start: u64) {
        let next = self
            .vmas
            .range(start.saturating_add(1)..)
            .next()
            .map(|(&s, _)| s);
        if let Some(s) = next
            && s > start
        {
            self.fix_gap(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    struct Vma {
        start: u64,
        end: u64,
    }

    impl Bounds for Vma {
        fn start(&self) -> u64 {
            self.start
        }
        fn end(&self) -> u64 {
            self.end
        }
    }

    fn vma(start: u64, end: u64) -> Vma {
        Vma { start, end }
    }

    /// The gap index agrees with the gaps recomputed from scratch after
    /// every insert and remove of a seeded sequence.
    #[test]
    fn gaps_follow_inserts_and_removes() {
        let mut t: VmaTree<Vma> = VmaTree::new();
        let mut x = 0x1234_5678_u64;
        for _ in 0..2000 {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let page = (x >> 8) % 64;
            let start = page << 12;
            if x & 1 == 0 {
                let len = (1 + (x >> 20) % 3) << 12;
                // Keep VMAs disjoint, as the callers do.
                let clash = t.values().any(|v| v.start < start + len && start < v.end);
                if !clash {
                    t.insert(start, vma(start, start + len));
                }
            } else {
                t.remove(&start);
            }
            let vs: Vec<Vma> = t.values().copied().collect();
            let want: BTreeMap<u64, u64> = vs
                .windows(2)
                .filter(|w| w[0].end < w[1].start)
                .map(|w| (w[1].start, w[1].start - w[0].end))
                .collect();
            assert_eq!(t.gaps, want);
        }
        assert!(t.len() > 5, "the sequence left {} VMAs", t.len());
    }
}
