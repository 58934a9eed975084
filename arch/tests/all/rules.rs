//! Table-driven tests of `vmemu-arch` against `spec/arch-and-gup.md`:
//! §4.3 `access_ok` edge tables, §3 PTE codec round trips (with the documented
//! derived predicates), §2 geometry and `pgd_index` aliasing, hardware root
//! selection, and the §4.1/§4.2 layout constants.
//!
//! Every table row is data; the `rule` column names the spec statement it checks.
//! A failing table reports every failing row, not only the first.

use proptest::prelude::*;
use vmemu_arch::{
    Arch, ArchId, Arm64, Family, HwRoot, Layout, Level, Pfn, Ppc64, Ppc64_4k, Pte, PteFlags,
    SizeKind, VirtAddr, X86_64, with_arch,
};

// ---------------------------------------------------------------------------
// Shorthands used by the tables.

const X86: ArchId = ArchId::X86_64;
const ARM: ArchId = ArchId::Arm64;
const PPC: ArchId = ArchId::Ppc64;
const PPC4K: ArchId = ArchId::Ppc64_4k;
const LEG: Family = Family::Legacy;
const MOD: Family = Family::Modern;
const C: SizeKind = SizeKind::Constant;
const R: SizeKind = SizeKind::Runtime;

const TOP: u64 = u64::MAX;
/// 2^64 - PAGE_SIZE(4K): the last 4K page of the address space.
const TOP_PAGE: u64 = 0u64.wrapping_sub(4096);
const P46: u64 = 1 << 46;
const P47: u64 = 1 << 47;
const P48: u64 = 1 << 48;
const P52: u64 = 1 << 52;
/// x86-64 TASK_SIZE_MAX = USER_DS = 2^47 - 4096.
const X86_TSM: u64 = P47 - 4096;
/// ppc64 v4.10 USER_DS = TASK_SIZE_USER64 - 1 = 2^46 - 1.
const PPC_SEG: u64 = P46 - 1;

fn layout(arch: ArchId, family: Family) -> Layout {
    with_arch!(arch, A => A::layout(family))
}

fn access_ok(
    arch: ArchId,
    family: Family,
    addr: u64,
    size: u64,
    limit: u64,
    kind: SizeKind,
) -> bool {
    with_arch!(arch, A => A::access_ok(family, VirtAddr(addr), size, limit, kind))
}

fn families() -> [Family; 2] {
    [LEG, MOD]
}

