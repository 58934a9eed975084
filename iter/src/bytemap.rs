//! Where an iterator's bytes live, and whether a page run says the same.
//!
//! A gathering result (pages, *start*, byte count) claims "the iterator's next
//! `bytes` bytes are these pages read as one run": the first page from
//! *start*, every later page from offset 0, each to its end or to the last
//! byte; a caller can only count the pages it uses from the byte count
//! (`ceil((bytes + start) / PAGE_SIZE)`), since the array carries no length.
//! An I/O unit built from such a result (an NFS RPC, a bio) makes the same
//! claim for its stretch of the iterator.
//!
//! [`Sys::iter_locations`] resolves where the iterator's bytes really are —
//! user memory through the page tables, bvec pages as given, kernel memory
//! through the kernel tables — and [`compare_runs`] lists the byte ranges
//! where a claimed run and the iterator disagree. This is the emulator's
//! observation of a result, not kernel code: it changes nothing.

use vmemu_arch::{Arch, Pfn, VirtAddr};
use vmemu_mm::EventKind;

use crate::Sys;
use crate::get_pages::GotPages;
use crate::iov_iter::{IovIter, IterType, Piece};

/// Where a stretch of an iterator's bytes is: `len` bytes at `offset` in
/// `page`, or, for user memory whose page is not present, at `va`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Loc {
    /// The page, when present.
    pub page: Option<Pfn>,
    /// The user or kernel virtual address of the first byte, when known.
    pub va: Option<VirtAddr>,
    /// Offset in the page.
    pub offset: u64,
    /// Bytes (never past the page end).
    pub len: u64,
}

/// A stretch where a claimed run and the iterator disagree.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mismatch {
    /// Position in the compared stretch (bytes from its start).
    pub at: u64,
    /// Bytes.
    pub len: u64,
    /// The page the run claims.
    pub got_page: Pfn,
    /// The offset in it.
    pub got_offset: u64,
    /// Where the iterator's bytes are.
    pub want: Loc,
    /// The claimed bytes belong to no segment of the iterator at all.
    pub outside: bool,
}

/// The (page, offset, len) triples of `bytes` bytes read as one run from
/// `pages`, starting at `start` in the first page; and the pages the byte
/// count spans (`ceil((bytes + start) / page_size)`), which is all a caller
/// can know of the array.
#[must_use]
pub fn run_triples(
    pages: &[Pfn],
    start: u64,
    bytes: u64,
    page_size: u64,
) -> (Vec<(Pfn, u64, u64)>, usize) {
    let spanned = if bytes == 0 {
        0
    } else {
        (bytes + start).div_ceil(page_size) as usize
    };
    let mut out = Vec::new();
    let mut off = start;
    let mut rem = bytes;
    for &p in pages.iter().take(spanned) {
        let len = rem.min(page_size - off);
        out.push((p, off, len));
        rem -= len;
        off = 0;
    }
    (out, spanned)
}

/// The locations of bytes `from..from + len` of a location list (as from
/// [`Sys::iter_locations`]), cut where the stretch starts and ends.
#[must_use]
pub fn slice_locs(all: &[Loc], from: u64, len: u64) -> Vec<Loc> {
    let mut out = Vec::new();
    let end = from + len;
    let mut pos = 0u64;
    for l in all {
        let (a, b) = (pos.max(from), (pos + l.len).min(end));
        if a < b {
            let skip = a - pos;
            out.push(Loc {
                page: l.page,
                va: l.va.map(|v| v.wrapping_add(skip)),
                offset: l.offset + skip,
                len: b - a,
            });
        }
        pos += l.len;
        if pos >= end {
            break;
        }
    }
    out
}

