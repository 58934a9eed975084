//! The emulator side of a differential case: x86_64 under the profile
//! nearest the host's kernel for `diff-host` ([`super::host_profile`]),
//! any arch and profile for `diff-kernel`.

use vmemu_arch::{Arch, VirtAddr, X86_64};
use vmemu_iter::syscalls::{O_DIRECT, SPLICE_F_ALL};
use vmemu_iter::{Iovec, Sys};
use vmemu_mm::{Backing, Errno, KernelProfile, MapFlags, Prot};

use super::{Addr, BDEV_SIZE, Case, Op, Outcome, PageKind, Seg, fill_byte, user_byte};

/// `SPLICE_F_NONBLOCK`, as the host side passes it.
const SPLICE_F_NONBLOCK: u32 = 0x02;

/// Runs `c` on a fresh emulated x86_64 kernel under `profile` (the
/// differential passes the one nearest the host's kernel).
#[must_use]
pub fn run(c: &Case, profile: &KernelProfile) -> Outcome {
    run_on::<X86_64>(c, profile.clone())
}

/// Runs `c` on a fresh emulated kernel of arch `A` under `profile` (pages,
/// offsets and lengths of the case are in `A`'s page size).
#[must_use]
pub fn run_on<A: Arch>(c: &Case, profile: KernelProfile) -> Outcome {
    let page = A::PAGE_SIZE;
    let mut sys = Sys::<A>::new(profile, 64 << 20).expect("64 MiB of emulated memory");
    let mm = sys.m.current_mm();
    // The regions: all mapped first, then filled, then protected or
    // punched, so no region can land in another's hole.
    let mut bases = Vec::new();
    for (r, pages) in c.regions.iter().enumerate() {
        let len = pages.len() as u64 * page;
        let base = sys
            .m
            .mmap(
                mm,
                None,
                len,
                Prot::RW,
                MapFlags::default(),
                Backing::Anon,
                &format!("r{r}"),
            )
            .expect("region mapping");
        bases.push(base);
    }
    for (r, pages) in c.regions.iter().enumerate() {
        for (k, kind) in pages.iter().enumerate() {
            if *kind == PageKind::Untouched {
                continue;
            }
            let off = k as u64 * page;
            let bytes: Vec<u8> = (off..off + page).map(|o| user_byte(r, o)).collect();
            let left = sys.m.copy_to_user(bases[r].wrapping_add(off), &bytes);
            assert_eq!(left, 0, "filling a fresh region");
        }
    }
    let (rfd, wfd) = sys.sys_pipe();
    fill_pipe(&mut sys, wfd, &c.fill);
    for (r, pages) in c.regions.iter().enumerate() {
        for (k, kind) in pages.iter().enumerate() {
            let at = bases[r].wrapping_add(k as u64 * page);
            let res = match kind {
                PageKind::Ro => sys.m.mprotect(mm, at, page, Prot::R),
                PageKind::None => sys.m.mprotect(mm, at, page, Prot::NONE),
                PageKind::Hole => sys.m.munmap(mm, at, page),
                _ => Ok(()),
            };
            res.expect("mprotect/munmap of a region page");
        }
    }
    let iovs = |segs: &[Seg]| -> Vec<Iovec> {
        segs.iter()
            .map(|s| Iovec {
                base: match s.addr {
                    Addr::Region(r, off) => bases[r].wrapping_add(off),
                    Addr::Abs(a) => VirtAddr(a),
                },
                len: s.len,
            })
            .collect()
    };
    let iov = iovs(&c.iov);
    let mut after_kind = After::None;
    let ret = match &c.op {
        Op::Readv | Op::Writev | Op::VmspliceToPipe | Op::VmspliceToUser => {
            let pipe = sys.pipes.len() - 1;
            after_kind = After::Pipe(pipe);
            match c.op {
                Op::Readv => sys.sys_readv(rfd, iov),
                Op::Writev => sys.sys_writev(wfd, iov),
                Op::VmspliceToPipe => sys.sys_vmsplice(wfd, iov, SPLICE_F_NONBLOCK & SPLICE_F_ALL),
                _ => sys.sys_vmsplice(rfd, iov, SPLICE_F_NONBLOCK),
            }
        }
        Op::ProcessVmReadv { remote, flags } => {
            let me = sys.m.current;
            sys.sys_process_vm_readv(me, iov, iovs(remote), *flags)
        }
        Op::ProcessVmWritev { remote, flags } => {
            let me = sys.m.current;
            sys.sys_process_vm_writev(me, iov, iovs(remote), *flags)
        }
        Op::Preadv { size, pos } | Op::Pwritev { size, pos } => {
            let f = sys.m.create_file("f", *size, Default::default());
            let fd = sys.sys_open_file(f, 0).expect("open");
            after_kind = After::File(f);
            if matches!(c.op, Op::Preadv { .. }) {
                sys.sys_preadv(fd, iov, *pos)
            } else {
                sys.sys_pwritev(fd, iov, *pos)
            }
        }
        Op::PreadvDirect { pos } | Op::PwritevDirect { pos } => {
            let dev = sys.blkdev_create(BDEV_SIZE);
            let fd = sys.sys_open_bdev(dev, O_DIRECT).expect("open");
            if matches!(c.op, Op::PreadvDirect { .. }) {
                sys.sys_preadv(fd, iov, *pos)
            } else {
                after_kind = After::Bdev(dev);
                sys.sys_pwritev(fd, iov, *pos)
            }
        }
    };
    let ret = match ret {
        Ok(n) => n as i64,
        Err(e) => e.to_ret(),
    };
    // Read back.
    let mut mem = Vec::new();
    for (r, pages) in c.regions.iter().enumerate() {
        for (k, kind) in pages.iter().enumerate() {
            if !kind.readable() {
                continue;
            }
            let va = bases[r].wrapping_add(k as u64 * page);
            let mut buf = vec![0u8; page as usize];
            if let Some(pa) = sys.m.user_pa(mm, va) {
                sys.m.phys.read(pa, &mut buf).expect("page read");
            }
            mem.extend_from_slice(&buf);
        }
    }
    let after = match after_kind {
        After::None => Vec::new(),
        After::Pipe(p) => {
            let mut out = Vec::new();
            for b in sys.pipes[p].occupied_bufs() {
                let mut buf = vec![0u8; b.len as usize];
                let pa = b.page.addr(A::PAGE_SHIFT).add(u64::from(b.offset));
                sys.m.phys.read(pa, &mut buf).expect("pipe page read");
                out.extend_from_slice(&buf);
            }
            out
        }
        After::File(f) => {
            let size = sys.m.files[f as usize].size;
            let mut out = Vec::with_capacity(size as usize);
            let mut pos = 0u64;
            while pos < size {
                let n = (size - pos).min(page);
                let pfn = sys.shmem_get_page(f, pos / page).expect("file page");
                let mut buf = vec![0u8; n as usize];
                sys.m
                    .phys
                    .read(pfn.addr(A::PAGE_SHIFT), &mut buf)
                    .expect("file page read");
                out.extend_from_slice(&buf);
                pos += n;
            }
            out
        }
        After::Bdev(d) => sys.bdevs[d].data.to_vec(),
    };
    Outcome { ret, mem, after }
}

