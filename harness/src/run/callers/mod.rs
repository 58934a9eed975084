//! Caller models as workload statements: the kernel code that consumes
//! iov_iter pages (direct-io, block and iomap direct I/O, NFS, ceph, skb,
//! af_alg, fuse, vmsplice), over the models of `vmemu_iter::callers`. Each
//! statement's record carries an `io` part: the I/O units produced and the
//! page-reference traffic (gathering calls, pages pinned, consumer
//! references, references put early, arrays allocated).
//!
//! One file per model family; this module holds the function table, the
//! argument helpers and the record glue. A `*_viro` function runs the same
//! model with its page loop converted to `iov_iter_for_each_page`.

mod af_alg;
mod bio;
mod ceph;
mod dio;
mod fuse;
mod mmap_sem;
mod net;
mod nfs;
mod splice;

use vmemu_arch::Arch;
use vmemu_iter::IovIter;
use vmemu_iter::callers::fuse::FuseConn;
use vmemu_iter::callers::{IoReport, NotModelled};
use vmemu_mm::Errno;

use crate::lang::{Arg, Expr, ScriptError, Span, Stmt};
use crate::run::{Io, Runner, Var, fmt_ret, set_err};

/// Caller-model functions a workload may call, with their arity.
pub const CALLS: &[(&str, usize)] = &[
    ("blockdev_direct_IO", 4),
    ("blockdev_direct_IO_viro", 4),
    ("blkdev_direct_IO", 2),
    ("iomap_dio_rw", 2),
    ("bio_iov_iter_get_pages", 2),
    ("nfs_direct_write", 2),
    ("nfs_direct_read", 2),
    ("nfs_direct_write_viro", 2),
    ("nfs_direct_read_viro", 2),
    ("ceph_direct_read_write", 2),
    ("ceph_splice_write", 2),
    ("zerocopy_sg_from_iter", 2),
    ("zerocopy_sg_from_iter_viro", 2),
    ("af_alg_make_sg", 2),
    ("hash_sendmsg", 2),
    ("fuse_direct_io", 2),
    ("fuse_direct_io_viro", 2),
    ("iter_to_pipe", 2),
    ("iter_to_pipe_viro", 2),
    ("fuse_mount", 0),
    ("fuse_filemap_fault", 1),
    ("fuse_lookup", 0),
    ("fuse_dev_read", 0),
    ("fuse_dev_write", 2),
    ("fuse_dev_write_abort", 4),
    ("fuse_abort_conn", 0),
    ("fuse_fault_result", 1),
    ("fuse_dev_write_result", 1),
    ("callback_under_mmap_sem", 2),
    ("callback_for_each_page", 2),
];

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
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let out = match func {
            "blockdev_direct_IO" | "blockdev_direct_IO_viro" => self.call_dio(s, func, args)?,
            "blkdev_direct_IO" | "iomap_dio_rw" | "bio_iov_iter_get_pages" => {
                self.call_bio(s, func, args)?
            }
            f if f.starts_with("nfs_direct_") => self.call_nfs(s, func, args)?,
            "ceph_direct_read_write" | "ceph_splice_write" => self.call_ceph(s, func, args)?,
            f if f.starts_with("zerocopy_sg_from_iter") => self.call_net(s, func, args)?,
            "af_alg_make_sg" | "hash_sendmsg" => self.call_af_alg(s, func, args)?,
            f if f.starts_with("iter_to_pipe") => self.call_splice(s, func, args)?,
            f if f.starts_with("fuse_") => self.call_fuse(s, func, args)?,
            f if f.starts_with("callback_") => self.call_mmap_sem(s, func, args)?,
            _ => return Err(self.err(s.span, format!("unknown caller model `{func}`"))),
        };
        self.push_outcome(s, var, func, out)
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
