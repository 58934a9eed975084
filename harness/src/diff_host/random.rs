//! Seeded random host-differential cases: each case from its own seed
//! derived from (seed, index).

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{BDEV_SIZE, Case, Op, PAGE, PageKind, Seg, TASK_SIZE_MAX, abs, seg};

/// The address-space facts a case generator needs: the host's, or a
/// guest arch's for `vmemu diff-kernel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// `PAGE_SIZE`.
    pub page: u64,
    /// `TASK_SIZE_MAX`: the first address above every user address space.
    pub task_size_max: u64,
    /// An address in the kernel's direct map.
    pub kernel_addr: u64,
}

/// The x86-64 host's (4-level paging).
pub const HOST: Geometry = Geometry {
    page: PAGE,
    task_size_max: TASK_SIZE_MAX,
    kernel_addr: 0xffff_8880_0000_0000,
};

/// SplitMix64, to derive per-case seeds from (seed, index).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, v: &[T]) -> T {
    v[(rng.next_u64() % v.len() as u64) as usize]
}

fn rand_region(rng: &mut ChaCha8Rng, max_pages: u64) -> Vec<PageKind> {
    let n = 1 + rng.next_u64() % max_pages;
    (0..n)
        .map(|_| match rng.next_u64() % 10 {
            0 => PageKind::Ro,
            1 => PageKind::None,
            2 => PageKind::Hole,
            3 => PageKind::Untouched,
            _ => PageKind::Rw,
        })
        .collect()
}

fn rand_len(rng: &mut ChaCha8Rng, g: &Geometry, room: u64, block: bool) -> u64 {
    if block {
        return 512 * (rng.next_u64() % (room / 512 + 1));
    }
    let len = match rng.next_u64() % 8 {
        0 => 0,
        1 => 1 + rng.next_u64() % 16,
        2 => g.page,
        3 => room,
        _ => rng.next_u64() % (room + 1),
    };
    // Never past the region: the host would touch its neighbours.
    len.min(room)
}

/// Random iovecs over `regions`: `block` keeps them 512-aligned; `remote`
/// leaves out fixed addresses below `TASK_SIZE_MAX` (a remote iovec is not
/// checked with `access_ok`, so the kernel would really touch them).
fn rand_segs(
    rng: &mut ChaCha8Rng,
    g: &Geometry,
    regions: &[Vec<PageKind>],
    block: bool,
    remote: bool,
    only: Option<usize>,
) -> Vec<Seg> {
    let n = match rng.next_u64() % 20 {
        0 => 0,
        1 => 1025,
        2 => 1024,
        _ => 1 + rng.next_u64() % 5,
    };
    if n >= 1024 {
        return vec![seg(only.unwrap_or(0), 0, rng.next_u64() % 2); n as usize];
    }
    (0..n)
        .map(|_| {
            if rng.next_u64().is_multiple_of(25) {
                return pick(
                    rng,
                    &[
                        abs(0, 0),
                        abs(g.kernel_addr, 64),
                        if remote {
                            abs(g.task_size_max, 16)
                        } else {
                            abs(g.task_size_max - 8, 16)
                        },
                        abs(0x8000_0000_0000_0000, 8),
                        seg(0, 0, u64::MAX - 5),
                    ],
                );
            }
            let r = only.unwrap_or((rng.next_u64() % regions.len() as u64) as usize);
            let size = regions[r].len() as u64 * g.page;
            let off = if block {
                512 * (rng.next_u64() % (size / 512))
            } else {
                match rng.next_u64() % 4 {
                    0 => 0,
                    1 => {
                        (rng.next_u64() % regions[r].len() as u64 + 1) * g.page
                            - 1
                            - rng.next_u64() % 64
                    }
                    _ => rng.next_u64() % size,
                }
            };
            let len = rand_len(rng, g, size - off, block);
            seg(r, off, len)
        })
        .collect()
}

