//! The syscall layer: argument checks and partial results as 6.13 has
//! them, checked on return values and on the bytes that moved.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vmemu_arch::{Arch, VirtAddr, X86_64};
use vmemu_iter::syscalls::{Medium, O_DIRECT, pattern_byte, pattern_bytes, pvm_max_user_pages};
use vmemu_iter::{Iovec, Sys};
use vmemu_mm::{Backing, Errno, KernelProfile, MapFlags, Prot};

const P: u64 = 4096;

fn sys() -> Sys<X86_64> {
    Sys::new(KernelProfile::parse("v6.13").unwrap(), 64 << 20).unwrap()
}

/// Maps `pages` pages filled with `fill(offset)`; `holes` are unmapped
/// afterwards.
fn region(s: &mut Sys<X86_64>, pages: u64, holes: &[u64], fill: u8) -> VirtAddr {
    let mm = s.m.current_mm();
    let base =
        s.m.mmap(
            mm,
            None,
            pages * P,
            Prot::RW,
            MapFlags::default(),
            Backing::Anon,
            "r",
        )
        .unwrap();
    let bytes: Vec<u8> = (0..pages * P).map(|o| fill.wrapping_add(o as u8)).collect();
    assert_eq!(s.m.copy_to_user(base, &bytes), 0);
    for &h in holes {
        s.m.munmap(mm, base.wrapping_add(h * P), P).unwrap();
    }
    base
}

fn iov(base: VirtAddr, off: u64, len: u64) -> Iovec {
    Iovec {
        base: base.wrapping_add(off),
        len,
    }
}

fn read_user(s: &mut Sys<X86_64>, at: VirtAddr, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    assert_eq!(s.m.copy_from_user(&mut b, at), 0);
    b
}

#[test]
fn readv_argument_checks() {
    let mut s = sys();
    let (r, w) = s.sys_pipe();
    let buf = region(&mut s, 1, &[], 0);
    // More than UIO_MAXIOV segments, a negative length (checked before any
    // access_ok in 6.x), a segment crossing TASK_SIZE_MAX.
    assert_eq!(
        s.sys_readv(r, vec![iov(buf, 0, 1); 1025]),
        Err(Errno::EINVAL)
    );
    let bad = Iovec {
        base: VirtAddr(0xffff_8880_0000_0000),
        len: 8,
    };
    assert_eq!(
        s.sys_readv(r, vec![bad, iov(buf, 0, u64::MAX)]),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        s.sys_readv(r, vec![bad, iov(buf, 0, 8)]),
        Err(Errno::EFAULT)
    );
    let top = X86_64::layout(s.m.family()).task_size_max;
    let cross = Iovec {
        base: VirtAddr(top - 8),
        len: 16,
    };
    assert_eq!(s.sys_readv(r, vec![cross]), Err(Errno::EFAULT));
    // Wrong ends, no segments, zero count.
    assert_eq!(s.sys_readv(w, vec![iov(buf, 0, 8)]), Err(Errno::EBADF));
    assert_eq!(s.sys_writev(r, vec![iov(buf, 0, 8)]), Err(Errno::EBADF));
    assert_eq!(s.sys_readv(r, vec![]), Ok(0));
    assert_eq!(s.sys_readv(99, vec![]), Err(Errno::EBADF));
    // Empty pipe, writer open: the model never sleeps.
    assert_eq!(s.sys_readv(r, vec![iov(buf, 0, 8)]), Err(Errno::EAGAIN));
    assert_eq!(s.sys_preadv(r, vec![iov(buf, 0, 8)], 0), Err(Errno::ESPIPE));
    assert_eq!(
        s.sys_preadv(r, vec![iov(buf, 0, 8)], -1),
        Err(Errno::EINVAL)
    );
}

#[test]
fn writev_fault_leaves_an_empty_buffer_and_readv_keeps_a_faulting_one() {
    let mut s = sys();
    let (r, w) = s.sys_pipe();
    let src = region(&mut s, 3, &[2], 0x10);
    // Page 0 whole; page 1 from +100 faults after 3996 bytes: not counted.
    assert_eq!(s.sys_writev(w, vec![iov(src, 100, 2 * P + 100)]), Ok(P));
    let p = &s.pipes[0];
    assert_eq!((p.nrbufs, p.bytes()), (2, P));
    // A destination faulting 100 bytes in: -EFAULT, nothing consumed, yet
    // the 100 bytes did arrive.
    let dst = region(&mut s, 2, &[1], 0);
    assert_eq!(
        s.sys_readv(r, vec![iov(dst, P - 100, 200)]),
        Err(Errno::EFAULT)
    );
    assert_eq!(s.pipes[0].bytes(), P);
    let got = read_user(&mut s, dst.wrapping_add(P - 100), 100);
    let want: Vec<u8> = (100..200u64)
        .map(|o| 0x10u8.wrapping_add(o as u8))
        .collect();
    assert_eq!(got, want);
    // The empty buffer holds a slot: 14 more pages fit, not 15.
    let big = region(&mut s, 15, &[], 0);
    assert_eq!(s.sys_writev(w, vec![iov(big, 0, 15 * P)]), Ok(14 * P));
}

