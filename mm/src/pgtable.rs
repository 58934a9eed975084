//! Page-table construction and the one walker.
//!
//! Tables are frames of [`PhysMem`]; entries are the arch's raw words. The
//! walker has two root selections, as the kernel has two walks:
//! * [`RootSel::Hardware`]: the MMU's choice ([`Arch::hw_root`]): x86 one root
//!   whose kernel half is shared, arm64 TTBR0/TTBR1 by bit 55, powerpc radix by
//!   EA quadrant. Used by uaccess.
//! * [`RootSel::Software`]: `pgd_offset(mm, addr)`, always the mm's table with
//!   the index masking of [`Arch::index`]; kernel addresses alias into user
//!   slots on arm64 and powerpc. Used by gup.

use vmemu_arch::{Arch, Family, HwRoot, Level, Pfn, PhysAddr, Pte, PteFlags, VirtAddr};

use crate::phys::PhysMem;
use crate::sync::MmId;

mod frag;
pub use frag::{FragPage, TableAlloc, table_order};

/// Byte written over every table when it is freed (`tlb_remove_table`
/// in `Machine::free_tables`), so that a lockless walker reading a freed
/// table sees garbage that is recognised.
pub const TABLE_POISON_BYTE: u8 = 0x6b;
/// A table entry read from a poisoned (freed) table frame.
pub const TABLE_POISON: u64 = u64::from_ne_bytes([TABLE_POISON_BYTE; 8]);

/// Which root a walk starts from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RootSel {
    /// The MMU's root selection.
    Hardware,
    /// `pgd_offset(mm, addr)`.
    Software,
}

/// The two roots a walk may start from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Roots {
    /// The current mm's pgd.
    pub mm: PhysAddr,
    /// `init_mm.pgd` (`swapper_pg_dir`).
    pub kernel: PhysAddr,
}

/// One level visited by a walk (for `vmemu explain` and tests).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    /// The level.
    pub level: Level,
    /// Index used in the table at this level.
    pub index: usize,
    /// Physical address of the entry read.
    pub entry_pa: PhysAddr,
    /// The raw entry.
    pub raw: u64,
    /// Its decoding.
    pub pte: Pte,
}

/// A successful translation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    /// The leaf entry, decoded.
    pub leaf: Pte,
    /// The raw leaf entry.
    pub raw: u64,
    /// Level of the leaf.
    pub level: Level,
    /// Physical address of the leaf entry.
    pub entry_pa: PhysAddr,
    /// Bytes mapped by the leaf.
    pub page_size: u64,
    /// The base page containing the address.
    pub pfn: Pfn,
    /// Physical address of the byte.
    pub pa: PhysAddr,
    /// Permissions in effect: the leaf's, ANDed with the table entries' user
    /// and write bits where the arch does that (x86).
    pub eff: PteFlags,
    /// Which root the walk used.
    pub root: HwRoot,
    /// The user and write bits the upper-level table entries allow (all of
    /// them where the arch has no table permissions): what the leaf's bits
    /// are ANDed with to make `eff`.
    pub table_perms: PteFlags,
}

/// Why a walk stopped without a translation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultKind {
    /// The hardware cannot translate the address at all (non-canonical,
    /// reserved quadrant): a fault before any table is read.
    NoTranslation,
    /// An empty or non-present entry.
    NotPresent,
}

/// The neutral fault record: where the walk stopped and what it saw.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WalkFault {
    /// The address walked.
    pub va: VirtAddr,
    /// Level where the walk stopped.
    pub level: Level,
    /// The raw entry read there (0 for [`FaultKind::NoTranslation`]).
    pub raw: u64,
    /// Physical address of that entry, if one was read.
    pub entry_pa: Option<PhysAddr>,
    /// Why.
    pub kind: FaultKind,
}

/// Errors building page tables (emulator limits, not emulated faults).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum MapError {
    /// Out of emulated physical memory for a table.
    #[error("out of emulated physical memory")]
    NoMemory,
    /// A huge leaf covers the address at an upper level.
    #[error("a huge leaf at level {0} covers the address")]
    HugeInTheWay(u8),
    /// The leaf level cannot hold leaves on this arch.
    #[error("level {0} cannot hold a leaf")]
    BadLevel(u8),
    /// The address is not aligned to the leaf size.
    #[error("address not aligned to the leaf size")]
    Unaligned,
}

/// The table entry pointing at a next-level table (at `table`, a page or a
/// fragment of one: [`Arch::table_entry`]).
pub fn table_entry<A: Arch>(family: Family, level: Level, table: PhysAddr) -> u64 {
    A::table_entry(family, level, table)
}

/// Physical address of the table the entry `raw` at `level` points at
/// ([`Arch::table_step`]; `raw` must be a table entry).
#[inline]
pub fn next_table<A: Arch>(family: Family, level: Level, raw: u64) -> PhysAddr {
    A::table_step(family, level, raw).map_or(PhysAddr(0), |(pa, _)| pa)
}

