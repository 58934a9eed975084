//! Invariants of the iter layer, on top of [`vmemu_mm::Machine::check_invariants_with`]:
//!
//! * **Pipe rings**: `buffers` is a power of two equal to the slot count,
//!   `curbuf < buffers`, `nrbufs ≤ buffers`; every occupied slot has live
//!   ops and an allocated page, and its data stays inside the page (or
//!   inside the compound page); a free slot has NULL ops (the kernel clears
//!   `ops` on release). Each live buffer and `tmp_page` holds one page
//!   reference, passed to the mm checker as references of kernel objects.
//!   No occupied slot holds a buffer whose bytes nobody wrote (a page
//!   `push_pipe` reserved that the kernel left in the pipe unfilled,
//!   CVE-2017-5550; see `Pipe::unwritten`), unless the workload expects
//!   the `infoleak` event.
//! * **Iterators**: `count` ≤ the bytes left in the remaining segments; the
//!   current index and `nr_segs` stay inside the array; a pipe iterator
//!   names an existing pipe and a slot of it.

use vmemu_arch::Arch;
use vmemu_mm::check::ExtraRefs;
use vmemu_mm::phys::PageFlags;
use vmemu_mm::{Violation, ViolationKind};

use crate::Sys;
use crate::iov_iter::{IovIter, IterType};
use crate::pipe::BufOps;

impl<A: Arch> Sys<A> {
    /// The page references the pipes hold (live buffers and `tmp_page`).
    #[must_use]
    pub fn pipe_refs(&self) -> ExtraRefs {
        let mut refs = ExtraRefs::new();
        for p in &self.pipes {
            for b in &p.bufs {
                if b.ops != BufOps::Null && self.m.phys.pfn_valid(b.page) {
                    *refs.entry(self.m.phys.compound_head(b.page)).or_default() += 1;
                }
            }
            if let Some(t) = p.tmp_page {
                *refs.entry(self.m.phys.compound_head(t)).or_default() += 1;
            }
        }
        refs
    }

    /// Checks the pipes, the given iterators (with their names, for the
    /// messages) and then the mm layer with the pipes' references.
    pub fn check_invariants<'a>(
        &self,
        iters: impl IntoIterator<Item = (&'a str, &'a IovIter)>,
    ) -> Result<(), Vec<Violation>> {
        let mut errs = Vec::new();
        for (id, p) in self.pipes.iter().enumerate() {
            let name = format!("pipe {id}");
            if !p.buffers.is_power_of_two() || p.bufs.len() != p.buffers {
                errs.push(Violation::new(
                    ViolationKind::PipeRing,
                    format!("{name}: {} slots for buffers = {}", p.bufs.len(), p.buffers),
                ));
                continue;
            }
            if p.curbuf >= p.buffers || p.nrbufs > p.buffers {
                errs.push(Violation::new(
                    ViolationKind::PipeRing,
                    format!(
                        "{name}: curbuf {} nrbufs {} with {} buffers",
                        p.curbuf, p.nrbufs, p.buffers
                    ),
                ));
                continue;
            }
            for (slot, b) in p.bufs.iter().enumerate() {
                let occupied = p.occupied(slot);
                if occupied && b.ops == BufOps::Null {
                    errs.push(Violation::new(
                        ViolationKind::PipeRing,
                        format!("{name}: occupied slot {slot} has NULL ops"),
                    ));
                    continue;
                }
                if !occupied && b.ops != BufOps::Null {
                    errs.push(Violation::new(ViolationKind::PipeRing, format!(
                        "{name}: free slot {slot} still has {} (its page reference is lost to readers)",
                        b.ops.name()
                    )));
                }
                if b.ops == BufOps::Null {
                    continue;
                }
                if !self.m.phys.pfn_valid(b.page)
                    || self
                        .m
                        .phys
                        .page(self.m.phys.compound_head(b.page))
                        .flags
                        .contains(PageFlags::FREE)
                {
                    errs.push(Violation::new(
                        ViolationKind::PipeRing,
                        format!(
                            "{name}: slot {slot} holds freed or invalid pfn {:#x}",
                            b.page.0
                        ),
                    ));
                    continue;
                }
                let head = self.m.phys.compound_head(b.page);
                let room = (A::PAGE_SIZE << self.m.phys.page(head).order)
                    - (b.page.0 - head.0) * A::PAGE_SIZE;
                if u64::from(b.offset) + u64::from(b.len) > room {
                    errs.push(Violation::new(
                        ViolationKind::PipeRing,
                        format!(
                            "{name}: slot {slot} data [{}, +{}) runs past its page",
                            b.offset, b.len
                        ),
                    ));
                }
                if !self.expect_infoleak && b.len != 0 && self.pipe_slot_unwritten(id, slot) {
                    errs.push(Violation::new(ViolationKind::PipeUnwritten, format!(
                        "{name}: slot {slot} holds {} bytes of {} that nobody wrote (push_pipe reserved it, the splice returned without filling or truncating it): a reader gets the frame's stale contents",
                        b.len,
                        self.m.page_name(b.page)
                    )));
                }
            }
            if let Some(t) = p.tmp_page
                && (!self.m.phys.pfn_valid(t)
                    || self.m.phys.page(t).flags.contains(PageFlags::FREE))
            {
                errs.push(Violation::new(
                    ViolationKind::PipeRing,
                    format!("{name}: tmp_page {:#x} is freed", t.0),
                ));
            }
        }
        for (name, i) in iters {
            errs.extend(self.check_iter(i).into_iter().map(|e| {
                Violation::new(ViolationKind::Iterator, format!("iterator `{name}`: {e}"))
            }));
        }
        if let Err(e) = self.m.check_invariants_with(&self.pipe_refs()) {
            errs.extend(e);
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// The invariants of one iterator.
    #[must_use]
    pub fn check_iter(&self, i: &IovIter) -> Vec<String> {
        let mut errs = Vec::new();
        let lens: Vec<u64> = match i.ty {
            IterType::Iovec | IterType::Kvec | IterType::Ubuf => {
                i.iov.iter().map(|v| v.len).collect()
            }
            IterType::Bvec => i.bvec.iter().map(|b| u64::from(b.len)).collect(),
            IterType::Pipe => {
                match i.pipe.and_then(|p| self.pipes.get(p)) {
                    Some(p) if i.pipe_idx < p.buffers && i.pipe_start_idx < p.buffers => {}
                    _ => errs.push(format!(
                        "pipe iterator on pipe {:?} at slot {} (start {})",
                        i.pipe, i.pipe_idx, i.pipe_start_idx
                    )),
                }
                return errs;
            }
            IterType::Discard => return errs,
        };
        if i.idx > lens.len() {
            errs.push(format!("index {} past the {} segments", i.idx, lens.len()));
            return errs;
        }
        if i.idx + i.nr_segs != lens.len() {
            errs.push(format!(
                "index {} + nr_segs {} != {} segments",
                i.idx,
                i.nr_segs,
                lens.len()
            ));
        }
        let cur = lens.get(i.idx).copied().unwrap_or(0);
        if i.iov_offset > cur || (i.idx == lens.len() && i.iov_offset != 0) {
            errs.push(format!(
                "iov_offset {} past the current segment's {} bytes",
                i.iov_offset, cur
            ));
            return errs;
        }
        let left = lens[i.idx.min(lens.len())..]
            .iter()
            .fold(0u128, |a, &l| a + u128::from(l))
            - u128::from(i.iov_offset);
        if u128::from(i.count) > left {
            errs.push(format!(
                "count {} exceeds the {left} bytes left in the remaining segments",
                i.count
            ));
        }
        errs
    }
}