/// vmsplice to user memory releases an empty buffer at the head before it
/// copies (`splice_from_pipe_next` → `eat_empty_buffer`), but stops at one
/// that follows a buffer it consumed (`splice_from_pipe_feed`: the actor's
/// 0). Real arm64 6.12 under QEMU copies past the first (`vmemu
/// diff-kernel`).
#[test]
fn vmsplice_to_user_eats_a_leading_empty_buffer_and_stops_at_a_later_one() {
    let mut s = sys();
    let (r, w) = s.sys_pipe();
    let src = region(&mut s, 2, &[1], 0x20);
    let dst = region(&mut s, 4, &[], 0);
    // A write that faults at once leaves an empty buffer in the ring.
    assert_eq!(s.sys_writev(w, vec![iov(src, P, 10)]), Err(Errno::EFAULT));
    assert_eq!(s.sys_writev(w, vec![iov(src, 0, P)]), Ok(P));
    assert_eq!((s.pipes[0].nrbufs, s.pipes[0].bytes()), (2, P));
    assert_eq!(s.sys_vmsplice(r, vec![iov(dst, 0, 100)], 0), Ok(100));
    assert_eq!((s.pipes[0].nrbufs, s.pipes[0].bytes()), (1, P - 100));
    // Now a faulting write behind the partly read buffer (full page: no
    // merge), then a whole page: the copy takes the first buffer's rest
    // and stops at the empty one.
    assert_eq!(s.sys_writev(w, vec![iov(src, 0, P)]), Ok(P));
    assert_eq!(s.sys_writev(w, vec![iov(src, P, 10)]), Err(Errno::EFAULT));
    assert_eq!(s.sys_writev(w, vec![iov(src, 0, P)]), Ok(P));
    assert_eq!(
        s.sys_vmsplice(r, vec![iov(dst, 0, 4 * P)], 0),
        Ok(2 * P - 100)
    );
}

#[test]
fn vmsplice_flags_batches_and_to_user() {
    let mut s = sys();
    let (r, w) = s.sys_pipe();
    let buf = region(&mut s, 20, &[], 0);
    assert_eq!(
        s.sys_vmsplice(w, vec![iov(buf, 0, P)], 0x10),
        Err(Errno::EINVAL)
    );
    // 20 pages: the ring holds 16 buffers, so 16 pages go in.
    assert_eq!(s.sys_vmsplice(w, vec![iov(buf, 0, 20 * P)], 0), Ok(16 * P));
    assert_eq!(
        s.sys_vmsplice(w, vec![iov(buf, 0, P)], 0),
        Err(Errno::EAGAIN)
    );
    assert_eq!(
        s.m.held_total(),
        (0, 0),
        "the pipe owns every page reference"
    );
    // Out through the read end: the user pages' bytes.
    let out = region(&mut s, 1, &[], 0xff);
    assert_eq!(s.sys_vmsplice(r, vec![iov(out, 0, 300)], 0), Ok(300));
    let want: Vec<u8> = (0..300u64).map(|o| o as u8).collect();
    assert_eq!(read_user(&mut s, out, 300), want);
}

