//! Caller models as workload statements: the kernel code that consumes
//! iov_iter pages (direct-io, block and iomap direct I/O, NFS, ceph, skb,
//! af_alg, fuse, vmsplice), over the models of `vmemu_iter::callers`. Each
//! statement's record carries an `io` part: the I/O units produced and the
//! page-reference traffic (gathering calls, pages pinned, consumer
//! references, references put early, arrays allocated).
//!
//! This module dispatches on [`CallerCall`] and holds the argument helpers
//! and the record glue; the models that take one iterator and a number run
//! through [`Runner::iter_model`], the others have a file each. A `*_viro`
//! function runs the same model with its page loop converted to
//! `iov_iter_for_each_page`.

mod bio;
mod ceph;
mod fuse;
mod splice;

use vmemu_arch::Arch;
use vmemu_iter::callers::dio::{DioFs, DioResult};
use vmemu_iter::callers::fuse::FuseConn;
use vmemu_iter::callers::nfs::NfsDir;
use vmemu_iter::callers::{IoReport, NotModelled};
use vmemu_iter::{IovIter, Sys};
use vmemu_mm::Errno;

use crate::calls::CallerCall;
use crate::lang::{Arg, Expr, ScriptError, Span, Stmt};
use crate::run::{Io, Runner, Var, fmt_ret, set_err};

/// What the caller models keep across statements.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The fuse connection (one mount).
    pub(crate) fuse: FuseConn,
}

/// A model's outcome for the record.
pub(crate) struct Outcome {
    pub(crate) ret: Result<i64, Errno>,
    pub(crate) detail: Option<String>,
    pub(crate) io: Option<IoReport>,
}

impl Outcome {
    pub(crate) fn io(r: Result<u64, Errno>, io: IoReport) -> Self {
        Self {
            ret: r.map(|v| v as i64),
            detail: None,
            io: Some(io),
        }
    }
}