/// Finds the entry slot for `va` at `leaf_level`, allocating missing tables.
/// Returns the physical address of the slot.
pub fn ensure_slot<A: Arch>(
    phys: &mut PhysMem,
    family: Family,
    pgd: PhysAddr,
    va: VirtAddr,
    leaf_level: Level,
    tables: &mut TableAlloc,
    mm: Option<MmId>,
) -> Result<PhysAddr, MapError> {
    let mut table = pgd;
    for l in 0..leaf_level.0 {
        let level = Level(l);
        let slot = table.add(A::index(va, level) as u64 * 8);
        let raw = phys.read_entry(slot).map_err(|_| MapError::NoMemory)?;
        let pte = A::decode(family, level, raw);
        table = if pte.has(PteFlags::TABLE) {
            next_table::<A>(family, level, raw)
        } else if raw == 0 {
            let t = tables
                .alloc::<A>(phys, mm, Level(l + 1))
                .ok_or(MapError::NoMemory)?;
            phys.write_entry(slot, table_entry::<A>(family, level, t))
                .map_err(|_| MapError::NoMemory)?;
            t
        } else {
            return Err(MapError::HugeInTheWay(l));
        };
    }
    Ok(table.add(A::index(va, leaf_level) as u64 * 8))
}

/// Installs a leaf for `va` at `level` and returns the entry it replaced.
pub fn set_leaf<A: Arch>(
    phys: &mut PhysMem,
    family: Family,
    pgd: PhysAddr,
    va: VirtAddr,
    level: Level,
    pte: Pte,
    tables: &mut TableAlloc,
    mm: Option<MmId>,
) -> Result<Pte, MapError> {
    if !A::geom(level).leaf_ok {
        return Err(MapError::BadLevel(level.0));
    }
    if va.offset_in(A::entry_span(level)) != 0 {
        return Err(MapError::Unaligned);
    }
    let slot = ensure_slot::<A>(phys, family, pgd, va, level, tables, mm)?;
    let old = phys.read_entry(slot).map_err(|_| MapError::NoMemory)?;
    let mut pte = pte;
    pte.flags |= PteFlags::LEAF;
    phys.write_entry(slot, A::encode(family, level, pte))
        .map_err(|_| MapError::NoMemory)?;
    Ok(A::decode(family, level, old))
}

/// A leaf found by [`lookup`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LeafSlot {
    /// Level of the entry.
    pub level: Level,
    /// Physical address of the entry.
    pub entry_pa: PhysAddr,
    /// The raw entry.
    pub raw: u64,
    /// Decoded.
    pub pte: Pte,
}

/// The software walk of `pgd` for `va` without permission checks: the deepest
/// entry reached (a leaf, or the first empty/non-table entry).
pub fn lookup<A: Arch>(
    phys: &PhysMem,
    family: Family,
    pgd: PhysAddr,
    va: VirtAddr,
) -> Option<LeafSlot> {
    let mut table = pgd;
    for l in 0..A::levels() as u8 {
        let level = Level(l);
        let slot = table.add(A::index(va, level) as u64 * 8);
        let raw = phys.read_entry(slot).ok()?;
        let pte = A::decode(family, level, raw);
        if pte.has(PteFlags::TABLE) && level != A::leaf_level() {
            table = next_table::<A>(family, level, raw);
            continue;
        }
        return Some(LeafSlot {
            level,
            entry_pa: slot,
            raw,
            pte,
        });
    }
    None
}

/// Bytes from `va` to the end of the aligned block around it that the
/// software walk of `pgd` resolves to no present leaf (an empty or
/// non-present entry at some level, or a table outside guest memory):
/// every address of that block gives the same answer as `va` to
/// [`lookup`], since the indices above the entry's level are the same. `0`
/// when `va` has a present leaf. Lets a walk over a long range skip holes
/// instead of looking at every page of them.
#[must_use]
pub fn hole_at<A: Arch>(phys: &PhysMem, family: Family, pgd: PhysAddr, va: VirtAddr) -> u64 {
    let rest = |span: u64| span - va.offset_in(span);
    let mut table = pgd;
    for l in 0..A::levels() as u8 {
        let level = Level(l);
        let slot = table.add(A::index(va, level) as u64 * 8);
        let Ok(raw) = phys.read_entry(slot) else {
            // This table is unreadable for every address its parent
            // entry covers (for the pgd: every address).
            return match l {
                0 => (u64::MAX - va.0).max(1),
                _ => rest(A::entry_span(Level(l - 1))),
            };
        };
        let pte = A::decode(family, level, raw);
        if pte.has(PteFlags::TABLE) && level != A::leaf_level() {
            table = next_table::<A>(family, level, raw);
            continue;
        }
        if pte.has(PteFlags::LEAF) && pte.has(PteFlags::PRESENT) {
            return 0;
        }
        return rest(A::entry_span(level));
    }
    0
}

