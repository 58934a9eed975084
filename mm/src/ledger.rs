//! The held-reference ledger: every page reference (`FOLL_GET`, `get_page`)
//! and pin (`FOLL_PIN`) handed to the workload, per compound head, and the
//! calls that give them back (`put_page`, `unpin_user_page`) or hand them
//! to a kernel object (a pipe buffer, a bio). Emulator bookkeeping with no
//! kernel file of its own: the kernel keeps only `_refcount` and
//! `_pincount` (`include/linux/mm.h`, `mm/gup.c`); the ledger is what lets
//! a run that ends with references held fail. The state is the
//! `Machine::held` field, touched only here and by gup's grab paths.

use vmemu_arch::{Arch, Pfn};

use crate::Machine;
use crate::errno::Errno;
use crate::event::EventKind;

/// References the workload holds on pages (from gup, get_page, ...), per head.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Held {
    /// Plain references (FOLL_GET).
    pub refs: u32,
    /// Pins (FOLL_PIN).
    pub pins: u32,
}

/// The held-reference ledger: [`Held`] per compound head, indexed by pfn
/// (one array slot per frame up to the highest head ever recorded, so
/// recording and dropping a reference is an index, not a tree search), with
/// running totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldLedger {
    by_pfn: Vec<Held>,
    refs: u64,
    pins: u64,
}

impl HeldLedger {
    /// Records `n` references (or pins) on `head`.
    #[inline]
    pub fn add(&mut self, head: Pfn, pin: bool, n: u32) {
        let i = head.0 as usize;
        let e = match self.by_pfn.get_mut(i) {
            Some(e) => e,
            None => {
                self.grow(i);
                &mut self.by_pfn[i]
            }
        };
        if pin {
            e.pins += n;
            self.pins += u64::from(n);
        } else {
            e.refs += n;
            self.refs += u64::from(n);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, i: usize) {
        self.by_pfn.resize(i + 1, Held::default());
    }

    /// What is held on `head`, if anything.
    #[must_use]
    pub fn get(&self, head: Pfn) -> Option<Held> {
        self.by_pfn
            .get(head.0 as usize)
            .copied()
            .filter(|h| *h != Held::default())
    }

    /// Drops one reference (or pin) on `head`; `false` if none is held.
    #[inline]
    pub fn take(&mut self, head: Pfn, pin: bool) -> bool {
        let Some(e) = self.by_pfn.get_mut(head.0 as usize) else {
            return false;
        };
        let (n, total) = if pin {
            (&mut e.pins, &mut self.pins)
        } else {
            (&mut e.refs, &mut self.refs)
        };
        if *n == 0 {
            return false;
        }
        *n -= 1;
        *total -= 1;
        true
    }

    /// Total (references, pins).
    #[must_use]
    pub fn totals(&self) -> (u64, u64) {
        (self.refs, self.pins)
    }

    /// Every head with something held, in pfn order.
    pub fn iter(&self) -> impl Iterator<Item = (Pfn, Held)> + '_ {
        self.by_pfn
            .iter()
            .enumerate()
            .filter(|(_, h)| **h != Held::default())
            .map(|(i, h)| (Pfn(i as u64), *h))
    }
}

impl<A: Arch> Machine<A> {
    /// The ledger, read-only (the workload's result checks walk it).
    #[must_use]
    pub fn held(&self) -> &HeldLedger {
        &self.held
    }

    /// Records `n` references (or pins) handed to the workload on `pfn`.
    #[inline]
    pub(crate) fn hold(&mut self, pfn: Pfn, pin: bool, n: u32) {
        let h = self.phys.compound_head(pfn);
        if h.0 >= self.phys.nr_frames() {
            // No struct page to hold (a bad pte after a corrupted table).
            return;
        }
        self.held.add(h, pin, n);
    }

    /// Total references and pins the workload still holds.
    #[must_use]
    pub fn held_total(&self) -> (u64, u64) {
        self.held.totals()
    }

    /// `put_page()` of a reference the workload holds.
    pub fn put_page(&mut self, pfn: Pfn) -> Result<(), Errno> {
        let h = self.phys.compound_head(pfn);
        if !self.held.take(h, false) {
            self.event(
                EventKind::RefUnderflow,
                format!("put_page of pfn {:#x}: no reference held", pfn.0),
            );
            return Err(Errno::EINVAL);
        }
        if self.phys.stale_put(h) {
            // A reference on a page freed under it (CVE-2019-11487).
            return Ok(());
        }
        self.phys.put_page(h, 1)
    }

    /// Reports the pages freed while references to them were still held
    /// (a `_refcount` that wrapped: CVE-2019-11487) as `use_after_free`
    /// events; `holders` describes who holds the stale references of a
    /// frame (the pipes, in `vmemu-iter`).
    pub fn report_freed_referenced(&mut self, holders: &dyn Fn(&Self, Pfn) -> String) {
        for (pfn, page, left) in self.phys.take_freed_referenced() {
            let name = self.owner_name(pfn, &page);
            let bits = self.phys.refcount_bits();
            let who = holders(self, pfn);
            let ledger = self.held.get(pfn).map_or(0, |h| h.refs);
            let ledger = if ledger > 0 {
                format!(", the workload's ledger {ledger}")
            } else {
                String::new()
            };
            self.event(
                EventKind::UseAfterFree,
                format!(
                    "put_page of {name} (pfn {:#x}): page_ref_count reached 0 mod 2^{bits} and the page was freed with {left} references still held ({who}{ledger})",
                    pfn.0
                ),
            );
        }
    }

    /// `unpin_user_page()` of a pin the workload holds.
    pub fn unpin_user_page(&mut self, pfn: Pfn) -> Result<(), Errno> {
        let h = self.phys.compound_head(pfn);
        if !self.held.take(h, true) {
            self.event(
                EventKind::RefUnderflow,
                format!("unpin_user_page of pfn {:#x}: no pin held", pfn.0),
            );
            return Err(Errno::EINVAL);
        }
        self.unpin_raw(h)
    }

    pub(crate) fn unpin_raw(&mut self, head: Pfn) -> Result<(), Errno> {
        if head == self.zero_pfn {
            return Ok(()); // the zero page is never pinned
        }
        let large = self.phys.page(head).order > 0;
        if large {
            let p = self.phys.page_mut(head);
            p.pincount = p.pincount.checked_sub(1).ok_or(Errno::EINVAL)?;
            self.phys.put_page(head, 1)
        } else {
            self.phys.put_page(head, crate::phys::GUP_PIN_COUNTING_BIAS)
        }
    }

    /// `get_page()` on behalf of the workload (the reference is recorded as
    /// held, like a gup reference).
    pub fn get_page_held(&mut self, pfn: Pfn) {
        self.phys.get_page(pfn, 1);
        self.hold(pfn, false, 1);
    }

    /// Hands one held reference on `pfn` over to a kernel object (a pipe
    /// buffer, a bio): the page keeps the reference, the workload's ledger
    /// no longer counts it. Errors if the workload holds none.
    pub fn disown_ref(&mut self, pfn: Pfn) -> Result<(), Errno> {
        let h = self.phys.compound_head(pfn);
        if self.held.take(h, false) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }
}
