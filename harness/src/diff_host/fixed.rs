//! The fixed table of host-differential cases, by syscall.

use super::{BDEV_SIZE, Case, Op, PAGE, PageKind, Seg, TASK_SIZE_MAX, abs, seg};

fn case(name: &str, regions: &[&str], fill: &[u64], iov: Vec<Seg>, op: Op) -> Case {
    Case {
        name: name.to_string(),
        regions: regions
            .iter()
            .map(|s| {
                s.chars()
                    .map(|c| match c {
                        'w' => PageKind::Rw,
                        'r' => PageKind::Ro,
                        'n' => PageKind::None,
                        '_' => PageKind::Hole,
                        _ => PageKind::Untouched,
                    })
                    .collect()
            })
            .collect(),
        fill: fill.to_vec(),
        iov,
        op,
    }
}

/// The fixed table of cases.
#[must_use]
pub fn fixed_cases() -> Vec<Case> {
    let mut v: Vec<Case> = [
        readv_cases(),
        writev_cases(),
        vmsplice_cases(),
        process_vm_cases(),
        file_cases(),
        dio_cases(),
    ]
    .concat();
    v.retain(|c| !c.name.is_empty());
    v
}

/// The fixed cases of readv(2) on a pipe.
fn readv_cases() -> Vec<Case> {
    use Op::*;
    let p = PAGE;
    let full: Vec<u64> = vec![p; 16];
    vec![
        // readv on a pipe
        case("readv/whole", &["ww"], &[p], vec![seg(0, 0, p)], Readv),
        case("readv/empty-pipe", &["w"], &[], vec![seg(0, 0, 100)], Readv),
        case(
            "readv/zero-count",
            &["w"],
            &[100],
            vec![seg(0, 0, 0)],
            Readv,
        ),
        case("readv/no-segments", &["w"], &[100], vec![], Readv),
        case(
            "readv/fault-in-first-buffer",
            &["w_"],
            &[p],
            vec![seg(0, p - 100, 200)],
            Readv,
        ),
        case(
            "readv/fault-in-second-buffer",
            &["ww_"],
            &[p, p],
            vec![seg(0, 0, 3 * p)],
            Readv,
        ),
        case(
            "readv/ro-destination",
            &["r"],
            &[100],
            vec![seg(0, 0, 100)],
            Readv,
        ),
        case(
            "readv/prot-none-destination",
            &["wn"],
            &[p],
            vec![seg(0, p / 2, p)],
            Readv,
        ),
        case(
            "readv/untouched-destination",
            &["uu"],
            &[p, 100],
            vec![seg(0, 10, 2 * p)],
            Readv,
        ),
        case(
            "readv/zero-length-segments",
            &["ww"],
            &[300],
            vec![
                seg(0, 0, 0),
                abs(0, 0),
                seg(0, 5, 100),
                seg(0, 0, 0),
                seg(0, p + 7, 300),
            ],
            Readv,
        ),
        case(
            "readv/1025-segments",
            &["w"],
            &[100],
            vec![seg(0, 0, 1); 1025],
            Readv,
        ),
        case(
            "readv/1024-segments",
            &["w"],
            &[100],
            vec![seg(0, 0, 1); 1024],
            Readv,
        ),
        case(
            "readv/kernel-address",
            &["w"],
            &[100],
            vec![seg(0, 0, 10), abs(0xffff_8880_0000_0000, 10)],
            Readv,
        ),
        case(
            "readv/crosses-task-size",
            &["w"],
            &[100],
            vec![seg(0, 0, 10), abs(TASK_SIZE_MAX - 16, 32)],
            Readv,
        ),
        case(
            "readv/ends-at-task-size",
            &["w"],
            &[100],
            vec![abs(TASK_SIZE_MAX - 16, 16)],
            Readv,
        ),
        case(
            "readv/negative-length",
            &["w"],
            &[100],
            vec![seg(0, 0, 10), seg(0, 0, u64::MAX)],
            Readv,
        ),
        case(
            "readv/sum-overflows-ssize",
            &["w"],
            &[100],
            vec![seg(0, 0, 1 << 62), seg(0, 0, 1 << 62), seg(0, 0, 1 << 62)],
            Readv,
        ),
        case(
            "readv/full-pipe",
            &["wwww"],
            &full,
            vec![seg(0, 0, 4 * p)],
            Readv,
        ),
    ]
}