/// The walker. `trace` sees every level visited.
///
/// Upper levels take [`Arch::table_step`] (a few bit tests) instead of a full
/// decode; the full decode of an upper entry is made only for `trace`, and
/// the compiler drops it when `trace` ignores its argument.
#[inline]
pub fn walk<A: Arch>(
    phys: &PhysMem,
    family: Family,
    roots: Roots,
    va: VirtAddr,
    sel: RootSel,
    mut trace: impl FnMut(&Step),
) -> Result<Translation, WalkFault> {
    let root = match sel {
        RootSel::Software => HwRoot::Mm,
        RootSel::Hardware => A::hw_root(family, va).ok_or(WalkFault {
            va,
            level: Level(0),
            raw: 0,
            entry_pa: None,
            kind: FaultKind::NoTranslation,
        })?,
    };
    let mut table_pa = match root {
        HwRoot::Mm => roots.mm,
        HwRoot::Kernel => roots.kernel,
    };
    let mut eff = PteFlags::USER | PteFlags::WRITE;
    let leaf_level = A::leaf_level();
    for l in 0..A::levels() as u8 {
        let level = Level(l);
        let index = A::index(va, level);
        let table = phys
            .table(table_pa, A::entries(level))
            .map_err(|_| WalkFault {
                va,
                level,
                raw: 0,
                entry_pa: None,
                kind: FaultKind::NotPresent,
            })?;
        let raw = table.get(index).unwrap_or(0);
        let entry_pa = table.entry_pa(index);
        trace(&Step {
            level,
            index,
            entry_pa,
            raw,
            pte: A::decode(family, level, raw),
        });
        if level != leaf_level
            && let Some((next, perms)) = A::table_step(family, level, raw)
        {
            if A::TABLE_PERMS {
                eff &= perms | !(PteFlags::USER | PteFlags::WRITE);
            }
            table_pa = next;
            continue;
        }
        let pte = A::decode(family, level, raw);
        return leaf_step::<A>(level, pte, raw, entry_pa, va, eff, root);
    }
    unreachable!("the leaf level always returns")
}

/// The walker's last step: the entry `raw` (decoded: `pte`) at `entry_pa`
/// of a level-`level` table, reached with the table permissions
/// `table_perms`, as the leaf.
#[inline]
fn leaf_step<A: Arch>(
    level: Level,
    pte: Pte,
    raw: u64,
    entry_pa: PhysAddr,
    va: VirtAddr,
    table_perms: PteFlags,
    root: HwRoot,
) -> Result<Translation, WalkFault> {
    if !pte.has(PteFlags::LEAF) || !pte.has(PteFlags::VALID) {
        return Err(WalkFault {
            va,
            level,
            raw,
            entry_pa: Some(entry_pa),
            kind: FaultKind::NotPresent,
        });
    }
    let page_size = A::entry_span(level);
    let off = va.offset_in(page_size);
    let pa = pte.pfn.addr(A::PAGE_SHIFT).add(off);
    let eff = (pte.flags & !(PteFlags::USER | PteFlags::WRITE))
        | (pte.flags & table_perms & (PteFlags::USER | PteFlags::WRITE));
    Ok(Translation {
        leaf: pte,
        raw,
        level,
        entry_pa,
        page_size,
        pfn: pa.pfn(A::PAGE_SHIFT),
        pa,
        eff,
        root,
        table_perms,
    })
}

/// The flags of the last leaf entry [`walk_from_leaf_table`] decoded, keyed
/// by its bits outside the pfn field ([`Arch::leaf_pfn_field`]): the next
/// entry with the same bits there has the same flags, so it needs no decode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LeafMemo {
    level: Level,
    family: Family,
    key: u64,
    flags: PteFlags,
}

