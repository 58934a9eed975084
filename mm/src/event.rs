//! Events: what the emulator observed besides return values — hazards the
//! modelled kernel would hit (reading past a table, an unbounded walk), kernel
//! contract violations, deadlocks and livelocks detected instead of hung.

use std::fmt;

/// Kind of event, named as in transcripts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum EventKind {
    /// A walk advanced a table pointer past the end of its table.
    TableOverrun,
    /// gup-fast reached its walker with a zero-length range (no guard in the
    /// modelled version: the leaf loop would run until an entry fails).
    ZeroLengthWalk,
    /// A kernel contract was violated (e.g. `->page_mkwrite` returned
    /// `VM_FAULT_RETRY` without `FAULT_FLAG_ALLOW_RETRY`).
    KernelBug,
    /// A cycle in the wait-for graph.
    Deadlock,
    /// A task would sleep on a lock that is not part of a cycle.
    Blocked,
    /// A loop made no progress (the kernel would spin: soft lockup).
    SoftLockup,
    /// A reference count would have gone below zero.
    RefUnderflow,
    /// Memory was written after its owner freed it (a fuse request ended
    /// while the server still copies into the requester's buffer).
    UseAfterFree,
    /// The kernel wrote into a page-cache page through a path that had no
    /// right to change the file (a read-only private mapping, a spliced
    /// buffer): the file's cached bytes change (Dirty COW, Dirty Pipe).
    PageCacheCorrupted,
    /// Bytes a gathering result or an I/O unit built from it claims for a
    /// stretch of the iterator are not where the iterator's bytes are (a
    /// page array that does not map the iterator's byte run; an RPC that
    /// would carry other bytes than the iovecs hold). The emulator's
    /// observation, comparing the result with the iterator's own bytes.
    DataMismatch,
    /// Bytes nobody wrote reached user space: a page the kernel allocated
    /// without zeroing (stale contents of its previous owner) was handed to
    /// a reader (CVE-2017-5550: pipe buffers `push_pipe` reserved and
    /// `pipe_advance` failed to release).
    Infoleak,
    /// A page pinned (FOLL_PIN, or a FOLL_LONGTERM reference where the
    /// profile has no FOLL_PIN) through an address of a process is no longer
    /// the page that process maps there, though the process never unmapped
    /// it: a COW fault replaced it, and the pin and the process see
    /// different memory from now on (GUP pins vs fork, spec §8.1 (a)).
    PinDetached,
    /// `do_wp_page` made a write land in place in an anonymous page that
    /// was COW-shared with another process at fork and still has references
    /// beyond its one mapping (gup, pipe buffers): whoever took them through
    /// the other process reads this process's new data (CVE-2020-29374,
    /// spec §8.1 (b)). The emulator cannot tell who took the references, so
    /// this is the kernel's risky decision, not proof of a reader.
    SharedPageReused,
    /// A FOLL_WRITE gup returned the zero page or the huge zero page (a
    /// read-only entry passed the FOLL_COW-and-dirty rule): the kernel
    /// writes into the page every zero mapping of every process shares
    /// (Huge Dirty COW, CVE-2017-1000405).
    ZeroPageCorrupted,
    /// `iov_iter_get_pages2`/`_alloc2` met an empty current bvec element
    /// (6.x `first_bvec_segment` does not skip it, unlike
    /// `first_iovec_segment`): 0 bytes returned with a reference taken on
    /// the element's page, which no caller puts (callers count pages from
    /// the bytes; `_alloc2` frees the array). A narrow leak, not a general
    /// data mismatch.
    EmptyBvecPageRef,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 15] = [
        EventKind::TableOverrun,
        EventKind::ZeroLengthWalk,
        EventKind::KernelBug,
        EventKind::Deadlock,
        EventKind::Blocked,
        EventKind::SoftLockup,
        EventKind::RefUnderflow,
        EventKind::UseAfterFree,
        EventKind::PageCacheCorrupted,
        EventKind::DataMismatch,
        EventKind::Infoleak,
        EventKind::PinDetached,
        EventKind::SharedPageReused,
        EventKind::ZeroPageCorrupted,
        EventKind::EmptyBvecPageRef,
    ];

    /// The kind whose transcript name is `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Transcript name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            EventKind::TableOverrun => "table_overrun",
            EventKind::ZeroLengthWalk => "zero_length_walk",
            EventKind::KernelBug => "kernel_bug",
            EventKind::Deadlock => "deadlock",
            EventKind::Blocked => "blocked",
            EventKind::SoftLockup => "soft_lockup",
            EventKind::RefUnderflow => "ref_underflow",
            EventKind::UseAfterFree => "use_after_free",
            EventKind::PageCacheCorrupted => "page_cache_corrupted",
            EventKind::DataMismatch => "data_mismatch",
            EventKind::Infoleak => "infoleak",
            EventKind::PinDetached => "pin_detached",
            EventKind::SharedPageReused => "shared_page_reused",
            EventKind::ZeroPageCorrupted => "zero_page_corrupted",
            EventKind::EmptyBvecPageRef => "empty_bvec_page_ref",
        }
    }
}

/// One event with a human-readable detail.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Details for the transcript.
    pub detail: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}