/// Fails the test with every collected message.
fn report(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} failing row(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ===========================================================================
// 1. access_ok (spec §4.3), limits from §4.2
// ===========================================================================

/// The `limit` (addr_limit) argument of a row.
#[derive(Clone, Copy, Debug)]
enum Lim {
    /// `layout(family).user_ds`.
    U,
    /// `layout(family).kernel_ds`.
    K,
    /// An explicit value (to show the modern form ignores the argument).
    Raw(u64),
}
use Lim::{K, Raw, U};

/// (arch, family, addr, size, limit, kind, expected, spec rule)
type OkRow = (ArchId, Family, u64, u64, Lim, SizeKind, bool, &'static str);

#[rustfmt::skip]
const ACCESS_OK: &[OkRow] = &[
    // ---- x86 v4.10 (Family::Legacy), USER_DS = 2^47 - 4096 -------------------------
    // §4.3 x86 v4.10: "size 0: passes iff addr <= limit".
    (X86, LEG, X86_TSM,       0, U, C, true,  "x86 v4.10 size 0: addr <= limit (constant)"),
    (X86, LEG, X86_TSM,       0, U, R, true,  "x86 v4.10 size 0: addr <= limit (runtime)"),
    (X86, LEG, X86_TSM + 1,   0, U, C, false, "x86 v4.10 size 0: addr > limit (constant)"),
    (X86, LEG, X86_TSM + 1,   0, U, R, false, "x86 v4.10 size 0: addr > limit (runtime)"),
    (X86, LEG, 0,             0, U, R, true,  "x86 v4.10 size 0 at address 0"),
    // constant size: `addr <= limit - size`; a range ending exactly at the limit passes.
    (X86, LEG, X86_TSM - 8,   8, U, C, true,  "x86 v4.10 constant: addr <= limit - size, range ends at limit"),
    (X86, LEG, X86_TSM - 7,   8, U, C, false, "x86 v4.10 constant: one byte past the limit"),
    // runtime size: `s = addr + size`, reject on carry, else `s <= limit`.
    (X86, LEG, X86_TSM - 8,   8, U, R, true,  "x86 v4.10 runtime: s == limit passes"),
    (X86, LEG, X86_TSM - 7,   8, U, R, false, "x86 v4.10 runtime: s == limit + 1 fails"),
    (X86, LEG, 0x1000, X86_TSM - 0x1000, U, R, true,  "x86 v4.10 runtime: whole user range"),
    (X86, LEG, 0x1000, X86_TSM - 0xfff,  U, R, false, "x86 v4.10 runtime: whole user range + 1"),
    (X86, LEG, 0, X86_TSM,    U, R, true,  "x86 v4.10 runtime: size == limit from 0"),
    // wraparound: "rejected under USER_DS and KERNEL_DS".
    (X86, LEG, TOP - 3,       8, U, C, false, "x86 v4.10 wrap under USER_DS (constant)"),
    (X86, LEG, TOP - 3,       8, U, R, false, "x86 v4.10 wrap under USER_DS (runtime)"),
    (X86, LEG, 0x2000, TOP - 0xfff, U, R, false, "x86 v4.10 runtime wrap: s = 0xfff < size (carry)"),
    (X86, LEG, 0xffff_8800_0000_0000, 0x1000, U, R, false, "x86 v4.10 kernel address under USER_DS"),
    (X86, LEG, 0xffff_8800_0000_0000, 8, U, C, false, "x86 v4.10 kernel address under USER_DS (constant)"),
    // KERNEL_DS = -1.
    (X86, LEG, TOP,           0, K, C, true,  "x86 v4.10 KERNEL_DS size 0: addr <= -1 always"),
    (X86, LEG, TOP,           0, K, R, true,  "x86 v4.10 KERNEL_DS size 0 (runtime)"),
    (X86, LEG, TOP - 8,       8, K, C, true,  "x86 v4.10 KERNEL_DS: range ending exactly at the limit (2^64-1)"),
    (X86, LEG, TOP - 8,       8, K, R, true,  "x86 v4.10 KERNEL_DS: s == limit (runtime)"),
    (X86, LEG, TOP - 7,       8, K, C, false, "x86 v4.10 KERNEL_DS: one byte past (ends at 2^64)"),
    (X86, LEG, TOP - 7,       8, K, R, false, "x86 v4.10 KERNEL_DS: ends at 2^64, s = 0 < size"),
    (X86, LEG, TOP_PAGE, 4095, K, R, true,  "x86 v4.10 KERNEL_DS: last page minus one byte"),
    (X86, LEG, TOP_PAGE, 4096, K, R, false, "x86 v4.10 KERNEL_DS: last page, carry"),
    (X86, LEG, TOP_PAGE, 4096, K, C, false, "x86 v4.10 KERNEL_DS: last page, addr > -1 - 4096"),
    (X86, LEG, TOP - 3,       8, K, C, false, "x86 v4.10 wrap under KERNEL_DS (constant)"),
    (X86, LEG, TOP - 3,       8, K, R, false, "x86 v4.10 wrap under KERNEL_DS (runtime)"),
    (X86, LEG, 1 << 63, (1 << 63) + 0x1000, K, R, false, "x86 v4.10 KERNEL_DS: huge wrap, s = 0x1000 < size"),
    (X86, LEG, 0xffff_8800_0000_0000, 0x1000, K, R, true, "x86 v4.10 kernel address under KERNEL_DS"),
    (X86, LEG, 0xffff_8800_0000_0000, 8, K, C, true, "x86 v4.10 kernel address under KERNEL_DS (constant)"),
    // Not a §4.3 cell: the constant form taken in C unsigned arithmetic. `limit - size`
    // wraps when a constant size exceeds the limit, so a wrapping range then passes.
    // The spec's "rejected" assumes sizeof()-sized constants (always far below USER_DS).
    (X86, LEG, 0xffff_7fff_ffff_f000, P48, U, C, true,  "x86 v4.10 constant size > limit: limit - size wraps (C arithmetic)"),
    (X86, LEG, 0xffff_8000_0000_0000, P48, U, C, false, "x86 v4.10 constant size > limit: one page above the wrapped bound"),

    // ---- x86-64 6.13 (Family::Modern): USER_PTR_MAX = TASK_SIZE_MAX; limit ignored --------
    (X86, MOD, X86_TSM,       0, U, C, true,  "x86 6.13 size 0: addr <= max"),
    (X86, MOD, X86_TSM,       0, U, R, true,  "x86 6.13 size 0: sum = addr <= max"),
    (X86, MOD, X86_TSM + 1,   0, U, C, false, "x86 6.13 size 0: addr > max"),
    (X86, MOD, X86_TSM + 1,   0, U, R, false, "x86 6.13 size 0: addr > max (runtime)"),
    // "compile-time small size (<= PAGE_SIZE): addr <= USER_PTR_MAX" -- the one-page slop.
    (X86, MOD, X86_TSM,    4096, U, C, true,  "x86 6.13 constant <= PAGE_SIZE: only addr checked (range ends at 2^47: slop)"),
    (X86, MOD, X86_TSM,       8, U, C, true,  "x86 6.13 constant 8 at the max: slop"),
    (X86, MOD, X86_TSM + 1,   1, U, C, false, "x86 6.13 constant: addr above max"),
    (X86, MOD, X86_TSM,    4096, U, R, false, "x86 6.13 runtime: no slop, sum = 2^47 > max"),
    (X86, MOD, X86_TSM,       8, U, R, false, "x86 6.13 runtime: no slop"),
    (X86, MOD, X86_TSM - 4096, 4097, U, C, false, "x86 6.13 constant > PAGE_SIZE takes the sum path"),
    (X86, MOD, X86_TSM - 4097, 4097, U, C, true,  "x86 6.13 constant > PAGE_SIZE: sum == max passes"),
    (X86, MOD, TOP - 3,       8, U, C, false, "x86 6.13 constant small, kernel/wrapping addr: addr > max"),
    // "else s = addr+size, s <= USER_PTR_MAX and s >= addr".
    (X86, MOD, X86_TSM - 8,   8, U, R, true,  "x86 6.13 runtime: range ending exactly at max"),
    (X86, MOD, X86_TSM - 7,   8, U, R, false, "x86 6.13 runtime: one byte past"),
    (X86, MOD, TOP - 3,       8, U, R, false, "x86 6.13 runtime wrap: s = 4 < addr"),
    (X86, MOD, 0x1000,      TOP, U, R, false, "x86 6.13 runtime wrap: s = 0xfff <= max but s < addr"),
    // set_fs is gone: KERNEL_DS (or any stale addr_limit) changes nothing.
    (X86, MOD, X86_TSM - 8,   8, K, R, true,  "x86 6.13 'KERNEL_DS' row = USER_DS row"),
    (X86, MOD, X86_TSM - 7,   8, K, R, false, "x86 6.13 'KERNEL_DS' row = USER_DS row"),
    (X86, MOD, TOP - 3,       8, K, R, false, "x86 6.13 wrap under 'KERNEL_DS'"),
    (X86, MOD, 0xffff_8880_0000_0000, 8, Raw(TOP), R, false, "x86 6.13: an addr_limit of -1 is ignored"),
    (X86, MOD, 0xffff_8880_0000_0000, 8, Raw(TOP), C, false, "x86 6.13: an addr_limit of -1 is ignored (constant)"),
    (X86, MOD, 0x1000,        8, Raw(0), R, true, "x86 6.13: an addr_limit of 0 is ignored"),

    // ---- arm64 v4.10: exact 65-bit sum `addr + size <= limit`; USER_DS = 2^48 -----------
    (ARM, LEG, P48,           0, U, R, true,  "arm64 v4.10 size 0: addr <= limit"),
    (ARM, LEG, P48,           0, U, C, true,  "arm64 v4.10 size 0: kind ignored"),
    (ARM, LEG, P48 + 1,       0, U, R, false, "arm64 v4.10 size 0: addr > limit"),
    (ARM, LEG, P48 - 4096, 4096, U, R, true,  "arm64 v4.10: range ending exactly at USER_DS"),
    (ARM, LEG, P48 - 4096, 4096, U, C, true,  "arm64 v4.10: range ending exactly at USER_DS (constant)"),
    (ARM, LEG, P48 - 4096, 4097, U, R, false, "arm64 v4.10: one byte past USER_DS"),
    (ARM, LEG, P48 - 4096, 4097, U, C, false, "arm64 v4.10: one byte past USER_DS (constant)"),
    (ARM, LEG, 0,           P48, U, R, true,  "arm64 v4.10: the whole user range"),
    (ARM, LEG, 0,       P48 + 1, U, R, false, "arm64 v4.10: size one byte over the limit"),
    (ARM, LEG, TOP - 3,       8, U, R, false, "arm64 v4.10: wrap rejected under USER_DS"),
    (ARM, LEG, 0xffff_8000_0000_0000, 0x1000, U, R, false, "arm64 v4.10: linear map under USER_DS"),
    // KERNEL_DS = -1: "a range ending exactly at 2^64 is also rejected under KERNEL_DS".
    (ARM, LEG, TOP,           0, K, R, true,  "arm64 v4.10 KERNEL_DS size 0"),
    (ARM, LEG, TOP - 8,       8, K, R, true,  "arm64 v4.10 KERNEL_DS: addr + size == 2^64 - 1 == limit"),
    (ARM, LEG, TOP - 7,       8, K, R, false, "arm64 v4.10 KERNEL_DS: range ending exactly at 2^64 rejected"),
    (ARM, LEG, TOP_PAGE,   4096, K, R, false, "arm64 v4.10 KERNEL_DS: last page ends at 2^64, rejected"),
    (ARM, LEG, TOP_PAGE,   4096, K, C, false, "arm64 v4.10 KERNEL_DS: last page ends at 2^64 (constant)"),
    (ARM, LEG, TOP_PAGE,   4095, K, R, true,  "arm64 v4.10 KERNEL_DS: last page minus one byte"),
    (ARM, LEG, 0,           TOP, K, R, true,  "arm64 v4.10 KERNEL_DS: 0 + (2^64-1) == limit"),
    (ARM, LEG, 1,           TOP, K, R, false, "arm64 v4.10 KERNEL_DS: 65-bit sum 2^64 > limit"),
    (ARM, LEG, TOP - 3,       8, K, R, false, "arm64 v4.10 KERNEL_DS: wrap rejected (carry)"),
    (ARM, LEG, TOP,         TOP, K, R, false, "arm64 v4.10 KERNEL_DS: maximal wrap rejected"),
    (ARM, LEG, 0xffff_8000_0000_0000, 0x1000, K, R, true, "arm64 v4.10 KERNEL_DS: linear map passes"),

    // ---- arm64 6.x generic: `size <= TASK_SIZE_MAX && addr <= TASK_SIZE_MAX - size`, 2^48 ---
    (ARM, MOD, P48,           0, U, R, true,  "generic 6.x arm64 size 0: addr <= TASK_SIZE_MAX"),
    (ARM, MOD, P48 + 1,       0, U, R, false, "generic 6.x arm64 size 0: addr > TASK_SIZE_MAX"),
    (ARM, MOD, P48 - 4096, 4096, U, R, true,  "generic 6.x arm64: range ending exactly at TASK_SIZE_MAX"),
    (ARM, MOD, P48 - 4096, 4097, U, R, false, "generic 6.x arm64: one byte past"),
    (ARM, MOD, P48 - 4096, 4097, U, C, false, "generic 6.x arm64: one byte past (kind ignored)"),
    (ARM, MOD, 0,           P48, U, R, true,  "generic 6.x arm64: size == TASK_SIZE_MAX from 0"),
    (ARM, MOD, 0,       P48 + 1, U, R, false, "generic 6.x arm64: size > TASK_SIZE_MAX"),
    (ARM, MOD, 1,           P48, U, R, false, "generic 6.x arm64: addr > TASK_SIZE_MAX - size"),
    (ARM, MOD, TOP - 3,       8, U, R, false, "generic 6.x arm64: wrap rejected"),
    (ARM, MOD, 1,           TOP, U, R, false, "generic 6.x arm64: wrap via huge size rejected"),
    (ARM, MOD, TOP - 3,       8, K, R, false, "generic 6.x arm64: no KERNEL_DS"),
    (ARM, MOD, 0xffff_0000_0000_0000, 8, Raw(TOP), R, false, "generic 6.x arm64: addr_limit -1 ignored"),
    // Untagging (kthreads, TIF_TAGGED_ADDR) is not modelled: a tagged pointer fails.
    (ARM, MOD, 0x5a00_0000_0000_1000, 8, U, R, false, "generic 6.x arm64: tagged pointer, task without TIF_TAGGED_ADDR"),

    // ---- ppc64 v4.10: `addr <= seg && size <= seg`, no check of addr + size -------------
    (PPC, LEG, PPC_SEG,       0, U, R, true,  "ppc64 v4.10 size 0: addr <= TASK_SIZE-1"),
    (PPC, LEG, PPC_SEG + 1,   0, U, R, false, "ppc64 v4.10 size 0: addr = TASK_SIZE"),
    (PPC, LEG, PPC_SEG - 7,   8, U, R, true,  "ppc64 v4.10: range ending exactly at TASK_SIZE"),
    (PPC, LEG, PPC_SEG - 6,   8, U, R, true,  "ppc64 v4.10: one byte past TASK_SIZE still passes (no sum check)"),
    (PPC, LEG, PPC_SEG,       8, U, C, true,  "ppc64 v4.10: starts at the last byte, passes (kind ignored)"),
    (PPC, LEG, PPC_SEG, PPC_SEG, U, R, true,  "ppc64 v4.10 USER_DS: range may extend up to ~2*TASK_SIZE"),
    (PPC, LEG, PPC_SEG, PPC_SEG + 1, U, R, false, "ppc64 v4.10: size > seg"),
    (PPC, LEG, PPC_SEG + 1,   1, U, R, false, "ppc64 v4.10: addr > seg"),
    (PPC, LEG, TOP - 3,       8, U, R, false, "ppc64 v4.10 USER_DS: wrap impossible (addr > seg)"),
    (PPC, LEG, 0xc000_0000_0000_0000, 0x1000, U, R, false, "ppc64 v4.10: linear map under USER_DS"),
    (PPC, LEG, TOP,           0, K, R, true,  "ppc64 v4.10 KERNEL_DS size 0"),
    (PPC, LEG, TOP - 3,       8, K, R, true,  "ppc64 v4.10 KERNEL_DS: wrapping range passes"),
    (PPC, LEG, TOP,         TOP, K, R, true,  "ppc64 v4.10 KERNEL_DS: everything passes, maximal wrap"),
    (PPC, LEG, TOP_PAGE,   4096, K, R, true,  "ppc64 v4.10 KERNEL_DS: range ending exactly at 2^64"),
    (PPC, LEG, 0xc000_0000_0000_0000, 0x1000, K, C, true, "ppc64 v4.10 KERNEL_DS: linear map"),
    // Same predicate for the 4K-page variant (TASK_SIZE_USER64 is 64 TiB for both).
    (PPC4K, LEG, PPC_SEG,     0, U, R, true,  "ppc64-4k v4.10 size 0: addr <= TASK_SIZE-1"),
    (PPC4K, LEG, PPC_SEG + 1, 0, U, R, false, "ppc64-4k v4.10 size 0: addr = TASK_SIZE"),
    (PPC4K, LEG, PPC_SEG - 6, 8, U, R, true,  "ppc64-4k v4.10: one byte past still passes"),
    (PPC4K, LEG, PPC_SEG, PPC_SEG, U, R, true, "ppc64-4k v4.10 USER_DS: up to ~2*TASK_SIZE"),
    (PPC4K, LEG, PPC_SEG, PPC_SEG + 1, U, R, false, "ppc64-4k v4.10: size > seg"),
    (PPC4K, LEG, TOP - 3,     8, U, R, false, "ppc64-4k v4.10 USER_DS: wrap impossible"),
    (PPC4K, LEG, TOP,       TOP, K, C, true,  "ppc64-4k v4.10 KERNEL_DS: everything passes"),

    // ---- ppc64 6.x generic, TASK_SIZE_MAX = TASK_SIZE_USER64 (64K: 2^52, 4K: 2^46) --------
    (PPC, MOD, P52,           0, U, R, true,  "generic 6.x ppc64 size 0: addr <= TASK_SIZE_MAX"),
    (PPC, MOD, P52 + 1,       0, U, R, false, "generic 6.x ppc64 size 0: addr > TASK_SIZE_MAX"),
    (PPC, MOD, P52 - 8,       8, U, R, true,  "generic 6.x ppc64: range ending exactly at TASK_SIZE_MAX"),
    (PPC, MOD, P52 - 7,       8, U, R, false, "generic 6.x ppc64: one byte past"),
    (PPC, MOD, 0,           P52, U, R, true,  "generic 6.x ppc64: size == TASK_SIZE_MAX"),
    (PPC, MOD, 0,       P52 + 1, U, R, false, "generic 6.x ppc64: size > TASK_SIZE_MAX"),
    (PPC, MOD, P46,           8, U, R, true,  "generic 6.x ppc64 64K: 4 PiB user space (above 64 TiB)"),
    (PPC, MOD, TOP - 3,       8, U, R, false, "generic 6.x ppc64: wrap rejected"),
    (PPC, MOD, TOP,         TOP, K, R, false, "generic 6.x ppc64: no KERNEL_DS, wrap rejected"),
    (PPC, MOD, 0xc000_0000_0000_0000, 8, Raw(TOP), C, false, "generic 6.x ppc64: addr_limit -1 ignored"),
    (PPC4K, MOD, P46,         0, U, R, true,  "generic 6.x ppc64-4k size 0: addr <= 2^46"),
    (PPC4K, MOD, P46 + 1,     0, U, R, false, "generic 6.x ppc64-4k size 0: addr > 2^46"),
    (PPC4K, MOD, P46 - 8,     8, U, R, true,  "generic 6.x ppc64-4k: range ending exactly at 2^46"),
    (PPC4K, MOD, P46 - 7,     8, U, R, false, "generic 6.x ppc64-4k: one byte past"),
    (PPC4K, MOD, P46,         8, U, R, false, "generic 6.x ppc64-4k: 64 TiB user space"),
    (PPC4K, MOD, TOP - 3,     8, K, R, false, "generic 6.x ppc64-4k: wrap rejected"),
];

#[test]
fn access_ok_edge_table() {
    let mut failures = Vec::new();
    for &(arch, family, addr, size, lim, kind, expected, rule) in ACCESS_OK {
        let l = layout(arch, family);
        let limit = match lim {
            U => l.user_ds,
            K => l.kernel_ds,
            Raw(v) => v,
        };
        let got = access_ok(arch, family, addr, size, limit, kind);
        if got != expected {
            failures.push(format!(
                "  {arch} {family:?} addr={addr:#x} size={size:#x} limit={lim:?}={limit:#x} {kind:?}: \
                 got {got}, want {expected}  [{rule}]"
            ));
        }
    }
    report("access_ok", &failures);
}

/// Every (arch, family) pair of §4.3 has rows for: size 0, a range ending at
/// the limit, one byte past, and a wrapping range, under USER_DS and KERNEL_DS.
#[test]
fn access_ok_table_covers_every_arch_and_family() {
    // The geometry variants' rows are in geometry.rs.
    for arch in [X86, ARM, PPC, PPC4K] {
        for family in families() {
            let rows: Vec<_> = ACCESS_OK
                .iter()
                .filter(|r| r.0 == arch && r.1 == family)
                .collect();
            assert!(
                rows.iter().any(|r| r.3 == 0),
                "{arch} {family:?}: no size-0 row"
            );
            assert!(
                rows.iter().any(|r| r.2.checked_add(r.3).is_none()),
                "{arch} {family:?}: no wrapping row"
            );
            assert!(
                rows.iter().any(|r| matches!(r.4, U)),
                "{arch} {family:?}: no USER_DS row"
            );
            assert!(
                rows.iter().any(|r| matches!(r.4, K)),
                "{arch} {family:?}: no KERNEL_DS row"
            );
            assert!(rows.iter().any(|r| r.6) && rows.iter().any(|r| !r.6));
        }
    }
}

/// Small values, values around the interesting limits and values near 2^64.
fn edge_u64() -> impl Strategy<Value = u64> {
    let anchors = prop::sample::select(vec![
        0,
        4096,
        PPC_SEG,
        P46,
        X86_TSM,
        P47,
        P48,
        P52,
        1 << 63,
        TOP_PAGE,
        TOP,
    ]);
    prop_oneof![
        any::<u64>(),
        (anchors, -4100i64..4100).prop_map(|(a, d)| a.wrapping_add_signed(d)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(4096) })]

    /// §4.3 restated independently of the crate's formulation, for any
    /// addr/size/limit.
    #[test]
    fn access_ok_matches_the_spec_predicates(
        addr in edge_u64(),
        size in edge_u64(),
        limit in edge_u64(),
    ) {
        // "the exact 65-bit sum addr + size <= limit (carry -> reject)".
        let sum_le = |max: u64| addr.checked_add(size).is_some_and(|e| e <= max);

        // arm64 v4.10: 65-bit sum, whatever the kind.
        for kind in [C, R] {
            prop_assert_eq!(access_ok(ARM, LEG, addr, size, limit, kind), sum_le(limit));
        }
        // x86 v4.10 runtime: s = addr + size, reject if s < size, else s <= limit:
        // the same predicate as arm64's 65-bit sum.
        prop_assert_eq!(access_ok(X86, LEG, addr, size, limit, R), sum_le(limit));
        // x86 v4.10 constant: addr <= limit - size (C unsigned arithmetic); equal to
        // the sum test whenever the constant does not exceed the limit.
        prop_assert_eq!(
            access_ok(X86, LEG, addr, size, limit, C),
            addr <= limit.wrapping_sub(size)
        );
        if size <= limit {
            prop_assert_eq!(access_ok(X86, LEG, addr, size, limit, C), sum_le(limit));
        }
        // ppc64 v4.10: addr <= seg and size <= seg, no sum.
        for arch in [PPC, PPC4K] {
            for kind in [C, R] {
                prop_assert_eq!(
                    access_ok(arch, LEG, addr, size, limit, kind),
                    addr <= limit && size <= limit
                );
            }
        }
        // generic 6.x: size <= max and addr <= max - size, limit ignored.
        for arch in [ARM, PPC, PPC4K] {
            let max = layout(arch, MOD).task_size_max;
            for kind in [C, R] {
                prop_assert_eq!(access_ok(arch, MOD, addr, size, limit, kind), sum_le(max));
            }
        }
        // x86 6.13: constant <= PAGE_SIZE checks addr only; else sum <= max, no wrap.
        prop_assert_eq!(access_ok(X86, MOD, addr, size, limit, R), sum_le(X86_TSM));
        let constant = if size <= 4096 { addr <= X86_TSM } else { sum_le(X86_TSM) };
        prop_assert_eq!(access_ok(X86, MOD, addr, size, limit, C), constant);
    }

    /// "rejected" wraparound cells: no arch/family accepts a wrapping range under
    /// USER_DS; only ppc64 v4.10 does under KERNEL_DS.
    #[test]
    fn wrapping_ranges(addr in edge_u64().prop_filter("nonzero", |&a| a != 0), d in edge_u64()) {
        // size in [2^64 - addr, 2^64 - 1]: the range reaches or crosses 2^64.
        let size = addr.wrapping_neg() + d % addr;
        prop_assert!(addr.checked_add(size).is_none());
        for arch in ArchId::ALL {
            for family in families() {
                let l = layout(arch, family);
                prop_assert!(!access_ok(arch, family, addr, size, l.user_ds, R));
                let kernel = access_ok(arch, family, addr, size, l.kernel_ds, R);
                let ppc_legacy = family == LEG && matches!(arch, PPC | PPC4K);
                prop_assert_eq!(kernel, ppc_legacy, "{} {:?}", arch, family);
                if !(arch.mmu() == X86 && family == LEG) {
                    // x86 v4.10 constant: see the C-arithmetic row of ACCESS_OK.
                    prop_assert!(!access_ok(arch, family, addr, size, l.user_ds, C));
                }
            }
        }
        // x86 v4.10 constant sizes below the limit (every sizeof()) never wrap.
        if size <= X86_TSM {
            prop_assert!(!access_ok(X86, LEG, addr, size, X86_TSM, C));
        }
    }
}

// ===========================================================================
// 2. PTE codec (spec §3): flag toggles, derived predicates, idempotence
// ===========================================================================

/// Arch group of a codec row (both ppc64 page sizes share the Linux PTE format).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fmt {
    X86,
    Arm,
    Ppc,
}