#[test]
fn process_vm_rw_partial_rules() {
    let mut s = sys();
    let me = s.m.current;
    let mm2 = s.m.mm_alloc().unwrap();
    let t = s.m.new_task(mm2);
    s.m.current = t;
    let remote = region(&mut s, 3, &[1], 0x40);
    s.m.current = me;
    let local = region(&mut s, 3, &[2], 0);
    // Remote hole at page 1: page granular.
    assert_eq!(
        s.sys_process_vm_readv(
            t,
            vec![iov(local, 0, 2 * P)],
            vec![iov(remote, 0, 3 * P)],
            0
        ),
        Ok(P)
    );
    assert_eq!(read_user(&mut s, local, 4), vec![0x40, 0x41, 0x42, 0x43]);
    // Local fault mid-page: byte exact.
    assert_eq!(
        s.sys_process_vm_readv(t, vec![iov(local, P + 10, P)], vec![iov(remote, 0, P)], 0),
        Ok(P - 10)
    );
    // Flags, remote > 1024, negative remote length, empty local first.
    let l = vec![iov(local, 0, 8)];
    assert_eq!(
        s.sys_process_vm_readv(t, l.clone(), vec![iov(remote, 0, 8)], 1),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        s.sys_process_vm_readv(t, l.clone(), vec![iov(remote, 0, 1); 1025], 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        s.sys_process_vm_readv(t, l.clone(), vec![iov(remote, 0, 1 << 63)], 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        s.sys_process_vm_readv(t, vec![iov(local, 0, 0)], vec![iov(remote, 0, 1); 1025], 0),
        Ok(0)
    );
    // A remote sum overflowing ssize_t is no error in 6.13.
    assert_eq!(
        s.sys_process_vm_readv(t, l.clone(), vec![iov(remote, 0, 1 << 62); 3], 0),
        Ok(8)
    );
    assert_eq!(
        s.sys_process_vm_readv(vmemu_mm::sync::TaskId(9), l, vec![iov(remote, 0, 8)], 0),
        Err(Errno::ESRCH)
    );
    // Writes land in the other mm; every pin is dropped again.
    assert_eq!(
        s.sys_process_vm_writev(t, vec![iov(local, 0, 4)], vec![iov(remote, 2 * P, 4)], 0),
        Ok(4)
    );
    s.m.current = t;
    assert_eq!(
        read_user(&mut s, remote.wrapping_add(2 * P), 4),
        read_user_at(&mut s, me, local)
    );
    assert_eq!(s.m.held_total(), (0, 0));
    assert_eq!(pvm_max_user_pages::<X86_64>(), 1024);
}

fn read_user_at(s: &mut Sys<X86_64>, task: vmemu_mm::sync::TaskId, at: VirtAddr) -> Vec<u8> {
    let old = s.m.current;
    s.m.current = task;
    let v = read_user(s, at, 4);
    s.m.current = old;
    v
}

#[test]
fn files_count_short_copies_byte_by_byte() {
    let mut s = sys();
    let f = s.m.create_file("f", 3 * P, Default::default());
    let fd = s.sys_open_file(f, 0).unwrap();
    // tmpfs takes O_DIRECT (buffered) from v6.6, e88e0d366f9c; v4.x
    // refuses it at open (no ->direct_IO).
    assert!(s.sys_open_file(f, O_DIRECT).is_ok());
    let mut old = Sys::<X86_64>::new(KernelProfile::parse("v4.10").unwrap(), 64 << 20).unwrap();
    let f410 = old.m.create_file("f", P, Default::default());
    assert_eq!(old.sys_open_file(f410, O_DIRECT), Err(Errno::EINVAL));
    let buf = region(&mut s, 2, &[1], 0);
    assert_eq!(s.sys_preadv(fd, vec![iov(buf, P - 123, 1000)], 5), Ok(123));
    let want: Vec<u8> = (5..128).map(|o| pattern_byte(o, P)).collect();
    assert_eq!(read_user(&mut s, buf.wrapping_add(P - 123), 123), want);
    assert_eq!(s.sys_preadv(fd, vec![iov(buf, 0, 10)], 3 * P as i64), Ok(0));
    // pos + count overflowing loff_t: rw_verify_area says -EINVAL.
    assert_eq!(
        s.sys_preadv(fd, vec![iov(buf, 0, 10)], i64::MAX - 2),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        s.sys_pwritev(fd, vec![iov(buf, 0, 10)], i64::MAX - 2),
        Err(Errno::EINVAL)
    );
    // A write past EOF grows the file; the gap reads as zeroes.
    assert_eq!(
        s.sys_pwritev(fd, vec![iov(buf, 0, 10)], 5 * P as i64),
        Ok(10)
    );
    assert_eq!(s.m.files[f as usize].size, 5 * P + 10);
    assert_eq!(
        s.sys_preadv(fd, vec![iov(buf, 0, 20)], 5 * P as i64 - 10),
        Ok(20)
    );
    let got = read_user(&mut s, buf, 20);
    assert_eq!(&got[..10], &[0; 10]);
    // readv/writev move f_pos.
    assert_eq!(s.sys_readv(fd, vec![iov(buf, 0, 100)]), Ok(100));
    assert_eq!(s.fds[fd as usize].f_pos, 100);
}

#[test]
fn o_direct_alignment_and_partial_bios() {
    let mut s = sys();
    let dev = s.blkdev_create(4 << 20);
    let fd = s.sys_open_bdev(dev, O_DIRECT).unwrap();
    let buf = region(&mut s, 4, &[2], 0);
    let cases: &[(Vec<Iovec>, i64, Result<u64, Errno>)] = &[
        (vec![iov(buf, 0, P)], 512, Ok(P)),
        (vec![iov(buf, 0, P)], 100, Err(Errno::EINVAL)),
        (vec![iov(buf, 100, 512)], 0, Err(Errno::EINVAL)),
        (
            vec![iov(buf, 0, 256), iov(buf, P, 256)],
            0,
            Err(Errno::EINVAL),
        ),
        // A zero-length segment's address is checked too.
        (
            vec![iov(buf, 0, 512), iov(buf, 3, 0), iov(buf, P, 512)],
            0,
            Err(Errno::EINVAL),
        ),
        (vec![iov(buf, 0, 4 * P)], 0, Ok(2 * P)),
        (vec![iov(buf, 2 * P, P)], 0, Err(Errno::EFAULT)),
        (vec![iov(buf, 0, 2 * P)], (4 << 20) - 512, Ok(512)),
        (vec![iov(buf, 0, 512)], 4 << 20, Ok(0)),
    ];
    for (k, (v, pos, want)) in cases.iter().enumerate() {
        assert_eq!(s.sys_preadv(fd, v.clone(), *pos), *want, "case {k}");
    }
    // The data is the device's.
    s.sys_preadv(fd, vec![iov(buf, 0, 512)], 8192).unwrap();
    let want: Vec<u8> = (8192..8192 + 512).map(|o| pattern_byte(o, P)).collect();
    assert_eq!(read_user(&mut s, buf, 512), want);
    // Writes: partial at the hole, -ENOSPC at the end, clipped before it.
    assert_eq!(s.sys_pwritev(fd, vec![iov(buf, 0, 4 * P)], 0), Ok(2 * P));
    assert_eq!(
        s.sys_pwritev(fd, vec![iov(buf, 0, 512)], 4 << 20),
        Err(Errno::ENOSPC)
    );
    assert_eq!(
        s.sys_pwritev(fd, vec![iov(buf, 0, 2 * P)], (4 << 20) - 1024),
        Ok(1024)
    );
    let mut medium = [0u8; 512];
    s.bdevs[dev].data.read(0, &mut medium);
    assert_eq!(medium, want[..]);
    // More than 256 pages: a later bio that pins nothing fails the call.
    let big = region(&mut s, 300, &[280], 0);
    assert_eq!(
        s.sys_preadv(fd, vec![iov(big, 0, 300 * P)], 0),
        Err(Errno::EFAULT)
    );
    // ... while one that fits in one bio is short.
    assert_eq!(
        s.sys_preadv(fd, vec![iov(big, 0, 281 * P)], 0),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        s.sys_preadv(fd, vec![iov(big, 30 * P, 251 * P)], 0),
        Ok(250 * P)
    );
    assert_eq!(s.m.held_total(), (0, 0), "every pin is released");
}

/// A block device's bytes, built a page at a time, are `pattern_byte` at
/// every offset: whole pages, a partial last page, 4 KiB and 64 KiB pages,
/// past the 256-byte period of the ramp.
#[test]
fn pattern_bytes_is_pattern_byte_at_every_offset() {
    for page in [4096u64, 65536] {
        for size in [0, 1, 511, page, page + 512, 5 * page - 1, 300 * page / 7] {
            let got = pattern_bytes(size, page);
            let want: Vec<u8> = (0..size).map(|o| pattern_byte(o, page)).collect();
            assert_eq!(got, want, "size {size}, page {page}");
        }
    }
}

/// A block device's medium stores only the chunks written, and reads what a
/// plain byte array given the same writes would hold: the pattern where
/// nothing was written, across chunk and page edges, on 4 KiB and 64 KiB
/// pages.
#[test]
fn a_sparse_medium_reads_like_a_byte_array() {
    for page in [4096u64, 65536] {
        let len = 40 * 4096 + 512;
        let mut m = Medium::new(len, page);
        let mut model = pattern_bytes(len, page);
        let mut rng = ChaCha8Rng::seed_from_u64(page);
        let mut next = |n: u64| rng.random_range(0..n);
        for step in 0..300u64 {
            let at = next(len);
            let n = next((len - at).min(3 * 4096) + 1) as usize;
            if step % 2 == 0 {
                let bytes: Vec<u8> = (0..n).map(|i| (i as u64 ^ step) as u8).collect();
                m.write(at, &bytes);
                model[at as usize..at as usize + n].copy_from_slice(&bytes);
            } else {
                let mut back = vec![0xeeu8; n];
                m.read(at, &mut back);
                assert_eq!(
                    back,
                    model[at as usize..at as usize + n],
                    "page {page} step {step}"
                );
            }
        }
        assert!(m.to_vec() == model, "page {page}: the whole medium");
        assert_eq!(m.len(), len);
    }
}
