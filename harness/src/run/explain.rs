//! `vmemu explain`: the walk of one address, level by level.

use super::*;

/// `vmemu explain`: both walks of `addr` level by level, after running the
/// workload `w` (if any) to set up the address space, and what the profile's
/// knobs make of the address.
pub fn explain(
    w: Option<&Workload>,
    arch: ArchId,
    kernel: &KernelProfile,
    addr: &str,
) -> Result<String, ScriptError> {
    with_arch!(arch, A => explain_in::<A>(w, kernel, addr))
}

fn explain_in<A: Arch>(
    w: Option<&Workload>,
    kernel: &KernelProfile,
    addr: &str,
) -> Result<String, ScriptError> {
    use std::fmt::Write as _;
    use vmemu_mm::pgtable::RootSel;
    let empty = Workload {
        name: "explain".into(),
        file: "<explain>".into(),
        ..Workload::default()
    };
    let w = w.unwrap_or(&empty);
    let mut r = Runner::<A>::start(w, kernel)?;
    let stmts = w.stmts.clone();
    r.exec_block(&stmts)?;
    let e = crate::lang::parse_expr_str("<address>", addr)?;
    let va = r.addr(&e, Span { line: 1, col: 1 })?;
    let m = &r.sys.m;
    let mut out = String::new();
    let _ = writeln!(out, "address {va} on {} under {kernel}", A::ID);
    for (title, sel) in [
        (
            "software walk (gup: pgd_offset(current->mm, addr) and the level table's index masking)",
            RootSel::Software,
        ),
        (
            "hardware walk (the MMU, as uaccess sees it)",
            RootSel::Hardware,
        ),
    ] {
        let _ = writeln!(out, "{title}:");
        explain_walk::<A>(&mut out, m, va, sel);
    }
    explain_knobs::<A>(&mut out, m, va);
    Ok(out)
}

/// One walk of `va` from the root `sel` names, a line per level and the
/// translation or fault it ends in.
fn explain_walk<A: Arch>(
    out: &mut String,
    m: &vmemu_mm::Machine<A>,
    va: VirtAddr,
    sel: vmemu_mm::pgtable::RootSel,
) {
    use std::fmt::Write as _;
    use vmemu_arch::PteFlags;
    use vmemu_mm::pgtable::{self, RootSel, Step};
    let fam = m.family();
    if sel == RootSel::Hardware {
        match A::hw_root(fam, va) {
            Some(root) => {
                let _ = writeln!(out, "  root: {}", A::hw_root_desc(root));
            }
            None => {
                let _ = writeln!(
                    out,
                    "  root: none: the MMU cannot translate this address (fault before any table is read)"
                );
                return;
            }
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    let roots = m.roots(m.current_mm());
    let res = pgtable::walk::<A>(&m.phys, fam, roots, va, sel, |s| steps.push(*s));
    for s in &steps {
        let kind = if s.raw == 0 {
            "none".to_string()
        } else if s.pte.has(PteFlags::TABLE) {
            format!(
                "table -> {}",
                m.table_name(pgtable::next_table::<A>(fam, s.level, s.raw))
            )
        } else {
            format!("leaf {:?}", s.pte.flags)
        };
        let _ = writeln!(
            out,
            "  {}[{}] at pa {} = {:#018x}  {kind}",
            A::geom(s.level).name,
            s.index,
            s.entry_pa,
            s.raw
        );
    }
    match res {
        Ok(t) => {
            let _ = writeln!(
                out,
                "  => {} byte page at level {}, page {}{}",
                t.page_size,
                A::geom(t.level).name,
                m.page_name(t.pfn),
                if t.eff.contains(PteFlags::USER) {
                    " (user)"
                } else {
                    " (kernel only)"
                }
            );
        }
        Err(f) => {
            let _ = writeln!(
                out,
                "  => fault at level {}: {:?}",
                A::geom(f.level).name,
                f.kind
            );
        }
    }
}

/// The knobs of the profile that decide what gup and uaccess make of `va`.
fn explain_knobs<A: Arch>(out: &mut String, m: &vmemu_mm::Machine<A>, va: VirtAddr) {
    use std::fmt::Write as _;
    let fam = m.family();
    let l = m.layout;
    let page = A::PAGE_SIZE;
    let ok_user = A::access_ok(fam, va, page, l.user_ds, SizeKind::Runtime);
    let ok_kernel = A::access_ok(fam, va, page, l.kernel_ds, SizeKind::Runtime);
    let k = &m.knobs;
    let _ = writeln!(out, "knobs that decide the outcome:");
    let _ = writeln!(
        out,
        "  access_ok(addr, PAGE_SIZE): USER_DS {ok_user}, KERNEL_DS {}",
        if k.set_fs {
            ok_kernel.to_string()
        } else {
            "n/a (no set_fs in this kernel)".into()
        }
    );
    let _ = writeln!(
        out,
        "  gup_fast_range = {:?}; end = addr + PAGE_SIZE {} TASK_SIZE_MAX ({:#x})",
        k.gup_fast_range,
        if va.0.wrapping_add(page) <= l.task_size_max {
            "<="
        } else {
            ">"
        },
        l.task_size_max
    );
    let _ = writeln!(
        out,
        "  gup-fast leaf test: {}",
        if A::PRIVATE_GUP_FAST && k.x86_private_gup {
            "x86 pte_allows_gup (PRESENT and USER)".to_string()
        } else {
            format!("{:?}", k.gup_fast_leaf)
        }
    );
    let _ = writeln!(
        out,
        "  set_fs = {}, numa_balancing = {}",
        k.set_fs, k.numa_balancing
    );
}