fn fmt_of(arch: ArchId) -> Fmt {
    match arch.mmu() {
        ArchId::X86_64 => Fmt::X86,
        ArchId::Arm64 => Fmt::Arm,
        _ => Fmt::Ppc,
    }
}

/// Physical-address bits the entry format carries (x86 `PTE_PFN_MASK` 52 bits,
/// arm64 output address bits 47..12, powerpc RPN up to bit 56).
fn pa_bits(arch: ArchId) -> u32 {
    match fmt_of(arch) {
        Fmt::X86 => 52,
        // LPA2: 52-bit output addresses (bits 51..50 in descriptor bits 9..8).
        Fmt::Arm if arch == ArchId::Arm64_52 => 52,
        Fmt::Arm => 48,
        Fmt::Ppc => 57,
    }
}

fn page_shift(arch: ArchId) -> u32 {
    with_arch!(arch, A => A::PAGE_SHIFT)
}

fn encode(arch: ArchId, family: Family, level: u8, pte: Pte) -> u64 {
    with_arch!(arch, A => A::encode(family, Level(level), pte))
}

fn decode(arch: ArchId, family: Family, level: u8, raw: u64) -> Pte {
    with_arch!(arch, A => A::decode(family, Level(level), raw))
}

fn round_trip(arch: ArchId, family: Family, level: u8, pte: Pte) -> Pte {
    decode(arch, family, level, encode(arch, family, level, pte))
}

const E: PteFlags = PteFlags::empty();
const VALID: PteFlags = PteFlags::VALID;
const PRESENT: PteFlags = PteFlags::PRESENT;
const USER: PteFlags = PteFlags::USER;
const READ: PteFlags = PteFlags::READ;
const WRITE: PteFlags = PteFlags::WRITE;
const RDONLY: PteFlags = PteFlags::RDONLY;
const EXEC: PteFlags = PteFlags::EXEC;
const DIRTY: PteFlags = PteFlags::DIRTY;
const YOUNG: PteFlags = PteFlags::YOUNG;
const SPECIAL: PteFlags = PteFlags::SPECIAL;
const DEVMAP: PteFlags = PteFlags::DEVMAP;
const PROTNONE: PteFlags = PteFlags::PROTNONE;
const LEAF: PteFlags = PteFlags::LEAF;
const TABLE: PteFlags = PteFlags::TABLE;

/// The flags toggled one at a time. LEAF/TABLE (the entry kind) are tested by
/// the kind-specific tables.
const TOGGLED: [PteFlags; 12] = [
    VALID, PRESENT, USER, READ, WRITE, RDONLY, EXEC, DIRTY, YOUNG, SPECIAL, DEVMAP, PROTNONE,
];

/// The base leaf of the toggle tests.
const BASE_LEAF: PteFlags = VALID.union(LEAF).union(USER).union(READ);

/// (format, family (None = both), toggled flag, decoded difference at the last
/// level, decoded difference for a PMD/PUD leaf, spec rule). The difference is
/// `decode(encode(base ^ flag)) ^ decode(encode(base))`: exactly `flag` when the
/// format represents it, empty when it cannot, and more when other predicates
/// are derived from it.
type LeafToggleRow = (
    Fmt,
    Option<Family>,
    PteFlags,
    PteFlags,
    PteFlags,
    &'static str,
);

