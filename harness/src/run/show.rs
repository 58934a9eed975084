//! The `show` statement, `vmemu run --show-at LINE` and `vmemu show`: the
//! runner's side of the views `crate::show` builds.

use vmemu_arch::{Arch, VirtAddr};

use crate::show::{View, addr_view, mm_view};

impl<A: Arch> super::Runner<'_, A> {
    /// `show ...`: a record whose view is what the statement asks for.
    pub(crate) fn exec_show(
        &mut self,
        s: &crate::lang::Stmt,
        what: &crate::lang::ShowWhat,
    ) -> Result<(), crate::lang::ScriptError> {
        use crate::lang::ShowWhat;
        let view = match what {
            ShowWhat::Mm => mm_view(&self.sys.m),
            ShowWhat::Addr(e) => {
                let va = self.addr(e, s.span)?;
                addr_view(&self.sys.m, va, false)
            }
            ShowWhat::Page(name, i) => {
                let &(start, len) = self
                    .maps
                    .get(name)
                    .ok_or_else(|| self.err(s.span, format!("undefined mapping `{name}`")))?;
                let i = self.eval(i)?;
                let off = u64::try_from(i)
                    .ok()
                    .and_then(|i| i.checked_mul(A::PAGE_SIZE))
                    .filter(|&o| o < len)
                    .ok_or_else(|| {
                        self.err(
                            s.span,
                            format!("`{name}` has {} pages, no page {i}", len / A::PAGE_SIZE),
                        )
                    })?;
                addr_view(&self.sys.m, VirtAddr(start.0 + off), true)
            }
        };
        let mut r = self.record(s, "show");
        r.show = Some(Box::new(view));
        self.push(r);
        Ok(())
    }

    /// `--show-at LINE`: after the statement of that line, a `show mm` and
    /// a `show` of every mapping's first page, as records of that line.
    pub(crate) fn show_at(
        &mut self,
        s: &crate::lang::Stmt,
    ) -> Result<(), crate::lang::ScriptError> {
        if self.opts.show_at != Some(s.span.line) || self.halted {
            return Ok(());
        }
        let mut views = vec![("show mm".to_string(), mm_view(&self.sys.m))];
        let mut maps: Vec<(&String, &(VirtAddr, u64))> = self.maps.iter().collect();
        maps.sort_by_key(|(_, (a, _))| a.0);
        for (name, (a, _)) in maps {
            views.push((format!("show {name}"), addr_view(&self.sys.m, *a, false)));
        }
        for (text, v) in views {
            let mut r = self.record(s, "show");
            r.text = format!("{text}  (--show-at {})", s.span.line);
            r.show = Some(Box::new(v));
            self.push(r);
        }
        Ok(())
    }
}

/// What `vmemu show` prints: the view and its SVG drawing.
#[derive(Debug)]
pub struct Shown {
    /// The text and JSON view.
    pub view: View,
    /// The two walks drawn ([`crate::walk_svg`]); empty for `mm`.
    pub svg: String,
}

/// `vmemu show ADDR`: runs `w` (if any) on `arch` under `kernel`, then
/// shows `addr` (a mapping name or an address expression; `mm`: the
/// mappings).
pub fn show(
    w: Option<&crate::lang::Workload>,
    arch: vmemu_arch::ArchId,
    kernel: &vmemu_mm::KernelProfile,
    addr: &str,
) -> Result<Shown, crate::lang::ScriptError> {
    vmemu_arch::with_arch!(arch, A => show_in::<A>(w, kernel, addr))
}

fn show_in<A: Arch>(
    w: Option<&crate::lang::Workload>,
    kernel: &vmemu_mm::KernelProfile,
    addr: &str,
) -> Result<Shown, crate::lang::ScriptError> {
    let empty = crate::lang::Workload {
        name: "show".into(),
        file: "<show>".into(),
        ..crate::lang::Workload::default()
    };
    let w = w.unwrap_or(&empty);
    let mut r = super::Runner::<A>::start(w, kernel)?;
    let stmts = w.stmts.clone();
    r.exec_block(&stmts)?;
    if addr == "mm" {
        return Ok(Shown {
            view: mm_view(&r.sys.m),
            svg: String::new(),
        });
    }
    let e = crate::lang::parse_expr_str("<address>", addr)?;
    let va = r.addr(&e, crate::lang::Span { line: 1, col: 1 })?;
    let mut view = addr_view(&r.sys.m, va, false);
    let title = format!("{addr} = {va} on {} under {kernel}", A::ID);
    view.lines.insert(0, title.clone());
    let svg = crate::walk_svg::draw(&title, &view.json);
    Ok(Shown { view, svg })
}
