//! The host side of a differential case: the real syscalls, through `libc`.
//!
//! This is the project's only module with `unsafe` outside `mm/src/phys.rs`.
//! No safe wrapper crate can express the calls: the point is to hand the
//! kernel iovecs that point at unmapped, `PROT_NONE`, read-only and kernel
//! addresses, which safe slices (`rustix`, `nix` take `IoSlice`s) cannot
//! describe, and neither crate has `process_vm_readv` with raw remote
//! iovecs of the caller's own choosing. Every `unsafe` block says which
//! invariant makes it sound; the common ones:
//!
//! * raw syscalls (`libc::syscall`) only get pointers to live Rust values
//!   (the iovec arrays, `Vec` buffers) or addresses the kernel checks
//!   itself; a bad user address there is an `EFAULT`, never undefined
//!   behaviour in this process;
//! * user addresses passed to the kernel are either inside the case's own
//!   regions (mapped here with `mmap`, never handed to Rust code as
//!   references) or addresses no process can map (`Addr::Abs`, checked
//!   against `/proc/self/maps` before the call); so even a kernel that
//!   writes through them cannot corrupt memory Rust owns;
//! * region bytes are read and written through raw pointers only on pages
//!   this module mapped readable (or writable) and has not unmapped.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::PathBuf;
use std::process::Command;

use super::{
    Addr, BDEV_SIZE, Case, Op, Outcome, PAGE, PageKind, Seg, file_byte, fill_byte, user_byte,
};

/// `SPLICE_F_NONBLOCK`.
const SPLICE_F_NONBLOCK: libc::c_long = 0x02;

