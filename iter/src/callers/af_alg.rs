//! AF_ALG, `crypto/af_alg.c` and `crypto/algif_hash.c` as of v4.10.
//!
//! `af_alg_make_sg(sgl, iter, len)`: one
//! `iov_iter_get_pages(iter, sgl->pages, len, ALG_MAX_PAGES, &off)` call
//! (`ALG_MAX_PAGES` = 16; one segment); a 0-page result is a WARN and
//! `-EINVAL`; `npages` scatterlist entries plus one for chaining
//! (`sg[ALG_MAX_PAGES + 1]`); the iterator is **not** advanced — callers
//! advance by what they processed. `af_alg_free_sg` puts every page through
//! `sgl->pages[]`.
//!
//! `hash_sendmsg`: while the message has bytes, `len` = min(left,
//! `ALG_MAX_PAGES * PAGE_SIZE`, `sk_sndbuf`), `af_alg_make_sg`, hash the
//! scatterlist, `af_alg_free_sg`, advance by `len`. One scatterlist per
//! call.

use vmemu_arch::Arch;
use vmemu_mm::Errno;

use super::{IoReport, NotModelled};
use crate::Sys;
use crate::iov_iter::IovIter;

/// `ALG_MAX_PAGES`.
pub const ALG_MAX_PAGES: u64 = 16;

impl<A: Arch> Sys<A> {
    /// `af_alg_make_sg` + `af_alg_free_sg`: one scatterlist from `iter`
    /// (not advanced). Returns its bytes.
    fn af_alg_sgl(&mut self, iter: &IovIter, len: u64, io: &mut IoReport) -> Result<u64, Errno> {
        let g = self.iov_iter_get_pages(iter, len, ALG_MAX_PAGES)?;
        let npages = (g.start + g.bytes).div_ceil(A::PAGE_SIZE);
        if npages == 0 {
            io.note("af_alg_make_sg: WARN_ON(npages == 0) -> -EINVAL");
            return Err(Errno::EINVAL);
        }
        io.unit("sgl", g.bytes, npages);
        for &p in &g.pages {
            self.put(p);
        }
        Ok(g.bytes)
    }

    /// `af_alg_make_sg(sgl, iter, len)` then `af_alg_free_sg`.
    pub fn af_alg_make_sg(
        &mut self,
        iter: &IovIter,
        len: u64,
    ) -> Result<(Result<u64, Errno>, IoReport), NotModelled> {
        self.need_v4("crypto/af_alg.c")?;
        let (mut io, before) = IoReport::start("af_alg_make_sg", self);
        let r = self.af_alg_sgl(iter, len, &mut io);
        io.finish(self, before);
        Ok((r, io))
    }

    /// `hash_sendmsg` of the whole iterator with `sk_sndbuf` bytes of send
    /// buffer. Returns the bytes hashed, or the error when none were.
    pub fn hash_sendmsg(
        &mut self,
        iter: &mut IovIter,
        sndbuf: u64,
    ) -> Result<(Result<u64, Errno>, IoReport), NotModelled> {
        self.need_v4("crypto/algif_hash.c")?;
        let (mut io, before) = IoReport::start("hash_sendmsg", self);
        let limit = (ALG_MAX_PAGES * A::PAGE_SIZE).min(sndbuf);
        io.note(format!(
            "limit per scatterlist: min(ALG_MAX_PAGES * PAGE_SIZE, sk_sndbuf) = {limit}"
        ));
        let mut copied = 0u64;
        let mut r = Ok(0);
        while iter.count > 0 {
            let len = iter.count.min(limit);
            match self.af_alg_sgl(iter, len, &mut io) {
                Ok(n) => {
                    copied += n;
                    self.iov_iter_advance(iter, n);
                }
                Err(e) => {
                    r = if copied > 0 { Ok(copied) } else { Err(e) };
                    break;
                }
            }
            r = Ok(copied);
        }
        io.finish(self, before);
        Ok((r, io))
    }
}