#[rustfmt::skip]
const LEAF_TOGGLES: &[LeafToggleRow] = &[
    // ---- x86-64, §3.1 (same bits in PTE/PMD/PUD) ----
    (Fmt::X86, None, VALID, VALID.union(PRESENT).union(READ), VALID.union(READ),
        "x86 PRESENT bit 0; pte_present = PRESENT|PROTNONE, pmd_present also accepts PSE; READ implicit"),
    (Fmt::X86, None, PRESENT, E, E, "x86 pte_present is derived, not a bit"),
    (Fmt::X86, None, USER, USER, USER, "x86 _PAGE_USER bit 2"),
    (Fmt::X86, None, READ, E, E, "x86 readable is implicit in PRESENT"),
    (Fmt::X86, None, WRITE, WRITE, WRITE, "x86 _PAGE_RW bit 1"),
    (Fmt::X86, None, RDONLY, E, E, "x86 has no RDONLY bit"),
    (Fmt::X86, None, EXEC, EXEC, EXEC, "x86 NX bit 63 (inverted)"),
    (Fmt::X86, None, DIRTY, DIRTY, DIRTY, "x86 _PAGE_DIRTY bit 6"),
    (Fmt::X86, None, YOUNG, YOUNG, YOUNG, "x86 _PAGE_ACCESSED bit 5"),
    (Fmt::X86, None, SPECIAL, SPECIAL, SPECIAL, "x86 SOFTW1 = SPECIAL bit 9"),
    (Fmt::X86, None, DEVMAP, DEVMAP, DEVMAP, "x86 DEVMAP bit 58 (4.10) / 57 (6.x)"),
    (Fmt::X86, None, PROTNONE, PROTNONE.union(VALID).union(READ), PROTNONE.union(VALID).union(READ),
        "x86 pte_protnone = bit 8 with PRESENT clear; still pte_present"),

    // ---- arm64, §3.2 ----
    (Fmt::Arm, None, VALID, VALID.union(PRESENT).union(READ), VALID.union(PRESENT).union(READ),
        "arm64 PTE_VALID; pte_present = VALID or PROT_NONE/PRESENT_INVALID"),
    (Fmt::Arm, None, PRESENT, E, E, "arm64 pte_present is derived"),
    (Fmt::Arm, None, USER, USER, USER, "arm64 PTE_USER = AP[1] bit 6"),
    (Fmt::Arm, None, READ, E, E, "arm64 readable is implicit in VALID"),
    (Fmt::Arm, None, WRITE, WRITE.union(DIRTY), WRITE.union(DIRTY),
        "arm64 PTE_WRITE = DBM bit 51; hardware dirty = WRITE and RDONLY clear"),
    (Fmt::Arm, None, RDONLY, RDONLY, RDONLY, "arm64 PTE_RDONLY = AP[2] bit 7"),
    (Fmt::Arm, None, EXEC, EXEC, EXEC, "arm64 UXN bit 54 (inverted)"),
    (Fmt::Arm, None, DIRTY, DIRTY, DIRTY, "arm64 PTE_DIRTY bit 55"),
    (Fmt::Arm, None, YOUNG, YOUNG, YOUNG, "arm64 AF bit 10"),
    (Fmt::Arm, None, SPECIAL, SPECIAL, SPECIAL, "arm64 PTE_SPECIAL bit 56"),
    (Fmt::Arm, Some(LEG), DEVMAP, E, E, "arm64 v4.10 has no PTE_DEVMAP"),
    (Fmt::Arm, Some(MOD), DEVMAP, DEVMAP, DEVMAP, "arm64 6.x PTE_DEVMAP bit 57"),
    (Fmt::Arm, Some(LEG), PROTNONE, PROTNONE.union(VALID).union(READ), PROTNONE.union(VALID).union(READ),
        "arm64 v4.10 PTE_PROT_NONE bit 58 with VALID clear; still present"),
    (Fmt::Arm, Some(MOD), PROTNONE,
        PROTNONE.union(VALID).union(READ).union(USER), PROTNONE.union(VALID).union(READ).union(USER),
        "arm64 6.x PROT_NONE = PRESENT_INVALID with USER clear and UXN set"),

    // ---- powerpc64 book3s, §3.3 (USER = PRIVILEGED clear) ----
    (Fmt::Ppc, None, VALID, VALID.union(PRESENT).union(READ), VALID.union(PRESENT).union(READ),
        "ppc64 _PAGE_PRESENT bit 63; READ needs a present entry"),
    (Fmt::Ppc, None, PRESENT, E, E, "ppc64 pte_present is derived"),
    (Fmt::Ppc, Some(LEG), USER, USER.union(PROTNONE), USER.union(PROTNONE),
        "ppc64 v4.10 pte_protnone = PRESENT and PRIVILEGED: every kernel PTE looks protnone"),
    (Fmt::Ppc, Some(MOD), USER, USER, USER, "ppc64 6.x pte_user = PRIVILEGED clear"),
    (Fmt::Ppc, Some(LEG), READ, READ, READ, "ppc64 _PAGE_READ 0x4"),
    (Fmt::Ppc, Some(MOD), READ, READ.union(PROTNONE), READ.union(PROTNONE),
        "ppc64 6.x pte_protnone = PRESENT|PTE with no R/W/X"),
    (Fmt::Ppc, None, WRITE, WRITE, WRITE, "ppc64 _PAGE_WRITE 0x2"),
    (Fmt::Ppc, None, RDONLY, E, E, "ppc64 has no RDONLY bit"),
    (Fmt::Ppc, None, EXEC, EXEC, EXEC, "ppc64 _PAGE_EXEC 0x1"),
    (Fmt::Ppc, None, DIRTY, DIRTY, DIRTY, "ppc64 _PAGE_DIRTY 0x80"),
    (Fmt::Ppc, None, YOUNG, YOUNG, YOUNG, "ppc64 _PAGE_ACCESSED 0x100"),
    (Fmt::Ppc, None, SPECIAL, SPECIAL, SPECIAL, "ppc64 SW2 = SPECIAL 0x400"),
    (Fmt::Ppc, Some(LEG), DEVMAP, E, E, "ppc64 v4.10 has no _PAGE_DEVMAP"),
    (Fmt::Ppc, Some(MOD), DEVMAP, DEVMAP, DEVMAP, "ppc64 6.x SW1 = DEVMAP 0x800"),
    (Fmt::Ppc, Some(LEG), PROTNONE, PROTNONE.union(USER).union(READ), PROTNONE.union(USER).union(READ),
        "ppc64 v4.10 PAGE_NONE = PRESENT|PRIVILEGED, no R/W/X"),
    (Fmt::Ppc, Some(MOD), PROTNONE, PROTNONE.union(READ), PROTNONE.union(READ),
        "ppc64 6.x protnone = PRESENT|PTE, no R/W/X (PRIVILEGED follows USER)"),
];

fn leaf_toggle_row(fmt: Fmt, family: Family, flag: PteFlags) -> &'static LeafToggleRow {
    let rows: Vec<_> = LEAF_TOGGLES
        .iter()
        .filter(|r| r.0 == fmt && r.1.is_none_or(|f| f == family) && r.2 == flag)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "{fmt:?} {family:?} {flag:?}: need exactly one row"
    );
    rows[0]
}

/// A pfn of `pa_bits` physical bits, aligned to the entry span at `level`.
fn sample_pfn<A: Arch>(level: u8, seed: u64) -> Pfn {
    let span_pages = A::entry_span(Level(level)) >> A::PAGE_SHIFT;
    let max = 1u64 << (pa_bits(A::ID) - A::PAGE_SHIFT);
    Pfn((seed % max) & !(span_pages - 1))
}

/// Pfns exercising the low, high and all-ones ends of the frame field.
fn pfn_samples(arch: ArchId, level: u8) -> Vec<Pfn> {
    let max = (1u64 << (pa_bits(arch) - page_shift(arch))) - 1;
    [1u64 << 20, 0x1234_5678_9abc, max, 0x5555_5555_5555_5555]
        .into_iter()
        .map(|s| with_arch!(arch, A => sample_pfn::<A>(level, s)))
        .chain([Pfn(0)])
        .collect()
}

fn leaf_levels(arch: ArchId) -> Vec<u8> {
    with_arch!(arch, A => (0..A::levels() as u8).filter(|&l| A::geom(Level(l)).leaf_ok).collect())
}

#[test]
fn leaf_flag_toggles_round_trip() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for arch in ArchId::ALL {
        let last = with_arch!(arch, A => A::leaf_level().0);
        for family in families() {
            for level in leaf_levels(arch) {
                for pfn in pfn_samples(arch, level) {
                    let base = Pte {
                        flags: BASE_LEAF,
                        pfn,
                    };
                    let b = round_trip(arch, family, level, base);
                    if !b.has(BASE_LEAF | PRESENT) || b.pfn != pfn {
                        failures.push(format!(
                            "  {arch} {family:?} L{level} pfn {pfn:?}: base decodes as {b:?}"
                        ));
                    }
                    for flag in TOGGLED {
                        let row = leaf_toggle_row(fmt_of(arch), family, flag);
                        let want = if level == last { row.3 } else { row.4 };
                        let t = round_trip(
                            arch,
                            family,
                            level,
                            Pte {
                                flags: BASE_LEAF ^ flag,
                                pfn,
                            },
                        );
                        let diff = t.flags ^ b.flags;
                        checked += 1;
                        if diff != want || t.pfn != pfn || !t.has(LEAF) {
                            failures.push(format!(
                                "  {arch} {family:?} L{level} toggle {flag:?}: diff {diff:?}, want {want:?}; \
                                 pfn {:?} (want {pfn:?})  [{}]",
                                t.pfn, row.5
                            ));
                        }
                    }
                }
            }
        }
    }
    report("leaf toggles", &failures);
    assert!(checked > 4 * 2 * 3 * 12);
}