/// The fixed cases of writev(2) on a pipe.
fn writev_cases() -> Vec<Case> {
    use Op::*;
    let p = PAGE;
    let full: Vec<u64> = vec![p; 16];
    vec![
        // writev on a pipe
        case("writev/small", &["w"], &[], vec![seg(0, 0, 100)], Writev),
        case("writev/merge", &["w"], &[100], vec![seg(0, 0, 200)], Writev),
        case(
            "writev/merge-fault",
            &["w_"],
            &[100],
            vec![seg(0, p - 50, 100)],
            Writev,
        ),
        case(
            "writev/page-fault-mid-chunk",
            &["ww_"],
            &[],
            vec![seg(0, 100, 2 * p + 100)],
            Writev,
        ),
        case(
            "writev/fault-first-chunk",
            &["w_"],
            &[],
            vec![seg(0, p / 2, p)],
            Writev,
        ),
        case(
            "writev/fault-then-retry",
            &["w_w"],
            &[],
            vec![seg(0, 0, p + 10), seg(0, 2 * p, 10)],
            Writev,
        ),
        case(
            "writev/prot-none-source",
            &["nw"],
            &[],
            vec![seg(0, 0, 2 * p)],
            Writev,
        ),
        case(
            "writev/ro-source",
            &["rr"],
            &[],
            vec![seg(0, 1, p + 5)],
            Writev,
        ),
        case(
            "writev/full-pipe",
            &["w"],
            &full,
            vec![seg(0, 0, 10)],
            Writev,
        ),
        case(
            "writev/fills-pipe",
            &["wwww"],
            &[p; 14],
            vec![seg(0, 0, 4 * p)],
            Writev,
        ),
        case(
            "writev/untouched-source",
            &["uu"],
            &[],
            vec![seg(0, 0, 2 * p)],
            Writev,
        ),
        case(
            "writev/1025-segments",
            &["w"],
            &[],
            vec![seg(0, 0, 1); 1025],
            Writev,
        ),
    ]
}

