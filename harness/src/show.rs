//! `show`: the state at one line of a workload, as `crash`'s `vtop` and
//! QEMU's `info mem` would show it — the mappings (`/proc/PID/maps`
//! style, with the VMA flags), each level of the hardware walk and of
//! gup's software walk (`pgd_offset(mm, addr)`) with the raw entry and
//! its bits named as the arch's headers name them
//! ([`vmemu_arch::Arch::entry_bits`]), and the `struct page` counts of
//! the page mapped there. Text for the transcript and JSON for
//! `--format json` (`docs/json.md`), built from one [`View`].

use serde_json::{Value, json};
use vmemu_arch::{Arch, PteFlags, VirtAddr};
use vmemu_mm::Machine;
use vmemu_mm::mm::VmFlags;
use vmemu_mm::pgtable::{self, RootSel, Step};

/// What a `show` printed: its text lines and the same as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Lines of the text transcript (indented by the formatter).
    pub lines: Vec<String>,
    /// The JSON object of the `show` field.
    pub json: Value,
}

/// `r-xp`: the permission column of `/proc/PID/maps` (`show_map_vma`).
fn perms(f: VmFlags) -> String {
    let c = |b: VmFlags, ch: char| if f.contains(b) { ch } else { '-' };
    format!(
        "{}{}{}{}",
        c(VmFlags::VM_READ, 'r'),
        c(VmFlags::VM_WRITE, 'w'),
        c(VmFlags::VM_EXEC, 'x'),
        if f.contains(VmFlags::VM_MAYSHARE) {
            's'
        } else {
            'p'
        }
    )
}

/// One VMA as a maps line plus its flags, and as JSON.
fn vma_line<A: Arch>(m: &Machine<A>, v: &vmemu_mm::mm::Vma) -> (String, Value) {
    use vmemu_mm::Backing;
    let name = m.name(v.name).to_string();
    let (offset, path) = match &v.backing {
        Backing::Anon => (0, format!("[anon:{name}]")),
        Backing::File { file, pgoff } => (*pgoff * A::PAGE_SIZE, format!("file:{name}#{file}")),
        Backing::Pfnmap { .. } => (0, format!("[pfnmap:{name}]")),
    };
    let flags: Vec<&str> = v.flags.iter_names().map(|(n, _)| n).collect();
    let text = format!(
        "{:012x}-{:012x} {} {:08x} {}  {}",
        v.start.0,
        v.end.0,
        perms(v.flags),
        offset,
        path,
        flags.join("|")
    );
    let j = json!({
        "start": format!("{:#x}", v.start.0),
        "end": format!("{:#x}", v.end.0),
        "perms": perms(v.flags),
        "offset": format!("{offset:#x}"),
        "name": path,
        "flags": flags,
    });
    (text, j)
}

/// `show mm`: every VMA of the current mm.
pub fn mm_view<A: Arch>(m: &Machine<A>) -> View {
    let mm = m.current_mm();
    let mut lines = vec![format!(
        "maps of mm {} (start-end perms offset name  vm_flags):",
        mm.0
    )];
    let mut vmas = Vec::new();
    for v in m.mm(mm).vmas.values() {
        let (t, j) = vma_line(m, v);
        lines.push(format!("  {t}"));
        vmas.push(j);
    }
    View {
        lines,
        json: json!({"what": "mm", "vmas": vmas}),
    }
}

