//! Telling a finding from a failure, by kind.
//!
//! A run carries the kind of the check that halted it
//! ([`crate::run::Run::failed_check`]), its typed events and the known-bug
//! classes its profile declares ([`crate::run::Run::known_bugs`]); the
//! leak check and the cross-run differentials have a class of their own.
//! Nothing here reads a message's words to decide: the messages are only
//! shown, and their first words keep two different failures of one kind
//! apart while shrinking.

use vmemu_mm::{BugClass, EventKind};

use crate::run::Run;

/// What one run (or a comparison of two) showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// A known-bug class of the kernel under test (not a failure of the
    /// emulator).
    pub finding: bool,
    /// The signature shrinking keeps: `bug: CLASS` for a finding, the
    /// check and the message's first words for a failure.
    pub sig: String,
    /// The first message, for people.
    pub msg: String,
}

impl Verdict {
    /// A finding of `class`.
    #[must_use]
    pub fn finding(class: BugClass, msg: String) -> Self {
        Self {
            finding: true,
            sig: format!("bug: {class}"),
            msg,
        }
    }

    /// A failure with signature `sig`.
    #[must_use]
    pub fn failure(sig: String, msg: String) -> Self {
        Self {
            finding: false,
            sig,
            msg,
        }
    }

    /// A violation of `class` on a run whose profile declares `known`: a
    /// finding if the profile is known to have the class, else the
    /// failure `sig`.
    #[must_use]
    pub fn declared_or(
        class: Option<BugClass>,
        known: &[BugClass],
        sig: impl FnOnce() -> String,
        msg: String,
    ) -> Self {
        match class {
            Some(c) if known.contains(&c) => Self::finding(c, msg),
            _ => Self::failure(sig(), msg),
        }
    }

    /// The same verdict, its signature marked with where it was seen
    /// (`(+layton)`, `(on arm64)`).
    #[must_use]
    pub fn seen(mut self, where_: &str) -> Self {
        self.sig = format!("{} ({where_})", self.sig);
        self
    }
}

/// Whether the emulated kernel did what the real one would WARN, BUG or
/// corrupt memory on (the checks stop there, leaks are expected).
fn broken_kernel(r: &Run) -> bool {
    r.events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::KernelBug
                | EventKind::RefUnderflow
                | EventKind::SoftLockup
                | EventKind::UseAfterFree
        )
    })
}

/// The first words of a check's message after the statement, without
/// numbers, names or quoted text: two violations of one kind stay apart
/// while shrinking.
fn message_key(msg: &str) -> String {
    let body = msg.split_once("`: ").map_or(msg, |(_, b)| b);
    let key: String = body
        .split(|c: char| c.is_ascii_digit() || c == '[' || c == '(')
        .next()
        .unwrap_or("")
        .chars()
        .take(48)
        .collect();
    key.split_whitespace()
        .filter(|w| !w.contains('`') && !w.contains(':'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The check that halted the run: a finding if its kind's class is one the
/// profile declares (the unwritten pipe buffers of
/// `+pipe-advance-fencepost`, a written huge zero page on v4.10), else a
/// failure.
fn failed_check(r: &Run) -> Option<Verdict> {
    let check = r.failed_check?;
    let msg = r
        .records
        .iter()
        .rev()
        .find(|x| x.op == check.op())
        .and_then(|x| x.events.first().cloned())
        .unwrap_or_default();
    let sig = || format!("{}: {}", check.op(), message_key(&msg));
    Some(Verdict::declared_or(
        check.bug_class(),
        &r.known_bugs,
        sig,
        msg.clone(),
    ))
}

/// The first event of a known-bug class: a finding wherever it shows, as
/// the emulated kernel's own observation (a profile may have a flaw no
/// knob names: a pinned page zapped by `MADV_DONTNEED` detaches its pin on
/// every kernel).
fn bug_event(r: &Run) -> Option<Verdict> {
    r.events.iter().find_map(|e| {
        e.kind
            .bug_class()
            .map(|c| Verdict::finding(c, e.to_string()))
    })
}

/// References left that no unreleased result holds: the class
/// `leaked_reference` (the posted `+layton` patch's flaw (b)), a failure
/// on a profile that does not declare it. A result the workload never
/// released (a mutant without its `release`) still holds its pages'
/// references: held, not leaked ([`Run::unowned_refs`]).
fn leak(r: &Run) -> Option<Verdict> {
    if r.unowned_refs == 0 || broken_kernel(r) {
        return None;
    }
    let msg = format!(
        "{} references still held that no unreleased result accounts for",
        r.unowned_refs
    );
    Some(Verdict::declared_or(
        Some(BugClass::LeakedReference),
        &r.known_bugs,
        || "leak".into(),
        msg,
    ))
}

/// The first thing a single run shows, if any.
#[must_use]
pub fn run_verdict(r: &Run) -> Option<Verdict> {
    failed_check(r).or_else(|| bug_event(r)).or_else(|| leak(r))
}

/// A cross-run differential that disagreed (`msg`): of `class` where the
/// difference is one (the `+layton` pages over the bytes both runs cover
/// are its wrong bytes, `data_mismatch`), judged against the profile of
/// the run under suspicion.
#[must_use]
pub fn differential(name: &str, class: Option<BugClass>, suspect: &Run, msg: String) -> Verdict {
    let v = Verdict::declared_or(
        class,
        &suspect.known_bugs,
        || format!("differential: {name}"),
        msg,
    );
    if v.finding { v.seen(name) } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_class_is_a_finding_and_an_undeclared_one_a_failure() {
        let known = [BugClass::LeakedReference];
        let v = Verdict::declared_or(
            Some(BugClass::LeakedReference),
            &known,
            || "leak".into(),
            "m".into(),
        );
        assert!(v.finding);
        assert_eq!(v.sig, "bug: leaked_reference");
        let v = Verdict::declared_or(Some(BugClass::Infoleak), &known, || "x".into(), "m".into());
        assert_eq!((v.finding, v.sig.as_str()), (false, "x"));
        let v = Verdict::declared_or(None, &known, || "y".into(), "m".into());
        assert!(!v.finding);
    }

    #[test]
    fn the_message_key_drops_numbers_names_and_the_statement() {
        assert_eq!(
            message_key("invariant: after line 5 `r = f(x)`: pipe 0: slot 3 holds 12 bytes"),
            "pipe"
        );
        assert_eq!(message_key("C[0]: refcount 3 but 2"), "C");
    }
}