fn errno() -> i64 {
    i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// A raw syscall's result as bytes or `-errno`.
fn sysret(r: libc::c_long) -> i64 {
    if r < 0 { -errno() } else { r }
}

/// Whether this host can run cases.
pub fn support() -> Result<(), String> {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page != PAGE as libc::c_long {
        return Err(format!("host page size is {page}, the cases assume 4096"));
    }
    if std::fs::read_to_string("/proc/self/maps").is_err() {
        return Err("/proc/self/maps is not readable".into());
    }
    Ok(())
}

/// The loop device the O_DIRECT cases use.
#[derive(Debug)]
struct LoopDev {
    path: String,
    backing: PathBuf,
    direct_fd: i32,
    buffered_fd: i32,
    dirty: bool,
}

impl LoopDev {
    fn setup() -> Result<Self, String> {
        let backing = std::env::temp_dir().join(format!("vmemu-diff-{}.img", std::process::id()));
        let data: Vec<u8> = (0..BDEV_SIZE).map(file_byte).collect();
        std::fs::write(&backing, &data).map_err(|e| format!("backing file: {e}"))?;
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output();
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                let _ = std::fs::remove_file(&backing);
                return Err(format!(
                    "losetup failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&backing);
                return Err(format!("no losetup: {e}"));
            }
        };
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut dev = Self {
            path,
            backing,
            direct_fd: -1,
            buffered_fd: -1,
            dirty: false,
        };
        let c = CString::new(dev.path.clone()).map_err(|e| e.to_string())?;
        // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
        dev.direct_fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_DIRECT) };
        // SAFETY: as above.
        dev.buffered_fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
        if dev.direct_fd < 0 || dev.buffered_fd < 0 {
            return Err(format!("open {}: errno {}", dev.path, errno()));
        }
        // The emulated device has 512-byte logical blocks and DMA alignment
        // 511; check the loop device agrees.
        let name = dev.path.trim_start_matches("/dev/");
        let q = |f: &str| {
            std::fs::read_to_string(format!("/sys/block/{name}/queue/{f}"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        if q("logical_block_size") != "512" {
            return Err(format!(
                "{} has logical_block_size {}, not 512",
                dev.path,
                q("logical_block_size")
            ));
        }
        let size = std::fs::read_to_string(format!("/sys/block/{name}/size")).unwrap_or_default();
        if size.trim() != (BDEV_SIZE / 512).to_string() {
            return Err(format!("{} has {} sectors", dev.path, size.trim()));
        }
        Ok(dev)
    }

    /// Puts the pattern back after a write case.
    fn restore(&mut self) {
        if !self.dirty {
            return;
        }
        let data: Vec<u8> = (0..BDEV_SIZE).map(file_byte).collect();
        // SAFETY: `data` is a live buffer of the given length.
        let n = unsafe { libc::pwrite(self.buffered_fd, data.as_ptr().cast(), data.len(), 0) };
        assert_eq!(n as u64, BDEV_SIZE, "restoring the loop device");
        // SAFETY: plain fd call.
        unsafe { libc::fsync(self.buffered_fd) };
        self.dirty = false;
    }

    fn contents(&self) -> Vec<u8> {
        let mut buf = vec![0u8; BDEV_SIZE as usize];
        // SAFETY: `buf` is a live, writable buffer of the given length.
        let n = unsafe { libc::pread(self.buffered_fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert_eq!(n as u64, BDEV_SIZE, "reading the loop device back");
        buf
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        for fd in [self.direct_fd, self.buffered_fd] {
            if fd >= 0 {
                // SAFETY: closing fds this struct opened.
                unsafe { libc::close(fd) };
            }
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// The host side.
#[derive(Debug)]
pub struct Host {
    bdev: Option<LoopDev>,
}

/// One mapped region of a case.
struct Region {
    base: u64,
    kinds: Vec<PageKind>,
}

impl Host {
    pub fn new(with_bdev: bool) -> Result<(Self, Option<String>), String> {
        support()?;
        if !with_bdev {
            return Ok((
                Self { bdev: None },
                Some("O_DIRECT cases not asked for".into()),
            ));
        }
        match LoopDev::setup() {
            Ok(d) => Ok((Self { bdev: Some(d) }, None)),
            Err(e) => Ok((
                Self { bdev: None },
                Some(format!("no loop device for the O_DIRECT cases: {e}")),
            )),
        }
    }

    pub fn run(&mut self, c: &Case) -> Option<Outcome> {
        if !abs_addresses_unmapped(c) {
            return None;
        }
        let regions = map_regions(c);
        let addr = |s: &Seg| match s.addr {
            Addr::Region(r, off) => regions[r].base.wrapping_add(off),
            Addr::Abs(a) => a,
        };
        let iovecs = |segs: &[Seg]| -> Vec<libc::iovec> {
            segs.iter()
                .map(|s| libc::iovec {
                    iov_base: addr(s) as *mut libc::c_void,
                    iov_len: s.len as usize,
                })
                .collect()
        };
        let iov = iovecs(&c.iov);
        let (iovp, iovn) = (iov.as_ptr(), iov.len() as libc::c_long);
        let mut after = Vec::new();
        let ret = match &c.op {
            Op::Readv | Op::Writev | Op::VmspliceToPipe | Op::VmspliceToUser => {
                let mut fds = [0i32; 2];
                // SAFETY: `fds` is a live array of two ints.
                let r =
                    unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
                assert_eq!(r, 0, "pipe2");
                let [rfd, wfd] = fds;
                for (k, &n) in c.fill.iter().enumerate() {
                    if n == 0 {
                        // A write that faults at once: 6.13 leaves an empty
                        // buffer in the ring. Page 0x1000 is below
                        // mmap_min_addr, never mapped.
                        // SAFETY: the kernel checks the address (EFAULT).
                        unsafe { libc::write(wfd, 0x1000 as *const libc::c_void, 10) };
                        continue;
                    }
                    let buf: Vec<u8> = (0..n).map(|o| fill_byte(k, o)).collect();
                    // SAFETY: `buf` is live for the call; a full pipe gives EAGAIN.
                    unsafe { libc::write(wfd, buf.as_ptr().cast(), buf.len()) };
                }
                let (fd, nr) = match c.op {
                    Op::Readv => (rfd, libc::SYS_readv),
                    Op::Writev => (wfd, libc::SYS_writev),
                    Op::VmspliceToPipe => (wfd, libc::SYS_vmsplice),
                    _ => (rfd, libc::SYS_vmsplice),
                };
                // SAFETY: the iovec array is live; its bases are region or
                // unmappable addresses (see the module docs); the kernel
                // checks every user address itself.
                let r = unsafe {
                    if nr == libc::SYS_vmsplice {
                        libc::syscall(nr, fd, iovp, iovn, SPLICE_F_NONBLOCK)
                    } else {
                        libc::syscall(nr, fd, iovp, iovn)
                    }
                };
                let ret = sysret(r);
                let mut buf = vec![0u8; 65536];
                loop {
                    // SAFETY: `buf` is a live writable buffer.
                    let n = unsafe { libc::read(rfd, buf.as_mut_ptr().cast(), buf.len()) };
                    if n <= 0 {
                        break;
                    }
                    after.extend_from_slice(&buf[..n as usize]);
                }
                // SAFETY: closing the pipe this case opened.
                unsafe {
                    libc::close(rfd);
                    libc::close(wfd);
                }
                ret
            }
            Op::ProcessVmReadv { remote, flags } | Op::ProcessVmWritev { remote, flags } => {
                let rv = iovecs(remote);
                let nr = if matches!(c.op, Op::ProcessVmReadv { .. }) {
                    libc::SYS_process_vm_readv
                } else {
                    libc::SYS_process_vm_writev
                };
                // SAFETY: both iovec arrays are live; remote addresses are
                // this process's regions or unmappable addresses, so the
                // kernel can only write into the regions.
                let r = unsafe {
                    libc::syscall(
                        nr,
                        libc::getpid(),
                        iovp,
                        iovn,
                        rv.as_ptr(),
                        rv.len() as libc::c_long,
                        *flags as libc::c_long,
                    )
                };
                sysret(r)
            }
            Op::Preadv { size, pos } | Op::Pwritev { size, pos } => {
                let name = CString::new("vmemu-diff").expect("no NUL");
                // SAFETY: `name` is a valid C string.
                let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
                assert!(fd >= 0, "memfd_create");
                let data: Vec<u8> = (0..*size).map(file_byte).collect();
                // SAFETY: `data` is live for the call.
                let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), 0) };
                assert_eq!(n as u64, *size, "filling the memfd");
                let nr = if matches!(c.op, Op::Preadv { .. }) {
                    libc::SYS_preadv
                } else {
                    libc::SYS_pwritev
                };
                // SAFETY: the iovec array is live; see the module docs.
                let r = unsafe {
                    libc::syscall(nr, fd, iovp, iovn, *pos as libc::c_long, 0 as libc::c_long)
                };
                let ret = sysret(r);
                // SAFETY: `st` is a plain struct the call fills.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: `st` is live and writable.
                unsafe { libc::fstat(fd, &mut st) };
                after = vec![0u8; st.st_size as usize];
                // SAFETY: `after` is a live writable buffer of that length.
                unsafe { libc::pread(fd, after.as_mut_ptr().cast(), after.len(), 0) };
                // SAFETY: closing the memfd this case opened.
                unsafe { libc::close(fd) };
                ret
            }
            Op::PreadvDirect { pos } | Op::PwritevDirect { pos } => {
                let dev = self
                    .bdev
                    .as_mut()
                    .expect("the caller skips O_DIRECT cases without a device");
                dev.restore();
                let write = matches!(c.op, Op::PwritevDirect { .. });
                let nr = if write {
                    libc::SYS_pwritev
                } else {
                    libc::SYS_preadv
                };
                // SAFETY: the iovec array is live; see the module docs.
                let r = unsafe {
                    libc::syscall(
                        nr,
                        dev.direct_fd,
                        iovp,
                        iovn,
                        *pos as libc::c_long,
                        0 as libc::c_long,
                    )
                };
                if write {
                    dev.dirty = true;
                    after = dev.contents();
                }
                sysret(r)
            }
        };
        let mem = read_regions(&regions);
        unmap_regions(&regions);
        Some(Outcome { ret, mem, after })
    }
}

/// Whether every fixed address a case passes with a non-zero length below
/// `TASK_SIZE_MAX` is unmapped in this process (else the case is skipped:
/// the kernel could write there).
fn abs_addresses_unmapped(c: &Case) -> bool {
    let mut ranges = Vec::new();
    let mut add = |v: &[Seg]| {
        for s in v {
            if let Addr::Abs(a) = s.addr
                && s.len > 0
                && a < super::TASK_SIZE_MAX
            {
                ranges.push((a, a.saturating_add(s.len)));
            }
        }
    };
    add(&c.iov);
    if let Op::ProcessVmReadv { remote, .. } | Op::ProcessVmWritev { remote, .. } = &c.op {
        add(remote);
    }
    if ranges.is_empty() {
        return true;
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for line in maps.lines() {
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) else {
            continue;
        };
        if ranges.iter().any(|&(a, b)| a < hi && lo < b) {
            return false;
        }
    }
    true
}

fn map_regions(c: &Case) -> Vec<Region> {
    let mut out = Vec::new();
    for kinds in &c.regions {
        let len = kinds.len() as u64 * PAGE;
        // SAFETY: a fresh anonymous private mapping; no Rust object lives there.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap of a case region");
        out.push(Region {
            base: p as u64,
            kinds: kinds.clone(),
        });
    }
    for (r, reg) in out.iter().enumerate() {
        let (base, kinds) = (reg.base, &reg.kinds);
        for (k, kind) in kinds.iter().enumerate() {
            if *kind == PageKind::Untouched {
                continue;
            }
            let off = k as u64 * PAGE;
            for o in off..off + PAGE {
                // SAFETY: inside the fresh RW mapping above.
                unsafe { *((base + o) as *mut u8) = user_byte(r, o) };
            }
        }
        for (k, kind) in kinds.iter().enumerate() {
            let at = (base + k as u64 * PAGE) as *mut libc::c_void;
            // SAFETY: pages of the mapping above.
            let rc = unsafe {
                match kind {
                    PageKind::Ro => libc::mprotect(at, PAGE as usize, libc::PROT_READ),
                    PageKind::None => libc::mprotect(at, PAGE as usize, libc::PROT_NONE),
                    PageKind::Hole => libc::munmap(at, PAGE as usize),
                    _ => 0,
                }
            };
            assert_eq!(rc, 0, "mprotect/munmap of a region page");
        }
    }
    out
}

fn read_regions(regions: &[Region]) -> Vec<u8> {
    let mut mem = Vec::new();
    for r in regions {
        for (k, kind) in r.kinds.iter().enumerate() {
            if !kind.readable() {
                continue;
            }
            let at = r.base + k as u64 * PAGE;
            let mut buf = vec![0u8; PAGE as usize];
            // SAFETY: a page of this region that is mapped and readable.
            unsafe {
                std::ptr::copy_nonoverlapping(at as *const u8, buf.as_mut_ptr(), PAGE as usize)
            };
            mem.extend_from_slice(&buf);
        }
    }
    mem
}

fn unmap_regions(regions: &[Region]) {
    for r in regions {
        // SAFETY: the whole range of a region this module mapped (holes
        // included: munmap of an unmapped range is fine).
        unsafe { libc::munmap(r.base as *mut libc::c_void, r.kinds.len() * PAGE as usize) };
    }
}