/// (format, toggled flag, decoded difference for a table entry, spec rule).
type TableToggleRow = (Fmt, PteFlags, PteFlags, &'static str);

#[rustfmt::skip]
const TABLE_TOGGLES: &[TableToggleRow] = &[
    // x86: table entries carry USER/RW/NX/A/D, ANDed by the hardware (TABLE_PERMS).
    (Fmt::X86, VALID, VALID.union(PRESENT).union(TABLE), "x86 a non-present pXd is not a table"),
    (Fmt::X86, USER, USER, "x86 USER in a table entry"),
    (Fmt::X86, WRITE, WRITE, "x86 RW in a table entry"),
    (Fmt::X86, EXEC, EXEC, "x86 NX in a table entry"),
    (Fmt::X86, DIRTY, DIRTY, "x86 bit 6 round-trips in a table entry"),
    (Fmt::X86, YOUNG, YOUNG, "x86 ACCESSED in a table entry"),
    // arm64: a table descriptor is VALID|TABLE and an address. Without VALID the
    // entry is non-zero with the table bit clear: "huge" to the kernel (pmd_huge).
    (Fmt::Arm, VALID, VALID.union(PRESENT).union(TABLE).union(LEAF).union(EXEC),
        "arm64 non-zero with table bit clear = block (leaf), UXN clear"),
    // ppc64: a directory entry is PRESENT|NLB|NLS.
    (Fmt::Ppc, VALID, VALID.union(PRESENT).union(TABLE), "ppc64 directory entry without PRESENT"),
];

#[test]
fn table_flag_toggles_round_trip() {
    let mut failures = Vec::new();
    for arch in ArchId::ALL {
        let last = with_arch!(arch, A => A::leaf_level().0);
        for family in families() {
            for level in 0..last {
                // Pfn 0 is left out: a table at frame 0 with VALID cleared is the
                // all-zero entry, i.e. pXd_none, not an invalid block.
                for pfn in pfn_samples(arch, last).into_iter().filter(|p| p.0 != 0) {
                    let base = Pte {
                        flags: VALID | TABLE,
                        pfn,
                    };
                    let b = round_trip(arch, family, level, base);
                    if b != (Pte {
                        flags: VALID | PRESENT | TABLE,
                        pfn,
                    }) {
                        failures.push(format!(
                            "  {arch} {family:?} L{level}: base table decodes as {b:?}"
                        ));
                    }
                    for flag in TOGGLED {
                        let want = TABLE_TOGGLES
                            .iter()
                            .find(|r| r.0 == fmt_of(arch) && r.1 == flag)
                            .map_or(E, |r| r.2);
                        let t = round_trip(
                            arch,
                            family,
                            level,
                            Pte {
                                flags: (VALID | TABLE) ^ flag,
                                pfn,
                            },
                        );
                        let diff = t.flags ^ b.flags;
                        if diff != want || t.pfn != pfn {
                            failures.push(format!(
                                "  {arch} {family:?} L{level} table toggle {flag:?}: diff {diff:?}, want {want:?}; \
                                 pfn {:?} want {pfn:?}",
                                t.pfn
                            ));
                        }
                    }
                }
            }
        }
    }
    report("table toggles", &failures);
}

#[test]
fn table_entries_at_every_non_leaf_level() {
    for arch in ArchId::ALL {
        let last = with_arch!(arch, A => A::leaf_level().0);
        for family in families() {
            for level in 0..last {
                let t = Pte {
                    flags: VALID | TABLE,
                    pfn: Pfn(0x1_2345),
                };
                let raw = encode(arch, family, level, t);
                assert_ne!(raw, 0);
                let d = decode(arch, family, level, raw);
                assert!(
                    d.has(VALID | PRESENT | TABLE),
                    "{arch} {family:?} L{level}: {d:?}"
                );
                assert!(!d.has(LEAF), "{arch} {family:?} L{level}: {d:?}");
                assert_eq!(d.pfn, t.pfn);
                // The same raw entry read at the last level is a leaf, never a table.
                let as_leaf = decode(arch, family, last, raw);
                assert!(!as_leaf.has(TABLE), "{arch} {family:?}: {as_leaf:?}");
            }
        }
    }
}

#[test]
fn leaf_markers_at_upper_levels() {
    // §2.1: x86 _PAGE_PSE (bit 7) in a PMD/PUD, arm64 bits[1:0] = 0b01 block,
    // ppc64 _PAGE_PTE (bit 62).
    for arch in ArchId::ALL {
        let last = with_arch!(arch, A => A::leaf_level().0);
        for family in families() {
            for level in leaf_levels(arch) {
                let pfn = with_arch!(arch, A => sample_pfn::<A>(level, 1 << 30));
                let raw = encode(
                    arch,
                    family,
                    level,
                    Pte {
                        flags: BASE_LEAF,
                        pfn,
                    },
                );
                match (fmt_of(arch), level == last) {
                    (Fmt::X86, false) => assert_ne!(raw & (1 << 7), 0, "{arch} L{level} PSE"),
                    (Fmt::X86, true) => {
                        assert_eq!(raw & (1 << 7), 0, "{arch} PAT clear in a 4K PTE")
                    }
                    (Fmt::Arm, false) => assert_eq!(raw & 3, 0b01, "{arch} L{level} block"),
                    (Fmt::Arm, true) => assert_eq!(raw & 3, 0b11, "{arch} page descriptor"),
                    (Fmt::Ppc, _) => assert_ne!(raw & (1 << 62), 0, "{arch} L{level} _PAGE_PTE"),
                }
                let table = encode(
                    arch,
                    family,
                    level.min(last - 1),
                    Pte {
                        flags: VALID | TABLE,
                        pfn,
                    },
                );
                match fmt_of(arch) {
                    Fmt::X86 => assert_eq!(table & (1 << 7), 0),
                    Fmt::Arm => assert_eq!(table & 3, 0b11),
                    Fmt::Ppc => assert_eq!(table & (1 << 62), 0),
                }
            }
        }
    }
}

#[test]
fn documented_raw_bits() {
    let leaf = |arch, family, flags| encode(arch, family, 3, Pte { flags, pfn: Pfn(1) });
    // x86 DEVMAP moved from bit 58 (4.10) to bit 57 (6.x).
    let d = BASE_LEAF | DEVMAP;
    assert_eq!(leaf(X86, LEG, d) ^ leaf(X86, LEG, BASE_LEAF), 1 << 58);
    assert_eq!(leaf(X86, MOD, d) ^ leaf(X86, MOD, BASE_LEAF), 1 << 57);
    assert!(!decode(X86, LEG, 3, 1 | (1 << 57)).has(DEVMAP));
    assert!(!decode(X86, MOD, 3, 1 | (1 << 58)).has(DEVMAP));
    // x86 NX is bit 63, USER bit 2, RW bit 1.
    assert_eq!(
        leaf(X86, LEG, BASE_LEAF) ^ leaf(X86, LEG, BASE_LEAF | EXEC),
        1 << 63
    );
    assert_eq!(
        leaf(X86, LEG, BASE_LEAF) ^ leaf(X86, LEG, BASE_LEAF ^ USER),
        1 << 2
    );
    assert_eq!(
        leaf(X86, LEG, BASE_LEAF) ^ leaf(X86, LEG, BASE_LEAF | WRITE),
        1 << 1
    );
    // arm64: DEVMAP dropped by v4.10, bit 57 in 6.x; RDONLY bit 7; WRITE (DBM) bit 51.
    assert_eq!(leaf(ARM, LEG, d), leaf(ARM, LEG, BASE_LEAF));
    assert_eq!(leaf(ARM, MOD, d) ^ leaf(ARM, MOD, BASE_LEAF), 1 << 57);
    assert_eq!(
        leaf(ARM, LEG, BASE_LEAF | RDONLY) ^ leaf(ARM, LEG, BASE_LEAF),
        1 << 7
    );
    assert_eq!(
        leaf(ARM, LEG, BASE_LEAF | WRITE) ^ leaf(ARM, LEG, BASE_LEAF),
        1 << 51
    );
    // arm64 6.x: bit 58 is UFFD_WP, so a v4.10 PROT_NONE entry is not present.
    let legacy_pn = leaf(ARM, LEG, LEAF | PROTNONE);
    assert!(decode(ARM, LEG, 3, legacy_pn).has(PRESENT | PROTNONE));
    assert!(!decode(ARM, MOD, 3, legacy_pn).has(PRESENT));
    // arm64 hardware dirty: WRITE and RDONLY clear; a writable clean page has RDONLY.
    let rw_clean = decode(ARM, LEG, 3, leaf(ARM, LEG, BASE_LEAF | WRITE | RDONLY));
    assert!(rw_clean.has(WRITE) && !rw_clean.has(DIRTY));
    let hw_dirty = leaf(ARM, LEG, BASE_LEAF | WRITE) & !(1 << 55);
    assert!(
        decode(ARM, LEG, 3, hw_dirty).has(DIRTY),
        "DIRTY from WRITE && !RDONLY"
    );
    // ppc64: USER = PRIVILEGED (0x8) clear; DEVMAP 0x800 only in 6.x.
    for arch in [PPC, PPC4K] {
        assert_eq!(leaf(arch, LEG, BASE_LEAF) & 0x8, 0);
        assert_eq!(leaf(arch, LEG, BASE_LEAF ^ USER) & 0x8, 0x8);
        assert!(!decode(arch, MOD, 3, leaf(arch, MOD, BASE_LEAF) | 0x8).has(USER));
        assert_eq!(leaf(arch, LEG, d), leaf(arch, LEG, BASE_LEAF));
        assert_eq!(leaf(arch, MOD, d) ^ leaf(arch, MOD, BASE_LEAF), 0x800);
        assert!(!decode(arch, LEG, 3, leaf(arch, MOD, d)).has(DEVMAP));
        // v4.10 PAGE_NONE = PRESENT | ACCESSED | PRIVILEGED (+ _PAGE_PTE in a leaf).
        let pn = leaf(arch, LEG, LEAF | PROTNONE | YOUNG);
        assert_eq!(pn & !(u64::MAX << page_shift(arch)), 0x100 | 0x8);
        assert_eq!(pn >> 62, 0b11);
        // 6.x PAGE_NONE = _PAGE_BASE | PRIVILEGED, no R/W/X.
        let pn = leaf(arch, MOD, LEAF | PROTNONE | YOUNG);
        assert_eq!(pn & !(u64::MAX << page_shift(arch)), 0x100 | 0x8);
        assert!(decode(arch, MOD, 3, pn).has(PROTNONE | PRESENT));
    }
}

/// `pXd_none()` is the all-zero entry: encoding `Pte::NONE` must give 0 and 0
/// must decode as `Pte::NONE`, at every level of every arch and family.
#[test]
fn none_is_the_zero_entry() {
    for arch in ArchId::ALL {
        for family in families() {
            for level in 0..4 {
                assert_eq!(
                    encode(arch, family, level, Pte::NONE),
                    0,
                    "{arch} {family:?} L{level}"
                );
                assert_eq!(
                    decode(arch, family, level, 0),
                    Pte::NONE,
                    "{arch} {family:?} L{level}"
                );
            }
        }
    }
}

/// ppc64 v4.10 reports every kernel (PRIVILEGED) PTE as protnone (§3.3); reading
/// such an entry and writing it back (e.g. after setting YOUNG) must keep its
/// R/W/X permissions.
#[test]
fn ppc64_v4_10_kernel_pte_survives_decode_encode() {
    for arch in [PPC, PPC4K] {
        let kernel_rw = Pte {
            flags: VALID | LEAF | READ | WRITE,
            pfn: Pfn(0x42),
        };
        let raw = encode(arch, LEG, 3, kernel_rw);
        let d = decode(arch, LEG, 3, raw);
        assert!(
            d.has(PROTNONE | READ | WRITE) && !d.has(USER),
            "{arch}: {d:?}"
        );
        assert_eq!(
            encode(arch, LEG, 3, d),
            raw,
            "{arch}: re-encoding a kernel PTE"
        );
        let young = Pte {
            flags: d.flags | YOUNG,
            pfn: d.pfn,
        };
        assert_eq!(
            encode(arch, LEG, 3, young),
            raw | 0x100,
            "{arch}: pte_mkyoung"
        );
    }
}

fn check_idempotent<A: Arch>(
    family: Family,
    level: u8,
    flags: PteFlags,
    seed: u64,
) -> Result<(), TestCaseError> {
    let lvl = Level(level);
    let huge = flags.contains(LEAF) && !flags.contains(TABLE) && lvl != A::leaf_level();
    let pfn = if huge {
        sample_pfn::<A>(level, seed)
    } else {
        sample_pfn::<A>(A::leaf_level().0, seed)
    };
    let x = Pte { flags, pfn };
    let raw1 = A::encode(family, lvl, x);
    let y = A::decode(family, lvl, raw1);
    let raw2 = A::encode(family, lvl, y);
    let z = A::decode(family, lvl, raw2);
    prop_assert_eq!(
        z,
        y,
        "{} {:?} L{} x={:?} raw1={:#x} raw2={:#x}",
        A::ID,
        family,
        level,
        x,
        raw1,
        raw2
    );
    // The frame survives whenever the entry is not all-zero.
    if raw1 != 0 {
        prop_assert_eq!(y.pfn, pfn);
    }
    // Derived predicates hold on every decoded entry.
    if y.has(VALID) && y.has(LEAF) {
        prop_assert!(y.has(PRESENT));
    }
    if y.has(PROTNONE) {
        prop_assert!(y.has(PRESENT | LEAF));
    }
    prop_assert!(!(y.has(LEAF) && y.has(TABLE)));
    if y.has(TABLE) {
        prop_assert!(y.has(VALID | PRESENT) && lvl != A::leaf_level());
    }
    if lvl == A::leaf_level() && raw1 != 0 {
        prop_assert!(y.has(LEAF));
    }
    if family == LEG && A::ID.mmu() != X86 {
        prop_assert!(!y.has(DEVMAP), "DEVMAP absent in v4.10 arm64/ppc64");
    }
    if A::ID.mmu() == ARM && y.has(WRITE) && !y.has(RDONLY) && y.has(LEAF) {
        prop_assert!(y.has(DIRTY), "arm64 hardware dirty");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(4096) })]

    /// decode(encode(decode(encode(x)))) == decode(encode(x)) for any flags, pfn,
    /// level, arch and family.
    #[test]
    fn codec_is_idempotent(
        arch in prop::sample::select(ArchId::ALL.to_vec()),
        family in prop::sample::select(vec![LEG, MOD]),
        level in 0u8..4,
        bits in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let flags = PteFlags::from_bits_truncate(bits);
        with_arch!(arch, A => check_idempotent::<A>(family, level, flags, seed))?;
    }
}