/// The fixed cases of vmsplice(2) to a pipe and to user memory.
fn vmsplice_cases() -> Vec<Case> {
    use Op::*;
    let p = PAGE;
    let full: Vec<u64> = vec![p; 16];
    vec![
        // vmsplice
        case(
            "vmsplice/two-pages",
            &["ww"],
            &[],
            vec![seg(0, 100, p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/hole",
            &["w_w"],
            &[],
            vec![seg(0, 0, 3 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/first-page-hole",
            &["_w"],
            &[],
            vec![seg(0, 0, 2 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/prot-none",
            &["wn"],
            &[],
            vec![seg(0, 0, 2 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/ro-source",
            &["r"],
            &[],
            vec![seg(0, 0, p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/full",
            &["w"],
            &full,
            vec![seg(0, 0, 10)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/nearly-full",
            &["wwww"],
            &[p; 14],
            vec![seg(0, 0, 4 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/17-pages",
            &["wwwwwwwwwwwwwwwww"],
            &[],
            vec![seg(0, 0, 17 * p)],
            VmspliceToPipe,
        ),
        case(
            "vmsplice/to-user",
            &["ww"],
            &[100, p],
            vec![seg(0, 0, 2 * p)],
            VmspliceToUser,
        ),
        case(
            "vmsplice/to-user-fault",
            &["w_"],
            &[p, p],
            vec![seg(0, 10, 2 * p)],
            VmspliceToUser,
        ),
        case(
            "vmsplice/to-user-empty",
            &["w"],
            &[],
            vec![seg(0, 0, 10)],
            VmspliceToUser,
        ),
        case(
            "vmsplice/to-user-empty-buffer-at-head",
            &["w"],
            &[0, p],
            vec![seg(0, 0, 200)],
            VmspliceToUser,
        ),
        case(
            "readv/empty-buffer-at-head",
            &["w"],
            &[0, p],
            vec![seg(0, 0, 200)],
            Readv,
        ),
        case(
            "readv/only-empty-buffer",
            &["w"],
            &[0],
            vec![seg(0, 0, 200)],
            Readv,
        ),
        case(
            "writev/merges-into-empty-buffer",
            &["w"],
            &[0],
            vec![seg(0, 0, 100)],
            Writev,
        ),
        case(
            "writev/faulted-twice",
            &["w"],
            &[0, 0],
            vec![seg(0, 0, 100)],
            Writev,
        ),
        case(
            "writev/slot-taken-by-empty-buffer",
            &[&"w".repeat(16)],
            &[0],
            vec![seg(0, 0, 16 * p)],
            Writev,
        ),
    ]
}

/// The fixed cases of process_vm_readv(2) / process_vm_writev(2) on the own pid.
fn process_vm_cases() -> Vec<Case> {
    use Op::*;
    let p = PAGE;
    vec![
        // process_vm_readv / writev
        case(
            "pvm_readv/simple",
            &["ww", "ww"],
            &[],
            vec![seg(0, 10, p)],
            ProcessVmReadv {
                remote: vec![seg(1, 100, p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/flags",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 10)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 10)],
                flags: 1,
            },
        ),
        case(
            "pvm_readv/remote-hole",
            &["www", "w_w"],
            &[],
            vec![seg(0, 0, 3 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 3 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-first-page-hole",
            &["ww", "_w"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 100, p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/local-fault-mid-page",
            &["w_", "ww"],
            &[],
            vec![seg(0, p - 300, 600)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/local-ro",
            &["wr", "ww"],
            &[],
            vec![seg(0, 100, p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-prot-none",
            &["ww", "wn"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-untouched",
            &["ww", "uu"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/local-1025",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 1); 1025],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 10)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-1025",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 10)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 1); 1025],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-1025-local-empty",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 0)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 1); 1025],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-sum-overflows",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 100)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 1 << 62), seg(1, 0, 1 << 62), seg(1, 0, 1 << 62)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-negative",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 100)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 10), seg(1, 0, 1 << 63)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-kernel",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            ProcessVmReadv {
                remote: vec![abs(0xffff_8880_0000_0000, 100)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-zero-lengths",
            &["w", "w"],
            &[],
            vec![seg(0, 0, 100)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 0), abs(0, 0)],
                flags: 0,
            },
        ),
        case(
            "pvm_readv/many-remote-segments",
            &["ww", "www"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmReadv {
                remote: (0..40).map(|k| seg(1, k * 200 + 3, 150)).collect(),
                flags: 0,
            },
        ),
        case(
            "pvm_readv/remote-batch-of-40-pages",
            &[&"w".repeat(40), &"w".repeat(40)],
            &[],
            vec![seg(0, 0, 40 * p)],
            ProcessVmReadv {
                remote: vec![seg(1, 0, 40 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_writev/simple",
            &["ww", "ww"],
            &[],
            vec![seg(0, 10, p)],
            ProcessVmWritev {
                remote: vec![seg(1, 100, p)],
                flags: 0,
            },
        ),
        case(
            "pvm_writev/remote-ro",
            &["ww", "wr"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmWritev {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_writev/remote-hole",
            &["ww", "w_"],
            &[],
            vec![seg(0, 0, 2 * p)],
            ProcessVmWritev {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
        case(
            "pvm_writev/local-prot-none",
            &["wn", "ww"],
            &[],
            vec![seg(0, 50, p)],
            ProcessVmWritev {
                remote: vec![seg(1, 0, 2 * p)],
                flags: 0,
            },
        ),
    ]
}

/// The fixed cases of preadv(2) / pwritev(2) on a memfd.
fn file_cases() -> Vec<Case> {
    use Op::*;
    let p = PAGE;
    vec![
        // preadv / pwritev on a file
        case(
            "preadv/simple",
            &["ww"],
            &[],
            vec![seg(0, 3, 5000)],
            Preadv {
                size: 3 * p,
                pos: 100,
            },
        ),
        case(
            "preadv/past-eof",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            Preadv { size: p, pos: 5000 },
        ),
        case(
            "preadv/short-at-eof",
            &["ww"],
            &[],
            vec![seg(0, 0, 2 * p)],
            Preadv {
                size: 5000,
                pos: 10,
            },
        ),
        case(
            "preadv/negative-pos",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            Preadv { size: p, pos: -1 },
        ),
        case(
            "preadv/fault-mid-page",
            &["w_"],
            &[],
            vec![seg(0, p - 123, 1000)],
            Preadv {
                size: 3 * p,
                pos: 0,
            },
        ),
        case(
            "preadv/fault-second-seg",
            &["w_"],
            &[],
            vec![seg(0, 0, 10), seg(0, p, 10)],
            Preadv { size: p, pos: 0 },
        ),
        case(
            "preadv/ro-destination",
            &["r"],
            &[],
            vec![seg(0, 0, 10)],
            Preadv { size: p, pos: 0 },
        ),
        case(
            "preadv/pos-overflow",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            Preadv {
                size: p,
                pos: i64::MAX - 10,
            },
        ),
        case(
            "pwritev/simple",
            &["ww"],
            &[],
            vec![seg(0, 3, 5000)],
            Pwritev {
                size: 3 * p,
                pos: 100,
            },
        ),
        case(
            "pwritev/extends",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            Pwritev {
                size: 1000,
                pos: 5000,
            },
        ),
        case(
            "pwritev/fault-mid-page",
            &["w_"],
            &[],
            vec![seg(0, p - 123, 1000)],
            Pwritev {
                size: 3 * p,
                pos: 7,
            },
        ),
        case(
            "pwritev/prot-none-first",
            &["nw"],
            &[],
            vec![seg(0, 0, 100)],
            Pwritev { size: p, pos: 0 },
        ),
        case(
            "pwritev/ro-source",
            &["r"],
            &[],
            vec![seg(0, 0, 100)],
            Pwritev { size: p, pos: 0 },
        ),
        case(
            "pwritev/untouched-source",
            &["u"],
            &[],
            vec![seg(0, 0, 100)],
            Pwritev { size: p, pos: 0 },
        ),
    ]
}

/// The fixed cases of O_DIRECT preadv(2) / pwritev(2) on the block device.
fn dio_cases() -> Vec<Case> {
    use Op::*;
    let p = PAGE;
    vec![
        // O_DIRECT on the block device
        case(
            "dio_read/aligned",
            &["ww"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PreadvDirect { pos: 512 },
        ),
        case(
            "dio_read/pos-unaligned",
            &["w"],
            &[],
            vec![seg(0, 0, 512)],
            PreadvDirect { pos: 100 },
        ),
        case(
            "dio_read/len-unaligned",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/addr-unaligned",
            &["ww"],
            &[],
            vec![seg(0, 100, 512)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/addr-512",
            &["ww"],
            &[],
            vec![seg(0, 512, 1024)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/seg-len-unaligned",
            &["ww"],
            &[],
            vec![seg(0, 0, 256), seg(0, p, 256)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/zero-len-unaligned-addr",
            &["ww"],
            &[],
            vec![seg(0, 0, 512), seg(0, 3, 0), seg(0, p, 512)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/hole",
            &["ww_w"],
            &[],
            vec![seg(0, 0, 4 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/first-page-hole",
            &["_w"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/ro-destination",
            &["wr"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/at-end",
            &["ww"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PreadvDirect {
                pos: (BDEV_SIZE - 512) as i64,
            },
        ),
        case(
            "dio_read/past-end",
            &["w"],
            &[],
            vec![seg(0, 0, 512)],
            PreadvDirect {
                pos: BDEV_SIZE as i64,
            },
        ),
        case(
            "dio_read/multi-bio-hole",
            &[&("w".repeat(280) + "_" + &"w".repeat(19))],
            &[],
            vec![seg(0, 0, 300 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_read/multi-bio",
            &[&"w".repeat(300)],
            &[],
            vec![seg(0, 0, 300 * p)],
            PreadvDirect { pos: 0 },
        ),
        case(
            "dio_write/aligned",
            &["ww"],
            &[],
            vec![seg(0, 512, p)],
            PwritevDirect { pos: 1024 },
        ),
        case(
            "dio_write/hole",
            &["w_"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PwritevDirect { pos: 0 },
        ),
        case(
            "dio_write/prot-none",
            &["nw"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PwritevDirect { pos: 0 },
        ),
        case(
            "dio_write/past-end",
            &["w"],
            &[],
            vec![seg(0, 0, 512)],
            PwritevDirect {
                pos: BDEV_SIZE as i64,
            },
        ),
        case(
            "dio_write/clipped-at-end",
            &["ww"],
            &[],
            vec![seg(0, 0, 2 * p)],
            PwritevDirect {
                pos: (BDEV_SIZE - 1024) as i64,
            },
        ),
        case(
            "dio_write/unaligned",
            &["w"],
            &[],
            vec![seg(0, 0, 100)],
            PwritevDirect { pos: 0 },
        ),
    ]
}
