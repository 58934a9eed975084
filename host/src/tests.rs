//! Tests of the host API: counts, errnos and the write-target check.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;

use crate::*;

#[test]
fn region_bytes_move_through_the_kernel() {
    let p = page_size();
    let mut r = HostRegion::map_anon(3).unwrap();
    r.write(p - 2, &[1, 2, 3, 4]).unwrap();
    let mut b = [0u8; 6];
    r.read(p - 3, &mut b).unwrap();
    assert_eq!(b, [0, 1, 2, 3, 4, 0]);
    assert!(r.read(3 * p - 1, &mut b).is_err(), "past the end");
    r.protect(1, 1, HostProt::Read).unwrap();
    assert!(r.write(p, &[9]).is_err(), "read-only page");
    r.unmap(2, 1).unwrap();
    assert!(r.read(2 * p, &mut b[..1]).is_err(), "punched page");
    assert!(r.unmap(2, 1).is_err(), "already punched");
    assert!(r.protect(1, 2, HostProt::None).is_err(), "range has a hole");
}

#[test]
fn syscalls_return_counts_and_errnos() {
    let r = HostRegion::map_anon(2).unwrap();
    let p = page_size();
    r.write(0, b"hello").unwrap();
    let (rd, wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
    let iov = [UserIovec {
        base: r.base(),
        len: 5,
    }];
    assert_eq!(writev(wr.as_fd(), &iov), Ok(5));
    let into = [UserIovec {
        base: r.base() + p,
        len: 5,
    }];
    assert_eq!(readv(rd.as_fd(), &into, std::slice::from_ref(&r)), Ok(5));
    let mut b = [0u8; 5];
    r.read(p, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    assert_eq!(write_from(wr.as_fd(), 0x1000, 10), Err(libc::EFAULT));
    // A kernel address: checked by the kernel, not mapped here.
    let k = [UserIovec {
        base: 0xffff_8880_0000_0000,
        len: 8,
    }];
    assert_eq!(process_vm_readv_self(&k, &iov, 0, &[]), Err(libc::EFAULT));
}

#[test]
#[should_panic(expected = "outside the regions lent to the call")]
fn kernel_writes_into_rust_memory_are_refused() {
    let v = [0u8; 64];
    let (rd, wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
    File::from(wr).write_all(&[5; 10]).unwrap();
    let iov = [UserIovec {
        base: v.as_ptr().addr(),
        len: v.len(),
    }];
    let _ = readv(rd.as_fd(), &iov, &[]);
}

#[test]
fn a_pipe_read_is_checked_as_far_as_the_pipe_holds() {
    let p = page_size();
    let r = HostRegion::map_anon(1).unwrap();
    let v = [0u8; 64];
    let (rd, wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
    let mut wr = File::from(wr);
    wr.write_all(&[5; 10]).unwrap();
    // Runs past the region into `v`, but the pipe holds only 10 bytes.
    let iov = [
        UserIovec {
            base: r.base() + p - 10,
            len: 10,
        },
        UserIovec {
            base: v.as_ptr().addr(),
            len: v.len(),
        },
    ];
    let regions = std::slice::from_ref(&r);
    assert_eq!(readv(rd.as_fd(), &iov, regions), Ok(10));
    assert_eq!(
        vmsplice(rd.as_fd(), &iov, SPLICE_F_NONBLOCK, regions),
        Err(libc::EAGAIN)
    );
    assert_eq!(v, [0; 64]);
}

#[test]
fn a_punched_page_ends_the_copy() {
    let p = page_size();
    let mut r = HostRegion::map_anon(2).unwrap();
    r.unmap(1, 1).unwrap();
    let v = [0u8; 64];
    let (rd, wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
    let mut wr = File::from(wr);
    wr.write_all(&vec![5; 3 * p]).unwrap();
    // The copy stops at the hole and never reaches `v`.
    let iov = [
        UserIovec {
            base: r.base(),
            len: 2 * p,
        },
        UserIovec {
            base: v.as_ptr().addr(),
            len: v.len(),
        },
    ];
    assert_eq!(readv(rd.as_fd(), &iov, std::slice::from_ref(&r)), Ok(p));
    assert_eq!(v, [0; 64]);
}

#[test]
#[should_panic(expected = "outside the regions lent to the call")]
fn a_blocking_pipe_gives_no_bound() {
    let v = [0u8; 64];
    let (rd, _wr) = pipe2(libc::O_CLOEXEC).unwrap();
    let iov = [UserIovec {
        base: v.as_ptr().addr(),
        len: v.len(),
    }];
    let _ = vmsplice(rd.as_fd(), &iov, 0, &[]);
}

#[test]
fn an_oversized_iovec_is_left_to_the_kernel() {
    let v = [0u8; 64];
    let (rd, _wr) = pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
    let iov = [
        UserIovec {
            base: v.as_ptr().addr(),
            len: v.len(),
        },
        UserIovec {
            base: 0,
            len: usize::MAX - 5,
        },
    ];
    assert_eq!(readv(rd.as_fd(), &iov, &[]), Err(libc::EINVAL));
}

#[test]
fn fill_touches_and_writes_every_byte() {
    let p = page_size();
    let r = HostRegion::map_anon(20).unwrap();
    r.no_hugepage().unwrap();
    r.fill(0x5a).unwrap();
    assert_eq!(r.len(), 20 * p);
    let mut b = vec![0u8; r.len()];
    r.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a));
}

#[test]
fn a_host_pipe_splices_region_pages_and_drains() {
    let p = page_size();
    let mut r = HostRegion::map_anon(4).unwrap();
    r.fill(7).unwrap();
    let mut pipe = HostPipe::new(2 * p).unwrap();
    assert!(pipe.capacity() >= 2 * p);
    let n = pipe.vmsplice(&r, 0, 4 * p).unwrap();
    assert_eq!(n, (4 * p).min(pipe.capacity()));
    assert_eq!(
        pipe.vmsplice(&r, 0, p).unwrap(),
        0,
        "full: nothing more fits"
    );
    let mut scratch = vec![0u8; 1000];
    pipe.drain(&mut scratch).unwrap();
    assert_eq!(scratch[999], 7);
    assert!(pipe.vmsplice(&r, 4 * p - 1, 2).is_err(), "past the end");
    r.unmap(1, 1).unwrap();
    assert!(pipe.vmsplice(&r, p, 1).is_err(), "punched page");
}

#[test]
fn process_vm_readv_between_regions() {
    let p = page_size();
    let src = HostRegion::map_anon(2).unwrap();
    let dst = HostRegion::map_anon(2).unwrap();
    src.fill(3).unwrap();
    let local = [dst.span(10, p).unwrap(), dst.span(p + 20, 5).unwrap()];
    let remote = [src.span(0, p + 5).unwrap()];
    let lent = std::slice::from_ref(&dst);
    assert_eq!(process_vm_readv_self(&local, &remote, 0, lent), Ok(p + 5));
    let mut b = [0u8; 6];
    dst.read(p + 20, &mut b).unwrap();
    assert_eq!(b, [3, 3, 3, 3, 3, 0]);
}