// ===========================================================================
// 3. Geometry (spec §2)
// ===========================================================================

/// (arch, PAGE_SHIFT, per level (name, shift, index bits, leaf_ok), va_bits)
type GeomRow = (ArchId, u32, [(&'static str, u32, u32, bool); 4], u32);

#[rustfmt::skip]
const GEOMETRY: &[GeomRow] = &[
    // §2.1 x86-64 4-level: PGD 9 / PUD 9 / PMD 9 / PTE 9, PGDIR_SHIFT 39.
    (X86, 12, [("pgd", 39, 9, false), ("pud", 30, 9, true), ("pmd", 21, 9, true), ("pte", 12, 9, true)], 48),
    // §2.1 arm64 4K 48-bit: PTRS_PER_PGD = 2^(48-39) = 512.
    (ARM, 12, [("pgd", 39, 9, false), ("pud", 30, 9, true), ("pmd", 21, 9, true), ("pte", 12, 9, true)], 48),
    // §2.1 ppc64 radix 64K: PGD 13 / PUD 9 / PMD 9 / PTE 5, PGDIR_SHIFT 39, 8192.
    (PPC, 16, [("pgd", 39, 13, false), ("pud", 30, 9, true), ("pmd", 21, 9, true), ("pte", 16, 5, true)], 52),
    // §2.1 ppc64 radix 4K: PGD 13 / PUD 9 / PMD 9 / PTE 9 (52-bit EA).
    (PPC4K, 12, [("pgd", 39, 13, false), ("pud", 30, 9, true), ("pmd", 21, 9, true), ("pte", 12, 9, true)], 52),
];

#[test]
fn level_tables() {
    for &(arch, shift, levels, va_bits) in GEOMETRY {
        with_arch!(arch, A => {
            assert_eq!(A::ID, arch);
            assert_eq!(A::PAGE_SHIFT, shift, "{arch}");
            assert_eq!(A::PAGE_SIZE, 1 << shift, "{arch}");
            assert_eq!(A::levels(), 4, "{arch}");
            assert_eq!(A::leaf_level(), Level(3), "{arch}");
            assert_eq!(A::va_bits(), va_bits, "{arch}");
            for (i, &(name, lshift, bits, leaf_ok)) in levels.iter().enumerate() {
                let l = Level(i as u8);
                let g = A::geom(l);
                assert_eq!((g.name, g.shift, g.bits, g.leaf_ok), (name, lshift, bits, leaf_ok), "{arch} {l:?}");
                assert_eq!(A::entries(l), 1 << bits, "{arch} PTRS_PER_{name}");
                assert_eq!(A::table_bytes(l), 8 << bits, "{arch} {name} table bytes");
                assert_eq!(A::entry_span(l), 1 << lshift, "{arch} {name} span");
                // Each level's index starts where the one below ends.
                if i + 1 < levels.len() {
                    assert_eq!(lshift, levels[i + 1].1 + levels[i + 1].2, "{arch} contiguous");
                }
            }
            assert_eq!(levels[3].1, shift, "{arch} leaf shift is PAGE_SHIFT");
        });
    }
    const {
        assert!(X86_64::TABLE_PERMS && !Arm64::TABLE_PERMS);
        assert!(!Ppc64::TABLE_PERMS && !Ppc64_4k::TABLE_PERMS);
        assert!(!X86_64::BIG_ENDIAN && !Arm64::BIG_ENDIAN);
        assert!(Ppc64::BIG_ENDIAN && Ppc64_4k::BIG_ENDIAN);
    }
}

#[test]
fn named_entry_spans() {
    // §2.1 leaf huge sizes: PMD 2 MiB, PUD 1 GiB on all four; PGDIR_SIZE 512 GiB
    // (the geometry variants: geometry.rs).
    for arch in [X86, ARM, PPC, PPC4K] {
        with_arch!(arch, A => {
            assert_eq!(A::entry_span(Level(0)), 512 << 30, "{arch}");
            assert_eq!(A::entry_span(Level(1)), 1 << 30, "{arch}");
            assert_eq!(A::entry_span(Level(2)), 2 << 20, "{arch}");
            assert_eq!(A::entry_span(Level(3)), A::PAGE_SIZE, "{arch}");
        });
    }
    // ppc64 64K: a PTE table is 32 entries (256 bytes); the PGD is 64 KiB.
    assert_eq!(Ppc64::entries(Level(3)), 32);
    assert_eq!(Ppc64::table_bytes(Level(0)), 65536);
}

/// (arch, va, [pgd, pud, pmd, pte] indices)
#[rustfmt::skip]
const INDICES: &[(ArchId, u64, [usize; 4])] = &[
    (X86, 0, [0, 0, 0, 0]),
    (X86, X86_TSM, [255, 511, 511, 511]),
    (X86, 0xffff_ffff_ffff_ffff, [511, 511, 511, 511]),
    (X86, 0x0000_0040_4020_1000, [0, 257, 1, 1]),
    (ARM, 0x0000_ffff_ffff_f000, [511, 511, 511, 511]),
    (ARM, 0x0000_0080_4020_1000, [1, 1, 1, 1]),
    (PPC, 0x000f_ffff_ffff_0000, [8191, 511, 511, 31]),
    (PPC, 0x0000_0080_4020_0000 | (3 << 16), [1, 1, 1, 3]),
    (PPC4K, 0x000f_ffff_ffff_f000, [8191, 511, 511, 511]),
    (PPC4K, 0xc000_0080_4020_1000, [1, 1, 1, 1]),
];

#[test]
fn per_level_indices() {
    for &(arch, va, want) in INDICES {
        let got: Vec<usize> =
            with_arch!(arch, A => (0..4).map(|l| A::index(VirtAddr(va), Level(l))).collect());
        assert_eq!(got, want, "{arch} {va:#x}");
    }
}

/// (arch, level, addr, end, expected next, rule)
type AddrEndRow = (ArchId, u8, u64, u64, u64, &'static str);

#[rustfmt::skip]
const ADDR_END: &[AddrEndRow] = &[
    (X86, 0, 0,            0,            1 << 39, "end 0 = top of the address space: next boundary"),
    (X86, 0, 0x1000,       0x2000,       0x2000,  "end before the boundary"),
    (X86, 0, 0x1000,       1 << 39,      1 << 39, "end exactly at the boundary"),
    (X86, 0, 0x1000,       (1 << 39) + 1, 1 << 39, "end after the boundary"),
    (X86, 0, 1 << 39,      0,            2 << 39, "addr on a boundary: the next one"),
    (X86, 0, TOP - 5,      0,            0,       "last pgd entry: boundary wraps to 0 = end"),
    (X86, 0, 0xffff_ff80_0000_0000, 0,   0,       "x86 slot 511 with end 0"),
    (X86, 3, 0x1234,       0x1800,       0x1800,  "pte: end before the page boundary"),
    (X86, 3, 0x1234,       0,            0x2000,  "pte: end 0"),
    (X86, 3, TOP_PAGE,     0,            0,       "pte: last page, end 0"),
    (X86, 3, TOP_PAGE + 8, 0,            0,       "pte: inside the last page, end 0"),
    (X86, 3, TOP - 0xfff,  0x1000,       0x1000,  "wrapping range: boundary 0 is not below end - 1, so end is returned"),
    (ARM, 2, 0x1f_ffff,    0x20_0001,    0x20_0000, "arm64 pmd 2 MiB boundary"),
    (ARM, 1, 0x4000_0000,  0,            0x8000_0000, "arm64 pud 1 GiB"),
    (ARM, 0, 0x0000_ff80_0000_0000, 1 << 48, 1 << 48, "arm64 last user pgd slot: boundary = 2^48 = end"),
    (ARM, 0, 0x0000_ff80_0000_0000, 0, 1 << 48, "arm64: the walk steps to 2^48 (index 512 past the table)"),
    (PPC, 3, 0x1_0000,     0,            0x2_0000, "ppc64 64K pte span"),
    (PPC, 3, 0x1_0000,     0x1_8000,     0x1_8000, "ppc64 64K pte, end before boundary"),
    (PPC4K, 3, 0x1_0000,   0,            0x1_1000, "ppc64-4k pte span"),
    (PPC, 0, 0xc000_0000_0000_0000, 0,   0xc000_0080_0000_0000, "ppc64 pgd span from PAGE_OFFSET"),
    (PPC, 0, 0xffff_ff80_0000_0000, 0,   0,       "ppc64 last pgd span, end 0"),
];

#[test]
fn addr_end_table() {
    let mut failures = Vec::new();
    for &(arch, level, addr, end, want, rule) in ADDR_END {
        let got = with_arch!(arch, A => A::addr_end(VirtAddr(addr), VirtAddr(end), Level(level))).0;
        if got != want {
            failures.push(format!(
                "  {arch} L{level} addr={addr:#x} end={end:#x}: got {got:#x}, want {want:#x}  [{rule}]"
            ));
        }
    }
    report("addr_end", &failures);
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// addr_end never overshoots end and never crosses an entry boundary.
    #[test]
    fn addr_end_properties(
        arch in prop::sample::select(ArchId::ALL.to_vec()),
        level in 0u8..4,
        addr in edge_u64(),
        len in edge_u64(),
    ) {
        prop_assume!(len != 0);
        let end = addr.wrapping_add(len); // end == 0 means "up to the top"
        prop_assume!(end == 0 || end > addr);
        let (span, next) = with_arch!(arch, A => (
            A::entry_span(Level(level)),
            A::addr_end(VirtAddr(addr), VirtAddr(end), Level(level)).0,
        ));
        let boundary = (addr | (span - 1)).wrapping_add(1);
        let want = if end != 0 && (boundary == 0 || end <= boundary) { end } else { boundary };
        prop_assert_eq!(next, want);
        // Progress: strictly above addr (or the top, 0).
        prop_assert!(next > addr || next == 0);
    }
}

// ---- pgd_index aliasing (spec §2.2) ----

/// (arch, family, address, expected pgd_index, rule)
type PgdRow = (ArchId, Family, u64, usize, &'static str);

#[rustfmt::skip]
const PGD_INDEX: &[PgdRow] = &[
    (X86, LEG, 0xffff_8800_0000_0000, 272, "x86 v4.10 KERNEL_PGD_BOUNDARY = pgd_index(PAGE_OFFSET)"),
    (X86, MOD, 0xffff_8880_0000_0000, 273, "x86 6.x KERNEL_PGD_BOUNDARY = pgd_index(PAGE_OFFSET)"),
    (X86, LEG, 0xffff_8000_0000_0000, 256, "x86 first kernel slot (hypervisor hole)"),
    (X86, LEG, 0xffff_87ff_ffff_ffff, 271, "x86 last slot of the hypervisor hole"),
    (X86, LEG, 0xffff_c900_0000_0000, 402, "x86 vmalloc"),
    (X86, LEG, 0xffff_ea00_0000_0000, 468, "x86 vmemmap"),
    (X86, LEG, 0xffff_ffff_8000_0000, 511, "x86 kernel text"),
    (X86, LEG, 0xffff_ffff_ff60_0000, 511, "x86 vsyscall page"),
    (X86, LEG, 0x0000_8000_0000_0000, 256, "x86 non-canonical aliases by bit 47"),
    (X86, LEG, 0x0000_7fff_ffff_f000, 255, "x86 last user slot"),
    (ARM, LEG, 0xffff_8000_0000_0000, 256, "arm64 v4.10 linear map aliases the upper user half (2^47)"),
    (ARM, LEG, 0x0000_8000_0000_0000, 256, "arm64 user VA 2^47"),
    (ARM, LEG, 0xffff_0000_0800_0000, 0,   "arm64 v4.10 vmalloc aliases the lower half"),
    (ARM, MOD, 0xffff_0000_0000_0000, 0,   "arm64 6.x linear map aliases low user VAs"),
    (ARM, MOD, 0xffff_8000_8000_0000, 256, "arm64 6.x vmalloc (after 2 GiB of modules)"),
    (ARM, LEG, 0x0000_aaaa_aaaa_a000, 341, "arm64 v4.10 ELF_ET_DYN_BASE (PIE images) in the upper user half"),
    (PPC, LEG, 0xc000_0000_0000_0000, 0,    "ppc64 linear map aliases user VA 0"),
    (PPC, LEG, 0xc008_0000_0000_0000, 4096, "ppc64 radix vmalloc aliases user VA 2^51"),
    (PPC, LEG, 0x0008_0000_0000_0000, 4096, "ppc64 user VA 2^51"),
    (PPC4K, LEG, 0xc000_0000_1000_0000, 0,  "ppc64-4k linear map"),
    (PPC, LEG, 0x000f_ffff_ffff_ffff, 8191, "ppc64 last slot"),
];

#[test]
fn pgd_index_table() {
    let mut failures = Vec::new();
    for &(arch, family, va, want, rule) in PGD_INDEX {
        let got = with_arch!(arch, A => A::pgd_index(VirtAddr(va)));
        if got != want {
            failures.push(format!(
                "  {arch} {family:?} {va:#x}: got {got}, want {want}  [{rule}]"
            ));
        }
    }
    report("pgd_index", &failures);
    // The named layout addresses are the ones in the table.
    assert_eq!(
        X86_64::pgd_index(VirtAddr(layout(X86, LEG).page_offset)),
        272
    );
    assert_eq!(
        X86_64::pgd_index(VirtAddr(layout(X86, MOD).page_offset)),
        273
    );
    assert_eq!(
        X86_64::pgd_index(VirtAddr(layout(X86, LEG).vmalloc_start)),
        402
    );
    assert_eq!(
        Arm64::pgd_index(VirtAddr(layout(ARM, LEG).page_offset)),
        256
    );
    assert_eq!(Arm64::pgd_index(VirtAddr(layout(ARM, MOD).page_offset)), 0);
    assert_eq!(
        Ppc64::pgd_index(VirtAddr(layout(PPC, LEG).vmalloc_start)),
        4096
    );
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(2048) })]

    /// arm64: kaddr and kaddr mod 2^48 share the pgd index (and every level's index).
    #[test]
    fn arm64_pgd_index_aliases_mod_2_48(low in 0u64..P48) {
        let kaddr = 0xffff_0000_0000_0000 | low;
        for l in 0..4 {
            prop_assert_eq!(Arm64::index(VirtAddr(kaddr), Level(l)), Arm64::index(VirtAddr(low), Level(l)));
        }
        prop_assert_eq!(Arm64::hw_root(LEG, VirtAddr(kaddr)), Some(HwRoot::Kernel));
        prop_assert_eq!(Arm64::hw_root(LEG, VirtAddr(low)), Some(HwRoot::Mm));
    }

    /// ppc64: EA and EA mod 2^52 share the pgd index (the quadrant is dropped).
    #[test]
    fn ppc64_pgd_index_aliases_mod_2_52(low in 0u64..P52, high in 0u64..4096) {
        let ea = (high << 52) | low;
        prop_assert_eq!(Ppc64::pgd_index(VirtAddr(ea)), Ppc64::pgd_index(VirtAddr(low)));
        prop_assert_eq!(Ppc64_4k::pgd_index(VirtAddr(ea)), Ppc64_4k::pgd_index(VirtAddr(low)));
        let kaddr = 0xc000_0000_0000_0000 | low;
        prop_assert_eq!(Ppc64::hw_root(MOD, VirtAddr(kaddr)), Some(HwRoot::Kernel));
        prop_assert_eq!(Ppc64::pgd_index(VirtAddr(kaddr)), Ppc64::pgd_index(VirtAddr(low)));
    }

    /// x86: canonical kernel addresses land in slots 256..=511, user ones below.
    #[test]
    fn x86_kernel_half(low in 0u64..P47) {
        let kaddr = 0xffff_8000_0000_0000 | low;
        prop_assert!((256..=511).contains(&X86_64::pgd_index(VirtAddr(kaddr))));
        prop_assert!(X86_64::pgd_index(VirtAddr(low)) < 256);
        prop_assert_eq!(X86_64::pgd_index(VirtAddr(kaddr)), X86_64::pgd_index(VirtAddr(low)) + 256);
        prop_assert_eq!(X86_64::hw_root(LEG, VirtAddr(kaddr)), Some(HwRoot::Mm));
    }
}

// ===========================================================================
// 4. Hardware root selection
// ===========================================================================

/// (arch, va, expected root, rule) -- family-independent for the modelled configs.
#[rustfmt::skip]
const HW_ROOT: &[(ArchId, u64, Option<HwRoot>, &str)] = &[
    // x86-64 4-level: canonical = bits 63..47 equal; one root with a shared kernel half.
    (X86, 0,                     Some(HwRoot::Mm), "x86 address 0"),
    (X86, P47 - 1,               Some(HwRoot::Mm), "x86 last canonical user byte"),
    (X86, P47,                   None,             "x86 first non-canonical address"),
    (X86, 0x0000_ffff_ffff_ffff, None,             "x86 non-canonical"),
    (X86, 0x0001_0000_0000_0000, None,             "x86 non-canonical above 2^48"),
    (X86, 0xffff_7fff_ffff_ffff, None,             "x86 last non-canonical address"),
    (X86, 0xffff_8000_0000_0000, Some(HwRoot::Mm), "x86 first canonical kernel address"),
    (X86, 0xffff_8800_0000_0000, Some(HwRoot::Mm), "x86 v4.10 PAGE_OFFSET"),
    (X86, TOP,                   Some(HwRoot::Mm), "x86 top byte"),
    (X86, 0x8000_0000_0000_0000, None,             "x86 bit 63 alone"),
    // arm64: bit 55 selects TTBR1; TBI0 for user addresses, bits 48..55 must match.
    (ARM, 0,                     Some(HwRoot::Mm),     "arm64 address 0"),
    (ARM, P48 - 1,               Some(HwRoot::Mm),     "arm64 last user byte"),
    (ARM, P48,                   None,                 "arm64 2^48: outside TTBR0's range"),
    (ARM, 0x007f_ffff_ffff_ffff, None,                 "arm64 bits 48..54 set, bit 55 clear"),
    (ARM, 0x0080_0000_0000_0000, None,                 "arm64 bit 55 alone: TTBR1 but bits 63..56 clear"),
    (ARM, 0x5a00_0000_0000_1000, Some(HwRoot::Mm),     "arm64 tagged user pointer (TBI0)"),
    (ARM, 0xff00_ffff_ffff_ffff, Some(HwRoot::Mm),     "arm64 top byte 0xff, bit 55 clear: user"),
    (ARM, 0xfeff_8000_0000_0000, None,                 "arm64 tagged kernel pointer (TBI1 off)"),
    (ARM, 0xffff_0000_0000_0000, Some(HwRoot::Kernel), "arm64 first TTBR1 address (6.x PAGE_OFFSET)"),
    (ARM, 0xffff_8000_0000_0000, Some(HwRoot::Kernel), "arm64 v4.10 PAGE_OFFSET"),
    (ARM, 0xfffe_ffff_ffff_ffff, None,                 "arm64 below the TTBR1 range"),
    (ARM, TOP,                   Some(HwRoot::Kernel), "arm64 top byte"),
    // ppc64 radix: quadrant 0 = the mm's PID, quadrant 3 = PID 0; 52 EA bits.
    (PPC, 0,                     Some(HwRoot::Mm),     "ppc64 quadrant 0"),
    (PPC, P52 - 1,               Some(HwRoot::Mm),     "ppc64 last EA of quadrant 0"),
    (PPC, P52,                   None,                 "ppc64 bits above the radix tree"),
    (PPC, 0x4000_0000_0000_0000, None,                 "ppc64 quadrant 1"),
    (PPC, 0x8000_0000_0000_0000, None,                 "ppc64 quadrant 2"),
    (PPC, 0xc000_0000_0000_0000, Some(HwRoot::Kernel), "ppc64 PAGE_OFFSET, quadrant 3"),
    (PPC, 0xc008_0000_0000_0000, Some(HwRoot::Kernel), "ppc64 radix vmalloc"),
    (PPC, 0xc00f_ffff_ffff_ffff, Some(HwRoot::Kernel), "ppc64 last EA of quadrant 3"),
    (PPC, 0xc010_0000_0000_0000, None,                 "ppc64 quadrant 3 above 2^52"),
    (PPC, 0xd000_0000_0000_0000, None,                 "ppc64 hash v4.10 vmalloc is not a radix EA"),
    (PPC, TOP,                   None,                 "ppc64 all ones"),
    (PPC4K, P52 - 1,             Some(HwRoot::Mm),     "ppc64-4k last EA of quadrant 0"),
    (PPC4K, 0xc000_0000_0000_0000, Some(HwRoot::Kernel), "ppc64-4k PAGE_OFFSET"),
    (PPC4K, P52,                 None,                 "ppc64-4k above the radix tree"),
];

#[test]
fn hw_root_table() {
    let mut failures = Vec::new();
    for &(arch, va, want, rule) in HW_ROOT {
        for family in families() {
            let got = with_arch!(arch, A => A::hw_root(family, VirtAddr(va)));
            if got != want {
                failures.push(format!(
                    "  {arch} {family:?} {va:#x}: got {got:?}, want {want:?}  [{rule}]"
                ));
            }
        }
    }
    report("hw_root", &failures);
    // Every layout address of every arch/family is translatable by its own hardware.
    for arch in ArchId::ALL {
        for family in families() {
            let l = layout(arch, family);
            for va in [l.page_offset, l.vmalloc_start, l.task_size_max - 1] {
                let root = with_arch!(arch, A => A::hw_root(family, VirtAddr(va)));
                assert!(root.is_some(), "{arch} {family:?} {va:#x}");
            }
        }
    }
}

// ===========================================================================
// 5. Layout constants (spec §4.1, §4.2)
// ===========================================================================

/// (arch, family, TASK_SIZE_MAX, PAGE_OFFSET, VMALLOC_START, USER_DS, KERNEL_DS,
/// __VIRTUAL_MASK_SHIFT, vsyscall page)
type LayoutRow = (
    ArchId,
    Family,
    u64,
    u64,
    u64,
    u64,
    u64,
    Option<u32>,
    Option<u64>,
);

#[rustfmt::skip]
const LAYOUTS: &[LayoutRow] = &[
    // x86-64: TASK_SIZE_MAX 2^47 - 4096; USER_DS = TASK_SIZE_MAX; KERNEL_DS = -1.
    (X86, LEG, X86_TSM, 0xffff_8800_0000_0000, 0xffff_c900_0000_0000, X86_TSM, TOP, Some(47), Some(0xffff_ffff_ff60_0000)),
    // 6.13: PAGE_OFFSET 0xffff888000000000 (L4); set_fs is gone, so KERNEL_DS cannot
    // widen the limit; vsyscall=xonly leaves no readable page.
    (X86, MOD, X86_TSM, 0xffff_8880_0000_0000, 0xffff_c900_0000_0000, X86_TSM, X86_TSM, Some(47), None),
    // arm64 v4.10: TASK_SIZE_64 = 2^48 = USER_DS, KERNEL_DS = -1; PAGE_OFFSET upper half;
    // VA_START + 128 MiB of modules = vmalloc.
    (ARM, LEG, P48, 0xffff_8000_0000_0000, 0xffff_0000_0800_0000, P48, TOP, None, None),
    // arm64 6.x: TASK_SIZE_MAX = 2^VA_BITS; PAGE_OFFSET = -2^48; PAGE_END + 2 GiB.
    (ARM, MOD, P48, 0xffff_0000_0000_0000, 0xffff_8000_8000_0000, P48, P48, None, None),
    // ppc64 v4.10: TASK_SIZE_USER64 = 64 TiB; USER_DS = TASK_SIZE_USER64 - 1; KERNEL_DS = ~0.
    (PPC, LEG, P46, 0xc000_0000_0000_0000, 0xc008_0000_0000_0000, PPC_SEG, TOP, None, None),
    (PPC4K, LEG, P46, 0xc000_0000_0000_0000, 0xc008_0000_0000_0000, PPC_SEG, TOP, None, None),
    // ppc64 6.13: 64K pages 4 PiB (2^52), 4K pages 64 TiB.
    (PPC, MOD, P52, 0xc000_0000_0000_0000, 0xc008_0000_0000_0000, P52, P52, None, None),
    (PPC4K, MOD, P46, 0xc000_0000_0000_0000, 0xc008_0000_0000_0000, P46, P46, None, None),
];

#[test]
fn layout_constants() {
    for &(arch, family, tsm, po, vm, uds, kds, vms, vsys) in LAYOUTS {
        let l = layout(arch, family);
        let want = Layout {
            task_size_max: tsm,
            page_offset: po,
            vmalloc_start: vm,
            user_ds: uds,
            kernel_ds: kds,
            virtual_mask_shift: vms,
            vsyscall: vsys,
        };
        assert_eq!(l, want, "{arch} {family:?}");
    }
    // The geometry variants' rows are in geometry.rs.
    assert_eq!(LAYOUTS.len(), 4 * 2);
}

#[test]
fn layout_invariants() {
    for arch in ArchId::ALL {
        for family in families() {
            let l = layout(arch, family);
            let va_bits = with_arch!(arch, A => A::va_bits());
            // The user address space fits in the tree and below the kernel.
            assert!(l.task_size_max <= 1 << va_bits, "{arch} {family:?}");
            assert!(l.task_size_max < l.page_offset && l.user_ds < l.page_offset);
            // KERNEL_DS never narrows USER_DS.
            assert!(l.kernel_ds >= l.user_ds, "{arch} {family:?}");
            // USER_DS admits exactly the user address space as access_ok's limit.
            let last_user = l.task_size_max - 1;
            for kind in [C, R] {
                assert!(
                    access_ok(arch, family, last_user, 1, l.user_ds, kind),
                    "{arch} {family:?}: last user byte"
                );
                assert!(
                    !access_ok(arch, family, l.page_offset, 1, l.user_ds, kind),
                    "{arch} {family:?}: PAGE_OFFSET under USER_DS"
                );
            }
            // Under KERNEL_DS, v4.10 accepts PAGE_OFFSET; 6.x has no KERNEL_DS.
            let k = access_ok(arch, family, l.page_offset, 4096, l.kernel_ds, R);
            assert_eq!(
                k,
                family == LEG,
                "{arch} {family:?}: PAGE_OFFSET under KERNEL_DS"
            );
        }
    }
}

// ===========================================================================
// Misc: run-time arch names
// ===========================================================================

#[test]
fn arch_names_round_trip() {
    for arch in ArchId::ALL {
        assert_eq!(arch.name().parse::<ArchId>(), Ok(arch));
        assert_eq!(arch.to_string(), arch.name());
        assert_eq!(with_arch!(arch, A => A::ID), arch);
    }
    assert_eq!(
        [
            "x86_64",
            "arm64",
            "ppc64",
            "ppc64-4k",
            "x86_64-la57",
            "arm64-52",
            "arm64-16k"
        ]
        .map(|s| s.parse::<ArchId>().unwrap()),
        ArchId::ALL
    );
    let err = "ppc".parse::<ArchId>().unwrap_err();
    assert!(err.to_string().contains("unknown arch `ppc`"));
    assert_eq!(ArchId::MAIN, [X86, ARM, PPC]);
}

// ===========================================================================
// The walkers' fast path agrees with decode
// ===========================================================================

fn table_step_by_decode(
    arch: ArchId,
    family: Family,
    level: u8,
    raw: u64,
) -> Option<(Pfn, PteFlags)> {
    let p = decode(arch, family, level, raw);
    p.has(PteFlags::TABLE)
        .then_some((p.pfn, p.flags & (PteFlags::USER | PteFlags::WRITE)))
}

/// `table_step` with its address reduced to the frame `decode` gives.
fn table_step_frame(arch: ArchId, family: Family, level: u8, raw: u64) -> Option<(Pfn, PteFlags)> {
    with_arch!(arch, A => A::table_step(family, Level(level), raw)
        .map(|(pa, f)| (pa.pfn(A::PAGE_SHIFT), f)))
}

/// Raw words with every single bit, every pair of the low 12 and top 12
/// bits, and the encodings of table and leaf entries.
fn interesting_raws(arch: ArchId, family: Family, level: u8) -> Vec<u64> {
    let mut v = vec![0, u64::MAX];
    for b in 0..64 {
        v.push(1 << b);
        v.push(!(1u64 << b));
    }
    let edge: Vec<u32> = (0..12).chain(52..64).collect();
    for &a in &edge {
        for &b in &edge {
            v.push((1u64 << a) | (1 << b) | 0x1234_5000);
        }
    }
    for flags in [
        PteFlags::VALID | PteFlags::PRESENT | PteFlags::TABLE | PteFlags::USER | PteFlags::WRITE,
        PteFlags::VALID | PteFlags::PRESENT | PteFlags::TABLE,
        PteFlags::VALID | PteFlags::PRESENT | PteFlags::LEAF | PteFlags::USER,
        PteFlags::PRESENT | PteFlags::PROTNONE | PteFlags::LEAF,
    ] {
        v.push(encode(
            arch,
            family,
            level,
            Pte {
                flags,
                pfn: Pfn(0x1234),
            },
        ));
    }
    v
}

#[test]
fn table_step_agrees_with_decode() {
    let mut failures = Vec::new();
    for arch in ArchId::ALL {
        let levels = with_arch!(arch, A => A::levels()) as u8;
        for family in families() {
            for level in 0..levels {
                for raw in interesting_raws(arch, family, level) {
                    let fast = table_step_frame(arch, family, level, raw);
                    let slow = table_step_by_decode(arch, family, level, raw);
                    if fast != slow {
                        failures.push(format!(
                            "{arch} {family:?} level {level} raw {raw:#x}: {fast:?} vs decode {slow:?}"
                        ));
                    }
                }
            }
        }
    }
    report("table_step", &failures);
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(4096) })]

    #[test]
    fn table_step_agrees_with_decode_on_any_word(raw in any::<u64>(), level in 0u8..4) {
        for arch in ArchId::ALL {
            for family in families() {
                let fast = table_step_frame(arch, family, level, raw);
                prop_assert_eq!(fast, table_step_by_decode(arch, family, level, raw), "{} {:?}", arch, family);
            }
        }
    }
}

