//! `zerocopy_sg_from_iter(skb, from)`, `net/core/datagram.c` as of v4.10
//! (tun/macvtap zero-copy transmit).
//!
//! Up to `skb_headlen(skb)` bytes are copied into the linear part
//! (`skb_copy_datagram_from_iter`, failure → `-EFAULT`); then, while bytes
//! remain: all `MAX_SKB_FRAGS` frags used → `-EMSGSIZE`;
//! `iov_iter_get_pages(from, pages, ~0U, MAX_SKB_FRAGS - frag, &start)` (an
//! on-stack array; failure → `-EFAULT`), advance, `truesize +=
//! PAGE_ALIGN(copied + start)`, and every returned page becomes a frag
//! (`skb_fill_page_desc`), which owns its reference: nothing is left to put.
//! `MAX_SKB_FRAGS` = 65536 / `PAGE_SIZE` + 1, at least 16
//! (`include/linux/skbuff.h`): 17 with 4 KiB pages, 16 with 64 KiB.
//!
//! On an error the frags already attached stay with the skb; the caller
//! frees it (`kfree_skb`), which puts every frag page — as the model does
//! at the end, like the skb being transmitted and freed on success.

use vmemu_arch::{Arch, Pfn};
use vmemu_mm::Errno;

use super::{IoReport, NotModelled};
use crate::Sys;
use crate::iov_iter::IovIter;

/// `MAX_SKB_FRAGS` for a page size.
#[must_use]
pub fn max_skb_frags(page_size: u64) -> u64 {
    (65536 / page_size + 1).max(16)
}

impl<A: Arch> Sys<A> {
    /// v4.10 `zerocopy_sg_from_iter` into an skb with `headlen` bytes of
    /// linear room. Returns 0 or `-errno`.
    pub fn zerocopy_sg_from_iter(
        &mut self,
        from: &mut IovIter,
        headlen: u64,
        viro: bool,
    ) -> Result<(Result<u64, Errno>, IoReport), NotModelled> {
        self.need_v4("net/core/datagram.c")?;
        let (mut io, before) = IoReport::start(
            if viro {
                "zerocopy_sg_from_iter, page loop as iov_iter_for_each_page"
            } else {
                "zerocopy_sg_from_iter"
            },
            self,
        );
        let max = max_skb_frags(A::PAGE_SIZE);
        let len = from.count;
        let copy = headlen.min(len);
        let mut frags: Vec<Pfn> = Vec::new();
        let mut truesize = 0u64;
        let mut data_len = 0u64;
        let mut r: Result<u64, Errno> = Ok(0);
        let mut buf = vec![0u8; copy as usize];
        if self.copy_from_iter(&mut buf, from) != copy {
            r = Err(Errno::EFAULT);
        } else if viro {
            // skb_fill_page_desc becomes the callback; it consumes each
            // reference and stops when the frags run out. The batch is fixed
            // at MAX_SKB_FRAGS pages.
            let want = from.count;
            let fr = &mut frags;
            let dl = &mut data_len;
            let ts = &mut truesize;
            let res = self.iov_iter_for_each_page(from, want, max, &mut |_, page, _, len| {
                fr.push(page);
                *dl += len;
                *ts += A::PAGE_SIZE;
                (fr.len() as u64) < max
            });
            r = match res {
                Err(_) => Err(Errno::EFAULT),
                Ok(_) if from.count > 0 => Err(Errno::EMSGSIZE),
                Ok(_) => Ok(0),
            };
        } else {
            while from.count > 0 {
                if frags.len() as u64 == max {
                    r = Err(Errno::EMSGSIZE);
                    break;
                }
                let g = match self.iov_iter_get_pages(
                    from,
                    u64::from(u32::MAX),
                    max - frags.len() as u64,
                ) {
                    Ok(g) => g,
                    Err(_) => {
                        r = Err(Errno::EFAULT);
                        break;
                    }
                };
                self.iov_iter_advance(from, g.bytes);
                truesize += (g.bytes + g.start).next_multiple_of(A::PAGE_SIZE);
                data_len += g.bytes;
                let n = (g.bytes + g.start).div_ceil(A::PAGE_SIZE) as usize;
                frags.extend_from_slice(&g.pages[..n.min(g.pages.len())]);
                for &p in &g.pages[n.min(g.pages.len())..] {
                    self.put(p);
                }
            }
        }
        io.unit("skb", copy + data_len, frags.len() as u64);
        io.note(format!(
            "{copy} bytes copied to the linear part, {data_len} bytes in {} of {max} frags, truesize +{truesize}",
            frags.len()
        ));
        // kfree_skb: the frags' references are put.
        for p in frags {
            self.put(p);
        }
        io.finish(self, before);
        io.put_early = io.pages_pinned.saturating_sub(io.units[0].pages);
        Ok((r, io))
    }
}