enum After {
    None,
    Pipe(usize),
    File(u32),
    Bdev(usize),
}

/// Puts the fill writes into the pipe through a scratch mapping.
fn fill_pipe<A: Arch>(sys: &mut Sys<A>, wfd: i32, fill: &[u64]) {
    if fill.is_empty() {
        return;
    }
    let page = A::PAGE_SIZE;
    let mm = sys.m.current_mm();
    let max = fill.iter().copied().max().unwrap_or(0).max(1);
    let len = max.div_ceil(page) * page;
    let scratch = sys
        .m
        .mmap(
            mm,
            None,
            len,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "fill",
        )
        .expect("scratch mapping");
    for (k, &n) in fill.iter().enumerate() {
        if n == 0 {
            let r = sys.sys_writev(
                wfd,
                vec![Iovec {
                    base: VirtAddr(0x1000),
                    len: 10,
                }],
            );
            assert_eq!(r, Err(Errno::EFAULT), "a fill write from page 0x1000");
            continue;
        }
        let bytes: Vec<u8> = (0..n).map(|o| fill_byte(k, o)).collect();
        assert_eq!(sys.m.copy_to_user(scratch, &bytes), 0);
        let r = sys.sys_writev(
            wfd,
            vec![Iovec {
                base: scratch,
                len: n,
            }],
        );
        match r {
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(e) => panic!("fill write: {e}"),
        }
    }
    sys.m.munmap(mm, scratch, len).expect("scratch unmap");
}