/// `PTE_VALID|PTE_USER|... (clear: PTE_UXN, ...)` for a raw entry.
fn bits_text(named: &[(&'static str, bool)]) -> String {
    let set: Vec<&str> = named.iter().filter(|b| b.1).map(|b| b.0).collect();
    let clear: Vec<&str> = named.iter().filter(|b| !b.1).map(|b| b.0).collect();
    let mut s = if set.is_empty() {
        "(no named bit set)".to_string()
    } else {
        set.join("|")
    };
    if !clear.is_empty() {
        s.push_str(&format!("  clear: {}", clear.join(" ")));
    }
    s
}

/// One walk as shown: a text line and a JSON object per level, the
/// outcome, and the (raw entry, index) read at each level (to compare
/// the two walks).
type WalkShown = (Vec<String>, Vec<Value>, Value, Vec<(u64, usize)>);

/// One walk of `va`.
fn walk_view<A: Arch>(m: &Machine<A>, va: VirtAddr, sel: RootSel) -> WalkShown {
    let fam = m.family();
    let roots = m.roots(m.current_mm());
    let mut steps: Vec<Step> = Vec::new();
    let res = pgtable::walk::<A>(&m.phys, fam, roots, va, sel, |s| steps.push(*s));
    let (mut lines, mut levels) = (Vec::new(), Vec::new());
    for s in &steps {
        let named = A::entry_bits(fam, s.level, s.raw);
        let kind = if s.raw == 0 {
            "none".to_string()
        } else if s.pte.has(PteFlags::TABLE) {
            format!(
                "table -> {}",
                m.table_name(pgtable::next_table::<A>(fam, s.level, s.raw))
            )
        } else {
            "leaf".to_string()
        };
        let level = A::geom(s.level).name;
        lines.push(format!(
            "    {level}[{}] = {:#018x}  {kind}  {}",
            s.index,
            s.raw,
            bits_text(&named)
        ));
        let set: Vec<&str> = named.iter().filter(|b| b.1).map(|b| b.0).collect();
        levels.push(json!({
            "level": level,
            "index": s.index,
            "raw": format!("{:#018x}", s.raw),
            "kind": kind,
            "bits": set,
        }));
    }
    let outcome = match res {
        Ok(t) => {
            let user = t.eff.contains(PteFlags::USER);
            lines.push(format!(
                "    => {} byte page {} at {}, {}",
                t.page_size,
                m.page_name(t.pfn),
                A::geom(t.level).name,
                if user { "user" } else { "kernel only" }
            ));
            json!({"page": m.page_name(t.pfn), "page_size": t.page_size, "level": A::geom(t.level).name, "user": user})
        }
        Err(f) => {
            lines.push(format!(
                "    => fault at {}: {:?}",
                A::geom(f.level).name,
                f.kind
            ));
            json!({"fault": format!("{:?}", f.kind), "level": A::geom(f.level).name})
        }
    };
    let key = steps.iter().map(|s| (s.raw, s.index)).collect();
    (lines, levels, outcome, key)
}

/// The `struct page` line of the page mapped at `va` (hardware walk), if
/// one is: refcount, mapcount, pincount and flags of its head.
fn page_counts<A: Arch>(m: &Machine<A>, va: VirtAddr) -> Option<(String, Value)> {
    let fam = m.family();
    let roots = m.roots(m.current_mm());
    let t = pgtable::walk::<A>(&m.phys, fam, roots, va, RootSel::Hardware, |_| {}).ok()?;
    let head = m.phys.compound_head(t.pfn);
    let p = m.phys.page(head);
    let flags: Vec<&str> = p.flags.iter_names().map(|(n, _)| n).collect();
    // Small folios count a FOLL_PIN as GUP_PIN_COUNTING_BIAS references
    // (include/linux/mm.h, folio_maybe_dma_pinned); large ones in _pincount.
    let pins = if p.order == 0 {
        p.refcount / vmemu_mm::phys::GUP_PIN_COUNTING_BIAS
    } else {
        p.pincount
    };
    let text = format!(
        "struct page {}: refcount {}, mapcount {}, pincount {}, order {}, flags {}",
        m.page_name(head),
        p.refcount,
        p.mapcount,
        pins,
        p.order,
        if flags.is_empty() {
            "0".to_string()
        } else {
            flags.join("|")
        }
    );
    let j = json!({
        "page": m.page_name(head),
        "refcount": p.refcount,
        "mapcount": p.mapcount,
        "pincount": pins,
        "order": p.order,
        "flags": flags,
    });
    Some((text, j))
}

/// `show ADDR`: the VMA, both walks (the software one only where it
/// differs from the hardware one), the page's counts. With `leaf_only`
/// (`show page NAME[i]`), the walks are left out.
pub fn addr_view<A: Arch>(m: &Machine<A>, va: VirtAddr, leaf_only: bool) -> View {
    let mut lines = vec![format!("address {va}")];
    let mut j = serde_json::Map::new();
    j.insert(
        "what".into(),
        json!(if leaf_only { "page" } else { "addr" }),
    );
    j.insert("address".into(), json!(format!("{va}")));
    match m.find_vma(m.current_mm(), va).filter(|v| v.start <= va) {
        Some(v) => {
            let (t, vj) = vma_line(m, &v);
            lines.push(format!("  vma {t}"));
            j.insert("vma".into(), vj);
        }
        None => lines.push("  vma: none (no mapping covers the address)".into()),
    }
    if !leaf_only {
        let fam = m.family();
        let (hw, hw_levels, hw_out, hw_key) = walk_view(m, va, RootSel::Hardware);
        let root =
            A::hw_root(fam, va).map_or("none: the MMU cannot translate it", |r| A::hw_root_desc(r));
        lines.push(format!(
            "  hardware walk (the MMU, as uaccess sees it; root {root}):"
        ));
        lines.extend(hw);
        let (sw, sw_levels, sw_out, sw_key) = walk_view(m, va, RootSel::Software);
        if sw_key == hw_key {
            lines.push("  software walk (gup: pgd_offset(mm, addr)): the same entries".into());
        } else {
            lines
                .push("  software walk (gup: pgd_offset(mm, addr) with the index masking):".into());
            lines.extend(sw);
        }
        j.insert("hardware_root".into(), json!(root));
        j.insert(
            "hardware".into(),
            json!({"levels": hw_levels, "outcome": hw_out}),
        );
        j.insert(
            "software".into(),
            json!({"levels": sw_levels, "outcome": sw_out, "same_as_hardware": sw_key == hw_key}),
        );
    } else if let Some(l) = walk_view(m, va, RootSel::Hardware).0.iter().rev().nth(1) {
        lines.push(format!("  leaf {}", l.trim_start()));
    }
    match page_counts(m, va) {
        Some((t, pj)) => {
            lines.push(format!("  {t}"));
            j.insert("struct_page".into(), pj);
        }
        None => lines.push("  struct page: none (nothing mapped)".into()),
    }
    View {
        lines,
        json: Value::Object(j),
    }
}
