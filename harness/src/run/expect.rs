//! `expect`: return values, pages, fields, events and leaked references.

use super::*;
use crate::lang::Field;

impl<'w, A: Arch> Runner<'w, A> {
    pub(crate) fn exec_expect(
        &mut self,
        s: &Stmt,
        t: &Target,
        eq: bool,
        v: Option<&Value>,
    ) -> Result<(), ScriptError> {
        self.expects += 1;
        let (holds, seen) = match t {
            Target::Event(kind) => {
                let seen = self.sys.m.events.iter().any(|e| e.kind == *kind);
                let said = if seen { "raised" } else { "not raised" };
                (seen, said.to_string())
            }
            Target::Leaked => self.expect_leaked(s, eq, v)?,
            Target::Field(var, field) => self.expect_field(s, var, *field, v)?,
            Target::Ret(var) | Target::Pages(var) => self.expect_result(s, t, var, v)?,
        };
        let ok = holds == eq;
        if !ok {
            self.failed += 1;
        }
        let mut r = self.record(s, "expect");
        r.ok = Some(ok);
        r.detail = Some(if ok {
            "ok".to_string()
        } else {
            format!("FAILED: got {seen}")
        });
        self.push(r);
        Ok(())
    }

    /// `expect leaked == N`: references held that no variable holds.
    fn expect_leaked(
        &mut self,
        s: &Stmt,
        eq: bool,
        v: Option<&Value>,
    ) -> Result<(bool, String), ScriptError> {
        let held = self.held_pages(true);
        let n: u64 = held.iter().map(|&(_, n)| n).sum();
        let Some(Value::Expr(e)) = v else {
            return Err(self.err(s.span, "compare `leaked` with a number"));
        };
        let want = self.eval(e)?;
        if eq {
            self.expected_leaks = u64::try_from(want).unwrap_or(0);
        }
        let names = self.held_names(&held);
        let seen = if names.is_empty() {
            "0".to_string()
        } else {
            format!("{n} ({})", names.join(", "))
        };
        Ok((i128::from(n) == want, seen))
    }

    /// `expect VAR.FIELD == N`.
    fn expect_field(
        &self,
        s: &Stmt,
        var: &str,
        field: Field,
        v: Option<&Value>,
    ) -> Result<(bool, String), ScriptError> {
        let got: u64 = if let Some(it) = self.iters.get(var) {
            match field {
                Field::Count => it.count,
                Field::IovOffset => it.iov_offset,
                Field::NrSegs => it.nr_segs as u64,
                Field::Start => {
                    return Err(self.err(
                        s.span,
                        format!("an iterator has count, iov_offset and nr_segs, not `{field}`"),
                    ));
                }
            }
        } else if let Some(x) = self.vars.get(var) {
            match field {
                Field::Start => x.start,
                _ => {
                    return Err(self.err(
                        s.span,
                        format!("a result has pages and start, not `{field}`"),
                    ));
                }
            }
        } else {
            return Err(self.err(s.span, format!("undefined result or iterator `{var}`")));
        };
        let Some(Value::Expr(e)) = v else {
            return Err(self.err(s.span, "compare a field with a number"));
        };
        let want = self.eval(e)?;
        Ok((i128::from(got) == want, format!("{got:#x}")))
    }

    /// `expect r == N` and `expect r.pages == [...]`.
    fn expect_result(
        &self,
        s: &Stmt,
        t: &Target,
        var: &str,
        v: Option<&Value>,
    ) -> Result<(bool, String), ScriptError> {
        let x = self
            .vars
            .get(var)
            .ok_or_else(|| self.err(s.span, format!("undefined result `{var}`")))?;
        let names: Vec<String> = x.pages.iter().map(|p| self.sys.m.page_name(*p)).collect();
        Ok(match v {
            Some(Value::Pages(want)) => (names == *want, format!("[{}]", names.join(", "))),
            Some(Value::Expr(e)) => {
                if matches!(t, Target::Pages(_)) {
                    return Err(self.err(
                        s.span,
                        "compare `.pages` with a list such as [buf[0], buf[1]]",
                    ));
                }
                let want = self.eval(e)?;
                (i128::from(x.ret) == want, fmt_ret(x.ret))
            }
            None => (true, String::new()),
        })
    }
}
