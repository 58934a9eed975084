//! The pipe-buffer calls of `fs/splice.c`: `vmsplice`, `readv`/`writev` of
//! a pipe and `splice_write`.

use super::*;

thread_local! {
    /// The buffer `splice_write` statements write into.
    static SPLICE_SINK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest [`SPLICE_SINK`] a thread keeps.
const SPLICE_SINK_KEEP: usize = 16 << 20;

impl<'w, A: Arch> Runner<'w, A> {
    /// A pipe's state as records show it: `pipe: N buffers, B bytes`.
    pub(crate) fn pipe_detail(&self, pipe: usize) -> String {
        let p = &self.sys.pipes[pipe];
        format!(
            "pipe: {} buffers, {} bytes",
            p.nrbufs,
            fmt_ret(p.bytes() as i64)
        )
    }

    pub(crate) fn exec_pipe_call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        call: PipeCall,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let name_of = |a: &Arg| match a {
            Arg::Expr(Expr::Name(n, _)) => Some(n.clone()),
            _ => None,
        };
        let pname = name_of(&args[0])
            .ok_or_else(|| self.err(s.span, format!("`{func}` takes a pipe name first")))?;
        let pipe = *self
            .pipes
            .get(&pname)
            .ok_or_else(|| self.err(s.span, format!("undefined pipe `{pname}`")))?;
        // An ITER_PIPE lives inside one splice call, under the pipe lock:
        // no other call can use the pipe while it exists. Iterators over
        // this pipe cannot be used after this call.
        for (n, it) in &self.iters {
            if it.ty == vmemu_iter::IterType::Pipe && it.pipe == Some(pipe) {
                self.stale_iters
                    .insert(n.clone(), (func.to_string(), s.span.line));
            }
        }
        let mut r = self.record(s, func);
        let res = if call == PipeCall::SpliceWrite {
            let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
            // The file's bytes are not looked at: a kept buffer takes them,
            // so the host memory behind it is not allocated afresh and
            // faulted in for every call.
            SPLICE_SINK.with(|out| {
                let mut out = out.borrow_mut();
                out.clear();
                let r = self.sys.splice_to_vec(pipe, len, &mut out);
                if out.capacity() > SPLICE_SINK_KEEP {
                    *out = Vec::new();
                }
                r
            })
        } else {
            let iname = name_of(&args[1]).ok_or_else(|| {
                self.err(s.span, format!("`{func}` takes an iterator name second"))
            })?;
            let mut it = self
                .iters
                .remove(&iname)
                .ok_or_else(|| self.err(s.span, format!("undefined iterator `{iname}`")))?;
            let res = match call {
                PipeCall::Vmsplice => {
                    let iov = it.iov.slice(it.idx, usize::MAX).to_vec();
                    self.sys.vmsplice(pipe, iov, 0)
                }
                PipeCall::Readv => self.sys.pipe_read(pipe, &mut it),
                _ => self.sys.pipe_write(pipe, &mut it),
            };
            self.iters.insert(iname, it);
            res
        };
        match res {
            Ok(v) => r.ret = Some(v as i64),
            Err(e) => set_err(&mut r, e),
        }
        r.detail = Some(self.pipe_detail(pipe));
        let retv = r.ret.unwrap_or(0);
        self.push(r);
        if let Some(v) = var {
            self.bind(s, v, Var::ret(retv))?;
        }
        Ok(())
    }
}