/// `n` random cases from `seed` (each case from its own derived seed, so
/// case `k` is the same whatever `n`).
#[must_use]
pub fn random_cases(seed: u64, n: usize) -> Vec<Case> {
    (0..n).map(|k| random_case(seed, k)).collect()
}

/// Random case number `k` of `seed`.
#[must_use]
pub fn random_case(seed: u64, k: usize) -> Case {
    random_case_for(&HOST, seed, k)
}

/// Random case number `k` of `seed` for an address space of geometry `g`.
#[must_use]
pub fn random_case_for(g: &Geometry, seed: u64, k: usize) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(k as u64)));
    let kind = rng.next_u64() % 10;
    let block = kind >= 8;
    let nregions = if (4..=5).contains(&kind) {
        2
    } else {
        1 + rng.next_u64() % 2
    } as usize;
    let regions: Vec<Vec<PageKind>> = (0..nregions).map(|_| rand_region(&mut rng, 6)).collect();
    let aligned = block && rng.next_u64() % 8 != 0;
    // process_vm_*: local iovecs in region 0, remote ones in region 1 (two
    // processes never share memory; overlapping copies would depend on the
    // copy routine's direction).
    let pvm = (4..=5).contains(&kind);
    let iov = rand_segs(&mut rng, g, &regions, aligned, false, pvm.then_some(0));
    let fill = if kind < 4 {
        rand_fill(&mut rng, g.page)
    } else {
        vec![]
    };
    let op = rand_op(&mut rng, g, kind, &regions);
    let name = format!("random#{k}");
    let c = Case {
        name,
        regions,
        fill,
        iov,
        op,
    };
    debug_assert!(c.op.uses_pipe() || c.fill.is_empty());
    c
}

/// The lengths of the writes into the pipe before a pipe case.
fn rand_fill(rng: &mut ChaCha8Rng, page: u64) -> Vec<u64> {
    match rng.next_u64() % 6 {
        0 => vec![],
        1 => vec![1 + rng.next_u64() % 200],
        2 => vec![page; (rng.next_u64() % 17) as usize],
        3 => {
            let mut f = vec![page; (rng.next_u64() % 15) as usize];
            f.push(1 + rng.next_u64() % (page - 1));
            f
        }
        _ => vec![page, 1 + rng.next_u64() % 500],
    }
}

/// The syscall of a case of `kind` (0–9), with its own random arguments.
fn rand_op(rng: &mut ChaCha8Rng, g: &Geometry, kind: u64, regions: &[Vec<PageKind>]) -> Op {
    match kind {
        0 => Op::Readv,
        1 => Op::Writev,
        2 => Op::VmspliceToPipe,
        3 => Op::VmspliceToUser,
        4 | 5 => {
            let remote = rand_segs(rng, g, regions, false, true, Some(1));
            let flags = u64::from(rng.next_u64().is_multiple_of(30));
            if kind == 4 {
                Op::ProcessVmReadv { remote, flags }
            } else {
                Op::ProcessVmWritev { remote, flags }
            }
        }
        6 | 7 => {
            let p = g.page;
            let size = pick(rng, &[0, 100, p, 3 * p + 17, 5 * p]);
            let pos = match rng.next_u64() % 6 {
                0 => 0,
                1 => -1,
                2 => size as i64,
                _ => (rng.next_u64() % (size + 2 * p)) as i64,
            };
            if kind == 6 {
                Op::Preadv { size, pos }
            } else {
                Op::Pwritev { size, pos }
            }
        }
        _ => {
            let pos = match rng.next_u64() % 6 {
                0 => 0,
                1 => rng.random_range(0..BDEV_SIZE as i64),
                2 => BDEV_SIZE as i64 - 512,
                _ => 512 * rng.random_range(0..(BDEV_SIZE / 512) as i64),
            };
            if rng.next_u64().is_multiple_of(2) {
                Op::PreadvDirect { pos }
            } else {
                Op::PwritevDirect { pos }
            }
        }
    }
}