/// `leaf_pfn_field`: the pfn of a leaf is that field, and the flags of a
/// non-zero entry ignore it.
#[test]
fn leaf_pfn_field_is_the_pfn_and_nothing_else() {
    let mut failures = Vec::new();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for arch in ArchId::ALL {
        let levels = with_arch!(arch, A => A::levels()) as u8;
        for family in families() {
            for level in 0..levels {
                let Some((mask, shift)) = with_arch!(arch, A => A::leaf_pfn_field(Level(level)))
                else {
                    continue;
                };
                let mut raws = interesting_raws(arch, family, level);
                raws.extend((0..2000).map(|_| next()));
                for raw in raws {
                    let p = decode(arch, family, level, raw);
                    if p.has(PteFlags::LEAF) && p.pfn != Pfn((raw & mask) >> shift) {
                        failures.push(format!(
                            "{arch} {family:?} L{level} {raw:#x}: pfn {:?}",
                            p.pfn
                        ));
                    }
                    for other in [0, mask, next() & mask, raw & mask ^ mask] {
                        let raw2 = (raw & !mask) | (other & mask);
                        if raw == 0 || raw2 == 0 {
                            continue;
                        }
                        let q = decode(arch, family, level, raw2);
                        if p.flags != q.flags {
                            failures.push(format!(
                                "{arch} {family:?} L{level} {raw:#x} vs {raw2:#x}: {:?} vs {:?}",
                                p.flags, q.flags
                            ));
                        }
                    }
                }
            }
        }
    }
    report("leaf_pfn_field", &failures);
}