/// The last level of a [`walk`] of `va` whose upper levels are known: a
/// walk of an address under the same table, with no page table changed
/// since ([`PhysMem::generation`]), reaches `table` (the level-`level`
/// table that held an earlier walk's leaf) with the same `table_perms`
/// and `root`, so reading the one entry of `va` there gives what the whole
/// walk gives. `None` where the walk would not stop at this level with a
/// translation (a table entry, an empty or invalid entry, an unreadable
/// table): the caller walks from the root, which reports the fault.
/// `memo` carries the last decode across calls (it depends on nothing but
/// the entry bits, the level and the family).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn walk_from_leaf_table<A: Arch>(
    phys: &PhysMem,
    family: Family,
    table: PhysAddr,
    level: Level,
    table_perms: PteFlags,
    root: HwRoot,
    va: VirtAddr,
    memo: &mut Option<LeafMemo>,
) -> Option<Translation> {
    let index = A::index(va, level);
    let t = phys.table(table, A::entries(level)).ok()?;
    let raw = t.get(index)?;
    let field = A::leaf_pfn_field(level);
    if let (Some((mask, shift)), Some(m)) = (field, *memo)
        && m.key == raw & !mask
        && m.level == level
        && m.family == family
    {
        // The same flags as a leaf decoded before: a leaf too (not a
        // table entry), with the pfn in the field.
        let pte = Pte {
            flags: m.flags,
            pfn: Pfn((raw & mask) >> shift),
        };
        return leaf_step::<A>(level, pte, raw, t.entry_pa(index), va, table_perms, root).ok();
    }
    if level != A::leaf_level() && A::table_step(family, level, raw).is_some() {
        return None;
    }
    let pte = A::decode(family, level, raw);
    let tr = leaf_step::<A>(level, pte, raw, t.entry_pa(index), va, table_perms, root).ok()?;
    if let Some((mask, _)) = field {
        *memo = Some(LeafMemo {
            level,
            family,
            key: raw & !mask,
            flags: pte.flags,
        });
    }
    Some(tr)
}

/// Visits every present or non-empty leaf entry in `[start, end)` of `pgd`,
/// skipping empty tables (cost grows with what is mapped, not with the range).
pub fn for_each_leaf<A: Arch>(
    phys: &PhysMem,
    family: Family,
    pgd: PhysAddr,
    start: VirtAddr,
    end: VirtAddr,
    f: &mut impl FnMut(VirtAddr, LeafSlot),
) {
    fn rec<A: Arch>(
        phys: &PhysMem,
        family: Family,
        table: PhysAddr,
        level: Level,
        base: u64,
        start: u64,
        end: u64,
        f: &mut impl FnMut(VirtAddr, LeafSlot),
    ) {
        let span = A::entry_span(level);
        let n = A::entries(level) as u64;
        let Ok(t) = phys.table(table, n as usize) else {
            return;
        };
        let first = start.saturating_sub(base) / span;
        for i in first..n {
            let va = base + i * span;
            if va >= end {
                break;
            }
            let raw = t.get(i as usize).unwrap_or(0);
            if raw == 0 {
                continue;
            }
            let pte = A::decode(family, level, raw);
            if pte.has(PteFlags::TABLE) && level != A::leaf_level() {
                rec::<A>(
                    phys,
                    family,
                    next_table::<A>(family, level, raw),
                    Level(level.0 + 1),
                    va,
                    start,
                    end,
                    f,
                );
            } else if va + span > start {
                f(
                    VirtAddr(va),
                    LeafSlot {
                        level,
                        entry_pa: t.entry_pa(i as usize),
                        raw,
                        pte,
                    },
                );
            }
        }
    }
    let top = 1u64 << A::va_bits();
    let end = end.0.min(top);
    if start.0 < end {
        rec::<A>(phys, family, pgd, Level(0), 0, start.0, end, f);
    }
}

/// Frees the tables below `pgd` that became empty inside `[start, end)` and
/// clears the entries pointing at them; the freed tables are returned
/// to the caller, which must free them only after every lockless walker that
/// could see them has left (the RCU/IPI rule of gup-fast).
pub fn prune_empty_tables<A: Arch>(
    phys: &PhysMem,
    family: Family,
    pgd: PhysAddr,
    start: VirtAddr,
    end: VirtAddr,
) -> Vec<PhysAddr> {
    fn rec<A: Arch>(
        phys: &PhysMem,
        family: Family,
        table: PhysAddr,
        level: Level,
        base: u64,
        start: u64,
        end: u64,
        freed: &mut Vec<PhysAddr>,
    ) -> bool {
        let span = A::entry_span(level);
        let n = A::entries(level) as u64;
        let mut empty = true;
        for i in 0..n {
            let va = base + i * span;
            let slot = table.add(i * 8);
            let raw = phys.read_entry(slot).unwrap_or(0);
            if raw == 0 {
                continue;
            }
            let pte = A::decode(family, level, raw);
            let inside = va < end && va + span > start;
            if inside && pte.has(PteFlags::TABLE) && level != A::leaf_level() {
                let child = next_table::<A>(family, level, raw);
                if rec::<A>(
                    phys,
                    family,
                    child,
                    Level(level.0 + 1),
                    va,
                    start,
                    end,
                    freed,
                ) {
                    let _ = phys.write_entry(slot, 0);
                    freed.push(child);
                    continue;
                }
            }
            empty = false;
        }
        empty
    }
    let mut freed = Vec::new();
    let top = 1u64 << A::va_bits();
    rec::<A>(
        phys,
        family,
        pgd,
        Level(0),
        0,
        start.0,
        end.0.min(top),
        &mut freed,
    );
    freed
}
