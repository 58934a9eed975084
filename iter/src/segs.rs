//! The segment array of an iovec/kvec iterator, stored as rules: a group of
//! segments written out once and the number of copies of it, each copy's
//! addresses `step` bytes after the previous copy's (the `.vmw` `repeat N
//! step S` of an `iter` statement). A million-segment iterator costs one
//! group, not a million `iovec`s, and a clone (the harness keeps the
//! iterator as a call found it) shares the rules instead of copying them.
//! Reading segment `i` computes it: the iterator walks the segments it
//! visits, never the ones it merely holds.

use std::sync::Arc;

use vmemu_arch::VirtAddr;

/// An `iovec` / `kvec`: base address and length.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Iovec {
    /// `iov_base`.
    pub base: VirtAddr,
    /// `iov_len`.
    pub len: u64,
}

/// A group of segments and its copies.
#[derive(Debug, PartialEq, Eq)]
struct Rule {
    /// Segments of copy 0.
    group: Vec<Iovec>,
    /// Address distance between consecutive copies.
    step: u64,
    /// Copies (at least 1 when the group is not empty).
    copies: usize,
}

impl Rule {
    fn len(&self) -> usize {
        self.group.len() * self.copies
    }

    fn get(&self, i: usize) -> Iovec {
        let n = self.group.len();
        // No division in the two common shapes: a plain array (one copy of
        // its group) and one segment repeated.
        let (k, j) = if i < n {
            (0, i)
        } else if n == 1 {
            (i, 0)
        } else {
            (i / n, i % n)
        };
        let s = self.group[j];
        Iovec {
            base: s.base.wrapping_add((k as u64).wrapping_mul(self.step)),
            len: s.len,
        }
    }
}

/// The segments `start..start + len` of a rule (shared between clones).
#[derive(Clone, Debug)]
pub struct Segs {
    rule: Arc<Rule>,
    start: usize,
    len: usize,
}

impl Default for Segs {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl From<Vec<Iovec>> for Segs {
    fn from(group: Vec<Iovec>) -> Self {
        Self::repeat(group, 0, 1)
    }
}

impl PartialEq for Segs {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Segs {}

impl Segs {
    /// `copies` copies of `group`, copy `k`'s addresses `k * step` bytes
    /// after copy 0's (wrapping, as the caller has checked the arithmetic).
    #[must_use]
    pub fn repeat(group: Vec<Iovec>, step: u64, copies: usize) -> Self {
        let copies = if group.is_empty() { 0 } else { copies };
        let rule = Rule {
            group,
            step,
            copies,
        };
        let len = rule.len();
        Self {
            rule: Arc::new(rule),
            start: 0,
            len,
        }
    }

    /// Number of segments.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no segment.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Segment `i`, computed from its rule.
    #[inline]
    #[must_use]
    pub fn get(&self, i: usize) -> Option<Iovec> {
        (i < self.len).then(|| self.rule.get(self.start + i))
    }

    /// The segments in order.
    pub fn iter(&self) -> impl Iterator<Item = Iovec> + '_ {
        (0..self.len).map(|i| self.rule.get(self.start + i))
    }

    /// Segments `from..to` (clamped to the segments there are), sharing
    /// the rule.
    #[must_use]
    pub fn slice(&self, from: usize, to: usize) -> Self {
        let to = to.min(self.len);
        let from = from.min(to);
        Self {
            rule: Arc::clone(&self.rule),
            start: self.start + from,
            len: to - from,
        }
    }

    /// The sum of the segments' lengths, wrapping (what an iterator's
    /// `count` starts from): one pass over the group for a whole rule.
    #[must_use]
    pub fn total_len(&self) -> u64 {
        if self.start == 0 && self.len == self.rule.len() {
            let group = self
                .rule
                .group
                .iter()
                .fold(0u64, |a, s| a.wrapping_add(s.len));
            return group.wrapping_mul(self.rule.copies as u64);
        }
        self.iter().fold(0u64, |a, s| a.wrapping_add(s.len))
    }

    /// The segments written out (for callers that hand an array on, such
    /// as a system call's `iovec` argument).
    #[must_use]
    pub fn to_vec(&self) -> Vec<Iovec> {
        self.iter().collect()
    }

    /// Host bytes the rule holds (its written-out group).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.rule.group.capacity() * std::mem::size_of::<Iovec>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(base: u64, len: u64) -> Iovec {
        Iovec {
            base: VirtAddr(base),
            len,
        }
    }

    #[test]
    fn a_rule_reads_as_its_copies_written_out() {
        let group = vec![iov(0x1000, 10), iov(0x3000, 20)];
        let s = Segs::repeat(group.clone(), 0x10000, 3);
        let written: Vec<Iovec> = (0..3u64)
            .flat_map(|k| {
                group
                    .iter()
                    .map(move |g| iov(g.base.0 + k * 0x10000, g.len))
            })
            .collect();
        assert_eq!(s.len(), 6);
        assert_eq!(s.to_vec(), written);
        assert_eq!(s.total_len(), 90);
        assert_eq!(s.slice(1, 4).total_len(), 20 + 10 + 20);
        assert_eq!(s, Segs::from(written.clone()));
        for (i, w) in written.iter().enumerate() {
            assert_eq!(s.get(i), Some(*w), "segment {i}");
        }
        assert_eq!(s.get(6), None);
        // One segment repeated: copy k is segment k.
        let one = Segs::repeat(vec![iov(0x1000, 8)], 0x200, 5);
        for i in 0..5 {
            assert_eq!(
                one.get(i),
                Some(iov(0x1000 + 0x200 * i as u64, 8)),
                "copy {i}"
            );
        }
        assert_eq!(one.get(5), None);
        let t = s.slice(3, 99);
        assert_eq!(t.to_vec(), written[3..].to_vec());
        assert_eq!(t.slice(1, 2).to_vec(), vec![written[4]]);
        assert!(s.slice(7, 9).is_empty());
        assert!(Segs::repeat(Vec::new(), 8, 5).is_empty());
    }

    #[test]
    fn a_million_copies_cost_one_group() {
        let s = Segs::repeat(vec![iov(0x1000, 1)], 0, 1 << 21);
        assert_eq!(s.len(), 1 << 21);
        assert_eq!(s.heap_bytes(), std::mem::size_of::<Iovec>());
        assert_eq!(s.get((1 << 21) - 1), Some(iov(0x1000, 1)));
        // A clone shares the rule.
        assert!(Arc::ptr_eq(&s.rule, &s.clone().rule));
    }
}