impl<A: Arch> Runner<'_, A> {
    /// Runs a caller-model statement.
    pub(crate) fn exec_caller(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        call: CallerCall,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        use CallerCall as C;
        let out = match call {
            C::BlockdevDirectIo { viro } => {
                let pos = self.num(s, &args[1])?;
                let fs = DioFs {
                    blocksize: self.num(s, &args[2])?,
                    extent: self.num(s, &args[3])?,
                };
                self.iter_model(s, &args[0], |sys, it| {
                    if viro {
                        sys.blockdev_direct_io_viro(it, pos, fs)
                    } else {
                        sys.blockdev_direct_io(it, pos, fs)
                    }
                })?
            }
            C::BlkdevDirectIo | C::IomapDioRw | C::BioIovIterGetPages => {
                self.call_bio(s, call, args)?
            }
            C::NfsDirect { write, viro } => {
                let bsize = self.num(s, &args[1])?;
                let dir = if write { NfsDir::Write } else { NfsDir::Read };
                self.iter_model(s, &args[0], |sys, it| {
                    sys.nfs_direct_schedule_iovec(it, bsize, dir, viro)
                })?
            }
            C::CephDirectReadWrite => self.call_ceph_direct(s, args)?,
            C::CephSpliceWrite => self.call_ceph_splice(s, args)?,
            C::ZerocopySgFromIter { viro } => {
                let headlen = self.num(s, &args[1])?;
                self.iter_model(s, &args[0], |sys, it| {
                    sys.zerocopy_sg_from_iter(it, headlen, viro)
                })?
            }
            C::AfAlgMakeSg => {
                let n = self.num(s, &args[1])?;
                self.iter_model(s, &args[0], |sys, it| sys.af_alg_make_sg(it, n))?
            }
            C::HashSendmsg => {
                let n = self.num(s, &args[1])?;
                self.iter_model(s, &args[0], |sys, it| sys.hash_sendmsg(it, n))?
            }
            C::FuseDirectIo { viro } => {
                let nmax = self.num(s, &args[1])?;
                self.iter_model(s, &args[0], |sys, it| sys.fuse_direct_io(it, nmax, viro))?
            }
            C::IterToPipe { viro } => self.call_splice(s, viro, args)?,
            C::CallbackUnderMmapSem => {
                let after = self.num(s, &args[1])?;
                self.iter_model(s, &args[0], |sys, it| {
                    sys.callback_under_mmap_sem(it, after)
                })?
            }
            C::CallbackForEachPage => {
                let after = self.num(s, &args[1])?;
                self.iter_model(s, &args[0], |sys, it| sys.callback_for_each_page(it, after))?
            }
            C::FuseMount
            | C::FuseFilemapFault
            | C::FuseLookup
            | C::FuseDevRead
            | C::FuseDevWrite
            | C::FuseDevWriteAbort
            | C::FuseAbortConn
            | C::FuseFaultResult
            | C::FuseDevWriteResult => self.call_fuse(s, call, args)?,
        };
        self.push_outcome(s, var, func, out)
    }

    /// The shape every model consuming one iterator shares: the iterator
    /// is taken out for the call and put back whatever the outcome, and its
    /// state after the call is the record's detail.
    pub(crate) fn iter_model(
        &mut self,
        s: &Stmt,
        it_arg: &Arg,
        model: impl FnOnce(&mut Sys<A>, &mut IovIter) -> Result<DioResult, NotModelled>,
    ) -> Result<Outcome, ScriptError> {
        let (name, mut it) = self.take_iter(s, it_arg)?;
        let r = model(&mut self.sys, &mut it);
        let detail = iter_state(&it);
        self.put_iter(name, it);
        let (r, io) = r.map_err(|e| self.not_modelled(s, &e))?;
        let mut o = Outcome::io(r, io);
        o.detail = Some(detail);
        Ok(o)
    }

    fn push_outcome(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        func: &str,
        out: Outcome,
    ) -> Result<(), ScriptError> {
        let mut r = self.record(s, func);
        match out.ret {
            Ok(v) => r.ret = Some(v),
            Err(e) => set_err(&mut r, e),
        }
        r.detail = out.detail;
        r.io = out.io.map(|io| Box::new(Io::from(io)));
        let retv = r.ret.unwrap_or(0);
        self.push(r);
        if let Some(v) = var {
            self.bind(s, v, Var::ret(retv))?;
        }
        Ok(())
    }

    /// End of the run: what the caller models leave behind (tasks asleep
    /// forever) is unwound and reported.
    pub(crate) fn callers_finish(&mut self) {
        let mut fc = std::mem::take(&mut self.callers.fuse);
        if let Some(note) = self.sys.fuse_unwind(&mut fc) {
            // A record that belongs to no statement: line 0.
            let st = Stmt {
                span: Span { line: 0, col: 1 },
                text: "(end of workload)".into(),
                kind: crate::lang::StmtKind::Pipe(String::new()),
                qual: crate::lang::Qual::default(),
            };
            let mut r = self.record(&st, "unwind");
            r.detail = Some(note);
            self.push(r);
        }
        self.callers.fuse = fc;
    }

    /// The iterator named by `a`, taken out of the table (put it back with
    /// [`Runner::put_iter`]).
    pub(crate) fn take_iter(
        &mut self,
        s: &Stmt,
        a: &Arg,
    ) -> Result<(String, IovIter), ScriptError> {
        let Arg::Expr(Expr::Name(n, span)) = a else {
            return Err(self.err(s.span, "expected an iterator name"));
        };
        let it = self.iters.remove(n).ok_or_else(|| {
            self.err(
                *span,
                format!("undefined iterator `{n}` (create it with `iter {n} ...`)"),
            )
        })?;
        Ok((n.clone(), it))
    }

    pub(crate) fn put_iter(&mut self, name: String, it: IovIter) {
        self.iters.insert(name, it);
    }

    /// A numeric argument.
    pub(crate) fn num(&self, s: &Stmt, a: &Arg) -> Result<u64, ScriptError> {
        let v = self.expr_arg(a, s)?;
        u64::try_from(v)
            .ok()
            .filter(|x| *x <= 1 << 44)
            .ok_or_else(|| self.err(s.span, format!("argument must be 0..=2^44, found {v}")))
    }

    /// A bare word argument (`fill`, `fr_locked`).
    pub(crate) fn word<'a>(
        &self,
        s: &Stmt,
        a: &'a Arg,
        what: &str,
    ) -> Result<&'a str, ScriptError> {
        match a {
            Arg::Expr(Expr::Name(n, _)) => Ok(n),
            _ => Err(self.err(s.span, format!("expected {what}"))),
        }
    }

    /// A pipe argument: its id.
    pub(crate) fn pipe_arg(&self, s: &Stmt, a: &Arg) -> Result<usize, ScriptError> {
        let n = self.word(s, a, "a pipe name")?;
        self.pipes
            .get(n)
            .copied()
            .ok_or_else(|| self.err(s.span, format!("undefined pipe `{n}`")))
    }

    pub(crate) fn not_modelled(&self, s: &Stmt, e: &NotModelled) -> ScriptError {
        self.err(
            s.span,
            format!("{e}: qualify the statement with `kernel ...`"),
        )
    }
}

/// `count 0, nr_segs 0, iov_offset 0` of an iterator after a call.
pub(crate) fn iter_state(it: &IovIter) -> String {
    format!(
        "count {}, nr_segs {}, iov_offset {}",
        fmt_ret(it.count as i64),
        it.nr_segs,
        fmt_ret(it.iov_offset as i64)
    )
}