/// Intervals `[a, b)` of `page` that some location of `all` covers, merged.
fn covered(all: &[Loc], page: Pfn) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = all
        .iter()
        .filter(|l| l.page == Some(page) && l.len > 0)
        .map(|l| (l.offset, l.offset + l.len))
        .collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Splits `[off, off + len)` of a page at the edges of `cov`: (offset, len,
/// inside) pieces.
fn split_by(cov: &[(u64, u64)], off: u64, len: u64) -> Vec<(u64, u64, bool)> {
    let mut out = Vec::new();
    let end = off + len;
    let mut x = off;
    while x < end {
        let inside = cov.iter().find(|&&(a, b)| a <= x && x < b);
        let next = match inside {
            Some(&(_, b)) => b.min(end),
            None => cov
                .iter()
                .map(|&(a, _)| a)
                .filter(|&a| a > x)
                .min()
                .unwrap_or(end)
                .min(end),
        };
        out.push((x, next - x, inside.is_some()));
        x = next;
    }
    out
}

/// Compares a claimed run (`claimed`, as from [`run_triples`]) with where the
/// iterator's bytes are (`truth`, the same number of bytes) and returns the
/// stretches that differ, merged where both sides continue each other.
/// `all` are the locations of every byte the iterator holds, to tell bytes
/// at a wrong offset inside the iovecs from bytes outside all of them.
/// Bytes the claimed run does not reach (fewer claimed than true bytes) are
/// not reported here.
#[must_use]
pub fn compare_runs(claimed: &[(Pfn, u64, u64)], truth: &[Loc], all: &[Loc]) -> Vec<Mismatch> {
    let mut out: Vec<Mismatch> = Vec::new();
    let (mut ci, mut co) = (0usize, 0u64);
    let (mut ti, mut to) = (0usize, 0u64);
    let mut at = 0u64;
    while ci < claimed.len() && ti < truth.len() {
        let (cp, coff, clen) = claimed[ci];
        let t = truth[ti];
        let n = (clen - co).min(t.len - to);
        if n > 0 {
            let got_off = coff + co;
            let want = Loc {
                page: t.page,
                va: t.va.map(|v| v.wrapping_add(to)),
                offset: t.offset + to,
                len: n,
            };
            if want.page != Some(cp) || want.offset != got_off {
                let cov = covered(all, cp);
                let mut done = 0u64;
                for (o, l, inside) in split_by(&cov, got_off, n) {
                    let w = Loc {
                        page: want.page,
                        va: want.va.map(|v| v.wrapping_add(done)),
                        offset: want.offset + done,
                        len: l,
                    };
                    let m = Mismatch {
                        at: at + done,
                        len: l,
                        got_page: cp,
                        got_offset: o,
                        want: w,
                        outside: !inside,
                    };
                    done += l;
                    if let Some(last) = out.last_mut()
                        && last.at + last.len == m.at
                        && last.got_page == m.got_page
                        && last.got_offset + last.len == m.got_offset
                        && last.want.page == m.want.page
                        && last.want.offset + last.len == m.want.offset
                        && last.outside == m.outside
                    {
                        last.len += m.len;
                        last.want.len += m.len;
                        continue;
                    }
                    out.push(m);
                }
            }
        }
        at += n;
        co += n;
        to += n;
        if co == clen {
            ci += 1;
            co = 0;
        }
        if to == t.len {
            ti += 1;
            to = 0;
        }
    }
    out
}

impl<A: Arch> Sys<A> {
    /// Where the next `n` bytes of `i` are, split at page ends. `None` for
    /// iterators whose bytes have no fixed place before they are produced
    /// (PIPE, DISCARD).
    pub fn iter_locations(&mut self, i: &IovIter, n: u64) -> Option<Vec<Loc>> {
        if matches!(i.ty, IterType::Pipe | IterType::Discard) {
            return None;
        }
        let n = n.min(i.count);
        let mm = self.m.current_mm();
        let mut out = Vec::new();
        for p in i.pieces(&mut self.m, n) {
            match p {
                Piece::User { addr, len } | Piece::Kernel { addr, len } => {
                    let user = matches!(p, Piece::User { .. });
                    let mut done = 0u64;
                    while done < len {
                        let va = addr.wrapping_add(done);
                        let off = va.offset_in(A::PAGE_SIZE);
                        let l = (A::PAGE_SIZE - off).min(len - done);
                        let pa = if user {
                            self.m.user_pa(mm, va)
                        } else {
                            self.m.kernel_pa(va)
                        };
                        out.push(Loc {
                            page: pa.map(|pa| pa.pfn(A::PAGE_SHIFT)),
                            va: Some(va),
                            offset: off,
                            len: l,
                        });
                        done += l;
                    }
                }
                Piece::Page { pfn, offset, len } => out.push(Loc {
                    page: Some(pfn),
                    va: None,
                    offset,
                    len,
                }),
            }
        }
        Some(out)
    }

    /// The locations of the next `n` bytes of `i` that lie on one of
    /// `pages` (what [`compare_runs`] needs to tell bytes inside the
    /// iterator from bytes outside it, for the pages of a claimed run). Holes
    /// in the page tables are skipped whole ([`vmemu_mm::Machine::unmapped_run`]),
    /// so a segment of a terabyte over one present page costs the tables
    /// that exist, not 2^28 page lookups.
    pub fn iter_locations_on(&mut self, i: &IovIter, n: u64, pages: &[Pfn]) -> Option<Vec<Loc>> {
        if matches!(i.ty, IterType::Pipe | IterType::Discard) {
            return None;
        }
        let wanted: std::collections::HashSet<Pfn> = pages.iter().copied().collect();
        let n = n.min(i.count);
        let mm = self.m.current_mm();
        let mut out = Vec::new();
        for p in i.pieces(&mut self.m, n) {
            let (addr, len, user) = match p {
                Piece::User { addr, len } => (addr, len, true),
                Piece::Kernel { addr, len } => (addr, len, false),
                Piece::Page { pfn, offset, len } => {
                    if wanted.contains(&pfn) {
                        out.push(Loc {
                            page: Some(pfn),
                            va: None,
                            offset,
                            len,
                        });
                    }
                    continue;
                }
            };
            let mut done = 0u64;
            while done < len {
                let va = addr.wrapping_add(done);
                let hole = self.m.unmapped_run(user.then_some(mm), va);
                if hole > 0 {
                    done = done.saturating_add(hole);
                    continue;
                }
                let off = va.offset_in(A::PAGE_SIZE);
                let l = (A::PAGE_SIZE - off).min(len - done);
                let pa = if user {
                    self.m.user_pa(mm, va)
                } else {
                    self.m.kernel_pa(va)
                };
                if let Some(pfn) = pa.map(|pa| pa.pfn(A::PAGE_SHIFT))
                    && wanted.contains(&pfn)
                {
                    out.push(Loc {
                        page: Some(pfn),
                        va: Some(va),
                        offset: off,
                        len: l,
                    });
                }
                done += l;
            }
        }
        Some(out)
    }

    /// One stretch of a mismatch in words: "bytes 0x1000..0x100f come from
    /// B[0] offset 0x0..0xf (outside every iovec), iovec data is at B[0]
    /// offset 0x10..0x1f". `base` is added to the positions; `verb` says
    /// how the run uses the page ("come from", "land in", "map to").
    #[must_use]
    pub fn describe_mismatch(&self, i: &IovIter, m: &Mismatch, base: u64, verb: &str) -> String {
        let seg = if i.user_backed() { "iovec" } else { "segment" };
        let want = match m.want.page {
            Some(p) => format!(
                "{} offset {:#x}..{:#x}",
                self.m.page_name(p),
                m.want.offset,
                m.want.offset + m.len - 1
            ),
            None => match m.want.va {
                Some(va) => format!("{va} (page not present)"),
                None => "an unknown place".to_string(),
            },
        };
        format!(
            "bytes {:#x}..{:#x} {verb} {} offset {:#x}..{:#x}{}, {seg} data is at {want}",
            base + m.at,
            base + m.at + m.len - 1,
            self.m.page_name(m.got_page),
            m.got_offset,
            m.got_offset + m.len - 1,
            if m.outside {
                format!(" (outside every {seg})")
            } else {
                String::new()
            }
        )
    }

    /// Checks a gathering result `g` against the iterator `i` it was taken
    /// from (as it was before the call): the run the result describes must
    /// hold the iterator's first `g.bytes` bytes, and the array must hold no
    /// page past the ones the byte count spans (a caller cannot see those,
    /// so it never puts their references). Raises one `data_mismatch`
    /// event naming every disagreement; returns whether it did.
    pub fn check_gathered(&mut self, i: &IovIter, g: &GotPages, who: &str) -> bool {
        if self.m.knobs.get_pages2
            && g.bytes == 0
            && i.ty == IterType::Bvec
            && i.bvec.get(i.idx).is_some_and(|b| b.len == 0)
        {
            // 6.x on an empty current bvec element: 0 bytes and a page,
            // already raised as `empty_bvec_page_ref` by the call itself.
            return false;
        }
        let Some(truth) = self.iter_locations(i, g.bytes) else {
            return false;
        };
        let (claimed, spanned) = run_triples(&g.pages, g.start, g.bytes, A::PAGE_SIZE);
        // Where every byte of the iterator lies on the gathered pages only
        // tells a mismatch inside the iovecs from one outside them: located
        // (a walk of the whole iterator) only when the run disagrees, so an
        // agreeing call costs the bytes it gathered, not the segments held.
        let mut mismatches = compare_runs(&claimed, &truth, &[]);
        if !mismatches.is_empty() {
            let Some(all) = self.iter_locations_on(i, i.count, &g.pages) else {
                return false;
            };
            mismatches = compare_runs(&claimed, &truth, &all);
        }
        let mut parts: Vec<String> = mismatches
            .iter()
            .map(|m| self.describe_mismatch(i, m, 0, "map to"))
            .collect();
        if g.pages.len() > spanned {
            let extra: Vec<String> = g.pages[spanned..]
                .iter()
                .map(|&p| self.m.page_name(p))
                .collect();
            parts.push(format!(
                "the array holds {} pages, the result spans {spanned}: a caller, which counts pages from the result, never puts its reference on {} (a leak; a workload's `release` puts it)",
                g.pages.len(),
                extra.join(", ")
            ));
        }
        if parts.is_empty() {
            return false;
        }
        self.m.event(
            EventKind::DataMismatch,
            format!(
                "{who} returned {:#x} bytes from offset {:#x} in [{}]: {}",
                g.bytes,
                g.start,
                g.pages
                    .iter()
                    .map(|&p| self.m.page_name(p))
                    .collect::<Vec<_>>()
                    .join(", "),
                parts.join("; ")
            ),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 0x1000;

    fn loc(page: u64, offset: u64, len: u64) -> Loc {
        Loc {
            page: Some(Pfn(page)),
            va: None,
            offset,
            len,
        }
    }

    /// The run a caller reads: the first page from *start*, the rest from 0,
    /// and only as many pages as the byte count spans.
    #[test]
    fn run_triples_follow_the_byte_count() {
        let pages = [Pfn(1), Pfn(2), Pfn(3)];
        let (t, n) = run_triples(&pages, 0x800, 0x1800, P);
        assert_eq!(n, 2, "0x1800 bytes from 0x800 end at 0x2000: 2 pages");
        assert_eq!(t, vec![(Pfn(1), 0x800, 0x800), (Pfn(2), 0, 0x1000)]);
        assert_eq!(run_triples(&pages, 0x10, 0, P), (vec![], 0));
    }

    /// Example (a) of spec §2.7 cut at PAGE + 0x10: the run says B's bytes are
    /// at B offset 0; they are at 0x10. B offset 0..0xf belongs to no
    /// segment (outside); nothing else differs.
    #[test]
    fn a_wrong_offset_is_reported_and_marked_outside() {
        let claimed = [(Pfn(1), 0, P), (Pfn(2), 0, 0x10)];
        let truth = [loc(1, 0, P), loc(2, 0x10, 0x10)];
        let all = [loc(1, 0, P), loc(2, 0x10, 0x10), loc(3, 0, P)];
        let m = compare_runs(&claimed, &truth, &all);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].at, m[0].len, m[0].got_offset), (P, 0x10, 0));
        assert_eq!((m[0].want.page, m[0].want.offset), (Some(Pfn(2)), 0x10));
        assert!(m[0].outside);
    }

    /// Slicing keeps offsets and cuts at both ends.
    #[test]
    fn slices_cut_at_both_ends() {
        let all = [loc(1, 0x800, 0x800), loc(2, 0, P)];
        assert_eq!(
            slice_locs(&all, 0x400, 0x800),
            vec![loc(1, 0xc00, 0x400), loc(2, 0, 0x400)]
        );
        assert_eq!(slice_locs(&all, 0x800, P), vec![loc(2, 0, P)]);
    }

    /// A claimed stretch partly inside and partly outside the iovecs is
    /// split at the edge, and agreeing runs report nothing.
    #[test]
    fn stretches_split_at_segment_edges() {
        // Truth: B offset 0x10..0x100f (two pages); claimed: B from 0.
        let claimed = [(Pfn(2), 0, P)];
        let truth = [loc(2, 0x10, P - 0x10), loc(3, 0, 0x10)];
        let m = compare_runs(&claimed, &truth, &truth);
        let got: Vec<(u64, u64, u64, bool)> = m
            .iter()
            .map(|m| (m.at, m.len, m.got_offset, m.outside))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0x10, 0, true),
                (0x10, P - 0x20, 0x10, false),
                (P - 0x10, 0x10, P - 0x10, false),
            ]
        );
        assert!(compare_runs(&[(Pfn(2), 0x10, 0x20)], &[loc(2, 0x10, 0x20)], &[]).is_empty());
    }
}
