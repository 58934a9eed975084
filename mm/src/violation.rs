//! Typed invariant violations and the known-bug classes they, the events
//! and the fuzzer's cross-run checks belong to.
//!
//! A checker returns a [`Violation`]: a [`ViolationKind`] (what part of the
//! state is wrong) and a message for people. Code that decides what a
//! violation *means* — the fuzzer telling a finding from a failure — reads
//! the kind and its [`BugClass`], never the message, so rewording a message
//! changes no verdict. A profile says which classes its knobs are known to
//! have (`Knobs::known_bugs` in `profile`).

use std::fmt;

use crate::event::EventKind;

/// A class of kernel bug from the known-bugs catalogue (spec
/// known-bugs.md): what a run shows when the kernel under test has it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum BugClass {
    /// A file's cached bytes changed through a path without write
    /// permission (Dirty COW, Dirty Pipe).
    PageCacheCorrupted,
    /// Memory used after its page was freed (a wrapped `_refcount`,
    /// CVE-2019-11487; a fuse request ended under the server's copy).
    UseAfterFree,
    /// Bytes nobody wrote handed to user space (CVE-2017-5550).
    Infoleak,
    /// A pin no longer the page its process maps (GUP pins vs fork).
    PinDetached,
    /// A write reused a page shared at fork that others still reference
    /// (CVE-2020-29374).
    SharedPageReused,
    /// A write landed in the (huge) zero page (Huge Dirty COW,
    /// CVE-2017-1000405).
    ZeroPageCorrupted,
    /// A gathering result that does not hold the iterator's bytes (the
    /// posted `+layton` patch's non-adjacent stitching, flaw (a)).
    DataMismatch,
    /// A reference a caller never puts because the result's byte count does
    /// not reach a page the array holds (the posted `+layton` patch's
    /// per-segment *start* subtraction, flaw (b)).
    LeakedReference,
    /// 6.x `iov_iter_get_pages2`/`_alloc2` on a bvec iterator whose current
    /// element is empty and not page-aligned: 0 bytes with one page
    /// referenced, a reference no caller puts (`first_bvec_segment` does
    /// not skip empty elements; `want_pages_array` sizes one slot for the
    /// offset).
    EmptyBvecPageRef,
}

impl BugClass {
    /// Every class, in catalogue order.
    pub const ALL: [BugClass; 9] = [
        BugClass::PageCacheCorrupted,
        BugClass::UseAfterFree,
        BugClass::Infoleak,
        BugClass::PinDetached,
        BugClass::SharedPageReused,
        BugClass::ZeroPageCorrupted,
        BugClass::DataMismatch,
        BugClass::LeakedReference,
        BugClass::EmptyBvecPageRef,
    ];

    /// The name in transcripts and fuzz signatures (the event's name where
    /// the class has an event).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BugClass::PageCacheCorrupted => "page_cache_corrupted",
            BugClass::UseAfterFree => "use_after_free",
            BugClass::Infoleak => "infoleak",
            BugClass::PinDetached => "pin_detached",
            BugClass::SharedPageReused => "shared_page_reused",
            BugClass::ZeroPageCorrupted => "zero_page_corrupted",
            BugClass::DataMismatch => "data_mismatch",
            BugClass::LeakedReference => "leaked_reference",
            BugClass::EmptyBvecPageRef => "empty_bvec_page_ref",
        }
    }
}

impl fmt::Display for BugClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl EventKind {
    /// The known-bug class this event is the emulated kernel's own
    /// observation of, if any.
    #[must_use]
    pub fn bug_class(self) -> Option<BugClass> {
        match self {
            EventKind::PageCacheCorrupted => Some(BugClass::PageCacheCorrupted),
            EventKind::UseAfterFree => Some(BugClass::UseAfterFree),
            EventKind::Infoleak => Some(BugClass::Infoleak),
            EventKind::PinDetached => Some(BugClass::PinDetached),
            EventKind::SharedPageReused => Some(BugClass::SharedPageReused),
            EventKind::ZeroPageCorrupted => Some(BugClass::ZeroPageCorrupted),
            EventKind::DataMismatch => Some(BugClass::DataMismatch),
            EventKind::EmptyBvecPageRef => Some(BugClass::EmptyBvecPageRef),
            EventKind::TableOverrun
            | EventKind::ZeroLengthWalk
            | EventKind::KernelBug
            | EventKind::Deadlock
            | EventKind::Blocked
            | EventKind::SoftLockup
            | EventKind::RefUnderflow => None,
        }
    }
}

/// What part of the state an invariant violation is about.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum ViolationKind {
    /// Table pages: reachability, links between levels, x86's shared
    /// kernel half, the deferred-free list.
    PageTable,
    /// A present user leaf against its VMA and its frame (permissions,
    /// special, huge, outside every VMA, outside memory).
    UserLeaf,
    /// `struct page` accounting: refcount, mapcount, pincount, owners, a
    /// freed frame still mapped, held or cached.
    PageAccounting,
    /// A frame freed while references to it were still out (the counter
    /// wrapped: CVE-2019-11487).
    FreedWhileReferenced,
    /// The huge zero page does not read as zero (a write landed in it).
    HugeZeroPage,
    /// A pipe's ring: sizes, slots, ops, the pages its buffers hold.
    PipeRing,
    /// A pipe slot holds bytes nobody wrote (CVE-2017-5550).
    PipeUnwritten,
    /// An iterator's own state: index, segments, offset, count.
    Iterator,
}

impl ViolationKind {
    /// The known-bug class a violation of this kind shows, if any.
    #[must_use]
    pub fn bug_class(self) -> Option<BugClass> {
        match self {
            ViolationKind::FreedWhileReferenced => Some(BugClass::UseAfterFree),
            ViolationKind::HugeZeroPage => Some(BugClass::ZeroPageCorrupted),
            ViolationKind::PipeUnwritten => Some(BugClass::Infoleak),
            ViolationKind::PageTable
            | ViolationKind::UserLeaf
            | ViolationKind::PageAccounting
            | ViolationKind::PipeRing
            | ViolationKind::Iterator => None,
        }
    }
}

/// One invariant violation. It reads as its message (`Display`, `Deref`
/// to `str`), so that people and tests see the text; code that decides
/// reads [`Violation::kind`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Violation {
    /// What is wrong.
    pub kind: ViolationKind,
    /// The state that is wrong, for people.
    pub msg: String,
}

impl Violation {
    /// A violation of `kind`.
    #[must_use]
    pub fn new(kind: ViolationKind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::ops::Deref for Violation {
    type Target = str;
    fn deref(&self) -> &str {
        &self.msg
    }
}

impl std::borrow::Borrow<str> for Violation {
    fn borrow(&self) -> &str {
        &self.msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_have_distinct_names_and_events_name_their_class() {
        let mut names: Vec<_> = BugClass::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BugClass::ALL.len());
        for k in [
            EventKind::Infoleak,
            EventKind::PinDetached,
            EventKind::ZeroPageCorrupted,
            EventKind::DataMismatch,
            EventKind::EmptyBvecPageRef,
        ] {
            assert_eq!(k.bug_class().map(BugClass::name), Some(k.name()));
        }
        assert_eq!(EventKind::KernelBug.bug_class(), None);
    }

    #[test]
    fn a_violation_reads_as_its_message() {
        let v = Violation::new(ViolationKind::PipeUnwritten, "pipe 0: slot 1");
        assert!(v.contains("slot 1"));
        assert_eq!([v.clone(), v].join("; "), "pipe 0: slot 1; pipe 0: slot 1");
    }
}
